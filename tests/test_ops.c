// Every op of ops.def on small hand-computed cases, run through the
// reference interpreter: broadcasting, empty and size-1 dims, every dtype
// an op accepts, and f64 mode. Expected values are written out by hand or
// computed in the test by an obviously correct formula, never by calling
// the kernel under test. A table maps each op to its test; an op without
// one fails the run. tests/test_agree_ops.c includes this file to run every
// case on the compiled backends as well (the OPS_AGREE hook).
#include <stdlib.h>

#include "backends/ref/ref.h"
#include "ir/arena.h"
#include "ir/rng.h"
#include "testutil.h"

// ------------------------------------------------------------ harness

#define SCALAR 0, NULL

// One op applied to input tensors in a fresh one-node program.
struct oc {
    struct itr_program *p;
    struct itr_graph *g;
    enum itr_op op;
    struct itr_attr *a;
    struct itr_diags d;
    struct itr_tensor *out[16];
    int n_out;
    char *err;
};

static void oc_init(struct oc *c, enum itr_op op) {
    memset(c, 0, sizeof *c);
    c->p = itr_program_new();
    c->g = itr_program_add_graph(c->p, "main", ITR_GRAPH_ENTRY);
    c->op = op;
    c->a = itr_attrs_default(c->p, op);
    itr_diags_init(&c->d);
}

static void oc_free(struct oc *c) {
    for (int i = 0; i < c->n_out; i++) itr_tensor_free(c->out[i]);
    free(c->err);
    itr_diags_free(&c->d);
    itr_program_free(c->p);
}

static struct itr_attr *attr(struct oc *c, const char *name) { return attr_slot(c->a, c->op, name); }
static void set_int(struct oc *c, const char *name, int64_t v) { attr(c, name)->u.i = v; }
static void set_float(struct oc *c, const char *name, double v) { attr(c, name)->u.f = v; }
static void set_dtype(struct oc *c, const char *name, enum itr_dtype v) { attr(c, name)->u.dtype = v; }
static void set_ints(struct oc *c, const char *name, int n, const int64_t *v) {
    struct itr_attr *a = attr(c, name);
    a->u.ints.n = n;
    a->u.ints.v = itr_arena_alloc(c->p->arena, (size_t)(n ? n : 1) * sizeof *v);
    if (n) memcpy(a->u.ints.v, v, (size_t)n * sizeof *v);
}
static void set_dims(struct oc *c, const char *name, int n, const int64_t *v) {
    struct itr_attr *a = attr(c, name);
    a->u.dims.n = n;
    a->u.dims.v = itr_arena_alloc(c->p->arena, (size_t)(n ? n : 1) * sizeof(itr_dim));
    for (int i = 0; i < n; i++) a->u.dims.v[i] = itr_dim_const(c->p, v[i]);
}

static struct itr_type type_of(struct itr_program *p, const struct itr_tensor *t) {
    itr_dim d[ITR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) d[i] = itr_dim_const(p, t->shape[i]);
    return itr_type_make(t->dtype, t->rank, d);
}

// Builds and runs; false (with c->err set) if building or running failed.
static bool oc_run_mode(struct oc *c, int n_in, struct itr_tensor *const *ins, bool f64) {
    int32_t ids[16] = { 0 }, outs[16] = { 0 };
    for (int i = 0; i < n_in; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        ids[i] = itr_graph_add_input(c->g, name, type_of(c->p, ins[i]), ITR_NOLOC);
    }
    bool ok = itr_graph_add_node(c->g, c->op, ids, n_in, c->a, ITR_NOLOC, NULL, outs, &c->d);
    if (ok) {
        c->n_out = c->g->nodes[0].n_outputs;
        for (int i = 0; i < c->n_out; i++) {
            char name[16];
            snprintf(name, sizeof name, "y%d", i);
            itr_graph_add_output(c->g, name, outs[i]);
        }
        struct itr_ref_options opt = { f64 };
        ok = itr_ref_run(c->g, ins, NULL, NULL, &opt, c->out, &c->d);
        if (!ok) c->n_out = 0;
#ifdef OPS_AGREE
        // tests/test_agree_ops.c: the same case on a compiled backend
        OPS_AGREE(c->g, ins, f64, ok, c->out, &c->d);
#endif
    }
    c->err = itr_diags_summary(&c->d);
    return ok;
}
static bool oc_run(struct oc *c, int n_in, struct itr_tensor *const *ins) { return oc_run_mode(c, n_in, ins, false); }

// Compares a result with the expected dtype, shape and values (relative
// tolerance for floats); prints the first difference.
static bool expect(const struct itr_tensor *t, enum itr_dtype dt, int rank, const int64_t *shape, const double *vals,
                   double tol) {
    if (!t) { fprintf(stderr, "  no tensor\n"); return false; }
    if (t->dtype != dt || t->rank != rank) {
        fprintf(stderr, "  got %s rank %d, expected %s rank %d\n", itr_dtype_name(t->dtype), t->rank, itr_dtype_name(dt),
                rank);
        return false;
    }
    for (int i = 0; i < rank; i++)
        if (t->shape[i] != shape[i]) {
            fprintf(stderr, "  dim %d is %lld, expected %lld\n", i, (long long)t->shape[i], (long long)shape[i]);
            return false;
        }
    for (int64_t i = 0; vals && i < itr_tensor_numel(t); i++) {
        double g = itr_tensor_get(t, i), e = vals[i];
        bool same = (g != g && e != e) || g == e || fabs(g - e) <= tol * (1 + fabs(e));
        if (!same) {
            fprintf(stderr, "  element %lld is %.10g, expected %.10g\n", (long long)i, g, e);
            return false;
        }
    }
    return true;
}
#define EXPECT(t, dt, shape, vals, tol) CHECK(expect((t), (dt), shape, (vals), (tol)))

static void free_all(int n, struct itr_tensor **t) {
    for (int i = 0; i < n; i++) itr_tensor_free(t[i]);
}

// Runs a one-input op on f32/f64 values and compares with f(x) per element.
static void unary_case(enum itr_op op, enum itr_dtype dt, int n, const double *x, double (*f)(double), double tol) {
    struct oc c;
    oc_init(&c, op);
    struct itr_tensor *in = mk(dt, 1, (int64_t[]){ n }, x);
    double want[16];
    for (int i = 0; i < n; i++) want[i] = f(dt == ITR_F32 ? (double)(float)x[i] : x[i]);
    CHECK_MSG(oc_run(&c, 1, &in), "%s: %s", itr_op_name(op), c.err);
    if (c.n_out) CHECK_MSG(expect(c.out[0], dt, 1, (int64_t[]){ n }, want, tol), "op %s on %s", itr_op_name(op), itr_dtype_name(dt));
    itr_tensor_free(in);
    oc_free(&c);
}

// ------------------------------------------------------------ elementwise unary

static const double ux[] = { -2.5, -1, -0.0, 0.5, 1, 3 };
#define NUX 6

static double f_neg(double x) { return -x; }
static double f_abs(double x) { return x < 0 ? -x : x; }
static double f_sign(double x) { return x > 0 ? 1 : x < 0 ? -1 : 0; }
static double f_relu(double x) { return x > 0 ? x : 0; }
static double f_sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }
static double f_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double f_rsqrt(double x) { return 1 / sqrt(x); }
static double f_recip(double x) { return 1 / x; }
static double f_leaky(double x) { return x > 0 ? x : 0.2 * x; }

TEST(neg_abs_sign_all_dtypes) {
    for (int k = 0; k < 2; k++) {
        enum itr_dtype dt = k ? ITR_F64 : ITR_F32;
        unary_case(ITR_OP_NEG, dt, NUX, ux, f_neg, 1e-7);
        unary_case(ITR_OP_ABS, dt, NUX, ux, f_abs, 1e-7);
        unary_case(ITR_OP_SIGN, dt, NUX, ux, f_sign, 0);
    }
    // Integers: i32 and i64, including the wrap-around of -INT32_MIN.
    enum itr_dtype idt[2] = { ITR_I32, ITR_I64 };
    for (int k = 0; k < 2; k++) {
        struct itr_tensor *in = mk(idt[k], SHAPE(4), VALS(-3, 0, 7, -1));
        enum itr_op ops[3] = { ITR_OP_NEG, ITR_OP_ABS, ITR_OP_SIGN };
        double want[3][4] = { { 3, 0, -7, 1 }, { 3, 0, 7, 1 }, { -1, 0, 1, -1 } };
        for (int o = 0; o < 3; o++) {
            struct oc c;
            oc_init(&c, ops[o]);
            CHECK_MSG(oc_run(&c, 1, &in), "%s", c.err);
            EXPECT(c.out[0], idt[k], SHAPE(4), want[o], 0);
            oc_free(&c);
        }
        itr_tensor_free(in);
    }
    struct itr_tensor *in = itr_tensor_new(ITR_I32, 1, (int64_t[]){ 1 });
    ((int32_t *)in->data)[0] = INT32_MIN;
    struct oc c;
    oc_init(&c, ITR_OP_NEG);
    CHECK(oc_run(&c, 1, &in));
    CHECK(c.n_out && ((int32_t *)c.out[0]->data)[0] == INT32_MIN);
    oc_free(&c);
    itr_tensor_free(in);
    // bool is not numeric
    in = mk(ITR_BOOL, SHAPE(2), VALS(1, 0));
    oc_init(&c, ITR_OP_NEG);
    CHECK(!oc_run(&c, 1, &in));
    CHECK_STR_CONTAINS(c.err, "numeric");
    oc_free(&c);
    itr_tensor_free(in);
}

TEST(exp_log_sqrt_family) {
    const double pos[] = { 0.25, 1, 2, 9, 100 };
    const double unit[] = { -1, -0.75, -0.0, 0.3, 0.999, 1 };   // acos's domain, both ends included
    for (int k = 0; k < 2; k++) {
        enum itr_dtype dt = k ? ITR_F64 : ITR_F32;
        double tol = k ? 1e-14 : 1e-6;
        unary_case(ITR_OP_EXP, dt, NUX, ux, exp, tol);
        unary_case(ITR_OP_LOG, dt, 5, pos, log, tol);
        unary_case(ITR_OP_SQRT, dt, 5, pos, sqrt, tol);
        unary_case(ITR_OP_RSQRT, dt, 5, pos, f_rsqrt, tol);
        unary_case(ITR_OP_RECIPROCAL, dt, NUX, ux, f_recip, tol);
        unary_case(ITR_OP_TANH, dt, NUX, ux, tanh, tol);
        unary_case(ITR_OP_ERF, dt, NUX, ux, erf, tol);
        unary_case(ITR_OP_SIN, dt, NUX, ux, sin, tol);
        unary_case(ITR_OP_COS, dt, NUX, ux, cos, tol);
        unary_case(ITR_OP_ACOS, dt, 6, unit, acos, tol);
    }
    // Hand values: log 0 = -inf (no error), log of a negative is NaN, exp 0 = 1.
    struct oc c;
    oc_init(&c, ITR_OP_LOG);
    struct itr_tensor *in = mk(ITR_F32, SHAPE(3), VALS(0, 1, -1));
    CHECK_MSG(oc_run(&c, 1, &in), "%s", c.err);
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(-INFINITY, 0, NAN), 0);
    oc_free(&c);
    itr_tensor_free(in);
    // acos outside [-1, 1] is NaN (a value, not an error); acos(-1) = pi, acos(1) = 0.
    oc_init(&c, ITR_OP_ACOS);
    in = mk(ITR_F64, SHAPE(4), VALS(1.5, -1.0000001, -1, 1));
    CHECK_MSG(oc_run(&c, 1, &in), "%s", c.err);
    EXPECT(c.out[0], ITR_F64, SHAPE(4), VALS(NAN, NAN, M_PI, 0), 0);
    oc_free(&c);
    itr_tensor_free(in);
    // Integer operands are rejected by float-only ops.
    oc_init(&c, ITR_OP_EXP);
    in = mk(ITR_I32, SHAPE(1), VALS(1));
    CHECK(!oc_run(&c, 1, &in));
    CHECK_STR_CONTAINS(c.err, "float");
    oc_free(&c);
    itr_tensor_free(in);
}

