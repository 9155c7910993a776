import A2QCore
import A2QDistributed
import A2QQuant
import Foundation

/// A value an option of `a2q train` holds: read from a command-line word or from JSON.
public protocol OptionValue: Codable {
    /// Parses a command-line word; nil when it is not a value of this type.
    init?(word: String)
    /// How help shows the value (`<integer>`, `<sgd|adam|adamw>`).
    static var valueName: String { get }
}

extension Int: OptionValue {
    public init?(word: String) { self.init(word) }
    public static var valueName: String { "integer" }
}
extension UInt64: OptionValue {
    public init?(word: String) { self.init(word) }
    public static var valueName: String { "integer" }
}
extension Float: OptionValue {
    public init?(word: String) { self.init(word) }
    public static var valueName: String { "number" }
}
extension Double: OptionValue {
    public init?(word: String) { self.init(word) }
    public static var valueName: String { "number" }
}
extension String: OptionValue {
    public init?(word: String) { self = word }
    public static var valueName: String { "text" }
}

/// String enums: the word is the raw value.
public protocol OptionChoice: OptionValue, RawRepresentable, CaseIterable where RawValue == String {}
extension OptionChoice {
    public init?(word: String) { self.init(rawValue: word) }
    public static var valueName: String { allCases.map(\.rawValue).joined(separator: "|") }
}
extension WeightQuantizerKind: OptionChoice {}
extension WeightInitMethod: OptionChoice {}
extension FirstLastPolicy: OptionChoice {}
extension OptimizerName: OptionChoice {}
extension ScheduleName: OptionChoice {}
extension AllReduceProgress: OptionChoice {}
extension SumOrder: OptionChoice {}
extension ModelName: OptionValue {
    public init?(word: String) { self.init(validating: word) }
    /// `PATH` is a model file (`.json`) or an ONNX model (`.onnx`), as the help says; short enough
    /// that `--help` keeps the flag and its values on one line.
    public static var valueName: String { (builtIn.map(\.rawValue) + ["PATH"]).joined(separator: "|") }
}

/// A coding key for any option name.
public struct OptionKey: CodingKey {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// One option of `a2q train`, declared once: its name (the flag `--NAME` and the config-file
/// key), its help, and where its value lives in `TrainConfig`. The command line, config files,
/// the configuration stored in checkpoints and `--help` all come from `TrainConfig.options`.
public struct TrainOption: @unchecked Sendable {
    public let name: String
    public let help: String
    public let valueName: String
    /// Whether the flag may be given several times (each use adds an entry).
    public let repeatable: Bool
    let apply: (inout TrainConfig, String) throws -> Void
    let decode: (inout TrainConfig, KeyedDecodingContainer<OptionKey>) throws -> Void
    let encode: (TrainConfig, inout KeyedEncodingContainer<OptionKey>) throws -> Void

    /// An option of a non-optional setting.
    static func value<T: OptionValue>(_ name: String, _ path: WritableKeyPath<TrainConfig, T>, _ help: String) -> TrainOption {
        TrainOption(name: name, help: help, valueName: T.valueName, repeatable: false,
                    apply: { config, word in config[keyPath: path] = try parse(word, as: T.self, name: name) },
                    decode: { config, c in
                        if let v = try c.decodeIfPresent(T.self, forKey: OptionKey(name)) { config[keyPath: path] = v }
                    },
                    encode: { config, c in try c.encode(config[keyPath: path], forKey: OptionKey(name)) })
    }

    /// An option of a setting that may be unset (nil: the documented default applies).
    static func value<T: OptionValue>(_ name: String, _ path: WritableKeyPath<TrainConfig, T?>, _ help: String) -> TrainOption {
        TrainOption(name: name, help: help, valueName: T.valueName, repeatable: false,
                    apply: { config, word in config[keyPath: path] = try parse(word, as: T.self, name: name) },
                    decode: { config, c in
                        if let v = try c.decodeIfPresent(T.self, forKey: OptionKey(name)) { config[keyPath: path] = v }
                    },
                    encode: { config, c in try c.encodeIfPresent(config[keyPath: path], forKey: OptionKey(name)) })
    }

