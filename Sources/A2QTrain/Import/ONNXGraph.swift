import A2QCore
import ONNXProto

/// The graph of an ONNX model as the importer reads it: the nodes in order, which node makes
/// each value and which nodes read it, the constant tensors (initializers, `Constant` nodes and
/// `Identity` nodes that forward a constant, which TorchScript writes when it deduplicates equal
/// tensors), and the one image input `[N, C, H, W]` with a static C, H and W.
///
/// Everything a graph can get wrong before its structure is matched is refused here: an op
/// type a2q cannot import, an input no node makes and no initializer holds, an image input of
/// another rank or with a dynamic height or width, several inputs or outputs.
struct ONNXGraph {
    let nodes: [Onnx_NodeProto]
    /// Value name → index of the node that makes it.
    let producer: [String: Int]
    /// Value name → indices of the nodes that read it (once per input slot).
    let consumers: [String: [Int]]
    /// Constant values by name.
    let constants: [String: ONNXTensor]
    /// Indices of the nodes that only make constants (`Constant`, `Identity` of a constant).
    let constantNodes: Set<Int>
    /// The image input's name and `[C, H, W]`.
    let input: String
    let inputShape: [Int]
    /// The graph output's name.
    let output: String
    let opset: Int

    /// The op types the importer knows, in the order the messages list them.
    static let supportedOps = [
        "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten",
        "Reshape", "Add", "Sub", "Mul", "Div", "Identity", "Constant", "Shape", "Gather", "Unsqueeze", "Concat",
    ]

    /// The supported ops with what each may be, for messages.
    static let supportedList = """
        Conv (any group: grouped and depthwise; dilation 1, symmetric padding), Gemm (alpha = beta = 1) and MatMul (+ Add of a bias), \
        BatchNormalization (inference, after a Conv or Gemm), Relu, MaxPool (square, no padding, floor), \
        AveragePool (square, floor, symmetric padding up to kernel/2 counted in the divisor: count_include_pad = 1), GlobalAveragePool and ReduceMean over H and W, Flatten, Reshape to [N, features] (also PyTorch's \
        Shape→Gather→Unsqueeze→Concat→Reshape chain of x.view(x.size(0), -1)), Add of two branches (a residual \
        block), Identity, Constant, and a leading Sub/Div/Mul/Add normalisation of the input
        """

    init(_ model: Onnx_ModelProto, folder: String, source: String) throws {
        let graph = model.graph
        opset = ONNXModelFile.opset(of: model)
        nodes = graph.node
        let external = ONNXExternalData(folder: folder, source: source)
        var constants: [String: ONNXTensor] = [:]
        for tensor in graph.initializer {
            guard !tensor.name.isEmpty else { throw A2QError("\(source): an initializer has no name", remedy: ONNXExternalData.damaged) }
            constants[tensor.name] = try ONNXTensor(tensor, name: tensor.name, external: external)
        }
        var producer: [String: Int] = [:], consumers: [String: [Int]] = [:]
        for (i, node) in nodes.enumerated() {
            guard node.domain.isEmpty || node.domain == "ai.onnx" else {
                throw A2QError("\(source): \(node.label) is from the operator domain '\(node.domain)', which a2q does not import",
                               remedy: "a2q imports the standard ONNX ops: \(Self.supportedList)")
            }
            for name in node.presentOutputs {
                guard producer[name] == nil, constants[name] == nil else {
                    throw A2QError("\(source): the value \(name) is made twice (by \(node.label) and earlier)", remedy: ONNXExternalData.damaged)
                }
                producer[name] = i
            }
            for name in node.presentInputs { consumers[name, default: []].append(i) }
        }
        // The image input: the graph input that is not an initializer (IR < 4 lists initializers as inputs too).
        let inputs = graph.input.filter { constants[$0.name] == nil }
        guard inputs.count == 1, let image = inputs.first else {
            throw A2QError("\(source): the graph has \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); a2q imports models with one image input",
                           remedy: "export the model with a single input tensor [N, C, H, W]")
        }
        guard graph.output.count == 1, let output = graph.output.first else {
            throw A2QError("\(source): the graph has \(graph.output.count) outputs; a2q imports models with one output (the class scores)")
        }
        input = image.name
        self.output = output.name
        inputShape = try Self.imageShape(image, source: source)
        // Every input of every node must be the image, a constant or some node's output.
        for node in nodes {
            for name in node.presentInputs where name != input && constants[name] == nil && producer[name] == nil {
                throw A2QError("\(source): \(node.label): input \(name) is neither an initializer nor computed by a node",
                               remedy: "the file lacks a tensor (an initializer was dropped, or the external data belongs to another export); export the model again")
            }
        }
        guard producer[self.output] != nil else {
            throw A2QError("\(source): no node computes the graph output \(self.output)")
        }
        // Constants made by nodes, in graph order: Constant; Identity of a constant (TorchScript's
        // deduplication); and, in graphs exported without constant folding, Unsqueeze of a
        // constant and the 2-D Transpose of a constant weight.
        var constantNodes = Set<Int>()
        for (i, node) in nodes.enumerated() {
            guard let name = node.presentOutputs.first, node.presentOutputs.count == 1 else { continue }
            let inputs = node.presentInputs.map { constants[$0] }
            switch node.opType {
            case "Constant":
                guard let a = node.attribute("value"), a.hasT else {
                    throw A2QError("\(source): \(node.label) holds no tensor 'value' (sparse or list constants are not imported)")
                }
                constants[name] = try ONNXTensor(a.t, name: name, external: external)
            case "Identity":
                guard inputs.count == 1, let tensor = inputs[0] else { continue }
                constants[name] = ONNXTensor(aliasing: tensor, as: name, dims: tensor.dims)
            case "Unsqueeze":
                guard inputs.count == 2, let tensor = inputs[0], let axes = try? inputs[1]?.int64s(), tensor.transposedFrom == nil else { continue }
                var dims = tensor.dims
                for axis in axes.map({ Int($0) < 0 ? Int($0) + tensor.dims.count + axes.count : Int($0) }).sorted() {
                    guard axis >= 0, axis <= dims.count else { break }
                    dims.insert(1, at: axis)
                }
                guard dims.count == tensor.dims.count + axes.count else { continue }
                constants[name] = ONNXTensor(aliasing: tensor, as: name, dims: dims)
            case "Transpose":
                guard inputs.count == 1, let tensor = inputs[0], tensor.dims.count == 2, tensor.transposedFrom == nil,
                      (try node.ints("perm")) ?? [1, 0] == [1, 0] else { continue }
                var transposed = ONNXTensor(aliasing: tensor, as: name, dims: [tensor.dims[1], tensor.dims[0]])
                transposed.transposedFrom = (tensor.dims[0], tensor.dims[1])
                constants[name] = transposed
            default:
                continue
            }
            constantNodes.insert(i)
        }
        // Op types before the structure: the first unknown one that is not a constant is named.
        for (i, node) in nodes.enumerated() where !constantNodes.contains(i) && !Self.supportedOps.contains(node.opType) {
            throw Self.unsupported(node, source: source)
        }
        self.producer = producer
        self.consumers = consumers
        self.constants = constants
        self.constantNodes = constantNodes
    }

