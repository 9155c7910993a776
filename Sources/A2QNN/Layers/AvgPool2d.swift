import A2QCore

/// Average pooling over NCHW with a square `kernel × kernel` window at `stride`, with
/// `padding` zeros on every side that count in the divisor (PyTorch's `nn.AvgPool2d` default,
/// `count_include_pad=True`; ONNX `AveragePool` with `count_include_pad = 1`): every output is
/// the window's sum divided by `kernel²`, padded positions adding 0. Floor mode: the output is
/// `(H + 2·padding − kernel) / stride + 1` high (and wide likewise).
public final class AvgPool2d: Layer, @unchecked Sendable {
    public let name: String
    public let kernelSize: Int
    public let stride: Int
    /// Zeros added on each side (at most `kernelSize / 2`, as in PyTorch).
    public let padding: Int
    public var computesInputGradient = true
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int] = []

    /// `stride` defaults to the kernel size (PyTorch's default).
    public init(name: String, kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        precondition(kernelSize > 0 && (stride ?? kernelSize) > 0 && padding >= 0 && padding <= kernelSize / 2,
                     "\(name): kernel \(kernelSize), stride \(stride ?? kernelSize), padding \(padding) (padding at most kernel/2)")
        self.name = name
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }

    /// The output height (or width) for an input of `size`.
    public func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernelSize) / stride + 1 }

    /// The input rows (or columns) `first ..< last` that output row `index` covers, clipped to
    /// the image (the rest of the window is padding).
    private func span(_ index: Int, size: Int) -> (first: Int, last: Int) {
        let start = index * stride - padding
        return (max(start, 0), min(start + kernelSize, size))
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let shape = input.shape
        precondition(shape.count == 4 && shape[2] + 2 * padding >= kernelSize && shape[3] + 2 * padding >= kernelSize,
                     "\(name): input \(describe(shape)) does not fit a \(kernelSize)×\(kernelSize) average pool with padding \(padding)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let ho = outputSize(h), wo = outputSize(w)
        if shape != inputShape {
            inputShape = shape
            output.reshape([n, c, ho, wo])
            inputGradient.reshape(shape)
        }
        let x = input.data, y = output.data, norm = 1 / Float(kernelSize * kernelSize)
        for plane in 0..<(n * c) {
            let source = x + plane * h * w
            for oh in 0..<ho {
                let rows = span(oh, size: h)
                for ow in 0..<wo {
                    let columns = span(ow, size: w)
                    var sum: Float = 0
                    for i in rows.first..<max(rows.last, rows.first) {
                        for j in columns.first..<max(columns.last, columns.first) { sum += source[i * w + j] }
                    }
                    y[(plane * ho + oh) * wo + ow] = sum * norm
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let (ho, wo) = (output.shape[2], output.shape[3])
        let dy = outputGradient.data, dx = inputGradient.data, norm = 1 / Float(kernelSize * kernelSize)
        inputGradient.fill(0)
        for plane in 0..<(n * c) {
            let destination = dx + plane * h * w
            for oh in 0..<ho {
                let rows = span(oh, size: h)
                for ow in 0..<wo {
                    let columns = span(ow, size: w)
                    let g = dy[(plane * ho + oh) * wo + ow] * norm
                    for i in rows.first..<max(rows.last, rows.first) {
                        for j in columns.first..<max(columns.last, columns.first) { destination[i * w + j] += g }
                    }
                }
            }
        }
        return inputGradient
    }
}
