import A2QCore
import QuantKernels
#if canImport(Glibc)
import Glibc
#endif

/// Which weight quantizer a layer uses.
public enum WeightQuantizerKind: String, CaseIterable, Sendable, Codable {
    /// No quantization: the layer uses its float weights.
    case float
    /// Per-channel M-bit, narrow range, round to nearest, learned log2 scale; no accumulator bound.
    case qat
    /// A2Q: weight normalisation with an L1 bound `T_A2Q`, round toward zero.
    case a2q
    /// A2Q+: as A2Q on zero-centred weights with the looser bound `T_A2Q+`.
    case a2qPlus = "a2q+"

    /// Whether the quantizer constrains the accumulator.
    public var isAccumulatorAware: Bool { self == .a2q || self == .a2qPlus }
}

/// How a constrained layer's parameters are set from float weights.
public enum WeightInitMethod: String, CaseIterable, Sendable, Codable {
    /// `s = max|w|/(2^(M-1)-1)`, `v = w`, `g = ||w||_1` (A2Q paper; clamped at `T` later).
    case naive
    /// Euclidean projection of each channel onto the L1 ball of radius `s·T` with
    /// `s = max|w|/(2^(M-1)-1)` (A2Q+ paper, Brevitas's `ep_init`).
    case ep
    /// EP-init with the scale chosen per channel: among `s` on a log grid from
    /// `max|w|/(2^(M-1)-1)` up, project onto `s·T`, quantize, refit the scale by least squares
    /// and keep the one with the smallest `||w − s·q||₂`. Under a tight budget this keeps the
    /// layer's output scale instead of shrinking it by about `||w||₁ / (s·T)`.
    case epScaled = "ep-scaled"
    /// AXE, accumulator-aware GPTQ on calibration images (docs/AXE.md): a model-level step that
    /// the trainer runs after the activation calibration. A quantizer on its own starts as
    /// `epScaled`, whose per-channel scales AXE keeps.
    case axe
}

/// A layer's weight quantizer settings.
public struct WeightQuantizerSpec: Sendable, Hashable, Codable {
    public var kind: WeightQuantizerKind
    /// M, the weight bit width (2...16).
    public var weightBits: Int
    /// P, the accumulator bit width (used by `a2q`/`a2q+`; up to 32): with tiles, the width of
    /// each tile's register.
    public var accumulatorBits: Int
    /// Multi-stage accumulation: the L1 budget applies to each tile of this many consecutive
    /// weight indices of an output channel (row-major `[in, kh, kw]`; the last tile may be
    /// shorter) instead of the whole channel. nil (or a tile ≥ K) is one tile: the whole dot
    /// product, today's A2Q/A2Q+ bit for bit.
    public var accumulatorTile: Int?
    /// The outer register that adds a tiled layer's tile sums (nil: 32 bits). Its range is
    /// checked when the quantizer is made: `tiles × 2^(P−1)` must fit.
    public var outerAccumulatorBits: Int?

    public init(kind: WeightQuantizerKind, weightBits: Int = 8, accumulatorBits: Int = 32, accumulatorTile: Int? = nil,
                outerAccumulatorBits: Int? = nil) {
        self.kind = kind
        self.weightBits = weightBits
        self.accumulatorBits = accumulatorBits
        self.accumulatorTile = accumulatorTile
        self.outerAccumulatorBits = outerAccumulatorBits
    }

    /// No quantization.
    public static let float = WeightQuantizerSpec(kind: .float)
}

