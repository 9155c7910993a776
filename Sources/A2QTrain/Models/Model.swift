import A2QCore
import A2QNN
import A2QQuant

/// A Linear or Conv2d layer with its weight quantizer and the format of its input.
public struct QuantizedLayer: @unchecked Sendable {
    public enum Kind: String, Sendable { case linear, conv2d }
    public let name: String
    public let kind: Kind
    public let layer: any Layer
    public let quantizer: WeightQuantizer
    /// The integer format of this layer's input (from the input quantizer before it).
    public let input: InputFormat?
    /// The activation quantizer whose integers this layer reads (nil in float builds).
    public let inputQuantizer: ActivationQuantizer?
    /// Whether the accumulator constraint applies (a2q/a2q+).
    public var isConstrained: Bool { quantizer.spec.kind.isAccumulatorAware }
    /// The weight tensor's shape.
    public var weightShape: [Int] { quantizer.weight.shape }
}

/// A built network: the layer tree, its parameters, and the quantization metadata that
/// training, checkpoints and the integer engine need.
public final class Model: @unchecked Sendable {
    public let name: ModelName
    /// The tree this model was built from (stored in checkpoints).
    public let description: ModelDescription
    /// `[channels, height, width]` of one input image.
    public let inputShape: [Int]
    public let network: Network
    public let quantizedLayers: [QuantizedLayer]
    public let activationQuantizers: [ActivationQuantizer]
    public let classes: Int

    init(name: ModelName, description: ModelDescription, inputShape: [Int], network: Network,
         quantizedLayers: [QuantizedLayer], activationQuantizers: [ActivationQuantizer], classes: Int) {
        self.name = name
        self.description = description
        self.inputShape = inputShape
        self.network = network
        self.quantizedLayers = quantizedLayers
        self.activationQuantizers = activationQuantizers
        self.classes = classes
    }

    public var parameters: ParameterStore { network.parameters }

    /// The layers the accumulator constraint applies to.
    public var constrainedLayers: [QuantizedLayer] { quantizedLayers.filter(\.isConstrained) }

    /// Projects every constrained layer back into its feasible set (after each optimizer step).
    public func reproject() {
        for layer in quantizedLayers { layer.quantizer.reproject(parameters) }
    }

    /// Projects the constrained layers' directions onto their L1 budgets (`--project-directions`).
    public func projectDirections() {
        for layer in constrainedLayers { layer.quantizer.projectDirections(parameters) }
    }

    /// Adds the papers' regulariser `weight · Σ relu(g − T·s)` to the gradients; returns it.
    @discardableResult
    public func addRegularizer(weight: Float) -> Float {
        guard weight > 0 else { return 0 }
        var total: Float = 0
        for layer in constrainedLayers { total += layer.quantizer.addRegularizer(parameters, weight: weight) }
        return weight * total
    }
}
