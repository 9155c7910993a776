import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// A small model file for Fashion-MNIST with window average pools where PyTorch models have
/// them: a 2×2 pool after the stem (28 → 14), a ResNet-D downsampling block whose shortcut is a
/// 2×2 pool then a 1×1 conv, and a 5×5 stride-2 pool with padding 2 before the classifier
/// (7 → 4; its border windows hold padding, which counts in the divisor; k² = 25 is not a power
/// of two, and S/25·25 is not always S in float32, so the export's Round is needed).
enum AveragePoolModel {
    static let json = """
        {"format": "a2q-model", "version": 1, "name": "tiny-avgpool", "layers": [
          {"type": "conv", "name": "conv1", "out": 16, "kernel": 3, "bias": false},
          {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
          {"type": "avgpool", "name": "pool1"}, {"type": "quant", "name": "pool1_q"},
          {"type": "residual", "name": "block1",
           "body": [
             {"type": "conv", "name": "conv1", "out": 32, "kernel": 3, "stride": 2, "bias": false},
             {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
             {"type": "conv", "name": "conv2", "out": 32, "kernel": 3, "bias": false},
             {"type": "batchnorm", "name": "bn2"}, {"type": "quant", "name": "out", "signed": true}],
           "shortcut": [
             {"type": "avgpool", "name": "pool", "kernel": 2}, {"type": "quant", "name": "pool_q"},
             {"type": "conv", "name": "conv", "out": 32, "kernel": 1, "bias": false},
             {"type": "batchnorm", "name": "bn"}, {"type": "quant", "name": "out", "signed": true}],
           "after": [{"type": "relu", "name": "relu"}, {"type": "quant", "name": "act"}]},
          {"type": "avgpool", "name": "pool2", "kernel": 5, "stride": 2, "padding": 2}, {"type": "quant", "name": "pool2_q"},
          {"type": "flatten", "name": "flatten"},
          {"type": "linear", "name": "fc"}]}
        """

