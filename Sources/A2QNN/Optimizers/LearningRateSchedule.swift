#if canImport(Glibc)
import Glibc
#endif

/// A learning-rate schedule with optional linear warm-up, as a pure function of the step.
public struct LearningRateSchedule: Sendable, Hashable, Codable {
    public enum Kind: Sendable, Hashable, Codable {
        /// The base rate throughout.
        case constant
        /// Multiply by `gamma` every `every` steps (after warm-up).
        case step(every: Int, gamma: Float)
        /// Cosine decay from the base rate to `minimum` over `totalSteps` (after warm-up).
        case cosine(totalSteps: Int, minimum: Float)
    }

    public var base: Float
    public var kind: Kind
    /// Steps of linear warm-up from `base / warmupSteps` to `base`.
    public var warmupSteps: Int

    public init(base: Float, kind: Kind = .constant, warmupSteps: Int = 0) {
        precondition(base > 0, "LearningRateSchedule: base rate must be positive")
        self.base = base
        self.kind = kind
        self.warmupSteps = max(warmupSteps, 0)
    }

    /// The rate for 0-based step `step`.
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
        let s = step - warmupSteps
        switch kind {
        case .constant:
            return base
        case .step(let every, let gamma):
            return base * Float(pow(Double(gamma), Double(s / max(every, 1))))
        case .cosine(let total, let minimum):
            let progress = min(Double(s) / Double(max(total - warmupSteps, 1)), 1)
            return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}
