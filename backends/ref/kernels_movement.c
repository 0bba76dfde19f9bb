// Movement kernels: reshape-like copies, transpose, expand, slice, concat, pad.
// Each re-derives what it can from the operand's actual shape and checks it
// against the pre-allocated result, so a symbolic shape that evaluates to
// something else at run time is an error, never a stray read.
#include "backends/ref/kernels.h"

bool ref_copy(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    if (itr_tensor_numel(in[0]) != itr_tensor_numel(out[0]))
        return ref_error(ex, n, "operand of shape %s has %lld elements; the result shape %s has %lld",
                         ref_shape_str(in[0]).s, (long long)itr_tensor_numel(in[0]), ref_shape_str(out[0]).s,
                         (long long)itr_tensor_numel(out[0]));
    if (in[0]->dtype != out[0]->dtype) return ref_error(ex, n, "operand and result dtypes differ");
    memcpy(out[0]->data, in[0]->data, itr_tensor_nbytes(in[0]));
    return true;
}

bool ref_transpose(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                   struct itr_tensor **out) {
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    const struct itr_attr *a = itr_node_attr(n, "perm");
    int perm[ITR_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        perm[i] = a && a->kind == ITR_ATTR_INTS ? ref_axis(a->u.ints.v[i], x->rank) : x->rank - 1 - i;
    int64_t xs[ITR_MAX_RANK];
    ref_strides(x->rank, x->shape, xs);
    struct nd_iter it;
    nd_init(&it, y->rank, y->shape, 1);
    for (int i = 0; i < y->rank; i++) {
        if (y->shape[i] != x->shape[perm[i]])
            return ref_error(ex, n, "result %s is not a permutation of %s", ref_shape_str(y).s, ref_shape_str(x).s);
        it.stride[0][i] = xs[perm[i]];
    }
    int64_t cnt = itr_tensor_numel(y);
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) cp_elem(y, i, x, it.off[0]);
    return true;
}

bool ref_expand(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    struct itr_tensor *y = out[0];
    struct nd_iter it;
    nd_init(&it, y->rank, y->shape, 1);
    if (!bcast_strides(in[0], y->rank, y->shape, it.stride[0]))
        return ref_error(ex, n, "operand of shape %s does not broadcast to %s", ref_shape_str(in[0]).s,
                         ref_shape_str(y).s);
    int64_t cnt = itr_tensor_numel(y);
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) cp_elem(y, i, in[0], it.off[0]);
    return true;
}

bool ref_slice(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
               struct itr_tensor **out) {
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    const struct itr_attr *axes = itr_node_attr(n, "axes"), *starts = itr_node_attr(n, "starts"),
                          *ends = itr_node_attr(n, "ends"), *steps = itr_node_attr(n, "steps");
    int64_t first[ITR_MAX_RANK], step[ITR_MAX_RANK], len[ITR_MAX_RANK];
    for (int i = 0; i < x->rank; i++) { first[i] = 0; step[i] = 1; len[i] = x->shape[i]; }
    for (int i = 0; i < axes->u.ints.n; i++) {
        int ax = ref_axis(axes->u.ints.v[i], x->rank);
        step[ax] = steps && steps->kind == ITR_ATTR_INTS ? steps->u.ints.v[i] : 1;
        len[ax] = itr_slice_range(x->shape[ax], starts->u.ints.v[i], ends->u.ints.v[i], step[ax], &first[ax]);
    }
    int64_t xs[ITR_MAX_RANK];
    ref_strides(x->rank, x->shape, xs);
    struct nd_iter it;
    nd_init(&it, y->rank, y->shape, 1);
    for (int i = 0; i < x->rank; i++) {
        if (len[i] != y->shape[i]) {
            char dim[96];
            itr_dim_format(ex->prog, ex->graph->values[n->outputs[0]].type.dims[i], dim, sizeof dim);
            return ref_error(ex, n, "axis %d of %s slices to %lld elements, but the result dim %s is %lld here", i,
                             ref_shape_str(x).s, (long long)len[i], dim, (long long)y->shape[i]);
        }
        it.stride[0][i] = xs[i] * step[i];
        if (len[i] > 0) it.off[0] += first[i] * xs[i];
    }
    int64_t cnt = itr_tensor_numel(y);
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) cp_elem(y, i, x, it.off[0]);
    return true;
}

bool ref_concat(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), y->rank);
    size_t es = itr_dtype_size(y->dtype);
    int64_t outer = 1, inner = 1, total = 0;
    for (int i = 0; i < ax; i++) outer *= y->shape[i];
    for (int i = ax + 1; i < y->rank; i++) inner *= y->shape[i];
    for (int k = 0; k < n->n_inputs; k++) {
        const struct itr_tensor *x = in[k];
        bool ok = x->rank == y->rank && x->dtype == y->dtype;
        for (int i = 0; ok && i < y->rank; i++)
            if (i != ax && x->shape[i] != y->shape[i]) ok = false;
        if (!ok)
            return ref_error(ex, n, "operand %d of shape %s does not fit the result %s", k, ref_shape_str(x).s,
                             ref_shape_str(y).s);
        total += x->shape[ax];
    }
    if (total != y->shape[ax])
        return ref_error(ex, n, "operands add up to %lld along axis %d, the result has %lld", (long long)total, ax,
                         (long long)y->shape[ax]);
    int64_t off = 0;   // position along the axis
    for (int k = 0; k < n->n_inputs; k++) {
        const struct itr_tensor *x = in[k];
        size_t chunk = (size_t)(x->shape[ax] * inner) * es;
        if (chunk == 0) continue;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + ((size_t)(o * y->shape[ax] + off) * (size_t)inner) * es,
                   (const char *)x->data + (size_t)o * chunk, chunk);
        off += x->shape[ax];
    }
    return true;
}

bool ref_pad(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
             struct itr_tensor **out) {
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    const struct itr_attr *pads = itr_node_attr(n, "pads");
    double value = itr_node_attr_float(n, "value");
    int64_t ys[ITR_MAX_RANK];
    ref_strides(y->rank, y->shape, ys);
    struct nd_iter it;
    nd_init(&it, x->rank, x->shape, 1);
    for (int i = 0; i < x->rank; i++) {
        int64_t before = pads->u.ints.v[2 * i], after = pads->u.ints.v[2 * i + 1];
        if (x->shape[i] + before + after != y->shape[i])
            return ref_error(ex, n, "padding %s by the pads does not give the result %s", ref_shape_str(x).s,
                             ref_shape_str(y).s);
        it.stride[0][i] = ys[i];
        it.off[0] += before * ys[i];
    }
    int64_t ny = itr_tensor_numel(y), nx = itr_tensor_numel(x);
    for (int64_t i = 0; i < ny; i++) st_f(y, i, value);
    for (int64_t i = 0; i < nx; i++, nd_next(&it)) cp_elem(y, it.off[0], x, i);
    return true;
}