    /// The model file in a fresh folder.
    static func write(_ text: String = json, name: String = "tiny-avgpool") throws -> String {
        let path = temporaryFolder("avgpool-model") + "/\(name).json"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// `(name, channels, largest window count)` of the pools, in execution order: each channel's
    /// worst case is that count times 255 (unsigned 8-bit inputs).
    static let pools = [("pool1", 16, 4), ("block1.shortcut.pool", 16, 4), ("pool2", 32, 25)]

    /// The accumulators in execution order (a block's body before its shortcut).
    static let accumulators = ["conv1", "pool1", "block1.conv1", "block1.conv2", "block1.shortcut.pool", "block1.shortcut.conv", "pool2", "fc"]

    /// The model trained with A2Q+ at P = 16 on a 4,000-image subset, exported (`model.h5`);
    /// shared by the tests below.
    static let trained: Result<String, Error> = Result {
        let folder = temporaryFolder("avgpool-a2q+")
        let result = try runA2Q(["train", "--model", try write(), "--quantizer", "a2q+", "--accumulator-bits", "16", "--float-epochs", "1",
                                 "--epochs", "1", "--train-subset", "4000", "--log-every", "1000", "--out", folder], timeout: 600)
        guard result.status == 0 else { throw A2QError("training failed: \(result.output)") }
        let exported = try runA2Q(["export", folder + "/final.h5", "--out", folder + "/model.h5"])
        guard exported.status == 0 else { throw A2QError("export failed: \(exported.output)") }
        return folder
    }
}

@Suite("Window average pooling (avgpool): model files, the integer register, training, verify and exports", .serialized)
struct AveragePoolTests {
    @Test("a model file's avgpool takes kernel (2), stride (kernel) and padding (0): the shapes chain (28 → 14 → 7 → 4), the file round-trips with the defaults left out, and a window that does not fit, padding above kernel/2, a kernel of 0 or an unquantized input are refused naming the layer, exit 1, no run folder")
    func modelFile() throws {
        let path = try AveragePoolModel.write()
        let listed = try runA2Q(["model", path, "--parameters"])
        #expect(listed.status == 0 && listed.output.contains("fc.weight [10, 512]"), "32 channels of 4×4 after pool2: \(listed.output)")
        let printed = try runA2Q(["model", path])
        #expect(printed.status == 0, "\(printed.output)")
        let description = try ModelDescription.load(path: path)
        let decoded = try ModelDescription.decode(Data(printed.output.utf8), source: "printed")
        #expect(decoded == description)
        let pool1 = try #require(decoded.layers.first { $0.name == "pool1" }?.op as? AvgPoolOp)
        let pool2 = try #require(decoded.layers.first { $0.name == "pool2" }?.op as? AvgPoolOp)
        #expect(pool1.stride == nil && pool1.padding == nil && pool1.window == PoolWindow(kernel: 2, stride: 2, padding: 0))
        #expect(pool2.window == PoolWindow(kernel: 5, stride: 2, padding: 2))

        var config = TrainConfig()
        config.model = ModelName(rawValue: path)
        config.quantizer = .a2qPlus
        let model = try ModelBuilder.build(config, quantized: true, inputShape: [1, 28, 28])
        #expect(model.quantizedLayers.map(\.name) == ["conv1", "block1.conv1", "block1.conv2", "block1.shortcut.conv", "fc"])
        #expect(model.quantizedLayers.last?.weightShape == [10, 32 * 4 * 4])

        // pool1 straight after the ReLU (the block's own act1 stays).
        let unquantized = AveragePoolModel.json.replacingOccurrences(of: #"{"type": "quant", "name": "act1"},"# + "\n  " + #"{"type": "avgpool""#,
                                                                     with: #"{"type": "avgpool""#)
        #expect(unquantized.count < AveragePoolModel.json.count && unquantized.contains(#""name": "act1""#))
        for (text, fragments) in [
            (AveragePoolModel.json.replacingOccurrences(of: #""kernel": 5, "stride": 2, "padding": 2"#, with: #""kernel": 5, "stride": 2, "padding": 3"#),
             ["pool2: an average pool with kernel 5, stride 2 and padding 3", "padding 0 to kernel/2"]),
            (AveragePoolModel.json.replacingOccurrences(of: #""kernel": 5, "stride": 2, "padding": 2"#, with: #""kernel": 9"#),
             ["pool2: a 9×9 average pool (stride 9, padding 0) does not fit its input [32, 7, 7]"]),
            (AveragePoolModel.json.replacingOccurrences(of: #""name": "pool", "kernel": 2"#, with: #""name": "pool", "kernel": 0"#),
             ["block1.shortcut.pool: an average pool with kernel 0"]),
            (unquantized, ["pool1: its input is not quantized", "put a quant layer before it"]),
        ] {
            let bad = try AveragePoolModel.write(text, name: "bad")
            let folder = temporaryFolder("avgpool-refused")
            let train = try runA2Q(["train", "--model", bad, "--quantizer", "a2q+", "--data", "synthetic", "--out", folder + "/run", "--epochs", "1"])
            #expect(train.status == 1, "\(fragments[0]): \(train.output)")
            for fragment in fragments { #expect(train.output.contains(fragment), "\(train.output)") }
            #expect(!FileManager.default.fileExists(atPath: folder + "/run"), "no run folder")
        }
    }

    /// A one-pool model on 4×4 images: the pool, an 8-bit quantize (scale 1), flatten and a
    /// two-class linear layer.
    static func onePoolModel(_ window: PoolWindow, bits: Int, input: [Int] = [1, 4, 4]) throws -> IntegerModel {
        let format = InputFormat(bits: 8, signed: false)
        let features = input[0] * window.outputSize(input[1]) * window.outputSize(input[2])
        let fc = IntegerLayer(name: "fc", kind: .linear, shape: [2, features], weights: (0..<(2 * features)).map { Int32($0 % 3) - 1 },
                              quantizer: "qat", weightBits: 8, accumulatorBits: 32, input: format, inputScale: 1, weightScale: [1, 1],
                              bias: [0, 0], multiplier: [1, 1], offset: [0, 0], l1Bound: nil, rounding: "nearest", foldedBatchNorm: nil)
        return try IntegerModel(model: "t", classes: 2, inputShape: input, ops: [
            IntegerInput(format: format, scale: 1), IntegerAvgPool(name: "pool", window: window, accumulatorBits: bits),
            IntegerQuantize(name: "q", format: format, scale: 1), IntegerFlatten(), IntegerLinear(layer: fc)])
    }

    @Test("the integer register of a window pool: per window the sum of its integers (padding adds 0) in a P-bit register — wide, wrap (low P bits) and saturate with the counts, against sums written out by hand; the proof is the largest window's count times 255, exact when every window overlaps the padding")
    func registerAndProof() throws {
        // 4×5 pixels (not square, so that rows and columns cannot be confused), 3×3 windows at
        // stride 2 with padding 1: 2×3 outputs whose windows cover 2×2, 2×3, 2×2, 3×2, 3×3 and 3×2 pixels.
        let pixels: [UInt8] = [250, 3, 200, 77, 9, 255, 128, 64, 31, 190, 240, 12, 101, 6, 222, 180, 45, 99, 160, 33]
        let window = PoolWindow(kernel: 3, stride: 2, padding: 1)
        var exact: [Int64] = []
        for oh in 0..<2 {
            for ow in 0..<3 {
                var sum: Int64 = 0
                for i in (oh * 2 - 1)..<(oh * 2 + 2) where (0..<4).contains(i) {
                    for j in (ow * 2 - 1)..<(ow * 2 + 2) where (0..<5).contains(j) { sum += Int64(pixels[i * 5 + j]) }
                }
                exact.append(sum)
            }
        }
        #expect(exact == [636, 503, 307, 860, 646, 642], "\(exact)")
        // P = 10: [-512, 511]; four of the six sums leave it.
        let wrapped = exact.map { $0 > 511 ? $0 - 1024 : $0 }, saturated = exact.map { min($0, 511) }
        for (mode, expected) in [(OverflowMode.wide, exact), (.wrap, wrapped), (.saturate, saturated)] {
            let model = try Self.onePoolModel(window, bits: 10, input: [1, 4, 5])
            let engine = try IntegerEngine(model: model, mode: mode, recordsAccumulators: true)
            let scores = pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 1) }
            let pool = try #require(engine.recordedAccumulators.first)
            #expect(pool.name == "pool" && pool.shape == [1, 1, 2, 3] && pool.values == expected, "\(mode): \(pool.values)")
            let counts = try #require(engine.overflows.first)
            #expect(counts.dotProducts == 6 && counts.finalOverflows == 4 && counts.partialOverflows == 4 && !counts.provenSafe, "\(mode): \(counts)")
            // The next integers: rint(float32(sum) · float32(1/9)), the pool's m = scale/k² with scale 1.
            let next = expected.map { min(max((Float($0) * (Float(1) / Float(9))).rounded(.toNearestOrEven), 0), 255) }
            let fc = model.layers[0].weights
            let want = (0..<2).map { o in (0..<6).reduce(Float(0)) { $0 + Float(fc[o * 6 + $1]) * next[$1] } }
            #expect(scores == want, "\(mode): \(scores) vs \(want)")
        }
        // The proof: every channel's worst case is 9·255 = 2295 (p_min 13); a 12-bit register can overflow.
        let verdict = try #require(LayerVerdict.verify(try Self.onePoolModel(window, bits: 12)).first)
        #expect(verdict.name == "pool" && verdict.quantizer == "avgpool" && verdict.accMax == 2295 && verdict.accMin == 0 && verdict.pMin == 13)
        #expect(!verdict.overflowFree && verdict.unsafeChannels == [0] && verdict.channels.count == 1)
        #expect(LayerVerdict.verify(try Self.onePoolModel(window, bits: 13)).first?.overflowFree == true)
        // On 2×2 images every 3×3 window (padding 1, stride 1) holds at most 2×2 pixels: 4·255 = 1020.
        let small = try #require(LayerVerdict.verify(try Self.onePoolModel(PoolWindow(kernel: 3, stride: 1, padding: 1), bits: 11,
                                                                           input: [3, 2, 2])).first)
        #expect(small.accMax == 1020 && small.pMin == 11 && small.overflowFree && small.channels.count == 3, "\(small)")
    }

