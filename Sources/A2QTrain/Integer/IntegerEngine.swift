import A2QCore
import A2QData
import A2QQuant
import COpenBLAS
import QuantKernels

/// What a P-bit accumulator does when a sum leaves its range.
public enum OverflowMode: String, CaseIterable, Sendable, Codable {
    /// Two's complement wrap-around (what FPGA adders do).
    case wrap
    /// Clamp at the register's limits after every addition.
    case saturate
    /// No overflow: exact arithmetic (reference).
    case wide
}

/// Overflow counts of one layer over a run.
public struct LayerOverflow: Sendable, Codable {
    public var name: String
    public var accumulatorBits: Int
    public var dotProducts: Int
    /// Dot products whose final value left the P-bit range.
    public var finalOverflows: Int
    /// Dot products where any partial sum left the range (accumulating in weight-index order).
    public var partialOverflows: Int
    /// Whether the exact worst case over all inputs fits (then nothing can overflow).
    public var provenSafe: Bool

    enum CodingKeys: String, CodingKey {
        case name, accumulatorBits = "accumulator_bits", dotProducts = "dot_products"
        case finalOverflows = "final_overflows", partialOverflows = "partial_overflows", provenSafe = "proven_safe"
    }
}

/// Runs an `IntegerModel` the way integer hardware would: integer activations and weights,
/// each dot product in a simulated signed P-bit register. Dot products are computed exactly
/// with `dgemm` (integers below 2^53 are exact in Float64); dot products that could overflow
/// at some partial sum (the sum of |w·x| exceeds the range) are re-accumulated sequentially,
/// in weight-index order, to count partial overflows and to saturate. Layers whose exact worst
/// case fits P skip that check: nothing can overflow there.
///
/// Requantisation is float32 (`acc · multiplier + offset`, then `rint(y / scale)`), like the
/// fake-quantized float graph it must agree with; hardware would use fixed-point multipliers
/// or thresholds (FINN), which this does not model.
public final class IntegerEngine: @unchecked Sendable {
    public let model: IntegerModel
    public let mode: OverflowMode
    /// P per layer (the model's unless overridden).
    public let accumulatorBits: [String: Int]
    public private(set) var overflows: [LayerOverflow]

    public init(model: IntegerModel, mode: OverflowMode = .wrap, accumulatorBits override: Int? = nil) throws {
        if let override, !(2...62).contains(override) {
            throw A2QError("--accumulator-bits \(override) is outside the supported range 2...62")
        }
        self.model = model
        self.mode = mode
        var bits: [String: Int] = [:]
        for layer in model.layers { bits[layer.name] = override ?? layer.accumulatorBits }
        accumulatorBits = bits
        overflows = model.layers.map { layer in
            let p = bits[layer.name] ?? layer.accumulatorBits
            let report = LayerAccumulatorReport(integers: layer.weights, outChannels: layer.outChannels, input: layer.input,
                                                accumulatorBits: p)
            return LayerOverflow(name: layer.name, accumulatorBits: p, dotProducts: 0, finalOverflows: 0,
                                 partialOverflows: 0, provenSafe: report.overflowFree)
        }
    }

    /// Class scores for `images` (`count` images of `inputShape`, as pixels), and counts overflows.
    public func logits(pixels: UnsafeBufferPointer<UInt8>, count n: Int) -> [Float] {
        var shape = [n] + model.inputShape
        var x = pixels.map(Double.init)
        var layerIndex = 0
        var scores: [Float] = []
        for op in model.ops {
            switch op {
            case .input:
                break  // pixels are the input integers
            case .layer(let layer):
                let isLast = layerIndex == model.layers.count - 1
                let (acc, outShape) = accumulate(layer, x, shape, index: layerIndex)
                shape = outShape
                let plane = layer.kind == .conv2d ? outShape[2] * outShape[3] : 1
                var y = [Double](repeating: 0, count: acc.count)
                for i in 0..<acc.count {
                    let c = (i / plane) % layer.outChannels
                    y[i] = Double(Float(acc[i]) * layer.multiplier[c] + layer.offset[c])
                }
                x = y
                if isLast { scores = y.map(Float.init) }
                layerIndex += 1
            case .relu:
                for i in 0..<x.count where x[i] < 0 { x[i] = 0 }
            case .quantize(_, let format, let scale):
                let lo = Double(format.minimum), hi = Double(format.maximum)
                for i in 0..<x.count {
                    x[i] = Double(min(max((Float(x[i]) / scale).rounded(.toNearestOrEven), Float(lo)), Float(hi)))
                }
            case .maxPool(let kernel, let stride):
                let (c, h, w) = (shape[1], shape[2], shape[3])
                let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
                var out = [Double](repeating: 0, count: n * c * ho * wo)
                for p in 0..<(n * c) {
                    for i in 0..<ho {
                        for j in 0..<wo {
                            var m = -Double.infinity
                            for a in 0..<kernel { for b in 0..<kernel { m = max(m, x[p * h * w + (i * stride + a) * w + j * stride + b]) } }
                            out[(p * ho + i) * wo + j] = m
                        }
                    }
                }
                x = out
                shape = [n, c, ho, wo]
            case .flatten:
                shape = [n, shape.dropFirst().reduce(1, *)]
            }
        }
        return scores
    }

