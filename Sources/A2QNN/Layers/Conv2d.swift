import A2QCore
import A2QQuant

/// 2-D convolution over NCHW inputs with square stride and padding, weight
/// `[out, in, kh, kw]`, bias `[out]`, and a pluggable per-channel weight quantizer.
///
/// Implementation: one im2col over the whole batch into `col` `[K, N·Ho·Wo]`
/// (`K = in·kh·kw`), one `sgemm` `W_q [out, K] · col`, then a scatter into NCHW with the bias.
/// Backward: the same two large `sgemm`s (weight gradient, column gradient) and a col2im.
public final class Conv2d: Layer, @unchecked Sendable {
    public let name: String
    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let stride: Int
    public let padding: Int
    public let weight: ParameterView
    public let bias: ParameterView?
    public let quantizer: WeightQuantizer
    public var computesInputGradient = true
    public var hasParameters: Bool { true }

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let columns = Tensor(shape: [0])
    private let product = Tensor(shape: [0])  // [out, N·Ho·Wo], forward result and dY in backward
    private var input: Tensor?
    private var effectiveWeight: UnsafePointer<Float>?
    private var geometry = (batch: 0, height: 0, width: 0, outHeight: 0, outWidth: 0)
    private var cachedInputShape: [Int] = []

    /// K = in · kh · kw, the dot-product length per output channel.
    public var fanIn: Int { inChannels * kernelHeight * kernelWidth }

    public init(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, bias: Bool = true, quantizer spec: WeightQuantizerSpec = .float,
                input format: InputFormat? = nil, layout: inout ParameterLayout) throws {
        precondition(kernelSize > 0 && stride > 0 && padding >= 0, "\(name): bad conv geometry")
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernelHeight = kernelSize
        kernelWidth = kernelSize
        self.stride = stride
        self.padding = padding
        weight = layout.declare("\(name).weight", shape: [outChannels, inChannels, kernelSize, kernelSize], role: .weight)
        self.bias = bias ? layout.declare("\(name).bias", shape: [outChannels], role: .bias) : nil
        quantizer = try WeightQuantizer(spec: spec, layerName: name, weight: weight, outChannels: outChannels,
                                        fanIn: inChannels * kernelSize * kernelSize, input: format, layout: &layout)
    }

