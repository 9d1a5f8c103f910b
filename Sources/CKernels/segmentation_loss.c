#include "ckernels.h"
#include "vector_helpers.h"

// The fused segmentation loss works channels-last: a low-resolution row is w pixels × cp floats, the
// c classes of one pixel contiguous and padded to cp, so every pass below runs along the classes in
// whole vectors, with no gather and no scatter (bilinear taps move whole pixels).

typedef float v8f __attribute__((vector_size(32), aligned(4)));   // 8 floats, any float alignment

// An 8×8 block transposed in registers (row j of the result is column j of the input).
static inline __attribute__((always_inline)) void transpose8(v8f r[8]) {
    v8f t[8], u[8];
    for (int j = 0; j < 8; j += 2) {
        t[j] = __builtin_shufflevector(r[j], r[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[j + 1] = __builtin_shufflevector(r[j], r[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int j = 0; j < 8; j += 4) {
        u[j] = __builtin_shufflevector(t[j], t[j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[j + 1] = __builtin_shufflevector(t[j], t[j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[j + 2] = __builtin_shufflevector(t[j + 1], t[j + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[j + 3] = __builtin_shufflevector(t[j + 1], t[j + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[j + 4] = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

MULTIVERSION
void ck_planes_to_channels_last(const float *src, ptrdiff_t plane, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp,
                                float *dst) {
    const ptrdiff_t c8 = c / 8 * 8, w8 = w / 8 * 8;
    for (ptrdiff_t i0 = 0; i0 < w8; i0 += 8) {
        for (ptrdiff_t k0 = 0; k0 < c8; k0 += 8) {
            v8f r[8];
            for (int j = 0; j < 8; j++) r[j] = *(const v8f *)(src + (k0 + j) * plane + i0);
            transpose8(r);
            for (int j = 0; j < 8; j++) *(v8f *)(dst + (i0 + j) * cp + k0) = r[j];
        }
    }
    for (ptrdiff_t i = 0; i < w; i++) {
        for (ptrdiff_t k = i < w8 ? c8 : 0; k < c; k++) dst[i * cp + k] = src[k * plane + i];
        for (ptrdiff_t k = c; k < cp; k++) dst[i * cp + k] = 0;
    }
}

MULTIVERSION
void ck_channels_last_to_planes(const float *src, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp, float *dst, ptrdiff_t plane,
                                int accumulate) {
    const ptrdiff_t c8 = c / 8 * 8, w8 = w / 8 * 8;
    for (ptrdiff_t i0 = 0; i0 < w8; i0 += 8) {
        for (ptrdiff_t k0 = 0; k0 < c8; k0 += 8) {
            v8f r[8];
            for (int j = 0; j < 8; j++) r[j] = *(const v8f *)(src + (i0 + j) * cp + k0);
            transpose8(r);
            for (int j = 0; j < 8; j++) {
                v8f *d = (v8f *)(dst + (k0 + j) * plane + i0);
                *d = accumulate ? *d + r[j] : r[j];
            }
        }
    }
    for (ptrdiff_t i = 0; i < w; i++) {
        for (ptrdiff_t k = i < w8 ? c8 : 0; k < c; k++) {
            float *d = dst + k * plane + i;
            *d = accumulate ? *d + src[i * cp + k] : src[i * cp + k];
        }
    }
}

MULTIVERSION
double ck_upsampled_cross_entropy_row(const float *const *source, const float *wh, ptrdiff_t nh,
                                      ptrdiff_t w, ptrdiff_t c, ptrdiff_t cp,
                                      const int32_t *iw, const float *ww, ptrdiff_t nw, ptrdiff_t out_w,
                                      const int32_t *labels, double coefficient,
                                      float *mixed_row, float *pixel_scratch, float *back_row, float *const *gradient) {
    const ptrdiff_t n = w * cp;
    float *restrict mixed = mixed_row;
    float *restrict pixel = pixel_scratch;
    float *restrict back = back_row;
    // Vertical taps first (on the short low-resolution row), in Resize's order.
    if (nh == 2) {
        const float *restrict r0 = source[0], *restrict r1 = source[1];
        const float w0 = wh[0], w1 = wh[1];
        for (ptrdiff_t i = 0; i < n; i++) mixed[i] = w0 * r0[i] + w1 * r1[i];
    } else {
        const float *restrict r0 = source[0];
        const float w0 = wh[0];
        for (ptrdiff_t i = 0; i < n; i++) mixed[i] = w0 * r0[i];
        for (ptrdiff_t j = 1; j < nh; j++) {
            const float *restrict rj = source[j];
            const float wj = wh[j];
            for (ptrdiff_t i = 0; i < n; i++) mixed[i] += wj * rj[i];
        }
    }
    if (back) memset(back, 0, (size_t)n * sizeof(float));
    // Σ −log softmax = Σ (shift − logit) + log Π total: one log per row, not per pixel. Each total is
    // in [1, cp] (the maximum's exp is 1), so the product is renormalised every 64 pixels.
    double loss = 0, product = 1;
    int exponent = 0, pending = 0;
    for (ptrdiff_t x = 0; x < out_w; x++) {
        const int32_t label = labels[x];
        if (label < 0) continue;   // ignored: no loss and a zero gradient
        const int32_t *ix = iw + x * nw;
        const float *wx = ww + x * nw;
        // Horizontal taps: the pixel's upsampled logits.
        if (nw == 2) {
            const float *restrict a = mixed + (ptrdiff_t)ix[0] * cp, *restrict b = mixed + (ptrdiff_t)ix[1] * cp;
            const float wa = wx[0], wb = wx[1];
            for (ptrdiff_t k = 0; k < cp; k++) pixel[k] = wa * a[k] + wb * b[k];
        } else {
            const float *restrict a = mixed + (ptrdiff_t)ix[0] * cp;
            const float wa = wx[0];
            for (ptrdiff_t k = 0; k < cp; k++) pixel[k] = wa * a[k];
            for (ptrdiff_t t = 1; t < nw; t++) {
                const float *restrict b = mixed + (ptrdiff_t)ix[t] * cp;
                const float wb = wx[t];
                for (ptrdiff_t k = 0; k < cp; k++) pixel[k] += wb * b[k];
            }
        }
        for (ptrdiff_t k = c; k < cp; k++) pixel[k] = -INFINITY;   // padding: exp 0, never the maximum
        // Log-softmax at the label; +inf or NaN among the logits makes the pixel's loss NaN.
        int bad;
        const float m = row_max(pixel, cp, -INFINITY, &bad);
        const float shift = m == -INFINITY ? 0.0f : m;
        const float logit = pixel[label];
        double total = exp_shifted(pixel, pixel, cp, shift);
        if (bad) total = NAN;
        loss += (double)shift - (double)logit;
        product *= total;
        if (++pending == 64) {
            int e;
            product = frexp(product, &e);
            exponent += e;
            pending = 0;
        }
        if (!back) continue;
        // d loss / d upsampled = coefficient · (softmax − one-hot), sent back through the horizontal taps.
        const float scale = (float)(coefficient / total);
        for (ptrdiff_t k = 0; k < cp; k++) pixel[k] *= scale;
        pixel[label] -= (float)coefficient;
        for (ptrdiff_t t = 0; t < nw; t++) {
            float *restrict d = back + (ptrdiff_t)ix[t] * cp;
            const float wt = wx[t];
            for (ptrdiff_t k = 0; k < cp; k++) d[k] += wt * pixel[k];
        }
    }
    loss += log(product) + exponent * 0.69314718055994530942;
    // ... and through the vertical taps.
    if (back && gradient) {
        for (ptrdiff_t j = 0; j < nh; j++) {
            float *restrict g = gradient[j];
            const float wj = wh[j];
            for (ptrdiff_t i = 0; i < n; i++) g[i] += wj * back[i];
        }
    }
    return loss;
}