    /// `NAME=P` entries of a per-layer map (repeatable on the command line, an object in JSON).
    static func layerMap(_ name: String, _ path: WritableKeyPath<TrainConfig, [String: Int]>, _ help: String) -> TrainOption {
        TrainOption(name: name, help: help, valueName: "NAME=P", repeatable: true,
                    apply: { config, word in
                        let parts = word.split(separator: "=", omittingEmptySubsequences: false)
                        guard parts.count == 2, !parts[0].isEmpty, let bits = Int(parts[1]) else {
                            throw A2QError("--\(name) '\(word)' is not NAME=P", remedy: "e.g. --\(name) fc1=18")
                        }
                        config[keyPath: path][String(parts[0])] = bits
                    },
                    decode: { config, c in
                        if let v = try c.decodeIfPresent([String: Int].self, forKey: OptionKey(name)) { config[keyPath: path] = v }
                    },
                    encode: { config, c in try c.encode(config[keyPath: path], forKey: OptionKey(name)) })
    }

    static func parse<T: OptionValue>(_ word: String, as: T.Type, name: String) throws -> T {
        guard let value = T(word: word) else {
            throw A2QError("--\(name) '\(word)' is not a valid value", remedy: "--\(name) takes <\(T.valueName)>")
        }
        return value
    }

