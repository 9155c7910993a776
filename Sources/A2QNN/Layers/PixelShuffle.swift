import A2QCore

/// Pixel shuffle (depth to space, ESPCN's upsampling): `[N, C·r², H, W] → [N, C, H·r, W·r]`
/// with `y[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]` — PyTorch's `PixelShuffle(r)`
/// and ONNX's `DepthToSpace` in `CRD` mode. A permutation: the backward pass is its inverse.
public final class PixelShuffle: Layer, @unchecked Sendable {
    public let name: String
    public let factor: Int
    public var computesInputGradient = true
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int] = []

    public init(name: String, factor: Int) {
        precondition(factor >= 1, "PixelShuffle \(name): factor \(factor)")
        self.name = name
        self.factor = factor
    }

    /// The output shape of one example `[C·r², H, W]` (nil when the channels are not a
    /// multiple of r²).
    public static func outputShape(_ shape: [Int], factor r: Int) -> [Int]? {
        guard shape.count == 3, r >= 1, shape[0] % (r * r) == 0 else { return nil }
        return [shape[0] / (r * r), shape[1] * r, shape[2] * r]
    }

    /// Moves `n` examples of `[C·r², H, W]` into `[C, H·r, W·r]` (`inverse`: back).
    public static func shuffle(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, n: Int, channels c: Int,
                               height h: Int, width w: Int, factor r: Int, inverse: Bool = false) {
        let (ho, wo) = (h * r, w * r)
        for b in 0..<n {
            for co in 0..<c {
                for i in 0..<r {
                    for j in 0..<r {
                        let source = ((b * c + co) * r * r + i * r + j) * h * w
                        for hh in 0..<h {
                            let destination = ((b * c + co) * ho + hh * r + i) * wo + j
                            for ww in 0..<w {
                                if inverse {
                                    y[source + hh * w + ww] = x[destination + ww * r]
                                } else {
                                    y[destination + ww * r] = x[source + hh * w + ww]
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let shape = input.shape
        guard shape.count == 4, let out = Self.outputShape(Array(shape.dropFirst()), factor: factor) else {
            preconditionFailure("\(name): input \(describe(shape)) is not [N, C·\(factor * factor), H, W]")
        }
        if shape != inputShape {
            inputShape = shape
            output.reshape([shape[0]] + out)
            inputGradient.reshape(shape)
        }
        Self.shuffle(input.data, output.data, n: shape[0], channels: out[0], height: shape[2], width: shape[3], factor: factor)
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        precondition(outputGradient.shape == output.shape,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        Self.shuffle(outputGradient.data, inputGradient.data, n: inputShape[0], channels: output.shape[1], height: inputShape[2],
                     width: inputShape[3], factor: factor, inverse: true)
        return inputGradient
    }
}
