#include "a2q_conv_kernels.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// One process-wide CPU engine (created once, thread-safe) and an in-order stream per thread (tests
// run layers on several threads at once; oneDNN's OpenMP threads do the parallelism inside).
static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static _Thread_local dnnl_stream_t stream;

static void create_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static dnnl_status_t runtime(void) {
    pthread_once(&engine_once, create_engine);
    if (engine_status != dnnl_success || stream) return engine_status;
    return dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
}

// One argument of a primitive: the caller's plain buffer, and when the primitive wants another
// layout, an internal buffer with the reorder between the two.
typedef struct {
    dnnl_memory_t user;      // plain layout, handle set per call
    dnnl_memory_t internal;  // the primitive's layout (NULL: the primitive reads `user`)
    dnnl_primitive_t reorder;
} argument;

static dnnl_status_t argument_init(argument *a, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *wanted,
                                   int input) {
    memset(a, 0, sizeof(*a));
    dnnl_status_t s = dnnl_memory_create(&a->user, plain, engine, DNNL_MEMORY_NONE);
    if (s != dnnl_success || dnnl_memory_desc_equal(plain, wanted)) return s;
    if ((s = dnnl_memory_create(&a->internal, wanted, engine, DNNL_MEMORY_ALLOCATE)) != dnnl_success) return s;
    dnnl_primitive_desc_t pd;
    s = input ? dnnl_reorder_primitive_desc_create(&pd, plain, engine, wanted, engine, NULL)
              : dnnl_reorder_primitive_desc_create(&pd, wanted, engine, plain, engine, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(&a->reorder, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static void argument_destroy(argument *a) {
    if (a->reorder) dnnl_primitive_destroy(a->reorder);
    if (a->internal) dnnl_memory_destroy(a->internal);
    if (a->user) dnnl_memory_destroy(a->user);
}

/// The memory the primitive uses.
static dnnl_memory_t argument_memory(const argument *a) { return a->internal ? a->internal : a->user; }

/// Points the argument at the caller's buffer and, for an input, reorders it in.
static dnnl_status_t argument_in(argument *a, const void *data) {
    dnnl_status_t s = dnnl_memory_set_data_handle(a->user, (void *)data);
    if (s != dnnl_success || !a->reorder) return s;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->internal}};
    return dnnl_primitive_execute(a->reorder, stream, 2, args);
}

/// Reorders an output out to the caller's buffer (already set with `argument_in`).
static dnnl_status_t argument_out(argument *a) {
    if (!a->reorder) return dnnl_success;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->internal}, {DNNL_ARG_TO, a->user}};
    return dnnl_primitive_execute(a->reorder, stream, 2, args);
}

struct a2qc_conv {
    dnnl_primitive_t forward, backward_data, backward_weights;
    argument f_src, f_weights, f_bias, f_dst;
    argument d_diff_dst, d_weights, d_diff_src;
    argument w_src, w_diff_dst, w_diff_weights, w_diff_bias;
    int w_src_shared, w_diff_dst_shared;  // backward-weights reads forward's src / backward-data's diff_dst copy
    dnnl_memory_t scratch_f, scratch_d, scratch_w;
    void *scratchpad;
    float *weight_gradient, *bias_gradient;  // plain, [oc·ic·k·k] and [oc]
    int64_t weight_count, oc;
    int has_bias;
    char implementation[256];
};

#define CHECK(call) do { if ((s = (call)) != dnnl_success) { where = #call; goto fail; } } while (0)