/// A per-output-channel weight quantizer for a weight matrix `[out, K]` (row-major; a conv's
/// `[out, in, kh, kw]` is the same memory).
///
/// Parameters (declared next to the layer's weight, which is the direction `v`):
/// `<layer>.weight_log2_scale` (`d`, `s = 2^d`, qat/a2q/a2q+) and `<layer>.weight_log2_norm`
/// (`t`, `g = 2^t`, a2q/a2q+; `[out]`, or `[out, tiles]` with tiles).
///
/// Tiles (`spec.accumulatorTile`): every output channel's row is cut into tiles of consecutive
/// weights, and each tile is a *segment* with its own norm `g`, centring mean (A2Q+) and L1
/// budget `T` (the tile register's P); the scale `s` stays per channel. Everything below that
/// says "channel" applies per segment; without tiles a channel is one segment and the
/// arithmetic is unchanged.
///
/// Forward (A2Q, A2Q+): `u = v` (A2Q) or `v - mean(v)` (A2Q+), `c = min(g/s, T)`,
/// `r = c / ||u||_1`, `q = clip(RTZ(u·r), ±(2^(M-1)-1))`, `w_q = q·s`, with `u·r` evaluated as one
/// fused multiply-add `fma(v, r, −mean·r)`. Brevitas divides, `u / (||u||_1 / c)`; the two differ
/// by at most an ulp of `u·r`, so the integers differ only where `u·r` is within float rounding
/// of an integer (a tie that float32 summation order decides in Brevitas too). The clip is
/// skipped for channels where `max|u|·r < 2^(M-1)`, where it cannot act.
///
/// Backward convention: the straight-through estimator passes the gradient of rounding
/// unchanged (`∂q/∂y = 1`); elements whose rounded value was clipped get zero gradient;
/// `c = min(g/s, T)` passes gradient to `g` and `s` only while `g/s < T`; `s` also gets its
/// direct gradient through `w_q = q·s`. All other derivatives (through `||u||_1`, the mean,
/// and `exp2`) are exact. QAT: `w_q = clip(round(v/s))·s` with the same STE, so
/// `∂w_q/∂s = q - v/s` inside the range and `q` when clipped (Brevitas autograd).
///
/// Numerics: the forward pass runs in Float32; afterwards the integer L1 norm (A2Q) or the
/// positive and negative sums (A2Q+) are checked exactly and, if float rounding ever pushed
/// them over the bound, the largest magnitudes are moved one step toward zero. So the
/// guarantee holds exactly, not just up to rounding.
public final class WeightQuantizer: @unchecked Sendable {
    public let spec: WeightQuantizerSpec
    /// Dotted layer name (for messages and parameter names).
    public let layerName: String
    /// The layer input's integer format (nil for `float`).
    public let input: InputFormat?
    public let outChannels: Int
    /// K: inputs per output channel.
    public let fanIn: Int
    /// Inputs per tile (K without tiles) and tiles per channel (1 without tiles).
    public let tileLength: Int
    public let tileCount: Int
    /// The direction `v` (the layer's weight tensor).
    public let weight: ParameterView
    public let logScale: ParameterView?
    public let logNorm: ParameterView?
    /// The L1 bound `T` in integer units (`.infinity` when unconstrained).
    public let bound: Double
    /// Largest integer magnitude, `2^(M-1) - 1`.
    public let maxLevel: Float

    // Scratch, allocated once: the quantized weights w_q.
    private let quantized: UnsafeMutablePointer<Float>
    private let reductions: UnsafeMutablePointer<Float>  // 4 per-channel sums from the kernels
    private let projectionScratch: UnsafeMutablePointer<Double>  // fanIn magnitudes for the L1-ball projections
    // Caches from the last forward pass: s per channel; per segment (channel o, tile j at
    // o·tileCount + j) the centring mean, r = min(g/s, T)/||u||_1, min(g/s, T), ||u||_1,
    // whether g/s < T, whether the clip to ±qmax can act.
    private var channelScale: [Float]
    private var segmentMean: [Float]
    private var segmentRatio: [Float]
    private var segmentClamp: [Float]
    private var segmentNorm: [Float]
    private var segmentActive: [Bool]
    private var segmentClips: [Bool]

