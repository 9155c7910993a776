import A2QCore
import A2QData
import A2QExport
import A2QInteger
import A2QTrain
import ArgumentParser
import Foundation

extension OverflowMode: ExpressibleByArgument {}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    printLine(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// `a2q export`: a standalone integer model from a checkpoint.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the integer model of a checkpoint (topology, integer weights, scales, accumulator metadata).",
        discussion: """
            Formats: hdf5 (default; what a2q eval/verify/inspect read), qonnx (ONNX with QONNX Quant nodes, \
            for FINN and qonnx's executor) and onnx (QuantizeLinear/DequantizeLinear, runs in onnxruntime). The \
            ONNX files take raw pixel values 0…255 as float32 [batch, C, H, W] in 'image' and give class scores \
            in 'scores'; every accumulator tensor is annotated INT{P} and metadata_props carry each layer's \
            M, N, P, acc_min, acc_max, p_min and verify verdict. A checkpoint of a float run has no integer \
            model: export refuses it (evaluate it with a2q eval instead).
            """)

    @Argument(help: "A checkpoint written by `a2q train`.") var checkpoint: String
    @Option(name: .customLong("out"), help: "Output file.") var output: String
    @Option(help: ArgumentHelp("hdf5, qonnx or onnx.", valueName: "format")) var format = "hdf5"
    @Flag(help: "Replace an existing output file.") var overwrite = false

    func run() throws {
        let formats = ["hdf5"] + ONNXExport.Dialect.allCases.map(\.rawValue)
        guard formats.contains(format) else {
            throw A2QError("unknown --format '\(format)'", remedy: "use one of: \(formats.joined(separator: ", "))")
        }
        if FileManager.default.fileExists(atPath: output) && !overwrite {
            throw A2QError("\(output) already exists", remedy: "choose another --out, or pass --overwrite")
        }
        let folder = (output as NSString).deletingLastPathComponent
        guard FileManager.default.isWritableFile(atPath: folder.isEmpty ? "." : folder) else {
            throw A2QError("cannot write \(output): the folder \(folder.isEmpty ? "." : folder) does not exist or is not writable",
                           remedy: "create the folder or choose another --out")
        }
        let (model, header) = try ModelFiles.loadCheckpoint(checkpoint)
        guard header.config.isQuantized && header.state.phase != .float else {
            throw A2QError("\(checkpoint) holds a float model (\(header.config.isQuantized ? "the float phase of the run" : "a float run")): it has no integer model to export",
                           remedy: "export a checkpoint of an a2q, a2q+ or qat run; evaluate a float model with `a2q eval`")
        }
        let integer = try IntegerModel(from: model)
        if let dialect = ONNXExport.Dialect(rawValue: format) {
            try ONNXExport.write(integer, dialect: dialect, to: output, source: checkpoint)
        } else {
            try ExportFile.write(integer, to: output, source: checkpoint, config: header.config.json(pretty: false))
        }
        let verdicts = LayerVerdict.verify(integer)
        printLine("exported \(integer.model) (\(integer.layers.count) integer layers, \(format)) from \(checkpoint) → \(output)")
        printLine(LayerVerdict.table(verdicts))
        if format == ONNXExport.Dialect.onnx.rawValue {
            let inexact = ONNXExport.Exactness.of(integer, verdicts: verdicts).filter { !$0.float32Exact }
            if !inexact.isEmpty {
                printLine("warning: \(inexact.map { "\($0.name) (partial sums up to \($0.partialSumBound))" }.joined(separator: ", ")) can exceed 2^24 (2^21 for a window pool's sum): "
                          + "float32 may round those sums, so a runtime's scores can differ from the engine's in the last bits (a2q.float32_exact = 0)")
            }
        }
    }
}

