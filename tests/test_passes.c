// The simplification passes (compiler/passes.h) on hand-built programs:
// each pass does its rewrite, leaves a verifiable program, and leaves every
// entry's outputs bit-for-bit unchanged on random inputs, in the
// interpreter's f32 and f64 modes.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ref/ref.h"
#include "compiler/passes.h"
#include "ir/arena.h"
#include "ir/bind.h"
#include "ir/rng.h"
#include "ir/text.h"
#include "test.h"
#include "testutil.h"

// ------------------------------------------------------------ building

static struct itr_program *new_prog(void) {
    struct itr_program *p = itr_program_new();
    p->name = itr_program_strdup(p, "t");
    return p;
}

static struct itr_type ty(struct itr_program *p, enum itr_dtype dt, int rank, const int64_t *dims) {
    itr_dim ds[ITR_MAX_RANK];
    for (int i = 0; i < rank; i++) ds[i] = itr_dim_const(p, dims[i]);
    return itr_type_make(dt, rank, ds);
}
#define TY(p, dt, ...) ty((p), (dt), (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ })

static int32_t add_node(struct itr_graph *g, enum itr_op op, const int32_t *ins, int n, const struct itr_attr *attrs) {
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t out[16] = { -1 };
    bool ok = itr_graph_add_node(g, op, ins, n, attrs, ITR_NOLOC, NULL, out, &d);
    if (!ok) {
        itr_diags_print(&d, stderr);
        fprintf(stderr, "test setup: adding '%s' failed\n", itr_op_name(op));
        exit(2);
    }
    itr_diags_free(&d);
    return out[0];
}
#define N1(g, op, ...) add_node((g), (op), (int32_t[]){ __VA_ARGS__ }, (int)(sizeof((int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t)), NULL)
#define N1A(g, op, attrs, ...) add_node((g), (op), (int32_t[]){ __VA_ARGS__ }, (int)(sizeof((int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t)), (attrs))

static struct itr_attr *attrs(struct itr_program *p, enum itr_op op) { return itr_attrs_default(p, op); }

static void set_ints(struct itr_program *p, struct itr_attr *a, enum itr_op op, const char *name, int n,
                     const int64_t *v) {
    int k = itr_op_attr_index(op, name);
    a[k].kind = ITR_ATTR_INTS;
    a[k].u.ints.n = n;
    a[k].u.ints.v = itr_arena_alloc(p->arena, (size_t)(n ? n : 1) * sizeof *v);
    if (n) memcpy(a[k].u.ints.v, v, (size_t)n * sizeof *v);
}

static void set_dims(struct itr_program *p, struct itr_attr *a, enum itr_op op, const char *name, int n,
                     const itr_dim *v) {
    int k = itr_op_attr_index(op, name);
    a[k].kind = ITR_ATTR_DIMS;
    a[k].u.dims.n = n;
    a[k].u.dims.v = itr_arena_alloc(p->arena, (size_t)(n ? n : 1) * sizeof *v);
    if (n) memcpy(a[k].u.dims.v, v, (size_t)n * sizeof *v);
}

static void set_float(struct itr_attr *a, enum itr_op op, const char *name, double v) {
    int k = itr_op_attr_index(op, name);
    a[k].kind = ITR_ATTR_FLOAT;
    a[k].u.f = v;
}

static void set_int(struct itr_attr *a, enum itr_op op, const char *name, int64_t v) {
    int k = itr_op_attr_index(op, name);
    a[k].kind = ITR_ATTR_INT;
    a[k].u.i = v;
}

// full(value) with a constant shape
static int32_t full(struct itr_graph *g, double value, int rank, const int64_t *shape, enum itr_dtype dt) {
    struct itr_program *p = g->prog;
    struct itr_attr *a = attrs(p, ITR_OP_FULL);
    itr_dim ds[ITR_MAX_RANK];
    for (int i = 0; i < rank; i++) ds[i] = itr_dim_const(p, shape[i]);
    set_float(a, ITR_OP_FULL, "value", value);
    set_dims(p, a, ITR_OP_FULL, "shape", rank, ds);
    int k = itr_op_attr_index(ITR_OP_FULL, "dtype");
    a[k].kind = ITR_ATTR_DTYPE;
    a[k].u.dtype = dt;
    return add_node(g, ITR_OP_FULL, (int32_t[]){ 0 }, 0, a);
}

static int32_t constant(struct itr_graph *g, enum itr_dtype dt, int rank, const int64_t *shape, const double *v) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    for (int64_t i = 0; i < itr_tensor_numel(t); i++) itr_tensor_set(t, i, v[i]);
    struct itr_attr *a = attrs(g->prog, ITR_OP_CONSTANT);
    a[0].kind = ITR_ATTR_TENSOR;
    a[0].u.tensor = t;
    return add_node(g, ITR_OP_CONSTANT, (int32_t[]){ 0 }, 0, a);
}

