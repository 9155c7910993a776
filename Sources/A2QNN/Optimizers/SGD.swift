import A2QCore

/// Stochastic gradient descent with momentum, Nesterov and L2 weight decay (PyTorch's form):
/// `g ← g + λ·p` (decayed views), `b ← μ·b + g`, `p ← p − lr·(nesterov ? g + μ·b : b)`.
public final class SGD: Optimizer, @unchecked Sendable {
    public let momentum: Float
    public let nesterov: Bool
    public let weightDecay: Float
    public var stepCount = 0
    private let decays: DecayPolicy
    /// Per-view learning-rate multiplier (1 by default).
    public var learningRateScale: @Sendable (ParameterView) -> Float = { _ in 1 }
    private let velocity: UnsafeMutableBufferPointer<Float>

    public init(parameterCount: Int, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                decays: @escaping DecayPolicy = decayWeightsOnly) {
        precondition(!nesterov || momentum > 0, "SGD: Nesterov needs momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.decays = decays
        velocity = .allocate(capacity: max(parameterCount, 1))
        velocity.initialize(repeating: 0)
    }

    deinit { velocity.deallocate() }

    public var stateBuffers: [(name: String, buffer: UnsafeMutableBufferPointer<Float>)] { [("momentum", velocity)] }

    public func step(_ parameters: ParameterStore, learningRate: Float) {
        let p = parameters.values, g = parameters.gradients
        guard let b = velocity.baseAddress else { return }
        let mu = momentum
        for view in parameters.views {
            let lambda = decays(view) ? weightDecay : 0
            let rate = learningRate * learningRateScale(view)
            for i in view.range {
                var grad = g[i] + lambda * p[i]
                if mu != 0 {
                    b[i] = mu * b[i] + grad
                    grad = nesterov ? grad + mu * b[i] : b[i]
                }
                p[i] -= rate * grad
            }
        }
        stepCount += 1
    }
}
