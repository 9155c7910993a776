import A2QCore

/// Residual addition `y = a + b`. Its backward returns the output gradient for both inputs
/// (the same tensor: the gradient of a sum is shared, not copied).
public final class Add: @unchecked Sendable {
    public let name: String
    private let output = Tensor(shape: [0])

    public init(name: String) { self.name = name }

    public func forward(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "\(name): cannot add \(describe(a.shape)) and \(describe(b.shape))")
        output.reshape(a.shape)
        let x = a.data, z = b.data, y = output.data
        for i in 0..<a.count { y[i] = x[i] + z[i] }
        return output
    }

    public func backward(_ outputGradient: Tensor) -> (Tensor, Tensor) {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        return (outputGradient, outputGradient)
    }
}
