import A2QCheckpoint
import Foundation
import Testing

/// README: "`--layer-accumulator-bits` wins over a file's `accumulator_bits`, which wins over
/// `--accumulator-bits`" (training); "In `eval --integer` and `verify`, `--accumulator-bits P` sets P
/// for the hidden weight layers ...; the first and last layers keep their own P unless
/// `--layer-accumulator-bits NAME=P` (repeatable, wins) sets one."
@Suite("Which accumulator width P wins: flags, model file, global setting", .serialized)
struct AccumulatorPrecedenceTests {
    /// Four weight layers: fc1 and fc2 set P in the file, fc3 and fc4 do not.
    static let model = """
        {"format": "a2q-model", "version": 1, "name": "four", "layers": [
         {"type": "flatten", "name": "flatten"},
         {"type": "linear", "name": "fc1", "out": 32, "accumulator_bits": 20}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
         {"type": "linear", "name": "fc2", "out": 32, "accumulator_bits": 20}, {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
         {"type": "linear", "name": "fc3", "out": 32}, {"type": "relu", "name": "relu3"}, {"type": "quant", "name": "act3"},
         {"type": "linear", "name": "fc4"}]}
        """

    /// `accumulator_bits` per layer from a verify/eval --json report.
    static func reportedBits(_ output: String) throws -> [String: Int] {
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(output)")
        let layers = try #require(report["layers"] as? [[String: Any]], "\(output)")
        var out: [String: Int] = [:]
        for layer in layers { if let name = layer["name"] as? String, let bits = layer["accumulator_bits"] as? Int { out[name] = bits } }
        return out
    }

    @Test("training: fc1 file 20 over global 18, fc2 flag 22 over file 20, fc3 the global 18, fc4 flag 19 over global; each layer is trained to that P (its L1 bound is A2Q+'s T for it, its integers fit); then verify and eval --integer: --accumulator-bits 24 sets the hidden fc2, a layer flag wins over it on fc3 and sets the first layer fc1, the last layer fc4 keeps its own 19")
    func precedence() throws {
        let folder = temporaryFolder("precedence")
        try Claims.write(Self.model, to: folder + "/four.json")
        let run = try runA2Q(["train", "--model", folder + "/four.json", "--quantizer", "a2q+", "--first-last", "constrained",
                              "--accumulator-bits", "18", "--layer-accumulator-bits", "fc2=22", "--layer-accumulator-bits", "fc4=19",
                              "--data", "synthetic", "--train-subset", "256", "--batch-size", "32", "--float-epochs", "1", "--epochs", "1",
                              "--max-steps", "3", "--calibration-batches", "1", "--out", folder + "/run"])
        #expect(run.status == 0, "\(run.output)")
        let checkpoint = folder + "/run/final.h5"
        let expected = ["fc1": 20, "fc2": 22, "fc3": 18, "fc4": 19]
        for (layer, p) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(try Claims.intAttribute(checkpoint, "accumulator_bits", group: "model/\(layer)") == p, "\(layer)")
            let n = try Claims.intAttribute(checkpoint, "input_bits", group: "model/\(layer)")
            let bound = try HDF5File.openForReading(checkpoint).openGroup("model").openGroup(layer).doubleAttribute("l1_bound")
            let t = (pow(2, Double(p)) - 2) / (pow(2, Double(n)) - 1)
            #expect(abs(bound - t) <= 1e-9 * t, "\(layer): l1_bound \(bound), A2Q+ T for P=\(p), N=\(n) is \(t)")
            let l1 = try Claims.floats(checkpoint, "model/\(layer)/l1_norm"), pMin = try Claims.floats(checkpoint, "model/\(layer)/p_min")
            #expect(l1.allSatisfy { Double($0) <= t } && pMin.allSatisfy { Int($0) <= p }, "\(layer): max L1 \(l1.max() ?? -1), p_min \(pMin.max() ?? -1)")
        }

        let flags = ["--accumulator-bits", "24", "--layer-accumulator-bits", "fc3=26", "--layer-accumulator-bits", "fc1=21"]
        let whatIf = ["fc1": 21, "fc2": 24, "fc3": 26, "fc4": 19]
        let verify = try runA2Q(["verify", checkpoint, "--json"] + flags)
        #expect(verify.status == 0, "\(verify.output)")
        #expect(try Self.reportedBits(verify.output) == whatIf, "\(verify.output)")
        let eval = try runA2Q(["eval", "--integer", checkpoint, "--limit", "50", "--json"] + flags)
        #expect(eval.status == 0, "\(eval.output)")
        #expect(try Self.reportedBits(eval.output) == whatIf, "\(eval.output)")
        // Without what-if flags, each layer keeps the P it was trained for.
        #expect(try Self.reportedBits(try runA2Q(["verify", checkpoint, "--json"]).output) == expected)
    }
}
