#include "ckernels.h"
#include "vector_helpers.h"

MULTIVERSION
void ck_dropout_keep(const uint32_t *restrict words, uint32_t threshold, bool *restrict mask, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) mask[i] = (words[i] >> 8) >= threshold;
}

MULTIVERSION
void ck_dropout_forward(const float *restrict x, const bool *restrict mask, float scale, float *restrict y, ptrdiff_t n) {
    // A dropped element is x·0, not 0: NaN and inf stay NaN, as PyTorch's x·mask·scale.
    for (ptrdiff_t i = 0; i < n; i++) y[i] = x[i] * (mask[i] ? scale : 0.0f);
}

MULTIVERSION
void ck_dropout_backward(const float *restrict dy, const bool *restrict mask, float scale, float *restrict dx, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}
