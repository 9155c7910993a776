import A2QCore
import A2QQuant
import IntegerKernels

/// The integer engine's fast path: uint8 activations in NHWC order, int8 weights packed once
/// per layer for an integer kernel (`IntegerKernel`: AVX-512 VNNI, AVX2, scalar, or 16-bit lanes
/// on layers proven to fit 16 bits per tile, `TileLayout`), exact int32 accumulators, and
/// requantisation fused with ReLU and the next layer's quantizer (in the kernel's epilogue,
/// with a following 2 × 2 max pool, when no overflow is simulated). Max pooling runs on the
/// integers after quantisation (ReLU and quantisation are monotone, so pooling before or after
/// gives the same integers). A tiled layer that is not proven safe at its P runs the model on
/// the reference path, which simulates the tile registers.
///
/// Layers that are not proven safe at their P run the P-bit register simulation (wrap,
/// saturate, partial sums in weight-index order) on the blocks whose Σ|w·x| could leave the
/// range, exactly as `IntegerReferencePath` does. It runs models whose inputs are unsigned
/// ≤ 8 bits and weights ≤ 8 bits with worst-case sums inside int32; anything else runs on the
/// reference path (`IntegerPlan.make` returns the reason).
///
/// A grouped (or depthwise) convolution runs here as the dense convolution whose weights are
/// zero outside each output channel's group (block-diagonal): the same dot products, since a
/// zero weight adds 0 to every sum and every partial sum, so every kernel (16-bit lanes
/// included: each pair and partial sum stays within the channel's worst case) and the register
/// simulation (zero weights change no partial sum, in the same weight-index order) give the
/// grouped layer's integers exactly, at `groups` times a grouped kernel's multiply-adds. A
/// grouped layer whose dense form would hold more than `IntegerLayer.maxStoredWeights` weights
/// runs the model on the reference path instead (one `dgemm` per group).
final class IntegerPlan {
    /// A max pool on the uint8 output of a step, with its input's height and width.
    struct Pool { var kernel: Int; var stride: Int; var height: Int; var width: Int }

    /// One weight layer with everything that follows it up to the next layer.
    struct Step {
        var layer: IntegerLayer
        var isConv: Bool
        var inputHeight = 1, inputWidth = 1, inputChannels = 0
        var outputHeight = 1, outputWidth = 1
        var k = 0, kp = 0, out = 0, outp = 0
        var kernel = IntegerKernel.scalar
        /// Packed weights for `kernel`, and |w| packed for the best 32-bit kernel (pruning of the
        /// simulation; empty when the layer is proven safe at its P).
        var packed: [UInt8] = []
        var packedAbs: [UInt8] = []
        /// Per original weight index, the position of that input in an activation row, and (for
        /// the simulation) the weights in original order as `[k][ldw]` int16, `ldw` = out rounded to 64.
        var positions: [Int32] = []
        var simulationWeights: [Int16] = []
        var ldw = 0
        var relu = false
        /// `1/scale`, lo, hi of the next quantizer; nil for the last layer (class scores).
        var quantize: (inverse: Float, lo: Float, hi: Float)?
        var pools: [Pool] = []
        var simulate = false
        var bits = 32
        /// The 16-bit kernels' widening period in row positions (`a2qi_gemm_tiled`): `kp` (one
        /// tile of all K) without tiles, `TileLayout.stride` for a tiled layer on a 16-bit kernel.
        var tileStride = 0
        /// The im2row gather of a tiled layer on a 16-bit kernel (`TileLayout` order) as
        /// `(row position, offset in the zero-bordered input window or −1 for zeros, length)`
        /// triples; empty for contiguous NHWC rows.
        var segments: [Int32] = []
        /// Tile sums per dot product (nil without tiles), for the overflow counts.
        var tileCount: Int?

        /// Whether the kernel requantises in its registers (no int32 round trip).
        var fusesRequantization: Bool {
            quantize != nil && !simulate && kernel != .scalar
        }

        /// Whether the first pool (2 × 2, stride 2, on even output sizes) runs inside the fused
        /// requantisation: rows are then made in pooling-window order (`a2qi_im2row_u8`'s pool 2).
        var poolsInKernel: Bool {
            guard fusesRequantization, isConv, outputHeight % 2 == 0, outputWidth % 2 == 0, let first = pools.first else { return false }
            return first.kernel == 2 && first.stride == 2
        }
    }

