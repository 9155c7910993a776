// Integer kernels of the integer engine: u8 activations x s8 weights, exact.
//
// Layout. Activations are rows of `kp` bytes (one row per output pixel or image; `kp` is K
// rounded up to a multiple of 4, zero padded), `rows` a multiple of 4 (zero rows padded).
// Weights are packed once per layer for one kernel (`a2qi_pack`). The result is
// c[row][outp] as int32, `outp` = out rounded up to a multiple of 32.
#ifndef A2Q_IGEMM_H
#define A2Q_IGEMM_H
#include <stdint.h>

/// The kernels. The 32-bit ones are exact for any K with |sum| < 2^31. The 16-bit ones are tile
/// kernels: they sum each tile of `tile` consecutive K positions of a row in 16-bit lanes and
/// widen the tile's sum to int32 once (a2qi_gemm_tiled; a2qi_gemm is one tile of all K). They
/// are exact only when every tile's worst case over all inputs fits 16 bits (then every pair
/// vpmaddubsw forms and every partial sum of the tile does too, since both products of a pair
/// lie in the same tile): the caller must have proven it.
enum a2qi_kernel {
    A2QI_SCALAR = 0,      ///< plain C, int32 (any x86-64 or other CPU)
    A2QI_AVX2 = 1,        ///< vpmaddwd on 16-bit-widened pairs, int32 lanes (exact, no saturation)
    A2QI_VNNI = 2,        ///< AVX-512 VNNI vpdpbusd, int32 lanes
    A2QI_INT16_AVX2 = 3,  ///< vpmaddubsw + vpaddw: 16-bit lanes (proven layers only)
    A2QI_INT16_AVX512 = 4,///< the same on 512-bit registers (AVX-512 BW)
};

/// Whether this CPU can run `kernel`.
int32_t a2qi_supported(int32_t kernel);
/// The fastest exact 32-bit kernel this CPU runs.
int32_t a2qi_best_int32(void);
/// The fastest 16-bit kernel this CPU runs, or -1.
int32_t a2qi_best_int16(void);
/// Name for reports ("vnni", "avx2", ...).
const char *a2qi_name(int32_t kernel);

/// K rounded up to 4, and out rounded up to 32.
int64_t a2qi_padded_k(int64_t k);
int64_t a2qi_padded_out(int64_t out);
/// Bytes of packed weights for `kernel`.
int64_t a2qi_packed_bytes(int32_t kernel, int64_t out, int64_t k);
/// Packs w[out][k] (row-major int8, already in the activation rows' K order) for `kernel`.
void a2qi_pack(int32_t kernel, const int8_t *w, int64_t out, int64_t k, void *packed);

/// c[r][o] = sum_k x[r][k] w[o][k] for r < rows (a multiple of 4), o < padded out.
void a2qi_gemm(int32_t kernel, const uint8_t *x, int64_t rows, int64_t kp, const void *packed, int64_t out,
               int32_t *c);
/// The same, with the 16-bit kernels widening to int32 after every `tile` K positions (tile
/// j is positions [j·tile, (j+1)·tile) ∩ [0, kp)); `tile` is a positive multiple of 2. The
/// 32-bit kernels ignore it.
void a2qi_gemm_tiled(int32_t kernel, const uint8_t *x, int64_t rows, int64_t kp, const void *packed, int64_t out,
                     int64_t tile, int32_t *c);

/// The requantisation that follows a layer (see a2qi_requantize_u8).
typedef struct {
    const float *multiplier;
    const float *offset;
    float inverse, lo, hi;
    int32_t relu;
} a2qi_requantization;

/// a2qi_gemm_tiled followed by a2qi_requantize_u8 for the first `count` rows, without storing
/// the int32 accumulators (q is [count][out]). With `pool` = 2 the rows come in groups of four,
/// the 2 x 2 window of one max-pool output (a2qi_im2row_u8 with pool 2), and q is
/// [count/4][out], the maximum of each group's four quantized values (rows and count then are
/// multiples of 4). Returns 0 (and does nothing) when `kernel` has no fused form (the scalar
/// kernel); the caller then runs the steps one by one.
int32_t a2qi_gemm_requantize(int32_t kernel, const uint8_t *x, int64_t rows, int64_t count, int64_t kp,
                             const void *packed, int64_t out, int64_t tile, int32_t pool, const a2qi_requantization *e,
                             uint8_t *q);

