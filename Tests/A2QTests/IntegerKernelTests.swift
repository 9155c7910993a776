import A2QCore
import A2QData
import A2QInteger
import A2QQuant
import A2QTrain
import Foundation
import IntegerKernels
import Testing

/// Random test data for the integer kernels.
private struct KernelCase {
    var rows: Int, k: Int, out: Int
    var x: [UInt8]   // [paddedRows][kp]
    var w: [Int8]    // [out][k]
    var kp: Int { Int(a2qi_padded_k(Int64(k))) }
    var paddedRows: Int { (rows + 3) / 4 * 4 }

    /// Σ x·w in Int64, the reference every kernel must equal.
    func reference(_ r: Int, _ o: Int) -> Int64 {
        var s: Int64 = 0
        for i in 0..<k { s += Int64(x[r * kp + i]) * Int64(w[o * k + i]) }
        return s
    }

    /// Whether every channel's worst case over all u8 inputs fits a 16-bit register.
    var fits16Bits: Bool {
        (0..<out).allSatisfy { o in
            var positive: Int64 = 0, negative: Int64 = 0
            for i in 0..<k { let v = Int64(w[o * k + i]); if v > 0 { positive += v } else { negative += v } }
            return positive * 255 <= 32767 && negative * 255 >= -32768
        }
    }
}

private func makeCase(_ generator: inout Xoshiro256, sixteenBit: Bool, index: Int) -> KernelCase {
    let shapes = [(1, 1, 1), (4, 4, 32), (5, 3, 33), (7, 9, 10), (3, 65, 64), (9, 288, 64), (4, 3136, 128), (2, 1000, 17)]
    let (rows, k, out) = index < shapes.count ? shapes[index]
        : (1 + Int(generator.next() % 24), 1 + Int(generator.next() % 700), 1 + Int(generator.next() % 100))
    let kp = Int(a2qi_padded_k(Int64(k))), paddedRows = (rows + 3) / 4 * 4
    let inputs = index % 3  // 0: uniform, 1: all 255, 2: sparse
    var x = [UInt8](repeating: 0, count: paddedRows * kp)
    for r in 0..<rows {
        for i in 0..<k {
            x[r * kp + i] = inputs == 1 ? 255 : inputs == 2 ? (generator.next() % 4 == 0 ? UInt8(generator.next() % 256) : 0)
                : UInt8(generator.next() % 256)
        }
    }
    var w = [Int8](repeating: 0, count: out * k)
    let weights = (index / 3) % 4  // 0: uniform, 1: all +127, 2: all −128, 3: sparse
    for o in 0..<out {
        for i in 0..<k {
            switch weights {
            case 1: w[o * k + i] = 127
            case 2: w[o * k + i] = -128
            case 3: w[o * k + i] = generator.next() % 8 == 0 ? Int8(truncatingIfNeeded: generator.next()) : 0
            default: w[o * k + i] = Int8(truncatingIfNeeded: generator.next())
            }
        }
    }
    if sixteenBit {
        // Keep each channel inside a 16-bit worst case: at most 128 units of positive and of
        // negative weight (128·255 = 32640), filled up to exactly that where k allows.
        for o in 0..<out {
            var positive = 128, negative = 128
            for i in 0..<k {
                var v = Int(w[o * k + i])
                if v > 0 { v = min(v, positive); positive -= v } else { v = max(v, -negative); negative += v }
                w[o * k + i] = Int8(v)
            }
        }
    }
    return KernelCase(rows: rows, k: k, out: out, x: x, w: w)
}

private func run(_ kernel: IntegerKernel, _ c: KernelCase) -> [Int32] {
    let outp = Int(a2qi_padded_out(Int64(c.out)))
    var result = [Int32](repeating: 0, count: c.paddedRows * outp)
    var packed = [UInt8](repeating: 0, count: Int(a2qi_packed_bytes(kernel.rawValue, Int64(c.out), Int64(c.k))))
    c.w.withUnsafeBufferPointer { w in packed.withUnsafeMutableBytes { a2qi_pack(kernel.rawValue, w.baseAddress!, Int64(c.out), Int64(c.k), $0.baseAddress!) } }
    c.x.withUnsafeBufferPointer { x in
        packed.withUnsafeBytes { p in
            result.withUnsafeMutableBufferPointer {
                a2qi_gemm(kernel.rawValue, x.baseAddress!, Int64(c.paddedRows), Int64(c.kp), p.baseAddress!, Int64(c.out), $0.baseAddress!)
            }
        }
    }
    return result
}

/// Whether `kernel` gives Σ x·w for every row and channel of `c`; records the first difference.
private func matchesReference(_ kernel: IntegerKernel, _ c: KernelCase) -> Bool {
    let outp = Int(a2qi_padded_out(Int64(c.out)))
    let result = run(kernel, c)
    for r in 0..<c.rows {
        for o in 0..<c.out where Int64(result[r * outp + o]) != c.reference(r, o) {
            Issue.record("\(kernel): rows \(c.rows) k \(c.k) out \(c.out): [\(r), \(o)] = \(result[r * outp + o]), expected \(c.reference(r, o))")
            return false
        }
    }
    return true
}

