// Convolution through oneDNN's primitives, with plain NCHW activations and OIHW weights at the
// interface: the blocked layouts oneDNN prefers stay inside (reordered in and out here).
#ifndef A2Q_CONV_KERNELS_H
#define A2Q_CONV_KERNELS_H
#include <stdint.h>

/// One convolution geometry's forward, backward-data and backward-weights primitives, their
/// reorders and every buffer they need (allocated once, at creation).
typedef struct a2qc_conv a2qc_conv;

/// Creates the primitives for x [n, ic, h, w] (*) weights [oc, ic/groups, k, k] → [n, oc, ho, wo],
/// stride and symmetric zero padding; with `groups` > 1 output channel o sees only the input
/// channels of its group o / (oc/groups) (`groups` must divide ic and oc). Returns NULL and
/// writes a message to `error` (of `error_length` bytes) if oneDNN cannot build them.
a2qc_conv *a2qc_conv_create(int64_t n, int64_t ic, int64_t h, int64_t w, int64_t oc, int64_t k, int64_t stride,
                            int64_t padding, int64_t groups, int32_t has_bias, char *error, int64_t error_length);
void a2qc_conv_destroy(a2qc_conv *conv);

/// y = conv(x, weight) + bias (bias may be NULL when created without). Keeps x's internal copy
/// for the backward pass. Returns 0, or oneDNN's status.
int32_t a2qc_conv_forward(a2qc_conv *conv, const float *x, const float *weight, const float *bias, float *y);

/// From dy (NCHW) and the last forward's input: weight_gradient = (or +=, if `accumulate`)
/// ∂L/∂W in OIHW ([oc, ic/groups, k, k]); bias_gradient += ∂L/∂b (if not NULL); input_gradient = ∂L/∂x (if not NULL).
int32_t a2qc_conv_backward(a2qc_conv *conv, const float *dy, const float *weight, float *weight_gradient,
                           int32_t accumulate, float *bias_gradient, float *input_gradient);

/// The implementations oneDNN chose ("forward / backward data / backward weights").
const char *a2qc_conv_implementation(const a2qc_conv *conv);
#endif
