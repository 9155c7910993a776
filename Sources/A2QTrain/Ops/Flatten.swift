import A2QCore
import A2QInteger
import A2QNN

/// `flatten`: `[C, H, W] → [C·H·W]` (row-major; a view). Integer form: `flatten`.
public struct FlattenOp: ModelOp, Equatable {
    public static let type = "flatten"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerFlatten.self]
    public var name: String

    public init(name: String) { self.name = name }
    public init(name: String, fields: ModelFileFields) throws { self.name = name }
    public func encode(to fields: inout ModelFileFieldsEncoder) throws {}

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        state.shape = [state.shape.reduce(1, *)]
        return [Flatten(name: name)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerFlatten())
    }
}

extension ModelDescription.Node {
    /// A `flatten` node.
    public static func flatten(name: String) -> Self { Self(FlattenOp(name: name)) }
}

/// `flatten` in an integer model: `[N, C, H, W] → [N, C·H·W]`; integers stay integers.
public struct IntegerFlatten: IntegerOperation {
    public static let topologyNames = ["flatten"]

    public init() {}
    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self { Self() }
    public func topologyEntry() -> [String: Any] { ["op": "flatten"] }
    public func validate(_ flow: inout IntegerFlow) throws { flow.shape = [flow.shape.reduce(1, *)] }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        values.shape = [values.shape[0], values.shape.dropFirst().reduce(1, *)]
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? {
        builder.flatten()
        return nil
    }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.shape = [writer.shape.reduce(1, *)]
        writer.current = writer.node("Flatten", [writer.current], output: writer.current + ".flatten", attributes: [("axis", .int(1))])
        if let datatype = writer.datatype { writer.annotate(writer.current, datatype: datatype) }
    }
}
