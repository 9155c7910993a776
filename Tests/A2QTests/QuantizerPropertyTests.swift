import A2QCore
import A2QQuant
import Testing

/// Builds a standalone weight quantizer over a `[out, K]` weight.
func makeQuantizer(kind: WeightQuantizerKind, out: Int, k: Int, m: Int, p: Int, input: InputFormat)
    throws -> (WeightQuantizer, ParameterStore) {
    var layout = ParameterLayout()
    let weight = layout.declare("layer.weight", shape: [out, k], role: .weight)
    let q = try WeightQuantizer(spec: WeightQuantizerSpec(kind: kind, weightBits: m, accumulatorBits: p),
                                layerName: "layer", weight: weight, outChannels: out, fanIn: k, input: input,
                                layout: &layout)
    return (q, ParameterStore(layout: layout))
}

@Suite("Weight quantizer properties over random configurations")
struct QuantizerPropertyTests {
    enum Distribution: CaseIterable { case uniform, oneHuge, allEqual, heavyTail, allNegative, withZeros, allZero }

    static func fill(_ w: UnsafeMutablePointer<Float>, _ k: Int, _ d: Distribution, _ g: inout Xoshiro256) {
        for i in 0..<k {
            switch d {
            case .uniform: w[i] = g.uniform(-1, 1)
            case .oneHuge: w[i] = i == 0 ? 1000 : g.uniform(-1e-3, 1e-3)
            case .allEqual: w[i] = 0.37
            case .heavyTail: let n = g.normal(); w[i] = n * n * n * n * n
            case .allNegative: w[i] = -g.uniform(0.01, 2)
            case .withZeros: w[i] = g.nextUnitFloat() < 0.7 ? 0 : g.uniform(-3, 3)
            case .allZero: w[i] = 0
            }
        }
    }

