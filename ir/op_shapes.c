// Shape and dtype rules of every op in ops.def (the SHAPE column).
//
// A rule sees its operands' types and attributes (itr_shape_ctx) and either
// fills c->out / c->n_out or reports through itr_shape_error, which already
// names the op, the node's location and every operand with its type; the
// messages here therefore only say what is wrong and with which dims.
//
// Dims are hash-consed expressions, so "equal" means "equal handles". Where
// two symbolic sizes cannot be proven equal or different (reshape element
// counts), the rule accepts and the interpreter checks at run time.
#include "ir.h"

#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------ helpers

// Formatted dims for messages; each call gets its own buffer from the struct.
struct dimstr { char s[96]; };

static struct dimstr dstr(const struct itr_shape_ctx *c, itr_dim d) {
    struct dimstr r;
    itr_dim_format(c->prog, d, r.s, sizeof r.s);
    return r;
}

struct typestr { char s[256]; };

static struct typestr tstr(const struct itr_shape_ctx *c, const struct itr_type *t) {
    struct typestr r;
    itr_type_format(c->prog, t, r.s, sizeof r.s);
    return r;
}

static bool is_num(enum itr_dtype dt) { return dt != ITR_BOOL; }

static itr_dim dconst(const struct itr_shape_ctx *c, int64_t v) { return itr_dim_const(c->prog, v); }

static bool const_of(const struct itr_shape_ctx *c, itr_dim d, int64_t *v) { return itr_dim_is_const(c->prog, d, v); }

// d + k with constant offsets merged (L-1 plus 1 is L, not L-1+1), so
// that dims built in steps compare equal to dims written directly.
static itr_dim dim_plus(struct itr_shape_ctx *c, itr_dim d, int64_t k) {
    const struct itr_dim_node *e = &c->prog->dimnodes[d];
    int64_t off;
    if ((e->kind == ITR_DIM_ADD || e->kind == ITR_DIM_SUB) && const_of(c, e->b, &off)) {
        itr_dim base = e->a;
        k += e->kind == ITR_DIM_ADD ? off : -off;
        d = base;
    }
    if (k >= 0) return itr_dim_binary(c->prog, ITR_DIM_ADD, d, dconst(c, k));
    return itr_dim_binary(c->prog, ITR_DIM_SUB, d, dconst(c, -k));
}

static bool set1(struct itr_shape_ctx *c, struct itr_type t) {
    c->out[0] = t;
    c->n_out = 1;
    return true;
}

static bool need_num(struct itr_shape_ctx *c, int i) {
    if (!is_num(c->in[i].dtype))
        return itr_shape_error(c, "operand %d must be numeric (f32, f64, i32 or i64), got %s", i,
                               itr_dtype_name(c->in[i].dtype));
    return true;
}

static bool need_float(struct itr_shape_ctx *c, int i) {
    if (!itr_dtype_is_float(c->in[i].dtype))
        return itr_shape_error(c, "operand %d must be a float tensor (f32 or f64), got %s", i,
                               itr_dtype_name(c->in[i].dtype));
    return true;
}

static bool need_int(struct itr_shape_ctx *c, int i, const char *role) {
    if (!itr_dtype_is_int(c->in[i].dtype))
        return itr_shape_error(c, "%s (operand %d) must be i32 or i64, got %s", role, i,
                               itr_dtype_name(c->in[i].dtype));
    return true;
}

static bool same_dtype(struct itr_shape_ctx *c, int i, int j) {
    if (c->in[i].dtype != c->in[j].dtype)
        return itr_shape_error(c, "dtypes differ: %s vs %s (operands %d and %d; insert a cast)",
                               itr_dtype_name(c->in[i].dtype), itr_dtype_name(c->in[j].dtype), i, j);
    return true;
}

static bool norm_axis(struct itr_shape_ctx *c, int64_t axis, int rank, const char *what, int *out) {
    if (!itr_axis_normalize(axis, rank, out))
        return itr_shape_error(c, "%s %lld is out of range for rank %d (valid: %d..%d)", what, (long long)axis, rank,
                               -rank, rank - 1);
    return true;
}

static int64_t attr_int(const struct itr_shape_ctx *c, const char *name) {
    const struct itr_attr *a = itr_shape_attr(c, name);
    return a && (a->kind == ITR_ATTR_INT || a->kind == ITR_ATTR_BOOL) ? a->u.i : 0;
}

static double attr_float(const struct itr_shape_ctx *c, const char *name) {
    const struct itr_attr *a = itr_shape_attr(c, name);
    return a && a->kind == ITR_ATTR_FLOAT ? a->u.f : 0;
}

