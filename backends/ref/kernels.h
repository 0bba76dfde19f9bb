// Internal interface of the reference backend: the execution context the
// interpreter hands to kernels, the kernel signature (one per REF entry of
// ops.def) and small helpers shared by the kernel files.
//
// Kernels receive their operands and pre-allocated results: the interpreter
// evaluates each result type with the run's dim bindings (f32 as f64 in f64
// mode) before the call, so a kernel only fills out[i]->data. Kernels follow
// the tensors' actual dtypes, never the IR's, which is what makes one
// kernel serve both precisions.
#ifndef ITR_REF_KERNELS_H
#define ITR_REF_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/ref/ref.h"

struct itr_ref_exec {
    const struct itr_graph *graph;
    const struct itr_program *prog;
    struct itr_dim_bindings *dims;
    const struct itr_ref_options *opt;
    struct itr_tensor *const *params;   // for body graphs that read params (may be NULL)
    struct itr_diags *diags;
    const struct itr_graph *observed;   // the graph whose nodes observe sees (not scan bodies); NULL: none
    itr_ref_observer observe;
    void *observe_ctx;
};

typedef bool (*itr_ref_kernel)(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                               struct itr_tensor **out);

#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) \
    bool ref(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in, struct itr_tensor **out);
#include "ir/ops.def"
#undef OP

// Reports a run-time error at the node's location, naming the op (and its
// module scope); always returns false.
bool ref_error(struct itr_ref_exec *ex, const struct itr_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Runs graph g on tensors already in the run's precision (scan bodies),
// with ex's bindings, options and params. outs receives new tensors.
bool ref_run_graph(struct itr_ref_exec *ex, const struct itr_graph *g, struct itr_tensor *const *inputs,
                   struct itr_tensor **outs);

// The run-time dtype of an IR dtype (f32 runs as f64 in f64 mode).
static inline enum itr_dtype ref_run_dtype(const struct itr_ref_exec *ex, enum itr_dtype dt) {
    return ex->opt && ex->opt->f64 && dt == ITR_F32 ? ITR_F64 : dt;
}

// ------------------------------------------------------------ element access

static inline double ld_f(const struct itr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case ITR_F32: return ((const float *)t->data)[i];
    case ITR_F64: return ((const double *)t->data)[i];
    case ITR_I32: return ((const int32_t *)t->data)[i];
    case ITR_I64: return (double)((const int64_t *)t->data)[i];
    default: return ((const uint8_t *)t->data)[i] != 0;
    }
}

