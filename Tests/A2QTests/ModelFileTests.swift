import A2QCore
import A2QData
import A2QDistributed
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// The repository's `Launch/models` folder.
let modelsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Launch/models").path

/// Writes CIFAR-10 binary records: label `r % 10`, pixel `(r·7 + i) % 251`.
func writeCIFAR(_ path: String, records: Int, first: Int = 0, extraBytes: Int = 0) throws {
    var bytes: [UInt8] = []
    for r in first..<(first + records) {
        bytes.append(UInt8(r % 10))
        for i in 0..<(3 * 32 * 32) { bytes.append(UInt8((r * 7 + i) % 251)) }
    }
    bytes += [UInt8](repeating: 0, count: extraBytes)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite("Model files, built-in ResNets and CIFAR-format data", .serialized)
struct ModelFileTests {
    @Test("Launch/models holds every built-in: the same tree, parameter names and shapes, and outputs", arguments: ModelName.builtIn)
    func builtInsMatchFiles(name: ModelName) throws {
        let path = "\(modelsFolder)/\(name.rawValue).json"
        let file = try ModelDescription.load(path: path)
        #expect(file == BuiltInModels.description(name))
        // A restoration model (ESPCN) maps images to images of its own channels: RGB only.
        let restoration = file.task == .restoration
        for shape in [[1, 28, 28], [3, 32, 32]] where (name != .mlp || shape[0] == 1) && (!restoration || shape[0] == 3) {
            var builtIn = TrainConfig(), fromFile = TrainConfig()
            builtIn.model = name
            fromFile.model = ModelName(rawValue: path)
            let a = try ModelBuilder.build(builtIn, quantized: true, inputShape: shape)
            let b = try ModelBuilder.build(fromFile, quantized: true, inputShape: shape)
            #expect(a.parameters.views == b.parameters.views)
            #expect(a.network.buffers.map(\.name) == b.network.buffers.map(\.name))
            var g1 = Xoshiro256(seed: 4), g2 = Xoshiro256(seed: 4)
            a.network.initialize(generator: &g1)
            b.network.initialize(generator: &g2)
            var g = Xoshiro256(seed: 8)
            let x = randomTensor([4] + shape, &g)
            for i in 0..<x.count { x[i] = abs(x[i]) }
            #expect(a.network.forward(x, training: false).array == b.network.forward(x, training: false).array)
        }
    }

    @Test("the ResNets have He et al.'s shape: 6n+2 weight layers, 16/32/64 channels, projection shortcuts only where the shape changes")
    func resnetShapes() throws {
        for (name, n) in [(ModelName.resnet8, 1), (.resnet14, 2), (.resnet20, 3)] {
            var config = TrainConfig()
            config.model = name
            let model = try ModelBuilder.build(config, quantized: true, inputShape: [3, 32, 32])
            let convs = model.quantizedLayers.filter { $0.kind == .conv2d && !$0.name.contains("shortcut") }
            #expect(convs.count + 1 == 6 * n + 2, "\(name): \(convs.count) convolutions")
            let shortcuts: [String] = model.quantizedLayers.filter { $0.name.contains("shortcut") }.map(\.name)
            #expect(shortcuts == ["stage2.block1.shortcut.conv", "stage3.block1.shortcut.conv"])
            #expect(model.quantizedLayers.last?.weightShape == [10, 64])
            // Default policy: every weight layer but conv1 and fc constrained, shortcuts included.
            #expect(model.constrainedLayers.count == model.quantizedLayers.count - 2)
            #expect(model.parameters.view(named: "stage2.block1.conv1.weight")?.shape == [32, 16, 3, 3])
        }
    }

    @Test("a model file that reproduces cnn-bn trains to the same losses as --model cnn-bn, bit for bit, for 20 steps")
    func fileTrainsLikeBuiltIn() throws {
        var losses: [[UInt32]] = []
        for model in [ModelName.cnnBN, ModelName(rawValue: "\(modelsFolder)/cnn-bn.json")] {
            var config = quickConfig(model, out: temporaryFolder("file-vs-builtin"))
            config.floatEpochs = 1
            config.maxSteps = 20
            let trainer = try Trainer(config: config, communicator: SingleProcessCommunicator(),
                                      data: (TestData.train, TestData.test), quiet: true)
            var run: [UInt32] = []
            trainer.stepObserver = { _, _, _, loss in run.append(loss.bitPattern) }
            _ = try trainer.run()
            losses.append(run)
        }
        #expect(losses[0].count == 40 + 20)
        #expect(losses[0] == losses[1])
    }

    @Test("bad model files and CIFAR files are refused before training, with the reason, exit 1 and no run folder")
    func badInput() throws {
        let folder = temporaryFolder("bad-models")
        func model(_ layers: String) throws -> String {
            let path = folder + "/m\(UInt32.random(in: 0...UInt32.max)).json"
            try #"{"format": "a2q-model", "name": "bad", "layers": \#(layers)}"#.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let conv = #"{"type": "conv", "name": "conv1", "out": 8, "kernel": 3}, {"type": "relu", "name": "r"}, {"type": "quant", "name": "q"}"#
        let cases: [(String, [String])] = [
            (try model(#"[{"type": "convolution", "name": "c"}]"#), ["layer 'c' has the unknown type 'convolution'", "types: conv, linear"]),
            (try model("[\(conv), {\"type\": \"linear\", \"name\": \"fc\"}]"), ["fc takes a flat input but gets [8, 28, 28]", "flatten"]),
            (try model("""
                [\(conv), {"type": "residual", "name": "block", "body": [{"type": "conv", "name": "c", "out": 16, "kernel": 3},
                 {"type": "quant", "name": "q", "signed": true}]}, {"type": "globalavgpool", "name": "p"}, {"type": "quant", "name": "pq"},
                 {"type": "linear", "name": "fc"}]
                """), ["residual block: its body gives [16, 28, 28] but its shortcut gives [8, 28, 28]"]),
            (try model("""
                [\(conv), {"type": "conv", "name": "narrow", "out": 8, "kernel": 3, "accumulator_bits": 8}, {"type": "quant", "name": "q2"},
                 {"type": "flatten", "name": "f"}, {"type": "linear", "name": "fc"}]
                """), ["narrow", "accumulator"]),
            (try model("""
                [\(conv), {"type": "residual", "name": "block", "body": [{"type": "conv", "name": "c", "out": 8, "kernel": 3}]},
                 {"type": "flatten", "name": "f"}, {"type": "linear", "name": "fc"}]
                """), ["residual block: its body does not end in quantized values", "quant"]),
            (try model(#"[{"type": "conv", "name": "a.b", "out": 8}]"#), ["must be non-empty and contain no '.'"]),
            (try model("[\(conv), {\"type\": \"relu\", \"name\": \"r\"}]"), ["two layers are named r"]),
            (try model("""
                [\(conv), {"type": "residual", "name": "block", "body": [{"type": "relu", "name": "body"}]}]
                """), ["two layers are named block.body", "'body' and 'shortcut' are taken"]),
            (try model(#"[{"type": "flatten", "name": "f"}, {"type": "linear", "name": "huge", "out": 1000000}]"#),
             ["huge would have 784000000 weights, more than the 67108864"]),
            (folder + "/missing.json", ["cannot read the model file"]),
        ]
        for (path, phrases) in cases {
            let out = folder + "/run-\(UInt32.random(in: 0...UInt32.max))"
            let result = try runA2Q(["train", "--model", path, "--data", "synthetic", "--train-subset", "64", "--batch-size", "32",
                                     "--out", out])
            #expect(result.status == 1 && phrases.allSatisfy { result.output.contains($0) }, "\(path): \(result.output)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(path) left a run folder")
        }
        // A CIFAR file that is not a whole number of records.
        let cifar = folder + "/cifar"
        try FileManager.default.createDirectory(atPath: cifar, withIntermediateDirectories: true)
        try writeCIFAR(cifar + "/data_batch_1.bin", records: 40, extraBytes: 100)
        try writeCIFAR(cifar + "/test_batch.bin", records: 10)
        let out = folder + "/cifar-run"
        let result = try runA2Q(["train", "--model", "resnet8", "--data", cifar, "--batch-size", "8", "--out", out])
        #expect(result.status == 1 && result.output.contains("data_batch_1.bin holds 123020 bytes, not a whole number of 3073-byte CIFAR-10 records"),
                "\(result.output)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("CIFAR-10 binary files: records read exactly; resnet8 trains on them, exports, and NumPy reproduces the engine's integers through adds and average pooling")
    func cifar() throws {
        let folder = temporaryFolder("cifar")
        let data = folder + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeCIFAR(data + "/data_batch_1.bin", records: 96)
        try writeCIFAR(data + "/data_batch_2.bin", records: 64, first: 96)
        try writeCIFAR(data + "/test_batch.bin", records: 40, first: 500)
        let (train, test) = try DataSource(argument: data).load()
        #expect(train.count == 160 && test.count == 40 && train.imageShape == [3, 32, 32])
        let record: [UInt8] = Array(train.images[(100 * 3072)..<(101 * 3072)])
        let expected: [UInt8] = (0..<3072).map { UInt8((100 * 7 + $0) % 251) }
        #expect(record == expected)
        #expect(train.labels[100] == 0 && test.labels[3] == 3)

        let run = folder + "/run"
        let trained = try runA2Q(["train", "--model", "resnet8", "--data", data, "--batch-size", "16", "--float-epochs", "1",
                                  "--epochs", "1", "--calibration-batches", "2", "--out", run], timeout: 300)
        #expect(trained.status == 0, "\(trained.output)")
        let header = try CheckpointFile.header(run + "/final.h5")
        #expect(header.inputShape == [3, 32, 32] && header.description == BuiltInModels.description(.resnet8))
        let export = run + "/model.h5"
        #expect(try runA2Q(["export", run + "/final.h5", "--out", export]).status == 0)
        let verify = try runA2Q(["verify", export])
        #expect(verify.status == 0 && verify.output.contains("stage3.block1.shortcut.conv") && verify.output.contains("avgpool"), "\(verify.output)")
        // The pool's sum is an accumulator: 8×8 uint8 values per channel on 32×32 images, at most
        // 64·255 = 16,320 (15 bits signed); a 14-bit register is refused.
        let proof = try runA2Q(["verify", export, "--json"])
        let layers = try #require((try JSONSerialization.jsonObject(with: Data(proof.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        let pool = try #require(layers.first { $0["quantizer"] as? String == "avgpool" })
        #expect(pool["acc_max"] as? Int == 16320 && pool["acc_min"] as? Int == 0 && pool["p_min"] as? Int == 15, "\(pool)")
        let narrow = try runA2Q(["verify", export, "--layer-accumulator-bits", "pool=14"])
        #expect(narrow.status == 2 && narrow.output.contains("CAN OVERFLOW"), "\(narrow.output)")
        // Every accumulator (the ten weight layers and the pool), the scores and the predictions
        // of 40 images, as `eval --outputs` writes them, equal NumPy's from the export alone.
        let outputs = run + "/engine-outputs.h5"
        let eval = try runA2Q(["eval", "--integer", export, "--data", data, "--limit", "40", "--outputs", outputs,
                               "--outputs-accumulators"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let (status, output) = try python("integer_forward.py", [export, data, "40", run + "/numpy.bin", "--outputs", outputs])
        #expect(status == 0 && output.contains("compared 11 accumulators"), "\(output)")
    }
}
