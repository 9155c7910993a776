/// A layer with an explicit, paired forward and backward pass (llm.c style).
///
/// Layers declare their parameters into a `ParameterLayout` when constructed and read them
/// from the model's `ParameterStore` on every call. A layer owns the tensors it writes
/// (output, input gradient, scratch) and reuses them across steps; it keeps a reference to
/// its input (no copy) for the backward pass, so the caller must not overwrite that input
/// between `forward` and `backward`.
public protocol Layer: AnyObject {
    /// Dotted prefix of this layer's parameters, e.g. `conv1`.
    var name: String { get }

    /// Fills this layer's parameters with their initial values.
    func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256)

    /// Computes the output for `input`; returns a tensor owned by the layer.
    func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor

    /// Accumulates parameter gradients into `parameters.gradients` and returns the gradient
    /// with respect to the last input (a tensor owned by the layer).
    func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor

    /// When false, `backward` may skip computing the input gradient (first layer).
    var computesInputGradient: Bool { get set }

    /// Non-trainable state that a checkpoint must keep (e.g. BatchNorm running statistics).
    var buffers: [(name: String, tensor: Tensor)] { get }

    /// Whether the layer owns trainable parameters (layers before the first one that does
    /// need no input gradient).
    var hasParameters: Bool { get }

    /// The layers this one is made of, in forward order (empty for a leaf such as `Conv2d`).
    var children: [any Layer] { get }
}

/// A layer made of other layers (`Sequential`, `Residual`): a model is a tree of these with
/// leaves that compute. The walk, the early stop and the per-leaf backward callback let code
/// that needs "the layers in order" work on trees.
public protocol LayerContainer: Layer {
    /// Runs forward until the leaf `stop` (identified by `ObjectIdentifier`) has run and
    /// returns its output with `true`; when `stop` is not inside, returns this container's
    /// output with `false`.
    func forward(_ input: Tensor, parameters: ParameterStore, training: Bool,
                 stoppingAfter stop: ObjectIdentifier) -> (output: Tensor, stopped: Bool)

    /// `backward`, calling `finished(leaf)` after each leaf's backward (whose parameter
    /// gradients are then final); leaves finish in exactly the reverse of `leaves` order.
    func backward(_ outputGradient: Tensor, parameters: ParameterStore, finished: (any Layer) -> Void) -> Tensor
}

extension Layer {
    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {}
    public var buffers: [(name: String, tensor: Tensor)] { [] }
    public var hasParameters: Bool { false }
    public var children: [any Layer] { [] }

    /// Every leaf under this layer in forward (pre-order) order; a leaf is its own list.
    public var leaves: [any Layer] { children.isEmpty ? [self] : children.flatMap(\.leaves) }

    /// This layer and everything under it, containers before their children.
    public var walk: [any Layer] { [self] + children.flatMap(\.walk) }
}

/// Formats a shape for messages: `[64, 32, 14, 14]`.
public func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
