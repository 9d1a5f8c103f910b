#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

// exp for float32: range reduction x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial, 2^n through the
// exponent bits. Inputs are clamped to [-87, 88]; callers handle NaN themselves.
static inline __attribute__((always_inline)) float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // Round to nearest even by adding and removing 1.5·2^23 (exact for |x·log2 e| < 2^22): plain
    // arithmetic that vectorises on every level, where roundevenf is a libm call without SSE4.1.
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

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

// y[i] = GELU(x[i]) for n floats. Always inlined: an out-of-line copy would be compiled for the
// baseline level only, and every clone would call it.
static inline __attribute__((always_inline)) void gelu_span(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        double v = (double)x[i];
        float g = (float)(0.5 * v * (1.0 + erf_rational(v * 0.7071067811865476)));
        y[i] = x[i] != x[i] ? x[i] : g;
    }
    // Below x = -3, 1 + erf(x/√2) cancels (and erf_rational's clamp at -4 leaves 1.5e-8 where the true
    // value vanishes: x = -1e10 gave -80.85). erfc has no cancellation; a second pass keeps the loop
    // above vectorised, and such inputs are rare.
    for (ptrdiff_t i = 0; i < n; i++) {
        if (x[i] < GELU_TAIL) y[i] = (float)(0.5 * (double)x[i] * erfc(-(double)x[i] * 0.7071067811865476));
    }
}

MULTIVERSION
void ck_gelu(const float *x, float *y, ptrdiff_t n) { gelu_span(x, y, n); }

// Channels per block of the depthwise kernel: 64 float accumulators stay in registers (4 × AVX-512).
#define DW_BLOCK 64

MULTIVERSION
void ck_depthwise_tokens_rows(const float *x, const float *w, const float *bias, float *y,
                              ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t KH, ptrdiff_t KW,
                              ptrdiff_t row_begin, ptrdiff_t row_end, int gelu) {
    const ptrdiff_t ph = (KH - 1) / 2, pw = (KW - 1) / 2;
    float acc[DW_BLOCK];
    for (ptrdiff_t oh = row_begin; oh < row_end; oh++) {
        // Kernel rows inside the image (zero padding: taps outside are skipped).
        const ptrdiff_t kh0 = ph - oh > 0 ? ph - oh : 0;
        const ptrdiff_t kh1 = H + ph - oh < KH ? H + ph - oh : KH;
        for (ptrdiff_t ow = 0; ow < W; ow++) {
            const ptrdiff_t kw0 = pw - ow > 0 ? pw - ow : 0;
            const ptrdiff_t kw1 = W + pw - ow < KW ? W + pw - ow : KW;
            float *out = y + (oh * W + ow) * C;
            for (ptrdiff_t c0 = 0; c0 < C; c0 += DW_BLOCK) {
                const ptrdiff_t m = C - c0 < DW_BLOCK ? C - c0 : DW_BLOCK;
                for (ptrdiff_t c = 0; c < m; c++) acc[c] = bias ? bias[c0 + c] : 0.0f;
                for (ptrdiff_t kh = kh0; kh < kh1; kh++) {
                    const float *row = x + ((oh + kh - ph) * W + ow - pw) * C + c0;
                    const float *taps = w + kh * KW * C + c0;
                    for (ptrdiff_t kw = kw0; kw < kw1; kw++) {
                        const float *xv = row + kw * C, *wv = taps + kw * C;
                        for (ptrdiff_t c = 0; c < m; c++) acc[c] += wv[c] * xv[c];
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

// d[i] = exp(s[i] − shift) (0 below −87) for a row of n; returns the row's sum, taken in 16 float
// lanes combined in double: precise for long rows and still vectorised. (d may be s.) Always inlined:
// an out-of-line copy is compiled for the baseline level only, and every clone would call it.
static inline __attribute__((always_inline)) double exp_shifted(const float *s, float *d, ptrdiff_t n, float shift) {
    float lanes[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        // The block's exps go to a local array first: with d == s (in place) a direct store could
        // overwrite a later input as far as the compiler knows, and it would fall back to scalar code.
        float e[16];
        for (int k = 0; k < 16; k++) {
            float v = s[i + k] - shift;
            float x = exp_poly(v);
            e[k] = v < -87.0f ? 0.0f : x;
        }
        for (int k = 0; k < 16; k++) {
            d[i + k] = e[k];
            lanes[k] += e[k];
        }
    }
    double total = 0;
    for (int k = 0; k < 16; k++) total += lanes[k];
    for (; i < n; i++) {
        float v = s[i] - shift;
        float e = v < -87.0f ? 0.0f : exp_poly(v);
        d[i] = e;
        total += e;
    }
    return total;
}

// A row's maximum, at least `start`, and whether it holds +inf or NaN (*bad), in 16 independent
// lanes: a single running maximum is a serial chain the compiler will not reorder (NaN makes max
// non-associative), and it ran scalar.
static inline __attribute__((always_inline)) float row_max(const float *s, ptrdiff_t n, float start, int *bad) {
    float lane[16];
    int flag[16];
    for (int k = 0; k < 16; k++) { lane[k] = start; flag[k] = 0; }
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            float v = s[i + k];
            lane[k] = v > lane[k] ? v : lane[k];
            flag[k] |= (v != v) | (v == INFINITY);
        }
    }
    float m = start;
    int b = 0;
    for (int k = 0; k < 16; k++) { m = lane[k] > m ? lane[k] : m; b |= flag[k]; }
    for (; i < n; i++) {
        m = s[i] > m ? s[i] : m;
        b |= (s[i] != s[i]) | (s[i] == INFINITY);
    }
    *bad = b;
    return m;
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