/// The P-bit register simulation of one dot product per channel for 64 channels: `row` holds
/// the inputs in the activation rows' order and input i of the weights' original order is
/// row[positions[i]]; w[i*ldw + l] is channel l's weight i (int16, original order, ldw ≥ 64).
/// The sum is taken in weight-index order; zero inputs and zero weights change no partial sum
/// and are skipped. Per channel: the exact sum, whether any partial sum left [lo, hi], and (when
/// `saturate`) the result of a saturating [lo, hi] register. Requires |partial sums| < 2^31 - 2^16.
void a2qi_simulate(const int16_t *w, int64_t ldw, const int32_t *positions, const uint8_t *row, int64_t k, int32_t lo,
                   int32_t hi, int32_t saturate, int32_t *wide, int32_t *saturated, int32_t *partial);

/// What a P-bit register does when a sum leaves its range.
enum a2qi_overflow { A2QI_WIDE = 0, A2QI_WRAP = 1, A2QI_SATURATE = 2 };

/// The simulation of a whole layer: for each of `count` rows and each tile of 64 channels where
/// some bound[r*ldc + o] (= Σ|w·x|) exceeds hi, a2qi_simulate, then acc[r*ldc + o] becomes the
/// register's value under `mode` (wrap: the exact sum modulo 2^bits; saturate: the saturating
/// register; wide: unchanged). Adds to *finals the sums outside [lo, hi] and to *partials the dot
/// products with a partial sum outside. bits ≤ 31.
void a2qi_simulate_layer(const int16_t *w, int64_t ldw, const int32_t *positions, const uint8_t *rows, int64_t kp,
                         int64_t count, int64_t k, int64_t out, int64_t ldc, const int32_t *bound, int32_t *acc,
                         int32_t bits, int32_t mode, int64_t *finals, int64_t *partials);

/// Requantisation to the next layer's integers, as the engine's float graph does it:
/// y = (float)acc * m[o] + b[o] (two roundings, no fma), y = max(y, 0) when `relu`,
/// q = clamp(rint(y * inv), lo, hi). c is [rows][ldc] int32, q is [rows][out] uint8.
void a2qi_requantize_u8(const int32_t *c, int64_t ldc, int64_t rows, int64_t out, const float *m, const float *b,
                        int32_t relu, float inv, float lo, float hi, uint8_t *q);
/// The last layer: y[r][o] = (float)acc * m[o] + b[o].
void a2qi_requantize_float(const int32_t *c, int64_t ldc, int64_t rows, int64_t out, const float *m,
                           const float *b, float *y);

/// im2row of an NHWC uint8 image batch for a k x k convolution (zero padding). Without
/// `segments`, row (b, oh, ow) holds (i, j, c) in that order, kp bytes (the tail zeroed), one
/// contiguous copy per kernel row. With `count` segments (position p, offset f, length n: int32
/// triples covering the kp bytes of a row), bytes p ... p + n - 1 of a row are the bordered
/// image's bytes from the window's origin + f (offsets in the image with `pad` zeros on every
/// side, row pitch (w + 2 pad)·c), or zeros where f < 0: any order of K, such as the
/// tile-contiguous order of the 16-bit tile kernels. A linear layer is the 1 x 1 case (h = w =
/// 1, c = its inputs). Rows come in (b, oh, ow) order with `pool` = 1, or with `pool` = 2 (ho
/// and wo even) in (b, oh/2, ow/2, oh%2, ow%2) order: every four rows are one 2 x 2 pooling
/// window (a2qi_gemm_requantize's pool). `rows` needs 32 bytes of slack after the last row;
/// `scratch` needs a2qi_im2row_scratch_bytes.
void a2qi_im2row_u8(const uint8_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kernel, int64_t stride,
                    int64_t pad, int64_t ho, int64_t wo, int64_t kp, const int32_t *segments, int64_t count, int32_t pool,
                    uint8_t *rows, uint8_t *scratch);
int64_t a2qi_im2row_scratch_bytes(int64_t h, int64_t w, int64_t c, int64_t pad);
/// Max pooling (floor mode, no padding) of NHWC uint8.
void a2qi_maxpool_u8(const uint8_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kernel, int64_t stride,
                     uint8_t *y);

#endif
