import IntegerKernels

/// The order of K in a tiled layer's activation rows (and packed weights) on the 16-bit tile
/// kernels: every tile contiguous and starting at a multiple of 4.
///
/// A tile is a set of consecutive *weight indices* (row-major `[in/groups, kh, kw]`), while the
/// fast path's rows are NHWC im2row (`(kh, kw, c)`), where a tile's inputs are scattered over
/// the kernel rows. For a tiled layer on a 16-bit kernel the plan therefore permutes K instead:
/// tile `j` (weight indices `j·T ..< min((j+1)·T, K)`, `T` the layer's `tileLength`) occupies
/// row positions `j·stride ..< j·stride + its length`, in weight-index order, `stride` being
/// `T` rounded up to 4; the positions between tiles hold a zero input and a zero weight. No
/// pair (`vpmaddubsw`) or quad (`vpdpbusd`) of positions then holds products of two tiles, so
/// the kernel that widens every `stride` positions (`a2qi_gemm_tiled`) sums exactly the
/// layer's tiles, each bounded by its proven worst case. `position(ofWeight:)` keeps each tile in
/// weight-index order; the engine's plan sorts a tile's inputs by their place in the input
/// instead (the tile's bound holds for its partial sums in any order), so that its gather
/// (`a2qi_im2row_u8` with segments) copies runs of channels. Layers without tiles keep the
/// contiguous NHWC rows.
public struct TileLayout: Sendable, Equatable {
    /// K, the weights of one output channel.
    public let inputs: Int
    /// T, the weight indices one tile sums.
    public let tileLength: Int
    /// The row positions from one tile's start to the next's (`T` rounded up to 4): the
    /// 16-bit kernels' `tile` argument.
    public let stride: Int

    public init(inputs: Int, tileLength: Int) {
        precondition(inputs > 0 && tileLength > 0, "TileLayout: K and T must be positive")
        self.inputs = inputs
        self.tileLength = min(tileLength, inputs)
        stride = (self.tileLength + 3) / 4 * 4
    }

    /// Tiles per output channel.
    public var tileCount: Int { (inputs + tileLength - 1) / tileLength }

    /// Bytes of one activation row: every tile but the last takes `stride`, the last its
    /// length rounded up to 4.
    public var rowLength: Int {
        let last = inputs - (tileCount - 1) * tileLength
        return (tileCount - 1) * stride + (last + 3) / 4 * 4
    }

    /// The row position of weight index `index`.
    public func position(ofWeight index: Int) -> Int { (index / tileLength) * stride + index % tileLength }

    /// `[out, K]` weights in weight-index order laid out as `[out, rowLength]` rows, zeros
    /// between the tiles.
    public func rows(_ weights: [Int8], out: Int) -> [Int8] {
        precondition(weights.count == out * inputs, "TileLayout.rows: \(weights.count) weights for \(out) x \(inputs)")
        var laid = [Int8](repeating: 0, count: out * rowLength)
        for o in 0..<out { for i in 0..<inputs { laid[o * rowLength + position(ofWeight: i)] = weights[o * inputs + i] } }
        return laid
    }
}
