import A2QCheckpoint
import A2QCore
import A2QDistributed
import A2QTrain
import Foundation
import Testing

/// Runs the built `a2q` binary directly (no mpirun).
func runA2Q(_ arguments: [String], timeout: Double = 120, environment: [String: String?] = [:]) throws -> MPIRun.Result {
    try MPIRun.runProcess(MPIRun.binary, arguments, timeout: timeout, environment: environment)
}

/// Every /model dataset of a checkpoint, as Float values per name.
func modelTensors(_ path: String) throws -> [String: [Float]] {
    let file = try HDF5File.openForReading(path)
    let model = try file.openGroup("model")
    var out: [String: [Float]] = [:]
    for layer in try model.childNames() {
        let group = try model.openGroup(layer)
        for name in try group.childNames() {
            // Integer datasets (weight_int) are compared through their exact Float values.
            let isInteger = try group.datasetInfo(name).type?.isInteger ?? false
            out["\(layer)/\(name)"] = isInteger ? try group.read(name, as: Int32.self).values.map { Float($0) }
                                                  : try group.read(name, as: Float.self).values
        }
    }
    return out
}

/// Step records of metrics.jsonl as (step, loss).
func loggedLosses(_ folder: String) throws -> [String] {
    try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        .filter { $0["type"] as? String == "step" }
        .map { "\($0["step"] ?? "") \($0["loss"] ?? "")" }
}

@Suite("HDF5 checkpoints: bitwise resume, crash safety, validation", .serialized)
struct CheckpointTests {
    static let common = ["--model", "mlp", "--data", "synthetic", "--train-subset", "1280", "--batch-size", "32",
                         "--float-epochs", "1", "--epochs", "2", "--max-steps", "30", "--checkpoint-every", "7",
                         "--log-every", "5", "--calibration-batches", "2"]

    func trainRun(ranks: Int, _ extra: [String]) throws -> MPIRun.Result {
        ranks == 1 ? try runA2Q(["train"] + Self.common + extra, timeout: 300)
                   : try MPIRun.run(ranks: ranks, ["train"] + Self.common + extra, timeout: 300)
    }

