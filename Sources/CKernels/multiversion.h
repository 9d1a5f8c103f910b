// Private to CKernels: each hot routine is compiled once per x86 instruction-set level (AVX-512,
// AVX2+FMA, baseline) and the best one is picked at load time. Helpers they call must be
// `static inline __attribute__((always_inline))`: an out-of-line helper is compiled for the baseline
// level only, and every clone would call that slow copy.
#ifndef CKERNELS_MULTIVERSION_H
#define CKERNELS_MULTIVERSION_H
#if defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif
#endif
