import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// Training-step throughput through the real `Trainer` (same code path as `a2q train`),
/// with the per-phase breakdown, the quantizers' share, checkpoint I/O and the integer engine.
public enum TrainingBenchmark {
    public struct Result: Sendable, Codable {
        public var model: String
        public var quantizer: String
        public var ranks: Int
        public var batchPerRank: Int
        /// Steps that ran and were timed (the phases are per step of these).
        public var steps: Int
        public var imagesPerSecond: Double
        /// Seconds per step by phase (forward, backward, allreduce, optimizer, data).
        public var secondsPerStep: [String: Double]
        /// Share of the step spent in the gradient all-reduce.
        public var allreduceShare: Double
        /// Weight quantizers' forward + backward per step, seconds (0 for float).
        public var quantizerSecondsPerStep: Double
        /// Floating-point operations of one training image in the convolutions and linear
        /// layers: 2·MACs forward, twice that backward (input and weight gradients).
        public var flopsPerImage: Double
        /// What ran the convolutions: each distinct `Conv2d.implementation` with its layer count.
        public var convolutions: [String]
        /// `flopsPerImage · images/s`: the GEMM work rate the whole step sustains.
        /// Restoration models: the high-resolution output pixels of one training crop (per
        /// channel), so that `pixelsPerSecond` compares with other tools' pixels/s; nil for
        /// classifiers.
        public var outputPixelsPerImage: Int?
        public var gflops: Double { flopsPerImage * imagesPerSecond / 1e9 }
        /// High-resolution output pixels per second (restoration models).
        public var pixelsPerSecond: Double? { outputPixelsPerImage.map { Double($0) * imagesPerSecond } }

        enum CodingKeys: String, CodingKey {
            case model, quantizer, ranks, batchPerRank = "batch_per_rank", steps, imagesPerSecond = "images_per_second"
            case secondsPerStep = "seconds_per_step", allreduceShare = "allreduce_share"
            case quantizerSecondsPerStep = "quantizer_seconds_per_step", flopsPerImage = "flops_per_image"
            case convolutions, outputPixelsPerImage = "output_pixels_per_image"
        }
    }

    /// Runs `steps` quantized-phase steps of `model`/`quantizer` at `batchPerRank` per rank.
    public static func train(model: ModelName, quantizer: WeightQuantizerKind, steps: Int, batchPerRank: Int,
                             communicator: any Communicator, data: (Dataset, Dataset)) throws -> Result {
        var config = TrainConfig()
        config.model = model
        config.quantizer = quantizer
        config.accumulatorBits = 20  // every hidden layer keeps non-zero weights from scratch
        config.floatEpochs = 0
        config.epochs = max(1, steps)  // --max-steps ends the run; short epochs (small data sets) repeat
        config.maxSteps = steps
        config.batchSize = batchPerRank * communicator.worldSize
        // One epoch holds every timed step (a restoration epoch is `cropsPerImage` crops of each
        // image, far fewer than `steps` batches at the training default).
        config.cropsPerImage = max(config.cropsPerImage, steps * config.batchSize)
        config.calibrationBatches = 2
        config.logEvery = 1_000_000
        config.checkEvery = 1_000_000
        config.out = NSTemporaryDirectory() + "a2q-bench-\(getpid())-\(model.rawValue)-\(quantizer.rawValue)"
        let trainer = try Trainer(config: config, communicator: communicator, data: data, quiet: true)
        let summary = try trainer.run()
        if communicator.isRoot, let out = config.out { try? FileManager.default.removeItem(atPath: out) }
        var perStep: [String: Double] = [:]
        for (phase, seconds) in summary.phaseSeconds { perStep[phase] = seconds / Double(max(summary.steps, 1)) }
        let stepSeconds = perStep.values.reduce(0, +)
        // The weight quantizers alone, forward + backward, on the trained parameters. Their
        // backward works in place on the gradient slots, so each repeat starts from the same
        // gradients (restored untimed, as the layers' GEMMs would have left them).
        let layers = trainer.model.quantizedLayers.filter { !$0.quantizer.isIdentity }
        var quantizerSeconds = 0.0
        if !layers.isEmpty {
            let parameters = trainer.model.parameters
            let saved = parameters.gradientsArray()
            let restore = { parameters.gradients.update(from: saved, count: saved.count) }
            let times = measure(warmup: 2, repeats: 20, setup: restore) {
                for layer in layers {
                    _ = layer.quantizer.forward(trainer.model.parameters)
                    layer.quantizer.backward(trainer.model.parameters)
                }
            }
            quantizerSeconds = times[times.count / 2]
        }
        // The layers' shapes of a training batch (the run's last forward was the evaluation,
        // whose restoration test crops are larger than the training crops).
        _ = trainer.model.network.forward(Tensor(shape: [1] + trainer.task.inputShape), training: false)
        return Result(model: model.rawValue, quantizer: quantizer.rawValue, ranks: communicator.worldSize,
                      batchPerRank: batchPerRank, steps: summary.steps, imagesPerSecond: summary.imagesPerSecond,
                      secondsPerStep: perStep, allreduceShare: (perStep["allreduce"] ?? 0) / max(stepSeconds, 1e-12),
                      quantizerSecondsPerStep: quantizerSeconds, flopsPerImage: trainingFlopsPerImage(trainer.model),
                      convolutions: convolutionImplementations(trainer.model),
                      outputPixelsPerImage: trainer.task.kind == .restoration
                          ? trainer.task.outputShape.dropFirst().reduce(1, *) : nil)
    }

