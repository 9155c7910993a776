import A2QCore
import Foundation

/// A float ONNX model (what `torch.onnx.export` writes, either exporter, opsets 13–20) as an a2q
/// model: its tree (`description`, with the activation quantizers a2q's quantized builds need),
/// its trained tensors under a2q's parameter names, and the map from a2q's input to the model's
/// (its leading normalisation and the caller's `InputConventions`, folded into the first layer).
///
/// Everything is checked while the value is made, so an unsupported graph is refused before
/// anything is written. The weights are read only by `writeCheckpoint` (`description(path:)`,
/// what `--model MODEL.onnx` uses, reads the graph's structure alone).
public struct ONNXImport {
    /// The `.onnx` file.
    public let source: String
    /// The tree, as a model file would describe it (named after the file).
    public let description: ModelDescription
    /// `[channels, height, width]` of the model's images.
    public let inputShape: [Int]
    /// The number of class scores.
    public let classes: Int
    /// The graph's default-domain opset.
    public let opset: Int
    /// The file's ONNX IR version.
    public let irVersion: Int
    /// Who wrote the file (`pytorch 2.13.0`).
    public let producer: String
    /// What the caller said the model's input is (see `InputConventions`).
    public let conventions: InputConventions
    /// Each a2q layer: its full name, what it is, and the ONNX node(s) it came from.
    public let mapping: [(name: String, kind: String, origin: String)]
    /// The graph's leading normalisation nodes (empty when it has none).
    public let normalizationNodes: [String]
    /// What was folded into the first layer (nil when nothing: no normalisation, identity conventions).
    public let fold: (layer: String, scale: [Double], shift: [Double], borderChange: Double)?
    /// Parameters and buffers by full name (`layer1_0.conv1.weight`), taken by `writeCheckpoint`.
    let tensors: ImportedTensors

    /// Reads `path` and matches its graph; with `weights` false nothing but the structure is read
    /// (no external data, no fold).
    public init(path: String, conventions: InputConventions = .identity, weights: Bool = true) throws {
        let (model, folder) = try ONNXModelFile.read(path)
        let graph = try ONNXGraph(model, folder: folder, source: path)
        var matcher = ONNXGraphMatcher(graph: graph, source: path)
        let match = try matcher.match()
        var nodes = match.nodes
        // The first weight layer always has a bias: whatever is folded into it lands there, and
        // `--model MODEL.onnx` (without conventions) must describe the same tree as the import.
        let target = InputFold.target(nodes)
        if let target, case .layer(var first) = nodes[target], first.tensors["bias"] == nil {
            first.tensors["bias"] = .zeros([first.tensors["weight"]?.shape.first ?? 0])
            nodes[target] = .layer(first)
        }
        var report: InputFold.Report?
        if weights {
            let graphMap = try match.normalization.affine()
            let given = try conventions.affine(channels: match.inputShape[0])
            // p → x = given(p) → the graph's a·x + b.
            let a = zip(graphMap.a, given.a).map { $0 * $1 }
            let b = (0..<graphMap.a.count).map { graphMap.a[$0] * given.b[$0] + graphMap.b[$0] }
            let what = match.normalization.steps.isEmpty ? "the input conventions (\(conventions.summary))"
                : "the input normalisation (\(match.normalization.nodes.joined(separator: ", ")))" + (conventions.isIdentity ? "" : " with the input conventions (\(conventions.summary))")
            report = try InputFold.apply(a: a, b: b, to: &nodes, inputShape: match.inputShape, source: path, describedAs: what)
        } else if !match.normalization.steps.isEmpty, target == nil {
            throw A2QError("\(path): the input normalisation (\(match.normalization.nodes.joined(separator: ", "))) cannot be folded: the network does not start with a Conv (or a Flatten and a Gemm/MatMul)")
        }
        // At the top level the input is quantized already, so no quantizer is added before the target.
        var naming = ImportNaming()
        let layers = naming.nodes(QuantizationPoints.insert(nodes, entry: .image).nodes, prefix: "", strip: "")
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        description = ModelDescription(name: name.isEmpty ? "imported" : name, layers: layers)
        source = path
        inputShape = match.inputShape
        classes = match.classes
        opset = graph.opset
        irVersion = Int(model.irVersion)
        producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        self.conventions = conventions
        mapping = naming.rows.map { ($0.name, $0.kind, $0.origin) }
        normalizationNodes = match.normalization.nodes
        fold = report.map { (layer: target.map { layers[$0].name } ?? $0.layer, scale: $0.a, shift: $0.b, borderChange: $0.borderChange) }
        tensors = ImportedTensors(naming.tensors)
        try checkBuilds()
    }

    /// The tree of `path` (what `--model MODEL.onnx` trains): structure only, no weights read.
    public static func description(path: String) throws -> ModelDescription {
        try ONNXImport(path: path, weights: false).description
    }

    /// The tree builds as a quantized a2q model (every weight layer's input and both inputs of
    /// every add quantized, every shape right); `writeCheckpoint` builds the float one.
    func checkBuilds() throws {
        var config = TrainConfig()
        config.model = ModelName(rawValue: source)
        config.quantizer = .a2qPlus
        config.floatEpochs = 0
        do {
            _ = try ModelBuilder.build(config, quantized: true, classes: classes, inputShape: inputShape, description: description)
        } catch let error as A2QError {
            throw A2QError("\(source): the imported network does not build as a quantized a2q model: \(error.problem)", remedy: error.remedy)
        }
    }
}
