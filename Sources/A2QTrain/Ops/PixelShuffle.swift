import A2QCore
import A2QInteger
import A2QNN

/// `pixelshuffle`: depth to space by `factor` r (ESPCN's upsampling), `[C·r², H, W] → [C, H·r,
/// W·r]` as PyTorch's `PixelShuffle(r)`. A permutation: integers stay integers of the same
/// format. Integer form: `pixelshuffle`; ONNX and QONNX: `DepthToSpace` in `CRD` mode.
public struct PixelShuffleOp: ModelOp, Equatable {
    public static let type = "pixelshuffle"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerPixelShuffle.self]
    public var name: String
    public var factor: Int

    public init(name: String, factor: Int) {
        self.name = name
        self.factor = factor
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, factor: try fields.required("factor"))
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws { try fields.set("factor", factor) }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        try context.requireImage(name, state)
        guard (1...8).contains(factor) else { throw A2QError("\(name): factor \(factor) is outside 1...8") }
        guard let out = PixelShuffle.outputShape(state.shape, factor: factor) else {
            throw A2QError("\(name): its input has \(state.shape[0]) channels, not a multiple of factor² = \(factor * factor)",
                           remedy: "give the layer before it \(factor * factor)·C output channels for C output channels")
        }
        state.shape = out
        return [PixelShuffle(name: name, factor: factor)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerPixelShuffle(factor: factor))
    }
}

extension ModelDescription.Node {
    /// A `pixelshuffle` node.
    public static func pixelShuffle(name: String, factor: Int) -> Self { Self(PixelShuffleOp(name: name, factor: factor)) }
}

/// `pixelshuffle` in an integer model: `y[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]`,
/// exact on integers and on requantised values alike.
public struct IntegerPixelShuffle: IntegerOperation {
    public static let topologyNames = ["pixelshuffle"]
    public var factor: Int

    public init(factor: Int) { self.factor = factor }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        Self(factor: try entry.integer("factor", in: 1...8))
    }

    public func topologyEntry() -> [String: Any] { ["op": "pixelshuffle", "factor": factor] }

    public func validate(_ flow: inout IntegerFlow) throws {
        try flow.requireImage("pixel shuffle")
        guard let out = PixelShuffle.outputShape(flow.shape, factor: factor) else {
            throw A2QError("pixel shuffle by \(factor): input \(describe(flow.shape)) has channels that are not a multiple of \(factor * factor)")
        }
        flow.shape = out
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        let (n, c, h, w) = (values.shape[0], values.shape[1], values.shape[2], values.shape[3])
        var out = [Float](repeating: 0, count: values.x.count)
        values.x.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                guard let xb = x.baseAddress, let yb = y.baseAddress else { return }
                PixelShuffle.shuffle(xb, yb, n: n, channels: c / (factor * factor), height: h, width: w, factor: factor)
            }
        }
        values.x = out
        values.shape = [n, c / (factor * factor), h * factor, w * factor]
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { "pixel shuffle runs on the reference path" }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.shape = [writer.shape[0] / (factor * factor), writer.shape[1] * factor, writer.shape[2] * factor]
        writer.current = writer.node("DepthToSpace", [writer.current], output: writer.current + ".depth_to_space",
                                     attributes: [("blocksize", .int(factor)), ("mode", .string("CRD"))])
        if let datatype = writer.datatype { writer.annotate(writer.current, datatype: datatype) }
    }
}
