import A2QCore

/// A float tensor of an imported layer: its shape and how to get its values (read from the
/// ONNX file, possibly transposed or folded, only when the weights are wanted).
struct ImportedTensor {
    var shape: [Int]
    var values: () throws -> [Float]

    /// A tensor of zeros.
    static func zeros(_ shape: [Int]) -> ImportedTensor {
        ImportedTensor(shape: shape) { [Float](repeating: 0, count: shape.reduce(1, *)) }
    }
}

/// An import's tensors by full parameter or buffer name, handed out once each: `take` releases
/// the ONNX data behind a tensor as its values are copied into the model, so that the file's
/// weights and the model's are not both held in memory (an 11M-parameter ResNet-18 imports in
/// about twice its size).
final class ImportedTensors: @unchecked Sendable {
    private var tensors: [String: ImportedTensor]

    init(_ tensors: [String: ImportedTensor]) { self.tensors = tensors }

    /// The tensor `name`, removed (nil when there is none, or it was taken).
    func take(_ name: String) -> ImportedTensor? { tensors.removeValue(forKey: name) }

    /// Whether every tensor has been taken.
    var isEmpty: Bool { tensors.isEmpty }
}

/// One a2q layer matched from one or more ONNX nodes, before it is named.
struct ImportedLayer {
    enum Kind: Equatable {
        case conv(out: Int, kernel: Int, stride: Int, padding: Int, groups: Int)
        case linear(out: Int)
        case batchNorm
        case relu
        case maxPool(kernel: Int, stride: Int)
        /// Padded zeros count in the divisor (`count_include_pad = 1`, PyTorch's default).
        case avgPool(kernel: Int, stride: Int, padding: Int)
        case globalAvgPool
        case flatten
        /// An activation quantizer the importer adds where a2q's quantized builds need one.
        case quant(signed: Bool)
    }

    var kind: Kind
    /// The ONNX node(s) it came from, for the mapping the command prints (`/conv1/Conv (Conv)`).
    var origin: String
    /// The dotted module path it is named after (`layer1.0.conv1`), or a name hint for added quantizers.
    var path: String
    /// Its tensors by dataset name: `weight`, `bias` (conv, linear; BatchNorm's γ and β),
    /// `running_mean`, `running_var` (BatchNorm buffers).
    var tensors: [String: ImportedTensor] = [:]

    var isWeightLayer: Bool {
        switch kind {
        case .conv, .linear: return true
        default: return false
        }
    }
}

/// A residual block matched at a branch point and its join (`Add`): a2q's `residual`.
struct ImportedResidual {
    var body: [ImportedNode]
    /// Empty: the identity shortcut.
    var shortcut: [ImportedNode]
    /// The layers after the add that belong to the block (its ReLU).
    var after: [ImportedNode]
    /// The `Add` node that joins the branches.
    var origin: String
}

/// A node of the imported tree.
enum ImportedNode {
    case layer(ImportedLayer)
    case residual(ImportedResidual)

    /// Every layer in the subtree, in order (a body before its shortcut).
    var layers: [ImportedLayer] {
        switch self {
        case .layer(let layer): return [layer]
        case .residual(let block): return (block.body + block.shortcut + block.after).flatMap(\.layers)
        }
    }
}
