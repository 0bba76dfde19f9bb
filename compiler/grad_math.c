// Gradient rules of the elementwise, reduction, contraction and movement ops
// (the GRAD column of ir/ops.def). docs/autodiff.md states each rule, the
// subgradient chosen at kinks and ties, and how symbolic dims are handled.
//
// Conventions: dy[0] is the adjoint of the single result (never -1 here:
// itr_vjp calls a rule only when some result has one); dx[i] must have
// exactly operand i's type, so broadcasting is undone with gb_sum_to; an
// operand whose adjoint is not needed (gb_needs) is left at -1.
#include <math.h>
#include <string.h>

#include "compiler/autodiff.h"

// Same as the shape rule's "to the end of the axis" marker (ir/op_shapes.c).
#define SLICE_TO_END ((int64_t)INT32_MAX)

static struct itr_type type_of(struct itr_grad_ctx *c, int32_t v) { return *gb_type(c, v); }

static int32_t scalar_like(struct itr_grad_ctx *c, double v, int32_t like) {
    return gb_scalar(c, v, gb_type(c, like)->dtype);
}

// A binary node with defaults (comparisons, logical ops, pow, matmul).
static int32_t cmp(struct itr_grad_ctx *c, enum itr_op op, int32_t a, int32_t b) {
    int32_t in[2] = { a, b };
    return gb_node(c, op, in, 2, NULL);
}

// For the unary rules below: dx = dy * f'(x), with f'(x) built from x or y.
static bool chain(struct itr_grad_ctx *c, const int32_t *dy, int32_t *dx, int32_t deriv) {
    dx[0] = gb_mul(c, dy[0], deriv);
    return dx[0] >= 0;
}

// ------------------------------------------------------------ unary

bool grad_neg(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    (void)n;
    dx[0] = gb_neg(c, dy[0]);
    return dx[0] >= 0;
}

// sign(0) = 0 gives the documented subgradient abs'(0) = 0.
bool grad_abs(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return chain(c, dy, dx, gb_unary(c, ITR_OP_SIGN, n->inputs[0]));
}

bool grad_exp(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return chain(c, dy, dx, n->outputs[0]);
}

bool grad_log(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    dx[0] = gb_div(c, dy[0], n->inputs[0]);
    return dx[0] >= 0;
}

// d sqrt(x) = 1 / (2 sqrt(x)): reuses the forward result.
// dy / (2 sqrt x), except that a zero adjoint stays exactly zero at x = 0:
// the norm of an all-zero (padded) row gets no adjoint, and 0 * inf would
// otherwise turn it into a NaN that spreads to every parameter upstream
// (models.md §7 item 13). Finite gradients are unchanged.
bool grad_sqrt(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t y = n->outputs[0];
    int32_t g = gb_div(c, gb_mul(c, dy[0], scalar_like(c, 0.5, y)), y);
    int32_t zero = scalar_like(c, 0.0, y);
    int32_t no_adjoint = gb_node(c, ITR_OP_EQ, (int32_t[]){ dy[0], zero }, 2, NULL);
    dx[0] = gb_where(c, no_adjoint, zero, g);
    return dx[0] >= 0;
}

// d x^(-1/2) = -x^(-3/2) / 2 = -y^3 / 2.
bool grad_rsqrt(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t y = n->outputs[0];
    int32_t y3 = gb_mul(c, gb_mul(c, y, y), y);
    return chain(c, dy, dx, gb_mul(c, y3, scalar_like(c, -0.5, y)));
}

bool grad_reciprocal(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t y = n->outputs[0];
    return chain(c, dy, dx, gb_neg(c, gb_mul(c, y, y)));
}

// x > 0 (strict) gives the documented subgradient relu'(0) = 0.
bool grad_relu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    int32_t zero = scalar_like(c, 0.0, x);
    dx[0] = gb_where(c, cmp(c, ITR_OP_GT, x, zero), dy[0], zero);
    return dx[0] >= 0;
}

// The forward takes the alpha branch at 0, so the derivative there is alpha.
bool grad_leaky_relu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    double alpha = itr_node_attr_float(n, "alpha");
    int32_t pos = cmp(c, ITR_OP_GT, x, scalar_like(c, 0.0, x));
    dx[0] = gb_where(c, pos, dy[0], gb_mul(c, dy[0], scalar_like(c, alpha, x)));
    return dx[0] >= 0;
}

// y (1 - y): the forward result is already free of overflow.
bool grad_sigmoid(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t y = n->outputs[0];
    return chain(c, dy, dx, gb_mul(c, y, gb_sub(c, scalar_like(c, 1.0, y), y)));
}

