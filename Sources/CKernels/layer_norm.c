#include "ckernels.h"
#include "multiversion.h"

// LayerNorm's backward, one row at a time (the caller computes the row's statistics exactly as the
// forward does, and adds the rows' partial parameter sums in a fixed order). The row sums run in 16
// float lanes added in double: vectorised, where one running sum is a serial chain the compiler may
// not reorder. Elementwise formulas are evaluated as written, without fusing a·b + c into one
// rounding, so results do not depend on which instruction-set clone runs.
#pragma STDC FP_CONTRACT OFF

MULTIVERSION
void ck_layer_norm_grad_row(const float *restrict x, const float *restrict dy, const float *restrict w,
                            float *restrict dx, ptrdiff_t n, float mean, float inv_std, float *restrict xhat,
                            float *restrict sum_dy_xhat, float *restrict sum_dy) {
    // g = dy·w; the row's Σ g and Σ g·x̂.
    float g_lane[16] = {0}, gx_lane[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            float h = (x[i + k] - mean) * inv_std, g = dy[i + k] * w[i + k];
            xhat[i + k] = h;
            g_lane[k] += g;
            gx_lane[k] += g * h;
        }
    }
    double sg = 0, sgx = 0;
    for (int k = 0; k < 16; k++) { sg += g_lane[k]; sgx += gx_lane[k]; }
    for (; i < n; i++) {
        float h = (x[i] - mean) * inv_std, g = dy[i] * w[i];
        xhat[i] = h;
        sg += g;
        sgx += g * h;
    }
    const float mean_g = (float)(sg / (double)n), mean_gx = (float)(sgx / (double)n);
    for (i = 0; i < n; i++) {
        dx[i] = inv_std * (dy[i] * w[i] - mean_g - xhat[i] * mean_gx);
        sum_dy_xhat[i] += dy[i] * xhat[i];
        sum_dy[i] += dy[i];
    }
}
