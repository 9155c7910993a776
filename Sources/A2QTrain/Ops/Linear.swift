import A2QCore
import A2QInteger
import A2QNN
import A2QQuant

/// `linear`: a fully connected layer with its weight quantizer, on a flat input. Model file:
/// `out` (nil: one output per class), `bias` (true), and the quantizer fields of
/// `ModelDescription.WeightLayer`. Integer form: `linear`.
public struct LinearOp: ModelOp, Equatable {
    public static let type = "linear"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerLinear.self]
    public static let isWeightLayer = true
    public var layer: ModelDescription.WeightLayer
    public var name: String { layer.name }

    public init(_ layer: ModelDescription.WeightLayer) { self.layer = layer }

    public init(name: String, fields: ModelFileFields) throws {
        layer = try ModelDescription.WeightLayer(name: name, fields: fields, geometry: false)
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try layer.encodeQuantizerFields(to: &fields)
    }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        guard state.shape.count == 1 else {
            throw A2QError("\(name) takes a flat input but gets \(describe(state.shape))",
                           remedy: "put a flatten (or a globalavgpool) before it")
        }
        let out = layer.out ?? context.classes
        guard out > 0 else { throw A2QError("\(name): out must be positive (got \(out))") }
        try context.requireQuantizedInput(name, state)
        try context.requireSize(name, out * state.shape[0])
        let linear = try Linear(name: name, inputs: state.shape[0], outputs: out, bias: layer.bias, quantizer: context.spec(name, layer),
                                input: state.format, layout: &context.layout)
        context.quantizedLayers.append(QuantizedLayer(name: name, kind: .linear, layer: linear, quantizer: linear.quantizer,
                                                      input: state.format, inputQuantizer: state.quantizer))
        state = ModelBuildContext.State(shape: [out], format: nil, quantizer: nil)
        return [linear]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerLinear(layer: try conversion.weightLayer(name)))
        conversion.format = nil
    }
}

extension ModelDescription.Node {
    /// A `linear` node.
    public static func linear(_ layer: ModelDescription.WeightLayer) -> Self { Self(LinearOp(layer)) }
}

/// `linear` in an integer model: the dot products of `layer`'s integer weights with the
/// flattened input integers in a P-bit register, then `acc · multiplier + offset`.
public struct IntegerLinear: IntegerLayerOperation {
    public static let topologyNames = ["linear"]
    public var layer: IntegerLayer

    public init(layer: IntegerLayer) { self.layer = layer }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        Self(layer: try reader.layer(entry))
    }

    public func topologyEntry() -> [String: Any] { ["op": "linear", "name": layer.name, "shape": layer.shape] }

    public func validate(_ flow: inout IntegerFlow) throws {
        try flow.enter(layer)
        guard flow.shape.reduce(1, *) == layer.shape[1] else {
            throw A2QError("layer \(layer.name): input of \(flow.shape.reduce(1, *)) values does not fit weights \(describe(layer.shape))")
        }
        flow.shape = [layer.shape[0]]
    }
}