    /// The options for `a2q train --help`: the flag, then its help wrapped at 78 columns.
    public static func helpText(_ options: [TrainOption]) -> String {
        options.map { option in
            var lines = ["  --\(option.name) <\(option.valueName)>"]
            var line = "       "
            for word in (option.help + (option.repeatable ? " Repeatable." : "")).split(separator: " ") {
                if line.count + word.count + 1 > 78 { lines.append(line); line = "       " }
                line += " " + word
            }
            lines.append(line)
            return lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }
}

extension TrainConfig {
    /// Every option of `a2q train`, in help order: the one declaration of each setting's flag,
    /// config-file key and help.
    public static let options: [TrainOption] = [
        .value("model", \.model, "Model: a built-in (mlp, cnn, cnn-bn, resnet8, resnet14, resnet20, espcn, espcn-x3), a model file PATH.json (README, \"Networks\") or a float ONNX model PATH.onnx (its tree; the weights come from `a2q import`, README \"Import a PyTorch model\")."),
        .value("quantizer", \.quantizer, "Weight quantizer: float, qat, a2q or a2q+."),
        .value("weight-bits", \.weightBits, "Weight bits M of the constrained layers (2...16)."),
        .value("act-bits", \.actBits, "Activation bits N of the quantizers (2...16)."),
        .value("accumulator-bits", \.accumulatorBits, "Accumulator bits P of the hidden layers (2...32); with --accumulator-tile, of each tile's register."),
        .value("accumulator-tile", \.accumulatorTile, "Multi-stage accumulation: the budget of each constrained layer applies per tile of T consecutive inputs (weight order [in, kh, kw]), each summed in a P-bit register; tile sums add in the outer register (default: none, the whole dot product)."),
        .value("outer-accumulator-bits", \.outerAccumulatorBits, "Width of the outer register that adds the tile sums (default 32; needs --accumulator-tile)."),
        .value("first-last", \.firstLast, "First and last weight layers: unconstrained (8-bit qat) or constrained."),
        .layerMap("layer-accumulator-bits", \.layerAccumulatorBits, "Accumulator bits of one layer, NAME=P."),
        .value("epochs", \.epochs, "Quantized (or float-only) training epochs (default 3); 0 with --init-from only converts (post-training quantization, e.g. --init axe)."),
        .value("max-steps", \.maxSteps, "Stop the quantized phase after this many steps."),
        .value("float-epochs", \.floatEpochs, "Float pre-training epochs before conversion (a2q/a2q+; default 3, 0 skips)."),
        .value("batch-size", \.batchSize, "Global batch size, split evenly over the ranks (default 64)."),
        .value("optimizer", \.optimizer, "Optimizer: sgd, adam or adamw."),
        .value("lr", \.lr, "Learning rate of the quantized (or only) phase (default 3e-4 when it fine-tunes a float model, else 1e-3)."),
        .value("float-lr", \.floatLr, "Learning rate of the float pre-training phase (default 1e-3)."),
        .value("weight-decay", \.weightDecay, "Weight decay (weights only; never norms, scales or biases)."),
        .value("schedule", \.schedule, "Learning-rate schedule: constant, step or cosine."),
        .value("warmup-steps", \.warmupSteps, "Linear warm-up steps."),
        .value("seed", \.seed, "Random seed (initialisation and shuffling)."),
        .value("data", \.data, "Data folder (MNIST-format IDX or CIFAR-10 binary files), or 'synthetic'."),
        .value("train-subset", \.trainSubset, "Use only the first N training images."),
        .value("crop-size", \.cropSize, "Restoration models: side of the high-resolution training crops, a multiple of the upscale factor (default 64)."),
        .value("crops-per-image", \.cropsPerImage, "Restoration models: random crops per training image and epoch (default 32)."),
        .value("out", \.out, "Output folder (default Checkpoints/<run-name>)."),
        .value("init", \.init_, "Conversion init of constrained layers: naive, ep, ep-scaled, or axe (accumulator-aware GPTQ on the calibration images, docs/AXE.md; with --epochs 0 it is post-training quantization)."),
        .value("regularizer", \.regularizer, "Weight of the papers' regulariser Σ relu(g − T·s)."),
        .value("quantizer-lr-scale", \.quantizerLrScale, "Learning-rate multiplier for the quantizers' log2 scales and norms."),
        .value("project-directions", \.projectDirections, "Project constrained layers' directions onto their L1 budgets every N steps (0 = never)."),
        .value("distill", \.distill, "Weight α (0...1) of distillation from the float model the quantized phase starts from (0 = off)."),
        .value("distill-temperature", \.distillTemperature, "Softmax temperature of the distillation (default 2)."),
        .value("calibration-batches", \.calibrationBatches, "Training batches used to calibrate activation scales."),
        .value("log-every", \.logEvery, "Log every N steps."),
        .value("check-every", \.checkEvery, "Compare parameter checksums across ranks every N steps."),
        .value("watchdog-seconds", \.watchdogSeconds, "Abort a collective that takes longer than this (seconds, 0 = never)."),
        .value("allreduce-bucket-mb", \.allreduceBucketMB, "Overlap the gradient all-reduce with the backward pass in buckets of this many MiB (0 = one fused all-reduce after it; default 1 when the ranks span several hosts, 0 on one host)."),
        .value("allreduce-progress", \.allreduceProgress, "What advances the overlapped all-reduce during the backward pass: thread (a progress thread, default) or layers (the training thread between layers)."),
        .value("allreduce-order", \.allreduceOrder, "How the sums over ranks associate their terms: fixed (default; rank order, summed by a2q after an all-to-all: the same bits for any bucket size, transport and MPI algorithm) or library (MPI_Allreduce's own order: can be cheaper, but the last bits can change with bucket size, rank count and transport)."),
        .value("checkpoint-every", \.checkpointEvery, "Save a checkpoint every N steps (and always at each epoch end)."),
        .value("keep-checkpoints", \.keepCheckpoints, "Keep the newest N periodic checkpoints (final.h5 is always kept)."),
        .value("resume", \.resume, "Continue from a checkpoint: a path, or 'auto' for the newest valid one in --out."),
        .value("init-from", \.initFrom, "Start an a2q/a2q+ run from a checkpoint's weights (skips the float phase)."),
        .value("stop-after-steps", \.stopAfterSteps, "Save a checkpoint and stop after this global step (continue with --resume auto)."),
    ]

    /// The option named `name`, if any.
    public static func option(named name: String) -> TrainOption? { options.first { $0.name == name } }

    /// Applies command-line words (`--NAME value` or `--NAME=value`, options of `options` only)
    /// on top of this configuration.
    public mutating func apply(arguments words: [String]) throws {
        var index = 0
        while index < words.count {
            let word = words[index]
            guard word.hasPrefix("--"), word.count > 2 else {
                throw A2QError("unexpected argument '\(word)'", remedy: "options are --NAME VALUE; see a2q train --help")
            }
            var name = String(word.dropFirst(2)), value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = TrainConfig.option(named: name) else {
                let close = TrainConfig.options.map(\.name).filter { $0.hasPrefix(String(name.prefix(3))) }
                throw A2QError("unknown option '--\(name)'",
                               remedy: close.isEmpty ? "see a2q train --help" : "did you mean \(close.map { "--" + $0 }.joined(separator: ", "))?")
            }
            if value == nil {
                index += 1
                guard index < words.count else { throw A2QError("--\(name) needs a value <\(option.valueName)>") }
                value = words[index]
            }
            try option.apply(&self, value ?? "")
            index += 1
        }
    }
}