static const dnnl_memory_desc_t *query(dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

a2qc_conv *a2qc_conv_create(int64_t n, int64_t ic, int64_t h, int64_t w, int64_t oc, int64_t k, int64_t stride,
                            int64_t padding, int64_t groups, int32_t has_bias, char *error, int64_t error_length) {
    dnnl_status_t s;
    const char *where = "";
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    a2qc_conv *c = calloc(1, sizeof(*c));
    if (!c) { snprintf(error, (size_t)error_length, "out of memory"); return NULL; }
    if (groups < 1 || ic % groups || oc % groups) {
        snprintf(error, (size_t)error_length, "%lld groups do not divide %lld input and %lld output channels", (long long)groups,
                 (long long)ic, (long long)oc);
        free(c);
        return NULL;
    }
    int64_t ho = (h + 2 * padding - k) / stride + 1, wo = (w + 2 * padding - k) / stride + 1;
    // Grouped: oneDNN's 5-D weights [g, oc/g, ic/g, k, k] (goihw), the same bytes as OIHW [oc, ic/g, k, k].
    int grouped = groups > 1, weight_rank = grouped ? 5 : 4;
    dnnl_dims_t src_dims = {n, ic, h, w}, bias_dims = {oc}, dst_dims = {n, oc, ho, wo};
    dnnl_dims_t weight_dims = {oc, ic, k, k};
    if (grouped) {
        weight_dims[0] = groups; weight_dims[1] = oc / groups; weight_dims[2] = ic / groups; weight_dims[3] = k; weight_dims[4] = k;
    }
    dnnl_dims_t strides = {stride, stride}, pads = {padding, padding};
    dnnl_memory_desc_t src_plain, weights_plain, bias_plain, dst_plain, src_any, weights_any, dst_any;
    CHECK(runtime());
    CHECK(dnnl_memory_desc_init_by_tag(&src_plain, 4, src_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&weights_plain, weight_rank, weight_dims, dnnl_f32, grouped ? dnnl_goihw : dnnl_oihw));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_plain, 1, bias_dims, dnnl_f32, dnnl_a));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_plain, 4, dst_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&weights_any, weight_rank, weight_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

    dnnl_convolution_desc_t fd, dd, wd;
    CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src_any, &weights_any,
                                             has_bias ? &bias_plain : NULL, &dst_any, strides, pads, pads));
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, attr, engine, NULL));
    CHECK(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &src_any, &weights_any, &dst_any,
                                                   strides, pads, pads));
    CHECK(dnnl_primitive_desc_create(&dpd, &dd, attr, engine, fpd));
    CHECK(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &src_any, &weights_any,
                                                      has_bias ? &bias_plain : NULL, &dst_any, strides, pads, pads));
    CHECK(dnnl_primitive_desc_create(&wpd, &wd, attr, engine, fpd));

    CHECK(argument_init(&c->f_src, &src_plain, query(fpd, dnnl_query_src_md), 1));
    CHECK(argument_init(&c->f_weights, &weights_plain, query(fpd, dnnl_query_weights_md), 1));
    if (has_bias) CHECK(argument_init(&c->f_bias, &bias_plain, &bias_plain, 1));
    CHECK(argument_init(&c->f_dst, &dst_plain, query(fpd, dnnl_query_dst_md), 0));
    CHECK(argument_init(&c->d_diff_dst, &dst_plain, query(dpd, dnnl_query_diff_dst_md), 1));
    CHECK(argument_init(&c->d_weights, &weights_plain, query(dpd, dnnl_query_weights_md), 1));
    CHECK(argument_init(&c->d_diff_src, &src_plain, query(dpd, dnnl_query_diff_src_md), 0));
    c->w_src_shared = dnnl_memory_desc_equal(query(wpd, dnnl_query_src_md), query(fpd, dnnl_query_src_md));
    c->w_diff_dst_shared = dnnl_memory_desc_equal(query(wpd, dnnl_query_diff_dst_md), query(dpd, dnnl_query_diff_dst_md));
    if (!c->w_src_shared) CHECK(argument_init(&c->w_src, &src_plain, query(wpd, dnnl_query_src_md), 1));
    if (!c->w_diff_dst_shared) CHECK(argument_init(&c->w_diff_dst, &dst_plain, query(wpd, dnnl_query_diff_dst_md), 1));
    CHECK(argument_init(&c->w_diff_weights, &weights_plain, query(wpd, dnnl_query_diff_weights_md), 0));
    if (has_bias) CHECK(argument_init(&c->w_diff_bias, &bias_plain, &bias_plain, 0));

    const dnnl_memory_desc_t *pads_md[3] = {query(fpd, dnnl_query_scratchpad_md), query(dpd, dnnl_query_scratchpad_md),
                                            query(wpd, dnnl_query_scratchpad_md)};
    size_t scratch = 0;
    for (int i = 0; i < 3; i++) {
        size_t size = pads_md[i] ? dnnl_memory_desc_get_size(pads_md[i]) : 0;
        if (size > scratch) scratch = size;
    }
    c->scratchpad = scratch ? aligned_alloc(64, (scratch + 63) / 64 * 64) : NULL;
    if (scratch && !c->scratchpad) { s = dnnl_out_of_memory; where = "scratchpad"; goto fail; }
    dnnl_memory_t *scratch_memories[3] = {&c->scratch_f, &c->scratch_d, &c->scratch_w};
    for (int i = 0; i < 3; i++)
        if (pads_md[i] && dnnl_memory_desc_get_size(pads_md[i]) > 0)
            CHECK(dnnl_memory_create(scratch_memories[i], pads_md[i], engine, c->scratchpad));

    c->weight_count = oc * (ic / groups) * k * k;
    c->oc = oc;
    c->has_bias = has_bias;
    c->weight_gradient = aligned_alloc(64, (size_t)((c->weight_count * 4 + 63) / 64 * 64));
    c->bias_gradient = aligned_alloc(64, (size_t)((oc * 4 + 63) / 64 * 64));
    if (!c->weight_gradient || !c->bias_gradient) { s = dnnl_out_of_memory; where = "gradient buffers"; goto fail; }
    CHECK(dnnl_memory_set_data_handle(c->w_diff_weights.user, c->weight_gradient));
    if (has_bias) CHECK(dnnl_memory_set_data_handle(c->w_diff_bias.user, c->bias_gradient));

    const char *names[3] = {"", "", ""};
    dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &names[0]);
    dnnl_primitive_desc_query(dpd, dnnl_query_impl_info_str, 0, &names[1]);
    dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &names[2]);
    snprintf(c->implementation, sizeof(c->implementation), "%s / %s / %s", names[0], names[1], names[2]);

    CHECK(dnnl_primitive_create(&c->forward, fpd));
    CHECK(dnnl_primitive_create(&c->backward_data, dpd));
    CHECK(dnnl_primitive_create(&c->backward_weights, wpd));
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(dpd);
    dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(attr);
    return c;
