import Foundation
import Testing

/// docs/CHECKPOINT.md, "Reading: every file is untrusted", **Values**: "Parameters, BatchNorm
/// statistics, optimizer state, logging sums, and in exports `weight_scale`, `bias`, `multiplier`
/// and `offset` must be finite; `running_var` (in `/model` and in `/data/rank_buffers`) and Adam's
/// `exp_avg_sq` non-negative; an export's `weight_scale` ... positive; integer weights must fit M
/// bits", and "Any failure is an error that names the file, the object and what was wrong (exit 1)".
///
/// Each case writes one bad value with h5py into a copy of a real file (type, shape, chunking and
/// checksum stay valid, so only the value rule can catch it) and runs the commands that read it.
@Suite("Checkpoint and export value rules, dataset kind by dataset kind", .serialized)
struct ValueRulesTests {
    /// Every dataset kind in one small file: BatchNorm (statistics, per-rank buffers), an A2Q+
    /// layer (norms), a 6-bit layer (so that an int8 value can exceed M), biases, activation scales.
    static let model = """
        {"format": "a2q-model", "version": 1, "name": "values", "layers": [
         {"type": "conv", "name": "conv1", "out": 4, "kernel": 3, "bias": false},
         {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
         {"type": "maxpool", "name": "pool1"},
         {"type": "conv", "name": "conv2", "out": 8, "kernel": 3, "bias": false, "weight_bits": 6},
         {"type": "batchnorm", "name": "bn2"}, {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
         {"type": "maxpool", "name": "pool2"}, {"type": "flatten", "name": "flatten"},
         {"type": "linear", "name": "fc1", "out": 16}, {"type": "relu", "name": "relu3"}, {"type": "quant", "name": "act3"},
         {"type": "linear", "name": "fc2"}]}
        """

    struct Fixture {
        let folder: String
        let arguments: [String]
        /// A periodic checkpoint (Adam state, per-rank buffers, logging sums) and an export of it.
        let checkpoint: String
        let export: String
    }

    static func fixture(optimizer: String = "adam") throws -> Fixture {
        let folder = temporaryFolder("values-\(optimizer)")
        try Claims.write(model, to: folder + "/values.json")
        let arguments = ["train", "--model", folder + "/values.json", "--quantizer", "a2q+", "--optimizer", optimizer, "--data", "synthetic",
                         "--train-subset", "320", "--batch-size", "32", "--float-epochs", "1", "--epochs", "1", "--max-steps", "4",
                         "--calibration-batches", "1", "--log-every", "100"]
        let run = try runA2Q(arguments + ["--out", folder + "/run", "--stop-after-steps", "12"])
        #expect(run.status == 0 && run.output.contains("stopped after global step 12"), "\(run.output)")
        let checkpoint = folder + "/run/ckpt-000000012.h5"
        let export = try runA2Q(["export", checkpoint, "--out", folder + "/model.h5"])
        #expect(export.status == 0, "\(export.output)")
        return Fixture(folder: folder, arguments: arguments, checkpoint: checkpoint, export: folder + "/model.h5")
    }

    /// Copies `source` once per case with one value changed; returns the copies by case.
    static func mutate(_ source: String, _ cases: [(dataset: String, value: Any)], in folder: String) throws -> [String] {
        var spec: [[String: Any]] = []
        var targets: [String] = []
        for (i, (dataset, value)) in cases.enumerated() {
            let target = folder + "/case\(i)-" + dataset.replacingOccurrences(of: "/", with: "_") + ".h5"
            spec.append(["source": source, "target": target, "dataset": dataset, "index": 0, "value": value])
            targets.append(target)
        }
        let specPath = folder + "/spec-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: specPath))
        try Claims.h5(["set", specPath])
        return targets
    }

    /// `train --resume FILE` with the configuration that wrote it (validation reads everything).
    static func resume(_ fixture: Fixture, _ file: String) throws -> MPIRun.Result {
        try runA2Q(fixture.arguments + ["--resume", file, "--out", temporaryFolder("values-resume")])
    }