static int32_t transpose(struct itr_graph *g, int32_t x, int n, const int64_t *perm) {
    struct itr_attr *a = attrs(g->prog, ITR_OP_TRANSPOSE);
    set_ints(g->prog, a, ITR_OP_TRANSPOSE, "perm", n, perm);
    return N1A(g, ITR_OP_TRANSPOSE, a, x);
}

static int count_op(const struct itr_graph *g, enum itr_op op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += g->nodes[i].op == op;
    return n;
}

static const struct itr_node *producer(const struct itr_graph *g, int32_t v) {
    return g->values[v].kind == ITR_VALUE_NODE ? &g->nodes[g->values[v].node] : NULL;
}

// ------------------------------------------------------------ running

struct run {
    int n_entries;
    struct itr_tensor **outs[16];
    int n_outs[16];
};

static struct itr_tensor *random_tensor(const struct itr_program *p, const struct itr_type *t,
                                        const struct itr_dim_bindings *b, uint64_t salt) {
    int64_t shape[ITR_MAX_RANK];
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_eval_shape(b, p, t, shape, "test input", &d)) { itr_diags_print(&d, stderr); exit(2); }
    itr_diags_free(&d);
    struct itr_tensor *x = itr_tensor_new(t->dtype, t->rank, shape);
    for (int64_t i = 0; i < itr_tensor_numel(x); i++) {
        double u = itr_rng_uniform_f64(7, salt, (uint64_t)i);
        itr_tensor_set(x, i, itr_dtype_is_float(t->dtype) ? 4 * u - 2 : t->dtype == ITR_BOOL ? u < 0.5 : 1);
    }
    return x;
}

// Runs every entry on inputs and params drawn from fixed streams, in the
// interpreter's f32 or f64 mode.
static bool run_all_as(const struct itr_program *p, const int64_t *sym_values, bool f64, struct run *r) {
    memset(r, 0, sizeof *r);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) { b.bound[i] = true; b.value[i] = sym_values ? sym_values[i] : 3; }
    struct itr_tensor **params = calloc((size_t)p->n_params + 1, sizeof *params);
    for (int j = 0; j < p->n_params; j++) params[j] = random_tensor(p, &p->params[j].type, &b, 1000 + (uint64_t)j);
    bool ok = true;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        int e = r->n_entries++;
        struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
        for (int i = 0; i < g->n_inputs; i++)
            in[i] = random_tensor(p, &g->values[g->inputs[i]].type, &b, (uint64_t)(e * 100 + i));
        r->outs[e] = calloc((size_t)g->n_outputs + 1, sizeof **r->outs);
        r->n_outs[e] = g->n_outputs;
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_dim_bindings rb;
        itr_bindings_init(&rb, p);
        memcpy(rb.value, b.value, (size_t)p->n_symbols * sizeof *rb.value);
        memcpy(rb.bound, b.bound, (size_t)p->n_symbols * sizeof *rb.bound);
        struct itr_ref_options opt = { .f64 = f64 };
        if (!itr_ref_run(g, in, params, &rb, &opt, r->outs[e], &d)) {
            itr_diags_print(&d, stderr);
            ok = false;
        }
        itr_bindings_free(&rb);
        itr_diags_free(&d);
        for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
        free(in);
    }
    for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    itr_bindings_free(&b);
    return ok;
}

static bool run_all(const struct itr_program *p, const int64_t *sym_values, struct run *r) {
    return run_all_as(p, sym_values, false, r);
}

static void run_free(struct run *r) {
    for (int e = 0; e < r->n_entries; e++) {
        for (int k = 0; k < r->n_outs[e]; k++) itr_tensor_free(r->outs[e][k]);
        free(r->outs[e]);
    }
}

static bool same_outputs(const struct run *a, const struct run *b) {
    if (a->n_entries != b->n_entries) return false;
    for (int e = 0; e < a->n_entries; e++) {
        if (a->n_outs[e] != b->n_outs[e]) return false;
        for (int k = 0; k < a->n_outs[e]; k++) {
            const struct itr_tensor *x = a->outs[e][k], *y = b->outs[e][k];
            if (!x || !y || x->dtype != y->dtype || x->rank != y->rank) return false;
            for (int i = 0; i < x->rank; i++)
                if (x->shape[i] != y->shape[i]) return false;
            if (memcmp(x->data, y->data, itr_tensor_nbytes(x)) != 0) return false;
        }
    }
    return true;
}

