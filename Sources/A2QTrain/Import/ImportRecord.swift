import A2QCheckpoint
import A2QCore
import Foundation

/// What `a2q import` recorded in a checkpoint's `/import` group (docs/CHECKPOINT.md): where the
/// model came from and what was done to its input. `a2q inspect` shows it.
public struct ImportRecord: Codable, Sendable, Equatable {
    /// The `.onnx` file's name and producer.
    public var source: String
    public var producer: String
    public var opset: Int
    /// What the import was told the model's input is.
    public var inputConventions: InputConventions?
    /// The graph's leading normalisation nodes (empty when none).
    public var graphNormalization: String
    /// The layer the input map was folded into, and the map `x = a·p + b` per channel.
    public var foldedInto: String?
    public var foldedScale: [Double]?
    public var foldedShift: [Double]?
    /// The largest change of a border output of the folded conv (0: exact).
    public var borderChange: Double?

    enum CodingKeys: String, CodingKey {
        case source, producer, opset, inputConventions = "input_conventions", graphNormalization = "graph_normalization"
        case foldedInto = "folded_into", foldedScale = "folded_scale", foldedShift = "folded_shift", borderChange = "border_change"
    }

    /// The record of the checkpoint at `path`, nil when it has none (not an imported model).
    public static func read(_ path: String) throws -> ImportRecord? {
        let file = try HDF5File.openForReading(path)
        guard file.contains("import") else { return nil }
        let g = try file.openGroup("import")
        let conventions = try? JSONDecoder().decode(InputConventions.self, from: Data(try g.stringAttribute("input_conventions").utf8))
        func floats(_ name: String) -> [Double]? {
            guard g.contains(name) else { return nil }
            return try? g.read(name, as: Double.self).values
        }
        return ImportRecord(source: try g.stringAttribute("source"), producer: (try? g.stringAttribute("producer")) ?? "",
                            opset: (try? g.intAttribute("opset")) ?? 0, inputConventions: conventions,
                            graphNormalization: (try? g.stringAttribute("graph_normalization")) ?? "",
                            foldedInto: g.hasAttribute("folded_into") ? try g.stringAttribute("folded_into") : nil,
                            foldedScale: floats("folded_scale"), foldedShift: floats("folded_shift"),
                            borderChange: g.hasAttribute("border_change") ? try g.finiteAttribute("border_change") : nil)
    }

    /// One line for `inspect`.
    public var summary: String {
        var text = "imported from \(source) (\(producer.isEmpty ? "unknown producer" : producer), opset \(opset))"
        if let conventions = inputConventions, !conventions.isIdentity { text += "; input conventions \(conventions.summary)" }
        if !graphNormalization.isEmpty { text += "; the graph's normalisation \(graphNormalization)" }
        if let layer = foldedInto {
            func list(_ v: [Double]?) -> String { (v ?? []).map { String(format: "%.6g", $0) }.joined(separator: ", ") }
            text += "; folded into \(layer): x = a·p + b, a = [\(list(foldedScale))], b = [\(list(foldedShift))]"
            if let change = borderChange, change > 0 { text += String(format: " (border outputs of %@ change by up to %.4g)", layer, change) }
        } else {
            text += "; the model takes p = pixel/255 as it is"
        }
        return text
    }
}
