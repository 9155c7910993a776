import A2QTrain
import Foundation
import Testing

/// docs/CHECKPOINT.md, "Migration from schema v1": version-1 checkpoints (built-in mlp, cnn or
/// cnn-bn on 1×28×28, no model_description, no input_shape) are read as that built-in, "so `eval`,
/// `export`, `verify`, `inspect`, `--resume` and `--init-from` work on them as before"; "Version-1
/// exports are chains and read as such". The v1 files are written from v2 ones with h5py
/// (Tests/Python/h5_claims.py: the documented differences, and the stored configuration cut down to
/// the keys a2q had when it wrote version 1).
@Suite("Schema-1 checkpoints and exports through export, verify, inspect, eval, --resume and --init-from", .serialized)
struct SchemaV1Tests {
    static let run = ["train", "--model", "cnn-bn", "--data", "synthetic", "--train-subset", "320", "--batch-size", "32",
                      "--float-epochs", "1", "--epochs", "1", "--max-steps", "6", "--calibration-batches", "1", "--log-every", "1"]

    /// The output with the file's path and the measured speeds replaced (commands print the path
    /// they read and how fast they ran).
    static func output(_ arguments: [String], _ file: String) throws -> (Int32, String) {
        let result = try runA2Q(arguments)
        var text = result.output.replacingOccurrences(of: file, with: "FILE")
        for pattern in [#"[0-9.]+ images/s"#, #""images_per_second":[0-9.eE+-]+"#] {
            text = text.replacingOccurrences(of: pattern, with: "SPEED", options: .regularExpression)
        }
        return (result.status, text)
    }

    @Test("a v1 checkpoint gives the v2 file's inspect, verify and eval output; its export equals the v2 file's export dataset by dataset; eval --integer of a v1 export equals the v2 export's")
    func readsAsBefore() throws {
        let folder = temporaryFolder("v1")
        #expect(try runA2Q(Self.run + ["--out", folder]).status == 0)
        let v2 = folder + "/final.h5", v1 = folder + "/v1.h5"
        try FileManager.default.copyItem(atPath: v2, toPath: v1)
        try Claims.h5(["v1-checkpoint", v1])
        #expect(try Claims.intAttribute(v1, "format_version") == 1)

        for command in [["inspect"], ["inspect", "--json"], ["verify", "--json"], ["eval", "--limit", "200"],
                        ["eval", "--integer", "--limit", "200", "--json"]] {
            let new = try Self.output([command[0], v2] + command.dropFirst(), v2)
            let old = try Self.output([command[0], v1] + command.dropFirst(), v1)
            #expect(new.0 == 0 && old.0 == new.0, "\(command): exit \(old.0) for v1, \(new.0) for v2: \(old.1)")
            #expect(old.1 == new.1 && !new.1.isEmpty, "\(command): v1 \(old.1)\nv2 \(new.1)")
        }
        for (source, target) in [(v2, folder + "/from-v2.h5"), (v1, folder + "/from-v1.h5")] {
            let export = try runA2Q(["export", source, "--out", target])
            #expect(export.status == 0, "\(export.output)")
        }
        let (status, comparison) = try python("h5_claims.py", ["compare-exports", folder + "/from-v2.h5", folder + "/from-v1.h5"])
        #expect(status == 0 && comparison.contains("equal"), "\(comparison)")

        // A version-1 export (a chain) reads as one.
        let oldExport = folder + "/export-v1.h5"
        try FileManager.default.copyItem(atPath: folder + "/from-v2.h5", toPath: oldExport)
        try Claims.h5(["v1-export", oldExport])
        for command in [["inspect"], ["verify", "--json"], ["eval", "--integer", "--data", "synthetic", "--limit", "200", "--json"]] {
            let new = try Self.output([command[0], folder + "/from-v2.h5"] + command.dropFirst(), folder + "/from-v2.h5")
            let old = try Self.output([command[0], oldExport] + command.dropFirst(), oldExport)
            #expect(new.0 == 0 && old.0 == new.0 && old.1 == new.1, "\(command): v1 export \(old)\nv2 export \(new)")
        }
    }

    @Test("--resume auto from a v1 periodic checkpoint continues the run bit for bit; --init-from a v1 float checkpoint gives the same run as from the v2 file")
    func resumeAndInitFrom() throws {
        let straight = temporaryFolder("v1-straight"), split = temporaryFolder("v1-split")
        #expect(try runA2Q(Self.run + ["--out", straight]).status == 0)
        let first = try runA2Q(Self.run + ["--out", split, "--stop-after-steps", "13"])
        #expect(first.status == 0, "\(first.output)")
        let checkpoint = split + "/" + CheckpointFolder.name(globalStep: 13)
        try Claims.h5(["v1-checkpoint", checkpoint])
        let resumed = try runA2Q(Self.run + ["--out", split, "--resume", "auto"])
        #expect(resumed.status == 0 && resumed.output.contains("resuming from \(checkpoint)"), "\(resumed.output)")
        let (sameNames, differing) = try Claims.differingTensors(straight + "/final.h5", split + "/final.h5")
        #expect(sameNames && differing.isEmpty, "\(differing)")
        #expect(try loggedLosses(straight) == loggedLosses(split))

        let oldFloat = straight + "/float-v1.h5"
        try FileManager.default.copyItem(atPath: straight + "/" + Trainer.floatModelName, toPath: oldFloat)
        try Claims.h5(["v1-checkpoint", oldFloat])
        var finals: [String] = []
        for source in [straight + "/" + Trainer.floatModelName, oldFloat] {
            let out = temporaryFolder("v1-init")
            let result = try runA2Q(["train", "--model", "cnn-bn", "--quantizer", "a2q+", "--data", "synthetic", "--train-subset", "320",
                                     "--batch-size", "32", "--epochs", "1", "--max-steps", "4", "--calibration-batches", "1",
                                     "--init-from", source, "--out", out])
            #expect(result.status == 0 && result.output.contains("initialising from \(source)"), "\(result.output)")
            finals.append(out + "/final.h5")
        }
        let (same, differ) = try Claims.differingTensors(finals[0], finals[1])
        #expect(same && differ.isEmpty, "--init-from v1 vs v2: \(differ)")
    }
}
