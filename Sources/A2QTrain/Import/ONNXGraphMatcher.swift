import A2QCore
import ONNXProto

/// Matches an ONNX graph to a2q's model tree. From the image input it walks the values: a value
/// read by one node continues the current list of layers (`translate`, one op at a time); a value
/// read by two nodes is a branch point, whose two branches must meet again in one `Add` (a
/// residual block: body, shortcut, and the ReLU after the add); the walk ends at the graph output.
/// Before it, a leading `Sub`/`Div`/`Mul`/`Add` of constants on the input is taken as the input
/// normalisation, and PyTorch's `Shape→Gather→Unsqueeze→Concat→Reshape` chains are recognised as
/// flattens. Whatever does not fit (a third reader of a value, branches that join in different
/// adds, a node off the path, an op in a form a2q lacks) is refused naming the node.
struct ONNXGraphMatcher {
    let graph: ONNXGraph
    /// The model file (messages start with it).
    let source: String
    /// Nodes that are part of another node's layer (constants, view chains, a MatMul's bias Add).
    var absorbed: Set<Int>
    /// Nodes the walk has turned into layers.
    var visited = Set<Int>()
    /// Reshape nodes whose target shape is a recognised `x.view(x.size(0), -1)` chain.
    var viewReshapes = Set<Int>()

    /// What the graph matched to.
    struct Match {
        var nodes: [ImportedNode]
        /// The leading normalisation (empty when the graph has none).
        var normalization: GraphNormalization
        var inputShape: [Int]
        /// The number of class scores the model ends in.
        var classes: Int
    }

    init(graph: ONNXGraph, source: String) {
        self.graph = graph
        self.source = source
        absorbed = graph.constantNodes
    }

    /// Matches the whole graph.
    mutating func match() throws -> Match {
        absorbViewChains()
        var value = graph.input
        var shape = graph.inputShape
        let normalization = try leadingNormalization(&value)
        var nodes: [ImportedNode] = []
        let end = try walk(from: value, shape: &shape, into: &nodes)
        if let join = end.join {
            throw error(graph.nodes[join], "adds \(end.value) to a value from outside its block: a2q's residual blocks add two branches that start at one value",
                        remedy: "a2q imports residual blocks whose two branches start at the same tensor and meet in one Add")
        }
        if let stray = graph.nodes.indices.first(where: { !visited.contains($0) && !absorbed.contains($0) }) {
            throw error(graph.nodes[stray], "is not on the path from the input \(graph.input) to the output \(graph.output)",
                        remedy: "a2q imports a single chain of layers and residual blocks; remove the unused computation before exporting")
        }
        guard shape.count == 1 else {
            throw A2QError("\(source): the model ends in a tensor of shape \(describe(shape)), not in class scores [N, classes]",
                           remedy: "end the model with a Linear layer (Gemm or MatMul)")
        }
        return Match(nodes: nodes, normalization: normalization, inputShape: graph.inputShape, classes: shape[0])
    }

    /// The nodes reading `value` that are not absorbed (once per input slot).
    func users(of value: String) -> [Int] {
        (graph.consumers[value] ?? []).filter { !absorbed.contains($0) }
    }

    /// Whether `node` is an `Add` of two computed values (a residual join).
    func isJoin(_ node: Onnx_NodeProto) -> Bool {
        node.opType == "Add" && node.presentInputs.count == 2 && node.presentInputs.allSatisfy { graph.constant($0) == nil }
    }

    /// An error naming `node`.
    func error(_ node: Onnx_NodeProto, _ problem: String, remedy: String = "a2q imports \(ONNXGraph.supportedList)") -> A2QError {
        A2QError("\(source): \(node.label) \(problem)", remedy: remedy)
    }

    // MARK: The walk

