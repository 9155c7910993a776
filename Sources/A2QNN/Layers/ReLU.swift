import A2QCore
import QuantKernels

/// `y = max(x, 0)`; the gradient passes where `x > 0`.
///
/// When the next layer is an activation quantizer that applies the ReLU itself
/// (`ActivationQuantizer.rectifiesInput`), `passesThrough` makes this layer a no-op in both
/// directions: one pass over the tensor instead of two, with the same values.
public final class ReLU: Layer, @unchecked Sendable {
    public let name: String
    public var computesInputGradient = true
    public var passesThrough = false
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    public init(name: String) { self.name = name }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        if passesThrough { return input }
        self.input = input
        output.reshape(input.shape)
        a2qk_relu_forward(input.data, output.data, Int64(input.count))
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        if passesThrough { return outputGradient }
        guard let input else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == input.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match input \(describe(input.shape))")
        inputGradient.reshape(input.shape)
        a2qk_relu_backward(input.data, outputGradient.data, inputGradient.data, Int64(input.count))
        return inputGradient
    }
}