static bool verifies(struct itr_program *p) {
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_program_verify(p, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return ok;
}

typedef bool (*pass_fn)(struct itr_program *, struct itr_diags *);

// Runs pass on p and checks the promises: verifiable, same outputs in
// f32 mode and in f64 mode.
static void apply_checked(struct itr_program *p, pass_fn pass, const int64_t *sym_values) {
    struct run before, after, before64, after64;
    CHECK(verifies(p));
    CHECK(run_all(p, sym_values, &before));
    CHECK(run_all_as(p, sym_values, true, &before64));
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = pass(p, &d);
    if (!ok || d.n) itr_diags_print(&d, stderr);
    CHECK(ok);
    CHECK(d.n_errors == 0);
    itr_diags_free(&d);
    CHECK(verifies(p));
    CHECK(run_all(p, sym_values, &after));
    CHECK(run_all_as(p, sym_values, true, &after64));
    CHECK_MSG(same_outputs(&before, &after), "outputs changed by the pass");
    CHECK_MSG(same_outputs(&before64, &after64), "outputs in f64 mode changed by the pass");
    run_free(&before);
    run_free(&after);
    run_free(&before64);
    run_free(&after64);
}

static bool simplify_pass(struct itr_program *p, struct itr_diags *d) { return itr_simplify(p, NULL, d); }

// ------------------------------------------------------------ constant folding

TEST(fold_replaces_with_constant) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 2, 3), ITR_NOLOC);
    int32_t c1 = constant(g, ITR_F32, 2, (int64_t[]){ 2, 3 }, (double[]){ 1, 2, 3, 4, 5, 6 });
    int32_t c2 = full(g, 0.5, 2, (int64_t[]){ 2, 3 }, ITR_F32);
    int32_t s = N1(g, ITR_OP_ADD, c1, c2);
    int32_t y = N1(g, ITR_OP_MUL, x, s);
    itr_graph_add_output(g, "y", y);
    apply_checked(p, itr_pass_fold_constants, NULL);
    const struct itr_node *mul = producer(g, g->outputs[0]);
    CHECK(mul && mul->op == ITR_OP_MUL);
    const struct itr_node *k = mul ? producer(g, mul->inputs[1]) : NULL;
    CHECK(k && k->op == ITR_OP_CONSTANT);
    if (k && k->op == ITR_OP_CONSTANT) {
        const struct itr_tensor *t = itr_node_attr(k, "value")->u.tensor;
        CHECK(t->dtype == ITR_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
        for (int i = 0; i < 6; i++) CHECK_NEAR(itr_tensor_get(t, i), i + 1.5, 0);
    }
    apply_checked(p, itr_pass_dce, NULL);
    CHECK(g->n_nodes == 2);   // the folded constant and the mul
    itr_program_free(p);
}

TEST(fold_chains_and_splats_to_full) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 4, 4), ITR_NOLOC);
    int32_t f = full(g, 1.5, 2, (int64_t[]){ 4, 4 }, ITR_F32);
    int32_t n1 = N1(g, ITR_OP_NEG, f);
    int32_t n2 = N1(g, ITR_OP_EXP, n1);   // folds after n1 in the same pass
    itr_graph_add_output(g, "y", N1(g, ITR_OP_ADD, x, n2));
    apply_checked(p, itr_pass_fold_constants, NULL);
    const struct itr_node *add = producer(g, g->outputs[0]);
    const struct itr_node *k = add ? producer(g, add->inputs[1]) : NULL;
    CHECK(k && k->op == ITR_OP_FULL);   // uniform results stay small
    // The full holds the f64 evaluation, which rounds to the f32 one: each
    // precision's run reads what it would have computed itself.
    if (k && k->op == ITR_OP_FULL) {
        double v = itr_node_attr_float(k, "value");
        CHECK_NEAR(v, exp(-1.5), 0);
        CHECK_NEAR((float)v, (float)exp((double)-1.5f), 0);
        CHECK(v != (double)(float)v);   // not an f32-rounded value
    }
    itr_program_free(p);
}

