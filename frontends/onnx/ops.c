// The frontend op table: one row per ONNX op (name, opset range, lowering),
// each lowering building the op from our primitives (docs/onnx.md has the
// table with what each row supports and what it refuses).
//
// Values a primitive takes as attributes (shapes, axes, bounds, k) must be
// known when importing; where an ONNX model computes them from shapes
// (Shape -> Gather -> Concat -> Reshape, as PyTorch exports), the lowerings
// below fold that arithmetic into dim expressions instead of emitting it.
#include <math.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"

#define ONNX_MAX_OPSET 17   // Debian's onnx 1.12

static bool has_in(const struct ox_node *n, int i) { return i < n->n_in && n->in[i]; }

static int32_t in_id(struct ox *x, struct ox_node *n, int i) {
    if (!has_in(n, i)) {
        ox_error(x, "input %d is required", i);
        return -1;
    }
    return ox_id(x, n->in[i]);
}

static int rank_of(struct ox *x, int32_t id) { return id < 0 ? 0 : ox_type(x, id)->rank; }
static enum itr_dtype dtype_of(struct ox *x, int32_t id) { return ox_type(x, id)->dtype; }

static int32_t op_ints(struct ox *x, enum itr_op op, int32_t a, const char *name, const int64_t *v, int nv) {
    struct itr_attr *at = ox_attrs(x, op);
    ox_set_ints(x, at, op, name, v, nv);
    return ox_op(x, op, &a, 1, at);
}

static int32_t scalar_like(struct ox *x, int32_t like, double v) {
    return like < 0 ? -1 : ox_scalar(x, x->g, dtype_of(x, like), v);
}

static int32_t mul_s(struct ox *x, int32_t a, double s) { return ox_op2(x, ITR_OP_MUL, a, scalar_like(x, a, s)); }
static int32_t add_s(struct ox *x, int32_t a, double s) { return ox_op2(x, ITR_OP_ADD, a, scalar_like(x, a, s)); }

static int32_t reduce(struct ox *x, enum itr_op op, int32_t a, const int64_t *axes, int nax, bool keepdims) {
    struct itr_attr *at = ox_attrs(x, op);
    if (nax >= 0) ox_set_ints(x, at, op, "axes", axes, nax);
    ox_set_int(x, at, op, "keepdims", keepdims);
    return ox_op(x, op, &a, 1, at);
}

// Axes [from, rank).
static int tail_axes(int from, int rank, int64_t *axes) {
    int n = 0;
    for (int i = from; i < rank; i++) axes[n++] = i;
    return n;
}

static bool norm_axis(struct ox *x, int64_t axis, int rank, int *out) {
    *out = 0;
    if (axis < -rank || axis >= (rank ? rank : 1)) return ox_error(x, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}

// ------------------------------------------------------------ elementwise

static int fold_known(struct ox *x, struct ox_node *n, int count);

static bool l_unary(struct ox *x, struct ox_node *n) {
    if (fold_known(x, n, 1)) return true;
    return ox_out(x, n, 0, ox_op1(x, n->row->op, in_id(x, n, 0)));
}

static bool l_identity(struct ox *x, struct ox_node *n) {
    struct ox_val *v = n->in[0];
    if (!has_in(n, 0)) return ox_error(x, "input 0 is required");
    if (v->id < 0 && v->input < 0 && v->k) return ox_out_known(x, n, 0, itr_tensor_clone(v->k));
    if (v->id < 0 && v->input < 0 && v->dv) return ox_out_dims(x, n, 0, v->dv, v->dv_n, v->dv_scalar, v->dv_dtype);
    return ox_out(x, n, 0, ox_id(x, v));
}

// Integer ops on values known as dims (shape arithmetic). 1: folded,
// 0: not foldable (emit the op), -1: error.
static int fold_int_binary(struct ox *x, struct ox_node *n, const char *onnx_op) {
    if (n->n_in != 2 || !has_in(n, 0) || !has_in(n, 1)) return 0;
    struct ox_val *a = n->in[0], *b = n->in[1];
    bool known_a = (a->dv || (a->k && itr_dtype_is_int(a->k->dtype) && a->k->rank <= 1)) && a->id < 0;
    bool known_b = (b->dv || (b->k && itr_dtype_is_int(b->k->dtype) && b->k->rank <= 1)) && b->id < 0;
    if (!known_a || !known_b || (!a->dv && !b->dv)) return 0;
    itr_dim *da, *db;
    int na, nb;
    bool sa, sb;
    ox_known_dims(x, a, &da, &na, &sa);
    ox_known_dims(x, b, &db, &nb, &sb);
    int m = na > nb ? na : nb;
    int r = 1;
    if ((na != nb && na != 1 && nb != 1) || m > 64) r = 0;
    itr_dim out[64];
    for (int i = 0; r == 1 && i < m; i++) {
        itr_dim p = da[na == 1 ? 0 : i], q = db[nb == 1 ? 0 : i];
        int64_t cp, cq;
        bool kp = itr_dim_is_const(x->p, p, &cp), kq = itr_dim_is_const(x->p, q, &cq);
        if (strcmp(onnx_op, "Add") == 0) out[i] = itr_dim_binary(x->p, ITR_DIM_ADD, p, q);
        else if (strcmp(onnx_op, "Sub") == 0) out[i] = itr_dim_binary(x->p, ITR_DIM_SUB, p, q);
        else if (strcmp(onnx_op, "Mul") == 0) out[i] = itr_dim_binary(x->p, ITR_DIM_MUL, p, q);
        else if (strcmp(onnx_op, "Div") == 0) {
            // ONNX truncates; dims are non-negative, where floor is the same.
            if (kp && kq) {
                if (cq == 0) r = 0;
                else out[i] = itr_dim_const(x->p, cp / cq);
            } else if (kq && cq > 0) out[i] = itr_dim_binary(x->p, ITR_DIM_DIV, p, q);
            else r = 0;
        } else r = 0;
    }
    if (r == 1) ox_out_dims(x, n, 0, out, m, sa && sb, a->dv ? a->dv_dtype : b->dv_dtype);
    free(da);
    free(db);
    return r;
}

// Elementwise ops on small known tensors are computed here, so that
// constant subgraphs feeding shape operands (a Neg of a Constant, a Sub of
// two shapes' sizes) stay known. Evaluated in double, like the reference
// backend, and rounded once to the result's dtype.
static bool all_known(struct ox *x, struct ox_node *n, int count) {
    if (n->n_in < count) return false;
    for (int i = 0; i < count; i++) {
        struct ox_val *v = n->in[i];
        if (!v || v->id >= 0 || v->input >= 0 || !ox_known(x, v) || itr_tensor_numel(v->k) > 4096) return false;
    }
    return true;
}

static double eval_op(const char *op, double a, double b, double c, bool is_int) {
    if (!strcmp(op, "Neg")) return -a;
    if (!strcmp(op, "Abs")) return fabs(a);
    if (!strcmp(op, "Not")) return !a;
    if (!strcmp(op, "Sqrt")) return sqrt(a);
    if (!strcmp(op, "Exp")) return exp(a);
    if (!strcmp(op, "Log")) return log(a);
    if (!strcmp(op, "Reciprocal")) return 1.0 / a;
    if (!strcmp(op, "Add") || !strcmp(op, "Sum")) return a + b;
    if (!strcmp(op, "Sub")) return a - b;
    if (!strcmp(op, "Mul")) return a * b;
    if (!strcmp(op, "Div")) return is_int ? (b == 0 ? 0 : trunc(a / b)) : a / b;
    if (!strcmp(op, "Pow")) return pow(a, b);
    if (!strcmp(op, "Max")) return a > b || isnan(a) ? a : b;
    if (!strcmp(op, "Min")) return a < b || isnan(a) ? a : b;
    if (!strcmp(op, "Equal")) return a == b;
    if (!strcmp(op, "Less")) return a < b;
    if (!strcmp(op, "LessOrEqual")) return a <= b;
    if (!strcmp(op, "Greater")) return a > b;
    if (!strcmp(op, "GreaterOrEqual")) return a >= b;
    if (!strcmp(op, "And")) return a && b;
    if (!strcmp(op, "Or")) return a || b;
    if (!strcmp(op, "Xor")) return (a != 0) != (b != 0);
    if (!strcmp(op, "Where")) return a ? b : c;
    return NAN;
}

// 1: folded; 0: not foldable here.
static int fold_known(struct ox *x, struct ox_node *n, int count) {
    if (!all_known(x, n, count)) return 0;
    const char *op = n->pb->op_type;
    if (isnan(eval_op(op, 1, 1, 1, false)) && strcmp(op, "Log") && strcmp(op, "Sqrt")) return 0;
    const struct itr_tensor *t[3];
    int rank = 0;
    for (int i = 0; i < count; i++) {
        t[i] = n->in[i]->k;
        if (t[i]->rank > rank) rank = t[i]->rank;
    }
    int64_t shape[ITR_MAX_RANK];
    for (int a = 0; a < rank; a++) {
        shape[a] = 1;
        for (int i = 0; i < count; i++) {
            int ai = a - (rank - t[i]->rank);
            int64_t d = ai >= 0 ? t[i]->shape[ai] : 1;
            if (d != 1 && shape[a] != 1 && d != shape[a]) return 0;
            if (d != 1) shape[a] = d;
        }
    }
    bool cmp = !strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "LessOrEqual") || !strcmp(op, "Greater") ||
               !strcmp(op, "GreaterOrEqual");
    enum itr_dtype dt = cmp ? ITR_BOOL : t[count == 3 ? 1 : 0]->dtype;
    struct itr_tensor *out = itr_tensor_new(dt, rank, shape);
    if (!out) return 0;
    int64_t total = itr_tensor_numel(out);
    for (int64_t e = 0; e < total; e++) {
        double v[3] = { 0, 0, 0 };
        for (int i = 0; i < count; i++) {
            // The element of operand i that broadcasts to e.
            int64_t rem = e, idx = 0, stride = 1;
            for (int a = rank - 1; a >= 0; a--) {
                int64_t pos = rem % shape[a];
                rem /= shape[a];
                int ai = a - (rank - t[i]->rank);
                if (ai < 0) continue;
                if (t[i]->shape[ai] != 1) idx += pos * stride;
                stride *= t[i]->shape[ai];
            }
            v[i] = itr_tensor_get(t[i], idx);
        }
        itr_tensor_set(out, e, eval_op(op, v[0], v[1], v[2], itr_dtype_is_int(t[0]->dtype)));
    }
    return ox_out_known(x, n, 0, out) ? 1 : 0;
}

static bool l_binary(struct ox *x, struct ox_node *n) {
    if (fold_known(x, n, 2)) return true;
    int f = fold_int_binary(x, n, n->pb->op_type);
    if (f) return f > 0;
    return ox_out(x, n, 0, ox_op2(x, n->row->op, in_id(x, n, 0), in_id(x, n, 1)));
}