bool grad_tanh(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t y = n->outputs[0];
    return chain(c, dy, dx, gb_sub(c, scalar_like(c, 1.0, y), gb_mul(c, y, y)));
}

// Exact GELU: d/dx x Φ(x) = Φ(x) + x φ(x).
bool grad_gelu(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    int32_t e = gb_unary(c, ITR_OP_ERF, gb_mul(c, x, scalar_like(c, M_SQRT1_2, x)));
    int32_t cdf = gb_mul(c, gb_add(c, e, scalar_like(c, 1.0, x)), scalar_like(c, 0.5, x));
    int32_t x2 = gb_mul(c, x, x);
    int32_t pdf = gb_mul(c, gb_unary(c, ITR_OP_EXP, gb_mul(c, x2, scalar_like(c, -0.5, x))),
                         scalar_like(c, 1.0 / sqrt(2.0 * M_PI), x));
    return chain(c, dy, dx, gb_add(c, cdf, gb_mul(c, x, pdf)));
}

// d erf(x) = 2/sqrt(pi) e^(-x^2).
bool grad_erf(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    int32_t g = gb_unary(c, ITR_OP_EXP, gb_neg(c, gb_mul(c, x, x)));
    return chain(c, dy, dx, gb_mul(c, g, scalar_like(c, M_2_SQRTPI, x)));
}

bool grad_sin(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return chain(c, dy, dx, gb_unary(c, ITR_OP_COS, n->inputs[0]));
}

bool grad_cos(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return chain(c, dy, dx, gb_neg(c, gb_unary(c, ITR_OP_SIN, n->inputs[0])));
}

// d acos(x) = -1/sqrt(1 - x^2): -inf at x = ±1, as torch.acos, and NaN
// outside [-1, 1], where the forward value is NaN too.
bool grad_acos(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    int32_t s = gb_unary(c, ITR_OP_RSQRT, gb_sub(c, scalar_like(c, 1.0, x), gb_mul(c, x, x)));
    return chain(c, dy, dx, gb_neg(c, s));
}

bool grad_identity(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    (void)c;
    (void)n;
    dx[0] = dy[0];
    return true;
}

// Between float dtypes the gradient is cast back; through an integer or bool
// the function is piecewise constant, so there is none (itr_vjp never sees
// an adjoint on an integer result, and an integer operand takes none).
bool grad_cast(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    if (!itr_dtype_is_float(xt.dtype) || !itr_dtype_is_float(gb_type(c, dy[0])->dtype)) return true;
    dx[0] = gb_cast(c, dy[0], xt.dtype);
    return dx[0] >= 0;
}

// ------------------------------------------------------------ binary

// dx[i] = sum_to(v, operand i's type) for the operands that need it.
static bool unbroadcast(struct itr_grad_ctx *c, const struct itr_node *n, int i, int32_t v, int32_t *dx) {
    if (!gb_needs(c, i)) return true;
    struct itr_type t = type_of(c, n->inputs[i]);
    dx[i] = gb_sum_to(c, v, &t);
    return dx[i] >= 0;
}

bool grad_add(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return unbroadcast(c, n, 0, dy[0], dx) && unbroadcast(c, n, 1, dy[0], dx);
}

bool grad_sub(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return unbroadcast(c, n, 0, dy[0], dx) && (!gb_needs(c, 1) || unbroadcast(c, n, 1, gb_neg(c, dy[0]), dx));
}

bool grad_mul(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t a = n->inputs[0], b = n->inputs[1];
    return (!gb_needs(c, 0) || unbroadcast(c, n, 0, gb_mul(c, dy[0], b), dx)) &&
           (!gb_needs(c, 1) || unbroadcast(c, n, 1, gb_mul(c, dy[0], a), dx));
}

// d(a/b)/db = -a/b^2 = -y/b, which reuses the forward result.
bool grad_div(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t b = n->inputs[1], y = n->outputs[0];
    return (!gb_needs(c, 0) || unbroadcast(c, n, 0, gb_div(c, dy[0], b), dx)) &&
           (!gb_needs(c, 1) || unbroadcast(c, n, 1, gb_neg(c, gb_div(c, gb_mul(c, dy[0], y), b)), dx));
}

