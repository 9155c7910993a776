#include "a2q_kernels.h"
#include <math.h>

// Each kernel is compiled three times, for AVX-512 (x86-64-v4), AVX2+FMA (v3) and a baseline
// x86-64 fallback, chosen once at load time (ifunc). Other architectures get the plain version.
// The A2Q kernels' fmaf rounds once in every clone (libm's software fma on the baseline, which
// is slower); the reductions that decide integer weights sum in a fixed order (below), the
// gradient sums of the backward kernels are reassociated and may differ in the last bits
// between clones.
#if defined(__x86_64__) && defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

#pragma clang fp reassociate(on)

// Branch-free helpers. The comparisons (not fminf/fmaxf) let the compiler emit one min/max
// instruction without NaN fix-ups; weights are finite (a NaN loss stops training first).
#define INLINE static inline __attribute__((always_inline))
INLINE float clamp_level(float t, float qmax) { t = t < -qmax ? -qmax : t; return t > qmax ? qmax : t; }
INLINE float sign_of(float u) { return u != 0 ? copysignf(1.0f, u) : 0.0f; }

// The reductions that decide integer weights (A2Q+'s mean, the L1 norms) sum in one fixed order,
// the same in every clone: element i goes to lane i mod 64, each lane adds its elements in index
// order, and the 64 lanes combine in a fixed tree (32, 16, …, 1). No reassociation is allowed here,
// so the compiler vectorises across the lanes and nothing else: the AVX-512, AVX2 and baseline
// clones give the same bits, and so do the AMD and Intel machines — a checkpoint's integers are
// what its parameters quantize to on any of them.
enum { LANES = 64 };

INLINE float combine_lanes(float *a) {
    _Pragma("clang fp reassociate(off)")
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) a[j] += a[j + w];
    return a[0];
}

KERNEL float a2qk_sum(const float *x, int64_t k) {
    _Pragma("clang fp reassociate(off)")
    float a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= k; i += LANES)
        for (int j = 0; j < LANES; j++) a[j] += x[i + j];
    for (int j = 0; i + j < k; j++) a[j] += x[i + j];
    return combine_lanes(a);
}

KERNEL float a2qk_l1(const float *x, int64_t k, float shift) {
    _Pragma("clang fp reassociate(off)")
    float a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= k; i += LANES)
        for (int j = 0; j < LANES; j++) a[j] += fabsf(x[i + j] - shift);
    for (int j = 0; i + j < k; j++) a[j] += fabsf(x[i + j] - shift);
    return combine_lanes(a);
}

KERNEL float a2qk_l1_max(const float *x, int64_t k, float shift, float *max_abs) {
    _Pragma("clang fp reassociate(off)")
    float a[LANES] = {0};
    uint32_t m[LANES] = {0};  // max |x - shift| on the bit patterns: for non-negative floats they order alike
    int64_t i = 0;
    for (; i + LANES <= k; i += LANES) {
        for (int j = 0; j < LANES; j++) {
            float v = fabsf(x[i + j] - shift);
            a[j] += v;
            uint32_t bits;
            __builtin_memcpy(&bits, &v, 4);
            m[j] = bits > m[j] ? bits : m[j];
        }
    }
    for (int j = 0; i + j < k; j++) {
        float v = fabsf(x[i + j] - shift);
        a[j] += v;
        uint32_t bits;
        __builtin_memcpy(&bits, &v, 4);
        m[j] = bits > m[j] ? bits : m[j];
    }
    uint32_t largest = 0;
    for (int j = 0; j < LANES; j++) largest = m[j] > largest ? m[j] : largest;
    __builtin_memcpy(max_abs, &largest, 4);
    return combine_lanes(a);
}

INLINE void a2q_forward(const float *x, float *w, int64_t k, float mean, float inv, float s, float qmax,
                        int clip, float *out) {
    float sum = 0, sum_abs = 0, shift = -mean * inv;
    _Pragma("clang loop vectorize(enable) interleave_count(2)")
    for (int64_t i = 0; i < k; i++) {
        float q = truncf(fmaf(x[i], inv, shift));
        if (clip) q = clamp_level(q, qmax);
        w[i] = q * s;
        sum += q;
        sum_abs += fabsf(q);
    }
    out[0] = 0.5f * (sum_abs + sum);
    out[1] = 0.5f * (sum - sum_abs);
}

KERNEL void a2qk_a2q_forward(const float *x, float *w, int64_t k, float mean, float inv, float s, float qmax,
                             int clip, float *out) {
    if (clip) a2q_forward(x, w, k, mean, inv, s, qmax, 1, out);
    else a2q_forward(x, w, k, mean, inv, s, qmax, 0, out);
}

INLINE void a2q_backward_sums(const float *x, const float *g, int64_t k, float mean, float inv, float qmax,
                              int clip, int signs, float *out) {
    float direct = 0, a = 0, sum_g = 0, sum_sign = 0, shift = -mean * inv;
    _Pragma("clang loop vectorize(enable) interleave_count(2)")
    for (int64_t i = 0; i < k; i++) {
        float t = truncf(fmaf(x[i], inv, shift)), u = x[i] - mean, gi = g[i];
        if (clip) {
            direct += gi * clamp_level(t, qmax);
            gi = fabsf(t) <= qmax ? gi : 0.0f;
        } else {
            direct += gi * t;
        }
        a += gi * u;
        sum_g += gi;
        if (signs) sum_sign += sign_of(u);
    }
    out[0] = direct;
    out[1] = a;
    out[2] = sum_g;
    out[3] = sum_sign;
}