    /// Declares the quantizer's parameters. Throws if the accumulator is too narrow for any
    /// non-zero weight or a bit width is out of range.
    public init(spec: WeightQuantizerSpec, layerName: String, weight: ParameterView, outChannels: Int,
                fanIn: Int, input: InputFormat?, layout: inout ParameterLayout) throws {
        precondition(weight.count == outChannels * fanIn,
                     "\(layerName): weight \(describe(weight.shape)) is not [\(outChannels), \(fanIn)]")
        self.spec = spec
        self.layerName = layerName
        self.weight = weight
        self.outChannels = outChannels
        self.fanIn = fanIn
        let tiled = spec.kind.isAccumulatorAware ? spec.accumulatorTile : nil
        if let tile = tiled, tile < 1 {
            throw A2QError("\(layerName): accumulator tile \(tile) is not a positive number of inputs")
        }
        tileLength = min(tiled ?? fanIn, fanIn)
        tileCount = (fanIn + tileLength - 1) / tileLength
        if spec.kind != .float {
            guard (2...16).contains(spec.weightBits) else {
                throw A2QError("\(layerName): weight bits \(spec.weightBits) is out of the supported range 2...16")
            }
        }
        maxLevel = Float((1 << (max(spec.weightBits, 2) - 1)) - 1)
        switch spec.kind {
        case .float:
            self.input = input
            bound = .infinity
            logScale = nil
            logNorm = nil
        case .qat:
            self.input = input
            bound = .infinity
            logScale = layout.declare("\(layerName).weight_log2_scale", shape: [outChannels], role: .logScale)
            logNorm = nil
        case .a2q, .a2qPlus:
            guard let input else {
                preconditionFailure("\(layerName): an accumulator-aware quantizer needs the input quantizer's format")
            }
            guard (2...32).contains(spec.accumulatorBits) else {
                throw A2QError("\(layerName): accumulator bits \(spec.accumulatorBits) is out of the supported range 2...32")
            }
            self.input = input
            let plus = spec.kind == .a2qPlus
            bound = plus ? AccumulatorBounds.a2qPlusBound(accumulatorBits: spec.accumulatorBits, input: input)
                : AccumulatorBounds.a2qBound(accumulatorBits: spec.accumulatorBits, input: input)
            guard bound >= 1 else {
                let smallest = AccumulatorBounds.smallestUsefulBits(plus: plus, input: input).map(String.init) ?? "none ≤ 32"
                throw A2QError(
                    "\(layerName): a \(spec.accumulatorBits)-bit accumulator is too narrow for any non-zero \(spec.kind.rawValue) weight with \(input) inputs (N=\(input.bits), bound T=\(bound) < 1)",
                    remedy: "use at least P=\(smallest) accumulator bits for this layer, or fewer input bits")
            }
            if tileCount > 1 {
                let outer = spec.outerAccumulatorBits ?? 32
                guard (spec.accumulatorBits...62).contains(outer) else {
                    throw A2QError("\(layerName): outer accumulator width \(outer) is outside \(spec.accumulatorBits)...62 (at least the tile register's \(spec.accumulatorBits) bits)")
                }
                // Every tile's sum lies in [−2^(P−1), 2^(P−1) − 1]; their sum must fit the outer register.
                let largest = Double(tileCount) * exp2(Double(spec.accumulatorBits - 1))
                guard largest <= exp2(Double(outer - 1)) - 1 else {
                    throw A2QError("\(layerName): \(tileCount) tiles of \(spec.accumulatorBits)-bit sums can exceed a \(outer)-bit outer accumulator",
                                   remedy: "use a wider --outer-accumulator-bits (at least \(spec.accumulatorBits + Int(log2(Double(tileCount)).rounded(.up)) + 1)) or longer tiles")
                }
            }
            logScale = layout.declare("\(layerName).weight_log2_scale", shape: [outChannels], role: .logScale)
            logNorm = layout.declare("\(layerName).weight_log2_norm", shape: tileCount > 1 ? [outChannels, tileCount] : [outChannels],
                                     role: .logNorm)
        }
        // Float layers use `v` itself (`forward`), so their scratch is one value, not a second copy.
        let n = spec.kind == .float ? 1 : outChannels * fanIn
        quantized = .allocate(capacity: n); quantized.initialize(repeating: 0, count: n)
        reductions = .allocate(capacity: 4); reductions.initialize(repeating: 0, count: 4)
        projectionScratch = .allocate(capacity: fanIn); projectionScratch.initialize(repeating: 0, count: fanIn)
        let segments = outChannels * tileCount
        channelScale = Array(repeating: 1, count: outChannels)
        segmentMean = Array(repeating: 0, count: segments)
        segmentRatio = Array(repeating: 0, count: segments)
        segmentClamp = Array(repeating: 0, count: segments)
        segmentNorm = Array(repeating: 0, count: segments)
        segmentActive = Array(repeating: false, count: segments)
        segmentClips = Array(repeating: true, count: segments)
    }