// Checks that every constant dim of a dims attribute is non-negative (or -1
// where allowed) and copies it into a type.
static bool dims_attr(struct itr_shape_ctx *c, const char *name, enum itr_dtype dt, bool allow_minus1,
                      struct itr_type *out) {
    const struct itr_attr *a = itr_shape_attr(c, name);
    int n = a && a->kind == ITR_ATTR_DIMS ? a->u.dims.n : 0;
    if (n > ITR_MAX_RANK)
        return itr_shape_error(c, "attribute '%s' has %d dims; the most is %d", name, n, ITR_MAX_RANK);
    memset(out, 0, sizeof *out);
    out->dtype = dt;
    out->rank = n;
    for (int i = 0; i < n; i++) {
        itr_dim d = a->u.dims.v[i];
        int64_t v;
        if (d < 0 || d >= c->prog->n_dimnodes)
            return itr_shape_error(c, "attribute '%s': dim %d is not a valid dim expression", name, i);
        if (const_of(c, d, &v) && v < 0 && !(allow_minus1 && v == -1))
            return itr_shape_error(c, "attribute '%s': dim %d is negative (%lld)", name, i, (long long)v);
        out->dims[i] = d;
    }
    return true;
}

// ------------------------------------------------------------ elementwise

bool shape_unary_num(struct itr_shape_ctx *c) {
    if (!need_num(c, 0)) return false;
    return set1(c, c->in[0]);
}

bool shape_unary_float(struct itr_shape_ctx *c) {
    if (!need_float(c, 0)) return false;
    return set1(c, c->in[0]);
}

bool shape_unary_bool(struct itr_shape_ctx *c) {
    if (c->in[0].dtype != ITR_BOOL)
        return itr_shape_error(c, "operand must be bool, got %s", itr_dtype_name(c->in[0].dtype));
    return set1(c, c->in[0]);
}

bool shape_unary_any(struct itr_shape_ctx *c) { return set1(c, c->in[0]); }

bool shape_cast(struct itr_shape_ctx *c) {
    const struct itr_attr *a = itr_shape_attr(c, "dtype");
    struct itr_type t = c->in[0];
    if (!a || a->kind != ITR_ATTR_DTYPE || (unsigned)a->u.dtype >= ITR_DTYPE_COUNT)
        return itr_shape_error(c, "attribute 'dtype' must name a dtype");
    t.dtype = a->u.dtype;
    return set1(c, t);
}

static bool binary(struct itr_shape_ctx *c, enum itr_dtype *out_dt) {
    if (!same_dtype(c, 0, 1)) return false;
    struct itr_type t;
    if (!itr_broadcast_types(c, &c->in[0], &c->in[1], &t, 0, 1)) return false;
    if (out_dt) t.dtype = *out_dt;
    return set1(c, t);
}

bool shape_binary_num(struct itr_shape_ctx *c) {
    if (!same_dtype(c, 0, 1) || !need_num(c, 0)) return false;
    return binary(c, NULL);
}

bool shape_binary_float(struct itr_shape_ctx *c) {
    if (!same_dtype(c, 0, 1) || !need_float(c, 0)) return false;
    return binary(c, NULL);
}

bool shape_compare(struct itr_shape_ctx *c) {
    enum itr_dtype b = ITR_BOOL;
    if (!same_dtype(c, 0, 1)) return false;
    // Ordering bools is almost surely a mistake; equality of bools is fine.
    if (c->in[0].dtype == ITR_BOOL && c->op != ITR_OP_EQ && c->op != ITR_OP_NE)
        return itr_shape_error(c, "ordering comparison of bool operands (use eq/ne or cast)");
    return binary(c, &b);
}

bool shape_binary_bool(struct itr_shape_ctx *c) {
    for (int i = 0; i < 2; i++)
        if (c->in[i].dtype != ITR_BOOL)
            return itr_shape_error(c, "operand %d must be bool, got %s", i, itr_dtype_name(c->in[i].dtype));
    return binary(c, NULL);
}

bool shape_where(struct itr_shape_ctx *c) {
    if (c->in[0].dtype != ITR_BOOL)
        return itr_shape_error(c, "condition (operand 0) must be bool, got %s", itr_dtype_name(c->in[0].dtype));
    if (!same_dtype(c, 1, 2)) return false;
    struct itr_type t1, t2;
    if (!itr_broadcast_types(c, &c->in[1], &c->in[2], &t1, 1, 2)) return false;
    if (!itr_broadcast_types(c, &c->in[0], &t1, &t2, 0, 1)) return false;
    t2.dtype = c->in[1].dtype;
    return set1(c, t2);
}

// ------------------------------------------------------------ reductions

// Reads the axes attribute into a mask; absent or empty means every axis.
static bool axes_mask(struct itr_shape_ctx *c, const struct itr_attr *a, int rank, bool mask[ITR_MAX_RANK]) {
    memset(mask, 0, ITR_MAX_RANK * sizeof *mask);
    if (!a || a->kind != ITR_ATTR_INTS || a->u.ints.n == 0) {
        for (int i = 0; i < rank; i++) mask[i] = true;
        return true;
    }
    for (int i = 0; i < a->u.ints.n; i++) {
        int ax;
        if (!norm_axis(c, a->u.ints.v[i], rank, "axis", &ax)) return false;
        if (mask[ax]) return itr_shape_error(c, "axis %lld is listed twice", (long long)a->u.ints.v[i]);
        mask[ax] = true;
    }
    return true;
}

