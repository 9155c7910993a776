import A2QCore
import A2QInteger
import A2QQuant
import A2QTrain
import IntegerKernels
import Testing

/// A tiled GEMM case: weights built so that every tile's worst case over inputs in [0, cap]
/// sits at (or just inside) the 16-bit edge, while whole dot products need more than 16 bits.
private struct TileCase {
    var rows: Int, k: Int, out: Int, tile: Int, cap: Int
    var x: [UInt8]   // [paddedRows][k], weight-index order
    var w: [Int8]    // [out][k]
    var layout: TileLayout { TileLayout(inputs: k, tileLength: tile) }
    var paddedRows: Int { (rows + 3) / 4 * 4 }

    func reference(_ r: Int, _ o: Int) -> Int64 {
        (0..<k).reduce(Int64(0)) { $0 + Int64(x[r * k + $1]) * Int64(w[o * k + $1]) }
    }

    /// Tile `j` of channel `o` on row `r`, and the tile's worst case over inputs in [0, cap].
    func tileSum(_ r: Int, _ o: Int, _ j: Int) -> Int64 {
        (j * tile..<min((j + 1) * tile, k)).reduce(Int64(0)) { $0 + Int64(x[r * k + $1]) * Int64(w[o * k + $1]) }
    }

    func tileWorstCase(_ o: Int, _ j: Int) -> (minimum: Int64, maximum: Int64) {
        var (lo, hi): (Int64, Int64) = (0, 0)
        for i in j * tile..<min((j + 1) * tile, k) {
            let v = Int64(w[o * k + i]) * Int64(cap)
            if v > 0 { hi += v } else { lo += v }
        }
        return (lo, hi)
    }

    /// The rows in the layout's order (`[paddedRows][rowLength]`, zeros between tiles).
    var laidRows: [UInt8] {
        let layout = self.layout
        var laid = [UInt8](repeating: 0, count: paddedRows * layout.rowLength)
        for r in 0..<paddedRows { for i in 0..<k { laid[r * layout.rowLength + layout.position(ofWeight: i)] = x[r * k + i] } }
        return laid
    }
}

/// Budgets per tile (units of positive and of negative weight) and the input cap: 128 units at
/// 255 (±32640, the u8 edge); 217 at 151 (exactly 32767); 255 and 256 at 128 (32640 and
/// exactly −32768); and 128 less a little at 255 (just inside).
private func makeTileCase(_ generator: inout Xoshiro256, index: Int) -> TileCase {
    let fixed = [(5, 288, 64, 64), (4, 288, 33, 40), (9, 3136, 128, 150), (3, 100, 10, 7), (6, 65, 70, 17), (2, 9, 32, 3)]
    var (rows, k, out, tile) = index < fixed.count ? fixed[index]
        : (1 + Int(generator.next() % 13), 5 + Int(generator.next() % 700), 1 + Int(generator.next() % 100), 0)
    if tile == 0 { tile = 2 + Int(generator.next() % UInt64(min(k - 2, 150))) }
    let budgets = [(128, 128, 255), (217, 217, 151), (255, 256, 128), (128 - Int(generator.next() % 5), 127, 255)]
    let (positive, negative, cap) = budgets[index % budgets.count]
    var w = [Int8](repeating: 0, count: out * k)
    for o in 0..<out {
        for start in stride(from: 0, to: k, by: tile) {
            var (up, down) = (positive, negative)
            var order = Array(start..<min(start + tile, k))
            for a in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(a, Int(generator.next() % UInt64(a + 1))) }
            for (n, i) in order.enumerated() {
                // Alternate signs; each weight takes 64...127 (−128...−64) of what its sign has
                // left, so a tile of 8 or more spends both budgets exactly.
                if n % 2 == 0 {
                    let v = min(up, 64 + Int(generator.next() % 64))
                    w[o * k + i] = Int8(v)
                    up -= v
                } else {
                    let v = min(down, 64 + Int(generator.next() % 65))
                    w[o * k + i] = Int8(-v)
                    down -= v
                }
            }
        }
    }
    let paddedRows = (rows + 3) / 4 * 4
    var x = [UInt8](repeating: 0, count: paddedRows * k)
    for r in 0..<rows {
        let o = (r / 4) % out
        for i in 0..<k {
            let v = Int(w[o * k + i])
            switch r % 4 {
            case 0: x[r * k + i] = v > 0 ? UInt8(cap) : 0  // channel o's maximum in every tile
            case 1: x[r * k + i] = v < 0 ? UInt8(cap) : 0  // its minimum
            case 2: x[r * k + i] = UInt8(cap)
            default: x[r * k + i] = UInt8(generator.next() % UInt64(cap + 1))
            }
        }
    }
    return TileCase(rows: rows, k: k, out: out, tile: tile, cap: cap, x: x, w: w)
}

