import A2QCore
import A2QQuant

/// One kind of operation of an integer model. Each requirement is one piece of the op's
/// integer contract — its export form, its shape rule, its reference execution, its place in
/// the int8 plan and its ONNX/QONNX nodes — so an op that leaves one out does not compile.
/// The conforming types live with everything else about their op, one file per op kind
/// (`A2QTrain/Ops`); `IntegerOperationRegistry` maps the export's `op` names to them.
public protocol IntegerOperation: Sendable {
    /// The `op` values of an export's topology this type reads (a weight layer has two,
    /// `conv2d` and `linear`).
    static var topologyNames: [String] { get }
    /// Decodes a topology entry whose `op` is one of `topologyNames`, checking every field.
    static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self
    /// The op's topology entry, `op` included.
    func topologyEntry() -> [String: Any]
    /// The op lists nested in this op (a residual's body and shortcut), in execution order.
    var branches: [[any IntegerOperation]] { get }
    /// The shape rule and the checks that depend on the op's input: turns `flow` (the values
    /// before the op) into the values after it, and adds the op's accumulators.
    func validate(_ flow: inout IntegerFlow) throws
    /// Runs the op on the engine's reference path (exact integers in float32/Float64).
    func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath)
    /// Adds the op to the int8 kernel plan, or returns why the plan cannot run it (the
    /// reference path then runs the model).
    func plan(_ builder: inout IntegerPlanBuilder) throws -> String?
    /// Adds the op's ONNX/QONNX nodes (docs/EXPORT.md), computing what `run` computes.
    func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws
}

extension IntegerOperation {
    public var branches: [[any IntegerOperation]] { [] }

    /// This op and every op nested in it, in execution order.
    public var flattened: [any IntegerOperation] { [self] + branches.flatMap { $0.flatMap(\.flattened) } }
}

/// The values flowing between an integer model's ops while it is validated: the shape of one
/// example, their integer format (nil once an op leaves the integer grid), and the
/// accumulators met so far in execution order.
public struct IntegerFlow: Sendable {
    public var shape: [Int]
    public var format: InputFormat?
    public var accumulators: [Accumulator] = []
    /// Nesting depth of residual branches (at most 64).
    public var depth = 0

    public init(shape: [Int], format: InputFormat?) {
        self.shape = shape
        self.format = format
    }

    /// Validates `ops` in order from this flow.
    public mutating func validate(_ ops: [any IntegerOperation]) throws {
        guard depth <= 64 else { throw A2QError("residual blocks nest deeper than 64 levels") }
        for op in ops { try op.validate(&self) }
    }

    /// Validates a branch that starts from this flow's values (a residual's body or shortcut);
    /// returns the branch's end, and keeps its accumulators.
    public mutating func branch(_ ops: [any IntegerOperation]) throws -> IntegerFlow {
        var inner = self
        inner.depth += 1
        inner.accumulators = []
        try inner.validate(ops)
        accumulators += inner.accumulators
        return inner
    }

    /// Throws unless the values are `[C, H, W]` images.
    public func requireImage(_ what: String) throws {
        guard shape.count == 3 else { throw A2QError("\(what): input \(describe(shape)) is not [C, H, W]") }
    }
}

/// The export's `op` names and the types that read them.
public struct IntegerOperationRegistry: Sendable {
    public let types: [String: any IntegerOperation.Type]

    public init(_ types: [any IntegerOperation.Type]) {
        var map: [String: any IntegerOperation.Type] = [:]
        for type in types {
            for name in type.topologyNames {
                precondition(map[name] == nil, "two integer operations read the topology name \(name)")
                map[name] = type
            }
        }
        self.types = map
    }

    /// The names, sorted (for messages).
    public var names: [String] { types.keys.sorted() }
}

/// An ONNX attribute value, as the op files give them (`ONNXOpWriter.node`).
public enum ONNXAttributeValue: Sendable {
    case int(Int)
    case ints([Int])
    case string(String)
}

/// What an op's `emit` writes into: the graph under construction with the state of the tensor
/// in flight (`current`, its shape without the batch, its FINN datatype when it holds
/// integers, and the scale of those integers). Implemented by A2QExport's writer.
public protocol ONNXOpWriter {
    /// Whether the graph is QONNX (FINN's `Quant` nodes) rather than plain ONNX.
    var isQONNX: Bool { get }
    /// The tensor in flight.
    var current: String { get set }
    var shape: [Int] { get set }
    var datatype: String? { get set }
    var scale: Float { get set }
    /// Appends a node whose float output has the current `shape`; returns the output's name.
    @discardableResult
    mutating func node(_ type: String, _ inputs: [String], output: String, domain: String,
                       attributes: [(String, ONNXAttributeValue)]) -> String
    /// A float32 scalar initializer, shared by name.
    mutating func scalar(_ value: Float, _ name: String) -> String
    /// An int64 initializer (axes, shapes).
    mutating func int64Constant(_ name: String, _ values: [Int], shape: [Int]) -> String
    /// Records `tensor`'s FINN datatype (`INT16`, `UINT8`).
    mutating func annotate(_ tensor: String, datatype: String)
    /// The integers of `format` nearest to `input` (round half to even, clip); sets `datatype`.
    mutating func integers(_ input: String, format: InputFormat, name: String) throws -> String
    /// A weight layer: its integer weights, the exact dot products, `· multiplier + offset`.
    mutating func weightLayer(_ layer: IntegerLayer, input: String) throws -> String
    /// Emits a list of ops from the tensor `current`.
    mutating func emit(_ ops: [any IntegerOperation]) throws
}

extension ONNXOpWriter {
    @discardableResult
    public mutating func node(_ type: String, _ inputs: [String], output: String,
                              attributes: [(String, ONNXAttributeValue)] = []) -> String {
        node(type, inputs, output: output, domain: "", attributes: attributes)
    }
}

/// An op that is a weight layer (`conv2d`, `linear`): the BatchNorm that follows it folds into
/// its requantisation. Both run, plan and export the same way (below); they differ in their
/// shape rule and topology entry.
public protocol IntegerLayerOperation: IntegerOperation {
    var layer: IntegerLayer { get set }
}

extension IntegerLayerOperation {
    /// The dot products in the layer's P-bit register, then `acc · multiplier + offset`.
    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) { path.accumulate(layer, &values) }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { try builder.layer(layer) }

    /// The integer weights, `Conv`/`Gemm` on the integers, `· multiplier + offset`.
    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.current = try writer.weightLayer(layer, input: writer.current)
        writer.datatype = nil
    }
}

extension IntegerFlow {
    /// The checks every weight layer makes on its input (its own values, a quantized input of
    /// its declared format); records it as an accumulator and leaves the integer grid.
    public mutating func enter(_ layer: IntegerLayer) throws {
        try layer.validate()
        guard let format else { throw A2QError("layer \(layer.name): its input is not quantized (no quantize op before it)") }
        guard format == layer.input else {
            throw A2QError("layer \(layer.name): declared input \(layer.input) does not match the previous layer's output \(format)")
        }
        accumulators.append(.layer(layer))
        self.format = nil
    }
}
