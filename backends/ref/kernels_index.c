// Indexing kernels: gather (numpy take), scatter_add (its adjoint),
// take_along_axis and scatter_add_along_axis. Every index is range-checked:
// indices must lie in [0, size) of the indexed axis (negative indices are
// errors, not counted from the end), reported with the op's location.
#include "backends/ref/kernels.h"

static bool bad_index(struct itr_ref_exec *ex, const struct itr_node *n, int64_t id, int ax, int64_t size,
                      const struct itr_tensor *idx, int64_t pos) {
    int64_t at[ITR_MAX_RANK];
    for (int i = idx->rank - 1; i >= 0; i--) {
        at[i] = idx->shape[i] ? pos % idx->shape[i] : 0;
        pos = idx->shape[i] ? pos / idx->shape[i] : 0;
    }
    char where[160];
    itr_shape_format(idx->rank, at, where, sizeof where);
    return ref_error(ex, n, "index %lld is out of range for axis %d of size %lld (index element %s)", (long long)id,
                     ax, (long long)size, where);
}

static void add_elem(struct itr_tensor *dst, int64_t di, const struct itr_tensor *src, int64_t si) {
    if (itr_dtype_is_float(dst->dtype)) st_f(dst, di, ld_f(dst, di) + ld_f(src, si));
    else st_i(dst, di, (int64_t)((uint64_t)ld_i(dst, di) + (uint64_t)ld_i(src, si)));
}

// The layout shared by gather and scatter_add: x = [pre, n, post], idx = I,
// y = [pre, I, post] with pre/post flattened to outer/inner.
static void take_layout(const struct itr_tensor *x, int ax, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < ax; i++) *outer *= x->shape[i];
    for (int i = ax + 1; i < x->rank; i++) *inner *= x->shape[i];
}

static bool take_shape_ok(const struct itr_tensor *x, const struct itr_tensor *idx, int ax, const struct itr_tensor *y) {
    if (y->rank != x->rank - 1 + idx->rank) return false;
    int k = 0;
    for (int i = 0; i < ax; i++) if (y->shape[k++] != x->shape[i]) return false;
    for (int i = 0; i < idx->rank; i++) if (y->shape[k++] != idx->shape[i]) return false;
    for (int i = ax + 1; i < x->rank; i++) if (y->shape[k++] != x->shape[i]) return false;
    return true;
}

bool ref_gather(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    const struct itr_tensor *x = in[0], *idx = in[1];
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), x->rank);
    if (!take_shape_ok(x, idx, ax, y) || x->dtype != y->dtype)
        return ref_error(ex, n, "operand %s and index %s do not give the result %s", ref_shape_str(x).s,
                         ref_shape_str(idx).s, ref_shape_str(y).s);
    int64_t outer, inner, len = x->shape[ax], ni = itr_tensor_numel(idx);
    take_layout(x, ax, &outer, &inner);
    size_t es = itr_dtype_size(x->dtype);
    for (int64_t j = 0; j < ni; j++) {
        int64_t id = ld_i(idx, j);
        if (id < 0 || id >= len) return bad_index(ex, n, id, ax, len, idx, j);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t id = ld_i(idx, j);
            memcpy((char *)y->data + (size_t)((o * ni + j) * inner) * es,
                   (const char *)x->data + (size_t)((o * len + id) * inner) * es, (size_t)inner * es);
        }
    return true;
}

bool ref_scatter_add(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                     struct itr_tensor **out) {
    const struct itr_tensor *base = in[0], *idx = in[1], *upd = in[2];
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), base->rank);
    if (!take_shape_ok(base, idx, ax, upd) || itr_tensor_numel(y) != itr_tensor_numel(base) || y->dtype != base->dtype)
        return ref_error(ex, n, "base %s, index %s and updates %s do not fit together", ref_shape_str(base).s,
                         ref_shape_str(idx).s, ref_shape_str(upd).s);
    memcpy(y->data, base->data, itr_tensor_nbytes(base));
    int64_t outer, inner, len = base->shape[ax], ni = itr_tensor_numel(idx);
    take_layout(base, ax, &outer, &inner);
    for (int64_t j = 0; j < ni; j++) {
        int64_t id = ld_i(idx, j);
        if (id < 0 || id >= len) return bad_index(ex, n, id, ax, len, idx, j);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t id = ld_i(idx, j);
            for (int64_t t = 0; t < inner; t++) add_elem(y, (o * len + id) * inner + t, upd, (o * ni + j) * inner + t);
        }
    return true;
}