// ONNX integer division truncates toward zero; ours floors. They differ
// when the remainder is non-zero and the signs differ.
static bool l_div(struct ox *x, struct ox_node *n) {
    if (fold_known(x, n, 2)) return true;
    int f = fold_int_binary(x, n, "Div");
    if (f) return f > 0;
    int32_t a = in_id(x, n, 0), b = in_id(x, n, 1);
    if (a < 0 || b < 0) return false;
    int32_t q = ox_op2(x, ITR_OP_DIV, a, b);
    if (!itr_dtype_is_int(dtype_of(x, a)) || q < 0) return ox_out(x, n, 0, q);
    int32_t zero = scalar_like(x, a, 0);
    int32_t r = ox_op2(x, ITR_OP_SUB, a, ox_op2(x, ITR_OP_MUL, q, b));
    int32_t fix = ox_op2(x, ITR_OP_AND, ox_op2(x, ITR_OP_NE, r, zero),
                         ox_op2(x, ITR_OP_NE, ox_op2(x, ITR_OP_LT, a, zero), ox_op2(x, ITR_OP_LT, b, zero)));
    int32_t ins[3] = { fix, add_s(x, q, 1), q };
    return ox_out(x, n, 0, ox_op(x, ITR_OP_WHERE, ins, 3, NULL));
}

// Mod: fmod = 0 is Python's % (the divisor's sign), a - b*floor(a/b), which
// our floor division gives for integers; fmod = 1 is C's fmod, a -
// b*trunc(a/b), with trunc through an i64 cast for floats.
static bool l_mod(struct ox *x, struct ox_node *n) {
    int32_t a = in_id(x, n, 0), b = in_id(x, n, 1);
    if (a < 0 || b < 0) return false;
    bool fmod_ = ox_attr_i(n, "fmod", 0) != 0;
    enum itr_dtype dt = dtype_of(x, a);
    int32_t q;
    if (itr_dtype_is_float(dt)) {
        if (!fmod_) return ox_error(x, "Mod of floats needs fmod = 1 (the ONNX spec requires it)");
        struct itr_attr *c1 = ox_attrs(x, ITR_OP_CAST), *c2 = ox_attrs(x, ITR_OP_CAST);
        ox_set_dtype(x, c1, ITR_OP_CAST, "dtype", ITR_I64);
        ox_set_dtype(x, c2, ITR_OP_CAST, "dtype", dt);
        int32_t d = ox_op2(x, ITR_OP_DIV, a, b);
        int32_t t = ox_op(x, ITR_OP_CAST, &d, 1, c1);
        q = ox_op(x, ITR_OP_CAST, &t, 1, c2);
    } else if (fmod_) {
        // Truncating division, as l_div.
        int32_t fq = ox_op2(x, ITR_OP_DIV, a, b);
        int32_t zero = scalar_like(x, a, 0);
        int32_t r = ox_op2(x, ITR_OP_SUB, a, ox_op2(x, ITR_OP_MUL, fq, b));
        int32_t fix = ox_op2(x, ITR_OP_AND, ox_op2(x, ITR_OP_NE, r, zero),
                             ox_op2(x, ITR_OP_NE, ox_op2(x, ITR_OP_LT, a, zero), ox_op2(x, ITR_OP_LT, b, zero)));
        int32_t ins[3] = { fix, add_s(x, fq, 1), fq };
        q = ox_op(x, ITR_OP_WHERE, ins, 3, NULL);
    } else {
        q = ox_op2(x, ITR_OP_DIV, a, b);
    }
    return ox_out(x, n, 0, ox_op2(x, ITR_OP_SUB, a, ox_op2(x, ITR_OP_MUL, b, q)));
}

static int32_t cast_to(struct ox *x, int32_t a, enum itr_dtype dt) {
    if (a < 0 || dtype_of(x, a) == dt) return a;
    struct itr_attr *at = ox_attrs(x, ITR_OP_CAST);
    ox_set_dtype(x, at, ITR_OP_CAST, "dtype", dt);
    return ox_op(x, ITR_OP_CAST, &a, 1, at);
}

// Pow's exponent may have another type than the base; integer bases go
// through f64 (exact for the integers whose powers fit).
static bool l_pow(struct ox *x, struct ox_node *n) {
    int32_t a = in_id(x, n, 0), b = in_id(x, n, 1);
    if (a < 0 || b < 0) return false;
    enum itr_dtype dt = dtype_of(x, a);
    enum itr_dtype ft = itr_dtype_is_float(dt) ? dt : ITR_F64;
    int32_t y = ox_op2(x, ITR_OP_POW, cast_to(x, a, ft), cast_to(x, b, ft));
    return ox_out(x, n, 0, cast_to(x, y, dt));
}

// Max, Min, Sum, Mean: variadic, folded pairwise.
static bool l_variadic(struct ox *x, struct ox_node *n) {
    if (n->n_in == 2 && n->row->op != ITR_OP_MEAN && fold_known(x, n, 2)) return true;
    enum itr_op op = n->row->op == ITR_OP_MEAN ? ITR_OP_ADD : n->row->op;
    int32_t acc = in_id(x, n, 0);
    for (int i = 1; i < n->n_in && acc >= 0; i++) acc = ox_op2(x, op, acc, in_id(x, n, i));
    if (n->row->op == ITR_OP_MEAN && acc >= 0 && n->n_in > 1) {
        if (!itr_dtype_is_float(dtype_of(x, acc))) return ox_error(x, "Mean of integers is not supported");
        acc = mul_s(x, acc, 1.0 / n->n_in);
    }
    return ox_out(x, n, 0, acc);
}

static bool l_where(struct ox *x, struct ox_node *n) {
    if (fold_known(x, n, 3)) return true;
    int32_t ins[3] = { in_id(x, n, 0), in_id(x, n, 1), in_id(x, n, 2) };
    return ox_out(x, n, 0, ox_op(x, ITR_OP_WHERE, ins, 3, NULL));
}

static bool cast_value(struct ox *x, struct ox_node *n, enum itr_dtype dt) {
    struct ox_val *v = n->in[0];
    if (v->id < 0 && v->input < 0 && v->dv && itr_dtype_is_int(dt))
        return ox_out_dims(x, n, 0, v->dv, v->dv_n, v->dv_scalar, dt);
    if (v->id < 0 && v->input < 0 && ox_known(x, v)) return ox_out_known(x, n, 0, itr_tensor_cast(v->k, dt));
    return ox_out(x, n, 0, cast_to(x, ox_id(x, v), dt));
}

static bool l_cast(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 0)) return ox_error(x, "input 0 is required");
    int64_t to = ox_attr_i(n, "to", -1);
    enum itr_dtype dt;
    if (!ox_dtype_from_onnx((int32_t)to, &dt))
        return ox_error(x, "cast to ONNX type %s is not supported (f32, f64, i32, i64 and bool are)",
                        ox_onnx_type_name((int32_t)to));
    return cast_value(x, n, dt);
}

static bool l_castlike(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 0) || !has_in(n, 1)) return ox_error(x, "needs two inputs");
    struct ox_val *t = n->in[1];
    enum itr_dtype dt;
    if (t->id < 0 && t->k) dt = t->k->dtype;
    else {
        int32_t id = ox_id(x, t);
        if (id < 0) return false;
        dt = dtype_of(x, id);
    }
    return cast_value(x, n, dt);
}

// Clip: bounds are attributes before opset 11, optional inputs since.
static bool l_clip(struct ox *x, struct ox_node *n) {
    int32_t y = in_id(x, n, 0);
    if (y < 0) return false;
    if (x->opset < 11) {
        if (ox_attr(n, "min")) y = ox_op2(x, ITR_OP_MAXIMUM, y, scalar_like(x, y, ox_attr_f(n, "min", 0)));
        if (ox_attr(n, "max")) y = ox_op2(x, ITR_OP_MINIMUM, y, scalar_like(x, y, ox_attr_f(n, "max", 0)));
        return ox_out(x, n, 0, y);
    }
    if (has_in(n, 1)) y = ox_op2(x, ITR_OP_MAXIMUM, y, in_id(x, n, 1));
    if (has_in(n, 2)) y = ox_op2(x, ITR_OP_MINIMUM, y, in_id(x, n, 2));
    return ox_out(x, n, 0, y);
}

static int32_t where3(struct ox *x, int32_t c, int32_t a, int32_t b) {
    int32_t ins[3] = { c, a, b };
    return ox_op(x, ITR_OP_WHERE, ins, 3, NULL);
}