bool shape_reduce(struct itr_shape_ctx *c) {
    if (c->op == ITR_OP_MEAN) {
        if (!itr_dtype_is_float(c->in[0].dtype))
            return itr_shape_error(c, "mean needs a float operand, got %s (cast first)", itr_dtype_name(c->in[0].dtype));
    } else if (!need_num(c, 0))
        return false;
    bool mask[ITR_MAX_RANK];
    if (!axes_mask(c, itr_shape_attr(c, "axes"), c->in[0].rank, mask)) return false;
    bool keep = attr_int(c, "keepdims") != 0;
    struct itr_type t = c->in[0];
    t.rank = 0;
    for (int i = 0; i < c->in[0].rank; i++) {
        if (!mask[i]) t.dims[t.rank++] = c->in[0].dims[i];
        else if (keep) t.dims[t.rank++] = dconst(c, 1);
    }
    return set1(c, t);
}

bool shape_argreduce(struct itr_shape_ctx *c) {
    if (!need_num(c, 0)) return false;
    const struct itr_type *x = &c->in[0];
    int ax;
    if (x->rank == 0) return itr_shape_error(c, "needs an operand of rank >= 1, got a scalar");
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    bool keep = attr_int(c, "keepdims") != 0;
    struct itr_type t = *x;
    t.dtype = ITR_I64;
    t.rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (i != ax) t.dims[t.rank++] = x->dims[i];
        else if (keep) t.dims[t.rank++] = dconst(c, 1);
    }
    return set1(c, t);
}

// ------------------------------------------------------------ matmul

bool shape_matmul(struct itr_shape_ctx *c) {
    const struct itr_type *a = &c->in[0], *b = &c->in[1];
    if (!same_dtype(c, 0, 1) || !need_num(c, 0)) return false;
    if (a->rank < 2 || b->rank < 2)
        return itr_shape_error(c, "operands must have rank >= 2 (got ranks %d and %d; unsqueeze vectors)", a->rank,
                               b->rank);
    itr_dim k1 = a->dims[a->rank - 1], k2 = b->dims[b->rank - 2];
    if (k1 != k2)
        return itr_shape_error(c, "inner dimensions differ: %s vs %s", dstr(c, k1).s, dstr(c, k2).s);
    struct itr_type ba = *a, bb = *b, t;
    ba.rank -= 2;
    bb.rank -= 2;
    if (!itr_broadcast_types(c, &ba, &bb, &t, 0, 1)) return false;
    t.dims[t.rank++] = a->dims[a->rank - 2];
    t.dims[t.rank++] = b->dims[b->rank - 1];
    if (t.rank > ITR_MAX_RANK) return itr_shape_error(c, "result rank exceeds %d", ITR_MAX_RANK);
    return set1(c, t);
}

// ------------------------------------------------------------ movement

// A product of dims as a constant coefficient times a sorted list of
// non-constant factors, found by flattening MUL nodes. Two products with the
// same factors are equal exactly when their coefficients are.
struct product {
    int64_t coef;
    itr_dim f[64];
    int n;
    bool overflow;
};

static void product_add(const struct itr_program *p, struct product *pr, itr_dim d) {
    const struct itr_dim_node *e = &p->dimnodes[d];
    if (e->kind == ITR_DIM_CONST) {
        // A negative size is malformed; treating it as "unknown" avoids overflow.
        if (e->value < 0 || (e->value != 0 && pr->coef > INT64_MAX / e->value)) pr->overflow = true;
        else pr->coef *= e->value;
    } else if (e->kind == ITR_DIM_MUL) {
        product_add(p, pr, e->a);
        product_add(p, pr, e->b);
    } else if (pr->n < 64) {
        pr->f[pr->n++] = d;
    } else {
        pr->overflow = true;
    }
}

static int cmp_dim(const void *a, const void *b) {
    itr_dim x = *(const itr_dim *)a, y = *(const itr_dim *)b;
    return (x > y) - (x < y);
}

static void product_of(const struct itr_program *p, const struct itr_type *t, int skip, struct product *pr) {
    memset(pr, 0, sizeof *pr);
    pr->coef = 1;
    for (int i = 0; i < t->rank; i++)
        if (i != skip) product_add(p, pr, t->dims[i]);
    qsort(pr->f, (size_t)pr->n, sizeof pr->f[0], cmp_dim);
}

static itr_dim product_dim(struct itr_program *p, const struct itr_type *t) {
    itr_dim r = itr_dim_const(p, 1);
    for (int i = 0; i < t->rank; i++) r = itr_dim_binary(p, ITR_DIM_MUL, r, t->dims[i]);
    return r;
}

