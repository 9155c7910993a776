import A2QCore
import A2QInteger
import A2QNN

/// `residual`: `body(x) + shortcut(x)` (shortcut absent: the identity), then the `after`
/// layers (for example the block's ReLU and quantizer), all named under the block's name and
/// the shortcut's layers under `name.shortcut`. In quantized builds both branches must end in
/// quantized values. Integer form: `residual`, nesting both branches.
public struct ResidualOp: ModelOp, Equatable {
    public static let type = "residual"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerResidual.self]
    public var name: String
    public var body: [ModelDescription.Node]
    public var shortcut: [ModelDescription.Node]?
    public var after: [ModelDescription.Node]

    public init(name: String, body: [ModelDescription.Node], shortcut: [ModelDescription.Node]?, after: [ModelDescription.Node]) {
        self.name = name
        self.body = body
        self.shortcut = shortcut
        self.after = after
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, body: try fields.required("body"), shortcut: try fields.optional("shortcut"),
                  after: try fields.optional("after") ?? [])
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("body", body)
        try fields.set("shortcut", shortcut)
        if !after.isEmpty { try fields.set("after", after) }
    }

    public var children: [(prefix: String, nodes: [ModelDescription.Node])] {
        [(".", body), (".shortcut.", shortcut ?? []), (".", after)]
    }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        guard !body.isEmpty else { throw A2QError("\(name): a residual needs a body") }
        // The block's own containers take these names (no file name has a dot, so they are free).
        for part in ["residual", "body"] + (shortcut == nil ? [] : ["shortcut"]) { context.names.insert("\(name).\(part)") }
        let entry = state
        var bodyState = entry
        let bodyLayers = try context.build(body, prefix: name + ".", state: &bodyState)
        var shortcutState = entry
        var shortcutNetwork: Sequential?
        if let shortcut, !shortcut.isEmpty {
            shortcutNetwork = Sequential(name: name + ".shortcut", layers: try context.build(shortcut, prefix: name + ".shortcut.", state: &shortcutState))
        }
        guard bodyState.shape == shortcutState.shape else {
            throw A2QError("residual \(name): its body gives \(describe(bodyState.shape)) but its shortcut gives \(describe(shortcutState.shape))",
                           remedy: "give the shortcut a strided 1×1 conv to the body's shape, or change the body")
        }
        if context.quantized {
            guard bodyState.format != nil, shortcutState.format != nil else {
                let which = bodyState.format == nil ? "body" : "shortcut"
                throw A2QError("residual \(name): its \(which) does not end in quantized values, so the add has no integer form",
                               remedy: "end the \(which) with a quant layer (signed when no ReLU precedes it)")
            }
        }
        let residual = Residual(name: name + ".residual", body: Sequential(name: name + ".body", layers: bodyLayers),
                                shortcut: shortcutNetwork)
        state = ModelBuildContext.State(shape: bodyState.shape, format: nil, quantizer: nil)
        let afterLayers = try context.build(after, prefix: name + ".", state: &state)
        return [afterLayers.isEmpty ? residual : Sequential(name: name, layers: [residual] + afterLayers)]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        let entry = conversion
        conversion.ops = []
        try conversion.convert(body, prefix: name + ".")
        let bodyOps = conversion.ops, bodyEnd = conversion.format
        conversion.ops = []
        (conversion.format, conversion.scale) = (entry.format, entry.scale)
        var shortcutOps: [any IntegerOperation]?
        if let shortcut, !shortcut.isEmpty {
            try conversion.convert(shortcut, prefix: name + ".shortcut.")
            shortcutOps = conversion.ops
        }
        guard bodyEnd != nil, conversion.format != nil else {
            throw A2QError("residual \(name): a branch does not end in quantized values")
        }
        conversion.ops = entry.ops + [IntegerResidual(name: name + ".residual", body: bodyOps, shortcut: shortcutOps)]
        conversion.format = nil
        try conversion.convert(after, prefix: name + ".")
    }
}

