/// The accumulator arithmetic of A2Q and A2Q+ as pure functions (see docs/A2Q.md, §1).
///
/// Bounds `T` are in integer units of the weights and computed in Float64, which represents
/// every value here exactly for P ≤ 32 and N ≤ 16 except the A2Q+ quotient, whose rounding
/// error (< 1e-15 relative) cannot move an integer L1 norm across it. Worst-case ranges are
/// exact 64-bit integer arithmetic.
public enum AccumulatorBounds {
    /// The exact worst-case accumulator range `[acc_min, acc_max]` of one dot product of
    /// integer weights `q` with inputs in `input`'s range, over every possible input.
    /// It also bounds every partial sum, in any order.
    public static func worstCase<C: Collection>(_ q: C, input: InputFormat) -> (minimum: Int64, maximum: Int64)
    where C.Element: BinaryInteger {
        var alpha: Int64 = 0, beta: Int64 = 0
        for value in q {
            let v = Int64(value)
            if v > 0 { alpha += v } else { beta += v }
        }
        return worstCase(positiveSum: alpha, negativeSum: beta, input: input)
    }

    /// The worst case from the sums of the positive (`alpha`) and negative (`beta <= 0`) weights.
    public static func worstCase(positiveSum alpha: Int64, negativeSum beta: Int64,
                                 input: InputFormat) -> (minimum: Int64, maximum: Int64) {
        let c = input.minimum, d = input.maximum
        return (c * alpha + d * beta, d * alpha + c * beta)
    }

    /// Whether `[minimum, maximum]` fits a signed `bits`-wide register.
    public static func fits(minimum: Int64, maximum: Int64, accumulatorBits bits: Int) -> Bool {
        precondition((1...63).contains(bits), "accumulator bits \(bits) out of 1...63")
        return maximum <= (Int64(1) << (bits - 1)) - 1 && minimum >= -(Int64(1) << (bits - 1))
    }

    /// A2Q's L1 bound `T = (2^(P-1) - 1) · 2^(signed - N)`.
    public static func a2qBound(accumulatorBits p: Int, input: InputFormat) -> Double {
        (Double(Int64(1) << (p - 1)) - 1) * Double(sign: .plus, exponent: (input.signed ? 1 : 0) - input.bits,
                                                   significand: 1)
    }

    /// A2Q+'s L1 bound for zero-centred weights `T = (2^P - 2) / (2^N - 1)`.
    public static func a2qPlusBound(accumulatorBits p: Int, input: InputFormat) -> Double {
        (Double(Int64(1) << p) - 2) / (Double(Int64(1) << input.bits) - 1)
    }

    /// Smallest P with `acc_max <= 2^(P-1)-1` and `acc_min >= -2^(P-1)` (at least 1).
    public static func minimumBitsExact(minimum: Int64, maximum: Int64) -> Int {
        var p = 1
        while !fits(minimum: minimum, maximum: maximum, accumulatorBits: p) { p += 1 }
        return p
    }

    /// A2Q's `P_min = ceil(b + log2(1 + 2^-b) + 1)`, `b = log2(||q||_1) + N - signed` (1 for q = 0).
    public static func minimumBitsA2Q(l1Norm: Int64, input: InputFormat) -> Int {
        guard l1Norm > 0 else { return 1 }
        let b = log2(Double(l1Norm)) + Double(input.bits - (input.signed ? 1 : 0))
        return Int((b + log2(1 + exp2(-b)) + 1 - 1e-12).rounded(.up))
    }

    /// A2Q+'s `P_min = ceil(log2(||q||_1 · (2^N - 1) + 2))` (1 for q = 0).
    public static func minimumBitsA2QPlus(l1Norm: Int64, input: InputFormat) -> Int {
        guard l1Norm > 0 else { return 1 }
        let levels = Double((Int64(1) << input.bits) - 1)
        return Int((log2(Double(l1Norm) * levels + 2) - 1e-12).rounded(.up))
    }

    /// The data-type bound: the width a plain M-bit QAT layer with `fanIn` inputs needs,
    /// `P* = ceil(a + log2(1 + 2^-a) + 1)`, `a = log2(K) + N + M - 1 - signed`.
    public static func dataTypeBound(fanIn: Int, weightBits m: Int, input: InputFormat) -> Int {
        let a = log2(Double(fanIn)) + Double(input.bits + m - 1 - (input.signed ? 1 : 0))
        return Int((a + log2(1 + exp2(-a)) + 1 - 1e-12).rounded(.up))
    }

    /// The smallest P whose bound `T` is at least 1 (a non-zero weight is possible), or nil
    /// above 32 bits.
    public static func smallestUsefulBits(plus: Bool, input: InputFormat) -> Int? {
        for p in 2...32 {
            let t = plus ? a2qPlusBound(accumulatorBits: p, input: input) : a2qBound(accumulatorBits: p, input: input)
            if t >= 1 { return p }
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
