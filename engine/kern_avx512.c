/* kern_avx512.c — dot kernels for AVX-512 F/BW/VL + VNNI (see kern_x86.inc):
 * 256-bit vpdpbusd/vpdpwssd and 32 vector registers for 4 x 4 tiles. Built
 * with the matching -m flags on x86-64 only; called only when the CPU has them. */
#if defined(__x86_64__)
#define KSUF avx512
#define KVNNI 1
#define KROWS 4
#include "engine/kern_x86.inc"
#else
typedef int quire_kern_avx512_unused;
#endif