// d/da = b a^(b-1), taken as 0 where b = 0 (a^0 is constant, even at a = 0
// where the formula reads 0 * inf). d/db = a^b log(a), taken as 0 where
// a = 0 and b >= 0 (the limit from a > 0; the formula reads 0 * -inf); for
// a < 0 it is NaN, as the real power is not differentiable in b there.
bool grad_pow(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t a = n->inputs[0], b = n->inputs[1], y = n->outputs[0];
    int32_t zero = scalar_like(c, 0.0, a);
    if (gb_needs(c, 0)) {
        int32_t t = gb_mul(c, b, cmp(c, ITR_OP_POW, a, gb_sub(c, b, scalar_like(c, 1.0, b))));
        int32_t g = gb_where(c, cmp(c, ITR_OP_EQ, b, zero), zero, gb_mul(c, dy[0], t));
        if (!unbroadcast(c, n, 0, g, dx)) return false;
    }
    if (gb_needs(c, 1)) {
        int32_t t = gb_mul(c, y, gb_unary(c, ITR_OP_LOG, a));
        int32_t at0 = cmp(c, ITR_OP_AND, cmp(c, ITR_OP_EQ, a, zero), cmp(c, ITR_OP_GE, b, zero));
        int32_t g = gb_where(c, at0, zero, gb_mul(c, dy[0], t));
        if (!unbroadcast(c, n, 1, g, dx)) return false;
    }
    return true;
}

// Ties (a == b) send the whole gradient to a, as docs/ops.md specifies.
static bool grad_select(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx,
                        enum itr_op to_a) {
    int32_t a = n->inputs[0], b = n->inputs[1];
    int32_t mask = cmp(c, to_a, a, b), zero = scalar_like(c, 0.0, a);
    return (!gb_needs(c, 0) || unbroadcast(c, n, 0, gb_where(c, mask, dy[0], zero), dx)) &&
           (!gb_needs(c, 1) || unbroadcast(c, n, 1, gb_where(c, mask, zero, dy[0]), dx));
}

bool grad_maximum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_select(c, n, dy, dx, ITR_OP_GE);
}

bool grad_minimum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_select(c, n, dy, dx, ITR_OP_LE);
}

bool grad_where(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t cond = n->inputs[0];
    int32_t zero = scalar_like(c, 0.0, dy[0]);
    return (!gb_needs(c, 1) || unbroadcast(c, n, 1, gb_where(c, cond, dy[0], zero), dx)) &&
           (!gb_needs(c, 2) || unbroadcast(c, n, 2, gb_where(c, cond, zero, dy[0]), dx));
}

// ------------------------------------------------------------ reductions

// Which axes of x the reduction node n reduces (absent or [] = every axis).
static int reduced_axes(const struct itr_node *n, int rank, bool mask[ITR_MAX_RANK]) {
    memset(mask, 0, ITR_MAX_RANK * sizeof *mask);
    const struct itr_attr *a = itr_node_attr(n, "axes");
    int count = 0;
    if (!a || a->kind != ITR_ATTR_INTS || a->u.ints.n == 0) {
        for (int i = 0; i < rank; i++) mask[i] = true;
        return rank;
    }
    for (int i = 0; i < a->u.ints.n; i++) {
        int ax;
        if (itr_axis_normalize(a->u.ints.v[i], rank, &ax) && !mask[ax]) { mask[ax] = true; count++; }
    }
    return count;
}

// The reduction's result with the reduced axes kept as size 1, so that it
// broadcasts against the operand.
static int32_t keep_reduced(struct itr_grad_ctx *c, int32_t v, const struct itr_type *xt, const bool *mask) {
    struct itr_type t = *xt;
    t.dtype = gb_type(c, v)->dtype;
    itr_dim one = itr_dim_const(c->g->prog, 1);
    for (int i = 0; i < t.rank; i++)
        if (mask[i]) t.dims[i] = one;
    return gb_reshape(c, v, &t);
}

bool grad_sum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    bool mask[ITR_MAX_RANK];
    reduced_axes(n, xt.rank, mask);
    dx[0] = gb_expand(c, keep_reduced(c, dy[0], &xt, mask), &xt);
    return dx[0] >= 0;
}

