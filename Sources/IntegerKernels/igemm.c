// Integer GEMM kernels (u8 activations x s8 weights) and their packing. See a2q_igemm.h.
//
// Each kernel computes 4 rows x 32 outputs at a time; the rest of the tile logic is shared.
// Intrinsics are compiled per function with target attributes and chosen at run time from
// CPUSupport's detection, so one binary runs on every x86-64 CPU.
#include "a2q_igemm.h"
#include "a2q_cpu.h"
#include <string.h>

// The fused requantisation must round exactly as the float graph: a multiply, then an add.
#pragma clang fp contract(off)
#if defined(__x86_64__)
#include <immintrin.h>
#define X86 1
#endif

int64_t a2qi_padded_k(int64_t k) { return (k + 3) / 4 * 4; }

int64_t a2qi_padded_out(int64_t out) { return (out + 31) / 32 * 32; }

int32_t a2qi_supported(int32_t kernel) {
    const a2q_cpu_features *f = a2q_cpu();
    switch (kernel) {
    case A2QI_SCALAR: return 1;
    case A2QI_AVX2: case A2QI_INT16_AVX2: return f->tier >= A2Q_TIER_AVX2;
    case A2QI_VNNI: return f->tier >= A2Q_TIER_AVX512 && f->avx512_vnni;
    case A2QI_INT16_AVX512: return f->tier >= A2Q_TIER_AVX512;
    default: return 0;
    }
}

int32_t a2qi_best_int32(void) {
    return a2qi_supported(A2QI_VNNI) ? A2QI_VNNI : a2qi_supported(A2QI_AVX2) ? A2QI_AVX2 : A2QI_SCALAR;
}

int32_t a2qi_best_int16(void) {
    return a2qi_supported(A2QI_INT16_AVX512) ? A2QI_INT16_AVX512 : a2qi_supported(A2QI_INT16_AVX2) ? A2QI_INT16_AVX2 : -1;
}

const char *a2qi_name(int32_t kernel) {
    static const char *names[] = {"scalar", "avx2", "vnni", "int16-avx2", "int16-avx512"};
    return kernel >= 0 && kernel <= 4 ? names[kernel] : "unknown";
}

int64_t a2qi_packed_bytes(int32_t kernel, int64_t out, int64_t k) {
    int64_t bytes = a2qi_padded_out(out) * a2qi_padded_k(k);
    return kernel == A2QI_AVX2 ? 2 * bytes : bytes;
}

/// Packing: scalar keeps w[outp][kp]; VNNI groups of 4 k per output ([kp/4][outp][4]); AVX2
/// int32 pairs of k widened to int16 ([kp/2][outp][2]); the 16-bit kernels pairs of k as bytes
/// ([kp/2][outp][2]).
void a2qi_pack(int32_t kernel, const int8_t *w, int64_t out, int64_t k, void *packed) {
    int64_t kp = a2qi_padded_k(k), outp = a2qi_padded_out(out);
    memset(packed, 0, (size_t)a2qi_packed_bytes(kernel, out, k));
    int8_t *p8 = packed;
    int16_t *p16 = packed;
    for (int64_t o = 0; o < out; o++) {
        for (int64_t i = 0; i < k; i++) {
            int8_t v = w[o * k + i];
            switch (kernel) {
            case A2QI_SCALAR: p8[o * kp + i] = v; break;
            case A2QI_VNNI: p8[((i / 4) * outp + o) * 4 + i % 4] = v; break;
            case A2QI_AVX2: p16[((i / 2) * outp + o) * 2 + i % 2] = v; break;
            default: p8[((i / 2) * outp + o) * 2 + i % 2] = v; break;
            }
        }
    }
}

static void gemm_scalar(const uint8_t *x, int64_t rows, int64_t kp, const int8_t *w, int64_t outp, int32_t *c) {
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *xr = x + r * kp;
        for (int64_t o = 0; o < outp; o++) {
            const int8_t *wo = w + o * kp;
            int32_t s = 0;
            for (int64_t i = 0; i < kp; i++) s += (int32_t)xr[i] * wo[i];
            c[r * outp + o] = s;
        }
    }
}