/// The kernel's `[paddedRows][outp]` results with widening every `widening` row positions.
private func runTiled(_ kernel: IntegerKernel, _ c: TileCase, widening: Int) -> [Int32] {
    let layout = c.layout, outp = Int(a2qi_padded_out(Int64(c.out)))
    let packed = kernel.pack(layout.rows(c.w, out: c.out), out: c.out, k: layout.rowLength)
    var result = [Int32](repeating: 0, count: c.paddedRows * outp)
    let rows = c.laidRows
    rows.withUnsafeBufferPointer { x in
        packed.withUnsafeBytes { p in
            result.withUnsafeMutableBufferPointer {
                a2qi_gemm_tiled(kernel.rawValue, x.baseAddress!, Int64(c.paddedRows), Int64(layout.rowLength), p.baseAddress!,
                                Int64(c.out), Int64(widening), $0.baseAddress!)
            }
        }
    }
    return result
}

/// Runs 200 cases on `kernel`: every result equals the Int64 reference; the cases reach both
/// 16-bit edges per tile, whole sums beyond 16 bits, and the kernel without the per-tile
/// widening gets some of them wrong (so the widening is what makes it exact).
private func checkTileKernel(_ kernel: IntegerKernel) throws {
    var generator = Xoshiro256(seed: 26)
    var (edgeHigh, edgeLow, wide, wrongWithoutTiles) = (false, false, false, false)
    for index in 0..<200 {
        let c = makeTileCase(&generator, index: index)
        let layout = c.layout
        #expect(layout.stride % 4 == 0 && layout.rowLength % 4 == 0)
        for o in 0..<c.out {
            for j in 0..<layout.tileCount {
                let (lo, hi) = c.tileWorstCase(o, j)
                try #require(lo >= -32768 && hi <= 32767, "case \(index): tile \(j) of channel \(o) has worst case [\(lo), \(hi)]")
            }
        }
        let outp = Int(a2qi_padded_out(Int64(c.out)))
        let result = runTiled(kernel, c, widening: layout.stride)
        for r in 0..<c.rows {
            for o in 0..<c.out {
                let expected = c.reference(r, o)
                guard Int64(result[r * outp + o]) == expected else {
                    Issue.record("\(kernel) case \(index) (rows \(c.rows), K \(c.k), T \(c.tile), out \(c.out), cap \(c.cap)): [\(r), \(o)] = \(result[r * outp + o]), expected \(expected)")
                    return
                }
                wide = wide || abs(expected) > 32767
                for j in 0..<layout.tileCount {
                    let t = c.tileSum(r, o, j)
                    edgeHigh = edgeHigh || t == 32767
                    edgeLow = edgeLow || t == -32768
                }
            }
        }
        if index < 40 {
            // One 16-bit register for the whole row: wrong wherever a whole sum leaves 16 bits.
            let whole = runTiled(kernel, c, widening: layout.rowLength)
            wrongWithoutTiles = wrongWithoutTiles || (0..<c.rows).contains { r in (0..<c.out).contains { Int64(whole[r * outp + $0]) != c.reference(r, $0) } }
        }
    }
    #expect(edgeHigh && edgeLow, "no tile sum reached 32767 (\(edgeHigh)) or −32768 (\(edgeLow))")
    #expect(wide, "no dot product needed more than 16 bits")
    #expect(wrongWithoutTiles, "the 16-bit kernel without per-tile widening was never wrong: the cases do not test the tiles")
}

@Suite("16-bit tile kernels: exact at the per-tile 16-bit edge")
struct IntegerTileKernelTests {
    @Test("TileLayout puts each tile at a multiple of 4, in weight-index order, zeros between tiles")
    func layout() {
        let layout = TileLayout(inputs: 10, tileLength: 3)
        #expect(layout.stride == 4 && layout.tileCount == 4 && layout.rowLength == 16)
        #expect((0..<10).map(layout.position(ofWeight:)) == [0, 1, 2, 4, 5, 6, 8, 9, 10, 12])
        #expect(layout.rows((1...10).map { Int8($0) }, out: 1) == [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 10, 0, 0, 0])
        let whole = TileLayout(inputs: 9, tileLength: 9)
        #expect(whole.tileCount == 1 && whole.rowLength == 12)
    }

    @Test("int16-avx2 equals Σ x·w in Int64 for 200 tiled shapes (K mod T ≠ 0, T mod 4 ≠ 0, out mod 32 ≠ 0) with every tile at the 16-bit edge",
          .enabled(if: IntegerKernel.int16AVX2.isSupported, "this CPU (or A2Q_CPU_FEATURES_LIMIT) has no AVX2: int16-avx2 cannot run here"))
    func tilesAVX2() throws {
        try checkTileKernel(.int16AVX2)
    }

