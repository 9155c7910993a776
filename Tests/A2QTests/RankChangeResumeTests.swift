import A2QTrain
import Foundation
import Testing

/// README, "Several hosts": "Resuming with another rank count continues the same global batch
/// sequence: parameters, optimizer state, the step counters and the data order carry over
/// exactly. What follows equals an uninterrupted run only up to the all-reduce's summation order
/// ..., and each rank's BatchNorm running statistics restart from the rank average saved in the
/// checkpoint"; "the global batch must divide by the new rank count".
@Suite("Resume with another rank count: data order, step counters, BatchNorm from the rank average, indivisible batches", .serialized)
struct RankChangeResumeTests {
    /// A float mlp with plain SGD: no quantizer rounding and no Adam normalisation to magnify the
    /// last bits of a different summation order, so "equal up to summation order" is tight
    /// (observed ≤ 1e-5 relative), while another batch differs by percents.
    static let mlp = ["train", "--model", "mlp", "--quantizer", "float", "--optimizer", "sgd", "--lr", "0.05", "--data", "synthetic",
                      "--train-subset", "960", "--batch-size", "48", "--epochs", "2", "--log-every", "1", "--check-every", "5"]

    static func train(ranks: Int, _ arguments: [String]) throws -> MPIRun.Result {
        ranks == 1 ? try runA2Q(arguments, timeout: 180) : try MPIRun.run(ranks: ranks, arguments, timeout: 180)
    }