    /// Segment `j` of channel `o`: its index among all segments, its first weight (offset in the
    /// `[out, K]` matrix) and its length.
    @inline(__always)
    func segment(_ o: Int, _ j: Int) -> (index: Int, start: Int, count: Int) {
        let begin = j * tileLength
        return (o * tileCount + j, o * fanIn + begin, min(tileLength, fanIn - begin))
    }

    deinit {
        quantized.deallocate()
        reductions.deallocate()
        projectionScratch.deallocate()
    }

    /// True for `float`.
    public var isIdentity: Bool { spec.kind == .float }

    // MARK: Initialisation

    /// Sets `d` (and `t`) from the current float weights `v`, as when a float layer is
    /// converted. With `.ep`, each channel of `v` is first projected onto the L1 ball of
    /// radius `s·T` (only for a2q/a2q+).
    public func initializeFromFloatWeights(_ parameters: ParameterStore, method: WeightInitMethod = .naive) {
        guard let logScale else { return }
        let v = parameters.value(weight)
        let d = parameters.value(logScale)
        for o in 0..<outChannels {
            let row = v + o * fanIn
            var maxAbs: Float = 0
            for i in 0..<fanIn { maxAbs = max(maxAbs, abs(row[i])) }
            let s = maxAbs > 0 ? maxAbs / maxLevel : Float.leastNormalMagnitude.squareRoot()
            d[o] = log2f(s)
            guard let logNorm else { continue }
            if method == .epScaled || method == .axe {
                initializeScaleSearch(channel: o, parameters)
                continue
            }
            for j in 0..<tileCount {
                let (index, start, count) = segment(o, j)
                let part = v + start
                if method == .ep {
                    let radius = Double(s) * bound
                    EuclideanProjection.projectOntoL1Ball(part, count: count, radius: radius, scratch: projectionScratch)
                }
                var l1: Double = 0
                for i in 0..<count { l1 += Double(abs(part[i])) }
                let g = method == .ep ? min(l1, Double(s) * bound) : l1
                parameters.value(logNorm)[index] = g > 0 ? Float(log2(g)) : d[o]
            }
        }
    }

