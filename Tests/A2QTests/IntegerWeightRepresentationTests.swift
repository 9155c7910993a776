import A2QCore
import A2QQuant
import Foundation
import Testing

/// `WeightQuantizer.setIntegerWeights`: any integers within a layer's per-tile budget become
/// parameters whose forward pass gives exactly those integers (how AXE's results enter a model).
@Suite("Integer weights set exactly into A2Q/A2Q+ parameters (tight, loose and sparse budgets, tiles)")
struct IntegerWeightRepresentationTests {
    @Test("Random integers at, near and far below every tile's budget come back bit for bit from the forward pass")
    func exactRoundTrip() throws {
        var g = Xoshiro256(seed: 77)
        var cases = 0, tight = 0
        for trial in 0..<400 {
            let plus = trial % 2 == 0
            let kind: WeightQuantizerKind = plus ? .a2qPlus : .a2q
            let k = 1 + Int(g.next() % 600), tile = 1 + Int(g.next() % UInt64(k + 4))
            let m = 2 + Int(g.next() % 7), n = 2 + Int(g.next() % 7)
            let input = InputFormat(bits: n, signed: !plus && g.next() % 2 == 0)
            guard let smallest = AccumulatorBounds.smallestUsefulBits(plus: plus, input: input) else { continue }
            let p = smallest + Int(g.next() % UInt64(max(20 - smallest, 1)))
            let out = 1 + Int(g.next() % 3)
            let length = min(tile, k)
            guard Double((k + length - 1) / length) * exp2(Double(p - 1)) <= exp2(31) - 1 else { continue }
            let (quantizer, store) = try MultiStageAccumulationTests.quantizer(kind, out: out, k: k, m: m, p: p, tile: tile, input: input)
            let qmax = Int32((1 << (m - 1)) - 1), bound = quantizer.bound
            var q = [Int32](repeating: 0, count: out * k)
            for o in 0..<out {
                for start in stride(from: o * k, to: (o + 1) * k, by: length) {
                    let end = min(start + length, (o + 1) * k)
                    let density = [0.0, 0.05, 0.5, 1.0][Int(g.next() % 4)]
                    for i in start..<end where Double(g.nextUnitFloat()) < density {
                        q[i] = Int32(g.next() % UInt64(2 * qmax + 1)) - qmax
                    }
                    // Shrink toward zero until the tile is within budget, then (sometimes) fill it to the edge.
                    func sums() -> (Int64, Int64) {
                        (q[start..<end].filter { $0 > 0 }.reduce(Int64(0)) { $0 + Int64($1) },
                         q[start..<end].filter { $0 < 0 }.reduce(Int64(0)) { $0 - Int64($1) })
                    }
                    let half = Int64((bound / 2).rounded(.down)), whole = Int64(bound.rounded(.down))
                    func within() -> Bool { let (a, b) = sums(); return plus ? a <= half && b <= half : a + b <= whole }
                    while !within() {
                        if let i = (start..<end).max(by: { abs(q[$0]) < abs(q[$1]) }) { q[i] -= q[i].signum() }
                    }
                    if g.next() % 2 == 0 {
                        for i in start..<end where q[i] != 0 {
                            while abs(q[i]) < qmax {
                                q[i] += q[i].signum()
                                if !within() { q[i] -= q[i].signum(); break }
                            }
                        }
                        let (a, b) = sums()
                        if plus ? (a == half || b == half) : a + b == whole { tight += 1 }
                    }
                }
            }
            // A2Q+ centres each tile: integers all of one sign are not what any A2Q+ parameters give.
            let adjusted = quantizer.makeRepresentable(&q)
            if !plus { #expect(adjusted == 0) }
            let scales = (0..<out).map { _ in Float(exp2(Double(g.uniform(-12, 2)))) }
            try quantizer.setIntegerWeights(q, scales: scales, store)
            #expect(try quantizer.integerWeights() == q)
            cases += 1
        }
        #expect(cases > 300 && tight > 100, "\(cases) layers, \(tight) tiles filled to the budget's edge")
    }

    @Test("Integers beyond a tile's budget are refused, naming the tile")
    func refusesOverBudget() throws {
        let (quantizer, store) = try MultiStageAccumulationTests.quantizer(.a2qPlus, out: 1, k: 8, m: 8, p: 10, tile: 4,
                                                                             input: InputFormat(bits: 8, signed: false))
        // T = (2^10 − 2)/255 ≈ 4.01: each half at most 2.
        #expect(throws: A2QError.self) { try quantizer.setIntegerWeights([1, 1, 1, 0, 0, 0, 0, 0], scales: [0.1], store) }
        try quantizer.setIntegerWeights([1, 1, -1, -1, 0, 2, 0, -2], scales: [0.1], store)
        #expect(try quantizer.integerWeights() == [1, 1, -1, -1, 0, 2, 0, -2])
        // All positive: no zero-sum values round to it; one step toward zero makes it representable.
        #expect(throws: A2QError.self) { try quantizer.setIntegerWeights([1, 1, 0, 0, 0, 0, 0, 0], scales: [0.1], store) }
        var q: [Int32] = [1, 1, 0, 0, 0, 0, 0, 0]
        #expect(quantizer.makeRepresentable(&q) >= 1)
        try quantizer.setIntegerWeights(q, scales: [0.1], store)
        #expect(try quantizer.integerWeights() == q)
    }
}