    @Test("checkpoints: a NaN or ±inf in a parameter, a scale, a norm, an activation scale, a BatchNorm parameter or statistic, a per-rank buffer, Adam's or SGD's state, a logging sum; a negative running variance (in /model and in the per-rank buffers) and Adam second moment: `--resume` refuses each (exit 1, naming the file and the dataset); `inspect` refuses the ones it reads (/model and the logging sums); a negative first moment and the unchanged file are accepted")
    func checkpointValues() throws {
        let adam = try Self.fixture(), sgd = try Self.fixture(optimizer: "sgd")
        // (dataset, value, also read by inspect, the reason in the message)
        let cases: [(String, Any, Bool, String)] = [
            ("model/conv1/weight", "nan", true, "non-finite"), ("model/fc2/bias", "inf", true, "non-finite"),
            ("model/conv2/weight_log2_scale", "-inf", true, "non-finite"), ("model/fc1/weight_log2_norm", "nan", true, "non-finite"),
            ("model/act1/log2_scale", "inf", true, "non-finite"), ("model/bn1/weight", "nan", true, "non-finite"),
            ("model/bn1/bias", "-inf", true, "non-finite"), ("model/bn2/running_mean", "nan", true, "non-finite"),
            ("model/bn2/running_var", "inf", true, "non-finite"), ("data/window", "nan", true, "non-finite"),
            ("data/epoch_totals", "inf", true, "non-finite"), ("data/rank_buffers/bn1.running_var", "nan", false, "non-finite"),
            ("optimizer/exp_avg/fc1.weight", "nan", false, "non-finite"), ("optimizer/exp_avg_sq/conv2.weight", "inf", false, "non-finite"),
            ("optimizer/exp_avg_sq/fc1.weight", -1.0, false, "negative"), ("model/bn1/running_var", -1.0, true, "negative"),
            ("data/rank_buffers/bn2.running_var", -1.0, false, "negative"),
        ]
        let files = try Self.mutate(adam.checkpoint, cases.map { ($0.0, $0.1) }, in: adam.folder)
        for ((dataset, value, inspected, reason), file) in zip(cases, files) {
            let resumed = try Self.resume(adam, file)
            #expect(resumed.status == 1 && resumed.output.contains(file) && resumed.output.contains("/" + dataset)
                    && resumed.output.contains(reason), "\(dataset) = \(value), --resume: \(resumed.output)")
            #expect(!resumed.output.contains("resuming from"), "\(dataset): \(resumed.output)")
            if inspected {
                let inspect = try runA2Q(["inspect", file])
                #expect(inspect.status == 1 && inspect.output.contains(file) && inspect.output.contains("/" + dataset),
                        "\(dataset) = \(value), inspect: \(inspect.output)")
            }
        }
        let momentum = try Self.mutate(sgd.checkpoint, [("optimizer/momentum/conv2.weight", "nan")], in: sgd.folder)[0]
        let refused = try Self.resume(sgd, momentum)
        #expect(refused.status == 1 && refused.output.contains("/optimizer/momentum/conv2.weight") && refused.output.contains("non-finite"),
                "SGD momentum: \(refused.output)")

        // Controls: the rules are specific (Adam's first moment may be negative), and the
        // unchanged file passes the same commands.
        let negativeFirstMoment = try Self.mutate(adam.checkpoint, [("optimizer/exp_avg/fc1.weight", -1.0)], in: adam.folder)[0]
        for file in [adam.checkpoint, negativeFirstMoment] {
            let resumed = try Self.resume(adam, file)
            #expect(resumed.status == 0 && resumed.output.contains("resuming from \(file)"), "\(resumed.output)")
        }
        #expect(try runA2Q(["inspect", adam.checkpoint]).status == 0)
    }

    @Test("checkpoints: the stored integer view follows the same rules (an integer weight beyond M = 6 bits, a NaN weight_scale): refused by --resume, inspect and eval --integer")
    func checkpointIntegerView() throws {
        let adam = try Self.fixture()
        let cases: [(String, Any)] = [("model/conv2/weight_int", 40), ("model/conv2/weight_scale", "nan")]
        for ((dataset, value), file) in zip(cases, try Self.mutate(adam.checkpoint, cases, in: adam.folder)) {
            for command in [["inspect", file], ["eval", "--integer", file, "--data", "synthetic", "--limit", "10"]] {
                let result = try runA2Q(command)
                #expect(result.status == 1 && result.output.contains(file), "\(dataset) = \(value), \(command[0]): exit \(result.status): \(result.output)")
            }
            let resumed = try Self.resume(adam, file)
            #expect(resumed.status == 1 && resumed.output.contains(file), "\(dataset) = \(value), --resume: exit \(resumed.status): \(resumed.output)")
        }
    }

    @Test("exports: a NaN or ±inf multiplier, offset, bias or weight_scale, a negative or zero weight_scale, an integer weight beyond M (40 in a 6-bit layer, −128 in a narrow-range 8-bit one): inspect, verify and eval --integer refuse each (exit 1, naming the file and the layer); the unchanged export passes")
    func exportValues() throws {
        let fixture = try Self.fixture()
        let cases: [(String, Any)] = [
            ("layers/conv1/multiplier", "nan"), ("layers/fc1/offset", "inf"), ("layers/fc2/bias", "nan"), ("layers/conv2/weight_scale", "-inf"),
            ("layers/conv2/weight_int", 40), ("layers/fc1/weight_int", -128), ("layers/fc1/weight_scale", -0.5),
            ("layers/conv2/weight_scale", 0),
        ]
        let commands: [(String) -> [String]] = [{ ["inspect", $0] }, { ["verify", $0] },
                                                { ["eval", "--integer", $0, "--data", "synthetic", "--limit", "10"] }]
        for ((dataset, value), file) in zip(cases, try Self.mutate(fixture.export, cases, in: fixture.folder)) {
            let layer = dataset.split(separator: "/")[1]
            for command in commands {
                let result = try runA2Q(command(file))
                #expect(result.status == 1 && result.output.contains(file) && result.output.contains(String(layer)),
                        "\(dataset) = \(value), \(command(file)[0]): exit \(result.status): \(result.output)")
            }
        }
        for command in commands {
            let result = try runA2Q(command(fixture.export))
            #expect(result.status == 0, "\(command(fixture.export)[0]): \(result.output)")
        }
    }
}
