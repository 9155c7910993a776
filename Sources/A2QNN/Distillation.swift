import A2QCore
#if canImport(Glibc)
import Glibc
#endif

/// Knowledge distillation from a teacher's logits (Hinton et al., 2015), blended into the
/// gradient of the hard-label cross-entropy.
///
/// With `p^τ = softmax(z/τ)`, the student minimises
/// `(1 − α)·CE(z_S, y) + α·τ²·KL(p_T^τ ‖ p_S^τ)`, averaged over the batch; the `τ²` keeps the
/// soft term's gradient, `α·τ·(p_S^τ − p_T^τ)/N`, on the scale of the hard one. The teacher's
/// logits are constants (no gradient flows to the teacher).
public final class Distillation: @unchecked Sendable {
    /// α, the weight of the soft term (0...1).
    public let weight: Float
    /// τ, the softmax temperature (> 0).
    public let temperature: Float
    private var studentRow: [Float] = []
    private var teacherRow: [Float] = []

    public init(weight: Float, temperature: Float) {
        precondition((0...1).contains(weight), "Distillation: weight \(weight) outside 0...1")
        precondition(temperature > 0 && temperature.isFinite, "Distillation: temperature \(temperature) must be positive")
        self.weight = weight
        self.temperature = temperature
    }

    /// Scales the cross-entropy gradient `gradient` (`[N, C]`, `∂CE/∂z_S`) by `1 − α`, adds
    /// `α·τ·(p_S^τ − p_T^τ)/N`, and returns the mean soft term `τ²·KL(p_T^τ ‖ p_S^τ)`.
    @discardableResult
    public func blend(student: Tensor, teacher: Tensor, into gradient: Tensor) -> Float {
        precondition(student.shape.count == 2 && student.shape == teacher.shape && student.shape == gradient.shape,
                     "Distillation: student \(describe(student.shape)), teacher \(describe(teacher.shape)), gradient \(describe(gradient.shape))")
        let (n, c) = (student.shape[0], student.shape[1])
        if studentRow.count != c {
            studentRow = Array(repeating: 0, count: c)
            teacherRow = Array(repeating: 0, count: c)
        }
        let a = weight, tau = temperature, invTau = 1 / temperature
        let hard = 1 - a, soft = a * tau / Float(n)
        var total: Double = 0
        for i in 0..<n {
            let zs = student.data + i * c, zt = teacher.data + i * c, g = gradient.data + i * c
            let (logSumS, logSumT) = (softmax(zs, c, invTau, &studentRow), softmax(zt, c, invTau, &teacherRow))
            var kl: Double = 0
            for j in 0..<c {
                let pt = teacherRow[j]
                // KL term p_T (log p_T − log p_S) with log p = z/τ − logsumexp(z/τ).
                if pt > 0 { kl += Double(pt) * Double((zt[j] * invTau - logSumT) - (zs[j] * invTau - logSumS)) }
                g[j] = hard * g[j] + soft * (studentRow[j] - pt)
            }
            total += kl
        }
        return Float(Double(tau * tau) * total / Double(n))
    }

    /// Writes softmax(z/τ) into `out` and returns logsumexp(z/τ) (max-shifted).
    private func softmax(_ z: UnsafeMutablePointer<Float>, _ c: Int, _ invTau: Float, _ out: inout [Float]) -> Float {
        var best = z[0] * invTau
        for j in 1..<c { best = max(best, z[j] * invTau) }
        var sum: Float = 0
        for j in 0..<c {
            let e = expf(z[j] * invTau - best)
            out[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0..<c { out[j] *= inv }
        return best + logf(sum)
    }
}
