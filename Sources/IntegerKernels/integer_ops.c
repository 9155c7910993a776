// The integer engine's other passes: the P-bit register simulation, requantisation, im2row
// and max pooling on uint8. Plain C vectorised by the compiler, compiled three times like the
// quantizer kernels (target_clones, chosen at load time).
#include "a2q_igemm.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

// Requantisation must round exactly as the float graph: a multiply, then an add.
#pragma clang fp contract(off)

enum { LANES = 64 };

KERNEL void a2qi_simulate(const int16_t *w, int64_t ldw, const int32_t *positions, const uint8_t *row, int64_t k,
                          int32_t lo, int32_t hi, int32_t saturate, int32_t *wide, int32_t *saturated, int32_t *partial) {
    int32_t a[LANES], s[LANES], top[LANES], bottom[LANES];
    for (int l = 0; l < LANES; l++) a[l] = s[l] = top[l] = bottom[l] = 0;
    if (saturate) {
        for (int64_t i = 0; i < k; i++) {
            int32_t x = row[positions[i]];
            if (x == 0) continue;
            const int16_t *wi = w + i * ldw;
            _Pragma("clang loop vectorize(enable)")
            for (int l = 0; l < LANES; l++) {
                int32_t p = (int32_t)wi[l] * x;
                int32_t v = a[l] + p;
                a[l] = v;
                top[l] = v > top[l] ? v : top[l];
                bottom[l] = v < bottom[l] ? v : bottom[l];
                int32_t t = s[l] + p;
                t = t < lo ? lo : t;
                s[l] = t > hi ? hi : t;
            }
        }
    } else {
        for (int64_t i = 0; i < k; i++) {
            int32_t x = row[positions[i]];
            if (x == 0) continue;
            const int16_t *wi = w + i * ldw;
            _Pragma("clang loop vectorize(enable)")
            for (int l = 0; l < LANES; l++) {
                int32_t v = a[l] + (int32_t)wi[l] * x;
                a[l] = v;
                top[l] = v > top[l] ? v : top[l];
                bottom[l] = v < bottom[l] ? v : bottom[l];
            }
        }
    }
    for (int l = 0; l < LANES; l++) {
        wide[l] = a[l];
        saturated[l] = s[l];
        partial[l] = top[l] > hi || bottom[l] < lo;
    }
}

void a2qi_simulate_layer(const int16_t *w, int64_t ldw, const int32_t *positions, const uint8_t *rows, int64_t kp,
                         int64_t count, int64_t k, int64_t out, int64_t ldc, const int32_t *bound, int32_t *acc,
                         int32_t bits, int32_t mode, int64_t *finals, int64_t *partials) {
    int32_t hi = (int32_t)((1LL << (bits - 1)) - 1), lo = (int32_t)(-(1LL << (bits - 1)));
    int32_t wide[LANES], saturated[LANES], partial[LANES];
    int64_t f = 0, p = 0;
    for (int64_t r = 0; r < count; r++) {
        const int32_t *br = bound + r * ldc;
        int32_t *ar = acc + r * ldc;
        for (int64_t o0 = 0; o0 < out; o0 += LANES) {
            int64_t width = out - o0 < LANES ? out - o0 : LANES;
            int risky = 0;
            for (int64_t l = 0; l < width; l++) risky |= br[o0 + l] > hi;
            if (!risky) continue;
            a2qi_simulate(w + o0, ldw, positions, rows + r * kp, k, lo, hi, mode == A2QI_SATURATE, wide, saturated, partial);
            for (int64_t l = 0; l < width; l++) {
                int32_t exact = ar[o0 + l];
                p += partial[l] != 0;
                f += exact < lo || exact > hi;
                if (mode == A2QI_WRAP) {
                    uint32_t shift = 32u - (uint32_t)bits;
                    ar[o0 + l] = (int32_t)((uint32_t)exact << shift) >> shift;
                } else if (mode == A2QI_SATURATE) {
                    ar[o0 + l] = saturated[l];
                }
            }
        }
    }
    *finals += f;
    *partials += p;
}

KERNEL void a2qi_requantize_u8(const int32_t *c, int64_t ldc, int64_t rows, int64_t out, const float *m,
                               const float *b, int32_t relu, float inv, float lo, float hi, uint8_t *q) {
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *cr = c + r * ldc;
        uint8_t *qr = q + r * out;
        _Pragma("clang loop vectorize(enable)")
        for (int64_t o = 0; o < out; o++) {
            float y = (float)cr[o] * m[o];
            y = y + b[o];
            if (relu) y = y > 0.0f ? y : 0.0f;
            float t = rintf(y * inv);
            t = t > lo ? t : lo;  // NaN → lo, as fmaxf does in the float graph
            t = t < hi ? t : hi;
            qr[o] = (uint8_t)t;
        }
    }
}