    let steps: [Step]
    let mode: OverflowMode
    let classes: Int
    let inputShape: [Int]
    let absoluteKernel = IntegerKernel.bestInt32

    // Scratch, grown to the largest batch seen and then reused (no allocation per batch).
    private let rows = Scratch<UInt8>()
    private let bordered = Scratch<UInt8>()
    private let accumulators = Scratch<Int32>()
    private let bounds = Scratch<Int32>()
    private var input = Scratch<UInt8>()
    private var output = Scratch<UInt8>()
    /// Seconds spent per step (im2row, GEMM, simulation, requantisation, pooling), summed over calls.
    private(set) var stepSeconds: [Double]

    private init(steps: [Step], mode: OverflowMode, classes: Int, inputShape: [Int]) {
        self.steps = steps
        self.mode = mode
        self.classes = classes
        self.inputShape = inputShape
        stepSeconds = [Double](repeating: 0, count: steps.count)
    }

    /// Kernels per layer name, for reports.
    var kernels: [(String, IntegerKernel)] { steps.map { ($0.layer.name, $0.kernel) } }

    /// The plan for `model`, or the reason it must run on the reference path. Throws for
    /// requests the user must change (a 16-bit kernel on a layer not proven to fit, a kernel the
    /// CPU lacks).
    static func make(model: IntegerModel, bits: [Int], provenSafe: [Bool], mode: OverflowMode,
                     choice: IntegerKernelChoice) throws -> (plan: IntegerPlan?, reason: String?) {
        let kernel32: IntegerKernel
        switch choice.accumulation {
        case .reference: return (nil, "--kernel reference")
        case .auto: kernel32 = .bestInt32
        case .forced(let k):
            guard k.isSupported else { throw A2QError("this CPU cannot run the \(k) kernel (\(CPU.description))", remedy: "use --kernel auto") }
            kernel32 = k
        }
        let names = model.layers.map(\.name)
        if case .named(let wanted) = choice.int16, let unknown = wanted.first(where: { !names.contains($0) }) {
            throw A2QError("--int16-layers names '\(unknown)', which this model does not have", remedy: "its layers are \(names.joined(separator: ", "))")
        }
        var builder = IntegerPlanBuilder(inputShape: model.inputShape, bits: bits, provenSafe: provenSafe, kernel32: kernel32, choice: choice)
        for op in model.ops {
            if let reason = try op.plan(&builder) { return (nil, reason) }
        }
        guard let last = builder.current, last.pools.isEmpty else { return (nil, "the model does not end in a weight layer") }
        return (IntegerPlan(steps: builder.steps + [last], mode: mode, classes: model.classes, inputShape: model.inputShape), nil)
    }

    static func pack(_ weights: [Int8], kernel: IntegerKernel, out: Int, k: Int) -> [UInt8] {
        var packed = [UInt8](repeating: 0, count: Int(a2qi_packed_bytes(kernel.rawValue, Int64(out), Int64(k))))
        weights.withUnsafeBufferPointer { w in
            packed.withUnsafeMutableBytes { p in
                guard let wb = w.baseAddress, let pb = p.baseAddress else { return }
                a2qi_pack(kernel.rawValue, wb, Int64(out), Int64(k), pb)
            }
        }
        return packed
    }

    /// Images per pass through the layers: small enough that a layer's rows, accumulators and
    /// activations stay in L2 (the `cnn`'s conv2 rows are 56 KB per image).
    static let chunk = 16

    /// Class scores of `n` images; adds overflow counts to `counts` and leaves the last layer's
    /// accumulators (`[n, classes]`, after the overflow mode) in `lastAccumulators`.
    func logits(pixels: UnsafeBufferPointer<UInt8>, count n: Int, counts: inout [LayerOverflow],
                lastAccumulators: inout [Int64]) -> [Float] {
        let imageSize = inputShape.reduce(1, *)
        guard let pixelBase = pixels.baseAddress, pixels.count >= n * imageSize else { return [] }
        var scores = [Float](repeating: 0, count: n * classes)
        lastAccumulators = [Int64](repeating: 0, count: n * classes)
        var start = 0
        while start < n {
            let m = min(IntegerPlan.chunk, n - start)
            run(pixelBase + start * imageSize, count: m, counts: &counts, scores: &scores, accumulators: &lastAccumulators, offset: start * classes)
            start += m
        }
        return scores
    }