// The count of reduced elements: a constant when the reduced dims are, else
// the product of each symbolic dim's value, computed at run time as
// sum(full(1, [d])) (exact in f32 up to 2^24 per dim, and O(d) work).
bool grad_mean(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    bool mask[ITR_MAX_RANK];
    reduced_axes(n, xt.rank, mask);
    int64_t count = 1;
    int32_t cnt = -2;   // -2: no symbolic factor yet
    for (int i = 0; i < xt.rank; i++) {
        if (!mask[i]) continue;
        int64_t v;
        if (itr_dim_is_const(c->g->prog, xt.dims[i], &v)) { count *= v; continue; }
        struct itr_attr *a = gb_attrs(c, ITR_OP_FULL);
        gb_set_float(a, ITR_OP_FULL, "value", 1.0);
        gb_set_dims(c, a, ITR_OP_FULL, "shape", &xt.dims[i], 1);
        gb_set_dtype(a, ITR_OP_FULL, "dtype", xt.dtype);
        int32_t ones = gb_node(c, ITR_OP_FULL, NULL, 0, a);
        int32_t di = ones < 0 ? -1 : gb_node(c, ITR_OP_SUM, &ones, 1, NULL);
        cnt = cnt == -2 ? di : gb_mul(c, cnt, di);
    }
    if (cnt == -2) cnt = gb_scalar(c, (double)count, xt.dtype);
    else if (count != 1) cnt = gb_mul(c, cnt, gb_scalar(c, (double)count, xt.dtype));
    dx[0] = gb_expand(c, gb_div(c, keep_reduced(c, dy[0], &xt, mask), cnt), &xt);
    return dx[0] >= 0;
}

// max/min send the gradient to the first extremal element in row-major order
// over the reduced axes, like argmax: an exact tie does not split it. The
// extremal elements are x == y (or NaN, which max/min propagate); argmax over
// that mask, with the reduced axes moved last and flattened into one, picks
// the first, and a one-hot of it routes dy.
static bool grad_extremum(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t x = n->inputs[0];
    struct itr_type xt = type_of(c, x);
    struct itr_program *p = c->g->prog;
    bool mask[ITR_MAX_RANK];
    int nred = reduced_axes(n, xt.rank, mask);
    if (nred == 0) {   // a scalar, or nothing reduced: y = x
        dx[0] = gb_reshape(c, dy[0], &xt);
        return dx[0] >= 0;
    }
    int32_t yk = keep_reduced(c, n->outputs[0], &xt, mask), dyk = keep_reduced(c, dy[0], &xt, mask);
    int32_t hit = cmp(c, ITR_OP_OR, cmp(c, ITR_OP_EQ, x, yk), cmp(c, ITR_OP_NE, x, x));
    int32_t hiti = gb_cast(c, hit, ITR_I32);
    if (nred == 1) {   // argmax along the one axis: no transpose, no reshape
        int ax = 0;
        while (!mask[ax]) ax++;
        struct itr_attr *aa = gb_attrs(c, ITR_OP_ARGMAX);
        gb_set_int(aa, ITR_OP_ARGMAX, "axis", ax);
        gb_set_bool(aa, ITR_OP_ARGMAX, "keepdims", true);
        int32_t am = hiti < 0 ? -1 : gb_node(c, ITR_OP_ARGMAX, &hiti, 1, aa);
        struct itr_attr *ia = gb_attrs(c, ITR_OP_IOTA);
        gb_set_dims(c, ia, ITR_OP_IOTA, "shape", xt.dims, xt.rank);
        gb_set_int(ia, ITR_OP_IOTA, "axis", ax);
        gb_set_dtype(ia, ITR_OP_IOTA, "dtype", ITR_I64);
        int32_t onehot = cmp(c, ITR_OP_EQ, gb_node(c, ITR_OP_IOTA, NULL, 0, ia), am);
        dx[0] = gb_where(c, onehot, dyk, scalar_like(c, 0.0, x));
        return dx[0] >= 0;
    }

    // perm: kept axes in order, then reduced axes in order.
    int64_t perm[ITR_MAX_RANK], inv[ITR_MAX_RANK];
    int np = 0;
    for (int i = 0; i < xt.rank; i++)
        if (!mask[i]) perm[np++] = i;
    int first_red = np;
    for (int i = 0; i < xt.rank; i++)
        if (mask[i]) perm[np++] = i;
    for (int i = 0; i < xt.rank; i++) inv[perm[i]] = i;
    bool moved = false;
    for (int i = 0; i < xt.rank; i++) moved |= perm[i] != i;

    // flat: [kept..., R] with R the product of the reduced dims.
    struct itr_type tt = xt;
    for (int i = 0; i < xt.rank; i++) tt.dims[i] = xt.dims[perm[i]];
    struct itr_type flat = tt;
    itr_dim r = itr_dim_const(p, 1);
    for (int i = first_red; i < xt.rank; i++) r = itr_dim_binary(p, ITR_DIM_MUL, r, tt.dims[i]);
    flat.rank = first_red + 1;
    flat.dims[first_red] = r;
    flat.dtype = ITR_I32;

    int32_t h = moved ? gb_transpose(c, hiti, perm, xt.rank) : hiti;
    h = gb_reshape(c, h, &flat);
    struct itr_attr *aa = gb_attrs(c, ITR_OP_ARGMAX);
    gb_set_int(aa, ITR_OP_ARGMAX, "axis", first_red);
    gb_set_bool(aa, ITR_OP_ARGMAX, "keepdims", true);
    int32_t am = h < 0 ? -1 : gb_node(c, ITR_OP_ARGMAX, &h, 1, aa);
    struct itr_attr *ia = gb_attrs(c, ITR_OP_IOTA);
    gb_set_dims(c, ia, ITR_OP_IOTA, "shape", flat.dims, flat.rank);
    gb_set_int(ia, ITR_OP_IOTA, "axis", first_red);
    gb_set_dtype(ia, ITR_OP_IOTA, "dtype", ITR_I64);
    int32_t io = gb_node(c, ITR_OP_IOTA, NULL, 0, ia);
    int32_t onehot = cmp(c, ITR_OP_EQ, io, am);
    tt.dtype = ITR_BOOL;
    onehot = gb_reshape(c, onehot, &tt);
    if (moved) onehot = gb_transpose(c, onehot, inv, xt.rank);
    dx[0] = gb_where(c, onehot, dyk, scalar_like(c, 0.0, x));
    return dx[0] >= 0;
}

