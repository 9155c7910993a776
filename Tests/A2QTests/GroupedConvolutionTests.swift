import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// A small MobileNet-style model file for Fashion-MNIST: an ordinary stem conv, a grouped 3×3
/// conv (16 → 32 in 4 groups: 4 input and 8 output channels per group), a strided depthwise
/// 3×3 conv (groups = channels) and a pointwise 1×1 conv, each with BatchNorm, ReLU and a
/// quantizer; max pools and a classifier, so that the int8 plan (not only the reference path)
/// runs it.
enum GroupedModel {
    static let json = """
        {"format": "a2q-model", "version": 1, "name": "tiny-mobilenet", "layers": [
          {"type": "conv", "name": "conv1", "out": 16, "kernel": 3, "bias": false},
          {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
          {"type": "maxpool", "name": "pool1"},
          {"type": "conv", "name": "grouped", "out": 32, "kernel": 3, "groups": 4, "bias": false},
          {"type": "batchnorm", "name": "bn2"}, {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
          {"type": "conv", "name": "depthwise", "out": 32, "kernel": 3, "stride": 2, "groups": 32},
          {"type": "batchnorm", "name": "bn3"}, {"type": "relu", "name": "relu3"}, {"type": "quant", "name": "act3"},
          {"type": "conv", "name": "pointwise", "out": 32, "kernel": 1, "bias": false},
          {"type": "batchnorm", "name": "bn4"}, {"type": "relu", "name": "relu4"}, {"type": "quant", "name": "act4"},
          {"type": "maxpool", "name": "pool2"}, {"type": "flatten", "name": "flatten"},
          {"type": "linear", "name": "fc"}]}
        """