/// `a2q inspect`: what a checkpoint or export holds.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show the layers (M/N/P, L1 usage, sparsity, p_min, overflow verdict) of a checkpoint or export.")

    @Argument(help: "A checkpoint or an export.") var file: String
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        var file: String
        var kind: String
        var model: String
        var step: Int?
        var phase: String?
        var config: TrainConfig?
        var imported: ImportRecord?
        var layers: [LayerVerdict]
        /// The integer weights' compressed sizes per layer and in total (`WeightCompressibility`).
        var compressibility: Compressibility?
    }

    struct Compressibility: Encodable {
        var layers: [WeightCompressibility]
        var total: WeightCompressibility?
    }

    func run() throws {
        var report: Report
        let integerModel: IntegerModel?
        if ExportFile.isExport(file) {
            let model = try ExportFile.read(file, operations: OpRegistry.integerOperations)
            integerModel = model
            report = Report(file: file, kind: "export", model: model.model, layers: LayerVerdict.verify(model))
        } else {
            let header = try CheckpointFile.header(file)
            integerModel = header.state.phase == .float ? nil : try ModelFiles.integerModel(file)
            report = Report(file: file, kind: "checkpoint", model: header.config.model.rawValue, step: header.state.globalStep,
                            phase: header.state.phase.rawValue, config: header.config, imported: try ImportRecord.read(file),
                            layers: integerModel.map { LayerVerdict.verify($0) } ?? [])
        }
        if let integerModel {
            let layers = try integerModel.layers.map(WeightCompressibility.init)
            report.compressibility = Compressibility(layers: layers, total: WeightCompressibility.total(layers))
        }
        if json { try printJSON(report); return }
        printLine("\(report.file): \(report.kind) of \(report.model)"
                  + (report.step.map { ", global step \($0) (\(report.phase ?? "") phase)" } ?? ""))
        if let config = report.config { printLine("configuration: \(config.json(pretty: false))") }
        if let imported = report.imported { printLine(imported.summary) }
        printLine(report.layers.isEmpty ? "(float model: no integer layers)" : LayerVerdict.table(report.layers))
        if let compressibility = report.compressibility, !compressibility.layers.isEmpty {
            printLine("compressibility of the integer weights (zlib level 9 of int8/int16, zero-order entropy):")
            printLine(WeightCompressibility.table(compressibility.layers))
        }
    }
}

