#include "a2q_nn_kernels.h"
#include <string.h>

#include "kernel.h"

KERNEL void a2qn_maxpool2_forward(const float *x, float *y, int32_t *index, int64_t planes, int64_t h, int64_t w) {
    int64_t ho = h / 2, wo = w / 2;
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = x + p * h * w;
        for (int64_t oh = 0; oh < ho; oh++) {
            const float *top = plane + 2 * oh * w, *bottom = top + w;
            float *out = y + (p * ho + oh) * wo;
            int32_t *at = index + (p * ho + oh) * wo;
            int32_t base = (int32_t)(2 * oh * w);
            _Pragma("clang loop vectorize(enable)")
            for (int64_t ow = 0; ow < wo; ow++) {
                float a = top[2 * ow], b = top[2 * ow + 1], c = bottom[2 * ow], d = bottom[2 * ow + 1];
                float best = a;
                int32_t k = 0;
                int bb = b > best; k = bb ? 1 : k; best = bb ? b : best;
                int cc = c > best; k = cc ? (int32_t)w : k; best = cc ? c : best;
                int dd = d > best; k = dd ? (int32_t)w + 1 : k; best = dd ? d : best;
                out[ow] = best;
                at[ow] = base + 2 * (int32_t)ow + k;
            }
        }
    }
}

KERNEL void a2qn_maxpool2_backward(const float *dy, const int32_t *index, float *dx, int64_t planes, int64_t h, int64_t w) {
    // Windows are too short (7-14 per row) for vector stores of all four positions: zero the
    // planes (one vectorised pass) and store each window's gradient once. Windows do not
    // overlap, so a plain store is the sum.
    int64_t ho = h / 2, wo = w / 2, outputs = ho * wo;
    memset(dx, 0, (size_t)(planes * h * w) * sizeof(float));
    for (int64_t p = 0; p < planes; p++) {
        float *plane = dx + p * h * w;
        const float *g = dy + p * outputs;
        const int32_t *at = index + p * outputs;
        for (int64_t o = 0; o < outputs; o++) plane[at[o]] = g[o];
    }
}
