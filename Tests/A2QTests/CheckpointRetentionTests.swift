import A2QTrain
import Foundation
import Testing

/// docs/CHECKPOINT.md: "Run folders hold `ckpt-<global step, 9 digits>.h5` (the newest
/// `--keep-checkpoints`, default 3) and `final.h5`; runs with a float phase also keep `float.h5`".
@Suite("--keep-checkpoints keeps the newest K periodic checkpoints", .serialized)
struct CheckpointRetentionTests {
    static let run = ["train", "--model", "mlp", "--data", "synthetic", "--train-subset", "320", "--batch-size", "32",
                      "--float-epochs", "1", "--epochs", "1", "--checkpoint-every", "3", "--calibration-batches", "1", "--log-every", "100"]

    static func names(_ folder: String) -> [String] {
        CheckpointFolder.periodic(in: folder).map { ($0 as NSString).lastPathComponent }
    }

    @Test("K = 1000 keeps every save; the default keeps the newest 3, K = 2 and K = 1 the newest 2 and 1; final.h5 and float.h5 always stay; what is kept validates; K = 0 is refused")
    func keepNewest() throws {
        var kept: [String: [String]] = [:]
        for keep in ["1000", "default", "2", "1"] {
            let folder = temporaryFolder("keep-\(keep)")
            let result = try runA2Q(Self.run + ["--out", folder] + (keep == "default" ? [] : ["--keep-checkpoints", keep]))
            #expect(result.status == 0, "\(result.output)")
            kept[keep] = Self.names(folder)
            for name in [CheckpointFolder.finalName, Trainer.floatModelName] {
                #expect(FileManager.default.fileExists(atPath: folder + "/" + name), "--keep-checkpoints \(keep): \(name) missing")
            }
            for path in CheckpointFolder.periodic(in: folder) { #expect(throws: Never.self) { _ = try CheckpointFile.validate(path) } }
        }
        let all = kept["1000"] ?? []
        #expect(all.count >= 5, "this run should save more checkpoints than any K below: \(all)")
        #expect(kept["default"] == Array(all.suffix(3)), "\(kept)")
        #expect(kept["2"] == Array(all.suffix(2)), "\(kept)")
        #expect(kept["1"] == Array(all.suffix(1)), "\(kept)")

        let zero = try runA2Q(Self.run + ["--out", temporaryFolder("keep-0"), "--keep-checkpoints", "0"])
        #expect(zero.status == 1 && zero.output.contains("--keep-checkpoints must be positive"), "\(zero.output)")
    }
}
