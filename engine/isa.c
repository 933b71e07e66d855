/* isa.c — which instruction set the dot kernels use: detected once, or forced
 * with QUIRE_ISA / q_isa_set. */
#include "engine/engine.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static const char *const isa_names[Q_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

const char *q_isa_name(int isa) { return isa >= 0 && isa < Q_ISA_COUNT ? isa_names[isa] : "?"; }

int q_isa_from_name(const char *name) {
    for (int i = 0; i < Q_ISA_COUNT; i++)
        if (name && strcasecmp(name, isa_names[i]) == 0) return i;
    return -1;
}

bool q_isa_available(int isa) {
    switch (isa) {
    case Q_ISA_SCALAR: return true;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    case Q_ISA_AVX2: {
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29))) return false; /* F16C */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    case Q_ISA_AVX512:
        __builtin_cpu_init();
        return q_isa_available(Q_ISA_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__)
    case Q_ISA_NEON:
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return false;
#endif
#endif
    default: return false;
    }
}

static int best_isa(void) {
    if (q_isa_available(Q_ISA_AVX512)) return Q_ISA_AVX512;
    if (q_isa_available(Q_ISA_AVX2)) return Q_ISA_AVX2;
    if (q_isa_available(Q_ISA_NEON)) return Q_ISA_NEON;
    return Q_ISA_SCALAR;
}

static atomic_int cur_isa = -1;

int q_isa_init(qerr *e) {
    const char *env = getenv("QUIRE_ISA");
    int isa = best_isa();
    if (env && *env) {
        int want = q_isa_from_name(env);
        if (want < 0) return qerr_set(e, "QUIRE_ISA=%s: unknown instruction set (scalar, avx2, avx512, neon)", env);
        if (!q_isa_available(want))
            return qerr_set(e, "QUIRE_ISA=%s: this machine (or this build) cannot run %s kernels", env, env);
        isa = want;
    }
    int expected = -1;
    atomic_compare_exchange_strong(&cur_isa, &expected, isa);
    return 0;
}

int q_isa_get(void) {
    int isa = atomic_load(&cur_isa);
    if (isa >= 0) return isa;
    if (q_isa_init(NULL)) {
        /* A bad QUIRE_ISA that nobody checked: the safest kernels, until a
         * caller that checks (model loading) reports it. */
        return Q_ISA_SCALAR;
    }
    return atomic_load(&cur_isa);
}

int q_isa_set(int isa, qerr *e) {
    if (isa < 0 || isa >= Q_ISA_COUNT) return qerr_set(e, "instruction set %d out of range", isa);
    if (!q_isa_available(isa)) return qerr_set(e, "instruction set %s is not available on this machine", q_isa_name(isa));
    atomic_store(&cur_isa, isa);
    return 0;
}
