import A2QCore
import A2QNN

/// How a model's float weights start (`"init"` in a model file; the default is each layer's own
/// initialiser).
public enum ModelInitialization: String, Sendable, Codable, CaseIterable {
    /// Every layer's own initialiser (PyTorch's defaults).
    case layers
    /// Restoration chains (conv → relu → quant …, conv, pixelshuffle r): the network starts as
    /// bilinear upsampling. The first C channels of every hidden convolution copy the image's C
    /// channels (a centre tap of 1: the pixels are non-negative, so the ReLUs pass them), the
    /// last convolution maps them to each of the r² sub-pixels with the bilinear weights of that
    /// sub-pixel's position (PyTorch's `align_corners=False` geometry), and its weights from
    /// the other channels start at a tenth of their random values. Training then learns the
    /// detail on top of an interpolation instead of the interpolation itself (`BilinearPath`).
    case bilinear
}

/// The `bilinear` initialisation (`ModelInitialization.bilinear`): the check that a model is a
/// chain it applies to, and the weights.
public enum BilinearPath {
    /// Throws unless `description` is a restoration chain of `conv` (stride 1, odd kernel,
    /// "same" padding), `relu` and `quant` layers whose hidden convolutions have at least
    /// `channels` outputs, ending in a conv of at least 3×3 with `channels`·r² outputs, a
    /// `pixelshuffle` by r and optionally a `quant`.
    public static func check(_ description: ModelDescription, channels: Int) throws {
        let remedy = "use \"init\": \"layers\" (the default) for other networks"
        guard description.task == .restoration else {
            throw A2QError("\(description.name): \"init\": \"bilinear\" is for restoration models, not \(description.task.rawValue)", remedy: remedy)
        }
        var convs: [ModelDescription.WeightLayer] = []
        var factor: Int?
        for node in description.layers {
            switch node.op {
            case let conv as ConvOp:
                let w = conv.layer
                guard factor == nil else {
                    throw A2QError("\(description.name): \"init\": \"bilinear\" needs the pixelshuffle last, but \(w.name) follows it", remedy: remedy)
                }
                guard w.stride == 1, w.kernel % 2 == 1, (w.padding ?? w.kernel / 2) == w.kernel / 2 else {
                    throw A2QError("\(description.name): \"init\": \"bilinear\" needs stride-1 convolutions with odd kernels and \"same\" padding; \(w.name) has kernel \(w.kernel), stride \(w.stride), padding \(w.padding ?? w.kernel / 2)", remedy: remedy)
                }
                convs.append(w)
            case is ReLUOp:
                continue
            case let quant as QuantOp where !quant.signed:
                continue
            case let shuffle as PixelShuffleOp:
                guard factor == nil, !convs.isEmpty else {
                    throw A2QError("\(description.name): \"init\": \"bilinear\" needs one pixelshuffle after the last convolution", remedy: remedy)
                }
                factor = shuffle.factor
            default:
                throw A2QError("\(description.name): \"init\": \"bilinear\" needs a chain of conv, relu, unsigned quant and one pixelshuffle, but \(node.name) is a \(type(of: node.op).type)",
                               remedy: remedy)
            }
        }
        guard let r = factor, let last = convs.last else {
            throw A2QError("\(description.name): \"init\": \"bilinear\" needs a pixelshuffle after the last convolution", remedy: remedy)
        }
        guard last.out == channels * r * r, last.kernel >= 3 else {
            throw A2QError("\(description.name): \"init\": \"bilinear\" needs the last convolution \(last.name) to be at least 3×3 with \(channels)·\(r)² = \(channels * r * r) outputs (it has \(last.kernel)×\(last.kernel), \(last.out.map(String.init) ?? "?"))",
                           remedy: remedy)
        }
        if let narrow = convs.dropLast().first(where: { ($0.out ?? 0) < channels }) {
            throw A2QError("\(description.name): \"init\": \"bilinear\" carries the image through every hidden convolution, but \(narrow.name) has \(narrow.out ?? 0) < \(channels) outputs",
                           remedy: remedy)
        }
    }

    /// The weight of the LR pixel at offset `tap - 1` (tap 0, 1, 2 = the pixel before, at, after)
    /// for sub-pixel `position` of `factor`, in bilinear upsampling with `align_corners=False`.
    static func weight(tap: Int, position: Int, factor: Int) -> Float {
        let d = (Float(position) + 0.5) / Float(factor) - 0.5
        switch tap {
        case 0: return d < 0 ? -d : 0
        case 1: return 1 - abs(d)
        default: return d > 0 ? d : 0
        }
    }

    /// Sets the float weights of `model` (already initialised layer by layer; `check` passed)
    /// and re-initialises the changed layers' quantizers from them.
    public static func apply(to model: Model) {
        let convs = model.network.leaves.compactMap { $0 as? Conv2d }
        guard let last = convs.last, let shuffle = model.network.leaves.compactMap({ $0 as? PixelShuffle }).first else {
            preconditionFailure("BilinearPath.apply: \(model.description.name) has no conv and pixelshuffle (check it first)")
        }
        let channels = model.inputShape[0], r = shuffle.factor, parameters = model.parameters
        for conv in convs.dropLast() {
            let w = parameters.value(conv.weight), (k, kw) = (conv.kernelHeight, conv.kernelWidth), fanIn = conv.fanIn
            for o in 0..<channels {
                (w + o * fanIn).update(repeating: 0, count: fanIn)
                w[o * fanIn + (o * k + k / 2) * kw + kw / 2] = 1
                if let bias = conv.bias { parameters.value(bias)[o] = 0 }
            }
            conv.quantizer.initializeFromFloatWeights(parameters)
        }
        let w = parameters.value(last.weight), (k, kw) = (last.kernelHeight, last.kernelWidth), inputs = last.inChannels
        for i in 0..<last.weight.count { w[i] *= 0.1 }
        if let bias = last.bias { parameters.value(bias).update(repeating: 0, count: last.outChannels) }
        for c in 0..<channels {
            for i in 0..<r {
                for j in 0..<r {
                    let o = (c * r + i) * r + j
                    for source in 0..<channels {
                        (w + (o * inputs + source) * k * kw).update(repeating: 0, count: k * kw)
                    }
                    for a in 0..<3 {
                        for b in 0..<3 {
                            let y = k / 2 + a - 1, x = kw / 2 + b - 1
                            w[((o * inputs + c) * k + y) * kw + x] = weight(tap: a, position: i, factor: r) * weight(tap: b, position: j, factor: r)
                        }
                    }
                }
            }
        }
        last.quantizer.initializeFromFloatWeights(parameters)
    }
}
