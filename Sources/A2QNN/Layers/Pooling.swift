import A2QCore
import NNKernels

/// Max pooling over NCHW with a square window (no padding); the gradient goes to the
/// first maximum of each window.
public final class MaxPool2d: Layer, @unchecked Sendable {
    public let name: String
    public let kernelSize: Int
    public let stride: Int
    public var computesInputGradient = true
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var argmax: [Int32] = []
    private var inputShape: [Int] = []

    public init(name: String, kernelSize: Int, stride: Int? = nil) {
        self.name = name
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let shape = input.shape
        precondition(shape.count == 4 && shape[2] >= kernelSize && shape[3] >= kernelSize,
                     "\(name): input \(describe(shape)) does not fit a \(kernelSize)×\(kernelSize) max pool")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let ho = (h - kernelSize) / stride + 1, wo = (w - kernelSize) / stride + 1
        if shape != inputShape {
            inputShape = shape
            output.reshape([n, c, ho, wo])
            inputGradient.reshape(shape)
            argmax = Array(repeating: 0, count: n * c * ho * wo)
        }
        let x = input.data, y = output.data
        argmax.withUnsafeMutableBufferPointer { index in
            if kernelSize == 2 && stride == 2, let at = index.baseAddress {
                // The common 2×2/2 case: branch-free, vectorised (C).
                a2qn_maxpool2_forward(x, y, at, Int64(n * c), Int64(h), Int64(w))
                return
            }
            for plane in 0..<(n * c) {
                let source = x + plane * h * w
                for oh in 0..<ho {
                    for ow in 0..<wo {
                        var best = -Float.infinity, bestIndex = 0
                        for i in 0..<kernelSize {
                            let row = (oh * stride + i) * w
                            for j in 0..<kernelSize {
                                let at = row + ow * stride + j
                                if source[at] > best { best = source[at]; bestIndex = at }
                            }
                        }
                        let o = (plane * ho + oh) * wo + ow
                        y[o] = best
                        index[o] = Int32(bestIndex)
                    }
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let (h, w) = (inputShape[2], inputShape[3])
        let planeOut = output.shape[2] * output.shape[3]
        let dy = outputGradient.data, dx = inputGradient.data
        if kernelSize == 2 && stride == 2 {
            argmax.withUnsafeBufferPointer { index in
                guard let at = index.baseAddress else { return }
                a2qn_maxpool2_backward(dy, at, dx, Int64(inputShape[0] * inputShape[1]), Int64(h), Int64(w))
            }
            return inputGradient
        }
        inputGradient.fill(0)
        argmax.withUnsafeBufferPointer { index in
            for o in 0..<output.count {
                let plane = o / planeOut
                dx[plane * h * w + Int(index[o])] += dy[o]
            }
        }
        return inputGradient
    }
}

/// Global average pooling `[N, C, H, W] → [N, C]`.
public final class GlobalAvgPool: Layer, @unchecked Sendable {
    public let name: String
    public var computesInputGradient = true
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int] = []

    public init(name: String) { self.name = name }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let shape = input.shape
        precondition(shape.count == 4, "\(name): input \(describe(shape)) is not [N, C, H, W]")
        if shape != inputShape {
            inputShape = shape
            output.reshape([shape[0], shape[1]])
            inputGradient.reshape(shape)
        }
        let plane = shape[2] * shape[3], x = input.data, y = output.data
        for p in 0..<(shape[0] * shape[1]) {
            var sum: Float = 0
            for i in 0..<plane { sum += x[p * plane + i] }
            y[p] = sum / Float(plane)
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let plane = inputShape[2] * inputShape[3], dy = outputGradient.data, dx = inputGradient.data
        for p in 0..<output.count {
            let g = dy[p] / Float(plane)
            for i in 0..<plane { dx[p * plane + i] = g }
        }
        return inputGradient
    }
}

/// `[N, ...] → [N, rest]` as a view of the input (no copy); the gradient is a view too.
public final class Flatten: Layer, @unchecked Sendable {
    public let name: String
    public var computesInputGradient = true
    private var output: Tensor?
    private var inputGradient: Tensor?
    private var inputShape: [Int] = []
    private var flatShape: [Int] = []

    public init(name: String) { self.name = name }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        if input.shape != inputShape {
            inputShape = input.shape
            flatShape = [input.shape[0], input.count / max(input.shape[0], 1)]
        }
        let view = output ?? Tensor(viewing: input, shape: flatShape)
        view.rebind(to: input, shape: flatShape)
        output = view
        return view
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        precondition(outputGradient.count == inputShape.reduce(1, *),
                     "\(name): gradient \(describe(outputGradient.shape)) does not match input \(describe(inputShape))")
        let view = inputGradient ?? Tensor(viewing: outputGradient, shape: inputShape)
        view.rebind(to: outputGradient, shape: inputShape)
        inputGradient = view
        return view
    }
}
