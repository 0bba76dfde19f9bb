// Dense matrix products on the CPU (backends.md §4, "Contractions").
//
//   C = op(A) · op(B) + beta · C
//
// Row-major, with the flags and strides of cblas_?gemm(CblasRowMajor, ...):
// op(A) is m x k (A stored m x k with leading dimension lda >= k, or k x m
// with lda >= m when trans_a), op(B) is k x n (stored k x n with ldb >= n,
// or n x k with ldb >= k when trans_b), C is m x n with ldc >= n. beta 0
// overwrites C (NaN or garbage in C does not survive); k = 0 gives beta · C.
// Dimensions and leading dimensions must fit in an int (2^31 - 1): the BLAS
// behind this takes 32-bit ints, and a larger one aborts with a message.
//
// threads: how many threads the product may use (< 1 means 1). Calls must
// come from one thread at a time (the runtime calls from its main thread):
// the thread count is a setting of the library, not of the call. The one
// exception: after itr_gemm_one_thread_each() on the calling thread,
// one-thread calls may come from several threads at once until the next
// call with another count (each runs on its caller's thread; the library's
// buffers are locked).
//
// Determinism: the same call with the same thread count gives the same bits
// (tests/test_gemm.c checks it). Results are NOT independent of the thread
// count: with 1 and 2 threads OpenBLAS computes some elements with different
// kernels or blockings, and the last bits differ (both within the usual
// rounding error; measured on 150x260x300). Callers that need bit-identical
// results across machines must fix the thread count.
//
// The implementation and why: docs/performance.md, "GEMM".
#ifndef ITR_BACKENDS_CPU_GEMM_H
#define ITR_BACKENDS_CPU_GEMM_H

#include <stdbool.h>
#include <stdint.h>

void itr_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                  int threads);
void itr_gemm_f64(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const double *a,
                  int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc,
                  int threads);

// Sets the library to one thread per call (see threads above).
void itr_gemm_one_thread_each(void);

// Which implementation the calls above run: "openblas".
const char *itr_gemm_impl_name(void);

#endif
