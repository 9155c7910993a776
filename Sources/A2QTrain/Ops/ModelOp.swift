import A2QCore
import A2QInteger
import A2QNN
import A2QQuant
import Foundation

/// One kind of op, everything about it in one file (`Ops/<Op>.swift`): its model-file form
/// (this type: decoding with defaults and checks, encoding), how it builds its float layer and
/// the shape rule that goes with it, its integer form (the `IntegerOperation` types it makes,
/// with their reference execution, export form and ONNX/QONNX nodes), and how a trained layer
/// becomes that integer form. `OpRegistry` lists every kind by its model-file `type`; a piece
/// left out is a compile error, not a `default:` branch.
public protocol ModelOp: Sendable {
    /// The model file's `type` (the registry key).
    static var type: String { get }
    /// The integer operations this op's integer form is made of (the export reader's registry).
    static var integerOperations: [any IntegerOperation.Type] { get }
    /// Whether the op is a weight layer (one `--layer-accumulator-bits` name; the first and
    /// last are the edge layers of `--first-last`).
    static var isWeightLayer: Bool { get }
    /// The op's local name (blocks prefix it).
    var name: String { get }
    /// Decodes a model-file object of this `type` (its `name` already checked).
    init(name: String, fields: ModelFileFields) throws
    /// Writes the op's fields (not `type` and `name`).
    func encode(to fields: inout ModelFileFieldsEncoder) throws
    /// The node lists nested in this op with the prefix their names take.
    var children: [(prefix: String, nodes: [ModelDescription.Node])] { get }
    /// Builds the float layer(s) for values of `state` (the shape rule and every check) and
    /// leaves `state` as the op's output. `name` is the full name.
    func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer]
    /// Appends the integer form of the trained layer(s) `build` made. `name` is the full name.
    func integerForm(_ conversion: inout IntegerConversion, name: String) throws
    /// Whether `other` is the same op with the same fields.
    func isEqual(to other: any ModelOp) -> Bool
}

extension ModelOp {
    public static var isWeightLayer: Bool { false }
    public var children: [(prefix: String, nodes: [ModelDescription.Node])] { [] }
}

extension ModelOp where Self: Equatable {
    public func isEqual(to other: any ModelOp) -> Bool { (other as? Self) == self }
}

/// Every op kind a2q knows: the one list the model-file reader, the export reader and the
/// README's model-file table follow.
public enum OpRegistry {
    public static let ops: [any ModelOp.Type] = [
        ConvOp.self, LinearOp.self, BatchNormOp.self, ReLUOp.self, QuantOp.self, MaxPoolOp.self, AvgPoolOp.self, GlobalAvgPoolOp.self,
        FlattenOp.self, PixelShuffleOp.self, SequentialOp.self, ResidualOp.self,
    ]

    /// The op kinds by model-file `type`.
    public static let byType: [String: any ModelOp.Type] = Dictionary(uniqueKeysWithValues: ops.map { ($0.type, $0) })

    /// The `type` values a model file may use, in the table's order.
    public static var types: [String] { ops.map { $0.type } }

    /// The integer operations of every op kind (reading exports).
    public static let integerOperations = IntegerOperationRegistry(ops.flatMap { $0.integerOperations })
}

/// A model-file object's fields, by name (any op may have its own).
public struct ModelFileFields {
    let container: KeyedDecodingContainer<FieldKey>

    /// The field's value, nil when absent.
    public func optional<T: Decodable>(_ key: String, _ type: T.Type = T.self) throws -> T? {
        try container.decodeIfPresent(T.self, forKey: FieldKey(key))
    }

    /// The field's value; a missing field is an error.
    public func required<T: Decodable>(_ key: String, _ type: T.Type = T.self) throws -> T {
        try container.decode(T.self, forKey: FieldKey(key))
    }
}

/// Where an op writes its model-file fields.
public struct ModelFileFieldsEncoder {
    var container: KeyedEncodingContainer<FieldKey>

    /// Writes `value` under `key` (nothing when nil).
    public mutating func set<T: Encodable>(_ key: String, _ value: T?) throws {
        try container.encodeIfPresent(value, forKey: FieldKey(key))
    }
}

/// A model-file field name (any name, as a configuration key).
public typealias FieldKey = OptionKey
