import A2QCore
import ONNXProto

/// A node's name and attributes as the importer reads them; every wrong attribute is an error
/// that names the node.
extension Onnx_NodeProto {
    /// The node's name for messages (`'/layer1/layer1.0/conv1/Conv' (Conv)`).
    var label: String { "node '\(name.isEmpty ? "(unnamed)" : name)' (\(opType))" }

    /// The attribute `key`, if present.
    func attribute(_ key: String) -> Onnx_AttributeProto? { attribute.first { $0.name == key } }

    /// An integer attribute, `fallback` when absent.
    func int(_ key: String, _ fallback: Int) throws -> Int {
        guard let a = attribute(key) else { return fallback }
        guard a.type == .int || (a.type == .undefined && a.ints.isEmpty) else {
            throw A2QError("\(label): attribute \(key) is not an integer")
        }
        return Int(a.i)
    }

    /// A float attribute, `fallback` when absent.
    func float(_ key: String, _ fallback: Float) throws -> Float {
        guard let a = attribute(key) else { return fallback }
        guard a.type == .float || a.type == .undefined else { throw A2QError("\(label): attribute \(key) is not a float") }
        return a.f
    }

    /// A list-of-integers attribute, nil when absent.
    func ints(_ key: String) throws -> [Int]? {
        guard let a = attribute(key) else { return nil }
        guard a.type == .ints || (a.type == .undefined && a.i == 0) else { throw A2QError("\(label): attribute \(key) is not a list of integers") }
        return a.ints.map { Int($0) }
    }

    /// A string attribute, nil when absent.
    func string(_ key: String) throws -> String? {
        guard let a = attribute(key) else { return nil }
        guard a.type == .string || a.type == .undefined else { throw A2QError("\(label): attribute \(key) is not a string") }
        return String(decoding: a.s, as: UTF8.self)
    }

    /// The inputs that are present (ONNX leaves an optional input out as an empty name).
    var presentInputs: [String] { input.filter { !$0.isEmpty } }

    /// The outputs that are present.
    var presentOutputs: [String] { output.filter { !$0.isEmpty } }

    /// The module path the exporters left in the node, for naming its layer.
    /// TorchScript names nodes by scope: `/layer1/layer1.0/Relu_1` (a functional call in block
    /// `layer1.0`) → `layer1.0.relu_1`; `/pool/MaxPool` (the call of a leaf module, whose scope
    /// has no dot) → `pool`; children of containers are written `parent.child`. Dynamo keeps the
    /// scopes in `pkg.torch.onnx.name_scopes`: `['', 'layer1', 'layer1.0', 'relu_1']` →
    /// `layer1.0.relu_1`, `['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_3']` →
    /// `layer1.0.relu_3`. Otherwise the node's name without dynamo's `node_`.
    var sourcePath: String { path(moduleCall: false) }

    /// The path of a node that is the call of a module (nn.Conv2d, nn.Linear, nn.BatchNorm2d:
    /// `/layer2/layer2.0/shortcut/shortcut.0/Conv` → `layer2.0.shortcut.0`).
    var modulePath: String { path(moduleCall: true) }

    private func path(moduleCall: Bool) -> String {
        if let scopes = metadataProps.first(where: { $0.key == "pkg.torch.onnx.name_scopes" })?.value {
            let entries = Self.pythonStrings(scopes)
            if let last = entries.last, !last.isEmpty {
                var module = entries.dropLast().last ?? ""
                // A leaf module's op (`layer1.0.relu` called as relu_3) is named in its block.
                if let leaf = module.split(separator: ".").last, last.hasPrefix(String(leaf)) {
                    module = module.split(separator: ".").dropLast().joined(separator: ".")
                }
                return module.isEmpty ? last : module + "." + last
            }
        }
        if name.hasPrefix("/") {
            var parts = name.split(separator: "/").map(String.init)
            guard let last = parts.popLast() else { return "" }
            let leafCall = last == opType && !parts.isEmpty && (moduleCall || parts.last.map { !$0.contains(".") } == true)
            if !leafCall { parts.append(last.lowercased()) }
            var path: [String] = []
            var previous = ""
            for part in parts {
                // A container's child is written `parent.child` (`layer1.0`, `shortcut.0`).
                if !previous.isEmpty, part.hasPrefix(previous + ".") {
                    path.append(String(part.dropFirst(previous.count + 1)))
                } else {
                    path.append(part)
                }
                previous = part
            }
            return path.joined(separator: ".")
        }
        return name.hasPrefix("node_") ? String(name.dropFirst(5)) : name
    }

    /// The strings of a Python list literal (`['', 'layer1', 'layer1.0']`).
    static func pythonStrings(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { out.append(current); current = ""; quote = nil } else { current.append(c) }
            } else if c == "'" || c == "\"" {
                quote = c
            }
        }
        return out
    }
}
