import A2QCore
import A2QInteger
import A2QNN

/// `sequential`: a named list of layers (`layers`), whose names it prefixes with its own. Its
/// integer form is its layers'.
public struct SequentialOp: ModelOp, Equatable {
    public static let type = "sequential"
    public static let integerOperations: [any IntegerOperation.Type] = []
    public var name: String
    public var layers: [ModelDescription.Node]

    public init(name: String, layers: [ModelDescription.Node]) {
        self.name = name
        self.layers = layers
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, layers: try fields.required("layers"))
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws { try fields.set("layers", layers) }

    public var children: [(prefix: String, nodes: [ModelDescription.Node])] { [(".", layers)] }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        guard !layers.isEmpty else { throw A2QError("\(name): a sequential needs at least one layer") }
        return [Sequential(name: name, layers: try context.build(layers, prefix: name + ".", state: &state))]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        try conversion.convert(layers, prefix: name + ".")
    }
}

extension ModelDescription.Node {
    /// A `sequential` node.
    public static func sequential(name: String, layers: [ModelDescription.Node]) -> Self { Self(SequentialOp(name: name, layers: layers)) }
}