/// `a2q eval`: accuracy of a checkpoint (fake-quantized float graph) or of the integer engine.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Test accuracy: the fake-quantized float graph of a checkpoint, or --integer with P-bit accumulators.")

    @Argument(help: "A checkpoint (or, with --integer, an export).") var file: String
    @Flag(help: "Run the integer engine with simulated P-bit accumulators.") var integer = false
    @Option(help: "What-if P for the hidden weight layers (every conv and linear layer but the first and the last, projection shortcuts included: the layers A2Q/A2Q+ constrain by default; not the pool); --integer only.")
    var accumulatorBits: Int?
    @Option(help: ArgumentHelp("What-if P for one layer or pool, NAME=P (repeatable; wins over --accumulator-bits; --integer only).", valueName: "name=P"))
    var layerAccumulatorBits: [String] = []
    @Option(help: "Overflow behaviour: wrap, saturate or wide (--integer only).") var overflow: OverflowMode = .wrap
    @Option(help: ArgumentHelp("Integer kernel: auto (fastest exact 32-bit kernel of this CPU), vnni, avx2, scalar, or reference (Float64 dgemm) (--integer only).",
                               valueName: "kernel")) var kernel = "auto"
    @Option(help: ArgumentHelp("Layers that accumulate in 16-bit lanes: auto (layers proven to fit 16 bits, on CPUs without AVX-512 VNNI, where that is faster), none, proven (every layer whose worst case fits 16 bits), or NAME,NAME (each must be proven to fit; --integer only).",
                               valueName: "layers")) var int16Layers = "auto"
    @Option(help: "MNIST-format data folder (only the t10k test files are read) or 'synthetic' (default: the checkpoint's, else Fashion-MNIST).") var data: String?
    @Option(help: "Evaluate only the first N test images.") var limit: Int?
    @Option(help: ArgumentHelp("Write every test image's predicted class, label and class scores to FILE (HDF5; layout in docs/CHECKPOINT.md, \"Evaluation outputs\").",
                               valueName: "file")) var outputs: String?
    @Flag(help: "With --outputs and --integer: also every accumulator's register values per image (int64, every layer and pool; the reference path runs; about 8 bytes per value, so use --limit on large models).")
    var outputsAccumulators = false
    @Flag(help: "Print JSON.") var json = false

    struct Result: Encodable {
        var file: String
        var engine: String
        var accuracy: Double
        var images: Int
        var imagesPerSecond: Double
        var overflow: String?
        var layers: [LayerOverflow]?
        var kernels: [String: String]?
        enum CodingKeys: String, CodingKey {
            case file, engine, accuracy, images, imagesPerSecond = "images_per_second", overflow, layers, kernels
        }
    }

    func run() throws {
        if let limit, limit <= 0 { throw A2QError("--limit must be positive") }
        if outputsAccumulators && (!integer || outputs == nil) {
            throw A2QError("--outputs-accumulators records the integer engine's accumulators into the --outputs file",
                           remedy: "add --integer and --outputs FILE")
        }
        if !integer && (kernel != "auto" || int16Layers != "auto") {
            throw A2QError("--kernel and --int16-layers apply to the integer engine", remedy: "add --integer")
        }
        let overrides = try AccumulatorOverride(hidden: accumulatorBits, layerArguments: layerAccumulatorBits)
        if !integer && !overrides.isEmpty {
            throw A2QError("--accumulator-bits and --layer-accumulator-bits apply to the integer engine", remedy: "add --integer")
        }
        if let outputs {  // before the evaluation, not after it
            try FileSystem.ensureWritableFolder((outputs as NSString).deletingLastPathComponent.isEmpty ? "." : (outputs as NSString).deletingLastPathComponent)
        }
        let isExport = ExportFile.isExport(file)
        let source = try data ?? (isExport ? DataSource.defaultFolder : CheckpointFile.header(file).config.data)
        let restoration = isExport ? try ExportFile.read(file, operations: OpRegistry.integerOperations).classes == 0
            : try CheckpointFile.header(file).description.task == .restoration
        if restoration {
            try evaluateRestoration(overrides: overrides, folder: source == DataSource.defaultFolder ? RestorationData.defaultFolder : source)
            return
        }
        var result: Result
        if integer {
            let kernels = IntegerKernelChoice(accumulation: try IntegerKernelChoice.accumulation(kernel),
                                              int16: IntegerKernelChoice.int16Layers(int16Layers))
            let integerModel = try ModelFiles.integerModel(file)
            let bits = try overrides.bits(for: integerModel)
            let full = try ModelFiles.testSet(source, for: integerModel.inputShape)
            let test = limit.map { full.prefix($0) } ?? full
            let engine = try IntegerEngine(model: integerModel, mode: overflow, accumulatorBits: bits, kernels: kernels,
                                           recordsAccumulators: outputsAccumulators)
            let start = monotonicSeconds()  // the engine's throughput, without loading and packing
            let accuracy: Double
            if let outputs {
                let collected = engine.outputs(test)
                accuracy = collected.accuracy
                try collected.write(to: outputs, source: file)
            } else {
                accuracy = engine.evaluate(test).accuracy
            }
            result = Result(file: file, engine: "integer", accuracy: accuracy, images: test.count,
                            imagesPerSecond: Double(test.count) / (monotonicSeconds() - start), overflow: overflow.rawValue,
                            layers: engine.overflows,
                            kernels: Dictionary(engine.layerKernels.map { ($0.layer, $0.kernel) }, uniquingKeysWith: { a, _ in a }))
            if !json {
                printLine("kernels: " + engine.layerKernels.map { "\($0.layer) \($0.kernel)" }.joined(separator: ", ")
                          + (engine.referenceReason.map { " (reference path: \($0))" } ?? ""))
            }
        } else {
            guard !isExport else {
                throw A2QError("\(file) is an export (integers only)", remedy: "evaluate it with --integer, or pass the checkpoint")
            }
            let start = monotonicSeconds()
            let (model, _) = try ModelFiles.loadCheckpoint(file)
            let full = try ModelFiles.testSet(source, for: model.inputShape)
            let test = limit.map { full.prefix($0) } ?? full
            let collected = FakeQuantEvaluation.outputs(model, test)
            if let outputs { try collected.write(to: outputs, source: file) }
            let accuracy = collected.accuracy
            result = Result(file: file, engine: "fake-quantized float", accuracy: accuracy, images: test.count,
                            imagesPerSecond: Double(test.count) / (monotonicSeconds() - start))
        }
        if json { try printJSON(result); return }
        printLine(String(format: "%@: %@ accuracy %.2f%% on %d test images (%.0f images/s)", file, result.engine,
                         100 * result.accuracy, result.images, result.imagesPerSecond))
        for layer in result.layers ?? [] {
            let safety = layer.provenSafe ? "proven safe" : "not proven safe"
            if let tile = layer.accumulatorTile, let outer = layer.outerAccumulatorBits, let sums = layer.tileSums,
               let outerFinals = layer.outerFinalOverflows, let outerPartials = layer.outerPartialOverflows {
                printLine("  \(layer.name): tiles of \(tile) in P=\(layer.accumulatorBits), outer \(outer) bits, \(safety); "
                          + "of \(sums) tile sums \(layer.finalOverflows) overflow at the end, \(layer.partialOverflows) have an out-of-range partial sum; "
                          + "of \(layer.dotProducts) dot products \(outerFinals) overflow the outer register at the end, \(outerPartials) on the way (\(overflow.rawValue))")
            } else {
                printLine("  \(layer.name): P=\(layer.accumulatorBits) \(safety), "
                          + "of \(layer.dotProducts) dot products \(layer.finalOverflows) overflow at the end, \(layer.partialOverflows) have an out-of-range partial sum (\(overflow.rawValue))")
            }
        }
    }
}

