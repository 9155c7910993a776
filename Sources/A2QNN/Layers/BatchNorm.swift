import A2QCore
import NNKernels

/// Batch normalisation over the channel axis of `[N, C]` (1d) or `[N, C, H, W]` (2d) inputs.
///
/// Training mode normalises with the batch's mean and biased variance and updates the
/// running statistics (`momentum` 0.1, unbiased variance, as PyTorch); evaluation mode uses
/// the running statistics (the arithmetic is `a2qn_batchnorm_*` in NNKernels). Parameters: `<name>.weight` (γ) and `<name>.bias` (β), not
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
    /// The last forward's input (x̂ is recomputed from it in backward rather than stored).
    private var input: Tensor?
    /// Mean and 1/sqrt(var + ε) the last forward used, and 2·C doubles for the kernels' sums.
    private var mean: [Float]
    private var inverseStd: [Float]
    private var scratch: [Double]
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
        mean = Array(repeating: 0, count: channels)
        inverseStd = Array(repeating: 1, count: channels)
        scratch = Array(repeating: 0, count: 2 * channels)
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
        self.input = input
        lastTraining = training
        let batch = shape[0], plane = shape.count == 4 ? shape[2] * shape[3] : 1
        a2qn_batchnorm_forward(input.data, output.data, parameters.value(scale), parameters.value(shift),
                               runningMean.data, runningVariance.data, &mean, &inverseStd, &scratch, Int64(batch),
                               Int64(channels), Int64(plane), epsilon, momentum, training ? 1 : 0)
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input else { preconditionFailure("\(name): backward before forward") }
        let shape = output.shape
        precondition(outputGradient.shape == shape && input.shape == shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(shape))")
        inputGradient.reshape(shape)
        let batch = shape[0], plane = shape.count == 4 ? shape[2] * shape[3] : 1
        a2qn_batchnorm_backward(outputGradient.data, input.data, inputGradient.data, parameters.value(scale), mean,
                                inverseStd, parameters.gradient(scale), parameters.gradient(shift), &scratch, Int64(batch),
                                Int64(channels), Int64(plane), lastTraining ? 1 : 0, computesInputGradient ? 1 : 0)
        return inputGradient
    }
}
