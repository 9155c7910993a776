import A2QCore
import Foundation

/// Collects a sweep folder (one run per subfolder: config.json, summary.json, integer.json,
/// verify.json) into rows, CSV, JSON and an SVG plot.
public enum SweepReport {
    public struct Row: Sendable, Codable {
        public var run: String
        public var model: String
        public var quantizer: String
        public var weightBits: Int
        public var actBits: Int
        /// Accumulator bits of the hidden layers (32 for float and qat).
        public var accumulatorBits: Int
        public var initMethod: String
        public var testAccuracy: Double
        public var integerAccuracy: Double?
        /// Zero fraction over the constrained (hidden) layers' integer weights.
        public var sparsity: Double
        /// `layer:p_min` for every quantized layer.
        public var pMin: [String: Int]
        /// `verify`: every layer proven overflow-free.
        public var verified: Bool?
        public var floatTestAccuracy: Double?

        public init(run: String, model: String, quantizer: String, weightBits: Int, actBits: Int, accumulatorBits: Int,
                    initMethod: String, testAccuracy: Double, integerAccuracy: Double?, sparsity: Double, pMin: [String: Int],
                    verified: Bool?, floatTestAccuracy: Double?) {
            self.run = run
            self.model = model
            self.quantizer = quantizer
            self.weightBits = weightBits
            self.actBits = actBits
            self.accumulatorBits = accumulatorBits
            self.initMethod = initMethod
            self.testAccuracy = testAccuracy
            self.integerAccuracy = integerAccuracy
            self.sparsity = sparsity
            self.pMin = pMin
            self.verified = verified
            self.floatTestAccuracy = floatTestAccuracy
        }

        enum CodingKeys: String, CodingKey {
            case run, model, quantizer, weightBits = "weight_bits", actBits = "act_bits", accumulatorBits = "accumulator_bits"
            case initMethod = "init", testAccuracy = "test_accuracy", integerAccuracy = "integer_accuracy", sparsity
            case pMin = "p_min", verified, floatTestAccuracy = "float_test_accuracy"
        }
    }

