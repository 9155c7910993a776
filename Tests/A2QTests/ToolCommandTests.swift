import A2QTrain
import Foundation
import Testing

/// README, "Using it": `a2q quantize --in W.h5 --out Q.h5 --quantizer a2q+ --accumulator-bits 16
/// --ep-init --json` and `a2q model resnet20 [--parameters --input 3,32,32]` ("a built-in as a model
/// file, or check one"), run as a user runs them.
@Suite("a2q quantize and a2q model, run as commands", .serialized)
struct ToolCommandTests {
    @Test("a2q quantize: conv and linear weights under a2q+ (EP-init), a2q and qat; the file's integers, L1 norms, worst-case ranges, p_min, bound and verdict recomputed from their definitions in NumPy, and the --json summary equal to them; an existing --out, NaN weights and a 3-D weight are refused")
    func quantize() throws {
        let folder = temporaryFolder("quantize")
        let conv = folder + "/conv.h5", linear = folder + "/linear.h5"
        try Claims.h5(["weights", conv, "1", "16", "8", "3", "3"])
        try Claims.h5(["weights", linear, "2", "10", "64"])
        let cases: [(input: String, quantizer: String, p: Int, extra: [String])] = [
            (conv, "a2q+", 14, ["--ep-init"]), (conv, "a2q", 14, []), (linear, "a2q+", 16, []), (linear, "qat", 16, []),
            (conv, "qat", 24, []),
        ]
        for (i, (input, quantizer, p, extra)) in cases.enumerated() {
            let output = folder + "/q\(i).h5"
            let run = try runA2Q(["quantize", "--in", input, "--out", output, "--quantizer", quantizer, "--accumulator-bits", "\(p)", "--json"] + extra)
            #expect(run.status == 0, "\(quantizer): \(run.output)")
            let summary = try #require(run.output.split(separator: "\n").last.flatMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(run.output)")
            let (status, text) = try python("h5_claims.py", ["check-quantized", input, output, quantizer, "8", "8", "\(p)"])
            #expect(status == 0, "\(quantizer) P=\(p): \(text)")
            let reference = try #require(try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
            for key in ["channels", "fan_in", "max_l1_norm", "largest_p_min"] {
                #expect(summary[key] as? Int == reference[key] as? Int, "\(quantizer) \(key): \(summary[key] ?? "none") vs NumPy \(reference[key] ?? "none")")
            }
            #expect(summary["all_channels_fit"] as? Bool == reference["all_channels_fit"] as? Bool, "\(quantizer): \(summary)")
            #expect(abs((summary["sparsity"] as? Double ?? -1) - (reference["sparsity"] as? Double ?? -2)) < 1e-12)
            if let bound = reference["bound"] as? Double {
                #expect(abs((summary["bound"] as? Double ?? 0) - bound) <= 1e-9 * bound, "\(quantizer): \(summary)")
            } else {
                #expect(summary["bound"] == nil, "qat has no bound: \(summary)")
            }
            // The verdicts that make the tool worth running: A2Q/A2Q+ fit P by construction; plain
            // qat at 8 bits with 64–72 inputs needs about 20 bits, so P = 16 cannot hold it and P = 24 can.
            if quantizer != "qat" { #expect(reference["all_channels_fit"] as? Bool == true, "\(quantizer): \(text)") }
            if quantizer == "qat" { #expect(reference["all_channels_fit"] as? Bool == (p >= 24), "qat P=\(p): \(text)") }
        }

        // Refusals: an existing file is kept, bad weights are named.
        let existing = folder + "/q0.h5"
        let before = try Data(contentsOf: URL(fileURLWithPath: existing))
        let again = try runA2Q(["quantize", "--in", conv, "--out", existing, "--quantizer", "a2q+"])
        #expect(again.status == 1 && again.output.contains("already exists") && again.output.contains("--overwrite"), "\(again.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: existing)) == before)
        let specPath = folder + "/spec.json"
        try JSONSerialization.data(withJSONObject: [["source": linear, "target": folder + "/nan.h5", "dataset": "weight", "index": 5, "value": "nan"]])
            .write(to: URL(fileURLWithPath: specPath))
        try Claims.h5(["set", specPath])
        let nan = try runA2Q(["quantize", "--in", folder + "/nan.h5", "--out", folder + "/nan-q.h5", "--quantizer", "a2q+"])
        #expect(nan.status == 1 && nan.output.contains("nan.h5") && nan.output.contains("element 5"), "\(nan.output)")
        try Claims.h5(["weights", folder + "/3d.h5", "3", "4", "5", "6"])
        let threeD = try runA2Q(["quantize", "--in", folder + "/3d.h5", "--out", folder + "/3d-q.h5", "--quantizer", "a2q+"])
        #expect(threeD.status == 1 && threeD.output.contains("[4, 5, 6]"), "\(threeD.output)")
        for name in ["nan-q.h5", "3d-q.h5"] { #expect(!FileManager.default.fileExists(atPath: folder + "/" + name)) }
    }

    @Test("a2q model NAME prints each built-in as the model file in Launch/models; --parameters lists what a run of that file saves (names and shapes, the count their sum); --input changes the shapes; a bad file is refused with the reason")
    func model() throws {
        for name in ModelName.builtIn {
            let printed = try runA2Q(["model", name.rawValue])
            #expect(printed.status == 0, "\(printed.output)")
            let mine = try JSONSerialization.jsonObject(with: Data(printed.output.utf8)) as? NSDictionary
            let file = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(modelsFolder)/\(name.rawValue).json"))) as? NSDictionary
            #expect(mine != nil && mine == file, "\(name.rawValue): the printed model differs from Launch/models")
        }

        let folder = temporaryFolder("model-command")
        let path = folder + "/my-mlp.json"
        try Claims.write(try runA2Q(["model", "mlp"]).output, to: path)
        func listing(_ input: String) throws -> (shapes: [String: [Int]], summary: String) {
            let result = try runA2Q(["model", path, "--parameters", "--input", input])
            #expect(result.status == 0, "\(result.output)")
            var shapes: [String: [Int]] = [:]
            var summary = ""
            for line in result.output.split(separator: "\n") {
                if line.contains("parameters,") { summary = String(line); continue }
                let parts = line.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { continue }
                shapes[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",")
                    .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            }
            return (shapes, summary)
        }
        let small = try listing("1,28,28"), colour = try listing("3,32,32")
        // The mlp by hand: 784 → 256 → 256 → 10 (3·32·32 = 3072 inputs for colour images).
        #expect(small.shapes["fc1.weight"] == [256, 784] && small.shapes["fc2.weight"] == [256, 256] && small.shapes["fc3.weight"] == [10, 256],
                "\(small.shapes)")
        #expect(colour.shapes["fc1.weight"] == [256, 3072] && colour.shapes["fc3.weight"] == [10, 256], "\(colour.shapes)")
        let total = small.shapes.values.reduce(0) { $0 + $1.reduce(1, *) }
        #expect(small.summary == "\(total) parameters, 3 weight layers, 1 constrained by default", "\(small.summary)")
        let resnet = try runA2Q(["model", "resnet8", "--parameters", "--input", "3,32,32"])
        // conv1, two convolutions in each of 3 stages, 2 projection shortcuts, fc; all but the first and last constrained.
        #expect(resnet.status == 0 && resnet.output.contains("10 weight layers, 8 constrained by default"), "\(resnet.output)")

        // What a run of the file saves: the same tensors under the same names.
        let run = try runA2Q(["train", "--model", path, "--data", "synthetic", "--train-subset", "64", "--batch-size", "32",
                              "--float-epochs", "1", "--epochs", "1", "--max-steps", "1", "--calibration-batches", "1", "--out", folder + "/run"])
        #expect(run.status == 0, "\(run.output)")
        let saved = try modelTensors(folder + "/run/final.h5")
        for (name, shape) in small.shapes {
            let key = name.split(separator: ".").dropLast().joined(separator: ".") + "/" + (name.split(separator: ".").last ?? "")
            #expect(saved[key]?.count == shape.reduce(1, *), "\(name) \(shape): saved as \(saved[key]?.count ?? -1) values")
        }

        try Claims.write(#"{"format": "a2q-model", "version": 1, "name": "bad", "layers": [{"type": "dense", "name": "x"}]}"#, to: folder + "/bad.json")
        let bad = try runA2Q(["model", folder + "/bad.json"])
        #expect(bad.status == 1 && bad.output.contains("bad.json") && bad.output.contains("unknown type 'dense'"), "\(bad.output)")
    }
}
