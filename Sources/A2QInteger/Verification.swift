import A2QCore
import A2QQuant

/// The proof `a2q verify` gives: per layer and channel, the exact worst-case accumulator
/// range over every possible input against P. For a tiled layer (multi-stage accumulation)
/// the proof has two stages: every tile's worst case against the P-bit tile register
/// (`pMin`, `headroomBits`, `tileAccMin`/`tileAccMax`) and every whole dot product's against
/// the outer register (`accMin`/`accMax`, `outerPMin`).
public struct LayerVerdict: Sendable, Codable {
    public var name: String
    public var quantizer: String
    public var weightBits: Int
    public var inputBits: Int
    public var inputSigned: Bool
    public var accumulatorBits: Int
    /// Largest exact minimum width of the (tile) register over channels (and tiles).
    public var pMin: Int
    /// `accumulatorBits − pMin` (negative: some channel can overflow).
    public var headroomBits: Int
    public var accMin: Int64
    public var accMax: Int64
    public var maxL1Usage: Double?
    public var sparsity: Double
    public var overflowFree: Bool
    /// Channels whose worst case does not fit.
    public var unsafeChannels: [Int]
    /// Per channel, for `--json`: p_min, acc_min, acc_max.
    public var channels: [ChannelVerdict]
    /// Overflows seen on data (when `--data` was given).
    public var observed: LayerOverflow?
    /// A tiled layer's inputs per tile, its outer register's width, the extremes of its tiles'
    /// worst cases, and the whole dot product's minimum width (all nil without tiles).
    public var accumulatorTile: Int?
    public var outerAccumulatorBits: Int?
    public var tileAccMin: Int64?
    public var tileAccMax: Int64?
    public var outerPMin: Int?

    public struct ChannelVerdict: Sendable, Codable {
        /// The channel's minimum width: of its widest tile when tiled.
        public var pMin: Int
        /// The whole dot product's worst case.
        public var accMin: Int64
        public var accMax: Int64
        /// Per tile (tiled layers only): minimum width and worst case.
        public var tilePMin: [Int]? = nil
        public var tileAccMin: [Int64]? = nil
        public var tileAccMax: [Int64]? = nil
        enum CodingKeys: String, CodingKey {
            case pMin = "p_min", accMin = "acc_min", accMax = "acc_max", tilePMin = "tile_p_min", tileAccMin = "tile_acc_min"
            case tileAccMax = "tile_acc_max"
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, quantizer, weightBits = "weight_bits", inputBits = "input_bits", inputSigned = "input_signed"
        case accumulatorBits = "accumulator_bits", pMin = "p_min", headroomBits = "headroom_bits", accMin = "acc_min"
        case accMax = "acc_max", maxL1Usage = "max_l1_usage", sparsity, overflowFree = "overflow_free"
        case unsafeChannels = "unsafe_channels", channels, observed, accumulatorTile = "accumulator_tile"
        case outerAccumulatorBits = "outer_accumulator_bits", tileAccMin = "tile_acc_min", tileAccMax = "tile_acc_max"
        case outerPMin = "outer_p_min"
    }

    public init(_ layer: IntegerLayer, accumulatorBits override: Int? = nil, outerAccumulatorBits outerOverride: Int? = nil) {
        let p = override ?? layer.accumulatorBits
        let outerBits = outerOverride ?? layer.outerAccumulatorBits
        let report = LayerAccumulatorReport(integers: layer.weights, outChannels: layer.outChannels, input: layer.input,
                                            accumulatorBits: p, tile: layer.accumulatorTile, outerAccumulatorBits: outerBits)
        name = layer.name
        quantizer = layer.quantizer
        weightBits = layer.weightBits
        inputBits = layer.input.bits
        inputSigned = layer.input.signed
        accumulatorBits = p
        pMin = report.tileMinimumBits.max() ?? 1
        headroomBits = p - pMin
        accMin = report.minimums.min() ?? 0
        accMax = report.maximums.max() ?? 0
        maxL1Usage = layer.l1Bound.map { Double(report.tileL1Norms.max() ?? 0) / $0 }
        sparsity = report.sparsity
        overflowFree = report.overflowFree
        let tiles = report.tileCount
        func fits(_ o: Int) -> Bool {
            let tilesFit = (o * tiles..<(o + 1) * tiles).allSatisfy {
                AccumulatorBounds.fits(minimum: report.tileMinimums[$0], maximum: report.tileMaximums[$0], accumulatorBits: p)
            }
            let outer = report.tile == nil ? p : outerBits
            return tilesFit && AccumulatorBounds.fits(minimum: report.minimums[o], maximum: report.maximums[o], accumulatorBits: outer)
        }
        unsafeChannels = (0..<layer.outChannels).filter { !fits($0) }
        channels = (0..<layer.outChannels).map { o in
            var channel = ChannelVerdict(pMin: report.minimumBits[o], accMin: report.minimums[o], accMax: report.maximums[o])
            if report.tile != nil {
                let range = o * tiles..<(o + 1) * tiles
                channel.pMin = report.tileMinimumBits[range].max() ?? 1
                channel.tilePMin = Array(report.tileMinimumBits[range])
                channel.tileAccMin = Array(report.tileMinimums[range])
                channel.tileAccMax = Array(report.tileMaximums[range])
            }
            return channel
        }
        if let tile = report.tile {
            accumulatorTile = tile
            outerAccumulatorBits = outerBits
            tileAccMin = report.tileMinimums.min()
            tileAccMax = report.tileMaximums.max()
            outerPMin = report.minimumBits.max()
        }
    }

