import A2QCore
import A2QInteger
import Foundation
import Testing

/// `WeightCompressibility` (the A2Q paper's compressibility, `a2q inspect`); the end-to-end
/// check against h5py/NumPy/Python's zlib is `CheckpointTests.readableByH5py`.
@Suite("Compressibility of integer weights")
struct WeightCompressibilityTests {
    @Test("entropy, stored bytes, packed size and the total follow their definitions")
    func definitions() throws {
        #expect(WeightCompressibility.entropy([0, 0, 1, -1]) == 1.5)
        #expect(WeightCompressibility.entropy([3, 3, 3]) == 0)
        // The sum runs over the values in ascending order, so every process prints the same bits
        // (SchemaV1Tests compares two processes' `inspect --json` byte for byte).
        var generator = Xoshiro256(seed: 11)
        let values = (0..<5000).map { _ in Int32(generator.next() % 61) - 30 }
        let expected = Dictionary(grouping: values, by: { $0 }).sorted { $0.key < $1.key }.reduce(0.0) { total, entry in
            let p = Double(entry.value.count) / Double(values.count)
            return total - p * log2(p)
        }
        #expect(WeightCompressibility.entropy(values) == expected)
        #expect(WeightCompressibility.storedBytes([-1, 2, -128], weightBits: 8) == [0xff, 0x02, 0x80])
        #expect(WeightCompressibility.storedBytes([-2, 300], weightBits: 12) == [0xfe, 0xff, 0x2c, 0x01])
        let layer = try WeightCompressibility(name: "a", integers: [Int32](repeating: 0, count: 1000) + [1, -1], weightBits: 4)
        #expect(layer.packedBytes == 501 && layer.float32Bytes == 4008)
        #expect(layer.zlibBytes > 0 && layer.zlibBytes < 40, "\(layer.zlibBytes) bytes for 1,002 mostly zero weights")
        let other = try WeightCompressibility(name: "b", integers: [1, 2, 3, 4], weightBits: 8)
        let total = try #require(WeightCompressibility.total([layer, other]))
        #expect(total.weights == 1006 && total.zlibBytes == layer.zlibBytes + other.zlibBytes)
        #expect(abs(total.entropyBytes - (layer.entropyBytes + other.entropyBytes)) < 1e-12)
        #expect(abs(total.entropyBits - 8 * total.entropyBytes / 1006) < 1e-12)
    }

    @Test("sparser integers compress further: zlib and entropy fall as more weights are zero, at every bit width", arguments: [2, 4, 8, 12, 16])
    func sparsityCompresses(bits: Int) throws {
        var generator = Xoshiro256(seed: UInt64(bits))
        let limit = Int32(1 << (bits - 1)) - 1
        func weights(zeroFraction: Double) -> [Int32] {
            (0..<4096).map { _ in
                Double(generator.next() % 10_000) / 10_000 < zeroFraction ? 0 : Int32(Int64(generator.next() % UInt64(2 * limit + 1)) - Int64(limit))
            }
        }
        let dense = try WeightCompressibility(name: "dense", integers: weights(zeroFraction: 0.1), weightBits: bits)
        let sparse = try WeightCompressibility(name: "sparse", integers: weights(zeroFraction: 0.9), weightBits: bits)
        #expect(sparse.zlibBytes < dense.zlibBytes && sparse.entropyBits < dense.entropyBits, "\(sparse) vs \(dense)")
        #expect(dense.entropyBits <= Double(bits) + 1e-9)
    }
}
