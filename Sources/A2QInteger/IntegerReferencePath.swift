import A2QCore
import A2QQuant
import COpenBLAS
import QuantKernels

/// The integer engine's reference path: exact dot products in Float64 with `dgemm` (integers
/// below 2^53 are exact), float activations holding integer values, NCHW. Dot products that
/// could overflow at some partial sum (the sum of |w·x| exceeds the range) are re-accumulated
/// sequentially, in weight-index order, to count partial overflows and to saturate. It runs
/// any widths the format allows; `IntegerPlan` is the fast path for 8-bit models, and the two
/// must agree bit for bit (tested).
public final class IntegerReferencePath {
    let model: IntegerModel
    public let mode: OverflowMode
    /// Whether `recorded` keeps every accumulator of the last batch.
    let recordsAccumulators: Bool
    private(set) var recorded: [RecordedAccumulators] = []
    private let lastLayer: String?
    /// During a call: the overflow counts per accumulator, the next accumulator's index in
    /// them (execution order), and the last layer's accumulators.
    private var overflows: [LayerOverflow] = []
    private var slot = 0
    private var lastAccumulators: [Int64] = []

    init(model: IntegerModel, mode: OverflowMode, recordsAccumulators: Bool = false) {
        self.model = model
        self.mode = mode
        self.recordsAccumulators = recordsAccumulators
        lastLayer = model.layers.last?.name
    }

    /// Class scores for `count` images (pixels), adding overflow counts to `counts`.
    func logits(pixels: UnsafeBufferPointer<UInt8>, count n: Int, counts: inout [LayerOverflow],
                lastAccumulators last: inout [Int64]) -> [Float] {
        var tensor = IntegerActivations(x: pixels.map(Float.init), shape: [n] + model.inputShape, scale: 1)  // integers; exact in Float32
        (overflows, slot, lastAccumulators, recorded) = (counts, 0, last, [])
        run(model.ops, &tensor)
        (counts, last) = (overflows, lastAccumulators)
        return tensor.x
    }

    /// Runs `ops` in order on `t` (an op with branches calls this for each branch).
    public func run(_ ops: [any IntegerOperation], _ t: inout IntegerActivations) {
        for op in ops { op.run(&t, self) }
    }

    /// ReLU on the values.
    public func relu(_ t: inout IntegerActivations) {
        a2qk_relu_forward(t.x, &t.x, Int64(t.x.count))
    }

    /// The next integers `clip(rint(y · inverse), lo, hi)` with `inverse = 1 / scale` in
    /// float32, at `scale`.
    public func quantize(_ t: inout IntegerActivations, format: InputFormat, scale: Float) {
        let inverse = 1 / scale
        for i in 0..<t.x.count { t.x[i] *= inverse }
        a2qk_act_forward(t.x, &t.x, Int64(t.x.count), 1, Float(format.minimum), Float(format.maximum))  // level·s, s = 1
        t.scale = scale
    }

    /// A weight layer's dot products in its P-bit register, then the requantisation.
    public func accumulate(_ layer: IntegerLayer, _ t: inout IntegerActivations) {
        (t.x, t.shape) = accumulate(layer, t.x, t.shape, index: slot, counts: &overflows, last: &lastAccumulators)
        t.scale = 1
        slot += 1
    }

    /// An average pool's sums in its P-bit register, then `· m`: a global pool (`window` nil)
    /// sums each channel's H·W integers, `m = scale/(H·W)`, giving `[N, C]`; a window pool sums
    /// each `kernel × kernel` window (padding adds nothing), `m = scale/kernel²`, giving
    /// `[N, C, H', W']`.
    public func averagePool(_ t: inout IntegerActivations, name: String, window: PoolWindow? = nil) {
        t = pool(t, name: name, window: window, index: slot, counts: &overflows)
        slot += 1
    }

