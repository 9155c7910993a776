/// What `AccumulatorAwareGPTQ.quantize` returns.
public struct AccumulatorAwareGPTQResult: Sendable {
    /// The integers `q`, row-major `[outputs, inputs]`.
    public let integers: [Int32]
    /// The per-channel scales used (`W ≈ s_c · q_c`).
    public let scales: [Double]
    public let outputs: Int
    public let inputs: Int
    /// T as used (K for the whole dot product).
    public let tileLength: Int
    /// Inputs whose Hessian diagonal was zero (their weights are 0).
    public let deadInputs: Int
    /// η added to H's diagonal.
    public let damping: Double

    /// The number of tiles per channel.
    public var tileCount: Int { (inputs + tileLength - 1) / tileLength }

    /// `α` (sum of positive integers) and `β` (sum of magnitudes of negative ones) of one tile.
    public func tileSums(output: Int, tile: Int) -> (positive: Int64, negative: Int64) {
        precondition((0..<outputs).contains(output) && (0..<tileCount).contains(tile), "tileSums: (\(output), \(tile)) out of range")
        var alpha: Int64 = 0, beta: Int64 = 0
        let start = tile * tileLength
        for i in start..<min(start + tileLength, inputs) {
            let v = Int64(integers[output * inputs + i])
            if v > 0 { alpha += v } else { beta -= v }
        }
        return (alpha, beta)
    }
}
