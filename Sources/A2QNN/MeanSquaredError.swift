import A2QCore

/// Mean squared error over every element of a batch, `L = Σ (y − t)² / count`, with its
/// gradient `2(y − t)/count`. Owns its gradient tensor.
public final class MeanSquaredError: @unchecked Sendable {
    private let gradient = Tensor(shape: [0])

    public init() {}

    /// Returns the mean loss and writes `∂L/∂y` for `backward`.
    public func forward(_ output: Tensor, target: Tensor) -> Float {
        precondition(output.shape == target.shape,
                     "MeanSquaredError: output \(describe(output.shape)) and target \(describe(target.shape)) differ")
        gradient.reshape(output.shape)
        let y = output.data, t = target.data, g = gradient.data, n = output.count
        let scale = 2 / Float(max(n, 1))
        var total: Double = 0
        for i in 0..<n {
            let d = y[i] - t[i]
            total += Double(d) * Double(d)
            g[i] = scale * d
        }
        return Float(total / Double(max(n, 1)))
    }

    /// The gradient of the last `forward`'s loss with respect to the output.
    public func backward() -> Tensor { gradient }
}
