// Batched matrix product with numpy batch broadcasting.
//
// Each result row accumulates in a double row buffer in i-k-j order: the
// inner loop streams one row of b and the accumulator row contiguously,
// which vectorises and keeps the oracle's rounding error at the f64 level
// even for f32 operands. Integers accumulate in int64 (wrapping).
#include "backends/ref/kernels.h"

#include <stdlib.h>

#define MM_ROWS(T) \
    static void mm_rows_##T(const T *a, const T *b, T *c, double *acc, int64_t m, int64_t k, \
                            int64_t nn) {                                                  \
        for (int64_t i = 0; i < m; i++) {                                                  \
            for (int64_t j = 0; j < nn; j++) acc[j] = 0;                                   \
            const T *ar = a + i * k;                                                       \
            for (int64_t p = 0; p < k; p++) {                                              \
                double av = ar[p];                                                         \
                const T *br = b + p * nn;                                                  \
                for (int64_t j = 0; j < nn; j++) acc[j] += av * br[j];                     \
            }                                                                              \
            T *cr = c + i * nn;                                                            \
            for (int64_t j = 0; j < nn; j++) cr[j] = (T)acc[j];                            \
        }                                                                                  \
    }
MM_ROWS(float)
MM_ROWS(double)

static void mm_rows_int(const struct itr_tensor *A, int64_t ao, const struct itr_tensor *B, int64_t bo,
                        struct itr_tensor *C, int64_t co, int64_t *acc, int64_t m, int64_t k, int64_t nn) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < nn; j++) acc[j] = 0;
        for (int64_t p = 0; p < k; p++) {
            uint64_t av = (uint64_t)ld_i(A, ao + i * k + p);
            for (int64_t j = 0; j < nn; j++)
                acc[j] = (int64_t)((uint64_t)acc[j] + av * (uint64_t)ld_i(B, bo + p * nn + j));
        }
        for (int64_t j = 0; j < nn; j++) st_i(C, co + i * nn + j, acc[j]);
    }
}

// Any other dtype combination (not produced by the interpreter itself, but
// possible through itr_ref_run_node): element-wise loads in double.
static void mm_rows_mixed(const struct itr_tensor *A, int64_t ao, const struct itr_tensor *B, int64_t bo,
                          struct itr_tensor *C, int64_t co, double *acc, int64_t m, int64_t k, int64_t nn) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < nn; j++) acc[j] = 0;
        for (int64_t p = 0; p < k; p++) {
            double av = ld_f(A, ao + i * k + p);
            for (int64_t j = 0; j < nn; j++) acc[j] += av * ld_f(B, bo + p * nn + j);
        }
        for (int64_t j = 0; j < nn; j++) st_f(C, co + i * nn + j, acc[j]);
    }
}

bool ref_matmul(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    const struct itr_tensor *a = in[0], *b = in[1];
    struct itr_tensor *c = out[0];
    int64_t m = a->shape[a->rank - 2], k = a->shape[a->rank - 1], nn = b->shape[b->rank - 1];
    if (b->shape[b->rank - 2] != k || c->shape[c->rank - 2] != m || c->shape[c->rank - 1] != nn || a->dtype != b->dtype)
        return ref_error(ex, n, "operands %s and %s do not multiply into %s", ref_shape_str(a).s, ref_shape_str(b).s,
                         ref_shape_str(c).s);

    // Batch dims: iterate the result's batch shape with broadcast strides
    // counted in whole matrices.
    struct itr_tensor ba = *a, bb = *b;
    ba.rank -= 2;
    bb.rank -= 2;
    int brank = c->rank - 2;
    struct nd_iter it;
    nd_init(&it, brank, c->shape, 2);
    if (!bcast_strides(&ba, brank, c->shape, it.stride[0]) || !bcast_strides(&bb, brank, c->shape, it.stride[1]))
        return ref_error(ex, n, "batch dims of %s and %s do not broadcast to %s", ref_shape_str(a).s,
                         ref_shape_str(b).s, ref_shape_str(c).s);
    int64_t nbatch = 1;
    for (int i = 0; i < brank; i++) nbatch *= c->shape[i];
    if (nbatch == 0 || m == 0 || nn == 0) return true;

    void *acc = malloc((size_t)nn * 8);
    if (!acc) return ref_error(ex, n, "out of memory");
    for (int64_t bi = 0; bi < nbatch; bi++, nd_next(&it)) {
        int64_t ao = it.off[0] * m * k, bo = it.off[1] * k * nn, co = bi * m * nn;
        if (a->dtype == ITR_F32 && c->dtype == ITR_F32)
            mm_rows_float((const float *)a->data + ao, (const float *)b->data + bo, (float *)c->data + co, acc, m, k, nn);
        else if (a->dtype == ITR_F64 && c->dtype == ITR_F64)
            mm_rows_double((const double *)a->data + ao, (const double *)b->data + bo, (double *)c->data + co, acc, m,
                           k, nn);
        else if (itr_dtype_is_float(a->dtype))
            mm_rows_mixed(a, ao, b, bo, c, co, acc, m, k, nn);
        else
            mm_rows_int(a, ao, b, bo, c, co, acc, m, k, nn);
    }
    free(acc);
    return true;
}
