// Gradients of the elementwise, reduction, contraction and movement ops,
// checked against f64 central differences (tests/gradcheck.h), plus the
// walk itself: subgradients at kinks and ties, adjoints that meet, undone
// broadcasting, unreached values, and the error paths of itr_vjp. The last
// test fails when a differentiable op of ir/ops.def has no gradient test.
#include <stdlib.h>

#include "gradcheck.h"
#include "gradcheck_cases.h"
#include "test.h"

// ------------------------------------------------------------ the harness

// One finite-difference case: an entry `f` with the given signature and
// body, in a model declaring dims B and L (bound to 3 and 4, or to `dims`,
// "B=5,L=2"). Float inputs are uniform in [lo, hi), at least `gap` from 0;
// params, declared in `decls`, uniform in [-1, 1).
struct gcase {
    const char *name;
    const char *decls;
    const char *sig;
    const char *body;
    double lo, hi, gap;
    const char *dims;
};

static bool run_case(const struct gcase *k, uint64_t seed) {
    char text[4096];
    snprintf(text, sizeof text, "model t {\n  dim B, L\n  %s\n  entry f(%s) {\n    %s\n  }\n}\n", k->decls ? k->decls : "",
             k->sig, k->body);
    struct itr_program *p = gc_parse(k->name, text);
    if (!p) { FAIL_AT("case %s: does not parse:\n%s", k->name, text); return false; }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    const char *spec = k->dims ? k->dims : "B=3,L=4";
    for (const char *s = spec; *s;) {
        char name[16];
        int64_t v;
        int used = 0;
        if (sscanf(s, "%15[A-Z]=%lld%n", name, (long long *)&v, &used) != 2) break;
        itr_bindings_set(&b, p, name, v, &d);
        s += used;
        if (*s == ',') s++;
    }
    struct itr_tensor **in = gc_random_inputs(p, "f", &b, k->lo, k->hi, k->gap, &seed);
    struct itr_tensor **par = gc_random_params(p, &b, -1, 1, &seed);
    int n_in = itr_program_find_graph(p, "f")->n_inputs;
    struct gc_result r;
    struct gc_options o = gc_defaults();
    o.dims = &b;
    bool ok = in && gc_check(p, "f", in, par, &o, &r);
    if (in && getenv("ITR_GC_VERBOSE")) printf("%-24s %s\n", k->name, gc_describe(&r));
    if (!in) FAIL_AT("case %s: could not make inputs", k->name);
    else CHECK_MSG(ok, "case %s: %s", k->name, gc_describe(&r));
    gc_free_tensors(in, n_in);
    gc_free_tensors(par, p->n_params);
    itr_bindings_free(&b);
    itr_diags_free(&d);
    itr_program_free(p);
    return ok;
}

static void run_cases(const struct gcase *cases, int n) {
    for (int i = 0; i < n; i++) run_case(&cases[i], 1000 + (uint64_t)i);
}
#define RUN_CASES(arr) run_cases(arr, (int)(sizeof arr / sizeof arr[0]))

// ------------------------------------------------------------ op cases

