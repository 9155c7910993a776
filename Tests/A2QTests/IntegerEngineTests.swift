import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// Trains a small model on a Fashion-MNIST subset with the CLI and returns its run folder.
func trainedModel(_ name: String, _ arguments: [String]) throws -> String {
    let folder = temporaryFolder(name)
    let result = try runA2Q(["train", "--train-subset", "4000", "--log-every", "1000", "--out", folder] + arguments, timeout: 300)
    #expect(result.status == 0, "\(result.output)")
    return folder
}

func python(_ script: String, _ arguments: [String]) throws -> (Int32, String) {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Python/\(script)").path
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", path] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// The engine's outputs and accumulators on the first `limit` test images of `folder/model.h5`
/// (`eval --integer --outputs`), then qonnx's executor and onnxruntime on `folder/model.qonnx.onnx`
/// and `folder/model.onnx` (`onnx_interop.py`); returns the script's exit status, its output and
/// its JSON report.
func onnxInterop(_ folder: String, limit: Int = 1000) throws -> (status: Int32, output: String, report: [String: Any]) {
    let outputs = folder + "/engine-outputs.h5"
    let eval = try runA2Q(["eval", "--integer", folder + "/model.h5", "--limit", "\(limit)", "--outputs", outputs, "--outputs-accumulators"],
                          timeout: 300)
    #expect(eval.status == 0, "\(eval.output)")
    let path = folder + "/interop.json"
    let (status, output) = try python("onnx_interop.py", [folder + "/model.qonnx.onnx", folder + "/model.onnx", DataSource.defaultFolder,
                                                          "\(limit)", outputs, path])
    let report = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))) as? [String: Any] ?? [:]
    return (status, output, report)
}