    /// The model file in a fresh folder.
    static func write(_ text: String = json, name: String = "tiny-mobilenet") throws -> String {
        let path = temporaryFolder("grouped-model") + "/\(name).json"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// `(name, groups, weight shape)` of the grouped layers: `[out, in/groups, k, k]`, so that each
    /// output channel's dot product has K = (in/groups)·k·k inputs.
    static let groupedLayers = [("grouped", 4, [32, 16 / 4, 3, 3]), ("depthwise", 32, [32, 32 / 32, 3, 3])]
}

@Suite("Grouped and depthwise convolution: model files, training, the integer engine, verify and exports", .serialized)
struct GroupedConvolutionTests {
    @Test("a model file's conv takes groups: weights [out, in/groups, k, k] (a2q model --parameters), the file round-trips with groups kept and 1 left out, and a groups that does not divide the channels is refused naming the layer")
    func modelFile() throws {
        let path = try GroupedModel.write()
        let listed = try runA2Q(["model", path, "--parameters"])
        #expect(listed.status == 0, "\(listed.output)")
        for line in ["conv1.weight [16, 1, 3, 3]", "grouped.weight [32, 4, 3, 3]", "depthwise.weight [32, 1, 3, 3]",
                     "depthwise.bias [32]", "pointwise.weight [32, 32, 1, 1]"] {
            #expect(listed.output.contains(line), "\(line): \(listed.output)")
        }
        let printed = try runA2Q(["model", path])
        #expect(printed.status == 0, "\(printed.output)")
        let description = try ModelDescription.load(path: path)
        let decoded = try ModelDescription.decode(Data(printed.output.utf8), source: "printed")
        #expect(decoded == description)
        let groups = decoded.layers.compactMap { ($0.op as? ConvOp).map { ($0.name, $0.layer.groups) } }
        #expect(groups.map(\.0) == ["conv1", "grouped", "depthwise", "pointwise"] && groups.map(\.1) == [1, 4, 32, 1], "\(groups)")
        #expect(printed.output.components(separatedBy: "\"groups\"").count == 3, "groups 1 is not written: \(printed.output)")

        // The weight quantizers constrain, and EP-init projects, each channel's K = (in/groups)·k² weights.
        var config = TrainConfig()
        config.model = ModelName(rawValue: path)
        config.quantizer = .a2qPlus
        let model = try ModelBuilder.build(config, quantized: true, inputShape: [1, 28, 28])
        #expect(model.quantizedLayers.map(\.name) == ["conv1", "grouped", "depthwise", "pointwise", "fc"])
        #expect(model.quantizedLayers.map(\.quantizer.fanIn) == [9, 4 * 9, 9, 32, 32 * 3 * 3])
        #expect(model.constrainedLayers.map(\.name) == ["grouped", "depthwise", "pointwise"])

        for (change, fragments) in [(("\"groups\": 4", "\"groups\": 3"), ["grouped: groups 3", "16 input and 32 output channels"]),
                                    (("\"groups\": 4", "\"groups\": 0"), ["grouped: groups 0"]),
                                    (("\"out\": 32, \"kernel\": 3, \"groups\": 4", "\"out\": 30, \"kernel\": 3, \"groups\": 4"),
                                     ["grouped: groups 4", "16 input and 30 output channels"]),
                                    (("\"stride\": 2, \"groups\": 32", "\"stride\": 2, \"groups\": 64"), ["depthwise: groups 64"])] {
            let bad = try GroupedModel.write(GroupedModel.json.replacingOccurrences(of: change.0, with: change.1), name: "bad")
            let checked = try runA2Q(["model", bad])
            #expect(checked.status == 1, "\(change): \(checked.output)")
            for fragment in fragments { #expect(checked.output.contains(fragment), "\(change): \(checked.output)") }
            let folder = temporaryFolder("grouped-refused")
            let train = try runA2Q(["train", "--model", bad, "--out", folder + "/run", "--epochs", "1"])
            #expect(train.status == 1 && train.output.contains(fragments[0]), "\(train.output)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/run"), "no run folder")
        }
    }

    @Test("the integer model refuses a conv2d whose groups do not divide its output channels, a linear layer with groups, and an input that does not have groups · in/groups channels")
    func integerModelChecksGroups() throws {
        let format = InputFormat(bits: 8, signed: false)
        func conv(out: Int, perGroup: Int, groups: Int, kind: IntegerLayer.Kind = .conv2d) -> IntegerLayer {
            let shape = kind == .conv2d ? [out, perGroup, 1, 1] : [out, perGroup]
            var layer = IntegerLayer(name: "dw", kind: kind, shape: shape, weights: [Int32](repeating: 1, count: out * perGroup),
                                     quantizer: "a2q", weightBits: 8, accumulatorBits: 16, input: format, inputScale: 1,
                                     weightScale: [Float](repeating: 1, count: out), bias: [Float](repeating: 0, count: out),
                                     multiplier: [Float](repeating: 1, count: out), offset: [Float](repeating: 0, count: out),
                                     l1Bound: nil, rounding: "toward_zero", foldedBatchNorm: nil)
            layer.groups = groups
            return layer
        }
        func model(_ layer: IntegerLayer, input: [Int]) throws -> IntegerModel {
            let op: any IntegerOperation = layer.kind == .conv2d ? IntegerConv(layer: layer) : IntegerLinear(layer: layer)
            return try IntegerModel(model: "t", classes: 0, inputShape: input, ops: [IntegerInput(format: format, scale: 1), op,
                                                                                        IntegerQuantize(name: "q", format: format, scale: 1)])
        }
        // Depthwise 8 → 8 with a 1×1 kernel is a valid (restoration-shaped) model; its accumulators' K is 1.
        let valid = try model(conv(out: 3, perGroup: 1, groups: 3), input: [3, 4, 4])
        #expect(valid.layers.first?.fanIn == 1 && valid.layers.first?.inChannels == 3)
        for (layer, input, fragment) in [(conv(out: 3, perGroup: 1, groups: 2), [2, 4, 4], "groups 2 does not divide its 3 output channels"),
                                         (conv(out: 4, perGroup: 2, groups: 2), [3, 4, 4], "in 2 groups"),
                                         (conv(out: 3, perGroup: 3, groups: 3, kind: .linear), [3], "not a convolution")] {
            do {
                _ = try model(layer, input: input)
                Issue.record("accepted \(layer.shape) in \(layer.groups) groups on \(input)")
            } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
    }

    /// The int8 plan runs a grouped layer as its block-diagonal dense form; one whose dense form
    /// would exceed 2^26 weights (a 3×3 depthwise conv over 4,096 channels: 4,096 × 36,864) sends
    /// the model to the reference path, and both give the same scores.
    @Test("a depthwise layer too large for the block-diagonal int8 plan runs the model on the reference path; a small one runs on the plan with the reference path's scores")
    func largeGroupedLayerFallsBack() throws {
        let format = InputFormat(bits: 8, signed: false)
        func layer(_ name: String, kind: IntegerLayer.Kind, shape: [Int], groups: Int, seed: Int32) -> IntegerLayer {
            let count = shape.reduce(1, *), out = shape[0]
            var layer = IntegerLayer(name: name, kind: kind, shape: shape, weights: (0..<count).map { Int32($0 % 7) - 3 + seed % 2 },
                                     quantizer: "a2q", weightBits: 8, accumulatorBits: 32, input: format, inputScale: 1,
                                     weightScale: [Float](repeating: 1, count: out), bias: [Float](repeating: 0, count: out),
                                     multiplier: [Float](repeating: 1 / 64, count: out), offset: [Float](repeating: 0, count: out),
                                     l1Bound: nil, rounding: "toward_zero", foldedBatchNorm: nil)
            layer.groups = groups
            if kind == .conv2d { layer.padding = 1 }
            return layer
        }
        for channels in [4096, 64] {
            let model = try IntegerModel(model: "t", classes: 2, inputShape: [channels, 3, 3], ops: [
                IntegerInput(format: format, scale: 1), IntegerConv(layer: layer("dw", kind: .conv2d, shape: [channels, 1, 3, 3], groups: channels, seed: 0)),
                IntegerQuantize(name: "q", format: format, scale: 1), IntegerFlatten(),
                IntegerLinear(layer: layer("fc", kind: .linear, shape: [2, channels * 9], groups: 1, seed: 1))])
            let engine = try IntegerEngine(model: model)
            let reference = try IntegerEngine(model: model, kernels: IntegerKernelChoice(accumulation: .reference))
            if channels == 4096 {
                #expect(engine.referenceReason?.contains("dw: its block-diagonal dense form (4096 groups)") == true, "\(engine.referenceReason ?? "plan")")
            } else {
                #expect(engine.referenceReason == nil, "\(engine.referenceReason ?? "")")
            }
            let pixels = (0..<(2 * channels * 9)).map { UInt8(($0 * 37) % 256) }
            let scores = pixels.withUnsafeBufferPointer { (engine.logits(pixels: $0, count: 2), reference.logits(pixels: $0, count: 2)) }
            #expect(scores.0 == scores.1 && scores.0.count == 4 && scores.0.contains { $0 != 0 }, "\(channels): \(scores)")
        }
    }

    /// Trains the grouped model with `quantizer` (a short run on a 4,000-image subset).
    static func train(_ quantizer: String) throws -> String {
        let path = try GroupedModel.write()
        var arguments = ["--model", path, "--quantizer", quantizer, "--epochs", "1"]
        if quantizer == "a2q" || quantizer == "a2q+" { arguments += ["--float-epochs", "1", "--accumulator-bits", "16"] }
        return try trainedModel("grouped-\(quantizer)", arguments)
    }

    @Test("float, qat, a2q and a2q+ train the grouped model; the quantized ones export, verify proves every channel with K = (in/groups)·k·k, the integer engine's predictions equal the fake-quantized model's on ≥ 99.9% of the 10,000 test images, and every accumulator of 64 images equals NumPy's grouped convolution with the int8 kernels and the reference path alike",
          arguments: ["float", "qat", "a2q", "a2q+"])
    func trainsExportsAndRunsExactly(quantizer: String) throws {
        let folder = try Self.train(quantizer)
        let checkpoint = folder + "/final.h5"
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/summary.json"))) as? [String: Any])
        let accuracy = try #require(summary["test_accuracy"] as? Double, "\(summary)")
        #expect(accuracy > 0.5, "\(quantizer): test accuracy \(accuracy)")
        guard quantizer != "float" else {
            let eval = try runA2Q(["eval", checkpoint, "--limit", "500"], timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            return
        }
        let export = folder + "/model.h5"
        let exported = try runA2Q(["export", checkpoint, "--out", export])
        #expect(exported.status == 0, "\(exported.output)")

        // verify: per channel, the exact worst case of that channel's K = (in/groups)·k·k weights.
        let verify = try runA2Q(["verify", export, "--json"])
        #expect(verify.status == 0, "\(verify.output)")
        let proof = try #require(try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any])
        let verdicts = try #require(proof["layers"] as? [[String: Any]])
        let layers = try HDF5File.openForReading(export).openGroup("layers")
        for (name, groups, expected) in GroupedModel.groupedLayers {
            let group = try layers.openGroup(name)
            #expect(try group.intAttribute("groups") == groups)
            let (weights, shape) = try group.read("weight_int", as: Int32.self)
            let k = expected.dropFirst().reduce(1, *)
            #expect(shape == expected, "\(name): \(shape)")
            let verdict = try #require(verdicts.first { $0["name"] as? String == name })
            let channels = try #require(verdict["channels"] as? [[String: Any]])
            #expect(channels.count == 32)
            for (o, channel) in channels.enumerated() {
                let row = weights[(o * k)..<((o + 1) * k)]
                let positive = row.filter { $0 > 0 }.reduce(0) { $0 + Int($1) }, negative = row.filter { $0 < 0 }.reduce(0) { $0 + Int($1) }
                // Unsigned 8-bit inputs [0, 255]: acc_max = 255·α, acc_min = 255·β.
                #expect(channel["acc_max"] as? Int == 255 * positive && channel["acc_min"] as? Int == 255 * negative,
                        "\(name) channel \(o): \(channel), α \(positive), β \(negative)")
            }
            if quantizer != "qat" { #expect(verdict["overflow_free"] as? Bool == true, "\(verdict)") }
        }
        #expect(try runA2Q(["inspect", export]).output.contains("depthwise"))

        // The integer engine against the fake-quantized graph, on the whole test set.
        var predictions: [[Int32]] = []
        for (name, arguments) in [("fake", [String]()), ("integer", ["--integer"])] {
            let outputs = folder + "/\(name).h5"
            let eval = try runA2Q(["eval", checkpoint, "--outputs", outputs] + arguments, timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            predictions.append(try HDF5File.openForReading(outputs).read("predictions", as: Int32.self).values)
        }
        let differing = zip(predictions[0], predictions[1]).filter { $0 != $1 }.count
        #expect(predictions[1].count == 10000 && differing <= 10, "\(differing) of 10000 predictions differ")

        // Every accumulator (reference path) and every kernel's scores against NumPy: the int8 plan
        // runs grouped layers as block-diagonal dense ones (VNNI, AVX2, scalar, and the 16-bit
        // lanes on the layers proven to fit 16 bits).
        var runs: [(String, [String])] = [("reference", ["--kernel", "reference", "--outputs-accumulators"])]
        for kernel in ["auto", "avx2", "scalar"] where kernel != "avx2" || CPU.tier >= .avx2 { runs.append((kernel, ["--kernel", kernel])) }
        if quantizer != "qat" && CPU.tier >= .avx2 { runs.append(("int16", ["--int16-layers", "proven"])) }
        var scores: [String: [UInt32]] = [:]
        for (label, arguments) in runs {
            let outputs = folder + "/accumulators-\(label).h5"
            let eval = try runA2Q(["eval", "--integer", export, "--limit", "64", "--outputs", outputs, "--json"] + arguments, timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "64", folder + "/numpy-\(label).bin",
                                                                     "--outputs", outputs])
            #expect(status == 0, "\(label): the engine's outputs differ from NumPy's: \(output)")
            #expect(label != "reference" || output.contains("compared 5 accumulators"), "\(output)")
            scores[label] = try HDF5File.openForReading(outputs).read("scores", as: Float.self).values.map(\.bitPattern)
            if label == "int16" {
                let kernels = (try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])?["kernels"]
                #expect("\(kernels ?? "")".contains("int16"), "no layer ran on 16-bit lanes: \(eval.output)")
            }
        }
        for (label, values) in scores { #expect(values == scores["reference"], "\(label): scores differ from the reference path's") }
    }

    /// Squeezed to 12 bits, every hidden layer of a qat model overflows: the register simulation
    /// of grouped layers (partial sums of a channel's own group, in weight order) against NumPy.
    @Test("overflow simulation of grouped and depthwise layers: wrap, saturate and wide equal a NumPy P-bit register (counts and accumulators), int8 kernels and reference path")
    func overflowSimulation() throws {
        let folder = try Self.train("qat")
        let export = folder + "/model.h5"
        #expect(try runA2Q(["export", folder + "/final.h5", "--out", export]).status == 0)
        let pinned = ["conv1=32", "grouped=12", "depthwise=12", "pointwise=12", "fc=32"]
        for mode in ["wrap", "saturate", "wide"] {
            for kernel in ["auto", "reference"] {
                let outputs = folder + "/\(mode)-\(kernel).h5"
                let eval = try runA2Q(["eval", "--integer", export, "--accumulator-bits", "12", "--overflow", mode, "--kernel", kernel,
                                       "--limit", "32", "--json", "--outputs", outputs], timeout: 300)
                #expect(eval.status == 0, "\(eval.output)")
                let result = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
                let layers = try #require(result["layers"] as? [[String: Any]])
                #expect(layers.map { "\($0["name"] ?? "")=\($0["accumulator_bits"] ?? "")" } == pinned)
                let counts = folder + "/\(mode)-\(kernel).json"
                let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "32", folder + "/\(mode)-\(kernel).bin",
                                                                         "--overflow", mode, "--counts", counts, "--outputs", outputs, "--bits"] + pinned)
                #expect(status == 0, "\(mode) \(kernel): \(output)")
                let numpy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: counts))) as? [String: [String: Int]])
                for layer in layers {
                    let name = layer["name"] as? String ?? ""
                    for key in ["dot_products", "final_overflows", "partial_overflows"] {
                        #expect(layer[key] as? Int == numpy[name]?[key], "\(mode) \(kernel) \(name) \(key): engine \(layer[key] ?? "-"), NumPy \(numpy[name]?[key] ?? -1)")
                    }
                }
                for name in ["grouped", "depthwise"] {
                    #expect((layers.first { $0["name"] as? String == name }?["partial_overflows"] as? Int ?? 0) > 0, "\(name) never overflows at 12 bits")
                }
            }
        }
    }

    @Test("QONNX and ONNX exports carry Conv's group: qonnx's executor and onnxruntime reproduce the engine (onnxruntime's scores bit for bit) on 1,000 test images, and qonnx sizes every grouped accumulator as a2q does")
    func exports() throws {
        let folder = try Self.train("a2q+")
        let checkpoint = folder + "/final.h5"
        for (format, file) in [("hdf5", "model.h5"), ("qonnx", "model.qonnx.onnx"), ("onnx", "model.onnx")] {
            let export = try runA2Q(["export", checkpoint, "--format", format, "--out", folder + "/" + file])
            #expect(export.status == 0, "\(format): \(export.output)")
        }
        let (status, output, json) = try onnxInterop(folder)
        #expect(status == 0, "\(output)")
        #expect(json["float32_exact"] as? String == "1" && (json["onnxruntime_scores_differing"] as? [Int])?.isEmpty == true, "\(output)")
        #expect(json["qonnx_accumulators_equal"] as? Bool == true, "\(output)")
        let layers = try #require(json["layers"] as? [String: [String: Any]])
        #expect(layers.count == 5 && layers.values.allSatisfy { $0["fits"] as? Bool == true }, "\(layers)")
        let groups = try #require(json["conv_groups"] as? [String: [String: Int]])
        for file in ["qonnx", "onnx"] {
            #expect(groups[file] == ["conv1.acc": 1, "grouped.acc": 4, "depthwise.acc": 32, "pointwise.acc": 1], "\(file): \(groups)")
        }
    }
}
