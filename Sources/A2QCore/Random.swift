/// xoshiro256** (Blackman & Vigna), seeded through SplitMix64: a small, fast, seedable
/// generator with value semantics. Copying it copies its state, so a saved generator
/// replays exactly. Used for every initialisation and shuffle in a2q.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Hashable, Codable {
    /// The four words of state (never all zero).
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds the state from one 64-bit value via SplitMix64.
    public init(seed: UInt64) {
        var sm = seed
        func splitMix() -> UInt64 {
            sm &+= 0x9e37_79b9_7f4a_7c15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// Restores a generator from saved state words.
    public init(state words: [UInt64]) {
        precondition(words.count == 4 && words.contains { $0 != 0 }, "Xoshiro256: bad state")
        state = (words[0], words[1], words[2], words[3])
    }

    /// The state as four words (for checkpoints).
    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform Float in [0, 1) with 24 random bits.
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform Double in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform Float in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * nextUnitFloat() }

    /// Standard normal sample (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(nextUnitDouble(), 0x1p-60)
        let u2 = nextUnitDouble()
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    public static func == (a: Self, b: Self) -> Bool { a.stateWords == b.stateWords }
    public func hash(into hasher: inout Hasher) { hasher.combine(stateWords) }

    public init(from decoder: Decoder) throws {
        let words = try [UInt64](from: decoder)
        guard words.count == 4, words.contains(where: { $0 != 0 }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "xoshiro256 state needs 4 non-zero words"))
        }
        state = (words[0], words[1], words[2], words[3])
    }
    public func encode(to encoder: Encoder) throws { try stateWords.encode(to: encoder) }

    /// A Fisher–Yates permutation of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var order = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                let j = Int(next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        return order
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
