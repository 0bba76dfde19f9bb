// itr_gemm_f32 / itr_gemm_f64 over OpenBLAS's cblas_sgemm / cblas_dgemm.
//
// Why OpenBLAS: docs/performance.md, "GEMM" (measured against BLIS, oneDNN
// and a hand-written packed AVX2 kernel on this project's sizes). Our
// row-major layout, transpose flags and strides are cblas's RowMajor
// convention, so every call maps onto one library call with no copies.
//
// The environment is left as the machine has it: OPENBLAS_CORETYPE and
// OPENBLAS_L2_SIZE choose OpenBLAS's kernels, and backends.md §4 says tests
// and CI must not change them.
#include "backends/cpu/gemm.h"

#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

// OpenBLAS takes ints; a dimension past INT_MAX would wrap silently.
static int to_int(int64_t v, const char *what) {
    if (v < 0 || v > INT_MAX) {
        fprintf(stderr, "itr_gemm: %s = %lld does not fit the BLAS's int\n", what, (long long)v);
        abort();
    }
    return (int)v;
}

// openblas_set_num_threads takes a lock and touches the thread pool, so
// it runs only when the count changes; the count persists in the library
// between calls. Callers are single-threaded (gemm.h), so a plain static is
// enough.
static void use_threads(int threads) {
    static int current = -1;
    if (threads < 1) threads = 1;
    if (threads != current) {
        openblas_set_num_threads(threads);
        current = threads;
    }
}

void itr_gemm_one_thread_each(void) { use_threads(1); }

// m = 0, n = 0 or k = 0 never reach the library: cblas rejects a leading
// dimension of 0 (lda >= max(1, k)) with a message and no result, and an
// empty product is just C = beta * C.
#define GEMM_DEF(T, SUF, CBLAS)                                                                  \
    void itr_gemm_##SUF(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T *a, \
                        int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc,         \
                        int threads) {                                                           \
        if (m <= 0 || n <= 0) return;                                                            \
        if (k <= 0) {                                                                            \
            for (int64_t i = 0; i < m; i++)                                                      \
                for (int64_t j = 0; j < n; j++)                                                  \
                    c[i * ldc + j] = beta == 0 ? (T)0 : beta * c[i * ldc + j];                   \
            return;                                                                              \
        }                                                                                        \
        use_threads(threads);                                                                    \
        CBLAS(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,                                \
              trans_b ? CblasTrans : CblasNoTrans, to_int(m, "m"), to_int(n, "n"),               \
              to_int(k, "k"), (T)1, a, to_int(lda, "lda"), b, to_int(ldb, "ldb"), beta, c,       \
              to_int(ldc, "ldc"));                                                               \
    }
GEMM_DEF(float, f32, cblas_sgemm)
GEMM_DEF(double, f64, cblas_dgemm)

const char *itr_gemm_impl_name(void) { return "openblas"; }