bool grad_max(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_extremum(c, n, dy, dx);
}

bool grad_min(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return grad_extremum(c, n, dy, dx);
}

// ------------------------------------------------------------ matmul

// da = dy b^T, db = a^T dy, each summed over the batch dims its operand was
// broadcast along. When b is a matrix shared by every batch row of a (a
// projection x W), summing per-batch products a_i^T dy_i is one product of
// the stacked rows instead: no [batch, k, n] intermediate, and one large
// GEMM rather than many small ones.
static bool dim_is_one(struct itr_grad_ctx *c, itr_dim d) {
    int64_t v;
    return itr_dim_is_const(c->g->prog, d, &v) && v == 1;
}

// Σ over the batch dims where `target` is broadcast of p @ q (p [.., m, j],
// q [.., j, k], same rank), with the target's type; -2 when no such dim has
// both operands varying (the caller then sums the plain product). A dim
// where both vary joins the contraction: [.., m, S, j] x [.., S, j, k] as
// one product over S·j, so the per-pair [.., S, m, k] products (SCAN's
// [images, captions, R, D] region gradient, 805 MB at batch 128) are never
// formed. A dim where one operand varies is summed on that operand first.
static int32_t contract_broadcast(struct itr_grad_ctx *c, int32_t p, int32_t q, const struct itr_type *target) {
    struct itr_type tp = *gb_type(c, p), tq = *gb_type(c, q);
    int r = tp.rank;
    if (r < 3 || tq.rank != r || target->rank != r) return -2;
    bool in_s[ITR_MAX_RANK] = { false };
    int n_s = 0;
    for (int d = 0; d < r - 2; d++) {
        if (!dim_is_one(c, target->dims[d])) continue;
        bool pv = !dim_is_one(c, tp.dims[d]), qv = !dim_is_one(c, tq.dims[d]);
        int64_t ax = d;
        if (pv && qv) { in_s[d] = true; n_s++; }
        else if (pv) p = gb_reduce(c, ITR_OP_SUM, p, &ax, 1, true);
        else if (qv) q = gb_reduce(c, ITR_OP_SUM, q, &ax, 1, true);
    }
    if (n_s == 0 || p < 0 || q < 0) return n_s == 0 ? -2 : -1;
    tp = *gb_type(c, p);
    tq = *gb_type(c, q);
    struct itr_program *prog = c->g->prog;
    int64_t pp[ITR_MAX_RANK], qp[ITR_MAX_RANK];
    itr_dim pd[ITR_MAX_RANK], qd[ITR_MAX_RANK], rd[ITR_MAX_RANK];
    int np = 0, nq = 0;
    itr_dim s = itr_dim_const(prog, 1);
    for (int d = 0; d < r - 2; d++)
        if (!in_s[d]) {
            pp[np] = d; pd[np++] = tp.dims[d];
            qp[nq] = d; qd[nq++] = tq.dims[d];
        } else {
            s = itr_dim_binary(prog, ITR_DIM_MUL, s, tp.dims[d]);
        }
    // p: [other.., m, S.., j] -> [other.., m, S·j]
    pp[np] = r - 2; pd[np] = tp.dims[r - 2];
    int k = np + 1;
    for (int d = 0; d < r - 2; d++)
        if (in_s[d]) pp[k++] = d;
    pp[k++] = r - 1;
    pd[np + 1] = itr_dim_binary(prog, ITR_DIM_MUL, s, tp.dims[r - 1]);
    // q: [other.., S.., j, k] -> [other.., S·j, k]
    k = nq;
    for (int d = 0; d < r - 2; d++)
        if (in_s[d]) qp[k++] = d;
    qp[k++] = r - 2;
    qp[k++] = r - 1;
    qd[nq] = itr_dim_binary(prog, ITR_DIM_MUL, s, tq.dims[r - 2]);
    qd[nq + 1] = tq.dims[r - 1];
    struct itr_type p2 = itr_type_make(tp.dtype, np + 2, pd), q2 = itr_type_make(tq.dtype, nq + 2, qd);
    int32_t pr = gb_reshape(c, gb_transpose(c, p, pp, r), &p2);
    int32_t qr = gb_reshape(c, gb_transpose(c, q, qp, r), &q2);
    int32_t prod = cmp(c, ITR_OP_MATMUL, pr, qr);
    if (prod < 0) return -1;
    // Back to rank r with the contracted dims as 1s, then what remains.
    const struct itr_type *tr = gb_type(c, prod);
    for (int d = 0, o = 0; d < r; d++) rd[d] = d < r - 2 && in_s[d] ? itr_dim_const(prog, 1) : tr->dims[o++];
    struct itr_type full = itr_type_make(tr->dtype, r, rd);
    return gb_sum_to(c, gb_reshape(c, prod, &full), target);
}