TEST(activations) {
    for (int k = 0; k < 2; k++) {
        enum itr_dtype dt = k ? ITR_F64 : ITR_F32;
        double tol = k ? 1e-14 : 1e-6;
        unary_case(ITR_OP_RELU, dt, NUX, ux, f_relu, 0);
        unary_case(ITR_OP_SIGMOID, dt, NUX, ux, f_sigmoid_ref, tol);
        unary_case(ITR_OP_GELU, dt, NUX, ux, f_gelu, tol);
    }
    // gelu(1) = 0.8413447460685429 (Phi(1)), by hand from tables.
    struct oc c;
    oc_init(&c, ITR_OP_GELU);
    struct itr_tensor *in = mk(ITR_F64, SHAPE(2), VALS(1, 0));
    CHECK(oc_run(&c, 1, &in));
    EXPECT(c.out[0], ITR_F64, SHAPE(2), VALS(0.8413447460685429, 0), 1e-15);
    oc_free(&c);
    itr_tensor_free(in);
    // sigmoid does not overflow at the extremes.
    oc_init(&c, ITR_OP_SIGMOID);
    in = mk(ITR_F32, SHAPE(3), VALS(-1000, 0, 1000));
    CHECK(oc_run(&c, 1, &in));
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(0, 0.5, 1), 0);
    oc_free(&c);
    itr_tensor_free(in);
    // leaky_relu with a non-default alpha
    oc_init(&c, ITR_OP_LEAKY_RELU);
    set_float(&c, "alpha", 0.2);
    in = mk(ITR_F64, 1, (int64_t[]){ NUX }, ux);
    double want[NUX];
    for (int i = 0; i < NUX; i++) want[i] = f_leaky(ux[i]);
    CHECK(oc_run(&c, 1, &in));
    EXPECT(c.out[0], ITR_F64, SHAPE(NUX), want, 1e-15);
    oc_free(&c);
    itr_tensor_free(in);
    // default alpha 0.01
    oc_init(&c, ITR_OP_LEAKY_RELU);
    in = mk(ITR_F32, SHAPE(2), VALS(-2, 2));
    CHECK(oc_run(&c, 1, &in));
    EXPECT(c.out[0], ITR_F32, SHAPE(2), VALS(-0.02, 2), 1e-6);
    oc_free(&c);
    itr_tensor_free(in);
}

TEST(logical_not_identity_stop_gradient) {
    struct oc c;
    struct itr_tensor *b = mk(ITR_BOOL, SHAPE(3), VALS(1, 0, 1));
    oc_init(&c, ITR_OP_NOT);
    CHECK(oc_run(&c, 1, &b));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(3), VALS(0, 1, 0), 0);
    oc_free(&c);
    struct itr_tensor *f = mk(ITR_F32, SHAPE(3), VALS(1, 0, 1));
    oc_init(&c, ITR_OP_NOT);
    CHECK(!oc_run(&c, 1, &f));
    CHECK_STR_CONTAINS(c.err, "bool");
    oc_free(&c);
    // identity/stop_gradient on every dtype, including an empty tensor
    enum itr_op ops[2] = { ITR_OP_IDENTITY, ITR_OP_STOP_GRADIENT };
    for (int o = 0; o < 2; o++)
        for (int dt = 0; dt < ITR_DTYPE_COUNT; dt++) {
            struct itr_tensor *x = mk((enum itr_dtype)dt, SHAPE(2, 2), VALS(1, 0, 3, 4));
            oc_init(&c, ops[o]);
            CHECK(oc_run(&c, 1, &x));
            double want[4] = { 1, 0, dt == ITR_BOOL ? 1 : 3, dt == ITR_BOOL ? 1 : 4 };
            EXPECT(c.out[0], (enum itr_dtype)dt, SHAPE(2, 2), want, 0);
            CHECK(c.out[0] && c.out[0]->data != x->data);   // a copy, not the input itself
            oc_free(&c);
            itr_tensor_free(x);
        }
    struct itr_tensor *e = mk(ITR_F32, SHAPE(0, 3), NULL);
    oc_init(&c, ITR_OP_IDENTITY);
    CHECK(oc_run(&c, 1, &e));
    EXPECT(c.out[0], ITR_F32, SHAPE(0, 3), NULL, 0);
    oc_free(&c);
    itr_tensor_free(e);
    itr_tensor_free(b);
    itr_tensor_free(f);
}

TEST(cast_all_pairs) {
    // Each dtype to each: float->int truncates toward 0, ->bool is x != 0,
    // bool->x is 0/1; out-of-range floats saturate and NaN becomes 0.
    const double src[4] = { -2.75, 0, 1.5, 3 };
    for (int a = 0; a < ITR_DTYPE_COUNT; a++)
        for (int b = 0; b < ITR_DTYPE_COUNT; b++) {
            enum itr_dtype da = (enum itr_dtype)a, db = (enum itr_dtype)b;
            double in_v[4], want[4];
            for (int i = 0; i < 4; i++) {
                in_v[i] = src[i];
                if (itr_dtype_is_int(da)) in_v[i] = trunc(src[i]);
                if (da == ITR_BOOL) in_v[i] = src[i] != 0;
                want[i] = in_v[i];
                if (itr_dtype_is_int(db)) want[i] = trunc(in_v[i]);
                if (db == ITR_BOOL) want[i] = in_v[i] != 0;
            }
            struct itr_tensor *x = mk(da, SHAPE(4), in_v);
            struct oc c;
            oc_init(&c, ITR_OP_CAST);
            set_dtype(&c, "dtype", db);
            CHECK_MSG(oc_run(&c, 1, &x), "%s", c.err);
            CHECK_MSG(expect(c.out[0], db, SHAPE(4), want, 0), "cast %s -> %s", itr_dtype_name(da), itr_dtype_name(db));
            oc_free(&c);
            itr_tensor_free(x);
        }
    struct itr_tensor *x = mk(ITR_F64, SHAPE(3), VALS(1e30, -1e30, NAN));
    struct oc c;
    oc_init(&c, ITR_OP_CAST);
    set_dtype(&c, "dtype", ITR_I32);
    CHECK(oc_run(&c, 1, &x));
    EXPECT(c.out[0], ITR_I32, SHAPE(3), VALS(2147483647.0, -2147483648.0, 0), 0);
    oc_free(&c);
    itr_tensor_free(x);
}

// ------------------------------------------------------------ elementwise binary

// Runs a binary op and returns the single result (caller frees via oc_free).
static bool bin(struct oc *c, enum itr_op op, struct itr_tensor *a, struct itr_tensor *b) {
    oc_init(c, op);
    struct itr_tensor *ins[2] = { a, b };
    return oc_run(c, 2, ins);
}

TEST(add_broadcasts) {
    // [2,1,3] + [4,1] -> [2,4,3]
    double av[6], bv[4], want[24];
    for (int i = 0; i < 6; i++) av[i] = i;
    for (int j = 0; j < 4; j++) bv[j] = 10 * (j + 1);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) want[(i * 4 + j) * 3 + k] = av[i * 3 + k] + bv[j];
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *a = mk(dts[d], SHAPE(2, 1, 3), av), *b = mk(dts[d], SHAPE(4, 1), bv);
        struct oc c;
        CHECK_MSG(bin(&c, ITR_OP_ADD, a, b), "%s", c.err);
        EXPECT(c.out[0], dts[d], SHAPE(2, 4, 3), want, 0);
        oc_free(&c);
        // and the other way round
        CHECK(bin(&c, ITR_OP_ADD, b, a));
        EXPECT(c.out[0], dts[d], SHAPE(2, 4, 3), want, 0);
        oc_free(&c);
        itr_tensor_free(a);
        itr_tensor_free(b);
    }
    // scalar + vector, size-1 dims, and empty broadcasting: [0,3] + [3] -> [0,3]
    struct itr_tensor *s = mk(ITR_F32, SCALAR, VALS(2)), *v = mk(ITR_F32, SHAPE(1, 3), VALS(1, 2, 3));
    struct oc c;
    CHECK(bin(&c, ITR_OP_ADD, s, v));
    EXPECT(c.out[0], ITR_F32, SHAPE(1, 3), VALS(3, 4, 5), 0);
    oc_free(&c);
    struct itr_tensor *e = mk(ITR_F32, SHAPE(0, 3), NULL);
    CHECK(bin(&c, ITR_OP_ADD, e, v));
    EXPECT(c.out[0], ITR_F32, SHAPE(0, 3), NULL, 0);
    oc_free(&c);
    // dtypes must agree
    struct itr_tensor *i = mk(ITR_I32, SHAPE(1, 3), VALS(1, 2, 3));
    CHECK(!bin(&c, ITR_OP_ADD, v, i));
    CHECK_STR_CONTAINS(c.err, "dtypes differ: f32 vs i32");
    oc_free(&c);
    itr_tensor_free(s);
    itr_tensor_free(v);
    itr_tensor_free(e);
    itr_tensor_free(i);
}

TEST(sub_mul_div_pow) {
    struct itr_tensor *a = mk(ITR_F64, SHAPE(2, 2), VALS(1, 2, 3, 4)), *b = mk(ITR_F64, SHAPE(2), VALS(2, -4));
    struct oc c;
    CHECK(bin(&c, ITR_OP_SUB, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 2), VALS(-1, 6, 1, 8), 0);
    oc_free(&c);
    CHECK(bin(&c, ITR_OP_MUL, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 2), VALS(2, -8, 6, -16), 0);
    oc_free(&c);
    CHECK(bin(&c, ITR_OP_DIV, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 2), VALS(0.5, -0.5, 1.5, -1), 0);
    oc_free(&c);
    CHECK(bin(&c, ITR_OP_POW, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 2), VALS(1, 1.0 / 16, 9, 1.0 / 256), 1e-15);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    // float division by zero follows IEEE
    a = mk(ITR_F32, SHAPE(2), VALS(1, 0));
    b = mk(ITR_F32, SHAPE(1), VALS(0));
    CHECK(bin(&c, ITR_OP_DIV, a, b));
    EXPECT(c.out[0], ITR_F32, SHAPE(2), VALS(INFINITY, NAN), 0);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    // pow is float-only
    a = mk(ITR_I32, SHAPE(1), VALS(2));
    CHECK(!bin(&c, ITR_OP_POW, a, a));
    oc_free(&c);
    itr_tensor_free(a);
}

