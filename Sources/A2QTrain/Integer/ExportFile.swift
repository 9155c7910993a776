import A2QCheckpoint
import A2QCore
import A2QQuant
import Foundation

/// The standalone integer model file written by `a2q export` (docs/CHECKPOINT.md, "Export").
public enum ExportFile {
    public static let format = "a2q-export"
    public static let formatVersion = 1

    /// Writes `model` atomically to `path`.
    public static func write(_ model: IntegerModel, to path: String, source: String, config: TrainConfig?) throws {
        let temporary = path + ".tmp"
        do {
            let file = try HDF5File.create(temporary)
            try file.setAttribute("format", format)
            try file.setAttribute("format_version", formatVersion)
            try file.setAttribute("software_version", "a2q \(a2qVersion)")
            try file.setAttribute("model", model.model)
            try file.setAttribute("classes", model.classes)
            try file.setAttribute("source", source)
            if let config { try file.setAttribute("config", config.json(pretty: false)) }
            try file.write("input_shape", model.inputShape.map(Int64.init), shape: [model.inputShape.count])
            try file.setAttribute("topology", try topologyJSON(model))
            try file.setAttribute("bias_placement", "outside the accumulator: added in the float requantisation after the P-bit dot product")
            try file.setAttribute("requantisation", "y = acc * multiplier + offset (float32 per output channel); next integers = clip(rint(y / scale), lo, hi) after ReLU")
            let layers = try file.createGroup("layers")
            for layer in model.layers {
                let g = try layers.createGroup(layer.name)
                let report = layer.report
                try report.write(to: g, shape: layer.shape, weightBits: layer.weightBits)
                try g.write("weight_scale", layer.weightScale, shape: [layer.outChannels])
                try g.write("bias", layer.bias, shape: [layer.outChannels])
                try g.write("multiplier", layer.multiplier, shape: [layer.outChannels])
                try g.write("offset", layer.offset, shape: [layer.outChannels])
                try g.setAttribute("kind", layer.kind.rawValue)
                try g.setAttribute("quantizer", layer.quantizer)
                try g.setAttribute("weight_bits", layer.weightBits)
                try g.setAttribute("input_bits", layer.input.bits)
                try g.setAttribute("input_signed", layer.input.signed ? 1 : 0)
                try g.setAttribute("input_scale", Double(layer.inputScale))
                try g.setAttribute("accumulator_bits", layer.accumulatorBits)
                try g.setAttribute("l1_bound", layer.l1Bound ?? -1)
                try g.setAttribute("rounding", layer.rounding)
                try g.setAttribute("narrow_range", 1)
                try g.setAttribute("stride", layer.stride)
                try g.setAttribute("padding", layer.padding)
                try g.setAttribute("sparsity", report.sparsity)
                try g.setAttribute("overflow_free", report.overflowFree ? 1 : 0)
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

    /// The ordered topology as JSON (one object per op).
    static func topologyJSON(_ model: IntegerModel) throws -> String {
        var items: [[String: Any]] = []
        for op in model.ops {
            switch op {
            case .input(let f, let scale):
                items.append(["op": "input", "bits": f.bits, "signed": f.signed, "scale": Double(scale)])
            case .layer(let l):
                var item: [String: Any] = ["op": l.kind.rawValue, "name": l.name, "shape": l.shape]
                if l.kind == .conv2d { item["stride"] = l.stride; item["padding"] = l.padding }
                items.append(item)
            case .relu:
                items.append(["op": "relu"])
            case .quantize(let name, let f, let scale):
                items.append(["op": "quantize", "name": name, "bits": f.bits, "signed": f.signed, "scale": Double(scale)])
            case .maxPool(let k, let s):
                items.append(["op": "maxpool", "kernel": k, "stride": s])
            case .flatten:
                items.append(["op": "flatten"])
            }
        }
        let data = try JSONSerialization.data(withJSONObject: items, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether `path` is an export (as opposed to a checkpoint).
    public static func isExport(_ path: String) -> Bool {
        guard let file = try? HDF5File.openForReading(path) else { return false }
        return (try? file.stringAttribute("format")) == format
    }

    /// Reads and validates an export.
    public static func read(_ path: String) throws -> IntegerModel {
        let file = try HDF5File.openForReading(path)
        guard (try? file.stringAttribute("format")) == format else {
            throw A2QError("\(path) is not an a2q export (format attribute is not \"\(format)\")",
                           remedy: "pass a file written by `a2q export`, or a checkpoint")
        }
        let version = try file.intAttribute("format_version")
        guard version == formatVersion else {
            throw A2QError("\(path) has export format_version \(version); this a2q reads version \(formatVersion)")
        }
        guard let topology = try JSONSerialization.jsonObject(with: Data(try file.stringAttribute("topology").utf8)) as? [[String: Any]] else {
            throw A2QError("\(path): the topology attribute is not a JSON list")
        }
        let layers = try file.openGroup("layers")
        var ops: [IntegerOp] = []
        for item in topology {
            let op = item["op"] as? String ?? ""
            func format() throws -> (InputFormat, Float) {
                guard let bits = item["bits"] as? Int, (1...16).contains(bits), let signed = item["signed"] as? Bool,
                      let scale = item["scale"] as? Double, scale > 0 else {
                    throw A2QError("\(path): topology entry \(op) has no valid bits/signed/scale")
                }
                return (InputFormat(bits: bits, signed: signed), Float(scale))
            }
            switch op {
            case "input":
                let (f, s) = try format()
                ops.append(.input(format: f, scale: s))
            case "quantize":
                let (f, s) = try format()
                ops.append(.quantize(name: item["name"] as? String ?? "", format: f, scale: s))
            case "relu": ops.append(.relu)
            case "flatten": ops.append(.flatten)
            case "maxpool":
                ops.append(.maxPool(kernel: item["kernel"] as? Int ?? 2, stride: item["stride"] as? Int ?? 2))
            case "linear", "conv2d":
                guard let name = item["name"] as? String else { throw A2QError("\(path): a \(op) entry has no name") }
                ops.append(.layer(try readLayer(layers, name: name, path: path)))
            default:
                throw A2QError("\(path): unknown op '\(op)' in the topology")
            }
        }
        let shape = try file.read("input_shape", as: Int64.self).values.map(Int.init)
        return try IntegerModel(model: try file.stringAttribute("model"), classes: try file.intAttribute("classes"),
                                inputShape: shape, ops: ops)
    }

    static func readLayer(_ layers: HDF5Group, name: String, path: String) throws -> IntegerLayer {
        let g = try layers.openGroup(name)
        let (weights, shape) = try g.read("weight_int", as: Int32.self)
        let bits = try g.intAttribute("input_bits")
        guard (1...16).contains(bits) else { throw A2QError("\(path): layer \(name) has input_bits \(bits)") }
        let bound = try g.doubleAttribute("l1_bound")
        let folded = try g.stringAttribute("folded_batchnorm")
        var layer = IntegerLayer(
            name: name, kind: IntegerLayer.Kind(rawValue: try g.stringAttribute("kind")) ?? .linear, shape: shape,
            weights: weights, quantizer: try g.stringAttribute("quantizer"), weightBits: try g.intAttribute("weight_bits"),
            accumulatorBits: try g.intAttribute("accumulator_bits"),
            input: InputFormat(bits: bits, signed: try g.intAttribute("input_signed") != 0),
            inputScale: Float(try g.doubleAttribute("input_scale")),
            weightScale: try g.read("weight_scale", as: Float.self).values, bias: try g.read("bias", as: Float.self).values,
            multiplier: try g.read("multiplier", as: Float.self).values, offset: try g.read("offset", as: Float.self).values,
            l1Bound: bound >= 0 ? bound : nil, rounding: try g.stringAttribute("rounding"),
            foldedBatchNorm: folded.isEmpty ? nil : folded)
        layer.stride = try g.intAttribute("stride")
        layer.padding = try g.intAttribute("padding")
        guard layer.multiplier.count == layer.outChannels, layer.offset.count == layer.outChannels else {
            throw A2QError("\(path): layer \(name) has \(layer.multiplier.count) multipliers for \(layer.outChannels) channels")
        }
        return layer
    }
}
