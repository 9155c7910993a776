import A2QCore
import A2QData
import A2QInteger
import A2QTrain
import ArgumentParser
import Foundation

/// `a2q upscale`: a restoration model's integer engine on one whole image.
struct UpscaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upscale",
        abstract: "Upscale an image (PNG or JPEG, any size) with a restoration model's integer engine; write a PNG.")

    @Argument(help: "A restoration model: an export or a checkpoint (e.g. a run's final.h5 of --model espcn).") var model: String
    @Argument(help: "The image to upscale (PNG or JPEG).") var image: String
    @Option(help: "Where to write the upscaled image (PNG).") var out: String
    @Flag(help: "IMAGE is an original: make the low-resolution input from it with the training pipeline's bicubic filter, and compare with it.")
    var fromOriginal = false
    @Option(help: "The original of IMAGE (for PSNR and --compare).") var reference: String?
    @Option(help: ArgumentHelp("Also write a side-by-side PNG: the input (enlarged, nearest neighbour), bicubic, the model's output and, given an original, the original.",
                               valueName: "file")) var compare: String?
    @Option(help: ArgumentHelp("Use only this region of IMAGE: left, top, width, height in IMAGE's pixels (with --reference, the original's matching region ×factor).",
                               valueName: "x,y,width,height")) var region: String?
    @Option(help: "Overflow behaviour of the P-bit accumulators: wrap, saturate or wide.") var overflow: OverflowMode = .wrap
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let integerModel = try ModelFiles.integerModel(model)
        guard integerModel.classes == 0 else {
            throw A2QError("\(model) is a classifier (\(integerModel.classes) classes), not a restoration model",
                           remedy: "pass an export or checkpoint of a restoration model, e.g. one trained with --model espcn")
        }
        let factor = integerModel.outputShape[1] / integerModel.inputShape[1]
        guard fromOriginal == false || reference == nil else {
            throw A2QError("--from-original takes IMAGE as the original; --reference names another", remedy: "pass one of them")
        }
        for path in [out] + (compare.map { [$0] } ?? []) {
            let folder = (path as NSString).deletingLastPathComponent
            try FileSystem.ensureWritableFolder(folder.isEmpty ? "." : folder)
        }
        let box = try region.map(Self.parseRegion)
        func cut(_ read: Image, _ path: String, scale: Int = 1) throws -> Image {
            guard let (x, y, width, height) = box else { return read }
            guard x + width <= read.width / scale, y + height <= read.height / scale else {
                throw A2QError("--region \(region ?? "") reaches beyond \(path) (\(read.width)×\(read.height)\(scale > 1 ? ", ×\(scale)" : ""))",
                               remedy: "choose a region inside the image")
            }
            return read.cropped(x: x * scale, y: y * scale, width: width * scale, height: height * scale)
        }
        var original: Image?
        let input: Image
        if fromOriginal {
            let read = try cut(try Image.read(path: image), image)
            guard read.width >= factor, read.height >= factor else {
                throw A2QError("\(image) is \(read.width)×\(read.height), smaller than the upscale factor \(factor)")
            }
            let full = read.croppedToMultiple(of: factor)
            original = full
            input = BicubicResampler(inputWidth: full.width, inputHeight: full.height, outputWidth: full.width / factor,
                                     outputHeight: full.height / factor).resize(full)
        } else {
            input = try cut(try Image.read(path: image), image)
            if let reference {
                let full = try cut(try Image.read(path: reference), reference, scale: factor)
                guard full.width >= input.width * factor, full.height >= input.height * factor else {
                    throw A2QError("\(reference) is \(full.width)×\(full.height), smaller than \(image) enlarged ×\(factor) (\(input.width * factor)×\(input.height * factor))")
                }
                original = full.cropped(x: 0, y: 0, width: input.width * factor, height: input.height * factor)
            }
        }
        let start = monotonicSeconds()
        let engine = try IntegerEngine(model: try integerModel.resized(height: input.height, width: input.width), mode: overflow)
        let levels = input.pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 1) }
        let seconds = monotonicSeconds() - start
        let (width, height) = (input.width * factor, input.height * factor)
        let output = Image(width: width, height: height, pixels: levels.map { UInt8(clamping: Int($0)) })
        try output.writePNG(path: out)
        let bicubic = BicubicResampler(inputWidth: input.width, inputHeight: input.height, outputWidth: width, outputHeight: height).resize(input)

        var result: [String: Any] = ["model": model, "image": image, "out": out, "input": [input.width, input.height],
                                     "output": [width, height], "upscale_factor": factor, "seconds": seconds,
                                     "overflows": engine.overflows.reduce(0) { $0 + $1.finalOverflows }]
        if let original {
            result["psnr"] = Self.psnr(output, original)
            result["bicubic_psnr"] = Self.psnr(bicubic, original)
        }
        if let compare {
            let enlarged = Self.nearest(input, factor: factor)
            try Self.sideBySide([enlarged, bicubic, output] + (original.map { [$0] } ?? [])).writePNG(path: compare)
            result["compare"] = compare
        }
        if json {
            printLine(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        printLine("\(out): \(width)×\(height) from \(input.width)×\(input.height) (×\(factor), integer engine, \(String(format: "%.2f", seconds)) s)")
        if let psnr = result["psnr"] as? Double, let bicubicPSNR = result["bicubic_psnr"] as? Double {
            printLine(String(format: "PSNR against the original: model %.2f dB, bicubic %.2f dB", psnr, bicubicPSNR))
        }
        if let compare { printLine("\(compare): input (enlarged) | bicubic | model" + (original == nil ? "" : " | original")) }
    }

    /// `x,y,width,height` with non-negative offsets and positive sizes.
    static func parseRegion(_ text: String) throws -> (Int, Int, Int, Int) {
        let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 4, let x = parts[0], let y = parts[1], let width = parts[2], let height = parts[3],
              x >= 0, y >= 0, width > 0, height > 0 else {
            throw A2QError("--region \(text) is not x,y,width,height (non-negative offsets, positive sizes)",
                           remedy: "e.g. --region 100,60,160,160")
        }
        return (x, y, width, height)
    }

    /// PSNR of two 8-bit images of one size (`PSNR.decibels` on levels / 255).
    static func psnr(_ a: Image, _ b: Image) -> Double {
        let x = a.pixels.map { Float($0) / 255 }, y = b.pixels.map { Float($0) / 255 }
        return x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in PSNR.decibels(output: xb, target: yb) } }
    }

    /// `image` enlarged `factor` times by repeating pixels.
    static func nearest(_ image: Image, factor: Int) -> Image {
        var out = Image(width: image.width * factor, height: image.height * factor)
        for c in 0..<Image.channels {
            for y in 0..<out.height {
                for x in 0..<out.width { out.pixels[(c * out.height + y) * out.width + x] = image[c, y / factor, x / factor] }
            }
        }
        return out
    }

    /// Images of one height in a row, 8 white pixels apart.
    static func sideBySide(_ images: [Image]) -> Image {
        let gap = 8, height = images.map(\.height).max() ?? 0
        let width = images.map(\.width).reduce(0, +) + gap * (images.count - 1)
        var out = Image(width: width, height: height, repeating: 255)
        var left = 0
        for image in images {
            for c in 0..<Image.channels {
                for y in 0..<image.height {
                    for x in 0..<image.width { out.pixels[(c * height + y) * width + left + x] = image[c, y, x] }
                }
            }
            left += image.width + gap
        }
        return out
    }
}