    @Test("the integer model refuses a window pool whose input is not quantized, whose padding is above kernel/2, or whose window does not fit the padded input")
    func integerModelChecksWindows() throws {
        for (window, input, fragment) in [(PoolWindow(kernel: 3, stride: 1, padding: 2), [1, 4, 4], "padding 0 to kernel/2"),
                                          (PoolWindow(kernel: 5, stride: 1, padding: 0), [1, 4, 4], "does not fit its input [1, 4, 4]"),
                                          (PoolWindow(kernel: 0, stride: 1, padding: 0), [1, 4, 4], "kernel 0")] {
            do {
                _ = try Self.onePoolModel(window, bits: 32, input: input)
                Issue.record("accepted \(window) on \(input)")
            } catch {
                #expect("\(error)".contains("average pool pool") && "\(error)".contains(fragment), "\(error)")
            }
        }
        let format = InputFormat(bits: 8, signed: false)
        let conv = IntegerLayer(name: "conv", kind: .conv2d, shape: [1, 1, 1, 1], weights: [1], quantizer: "qat", weightBits: 8,
                                accumulatorBits: 32, input: format, inputScale: 1, weightScale: [1], bias: [0], multiplier: [1],
                                offset: [0], l1Bound: nil, rounding: "nearest", foldedBatchNorm: nil)
        #expect(throws: A2QError.self) {
            _ = try IntegerModel(model: "t", classes: 0, inputShape: [1, 4, 4], ops: [
                IntegerInput(format: format, scale: 1), IntegerConv(layer: conv),
                IntegerAvgPool(name: "pool", window: PoolWindow(kernel: 2, stride: 2, padding: 0), accumulatorBits: 32)])
        }
    }

