import A2QCore
import A2QInteger
import A2QNN

/// `globalavgpool`: `[C, H, W] → [C]`, the mean of each channel. Integer form: `globalavgpool`,
/// a per-channel sum of integers in a P-bit register (an accumulator `verify` proves and the
/// engine simulates), then `· scale/(H·W)`.
public struct GlobalAvgPoolOp: ModelOp, Equatable {
    public static let type = "globalavgpool"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerGlobalAvgPool.self]
    /// The register width a pool gets (as the unconstrained first and last layers, their own
    /// 32 bits; `--layer-accumulator-bits NAME=P` asks about narrower ones).
    public static let accumulatorBits = 32
    public var name: String

    public init(name: String) { self.name = name }
    public init(name: String, fields: ModelFileFields) throws { self.name = name }
    public func encode(to fields: inout ModelFileFieldsEncoder) throws {}

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        try context.requireImage(name, state)
        state = ModelBuildContext.State(shape: [state.shape[0]], format: nil, quantizer: nil)
        return [GlobalAvgPool(name: name)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerGlobalAvgPool(name: name, accumulatorBits: Self.accumulatorBits))
        conversion.format = nil
    }
}

extension ModelDescription.Node {
    /// A `globalavgpool` node.
    public static func globalAvgPool(name: String) -> Self { Self(GlobalAvgPoolOp(name: name)) }
}

/// `globalavgpool` in an integer model: per image and channel the H·W integers added in
/// row-major order in an `accumulatorBits`-bit register (simulated like a layer's), then the
/// float32 value `Float(sum) · m` with `m = Float(scale) / Float(H·W)` rounded once (`scale`
/// being the input quantizer's). A quantize follows.
public struct IntegerGlobalAvgPool: IntegerOperation {
    public static let topologyNames = ["globalavgpool"]
    public var name: String
    public var accumulatorBits: Int

    public init(name: String, accumulatorBits: Int) {
        self.name = name
        self.accumulatorBits = accumulatorBits
    }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        reader.scale = nil
        return Self(name: entry.optionalName, accumulatorBits: try entry.integer("accumulator_bits", in: 2...62))
    }

    public func topologyEntry() -> [String: Any] { ["op": "globalavgpool", "name": name, "accumulator_bits": accumulatorBits] }

    public func validate(_ flow: inout IntegerFlow) throws {
        guard flow.shape.count == 3 else { throw A2QError("average pool \(name): input \(describe(flow.shape)) is not [C, H, W]") }
        guard let format = flow.format else { throw A2QError("average pool \(name): its input is not quantized") }
        guard (2...62).contains(accumulatorBits) else { throw A2QError("average pool \(name): accumulator width \(accumulatorBits) is outside 2...62") }
        flow.accumulators.append(.pool(PoolAccumulator(name: name, accumulatorBits: accumulatorBits, input: format,
                                                       channels: flow.shape[0], count: flow.shape[1] * flow.shape[2])))
        flow.shape = [flow.shape[0]]
        flow.format = nil
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) { path.averagePool(&values, name: name) }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { "average pooling runs on the reference path" }

    /// The exact integer sum per channel (ReduceSum over H, W), then `· (scale / (H·W))` in
    /// float32, as the engine: not GlobalAveragePool, which divides.
    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        let plane = writer.shape[1] * writer.shape[2]
        writer.shape = [writer.shape[0]]
        let axes = writer.int64Constant("\(name).axes", [2, 3], shape: [2])
        let sum = writer.node("ReduceSum", [writer.current, axes], output: "\(name).sum", attributes: [("keepdims", .int(0))])
        writer.annotate(sum, datatype: "INT\(accumulatorBits)")
        let m = Float(writer.scale) / Float(plane)
        writer.current = writer.node("Mul", [sum, writer.scalar(m, "\(name).multiplier")], output: "\(name).y")
        writer.datatype = nil
    }
}
