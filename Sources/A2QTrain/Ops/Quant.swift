import A2QCore
import A2QInteger
import A2QNN
import A2QQuant

/// `quant`: an activation quantizer with a learned scale (skipped in float builds). Model
/// file: `bits` (default `--act-bits`, 2...16), `signed` (false; use signed on a residual
/// branch that ends without a ReLU), `range` (absent: the scale is learned; a number R: the
/// fixed range [0, R] of an unsigned quantizer, scale R / (2^bits − 1) — a restoration model's
/// 8-bit output with R = 1 makes its integers the image's pixels). After a ReLU an unsigned quantizer takes over the ReLU
/// (one fused pass, the same values and gradients). Integer form: `quantize`; the image input
/// quantizer that every quantized build starts with is `input`.
public struct QuantOp: ModelOp, Equatable {
    public static let type = "quant"
    public static let integerOperations: [any IntegerOperation.Type] = [IntegerQuantize.self, IntegerInput.self]
    public var name: String
    public var bits: Int?
    public var signed: Bool
    public var range: Float?

    public init(name: String, bits: Int?, signed: Bool, range: Float? = nil) {
        self.name = name
        self.bits = bits
        self.signed = signed
        self.range = range
    }

    public init(name: String, fields: ModelFileFields) throws {
        self.init(name: name, bits: try fields.optional("bits"), signed: try fields.optional("signed") ?? false,
                  range: try fields.optional("range"))
        if let range {
            guard range.isFinite, range > 0, !signed else {
                throw A2QError("\(name): range \(range) must be a positive number, on an unsigned quantizer (the fixed range [0, range])")
            }
        }
    }

    public func encode(to fields: inout ModelFileFieldsEncoder) throws {
        try fields.set("bits", bits)
        if signed { try fields.set("signed", true) }
        try fields.set("range", range)
    }

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        guard context.quantized else { return [] }
        let format = InputFormat(bits: bits ?? context.config.actBits, signed: signed)
        guard (2...16).contains(format.bits) else { throw A2QError("\(name): bits \(format.bits) is outside 2...16") }
        let q = range.map { ActivationQuantizer(name: name, format: format, fixedScale: $0 / Float(format.maximum)) }
            ?? ActivationQuantizer(name: name, format: format, layout: &context.layout)
        // ReLU then an unsigned quantizer: one fused pass (same values, see ActivationQuantizer).
        if let relu = context.previous as? ReLU, !format.signed {
            relu.passesThrough = true
            q.rectifiesInput = true
        }
        context.activations.append(q)
        state.format = format
        state.quantizer = q
        return [q]
    }

    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        guard let q = try conversion.layer(name) as? ActivationQuantizer else { throw A2QError("\(name) is not an activation quantizer") }
        let scale = q.scale(conversion.parameters)
        conversion.ops.append(IntegerQuantize(name: name, format: q.format, scale: scale))
        conversion.format = q.format
        conversion.scale = scale
    }
}

extension ModelDescription.Node {
    /// A `quant` node.
    public static func quant(name: String, bits: Int?, signed: Bool, range: Float? = nil) -> Self {
        Self(QuantOp(name: name, bits: bits, signed: signed, range: range))
    }
}

/// Checks an activation format and scale (1...16 bits, a positive finite scale).
private func checkFormat(_ format: InputFormat, _ scale: Float) throws {
    guard (1...16).contains(format.bits), scale.isFinite, scale > 0 else {
        throw A2QError("an activation quantizer has \(format.bits) bits and scale \(scale) (needs 1...16 bits and a positive scale)")
    }
}

/// `quantize` in an integer model: the next integers `clip(rint(y · (1/scale)), lo, hi)` in
/// float32, round half to even.
public struct IntegerQuantize: IntegerOperation {
    public static let topologyNames = ["quantize"]
    public var name: String
    public var format: InputFormat
    public var scale: Float

    public init(name: String, format: InputFormat, scale: Float) {
        self.name = name
        self.format = format
        self.scale = scale
    }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        let (format, scale) = try entry.format()
        reader.scale = scale
        return Self(name: entry.optionalName, format: format, scale: scale)
    }

    public func topologyEntry() -> [String: Any] {
        ["op": "quantize", "name": name, "bits": format.bits, "signed": format.signed, "scale": Double(scale)]
    }

    public func validate(_ flow: inout IntegerFlow) throws {
        try checkFormat(format, scale)
        flow.format = format
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) {
        path.quantize(&values, format: format, scale: scale)
    }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { builder.quantize(format: format, scale: scale) }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        let inverse: Float = 1 / scale  // float32, as the engine forms it
        let scaled = writer.node("Mul", [writer.current, writer.scalar(inverse, "\(name).inverse_scale")], output: "\(name).scaled")
        writer.current = try writer.integers(scaled, format: format, name: name)
        writer.scale = scale
    }
}

/// `input` in an integer model: the image's pixels are the first integers (`x = pixel`, the
/// float value `pixel · scale`).
public struct IntegerInput: IntegerOperation {
    public static let topologyNames = ["input"]
    public var format: InputFormat
    public var scale: Float

    public init(format: InputFormat, scale: Float) {
        self.format = format
        self.scale = scale
    }

    public static func read(_ entry: TopologyEntry, _ reader: inout TopologyReader) throws -> Self {
        let (format, scale) = try entry.format()
        reader.scale = scale
        return Self(format: format, scale: scale)
    }

    public func topologyEntry() -> [String: Any] {
        ["op": "input", "bits": format.bits, "signed": format.signed, "scale": Double(scale)]
    }

    public func validate(_ flow: inout IntegerFlow) throws {
        try checkFormat(format, scale)
        flow.format = format
    }

    public func run(_ values: inout IntegerActivations, _ path: IntegerReferencePath) { values.scale = scale }

    public func plan(_ builder: inout IntegerPlanBuilder) throws -> String? { builder.input(format: format) }

    public func emit<Writer: ONNXOpWriter>(_ writer: inout Writer) throws {
        writer.current = try writer.integers(writer.current, format: format, name: "input")
        writer.scale = scale
    }
}