extension EvalCommand {
    /// A restoration model: PSNR on the test images' centre crops (as large as the smallest
    /// test image allows), against the bicubic baseline.
    func evaluateRestoration(overrides: AccumulatorOverride, folder: String) throws {
        guard outputs == nil else {
            throw A2QError("--outputs writes class scores; a restoration model's output is an image", remedy: "write output images with `a2q upscale`")
        }
        let integerModel = integer ? try ModelFiles.integerModel(file) : nil
        let factor: Int
        if let integerModel {
            factor = integerModel.outputShape[1] / integerModel.inputShape[1]
        } else {
            let header = try CheckpointFile.header(file)
            factor = try ModelBuilder.upscaleFactor(of: header.description, config: header.config)
        }
        let task = try RestorationTask.evaluation(folder: folder, factor: factor, limit: limit)
        let start = monotonicSeconds()
        var result: [String: Any] = ["file": file, "images": task.testCount, "crop": task.test.cropSize, "upscale_factor": factor,
                                     "bicubic_psnr": task.bicubicPSNR()]
        if let integerModel {
            let (psnr, engine) = try RestorationEvaluation.psnr(integerModel, task, mode: overflow, accumulatorBits: try overrides.bits(for: integerModel))
            result["engine"] = "integer"
            result["psnr"] = psnr
            result["overflow"] = overflow.rawValue
            result["layers"] = engine.overflows.map { ["name": $0.name, "accumulator_bits": $0.accumulatorBits, "dot_products": $0.dotProducts,
                                                       "final_overflows": $0.finalOverflows, "partial_overflows": $0.partialOverflows,
                                                       "proven_safe": $0.provenSafe] as [String: Any] }
        } else {
            let (model, _) = try ModelFiles.loadCheckpoint(file)
            result["engine"] = "fake-quantized float"
            result["psnr"] = RestorationEvaluation.psnr(model, task)
        }
        result["seconds"] = monotonicSeconds() - start
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            printLine(String(decoding: data, as: UTF8.self))
            return
        }
        printLine(String(format: "%@: %@ PSNR %.2f dB on %d test crops of %d×%d (×%d; bicubic %.2f dB)", file,
                         result["engine"] as? String ?? "", result["psnr"] as? Double ?? 0, task.testCount, task.test.cropSize,
                         task.test.cropSize, factor, result["bicubic_psnr"] as? Double ?? 0))
        for layer in (result["layers"] as? [[String: Any]]) ?? [] {
            printLine("  \(layer["name"] ?? ""): P=\(layer["accumulator_bits"] ?? ""), \(layer["final_overflows"] ?? 0) of \(layer["dot_products"] ?? 0) overflow at the end, \(layer["partial_overflows"] ?? 0) partially (\(overflow.rawValue))")
        }
    }
}