    /// Integer dot products of one layer with the overflow behaviour applied; NCHW or [N, out].
    private func accumulate(_ layer: IntegerLayer, _ x: [Double], _ shape: [Int], index: Int) -> ([Int64], [Int]) {
        let n = shape[0], out = layer.outChannels, k = layer.fanIn
        let p = accumulatorBits[layer.name] ?? layer.accumulatorBits
        let hi = (Int64(1) << (p - 1)) - 1, lo = -(Int64(1) << (p - 1))
        let weights = layer.weights.map(Double.init)
        // Columns: for a linear layer each image is one column; for a conv, im2col.
        let columns: [Double], count: Int, outShape: [Int]
        switch layer.kind {
        case .linear:
            count = n
            columns = transpose(x, rows: n, columns: k)
            outShape = [n, out]
        case .conv2d:
            let (c, h, w, kh) = (shape[1], shape[2], shape[3], layer.shape[2])
            let ho = (h + 2 * layer.padding - kh) / layer.stride + 1, wo = (w + 2 * layer.padding - kh) / layer.stride + 1
            count = n * ho * wo
            columns = im2col(x, n: n, c: c, h: h, w: w, kernel: kh, stride: layer.stride, padding: layer.padding, ho: ho, wo: wo)
            outShape = [n, out, ho, wo]
        }
        var wide = [Double](repeating: 0, count: out * count)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(out), blasint(count), blasint(k), 1, weights,
                    blasint(k), columns, blasint(count), 0, &wide, blasint(count))
        var bound: [Double] = []
        if !overflows[index].provenSafe {
            let absWeights = weights.map(abs), absColumns = columns.map(abs)
            bound = [Double](repeating: 0, count: out * count)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(out), blasint(count), blasint(k), 1, absWeights,
                        blasint(k), absColumns, blasint(count), 0, &bound, blasint(count))
        }
        var result = [Int64](repeating: 0, count: out * count)
        var finals = 0, partials = 0
        layer.weights.withUnsafeBufferPointer { w in
            columns.withUnsafeBufferPointer { col in
                guard let wBase = w.baseAddress, let colBase = col.baseAddress else { return }
                for o in 0..<out {
                    for j in 0..<count {
                        let at = o * count + j
                        var value = Int64(wide[at])
                        if !bound.isEmpty && bound[at] > Double(hi) {
                            var partial: Int32 = 0
                            var saturated: Int64 = 0
                            value = a2qk_sequential_dot(wBase + o * k, colBase + j, Int64(count), Int64(k),
                                                        lo, hi, &partial, &saturated)
                            if partial != 0 { partials += 1 }
                            if value < lo || value > hi {
                                finals += 1
                                switch mode {
                                case .wide: break
                                case .wrap: value = wrap(value, bits: p)
                                case .saturate: value = saturated
                                }
                            } else if mode == .saturate {
                                value = saturated
                            }
                        }
                        result[at] = value
                    }
                }
            }
        }
        overflows[index].dotProducts += out * count
        overflows[index].finalOverflows += finals
        overflows[index].partialOverflows += partials
        // [out, N·plane] → NCHW / [N, out].
        let plane = count / n
        var ordered = [Int64](repeating: 0, count: out * count)
        for b in 0..<n { for o in 0..<out { for i in 0..<plane { ordered[(b * out + o) * plane + i] = result[o * count + b * plane + i] } } }
        return (ordered, outShape)
    }

    func wrap(_ value: Int64, bits: Int) -> Int64 {
        let shift = 64 - bits
        return (value << shift) >> shift
    }

    func transpose(_ x: [Double], rows: Int, columns: Int) -> [Double] {
        var t = [Double](repeating: 0, count: x.count)
        for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = x[r * columns + c] } }
        return t
    }

    func im2col(_ x: [Double], n: Int, c: Int, h: Int, w: Int, kernel: Int, stride: Int, padding: Int, ho: Int, wo: Int) -> [Double] {
        let plane = ho * wo, count = n * plane
        var col = [Double](repeating: 0, count: c * kernel * kernel * count)
        for ci in 0..<c {
            for i in 0..<kernel {
                for j in 0..<kernel {
                    let row = ((ci * kernel + i) * kernel + j) * count
                    for b in 0..<n {
                        for oh in 0..<ho {
                            let ih = oh * stride - padding + i
                            guard ih >= 0 && ih < h else { continue }
                            for ow in 0..<wo {
                                let iw = ow * stride - padding + j
                                guard iw >= 0 && iw < w else { continue }
                                col[row + b * plane + oh * wo + ow] = x[((b * c + ci) * h + ih) * w + iw]
                            }
                        }
                    }
                }
            }
        }
        return col
    }

    /// Accuracy and predictions over a dataset, in batches.
    public func evaluate(_ data: Dataset, batch: Int = 100) -> (accuracy: Double, predictions: [Int]) {
        var predictions: [Int] = []
        predictions.reserveCapacity(data.count)
        var correct = 0
        data.images.withUnsafeBufferPointer { pixels in
            var start = 0
            while start < data.count {
                let m = min(batch, data.count - start)
                let slice = UnsafeBufferPointer(rebasing: pixels[(start * data.imageSize)..<((start + m) * data.imageSize)])
                let scores = logits(pixels: slice, count: m)
                for i in 0..<m {
                    var best = 0
                    for c in 1..<model.classes where scores[i * model.classes + c] > scores[i * model.classes + best] { best = c }
                    predictions.append(best)
                    if best == Int(data.labels[start + i]) { correct += 1 }
                }
                start += m
            }
        }
        return (Double(correct) / Double(max(data.count, 1)), predictions)
    }
}
