import A2QCore
import A2QTrain
import ArgumentParser

/// `a2q model`: a built-in architecture as a model file, or a model file checked and summarised.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Print a built-in model as a model file (a start for your own), or check a model file and list its layers.")

    @Argument(help: "A built-in (mlp, cnn, cnn-bn, resnet8, resnet14, resnet20, espcn, espcn-x3) or a model file PATH.json.")
    var model: ModelName
    @Option(help: "Image shape to check the model against, C,H,W (default 1,28,28; 3,32,32 for a restoration model).") var input: String?
    @Flag(help: "List the parameters (name and shape) instead of printing the file.") var parameters = false

    func run() throws {
        let description = try ModelBuilder.description(of: model)
        let input = self.input ?? (description.task == .restoration ? "3,32,32" : "1,28,28")
        let shape = input.split(separator: ",").compactMap { Int($0) }
        guard shape.count == 3 else { throw A2QError("--input \(input) is not C,H,W", remedy: "for example --input 3,32,32") }
        var config = TrainConfig()
        config.model = model
        let built = try ModelBuilder.build(config, quantized: true, inputShape: shape, description: description)
        guard parameters else { printLine(description.json()); return }
        for view in built.parameters.views { printLine("\(view.name) \(describe(view.shape))") }
        printLine("\(built.parameters.count) parameters, \(built.quantizedLayers.count) weight layers, "
                  + "\(built.constrainedLayers.count) constrained by default")
    }
}
