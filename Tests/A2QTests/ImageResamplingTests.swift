import A2QCore
import A2QData
import Foundation
import Testing

@Suite("Bicubic resampling (PIL's antialiased bicubic, in double) against Pillow's Image.resize(BICUBIC)")
struct ImageResamplingTests {
    /// Pillow's weights are 22-bit fixed point; these are doubles, so a sum within ~10⁻⁵ of a
    /// half level may round the other way. Measured against Pillow 13.0.0 (28 cases, noise and
    /// smooth pictures, wide, tall and square, down by 2–4, up by 2–3, two factors): every level
    /// equal or one off, at most 0.42% of a case's levels one off (noise downscaled by 3). The
    /// direct `resize` agrees as closely wherever Pillow filters rows first, which it does for
    /// images at least as wide as tall scaled by one factor (the data pipeline's square crops,
    /// the bicubic baseline); for tall images and two factors Pillow 13 may filter columns
    /// first, and its clamp between the passes then differs by up to 21 levels on noise.
    @Test("rows then columns, as Pillow does: every level within 1 of Pillow's and at most 1% of a case's levels differing; Pillow's direct resize the same for one factor on images at least as wide as tall")
    func agreesWithPillow() throws {
        let folder = temporaryFolder("image-resize")
        _ = try ImageReferences.run(["resize", folder])
        let cases = try ImageReferences.json(folder + "/manifest.json")["cases"] as? [[String: Any]] ?? []
        #expect(cases.count == 28)
        var summary: [String] = [], directChecked = 0
        for entry in cases {
            guard let source = entry["source"] as? String, let width = entry["width"] as? Int, let height = entry["height"] as? Int,
                  let rowsFirst = entry["rows_first"] as? String, let direct = entry["direct"] as? String,
                  let uniform = entry["uniform"] as? Bool else { continue }
            let image = try Image.read(path: folder + "/" + source)
            let resized = BicubicResampler.resize(image, width: width, height: height)
            var references = [("rows-first", rowsFirst)]
            if uniform && image.width >= image.height {
                references.append(("direct", direct))
                directChecked += 1
            }
            for (kind, file) in references {
                let pillow = try ImageReferences.rawImage(folder + "/" + file, width: width, height: height)
                let (maximum, differing) = ImageReferences.difference(resized, pillow)
                let share = Double(differing) / Double(resized.pixels.count)
                summary.append("\(source)→\(width)×\(height) \(kind): max \(maximum), \(String(format: "%.2f", 100 * share))%")
                #expect(maximum <= 1 && share <= 0.01, "\(source) → \(width)×\(height) vs Pillow \(kind): \(differing) levels differ, by up to \(maximum)")
            }
        }
        #expect(directChecked == 15)
        print("bicubic vs Pillow: " + summary.joined(separator: "; "))
    }

    @Test("a constant image stays constant at every size (weights sum to 1, borders renormalised); the same size gives the same image; downscale crops to a multiple of the factor first")
    func basicProperties() {
        let flat = Image(width: 17, height: 11, repeating: 201)
        for (w, h) in [(8, 5), (5, 3), (34, 22), (51, 33), (17, 11)] {
            #expect(BicubicResampler.resize(flat, width: w, height: h).pixels.allSatisfy { $0 == 201 }, "\(w)×\(h)")
        }
        var generator = Xoshiro256(seed: 3)
        let noise = Image(width: 13, height: 9, pixels: (0..<(3 * 13 * 9)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        #expect(BicubicResampler.resize(noise, width: 13, height: 9) == noise)
        let small = BicubicResampler.downscale(noise, factor: 3)
        #expect(small.width == 4 && small.height == 3)
        #expect(small == BicubicResampler.resize(noise.cropped(x: 0, y: 0, width: 12, height: 9), width: 4, height: 3))
        let large = BicubicResampler.upscale(small, factor: 3)
        #expect(large.width == 12 && large.height == 9)
    }
}
