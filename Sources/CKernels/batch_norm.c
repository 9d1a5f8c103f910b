#include "ckernels.h"
#include "multiversion.h"

// One (n, c) plane of BatchNormalization at a time; the callers run planes in parallel and add each
// channel's planes in a fixed order. Sums run in 16 double lanes: still double precision, but
// vectorised (one running sum is a serial chain of additions the compiler may not reorder).
// Elementwise formulas are evaluated as written, without fusing a·b + c into one rounding, so
// results do not depend on which instruction-set clone runs.
#pragma STDC FP_CONTRACT OFF

MULTIVERSION
double ck_sum_f64(const float *x, ptrdiff_t n) {
    double lane[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) lane[k] += (double)x[i + k];
    }
    double total = 0;
    for (int k = 0; k < 16; k++) total += lane[k];
    for (; i < n; i++) total += (double)x[i];
    return total;
}

MULTIVERSION
double ck_squared_deviations_f64(const float *x, ptrdiff_t n, double mean) {
    double lane[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            double e = (double)x[i + k] - mean;
            lane[k] += e * e;
        }
    }
    double total = 0;
    for (int k = 0; k < 16; k++) total += lane[k];
    for (; i < n; i++) {
        double e = (double)x[i] - mean;
        total += e * e;
    }
    return total;
}

MULTIVERSION
void ck_batch_norm_grad_sums(const float *x, const float *dy, ptrdiff_t n, float mean, double *sum_dy, double *sum_dy_xc) {
    double g[16] = {0}, gx[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            g[k] += (double)dy[i + k];
            gx[k] += (double)(dy[i + k] * (x[i + k] - mean));
        }
    }
    double sg = 0, sgx = 0;
    for (int k = 0; k < 16; k++) { sg += g[k]; sgx += gx[k]; }
    for (; i < n; i++) {
        sg += (double)dy[i];
        sgx += (double)(dy[i] * (x[i] - mean));
    }
    *sum_dy = sg;
    *sum_dy_xc = sgx;
}

MULTIVERSION
void ck_batch_norm_grad_input(const float *restrict x, const float *restrict dy, float *restrict dx, ptrdiff_t n,
                              double k, double mean_dy, double mean, double inv_std, double mean_dy_xhat) {
    for (ptrdiff_t i = 0; i < n; i++) {
        dx[i] = (float)(k * ((double)dy[i] - mean_dy - ((double)x[i] - mean) * inv_std * mean_dy_xhat));
    }
}
