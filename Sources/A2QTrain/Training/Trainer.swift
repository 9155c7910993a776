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
    public let train: Dataset
    public let test: Dataset
    public let sampler: EpochSampler
    /// The output folder (rank 0's decision; empty on other ranks).
    public private(set) var output = ""

    /// The quantized model this run trains (built, not yet initialised, at start-up).
    public let model: Model
    private let metrics: MetricsLog
    private let progress: Progress
    private let localBatch: Int
    private let input = Tensor(shape: [0])
    private var labels: [Int32]
    private let loss = SoftmaxCrossEntropy()
    /// `--distill`: the soft-target term and its teacher, the float model the quantized phase
    /// starts from (evaluated in inference mode, never trained).
    private let distillation: Distillation?
    private var teacher: Model?
    private var timings: [String: Double] = [:]
    /// Set only by tests: make rank `r` fail (exit or hang) at global step `k`.
    public var faultInjection: (rank: Int, step: Int, hang: Bool)?
    /// Called after every optimizer step and re-projection, with the phase and step (tests).
    public var stepObserver: ((_ model: Model, _ phase: String, _ step: Int, _ loss: Float) -> Void)?

    /// Loads and validates data and configuration. Errors here are the same on every rank.
    public init(config: TrainConfig, communicator: any Communicator, data: (train: Dataset, test: Dataset)? = nil,
                quiet: Bool = false) throws {
        let (fullTrain, test) = try data ?? DataSource(argument: config.data).load()
        let train = config.trainSubset.map { fullTrain.prefix($0) } ?? fullTrain
        try test.requireImageSize(height: fullTrain.height, width: fullTrain.width, channels: fullTrain.channels,
                                  source: "\(config.data) (test images, against the training images)")
        try config.validate(trainCount: train.count, worldSize: communicator.worldSize)
        let sampler = EpochSampler(count: train.count, globalBatch: config.batchSize, seed: config.seed)
        guard sampler.batchesPerEpoch >= 1 else {
            throw A2QError("the training set (\(train.count)) holds no full global batch of \(config.batchSize)")
        }
        var resolved = config
        resolved.lr = config.learningRate
        self.config = resolved
        distillation = config.distill > 0 ? Distillation(weight: config.distill, temperature: config.distillTemperature) : nil
        self.communicator = communicator
        self.train = train
        self.test = test
        self.sampler = sampler
        // Building the model validates the per-layer settings (e.g. P too narrow) up front.
        model = try ModelBuilder.build(config, quantized: true, classes: train.classes, inputShape: train.imageShape)
        localBatch = config.batchSize / communicator.worldSize
        labels = Array(repeating: 0, count: localBatch)
        communicator.timeout = config.watchdogSeconds
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
        var state = resumeHeader?.state ?? TrainingState(phase: config.usesFloatPhase ? "float" : "quantized")
        if let resumeHeader {
            state.window = ownRow(resumeHeader.state.window, width: 3, savedRanks: resumeHeader.worldSize)
            state.epochTotals = ownRow(resumeHeader.state.epochTotals, width: 2, savedRanks: resumeHeader.worldSize)
        }
        progress.line("a2q train: \(config.runName), \(communicator.worldSize) rank(s), global batch \(config.batchSize), "
                      + "\(train.count) training / \(test.count) test images → \(output)")
        if let resumeHeader {
            progress.line("resuming from \(resumeHeader.path): \(state.phase) phase, epoch \(state.epoch + 1), "
                          + "batch \(state.position), global step \(state.globalStep)")
        }
        if state.phase == "float" {
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
            var next = TrainingState(phase: "quantized")
            next.earlierSteps = state.globalStep
            next.floatTestAccuracy = try evaluate(floatModel).accuracy
            next.conversionTestAccuracy = try convertAndReport(from: floatModel)
            state = next
            progress.line("phase 2/2: quantized fine-tuning (\(config.quantizer.rawValue)), \(config.epochs) epoch(s)")
        }
        let optimizer = makeOptimizer(model.parameters.count)
        if let resumeHeader, resumeHeader.state.phase == "quantized" {
            try restore(resumeHeader, model, optimizer)
            if distillation != nil { teacher = try loadTeacher() }
        } else if resumeHeader == nil, let source = config.initFrom {
            let floatModel = try loadFloatModel(from: { source }) {
                "initialising from \($0) (\($1) tensors), --init \(self.config.init_.rawValue)"
            }
            if distillation != nil { teacher = floatModel }
            state.floatTestAccuracy = try evaluate(floatModel).accuracy
            state.conversionTestAccuracy = try convertAndReport(from: floatModel)
        } else if resumeHeader == nil && !config.usesFloatPhase {
            try initialize(model)
            if config.isQuantized { try calibrate(model) }
        }
        timings = [:]
        let result = try trainPhase(model, optimizer: optimizer, state: &state,
                                    phase: config.isQuantized ? "quantized" : "float", epochs: config.epochs,
                                    learningRate: config.learningRate, maxSteps: config.maxSteps)
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
            finalTrainLoss: result.trainLoss, testAccuracy: evaluation.accuracy, testLoss: evaluation.loss,
            floatTestAccuracy: state.floatTestAccuracy, conversionTestAccuracy: state.conversionTestAccuracy,
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
    private func buildFloatModel() throws -> Model {
        try ModelBuilder.build(config, quantized: false, classes: train.classes, inputShape: model.inputShape,
                               description: model.description)
    }

    /// The float model a run keeps in its folder when its float phase ends.
    public static let floatModelName = "float.h5"

    /// Rebuilds the distillation teacher of a resumed run: the run's `float.h5`, else the
    /// `--init-from` checkpoint.
    private func loadTeacher() throws -> Model {
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
    private func loadFloatModel(from path: () throws -> String, describe: (String, Int) -> String) throws -> Model {
        let floatModel = try buildFloatModel()
        if communicator.isRoot {
            let path = try path()
            let header = try CheckpointFile.header(path)
            guard header.config.model == config.model else {
                throw A2QError("\(path) holds a \(header.config.model.rawValue), but this run trains a \(config.model.rawValue)",
                               remedy: "--init-from needs a checkpoint of the same --model")
            }
            progress.line(describe(path, try CheckpointFile.loadWeights(path, into: floatModel)))
        }
        try broadcastState(floatModel)
        return floatModel
    }

    /// Converts the float model into `model` and returns the test accuracy before fine-tuning.
    private func convertAndReport(from floatModel: Model) throws -> Double {
        try convert(from: floatModel, to: model)
        try calibrate(model)
        if config.init_ == .epScaled {
            try matchOutputScales(of: model, to: floatModel)
            try calibrate(model)
        }
        let converted = try evaluate(model)
        try logConversion(model, accuracy: converted.accuracy, loss: converted.loss)
        return converted.accuracy
    }

    // MARK: Checkpoints

    /// Thrown (and caught by the command) when `--stop-after-steps` is reached.
    public struct StopRequested: Error, CustomStringConvertible {
        public let step: Int
        public var description: String { "stopped after global step \(step) as asked (--stop-after-steps); continue with --resume auto" }
    }

    /// Rank 0 finds and validates the checkpoint to resume from; every rank learns its header.
    private func findResumeCheckpoint() throws -> CheckpointFile.Header? {
        guard let resume = config.resume else { return nil }
        var header: CheckpointFile.Header?
        var failure: String?
        if communicator.isRoot {
            do {
                if resume == "auto" {
                    header = CheckpointFolder.latestValid(in: output) { progress.line($0) }
                    if header == nil { progress.line("--resume auto: no valid checkpoint in \(output); starting from scratch") }
                } else {
                    header = try CheckpointFile.validate(resume)
                }
                if let saved = header?.config {
                    var problems = config.resumeMismatches(saved)
                    if let header, header.description != model.description {
                        problems.append("the model's layers differ (the model file changed since the checkpoint)")
                    }
                    if let header, header.inputShape != model.inputShape {
                        problems.append("input shape: checkpoint \(describe(header.inputShape)), now \(describe(model.inputShape))")
                    }
                    if !problems.isEmpty {
                        throw A2QError("\(header?.path ?? resume) was written by a different configuration: \(problems.joined(separator: "; "))",
                                       remedy: "resume with the same model, quantizer, bit widths, batch size, seed and data")
                    }
                    for (name, now, then) in [("lr", "\(config.learningRate)", "\(saved.learningRate)"), ("epochs", "\(config.epochs)", "\(saved.epochs)"),
                                              ("max-steps", "\(config.maxSteps.map(String.init) ?? "none")", "\(saved.maxSteps.map(String.init) ?? "none")")]
                    where now != then {
                        progress.line("warning: --\(name) changed from \(then) to \(now) since the checkpoint")
                    }
                }
            } catch {
                failure = "\(error)"
            }
        }
        // Share the outcome: a flag, then the header (as JSON) from rank 0.
        var payload = [UInt8]()
        if communicator.isRoot {
            let shared = SharedHeader(failure: failure, path: header?.path, state: header?.state, worldSize: header?.worldSize)
            payload = Array((try? JSONEncoder().encode(shared)) ?? Data())
        }
        var length = [Int64(payload.count)]
        try communicator.broadcast(&length)
        if !communicator.isRoot { payload = [UInt8](repeating: 0, count: Int(length[0])) }
        try communicator.broadcast(&payload)
        let shared = try JSONDecoder().decode(SharedHeader.self, from: Data(payload))
        if let failure = shared.failure { throw A2QError(failure) }
        guard let path = shared.path, let state = shared.state else { return nil }
        return CheckpointFile.Header(path: path, config: config, state: state, worldSize: shared.worldSize ?? 1, layerNames: [],
                                     description: model.description, inputShape: model.inputShape)
    }

    private struct SharedHeader: Codable {
        var failure: String?
        var path: String?
        var state: TrainingState?
        var worldSize: Int?
    }

    /// Rank 0 loads the checkpoint; parameters, buffers and optimizer state go to every rank.
    private func restore(_ header: CheckpointFile.Header, _ target: Model, _ optimizer: any Optimizer) throws {
        let path = header.path
        var failure = [Int64(0)]
        if communicator.isRoot {
            do { try CheckpointFile.restore(path, into: target, optimizer: optimizer) } catch {
                progress.line("Error: \(error)")
                failure[0] = 1
            }
        }
        try communicator.broadcast(&failure)
        if failure[0] != 0 { throw A2QError("could not load \(path) (see rank 0's message)") }
        try broadcastState(target)
        // Each rank's own BatchNorm statistics when the rank count is unchanged.
        var rows: [String: [Float]] = [:]
        if communicator.isRoot { rows = (try? CheckpointFile.rankBuffers(path, model: target, worldSize: header.worldSize)) ?? [:] }
        for (name, tensor) in target.network.buffers {
            var values = rows[name] ?? []
            var count = [Int64(values.count)]
            try communicator.broadcast(&count)
            if !communicator.isRoot { values = [Float](repeating: 0, count: Int(count[0])) }
            try communicator.broadcast(&values)
            if values.count == tensor.count * communicator.worldSize {
                for i in 0..<tensor.count { tensor.data[i] = values[communicator.rank * tensor.count + i] }
            }
        }
        var steps = [Int64(optimizer.stepCount)]
        try communicator.broadcast(&steps)
        optimizer.stepCount = Int(steps[0])
        for (_, buffer) in optimizer.stateBuffers {
            try communicator.broadcast(UnsafeMutableRawBufferPointer(buffer), root: 0)
        }
    }

    /// Saves a periodic checkpoint. Every rank's logging sums and buffers are gathered (exact:
    /// each rank fills its own row of a zero matrix before the sum), so saving changes nothing
    /// in the run and a resume with the same rank count continues it bit for bit.
    private func saveCheckpoint(_ model: Model, optimizer: any Optimizer, state: TrainingState) throws {
        var saved = state
        saved.window = try gatherRows(state.window)
        saved.epochTotals = try gatherRows(state.epochTotals)
        var rankBuffers: [String: [Float]] = [:]
        for (name, tensor) in model.network.buffers {
            var rows = [Float](repeating: 0, count: tensor.count * communicator.worldSize)
            for i in 0..<tensor.count { rows[communicator.rank * tensor.count + i] = tensor.data[i] }
            try rows.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            rankBuffers[name] = rows
        }
        var failure = [Int64(0)]
        if communicator.isRoot {
            // /model keeps the rank average of the buffers; this rank's own values come back after.
            let own = model.network.buffers.map { ($0.tensor, $0.tensor.array) }
            for (name, tensor) in model.network.buffers {
                guard let rows = rankBuffers[name] else { continue }
                for i in 0..<tensor.count {
                    var sum: Float = 0
                    for r in 0..<communicator.worldSize { sum += rows[r * tensor.count + i] }
                    tensor.data[i] = sum / Float(communicator.worldSize)
                }
            }
            do {
                try CheckpointFile.save(path: (output as NSString).appendingPathComponent(CheckpointFolder.name(globalStep: state.globalStep)),
                                        model: model, optimizer: optimizer, state: saved, config: config,
                                        worldSize: communicator.worldSize, rankBuffers: rankBuffers)
                CheckpointFolder.prune(output, keep: config.keepCheckpoints)
            } catch {
                progress.line("Error: \(error)")
                failure[0] = 1
            }
            for (tensor, values) in own { for i in 0..<tensor.count { tensor.data[i] = values[i] } }
        }
        try communicator.broadcast(&failure)
        if failure[0] != 0 { throw A2QError("saving a checkpoint failed at step \(state.globalStep) (see rank 0's message)") }
    }

    /// `values` of every rank, rank-major (exact: the other rows are zeros).
    private func gatherRows(_ values: [Double]) throws -> [Double] {
        var rows = [Double](repeating: 0, count: values.count * communicator.worldSize)
        for (i, v) in values.enumerated() { rows[communicator.rank * values.count + i] = v }
        try rows.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        return rows
    }

    /// This rank's share of rows saved by `savedRanks` ranks: its own row when the rank count is
    /// unchanged, else the column sums on rank 0 and zeros elsewhere.
    private func ownRow(_ rows: [Double], width: Int, savedRanks: Int) -> [Double] {
        guard rows.count == width * savedRanks, savedRanks > 0 else { return [Double](repeating: 0, count: width) }
        if savedRanks == communicator.worldSize {
            return Array(rows[(communicator.rank * width)..<((communicator.rank + 1) * width)])
        }
        guard communicator.isRoot else { return [Double](repeating: 0, count: width) }
        return (0..<width).map { i in (0..<savedRanks).reduce(0) { $0 + rows[$1 * width + i] } }
    }

    // MARK: Phases

    struct PhaseResult { var steps: Int; var trainLoss: Double; var imagesPerSecond: Double }

    private func makeOptimizer(_ count: Int) -> any Optimizer {
        let factor = config.quantizerLrScale
        let scale: @Sendable (ParameterView) -> Float = { view in
            switch view.role {
            case .logScale, .logNorm, .activationLogScale: return factor
            default: return 1
            }
        }
        switch config.optimizer {
        case .sgd:
            let sgd = SGD(parameterCount: count, momentum: 0.9, nesterov: true, weightDecay: config.weightDecay)
            sgd.learningRateScale = scale
            return sgd
        case .adam, .adamw:
            let adam = Adam(parameterCount: count, weightDecay: config.weightDecay, decoupled: config.optimizer == .adamw)
            adam.learningRateScale = scale
            return adam
        }
    }

    private func makeSchedule(base: Float, totalSteps: Int) -> LearningRateSchedule {
        switch config.schedule {
        case .constant: return LearningRateSchedule(base: base, warmupSteps: config.warmupSteps)
        case .step: return LearningRateSchedule(base: base, kind: .step(every: max(totalSteps / 3, 1), gamma: 0.1),
                                                warmupSteps: config.warmupSteps)
        case .cosine: return LearningRateSchedule(base: base, kind: .cosine(totalSteps: totalSteps, minimum: base * 0.01),
                                                  warmupSteps: config.warmupSteps)
        }
    }

    private func time<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let start = monotonicSeconds()
        defer { timings[phase, default: 0] += monotonicSeconds() - start }
        return try body()
    }

    @discardableResult
    private func trainPhase(_ model: Model, optimizer: any Optimizer, state: inout TrainingState, phase: String? = nil,
                            epochs: Int, learningRate: Float, maxSteps: Int?) throws -> PhaseResult {
        let phase = phase ?? state.phase
        let parameters = model.parameters
        let perEpoch = sampler.batchesPerEpoch
        let totalSteps = min(epochs * perEpoch, maxSteps ?? Int.max)
        let schedule = makeSchedule(base: learningRate, totalSteps: totalSteps)
        let gradients = UnsafeMutableBufferPointer(start: parameters.gradients, count: parameters.count)
        let inverseWorld = 1 / Float(communicator.worldSize)
        var overlap = communicator.worldSize > 1 && config.allreduceBucketMB > 0
            ? OverlappedAllReduce(network: model.network, bucketBytes: Int(config.allreduceBucketMB * 1_048_576)) : nil
        var overlapReported = false
        if communicator.worldSize > 1 && config.allreduceBucketMB > 0 && overlap == nil {
            progress.line("warning: the parameters are not in layer order; using the fused all-reduce")
        }
        let startStep = state.step
        let phaseStart = monotonicSeconds()
        var windowStart = phaseStart, windowSteps = 0
        var evaluationSeconds = 0.0
        var lastEpochLoss = 0.0
        epochs: while state.epoch < epochs {
            let order = sampler.order(epoch: state.epoch)
            while state.position < perEpoch {
                if state.step >= totalSteps { break epochs }
                let batch = state.position
                if let fault = faultInjection, fault.rank == communicator.rank, fault.step == state.globalStep {
                    if fault.hang { while true { sleep(1) } }
                    printError("a2q: rank \(communicator.rank): injected failure at step \(state.globalStep)")
                    exit(3)
                }
                time("data") {
                    labels.withUnsafeMutableBufferPointer {
                        train.fill(sampler.slice(of: order, batch: batch, rank: communicator.rank,
                                                 worldSize: communicator.worldSize), into: input, labels: $0)
                    }
                }
                parameters.zeroGradients()
                let logits = time("forward") { model.network.forward(input, training: true) }
                let teacherLogits = time("forward") { phase == "quantized" ? teacher?.network.forward(input, training: false) : nil }
                let value = labels.withUnsafeBufferPointer { loss.forward(logits, labels: $0) }
                if let teacherLogits, let distillation {
                    distillation.blend(student: logits, teacher: teacherLogits, into: loss.backward())
                }
                guard value.isFinite else {
                    throw A2QError("the training loss became \(value) at step \(state.globalStep) (\(phase) phase, epoch \(state.epoch + 1)); nothing was saved from this point",
                                   remedy: "lower the learning rate (--lr / --float-lr) or check the data")
                }
                time("backward") {
                    if overlap != nil {
                        overlap?.begin()
                        model.network.backward(loss.backward()) { overlap?.layerFinished($0, communicator: communicator) }
                    } else {
                        model.network.backward(loss.backward())
                        model.addRegularizer(weight: config.regularizer)
                    }
                }
                try time("allreduce") {
                    if overlap != nil {
                        // The regulariser depends on the (identical) parameters only: it is added
                        // after the reduction, as the buckets left during the backward pass.
                        try overlap?.finish(communicator: communicator)
                        for i in 0..<gradients.count { gradients[i] *= inverseWorld }
                        model.addRegularizer(weight: config.regularizer)
                        if !overlapReported, let buckets = overlap?.bucketsStarted {
                            overlapReported = true
                            progress.line("overlapped all-reduce: \(buckets) bucket(s) per step (each at least \(config.allreduceBucketMB) MiB but the last), started during the backward pass")
                        }
                    } else if communicator.worldSize > 1 {
                        try communicator.allReduceSum(gradients)
                        for i in 0..<gradients.count { gradients[i] *= inverseWorld }
                    }
                }
                time("optimizer") {
                    optimizer.step(parameters, learningRate: schedule.rate(at: state.step))
                    model.reproject()
                    if config.projectDirections > 0 && (state.step + 1) % config.projectDirections == 0 {
                        model.projectDirections()
                    }
                }
                state.step += 1
                state.position += 1
                stepObserver?(model, phase, state.step, value)
                windowSteps += 1
                state.window[0] += Double(value) * Double(localBatch)
                state.window[1] += Double(loss.correctCount)
                state.window[2] += Double(localBatch)
                state.epochTotals[0] += Double(value) * Double(localBatch)
                state.epochTotals[1] += Double(localBatch)
                if state.step % config.checkEvery == 0 { try checkConsistency(model, step: state.globalStep) }
                if state.step % config.logEvery == 0 || state.position == perEpoch || state.step == totalSteps {
                    var window = state.window
                    try window.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
                    let now = monotonicSeconds()
                    let rate = Double(windowSteps * config.batchSize) / max(now - windowStart, 1e-9)
                    let meanLoss = window[0] / max(window[2], 1)
                    metrics.write(["type": "step", "phase": phase, "step": state.globalStep, "epoch": state.epoch + 1,
                                   "loss": meanLoss, "accuracy": window[1] / max(window[2], 1),
                                   "lr": Double(schedule.rate(at: state.step - 1)), "images_per_second": rate])
                    let secondsPerStep = (now - phaseStart - evaluationSeconds) / Double(max(state.step - startStep, 1))
                    progress.step(phase: phase, epoch: state.epoch, epochs: epochs, step: state.position, stepsPerEpoch: perEpoch,
                                  loss: Float(meanLoss), imagesPerSecond: rate, remainingSteps: totalSteps - state.step,
                                  secondsPerStep: secondsPerStep)
                    windowStart = now
                    windowSteps = 0
                    state.window = [0, 0, 0]
                }
                let stopping = config.stopAfterSteps == state.globalStep
                let periodic = config.checkpointEvery.map { state.globalStep % $0 == 0 } ?? false
                if (periodic || stopping) && state.position < perEpoch {
                    try saveCheckpoint(model, optimizer: optimizer, state: state)
                }
                if stopping && state.position < perEpoch { throw StopRequested(step: state.globalStep) }
            }
            var totals = state.epochTotals
            try totals.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            lastEpochLoss = totals[0] / max(totals[1], 1)
            try synchronizeBuffers(model)
            let evaluationStart = monotonicSeconds()
            try endOfEpoch(model, phase: phase, epoch: state.epoch, trainLoss: lastEpochLoss, step: state.globalStep)
            state.epoch += 1
            state.position = 0
            state.epochTotals = [0, 0]
            if state.step < totalSteps || state.epoch < epochs {
                try saveCheckpoint(model, optimizer: optimizer, state: state)
            }
            if config.stopAfterSteps == state.globalStep { throw StopRequested(step: state.globalStep) }
            evaluationSeconds += monotonicSeconds() - evaluationStart
            windowStart = monotonicSeconds()
        }
        // A phase cut short by --max-steps ends mid-epoch: average the ranks' BatchNorm
        // statistics as an epoch end would, so the final evaluation and final.h5 use the rank
        // average (as periodic checkpoints do), not rank 0's own statistics.
        if state.position > 0 { try synchronizeBuffers(model) }
        let elapsed = monotonicSeconds() - phaseStart - evaluationSeconds
        return PhaseResult(steps: state.step, trainLoss: lastEpochLoss,
                           imagesPerSecond: Double((state.step - startStep) * config.batchSize) / max(elapsed, 1e-9))
    }

    private func endOfEpoch(_ model: Model, phase: String, epoch: Int, trainLoss: Double, step: Int) throws {
        let evaluation = try evaluate(model)
        let layers = try LayerStatistics.measure(model)
        let constrained = layers.filter { $0.maxL1Usage != nil }
        let overflowFree = constrained.allSatisfy { $0.overflowFree == true }
        metrics.write(["type": "epoch", "phase": phase, "epoch": epoch + 1, "step": step, "train_loss": trainLoss,
                       "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss,
                       "layers": MetricsLog.object(layers), "overflow_free": overflowFree])
        var text = String(format: "%@ epoch %d done: train loss %.4f, test accuracy %.2f%%, test loss %.4f",
                          phase, epoch + 1, trainLoss, 100 * evaluation.accuracy, evaluation.loss)
        if !constrained.isEmpty {
            let usage = constrained.compactMap(\.maxL1Usage).max() ?? 0
            text += String(format: ", max ||q||₁/T %.3f, %@", usage, overflowFree ? "overflow-free" : "OVERFLOW POSSIBLE")
        }
        progress.line(text)
    }

    // MARK: Start-up, conversion, calibration

    /// Rank 0's initial parameters and buffers go to every rank.
    private func initialize(_ model: Model) throws {
        var generator = Xoshiro256(seed: config.seed)
        model.network.initialize(generator: &generator)
        try broadcastState(model)
    }

    private func broadcastState(_ model: Model) throws {
        let parameters = model.parameters
        try communicator.broadcast(UnsafeMutableRawBufferPointer(start: parameters.values, count: parameters.count * 4), root: 0)
        for (_, tensor) in model.network.buffers {
            try communicator.broadcast(UnsafeMutableRawBufferPointer(start: tensor.data, count: tensor.count * 4), root: 0)
        }
    }

    /// Averages non-trainable buffers (BatchNorm running statistics) over ranks, so that
    /// evaluation and checkpoints see one model. BatchNorm itself normalises with each rank's
    /// local batch statistics during training (as PyTorch DDP does by default).
    private func synchronizeBuffers(_ model: Model) throws {
        guard communicator.worldSize > 1 else { return }
        let inverse = 1 / Float(communicator.worldSize)
        for (_, tensor) in model.network.buffers {
            try communicator.allReduceSum(tensor.buffer)
            for i in 0..<tensor.count { tensor.data[i] *= inverse }
        }
    }

    /// Copies float weights, biases and BatchNorm state by name, then initialises every
    /// quantizer from its float weights (EP-init or naive for a2q/a2q+, `max|w|` for qat).
    private func convert(from floatModel: Model, to model: Model) throws {
        for view in floatModel.parameters.views {
            guard let target = model.parameters.view(named: view.name), target.count == view.count else { continue }
            model.parameters.value(target).update(from: floatModel.parameters.value(view), count: view.count)
        }
        let sources = Dictionary(uniqueKeysWithValues: floatModel.network.buffers.map { ($0.name, $0.tensor) })
        for (name, tensor) in model.network.buffers {
            if let source = sources[name] { tensor.data.update(from: source.data, count: tensor.count) }
        }
        for layer in model.quantizedLayers {
            layer.quantizer.initializeFromFloatWeights(model.parameters,
                                                       method: layer.isConstrained ? config.init_ : .naive)
        }
        // Deterministic on every rank, but keep one source of truth all the same.
        try broadcastState(model)
    }

    /// Re-calibration after conversion: per output channel of every constrained layer (in
    /// order), the least-squares factor `ρ = Σ z_f·z_q / Σ z_q²` between the float model's and
    /// the quantized model's pre-bias outputs on calibration batches (reduced over ranks) scales
    /// `s`, `g` and `v` together, so the integers stay and the layer's output scale is the float
    /// model's. Without BatchNorm a tight L1 budget otherwise shrinks each layer's output and
    /// starves the next one.
    private func matchOutputScales(of model: Model, to floatModel: Model) throws {
        let order = sampler.order(epoch: 0)
        let batches = min(max(config.calibrationBatches / 4, 1), sampler.batchesPerEpoch)
        for layer in model.constrainedLayers {
            let channels = layer.quantizer.outChannels
            let bias = layer.layer.hasParameters ? model.parameters.view(named: "\(layer.name).bias") : nil
            var sums = [Double](repeating: 0, count: 2 * channels)
            for batch in 0..<batches {
                labels.withUnsafeMutableBufferPointer {
                    train.fill(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                               into: input, labels: $0)
                }
                guard let reference = floatModel.network.forward(input, training: false, through: layer.name),
                      let quantized = model.network.forward(input, training: false, through: layer.name) else { continue }
                let plane = reference.count / (reference.shape[0] * channels)
                let b = bias.map { model.parameters.value($0) }
                for n in 0..<reference.shape[0] {
                    for c in 0..<channels {
                        let shift = b?[c] ?? 0
                        let offset = (n * channels + c) * plane
                        for i in 0..<plane {
                            let zf = Double(reference[offset + i] - shift), zq = Double(quantized[offset + i] - shift)
                            sums[2 * c] += zf * zq
                            sums[2 * c + 1] += zq * zq
                        }
                    }
                }
            }
            try sums.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            for c in 0..<channels where sums[2 * c + 1] > 0 && sums[2 * c] > 0 {
                layer.quantizer.rescaleChannel(c, by: sums[2 * c] / sums[2 * c + 1], model.parameters)
            }
        }
    }

    /// Sets activation-quantizer scales from the first training batches. Each batch's
    /// percentile is taken over the global batch: the maximum and a 4096-bin histogram of `|x|`
    /// are reduced over ranks (exact counts), so the result does not depend on the rank count.
    private func calibrate(_ model: Model) throws {
        let quantizers = model.activationQuantizers.filter(\.hasParameters)
        guard !quantizers.isEmpty, config.calibrationBatches > 0 else { return }
        for q in quantizers { q.resetCalibration() }
        let order = sampler.order(epoch: 0)
        let bins = 4096
        var histogram = [Double](repeating: 0, count: bins)
        for batch in 0..<min(config.calibrationBatches, sampler.batchesPerEpoch) {
            labels.withUnsafeMutableBufferPointer {
                train.fill(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                           into: input, labels: $0)
            }
            // Layer by layer: a quantizer's scale must be final before the next one sees its output.
            for q in quantizers {
                guard model.network.forward(input, training: true, through: q.name) != nil else { continue }
                var maximum = [Int64(q.lastInputMaximum().bitPattern)]  // |x| ≥ 0: bit order is value order
                try maximum.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
                let top = Float(bitPattern: UInt32(truncatingIfNeeded: maximum[0]))
                for i in 0..<bins { histogram[i] = 0 }
                q.lastInputHistogram(bins: bins, maximum: top, into: &histogram)
                try histogram.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
                q.addCalibrationSample(ActivationQuantizer.percentile(histogram: histogram, maximum: top,
                                                                      percentile: q.calibrationPercentile), model.parameters)
            }
        }
        try synchronizeBuffers(model)
    }

    private func logConversion(_ model: Model, accuracy: Double, loss testLoss: Double) throws {
        let layers = try LayerStatistics.measure(model)
        metrics.write(["type": "conversion", "init": config.init_.rawValue, "test_accuracy": accuracy, "test_loss": testLoss,
                       "layers": MetricsLog.object(layers)])
        let details = layers.filter { $0.maxL1Usage != nil }.map {
            String(format: "%@ sparsity %.1f%% p_min %d", $0.name, 100 * $0.sparsity, $0.pMin ?? 0)
        }.joined(separator: ", ")
        progress.line(String(format: "converted with %@ init: test accuracy %.2f%%, loss %.4f before fine-tuning (%@)",
                             config.init_.rawValue, 100 * accuracy, testLoss, details))
    }

    // MARK: Evaluation and agreement

    /// Test accuracy and mean loss, each rank evaluating a contiguous slice, reduced.
    public func evaluate(_ model: Model) throws -> (accuracy: Double, loss: Double) {
        let per = (test.count + communicator.worldSize - 1) / communicator.worldSize
        let start = min(communicator.rank * per, test.count), end = min(start + per, test.count)
        var stats = [Double](repeating: 0, count: 3)
        let evalBatch = 500
        var evalLabels = [Int32](repeating: 0, count: evalBatch)
        let x = Tensor(shape: [0])
        var first = start
        while first < end {
            let last = min(first + evalBatch, end)
            evalLabels.withUnsafeMutableBufferPointer { test.fill(first..<last, into: x, labels: $0) }
            let logits = model.network.forward(x, training: false)
            let value = evalLabels.withUnsafeBufferPointer {
                loss.forward(logits, labels: UnsafeBufferPointer(rebasing: $0[0..<(last - first)]))
            }
            stats[0] += Double(value) * Double(last - first)
            stats[1] += Double(loss.correctCount)
            stats[2] += Double(last - first)
            first = last
        }
        try stats.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        return (stats[1] / max(stats[2], 1), stats[0] / max(stats[2], 1))
    }

    /// Every rank must run the same configuration with the same parameter count.
    private func checkAgreement() throws {
        let mine: [Int64] = [Int64(bitPattern: config.hash), Int64(model.parameters.count), Int64(train.count)]
        var low = mine, high = mine
        try low.withUnsafeMutableBufferPointer { try communicator.allReduceMin($0) }
        try high.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
        let names = ["configuration hash", "parameter count", "training-set size"]
        for i in 0..<mine.count where low[i] != high[i] {
            // Rank 0 reports (and aborts the job); the others wait for that.
            guard communicator.isRoot else { try communicator.barrier(); break }
            throw A2QError("ranks disagree on the \(names[i]) (rank 0 has \(mine[i]), the ranks span \(low[i])...\(high[i]))",
                           remedy: "start every rank with the same arguments, config file and data")
        }
    }

    /// Compares a checksum of the parameters across ranks; a mismatch is fatal.
    private func checkConsistency(_ model: Model, step: Int) throws {
        guard communicator.worldSize > 1 else { return }
        let checksum = Int64(bitPattern: model.parameters.checksum())
        var low = [checksum], high = [checksum]
        try low.withUnsafeMutableBufferPointer { try communicator.allReduceMin($0) }
        try high.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
        if low[0] != high[0] {
            throw A2QError("replicas diverged: parameter checksums differ across ranks at step \(step)",
                           remedy: "this is a bug or a hardware fault; rerun from the last checkpoint")
        }
    }
}
