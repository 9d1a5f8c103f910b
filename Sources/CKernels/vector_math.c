#include "ckernels.h"
#include "vector_helpers.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// erf(x) = x·P(u)/Q(u), u = x²/16, clamped at |x| = 4 where erf rounds to ±1 in float32.
static inline __attribute__((always_inline)) double erf_rational(double x) {
    double c = x > 4.0 ? 4.0 : (x < -4.0 ? -4.0 : x);
    double u = c * c * 0.0625;
    double u2 = u * u, u4 = u2 * u2;
    double p = (1.1283791746018668 + 2.711200170487032 * u + (13.174812947481223 + 12.647012819996881 * u) * u2)
             + (20.88415258050987 + 0.5461397791504657 * u + -0.6753669903597003 * u2) * u4;
    double q = (1.0 + 7.7360736921709 * u + (27.33479761388442 + 56.47886643741213 * u) * u2)
             + (70.90442372629359 + 47.02641424286526 * u + -8.81525052418256 * u2) * u4;
    return c * p / q;
}

MULTIVERSION
void ck_exp(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float e = exp_poly(v);
        e = v < -87.0f ? 0.0f : e;
        y[i] = v != v ? v : e;
    }
}

MULTIVERSION
void ck_erf(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float e = (float)erf_rational((double)v);
        y[i] = v != v ? v : e;
    }
}

// GELU's loops go over blocks this long: the tail check (below) rereads a block while it is in cache.
#define GELU_BLOCK 256

// y[i] = GELU(x[i]) for n floats (y must not alias x). Always inlined: an out-of-line copy would be
// compiled for the baseline level only, and every clone would call it.
static inline __attribute__((always_inline)) void gelu_span(const float *restrict x, float *restrict y, ptrdiff_t n) {
    for (ptrdiff_t start = 0; start < n; start += GELU_BLOCK) {
        const float *xs = x + start;
        float *ys = y + start;
        ptrdiff_t m = n - start < GELU_BLOCK ? n - start : GELU_BLOCK;
        int tail = 0;
        for (ptrdiff_t i = 0; i < m; i++) {
            double v = (double)xs[i];
            float g = (float)(0.5 * v * (1.0 + erf_rational(v * 0.7071067811865476)));
            ys[i] = xs[i] != xs[i] ? xs[i] : g;
            tail |= xs[i] < GELU_TAIL;
        }
        // Below x = -3, 1 + erf(x/√2) cancels (and erf_rational's clamp at -4 leaves 1.5e-8 where the
        // true value vanishes: x = -1e10 gave -80.85). erfc has no cancellation; those rare inputs are
        // redone apart, so the loop above stays vectorised.
        if (tail) {
            for (ptrdiff_t i = 0; i < m; i++) {
                if (xs[i] < GELU_TAIL) ys[i] = (float)(0.5 * (double)xs[i] * erfc(-(double)xs[i] * 0.7071067811865476));
            }
        }
    }
}

MULTIVERSION
void ck_gelu(const float *restrict x, float *restrict y, ptrdiff_t n) { gelu_span(x, y, n); }

// Channels per block of the depthwise kernel: 64 float accumulators stay in registers (4 × AVX-512).
#define DW_BLOCK 64

