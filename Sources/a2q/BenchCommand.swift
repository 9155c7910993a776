import A2QCore
import A2QData
import A2QDistributed
import A2QInteger
import A2QNN
import A2QQuant
import A2QTrain
import ArgumentParser
import Foundation

/// `a2q bench`: throughput figures (build with `-c release`).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput (run a release build: swift build -c release).",
        subcommands: [AllBench.self, LayersBench.self, TrainBench.self, IntegerBench.self, AllReduceBench.self],
        defaultSubcommand: AllBench.self)

    struct LayersBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "layers",
            abstract: "Conv2d and quantizer cost against plain sgemm, one BLAS thread.")

        @Option(help: "Timed iterations per benchmark.")
        var repeats = 20

        @Option(help: "OpenBLAS threads.")
        var threads = 1

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func validate() throws {
            guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
        }

        func run() throws {
            BLAS.setThreads(threads)
            let rows = try LayerBenchmark.run(repeats: repeats)
            if json {
                let data = try JSONEncoder().encode(rows)
                printLine(String(decoding: data, as: UTF8.self))
            } else {
                printLine("a2q bench layers — \(BLAS.kernelSummary), \(BLAS.threads) thread(s); CPU \(CPU.description)")
                printLine(LayerBenchmark.format(rows))
            }
        }
    }
}


/// `a2q bench train`: training throughput with the per-phase breakdown (works under mpirun).
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training images/s through the real trainer, with a per-phase breakdown (run under mpirun for R > 1).")

    @Option(help: "Models to run (mlp, cnn, cnn-bn, resnet8/14/20; espcn and espcn-x3 train on the photo set's crops).") var model: [ModelName] = [.cnn]
    @Option(help: "Quantizers to run.") var quantizer: [WeightQuantizerKind] = [.a2qPlus]
    @Option(help: "Timed training steps per configuration.") var steps = 200
    @Option(help: "Batch size per rank.") var batch = 64
    @Option(help: "Data folder or 'synthetic'.") var data = DataSource.defaultFolder
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let communicator: any Communicator = MPICommunicator.launchedByMPIRun ? try MPICommunicator() : SingleProcessCommunicator()
        let sets = try DataSource(argument: data).load()
        var results: [TrainingBenchmark.Result] = []
        for m in model {
            for q in quantizer {
                results.append(try TrainingBenchmark.train(model: m, quantizer: q, steps: steps, batchPerRank: batch,
                                                           communicator: communicator, data: sets))
            }
        }
        if communicator.isRoot {
            if json { try printJSON(results) } else {
                printLine("a2q bench train — \(BLAS.kernelSummary); convolutions \(Conv2d.defaultBackend.rawValue), \(BLAS.threads) thread(s); CPU \(CPU.description)")
                printLine(BenchTables.training(results))
                for result in results {
                    guard let pixels = result.pixelsPerSecond, let perCrop = result.outputPixelsPerImage else { continue }
                    printLine(String(format: "%@ %@: %.0f crops/s × %d output pixels = %.2f Mpixels/s (high-resolution, per channel)",
                                     result.model, result.quantizer, result.imagesPerSecond, perCrop, pixels / 1e6))
                }
                for result in results where !result.convolutions.isEmpty {
                    printLine("convolutions of \(result.model): \(result.convolutions.joined(separator: "; "))")
                }
            }
        }
        (communicator as? MPICommunicator)?.finalize()
    }
}

