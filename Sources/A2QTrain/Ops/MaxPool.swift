import A2QCore
import A2QInteger
import A2QNN

/// `maxpool`: max over `kernel × kernel` windows (default 2) at `stride` (default the kernel),
/// floor mode. Integer form: `maxpool` (pooling integers is exact).
public struct MaxPoolOp: ModelOp, Equatable {
    public static let type = "maxpool"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerMaxPool.self]
    public var name: String
    public var kernel: Int
    public var stride: Int?

    public init(name: String, kernel: Int, stride: Int?) {
        self.name = name
        self.kernel = kernel
        self.stride = stride
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, kernel: try fields.optional("kernel") ?? 2, stride: try fields.optional("stride"))
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("kernel", kernel)
        try fields.set("stride", stride)
    }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        try context.requireImage(name, state)
        let s = stride ?? kernel
        guard kernel > 0, s > 0, state.shape[1] >= kernel, state.shape[2] >= kernel else {
            throw A2QError("\(name): a \(kernel)×\(kernel) max pool (stride \(s)) does not fit its input \(describe(state.shape))")
        }
        state.shape = [state.shape[0], (state.shape[1] - kernel) / s + 1, (state.shape[2] - kernel) / s + 1]
        return [MaxPool2d(name: name, kernelSize: kernel, stride: s)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerMaxPool(kernel: kernel, stride: stride ?? kernel))
    }
}

extension ModelDescription.Node {
    /// A `maxpool` node.
    public static func maxPool(name: String, kernel: Int, stride: Int?) -> Self { Self(MaxPoolOp(name: name, kernel: kernel, stride: stride)) }
}

/// `maxpool` in an integer model: the max over `kernel × kernel` windows of integers at
/// `stride`, floor mode (no padding; a partial window at the edge is dropped).
public struct IntegerMaxPool: IntegerOperation {
    public static let topologyNames = ["maxpool"]
    public var kernel: Int
    public var stride: Int

    public init(kernel: Int, stride: Int) {
        self.kernel = kernel
        self.stride = stride
    }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        Self(kernel: try entry.integer("kernel", in: 1...64), stride: try entry.integer("stride", in: 1...64))
    }

    public func topologyEntry() -> [String: Any] { ["op": "maxpool", "kernel": kernel, "stride": stride] }

    public func validate(_ flow: inout IntegerFlow) throws {
        guard kernel > 0, stride > 0 else { throw A2QError("max pool with kernel \(kernel) and stride \(stride) (both must be positive)") }
        guard flow.shape.count == 3, flow.shape[1] >= kernel, flow.shape[2] >= kernel else {
            throw A2QError("a \(kernel)×\(kernel) max pool does not fit its input \(describe(flow.shape))")
        }
        flow.shape = [flow.shape[0], (flow.shape[1] - kernel) / stride + 1, (flow.shape[2] - kernel) / stride + 1]
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        let (n, c, h, w) = (values.shape[0], values.shape[1], values.shape[2], values.shape[3])
        let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
        var out = [Float](repeating: 0, count: n * c * ho * wo)
        for p in 0..<(n * c) {
            for i in 0..<ho {
                for j in 0..<wo {
                    var m = -Float.infinity
                    for a in 0..<kernel { for b in 0..<kernel { m = max(m, values.x[p * h * w + (i * stride + a) * w + j * stride + b]) } }
                    out[(p * ho + i) * wo + j] = m
                }
            }
        }
        values.x = out
        values.shape = [n, c, ho, wo]
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { builder.maxPool(kernel: kernel, stride: stride) }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.shape = [writer.shape[0], (writer.shape[1] - kernel) / stride + 1, (writer.shape[2] - kernel) / stride + 1]
        writer.current = writer.node("MaxPool", [writer.current], output: writer.current + ".maxpool",
                                     attributes: [("kernel_shape", .ints([kernel, kernel])), ("strides", .ints([stride, stride]))])
        if let datatype = writer.datatype { writer.annotate(writer.current, datatype: datatype) }
    }
}