    @Test("A2Q/A2Q+: every channel fits P bits by the exact worst case; A2Q's ||q||₁ ≤ T; RTZ never grows a magnitude")
    func overflowFreeEverywhere() throws {
        var g = Xoshiro256(seed: 2024)
        var checked = 0
        for trial in 0..<3000 {
            let plus = trial % 2 == 1
            let kind: WeightQuantizerKind = plus ? .a2qPlus : .a2q
            let k: Int
            switch trial % 10 {
            case 0: k = 1
            case 1: k = 5000
            default: k = 1 + Int(g.next() % 600)
            }
            let m = 2 + Int(g.next() % 7), n = 2 + Int(g.next() % 7)
            let input = InputFormat(bits: n, signed: g.next() % 2 == 0)
            guard let smallest = AccumulatorBounds.smallestUsefulBits(plus: plus, input: input) else { continue }
            let p = smallest + Int(g.next() % UInt64(33 - smallest))
            let out = 1 + Int(g.next() % 3)
            let (quantizer, store) = try makeQuantizer(kind: kind, out: out, k: k, m: m, p: p, input: input)
            let v = store.value(quantizer.weight)
            for o in 0..<out {
                Self.fill(v + o * k, k, Distribution.allCases[Int(g.next() % UInt64(Distribution.allCases.count))], &g)
            }
            quantizer.initializeFromFloatWeights(store, method: g.next() % 2 == 0 ? .ep : .naive)
            // Move log2 g around the clamp so both sides of min(g/s, T) are exercised.
            if let logNorm = quantizer.logNorm {
                for o in 0..<out { store.value(logNorm)[o] += g.uniform(-3, 3) }
            }
            let wq = quantizer.forward(store)
            let q = try quantizer.integerWeights()
            let scales = quantizer.scales
            let qmax = Int32((1 << (m - 1)) - 1)
            for o in 0..<out {
                let row = Array(q[(o * k)..<((o + 1) * k)])
                #expect(row.allSatisfy { abs($0) <= qmax }, "narrow range M=\(m)")
                let (lo, hi) = AccumulatorBounds.worstCase(row, input: input)
                #expect(AccumulatorBounds.fits(minimum: lo, maximum: hi, accumulatorBits: p),
                        "\(kind) K=\(k) M=\(m) \(input) P=\(p): [\(lo), \(hi)]")
                let l1 = row.reduce(Int64(0)) { $0 + Int64(abs($1)) }
                if !plus { #expect(Double(l1) <= quantizer.bound, "A2Q L1 \(l1) > T \(quantizer.bound)") }
                // Round toward zero: |q_i| ≤ |u_i|·r, i.e. |q_i·s| ≤ the unrounded magnitude; and signs kept.
                let mean: Double = plus ? (0..<k).reduce(0.0) { $0 + Double(v[o * k + $1]) } / Double(k) : 0
                for i in 0..<k where row[i] != 0 {
                    let u = Double(v[o * k + i]) - mean
                    #expect((u > 0) == (row[i] > 0), "sign flipped")
                }
                // w_q is exactly q·s.
                for i in 0..<k { #expect(wq[o * k + i] == Float(row[i]) * scales[o]) }
                checked += 1
            }
        }
        #expect(checked > 3000)
    }

    @Test("Round toward zero never grows a magnitude (direct check on y = u·r)")
    func roundTowardZero() throws {
        var g = Xoshiro256(seed: 5)
        let input = InputFormat(bits: 8, signed: false)
        let (quantizer, store) = try makeQuantizer(kind: .a2q, out: 4, k: 257, m: 8, p: 18, input: input)
        let v = store.value(quantizer.weight)
        for i in 0..<quantizer.weight.count { v[i] = g.uniform(-1, 1) }
        quantizer.initializeFromFloatWeights(store)
        _ = quantizer.forward(store)
        let q = try quantizer.integerWeights()
        for o in 0..<4 {
            var l1 = 0.0
            for i in 0..<257 { l1 += Double(abs(v[o * 257 + i])) }
            let s = Double(exp2(store.value(quantizer.logScale!)[o])), gNorm = Double(exp2(store.value(quantizer.logNorm!)[o]))
            let r = min(gNorm / s, quantizer.bound) / l1
            for i in 0..<257 {
                let y = Double(v[o * 257 + i]) * r
                #expect(abs(Double(q[o * 257 + i])) <= abs(y) + 1e-9)
                #expect(Double(q[o * 257 + i]) == (abs(y - y.rounded()) > 1e-4 ? y.rounded(.towardZero) : Double(q[o * 257 + i])))
            }
        }
    }

    @Test("Too narrow an accumulator is an error naming the layer, P, N and the smallest useful P")
    func tooNarrow() {
        let u8 = InputFormat(bits: 8, signed: false)
        for (kind, p, smallest) in [(WeightQuantizerKind.a2q, 9, 10), (.a2qPlus, 8, 9)] {
            do {
                _ = try makeQuantizer(kind: kind, out: 2, k: 4, m: 8, p: p, input: u8)
                Issue.record("P=\(p) should be rejected for \(kind)")
            } catch let error as A2QError {
                let text = error.description
                #expect(text.contains("layer") && text.contains("\(p)-bit") && text.contains("N=8") && text.contains("P=\(smallest)"), "\(text)")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        #expect(throws: A2QError.self) { _ = try makeQuantizer(kind: .qat, out: 1, k: 1, m: 17, p: 32, input: u8) }
        #expect(throws: A2QError.self) { _ = try makeQuantizer(kind: .a2q, out: 1, k: 1, m: 8, p: 33, input: u8) }
    }

    @Test("Hand-computed A2Q, A2Q+ and QAT integers (A2Q.md formulas)")
    func handComputed() throws {
        let u8 = InputFormat(bits: 8, signed: false)
        let w: [Float] = [0.5, -0.25, 0.125, 0.0625]
        // s = 0.5/7; g/s = 0.9375/(0.5/7) = 13.125.
        // A2Q, P=12: T = 2047/256 = 7.996 < 13.125, r = T/0.9375, y = [4.26, −2.13, 1.07, 0.53] → [4, −2, 1, 0].
        // A2Q+, P=12: T = 4094/255 = 16.05 > 13.125, u = w − 0.109375, ||u||₁ = 0.8125,
        //   r = 13.125/0.8125, y = [6.31, −5.81, 0.25, −0.76] → [6, −5, 0, 0].
        // QAT: w/s = [7, −3.5, 1.75, 0.875] in exact arithmetic, but float32 s = 0.071428575 is
        // just above 0.5/7, so −0.25/s = −3.4999998 (numpy float32 agrees) → [7, −3, 2, 1].
        for (kind, expected) in [(WeightQuantizerKind.a2q, [Int32(4), -2, 1, 0]), (.a2qPlus, [6, -5, 0, 0]), (.qat, [7, -3, 2, 1])] {
            let (quantizer, store) = try makeQuantizer(kind: kind, out: 1, k: 4, m: 4, p: 12, input: u8)
            for i in 0..<4 { store.value(quantizer.weight)[i] = w[i] }
            quantizer.initializeFromFloatWeights(store)
            _ = quantizer.forward(store)
            #expect(try quantizer.integerWeights() == expected, "\(kind)")
            #expect(abs(quantizer.scales[0] - 0.5 / 7) < 1e-7)
        }
    }

    @Test("Direction projection: ||v − mean||₁ ends at min(g, T·s) (the old mean added back for A2Q+), integers stay in budget",
          arguments: [WeightQuantizerKind.a2q, .a2qPlus])
    func directionProjection(kind: WeightQuantizerKind) throws {
        let u8 = InputFormat(bits: 8, signed: false)
        let (quantizer, store) = try makeQuantizer(kind: kind, out: 4, k: 300, m: 8, p: 14, input: u8)
        var g = Xoshiro256(seed: 9)
        let v = store.value(quantizer.weight)
        for i in 0..<quantizer.weight.count { v[i] = g.uniform(-1, 1) }
        quantizer.initializeFromFloatWeights(store, method: .naive)
        for i in 0..<quantizer.weight.count { v[i] += g.uniform(-0.05, 0.05) }  // noise, as after optimizer steps
        let means = (0..<4).map { o in (0..<300).reduce(0.0) { $0 + Double(v[o * 300 + $1]) } / 300 }
        #expect(quantizer.projectDirections(store) == 4)
        for o in 0..<4 {
            let s = exp2(Double(store.value(quantizer.logScale!)[o])), gNorm = exp2(Double(store.value(quantizer.logNorm!)[o]))
            let mean = kind == .a2qPlus ? means[o] : 0
            let l1 = (0..<300).reduce(0.0) { $0 + abs(Double(v[o * 300 + $1]) - mean) }
            #expect(abs(l1 - min(gNorm, quantizer.bound * s)) < 1e-3 * l1)
        }
        _ = quantizer.forward(store)
        let q = try quantizer.integerWeights()
        for o in 0..<4 {
            let (lo, hi) = AccumulatorBounds.worstCase(q[(o * 300)..<((o + 1) * 300)], input: u8)
            #expect(AccumulatorBounds.fits(minimum: lo, maximum: hi, accumulatorBits: 14))
        }
    }

    @Test("Re-projection keeps g ≤ T·s, and the regulariser penalises only the excess")
    func reprojection() throws {
        let u8 = InputFormat(bits: 8, signed: false)
        let (quantizer, store) = try makeQuantizer(kind: .a2qPlus, out: 3, k: 10, m: 8, p: 14, input: u8)
        guard let logScale = quantizer.logScale, let logNorm = quantizer.logNorm else { Issue.record("no views"); return }
        let d = store.value(logScale), t = store.value(logNorm)
        let logT = Float(log2(quantizer.bound))
        d[0] = -3; t[0] = -3 + logT + 2      // above the bound
        d[1] = -2; t[1] = -2 + logT - 1      // below
        d[2] = 0; t[2] = logT                // exactly on it
        store.zeroGradients()
        let penalty = quantizer.addRegularizer(store, weight: 1)
        let expected = exp2(Double(t[0])) - quantizer.bound * exp2(Double(d[0]))
        #expect(abs(Double(penalty) - expected) / expected < 1e-5)
        #expect(store.gradient(logNorm)[1] == 0 && store.gradient(logNorm)[0] > 0)
        quantizer.reproject(store)
        #expect(abs(t[0] - (d[0] + logT)) < 1e-6)
        #expect(t[1] == -2 + logT - 1)
        #expect(t[2] <= d[2] + logT)
    }
}

#if canImport(Glibc)
import Glibc
#endif