extension ModelDescription.Node {
    /// A `residual` node.
    public static func residual(name: String, body: [ModelDescription.Node], shortcut: [ModelDescription.Node]?,
                                after: [ModelDescription.Node]) -> Self {
        Self(ResidualOp(name: name, body: body, shortcut: shortcut, after: after))
    }
}

/// `residual` in an integer model: both branches start from the same integers `x` and end in
/// integers (`b` at scale `s_b` from the body's last quantize; `c` at `s_c` from the
/// shortcut's, or `x` itself at its own scale when `shortcut` is nil, the identity). The join
/// is the float32 value `Float(b)·s_b + Float(c)·s_c` (each product rounded, then the sum: no
/// fused multiply-add); ReLU and a quantize follow.
public struct IntegerResidual: IntegerOperation {
    public static let topologyNames = ["residual"]
    public var name: String
    public var body: [any IntegerOperation]
    public var shortcut: [any IntegerOperation]?

    public init(name: String, body: [any IntegerOperation], shortcut: [any IntegerOperation]?) {
        self.name = name
        self.body = body
        self.shortcut = shortcut
    }

    public var branches: [[any IntegerOperation]] { [body] + (shortcut.map { [$0] } ?? []) }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        guard let body = try entry.list("body") else {
            throw A2QError("\(entry.path): topology entry \(entry.index) (residual) has no list of body entries")
        }
        let shortcut = try entry.list("shortcut").map { try reader.branch($0).ops }
        let bodyOps = try reader.branch(body).ops
        reader.scale = nil
        return Self(name: entry.optionalName, body: bodyOps, shortcut: shortcut)
    }

    public func topologyEntry() -> [String: Any] {
        var item: [String: Any] = ["op": "residual", "name": name, "body": body.map { $0.topologyEntry() }]
        if let shortcut { item["shortcut"] = shortcut.map { $0.topologyEntry() } }
        return item
    }

    public func validate(_ flow: inout IntegerFlow) throws {
        guard flow.format != nil else { throw A2QError("residual \(name): its input is not quantized") }
        let bodyEnd = try flow.branch(body)
        let shortcutEnd = try shortcut.map { try flow.branch($0) } ?? flow
        guard bodyEnd.format != nil, shortcutEnd.format != nil else {
            throw A2QError("residual \(name): its \(bodyEnd.format == nil ? "body" : "shortcut") does not end in a quantize")
        }
        guard bodyEnd.shape == shortcutEnd.shape else {
            throw A2QError("residual \(name): body gives \(describe(bodyEnd.shape)), shortcut \(describe(shortcutEnd.shape))")
        }
        flow.shape = bodyEnd.shape
        flow.format = nil
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        var a = values
        path.run(body, &a)
        var b = values
        if let shortcut { path.run(shortcut, &b) }
        let (sa, sb) = (a.scale, b.scale)
        for i in 0..<a.x.count {
            let p = a.x[i] * sa, q = b.x[i] * sb
            a.x[i] = p + q
        }
        values = IntegerActivations(x: a.x, shape: a.shape, scale: 1)
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { "residual blocks run on the reference path" }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        let entry = (current: writer.current, shape: writer.shape, datatype: writer.datatype, scale: writer.scale)
        try writer.emit(body)
        let (b, bodyScale, bodyShape) = (writer.current, writer.scale, writer.shape)
        (writer.current, writer.shape, writer.datatype, writer.scale) = entry
        if let shortcut { try writer.emit(shortcut) }
        let (c, shortcutScale) = (writer.current, writer.scale)
        writer.shape = bodyShape
        // float32(b)·s_b + float32(c)·s_c: two products, then the sum (as the engine).
        let p = writer.node("Mul", [b, writer.scalar(bodyScale, "\(name).body_scale")], output: "\(name).body")
        let q = writer.node("Mul", [c, writer.scalar(shortcutScale, "\(name).shortcut_scale")], output: "\(name).shortcut")
        writer.current = writer.node("Add", [p, q], output: "\(name).sum")
        writer.datatype = nil
    }
}