// Constant results that no one stored value gives in both precisions stay
// computed at run time (passes.h); those that one value serves fold.
TEST(fold_keeps_both_precisions) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t three = full(g, 3.0, 1, (int64_t[]){ 2 }, ITR_F32);
    // f32: (float)(0.3f * 3) = 0.90000004f; f64: 0.9, whose rounding is
    // 0.89999998f. A full of 0.9 would change the f32 run, one of 0.90000004f
    // the f64 run: left alone.
    int32_t m = N1(g, ITR_OP_MUL, full(g, 0.3, 1, (int64_t[]){ 2 }, ITR_F32), three);
    itr_graph_add_output(g, "m", N1(g, ITR_OP_MUL, x, m));
    // Not a splat and not exact in f32 (0.1, 0.2): no constant of f32 values serves the f64 run.
    int32_t c = constant(g, ITR_F32, 1, (int64_t[]){ 2 }, (double[]){ 1, 2 });
    int32_t tenth = N1(g, ITR_OP_MUL, c, full(g, 0.1, 1, (int64_t[]){ 2 }, ITR_F32));
    itr_graph_add_output(g, "t", N1(g, ITR_OP_ADD, x, tenth));
    // Exact in f32 in both precisions (0.5, 1): folds to a constant.
    int32_t half = N1(g, ITR_OP_MUL, c, full(g, 0.5, 1, (int64_t[]){ 2 }, ITR_F32));
    itr_graph_add_output(g, "h", N1(g, ITR_OP_SUB, x, half));
    // A scalar sqrt(8): the full holds the f64 root, which rounds to the f32 one.
    int32_t r = N1(g, ITR_OP_SQRT, full(g, 8.0, 0, NULL, ITR_F32));
    itr_graph_add_output(g, "r", N1(g, ITR_OP_DIV, x, r));
    apply_checked(p, itr_pass_fold_constants, NULL);
    struct itr_simplify_stats st;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_simplify(p, &st, &d));
    itr_diags_free(&d);
    CHECK(st.unfolded_precision == 2);
    CHECK(count_op(g, ITR_OP_MUL) == 3);   // 0.3 * 3, c * 0.1, and x * m
    CHECK(count_op(g, ITR_OP_SQRT) == 0);
    const struct itr_node *sub = producer(g, g->outputs[2]);
    const struct itr_node *hk = sub ? producer(g, sub->inputs[1]) : NULL;
    CHECK(hk && hk->op == ITR_OP_CONSTANT);
    if (hk && hk->op == ITR_OP_CONSTANT) {
        const struct itr_tensor *t = itr_node_attr(hk, "value")->u.tensor;
        CHECK(t->dtype == ITR_F32);
        CHECK_NEAR(itr_tensor_get(t, 0), 0.5, 0);
        CHECK_NEAR(itr_tensor_get(t, 1), 1.0, 0);
    }
    const struct itr_node *div = producer(g, g->outputs[3]);
    const struct itr_node *rk = div ? producer(g, div->inputs[1]) : NULL;
    CHECK(rk && rk->op == ITR_OP_FULL);
    if (rk && rk->op == ITR_OP_FULL) CHECK_NEAR(itr_node_attr_float(rk, "value"), sqrt(8.0), 0);
    itr_program_free(p);
}

TEST(fold_leaves_random_large_symbolic_and_failing) {
    struct itr_program *p = new_prog();
    int32_t B = itr_program_add_symbol(p, "B", 0, false, ITR_NOLOC);
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    itr_graph_add_input(g, "x", TY(p, ITR_F32, 2), ITR_NOLOC);
    // random op with a constant seed: not folded
    int32_t seed = constant(g, ITR_I64, 0, NULL, (double[]){ 42 });
    struct itr_attr *a = attrs(p, ITR_OP_RANDOM_UNIFORM);
    set_dims(p, a, ITR_OP_RANDOM_UNIFORM, "shape", 1, (itr_dim[]){ itr_dim_const(p, 4) });
    int32_t r = N1A(g, ITR_OP_RANDOM_UNIFORM, a, seed);
    itr_graph_add_output(g, "r", N1(g, ITR_OP_NEG, r));
    // too large to fold
    int32_t big = full(g, 1.0, 2, (int64_t[]){ 300, 300 }, ITR_F32);
    itr_graph_add_output(g, "big", N1(g, ITR_OP_EXP, big));
    // symbolic shape
    struct itr_attr *fa = attrs(p, ITR_OP_FULL);
    set_float(fa, ITR_OP_FULL, "value", 2.0);
    set_dims(p, fa, ITR_OP_FULL, "shape", 1, (itr_dim[]){ itr_dim_sym(p, B) });
    int32_t fs = add_node(g, ITR_OP_FULL, (int32_t[]){ 0 }, 0, fa);
    itr_graph_add_output(g, "sym", N1(g, ITR_OP_EXP, fs));
    int n_before = g->n_nodes;
    apply_checked(p, itr_pass_fold_constants, (int64_t[]){ 5 });
    CHECK(count_op(g, ITR_OP_RANDOM_UNIFORM) == 1);
    CHECK(count_op(g, ITR_OP_EXP) == 2);
    CHECK(g->n_nodes == n_before);
    itr_program_free(p);
}

// An integer division by zero between constants is left for the run to
// report with its context: folding never turns it into a compile error.
TEST(fold_leaves_failing_nodes) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t i1 = constant(g, ITR_I32, 1, (int64_t[]){ 2 }, (double[]){ 1, 2 });
    int32_t i0 = constant(g, ITR_I32, 1, (int64_t[]){ 2 }, (double[]){ 0, 0 });
    itr_graph_add_output(g, "q", N1(g, ITR_OP_DIV, i1, i0));
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_pass_fold_constants(p, &d));
    CHECK(d.n == 0);
    itr_diags_free(&d);
    CHECK(count_op(g, ITR_OP_DIV) == 1);
    CHECK(verifies(p));
    itr_program_free(p);
}

