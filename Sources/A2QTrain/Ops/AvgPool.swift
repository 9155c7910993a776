import A2QCore
import A2QInteger
import A2QNN

/// `avgpool`: the mean over `kernel × kernel` windows (default 2) at `stride` (default the
/// kernel) with `padding` zeros on every side (default 0, at most kernel/2) that count in the
/// divisor — PyTorch's `nn.AvgPool2d(kernel, stride, padding)` with its default
/// `count_include_pad=True`; floor mode. Its input must be quantized. Integer form: `avgpool`,
/// per window a sum of integers in a P-bit register (an accumulator `verify` proves and the
/// engine simulates), then `· scale/kernel²`; a `quant` follows before the next weight layer.
public struct AvgPoolOp: ModelOp, Equatable {
    public static let type = "avgpool"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerAvgPool.self]
    /// The register width a window pool gets: the global pool's (32 bits;
    /// `--layer-accumulator-bits NAME=P` asks about narrower ones).
    public static let accumulatorBits = GlobalAvgPoolOp.accumulatorBits
    public var name: String
    public var kernel: Int
    /// nil: the kernel.
    public var stride: Int?
    /// nil: 0.
    public var padding: Int?

    public init(name: String, kernel: Int, stride: Int?, padding: Int?) {
        self.name = name
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, kernel: try fields.optional("kernel") ?? 2, stride: try fields.optional("stride"),
                  padding: try fields.optional("padding"))
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("kernel", kernel)
        try fields.set("stride", stride)
        try fields.set("padding", padding)
    }

    /// The window with its defaults filled in.
    public var window: PoolWindow { PoolWindow(kernel: kernel, stride: stride ?? kernel, padding: padding ?? 0) }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        try context.requireImage(name, state)
        let window = self.window
        guard (1...64).contains(window.kernel), (1...64).contains(window.stride), (0...window.kernel / 2).contains(window.padding) else {
            throw A2QError("\(name): an average pool with kernel \(window.kernel), stride \(window.stride) and padding \(window.padding)",
                           remedy: "kernel and stride 1–64, padding 0 to kernel/2 (as PyTorch's nn.AvgPool2d)")
        }
        guard state.shape[1] + 2 * window.padding >= window.kernel, state.shape[2] + 2 * window.padding >= window.kernel else {
            throw A2QError("\(name): a \(window.kernel)×\(window.kernel) average pool (stride \(window.stride), padding \(window.padding)) does not fit its input \(describe(state.shape))")
        }
        try context.requireQuantizedInput(name, state)
        state = ModelBuildContext.State(shape: [state.shape[0], window.outputSize(state.shape[1]), window.outputSize(state.shape[2])],
                                        format: nil, quantizer: nil)
        return [AvgPool2d(name: name, kernelSize: window.kernel, stride: window.stride, padding: window.padding)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerAvgPool(name: name, window: window, accumulatorBits: Self.accumulatorBits))
        conversion.format = nil
    }
}

extension ModelDescription.Node {
    /// An `avgpool` node.
    public static func avgPool(name: String, kernel: Int, stride: Int?, padding: Int?) -> Self {
        Self(AvgPoolOp(name: name, kernel: kernel, stride: stride, padding: padding))
    }
}

/// `avgpool` in an integer model: per image, channel and output position the integers of one
/// `kernel × kernel` window added in row-major order (padding adds nothing) in an
/// `accumulatorBits`-bit register (simulated like a layer's), then the float32 value
/// `Float(sum) · m` with `m = Float(scale) / Float(kernel²)` rounded once (`scale` being the
/// input quantizer's; padded zeros count in the divisor). A quantize follows.
public struct IntegerAvgPool: IntegerOperation {
    public static let topologyNames = ["avgpool"]
    public var name: String
    public var window: PoolWindow
    public var accumulatorBits: Int

    public init(name: String, window: PoolWindow, accumulatorBits: Int) {
        self.name = name
        self.window = window
        self.accumulatorBits = accumulatorBits
    }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        reader.scale = nil
        let window = PoolWindow(kernel: try entry.integer("kernel", in: 1...64), stride: try entry.integer("stride", in: 1...64),
                                padding: try entry.integer("padding", in: 0...32))
        return Self(name: try entry.name(), window: window, accumulatorBits: try entry.integer("accumulator_bits", in: 2...62))
    }

    public func topologyEntry() -> [String: Any] {
        ["op": "avgpool", "name": name, "kernel": window.kernel, "stride": window.stride, "padding": window.padding,
         "accumulator_bits": accumulatorBits]
    }

    public func validate(_ flow: inout IntegerFlow) throws {
        guard flow.shape.count == 3 else { throw A2QError("average pool \(name): input \(describe(flow.shape)) is not [C, H, W]") }
        guard let format = flow.format else { throw A2QError("average pool \(name): its input is not quantized") }
        guard (2...62).contains(accumulatorBits) else { throw A2QError("average pool \(name): accumulator width \(accumulatorBits) is outside 2...62") }
        let (k, s, p) = (window.kernel, window.stride, window.padding)
        guard k > 0, s > 0, p >= 0, p <= k / 2 else {
            throw A2QError("average pool \(name): kernel \(k), stride \(s), padding \(p) (kernel and stride positive, padding 0 to kernel/2)")
        }
        let (h, w) = (flow.shape[1], flow.shape[2])
        guard h + 2 * p >= k, w + 2 * p >= k else {
            throw A2QError("average pool \(name): a \(k)×\(k) window (padding \(p)) does not fit its input \(describe(flow.shape))")
        }
        flow.accumulators.append(.pool(PoolAccumulator(name: name, accumulatorBits: accumulatorBits, input: format, channels: flow.shape[0],
                                                       count: window.largestCount(height: h, width: w), window: window)))
        flow.shape = [flow.shape[0], window.outputSize(h), window.outputSize(w)]
        flow.format = nil
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        path.averagePool(&values, name: name, window: window)
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { "average pooling runs on the reference path" }

    /// `AveragePool` (count_include_pad 1, floor mode), `· kernel²` and `Round`: the exact integer
    /// window sums (`N.sum`, annotated `INT{P}`; exact while every sum is within 2^21, see
    /// `ONNXExport.Exactness.windowPoolLimit`), then `· (scale / kernel²)` in float32, as the engine.
    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        let (k, s, p) = (window.kernel, window.stride, window.padding)
        writer.shape = [writer.shape[0], window.outputSize(writer.shape[1]), window.outputSize(writer.shape[2])]
        let mean = writer.node("AveragePool", [writer.current], output: "\(name).mean",
                               attributes: [("kernel_shape", .ints([k, k])), ("strides", .ints([s, s])), ("pads", .ints([p, p, p, p])),
                                            ("count_include_pad", .int(1)), ("ceil_mode", .int(0))])
        let scaled = writer.node("Mul", [mean, writer.scalar(Float(k * k), "\(name).window_size")], output: "\(name).window_sum")
        let sum = writer.node("Round", [scaled], output: "\(name).sum")
        writer.annotate(sum, datatype: "INT\(accumulatorBits)")
        let m = Float(writer.scale) / Float(k * k)
        writer.current = writer.node("Mul", [sum, writer.scalar(m, "\(name).multiplier")], output: "\(name).y")
        writer.datatype = nil
    }
}