// Stride of tensor t along dim i when broadcast to size `to` (0 for a size-1
// dim); false if it does not broadcast.
static bool dim_stride(const struct itr_tensor *t, const int64_t *strides, int i, int64_t to, int64_t *s) {
    if (t->shape[i] == to) *s = t->shape[i] == 1 ? 0 : strides[i];
    else if (t->shape[i] == 1) *s = 0;
    else return false;
    return true;
}

bool ref_take_along(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                    struct itr_tensor **out) {
    const struct itr_tensor *x = in[0], *idx = in[1];
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), x->rank);
    int64_t xs[ITR_MAX_RANK], is[ITR_MAX_RANK];
    ref_strides(x->rank, x->shape, xs);
    ref_strides(idx->rank, idx->shape, is);
    struct nd_iter it;
    nd_init(&it, y->rank, y->shape, 2);   // 0: idx, 1: x without the axis
    bool ok = y->rank == x->rank && idx->rank == x->rank && y->dtype == x->dtype;
    for (int i = 0; ok && i < y->rank; i++) {
        ok = dim_stride(idx, is, i, y->shape[i], &it.stride[0][i]);
        if (i == ax) { it.stride[1][i] = 0; ok = ok && idx->shape[i] == y->shape[i]; }
        else ok = ok && dim_stride(x, xs, i, y->shape[i], &it.stride[1][i]);
    }
    if (!ok)
        return ref_error(ex, n, "operand %s and index %s do not give the result %s", ref_shape_str(x).s,
                         ref_shape_str(idx).s, ref_shape_str(y).s);
    int64_t cnt = itr_tensor_numel(y), len = x->shape[ax];
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) {
        int64_t id = ld_i(idx, it.off[0]);
        if (id < 0 || id >= len) return bad_index(ex, n, id, ax, len, idx, it.off[0]);
        cp_elem(y, i, x, it.off[1] + id * xs[ax]);
    }
    return true;
}

bool ref_scatter_add_along(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                           struct itr_tensor **out) {
    const struct itr_tensor *base = in[0], *idx = in[1], *upd = in[2];
    struct itr_tensor *y = out[0];
    int r = base->rank, ax = ref_axis(itr_node_attr_int(n, "axis"), r);
    bool ok = idx->rank == r && upd->rank == r && itr_tensor_numel(y) == itr_tensor_numel(base) &&
              y->dtype == base->dtype;
    // The iteration space: index and updates broadcast together, and off the
    // axis with the base too (a size-1 base dim collects the whole span).
    int64_t space[ITR_MAX_RANK];
    for (int i = 0; ok && i < r; i++) {
        int64_t s = 1;
        const int64_t dims[3] = { idx->shape[i], upd->shape[i], i == ax ? 1 : base->shape[i] };
        for (int k = 0; k < 3; k++) {
            if (dims[k] == 1) continue;
            if (s != 1 && s != dims[k]) ok = false;
            s = dims[k];
        }
        space[i] = s;
    }
    if (!ok)
        return ref_error(ex, n, "base %s, index %s and updates %s do not fit together", ref_shape_str(base).s,
                         ref_shape_str(idx).s, ref_shape_str(upd).s);
    memcpy(y->data, base->data, itr_tensor_nbytes(base));
    int64_t bs[ITR_MAX_RANK], is[ITR_MAX_RANK], us[ITR_MAX_RANK];
    ref_strides(r, base->shape, bs);
    ref_strides(r, idx->shape, is);
    ref_strides(r, upd->shape, us);
    struct nd_iter it;
    nd_init(&it, r, space, 3);   // 0: idx, 1: updates, 2: base without the axis
    for (int i = 0; i < r; i++) {
        dim_stride(idx, is, i, space[i], &it.stride[0][i]);
        dim_stride(upd, us, i, space[i], &it.stride[1][i]);
        if (i == ax) it.stride[2][i] = 0;
        else it.stride[2][i] = base->shape[i] == 1 ? 0 : bs[i];
    }
    int64_t cnt = 1, len = base->shape[ax];
    for (int i = 0; i < r; i++) cnt *= space[i];
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) {
        int64_t id = ld_i(idx, it.off[0]);
        if (id < 0 || id >= len) return bad_index(ex, n, id, ax, len, idx, it.off[0]);
        add_elem(y, it.off[2] + id * bs[ax], upd, it.off[1]);
    }
    return true;
}
