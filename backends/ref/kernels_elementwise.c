// Elementwise kernels: unary math, casts, binary ops with numpy broadcasting
// and where. Floats are computed in double and rounded to the result's
// dtype; integers in int64 with two's-complement wrap-around; bools as 0/1.
#include "backends/ref/kernels.h"

static double sigmoid(double x) {
    // Both branches only exponentiate a non-positive number, so neither overflows.
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double unary_f(enum itr_op op, double x, double alpha) {
    switch (op) {
    case ITR_OP_NEG: return -x;
    case ITR_OP_ABS: return fabs(x);
    case ITR_OP_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x;   // keeps 0, -0 and NaN
    case ITR_OP_EXP: return exp(x);
    case ITR_OP_LOG: return log(x);                            // log(0) = -inf, log(<0) = NaN
    case ITR_OP_SQRT: return sqrt(x);
    case ITR_OP_RSQRT: return 1.0 / sqrt(x);
    case ITR_OP_RECIPROCAL: return 1.0 / x;
    case ITR_OP_RELU: return x > 0 ? x : 0.0;
    case ITR_OP_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case ITR_OP_SIGMOID: return sigmoid(x);
    case ITR_OP_TANH: return tanh(x);
    case ITR_OP_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
    case ITR_OP_ERF: return erf(x);
    case ITR_OP_SIN: return sin(x);
    case ITR_OP_COS: return cos(x);
    case ITR_OP_ACOS: return acos(x);                          // NaN outside [-1, 1]
    default: return x;
    }
}

static int64_t unary_i(enum itr_op op, int64_t x) {
    switch (op) {
    case ITR_OP_NEG: return (int64_t)(0 - (uint64_t)x);
    case ITR_OP_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
    case ITR_OP_SIGN: return (x > 0) - (x < 0);
    case ITR_OP_NOT: return !x;
    default: return x;
    }
}

bool ref_unary(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
               struct itr_tensor **out) {
    (void)ex;
    const struct itr_tensor *x = in[0];
    struct itr_tensor *y = out[0];
    int64_t cnt = itr_tensor_numel(x);
    if (cnt != itr_tensor_numel(y) || x->dtype != y->dtype)
        return ref_error(ex, n, "operand %s does not match the result %s", ref_shape_str(x).s, ref_shape_str(y).s);
    if (n->op == ITR_OP_IDENTITY || n->op == ITR_OP_STOP_GRADIENT) {
        memcpy(y->data, x->data, itr_tensor_nbytes(x));
        return true;
    }
    if (itr_dtype_is_float(x->dtype)) {
        double alpha = n->op == ITR_OP_LEAKY_RELU ? itr_node_attr_float(n, "alpha") : 0;
        if (x->dtype == ITR_F32) {
            const float *a = x->data;
            float *b = y->data;
            for (int64_t i = 0; i < cnt; i++) b[i] = (float)unary_f(n->op, a[i], alpha);
        } else {
            const double *a = x->data;
            double *b = y->data;
            for (int64_t i = 0; i < cnt; i++) b[i] = unary_f(n->op, a[i], alpha);
        }
    } else {
        for (int64_t i = 0; i < cnt; i++) st_i(y, i, unary_i(n->op, ld_i(x, i)));
    }
    return true;
}

bool ref_cast(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    int64_t cnt = itr_tensor_numel(in[0]);
    if (cnt != itr_tensor_numel(out[0]))
        return ref_error(ex, n, "operand %s does not match the result %s", ref_shape_str(in[0]).s,
                         ref_shape_str(out[0]).s);
    for (int64_t i = 0; i < cnt; i++) cvt_elem(out[0], i, in[0], i);
    return true;
}

// Sets up an iterator over out's shape reading operands 0..n_in-1 broadcast
// and the result (last operand) contiguously.
static bool bcast_iter(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in, int n_in,
                       const struct itr_tensor *y, struct nd_iter *it) {
    nd_init(it, y->rank, y->shape, n_in + 1);
    for (int k = 0; k < n_in; k++)
        if (!bcast_strides(in[k], y->rank, y->shape, it->stride[k]))
            return ref_error(ex, n, "operand %d of shape %s does not broadcast to the result shape %s", k,
                             ref_shape_str(in[k]).s, ref_shape_str(y).s);
    ref_strides(y->rank, y->shape, it->stride[n_in]);
    return true;
}

static double binary_f(enum itr_op op, double a, double b) {
    switch (op) {
    case ITR_OP_ADD: return a + b;
    case ITR_OP_SUB: return a - b;
    case ITR_OP_MUL: return a * b;
    case ITR_OP_DIV: return a / b;
    case ITR_OP_POW: return pow(a, b);
    case ITR_OP_MAXIMUM: return a != a || b != b ? NAN : a >= b ? a : b;
    case ITR_OP_MINIMUM: return a != a || b != b ? NAN : a <= b ? a : b;
    case ITR_OP_EQ: return a == b;
    case ITR_OP_NE: return a != b;
    case ITR_OP_LT: return a < b;
    case ITR_OP_LE: return a <= b;
    case ITR_OP_GT: return a > b;
    case ITR_OP_GE: return a >= b;
    default: return 0;
    }
}

static int64_t floordiv_i(int64_t a, int64_t b) {
    if (b == -1) return (int64_t)(0 - (uint64_t)a);   // INT64_MIN / -1 wraps instead of trapping
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

static int64_t binary_i(enum itr_op op, int64_t a, int64_t b) {
    switch (op) {
    case ITR_OP_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case ITR_OP_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case ITR_OP_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case ITR_OP_DIV: return floordiv_i(a, b);
    case ITR_OP_MAXIMUM: return a >= b ? a : b;
    case ITR_OP_MINIMUM: return a <= b ? a : b;
    case ITR_OP_EQ: return a == b;
    case ITR_OP_NE: return a != b;
    case ITR_OP_LT: return a < b;
    case ITR_OP_LE: return a <= b;
    case ITR_OP_GT: return a > b;
    case ITR_OP_GE: return a >= b;
    case ITR_OP_AND: return a && b;
    case ITR_OP_OR: return a || b;
    default: return 0;
    }
}

// One row of a float binary op with operand strides sa, sb (0 = broadcast).
// The common stride patterns get their own loops so the compiler can
// vectorise them; the arithmetic is the same as binary_f's.
#define BINARY_ROW(T, EXPR)                                                                              \
    do {                                                                                                 \
        if (sa == 1 && sb == 1)                                                                          \
            for (int64_t j = 0; j < len; j++) { double x = pa[j], z = pb[j]; py[j] = (T)(EXPR); }       \
        else if (sa == 1 && sb == 0)                                                                     \
            for (int64_t j = 0; j < len; j++) { double x = pa[j], z = pb[0]; py[j] = (T)(EXPR); }       \
        else if (sa == 0 && sb == 1)                                                                     \
            for (int64_t j = 0; j < len; j++) { double x = pa[0], z = pb[j]; py[j] = (T)(EXPR); }       \
        else                                                                                             \
            for (int64_t j = 0; j < len; j++) {                                                          \
                double x = pa[j * sa], z = pb[j * sb];                                                   \
                py[j] = (T)(EXPR);                                                                       \
            }                                                                                            \
    } while (0)

#define BINARY_ROWS(T)                                                                                   \
    static void binary_rows_##T(enum itr_op op, const T *a, const T *b, T *y, struct nd_iter *it,       \
                                int64_t rows, int64_t len, int64_t sa, int64_t sb) {                     \
        for (int64_t r = 0; r < rows; r++, nd_next(it)) {                                               \
            const T *pa = a + it->off[0], *pb = b + it->off[1];                                         \
            T *py = y + r * len;                                                                         \
            switch (op) {                                                                                \
            case ITR_OP_ADD: BINARY_ROW(T, x + z); break;                                                \
            case ITR_OP_SUB: BINARY_ROW(T, x - z); break;                                                \
            case ITR_OP_MUL: BINARY_ROW(T, x * z); break;                                                \
            case ITR_OP_DIV: BINARY_ROW(T, x / z); break;                                                \
            default: BINARY_ROW(T, binary_f(op, x, z)); break;                                           \
            }                                                                                            \
        }                                                                                                \
    }
BINARY_ROWS(float)
BINARY_ROWS(double)

bool ref_binary(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
                struct itr_tensor **out) {
    struct itr_tensor *y = out[0];
    struct nd_iter it;
    if (!bcast_iter(ex, n, in, 2, y, &it)) return false;
    int64_t cnt = itr_tensor_numel(y);
    const struct itr_tensor *a = in[0], *b = in[1];
    if (itr_dtype_is_float(a->dtype)) {
        bool f32 = a->dtype == ITR_F32 && b->dtype == ITR_F32 && y->dtype == ITR_F32;
        bool f64 = a->dtype == ITR_F64 && b->dtype == ITR_F64 && y->dtype == ITR_F64;
        if ((f32 || f64) && cnt > 0) {
            int64_t inner[REF_MAX_ITER_OPS] = { 0 };
            nd_coalesce(&it);
            int64_t len = nd_rows_init(&it, inner), rows = cnt / len;
            if (f32) binary_rows_float(n->op, a->data, b->data, y->data, &it, rows, len, inner[0], inner[1]);
            else binary_rows_double(n->op, a->data, b->data, y->data, &it, rows, len, inner[0], inner[1]);
        } else {
            for (int64_t i = 0; i < cnt; i++, nd_next(&it)) st_f(y, i, binary_f(n->op, ld_f(a, it.off[0]), ld_f(b, it.off[1])));
        }
        return true;
    }
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) {
        int64_t va = ld_i(a, it.off[0]), vb = ld_i(b, it.off[1]);
        if (n->op == ITR_OP_DIV && vb == 0) {
            char idx[160];
            itr_shape_format(y->rank, it.idx, idx, sizeof idx);
            return ref_error(ex, n, "integer division by zero (at result index %s)", idx);
        }
        st_i(y, i, binary_i(n->op, va, vb));
    }
    return true;
}

