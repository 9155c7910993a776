import A2QCore
import CZlib
import Foundation

/// Reader for MNIST-format IDX files (raw or gzip-compressed), validating magic numbers,
/// dimensions, counts and lengths.
public enum IDX {
    /// An IDX array of unsigned bytes.
    public struct Array: Sendable {
        public let shape: [Int]
        public let bytes: [UInt8]
    }

    /// Reads and validates an unsigned-byte IDX file (`0x00 0x00 0x08 ndim`).
    public static func read(_ path: String) throws -> Array {
        let raw = try loadBytes(path)
        guard raw.count >= 4 else { throw A2QError("\(path): truncated IDX file (\(raw.count) bytes, no header)") }
        guard raw[0] == 0, raw[1] == 0 else {
            throw A2QError("\(path): not an IDX file (bad magic number \(raw.prefix(4).map { String($0, radix: 16) }))")
        }
        guard raw[2] == 0x08 else { throw A2QError("\(path): IDX element type 0x\(String(raw[2], radix: 16)) is not unsigned byte (0x08)") }
        let dimensions = Int(raw[3])
        guard (1...4).contains(dimensions) else { throw A2QError("\(path): IDX file with \(dimensions) dimensions (expected 1 to 4)") }
        let header = 4 + 4 * dimensions
        guard raw.count >= header else { throw A2QError("\(path): truncated IDX header") }
        var shape: [Int] = []
        for d in 0..<dimensions {
            let o = 4 + 4 * d
            shape.append(Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3]))
        }
        // The element count; nil when a crafted header declares more than Int can hold.
        var expected: Int? = 1
        for d in shape {
            guard let count = expected else { break }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            expected = overflow ? nil : product
        }
        guard let expected, raw.count - header == expected else {
            throw A2QError("\(path): IDX file holds \(raw.count - header) data bytes but its header \(describe(shape)) needs \(expected.map(String.init) ?? "more than 2^63")",
                           remedy: "the file is truncated or corrupt; reinstall it (Debian package dataset-fashion-mnist for the default)")
        }
        return Array(shape: shape, bytes: [UInt8](raw[header...]))
    }

    /// The file's bytes, gunzipped if it starts with the gzip magic.
    static func loadBytes(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw A2QError("\(path): cannot read the file")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else { return bytes }
        return try gunzip(bytes, path: path)
    }

    static func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw A2QError("\(path): zlib could not start decompressing")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        var source = input
        source.withUnsafeMutableBufferPointer { inBuffer in
            stream.next_in = inBuffer.baseAddress
            stream.avail_in = uInt(inBuffer.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { outBuffer in
                    stream.next_out = outBuffer.baseAddress
                    stream.avail_out = uInt(outBuffer.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(contentsOf: outBuffer[0..<(outBuffer.count - Int(stream.avail_out))])
                }
            } while status == Z_OK
        }
        guard status == Z_STREAM_END else {
            throw A2QError("\(path): gzip data is truncated or corrupt (zlib status \(status))",
                           remedy: "reinstall the file (Debian package dataset-fashion-mnist for the default)")
        }
        return output
    }
}
