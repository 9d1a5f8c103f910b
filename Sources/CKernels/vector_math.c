#include "ckernels.h"
#include "multiversion.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

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

// GELU's loops go over blocks this long: the tail check (below) rereads a block while it is in cache.
#define GELU_BLOCK 256

MULTIVERSION
void ck_gelu(const float *restrict x, float *restrict y, ptrdiff_t n) {
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
