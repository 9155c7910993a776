import A2QCore
import Foundation

/// Collects a sweep folder (one run per subfolder: config.json, summary.json, integer.json,
/// verify.json) into rows, CSV, JSON, a Markdown table and an SVG plot. The task's metric
/// (accuracy for classifiers, PSNR for restoration) names the columns; one folder holds one
/// task's runs.
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
        /// What the run was trained for; names the metric.
        public var task: TaskKind
        /// The fake-quantized (or float) model's test metric (`summary.json`).
        public var testMetric: Double
        /// The integer engine's test metric (`integer.json`, `a2q eval --integer --json`).
        public var integerMetric: Double?
        /// Zero fraction over the constrained (hidden) layers' integer weights.
        public var sparsity: Double
        /// `layer:p_min` for every quantized layer.
        public var pMin: [String: Int]
        /// `verify`: every layer proven overflow-free.
        public var verified: Bool?
        /// The float model the run started from (its test metric).
        public var floatTestMetric: Double?
        /// Restoration: bicubic upscaling's PSNR on the same test crops (`integer.json`).
        public var bicubicPSNR: Double?

        public init(run: String, model: String, quantizer: String, weightBits: Int, actBits: Int, accumulatorBits: Int,
                    initMethod: String, task: TaskKind = .classification, testMetric: Double, integerMetric: Double?,
                    sparsity: Double, pMin: [String: Int], verified: Bool?, floatTestMetric: Double?, bicubicPSNR: Double? = nil) {
            self.run = run
            self.model = model
            self.quantizer = quantizer
            self.weightBits = weightBits
            self.actBits = actBits
            self.accumulatorBits = accumulatorBits
            self.initMethod = initMethod
            self.task = task
            self.testMetric = testMetric
            self.integerMetric = integerMetric
            self.sparsity = sparsity
            self.pMin = pMin
            self.verified = verified
            self.floatTestMetric = floatTestMetric
            self.bicubicPSNR = bicubicPSNR
        }

        /// The metric's name (`accuracy`, `psnr`).
        public var metric: String { task.metricName }

        /// Keys named at run time (`test_<metric>`).
        typealias Key = OptionKey

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            task = try c.decodeIfPresent(TaskKind.self, forKey: Key("task")) ?? .classification
            let metric = task.metricName
            run = try c.decode(String.self, forKey: Key("run"))
            model = try c.decode(String.self, forKey: Key("model"))
            quantizer = try c.decode(String.self, forKey: Key("quantizer"))
            weightBits = try c.decode(Int.self, forKey: Key("weight_bits"))
            actBits = try c.decode(Int.self, forKey: Key("act_bits"))
            accumulatorBits = try c.decode(Int.self, forKey: Key("accumulator_bits"))
            initMethod = try c.decode(String.self, forKey: Key("init"))
            testMetric = try c.decode(Double.self, forKey: Key("test_\(metric)"))
            integerMetric = try c.decodeIfPresent(Double.self, forKey: Key("integer_\(metric)"))
            sparsity = try c.decode(Double.self, forKey: Key("sparsity"))
            pMin = try c.decode([String: Int].self, forKey: Key("p_min"))
            verified = try c.decodeIfPresent(Bool.self, forKey: Key("verified"))
            floatTestMetric = try c.decodeIfPresent(Double.self, forKey: Key("float_test_\(metric)"))
            bicubicPSNR = try c.decodeIfPresent(Double.self, forKey: Key("bicubic_psnr"))
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(run, forKey: Key("run"))
            try c.encode(model, forKey: Key("model"))
            try c.encode(quantizer, forKey: Key("quantizer"))
            try c.encode(weightBits, forKey: Key("weight_bits"))
            try c.encode(actBits, forKey: Key("act_bits"))
            try c.encode(accumulatorBits, forKey: Key("accumulator_bits"))
            try c.encode(initMethod, forKey: Key("init"))
            try c.encode(task, forKey: Key("task"))
            try c.encode(testMetric, forKey: Key("test_\(metric)"))
            try c.encodeIfPresent(integerMetric, forKey: Key("integer_\(metric)"))
            try c.encode(sparsity, forKey: Key("sparsity"))
            try c.encode(pMin, forKey: Key("p_min"))
            try c.encodeIfPresent(verified, forKey: Key("verified"))
            try c.encodeIfPresent(floatTestMetric, forKey: Key("float_test_\(metric)"))
            try c.encodeIfPresent(bicubicPSNR, forKey: Key("bicubic_psnr"))
        }
    }

    /// Reads every finished run under `folder`, in name order. Throws when the folder mixes
    /// tasks (their metrics cannot share a column).
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
            let task = (summary["task"] as? String).flatMap(TaskKind.init(rawValue:)) ?? .classification
            let metric = task.metricName
            guard let testMetric = summary["test_\(metric)"] as? Double else {
                throw A2QError("\(dir)/summary.json has no test_\(metric) (task \(task.rawValue)); is it a finished a2q run?")
            }
            let constrained = config.quantizer.isAccumulatorAware
            rows.append(Row(run: name, model: config.model.rawValue, quantizer: config.quantizer.rawValue,
                            weightBits: config.weightBits, actBits: config.actBits,
                            accumulatorBits: constrained ? config.accumulatorBits : 32, initMethod: config.init_.rawValue,
                            task: task, testMetric: testMetric, integerMetric: integer?[metric] as? Double,
                            sparsity: constrained ? summary["sparsity"] as? Double ?? 0 : 0, pMin: pMin,
                            verified: verify?["overflow_free"] as? Bool,
                            floatTestMetric: summary["float_test_\(metric)"] as? Double,
                            bicubicPSNR: integer?["bicubic_psnr"] as? Double))
        }
        if let first = rows.first, let other = rows.first(where: { $0.task != first.task }) {
            throw A2QError("\(folder) mixes \(first.task.rawValue) runs (\(first.run)) and \(other.task.rawValue) runs (\(other.run)); "
                           + "report one task per sweep folder")
        }
        return rows
    }

    /// A metric value as the tables print it: accuracy as a fraction with 4 decimals, PSNR in dB
    /// with 2.
    static func format(_ value: Double, _ task: TaskKind) -> String {
        String(format: task == .classification ? "%.4f" : "%.2f", value)
    }

    /// A metric value for people: accuracy in percent, PSNR in dB.
    static func display(_ value: Double, _ task: TaskKind) -> String {
        task == .classification ? String(format: "%.2f%%", 100 * value) : String(format: "%.2f dB", value)
    }

    public static func csv(_ rows: [Row]) -> String {
        let metric = rows.first?.metric ?? TaskKind.classification.metricName
        var lines = ["run,model,quantizer,weight_bits,act_bits,accumulator_bits,init,test_\(metric),integer_\(metric),sparsity,p_min,verified"]
        for r in rows {
            let p = r.pMin.keys.sorted().map { "\($0):\(r.pMin[$0] ?? 0)" }.joined(separator: ";")
            lines.append([r.run, r.model, r.quantizer, "\(r.weightBits)", "\(r.actBits)", "\(r.accumulatorBits)", r.initMethod,
                          format(r.testMetric, r.task), r.integerMetric.map { format($0, r.task) } ?? "",
                          String(format: "%.4f", r.sparsity), p, r.verified.map { $0 ? "yes" : "no" } ?? ""].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The README's table: per model, bicubic (restoration) and float first, then every run by
    /// bit width, quantizer and P (32 for qat: no accumulator constraint, verified at 32 bits):
    /// the fake-quantized metric, the integer engine's, sparsity of the constrained layers and
    /// `verify`'s verdict.
    public static func markdown(_ rows: [Row]) -> String {
        let task = rows.first?.task ?? .classification
        let name = task == .classification ? "accuracy" : "PSNR"
        var lines = ["| model | W/A | quantizer | P | \(name) (fake-quantized) | \(name) (integer engine) | sparsity | verify |",
                     "|---|---|---|---|---|---|---|---|"]
        let order = ["float": 0, "qat": 1, "a2q": 2, "a2q+": 3]
        for model in Array(Set(rows.map(\.model))).sorted() {
            let runs = rows.filter { $0.model == model }
            if let bicubic = runs.compactMap(\.bicubicPSNR).first {
                lines.append("| \(model) | - | bicubic | - | \(display(bicubic, task)) | - | - | - |")
            }
            if !runs.contains(where: { $0.quantizer == "float" }), let float = runs.compactMap(\.floatTestMetric).first {
                lines.append("| \(model) | float | float (the runs' float phase) | - | \(display(float, task)) | - | - | - |")
            }
            let sorted = runs.sorted {
                ($0.quantizer == "float" ? 0 : 1, -$0.weightBits, order[$0.quantizer] ?? 9, -$0.accumulatorBits, $0.run)
                    < ($1.quantizer == "float" ? 0 : 1, -$1.weightBits, order[$1.quantizer] ?? 9, -$1.accumulatorBits, $1.run)
            }
            for r in sorted {
                let floatRun = r.quantizer == "float"
                lines.append("| \(model) | \(floatRun ? "float" : "W\(r.weightBits)A\(r.actBits)") | \(r.quantizer) | "
                             + "\(floatRun ? "-" : "\(r.accumulatorBits)") | \(display(r.testMetric, task)) | "
                             + "\(r.integerMetric.map { display($0, task) } ?? "-") | "
                             + "\(r.quantizer.hasPrefix("a2q") ? String(format: "%.1f%%", 100 * r.sparsity) : "-") | "
                             + "\(r.verified.map { $0 ? "overflow-free" : "CAN OVERFLOW" } ?? "-") |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Two panels per model: the task's metric and sparsity against accumulator bits, one line
    /// per quantizer and bit width; float, 32-bit qat and (restoration) bicubic as horizontal
    /// references.
    public static func svg(_ rows: [Row]) -> String {
        let task = rows.first?.task ?? .classification
        let classification = task == .classification
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
            var references: [(String, Double, String)] = []
            if let f = sweep.compactMap(\.floatTestMetric).first ?? rows.first(where: { $0.model == model && $0.quantizer == "float" })?.testMetric {
                references.append(("float", f, "#333"))
            }
            for bits in [8, 4] {
                if let q = rows.first(where: { $0.model == model && $0.quantizer == "qat" && $0.weightBits == bits }) {
                    references.append(("qat W\(bits)A\(bits) (P=32)", q.testMetric, bits == 8 ? "#2ca02c" : "#98df8a"))
                }
            }
            if let bicubic = rows.first(where: { $0.model == model && $0.bicubicPSNR != nil })?.bicubicPSNR {
                references.append(("bicubic", bicubic, "#8c564b"))
            }
            for (panel, showsMetric) in [true, false].enumerated() {
                let left = margin + Double(panel) * (panelWidth + margin)
                func value(_ r: Row) -> Double { showsMetric ? r.testMetric : r.sparsity }
                let values = sweep.map(value) + (showsMetric ? references.map(\.1) : [])
                let (low, high): (Double, Double)
                if !showsMetric { (low, high) = (0, 1) }
                else if classification { (low, high) = (max(0, (values.min() ?? 0) - 0.02), min(1, (values.max() ?? 1) + 0.01)) }
                else { (low, high) = ((values.min() ?? 0) - 0.5, (values.max() ?? 1) + 0.5) }
                func x(_ p: Double) -> Double { left + (p - pLow) / max(pHigh - pLow, 1) * panelWidth }
                func y(_ v: Double) -> Double { top + panelHeight - (v - low) / max(high - low, 1e-9) * panelHeight }
                func label(_ v: Double) -> String { showsMetric ? display(v, task) : String(format: "%.1f%%", 100 * v) }
                out.append("<rect x=\"\(left)\" y=\"\(top)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#999\"/>")
                let title = showsMetric ? (classification ? "test accuracy" : "test PSNR") : "sparsity of constrained layers"
                out.append("<text x=\"\(left)\" y=\"\(top - 10)\" font-size=\"14\">\(model): \(title) vs accumulator bits P</text>")
                for p in stride(from: Int(pLow), through: Int(pHigh), by: 1) {
                    out.append("<text x=\"\(x(Double(p)) - 6)\" y=\"\(top + panelHeight + 16)\">\(p)</text>")
                }
                for i in 0...4 {
                    let v = low + (high - low) * Double(i) / 4
                    out.append("<line x1=\"\(left)\" x2=\"\(left + panelWidth)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#eee\"/>")
                    out.append("<text x=\"\(left - 52)\" y=\"\(y(v) + 4)\">\(label(v))</text>")
                }
                if showsMetric {
                    for (i, (name, v, color)) in references.enumerated() {
                        out.append("<line x1=\"\(left)\" x2=\"\(left + panelWidth)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"\(color)\" stroke-dasharray=\"5,4\"/>")
                        out.append("<text x=\"\(left + 5 + Double(i % 3) * 140)\" y=\"\(y(v) - 4)\" fill=\"\(color)\">\(name) \(label(v))</text>")
                    }
                }
                var legend = 0
                for bits in [8, 4] {
                    for q in ["a2q", "a2q+"] {
                        let points = sweep.filter { $0.quantizer == q && $0.weightBits == bits }.sorted { $0.accumulatorBits < $1.accumulatorBits }
                        guard !points.isEmpty else { continue }
                        let key = "\(q) W\(bits)A\(bits)", color = colors[key] ?? "#000"
                        let path = points.map { "\(x(Double($0.accumulatorBits))),\(y(value($0)))" }.joined(separator: " ")
                        out.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
                        for p in points {
                            out.append("<circle cx=\"\(x(Double(p.accumulatorBits)))\" cy=\"\(y(value(p)))\" r=\"3\" fill=\"\(color)\"/>")
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
