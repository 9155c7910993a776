import A2QCore
import QuantKernels
#if canImport(Glibc)
import Glibc
#endif

/// Per-tensor N-bit activation quantizer: `y = clip(round(x/s), lo, hi) · s`, zero point 0,
/// full (not narrow) range: unsigned `[0, 2^N-1]` after a ReLU, signed `[-2^(N-1), 2^(N-1)-1]`.
///
/// The scale is learned as `log2 s` (`<name>.log2_scale`), initialised from activation
/// statistics: while calibrating, each training batch contributes its 99.999th percentile of
/// `|x|` (as Brevitas's `Uint8ActPerTensorFloat` does) and `finishCalibration` sets
/// `s = mean percentile / hi`. A fixed-scale quantizer (the 8-bit image input, `s = 1/255`)
/// declares no parameter.
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
    /// The percentile used for calibration.
    public let calibrationPercentile: Double

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?
    private var scratch: [Float] = []
    /// Running calibration sums (reduce these over ranks before `finishCalibration`).
    public var calibrationSum: Double = 0
    public var calibrationCount: Double = 0
    /// Whether forward passes in training mode collect statistics.
    public var isCalibrating = false

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

    /// Starts collecting statistics from training-mode forward passes.
    public func startCalibration() {
        guard logScale != nil else { return }
        isCalibrating = true
        calibrationSum = 0
        calibrationCount = 0
    }

    /// Sets the scale from the collected statistics and stops collecting.
    public func finishCalibration(_ parameters: ParameterStore) {
        isCalibrating = false
        guard let logScale, calibrationCount > 0 else { return }
        let level = calibrationSum / calibrationCount
        if level > 0 { parameters.value(logScale)[0] = Float(log2(level / Double(high))) }
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        self.input = input
        output.reshape(input.shape)
        if training && isCalibrating {
            calibrationSum += percentile(of: input)
            calibrationCount += 1
            if let logScale, calibrationSum > 0 {
                parameters.value(logScale)[0] = Float(log2(calibrationSum / calibrationCount / Double(high)))
            }
        }
        a2qk_act_forward(input.data, output.data, Int64(input.count), scale(parameters), low, high)
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == input.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match input \(describe(input.shape))")
        inputGradient.reshape(input.shape)
        let s = scale(parameters)
        let scaleGradient = a2qk_act_backward(input.data, outputGradient.data, inputGradient.data,
                                              Int64(input.count), s, low, high)
        if let logScale { parameters.gradient(logScale)[0] += scaleGradient * s * Float(M_LN2) }
        return inputGradient
    }

    private func percentile(of tensor: Tensor) -> Double {
        let n = tensor.count
        guard n > 0 else { return 0 }
        if scratch.count < n { scratch = Array(repeating: 0, count: n) }
        let rank = min(n - 1, Int((calibrationPercentile / 100 * Double(n - 1)).rounded(.up)))
        return scratch.withUnsafeMutableBufferPointer { buffer -> Double in
            for i in 0..<n { buffer[i] = abs(tensor.data[i]) }
            return Double(Self.select(buffer, count: n, rank: rank))
        }
    }

    /// The `rank`-th smallest of `a[0..<count]` (quickselect, median-of-three; reorders `a`).
    static func select(_ a: UnsafeMutableBufferPointer<Float>, count: Int, rank: Int) -> Float {
        var low = 0, high = count - 1
        while low < high {
            let mid = low + (high - low) / 2
            if a[mid] < a[low] { a.swapAt(mid, low) }
            if a[high] < a[low] { a.swapAt(high, low) }
            if a[high] < a[mid] { a.swapAt(high, mid) }
            let pivot = a[mid]
            var i = low, j = high
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
            }
            if rank <= j { high = j } else if rank >= i { low = i } else { return a[rank] }
        }
        return a[rank]
    }
}
