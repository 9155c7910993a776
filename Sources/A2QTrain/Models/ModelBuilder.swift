import A2QCore
import A2QNN
import A2QQuant

/// Builds a `Model` from a `ModelDescription` (a built-in or a model file): an 8-bit unsigned
/// image input quantizer, then the description's tree with every layer's input size inferred
/// from the image shape. Float builds (`quantized: false`, the float pre-training phase) skip
/// the activation quantizers and keep float weights. Everything a description can get wrong
/// (shapes, a residual's branches, unquantized inputs, a P too narrow) is an error here,
/// before any training starts.
public enum ModelBuilder {
    /// `[channels, height, width]` of the default data.
    public static let defaultInputShape = [1, 28, 28]

    /// The description `--model` names: a built-in, a model file read from disk, or the tree of
    /// a float ONNX model (`ONNXImport`; its weights come from `a2q import`'s checkpoint).
    public static func description(of name: ModelName) throws -> ModelDescription {
        if let builtIn = BuiltInModels.description(name) { return builtIn }
        if name.isONNX { return try ONNXImport.description(path: name.rawValue) }
        return try ModelDescription.load(path: name.rawValue)
    }

    /// The factor r by which a restoration model enlarges its input (1 for a classifier): its
    /// output's height over its input's, from a float build on a small image.
    public static func upscaleFactor(of description: ModelDescription, config: TrainConfig, channels: Int = 3) throws -> Int {
        guard description.task == .restoration else { return 1 }
        let probe = 16
        let model = try build(config, quantized: false, classes: 0, inputShape: [channels, probe, probe], description: description)
        let output = model.network.forward(Tensor(shape: [1, channels, probe, probe]), training: false)
        return output.shape[2] / probe
    }

    /// Full names of the weight layers (conv, linear), in forward order.
    public static func weightLayerNames(_ description: ModelDescription) -> [String] {
        func walk(_ nodes: [ModelDescription.Node], _ prefix: String) -> [String] {
            nodes.flatMap { node -> [String] in
                (type(of: node.op).isWeightLayer ? [prefix + node.name] : [])
                    + node.op.children.flatMap { walk($0.nodes, prefix + node.name + $0.prefix) }
            }
        }
        return walk(description.layers, "")
    }

    /// Builds `config.model` (or `description`, when given: a checkpoint's stored tree) for
    /// images of `inputShape`.
    public static func build(_ config: TrainConfig, quantized: Bool, classes: Int = 10,
                             inputShape: [Int] = defaultInputShape, description: ModelDescription? = nil) throws -> Model {
        let description = try description ?? self.description(of: config.model)
        var builder = ModelBuildContext(config: config, quantized: quantized && config.quantizer != .float, classes: classes,
                              weightLayers: weightLayerNames(description))
        if let unknown = config.layerAccumulatorBits.keys.sorted().first(where: { !builder.weightLayers.contains($0) }) {
            throw A2QError("layer-accumulator-bits names '\(unknown)', which \(config.model.shortName) does not have",
                           remedy: "its weight layers are \(builder.weightLayers.joined(separator: ", "))")
        }
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw A2QError("the input shape \(describe(inputShape)) is not [channels, height, width]")
        }
        var state = ModelBuildContext.State(shape: inputShape, format: nil, quantizer: nil)
        var layers: [any Layer] = []
        if builder.quantized {
            let q = ActivationQuantizer(name: "input", format: InputFormat(bits: 8, signed: false), fixedScale: 1 / 255)
            layers.append(q)
            state.format = q.format
            state.quantizer = q
        }
        layers += try builder.build(description.layers, prefix: "", state: &state)
        switch description.task {
        case .classification:
            guard state.shape == [classes] else {
                throw A2QError("\(description.name) ends in \(describe(state.shape)), not \(classes) class scores",
                               remedy: "end the model with a linear layer without \"out\" (it gets one output per class)")
            }
        case .restoration:
            let (c, h, w) = (inputShape[0], inputShape[1], inputShape[2])
            guard state.shape.count == 3, state.shape[0] == c, state.shape[1] % h == 0, state.shape[1] / h == state.shape[2] / w,
                  state.shape[2] % w == 0 else {
                throw A2QError("\(description.name) is a restoration model but ends in \(describe(state.shape)) for an input \(describe(inputShape))",
                               remedy: "end it in an image of the input's \(c) channels, r times as high and wide (for example a pixelshuffle by r)")
            }
        }
        if description.initialization == .bilinear { try BilinearPath.check(description, channels: inputShape[0]) }
        let network = Network(root: Sequential(name: "model", layers: layers), layout: builder.layout)
        return Model(name: config.model, description: description, inputShape: inputShape, network: network,
                     quantizedLayers: builder.quantizedLayers, activationQuantizers: builder.activations,
                     classes: description.task == .classification ? classes : 0)
    }
}

