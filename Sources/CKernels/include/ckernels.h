// Hot float32 loops written in C so the compiler vectorises them, and compiled once per x86
// instruction-set level (AVX-512, AVX2+FMA, baseline) with the best one picked at load time
// (target_clones), so one binary is fast on new CPUs and still runs on old ones.
#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>

/// Softmax (log_softmax when `log` != 0) over `rows` contiguous rows of `n` floats. Rows holding
/// +inf or NaN give NaN (as PyTorch); a row of all -inf gives NaN for softmax, -inf for log.
/// y may be x for softmax (not for log, which reads x after writing the exps).
void ck_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, int log);

/// One step of an online (streaming) softmax over a block of `rows` rows of `n` scores (row stride n),
/// for a softmax whose row is seen one block of columns at a time: each row's running maximum
/// `max[r]` is raised to cover the block, the block becomes exp(s − max) (the exp of ck_softmax_rows),
/// `sum[r]` is rescaled to the new maximum and the block's exps added, and `rescale[r]` receives
/// exp(old max − new max), the factor for whatever the caller accumulated under the old maximum.
/// A row holding +inf or NaN makes its sum NaN (the row's softmax is NaN, as ck_softmax_rows).
void ck_softmax_block_rows(float *s, ptrdiff_t rows, ptrdiff_t n, float *max, double *sum, float *rescale);

/// y[i] = erf(x[i]) (rational approximation evaluated in double; max abs error 7.6e-10).
void ck_erf(const float *x, float *y, ptrdiff_t n);

/// y[i] = x/2 · (1 + erf(x/√2)) (exact GELU), evaluated in double.
void ck_gelu(const float *x, float *y, ptrdiff_t n);
/// Depthwise KH×KW convolution (KH, KW odd; stride 1; zero padding (K − 1)/2 on each side, so the
/// output has the input's size) of one image in channels-last layout: x and y are [H, W, C], w is
/// [KH·KW, C] (the taps row by row, each a vector of C channels), bias [C] or NULL. Computes the output
/// rows [row_begin, row_end); with gelu != 0 each output is GELU(conv) as ck_gelu computes it.
void ck_depthwise_tokens_rows(const float *x, const float *w, const float *bias, float *y,
                              ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                              ptrdiff_t row_begin, ptrdiff_t row_end, int gelu);

/// The weight and bias gradients of that convolution over its output rows [row_begin, row_end) of one
/// image: dw[t·C + c] += Σ dy[oh, ow, c] · x[under tap t] and db[c] += Σ dy[oh, ow, c], each row
/// summed in float (in `scratch`, (KH·KW + 1)·C floats), then added in double.
void ck_depthwise_tokens_grad_weight_rows(const float *dy, const float *x, float *scratch, double *dw, double *db,
                                          ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                                          ptrdiff_t row_begin, ptrdiff_t row_end);

/// Below this x, GELU is evaluated as x/2 · erfc(-x/√2) (no cancellation in the negative tail).
#define GELU_TAIL (-3.0f)

/// y[i] = exp(x[i]) for float32 (about 1 ulp).
void ck_exp(const float *x, float *y, ptrdiff_t n);

#endif
