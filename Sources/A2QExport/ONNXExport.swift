import A2QCore
import A2QInteger
import A2QQuant
import Foundation
import ONNXProto
import SwiftProtobuf

/// Writes an `IntegerModel` as an ONNX model that other tools run as it is: QONNX (FINN's
/// input, with `Quant` nodes of the `qonnx.custom_op.general` domain) or plain ONNX of standard
/// float32 ops over integer-valued tensors (onnxruntime, no custom ops, no integer kernels).
///
/// The graph computes what a2q's integer engine computes, in the same float32 operations, so
/// that running it gives the engine's class scores: the activations between layers are
/// integer-valued tensors (scale 1), each weight layer multiplies them with its integer weights
/// (a `Quant` or `DequantizeLinear` of scale 1 over an integer initializer, so the layer's
/// output is the exact accumulator, annotated `INT{P}`), then `Mul` by the per-channel
/// multiplier and `Add` the offset (two float32 roundings, as the engine), and the next
/// activation quantizer is `Mul` by `1/scale` followed by a scale-1 quantizer (round half to
/// even, clip). docs/EXPORT.md lists the mapping node by node.
public enum ONNXExport {
    /// The two ONNX flavours.
    public enum Dialect: String, Sendable, CaseIterable {
        case qonnx, onnx
    }

    /// QONNX's custom-op domain.
    public static let qonnxDomain = "qonnx.custom_op.general"
    /// The graph's input: raw pixel values (0…255) as float32, `[batch, C, H, W]`; the batch is
    /// 1 in QONNX files (FINN's convention; qonnx's `ModelWrapper.set_tensor_shape` changes it)
    /// and symbolic in ONNX files.
    public static let inputName = "image"
    /// The graph's output: class scores, `[batch, classes]`.
    public static let outputName = "scores"
    /// A restoration model's output: the output image's pixels (integers 0…255 as float32),
    /// `[batch, C, H·r, W·r]`.
    public static let imageOutputName = "pixels"

    /// The output's name for `model`.
    public static func outputName(of model: IntegerModel) -> String { model.classes > 0 ? outputName : imageOutputName }

    /// The ONNX model of `model`.
    public static func model(_ model: IntegerModel, dialect: Dialect, source: String) throws -> Onnx_ModelProto {
        var writer = Writer(dialect: dialect, builder: ONNXGraphBuilder(name: "a2q-\(model.model)"))
        try writer.add(model)

        var proto = Onnx_ModelProto()
        proto.irVersion = 8
        proto.producerName = "a2q"
        proto.producerVersion = a2qVersion
        proto.docString = "a2q integer model (\(dialect.rawValue)) of \(model.model); input '\(inputName)': raw pixel values 0…255 as float32 [batch, \(model.inputShape.map(String.init).joined(separator: ", "))]; output '\(outputName(of: model))': \(model.classes > 0 ? "class scores" : "the output image's pixels 0…255 as float32")"
        var standard = Onnx_OperatorSetIdProto()
        standard.domain = ""
        standard.version = 13
        proto.opsetImport = [standard]
        if dialect == .qonnx {
            var qonnx = Onnx_OperatorSetIdProto()
            qonnx.domain = qonnxDomain
            qonnx.version = 1
            proto.opsetImport.append(qonnx)
        }
        proto.graph = writer.builder.graph
        proto.metadataProps = try metadata(model, dialect: dialect, source: source)
        return proto
    }