KERNEL void a2qi_requantize_float(const int32_t *c, int64_t ldc, int64_t rows, int64_t out, const float *m,
                                  const float *b, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        _Pragma("clang loop vectorize(enable)")
        for (int64_t o = 0; o < out; o++) {
            float v = (float)c[r * ldc + o] * m[o];
            y[r * out + o] = v + b[o];
        }
    }
}

int64_t a2qi_im2row_scratch_bytes(int64_t h, int64_t w, int64_t c, int64_t pad) {
    return (h + 2 * pad) * (w + 2 * pad) * c + 64;
}

// Copies `span` bytes in 32-byte blocks (or bytes, for short spans); may write up to 31 bytes
// past dst + span and read past src + span: callers leave that much slack and write the
// following bytes afterwards.
static inline void copy_over(uint8_t *dst, const uint8_t *src, int64_t span) {
    if (span <= 8) { memcpy(dst, src, 8); return; }
    for (int64_t t = 0; t < span; t += 32) memcpy(dst + t, src + t, 32);
}

KERNEL void a2qi_im2row_u8(const uint8_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kernel, int64_t stride,
                           int64_t pad, int64_t ho, int64_t wo, int64_t kp, const int32_t *segments, int64_t count, int32_t pool,
                           uint8_t *rows, uint8_t *scratch) {
    int64_t used = kernel * kernel * c, span = kernel * c;
    int64_t pw = w + 2 * pad, per = ho * wo;
    memset(scratch, 0, (size_t)a2qi_im2row_scratch_bytes(h, w, c, pad));
    for (int64_t b = 0; b < n; b++) {
        // The image with a zero border: every kernel row is then one contiguous copy.
        const uint8_t *image = x + b * h * w * c;
        for (int64_t y = 0; y < h; y++) memcpy(scratch + ((y + pad) * pw + pad) * c, image + y * w * c, (size_t)(w * c));
        // Rows in (oh, ow) order, or (oh/2, ow/2, oh%2, ow%2) with pool 2: nested loops, no
        // division per row.
        uint8_t *row = rows + b * per * kp;
        int64_t outer = pool == 2 ? ho / 2 : ho, inner = pool == 2 ? wo / 2 : wo, sub = pool == 2 ? 2 : 1;
        for (int64_t ph = 0; ph < outer; ph++) {
            for (int64_t pw0 = 0; pw0 < inner; pw0++) {
                for (int64_t dy = 0; dy < sub; dy++) {
                    for (int64_t dx = 0; dx < sub; dx++, row += kp) {
                        int64_t oh = ph * sub + dy, ow = pw0 * sub + dx;
                        const uint8_t *src = scratch + (oh * stride * pw + ow * stride) * c;
                        if (segments) {
                            // 8-byte copies that may run up to 7 bytes past a segment: the
                            // segments ascend, so the next one (or the next row) rewrites them;
                            // the reads stay inside the scratch's slack.
                            static const uint8_t zeros[8] = {0};
                            for (int64_t g = 0; g < count; g++) {
                                const int32_t *sg = segments + 3 * g;
                                uint8_t *d = row + sg[0];
                                const uint8_t *f = sg[1] < 0 ? zeros : src + sg[1];
                                int64_t step = sg[1] < 0 ? 0 : 8;
                                for (int32_t t = 0; t < sg[2]; t += 8) memcpy(d + t, f + (step ? t : 0), 8);
                            }
                        } else {
                            for (int64_t i = 0; i < kernel; i++) copy_over(row + i * span, src + i * pw * c, span);
                            if (kp > used) memset(row + used, 0, 8);  // kp - used < 4; the rest is the next row's
                        }
                    }
                }
            }
        }
    }
}

KERNEL void a2qi_maxpool_u8(const uint8_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kernel,
                            int64_t stride, uint8_t *y) {
    int64_t ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t oh = 0; oh < ho; oh++) {
            for (int64_t ow = 0; ow < wo; ow++) {
                uint8_t *dst = y + ((b * ho + oh) * wo + ow) * c;
                const uint8_t *first = x + ((b * h + oh * stride) * w + ow * stride) * c;
                memcpy(dst, first, (size_t)c);
                for (int64_t i = 0; i < kernel; i++) {
                    for (int64_t j = 0; j < kernel; j++) {
                        const uint8_t *src = x + ((b * h + oh * stride + i) * w + ow * stride + j) * c;
                        _Pragma("clang loop vectorize(enable)")
                        for (int64_t ch = 0; ch < c; ch++) dst[ch] = src[ch] > dst[ch] ? src[ch] : dst[ch];
                    }
                }
            }
        }
    }
}
