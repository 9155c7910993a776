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
    /// What the network is for (`"task"` in a file; default classification): a classifier ends
    /// in one score per class, a restoration network in an image (`[C, H·r, W·r]` for an input
    /// `[C, H, W]`).
    public var task: TaskKind = .classification
    /// How the float weights start (`"init"` in a file; default `layers`, each layer's own).
    public var initialization: ModelInitialization = .layers

    public static let formatName = "a2q-model"

    public init(name: String, layers: [Node], task: TaskKind = .classification, initialization: ModelInitialization = .layers) {
        self.name = name
        self.layers = layers
        self.task = task
        self.initialization = initialization
    }

    /// One layer or block: an op of one of the kinds `OpRegistry` lists (`Ops/`, one file per
    /// kind), which decodes its own fields.
    public struct Node: Codable, Sendable, Equatable {
        public var op: any ModelOp

        public init(_ op: any ModelOp) { self.op = op }

        public var name: String { op.name }

        public static func == (a: Node, b: Node) -> Bool { a.op.isEqual(to: b.op) }

        /// The `type` values a file may use.
        public static var types: [String] { OpRegistry.types }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: FieldKey.self)
            let type = try c.decode(String.self, forKey: FieldKey("type"))
            let name = try c.decode(String.self, forKey: FieldKey("name"))
            guard !name.isEmpty, !name.contains("."), !name.contains("/") else {
                throw A2QError("layer name '\(name)' must be non-empty and contain no '.' or '/' (blocks add the prefixes)")
            }
            guard let kind = OpRegistry.byType[type] else {
                throw A2QError("layer '\(name)' has the unknown type '\(type)'", remedy: "types: \(Node.types.joined(separator: ", "))")
            }
            op = try kind.init(name: name, fields: ModelFileFields(container: c))
        }

        public func encode(to encoder: Encoder) throws {
            var fields = ModelFileFieldsEncoder(container: encoder.container(keyedBy: FieldKey.self))
            try fields.set("type", type(of: op).type)
            try fields.set("name", op.name)
            try op.encode(to: &fields)
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
        /// A convolution's groups of input and output channels (1; the input's channel count:
        /// depthwise). Each output channel sees `in / groups` input channels.
        public var groups = 1
        public var bias = true
        /// nil: the run's policy (`--first-last`: all but the first and last weight layer).
        public var constrained: Bool?
        /// Per-layer M and P (nil: `--weight-bits`, `--accumulator-bits`).
        public var weightBits: Int?
        public var accumulatorBits: Int?

        public init(name: String, out: Int?, kernel: Int = 1, stride: Int = 1, padding: Int? = nil, groups: Int = 1,
                    bias: Bool = true, constrained: Bool? = nil, weightBits: Int? = nil, accumulatorBits: Int? = nil) {
            self.name = name
            self.out = out
            self.kernel = kernel
            self.stride = stride
            self.padding = padding
            self.groups = groups
            self.bias = bias
            self.constrained = constrained
            self.weightBits = weightBits
            self.accumulatorBits = accumulatorBits
        }
    }

}

extension ModelDescription.WeightLayer {
    /// Decodes the fields of a `conv` (`geometry`: kernel, stride, padding, groups) or `linear`.
    init(name: String, fields: ModelFileFields, geometry: Bool) throws {
        self.init(name: name, out: try fields.optional("out"),
                  kernel: geometry ? try fields.optional("kernel") ?? 1 : 1,
                  stride: geometry ? try fields.optional("stride") ?? 1 : 1,
                  padding: geometry ? try fields.optional("padding") : nil,
                  groups: geometry ? try fields.optional("groups") ?? 1 : 1,
                  bias: try fields.optional("bias") ?? true,
                  constrained: try fields.optional("constrained"),
                  weightBits: try fields.optional("weight_bits"),
                  accumulatorBits: try fields.optional("accumulator_bits"))
    }

    /// Writes `out`, `bias` (when false) and the quantizer settings.
    func encodeQuantizerFields(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("out", out)
        if !bias { try fields.set("bias", false) }
        try fields.set("constrained", constrained)
        try fields.set("weight_bits", weightBits)
        try fields.set("accumulator_bits", accumulatorBits)
    }
}

extension ModelDescription {
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

    /// The number of class scores the model declares: the `out` of its last layer when that is
    /// a linear layer with an explicit size (imported models); nil when the data decides.
    public var declaredClasses: Int? {
        guard let last = layers.last?.op as? LinearOp else { return nil }
        return last.layer.out
    }

    /// The description as pretty JSON (a model file).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    enum CodingKeys: String, CodingKey { case format, version, name, layers, task, initialization = "init" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decodeIfPresent(String.self, forKey: .format) ?? ModelDescription.formatName
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        name = try c.decode(String.self, forKey: .name)
        layers = try c.decode([Node].self, forKey: .layers)
        if let word = try c.decodeIfPresent(String.self, forKey: .task) {
            guard let task = TaskKind(rawValue: word) else {
                throw A2QError("the model's task '\(word)' is not one of \(TaskKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.task = task
        }
        if let word = try c.decodeIfPresent(String.self, forKey: .initialization) {
            guard let initialization = ModelInitialization(rawValue: word) else {
                throw A2QError("the model's init '\(word)' is not one of \(ModelInitialization.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.initialization = initialization
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(version, forKey: .version)
        try c.encode(name, forKey: .name)
        try c.encode(layers, forKey: .layers)
        if task != .classification { try c.encode(task.rawValue, forKey: .task) }
        if initialization != .layers { try c.encode(initialization.rawValue, forKey: .initialization) }
    }
}