static inline int64_t ld_i(const struct itr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case ITR_I32: return ((const int32_t *)t->data)[i];
    case ITR_I64: return ((const int64_t *)t->data)[i];
    case ITR_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    default: {
        double v = ld_f(t, i);
        // Saturating truncation toward zero; NaN reads as 0 (C leaves these undefined).
        if (v != v) return 0;
        if (v >= 9223372036854775807.0) return INT64_MAX;
        if (v <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

// Float-to-integer conversion of the whole project: truncation toward zero,
// saturating at the target's range, NaN to 0.
static inline int64_t ref_f2i(double v, enum itr_dtype dt) {
    double lo = dt == ITR_I32 ? -2147483648.0 : -9223372036854775808.0;
    double hi = dt == ITR_I32 ? 2147483647.0 : 9223372036854775807.0;
    if (v != v) return 0;
    if (v <= lo) return dt == ITR_I32 ? INT32_MIN : INT64_MIN;
    if (v >= hi) return dt == ITR_I32 ? INT32_MAX : INT64_MAX;
    return (int64_t)v;
}

static inline void st_f(struct itr_tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case ITR_F32: ((float *)t->data)[i] = (float)v; break;
    case ITR_F64: ((double *)t->data)[i] = v; break;
    case ITR_I32: ((int32_t *)t->data)[i] = (int32_t)ref_f2i(v, ITR_I32); break;
    case ITR_I64: ((int64_t *)t->data)[i] = ref_f2i(v, ITR_I64); break;
    default: ((uint8_t *)t->data)[i] = v != 0; break;
    }
}

// Integers wrap modulo 2^32 or 2^64 on store (two's complement).
static inline void st_i(struct itr_tensor *t, int64_t i, int64_t v) {
    switch (t->dtype) {
    case ITR_F32: ((float *)t->data)[i] = (float)v; break;
    case ITR_F64: ((double *)t->data)[i] = (double)v; break;
    case ITR_I32: ((int32_t *)t->data)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
    case ITR_I64: ((int64_t *)t->data)[i] = v; break;
    default: ((uint8_t *)t->data)[i] = v != 0; break;
    }
}

// Copies one element between tensors of the same dtype.
static inline void cp_elem(struct itr_tensor *dst, int64_t di, const struct itr_tensor *src, int64_t si) {
    switch (itr_dtype_size(dst->dtype)) {
    case 8: ((uint64_t *)dst->data)[di] = ((const uint64_t *)src->data)[si]; break;
    case 4: ((uint32_t *)dst->data)[di] = ((const uint32_t *)src->data)[si]; break;
    default: ((uint8_t *)dst->data)[di] = ((const uint8_t *)src->data)[si]; break;
    }
}

// Copies element si of src into dst[di], converting the dtype if needed.
static inline void cvt_elem(struct itr_tensor *dst, int64_t di, const struct itr_tensor *src, int64_t si) {
    if (dst->dtype == src->dtype) cp_elem(dst, di, src, si);
    else if (itr_dtype_is_float(src->dtype)) st_f(dst, di, ld_f(src, si));
    else st_i(dst, di, ld_i(src, si));
}

// ------------------------------------------------------------ strided iteration

// Row-major strides (in elements) of a shape.
static inline void ref_strides(int rank, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
}

#define REF_MAX_ITER_OPS 4

// Walks a shape in row-major order keeping one offset per operand, each with
// its own strides (0 for broadcast or reduced dims, negative for reversed).
struct nd_iter {
    int rank, n_ops;
    int64_t shape[ITR_MAX_RANK], idx[ITR_MAX_RANK];
    int64_t stride[REF_MAX_ITER_OPS][ITR_MAX_RANK];
    int64_t off[REF_MAX_ITER_OPS];
};

static inline void nd_init(struct nd_iter *it, int rank, const int64_t *shape, int n_ops) {
    memset(it, 0, sizeof *it);
    it->rank = rank;
    it->n_ops = n_ops;
    for (int i = 0; i < rank; i++) it->shape[i] = shape[i];
}

static inline void nd_next(struct nd_iter *it) {
    for (int d = it->rank - 1; d >= 0; d--) {
        it->idx[d]++;
        for (int k = 0; k < it->n_ops; k++) it->off[k] += it->stride[k][d];
        if (it->idx[d] < it->shape[d]) return;
        for (int k = 0; k < it->n_ops; k++) it->off[k] -= it->stride[k][d] * it->shape[d];
        it->idx[d] = 0;
    }
}

// Merges adjacent dims that every operand walks as one (stride[d-1] ==
// stride[d] * shape[d] for all operands), and drops size-1 dims, so the
// innermost dim is as long as possible. Call after setting the strides and
// before iterating; the visiting order is unchanged.
static inline void nd_coalesce(struct nd_iter *it) {
    int r = 0;
    for (int d = 0; d < it->rank; d++) {
        if (it->shape[d] == 1 && it->rank > 1) continue;
        bool merge = r > 0;
        for (int k = 0; merge && k < it->n_ops; k++)
            merge = it->stride[k][r - 1] == it->stride[k][d] * it->shape[d];
        if (merge) {
            it->shape[r - 1] *= it->shape[d];
            for (int k = 0; k < it->n_ops; k++) it->stride[k][r - 1] = it->stride[k][d];
            continue;
        }
        it->shape[r] = it->shape[d];
        for (int k = 0; k < it->n_ops; k++) it->stride[k][r] = it->stride[k][d];
        r++;
    }
    if (r == 0) {   // all dims had size 1
        it->shape[0] = 1;
        for (int k = 0; k < it->n_ops; k++) it->stride[k][0] = 0;
        r = 1;
    }
    it->rank = r;
}

// Row-wise iteration of a coalesced iterator: nd_rows_init turns it into an
// iterator over all dims but the innermost and returns the row length;
// inner[k] is operand k's innermost stride. Each nd_next then moves to the
// next row. A rank-0 shape is one row of one element.
static inline int64_t nd_rows_init(struct nd_iter *it, int64_t *inner) {
    if (it->rank == 0) {
        for (int k = 0; k < it->n_ops; k++) inner[k] = 0;
        return 1;
    }
    int last = it->rank - 1;
    for (int k = 0; k < it->n_ops; k++) inner[k] = it->stride[k][last];
    int64_t len = it->shape[last];
    it->rank = last;
    return len;
}

// Strides that read tensor t broadcast (numpy, right-aligned) to a shape of
// rank `rank`; false if t does not broadcast to it.
static inline bool bcast_strides(const struct itr_tensor *t, int rank, const int64_t *shape, int64_t *strides) {
    int64_t own[ITR_MAX_RANK];
    if (t->rank > rank) return false;
    ref_strides(t->rank, t->shape, own);
    for (int i = 0; i < rank; i++) {
        int k = i - (rank - t->rank);
        if (k < 0) { strides[i] = 0; continue; }
        if (t->shape[k] == shape[i]) strides[i] = t->shape[k] == 1 ? 0 : own[k];
        else if (t->shape[k] == 1) strides[i] = 0;
        else return false;
    }
    return true;
}

// Normalises an attribute axis against a run-time rank (the shape rule
// already validated it against the same rank).
static inline int ref_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

// Shapes as text for messages.
struct ref_shape_str { char s[160]; };
static inline struct ref_shape_str ref_shape_str(const struct itr_tensor *t) {
    struct ref_shape_str r;
    itr_shape_format(t->rank, t->shape, r.s, sizeof r.s);
    return r;
}

#endif
