import A2QCore
import A2QDistributed
import A2QQuant
import A2QTrain
import ArgumentParser
import Foundation

extension ModelName: ExpressibleByArgument {
    public init?(argument: String) { self.init(validating: argument) }
    public static var allValueStrings: [String] { builtIn.map(\.rawValue) + ["PATH.json"] }
}
extension FirstLastPolicy: ExpressibleByArgument {}
extension OptimizerName: ExpressibleByArgument {}
extension ScheduleName: ExpressibleByArgument {}

/// `a2q train`: the papers' recipe, data-parallel under mpirun.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an accumulator-aware quantized network (run under mpirun for data parallelism).",
        discussion: """
            With --quantizer a2q or a2q+ the default recipe is: --float-epochs (3) of float training, \
            kept as float.h5, conversion (--init ep-scaled by default), activation calibration, then \
            --epochs (3) of quantized training at --lr 3e-4 with re-projection after every step. \
            The logged loss is the hard-label cross-entropy, also with --distill. A JSON --config file may set any \
            option by its flag name (e.g. {"accumulator-bits": 14}); flags override it.
            """)

    @Option(help: "JSON config file whose keys are the flag names.") var config: String?
    @Option(help: "Model: mlp, cnn, cnn-bn, resnet8, resnet14, resnet20, or a model file (PATH.json; see the README, \"Model files\").")
    var model: ModelName?
    @Option(help: "Weight quantizer: float, qat, a2q or a2q+.") var quantizer: WeightQuantizerKind?
    @Option(help: "Weight bits M of the constrained layers (2...16).") var weightBits: Int?
    @Option(help: "Activation bits N after every ReLU (2...16).") var actBits: Int?
    @Option(help: "Accumulator bits P of the hidden layers (2...32).") var accumulatorBits: Int?
    @Option(help: "First and last layers: unconstrained (8-bit qat) or constrained.") var firstLast: FirstLastPolicy?
    @Option(help: "Per-layer accumulator bits, NAME=P (repeatable).") var layerAccumulatorBits: [String] = []
    @Option(help: "Quantized (or float-only) training epochs (default 3).") var epochs: Int?
    @Option(help: "Stop the quantized phase after this many steps.") var maxSteps: Int?
    @Option(help: "Float pre-training epochs before conversion (a2q/a2q+; default 3, 0 skips).") var floatEpochs: Int?
    @Option(help: "Global batch size, split evenly over the ranks.") var batchSize: Int?
    @Option(help: "Optimizer: sgd, adam or adamw.") var optimizer: OptimizerName?
    @Option(help: "Learning rate of the quantized (or only) phase (default 3e-4 when it fine-tunes a float model, else 1e-3).")
    var lr: Float?
    @Option(help: "Learning rate of the float pre-training phase.") var floatLr: Float?
    @Option(help: "Weight decay (weights only; never norms, scales or biases).") var weightDecay: Float?
    @Option(help: "Learning-rate schedule: constant, step or cosine.") var schedule: ScheduleName?
    @Option(help: "Linear warm-up steps.") var warmupSteps: Int?
    @Option(help: "Random seed (initialisation and shuffling).") var seed: UInt64?
    @Option(help: "Data folder of MNIST-format IDX files, or 'synthetic'.") var data: String?
    @Option(help: "Use only the first N training images.") var trainSubset: Int?
    @Option(help: "Output folder (default Checkpoints/<run-name>).") var out: String?
    @Option(name: .customLong("init"), help: "Conversion init of constrained layers: naive, ep or ep-scaled.")
    var initMethod: WeightInitMethod?
    @Option(help: "Weight of the papers' regulariser Σ relu(g − T·s).") var regularizer: Float?
    @Option(help: "Learning-rate multiplier for the quantizers' log2 scales and norms.") var quantizerLrScale: Float?
    @Option(help: "Project constrained layers' directions onto their L1 budgets every N steps (0 = never).") var projectDirections: Int?
    @Option(help: "Weight α (0...1) of distillation from the float model the quantized phase starts from (0 = off).")
    var distill: Float?
    @Option(help: "Softmax temperature of the distillation (default 2).") var distillTemperature: Float?
    @Option(help: "Training batches used to calibrate activation scales.") var calibrationBatches: Int?
    @Option(help: "Log every N steps.") var logEvery: Int?
    @Option(help: "Compare parameter checksums across ranks every N steps.") var checkEvery: Int?
    @Option(help: "Abort a collective that takes longer than this (seconds, 0 = never).") var watchdogSeconds: Double?
    @Option(help: "Overlap the gradient all-reduce with the backward pass in buckets of this many MiB (0 = one fused all-reduce after it).")
    var allreduceBucketMb: Double?
    @Option(help: "Save a checkpoint every N steps (and always at each epoch end).") var checkpointEvery: Int?
    @Option(help: "Keep the newest N periodic checkpoints (final.h5 is always kept).") var keepCheckpoints: Int?
    @Option(help: "Continue from a checkpoint: a path, or 'auto' for the newest valid one in --out.") var resume: String?
    @Option(help: "Start an a2q/a2q+ run from a checkpoint's weights (skips the float phase).") var initFrom: String?
    @Option(help: "Save a checkpoint and stop after this global step (continue with --resume auto).") var stopAfterSteps: Int?
    @Flag(help: "Print a one-line JSON summary at the end.") var json = false
    @Option(help: .hidden) var testFailRank: Int?
    @Option(help: .hidden) var testFailStep: Int?
    @Flag(help: .hidden) var testFailHang = false
    @Option(help: .hidden) var testOverrideSeedOnRank: Int?
    @Option(help: .hidden) var testDumpParameters: String?
    /// Tests: on this rank, nudge the first parameter after step `--test-perturb-step` so the
    /// replicas diverge silently (what a hardware fault would do).
    @Option(help: .hidden) var testPerturbRank: Int?
    @Option(help: .hidden) var testPerturbStep: Int?

    /// The file's configuration with every given flag applied on top.
    func resolved() throws -> TrainConfig {
        var c = try config.map { try TrainConfig.load(path: $0) } ?? TrainConfig()
        if let model { c.model = model }
        if let quantizer { c.quantizer = quantizer }
        if let weightBits { c.weightBits = weightBits }
        if let actBits { c.actBits = actBits }
        if let accumulatorBits { c.accumulatorBits = accumulatorBits }
        if let firstLast { c.firstLast = firstLast }
        for item in layerAccumulatorBits {
            let parts = item.split(separator: "=")
            guard parts.count == 2, let bits = Int(parts[1]) else {
                throw A2QError("--layer-accumulator-bits '\(item)' is not NAME=P", remedy: "e.g. --layer-accumulator-bits fc1=18")
            }
            c.layerAccumulatorBits[String(parts[0])] = bits
        }
        if let epochs { c.epochs = epochs }
        if let maxSteps { c.maxSteps = maxSteps }
        if let floatEpochs { c.floatEpochs = floatEpochs }
        if let batchSize { c.batchSize = batchSize }
        if let optimizer { c.optimizer = optimizer }
        if let lr { c.lr = lr }
        if let floatLr { c.floatLr = floatLr }
        if let weightDecay { c.weightDecay = weightDecay }
        if let schedule { c.schedule = schedule }
        if let warmupSteps { c.warmupSteps = warmupSteps }
        if let seed { c.seed = seed }
        if let data { c.data = data }
        if let trainSubset { c.trainSubset = trainSubset }
        if let out { c.out = out }
        if let initMethod { c.init_ = initMethod }
        if let regularizer { c.regularizer = regularizer }
        if let calibrationBatches { c.calibrationBatches = calibrationBatches }
        if let quantizerLrScale { c.quantizerLrScale = quantizerLrScale }
        if let projectDirections { c.projectDirections = projectDirections }
        if let distill { c.distill = distill }
        if let distillTemperature { c.distillTemperature = distillTemperature }
        if let logEvery { c.logEvery = logEvery }
        if let checkEvery { c.checkEvery = checkEvery }
        if let watchdogSeconds { c.watchdogSeconds = watchdogSeconds }
        if let allreduceBucketMb { c.allreduceBucketMB = allreduceBucketMb }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if let keepCheckpoints { c.keepCheckpoints = keepCheckpoints }
        if let resume { c.resume = resume }
        if let initFrom { c.initFrom = initFrom }
        if let stopAfterSteps { c.stopAfterSteps = stopAfterSteps }
        return c
    }

    func run() throws {
        let communicator: any Communicator = MPICommunicator.launchedByMPIRun
            ? try MPICommunicator() : SingleProcessCommunicator()
        // Start-up: the same checks on every rank; one message (from the lowest failing rank).
        var trainer: Trainer?
        var failure: (any Error)?
        do {
            var config = try resolved()
            if let rank = testOverrideSeedOnRank, rank == communicator.rank { config.seed &+= 1 }
            trainer = try Trainer(config: config, communicator: communicator)
            if let rank = testFailRank, let step = testFailStep { trainer?.faultInjection = (rank, step, testFailHang) }
            if let rank = testPerturbRank, let step = testPerturbStep, rank == communicator.rank {
                trainer?.stepObserver = { model, _, current, _ in
                    if current == step { model.parameters.values[0] += 1e-3 }
                }
            }
            if let prefix = testDumpParameters {
                // Tests compare every rank's parameters and the per-step losses it saw.
                let rank = communicator.rank
                var losses: [String] = []
                trainer?.stepObserver = { model, phase, step, loss in
                    losses.append("\(phase) \(step) \(loss.bitPattern) \(loss)")
                    let data = Data(bytes: model.parameters.values, count: model.parameters.count * 4)
                    try? data.write(to: URL(fileURLWithPath: "\(prefix).rank\(rank).bin"))
                    try? losses.joined(separator: "\n").write(toFile: "\(prefix).rank\(rank).losses", atomically: true, encoding: .utf8)
                }
            }
        } catch {
            failure = error
        }
        var failedRank = [Int64(failure == nil ? Int64.max : Int64(communicator.rank))]
        try failedRank.withUnsafeMutableBufferPointer { try communicator.allReduceMin($0) }
        if failedRank[0] != Int64.max {
            if let failure, Int64(communicator.rank) == failedRank[0] { printError("Error: \(failure)") }
            (communicator as? MPICommunicator)?.finalize()
            throw ExitCode(1)
        }
        guard let trainer else { throw ExitCode(1) }
        do {
            let summary = try trainer.run()
            if json && communicator.isRoot {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                printLine(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else if communicator.isRoot {
                printLine(String(format: "done: test accuracy %.2f%%, %.0f images/s, sparsity %.1f%%%@ → %@",
                                 100 * summary.testAccuracy, summary.imagesPerSecond, 100 * summary.sparsity,
                                 summary.worstL1Usage.map { String(format: ", max ||q||₁/T %.3f, %@", $0, summary.overflowFree ? "overflow-free" : "OVERFLOW POSSIBLE") } ?? "",
                                 summary.output))
            }
        } catch let stop as Trainer.StopRequested {
            if communicator.isRoot { printLine("\(stop)") }
        } catch {
            if communicator.worldSize > 1 { communicator.abort("\(error)", code: 1) }
            throw error
        }
        (communicator as? MPICommunicator)?.finalize()
    }
}
