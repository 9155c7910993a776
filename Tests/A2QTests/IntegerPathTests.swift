import A2QCore
import A2QData
import A2QInteger
import A2QNN
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// A converted, randomly initialised model (BatchNorm statistics randomised too, so folding
/// matters) and random test images.
private func convertedModel(_ name: ModelName, _ quantizer: WeightQuantizerKind, seed: UInt64) throws -> IntegerModel {
    var config = TrainConfig()
    config.model = name
    config.quantizer = quantizer
    config.accumulatorBits = 16
    let built = try ModelBuilder.build(config, quantized: true)
    var generator = Xoshiro256(seed: seed)
    built.network.initialize(generator: &generator)
    for case let bn as BatchNorm in built.network.leaves {
        for c in 0..<bn.channels {
            bn.runningMean.data[c] = generator.uniform(-0.5, 0.5)
            bn.runningVariance.data[c] = generator.uniform(0.2, 3)
        }
    }
    return try IntegerModel(from: built)
}

private func randomImages(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = Xoshiro256(seed: seed)
    return (0..<(count * 784)).map { _ in generator.next() % 3 == 0 ? 0 : UInt8(generator.next() % 256) }
}

@Suite("Integer engine: the int8-kernel path equals the Float64 reference path")
struct IntegerPathTests {
    @Test("same class scores, last-layer accumulators and overflow counts, for every model, overflow mode and kernel",
          arguments: [ModelName.mlp, .cnn, .cnnBN])
    func pathsAgree(model name: ModelName) throws {
        let pixels = randomImages(70, seed: 3)  // 70: not a multiple of the engine's chunk of 16 images
        var kernels: [IntegerKernelChoice] = [IntegerKernelChoice(int16: .none)]
        for kernel in IntegerKernel.allCases where kernel.isSupported && !kernel.accumulates16Bits {
            kernels.append(IntegerKernelChoice(accumulation: .forced(kernel), int16: .none))
            kernels.append(IntegerKernelChoice(accumulation: .forced(kernel), int16: .proven))
        }
        for quantizer in [WeightQuantizerKind.a2qPlus, .qat] {
            let model = try convertedModel(name, quantizer, seed: 5)
            for bits in [nil, 12] as [Int?] {  // each layer's own P (A2Q+ hidden layers proven safe), and a P that overflows
                for mode in OverflowMode.allCases {
                    let reference = try IntegerEngine(model: model, mode: mode, accumulatorBits: bits.map { model.accumulatorBits(everyLayer: $0) } ?? [:],
                                                      kernels: IntegerKernelChoice(accumulation: .reference))
                    let expected = pixels.withUnsafeBufferPointer { reference.logits(pixels: $0, count: 70) }
                    #expect(reference.layerKernels.allSatisfy { $0.kernel == "reference" })
                    for choice in kernels {
                        let engine = try IntegerEngine(model: model, mode: mode, accumulatorBits: bits.map { model.accumulatorBits(everyLayer: $0) } ?? [:], kernels: choice)
                        #expect(engine.referenceReason == nil, "\(name) runs on the reference path: \(engine.referenceReason ?? "")")
                        let scores = pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 70) }
                        let label = "\(name) \(quantizer) P=\(bits.map(String.init) ?? "own") \(mode) \(engine.layerKernels.map(\.kernel))"
                        let scoreDifference = zip(scores, expected).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
                        #expect(scores.count == expected.count && scoreDifference == nil,
                                "\(label): class scores differ first at \(scoreDifference.map { "\($0.offset): \($0.element)" } ?? "their count")")
                        let sumDifference = zip(engine.lastAccumulators, reference.lastAccumulators).enumerated().first { $0.element.0 != $0.element.1 }
                        #expect(engine.lastAccumulators.count == reference.lastAccumulators.count && sumDifference == nil,
                                "\(label): accumulators differ first at \(sumDifference.map { "\($0.offset): \($0.element)" } ?? "their count")")
                        for (a, b) in zip(engine.overflows, reference.overflows) {
                            #expect(a.dotProducts == b.dotProducts && a.finalOverflows == b.finalOverflows
                                    && a.partialOverflows == b.partialOverflows, "\(label): \(a.name) counts \(a) vs \(b)")
                        }
                    }
                    if bits == 12 && quantizer == .qat {
                        // The test is not vacuous: this setting does overflow.
                        #expect(reference.overflows.contains { $0.partialOverflows > 0 && $0.finalOverflows > 0 })
                    }
                }
            }
        }
    }

    @Test("wrap, saturate and wide give different sums where they overflow, and wrap and saturate stay inside the register")
    func modesDiffer() throws {
        let model = try convertedModel(.cnn, .qat, seed: 8)
        let pixels = randomImages(20, seed: 9)
        var accumulators: [OverflowMode: [Int64]] = [:]
        for mode in OverflowMode.allCases {
            let engine = try IntegerEngine(model: model, mode: mode, accumulatorBits: model.accumulatorBits(everyLayer: 12))
            _ = pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 20) }
            accumulators[mode] = engine.lastAccumulators
        }
        #expect(accumulators[.wrap] != accumulators[.saturate])
        #expect(accumulators[.wrap] != accumulators[.wide])
        // Saturation keeps every sum inside the 12-bit register; wrap does too, but not at the clamp.
        #expect(accumulators[.saturate]?.allSatisfy { (-2048...2047).contains($0) } == true)
        #expect(accumulators[.wrap]?.allSatisfy { (-2048...2047).contains($0) } == true)
    }

    @Test("the 16-bit kernel is refused on a layer not proven to fit 16 bits, naming it and its p_min")
    func int16Refused() throws {
        let model = try convertedModel(.cnn, .a2qPlus, seed: 5)
        let conv1 = try #require(model.layers.first { $0.name == "conv1" })
        let pMin = conv1.report.minimumBits.max() ?? 0
        #expect(pMin > 16)  // the unconstrained 8-bit first layer
        #expect {
            try IntegerEngine(model: model, kernels: IntegerKernelChoice(int16: .named(["conv1"])))
        } throws: { error in
            "\(error)".contains("conv1") && "\(error)".contains("p_min = \(pMin)")
        }
        #expect(throws: A2QError.self) { try IntegerEngine(model: model, kernels: IntegerKernelChoice(int16: .named(["nope"]))) }
        if IntegerKernel.avx2.isSupported {
            // The constrained layers are proven and accepted, and run the 16-bit kernel.
            let engine = try IntegerEngine(model: model, kernels: IntegerKernelChoice(int16: .named(["conv2", "fc1"])))
            #expect(engine.layerKernels.filter { $0.kernel.hasPrefix("int16") }.map(\.layer) == ["conv2", "fc1"])
        } else {
            // Without AVX2 there is no 16-bit kernel: naming layers for it is refused with that reason.
            #expect {
                try IntegerEngine(model: model, kernels: IntegerKernelChoice(int16: .named(["conv2", "fc1"])))
            } throws: { error in
                "\(error)".contains("needs AVX2")
            }
            // A run on such a CPU says what it did not check.
            print("IntegerPathTests.int16Refused: not checked that the proven conv2 and fc1 run 16-bit kernels: \(CPU.description) has no AVX2 (no 16-bit kernel)")
        }
    }
}