TEST(integer_ops_floor_division) {
    enum itr_dtype dts[2] = { ITR_I32, ITR_I64 };
    for (int d = 0; d < 2; d++) {
        struct itr_tensor *a = mk(dts[d], SHAPE(4), VALS(7, -7, 7, -7)), *b = mk(dts[d], SHAPE(4), VALS(2, 2, -2, -2));
        struct oc c;
        CHECK(bin(&c, ITR_OP_DIV, a, b));
        EXPECT(c.out[0], dts[d], SHAPE(4), VALS(3, -4, -4, 3), 0);
        oc_free(&c);
        CHECK(bin(&c, ITR_OP_MUL, a, b));
        EXPECT(c.out[0], dts[d], SHAPE(4), VALS(14, -14, -14, 14), 0);
        oc_free(&c);
        CHECK(bin(&c, ITR_OP_SUB, a, b));
        EXPECT(c.out[0], dts[d], SHAPE(4), VALS(5, -9, 9, -5), 0);
        oc_free(&c);
        struct itr_tensor *z = mk(dts[d], SHAPE(1), VALS(0));
        CHECK(!bin(&c, ITR_OP_DIV, a, z));
        CHECK_STR_CONTAINS(c.err, "division by zero");
        oc_free(&c);
        itr_tensor_free(a);
        itr_tensor_free(b);
        itr_tensor_free(z);
    }
    // i64 keeps precision beyond 2^53
    struct itr_tensor *a = itr_tensor_new(ITR_I64, 1, (int64_t[]){ 1 }), *b = itr_tensor_new(ITR_I64, 1, (int64_t[]){ 1 });
    ((int64_t *)a->data)[0] = (1LL << 60) + 1;
    ((int64_t *)b->data)[0] = 2;
    struct oc c;
    CHECK(bin(&c, ITR_OP_ADD, a, b));
    CHECK(c.n_out && ((int64_t *)c.out[0]->data)[0] == (1LL << 60) + 3);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

TEST(maximum_minimum) {
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *a = mk(dts[d], SHAPE(2, 2), VALS(1, 5, -3, 4)), *b = mk(dts[d], SHAPE(2), VALS(2, 4));
        struct oc c;
        CHECK(bin(&c, ITR_OP_MAXIMUM, a, b));
        EXPECT(c.out[0], dts[d], SHAPE(2, 2), VALS(2, 5, 2, 4), 0);
        oc_free(&c);
        CHECK(bin(&c, ITR_OP_MINIMUM, a, b));
        EXPECT(c.out[0], dts[d], SHAPE(2, 2), VALS(1, 4, -3, 4), 0);
        oc_free(&c);
        itr_tensor_free(a);
        itr_tensor_free(b);
    }
    struct itr_tensor *a = mk(ITR_F64, SHAPE(2), VALS(NAN, 1)), *b = mk(ITR_F64, SHAPE(2), VALS(0, NAN));
    struct oc c;
    CHECK(bin(&c, ITR_OP_MAXIMUM, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2), VALS(NAN, NAN), 0);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

TEST(comparisons) {
    enum itr_op ops[6] = { ITR_OP_EQ, ITR_OP_NE, ITR_OP_LT, ITR_OP_LE, ITR_OP_GT, ITR_OP_GE };
    const double av[3] = { 1, 2, 3 }, bv = 2;
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++)
        for (int o = 0; o < 6; o++) {
            struct itr_tensor *a = mk(dts[d], SHAPE(3), av), *b = mk(dts[d], SCALAR, &bv);
            double want[3];
            for (int i = 0; i < 3; i++) {
                double x = av[i];
                want[i] = o == 0 ? x == bv : o == 1 ? x != bv : o == 2 ? x < bv : o == 3 ? x <= bv : o == 4 ? x > bv : x >= bv;
            }
            struct oc c;
            CHECK_MSG(bin(&c, ops[o], a, b), "%s", c.err);
            CHECK_MSG(expect(c.out[0], ITR_BOOL, SHAPE(3), want, 0), "%s on %s", itr_op_name(ops[o]), itr_dtype_name(dts[d]));
            oc_free(&c);
            itr_tensor_free(a);
            itr_tensor_free(b);
        }
    // eq on bools is allowed, ordering of bools is not
    struct itr_tensor *x = mk(ITR_BOOL, SHAPE(2), VALS(1, 0)), *y = mk(ITR_BOOL, SHAPE(2), VALS(1, 1));
    struct oc c;
    CHECK(bin(&c, ITR_OP_EQ, x, y));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(2), VALS(1, 0), 0);
    oc_free(&c);
    CHECK(!bin(&c, ITR_OP_LT, x, y));
    oc_free(&c);
    itr_tensor_free(x);
    itr_tensor_free(y);
}

TEST(logical_and_or) {
    struct itr_tensor *a = mk(ITR_BOOL, SHAPE(2, 1), VALS(0, 1)), *b = mk(ITR_BOOL, SHAPE(2), VALS(0, 1));
    struct oc c;
    CHECK(bin(&c, ITR_OP_AND, a, b));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(2, 2), VALS(0, 0, 0, 1), 0);
    oc_free(&c);
    CHECK(bin(&c, ITR_OP_OR, a, b));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(2, 2), VALS(0, 1, 1, 1), 0);
    oc_free(&c);
    struct itr_tensor *f = mk(ITR_F32, SHAPE(2), VALS(0, 1));
    CHECK(!bin(&c, ITR_OP_AND, f, f));
    CHECK_STR_CONTAINS(c.err, "bool");
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    itr_tensor_free(f);
}

TEST(where_broadcasts) {
    struct itr_tensor *cond = mk(ITR_BOOL, SHAPE(2, 1), VALS(1, 0));
    struct itr_tensor *a = mk(ITR_I64, SHAPE(3), VALS(1, 2, 3)), *b = mk(ITR_I64, SCALAR, VALS(-1));
    struct oc c;
    oc_init(&c, ITR_OP_WHERE);
    struct itr_tensor *ins[3] = { cond, a, b };
    CHECK(oc_run(&c, 3, ins));
    EXPECT(c.out[0], ITR_I64, SHAPE(2, 3), VALS(1, 2, 3, -1, -1, -1), 0);
    oc_free(&c);
    // condition must be bool
    oc_init(&c, ITR_OP_WHERE);
    ins[0] = a;
    CHECK(!oc_run(&c, 3, ins));
    CHECK_STR_CONTAINS(c.err, "bool");
    oc_free(&c);
    itr_tensor_free(cond);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

// Every broadcast pattern the row-wise kernels special-case (both operands
// contiguous, one broadcast along the row, strided rows, size-1 dims that
// coalesce away, rank 0) against an element-by-element computation.
static int64_t bcast_offset(const struct itr_tensor *t, int rank, const int64_t *shape, int64_t flat) {
    int64_t off = 0, stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        int64_t i = flat % shape[d];
        flat /= shape[d];
        int k = d - (rank - t->rank);
        if (k >= 0) {
            if (t->shape[k] != 1) off += i * stride;
            stride *= t->shape[k];
        }
    }
    return off;
}

TEST(binary_and_where_every_stride_pattern) {
    static const struct { int ra, rb; int64_t a[4], b[4]; } cases[] = {
        { 3, 3, { 2, 3, 5 }, { 2, 3, 5 } },   // same shape: one long row
        { 3, 1, { 2, 3, 5 }, { 5 } },         // b repeats per row
        { 3, 2, { 2, 3, 5 }, { 3, 1 } },      // b broadcast along the row
        { 2, 3, { 3, 1 }, { 2, 3, 5 } },      // a broadcast along the row
        { 3, 3, { 2, 1, 5 }, { 1, 3, 1 } },   // both broadcast, strided rows
        { 4, 4, { 1, 2, 1, 3 }, { 4, 1, 1, 3 } },
        { 0, 2, { 0 }, { 3, 4 } },            // scalar
        { 2, 0, { 3, 4 }, { 0 } },
        { 0, 0, { 0 }, { 0 } },
        { 3, 3, { 1, 1, 1 }, { 1, 1, 1 } },   // all dims 1
    };
    static const enum itr_op ops[] = { ITR_OP_ADD, ITR_OP_SUB, ITR_OP_MUL, ITR_OP_DIV, ITR_OP_MAXIMUM };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int rank = cases[ci].ra > cases[ci].rb ? cases[ci].ra : cases[ci].rb;
        int64_t shape[4];
        for (int d = 0; d < rank; d++) {
            int ka = d - (rank - cases[ci].ra), kb = d - (rank - cases[ci].rb);
            int64_t da = ka >= 0 ? cases[ci].a[ka] : 1, db = kb >= 0 ? cases[ci].b[kb] : 1;
            shape[d] = da > db ? da : db;
        }
        for (int dt = 0; dt < 2; dt++) {
            enum itr_dtype dtype = dt ? ITR_F64 : ITR_F32;
            struct itr_tensor *a = itr_tensor_new(dtype, cases[ci].ra, cases[ci].a);
            struct itr_tensor *b = itr_tensor_new(dtype, cases[ci].rb, cases[ci].b);
            struct itr_tensor *cond = itr_tensor_new(ITR_BOOL, cases[ci].ra, cases[ci].a);
            for (int64_t i = 0; i < itr_tensor_numel(a); i++) {
                itr_tensor_set(a, i, 0.37 * (double)i - 1.1);
                itr_tensor_set(cond, i, (double)(i % 3 == 1));
            }
            for (int64_t i = 0; i < itr_tensor_numel(b); i++) itr_tensor_set(b, i, 1.3 + 0.71 * (double)i);
            int64_t n = 1;
            for (int d = 0; d < rank; d++) n *= shape[d];
            for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
                struct oc c;
                CHECK_MSG(bin(&c, ops[oi], a, b), "%s", c.err);
                for (int64_t i = 0; i < n && c.n_out == 1; i++) {
                    double x = itr_tensor_get(a, bcast_offset(a, rank, shape, i));
                    double z = itr_tensor_get(b, bcast_offset(b, rank, shape, i));
                    double w = ops[oi] == ITR_OP_ADD ? x + z : ops[oi] == ITR_OP_SUB ? x - z
                             : ops[oi] == ITR_OP_MUL ? x * z : ops[oi] == ITR_OP_DIV ? x / z : (x >= z ? x : z);
                    if (dtype == ITR_F32) w = (float)w;
                    CHECK_MSG(itr_tensor_get(c.out[0], i) == w, "case %zu %s op %s element %lld", ci,
                              itr_dtype_name(dtype), itr_op_name(ops[oi]), (long long)i);
                }
                oc_free(&c);
            }
            struct oc c;
            oc_init(&c, ITR_OP_WHERE);
            struct itr_tensor *ins[3] = { cond, a, b };
            CHECK_MSG(oc_run(&c, 3, ins), "%s", c.err);
            for (int64_t i = 0; i < n && c.n_out == 1; i++) {
                bool k = itr_tensor_get(cond, bcast_offset(cond, rank, shape, i)) != 0;
                double w = k ? itr_tensor_get(a, bcast_offset(a, rank, shape, i))
                             : itr_tensor_get(b, bcast_offset(b, rank, shape, i));
                CHECK_MSG(itr_tensor_get(c.out[0], i) == w, "where case %zu element %lld", ci, (long long)i);
            }
            oc_free(&c);
            itr_tensor_free(a);
            itr_tensor_free(b);
            itr_tensor_free(cond);
        }
    }
}

// ------------------------------------------------------------ reductions