fail:
    snprintf(error, (size_t)error_length, "oneDNN convolution [%lld, %lld, %lld, %lld] → %lld, %lldx%lld stride %lld pad %lld groups %lld: %s failed with status %d",
             (long long)n, (long long)ic, (long long)h, (long long)w, (long long)oc, (long long)k, (long long)k,
             (long long)stride, (long long)padding, (long long)groups, where, (int)s);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    a2qc_conv_destroy(c);
    return NULL;
}

void a2qc_conv_destroy(a2qc_conv *c) {
    if (!c) return;
    if (c->forward) dnnl_primitive_destroy(c->forward);
    if (c->backward_data) dnnl_primitive_destroy(c->backward_data);
    if (c->backward_weights) dnnl_primitive_destroy(c->backward_weights);
    argument *all[] = {&c->f_src, &c->f_weights, &c->f_bias, &c->f_dst, &c->d_diff_dst, &c->d_weights, &c->d_diff_src,
                       &c->w_src, &c->w_diff_dst, &c->w_diff_weights, &c->w_diff_bias};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) argument_destroy(all[i]);
    if (c->scratch_f) dnnl_memory_destroy(c->scratch_f);
    if (c->scratch_d) dnnl_memory_destroy(c->scratch_d);
    if (c->scratch_w) dnnl_memory_destroy(c->scratch_w);
    free(c->scratchpad);
    free(c->weight_gradient);
    free(c->bias_gradient);
    free(c);
}

