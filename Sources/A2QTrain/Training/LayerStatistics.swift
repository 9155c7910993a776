import A2QCore
import A2QInteger
import A2QQuant

/// What a run reports per quantized layer: sparsity, L1 usage and the overflow verdict.
public struct LayerStatistics: Sendable, Codable {
    public var name: String
    public var quantizer: String
    public var weightBits: Int
    public var inputBits: Int?
    public var inputSigned: Bool?
    public var accumulatorBits: Int
    /// Fraction of integer weights that are zero.
    public var sparsity: Double
    /// max over channels of ||q||₁ / T (nil when unconstrained).
    public var maxL1Usage: Double?
    /// Largest exact per-channel minimum accumulator width.
    public var pMin: Int?
    /// Whether every channel fits `accumulatorBits` by the exact worst case (nil for float).
    public var overflowFree: Bool?

    enum CodingKeys: String, CodingKey {
        case name, quantizer, weightBits = "weight_bits", inputBits = "input_bits", inputSigned = "input_signed"
        case accumulatorBits = "accumulator_bits", sparsity, maxL1Usage = "max_l1_usage", pMin = "p_min"
        case overflowFree = "overflow_free"
    }

    /// Measures one layer of `model` at its current parameters (through the layer's integer view).
    public init(layer: QuantizedLayer, model: Model) throws {
        let quantizer = layer.quantizer
        name = layer.name
        self.quantizer = quantizer.spec.kind.rawValue
        weightBits = quantizer.spec.weightBits
        inputBits = layer.input?.bits
        inputSigned = layer.input?.signed
        accumulatorBits = quantizer.spec.accumulatorBits
        guard !quantizer.isIdentity, let input = layer.input else {
            sparsity = 0
            return
        }
        let report = try layer.integerView(in: model, input: input, inputScale: layer.inputScale(in: model) ?? 0).report
        sparsity = report.sparsity
        maxL1Usage = quantizer.bound.isFinite ? Double(report.tileL1Norms.max() ?? 0) / quantizer.bound : nil
        pMin = report.tileMinimumBits.max()
        overflowFree = report.overflowFree
    }

    /// Statistics of every quantized layer of `model`.
    public static func measure(_ model: Model) throws -> [LayerStatistics] {
        try model.quantizedLayers.map { try LayerStatistics(layer: $0, model: model) }
    }
}
