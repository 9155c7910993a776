import A2QCore
import CZlib
import Foundation

/// How far a layer's integer weights compress: what the A2Q paper calls compressibility (the
/// accumulator constraint makes weights sparse, and sparse integers compress). Three sizes
/// against the float32 weights: packed at M bits each, zlib (level 9) of the integers stored in
/// the smallest signed type that holds M bits (int8 for M ≤ 8, little-endian int16 otherwise),
/// and the zero-order entropy bound `count · H / 8` with `H = −Σ p log₂ p` over the distinct
/// integer values.
public struct WeightCompressibility: Sendable, Codable, Equatable {
    public var name: String
    public var weights: Int
    public var weightBits: Int
    public var float32Bytes: Int
    /// `ceil(weights · M / 8)`.
    public var packedBytes: Int
    public var zlibBytes: Int
    /// Zero-order entropy of the integer weights, bits per weight.
    public var entropyBits: Double
    /// `weights · entropyBits / 8`.
    public var entropyBytes: Double

    enum CodingKeys: String, CodingKey {
        case name, weights, weightBits = "weight_bits", float32Bytes = "float32_bytes", packedBytes = "packed_bytes"
        case zlibBytes = "zlib_bytes", entropyBits = "entropy_bits", entropyBytes = "entropy_bytes"
    }

    /// The bytes zlib compresses: each integer in the smallest signed type holding `weightBits`.
    public static func storedBytes(_ integers: [Int32], weightBits: Int) -> [UInt8] {
        precondition((2...16).contains(weightBits), "WeightCompressibility: \(weightBits)-bit weights")
        if weightBits <= 8 { return integers.map { UInt8(bitPattern: Int8(truncatingIfNeeded: $0)) } }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 * integers.count)
        for value in integers {
            let v = UInt16(bitPattern: Int16(truncatingIfNeeded: value))
            bytes.append(UInt8(v & 0xff))
            bytes.append(UInt8(v >> 8))
        }
        return bytes
    }

    /// zlib's level-9 compressed size of `bytes`.
    public static func zlibSize(_ bytes: [UInt8]) throws -> Int {
        var size = compressBound(uLong(bytes.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let status = out.withUnsafeMutableBufferPointer { o in
            bytes.withUnsafeBufferPointer { i in compress2(o.baseAddress, &size, i.baseAddress, uLong(bytes.count), 9) }
        }
        guard status == Z_OK else { throw A2QError("zlib failed to compress \(bytes.count) bytes (status \(status))") }
        return Int(size)
    }

    /// Zero-order entropy in bits per value, summed over the values in ascending order (a
    /// dictionary's order changes from process to process, and so would the last bits).
    public static func entropy(_ integers: [Int32]) -> Double {
        guard !integers.isEmpty else { return 0 }
        var counts: [Int32: Int] = [:]
        for value in integers { counts[value, default: 0] += 1 }
        let n = Double(integers.count)
        return counts.sorted { $0.key < $1.key }.reduce(0.0) { total, entry in
            let count = entry.value
            let p = Double(count) / n
            return total - p * log2(p)
        }
    }

    public init(name: String, integers: [Int32], weightBits: Int) throws {
        self.name = name
        weights = integers.count
        self.weightBits = weightBits
        float32Bytes = 4 * integers.count
        packedBytes = (integers.count * weightBits + 7) / 8
        zlibBytes = try Self.zlibSize(Self.storedBytes(integers, weightBits: weightBits))
        entropyBits = Self.entropy(integers)
        entropyBytes = Double(integers.count) * entropyBits / 8
    }

    public init(_ layer: IntegerLayer) throws {
        try self.init(name: layer.name, integers: layer.weights, weightBits: layer.weightBits)
    }

    /// The sum over `layers` (entropy bits: the weighted mean), named `total`.
    public static func total(_ layers: [WeightCompressibility]) -> WeightCompressibility? {
        guard !layers.isEmpty else { return nil }
        var sum = layers[0]
        sum.name = "total"
        for layer in layers.dropFirst() {
            sum.weights += layer.weights
            sum.float32Bytes += layer.float32Bytes
            sum.packedBytes += layer.packedBytes
            sum.zlibBytes += layer.zlibBytes
            sum.entropyBytes += layer.entropyBytes
        }
        sum.weightBits = layers.map(\.weightBits).max() ?? 0
        sum.entropyBits = 8 * sum.entropyBytes / Double(max(sum.weights, 1))
        return sum
    }

    /// A text table: per layer and in total, bytes and the ratio to float32.
    public static func table(_ layers: [WeightCompressibility]) -> String {
        func column(_ text: String, _ width: Int, right: Bool = true) -> String {
            let padding = String(repeating: " ", count: max(width - text.count, 0))
            return right ? padding + text : text + padding
        }
        let width = max(8, (layers.map(\.name.count).max() ?? 0) + 2)
        var lines = [column("layer", width, right: false) + column("weights", 10) + column("M", 4) + column("float32 B", 12)
                     + column("packed B", 11) + column("zlib B", 10) + column("entropy B", 12) + column("bits/w", 8) + column("zlib/float32", 14)]
        for layer in layers + (total(layers).map { [$0] } ?? []) {
            lines.append(column(layer.name, width, right: false) + column("\(layer.weights)", 10) + column("\(layer.weightBits)", 4)
                         + column("\(layer.float32Bytes)", 12) + column("\(layer.packedBytes)", 11) + column("\(layer.zlibBytes)", 10)
                         + column(String(format: "%.0f", layer.entropyBytes), 12) + column(String(format: "%.2f", layer.entropyBits), 8)
                         + column(String(format: "%.1f%%", 100 * Double(layer.zlibBytes) / Double(max(layer.float32Bytes, 1))), 14))
        }
        return lines.joined(separator: "\n")
    }
}
