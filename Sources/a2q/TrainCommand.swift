import A2QCore
import A2QDistributed
import A2QQuant
import A2QTrain
import ArgumentParser
import Foundation

extension ModelName: ExpressibleByArgument {
    public init?(argument: String) { self.init(validating: argument) }
    public static var allValueStrings: [String] { builtIn.map(\.rawValue) + ["PATH.json", "PATH.onnx"] }
}

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
            option by its name (e.g. {"accumulator-bits": 14}); flags override it.

            TRAINING OPTIONS:
            \(TrainOption.helpText(TrainConfig.options))
            """)

    @Option(help: "JSON config file whose keys are the option names below.") var config: String?
    /// The training options (`TrainConfig.options`, listed in the discussion): parsed by
    /// `TrainConfig.apply(arguments:)`, so that each is declared once.
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Training options, --NAME VALUE (listed below).", valueName: "options"))
    var settings: [String] = []
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
        try c.apply(arguments: settings)
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
                printLine(String(format: "done: test %@ %@, %.0f images/s, sparsity %.1f%%%@ → %@",
                                 summary.metric, trainer.task.format(metric: summary.testMetric), summary.imagesPerSecond, 100 * summary.sparsity,
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
