// Gradient rules: indexing and sorting (the GRAD column of ir/ops.def; the
// scan rule is in grad_scan.c). docs/autodiff.md, "Gradients of indexing,
// sorting and scan", states the rules and the subgradients chosen.
//
// Each gather-like op has a scatter-like op as its exact adjoint in the op
// table, so these rules only wire one node each: no rule here needs a mask
// or a loop, and repeated indices accumulate because the scatters add.
#include "compiler/autodiff.h"

// Only float values carry adjoints; an integer operand of a numeric op (a
// gather from an i64 table, a sort of lengths) gets none.
static bool is_float_value(struct itr_grad_ctx *c, int32_t v) {
    return itr_dtype_is_float(gb_type(c, v)->dtype);
}

static struct itr_attr *axis_attrs(struct itr_grad_ctx *c, enum itr_op op, int64_t axis) {
    struct itr_attr *a = gb_attrs(c, op);
    gb_set_int(a, op, "axis", axis);
    return a;
}

// scatter_add_along_axis(zeros of `like`'s type, idx, upd, axis): the adjoint
// of any read through take_along_axis-style indices, shared by
// take_along_axis, sort and topk.
static int32_t scatter_into_zeros(struct itr_grad_ctx *c, int32_t like, int32_t idx, int32_t upd, int64_t axis) {
    struct itr_type t = *gb_type(c, like);   // a copy: adding nodes may move the value table
    int32_t z = gb_zeros(c, &t);
    if (z < 0) return -1;
    int32_t in[3] = { z, idx, upd };
    return gb_node(c, ITR_OP_SCATTER_ADD_ALONG, in, 3, axis_attrs(c, ITR_OP_SCATTER_ADD_ALONG, axis));
}

// gather(x, idx, axis): every read of x[..., i, ...] sends its adjoint back to
// row i, so dx = scatter_add(zeros, idx, dy) (an embedding's gradient).
bool grad_gather(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = dx[1] = -1;
    if (dy[0] < 0 || !is_float_value(c, n->inputs[0])) return true;
    struct itr_type t = *gb_type(c, n->inputs[0]);
    int32_t z = gb_zeros(c, &t);
    if (z < 0) return false;
    int32_t in[3] = { z, n->inputs[1], dy[0] };
    dx[0] = gb_node(c, ITR_OP_SCATTER_ADD, in, 3, axis_attrs(c, ITR_OP_SCATTER_ADD, itr_node_attr_int(n, "axis")));
    return dx[0] >= 0;
}

// scatter_add(base, idx, upd): the result is base plus a sum, so base gets dy
// unchanged and each update slice gets dy at the row it was added to.
bool grad_scatter_add(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = dx[1] = dx[2] = -1;
    if (dy[0] < 0 || !is_float_value(c, n->inputs[0])) return true;
    dx[0] = dy[0];
    if (!gb_needs(c, 2)) return true;
    int32_t in[2] = { dy[0], n->inputs[1] };
    dx[2] = gb_node(c, ITR_OP_GATHER, in, 2, axis_attrs(c, ITR_OP_GATHER, itr_node_attr_int(n, "axis")));
    return dx[2] >= 0;
}

// take_along_axis(x, idx, axis): the scatter's own broadcasting does the
// rest, since a size-1 dim of x that the index broadcast over collects the
// adjoints of the whole span (docs/ops.md, Indexing).
bool grad_take_along_axis(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = dx[1] = -1;
    if (dy[0] < 0 || !is_float_value(c, n->inputs[0])) return true;
    dx[0] = scatter_into_zeros(c, n->inputs[0], n->inputs[1], dy[0], itr_node_attr_int(n, "axis"));
    return dx[0] >= 0;
}

// scatter_add_along_axis(base, idx, upd, axis): base gets dy; each update
// element gets dy at the position it was added to. The iteration space is
// idx and upd broadcast together (and off the axis with base), so idx is
// first expanded over it: take_along_axis then reads one adjoint per point
// of that space, and the points an update was broadcast over are summed
// back to the update's own shape.
bool grad_scatter_add_along_axis(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = dx[1] = dx[2] = -1;
    if (dy[0] < 0 || !is_float_value(c, n->inputs[0])) return true;
    dx[0] = dy[0];
    if (!gb_needs(c, 2)) return true;
    struct itr_program *p = c->g->prog;
    int64_t axis = itr_node_attr_int(n, "axis");
    struct itr_type it = *gb_type(c, n->inputs[1]), ut = *gb_type(c, n->inputs[2]), bt = *gb_type(c, n->inputs[0]);
    int ax;
    if (!itr_axis_normalize(axis, bt.rank, &ax)) {
        itr_diag_error(c->d, n->loc, "internal error: scatter_add_along_axis axis %lld out of range in its gradient",
                       (long long)axis);
        return false;
    }
    itr_dim one = itr_dim_const(p, 1);
    struct itr_type span = it;   // idx's dtype over the iteration space
    for (int i = 0; i < it.rank; i++) {
        if (span.dims[i] == one) span.dims[i] = ut.dims[i];
        if (i != ax && span.dims[i] == one) span.dims[i] = bt.dims[i];
    }
    int32_t idx = n->inputs[1];
    if (!itr_type_equal(&span, &it) && (idx = gb_expand(c, idx, &span)) < 0) return false;
    int32_t in[2] = { dy[0], idx };
    int32_t g = gb_node(c, ITR_OP_TAKE_ALONG, in, 2, axis_attrs(c, ITR_OP_TAKE_ALONG, axis));
    if (g < 0) return false;
    dx[2] = itr_type_equal(gb_type(c, g), &ut) ? g : gb_sum_to(c, g, &ut);
    return dx[2] >= 0;
}

// sort and topk: a permutation (or a selection) of x along the axis, so the
// adjoint of output slot j goes back to the element that landed there, the
// index result saying which. Ties are no special case: the stable order has
// already put each tied element in exactly one slot, and that slot's
// adjoint is the subgradient it gets. The indices carry no gradient.
static bool grad_permutation(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = -1;
    if (dy[0] < 0 || !is_float_value(c, n->inputs[0])) return true;
    dx[0] = scatter_into_zeros(c, n->inputs[0], n->outputs[1], dy[0], itr_node_attr_int(n, "axis"));
    return dx[0] >= 0;
}

bool grad_sort(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_permutation(c, n, dy, dx);
}

bool grad_topk(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_permutation(c, n, dy, dx);
}