KERNEL void a2qk_a2q_backward_sums(const float *x, const float *g, int64_t k, float mean, float inv, float qmax,
                                   int clip, int signs, float *out) {
    if (clip) {
        if (signs) a2q_backward_sums(x, g, k, mean, inv, qmax, 1, 1, out);
        else a2q_backward_sums(x, g, k, mean, inv, qmax, 1, 0, out);
    } else {
        if (signs) a2q_backward_sums(x, g, k, mean, inv, qmax, 0, 1, out);
        else a2q_backward_sums(x, g, k, mean, inv, qmax, 0, 0, out);
    }
}

INLINE void a2q_backward_apply(const float *x, float *g, int64_t k, float mean, float inv, float rs, float qmax,
                               int clip, float c1, float c2) {
    float shift = -mean * inv;
    _Pragma("clang loop vectorize(enable) interleave_count(2)")
    for (int64_t i = 0; i < k; i++) {
        float gi = g[i];
        if (clip) gi = fabsf(truncf(fmaf(x[i], inv, shift))) <= qmax ? gi : 0.0f;
        g[i] = rs * gi - c1 * sign_of(x[i] - mean) - c2;
    }
}

KERNEL void a2qk_a2q_backward_apply(const float *x, float *g, int64_t k, float mean, float inv, float rs,
                                    float qmax, int clip, float c1, float c2) {
    if (clip) a2q_backward_apply(x, g, k, mean, inv, rs, qmax, 1, c1, c2);
    else a2q_backward_apply(x, g, k, mean, inv, rs, qmax, 0, c1, c2);
}

KERNEL void a2qk_qat_forward(const float *x, float *w, int64_t k, float s, float qmax) {
    float inv = 1.0f / s;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) w[i] = fminf(fmaxf(rintf(x[i] * inv), -qmax), qmax) * s;
}

KERNEL float a2qk_qat_backward(const float *x, float *g, int64_t k, float s, float qmax) {
    float inv = 1.0f / s, total = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) {
        float y = x[i] * inv;
        float t = rintf(y);
        int inside = fabsf(t) <= qmax;
        float q = fminf(fmaxf(t, -qmax), qmax);
        total += g[i] * (inside ? q - y : q);
        g[i] = inside ? g[i] : 0.0f;
    }
    return total;
}

KERNEL void a2qk_act_forward(const float *x, float *y, int64_t n, float s, float lo, float hi) {
    float inv = 1.0f / s;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) y[i] = fminf(fmaxf(rintf(x[i] * inv), lo), hi) * s;
}

KERNEL float a2qk_act_backward(const float *x, const float *dy, float *dx, int64_t n, float s, float lo,
                               float hi) {
    float inv = 1.0f / s, total = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) {
        float y = x[i] * inv;
        float level = rintf(y);
        float below = level < lo, above = level > hi;
        float inside = 1.0f - below - above;
        dx[i] = dy[i] * inside;
        total += dy[i] * (inside * (level - y) + below * lo + above * hi);
    }
    return total;
}

// ReLU followed by the activation quantizer, in one pass: exactly a2qk_relu_forward then
// a2qk_act_forward (and, backward, a2qk_act_backward on max(x, 0) then a2qk_relu_backward).
KERNEL void a2qk_relu_act_forward(const float *x, float *y, int64_t n, float s, float lo, float hi) {
    float inv = 1.0f / s;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) y[i] = fminf(fmaxf(rintf(fmaxf(x[i], 0.0f) * inv), lo), hi) * s;
}

KERNEL float a2qk_relu_act_backward(const float *x, const float *dy, float *dx, int64_t n, float s, float lo,
                                    float hi) {
    float inv = 1.0f / s, total = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) {
        float r = fmaxf(x[i], 0.0f);
        float y = r * inv;
        float level = rintf(y);
        float below = level < lo, above = level > hi;
        float inside = 1.0f - below - above;
        dx[i] = x[i] > 0 ? dy[i] * inside : 0.0f;
        total += dy[i] * (inside * (level - y) + below * lo + above * hi);
    }
    return total;
}

KERNEL void a2qk_relu_forward(const float *x, float *y, int64_t n) {
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) y[i] = fmaxf(x[i], 0.0f);
}

KERNEL void a2qk_relu_backward(const float *x, const float *dy, float *dx, int64_t n) {
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}

// Not reassociated: the order of the partial sums is the point here.
#pragma clang fp reassociate(off)

int64_t a2qk_sequential_dot(const int32_t *w, const double *x, int64_t stride, int64_t k, int64_t lo, int64_t hi,
                            int32_t *partial_overflow, int64_t *saturated) {
    int64_t wide = 0, sat = 0;
    int32_t over = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t p = (int64_t)w[i] * (int64_t)x[i * stride];
        wide += p;
        if (wide < lo || wide > hi) over = 1;
        sat += p;
        if (sat < lo) sat = lo;
        if (sat > hi) sat = hi;
    }
    *partial_overflow = over;
    *saturated = sat;
    return wide;
}

KERNEL void a2qk_sequential_block(const int32_t *w, const double *x, int64_t stride, int64_t k, int64_t cols,
                                  double lo, double hi, double *wide, double *saturated, int32_t *partial) {
    for (int64_t j = 0; j < cols; j++) { wide[j] = 0; saturated[j] = 0; partial[j] = 0; }
    for (int64_t i = 0; i < k; i++) {
        double wi = (double)w[i];
        if (wi == 0) continue;  // adding 0 changes no partial sum
        const double *row = x + i * stride;
        _Pragma("clang loop vectorize(enable)")
        for (int64_t j = 0; j < cols; j++) {
            double s = wide[j] + wi * row[j];
            wide[j] = s;
            partial[j] |= (s < lo) | (s > hi);
            double t = saturated[j] + wi * row[j];
            saturated[j] = t < lo ? lo : (t > hi ? hi : t);
        }
    }
}
