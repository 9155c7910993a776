import A2QQuant
import Testing

@Suite("Accumulator bounds (hand-computed)")
struct AccumulatorBoundsTests {
    let u8 = InputFormat(bits: 8, signed: false)
    let s8 = InputFormat(bits: 8, signed: true)

    @Test("A2Q and A2Q+ bounds")
    func bounds() {
        // (2^15 − 1)·2^−8 ≈ 128 and (2^16 − 2)/255 ≈ 257, the A2Q.md example.
        #expect(AccumulatorBounds.a2qBound(accumulatorBits: 16, input: u8) == 32767.0 / 256)
        #expect(AccumulatorBounds.a2qPlusBound(accumulatorBits: 16, input: u8) == 65534.0 / 255)
        // Signed inputs double A2Q's bound: (2^15 − 1)·2^−7.
        #expect(AccumulatorBounds.a2qBound(accumulatorBits: 16, input: s8) == 32767.0 / 128)
        // Too narrow: P=9 (A2Q) and P=8 (A2Q+) with 8-bit unsigned inputs.
        #expect(AccumulatorBounds.a2qBound(accumulatorBits: 9, input: u8) < 1)
        #expect(AccumulatorBounds.a2qPlusBound(accumulatorBits: 8, input: u8) < 1)
        #expect(AccumulatorBounds.smallestUsefulBits(plus: false, input: u8) == 10)
        #expect(AccumulatorBounds.smallestUsefulBits(plus: true, input: u8) == 9)
    }

    @Test("Exact worst case and minimum widths")
    func worstCase() {
        let q: [Int32] = [4, -2, 1, 0]
        let (lo, hi) = AccumulatorBounds.worstCase(q, input: u8)
        #expect(lo == -510 && hi == 1275)
        #expect(AccumulatorBounds.minimumBitsExact(minimum: lo, maximum: hi) == 12)
        #expect(AccumulatorBounds.fits(minimum: lo, maximum: hi, accumulatorBits: 12))
        #expect(!AccumulatorBounds.fits(minimum: lo, maximum: hi, accumulatorBits: 11))
        // Signed 8-bit inputs in [−128, 127]: max = 127·5 + (−128)(−2) = 891, min = −128·5 + 127·(−2) = −894.
        let (slo, shi) = AccumulatorBounds.worstCase(q, input: s8)
        #expect(slo == -894 && shi == 891)
        // The register edge: exactly 2^(P−1) − 1 fits, one more does not.
        #expect(AccumulatorBounds.minimumBitsExact(minimum: 0, maximum: 32767) == 16)
        #expect(AccumulatorBounds.minimumBitsExact(minimum: -32768, maximum: 0) == 16)
        #expect(AccumulatorBounds.minimumBitsExact(minimum: 0, maximum: 32768) == 17)
        // A2Q: b = log2(7) + 8 = 10.807; P = ceil(b + log2(1 + 2^−b) + 1) = 12.
        #expect(AccumulatorBounds.minimumBitsA2Q(l1Norm: 7, input: u8) == 12)
        // A2Q+: ceil(log2(7·255 + 2)) = ceil(10.80) = 11.
        #expect(AccumulatorBounds.minimumBitsA2QPlus(l1Norm: 7, input: u8) == 11)
        // L1 = 128, unsigned 8-bit: b = 15, ceil(15 + log2(1 + 2^−15) + 1) = 17 (the A2Q form is
        // conservative: the exact worst case 128·255 = 32640 fits 16 bits).
        #expect(AccumulatorBounds.minimumBitsA2Q(l1Norm: 128, input: u8) == 17)
        #expect(AccumulatorBounds.minimumBitsExact(minimum: 0, maximum: 128 * 255) == 16)
        #expect(AccumulatorBounds.minimumBitsA2QPlus(l1Norm: 257, input: u8) == 17)
        #expect(AccumulatorBounds.minimumBitsA2QPlus(l1Norm: 256, input: u8) == 16)
    }

    @Test("Data-type bound P*")
    func dataTypeBound() {
        // fc1 of the cnn: K = 3136, W8A8 unsigned: a = log2(3136) + 8 + 8 − 1 = 26.61 → 28.
        #expect(AccumulatorBounds.dataTypeBound(fanIn: 3136, weightBits: 8, input: u8) == 28)
        // K = 1, M = N = 2 unsigned: a = 3, P* = ceil(3 + log2(1.125) + 1) = 5 (3·1 → needs 3 = 2^2 − 1 → P = 3 exactly,
        // the bound is conservative by design).
        #expect(AccumulatorBounds.dataTypeBound(fanIn: 1, weightBits: 2, input: InputFormat(bits: 2, signed: false)) == 5)
    }
}
