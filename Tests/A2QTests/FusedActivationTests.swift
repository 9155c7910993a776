import A2QCore
import A2QNN
import A2QQuant
import A2QTrain
import Testing

@Suite("ReLU fused into the next activation quantizer")
struct FusedActivationTests {
    @Test("one fused pass gives the values and input gradients of ReLU then the quantizer, bit for bit, and the same scale gradient",
          arguments: [4, 8])
    func fusedEqualsComposition(bits: Int) throws {
        var generator = Xoshiro256(seed: UInt64(bits))
        let shape = [3, 4, 9, 7]
        let count = shape.reduce(1, *)
        let format = InputFormat(bits: bits, signed: false)
        var layout = ParameterLayout()
        let separate = ActivationQuantizer(name: "a", format: format, layout: &layout)
        let fused = ActivationQuantizer(name: "b", format: format, layout: &layout)
        fused.rectifiesInput = true
        let store = ParameterStore(layout: layout)
        separate.initialize(store, generator: &generator)
        fused.initialize(store, generator: &generator)
        let s = separate.scale(store)
        // Values on both sides of 0 (including ±0 and the band (−s/2, 0) where the difference matters), and past the top.
        var values = (0..<count).map { _ in generator.uniform(-1.5, 1.5) * s * Float((1 << bits) + 2) / 2 }
        values[0] = 0; values[1] = -0.0; values[2] = -0.3 * s; values[3] = -0.49 * s; values[4] = 0.2 * s
        let x = Tensor(shape: shape, values: values)
        let dy = Tensor(shape: shape, values: (0..<count).map { _ in generator.uniform(-1, 1) })

        let relu = ReLU(name: "relu")
        let expected = separate.forward(relu.forward(x, parameters: store, training: true), parameters: store, training: true)
        let passThrough = ReLU(name: "relu2")
        passThrough.passesThrough = true
        let y = fused.forward(passThrough.forward(x, parameters: store, training: true), parameters: store, training: true)
        #expect((0..<count).allSatisfy { y.data[$0].bitPattern == expected.data[$0].bitPattern })

        let dxExpected = relu.backward(separate.backward(dy, parameters: store), parameters: store)
        let dx = passThrough.backward(fused.backward(dy, parameters: store), parameters: store)
        #expect((0..<count).allSatisfy { dx.data[$0].bitPattern == dxExpected.data[$0].bitPattern })
        // The gradient must be blocked in (−s/2, 0), where the quantizer alone would pass it.
        #expect(dx.data[2] == 0 && dx.data[3] == 0)
        let gSeparate = store.gradient(try #require(separate.logScale))[0], gFused = store.gradient(try #require(fused.logScale))[0]
        #expect(abs(gSeparate - gFused) <= 1e-5 * max(abs(gSeparate), 1), "\(gSeparate) vs \(gFused)")
        // The calibration statistics see max(x, 0) either way.
        #expect(fused.lastInputMaximum() == separate.lastInputMaximum())
    }

    @Test("quantized builds fuse every ReLU that feeds an unsigned quantizer; float builds keep plain ReLUs")
    func builderFuses() throws {
        var config = TrainConfig()
        config.model = .cnnBN
        config.quantizer = .a2qPlus
        let quantized = try ModelBuilder.build(config, quantized: true)
        let layers = quantized.network.leaves
        var fused: [String] = []
        for (index, layer) in layers.enumerated() {
            guard let relu = layer as? ReLU else { continue }
            #expect(relu.passesThrough, "\(relu.name)")
            let next = index + 1 < layers.count ? layers[index + 1] as? ActivationQuantizer : nil
            #expect(next?.rectifiesInput == true, "\(relu.name) is not followed by a rectifying quantizer")
            if relu.passesThrough && next?.rectifiesInput == true { fused.append(relu.name) }
        }
        // cnn-bn has three ReLUs, each feeding an unsigned quantizer: all three fused (a model
        // without ReLUs, or with fewer, must not pass).
        #expect(fused == ["relu1", "relu2", "relu3"], "fused: \(fused)")
        // Every rectifying quantizer follows a pass-through ReLU (none rectifies on its own).
        #expect(layers.compactMap { $0 as? ActivationQuantizer }.filter(\.rectifiesInput).count == fused.count)
        let float = try ModelBuilder.build(config, quantized: false)
        let floatReLUs = float.network.leaves.compactMap { $0 as? ReLU }
        #expect(floatReLUs.map(\.name) == ["relu1", "relu2", "relu3"] && floatReLUs.allSatisfy { !$0.passesThrough },
                "\(floatReLUs.map { "\($0.name) \($0.passesThrough)" })")
    }
}