bool shape_reshape(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    struct itr_type t;
    if (!dims_attr(c, "shape", x->dtype, true, &t)) return false;
    int infer = -1;
    for (int i = 0; i < t.rank; i++) {
        int64_t v;
        if (const_of(c, t.dims[i], &v) && v == -1) {
            if (infer >= 0) return itr_shape_error(c, "at most one dim of 'shape' may be -1 (inferred)");
            infer = i;
        }
    }
    struct product pin, pout;
    product_of(c->prog, x, -1, &pin);
    product_of(c->prog, &t, infer, &pout);
    bool unknown = pin.overflow || pout.overflow;   // too large to reason about: the run-time check decides
    if (unknown && infer < 0) return set1(c, t);
    if (infer >= 0 && !unknown && pout.coef == 0)
        return itr_shape_error(c, "cannot infer the -1 dim next to a zero-sized dim");
    if (infer >= 0) {
        // Cancel the target's factors against the input's; what remains is
        // the inferred dim. Without a clean cancellation, a floor division
        // stands for it and the run-time count check catches a remainder.
        itr_dim rest[64];
        int nrest = 0, j = 0;
        bool clean = true;
        for (int i = 0; i < pin.n; i++) {
            if (j < pout.n && pout.f[j] == pin.f[i]) j++;
            else if (j < pout.n && pout.f[j] < pin.f[i]) { clean = false; break; }
            else rest[nrest++] = pin.f[i];
        }
        if (j < pout.n || unknown) clean = false;
        if (clean && pout.coef != 0 && pin.coef % pout.coef == 0) {
            itr_dim d = dconst(c, pin.coef / pout.coef);
            for (int i = 0; i < nrest; i++) d = itr_dim_binary(c->prog, ITR_DIM_MUL, d, rest[i]);
            t.dims[infer] = d;
        } else if (clean && pin.n == 0 && pout.n == 0) {
            return itr_shape_error(c, "cannot infer the -1 dim: %lld elements do not divide into groups of %lld",
                                   (long long)pin.coef, (long long)pout.coef);
        } else {
            struct itr_type known = t;
            known.dims[infer] = dconst(c, 1);
            t.dims[infer] = itr_dim_binary(c->prog, ITR_DIM_DIV, product_dim(c->prog, x), product_dim(c->prog, &known));
        }
        return set1(c, t);
    }
    bool same_factors = pin.n == pout.n && memcmp(pin.f, pout.f, (size_t)pin.n * sizeof pin.f[0]) == 0;
    if (same_factors && pin.coef != pout.coef) {
        struct typestr ts = tstr(c, &t);
        return itr_shape_error(c, "element counts differ: %s has %s elements, target shape %s has %s",
                               tstr(c, x).s, dstr(c, product_dim(c->prog, x)).s, ts.s,
                               dstr(c, product_dim(c->prog, &t)).s);
    }
    return set1(c, t);
}

bool shape_transpose(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    const struct itr_attr *a = itr_shape_attr(c, "perm");
    struct itr_type t = *x;
    if (!a || a->kind != ITR_ATTR_INTS) {
        for (int i = 0; i < x->rank; i++) t.dims[i] = x->dims[x->rank - 1 - i];
        return set1(c, t);
    }
    if (a->u.ints.n != x->rank)
        return itr_shape_error(c, "perm has %d entries for an operand of rank %d", a->u.ints.n, x->rank);
    bool seen[ITR_MAX_RANK] = { false };
    for (int i = 0; i < x->rank; i++) {
        int ax;
        if (!norm_axis(c, a->u.ints.v[i], x->rank, "perm entry", &ax)) return false;
        if (seen[ax]) return itr_shape_error(c, "perm is not a permutation: axis %d appears twice", ax);
        seen[ax] = true;
        t.dims[i] = x->dims[ax];
    }
    return set1(c, t);
}

bool shape_expand(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    struct itr_type t;
    if (!dims_attr(c, "shape", x->dtype, false, &t)) return false;
    if (t.rank < x->rank)
        return itr_shape_error(c, "cannot expand rank %d to rank %d (target shape %s)", x->rank, t.rank, tstr(c, &t).s);
    itr_dim one = dconst(c, 1);
    for (int i = 0; i < x->rank; i++) {
        itr_dim dx = x->dims[i], dt = t.dims[t.rank - x->rank + i];
        if (dx != dt && dx != one)
            return itr_shape_error(c, "cannot expand dim %d of size %s to %s (only size-1 dims broadcast)", i,
                                   dstr(c, dx).s, dstr(c, dt).s);
    }
    return set1(c, t);
}

bool shape_squeeze(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    const struct itr_attr *a = itr_shape_attr(c, "axes");
    bool drop[ITR_MAX_RANK] = { false };
    itr_dim one = dconst(c, 1);
    if (!a || a->kind != ITR_ATTR_INTS || a->u.ints.n == 0) {
        for (int i = 0; i < x->rank; i++) drop[i] = x->dims[i] == one;
    } else {
        for (int i = 0; i < a->u.ints.n; i++) {
            int ax;
            if (!norm_axis(c, a->u.ints.v[i], x->rank, "axis", &ax)) return false;
            if (drop[ax]) return itr_shape_error(c, "axis %d is listed twice", ax);
            if (x->dims[ax] != one)
                return itr_shape_error(c, "cannot squeeze axis %d of size %s (must be 1)", ax, dstr(c, x->dims[ax]).s);
            drop[ax] = true;
        }
    }
    struct itr_type t = *x;
    t.rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) t.dims[t.rank++] = x->dims[i];
    return set1(c, t);
}

