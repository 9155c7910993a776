import A2QCore

/// Layers applied one after the other; itself a `Layer`, so chains nest (a stage of blocks,
/// a block's body) and a model is a tree.
public final class Sequential: LayerContainer, @unchecked Sendable {
    public let name: String
    public let layers: [any Layer]

    /// When false, the layers up to and including the first one with parameters skip their
    /// input gradient (nothing before them needs it).
    public var computesInputGradient = true {
        didSet {
            for layer in layers {
                layer.computesInputGradient = computesInputGradient
                if layer.hasParameters || computesInputGradient { break }
            }
        }
    }

    public init(name: String, layers: [any Layer]) {
        precondition(!layers.isEmpty, "Sequential \(name): no layers")
        self.name = name
        self.layers = layers
    }

    public var children: [any Layer] { layers }
    public var hasParameters: Bool { layers.contains { $0.hasParameters } }
    public var buffers: [(name: String, tensor: Tensor)] { layers.flatMap(\.buffers) }

    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        for layer in layers { layer.initialize(parameters, generator: &generator) }
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        var x = input
        for layer in layers { x = layer.forward(x, parameters: parameters, training: training) }
        return x
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool,
                        stoppingAfter stop: ObjectIdentifier) -> (output: Tensor, stopped: Bool) {
        var x = input
        for layer in layers {
            if let container = layer as? any LayerContainer {
                let (y, stopped) = container.forward(x, parameters: parameters, training: training, stoppingAfter: stop)
                if stopped { return (y, true) }
                x = y
            } else {
                x = layer.forward(x, parameters: parameters, training: training)
                if ObjectIdentifier(layer) == stop { return (x, true) }
            }
        }
        return (x, false)
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        var g = outputGradient
        for layer in layers.reversed() { g = layer.backward(g, parameters: parameters) }
        return g
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore, finished: (any Layer) -> Void) -> Tensor {
        var g = outputGradient
        for layer in layers.reversed() {
            if let container = layer as? any LayerContainer {
                g = container.backward(g, parameters: parameters, finished: finished)
            } else {
                g = layer.backward(g, parameters: parameters)
                finished(layer)
            }
        }
        return g
    }
}

/// A model's layer tree with the one parameter store its layers declared into: the root
/// `Sequential`, the walk over its leaves, forward (whole, or up to a named leaf) and backward.
public final class Network: @unchecked Sendable {
    public let root: Sequential
    public let parameters: ParameterStore
    /// Every computing layer in forward order (the tree's leaves, pre-order).
    public let leaves: [any Layer]
    private let leafIndex: [ObjectIdentifier: Int]
    private let named: [String: any Layer]

    /// Builds the store from `layout` (which the layers declared into); the first layers, up
    /// to the first with parameters, skip their input gradient.
    public init(root: Sequential, layout: ParameterLayout) {
        self.root = root
        parameters = ParameterStore(layout: layout)
        root.computesInputGradient = false
        leaves = root.leaves
        var index: [ObjectIdentifier: Int] = [:]
        for (i, leaf) in leaves.enumerated() { index[ObjectIdentifier(leaf)] = i }
        leafIndex = index
        var named: [String: any Layer] = [:]
        for layer in root.walk {
            precondition(named[layer.name] == nil, "Network: two layers are named \(layer.name)")
            named[layer.name] = layer
        }
        self.named = named
    }

    /// Convenience for a plain chain.
    public convenience init(layers: [any Layer], layout: ParameterLayout) {
        self.init(root: Sequential(name: "model", layers: layers), layout: layout)
    }

    /// The layer (leaf or container) named `name`.
    public func layer(named name: String) -> (any Layer)? { named[name] }

    /// Every layer of the tree, containers before their children.
    public var walk: [any Layer] { root.walk }

    /// Initialises every layer's parameters in forward order.
    public func initialize(generator: inout Xoshiro256) { root.initialize(parameters, generator: &generator) }

    /// Runs the whole network; returns the last layer's output (owned by it).
    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        root.forward(input, parameters: parameters, training: training)
    }

    /// Runs the network up to and including the leaf named `name`; returns its output (nil
    /// when there is no such leaf).
    public func forward(_ input: Tensor, training: Bool, through name: String) -> Tensor? {
        guard let leaf = named[name], leafIndex[ObjectIdentifier(leaf)] != nil else { return nil }
        let (output, stopped) = root.forward(input, parameters: parameters, training: training, stoppingAfter: ObjectIdentifier(leaf))
        return stopped ? output : nil
    }

    /// Runs the backward passes in reverse order, accumulating parameter gradients.
    public func backward(_ outputGradient: Tensor) {
        _ = root.backward(outputGradient, parameters: parameters)
    }

    /// The same, calling `finished(i)` after `leaves[i]`'s backward (whose parameter gradients
    /// are then final; `i` runs from the last leaf down to 0): the overlapped all-reduce starts
    /// buckets from there.
    public func backward(_ outputGradient: Tensor, finished: (Int) -> Void) {
        _ = root.backward(outputGradient, parameters: parameters) { leaf in
            if let i = leafIndex[ObjectIdentifier(leaf)] { finished(i) }
        }
    }

    /// Every layer's non-trainable buffers, in forward order.
    public var buffers: [(name: String, tensor: Tensor)] { root.buffers }
}