    /// Adds layers from `value` on until the graph output (join nil) or an `Add` that joins
    /// this branch with another (its index; the value that reaches it).
    mutating func walk(from start: String, shape: inout [Int], into list: inout [ImportedNode]) throws -> (value: String, join: Int?) {
        var value = start
        while true {
            let readers = users(of: value)
            if readers.isEmpty {
                guard value == graph.output else {
                    let maker = graph.node(making: value).map { " (made by \($0.label))" } ?? ""
                    throw A2QError("\(source): the value \(value)\(maker) is read by no node and is not the graph's output",
                                   remedy: "a2q imports one chain from the input to the output; remove the unused computation before exporting")
                }
                return (value, nil)
            }
            if value == graph.output {
                throw error(graph.nodes[readers[0]], "reads the graph's output \(value): a2q's models end in their output")
            }
            switch readers.count {
            case 1:
                let node = graph.nodes[readers[0]]
                if isJoin(node) { return (value, readers[0]) }
                value = try translate(readers[0], input: value, shape: &shape, into: &list)
            case 2:
                value = try residual(from: value, readers: readers, shape: &shape, into: &list)
            default:
                throw error(graph.nodes[readers[2]], "is the third node reading \(value): a2q's blocks split a value into two branches at most",
                            remedy: "a2q imports chains of layers and residual blocks (two branches joined by an Add)")
            }
        }
    }

    /// A residual block starting at `value`, read by the two `readers`: each branch is walked to
    /// the `Add` that ends it (an empty branch is the identity shortcut), both must end in the
    /// same `Add`, and a `Relu` right after it belongs to the block. Returns the block's output.
    mutating func residual(from value: String, readers: [Int], shape: inout [Int], into list: inout [ImportedNode]) throws -> String {
        guard readers[0] != readers[1] else {
            throw error(graph.nodes[readers[0]], "reads \(value) twice: a2q has no layer for that")
        }
        var branches: [(nodes: [ImportedNode], join: Int, end: String, shape: [Int])] = []
        for reader in readers {
            let node = graph.nodes[reader]
            if isJoin(node) {
                branches.append(([], reader, value, shape))
                continue
            }
            var nodes: [ImportedNode] = []
            var branchShape = shape
            let next = try translate(reader, input: value, shape: &branchShape, into: &nodes)
            let end = try walk(from: next, shape: &branchShape, into: &nodes)
            guard let join = end.join else {
                throw error(node, "starts a branch from \(value) that reaches the graph output without joining the other branch",
                            remedy: "a2q imports residual blocks whose two branches meet in one Add")
            }
            branches.append((nodes, join, end.value, branchShape))
        }
        guard branches[0].join == branches[1].join else {
            throw error(graph.nodes[branches[1].join], "and \(graph.nodes[branches[0].join].label) end the two branches that start at \(value): a2q's residual blocks join both branches in one Add",
                        remedy: "a2q imports residual blocks (two branches from one tensor, added once)")
        }
        let join = branches[0].join
        let add = graph.nodes[join]
        guard Set(add.presentInputs) == Set(branches.map(\.end)) else {
            throw error(add, "adds \(add.presentInputs.joined(separator: " and ")), not the ends of the two branches from \(value)")
        }
        guard branches[0].shape == branches[1].shape else {
            throw error(add, "adds a \(describe(branches[0].shape)) and a \(describe(branches[1].shape)) tensor (broadcasting is not a residual add)")
        }
        visited.insert(join)
        // The body is the branch with more weight layers (PyTorch's `out + shortcut(x)`: ties go to the Add's first input).
        func weights(_ nodes: [ImportedNode]) -> Int { nodes.flatMap(\.layers).filter(\.isWeightLayer).count }
        let first = branches[0].end == add.presentInputs[0] ? 0 : 1
        let bodyIndex = weights(branches[1 - first].nodes) > weights(branches[first].nodes) ? 1 - first : first
        let body = branches[bodyIndex], shortcut = branches[1 - bodyIndex]
        guard !body.nodes.isEmpty else { throw error(add, "adds \(value) to itself: a2q has no layer for that") }
        shape = body.shape
        var after: [ImportedNode] = []
        var output = add.presentOutputs.first ?? ""
        let readersAfter = users(of: output)
        if readersAfter.count == 1, graph.nodes[readersAfter[0]].opType == "Relu", output != graph.output {
            output = try translate(readersAfter[0], input: output, shape: &shape, into: &after)
        }
        list.append(.residual(ImportedResidual(body: body.nodes, shortcut: shortcut.nodes, after: after, origin: "\(add.name) (Add)")))
        return output
    }

    // MARK: Before the walk