    @Test("int16-avx512 equals Σ x·w in Int64 for 200 tiled shapes with every tile at the 16-bit edge",
          .enabled(if: IntegerKernel.int16AVX512.isSupported, "this CPU (or A2Q_CPU_FEATURES_LIMIT) has no AVX-512 BW: int16-avx512 cannot run here"))
    func tilesAVX512() throws {
        try checkTileKernel(.int16AVX512)
    }

    @Test("every fused kernel (avx2, vnni, 16-bit tiles) equals its GEMM then a2qi_requantize_u8, and with pool 2 the maximum of each group of four rows")
    func fusedRequantizationAndPooling() throws {
        var generator = Xoshiro256(seed: 28)
        let kernels = IntegerKernel.allCases.filter { $0.isSupported && $0 != .scalar }
        if CPU.tier >= .avx2 { #expect(kernels.contains(.avx2) && kernels.contains(.int16AVX2)) }
        for index in 0..<40 {
            let c = makeTileCase(&generator, index: index)
            let layout = c.layout, outp = Int(a2qi_padded_out(Int64(c.out)))
            let multiplier = (0..<c.out).map { _ in generator.uniform(-2e-4, 3e-4) }
            let offset = (0..<c.out).map { _ in generator.uniform(-5, 5) }
            let inverse = generator.uniform(0.05, 0.5), relu = index % 2 == 0
            let (lo, hi): (Float, Float) = index % 3 == 0 ? (0, 15) : (0, 255)
            let rows = c.laidRows
            for kernel in kernels {
                let accumulators = runTiled(kernel, c, widening: layout.stride)
                var expected = [UInt8](repeating: 0, count: c.paddedRows * c.out)
                multiplier.withUnsafeBufferPointer { m in
                    offset.withUnsafeBufferPointer { b in
                        a2qi_requantize_u8(accumulators, Int64(outp), Int64(c.paddedRows), Int64(c.out), m.baseAddress!, b.baseAddress!,
                                           relu ? 1 : 0, inverse, lo, hi, &expected)
                    }
                }
                let packed = kernel.pack(layout.rows(c.w, out: c.out), out: c.out, k: layout.rowLength)
                for pool in [1, 2] as [Int32] {
                    let count = pool == 2 ? c.paddedRows : c.rows
                    var fused = [UInt8](repeating: 0, count: (pool == 2 ? count / 4 : count) * c.out)
                    let done = multiplier.withUnsafeBufferPointer { m in
                        offset.withUnsafeBufferPointer { b in
                            var e = a2qi_requantization(multiplier: m.baseAddress!, offset: b.baseAddress!, inverse: inverse, lo: lo, hi: hi,
                                                        relu: relu ? 1 : 0)
                            return rows.withUnsafeBufferPointer { x in
                                packed.withUnsafeBytes { p in
                                    a2qi_gemm_requantize(kernel.rawValue, x.baseAddress!, Int64(c.paddedRows), Int64(count), Int64(layout.rowLength),
                                                         p.baseAddress!, Int64(c.out), Int64(layout.stride), pool, &e, &fused)
                                }
                            }
                        }
                    }
                    #expect(done == 1, "\(kernel) has no fused form")
                    let want: [UInt8] = pool == 1 ? Array(expected[0..<(count * c.out)])
                        : (0..<(count / 4 * c.out)).map { i in (0..<4).map { expected[((i / c.out) * 4 + $0) * c.out + i % c.out] }.max() ?? 0 }
                    #expect(fused == want, "\(kernel) pool \(pool) case \(index): first difference at \(zip(fused, want).enumerated().first { $0.element.0 != $0.element.1 }.map { "\($0.offset): \($0.element)" } ?? "count")")
                }
            }
        }
    }

    @Test("the 32-bit kernels ignore the tile argument: exact on the tile layout too")
    func int32KernelsOnTileLayout() throws {
        var generator = Xoshiro256(seed: 27)
        for index in 0..<30 {
            let c = makeTileCase(&generator, index: index)
            let outp = Int(a2qi_padded_out(Int64(c.out)))
            for kernel in IntegerKernel.allCases where kernel.isSupported && !kernel.accumulates16Bits {
                let result = runTiled(kernel, c, widening: c.layout.stride)
                let bad = (0..<c.rows).contains { r in (0..<c.out).contains { Int64(result[r * outp + $0]) != c.reference(r, $0) } }
                #expect(!bad, "\(kernel) case \(index)")
            }
        }
    }
}
