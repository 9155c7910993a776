import A2QCore
import A2QNN
import A2QTrain
import Foundation
import Testing

/// `"init": "bilinear"` (`BilinearPath`): the ESPCN built-ins start as bilinear upsampling.
@Suite("Bilinear initialisation of restoration chains")
struct BilinearPathTests {
    /// Bilinear upsampling by `r` with `align_corners=False` geometry, written from the definition
    /// (source coordinate (Y + 0.5)/r − 0.5, the four neighbours, linear weights), or nil where a
    /// neighbour falls outside the image (the network's zero padding differs there).
    static func bilinear(_ image: [Float], channels: Int, height: Int, width: Int, r: Int, c: Int, y: Int, x: Int) -> Float? {
        let sy = (Float(y) + 0.5) / Float(r) - 0.5, sx = (Float(x) + 0.5) / Float(r) - 0.5
        let y0 = Int(sy.rounded(.down)), x0 = Int(sx.rounded(.down))
        guard y0 >= 0, x0 >= 0, y0 + 1 < height, x0 + 1 < width else { return nil }
        let fy = sy - Float(y0), fx = sx - Float(x0)
        func p(_ yy: Int, _ xx: Int) -> Float { image[(c * height + yy) * width + xx] }
        return (1 - fy) * ((1 - fx) * p(y0, x0) + fx * p(y0, x0 + 1)) + fy * ((1 - fx) * p(y0 + 1, x0) + fx * p(y0 + 1, x0 + 1))
    }

    @Test("espcn (×2) and espcn-x3 start as bilinear upsampling: the image's path equals the definition, the other weights are a tenth of the layers' own", arguments: [ModelName.espcn, .espcnX3])
    func startsAsBilinear(model name: ModelName) throws {
        var config = TrainConfig()
        config.model = name
        config.quantizer = .float
        let (channels, height, width) = (3, 9, 11)
        let model = try ModelBuilder.build(config, quantized: false, inputShape: [channels, height, width])
        let reference = try ModelBuilder.build(config, quantized: false, inputShape: [channels, height, width])
        #expect(model.description.initialization == .bilinear)
        var g1 = Xoshiro256(seed: 7), g2 = Xoshiro256(seed: 7)
        model.network.initialize(generator: &g1)
        reference.network.initialize(generator: &g2)
        BilinearPath.apply(to: model)
        let convs = model.network.leaves.compactMap { $0 as? Conv2d }
        let last = try #require(convs.last)
        let r = name == .espcn ? 2 : 3
        let referenceLast = try #require(reference.network.leaves.compactMap { $0 as? Conv2d }.last)
        let w = model.parameters.value(last.weight), w0 = reference.parameters.value(referenceLast.weight)
        let k = last.kernelHeight * last.kernelWidth
        for o in 0..<last.outChannels {
            for input in channels..<last.inChannels {
                for t in 0..<k {
                    let i = (o * last.inChannels + input) * k + t
                    #expect(w[i] == 0.1 * w0[i], "\(last.name) output \(o) input \(input)")
                }
            }
        }
        // With the detail channels silenced, the output is the image's bilinear upsampling.
        for o in 0..<last.outChannels {
            for input in channels..<last.inChannels { (w + (o * last.inChannels + input) * k).update(repeating: 0, count: k) }
        }
        var generator = Xoshiro256(seed: 3)
        let image = (0..<(channels * height * width)).map { _ in Float(generator.next() % 256) / 255 }
        let input = Tensor(shape: [1, channels, height, width])
        input.data.update(from: image, count: image.count)
        let output = model.network.forward(input, training: false)
        #expect(output.shape == [1, channels, height * r, width * r])
        var compared = 0, worst: Float = 0
        for c in 0..<channels {
            for y in 0..<(height * r) {
                for x in 0..<(width * r) {
                    guard let expected = Self.bilinear(image, channels: channels, height: height, width: width, r: r, c: c, y: y, x: x) else { continue }
                    worst = max(worst, abs(output.data[(c * height * r + y) * width * r + x] - expected))
                    compared += 1
                }
            }
        }
        #expect(compared > channels * (height - 2) * (width - 2) * r * r / 2)
        #expect(worst < 1e-5, "largest difference from bilinear: \(worst)")
    }

    @Test("\"init\": \"bilinear\" is refused for a classifier and for a chain it cannot carry the image through, naming the layer")
    func refusals() throws {
        var config = TrainConfig()
        config.quantizer = .float
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Launch/models")
        var withBatchNorm = try ModelDescription.load(path: folder.appendingPathComponent("espcn-bn.json").path)
        #expect(withBatchNorm.initialization == .layers)
        withBatchNorm.initialization = .bilinear
        let bn = #expect(throws: A2QError.self) {
            _ = try ModelBuilder.build(config, quantized: false, inputShape: [3, 16, 16], description: withBatchNorm)
        }
        #expect(bn.map { "\($0)".contains("bn1") && "\($0)".contains("batchnorm") } == true, "\(String(describing: bn))")
        var classifier = try ModelBuilder.description(of: .cnn)
        classifier.initialization = .bilinear
        let refused = #expect(throws: A2QError.self) { _ = try ModelBuilder.build(config, quantized: false, description: classifier) }
        #expect(refused.map { "\($0)".contains("restoration") } == true)
        let unknown = Data(#"{"format": "a2q-model", "name": "x", "task": "restoration", "init": "magic", "layers": [{"type": "relu", "name": "r"}]}"#.utf8)
        let word = #expect(throws: A2QError.self) { _ = try ModelDescription.decode(unknown, source: "x.json") }
        #expect(word.map { "\($0)".contains("magic") && "\($0)".contains("bilinear") } == true)
    }
}
