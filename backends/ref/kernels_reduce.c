// Reductions (sum, mean, max, min over an axis set) and argmax/argmin.
// Each output element accumulates its inputs in row-major order, so results
// are deterministic; float sums accumulate in double.
#include "backends/ref/kernels.h"

#include <stdlib.h>

// The reduced-axis mask from the 'axes' attribute: absent or empty = all.
static void reduce_mask(const struct itr_node *n, int rank, bool *mask) {
    const struct itr_attr *a = itr_node_attr(n, "axes");
    for (int i = 0; i < rank; i++) mask[i] = !a || a->kind != ITR_ATTR_INTS || a->u.ints.n == 0;
    if (a && a->kind == ITR_ATTR_INTS)
        for (int i = 0; i < a->u.ints.n; i++) mask[ref_axis(a->u.ints.v[i], rank)] = true;
}

bool ref_reduce(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    bool mask[ITR_MAX_RANK];
    reduce_mask(n, x->rank, mask);

    // Iterate the input; the output offset ignores reduced axes.
    int64_t kept_shape[ITR_MAX_RANK], kept_strides[ITR_MAX_RANK];
    int kr = 0;
    int64_t count = 1;
    for (int i = 0; i < x->rank; i++) {
        if (mask[i]) count *= x->shape[i];
        else kept_shape[kr++] = x->shape[i];
    }
    ref_strides(kr, kept_shape, kept_strides);
    int64_t ny = itr_tensor_numel(y), nx = itr_tensor_numel(x), kn = 1;
    for (int i = 0; i < kr; i++) kn *= kept_shape[i];
    if (kn != ny) return ref_error(ex, n, "result %s does not match the reduced operand %s", ref_shape_str(y).s,
                                   ref_shape_str(x).s);
    struct nd_iter it;
    nd_init(&it, x->rank, x->shape, 1);
    for (int i = 0, k = 0; i < x->rank; i++) it.stride[0][i] = mask[i] ? 0 : kept_strides[k++];

    bool is_max = n->op == ITR_OP_MAX, is_min = n->op == ITR_OP_MIN;
    if ((is_max || is_min) && count == 0 && ny > 0)
        return ref_error(ex, n, "%s over an empty axis of %s has no value", itr_op_name(n->op), ref_shape_str(x).s);

    if (itr_dtype_is_float(x->dtype)) {
        double *acc = malloc((size_t)(ny ? ny : 1) * sizeof *acc);
        if (!acc) return ref_error(ex, n, "out of memory");
        for (int64_t j = 0; j < ny; j++) acc[j] = is_max ? -INFINITY : is_min ? INFINITY : 0.0;
        for (int64_t i = 0; i < nx; i++, nd_next(&it)) {
            double v = ld_f(x, i), *a = &acc[it.off[0]];
            if (is_max) { if (v > *a || v != v) *a = *a != *a ? *a : v; }
            else if (is_min) { if (v < *a || v != v) *a = *a != *a ? *a : v; }
            else *a += v;
        }
        for (int64_t j = 0; j < ny; j++)
            st_f(y, j, n->op == ITR_OP_MEAN ? acc[j] / (double)count : acc[j]);
        free(acc);
    } else {
        int64_t *acc = malloc((size_t)(ny ? ny : 1) * sizeof *acc);
        if (!acc) return ref_error(ex, n, "out of memory");
        for (int64_t j = 0; j < ny; j++) acc[j] = is_max ? INT64_MIN : is_min ? INT64_MAX : 0;
        for (int64_t i = 0; i < nx; i++, nd_next(&it)) {
            int64_t v = ld_i(x, i), *a = &acc[it.off[0]];
            if (is_max) { if (v > *a) *a = v; }
            else if (is_min) { if (v < *a) *a = v; }
            else *a = (int64_t)((uint64_t)*a + (uint64_t)v);
        }
        for (int64_t j = 0; j < ny; j++) st_i(y, j, acc[j]);
        free(acc);
    }
    return true;
}

bool ref_argreduce(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                   struct itr_tensor **out) {
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), x->rank);
    int64_t outer = 1, inner = 1, len = x->shape[ax];
    for (int i = 0; i < ax; i++) outer *= x->shape[i];
    for (int i = ax + 1; i < x->rank; i++) inner *= x->shape[i];
    if (outer * inner != itr_tensor_numel(y))
        return ref_error(ex, n, "result %s does not match the operand %s", ref_shape_str(y).s, ref_shape_str(x).s);
    if (len == 0 && outer * inner > 0)
        return ref_error(ex, n, "%s over the empty axis %d of %s", itr_op_name(n->op), ax, ref_shape_str(x).s);
    bool want_max = n->op == ITR_OP_ARGMAX, is_float = itr_dtype_is_float(x->dtype);
    int64_t *py = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i, best = 0;
            if (is_float) {
                // The first NaN wins, as in numpy; otherwise the first extremum.
                double bv = ld_f(x, base);
                for (int64_t k = 1; k < len && bv == bv; k++) {
                    double v = ld_f(x, base + k * inner);
                    if (v != v || (want_max ? v > bv : v < bv)) { bv = v; best = k; }
                }
            } else {
                int64_t bv = ld_i(x, base);
                for (int64_t k = 1; k < len; k++) {
                    int64_t v = ld_i(x, base + k * inner);
                    if (want_max ? v > bv : v < bv) { bv = v; best = k; }
                }
            }
            py[o * inner + i] = best;
        }
    return true;
}