    /// PyTorch's default: U(±1/sqrt(K)) for weight and bias.
    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        Initializer.torchDefault.fill(parameters.value(weight), count: weight.count, fanIn: fanIn,
                                      fanOut: outChannels, generator: &generator)
        if let bias {
            Initializer.torchDefault.fill(parameters.value(bias), count: bias.count, fanIn: fanIn,
                                          fanOut: outChannels, generator: &generator)
        }
        quantizer.initializeFromFloatWeights(parameters)
    }

    /// Output spatial size for an input size.
    public func outputSize(height: Int, width: Int) -> (Int, Int) {
        ((height + 2 * padding - kernelHeight) / stride + 1, (width + 2 * padding - kernelWidth) / stride + 1)
    }

    private func configure(for shape: [Int]) {
        precondition(shape.count == 4 && shape[1] == inChannels,
                     "\(name): input \(describe(shape)) does not fit Conv2d(\(inChannels) → \(outChannels)), expected [N, \(inChannels), H, W]")
        let (ho, wo) = outputSize(height: shape[2], width: shape[3])
        precondition(ho > 0 && wo > 0, "\(name): input \(describe(shape)) is smaller than the \(kernelHeight)×\(kernelWidth) kernel")
        geometry = (shape[0], shape[2], shape[3], ho, wo)
        output.reshape([shape[0], outChannels, ho, wo])
        columns.reshape([fanIn, shape[0] * ho * wo])
        product.reshape([outChannels, shape[0] * ho * wo])
        inputGradient.reshape(shape)
        cachedInputShape = shape
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        if input.shape != cachedInputShape { configure(for: input.shape) }
        self.input = input
        let w = quantizer.forward(parameters)
        effectiveWeight = w
        let (batch, _, _, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        im2col(input.data)
        BLAS.gemm(transposeA: false, transposeB: false, m: outChannels, n: columnsCount, k: fanIn,
                  a: w, lda: fanIn, b: columns.data, ldb: columnsCount, beta: 0, c: product.data, ldc: columnsCount)
        let y = output.data, p = product.data
        let b = bias.map { UnsafePointer(parameters.value($0)) }
        for n in 0..<batch {
            for o in 0..<outChannels {
                let source = p + o * columnsCount + n * plane
                let destination = y + (n * outChannels + o) * plane
                let shift = b?[o] ?? 0
                for i in 0..<plane { destination[i] = source[i] + shift }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard input != nil, let w = effectiveWeight else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let (batch, _, _, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        // dY [out, N·plane] from NCHW, and the bias gradient on the way.
        let dy = outputGradient.data, p = product.data
        let db = bias.map { parameters.gradient($0) }
        for n in 0..<batch {
            for o in 0..<outChannels {
                let source = dy + (n * outChannels + o) * plane
                let destination = p + o * columnsCount + n * plane
                var sum: Float = 0
                for i in 0..<plane { destination[i] = source[i]; sum += source[i] }
                db?[o] += sum
            }
        }
        let target = quantizer.weightGradientTarget(parameters)
        BLAS.gemm(transposeA: false, transposeB: true, m: outChannels, n: fanIn, k: columnsCount,
                  a: p, lda: columnsCount, b: columns.data, ldb: columnsCount,
                  beta: target.accumulate ? 1 : 0, c: target.pointer, ldc: fanIn)
        quantizer.backward(parameters)
        if computesInputGradient {
            BLAS.gemm(transposeA: true, transposeB: false, m: fanIn, n: columnsCount, k: outChannels,
                      a: w, lda: fanIn, b: p, ldb: columnsCount, beta: 0, c: columns.data, ldc: columnsCount)
            col2im(inputGradient.data)
        }
        return inputGradient
    }

    /// The output columns `ow` whose input column `ow·s − p + j` lies inside `[0, W)`.
    @inline(__always)
    private func validColumns(_ j: Int, width wIn: Int, outWidth wo: Int) -> Range<Int> {
        // ow·s − p + j ≥ 0  ⇔  ow ≥ ceil((p − j)/s);  ow·s − p + j ≤ W − 1  ⇔  ow ≤ floor((W − 1 + p − j)/s).
        let low = max(0, (padding - j + stride - 1) / stride)
        let highValue = wIn - 1 + padding - j
        let high = highValue < 0 ? -1 : min(wo - 1, highValue / stride)
        return low <= high ? low..<(high + 1) : 0..<0
    }

    /// col[(c·kh + i)·kw + j, n·Ho·Wo + oh·Wo + ow] = x[n, c, oh·s − p + i, ow·s − p + j] (0 outside).
    private func im2col(_ x: UnsafePointer<Float>) {
        let (batch, h, wIn, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        let col = columns.data
        for j in 0..<kernelWidth {
            let valid = validColumns(j, width: wIn, outWidth: wo)
            for c in 0..<inChannels {
                for i in 0..<kernelHeight {
                    let row = col + ((c * kernelHeight + i) * kernelWidth + j) * columnsCount
                    for n in 0..<batch {
                        let image = x + (n * inChannels + c) * h * wIn
                        let destinationPlane = row + n * plane
                        for oh in 0..<ho {
                            let ih = oh * stride - padding + i
                            let destination = destinationPlane + oh * wo
                            guard ih >= 0 && ih < h, !valid.isEmpty else {
                                destination.update(repeating: 0, count: wo)
                                continue
                            }
                            if valid.lowerBound > 0 { destination.update(repeating: 0, count: valid.lowerBound) }
                            if valid.upperBound < wo { (destination + valid.upperBound).update(repeating: 0, count: wo - valid.upperBound) }
                            let source = image + ih * wIn - padding + j
                            if stride == 1 {
                                (destination + valid.lowerBound).update(from: source + valid.lowerBound, count: valid.count)
                            } else {
                                for ow in valid { destination[ow] = source[ow * stride] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: scatters-adds column gradients back into NCHW.
    private func col2im(_ dx: UnsafeMutablePointer<Float>) {
        let (batch, h, wIn, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        let col = UnsafePointer(columns.data)
        dx.update(repeating: 0, count: batch * inChannels * h * wIn)
        for j in 0..<kernelWidth {
            let valid = validColumns(j, width: wIn, outWidth: wo)
            guard !valid.isEmpty else { continue }
            for c in 0..<inChannels {
                for i in 0..<kernelHeight {
                    let row = col + ((c * kernelHeight + i) * kernelWidth + j) * columnsCount
                    for n in 0..<batch {
                        let image = dx + (n * inChannels + c) * h * wIn
                        let sourcePlane = row + n * plane
                        for oh in 0..<ho {
                            let ih = oh * stride - padding + i
                            guard ih >= 0 && ih < h else { continue }
                            let source = sourcePlane + oh * wo
                            let destination = image + ih * wIn - padding + j
                            for ow in valid { destination[ow * stride] += source[ow] }
                        }
                    }
                }
            }
        }
    }
}
