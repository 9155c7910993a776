import A2QCore
import A2QNN
import A2QQuant

/// Builds the named models layer for layer as the benchmarks define them, with an 8-bit
/// unsigned image input quantizer and an N-bit activation quantizer after every ReLU
/// (quantized builds only). The first layer is `conv1` (`fc1` for the mlp), the last is the
/// classifier.
public enum ModelBuilder {
    /// Input image geometry of Fashion-MNIST.
    public static let imageSize = (height: 28, width: 28)

    /// Layer names that carry weights, in order.
    public static func weightLayerNames(_ name: ModelName) -> [String] {
        switch name {
        case .mlp: return ["fc1", "fc2", "fc3"]
        case .cnn, .cnnBN: return ["conv1", "conv2", "fc1", "fc2"]
        }
    }

    /// The weight quantizer spec of each layer under `config` (float for a float build).
    public static func specs(for config: TrainConfig, quantized: Bool) throws -> [String: WeightQuantizerSpec] {
        let names = weightLayerNames(config.model)
        if let unknown = config.layerAccumulatorBits.keys.sorted().first(where: { !names.contains($0) }) {
            throw A2QError("layer-accumulator-bits names '\(unknown)', which \(config.model.rawValue) does not have",
                           remedy: "its weight layers are \(names.joined(separator: ", "))")
        }
        var specs: [String: WeightQuantizerSpec] = [:]
        for (index, layer) in names.enumerated() {
            let edge = index == 0 || index == names.count - 1
            guard quantized, config.quantizer != .float else { specs[layer] = .float; continue }
            let p = config.layerAccumulatorBits[layer] ?? config.accumulatorBits
            if edge && config.firstLast == .unconstrained {
                specs[layer] = WeightQuantizerSpec(kind: .qat, weightBits: 8, accumulatorBits: 32)
            } else {
                specs[layer] = WeightQuantizerSpec(kind: config.quantizer, weightBits: config.weightBits,
                                                   accumulatorBits: config.quantizer == .qat ? 32 : p)
            }
        }
        return specs
    }

    /// Builds `config.model`; `quantized: false` gives the float network of the same shape
    /// (no activation quantizers), used by the float pre-training phase.
    public static func build(_ config: TrainConfig, quantized: Bool, classes: Int = 10) throws -> Model {
        let specs = try specs(for: config, quantized: quantized)
        let withQuantizers = quantized && config.quantizer != .float
        var layout = ParameterLayout()
        var layers: [any Layer] = []
        var quantizedLayers: [QuantizedLayer] = []
        var activations: [ActivationQuantizer] = []
        var format: InputFormat? = nil
        let actFormat = InputFormat(bits: config.actBits, signed: false)

        func input() {
            guard withQuantizers else { return }
            let q = ActivationQuantizer(name: "input", format: InputFormat(bits: 8, signed: false), fixedScale: 1 / 255)
            layers.append(q)
            format = q.format
        }
        func activation(_ name: String) {
            guard withQuantizers else { return }
            let q = ActivationQuantizer(name: name, format: actFormat, layout: &layout)
            // ReLU then an unsigned quantizer: one fused pass (same values, see ActivationQuantizer).
            if let relu = layers.last as? ReLU, !actFormat.signed {
                relu.passesThrough = true
                q.rectifiesInput = true
            }
            layers.append(q)
            activations.append(q)
            format = q.format
        }
        func linear(_ name: String, _ inputs: Int, _ outputs: Int) throws {
            let spec = specs[name] ?? .float
            let layer = try Linear(name: name, inputs: inputs, outputs: outputs, quantizer: spec, input: format, layout: &layout)
            layers.append(layer)
            quantizedLayers.append(QuantizedLayer(name: name, kind: .linear, layer: layer, quantizer: layer.quantizer, input: format))
        }
        func conv(_ name: String, _ inputs: Int, _ outputs: Int) throws {
            let spec = specs[name] ?? .float
            let layer = try Conv2d(name: name, inChannels: inputs, outChannels: outputs, kernelSize: 3, padding: 1,
                                   quantizer: spec, input: format, layout: &layout)
            layers.append(layer)
            quantizedLayers.append(QuantizedLayer(name: name, kind: .conv2d, layer: layer, quantizer: layer.quantizer, input: format))
        }
        func batchNorm(_ name: String, _ channels: Int) {
            layers.append(BatchNorm(name: name, channels: channels, layout: &layout))
        }

        input()
        switch config.model {
        case .mlp:
            layers.append(Flatten(name: "flatten"))
            try linear("fc1", 784, 256); layers.append(ReLU(name: "relu1")); activation("act1")
            try linear("fc2", 256, 256); layers.append(ReLU(name: "relu2")); activation("act2")
            try linear("fc3", 256, classes)
        case .cnn, .cnnBN:
            let bn = config.model == .cnnBN
            try conv("conv1", 1, 32); if bn { batchNorm("bn1", 32) }
            layers.append(ReLU(name: "relu1")); activation("act1")
            layers.append(MaxPool2d(name: "pool1", kernelSize: 2))
            try conv("conv2", 32, 64); if bn { batchNorm("bn2", 64) }
            layers.append(ReLU(name: "relu2")); activation("act2")
            layers.append(MaxPool2d(name: "pool2", kernelSize: 2))
            layers.append(Flatten(name: "flatten"))
            try linear("fc1", 64 * 7 * 7, 128); if bn { batchNorm("bn3", 128) }
            layers.append(ReLU(name: "relu3")); activation("act3")
            try linear("fc2", 128, classes)
        }
        let network = Sequential(layers: layers, layout: layout)
        return Model(name: config.model, network: network, quantizedLayers: quantizedLayers,
                     activationQuantizers: activations, classes: classes)
    }
}
