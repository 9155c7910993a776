import A2QCore
import A2QData
import A2QQuant

/// What a P-bit accumulator does when a sum leaves its range.
public enum OverflowMode: String, CaseIterable, Sendable, Codable {
    /// Two's complement wrap-around (what FPGA adders do).
    case wrap
    /// Clamp at the register's limits after every addition.
    case saturate
    /// No overflow: exact arithmetic (reference).
    case wide
}

/// The values one accumulator's register held for a batch: after the overflow mode (wrap:
/// the wrapped value, saturate: the saturated one, wide: the exact sum), before requantisation.
public struct RecordedAccumulators: Sendable {
    public var name: String
    /// `[N, out, H, W]` for a convolution, `[N, out]` for a linear layer, `[N, C]` for a global
    /// pool, `[N, C, H', W']` for a window pool.
    public var shape: [Int]
    public var values: [Int64]
}

/// Overflow counts of one accumulator (a weight layer or a pool) over a run.
///
/// Without tiles every dot product is one sum in the P-bit register. A tiled layer counts two
/// stages: each tile's sum in the P-bit tile register (`finalOverflows`, `partialOverflows`
/// count tile sums, `tileSums` of them) and each dot product's running sum of tile sums in the
/// outer register (`outerFinalOverflows`, `outerPartialOverflows`, out of `dotProducts`).
public struct LayerOverflow: Sendable, Codable {
    public var name: String
    /// P, the width of the (tile) register.
    public var accumulatorBits: Int
    public var dotProducts: Int
    /// Sums whose final value left the P-bit range (tile sums of a tiled layer).
    public var finalOverflows: Int
    /// Sums where any partial sum left the range (accumulating in weight-index order).
    public var partialOverflows: Int
    /// Whether the exact worst case over all inputs fits every register (then nothing can overflow).
    public var provenSafe: Bool
    /// A tiled layer's inputs per tile, its outer register's width, and the counts of its two
    /// stages (all nil without tiles).
    public var accumulatorTile: Int? = nil
    public var outerAccumulatorBits: Int? = nil
    public var tileSums: Int? = nil
    public var outerFinalOverflows: Int? = nil
    public var outerPartialOverflows: Int? = nil

    public init(name: String, accumulatorBits: Int, dotProducts: Int, finalOverflows: Int, partialOverflows: Int,
                provenSafe: Bool, accumulatorTile: Int? = nil, outerAccumulatorBits: Int? = nil) {
        self.name = name
        self.accumulatorBits = accumulatorBits
        self.dotProducts = dotProducts
        self.finalOverflows = finalOverflows
        self.partialOverflows = partialOverflows
        self.provenSafe = provenSafe
        self.accumulatorTile = accumulatorTile
        self.outerAccumulatorBits = outerAccumulatorBits
        if accumulatorTile != nil { (tileSums, outerFinalOverflows, outerPartialOverflows) = (0, 0, 0) }
    }

    enum CodingKeys: String, CodingKey {
        case name, accumulatorBits = "accumulator_bits", dotProducts = "dot_products"
        case finalOverflows = "final_overflows", partialOverflows = "partial_overflows", provenSafe = "proven_safe"
        case accumulatorTile = "accumulator_tile", outerAccumulatorBits = "outer_accumulator_bits", tileSums = "tile_sums"
        case outerFinalOverflows = "outer_final_overflows", outerPartialOverflows = "outer_partial_overflows"
    }
}

/// Runs an `IntegerModel` the way integer hardware would: integer activations and weights,
/// each dot product in a simulated signed P-bit register (`OverflowMode`), then the float32
/// requantisation `y = acc · multiplier + offset` and the next quantizer, like the
/// fake-quantized float graph it must agree with (hardware would use fixed-point multipliers
/// or thresholds, as FINN does; this does not model them).
///
/// Two paths compute the same integers: `IntegerPlan` (int8 kernels: AVX-512 VNNI, AVX2 or
/// scalar, 16-bit lanes on request for layers proven to fit 16 bits) for models with ≤ 8-bit
/// unsigned inputs and ≤ 8-bit weights, and `IntegerReferencePath` (Float64 `dgemm`) for
/// everything else or on request (`--kernel reference`). Layers whose exact worst case fits P
/// skip the overflow simulation: nothing can overflow there.
public final class IntegerEngine: @unchecked Sendable {
    public let model: IntegerModel
    public let mode: OverflowMode
    /// P per accumulator, weight layers and pools (the model's unless overridden).
    public let accumulatorBits: [String: Int]
    /// Overflow counts per accumulator (`IntegerModel.accumulators`, execution order).
    public private(set) var overflows: [LayerOverflow]
    /// The last layer's accumulators of the last batch, `[N, classes]` (exact integers).
    public private(set) var lastAccumulators: [Int64] = []
    /// The kernel each layer runs (`reference` on the Float64 path).
    public let layerKernels: [(layer: String, kernel: String)]
    /// Why the reference path runs, when it does.
    public let referenceReason: String?

    private let plan: IntegerPlan?
    private let reference: IntegerReferencePath

