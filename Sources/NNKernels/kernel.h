// Private to NNKernels: every kernel is compiled for AVX-512 (x86-64-v4), AVX2 (v3) and the
// baseline, and the best one the CPU runs is chosen at load time.
#ifndef A2Q_NN_KERNEL_H
#define A2Q_NN_KERNEL_H
#if defined(__x86_64__) && defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif
#endif
