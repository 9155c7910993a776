import A2QCheckpoint
import A2QTrain
import Foundation
import Testing

/// Checkpoints and exports are untrusted input: crafted and mutated files must end every command
/// with exit 0 or 1 and a message, never a signal, a trap, an abort or a hang.
@Suite("Hostile files: crafted and fuzzed checkpoints and exports", .serialized)
struct HostileFileTests {
    /// A cnn-bn run on synthetic data (BatchNorm buffers, rank buffers, A2Q+ and qat layers).
    static let trainArguments = ["--model", "cnn-bn", "--data", "synthetic", "--train-subset", "256", "--batch-size", "64",
                                 "--float-epochs", "1", "--epochs", "2", "--checkpoint-every", "2", "--calibration-batches", "1",
                                 "--log-every", "100"]

    /// Trains to global step 6 (checkpoints at 2 and 6; step 4 ends the float phase, saved as
    /// float.h5) and exports step 6.
    func baseRun(_ name: String) throws -> (folder: String, checkpoint: String, export: String) {
        let folder = temporaryFolder(name)
        let run = try runA2Q(["train"] + Self.trainArguments + ["--out", folder, "--stop-after-steps", "6"], timeout: 300)
        #expect(run.status == 0, "\(run.output)")
        let checkpoint = folder + "/" + CheckpointFolder.name(globalStep: 6)
        let export = folder + "/model.h5"
        let exported = try runA2Q(["export", checkpoint, "--out", export])
        #expect(exported.status == 0, "\(exported.output)")
        return (folder, checkpoint, export)
    }

    @Test("a 2^40-element window, weight_bits 40, a NaN multiplier: a clear message and exit 1; --resume auto skips the first")
    func reportedFiles() throws {
        let base = try baseRun("hostile")
        let crafted = base.folder + "/crafted"
        let (status, output) = try python("hostile_files.py", [base.checkpoint, base.export, crafted])
        try #require(status == 0, "\(output)")

        let window = crafted + "/window.h5"
        for command in [["inspect", window], ["verify", window], ["eval", "--integer", window, "--limit", "10"]] {
            let result = try runA2Q(command)
            #expect(result.status == 1 && result.output.contains("/data/window has shape [1099511627776], expected [3]"),
                    "\(command): \(result.output)")
        }
        let bits = try runA2Q(["verify", crafted + "/bits40.h5"])
        #expect(bits.status == 1 && bits.output.contains("/layers/conv2/weight_bits = 40 is outside 2...16"), "\(bits.output)")
        let nan = try runA2Q(["eval", "--integer", crafted + "/nan-multiplier.h5", "--data", "synthetic"])
        #expect(nan.status == 1 && nan.output.contains("layer fc1 has a non-finite value in multiplier"), "\(nan.output)")

