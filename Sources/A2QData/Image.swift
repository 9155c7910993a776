import A2QCore
import Foundation
import ImageCodecs
#if canImport(Glibc)
import Glibc
#endif

/// An 8-bit RGB image, channel-planar like every image tensor in a2q: `pixels` holds the red
/// plane, then the green, then the blue, each `height` rows of `width` levels (`[3, height,
/// width]`), so a batch row of a model's input is a straight copy of it.
///
/// Files are read through libpng and libjpeg-turbo (`read(path:)`, the format told by the
/// file's first bytes) and written as PNG (`writePNG(path:)`, crash-safe).
public struct Image: Sendable, Equatable {
    /// Channels (red, green, blue).
    public static let channels = 3
    /// The most pixels (width · height) a file may declare, 2^28 (768 MiB of RGB); checked
    /// before anything is allocated.
    public static let maximumPixelCount = 1 << 28
    /// The largest image file read, 1 GiB (checked before the file is read).
    public static let maximumFileSize = 1 << 30

    public let width: Int
    public let height: Int
    /// `[3, height, width]` levels, channel-planar.
    public var pixels: [UInt8]

    /// An image of the given levels (`3 · height · width` of them, channel-planar).
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "Image: size \(width)×\(height)")
        precondition(pixels.count == Self.channels * width * height,
                     "Image: \(pixels.count) levels for 3×\(height)×\(width)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image with every level `value`.
    public init(width: Int, height: Int, repeating value: UInt8 = 0) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: value, count: Self.channels * width * height))
    }

    /// An image from interleaved rows (R, G, B of the first pixel, then the next, ...), the
    /// layout of the codecs.
    public init(interleaved rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int) {
        precondition(width > 0 && height > 0 && rgb.count == Self.channels * width * height,
                     "Image: \(rgb.count) interleaved levels for \(width)×\(height)")
        let plane = width * height
        var planar = [UInt8](repeating: 0, count: Self.channels * plane)
        planar.withUnsafeMutableBufferPointer { out in
            for i in 0..<plane {
                out[i] = rgb[3 * i]
                out[plane + i] = rgb[3 * i + 1]
                out[2 * plane + i] = rgb[3 * i + 2]
            }
        }
        self.init(width: width, height: height, pixels: planar)
    }

    /// An image from unit-scale floats `[3, height, width]` (a model's output, 1.0 = level
    /// 255), each clamped and rounded half up (`PixelLevel.level(unit:)`).
    public init(unit values: UnsafeBufferPointer<Float>, width: Int, height: Int) {
        precondition(width > 0 && height > 0 && values.count == Self.channels * width * height,
                     "Image: \(values.count) values for 3×\(height)×\(width)")
        self.init(width: width, height: height, pixels: values.map { PixelLevel.level(unit: $0) })
    }

    /// Levels per channel plane (`width · height`).
    public var planeSize: Int { width * height }

    /// The level of `channel` (0 red, 1 green, 2 blue) at row `y`, column `x`.
    public subscript(channel: Int, y: Int, x: Int) -> UInt8 {
        get { pixels[(channel * height + y) * width + x] }
        set { pixels[(channel * height + y) * width + x] = newValue }
    }

    /// The levels interleaved (R, G, B per pixel, rows from the top).
    public func interleaved() -> [UInt8] {
        let plane = planeSize
        var rgb = [UInt8](repeating: 0, count: Self.channels * plane)
        pixels.withUnsafeBufferPointer { planar in
            for i in 0..<plane {
                rgb[3 * i] = planar[i]
                rgb[3 * i + 1] = planar[plane + i]
                rgb[3 * i + 2] = planar[2 * plane + i]
            }
        }
        return rgb
    }

    /// The `width`×`height` region whose top-left pixel is (`x`, `y`).
    public func cropped(x: Int, y: Int, width: Int, height: Int) -> Image {
        precondition(x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= self.width && y + height <= self.height,
                     "Image.cropped: \(width)×\(height) at (\(x), \(y)) is outside \(self.width)×\(self.height)")
        var out = [UInt8](repeating: 0, count: Self.channels * width * height)
        for channel in 0..<Self.channels {
            for row in 0..<height {
                let source = (channel * self.height + y + row) * self.width + x
                let destination = (channel * height + row) * width
                for column in 0..<width { out[destination + column] = pixels[source + column] }
            }
        }
        return Image(width: width, height: height, pixels: out)
    }

    /// The image without its last `width mod factor` columns and `height mod factor` rows, so
    /// that both sides are multiples of `factor` (the usual "mod crop" of super-resolution
    /// benchmarks). Requires both sides to be at least `factor`.
    public func croppedToMultiple(of factor: Int) -> Image {
        precondition(factor > 0 && width >= factor && height >= factor, "Image: \(width)×\(height) has no multiple of \(factor)")
        let w = width - width % factor, h = height - height % factor
        return w == width && h == height ? self : cropped(x: 0, y: 0, width: w, height: h)
    }
}

// MARK: - Files

