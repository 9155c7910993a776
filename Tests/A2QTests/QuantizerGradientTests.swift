import A2QCore
import A2QNN
import A2QQuant
import Testing

/// The straight-through surrogate of a weight quantizer in Float64, linearised at θ₀:
/// rounding is the identity for the derivative (q = q₀ + y − y₀ where not clipped, q₀ where
/// clipped) and `min(g/s, T)` keeps the branch it takes at θ₀. Finite differences of this
/// function are exactly the gradients the quantizer's convention defines. With tiles every
/// tile of a channel has its own mean, norm and clamp (`WeightQuantizer`'s segments).
struct SurrogateQuantizer {
    let kind: WeightQuantizerKind
    let out: Int, k: Int
    let tileLength: Int, tileCount: Int
    let qmax: Double, bound: Double
    let weightOffset: Int, scaleOffset: Int, normOffset: Int
    var y0: [Double] = [], q0: [Double] = [], inside: [Bool] = [], active: [Bool] = []

    init(kind: WeightQuantizerKind, quantizer: WeightQuantizer, parameters p0: [Double]) {
        self.kind = kind
        out = quantizer.outChannels
        k = quantizer.fanIn
        tileLength = quantizer.tileLength
        tileCount = quantizer.tileCount
        qmax = Double(quantizer.maxLevel)
        bound = quantizer.bound
        weightOffset = quantizer.weight.offset
        scaleOffset = quantizer.logScale?.offset ?? -1
        normOffset = quantizer.logNorm?.offset ?? -1
        let (y, act) = unrounded(p0)
        y0 = y
        active = act
        for value in y {
            let level = kind == .qat ? value.rounded(.toNearestOrEven) : value.rounded(.towardZero)
            inside.append(abs(level) <= qmax)
            q0.append(min(max(level, -qmax), qmax))
        }
    }

    /// y = u·r (A2Q/A2Q+) or v/s (QAT), and whether each segment's clamp is active.
    func unrounded(_ p: [Double], fixedActive: [Bool]? = nil) -> ([Double], [Bool]) {
        var y = [Double](repeating: 0, count: out * k)
        var act: [Bool] = []
        for o in 0..<out {
            let s = exp2(p[scaleOffset + o])
            if kind == .qat {
                for i in 0..<k { y[o * k + i] = p[weightOffset + o * k + i] / s }
                act.append(false)
                continue
            }
            for j in 0..<tileCount {
                let first = o * k + j * tileLength, count = min(tileLength, k - j * tileLength)
                let row = Array(p[(weightOffset + first)..<(weightOffset + first + count)])
                let mean = kind == .a2qPlus ? row.reduce(0, +) / Double(count) : 0
                let u = row.map { $0 - mean }
                let l1 = u.map(abs).reduce(0, +)
                let ratio = exp2(p[normOffset + o * tileCount + j]) / s
                let isActive = fixedActive?[o * tileCount + j] ?? (ratio < bound)
                act.append(isActive)
                let r = (isActive ? ratio : bound) / l1
                for i in 0..<count { y[first + i] = u[i] * r }
            }
        }
        return (y, act)
    }

    /// The surrogate weights w = q·s.
    func weights(_ p: [Double]) -> [Double] {
        let (y, _) = unrounded(p, fixedActive: active)
        var w = [Double](repeating: 0, count: out * k)
        for o in 0..<out {
            let s = exp2(p[scaleOffset + o])
            for i in 0..<k {
                let j = o * k + i
                w[j] = (inside[j] ? q0[j] + (y[j] - y0[j]) : q0[j]) * s
            }
        }
        return w
    }

    /// Distance of the closest unrounded value to a rounding decision boundary.
    var closestBoundary: Double {
        y0.map { kind == .qat ? abs(abs($0 - $0.rounded(.down)) - 0.5) : abs($0 - $0.rounded()) }.min() ?? 1
    }
}

@Suite("Quantized layers: gradients through the straight-through surrogate (Float64 finite differences)")
struct QuantizerGradientTests {
    static let kinds: [WeightQuantizerKind] = [.qat, .a2q, .a2qPlus]

