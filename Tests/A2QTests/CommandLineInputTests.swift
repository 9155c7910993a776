import A2QCore
import A2QTrain
import Foundation
import Testing

/// Writes an unsigned-byte IDX file (MNIST format) with the given shape and pixel values.
func writeIDX(_ path: String, shape: [Int], fill: (Int) -> UInt8) throws {
    var bytes: [UInt8] = [0, 0, 8, UInt8(shape.count)]
    for d in shape { bytes += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    bytes += (0..<shape.reduce(1, *)).map(fill)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// An MNIST-format folder: `count` images of `side`×`side` per split, `labels` labels
/// (default: as many as images); `splits` names the file prefixes written.
func writeIDXFolder(_ folder: String, count: Int, labels: Int? = nil, side: Int = 28, splits: [String] = ["train", "t10k"]) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for split in splits {
        try writeIDX(folder + "/\(split)-images-idx3-ubyte", shape: [count, side, side]) { UInt8(($0 * 37) % 256) }
        try writeIDX(folder + "/\(split)-labels-idx1-ubyte", shape: [labels ?? count]) { UInt8($0 % 10) }
    }
}

@Suite("Command-line input: config files and data folders", .serialized)
struct CommandLineInputTests {
    static let quick = ["--model", "mlp", "--batch-size", "32", "--float-epochs", "1", "--epochs", "1", "--max-steps", "2",
                        "--calibration-batches", "1", "--log-every", "100"]

    func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test("--config: flags override the file, the file overrides the defaults; wrong types, unknown keys and bad values are refused")
    func configFiles() throws {
        let folder = temporaryFolder("config")
        let file = folder + "/run.json"
        try write(#"{"model": "mlp", "epochs": 2, "lr": 0.05, "batch-size": 32, "data": "synthetic", "train-subset": 64, "max-steps": 2, "calibration-batches": 1}"#,
                  to: file)
        let out = folder + "/out"
        let run = try runA2Q(["train", "--config", file, "--epochs", "1", "--lr", "0.01", "--out", out])
        #expect(run.status == 0, "\(run.output)")
        let saved = try TrainConfig.load(path: out + "/config.json")
        #expect(saved.epochs == 1 && saved.lr == 0.01, "flags must win over the file")
        #expect(saved.batchSize == 32 && saved.trainSubset == 64 && saved.model == .mlp, "the file must win over the defaults")
        #expect(saved.weightBits == TrainConfig.defaults.weightBits)

        let refused: [(String, [String])] = [
            (#"{"epochs": "two"}"#, ["wrong type for 'epochs'"]),
            (#"{"epoch": 2}"#, ["unknown key 'epoch'", "epochs"]),
            (#"{"weight-bits": 40}"#, ["--weight-bits 40"]),
            (#"{"model": "resnet9000"}"#, ["model"]),
            ("[1, 2]", ["is not a JSON object"]),
            ("{\"epochs\": 2", ["is not valid JSON"]),
        ]
        for (text, phrases) in refused {
            try write(text, to: file)
            let result = try runA2Q(["train", "--config", file, "--data", "synthetic", "--out", folder + "/refused"])
            #expect(result.status == 1 && phrases.allSatisfy { result.output.contains($0) }, "\(text): \(result.output)")
            // A value the file could not hold names the file; an out-of-range value names the option.
            if !text.contains("40") { #expect(result.output.contains(file), "\(text): \(result.output)") }
            #expect(!FileManager.default.fileExists(atPath: folder + "/refused/metrics.jsonl"), "\(text) started a run")
        }
        let missing = try runA2Q(["train", "--config", folder + "/nope.json"])
        #expect(missing.status == 1 && missing.output.contains("cannot read the config file \(folder)/nope.json"), "\(missing.output)")
    }

    @Test("each option is declared once: one table gives the flags, the config-file keys, the stored configuration and the help")
    func optionsDeclaredOnce() throws {
        // Every stored setting of TrainConfig has exactly one option.
        let properties = Mirror(reflecting: TrainConfig()).children.compactMap(\.label)
        #expect(properties.count == TrainConfig.options.count, "\(properties.count) settings, \(TrainConfig.options.count) options")
        #expect(Set(TrainConfig.options.map(\.name)).count == TrainConfig.options.count)
        var c = TrainConfig()
        try c.apply(arguments: ["--weight-bits", "6", "--lr=0.01", "--layer-accumulator-bits", "fc1=18",
                                "--layer-accumulator-bits", "fc2=20", "--model", "resnet8", "--max-steps", "7"])
        #expect(c.weightBits == 6 && c.lr == 0.01 && c.layerAccumulatorBits == ["fc1": 18, "fc2": 20] && c.model == .resnet8 && c.maxSteps == 7)
        let decoded = try JSONDecoder().decode(TrainConfig.self, from: Data(c.json().utf8))
        #expect(decoded == c)
        let keys = try #require(try JSONSerialization.jsonObject(with: Data(c.json().utf8)) as? [String: Any]).keys
        #expect(Set(keys).isSubset(of: Set(TrainConfig.options.map(\.name))))
        for (words, phrase) in [(["--modle", "cnn"], "did you mean --model?"), (["--weight-bits", "x"], "takes <integer>"),
                                (["--quantizer", "a3q"], "takes <float|qat|a2q|a2q+>"), (["--epochs"], "needs a value"),
                                (["--model", "resnet9000"], "is not a valid value"), (["cnn"], "unexpected argument")] {
            var d = TrainConfig()
            #expect(throws: A2QError.self) { try d.apply(arguments: words) }
            do { try d.apply(arguments: words) } catch { #expect("\(error)".contains(phrase), "\(words): \(error)") }
        }
        let help = try runA2Q(["train", "--help"])
        #expect(TrainConfig.options.allSatisfy { help.output.contains("--\($0.name) <") }, "\(help.output)")
    }

    @Test("data folders: image and label counts that differ, images that are not 28×28, a truncated file; eval reads a folder with only the test files")
    func dataFolders() throws {
        let folder = temporaryFolder("idx")
        let mismatched = folder + "/mismatched", small = folder + "/small", testOnly = folder + "/test-only"
        try writeIDXFolder(mismatched, count: 64, labels: 63)
        let counts = try runA2Q(["train", "--data", mismatched, "--out", folder + "/a"] + Self.quick)
        #expect(counts.status == 1 && counts.output.contains("holds 64 images but") && counts.output.contains("holds 63 labels"),
                "\(counts.output)")

        // Models take the data's image size; images too small for the cnn's two poolings are refused by layer.
        try writeIDXFolder(small, count: 64, side: 14)
        let tiny = folder + "/tiny"
        try writeIDXFolder(tiny, count: 64, side: 3)
        let size = try runA2Q(["train", "--data", tiny, "--out", folder + "/b"] + Self.quick + ["--model", "cnn"])
        #expect(size.status == 1 && size.output.contains("pool2: a 2×2 max pool (stride 2) does not fit its input [64, 1, 1]"), "\(size.output)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/b"), "a refused run left its folder")

        // A header that declares 2^32−1 images in a 30-byte file.
        try writeIDXFolder(testOnly, count: 20, splits: ["t10k"])
        var huge: [UInt8] = [0, 0, 8, 3, 255, 255, 255, 255, 0, 0, 0, 28, 0, 0, 0, 28]
        huge += [UInt8](repeating: 1, count: 14)
        let crafted = folder + "/crafted"
        try writeIDXFolder(crafted, count: 20)
        try Data(huge).write(to: URL(fileURLWithPath: crafted + "/train-images-idx3-ubyte"))
        let declared = try runA2Q(["train", "--data", crafted, "--out", folder + "/c"] + Self.quick)
        #expect(declared.status == 1 && declared.output.contains("holds 14 data bytes but its header"), "\(declared.output)")

        let checkpoint = folder + "/ckpt"
        #expect(try runA2Q(["train", "--data", "synthetic", "--train-subset", "64", "--out", checkpoint] + Self.quick).status == 0)
        for integer in [false, true] {
            let eval = try runA2Q(["eval", checkpoint + "/final.h5", "--data", testOnly] + (integer ? ["--integer"] : []))
            #expect(eval.status == 0 && eval.output.contains("on 20 test images"), "\(eval.output)")
        }
        let eval = try runA2Q(["eval", checkpoint + "/final.h5", "--data", small])
        #expect(eval.status == 1 && eval.output.contains("the images are 1×14×14 but the model takes 1×28×28"), "\(eval.output)")
    }
}
