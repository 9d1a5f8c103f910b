// Hot float32 loops written in C so the compiler vectorises them, and compiled once per x86
// instruction-set level (AVX-512, AVX2+FMA, baseline) with the best one picked at load time
// (target_clones), so one binary is fast on new CPUs and still runs on old ones.
#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>

/// Softmax (log_softmax when `log` != 0) over `rows` contiguous rows of `n` floats. Rows holding
/// +inf or NaN give NaN (as PyTorch); a row of all -inf gives NaN for softmax, -inf for log.
void ck_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, int log);

/// y[i] = erf(x[i]) (rational approximation evaluated in double; max abs error 7.6e-10).
void ck_erf(const float *x, float *y, ptrdiff_t n);

/// y[i] = x/2 · (1 + erf(x/√2)) (exact GELU), evaluated in double.
void ck_gelu(const float *x, float *y, ptrdiff_t n);
/// Below this x, GELU is evaluated as x/2 · erfc(-x/√2) (no cancellation in the negative tail).
#define GELU_TAIL (-3.0f)

/// y[i] = exp(x[i]) for float32 (about 1 ulp).
void ck_exp(const float *x, float *y, ptrdiff_t n);

#endif
