import A2QCore
import A2QTrain
import Foundation
import Testing

@Suite("Sweep report")
struct ReportTests {
    func row(_ quantizer: String, _ bits: Int, _ p: Int, _ accuracy: Double, sparsity: Double = 0.5) -> SweepReport.Row {
        SweepReport.Row(run: "cnn-\(quantizer)-p\(p)", model: "cnn", quantizer: quantizer, weightBits: bits, actBits: bits,
                        accumulatorBits: p, initMethod: "ep-scaled", testMetric: accuracy, integerMetric: accuracy,
                        sparsity: sparsity, pMin: ["conv2": p, "fc1": p - 1], verified: quantizer != "qat",
                        floatTestMetric: 0.9)
    }

    @Test("CSV has one line per run with p_min per layer and the verdict; the SVG draws every series")
    func csvAndSvg() {
        let rows = [row("a2q", 8, 16, 0.85), row("a2q+", 8, 16, 0.88), row("a2q", 8, 12, 0.5), row("a2q+", 8, 12, 0.8),
                    row("qat", 8, 32, 0.89)]
        let csv = SweepReport.csv(rows).split(separator: "\n")
        #expect(csv.count == 6)
        #expect(csv[0].contains(",test_accuracy,integer_accuracy,"))
        #expect(csv[2].contains("a2q+,8,8,16,ep-scaled,0.8800,0.8800,0.5000,conv2:16;fc1:15,yes"))
        #expect(csv[5].hasSuffix(",no"))
        let svg = SweepReport.svg(rows)
        #expect(svg.hasPrefix("<svg") && svg.contains("</svg>"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 4)  // a2q and a2q+ W8A8, in both panels
        #expect(svg.contains("float 90.00%") && svg.contains("qat W8A8 (P=32) 89.00%"))
    }

    /// Writes one finished run folder as `a2q train`, `eval --integer --json` and `verify --json` leave it.
    func writeRun(_ folder: URL, _ name: String, config: TrainConfig, summary: [String: Any], integer: [String: Any]?,
                  verified: Bool?) throws {
        let dir = folder.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try config.json(pretty: true).write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try JSONSerialization.data(withJSONObject: summary).write(to: dir.appendingPathComponent("summary.json"))
        if let integer { try JSONSerialization.data(withJSONObject: integer).write(to: dir.appendingPathComponent("integer.json")) }
        if let verified {
            try JSONSerialization.data(withJSONObject: ["overflow_free": verified]).write(to: dir.appendingPathComponent("verify.json"))
        }
    }

    @Test("A restoration sweep reports PSNR in every form: CSV and JSON columns, the Markdown table with bicubic, the plot in dB")
    func restorationSweep() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("a2q-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        var float = TrainConfig()
        float.model = .espcn
        float.quantizer = .float
        try writeRun(folder, "float-espcn", config: float,
                     summary: ["task": "restoration", "metric": "psnr", "test_psnr": 31.9, "sparsity": 0.0, "layers": []],
                     integer: nil, verified: nil)
        var a2qPlus = float
        a2qPlus.quantizer = .a2qPlus
        a2qPlus.accumulatorBits = 16
        try writeRun(folder, "espcn-a2q+-p16", config: a2qPlus,
                     summary: ["task": "restoration", "metric": "psnr", "test_psnr": 31.25, "float_test_psnr": 31.9, "sparsity": 0.42,
                               "layers": [["name": "conv2", "p_min": 16]]],
                     integer: ["psnr": 31.2468, "bicubic_psnr": 30.4955], verified: true)
        let rows = try SweepReport.collect(folder.path)
        #expect(rows.map(\.run) == ["espcn-a2q+-p16", "float-espcn"])
        #expect(rows[0].task == .restoration && rows[0].testMetric == 31.25 && rows[0].integerMetric == 31.2468)
        #expect(rows[0].bicubicPSNR == 30.4955 && rows[0].floatTestMetric == 31.9 && rows[0].pMin == ["conv2": 16])
        let csv = SweepReport.csv(rows).split(separator: "\n")
        #expect(csv[0].contains(",test_psnr,integer_psnr,") && !csv[0].contains("accuracy"))
        #expect(csv[1].contains("a2q+,8,8,16,ep-scaled,31.25,31.25,0.4200,conv2:16,yes"))
        let json = try JSONEncoder().encode(rows)
        let decoded = try JSONDecoder().decode([SweepReport.Row].self, from: json)
        #expect(decoded[0].testMetric == 31.25 && decoded[0].bicubicPSNR == 30.4955 && decoded[0].task == .restoration)
        #expect(String(decoding: json, as: UTF8.self).contains("\"test_psnr\""))
        let table = SweepReport.markdown(rows).split(separator: "\n")
        #expect(table[0].contains("PSNR (fake-quantized)"))
        #expect(table[2] == "| espcn | - | bicubic | - | 30.50 dB | - | - | - |")
        #expect(table[3] == "| espcn | float | float | - | 31.90 dB | - | - | - |")
        #expect(table[4] == "| espcn | W8A8 | a2q+ | 16 | 31.25 dB | 31.25 dB | 42.0% | overflow-free |")
        // Without a float run, the float row is the runs' shared float phase.
        let quantizedOnly = SweepReport.markdown(rows.filter { $0.quantizer != "float" }).split(separator: "\n")
        #expect(quantizedOnly[3] == "| espcn | float | float (the runs' float phase) | - | 31.90 dB | - | - | - |")
        let svg = SweepReport.svg(rows)
        #expect(svg.contains("test PSNR vs accumulator bits") && svg.contains("bicubic 30.50 dB") && svg.contains("float 31.90 dB"))
        #expect(!svg.contains("test accuracy"))
    }

    @Test("A folder that mixes classification and restoration runs is refused, naming both")
    func mixedTasksRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("a2q-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        var config = TrainConfig()
        config.quantizer = .float
        try writeRun(folder, "a-cnn", config: config, summary: ["test_accuracy": 0.9, "sparsity": 0.0, "layers": []],
                     integer: nil, verified: nil)
        config.model = .espcn
        try writeRun(folder, "b-espcn", config: config, summary: ["task": "restoration", "test_psnr": 31.0, "sparsity": 0.0, "layers": []],
                     integer: nil, verified: nil)
        let error = #expect(throws: A2QError.self) { try SweepReport.collect(folder.path) }
        #expect(error.map { "\($0)".contains("a-cnn") && "\($0)".contains("b-espcn") } == true)
    }
}
