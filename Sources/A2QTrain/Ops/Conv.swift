import A2QCore
import A2QInteger
import A2QNN
import A2QQuant

/// `conv`: a square 2-D convolution with its weight quantizer. Model file: `out` (nil: one
/// channel per class), `kernel` (1), `stride` (1), `padding` (kernel / 2), `groups` (1; the
/// input's channel count: depthwise; it must divide the input and output channels), `bias`
/// (true), and the quantizer fields of `ModelDescription.WeightLayer`. The weight is
/// `[out, in/groups, kernel, kernel]`, as in PyTorch and ONNX. Integer form: `conv2d`.
public struct ConvOp: ModelOp, Equatable {
    public static let type = "conv"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerConv.self]
    public static let isWeightLayer = true
    public var layer: ModelDescription.WeightLayer
    public var name: String { layer.name }

    public init(_ layer: ModelDescription.WeightLayer) { self.layer = layer }

    public init(name: String, fields: ModelFileFields) throws {
        layer = try ModelDescription.WeightLayer(name: name, fields: fields, geometry: true)
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("kernel", layer.kernel)
        try fields.set("stride", layer.stride)
        try fields.set("padding", layer.padding)
        if layer.groups != 1 { try fields.set("groups", layer.groups) }
        try layer.encodeQuantizerFields(to: &fields)
    }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        let w = layer
        try context.requireImage(name, state)
        let (c, h, wd) = (state.shape[0], state.shape[1], state.shape[2])
        let out = w.out ?? context.classes, padding = w.padding ?? w.kernel / 2
        guard out > 0, w.kernel > 0, w.stride > 0, padding >= 0, padding < w.kernel, w.kernel <= 15, w.stride <= 8 else {
            throw A2QError("\(name): out \(out), kernel \(w.kernel), stride \(w.stride), padding \(padding) (need out > 0, kernel 1...15, stride 1...8, padding 0..<kernel)")
        }
        guard w.groups > 0, c % w.groups == 0, out % w.groups == 0 else {
            throw A2QError("\(name): groups \(w.groups) must be positive and divide its \(c) input and \(out) output channels",
                           remedy: "groups 1 is an ordinary convolution, groups = the input's channel count (\(c)) a depthwise one")
        }
        let ho = (h + 2 * padding - w.kernel) / w.stride + 1, wo = (wd + 2 * padding - w.kernel) / w.stride + 1
        guard h + 2 * padding >= w.kernel, wd + 2 * padding >= w.kernel, ho > 0, wo > 0 else {
            throw A2QError("\(name): a \(w.kernel)×\(w.kernel) kernel does not fit its input \(describe(state.shape))")
        }
        try context.requireQuantizedInput(name, state)
        try context.requireSize(name, out * (c / w.groups) * w.kernel * w.kernel)
        let conv = try Conv2d(name: name, inChannels: c, outChannels: out, kernelSize: w.kernel, stride: w.stride,
                              padding: padding, groups: w.groups, bias: w.bias, quantizer: context.spec(name, w), input: state.format, layout: &context.layout)
        context.quantizedLayers.append(QuantizedLayer(name: name, kind: .conv2d, layer: conv, quantizer: conv.quantizer,
                                                      input: state.format, inputQuantizer: state.quantizer))
        state = ModelBuildContext.State(shape: [out, ho, wo], format: nil, quantizer: nil)
        return [conv]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerConv(layer: try conversion.weightLayer(name)))
        conversion.format = nil
    }
}

extension ModelDescription.Node {
    /// A `conv` node.
    public static func conv(_ layer: ModelDescription.WeightLayer) -> Self { Self(ConvOp(layer)) }
}

/// `conv2d` in an integer model: the dot products of `layer`'s integer weights with each
/// zero-padded input patch in a P-bit register, then `acc · multiplier + offset`. With
/// `layer.groups` > 1 the weights are `[out, in/groups, k, k]` and output channel `o` reads the
/// input channels of its group `o / (out/groups)`; the topology entry then has `groups`
/// (absent: 1).
public struct IntegerConv: IntegerLayerOperation {
    public static let topologyNames = ["conv2d"]
    public var layer: IntegerLayer

    public init(layer: IntegerLayer) { self.layer = layer }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        Self(layer: try reader.layer(entry))
    }

    public func topologyEntry() -> [String: Any] {
        var entry: [String: Any] = ["op": "conv2d", "name": layer.name, "shape": layer.shape, "stride": layer.stride, "padding": layer.padding]
        if layer.groups != 1 { entry["groups"] = layer.groups }
        return entry
    }

    public func validate(_ flow: inout IntegerFlow) throws {
        try flow.enter(layer)
        guard flow.shape.count == 3, flow.shape[0] == layer.shape[1] * layer.groups else {
            throw A2QError("layer \(layer.name): input \(describe(flow.shape)) does not fit weights \(describe(layer.shape))\(layer.groups == 1 ? "" : " in \(layer.groups) groups")")
        }
        let k = layer.shape[2]
        let shape = [layer.shape[0], (flow.shape[1] + 2 * layer.padding - k) / layer.stride + 1,
                     (flow.shape[2] + 2 * layer.padding - k) / layer.stride + 1]
        guard shape[1] > 0, shape[2] > 0, flow.shape[1] + 2 * layer.padding >= k else {
            throw A2QError("layer \(layer.name): a \(k)×\(k) kernel does not fit its input")
        }
        flow.shape = shape
    }
}