    /// One chunk of `n` images through every step.
    private func run(_ pixelBase: UnsafePointer<UInt8>, count n: Int, counts: inout [LayerOverflow], scores: inout [Float],
                     accumulators lastAccumulators: inout [Int64], offset: Int) {
        // NCHW pixels → NHWC.
        let imageSize = inputShape.reduce(1, *)
        var x = input.reserve(n * imageSize)
        if inputShape.count == 3 && inputShape[0] > 1 {
            let (c, plane) = (inputShape[0], inputShape[1] * inputShape[2])
            for b in 0..<n { for ci in 0..<c { for p in 0..<plane { x[b * imageSize + p * c + ci] = pixelBase[b * imageSize + ci * plane + p] } } }
        } else {
            x.update(from: pixelBase, count: n * imageSize)
        }
        for (index, step) in steps.enumerated() {
            let started = monotonicSeconds()
            defer { stepSeconds[index] += monotonicSeconds() - started }
            let count = n * step.outputHeight * step.outputWidth
            let padded = (count + 3) / 4 * 4
            let r = rows.reserve(padded * step.kp + 64)
            let c = accumulators.reserve(padded * step.outp)
            let poolsInKernel = step.poolsInKernel
            if step.isConv || !step.segments.isEmpty {
                // A linear layer's gather is the 1 × 1 convolution of a 1 × 1 image of K channels.
                let (h, w, c) = step.isConv ? (step.inputHeight, step.inputWidth, step.inputChannels) : (1, 1, step.k)
                let (size, stride, pad) = step.isConv ? (step.layer.shape[2], step.layer.stride, step.layer.padding) : (1, 1, 0)
                let scratch = bordered.reserve(Int(a2qi_im2row_scratch_bytes(Int64(h), Int64(w), Int64(c), Int64(pad))))
                step.segments.withUnsafeBufferPointer { segments in
                    a2qi_im2row_u8(x, Int64(n), Int64(h), Int64(w), Int64(c), Int64(size), Int64(stride), Int64(pad),
                                   Int64(step.outputHeight), Int64(step.outputWidth), Int64(step.kp),
                                   step.segments.isEmpty ? nil : segments.baseAddress, Int64(step.segments.count / 3),
                                   poolsInKernel ? 2 : 1, r, scratch)
                }
            } else {
                for j in 0..<count {
                    (r + j * step.kp).update(from: x + j * step.k, count: step.k)
                    (r + j * step.kp + step.k).update(repeating: 0, count: step.kp - step.k)
                }
            }
            (r + count * step.kp).update(repeating: 0, count: (padded - count) * step.kp)
            counts[index].dotProducts += step.out * count
            if let tiles = step.tileCount { counts[index].tileSums = (counts[index].tileSums ?? 0) + step.out * count * tiles }
            if let q = step.quantize, step.fusesRequantization {
                // No overflow to simulate: requantise (and pool) in the GEMM's registers, no int32 round trip.
                let y = output.reserve((poolsInKernel ? count / 4 : count) * step.out)
                let fused = step.layer.multiplier.withUnsafeBufferPointer { m in
                    step.layer.offset.withUnsafeBufferPointer { b in
                        step.packed.withUnsafeBytes { p -> Int32 in
                            guard let mb = m.baseAddress, let bb = b.baseAddress, let pb = p.baseAddress else { return 0 }
                            var e = a2qi_requantization(multiplier: mb, offset: bb, inverse: q.inverse, lo: q.lo, hi: q.hi,
                                                        relu: step.relu ? 1 : 0)
                            return a2qi_gemm_requantize(step.kernel.rawValue, r, Int64(padded), Int64(count), Int64(step.kp), pb,
                                                        Int64(step.out), Int64(step.tileStride), poolsInKernel ? 2 : 1, &e, y)
                        }
                    }
                }
                precondition(fused != 0, "IntegerPlan: \(step.kernel) has no fused requantisation")
                swap(&input, &output)
                x = y
                x = pool(step, x, n: n, skipping: poolsInKernel ? 1 : 0)
                continue
            }
            gemm(step.kernel, step.packed, rows: r, count: padded, step: step, into: c)
            if step.simulate { simulate(step, rows: r, count: count, accumulators: c, counts: &counts[index]) }
            if let q = step.quantize {
                let y = output.reserve(count * step.out)
                step.layer.multiplier.withUnsafeBufferPointer { m in
                    step.layer.offset.withUnsafeBufferPointer { b in
                        guard let mb = m.baseAddress, let bb = b.baseAddress else { return }
                        a2qi_requantize_u8(c, Int64(step.outp), Int64(count), Int64(step.out), mb, bb, step.relu ? 1 : 0,
                                           q.inverse, q.lo, q.hi, y)
                    }
                }
                swap(&input, &output)
                x = y
                x = pool(step, x, n: n)
            } else {
                scores.withUnsafeMutableBufferPointer { yb in
                    step.layer.multiplier.withUnsafeBufferPointer { m in
                        step.layer.offset.withUnsafeBufferPointer { b in
                            guard let y = yb.baseAddress, let mb = m.baseAddress, let bb = b.baseAddress else { return }
                            a2qi_requantize_float(c, Int64(step.outp), Int64(count), Int64(step.out), mb, bb, y + offset)
                        }
                    }
                }
                if step.relu { for i in offset..<(offset + count * step.out) { scores[i] = max(scores[i], 0) } }
                for j in 0..<count { for o in 0..<step.out { lastAccumulators[offset + j * step.out + o] = Int64(c[j * step.outp + o]) } }
            }
        }
    }