#ifdef X86
static inline int32_t load4(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline int32_t load2(const uint8_t *p) { return (int32_t)p[0] | ((int32_t)p[1] << 8); }

// 4 rows x 32 outputs over all of K: a0..a3 (outputs o0..o0+15) and b0..b3 (o0+16..o0+31).
#define VNNI_TILE()                                                                                             \
    for (int64_t i = 0; i < kp; i += 4, wp += outp * 4) {                                                       \
        __m512i w0 = _mm512_loadu_si512(wp), w1 = _mm512_loadu_si512(wp + 64);                                  \
        __m512i v;                                                                                              \
        v = _mm512_set1_epi32(load4(x0 + i)); a0 = _mm512_dpbusd_epi32(a0, v, w0); b0 = _mm512_dpbusd_epi32(b0, v, w1); \
        v = _mm512_set1_epi32(load4(x1 + i)); a1 = _mm512_dpbusd_epi32(a1, v, w0); b1 = _mm512_dpbusd_epi32(b1, v, w1); \
        v = _mm512_set1_epi32(load4(x2 + i)); a2 = _mm512_dpbusd_epi32(a2, v, w0); b2 = _mm512_dpbusd_epi32(b2, v, w1); \
        v = _mm512_set1_epi32(load4(x3 + i)); a3 = _mm512_dpbusd_epi32(a3, v, w0); b3 = _mm512_dpbusd_epi32(b3, v, w1); \
    }

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static void gemm_vnni(const uint8_t *x, int64_t rows, int64_t kp, const int8_t *w, int64_t outp, int32_t *c) {
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        const uint8_t *x0 = x + r0 * kp, *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
        for (int64_t o0 = 0; o0 < outp; o0 += 32) {
            __m512i a0 = _mm512_setzero_si512(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            const int8_t *wp = w + o0 * 4;
            VNNI_TILE();
            int32_t *cr = c + r0 * outp + o0;
            _mm512_storeu_si512(cr, a0); _mm512_storeu_si512(cr + 16, b0); cr += outp;
            _mm512_storeu_si512(cr, a1); _mm512_storeu_si512(cr + 16, b1); cr += outp;
            _mm512_storeu_si512(cr, a2); _mm512_storeu_si512(cr + 16, b2); cr += outp;
            _mm512_storeu_si512(cr, a3); _mm512_storeu_si512(cr + 16, b3);
        }
    }
}

// The fused requantisation (a2qi_requantize_u8's formula, in registers). An epilogue takes
// one block's sums of 8 (AVX2) or 16 (AVX-512) channels for its 4 rows. Without `pool` each
// of the first `valid` rows goes to q + r·out. With `pool` the four rows are one 2 x 2 window
// and one row goes to q: the maximum of the four quantized values. Every step of the
// requantisation (int → float, · m, + b, ReLU, · 1/scale with 1/scale > 0, rint, clamp) is a
// monotone function of the sum, non-decreasing when m ≥ 0 and non-increasing when m < 0 (by
// its sign bit), so that maximum is the requantisation of the sums' maximum, or of their
// minimum where m < 0: one requantisation per window instead of four, exactly.
typedef struct { __m256 m, b, inverse, lo, hi; int relu; } requant8;

__attribute__((target("avx2,fma"), always_inline))
static inline requant8 requant8_make(const a2qi_requantization *e, int64_t o, int64_t n) {
    requant8 r;
    if (n >= 8) {
        r.m = _mm256_loadu_ps(e->multiplier + o);
        r.b = _mm256_loadu_ps(e->offset + o);
    } else {
        float mt[8] = {0}, bt[8] = {0};
        memcpy(mt, e->multiplier + o, (size_t)n * 4);
        memcpy(bt, e->offset + o, (size_t)n * 4);
        r.m = _mm256_loadu_ps(mt);
        r.b = _mm256_loadu_ps(bt);
    }
    r.inverse = _mm256_set1_ps(e->inverse);
    r.lo = _mm256_set1_ps(e->lo);
    r.hi = _mm256_set1_ps(e->hi);
    r.relu = e->relu;
    return r;
}

__attribute__((target("avx2,fma"), always_inline))
static inline void quantize8(__m256i acc, const requant8 *r, uint8_t *q, int64_t n) {
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), r->m), r->b);
    if (r->relu) y = _mm256_max_ps(y, _mm256_setzero_ps());  // NaN → 0, like y > 0 ? y : 0
    __m256 t = _mm256_round_ps(_mm256_mul_ps(y, r->inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm256_min_ps(_mm256_max_ps(t, r->lo), r->hi);  // NaN → lo
    __m256i v = _mm256_cvtps_epi32(t);
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    __m128i p8 = _mm_packus_epi16(p16, p16);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)q, p8);
    } else {
        uint8_t bytes[16];
        _mm_storeu_si128((__m128i *)bytes, p8);
        memcpy(q, bytes, (size_t)n);
    }
}

