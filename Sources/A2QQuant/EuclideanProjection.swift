/// Euclidean projection onto the L1 ball, used by EP-init and the direction projection;
/// `Thresholds` (sort-based, Duchi et al., 2008) serves the ep-scaled search over many radii.
public enum EuclideanProjection {
    /// Replaces `x[0..<count]` by its Euclidean projection onto `{ y : ||y||_1 <= radius }`;
    /// leaves `x` unchanged when it is already inside the ball. θ by Michelot's algorithm, which
    /// repeatedly averages the active magnitudes and drops those at or below θ (a few O(K)
    /// passes, no sort, no allocation: it runs in the training loop). `scratch` must hold
    /// `count` Float64 values. Arithmetic in Float64.
    public static func projectOntoL1Ball(_ x: UnsafeMutablePointer<Float>, count: Int, radius: Double,
                                         scratch: UnsafeMutablePointer<Double>) {
        precondition(radius >= 0, "projectOntoL1Ball: negative radius \(radius)")
        var total: Double = 0
        for i in 0..<count {
            let a = Double(abs(x[i]))
            scratch[i] = a
            total += a
        }
        guard total > radius else { return }
        let theta = threshold(magnitudes: scratch, count: count, total: total, radius: radius)
        for i in 0..<count {
            let magnitude = max(Double(abs(x[i])) - theta, 0)
            x[i] = x[i] < 0 ? -Float(magnitude) : Float(magnitude)
        }
    }

    /// θ with `Σ max(v_i − θ, 0) = radius` for the magnitudes `v[0..<count]` (non-negative,
    /// summing to `total > radius`), by Michelot's algorithm: average the active magnitudes,
    /// drop those at or below θ, repeat. Overwrites `v` (the active ones move to the front).
    public static func threshold(magnitudes v: UnsafeMutablePointer<Double>, count: Int, total: Double,
                                 radius: Double) -> Double {
        var active = count, theta = (total - radius) / Double(count)
        while true {
            var kept = 0, sum: Double = 0
            for i in 0..<active where v[i] > theta {
                v[kept] = v[i]
                sum += v[i]
                kept += 1
            }
            if kept == active || kept == 0 { break }
            active = kept
            theta = (sum - radius) / Double(kept)
        }
        return theta
    }

    /// Thresholds for many radii over the same vector: sorts `|x|` once (O(K log K)), then
    /// each `threshold(radius:)` is O(K).
    public struct Thresholds: Sendable {
        let sorted: [Double]
        let cumulative: [Double]

        public init(_ x: UnsafeBufferPointer<Float>) {
            sorted = x.map { Double(abs($0)) }.sorted(by: >)
            var running = 0.0
            cumulative = sorted.map { running += $0; return running }
        }

        /// θ with `Σ max(|x_i| − θ, 0) = radius`, or 0 when `||x||_1 <= radius`
        /// (radius 0 gives θ = max|x|: everything shrinks to zero).
        public func threshold(radius: Double) -> Double {
            guard let total = cumulative.last, total > radius else { return 0 }
            var rho = 0
            for j in 0..<sorted.count where sorted[j] * Double(j + 1) > cumulative[j] - radius { rho = j + 1 }
            return rho > 0 ? (cumulative[rho - 1] - radius) / Double(rho) : (sorted.first ?? 0)
        }
    }
}
