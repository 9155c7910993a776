// CPU feature detection with cpuid and xgetbv: a feature counts only when the OS also saves
// the registers it needs (XCR0), as the Intel SDM prescribes.
#include "a2q_cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static a2q_cpu_features features;
static char description[128];
static char vendor[13] = "unknown";
static int detected;

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

static void detect(void) {
    memset(&features, 0, sizeof features);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned max_leaf = a;
    features.amd = (b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u);  // "AuthenticAMD"
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4); vendor[12] = 0;
    __get_cpuid(1, &a, &b, &c, &d);
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_saved = (xcr0 & 0x6) == 0x6;
    int zmm_saved = ymm_saved && (xcr0 & 0xe0) == 0xe0;
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned leaf7_max_subleaf = a;
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, cd = (b >> 28) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    int bf16 = 0;
    if (leaf7_max_subleaf >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        bf16 = (a1 >> 5) & 1;
    }
    if (avx && avx2 && fma && ymm_saved) features.tier = A2Q_TIER_AVX2;
    if (features.tier == A2Q_TIER_AVX2 && f && dq && cd && bw && vl && zmm_saved) {
        features.tier = A2Q_TIER_AVX512;
        features.avx512_vnni = vnni;
        features.avx512_bf16 = bf16;
    }
#endif
    const char *limit = getenv("A2Q_CPU_FEATURES_LIMIT");
    if (limit && *limit) {
        int cap = !strcmp(limit, "baseline") ? A2Q_TIER_BASELINE : !strcmp(limit, "avx2") ? A2Q_TIER_AVX2 : A2Q_TIER_AVX512;
        if (features.tier > cap) {
            features.tier = cap;
            features.avx512_vnni = features.avx512_bf16 = 0;
            features.limited = 1;
        }
    }
}

const a2q_cpu_features *a2q_cpu(void) {
    if (!detected) {  // first call happens in the constructor, before any thread exists
        detect();
        detected = 1;
    }
    return &features;
}

const char *a2q_cpu_description(void) {
    const a2q_cpu_features *f = a2q_cpu();
    const char *tier = f->tier == A2Q_TIER_AVX512 ? "AVX-512" : f->tier == A2Q_TIER_AVX2 ? "AVX2" : "no AVX2";
    const char *maker = !strcmp(vendor, "GenuineIntel") ? "Intel" : f->amd ? "AMD" : vendor;
    snprintf(description, sizeof description, "%s, %s%s%s%s%s%s", maker, tier,
             f->avx512_vnni || f->avx512_bf16 ? " (" : "", f->avx512_vnni ? "VNNI" : "",
             f->avx512_vnni && f->avx512_bf16 ? ", " : "", f->avx512_bf16 ? "BF16" : "",
             f->avx512_vnni || f->avx512_bf16 ? ")" : "");
    if (f->limited) strncat(description, " [limited by A2Q_CPU_FEATURES_LIMIT]", sizeof description - strlen(description) - 1);
    return description;
}

int32_t a2q_blas_core_tier(const char *name) {
    static const char *avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *avx2[] = {"Haswell", "Zen"};
    static const char *baseline[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Nano",
                                     "Katmai", "Coppermine", "Northwood", "Banias", "Athlon", "Opteron",
                                     "Opteron_SSE3", "Barcelona", "Bobcat", "SandyBridge", "Bulldozer",
                                     "Piledriver", "Steamroller", "Excavator"};
    if (!name) return -1;
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++) if (!strcasecmp(name, avx512[i])) return A2Q_TIER_AVX512;
    for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++) if (!strcasecmp(name, avx2[i])) return A2Q_TIER_AVX2;
    for (size_t i = 0; i < sizeof baseline / sizeof *baseline; i++) if (!strcasecmp(name, baseline[i])) return A2Q_TIER_BASELINE;
    return -1;
}
