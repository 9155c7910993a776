import A2QCore
import NNKernels

/// Adam (Kingma & Ba) with bias correction; `decoupled` gives AdamW (Loshchilov & Hutter):
/// Adam: `g ← g + λ·p`; AdamW: `p ← p − lr·λ·p` before the Adam update. Decay applies to
/// the views the policy selects (weights only by default).
public final class Adam: Optimizer, @unchecked Sendable {
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    public let decoupled: Bool
    public var stepCount = 0
    private let decays: DecayPolicy
    /// Per-view learning-rate multiplier (1 by default).
    public var learningRateScale: @Sendable (ParameterView) -> Float = { _ in 1 }
    private let firstMoment: UnsafeMutableBufferPointer<Float>
    private let secondMoment: UnsafeMutableBufferPointer<Float>

    public init(parameterCount: Int, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false, decays: @escaping DecayPolicy = decayWeightsOnly) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        self.decays = decays
        firstMoment = .allocate(capacity: max(parameterCount, 1))
        firstMoment.initialize(repeating: 0)
        secondMoment = .allocate(capacity: max(parameterCount, 1))
        secondMoment.initialize(repeating: 0)
    }

    deinit {
        firstMoment.deallocate()
        secondMoment.deallocate()
    }

    public var stateBuffers: [(name: String, buffer: UnsafeMutableBufferPointer<Float>)] {
        [("exp_avg", firstMoment), ("exp_avg_sq", secondMoment)]
    }

    public func step(_ parameters: ParameterStore, learningRate: Float) {
        stepCount += 1
        let p = parameters.values, g = parameters.gradients
        guard let m = firstMoment.baseAddress, let v = secondMoment.baseAddress else { return }
        let t = Double(stepCount)
        let correction1 = Float(1 - pow(Double(beta1), t)), correction2 = Float(1 - pow(Double(beta2), t))
        let stepSize = learningRate / correction1
        for view in parameters.views {
            let lambda = decays(view) ? weightDecay : 0
            let scale = learningRateScale(view)
            let rate = learningRate * scale, size = stepSize * scale
            let i = view.range.lowerBound
            // Per element, as the paper writes it (vectorised in C, same operations and order):
            // g ← g + λp (or p ← p − lr·λ·p for AdamW); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
            // p ← p − size·m / (√(v / (1 − β₂ᵗ)) + ε).
            a2qn_adam(p + i, g + i, m + i, v + i, Int64(view.range.count), beta1, beta2, correction2, rate, size, lambda,
                      decoupled ? 1 : 0, epsilon)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