    /// A global average pool's per-channel sum of `count` integers of `input` as an
    /// accumulator: every channel's exact worst case is `count` times the input's extreme levels.
    public init(pool: PoolAccumulator, accumulatorBits override: Int? = nil) {
        let p = override ?? pool.accumulatorBits
        name = pool.name
        quantizer = "avgpool"
        weightBits = 0
        inputBits = pool.input.bits
        inputSigned = pool.input.signed
        accumulatorBits = p
        accMin = Int64(pool.count) * Int64(min(pool.input.minimum, 0))
        accMax = Int64(pool.count) * Int64(max(pool.input.maximum, 0))
        pMin = AccumulatorBounds.minimumBitsExact(minimum: accMin, maximum: accMax)
        headroomBits = p - pMin
        maxL1Usage = nil
        sparsity = 0
        overflowFree = AccumulatorBounds.fits(minimum: accMin, maximum: accMax, accumulatorBits: p)
        unsafeChannels = overflowFree ? [] : Array(0..<pool.channels)
        channels = Array(repeating: ChannelVerdict(pMin: pMin, accMin: accMin, accMax: accMax), count: pool.channels)
    }

    /// Every accumulator of a model (weight layers and average pools) in the integer model's
    /// execution order, each at its own P unless `accumulatorBits` names it.
    public static func verify(_ model: IntegerModel, accumulatorBits: [String: Int] = [:]) -> [LayerVerdict] {
        model.accumulators.map { accumulator in
            switch accumulator {
            case .layer(let layer):
                return LayerVerdict(layer, accumulatorBits: accumulatorBits[layer.name], outerAccumulatorBits: accumulatorBits[layer.name + ".outer"])
            case .pool(let pool): return LayerVerdict(pool: pool, accumulatorBits: accumulatorBits[pool.name])
            }
        }
    }

    /// A fixed-width table.
    public static func table(_ verdicts: [LayerVerdict]) -> String {
        let width = max(8, (verdicts.map(\.name.count).max() ?? 0) + 1)
        var lines = [pad("layer", width) + pad("quantizer", 10) + pad("M", 4) + pad("N", 6) + pad("P", 4) + pad("p_min", 7)
                     + pad("headroom", 10) + pad("max‖q‖₁/T", 11) + pad("sparsity", 10) + pad("acc range", 26) + "verdict"]
        for v in verdicts {
            var line = pad(v.name, width) + pad(v.quantizer, 10) + pad("\(v.weightBits)", 4)
            line += pad("\(v.inputSigned ? "s" : "u")\(v.inputBits)", 6) + pad("\(v.accumulatorBits)", 4) + pad("\(v.pMin)", 7)
            line += pad("\(v.headroomBits)", 10) + pad(v.maxL1Usage.map { fmt($0, 3) } ?? "-", 11)
            line += pad(fmt(100 * v.sparsity, 1) + "%", 10) + pad("[\(v.tileAccMin ?? v.accMin), \(v.tileAccMax ?? v.accMax)]", 26)
            line += v.overflowFree ? "overflow-free" : "CAN OVERFLOW (\(v.unsafeChannels.count) channels)"
            if let tile = v.accumulatorTile, let outer = v.outerAccumulatorBits {
                line += "; tiles of \(tile) (P, acc range per tile), outer \(outer)-bit: whole [\(v.accMin), \(v.accMax)] needs \(v.outerPMin ?? 0)"
            }
            if let o = v.observed {
                line += "; seen: \(o.finalOverflows) final / \(o.partialOverflows) partial of \(o.tileSums ?? o.dotProducts)"
                if let finals = o.outerFinalOverflows, let partials = o.outerPartialOverflows {
                    line += " tile sums, outer \(finals) final / \(partials) partial of \(o.dotProducts)"
                }
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

func fmt(_ value: Double, _ digits: Int) -> String {
    let p = pow10(digits)
    let rounded = (value * p).rounded() / p
    var text = "\(rounded)"
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
    }
    return text
}

private func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { acc, _ in acc * 10 } }
