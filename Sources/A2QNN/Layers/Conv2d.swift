import A2QCore
import A2QQuant
import ConvKernels
import NNKernels
#if canImport(Glibc)
import Glibc
#endif

/// 2-D convolution over NCHW inputs with square stride and padding, weight
/// `[out, in/groups, kh, kw]`, bias `[out]`, and a pluggable per-channel weight quantizer.
///
/// **Groups** (PyTorch's and ONNX's `groups`/`group`): the input and output channels are cut
/// into `groups` equal, consecutive parts, and output channel `o` sees only the input channels
/// of its group `g = o / (out/groups)`; `groups == in` is a depthwise convolution. Each output
/// channel's dot product then has `K = (in/groups)·kh·kw` inputs, the `fanIn` its weight
/// quantizer constrains.
///
/// Two implementations (`Conv2d.Backend`; the process default is set by `A2Q_CONV`):
///
/// **oneDNN** (the default): forward, backward-data and backward-weights primitives per input
/// shape (`ConvKernels`), which run direct convolutions in oneDNN's blocked layouts; the NCHW
/// activations and OIHW weights are reordered in and out around them, so the layer's interface
/// and every other layer stay plain NCHW.
///
/// oneDNN runs grouped and depthwise convolutions natively (5-D `goihw` weights, the same bytes).
///
/// **im2col**: the batch is processed in chunks of images whose im2col columns
/// `[K, chunk·Ho·Wo]` (`K = (in/groups)·kh·kw`) fit in the core's L2 cache (about 512 KiB): per
/// chunk and group one im2col of the group's input channels and one `sgemm`
/// `W_q[group] [out/groups, K] · columns` into the group's rows and the chunk's columns of the
/// product `[out, N·Ho·Wo]`, then one scatter into NCHW with the bias. Backward recomputes each
/// chunk's columns per group (cheaper from cache than keeping the whole batch's in memory) for
/// the weight-gradient `sgemm` (accumulated over chunks in order) and the column-gradient
/// `sgemm` + col2im. A group's weights, product rows, gradient rows and input channels are
/// views (pointer offsets) into the layer's buffers: nothing is copied or allocated per group.
public final class Conv2d: Layer, @unchecked Sendable {
    public let name: String
    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let stride: Int
    public let padding: Int
    /// Groups of input and output channels (1: an ordinary convolution; `inChannels`: depthwise).
    public let groups: Int
    public let weight: ParameterView
    public let bias: ParameterView?
    public let quantizer: WeightQuantizer
    public var computesInputGradient = true
    public var hasParameters: Bool { true }
    /// The implementation this layer asks for (`defaultBackend` unless given at init).
    public let backend: Backend

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let columns = Tensor(shape: [0])  // one chunk's im2col of one group, [K, chunk·Ho·Wo]
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

    /// K = (in / groups) · kh · kw, the dot-product length per output channel.
    public var fanIn: Int { inChannels / groups * kernelHeight * kernelWidth }

    /// Input channels per group (`weight.shape[1]`).
    public var groupInChannels: Int { inChannels / groups }
    /// Output channels per group: group g's are `g·groupOutChannels ..< (g+1)·groupOutChannels`.
    public var groupOutChannels: Int { outChannels / groups }

    /// A convolution `inChannels → outChannels` with a square `kernelSize` kernel; `groups` must
    /// divide both channel counts (the model builder checks it for users).
    public init(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, groups: Int = 1, bias: Bool = true, quantizer spec: WeightQuantizerSpec = .float,
                input format: InputFormat? = nil, backend: Backend = Conv2d.defaultBackend,
                layout: inout ParameterLayout) throws {
        precondition(kernelSize > 0 && stride > 0 && padding >= 0, "\(name): bad conv geometry")
        precondition(groups > 0 && inChannels % groups == 0 && outChannels % groups == 0,
                     "\(name): \(groups) groups do not divide \(inChannels) input and \(outChannels) output channels")
        self.name = name
        self.groups = groups
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernelHeight = kernelSize
        kernelWidth = kernelSize
        self.stride = stride
        self.padding = padding
        self.backend = backend
        weight = layout.declare("\(name).weight", shape: [outChannels, inChannels / groups, kernelSize, kernelSize], role: .weight)
        self.bias = bias ? layout.declare("\(name).bias", shape: [outChannels], role: .bias) : nil
        quantizer = try WeightQuantizer(spec: spec, layerName: name, weight: weight, outChannels: outChannels,
                                        fanIn: inChannels / groups * kernelSize * kernelSize, input: format, layout: &layout)
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
                                             Int64(outChannels), Int64(kernelHeight), Int64(stride), Int64(padding), Int64(groups),
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
        let (k, groupOut) = (fanIn, groupOutChannels)
        var first = 0
        while first < batch {
            let images = min(chunk, batch - first), width = images * plane
            for g in 0..<groups {
                im2col(input.data, group: g, first: first, images: images)
                BLAS.gemm(transposeA: false, transposeB: false, m: groupOut, n: width, k: k,
                          a: w + g * groupOut * k, lda: k, b: columns.data, ldb: width, beta: 0,
                          c: product.data + g * groupOut * columnsCount + first * plane, ldc: columnsCount)
            }
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
        let (k, groupOut) = (fanIn, groupOutChannels)
        var first = 0
        while first < batch {
            let images = min(chunk, batch - first), width = images * plane
            for g in 0..<groups {
                // Group g: dY rows and weight (gradient) rows g·out/groups ..< (g+1)·out/groups.
                let dy = p + g * groupOut * columnsCount + first * plane
                im2col(input.data, group: g, first: first, images: images)
                BLAS.gemm(transposeA: false, transposeB: true, m: groupOut, n: k, k: width,
                          a: dy, lda: columnsCount, b: columns.data, ldb: width,
                          beta: target.accumulate || first > 0 ? 1 : 0, c: target.pointer + g * groupOut * k, ldc: k)
                if computesInputGradient {
                    BLAS.gemm(transposeA: true, transposeB: false, m: k, n: width, k: groupOut,
                              a: w + g * groupOut * k, lda: k, b: dy, ldb: columnsCount, beta: 0, c: columns.data, ldc: width)
                    col2im(inputGradient.data, group: g, first: first, images: images)
                }
            }
            first += images
        }
        quantizer.backward(parameters)
        return inputGradient
    }

    /// im2col of group `group`'s input channels of images `first ..< first + images` into
    /// `columns` (`[K, images·Ho·Wo]`).
    private func im2col(_ x: UnsafePointer<Float>, group: Int, first: Int, images: Int) {
        let (_, h, wIn, ho, wo) = geometry
        precondition(kernelHeight == kernelWidth, "\(name): square kernels only")
        let channels = groupInChannels
        a2qn_im2col(x + (first * inChannels + group * channels) * h * wIn, columns.data, Int64(images), Int64(channels),
                    Int64(inChannels), Int64(h), Int64(wIn), Int64(kernelHeight), Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }

    /// col2im of `columns` into group `group`'s channels of the input gradient of images
    /// `first ..< first + images`.
    private func col2im(_ dx: UnsafeMutablePointer<Float>, group: Int, first: Int, images: Int) {
        let (_, h, wIn, ho, wo) = geometry
        let channels = groupInChannels
        a2qn_col2im(columns.data, dx + (first * inChannels + group * channels) * h * wIn, Int64(images), Int64(channels),
                    Int64(inChannels), Int64(h), Int64(wIn), Int64(kernelHeight), Int64(stride), Int64(padding), Int64(ho), Int64(wo))
    }
}
