import A2QCore
import A2QQuant
import Foundation
import Testing

/// `--init axe` (AXE, accumulator-aware GPTQ) in the trainer: post-training quantization with
/// `--epochs 0`, its Hessian over MPI ranks, the proof on every tile, and fine-tuning from it.
@Suite("Post-training quantization with AXE: ranks, tiles, the proof, fine-tuning", .serialized)
struct PostTrainingQuantizationTests {
    /// A float cnn trained briefly on a Fashion-MNIST subset (shared below).
    static let floatModel: Result<String, Error> = Result {
        let folder = temporaryFolder("ptq-float")
        let run = try runA2Q(["train", "--model", "cnn", "--quantizer", "float", "--train-subset", "2000", "--epochs", "1",
                              "--log-every", "1000", "--out", folder], timeout: 300)
        guard run.status == 0 else { throw PTQError.run(run.output) }
        return folder + "/final.h5"
    }

    enum PTQError: Error { case run(String) }

    static func axeArguments(_ float: String, out: String, extra: [String] = []) -> [String] {
        ["train", "--model", "cnn", "--quantizer", "a2q+", "--accumulator-bits", "16", "--init-from", float, "--init", "axe",
         "--epochs", "0", "--train-subset", "2000", "--batch-size", "48", "--calibration-batches", "2", "--log-every", "1000",
         "--out", out] + extra
    }

    /// The `axe` records of a run's metrics log: layer → H's FNV-1a.
    static func hessianChecksums(_ folder: String) throws -> [String: String] {
        let lines = try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        var out: [String: String] = [:]
        for line in lines {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["type"] as? String == "axe", let layer = object["layer"] as? String, let fnv = object["hessian_fnv1a"] as? String
            else { continue }
            out[layer] = fnv
        }
        return out
    }

