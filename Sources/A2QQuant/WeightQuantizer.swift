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
}

/// A layer's weight quantizer settings.
public struct WeightQuantizerSpec: Sendable, Hashable, Codable {
    public var kind: WeightQuantizerKind
    /// M, the weight bit width (2...16).
    public var weightBits: Int
    /// P, the accumulator bit width (used by `a2q`/`a2q+`; up to 32).
    public var accumulatorBits: Int

    public init(kind: WeightQuantizerKind, weightBits: Int = 8, accumulatorBits: Int = 32) {
        self.kind = kind
        self.weightBits = weightBits
        self.accumulatorBits = accumulatorBits
    }

    /// No quantization.
    public static let float = WeightQuantizerSpec(kind: .float)
}

/// A per-output-channel weight quantizer for a weight matrix `[out, K]` (row-major; a conv's
/// `[out, in, kh, kw]` is the same memory).
///
/// Parameters (declared next to the layer's weight, which is the direction `v`):
/// `<layer>.weight_log2_scale` (`d`, `s = 2^d`, qat/a2q/a2q+) and `<layer>.weight_log2_norm`
/// (`t`, `g = 2^t`, a2q/a2q+).
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
    // Per-channel caches from the last forward pass (centring mean, s, r = min(g/s, T)/||u||_1,
    // min(g/s, T), ||u||_1, whether g/s < T, whether the clip to ±qmax can act).
    private var channelMean: [Float]
    private var channelScale: [Float]
    private var channelRatio: [Float]
    private var channelClamp: [Float]
    private var channelNorm: [Float]
    private var channelActive: [Bool]
    private var channelClips: [Bool]

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
            logScale = layout.declare("\(layerName).weight_log2_scale", shape: [outChannels], role: .logScale)
            logNorm = layout.declare("\(layerName).weight_log2_norm", shape: [outChannels], role: .logNorm)
        }
        // Float layers use `v` itself (`forward`), so their scratch is one value, not a second copy.
        let n = spec.kind == .float ? 1 : outChannels * fanIn
        quantized = .allocate(capacity: n); quantized.initialize(repeating: 0, count: n)
        reductions = .allocate(capacity: 4); reductions.initialize(repeating: 0, count: 4)
        projectionScratch = .allocate(capacity: fanIn); projectionScratch.initialize(repeating: 0, count: fanIn)
        channelMean = Array(repeating: 0, count: outChannels)
        channelScale = Array(repeating: 1, count: outChannels)
        channelRatio = Array(repeating: 0, count: outChannels)
        channelClamp = Array(repeating: 0, count: outChannels)
        channelNorm = Array(repeating: 0, count: outChannels)
        channelActive = Array(repeating: false, count: outChannels)
        channelClips = Array(repeating: true, count: outChannels)
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
            if method == .epScaled {
                initializeScaleSearch(channel: o, parameters)
                continue
            }
            if method == .ep {
                let radius = Double(s) * bound
                EuclideanProjection.projectOntoL1Ball(row, count: fanIn, radius: radius, scratch: projectionScratch)
            }
            var l1: Double = 0
            for i in 0..<fanIn { l1 += Double(abs(row[i])) }
            let g = method == .ep ? min(l1, Double(s) * bound) : l1
            parameters.value(logNorm)[o] = g > 0 ? Float(log2(g)) : d[o]
        }
    }

    /// The `epScaled` search for one channel (Float64, cold path).
    private func initializeScaleSearch(channel o: Int, _ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let row = parameters.value(weight) + o * fanIn
        let w = (0..<fanIn).map { Double(row[$0]) }
        let maxAbs = w.map(abs).max() ?? 0
        guard maxAbs > 0 else { return }
        let l1 = w.reduce(0) { $0 + abs($1) }
        let qmax = Double(maxLevel), plus = spec.kind == .a2qPlus
        let base = maxAbs / qmax
        let top = 2 * max(base, l1 / bound, maxAbs)
        let steps = Int((4 * log2(top / base)).rounded(.up))
        var best: (error: Double, trial: Double, fitted: Double, projected: [Float])? = nil
        let thresholds = EuclideanProjection.Thresholds(UnsafeBufferPointer(start: row, count: fanIn))
        var candidate = [Float](repeating: 0, count: fanIn)
        var q = [Double](repeating: 0, count: fanIn)
        for j in 0...max(steps, 0) {
            let trial = base * exp2(Double(j) / 4)
            // Project onto the L1 ball of radius trial·T and simulate the forward pass for
            // v = projection, s = trial, g = min(||v||₁, s·T).
            let theta = thresholds.threshold(radius: trial * bound)
            var vSum = 0.0, vNorm = 0.0
            for i in 0..<fanIn {
                let magnitude = max(Double(abs(row[i])) - theta, 0)
                let value = Float(row[i] < 0 ? -magnitude : magnitude)
                candidate[i] = value
                vSum += Double(value)
                vNorm += Double(abs(value))
            }
            let mean = plus ? vSum / Double(fanIn) : 0
            var uNorm = 0.0
            for i in 0..<fanIn { uNorm += abs(Double(candidate[i]) - mean) }
            guard uNorm > 0 else { continue }
            let pre = uNorm / min(vNorm / trial, bound)
            var wq = 0.0, qq = 0.0
            for i in 0..<fanIn {
                let level = min(max(((Double(candidate[i]) - mean) / pre).rounded(.towardZero), -qmax), qmax)
                q[i] = level
                wq += w[i] * level
                qq += level * level
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
            EuclideanProjection.projectOntoL1Ball(row, count: fanIn, radius: s * bound, scratch: projectionScratch)
            var norm: Double = 0
            for i in 0..<fanIn { norm += Double(abs(row[i])) }
            parameters.value(logNorm)[o] = Float(log2(max(min(norm, s * bound), Double.leastNormalMagnitude)))
            return
        }
        // Rescale (v, g, s) by fitted/trial: the integers stay those of the trial.
        let ratio = best.fitted / best.trial
        var norm: Double = 0
        for i in 0..<fanIn {
            row[i] = Float(Double(best.projected[i]) * ratio)
            norm += Double(abs(best.projected[i]))
        }
        parameters.value(logScale)[o] = Float(log2(best.fitted))
        parameters.value(logNorm)[o] = Float(log2(min(norm, best.trial * bound) * ratio))
    }

    /// Multiplies channel `o`'s effective weights by `factor` without changing its integers:
    /// `v`, `g` and `s` all scale by `factor` (so `q = RTZ(u·min(g/s, T)/||u||₁)` is unchanged).
    public func rescaleChannel(_ o: Int, by factor: Double, _ parameters: ParameterStore) {
        guard factor > 0, factor.isFinite, let logScale else { return }
        let shift = Float(log2(factor))
        parameters.value(logScale)[o] += shift
        if let logNorm {
            parameters.value(logNorm)[o] += shift
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
        let k = fanIn, bound = Float(self.bound), plus = spec.kind == .a2qPlus
        for o in 0..<outChannels {
            let row = UnsafePointer(v + o * k)
            var mean: Float = 0, maxAbs: Float = 0
            if plus { mean = a2qk_sum(row, Int64(k)) / Float(k) }
            var l1 = a2qk_l1_max(row, Int64(k), mean, &maxAbs)
            // A (nearly) constant channel centres to float noise: treat it as zero rather than
            // blowing the noise up to full-scale integers of arbitrary sign.
            if plus && l1 <= Float(k) * abs(mean) * 1e-5 { l1 = 0 }
            let s = exp2f(d[o]), g = exp2f(t[o])
            let ratio = g / s
            let active = ratio < bound
            let clamp = active ? ratio : bound
            let r = l1 > 0 ? clamp / l1 : 0
            // y = fma(v, r, −mean·r) is within a few ulps of (|u| ≤ maxAbs)·r, relative to
            // (|v| + |mean|)·r; below qmax + 1 the truncation alone stays within ±qmax.
            let clips = maxAbs * r + (maxAbs + abs(mean)) * r * 0x1p-20 >= maxLevel + 1
            channelMean[o] = mean; channelScale[o] = s; channelRatio[o] = r
            channelClamp[o] = clamp; channelNorm[o] = l1; channelActive[o] = active; channelClips[o] = clips
            a2qk_a2q_forward(row, quantized + o * k, Int64(k), mean, r, s, maxLevel, clips ? 1 : 0, reductions)
            enforceBound(channel: o, positive: reductions[0], negative: reductions[1])
        }
    }

    /// Moves the largest magnitudes toward zero until the channel's integer sums satisfy the
    /// bound exactly. Only float rounding at an integer boundary can trigger it.
    private func enforceBound(channel o: Int, positive: Float, negative: Float) {
        let w = quantized + o * fanIn, s = channelScale[o]
        // Non-finite weights (a diverged run, damaged parameters) have no integer sums to
        // enforce; they surface as a non-finite loss or a refused integer view instead.
        guard positive.isFinite, negative.isFinite, positive < 0x1p62, -negative < 0x1p62 else { return }
        var alpha = Int64(positive), beta = Int64(-negative)
        if spec.kind == .a2qPlus {
            // A2Q+ (Prop. 3.2): each of Σq⁺ and Σ|q⁻| stays within T/2.
            let half = Int64((bound / 2).rounded(.down))
            while alpha > half { shrinkLargest(w: w, s: s, positive: true); alpha -= 1 }
            while beta > half { shrinkLargest(w: w, s: s, positive: false); beta -= 1 }
        } else {
            let limit = Int64(bound.rounded(.down))
            while alpha + beta > limit {
                let positive = alpha >= beta
                shrinkLargest(w: w, s: s, positive: positive)
                if positive { alpha -= 1 } else { beta -= 1 }
            }
        }
    }

    private func shrinkLargest(w: UnsafeMutablePointer<Float>, s: Float, positive: Bool) {
        var best = -1
        var bestValue: Float = 0
        for i in 0..<fanIn {
            let value = positive ? w[i] : -w[i]
            if value > bestValue { bestValue = value; best = i }
        }
        guard best >= 0 else { return }
        let level = (w[best] / s).rounded() - (positive ? 1 : -1)
        w[best] = level * s
    }

    /// Channels in which the last a2q/a2q+ forward applied the ±qmax clip; in the others no
    /// `|y|` could reach `2^(M-1)`, and the kernels skip it (diagnostics and tests).
    public var clippingChannelCount: Int { channelClips.reduce(0) { $0 + ($1 ? 1 : 0) } }

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
        let k = fanIn, ln2 = Float(M_LN2), plus = spec.kind == .a2qPlus
        for o in 0..<outChannels {
            let s = channelScale[o], r = channelRatio[o], l1 = channelNorm[o], mean = channelMean[o]
            let row = UnsafePointer(v + o * k), g = dv + o * k
            let clips: Int32 = channelClips[o] ? 1 : 0
            // With gm = g where not clipped: ∂L/∂u_j = s·r·(gm_j − sign(u_j)·A/‖u‖₁), A = Σ gm·u;
            // A2Q+ subtracts its mean over the channel. Pass 1 returns ∂L/∂s (direct) = Σ g·q,
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
            let clampGradient = channelActive[o] ? s * aOverL * channelClamp[o] * ln2 : 0
            dt[o] += clampGradient
            dd[o] += ln2 * s * direct - clampGradient
        }
    }

    // MARK: Constraint upkeep

    /// Projects `t <= d + log2 T` per channel so the stored parameters satisfy the bound
    /// (projected gradient descent). Deterministic; a no-op when unconstrained.
    public func reproject(_ parameters: ParameterStore) {
        guard let logScale, let logNorm else { return }
        let d = parameters.value(logScale), t = parameters.value(logNorm)
        let logBound = Float(log2(bound))
        for o in 0..<outChannels { t[o] = min(t[o], d[o] + logBound) }
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
            let radius = min(Double(exp2f(t[o])), bound * Double(exp2f(d[o])))
            let row = parameters.value(weight) + o * fanIn
            let mean = plus ? a2qk_sum(row, Int64(fanIn)) / Float(fanIn) : 0
            guard Double(a2qk_l1(row, Int64(fanIn), mean)) > radius else { continue }
            for i in 0..<fanIn { row[i] -= mean }
            EuclideanProjection.projectOntoL1Ball(row, count: fanIn, radius: radius, scratch: projectionScratch)
            for i in 0..<fanIn { row[i] += mean }
            changed += 1
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
            let g = exp2f(t[o]), limit = bound * exp2f(d[o])
            guard g > limit else { continue }
            penalty += g - limit
            dt[o] += penaltyWeight * g * ln2
            dd[o] -= penaltyWeight * limit * ln2
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
