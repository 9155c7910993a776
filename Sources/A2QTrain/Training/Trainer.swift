import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// Runs the papers' recipe for one configuration: optional float pre-training, conversion
/// (EP-init and activation calibration), and quantized fine-tuning with re-projection after
/// every step, data-parallel over a `Communicator` (world size 1 without MPI).
///
/// Every rank runs the same code on its slice of each global batch; gradients are summed in
/// one fused all-reduce and scaled by 1/R, so every rank applies the same update. Only rank 0
/// prints and writes files.
public final class Trainer: @unchecked Sendable {
    public let config: TrainConfig
    public let communicator: any Communicator
    /// What the run learns: its data, loss and metric (`ClassificationTask`, `RestorationTask`).
    public let task: any TrainingTask
    public let sampler: EpochSampler
    /// The output folder (rank 0's decision; empty on other ranks).
    public private(set) var output = ""

    /// The quantized model this run trains (built, not yet initialised, at start-up).
    public let model: Model
    let metrics: MetricsLog
    let progress: Progress
    let localBatch: Int
    let input = Tensor(shape: [0])
    /// `--distill`: the soft-target term and its teacher, the float model the quantized phase
    /// starts from (evaluated in inference mode, never trained).
    let distillation: Distillation?
    var teacher: Model?
    var timings: [String: Double] = [:]
    /// Set only by tests: make rank `r` fail (exit or hang) at global step `k`.
    public var faultInjection: (rank: Int, step: Int, hang: Bool)?
    /// Called after every optimizer step and re-projection, with the phase and step (tests).
    public var stepObserver: ((_ model: Model, _ phase: TrainingPhase, _ step: Int, _ loss: Float) -> Void)?

    /// Loads and validates data and configuration. Errors here are the same on every rank.
    /// `data` replaces a classification run's data (tests).
    public init(config: TrainConfig, communicator: any Communicator, data: (train: Dataset, test: Dataset)? = nil,
                quiet: Bool = false) throws {
        if let subset = config.trainSubset, subset <= 0 {  // before it is taken (a negative prefix traps)
            throw A2QError("--train-subset must be positive (got \(subset))", remedy: "pass a number of training images ≥ 1, or leave it out")
        }
        let task = try Trainer.loadTask(config, data: data)
        try config.validate(trainCount: task.trainCount, worldSize: communicator.worldSize)
        if task.kind != .classification && config.distill > 0 {
            throw A2QError("--distill blends class probabilities; a \(task.kind.rawValue) model has none", remedy: "leave --distill at 0")
        }
        let sampler = EpochSampler(count: task.trainCount, globalBatch: config.batchSize, seed: config.seed)
        guard sampler.batchesPerEpoch >= 1 else {
            throw A2QError("the training set (\(task.trainCount)) holds no full global batch of \(config.batchSize)")
        }
        var resolved = config
        resolved.lr = config.learningRate
        self.config = resolved
        distillation = config.distill > 0 ? Distillation(weight: config.distill, temperature: config.distillTemperature) : nil
        self.communicator = communicator
        self.task = task
        self.sampler = sampler
        // Building the model validates the per-layer settings (e.g. P too narrow) up front.
        model = try ModelBuilder.build(config, quantized: true, classes: task.classes, inputShape: task.inputShape)
        localBatch = config.batchSize / communicator.worldSize
        communicator.timeout = config.watchdogSeconds
        communicator.setSumOrder(config.allreduceOrder)
        if communicator.isRoot {
            output = try Trainer.chooseOutputFolder(config)
            try FileSystem.ensureWritableFolder(output)
            try Data(config.json().utf8).write(to: URL(fileURLWithPath: output).appendingPathComponent("config.json"))
            metrics = try MetricsLog(path: (output as NSString).appendingPathComponent("metrics.jsonl"))
        } else {
            metrics = try MetricsLog(path: nil)
        }
        progress = Progress(enabled: communicator.isRoot && !quiet, logEvery: config.logEvery,
                            live: communicator.worldSize == 1 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil)
    }

    /// `--out`, or `Checkpoints/<run-name>` (with `-2`, `-3`, ... when that already holds a run).
    static func chooseOutputFolder(_ config: TrainConfig) throws -> String {
        if let out = config.out { return out }
        let base = config.outputFolder
        var candidate = base
        var n = 2
        while FileManager.default.fileExists(atPath: (candidate as NSString).appendingPathComponent("config.json")) {
            candidate = "\(base)-\(n)"
            n += 1
        }
        return candidate
    }

