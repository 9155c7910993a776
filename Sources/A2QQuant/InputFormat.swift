/// The integer format of a layer's input: `bits` (N) and signedness.
///
/// Unsigned inputs span `[0, 2^N - 1]` (after ReLU); signed inputs span
/// `[-2^(N-1), 2^(N-1) - 1]`. A weight quantizer takes its accumulator bound from this
/// format, which it gets from the layer's input quantizer, so the two can never disagree.
public struct InputFormat: Sendable, Hashable, Codable, CustomStringConvertible {
    /// N, the input bit width.
    public let bits: Int
    /// Whether inputs are signed.
    public let signed: Bool

    public init(bits: Int, signed: Bool) {
        precondition((1...16).contains(bits), "InputFormat: \(bits) input bits is out of 1...16")
        self.bits = bits
        self.signed = signed
    }

    /// Smallest input integer `c`.
    public var minimum: Int64 { signed ? -(Int64(1) << (bits - 1)) : 0 }
    /// Largest input integer `d`.
    public var maximum: Int64 { signed ? (Int64(1) << (bits - 1)) - 1 : (Int64(1) << bits) - 1 }

    public var description: String { "\(signed ? "int" : "uint")\(bits)" }
}