    /// The max pools after `step`'s quantizer (but the first `skipping`, done in the kernel), on
    /// its uint8 output `x`; returns the result.
    private func pool(_ step: Step, _ x: UnsafeMutablePointer<UInt8>, n: Int, skipping: Int = 0) -> UnsafeMutablePointer<UInt8> {
        var x = x
        for pool in step.pools.dropFirst(skipping) {
            let (h, w) = (pool.height, pool.width)
            let pooledCount = n * ((h - pool.kernel) / pool.stride + 1) * ((w - pool.kernel) / pool.stride + 1) * step.out
            let pooled = output.reserve(pooledCount)
            a2qi_maxpool_u8(x, Int64(n), Int64(h), Int64(w), Int64(step.out), Int64(pool.kernel), Int64(pool.stride), pooled)
            swap(&input, &output)
            x = pooled
        }
        return x
    }

    private func gemm(_ kernel: IntegerKernel, _ packed: [UInt8], rows: UnsafeMutablePointer<UInt8>, count: Int, step: Step,
                      into c: UnsafeMutablePointer<Int32>) {
        packed.withUnsafeBytes { p in
            guard let pb = p.baseAddress else { return }
            a2qi_gemm_tiled(kernel.rawValue, rows, Int64(count), Int64(step.kp), pb, Int64(step.out), Int64(step.tileStride), c)
        }
    }

    /// The P-bit register on the dot products whose Σ|w·x| could leave the range (checked per
    /// row and tile of 64 channels with a second GEMM on |w|).
    private func simulate(_ step: Step, rows r: UnsafeMutablePointer<UInt8>, count: Int, accumulators c: UnsafeMutablePointer<Int32>,
                          counts: inout LayerOverflow) {
        let p = step.bits
        let padded = (count + 3) / 4 * 4
        let bound = bounds.reserve(padded * step.outp)
        gemm(absoluteKernel, step.packedAbs, rows: r, count: padded, step: step, into: bound)
        var finals: Int64 = 0, partials: Int64 = 0
        let code = switch mode { case .wide: A2QI_WIDE; case .wrap: A2QI_WRAP; case .saturate: A2QI_SATURATE }
        step.simulationWeights.withUnsafeBufferPointer { w in
            step.positions.withUnsafeBufferPointer { positions in
                guard let wb = w.baseAddress, let pb = positions.baseAddress else { return }
                a2qi_simulate_layer(wb, Int64(step.ldw), pb, r, Int64(step.kp), Int64(count), Int64(step.k), Int64(step.out),
                                    Int64(step.outp), bound, c, Int32(p), Int32(code.rawValue), &finals, &partials)
            }
        }
        counts.finalOverflows += Int(finals)
        counts.partialOverflows += Int(partials)
    }
}