// An operand's adjoint through contract_broadcast, else the plain product
// summed to its type.
static bool matmul_adjoint(struct itr_grad_ctx *c, const struct itr_node *n, int i, int32_t p, int32_t q,
                           int32_t *dx) {
    if (!gb_needs(c, i)) return true;
    struct itr_type t = type_of(c, n->inputs[i]);
    int32_t v = contract_broadcast(c, p, q, &t);
    if (v == -2) return unbroadcast(c, n, i, cmp(c, ITR_OP_MATMUL, p, q), dx);
    dx[i] = v;
    return v >= 0;
}

bool grad_matmul(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int32_t a = n->inputs[0], b = n->inputs[1];
    if (!gb_needs(c, 0) || matmul_adjoint(c, n, 0, dy[0], gb_swap_last2(c, b), dx)) {
        if (!gb_needs(c, 1)) return true;
        if (gb_type(c, b)->rank == 2 && gb_type(c, a)->rank > 2 && gb_type(c, dy[0])->rank == gb_type(c, a)->rank) {
            int32_t a2 = gb_rows(c, a), dy2 = gb_rows(c, dy[0]);
            if (a2 < 0 || dy2 < 0) return false;
            return unbroadcast(c, n, 1, cmp(c, ITR_OP_MATMUL, gb_swap_last2(c, a2), dy2), dx);
        }
        return matmul_adjoint(c, n, 1, gb_swap_last2(c, a), dy[0], dx);
    }
    return false;
}

// ------------------------------------------------------------ movement

static bool reshape_back(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    dx[0] = gb_reshape(c, dy[0], &xt);
    return dx[0] >= 0;
}

bool grad_reshape(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return reshape_back(c, n, dy, dx);
}

bool grad_squeeze(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return reshape_back(c, n, dy, dx);
}

bool grad_unsqueeze(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    return reshape_back(c, n, dy, dx);
}

bool grad_transpose(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    int rank = gb_type(c, n->inputs[0])->rank;
    const struct itr_attr *a = itr_node_attr(n, "perm");
    if (!a || a->kind != ITR_ATTR_INTS) {   // reversing the axes is its own inverse
        dx[0] = gb_transpose(c, dy[0], NULL, 0);
        return dx[0] >= 0;
    }
    int64_t inv[ITR_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int ax = 0;
        itr_axis_normalize(a->u.ints.v[i], rank, &ax);
        inv[ax] = i;
    }
    dx[0] = gb_transpose(c, dy[0], inv, rank);
    return dx[0] >= 0;
}

bool grad_expand(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    dx[0] = gb_sum_to(c, dy[0], &xt);
    return dx[0] >= 0;
}

// A dim's value at run time as an i64 scalar: the element count of a `full`
// of that size (for offsets that are not compile-time constants).
static int32_t dim_value(struct itr_grad_ctx *c, itr_dim d) {
    int64_t v;
    if (itr_dim_is_const(c->g->prog, d, &v)) return gb_scalar(c, (double)v, ITR_I64);
    struct itr_attr *a = gb_attrs(c, ITR_OP_FULL);
    gb_set_float(a, ITR_OP_FULL, "value", 1.0);
    gb_set_dims(c, a, ITR_OP_FULL, "shape", &d, 1);
    gb_set_dtype(a, ITR_OP_FULL, "dtype", ITR_I64);
    int32_t ones = gb_node(c, ITR_OP_FULL, NULL, 0, a);
    return ones < 0 ? -1 : gb_node(c, ITR_OP_SUM, &ones, 1, NULL);
}

