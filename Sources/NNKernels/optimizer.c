#include "a2q_nn_kernels.h"
#include <math.h>

#include "kernel.h"

// The same operations in the same order as the scalar definition (no fma contraction):
// division and square root are correctly rounded in every instruction set, so every clone
// gives the same bits.
#pragma clang fp contract(off)

// sqrtf may set errno, which keeps it scalar; the element-wise builtin is the same IEEE
// square root without that side effect, so the loops vectorise.
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_sqrt)
#define SQRT(x) __builtin_elementwise_sqrt(x)
#else
#define SQRT(x) sqrtf(x)
#endif

KERNEL void a2qn_adam(float *p, const float *g, float *m, float *v, int64_t n, float b1, float b2, float correction2,
                      float rate, float size, float lambda, int32_t decoupled, float eps) {
    float c1 = 1 - b1, c2 = 1 - b2, decay = rate * lambda;
    if (decoupled) {
        _Pragma("clang loop vectorize(enable)")
        for (int64_t i = 0; i < n; i++) {
            float grad = g[i];
            p[i] -= decay * p[i];
            m[i] = b1 * m[i] + c1 * grad;
            v[i] = b2 * v[i] + c2 * grad * grad;
            p[i] -= size * m[i] / (SQRT(v[i] / correction2) + eps);
        }
    } else {
        _Pragma("clang loop vectorize(enable)")
        for (int64_t i = 0; i < n; i++) {
            float grad = g[i] + lambda * p[i];
            m[i] = b1 * m[i] + c1 * grad;
            v[i] = b2 * v[i] + c2 * grad * grad;
            p[i] -= size * m[i] / (SQRT(v[i] / correction2) + eps);
        }
    }
}