__attribute__((target("avx2,fma"), always_inline))
static inline void epilogue8(__m256i s0, __m256i s1, __m256i s2, __m256i s3, int valid, int pool, const requant8 *r,
                             uint8_t *q, int64_t out, int64_t n) {
    if (pool) {
        __m256i hi = _mm256_max_epi32(_mm256_max_epi32(s0, s1), _mm256_max_epi32(s2, s3));
        __m256i lo = _mm256_min_epi32(_mm256_min_epi32(s0, s1), _mm256_min_epi32(s2, s3));
        __m256i pick = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(hi), _mm256_castsi256_ps(lo), r->m));
        quantize8(pick, r, q, n);
        return;
    }
    quantize8(s0, r, q, n);
    if (valid > 1) quantize8(s1, r, q + out, n);
    if (valid > 2) quantize8(s2, r, q + 2 * out, n);
    if (valid > 3) quantize8(s3, r, q + 3 * out, n);
}

typedef struct { __m512 m, b, inverse, lo, hi; __mmask16 mask, negative; int relu; } requant16;

__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline requant16 requant16_make(const a2qi_requantization *e, int64_t o, int64_t n) {
    requant16 r;
    r.mask = n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
    r.m = _mm512_maskz_loadu_ps(r.mask, e->multiplier + o);
    r.b = _mm512_maskz_loadu_ps(r.mask, e->offset + o);
    r.negative = _mm512_cmplt_epi32_mask(_mm512_castps_si512(r.m), _mm512_setzero_si512());  // sign bit
    r.inverse = _mm512_set1_ps(e->inverse);
    r.lo = _mm512_set1_ps(e->lo);
    r.hi = _mm512_set1_ps(e->hi);
    r.relu = e->relu;
    return r;
}

__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void quantize16(__m512i acc, const requant16 *r, uint8_t *q) {
    __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), r->m), r->b);
    if (r->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());  // NaN → 0, like y > 0 ? y : 0
    __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(y, r->inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_min_ps(_mm512_max_ps(t, r->lo), r->hi);  // NaN → lo
    _mm_mask_storeu_epi8(q, r->mask, _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(t)));
}