    /// PyTorch's `x.view(x.size(0), -1)` with a dynamic batch: `Shape(x) → Gather(0) →
    /// Unsqueeze(0) → Concat(·, [-1]) → Reshape(x, ·)`. The chain's nodes are absorbed and the
    /// Reshape becomes a flatten; any other computed Reshape target is refused when reached.
    mutating func absorbViewChains() {
        for (r, reshape) in graph.nodes.enumerated() where reshape.opType == "Reshape" {
            let inputs = reshape.presentInputs
            guard inputs.count == 2, graph.constant(inputs[1]) == nil,
                  let concatIndex = graph.producer[inputs[1]], graph.nodes[concatIndex].opType == "Concat" else { continue }
            let concat = graph.nodes[concatIndex]
            guard (try? concat.int("axis", 0)) == 0, concat.presentInputs.count == 2,
                  let tail = graph.constant(concat.presentInputs[1]), (try? tail.int64s()).map({ $0.count == 1 }) == true,
                  let unsqueezeIndex = graph.producer[concat.presentInputs[0]], graph.nodes[unsqueezeIndex].opType == "Unsqueeze" else { continue }
            let unsqueeze = graph.nodes[unsqueezeIndex]
            let axes = unsqueeze.presentInputs.count > 1 ? (try? graph.constant(unsqueeze.presentInputs[1])?.int64s()) ?? nil
                                                         : (try? unsqueeze.ints("axes"))?.map { Int64($0) }
            guard axes == [0], let gatherIndex = graph.producer[unsqueeze.presentInputs[0]],
                  graph.nodes[gatherIndex].opType == "Gather" else { continue }
            let gather = graph.nodes[gatherIndex]
            guard (try? gather.int("axis", 0)) == 0, gather.presentInputs.count == 2,
                  (try? graph.constant(gather.presentInputs[1])?.int64s()) == [0],
                  let shapeIndex = graph.producer[gather.presentInputs[0]], graph.nodes[shapeIndex].opType == "Shape" else { continue }
            let shapeNode = graph.nodes[shapeIndex]
            guard shapeNode.presentInputs == [inputs[0]], (try? shapeNode.int("start", 0)) == 0, shapeNode.attribute("end") == nil else { continue }
            // Each link must feed only the next one.
            let links = [(shapeNode, gather), (gather, unsqueeze), (unsqueeze, concat), (concat, reshape)]
            guard links.allSatisfy({ (graph.consumers[$0.0.presentOutputs.first ?? ""] ?? []).count == 1 }) else { continue }
            absorbed.formUnion([shapeIndex, gatherIndex, unsqueezeIndex, concatIndex])
            viewReshapes.insert(r)
        }
    }

    /// The leading normalisation: `Sub`, `Div`, `Mul`, `Add` nodes on the image input, each with
    /// one constant operand (a scalar or one value per channel, `[1, C, 1, 1]`). `value`
    /// becomes what the first layer reads.
    mutating func leadingNormalization(_ value: inout String) throws -> GraphNormalization {
        var normalization = GraphNormalization(channels: graph.inputShape[0])
        while true {
            let readers = users(of: value)
            guard readers.count == 1 else { return normalization }
            let node = graph.nodes[readers[0]]
            guard ["Sub", "Div", "Mul", "Add"].contains(node.opType), node.presentInputs.count == 2 else { return normalization }
            let inputs = node.presentInputs
            guard let constantIndex = inputs.firstIndex(where: { graph.constant($0) != nil }), inputs[1 - constantIndex] == value,
                  let constant = graph.constant(inputs[constantIndex]) else { return normalization }
            let channels = graph.inputShape[0]
            var trimmed = Array(constant.dims.drop { $0 == 1 })
            if trimmed.isEmpty { trimmed = [1] }
            guard constant.isScalar || (constant.count == channels && constant.dims.count <= 4 && trimmed == [channels, 1, 1]) else {
                throw error(node, "normalises the input with \(constant.name) of shape \(describe(constant.dims)), which is neither a scalar nor one value per channel ([1, \(channels), 1, 1])",
                            remedy: "normalise with a scalar or per-channel mean and std, or pass --input-mean/--input-std and export the model without the normalisation")
            }
            guard !(node.opType == "Div" && constantIndex == 0) else {
                throw error(node, "divides a constant by the input, which is not a normalisation a2q can fold into the first layer")
            }
            normalization.steps.append(.init(op: node.opType, constant: constant, constantFirst: constantIndex == 0))
            normalization.nodes.append(node.label)
            visited.insert(readers[0])
            value = node.presentOutputs.first ?? ""
        }
    }
}