/// The CPU tier and VNNI that the kernel's own flags (/proc/cpuinfo, which Linux clears for
/// features the OS does not enable) give, capped as A2Q_CPU_FEATURES_LIMIT caps a2q's detection.
private func tierFromKernelFlags() throws -> (tier: CPU.Tier, vnni: Bool, flags: Set<String>) {
    let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
    let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("flags") }, "no flags line in /proc/cpuinfo")
    let flags = Set((line.split(separator: ":", maxSplits: 1).last ?? "").split(separator: " ").map(String.init))
    let avx2 = ["avx", "avx2", "fma"].allSatisfy(flags.contains)
    let avx512 = avx2 && ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"].allSatisfy(flags.contains)
    var tier: CPU.Tier = avx512 ? .avx512 : avx2 ? .avx2 : .baseline
    var vnni = avx512 && flags.contains("avx512_vnni")
    let limit = ProcessInfo.processInfo.environment["A2Q_CPU_FEATURES_LIMIT"] ?? ""
    let cap: CPU.Tier = limit == "baseline" ? .baseline : limit == "avx2" ? .avx2 : .avx512
    if !limit.isEmpty && tier > cap { tier = cap; vnni = false }
    return (tier, vnni, flags)
}

@Suite("Integer kernels: bit-exact against Int64 references")
struct IntegerKernelTests {
    @Test("a2q's CPU detection (cpuid, XCR0) agrees with the kernel's CPU flags in /proc/cpuinfo, and decides which kernels the tests below expect",
          .enabled(if: FileManager.default.fileExists(atPath: "/proc/cpuinfo"), "needs Linux's /proc/cpuinfo to cross-check the detection"))
    func detectionMatchesKernelFlags() throws {
        let (tier, vnni, flags) = try tierFromKernelFlags()
        let relevant = flags.filter { $0.hasPrefix("avx") || $0 == "fma" }.sorted()
        #expect(CPU.tier == tier, "a2q detects \(CPU.description); /proc/cpuinfo gives tier \(tier) from \(relevant)")
        #expect(CPU.hasVNNI == vnni, "a2q detects \(CPU.description); /proc/cpuinfo gives VNNI \(vnni) from \(relevant)")
        #expect(IntegerKernel.avx2.isSupported == (tier >= .avx2) && IntegerKernel.int16AVX2.isSupported == (tier >= .avx2))
        #expect(IntegerKernel.int16AVX512.isSupported == (tier >= .avx512) && IntegerKernel.vnni.isSupported == vnni)
        print("CPU: \(CPU.description); /proc/cpuinfo: \(relevant.joined(separator: " "))")
    }

