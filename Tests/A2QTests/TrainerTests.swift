import A2QCore
import A2QData
import A2QDistributed
import A2QQuant
import A2QTrain
import Foundation
import Testing

/// Small synthetic datasets shared by the trainer tests (28×28, 10 classes).
enum TestData {
    static let train = SyntheticDataset.make(count: 1280, seed: 11)
    static let test = SyntheticDataset.make(count: 256, seed: 12)
}

func quickConfig(_ model: ModelName = .mlp, quantizer: WeightQuantizerKind = .a2qPlus, out: String) -> TrainConfig {
    var c = TrainConfig()
    c.model = model
    c.quantizer = quantizer
    c.accumulatorBits = 16
    c.batchSize = 32
    c.floatEpochs = 1
    c.epochs = 1
    c.calibrationBatches = 4
    c.logEvery = 10
    c.out = out
    return c
}

/// The root of the tests' scratch files: `$A2Q_TEST_SCRATCH` (Launch/test.sh makes one per run
/// and removes it when the run ends), else `$TMPDIR/a2q-tests/run-<pid>`, removed when the test
/// process exits normally.
let testScratchRoot: String = {
    if let root = ProcessInfo.processInfo.environment["A2Q_TEST_SCRATCH"], !root.isEmpty { return root }
    let root = NSTemporaryDirectory() + "a2q-tests/run-\(getpid())"
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "a2q-tests/run-\(getpid())") }
    return root
}()

