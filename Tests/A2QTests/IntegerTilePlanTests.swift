import A2QCore
import A2QInteger
import A2QQuant
import A2QTrain
import Testing

/// A converted `cnn` whose conv2 and fc1 are tiled (T = `tile`) with random weights in
/// [−24, 24] capped at `units` of positive and of negative weight per tile: 128 units keep
/// every tile inside 16 bits (≤ 32640 with u8 inputs) while whole dot products need more.
private func tiledModel(tile: Int, units: Int, bits: Int, seed: UInt64) throws -> IntegerModel {
    var config = TrainConfig()
    config.model = .cnn
    config.quantizer = .a2qPlus
    config.accumulatorBits = 16
    let built = try ModelBuilder.build(config, quantized: true)
    var generator = Xoshiro256(seed: seed)
    built.network.initialize(generator: &generator)
    let model = try IntegerModel(from: built)
    var ops: [any IntegerOperation] = []
    for op in model.ops {
        guard var weighted = op as? any IntegerLayerOperation, ["conv2", "fc1"].contains(weighted.layer.name) else {
            ops.append(op)
            continue
        }
        var layer = weighted.layer
        let k = layer.fanIn
        for o in 0..<layer.outChannels {
            for start in stride(from: 0, to: k, by: tile) {
                var (up, down) = (units, units)
                for i in start..<min(start + tile, k) {
                    var v = Int(generator.next() % 49) - 24
                    if v > 0 { v = min(v, up); up -= v } else { v = max(v, -down); down += v }
                    layer.weights[o * k + i] = Int32(v)
                }
            }
        }
        layer.accumulatorTile = tile
        layer.accumulatorBits = bits
        layer.outerAccumulatorBits = 32
        weighted.layer = layer
        ops.append(weighted)
    }
    return try IntegerModel(model: model.model, classes: model.classes, inputShape: model.inputShape, ops: ops)
}

private func randomPixels(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = Xoshiro256(seed: seed)
    return (0..<(count * 784)).map { _ in generator.next() % 3 == 0 ? 0 : UInt8(generator.next() % 256) }
}

@Suite("Integer plan: 16-bit tile kernels on tiled layers proven per tile")
struct IntegerTilePlanTests {
    @Test("a tiled layer proven per tile runs on the 16-bit tile kernel; scores and accumulators equal the reference path's",
          arguments: [40, 64])
    func tiledLayersOnTileKernel(tile: Int) throws {
        let model = try tiledModel(tile: tile, units: 128, bits: 16, seed: 9)
        for layer in model.layers where layer.accumulatorTile != nil {
            let report = layer.report
            #expect((report.tileMinimumBits.max() ?? 99) <= 16 && (report.minimumBits.max() ?? 0) > 16,
                    "\(layer.name): tiles need \(report.tileMinimumBits.max() ?? 0) bits, the whole \(report.minimumBits.max() ?? 0)")
            #expect(report.overflowFree)
        }
        let pixels = randomPixels(70, seed: 4)
        var choices = [IntegerKernelChoice(int16: .proven), IntegerKernelChoice(int16: .auto), IntegerKernelChoice(int16: .named(["conv2", "fc1"]))]
        if IntegerKernel.avx2.isSupported { choices.append(IntegerKernelChoice(accumulation: .forced(.avx2), int16: .proven)) }
        for mode in OverflowMode.allCases {
            let reference = try IntegerEngine(model: model, mode: mode, kernels: IntegerKernelChoice(accumulation: .reference))
            let expected = pixels.withUnsafeBufferPointer { reference.logits(pixels: $0, count: 70) }
            for choice in choices {
                let engine = try IntegerEngine(model: model, mode: mode, kernels: choice)
                #expect(engine.referenceReason == nil, "runs on the reference path: \(engine.referenceReason ?? "")")
                let kernels = Dictionary(uniqueKeysWithValues: engine.layerKernels.map { ($0.layer, $0.kernel) })
                let sixteen = choice.int16 != .auto || !IntegerKernel.vnni.isSupported
                for name in ["conv2", "fc1"] {
                    #expect(kernels[name]?.hasPrefix("int16") == sixteen, "\(choice): \(name) runs \(kernels[name] ?? "nothing")")
                }
                let scores = pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 70) }
                let label = "T=\(tile) \(mode) \(engine.layerKernels.map(\.kernel))"
                #expect(scores.map(\.bitPattern) == expected.map(\.bitPattern), "\(label): class scores differ")
                #expect(engine.lastAccumulators == reference.lastAccumulators, "\(label): last accumulators differ")
                for (a, b) in zip(engine.overflows, reference.overflows) {
                    #expect(a.dotProducts == b.dotProducts && a.finalOverflows == 0 && a.partialOverflows == 0, "\(label): \(a.name) \(a)")
                    if a.accumulatorTile != nil { #expect(a.tileSums == a.dotProducts * (((a.name == "conv2" ? 288 : 3136) + tile - 1) / tile), "\(a)") }
                }
            }
        }
    }

    @Test("a tiled layer not proven per tile: no 16-bit kernel; refused by name when asked; reference path when its tiles can overflow P")
    func unprovenTiles() throws {
        // 200 units per tile: 51000 needs 17 bits.
        let model = try tiledModel(tile: 64, units: 200, bits: 16, seed: 10)
        let conv2 = try #require(model.layers.first { $0.name == "conv2" })
        #expect(conv2.report.tileMinimumBits.max() == 17)
        // At its own P = 16 the tiles can overflow: the plan leaves the model to the reference path.
        let engine = try IntegerEngine(model: model, mode: .wrap, kernels: IntegerKernelChoice(int16: .proven))
        #expect(engine.referenceReason?.contains("conv2") == true, "\(engine.referenceReason ?? "no reason")")
        // At P = 20 every tile fits its register: exact int32 kernels, never the 16-bit one.
        let wide = ["conv2": 20, "fc1": 20]
        let proven = try IntegerEngine(model: model, mode: .wrap, accumulatorBits: wide, kernels: IntegerKernelChoice(int16: .proven))
        #expect(proven.referenceReason == nil)
        for (layer, kernel) in proven.layerKernels where layer == "conv2" || layer == "fc1" {
            #expect(!kernel.hasPrefix("int16"), "\(layer) runs \(kernel)")
        }
        let reference = try IntegerEngine(model: model, mode: .wrap, accumulatorBits: wide, kernels: IntegerKernelChoice(accumulation: .reference))
        let pixels = randomPixels(20, seed: 5)
        let scores = pixels.withUnsafeBufferPointer { proven.logits(pixels: $0, count: 20) }
        #expect(scores.map(\.bitPattern) == pixels.withUnsafeBufferPointer { reference.logits(pixels: $0, count: 20) }.map(\.bitPattern))
        #expect(throws: A2QError.self) {
            _ = try IntegerEngine(model: model, mode: .wrap, accumulatorBits: wide, kernels: IntegerKernelChoice(int16: .named(["conv2"])))
        }
        do {
            _ = try IntegerEngine(model: model, mode: .wrap, accumulatorBits: wide, kernels: IntegerKernelChoice(int16: .named(["conv2"])))
        } catch {
            #expect("\(error)".contains("conv2") && "\(error)".contains("per tile"), "\(error)")
        }
    }
}
