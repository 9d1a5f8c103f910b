#include "ckernels.h"
#include "vector_helpers.h"

// The fused segmentation loss works channels-last: a low-resolution row is w pixels × cp floats, the
// c classes of one pixel contiguous and padded to cp, so every pass below runs along the classes in
// whole vectors, with no gather and no scatter (bilinear taps move whole pixels).

MULTIVERSION
void ck_planes_to_channels_last(const float *src, ptrdiff_t plane, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp,
                                float *dst) {
    for (ptrdiff_t i0 = 0; i0 < w; i0 += 16) {
        ptrdiff_t i1 = i0 + 16 < w ? i0 + 16 : w;
        for (ptrdiff_t k = 0; k < c; k++) {
            const float *s = src + k * plane;
            for (ptrdiff_t i = i0; i < i1; i++) dst[i * cp + k] = s[i];
        }
        for (ptrdiff_t i = i0; i < i1; i++)
            for (ptrdiff_t k = c; k < cp; k++) dst[i * cp + k] = 0;
    }
}

MULTIVERSION
void ck_channels_last_to_planes(const float *src, ptrdiff_t c, ptrdiff_t w, ptrdiff_t cp, float *dst, ptrdiff_t plane,
                                int accumulate) {
    for (ptrdiff_t i0 = 0; i0 < w; i0 += 16) {
        ptrdiff_t i1 = i0 + 16 < w ? i0 + 16 : w;
        for (ptrdiff_t k = 0; k < c; k++) {
            float *d = dst + k * plane;
            if (accumulate) {
                for (ptrdiff_t i = i0; i < i1; i++) d[i] += src[i * cp + k];
            } else {
                for (ptrdiff_t i = i0; i < i1; i++) d[i] = src[i * cp + k];
            }
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
    double loss = 0;
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
        loss -= (double)logit - (double)shift - log(total);
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
