import A2QCore
import Testing

/// Independent Float64 reference for a layer: output from (input, all parameter values).
typealias Reference = (_ input: [Double], _ parameters: [Double]) -> [Double]

/// Checks a layer against a Float64 reference:
/// 1. the float32 forward matches the reference forward;
/// 2. the float32 backward (input and every parameter gradient) matches central finite
///    differences of the Float64 reference for the loss `L = Σ r_i · y_i` with random `r`.
func checkLayer(_ layer: any Layer, store: ParameterStore, input: Tensor, reference: Reference,
                training: Bool = true, forwardTolerance: Double = 1e-4, gradientTolerance: Double = 2e-3,
                seed: UInt64 = 7, checkInputGradient: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
    var generator = Xoshiro256(seed: seed)
    let output = layer.forward(input, parameters: store, training: training)
    let x = input.array.map(Double.init)
    let p = store.valuesArray().map(Double.init)
    let expected = reference(x, p)
    #expect(expected.count == output.count, "output count", sourceLocation: sourceLocation)
    let scale = max(expected.map(abs).max() ?? 1, 1)
    var worstForward = 0.0
    for i in 0..<min(expected.count, output.count) { worstForward = max(worstForward, abs(Double(output[i]) - expected[i]) / scale) }
    #expect(worstForward < forwardTolerance, "forward differs from reference by \(worstForward)", sourceLocation: sourceLocation)

    let r = (0..<output.count).map { _ in Double(generator.uniform(-1, 1)) }
    let dy = Tensor(shape: output.shape, values: r.map(Float.init))
    store.zeroGradients()
    let dx = layer.backward(dy, parameters: store)
    let analyticInput = dx.array.map(Double.init)
    let analyticParameters = store.gradientsArray().map(Double.init)

    func loss(_ x: [Double], _ p: [Double]) -> Double {
        zip(reference(x, p), r).reduce(0) { $0 + $1.0 * $1.1 }
    }
    func compare(_ analytic: Double, _ numeric: Double, _ what: String) -> Bool {
        let error = abs(analytic - numeric) / max(1, abs(numeric), abs(analytic))
        return error < gradientTolerance
    }
    let h = 1e-6
    if checkInputGradient {
        var bad: [String] = []
        for i in 0..<x.count {
            var plus = x, minus = x
            plus[i] += h; minus[i] -= h
            let numeric = (loss(plus, p) - loss(minus, p)) / (2 * h)
            if !compare(analyticInput[i], numeric, "dx[\(i)]") { bad.append("dx[\(i)]: \(analyticInput[i]) vs \(numeric)") }
        }
        #expect(bad.count == 0, "input gradient, first mismatches: \(bad.prefix(5))", sourceLocation: sourceLocation)
    }
    var bad: [String] = []
    for view in store.views {
        for i in view.range {
            var plus = p, minus = p
            plus[i] += h; minus[i] -= h
            let numeric = (loss(x, plus) - loss(x, minus)) / (2 * h)
            if !compare(analyticParameters[i], numeric, view.name) {
                bad.append("\(view.name)[\(i - view.offset)]: \(analyticParameters[i]) vs \(numeric)")
            }
        }
    }
    #expect(bad.count == 0, "parameter gradient, first mismatches: \(bad.prefix(5))", sourceLocation: sourceLocation)
}

/// A tensor of uniform values in [-1, 1), optionally kept away from 0 by `margin`.
func randomTensor(_ shape: [Int], _ generator: inout Xoshiro256, margin: Float = 0) -> Tensor {
    let t = Tensor(shape: shape)
    for i in 0..<t.count {
        var v = generator.uniform(-1, 1)
        if margin > 0 && abs(v) < margin { v = v < 0 ? v - margin : v + margin }
        t[i] = v
    }
    return t
}

/// Fills every parameter with uniform values in [low, high).
func randomize(_ store: ParameterStore, _ generator: inout Xoshiro256, low: Float = -1, high: Float = 1) {
    for i in 0..<store.count { store.values[i] = generator.uniform(low, high) }
}

/// Naive direct convolution in Float64 (NCHW input, [out, in/groups, k, k] weight; output
/// channel o reads the input channels of its group o / (out/groups)), written independently of
/// the im2col implementation.
func naiveConvolution(_ x: [Double], n: Int, c: Int, h: Int, w: Int, weight: [Double], bias: [Double]?,
                      outChannels: Int, kernel: Int, stride: Int, padding: Int, groups: Int = 1) -> [Double] {
    let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
    let (groupIn, groupOut) = (c / groups, outChannels / groups)
    var y = [Double](repeating: 0, count: n * outChannels * ho * wo)
    for b in 0..<n {
        for o in 0..<outChannels {
            let firstChannel = (o / groupOut) * groupIn
            for i in 0..<ho {
                for j in 0..<wo {
                    var sum = bias?[o] ?? 0
                    for ci in 0..<groupIn {
                        for ki in 0..<kernel {
                            for kj in 0..<kernel {
                                let yi = i * stride + ki - padding, xj = j * stride + kj - padding
                                guard yi >= 0, yi < h, xj >= 0, xj < w else { continue }
                                sum += x[((b * c + firstChannel + ci) * h + yi) * w + xj]
                                    * weight[((o * groupIn + ci) * kernel + ki) * kernel + kj]
                            }
                        }
                    }
                    y[((b * outChannels + o) * ho + i) * wo + j] = sum
                }
            }
        }
    }
    return y
}
