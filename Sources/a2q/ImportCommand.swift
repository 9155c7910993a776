import A2QCore
import A2QData
import A2QTrain
import ArgumentParser
import Foundation

/// `a2q import`: a float ONNX model (PyTorch's export) as an a2q float checkpoint.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a float ONNX model (torch.onnx.export) as an a2q float checkpoint, ready for eval and train --init-from.",
        discussion: """
            Reads the graph and its initializers (external data next to the file too), matches it to a2q's \
            layers (Conv, Gemm/MatMul, BatchNormalization, Relu, MaxPool, GlobalAveragePool/ReduceMean, Flatten/Reshape, \
            residual Adds), adds the activation quantizers a2q's quantized builds need, folds the input normalisation \
            into the first layer, and writes an ordinary float checkpoint. Anything unsupported is refused, naming \
            the node, before anything is written. Then: a2q eval OUT; a2q train --model MODEL.onnx --init-from OUT \
            --quantizer a2q+ --accumulator-bits 16.
            """)

    @Argument(help: "The .onnx file (opset 13–20, float32, fixed image size).") var model: String
    @Option(help: "The checkpoint to write (not overwritten unless --overwrite).") var out: String
    @Option(help: "The model's input before normalisation is this factor times a2q's image p = pixel/255 (1: inputs in [0, 1]; 255: raw pixel values).")
    var inputScale: Double?
    @Option(help: ArgumentHelp("Per-channel mean the model's data pipeline subtracted (transforms.Normalize outside the model), comma-separated.", valueName: "m1,m2,..."))
    var inputMean: String?
    @Option(help: ArgumentHelp("Per-channel standard deviation the data pipeline divided by, comma-separated.", valueName: "s1,s2,..."))
    var inputStd: String?
    @Option(help: "Data folder recorded in the checkpoint (what eval and train use by default).") var data = DataSource.defaultFolder
    @Flag(help: "Replace an existing output file.") var overwrite = false
    @Flag(help: "Do not list the layers.") var quiet = false

    func run() throws {
        let start = monotonicSeconds()
        guard overwrite || !FileManager.default.fileExists(atPath: out) else {
            throw A2QError("\(out) already exists", remedy: "choose another --out, or pass --overwrite")
        }
        let folder = (out as NSString).deletingLastPathComponent
        try FileSystem.ensureWritableFolder(folder.isEmpty ? "." : folder)
        let conventions = try InputConventions.parse(scale: inputScale, mean: inputMean, std: inputStd)
        let imported = try ONNXImport(path: model, conventions: conventions)
        let written = try imported.writeCheckpoint(to: out, data: data)
        let seconds = monotonicSeconds() - start
        printLine("\(model): ONNX IR \(imported.irVersion), opset \(imported.opset), \(imported.producer.isEmpty ? "unknown producer" : imported.producer); "
                  + "input \(describe(imported.inputShape)), \(imported.classes) classes")
        if !quiet {
            let width = min(imported.mapping.map(\.name.count).max() ?? 0, 40)
            for row in imported.mapping {
                printLine("  \(row.name.padding(toLength: max(width, row.name.count), withPad: " ", startingAt: 0))  \(row.kind)  ← \(row.origin)")
            }
        }
        let added = imported.mapping.filter { $0.origin.hasPrefix("added") }.count
        printLine("\(imported.mapping.count) a2q layers; \(added) activation quantizers added where a2q's quantized builds need them (skipped in float builds)")
        if let fold = imported.fold {
            let normalisation = imported.normalizationNodes.isEmpty ? "" : " the graph's normalisation (\(imported.normalizationNodes.joined(separator: ", ")))"
            let given = imported.conventions.isIdentity ? "" : " the input conventions (\(imported.conventions.summary))"
            printLine("input: folded\(normalisation)\(normalisation.isEmpty || given.isEmpty ? "" : " and")\(given) into \(fold.layer): "
                      + "x = a·p + b with a = \(Self.list(fold.scale)), b = \(Self.list(fold.shift)), p = pixel/255 (a2q's input)")
            if fold.borderChange > 0 {
                printLine(String(format: "note: exact inside the image; at %@'s zero padding PyTorch pads x with 0 and a2q pads p with 0 (x = b there), so outputs whose window reaches the padding change by up to %.4g", fold.layer, fold.borderChange))
            }
        } else {
            printLine("input: the model takes p = pixel/255 in [0, 1] as it is (no normalisation in the graph; pass --input-mean/--input-std if the data pipeline normalised)")
        }
        printLine(String(format: "wrote %@: float checkpoint, %d parameters (%d tensors) in %.2f s", out, written.parameters, written.tensors, seconds))
        printLine("next: a2q eval \(out) [--data DIR]; a2q train --model \(model) --init-from \(out) --quantizer a2q+ --accumulator-bits 16")
    }

    static func list(_ values: [Double]) -> String {
        let text = values.map { String(format: "%.6g", $0) }
        return text.count == 1 ? text[0] : "[" + text.joined(separator: ", ") + "]"
    }
}