    // MARK: Run

    /// Runs every phase and returns the summary (identical on every rank).
    public func run() throws -> TrainSummary {
        try checkAgreement()
        let resumeHeader = try findResumeCheckpoint()
        var state = resumeHeader?.state ?? TrainingState(phase: config.usesFloatPhase ? .float : .quantized)
        if let resumeHeader {
            state.window = ownRow(resumeHeader.state.window, width: 3, savedRanks: resumeHeader.worldSize)
            state.epochTotals = ownRow(resumeHeader.state.epochTotals, width: 2, savedRanks: resumeHeader.worldSize)
        }
        progress.line("a2q train: \(config.runName), \(communicator.worldSize) rank(s), global batch \(config.batchSize), "
                      + "\(task.trainCount) training / \(task.testCount) test \(task.kind == .classification ? "images" : "crops") → \(output)")
        if let restoration = task as? RestorationTask {
            let bicubic = restoration.bicubicPSNR()
            metrics.write(["type": "baseline", "bicubic_psnr": bicubic, "test_crop": restoration.test.cropSize,
                           "upscale_factor": restoration.test.upscaleFactor])
            progress.line(String(format: "bicubic ×%d on the %d test crops (%d×%d): %.2f dB", restoration.test.upscaleFactor,
                                 restoration.testCount, restoration.test.cropSize, restoration.test.cropSize, bicubic))
        }
        if let resumeHeader {
            progress.line("resuming from \(resumeHeader.path): \(state.phase) phase, epoch \(state.epoch + 1), "
                          + "batch \(state.position), global step \(state.globalStep)")
        }
        if state.phase == .float {
            let floatModel = try buildFloatModel()
            let optimizer = makeOptimizer(floatModel.parameters.count)
            if let resumeHeader { try restore(resumeHeader, floatModel, optimizer) } else { try initialize(floatModel) }
            progress.line("phase 1/2: float pre-training, \(config.floatEpochs) epoch(s)")
            try trainPhase(floatModel, optimizer: optimizer, state: &state, epochs: config.floatEpochs,
                           learningRate: config.floatLr, maxSteps: nil)
            if communicator.isRoot {
                // Kept: the float baseline, and the teacher if a resumed run distils.
                try CheckpointFile.save(path: (output as NSString).appendingPathComponent(Trainer.floatModelName),
                                        model: floatModel, optimizer: nil, state: state, config: config,
                                        worldSize: communicator.worldSize)
            }
            if distillation != nil { teacher = floatModel }
            var next = TrainingState(phase: .quantized)
            next.earlierSteps = state.globalStep
            next.floatTestAccuracy = try evaluate(floatModel).metric
            next.conversionTestAccuracy = try convertAndReport(from: floatModel)
            state = next
            progress.line("phase 2/2: quantized fine-tuning (\(config.quantizer.rawValue)), \(config.epochs) epoch(s)")
        }
        let optimizer = makeOptimizer(model.parameters.count)
        if let resumeHeader, resumeHeader.state.phase == .quantized {
            try restore(resumeHeader, model, optimizer)
            if distillation != nil { teacher = try loadTeacher() }
        } else if resumeHeader == nil, let source = config.initFrom {
            let floatModel = try loadFloatModel(from: { source }) {
                "initialising from \($0) (\($1) tensors), --init \(self.config.init_.rawValue)"
            }
            if distillation != nil { teacher = floatModel }
            state.floatTestAccuracy = try evaluate(floatModel).metric
            state.conversionTestAccuracy = try convertAndReport(from: floatModel)
        } else if resumeHeader == nil && !config.usesFloatPhase {
            try initialize(model)
            if config.isQuantized { try calibrate(model) }
        }
        timings = [:]
        // --epochs 0: the converted model as it is (post-training quantization, a baseline).
        let result = config.epochs == 0 ? PhaseResult(steps: 0, trainLoss: .nan, imagesPerSecond: 0)
            : try trainPhase(model, optimizer: optimizer, state: &state, phase: config.isQuantized ? .quantized : .float,
                             epochs: config.epochs, learningRate: config.learningRate, maxSteps: config.maxSteps)
        try checkConsistency(model, step: state.step)
        let evaluation = try evaluate(model)
        if communicator.isRoot {
            try CheckpointFile.save(path: (output as NSString).appendingPathComponent(CheckpointFolder.finalName), model: model,
                                    optimizer: optimizer, state: state, config: config, worldSize: communicator.worldSize)
        }
        try communicator.barrier()
        let layers = try LayerStatistics.measure(model)
        let constrained = layers.filter { $0.maxL1Usage != nil }
        let counted = constrained.isEmpty ? layers.filter { $0.overflowFree != nil } : constrained
        let sizes = counted.map { name in model.quantizedLayers.first { $0.name == name.name }?.quantizer.weight.count ?? 0 }
        let totalSize = max(sizes.reduce(0, +), 1)
        let sparsity = zip(counted, sizes).reduce(0.0) { $0 + $1.0.sparsity * Double($1.1) } / Double(totalSize)
        let summary = TrainSummary(
            runName: config.runName, output: output, worldSize: communicator.worldSize, steps: state.globalStep,
            finalTrainLoss: result.steps > 0 ? result.trainLoss : nil, task: task.kind, testMetric: evaluation.metric, testLoss: evaluation.loss,
            floatTestMetric: state.floatTestAccuracy, conversionTestMetric: state.conversionTestAccuracy,
            imagesPerSecond: result.imagesPerSecond, sparsity: sparsity,
            worstL1Usage: constrained.compactMap(\.maxL1Usage).max(),
            overflowFree: constrained.allSatisfy { $0.overflowFree == true }, layers: layers,
            phaseSeconds: timings)
        if communicator.isRoot {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            try encoder.encode(summary).write(to: URL(fileURLWithPath: output).appendingPathComponent("summary.json"))
        }
        return summary
    }