    /// Writes the model to `path` atomically (a temporary file, then a rename).
    public static func write(_ model: IntegerModel, dialect: Dialect, to path: String, source: String) throws {
        let bytes = try self.model(model, dialect: dialect, source: source).serializedData()
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: bytes) else {
            throw A2QError("cannot write \(temporary)", remedy: "check that the folder of --out exists and is writable")
        }
        do { try FileSystem.commit(temporary: temporary, to: path) } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// `metadata_props`: what the file is, and per layer the quantizer, M, N, P, the exact
    /// accumulator range (layer-wide and per channel), p_min and the verify verdict.
    static func metadata(_ model: IntegerModel, dialect: Dialect, source: String) throws -> [Onnx_StringStringEntryProto] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
            var e = Onnx_StringStringEntryProto()
            e.key = key
            e.value = value
            return e
        }
        let verdicts = LayerVerdict.verify(model)
        var entries = [
            entry("a2q.format", dialect.rawValue), entry("a2q.format_version", "1"), entry("a2q.model", model.model),
            entry("a2q.source", (source as NSString).lastPathComponent), entry("a2q.classes", "\(model.classes)"),
            entry("a2q.input", "\(inputName): raw pixel values 0…255 as float32, [batch, \(model.inputShape.map(String.init).joined(separator: ", "))]"),
            entry("a2q.layers", String(decoding: try encoder.encode(verdicts.map(\.name)), as: UTF8.self)),
            entry("a2q.overflow_free", verdicts.allSatisfy(\.overflowFree) ? "1" : "0"),
        ]
        for verdict in verdicts {
            entries.append(entry("a2q.layer.\(verdict.name)", String(decoding: try encoder.encode(verdict), as: UTF8.self)))
        }
        let exactness = Exactness.of(model, verdicts: verdicts)
        entries.append(entry("a2q.float32_exact", exactness.allSatisfy(\.float32Exact) ? "1" : "0"))
        entries.append(entry("a2q.exactness", Exactness.statement))
        for layer in exactness {
            entries.append(entry("a2q.exactness.\(layer.name)", String(decoding: try encoder.encode(layer), as: UTF8.self)))
        }
        return entries
    }

    /// What makes the file's float32 graph compute the engine's integers exactly, per sum.
    public struct Exactness: Sendable, Codable {
        public var name: String
        /// The largest magnitude any partial sum of the layer's dot products (any subset of its
        /// terms, so any summation order) can reach over every possible input.
        public var partialSumBound: Int64
        /// `partialSumBound ≤ 2^24` (`≤ 2^21` for a window pool, whose sum the graph recovers
        /// from `AveragePool`'s mean): float32 holds every partial sum exactly, whatever the order
        /// and the kernel (FMA or not): the sum is the exact integer.
        public var float32Exact: Bool
        /// The largest magnitude of two of the layer's products added together.
        public var pairSumBound: Int64
        /// `pairSumBound ≤ 32767`: an integer kernel that adds pairs of 8-bit products in 16-bit
        /// lanes (onnxruntime's u8s8 on AVX2 without VNNI, `vpmaddubsw`) cannot saturate.
        public var int16PairsFit: Bool

        enum CodingKeys: String, CodingKey {
            case name, partialSumBound = "partial_sum_bound", float32Exact = "float32_exact"
            case pairSumBound = "pair_sum_bound", int16PairsFit = "int16_pairs_fit"
        }

        public static let statement = """
            Every tensor between layers holds integers in float32; each Conv/Gemm multiplies them with integer \
            weights (DequantizeLinear of int8, scale 1) and each pool sums them (ReduceSum; a window pool's \
            AveragePool mean times kernel², rounded to the nearest integer, which is its exact sum while every \
            window sum stays within 2^21). With no \
            DequantizeLinear on the activations, onnxruntime has no pattern to fuse into its integer kernels: \
            the sums run in float32 and are the exact integers, on any CPU and in any order, where \
            a2q.exactness.<layer>.float32_exact is true (every partial sum below 2^24 in magnitude, bounded from \
            the weights over every possible input). The multipliers, offsets, residual adds and the quantizers \
            (Mul, Round half to even, Clip) are single float32 operations, as in a2q's engine \
            (docs/CHECKPOINT.md, the integer model). int16_pairs_fit says whether an integer kernel adding pairs \
            of 8-bit products in 16-bit lanes could run this layer without saturating.
            """

        /// The weight layers' and pools' bounds, in the integer model's order, from their
        /// verdicts (`LayerVerdict.verify(model)`, computed when not given): 0 lies in every
        /// input range, so each term's extreme has the sign of the whole sum's extreme and any
        /// subset of a channel's terms stays within its [acc_min, acc_max].
        public static func of(_ model: IntegerModel, verdicts: [LayerVerdict]? = nil) -> [Exactness] {
            let verdicts = verdicts ?? LayerVerdict.verify(model)
            // In the verdicts' order; a pool adds its inputs with weight 1.
            let weightMagnitudes = model.accumulators.map { accumulator -> Int64 in
                guard case .layer(let layer) = accumulator else { return 1 }
                return Int64(layer.weights.map { abs(Int($0)) }.max() ?? 0)
            }
            let limits = model.accumulators.map { accumulator -> Int64 in
                guard case .pool(let pool) = accumulator, pool.window != nil else { return 1 << 24 }
                return windowPoolLimit
            }
            return zip(verdicts, zip(weightMagnitudes, limits)).map { verdict, pair in
                let (weightMagnitude, limit) = pair
                let input = InputFormat(bits: verdict.inputBits, signed: verdict.inputSigned)
                let bound = max(abs(verdict.accMin), abs(verdict.accMax))
                let inputMagnitude = max(abs(input.minimum), abs(input.maximum))
                return Exactness(name: verdict.name, partialSumBound: bound, pairSumBound: min(bound, 2 * weightMagnitude * inputMagnitude),
                                 limit: limit)
            }
        }

        /// The largest window sum a window pool's `AveragePool → Mul(kernel²) → Round` recovers
        /// exactly: the mean `fl(S/k²)` (or `fl(S·fl(1/k²))`) times k² is within `3·2^−24·|S|`
        /// (three float32 roundings) of S, below 1/2 for |S| ≤ 2^21, so rounding gives S.
        public static let windowPoolLimit: Int64 = 1 << 21

        init(name: String, partialSumBound: Int64, pairSumBound: Int64, limit: Int64 = 1 << 24) {
            self.name = name
            self.partialSumBound = partialSumBound
            self.pairSumBound = pairSumBound
            float32Exact = partialSumBound <= limit
            int16PairsFit = pairSumBound <= Int64(Int16.max)
        }
    }

    /// Adds the ops of an integer model to a graph, one dialect: each op emits its own nodes
    /// (`IntegerOperation.emit`) through this writer's helpers.
    struct Writer: ONNXOpWriter {
        let dialect: Dialect
        var builder: ONNXGraphBuilder
        private var scalars: [String: String] = [:]
        /// The tensor in flight.
        var current = inputName
        /// The shape of the current activation tensor, without the batch dimension.
        var shape: [Int] = []
        /// The FINN datatype of the current tensor when it holds integers (after a quantizer, and
        /// through max pooling and flattening, which keep integers integers).
        var datatype: String?
        /// The scale of the integers in the current tensor (after an input or quantize op).
        var scale: Float = 1
        var isQONNX: Bool { dialect == .qonnx }
        /// QONNX tools want every tensor's shape: a fixed batch of 1 there, symbolic in ONNX.
        private var batch: Int? { dialect == .qonnx ? 1 : nil }

        init(dialect: Dialect, builder: ONNXGraphBuilder) {
            self.dialect = dialect
            self.builder = builder
        }

        /// Appends a node whose float output has the current `shape` (declared for QONNX).
        @discardableResult
        mutating func emit(_ type: String, _ inputs: [String], output: String, domain: String = "",
                           attributes: [Onnx_AttributeProto] = []) -> String {
            builder.node(type, inputs, output: output, domain: domain, attributes: attributes)
            if dialect == .qonnx { builder.describe(output, batch: batch, shape: shape) }
            return output
        }

        @discardableResult
        mutating func node(_ type: String, _ inputs: [String], output: String, domain: String,
                           attributes: [(String, ONNXAttributeValue)]) -> String {
            emit(type, inputs, output: output, domain: domain, attributes: attributes.map { name, value in
                switch value {
                case .int(let v): return ONNXGraphBuilder.attribute(name, int: v)
                case .ints(let v): return ONNXGraphBuilder.attribute(name, ints: v)
                case .string(let v): return ONNXGraphBuilder.attribute(name, string: v)
                }
            })
        }

        mutating func int64Constant(_ name: String, _ values: [Int], shape: [Int]) -> String {
            builder.integerConstant(name, values.map { Int32(clamping: $0) }, shape: shape, type: .int64)
        }

        mutating func annotate(_ tensor: String, datatype: String) {
            builder.annotate(tensor, datatype: datatype)
        }

        mutating func emit(_ ops: [any IntegerOperation]) throws {
            for op in ops { try op.emit(&self) }
        }

        mutating func add(_ model: IntegerModel) throws {
            builder.input(inputName, batch: batch, shape: model.inputShape)
            shape = model.inputShape
            current = inputName
            try emit(model.ops)
            builder.node("Identity", [current], output: ONNXExport.outputName(of: model))
            builder.output(ONNXExport.outputName(of: model), batch: batch, shape: model.outputShape)
        }

        /// A float32 scalar initializer, shared by name.
        mutating func scalar(_ value: Float, _ name: String) -> String {
            if let existing = scalars[name] { return existing }
            scalars[name] = builder.constant(name, [value], shape: [])
            return name
        }

        /// The integers of `format` nearest to `input` (round half to even, then clip): a
        /// scale-1 `Quant`, or `Round` + `Clip` in float32.
        ///
        /// The ONNX form keeps the activations float32 tensors holding integers, not
        /// `QuantizeLinear`/`DequantizeLinear` pairs: a `DequantizeLinear` in front of a `Conv` or
        /// `Gemm` lets onnxruntime fuse the layer into its integer kernels (`QGemm`,
        /// `QLinearConv`, `MatMulIntegerToFloat`), whose u8s8 path on AVX2 without VNNI adds pairs
        /// of products in saturating 16-bit lanes — another overflow, of the runtime's own. Without
        /// it every dot product runs as a float32 convolution or GEMM over integers, exact while
        /// its partial sums stay below 2^24 (the `float32_exact` metadata), on any CPU.
        mutating func integers(_ input: String, format: InputFormat, name: String) throws -> String {
            let output = "\(name).int"
            let datatype = (format.signed ? "INT" : "UINT") + "\(format.bits)"
            switch dialect {
            case .qonnx:
                emit("Quant", [input, scalar(1, "one"), scalar(0, "zero"), scalar(Float(format.bits), "bits.\(format.bits)")],
                     output: output, domain: qonnxDomain,
                             attributes: [ONNXGraphBuilder.attribute("signed", int: format.signed ? 1 : 0),
                                          ONNXGraphBuilder.attribute("narrow", int: 0),
                                          ONNXGraphBuilder.attribute("rounding_mode", string: "ROUND")])
            case .onnx:
                guard format.bits <= 8 else {
                    throw A2QError("\(name): \(format.bits)-bit activations do not fit the ONNX export's 8-bit activation tensors",
                                   remedy: "export with --format qonnx, or train with --act-bits ≤ 8")
                }
                let lo = Float(format.minimum), hi = Float(format.maximum)
                let rounded = builder.node("Round", [input], output: "\(name).rounded")  // half to even, as the engine
                builder.node("Clip", [rounded, scalar(lo, "\(datatype).min"), scalar(hi, "\(datatype).max")], output: output)
            }
            builder.annotate(output, datatype: datatype)
            self.datatype = datatype
            return output
        }

        /// The integer weights (as a scale-1 quantizer over an integer-valued initializer),
        /// the exact dot products, then `· multiplier + offset`.
        mutating func weightLayer(_ layer: IntegerLayer, input: String) throws -> String {
            let name = layer.name
            let narrow = layer.weights.allSatisfy { $0 > -(Int32(1) << (layer.weightBits - 1)) }
            let weights: String
            switch dialect {
            case .qonnx:
                let stored = builder.constant("\(name).weight", layer.weights.map { Float($0) }, shape: layer.shape)
                weights = builder.node("Quant", [stored, scalar(1, "one"), scalar(0, "zero"), scalar(Float(layer.weightBits), "bits.\(layer.weightBits)")],
                                       output: "\(name).weight.int", domain: qonnxDomain,
                                       attributes: [ONNXGraphBuilder.attribute("signed", int: 1),
                                                    ONNXGraphBuilder.attribute("narrow", int: narrow ? 1 : 0),
                                                    ONNXGraphBuilder.attribute("rounding_mode", string: layer.rounding == "toward_zero" ? "DOWN" : "ROUND")])
                builder.describe(weights, batch: nil, shape: layer.shape, batched: false)
            case .onnx:
                guard layer.weightBits <= 8 else {
                    throw A2QError("\(name): \(layer.weightBits)-bit weights do not fit ONNX's int8 DequantizeLinear",
                                   remedy: "export with --format qonnx, or train with --weight-bits ≤ 8")
                }
                let stored = builder.integerConstant("\(name).weight.q", layer.weights, shape: layer.shape, type: .int8)
                let zero = builder.integerConstant("\(name).weight.zero_point", [0], shape: [], type: .int8)
                weights = builder.node("DequantizeLinear", [stored, scalar(1, "one"), zero], output: "\(name).weight.int")
                builder.annotate(stored, datatype: "INT\(layer.weightBits)")
            }
            builder.annotate(weights, datatype: "INT\(layer.weightBits)")

            let accumulator: String
            let channelShape: [Int]
            switch layer.kind {
            case .conv2d:
                let kernel = layer.shape[2]
                shape = [layer.outChannels, (shape[1] + 2 * layer.padding - kernel) / layer.stride + 1,
                         (shape[2] + 2 * layer.padding - kernel) / layer.stride + 1]
                var attributes = [ONNXGraphBuilder.attribute("kernel_shape", ints: [kernel, kernel]),
                                  ONNXGraphBuilder.attribute("strides", ints: [layer.stride, layer.stride]),
                                  ONNXGraphBuilder.attribute("pads", ints: Array(repeating: layer.padding, count: 4))]
                // Grouped and depthwise: ONNX's `group`, weights [out, in/group, k, k] as stored.
                if layer.groups != 1 { attributes.append(ONNXGraphBuilder.attribute("group", int: layer.groups)) }
                accumulator = emit("Conv", [input, weights], output: "\(name).acc", attributes: attributes)
                channelShape = [layer.outChannels, 1, 1]
            case .linear:
                shape = [layer.outChannels]
                accumulator = emit("Gemm", [input, weights], output: "\(name).acc",
                                           attributes: [ONNXGraphBuilder.attribute("transB", int: 1)])
                channelShape = [layer.outChannels]
            }
            // A tiled layer's output is its outer register (the sum of its tile registers; the
            // per-tile ranges are in the a2q.layer.<name> metadata).
            builder.annotate(accumulator, datatype: "INT\(layer.accumulatorTile == nil ? layer.accumulatorBits : layer.outerAccumulatorBits)")
            let multiplier = builder.constant("\(name).multiplier", layer.multiplier, shape: channelShape)
            let offset = builder.constant("\(name).offset", layer.offset, shape: channelShape)
            let scaled = emit("Mul", [accumulator, multiplier], output: "\(name).scaled")
            return emit("Add", [scaled, offset], output: "\(name).y")
        }
    }
}
