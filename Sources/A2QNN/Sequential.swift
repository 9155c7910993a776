import A2QCore

/// A chain of layers sharing one parameter store.
public final class Sequential: @unchecked Sendable {
    public let layers: [any Layer]
    public let parameters: ParameterStore

    /// Builds the store from `layout` (which the layers declared into) and marks every layer
    /// up to and including the first one with parameters as not needing an input gradient.
    public init(layers: [any Layer], layout: ParameterLayout) {
        self.layers = layers
        parameters = ParameterStore(layout: layout)
        for layer in layers {
            layer.computesInputGradient = false
            if layer.hasParameters { break }
        }
    }

    /// Initialises every layer's parameters in order.
    public func initialize(generator: inout Xoshiro256) {
        for layer in layers { layer.initialize(parameters, generator: &generator) }
    }

    /// Runs the layers in order; returns the last layer's output (owned by it).
    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        var x = input
        for layer in layers { x = layer.forward(x, parameters: parameters, training: training) }
        return x
    }

    /// Runs the layers up to and including `layers[last]`; returns that layer's output.
    public func forward(_ input: Tensor, training: Bool, through last: Int) -> Tensor {
        var x = input
        for layer in layers[...last] { x = layer.forward(x, parameters: parameters, training: training) }
        return x
    }

    /// The index of the layer named `name`.
    public func index(of name: String) -> Int? { layers.firstIndex { $0.name == name } }

    /// Runs the backward passes in reverse order, accumulating parameter gradients.
    public func backward(_ outputGradient: Tensor) {
        var g = outputGradient
        for layer in layers.reversed() { g = layer.backward(g, parameters: parameters) }
    }

    /// The same, calling `finished(i)` after `layers[i]`'s backward (whose parameter
    /// gradients are then final): the overlapped all-reduce starts buckets from there.
    public func backward(_ outputGradient: Tensor, finished: (Int) -> Void) {
        var g = outputGradient
        for i in layers.indices.reversed() {
            g = layers[i].backward(g, parameters: parameters)
            finished(i)
        }
    }

    /// Every layer's non-trainable buffers, in layer order.
    public var buffers: [(name: String, tensor: Tensor)] { layers.flatMap(\.buffers) }
}