    /// The float build of the run's model (same description and input shape).
    func buildFloatModel() throws -> Model {
        try ModelBuilder.build(config, quantized: false, classes: task.classes, inputShape: model.inputShape,
                               description: model.description)
    }

    /// The float model a run keeps in its folder when its float phase ends.
    public static let floatModelName = "float.h5"

    /// Rebuilds the distillation teacher of a resumed run: the run's `float.h5`, else the
    /// `--init-from` checkpoint.
    func loadTeacher() throws -> Model {
        try loadFloatModel(from: {
            let kept = (self.output as NSString).appendingPathComponent(Trainer.floatModelName)
            if FileManager.default.fileExists(atPath: kept) { return kept }
            guard let source = self.config.initFrom else {
                throw A2QError("--distill needs the float teacher, but \(kept) is missing",
                               remedy: "resume with --distill 0, or restore \(Trainer.floatModelName) from the run's float phase")
            }
            return source
        }) { "distillation teacher: \($0) (\($1) tensors)" }
    }

    /// A float build of this model filled from a checkpoint of the same `--model`: rank 0 picks
    /// the file (`path`), reads it and reports `describe(path, tensors loaded)`; every rank
    /// receives the weights and buffers.
    func loadFloatModel(from path: () throws -> String, describe: (String, Int) -> String) throws -> Model {
        let floatModel = try buildFloatModel()
        if communicator.isRoot {
            let path = try path()
            let header = try CheckpointFile.header(path)
            // The same network: the same --model, or the same tree (an imported model under another path).
            guard header.config.model == config.model || header.description.layers == model.description.layers else {
                throw A2QError("\(path) holds a \(header.config.model.rawValue), but this run trains a \(config.model.rawValue)",
                               remedy: "--init-from needs a checkpoint of the same --model")
            }
            progress.line(describe(path, try CheckpointFile.loadWeights(path, into: floatModel)))
        }
        try broadcastState(floatModel)
        return floatModel
    }

    /// Converts the float model into `model` and returns the test metric before fine-tuning.
    func convertAndReport(from floatModel: Model) throws -> Double {
        try convert(from: floatModel, to: model)
        try calibrate(model)
        if config.init_ == .epScaled {
            try matchOutputScales(of: model, to: floatModel)
            try calibrate(model)
        }
        if config.init_ == .axe {
            let started = monotonicSeconds()
            try quantizeWithAXE(model, floatModel: floatModel)
            progress.line(String(format: "axe: every constrained layer quantized in %.1f s", monotonicSeconds() - started))
        }
        let converted = try evaluate(model)
        try logConversion(model, metric: converted.metric, loss: converted.loss)
        return converted.metric
    }
}