static bool red(struct oc *c, enum itr_op op, struct itr_tensor *x, int n_axes, const int64_t *axes, bool keep) {
    oc_init(c, op);
    if (axes) set_ints(c, "axes", n_axes, axes);
    if (keep) set_int(c, "keepdims", 1);
    return oc_run(c, 1, &x);
}

TEST(sum_mean_axes_keepdims) {
    // x[2,3] = [[1,2,3],[4,5,6]]
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *x = mk(dts[d], SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
        struct oc c;
        CHECK(red(&c, ITR_OP_SUM, x, INTS(1), false));
        EXPECT(c.out[0], dts[d], SHAPE(2), VALS(6, 15), 0);
        oc_free(&c);
        CHECK(red(&c, ITR_OP_SUM, x, INTS(0), true));
        EXPECT(c.out[0], dts[d], SHAPE(1, 3), VALS(5, 7, 9), 0);
        oc_free(&c);
        CHECK(red(&c, ITR_OP_SUM, x, 0, NULL, false));   // all axes
        EXPECT(c.out[0], dts[d], SCALAR, VALS(21), 0);
        oc_free(&c);
        CHECK(red(&c, ITR_OP_SUM, x, INTS(-1, 0), true));
        EXPECT(c.out[0], dts[d], SHAPE(1, 1), VALS(21), 0);
        oc_free(&c);
        bool ok = red(&c, ITR_OP_MEAN, x, INTS(1), false);
        if (itr_dtype_is_float(dts[d])) {
            CHECK(ok);
            EXPECT(c.out[0], dts[d], SHAPE(2), VALS(2, 5), 1e-7);
        } else {
            CHECK(!ok);   // mean of integers is a shape error
            CHECK_STR_CONTAINS(c.err, "float");
        }
        oc_free(&c);
        itr_tensor_free(x);
    }
    // 3-D, middle axis; empty and size-1 dims
    double v[24], want[8];
    for (int i = 0; i < 24; i++) v[i] = i;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) want[i * 4 + k] = v[i * 12 + k] + v[i * 12 + 4 + k] + v[i * 12 + 8 + k];
    struct itr_tensor *x = mk(ITR_F64, SHAPE(2, 3, 4), v);
    struct oc c;
    CHECK(red(&c, ITR_OP_SUM, x, INTS(1), false));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 4), want, 0);
    oc_free(&c);
    itr_tensor_free(x);
    struct itr_tensor *e = mk(ITR_F32, SHAPE(0, 3), NULL);
    CHECK(red(&c, ITR_OP_SUM, e, INTS(0), false));
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(0, 0, 0), 0);
    oc_free(&c);
    CHECK(red(&c, ITR_OP_MEAN, e, INTS(0), false));
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(NAN, NAN, NAN), 0);
    oc_free(&c);
    CHECK(!red(&c, ITR_OP_MAX, e, INTS(0), false));   // max of nothing
    CHECK_STR_CONTAINS(c.err, "empty");
    oc_free(&c);
    CHECK(red(&c, ITR_OP_MAX, e, INTS(1), false));    // max over a non-empty axis of an empty tensor
    EXPECT(c.out[0], ITR_F32, SHAPE(0), NULL, 0);
    oc_free(&c);
    itr_tensor_free(e);
    x = mk(ITR_F32, SHAPE(1, 3), VALS(1, 2, 4));
    CHECK(red(&c, ITR_OP_MEAN, x, INTS(0), false));
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(1, 2, 4), 0);
    oc_free(&c);
    itr_tensor_free(x);
    // bad axes
    x = mk(ITR_F32, SHAPE(2), VALS(1, 2));
    CHECK(!red(&c, ITR_OP_SUM, x, INTS(1), false));
    CHECK_STR_CONTAINS(c.err, "out of range");
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(max_min) {
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *x = mk(dts[d], SHAPE(2, 3), VALS(3, -1, 2, -5, 7, 7));
        struct oc c;
        CHECK(red(&c, ITR_OP_MAX, x, INTS(1), false));
        EXPECT(c.out[0], dts[d], SHAPE(2), VALS(3, 7), 0);
        oc_free(&c);
        CHECK(red(&c, ITR_OP_MIN, x, INTS(0), true));
        EXPECT(c.out[0], dts[d], SHAPE(1, 3), VALS(-5, -1, 2), 0);
        oc_free(&c);
        CHECK(red(&c, ITR_OP_MIN, x, 0, NULL, false));
        EXPECT(c.out[0], dts[d], SCALAR, VALS(-5), 0);
        oc_free(&c);
        itr_tensor_free(x);
    }
    struct itr_tensor *x = mk(ITR_F32, SHAPE(3), VALS(1, NAN, 2));
    struct oc c;
    CHECK(red(&c, ITR_OP_MAX, x, 0, NULL, false));
    EXPECT(c.out[0], ITR_F32, SCALAR, VALS(NAN), 0);
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(argmax_argmin_first_occurrence) {
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *x = mk(dts[d], SHAPE(2, 4), VALS(1, 5, 5, 0, 2, 2, -1, -1));
        struct oc c;
        oc_init(&c, ITR_OP_ARGMAX);
        set_int(&c, "axis", 1);
        CHECK(oc_run(&c, 1, &x));
        EXPECT(c.out[0], ITR_I64, SHAPE(2), VALS(1, 0), 0);
        oc_free(&c);
        oc_init(&c, ITR_OP_ARGMIN);
        set_int(&c, "axis", -1);
        set_int(&c, "keepdims", 1);
        CHECK(oc_run(&c, 1, &x));
        EXPECT(c.out[0], ITR_I64, SHAPE(2, 1), VALS(3, 2), 0);
        oc_free(&c);
        oc_init(&c, ITR_OP_ARGMAX);
        set_int(&c, "axis", 0);
        CHECK(oc_run(&c, 1, &x));
        EXPECT(c.out[0], ITR_I64, SHAPE(4), VALS(1, 0, 0, 0), 0);
        oc_free(&c);
        itr_tensor_free(x);
    }
    struct itr_tensor *e = mk(ITR_F32, SHAPE(2, 0), NULL);
    struct oc c;
    oc_init(&c, ITR_OP_ARGMAX);
    set_int(&c, "axis", 1);
    CHECK(!oc_run(&c, 1, &e));
    CHECK_STR_CONTAINS(c.err, "empty");
    oc_free(&c);
    itr_tensor_free(e);
}

// ------------------------------------------------------------ matmul

TEST(matmul_batched_broadcast) {
    // [2,3] x [3,2]
    struct itr_tensor *a = mk(ITR_F32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    struct itr_tensor *b = mk(ITR_F32, SHAPE(3, 2), VALS(7, 8, 9, 10, 11, 12));
    struct oc c;
    CHECK(bin(&c, ITR_OP_MATMUL, a, b));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 2), VALS(58, 64, 139, 154), 0);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    // [2,1,2,3] x [3,3,2] -> [2,3,2,2], checked against a triple loop
    double av[12], bv[18], want[24];
    for (int i = 0; i < 12; i++) av[i] = i - 5;
    for (int i = 0; i < 18; i++) bv[i] = (i % 7) - 2;
    for (int p = 0; p < 2; p++)
        for (int q = 0; q < 3; q++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    double s = 0;
                    for (int k = 0; k < 3; k++) s += av[p * 6 + i * 3 + k] * bv[q * 6 + k * 2 + j];
                    want[((p * 3 + q) * 2 + i) * 2 + j] = s;
                }
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        a = mk(dts[d], SHAPE(2, 1, 2, 3), av);
        b = mk(dts[d], SHAPE(3, 3, 2), bv);
        CHECK_MSG(bin(&c, ITR_OP_MATMUL, a, b), "%s", c.err);
        EXPECT(c.out[0], dts[d], SHAPE(2, 3, 2, 2), want, 0);
        oc_free(&c);
        itr_tensor_free(a);
        itr_tensor_free(b);
    }
    // empty inner dim gives zeros; empty batch gives an empty result
    a = mk(ITR_F64, SHAPE(2, 0), NULL);
    b = mk(ITR_F64, SHAPE(0, 3), NULL);
    CHECK(bin(&c, ITR_OP_MATMUL, a, b));
    EXPECT(c.out[0], ITR_F64, SHAPE(2, 3), VALS(0, 0, 0, 0, 0, 0), 0);
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    // inner mismatch
    a = mk(ITR_F32, SHAPE(2, 3), NULL);
    b = mk(ITR_F32, SHAPE(2, 3), NULL);
    CHECK(!bin(&c, ITR_OP_MATMUL, a, b));
    CHECK_STR_CONTAINS(c.err, "inner dimensions differ: 3 vs 2");
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

// ------------------------------------------------------------ movement

static bool run1(struct oc *c, struct itr_tensor *x) { return oc_run(c, 1, &x); }

