import A2QCore
import A2QTrain
import ArgumentParser

/// `a2q model`: a built-in architecture as a model file, or a model file, an ONNX model or a
/// checkpoint's stored tree checked and summarised.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Print a built-in model as a model file (a start for your own), or check a model file, an ONNX model or a checkpoint's model and list its layers.")

    @Argument(help: "A built-in (mlp, cnn, cnn-bn, resnet8, resnet14, resnet20, espcn, espcn-x3), a model file PATH.json, a float ONNX model PATH.onnx, or a checkpoint PATH.h5 (its stored tree).")
    var model: String
    @Option(help: "Image shape to check the model against, C,H,W (default: the ONNX model's or the checkpoint's; else 1,28,28, or 3,32,32 for a restoration model).")
    var input: String?
    @Flag(help: "List the parameters (name and shape) instead of printing the file.") var parameters = false

    func run() throws {
        var config = TrainConfig()
        let description: ModelDescription
        var stored: [Int]?
        if model.hasSuffix(".h5") {
            let header = try CheckpointFile.header(model)
            description = header.description
            stored = header.inputShape
            config.model = header.config.model
        } else {
            guard let name = ModelName(validating: model) else {
                throw A2QError("unknown model '\(model)'",
                               remedy: "pass a built-in (\(ModelName.builtIn.map(\.rawValue).joined(separator: ", "))), PATH.json, PATH.onnx or PATH.h5")
            }
            config.model = name
            if name.isONNX {
                let imported = try ONNXImport(path: model, weights: false)
                description = imported.description
                stored = imported.inputShape
            } else {
                description = try ModelBuilder.description(of: name)
            }
        }
        let fallback = description.task == .restoration ? [3, 32, 32] : ModelBuilder.defaultInputShape
        let shape = input.map { $0.split(separator: ",").compactMap { Int($0) } } ?? stored ?? fallback
        guard shape.count == 3 else { throw A2QError("--input \(input ?? "") is not C,H,W", remedy: "for example --input 3,32,32") }
        let built = try ModelBuilder.build(config, quantized: true, classes: description.declaredClasses ?? 10, inputShape: shape,
                                           description: description)
        guard parameters else { printLine(description.json()); return }
        for view in built.parameters.views { printLine("\(view.name) \(describe(view.shape))") }
        printLine("\(built.parameters.count) parameters, \(built.quantizedLayers.count) weight layers, "
                  + "\(built.constrainedLayers.count) constrained by default")
    }
}
