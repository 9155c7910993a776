import A2QCheckpoint
import A2QCore
import A2QQuant
import Foundation

/// The standalone integer model file written by `a2q export` (docs/CHECKPOINT.md, "Export").
public enum ExportFile {
    public static let format = "a2q-export"
    public static let formatVersion = 3
    /// The root attribute `requantisation`: what the engine does with integers between
    /// accumulators, as docs/CHECKPOINT.md ("The integer engine, exactly") defines it.
    public static let requantisation = """
        float32, each operation rounded, no fused multiply-add. Layer (per output channel): y = float32(acc) * multiplier, \
        then y + offset. Quantize: inverse = 1 / scale computed once in float32; next integers = clip(rint(y * inverse), lo, hi), \
        rint rounding half to even, NaN to lo. Residual add: float32(b) * s_b + float32(c) * s_c. Global average pool: \
        float32(sum) * m, m = float32(scale) / float32(H*W), sum in the pool's accumulator_bits register. Window average pool: \
        per window float32(sum) * m, m = float32(scale) / float32(kernel*kernel), padding counted in the divisor and adding 0 \
        to the sum, sum in the pool's accumulator_bits register. \
        Definition: docs/CHECKPOINT.md, "The integer engine, exactly" (export format_version 3).
        """

    /// Versions this a2q reads (v1: chains only, without residual and pool entries; v2: no
    /// tiled layers).
    public static let readableVersions = 1...3

    /// Writes `model` atomically to `path`; `config` is the training configuration as JSON.
    /// `source` is the checkpoint's path: only its file name is stored, not the writer's folders.
    public static func write(_ model: IntegerModel, to path: String, source: String, config: String?) throws {
        let temporary = path + ".tmp"
        do {
            let file = try HDF5File.create(temporary)
            try file.setAttribute("format", format)
            try file.setAttribute("format_version", formatVersion)
            try file.setAttribute("software_version", "a2q \(a2qVersion)")
            try file.setAttribute("model", model.model)
            try file.setAttribute("classes", model.classes)
            try file.setAttribute("source", (source as NSString).lastPathComponent)
            if let config { try file.setAttribute("config", config) }
            try file.write("input_shape", model.inputShape.map(Int64.init), shape: [model.inputShape.count])
            try file.setAttribute("topology", try topologyJSON(model))
            try file.setAttribute("bias_placement", "outside the accumulator: added in the float requantisation after the P-bit dot product")
            try file.setAttribute("requantisation", ExportFile.requantisation)
            let layers = try file.createGroup("layers")
            for layer in model.layers {
                let g = try layers.createGroup(layer.name)
                try layer.writeIntegerView(to: g)
                try g.write("bias", layer.bias, shape: [layer.outChannels])
                try g.write("multiplier", layer.multiplier, shape: [layer.outChannels])
                try g.write("offset", layer.offset, shape: [layer.outChannels])
                try g.setAttribute("kind", layer.kind.rawValue)
                try g.setAttribute("stride", layer.stride)
                try g.setAttribute("padding", layer.padding)
                if layer.groups != 1 { try g.setAttribute("groups", layer.groups) }
                try g.setAttribute("folded_batchnorm", layer.foldedBatchNorm ?? "")
            }
            try file.flush()
            try file.close()
            try FileSystem.commit(temporary: temporary, to: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw A2QError("cannot write \(path): \(error)")
        }
    }

    /// The ordered topology as JSON (one object per op; a residual nests its branches).
    static func topologyJSON(_ model: IntegerModel) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: topologyItems(model.ops), options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func topologyItems(_ ops: [any IntegerOperation]) -> [[String: Any]] {
        ops.map { $0.topologyEntry() }
    }

    /// Whether `path` is an export (as opposed to a checkpoint).
    public static func isExport(_ path: String) -> Bool {
        guard let file = try? HDF5File.openForReading(path) else { return false }
        return (try? file.stringAttribute("format")) == format
    }

    /// Reads and validates an export: every attribute is range-checked and every dataset's
    /// type and shape checked before it is read (`HDF5Group.read`), then the model as a whole
    /// (`IntegerModel.validate`). A file that fails gets a message naming what is wrong.
    public static func read(_ path: String, operations: IntegerOperationRegistry) throws -> IntegerModel {
        let file = try HDF5File.openForReading(path)
        guard (try? file.stringAttribute("format")) == format else {
            throw A2QError("\(path) is not an a2q export (format attribute is not \"\(format)\")",
                           remedy: "pass a file written by `a2q export`, or a checkpoint")
        }
        let version = try file.intAttribute("format_version")
        guard readableVersions.contains(version) else {
            throw A2QError("\(path) has export format_version \(version); this a2q reads versions 1...\(formatVersion)",
                           remedy: "use the a2q version that wrote it")
        }
        let topologyText = try file.stringAttribute("topology")
        guard let topology = (try? JSONSerialization.jsonObject(with: Data(topologyText.utf8))) as? [[String: Any]] else {
            throw A2QError("\(path): the topology attribute is not a JSON list of objects", remedy: "the file was altered or not written by a2q")
        }
        var reader = TopologyReader(layers: try file.openGroup("layers"), path: path, registry: operations)
        let ops = try reader.ops(topology)
        let shape = try file.read("input_shape", as: Int64.self, shape: [nil], maxElements: 3).values.map(Int.init)
        return try IntegerModel(model: try file.stringAttribute("model"), classes: try file.intAttribute("classes", in: 0...65536),
                                inputShape: shape, ops: ops)
    }

    /// The most ops a topology may list.
    public static let maxOps = 10_000
}

/// Reads an export's topology (`ExportFile.read`): looks each entry's `op` up in the registry
/// and lets its type decode it, keeping what the entries share — the `layers` group, the scale
/// of the integers in flight (which each weight layer's `input_scale` must equal), the nesting
/// depth (at most 64) and the count of entries (at most `ExportFile.maxOps`).
public struct TopologyReader {
    public let layers: HDF5Group
    public let path: String
    let registry: IntegerOperationRegistry
    /// The scale of the integers the next op takes (set by `input` and `quantize`, cleared by
    /// ops whose output is not integers).
    public var scale: Float?
    var depth = 0
    var budget = ExportFile.maxOps