__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void epilogue16(__m512i s0, __m512i s1, __m512i s2, __m512i s3, int valid, int pool, const requant16 *r,
                              uint8_t *q, int64_t out) {
    if (!r->mask) return;
    if (pool) {
        __m512i hi = _mm512_max_epi32(_mm512_max_epi32(s0, s1), _mm512_max_epi32(s2, s3));
        __m512i lo = _mm512_min_epi32(_mm512_min_epi32(s0, s1), _mm512_min_epi32(s2, s3));
        quantize16(_mm512_mask_blend_epi32(r->negative, hi, lo), r, q);
        return;
    }
    quantize16(s0, r, q);
    if (valid > 1) quantize16(s1, r, q + out);
    if (valid > 2) quantize16(s2, r, q + 2 * out);
    if (valid > 3) quantize16(s3, r, q + 3 * out);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static void gemm_vnni_requantize(const uint8_t *x, int64_t rows, int64_t count, int64_t kp, const int8_t *w, int64_t out,
                                 int64_t outp, int pool, const a2qi_requantization *e, uint8_t *q) {
    for (int64_t o0 = 0; o0 < out; o0 += 32) {
        requant16 ra = requant16_make(e, o0, out - o0), rb = requant16_make(e, o0 + 16, out - o0 - 16);
        for (int64_t r0 = 0; r0 < count; r0 += 4) {
            const uint8_t *x0 = x + r0 * kp, *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
            int valid = count - r0 < 4 ? (int)(count - r0) : 4;
            uint8_t *qr = q + (pool ? r0 / 4 : r0) * out + o0;
            __m512i a0 = _mm512_setzero_si512(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            const int8_t *wp = w + o0 * 4;
            VNNI_TILE();
            epilogue16(a0, a1, a2, a3, valid, pool, &ra, qr, out);
            epilogue16(b0, b1, b2, b3, valid, pool, &rb, qr + 16, out);
        }
    }
    (void)rows; (void)outp;
}

// vpmaddubsw would saturate its pairwise 16-bit sums (255*127*2 > 32767), so the exact AVX2
// kernel widens both operands to 16 bits and uses vpmaddwd (pairs summed into 32-bit lanes).
// Four input bytes are broadcast once and split into the two 16-bit pairs with vpshufb.
#define AVX2_ROW(acc0, acc1, xr)                                                                 \
    do {                                                                                         \
        __m256i bytes = _mm256_set1_epi32(load4((xr) + i));                                      \
        __m256i p0 = _mm256_shuffle_epi8(bytes, lo_pair), p1 = _mm256_shuffle_epi8(bytes, hi_pair); \
        acc0 = _mm256_add_epi32(acc0, _mm256_add_epi32(_mm256_madd_epi16(p0, w00), _mm256_madd_epi16(p1, w10))); \
        acc1 = _mm256_add_epi32(acc1, _mm256_add_epi32(_mm256_madd_epi16(p0, w01), _mm256_madd_epi16(p1, w11))); \
    } while (0)

__attribute__((target("avx2,fma")))
static void gemm_avx2(const uint8_t *x, int64_t rows, int64_t kp, const int16_t *w, int64_t outp, int32_t *c) {
    // bytes b0 b1 b2 b3 → 16-bit lanes (b0, b1) and (b2, b3); 0x80 zeroes a byte
    const __m256i lo_pair = _mm256_set1_epi32((int32_t)0x80018000u), hi_pair = _mm256_set1_epi32((int32_t)0x80038002u);
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        const uint8_t *x0 = x + r0 * kp, *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
        for (int64_t o0 = 0; o0 < outp; o0 += 16) {
            __m256i a0 = _mm256_setzero_si256(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            const int16_t *wp = w + o0 * 2;
            for (int64_t i = 0; i < kp; i += 4, wp += outp * 4) {
                __m256i w00 = _mm256_loadu_si256((const __m256i *)wp), w01 = _mm256_loadu_si256((const __m256i *)(wp + 16));
                __m256i w10 = _mm256_loadu_si256((const __m256i *)(wp + outp * 2));
                __m256i w11 = _mm256_loadu_si256((const __m256i *)(wp + outp * 2 + 16));
                AVX2_ROW(a0, b0, x0);
                AVX2_ROW(a1, b1, x1);
                AVX2_ROW(a2, b2, x2);
                AVX2_ROW(a3, b3, x3);
            }
            int32_t *cr = c + r0 * outp + o0;
            _mm256_storeu_si256((__m256i *)cr, a0); _mm256_storeu_si256((__m256i *)(cr + 8), b0); cr += outp;
            _mm256_storeu_si256((__m256i *)cr, a1); _mm256_storeu_si256((__m256i *)(cr + 8), b1); cr += outp;
            _mm256_storeu_si256((__m256i *)cr, a2); _mm256_storeu_si256((__m256i *)(cr + 8), b2); cr += outp;
            _mm256_storeu_si256((__m256i *)cr, a3); _mm256_storeu_si256((__m256i *)(cr + 8), b3);
        }
    }
}

// The exact AVX2 kernel with the fused requantisation: the same 4 rows x 16 outputs blocks.
__attribute__((target("avx2,fma")))
static void gemm_avx2_requantize(const uint8_t *x, int64_t rows, int64_t count, int64_t kp, const int16_t *w, int64_t out,
                                 int64_t outp, int pool, const a2qi_requantization *e, uint8_t *q) {
    const __m256i lo_pair = _mm256_set1_epi32((int32_t)0x80018000u), hi_pair = _mm256_set1_epi32((int32_t)0x80038002u);
    for (int64_t o0 = 0; o0 < out; o0 += 16) {
        int64_t n0 = out - o0 < 8 ? out - o0 : 8, n1 = out - o0 - 8 < 8 ? out - o0 - 8 : 8;
        requant8 ra = requant8_make(e, o0, n0), rb = requant8_make(e, o0 + 8, n1 > 0 ? n1 : 0);
        for (int64_t r0 = 0; r0 < count; r0 += 4) {
            const uint8_t *x0 = x + r0 * kp, *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
            int valid = count - r0 < 4 ? (int)(count - r0) : 4;
            uint8_t *qr = q + (pool ? r0 / 4 : r0) * out + o0;
            __m256i a0 = _mm256_setzero_si256(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            const int16_t *wp = w + o0 * 2;
            for (int64_t i = 0; i < kp; i += 4, wp += outp * 4) {
                __m256i w00 = _mm256_loadu_si256((const __m256i *)wp), w01 = _mm256_loadu_si256((const __m256i *)(wp + 16));
                __m256i w10 = _mm256_loadu_si256((const __m256i *)(wp + outp * 2));
                __m256i w11 = _mm256_loadu_si256((const __m256i *)(wp + outp * 2 + 16));
                AVX2_ROW(a0, b0, x0);
                AVX2_ROW(a1, b1, x1);
                AVX2_ROW(a2, b2, x2);
                AVX2_ROW(a3, b3, x3);
            }
            epilogue8(a0, a1, a2, a3, valid, pool, &ra, qr, out, n0);
            if (n1 > 0) epilogue8(b0, b1, b2, b3, valid, pool, &rb, qr + 8, out, n1);
        }
    }
    (void)rows;
}

// 16-bit tile accumulation: vpmaddubsw forms x0*w0 + x1*w1 in 16-bit lanes, vpaddw
// accumulates there for one tile of `tile` K positions, and the tile's sums are widened to
// int32 and added to the block's sums `s`. Exact only because every tile's worst case fits
// 16 bits: then every pair (both of its products belong to one tile, since tiles start at
// even positions) and every partial sum of the tile does too (they are sums of subsets of
// the tile's terms, each between the tile's worst-case minimum and maximum).
// One block: 4 rows x 32 outputs, s is [4][32].
__attribute__((target("avx2,fma")))
static inline void block_int16_avx2(const uint8_t *x0, int64_t kp, const int8_t *w, int64_t outp, int64_t tile, int32_t *s) {
    const uint8_t *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
    for (int64_t t0 = 0; t0 < kp; t0 += tile) {
        int64_t end = t0 + tile < kp ? t0 + tile : kp;
        __m256i a0 = _mm256_setzero_si256(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        const int8_t *wp = w + t0 * outp;
        for (int64_t i = t0; i < end; i += 2, wp += outp * 2) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)wp), w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
            __m256i v;
            v = _mm256_set1_epi16((int16_t)load2(x0 + i));
            a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(v, w0)); b0 = _mm256_add_epi16(b0, _mm256_maddubs_epi16(v, w1));
            v = _mm256_set1_epi16((int16_t)load2(x1 + i));
            a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(v, w0)); b1 = _mm256_add_epi16(b1, _mm256_maddubs_epi16(v, w1));
            v = _mm256_set1_epi16((int16_t)load2(x2 + i));
            a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(v, w0)); b2 = _mm256_add_epi16(b2, _mm256_maddubs_epi16(v, w1));
            v = _mm256_set1_epi16((int16_t)load2(x3 + i));
            a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(v, w0)); b3 = _mm256_add_epi16(b3, _mm256_maddubs_epi16(v, w1));
        }
        __m256i acc[8] = {a0, b0, a1, b1, a2, b2, a3, b3};
        for (int j = 0; j < 8; j++) {
            int32_t *sj = s + 16 * j;  // row j/2, outputs 16·(j%2) ...
            __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[j]));
            __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[j], 1));
            if (t0 > 0) {
                lo = _mm256_add_epi32(lo, _mm256_load_si256((const __m256i *)sj));
                hi = _mm256_add_epi32(hi, _mm256_load_si256((const __m256i *)(sj + 8)));
            }
            _mm256_store_si256((__m256i *)sj, lo);
            _mm256_store_si256((__m256i *)(sj + 8), hi);
        }
    }
}