// Each output is summed in the order of the NCHW depthwise kernel (Runtime/Kernels/Convolution/
// Depthwise.swift), in float, with no fused multiply-add (FP_CONTRACT OFF; Swift never contracts):
//  - a 3×3 window wholly inside the image: bias + ((r0 + r1) + r2), each kernel row r = (w0·x0 + w1·x1) + w2·x2;
//  - a 3-wide window whose columns are inside but some kernel rows are not: the inside rows' r added to
//    the bias one by one;
//  - any other window: its inside taps added to the bias one by one, row by row.
// So TokenDepthwiseConv gives exactly the bits of the Transpose → Conv → Transpose it replaces (the
// adjoint, those of ConvGradInput), and a training graph keeps its forward pass bit for bit — results
// that sit on a Relu kink stay on the side the unfused graph (and PyTorch's reference) puts them.
MULTIVERSION
void ck_depthwise_tokens_rows(const float *x, const float *w, const float *bias, float *y,
                              ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                              ptrdiff_t row_begin, ptrdiff_t row_end, int gelu) {
#pragma STDC FP_CONTRACT OFF
    const ptrdiff_t ph = (KH - 1) / 2, pw = (KW - 1) / 2;
    float acc[DW_BLOCK];
    for (ptrdiff_t oh = row_begin; oh < row_end; oh++) {
        // Kernel rows inside the image (zero padding: taps outside are skipped).
        const ptrdiff_t kh0 = ph - oh > 0 ? ph - oh : 0;
        const ptrdiff_t kh1 = H + ph - oh < KH ? H + ph - oh : KH;
        for (ptrdiff_t ow = 0; ow < W; ow++) {
            const ptrdiff_t kw0 = pw - ow > 0 ? pw - ow : 0;
            const ptrdiff_t kw1 = W + pw - ow < KW ? W + pw - ow : KW;
            const int rowSums = KW == 3 && kw0 == 0 && kw1 == 3;
            const int whole3x3 = rowSums && KH == 3 && kh0 == 0 && kh1 == 3;
            float *out = y + ((oh - row_begin) * W + ow) * C;
            for (ptrdiff_t c0 = 0; c0 < C; c0 += DW_BLOCK) {
                const ptrdiff_t m = C - c0 < DW_BLOCK ? C - c0 : DW_BLOCK;
                for (ptrdiff_t c = 0; c < m; c++) acc[c] = bias ? bias[c0 + c] : 0.0f;
                if (whole3x3) {
                    const float *x0 = x + ((oh - 1) * W + ow - 1) * C + c0, *x1 = x0 + W * C, *x2 = x1 + W * C;
                    const float *w0 = w + c0, *w1 = w0 + 3 * C, *w2 = w1 + 3 * C;
                    for (ptrdiff_t c = 0; c < m; c++) {
                        const float r0 = (w0[c] * x0[c] + w0[C + c] * x0[C + c]) + w0[2 * C + c] * x0[2 * C + c];
                        const float r1 = (w1[c] * x1[c] + w1[C + c] * x1[C + c]) + w1[2 * C + c] * x1[2 * C + c];
                        const float r2 = (w2[c] * x2[c] + w2[C + c] * x2[C + c]) + w2[2 * C + c] * x2[2 * C + c];
                        acc[c] = acc[c] + ((r0 + r1) + r2);
                    }
                } else {
                    for (ptrdiff_t kh = kh0; kh < kh1; kh++) {
                        const float *row = x + ((oh + kh - ph) * W + ow - pw) * C + c0;
                        const float *taps = w + kh * KW * C + c0;
                        if (rowSums) {
                            for (ptrdiff_t c = 0; c < m; c++)
                                acc[c] = acc[c] + ((taps[c] * row[c] + taps[C + c] * row[C + c]) + taps[2 * C + c] * row[2 * C + c]);
                            continue;
                        }
                        for (ptrdiff_t kw = kw0; kw < kw1; kw++) {
                            const float *xv = row + kw * C, *wv = taps + kw * C;
                            for (ptrdiff_t c = 0; c < m; c++) acc[c] = acc[c] + wv[c] * xv[c];
                        }
                    }
                }
                if (gelu) {
                    gelu_span(acc, out + c0, m);   // from the local block: no aliasing, so vectorised
                } else {
                    for (ptrdiff_t c = 0; c < m; c++) out[c0 + c] = acc[c];
                }
            }
        }
    }
}

MULTIVERSION
void ck_depthwise_tokens_grad_weight_rows(const float *dy, const float *x, float *scratch, double *dw, double *db,
                                          ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                                          ptrdiff_t row_begin, ptrdiff_t row_end) {
    const ptrdiff_t ph = (KH - 1) / 2, pw = (KW - 1) / 2, taps = KH * KW;
    float *sb = scratch + taps * C;
    for (ptrdiff_t oh = row_begin; oh < row_end; oh++) {
        for (ptrdiff_t i = 0; i < (taps + 1) * C; i++) scratch[i] = 0.0f;
        const ptrdiff_t kh0 = ph - oh > 0 ? ph - oh : 0;
        const ptrdiff_t kh1 = H + ph - oh < KH ? H + ph - oh : KH;
        for (ptrdiff_t ow = 0; ow < W; ow++) {
            const ptrdiff_t kw0 = pw - ow > 0 ? pw - ow : 0;
            const ptrdiff_t kw1 = W + pw - ow < KW ? W + pw - ow : KW;
            const float *g = dy + (oh * W + ow) * C;
            for (ptrdiff_t c = 0; c < C; c++) sb[c] += g[c];
            for (ptrdiff_t kh = kh0; kh < kh1; kh++) {
                const float *row = x + ((oh + kh - ph) * W + ow - pw) * C;
                for (ptrdiff_t kw = kw0; kw < kw1; kw++) {
                    const float *xv = row + kw * C;
                    float *s = scratch + (kh * KW + kw) * C;
                    for (ptrdiff_t c = 0; c < C; c++) s[c] += g[c] * xv[c];
                }
            }
        }
        // Each row's partial sums go into double (as the NCHW depthwise dW): float sums carried over
        // a whole image drift enough to flip the sign of near-zero gradients.
        for (ptrdiff_t i = 0; i < taps * C; i++) dw[i] += (double)scratch[i];
        for (ptrdiff_t c = 0; c < C; c++) db[c] += (double)sb[c];
    }
}