// ------------------------------------------------------------ CSE

TEST(cse_merges_duplicates) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 3, 4), ITR_NOLOC);
    int32_t e1 = N1(g, ITR_OP_EXP, x), e2 = N1(g, ITR_OP_EXP, x);
    int32_t s = N1(g, ITR_OP_ADD, e1, e2);
    struct itr_attr *a0 = attrs(p, ITR_OP_SUM), *a1 = attrs(p, ITR_OP_SUM), *a0b = attrs(p, ITR_OP_SUM);
    set_ints(p, a0, ITR_OP_SUM, "axes", 1, (int64_t[]){ 0 });
    set_ints(p, a0b, ITR_OP_SUM, "axes", 1, (int64_t[]){ 0 });
    set_ints(p, a1, ITR_OP_SUM, "axes", 1, (int64_t[]){ 1 });
    int32_t r0 = N1A(g, ITR_OP_SUM, a0, s), r0b = N1A(g, ITR_OP_SUM, a0b, s), r1 = N1A(g, ITR_OP_SUM, a1, s);
    // equal constants merge too (and the duplicate's tensor is released)
    int32_t k1 = constant(g, ITR_F32, 1, (int64_t[]){ 4 }, (double[]){ 1, 2, 3, 4 });
    int32_t k2 = constant(g, ITR_F32, 1, (int64_t[]){ 4 }, (double[]){ 1, 2, 3, 4 });
    itr_graph_add_output(g, "a", N1(g, ITR_OP_ADD, r0, k1));
    itr_graph_add_output(g, "b", N1(g, ITR_OP_ADD, r0b, k2));
    itr_graph_add_output(g, "c", r1);
    apply_checked(p, itr_pass_cse, NULL);
    CHECK(count_op(g, ITR_OP_EXP) == 1);
    CHECK(count_op(g, ITR_OP_SUM) == 2);   // axes [0] twice -> once; axes [1] stays
    CHECK(count_op(g, ITR_OP_CONSTANT) == 1);
    CHECK(g->outputs[0] == g->outputs[1]);  // the two adds became one
    itr_program_free(p);
}

TEST(cse_random_ops_by_seed_and_salt) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t seed = itr_graph_add_input(g, "seed", itr_type_make(ITR_I64, 0, NULL), ITR_NOLOC);
    int32_t r[3];
    for (int i = 0; i < 3; i++) {
        struct itr_attr *a = attrs(p, ITR_OP_RANDOM_NORMAL);
        set_dims(p, a, ITR_OP_RANDOM_NORMAL, "shape", 1, (itr_dim[]){ itr_dim_const(p, 8) });
        set_int(a, ITR_OP_RANDOM_NORMAL, "salt", i == 2 ? 2 : 1);
        r[i] = N1A(g, ITR_OP_RANDOM_NORMAL, a, seed);
        itr_graph_add_output(g, i == 0 ? "a" : i == 1 ? "b" : "c", r[i]);
    }
    apply_checked(p, itr_pass_cse, NULL);
    CHECK(count_op(g, ITR_OP_RANDOM_NORMAL) == 2);
    CHECK(g->outputs[0] == g->outputs[1]);
    CHECK(g->outputs[0] != g->outputs[2]);
    itr_program_free(p);
}

// ------------------------------------------------------------ DCE

TEST(dce_removes_dead_nodes_and_param_uses) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    struct itr_init zeros = { ITR_INIT_ZEROS, 0, 0 };
    int32_t w = itr_graph_use_param(g, itr_program_add_param(p, "w", TY(p, ITR_F32, 4, 5), zeros, false, ITR_NOLOC));
    int32_t v = itr_graph_use_param(g, itr_program_add_param(p, "v", TY(p, ITR_F32, 3, 4), zeros, false, ITR_NOLOC));
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 3, 4), ITR_NOLOC);
    itr_graph_add_input(g, "unused", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t dead = N1(g, ITR_OP_MATMUL, x, w);
    N1(g, ITR_OP_RELU, dead);
    itr_graph_add_output(g, "y", N1(g, ITR_OP_ADD, x, v));
    apply_checked(p, itr_pass_dce, NULL);
    CHECK(g->n_nodes == 1);
    CHECK(g->n_inputs == 2);   // the signature stays, used or not
    CHECK(itr_graph_find_value(g, "w") < 0);
    CHECK(itr_graph_find_value(g, "v") >= 0);
    CHECK(p->n_params == 2);   // parameters are model state: never dropped
    itr_program_free(p);
}