    /// The `epScaled` search for one channel (Float64, cold path). With tiles every trial
    /// scale projects each tile onto its own ball of radius `trial·T`.
    private func initializeScaleSearch(channel o: Int, _ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let row = parameters.value(weight) + o * fanIn
        let w = (0..<fanIn).map { Double(row[$0]) }
        let maxAbs = w.map(abs).max() ?? 0
        guard maxAbs > 0 else { return }
        let segments = (0..<tileCount).map { segment(o, $0) }
        let largestL1 = segments.map { part in (0..<part.count).reduce(0.0) { $0 + abs(w[part.start - o * fanIn + $1]) } }.max() ?? 0
        let qmax = Double(maxLevel), plus = spec.kind == .a2qPlus
        let base = maxAbs / qmax
        let top = 2 * max(base, largestL1 / bound, maxAbs)
        let steps = Int((4 * log2(top / base)).rounded(.up))
        var best: (error: Double, trial: Double, fitted: Double, projected: [Float])? = nil
        let thresholds = segments.map { part in
            EuclideanProjection.Thresholds(UnsafeBufferPointer(start: row + (part.start - o * fanIn), count: part.count))
        }
        var candidate = [Float](repeating: 0, count: fanIn)
        var q = [Double](repeating: 0, count: fanIn)
        for j in 0...max(steps, 0) {
            let trial = base * exp2(Double(j) / 4)
            // Project each tile onto the L1 ball of radius trial·T and simulate the forward pass
            // for v = projection, s = trial, g = min(||v||₁, s·T) per tile.
            var wq = 0.0, qq = 0.0
            for (tile, part) in segments.enumerated() {
                let first = part.start - o * fanIn, range = first..<(first + part.count)
                let theta = thresholds[tile].threshold(radius: trial * bound)
                var vSum = 0.0, vNorm = 0.0
                for i in range {
                    let magnitude = max(Double(abs(row[i])) - theta, 0)
                    let value = Float(row[i] < 0 ? -magnitude : magnitude)
                    candidate[i] = value
                    vSum += Double(value)
                    vNorm += Double(abs(value))
                }
                let mean = plus ? vSum / Double(part.count) : 0
                var uNorm = 0.0
                for i in range { uNorm += abs(Double(candidate[i]) - mean) }
                guard uNorm > 0 else {
                    for i in range { q[i] = 0 }
                    continue
                }
                let pre = uNorm / min(vNorm / trial, bound)
                for i in range {
                    let level = min(max(((Double(candidate[i]) - mean) / pre).rounded(.towardZero), -qmax), qmax)
                    q[i] = level
                    wq += w[i] * level
                    qq += level * level
                }
            }
            guard qq > 0, wq > 0 else { continue }
            let fitted = wq / qq
            var error = 0.0
            for i in 0..<fanIn { let e = w[i] - fitted * q[i]; error += e * e }
            if error < (best?.error ?? .infinity) { best = (error, trial, fitted, candidate) }
        }
        guard let best else {
            // Nothing survives at any scale: fall back to plain EP-init.
            let s = base
            parameters.value(logScale)[o] = Float(log2(s))
            for part in segments {
                let start = row + (part.start - o * fanIn)
                EuclideanProjection.projectOntoL1Ball(start, count: part.count, radius: s * bound, scratch: projectionScratch)
                var norm: Double = 0
                for i in 0..<part.count { norm += Double(abs(start[i])) }
                parameters.value(logNorm)[part.index] = Float(log2(max(min(norm, s * bound), Double.leastNormalMagnitude)))
            }
            return
        }
        // Rescale (v, g, s) by fitted/trial: the integers stay those of the trial.
        let ratio = best.fitted / best.trial
        for part in segments {
            let first = part.start - o * fanIn
            var norm: Double = 0
            for i in first..<(first + part.count) {
                row[i] = Float(Double(best.projected[i]) * ratio)
                norm += Double(abs(best.projected[i]))
            }
            parameters.value(logNorm)[part.index] = Float(log2(min(norm, best.trial * bound) * ratio))
        }
        parameters.value(logScale)[o] = Float(log2(best.fitted))
    }

    /// Multiplies channel `o`'s effective weights by `factor` without changing its integers:
    /// `v`, `g` and `s` all scale by `factor` (so `q = RTZ(u·min(g/s, T)/||u||₁)` is unchanged).
    public func rescaleChannel(_ o: Int, by factor: Double, _ parameters: ParameterStore) {
        guard factor > 0, factor.isFinite, let logScale else { return }
        let shift = Float(log2(factor))
        parameters.value(logScale)[o] += shift
        if let logNorm {
            for j in 0..<tileCount { parameters.value(logNorm)[segment(o, j).index] += shift }
            let row = parameters.value(weight) + o * fanIn
            for i in 0..<fanIn { row[i] = Float(Double(row[i]) * factor) }
        }
    }

    // MARK: Forward

    /// Computes the weights the float graph uses, `w_q = q·s` (for `float`, `v` itself: a view).
    public func forward(_ parameters: ParameterStore) -> UnsafePointer<Float> {
        let v = parameters.value(weight)
        switch spec.kind {
        case .float:
            return UnsafePointer(v)
        case .qat:
            forwardQAT(v, parameters)
        case .a2q, .a2qPlus:
            forwardA2Q(v, parameters)
        }
        return UnsafePointer(quantized)
    }