    @Test("an export whose avgpool entry is altered (kernel 0, padding above kernel/2, a window larger than its input, no name, a 80-bit register) is refused by verify and eval with a message naming the entry, exit 1",
          arguments: [(#"e["kernel"] = 0"#, "topology entry 9 (avgpool) needs an integer kernel in 1...64, found 0"),
                      (#"e["padding"] = 3"#, "average pool pool2: kernel 5, stride 2, padding 3"),
                      (#"e["kernel"] = 9; e["padding"] = 0"#, "average pool pool2: a 9×9 window (padding 0) does not fit its input [32, 7, 7]"),
                      (#"del e["name"]"#, "(avgpool) has no name"),
                      (#"e["accumulator_bits"] = 80"#, "needs an integer accumulator_bits in 2...62, found 80")])
    func alteredExportsAreRefused(change: String, fragment: String) throws {
        let folder = try AveragePoolModel.trained.get()
        let altered = temporaryFolder("avgpool-altered") + "/model.h5"
        try FileManager.default.copyItem(atPath: folder + "/model.h5", toPath: altered)
        let script = """
            import h5py, json, sys
            with h5py.File(sys.argv[1], "r+") as f:
                topology = json.loads(f.attrs["topology"])
                e = next(op for op in topology if op.get("op") == "avgpool" and op.get("name") == "pool2")
                \(change)
                f.attrs["topology"] = json.dumps(topology)
            """
        let edited = try MPIRun.runProcess("/usr/bin/env", ["python3", "-c", script, altered], timeout: 120)
        #expect(edited.status == 0, "\(edited.output)")
        for command in [["verify", altered], ["eval", "--integer", altered, "--limit", "10"]] {
            let result = try runA2Q(command)
            #expect(result.status == 1 && result.output.contains(fragment), "\(command[0]) after \(change): \(result.output)")
        }
    }

    @Test("A2Q+ (P = 16) trains the model; its export lists the three pools among the accumulators in execution order, verify proves each pool per channel (4·255 and 25·255), the integer engine's predictions equal the fake-quantized model's on ≥ 99.9% of the 10,000 test images, and every accumulator of 64 images equals NumPy's (integer_forward.py, from the documentation)")
    func trainsVerifiesAndRunsExactly() throws {
        let folder = try AveragePoolModel.trained.get()
        let checkpoint = folder + "/final.h5", export = folder + "/model.h5"
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/summary.json"))) as? [String: Any])
        #expect((summary["test_accuracy"] as? Double ?? 0) > 0.5, "\(summary)")

        let verify = try runA2Q(["verify", export, "--json"])
        #expect(verify.status == 0, "\(verify.output)")
        let verdicts = try #require((try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(verdicts.compactMap { $0["name"] as? String } == AveragePoolModel.accumulators)
        for (name, channels, count) in AveragePoolModel.pools {
            let verdict = try #require(verdicts.first { $0["name"] as? String == name })
            let entries = try #require(verdict["channels"] as? [[String: Any]])
            #expect(verdict["quantizer"] as? String == "avgpool" && verdict["accumulator_bits"] as? Int == 32 && verdict["overflow_free"] as? Bool == true)
            #expect(entries.count == channels && entries.allSatisfy { $0["acc_max"] as? Int == count * 255 && $0["acc_min"] as? Int == 0 },
                    "\(name): \(verdict)")
        }
        let topology = try HDF5File.openForReading(export).stringAttribute("topology")
        #expect(topology.contains(#""op":"avgpool""#) && topology.contains(#""padding":2"#), "\(topology)")

        var predictions: [[Int32]] = []
        for (name, arguments) in [("fake", [String]()), ("integer", ["--integer"])] {
            let outputs = folder + "/\(name).h5"
            let eval = try runA2Q(["eval", checkpoint, "--outputs", outputs] + arguments, timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            predictions.append(try HDF5File.openForReading(outputs).read("predictions", as: Int32.self).values)
        }
        let differing = zip(predictions[0], predictions[1]).filter { $0 != $1 }.count
        #expect(predictions[1].count == 10000 && differing <= 10, "\(differing) of 10000 predictions differ")

        let outputs = folder + "/accumulators.h5"
        let eval = try runA2Q(["eval", "--integer", export, "--limit", "64", "--outputs", outputs, "--outputs-accumulators"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let file = try HDF5File.openForReading(outputs)
        #expect(try file.openGroup("accumulators").datasetInfo("pool2").shape == [64, 32, 4, 4])
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "64", folder + "/numpy.bin", "--outputs", outputs])
        #expect(status == 0 && output.contains("compared 8 accumulators"), "the engine's outputs differ from NumPy's: \(output)")
    }

    @Test("narrow pool registers (--layer-accumulator-bits pool1=10, block1.shortcut.pool=9, pool2=10): verify says they can overflow, and eval --integer simulates them — wrap, saturate and wide — with NumPy's counts, scores and accumulators",
          arguments: ["wrap", "saturate", "wide"])
    func narrowPoolRegisters(mode: String) throws {
        let folder = try AveragePoolModel.trained.get()
        let export = folder + "/model.h5"
        let narrow = ["pool1=10", "block1.shortcut.pool=9", "pool2=10"]
        let flags = narrow.flatMap { ["--layer-accumulator-bits", $0] }
        let verify = try runA2Q(["verify", export] + flags)
        #expect(verify.status == 2 && verify.output.contains("CAN OVERFLOW (32 channels)") && verify.output.contains("CAN OVERFLOW (16 channels)"),
                "\(verify.output)")
        let outputs = folder + "/narrow-\(mode).h5"
        let eval = try runA2Q(["eval", "--integer", export, "--overflow", mode, "--limit", "100", "--json", "--outputs", outputs,
                               "--outputs-accumulators"] + flags, timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let layers = try #require((try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.compactMap { $0["name"] as? String } == AveragePoolModel.accumulators)
        let counts = folder + "/narrow-\(mode).json"
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "100", folder + "/narrow.bin", "--overflow", mode,
                                                                 "--counts", counts, "--outputs", outputs, "--bits"] + narrow)
        #expect(status == 0 && output.contains("compared 8 accumulators"), "\(output)")
        let numpy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: counts))) as? [String: [String: Int]])
        for (name, channels, _) in AveragePoolModel.pools {
            let pool = try #require(layers.first { $0["name"] as? String == name })
            let positions = name == "pool2" ? 16 : 14 * 14 / (name == "pool1" ? 1 : 4)
            #expect(pool["dot_products"] as? Int == 100 * channels * positions, "\(name): \(pool)")
            #expect((pool["final_overflows"] as? Int ?? 0) > 0, "\(name) must overflow on these images: \(pool)")
            for key in ["dot_products", "final_overflows", "partial_overflows"] {
                #expect(pool[key] as? Int == numpy[name]?[key], "\(mode) \(name) \(key): engine \(pool[key] ?? "-"), NumPy \(numpy[name]?[key] ?? -1)")
            }
        }
    }

    @Test("QONNX and ONNX exports write AveragePool (kernel_shape, strides, pads, count_include_pad 1): onnxruntime gives the engine's scores and every pool's integer sums bit for bit on 1,000 test images, qonnx's executor its predictions, last accumulators and pool sums")
    func exports() throws {
        let folder = try AveragePoolModel.trained.get()
        let checkpoint = folder + "/final.h5"
        for (format, file) in [("qonnx", "model.qonnx.onnx"), ("onnx", "model.onnx")] {
            let export = try runA2Q(["export", checkpoint, "--format", format, "--out", folder + "/" + file, "--overwrite"])
            #expect(export.status == 0 && !export.output.contains("warning"), "\(format): \(export.output)")
        }
        let (status, output, json) = try onnxInterop(folder)
        #expect(status == 0, "\(output)")
        #expect(json["float32_exact"] as? String == "1" && (json["onnxruntime_scores_differing"] as? [Int])?.isEmpty == true, "\(output)")
        #expect(json["qonnx_accumulators_equal"] as? Bool == true && (json["qonnx_agreement"] as? Double ?? 0) >= 0.999, "\(output)")
        for key in ["qonnx_pool_sums_equal", "onnxruntime_pool_sums_equal"] {
            let sums = try #require(json[key] as? [String: Bool], "\(key): \(output)")
            #expect(sums == ["pool1": true, "block1.shortcut.pool": true, "pool2": true], "\(key): \(sums)")
        }
        let pools = try #require(json["average_pools"] as? [String: [String: [String: [Int]]]])
        for file in ["qonnx", "onnx"] {
            #expect(pools[file]?["pool2.mean"] == ["kernel_shape": [5, 5], "strides": [2, 2], "pads": [2, 2, 2, 2], "count_include_pad": [1], "ceil_mode": [0]],
                    "\(file): \(pools)")
            #expect(pools[file]?["block1.shortcut.pool.mean"]?["pads"] == [0, 0, 0, 0] && pools[file]?.count == 3, "\(file): \(pools)")
        }
    }
}