/// `a2q bench integer`: the integer engine per kernel, the overflow simulation, and the 16-bit
/// kernel against the 32-bit ones.
struct IntegerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integer",
        abstract: "Integer engine images/s per kernel (cnn, one core) with a per-layer breakdown, and int16 vs int32 kernels on conv2 and fc1.")

    @Option(help: "Test images per pass.") var images = 10_000
    @Option(help: "Passes per setting (the best is reported).") var repeats = 3
    @Option(help: "Data folder or 'synthetic'.") var data = DataSource.defaultFolder
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable { var engines: [IntegerBenchmark.EngineRow]; var kernels: [IntegerBenchmark.KernelRow] }

    func validate() throws {
        guard images > 0, repeats > 0 else { throw ValidationError("--images and --repeats must be positive") }
    }

    func run() throws {
        BLAS.setThreads(1)
        let test = try DataSource(argument: data).load().1.prefix(images)
        let engines = try IntegerBenchmark.engines(test: test, repeats: repeats)
        let kernels = IntegerBenchmark.kernels(repeats: 20)
        if json { try printJSON(Report(engines: engines, kernels: kernels)); return }
        printLine("a2q bench integer — cnn, \(test.count) test images, one thread; CPU \(CPU.description)")
        let layers = ["conv1", "conv2", "fc1", "fc2"]
        printLine(BenchTables.column("setting", 46) + BenchTables.column("images/s", 10, right: true)
                  + layers.map { BenchTables.column($0, 9, right: true) }.joined() + "   (ms per 1,000 images)  kernels")
        for row in engines {
            printLine(BenchTables.column(row.setting, 46) + BenchTables.column(String(format: "%.0f", row.imagesPerSecond), 10, right: true)
                      + layers.map { BenchTables.column(row.layerMilliseconds[$0].map { String(format: "%.1f", $0) } ?? "-", 9, right: true) }.joined()
                      + "   " + row.kernels)
        }
        printLine("")
        printLine(BenchTables.column("layer GEMM alone", 40) + BenchTables.column("kernel", 14) + BenchTables.column("ms", 9, right: true)
                  + BenchTables.column("GOPS", 9, right: true))
        for row in kernels {
            printLine(BenchTables.column(row.layer, 40) + BenchTables.column(row.kernel, 14)
                      + BenchTables.column(String(format: "%.3f", row.milliseconds), 9, right: true)
                      + BenchTables.column(String(format: "%.0f", row.gops), 9, right: true))
        }
    }
}

/// `a2q bench` (all): one table of everything a user compares.
struct AllBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all", abstract: "Training images/s (mlp, cnn × float, qat, a2q, a2q+, one rank), quantizer share, checkpoint I/O, integer engine.")

    @Option(help: "Timed training steps per configuration.") var steps = 150
    @Option(help: "Data folder or 'synthetic'.") var data = DataSource.defaultFolder
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        var training: [TrainingBenchmark.Result]
        var checkpointSaveSeconds: Double
        var checkpointLoadSeconds: Double
        var checkpointBytes: Int
        var integerEngineImagesPerSecond: Double
        var layers: [BenchmarkRow]
        enum CodingKeys: String, CodingKey {
            case training, checkpointSaveSeconds = "checkpoint_save_seconds", checkpointLoadSeconds = "checkpoint_load_seconds"
            case checkpointBytes = "checkpoint_bytes", integerEngineImagesPerSecond = "integer_engine_images_per_second", layers
        }
    }

    func run() throws {
        BLAS.setThreads(1)
        let sets = try DataSource(argument: data).load()
        var training: [TrainingBenchmark.Result] = []
        for m in [ModelName.mlp, .cnn] {
            for q in [WeightQuantizerKind.float, .qat, .a2q, .a2qPlus] {
                training.append(try TrainingBenchmark.train(model: m, quantizer: q, steps: steps, batchPerRank: 64,
                                                            communicator: SingleProcessCommunicator(), data: sets))
            }
        }
        let io = try TrainingBenchmark.checkpointIO(model: .cnn)
        let engine = try IntegerBenchmark.engine("cnn", model: IntegerBenchmark.model(.a2qPlus), test: sets.1,
                                                 kernels: IntegerKernelChoice(), repeats: 3).imagesPerSecond
        let layers = try LayerBenchmark.run(repeats: 10)
        let report = Report(training: training, checkpointSaveSeconds: io.save, checkpointLoadSeconds: io.load,
                            checkpointBytes: io.bytes, integerEngineImagesPerSecond: engine, layers: layers)
        if json { try printJSON(report); return }
        printLine("a2q bench — \(BLAS.kernelSummary), 1 thread, batch 64, one rank (R=2: Launch/bench.sh); CPU \(CPU.description)")
        printLine(BenchTables.training(training))
        printLine(String(format: "checkpoint (cnn, A2Q+, with Adam state): save %.1f ms, load %.1f ms, %.2f MB",
                         1e3 * io.save, 1e3 * io.load, Double(io.bytes) / 1e6))
        printLine(String(format: "integer engine (cnn A2Q+ P=16, 10,000 images, %@): %.0f images/s (a2q bench integer: per kernel)", IntegerKernel.bestInt32.description, engine))
        printLine(LayerBenchmark.format(layers))
    }
}

/// Formatting of training benchmark rows.
enum BenchTables {
    static func column(_ text: String, _ width: Int, right: Bool = false) -> String {
        let padding = String(repeating: " ", count: max(width - text.count, 0))
        return right ? padding + text : text + padding
    }

