#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
import A2QCore

extension WeightQuantizer {
    /// Sets this A2Q/A2Q+ layer's parameters `(v, d, t)` so that its forward pass gives exactly
    /// the integers `q` (`[out, K]`) at the scales `scales` (per channel, `s = 2^d`, so a scale
    /// is rounded to `exp2f(log2f(s))`), as a post-training quantizer (AXE) or an import
    /// computes them. `q` must respect the budget of every tile (A2Q: `Σ|q| ≤ T`; A2Q+: the
    /// positive and the negative sum each `≤ ⌊T/2⌋`).
    ///
    /// Per tile, `v` holds `y·2^e` (`2^e` the power of two nearest `s`, so `v` has the float
    /// weights' magnitude for fine-tuning) where `y` lies in each integer's round-toward-zero
    /// interval and, for A2Q+, sums to zero. Exact by construction, not up to rounding:
    /// - Budget used (the usual case after AXE): `Σ|y| = L`, the largest multiple of 2^-7 not
    ///   above float32(T), every `y_i` a multiple of 2^-8 within `[q_i, q_i + 243/256]` (toward
    ///   the sign), so every partial sum of `y` and `|y|` is a float32 and the kernels' sums are
    ///   exact in any order (A2Q+'s mean is exactly 0); the norm is set above the budget, so
    ///   `c = float32(T)` and `r = c / (L·2^e) = 2^-e·ρ` with `1 ≤ ρ ≤ 1 + 2^-7/L`: `u·r` never
    ///   falls below `|y|` (rounding is monotone) and stays below `|q| + 1`.
    /// - Budget far from used (too few inputs to reach `T`): `y_i = q_i ± 1/2` (A2Q+: balanced to
    ///   sum zero with margins of at least 1/8, in multiples of 1/8), `g/s = Σ|y|` below the
    ///   budget; float rounding of `g/s` moves `y·r` by about 1e-6 relative (under 0.07 for
    ///   |q| < 2^15), inside the margins of 1/8.
    ///
    /// The forward pass is run and compared afterwards; a channel that does not reproduce its
    /// integers is an error naming it.
    public func setIntegerWeights(_ q: [Int32], scales: [Float], _ parameters: ParameterStore) throws {
        precondition(q.count == outChannels * fanIn && scales.count == outChannels, "setIntegerWeights: shapes")
        guard spec.kind.isAccumulatorAware, let logScale, let logNorm else {
            preconditionFailure("setIntegerWeights sets a2q/a2q+ layers")
        }
        let plus = spec.kind == .a2qPlus
        let v = parameters.value(weight), d = parameters.value(logScale), t = parameters.value(logNorm)
        let budget = Float(bound)
        for o in 0..<outChannels {
            guard scales[o] > 0, scales[o].isFinite else {
                throw A2QError("\(layerName): channel \(o) has scale \(scales[o]); scales must be positive")
            }
            d[o] = log2f(scales[o])
            let s = exp2f(d[o])
            let power = exp2f(log2f(s).rounded())
            for j in 0..<tileCount {
                let (index, start, count) = segment(o, j)
                let part = Array(q[start..<(start + count)])
                guard let (y, used) = Self.representative(part, budget: budget, plus: plus) else {
                    throw A2QError("\(layerName): the integers of tile \(j) of channel \(o) exceed or cannot fill the \(spec.kind.rawValue) budget T = \(bound) exactly",
                                   remedy: "the post-training quantizer must keep every tile within the layer's budget")
                }
                for i in 0..<count { v[start + i] = y[i] * power }
                let norm = y.reduce(Float(0)) { $0 + abs($1) }
                // Budget used: g/s above T (the clamp c = T acts). Otherwise g/s = Σ|y|.
                t[index] = used ? d[o] + log2f(budget) + 1 : (norm > 0 ? log2f(norm) + d[o] : d[o])
            }
        }
        _ = forward(parameters)
        let got = try integerWeights()
        if let first = got.indices.first(where: { got[$0] != q[$0] }) {
            throw A2QError("\(layerName): the parameters set for channel \(first / fanIn) give integer \(got[first]) at input \(first % fanIn), not \(q[first])",
                           remedy: "report this: the exact representation of post-training integers failed")
        }
    }