__attribute__((target("avx2,fma")))
static void gemm_int16_avx2(const uint8_t *x, int64_t rows, int64_t kp, const int8_t *w, int64_t outp, int64_t tile,
                            int32_t *c) {
    _Alignas(64) int32_t s[4 * 32];
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        for (int64_t o0 = 0; o0 < outp; o0 += 32) {
            block_int16_avx2(x + r0 * kp, kp, w + o0 * 2, outp, tile, s);
            for (int r = 0; r < 4; r++) memcpy(c + (r0 + r) * outp + o0, s + 32 * r, 32 * sizeof(int32_t));
        }
    }
}

__attribute__((target("avx2,fma")))
static void gemm_int16_avx2_requantize(const uint8_t *x, int64_t rows, int64_t count, int64_t kp, const int8_t *w, int64_t out,
                                       int64_t outp, int64_t tile, int pool, const a2qi_requantization *e, uint8_t *q) {
    _Alignas(64) int32_t s[4 * 32];
    for (int64_t o0 = 0; o0 < out; o0 += 32) {
        requant8 r[4];
        int64_t n[4];
        for (int g = 0; g < 4; g++) {
            n[g] = out - o0 - 8 * g < 8 ? out - o0 - 8 * g : 8;
            r[g] = requant8_make(e, o0 + 8 * g, n[g] > 0 ? n[g] : 0);
        }
        for (int64_t r0 = 0; r0 < count; r0 += 4) {
            int valid = count - r0 < 4 ? (int)(count - r0) : 4;
            uint8_t *qr = q + (pool ? r0 / 4 : r0) * out + o0;
            block_int16_avx2(x + r0 * kp, kp, w + o0 * 2, outp, tile, s);
            for (int g = 0; g < 4 && n[g] > 0; g++) {
                epilogue8(_mm256_load_si256((const __m256i *)(s + 8 * g)), _mm256_load_si256((const __m256i *)(s + 32 + 8 * g)),
                          _mm256_load_si256((const __m256i *)(s + 64 + 8 * g)), _mm256_load_si256((const __m256i *)(s + 96 + 8 * g)),
                          valid, pool, &r[g], qr + 8 * g, out, n[g]);
            }
        }
    }
    (void)rows;
}