    /// Randomises parameters until no value sits within 1e-3 of a rounding boundary and the clamp is
    /// clearly on one side (`activeClamp` picks which).
    func prepare(_ quantizer: WeightQuantizer, _ store: ParameterStore, activeClamp: Bool, seed: UInt64) -> SurrogateQuantizer {
        var g = Xoshiro256(seed: seed)
        for attempt in 0..<200 {
            randomize(store, &g, low: -1, high: 1)
            quantizer.initializeFromFloatWeights(store)
            if let logNorm = quantizer.logNorm, let logScale = quantizer.logScale {
                for o in 0..<quantizer.outChannels {
                    let ceiling = store.value(logScale)[o] + Float(log2(quantizer.bound))
                    for j in 0..<quantizer.tileCount {
                        store.value(logNorm)[o * quantizer.tileCount + j] = activeClamp ? ceiling - g.uniform(0.3, 1.5) : ceiling + g.uniform(0.3, 1.5)
                    }
                }
            }
            let surrogate = SurrogateQuantizer(kind: quantizer.spec.kind, quantizer: quantizer,
                                               parameters: store.valuesArray().map(Double.init))
            if surrogate.closestBoundary > 1e-3 { return surrogate }
            _ = attempt
        }
        Issue.record("could not find parameters away from rounding boundaries")
        return SurrogateQuantizer(kind: quantizer.spec.kind, quantizer: quantizer, parameters: store.valuesArray().map(Double.init))
    }

    /// Every kind with the clamp active at M = 4; A2Q and A2Q+ also with the clamp inactive and at
    /// M = 8 (the no-clip path). QAT has no clamp and no clip skipping, so those two cases do not
    /// exist for it (listed, not skipped: the run names each case it covers).
    static let linearCases: [(WeightQuantizerKind, (activeClamp: Bool, weightBits: Int))] =
        kinds.map { ($0, (activeClamp: true, weightBits: 4)) }
        + kinds.filter { $0 != .qat }.flatMap { [($0, (activeClamp: false, weightBits: 4)), ($0, (activeClamp: true, weightBits: 8))] }

    /// The reference of a Linear layer in Float64: `y = x·wᵀ + b` with the surrogate's weights.
    static func linear(_ x: [Double], weights w: [Double], parameters p: [Double], biasOffset: Int, batch: Int, inputs: Int,
                       outputs: Int) -> [Double] {
        var y = [Double](repeating: 0, count: batch * outputs)
        for n in 0..<batch {
            for o in 0..<outputs {
                var s = p[biasOffset + o]
                for i in 0..<inputs { s += x[n * inputs + i] * w[o * inputs + i] }
                y[n * outputs + o] = s
            }
        }
        return y
    }

    @Test("Linear", arguments: linearCases)
    func linear(kind: WeightQuantizerKind, setting: (activeClamp: Bool, weightBits: Int)) throws {
        let (activeClamp, weightBits) = setting
        let (batch, inputs, outputs) = (3, 6, 4)
        var layout = ParameterLayout()
        // M=4 keeps levels coarse so that values clip (qmax = 7), with P large enough for non-zero
        // levels; M=8 at P=12 keeps every |y| below 128, so the kernels take their no-clip path.
        let fc = try Linear(name: "fc", inputs: inputs, outputs: outputs,
                            quantizer: WeightQuantizerSpec(kind: kind, weightBits: weightBits,
                                                           accumulatorBits: weightBits == 4 ? 14 : 12),
                            input: InputFormat(bits: 4, signed: false), layout: &layout)
        let store = ParameterStore(layout: layout)
        let surrogate = prepare(fc.quantizer, store, activeClamp: activeClamp, seed: 17)
        if kind != .qat {
            _ = fc.quantizer.forward(store)
            let clipping = fc.quantizer.clippingChannelCount
            #expect(weightBits == 4 ? clipping == outputs : clipping == 0, "\(clipping) of \(outputs) channels clip")
        }
        var g = Xoshiro256(seed: 99)
        let x = randomTensor([batch, inputs], &g)
        let biasOffset = fc.bias!.offset
        checkLayer(fc, store: store, input: x) { x, p in
            Self.linear(x, weights: surrogate.weights(p), parameters: p, biasOffset: biasOffset, batch: batch, inputs: inputs, outputs: outputs)
        }
    }