extension Image {
    /// Reads a PNG or JPEG file into 8-bit RGB (format from the file's first bytes, not its
    /// name). PNG: gray, gray + alpha, palette, RGB, RGBA at 1–16 bits, interlaced or not (alpha
    /// dropped, 16 bits scaled with rounding); JPEG: grayscale, YCbCr, RGB, CMYK and YCCK. An
    /// empty, truncated, damaged or non-image file, or one declaring more than
    /// `maximumPixelCount` pixels, is an `A2QError` naming the file and what is wrong.
    public static func read(path: String) throws -> Image {
        let size: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            guard (attributes[.type] as? FileAttributeType) != .typeDirectory else {
                throw A2QError("\(path) is a folder, not an image file")
            }
            size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        } catch let error as A2QError {
            throw error
        } catch {
            throw A2QError("cannot read \(path): \(FileManager.default.fileExists(atPath: path) ? "permission denied or unreadable" : "no such file")")
        }
        guard size > 0 else {
            throw A2QError("\(path) is empty (0 bytes), not an image", remedy: "re-create the file, or remove it from the folder")
        }
        guard size <= maximumFileSize else {
            throw A2QError("\(path) is \(size) bytes; image files larger than 1 GiB are not read", remedy: "scale the image down first")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw A2QError("cannot read \(path): \(error.localizedDescription)")
        }
        return try data.withUnsafeBytes { bytes in try decode(bytes, path: path) }
    }

    /// Decodes a whole PNG or JPEG file held in memory (`path` names it in errors).
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Image {
        guard !bytes.isEmpty, let base = bytes.bindMemory(to: UInt8.self).baseAddress else {
            throw A2QError("\(path) is empty (0 bytes), not an image", remedy: "re-create the file, or remove it from the folder")
        }
        guard let format = ImageFormat(leadingBytes: bytes) else {
            let start = bytes.prefix(8).map { String(format: "%02X", $0) }.joined(separator: " ")
            throw A2QError("\(path) is not a PNG or JPEG file (it starts with the bytes \(start))",
                           remedy: "a2q reads PNG and JPEG files, told apart by their first bytes; convert the file, or remove it from the folder")
        }
        let capacity: Int32 = 512
        var message = [CChar](repeating: 0, count: Int(capacity))
        var width: Int64 = 0, height: Int64 = 0
        let count = Int64(bytes.count)
        let sizeStatus = format == .png
            ? a2q_png_read_size(base, count, &width, &height, &message, capacity)
            : a2q_jpeg_read_size(base, count, &width, &height, &message, capacity)
        guard sizeStatus == A2Q_IMAGE_OK else { throw codecError(sizeStatus, format: format, path: path, message: message) }
        guard width > 0, height > 0 else {
            throw A2QError("\(path): the \(format.rawValue) header declares a \(width)×\(height) image",
                           remedy: "the file is damaged; re-create it, or remove it from the folder")
        }
        guard width <= Int64(maximumPixelCount), height <= Int64(maximumPixelCount) / width else {
            throw A2QError("\(path): the \(format.rawValue) header declares \(width)×\(height) pixels, more than the 2^28 (268,435,456) a2q reads",
                           remedy: "the file is damaged, or far too large: scale it down first")
        }
        var rgb = [UInt8](repeating: 0, count: 3 * Int(width) * Int(height))
        let status = rgb.withUnsafeMutableBufferPointer { out -> Int32 in
            guard let destination = out.baseAddress else { return A2Q_IMAGE_SIZE_MISMATCH }
            return format == .png
                ? a2q_png_decode_rgb(base, count, destination, width, height, &message, capacity)
                : a2q_jpeg_decode_rgb(base, count, destination, width, height, &message, capacity)
        }
        guard status == A2Q_IMAGE_OK else { throw codecError(status, format: format, path: path, message: message) }
        return rgb.withUnsafeBufferPointer { Image(interleaved: $0, width: Int(width), height: Int(height)) }
    }

    /// Writes the image as an 8-bit RGB PNG, crash-safely: a temporary file next to `path`,
    /// flushed to disk, then renamed over `path` (`FileSystem.commit`), so `path` is either
    /// the old file or the complete new one.
    public func writePNG(path: String) throws {
        let temporary = "\(path).tmp-\(getpid())"
        let capacity: Int32 = 512
        var message = [CChar](repeating: 0, count: Int(capacity))
        let rgb = interleaved()
        let status = rgb.withUnsafeBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return A2Q_IMAGE_SIZE_MISMATCH }
            return a2q_png_write_rgb(temporary, base, Int64(width), Int64(height), &message, capacity)
        }
        guard status == A2Q_IMAGE_OK else {
            unlink(temporary)
            throw A2QError("cannot write \(path): \(Self.text(message))", remedy: "check that the folder exists, is writable and has room")
        }
        do { try FileSystem.commit(temporary: temporary, to: path) } catch {
            unlink(temporary)
            throw error
        }
    }

    static func text(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func codecError(_ status: Int32, format: ImageFormat, path: String, message: [CChar]) -> A2QError {
        let detail = text(message), name = format.rawValue
        let damaged = "re-create or re-download the file, or remove it from the folder"
        switch status {
        case A2Q_IMAGE_TRUNCATED:
            return A2QError("\(path) is a truncated \(name) file: \(detail)", remedy: damaged)
        case A2Q_IMAGE_UNSUPPORTED:
            return A2QError("\(path): unsupported \(name) file: \(detail)", remedy: "convert it to an 8-bit RGB PNG")
        case A2Q_IMAGE_MEMORY:
            return A2QError("\(path): out of memory while decoding the \(name) file: \(detail)")
        default:
            return A2QError("\(path) is not a valid \(name) file: \(detail)", remedy: damaged)
        }
    }
}