// The same on 512-bit registers: 4 rows x 64 outputs (the second 32 only when `two`), s is [4][64].
__attribute__((target("avx512f,avx512bw,avx512vl")))
static inline void block_int16_avx512(const uint8_t *x0, int64_t kp, const int8_t *w, int64_t outp, int two, int64_t tile,
                                      int32_t *s) {
    const uint8_t *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp;
    for (int64_t t0 = 0; t0 < kp; t0 += tile) {
        int64_t end = t0 + tile < kp ? t0 + tile : kp;
        __m512i a0 = _mm512_setzero_si512(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        const int8_t *wp = w + t0 * outp;
        for (int64_t i = t0; i < end; i += 2, wp += outp * 2) {
            __m512i w0 = _mm512_loadu_si512(wp), w1 = two ? _mm512_loadu_si512(wp + 64) : _mm512_setzero_si512();
            __m512i v;
            v = _mm512_set1_epi16((int16_t)load2(x0 + i));
            a0 = _mm512_add_epi16(a0, _mm512_maddubs_epi16(v, w0)); b0 = _mm512_add_epi16(b0, _mm512_maddubs_epi16(v, w1));
            v = _mm512_set1_epi16((int16_t)load2(x1 + i));
            a1 = _mm512_add_epi16(a1, _mm512_maddubs_epi16(v, w0)); b1 = _mm512_add_epi16(b1, _mm512_maddubs_epi16(v, w1));
            v = _mm512_set1_epi16((int16_t)load2(x2 + i));
            a2 = _mm512_add_epi16(a2, _mm512_maddubs_epi16(v, w0)); b2 = _mm512_add_epi16(b2, _mm512_maddubs_epi16(v, w1));
            v = _mm512_set1_epi16((int16_t)load2(x3 + i));
            a3 = _mm512_add_epi16(a3, _mm512_maddubs_epi16(v, w0)); b3 = _mm512_add_epi16(b3, _mm512_maddubs_epi16(v, w1));
        }
        __m512i acc[8] = {a0, b0, a1, b1, a2, b2, a3, b3};
        for (int j = 0; j < 8; j++) {
            if ((j & 1) && !two) continue;
            int32_t *sj = s + 32 * j;  // row j/2, outputs 32·(j%2) ...
            __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc[j]));
            __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[j], 1));
            if (t0 > 0) {
                lo = _mm512_add_epi32(lo, _mm512_load_si512(sj));
                hi = _mm512_add_epi32(hi, _mm512_load_si512(sj + 16));
            }
            _mm512_store_si512(sj, lo);
            _mm512_store_si512(sj + 16, hi);
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void gemm_int16_avx512(const uint8_t *x, int64_t rows, int64_t kp, const int8_t *w, int64_t outp, int64_t tile,
                              int32_t *c) {
    _Alignas(64) int32_t s[4 * 64];
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        for (int64_t o0 = 0; o0 < outp; o0 += 64) {
            int two = o0 + 32 < outp;
            block_int16_avx512(x + r0 * kp, kp, w + o0 * 2, outp, two, tile, s);
            for (int r = 0; r < 4; r++) memcpy(c + (r0 + r) * outp + o0, s + 64 * r, (size_t)(two ? 64 : 32) * sizeof(int32_t));
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void gemm_int16_avx512_requantize(const uint8_t *x, int64_t rows, int64_t count, int64_t kp, const int8_t *w,
                                         int64_t out, int64_t outp, int64_t tile, int pool, const a2qi_requantization *e,
                                         uint8_t *q) {
    _Alignas(64) int32_t s[4 * 64];
    for (int64_t o0 = 0; o0 < out; o0 += 64) {
        int two = o0 + 32 < outp;
        requant16 r[4];
        for (int g = 0; g < 4; g++) r[g] = requant16_make(e, o0 + 16 * g, out - o0 - 16 * g);
        for (int64_t r0 = 0; r0 < count; r0 += 4) {
            int valid = count - r0 < 4 ? (int)(count - r0) : 4;
            uint8_t *qr = q + (pool ? r0 / 4 : r0) * out + o0;
            block_int16_avx512(x + r0 * kp, kp, w + o0 * 2, outp, two, tile, s);
            for (int g = 0; g < (two ? 4 : 2); g++) {
                epilogue16(_mm512_load_si512(s + 16 * g), _mm512_load_si512(s + 64 + 16 * g), _mm512_load_si512(s + 128 + 16 * g),
                           _mm512_load_si512(s + 192 + 16 * g), valid, pool, &r[g], qr + 16 * g, out);
            }
        }
    }
    (void)rows;
}
#endif

int32_t a2qi_gemm_requantize(int32_t kernel, const uint8_t *x, int64_t rows, int64_t count, int64_t kp,
                             const void *packed, int64_t out, int64_t tile, int32_t pool, const a2qi_requantization *e,
                             uint8_t *q) {
    int64_t outp = a2qi_padded_out(out);
    if (tile <= 0) tile = kp;
    switch (kernel) {
#ifdef X86
    case A2QI_VNNI: gemm_vnni_requantize(x, rows, count, kp, packed, out, outp, pool == 2, e, q); return 1;
    case A2QI_AVX2: gemm_avx2_requantize(x, rows, count, kp, packed, out, outp, pool == 2, e, q); return 1;
    case A2QI_INT16_AVX2: gemm_int16_avx2_requantize(x, rows, count, kp, packed, out, outp, tile, pool == 2, e, q); return 1;
    case A2QI_INT16_AVX512: gemm_int16_avx512_requantize(x, rows, count, kp, packed, out, outp, tile, pool == 2, e, q); return 1;
#endif
    default:
        (void)x; (void)rows; (void)count; (void)kp; (void)packed; (void)out; (void)tile; (void)pool; (void)e; (void)q; (void)outp;
        return 0;
    }
}

void a2qi_gemm_tiled(int32_t kernel, const uint8_t *x, int64_t rows, int64_t kp, const void *packed, int64_t out,
                     int64_t tile, int32_t *c) {
    int64_t outp = a2qi_padded_out(out);
    if (tile <= 0) tile = kp;
    switch (kernel) {
#ifdef X86
    case A2QI_VNNI: gemm_vnni(x, rows, kp, packed, outp, c); return;
    case A2QI_AVX2: gemm_avx2(x, rows, kp, packed, outp, c); return;
    case A2QI_INT16_AVX2: gemm_int16_avx2(x, rows, kp, packed, outp, tile, c); return;
    case A2QI_INT16_AVX512: gemm_int16_avx512(x, rows, kp, packed, outp, tile, c); return;
#endif
    default: (void)tile; gemm_scalar(x, rows, kp, packed, outp, c); return;
    }
}

void a2qi_gemm(int32_t kernel, const uint8_t *x, int64_t rows, int64_t kp, const void *packed, int64_t out,
               int32_t *c) {
    a2qi_gemm_tiled(kernel, x, rows, kp, packed, out, kp, c);
}