    init(layers: HDF5Group, path: String, registry: IntegerOperationRegistry) {
        self.layers = layers
        self.path = path
        self.registry = registry
    }

    /// Decodes a list of entries.
    public mutating func ops(_ topology: [[String: Any]]) throws -> [any IntegerOperation] {
        guard depth <= 64 else { throw A2QError("\(path): residual blocks nest deeper than 64 levels") }
        budget -= topology.count
        guard budget >= 0 else { throw A2QError("\(path): the topology has more than \(ExportFile.maxOps) ops") }
        return try topology.enumerated().map { index, item in
            let op = item["op"] as? String ?? ""
            guard let type = registry.types[op] else {
                throw A2QError("\(path): unknown op '\(op)' in topology entry \(index)",
                               remedy: "this a2q knows \(registry.names.joined(separator: ", "))")
            }
            return try type.read(TopologyEntry(item: item, op: op, index: index, path: path), &self)
        }
    }

    /// Decodes a branch that starts from the current integers (a residual's body or shortcut);
    /// the scale in flight is the branch's own and is restored afterwards.
    public mutating func branch(_ topology: [[String: Any]]) throws -> (ops: [any IntegerOperation], endScale: Float?) {
        let entry = scale
        depth += 1
        defer { depth -= 1; scale = entry }
        let ops = try self.ops(topology)
        return (ops, scale)
    }

    /// The weight layer a `conv2d`/`linear` entry names, read from its group and checked
    /// against the entry and the scale in flight.
    public mutating func layer(_ entry: TopologyEntry) throws -> IntegerLayer {
        let name = try entry.name()
        guard layers.contains(name) else {
            throw A2QError("\(path): the topology names layer \(name) but /layers/\(name) is missing", remedy: "the file was altered or is incomplete")
        }
        let layer = try ExportFile.readLayer(layers, name: name, op: entry.op, path: path)
        try entry.matches(layer)
        if let scale, layer.inputScale != scale {
            throw A2QError("\(path): layer \(name) has input_scale \(layer.inputScale), but the integers it takes are at scale \(scale) (the input or quantize op before it)",
                           remedy: "the file was altered or is not a2q's")
        }
        scale = nil
        return layer
    }
}

/// One object of an export's topology list, with checked accessors.
public struct TopologyEntry {
    public let item: [String: Any]
    public let op: String
    public let index: Int
    public let path: String

