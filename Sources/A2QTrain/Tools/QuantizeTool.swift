import A2QCheckpoint
import A2QCore
import A2QInteger
import A2QQuant
import Foundation

/// `a2q quantize`: quantize one pre-trained layer from an HDF5 file against an accumulator
/// budget, exactly as a layer is initialised when a float model is converted.
public enum QuantizeTool {
    public struct Options: Sendable {
        public var input: String
        public var output: String
        public var kind: WeightQuantizerKind
        public var weightBits: Int
        public var inputBits: Int
        public var inputSigned: Bool
        public var accumulatorBits: Int
        public var init_: WeightInitMethod
        public var overwrite: Bool

        public init(input: String, output: String, kind: WeightQuantizerKind, weightBits: Int, inputBits: Int,
                    inputSigned: Bool, accumulatorBits: Int, init_: WeightInitMethod, overwrite: Bool = false) {
            self.input = input
            self.output = output
            self.kind = kind
            self.weightBits = weightBits
            self.inputBits = inputBits
            self.inputSigned = inputSigned
            self.accumulatorBits = accumulatorBits
            self.init_ = init_
            self.overwrite = overwrite
        }
    }

    /// The one-line summary (`--json`).
    public struct Summary: Sendable, Codable {
        public var quantizer: String
        public var channels: Int
        public var fanIn: Int
        public var maxL1Norm: Int64
        /// The L1 bound T (null for qat, which has none).
        public var bound: Double?
        public var sparsity: Double
        public var largestPMin: Int
        public var accumulatorBits: Int
        public var allChannelsFit: Bool
        public var output: String
    }

    /// Validates bit widths before any work.
    public static func validate(_ options: Options) throws {
        guard options.kind != .float else {
            throw A2QError("--quantizer float does not quantize", remedy: "choose qat, a2q or a2q+")
        }
        guard (2...16).contains(options.weightBits) else {
            throw A2QError("--weight-bits \(options.weightBits) is out of the supported range 2...16")
        }
        guard (2...16).contains(options.inputBits) else {
            throw A2QError("--input-bits \(options.inputBits) is out of the supported range 2...16")
        }
        guard (2...32).contains(options.accumulatorBits) else {
            throw A2QError("--accumulator-bits \(options.accumulatorBits) is out of the supported range 2...32")
        }
    }

    /// Runs the tool; writes `options.output` atomically (temporary name, then rename).
    public static func run(_ options: Options) throws -> Summary {
        try validate(options)
        let output = URL(fileURLWithPath: options.output)
        if FileManager.default.fileExists(atPath: output.path) && !options.overwrite {
            throw A2QError("\(output.path) already exists", remedy: "choose another --out, or pass --overwrite")
        }
        let file = try HDF5File.openForReading(options.input)
        let info = try file.datasetInfo("weight")
        guard info.shape.count == 2 || info.shape.count == 4, info.shape.allSatisfy({ $0 > 0 }) else {
            throw A2QError("\(options.input): dataset 'weight' has shape \(describe(info.shape))",
                           remedy: "expected [out, in] or [out, in, kh, kw]")
        }
        guard info.type == .float32 || info.type == .float64 else {
            throw A2QError("\(options.input): dataset 'weight' is not floating point", remedy: "store float32 weights")
        }
        let (values, shape) = try file.read("weight", as: Float.self)
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw A2QError("\(options.input): weight element \(bad) is \(values[bad]) (not finite)",
                           remedy: "fix the pre-trained weights; a2q quantizes finite values only")
        }
        let outChannels = shape[0], fanIn = values.count / outChannels
        let format = InputFormat(bits: options.inputBits, signed: options.inputSigned)

        var layout = ParameterLayout()
        let weight = layout.declare("weight", shape: shape, role: .weight)
        let quantizer = try WeightQuantizer(
            spec: WeightQuantizerSpec(kind: options.kind, weightBits: options.weightBits, accumulatorBits: options.accumulatorBits),
            layerName: URL(fileURLWithPath: options.input).lastPathComponent + ":weight", weight: weight,
            outChannels: outChannels, fanIn: fanIn, input: format, layout: &layout)
        let store = ParameterStore(layout: layout)
        let destination = store.value(weight)
        for (i, value) in values.enumerated() { destination[i] = value }
        quantizer.initializeFromFloatWeights(store, method: options.init_)
        let view = try IntegerLayer(quantizer: quantizer, name: URL(fileURLWithPath: options.input).lastPathComponent,
                                    kind: shape.count == 4 ? .conv2d : .linear, parameters: store, input: format,
                                    inputScale: 1, bias: nil)
        let report = view.report

        let temporary = output.path + ".tmp"
        do {
            let out = try HDF5File.create(temporary)
            try report.write(to: out, shape: shape, weightBits: options.weightBits)
            try out.write("scale", quantizer.scales, shape: [outChannels])
            try out.setAttribute("bound", quantizer.bound)
            try out.setAttribute("quantizer", options.kind.rawValue)
            try out.setAttribute("weight_bits", options.weightBits)
            try out.setAttribute("input_bits", options.inputBits)
            try out.setAttribute("input_signed", options.inputSigned)
            try out.setAttribute("accumulator_bits", options.accumulatorBits)
            try out.setAttribute("init", options.init_.rawValue)
            try out.setAttribute("overflow_free", report.overflowFree)
            try out.close()
            try FileSystem.commit(temporary: temporary, to: output.path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        return Summary(quantizer: options.kind.rawValue, channels: outChannels, fanIn: fanIn,
                       maxL1Norm: report.l1Norms.max() ?? 0,
                       bound: quantizer.bound.isFinite ? quantizer.bound : nil,
                       sparsity: report.sparsity, largestPMin: report.minimumBits.max() ?? 0,
                       accumulatorBits: options.accumulatorBits, allChannelsFit: report.overflowFree,
                       output: output.path)
    }
}
