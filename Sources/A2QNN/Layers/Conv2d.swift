import A2QCore
import A2QQuant
import NNKernels

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
        a2qn_rows_to_nchw(product.data, bias.map { UnsafePointer(parameters.value($0)) }, output.data, Int64(batch),
                          Int64(outChannels), Int64(plane))
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard input != nil, let w = effectiveWeight else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let (batch, _, _, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        // dY [out, N·plane] from NCHW, and the bias gradient on the way.
        let p = product.data
        a2qn_nchw_to_rows(outputGradient.data, p, bias.map { parameters.gradient($0) }, Int64(batch), Int64(outChannels), Int64(plane))
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
    private func im2col(_ x: UnsafePointer<Float>) {
        let (batch, h, wIn, ho, wo) = geometry
        precondition(kernelHeight == kernelWidth, "\(name): square kernels only")
        a2qn_im2col(x, columns.data, Int64(batch), Int64(inChannels), Int64(h), Int64(wIn), Int64(kernelHeight),
                    Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }

    private func col2im(_ dx: UnsafeMutablePointer<Float>) {
        let (batch, h, wIn, ho, wo) = geometry
        a2qn_col2im(columns.data, dx, Int64(batch), Int64(inChannels), Int64(h), Int64(wIn), Int64(kernelHeight),
                    Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }
}