/// A growable scratch buffer: `reserve` returns a pointer to at least `count` elements,
/// reallocating only when a larger batch needs more (contents are not kept).
final class Scratch<Element> {
    private var pointer: UnsafeMutablePointer<Element>?
    private var capacity = 0

    func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if let pointer, count <= capacity { return pointer }
        pointer?.deallocate()
        let fresh = UnsafeMutablePointer<Element>.allocate(capacity: max(count, 1))
        pointer = fresh
        capacity = max(count, 1)
        return fresh
    }

    deinit { pointer?.deallocate() }
}

/// What an op adds to the int8 plan (`IntegerOperation.plan`): the steps made so far, the
/// weight layer waiting for its quantizer, and the shape of the values in flight.
public struct IntegerPlanBuilder {
    var steps: [IntegerPlan.Step] = []
    var current: IntegerPlan.Step?
    var c: Int, h: Int, w: Int
    var flat: Bool
    var index = 0
    let bits: [Int]
    let provenSafe: [Bool]
    let kernel32: IntegerKernel
    let choice: IntegerKernelChoice

    init(inputShape: [Int], bits: [Int], provenSafe: [Bool], kernel32: IntegerKernel, choice: IntegerKernelChoice) {
        (c, h, w) = (inputShape[0], inputShape.count == 3 ? inputShape[1] : 1, inputShape.count == 3 ? inputShape[2] : 1)
        flat = inputShape.count != 3
        self.bits = bits
        self.provenSafe = provenSafe
        self.kernel32 = kernel32
        self.choice = choice
    }

    /// The image input: unsigned ≤ 8-bit pixels.
    public mutating func input(format: InputFormat) -> String? {
        guard !format.signed, format.bits <= 8 else { return "input format \(format)" }
        return nil
    }