// body(h: f32[2], x: f32[2], k: f32[2]) -> (h + x, h * k); a dead node inside
static struct itr_graph *make_body(struct itr_program *p, const char *name) {
    struct itr_graph *b = itr_program_add_graph(p, name, ITR_GRAPH_BODY);
    int32_t h = itr_graph_add_input(b, "h", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t x = itr_graph_add_input(b, "x", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t k = itr_graph_add_input(b, "k", TY(p, ITR_F32, 2), ITR_NOLOC);
    N1(b, ITR_OP_EXP, k);   // dead
    int32_t h2 = N1(b, ITR_OP_ADD, h, x);
    itr_graph_add_output(b, "h", h2);
    itr_graph_add_output(b, "y", N1(b, ITR_OP_MUL, h, k));
    return b;
}

static int32_t scan(struct itr_graph *g, struct itr_graph *body, int32_t h, int32_t xs, int32_t k, int32_t *ys) {
    struct itr_attr *a = attrs(g->prog, ITR_OP_SCAN);
    int kb = itr_op_attr_index(ITR_OP_SCAN, "body");
    a[kb].kind = ITR_ATTR_GRAPH;
    a[kb].u.graph = body;
    set_int(a, ITR_OP_SCAN, "n_carry", 1);
    set_int(a, ITR_OP_SCAN, "n_scan", 1);
    int32_t outs[2];
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ h, xs, k }, 3, a, ITR_NOLOC, NULL, outs, &d)) {
        itr_diags_print(&d, stderr);
        exit(2);
    }
    itr_diags_free(&d);
    *ys = outs[1];
    return outs[0];
}

TEST(dce_in_scan_bodies_and_dead_bodies) {
    struct itr_program *p = new_prog();
    struct itr_graph *live = make_body(p, "_scan0");
    struct itr_graph *dead = make_body(p, "_scan1");
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t h = itr_graph_add_input(g, "h", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t xs = itr_graph_add_input(g, "xs", TY(p, ITR_F32, 5, 2), ITR_NOLOC);
    int32_t k = itr_graph_add_input(g, "k", TY(p, ITR_F32, 2), ITR_NOLOC);
    int32_t ys, ys2;
    int32_t hf = scan(g, live, h, xs, k, &ys);
    scan(g, dead, h, xs, k, &ys2);   // result unused
    itr_graph_add_output(g, "h", hf);
    itr_graph_add_output(g, "ys", ys);
    CHECK(p->n_graphs == 3);
    apply_checked(p, itr_pass_dce, NULL);
    CHECK(p->n_graphs == 2);
    CHECK(itr_program_find_graph(p, "_scan1") == NULL);
    CHECK(count_op(g, ITR_OP_SCAN) == 1);
    CHECK(live->n_inputs == 3 && live->n_outputs == 2);   // signature intact
    CHECK(count_op(live, ITR_OP_EXP) == 0);
    itr_program_free(p);
}

// make_body plus its incoming carry as a third output, as the record scan
// of a scan's gradient is built (compiler/grad_scan.c).
static struct itr_graph *make_record_body(struct itr_program *p, const char *name, bool same_nodes) {
    struct itr_graph *b = make_body(p, name);
    // With a node more, it is not the same loop (nothing merges).
    itr_graph_add_output(b, "h_in", same_nodes ? b->inputs[0] : N1(b, ITR_OP_NEG, b->inputs[0]));
    return b;
}

static int32_t scan3(struct itr_graph *g, struct itr_graph *body, int32_t h, int32_t xs, int32_t k, int32_t *outs) {
    struct itr_attr *a = attrs(g->prog, ITR_OP_SCAN);
    int kb = itr_op_attr_index(ITR_OP_SCAN, "body");
    a[kb].kind = ITR_ATTR_GRAPH;
    a[kb].u.graph = body;
    set_int(a, ITR_OP_SCAN, "n_carry", 1);
    set_int(a, ITR_OP_SCAN, "n_scan", 1);
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ h, xs, k }, 3, a, ITR_NOLOC, NULL, outs, &d)) {
        itr_diags_print(&d, stderr);
        exit(2);
    }
    itr_diags_free(&d);
    return outs[0];
}

