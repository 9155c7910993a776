import A2QCheckpoint
import A2QData
import Foundation
import Testing

/// The QONNX and ONNX exports, run by the tools users deploy with (qonnx, onnxruntime).
@Suite("QONNX and ONNX exports in qonnx and onnxruntime", .serialized)
struct ExportFormatTests {
    @Test("qonnx's executor and onnxruntime give the integer engine's predictions on 1,000 test images; qonnx reads the datatypes and sizes every accumulator as a2q does",
          arguments: ["cnn", "cnn-bn", "resnet8"])
    func consumersAgree(model: String) throws {
        let folder = try trainedModel("onnx-\(model)", ["--model", model, "--float-epochs", "1", "--epochs", "1"])
        let checkpoint = folder + "/final.h5"
        for (format, file) in [("hdf5", "model.h5"), ("qonnx", "model.qonnx.onnx"), ("onnx", "model.onnx")] {
            let export = try runA2Q(["export", checkpoint, "--format", format, "--out", folder + "/" + file])
            #expect(export.status == 0, "\(format): \(export.output)")
        }
        let outputs = folder + "/engine-outputs.h5"
        let eval = try runA2Q(["eval", "--integer", folder + "/model.h5", "--limit", "1000", "--outputs", outputs,
                               "--outputs-accumulators"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        // What the engine computed covers the 1,000 images the consumers ran: 1,000 predictions,
        // 1,000 × 10 scores, and eval's own count.
        let file = try HDF5File.openForReading(outputs)
        let predictions = try file.read("predictions", as: Int32.self).values
        #expect(predictions.count == 1000 && predictions.allSatisfy { (0..<10).contains($0) }, "\(predictions.count) engine predictions")
        #expect(try file.datasetInfo("scores").shape == [1000, 10])
        #expect(eval.output.contains("on 1000 test images"), "\(eval.output)")
        let reportPath = folder + "/interop.json"
        let (status, output) = try python("onnx_interop.py", [folder + "/model.qonnx.onnx", folder + "/model.onnx", DataSource.defaultFolder,
                                                              "1000", outputs, reportPath])
        #expect(status == 0, "\(output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
        #expect((report["qonnx_agreement"] as? Double ?? 0) >= 0.999 && (report["onnxruntime_agreement"] as? Double ?? 0) >= 0.999,
                "\(output)")
        #expect(report["qonnx_accumulators_equal"] as? Bool == true)
        // onnxruntime's scores are compared bit for bit only where the file says every sum is
        // float32-exact: these models must say so, or the comparison would be skipped.
        #expect(report["float32_exact"] as? String == "1", "\(output)")
        #expect((report["onnxruntime_scores_differing"] as? [Int])?.isEmpty == true, "\(output)")
        #expect((report["onnxruntime_integer_ops"] as? [String])?.isEmpty == true, "\(output)")
        let layers = try #require(report["layers"] as? [String: [String: Any]])
        // Every weight layer sized by qonnx (4 in the chains, 10 in resnet8, shortcuts included), and resnet8's pool.
        let weightLayers = layers.values.filter { $0["qonnx_range"] != nil }
        #expect(weightLayers.count == (model == "resnet8" ? 10 : 4) && weightLayers.allSatisfy { $0["fits"] as? Bool == true }, "\(layers)")
        #expect(layers.count == weightLayers.count + (model == "resnet8" ? 1 : 0))
        print("\(model) interop: \(output)")
    }

    @Test("bad exports: unknown format, an existing file without --overwrite, an unwritable folder, a float model: a message, exit 1, nothing written")
    func badExports() throws {
        let folder = temporaryFolder("onnx-bad")
        let common = ["--model", "mlp", "--data", "synthetic", "--train-subset", "128", "--batch-size", "32", "--float-epochs", "1",
                      "--epochs", "1", "--max-steps", "2", "--calibration-batches", "1", "--log-every", "100"]
        #expect(try runA2Q(["train", "--out", folder + "/run"] + common).status == 0)
        #expect(try runA2Q(["train", "--out", folder + "/float", "--quantizer", "float"] + common).status == 0)
        let checkpoint = folder + "/run/final.h5"

        let unknown = try runA2Q(["export", checkpoint, "--format", "tflite", "--out", folder + "/x.onnx"])
        #expect(unknown.status == 1 && unknown.output.contains("unknown --format 'tflite'") && unknown.output.contains("qonnx"), "\(unknown.output)")

        let existing = folder + "/existing.onnx"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: existing))
        let refused = try runA2Q(["export", checkpoint, "--format", "onnx", "--out", existing])
        #expect(refused.status == 1 && refused.output.contains("already exists"), "\(refused.output)")
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "keep me")
        let overwritten = try runA2Q(["export", checkpoint, "--format", "onnx", "--out", existing, "--overwrite"])
        #expect(overwritten.status == 0, "\(overwritten.output)")
        // The old file is replaced by the export itself: the same bytes as an export to a new path
        // (exports are deterministic), which onnx's checker accepts.
        let fresh = folder + "/fresh.onnx"
        #expect(try runA2Q(["export", checkpoint, "--format", "onnx", "--out", fresh]).status == 0)
        let replaced = try Data(contentsOf: URL(fileURLWithPath: existing)), expected = try Data(contentsOf: URL(fileURLWithPath: fresh))
        #expect(expected.count > 1000 && replaced == expected, "after --overwrite the file holds \(replaced.count) bytes, an export \(expected.count)")
        let checked = try MPIRun.runProcess("/usr/bin/env", ["python3", "-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)",
                                                            existing], timeout: 120)
        #expect(checked.status == 0, "onnx's checker: \(checked.output)")

        let missing = try runA2Q(["export", checkpoint, "--format", "qonnx", "--out", folder + "/no/such/folder/m.onnx"])
        #expect(missing.status == 1 && missing.output.contains("does not exist or is not writable"), "\(missing.output)")

        for float in [folder + "/float/final.h5", folder + "/run/float.h5"] {
            let result = try runA2Q(["export", float, "--format", "qonnx", "--out", folder + "/float.onnx"])
            #expect(result.status == 1 && result.output.contains("has no integer model"), "\(result.output)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".tmp") || $0 == "float.onnx" || $0 == "x.onnx" }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}