    @Test("H over input integers is the same bits however the columns are split over ranks and the shards summed; over float inputs it is not")
    func hessianReductionIsExact() {
        var g = Xoshiro256(seed: 9)
        let k = 37, n = 3000
        let integers = (0..<(k * n)).map { _ in Double(g.next() % 256) }          // uint8 activations
        let scale = 0.0173
        func hessian(_ x: [Double], columns: Range<Int>) -> [Double] {
            var shard = [Double](repeating: 0, count: k * columns.count)
            for i in 0..<k { for (c, j) in columns.enumerated() { shard[i * columns.count + c] = x[i * n + j] } }
            var accumulator = HessianAccumulator(inputCount: k)
            accumulator.add(inputs: shard, columns: columns.count)
            return accumulator.matrix
        }
        func add(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 + $1 } }
        func bits(_ h: [Double]) -> [UInt64] { h.map { ($0 * scale * scale).bitPattern } }
        let whole = bits(hessian(integers, columns: 0..<n))
        // R = 2 (even and uneven shards), R = 3 summed in both associations (MPI may use either).
        let splits: [[Range<Int>]] = [[0..<1500, 1500..<n], [0..<7, 7..<n], [0..<1000, 1000..<2000, 2000..<n], [0..<1, 1..<2999, 2999..<n]]
        for split in splits {
            let shards = split.map { hessian(integers, columns: $0) }
            #expect(bits(shards.dropFirst().reduce(shards[0], add)) == whole, "\(split)")
            #expect(bits(shards.dropLast().reversed().reduce(shards[shards.count - 1], add)) == whole, "\(split) reversed")
        }
        // The same activations as float values (x·s) give different bits when split: the construction matters.
        let floats = integers.map { $0 * scale + 1e-3 * Double(g.uniform(0, 1)) }
        let single = hessian(floats, columns: 0..<n), halves = add(hessian(floats, columns: 0..<7), hessian(floats, columns: 7..<n))
        #expect(single.map(\.bitPattern) != halves.map(\.bitPattern), "float inputs happened to sum identically")
    }

    @Test("R=1, R=2 and an oversubscribed R=3 each quantize with tiles of 32, every tile proven; accuracies within 3 points")
    func anyRankCount() throws {
        let float = try Self.floatModel.get()
        var accuracies: [Double] = []
        for ranks in [1, 2, 3] {
            let folder = temporaryFolder("ptq-r\(ranks)")
            let run = try MPIRun.run(ranks: ranks, Self.axeArguments(float, out: folder, extra: ["--accumulator-tile", "32"]), timeout: 300)
            #expect(run.status == 0, "R=\(ranks): \(run.output)")
            #expect(try Self.hessianChecksums(folder).keys.sorted() == ["conv2", "fc1"])
            let verify = try runA2Q(["verify", folder + "/final.h5", "--json"])
            #expect(verify.status == 0, "R=\(ranks): AXE's integers must be proven on every tile: \(verify.output)")
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/summary.json"))) as? [String: Any]
            accuracies.append(summary?["test_accuracy"] as? Double ?? 0)
        }
        #expect((accuracies.max() ?? 0) - (accuracies.min() ?? 0) < 0.03, "\(accuracies)")
    }

    @Test("AXE beats EP-init + rounding at P=16 without training, keeps every layer overflow-free, and fine-tunes (--epochs 1) from there")
    func axeThenFineTune() throws {
        let float = try Self.floatModel.get()
        let axe = temporaryFolder("ptq-axe"), ep = temporaryFolder("ptq-ep"), tuned = temporaryFolder("ptq-tuned")
        let a = try runA2Q(Self.axeArguments(float, out: axe), timeout: 300)
        var epArguments = Self.axeArguments(float, out: ep)
        epArguments[epArguments.firstIndex(of: "axe")!] = "ep"
        let b = try runA2Q(epArguments, timeout: 300)
        #expect(a.status == 0 && b.status == 0, "\(a.output)\n\(b.output)")
        func summary(_ folder: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/summary.json"))) as? [String: Any])
        }
        let axeAccuracy = try #require(try summary(axe)["test_accuracy"] as? Double)
        let epAccuracy = try #require(try summary(ep)["test_accuracy"] as? Double)
        let floatAccuracy = try #require(try summary(axe)["float_test_accuracy"] as? Double)
        #expect(try summary(axe)["steps"] as? Int == 0 && summary(axe)["overflow_free"] as? Bool == true)
        #expect(axeAccuracy > epAccuracy + 0.10, "AXE \(axeAccuracy) vs EP-init + rounding \(epAccuracy) (float \(floatAccuracy))")
        // The checkpoint is a normal one: export, verify and the integer engine take it.
        let exported = try runA2Q(["export", axe + "/final.h5", "--out", axe + "/model.h5"])
        #expect(exported.status == 0, "\(exported.output)")
        let eval = try runA2Q(["eval", "--integer", axe + "/model.h5", "--json"], timeout: 300)
        let engine = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
        #expect(abs((engine["accuracy"] as? Double ?? 0) - axeAccuracy) <= 0.002, "engine \(engine["accuracy"] ?? "-") vs \(axeAccuracy)")
        // Fine-tuning from AXE: the run converts with AXE, then trains.
        var tune = Self.axeArguments(float, out: tuned)
        tune[tune.firstIndex(of: "0")!] = "1"
        let c = try runA2Q(tune + ["--max-steps", "20"], timeout: 300)
        #expect(c.status == 0 && c.output.contains("axe: every constrained layer quantized"), "\(c.output)")
        #expect(try summary(tuned)["steps"] as? Int == 20 && summary(tuned)["overflow_free"] as? Bool == true)
    }

    @Test("--epochs 0 needs --init-from and a quantizer")
    func epochsZeroRefusedAlone() throws {
        let run = try runA2Q(["train", "--data", "synthetic", "--epochs", "0"])
        #expect(run.status == 1 && run.output.contains("--epochs 0 needs --init-from"), "\(run.output)")
    }
}
