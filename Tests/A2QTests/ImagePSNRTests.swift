import A2QCore
import A2QData
import Foundation
import Testing

@Suite("PSNR on outputs rounded to 8 bits, per image then averaged")
struct ImagePSNRTests {
    @Test("by hand: every level one off gives 10·log10(255²) = 48.1308 dB, a perfect image 100 dB, levels clamp before the difference; the mean is over images")
    func handComputed() {
        let n = 2 * 3 * 4 * 4
        let targets = Tensor(shape: [2, 3, 4, 4], values: (0..<n).map { PixelLevel.unit(UInt8($0 % 200 + 20)) })
        let outputs = Tensor(shape: [2, 3, 4, 4], values: targets.array)
        for i in 0..<48 { outputs.data[i] += 1 / 255 }  // image 0: every level one above
        let values = PSNR.perImage(outputs: outputs, targets: targets)
        #expect(abs(values[0] - 10 * log10(255.0 * 255.0)) < 1e-12 && abs(values[0] - 48.130_803_6) < 1e-6, "\(values)")
        #expect(values[1] == 100)
        var meter = PSNR.Meter()
        meter.add(outputs: outputs, targets: targets)
        #expect(meter.count == 2 && abs(meter.mean - (values[0] + 100) / 2) < 1e-12)
        // Out of range outputs clamp: 1.7 is level 255, −0.2 is level 0; half a level rounds up.
        #expect(PixelLevel.level(unit: 1.7) == 255 && PixelLevel.level(unit: -0.2) == 0 && PixelLevel.level(unit: .nan) == 0)
        #expect(PixelLevel.level(127.5) == 128 && PixelLevel.level(127.49) == 127)
        #expect(PSNR.decibels(meanSquaredError: 1e-12) == 100)
    }

    @Test("random outputs (out of range and near half levels included) against NumPy: per image and mean within 1e-9 dB")
    func agreesWithNumPy() throws {
        let folder = temporaryFolder("image-psnr")
        let n = 6, size = 3 * 10 * 12
        var generator = Xoshiro256(seed: 11)
        var targets = [Float](), outputs = [Float]()
        for image in 0..<n {
            for _ in 0..<size {
                let level = UInt8(truncatingIfNeeded: generator.next())
                targets.append(PixelLevel.unit(level))
                switch image {
                case 0: outputs.append(PixelLevel.unit(level))                              // perfect
                case 1: outputs.append(generator.uniform(-0.3, 1.3))                        // clamps
                case 2: outputs.append((Float(level) + 0.5 + generator.uniform(-0.01, 0.01)) / 255)  // near half levels
                default: outputs.append(PixelLevel.unit(level) + generator.normal() * Float(image) / 255)
                }
            }
        }
        let outputPath = folder + "/outputs.f32", targetPath = folder + "/targets.f32"
        try outputs.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: outputPath)) }
        try targets.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: targetPath)) }
        let output = try ImageReferences.run(["psnr", outputPath, targetPath, "\(n)"])
        let json = output.split(separator: "\n").last.map(String.init) ?? ""
        let reference = (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]) ?? [:]
        let numpy = reference["per_image"] as? [Double] ?? []
        let swift = PSNR.perImage(outputs: Tensor(shape: [n, 3, 10, 12], values: outputs), targets: Tensor(shape: [n, 3, 10, 12], values: targets))
        #expect(numpy.count == n && swift.count == n)
        for (a, b) in zip(swift, numpy) { #expect(abs(a - b) < 1e-9, "\(swift) vs NumPy \(numpy)") }
        var meter = PSNR.Meter()
        meter.add(outputs: Tensor(shape: [n, 3, 10, 12], values: outputs), targets: Tensor(shape: [n, 3, 10, 12], values: targets))
        #expect(abs(meter.mean - (reference["mean"] as? Double ?? .nan)) < 1e-9)
        #expect(swift[0] == 100 && swift[1] < 20)
    }
}
