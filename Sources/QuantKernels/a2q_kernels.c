#include "a2q_kernels.h"
#include <math.h>

// Each kernel is compiled twice: for AVX2+FMA machines and a baseline x86-64 fallback,
// chosen once at load time (ifunc). Other architectures get the plain version.
#if defined(__x86_64__) && defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

#pragma clang fp reassociate(on)

KERNEL float a2qk_sum(const float *x, int64_t k) {
    float s = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) s += x[i];
    return s;
}

KERNEL float a2qk_l1(const float *x, int64_t k, float shift) {
    float s = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) s += fabsf(x[i] - shift);
    return s;
}

KERNEL void a2qk_a2q_forward(const float *x, float *w, int64_t k, float mean, float pre, float s,
                             float qmax, float *out) {
    float pos = 0, neg = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) {
        float q = fminf(fmaxf(truncf((x[i] - mean) / pre), -qmax), qmax);
        w[i] = q * s;
        pos += fmaxf(q, 0.0f);
        neg += fminf(q, 0.0f);
    }
    out[0] = pos;
    out[1] = neg;
}

static inline float sign_of(float u) { return u > 0 ? 1.0f : (u < 0 ? -1.0f : 0.0f); }

KERNEL void a2qk_a2q_backward_direct(const float *x, const float *g, float *dx, int64_t k, float mean,
                                     float pre, float s, float qmax, float *out) {
    float direct = 0, a = 0, sum_gy = 0, sum_sign = 0, r = 1.0f / pre;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) {
        float u = x[i] - mean;
        float t = truncf(u / pre);
        direct += g[i] * fminf(fmaxf(t, -qmax), qmax);
        float gy = fabsf(t) <= qmax ? g[i] * s : 0.0f;
        dx[i] += r * gy;
        a += gy * u;
        sum_gy += gy;
        sum_sign += sign_of(u);
    }
    out[0] = direct;
    out[1] = a;
    out[2] = sum_gy;
    out[3] = sum_sign;
}

KERNEL void a2qk_a2q_backward_norm(const float *x, float *dx, int64_t k, float mean, float c1, float c2) {
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) dx[i] -= c1 * sign_of(x[i] - mean) + c2;
}

KERNEL void a2qk_qat_forward(const float *x, float *w, int64_t k, float s, float qmax) {
    float inv = 1.0f / s;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) w[i] = fminf(fmaxf(rintf(x[i] * inv), -qmax), qmax) * s;
}

KERNEL float a2qk_qat_backward(const float *x, const float *g, float *dx, int64_t k, float s, float qmax) {
    float inv = 1.0f / s, total = 0;
    _Pragma("clang loop vectorize(enable) interleave_count(4)")
    for (int64_t i = 0; i < k; i++) {
        float y = x[i] * inv;
        float t = rintf(y);
        int inside = fabsf(t) <= qmax;
        float q = fminf(fmaxf(t, -qmax), qmax);
        dx[i] += inside ? g[i] : 0.0f;
        total += g[i] * (inside ? q - y : q);
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