// first + step * [0, 1, ..., len) as i64.
static int32_t index_ramp(struct itr_grad_ctx *c, itr_dim len, int32_t first, int64_t step) {
    struct itr_attr *a = gb_attrs(c, ITR_OP_IOTA);
    gb_set_dims(c, a, ITR_OP_IOTA, "shape", &len, 1);
    gb_set_dtype(a, ITR_OP_IOTA, "dtype", ITR_I64);
    int32_t io = gb_node(c, ITR_OP_IOTA, NULL, 0, a);
    if (step != 1) io = gb_mul(c, io, gb_scalar(c, (double)step, ITR_I64));
    return gb_add(c, io, first);
}

static int32_t slice1(struct itr_grad_ctx *c, int32_t v, int axis, int64_t start, int64_t end, int64_t step) {
    struct itr_attr *a = gb_attrs(c, ITR_OP_SLICE);
    int64_t ax = axis;
    gb_set_ints(c, a, ITR_OP_SLICE, "axes", &ax, 1);
    gb_set_ints(c, a, ITR_OP_SLICE, "starts", &start, 1);
    gb_set_ints(c, a, ITR_OP_SLICE, "ends", &end, 1);
    if (step != 1) gb_set_ints(c, a, ITR_OP_SLICE, "steps", &step, 1);
    return v < 0 ? -1 : gb_node(c, ITR_OP_SLICE, &v, 1, a);
}

static int32_t pad1(struct itr_grad_ctx *c, int32_t v, int axis, int64_t before, int64_t after) {
    if (v < 0) return -1;
    if (before == 0 && after == 0) return v;
    int rank = gb_type(c, v)->rank;
    int64_t pads[2 * ITR_MAX_RANK] = { 0 };
    pads[2 * axis] = before;
    pads[2 * axis + 1] = after;
    struct itr_attr *a = gb_attrs(c, ITR_OP_PAD);
    gb_set_ints(c, a, ITR_OP_PAD, "pads", pads, 2 * rank);
    return gb_node(c, ITR_OP_PAD, &v, 1, a);
}

// Places v (holding the sliced elements along `axis`) into zeros of type
// `to` (v's type with the original axis size): the adjoint of one axis of a
// slice. Constant axes use pads only; a symbolic axis whose offsets are
// not constants scatters into zeros at run-time indices.
static int32_t unslice_axis(struct itr_grad_ctx *c, int32_t v, int axis, const struct itr_type *to, int64_t start,
                            int64_t end, int64_t step) {
    struct itr_program *p = c->g->prog;
    struct itr_type vt = type_of(c, v);
    itr_dim nd = to->dims[axis], md = vt.dims[axis];
    int64_t n, m;
    if (itr_dim_is_const(p, md, &m) && m == 0) return gb_zeros(c, to);
    if (itr_dim_is_const(p, nd, &n)) {
        int64_t first, len = itr_slice_range(n, start, end, step, &first);
        if (len == 0) return gb_zeros(c, to);
        if (step < 0) {   // reverse dy so that the elements sit in increasing positions
            v = slice1(c, v, axis, len - 1, -(len + 1), -1);
            first -= (len - 1) * -step;
            step = -step;
        }
        int64_t span = len;
        if (step > 1) {
            // [.., len, ..] -> [.., len, step, ..] with zeros after each
            // element -> [.., len*step, ..], then drop the trailing zeros.
            struct itr_type t2 = type_of(c, v);
            int64_t ax1 = axis + 1;
            struct itr_attr *ua = gb_attrs(c, ITR_OP_UNSQUEEZE);
            gb_set_ints(c, ua, ITR_OP_UNSQUEEZE, "axes", &ax1, 1);
            int32_t u = v < 0 ? -1 : gb_node(c, ITR_OP_UNSQUEEZE, &v, 1, ua);
            u = pad1(c, u, axis + 1, 0, step - 1);
            t2.dims[axis] = itr_dim_const(p, len * step);
            v = slice1(c, gb_reshape(c, u, &t2), axis, 0, (len - 1) * step + 1, 1);
            span = (len - 1) * step + 1;
        }
        return gb_reshape(c, pad1(c, v, axis, first, n - first - span), to);
    }
    // Symbolic axis (positive steps only, by the shape rule).
    if (start >= SLICE_TO_END) return gb_zeros(c, to);
    if (step == 1 && (end >= SLICE_TO_END || end < 0) && start >= 0) {
        int64_t after = end >= SLICE_TO_END ? 0 : -end;
        // pad's dim arithmetic folds the constants back (L-1 padded by 1 is
        // L); the reshape only covers forms it does not recognise.
        return gb_reshape(c, pad1(c, v, axis, start, after), to);
    }
    itr_dim first_d = start >= 0 ? itr_dim_const(p, start)
                                 : itr_dim_binary(p, ITR_DIM_SUB, nd, itr_dim_const(p, -start));
    int32_t idx = index_ramp(c, md, dim_value(c, first_d), step);
    int32_t in[3] = { gb_zeros(c, to), idx, v };
    struct itr_attr *a = gb_attrs(c, ITR_OP_SCATTER_ADD);
    gb_set_int(a, ITR_OP_SCATTER_ADD, "axis", axis);
    return gb_node(c, ITR_OP_SCATTER_ADD, in, 3, a);
}

