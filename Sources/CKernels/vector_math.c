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

MULTIVERSION
void ck_gelu(const float *x, float *y, ptrdiff_t n) {
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