const char *a2qc_conv_implementation(const a2qc_conv *c) { return c->implementation; }

#define RUN(call) do { dnnl_status_t status_ = (call); if (status_ != dnnl_success) return (int32_t)status_; } while (0)

int32_t a2qc_conv_forward(a2qc_conv *c, const float *x, const float *weight, const float *bias, float *y) {
    RUN(runtime());
    RUN(argument_in(&c->f_src, x));
    RUN(argument_in(&c->f_weights, weight));
    RUN(dnnl_memory_set_data_handle(c->f_dst.user, y));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, argument_memory(&c->f_src)}, {DNNL_ARG_WEIGHTS, argument_memory(&c->f_weights)},
                               {DNNL_ARG_DST, argument_memory(&c->f_dst)}, {DNNL_ARG_SCRATCHPAD, c->scratch_f}};
    int count = c->scratch_f ? 4 : 3;
    if (c->has_bias) {
        RUN(argument_in(&c->f_bias, bias));
        args[count++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->f_bias.user};
    }
    RUN(dnnl_primitive_execute(c->forward, stream, count, args));
    RUN(argument_out(&c->f_dst));
    // Keep the plain input's address for a backward-weights pass that needs its own layout.
    if (!c->w_src_shared) RUN(dnnl_memory_set_data_handle(c->w_src.user, (void *)x));
    return 0;
}

int32_t a2qc_conv_backward(a2qc_conv *c, const float *dy, const float *weight, float *weight_gradient,
                           int32_t accumulate, float *bias_gradient, float *input_gradient) {
    RUN(runtime());
    RUN(argument_in(&c->d_diff_dst, dy));
    // Weight (and bias) gradient.
    dnnl_memory_t src = argument_memory(&c->f_src), diff_dst = argument_memory(&c->d_diff_dst);
    if (!c->w_src_shared) {
        void *x;
        RUN(dnnl_memory_get_data_handle(c->w_src.user, &x));
        RUN(argument_in(&c->w_src, x));
        src = argument_memory(&c->w_src);
    }
    if (!c->w_diff_dst_shared) {
        RUN(argument_in(&c->w_diff_dst, dy));
        diff_dst = argument_memory(&c->w_diff_dst);
    }
    dnnl_exec_arg_t wargs[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                                {DNNL_ARG_DIFF_WEIGHTS, argument_memory(&c->w_diff_weights)},
                                {DNNL_ARG_SCRATCHPAD, c->scratch_w}};
    int count = c->scratch_w ? 4 : 3;
    if (c->has_bias) wargs[count++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, c->w_diff_bias.user};
    RUN(dnnl_primitive_execute(c->backward_weights, stream, count, wargs));
    RUN(argument_out(&c->w_diff_weights));
    if (accumulate) {
        for (int64_t i = 0; i < c->weight_count; i++) weight_gradient[i] += c->weight_gradient[i];
    } else {
        memcpy(weight_gradient, c->weight_gradient, (size_t)c->weight_count * sizeof(float));
    }
    if (c->has_bias && bias_gradient)
        for (int64_t o = 0; o < c->oc; o++) bias_gradient[o] += c->bias_gradient[o];
    // Input gradient.
    if (input_gradient) {
        RUN(argument_in(&c->d_weights, weight));
        RUN(dnnl_memory_set_data_handle(c->d_diff_src.user, input_gradient));
        dnnl_exec_arg_t dargs[4] = {{DNNL_ARG_DIFF_DST, argument_memory(&c->d_diff_dst)},
                                    {DNNL_ARG_WEIGHTS, argument_memory(&c->d_weights)},
                                    {DNNL_ARG_DIFF_SRC, argument_memory(&c->d_diff_src)},
                                    {DNNL_ARG_SCRATCHPAD, c->scratch_d}};
        RUN(dnnl_primitive_execute(c->backward_data, stream, c->scratch_d ? 4 : 3, dargs));
        RUN(argument_out(&c->d_diff_src));
    }
    return 0;
}
