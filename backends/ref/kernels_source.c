// Source kernels: constant, full, iota and the Philox random ops (the
// stream mapping is ir/rng.h's; element i is the row-major result index).
#include "backends/ref/kernels.h"
#include "ir/rng.h"

bool ref_constant(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                  struct itr_tensor **out) {
    (void)in;
    const struct itr_attr *a = itr_node_attr(n, "value");
    const struct itr_tensor *v = a && a->kind == ITR_ATTR_TENSOR ? a->u.tensor : NULL;
    struct itr_tensor *y = out[0];
    bool ok = v && v->rank == y->rank;
    for (int i = 0; ok && i < y->rank; i++) ok = v->shape[i] == y->shape[i];
    if (!ok) return ref_error(ex, n, "the literal tensor does not match the result %s", ref_shape_str(y).s);
    int64_t cnt = itr_tensor_numel(y);
    for (int64_t i = 0; i < cnt; i++) cvt_elem(y, i, v, i);
    return true;
}

bool ref_full(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    (void)ex;
    (void)in;
    double v = itr_node_attr_float(n, "value");
    int64_t cnt = itr_tensor_numel(out[0]);
    for (int64_t i = 0; i < cnt; i++) st_f(out[0], i, v);
    return true;
}

bool ref_iota(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    (void)ex;
    (void)in;
    struct itr_tensor *y = out[0];
    int ax = ref_axis(itr_node_attr_int(n, "axis"), y->rank);
    int64_t inner = 1, len = y->shape[ax], cnt = itr_tensor_numel(y);
    for (int i = ax + 1; i < y->rank; i++) inner *= y->shape[i];
    for (int64_t i = 0; i < cnt; i++) st_i(y, i, (i / inner) % len);
    return true;
}

bool ref_random(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    struct itr_tensor *y = out[0];
    if (itr_tensor_numel(in[0]) != 1) return ref_error(ex, n, "the seed must be a scalar, got %s", ref_shape_str(in[0]).s);
    uint64_t seed = (uint64_t)ld_i(in[0], 0);
    // The draw's precision follows the IR's dtype (rng.h), so f64 runs of an
    // f32 graph see the same numbers as f32 runs.
    struct itr_rng_fill f;
    itr_rng_fill_of_node(n, ex->graph->values[n->outputs[0]].type.dtype, seed, &f);
    itr_rng_fill_range(&f, y->data, y->dtype == ITR_F64, 0, itr_tensor_numel(y));
    return true;
}