    @Test("every 32-bit kernel this CPU runs equals Σ x·w over 300 random shapes (K = 1…700, extreme 255×127 and −128 weights)")
    func int32Kernels() throws {
        let kernels = IntegerKernel.allCases.filter { $0.isSupported && !$0.accumulates16Bits }
        #expect(kernels.contains(.scalar))
        if CPU.tier >= .avx2 { #expect(kernels.contains(.avx2)) }
        if CPU.hasVNNI { #expect(kernels.contains(.vnni)) }
        var generator = Xoshiro256(seed: 11)
        var checked = 0
        for index in 0..<300 {
            let c = makeCase(&generator, sixteenBit: false, index: index)
            for kernel in kernels {
                guard matchesReference(kernel, c) else { return }
                checked += 1
            }
        }
        #expect(checked == 300 * kernels.count)
    }

    @Test("the 16-bit kernels equal Σ x·w on layers whose worst case fits 16 bits, up to the edge (128·255)")
    func int16Kernels() throws {
        let kernels = IntegerKernel.allCases.filter { $0.isSupported && $0.accumulates16Bits }
        if CPU.tier >= .avx2 { #expect(kernels.contains(.int16AVX2)) }
        var generator = Xoshiro256(seed: 12)
        for index in 0..<300 {
            let c = makeCase(&generator, sixteenBit: true, index: index)
            #expect(c.fits16Bits)
            for kernel in kernels {
                guard matchesReference(kernel, c) else { return }
            }
        }
    }

    // On CPUs without VNNI (or under A2Q_CPU_FEATURES_LIMIT=avx2) the run lists this test as
    // skipped, with the reason; every fused kernel is tested in IntegerTileKernelTests.
    @Test("the fused VNNI requantisation equals the GEMM followed by the float formula, bit for bit",
          .enabled(if: IntegerKernel.vnni.isSupported, "this CPU (or A2Q_CPU_FEATURES_LIMIT) has no AVX-512 VNNI (the other kernels' fused epilogues are tested in IntegerTileKernelTests)"))
    func fusedRequantization() throws {
        var generator = Xoshiro256(seed: 13)
        for index in 0..<60 {
            let c = makeCase(&generator, sixteenBit: false, index: index + 8)
            let outp = Int(a2qi_padded_out(Int64(c.out)))
            let multiplier = (0..<c.out).map { _ in generator.uniform(-2e-4, 3e-4) }
            let offset = (0..<c.out).map { _ in generator.uniform(-20, 20) }
            let inverse = generator.uniform(0.05, 2), relu = index % 2 == 0
            let (lo, hi): (Float, Float) = index % 3 == 0 ? (0, 15) : (0, 255)
            let accumulators = run(.vnni, c)
            var packed = [UInt8](repeating: 0, count: Int(a2qi_packed_bytes(IntegerKernel.vnni.rawValue, Int64(c.out), Int64(c.k))))
            c.w.withUnsafeBufferPointer { w in packed.withUnsafeMutableBytes { a2qi_pack(IntegerKernel.vnni.rawValue, w.baseAddress!, Int64(c.out), Int64(c.k), $0.baseAddress!) } }
            var fused = [UInt8](repeating: 0, count: c.rows * c.out)
            let done = multiplier.withUnsafeBufferPointer { m in
                offset.withUnsafeBufferPointer { b in
                    var e = a2qi_requantization(multiplier: m.baseAddress!, offset: b.baseAddress!, inverse: inverse, lo: lo, hi: hi, relu: relu ? 1 : 0)
                    return c.x.withUnsafeBufferPointer { x in
                        packed.withUnsafeBytes { p in
                            fused.withUnsafeMutableBufferPointer {
                                a2qi_gemm_requantize(IntegerKernel.vnni.rawValue, x.baseAddress!, Int64(c.paddedRows), Int64(c.rows), Int64(c.kp),
                                                     p.baseAddress!, Int64(c.out), Int64(c.kp), 1, &e, $0.baseAddress!)
                            }
                        }
                    }
                }
            }
            #expect(done == 1)
            for r in 0..<c.rows {
                for o in 0..<c.out {
                    // The float graph's formula, written out in Swift: two roundings, ReLU, rint, clip.
                    var y = Float(accumulators[r * outp + o]) * multiplier[o]
                    y = y + offset[o]
                    if relu { y = max(y, 0) }
                    let q = min(max((y * inverse).rounded(.toNearestOrEven), lo), hi)
                    if fused[r * c.out + o] != UInt8(q) {
                        Issue.record("case \(index) [\(r), \(o)]: fused \(fused[r * c.out + o]), formula \(q)")
                        return
                    }
                }
            }
        }
    }

    @Test("the P-bit register simulation equals a sequential register in weight-index order (wrap, saturate, partial sums)")
    func registerSimulation() throws {
        var generator = Xoshiro256(seed: 14)
        for index in 0..<200 {
            let k = 1 + Int(generator.next() % 400), bits = 8 + Int(generator.next() % 13)
            let lo = -(Int64(1) << (bits - 1)), hi = (Int64(1) << (bits - 1)) - 1
            let ldw = 64
            var w = [Int16](repeating: 0, count: k * ldw)
            for i in 0..<(k * ldw) { w[i] = generator.next() % 3 == 0 ? 0 : Int16(Int(generator.next() % 255) - 127) }
            // The row holds the inputs in another order: input i of the weights is row[positions[i]].
            var positions = (0..<k).map { Int32($0) }
            for i in stride(from: k - 1, to: 0, by: -1) { positions.swapAt(i, Int(generator.next() % UInt64(i + 1))) }
            let row = (0..<k).map { _ in generator.next() % 2 == 0 ? UInt8(0) : UInt8(generator.next() % 256) }
            var wide = [Int32](repeating: 0, count: 64), saturated = wide, partial = wide
            for saturate in [Int32(0), 1] {
                a2qi_simulate(w, Int64(ldw), positions, row, Int64(k), Int32(lo), Int32(hi), saturate, &wide, &saturated, &partial)
                for l in 0..<64 {
                    var exact: Int64 = 0, register: Int64 = 0, wrapped: Int64 = 0, left = false
                    for i in 0..<k {
                        let p = Int64(w[i * ldw + l]) * Int64(row[Int(positions[i])])
                        exact += p
                        if exact < lo || exact > hi { left = true }
                        register = min(max(register + p, lo), hi)
                        // A real P-bit adder: two's complement wrap after every addition.
                        wrapped = (wrapped + p) & ((1 << bits) - 1)
                        if wrapped > hi { wrapped -= 1 << bits }
                    }
                    #expect(Int64(wide[l]) == exact)
                    #expect((partial[l] != 0) == left)
                    if saturate == 1 { #expect(Int64(saturated[l]) == register, "case \(index) lane \(l)") }
                    // The engine's wrap (the exact sum modulo 2^P) is what the sequential adder holds.
                    let shift = 64 - bits
                    #expect((exact << shift) >> shift == wrapped)
                }
            }
        }
    }
}
