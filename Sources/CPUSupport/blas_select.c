// Chooses OpenBLAS's kernel set before main.
//
// OpenBLAS (DYNAMIC_ARCH) picks its kernels when it is loaded, from its own table of CPU
// models; a CPU newer than that table (Debian 12's 0.3.21 on Sapphire Rapids) gets the generic
// Prescott kernels, 3-4x slower. OpenBLAS reads OPENBLAS_CORETYPE only at load time, so when it
// chose a kernel set of a lower tier than the CPU supports, this constructor sets the variable
// to the best set for the CPU and re-executes the program once (/proc/self/exe, same argv and
// pid, before MPI or anything else has started). A user's own OPENBLAS_CORETYPE always wins,
// but one that names kernels this CPU cannot run ends the program with a message instead of
// an illegal-instruction crash later.
#include "a2q_cpu.h"
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/// Set by a2q when it re-executes: "<chosen> <what OpenBLAS had detected>".
static const char *const marker = "A2Q_OPENBLAS_AUTO";
static char selection[320];

/// libgomp's (linked for oneDNN, a2q's training GEMM).
void omp_set_num_threads(int);

/// One thread knob for both libraries: oneDNN's OpenMP threads follow OpenBLAS's count
/// (OPENBLAS_NUM_THREADS, or OpenBLAS's default) unless OMP_NUM_THREADS says otherwise.
__attribute__((constructor(102))) static void a2q_match_openmp_threads(void) {
    const char *omp = getenv("OMP_NUM_THREADS");
    if (!omp || !*omp) omp_set_num_threads(openblas_get_num_threads());
}

static const char *tier_name(int tier) {
    return tier == A2Q_TIER_AVX512 ? "AVX-512" : tier == A2Q_TIER_AVX2 ? "AVX2 and FMA" : "SSE2 only";
}

/// The best kernel set of Debian's OpenBLAS for this CPU, or NULL when there is none better
/// than OpenBLAS's generic sets.
static const char *best_core(const a2q_cpu_features *f) {
    if (f->tier == A2Q_TIER_AVX512) return f->avx512_bf16 ? "Cooperlake" : "SkylakeX";
    if (f->tier == A2Q_TIER_AVX2) return f->amd ? "Zen" : "Haswell";
    return NULL;
}

/// A2Q_CPU_FEATURES_LIMIT also caps oneDNN (its own switch, read at its first use), unless the
/// user set oneDNN's limit themselves.
static void limit_onednn(const a2q_cpu_features *f) {
    if (!f->limited) return;
    const char *own = getenv("ONEDNN_MAX_CPU_ISA"), *old = getenv("DNNL_MAX_CPU_ISA");
    if ((own && *own) || (old && *old)) return;
    const char *isa = f->tier == A2Q_TIER_AVX2 ? "AVX2" : f->tier == A2Q_TIER_BASELINE ? "SSE41" : NULL;
    if (isa) {
        setenv("ONEDNN_MAX_CPU_ISA", isa, 1);
        setenv("DNNL_MAX_CPU_ISA", isa, 1);
    }
}

__attribute__((constructor(101))) static void a2q_select_blas_kernels(int argc, char **argv, char **envp) {
    (void)argc; (void)envp;
    const a2q_cpu_features *f = a2q_cpu();
    limit_onednn(f);
    const char *core = openblas_get_corename();
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *auto_choice = getenv(marker);
    if (user && *user) {
        size_t length = strlen(user);
        if (auto_choice && !strncmp(auto_choice, user, length) && auto_choice[length] == ' ') {
            snprintf(selection, sizeof selection,
                     "chosen by a2q: OpenBLAS had detected %s, not the kernel set for a CPU with %s; "
                     "a2q set OPENBLAS_CORETYPE=%s and re-executed", auto_choice + length + 1, tier_name(f->tier), user);
            return;
        }
        int needs = a2q_blas_core_tier(user);
        if (needs > f->tier) {
            fprintf(stderr,
                    "a2q: error: OPENBLAS_CORETYPE=%s selects kernels that need %s, which this CPU does not have "
                    "(%s).\n  Unset OPENBLAS_CORETYPE (a2q then picks the best kernel set itself) or set it to %s.\n",
                    user, tier_name(needs), a2q_cpu_description(), best_core(f) ? best_core(f) : "Prescott");
            exit(1);
        }
        snprintf(selection, sizeof selection, "set by the user: OPENBLAS_CORETYPE=%s", user);
        return;
    }
    const char *best = best_core(f);
    int have = a2q_blas_core_tier(core);
    // Under A2Q_CPU_FEATURES_LIMIT the kernel set must not use more than the limit either.
    if (!best || (have >= 0 && (f->limited ? have == f->tier : have >= f->tier))) {
        snprintf(selection, sizeof selection, "OpenBLAS's own detection (the best tier for a CPU with %s)",
                 tier_name(f->tier));
        return;
    }
    if (auto_choice) {  // already re-executed once: never loop
        snprintf(selection, sizeof selection, "OpenBLAS's own detection (a2q's re-execution did not take effect)");
        return;
    }
    char value[160];
    snprintf(value, sizeof value, "%s %s", best, core ? core : "unknown");
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv(marker, value, 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    // Could not re-execute (no /proc?): run with OpenBLAS's choice and say so.
    int error = errno;
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(marker);
    snprintf(selection, sizeof selection,
             "OpenBLAS's own detection (%s, generic): a2q could not re-execute itself with OPENBLAS_CORETYPE=%s (%s)",
             core ? core : "unknown", best, strerror(error));
}

const char *a2q_blas_selection(void) { return selection; }