// Activations and functions without a primitive of their own, from their
// ONNX definitions.
static bool l_activation(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    const char *op = n->pb->op_type;
    int32_t zero = scalar_like(x, v, 0), y;
    if (strcmp(op, "LeakyRelu") == 0) {
        struct itr_attr *a = ox_attrs(x, ITR_OP_LEAKY_RELU);
        ox_set_float(x, a, ITR_OP_LEAKY_RELU, "alpha", ox_attr_f(n, "alpha", 0.01));
        y = ox_op(x, ITR_OP_LEAKY_RELU, &v, 1, a);
    } else if (strcmp(op, "Elu") == 0) {
        double al = ox_attr_f(n, "alpha", 1.0);
        y = where3(x, ox_op2(x, ITR_OP_GT, v, zero), v, mul_s(x, add_s(x, ox_op1(x, ITR_OP_EXP, v), -1), al));
    } else if (strcmp(op, "Selu") == 0) {
        double al = ox_attr_f(n, "alpha", 1.67326319217681884765625), ga = ox_attr_f(n, "gamma", 1.05070102214813232421875);
        y = mul_s(x, where3(x, ox_op2(x, ITR_OP_GT, v, zero), v, mul_s(x, add_s(x, ox_op1(x, ITR_OP_EXP, v), -1), al)), ga);
    } else if (strcmp(op, "Celu") == 0) {
        double al = ox_attr_f(n, "alpha", 1.0);
        int32_t e = mul_s(x, add_s(x, ox_op1(x, ITR_OP_EXP, mul_s(x, v, 1.0 / al)), -1), al);
        y = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MAXIMUM, v, zero), ox_op2(x, ITR_OP_MINIMUM, e, zero));
    } else if (strcmp(op, "Softplus") == 0) {
        // relu(x) + log(1 + e^-|x|): no overflow for large |x|.
        int32_t e = ox_op1(x, ITR_OP_EXP, ox_op1(x, ITR_OP_NEG, ox_op1(x, ITR_OP_ABS, v)));
        y = ox_op2(x, ITR_OP_ADD, ox_op1(x, ITR_OP_RELU, v), ox_op1(x, ITR_OP_LOG, add_s(x, e, 1)));
    } else if (strcmp(op, "Softsign") == 0) {
        y = ox_op2(x, ITR_OP_DIV, v, add_s(x, ox_op1(x, ITR_OP_ABS, v), 1));
    } else if (strcmp(op, "HardSigmoid") == 0) {
        int32_t t = add_s(x, mul_s(x, v, ox_attr_f(n, "alpha", 0.2)), ox_attr_f(n, "beta", 0.5));
        y = ox_op2(x, ITR_OP_MAXIMUM, ox_op2(x, ITR_OP_MINIMUM, t, scalar_like(x, v, 1)), zero);
    } else if (strcmp(op, "HardSwish") == 0) {
        int32_t t = add_s(x, mul_s(x, v, 1.0 / 6), 0.5);
        y = ox_op2(x, ITR_OP_MUL, v, ox_op2(x, ITR_OP_MAXIMUM, ox_op2(x, ITR_OP_MINIMUM, t, scalar_like(x, v, 1)), zero));
    } else if (strcmp(op, "ThresholdedRelu") == 0) {
        y = where3(x, ox_op2(x, ITR_OP_GT, v, scalar_like(x, v, ox_attr_f(n, "alpha", 1.0))), v, zero);
    } else if (strcmp(op, "PRelu") == 0) {
        int32_t s = in_id(x, n, 1);
        y = where3(x, ox_op2(x, ITR_OP_LT, v, zero), ox_op2(x, ITR_OP_MUL, v, s), v);
    } else if (strcmp(op, "Shrink") == 0) {
        double bias = ox_attr_f(n, "bias", 0), l = ox_attr_f(n, "lambd", 0.5);
        int32_t hi = ox_op2(x, ITR_OP_GT, v, scalar_like(x, v, l)), lo = ox_op2(x, ITR_OP_LT, v, scalar_like(x, v, -l));
        y = where3(x, lo, add_s(x, v, bias), where3(x, hi, add_s(x, v, -bias), zero));
    } else if (strcmp(op, "Tan") == 0) {
        y = ox_op2(x, ITR_OP_DIV, ox_op1(x, ITR_OP_SIN, v), ox_op1(x, ITR_OP_COS, v));
    } else if (strcmp(op, "Sinh") == 0 || strcmp(op, "Cosh") == 0) {
        int32_t ep = ox_op1(x, ITR_OP_EXP, v), en = ox_op1(x, ITR_OP_EXP, ox_op1(x, ITR_OP_NEG, v));
        y = mul_s(x, ox_op2(x, op[0] == 'S' ? ITR_OP_SUB : ITR_OP_ADD, ep, en), 0.5);
    } else if (strcmp(op, "Asinh") == 0) {
        y = ox_op1(x, ITR_OP_LOG, ox_op2(x, ITR_OP_ADD, v, ox_op1(x, ITR_OP_SQRT, add_s(x, ox_op2(x, ITR_OP_MUL, v, v), 1))));
    } else if (strcmp(op, "Acosh") == 0) {
        y = ox_op1(x, ITR_OP_LOG, ox_op2(x, ITR_OP_ADD, v, ox_op1(x, ITR_OP_SQRT, add_s(x, ox_op2(x, ITR_OP_MUL, v, v), -1))));
    } else if (strcmp(op, "Atanh") == 0) {
        int32_t one = scalar_like(x, v, 1);
        y = mul_s(x, ox_op1(x, ITR_OP_LOG, ox_op2(x, ITR_OP_DIV, ox_op2(x, ITR_OP_ADD, one, v), ox_op2(x, ITR_OP_SUB, one, v))), 0.5);
    } else if (strcmp(op, "IsNaN") == 0) {
        y = ox_op2(x, ITR_OP_NE, v, v);
    } else if (strcmp(op, "IsInf") == 0) {
        bool pos = ox_attr_i(n, "detect_positive", 1) != 0, neg = ox_attr_i(n, "detect_negative", 1) != 0;
        int32_t p = ox_op2(x, ITR_OP_EQ, v, scalar_like(x, v, INFINITY));
        int32_t m = ox_op2(x, ITR_OP_EQ, v, scalar_like(x, v, -INFINITY));
        if (pos && neg) y = ox_op2(x, ITR_OP_OR, p, m);
        else if (pos) y = p;
        else if (neg) y = m;
        else y = ox_op2(x, ITR_OP_NE, v, v), y = ox_op2(x, ITR_OP_AND, y, ox_op1(x, ITR_OP_NOT, y));
    } else {
        return ox_error(x, "no lowering for '%s'", op);
    }
    return ox_out(x, n, 0, y);
}

// ------------------------------------------------------------ contraction

static bool l_matmul(struct ox *x, struct ox_node *n) {
    int32_t a = in_id(x, n, 0), b = in_id(x, n, 1);
    if (a < 0 || b < 0) return false;
    int ra = rank_of(x, a), rb = rank_of(x, b);
    if (ra == 0 || rb == 0) return ox_error(x, "MatMul operands must have rank >= 1");
    int64_t z = 0, one = 1, last = -1;
    // Vectors as in numpy: a [K] is a row [1, K], b [K] a column [K, 1],
    // and the added axis is dropped again.
    if (ra == 1) a = op_ints(x, ITR_OP_UNSQUEEZE, a, "axes", &z, 1);
    if (rb == 1) b = op_ints(x, ITR_OP_UNSQUEEZE, b, "axes", &one, 1);
    int32_t y = ox_op2(x, ITR_OP_MATMUL, a, b);
    if (rb == 1) y = op_ints(x, ITR_OP_SQUEEZE, y, "axes", &last, 1);
    if (ra == 1) y = op_ints(x, ITR_OP_SQUEEZE, y, "axes", &last, 1);
    return ox_out(x, n, 0, y);
}

static bool l_gemm(struct ox *x, struct ox_node *n) {
    int32_t a = in_id(x, n, 0), b = in_id(x, n, 1);
    if (a < 0 || b < 0) return false;
    if (ox_attr_i(n, "transA", 0)) a = ox_op1(x, ITR_OP_TRANSPOSE, a);
    if (ox_attr_i(n, "transB", 0)) b = ox_op1(x, ITR_OP_TRANSPOSE, b);
    double alpha = ox_attr_f(n, "alpha", 1.0), beta = ox_attr_f(n, "beta", 1.0);
    int32_t y = ox_op2(x, ITR_OP_MATMUL, a, b);
    if (alpha != 1.0) y = mul_s(x, y, alpha);
    if (has_in(n, 2) && beta != 0.0) {
        int32_t c = in_id(x, n, 2);
        if (beta != 1.0) c = mul_s(x, c, beta);
        y = ox_op2(x, ITR_OP_ADD, y, c);
    }
    return ox_out(x, n, 0, y);
}

// ------------------------------------------------------------ reductions

// Axes from the attribute (ReduceSum before 13, the others before 18) or
// from input 1. *nax = -1: every axis.
static bool reduce_axes(struct ox *x, struct ox_node *n, int64_t **axes, int *nax) {
    const int64_t *av;
    int an;
    *axes = NULL;
    *nax = -1;
    if (ox_attr_ints(n, "axes", &av, &an)) {
        *axes = malloc((size_t)(an ? an : 1) * sizeof **axes);
        if (!*axes) abort();
        if (an) memcpy(*axes, av, (size_t)an * sizeof *av);
        *nax = an ? an : -1;
        return true;
    }
    if (has_in(n, 1)) {
        if (!ox_need_ints(x, n->in[1], "the axes", axes, nax)) return false;
        if (*nax == 0) {
            free(*axes);
            *axes = NULL;
            // noop_with_empty_axes: no axes means no reduction at all.
            *nax = ox_attr_i(n, "noop_with_empty_axes", 0) ? -2 : -1;
        }
    } else if (ox_attr_i(n, "noop_with_empty_axes", 0)) {
        *nax = -2;
    }
    return true;
}

static bool l_reduce(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int64_t *axes;
    int nax;
    if (!reduce_axes(x, n, &axes, &nax)) return false;
    bool keep = ox_attr_i(n, "keepdims", 1) != 0;
    const char *op = n->pb->op_type;
    int32_t y;
    if (nax == -2) y = ox_op1(x, ITR_OP_IDENTITY, v);
    else if (strcmp(op, "ReduceSum") == 0) y = reduce(x, ITR_OP_SUM, v, axes, nax, keep);
    else if (strcmp(op, "ReduceMean") == 0) y = reduce(x, ITR_OP_MEAN, v, axes, nax, keep);
    else if (strcmp(op, "ReduceMax") == 0) y = reduce(x, ITR_OP_MAX, v, axes, nax, keep);
    else if (strcmp(op, "ReduceMin") == 0) y = reduce(x, ITR_OP_MIN, v, axes, nax, keep);
    else if (strcmp(op, "ReduceL1") == 0) y = reduce(x, ITR_OP_SUM, ox_op1(x, ITR_OP_ABS, v), axes, nax, keep);
    else if (strcmp(op, "ReduceSumSquare") == 0) y = reduce(x, ITR_OP_SUM, ox_op2(x, ITR_OP_MUL, v, v), axes, nax, keep);
    else if (strcmp(op, "ReduceL2") == 0)
        y = ox_op1(x, ITR_OP_SQRT, reduce(x, ITR_OP_SUM, ox_op2(x, ITR_OP_MUL, v, v), axes, nax, keep));
    else if (strcmp(op, "ReduceLogSum") == 0) y = ox_op1(x, ITR_OP_LOG, reduce(x, ITR_OP_SUM, v, axes, nax, keep));
    else {
        // ReduceLogSumExp, shifted by the maximum so that exp cannot overflow.
        int32_t m = reduce(x, ITR_OP_MAX, v, axes, nax, true);
        int32_t s = reduce(x, ITR_OP_SUM, ox_op1(x, ITR_OP_EXP, ox_op2(x, ITR_OP_SUB, v, m)), axes, nax, keep);
        int32_t mk = keep ? m : reduce(x, ITR_OP_MAX, v, axes, nax, false);
        y = ox_op2(x, ITR_OP_ADD, ox_op1(x, ITR_OP_LOG, s), mk);
    }
    free(axes);
    return ox_out(x, n, 0, y);
}

