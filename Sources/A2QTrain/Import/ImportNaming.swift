/// Names an imported tree the a2q way and turns it into model-file nodes. A layer's local name is
/// its module path with the enclosing block's prefix removed and `.` replaced by `_`; a residual
/// block is named after the longest module path its layers share (`layer1.0.conv1`,
/// `layer1.0.conv2` → block `layer1_0`, layers `layer1_0.conv1`, `layer1_0.conv2`), or `blockN`
/// when they share none. Names are made unique with `_2`, `_3`, … . The full names are the
/// parameter, checkpoint, `verify` and `--layer-accumulator-bits` names.
struct ImportNaming {
    /// One row of the import's mapping: the a2q name, what it is, and where it came from.
    struct Row: Sendable {
        var name: String
        var kind: String
        var origin: String
    }

    /// Full names in use (as `ModelBuildContext` reserves them).
    private var used: Set<String> = ["input", "model"]
    private var blocks = 0
    /// Tensors by full parameter or buffer name (`layer1_0.conv1.weight`).
    var tensors: [String: ImportedTensor] = [:]
    var rows: [Row] = []

    /// The model-file nodes of `items`, whose full names start with `prefix` and whose module
    /// paths lose `strip` (a block's shared path).
    mutating func nodes(_ items: [ImportedNode], prefix: String, strip: String) -> [ModelDescription.Node] {
        items.map { item in
            switch item {
            case .layer(let layer): return node(layer, prefix: prefix, strip: strip)
            case .residual(let block): return residual(block, prefix: prefix, strip: strip)
            }
        }
    }

    private mutating func node(_ layer: ImportedLayer, prefix: String, strip: String) -> ModelDescription.Node {
        let local = unique(Self.local(layer.path, strip: strip, fallback: Self.kindName(layer.kind)), prefix: prefix)
        let full = prefix + local
        for (dataset, tensor) in layer.tensors { tensors["\(full).\(dataset)"] = tensor }
        let node: ModelDescription.Node
        let kind: String
        switch layer.kind {
        case .conv(let out, let kernel, let stride, let padding, let groups):
            node = .conv(.init(name: local, out: out, kernel: kernel, stride: stride, padding: padding, groups: groups,
                               bias: layer.tensors["bias"] != nil))
            kind = "conv \(out)×\(kernel)×\(kernel), stride \(stride), padding \(padding)\(layer.tensors["bias"] != nil ? ", bias" : "")"
        case .linear(let out):
            node = .linear(.init(name: local, out: out, bias: layer.tensors["bias"] != nil))
            kind = "linear \(out)\(layer.tensors["bias"] != nil ? ", bias" : "")"
        case .batchNorm:
            node = .batchNorm(name: local)
            kind = "batchnorm"
        case .relu:
            node = .relu(name: local)
            kind = "relu"
        case .maxPool(let kernel, let stride):
            node = .maxPool(name: local, kernel: kernel, stride: stride)
            kind = "maxpool \(kernel)×\(kernel), stride \(stride)"
        case .avgPool(let kernel, let stride, let padding):
            node = .avgPool(name: local, kernel: kernel, stride: stride, padding: padding)
            kind = "avgpool \(kernel)×\(kernel), stride \(stride), padding \(padding)"
        case .globalAvgPool:
            node = .globalAvgPool(name: local)
            kind = "globalavgpool"
        case .flatten:
            node = .flatten(name: local)
            kind = "flatten"
        case .quant(let signed):
            node = .quant(name: local, bits: nil, signed: signed)
            kind = signed ? "quant (signed)" : "quant"
        }
        rows.append(Row(name: full, kind: kind, origin: layer.origin))
        return node
    }

    private mutating func residual(_ block: ImportedResidual, prefix: String, strip: String) -> ModelDescription.Node {
        blocks += 1
        let members = (block.body + block.shortcut).flatMap(\.layers).filter { $0.isWeightLayer || $0.kind == .batchNorm }.map(\.path)
        let shared = Self.sharedPath(members)
        let base = shared.isEmpty ? "block\(blocks)" : Self.local(shared, strip: strip, fallback: "block\(blocks)")
        let local = unique(base, prefix: prefix)
        let full = prefix + local
        for part in ["residual", "body"] + (block.shortcut.isEmpty ? [] : ["shortcut"]) { used.insert("\(full).\(part)") }
        rows.append(Row(name: full, kind: "residual (body + \(block.shortcut.isEmpty ? "identity" : "shortcut"), then after)", origin: block.origin))
        let body = nodes(block.body, prefix: full + ".", strip: shared)
        // PyTorch's shortcut modules are often called `shortcut` already; a2q adds that prefix itself.
        let shortcutPaths = block.shortcut.flatMap(\.layers).filter { $0.kind != .quant(signed: true) && $0.kind != .quant(signed: false) }.map(\.path)
        let shortcutStrip = !shared.isEmpty && !shortcutPaths.isEmpty && shortcutPaths.allSatisfy({ $0.hasPrefix(shared + ".shortcut.") })
            ? shared + ".shortcut" : shared
        let shortcut = block.shortcut.isEmpty ? nil : nodes(block.shortcut, prefix: full + ".shortcut.", strip: shortcutStrip)
        let after = nodes(block.after, prefix: full + ".", strip: shared)
        return ModelDescription.Node(ResidualOp(name: local, body: body, shortcut: shortcut, after: after))
    }

    /// `local` itself, or with `_2`, `_3`, … when `prefix + local` is taken.
    private mutating func unique(_ local: String, prefix: String) -> String {
        var candidate = local
        var n = 2
        while used.contains(prefix + candidate) {
            candidate = "\(local)_\(n)"
            n += 1
        }
        used.insert(prefix + candidate)
        return candidate
    }

    /// A module path without the `strip` prefix, as a local name: only letters, digits, `_`
    /// and `-` (`.`, `/`, `:` become `_`).
    static func local(_ path: String, strip: String, fallback: String) -> String {
        var rest = path
        if !strip.isEmpty, path.hasPrefix(strip + ".") { rest = String(path.dropFirst(strip.count + 1)) }
        var name = String(rest.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
        while name.hasPrefix("_") { name.removeFirst() }
        return name.isEmpty ? fallback : name
    }

    /// The longest dotted prefix every path has, shorter than each of them ("" when none).
    static func sharedPath(_ paths: [String]) -> String {
        guard !paths.isEmpty else { return "" }
        let split = paths.map { $0.split(separator: ".").map(String.init) }
        var shared = split[0]
        for parts in split.dropFirst() {
            var n = 0
            while n < shared.count, n < parts.count, shared[n] == parts[n] { n += 1 }
            shared = Array(shared.prefix(n))
        }
        let shortest = split.map(\.count).min() ?? 0
        if shared.count >= shortest { shared = Array(shared.prefix(max(shortest - 1, 0))) }
        return shared.joined(separator: ".")
    }

    static func kindName(_ kind: ImportedLayer.Kind) -> String {
        switch kind {
        case .conv: return "conv"
        case .linear: return "linear"
        case .batchNorm: return "bn"
        case .relu: return "relu"
        case .maxPool: return "maxpool"
        case .avgPool: return "avgpool"
        case .globalAvgPool: return "pool"
        case .flatten: return "flatten"
        case .quant: return "quant"
        }
    }
}