    private func forwardQAT(_ v: UnsafeMutablePointer<Float>, _ parameters: ParameterStore) {
        guard let logScale else { return }
        let d = parameters.value(logScale)
        for o in 0..<outChannels {
            let s = exp2f(d[o])
            channelScale[o] = s
            a2qk_qat_forward(v + o * fanIn, quantized + o * fanIn, Int64(fanIn), s, maxLevel)
        }
    }

    private func forwardA2Q(_ v: UnsafeMutablePointer<Float>, _ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let d = parameters.value(logScale), t = parameters.value(logNorm)
        let bound = Float(self.bound), plus = spec.kind == .a2qPlus
        for o in 0..<outChannels {
            let s = exp2f(d[o])
            channelScale[o] = s
            for j in 0..<tileCount {
                let (index, start, k) = segment(o, j)
                let row = UnsafePointer(v + start)
                var mean: Float = 0, maxAbs: Float = 0
                if plus { mean = a2qk_sum(row, Int64(k)) / Float(k) }
                var l1 = a2qk_l1_max(row, Int64(k), mean, &maxAbs)
                // A (nearly) constant channel centres to float noise: treat it as zero rather than
                // blowing the noise up to full-scale integers of arbitrary sign.
                if plus && l1 <= Float(k) * abs(mean) * 1e-5 { l1 = 0 }
                let g = exp2f(t[index])
                let ratio = g / s
                let active = ratio < bound
                let clamp = active ? ratio : bound
                let r = l1 > 0 ? clamp / l1 : 0
                // y = fma(v, r, −mean·r) is within a few ulps of (|u| ≤ maxAbs)·r, relative to
                // (|v| + |mean|)·r; below qmax + 1 the truncation alone stays within ±qmax.
                let clips = maxAbs * r + (maxAbs + abs(mean)) * r * 0x1p-20 >= maxLevel + 1
                segmentMean[index] = mean; segmentRatio[index] = r
                segmentClamp[index] = clamp; segmentNorm[index] = l1; segmentActive[index] = active; segmentClips[index] = clips
                a2qk_a2q_forward(row, quantized + start, Int64(k), mean, r, s, maxLevel, clips ? 1 : 0, reductions)
                enforceBound(start: start, count: k, scale: s, positive: reductions[0], negative: reductions[1])
            }
        }
    }

    /// Moves the largest magnitudes toward zero until the segment's integer sums satisfy the
    /// bound exactly. Only float rounding at an integer boundary can trigger it.
    private func enforceBound(start: Int, count: Int, scale s: Float, positive: Float, negative: Float) {
        let w = quantized + start
        // Non-finite weights (a diverged run, damaged parameters) have no integer sums to
        // enforce; they surface as a non-finite loss or a refused integer view instead.
        guard positive.isFinite, negative.isFinite, positive < 0x1p62, -negative < 0x1p62 else { return }
        var alpha = Int64(positive), beta = Int64(-negative)
        if spec.kind == .a2qPlus {
            // A2Q+ (Prop. 3.2): each of Σq⁺ and Σ|q⁻| stays within T/2.
            let half = Int64((bound / 2).rounded(.down))
            while alpha > half { shrinkLargest(w: w, count: count, s: s, positive: true); alpha -= 1 }
            while beta > half { shrinkLargest(w: w, count: count, s: s, positive: false); beta -= 1 }
        } else {
            let limit = Int64(bound.rounded(.down))
            while alpha + beta > limit {
                let positive = alpha >= beta
                shrinkLargest(w: w, count: count, s: s, positive: positive)
                if positive { alpha -= 1 } else { beta -= 1 }
            }
        }
    }

    private func shrinkLargest(w: UnsafeMutablePointer<Float>, count: Int, s: Float, positive: Bool) {
        var best = -1
        var bestValue: Float = 0
        for i in 0..<count {
            let value = positive ? w[i] : -w[i]
            if value > bestValue { bestValue = value; best = i }
        }
        guard best >= 0 else { return }
        let level = (w[best] / s).rounded() - (positive ? 1 : -1)
        w[best] = level * s
    }

