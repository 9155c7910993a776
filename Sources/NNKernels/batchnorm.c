#include "a2q_nn_kernels.h"
#include <math.h>

#include "kernel.h"

// Per-channel sums are reductions: reassociated so that they vectorise. Every rank runs the
// same code on its own batch, so replicas stay identical.
#pragma clang fp reassociate(on)

// Both kernels read the tensors in memory order (image by image, channel by channel within an
// image), so that each pass is one sequential stream; per-channel partial sums are float over a
// plane and double across planes.

KERNEL void a2qn_batchnorm_forward(const float *x, float *y, const float *gamma, const float *beta,
                                   float *running_mean, float *running_var, float *mean, float *inverse_std,
                                   double *scratch, int64_t batch, int64_t channels, int64_t plane, float eps,
                                   float momentum, int32_t training) {
    int64_t m = batch * plane;
    if (training) {
        // One pass over x for Σ(x − k) and Σ(x − k)², shifted by k = the channel's first value
        // (no cancellation when |mean| ≫ std).
        double *sums = scratch, *squares = scratch + channels;
        for (int64_t c = 0; c < channels; c++) { sums[c] = 0; squares[c] = 0; }
        for (int64_t n = 0; n < batch; n++) {
            for (int64_t c = 0; c < channels; c++) {
                const float *p = x + (n * channels + c) * plane;
                float k = x[c * plane], s = 0, q = 0;
                _Pragma("clang loop vectorize(enable)")
                for (int64_t i = 0; i < plane; i++) { float d = p[i] - k; s += d; q += d * d; }
                sums[c] += s;
                squares[c] += q;
            }
        }
        for (int64_t c = 0; c < channels; c++) {
            double shift = sums[c] / (double)m;
            double centred = squares[c] - sums[c] * shift;  // Σ(x − mean)²
            if (centred < 0) centred = 0;
            float mu = (float)((double)x[c * plane] + shift);
            float variance = (float)(centred / (double)m);
            float unbiased = m > 1 ? (float)(centred / (double)(m - 1)) : variance;
            mean[c] = mu;
            inverse_std[c] = 1.0f / sqrtf(variance + eps);
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu;
            running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased;
        }
    } else {
        for (int64_t c = 0; c < channels; c++) {
            mean[c] = running_mean[c];
            inverse_std[c] = 1.0f / sqrtf(running_var[c] + eps);
        }
    }
    // y = γ·(x − mean)·inv + β.
    for (int64_t n = 0; n < batch; n++) {
        for (int64_t c = 0; c < channels; c++) {
            int64_t offset = (n * channels + c) * plane;
            const float *p = x + offset;
            float *q = y + offset;
            float mu = mean[c], inv = inverse_std[c], g = gamma[c], b = beta[c];
            _Pragma("clang loop vectorize(enable)")
            for (int64_t i = 0; i < plane; i++) q[i] = g * ((p[i] - mu) * inv) + b;
        }
    }
}

KERNEL void a2qn_batchnorm_backward(const float *dy, const float *x, float *dx, const float *gamma, const float *mean,
                                    const float *inverse_std, float *dgamma, float *dbeta, double *scratch,
                                    int64_t batch, int64_t channels, int64_t plane, int32_t training,
                                    int32_t input_gradient) {
    // Σ dy and Σ dy·(x − mean) per channel (x̂ = (x − mean)·inv is recomputed, not stored).
    double *sum_dy = scratch, *sum_dy_centred = scratch + channels;
    for (int64_t c = 0; c < channels; c++) { sum_dy[c] = 0; sum_dy_centred[c] = 0; }
    for (int64_t n = 0; n < batch; n++) {
        for (int64_t c = 0; c < channels; c++) {
            int64_t offset = (n * channels + c) * plane;
            const float *g = dy + offset, *p = x + offset;
            float mu = mean[c], a = 0, b = 0;
            _Pragma("clang loop vectorize(enable)")
            for (int64_t i = 0; i < plane; i++) { a += g[i]; b += g[i] * (p[i] - mu); }
            sum_dy[c] += a;
            sum_dy_centred[c] += b;
        }
    }
    float m = (float)(batch * plane);
    for (int64_t c = 0; c < channels; c++) {
        float s = (float)sum_dy[c], sh = (float)sum_dy_centred[c] * inverse_std[c];
        dgamma[c] += sh;
        dbeta[c] += s;
        // Reuse the scratch as the per-channel mean of dy and of dy·x̂.
        sum_dy[c] = s / m;
        sum_dy_centred[c] = sh / m;
    }
    if (!input_gradient) return;
    for (int64_t n = 0; n < batch; n++) {
        for (int64_t c = 0; c < channels; c++) {
            int64_t offset = (n * channels + c) * plane;
            const float *g = dy + offset, *p = x + offset;
            float *d = dx + offset;
            float inv = inverse_std[c], k = gamma[c] * inv, mu = mean[c];
            if (training) {
                float mean_dy = (float)sum_dy[c], mean_dy_xhat = (float)sum_dy_centred[c];
                _Pragma("clang loop vectorize(enable)")
                for (int64_t i = 0; i < plane; i++) d[i] = k * (g[i] - mean_dy - ((p[i] - mu) * inv) * mean_dy_xhat);
            } else {
                _Pragma("clang loop vectorize(enable)")
                for (int64_t i = 0; i < plane; i++) d[i] = k * g[i];
            }
        }
    }
}
