#include "a2q_nn_kernels.h"
#include <math.h>

#include "kernel.h"

// Per-channel sums are reductions: reassociated so that they vectorise. Every rank runs the
// same code on its own batch, so replicas stay identical.
#pragma clang fp reassociate(on)

KERNEL void a2qn_batchnorm_forward(const float *x, float *y, float *xhat, const float *gamma, const float *beta,
                                   float *running_mean, float *running_var, float *inverse_std, int64_t batch,
                                   int64_t channels, int64_t plane, float eps, float momentum, int32_t training) {
    int64_t m = batch * plane;
    for (int64_t c = 0; c < channels; c++) {
        float mean, variance;
        if (training) {
            // Two passes: the mean, then the centred squares (no cancellation of E[x²] − E[x]²).
            double sum = 0;
            for (int64_t n = 0; n < batch; n++) {
                const float *p = x + (n * channels + c) * plane;
                float s = 0;
                _Pragma("clang loop vectorize(enable) interleave_count(4)")
                for (int64_t i = 0; i < plane; i++) s += p[i];
                sum += s;
            }
            double mu = sum / (double)m;
            float muf = (float)mu;
            double squares = 0;
            for (int64_t n = 0; n < batch; n++) {
                const float *p = x + (n * channels + c) * plane;
                float s = 0;
                _Pragma("clang loop vectorize(enable) interleave_count(4)")
                for (int64_t i = 0; i < plane; i++) { float d = p[i] - muf; s += d * d; }
                squares += s;
            }
            mean = muf;
            variance = (float)(squares / (double)m);
            float unbiased = m > 1 ? (float)(squares / (double)(m - 1)) : variance;
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean;
            running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased;
        } else {
            mean = running_mean[c];
            variance = running_var[c];
        }
        float inv = 1.0f / sqrtf(variance + eps);
        inverse_std[c] = inv;
        float g = gamma[c], b = beta[c];
        for (int64_t n = 0; n < batch; n++) {
            int64_t offset = (n * channels + c) * plane;
            const float *p = x + offset;
            float *h = xhat + offset, *q = y + offset;
            _Pragma("clang loop vectorize(enable)")
            for (int64_t i = 0; i < plane; i++) {
                float v = (p[i] - mean) * inv;
                h[i] = v;
                q[i] = g * v + b;
            }
        }
    }
}

KERNEL void a2qn_batchnorm_backward(const float *dy, const float *xhat, float *dx, const float *gamma,
                                    const float *inverse_std, float *dgamma, float *dbeta, int64_t batch,
                                    int64_t channels, int64_t plane, int32_t training, int32_t input_gradient) {
    float m = (float)(batch * plane);
    for (int64_t c = 0; c < channels; c++) {
        float sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t n = 0; n < batch; n++) {
            int64_t offset = (n * channels + c) * plane;
            const float *g = dy + offset, *h = xhat + offset;
            float a = 0, b = 0;
            _Pragma("clang loop vectorize(enable) interleave_count(4)")
            for (int64_t i = 0; i < plane; i++) { a += g[i]; b += g[i] * h[i]; }
            sum_dy += a;
            sum_dy_xhat += b;
        }
        dgamma[c] += sum_dy_xhat;
        dbeta[c] += sum_dy;
        if (!input_gradient) continue;
        float k = gamma[c] * inverse_std[c];
        float mean_dy = sum_dy / m, mean_dy_xhat = sum_dy_xhat / m;
        for (int64_t n = 0; n < batch; n++) {
            int64_t offset = (n * channels + c) * plane;
            const float *g = dy + offset, *h = xhat + offset;
            float *d = dx + offset;
            if (training) {
                _Pragma("clang loop vectorize(enable)")
                for (int64_t i = 0; i < plane; i++) d[i] = k * (g[i] - mean_dy - h[i] * mean_dy_xhat);
            } else {
                _Pragma("clang loop vectorize(enable)")
                for (int64_t i = 0; i < plane; i++) d[i] = k * g[i];
            }
        }
    }
}
