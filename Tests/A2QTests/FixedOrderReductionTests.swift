import QuantKernels
import Testing

/// The reductions that decide integer weights (A2Q+'s mean, the L1 norms) give the same bits on
/// every CPU: each equals a scalar reference of the documented order — element i in lane i mod 64,
/// lanes in index order, then a fixed tree — whichever clone (AVX-512, AVX2, baseline) this CPU runs.
@Suite("Fixed-order reductions of the weight quantizers")
struct FixedOrderReductionTests {
    static let lanes = 64

    /// The documented order, in Swift (which does not reassociate float additions).
    static func reference(_ x: [Float], _ term: (Float) -> Float) -> Float {
        var a = [Float](repeating: 0, count: lanes)
        for (i, v) in x.enumerated() { a[i % lanes] += term(v) }
        var width = lanes / 2
        while width >= 1 {
            for j in 0..<width { a[j] += a[j + width] }
            width /= 2
        }
        return a[0]
    }

    @Test("a2qk_sum, a2qk_l1 and a2qk_l1_max equal the 64-lane reference bit for bit over random lengths, scales and shifts")
    func matchesReference() {
        var generator = SystemRandomNumberGenerator()
        var sensitive = 0
        for trial in 0..<300 {
            let k = trial < 40 ? trial : Int.random(in: 1...5000, using: &generator)
            let magnitude = Float(sign: .plus, exponent: Int.random(in: -20...20, using: &generator), significand: 1)
            let x = (0..<k).map { _ in Float.random(in: -magnitude...magnitude, using: &generator) }
            let shift = trial % 3 == 0 ? 0 : Float.random(in: -magnitude...magnitude, using: &generator)
            let sum = x.withUnsafeBufferPointer { a2qk_sum($0.baseAddress!, Int64(k)) }
            let l1 = x.withUnsafeBufferPointer { a2qk_l1($0.baseAddress!, Int64(k), shift) }
            var maxAbs: Float = -1
            let l1Max = x.withUnsafeBufferPointer { a2qk_l1_max($0.baseAddress!, Int64(k), shift, &maxAbs) }
            let expectedSum = Self.reference(x) { $0 }
            let expectedL1 = Self.reference(x) { abs($0 - shift) }
            #expect(sum.bitPattern == expectedSum.bitPattern, "sum, k = \(k)")
            #expect(l1.bitPattern == expectedL1.bitPattern, "l1, k = \(k)")
            #expect(l1Max.bitPattern == expectedL1.bitPattern, "l1_max, k = \(k)")
            #expect(maxAbs == (x.map { abs($0 - shift) }.max() ?? 0), "max, k = \(k)")
            // The order matters for these inputs: a plain left-to-right sum differs (so the
            // comparison above is not one that every order would pass).
            if x.reduce(0, +).bitPattern != expectedSum.bitPattern { sensitive += 1 }
        }
        #expect(sensitive > 100, "only \(sensitive) of 300 inputs tell a sequential sum from the 64-lane order")
    }
}