bool shape_unsqueeze(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    const struct itr_attr *a = itr_shape_attr(c, "axes");
    int n = a && a->kind == ITR_ATTR_INTS ? a->u.ints.n : 0;
    int rank = x->rank + n;
    if (rank > ITR_MAX_RANK) return itr_shape_error(c, "result rank %d exceeds %d", rank, ITR_MAX_RANK);
    bool ins[ITR_MAX_RANK] = { false };
    for (int i = 0; i < n; i++) {
        int ax;
        if (!norm_axis(c, a->u.ints.v[i], rank, "axis", &ax)) return false;
        if (ins[ax]) return itr_shape_error(c, "axis %d is listed twice", ax);
        ins[ax] = true;
    }
    struct itr_type t = *x;
    t.rank = rank;
    for (int i = 0, k = 0; i < rank; i++) t.dims[i] = ins[i] ? dconst(c, 1) : x->dims[k++];
    return set1(c, t);
}

// On a symbolic axis, an end at or beyond this means "to the end of the
// axis" (numpy's x[a:]); the text format writes such an end as INT32_MAX or
// larger. On a constant axis numpy clamping makes any large end mean that.
#define SLICE_TO_END ((int64_t)INT32_MAX)

// numpy's slice of a known axis size (ir.h); the ref kernel and the
// gradient rule use this one definition.
int64_t itr_slice_range(int64_t n, int64_t start, int64_t end, int64_t step, int64_t *first) {
    if (step > 0) {
        if (start < 0) start += n;
        if (start < 0) start = 0;
        if (start > n) start = n;
        if (end < 0) end += n;
        if (end < 0) end = 0;
        if (end > n) end = n;
        *first = start;
        // ceil((end - start) / step), without overflow for steps near INT64_MAX
    return end > start ? (end - start - 1) / step + 1 : 0;
    }
    if (start < 0) start += n;
    if (start < 0) start = -1;
    if (start >= n) start = n - 1;
    if (end < 0) end += n;
    if (end < -1) end = -1;
    if (end >= n) end = n - 1;
    *first = start;
    // The same with |step| in unsigned arithmetic: -INT64_MIN does not fit.
    return start > end ? (int64_t)(((uint64_t)(start - end) - 1) / (0 - (uint64_t)step) + 1) : 0;
}

bool shape_slice(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    const struct itr_attr *axes = itr_shape_attr(c, "axes"), *starts = itr_shape_attr(c, "starts"),
                          *ends = itr_shape_attr(c, "ends"), *steps = itr_shape_attr(c, "steps");
    int n = axes->u.ints.n;
    if (starts->u.ints.n != n || ends->u.ints.n != n)
        return itr_shape_error(c, "axes, starts and ends must have the same length (got %d, %d, %d)", n,
                               starts->u.ints.n, ends->u.ints.n);
    bool has_steps = steps && steps->kind == ITR_ATTR_INTS;
    if (has_steps && steps->u.ints.n != n)
        return itr_shape_error(c, "steps has %d entries for %d axes", steps->u.ints.n, n);
    struct itr_type t = *x;
    bool seen[ITR_MAX_RANK] = { false };
    for (int i = 0; i < n; i++) {
        int ax;
        if (!norm_axis(c, axes->u.ints.v[i], x->rank, "axis", &ax)) return false;
        if (seen[ax]) return itr_shape_error(c, "axis %d is sliced twice", ax);
        seen[ax] = true;
        int64_t s = starts->u.ints.v[i], e = ends->u.ints.v[i], k = has_steps ? steps->u.ints.v[i] : 1;
        if (k == 0) return itr_shape_error(c, "slice step of axis %d is 0", ax);
        int64_t len, first;
        if (const_of(c, x->dims[ax], &len)) {
            t.dims[ax] = dconst(c, itr_slice_range(len, s, e, k, &first));
            continue;
        }
        if (k < 0)
            return itr_shape_error(c, "a negative step needs a constant axis size; axis %d has size %s", ax,
                                   dstr(c, x->dims[ax]).s);
        // Symbolic size L: start and end are each either c or L+c (c < 0);
        // the length is (end - start) rounded up by the step. The run-time
        // kernel checks that the clamped numpy length agrees.
        // Bounds at or beyond ±SLICE_TO_END are past either end of any axis
        // (importers write INT64_MIN / INT64_MAX for "open"): a start before
        // the first element starts there, an end before it leaves nothing.
        if (s <= -SLICE_TO_END) s = 0;
        if (e <= -SLICE_TO_END) { t.dims[ax] = dconst(c, 0); continue; }
        bool s_rel = s < 0, e_rel = e < 0, e_all = e >= SLICE_TO_END;
        if (s >= SLICE_TO_END) { t.dims[ax] = dconst(c, 0); continue; }
        int64_t off = (e_all ? 0 : e) - s;
        int l_coef = (e_rel || e_all ? 1 : 0) - (s_rel ? 1 : 0);
        itr_dim L = x->dims[ax], d;
        if (l_coef == 0) d = dconst(c, off < 0 ? 0 : off);
        else if (l_coef == 1) d = dim_plus(c, L, off);
        else d = itr_dim_binary(c->prog, ITR_DIM_SUB, dconst(c, off), L);
        if (k > 1) d = itr_dim_binary(c->prog, ITR_DIM_DIV, dim_plus(c, d, k - 1), dconst(c, k));
        t.dims[ax] = d;
    }
    return set1(c, t);
}

