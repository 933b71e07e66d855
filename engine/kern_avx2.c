/* kern_avx2.c — dot kernels for AVX2 + FMA + F16C (see kern_x86.inc). Built
 * with -mavx2 -mfma -mf16c on x86-64 only; called only when the CPU has them. */
#if defined(__x86_64__)
#define KSUF avx2
#define KVNNI 0
#define KROWS 2 /* 16 vector registers: 2 x 4 accumulators */
#include "engine/kern_x86.inc"
#else
typedef int quire_kern_avx2_unused;
#endif