    /// "N × implementation" for each distinct implementation among the model's convolutions.
    static func convolutionImplementations(_ model: Model) -> [String] {
        var counts: [(String, Int)] = []
        for case let conv as Conv2d in model.network.leaves {
            if let i = counts.firstIndex(where: { $0.0 == conv.implementation }) { counts[i].1 += 1 } else {
                counts.append((conv.implementation, 1))
            }
        }
        return counts.map { "\($0.1) × \($0.0)" }
    }

    /// 3 × 2 × the multiply-adds of every convolution and linear layer for one image (shapes of
    /// the last forward pass).
    public static func trainingFlopsPerImage(_ model: Model) -> Double {
        var macs = 0.0
        for leaf in model.network.leaves {
            if let conv = leaf as? Conv2d, conv.outputShape.count == 4 {
                macs += Double(conv.outChannels * conv.fanIn * conv.outputShape[2] * conv.outputShape[3])
            } else if let linear = leaf as? Linear {
                macs += Double(linear.inputs * linear.outputs)
            }
        }
        return 3 * 2 * macs
    }

    /// Checkpoint save and load times (median seconds) for `model` with A2Q+.
    public static func checkpointIO(model: ModelName, repeats: Int = 5) throws -> (save: Double, load: Double, bytes: Int) {
        var config = TrainConfig()
        config.model = model
        let built = try ModelBuilder.build(config, quantized: true)
        var generator = Xoshiro256(seed: 1)
        built.network.initialize(generator: &generator)
        let optimizer = Adam(parameterCount: built.parameters.count)
        let path = NSTemporaryDirectory() + "a2q-bench-\(getpid())-checkpoint.h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var failure: (any Error)?
        let save = measure(warmup: 1, repeats: repeats) {
            do { try CheckpointFile.save(path: path, model: built, optimizer: optimizer, state: TrainingState(phase: .quantized),
                                         config: config, worldSize: 1) } catch { failure = error }
        }
        let load = measure(warmup: 1, repeats: repeats) {
            do { try CheckpointFile.restore(path, into: built, optimizer: optimizer) } catch { failure = error }
        }
        if let failure { throw failure }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return (save[save.count / 2], load[load.count / 2], bytes)
    }
}