bool ref_where(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
               struct itr_tensor **out) {
    struct itr_tensor *y = out[0];
    struct nd_iter it;
    if (!bcast_iter(ex, n, in, 3, y, &it)) return false;
    int64_t cnt = itr_tensor_numel(y);
    const uint8_t *cond = in[0]->data;
    size_t es = itr_dtype_size(y->dtype);
    if (cnt > 0 && in[1]->dtype == y->dtype && in[2]->dtype == y->dtype && (es == 4 || es == 8)) {
        // Same dtypes: a row-wise select of 4- or 8-byte elements.
        int64_t inner[REF_MAX_ITER_OPS] = { 0 };
        nd_coalesce(&it);
        int64_t len = nd_rows_init(&it, inner), rows = cnt / len;
        for (int64_t r = 0; r < rows; r++, nd_next(&it)) {
            const uint8_t *pc = cond + it.off[0];
            if (es == 4) {
                const uint32_t *pa = (const uint32_t *)in[1]->data + it.off[1], *pb = (const uint32_t *)in[2]->data + it.off[2];
                uint32_t *py = (uint32_t *)y->data + r * len;
                for (int64_t j = 0; j < len; j++) py[j] = pc[j * inner[0]] ? pa[j * inner[1]] : pb[j * inner[2]];
            } else {
                const uint64_t *pa = (const uint64_t *)in[1]->data + it.off[1], *pb = (const uint64_t *)in[2]->data + it.off[2];
                uint64_t *py = (uint64_t *)y->data + r * len;
                for (int64_t j = 0; j < len; j++) py[j] = pc[j * inner[0]] ? pa[j * inner[1]] : pb[j * inner[2]];
            }
        }
        return true;
    }
    for (int64_t i = 0; i < cnt; i++, nd_next(&it)) {
        if (cond[it.off[0]]) cvt_elem(y, i, in[1], it.off[1]);
        else cvt_elem(y, i, in[2], it.off[2]);
    }
    return true;
}
