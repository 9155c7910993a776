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

    /// The description `--model` names: a built-in, or a model file read from disk.
    public static func description(of name: ModelName) throws -> ModelDescription {
        if let builtIn = BuiltInModels.description(name) { return builtIn }
        return try ModelDescription.load(path: name.rawValue)
    }

    /// Full names of the weight layers (conv, linear), in forward order.
    public static func weightLayerNames(_ description: ModelDescription) -> [String] {
        func walk(_ nodes: [ModelDescription.Node], _ prefix: String) -> [String] {
            nodes.flatMap { node -> [String] in
                switch node {
                case .conv(let w), .linear(let w): return [prefix + w.name]
                case .sequential(let name, let layers): return walk(layers, prefix + name + ".")
                case .residual(let name, let body, let shortcut, let after):
                    return walk(body, prefix + name + ".") + walk(shortcut ?? [], prefix + name + ".shortcut.")
                        + walk(after, prefix + name + ".")
                default: return []
                }
            }
        }
        return walk(description.layers, "")
    }

    /// Builds `config.model` (or `description`, when given: a checkpoint's stored tree) for
    /// images of `inputShape`.
    public static func build(_ config: TrainConfig, quantized: Bool, classes: Int = 10,
                             inputShape: [Int] = defaultInputShape, description: ModelDescription? = nil) throws -> Model {
        let description = try description ?? self.description(of: config.model)
        var builder = Builder(config: config, quantized: quantized && config.quantizer != .float, classes: classes,
                              weightLayers: weightLayerNames(description))
        if let unknown = config.layerAccumulatorBits.keys.sorted().first(where: { !builder.weightLayers.contains($0) }) {
            throw A2QError("layer-accumulator-bits names '\(unknown)', which \(config.model.shortName) does not have",
                           remedy: "its weight layers are \(builder.weightLayers.joined(separator: ", "))")
        }
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw A2QError("the input shape \(describe(inputShape)) is not [channels, height, width]")
        }
        var state = Builder.State(shape: inputShape, format: nil, quantizer: nil)
        var layers: [any Layer] = []
        if builder.quantized {
            let q = ActivationQuantizer(name: "input", format: InputFormat(bits: 8, signed: false), fixedScale: 1 / 255)
            layers.append(q)
            state.format = q.format
            state.quantizer = q
        }
        layers += try builder.build(description.layers, prefix: "", state: &state)
        guard state.shape == [classes] else {
            throw A2QError("\(description.name) ends in \(describe(state.shape)), not \(classes) class scores",
                           remedy: "end the model with a linear layer without \"out\" (it gets one output per class)")
        }
        let network = Network(root: Sequential(name: "model", layers: layers), layout: builder.layout)
        return Model(name: config.model, description: description, inputShape: inputShape, network: network,
                     quantizedLayers: builder.quantizedLayers, activationQuantizers: builder.activations, classes: classes)
    }

    /// The state of one build: the layout the layers declare into and what was collected.
    struct Builder {
        let config: TrainConfig
        let quantized: Bool
        let classes: Int
        let weightLayers: [String]
        var layout = ParameterLayout()
        var quantizedLayers: [QuantizedLayer] = []
        var activations: [ActivationQuantizer] = []
        /// Full names used so far (layers and blocks): a file may not use one twice.
        var names: Set<String> = ["input", "model"]
        /// The most weights one layer may have (2^26, as exports allow).
        static let maxLayerWeights = 1 << 26

        /// What flows between layers: the shape of one example, its integer format (nil once
        /// a layer leaves the integer grid) and the quantizer that set it.
        struct State {
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
            return WeightQuantizerSpec(kind: config.quantizer, weightBits: w.weightBits ?? config.weightBits,
                                       accumulatorBits: config.quantizer == .qat ? 32 : p)
        }

        mutating func build(_ nodes: [ModelDescription.Node], prefix: String, state: inout State) throws -> [any Layer] {
            var layers: [any Layer] = []
            for node in nodes {
                let name = prefix + node.name
                guard names.insert(name).inserted else {
                    throw A2QError("two layers are named \(name)",
                                   remedy: "give every layer a name that is unique inside its block ('residual', 'body' and 'shortcut' are taken inside a residual)")
                }
                func requireImage() throws {
                    guard state.shape.count == 3 else {
                        throw A2QError("\(name) takes [channels, height, width] but gets \(describe(state.shape))")
                    }
                }
                switch node {
                case .conv(let w):
                    try requireImage()
                    let (c, h, wd) = (state.shape[0], state.shape[1], state.shape[2])
                    let out = w.out ?? classes, padding = w.padding ?? w.kernel / 2
                    guard out > 0, w.kernel > 0, w.stride > 0, padding >= 0, padding < w.kernel, w.kernel <= 15, w.stride <= 8 else {
                        throw A2QError("\(name): out \(out), kernel \(w.kernel), stride \(w.stride), padding \(padding) (need out > 0, kernel 1...15, stride 1...8, padding 0..<kernel)")
                    }
                    let ho = (h + 2 * padding - w.kernel) / w.stride + 1, wo = (wd + 2 * padding - w.kernel) / w.stride + 1
                    guard h + 2 * padding >= w.kernel, wd + 2 * padding >= w.kernel, ho > 0, wo > 0 else {
                        throw A2QError("\(name): a \(w.kernel)×\(w.kernel) kernel does not fit its input \(describe(state.shape))")
                    }
                    try requireQuantizedInput(name, state)
                    try requireSize(name, out * c * w.kernel * w.kernel)
                    let layer = try Conv2d(name: name, inChannels: c, outChannels: out, kernelSize: w.kernel, stride: w.stride,
                                           padding: padding, bias: w.bias, quantizer: spec(name, w), input: state.format, layout: &layout)
                    layers.append(layer)
                    quantizedLayers.append(QuantizedLayer(name: name, kind: .conv2d, layer: layer, quantizer: layer.quantizer,
                                                          input: state.format, inputQuantizer: state.quantizer))
                    state = State(shape: [out, ho, wo], format: nil, quantizer: nil)
                case .linear(let w):
                    guard state.shape.count == 1 else {
                        throw A2QError("\(name) takes a flat input but gets \(describe(state.shape))",
                                       remedy: "put a flatten (or a globalavgpool) before it")
                    }
                    let out = w.out ?? classes
                    guard out > 0 else { throw A2QError("\(name): out must be positive (got \(out))") }
                    try requireQuantizedInput(name, state)
                    try requireSize(name, out * state.shape[0])
                    let layer = try Linear(name: name, inputs: state.shape[0], outputs: out, bias: w.bias, quantizer: spec(name, w),
                                           input: state.format, layout: &layout)
                    layers.append(layer)
                    quantizedLayers.append(QuantizedLayer(name: name, kind: .linear, layer: layer, quantizer: layer.quantizer,
                                                          input: state.format, inputQuantizer: state.quantizer))
                    state = State(shape: [out], format: nil, quantizer: nil)
                case .batchNorm:
                    guard state.shape.count == 3 || state.shape.count == 1 else {
                        throw A2QError("\(name) takes [channels, height, width] or [features] but gets \(describe(state.shape))")
                    }
                    layers.append(BatchNorm(name: name, channels: state.shape[0], layout: &layout))
                    state.format = nil
                    state.quantizer = nil
                case .relu:
                    layers.append(ReLU(name: name))
                case .quant(_, let bits, let signed):
                    guard quantized else { continue }
                    let format = InputFormat(bits: bits ?? config.actBits, signed: signed)
                    guard (2...16).contains(format.bits) else { throw A2QError("\(name): bits \(format.bits) is outside 2...16") }
                    let q = ActivationQuantizer(name: name, format: format, layout: &layout)
                    // ReLU then an unsigned quantizer: one fused pass (same values, see ActivationQuantizer).
                    if let relu = layers.last as? ReLU, !format.signed {
                        relu.passesThrough = true
                        q.rectifiesInput = true
                    }
                    layers.append(q)
                    activations.append(q)
                    state.format = format
                    state.quantizer = q
                case .maxPool(_, let kernel, let stride):
                    try requireImage()
                    let s = stride ?? kernel
                    guard kernel > 0, s > 0, state.shape[1] >= kernel, state.shape[2] >= kernel else {
                        throw A2QError("\(name): a \(kernel)×\(kernel) max pool (stride \(s)) does not fit its input \(describe(state.shape))")
                    }
                    layers.append(MaxPool2d(name: name, kernelSize: kernel, stride: s))
                    state.shape = [state.shape[0], (state.shape[1] - kernel) / s + 1, (state.shape[2] - kernel) / s + 1]
                case .globalAvgPool:
                    try requireImage()
                    layers.append(GlobalAvgPool(name: name))
                    state = State(shape: [state.shape[0]], format: nil, quantizer: nil)
                case .flatten:
                    layers.append(Flatten(name: name))
                    state.shape = [state.shape.reduce(1, *)]
                case .sequential(_, let nodes):
                    guard !nodes.isEmpty else { throw A2QError("\(name): a sequential needs at least one layer") }
                    layers.append(Sequential(name: name, layers: try build(nodes, prefix: name + ".", state: &state)))
                case .residual(_, let body, let shortcut, let after):
                    guard !body.isEmpty else { throw A2QError("\(name): a residual needs a body") }
                    // The block's own containers take these names (no file name has a dot, so they are free).
                    for part in ["residual", "body"] + (shortcut == nil ? [] : ["shortcut"]) { names.insert("\(name).\(part)") }
                    let entry = state
                    var bodyState = entry
                    let bodyLayers = try build(body, prefix: name + ".", state: &bodyState)
                    var shortcutState = entry
                    var shortcutNetwork: Sequential?
                    if let shortcut, !shortcut.isEmpty {
                        shortcutNetwork = Sequential(name: name + ".shortcut", layers: try build(shortcut, prefix: name + ".shortcut.", state: &shortcutState))
                    }
                    guard bodyState.shape == shortcutState.shape else {
                        throw A2QError("residual \(name): its body gives \(describe(bodyState.shape)) but its shortcut gives \(describe(shortcutState.shape))",
                                       remedy: "give the shortcut a strided 1×1 conv to the body's shape, or change the body")
                    }
                    if quantized {
                        guard bodyState.format != nil, shortcutState.format != nil else {
                            let which = bodyState.format == nil ? "body" : "shortcut"
                            throw A2QError("residual \(name): its \(which) does not end in quantized values, so the add has no integer form",
                                           remedy: "end the \(which) with a quant layer (signed when no ReLU precedes it)")
                        }
                    }
                    let residual = Residual(name: name + ".residual", body: Sequential(name: name + ".body", layers: bodyLayers),
                                            shortcut: shortcutNetwork)
                    state = State(shape: bodyState.shape, format: nil, quantizer: nil)
                    let afterLayers = try build(after, prefix: name + ".", state: &state)
                    layers.append(afterLayers.isEmpty ? residual : Sequential(name: name, layers: [residual] + afterLayers))
                }
            }
            return layers
        }

        func requireSize(_ name: String, _ weights: Int) throws {
            guard weights <= Builder.maxLayerWeights else {
                throw A2QError("\(name) would have \(weights) weights, more than the \(Builder.maxLayerWeights) a layer may have",
                               remedy: "use fewer output channels or a smaller input (a pool or a strided conv before it)")
            }
        }

        func requireQuantizedInput(_ name: String, _ state: State) throws {
            guard quantized, state.format == nil else { return }
            throw A2QError("\(name): its input is not quantized, so it has no integer form",
                           remedy: "put a quant layer before it")
        }
    }
}