static bool l_argreduce(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int ax;
    if (!norm_axis(x, ox_attr_i(n, "axis", 0), rank_of(x, v), &ax)) return false;
    bool keep = ox_attr_i(n, "keepdims", 1) != 0, last = ox_attr_i(n, "select_last_index", 0) != 0;
    enum itr_op op = n->row->op;
    int64_t size = 0;
    if (last) {
        // The last extremum is the first one of the reversed axis.
        if (!itr_dim_is_const(x->p, ox_type(x, v)->dims[ax], &size))
            return ox_error(x, "select_last_index needs a constant axis size");
        struct itr_attr *s = ox_attrs(x, ITR_OP_SLICE);
        int64_t a64 = ax, st = -1, en = -(int64_t)INT32_MAX, step = -1;
        ox_set_ints(x, s, ITR_OP_SLICE, "axes", &a64, 1);
        ox_set_ints(x, s, ITR_OP_SLICE, "starts", &st, 1);
        ox_set_ints(x, s, ITR_OP_SLICE, "ends", &en, 1);
        ox_set_ints(x, s, ITR_OP_SLICE, "steps", &step, 1);
        v = ox_op(x, ITR_OP_SLICE, &v, 1, s);
    }
    struct itr_attr *a = ox_attrs(x, op);
    ox_set_int(x, a, op, "axis", ax);
    ox_set_int(x, a, op, "keepdims", keep);
    int32_t y = ox_op(x, op, &v, 1, a);
    if (last && y >= 0) y = ox_op2(x, ITR_OP_SUB, ox_scalar(x, x->g, ITR_I64, (double)(size - 1)), y);
    return ox_out(x, n, 0, y);
}

// Softmax and LogSoftmax over one axis, shifted by the maximum.
static int32_t softmax(struct ox *x, int32_t v, int ax, bool log_) {
    int64_t a64 = ax;
    int32_t m = reduce(x, ITR_OP_MAX, v, &a64, 1, true);
    int32_t c = ox_op2(x, ITR_OP_SUB, v, m);
    int32_t e = ox_op1(x, ITR_OP_EXP, c);
    int32_t s = reduce(x, ITR_OP_SUM, e, &a64, 1, true);
    return log_ ? ox_op2(x, ITR_OP_SUB, c, ox_op1(x, ITR_OP_LOG, s)) : ox_op2(x, ITR_OP_DIV, e, s);
}

static bool l_softmax(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    bool log_ = strcmp(n->pb->op_type, "LogSoftmax") == 0;
    int r = rank_of(x, v), ax;
    if (x->opset >= 13) {
        if (!norm_axis(x, ox_attr_i(n, "axis", -1), r, &ax)) return false;
        return ox_out(x, n, 0, softmax(x, v, ax, log_));
    }
    // Before opset 13 the input is seen as a matrix [prod(:axis), prod(axis:)].
    int64_t axis = ox_attr_i(n, "axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) return ox_error(x, "axis %lld is out of range", (long long)axis);
    const struct itr_type *t = ox_type(x, v);
    itr_dim rows = itr_dim_const(x->p, 1), cols = itr_dim_const(x->p, 1);
    for (int i = 0; i < r; i++)
        if (i < axis) rows = itr_dim_binary(x->p, ITR_DIM_MUL, rows, t->dims[i]);
        else cols = itr_dim_binary(x->p, ITR_DIM_MUL, cols, t->dims[i]);
    itr_dim flat[2] = { rows, cols }, back[ITR_MAX_RANK];
    memcpy(back, t->dims, (size_t)r * sizeof *back);
    struct itr_attr *a = ox_attrs(x, ITR_OP_RESHAPE), *b = ox_attrs(x, ITR_OP_RESHAPE);
    ox_set_dims(x, a, ITR_OP_RESHAPE, "shape", flat, 2);
    ox_set_dims(x, b, ITR_OP_RESHAPE, "shape", back, r);
    int32_t f = ox_op(x, ITR_OP_RESHAPE, &v, 1, a);
    int32_t y = softmax(x, f, 1, log_);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_RESHAPE, &y, 1, b));
}

// ------------------------------------------------------------ movement

static bool l_transpose(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    const int64_t *perm;
    int np;
    if (v >= 0 && ox_attr_ints(n, "perm", &perm, &np)) return ox_out(x, n, 0, op_ints(x, ITR_OP_TRANSPOSE, v, "perm", perm, np));
    return ox_out(x, n, 0, ox_op1(x, ITR_OP_TRANSPOSE, v));
}

static int32_t reshape_dims(struct ox *x, int32_t v, const itr_dim *dims, int nd) {
    struct itr_attr *a = ox_attrs(x, ITR_OP_RESHAPE);
    ox_set_dims(x, a, ITR_OP_RESHAPE, "shape", dims, nd);
    return ox_op(x, ITR_OP_RESHAPE, &v, 1, a);
}

// A value known as dims reshaped to a scalar or a vector stays known.
static bool fold_dims_reshape(struct ox *x, struct ox_node *n, int out_rank) {
    struct ox_val *v = n->in[0];
    if (!v->dv || v->id >= 0 || out_rank > 1 || (out_rank == 0 && v->dv_n != 1)) return false;
    return ox_out_dims(x, n, 0, v->dv, v->dv_n, out_rank == 0, v->dv_dtype);
}

// The factors of a product of dims, flattened ("B*L*4" -> B, L, 4).
static void dim_factors(struct ox *x, itr_dim d, itr_dim *out, int *n, int cap) {
    const struct itr_dim_node *dn = &x->p->dimnodes[d];
    if (dn->kind == ITR_DIM_MUL) {
        dim_factors(x, dn->a, out, n, cap);
        dim_factors(x, dn->b, out, n, cap);
    } else if (*n < cap) {
        out[(*n)++] = d;
    }
}

// ONNX's -1 in a target shape, resolved here (the .ir format writes dims,
// where -1 cannot stand): the input's factors with the other entries'
// factors cancelled, else their floor quotient.
static itr_dim infer_dim(struct ox *x, const struct itr_type *t, const itr_dim *shape, int ns, int skip) {
    itr_dim num[64], den[64];
    int nn = 0, nd = 0;
    for (int i = 0; i < t->rank; i++) dim_factors(x, t->dims[i], num, &nn, 64);
    for (int i = 0; i < ns; i++)
        if (i != skip) dim_factors(x, shape[i], den, &nd, 64);
    int64_t cn = 1, cd = 1, c;
    for (int j = 0; j < nd; j++) {
        if (itr_dim_is_const(x->p, den[j], &c)) { cd *= c; den[j] = -1; continue; }
        for (int i = 0; i < nn; i++)
            if (num[i] == den[j]) { num[i] = den[j] = -1; break; }
    }
    itr_dim rest = itr_dim_const(x->p, 1), left = itr_dim_const(x->p, 1);
    for (int i = 0; i < nn; i++) {
        if (num[i] < 0) continue;
        if (itr_dim_is_const(x->p, num[i], &c)) cn *= c;
        else rest = itr_dim_binary(x->p, ITR_DIM_MUL, rest, num[i]);
    }
    for (int j = 0; j < nd; j++)
        if (den[j] >= 0) left = itr_dim_binary(x->p, ITR_DIM_MUL, left, den[j]);
    int64_t one;
    if (cd != 0 && cn % cd == 0 && itr_dim_is_const(x->p, left, &one) && one == 1)
        return itr_dim_binary(x->p, ITR_DIM_MUL, rest, itr_dim_const(x->p, cn / cd));
    itr_dim top = itr_dim_binary(x->p, ITR_DIM_MUL, rest, itr_dim_const(x->p, cn));
    itr_dim bottom = itr_dim_binary(x->p, ITR_DIM_MUL, left, itr_dim_const(x->p, cd));
    return itr_dim_binary(x->p, ITR_DIM_DIV, top, bottom);
}

static bool l_reshape(struct ox *x, struct ox_node *n) {
    itr_dim *shape;
    int ns;
    if (!has_in(n, 0) || !has_in(n, 1)) return ox_error(x, "needs two inputs");
    if (!ox_need_dims(x, n->in[1], "the target shape", &shape, &ns)) return false;
    if (ns > ITR_MAX_RANK) { free(shape); return ox_error(x, "target rank %d exceeds %d", ns, ITR_MAX_RANK); }
    if (fold_dims_reshape(x, n, ns)) { free(shape); return true; }
    int32_t v = ox_id(x, n->in[0]);
    if (v < 0) { free(shape); return false; }
    const struct itr_type *t = ox_type(x, v);
    bool allowzero = ox_attr_i(n, "allowzero", 0) != 0;
    for (int i = 0; i < ns; i++) {
        int64_t c;
        if (!allowzero && itr_dim_is_const(x->p, shape[i], &c) && c == 0) {
            if (i >= t->rank) { free(shape); return ox_error(x, "shape entry %d is 0 (copy) past the input's rank %d", i, t->rank); }
            shape[i] = t->dims[i];
        }
    }
    for (int i = 0; i < ns; i++) {
        int64_t c;
        if (itr_dim_is_const(x->p, shape[i], &c) && c == -1) shape[i] = infer_dim(x, t, shape, ns, i);
    }
    int32_t y = reshape_dims(x, v, shape, ns);
    free(shape);
    return ox_out(x, n, 0, y);
}

static bool l_flatten(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    const struct itr_type *t = ox_type(x, v);
    int64_t axis = ox_attr_i(n, "axis", 1);
    if (axis < 0) axis += t->rank;
    if (axis < 0 || axis > t->rank) return ox_error(x, "axis %lld is out of range for rank %d", (long long)axis, t->rank);
    itr_dim d[2] = { itr_dim_const(x->p, 1), itr_dim_const(x->p, 1) };
    for (int i = 0; i < t->rank; i++) d[i >= axis] = itr_dim_binary(x->p, ITR_DIM_MUL, d[i >= axis], t->dims[i]);
    return ox_out(x, n, 0, reshape_dims(x, v, d, 2));
}

// Axes from the attribute (before opset 13) or input 1; false: absent.
static bool axes_attr_or_input(struct ox *x, struct ox_node *n, int64_t **axes, int *nax, bool *ok) {
    const int64_t *av;
    int an;
    *ok = true;
    if (ox_attr_ints(n, "axes", &av, &an)) {
        *axes = malloc((size_t)(an ? an : 1) * sizeof **axes);
        if (!*axes) abort();
        if (an) memcpy(*axes, av, (size_t)an * sizeof *av);
        *nax = an;
        return true;
    }
    if (has_in(n, 1)) {
        *ok = ox_need_ints(x, n->in[1], "the axes", axes, nax);
        return *ok;
    }
    return false;
}

static bool l_squeeze(struct ox *x, struct ox_node *n) {
    int64_t *axes = NULL;
    int nax = 0;
    bool ok;
    bool have = axes_attr_or_input(x, n, &axes, &nax, &ok);
    if (!ok) return false;
    if (!has_in(n, 0)) { free(axes); return ox_error(x, "input 0 is required"); }
    struct ox_val *in = n->in[0];
    if (in->dv && in->id < 0 && !in->dv_scalar && in->dv_n == 1) {
        free(axes);
        return fold_dims_reshape(x, n, 0);
    }
    int32_t v = ox_id(x, in);
    int32_t y = v < 0 ? -1 : op_ints(x, ITR_OP_SQUEEZE, v, "axes", axes, have ? nax : 0);
    free(axes);
    return ox_out(x, n, 0, y);
}

