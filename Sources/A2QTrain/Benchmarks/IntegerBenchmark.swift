import A2QCore
import A2QData
import A2QInteger
import A2QNN
import A2QQuant
import IntegerKernels

/// `a2q bench integer`: the integer engine's throughput per kernel, with a per-layer breakdown,
/// the overflow simulation, and the 16-bit kernel against the 32-bit ones on single layers.
public enum IntegerBenchmark {
    public struct EngineRow: Codable, Sendable {
        public var setting: String
        public var kernels: String
        public var imagesPerSecond: Double
        /// Milliseconds per 1,000 images, per layer (integer-kernel path only).
        public var layerMilliseconds: [String: Double]
        enum CodingKeys: String, CodingKey {
            case setting, kernels, imagesPerSecond = "images_per_second", layerMilliseconds = "layer_ms_per_1000_images"
        }
    }

    public struct KernelRow: Codable, Sendable {
        public var layer: String
        public var kernel: String
        public var milliseconds: Double
        public var gops: Double
    }

    /// A `cnn` converted from a fresh float model: A2Q+ at `accumulatorBits` in the hidden layers,
    /// or plain QAT (every layer 8-bit, trained for 32-bit accumulators).
    public static func model(_ quantizer: WeightQuantizerKind, accumulatorBits: Int = 16) throws -> IntegerModel {
        var config = TrainConfig()
        config.model = .cnn
        config.quantizer = quantizer
        config.accumulatorBits = accumulatorBits
        let built = try ModelBuilder.build(config, quantized: true)
        var generator = Xoshiro256(seed: 1)
        built.network.initialize(generator: &generator)
        return try IntegerModel(from: built)
    }

    /// The A2Q+ `cnn` at P = 20 with its hidden layers cut into tiles of `tile` weights, each
    /// tile's weights scaled down (toward zero) until its worst case fits a 16-bit register, as
    /// a per-tile A2Q+ constraint leaves them: whole dot products still need up to 20 bits.
    public static func tiledModel(tile: Int) throws -> IntegerModel {
        let model = try self.model(.a2qPlus, accumulatorBits: 20)
        var ops: [any IntegerOperation] = []
        for op in model.ops {
            guard var weighted = op as? any IntegerLayerOperation, weighted.layer.accumulatorBits < 32, tile < weighted.layer.fanIn else {
                ops.append(op)
                continue
            }
            var layer = weighted.layer
            let (k, top) = (layer.fanIn, Int64(layer.input.maximum))
            for o in 0..<layer.outChannels {
                for start in stride(from: 0, to: k, by: tile) {
                    let range = (o * k + start)..<(o * k + min(start + tile, k))
                    let positive = layer.weights[range].reduce(Int64(0)) { $0 + Int64(max($1, 0)) }
                    let negative = layer.weights[range].reduce(Int64(0)) { $0 - Int64(min($1, 0)) }
                    let largest = max(positive * top, negative * top)
                    guard largest > 32767 else { continue }
                    let scale = 32767 / Double(largest)
                    for i in range { layer.weights[i] = Int32((Double(layer.weights[i]) * scale).rounded(.towardZero)) }
                }
            }
            layer.accumulatorTile = tile
            layer.accumulatorBits = 16
            layer.outerAccumulatorBits = 32
            weighted.layer = layer
            ops.append(weighted)
        }
        return try IntegerModel(model: model.model, classes: model.classes, inputShape: model.inputShape, ops: ops)
    }

    /// Images per second of one engine over `test`, the best of `repeats` passes.
    public static func engine(_ setting: String, model: IntegerModel, test: Dataset, mode: OverflowMode = .wrap,
                              accumulatorBits: Int? = nil, kernels: IntegerKernelChoice, repeats: Int) throws -> EngineRow {
        var best = 0.0
        var perLayer: [String: Double] = [:]
        var names = ""
        for _ in 0..<repeats {
            let engine = try IntegerEngine(model: model, mode: mode, accumulatorBits: accumulatorBits.map { model.accumulatorBits(everyLayer: $0) } ?? [:],
                                           kernels: kernels)
            let start = monotonicSeconds()
            _ = engine.evaluate(test)
            let rate = Double(test.count) / (monotonicSeconds() - start)
            if rate > best {
                best = rate
                perLayer = Dictionary(engine.layerSeconds.map { ($0.layer, 1e6 * $0.seconds / Double(test.count)) },
                                      uniquingKeysWith: { a, _ in a })
            }
            names = engine.layerKernels.map { "\($0.layer) \($0.kernel)" }.joined(separator: ", ")
        }
        return EngineRow(setting: setting, kernels: names, imagesPerSecond: best, layerMilliseconds: perLayer)
    }