        // The newest checkpoint of the run becomes the hostile one: resume skips it, names why,
        // and continues from the previous valid one.
        let previous = try #require(CheckpointFolder.periodic(in: base.folder).filter { $0 != base.checkpoint }.last)
        try FileManager.default.removeItem(atPath: base.checkpoint)
        try FileManager.default.copyItem(atPath: window, toPath: base.checkpoint)
        let resumed = try runA2Q(["train"] + Self.trainArguments + ["--out", base.folder, "--resume", "auto"], timeout: 300)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("warning: skipping \(base.checkpoint)") && resumed.output.contains("/data/window has shape"),
                "\(resumed.output)")
        #expect(resumed.output.contains("resuming from \(previous)"), "\(resumed.output)")
    }

    @Test("crafted views, shapes and attributes (docs/CHECKPOINT.md, \"Reading\"): every command refuses each with exit 1 and a message naming it")
    func craftedViewsAndShapes() throws {
        let base = try baseRun("views")
        let crafted = base.folder + "/crafted"
        let (status, output) = try python("hostile_files.py", [base.checkpoint, base.export, crafted])
        try #require(status == 0, "\(output)")
        let manifest = try Data(contentsOf: URL(fileURLWithPath: crafted + "/cases.json"))
        let cases = try #require(try JSONSerialization.jsonObject(with: manifest) as? [[String: Any]])
        #expect(cases.count >= 25, "only \(cases.count) crafted files")
        var runs = 0
        for item in cases {
            let file = try #require(item["file"] as? String), kind = item["kind"] as? String ?? ""
            let expected = item["expect"] as? [String] ?? [], run = item["run"] as? String ?? "verify"
            try #require(!expected.isEmpty, "\(file): no expected message")
            if run == "validate" {
                do {
                    _ = try CheckpointFile.validate(file)
                    Issue.record("\(file): validate accepted it")
                } catch {
                    #expect(expected.allSatisfy { "\(error)".contains($0) }, "\(file): \(error)")
                }
                runs += 1
                continue
            }
            var commands = [["verify", file]]
            if run == "all" {
                commands = [["inspect", file], ["verify", file], ["eval", "--integer", file, "--limit", "10", "--data", "synthetic"]]
                if kind == "checkpoint" { commands.append(["eval", file, "--limit", "10", "--data", "synthetic"]) }
            }
            for command in commands {
                let result = try runA2Q(command)
                #expect(result.status == 1 && result.output.contains("Error: ") && expected.allSatisfy { result.output.contains($0) },
                        "\(command): exit \(result.status): \(result.output)")
                runs += 1
            }
        }
        // --init-from reads the file completely too.
        let changed = crafted + "/ckpt-weight-int-changed.h5"
        let header = try CheckpointFile.header(base.checkpoint)
        #expect(throws: (any Error).self) { _ = try CheckpointFile.loadWeights(changed, into: try header.buildModel()) }
        #expect(try CheckpointFile.loadWeights(base.checkpoint, into: try header.buildModel()) > 0)
        print("crafted files: \(cases.count), refusals checked: \(runs)")

        // Exports name their checkpoint by file name, not by the writer's folders.
        let source = try HDF5File.openForReading(base.export).stringAttribute("source")
        #expect(source == CheckpointFolder.name(globalStep: 6), "source = \(source)")
        let onnx = base.folder + "/model.onnx"
        let exported = try runA2Q(["export", base.checkpoint, "--out", onnx, "--format", "onnx"])
        try #require(exported.status == 0, "\(exported.output)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: onnx))
        #expect(bytes.range(of: Data("a2q.source".utf8)) != nil && bytes.range(of: Data(CheckpointFolder.name(globalStep: 6).utf8)) != nil)
        #expect(bytes.range(of: Data(base.folder.utf8)) == nil, "the ONNX file holds the folder \(base.folder)")
    }

    @Test("fuzz: ≥ 300 mutated checkpoints and exports through inspect, verify, eval --integer and train --resume")
    func fuzz() throws {
        let base = try baseRun("fuzz")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Python/fuzz_files.py").path
        let arguments = [script, "--a2q", MPIRun.binary, "--checkpoint", base.checkpoint, "--export", base.export,
                         "--work", base.folder + "/fuzz", "--train-args", Self.trainArguments.joined(separator: " "),
                         "--data", "synthetic", "--files", "320", "--summary", base.folder + "/fuzz.json"]
        let result = try MPIRun.runProcess("/usr/bin/env", ["python3"] + arguments, timeout: 1200)
        let written = try? Data(contentsOf: URL(fileURLWithPath: base.folder + "/fuzz.json"))
        let summary = try #require(written.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] },
                                   "no summary: \(result.output.suffix(3000))")
        let findings = summary["findings"] as? [String] ?? ["(no findings list)"]
        #expect(result.status == 0 && findings.isEmpty, "\(findings.prefix(20).joined(separator: "\n"))")
        let files = summary["files"] as? Int ?? 0
        #expect(files >= 300, "only \(files) mutated files")
        // Every command met a file it had to refuse: the mutations reach the validation.
        let outcomes = summary["outcomes"] as? [String: Int] ?? [:]
        for command in ["inspect", "verify", "eval", "train"] { #expect((outcomes["\(command) exit 1"] ?? 0) > 0, "\(outcomes)") }
        print("fuzz outcomes: \(outcomes)")
    }
}
