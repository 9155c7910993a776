import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// The epoch loop of one phase: batches, forward and backward, the gradient all-reduce, the
/// optimizer step with re-projection, logging, periodic checkpoints and the end of each epoch.
extension Trainer {
    // MARK: Phases

    struct PhaseResult { var steps: Int; var trainLoss: Double; var imagesPerSecond: Double }

    func makeOptimizer(_ count: Int) -> any Optimizer {
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

    func makeSchedule(base: Float, totalSteps: Int) -> LearningRateSchedule {
        switch config.schedule {
        case .constant: return LearningRateSchedule(base: base, warmupSteps: config.warmupSteps)
        case .step: return LearningRateSchedule(base: base, kind: .step(every: max(totalSteps / 3, 1), gamma: 0.1),
                                                warmupSteps: config.warmupSteps)
        case .cosine: return LearningRateSchedule(base: base, kind: .cosine(totalSteps: totalSteps, minimum: base * 0.01),
                                                  warmupSteps: config.warmupSteps)
        }
    }

    func time<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let start = monotonicSeconds()
        defer { timings[phase, default: 0] += monotonicSeconds() - start }
        return try body()
    }

    @discardableResult
    func trainPhase(_ model: Model, optimizer: any Optimizer, state: inout TrainingState, phase: TrainingPhase? = nil,
                            epochs: Int, learningRate: Float, maxSteps: Int?) throws -> PhaseResult {
        let phase = phase ?? state.phase
        let parameters = model.parameters
        let perEpoch = sampler.batchesPerEpoch
        let totalSteps = min(epochs * perEpoch, maxSteps ?? Int.max)
        let schedule = makeSchedule(base: learningRate, totalSteps: totalSteps)
        let gradients = UnsafeMutableBufferPointer(start: parameters.gradients, count: parameters.count)
        let inverseWorld = 1 / Float(communicator.worldSize)
        var overlap = makeOverlappedAllReduce(model.network)
        var overlapReported = false
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
                    task.fillTraining(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                                      epoch: state.epoch, input: input)
                }
                parameters.zeroGradients()
                let logits = time("forward") { model.network.forward(input, training: true) }
                let teacherLogits = time("forward") { phase == .quantized ? teacher?.network.forward(input, training: false) : nil }
                let value = task.loss(logits)
                if let teacherLogits, let distillation {
                    distillation.blend(student: logits, teacher: teacherLogits, into: task.lossGradient)
                }
                guard value.isFinite else {
                    throw A2QError("the training loss became \(value) at step \(state.globalStep) (\(phase) phase, epoch \(state.epoch + 1)); nothing was saved from this point",
                                   remedy: "lower the learning rate (--lr / --float-lr) or check the data")
                }
                time("backward") {
                    if overlap != nil {
                        overlap?.begin()
                        model.network.backward(task.lossGradient) { overlap?.layerFinished($0, communicator: communicator) }
                    } else {
                        model.network.backward(task.lossGradient)
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
                        if !overlapReported, let overlap {
                            overlapReported = true
                            progress.line(overlap.summary)
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
                state.window[1] += task.metricSum(logits)
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
                    metrics.write(["type": "step", "phase": phase.rawValue, "step": state.globalStep, "epoch": state.epoch + 1,
                                   "loss": meanLoss, task.metricName: window[1] / max(window[2], 1),
                                   "lr": Double(schedule.rate(at: state.step - 1)), "images_per_second": rate])
                    let secondsPerStep = (now - phaseStart - evaluationSeconds) / Double(max(state.step - startStep, 1))
                    progress.step(phase: phase.rawValue, epoch: state.epoch, epochs: epochs, step: state.position, stepsPerEpoch: perEpoch,
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

    func endOfEpoch(_ model: Model, phase: TrainingPhase, epoch: Int, trainLoss: Double, step: Int) throws {
        let evaluation = try evaluate(model)
        let layers = try LayerStatistics.measure(model)
        let constrained = layers.filter { $0.maxL1Usage != nil }
        let overflowFree = constrained.allSatisfy { $0.overflowFree == true }
        metrics.write(["type": "epoch", "phase": phase.rawValue, "epoch": epoch + 1, "step": step, "train_loss": trainLoss,
                       "test_\(task.metricName)": evaluation.metric, "test_loss": evaluation.loss,
                       "layers": MetricsLog.object(layers), "overflow_free": overflowFree])
        var text = String(format: "%@ epoch %d done: train loss %.4f, test %@ %@, test loss %.4f",
                          phase.rawValue, epoch + 1, trainLoss, task.metricName, task.format(metric: evaluation.metric), evaluation.loss)
        if !constrained.isEmpty {
            let usage = constrained.compactMap(\.maxL1Usage).max() ?? 0
            text += String(format: ", max ||q||₁/T %.3f, %@", usage, overflowFree ? "overflow-free" : "OVERFLOW POSSIBLE")
        }
        progress.line(text)
    }
}