        /// The entry's `name` (non-empty).
        public func name() throws -> String {
            guard let name = item["name"] as? String, !name.isEmpty else {
                throw A2QError("\(path): topology entry \(index) (\(op)) has no name")
            }
            return name
        }

        /// The entry's `name`, or empty when it has none (ops whose name is informational).
        public var optionalName: String { item["name"] as? String ?? "" }

        /// A list of entries under `key` (a residual's branches); nil when absent.
        public func list(_ key: String) throws -> [[String: Any]]? {
            guard let value = item[key] else { return nil }
            guard let list = value as? [[String: Any]] else {
                throw A2QError("\(path): topology entry \(index) (\(op)): \(key) is not a list of entries")
            }
            return list
        }

        public func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int {
            guard let value = item[key] as? Int, range.contains(value) else {
                throw A2QError("\(path): topology entry \(index) (\(op)) needs an integer \(key) in \(range.lowerBound)...\(range.upperBound), found \(item[key].map { "\($0)" } ?? "none")")
            }
            return value
        }

        /// A `linear`/`conv2d` entry describes `layer`: `shape` equal to its weights' shape and,
        /// for conv2d, `stride`, `padding` and `groups` (absent: 1) equal to its group's attributes.
        public func matches(_ layer: IntegerLayer) throws {
            guard let declared = item["shape"] as? [Int] else {
                throw A2QError("\(path): topology entry \(index) (\(op) \(layer.name)) needs a shape (a list of integers), found \(item["shape"].map { "\($0)" } ?? "none")")
            }
            guard declared == layer.shape else {
                throw A2QError("\(path): topology entry \(index) declares \(op) \(layer.name) of shape \(describe(declared)), but /layers/\(layer.name)/weight_int has shape \(describe(layer.shape))",
                               remedy: "the file was altered or is not a2q's; export the checkpoint again")
            }
            guard layer.kind == .conv2d else { return }
            let groups = item["groups"] == nil ? 1 : try integer("groups", in: 1...65536)
            guard groups == layer.groups else {
                throw A2QError("\(path): topology entry \(index) declares conv2d \(layer.name) with groups \(groups), but /layers/\(layer.name) has groups \(layer.groups)",
                               remedy: "the file was altered or is not a2q's; export the checkpoint again")
            }
            for (key, value) in [("stride", layer.stride), ("padding", layer.padding)] {
                let declared = try integer(key, in: 0...64)
                guard declared == value else {
                    throw A2QError("\(path): topology entry \(index) declares conv2d \(layer.name) with \(key) \(declared), but /layers/\(layer.name) has \(key) \(value)",
                                   remedy: "the file was altered or is not a2q's; export the checkpoint again")
                }
            }
        }