    /// A weight layer; throws for a request the user must change (a 16-bit kernel on a layer
    /// not proven to fit).
    public mutating func layer(_ layer: IntegerLayer) throws -> String? {
        guard current == nil else { return "\(layer.name) follows a layer without a quantizer between" }
        guard !layer.input.signed, layer.input.bits <= 8 else { return "\(layer.name): input \(layer.input) (needs unsigned ≤ 8 bits)" }
        guard layer.weightBits <= 8 else { return "\(layer.name): \(layer.weightBits)-bit weights (needs ≤ 8)" }
        let report = layer.report
        let magnitude = max(report.maximums.map(abs).max() ?? 0, report.minimums.map(abs).max() ?? 0)
        guard magnitude < (1 << 31) - (1 << 16) else { return "\(layer.name): worst-case sums exceed 32 bits" }
        var step = IntegerPlan.Step(layer: layer, isConv: layer.kind == .conv2d)
        step.out = layer.outChannels
        step.k = layer.kind == .conv2d ? layer.inChannels * layer.shape[2] * layer.shape[3] : layer.fanIn
        guard step.out * step.k <= IntegerLayer.maxStoredWeights else {
            return "\(layer.name): its block-diagonal dense form (\(layer.groups) groups) would hold \(step.out * step.k) weights"
        }
        step.kp = Int(a2qi_padded_k(Int64(step.k)))
        step.outp = Int(a2qi_padded_out(Int64(step.out)))
        step.bits = bits[index]
        step.simulate = !provenSafe[index]
        if step.simulate && step.bits > 31 { return "\(layer.name): simulation of a \(step.bits)-bit register" }
        if step.simulate && layer.accumulatorTile != nil {
            // The plan simulates one register per dot product; tile registers run on the reference path.
            return "\(layer.name): tiles of \(layer.tileLength) not proven to fit their \(step.bits)-bit registers (and the \(layer.outerAccumulatorBits)-bit outer one) need the tile simulation"
        }
        if layer.accumulatorTile != nil { step.tileCount = layer.tileCount }
        step.inputChannels = c
        step.inputHeight = h
        step.inputWidth = w
        switch layer.kind {
        case .conv2d:
            guard !flat, layer.shape.count == 4, layer.inChannels == c else { return "\(layer.name): input shape" }
            let size = layer.shape[2]
            step.outputHeight = (h + 2 * layer.padding - size) / layer.stride + 1
            step.outputWidth = (w + 2 * layer.padding - size) / layer.stride + 1
            // original index (ci, i, j) → row position (i, j, ci)
            step.positions = (0..<step.k).map { k in
                let ci = k / (size * size), i = (k / size) % size, j = k % size
                return Int32((i * size + j) * c + ci)
            }
            (h, w, c) = (step.outputHeight, step.outputWidth, step.out)
        case .linear:
            guard c * h * w == step.k else { return "\(layer.name): input size" }
            // original index (ci, y, x) of a flattened NCHW tensor → NHWC position
            let (cc, hh, ww) = (c, h, w)
            step.positions = (0..<step.k).map { k in
                let ci = k / (hh * ww), y = (k / ww) % hh, x = k % ww
                return Int32((y * ww + x) * cc + ci)
            }
            (h, w, c) = (1, 1, step.out)
            flat = true
        }
        let weights = IntegerPlanBuilder.denseWeights(layer)
        var rowOrder = [Int8](repeating: 0, count: step.out * step.k)
        var absolute = rowOrder
        for o in 0..<step.out {
            for k in 0..<step.k {
                let weight = Int8(truncatingIfNeeded: weights[o * step.k + k])
                rowOrder[o * step.k + Int(step.positions[k])] = weight
                absolute[o * step.k + Int(step.positions[k])] = Int8(abs(Int(weight)))
            }
        }
        if step.simulate {
            step.ldw = (step.out + 63) / 64 * 64
            step.simulationWeights = [Int16](repeating: 0, count: step.k * step.ldw)
            for o in 0..<step.out { for k in 0..<step.k { step.simulationWeights[k * step.ldw + o] = Int16(weights[o * step.k + k]) } }
        }
        step.kernel = kernel32
        // Per tile: every tile's exact worst case fits a 16-bit lane (the whole dot product without tiles).
        let tileBits = report.tileMinimumBits.max() ?? 1
        let fits16 = tileBits <= 16
        var wants16 = false
        switch choice.int16 {
        case .auto: wants16 = fits16 && !IntegerKernel.vnni.isSupported && choice.accumulation == .auto
        case .none: break
        case .proven: wants16 = fits16
        case .named(let wanted):
            if wanted.contains(layer.name) {
                guard fits16 else {
                    let what = layer.accumulatorTile.map { "exact worst case per tile of \($0)" } ?? "exact worst case"
                    throw A2QError("layer \(layer.name) cannot use the 16-bit kernel: its \(what) needs p_min = \(tileBits) bits, more than 16",
                                   remedy: "only layers that verify proves fit 16 bits (per tile) can accumulate in 16-bit lanes; leave \(layer.name) out of --int16-layers")
                }
                wants16 = true
            }
        }
        if wants16 {
            // 512-bit 16-bit lanes alongside VNNI; 256-bit ones when the 32-bit kernel is AVX2 or scalar.
            let paired: IntegerKernel? = kernel32 == .vnni ? IntegerKernel.bestInt16
                : (IntegerKernel.int16AVX2.isSupported ? .int16AVX2 : nil)
            guard let k16 = paired else {
                throw A2QError("the 16-bit kernel needs AVX2, which this CPU does not have (\(CPU.description))")
            }
            step.kernel = k16
        }
        step.tileStride = step.kp
        if step.kernel.accumulates16Bits, layer.accumulatorTile != nil {
            // Tile-contiguous rows (TileLayout), gathered instead of copied as NHWC runs. Within a
            // tile any order sums the same tile (its bound covers every partial sum in any order):
            // each tile's inputs are sorted by their place in the bordered input, so the gather
            // copies runs (a kernel tap's channels) rather than single bytes.
            let layout = TileLayout(inputs: step.k, tileLength: layer.tileLength)
            let source: [Int32] = (0..<step.k).map { i in
                guard layer.kind == .conv2d else { return step.positions[i] }  // NHWC place of a flattened input
                // (ci, ki, kj) → offset in the zero-bordered window, row pitch (w + 2·pad)·c
                let size = layer.shape[2], pitch = (step.inputWidth + 2 * layer.padding) * step.inputChannels
                let (ci, ki, kj) = (i / (size * size), (i / size) % size, i % size)
                return Int32(ki * pitch + kj * step.inputChannels + ci)
            }
            var laid = [Int8](repeating: 0, count: step.out * layout.rowLength)
            var table = [Int32](repeating: -1, count: layout.rowLength)
            for start in stride(from: 0, to: step.k, by: layout.tileLength) {
                let members = (start..<min(start + layout.tileLength, step.k)).sorted { source[$0] < source[$1] }
                for (rank, i) in members.enumerated() {
                    let p = layout.position(ofWeight: start) + rank
                    table[p] = source[i]
                    for o in 0..<step.out { laid[o * layout.rowLength + p] = Int8(truncatingIfNeeded: weights[o * step.k + i]) }
                }
            }
            var segments: [Int32] = []
            for (p, offset) in table.enumerated() {
                let n = segments.count
                if n >= 3, segments[n - 3] + segments[n - 1] == Int32(p),
                   (offset < 0 && segments[n - 2] < 0) || (offset >= 0 && segments[n - 2] >= 0 && segments[n - 2] + segments[n - 1] == offset) {
                    segments[n - 1] += 1
                } else {
                    segments += [Int32(p), offset, 1]
                }
            }
            step.segments = segments
            step.kp = layout.rowLength
            step.tileStride = layout.stride
            step.packed = IntegerPlan.pack(laid, kernel: step.kernel, out: step.out, k: layout.rowLength)
        } else {
            step.packed = IntegerPlan.pack(rowOrder, kernel: step.kernel, out: step.out, k: step.k)
        }
        if step.simulate { step.packedAbs = IntegerPlan.pack(absolute, kernel: .bestInt32, out: step.out, k: step.k) }
        current = step
        index += 1
        return nil
    }