func temporaryFolder(_ name: String) -> String {
    let path = testScratchRoot + "/\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("Training end to end (synthetic data, in-process)", .serialized)
struct TrainerTests {
    @Test("quantized models learn: qat from scratch, A2Q and A2Q+ (P = 12) through the recipe at least halve the loss; A2Q and A2Q+ keep every constrained layer within the papers' L1 budget T and overflow-free after every step",
          arguments: [WeightQuantizerKind.qat, .a2q, .a2qPlus])
    func learnsAndStaysOverflowFree(kind: WeightQuantizerKind) throws {
        var config = quickConfig(quantizer: kind, out: temporaryFolder("learns"))
        config.floatEpochs = kind == .qat ? 0 : 1
        config.epochs = 2
        // P = 12: the budget binds (at 16 bits truncation leaves ‖q‖₁ far below it).
        if kind != .qat { config.accumulatorBits = 12 }
        let bits = config.accumulatorBits
        let trainer = try Trainer(config: config, communicator: SingleProcessCommunicator(),
                                  data: (TestData.train, TestData.test), quiet: true)
        var losses: [Float] = []
        var violations: [String] = []
        var quantizedSteps = 0, checked = 0, constrained: Set<String> = [], maxUsage = 0.0
        trainer.stepObserver = { model, phase, step, loss in
            losses.append(loss)
            guard phase == .quantized else { return }
            quantizedSteps += 1
            for layer in model.constrainedLayers {
                constrained.insert(layer.name)
                checked += 1
                do {
                    guard let input = layer.input else { violations.append("\(layer.name): no input format"); continue }
                    let view = try layer.integerView(in: model, input: input, inputScale: layer.inputScale(in: model) ?? 0)
                    // The budget from the papers' formulas, not from the quantizer under test:
                    // A2Q T = (2^(P−1) − 1)·2^(signed − N), A2Q+ T = (2^P − 2)/(2^N − 1).
                    let n = Double(input.bits), signed = input.signed ? 1.0 : 0.0, p = Double(bits)
                    let budget = kind == .a2qPlus ? (pow(2, p) - 2) / (pow(2, n) - 1) : (pow(2, p - 1) - 1) * pow(2, signed - n)
                    let lo = input.signed ? -pow(2, n - 1) : 0, hi = input.signed ? pow(2, n - 1) - 1 : pow(2, n) - 1
                    let k = view.weights.count / view.outChannels
                    for o in 0..<view.outChannels {
                        let row = view.weights[(o * k)..<((o + 1) * k)]
                        let alpha = row.reduce(0.0) { $0 + Double(max($1, 0)) }, beta = row.reduce(0.0) { $0 + Double(min($1, 0)) }
                        maxUsage = max(maxUsage, (alpha - beta) / budget)
                        // The exact worst-case accumulator over every input, against P bits.
                        let accMax = hi * alpha + lo * beta, accMin = lo * alpha + hi * beta
                        if alpha - beta > budget || accMax > pow(2, p - 1) - 1 || accMin < -pow(2, p - 1) {
                            violations.append("\(layer.name)[\(o)] at step \(step): ‖q‖₁ \(alpha - beta) > T \(budget) or [\(accMin), \(accMax)] outside \(bits) bits")
                        }
                    }
                } catch {
                    violations.append("\(layer.name) at step \(step): \(error)")
                }
            }
        }
        let summary = try trainer.run()
        #expect(violations.isEmpty, "\(violations.prefix(5))")
        #expect(quantizedSteps == 80, "\(quantizedSteps) quantized steps")
        if kind == .qat {
            // QAT constrains no layer (every layer is unconstrained 8-bit): the per-step checks
            // cover A2Q and A2Q+ only, and this case checks that it learns.
            #expect(constrained.isEmpty && checked == 0, "\(constrained)")
        } else {
            // The mlp's hidden layer fc2 (first and last layers are unconstrained by default), every
            // step, with the budget in use (not a check that any weights would pass).
            #expect(constrained == ["fc2"] && checked == quantizedSteps, "\(constrained): \(checked) checks")
            #expect(maxUsage > 0.5 && maxUsage <= 1, "max ‖q‖₁/T \(maxUsage)")
        }
        // Against the untrained loss ln 10 (the recipe's quantized phase starts after conversion).
        let first: Float = kind == .qat ? losses.prefix(3).reduce(0, +) / 3 : log(10)
        let last = losses.suffix(5).reduce(0, +) / 5
        #expect(first > 2 && last * 2 < first, "loss \(first) → \(last)")
        #expect(summary.overflowFree)
        #expect(summary.testAccuracy > 0.8, "test accuracy \(summary.testAccuracy)")
    }

    @Test("the same seed gives bitwise-identical losses and parameters twice")
    func deterministic() throws {
        func run() throws -> ([UInt32], [Float]) {
            var c = quickConfig(.cnn, out: temporaryFolder("determinism"))
            c.maxSteps = 6
            c.trainSubset = 192
            let trainer = try Trainer(config: c, communicator: SingleProcessCommunicator(),
                                      data: (TestData.train, TestData.test), quiet: true)
            var losses: [UInt32] = []
            trainer.stepObserver = { _, _, _, loss in losses.append(loss.bitPattern) }
            _ = try trainer.run()
            return (losses, trainer.model.parameters.valuesArray())
        }
        let (a, pa) = try run(), (b, pb) = try run()
        #expect(!a.isEmpty && a == b)
        #expect(!pa.isEmpty && pa.map(\.bitPattern) == pb.map(\.bitPattern))
    }

    @Test("run folder: config.json, metrics.jsonl with step and epoch records, summary.json")
    func runFolder() throws {
        let out = temporaryFolder("folder")
        var config = quickConfig(out: out)
        config.trainSubset = 320
        let trainer = try Trainer(config: config, communicator: SingleProcessCommunicator(),
                                  data: (TestData.train, TestData.test), quiet: true)
        _ = try trainer.run()
        let saved = try TrainConfig.load(path: out + "/config.json")
        #expect(saved == config)
        let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(records.count == lines.count)
        #expect(records.contains { $0["type"] as? String == "step" && $0["images_per_second"] != nil && $0["lr"] != nil })
        #expect(records.contains { $0["type"] as? String == "conversion" })
        let epochs = records.filter { $0["type"] as? String == "epoch" }
        #expect(epochs.count == 2)  // one float, one quantized
        let quantized = try #require(epochs.last)
        #expect(quantized["overflow_free"] as? Bool == true)
        let layers = try #require(quantized["layers"] as? [[String: Any]])
        #expect(layers.count == 3 && layers.contains { $0["max_l1_usage"] is Double && $0["sparsity"] is Double })
        #expect(FileManager.default.fileExists(atPath: out + "/summary.json"))
    }

    @Test("bad configuration values are rejected before any work")
    func validation() throws {
        func rejects(_ change: (inout TrainConfig) -> Void, _ fragment: String) {
            var c = quickConfig(out: temporaryFolder("bad"))
            change(&c)
            do {
                _ = try Trainer(config: c, communicator: SingleProcessCommunicator(), data: (TestData.train, TestData.test), quiet: true)
                Issue.record("accepted a bad config (\(fragment))")
            } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
        rejects({ $0.batchSize = 5000 }, "larger than the training set")
        rejects({ $0.lr = 0 }, "--lr must be positive")
        rejects({ $0.distill = 1.5 }, "--distill must be between 0 and 1")
        rejects({ $0.distill = 0.5; $0.floatEpochs = 0 }, "--distill needs a float teacher")
        rejects({ $0.distill = 0.5; $0.distillTemperature = 0 }, "--distill-temperature must be positive")
        rejects({ $0.epochs = 0 }, "--epochs must be positive")
        rejects({ $0.weightBits = 17 }, "--weight-bits 17")
        rejects({ $0.accumulatorBits = 40 }, "--accumulator-bits 40")
        rejects({ $0.accumulatorBits = 8; $0.firstLast = .constrained }, "too narrow")
        rejects({ $0.layerAccumulatorBits = ["conv9": 16] }, "does not have")
        rejects({ $0.allreduceBucketMB = -1 }, "--allreduce-bucket-mb must be between 0")
    }

    @Test("missing and malformed data files say which file and what is wrong")
    func dataErrors() throws {
        let folder = temporaryFolder("data")
        #expect(throws: A2QError.self) { _ = try DataSource.folder(folder + "/nope").load() }
        do { _ = try DataSource.folder(folder).load(); Issue.record("empty folder accepted") } catch {
            #expect("\(error)".contains("train-images-idx3-ubyte"))
        }
        // A truncated image file: header says 10 images of 28×28, holds 100 bytes.
        var header: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28]
        header += [UInt8](repeating: 7, count: 100)
        #expect(FileManager.default.createFile(atPath: folder + "/train-images-idx3-ubyte", contents: Data(header)))
        do { _ = try IDX.read(folder + "/train-images-idx3-ubyte"); Issue.record("truncated file accepted") } catch {
            #expect("\(error)".contains("holds 100 data bytes") && "\(error)".contains("train-images-idx3-ubyte"))
        }
        #expect(FileManager.default.createFile(atPath: folder + "/bad-magic", contents: Data([1, 2, 3, 4, 5])))
        #expect(throws: A2QError.self) { _ = try IDX.read(folder + "/bad-magic") }
    }

    @Test("conversion with ep-scaled keeps the cnn (no BatchNorm) trainable where Brevitas-style EP-init stalls")
    func conversionKeepsScale() throws {
        var accuracies: [WeightInitMethod: Double] = [:]
        for method in [WeightInitMethod.ep, .epScaled] {
            var config = quickConfig(.cnn, out: temporaryFolder("convert"))
            config.init_ = method
            config.floatEpochs = 1
            config.maxSteps = 1
            let trainer = try Trainer(config: config, communicator: SingleProcessCommunicator(),
                                      data: (TestData.train, TestData.test), quiet: true)
            let summary = try trainer.run()
            accuracies[method] = summary.conversionTestMetric
        }
        #expect((accuracies[.epScaled] ?? 0) > 0.5, "\(accuracies)")
        #expect((accuracies[.epScaled] ?? 0) > (accuracies[.ep] ?? 1) + 0.2, "\(accuracies)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
