import A2QCore
import A2QQuant
import ConvKernels
import NNKernels
#if canImport(Glibc)
import Glibc
#endif

/// 2-D convolution over NCHW inputs with square stride and padding, weight
/// `[out, in, kh, kw]`, bias `[out]`, and a pluggable per-channel weight quantizer.
///
/// Two implementations (`Conv2d.Backend`; the process default is set by `A2Q_CONV`):
///
/// **oneDNN** (the default): forward, backward-data and backward-weights primitives per input
/// shape (`ConvKernels`), which run direct convolutions in oneDNN's blocked layouts; the NCHW
/// activations and OIHW weights are reordered in and out around them, so the layer's interface
/// and every other layer stay plain NCHW.
///
/// **im2col**: the batch is processed in chunks of images whose im2col columns
/// `[K, chunk·Ho·Wo]` (`K = in·kh·kw`) fit in the core's L2 cache (about 512 KiB): per chunk one
/// im2col and one `sgemm` `W_q [out, K] · columns` into the chunk's columns of the product
/// `[out, N·Ho·Wo]`, then one scatter into NCHW with the bias. Backward recomputes each chunk's
/// columns (cheaper from cache than keeping the whole batch's in memory) for the weight-gradient
/// `sgemm` (accumulated over chunks in order) and the column-gradient `sgemm` + col2im.
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
    /// The implementation this layer asks for (`defaultBackend` unless given at init).
    public let backend: Backend

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let columns = Tensor(shape: [0])  // one chunk's im2col, [K, chunk·Ho·Wo]
    private let product = Tensor(shape: [0])  // [out, N·Ho·Wo], forward result and dY in backward
    private var input: Tensor?
    private var effectiveWeight: UnsafePointer<Float>?
    private var geometry = (batch: 0, height: 0, width: 0, outHeight: 0, outWidth: 0)
    /// Images per chunk (columns of at most `chunkFloats` values).
    private var chunk = 1
    static let chunkFloats = 131_072
    private var cachedInputShape: [Int] = []
    /// oneDNN primitives by input shape (training and evaluation batches differ); `primitives`
    /// is the current shape's, nil on the im2col path.
    private var primitivesByShape: [[Int]: OpaquePointer] = [:]
    private var primitives: OpaquePointer?

    /// The convolution implementation of this process.
    public enum Backend: String, Sendable {
        /// oneDNN's convolution primitives (blocked layouts inside the layer).
        case onednn
        /// a2q's im2col + sgemm over L2-sized chunks of images.
        case im2col
    }

    /// The process's default, from `A2Q_CONV` (default oneDNN).
    public static let defaultBackend: Backend = {
        guard let value = getenv("A2Q_CONV").map({ String(cString: $0) }), !value.isEmpty else { return .onednn }
        guard let backend = Backend(rawValue: value.lowercased()) else {
            printError("a2q: warning: A2Q_CONV=\(value) is not onednn or im2col; using onednn")
            return .onednn
        }
        return backend
    }()

    /// What runs this layer's convolutions at its current shape: oneDNN's implementations
    /// ("forward / backward data / backward weights") or "im2col + sgemm".
    public var implementation: String {
        guard let primitives else { return "im2col + sgemm" }
        return String(cString: a2qc_conv_implementation(primitives))
    }

    /// `[N, out, Ho, Wo]` of the last forward pass (empty before the first).
    public var outputShape: [Int] { output.shape }

    /// K = in · kh · kw, the dot-product length per output channel.
    public var fanIn: Int { inChannels * kernelHeight * kernelWidth }

    public init(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, bias: Bool = true, quantizer spec: WeightQuantizerSpec = .float,
                input format: InputFormat? = nil, backend: Backend = Conv2d.defaultBackend,
                layout: inout ParameterLayout) throws {
        precondition(kernelSize > 0 && stride > 0 && padding >= 0, "\(name): bad conv geometry")
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernelHeight = kernelSize
        kernelWidth = kernelSize
        self.stride = stride
        self.padding = padding
        self.backend = backend
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
        inputGradient.reshape(shape)
        cachedInputShape = shape
        primitives = backend == .onednn ? oneDNNPrimitives(shape: shape) : nil
        if primitives == nil {
            chunk = max(1, min(shape[0], Conv2d.chunkFloats / max(fanIn * ho * wo, 1)))
            columns.reshape([fanIn, chunk * ho * wo])
            product.reshape([outChannels, shape[0] * ho * wo])
        }
    }

    /// The primitives for this input shape, built on first use (at most four shapes are kept).
    /// nil, after one warning, if oneDNN cannot build them: the layer then runs on im2col.
    private func oneDNNPrimitives(shape: [Int]) -> OpaquePointer? {
        if let cached = primitivesByShape[shape] { return cached }
        if primitivesByShape.count >= 4 { releasePrimitives() }
        var message = [CChar](repeating: 0, count: 512)
        guard let created = a2qc_conv_create(Int64(shape[0]), Int64(inChannels), Int64(shape[2]), Int64(shape[3]),
                                             Int64(outChannels), Int64(kernelHeight), Int64(stride), Int64(padding),
                                             bias == nil ? 0 : 1, &message, Int64(message.count)) else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            printError("warning: \(name): \(reason); this layer runs on im2col + sgemm")
            return nil
        }
        primitivesByShape[shape] = created
        return created
    }

    private func releasePrimitives() {
        for primitives in primitivesByShape.values { a2qc_conv_destroy(primitives) }
        primitivesByShape.removeAll()
    }

    deinit { releasePrimitives() }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        if input.shape != cachedInputShape { configure(for: input.shape) }
        self.input = input
        let w = quantizer.forward(parameters)
        effectiveWeight = w
        if let primitives {
            let status = a2qc_conv_forward(primitives, input.data, w, bias.map { UnsafePointer(parameters.value($0)) }, output.data)
            precondition(status == 0, "\(name): oneDNN convolution forward failed with status \(status)")
            return output
        }
        let (batch, _, _, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        var first = 0
        while first < batch {
            let images = min(chunk, batch - first), width = images * plane
            im2col(input.data, first: first, images: images)
            BLAS.gemm(transposeA: false, transposeB: false, m: outChannels, n: width, k: fanIn,
                      a: w, lda: fanIn, b: columns.data, ldb: width, beta: 0, c: product.data + first * plane, ldc: columnsCount)
            first += images
        }
        a2qn_rows_to_nchw(product.data, bias.map { UnsafePointer(parameters.value($0)) }, output.data, Int64(batch),
                          Int64(outChannels), Int64(plane))
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input, let w = effectiveWeight else { preconditionFailure("\(name): backward before forward") }
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        if let primitives {
            let target = quantizer.weightGradientTarget(parameters)
            let status = a2qc_conv_backward(primitives, outputGradient.data, w, target.pointer, target.accumulate ? 1 : 0,
                                            bias.map { parameters.gradient($0) },
                                            computesInputGradient ? inputGradient.data : nil)
            precondition(status == 0, "\(name): oneDNN convolution backward failed with status \(status)")
            quantizer.backward(parameters)
            return inputGradient
        }
        let (batch, _, _, ho, wo) = geometry
        let plane = ho * wo, columnsCount = batch * plane
        // dY [out, N·plane] from NCHW, and the bias gradient on the way.
        let p = product.data
        a2qn_nchw_to_rows(outputGradient.data, p, bias.map { parameters.gradient($0) }, Int64(batch), Int64(outChannels), Int64(plane))
        let target = quantizer.weightGradientTarget(parameters)
        var first = 0
        while first < batch {
            let images = min(chunk, batch - first), width = images * plane
            im2col(input.data, first: first, images: images)
            BLAS.gemm(transposeA: false, transposeB: true, m: outChannels, n: fanIn, k: width,
                      a: p + first * plane, lda: columnsCount, b: columns.data, ldb: width,
                      beta: target.accumulate || first > 0 ? 1 : 0, c: target.pointer, ldc: fanIn)
            if computesInputGradient {
                BLAS.gemm(transposeA: true, transposeB: false, m: fanIn, n: width, k: outChannels,
                          a: w, lda: fanIn, b: p + first * plane, ldb: columnsCount, beta: 0, c: columns.data, ldc: width)
                col2im(inputGradient.data, first: first, images: images)
            }
            first += images
        }
        quantizer.backward(parameters)
        return inputGradient
    }

    /// im2col of images `first ..< first + images` into `columns` (`[K, images·Ho·Wo]`).
    private func im2col(_ x: UnsafePointer<Float>, first: Int, images: Int) {
        let (_, h, wIn, ho, wo) = geometry
        precondition(kernelHeight == kernelWidth, "\(name): square kernels only")
        a2qn_im2col(x + first * inChannels * h * wIn, columns.data, Int64(images), Int64(inChannels), Int64(h), Int64(wIn),
                    Int64(kernelHeight), Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }

    /// col2im of `columns` into the input gradient of images `first ..< first + images`.
    private func col2im(_ dx: UnsafeMutablePointer<Float>, first: Int, images: Int) {
        let (_, h, wIn, ho, wo) = geometry
        a2qn_col2im(columns.data, dx + first * inChannels * h * wIn, Int64(images), Int64(inChannels), Int64(h), Int64(wIn),
                    Int64(kernelHeight), Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }
}
