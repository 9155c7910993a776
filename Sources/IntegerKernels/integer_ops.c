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

KERNEL void a2qi_simulate(const int8_t *w, const uint8_t *xt, int64_t ldx, int64_t k, int64_t cols, int32_t lo,
                          int32_t hi, int32_t *wide, int32_t *saturated, int32_t *partial) {
    for (int64_t j0 = 0; j0 < cols; j0 += LANES) {
        int64_t width = cols - j0 < LANES ? cols - j0 : LANES;
        int32_t a[LANES], s[LANES], top[LANES], bottom[LANES];
        uint8_t column[LANES];
        for (int j = 0; j < LANES; j++) a[j] = s[j] = top[j] = bottom[j] = 0;
        for (int64_t i = 0; i < k; i++) {
            int32_t wi = w[i];
            if (wi == 0) continue;
            const uint8_t *xr = xt + i * ldx + j0;
            if (width == LANES) memcpy(column, xr, LANES);
            else { memset(column, 0, LANES); memcpy(column, xr, (size_t)width); }
            _Pragma("clang loop vectorize(enable)")
            for (int j = 0; j < LANES; j++) {
                int32_t p = wi * (int32_t)column[j];
                int32_t v = a[j] + p;
                a[j] = v;
                top[j] = v > top[j] ? v : top[j];
                bottom[j] = v < bottom[j] ? v : bottom[j];
                int32_t t = s[j] + p;
                t = t < lo ? lo : t;
                s[j] = t > hi ? hi : t;
            }
        }
        for (int64_t j = 0; j < width; j++) {
            wide[j0 + j] = a[j];
            saturated[j0 + j] = s[j];
            partial[j0 + j] = top[j] > hi || bottom[j] < lo;
        }
    }
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

static inline void copy_small(uint8_t *dst, const uint8_t *src, int64_t n) {
    if (n > 16) { memcpy(dst, src, (size_t)n); return; }
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

void a2qi_im2row_u8(const uint8_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kernel, int64_t stride,
                    int64_t pad, int64_t ho, int64_t wo, int64_t kp, uint8_t *rows) {
    int64_t used = kernel * kernel * c, span = kernel * c;
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *image = x + b * h * w * c;
        for (int64_t oh = 0; oh < ho; oh++) {
            for (int64_t ow = 0; ow < wo; ow++) {
                uint8_t *row = rows + ((b * ho + oh) * wo + ow) * kp;
                int64_t iw0 = ow * stride - pad;
                int inside = iw0 >= 0 && iw0 + kernel <= w;
                for (int64_t i = 0; i < kernel; i++) {
                    int64_t ih = oh * stride - pad + i;
                    uint8_t *dst = row + i * span;
                    if (ih < 0 || ih >= h) { memset(dst, 0, (size_t)span); continue; }
                    if (inside) { copy_small(dst, image + (ih * w + iw0) * c, span); continue; }  // (j, c) contiguous in NHWC
                    for (int64_t j = 0; j < kernel; j++) {
                        int64_t iw = iw0 + j;
                        if (iw < 0 || iw >= w) memset(dst + j * c, 0, (size_t)c);
                        else copy_small(dst + j * c, image + (ih * w + iw) * c, c);
                    }
                }
                if (kp > used) memset(row + used, 0, (size_t)(kp - used));
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
