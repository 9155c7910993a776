import A2QCore

/// `y = max(x, 0)`; the gradient passes where `x > 0`.
public final class ReLU: Layer, @unchecked Sendable {
    public let name: String
    public var computesInputGradient = true
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    public init(name: String) { self.name = name }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        self.input = input
        output.reshape(input.shape)
        let x = input.data, y = output.data
        for i in 0..<input.count { y[i] = max(x[i], 0) }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == input.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match input \(describe(input.shape))")
        inputGradient.reshape(input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data
        for i in 0..<input.count { dx[i] = x[i] > 0 ? dy[i] : 0 }
        return inputGradient
    }
}