// e^x in double for the Gaussian's exponent (x ≤ 0): x = n·ln2 + r with ln2 split in two (Cody–Waite,
// n·LN2_HI exact), e^r by its degree-12 Taylor polynomial on |r| ≤ ln2/2 (truncation 2e-16), 2^n
// through the exponent bits of the rounding constant. Below −708 (subnormal results) it gives 0;
// NaN passes through.
static inline __attribute__((always_inline)) double exp_nonpositive_f64(double x) {
    double c = x < -708.0 ? -708.0 : x;
    // Adding 1.5·2^52 rounds to an integer and leaves it in the low mantissa bits: no double → int64
    // conversion, which has no vector form before AVX-512.
    double t = c * 1.4426950408889634 + 6755399441055744.0;
    double n = t - 6755399441055744.0;
    double r = (c - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4338000000000000LL + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double e = p * scale;
    return x < -708.0 ? 0.0 : e;
}

// GELU's derivative Φ(x) + x·φ(x) in double, Φ through erf_rational (so not for the negative tail).
static inline __attribute__((always_inline)) double gelu_slope(double x, double cdf) {
    return cdf + x * (0.3989422804014327 * exp_nonpositive_f64(-0.5 * x * x));
}

MULTIVERSION
void ck_gelu_grad(const float *restrict dy, const float *restrict x, float *restrict dx, ptrdiff_t n) {
    for (ptrdiff_t start = 0; start < n; start += GELU_BLOCK) {
        const float *xs = x + start, *gs = dy + start;
        float *ds = dx + start;
        ptrdiff_t m = n - start < GELU_BLOCK ? n - start : GELU_BLOCK;
        int tail = 0;
        for (ptrdiff_t i = 0; i < m; i++) {
            double v = (double)xs[i];
            double cdf = 0.5 * (1.0 + erf_rational(v * 0.7071067811865476));
            ds[i] = (float)((double)gs[i] * gelu_slope(v, cdf));
            tail |= xs[i] < GELU_TAIL;
        }
        // The negative tail as in ck_gelu: Φ(x) through erfc.
        if (tail) {
            for (ptrdiff_t i = 0; i < m; i++) {
                if (xs[i] < GELU_TAIL) {
                    double v = (double)xs[i];
                    ds[i] = (float)((double)gs[i] * gelu_slope(v, 0.5 * erfc(-v * 0.7071067811865476)));
                }
            }
        }
    }
}

MULTIVERSION
void ck_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, int take_log) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *s = x + r * n;
        float *d = y + r * n;
        int bad;
        float m = row_max(s, n, -INFINITY, &bad);
        if (bad) {
            for (ptrdiff_t i = 0; i < n; i++) d[i] = NAN;
            continue;
        }
        float shift = m == -INFINITY ? 0.0f : m;
        double total = exp_shifted(s, d, n, shift);
        if (take_log) {
            float ls = (float)log(total);
            for (ptrdiff_t k = 0; k < n; k++) d[k] = (s[k] - shift) - ls;
        } else {
            float inv = (float)(1.0 / total);
            for (ptrdiff_t k = 0; k < n; k++) d[k] *= inv;
        }
    }
}

MULTIVERSION
void ck_softmax_block_rows(float *s, ptrdiff_t rows, ptrdiff_t n, float *max, double *sum, float *rescale) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = s + r * n;
        int bad;
        float m = row_max(row, n, max[r], &bad);
        // As ck_softmax_rows: a row that is all -inf so far shifts by 0 (its exps are 0).
        float shift = m == -INFINITY ? 0.0f : m;
        float old = max[r] == -INFINITY ? -INFINITY : max[r] - shift;
        float factor = old < -87.0f ? 0.0f : exp_poly(old);
        double total = exp_shifted(row, row, n, shift);
        max[r] = m;
        rescale[r] = factor;
        sum[r] = bad ? NAN : sum[r] * factor + total;
    }
}
