/// Where an imported network gets activation quantizers (`quant`), so that its quantized build
/// has an integer form, as a2q's own ResNets have them (`BuiltInModels.resnet`): after every
/// ReLU (unsigned; a2q fuses the two), after the global pool and each window average pool, at
/// the end of each residual branch (signed unless a ReLU precedes), and before any weight
/// layer, window average pool or identity-shortcut block whose input is not quantized yet. Float builds skip every `quant`, so the float model
/// computes what the ONNX graph computes.
enum QuantizationPoints {
    /// What is known about the values flowing at a point: quantized, and never negative.
    struct State {
        var quantized: Bool
        var nonNegative: Bool
        /// The image input (a2q's 8-bit unsigned input quantizer).
        static let image = State(quantized: true, nonNegative: true)
        static let real = State(quantized: false, nonNegative: false)
    }

    /// `nodes` with the quantizers added; the state after them.
    static func insert(_ nodes: [ImportedNode], entry: State) -> (nodes: [ImportedNode], exit: State) {
        var out: [ImportedNode] = []
        var state = entry
        func quant(_ path: String, signed: Bool, after origin: String) -> ImportedNode {
            .layer(ImportedLayer(kind: .quant(signed: signed), origin: "added (\(signed ? "signed" : "unsigned"), after \(origin))", path: path))
        }
        for node in nodes {
            switch node {
            case .layer(let layer):
                switch layer.kind {
                case .conv, .linear:
                    if !state.quantized { out.append(quant(layer.path + "_in", signed: !state.nonNegative, after: "the input of \(layer.path)")) }
                    out.append(node)
                    state = .real
                case .batchNorm:
                    out.append(node)
                    state = .real
                case .relu:
                    out.append(node)
                    out.append(quant(layer.path + "_q", signed: false, after: layer.path))
                    state = .image
                case .avgPool:
                    // Sums of integers in the integer model: its input quantized, its output quantized again.
                    if !state.quantized { out.append(quant(layer.path + "_in", signed: !state.nonNegative, after: "the input of \(layer.path)")) }
                    out.append(node)
                    out.append(quant(layer.path + "_q", signed: !state.nonNegative, after: layer.path))
                    state.quantized = true
                case .globalAvgPool:
                    out.append(node)
                    out.append(quant(layer.path + "_q", signed: !state.nonNegative, after: layer.path))
                    state.quantized = true
                case .maxPool, .flatten, .quant:
                    out.append(node)
                }
            case .residual(var block):
                // The block's input feeds both branches: quantized (an identity shortcut adds it as it is).
                if !state.quantized {
                    out.append(quant("block_in", signed: !state.nonNegative, after: "the input of the block at \(block.origin)"))
                    state.quantized = true
                }
                block.body = branch(block.body, entry: state)
                if !block.shortcut.isEmpty { block.shortcut = branch(block.shortcut, entry: state) }
                let after = insert(block.after, entry: .real)
                block.after = after.nodes
                state = after.exit
                out.append(.residual(block))
            }
        }
        return (out, state)
    }

    /// A residual branch ending in quantized values (a signed `out` unless it is quantized already).
    static func branch(_ nodes: [ImportedNode], entry: State) -> [ImportedNode] {
        let (inserted, exit) = insert(nodes, entry: entry)
        guard !exit.quantized else { return inserted }
        return inserted + [.layer(ImportedLayer(kind: .quant(signed: !exit.nonNegative),
                                                origin: "added (\(exit.nonNegative ? "unsigned" : "signed"), end of a residual branch)", path: "out"))]
    }
}
