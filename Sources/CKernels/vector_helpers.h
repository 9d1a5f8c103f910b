// Helpers shared by the C kernels (private to CKernels). Every helper is always inlined: an out-of-line
// copy of a static function is compiled once, for the baseline level, and every target clone would
// call that slow copy.
#ifndef VECTOR_HELPERS_H
#define VECTOR_HELPERS_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "multiversion.h"

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

#endif
