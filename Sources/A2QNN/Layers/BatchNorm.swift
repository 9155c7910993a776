import A2QCore

/// Batch normalisation over the channel axis of `[N, C]` (1d) or `[N, C, H, W]` (2d) inputs.
///
/// Training mode normalises with the batch's mean and biased variance and updates the
/// running statistics (`momentum` 0.1, unbiased variance, as PyTorch); evaluation mode uses
/// the running statistics. Parameters: `<name>.weight` (γ) and `<name>.bias` (β), not
/// decayed. Buffers: `<name>.running_mean`, `<name>.running_var`.
public final class BatchNorm: Layer, @unchecked Sendable {
    public let name: String
    public let channels: Int
    public let epsilon: Float
    public let momentum: Float
    public let scale: ParameterView
    public let shift: ParameterView
    public var computesInputGradient = true
    public var hasParameters: Bool { true }
    /// Running mean and variance (`[C]`).
    public let runningMean: Tensor
    public let runningVariance: Tensor

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let normalized = Tensor(shape: [0])
    private var inverseStd: [Float]
    private var lastTraining = true

    public init(name: String, channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1,
                layout: inout ParameterLayout) {
        self.name = name
        self.channels = channels
        self.epsilon = epsilon
        self.momentum = momentum
        scale = layout.declare("\(name).weight", shape: [channels], role: .normalization)
        shift = layout.declare("\(name).bias", shape: [channels], role: .normalization)
        runningMean = Tensor(shape: [channels])
        runningVariance = Tensor(shape: [channels])
        runningVariance.fill(1)
        inverseStd = Array(repeating: 1, count: channels)
    }

    public var buffers: [(name: String, tensor: Tensor)] {
        [("\(name).running_mean", runningMean), ("\(name).running_var", runningVariance)]
    }

    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        parameters.value(scale).update(repeating: 1, count: channels)
        parameters.value(shift).update(repeating: 0, count: channels)
        runningMean.fill(0)
        runningVariance.fill(1)
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let shape = input.shape
        precondition((shape.count == 2 || shape.count == 4) && shape[1] == channels,
                     "\(name): input \(describe(shape)) does not fit BatchNorm(\(channels)), expected [N, \(channels)] or [N, \(channels), H, W]")
        output.reshape(shape)
        normalized.reshape(shape)
        lastTraining = training
        let batch = shape[0], plane = shape.count == 4 ? shape[2] * shape[3] : 1
        let m = batch * plane
        let x = input.data, y = output.data, xhat = normalized.data
        let gamma = parameters.value(scale), beta = parameters.value(shift)
        for c in 0..<channels {
            var mean: Float, variance: Float
            if training {
                var sum: Double = 0
                for n in 0..<batch {
                    let p = x + (n * channels + c) * plane
                    for i in 0..<plane { sum += Double(p[i]) }
                }
                let mu = sum / Double(m)
                var squares: Double = 0
                for n in 0..<batch {
                    let p = x + (n * channels + c) * plane
                    for i in 0..<plane { let d = Double(p[i]) - mu; squares += d * d }
                }
                mean = Float(mu)
                variance = Float(squares / Double(m))
                let unbiased = m > 1 ? Float(squares / Double(m - 1)) : variance
                runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean
                runningVariance[c] = (1 - momentum) * runningVariance[c] + momentum * unbiased
            } else {
                mean = runningMean[c]
                variance = runningVariance[c]
            }
            let inv = 1 / (variance + epsilon).squareRoot()
            inverseStd[c] = inv
            for n in 0..<batch {
                let offset = (n * channels + c) * plane
                for i in 0..<plane {
                    let h = (x[offset + i] - mean) * inv
                    xhat[offset + i] = h
                    y[offset + i] = gamma[c] * h + beta[c]
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        let shape = normalized.shape
        precondition(outputGradient.shape == shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(shape))")
        inputGradient.reshape(shape)
        let batch = shape[0], plane = shape.count == 4 ? shape[2] * shape[3] : 1
        let m = Float(batch * plane)
        let dy = outputGradient.data, dx = inputGradient.data, xhat = normalized.data
        let gamma = parameters.value(scale)
        let dGamma = parameters.gradient(scale), dBeta = parameters.gradient(shift)
        for c in 0..<channels {
            var sumDy: Float = 0, sumDyXhat: Float = 0
            for n in 0..<batch {
                let offset = (n * channels + c) * plane
                for i in 0..<plane { sumDy += dy[offset + i]; sumDyXhat += dy[offset + i] * xhat[offset + i] }
            }
            dGamma[c] += sumDyXhat
            dBeta[c] += sumDy
            guard computesInputGradient else { continue }
            let k = gamma[c] * inverseStd[c]
            for n in 0..<batch {
                let offset = (n * channels + c) * plane
                for i in 0..<plane {
                    dx[offset + i] = lastTraining
                        ? k * (dy[offset + i] - sumDy / m - xhat[offset + i] * sumDyXhat / m)
                        : k * dy[offset + i]
                }
            }
        }
        return inputGradient
    }
}