TEST(cse_merges_a_scan_into_the_scan_that_subsumes_it) {
    for (int variant = 0; variant < 3; variant++) {
        // 0: the record body matches; 1: it has a node more; 2: it scans other operands
        struct itr_program *p = new_prog();
        struct itr_graph *fwd = make_body(p, "_scan0");
        struct itr_graph *rec = make_record_body(p, "_scan0_rec", variant != 1);
        struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
        int32_t h = itr_graph_add_input(g, "h", TY(p, ITR_F32, 2), ITR_NOLOC);
        int32_t xs = itr_graph_add_input(g, "xs", TY(p, ITR_F32, 5, 2), ITR_NOLOC);
        int32_t k = itr_graph_add_input(g, "k", TY(p, ITR_F32, 2), ITR_NOLOC);
        int32_t k2 = N1(g, ITR_OP_NEG, k);
        int32_t ys, r[3];
        int32_t hf = scan(g, fwd, h, xs, k, &ys);
        int32_t scaled = N1(g, ITR_OP_MUL, hf, hf);   // a use of the first scan before the second
        scan3(g, rec, h, xs, variant == 2 ? k2 : k, r);
        itr_graph_add_output(g, "h", scaled);
        itr_graph_add_output(g, "ys", ys);
        itr_graph_add_output(g, "hs", r[2]);
        itr_graph_add_output(g, "ys2", r[1]);
        CHECK(count_op(g, ITR_OP_SCAN) == 2);
        apply_checked(p, simplify_pass, NULL);
        CHECK_MSG(count_op(g, ITR_OP_SCAN) == (variant == 0 ? 1 : 2), "variant %d: %d scans", variant,
                  count_op(g, ITR_OP_SCAN));
        if (variant == 0) {
            CHECK(itr_program_find_graph(p, "_scan0") == NULL);   // the forward body is dead
            CHECK(g->outputs[1] == g->outputs[3]);                 // one stacked output serves both
        }
        itr_program_free(p);
    }
}

// ------------------------------------------------------------ identities

TEST(identities_exact_rewrites) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 2, 3), ITR_NOLOC);
    int32_t xb = itr_graph_add_input(g, "xb", TY(p, ITR_F32, 2, 1), ITR_NOLOC);
    int32_t z23 = full(g, 0.0, 2, (int64_t[]){ 2, 3 }, ITR_F32);
    int32_t one = full(g, 1.0, 0, NULL, ITR_F32);
    int32_t onec = constant(g, ITR_F32, 1, (int64_t[]){ 3 }, (double[]){ 1, 1, 1 });
    int32_t outs[12];
    int n = 0;
    outs[n++] = N1(g, ITR_OP_ADD, x, z23);
    outs[n++] = N1(g, ITR_OP_ADD, z23, x);
    outs[n++] = N1(g, ITR_OP_SUB, x, one);   // x - 1: not an identity
    outs[n++] = N1(g, ITR_OP_MUL, one, x);
    outs[n++] = N1(g, ITR_OP_DIV, x, onec);
    outs[n++] = N1(g, ITR_OP_IDENTITY, x);
    outs[n++] = N1(g, ITR_OP_NEG, N1(g, ITR_OP_NEG, x));
    struct itr_attr *ca = attrs(p, ITR_OP_CAST);
    ca[0].kind = ITR_ATTR_DTYPE;
    ca[0].u.dtype = ITR_F32;
    outs[n++] = N1A(g, ITR_OP_CAST, ca, x);
    struct itr_attr *ra = attrs(p, ITR_OP_RESHAPE);
    set_dims(p, ra, ITR_OP_RESHAPE, "shape", 2, (itr_dim[]){ itr_dim_const(p, 2), itr_dim_const(p, 3) });
    outs[n++] = N1A(g, ITR_OP_RESHAPE, ra, x);
    outs[n++] = transpose(g, x, 2, (int64_t[]){ 0, 1 });
    outs[n++] = N1(g, ITR_OP_TRANSPOSE, N1(g, ITR_OP_TRANSPOSE, x));   // default perm reverses
    outs[n++] = N1(g, ITR_OP_ADD, xb, z23);   // broadcasts: must stay
    for (int i = 0; i < n; i++) {
        char name[8];
        snprintf(name, sizeof name, "o%d", i);
        itr_graph_add_output(g, name, outs[i]);
    }
    apply_checked(p, itr_pass_identities, NULL);
    apply_checked(p, itr_pass_dce, NULL);
    for (int i = 0; i < n; i++) {
        bool expect_x = i != 2 && i != n - 1;
        CHECK_MSG((g->outputs[i] == x) == expect_x, "output o%d: expected %s", i, expect_x ? "x itself" : "a node");
    }
    CHECK(count_op(g, ITR_OP_ADD) == 1);
    CHECK(count_op(g, ITR_OP_SUB) == 1);
    CHECK(count_op(g, ITR_OP_TRANSPOSE) == 0);
    itr_program_free(p);
}

TEST(identities_compose_transposes) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 2, 3, 4), ITR_NOLOC);
    int32_t t1 = transpose(g, x, 3, (int64_t[]){ 1, 2, 0 });
    int32_t t2 = transpose(g, t1, 3, (int64_t[]){ 1, 2, 0 });
    itr_graph_add_output(g, "y", t2);
    apply_checked(p, simplify_pass, NULL);
    CHECK(count_op(g, ITR_OP_TRANSPOSE) == 1);
    const struct itr_node *t = producer(g, g->outputs[0]);
    CHECK(t && t->op == ITR_OP_TRANSPOSE && t->inputs[0] == x);
    if (t && t->op == ITR_OP_TRANSPOSE) {
        const struct itr_attr *a = itr_node_attr(t, "perm");
        CHECK(a->kind == ITR_ATTR_INTS && a->u.ints.n == 3 && a->u.ints.v[0] == 2 && a->u.ints.v[1] == 0 &&
              a->u.ints.v[2] == 1);
    }
    itr_program_free(p);
}