TEST(reshape_squeeze_unsqueeze) {
    struct itr_tensor *x = mk(ITR_I32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    struct oc c;
    oc_init(&c, ITR_OP_RESHAPE);
    set_dims(&c, "shape", INTS(3, 1, 2));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(3, 1, 2), VALS(1, 2, 3, 4, 5, 6), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_RESHAPE);
    set_dims(&c, "shape", INTS(-1, 2));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_RESHAPE);
    set_dims(&c, "shape", INTS(4, 2));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "element counts differ");
    oc_free(&c);
    oc_init(&c, ITR_OP_RESHAPE);
    set_dims(&c, "shape", INTS(-1, 4));
    CHECK(!run1(&c, x));
    oc_free(&c);
    oc_init(&c, ITR_OP_UNSQUEEZE);
    set_ints(&c, "axes", INTS(0, -1));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(1, 2, 3, 1), VALS(1, 2, 3, 4, 5, 6), 0);
    oc_free(&c);
    itr_tensor_free(x);
    x = mk(ITR_BOOL, SHAPE(1, 2, 1), VALS(1, 0));
    oc_init(&c, ITR_OP_SQUEEZE);
    set_ints(&c, "axes", INTS(2));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(1, 2), VALS(1, 0), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_SQUEEZE);
    set_ints(&c, "axes", INTS(1));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "cannot squeeze axis 1 of size 2");
    oc_free(&c);
    oc_init(&c, ITR_OP_SQUEEZE);
    set_ints(&c, "axes", 0, NULL);   // every size-1 axis
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_BOOL, SHAPE(2), VALS(1, 0), 0);
    oc_free(&c);
    itr_tensor_free(x);
    x = mk(ITR_F32, SHAPE(0, 3), NULL);
    oc_init(&c, ITR_OP_RESHAPE);
    set_dims(&c, "shape", INTS(3, 0));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(3, 0), NULL, 0);
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(transpose) {
    struct itr_tensor *x = mk(ITR_F64, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    struct oc c;
    oc_init(&c, ITR_OP_TRANSPOSE);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F64, SHAPE(3, 2), VALS(1, 4, 2, 5, 3, 6), 0);
    oc_free(&c);
    itr_tensor_free(x);
    double v[24], want[24];
    for (int i = 0; i < 24; i++) v[i] = i;
    // perm [1, 2, 0]: y[j,k,i] = x[i,j,k] with x [2,3,4] -> y [3,4,2]
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) want[(j * 4 + k) * 2 + i] = v[(i * 3 + j) * 4 + k];
    enum itr_dtype dts[3] = { ITR_F32, ITR_I64, ITR_I32 };
    for (int d = 0; d < 3; d++) {
        x = mk(dts[d], SHAPE(2, 3, 4), v);
        oc_init(&c, ITR_OP_TRANSPOSE);
        set_ints(&c, "perm", INTS(1, 2, 0));
        CHECK(run1(&c, x));
        EXPECT(c.out[0], dts[d], SHAPE(3, 4, 2), want, 0);
        oc_free(&c);
        itr_tensor_free(x);
    }
    x = mk(ITR_F32, SHAPE(2, 3), NULL);
    oc_init(&c, ITR_OP_TRANSPOSE);
    set_ints(&c, "perm", INTS(0, 0));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "not a permutation");
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(expand) {
    struct itr_tensor *x = mk(ITR_I64, SHAPE(3, 1), VALS(1, 2, 3));
    struct oc c;
    oc_init(&c, ITR_OP_EXPAND);
    set_dims(&c, "shape", INTS(2, 3, 2));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I64, SHAPE(2, 3, 2), VALS(1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_EXPAND);
    set_dims(&c, "shape", INTS(4, 2));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "cannot expand");
    oc_free(&c);
    oc_init(&c, ITR_OP_EXPAND);
    set_dims(&c, "shape", INTS(3, 0));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I64, SHAPE(3, 0), NULL, 0);
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(slice_numpy_clamping) {
    double v[10];
    for (int i = 0; i < 10; i++) v[i] = i;
    struct itr_tensor *x = mk(ITR_F32, SHAPE(10), v);
    struct { int64_t s, e, k; int n; double want[10]; } cases[] = {
        { 2, 5, 1, 3, { 2, 3, 4 } },
        { 0, -1, 1, 9, { 0, 1, 2, 3, 4, 5, 6, 7, 8 } },
        { -3, 100, 1, 3, { 7, 8, 9 } },
        { 1, 10, 3, 3, { 1, 4, 7 } },
        { 8, 2, -2, 3, { 8, 6, 4 } },
        { -1, -100, -1, 10, { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 } },
        { 5, 2, 1, 0, { 0 } },
        { 20, 30, 1, 0, { 0 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct oc c;
        oc_init(&c, ITR_OP_SLICE);
        set_ints(&c, "axes", INTS(0));
        set_ints(&c, "starts", 1, &cases[i].s);
        set_ints(&c, "ends", 1, &cases[i].e);
        set_ints(&c, "steps", 1, &cases[i].k);
        CHECK_MSG(run1(&c, x), "%s", c.err);
        CHECK_MSG(expect(c.out[0], ITR_F32, 1, (int64_t[]){ cases[i].n }, cases[i].want, 0), "case %zu", i);
        oc_free(&c);
    }
    itr_tensor_free(x);
    // two axes of a [3,4] i64 tensor: x[1:, ::2]
    double m[12];
    for (int i = 0; i < 12; i++) m[i] = i;
    x = mk(ITR_I64, SHAPE(3, 4), m);
    struct oc c;
    oc_init(&c, ITR_OP_SLICE);
    set_ints(&c, "axes", INTS(0, 1));
    set_ints(&c, "starts", INTS(1, 0));
    set_ints(&c, "ends", INTS(INT64_MAX, INT64_MAX));
    set_ints(&c, "steps", INTS(1, 2));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I64, SHAPE(2, 2), VALS(4, 6, 8, 10), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_SLICE);
    set_ints(&c, "axes", INTS(0));
    set_ints(&c, "starts", INTS(0));
    set_ints(&c, "ends", INTS(1));
    set_ints(&c, "steps", INTS(0));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "step");
    oc_free(&c);
    itr_tensor_free(x);
}

TEST(concat) {
    struct itr_tensor *a = mk(ITR_F32, SHAPE(2, 1), VALS(1, 2)), *b = mk(ITR_F32, SHAPE(2, 2), VALS(3, 4, 5, 6));
    struct itr_tensor *e = mk(ITR_F32, SHAPE(2, 0), NULL);
    struct oc c;
    oc_init(&c, ITR_OP_CONCAT);
    set_int(&c, "axis", 1);
    struct itr_tensor *ins[3] = { a, e, b };
    CHECK(oc_run(&c, 3, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 3), VALS(1, 3, 4, 2, 5, 6), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_CONCAT);
    set_int(&c, "axis", 0);
    struct itr_tensor *ins2[2] = { a, a };
    CHECK(oc_run(&c, 2, ins2));
    EXPECT(c.out[0], ITR_F32, SHAPE(4, 1), VALS(1, 2, 1, 2), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_CONCAT);
    set_int(&c, "axis", 0);
    struct itr_tensor *ins3[2] = { a, b };
    CHECK(!oc_run(&c, 2, ins3));
    CHECK_STR_CONTAINS(c.err, "dim 1");
    oc_free(&c);
    itr_tensor_free(a);
    itr_tensor_free(b);
    itr_tensor_free(e);
    struct itr_tensor *i1 = mk(ITR_I32, SHAPE(1), VALS(7)), *i2 = mk(ITR_I32, SHAPE(2), VALS(8, 9));
    oc_init(&c, ITR_OP_CONCAT);
    struct itr_tensor *ins4[2] = { i1, i2 };
    CHECK(!oc_run(&c, 2, ins4));   // axis is required
    CHECK_STR_CONTAINS(c.err, "missing required attribute 'axis'");
    oc_free(&c);
    oc_init(&c, ITR_OP_CONCAT);
    set_int(&c, "axis", -1);
    CHECK(oc_run(&c, 2, ins4));
    EXPECT(c.out[0], ITR_I32, SHAPE(3), VALS(7, 8, 9), 0);
    oc_free(&c);
    itr_tensor_free(i1);
    itr_tensor_free(i2);
}

TEST(pad) {
    struct itr_tensor *x = mk(ITR_F64, SHAPE(2, 2), VALS(1, 2, 3, 4));
    struct oc c;
    oc_init(&c, ITR_OP_PAD);
    set_ints(&c, "pads", INTS(1, 0, 0, 2));
    set_float(&c, "value", -1);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F64, SHAPE(3, 4), VALS(-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_PAD);
    set_ints(&c, "pads", INTS(1, 1));
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "pads has 2 entries");
    oc_free(&c);
    itr_tensor_free(x);
    x = mk(ITR_I32, SHAPE(0), NULL);
    oc_init(&c, ITR_OP_PAD);
    set_ints(&c, "pads", INTS(2, 1));
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(3), VALS(0, 0, 0), 0);
    oc_free(&c);
    itr_tensor_free(x);
}

// ------------------------------------------------------------ indexing