    /// `accumulatorBits` overrides P for the layers and pools it names (see
    /// `AccumulatorOverride`). `recordsAccumulators` keeps every accumulator of the last batch
    /// (`recordedAccumulators`; the reference path runs).
    public init(model: IntegerModel, mode: OverflowMode = .wrap, accumulatorBits overrides: [String: Int] = [:],
                kernels: IntegerKernelChoice = IntegerKernelChoice(), recordsAccumulators: Bool = false) throws {
        if let (name, bad) = overrides.first(where: { !(2...62).contains($0.value) }) {
            throw A2QError("accumulator width \(bad) for \(name) is outside the supported range 2...62")
        }
        self.model = model
        self.mode = mode
        let accumulators = model.accumulators
        var bits: [String: Int] = [:]
        for accumulator in accumulators { bits[accumulator.name] = overrides[accumulator.name] ?? accumulator.accumulatorBits }
        accumulatorBits = bits
        let overflows = accumulators.map { accumulator in
            let p = bits[accumulator.name] ?? accumulator.accumulatorBits
            switch accumulator {
            case .layer(let layer):
                // A tiled layer's outer register: `NAME.outer` in the overrides, else the model's.
                let outer = overrides[layer.name + ".outer"] ?? layer.outerAccumulatorBits
                let safe = LayerAccumulatorReport(integers: layer.weights, outChannels: layer.outChannels, input: layer.input,
                                                  accumulatorBits: p, tile: layer.accumulatorTile,
                                                  outerAccumulatorBits: outer).overflowFree
                return LayerOverflow(name: layer.name, accumulatorBits: p, dotProducts: 0, finalOverflows: 0, partialOverflows: 0,
                                     provenSafe: safe, accumulatorTile: layer.accumulatorTile,
                                     outerAccumulatorBits: layer.accumulatorTile == nil ? nil : outer)
            case .pool(let pool):
                return LayerOverflow(name: pool.name, accumulatorBits: p, dotProducts: 0, finalOverflows: 0, partialOverflows: 0,
                                     provenSafe: LayerVerdict(pool: pool, accumulatorBits: p).overflowFree)
            }
        }
        self.overflows = overflows
        reference = IntegerReferencePath(model: model, mode: mode, recordsAccumulators: recordsAccumulators)
        // The plan runs chains of weight layers only (no pools), so its layer index is the
        // accumulator index; recording every accumulator needs the reference path.
        let made = recordsAccumulators
            ? (plan: nil, reason: "every layer's accumulators are recorded")
            : try IntegerPlan.make(model: model, bits: overflows.map(\.accumulatorBits), provenSafe: overflows.map(\.provenSafe),
                                   mode: mode, choice: kernels)
        precondition(made.plan == nil || model.pools.isEmpty, "IntegerPlan ran a model with a pool")
        if made.plan == nil, case .named = kernels.int16 {
            throw A2QError("the 16-bit kernel cannot run this model: \(made.reason ?? "unsupported")")
        }
        plan = made.plan
        referenceReason = made.reason
        layerKernels = made.plan?.kernels.map { ($0.0, $0.1.description) } ?? model.layers.map { ($0.name, "reference") }
    }

    /// Every accumulator's register values of the last batch, in execution order, when the
    /// engine was made with `recordsAccumulators` (else empty).
    public var recordedAccumulators: [RecordedAccumulators] { reference.recorded }

    /// Seconds per layer on the integer-kernel path since the engine was made (empty on the
    /// reference path): the breakdown `a2q bench integer` prints.
    public var layerSeconds: [(layer: String, seconds: Double)] {
        guard let plan else { return [] }
        return zip(plan.steps, plan.stepSeconds).map { ($0.layer.name, $1) }
    }

    /// Class scores for `images` (`count` images of `inputShape`, as pixels), and counts overflows.
    public func logits(pixels: UnsafeBufferPointer<UInt8>, count n: Int) -> [Float] {
        if let plan {
            return plan.logits(pixels: pixels, count: n, counts: &overflows, lastAccumulators: &lastAccumulators)
        }
        return reference.logits(pixels: pixels, count: n, counts: &overflows, lastAccumulators: &lastAccumulators)
    }

    /// Accuracy and predictions over a dataset, in batches.
    public func evaluate(_ data: Dataset, batch: Int = 100) -> (accuracy: Double, predictions: [Int]) {
        var predictions: [Int] = []
        predictions.reserveCapacity(data.count)
        var correct = 0
        data.images.withUnsafeBufferPointer { pixels in
            var start = 0
            while start < data.count {
                let m = min(batch, data.count - start)
                let slice = UnsafeBufferPointer(rebasing: pixels[(start * data.imageSize)..<((start + m) * data.imageSize)])
                let scores = logits(pixels: slice, count: m)
                for i in 0..<m {
                    var best = 0
                    for c in 1..<model.classes where scores[i * model.classes + c] > scores[i * model.classes + best] { best = c }
                    predictions.append(best)
                    if best == Int(data.labels[start + i]) { correct += 1 }
                }
                start += m
            }
        }
        return (Double(correct) / Double(max(data.count, 1)), predictions)
    }
}
