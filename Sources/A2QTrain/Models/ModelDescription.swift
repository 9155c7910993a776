import A2QCore
import Foundation

/// A network as data: the tree of layers that `ModelBuilder` turns into a `Model`. The
/// built-in architectures are descriptions (`BuiltInModels`), and `--model PATH.json` reads
/// one from a model file (format in the README, "Model files"; examples in `Launch/models/`).
///
/// Channel and feature counts of a layer's input are inferred from the image shape, so a file
/// names only output sizes. Names of leaves are local; a `sequential` or `residual` prefixes
/// the names inside it with its own (`stage2.block1.conv1`), and those full names are the
/// parameter, checkpoint and integer-layer names.
public struct ModelDescription: Codable, Sendable, Equatable {
    /// The file's format tag and version (`a2q-model`, 1).
    public var format = ModelDescription.formatName
    public var version = 1
    /// The network's name (run names, checkpoints).
    public var name: String
    /// The layers after the 8-bit image input quantizer, in order.
    public var layers: [Node]

    public static let formatName = "a2q-model"

    public init(name: String, layers: [Node]) {
        self.name = name
        self.layers = layers
    }

    /// One layer or block.
    public indirect enum Node: Codable, Sendable, Equatable {
        case conv(WeightLayer)
        case linear(WeightLayer)
        case batchNorm(name: String)
        case relu(name: String)
        /// An activation quantizer (skipped in float builds): `bits` defaults to `--act-bits`;
        /// unsigned unless `signed` (use signed on a residual branch that ends without a ReLU).
        case quant(name: String, bits: Int?, signed: Bool)
        case maxPool(name: String, kernel: Int, stride: Int?)
        case globalAvgPool(name: String)
        case flatten(name: String)
        case sequential(name: String, layers: [Node])
        /// `body(x) + shortcut(x)` (shortcut nil: the identity), then the `after` layers (for
        /// example the block's ReLU and quantizer), all named under `name`; the shortcut's
        /// layers under `name.shortcut`.
        case residual(name: String, body: [Node], shortcut: [Node]?, after: [Node])

        public var name: String {
            switch self {
            case .conv(let w), .linear(let w): return w.name
            case .batchNorm(let n), .relu(let n), .quant(let n, _, _), .maxPool(let n, _, _), .globalAvgPool(let n),
                 .flatten(let n), .sequential(let n, _), .residual(let n, _, _, _):
                return n
            }
        }

        enum Keys: String, CodingKey, CaseIterable {
            case type, name, out, kernel, stride, padding, bias, constrained, weightBits = "weight_bits"
            case accumulatorBits = "accumulator_bits", bits, signed, layers, body, shortcut, after
        }

        /// The `type` values a file may use.
        public static let types = ["conv", "linear", "batchnorm", "relu", "quant", "maxpool", "globalavgpool", "flatten",
                                   "sequential", "residual"]

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            let type = try c.decode(String.self, forKey: .type)
            let name = try c.decode(String.self, forKey: .name)
            guard !name.isEmpty, !name.contains("."), !name.contains("/") else {
                throw A2QError("layer name '\(name)' must be non-empty and contain no '.' or '/' (blocks add the prefixes)")
            }
            switch type {
            case "conv", "linear":
                let w = WeightLayer(
                    name: name, out: try c.decodeIfPresent(Int.self, forKey: .out),
                    kernel: try c.decodeIfPresent(Int.self, forKey: .kernel) ?? 1,
                    stride: try c.decodeIfPresent(Int.self, forKey: .stride) ?? 1,
                    padding: try c.decodeIfPresent(Int.self, forKey: .padding),
                    bias: try c.decodeIfPresent(Bool.self, forKey: .bias) ?? true,
                    constrained: try c.decodeIfPresent(Bool.self, forKey: .constrained),
                    weightBits: try c.decodeIfPresent(Int.self, forKey: .weightBits),
                    accumulatorBits: try c.decodeIfPresent(Int.self, forKey: .accumulatorBits))
                self = type == "conv" ? .conv(w) : .linear(w)
            case "batchnorm": self = .batchNorm(name: name)
            case "relu": self = .relu(name: name)
            case "quant":
                self = .quant(name: name, bits: try c.decodeIfPresent(Int.self, forKey: .bits),
                              signed: try c.decodeIfPresent(Bool.self, forKey: .signed) ?? false)
            case "maxpool":
                self = .maxPool(name: name, kernel: try c.decodeIfPresent(Int.self, forKey: .kernel) ?? 2,
                                stride: try c.decodeIfPresent(Int.self, forKey: .stride))
            case "globalavgpool": self = .globalAvgPool(name: name)
            case "flatten": self = .flatten(name: name)
            case "sequential": self = .sequential(name: name, layers: try c.decode([Node].self, forKey: .layers))
            case "residual":
                self = .residual(name: name, body: try c.decode([Node].self, forKey: .body),
                                 shortcut: try c.decodeIfPresent([Node].self, forKey: .shortcut),
                                 after: try c.decodeIfPresent([Node].self, forKey: .after) ?? [])
            default:
                throw A2QError("layer '\(name)' has the unknown type '\(type)'", remedy: "types: \(Node.types.joined(separator: ", "))")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(name, forKey: .name)
            switch self {
            case .conv(let w), .linear(let w):
                if case .conv = self {
                    try c.encode("conv", forKey: .type)
                    try c.encode(w.kernel, forKey: .kernel)
                    try c.encode(w.stride, forKey: .stride)
                    try c.encodeIfPresent(w.padding, forKey: .padding)
                } else {
                    try c.encode("linear", forKey: .type)
                }
                try c.encodeIfPresent(w.out, forKey: .out)
                if !w.bias { try c.encode(false, forKey: .bias) }
                try c.encodeIfPresent(w.constrained, forKey: .constrained)
                try c.encodeIfPresent(w.weightBits, forKey: .weightBits)
                try c.encodeIfPresent(w.accumulatorBits, forKey: .accumulatorBits)
            case .batchNorm: try c.encode("batchnorm", forKey: .type)
            case .relu: try c.encode("relu", forKey: .type)
            case .quant(_, let bits, let signed):
                try c.encode("quant", forKey: .type)
                try c.encodeIfPresent(bits, forKey: .bits)
                if signed { try c.encode(true, forKey: .signed) }
            case .maxPool(_, let kernel, let stride):
                try c.encode("maxpool", forKey: .type)
                try c.encode(kernel, forKey: .kernel)
                try c.encodeIfPresent(stride, forKey: .stride)
            case .globalAvgPool: try c.encode("globalavgpool", forKey: .type)
            case .flatten: try c.encode("flatten", forKey: .type)
            case .sequential(_, let layers):
                try c.encode("sequential", forKey: .type)
                try c.encode(layers, forKey: .layers)
            case .residual(_, let body, let shortcut, let after):
                try c.encode("residual", forKey: .type)
                try c.encode(body, forKey: .body)
                try c.encodeIfPresent(shortcut, forKey: .shortcut)
                if !after.isEmpty { try c.encode(after, forKey: .after) }
            }
        }
    }

