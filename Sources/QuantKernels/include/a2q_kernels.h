// Per-channel weight-quantizer kernels (A2Q, A2Q+, QAT), vectorised by the C compiler.
// Float reductions are reassociated on purpose (8-wide partial sums): these sums feed a
// clamp and straight-through gradients; the overflow guarantee is checked exactly on the
// integers by the Swift caller.
#ifndef A2Q_KERNELS_H
#define A2Q_KERNELS_H
#include <stdint.h>

/// Sum of x[0..k).
float a2qk_sum(const float *x, int64_t k);
/// Sum of |x_i - shift|.
float a2qk_l1(const float *x, int64_t k, float shift);
/// Sum of |x_i - shift|; *max_abs = max |x_i - shift| (exact).
float a2qk_l1_max(const float *x, int64_t k, float shift, float *max_abs);
/// A2Q/A2Q+ forward of one channel: y_i = fma(x_i, inv, -mean inv) (inv = min(g/s, T) / ||u||_1),
/// q_i = trunc(y_i), clipped to +-qmax when `clip` (the caller passes 0 only when no |y_i| can
/// reach qmax + 1), w_i = q_i s. out[0], out[1] = sums of the positive and negative levels.
void a2qk_a2q_forward(const float *x, float *w, int64_t k, float mean, float inv, float s, float qmax,
                      int clip, float *out);
/// Backward, pass 1 (sums only). With u = x - mean, q and the clip test exactly as the forward,
/// gm_i = g_i where not clipped (else 0): out = { sum g q, sum gm u, sum gm, sum sign(u) }
/// (the last only when `signs`, else 0).
void a2qk_a2q_backward_sums(const float *x, const float *g, int64_t k, float mean, float inv, float qmax,
                            int clip, int signs, float *out);
/// Backward, pass 2, in place: g_i = rs gm_i - c1 sign(u_i) - c2 (sign(0) = 0).
void a2qk_a2q_backward_apply(const float *x, float *g, int64_t k, float mean, float inv, float rs, float qmax,
                             int clip, float c1, float c2);
/// w_i = clip(rint(x_i / s), +-qmax) * s (round half to even).
void a2qk_qat_forward(const float *x, float *w, int64_t k, float s, float qmax);
/// In place: g_i = g_i where not clipped, else 0; returns sum g (inside ? q - y : q), y = x / s
/// (with the incoming g).
float a2qk_qat_backward(const float *x, float *g, int64_t k, float s, float qmax);

/// Activation quantizer: y_i = clip(rint(x_i / s), lo, hi) * s.
void a2qk_act_forward(const float *x, float *y, int64_t n, float s, float lo, float hi);
/// dx_i = dy_i inside the range, 0 outside; returns sum dy (inside ? level - x/s : lo or hi).
float a2qk_act_backward(const float *x, const float *dy, float *dx, int64_t n, float s, float lo, float hi);
/// ReLU and the activation quantizer in one pass (the same values as a2qk_relu_forward then
/// a2qk_act_forward), and its backward (dx_i = 0 where x_i <= 0; returns the scale sum of
/// a2qk_act_backward on max(x, 0)).
void a2qk_relu_act_forward(const float *x, float *y, int64_t n, float s, float lo, float hi);
float a2qk_relu_act_backward(const float *x, const float *dy, float *dx, int64_t n, float s, float lo, float hi);
/// y_i = max(x_i, 0) and its backward.
void a2qk_relu_forward(const float *x, float *y, int64_t n);
void a2qk_relu_backward(const float *x, const float *dy, float *dx, int64_t n);

/// Sequential dot product of integer weights with integer-valued inputs x[i*stride], in index
/// order, for the integer engine: returns the exact (wide) sum; sets *partial_overflow when any
/// partial sum left [lo, hi] and *saturated to the result of a saturating [lo, hi] register.
int64_t a2qk_sequential_dot(const int32_t *w, const double *x, int64_t stride, int64_t k, int64_t lo, int64_t hi,
                            int32_t *partial_overflow, int64_t *saturated);

/// The same for `cols` adjacent dot products at once (columns j of x[i*stride + j]), in
/// Float64 (exact for integers below 2^53): wide[j], saturated[j] and partial[j] (1 if any
/// partial sum left [lo, hi]). Zero weights are skipped (they change no partial sum).
void a2qk_sequential_block(const int32_t *w, const double *x, int64_t stride, int64_t k, int64_t cols,
                           double lo, double hi, double *wide, double *saturated, int32_t *partial);

#endif