    @Test("Conv2d", arguments: kinds)
    func conv(kind: WeightQuantizerKind) throws {
        let (n, c, h, w, out, k) = (2, 2, 5, 4, 3, 3)
        var layout = ParameterLayout()
        let conv = try Conv2d(name: "conv", inChannels: c, outChannels: out, kernelSize: k, stride: 1, padding: 1,
                              quantizer: WeightQuantizerSpec(kind: kind, weightBits: 5, accumulatorBits: 16),
                              input: InputFormat(bits: 5, signed: true), layout: &layout)
        let store = ParameterStore(layout: layout)
        let surrogate = prepare(conv.quantizer, store, activeClamp: true, seed: 23)
        var g = Xoshiro256(seed: 7)
        let x = randomTensor([n, c, h, w], &g)
        let biasOffset = conv.bias!.offset
        checkLayer(conv, store: store, input: x) { x, p in
            naiveConvolution(x, n: n, c: c, h: h, w: w, weight: surrogate.weights(p),
                             bias: Array(p[biasOffset..<(biasOffset + out)]), outChannels: out, kernel: k, stride: 1, padding: 1)
        }
    }

    @Test("Tiled A2Q/A2Q+ (multi-stage accumulation): per-tile norms, means and clamps, Linear and Conv2d, clamp active and not",
          arguments: [WeightQuantizerKind.a2q, .a2qPlus], [true, false])
    func tiled(kind: WeightQuantizerKind, activeClamp: Bool) throws {
        // Linear: K = 10 in tiles of 4 (4, 4, 2); Conv2d: K = 2·3·3 = 18 in tiles of 7 (7, 7, 4).
        let (batch, inputs, outputs) = (3, 10, 3)
        var layout = ParameterLayout()
        let spec = WeightQuantizerSpec(kind: kind, weightBits: 4, accumulatorBits: 12, accumulatorTile: 4)
        let fc = try Linear(name: "fc", inputs: inputs, outputs: outputs, quantizer: spec,
                            input: InputFormat(bits: 4, signed: false), layout: &layout)
        var convSpec = spec
        convSpec.accumulatorTile = 7
        let conv = try Conv2d(name: "conv", inChannels: 2, outChannels: 2, kernelSize: 3, stride: 1, padding: 1, quantizer: convSpec,
                              input: InputFormat(bits: 4, signed: false), layout: &layout)
        #expect(fc.quantizer.tileCount == 3 && conv.quantizer.tileCount == 3)
        #expect(fc.quantizer.logNorm?.shape == [outputs, 3] && conv.quantizer.logNorm?.shape == [2, 3])
        let store = ParameterStore(layout: layout)
        let surrogate = prepare(fc.quantizer, store, activeClamp: activeClamp, seed: 31)
        var g = Xoshiro256(seed: 5)
        let x = randomTensor([batch, inputs], &g)
        let biasOffset = fc.bias!.offset
        checkLayer(fc, store: store, input: x) { x, p in
            Self.linear(x, weights: surrogate.weights(p), parameters: p, biasOffset: biasOffset, batch: batch, inputs: inputs, outputs: outputs)
        }
        let convSurrogate = prepare(conv.quantizer, store, activeClamp: activeClamp, seed: 37)
        let image = randomTensor([2, 2, 4, 5], &g)
        let convBias = conv.bias!.offset
        checkLayer(conv, store: store, input: image) { x, p in
            naiveConvolution(x, n: 2, c: 2, h: 4, w: 5, weight: convSurrogate.weights(p),
                             bias: Array(p[convBias..<(convBias + 2)]), outChannels: 2, kernel: 3, stride: 1, padding: 1)
        }
    }

    @Test("Activation quantizer: input and scale gradients (unsigned and signed)", arguments: [false, true])
    func activation(signed: Bool) {
        var layout = ParameterLayout()
        let format = InputFormat(bits: 3, signed: signed)
        let act = ActivationQuantizer(name: "act", format: format, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: signed ? 3 : 4)
        store.values[0] = log2(0.3)
        let lo = Double(format.minimum), hi = Double(format.maximum)
        // Inputs spread over and beyond the range, away from rounding boundaries.
        let x = Tensor(shape: [4, 10])
        for i in 0..<x.count {
            var v: Float
            repeat { v = g.uniform(signed ? -2 : -0.5, 3) } while abs(abs(Double(v) / 0.3 - (Double(v) / 0.3).rounded(.down)) - 0.5) < 0.02
            x[i] = v
        }
        let s0 = 0.3
        let y0 = x.array.map { Double($0) / s0 }
        checkLayer(act, store: store, input: x) { x, p in
            let s = exp2(p[0])
            return zip(x, y0).map { xi, yi in
                let level = yi.rounded(.toNearestOrEven)
                if level < lo { return lo * s }
                if level > hi { return hi * s }
                return (level + (xi / s - yi)) * s
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