    /// Reads every finished run under `folder`, sorted by model, bits, quantizer, P.
    public static func collect(_ folder: String) throws -> [Row] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            throw A2QError("\(folder) is not a readable folder")
        }
        var rows: [Row] = []
        for name in names.sorted() {
            let dir = (folder as NSString).appendingPathComponent(name)
            guard let summaryData = FileManager.default.contents(atPath: dir + "/summary.json"),
                  let summary = try? JSONSerialization.jsonObject(with: summaryData) as? [String: Any] else { continue }
            let config = try TrainConfig.load(path: dir + "/config.json")
            let integer = FileManager.default.contents(atPath: dir + "/integer.json")
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            let verify = FileManager.default.contents(atPath: dir + "/verify.json")
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            var pMin: [String: Int] = [:]
            for layer in summary["layers"] as? [[String: Any]] ?? [] {
                if let n = layer["name"] as? String, let p = layer["p_min"] as? Int { pMin[n] = p }
            }
            let constrained = config.quantizer.isAccumulatorAware
            rows.append(Row(run: name, model: config.model.rawValue, quantizer: config.quantizer.rawValue,
                            weightBits: config.weightBits, actBits: config.actBits,
                            accumulatorBits: constrained ? config.accumulatorBits : 32, initMethod: config.init_.rawValue,
                            testAccuracy: summary["test_accuracy"] as? Double ?? 0,
                            integerAccuracy: integer?["accuracy"] as? Double,
                            sparsity: constrained ? summary["sparsity"] as? Double ?? 0 : 0, pMin: pMin,
                            verified: verify?["overflow_free"] as? Bool,
                            floatTestAccuracy: summary["float_test_accuracy"] as? Double))
        }
        return rows
    }

    public static func csv(_ rows: [Row]) -> String {
        var lines = ["run,model,quantizer,weight_bits,act_bits,accumulator_bits,init,test_accuracy,integer_accuracy,sparsity,p_min,verified"]
        for r in rows {
            let p = r.pMin.keys.sorted().map { "\($0):\(r.pMin[$0] ?? 0)" }.joined(separator: ";")
            lines.append([r.run, r.model, r.quantizer, "\(r.weightBits)", "\(r.actBits)", "\(r.accumulatorBits)", r.initMethod,
                          String(format: "%.4f", r.testAccuracy), r.integerAccuracy.map { String(format: "%.4f", $0) } ?? "",
                          String(format: "%.4f", r.sparsity), p, r.verified.map { $0 ? "yes" : "no" } ?? ""].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Two panels per model: test accuracy and sparsity against accumulator bits, one line per
    /// quantizer and bit width, float and 32-bit qat as horizontal references.
    public static func svg(_ rows: [Row]) -> String {
        let models = Array(Set(rows.map(\.model))).sorted()
        let panelWidth = 430.0, panelHeight = 260.0, margin = 55.0
        let width = 2 * (panelWidth + margin) + margin, height = Double(models.count) * (panelHeight + 2 * margin) + 20
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"]
        let colors = ["a2q W8A8": "#1f77b4", "a2q+ W8A8": "#d62728", "a2q W4A4": "#6baed6", "a2q+ W4A4": "#fc9272"]
        let allP = rows.filter { $0.quantizer.hasPrefix("a2q") }.map(\.accumulatorBits)
        let pLow = Double(allP.min() ?? 10), pHigh = Double(allP.max() ?? 20)
        for (m, model) in models.enumerated() {
            let top = 20 + Double(m) * (panelHeight + 2 * margin) + margin
            let sweep = rows.filter { $0.model == model && $0.initMethod == "ep-scaled" }
            for (panel, metric) in ["accuracy", "sparsity"].enumerated() {
                let left = margin + Double(panel) * (panelWidth + margin)
                let values = sweep.map { metric == "accuracy" ? $0.testAccuracy : $0.sparsity } + (metric == "accuracy" ? sweep.compactMap(\.floatTestAccuracy) : [])
                let low = metric == "accuracy" ? max(0, (values.min() ?? 0) - 0.02) : 0, high = metric == "accuracy" ? min(1, (values.max() ?? 1) + 0.01) : 1
                func x(_ p: Double) -> Double { left + (p - pLow) / max(pHigh - pLow, 1) * panelWidth }
                func y(_ v: Double) -> Double { top + panelHeight - (v - low) / max(high - low, 1e-9) * panelHeight }
                out.append("<rect x=\"\(left)\" y=\"\(top)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#999\"/>")
                out.append("<text x=\"\(left)\" y=\"\(top - 10)\" font-size=\"14\">\(model): \(metric == "accuracy" ? "test accuracy" : "sparsity of constrained layers") vs accumulator bits P</text>")
                for p in stride(from: Int(pLow), through: Int(pHigh), by: 1) {
                    out.append("<text x=\"\(x(Double(p)) - 6)\" y=\"\(top + panelHeight + 16)\">\(p)</text>")
                }
                for i in 0...4 {
                    let v = low + (high - low) * Double(i) / 4
                    out.append("<line x1=\"\(left)\" x2=\"\(left + panelWidth)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#eee\"/>")
                    out.append("<text x=\"\(left - 48)\" y=\"\(y(v) + 4)\">\(String(format: "%.1f%%", 100 * v))</text>")
                }
                if metric == "accuracy" {
                    var references: [(String, Double, String)] = []
                    if let f = sweep.compactMap(\.floatTestAccuracy).first { references.append(("float", f, "#333")) }
                    for bits in [8, 4] {
                        if let q = rows.first(where: { $0.model == model && $0.quantizer == "qat" && $0.weightBits == bits }) {
                            references.append(("qat W\(bits)A\(bits) (P=32)", q.testAccuracy, bits == 8 ? "#2ca02c" : "#98df8a"))
                        }
                    }
                    for (i, (label, value, color)) in references.enumerated() {
                        out.append("<line x1=\"\(left)\" x2=\"\(left + panelWidth)\" y1=\"\(y(value))\" y2=\"\(y(value))\" stroke=\"\(color)\" stroke-dasharray=\"5,4\"/>")
                        out.append("<text x=\"\(left + 5 + Double(i) * 140)\" y=\"\(y(value) - 4)\" fill=\"\(color)\">\(label) \(String(format: "%.1f%%", 100 * value))</text>")
                    }
                }
                var legend = 0
                for bits in [8, 4] {
                    for q in ["a2q", "a2q+"] {
                        let points = sweep.filter { $0.quantizer == q && $0.weightBits == bits }.sorted { $0.accumulatorBits < $1.accumulatorBits }
                        guard !points.isEmpty else { continue }
                        let key = "\(q) W\(bits)A\(bits)", color = colors[key] ?? "#000"
                        let path = points.map { "\(x(Double($0.accumulatorBits))),\(y(metric == "accuracy" ? $0.testAccuracy : $0.sparsity))" }.joined(separator: " ")
                        out.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
                        for p in points {
                            out.append("<circle cx=\"\(x(Double(p.accumulatorBits)))\" cy=\"\(y(metric == "accuracy" ? p.testAccuracy : p.sparsity))\" r=\"3\" fill=\"\(color)\"/>")
                        }
                        out.append("<text x=\"\(left + panelWidth - 110)\" y=\"\(top + panelHeight - 10 - Double(legend) * 15)\" fill=\"\(color)\">\(key)</text>")
                        legend += 1
                    }
                }
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