    /// Makes `q` (`[out, K]`, within budget) representable by this A2Q+ layer, changing as
    /// little as possible: A2Q+ centres each tile, so a tile's integers must be the round toward
    /// zero of values that sum to zero — impossible when, say, every integer of a tile is
    /// positive (and for a one-input tile unless it is 0). While a tile is not, its
    /// smallest-magnitude integer of the heavier sign moves one step toward zero (never leaving
    /// the budget). Returns the number of such steps (0 for A2Q, whose integers always are).
    @discardableResult
    public func makeRepresentable(_ q: inout [Int32]) -> Int {
        precondition(q.count == outChannels * fanIn, "makeRepresentable: shape")
        guard spec.kind == .a2qPlus else { return 0 }
        let budget = Float(bound)
        var steps = 0
        for o in 0..<outChannels {
            for j in 0..<tileCount {
                let (_, start, count) = segment(o, j)
                var alpha: Int64 = 0, beta: Int64 = 0, positives = 0, negatives = 0
                for i in start..<(start + count) {
                    if q[i] > 0 { alpha += Int64(q[i]); positives += 1 } else if q[i] < 0 { beta -= Int64(q[i]); negatives += 1 }
                }
                // The heavier side's integers, smallest magnitude first: each step takes one unit off the first.
                var heavy: [Int] = [], next = 0
                while !Self.representable(alpha: alpha, beta: beta, positives: positives, negatives: negatives,
                                          zeros: count - positives - negatives, budget: budget) {
                    let sign: Int32 = Double(alpha) + 0.5 * Double(positives) >= Double(beta) + 0.5 * Double(negatives) ? 1 : -1
                    if heavy.isEmpty || next >= heavy.count || q[heavy[next]].signum() != sign {
                        heavy = (start..<(start + count)).filter { q[$0].signum() == sign }.sorted { abs(q[$0]) < abs(q[$1]) }
                        next = 0
                    }
                    guard next < heavy.count else { break }
                    let i = heavy[next]
                    q[i] -= sign
                    if sign > 0 { alpha -= 1 } else { beta -= 1 }
                    if q[i] == 0 {
                        if sign > 0 { positives -= 1 } else { negatives -= 1 }
                        next += 1
                    }
                    steps += 1
                }
                // The construction decides (its float arithmetic may differ from the count above
                // at an edge): one more step toward zero at a time until it succeeds.
                while Self.representative(Array(q[start..<(start + count)]), budget: budget, plus: true) == nil {
                    let part = q[start..<(start + count)]
                    let sign: Int32 = part.reduce(Int64(0)) { $0 + Int64($1) } >= 0 ? 1 : -1
                    guard let i = part.indices.filter({ q[$0].signum() == sign }).min(by: { abs(q[$0]) < abs(q[$1]) }) else { break }
                    q[i] -= sign
                    steps += 1
                }
            }
        }
        return steps
    }

    /// Whether a tile with these sums and counts has a representative (`fill` or `halfway`
    /// succeeds on it): the same arithmetic as theirs, without building the values.
    static func representable(alpha: Int64, beta: Int64, positives: Int, negatives: Int, zeros: Int, budget: Float) -> Bool {
        let target = Double((budget * 128).rounded(.down) / 128), half = target / 2, room = 243.0 / 256
        let (a, b) = (Double(alpha), Double(beta))
        if a <= half && b <= half {
            func zerosNeeded(_ deficit: Double, _ own: Int) -> Int {
                let left = deficit - Double(own) * room
                return left > 0 ? Int((left / room).rounded(.up)) : 0
            }
            if zerosNeeded(half - a, positives) + zerosNeeded(half - b, negatives) <= zeros { return true }
        }
        let imbalance = (a - b) + 0.5 * Double(positives - negatives)
        let capacity = 0.375 * Double(imbalance > 0 ? negatives : positives) + 0.875 * Double(zeros)
        let norm = a + b + 0.5 * Double(positives + negatives) + abs(imbalance)
        return abs(imbalance) <= capacity && norm <= Double(budget * (1 - 1e-4))
    }

