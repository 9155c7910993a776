import A2QCheckpoint
import A2QQuant

/// Per-channel accumulator facts of one layer's integer weights (exact integer arithmetic).
///
/// Without tiles there is one register per dot product: `minimums`/`maximums` are its exact
/// worst case and `accumulatorBits` its width. With tiles (`tile` inputs each, in weight-index
/// order) every tile's worst case must fit the `accumulatorBits`-bit tile register and the whole
/// dot product's (which bounds every running sum of tile sums, since each tile's range contains 0)
/// the `outerAccumulatorBits`-bit outer register.
public struct LayerAccumulatorReport: Sendable {
    public let integers: [Int32]
    public let l1Norms: [Int64]
    /// The whole dot product's exact worst case per channel.
    public let minimums: [Int64]
    public let maximums: [Int64]
    /// Exact minimum width per channel of the register that holds the whole dot product.
    public let minimumBits: [Int]
    /// The (tile) register's width P.
    public let accumulatorBits: Int
    /// Inputs per tile, nil without tiles.
    public let tile: Int?
    public let outerAccumulatorBits: Int
    /// Per channel and tile (`[out, tiles]`, row-major): the tile's exact worst case and the
    /// smallest register width that holds it. One tile per channel without tiles.
    public let tileMinimums: [Int64]
    public let tileMaximums: [Int64]
    public let tileMinimumBits: [Int]
    /// Per channel and tile, `Σ|q|` of the tile (the L1 budget applies to each tile).
    public let tileL1Norms: [Int64]
    public let tileCount: Int
    /// Fraction of integer weights equal to zero.
    public let sparsity: Double

    public init(integers: [Int32], outChannels: Int, input: InputFormat, accumulatorBits: Int, tile: Int? = nil,
                outerAccumulatorBits: Int = 32) {
        precondition(outChannels > 0 && integers.count % outChannels == 0, "LayerAccumulatorReport: bad shape")
        let k = integers.count / outChannels
        let length = max(min(tile ?? k, k), 1)
        let tiles = max((k + length - 1) / length, 1)
        var l1: [Int64] = [], lo: [Int64] = [], hi: [Int64] = [], bits: [Int] = []
        var tileLo: [Int64] = [], tileHi: [Int64] = [], tileBits: [Int] = [], tileL1: [Int64] = []
        for o in 0..<outChannels {
            let row = integers[(o * k)..<((o + 1) * k)]
            l1.append(row.reduce(Int64(0)) { $0 + Int64(abs($1)) })
            let (a, b) = AccumulatorBounds.worstCase(row, input: input)
            lo.append(a)
            hi.append(b)
            bits.append(AccumulatorBounds.minimumBitsExact(minimum: a, maximum: b))
            for j in 0..<tiles {
                let start = o * k + j * length
                let part = integers[start..<min(start + length, (o + 1) * k)]
                let (c, d) = AccumulatorBounds.worstCase(part, input: input)
                tileL1.append(part.reduce(Int64(0)) { $0 + Int64(abs($1)) })
                tileLo.append(c)
                tileHi.append(d)
                tileBits.append(AccumulatorBounds.minimumBitsExact(minimum: c, maximum: d))
            }
        }
        self.integers = integers
        l1Norms = l1
        minimums = lo
        maximums = hi
        minimumBits = bits
        self.accumulatorBits = accumulatorBits
        self.tile = length < k ? length : nil
        self.outerAccumulatorBits = outerAccumulatorBits
        tileMinimums = tileLo
        tileMaximums = tileHi
        tileMinimumBits = tileBits
        tileL1Norms = tileL1
        tileCount = tiles
        sparsity = integers.isEmpty ? 0 : Double(integers.filter { $0 == 0 }.count) / Double(integers.count)
    }

    /// Whether every tile's exact worst case fits the P-bit (tile) register and, with tiles,
    /// every whole dot product fits the outer register: then no register of this layer can
    /// overflow for any input.
    public var overflowFree: Bool { tilesFit && outerFits }

    /// Whether every tile (the whole dot product without tiles) fits the P-bit register.
    public var tilesFit: Bool {
        zip(tileMinimums, tileMaximums).allSatisfy {
            AccumulatorBounds.fits(minimum: $0.0, maximum: $0.1, accumulatorBits: accumulatorBits)
        }
    }

    /// Whether every whole dot product fits the outer register (true without tiles).
    public var outerFits: Bool {
        guard tile != nil else { return true }
        return zip(minimums, maximums).allSatisfy {
            AccumulatorBounds.fits(minimum: $0.0, maximum: $0.1, accumulatorBits: outerAccumulatorBits)
        }
    }

    /// Per channel, the widest tile's minimum register width (the whole dot product's without tiles).
    public var channelTileMinimumBits: [Int] {
        (0..<minimums.count).map { o in tileMinimumBits[(o * tileCount)..<((o + 1) * tileCount)].max() ?? 1 }
    }

    /// Writes `weight_int` (int8 for M ≤ 8, else int16, in `shape`), `l1_norm`, `acc_min`,
    /// `acc_max` (int64) and `p_min` (int32) per output channel into `group`, and with tiles
    /// `tile_acc_min`, `tile_acc_max` (int64) and `tile_p_min` (int32) per channel and tile
    /// (`[out, tiles]`): the integer view that quantize outputs, checkpoints and exports share.
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
        guard tile != nil else { return }
        let tiles = [l1Norms.count, tileCount]
        try group.write("tile_acc_min", tileMinimums, shape: tiles)
        try group.write("tile_acc_max", tileMaximums, shape: tiles)
        try group.write("tile_p_min", tileMinimumBits.map { Int32($0) }, shape: tiles)
    }
}
