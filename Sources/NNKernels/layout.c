#include "a2q_nn_kernels.h"

#include "kernel.h"

KERNEL void a2qn_rows_to_nchw(const float *rows, const float *bias, float *y, int64_t batch, int64_t channels,
                              int64_t plane) {
    int64_t count = batch * plane;
    for (int64_t n = 0; n < batch; n++) {
        for (int64_t o = 0; o < channels; o++) {
            const float *src = rows + o * count + n * plane;
            float *dst = y + (n * channels + o) * plane;
            float shift = bias ? bias[o] : 0.0f;
            _Pragma("clang loop vectorize(enable)")
            for (int64_t i = 0; i < plane; i++) dst[i] = src[i] + shift;
        }
    }
}

// The bias gradient is a reduction: reassociated so that it vectorises (it differs from a
// strictly ordered sum in the last bits; every rank runs the same code on its own batch).
#pragma clang fp reassociate(on)

KERNEL void a2qn_nchw_to_rows(const float *dy, float *rows, float *bias_gradient, int64_t batch, int64_t channels,
                              int64_t plane) {
    int64_t count = batch * plane;
    for (int64_t n = 0; n < batch; n++) {
        for (int64_t o = 0; o < channels; o++) {
            const float *src = dy + (n * channels + o) * plane;
            float *dst = rows + o * count + n * plane;
            float sum = 0;
            _Pragma("clang loop vectorize(enable) interleave_count(4)")
            for (int64_t i = 0; i < plane; i++) { dst[i] = src[i]; sum += src[i]; }
            if (bias_gradient) bias_gradient[o] += sum;
        }
    }
}
