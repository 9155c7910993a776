// Layer kernels of the training graph (NCHW float32): max pooling, im2col/col2im, BatchNorm.
// Plain C vectorised by the compiler, compiled per instruction-set level (target_clones).
#ifndef A2Q_NN_KERNELS_H
#define A2Q_NN_KERNELS_H
#include <stdint.h>

/// 2x2 max pooling with stride 2 over `planes` planes of h x w (floor mode): y[p][oh][ow] is the
/// first maximum of its window in the order (0,0), (0,1), (1,0), (1,1) (strict >, so a NaN is
/// never chosen over the first element), index[...] its offset within the plane.
void a2qn_maxpool2_forward(const float *x, float *y, int32_t *index, int64_t planes, int64_t h, int64_t w);
/// Its backward: dx = dy at each window's maximum, 0 elsewhere (the whole plane is written).
void a2qn_maxpool2_backward(const float *dy, const int32_t *index, float *dx, int64_t planes, int64_t h, int64_t w);

/// im2col of NCHW x: columns[(c, i, j)][(n, oh, ow)], zero padding, for `channels` channels
/// starting at x of images holding `image_channels` channels each (a convolution group's
/// channels: x points at the group's first channel of image 0; `image_channels == channels`
/// without groups).
void a2qn_im2col(const float *x, float *columns, int64_t batch, int64_t channels, int64_t image_channels, int64_t h,
                 int64_t w, int64_t kernel, int64_t stride, int64_t pad, int64_t ho, int64_t wo);
/// col2im: dx = Σ of the columns over the windows each input belongs to (dx's `channels`
/// channels of each image of `image_channels` are overwritten, the others left alone).
void a2qn_col2im(const float *columns, float *dx, int64_t batch, int64_t channels, int64_t image_channels, int64_t h,
                 int64_t w, int64_t kernel, int64_t stride, int64_t pad, int64_t ho, int64_t wo);

/// Adam's update of n parameters (see A2QNN's Adam): with `decoupled` (AdamW) p -= rate·λ·p
/// first, else g + λ·p is the gradient; m, v are the moment buffers.
void a2qn_adam(float *p, const float *g, float *m, float *v, int64_t n, float b1, float b2, float correction2,
               float rate, float size, float lambda, int32_t decoupled, float eps);

/// A convolution's GEMM result rows[o][(n, i)] → NCHW y[n][o][i] + bias[o] (bias may be NULL).
void a2qn_rows_to_nchw(const float *rows, const float *bias, float *y, int64_t batch, int64_t channels, int64_t plane);
/// NCHW dy → rows[o][(n, i)], adding Σ dy over (n, i) to bias_gradient[o] (may be NULL).
void a2qn_nchw_to_rows(const float *dy, float *rows, float *bias_gradient, int64_t batch, int64_t channels, int64_t plane);

/// BatchNorm over NCHW (plane = H·W, 1 for [N, C]): training mode uses the batch mean and
/// biased variance (one shifted pass) and updates the running statistics (unbiased variance);
/// evaluation uses the running statistics. Writes y, and the mean and inverse_std it used.
/// `scratch` holds 2·channels doubles.
void a2qn_batchnorm_forward(const float *x, float *y, const float *gamma, const float *beta,
                            float *running_mean, float *running_var, float *mean, float *inverse_std,
                            double *scratch, int64_t batch, int64_t channels, int64_t plane, float eps,
                            float momentum, int32_t training);
/// Its backward from the forward's input x (x̂ recomputed): adds Σ dy·x̂ and Σ dy to dgamma,
/// dbeta; writes dx when input_gradient.
void a2qn_batchnorm_backward(const float *dy, const float *x, float *dx, const float *gamma, const float *mean,
                             const float *inverse_std, float *dgamma, float *dbeta, double *scratch,
                             int64_t batch, int64_t channels, int64_t plane, int32_t training,
                             int32_t input_gradient);

#endif
