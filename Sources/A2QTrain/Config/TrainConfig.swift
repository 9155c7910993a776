import A2QCore
import A2QData
import A2QDistributed
import A2QQuant
import Foundation

/// What `a2q train --model` names: a built-in architecture (`mlp`, `cnn`, `cnn-bn`, `resnet8`,
/// `resnet14`, `resnet20`), the path of a model file (`*.json`, see `ModelDescription`), or of a
/// float ONNX model (`*.onnx`, read by `ONNXImport`).
public struct ModelName: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let mlp = ModelName(rawValue: "mlp")
    public static let cnn = ModelName(rawValue: "cnn")
    public static let cnnBN = ModelName(rawValue: "cnn-bn")
    public static let resnet8 = ModelName(rawValue: "resnet8")
    public static let resnet14 = ModelName(rawValue: "resnet14")
    public static let resnet20 = ModelName(rawValue: "resnet20")
    public static let espcn = ModelName(rawValue: "espcn")
    public static let espcnX3 = ModelName(rawValue: "espcn-x3")
    /// The built-in architectures.
    public static let builtIn: [ModelName] = [.mlp, .cnn, .cnnBN, .resnet8, .resnet14, .resnet20, .espcn, .espcnX3]

    /// Whether this names a model file rather than a built-in.
    public var isFile: Bool { !ModelName.builtIn.contains(self) }

    /// The name used in run names and messages: the built-in's name, or the file's base name.
    public var shortName: String {
        isFile ? ((rawValue as NSString).lastPathComponent as NSString).deletingPathExtension : rawValue
    }

    public var description: String { rawValue }

    /// Whether this names an ONNX model (`*.onnx`).
    public var isONNX: Bool { isFile && rawValue.hasSuffix(".onnx") }

    /// A built-in's name, or a path ending in `.json` or `.onnx`; nil otherwise.
    public init?(validating text: String) {
        let name = ModelName(rawValue: text)
        guard !name.isFile || text.hasSuffix(".json") || text.hasSuffix(".onnx") else { return nil }
        self = name
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let name = ModelName(validating: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown model '\(text)': use one of \(ModelName.builtIn.map(\.rawValue).joined(separator: ", ")) or a model file PATH.json or PATH.onnx")
        }
        self = name
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// Whether the first and last layers get the target quantizer too.
public enum FirstLastPolicy: String, CaseIterable, Sendable, Codable {
    /// 8-bit `qat`, no accumulator constraint (the papers' default).
    case unconstrained
    /// Same quantizer, bits and P as the hidden layers.
    case constrained
}

public enum OptimizerName: String, CaseIterable, Sendable, Codable { case sgd, adam, adamw }
public enum ScheduleName: String, CaseIterable, Sendable, Codable { case constant, step, cosine }
/// What advances the overlapped all-reduce's started sums while the backward pass computes.
public enum AllReduceProgress: String, CaseIterable, Sendable, Codable {
    /// A progress thread tests them every 50 µs (the overlap is real over TCP).
    case thread
    /// The training thread, between two layers' backward (no extra thread).
    case layers
}

/// Everything that defines a training run. Each setting is a property with its default here
/// and one entry in `TrainConfig.options` (its flag, config-file key and help); flags override
/// a config file, which overrides the defaults.
public struct TrainConfig: Sendable, Codable, Equatable {
    public var model: ModelName = .cnn
    public var quantizer: WeightQuantizerKind = .a2qPlus
    public var weightBits = 8
    public var actBits = 8
    public var accumulatorBits = 16
    /// Multi-stage accumulation of the constrained layers: tiles of this many inputs, each in an
    /// `accumulatorBits`-bit register (nil: the whole dot product in one register).
    public var accumulatorTile: Int?
    /// The outer register that adds the tile sums (nil: 32 bits).
    public var outerAccumulatorBits: Int?
    public var firstLast: FirstLastPolicy = .unconstrained
    /// Per-layer accumulator widths overriding `accumulatorBits` (layer name → P).
    public var layerAccumulatorBits: [String: Int] = [:]
    public var epochs = 3
    public var maxSteps: Int?
    public var floatEpochs = 3
    public var batchSize = 64
    public var optimizer: OptimizerName = .adam
    /// Learning rate of the quantized (or only) phase; nil picks `learningRate`'s default.
    public var lr: Float?
    public var floatLr: Float = 1e-3
    public var weightDecay: Float = 1e-5
    public var schedule: ScheduleName = .cosine
    public var warmupSteps = 0
    public var seed: UInt64 = 0
    public var data = DataSource.defaultFolder
    public var trainSubset: Int?
    /// Restoration models: the side of the high-resolution training crops, and random crops per
    /// training image and epoch.
    public var cropSize = 64
    public var cropsPerImage = 32
    public var out: String?
    public var init_: WeightInitMethod = .epScaled
    public var regularizer: Float = 1e-3
    /// Learning-rate multiplier for the quantizers' log2 scales and norms (`t`, `d`, activation scales).
    public var quantizerLrScale: Float = 1
    /// Project constrained layers' directions onto their L1 budgets every N steps (0 = never).
    public var projectDirections = 10
    /// Weight α of knowledge distillation from the float model the quantized phase starts from
    /// (0 = off).
    public var distill: Float = 0
    /// Softmax temperature τ of the distillation.
    public var distillTemperature: Float = 2
    public var calibrationBatches = 16
    public var logEvery = 50
    public var checkEvery = 100
    public var watchdogSeconds: Double = 120
    /// Overlap the gradient all-reduce with the backward pass in buckets of this many MiB
    /// (0: one fused all-reduce after the backward pass; nil: `bucketMB(hostCount:)` decides).
    public var allreduceBucketMB: Double?
    /// What advances the overlapped all-reduce's sums during the backward pass.
    public var allreduceProgress: AllReduceProgress = .thread
    /// How the gradient sums over ranks associate their terms (fixed: bitwise the same for any
    /// bucket size, transport and MPI algorithm).
    public var allreduceOrder: SumOrder = .fixed
    public var checkpointEvery: Int?
    public var keepCheckpoints = 3
    /// Save a checkpoint and stop after this global step, leaving the schedule untouched (for
    /// time-limited job slots; continue with `--resume auto`).
    public var stopAfterSteps: Int?
    /// A checkpoint to continue from, or "auto" (the newest valid one in the output folder).
    public var resume: String?
    /// A checkpoint (float or quantized) whose weights start an a2q/a2q+ run (skips the float phase).
    public var initFrom: String?

    public init() {}

    /// Decodes a config file (keys = the options' names, `TrainConfig.options`); absent keys
    /// keep the defaults.
    public init(from decoder: Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: OptionKey.self)
        for option in TrainConfig.options { try option.decode(&self, container) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: OptionKey.self)
        for option in TrainConfig.options { try option.encode(self, &container) }
    }

    public static let defaults = TrainConfig()

    /// Reads a JSON config file; unknown keys are an error that lists the valid ones.
    public static func load(path: String) throws -> TrainConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw A2QError("cannot read the config file \(path)")
        }
        let example = "write the config as {\"model\": \"cnn\", \"epochs\": 2, ...}"
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw A2QError("\(path) is not valid JSON (\((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? "parse error"))",
                           remedy: example)
        }
        guard let object = parsed as? [String: Any] else { throw A2QError("\(path) is not a JSON object", remedy: example) }
        let valid = Set(TrainConfig.options.map(\.name))
        if let unknown = object.keys.sorted().first(where: { !valid.contains($0) }) {
            throw A2QError("\(path): unknown key '\(unknown)'", remedy: "valid keys: \(valid.sorted().joined(separator: ", "))")
        }
        do {
            return try JSONDecoder().decode(TrainConfig.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            throw A2QError("\(path): \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw A2QError("\(path): wrong type for '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)")
        } catch {
            throw A2QError("\(path): \(error)")
        }
    }

    /// The settings a resumed run must share with its checkpoint (everything that shapes the
    /// model, the data order or the phase plan); learning rate, epochs and logging may change.
    public func resumeMismatches(_ saved: TrainConfig) -> [String] {
        var problems: [String] = []
        func compare<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { problems.append("\(name): checkpoint \(b), now \(a)") } }
        compare("model", model.rawValue, saved.model.rawValue)
        compare("quantizer", quantizer.rawValue, saved.quantizer.rawValue)
        compare("weight-bits", weightBits, saved.weightBits)
        compare("act-bits", actBits, saved.actBits)
        compare("accumulator-bits", accumulatorBits, saved.accumulatorBits)
        compare("accumulator-tile", accumulatorTile.map(String.init) ?? "none", saved.accumulatorTile.map(String.init) ?? "none")
        compare("outer-accumulator-bits", outerAccumulatorBits ?? 32, saved.outerAccumulatorBits ?? 32)
        compare("first-last", firstLast.rawValue, saved.firstLast.rawValue)
        compare("layer-accumulator-bits", layerAccumulatorBits, saved.layerAccumulatorBits)
        compare("batch-size", batchSize, saved.batchSize)
        compare("seed", seed, saved.seed)
        compare("data", data, saved.data)
        compare("train-subset", trainSubset, saved.trainSubset)
        compare("crop-size", cropSize, saved.cropSize)
        compare("crops-per-image", cropsPerImage, saved.cropsPerImage)
        compare("float-epochs", floatEpochs, saved.floatEpochs)
        compare("init", init_.rawValue, saved.init_.rawValue)
        return problems
    }

    /// Whether the run quantizes at all.
    public var isQuantized: Bool { quantizer != .float }

    /// Steps of float pre-training before conversion (a2q/a2q+ only).
    public var usesFloatPhase: Bool { quantizer.isAccumulatorAware && floatEpochs > 0 && initFrom == nil }

    /// Whether the quantized phase fine-tunes a float model (after the float phase, or from
    /// `--init-from`) rather than training from random initialisation.
    public var startsFromFloatModel: Bool { isQuantized && (usesFloatPhase || initFrom != nil) }

    /// The quantized (or only) phase's learning rate: `lr` when set, else 3e-4 for fine-tuning a
    /// float model and 1e-3 for training from scratch.
    public var learningRate: Float { lr ?? (startsFromFloatModel ? 3e-4 : 1e-3) }

    /// A readable run name: `cnn-a2q+-w8a8-p16`.
    public var runName: String {
        switch quantizer {
        case .float: return "\(model.shortName)-float"
        case .qat: return "\(model.shortName)-qat-w\(weightBits)a\(actBits)"
        case .a2q, .a2qPlus:
            return "\(model.shortName)-\(quantizer.rawValue)-w\(weightBits)a\(actBits)-p\(accumulatorBits)" + (accumulatorTile.map { "-t\($0)" } ?? "")
        }
    }

    /// The output folder.
    public var outputFolder: String { out ?? "Checkpoints/\(runName)" }

    /// Rejects bad values before any work starts. `trainCount` is the training-set size
    /// after `trainSubset`, when known.
    public func validate(trainCount: Int? = nil, worldSize: Int = 1) throws {
        func check(_ ok: Bool, _ message: String, _ remedy: String = "") throws {
            if !ok { throw A2QError(message, remedy: remedy) }
        }
        try check((2...16).contains(weightBits), "--weight-bits \(weightBits) is out of the supported range 2...16")
        try check((2...16).contains(actBits), "--act-bits \(actBits) is out of the supported range 2...16")
        try check((2...32).contains(accumulatorBits), "--accumulator-bits \(accumulatorBits) is out of the supported range 2...32")
        if let tile = accumulatorTile {
            try check(tile >= 1, "--accumulator-tile \(tile) is not a positive number of inputs")
            try check(quantizer.isAccumulatorAware, "--accumulator-tile applies to the accumulator-aware quantizers",
                      "use --quantizer a2q or a2q+ (qat and float layers make no accumulator claim to cut into tiles)")
        }
        if let outer = outerAccumulatorBits {
            try check((accumulatorBits...62).contains(outer),
                      "--outer-accumulator-bits \(outer) is outside \(accumulatorBits)...62 (at least --accumulator-bits)")
            try check(accumulatorTile != nil, "--outer-accumulator-bits needs --accumulator-tile", "the outer register adds tile sums")
        }
        for (layer, bits) in layerAccumulatorBits {
            try check((2...32).contains(bits), "layer-accumulator-bits \(layer)=\(bits) is out of the supported range 2...32")
        }
        try check(epochs > 0 || (epochs == 0 && initFrom != nil && isQuantized),
                  "--epochs must be positive (got \(epochs)); 0 only quantizes a float model",
                  "--epochs 0 needs --init-from FLOAT.h5 and a quantizer (post-training quantization, e.g. --init axe)")
        try check(floatEpochs >= 0, "--float-epochs must be zero or positive (got \(floatEpochs))")
        try check(maxSteps.map { $0 > 0 } ?? true, "--max-steps must be positive")
        try check(batchSize > 0, "--batch-size must be positive (got \(batchSize))")
        try check(learningRate > 0 && learningRate.isFinite, "--lr must be positive (got \(learningRate))")
        try check(floatLr > 0 && floatLr.isFinite, "--float-lr must be positive (got \(floatLr))")
        try check(weightDecay >= 0, "--weight-decay must not be negative")
        try check(regularizer >= 0, "--regularizer must not be negative")
        try check(projectDirections >= 0, "--project-directions must be zero or positive")
        try check(quantizerLrScale >= 0 && quantizerLrScale.isFinite, "--quantizer-lr-scale must not be negative")
        try check((0...1).contains(distill), "--distill must be between 0 and 1 (got \(distill))")
        try check(distillTemperature > 0 && distillTemperature.isFinite,
                  "--distill-temperature must be positive (got \(distillTemperature))")
        try check(distill == 0 || startsFromFloatModel, "--distill needs a float teacher",
                  "distillation learns from the float model the quantized phase starts from: use a2q/a2q+ with --float-epochs > 0, or --init-from")
        try check(trainSubset.map { $0 > 0 } ?? true, "--train-subset must be positive")
        try check(cropSize > 0 && cropSize <= 1024, "--crop-size must be between 1 and 1024 (got \(cropSize))")
        try check(cropsPerImage > 0 && cropsPerImage <= 100_000, "--crops-per-image must be between 1 and 100000 (got \(cropsPerImage))")
        try check(logEvery > 0 && checkEvery > 0, "--log-every and --check-every must be positive")
        try check(watchdogSeconds >= 0, "--watchdog-seconds must not be negative")
        try check(allreduceBucketMB.map { $0 >= 0 && $0 <= 4096 } ?? true, "--allreduce-bucket-mb must be between 0 (fused) and 4096")
        try check(checkpointEvery.map { $0 > 0 } ?? true, "--checkpoint-every must be positive")
        try check(keepCheckpoints > 0, "--keep-checkpoints must be positive")
        try check(stopAfterSteps.map { $0 > 0 } ?? true, "--stop-after-steps must be positive")
        try check(resume == nil || initFrom == nil, "--resume and --init-from cannot be combined",
                  "resume continues a run; --init-from starts a new one from a checkpoint's weights")
        try check(initFrom == nil || quantizer != .float, "--init-from needs a quantized run (--quantizer qat, a2q or a2q+)")
        try check(batchSize % worldSize == 0,
                  "the global batch size \(batchSize) is not divisible by the \(worldSize) ranks",
                  "choose --batch-size as a multiple of \(worldSize), or run with a rank count that divides it")
        if let trainCount {
            try check(batchSize <= trainCount, "--batch-size \(batchSize) is larger than the training set (\(trainCount) examples)",
                      "use a smaller --batch-size or a larger --train-subset")
        }
    }

    /// The all-reduce's bucket size in MiB for ranks spread over `hostCount` hosts: the one
    /// asked for, or by default 1 MiB across hosts (the overlap hides network time) and 0
    /// (fused) on one host (shared memory is fast; the progress thread would only cost).
    public func bucketMB(hostCount: Int) -> Double {
        allreduceBucketMB ?? (hostCount > 1 ? 1 : 0)
    }

    /// A stable hash of everything that must agree across ranks (FNV-1a over the JSON; the
    /// output folder is left out: only rank 0 writes there).
    public var hash: UInt64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var shared = self
        shared.out = nil
        let bytes = (try? encoder.encode(shared)) ?? Data()
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    /// Pretty JSON (for `config.json` in the run folder and checkpoints).
    public func json(pretty: Bool = true) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