    static func training(_ results: [TrainingBenchmark.Result]) -> String {
        let phases = ["forward", "backward", "allreduce", "optimizer", "data"]
        let width = max(7, (results.map(\.model.count).max() ?? 0) + 2)
        var lines = [column("model", width) + column("quantizer", 10) + column("R", 3) + column("images/s", 10, right: true)
                     + phases.map { column($0, 11, right: true) }.joined() + column("quantizers", 12, right: true)
                     + column("all-reduce", 12, right: true) + column("GFLOP/s", 9, right: true) + "   (ms per step)"]
        for r in results {
            var line = column(r.model, width) + column(r.quantizer, 10) + column("\(r.ranks)", 3)
            line += column(String(format: "%.0f", r.imagesPerSecond), 10, right: true)
            line += phases.map { column(String(format: "%.2f", 1e3 * (r.secondsPerStep[$0] ?? 0)), 11, right: true) }.joined()
            line += column(String(format: "%.2f", 1e3 * r.quantizerSecondsPerStep), 12, right: true)
            line += column(String(format: "%.1f%%", 100 * r.allreduceShare), 12, right: true)
            line += column(String(format: "%.1f", r.gflops), 9, right: true)
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}


/// `a2q bench allreduce`: all-reduce time against message size (run under mpirun).
struct AllReduceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce", abstract: "Sum all-reduce time against message size, median of repeats (run under mpirun, R ≥ 2).")

    enum Orders: String, ExpressibleByArgument, CaseIterable { case fixed, library, both }

    @Option(help: "Message sizes in bytes.") var bytes: [Int] = [4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216]
    @Option(help: "Timed repeats per size (after 3 warm-up calls).") var repeats = 20
    @Option(help: "Sum order: fixed (the trainer's default: rank order, by a2q after an all-to-all), library (MPI_Allreduce's own), or both (interleaved, one row each).")
    var order: Orders = .fixed
    @Flag(help: "Print JSON.") var json = false

    struct Row: Codable {
        var bytes: Int
        var ranks: Int
        var order: String
        var medianSeconds: Double
        var minimumSeconds: Double
        enum CodingKeys: String, CodingKey {
            case bytes, ranks, order, medianSeconds = "median_seconds", minimumSeconds = "minimum_seconds"
        }
    }

    func validate() throws {
        guard repeats > 0, bytes.allSatisfy({ $0 >= 4 }) else { throw ValidationError("--repeats must be positive and sizes at least 4 bytes") }
    }

    func run() throws {
        let communicator = try MPICommunicator()
        let orders: [SumOrder] = order == .both ? [.fixed, .library] : [order == .fixed ? .fixed : .library]
        var rows: [Row] = []
        for size in bytes {
            var buffer = [Float](repeating: 1, count: size / 4)
            // Interleaved repeats: both orders see the same machine load.
            var times = [[Double]](repeating: [], count: orders.count)
            for i in 0..<(repeats + 3) {
                for (o, sumOrder) in orders.enumerated() {
                    communicator.setSumOrder(sumOrder)
                    try communicator.barrier()
                    let start = monotonicSeconds()
                    try buffer.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
                    // Every rank takes the slowest rank's time: the collective ends when all have it.
                    var elapsed = [Int64((monotonicSeconds() - start) * 1e9)]
                    try elapsed.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
                    if i >= 3 { times[o].append(Double(elapsed[0]) / 1e9) }
                }
            }
            for (o, sumOrder) in orders.enumerated() {
                let sorted = times[o].sorted()
                rows.append(Row(bytes: size, ranks: communicator.worldSize, order: sumOrder.rawValue,
                                medianSeconds: sorted[sorted.count / 2], minimumSeconds: sorted[0]))
            }
        }
        communicator.setSumOrder(.fixed)
        if communicator.isRoot {
            if json { try printJSON(rows) } else {
                printLine("a2q bench allreduce — \(communicator.worldSize) ranks on \(Set(communicator.hosts).count) host(s)")
                printLine(["bytes", "order", "median ms", "min ms", "GB/s (median)"].enumerated()
                    .map { String(repeating: " ", count: max(($0.offset == 0 ? 12 : $0.offset == 1 ? 9 : 15) - $0.element.count, 0)) + $0.element }.joined())
                for row in rows {
                    let order = String(repeating: " ", count: max(9 - row.order.count, 0)) + row.order
                    printLine(String(format: "%12d", row.bytes) + order
                        + String(format: "%15.3f %15.3f %15.3f", row.medianSeconds * 1e3, row.minimumSeconds * 1e3,
                                 Double(row.bytes) / row.medianSeconds / 1e9))
                }
            }
        }
        communicator.finalize()
    }
}