@Suite("Integer engine with real P-bit accumulators (Fashion-MNIST subsets)", .serialized)
struct IntegerEngineTests {
    @Test("predictions equal the fake-quantized model's on ≥ 99.9% of the test set; NumPy reproduces the accumulators exactly",
          arguments: ["mlp", "cnn", "cnn-bn", "resnet8"])
    func agreesWithFakeQuantAndNumPy(model: String) throws {
        let folder = try trainedModel("engine-\(model)", ["--model", model, "--float-epochs", "1", "--epochs", "1"])
        let export = folder + "/model.h5"
        #expect(try runA2Q(["export", folder + "/final.h5", "--out", export]).status == 0)
        try exportIsUsable(export, checkpoint: folder + "/final.h5")
        // Predictions of the whole test set: the fake-quantized float graph and the engine.
        var predictions: [[Int32]] = []
        for (name, arguments) in [("fake", [String]()), ("integer", ["--integer"])] {
            let outputs = folder + "/\(name).h5"
            let eval = try runA2Q(["eval", folder + "/final.h5", "--outputs", outputs] + arguments, timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            predictions.append(try HDF5File.openForReading(outputs).read("predictions", as: Int32.self).values)
        }
        #expect(predictions[0].count == 10000 && predictions[1].count == 10000)
        let differing = zip(predictions[0], predictions[1]).filter { $0 != $1 }.count
        #expect(differing <= 10, "\(differing) of 10000 predictions differ")

        // Every accumulator, the scores and the predictions of 64 images equal NumPy's.
        let outputs = folder + "/accumulators.h5"
        let eval = try runA2Q(["eval", "--integer", export, "--limit", "64", "--outputs", outputs, "--outputs-accumulators"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "64", folder + "/numpy.bin",
                                                                 "--outputs", outputs])
        #expect(status == 0 && output.contains("compared"), "the engine's outputs differ from NumPy's: \(output)")
    }

    /// What every README example does with an export: `verify` proves it, `inspect` shows each
    /// layer, and `eval --integer` on it gives the checkpoint's accuracy and overflow counts.
    func exportIsUsable(_ export: String, checkpoint: String) throws {
        let verify = try runA2Q(["verify", export, "--json"])
        #expect(verify.status == 0, "\(verify.output)")
        let proof = try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any]
        #expect(proof?["overflow_free"] as? Bool == true, "\(verify.output)")
        let inspect = try runA2Q(["inspect", export])
        #expect(inspect.status == 0, "\(inspect.output)")
        var results: [[String: Any]] = []
        for file in [export, checkpoint] {
            let eval = try runA2Q(["eval", "--integer", file, "--limit", "500", "--json"], timeout: 300)
            #expect(eval.status == 0, "\(eval.output)")
            results.append(try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any]))
        }
        let layers = (results[0]["layers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(!layers.isEmpty && layers.allSatisfy { inspect.output.contains($0) }, "\(inspect.output)")
        #expect(results[0]["accuracy"] as? Double != nil && results[0]["accuracy"] as? Double == results[1]["accuracy"] as? Double)
        #expect(results[0]["images"] as? Int == 500)
    }

    /// The engine's P-bit register simulation against NumPy's independent model of a sequential
    /// register (integer_forward.py): per layer, the same count of dot products whose final sum
    /// leaves the range and of those with any out-of-range partial sum, and the same last-layer
    /// accumulators, in each overflow mode and with the fast and the reference kernels. The
    /// hidden layers are squeezed to 12 bits and conv1 to 15, so every simulated layer overflows.
    @Test("overflow simulation: wrap, saturate and wide equal a NumPy P-bit register (counts and accumulators), fast and reference kernels")
    func overflowSimulationMatchesRegisterModel() throws {
        let folder = try trainedModel("simulate", ["--model", "cnn-bn", "--quantizer", "qat", "--epochs", "1"])
        let export = folder + "/model.h5"
        #expect(try runA2Q(["export", folder + "/final.h5", "--out", export]).status == 0)
        // The widths the NumPy register uses, pinned from the command line and the model, not
        // taken from the engine under test: conv1 = 15 (its override), the hidden layers conv2
        // and fc1 = 12 (--accumulator-bits), the last layer fc2 keeps the P its export stores.
        let lastBits = try HDF5File.openForReading(export).openGroup("layers").openGroup("fc2").intAttribute("accumulator_bits")
        #expect(lastBits == 32, "fc2 (unconstrained qat) stores P = \(lastBits)")
        let pinned = ["conv1=15", "conv2=12", "fc1=12", "fc2=\(lastBits)"]
        var dumps: [String: [UInt32]] = [:]
        for mode in ["wrap", "saturate", "wide"] {
            for kernel in ["auto", "reference"] {
                // The fast kernels' scores (no accumulators recorded: recording runs the reference
                // path); the reference path's every accumulator too.
                let outputs = folder + "/\(mode)-\(kernel).h5"
                let eval = try runA2Q(["eval", "--integer", export, "--accumulator-bits", "12", "--layer-accumulator-bits", "conv1=15",
                                       "--overflow", mode, "--kernel", kernel, "--limit", "32", "--json", "--outputs", outputs]
                                      + (kernel == "reference" ? ["--outputs-accumulators"] : []), timeout: 300)
                #expect(eval.status == 0, "\(eval.output)")
                let result = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
                let layers = try #require(result["layers"] as? [[String: Any]])
                let bits = layers.map { "\($0["name"] ?? "")=\($0["accumulator_bits"] ?? "")" }
                #expect(bits == pinned, "the engine used \(bits), the command line asks for \(pinned)")
                let reference = folder + "/\(mode)-\(kernel).numpy", counts = reference + ".json"
                let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "32", reference,
                                                                         "--overflow", mode, "--counts", counts, "--outputs", outputs, "--bits"] + pinned)
                #expect(status == 0, "\(mode) \(kernel): the engine's outputs differ from NumPy's: \(output)")
                #expect(kernel != "reference" || output.contains("compared 4 accumulators"), "\(output)")
                let numpy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: counts))) as? [String: [String: Int]])
                for layer in layers {
                    let name = layer["name"] as? String ?? ""
                    for key in ["dot_products", "final_overflows", "partial_overflows"] {
                        #expect(layer[key] as? Int == numpy[name]?[key], "\(mode) \(kernel) \(name) \(key): engine \(layer[key] ?? "-"), NumPy \(numpy[name]?[key] ?? -1)")
                    }
                }
                let squeezed = layers.filter { ($0["accumulator_bits"] as? Int ?? 32) < 16 }
                #expect(squeezed.count >= 2 && squeezed.allSatisfy { ($0["partial_overflows"] as? Int ?? 0) > 0 }, "\(layers)")
                dumps["\(mode)-\(kernel)"] = try HDF5File.openForReading(outputs).read("scores", as: Float.self).values.map(\.bitPattern)
            }
        }
        #expect(dumps["wrap-auto"] != dumps["saturate-auto"] && dumps["wrap-auto"] != dumps["wide-auto"]
                && dumps["saturate-auto"] != dumps["wide-auto"], "the three modes must give different sums here")
    }

    @Test("A2Q and A2Q+ at P = 16, 14, 12: verify proves every layer safe, zero overflows with wrap, wrap = wide",
          arguments: [("a2q", 16), ("a2q+", 16), ("a2q", 14), ("a2q+", 14), ("a2q", 12), ("a2q+", 12)])
    func accumulatorAwareModelsNeverOverflow(quantizer: String, bits: Int) throws {
        let folder = try trainedModel("safe-\(quantizer)-\(bits)", ["--model", "mlp", "--quantizer", quantizer,
                                                                      "--accumulator-bits", "\(bits)", "--epochs", "1", "--float-epochs", "1"])
        let checkpoint = folder + "/final.h5"
        let verify = try runA2Q(["verify", checkpoint, "--json"])
        #expect(verify.status == 0, "\(verify.output)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(verify.output.utf8)) as? [String: Any])
        #expect(json["overflow_free"] as? Bool == true)
        var accuracies: [String: Double] = [:]
        for mode in ["wrap", "wide"] {
            let eval = try runA2Q(["eval", "--integer", checkpoint, "--overflow", mode, "--json"], timeout: 300)
            let result = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
            accuracies[mode] = result["accuracy"] as? Double
            let layers = try #require(result["layers"] as? [[String: Any]])
            #expect(layers.allSatisfy { ($0["final_overflows"] as? Int) == 0 && ($0["partial_overflows"] as? Int) == 0 })
        }
        #expect(accuracies["wrap"] != nil && accuracies["wrap"] == accuracies["wide"])
    }

    @Test("a plain qat cnn squeezed into 16-bit wrap-around accumulators overflows and loses accuracy; verify refuses it")
    func qatOverflowsAt16Bits() throws {
        let folder = try trainedModel("qat16", ["--model", "cnn", "--quantizer", "qat", "--epochs", "1"])
        let checkpoint = folder + "/final.h5"
        var results: [String: [String: Any]] = [:]
        for mode in ["wrap", "wide"] {
            let eval = try runA2Q(["eval", "--integer", checkpoint, "--accumulator-bits", "16", "--overflow", mode, "--limit", "500",
                                   "--json"], timeout: 300)
            results[mode] = try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any]
        }
        let wrap = try #require(results["wrap"]), wide = try #require(results["wide"])
        let overflows = (wrap["layers"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["final_overflows"] as? Int ?? 0) }
        #expect(overflows > 0)
        #expect((wrap["accuracy"] as? Double ?? 1) < (wide["accuracy"] as? Double ?? 0))
        let verify = try runA2Q(["verify", checkpoint, "--accumulator-bits", "16"])
        #expect(verify.status == 2 && verify.output.contains("CAN OVERFLOW"), "\(verify.output)")
    }

    @Test("bad model files: a checkpoint that is not an export, a non-HDF5 file, weights that do not fit M")
    func badFiles() throws {
        let folder = temporaryFolder("bad-files")
        #expect(FileManager.default.createFile(atPath: folder + "/junk.h5", contents: Data("not hdf5".utf8)))
        let junk = try runA2Q(["verify", folder + "/junk.h5"])
        #expect(junk.status != 0 && junk.output.contains("not an HDF5 file"), "\(junk.output)")
        let layer = IntegerLayer(name: "fc1", kind: .linear, shape: [1, 2], weights: [200, 1], quantizer: "a2q", weightBits: 8,
                                 accumulatorBits: 16, input: InputFormat(bits: 8, signed: false), inputScale: 1, weightScale: [1],
                                 bias: [0], multiplier: [1], offset: [0], l1Bound: nil, rounding: "toward_zero", foldedBatchNorm: nil)
        do {
            _ = try IntegerModel(model: "t", classes: 1, inputShape: [2],
                                 ops: [IntegerInput(format: InputFormat(bits: 8, signed: false), scale: 1), IntegerLinear(layer: layer)])
            Issue.record("accepted a weight of 200 at 8 bits")
        } catch {
            #expect("\(error)".contains("fc1") && "\(error)".contains("8-bit"), "\(error)")
        }
        var mismatched = layer
        mismatched.weights = [1, 1]
        mismatched.input = InputFormat(bits: 4, signed: false)
        #expect(throws: A2QError.self) {
            _ = try IntegerModel(model: "t", classes: 1, inputShape: [2],
                                 ops: [IntegerInput(format: InputFormat(bits: 8, signed: false), scale: 1), IntegerLinear(layer: mismatched)])
        }
    }
}
