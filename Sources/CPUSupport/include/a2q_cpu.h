// CPU features (cpuid + the OS's saved register state) and the choice of OpenBLAS's kernel
// set. Both are decided once, before main: see blas_select.c.
#ifndef A2Q_CPU_H
#define A2Q_CPU_H
#include <stdint.h>

/// Instruction-set tiers that matter to a2q's kernels and to OpenBLAS's kernel sets.
enum a2q_cpu_tier {
    A2Q_TIER_BASELINE = 0,  ///< x86-64 with SSE2 only (or not x86)
    A2Q_TIER_AVX2 = 1,      ///< AVX2 + FMA, with the OS saving YMM state
    A2Q_TIER_AVX512 = 2,    ///< AVX-512 F/CD/DQ/BW/VL, with the OS saving ZMM and mask state
};

/// What this CPU (and OS) can run.
typedef struct {
    int32_t tier;          ///< enum a2q_cpu_tier
    int32_t avx512_vnni;   ///< vpdpbusd on 512-bit registers (tier AVX512 only)
    int32_t avx512_bf16;
    int32_t amd;           ///< vendor AuthenticAMD
    int32_t limited;       ///< 1 when A2Q_CPU_FEATURES_LIMIT lowered what is reported
} a2q_cpu_features;

/// The features, detected once. `A2Q_CPU_FEATURES_LIMIT=baseline|avx2|avx512` caps them
/// (for tests that play an older CPU); it can only remove features, never add them.
const a2q_cpu_features *a2q_cpu(void);

/// Human-readable summary, e.g. "Intel, AVX-512 (VNNI, BF16)".
const char *a2q_cpu_description(void);

/// The tier an OpenBLAS kernel-set name needs (SkylakeX → AVX512, Haswell → AVX2, Prescott →
/// baseline); -1 for a name a2q does not know.
int32_t a2q_blas_core_tier(const char *name);

/// How OpenBLAS's kernel set was chosen for this process, one sentence.
const char *a2q_blas_selection(void);

#endif