/// `a2q verify`: a proof that no layer can overflow its accumulator.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Prove, per layer and channel, that no input can overflow the P-bit accumulator (exit 0 only if so).")

    @Argument(help: "An export or a checkpoint.") var file: String
    @Option(help: "Also run the test set through the integer engine (wrap) and report overflows seen.") var data: String?
    @Option(help: "Check the hidden weight layers (every conv and linear layer but the first and the last, projection shortcuts included; not the pool) against this P instead of their own.")
    var accumulatorBits: Int?
    @Option(help: ArgumentHelp("Check one layer or pool against this P, NAME=P (repeatable; wins over --accumulator-bits).", valueName: "name=P"))
    var layerAccumulatorBits: [String] = []
    @Flag(help: "Print JSON.") var json = false

    struct Result: Encodable {
        var file: String
        var overflowFree: Bool
        var layers: [LayerVerdict]
        enum CodingKeys: String, CodingKey { case file, overflowFree = "overflow_free", layers }
    }

    func run() throws {
        let model = try ModelFiles.integerModel(file)
        let bits = try AccumulatorOverride(hidden: accumulatorBits, layerArguments: layerAccumulatorBits).bits(for: model)
        var verdicts = LayerVerdict.verify(model, accumulatorBits: bits)
        if let data {
            let engine = try IntegerEngine(model: model, mode: .wrap, accumulatorBits: bits)
            _ = engine.evaluate(try ModelFiles.testSet(data, for: model.inputShape))
            for i in verdicts.indices { verdicts[i].observed = engine.overflows.first { $0.name == verdicts[i].name } }
        }
        let safe = verdicts.allSatisfy(\.overflowFree)
        if json {
            try printJSON(Result(file: file, overflowFree: safe, layers: verdicts))
        } else {
            printLine(LayerVerdict.table(verdicts))
            printLine(safe ? "verified: no input can overflow any layer's accumulator"
                           : "NOT verified: \(verdicts.filter { !$0.overflowFree }.map(\.name).joined(separator: ", ")) can overflow")
        }
        if !safe { throw ExitCode(2) }
    }
}

/// `a2q report`: a sweep folder into results.csv, results.json and the trade-off plot.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Collect a sweep folder (Launch/sweep.sh, Launch/espcn-table.sh) into CSV, JSON, Markdown and an SVG plot.")

    @Argument(help: "The sweep folder (one run per subfolder).") var folder: String
    @Option(help: "Write CSV here.") var csv: String?
    @Option(help: "Write JSON here.") var json: String?
    @Option(help: "Write the SVG plot here.") var svg: String?
    @Option(help: "Write the Markdown table (the README's form) here.") var markdown: String?

    func run() throws {
        let rows = try SweepReport.collect(folder)
        guard !rows.isEmpty else { throw A2QError("\(folder) holds no finished runs (summary.json)") }
        if let csv { try SweepReport.csv(rows).write(toFile: csv, atomically: true, encoding: .utf8) }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            try encoder.encode(rows).write(to: URL(fileURLWithPath: json))
        }
        if let svg { try SweepReport.svg(rows).write(toFile: svg, atomically: true, encoding: .utf8) }
        if let markdown { try SweepReport.markdown(rows).write(toFile: markdown, atomically: true, encoding: .utf8) }
        printLine(SweepReport.csv(rows))
    }
}