TEST(gather) {
    // embedding lookup: table [4,2], idx [2,3] -> [2,3,2]
    struct itr_tensor *tab = mk(ITR_F32, SHAPE(4, 2), VALS(0, 1, 10, 11, 20, 21, 30, 31));
    enum itr_dtype idts[2] = { ITR_I32, ITR_I64 };
    for (int d = 0; d < 2; d++) {
        struct itr_tensor *idx = mk(idts[d], SHAPE(2, 3), VALS(3, 0, 0, 1, 2, 3));
        struct oc c;
        CHECK(bin(&c, ITR_OP_GATHER, tab, idx));
        EXPECT(c.out[0], ITR_F32, SHAPE(2, 3, 2), VALS(30, 31, 0, 1, 0, 1, 10, 11, 20, 21, 30, 31), 0);
        oc_free(&c);
        itr_tensor_free(idx);
    }
    // axis 1 with a scalar index drops the axis
    struct itr_tensor *s = mk(ITR_I64, SCALAR, VALS(1));
    struct oc c;
    oc_init(&c, ITR_OP_GATHER);
    set_int(&c, "axis", 1);
    struct itr_tensor *ins[2] = { tab, s };
    CHECK(oc_run(&c, 2, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(4), VALS(1, 11, 21, 31), 0);
    oc_free(&c);
    // out of range and negative indices are errors with the op named
    struct itr_tensor *bad = mk(ITR_I32, SHAPE(2), VALS(1, 4));
    CHECK(!bin(&c, ITR_OP_GATHER, tab, bad));
    CHECK_STR_CONTAINS(c.err, "op 'gather': index 4 is out of range for axis 0 of size 4");
    oc_free(&c);
    itr_tensor_free(bad);
    bad = mk(ITR_I64, SHAPE(1), VALS(-1));
    CHECK(!bin(&c, ITR_OP_GATHER, tab, bad));
    CHECK_STR_CONTAINS(c.err, "index -1");
    oc_free(&c);
    itr_tensor_free(bad);
    // float indices are a shape error
    bad = mk(ITR_F32, SHAPE(1), VALS(0));
    CHECK(!bin(&c, ITR_OP_GATHER, tab, bad));
    CHECK_STR_CONTAINS(c.err, "i32 or i64");
    oc_free(&c);
    itr_tensor_free(bad);
    // an empty index gives an empty result
    struct itr_tensor *none = mk(ITR_I32, SHAPE(0), NULL);
    CHECK(bin(&c, ITR_OP_GATHER, tab, none));
    EXPECT(c.out[0], ITR_F32, SHAPE(0, 2), NULL, 0);
    oc_free(&c);
    itr_tensor_free(none);
    itr_tensor_free(s);
    itr_tensor_free(tab);
}

TEST(scatter_add) {
    // base [3,2] zeros, idx [3] = {2, 0, 2}, updates [3,2] -> duplicates accumulate
    struct itr_tensor *base = mk(ITR_F64, SHAPE(3, 2), VALS(0, 0, 0, 0, 1, 1));
    struct itr_tensor *idx = mk(ITR_I64, SHAPE(3), VALS(2, 0, 2));
    struct itr_tensor *upd = mk(ITR_F64, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    struct oc c;
    oc_init(&c, ITR_OP_SCATTER_ADD);
    struct itr_tensor *ins[3] = { base, idx, upd };
    CHECK(oc_run(&c, 3, ins));
    EXPECT(c.out[0], ITR_F64, SHAPE(3, 2), VALS(3, 4, 0, 0, 7, 9), 0);
    oc_free(&c);
    // axis 1 on i32
    struct itr_tensor *b2 = mk(ITR_I32, SHAPE(2, 3), NULL), *i2 = mk(ITR_I32, SHAPE(2), VALS(0, 0));
    struct itr_tensor *u2 = mk(ITR_I32, SHAPE(2, 2), VALS(1, 2, 3, 4));
    oc_init(&c, ITR_OP_SCATTER_ADD);
    set_int(&c, "axis", 1);
    struct itr_tensor *ins2[3] = { b2, i2, u2 };
    CHECK(oc_run(&c, 3, ins2));
    EXPECT(c.out[0], ITR_I32, SHAPE(2, 3), VALS(3, 0, 0, 7, 0, 0), 0);
    oc_free(&c);
    // wrong update shape
    oc_init(&c, ITR_OP_SCATTER_ADD);
    struct itr_tensor *ins3[3] = { base, idx, b2 };
    CHECK(!oc_run(&c, 3, ins3));
    oc_free(&c);
    // index out of range
    struct itr_tensor *bad = mk(ITR_I64, SHAPE(3), VALS(0, 3, 0));
    oc_init(&c, ITR_OP_SCATTER_ADD);
    struct itr_tensor *ins4[3] = { base, bad, upd };
    CHECK(!oc_run(&c, 3, ins4));
    CHECK_STR_CONTAINS(c.err, "out of range");
    oc_free(&c);
    itr_tensor_free(bad);
    itr_tensor_free(base);
    itr_tensor_free(idx);
    itr_tensor_free(upd);
    itr_tensor_free(b2);
    itr_tensor_free(i2);
    itr_tensor_free(u2);
}

TEST(take_along_axis) {
    // x [2,3]; idx [2,2] along axis 1
    struct itr_tensor *x = mk(ITR_F32, SHAPE(2, 3), VALS(10, 11, 12, 20, 21, 22));
    struct itr_tensor *idx = mk(ITR_I64, SHAPE(2, 2), VALS(2, 0, 1, 1));
    struct oc c;
    oc_init(&c, ITR_OP_TAKE_ALONG);
    set_int(&c, "axis", 1);
    struct itr_tensor *ins[2] = { x, idx };
    CHECK(oc_run(&c, 2, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 2), VALS(12, 10, 21, 21), 0);
    oc_free(&c);
    // index broadcast over rows: idx [1,1] = {2}
    struct itr_tensor *i1 = mk(ITR_I32, SHAPE(1, 1), VALS(2));
    oc_init(&c, ITR_OP_TAKE_ALONG);
    set_int(&c, "axis", 1);
    ins[1] = i1;
    CHECK(oc_run(&c, 2, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 1), VALS(12, 22), 0);
    oc_free(&c);
    // along axis 0
    struct itr_tensor *i0 = mk(ITR_I64, SHAPE(1, 3), VALS(1, 0, 1));
    oc_init(&c, ITR_OP_TAKE_ALONG);
    set_int(&c, "axis", 0);
    ins[1] = i0;
    CHECK(oc_run(&c, 2, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(1, 3), VALS(20, 11, 22), 0);
    oc_free(&c);
    struct itr_tensor *bad = mk(ITR_I64, SHAPE(2, 1), VALS(0, 3));
    oc_init(&c, ITR_OP_TAKE_ALONG);
    set_int(&c, "axis", 1);
    ins[1] = bad;
    CHECK(!oc_run(&c, 2, ins));
    CHECK_STR_CONTAINS(c.err, "index 3 is out of range for axis 1 of size 3");
    oc_free(&c);
    itr_tensor_free(bad);
    itr_tensor_free(x);
    itr_tensor_free(idx);
    itr_tensor_free(i1);
    itr_tensor_free(i0);
}

TEST(scatter_add_along_axis) {
    struct itr_tensor *base = mk(ITR_F32, SHAPE(2, 3), NULL);
    struct itr_tensor *idx = mk(ITR_I64, SHAPE(2, 2), VALS(2, 2, 0, 1));
    struct itr_tensor *upd = mk(ITR_F32, SHAPE(2, 2), VALS(1, 2, 3, 4));
    struct oc c;
    oc_init(&c, ITR_OP_SCATTER_ADD_ALONG);
    set_int(&c, "axis", 1);
    struct itr_tensor *ins[3] = { base, idx, upd };
    CHECK(oc_run(&c, 3, ins));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 3), VALS(0, 0, 3, 3, 4, 0), 0);
    oc_free(&c);
    // a size-1 base dim collects contributions from every row (adjoint of a broadcast take)
    struct itr_tensor *b1 = mk(ITR_I64, SHAPE(1, 3), VALS(100, 200, 300));
    oc_init(&c, ITR_OP_SCATTER_ADD_ALONG);
    set_int(&c, "axis", 1);
    struct itr_tensor *upd_i = mk(ITR_I64, SHAPE(2, 2), VALS(1, 2, 3, 4));
    struct itr_tensor *ins2[3] = { b1, idx, upd_i };
    CHECK_MSG(oc_run(&c, 3, ins2), "%s", c.err);
    EXPECT(c.out[0], ITR_I64, SHAPE(1, 3), VALS(103, 204, 303), 0);
    oc_free(&c);
    itr_tensor_free(b1);
    itr_tensor_free(upd_i);
    itr_tensor_free(base);
    itr_tensor_free(idx);
    itr_tensor_free(upd);
}

TEST(sort_stable) {
    enum itr_dtype dts[4] = { ITR_F32, ITR_F64, ITR_I32, ITR_I64 };
    for (int d = 0; d < 4; d++) {
        struct itr_tensor *x = mk(dts[d], SHAPE(2, 4), VALS(3, 1, 3, 0, 5, 5, 5, 1));
        struct oc c;
        oc_init(&c, ITR_OP_SORT);
        CHECK(run1(&c, x));
        EXPECT(c.out[0], dts[d], SHAPE(2, 4), VALS(0, 1, 3, 3, 1, 5, 5, 5), 0);
        EXPECT(c.out[1], ITR_I64, SHAPE(2, 4), VALS(3, 1, 0, 2, 3, 0, 1, 2), 0);
        oc_free(&c);
        oc_init(&c, ITR_OP_SORT);
        set_int(&c, "descending", 1);
        CHECK(run1(&c, x));
        EXPECT(c.out[0], dts[d], SHAPE(2, 4), VALS(3, 3, 1, 0, 5, 5, 5, 1), 0);
        EXPECT(c.out[1], ITR_I64, SHAPE(2, 4), VALS(0, 2, 1, 3, 0, 1, 2, 3), 0);
        oc_free(&c);
        oc_init(&c, ITR_OP_SORT);
        set_int(&c, "axis", 0);
        CHECK(run1(&c, x));
        EXPECT(c.out[0], dts[d], SHAPE(2, 4), VALS(3, 1, 3, 0, 5, 5, 5, 1), 0);
        EXPECT(c.out[1], ITR_I64, SHAPE(2, 4), VALS(0, 0, 0, 0, 1, 1, 1, 1), 0);
        oc_free(&c);
        itr_tensor_free(x);
    }
    struct itr_tensor *x = mk(ITR_F32, SHAPE(3), VALS(NAN, 2, 1));
    struct oc c;
    oc_init(&c, ITR_OP_SORT);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(3), VALS(1, 2, NAN), 0);
    oc_free(&c);
    itr_tensor_free(x);
    x = mk(ITR_F32, SHAPE(0), NULL);
    oc_init(&c, ITR_OP_SORT);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(0), NULL, 0);
    oc_free(&c);
    itr_tensor_free(x);
}

// Lines of every length around the short-line limits (64: insertion sort,
// or the sorting network across 16 neighbouring columns for f32 and i32
// lines strided by at least 8; beyond it qsort), with many ties, NaNs and
// zeros of both signs: the output is the line in the documented order
// (value, NaN largest, -0 equal to +0, ties by index), whatever the
// algorithm; topk's is the sort's first k.
TEST(sort_order_at_every_length) {
    // The last case has 2100 lines, enough for the LLVM backend to split
    // them over its threads (tests/test_agree_ops.c runs every case there).
    static const int64_t lens[] = { 1, 2, 3, 36, 63, 64, 65, 200, 36 };
    static const int64_t inners[] = { 2, 17 };   // 17: a full block of 16 columns and one more
    enum itr_dtype dts[3] = { ITR_F32, ITR_I64, ITR_I32 };
    uint64_t seed = 7;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int ii = 0; ii < 2; ii++)
            for (int d = 0; d < 3; d++)
                for (int desc = 0; desc < 2; desc++) {
                    bool last = li + 1 == sizeof lens / sizeof lens[0];
                    if (last && ii) continue;
                    int64_t len = lens[li], inner = last ? 700 : inners[ii];
                    // [3, len, inner]: lines along the middle axis, strided like GPO's
                    struct itr_tensor *x = itr_tensor_new(dts[d], 3, (int64_t[]){ 3, len, inner });
                    for (int64_t q = 0; q < 3 * len * inner; q++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        int r = (int)(seed >> 59);   // 0..31: many ties
                        bool fl = dts[d] == ITR_F32;
                        itr_tensor_set(x, q, fl && r == 31 ? NAN : fl && r == 30 ? -0.0 : (double)(r % 9) - 4);
                    }
                    struct oc c, t;
                    oc_init(&c, ITR_OP_SORT);
                    set_int(&c, "axis", 1);
                    set_int(&c, "descending", desc);
                    CHECK(run1(&c, x));
                    int64_t k = len / 2 + 1;
                    oc_init(&t, ITR_OP_TOPK);
                    set_int(&t, "axis", 1);
                    set_int(&t, "k", k);
                    set_int(&t, "largest", desc);
                    CHECK(run1(&t, x));
                    for (int64_t o = 0; c.out[0] && t.out[0] && o < 3; o++)
                        for (int64_t in = 0; in < inner; in++) {
                            bool *seen = calloc((size_t)len, 1), ok = true, top_ok = true;
                            for (int64_t p = 0; p < len && ok; p++) {
                                int64_t at = (o * len + p) * inner + in;
                                int64_t id = ((int64_t *)c.out[1]->data)[at];
                                ok = id >= 0 && id < len && !seen[id];
                                if (!ok) break;
                                seen[id] = true;
                                double v = itr_tensor_get(c.out[0], at), xv = itr_tensor_get(x, (o * len + id) * inner + in);
                                ok = (isnan(v) && isnan(xv)) || (v == xv && signbit(v) == signbit(xv));
                                if (ok && p > 0) {
                                    int64_t prev_id = ((int64_t *)c.out[1]->data)[at - inner];
                                    double u = itr_tensor_get(c.out[0], at - inner);
                                    int cmp = isnan(u) || isnan(v) ? isnan(u) - isnan(v) : (u > v) - (u < v);
                                    if (desc) cmp = -cmp;
                                    ok = cmp < 0 || (cmp == 0 && prev_id < id);
                                }
                                if (p < k) {
                                    int64_t tat = (o * k + p) * inner + in;
                                    double tv = itr_tensor_get(t.out[0], tat);
                                    top_ok = top_ok && ((int64_t *)t.out[1]->data)[tat] == id &&
                                             ((isnan(tv) && isnan(v)) || (tv == v && signbit(tv) == signbit(v)));
                                }
                            }
                            CHECK_MSG(ok, "sort of a line of %lld, stride %lld (%s, %s) out of order", (long long)len,
                                      (long long)inner, itr_dtype_name(dts[d]), desc ? "descending" : "ascending");
                            CHECK_MSG(top_ok, "topk %lld of a line of %lld, stride %lld (%s, %s) is not the sort's",
                                      (long long)k, (long long)len, (long long)inner, itr_dtype_name(dts[d]),
                                      desc ? "largest" : "smallest");
                            free(seen);
                        }
                    oc_free(&c);
                    oc_free(&t);
                    itr_tensor_free(x);
                }
}

TEST(topk) {
    struct itr_tensor *x = mk(ITR_F32, SHAPE(2, 5), VALS(1, 9, 3, 9, 2, 0, -1, 4, 4, 4));
    struct oc c;
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 3);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 3), VALS(9, 9, 3, 4, 4, 4), 0);
    EXPECT(c.out[1], ITR_I64, SHAPE(2, 3), VALS(1, 3, 2, 2, 3, 4), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 2);
    set_int(&c, "largest", 0);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 2), VALS(1, 2, -1, 0), 0);
    EXPECT(c.out[1], ITR_I64, SHAPE(2, 2), VALS(0, 4, 1, 0), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 1);
    set_int(&c, "axis", 0);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_F32, SHAPE(1, 5), VALS(1, 9, 4, 9, 4), 0);
    EXPECT(c.out[1], ITR_I64, SHAPE(1, 5), VALS(0, 0, 1, 0, 1), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 6);
    CHECK(!run1(&c, x));
    CHECK_STR_CONTAINS(c.err, "k = 6 exceeds the size 5");
    oc_free(&c);
    itr_tensor_free(x);
    x = mk(ITR_I32, SHAPE(3), VALS(5, 7, 6));
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 0);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(0), NULL, 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_TOPK);
    set_int(&c, "k", 2);
    CHECK(run1(&c, x));
    EXPECT(c.out[0], ITR_I32, SHAPE(2), VALS(7, 6), 0);
    EXPECT(c.out[1], ITR_I64, SHAPE(2), VALS(1, 2), 0);
    oc_free(&c);
    itr_tensor_free(x);
}