bool grad_slice(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    const struct itr_attr *axes = itr_node_attr(n, "axes"), *starts = itr_node_attr(n, "starts"),
                          *ends = itr_node_attr(n, "ends"), *steps = itr_node_attr(n, "steps");
    bool has_steps = steps && steps->kind == ITR_ATTR_INTS;
    int32_t v = dy[0];
    for (int i = 0; i < axes->u.ints.n && v >= 0; i++) {
        int ax = 0;
        itr_axis_normalize(axes->u.ints.v[i], xt.rank, &ax);
        struct itr_type to = type_of(c, v);
        to.dims[ax] = xt.dims[ax];
        v = unslice_axis(c, v, ax, &to, starts->u.ints.v[i], ends->u.ints.v[i], has_steps ? steps->u.ints.v[i] : 1);
    }
    dx[0] = gb_reshape(c, v, &xt);
    return dx[0] >= 0;
}

// Operand i's part of dy: a slice when its bounds are constants, from the
// start or from the end of the axis, else a gather at run-time indices.
bool grad_concat(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_program *p = c->g->prog;
    struct itr_type yt = type_of(c, n->outputs[0]);
    int ax = 0;
    itr_axis_normalize(itr_node_attr_int(n, "axis"), yt.rank, &ax);
    itr_dim zero = itr_dim_const(p, 0);
    for (int i = 0; i < n->n_inputs; i++) {
        if (!gb_needs(c, i)) continue;
        struct itr_type xt = type_of(c, n->inputs[i]);
        itr_dim before = zero, after = zero;
        for (int j = 0; j < n->n_inputs; j++) {
            itr_dim dj = gb_type(c, n->inputs[j])->dims[ax];
            if (j < i) before = itr_dim_binary(p, ITR_DIM_ADD, before, dj);
            if (j > i) after = itr_dim_binary(p, ITR_DIM_ADD, after, dj);
        }
        int64_t s, len, f;
        bool cs = itr_dim_is_const(p, before, &s), cl = itr_dim_is_const(p, xt.dims[ax], &len),
             cf = itr_dim_is_const(p, after, &f);
        int32_t part;
        if (cs && cl) part = slice1(c, dy[0], ax, s, s + len, 1);
        else if (cs && cf) part = slice1(c, dy[0], ax, s, f ? -f : SLICE_TO_END, 1);
        else if (cl && cf) part = slice1(c, dy[0], ax, -(f + len), f ? -f : SLICE_TO_END, 1);
        else {
            int32_t in[2] = { dy[0], index_ramp(c, xt.dims[ax], dim_value(c, before), 1) };
            struct itr_attr *a = gb_attrs(c, ITR_OP_GATHER);
            gb_set_int(a, ITR_OP_GATHER, "axis", ax);
            part = gb_node(c, ITR_OP_GATHER, in, 2, a);
        }
        dx[i] = gb_reshape(c, part, &xt);
        if (dx[i] < 0) return false;
    }
    return true;
}

bool grad_pad(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    struct itr_type xt = type_of(c, n->inputs[0]);
    const struct itr_attr *pads = itr_node_attr(n, "pads");
    int32_t v = dy[0];
    for (int i = 0; i < xt.rank && v >= 0; i++) {
        int64_t b = pads->u.ints.v[2 * i], e = pads->u.ints.v[2 * i + 1], len;
        if (b == 0 && e == 0) continue;
        if (itr_dim_is_const(c->g->prog, xt.dims[i], &len)) v = slice1(c, v, i, b, b + len, 1);
        else v = slice1(c, v, i, b, e ? -e : SLICE_TO_END, 1);
    }
    dx[0] = gb_reshape(c, v, &xt);
    return dx[0] >= 0;
}