// ------------------------------------------------------------ the fixpoint

TEST(simplify_reaches_fixpoint) {
    struct itr_program *p = new_prog();
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", TY(p, ITR_F32, 2, 3), ITR_NOLOC);
    int32_t e0 = N1(g, ITR_OP_EXP, full(g, 0.0, 2, (int64_t[]){ 2, 3 }, ITR_F32));   // folds to 1
    int32_t m = N1(g, ITR_OP_MUL, x, e0);                                             // then x*1 -> x
    int32_t a = N1(g, ITR_OP_ADD, N1(g, ITR_OP_RELU, m), N1(g, ITR_OP_RELU, x));      // then CSE: relu(x) twice
    itr_graph_add_output(g, "y", a);
    struct run before, after;
    CHECK(run_all(p, NULL, &before));
    struct itr_simplify_stats st;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_simplify(p, &st, &d));
    itr_diags_free(&d);
    CHECK(verifies(p));
    CHECK(run_all(p, NULL, &after));
    CHECK(same_outputs(&before, &after));
    run_free(&before);
    run_free(&after);
    CHECK(st.folded >= 1 && st.rewritten >= 1 && st.merged >= 1 && st.removed >= 1);
    CHECK(g->n_nodes == 2);   // relu(x), add
    CHECK(count_op(g, ITR_OP_RELU) == 1);
    // A second run has nothing left to do.
    itr_diags_init(&d);
    CHECK(itr_simplify(p, &st, &d));
    itr_diags_free(&d);
    CHECK(st.folded + st.merged + st.rewritten + st.removed + st.removed_graphs == 0);
    CHECK(st.iterations == 1);
    itr_program_free(p);
}

// Models written in the text format simplify to programs that verify and
// compute the same outputs; the models at small sizes (TU_SMALL_SIZES). Symbols take their
// defaults when small, else 3; integer inputs are 1 (a valid index and
// length for any model). A model whose inputs need more than that (the
// unsimplified run fails) is skipped.
static void check_file(const char *path, bool lenient, bool small) {
    struct itr_diags d;
    itr_diags_init(&d);
    const char *ov[TU_N_SMALL_SIZES];
    struct itr_parse_options po;
    memset(&po, 0, sizeof po);
    po.overrides = ov;
    po.n_overrides = small ? tu_small_overrides(path, ov) : 0;
    struct itr_program *p = itr_parse_file(path, &po, &d);
    if (!p) {
        itr_diags_print(&d, stderr);
        FAIL_AT("cannot parse %s", path);
        itr_diags_free(&d);
        return;
    }
    itr_diags_free(&d);
    int64_t syms[64];
    for (int i = 0; i < 64; i++) syms[i] = 3;
    for (int i = 0; i < p->n_symbols && i < 64; i++)
        if (p->symbols[i].has_default && p->symbols[i].default_value <= 64) syms[i] = p->symbols[i].default_value;
    struct run probe;
    if (lenient && !run_all(p, syms, &probe)) {
        fprintf(stderr, "note: %s: skipped (its entries do not run on the generic test inputs)\n", path);
    } else {
        if (lenient) run_free(&probe);
        apply_checked(p, simplify_pass, syms);
        if (small) printf("  %s: simplified with %d small-size overrides\n", strrchr(path, '/') + 1, po.n_overrides);
    }
    itr_program_free(p);
}

TEST(simplify_text_models) {
    check_file(ITR_SOURCE_DIR "/tests/ir/cli_small.ir", false, false);
    check_file(ITR_SOURCE_DIR "/tests/ir/cli_fold.ir", false, false);
    check_file(ITR_SOURCE_DIR "/models/vsepp.ir", false, true);
    // every other model, as they are added
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0 || strcmp(e->d_name, "vsepp.ir") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        check_file(path, true, true);
    }
    if (dir) closedir(dir);
}

int main(void) {
    RUN(fold_replaces_with_constant);
    RUN(fold_chains_and_splats_to_full);
    RUN(fold_keeps_both_precisions);
    RUN(fold_leaves_random_large_symbolic_and_failing);
    RUN(fold_leaves_failing_nodes);
    RUN(cse_merges_duplicates);
    RUN(cse_random_ops_by_seed_and_salt);
    RUN(dce_removes_dead_nodes_and_param_uses);
    RUN(dce_in_scan_bodies_and_dead_bodies);
    RUN(cse_merges_a_scan_into_the_scan_that_subsumes_it);
    RUN(identities_exact_rewrites);
    RUN(identities_compose_transposes);
    RUN(simplify_reaches_fixpoint);
    RUN(simplify_text_models);
    return test_summary();
}
