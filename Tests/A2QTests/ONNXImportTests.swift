import A2QCheckpoint
import A2QCore
import A2QInteger
import A2QTrain
import Foundation
import Testing

/// PyTorch models exported to ONNX for the importer's tests, made once per test run by
/// `Tests/Python/torch_models.py` (torch from `Launch/setup-torch.sh`).
enum TorchModels {
    /// Why the PyTorch tests cannot run here (nil: torch, onnx and onnxruntime import).
    static let unavailable: String? = {
        guard let result = try? MPIRun.runProcess("/usr/bin/env", ["python3", "-c", "import torch, onnx, onnxruntime"], timeout: 120),
              result.status == 0 else {
            return "torch is not importable here (Launch/setup-torch.sh installs the CPU build): the PyTorch-exported models cannot be made"
        }
        return nil
    }()

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Python/torch_models.py").path

    /// `torch_models.py ARGUMENTS` (fails the calling test when it fails).
    static func run(_ arguments: [String], timeout: Double = 900) throws -> String {
        let result = try MPIRun.runProcess("/usr/bin/env", ["python3", script] + arguments, timeout: timeout)
        guard result.status == 0 else {
            throw A2QError("torch_models.py \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output.suffix(2000))")
        }
        return result.output
    }

    /// Both exporters at opset 17, 1,000 inputs each (the faithfulness models), and ResNet-20 from
    /// the TorchScript exporter without constant folding (BatchNormalization nodes kept).
    static let faithful: Result<String, A2QError> = {
        let folder = temporaryFolder("onnx-faithful")
        return export(folder, models: ["resnet20_fmnist", "small_cnn", "small_cnn_view", "small_cnn_nopad", "norm_muladd_nopad_cnn",
                                       "norm_scalar_cnn"], samples: 1000)
            .flatMap { export($0, models: ["resnet20_fmnist", "small_cnn_view"], samples: 1000, exporters: ["torchscript_nofold"]) }
    }()
    /// Grouped convolution: the MobileNet-style block (depthwise with channel multipliers 1 and 2,
    /// pointwise, grouped with a bias) and its variant with a normalisation folded into a
    /// depthwise stem, both exporters at opset 17, 1,000 inputs each.
    static let grouped: Result<String, A2QError> = export(temporaryFolder("onnx-grouped"), models: ["mobilenet_block", "norm_muladd_mobilenet"],
                                                          samples: 1000)
    /// Window average pooling (nn.AvgPool2d): the small CNN with 2×2 pools and the model with a
    /// padded 3×3 stride-2 pool, a ResNet-D shortcut (AvgPool2d(2) + 1×1 conv) and a 2×2 pool
    /// before the classifier, both exporters at opset 17, 1,000 inputs each.
    static let averagePools: Result<String, A2QError> = export(temporaryFolder("onnx-avgpool"), models: ["avgpool_net", "small_cnn_view_avg"],
                                                               samples: 1000)
    /// The 11.17M-parameter ResNet-18 for 32×32 inputs, both exporters, 16 inputs.
    static let resnet18: Result<String, A2QError> = export(temporaryFolder("onnx-resnet18"), models: ["resnet18_32"], samples: 16)
    /// Graphs to refuse: `broken` (missing initializer, truncated, not ONNX, empty, missing external
    /// data, BatchNorm in training form or after a ReLU) and exports with unsupported constructs.
    static let refused: Result<String, A2QError> = {
        let folder = temporaryFolder("onnx-refused")
        do {
            _ = try run(["broken", folder + "/broken"])
            _ = try run(["export", folder, "--exporters", "torchscript", "--samples", "2", "--models", "sigmoid_cnn",
                         "dynamic_hw_resnet20", "concat_cnn", "grouped_cnn", "avgpool_exclude_pad", "avgpool_ceil",
                         "avgpool_rectangular"])
            return .success(folder)
        } catch {
            return .failure(error as? A2QError ?? A2QError("\(error)"))
        }
    }()

