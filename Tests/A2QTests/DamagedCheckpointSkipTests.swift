import A2QTrain
import Foundation
import Testing

/// docs/CHECKPOINT.md: "`--resume auto` picks the newest one that validates completely ...,
/// skipping each file that does not with a warning that names the file and the reason"; every
/// dataset carries a Fletcher32 checksum, "a flipped byte makes the read fail".
@Suite("--resume auto skips byte-flipped checkpoints and resumes from the newest intact one", .serialized)
struct DamagedCheckpointSkipTests {
    static let run = ["train", "--model", "mlp", "--data", "synthetic", "--train-subset", "1280", "--batch-size", "32",
                      "--float-epochs", "1", "--epochs", "2", "--max-steps", "30", "--checkpoint-every", "7", "--log-every", "5",
                      "--calibration-batches", "2"]

    @Test("one bit flipped in the newest checkpoint (in a weight, in Adam's state, in the logging sums), then in the two newest: each is skipped with a warning naming the file and the dataset, the run resumes from the newest intact one and ends bitwise equal to an uninterrupted run")
    func skipsFlipped() throws {
        let straight = temporaryFolder("flip-straight"), stopped = temporaryFolder("flip-stopped")
        #expect(try runA2Q(Self.run + ["--out", straight]).status == 0)
        let first = try runA2Q(Self.run + ["--out", stopped, "--stop-after-steps", "30"])
        #expect(first.status == 0, "\(first.output)")
        let saved = CheckpointFolder.periodic(in: stopped).map { ($0 as NSString).lastPathComponent }
        #expect(saved == [21, 28, 30].map(CheckpointFolder.name(globalStep:)), "\(saved)")

        let cases: [(damaged: [Int], dataset: String, resumeFrom: Int)] = [
            ([30], "model/fc1/weight", 28), ([30], "optimizer/exp_avg_sq/fc2.weight", 28), ([30], "data/window", 28),
            ([30, 28], "model/fc2/bias", 21),
        ]
        for (damaged, dataset, resumeFrom) in cases {
            let folder = temporaryFolder("flip")
            try FileManager.default.removeItem(atPath: folder)
            try FileManager.default.copyItem(atPath: stopped, toPath: folder)
            for step in damaged { try Claims.h5(["flip", folder + "/" + CheckpointFolder.name(globalStep: step), dataset]) }
            let resumed = try runA2Q(Self.run + ["--out", folder, "--resume", "auto"])
            #expect(resumed.status == 0, "\(resumed.output)")
            for step in damaged {
                let path = folder + "/" + CheckpointFolder.name(globalStep: step)
                let warnings = Claims.lines(resumed.output, containing: "skipping \(path)")
                #expect(warnings.count == 1 && warnings[0].contains("/" + dataset), "\(dataset): \(resumed.output)")
            }
            let from = folder + "/" + CheckpointFolder.name(globalStep: resumeFrom)
            #expect(resumed.output.contains("resuming from \(from)"), "\(dataset): \(resumed.output)")
            let (sameNames, differing) = try Claims.differingTensors(straight + "/final.h5", folder + "/final.h5")
            #expect(sameNames && differing.isEmpty, "\(dataset): \(differing)")
        }
    }
}
