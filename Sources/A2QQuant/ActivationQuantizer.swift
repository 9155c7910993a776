import A2QCore
import QuantKernels
#if canImport(Glibc)
import Glibc
#endif

/// Per-tensor N-bit activation quantizer: `y = clip(round(x/s), lo, hi) · s`, zero point 0,
/// full (not narrow) range: unsigned `[0, 2^N-1]` after a ReLU, signed `[-2^(N-1), 2^(N-1)-1]`.
///
/// The scale is learned as `log2 s` (`<name>.log2_scale`), initialised from activation
/// statistics: each calibration batch contributes the 99.999th percentile of `|x|` over the
/// whole (global) batch (as Brevitas's `Uint8ActPerTensorFloat` does, here from a histogram
/// so that ranks can sum it exactly) and `s = mean percentile / hi`. A fixed-scale quantizer
/// (the 8-bit image input, `s = 1/255`) declares no parameter.
///
/// Estimator (Brevitas-style, i.e. autograd through a straight-through round, no LSQ
/// gradient scale): `∂y/∂x = 1` inside the range, 0 outside; `∂y/∂s = round(x/s) − x/s`
/// inside, `lo` or `hi` outside.
public final class ActivationQuantizer: Layer, @unchecked Sendable {
    public let name: String
    /// The integer format this quantizer produces (the next layer's input format).
    public let format: InputFormat
    /// `<name>.log2_scale`, nil for a fixed scale.
    public let logScale: ParameterView?
    /// The fixed scale, if any.
    public let fixedScale: Float?
    public var computesInputGradient = true
    public var hasParameters: Bool { logScale != nil }
    /// Whether this quantizer applies the preceding ReLU itself (`max(x, 0)` before quantising,
    /// no gradient where `x ≤ 0`), that ReLU passing its input through: one fused pass.
    public var rectifiesInput = false
    /// The percentile used for calibration.
    public let calibrationPercentile: Double

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?
    /// Calibration: sum and count of the per-batch percentiles so far.
    public private(set) var calibrationSum: Double = 0
    public private(set) var calibrationCount: Double = 0

    /// A learned-scale quantizer.
    public init(name: String, format: InputFormat, layout: inout ParameterLayout, percentile: Double = 99.999) {
        self.name = name
        self.format = format
        self.fixedScale = nil
        self.calibrationPercentile = percentile
        logScale = layout.declare("\(name).log2_scale", shape: [1], role: .activationLogScale)
    }

    /// A fixed-scale quantizer (no parameters).
    public init(name: String, format: InputFormat, fixedScale: Float) {
        self.name = name
        self.format = format
        self.fixedScale = fixedScale
        self.calibrationPercentile = 100
        logScale = nil
    }

    /// Largest integer level `hi`; smallest `lo`.
    public var high: Float { Float(format.maximum) }
    public var low: Float { Float(format.minimum) }

    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        // Until calibrated: a range of [0, 1]-ish activations.
        if let logScale { parameters.value(logScale)[0] = log2f(1 / high) }
    }

    /// The current scale `s`.
    public func scale(_ parameters: ParameterStore) -> Float {
        if let fixedScale { return fixedScale }
        guard let logScale else { return 1 }
        return exp2f(parameters.value(logScale)[0])
    }

    /// Forgets earlier calibration samples.
    public func resetCalibration() {
        calibrationSum = 0
        calibrationCount = 0
    }

    /// Adds one batch's percentile and sets the scale to the running mean (`s = mean / hi`).
    public func addCalibrationSample(_ percentileValue: Double, _ parameters: ParameterStore) {
        guard let logScale, percentileValue > 0, percentileValue.isFinite else { return }
        calibrationSum += percentileValue
        calibrationCount += 1
        parameters.value(logScale)[0] = Float(log2(calibrationSum / calibrationCount / Double(high)))
    }

    /// Largest `|x|` of the last forward pass's input.
    public func lastInputMaximum() -> Float {
        guard let input else { return 0 }
        var m: Float = 0
        for i in 0..<input.count { m = max(m, rectifiesInput ? (input.data[i] > 0 ? input.data[i] : 0) : abs(input.data[i])) }
        return m
    }

    /// Histogram of `|x|` of the last input over `bins` equal bins on `[0, maximum]`
    /// (values at `maximum` land in the last bin). Counts are exact in Float64 and add
    /// across ranks.
    public func lastInputHistogram(bins: Int, maximum: Float, into counts: inout [Double]) {
        precondition(counts.count == bins, "lastInputHistogram: \(counts.count) counters for \(bins) bins")
        guard let input, maximum > 0 else { return }
        let scale = Float(bins) / maximum
        for i in 0..<input.count {
            let value = rectifiesInput ? (input.data[i] > 0 ? input.data[i] : 0) : abs(input.data[i])
            counts[min(Int(value * scale), bins - 1)] += 1
        }
    }

    /// The `percentile` of a histogram over `[0, maximum]`: the upper edge of the bin where the
    /// cumulative count reaches it.
    public static func percentile(histogram: [Double], maximum: Float, percentile: Double) -> Double {
        let total = histogram.reduce(0, +)
        guard total > 0 else { return 0 }
        let target = percentile / 100 * total
        var cumulative = 0.0
        for (bin, count) in histogram.enumerated() {
            cumulative += count
            if cumulative >= target { return Double(maximum) * Double(bin + 1) / Double(histogram.count) }
        }
        return Double(maximum)
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        self.input = input
        output.reshape(input.shape)
        if rectifiesInput {
            a2qk_relu_act_forward(input.data, output.data, Int64(input.count), scale(parameters), low, high)
        } else {
            a2qk_act_forward(input.data, output.data, Int64(input.count), scale(parameters), low, high)
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == input.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match input \(describe(input.shape))")
        inputGradient.reshape(input.shape)
        let s = scale(parameters)
        let scaleGradient = rectifiesInput
            ? a2qk_relu_act_backward(input.data, outputGradient.data, inputGradient.data, Int64(input.count), s, low, high)
            : a2qk_act_backward(input.data, outputGradient.data, inputGradient.data, Int64(input.count), s, low, high)
        if let logScale { parameters.gradient(logScale)[0] += scaleGradient * s * Float(M_LN2) }
        return inputGradient
    }
}