    /// Per-step losses of a run's dump (`--test-dump-parameters`): the mean of the ranks' local
    /// means (equal local batches), by phase step.
    static func globalLosses(_ prefix: String, ranks: Int) throws -> [Int: Double] {
        var sums: [Int: Double] = [:]
        for rank in 0..<ranks {
            for line in try String(contentsOfFile: "\(prefix).rank\(rank).losses", encoding: .utf8).split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 4, let step = Int(fields[1]), let loss = Double(fields[3]) else { continue }
                sums[step, default: 0] += loss / Double(ranks)
            }
        }
        return sums
    }

    @Test("stop at R, resume at R′: the same global batches (per-step loss within 1e-4 of an uninterrupted R=1 run), the same step counters (step numbers, learning rates bit for bit, file counters, optimizer step count)",
          arguments: [(2, 3), (3, 1)])
    func dataOrderAndCounters(saved: Int, resumed: Int) throws {
        let straight = temporaryFolder("rank-straight"), split = temporaryFolder("rank-split")
        let reference = try Self.train(ranks: 1, Self.mlp + ["--out", straight, "--test-dump-parameters", straight + "/dump"])
        #expect(reference.status == 0, "\(reference.output)")
        let first = try Self.train(ranks: saved, Self.mlp + ["--out", split, "--stop-after-steps", "13"])
        #expect(first.status == 0 && first.output.contains("stopped after global step 13"), "\(first.output)")
        let checkpoint = split + "/" + CheckpointFolder.name(globalStep: 13)
        #expect(try Claims.intAttribute(checkpoint, "world_size") == saved)
        let second = try Self.train(ranks: resumed, Self.mlp + ["--out", split, "--resume", "auto", "--test-dump-parameters", split + "/dump"])
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("resuming from \(checkpoint)") && second.output.contains("global step 13"), "\(second.output)")
        #expect(second.output.contains("\(resumed) rank(s)"), "\(second.output)")

        // Data order: every step after the resume sees the global batch the uninterrupted run saw.
        let expected = try Self.globalLosses(straight + "/dump", ranks: 1)
        let got = try Self.globalLosses(split + "/dump", ranks: resumed)
        #expect(expected.count == 40 && Set(got.keys) == Set(14...40), "steps after the resume: \(got.keys.sorted())")
        for step in got.keys.sorted() {
            let a = try #require(expected[step]), b = try #require(got[step])
            #expect(abs(a - b) <= 1e-4 * abs(a), "step \(step): loss \(b) after the resume at R=\(resumed), \(a) uninterrupted")
        }
        // Step counters: the learning rate of every step (a function of the step counter) bit for bit.
        func rates(_ folder: String) throws -> [Int: Double] {
            var out: [Int: Double] = [:]
            for record in try Claims.records(folder, type: "step") {
                if let step = record["step"] as? Int, let lr = record["lr"] as? Double { out[step] = lr }
            }
            return out
        }
        let straightRates = try rates(straight), splitRates = try rates(split)
        #expect(straightRates.count == 40 && splitRates.count == 40, "\(splitRates.keys.sorted())")
        for step in 14...40 { #expect(splitRates[step]?.bitPattern == straightRates[step]?.bitPattern, "lr at step \(step)") }
        for name in ["global_step", "step", "earlier_steps", "epoch", "position"] {
            #expect(try Claims.intAttribute(split + "/final.h5", name) == Claims.intAttribute(straight + "/final.h5", name), "\(name)")
        }
        #expect(try Claims.intAttribute(split + "/final.h5", "step_count", group: "optimizer") == 40)
        // Parameters: equal to summation order.
        let a = try modelTensors(straight + "/final.h5"), b = try modelTensors(split + "/final.h5")
        #expect(!a.isEmpty && a.keys.sorted() == b.keys.sorted())
        for key in a.keys.sorted() {
            let difference = Claims.relativeDifference(a[key] ?? [], b[key] ?? [])
            #expect(difference < 1e-4, "\(key): relative difference \(difference)")
        }
    }

    @Test("cnn-bn saved at R=2 (each rank's own BatchNorm statistics), resumed at R′=1 and R′=3: every rank starts from the rank average in the checkpoint")
    func batchNormFromRankAverage() throws {
        let arguments = ["train", "--model", "cnn-bn", "--quantizer", "float", "--optimizer", "sgd", "--lr", "0.05", "--data", "synthetic",
                         "--train-subset", "384", "--batch-size", "48", "--epochs", "1", "--log-every", "100"]
        let saved = temporaryFolder("rank-bn")
        let first = try Self.train(ranks: 2, arguments + ["--out", saved, "--stop-after-steps", "5"])
        #expect(first.status == 0, "\(first.output)")
        let checkpoint = saved + "/" + CheckpointFolder.name(globalStep: 5)
        let buffers = ["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"]
        // The average of the two ranks' rows, computed here from /data/rank_buffers.
        var average: [String: [Float]] = [:]
        for name in buffers {
            let rows = try Claims.floats(checkpoint, "data/rank_buffers/" + name)
            let n = rows.count / 2
            let r0 = Array(rows[..<n]), r1 = Array(rows[n...])
            // The ranks saw different local batches: their rows differ far beyond the 1e-6 below.
            #expect(Claims.relativeDifference(r0, r1) > 1e-4, "\(name): the two ranks' statistics should differ")
            average[name] = zip(r0, r1).map { ($0 + $1) / 2 }
            let stored = try Claims.floats(checkpoint, "model/" + name.replacingOccurrences(of: ".", with: "/"))
            #expect(Claims.relativeDifference(stored, average[name] ?? []) < 1e-6, "\(name): /model holds the rank average")
        }
        // --max-steps 5 = the saved step: the resumed run takes no step, so final.h5 holds the
        // statistics every rank started from (with R′=3, averaged once more over equal values).
        for ranks in [1, 3] {
            let out = temporaryFolder("rank-bn-\(ranks)")
            let resumed = try Self.train(ranks: ranks, arguments + ["--out", out, "--resume", checkpoint, "--max-steps", "5"])
            #expect(resumed.status == 0 && resumed.output.contains("resuming from \(checkpoint)"), "\(resumed.output)")
            #expect(try Claims.intAttribute(out + "/final.h5", "global_step") == 5)
            for name in buffers {
                let restarted = try Claims.floats(out + "/final.h5", "model/" + name.replacingOccurrences(of: ".", with: "/"))
                let difference = Claims.relativeDifference(restarted, average[name] ?? [])
                #expect(ranks == 1 ? difference == 0 : difference < 1e-6, "R′=\(ranks), \(name): \(difference) from the rank average")
            }
        }
    }

    @Test("resuming with a rank count that does not divide the global batch: exit 1, one message, the run folder untouched")
    func indivisibleBatch() throws {
        let folder = temporaryFolder("rank-indivisible")
        let first = try Self.train(ranks: 2, Self.mlp + ["--out", folder, "--stop-after-steps", "5"])
        #expect(first.status == 0, "\(first.output)")
        let before = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        let metrics = try Data(contentsOf: URL(fileURLWithPath: folder + "/metrics.jsonl"))
        let result = try MPIRun.run(ranks: 5, Self.mlp + ["--out", folder, "--resume", "auto"], timeout: 120)
        #expect(result.status == 1, "exit \(result.status): \(result.output)")
        #expect(Claims.lines(result.output, containing: "global batch size 48 is not divisible by the 5 ranks").count == 1, "\(result.output)")
        #expect(!result.output.contains("resuming from"), "\(result.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == before)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/metrics.jsonl")) == metrics)
    }
}