    /// Per image, channel and output position, the window's integers added in row-major order
    /// (kernel row, then kernel column; padding positions skipped, as adding 0 changes no
    /// register) in the pool's P-bit register, simulated in the overflow mode unless its worst
    /// case fits, then `Float(sum) · m` in float32 with `m = scale / divisor` rounded once. A
    /// global pool is the one window of the whole image (divisor H·W, no padding).
    private func pool(_ t: IntegerActivations, name: String, window: PoolWindow?, index: Int,
                      counts overflows: inout [LayerOverflow]) -> IntegerActivations {
        let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
        let ho = window?.outputSize(h) ?? 1, wo = window?.outputSize(w) ?? 1
        let divisor = window.map { $0.kernel * $0.kernel } ?? h * w
        let rows = (0..<ho).map { window?.span($0, size: h) ?? 0..<h }, columns = (0..<wo).map { window?.span($0, size: w) ?? 0..<w }
        let p = overflows[index].accumulatorBits
        let hi = (Int64(1) << (p - 1)) - 1, lo = -(Int64(1) << (p - 1))
        let simulate = !overflows[index].provenSafe
        let m = t.scale / Float(divisor)
        var sums = [Int64](repeating: 0, count: n * c * ho * wo)
        var finals = 0, partials = 0
        for plane in 0..<(n * c) {
            let source = plane * h * w
            for oh in 0..<ho {
                for ow in 0..<wo {
                    var exact: Int64 = 0, saturated: Int64 = 0, leftRange = false
                    for i in rows[oh] {
                        for j in columns[ow] {
                            let term = Int64(t.x[source + i * w + j])
                            exact += term
                            guard simulate else { continue }
                            if exact < lo || exact > hi { leftRange = true }
                            saturated = min(max(saturated + term, lo), hi)
                        }
                    }
                    var value = exact
                    if simulate {
                        if leftRange { partials += 1 }
                        if exact < lo || exact > hi { finals += 1 }
                        switch mode {
                        case .wide: break
                        case .wrap: value = wrap(exact, bits: p)
                        case .saturate: value = saturated
                        }
                    }
                    sums[(plane * ho + oh) * wo + ow] = value
                }
            }
        }
        overflows[index].dotProducts += sums.count
        overflows[index].finalOverflows += finals
        overflows[index].partialOverflows += partials
        let shape = window == nil ? [n, c] : [n, c, ho, wo]
        if recordsAccumulators { recorded.append(RecordedAccumulators(name: name, shape: shape, values: sums)) }
        return IntegerActivations(x: sums.map { Float($0) * m }, shape: shape, scale: 1)
    }

