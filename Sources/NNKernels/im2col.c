#include "a2q_nn_kernels.h"
#include <string.h>

#include "kernel.h"

/// Output columns ow whose input column ow*stride - pad + j lies inside [0, w): [*low, *high).
static inline void valid_columns(int64_t j, int64_t w, int64_t wo, int64_t stride, int64_t pad, int64_t *low, int64_t *high) {
    int64_t lo = pad - j > 0 ? (pad - j + stride - 1) / stride : 0;
    int64_t top = w - 1 + pad - j;
    int64_t hi = top < 0 ? 0 : top / stride + 1;
    if (hi > wo) hi = wo;
    if (lo > hi) lo = hi;
    *low = lo;
    *high = hi;
}

KERNEL __attribute__((no_builtin("memcpy"))) void a2qn_im2col(const float *x, float *columns, int64_t batch, int64_t channels,
                        int64_t image_channels, int64_t h, int64_t w, int64_t kernel, int64_t stride, int64_t pad,
                        int64_t ho, int64_t wo) {
    int64_t plane = ho * wo, count = batch * plane;
    for (int64_t c = 0; c < channels; c++) {
        for (int64_t i = 0; i < kernel; i++) {
            for (int64_t j = 0; j < kernel; j++) {
                int64_t low, high;
                valid_columns(j, w, wo, stride, pad, &low, &high);
                float *row = columns + ((c * kernel + i) * kernel + j) * count;
                if (stride == 1 && wo == w && low < high) {
                    // "Same" convolution: the rows oh with a valid input row ih = oh − pad + i form one
                    // contiguous span in both x and the columns (shifted by j − pad): one long copy,
                    // then the edge columns that fall into the padding are zeroed.
                    int64_t first = pad - i > 0 ? pad - i : 0, last = h + pad - i < ho ? h + pad - i : ho;
                    for (int64_t n = 0; n < batch; n++) {
                        const float *image = x + (n * image_channels + c) * h * w;
                        float *dst = row + n * plane;
                        for (int64_t k = 0; k < first * wo; k++) dst[k] = 0;
                        for (int64_t k = (last > first ? last : first) * wo; k < plane; k++) dst[k] = 0;
                        if (last <= first) continue;
                        const float *src = image + (first - pad + i) * w - pad + j;
                        float *span = dst + first * wo;
                        int64_t length = (last - first) * wo;
                        int64_t begin = (first - pad + i) * w - pad + j < 0 ? -((first - pad + i) * w - pad + j) : 0;
                        int64_t end = length;
                        int64_t available = h * w - ((first - pad + i) * w - pad + j);
                        if (end > available) end = available;
                        for (int64_t k = 0; k < begin; k++) span[k] = 0;
                        _Pragma("clang loop vectorize(enable)")
                        for (int64_t k = begin; k < end; k++) span[k] = src[k];
                        for (int64_t k = end; k < length; k++) span[k] = 0;
                        for (int64_t oh = first; oh < last; oh++) {
                            float *r = dst + oh * wo;
                            for (int64_t ow = 0; ow < low; ow++) r[ow] = 0;
                            for (int64_t ow = high; ow < wo; ow++) r[ow] = 0;
                        }
                    }
                    continue;
                }
                for (int64_t n = 0; n < batch; n++) {
                    const float *image = x + (n * image_channels + c) * h * w;
                    for (int64_t oh = 0; oh < ho; oh++) {
                        float *dst = row + n * plane + oh * wo;
                        int64_t ih = oh * stride - pad + i;
                        if (ih < 0 || ih >= h || low >= high) { memset(dst, 0, (size_t)wo * sizeof(float)); continue; }
                        for (int64_t ow = 0; ow < low; ow++) dst[ow] = 0;
                        for (int64_t ow = high; ow < wo; ow++) dst[ow] = 0;
                        const float *src = image + ih * w - pad + j;
                        if (stride == 1) {
                            // Rows are short (7–32 values): an inline loop beats a memcpy call.
                            _Pragma("clang loop vectorize(enable)")
                            for (int64_t ow = low; ow < high; ow++) dst[ow] = src[ow];
                        } else {
                            for (int64_t ow = low; ow < high; ow++) dst[ow] = src[ow * stride];
                        }
                    }
                }
            }
        }
    }
}

KERNEL void a2qn_col2im(const float *columns, float *dx, int64_t batch, int64_t channels, int64_t image_channels,
                        int64_t h, int64_t w, int64_t kernel, int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    int64_t plane = ho * wo, count = batch * plane;
    for (int64_t n = 0; n < batch; n++) memset(dx + n * image_channels * h * w, 0, (size_t)(channels * h * w) * sizeof(float));
    // Contributions to one element are added in the order (j, i), as before this was C.
    for (int64_t j = 0; j < kernel; j++) {
        int64_t low, high;
        valid_columns(j, w, wo, stride, pad, &low, &high);
        for (int64_t c = 0; c < channels; c++) {
            for (int64_t i = 0; i < kernel; i++) {
                if (low >= high) continue;
                const float *row = columns + ((c * kernel + i) * kernel + j) * count;
                for (int64_t n = 0; n < batch; n++) {
                    float *image = dx + (n * image_channels + c) * h * w;
                    for (int64_t oh = 0; oh < ho; oh++) {
                        int64_t ih = oh * stride - pad + i;
                        if (ih < 0 || ih >= h) continue;
                        const float *src = row + n * plane + oh * wo;
                        float *dst = image + ih * w - pad + j;
                        if (stride == 1) {
                            _Pragma("clang loop vectorize(enable)")
                            for (int64_t ow = low; ow < high; ow++) dst[ow] += src[ow];
                        } else {
                            for (int64_t ow = low; ow < high; ow++) dst[ow * stride] += src[ow];
                        }
                    }
                }
            }
        }
    }
}