    /// The layer's weights as a dense `[out, in·kh·kw]` matrix in the original (channel,
    /// kernel row, kernel column) order: a grouped convolution's weights with zeros at the input
    /// channels outside each output channel's group; any other layer's weights as they are.
    static func denseWeights(_ layer: IntegerLayer) -> [Int32] {
        guard layer.groups > 1 else { return layer.weights }
        let (out, k, taps) = (layer.outChannels, layer.fanIn, layer.shape[2] * layer.shape[3])
        let (groupOut, groupIn) = (out / layer.groups, layer.shape[1])
        let denseK = k * layer.groups
        var dense = [Int32](repeating: 0, count: out * denseK)
        for o in 0..<out {
            // Group g's channels are g·groupIn ..< (g+1)·groupIn: one block of K = groupIn·taps.
            let first = (o / groupOut) * groupIn * taps
            for i in 0..<k { dense[o * denseK + first + i] = layer.weights[o * k + i] }
        }
        return dense
    }

    /// ReLU after a layer (after quantisation the integers are unsigned: the identity).
    public mutating func relu() {
        if current != nil { current?.relu = true }
    }

    /// The quantizer that ends the waiting layer's step.
    public mutating func quantize(format: InputFormat, scale: Float) -> String? {
        guard var step = current else { return "a quantizer that does not follow a layer" }
        guard !format.signed, format.bits <= 8 else { return "activation format \(format)" }
        step.quantize = (1 / scale, Float(format.minimum), Float(format.maximum))
        steps.append(step)
        current = nil
        return nil
    }

    /// A max pool on the uint8 integers after a step's quantizer.
    public mutating func maxPool(kernel: Int, stride: Int) -> String? {
        guard !flat, kernel > 0, stride > 0, h >= kernel, w >= kernel else { return "max pool geometry" }
        let pool = IntegerPlan.Pool(kernel: kernel, stride: stride, height: h, width: w)
        if current != nil {
            current?.pools.append(pool)
        } else if !steps.isEmpty {
            steps[steps.count - 1].pools.append(pool)
        } else { return "max pool on the input" }
        (h, w) = ((h - kernel) / stride + 1, (w - kernel) / stride + 1)
        return nil
    }

    /// Flattening (NHWC activations: the next linear layer's weights are permuted instead).
    public mutating func flatten() {
        flat = true
    }
}