static bool l_unsqueeze(struct ox *x, struct ox_node *n) {
    int64_t *axes = NULL;
    int nax = 0;
    bool ok;
    if (!axes_attr_or_input(x, n, &axes, &nax, &ok)) return ok ? ox_error(x, "needs axes") : false;
    if (!has_in(n, 0)) { free(axes); return ox_error(x, "input 0 is required"); }
    struct ox_val *in = n->in[0];
    if (in->dv && in->id < 0 && in->dv_scalar && nax == 1) {
        free(axes);
        return fold_dims_reshape(x, n, 1);
    }
    int32_t v = ox_id(x, in);
    int32_t y = v < 0 ? -1 : op_ints(x, ITR_OP_UNSQUEEZE, v, "axes", axes, nax);
    free(axes);
    return ox_out(x, n, 0, y);
}

static int64_t clamp_bound(int64_t v) {
    // Our slice treats INT32_MAX and beyond as "to the end"; both ends of
    // the int64 range are clamped into what the attribute round-trips.
    if (v > INT32_MAX) return INT32_MAX;
    if (v < -(int64_t)INT32_MAX) return -(int64_t)INT32_MAX;
    return v;
}

static bool l_slice(struct ox *x, struct ox_node *n) {
    int64_t *starts = NULL, *ends = NULL, *axes = NULL, *steps = NULL;
    int ns = 0, ne = 0, na = -1, nst = -1;
    bool ok = true;
    const int64_t *av;
    int an;
    if (x->opset < 10) {
        if (!ox_attr_ints(n, "starts", &av, &an)) return ox_error(x, "needs 'starts'");
        starts = malloc((size_t)(an + 1) * sizeof *starts); memcpy(starts, av, (size_t)an * sizeof *av); ns = an;
        if (!ox_attr_ints(n, "ends", &av, &an)) { free(starts); return ox_error(x, "needs 'ends'"); }
        ends = malloc((size_t)(an + 1) * sizeof *ends); memcpy(ends, av, (size_t)an * sizeof *av); ne = an;
        if (ox_attr_ints(n, "axes", &av, &an)) {
            axes = malloc((size_t)(an + 1) * sizeof *axes); memcpy(axes, av, (size_t)an * sizeof *av); na = an;
        }
    } else {
        ok = has_in(n, 1) && has_in(n, 2);
        if (!ok) return ox_error(x, "needs starts and ends");
        int r = ox_dynamic_slice(x, n);
        if (r) return r > 0;
        ok = ox_need_ints(x, n->in[1], "starts", &starts, &ns) && ox_need_ints(x, n->in[2], "ends", &ends, &ne);
        if (ok && has_in(n, 3)) ok = ox_need_ints(x, n->in[3], "axes", &axes, &na);
        if (ok && has_in(n, 4)) ok = ox_need_ints(x, n->in[4], "steps", &steps, &nst);
    }
    int32_t y = -1;
    if (ok && (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns)))
        ok = ox_error(x, "starts, ends, axes and steps have different lengths");
    struct ox_val *in = n->in[0];
    if (ok && in && in->dv && in->id < 0 && !in->dv_scalar && ns == 1 && (na < 0 || axes[0] == 0 || axes[0] == -1)) {
        // Slicing a shape: stays dims.
        int64_t first, step = nst > 0 ? steps[0] : 1;
        if (step == 0) ok = ox_error(x, "a step is 0");
        else {
            int64_t cnt = itr_slice_range(in->dv_n, starts[0], ends[0], step, &first);
            itr_dim out[64];
            for (int64_t i = 0; i < cnt && i < 64; i++) out[i] = in->dv[first + i * step];
            free(starts); free(ends); free(axes); free(steps);
            return ox_out_dims(x, n, 0, out, (int)(cnt < 64 ? cnt : 64), false, in->dv_dtype);
        }
    }
    if (ok) {
        int32_t v = in_id(x, n, 0);
        if (v >= 0) {
            int64_t *ax = malloc((size_t)(ns + 1) * sizeof *ax);
            for (int i = 0; i < ns; i++) {
                ax[i] = na >= 0 ? axes[i] : i;
                starts[i] = clamp_bound(starts[i]);
                ends[i] = clamp_bound(ends[i]);
            }
            struct itr_attr *a = ox_attrs(x, ITR_OP_SLICE);
            ox_set_ints(x, a, ITR_OP_SLICE, "axes", ax, ns);
            ox_set_ints(x, a, ITR_OP_SLICE, "starts", starts, ns);
            ox_set_ints(x, a, ITR_OP_SLICE, "ends", ends, ns);
            if (nst >= 0) ox_set_ints(x, a, ITR_OP_SLICE, "steps", steps, ns);
            y = ox_op(x, ITR_OP_SLICE, &v, 1, a);
            free(ax);
        }
    }
    free(starts); free(ends); free(axes); free(steps);
    return ok && ox_out(x, n, 0, y);
}

static bool l_concat(struct ox *x, struct ox_node *n) {
    int64_t axis = ox_attr_i(n, "axis", 0);
    // Concatenating shapes: stays dims.
    bool all_dims = n->n_in > 0;
    for (int i = 0; i < n->n_in; i++) {
        struct ox_val *v = n->in[i];
        all_dims &= v && v->id < 0 && v->input < 0 &&
                     (v->dv ? !v->dv_scalar : v->k && itr_dtype_is_int(v->k->dtype) && v->k->rank == 1);
    }
    if (all_dims && (axis == 0 || axis == -1)) {
        itr_dim out[64];
        int m = 0;
        enum itr_dtype dt = ITR_I64;
        for (int i = 0; i < n->n_in; i++) {
            itr_dim *d;
            int nd;
            ox_known_dims(x, n->in[i], &d, &nd, NULL);
            for (int k = 0; k < nd && m < 64; k++) out[m++] = d[k];
            free(d);
            if (n->in[i]->dv) dt = n->in[i]->dv_dtype;
            else dt = n->in[i]->k->dtype;
        }
        return ox_out_dims(x, n, 0, out, m, false, dt);
    }
    int32_t ins[32];
    for (int i = 0; i < n->n_in; i++)
        if ((ins[i] = in_id(x, n, i)) < 0) return false;
    struct itr_attr *a = ox_attrs(x, ITR_OP_CONCAT);
    ox_set_int(x, a, ITR_OP_CONCAT, "axis", axis);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_CONCAT, ins, n->n_in, a));
}

static bool l_expand(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 1)) return ox_error(x, "needs a shape");
    itr_dim *shape;
    int ns;
    if (!ox_need_dims(x, n->in[1], "the shape", &shape, &ns)) return false;
    int32_t v = in_id(x, n, 0);
    if (v < 0) { free(shape); return false; }
    const struct itr_type *t = ox_type(x, v);
    int r = t->rank > ns ? t->rank : ns;
    if (r > ITR_MAX_RANK) { free(shape); return ox_error(x, "result rank %d exceeds %d", r, ITR_MAX_RANK); }
    // ONNX broadcasts both ways: a 1 in the shape keeps the input's dim.
    itr_dim out[ITR_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int it = i - (r - t->rank), is = i - (r - ns);
        itr_dim a = it >= 0 ? t->dims[it] : itr_dim_const(x->p, 1);
        itr_dim b = is >= 0 ? shape[is] : itr_dim_const(x->p, 1);
        int64_t cb;
        out[i] = itr_dim_is_const(x->p, b, &cb) && cb == 1 ? a : b;
    }
    free(shape);
    struct itr_attr *a = ox_attrs(x, ITR_OP_EXPAND);
    ox_set_dims(x, a, ITR_OP_EXPAND, "shape", out, r);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_EXPAND, &v, 1, a));
}

// Tile: [d0, d1] -> [1, d0, 1, d1] -> expand [r0, d0, r1, d1] -> [r0*d0, r1*d1].
static bool l_tile(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    int64_t *reps;
    int nr;
    if (v < 0 || !has_in(n, 1) || !ox_need_ints(x, n->in[1], "the repeats", &reps, &nr)) return false;
    const struct itr_type *t = ox_type(x, v);
    if (nr != t->rank || 2 * nr > ITR_MAX_RANK) { free(reps); return ox_error(x, "repeats must have one entry per axis (rank <= 4)"); }
    itr_dim inter[ITR_MAX_RANK], big[ITR_MAX_RANK], out[ITR_MAX_RANK];
    for (int i = 0; i < nr; i++) {
        inter[2 * i] = itr_dim_const(x->p, 1);
        inter[2 * i + 1] = t->dims[i];
        big[2 * i] = itr_dim_const(x->p, reps[i]);
        big[2 * i + 1] = t->dims[i];
        out[i] = itr_dim_binary(x->p, ITR_DIM_MUL, big[2 * i], t->dims[i]);
    }
    free(reps);
    int32_t y = reshape_dims(x, v, inter, 2 * nr);
    struct itr_attr *a = ox_attrs(x, ITR_OP_EXPAND);
    ox_set_dims(x, a, ITR_OP_EXPAND, "shape", big, 2 * nr);
    y = ox_op(x, ITR_OP_EXPAND, &y, 1, a);
    return ox_out(x, n, 0, reshape_dims(x, y, out, nr));
}

static bool l_pad(struct ox *x, struct ox_node *n) {
    char mb[32];
    const char *mode = ox_attr_s(n, "mode", "constant", mb, sizeof mb);
    if (strcmp(mode, "constant") != 0) return ox_error(x, "pad mode '%s' is not supported (only 'constant' is)", mode);
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int r = rank_of(x, v);
    int64_t *pads;
    int np;
    double value = 0;
    if (x->opset < 11) {
        const int64_t *av;
        if (!ox_attr_ints(n, "pads", &av, &np)) return ox_error(x, "needs 'pads'");
        pads = malloc((size_t)(np + 1) * sizeof *pads);
        memcpy(pads, av, (size_t)np * sizeof *av);
        value = ox_attr_f(n, "value", 0);
    } else {
        if (!has_in(n, 1) || !ox_need_ints(x, n->in[1], "the pads", &pads, &np)) return false;
        if (has_in(n, 2)) {
            struct itr_tensor *c = ox_known(x, n->in[2]);
            if (!c || itr_tensor_numel(c) != 1) { free(pads); return ox_error(x, "the constant value must be a known scalar"); }
            value = itr_tensor_get(c, 0);
        }
    }
    if (np != 2 * r) { free(pads); return ox_error(x, "pads has %d entries for rank %d", np, r); }
    // ONNX lists all begins, then all ends; ours pairs them per axis.
    // Negative pads crop, which is a slice.
    int64_t ours[2 * ITR_MAX_RANK], ax[ITR_MAX_RANK], st[ITR_MAX_RANK], en[ITR_MAX_RANK];
    int ncrop = 0;
    for (int i = 0; i < r; i++) {
        int64_t b = pads[i], e = pads[i + r];
        ours[2 * i] = b > 0 ? b : 0;
        ours[2 * i + 1] = e > 0 ? e : 0;
        if (b < 0 || e < 0) {
            ax[ncrop] = i;
            st[ncrop] = b < 0 ? -b : 0;
            en[ncrop] = e < 0 ? e : INT32_MAX;
            ncrop++;
        }
    }
    free(pads);
    if (ncrop) {
        struct itr_attr *a = ox_attrs(x, ITR_OP_SLICE);
        ox_set_ints(x, a, ITR_OP_SLICE, "axes", ax, ncrop);
        ox_set_ints(x, a, ITR_OP_SLICE, "starts", st, ncrop);
        ox_set_ints(x, a, ITR_OP_SLICE, "ends", en, ncrop);
        v = ox_op(x, ITR_OP_SLICE, &v, 1, a);
    }
    struct itr_attr *a = ox_attrs(x, ITR_OP_PAD);
    ox_set_ints(x, a, ITR_OP_PAD, "pads", ours, 2 * r);
    ox_set_float(x, a, ITR_OP_PAD, "value", value);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_PAD, &v, 1, a));
}