    /// `[C, H, W]` of the image input `[N, C, H, W]`: float32, C, H and W fixed (N may be symbolic).
    static func imageShape(_ value: Onnx_ValueInfoProto, source: String) throws -> [Int] {
        guard case .tensorType(let type)? = value.type.value, type.elemType == ONNXTensor.float else {
            throw A2QError("\(source): the input \(value.name) is not a float32 tensor", remedy: "export the model with a float32 image input")
        }
        let dims = type.shape.dim
        guard type.hasShape, dims.count == 4 else {
            throw A2QError("\(source): the input \(value.name) has \(type.hasShape ? "\(dims.count) dimensions" : "no shape"); a2q imports image models with an input [N, C, H, W]",
                           remedy: "export with an example input of shape [N, C, H, W]")
        }
        let names = ["channel", "height", "width"]
        var shape: [Int] = []
        var dynamic: [String] = []
        for (i, dim) in dims.dropFirst().enumerated() {
            if case .dimValue(let v)? = dim.value, v > 0, v <= 4096 {
                shape.append(Int(v))
            } else {
                let symbol: String
                switch dim.value {
                case .dimParam(let p)?: symbol = "'\(p)'"
                case .dimValue(let v)?: symbol = "\(v)"
                case nil: symbol = "unknown"
                }
                dynamic.append("\(names[i]) \(symbol)")
            }
        }
        guard dynamic.isEmpty else {
            throw A2QError("\(source): the input \(value.name) has a dynamic or invalid \(dynamic.joined(separator: ", ")) (dimensions \(dims.map { d -> String in if case .dimParam(let p)? = d.value { return p }; return "\(d.dimValue)" })); a2q builds a model for one image size",
                           remedy: "export with a fixed channel count, height and width (a dynamic batch dimension is fine): no dynamic_axes/dynamic_shapes on dimensions 1-3")
        }
        return shape
    }

    /// The refusal of an op type a2q does not import.
    static func unsupported(_ node: Onnx_NodeProto, source: String) -> A2QError {
        let why: String
        switch node.opType {
        case "ConvTranspose": why = "a2q has no transposed convolution"
        case "Softmax", "LogSoftmax": why = "a2q models end in class scores (logits); a softmax is not an a2q layer"
        case "Dropout": why = "export the model in eval mode (model.eval()), which drops Dropout"
        default: why = "a2q has no such layer"
        }
        return A2QError("\(source): \(node.label) is not supported: \(why)",
                        remedy: "a2q imports \(supportedList)")
    }

    /// The node that makes `value` (nil for the image input and constants).
    func node(making value: String) -> Onnx_NodeProto? { producer[value].map { nodes[$0] } }

    /// The constant `name`, or nil when it is computed.
    func constant(_ name: String) -> ONNXTensor? { constants[name] }
}

extension ONNXTensor {
    /// The same values under another name and shape (an Identity's or Unsqueeze's output).
    init(aliasing tensor: ONNXTensor, as name: String, dims: [Int]) {
        self.name = name
        self.dims = dims
        proto = tensor.proto
        external = tensor.external
        transposedFrom = tensor.transposedFrom
    }
}