// ------------------------------------------------------------ sources

TEST(constant) {
    for (int dt = 0; dt < ITR_DTYPE_COUNT; dt++) {
        struct oc c;
        oc_init(&c, ITR_OP_CONSTANT);
        attr(&c, "value")->u.tensor = mk((enum itr_dtype)dt, SHAPE(2, 2), VALS(1, 0, 3, 1));
        CHECK(oc_run(&c, 0, NULL));
        EXPECT(c.out[0], (enum itr_dtype)dt, SHAPE(2, 2), VALS(1, 0, dt == ITR_BOOL ? 1 : 3, 1), 0);
        oc_free(&c);
    }
    struct oc c;
    oc_init(&c, ITR_OP_CONSTANT);
    attr(&c, "value")->u.tensor = mk(ITR_F32, SCALAR, VALS(0.5));
    CHECK(oc_run_mode(&c, 0, NULL, true));   // f64 mode widens f32 constants
    EXPECT(c.out[0], ITR_F64, SCALAR, VALS(0.5), 0);
    oc_free(&c);
}

TEST(full) {
    for (int dt = 0; dt < ITR_DTYPE_COUNT; dt++) {
        struct oc c;
        oc_init(&c, ITR_OP_FULL);
        set_float(&c, "value", 2.5);
        set_dims(&c, "shape", INTS(2, 1));
        set_dtype(&c, "dtype", (enum itr_dtype)dt);
        CHECK(oc_run(&c, 0, NULL));
        double w = itr_dtype_is_float((enum itr_dtype)dt) ? 2.5 : dt == ITR_BOOL ? 1 : 2;
        EXPECT(c.out[0], (enum itr_dtype)dt, SHAPE(2, 1), VALS(w, w), 0);
        oc_free(&c);
    }
    struct oc c;
    oc_init(&c, ITR_OP_FULL);
    set_float(&c, "value", -1);
    CHECK(oc_run(&c, 0, NULL));   // default: f32 scalar
    EXPECT(c.out[0], ITR_F32, SCALAR, VALS(-1), 0);
    oc_free(&c);
}

TEST(iota) {
    struct oc c;
    oc_init(&c, ITR_OP_IOTA);
    set_dims(&c, "shape", INTS(2, 3));
    set_int(&c, "axis", 1);
    CHECK(oc_run(&c, 0, NULL));
    EXPECT(c.out[0], ITR_I64, SHAPE(2, 3), VALS(0, 1, 2, 0, 1, 2), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_IOTA);
    set_dims(&c, "shape", INTS(2, 3));
    set_dtype(&c, "dtype", ITR_F32);
    CHECK(oc_run(&c, 0, NULL));
    EXPECT(c.out[0], ITR_F32, SHAPE(2, 3), VALS(0, 0, 0, 1, 1, 1), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_IOTA);
    set_dims(&c, "shape", INTS(4));
    set_dtype(&c, "dtype", ITR_I32);
    CHECK(oc_run(&c, 0, NULL));
    EXPECT(c.out[0], ITR_I32, SHAPE(4), VALS(0, 1, 2, 3), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_IOTA);
    set_dims(&c, "shape", INTS(4));
    set_dtype(&c, "dtype", ITR_BOOL);
    CHECK(!oc_run(&c, 0, NULL));
    oc_free(&c);
}

// The Random123 known-answer vectors for Philox-4x32-10.
TEST(philox_known_answers) {
    uint32_t out[4];
    itr_philox4x32_10((const uint32_t[]){ 0, 0, 0, 0 }, (const uint32_t[]){ 0, 0 }, out);
    CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u);
    itr_philox4x32_10((const uint32_t[]){ 0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u },
                      (const uint32_t[]){ 0xa4093822u, 0x299f31d0u }, out);
    CHECK(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u && out[3] == 0x24126ea1u);
    // the stream mapping: seed -> key, (index, salt) -> counter
    uint32_t w[4];
    itr_rng_words(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, w);
    CHECK(w[0] == 0xd16cfe09u && w[3] == 0x24126ea1u);
    // FNV-1a salts of names are fixed forever (checkpoints depend on them)
    CHECK(itr_rng_salt_of_name("") == 14695981039346656037ull);
    CHECK(itr_rng_salt_of_name("a") == 0xaf63dc4c8601ec8cull);
}

// Philox words straight from the block function and the documented formulas.
static void doc_words(uint64_t seed, uint64_t salt, uint64_t i, uint32_t w[4]) {
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    const uint32_t ctr[4] = { (uint32_t)i, (uint32_t)(i >> 32), (uint32_t)salt, (uint32_t)(salt >> 32) };
    itr_philox4x32_10(ctr, key, w);
}

static double doc_uniform24(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    doc_words(seed, salt, i, w);
    return (w[0] >> 8) / 16777216.0;
}

static double doc_normal24(uint64_t seed, uint64_t salt, uint64_t i) {
    uint32_t w[4];
    doc_words(seed, salt, i, w);
    double u1 = 1 - (w[0] >> 8) / 16777216.0, u2 = (w[1] >> 8) / 16777216.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static bool run_random(struct oc *c, enum itr_op op, int64_t seed, int64_t salt, int64_t n, enum itr_dtype dt,
                       bool f64) {
    oc_init(c, op);
    set_dims(c, "shape", 1, &n);
    set_int(c, "salt", salt);
    set_dtype(c, "dtype", dt);
    struct itr_tensor *s = mk(ITR_I64, SCALAR, NULL);
    ((int64_t *)s->data)[0] = seed;
    bool ok = oc_run_mode(c, 1, &s, f64);
    itr_tensor_free(s);
    return ok;
}

TEST(random_uniform) {
    struct oc c;
    CHECK(run_random(&c, ITR_OP_RANDOM_UNIFORM, 42, 7, 64, ITR_F32, false));
    double want[64];
    for (int i = 0; i < 64; i++) want[i] = doc_uniform24(42, 7, (uint64_t)i);
    EXPECT(c.out[0], ITR_F32, SHAPE(64), want, 0);
    oc_free(&c);
    // f64 mode draws the same f32 numbers (the IR's dtype decides)
    CHECK(run_random(&c, ITR_OP_RANDOM_UNIFORM, 42, 7, 64, ITR_F32, true));
    EXPECT(c.out[0], ITR_F64, SHAPE(64), want, 0);
    oc_free(&c);
    // low/high, and a different salt gives a different stream
    oc_init(&c, ITR_OP_RANDOM_UNIFORM);
    set_dims(&c, "shape", INTS(1000));
    set_float(&c, "low", -2);
    set_float(&c, "high", 3);
    struct itr_tensor *s = mk(ITR_I32, SCALAR, VALS(1));
    CHECK(oc_run(&c, 1, &s));
    double lo = 1e9, hi = -1e9, sum = 0;
    for (int i = 0; c.n_out && i < 1000; i++) {
        double v = itr_tensor_get(c.out[0], i);
        lo = fmin(lo, v);
        hi = fmax(hi, v);
        sum += v;
    }
    CHECK(lo >= -2 && hi < 3 && lo < -1.9 && hi > 2.9);
    CHECK_NEAR(sum / 1000, 0.5, 0.15);
    oc_free(&c);
    itr_tensor_free(s);
    // f64 draws use 53 bits of (w0, w1)
    CHECK(run_random(&c, ITR_OP_RANDOM_UNIFORM, 3, 0, 4, ITR_F64, false));
    for (int i = 0; c.n_out && i < 4; i++) {
        uint32_t w[4];
        itr_rng_words(3, 0, (uint64_t)i, w);
        double u = (double)((((uint64_t)w[0] << 32) | w[1]) >> 11) / 9007199254740992.0;
        CHECK_NEAR(itr_tensor_get(c.out[0], i), u, 0);
    }
    oc_free(&c);
    // the seed must be an integer scalar
    oc_init(&c, ITR_OP_RANDOM_UNIFORM);
    set_dims(&c, "shape", INTS(2));
    s = mk(ITR_F32, SCALAR, VALS(1));
    CHECK(!oc_run(&c, 1, &s));
    CHECK_STR_CONTAINS(c.err, "seed");
    oc_free(&c);
    itr_tensor_free(s);
}

TEST(random_normal) {
    struct oc c;
    CHECK(run_random(&c, ITR_OP_RANDOM_NORMAL, 5, 1, 32, ITR_F32, false));
    double want[32];
    for (int i = 0; i < 32; i++) want[i] = (float)doc_normal24(5, 1, (uint64_t)i);
    EXPECT(c.out[0], ITR_F32, SHAPE(32), want, 1e-7);
    oc_free(&c);
    // moments of 40000 f64 draws with mean 1, std 2
    oc_init(&c, ITR_OP_RANDOM_NORMAL);
    set_dims(&c, "shape", INTS(40000));
    set_float(&c, "mean", 1);
    set_float(&c, "std", 2);
    set_dtype(&c, "dtype", ITR_F64);
    struct itr_tensor *s = mk(ITR_I64, SCALAR, VALS(9));
    CHECK(oc_run(&c, 1, &s));
    double m = 0, v = 0;
    for (int i = 0; c.n_out && i < 40000; i++) m += itr_tensor_get(c.out[0], i);
    m /= 40000;
    for (int i = 0; c.n_out && i < 40000; i++) v += pow(itr_tensor_get(c.out[0], i) - m, 2);
    v /= 40000;
    CHECK_NEAR(m, 1, 0.06);
    CHECK_NEAR(v, 4, 0.2);
    oc_free(&c);
    itr_tensor_free(s);
    // random ops only make floats
    oc_init(&c, ITR_OP_RANDOM_NORMAL);
    set_dims(&c, "shape", INTS(2));
    set_dtype(&c, "dtype", ITR_I32);
    s = mk(ITR_I64, SCALAR, VALS(9));
    CHECK(!oc_run(&c, 1, &s));
    oc_free(&c);
    itr_tensor_free(s);
}

TEST(random_bernoulli) {
    struct oc c;
    oc_init(&c, ITR_OP_RANDOM_BERNOULLI);
    set_dims(&c, "shape", INTS(256));
    set_float(&c, "p", 0.3);
    set_int(&c, "salt", 11);
    struct itr_tensor *s = mk(ITR_I64, SCALAR, VALS(77));
    CHECK(oc_run(&c, 1, &s));
    double want[256];
    for (int i = 0; i < 256; i++) want[i] = doc_uniform24(77, 11, (uint64_t)i) < 0.3 ? 1 : 0;
    EXPECT(c.out[0], ITR_F32, SHAPE(256), want, 0);
    oc_free(&c);
    // A result large enough for the LLVM backend to fill it in blocks on its
    // threads (tests/test_agree_ops.c runs every case there too): the same
    // draws, in both precisions.
    for (int mode = 0; mode < 2; mode++) {
        oc_init(&c, ITR_OP_RANDOM_BERNOULLI);
        set_dims(&c, "shape", INTS(3, 33335));
        set_float(&c, "p", 0.5);
        set_int(&c, "salt", 3);
        CHECK(oc_run_mode(&c, 1, &s, mode == 1));
        int64_t bad = -1;
        for (int64_t i = 0; c.n_out && bad < 0 && i < 3 * 33335; i++)
            if (itr_tensor_get(c.out[0], i) != (doc_uniform24(77, 3, (uint64_t)i) < 0.5 ? 1 : 0)) bad = i;
        CHECK_MSG(c.n_out && bad < 0, "element %lld is not the documented draw", (long long)bad);
        oc_free(&c);
    }
    oc_init(&c, ITR_OP_RANDOM_BERNOULLI);
    set_dims(&c, "shape", INTS(2));
    set_float(&c, "p", 1.5);
    CHECK(!oc_run(&c, 1, &s));
    CHECK_STR_CONTAINS(c.err, "outside [0, 1]");
    oc_free(&c);
    itr_tensor_free(s);
}

// ------------------------------------------------------------ scan

TEST(scan_running_max) {
    // body(h: f32[2], x: f32[2]) -> (max(h, x), h + x): the carry is a
    // running max; each step also emits h + x (test_interp has cumsum).
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim two = itr_dim_const(p, 2), three = itr_dim_const(p, 3);
    struct itr_type t2 = itr_type_make(ITR_F32, 1, &two);
    struct itr_graph *body = itr_program_add_graph(p, "step", ITR_GRAPH_BODY);
    int32_t h = itr_graph_add_input(body, "h", t2, ITR_NOLOC), x = itr_graph_add_input(body, "x", t2, ITR_NOLOC);
    int32_t mx, sm;
    CHECK(itr_graph_add_node(body, ITR_OP_MAXIMUM, (int32_t[]){ h, x }, 2, NULL, ITR_NOLOC, NULL, &mx, &d));
    CHECK(itr_graph_add_node(body, ITR_OP_ADD, (int32_t[]){ h, x }, 2, NULL, ITR_NOLOC, NULL, &sm, &d));
    itr_graph_add_output(body, "h", mx);
    itr_graph_add_output(body, "s", sm);
    struct itr_graph *g = itr_program_add_graph(p, "main", ITR_GRAPH_ENTRY);
    int32_t h0 = itr_graph_add_input(g, "h0", t2, ITR_NOLOC);
    int32_t xs = itr_graph_add_input(g, "xs", itr_type_make(ITR_F32, 2, (itr_dim[]){ three, two }), ITR_NOLOC);
    struct itr_attr *a = itr_attrs_default(p, ITR_OP_SCAN);
    a[itr_op_attr_index(ITR_OP_SCAN, "body")] = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = body };
    a[itr_op_attr_index(ITR_OP_SCAN, "n_carry")] = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    a[itr_op_attr_index(ITR_OP_SCAN, "n_scan")] = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    int32_t outs[2];
    CHECK(itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ h0, xs }, 2, a, ITR_NOLOC, NULL, outs, &d));
    itr_graph_add_output(g, "hmax", outs[0]);
    itr_graph_add_output(g, "sums", outs[1]);
    struct itr_tensor *in[2] = { mk(ITR_F32, SHAPE(2), VALS(0, 100)), mk(ITR_F32, SHAPE(3, 2), VALS(1, 2, 5, 3, 2, 4)) };
    struct itr_tensor *res[2] = { NULL, NULL };
    for (int mode = 0; mode < 2; mode++) {
        struct itr_ref_options opt = { mode == 1 };
        enum itr_dtype dt = mode ? ITR_F64 : ITR_F32;
        CHECK(itr_ref_run(g, in, NULL, NULL, &opt, res, &d));
        EXPECT(res[0], dt, SHAPE(2), VALS(5, 100), 0);
        EXPECT(res[1], dt, SHAPE(3, 2), VALS(1, 102, 6, 103, 7, 104), 0);
        free_all(2, res);
    }
    free_all(2, in);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ f64 mode

