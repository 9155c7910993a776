import A2QCheckpoint
import A2QQuant

/// Per-channel accumulator facts of one layer's integer weights (exact integer arithmetic).
public struct LayerAccumulatorReport: Sendable {
    public let integers: [Int32]
    public let l1Norms: [Int64]
    public let minimums: [Int64]
    public let maximums: [Int64]
    /// Exact minimum accumulator width per channel.
    public let minimumBits: [Int]
    public let accumulatorBits: Int
    /// Fraction of integer weights equal to zero.
    public let sparsity: Double

    public init(integers: [Int32], outChannels: Int, input: InputFormat, accumulatorBits: Int) {
        precondition(outChannels > 0 && integers.count % outChannels == 0, "LayerAccumulatorReport: bad shape")
        let k = integers.count / outChannels
        var l1: [Int64] = [], lo: [Int64] = [], hi: [Int64] = [], bits: [Int] = []
        for o in 0..<outChannels {
            let row = integers[(o * k)..<((o + 1) * k)]
            l1.append(row.reduce(Int64(0)) { $0 + Int64(abs($1)) })
            let (a, b) = AccumulatorBounds.worstCase(row, input: input)
            lo.append(a)
            hi.append(b)
            bits.append(AccumulatorBounds.minimumBitsExact(minimum: a, maximum: b))
        }
        self.integers = integers
        l1Norms = l1
        minimums = lo
        maximums = hi
        minimumBits = bits
        self.accumulatorBits = accumulatorBits
        sparsity = integers.isEmpty ? 0 : Double(integers.filter { $0 == 0 }.count) / Double(integers.count)
    }

    /// Whether every channel's exact worst case fits the P-bit register.
    public var overflowFree: Bool {
        zip(minimums, maximums).allSatisfy {
            AccumulatorBounds.fits(minimum: $0.0, maximum: $0.1, accumulatorBits: accumulatorBits)
        }
    }

    /// Writes `weight_int` (int8 for M ≤ 8, else int16, in `shape`), `l1_norm`, `acc_min`,
    /// `acc_max` (int64) and `p_min` (int32) per output channel into `group`: the integer view
    /// that quantize outputs, checkpoints and exports share.
    public func write(to group: HDF5Group, shape: [Int], weightBits: Int) throws {
        if weightBits <= 8 {
            try group.write("weight_int", integers.map { Int8($0) }, shape: shape)
        } else {
            try group.write("weight_int", integers.map { Int16($0) }, shape: shape)
        }
        let channels = [l1Norms.count]
        try group.write("l1_norm", l1Norms, shape: channels)
        try group.write("acc_min", minimums, shape: channels)
        try group.write("acc_max", maximums, shape: channels)
        try group.write("p_min", minimumBits.map { Int32($0) }, shape: channels)
    }
}