static bool l_split(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int ax;
    if (!norm_axis(x, ox_attr_i(n, "axis", 0), rank_of(x, v), &ax)) return false;
    int64_t *sizes = NULL;
    int nsz = 0;
    const int64_t *av;
    if (ox_attr_ints(n, "split", &av, &nsz)) {
        sizes = malloc((size_t)(nsz + 1) * sizeof *sizes);
        memcpy(sizes, av, (size_t)nsz * sizeof *av);
    } else if (has_in(n, 1)) {
        if (!ox_need_ints(x, n->in[1], "the split sizes", &sizes, &nsz)) return false;
    } else {
        int64_t len;
        if (!itr_dim_is_const(x->p, ox_type(x, v)->dims[ax], &len))
            return ox_error(x, "splitting a dynamic axis into equal parts is not supported");
        if (n->n_out == 0 || len % n->n_out) return ox_error(x, "axis of %lld cannot be split into %d equal parts", (long long)len, n->n_out);
        nsz = n->n_out;
        sizes = malloc((size_t)nsz * sizeof *sizes);
        for (int i = 0; i < nsz; i++) sizes[i] = len / n->n_out;
    }
    if (nsz != n->n_out) { free(sizes); return ox_error(x, "%d split sizes for %d outputs", nsz, n->n_out); }
    int64_t start = 0;
    bool ok = true;
    for (int i = 0; i < nsz && ok; i++) {
        struct itr_attr *a = ox_attrs(x, ITR_OP_SLICE);
        int64_t a64 = ax, st = start, en = start + sizes[i];
        ox_set_ints(x, a, ITR_OP_SLICE, "axes", &a64, 1);
        ox_set_ints(x, a, ITR_OP_SLICE, "starts", &st, 1);
        ox_set_ints(x, a, ITR_OP_SLICE, "ends", &en, 1);
        ok = ox_out(x, n, i, ox_op(x, ITR_OP_SLICE, &v, 1, a));
        start = en;
    }
    free(sizes);
    return ok;
}

// ------------------------------------------------------------ indexing

// ONNX indices may be negative (counting from the end); ours may not.
static int32_t fix_indices(struct ox *x, struct ox_val *iv, itr_dim size) {
    int64_t csize;
    bool const_size = itr_dim_is_const(x->p, size, &csize);
    struct itr_tensor *k = iv->id < 0 && iv->input < 0 ? ox_known(x, iv) : NULL;
    if (k && const_size) {
        struct itr_tensor *c = itr_tensor_clone(k);
        if (!c) { ox_error(x, "out of memory"); return -1; }
        for (int64_t i = 0; i < itr_tensor_numel(c); i++) {
            double v = itr_tensor_get(c, i);
            if (v < 0) itr_tensor_set(c, i, v + (double)csize);
        }
        int32_t id = ox_const(x, x->g, c);
        itr_tensor_free(c);
        return id;
    }
    int32_t idx = ox_id(x, iv);
    if (idx < 0) return -1;
    enum itr_dtype dt = dtype_of(x, idx);
    int32_t neg = ox_op2(x, ITR_OP_LT, idx, ox_scalar(x, x->g, dt, 0));
    return where3(x, neg, ox_op2(x, ITR_OP_ADD, idx, ox_dim_scalar(x, size, dt)), idx);
}

static bool l_gather(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 0) || !has_in(n, 1)) return ox_error(x, "needs two inputs");
    struct ox_val *data = n->in[0];
    int64_t axis = ox_attr_i(n, "axis", 0);
    if (data->dv && data->id < 0 && !data->dv_scalar && (axis == 0 || axis == -1)) {
        // Picking dims out of a shape.
        int64_t *idx;
        int ni;
        if (ox_known_ints(x, n->in[1], &idx, &ni)) {
            struct itr_tensor *k = ox_known(x, n->in[1]);
            itr_dim out[64];
            bool ok = ni <= 64;
            for (int i = 0; ok && i < ni; i++) {
                int64_t j = idx[i] < 0 ? idx[i] + data->dv_n : idx[i];
                if (j < 0 || j >= data->dv_n) ok = false;
                else out[i] = data->dv[j];
            }
            free(idx);
            if (!ok) return ox_error(x, "index out of range for a shape of %d dims", data->dv_n);
            return ox_out_dims(x, n, 0, out, ni, k && k->rank == 0, data->dv_dtype);
        }
    }
    int32_t d = ox_id(x, data);
    if (d < 0) return false;
    int ax;
    if (!norm_axis(x, axis, rank_of(x, d), &ax)) return false;
    int32_t ins[2] = { d, fix_indices(x, n->in[1], ox_type(x, d)->dims[ax]) };
    struct itr_attr *a = ox_attrs(x, ITR_OP_GATHER);
    ox_set_int(x, a, ITR_OP_GATHER, "axis", ax);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_GATHER, ins, 2, a));
}

static bool l_gather_elements(struct ox *x, struct ox_node *n) {
    int32_t d = in_id(x, n, 0);
    if (d < 0 || !has_in(n, 1)) return false;
    int ax;
    if (!norm_axis(x, ox_attr_i(n, "axis", 0), rank_of(x, d), &ax)) return false;
    int32_t ins[2] = { d, fix_indices(x, n->in[1], ox_type(x, d)->dims[ax]) };
    struct itr_attr *a = ox_attrs(x, ITR_OP_TAKE_ALONG);
    ox_set_int(x, a, ITR_OP_TAKE_ALONG, "axis", ax);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_TAKE_ALONG, ins, 2, a));
}

static int32_t full_like(struct ox *x, int32_t like, double value, enum itr_dtype dt) {
    const struct itr_type *t = ox_type(x, like);
    struct itr_attr *a = ox_attrs(x, ITR_OP_FULL);
    ox_set_float(x, a, ITR_OP_FULL, "value", value);
    ox_set_dims(x, a, ITR_OP_FULL, "shape", t->dims, t->rank);
    ox_set_dtype(x, a, ITR_OP_FULL, "dtype", dt);
    return ox_op(x, ITR_OP_FULL, NULL, 0, a);
}

// ScatterElements: reduction 'add' is our scatter_add_along_axis; 'none'
// replaces, which is the scattered updates where any index landed.
static bool l_scatter_elements(struct ox *x, struct ox_node *n) {
    int32_t d = in_id(x, n, 0), u = in_id(x, n, 2);
    if (d < 0 || u < 0 || !has_in(n, 1)) return false;
    int ax;
    if (!norm_axis(x, ox_attr_i(n, "axis", 0), rank_of(x, d), &ax)) return false;
    int32_t idx = fix_indices(x, n->in[1], ox_type(x, d)->dims[ax]);
    char rb[16];
    const char *red = ox_attr_s(n, "reduction", "none", rb, sizeof rb);
    struct itr_attr *a = ox_attrs(x, ITR_OP_SCATTER_ADD_ALONG);
    ox_set_int(x, a, ITR_OP_SCATTER_ADD_ALONG, "axis", ax);
    if (strcmp(red, "add") == 0) {
        int32_t ins[3] = { d, idx, u };
        return ox_out(x, n, 0, ox_op(x, ITR_OP_SCATTER_ADD_ALONG, ins, 3, a));
    }
    if (strcmp(red, "none") != 0) return ox_error(x, "reduction '%s' is not supported ('none' and 'add' are)", red);
    int32_t zeros = full_like(x, d, 0, dtype_of(x, d)), hits0 = full_like(x, d, 0, ITR_F32);
    int32_t ones = full_like(x, u, 1, ITR_F32);
    int32_t i1[3] = { zeros, idx, u }, i2[3] = { hits0, idx, ones };
    int32_t vals = ox_op(x, ITR_OP_SCATTER_ADD_ALONG, i1, 3, a);
    int32_t hits = ox_op(x, ITR_OP_SCATTER_ADD_ALONG, i2, 3, a);
    int32_t mask = ox_op2(x, ITR_OP_GT, hits, ox_scalar(x, x->g, ITR_F32, 0));
    return ox_out(x, n, 0, where3(x, mask, vals, d));
}

static bool l_topk(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int64_t k;
    itr_dim *kd;
    int nkd;
    if (x->opset >= 10 && has_in(n, 1) && ox_known_dims(x, n->in[1], &kd, &nkd, NULL)) {
        // K the whole (possibly dynamic) axis, as `itrc export` writes our
        // sort: a stable sort, which keeps ties in index order as TopK does.
        const struct itr_type *t = ox_type(x, v);
        int ax;
        bool whole = nkd == 1 && itr_axis_normalize(ox_attr_i(n, "axis", -1), t->rank, &ax) && kd[0] == t->dims[ax];
        free(kd);
        if (whole) {
            struct itr_attr *a = ox_attrs(x, ITR_OP_SORT);
            ox_set_int(x, a, ITR_OP_SORT, "axis", ax);
            ox_set_int(x, a, ITR_OP_SORT, "descending", ox_attr_i(n, "largest", 1) != 0);
            int32_t outs[2];
            if (!ox_node_in(x, x->g, ITR_OP_SORT, &v, 1, a, outs)) return false;
            return ox_out(x, n, 0, outs[0]) && ox_out(x, n, 1, outs[1]);
        }
    }
    if (x->opset < 10) k = ox_attr_i(n, "k", -1);
    else {
        int64_t *kk;
        int nk;
        if (!has_in(n, 1) || !ox_need_ints(x, n->in[1], "K", &kk, &nk)) return false;
        k = nk == 1 ? kk[0] : -1;
        free(kk);
    }
    if (k < 0) return ox_error(x, "K must be one non-negative integer");
    struct itr_attr *a = ox_attrs(x, ITR_OP_TOPK);
    ox_set_int(x, a, ITR_OP_TOPK, "k", k);
    ox_set_int(x, a, ITR_OP_TOPK, "axis", ox_attr_i(n, "axis", -1));
    ox_set_int(x, a, ITR_OP_TOPK, "largest", ox_attr_i(n, "largest", 1));
    int32_t outs[2];
    if (!ox_node_in(x, x->g, ITR_OP_TOPK, &v, 1, a, outs)) return false;
    return ox_out(x, n, 0, outs[0]) && ox_out(x, n, 1, outs[1]);
}