    /// Real values `y` whose round toward zero is `q` and, for A2Q+, sum to zero; with
    /// `Σ|y| = budget` exactly when the RTZ intervals can reach it (`used`), else `q ± 1/2`.
    /// nil when `q` breaks the budget or cannot be represented.
    static func representative(_ q: [Int32], budget: Float, plus: Bool) -> (values: [Float], used: Bool)? {
        let alpha = q.filter { $0 > 0 }.reduce(Float(0)) { $0 + Float($1) }
        let beta = q.filter { $0 < 0 }.reduce(Float(0)) { $0 - Float($1) }
        if plus {
            guard alpha <= (budget / 2).rounded(.down) + 0.5, beta <= (budget / 2).rounded(.down) + 0.5 else { return nil }
        } else {
            guard alpha + beta <= budget else { return nil }
        }
        let target = (budget * 128).rounded(.down) / 128
        if let exact = fill(q, target: target, plus: plus) { return (exact, true) }
        return halfway(q, budget: budget, plus: plus).map { ($0, false) }
    }

    /// `y_i = q_i + δ_i·sign` (zeros either sign), every `δ_i` in `[0, 243/256]` a multiple of
    /// 2^-8, with `Σ|y| = target` (A2Q+: positive and negative parts `target/2` each); nil when
    /// the intervals cannot reach it.
    private static func fill(_ q: [Int32], target: Float, plus: Bool) -> [Float]? {
        let room: Float = 243.0 / 256  // leaves room for r's rounding above 1
        var y = q.map(Float.init)
        /// Adds up to `deficit` to the magnitudes of the entries `indices` (sign `sign` for zeros).
        func spread(_ deficit: Float, _ indices: [Int], sign: Float) -> Float {
            var left = deficit
            for i in indices where left > 0 {
                let add = min(left, room)
                y[i] += (q[i] == 0 ? sign : Float(q[i].signum())) * add
                left -= add
            }
            return left
        }
        let positives = q.indices.filter { q[$0] > 0 }, negatives = q.indices.filter { q[$0] < 0 }
        var zeros = q.indices.filter { q[$0] == 0 }
        if plus {
            let half = target / 2
            let alpha = positives.reduce(Float(0)) { $0 + y[$1] }, beta = negatives.reduce(Float(0)) { $0 - y[$1] }
            var left = spread(half - alpha, positives, sign: 1)
            if left > 0 {
                let needed = Int((left / room).rounded(.up))
                guard needed <= zeros.count else { return nil }
                left = spread(left, Array(zeros.prefix(needed)), sign: 1)
                zeros.removeFirst(needed)
            }
            var right = spread(half - beta, negatives, sign: -1)
            if right > 0 { right = spread(right, zeros, sign: -1) }
            guard left <= 0, right <= 0 else { return nil }
        } else {
            let norm = y.reduce(Float(0)) { $0 + abs($1) }
            guard spread(target - norm, positives + negatives + zeros, sign: 1) <= 0 else { return nil }
        }
        return y
    }

    /// `y_i = q_i ± 1/2` (zeros 0); A2Q+ balanced to `Σy = 0` by moving entries outward within
    /// `[1/2, 7/8]` of their interval (zeros within ±7/8) in steps of 1/8. nil when that
    /// cannot balance, or when `Σ|y|` would not stay clearly inside the budget.
    private static func halfway(_ q: [Int32], budget: Float, plus: Bool) -> [Float]? {
        var y = q.map { $0 == 0 ? Float(0) : Float($0) + 0.5 * Float($0.signum()) }
        if plus {
            var excess = y.reduce(Float(0), +)  // > 0: too much positive mass
            let order = excess > 0 ? q.indices.filter { q[$0] < 0 } + q.indices.filter { q[$0] == 0 }
                : q.indices.filter { q[$0] > 0 } + q.indices.filter { q[$0] == 0 }
            let direction: Float = excess > 0 ? -1 : 1
            excess = abs(excess)
            for i in order where excess > 0 {
                let room: Float = q[i] == 0 ? 0.875 : 0.375  // keeps y at least 1/8 inside its interval
                let move = min(excess, room)
                y[i] += direction * move
                excess -= move
            }
            guard excess <= 0 else { return nil }
            y = y.map { ($0 * 256).rounded() / 256 }
            guard y.reduce(Float(0), +) == 0 else { return nil }
        }
        let norm = y.reduce(Float(0)) { $0 + abs($1) }
        return norm <= budget * (1 - 1e-4) ? y : nil
    }
}