    @Test("resume is bitwise: 70 steps straight equal 52, stop, --resume, 18 more (mlp at R=1, R=2 and distilling from float.h5; cnn-bn, resnet8 and resnet20 with their BatchNorm buffers at R=2)",
          arguments: [(1, false, "mlp"), (2, false, "mlp"), (1, true, "mlp"), (2, false, "cnn-bn"), (2, false, "resnet8"), (2, false, "resnet20")])
    func bitwiseResume(ranks: Int, distill: Bool, model: String) throws {
        let straight = temporaryFolder("straight"), split = temporaryFolder("split")
        let extra = (distill ? ["--distill", "0.5"] : []) + ["--model", model]
        #expect(try trainRun(ranks: ranks, ["--out", straight] + extra).status == 0)
        let first = try trainRun(ranks: ranks, ["--out", split, "--stop-after-steps", "52"] + extra)
        #expect(first.status == 0 && first.output.contains("stopped after global step 52"), "\(first.output)")
        #expect(FileManager.default.fileExists(atPath: split + "/" + Trainer.floatModelName))
        let second = try trainRun(ranks: ranks, ["--out", split, "--resume", "auto"] + extra)
        #expect(second.status == 0 && second.output.contains("resuming from"), "\(second.output)")
        if distill { #expect(second.output.contains("distillation teacher: \(split)/\(Trainer.floatModelName)"), "\(second.output)") }
        let a = try modelTensors(straight + "/final.h5"), b = try modelTensors(split + "/final.h5")
        #expect(!a.isEmpty && a.keys.sorted() == b.keys.sorted())
        if model != "mlp" {
            #expect(a.keys.contains { $0.hasSuffix("running_mean") } && a.keys.contains { $0.hasSuffix("running_var") }, "\(a.keys.sorted())")
        }
        for key in a.keys { #expect(a[key]?.map(\.bitPattern) == b[key]?.map(\.bitPattern), "\(key) differs") }
        #expect(try loggedLosses(straight) == loggedLosses(split))
    }

    @Test("a job killed with SIGKILL mid-run and restarted with --resume auto ends bitwise identical (mlp, resnet8, resnet20: BatchNorm buffers included)",
          arguments: ["mlp", "resnet8", "resnet20"])
    func killAndResume(model: String) throws {
        let straight = temporaryFolder("kill-straight"), killed = temporaryFolder("killed")
        #expect(try trainRun(ranks: 1, ["--out", straight, "--model", model]).status == 0)
        // Kill the process once a mid-run checkpoint exists.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: MPIRun.binary)
        process.arguments = ["train"] + Self.common + ["--out", killed, "--checkpoint-every", "1", "--model", model]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && CheckpointFolder.periodic(in: killed).count < 2 && process.isRunning { usleep(2000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(!FileManager.default.fileExists(atPath: killed + "/final.h5"), "the run finished before it was killed")
        // The newest checkpoint the killed run completed (writes are atomic) is where it resumes.
        let newest = try #require(CheckpointFolder.periodic(in: killed).last, "no checkpoint before the kill")
        let step = try #require(Int((newest as NSString).lastPathComponent.dropFirst("ckpt-".count).prefix(9)))
        #expect(step > 0)
        let resumed = try trainRun(ranks: 1, ["--out", killed, "--resume", "auto", "--checkpoint-every", "1", "--model", model])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("resuming from \(newest): ") && resumed.output.contains(", global step \(step)\n"),
                "did not resume from \(newest): \(resumed.output)")
        let a = try modelTensors(straight + "/final.h5"), b = try modelTensors(killed + "/final.h5")
        #expect(!a.isEmpty && a.keys.sorted() == b.keys.sorted())
        if model != "mlp" { #expect(a.keys.contains { $0.hasSuffix("running_var") }) }
        for key in a.keys { #expect(a[key]?.map(\.bitPattern) == b[key]?.map(\.bitPattern), "\(key) differs") }
    }

    @Test("killing during saves never leaves a file with a checkpoint's name that fails to load")
    func killDuringSave() throws {
        for attempt in 0..<6 {
            let folder = temporaryFolder("kill-save")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: MPIRun.binary)
            process.arguments = ["train"] + Self.common + ["--out", folder, "--checkpoint-every", "1", "--keep-checkpoints", "1000"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Once a first checkpoint exists, a save runs every step: kill at a varying moment after it.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline && CheckpointFolder.periodic(in: folder).isEmpty && process.isRunning { usleep(1000) }
            usleep(UInt32(attempt * 23_000))
            let running = process.isRunning
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(running && !FileManager.default.fileExists(atPath: folder + "/final.h5"), "attempt \(attempt): the run ended before the kill")
            let saved = CheckpointFolder.periodic(in: folder)
            #expect(!saved.isEmpty, "attempt \(attempt): no checkpoint existed before the kill")
            for path in saved {
                #expect(throws: Never.self) { _ = try CheckpointFile.validate(path) }
            }
        }
    }

    @Test("a full disk during a save (a file-size limit): a clear error and exit 1, no partial or new checkpoint; the earlier ones still resume")
    func diskFull() throws {
        let folder = temporaryFolder("disk-full")
        let first = try runA2Q(["train"] + Self.common + ["--out", folder, "--stop-after-steps", "52"])
        #expect(first.status == 0, "\(first.output)")
        let before = CheckpointFolder.periodic(in: folder)
        #expect(!before.isEmpty)
        // 1000 KiB is less than one checkpoint of this mlp with its Adam state (about 3 MB): the
        // next save runs out of room the way a full disk does (EFBIG instead of ENOSPC).
        let arguments = ["train"] + Self.common + ["--out", folder, "--resume", "auto"]
        let command = "trap '' XFSZ; ulimit -f 1000; exec " + ([MPIRun.binary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let full = try MPIRun.runProcess("/bin/bash", ["-c", command], timeout: 120)
        #expect(full.status == 1, "\(full.status): \(full.output)")
        #expect(full.output.contains("cannot save checkpoint") && full.output.contains("free disk space"), "\(full.output)")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(!names.contains { $0.hasSuffix(".tmp") } && !names.contains(CheckpointFolder.finalName), "\(names)")
        #expect(CheckpointFolder.periodic(in: folder) == before)
        for path in before { _ = try CheckpointFile.validate(path) }
        let resumed = try runA2Q(arguments)
        #expect(resumed.status == 0 && resumed.output.contains("resuming from \(before.last ?? "")"), "\(resumed.output)")
    }

    func damaged(_ transform: (inout Data) -> Void) throws -> (String, String) {
        let folder = temporaryFolder("damaged")
        #expect(try runA2Q(["train"] + Self.common + ["--out", folder, "--max-steps", "3"]).status == 0)
        let source = folder + "/final.h5", target = folder + "/ckpt-999999999.h5"
        var data = try Data(contentsOf: URL(fileURLWithPath: source))
        transform(&data)
        try data.write(to: URL(fileURLWithPath: target))
        return (folder, target)
    }

    @Test("a truncated file and a flipped byte in a dataset give clear errors, and --resume auto skips them")
    func damagedFiles() throws {
        let (folder, truncated) = try damaged { $0 = $0.prefix($0.count / 2) }
        do { _ = try CheckpointFile.validate(truncated); Issue.record("truncated file accepted") } catch {
            #expect("\(error)".contains(truncated), "\(error)")
        }
        let resumed = try runA2Q(["train"] + Self.common + ["--out", folder, "--max-steps", "3", "--resume", "auto"])
        #expect(resumed.status == 0, "\(resumed.status): \(resumed.output)")
        #expect(resumed.output.contains("skipping \(truncated)"), "\(resumed.output)")
        // The newest valid file of the run (final.h5, written after the last periodic one) is the one resumed.
        #expect(resumed.output.contains("resuming from \(folder)/\(CheckpointFolder.finalName): "), "\(resumed.output)")

        // Flip a byte inside fc1's stored float weights (found by their bytes; datasets are stored
        // uncompressed): the Fletcher32 checksum of that chunk no longer matches.
        let weights = try HDF5File.openForReading(folder + "/final.h5").openGroup("model").openGroup("fc1")
            .read("weight", as: Float.self).values
        let pattern = weights.prefix(8).withUnsafeBytes { Data($0) }
        var located = false
        let (_, flipped) = try damaged { data in
            guard let range = data.range(of: pattern) else { return }
            data[range.lowerBound + 5] ^= 0x40
            located = true
        }
        try #require(located, "fc1's weight bytes were not found in the file")
        do { _ = try CheckpointFile.validate(flipped); Issue.record("corrupt file accepted") } catch {
            #expect("\(error)".contains(flipped), "\(error)")
        }
    }

    @Test("a wrong format_version and a checkpoint of another model are refused with the reason")
    func wrongVersionAndModel() throws {
        let folder = temporaryFolder("version")
        #expect(try runA2Q(["train"] + Self.common + ["--out", folder, "--max-steps", "3"]).status == 0)
        let result = try runA2Q(["train", "--model", "cnn", "--data", "synthetic", "--train-subset", "320", "--batch-size", "32",
                                 "--out", temporaryFolder("other"), "--resume", folder + "/final.h5"])
        #expect(result.status != 0 && result.output.contains("model: checkpoint mlp, now cnn"), "\(result.output)")
        // Rewrite format_version with h5py-free means: copy the file and patch the attribute through HDF5.
        func patch(_ source: String, _ target: String, _ python: String) throws {
            try FileManager.default.copyItem(atPath: source, toPath: target)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", "import h5py, sys\nwith h5py.File(sys.argv[1], 'r+') as f:\n" + python, target]
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "h5py is needed for this test (Launch/setup-python.sh)")
        }
        let future = folder + "/v3.h5"
        try patch(folder + "/final.h5", future, "    f.attrs['format_version'] = 4")
        do { _ = try CheckpointFile.header(future); Issue.record("version 3 accepted") } catch {
            #expect("\(error)".contains("format_version 4"), "\(error)")
        }
        // A schema-1 file: the same tensors without the model tree and the input shape.
        let old = folder + "/v1.h5"
        try patch(folder + "/final.h5", old, "    f.attrs['format_version'] = 1\n    del f.attrs['model_description']\n    del f['input_shape']")
        let header = try CheckpointFile.validate(old)
        #expect(header.description == BuiltInModels.description(.mlp) && header.inputShape == [1, 28, 28])
        let now = try runA2Q(["eval", folder + "/final.h5"]), then = try runA2Q(["eval", old])
        #expect(now.status == 0 && then.status == 0)
        #expect(now.output.components(separatedBy: "accuracy ").last?.prefix(6) == then.output.components(separatedBy: "accuracy ").last?.prefix(6),
                "\(now.output) vs \(then.output)")
    }

    @Test("h5py reads a checkpoint: str/int attributes; acc_min/acc_max/p_min recomputed in NumPy match the file and `a2q inspect`")
    func readableByH5py() throws {
        let folder = temporaryFolder("h5py")
        #expect(try runA2Q(["train"] + Self.common + ["--out", folder, "--max-steps", "3"]).status == 0)
        let inspect = try runA2Q(["inspect", folder + "/final.h5", "--json"])
        #expect(inspect.status == 0, "\(inspect.output)")
        try inspect.output.write(toFile: folder + "/inspect.json", atomically: true, encoding: .utf8)
        let (status, output) = try python("check_checkpoint.py", [folder + "/final.h5", folder + "/inspect.json"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("checked 3 quantized layers"), "\(output)")
    }

    @Test("--init-from: a float checkpoint starts an A2Q+ run in a separate command (the papers' pipeline)")
    func initFrom() throws {
        let float = temporaryFolder("float-source"), quantized = temporaryFolder("init-from")
        #expect(try runA2Q(["train", "--model", "mlp", "--quantizer", "float", "--data", "synthetic", "--train-subset", "640",
                            "--batch-size", "32", "--epochs", "1", "--out", float]).status == 0)
        let result = try runA2Q(["train", "--model", "mlp", "--quantizer", "a2q+", "--data", "synthetic", "--train-subset", "640",
                                 "--batch-size", "32", "--epochs", "1", "--init-from", float + "/final.h5", "--out", quantized, "--json"])
        #expect(result.status == 0 && result.output.contains("initialising from"), "\(result.output)")
        #expect(!result.output.contains("float pre-training"))
        let summary = try #require(result.output.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(summary["conversion_test_accuracy"] as? Double ?? 0 > 0.5)
        #expect(summary["overflow_free"] as? Bool == true)
        let wrongModel = try runA2Q(["train", "--model", "cnn", "--quantizer", "a2q+", "--data", "synthetic", "--train-subset", "640",
                                     "--batch-size", "32", "--init-from", float + "/final.h5", "--out", temporaryFolder("wrong")])
        #expect(wrongModel.status != 0 && wrongModel.output.contains("same --model"), "\(wrongModel.output)")
    }

    @Test("an unwritable output folder is refused before training starts")
    func unwritableOutput() throws {
        let result = try runA2Q(["train"] + Self.common + ["--out", "/proc/a2q-cannot-write-here"])
        #expect(result.status != 0 && result.output.contains("/proc/a2q-cannot-write-here"), "\(result.output)")
        #expect(!result.output.contains("epoch 1"))
    }
}

#if canImport(Glibc)
import Glibc
#endif