        public func format() throws -> (InputFormat, Float) {
            let bits = try integer("bits", in: 1...16)
            guard let signed = item["signed"] as? Bool, let scale = item["scale"] as? Double,
                  scale.isFinite, scale > 0, Float(scale).isNormal else {
                throw A2QError("\(path): topology entry \(index) (\(op)) needs a boolean signed and a positive finite scale")
            }
            return (InputFormat(bits: bits, signed: signed), Float(scale))
        }
}

extension ExportFile {
    static func readLayer(_ layers: HDF5Group, name: String, op: String, path: String) throws -> IntegerLayer {
        let g = try layers.openGroup(name)
        let kindName = try g.stringAttribute("kind")
        guard let kind = IntegerLayer.Kind(rawValue: kindName) else {
            throw A2QError("\(path): layer \(name) has unknown kind '\(kindName)'", remedy: "this a2q knows linear and conv2d layers")
        }
        guard kind.rawValue == op else { throw A2QError("\(path): layer \(name) is a \(kindName) but the topology lists it as \(op)") }
        let rank = kind == .conv2d ? 4 : 2
        let (weights, shape) = try g.read("weight_int", as: Int32.self, shape: [Int?](repeating: nil, count: rank),
                                          maxElements: IntegerLayer.maxStoredWeights)
        guard shape.allSatisfy({ $0 > 0 }) else { throw A2QError("\(path): layer \(name) has an empty weight shape \(describe(shape))") }
        let out = shape[0]
        func channels(_ dataset: String) throws -> [Float] {
            let values = try g.read(dataset, as: Float.self, shape: [out]).values
            guard values.allSatisfy(\.isFinite) else {
                throw A2QError("\(path): layer \(name) has a non-finite value in \(dataset)", remedy: "the file is damaged or was altered")
            }
            return values
        }
        let inputScale = try g.finiteAttribute("input_scale")
        guard inputScale > 0, Float(inputScale).isNormal else { throw A2QError("\(path): layer \(name) has input_scale \(inputScale); it must be positive") }
        let bound = try g.finiteAttribute("l1_bound")
        let rounding = try g.stringAttribute("rounding")
        guard ["toward_zero", "nearest"].contains(rounding) else {
            throw A2QError("\(path): layer \(name) has rounding '\(rounding)' (expected toward_zero or nearest)")
        }
        let folded = try g.stringAttribute("folded_batchnorm")
        let weightScale = try channels("weight_scale")
        guard weightScale.allSatisfy({ $0 > 0 }) else {
            throw A2QError("\(path): layer \(name) has a weight_scale that is not positive", remedy: "the file is damaged or was altered")
        }
        var layer = IntegerLayer(
            name: name, kind: kind, shape: shape, weights: weights, quantizer: try g.stringAttribute("quantizer"),
            weightBits: try g.intAttribute("weight_bits", in: 2...16), accumulatorBits: try g.intAttribute("accumulator_bits", in: 2...62),
            input: InputFormat(bits: try g.intAttribute("input_bits", in: 1...16), signed: try g.intAttribute("input_signed", in: 0...1) != 0),
            inputScale: Float(inputScale), weightScale: weightScale, bias: try channels("bias"),
            multiplier: try channels("multiplier"), offset: try channels("offset"),
            l1Bound: bound >= 0 ? bound : nil, rounding: rounding, foldedBatchNorm: folded.isEmpty ? nil : folded)
        layer.stride = try g.intAttribute("stride", in: 1...64)
        layer.padding = try g.intAttribute("padding", in: 0...64)
        // Files written before grouped convolutions (and ungrouped layers) have no `groups`: 1.
        layer.groups = g.hasAttribute("groups") ? try g.intAttribute("groups", in: 1...65536) : 1
        // Files before multi-stage accumulation (and untiled layers) have no `accumulator_tile`.
        if g.hasAttribute("accumulator_tile") {
            layer.accumulatorTile = try g.intAttribute("accumulator_tile", in: 1...(1 << 26))
            layer.outerAccumulatorBits = try g.intAttribute("outer_accumulator_bits", in: 2...62)
        }
        if layer.foldedBatchNorm == nil {
            // Without a BatchNorm, the requantisation is the integer view's: s · input_scale and the bias.
            let multiplier = layer.weightScale.map { $0 * layer.inputScale }
            if let c = layer.multiplier.indices.first(where: { layer.multiplier[$0].bitPattern != multiplier[$0].bitPattern }) {
                throw A2QError("\(path): layer \(name) (no folded BatchNorm) has multiplier \(layer.multiplier[c]) in channel \(c), not weight_scale · input_scale = \(multiplier[c])",
                               remedy: "the file was altered or is not a2q's; export the checkpoint again")
            }
            if let c = layer.offset.indices.first(where: { layer.offset[$0].bitPattern != layer.bias[$0].bitPattern }) {
                throw A2QError("\(path): layer \(name) (no folded BatchNorm) has offset \(layer.offset[c]) in channel \(c), not its bias \(layer.bias[c])",
                               remedy: "the file was altered or is not a2q's; export the checkpoint again")
            }
        }
        try layer.checkStoredView(in: g, weightsFrom: "the file's integer weights give",
                                  remedy: "the file was altered or is not a2q's; export the checkpoint again")
        return layer
    }
}