    /// Channels in which the last a2q/a2q+ forward applied the ±qmax clip; in the others no
    /// `|y|` could reach `2^(M-1)`, and the kernels skip it (diagnostics and tests).
    public var clippingChannelCount: Int { segmentClips.reduce(0) { $0 + ($1 ? 1 : 0) } }

    // MARK: Backward

    /// Where the layer writes `∂L/∂w_q`: always the weight's own gradient slot; for `float`
    /// accumulating (`beta = 1`), else overwriting (`beta = 0`), because `backward` then turns
    /// it into `∂L/∂v` in place. (A quantized weight belongs to one layer and is used once per
    /// step, so nothing else contributes to its gradient.)
    public func weightGradientTarget(_ parameters: ParameterStore) -> (pointer: UnsafeMutablePointer<Float>, accumulate: Bool) {
        (parameters.gradient(weight), isIdentity)
    }

    /// Turns `∂L/∂w_q` (left by the layer in the weight's gradient slot) into `∂L/∂v` in place,
    /// and accumulates the gradients of `d` and `t`.
    public func backward(_ parameters: ParameterStore) {
        switch spec.kind {
        case .float: return
        case .qat: backwardQAT(parameters)
        case .a2q, .a2qPlus: backwardA2Q(parameters)
        }
    }

    private func backwardQAT(_ parameters: ParameterStore) {
        guard let logScale else { return }
        let v = parameters.value(weight), dv = parameters.gradient(weight), dd = parameters.gradient(logScale)
        let ln2 = Float(M_LN2)
        for o in 0..<outChannels {
            let s = channelScale[o]
            let scaleGradient = a2qk_qat_backward(v + o * fanIn, dv + o * fanIn, Int64(fanIn), s, maxLevel)
            dd[o] += ln2 * s * scaleGradient
        }
    }

    private func backwardA2Q(_ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let v = parameters.value(weight), dv = parameters.gradient(weight)
        let dd = parameters.gradient(logScale), dt = parameters.gradient(logNorm)
        let ln2 = Float(M_LN2), plus = spec.kind == .a2qPlus
        for o in 0..<outChannels {
            for j in 0..<tileCount {
                let (index, start, k) = segment(o, j)
                let s = channelScale[o], r = segmentRatio[index], l1 = segmentNorm[index], mean = segmentMean[index]
                let row = UnsafePointer(v + start), g = dv + start
                let clips: Int32 = segmentClips[index] ? 1 : 0
                // With gm = g where not clipped: ∂L/∂u_j = s·r·(gm_j − sign(u_j)·A/‖u‖₁), A = Σ gm·u;
                // A2Q+ subtracts its mean over the segment. Pass 1 returns ∂L/∂s (direct) = Σ g·q,
                // A, Σ gm and Σ sign(u); pass 2 overwrites ∂L/∂w_q with ∂L/∂v.
                a2qk_a2q_backward_sums(row, g, Int64(k), mean, r, maxLevel, clips, plus ? 1 : 0, reductions)
                let (direct, a, sumGm, sumSign) = (reductions[0], reductions[1], reductions[2], reductions[3])
                guard l1 > 0 else {
                    // An all-zero direction: q = 0 whatever v does nearby, so ∂L/∂v = 0.
                    g.update(repeating: 0, count: k)
                    dd[o] += ln2 * s * direct
                    continue
                }
                let aOverL = a / l1
                let rs = r * s
                let meanDu = plus ? rs * (sumGm - sumSign * aOverL) / Float(k) : 0
                a2qk_a2q_backward_apply(row, g, Int64(k), mean, r, rs, maxLevel, clips,
                                        rs * aOverL, meanDu)
                // c = g/s while active: ∂c/∂t = c·ln2, ∂c/∂d = −c·ln2; ∂L/∂c = s·A/‖u‖₁.
                let clampGradient = segmentActive[index] ? s * aOverL * segmentClamp[index] * ln2 : 0
                dt[index] += clampGradient
                dd[o] += ln2 * s * direct - clampGradient
            }
        }
    }

    // MARK: Constraint upkeep