TEST(f64_mode_widens_f32_values) {
    // 1/3 in f32 mode is rounded to f32; in f64 mode it is exact to f64.
    struct itr_tensor *a = mk(ITR_F32, SHAPE(1), VALS(1)), *b = mk(ITR_F32, SHAPE(1), VALS(3));
    struct oc c;
    oc_init(&c, ITR_OP_DIV);
    struct itr_tensor *ins[2] = { a, b };
    CHECK(oc_run_mode(&c, 2, ins, true));
    EXPECT(c.out[0], ITR_F64, SHAPE(1), VALS(1.0 / 3.0), 0);
    oc_free(&c);
    CHECK(bin(&c, ITR_OP_DIV, a, b));
    EXPECT(c.out[0], ITR_F32, SHAPE(1), VALS((float)(1.0 / 3.0)), 0);
    oc_free(&c);
    // integer values are unaffected; casts to f32 produce f64
    struct itr_tensor *i = mk(ITR_I32, SHAPE(2), VALS(1, 2));
    oc_init(&c, ITR_OP_CAST);
    set_dtype(&c, "dtype", ITR_F32);
    CHECK(oc_run_mode(&c, 1, &i, true));
    EXPECT(c.out[0], ITR_F64, SHAPE(2), VALS(1, 2), 0);
    oc_free(&c);
    oc_init(&c, ITR_OP_ARGMAX);
    set_int(&c, "axis", 0);
    CHECK(oc_run_mode(&c, 1, &i, true));
    EXPECT(c.out[0], ITR_I64, SCALAR, VALS(1), 0);
    oc_free(&c);
    // f64 tensors are accepted for f32 inputs in f64 mode only
    struct itr_tensor *w = mk(ITR_F64, SHAPE(1), VALS(2));
    oc_init(&c, ITR_OP_EXP);
    struct itr_program *p = c.p;
    itr_dim one = itr_dim_const(p, 1);
    int32_t x = itr_graph_add_input(c.g, "x", itr_type_make(ITR_F32, 1, &one), ITR_NOLOC), y;
    CHECK(itr_graph_add_node(c.g, ITR_OP_EXP, &x, 1, NULL, ITR_NOLOC, NULL, &y, &c.d));
    itr_graph_add_output(c.g, "y", y);
    struct itr_ref_options on = { true }, off = { false };
    struct itr_tensor *r = NULL;
    CHECK(itr_ref_run(c.g, &w, NULL, NULL, &on, &r, &c.d));
    EXPECT(r, ITR_F64, SHAPE(1), VALS(exp(2.0)), 1e-15);
    itr_tensor_free(r);
    r = NULL;
    CHECK(!itr_ref_run(c.g, &w, NULL, NULL, &off, &r, &c.d));
    CHECK(r == NULL);
    oc_free(&c);
    itr_tensor_free(w);
    itr_tensor_free(a);
    itr_tensor_free(b);
    itr_tensor_free(i);
}

// ------------------------------------------------------------ coverage of the op table

struct op_test { enum itr_op op; void (*fn)(void); const char *name; };
#define T_(op, name) { ITR_OP_##op, test_##name, #name }
static const struct op_test op_tests[] = {
    T_(NEG, neg_abs_sign_all_dtypes), T_(ABS, neg_abs_sign_all_dtypes), T_(SIGN, neg_abs_sign_all_dtypes),
    T_(EXP, exp_log_sqrt_family), T_(LOG, exp_log_sqrt_family), T_(SQRT, exp_log_sqrt_family),
    T_(RSQRT, exp_log_sqrt_family), T_(RECIPROCAL, exp_log_sqrt_family), T_(RELU, activations),
    T_(LEAKY_RELU, activations), T_(SIGMOID, activations), T_(TANH, exp_log_sqrt_family), T_(GELU, activations),
    T_(ERF, exp_log_sqrt_family), T_(SIN, exp_log_sqrt_family), T_(COS, exp_log_sqrt_family),
    T_(ACOS, exp_log_sqrt_family),
    T_(NOT, logical_not_identity_stop_gradient), T_(IDENTITY, logical_not_identity_stop_gradient),
    T_(STOP_GRADIENT, logical_not_identity_stop_gradient), T_(CAST, cast_all_pairs),
    T_(ADD, add_broadcasts), T_(SUB, sub_mul_div_pow), T_(MUL, sub_mul_div_pow), T_(DIV, integer_ops_floor_division),
    T_(POW, sub_mul_div_pow), T_(MAXIMUM, maximum_minimum), T_(MINIMUM, maximum_minimum),
    T_(EQ, comparisons), T_(NE, comparisons), T_(LT, comparisons), T_(LE, comparisons), T_(GT, comparisons),
    T_(GE, comparisons), T_(AND, logical_and_or), T_(OR, logical_and_or), T_(WHERE, where_broadcasts),
    T_(SUM, sum_mean_axes_keepdims), T_(MEAN, sum_mean_axes_keepdims), T_(MAX, max_min), T_(MIN, max_min),
    T_(ARGMAX, argmax_argmin_first_occurrence), T_(ARGMIN, argmax_argmin_first_occurrence),
    T_(MATMUL, matmul_batched_broadcast), T_(RESHAPE, reshape_squeeze_unsqueeze), T_(TRANSPOSE, transpose),
    T_(EXPAND, expand), T_(SQUEEZE, reshape_squeeze_unsqueeze), T_(UNSQUEEZE, reshape_squeeze_unsqueeze),
    T_(SLICE, slice_numpy_clamping), T_(CONCAT, concat), T_(PAD, pad), T_(GATHER, gather),
    T_(SCATTER_ADD, scatter_add), T_(TAKE_ALONG, take_along_axis), T_(SCATTER_ADD_ALONG, scatter_add_along_axis),
    T_(SORT, sort_stable), T_(SORT, sort_order_at_every_length), T_(TOPK, topk), T_(CONSTANT, constant), T_(FULL, full), T_(IOTA, iota),
    T_(RANDOM_UNIFORM, random_uniform), T_(RANDOM_NORMAL, random_normal), T_(RANDOM_BERNOULLI, random_bernoulli),
    T_(SCAN, scan_running_max),
};

TEST(every_op_has_a_test) {
    for (int op = 0; op < ITR_OP_COUNT; op++) {
        bool found = false;
        for (size_t i = 0; i < sizeof op_tests / sizeof op_tests[0]; i++)
            if (op_tests[i].op == (enum itr_op)op) found = true;
        CHECK_MSG(found, "op '%s' has no test case in tests/test_ops.c (add it to op_tests)", itr_op_name((enum itr_op)op));
    }
}

int main(void) {
    // Each distinct test once, in table order.
    for (size_t i = 0; i < sizeof op_tests / sizeof op_tests[0]; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            if (op_tests[j].fn == op_tests[i].fn) seen = true;
        if (seen) continue;
        test_current_ = op_tests[i].name;
        test_current_failed_ = 0;
        op_tests[i].fn();
        if (test_current_failed_) test_failed_++; else test_passed_++;
    }
    RUN(binary_and_where_every_stride_pattern);
    RUN(philox_known_answers);
    RUN(f64_mode_widens_f32_values);
    RUN(every_op_has_a_test);
#ifdef OPS_AGREE_FINISH
    OPS_AGREE_FINISH();
#endif
    return test_summary();
}