/// The state of one build (`ModelBuilder.build`): the run's settings, the layout the layers
/// declare into, and what was collected (quantized layers, activation quantizers, names). Ops
/// build their layers through it (`ModelOp.build`).
public struct ModelBuildContext {
    let config: TrainConfig
    /// Whether activations and weights are quantized (false: the float pre-training build).
    public let quantized: Bool
    public let classes: Int
    let weightLayers: [String]
    var layout = ParameterLayout()
    var quantizedLayers: [QuantizedLayer] = []
    var activations: [ActivationQuantizer] = []
    /// Full names used so far (layers and blocks): a file may not use one twice.
    var names: Set<String> = ["input", "model"]
    /// The layer built just before the current node in the same list (nil at a list's start).
    var previous: (any Layer)?
    /// The most weights one layer may have (2^26, as exports allow).
    static let maxLayerWeights = 1 << 26

    /// What flows between layers: the shape of one example, its integer format (nil once
    /// a layer leaves the integer grid) and the quantizer that set it.
    public struct State {
        var shape: [Int]
        var format: InputFormat?
        var quantizer: ActivationQuantizer?
    }

    init(config: TrainConfig, quantized: Bool, classes: Int, weightLayers: [String]) {
        self.config = config
        self.quantized = quantized
        self.classes = classes
        self.weightLayers = weightLayers
    }

    /// The weight quantizer of one layer: per-layer settings of the description, then
    /// `--layer-accumulator-bits`, then the run's defaults; the first and last weight
    /// layers follow `--first-last` unless the description says `constrained`.
    func spec(_ name: String, _ w: ModelDescription.WeightLayer) -> WeightQuantizerSpec {
        guard quantized else { return .float }
        let edge = name == weightLayers.first || name == weightLayers.last
        let constrained = w.constrained ?? !(edge && config.firstLast == .unconstrained)
        let p = config.layerAccumulatorBits[name] ?? w.accumulatorBits ?? config.accumulatorBits
        guard constrained else { return WeightQuantizerSpec(kind: .qat, weightBits: w.weightBits ?? 8, accumulatorBits: 32) }
        let aware = config.quantizer.isAccumulatorAware
        return WeightQuantizerSpec(kind: config.quantizer, weightBits: w.weightBits ?? config.weightBits,
                                   accumulatorBits: config.quantizer == .qat ? 32 : p,
                                   accumulatorTile: aware ? config.accumulatorTile : nil,
                                   outerAccumulatorBits: aware ? config.outerAccumulatorBits : nil)
    }

    /// Builds a list of nodes whose full names start with `prefix`.
    mutating func build(_ nodes: [ModelDescription.Node], prefix: String, state: inout State) throws -> [any Layer] {
        var layers: [any Layer] = []
        let outer = previous
        defer { previous = outer }
        previous = nil
        for node in nodes {
            let name = prefix + node.name
            guard names.insert(name).inserted else {
                throw A2QError("two layers are named \(name)",
                               remedy: "give every layer a name that is unique inside its block ('residual', 'body' and 'shortcut' are taken inside a residual)")
            }
            let built = try node.op.build(&self, name: name, state: &state)
            layers += built
            previous = layers.last
        }
        return layers
    }

    func requireImage(_ name: String, _ state: State) throws {
        guard state.shape.count == 3 else {
            throw A2QError("\(name) takes [channels, height, width] but gets \(describe(state.shape))")
        }
    }

    func requireSize(_ name: String, _ weights: Int) throws {
        guard weights <= Self.maxLayerWeights else {
            throw A2QError("\(name) would have \(weights) weights, more than the \(Self.maxLayerWeights) a layer may have",
                           remedy: "use fewer output channels or a smaller input (a pool or a strided conv before it)")
        }
    }

    func requireQuantizedInput(_ name: String, _ state: State) throws {
        guard quantized, state.format == nil else { return }
        throw A2QError("\(name): its input is not quantized, so it has no integer form",
                       remedy: "put a quant layer before it")
    }
}