    /// One layer: integer dot products with the overflow behaviour applied, then the float
    /// requantisation `acc · multiplier + offset`; returns NCHW or [N, out] floats. A grouped
    /// convolution runs one `dgemm` per group: the im2col rows of group g's input channels are
    /// the consecutive rows `g·K ..< (g+1)·K` (rows are (channel, kernel row, kernel column)),
    /// and its output channels the rows `g·out/groups ..< (g+1)·out/groups`.
    private func accumulate(_ layer: IntegerLayer, _ x: [Float], _ shape: [Int], index: Int, counts overflows: inout [LayerOverflow],
                            last lastAccumulators: inout [Int64]) -> ([Float], [Int]) {
        let n = shape[0], out = layer.outChannels, k = layer.fanIn
        let groups = layer.groups, groupOut = out / groups
        let p = overflows[index].accumulatorBits
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
        /// c = a · b per group: a [out, K] weights, b the columns, c [out, count].
        func products(_ a: [Double], _ b: [Double], _ c: inout [Double]) {
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        guard let ab = a.baseAddress, let bb = b.baseAddress, let cb = c.baseAddress else { return }
                        for g in 0..<groups {
                            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(groupOut), blasint(count), blasint(k), 1,
                                        ab + g * groupOut * k, blasint(k), bb + g * k * count, blasint(count), 0,
                                        cb + g * groupOut * count, blasint(count))
                        }
                    }
                }
            }
        }
        var wide = [Double](repeating: 0, count: out * count)
        products(weights, columns, &wide)
        var finals = 0, partials = 0, outerFinalCount = 0, outerPartialCount = 0
        if !overflows[index].provenSafe {
            let absWeights = weights.map(abs), absColumns = columns.map(abs)
            var bound = [Double](repeating: 0, count: out * count)
            products(absWeights, absColumns, &bound)
            // Re-accumulate, in weight order, the blocks of columns where some dot product could
            // overflow at a partial sum.
            let block = 64
            var blockWide = [Double](repeating: 0, count: block), blockSaturated = [Double](repeating: 0, count: block)
            var blockPartial = [Int32](repeating: 0, count: block)
            layer.weights.withUnsafeBufferPointer { w in
                columns.withUnsafeBufferPointer { col in
                    guard let wBase = w.baseAddress, let colBase = col.baseAddress else { return }
                    for o in 0..<out {
                        var j0 = 0
                        while j0 < count {
                            let width = min(block, count - j0)
                            let row = o * count + j0
                            guard (0..<width).contains(where: { bound[row + $0] > Double(hi) }) else { j0 += width; continue }
                            if let outer = overflows[index].outerAccumulatorBits {
                                let (tilePartials, tileFinals, outerPartials, outerFinals) = simulateTiles(
                                    layer, weights: wBase + o * k, columns: colBase + (o / groupOut) * k * count + j0, stride: count,
                                    width: width, bits: p, outerBits: outer, values: &wide, at: row,
                                    tileWide: &blockWide, tileSaturated: &blockSaturated, tilePartial: &blockPartial)
                                partials += tilePartials
                                finals += tileFinals
                                outerPartialCount += outerPartials
                                outerFinalCount += outerFinals
                                j0 += width
                                continue
                            }
                            a2qk_sequential_block(wBase + o * k, colBase + (o / groupOut) * k * count + j0, Int64(count), Int64(k), Int64(width),
                                                  Double(lo), Double(hi), &blockWide, &blockSaturated, &blockPartial)
                            for jj in 0..<width {
                                let value = Int64(blockWide[jj])
                                if blockPartial[jj] != 0 { partials += 1 }
                                if value < lo || value > hi { finals += 1 }
                                switch mode {
                                case .wide: break
                                case .wrap: wide[row + jj] = Double(wrap(value, bits: p))
                                case .saturate: wide[row + jj] = blockSaturated[jj]
                                }
                            }
                            j0 += width
                        }
                    }
                }
            }
        }
        overflows[index].dotProducts += out * count
        overflows[index].finalOverflows += finals
        overflows[index].partialOverflows += partials
        if overflows[index].accumulatorTile != nil {
            overflows[index].tileSums = (overflows[index].tileSums ?? 0) + out * count * layer.tileCount
            overflows[index].outerFinalOverflows = (overflows[index].outerFinalOverflows ?? 0) + outerFinalCount
            overflows[index].outerPartialOverflows = (overflows[index].outerPartialOverflows ?? 0) + outerPartialCount
        }
        // [out, N·plane] → NCHW / [N, out], requantised.
        let plane = count / n
        if layer.name == lastLayer {
            lastAccumulators = [Int64](repeating: 0, count: out * count)
            for o in 0..<out { for image in 0..<n { lastAccumulators[image * out + o] = Int64(wide[o * count + image]) } }
        }
        if recordsAccumulators {
            // [out, N·plane] → [N, out, plane]
            var values = [Int64](repeating: 0, count: out * count)
            for o in 0..<out {
                for image in 0..<n {
                    for i in 0..<plane { values[(image * out + o) * plane + i] = Int64(wide[o * count + image * plane + i]) }
                }
            }
            recorded.append(RecordedAccumulators(name: layer.name, shape: outShape, values: values))
        }
        var y = [Float](repeating: 0, count: out * count)
        for o in 0..<out {
            let m = layer.multiplier[o], b = layer.offset[o]
            for image in 0..<n {
                let source = o * count + image * plane, destination = (image * out + o) * plane
                for i in 0..<plane { y[destination + i] = Float(wide[source + i]) * m + b }
            }
        }
        return (y, outShape)
    }

    /// Multi-stage accumulation of one output channel over `width` columns: each tile's products
    /// added in weight-index order in a `bits`-bit register (simulated in the overflow mode),
    /// each tile's final register value then added, tile by tile, to an `outerBits`-bit outer
    /// register simulated in the same mode (docs/CHECKPOINT.md, "Tiles"). Writes the outer
    /// register's values to `values[at ..< at + width]`; returns the tile sums with a partial
    /// and a final overflow, and the dot products whose outer register left its range at some
    /// step and at the end.
    private func simulateTiles(_ layer: IntegerLayer, weights: UnsafePointer<Int32>, columns: UnsafePointer<Double>, stride: Int,
                               width: Int, bits p: Int, outerBits: Int, values: inout [Double], at start: Int,
                               tileWide: inout [Double], tileSaturated: inout [Double], tilePartial: inout [Int32])
        -> (tilePartials: Int, tileFinals: Int, outerPartials: Int, outerFinals: Int) {
        let hi = (Int64(1) << (p - 1)) - 1, lo = -(Int64(1) << (p - 1))
        let outerHi = (Int64(1) << (outerBits - 1)) - 1, outerLo = -(Int64(1) << (outerBits - 1))
        var exact = [Int64](repeating: 0, count: width), register = [Int64](repeating: 0, count: width)
        var left = [Bool](repeating: false, count: width)
        var tilePartials = 0, tileFinals = 0
        for j in 0..<layer.tileCount {
            let first = j * layer.tileLength, length = min(layer.tileLength, layer.fanIn - first)
            a2qk_sequential_block(weights + first, columns + first * stride, Int64(stride), Int64(length), Int64(width),
                                  Double(lo), Double(hi), &tileWide, &tileSaturated, &tilePartial)
            for c in 0..<width {
                let sum = Int64(tileWide[c])
                if tilePartial[c] != 0 { tilePartials += 1 }
                if sum < lo || sum > hi { tileFinals += 1 }
                let value: Int64
                switch mode {
                case .wide: value = sum
                case .wrap: value = wrap(sum, bits: p)
                case .saturate: value = Int64(tileSaturated[c])
                }
                exact[c] += value
                if exact[c] < outerLo || exact[c] > outerHi { left[c] = true }
                switch mode {
                case .wide: register[c] = exact[c]
                case .wrap: register[c] = wrap(register[c] + value, bits: outerBits)
                case .saturate: register[c] = min(max(register[c] + value, outerLo), outerHi)
                }
            }
        }
        var outerPartials = 0, outerFinals = 0
        for c in 0..<width {
            if left[c] { outerPartials += 1 }
            if exact[c] < outerLo || exact[c] > outerHi { outerFinals += 1 }
            values[start + c] = Double(register[c])
        }
        return (tilePartials, tileFinals, outerPartials, outerFinals)
    }

    func transpose(_ x: [Float], rows: Int, columns: Int) -> [Double] {
        var t = [Double](repeating: 0, count: x.count)
        for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = Double(x[r * columns + c]) } }
        return t
    }

    func im2col(_ x: [Float], n: Int, c: Int, h: Int, w: Int, kernel: Int, stride: Int, padding: Int, ho: Int, wo: Int) -> [Double] {
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
                                col[row + b * plane + oh * wo + ow] = Double(x[((b * c + ci) * h + ih) * w + iw])
                            }
                        }
                    }
                }
            }
        }
        return col
    }

}

/// Values flowing between ops on the reference path: NCHW (or [N, F]) floats, integers at
/// `scale` after a quantize, real values (scale 1) after a layer, an add or a pool.
public struct IntegerActivations: Sendable {
    public var x: [Float]
    public var shape: [Int]
    public var scale: Float

    public init(x: [Float], shape: [Int], scale: Float) {
        self.x = x
        self.shape = shape
        self.scale = scale
    }
}

/// A P-bit two's complement register's view of `value`.
func wrap(_ value: Int64, bits: Int) -> Int64 {
    let shift = 64 - bits
    return (value << shift) >> shift
}
