import A2QCore
import A2QQuant
import Testing

@Suite("EP-init: Euclidean projection onto the L1 ball")
struct EuclideanProjectionTests {
    /// Brute force: bisection on θ for Σ max(|x| − θ, 0) = z (independent of the sort-based method).
    func bisection(_ x: [Double], radius z: Double) -> [Double] {
        var lo = 0.0, hi = x.map(abs).max() ?? 0
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            let mass = x.reduce(0) { $0 + max(abs($1) - mid, 0) }
            if mass > z { lo = mid } else { hi = mid }
        }
        let theta = (lo + hi) / 2
        return x.map { ($0 < 0 ? -1 : 1) * max(abs($0) - theta, 0) }
    }

    func project(_ x: inout [Float], radius: Double) {
        let k = x.count
        var scratch = [Double](repeating: .nan, count: k)
        x.withUnsafeMutableBufferPointer { buffer in
            scratch.withUnsafeMutableBufferPointer {
                EuclideanProjection.projectOntoL1Ball(buffer.baseAddress!, count: k, radius: radius, scratch: $0.baseAddress!)
            }
        }
    }

    @Test("matches bisection to 1e-6 over random vectors and radii (projection, and the sorted thresholds of the ep-scaled search)")
    func matchesBisection() {
        var g = Xoshiro256(seed: 77)
        for trial in 0..<300 {
            let k = 1 + Int(g.next() % 400)
            var x = (0..<k).map { _ in trial % 3 == 0 ? g.normal() * 5 : g.uniform(-1, 1) }
            let l1 = x.reduce(0.0) { $0 + Double(abs($1)) }
            let radius = l1 * Double(g.uniform(0.01, 0.99))
            let expected = bisection(x.map(Double.init), radius: radius)
            let theta = x.withUnsafeBufferPointer { EuclideanProjection.Thresholds($0).threshold(radius: radius) }
            let softened = x.map { max(Double(abs($0)) - theta, 0) * ($0 < 0 ? -1 : 1) }
            let worstSorted = zip(softened, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worstSorted / max(1, expected.map(abs).max() ?? 1) < 1e-6, "K=\(k): thresholds differ by \(worstSorted)")
            project(&x, radius: radius)
            let worst = zip(x, expected).map { abs(Double($0) - $1) }.max() ?? 0
            let scale = max(1, expected.map(abs).max() ?? 1)
            #expect(worst / scale < 1e-6, "K=\(k): max difference \(worst)")
            let projectedL1 = x.reduce(0.0) { $0 + Double(abs($1)) }
            #expect(abs(projectedL1 - radius) < 1e-4 * max(radius, 1))
        }
    }

    @Test("returns the input unchanged inside the ball, and zero for radius 0")
    func insideBall() {
        var x: [Float] = [0.5, -0.25, 0.125]
        let original = x
        project(&x, radius: 0.875)
        #expect(x == original)
        project(&x, radius: 10)
        #expect(x == original)
        project(&x, radius: 0)
        #expect(x == [0, 0, 0])
        // Hand-computed: [3, −1, 0.5] onto radius 2 → θ = 1 → [2, 0, 0]; equal magnitudes shrink alike.
        var y: [Float] = [3, -1, 0.5]
        project(&y, radius: 2)
        #expect(y == [2, 0, 0])
        var z: [Float] = [1, -1, 1, -1]
        project(&z, radius: 2)
        #expect(z == [0.5, -0.5, 0.5, -0.5])
    }

    @Test("EP-init keeps more non-zero weights than the naive init at a tight P")
    func epBeatsNaive() throws {
        var nonZero: [WeightInitMethod: Int] = [:]
        for method in WeightInitMethod.allCases {
            let (quantizer, store) = try makeQuantizer(kind: .a2q, out: 8, k: 288, m: 8, p: 14,
                                                       input: InputFormat(bits: 8, signed: false))
            var g = Xoshiro256(seed: 1)
            for i in 0..<quantizer.weight.count { store.value(quantizer.weight)[i] = g.uniform(-0.06, 0.06) }
            quantizer.initializeFromFloatWeights(store, method: method)
            _ = quantizer.forward(store)
            nonZero[method] = try quantizer.integerWeights().filter { $0 != 0 }.count
        }
        #expect((nonZero[.ep] ?? 0) > (nonZero[.naive] ?? 0), "\(nonZero)")
    }
}