static bool l_trilu(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int64_t k = 0;
    if (has_in(n, 1)) {
        int64_t *kk;
        int nk;
        if (!ox_need_ints(x, n->in[1], "k", &kk, &nk)) return false;
        k = nk ? kk[0] : 0;
        free(kk);
    }
    const struct itr_type *t = ox_type(x, v);
    if (t->rank < 2) return ox_error(x, "needs rank >= 2");
    itr_dim sq[2] = { t->dims[t->rank - 2], t->dims[t->rank - 1] };
    struct itr_attr *ra = ox_attrs(x, ITR_OP_IOTA), *ca = ox_attrs(x, ITR_OP_IOTA);
    ox_set_dims(x, ra, ITR_OP_IOTA, "shape", sq, 2);
    ox_set_dims(x, ca, ITR_OP_IOTA, "shape", sq, 2);
    ox_set_int(x, ca, ITR_OP_IOTA, "axis", 1);
    int32_t row = ox_op(x, ITR_OP_IOTA, NULL, 0, ra), col = ox_op(x, ITR_OP_IOTA, NULL, 0, ca);
    // Upper keeps col - row >= k; lower keeps col - row <= k.
    int32_t diff = ox_op2(x, ITR_OP_SUB, col, row);
    int32_t kk = ox_scalar(x, x->g, ITR_I64, (double)k);
    int32_t keep = ox_op2(x, ox_attr_i(n, "upper", 1) ? ITR_OP_GE : ITR_OP_LE, diff, kk);
    return ox_out(x, n, 0, where3(x, keep, v, scalar_like(x, v, 0)));
}

// ------------------------------------------------------------ shapes and constants

static bool l_shape(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 0)) return ox_error(x, "input 0 is required");
    struct ox_val *v = n->in[0];
    itr_dim dims[ITR_MAX_RANK];
    int r;
    if (v->id < 0 && v->input < 0 && v->k) {
        r = v->k->rank;
        for (int i = 0; i < r; i++) dims[i] = itr_dim_const(x->p, v->k->shape[i]);
    } else if (v->id < 0 && v->input < 0 && v->dv) {
        r = v->dv_scalar ? 0 : 1;
        dims[0] = itr_dim_const(x->p, v->dv_n);
    } else {
        int32_t id = ox_id(x, v);
        if (id < 0) return false;
        r = rank_of(x, id);
        memcpy(dims, ox_type(x, id)->dims, (size_t)r * sizeof *dims);
    }
    int64_t start = ox_attr_i(n, "start", 0), end = ox_attr_i(n, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    if (end < start) end = start;
    if (strcmp(n->pb->op_type, "Size") == 0) {
        itr_dim s = itr_dim_const(x->p, 1);
        for (int i = 0; i < r; i++) s = itr_dim_binary(x->p, ITR_DIM_MUL, s, dims[i]);
        return ox_out_dims(x, n, 0, &s, 1, true, ITR_I64);
    }
    return ox_out_dims(x, n, 0, dims + start, (int)(end - start), false, ITR_I64);
}

static bool l_constant(struct ox *x, struct ox_node *n) {
    const Onnx__AttributeProto *a;
    if ((a = ox_attr(n, "value")) && a->t) {
        struct itr_tensor *t = ox_tensor_from_proto(a->t, x->what, x->d);
        if (!t) return ox_error(x, "its value cannot be read");
        return ox_out_known(x, n, 0, t);
    }
    int64_t one = 1;
    struct itr_tensor *t = NULL;
    if ((a = ox_attr(n, "value_float")) && a->has_f) {
        t = itr_tensor_new(ITR_F32, 0, NULL);
        if (t) itr_tensor_set(t, 0, a->f);
    } else if ((a = ox_attr(n, "value_int")) && a->has_i) {
        t = itr_tensor_new(ITR_I64, 0, NULL);
        if (t) ((int64_t *)t->data)[0] = a->i;
    } else if ((a = ox_attr(n, "value_floats"))) {
        one = (int64_t)a->n_floats;
        t = itr_tensor_new(ITR_F32, 1, &one);
        for (size_t i = 0; t && i < a->n_floats; i++) ((float *)t->data)[i] = a->floats[i];
    } else if ((a = ox_attr(n, "value_ints"))) {
        one = (int64_t)a->n_ints;
        t = itr_tensor_new(ITR_I64, 1, &one);
        for (size_t i = 0; t && i < a->n_ints; i++) ((int64_t *)t->data)[i] = a->ints[i];
    } else {
        return ox_error(x, "has no value of a supported kind (value, value_float(s), value_int(s))");
    }
    return ox_out_known(x, n, 0, t);
}

static bool l_constant_of_shape(struct ox *x, struct ox_node *n) {
    itr_dim *dims;
    int nd;
    if (!has_in(n, 0) || !ox_need_dims(x, n->in[0], "the shape", &dims, &nd)) return false;
    enum itr_dtype dt = ITR_F32;
    double value = 0;
    const Onnx__AttributeProto *a = ox_attr(n, "value");
    if (a && a->t) {
        struct itr_tensor *t = ox_tensor_from_proto(a->t, x->what, x->d);
        if (!t || itr_tensor_numel(t) != 1) { itr_tensor_free(t); free(dims); return ox_error(x, "value must be one element of a supported type"); }
        dt = t->dtype;
        value = itr_tensor_get(t, 0);
        itr_tensor_free(t);
    }
    if (nd > ITR_MAX_RANK) { free(dims); return ox_error(x, "rank %d exceeds %d", nd, ITR_MAX_RANK); }
    int64_t shape[ITR_MAX_RANK];
    bool konst = true;
    for (int i = 0; i < nd; i++) konst &= itr_dim_is_const(x->p, dims[i], &shape[i]);
    int64_t numel;
    if (konst && itr_shape_numel(nd, shape, &numel) && numel <= 4096) {
        // Small and constant: known, so that shape arithmetic can go on.
        struct itr_tensor *t = itr_tensor_new(dt, nd, shape);
        for (int64_t i = 0; t && i < numel; i++) itr_tensor_set(t, i, value);
        free(dims);
        return ox_out_known(x, n, 0, t);
    }
    struct itr_attr *at = ox_attrs(x, ITR_OP_FULL);
    ox_set_float(x, at, ITR_OP_FULL, "value", value);
    ox_set_dims(x, at, ITR_OP_FULL, "shape", dims, nd);
    ox_set_dtype(x, at, ITR_OP_FULL, "dtype", dt);
    free(dims);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_FULL, NULL, 0, at));
}

static bool l_range(struct ox *x, struct ox_node *n) {
    if (!has_in(n, 0) || !has_in(n, 1) || !has_in(n, 2)) return ox_error(x, "needs start, limit and delta");
    struct itr_tensor *s = ox_known(x, n->in[0]), *l = ox_known(x, n->in[1]), *dl = ox_known(x, n->in[2]);
    if (s && l && dl && itr_tensor_numel(s) == 1 && itr_tensor_numel(l) == 1 && itr_tensor_numel(dl) == 1) {
        double a = itr_tensor_get(s, 0), b = itr_tensor_get(l, 0), d = itr_tensor_get(dl, 0);
        if (d == 0) return ox_error(x, "delta is 0");
        double cnt = ceil((b - a) / d);
        int64_t m = cnt > 0 ? (int64_t)cnt : 0;
        if (m > (1 << 24)) return ox_error(x, "range of %lld elements is too long to fold", (long long)m);
        struct itr_tensor *t = itr_tensor_new(s->dtype, 1, &m);
        for (int64_t i = 0; t && i < m; i++) itr_tensor_set(t, i, a + (double)i * d);
        return ox_out_known(x, n, 0, t);
    }
    // A dynamic limit (a dim) with constant start and positive delta:
    // iota over the element count.
    itr_dim *ld;
    int nl;
    int64_t a = 0, d = 0;
    if (s && dl && itr_dtype_is_int(s->dtype) && ox_known_dims(x, n->in[1], &ld, &nl, NULL)) {
        if (itr_tensor_numel(s) != 1 || itr_tensor_numel(dl) != 1) {
            free(ld);
            return ox_error(x, "start and delta must be scalars (they have %lld and %lld elements)",
                            (long long)itr_tensor_numel(s), (long long)itr_tensor_numel(dl));
        }
        a = (int64_t)itr_tensor_get(s, 0);
        d = (int64_t)itr_tensor_get(dl, 0);
        if (nl != 1 || d <= 0) { free(ld); return ox_error(x, "a dynamic range needs a positive constant delta"); }
        itr_dim span = itr_dim_binary(x->p, ITR_DIM_SUB, ld[0], itr_dim_const(x->p, a - (d - 1)));
        itr_dim cnt = itr_dim_binary(x->p, ITR_DIM_DIV, span, itr_dim_const(x->p, d));
        free(ld);
        struct itr_attr *at = ox_attrs(x, ITR_OP_IOTA);
        ox_set_dims(x, at, ITR_OP_IOTA, "shape", &cnt, 1);
        ox_set_dtype(x, at, ITR_OP_IOTA, "dtype", s->dtype);
        int32_t y = ox_op(x, ITR_OP_IOTA, NULL, 0, at);
        if (d != 1) y = mul_s(x, y, (double)d);
        if (a != 0) y = add_s(x, y, (double)a);
        return ox_out(x, n, 0, y);
    }
    return ox_error(x, "start and delta must be known, and the limit known or a dim");
}

static bool l_dropout(struct ox *x, struct ox_node *n) {
    if (has_in(n, 2)) {
        struct itr_tensor *tm = ox_known(x, n->in[2]);
        if (!tm || itr_tensor_numel(tm) != 1) return ox_error(x, "training_mode must be a known scalar");
        if (itr_tensor_get(tm, 0) != 0) return ox_error(x, "training mode is not supported (inference only)");
    }
    int32_t v = in_id(x, n, 0);
    if (!ox_out(x, n, 0, ox_op1(x, ITR_OP_IDENTITY, v))) return false;
    if (ox_out_wanted(n, 1)) return ox_out(x, n, 1, full_like(x, v, 1, ITR_BOOL));
    return true;
}

// ------------------------------------------------------------ normalisation

