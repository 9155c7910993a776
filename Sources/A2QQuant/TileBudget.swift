/// The integer budget that AXE enforces on every tile of every output channel (docs/AXE.md).
///
/// For a tile of integer weights `q`, `α = Σ_{q_i > 0} q_i` and `β = Σ_{q_i < 0} |q_i|`.
/// The limits are integers chosen by the caller so that the tile's exact worst case
/// (`AccumulatorBounds.worstCase`) fits the tile register; the static constructors give
/// A2Q+'s and A2Q's bounds.
public enum TileBudget: Sendable, Hashable {
    /// No accumulator constraint: plain GPTQ (only `|q| <= 2^(M-1) - 1`).
    case unconstrained
    /// A2Q+: `α <= positive` (A) and `β <= negative` (B) on every tile.
    case a2qPlus(positive: Int64, negative: Int64)
    /// A2Q: `α + β = ||q||_1 <= l1` (L) on every tile.
    case a2q(l1: Int64)

    /// A2Q+'s limits for N-bit inputs `[c, d]` and a P-bit tile register:
    /// `A = B = floor((2^P - 2) / (2^N - 1) / 2) = floor((2^(P-1) - 1) / (2^N - 1))`. The tile's
    /// range is `[c·α − d·β, d·α − c·β]` and `d − c = 2^N − 1` for unsigned and signed inputs
    /// alike, so both ends stay within `±(2^(P-1) - 1)`.
    public static func a2qPlus(accumulatorBits p: Int, input: InputFormat) -> TileBudget {
        precondition((2...62).contains(p), "TileBudget.a2qPlus: accumulator bits \(p) out of 2...62")
        let limit = ((Int64(1) << (p - 1)) - 1) / ((Int64(1) << input.bits) - 1)
        return .a2qPlus(positive: limit, negative: limit)
    }

    /// A2Q's limit `L = floor((2^(P-1) - 1) · 2^(signed - N))` (`AccumulatorBounds.a2qBound`, floored).
    public static func a2q(accumulatorBits p: Int, input: InputFormat) -> TileBudget {
        precondition((2...62).contains(p), "TileBudget.a2q: accumulator bits \(p) out of 2...62")
        let shift = input.bits - (input.signed ? 1 : 0)
        return .a2q(l1: ((Int64(1) << (p - 1)) - 1) >> shift)
    }

    /// Whether a tile with positive sum `alpha` and negative magnitude `beta` is within the budget.
    public func admits(positiveSum alpha: Int64, negativeMagnitude beta: Int64) -> Bool {
        switch self {
        case .unconstrained: return true
        case let .a2qPlus(a, b): return alpha <= a && beta <= b
        case let .a2q(l): return alpha + beta <= l
        }
    }

    /// The L1 radius of AXE's soft threshold in integer units (A + B for A2Q+, whose tiles are
    /// zero-centred first; L for A2Q), nil when unconstrained.
    var thresholdRadius: Double? {
        switch self {
        case .unconstrained: return nil
        case let .a2qPlus(a, b): return Double(a) + Double(b)
        case let .a2q(l): return Double(l)
        }
    }

    /// Whether the soft threshold zero-centres each tile before finding λ (A2Q+).
    var centresTiles: Bool {
        if case .a2qPlus = self { return true }
        return false
    }
}