bool shape_concat(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    if (x->rank == 0) return itr_shape_error(c, "cannot concatenate scalars (unsqueeze them first)");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    struct itr_type t = *x;
    for (int i = 1; i < c->n_in; i++) {
        const struct itr_type *y = &c->in[i];
        if (!same_dtype(c, 0, i)) return false;
        if (y->rank != x->rank)
            return itr_shape_error(c, "operand %d has rank %d, operand 0 has rank %d", i, y->rank, x->rank);
        for (int k = 0; k < x->rank; k++)
            if (k != ax && y->dims[k] != x->dims[k])
                return itr_shape_error(c, "operand %d differs from operand 0 in dim %d (%s vs %s); only the "
                                       "concatenation axis %d may differ",
                                       i, k, dstr(c, y->dims[k]).s, dstr(c, x->dims[k]).s, ax);
        t.dims[ax] = itr_dim_binary(c->prog, ITR_DIM_ADD, t.dims[ax], y->dims[ax]);
    }
    return set1(c, t);
}

bool shape_pad(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    const struct itr_attr *a = itr_shape_attr(c, "pads");
    if (a->u.ints.n != 2 * x->rank)
        return itr_shape_error(c, "pads has %d entries; rank %d needs %d (before and after per axis)", a->u.ints.n,
                               x->rank, 2 * x->rank);
    struct itr_type t = *x;
    for (int i = 0; i < x->rank; i++) {
        int64_t b = a->u.ints.v[2 * i], e = a->u.ints.v[2 * i + 1];
        if (b < 0 || e < 0)
            return itr_shape_error(c, "pads of axis %d are negative (%lld, %lld); use slice to crop", i, (long long)b,
                                   (long long)e);
        // One constant term, so that padding L by (1, 1) gives L+2, not L+1+1.
        t.dims[i] = dim_plus(c, x->dims[i], b + e);
    }
    return set1(c, t);
}

// ------------------------------------------------------------ indexing

static bool gather_type(struct itr_shape_ctx *c, const struct itr_type *x, const struct itr_type *idx, int ax,
                        struct itr_type *t) {
    int rank = x->rank - 1 + idx->rank;
    if (rank > ITR_MAX_RANK) return itr_shape_error(c, "result rank %d exceeds %d", rank, ITR_MAX_RANK);
    *t = *x;
    t->rank = 0;
    for (int i = 0; i < ax; i++) t->dims[t->rank++] = x->dims[i];
    for (int i = 0; i < idx->rank; i++) t->dims[t->rank++] = idx->dims[i];
    for (int i = ax + 1; i < x->rank; i++) t->dims[t->rank++] = x->dims[i];
    return true;
}

bool shape_gather(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    if (!need_int(c, 1, "index")) return false;
    if (x->rank == 0) return itr_shape_error(c, "cannot gather from a scalar");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    struct itr_type t;
    if (!gather_type(c, x, &c->in[1], ax, &t)) return false;
    return set1(c, t);
}

bool shape_scatter_add(struct itr_shape_ctx *c) {
    const struct itr_type *base = &c->in[0];
    if (!need_num(c, 0) || !need_int(c, 1, "index") || !same_dtype(c, 0, 2)) return false;
    if (base->rank == 0) return itr_shape_error(c, "cannot scatter into a scalar");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), base->rank, "axis", &ax)) return false;
    struct itr_type want;
    if (!gather_type(c, base, &c->in[1], ax, &want)) return false;
    want.dtype = c->in[2].dtype;
    if (!itr_type_equal(&want, &c->in[2]))
        return itr_shape_error(c, "updates must have shape base[:axis] + index + base[axis+1:] = %s, got %s",
                               tstr(c, &want).s, tstr(c, &c->in[2]).s);
    return set1(c, *base);
}

bool shape_take_along(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0], *idx = &c->in[1];
    if (!need_int(c, 1, "index")) return false;
    if (x->rank == 0) return itr_shape_error(c, "cannot index a scalar");
    if (idx->rank != x->rank)
        return itr_shape_error(c, "index must have the operand's rank %d, got rank %d", x->rank, idx->rank);
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    itr_dim one = dconst(c, 1);
    struct itr_type t = *x;
    for (int i = 0; i < x->rank; i++) {
        if (i == ax) { t.dims[i] = idx->dims[i]; continue; }
        itr_dim a = x->dims[i], b = idx->dims[i];
        if (a == b || b == one) t.dims[i] = a;
        else if (a == one) t.dims[i] = b;
        else
            return itr_shape_error(c, "operand and index do not broadcast in dim %d: %s vs %s", i, dstr(c, a).s,
                                   dstr(c, b).s);
    }
    return set1(c, t);
}