    /// A convolution or linear layer: output size, geometry, and its quantizer settings.
    public struct WeightLayer: Sendable, Equatable {
        public var name: String
        /// Output channels / features; nil on a linear layer means the number of classes.
        public var out: Int?
        public var kernel = 1
        public var stride = 1
        /// nil: `kernel / 2` ("same" for odd kernels at stride 1).
        public var padding: Int?
        public var bias = true
        /// nil: the run's policy (`--first-last`: all but the first and last weight layer).
        public var constrained: Bool?
        /// Per-layer M and P (nil: `--weight-bits`, `--accumulator-bits`).
        public var weightBits: Int?
        public var accumulatorBits: Int?

        public init(name: String, out: Int?, kernel: Int = 1, stride: Int = 1, padding: Int? = nil, bias: Bool = true,
                    constrained: Bool? = nil, weightBits: Int? = nil, accumulatorBits: Int? = nil) {
            self.name = name
            self.out = out
            self.kernel = kernel
            self.stride = stride
            self.padding = padding
            self.bias = bias
            self.constrained = constrained
            self.weightBits = weightBits
            self.accumulatorBits = accumulatorBits
        }
    }

    /// Reads and checks a model file.
    public static func load(path: String) throws -> ModelDescription {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw A2QError("cannot read the model file \(path)", remedy: "pass --model with a built-in name (\(ModelName.builtIn.map(\.rawValue).joined(separator: ", "))) or an existing .json file")
        }
        return try decode(data, source: path)
    }

    /// Decodes a description from JSON (`source` names it in messages).
    public static func decode(_ data: Data, source: String) throws -> ModelDescription {
        let description: ModelDescription
        do {
            description = try JSONDecoder().decode(ModelDescription.self, from: data)
        } catch let error as A2QError {
            throw A2QError("\(source): \(error.problem)", remedy: error.remedy)
        } catch let DecodingError.keyNotFound(key, context) {
            throw A2QError("\(source): \(path(context)) has no '\(key.stringValue)'", remedy: "see the README, \"Model files\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw A2QError("\(source): wrong type at \(path(context)): \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            throw A2QError("\(source): \(path(context)): \(context.debugDescription)")
        } catch {
            throw A2QError("\(source) is not a model file: \(error)")
        }
        guard description.format == formatName, description.version == 1 else {
            throw A2QError("\(source): format '\(description.format)' version \(description.version); this a2q reads '\(formatName)' version 1")
        }
        guard !description.layers.isEmpty else { throw A2QError("\(source): the model has no layers") }
        return description
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return text.isEmpty ? "the file" : text
    }

    /// The description as pretty JSON (a model file).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    enum CodingKeys: String, CodingKey { case format, version, name, layers }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decodeIfPresent(String.self, forKey: .format) ?? ModelDescription.formatName
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        name = try c.decode(String.self, forKey: .name)
        layers = try c.decode([Node].self, forKey: .layers)
    }
}