    /// Projects `t <= d + log2 T` per channel so the stored parameters satisfy the bound
    /// (projected gradient descent). Deterministic; a no-op when unconstrained.
    public func reproject(_ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let d = parameters.value(logScale), t = parameters.value(logNorm)
        let logBound = Float(log2(bound))
        for o in 0..<outChannels {
            for j in 0..<tileCount { let index = o * tileCount + j; t[index] = min(t[index], d[o] + logBound) }
        }
    }

    /// Projects each channel's direction `v` onto the L1 ball of radius `min(g, T·s)` (the
    /// budget in float units), as EP-init does at conversion. Applied after optimizer steps it
    /// keeps small noisy components of `v` from inflating `||v||₁`, which would otherwise shrink
    /// `r = c/||u||₁` and round ever more weights to zero. For A2Q+ the centred `u = v − mean`
    /// is projected and the mean added back. Returns the number of channels changed.
    @discardableResult
    public func projectDirections(_ parameters: ParameterStore) -> Int {
        guard let logScale, let logNorm else { return 0 }
        let d = parameters.value(logScale), t = parameters.value(logNorm)
        let plus = spec.kind == .a2qPlus
        var changed = 0
        for o in 0..<outChannels {
            for j in 0..<tileCount {
                let (index, start, count) = segment(o, j)
                let radius = min(Double(exp2f(t[index])), bound * Double(exp2f(d[o])))
                let row = parameters.value(weight) + start
                let mean = plus ? a2qk_sum(row, Int64(count)) / Float(count) : 0
                guard Double(a2qk_l1(row, Int64(count), mean)) > radius else { continue }
                for i in 0..<count { row[i] -= mean }
                EuclideanProjection.projectOntoL1Ball(row, count: count, radius: radius, scratch: projectionScratch)
                for i in 0..<count { row[i] += mean }
                changed += 1
            }
        }
        return changed
    }

    /// The papers' penalty `Σ relu(g − T·s)`; adds `weight ×` its gradient to `t` and `d`.
    /// Returns the unweighted penalty.
    @discardableResult
    public func addRegularizer(_ parameters: ParameterStore, weight penaltyWeight: Float) -> Float {
        guard let logScale, let logNorm else { return 0 }
        let d = parameters.value(logScale), t = parameters.value(logNorm)
        let dd = parameters.gradient(logScale), dt = parameters.gradient(logNorm)
        let ln2 = Float(M_LN2), bound = Float(self.bound)
        var penalty: Float = 0
        for o in 0..<outChannels {
            for j in 0..<tileCount {
                let index = o * tileCount + j
                let g = exp2f(t[index]), limit = bound * exp2f(d[o])
                guard g > limit else { continue }
                penalty += g - limit
                dt[index] += penaltyWeight * g * ln2
                dd[o] -= penaltyWeight * limit * ln2
            }
        }
        return penalty
    }

    // MARK: Integer view

    /// The integer weights `q` of the last forward pass (`[out·K]`, row-major), recovered
    /// exactly from `w_q = q·s` (integers below 2^15 survive the float round trip).
    /// Empty for `float`. Cold path: allocates. Throws when a scale or weight is not a finite
    /// number (damaged parameters, e.g. from a hostile checkpoint), instead of trapping.
    public func integerWeights() throws -> [Int32] {
        guard !isIdentity else { return [] }
        var q = [Int32](repeating: 0, count: outChannels * fanIn)
        let limit = Float(1 << (spec.weightBits - 1))
        for o in 0..<outChannels {
            let s = channelScale[o]
            for i in 0..<fanIn {
                let v = (quantized[o * fanIn + i] / s).rounded()
                guard v.isFinite, abs(v) <= limit else {
                    throw A2QError("output channel \(o) of a \(spec.weightBits)-bit weight quantizer has no valid integer weights (scale \(s), value \(quantized[o * fanIn + i]))",
                                   remedy: "the model's parameters are damaged (non-finite or out of range); use another checkpoint")
                }
                q[o * fanIn + i] = Int32(v)
            }
        }
        return q
    }

    /// Per-channel scales `s` of the last forward pass.
    public var scales: [Float] { channelScale }
}