bool shape_scatter_add_along(struct itr_shape_ctx *c) {
    const struct itr_type *base = &c->in[0], *idx = &c->in[1], *upd = &c->in[2];
    if (!need_num(c, 0) || !need_int(c, 1, "index") || !same_dtype(c, 0, 2)) return false;
    if (base->rank == 0) return itr_shape_error(c, "cannot scatter into a scalar");
    if (idx->rank != base->rank || upd->rank != base->rank)
        return itr_shape_error(c, "index and updates must have the base's rank %d (got %d and %d)", base->rank,
                               idx->rank, upd->rank);
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), base->rank, "axis", &ax)) return false;
    itr_dim one = dconst(c, 1);
    for (int i = 0; i < base->rank; i++) {
        // Index and updates span the iteration space; off the axis the base
        // broadcasts against it (a size-1 base dim accumulates the whole span).
        itr_dim a = idx->dims[i], b = upd->dims[i], s;
        if (a == b || b == one) s = a;
        else if (a == one) s = b;
        else
            return itr_shape_error(c, "index and updates do not broadcast in dim %d: %s vs %s", i, dstr(c, a).s,
                                   dstr(c, b).s);
        if (i != ax && s != base->dims[i] && s != one && base->dims[i] != one)
            return itr_shape_error(c, "dim %d of index/updates (%s) does not match the base (%s)", i, dstr(c, s).s,
                                   dstr(c, base->dims[i]).s);
    }
    return set1(c, *base);
}

bool shape_sort(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    if (!need_num(c, 0)) return false;
    if (x->rank == 0) return itr_shape_error(c, "cannot sort a scalar");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    c->out[0] = *x;
    c->out[1] = *x;
    c->out[1].dtype = ITR_I64;
    c->n_out = 2;
    return true;
}

bool shape_topk(struct itr_shape_ctx *c) {
    const struct itr_type *x = &c->in[0];
    if (!need_num(c, 0)) return false;
    if (x->rank == 0) return itr_shape_error(c, "topk of a scalar");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), x->rank, "axis", &ax)) return false;
    int64_t k = attr_int(c, "k"), n;
    if (k < 0) return itr_shape_error(c, "k must be >= 0, got %lld", (long long)k);
    if (const_of(c, x->dims[ax], &n) && k > n)
        return itr_shape_error(c, "k = %lld exceeds the size %lld of axis %d", (long long)k, (long long)n, ax);
    struct itr_type t = *x;
    t.dims[ax] = dconst(c, k);
    c->out[0] = t;
    c->out[1] = t;
    c->out[1].dtype = ITR_I64;
    c->n_out = 2;
    return true;
}

// ------------------------------------------------------------ sources

bool shape_constant(struct itr_shape_ctx *c) {
    const struct itr_attr *a = itr_shape_attr(c, "value");
    if (!a || a->kind != ITR_ATTR_TENSOR || !a->u.tensor) return itr_shape_error(c, "attribute 'value' holds no tensor");
    const struct itr_tensor *v = a->u.tensor;
    if (v->rank < 0 || v->rank > ITR_MAX_RANK || (unsigned)v->dtype >= ITR_DTYPE_COUNT)
        return itr_shape_error(c, "attribute 'value' is not a valid tensor");
    struct itr_type t;
    memset(&t, 0, sizeof t);
    t.dtype = v->dtype;
    t.rank = v->rank;
    for (int i = 0; i < v->rank; i++) t.dims[i] = dconst(c, v->shape[i]);
    return set1(c, t);
}

static bool dtype_attr(struct itr_shape_ctx *c, enum itr_dtype *dt) {
    const struct itr_attr *a = itr_shape_attr(c, "dtype");
    if (!a || a->kind != ITR_ATTR_DTYPE || (unsigned)a->u.dtype >= ITR_DTYPE_COUNT)
        return itr_shape_error(c, "attribute 'dtype' must name a dtype");
    *dt = a->u.dtype;
    return true;
}

bool shape_full(struct itr_shape_ctx *c) {
    enum itr_dtype dt = ITR_F32;
    struct itr_type t;
    if (!dtype_attr(c, &dt) || !dims_attr(c, "shape", dt, false, &t)) return false;
    return set1(c, t);
}

bool shape_iota(struct itr_shape_ctx *c) {
    enum itr_dtype dt = ITR_F32;
    struct itr_type t;
    if (!dtype_attr(c, &dt) || !dims_attr(c, "shape", dt, false, &t)) return false;
    if (dt == ITR_BOOL) return itr_shape_error(c, "iota needs a numeric dtype, got bool");
    if (t.rank == 0) return itr_shape_error(c, "iota needs a shape of rank >= 1");
    int ax;
    if (!norm_axis(c, attr_int(c, "axis"), t.rank, "axis", &ax)) return false;
    return set1(c, t);
}

bool shape_random(struct itr_shape_ctx *c) {
    enum itr_dtype dt = ITR_F32;
    struct itr_type t;
    if (!dtype_attr(c, &dt) || !dims_attr(c, "shape", dt, false, &t)) return false;
    if (!itr_dtype_is_float(dt)) return itr_shape_error(c, "random ops produce f32 or f64, not %s", itr_dtype_name(dt));
    const struct itr_type *seed = &c->in[0];
    if (seed->rank != 0 || !itr_dtype_is_int(seed->dtype))
        return itr_shape_error(c, "the seed must be an i32 or i64 scalar, got %s", tstr(c, seed).s);
    if (c->op == ITR_OP_RANDOM_BERNOULLI) {
        double p = attr_float(c, "p");
        if (!(p >= 0 && p <= 1)) return itr_shape_error(c, "probability p = %g is outside [0, 1]", p);
    } else if (c->op == ITR_OP_RANDOM_NORMAL) {
        double s = attr_float(c, "std");
        if (!(s >= 0)) return itr_shape_error(c, "std = %g must be >= 0", s);
    } else if (c->op == ITR_OP_RANDOM_UNIFORM) {
        double lo = attr_float(c, "low"), hi = attr_float(c, "high");
        if (!(lo <= hi)) return itr_shape_error(c, "low = %g exceeds high = %g", lo, hi);
    }
    return set1(c, t);
}

