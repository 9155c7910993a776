import A2QTrain
import Foundation
import Testing

@Suite("Sweep report")
struct ReportTests {
    func row(_ quantizer: String, _ bits: Int, _ p: Int, _ accuracy: Double, sparsity: Double = 0.5) -> SweepReport.Row {
        SweepReport.Row(run: "cnn-\(quantizer)-p\(p)", model: "cnn", quantizer: quantizer, weightBits: bits, actBits: bits,
                        accumulatorBits: p, initMethod: "ep-scaled", testAccuracy: accuracy, integerAccuracy: accuracy,
                        sparsity: sparsity, pMin: ["conv2": p, "fc1": p - 1], verified: quantizer != "qat",
                        floatTestAccuracy: 0.9)
    }

    @Test("CSV has one line per run with p_min per layer and the verdict; the SVG draws every series")
    func csvAndSvg() {
        let rows = [row("a2q", 8, 16, 0.85), row("a2q+", 8, 16, 0.88), row("a2q", 8, 12, 0.5), row("a2q+", 8, 12, 0.8),
                    row("qat", 8, 32, 0.89)]
        let csv = SweepReport.csv(rows).split(separator: "\n")
        #expect(csv.count == 6)
        #expect(csv[2].contains("a2q+,8,8,16,ep-scaled,0.8800,0.8800,0.5000,conv2:16;fc1:15,yes"))
        #expect(csv[5].hasSuffix(",no"))
        let svg = SweepReport.svg(rows)
        #expect(svg.hasPrefix("<svg") && svg.contains("</svg>"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 4)  // a2q and a2q+ W8A8, in both panels
        #expect(svg.contains("float 90.0%") && svg.contains("qat W8A8 (P=32) 89.0%"))
    }
}