    /// Every engine setting a user compares.
    public static func engines(test: Dataset, repeats: Int) throws -> [EngineRow] {
        let safe = try model(.a2qPlus)
        let qat = try model(.qat)
        var rows: [EngineRow] = []
        rows.append(try engine("A2Q+ P=16, all proven safe", model: safe, test: test,
                               kernels: IntegerKernelChoice(), repeats: repeats))
        if let int16 = IntegerKernel.bestInt16 {
            rows.append(try engine("A2Q+ P=16, \(int16) on proven layers", model: safe, test: test,
                                   kernels: IntegerKernelChoice(int16: .proven), repeats: repeats))
        }
        for kernel in [IntegerKernel.avx2, .scalar] where kernel.isSupported && kernel != .bestInt32 {
            rows.append(try engine("A2Q+ P=16, \(kernel) forced", model: safe, test: test.prefix(min(test.count, 2000)),
                                   kernels: IntegerKernelChoice(accumulation: .forced(kernel), int16: .none), repeats: 1))
        }
        if IntegerKernel.avx2.isSupported {
            rows.append(try engine("A2Q+ P=16, avx2 + int16-avx2 on proven layers", model: safe, test: test.prefix(min(test.count, 2000)),
                                   kernels: IntegerKernelChoice(accumulation: .forced(.avx2), int16: .proven), repeats: 1))
        }
        let tiled = try tiledModel(tile: 64)
        if let int16 = IntegerKernel.bestInt16 {
            rows.append(try engine("A2Q+ tiles of 64 (16-bit tiles), \(int16)", model: tiled, test: test,
                                   kernels: IntegerKernelChoice(int16: .proven), repeats: repeats))
            rows.append(try engine("A2Q+ tiles of 64, exact \(IntegerKernel.bestInt32)", model: tiled, test: test,
                                   kernels: IntegerKernelChoice(int16: .none), repeats: repeats))
        }
        if IntegerKernel.avx2.isSupported && IntegerKernel.bestInt32 != .avx2 {
            rows.append(try engine("A2Q+ tiles of 64, int16-avx2", model: tiled, test: test.prefix(min(test.count, 2000)),
                                   kernels: IntegerKernelChoice(accumulation: .forced(.avx2), int16: .proven), repeats: 1))
            rows.append(try engine("A2Q+ tiles of 64, exact avx2", model: tiled, test: test.prefix(min(test.count, 2000)),
                                   kernels: IntegerKernelChoice(accumulation: .forced(.avx2), int16: .none), repeats: 1))
        }
        rows.append(try engine("A2Q+ P=16, Float64 reference", model: safe, test: test.prefix(min(test.count, 2000)),
                               kernels: IntegerKernelChoice(accumulation: .reference), repeats: 1))
        for mode in [OverflowMode.wrap, .saturate] {
            rows.append(try engine("QAT at P=16 (simulated, \(mode.rawValue))", model: qat, test: test, mode: mode,
                                   accumulatorBits: 16, kernels: IntegerKernelChoice(), repeats: repeats))
        }
        rows.append(try engine("QAT at P=16 (simulated, wrap), reference", model: qat, test: test.prefix(min(test.count, 1000)),
                               accumulatorBits: 16, kernels: IntegerKernelChoice(accumulation: .reference), repeats: 1))
        return rows
    }

    /// One layer's GEMM (the `cnn`'s conv2 for 16 images, or fc1 for 64) on each kernel this CPU
    /// runs, with weights small enough for the 16-bit kernels to be exact.
    /// With `tile`, the 16-bit kernels widen every 64 positions (tiles of 64) on weights whose
    /// tiles, not whole rows, fit 16 bits; the 32-bit kernels run the same weights.
    public static func kernels(repeats: Int) -> [KernelRow] {
        let shapes = [("conv2 (16 images: 3136 x 288 → 64)", 16 * 196, 288, 64, 0), ("fc1 (64 images: 64 x 3136 → 128)", 64, 3136, 128, 0),
                      ("conv2, tiles of 64 (whole > 16 bits)", 16 * 196, 288, 64, 64), ("fc1, tiles of 64 (whole > 16 bits)", 64, 3136, 128, 64)]
        var rows: [KernelRow] = []
        var generator = Xoshiro256(seed: 7)
        for (name, count, k, out, tile) in shapes {
            let kp = Int(a2qi_padded_k(Int64(k))), outp = Int(a2qi_padded_out(Int64(out)))
            var x = [UInt8](repeating: 0, count: count * kp)
            for r in 0..<count { for i in 0..<k { x[r * kp + i] = UInt8(generator.next() % 256) } }
            // Sparse ±1 weights keep every partial sum inside 16 bits, as an A2Q layer at P=16 does;
            // with tiles, ±4 on every other weight: at most 128 units of each sign per tile of 64
            // (32640 with u8 inputs), 576 or 6272 per row (about 18 and 21 bits).
            let w = (0..<(out * k)).map { index -> Int8 in
                tile > 0 ? (index % 2 == 0 ? (generator.next() % 2 == 0 ? 4 : -4) : 0)
                    : generator.next() % 16 == 0 ? (generator.next() % 2 == 0 ? 1 : -1) : 0
            }
            var c = [Int32](repeating: 0, count: count * outp)
            for kernel in IntegerKernel.allCases where kernel.isSupported {
                let packed = kernel.pack(w, out: out, k: k)
                let times = measure(repeats: repeats) {
                    x.withUnsafeBufferPointer { xb in
                        packed.withUnsafeBytes { pb in
                            c.withUnsafeMutableBufferPointer { cb in
                                guard let xp = xb.baseAddress, let pp = pb.baseAddress, let cp = cb.baseAddress else { return }
                                a2qi_gemm_tiled(kernel.rawValue, xp, Int64(count), Int64(kp), pp, Int64(out), Int64(tile > 0 ? tile : kp), cp)
                            }
                        }
                    }
                }
                let seconds = times.sorted()[times.count / 2]
                rows.append(KernelRow(layer: name, kernel: kernel.description, milliseconds: 1e3 * seconds,
                                      gops: 2 * Double(count * k * out) / seconds / 1e9))
            }
        }
        return rows
    }
}
