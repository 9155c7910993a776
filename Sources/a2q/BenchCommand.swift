import A2QCore
import A2QTrain
import ArgumentParser
import Foundation

/// `a2q bench`: throughput figures (build with `-c release`).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput (run a release build: swift build -c release).",
        subcommands: [LayersBench.self])

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
                printLine("a2q bench layers — OpenBLAS \(BLAS.coreName), \(BLAS.threads) thread(s)")
                printLine(LayerBenchmark.format(rows))
            }
        }
    }
}
