import A2QCheckpoint
import A2QCore
import A2QData
import A2QNN
import A2QTrain
import Foundation
import Testing

/// Image restoration end to end: a short ESPCN run on the default photo set, its metric in
/// every report, the fake-quantized graph against the integer engine, `verify`, exports run
/// by onnxruntime and qonnx, and `a2q upscale`.
@Suite("Restoration (ESPCN ×2) end to end", .serialized)
struct RestorationTests {
    static let run: Result<String, Error> = Result {
        let folder = temporaryFolder("espcn")
        let trained = try runA2Q(["train", "--model", "espcn", "--quantizer", "a2q+", "--accumulator-bits", "16", "--float-epochs", "2",
                                  "--epochs", "1", "--crop-size", "32", "--crops-per-image", "8", "--batch-size", "16",
                                  "--log-every", "1000", "--out", folder + "/run"], timeout: 600)
        guard trained.status == 0 else { throw Failure.training(trained.output) }
        return folder + "/run"
    }

    enum Failure: Error { case training(String) }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not JSON: \(text)")
    }

    @Test("mean squared error: the loss is Σ(y − t)²/n and its gradient matches central finite differences", arguments: [[1, 1], [2, 3, 4, 5], [3, 7]])
    func meanSquaredError(shape: [Int]) {
        var g = Xoshiro256(seed: UInt64(shape.reduce(1, *)))
        let y = randomTensor(shape, &g), t = randomTensor(shape, &g)
        let loss = MeanSquaredError()
        let value = Double(loss.forward(y, target: t))
        let n = Double(y.count)
        let expected = (0..<y.count).reduce(0.0) { $0 + pow(Double(y[$1]) - Double(t[$1]), 2) } / n
        #expect(abs(value - expected) <= 1e-6 * max(1, expected))
        let gradient = loss.backward().array
        let h = 1e-3
        for i in 0..<y.count {
            func at(_ shift: Double) -> Double {
                (0..<y.count).reduce(0.0) { total, j in
                    let d = Double(y[j]) + (j == i ? shift : 0) - Double(t[j])
                    return total + d * d
                } / n
            }
            let numeric = (at(h) - at(-h)) / (2 * h)
            #expect(abs(Double(gradient[i]) - numeric) < 1e-4, "∂L/∂y[\(i)]: \(gradient[i]) vs \(numeric)")
        }
    }

    @Test("summary.json and metrics.jsonl report PSNR (and the bicubic baseline), never accuracy")
    func reportsTheTasksMetric() throws {
        let run = try Self.run.get()
        let summary = try Self.json(try String(contentsOfFile: run + "/summary.json", encoding: .utf8))
        #expect(summary["task"] as? String == "restoration" && summary["metric"] as? String == "psnr", "\(summary)")
        let psnr = try #require(summary["test_psnr"] as? Double)
        #expect(psnr > 5 && psnr < 60 && summary["test_accuracy"] == nil && summary["float_test_psnr"] is Double)
        let lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map { try Self.json(String($0)) }
        let baseline = try #require(lines.first { $0["type"] as? String == "baseline" })
        #expect((baseline["bicubic_psnr"] as? Double ?? 0) > 20 && baseline["upscale_factor"] as? Int == 2, "\(baseline)")
        let epochs = lines.filter { $0["type"] as? String == "epoch" }
        #expect(epochs.count == 3 && epochs.allSatisfy { $0["test_psnr"] is Double && $0["test_accuracy"] == nil })
        #expect(lines.filter { $0["type"] as? String == "step" }.allSatisfy { $0["psnr"] is Double && $0["accuracy"] == nil })
    }

    @Test("the integer engine's PSNR equals the fake-quantized model's to 0.01 dB with no overflow; verify proves the model; the export evaluates the same")
    func integerEngineMatches() throws {
        let run = try Self.run.get()
        let fake = try Self.json(try runA2Q(["eval", run + "/final.h5", "--json"], timeout: 300).output)
        let integer = try Self.json(try runA2Q(["eval", "--integer", run + "/final.h5", "--json"], timeout: 300).output)
        let a = try #require(fake["psnr"] as? Double), b = try #require(integer["psnr"] as? Double)
        #expect(abs(a - b) < 0.01, "fake-quantized \(a) dB, integer \(b) dB")
        #expect(fake["bicubic_psnr"] as? Double == integer["bicubic_psnr"] as? Double)
        let layers = try #require(integer["layers"] as? [[String: Any]])
        #expect(layers.count == 4 && layers.allSatisfy { $0["final_overflows"] as? Int == 0 && $0["proven_safe"] as? Bool == true }, "\(layers)")
        let summary = try Self.json(try String(contentsOfFile: run + "/summary.json", encoding: .utf8))
        #expect(abs((summary["test_psnr"] as? Double ?? 0) - a) < 1e-9, "the run's own evaluation and eval differ")

        // The same first test crop through `a2q upscale` (the engine's pixels as a PNG, PSNR from
        // their levels): eval's PSNR of that image is the same number.
        let first = try #require(try ImageFolder.split(RestorationData.defaultFolder).test.first)
        let image = try Image.read(path: first)
        let side = try #require(integer["crop"] as? Int)
        let crop = run + "/first-crop.png"
        try image.cropped(x: (image.width - side) / 2, y: (image.height - side) / 2, width: side, height: side).writePNG(path: crop)
        let one = try Self.json(try runA2Q(["eval", "--integer", run + "/final.h5", "--limit", "1", "--json"], timeout: 300).output)
        let upscaled = try Self.json(try runA2Q(["upscale", run + "/final.h5", crop, "--from-original", "--out", run + "/first-x2.png", "--json"],
                                                timeout: 300).output)
        let p1 = try #require(one["psnr"] as? Double), p2 = try #require(upscaled["psnr"] as? Double)
        #expect(abs(p1 - p2) < 1e-9, "eval \(p1) dB, upscale \(p2) dB on \(first)")

        #expect(try runA2Q(["verify", run + "/final.h5"]).status == 0)
        let export = run + "/model.h5"
        #expect(try runA2Q(["export", run + "/final.h5", "--out", export]).status == 0)
        let exported = try Self.json(try runA2Q(["eval", "--integer", export, "--json"], timeout: 300).output)
        #expect(exported["psnr"] as? Double == b)
        // A narrow what-if register overflows and costs PSNR.
        let narrow = try Self.json(try runA2Q(["eval", "--integer", export, "--accumulator-bits", "10", "--json"], timeout: 300).output)
        let squeezed = try #require(narrow["layers"] as? [[String: Any]]).filter { $0["accumulator_bits"] as? Int == 10 }
        #expect(squeezed.count == 2 && squeezed.contains { ($0["final_overflows"] as? Int ?? 0) > 0 }, "\(squeezed)")
    }

    @Test("a2q upscale: a whole image through the integer engine, PSNR against the original, a side-by-side picture; onnxruntime and qonnx give the engine's pixels; bad inputs are refused")
    func upscale() throws {
        let run = try Self.run.get()
        let original = RestorationData.defaultFolder + "/images/test/skimage-chelsea.png"
        let out = run + "/chelsea-x2.png", compare = run + "/chelsea-compare.png"
        let result = try runA2Q(["upscale", run + "/final.h5", original, "--from-original", "--out", out, "--compare", compare, "--json"],
                                timeout: 300)
        #expect(result.status == 0, "\(result.output)")
        let report = try Self.json(result.output)
        let source = try Image.read(path: original).croppedToMultiple(of: 2)
        let upscaled = try Image.read(path: out)
        #expect(upscaled.width == source.width && upscaled.height == source.height)
        #expect((report["psnr"] as? Double ?? 0) > 10 && (report["bicubic_psnr"] as? Double ?? 0) > 20, "\(report)")
        let picture = try Image.read(path: compare)
        #expect(picture.width == 4 * source.width + 3 * 8 && picture.height == source.height)

        // The exports of the model, on an image of their input size (the training crop's input).
        for (format, file) in [("qonnx", run + "/model.qonnx.onnx"), ("onnx", run + "/model.onnx")] {
            let export = try runA2Q(["export", run + "/final.h5", "--format", format, "--out", file])
            #expect(export.status == 0, "\(format): \(export.output)")
        }
        let small = run + "/small.png", smallOut = run + "/small-x2.png"
        try source.cropped(x: 40, y: 30, width: 16, height: 16).writePNG(path: small)
        #expect(try runA2Q(["upscale", run + "/final.h5", small, "--out", smallOut]).status == 0)
        let (status, output) = try python("restoration_interop.py", [run + "/model.qonnx.onnx", run + "/model.onnx", small, smallOut])
        #expect(status == 0, "\(output)")

        // --region: the same pixels as upscaling a file holding only that region; outside the image it is refused.
        let regionFile = run + "/region.png"
        try Image.read(path: original).cropped(x: 40, y: 30, width: 48, height: 32).writePNG(path: regionFile)
        #expect(try runA2Q(["upscale", run + "/final.h5", regionFile, "--from-original", "--out", run + "/region-file-x2.png"]).status == 0)
        let regional = try runA2Q(["upscale", run + "/final.h5", original, "--from-original", "--region", "40,30,48,32",
                                   "--out", run + "/region-x2.png"])
        #expect(regional.status == 0, "\(regional.output)")
        let fromRegion = try Image.read(path: run + "/region-x2.png"), fromFile = try Image.read(path: run + "/region-file-x2.png")
        #expect(fromRegion.width == 48 && fromRegion.height == 32 && fromRegion.pixels == fromFile.pixels)
        let outside = try runA2Q(["upscale", run + "/final.h5", original, "--region", "440,0,32,32", "--out", run + "/z.png"])
        #expect(outside.status == 1 && outside.output.contains("--region") && !FileManager.default.fileExists(atPath: run + "/z.png"),
                "\(outside.output)")

        let text = run + "/not-an-image.png"
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        let refused = try runA2Q(["upscale", run + "/final.h5", text, "--out", run + "/x.png"])
        #expect(refused.status == 1 && refused.output.contains("not-an-image.png") && !FileManager.default.fileExists(atPath: run + "/x.png"),
                "\(refused.output)")
        let classifier = try runA2Q(["upscale", run + "/missing.h5", small, "--out", run + "/y.png"])
        #expect(classifier.status == 1, "\(classifier.output)")
    }
}
