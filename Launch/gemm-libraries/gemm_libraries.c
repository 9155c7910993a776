// Single-thread sgemm throughput of one library on the cnn's GEMM shapes (a decision record:
// which Debian library serves a2q's convolutions best). Built three times by
// Launch/compare-gemm-libraries.sh: -DUSE_OPENBLAS, -DUSE_BLIS, -DUSE_DNNL. With oneDNN it also
// times its direct convolution (forward) of conv2.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(USE_OPENBLAS)
#include <cblas.h>
#define LIBRARY "OpenBLAS"
#elif defined(USE_BLIS)
#include <blis.h>
#define LIBRARY "BLIS"
#elif defined(USE_DNNL)
#include <dnnl.h>
#define LIBRARY "oneDNN"
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

// C[m x n] = op(A) op(B), row-major; ta/tb: A is k x m / B is n x k when set.
static void gemm(int ta, int tb, long m, long n, long k, const float *a, const float *b, float *c) {
    long lda = ta ? m : k, ldb = tb ? k : n;
#if defined(USE_OPENBLAS)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1, a, lda, b,
                ldb, 0, c, n);
#elif defined(USE_BLIS)
    float one = 1, zero = 0;
    bli_sgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
              (float *)a, lda, 1, (float *)b, ldb, 1, &zero, c, n, 1);
#elif defined(USE_DNNL)
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1, a, lda, b, ldb, 0, c, n);
#endif
}

static double best_of(int repeats, void (*body)(void *), void *context) {
    double best = 1e30;
    for (int r = 0; r < repeats + 2; r++) {
        double t0 = now();
        body(context);
        double t = now() - t0;
        if (r >= 2 && t < best) best = t;
    }
    return best;
}

typedef struct { int ta, tb; long m, n, k; float *a, *b, *c; } gemm_case;
static void run_gemm(void *p) { gemm_case *g = p; gemm(g->ta, g->tb, g->m, g->n, g->k, g->a, g->b, g->c); }

#if defined(USE_DNNL)
typedef struct { dnnl_primitive_t primitive; dnnl_stream_t stream; dnnl_memory_t src, weights, bias, dst; } conv_case;
static void run_conv(void *p) {
    conv_case *c = p;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->weights}, {DNNL_ARG_BIAS, c->bias},
                              {DNNL_ARG_DST, c->dst}};
    dnnl_primitive_execute(c->primitive, c->stream, 4, args);
    dnnl_stream_wait(c->stream);
}
#endif

int main(void) {
    struct { const char *name; int ta, tb; long m, n, k; } shapes[] = {
        {"conv2 forward  W·cols       64 x 12544 x 288", 0, 0, 64, 12544, 288},
        {"conv2 dW       dY·colsᵀ     64 x 288 x 12544", 0, 1, 64, 288, 12544},
        {"conv2 dX       Wᵀ·dY        288 x 12544 x 64", 1, 0, 288, 12544, 64},
        {"conv1 forward  W·cols       32 x 50176 x 9", 0, 0, 32, 50176, 9},
        {"fc1 forward    x·Wᵀ         64 x 128 x 3136", 0, 1, 64, 128, 3136},
    };
#if defined(USE_BLIS)
    printf("%s (%s kernels), 1 thread\n", LIBRARY, bli_arch_string(bli_arch_query_id()));
#elif defined(USE_DNNL)
    printf("%s (ISA %d), 1 thread\n", LIBRARY, (int)dnnl_get_effective_cpu_isa());
#else
    printf("%s (%s kernels), 1 thread\n", LIBRARY, openblas_get_corename());
#endif
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        gemm_case g = {shapes[s].ta, shapes[s].tb, shapes[s].m, shapes[s].n, shapes[s].k, 0, 0, 0};
        g.a = malloc(sizeof(float) * g.m * g.k);
        g.b = malloc(sizeof(float) * g.k * g.n);
        g.c = malloc(sizeof(float) * g.m * g.n);
        for (long i = 0; i < g.m * g.k; i++) g.a[i] = (float)(i % 7) * 0.1f;
        for (long i = 0; i < g.k * g.n; i++) g.b[i] = (float)(i % 5) * 0.1f;
        double t = best_of(10, run_gemm, &g);
        printf("  %-48s %8.3f ms %7.1f GFLOP/s\n", shapes[s].name, 1e3 * t, 2.0 * g.m * g.n * g.k / t / 1e9);
        free(g.a); free(g.b); free(g.c);
    }
#if defined(USE_DNNL)
    // conv2 as a direct convolution: [64, 32, 14, 14] -> 64, 3x3, pad 1, NCHW in and out.
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_engine_create(&engine, dnnl_cpu, 0);
    dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    dnnl_dims_t src_dims = {64, 32, 14, 14}, w_dims = {64, 32, 3, 3}, b_dims = {64}, dst_dims = {64, 64, 14, 14};
    dnnl_dims_t strides = {1, 1}, padding = {1, 1};
    dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_any;
    dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, dnnl_f32, dnnl_nchw);
    dnnl_memory_desc_init_by_tag(&w_md, 4, w_dims, dnnl_f32, dnnl_oihw);
    dnnl_memory_desc_init_by_tag(&w_any, 4, w_dims, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_x);
    dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dnnl_f32, dnnl_nchw);
    dnnl_convolution_desc_t desc;
    dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &src_md, &w_md, &b_md,
                                       &dst_md, strides, padding, padding);
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) == dnnl_success) {
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        conv_case c = {0, stream, 0, 0, 0, 0};
        dnnl_primitive_create(&c.primitive, pd);
        dnnl_memory_create(&c.src, &src_md, engine, DNNL_MEMORY_ALLOCATE);
        dnnl_memory_create(&c.weights, &w_md, engine, DNNL_MEMORY_ALLOCATE);
        dnnl_memory_create(&c.bias, &b_md, engine, DNNL_MEMORY_ALLOCATE);
        dnnl_memory_create(&c.dst, &dst_md, engine, DNNL_MEMORY_ALLOCATE);
        double t = best_of(10, run_conv, &c);
        printf("  %-48s %8.3f ms %7.1f GFLOP/s (%s, NCHW)\n", "conv2 forward as oneDNN direct convolution", 1e3 * t,
               2.0 * 64 * 64 * 196 * 288 / t / 1e9, impl ? impl : "?");
    } else {
        printf("  oneDNN: no convolution primitive for this shape\n");
    }
    (void)w_any;
#endif
    return 0;
}