    /// `torch_models.py export FOLDER` of `models` at opset 17 (both exporters unless `exporters`).
    static func export(_ folder: String, models: [String], samples: Int, exporters: [String] = ["torchscript", "dynamo"]) -> Result<String, A2QError> {
        do {
            _ = try run(["export", folder, "--opsets", "17", "--samples", "\(samples)", "--exporters"] + exporters + ["--models"] + models)
            return .success(folder)
        } catch {
            return .failure(error as? A2QError ?? A2QError("\(error)"))
        }
    }

    /// `NAME.npz`'s inputs and onnxruntime's outputs (float32, as written by `torch_models.py raw`).
    static func samples(_ stem: String) throws -> (input: [Float], inputShape: [Int], output: [Float]) {
        let printed = try run(["raw", stem + ".npz"], timeout: 120)
        let json = try #require(printed.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        let shape = try #require(json["input"] as? [Int])
        func floats(_ path: String) throws -> [Float] {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return (try floats(stem + ".input.f32"), shape, try floats(stem + ".ort.f32"))
    }

    /// The imported checkpoint's outputs for `input` (`[N, C, H, W]`), through the float build's forward.
    static func outputs(_ checkpoint: String, _ input: [Float], shape: [Int]) throws -> [Float] {
        let (model, _) = try ModelFiles.loadCheckpoint(checkpoint)
        let per = shape.dropFirst().reduce(1, *)
        var out: [Float] = []
        let x = Tensor(shape: [0])
        var start = 0
        while start < shape[0] {
            let n = min(100, shape[0] - start)
            x.reshape([n] + Array(shape.dropFirst()))
            for i in 0..<(n * per) { x.data[i] = input[start * per + i] }
            let y = model.network.forward(x, training: false)
            out += Array(UnsafeBufferPointer(start: y.data, count: y.count))
            start += n
        }
        return out
    }

    /// `max|a − b| / max|b|`, the measure of the issue (and of torch_models.py's own check).
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        let difference = zip(a, b).map { Double(abs($0 - $1)) }.max() ?? .infinity
        return difference / max(b.map { Double(abs($0)) }.max() ?? 0, 1e-30)
    }
}

@Suite("ONNX import of PyTorch models (issue 27)", .serialized)
struct ONNXImportTests {
    static let enabled = TorchModels.unavailable == nil
    static let reason = Comment(rawValue: TorchModels.unavailable ?? "")