TEST(unary_ops) {
    static const struct gcase cases[] = {
        { "neg", NULL, "x: f32[2, 3]", "return neg(x)", -2, 2, 0, NULL },
        { "abs", NULL, "x: f32[2, 3]", "return abs(x)", -2, 2, 0.1, NULL },
        { "exp", NULL, "x: f32[2, 3]", "return exp(x)", -2, 2, 0, NULL },
        { "log", NULL, "x: f32[2, 3]", "return log(x)", 0.2, 3, 0, NULL },
        { "sqrt", NULL, "x: f32[2, 3]", "return sqrt(x)", 0.2, 3, 0, NULL },
        { "rsqrt", NULL, "x: f32[2, 3]", "return rsqrt(x)", 0.2, 3, 0, NULL },
        { "reciprocal", NULL, "x: f32[2, 3]", "return reciprocal(x)", -2, 2, 0.3, NULL },
        { "relu", NULL, "x: f32[2, 3]", "return relu(x)", -2, 2, 0.05, NULL },
        { "leaky_relu", NULL, "x: f32[2, 3]", "return leaky_relu(x, alpha=0.2)", -2, 2, 0.05, NULL },
        { "sigmoid", NULL, "x: f32[2, 3]", "return sigmoid(x)", -4, 4, 0, NULL },
        { "tanh", NULL, "x: f32[2, 3]", "return tanh(x)", -2, 2, 0, NULL },
        { "gelu", NULL, "x: f32[2, 3]", "return gelu(x)", -3, 3, 0, NULL },
        { "erf", NULL, "x: f32[2, 3]", "return erf(x)", -2, 2, 0, NULL },
        { "sin", NULL, "x: f32[2, 3]", "return sin(x)", -3, 3, 0, NULL },
        { "cos", NULL, "x: f32[2, 3]", "return cos(x)", -3, 3, 0, NULL },
        // inside (-1, 1), away from the infinite slope at the ends
        { "acos", NULL, "x: f32[2, 3]", "return acos(x)", -0.9, 0.9, 0, NULL },
        { "identity", NULL, "x: f32[2, 3]", "return identity(x) * x", -2, 2, 0, NULL },
        { "cast_f64", NULL, "x: f32[2, 3]", "return cast(cast(x, dtype=f64) * 3.0, dtype=f32)", -2, 2, 0, NULL },
        // the integer path is piecewise constant: only x itself carries a gradient
        { "cast_int", NULL, "x: f32[2, 3]", "return x * 2.0 + cast(cast(x, dtype=i32), dtype=f32)", -2, 2, 0, NULL },
        { "f64_graph", NULL, "x: f64[2, 3]", "return tanh(x) * exp(x)", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

TEST(binary_ops_broadcast) {
    static const struct gcase cases[] = {
        { "add", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return a + b", -2, 2, 0, NULL },
        { "sub", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return a - b", -2, 2, 0, NULL },
        { "mul", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return a * b", -2, 2, 0, NULL },
        { "div", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return a / b", 0.5, 2, 0, NULL },
        { "div_neg", NULL, "a: f32[3], b: f32[2, 3]", "return a / b", -2, 2, 0.4, NULL },
        { "pow", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return pow(a, b)", 0.5, 2, 0, NULL },
        { "pow_scalar_exp", NULL, "a: f32[2, 3], b: f32[]", "return pow(a, b)", 0.3, 2.5, 0, NULL },
        { "maximum", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return maximum(a, b)", -2, 2, 0, NULL },
        { "minimum", NULL, "a: f32[2, 1, 3], b: f32[4, 1]", "return minimum(a, b)", -2, 2, 0, NULL },
        { "where", NULL, "c: bool[2, 1, 3], a: f32[4, 1], b: f32[3]", "return where(c, a, b)", -2, 2, 0, NULL },
        { "where_cond_from_x", NULL, "x: f32[2, 3]", "return where(x > 0.0, x * x, 0.5 * x)", -2, 2, 0.05, NULL },
        { "size1_dims", NULL, "a: f32[1, 3], b: f32[1, 1]", "return a * b + b", -2, 2, 0, NULL },
        { "scalar_operand", NULL, "a: f32[2, 3], s: f32[]", "return a * s - s", -2, 2, 0, NULL },
        { "x_used_twice", NULL, "x: f32[2, 3]", "return x * x + sin(x) * x", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

TEST(reductions) {
    static const struct gcase cases[] = {
        { "sum_all", NULL, "x: f32[2, 3, 4]", "return sum(x)", -2, 2, 0, NULL },
        { "sum_axis", NULL, "x: f32[2, 3, 4]", "return sum(x, axes=[1])", -2, 2, 0, NULL },
        { "sum_multi_keep", NULL, "x: f32[2, 3, 4]", "return sum(x, axes=[0, 2], keepdims=true)", -2, 2, 0, NULL },
        { "sum_neg_axis", NULL, "x: f32[2, 3, 4]", "return sum(x, axes=[-1]) * 2.0", -2, 2, 0, NULL },
        { "mean_all", NULL, "x: f32[2, 3, 4]", "return mean(x)", -2, 2, 0, NULL },
        { "mean_axis", NULL, "x: f32[2, 3, 4]", "return mean(x, axes=[1])", -2, 2, 0, NULL },
        { "mean_multi_keep", NULL, "x: f32[2, 3, 4]", "return mean(x, axes=[2, 0], keepdims=true)", -2, 2, 0, NULL },
        { "max_all", NULL, "x: f32[2, 3, 4]", "return max(x)", -2, 2, 0, NULL },
        { "max_axis", NULL, "x: f32[2, 3, 4]", "return max(x, axes=[1])", -2, 2, 0, NULL },
        { "max_multi_keep", NULL, "x: f32[2, 3, 4]", "return max(x, axes=[0, 2], keepdims=true)", -2, 2, 0, NULL },
        { "max_last", NULL, "x: f32[2, 3, 4]", "return max(x, axes=[-1])", -2, 2, 0, NULL },
        { "min_all", NULL, "x: f32[2, 3, 4]", "return min(x)", -2, 2, 0, NULL },
        { "min_axis", NULL, "x: f32[2, 3, 4]", "return min(x, axes=[0])", -2, 2, 0, NULL },
        { "min_multi", NULL, "x: f32[2, 3, 4]", "return min(x, axes=[1, 2])", -2, 2, 0, NULL },
        { "size1_axis", NULL, "x: f32[2, 1, 3]", "return max(x, axes=[1]) + mean(x, axes=[1]) + sum(x, axes=[1])", -2, 2, 0, NULL },
        { "scalar_reduce", NULL, "x: f32[]", "return max(x) + mean(x) * sum(x)", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

TEST(matmul_batch_broadcast) {
    static const struct gcase cases[] = {
        { "matmul_2d", NULL, "a: f32[2, 3], b: f32[3, 4]", "return a @ b", -2, 2, 0, NULL },
        { "matmul_batch", NULL, "a: f32[2, 1, 3, 4], b: f32[5, 4, 2]", "return a @ b", -2, 2, 0, NULL },
        { "matmul_rank_differs", NULL, "a: f32[3, 4], b: f32[2, 4, 5]", "return a @ b", -2, 2, 0, NULL },
        { "matmul_same_operand", NULL, "a: f32[3, 3]", "return a @ transpose(a)", -2, 2, 0, NULL },
        // Every image against every caption: each adjoint sums over the
        // other operand's dim, folded into one contraction.
        { "matmul_pairs", NULL, "a: f32[3, 1, 2, 4], b: f32[1, 5, 4, 2]", "return a @ b", -2, 2, 0, NULL },
        { "matmul_pairs_batched", NULL, "a: f32[2, 3, 1, 2, 4], b: f32[2, 1, 5, 4, 3]", "return tanh(a @ b)", -2, 2, 0,
          NULL },
        { "linear_param", "param w: f32[4, 3] = normal(0.0, 1.0)\n  param b: f32[4] = zeros",
          "x: f32[2, 3]", "return tanh(x @ transpose(w) + b)", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

TEST(movement) {
    static const struct gcase cases[] = {
        { "reshape", NULL, "x: f32[2, 3, 4]", "return sin(reshape(x, shape=[6, 4]))", -2, 2, 0, NULL },
        { "transpose_perm", NULL, "x: f32[2, 3, 4]", "return transpose(x, perm=[2, 0, 1])", -2, 2, 0, NULL },
        { "transpose_default", NULL, "x: f32[2, 3, 4]", "return transpose(x)", -2, 2, 0, NULL },
        { "expand", NULL, "x: f32[3, 1]", "return expand(x, shape=[2, 3, 4])", -2, 2, 0, NULL },
        { "squeeze", NULL, "x: f32[2, 1, 3]", "return squeeze(x, axes=[1])", -2, 2, 0, NULL },
        { "squeeze_all", NULL, "x: f32[1, 3, 1]", "return squeeze(x, axes=[])", -2, 2, 0, NULL },
        { "unsqueeze", NULL, "x: f32[2, 3]", "return unsqueeze(x, axes=[0, 2])", -2, 2, 0, NULL },
        { "slice_basic", NULL, "x: f32[5, 6]", "return slice(x, axes=[0], starts=[1], ends=[4])", -2, 2, 0, NULL },
        { "slice_steps", NULL, "x: f32[5, 7]", "return slice(x, axes=[0, 1], starts=[1, 0], ends=[5, 7], steps=[1, 3])",
          -2, 2, 0, NULL },
        { "slice_step_partial", NULL, "x: f32[9]", "return slice(x, axes=[0], starts=[1], ends=[8], steps=[2])",
          -2, 2, 0, NULL },
        { "slice_neg_step", NULL, "x: f32[4, 7]", "return slice(x, axes=[1], starts=[-1], ends=[0], steps=[-2])",
          -2, 2, 0, NULL },
        { "slice_reverse", NULL, "x: f32[5]", "return slice(x, axes=[0], starts=[4], ends=[-6], steps=[-1])",
          -2, 2, 0, NULL },
        { "slice_neg_start_clamp", NULL, "x: f32[3, 6]", "return slice(x, axes=[-1], starts=[-4], ends=[100])",
          -2, 2, 0, NULL },
        { "slice_empty", NULL, "x: f32[3, 6]", "return x * 2.0 + sum(slice(x, axes=[1], starts=[4], ends=[2]))",
          -2, 2, 0, NULL },
        { "concat", NULL, "a: f32[2, 1], b: f32[2, 3], c: f32[2, 2]", "return concat(a, b, c, axis=1)", -2, 2, 0, NULL },
        { "concat_same_operand", NULL, "a: f32[2, 3]", "return concat(a, sin(a), a, axis=0)", -2, 2, 0, NULL },
        { "pad", NULL, "x: f32[2, 3]", "return pad(x, pads=[1, 0, 2, 1], value=0.5) * 3.0", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

// Every graph is compiled once against the symbols and run with B bound at
// run time to a value the graph never saw.
TEST(symbolic_dims) {
    static const struct gcase cases[] = {
        { "sym_mean", NULL, "x: f32[B, 3]", "return mean(x, axes=[0])", -2, 2, 0, NULL },
        { "sym_mean_all", NULL, "x: f32[B, L]", "return mean(x)", -2, 2, 0, "B=2,L=5" },
        { "sym_max_axis", NULL, "x: f32[B, 3]", "return max(x, axes=[0]) + min(x, axes=[-1], keepdims=true)", -2, 2, 0, NULL },
        { "sym_mean_mixed", NULL, "x: f32[B, 3, L]", "return mean(x, axes=[0, 1, 2], keepdims=true) * x", -2, 2, 0, NULL },
        { "sym_max", NULL, "x: f32[B, L, 2]", "return max(x, axes=[0, 1])", -2, 2, 0, NULL },
        { "sym_sum_keep", NULL, "x: f32[B, 3]", "return sum(x, axes=[0], keepdims=true) * x", -2, 2, 0, NULL },
        { "sym_broadcast", NULL, "a: f32[B, 1, 3], b: f32[L, 1]", "return a * b", -2, 2, 0, NULL },
        { "sym_matmul", NULL, "a: f32[B, 3], b: f32[3, L]", "return a @ b", -2, 2, 0, NULL },
        { "sym_matmul_batch", NULL, "a: f32[B, 2, 3], b: f32[3, L]", "return a @ b", -2, 2, 0, NULL },
        { "sym_reshape", NULL, "x: f32[B, L, 2]", "return sin(reshape(x, shape=[B * L, 2]))", -2, 2, 0, NULL },
        { "sym_expand", NULL, "x: f32[1, 3]", "return expand(x, shape=[B, 3]) * 2.0", -2, 2, 0, NULL },
        { "sym_slice_tail", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[1], ends=[2147483647])", -2, 2, 0, "B=5" },
        { "sym_slice_head", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[0], ends=[-1])", -2, 2, 0, "B=5" },
        { "sym_slice_mid", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[1], ends=[-2])", -2, 2, 0, "B=6" },
        { "sym_slice_const", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[1], ends=[3])", -2, 2, 0, "B=5" },
        { "sym_slice_last", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[-2], ends=[2147483647])", -2, 2, 0, "B=5" },
        { "sym_slice_step", NULL, "x: f32[B, 2]", "return slice(x, axes=[0], starts=[0], ends=[2147483647], steps=[2])",
          -2, 2, 0, "B=7" },
        { "sym_slice_step_rel", NULL, "x: f32[B]", "return slice(x, axes=[0], starts=[-5], ends=[-1], steps=[3])",
          -2, 2, 0, "B=7" },
        { "sym_concat", NULL, "a: f32[2, 3], x: f32[B, 3], y: f32[L, 3]", "return concat(a, x, y, axis=0)", -2, 2, 0, NULL },
        { "sym_concat_tail", NULL, "x: f32[B, 3], a: f32[2, 3]", "return concat(x, a, axis=0) * 2.0", -2, 2, 0, NULL },
        { "sym_concat_mid", NULL, "a: f32[1, 3], x: f32[B, 3], c: f32[2, 3]", "return concat(a, x, c, axis=0)", -2, 2, 0, NULL },
        { "sym_pad", NULL, "x: f32[B, L]", "return pad(x, pads=[1, 2, 0, 1], value=-1.0)", -2, 2, 0, NULL },
    };
    RUN_CASES(cases);
}

// ------------------------------------------------------------ exact adjoints

// Parses `text` (entry f returning one f32 scalar loss), differentiates it
// with seed 1 w.r.t. the named inputs, and runs it in f64. grads[j] is NULL
// where reached[j] is false.
static bool exact(const char *text, struct itr_tensor *const *inputs, const char *const *wrt, int n_wrt,
                  struct itr_tensor **grads, bool *reached) {
    struct itr_program *p = gc_parse("exact.ir", text);
    if (!p) return false;
    struct itr_graph *g = itr_program_find_graph(p, "f");
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t loss = g->outputs[0], seed = -1, v[8], gv[8];
    struct itr_attr *fa = itr_attrs_default(p, ITR_OP_FULL);
    fa[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.0 };
    bool ok = itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, fa, ITR_NOLOC, NULL, &seed, &d);
    for (int j = 0; j < n_wrt; j++) v[j] = itr_graph_find_value(g, wrt[j]);
    ok = ok && itr_vjp(g, &loss, &seed, 1, v, n_wrt, gv, reached, &d);
    int n_out0 = g->n_outputs;
    for (int j = 0; ok && j < n_wrt; j++)
        if (reached[j]) itr_graph_add_output(g, wrt[j], gv[j]);
    ok = ok && itr_program_verify(p, &d);
    struct itr_tensor *outs[16] = { NULL };
    struct itr_ref_options ro = { true };
    ok = ok && itr_ref_run(g, inputs, NULL, NULL, &ro, outs, &d);
    if (!ok) {
        char *s = itr_diags_summary(&d);
        FAIL_AT("exact gradient failed: %s", s);
        free(s);
    }
    for (int j = 0, k = n_out0; j < n_wrt; j++) grads[j] = ok && reached[j] ? outs[k++] : NULL;
    for (int k = 0; k < n_out0; k++) itr_tensor_free(outs[k]);
    itr_diags_free(&d);
    itr_program_free(p);
    return ok;
}

static void expect_values(const char *what, const struct itr_tensor *t, const double *want, int n) {
    if (!t) { FAIL_AT("%s: no gradient", what); return; }
    CHECK_MSG(itr_tensor_numel(t) == n, "%s: %lld elements, expected %d", what, (long long)itr_tensor_numel(t), n);
    for (int i = 0; i < n && i < itr_tensor_numel(t); i++)
        CHECK_MSG(itr_tensor_get(t, i) == want[i], "%s[%d] = %.17g, expected %.17g", what, i, itr_tensor_get(t, i),
                  want[i]);
}

#define SH(...) (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ }
#define V(...) (double[]){ __VA_ARGS__ }

static void exact1(const char *text, struct itr_tensor *x, const double *want, int n, const char *what) {
    struct itr_tensor *g = NULL;
    bool reached = false;
    if (exact(text, &x, (const char *[]){ "x" }, 1, &g, &reached)) {
        CHECK_MSG(reached, "%s: x not reached", what);
        expect_values(what, g, want, n);
    }
    itr_tensor_free(g);
    itr_tensor_free(x);
}

TEST(kinks_use_documented_subgradients) {
    exact1("model t { entry f(x: f32[4]) { return sum(relu(x)) } }", gc_tensor(ITR_F32, SH(4), V(-1, 0, 2, -0.0)),
           V(0, 0, 1, 0), 4, "relu'(0) = 0");
    exact1("model t { entry f(x: f32[3]) { return sum(abs(x)) } }", gc_tensor(ITR_F32, SH(3), V(-1, 0, 2)),
           V(-1, 0, 1), 3, "abs'(0) = 0");
    exact1("model t { entry f(x: f32[3]) { return sum(leaky_relu(x, alpha=0.25)) } }",
           gc_tensor(ITR_F32, SH(3), V(-1, 0, 2)), V(0.25, 0.25, 1), 3, "leaky_relu'(0) = alpha");
    // max/min with ties: the whole gradient goes to the first extremal element
    exact1("model t { entry f(x: f32[2, 3]) { return sum(max(x, axes=[1])) } }",
           gc_tensor(ITR_F32, SH(2, 3), V(1, 3, 3, 2, 2, 0)), V(0, 1, 0, 1, 0, 0), 6, "max ties, one axis");
    exact1("model t { entry f(x: f32[3, 2]) { return sum(max(x, axes=[0])) } }",
           gc_tensor(ITR_F32, SH(3, 2), V(1, 5, 1, 5, 0, 5)), V(1, 1, 0, 0, 0, 0), 6, "max ties, first axis");
    exact1("model t { entry f(x: f32[2, 3]) { return max(x) } }", gc_tensor(ITR_F32, SH(2, 3), V(3, 1, 3, 3, 0, 3)),
           V(1, 0, 0, 0, 0, 0), 6, "max ties, all axes");
    exact1("model t { entry f(x: f32[2, 2, 2]) { return sum(max(x, axes=[0, 2], keepdims=true)) } }",
           gc_tensor(ITR_F32, SH(2, 2, 2), V(0, 5, 1, 1, 5, 5, 1, 0)), V(0, 1, 1, 0, 0, 0, 0, 0), 8,
           "max ties, axes 0 and 2 in row-major order");
    exact1("model t { entry f(x: f32[4]) { return min(x) } }", gc_tensor(ITR_F32, SH(4), V(2, -1, 0, -1)),
           V(0, 1, 0, 0), 4, "min ties");
    // maximum/minimum ties go to the first operand
    struct itr_tensor *a = gc_tensor(ITR_F32, SH(3), V(1, 2, 5)), *b = gc_tensor(ITR_F32, SH(3), V(1, 3, 5));
    struct itr_tensor *g[2] = { NULL, NULL };
    bool r[2];
    if (exact("model t { entry f(a: f32[3], b: f32[3]) { return sum(maximum(a, b) + 2.0 * minimum(a, b)) } }",
              (struct itr_tensor *[]){ a, b }, (const char *[]){ "a", "b" }, 2, g, r)) {
        expect_values("d maximum/minimum / da", g[0], V(3, 2, 3), 3);
        expect_values("d maximum/minimum / db", g[1], V(0, 1, 0), 3);
    }
    itr_tensor_free(g[0]);
    itr_tensor_free(g[1]);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

TEST(max_with_nan_sends_gradient_to_first_nan) {
    struct itr_tensor *x = gc_tensor(ITR_F32, SH(4), V(1, NAN, 7, NAN)), *g = NULL;
    bool r = false;
    if (exact("model t { entry f(x: f32[4]) { return max(x) } }", &x, (const char *[]){ "x" }, 1, &g, &r)) {
        CHECK(r && g);
        if (g) {
            CHECK(itr_tensor_get(g, 0) == 0 && itr_tensor_get(g, 1) == 1);
            CHECK(itr_tensor_get(g, 2) == 0 && itr_tensor_get(g, 3) == 0);
        }
    }
    itr_tensor_free(g);
    itr_tensor_free(x);
}

// Finite differences see through stop_gradient; autodiff must not.
TEST(stop_gradient_blocks) {
    exact1("model t { entry f(x: f32[3]) { return sum(x * stop_gradient(x)) } }",
           gc_tensor(ITR_F32, SH(3), V(1, -2, 0.5)), V(1, -2, 0.5), 3, "x * stop_gradient(x)");
}

TEST(adjoints_that_meet_are_summed) {
    // y = x*x + x + x: three uses of x, dy/dx = 2x + 2
    exact1("model t { entry f(x: f32[3]) { return sum(x * x + x + x) } }", gc_tensor(ITR_F32, SH(3), V(1, -2, 0.5)),
           V(4, -2, 3), 3, "x used three times");
    // one value feeding two branches that join again
    exact1("model t { entry f(x: f32[2]) {\n h = exp(x)\n return sum(h * h) + sum(h)\n } }",
           gc_tensor(ITR_F32, SH(2), V(0, 0)), V(3, 3), 2, "shared intermediate");
}

TEST(outputs_listed_twice_sum_their_seeds) {
    struct itr_program *p = gc_parse("t.ir", "model t { entry f(x: f32[2]) { return x * 3.0 } }");
    if (!p) { FAIL_AT("parse"); return; }
    struct itr_graph *g = itr_program_find_graph(p, "f");
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t y = g->outputs[0], s1 = itr_graph_add_input(g, "s1", g->values[y].type, ITR_NOLOC);
    int32_t s2 = itr_graph_add_input(g, "s2", g->values[y].type, ITR_NOLOC);
    int32_t x = itr_graph_find_value(g, "x"), gx = -1;
    bool reached = false;
    CHECK(itr_vjp(g, (int32_t[]){ y, y }, (int32_t[]){ s1, s2 }, 2, &x, 1, &gx, &reached, &d));
    CHECK(reached);
    itr_graph_add_output(g, "gx", gx);
    struct itr_tensor *in[3] = { gc_tensor(ITR_F32, SH(2), V(1, 2)), gc_tensor(ITR_F32, SH(2), V(1, 10)),
                                 gc_tensor(ITR_F32, SH(2), V(0.5, 0)) };
    struct itr_tensor *out[2] = { NULL, NULL };
    CHECK(itr_ref_run(g, in, NULL, NULL, NULL, out, &d));
    expect_values("seeds summed", out[1], V(4.5, 30), 2);
    for (int i = 0; i < 3; i++) itr_tensor_free(in[i]);
    for (int i = 0; i < 2; i++) itr_tensor_free(out[i]);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(broadcasting_is_undone) {
    struct itr_tensor *a = gc_random(ITR_F32, SH(2, 1, 3), -1, 1, 0, &(uint64_t){ 7 });
    struct itr_tensor *b = gc_random(ITR_F32, SH(4, 1), -1, 1, 0, &(uint64_t){ 8 });
    struct itr_tensor *g[2] = { NULL, NULL };
    bool r[2];
    if (exact("model t { entry f(a: f32[2, 1, 3], b: f32[4, 1]) { return sum(a + b) } }",
              (struct itr_tensor *[]){ a, b }, (const char *[]){ "a", "b" }, 2, g, r)) {
        // a is broadcast over 4 rows, b over 2 x 3
        CHECK(g[0] && g[0]->rank == 3 && g[0]->shape[0] == 2 && g[0]->shape[1] == 1 && g[0]->shape[2] == 3);
        CHECK(g[1] && g[1]->rank == 2 && g[1]->shape[0] == 4 && g[1]->shape[1] == 1);
        expect_values("da", g[0], V(4, 4, 4, 4, 4, 4), 6);
        expect_values("db", g[1], V(6, 6, 6, 6), 4);
    }
    for (int i = 0; i < 2; i++) itr_tensor_free(g[i]);
    itr_tensor_free(a);
    itr_tensor_free(b);
}

TEST(unreached_values_report_reached_false) {
    struct itr_program *p = gc_parse("t.ir",
                                     "model t {\n param w: f32[3] = ones\n param u: f32[3] = ones\n"
                                     " entry f(x: f32[3], k: i32[3]) -> (loss, other) {\n"
                                     "  return sum(x * stop_gradient(u) + cast(cast(x, dtype=i32) + k, dtype=f32)), w * 2.0\n"
                                     " }\n}\n");
    if (!p) { FAIL_AT("parse"); return; }
    struct itr_graph *g = itr_program_find_graph(p, "f");
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t loss = g->outputs[0], seed = -1;
    struct itr_attr *fa = itr_attrs_default(p, ITR_OP_FULL);
    fa[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.0 };
    CHECK(itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, fa, ITR_NOLOC, NULL, &seed, &d));
    int32_t wrt[4] = { itr_graph_use_param(g, itr_program_find_param(p, "w")),
                       itr_graph_use_param(g, itr_program_find_param(p, "u")), itr_graph_find_value(g, "x"),
                       itr_graph_find_value(g, "k") };
    int32_t grads[4];
    bool reached[4];
    int nodes_before = g->n_nodes;
    CHECK(itr_vjp(g, &loss, &seed, 1, wrt, 4, grads, reached, &d));
    CHECK(!reached[0] && grads[0] == -1);   // w feeds another output only
    CHECK(!reached[1] && grads[1] == -1);   // u only through stop_gradient
    CHECK(reached[2] && grads[2] >= 0);     // x directly (its integer path adds nothing)
    CHECK(!reached[3] && grads[3] == -1);   // integers never get adjoints
    CHECK(g->n_nodes > nodes_before);
    CHECK(itr_program_verify(p, &d));
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ error paths

static itr_grad_rule no_rule_for_exp(enum itr_op op) { return op == ITR_OP_EXP ? NULL : itr_grad_rule_of(op); }

static bool bad_sum_rule(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    (void)c;
    (void)n;
    dx[0] = dy[0];   // forgets to expand: a scalar for a [2, 3] operand
    return true;
}
static itr_grad_rule bad_rule_for_sum(enum itr_op op) { return op == ITR_OP_SUM ? bad_sum_rule : itr_grad_rule_of(op); }

static char *vjp_error(const char *text, itr_grad_rule (*lookup)(enum itr_op)) {
    struct itr_program *p = gc_parse("model.ir", text);
    if (!p) return NULL;
    struct itr_graph *g = itr_program_find_graph(p, "f");
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t loss = g->outputs[0], seed = -1, x = itr_graph_find_value(g, "x"), gx = 0;
    bool reached = true;
    struct itr_attr *fa = itr_attrs_default(p, ITR_OP_FULL);
    fa[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.0 };
    itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, fa, ITR_NOLOC, NULL, &seed, &d);
    itr_vjp_rule_lookup = lookup;
    bool ok = itr_vjp(g, &loss, &seed, 1, &x, 1, &gx, &reached, &d);
    itr_vjp_rule_lookup = itr_grad_rule_of;
    CHECK(!ok && gx == -1 && !reached);
    char *s = itr_diags_summary(&d);
    itr_diags_free(&d);
    itr_program_free(p);
    return s;
}

TEST(op_without_rule_is_an_error_naming_op_location_and_graph) {
    // Every op of the table without a rule carries no gradient, so the test
    // hook stands in for a future op whose rule is missing.
    for (int op = 0; op < ITR_OP_COUNT; op++)
        if (!itr_grad_rule_of((enum itr_op)op))
            CHECK_MSG(itr_op_info((enum itr_op)op)->nondiff == ITR_NONDIFF_ALL, "op '%s' is differentiable without a rule",
                      itr_op_name((enum itr_op)op));
    char *s = vjp_error("model t {\n  entry f(x: f32[3]) {\n    return sum(exp(x))\n  }\n}\n", no_rule_for_exp);
    CHECK_STR_CONTAINS(s, "3:16: op 'exp' has no gradient rule, but differentiating graph 'f' needs one here");
    free(s);
}

TEST(wrongly_typed_adjoint_is_an_internal_error) {
    char *s = vjp_error("model t {\n  entry f(x: f32[2, 3]) {\n    return sum(x)\n  }\n}\n", bad_rule_for_sum);
    CHECK_STR_CONTAINS(s, "internal error: gradient rule of 'sum' gave operand 0 an adjoint of type f32[], but the "
                          "operand is f32[2, 3] (graph 'f')");
    free(s);
}

// ------------------------------------------------------------ the op table

TEST(every_differentiable_op_has_a_gradient_test) {
    char msg[4096];
    bool ok = gc_cases_check(GC_MATH, msg, sizeof msg);
    CHECK_MSG(ok, "%s", msg);
}

int main(void) {
    RUN(unary_ops);
    RUN(binary_ops_broadcast);
    RUN(reductions);
    RUN(matmul_batch_broadcast);
    RUN(movement);
    RUN(symbolic_dims);
    RUN(kinks_use_documented_subgradients);
    RUN(max_with_nan_sends_gradient_to_first_nan);
    RUN(stop_gradient_blocks);
    RUN(adjoints_that_meet_are_summed);
    RUN(outputs_listed_twice_sum_their_seeds);
    RUN(broadcasting_is_undone);
    RUN(unreached_values_report_reached_false);
    RUN(op_without_rule_is_an_error_naming_op_location_and_graph);
    RUN(wrongly_typed_adjoint_is_an_internal_error);
    RUN(every_differentiable_op_has_a_gradient_test);   // last: needs the coverage of the cases above
    return test_summary();
}
