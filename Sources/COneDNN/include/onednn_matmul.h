// oneDNN's matmul primitive with its weights packed once (the `PackedWeights` GEMMs of the runtime).
// libdnnl is not linked: the runtime dlopens it (GEMMLibrary.swift) and hands the handle to
// odnn_bind, which looks up the few C API functions used here. The declarations of oneDNN 2.x's
// ABI this needs live in onednn_matmul.c, so building needs no libdnnl-dev.
#ifndef ONEDNN_MATMUL_H
#define ONEDNN_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/// One matmul primitive: C[m×n] = op(A)·B (+ C), row-major, op(A) m×k with leading dimension lda
/// (A stored k×m when transposed), C with ldc, B read from its packed layout; made for the OpenMP
/// thread count of the thread that created it, which is the count it runs with.
typedef struct odnn_matmul odnn_matmul;

/// Looks up the primitive API in an opened libdnnl.so.2 (oneDNN 2.x) and makes the CPU engine.
/// Returns 0 on success, else a message saying what is missing (static storage).
const char *odnn_bind(void *library);

/// The primitive for these sizes, or NULL when oneDNN offers only its reference implementation or
/// refuses the sizes (the caller then keeps sgemm).
/// With `accumulate` the product is added to C (BLAS's beta = 1), else it overwrites C.
odnn_matmul *odnn_matmul_create(int64_t m, int64_t k, int64_t n, int trans_a, int64_t lda, int64_t ldc, int accumulate);
void odnn_matmul_destroy(odnn_matmul *matmul);

/// Bytes of B in the primitive's preferred layout.
size_t odnn_matmul_packed_size(const odnn_matmul *matmul);
/// Whether two primitives want B in the same layout (so one packed copy serves both).
int odnn_matmul_same_packing(const odnn_matmul *a, const odnn_matmul *b);
/// Reorders B (k×n with row stride ldb, or, with trans_b, n×k with row stride ldb) into `packed`
/// (odnn_matmul_packed_size bytes). Returns 0 on success.
int odnn_matmul_pack(const odnn_matmul *matmul, const float *b, int64_t ldb, int trans_b, void *packed);
/// C = op(A)·B (+ C) with B packed by odnn_matmul_pack. Returns 0 on success.
int odnn_matmul_run(const odnn_matmul *matmul, const float *a, const void *packed, float *c);

#endif
