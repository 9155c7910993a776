import A2QCore
import A2QInteger
import A2QNN

/// `relu`: `max(x, 0)`. Before an unsigned quantizer the two run as one pass (the quantizer
/// applies `max(x, 0)` itself). Integer form: `relu`.
public struct ReLUOp: ModelOp, Equatable {
    public static let type = "relu"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerReLU.self]
    public var name: String

    public init(name: String) { self.name = name }
    public init(name: String, fields: ModelFileFields) throws { self.name = name }
    public func encode(to fields: inout ModelFileFieldsEncoder) throws {}

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        [ReLU(name: name)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        conversion.ops.append(IntegerReLU())
    }
}

extension ModelDescription.Node {
    /// A `relu` node.
    public static func relu(name: String) -> Self { Self(ReLUOp(name: name)) }
}

/// `relu` in an integer model: `y = max(y, 0)` on the requantised values.
public struct IntegerReLU: IntegerOperation {
    public static let topologyNames = ["relu"]

    public init() {}
    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self { Self() }
    public func topologyEntry() -> [String: Any] { ["op": "relu"] }
    public func validate(_ flow: inout IntegerFlow) throws {}
    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) { path.relu(&values) }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? {
        builder.relu()
        return nil
    }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.current = writer.node("Relu", [writer.current], output: writer.current + ".relu")
        writer.datatype = nil
    }
}