    @Test("faithful: ResNet-20 (28×28×1), the small CNN, its x.view(x.size(0), -1) + bias-less Linear variant (TorchScript: the Shape→Gather→Unsqueeze→Concat→Reshape chain and MatMul) and a per-channel Mul/Add normalisation folded into an unpadded first conv, from both exporters at opset 17 (dynamo: opset 18, external data), and ResNet-20 and the view variant without constant folding (TorchScript: BatchNormalization nodes kept as a2q batchnorm layers, the weight Transpose and the chain's Unsqueeze of constants folded by the importer): the imported float model's outputs on 1,000 inputs equal onnxruntime's within 1e-4 relative",
          .enabled(if: enabled, reason),
          arguments: [("torchscript", "resnet20_fmnist"), ("torchscript", "small_cnn"), ("torchscript", "small_cnn_view"),
                      ("torchscript", "norm_muladd_nopad_cnn"), ("dynamo", "resnet20_fmnist"), ("dynamo", "small_cnn"),
                      ("dynamo", "small_cnn_view"), ("dynamo", "norm_muladd_nopad_cnn"), ("torchscript_nofold", "resnet20_fmnist"),
                      ("torchscript_nofold", "small_cnn_view")])
    func faithful(exporter: String, model: String) throws {
        let folder = try TorchModels.faithful.get() + "/\(exporter)/opset17"
        let checkpoint = temporaryFolder("import-\(model)") + "/float.h5"
        let result = try runA2Q(["import", "\(folder)/\(model).onnx", "--out", checkpoint])
        #expect(result.status == 0, "\(result.output)")
        let (input, shape, expected) = try TorchModels.samples("\(folder)/\(model)")
        #expect(shape[0] == 1000)
        let got = try TorchModels.outputs(checkpoint, input, shape: shape)
        let difference = TorchModels.relativeDifference(got, expected)
        print("faithfulness \(exporter) \(model): max relative difference \(difference) over \(shape[0]) inputs")
        #expect(got.count == expected.count && difference <= 1e-4, "\(exporter) \(model): \(difference)")
        if exporter == "torchscript_nofold" && model.hasPrefix("resnet") {
            #expect(result.output.contains("layer2_0.bn1") && result.output.contains("batchnorm  ← /layer2/layer2.0/bn1/BatchNormalization"),
                    "\(result.output)")
        }
        if model.hasPrefix("norm") {
            #expect(result.output.contains("folded the graph's normalisation") && !result.output.contains("note:"), "\(result.output)")
        }
    }

    @Test("grouped and depthwise convolutions (Conv group > 1): a MobileNet-style block (depthwise with channel multipliers 1 and 2, pointwise, grouped with a bias, BatchNorm after each) and the same with a per-channel Mul/Add normalisation folded into a depthwise unpadded stem, from both exporters at opset 17: a2q's conv with groups, weights [out, in/groups, k, k], and the imported float model's outputs on 1,000 inputs within 1e-4 relative of onnxruntime's",
          .enabled(if: enabled, reason),
          arguments: [("torchscript", "mobilenet_block"), ("dynamo", "mobilenet_block"), ("torchscript", "norm_muladd_mobilenet"),
                      ("dynamo", "norm_muladd_mobilenet")])
    func grouped(exporter: String, model: String) throws {
        let folder = try TorchModels.grouped.get() + "/\(exporter)/opset17"
        let checkpoint = temporaryFolder("import-\(model)") + "/float.h5"
        let result = try runA2Q(["import", "\(folder)/\(model).onnx", "--out", checkpoint])
        #expect(result.status == 0, "\(result.output)")
        let listed = try runA2Q(["model", checkpoint, "--parameters"])
        #expect(listed.status == 0, "\(listed.output)")
        let prefix = model.hasPrefix("norm") ? "net_" : ""
        for line in ["\(prefix)conv1.weight [12, \(model.hasPrefix("norm") ? 1 : 3), 3, 3]", "\(prefix)dw1.weight [12, 1, 3, 3]",
                     "\(prefix)pw1.weight [32, 12, 1, 1]", "\(prefix)dw2.weight [64, 1, 3, 3]", "\(prefix)grouped.weight [64, 16, 3, 3]",
                     "\(prefix)grouped.bias [64]"] {
            #expect(listed.output.contains(line), "\(exporter) \(model): \(line) in \(listed.output)")
        }
        let (input, shape, expected) = try TorchModels.samples("\(folder)/\(model)")
        #expect(shape == [1000, 3, 32, 32])
        let got = try TorchModels.outputs(checkpoint, input, shape: shape)
        let difference = TorchModels.relativeDifference(got, expected)
        print("faithfulness \(exporter) \(model): max relative difference \(difference) over \(shape[0]) inputs")
        #expect(got.count == expected.count && difference <= 1e-4, "\(exporter) \(model): \(difference)")
        if model.hasPrefix("norm") {
            #expect(result.output.contains("folded the graph's normalisation") && !result.output.contains("note:"), "\(result.output)")
        }
    }

    @Test("window average pooling (AveragePool, count_include_pad 1): nn.AvgPool2d(3, 2, padding=1) after the stem, an AvgPool2d(2) + 1×1 conv ResNet-D shortcut, AvgPool2d(2) before the classifier, and the small CNN's 2×2 pools, from both exporters at opset 17: a2q's avgpool with a quant after it, outputs on 1,000 inputs within 1e-4 relative of onnxruntime's; the imported model fine-tunes with A2Q+ and verify proves its pools",
          .enabled(if: enabled, reason),
          arguments: [("torchscript", "avgpool_net"), ("dynamo", "avgpool_net"), ("torchscript", "small_cnn_view_avg"),
                      ("dynamo", "small_cnn_view_avg")])
    func averagePool(exporter: String, model: String) throws {
        let folder = try TorchModels.averagePools.get() + "/\(exporter)/opset17"
        let onnx = "\(folder)/\(model).onnx"
        let scratch = temporaryFolder("import-\(model)")
        let checkpoint = scratch + "/float.h5"
        let result = try runA2Q(["import", onnx, "--out", checkpoint])
        #expect(result.status == 0, "\(result.output)")
        let tree = try runA2Q(["model", onnx])
        let description = try ModelDescription.decode(Data(tree.output.utf8), source: "a2q model")
        func pools(_ nodes: [ModelDescription.Node]) -> [(AvgPoolOp, String?)] {
            nodes.enumerated().flatMap { index, node -> [(AvgPoolOp, String?)] in
                if let pool = node.op as? AvgPoolOp { return [(pool, index + 1 < nodes.count ? type(of: nodes[index + 1].op).type : nil)] }
                if let block = node.op as? ResidualOp { return pools(block.body) + pools(block.shortcut ?? []) + pools(block.after) }
                return []
            }
        }
        let found = pools(description.layers)
        #expect(found.allSatisfy { $0.1 == "quant" }, "a quant follows every avgpool: \(found)")
        let windows = found.map(\.0.window)
        let twoByTwo = PoolWindow(kernel: 2, stride: 2, padding: 0)
        let expected: [PoolWindow] = model == "avgpool_net" ? [PoolWindow(kernel: 3, stride: 2, padding: 1), twoByTwo, twoByTwo] : [twoByTwo, twoByTwo]
        #expect(windows == expected, "\(windows)")
        let (input, shape, outputs) = try TorchModels.samples("\(folder)/\(model)")
        #expect(shape[0] == 1000)
        let difference = TorchModels.relativeDifference(try TorchModels.outputs(checkpoint, input, shape: shape), outputs)
        print("faithfulness \(exporter) \(model): max relative difference \(difference) over \(shape[0]) inputs")
        #expect(difference <= 1e-4, "\(exporter) \(model): \(difference)")
        guard exporter == "torchscript", model == "avgpool_net" else { return }
        let run = scratch + "/a2q+"
        let train = try runA2Q(["train", "--model", onnx, "--init-from", checkpoint, "--quantizer", "a2q+", "--accumulator-bits", "16",
                                "--data", "synthetic", "--max-steps", "20", "--epochs", "1", "--calibration-batches", "2", "--log-every", "10",
                                "--out", run], timeout: 600)
        #expect(train.status == 0, "\(train.output)")
        let verify = try runA2Q(["verify", run + "/final.h5", "--json"])
        #expect(verify.status == 0, "\(verify.output)")
        let layers = (try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]] ?? []
        let proven = layers.filter { $0["quantizer"] as? String == "avgpool" }.map { ($0["name"] as? String ?? "", $0["acc_max"] as? Int ?? 0) }
        #expect(proven.map(\.1) == [9 * 255, 4 * 255, 4 * 255], "the pools' worst cases: \(proven)")
    }

    @Test("names and the rest of a2q: the imported ResNet-20's parameters follow PyTorch's module names (layer2_0.conv1, layer2_0.shortcut.0, fc), `a2q model --parameters` lists them from the checkpoint and from the .onnx, the tree has a2q's quantization points (a signed quant ending each residual branch, an unsigned one after each ReLU and after the pool), and `train --model MODEL.onnx --init-from float.h5` fine-tunes it with A2Q+ (P = 16, layer2_0.conv1 at P = 14), exports QONNX and verifies",
          .enabled(if: enabled, reason))
    func namesAndPipeline() throws {
        let onnx = try TorchModels.faithful.get() + "/torchscript/opset17/resnet20_fmnist.onnx"
        let folder = temporaryFolder("import-pipeline")
        let checkpoint = folder + "/float.h5"
        let imported = try runA2Q(["import", onnx, "--out", checkpoint])
        #expect(imported.status == 0, "\(imported.output)")
        let names = try Set(modelTensors(checkpoint).keys)
        for name in ["conv1/weight", "conv1/bias", "layer1_0.conv1/weight", "layer2_0.conv1/weight", "layer2_0.shortcut.0/weight",
                     "layer3_2.conv2/bias", "fc/weight", "fc/bias"] {
            #expect(names.contains(name), "\(name) not in \(names.sorted())")
        }
        for source in [checkpoint, onnx] {
            let listing = try runA2Q(["model", source, "--parameters"])
            #expect(listing.status == 0 && listing.output.contains("layer2_0.shortcut.0.weight [32, 16, 1, 1]"), "\(listing.output)")
        }
        let tree = try runA2Q(["model", onnx])
        let description = try ModelDescription.decode(Data(tree.output.utf8), source: "a2q model")
        let block = try #require(description.layers.first { $0.name == "layer2_0" }?.op as? ResidualOp)
        #expect((block.body.last?.op as? QuantOp)?.signed == true && (block.shortcut?.last?.op as? QuantOp)?.signed == true)
        #expect(block.after.map { type(of: $0.op).type } == ["relu", "quant"])
        let kinds = description.layers.map { type(of: $0.op).type }
        #expect(kinds.suffix(3) == ["globalavgpool", "quant", "linear"], "\(kinds)")

        let run = folder + "/a2q+"
        let train = try runA2Q(["train", "--model", onnx, "--init-from", checkpoint, "--quantizer", "a2q+", "--accumulator-bits", "16",
                                "--layer-accumulator-bits", "layer2_0.conv1=14", "--data", "synthetic", "--max-steps", "20", "--epochs", "1",
                                "--calibration-batches", "2", "--log-every", "10", "--out", run], timeout: 600)
        #expect(train.status == 0 && train.output.contains("initialising from \(checkpoint)"), "\(train.output)")
        let export = folder + "/model.qonnx.onnx"
        let exported = try runA2Q(["export", run + "/final.h5", "--format", "qonnx", "--out", export])
        #expect(exported.status == 0, "\(exported.output)")
        let verify = try runA2Q(["verify", run + "/final.h5", "--json"])
        #expect(verify.status == 0 && verify.output.contains("layer2_0.conv1"), "\(verify.output)")
        let proof = try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any]
        let layers = proof?["layers"] as? [[String: Any]] ?? []
        #expect(layers.first { $0["name"] as? String == "layer2_0.conv1" }?["accumulator_bits"] as? Int == 14, "\(verify.output)")
    }

    @Test("input conventions: a model trained on raw 0–255 values normalised outside the graph (--input-scale 255 --input-mean 0.5 --input-std 0.25) takes a2q's p = pixel/255 after the fold, within 1e-4 of onnxruntime on the normalised inputs; the conventions and the fold are stored in /import; a normalisation before a padded first conv is folded with the border effect reported",
          .enabled(if: enabled, reason))
    func inputConventions() throws {
        let folder = try TorchModels.faithful.get() + "/torchscript/opset17"
        let checkpoint = temporaryFolder("import-conventions") + "/float.h5"
        let result = try runA2Q(["import", folder + "/small_cnn_nopad.onnx", "--out", checkpoint, "--input-scale", "255",
                                 "--input-mean", "0.5", "--input-std", "0.25"])
        #expect(result.status == 0 && result.output.contains("folded the input conventions"), "\(result.output)")
        let (x, shape, expected) = try TorchModels.samples(folder + "/small_cnn_nopad")
        // x = (255·p − 0.5) / 0.25, so a2q's input is p = (0.25·x + 0.5) / 255.
        let p = x.map { (0.25 * $0 + 0.5) / 255 }
        let difference = TorchModels.relativeDifference(try TorchModels.outputs(checkpoint, p, shape: shape), expected)
        print("faithfulness with --input-scale/--input-mean/--input-std: max relative difference \(difference)")
        #expect(difference <= 1e-4, "\(difference)")
        let file = try HDF5File.openForReading(checkpoint)
        let group = try file.openGroup("import")
        #expect(try group.stringAttribute("input_conventions") == #"{"mean":[0.5],"scale":255,"std":[0.25]}"#)
        #expect(try group.stringAttribute("folded_into") == "conv1")
        #expect(try group.read("folded_scale", as: Double.self).values == [1020])
        let inspect = try runA2Q(["inspect", checkpoint])
        #expect(inspect.status == 0 && inspect.output.contains("imported from small_cnn_nopad.onnx")
                && inspect.output.contains("input conventions scale 255.0, mean 0.5, std 0.25; folded into conv1"), "\(inspect.output)")

        let padded = try runA2Q(["import", folder + "/norm_scalar_cnn.onnx", "--out", checkpoint, "--overwrite"])
        #expect(padded.status == 0 && padded.output.contains("folded the graph's normalisation (node '/Sub' (Sub), node '/Div' (Div)) into net_conv1")
                && padded.output.contains("note: exact inside the image"), "\(padded.output)")
        let (pixels, paddedShape, reference) = try TorchModels.samples(folder + "/norm_scalar_cnn")
        let border = TorchModels.relativeDifference(try TorchModels.outputs(checkpoint, pixels, shape: paddedShape), reference)
        print("norm_scalar_cnn (normalisation folded into a padded conv): max relative difference \(border) (the border effect)")
        #expect(try HDF5File.openForReading(checkpoint).openGroup("import").finiteAttribute("border_change") > 0)
    }

    @Test("ResNet-18 for 32×32 (11.17M parameters, 44.7 MB) from both exporters: imported in under 2 s and under 3× the model's size in memory (peak RSS above a small model's import), outputs within 1e-4 of onnxruntime",
          .enabled(if: enabled, reason), arguments: ["torchscript", "dynamo"])
    func resnet18(exporter: String) throws {
        let folder = try TorchModels.resnet18.get() + "/\(exporter)/opset17"
        let scratch = temporaryFolder("import-resnet18")
        let checkpoint = scratch + "/float.h5"
        let result = try Self.measured(["import", folder + "/resnet18_32.onnx", "--out", checkpoint, "--quiet"])
        #expect(result.status == 0, "\(result.output)")
        let bytes = try (FileManager.default.attributesOfItem(atPath: folder + "/resnet18_32.onnx")[.size] as? Int ?? 0)
            + ((try? FileManager.default.attributesOfItem(atPath: folder + "/resnet18_32.onnx.data")[.size] as? Int) ?? 0)
        print("ResNet-18 (\(exporter)) import: \(String(format: "%.2f", result.seconds)) s wall, peak RSS \(result.peakKB.map { "\($0) KB" } ?? "not measured"), model \(bytes) bytes")
        #expect(result.seconds < 2, "\(result.seconds) s")
        if let peak = result.peakKB {
            // The process's own footprint (libraries, runtime): the import of a 0.4 MB model.
            let small = try Self.measured(["import", try TorchModels.faithful.get() + "/torchscript/opset17/small_cnn.onnx", "--out", scratch + "/small.h5", "--quiet"])
            let used = (peak - (small.peakKB ?? 0)) * 1024
            print("ResNet-18 (\(exporter)) import memory: \(used / 1_000_000) MB above a small model's import (\(small.peakKB ?? 0) KB) = \(String(format: "%.2f", Double(used) / Double(bytes)))× the model")
            #expect(used < 3 * bytes, "\(used) bytes for a \(bytes)-byte model")
        }
        let (input, shape, expected) = try TorchModels.samples(folder + "/resnet18_32")
        let difference = TorchModels.relativeDifference(try TorchModels.outputs(checkpoint, input, shape: shape), expected)
        print("faithfulness \(exporter) resnet18_32: max relative difference \(difference) over \(shape[0]) inputs")
        #expect(difference <= 1e-4, "\(difference)")
    }

    @Test("round trip without torch: an a2q float model (trained a few steps, so BatchNorm statistics are not the identity) written to ONNX by an independent script (Tests/Python/a2q_to_onnx.py: h5py + onnx.helper) and imported back gives onnxruntime's outputs within 1e-4 relative (resnet8: residual blocks, projection shortcuts, global pool; cnn-bn: max pools, flatten, BatchNorm after a linear layer; tiny-mobilenet: grouped and depthwise convs; tiny-avgpool: window average pools, padded and in a shortcut)",
          arguments: ["resnet8", "cnn-bn", "tiny-mobilenet", "tiny-avgpool"])
    func roundTrip(model: String) throws {
        let folder = temporaryFolder("import-round-trip-\(model)")
        let source = model == "tiny-mobilenet" ? try GroupedModel.write() : model == "tiny-avgpool" ? try AveragePoolModel.write() : model
        let train = try runA2Q(["train", "--model", source, "--quantizer", "float", "--data", "synthetic", "--max-steps", "10", "--epochs", "1",
                                "--log-every", "10", "--out", folder + "/run"], timeout: 300)
        #expect(train.status == 0, "\(train.output)")
        let onnx = folder + "/\(model).onnx"
        let (status, printed) = try python("a2q_to_onnx.py", [folder + "/run/final.h5", onnx, "--samples", "200"])
        #expect(status == 0, "\(printed)")
        let shape = try #require(printed.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }?["input"] as? [Int],
                                 "\(printed)")
        let imported = try runA2Q(["import", onnx, "--out", folder + "/float.h5"])
        #expect(imported.status == 0, "\(imported.output)")
        func floats(_ path: String) throws -> [Float] {
            try Data(contentsOf: URL(fileURLWithPath: path)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        let stem = folder + "/\(model)"
        let difference = TorchModels.relativeDifference(try TorchModels.outputs(folder + "/float.h5", try floats(stem + ".input.f32"), shape: shape),
                                                        try floats(stem + ".ort.f32"))
        print("round trip \(model): max relative difference \(difference) over \(shape[0]) inputs")
        #expect(difference <= 1e-4, "\(model): \(difference)")
    }

    /// `a2q ARGUMENTS` with its wall time and, where /usr/bin/time exists, its peak RSS.
    static func measured(_ arguments: [String]) throws -> (status: Int32, output: String, seconds: Double, peakKB: Int?) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else {
            let result = try runA2Q(arguments)
            return (result.status, result.output, result.seconds, nil)
        }
        let result = try MPIRun.runProcess("/usr/bin/time", ["-f", "peak-rss-kb %M", MPIRun.binary] + arguments, timeout: 120)
        let peak = Claims.lines(result.output, containing: "peak-rss-kb").last.flatMap { Int($0.split(separator: " ").last ?? "") }
        return (result.status, result.output, result.seconds, peak)
    }

    @Test("unsupported graphs are refused before anything is written: exit 1, a message naming the node (or the file and what is wrong with it), no output file",
          .enabled(if: enabled, reason),
          arguments: [
            ("sigmoid_cnn.onnx", ["node '/Sigmoid' (Sigmoid) is not supported", "a2q imports Conv"]),
            ("dynamic_hw_resnet20.onnx", ["the input input has a dynamic", "height 'height', width 'width'"]),
            ("concat_cnn.onnx", ["node '/Concat' (Concat) concatenates", "no concatenation"]),
            ("grouped_cnn.onnx", ["node '/dilated/Conv' (Conv) is dilated (dilation 2)"]),
            ("avgpool_exclude_pad.onnx", ["node '/pool/AveragePool' (AveragePool) leaves its padding out of the divisor (count_include_pad = 0",
                                          "count_include_pad=True"]),
            ("avgpool_ceil.onnx", ["node '/pool/AveragePool' (AveragePool) uses ceil_mode = 1"]),
            ("avgpool_rectangular.onnx", ["node '/pool/AveragePool' (AveragePool) has kernel_shape [2, 3]; a2q's average pool is square"]),
            ("broken/missing_initializer.onnx", ["node '/conv2/Conv' (Conv): input conv2.weight is neither an initializer nor computed"]),
            ("broken/truncated.onnx", ["is not a readable ONNX model", "truncated"]),
            ("broken/not_onnx.onnx", ["is not a readable ONNX model"]),
            ("broken/empty.onnx", ["is an empty file"]),
            ("broken/missing_external_data.onnx", ["initializer conv1.weight: external data file missing_external_data.onnx.data not found"]),
            ("broken/bn_training_mode.onnx", ["node '/bn/BatchNormalization' (BatchNormalization) is in training mode"]),
            ("broken/bn_after_relu.onnx", ["node '/bn/BatchNormalization' (BatchNormalization) does not directly follow a Conv or Gemm"]),
          ])
    func refused(file: String, fragments: [String]) throws {
        let folder = try TorchModels.refused.get()
        let path = file.hasPrefix("broken/") ? "\(folder)/\(file)" : "\(folder)/torchscript/opset17/\(file)"
        let out = temporaryFolder("import-refused") + "/float.h5"
        let result = try runA2Q(["import", path, "--out", out])
        #expect(result.status == 1, "\(file): \(result.output)")
        for fragment in fragments { #expect(result.output.contains(fragment), "\(file): \(result.output)") }
        #expect(result.output.contains(path), "\(file): the message names the file: \(result.output)")
        let left = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
        #expect(left.isEmpty, "\(file): \(left)")
    }
}
