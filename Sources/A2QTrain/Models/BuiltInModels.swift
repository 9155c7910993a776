/// The built-in architectures as model descriptions (the same trees `Launch/models/*.json`
/// hold; a test keeps them equal).
public enum BuiltInModels {
    /// The description of a built-in, nil for other names.
    public static func description(_ name: ModelName) -> ModelDescription? {
        switch name {
        case .mlp: return mlp
        case .cnn: return cnn(batchNorm: false)
        case .cnnBN: return cnn(batchNorm: true)
        case .resnet8: return resnet(name: "resnet8", blocksPerStage: 1)
        case .resnet14: return resnet(name: "resnet14", blocksPerStage: 2)
        case .resnet20: return resnet(name: "resnet20", blocksPerStage: 3)
        case .espcn: return espcn(name: "espcn", factor: 2)
        case .espcnX3: return espcn(name: "espcn-x3", factor: 3)
        default: return nil
        }
    }

    typealias Node = ModelDescription.Node
    typealias Weights = ModelDescription.WeightLayer

    static func conv(_ name: String, _ out: Int, kernel: Int = 3, stride: Int = 1, bias: Bool = true) -> Node {
        .conv(Weights(name: name, out: out, kernel: kernel, stride: stride, padding: kernel / 2, bias: bias))
    }

    static func quant(_ name: String, signed: Bool = false) -> Node { .quant(name: name, bits: nil, signed: signed) }

    /// ESPCN (Shi et al.), the A2Q authors' layers without their BatchNorms: conv 5×5 3→64,
    /// conv 3×3 64→64, conv 3×3 64→32, each with a bias and ReLU, conv 3×3 32→3·r²,
    /// PixelShuffle(r), and an unsigned 8-bit output quantizer on the fixed range [0, 1]: its
    /// integers are the pixels. The first and last convolutions stay 8-bit and unconstrained
    /// (`--first-last`). The float weights start as bilinear upsampling (`"init": "bilinear"`,
    /// `BilinearPath`), which the BatchNorms would break; without both the float model trains
    /// far faster on small crops (README, "Super-resolution"). The authors' form with BatchNorm
    /// and PyTorch's initialisation is `Launch/models/espcn-bn.json`.
    static func espcn(name: String, factor r: Int) -> ModelDescription {
        var layers: [Node] = []
        for (index, (out, kernel)) in [(64, 5), (64, 3), (32, 3)].enumerated() {
            let i = index + 1
            layers += [conv("conv\(i)", out, kernel: kernel), .relu(name: "relu\(i)"), quant("act\(i)")]
        }
        layers += [conv("conv4", 3 * r * r, kernel: 3), .pixelShuffle(name: "shuffle", factor: r),
                   .quant(name: "output", bits: 8, signed: false, range: 1)]
        return ModelDescription(name: name, layers: layers, task: .restoration, initialization: .bilinear)
    }

    /// 784–256–256–10 with ReLUs.
    static let mlp = ModelDescription(name: "mlp", layers: [
        .flatten(name: "flatten"),
        .linear(Weights(name: "fc1", out: 256)), .relu(name: "relu1"), quant("act1"),
        .linear(Weights(name: "fc2", out: 256)), .relu(name: "relu2"), quant("act2"),
        .linear(Weights(name: "fc3", out: nil)),
    ])

    /// conv3×3(32)–pool–conv3×3(64)–pool–fc(128)–fc, optionally with BatchNorm after each of the first three.
    static func cnn(batchNorm: Bool) -> ModelDescription {
        func bn(_ name: String) -> [Node] { batchNorm ? [.batchNorm(name: name)] : [] }
        return ModelDescription(name: batchNorm ? "cnn-bn" : "cnn", layers:
            [conv("conv1", 32)] + bn("bn1") + [.relu(name: "relu1"), quant("act1"), .maxPool(name: "pool1", kernel: 2, stride: nil)]
            + [conv("conv2", 64)] + bn("bn2") + [.relu(name: "relu2"), quant("act2"), .maxPool(name: "pool2", kernel: 2, stride: nil)]
            + [.flatten(name: "flatten"), .linear(Weights(name: "fc1", out: 128))] + bn("bn3")
            + [.relu(name: "relu3"), quant("act3"), .linear(Weights(name: "fc2", out: nil))])
    }

    /// CIFAR-style ResNet (He et al. 2016, Sec. 4.2): conv3×3(16)–BN–ReLU, three stages of
    /// `blocksPerStage` basic blocks with 16, 32, 64 channels (the first block of stages 2 and 3
    /// at stride 2, with a 1×1 stride-2 convolution + BN shortcut), global average pooling and a
    /// linear classifier. Each block's body ends in a signed quantizer and a projection
    /// shortcut in its own, so both inputs of the add are quantized.
    static func resnet(name: String, blocksPerStage: Int) -> ModelDescription {
        var layers: [Node] = [conv("conv1", 16, bias: false), .batchNorm(name: "bn1"), .relu(name: "relu1"), quant("act1")]
        var channels = 16
        for (stage, width) in [16, 32, 64].enumerated() {
            var blocks: [Node] = []
            for block in 0..<blocksPerStage {
                let stride = stage > 0 && block == 0 ? 2 : 1
                let body: [Node] = [
                    conv("conv1", width, stride: stride, bias: false), .batchNorm(name: "bn1"), .relu(name: "relu1"), quant("act1"),
                    conv("conv2", width, bias: false), .batchNorm(name: "bn2"), quant("out", signed: true),
                ]
                let shortcut: [Node]? = stride != 1 || width != channels
                    ? [conv("conv", width, kernel: 1, stride: stride, bias: false), .batchNorm(name: "bn"), quant("out", signed: true)]
                    : nil
                blocks.append(.residual(name: "block\(block + 1)", body: body, shortcut: shortcut,
                                        after: [.relu(name: "relu"), quant("act")]))
                channels = width
            }
            layers.append(.sequential(name: "stage\(stage + 1)", layers: blocks))
        }
        layers += [.globalAvgPool(name: "pool"), quant("pool_q"), .linear(Weights(name: "fc", out: nil))]
        return ModelDescription(name: name, layers: layers)
    }
}
