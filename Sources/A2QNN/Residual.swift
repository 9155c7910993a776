import A2QCore

/// A residual block `y = body(x) + shortcut(x)`, the shortcut being the identity (nil) or a
/// projection (for example a strided 1×1 convolution with BatchNorm). The gradient reaching
/// the block's input is the sum of the two branches' input gradients: the branch point's
/// backward.
///
/// In quantized builds both branches end in an activation quantizer (or, for the identity,
/// start from one), so the add is an addition of two dequantized integer tensors.
public final class Residual: LayerContainer, @unchecked Sendable {
    public let name: String
    public let body: Sequential
    public let shortcut: Sequential?
    public var computesInputGradient = true {
        didSet {
            body.computesInputGradient = computesInputGradient
            shortcut?.computesInputGradient = computesInputGradient
        }
    }
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])

    public init(name: String, body: Sequential, shortcut: Sequential? = nil) {
        self.name = name
        self.body = body
        self.shortcut = shortcut
    }

    public var children: [any Layer] { shortcut.map { [body, $0] } ?? [body] }
    public var hasParameters: Bool { body.hasParameters || (shortcut?.hasParameters ?? false) }
    public var buffers: [(name: String, tensor: Tensor)] { body.buffers + (shortcut?.buffers ?? []) }

    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        body.initialize(parameters, generator: &generator)
        shortcut?.initialize(parameters, generator: &generator)
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let a = body.forward(input, parameters: parameters, training: training)
        let b = shortcut?.forward(input, parameters: parameters, training: training) ?? input
        return add(a, b)
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool,
                        stoppingAfter stop: ObjectIdentifier) -> (output: Tensor, stopped: Bool) {
        let (a, inBody) = body.forward(input, parameters: parameters, training: training, stoppingAfter: stop)
        if inBody { return (a, true) }
        var b = input
        if let shortcut {
            let (y, inShortcut) = shortcut.forward(input, parameters: parameters, training: training, stoppingAfter: stop)
            if inShortcut { return (y, true) }
            b = y
        }
        return (add(a, b), false)
    }

    private func add(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape,
                     "\(name): the body gives \(describe(a.shape)) but the shortcut gives \(describe(b.shape))")
        output.reshape(a.shape)
        let x = a.data, z = b.data, y = output.data
        for i in 0..<a.count { y[i] = x[i] + z[i] }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        backward(outputGradient, parameters: parameters) { _ in }
    }

    /// The shortcut's leaves are declared after the body's, so they finish first.
    public func backward(_ outputGradient: Tensor, parameters: ParameterStore, finished: (any Layer) -> Void) -> Tensor {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let fromShortcut = shortcut?.backward(outputGradient, parameters: parameters, finished: finished) ?? outputGradient
        let fromBody = body.backward(outputGradient, parameters: parameters, finished: finished)
        guard computesInputGradient else { return fromBody }
        inputGradient.reshape(fromBody.shape)
        let p = fromBody.data, q = fromShortcut.data, dx = inputGradient.data
        for i in 0..<inputGradient.count { dx[i] = p[i] + q[i] }
        return inputGradient
    }
}