static bool l_layernorm(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0), scale = in_id(x, n, 1);
    if (v < 0 || scale < 0) return false;
    int r = rank_of(x, v), ax;
    if (!norm_axis(x, ox_attr_i(n, "axis", -1), r, &ax)) return false;
    int64_t axes[ITR_MAX_RANK];
    int na = tail_axes(ax, r, axes);
    int32_t mu = reduce(x, ITR_OP_MEAN, v, axes, na, true);
    int32_t c = ox_op2(x, ITR_OP_SUB, v, mu);
    int32_t var = reduce(x, ITR_OP_MEAN, ox_op2(x, ITR_OP_MUL, c, c), axes, na, true);
    int32_t inv = ox_op1(x, ITR_OP_RSQRT, add_s(x, var, ox_attr_f(n, "epsilon", 1e-5)));
    int32_t y = ox_op2(x, ITR_OP_MUL, ox_op2(x, ITR_OP_MUL, c, inv), scale);
    if (has_in(n, 2)) y = ox_op2(x, ITR_OP_ADD, y, in_id(x, n, 2));
    return ox_out(x, n, 0, y) && (!ox_out_wanted(n, 1) || ox_out(x, n, 1, mu)) &&
           (!ox_out_wanted(n, 2) || ox_out(x, n, 2, inv));
}

// Per-channel parameters [C] shaped to broadcast against [N, C, ...].
static int32_t channel(struct ox *x, int32_t p, int rank) {
    int64_t axes[ITR_MAX_RANK];
    int na = tail_axes(1, rank - 1, axes);
    return na ? op_ints(x, ITR_OP_UNSQUEEZE, p, "axes", axes, na) : p;
}

static bool l_batchnorm(struct ox *x, struct ox_node *n) {
    if (ox_attr_i(n, "training_mode", 0)) return ox_error(x, "training mode is not supported (inference only)");
    if (n->n_out > 1 && ox_out_wanted(n, 1)) return ox_error(x, "the running-statistics outputs are not supported");
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int r = rank_of(x, v);
    if (r < 2) return ox_error(x, "needs rank >= 2");
    int32_t sc = channel(x, in_id(x, n, 1), r), b = channel(x, in_id(x, n, 2), r);
    int32_t mean = channel(x, in_id(x, n, 3), r), var = channel(x, in_id(x, n, 4), r);
    int32_t inv = ox_op1(x, ITR_OP_RSQRT, add_s(x, var, ox_attr_f(n, "epsilon", 1e-5)));
    int32_t y = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MUL, ox_op2(x, ITR_OP_MUL, ox_op2(x, ITR_OP_SUB, v, mean), inv), sc), b);
    return ox_out(x, n, 0, y);
}

static bool l_instancenorm(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int r = rank_of(x, v);
    int64_t axes[ITR_MAX_RANK];
    int na = tail_axes(2, r, axes);
    int32_t mu = reduce(x, ITR_OP_MEAN, v, axes, na, true);
    int32_t c = ox_op2(x, ITR_OP_SUB, v, mu);
    int32_t var = reduce(x, ITR_OP_MEAN, ox_op2(x, ITR_OP_MUL, c, c), axes, na, true);
    int32_t y = ox_op2(x, ITR_OP_MUL, c, ox_op1(x, ITR_OP_RSQRT, add_s(x, var, ox_attr_f(n, "epsilon", 1e-5))));
    y = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MUL, y, channel(x, in_id(x, n, 1), r)), channel(x, in_id(x, n, 2), r));
    return ox_out(x, n, 0, y);
}

static bool l_mvn(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    const int64_t *av;
    int na;
    static const int64_t def[3] = { 0, 2, 3 };
    if (!ox_attr_ints(n, "axes", &av, &na)) { av = def; na = 3; }
    int32_t mu = reduce(x, ITR_OP_MEAN, v, av, na, true);
    int32_t c = ox_op2(x, ITR_OP_SUB, v, mu);
    int32_t var = reduce(x, ITR_OP_MEAN, ox_op2(x, ITR_OP_MUL, c, c), av, na, true);
    return ox_out(x, n, 0, ox_op2(x, ITR_OP_DIV, c, add_s(x, ox_op1(x, ITR_OP_SQRT, var), 1e-9)));
}

static bool l_global_pool(struct ox *x, struct ox_node *n) {
    int32_t v = in_id(x, n, 0);
    if (v < 0) return false;
    int64_t axes[ITR_MAX_RANK];
    int na = tail_axes(2, rank_of(x, v), axes);
    return ox_out(x, n, 0, reduce(x, n->row->op, v, axes, na, true));
}

// ------------------------------------------------------------ the table

#define U(name, since, op) { name, since, ONNX_MAX_OPSET, l_unary, ITR_OP_##op }
#define B(name, since, op) { name, since, ONNX_MAX_OPSET, l_binary, ITR_OP_##op }
#define F(name, since, fn) { name, since, ONNX_MAX_OPSET, fn, ITR_OP_IDENTITY }
#define R(name, since, until, fn) { name, since, until, fn, ITR_OP_IDENTITY }

static const struct ox_row rows[] = {
    // elementwise
    U("Abs", 6, ABS), U("Neg", 6, NEG), U("Exp", 6, EXP), U("Log", 6, LOG), U("Sqrt", 6, SQRT),
    U("Reciprocal", 6, RECIPROCAL), U("Relu", 6, RELU), U("Sigmoid", 6, SIGMOID), U("Tanh", 6, TANH),
    U("Erf", 9, ERF), U("Sin", 7, SIN), U("Cos", 7, COS), U("Acos", 7, ACOS), U("Sign", 9, SIGN), U("Not", 1, NOT),
    F("Identity", 1, l_identity),
    F("LeakyRelu", 6, l_activation), F("Elu", 6, l_activation), F("Selu", 6, l_activation),
    F("Celu", 12, l_activation), F("Softplus", 1, l_activation), F("Softsign", 1, l_activation),
    F("HardSigmoid", 6, l_activation), F("HardSwish", 14, l_activation), F("ThresholdedRelu", 10, l_activation),
    F("PRelu", 9, l_activation), F("Shrink", 9, l_activation), F("Tan", 7, l_activation),
    F("Sinh", 9, l_activation), F("Cosh", 9, l_activation), F("Asinh", 9, l_activation),
    F("Acosh", 9, l_activation), F("Atanh", 9, l_activation), F("IsNaN", 9, l_activation),
    F("IsInf", 10, l_activation),
    B("Add", 7, ADD), B("Sub", 7, SUB), B("Mul", 7, MUL), F("Div", 7, l_div), F("Pow", 7, l_pow),
    F("Mod", 10, l_mod),
    B("Equal", 7, EQ), B("Less", 7, LT), B("LessOrEqual", 12, LE), B("Greater", 7, GT),
    B("GreaterOrEqual", 12, GE), B("And", 7, AND), B("Or", 7, OR), B("Xor", 7, NE),
    { "Max", 8, ONNX_MAX_OPSET, l_variadic, ITR_OP_MAXIMUM }, { "Min", 8, ONNX_MAX_OPSET, l_variadic, ITR_OP_MINIMUM },
    { "Sum", 8, ONNX_MAX_OPSET, l_variadic, ITR_OP_ADD }, { "Mean", 8, ONNX_MAX_OPSET, l_variadic, ITR_OP_MEAN },
    F("Where", 9, l_where), F("Cast", 6, l_cast), F("CastLike", 15, l_castlike), F("Clip", 6, l_clip),
    // contraction
    F("MatMul", 1, l_matmul), F("Gemm", 7, l_gemm),
    // reductions (axes become an input: ReduceSum at 13, the others at 18)
    F("ReduceSum", 1, l_reduce), R("ReduceMean", 1, 17, l_reduce), R("ReduceMax", 1, 17, l_reduce),
    R("ReduceMin", 1, 17, l_reduce), R("ReduceL1", 1, 17, l_reduce), R("ReduceL2", 1, 17, l_reduce),
    R("ReduceSumSquare", 1, 17, l_reduce), R("ReduceLogSum", 1, 17, l_reduce), R("ReduceLogSumExp", 1, 17, l_reduce),
    { "ArgMax", 1, ONNX_MAX_OPSET, l_argreduce, ITR_OP_ARGMAX }, { "ArgMin", 1, ONNX_MAX_OPSET, l_argreduce, ITR_OP_ARGMIN },
    F("Softmax", 1, l_softmax), F("LogSoftmax", 1, l_softmax),
    // movement
    F("Reshape", 5, l_reshape), F("Flatten", 1, l_flatten), F("Transpose", 1, l_transpose),
    F("Squeeze", 1, l_squeeze), F("Unsqueeze", 1, l_unsqueeze), F("Slice", 1, l_slice), F("Concat", 4, l_concat),
    F("Expand", 8, l_expand), F("Tile", 6, l_tile), F("Pad", 2, l_pad), F("Split", 2, l_split),
    // indexing
    F("Gather", 1, l_gather), F("GatherElements", 11, l_gather_elements),
    F("ScatterElements", 11, l_scatter_elements), F("TopK", 1, l_topk), F("Trilu", 14, l_trilu),
    // shapes and constants
    F("Shape", 1, l_shape), F("Size", 1, l_shape), F("Constant", 1, l_constant),
    F("ConstantOfShape", 9, l_constant_of_shape), F("Range", 11, l_range), F("Dropout", 1, l_dropout),
    // normalisation and pooling
    F("LayerNormalization", 17, l_layernorm), F("BatchNormalization", 6, l_batchnorm),
    F("InstanceNormalization", 6, l_instancenorm), F("MeanVarianceNormalization", 9, l_mvn),
    { "GlobalAveragePool", 1, ONNX_MAX_OPSET, l_global_pool, ITR_OP_MEAN },
    { "GlobalMaxPool", 1, ONNX_MAX_OPSET, l_global_pool, ITR_OP_MAX },
    // recurrence (frontends/onnx/rnn.c)
    F("GRU", 7, ox_lower_gru), F("LSTM", 7, ox_lower_lstm), F("RNN", 7, ox_lower_rnn),
    // control flow (frontends/onnx/scan.c); opset 8's Scan had a batch axis
    F("Scan", 9, ox_lower_scan),
    // (frontends/onnx/control.c) where the condition or trip count is known
    F("If", 1, ox_lower_if), F("Loop", 1, ox_lower_loop),
};

const struct ox_row *ox_find_row(const char *op_type, int64_t opset, const struct ox_row **other) {
    *other = NULL;
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        if (strcmp(rows[i].name, op_type) != 0) continue;
        if (opset >= rows[i].since && opset <= rows[i].until) return &rows[i];
        *other = &rows[i];
    }
    return NULL;
}

bool itr_onnx_op_row(int i, const char **name, int *since, int *until) {
    if (i < 0 || (size_t)i >= sizeof rows / sizeof *rows) return false;
    *name = rows[i].name;
    *since = rows[i].since;
    *until = rows[i].until;
    return true;
}

bool itr_onnx_op_supported(const char *op_type, int64_t opset) {
    const struct ox_row *other;
    return ox_find_row(op_type, opset, &other) != NULL;
}
