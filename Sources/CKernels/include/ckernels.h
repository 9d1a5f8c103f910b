// Hot float32 loops written in C so the compiler vectorises them, and compiled once per x86
// instruction-set level (AVX-512, AVX2+FMA, baseline) with the best one picked at load time
// (target_clones), so one binary is fast on new CPUs and still runs on old ones.
#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

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

/// y[i] = x/2 · (1 + erf(x/√2)) (exact GELU), evaluated in double; y must not alias x.
void ck_gelu(const float *x, float *y, ptrdiff_t n);
/// Depthwise KH×KW convolution (KH, KW odd; stride 1; zero padding (K − 1)/2 on each side, so the
/// output has the input's size) of one image in channels-last layout: x is [H, W, C], w is [KH·KW, C]
/// (the taps row by row, each a vector of C channels), bias [C] or NULL. Computes the output rows
/// [row_begin, row_end) into y, which holds those rows ([row_end − row_begin, W, C]: the whole output
/// from its first row, or a band buffer); with gelu != 0 each output is GELU(conv) as ck_gelu computes it.
void ck_depthwise_tokens_rows(const float *x, const float *w, const float *bias, float *y,
                              ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                              ptrdiff_t row_begin, ptrdiff_t row_end, int gelu);

/// The weight and bias gradients of that convolution over its output rows [row_begin, row_end) of one
/// image: dw[t·C + c] += Σ dy[oh, ow, c] · x[under tap t] and db[c] += Σ dy[oh, ow, c], each row
/// summed in float (in `scratch`, (KH·KW + 1)·C floats), then added in double.
void ck_depthwise_tokens_grad_weight_rows(const float *dy, const float *x, float *scratch, double *dw, double *db,
                                          ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                                          ptrdiff_t row_begin, ptrdiff_t row_end);

/// LayerNorm's backward over one row of n floats whose statistics are `mean`, `inv_std`: with
/// x̂ = (x − mean)·inv_std (written to `xhat`) and g = dy·w, dx = inv_std·(g − mean(g) − x̂·mean(g·x̂)),
/// and the row's share of the parameter gradients added: sum_dy_xhat += dy·x̂, sum_dy += dy.
void ck_layer_norm_grad_row(const float *x, const float *dy, const float *w, float *dx, ptrdiff_t n,
                            float mean, float inv_std, float *xhat, float *sum_dy_xhat, float *sum_dy);

/// Below this x, GELU is evaluated as x/2 · erfc(-x/√2) (no cancellation in the negative tail).
#define GELU_TAIL (-3.0f)

/// dx[i] = dy[i] · (Φ(x) + x·φ(x)) (GELU's derivative, exact form), evaluated in double (Φ through erfc
/// below GELU_TAIL); dx must not alias dy or x.
void ck_gelu_grad(const float *dy, const float *x, float *dx, ptrdiff_t n);

/// y[i] = exp(x[i]) for float32 (about 1 ulp).
void ck_exp(const float *x, float *y, ptrdiff_t n);

/// The fused segmentation loss (UpsampledCrossEntropyLoss) works on channels-last rows: w pixels × cp
/// floats, a pixel's c classes contiguous and padded to cp (a multiple of 16).
/// One low-resolution row: dst[i·cp + k] = src[k·plane + i] (k < c, i < w); padding channels 0.
void ck_planes_to_channels_last(const float *src, ptrdiff_t plane, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp, float *dst);
/// The way back: dst[k·plane + i] = src[i·cp + k] (+= when `accumulate` != 0).
void ck_channels_last_to_planes(const float *src, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp, float *dst, ptrdiff_t plane,
                                int accumulate);

/// One label row of the loss: the `nh` low-resolution rows `source` mixed with weights `wh`, then per
/// output pixel x the `nw` horizontal taps (pixel indices `iw[x·nw…]`, weights `ww`) give its logits;
/// returns Σ −log softmax(logits)[label] over the pixels whose `labels[x]` ≥ 0 (negative: ignored).
/// With `back` (w·cp scratch) and `gradient` (nh rows, the taps' gradient rows, w·cp each), adds
/// coefficient · (softmax − one-hot) sent back through both interpolations into `gradient[j]`.
/// `mixed` is w·cp scratch, `pixel` cp.
double ck_upsampled_cross_entropy_row(const float *const *source, const float *wh, ptrdiff_t nh,
                                      ptrdiff_t w, ptrdiff_t c, ptrdiff_t cp,
                                      const int32_t *iw, const float *ww, ptrdiff_t nw, ptrdiff_t out_w,
                                      const int32_t *labels, double coefficient,
                                      float *mixed, float *pixel, float *back, float *const *gradient);

/// Philox4x32-10 (the Random123 constants) for the counters (b, b >> 32, r0, r1), b = first_block
/// ..< first_block + blocks, key (k0, k1): out[4·i + lane] is word `lane` of block first_block + i.
void ck_philox_words(uint64_t first_block, ptrdiff_t blocks, uint32_t k0, uint32_t k1, uint32_t r0, uint32_t r1,
                     uint32_t *out);

/// Training-mode dropout on float32. Keep mask from random words: element i is kept when its top 24
/// bits (a uniform k·2⁻²⁴) are ≥ threshold.
void ck_dropout_keep(const uint32_t *words, uint32_t threshold, bool *mask, ptrdiff_t n);
/// y = x · scale where kept, x · 0 where dropped.
void ck_dropout_forward(const float *x, const bool *mask, float scale, float *y, ptrdiff_t n);
/// dx = dy · scale where kept, 0 where dropped.
void ck_dropout_backward(const float *dy, const bool *mask, float scale, float *dx, ptrdiff_t n);

/// Σ x[i] in double (BatchNorm's statistics, one plane at a time).
double ck_sum_f64(const float *x, ptrdiff_t n);

/// Σ (x[i] − mean)², the difference and the sum in double.
double ck_squared_deviations_f64(const float *x, ptrdiff_t n, double mean);

/// Σ dy[i] and Σ dy[i]·(x[i] − mean) (the product in float, the sums in double): the two sums of
/// BatchNorm's backward for one plane.
void ck_batch_norm_grad_sums(const float *x, const float *dy, ptrdiff_t n, float mean, double *sum_dy, double *sum_dy_xc);

/// BatchNorm's dX on batch statistics for one plane, in double, rounded once:
/// dx[i] = k·(dy[i] − mean_dy − (x[i] − mean)·inv_std·mean_dy_xhat). dx must not alias x or dy.
void ck_batch_norm_grad_input(const float *x, const float *dy, float *dx, ptrdiff_t n,
                              double k, double mean_dy, double mean, double inv_std, double mean_dy_xhat);

#endif