// ------------------------------------------------------------ scan

bool shape_scan(struct itr_shape_ctx *c) {
    const struct itr_attr *ba = itr_shape_attr(c, "body");
    if (!ba || ba->kind != ITR_ATTR_GRAPH || !ba->u.graph) return itr_shape_error(c, "attribute 'body' names no graph");
    const struct itr_graph *body = ba->u.graph;
    int64_t nc = attr_int(c, "n_carry"), ns = attr_int(c, "n_scan"), axis = attr_int(c, "axis");
    if (body->prog != c->prog) return itr_shape_error(c, "body graph '%s' belongs to another program", body->name);
    if (body->kind != ITR_GRAPH_BODY)
        return itr_shape_error(c, "body graph '%s' is an entry point, not a scan body", body->name);
    if (nc < 0 || ns < 1 || nc > c->n_in || ns > c->n_in - nc)   // no nc + ns: crafted plans may hold INT64_MAX
        return itr_shape_error(c, "needs n_carry >= 0 carries and n_scan >= 1 scanned operands among its %d operands "
                               "(n_carry = %lld, n_scan = %lld)", c->n_in, (long long)nc, (long long)ns);
    int n_const = c->n_in - (int)nc - (int)ns;
    if (body->n_inputs != c->n_in)
        return itr_shape_error(c, "body '%s' takes %d inputs; scan passes %d (%lld carries, %lld slices, %d constants)",
                               body->name, body->n_inputs, c->n_in, (long long)nc, (long long)ns, n_const);
    if (body->n_outputs < nc)
        return itr_shape_error(c, "body '%s' returns %d values, fewer than its %lld carries", body->name,
                               body->n_outputs, (long long)nc);
    if (body->n_outputs > 16) return itr_shape_error(c, "body '%s' returns more than 16 values", body->name);

    // The scan length: every scanned operand's axis dim, which must agree.
    itr_dim len = -1;
    for (int i = (int)nc; i < nc + ns; i++) {
        const struct itr_type *s = &c->in[i];
        int ax;
        if (s->rank == 0) return itr_shape_error(c, "scanned operand %d is a scalar; it needs an axis to scan", i);
        if (!norm_axis(c, axis, s->rank, "scan axis", &ax)) return false;
        if (len >= 0 && s->dims[ax] != len)
            return itr_shape_error(c, "scanned operands have different lengths along axis %d: %s (operand %d) vs %s "
                                   "(operand %d)", ax, dstr(c, len).s, (int)nc, dstr(c, s->dims[ax]).s, i);
        len = s->dims[ax];
    }

    // The body's signature: carries, per-step slices, constants.
    for (int i = 0; i < c->n_in; i++) {
        struct itr_type want = c->in[i];
        const char *role = i < nc ? "carry" : i < nc + ns ? "per-step slice of scanned operand" : "constant";
        if (i >= nc && i < nc + ns) {
            int ax;
            itr_axis_normalize(axis, want.rank, &ax);
            for (int k = ax; k + 1 < want.rank; k++) want.dims[k] = want.dims[k + 1];
            want.rank--;
        }
        const struct itr_type *have = &body->values[body->inputs[i]].type;
        if (!itr_type_equal(&want, have))
            return itr_shape_error(c, "body '%s' input %d ('%s', %s %d) has type %s, expected %s", body->name, i,
                                   body->values[body->inputs[i]].name, role, i, tstr(c, have).s, tstr(c, &want).s);
    }
    for (int i = 0; i < nc; i++) {
        const struct itr_type *have = &body->values[body->outputs[i]].type;
        if (!itr_type_equal(&c->in[i], have))
            return itr_shape_error(c, "body '%s' output %d (new carry %d) has type %s; the carry's type is %s",
                                   body->name, i, i, tstr(c, have).s, tstr(c, &c->in[i]).s);
        c->out[i] = c->in[i];
    }
    for (int i = (int)nc; i < body->n_outputs; i++) {
        const struct itr_type *step = &body->values[body->outputs[i]].type;
        if (step->rank + 1 > ITR_MAX_RANK)
            return itr_shape_error(c, "body '%s' output %d has rank %d; stacking it exceeds rank %d", body->name, i,
                                   step->rank, ITR_MAX_RANK);
        int ax;
        if (!itr_axis_normalize(axis, step->rank + 1, &ax))
            return itr_shape_error(c, "scan axis %lld is out of range for stacking body output %d (%s)",
                                   (long long)axis, i, tstr(c, step).s);
        struct itr_type t = *step;
        t.rank = step->rank + 1;
        for (int k = step->rank; k > ax; k--) t.dims[k] = step->dims[k - 1];
        t.dims[ax] = len;
        c->out[i] = t;
    }
    c->n_out = body->n_outputs;
    return true;
}
