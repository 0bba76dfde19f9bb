// Gradients of the indexing, sorting and scan ops against f64 central
// differences (tests/gradcheck.h), and the cases finite differences cannot
// judge: ties in sort/topk (the documented subgradient), empty scans, and
// the structure of what the scan rule builds. The graphs are in
// tests/ir/grad_index.ir and tests/ir/grad_scan.ir.
#include "tests/test.h"
#include "tests/gradcheck.h"
#include "tests/gradcheck_cases.h"

#include "compiler/passes.h"

#define IR_DIR ITR_SOURCE_DIR "/tests/ir/"

static struct itr_program *load(const char *file) {
    struct itr_parse_options po;
    memset(&po, 0, sizeof po);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(file, &po, &d);
    if (!p || itr_diags_has_errors(&d)) {
        itr_diags_print(&d, stderr);
        itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

// Integer inputs of an entry, in input order: every integer input takes the
// next `n` values of vals (its element count must be n).
struct ints {
    const double *vals;
    int n;
};

// Random float inputs in [-1, 1) (or [lo, hi)), integer inputs from ix.
static struct itr_tensor **make_inputs(struct itr_program *p, const char *entry, struct itr_dim_bindings *dims,
                                       const struct ints *ix, int n_ix, double lo, double hi) {
    uint64_t seed = gc_name_seed(entry);
    struct itr_tensor **in = gc_random_inputs(p, entry, dims, lo, hi, 0, &seed);
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    if (!in || !g) return in;
    for (int i = 0, k = 0; i < g->n_inputs; i++) {
        struct itr_tensor *t = in[i];
        if (!itr_dtype_is_int(t->dtype)) continue;
        if (k >= n_ix || itr_tensor_numel(t) != ix[k].n) {
            fprintf(stderr, "%s: integer input %d needs %lld values\n", entry, i, (long long)itr_tensor_numel(t));
            abort();
        }
        for (int64_t e = 0; e < itr_tensor_numel(t); e++) itr_tensor_set(t, e, ix[k].vals[e]);
        k++;
    }
    return in;
}

static double worst_seen;

static void check_entry_dims(struct itr_program *p, const char *entry, struct itr_dim_bindings *dims,
                             struct itr_tensor **params, const struct ints *ix, int n_ix, double lo, double hi) {
    struct itr_tensor **in = make_inputs(p, entry, dims, ix, n_ix, lo, hi);
    CHECK_MSG(in != NULL, "%s: no inputs", entry);
    if (!in) return;
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    int n_in = g->n_inputs;
    struct gc_options o = gc_defaults();
    struct gc_result r;
    bool ok = gc_check(p, entry, in, params, &o, &r);
    CHECK_MSG(ok, "%s: %s", entry, gc_describe(&r));
    printf("  %-20s %3d elements, f64 error %.2g, f32 error %.2g%s%s\n", entry, r.n_checked, r.worst, r.worst_f32,
           r.unreached[0] ? ", unreached: " : "", r.unreached);
    if (r.worst > worst_seen) worst_seen = r.worst;
    gc_free_tensors(in, n_in);
}

static void check_entry(struct itr_program *p, const char *entry, const struct ints *ix, int n_ix) {
    check_entry_dims(p, entry, NULL, NULL, ix, n_ix, -1, 1);
}

#define INTS(...) ((struct ints){ (const double[]){ __VA_ARGS__ }, sizeof((const double[]){ __VA_ARGS__ }) / sizeof(double) })

// ---------------------------------------------------------------- indexing

static struct itr_program *index_program(void) {
    struct itr_program *p = load(IR_DIR "grad_index.ir");
    if (!p) FAIL_AT("cannot load grad_index.ir");
    return p;
}

// Repeated indices throughout: their adjoints must accumulate.
TEST(gather) {
    struct itr_program *p = index_program();
    if (!p) return;
    check_entry(p, "gather0", (struct ints[]){ INTS(0, 2, 2, 4, 0, 2, 1) }, 1);
    check_entry(p, "gather1", (struct ints[]){ INTS(1, 1, 3, 0, 4, 4, 4, 2) }, 1);
    CHECK(gc_op_covered(ITR_OP_GATHER));
    itr_program_free(p);
}

TEST(scatter_add) {
    struct itr_program *p = index_program();
    if (!p) return;
    check_entry(p, "scatter0", (struct ints[]){ INTS(1, 3, 1, 1) }, 1);
    check_entry(p, "scatter1", (struct ints[]){ INTS(0, 4, 4, 2) }, 1);
    CHECK(gc_op_covered(ITR_OP_SCATTER_ADD));
    itr_program_free(p);
}

TEST(take_along_axis) {
    struct itr_program *p = index_program();
    if (!p) return;
    struct ints i34 = INTS(0, 4, 4, 1, 2, 2, 2, 2, 3, 0, 1, 0), i14 = INTS(3, 3, 0, 1);
    check_entry(p, "take", &i34, 1);
    check_entry(p, "take_bx", &i34, 1);
    check_entry(p, "take_bi", &i14, 1);
    check_entry(p, "take_axis0", (struct ints[]){ INTS(0, 1, 3, 3, 3, 0, 2, 2, 1, 0, 0, 0, 1, 2, 3, 3, 2, 1) }, 1);
    CHECK(gc_op_covered(ITR_OP_TAKE_ALONG));
    itr_program_free(p);
}

// Every way the index, the updates and the base broadcast against the
// iteration space (docs/ops.md, Indexing).
TEST(scatter_add_along_axis) {
    struct itr_program *p = index_program();
    if (!p) return;
    struct ints i34 = INTS(0, 4, 4, 1, 2, 2, 2, 2, 3, 0, 1, 0), i14 = INTS(3, 3, 0, 1), i31 = INTS(2, 0, 2);
    check_entry(p, "along", &i34, 1);
    check_entry(p, "along_bu", &i34, 1);
    check_entry(p, "along_bu_axis", &i34, 1);
    check_entry(p, "along_bbase", &i34, 1);
    check_entry(p, "along_bi", &i31, 1);
    check_entry(p, "along_span", &i14, 1);
    CHECK(gc_op_covered(ITR_OP_SCATTER_ADD_ALONG));
    itr_program_free(p);
}

// ---------------------------------------------------------------- sorting

// The adjoint of `entry` in f64: float outputs seeded with w[k] (NULL: no
// seed), gradients of every float input returned in grads[i] (NULL where
// not reached). Appends to the entry graph.
static bool adjoint(struct itr_program *p, const char *entry, struct itr_tensor *const *in,
                    struct itr_tensor *const *params, struct itr_tensor *const *w, struct itr_tensor **grads) {
    struct itr_graph *g = itr_program_find_graph(p, entry);
    if (!g) return false;
    int n_in = g->n_inputs, n_out = g->n_outputs;
    int32_t outs[16], seeds[16], wrt[16], gv[16];
    bool reached[16];
    struct itr_tensor *args[32];
    int ns = 0, nw = 0;
    for (int i = 0; i < n_in; i++) args[i] = in[i];
    for (int k = 0; k < n_out; k++) {
        if (!w[k]) continue;
        char name[32];
        snprintf(name, sizeof name, "seed%d", k);
        outs[ns] = g->outputs[k];
        args[n_in + ns] = w[k];
        seeds[ns++] = itr_graph_add_input(g, name, g->values[g->outputs[k]].type, ITR_NOLOC);
    }
    for (int i = 0; i < n_in; i++)
        if (itr_dtype_is_float(g->values[g->inputs[i]].type.dtype)) wrt[nw++] = g->inputs[i];
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_vjp(g, outs, seeds, ns, wrt, nw, gv, reached, &d);
    int first = g->n_outputs;
    for (int j = 0; ok && j < nw; j++)
        if (reached[j]) itr_graph_add_output(g, "grad", gv[j]);
    ok = ok && itr_program_verify(p, &d);
    struct itr_tensor *res[48] = { 0 };
    struct itr_ref_options ro = { .f64 = true };
    ok = ok && itr_ref_run(g, args, params, NULL, &ro, res, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    for (int i = 0, j = 0, r = first; i < n_in; i++) {
        grads[i] = NULL;
        if (j < nw && wrt[j] == g->inputs[i]) {
            if (ok && reached[j]) grads[i] = res[r++], res[r - 1] = NULL;
            j++;
        }
    }
    for (int k = 0; k < 48; k++) itr_tensor_free(res[k]);
    return ok;
}

// The stable order of row x[0..n) (ascending, or descending keeping the
// lower index first among equals), by insertion sort: an oracle written
// independently of the sort kernel.
static void stable_order(const double *x, int n, bool descending, int *order) {
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && (descending ? x[order[j - 1]] < x[i] : x[order[j - 1]] > x[i])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

// Rows of 6 values of x [3, 6] with ties, sorted or topk'ed along the last
// axis: input element order[j] gets exactly the seed of output slot j, and
// elements outside the top k get 0.
static void check_ties(const char *entry, int k, bool descending) {
    struct itr_program *p = load(IR_DIR "grad_index.ir");
    if (!p) { FAIL_AT("no program"); return; }
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    int64_t shape[2] = { 3, 0 };
    itr_dim_is_const(p, g->values[g->inputs[0]].type.dims[1], &shape[1]);
    const double x6[18] = { 1, 3, 1, 2, 3, 3,  -1, -1, -1, -1, -1, -1,  0.5, 2, 2, 0.5, 7, 2 };
    const double x5[15] = { 1, 3, 1, 2, 3,  -1, -1, -1, -1, -1,  0.5, 2, 2, 0.5, 7 };
    int n = (int)shape[1];
    const double *xv = n == 6 ? x6 : x5;
    if (k < 0) k = n;
    struct itr_tensor *x = gc_tensor(ITR_F64, 2, shape, xv);
    uint64_t seed = 7;
    int64_t wshape[2] = { 3, k };
    struct itr_tensor *w = gc_random(ITR_F64, 2, wshape, -1, 1, 0, &seed);
    struct itr_tensor *ws[2] = { w, NULL }, *grads[1] = { NULL };
    bool ok = adjoint(p, entry, &x, NULL, ws, grads);
    CHECK_MSG(ok && grads[0], "%s: no gradient", entry);
    if (ok && grads[0]) {
        for (int r = 0; r < 3; r++) {
            int order[6];
            stable_order(xv + r * n, n, descending, order);
            double want[6] = { 0 };
            for (int j = 0; j < k; j++) want[order[j]] = itr_tensor_get(w, r * k + j);
            for (int e = 0; e < n; e++)
                CHECK_MSG(itr_tensor_get(grads[0], r * n + e) == want[e], "%s: dx[%d, %d] = %g, expected %g", entry,
                          r, e, itr_tensor_get(grads[0], r * n + e), want[e]);
        }
    }
    itr_tensor_free(x);
    itr_tensor_free(w);
    itr_tensor_free(grads[0]);
    itr_program_free(p);
}

// Random values (no ties) against finite differences; ties against the
// subgradient of the stable order.
TEST(sort) {
    struct itr_program *p = index_program();
    if (!p) return;
    const char *entries[] = { "sort_asc", "sort_desc", "sort_axis0", "sort_then_gather" };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) check_entry(p, entries[i], NULL, 0);
    CHECK(gc_op_covered(ITR_OP_SORT));
    itr_program_free(p);
    check_ties("sort_asc", -1, false);
    check_ties("sort_desc", -1, true);
}

TEST(topk) {
    struct itr_program *p = index_program();
    if (!p) return;
    const char *entries[] = { "topk_largest", "topk_smallest", "topk_axis0" };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) check_entry(p, entries[i], NULL, 0);
    CHECK(gc_op_covered(ITR_OP_TOPK));
    itr_program_free(p);
    check_ties("topk_largest", 3, true);    // the third row ties at the boundary: 2, 2, 2 for 2 slots
    check_ties("topk_smallest", 2, false);
}

// ---------------------------------------------------------------- scan

static void scan_dims(struct itr_program *p, struct itr_dim_bindings *dims, int64_t T) {
    itr_bindings_init(dims, p);
    struct itr_diags d;
    itr_diags_init(&d);
    itr_bindings_set(dims, p, "T", T, &d);
    itr_bindings_set(dims, p, "B", 3, &d);
    itr_bindings_set(dims, p, "K", 2, &d);
    itr_diags_free(&d);
}

static int count_graphs_with(const struct itr_program *p, const char *suffix) {
    int n = 0;
    for (int i = 0; i < p->n_graphs; i++) n += strstr(p->graphs[i]->name, suffix) != NULL;
    return n;
}

// Backpropagation through time on every feature of the scan rule.
TEST(scan) {
    struct itr_program *p = load(IR_DIR "grad_scan.ir");
    CHECK(p != NULL);
    if (!p) return;
    struct itr_dim_bindings dims;
    scan_dims(p, &dims, 4);
    uint64_t seed = 11;
    struct itr_tensor **params = gc_random_params(p, &dims, -0.6, 0.6, &seed);
    // cumprod keeps its factors away from 0 so the products stay O(1).
    const struct { const char *entry; double lo, hi; } cases[] = {
        { "cumsum", -1, 1 },          { "cumprod", 0.5, 1.5 },     { "cumprod_reverse", 0.5, 1.5 },
        { "cumprod_last", 0.5, 1.5 }, { "cumprod_stack", 0.5, 1.5 }, { "rnn", -1, 1 },
        { "with_const", -1, 1 },      { "two", -1, 1 },            { "with_int_carry", -1, 1 },
        { "nested", -1, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_entry_dims(p, cases[i].entry, &dims, params, NULL, 0, cases[i].lo, cases[i].hi);
    CHECK(gc_op_covered(ITR_OP_SCAN));
    // The nested scan's body was differentiated through itr_vjp's recursion
    // (the replayed inner scan has a copy of the inner body of its own).
    CHECK(itr_program_find_graph(p, "outer_step_grad") != NULL);
    CHECK(itr_program_find_graph(p, "inner_step_copy_grad") != NULL);
    CHECK(count_graphs_with(p, "_rec") >= 8);
    // No body is shared between scans, so the gradient program prints and
    // parses back to itself.
    char *text = itr_print_program(p);
    struct itr_program *q = text ? gc_parse("printed.ir", text) : NULL;
    char why[512] = "";
    CHECK_MSG(q && itr_program_equal(p, q, why, sizeof why), "round trip of the gradient program: %s", why);
    free(text);
    itr_program_free(q);
    gc_free_tensors(params, p->n_params);
    itr_bindings_free(&dims);
    itr_program_free(p);
}

// T = 0: the final carry is the initial one, so its adjoint passes straight
// through, and the stacked outputs (empty) give nothing.
TEST(scan_of_length_zero) {
    struct itr_program *p = load(IR_DIR "grad_scan.ir");
    if (!p) { FAIL_AT("no program"); return; }
    int64_t sc[1] = { 3 }, sx[2] = { 0, 3 };
    double c0v[3] = { 0.5, -1, 2 }, wv[3] = { 0.25, -3, 1.5 };
    struct itr_tensor *c0 = gc_tensor(ITR_F64, 1, sc, c0v), *x = gc_tensor(ITR_F64, 2, sx, NULL);
    struct itr_tensor *wc = gc_tensor(ITR_F64, 1, sc, wv), *wy = gc_tensor(ITR_F64, 2, sx, NULL);
    struct itr_tensor *in[2] = { c0, x }, *w[2] = { wc, wy }, *grads[2] = { NULL, NULL };
    bool ok = adjoint(p, "cumprod", in, NULL, w, grads);
    CHECK(ok && grads[0] && grads[1]);
    if (ok && grads[0] && grads[1]) {
        for (int i = 0; i < 3; i++) CHECK_NEAR(itr_tensor_get(grads[0], i), wv[i], 0);
        CHECK(grads[1]->rank == 2 && grads[1]->shape[0] == 0 && grads[1]->shape[1] == 3);
    }
    itr_tensor_free(c0);
    itr_tensor_free(x);
    itr_tensor_free(wc);
    itr_tensor_free(wy);
    itr_tensor_free(grads[0]);
    itr_tensor_free(grads[1]);
    itr_program_free(p);
}

// The gradient program survives the simplification passes (DCE of the
// replayed forward nodes the adjoint does not read, CSE, folding) and gives
// the same gradients afterwards.
TEST(scan_gradient_simplifies) {
    struct itr_program *p = load(IR_DIR "grad_scan.ir");
    if (!p) { FAIL_AT("no program"); return; }
    struct itr_dim_bindings dims;
    scan_dims(p, &dims, 5);
    uint64_t seed = 3;
    struct itr_tensor **params = gc_random_params(p, &dims, -0.6, 0.6, &seed);
    struct itr_tensor **in = make_inputs(p, "rnn", &dims, NULL, 0, -1, 1);
    int64_t sh[2] = { 3, 3 }, sy[3] = { 5, 3, 3 };
    struct itr_tensor *w[2] = { gc_random(ITR_F64, 2, sh, -1, 1, 0, &seed), gc_random(ITR_F64, 3, sy, -1, 1, 0, &seed) };
    struct itr_tensor *before[2] = { NULL, NULL };
    bool ok = in && adjoint(p, "rnn", in, params, w, before);
    CHECK(ok && before[0] && before[1]);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_simplify_stats st;
    ok = ok && itr_simplify(p, &st, &d) && itr_program_verify(p, &d);
    CHECK_MSG(ok, "simplify failed");
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    if (ok) {
        const struct itr_graph *g = itr_program_find_graph(p, "rnn");
        struct itr_tensor *args[4] = { in[0], in[1], w[0], w[1] }, *res[8] = { 0 };
        struct itr_ref_options ro = { .f64 = true };
        itr_diags_init(&d);
        ok = itr_ref_run(g, args, params, NULL, &ro, res, &d);
        CHECK(ok && g->n_outputs == 4);
        for (int k = 0; ok && k < 2; k++)
            for (int64_t e = 0; e < itr_tensor_numel(before[k]); e++)
                CHECK_NEAR(itr_tensor_get(res[2 + k], e), itr_tensor_get(before[k], e), 1e-14);
        for (int k = 0; k < 8; k++) itr_tensor_free(res[k]);
        itr_diags_free(&d);
    }
    itr_tensor_free(w[0]);
    itr_tensor_free(w[1]);
    itr_tensor_free(before[0]);
    itr_tensor_free(before[1]);
    gc_free_tensors(in, 2);
    gc_free_tensors(params, p->n_params);
    itr_bindings_free(&dims);
    itr_program_free(p);
}

// A body that reads a trainable parameter itself (not through a constant
// operand: the front end never builds one, a hand-built or imported graph
// may) cannot pass that parameter's gradient out of the scan: a diagnostic,
// not a silently missing gradient. A frozen parameter is fine.
static bool diff_param_body(bool frozen, struct itr_diags *d) {
    struct itr_program *p = itr_program_new();
    itr_dim three = itr_dim_const(p, 3), four = itr_dim_const(p, 4);
    struct itr_type tc = itr_type_make(ITR_F32, 1, &three), tx = itr_type_make(ITR_F32, 2, (itr_dim[]){ four, three });
    int32_t pw = itr_program_add_param(p, "w", tc, (struct itr_init){ ITR_INIT_ONES, 0, 0 }, frozen, ITR_NOLOC);
    struct itr_graph *body = itr_program_add_graph(p, "step", ITR_GRAPH_BODY);
    int32_t c = itr_graph_add_input(body, "c", tc, ITR_NOLOC), x = itr_graph_add_input(body, "x", tc, ITR_NOLOC);
    int32_t wv = itr_graph_use_param(body, pw), t, s;
    bool ok = itr_graph_add_node(body, ITR_OP_MUL, (int32_t[]){ c, wv }, 2, NULL, ITR_NOLOC, NULL, &t, d) &&
              itr_graph_add_node(body, ITR_OP_ADD, (int32_t[]){ t, x }, 2, NULL, ITR_NOLOC, NULL, &s, d);
    itr_graph_add_output(body, "c2", s);
    struct itr_graph *g = itr_program_add_graph(p, "f", ITR_GRAPH_ENTRY);
    int32_t c0 = itr_graph_add_input(g, "c0", tc, ITR_NOLOC), xs = itr_graph_add_input(g, "xs", tx, ITR_NOLOC);
    struct itr_attr *a = itr_attrs_default(p, ITR_OP_SCAN);
    a[itr_op_attr_index(ITR_OP_SCAN, "body")] = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = body };
    a[itr_op_attr_index(ITR_OP_SCAN, "n_carry")] = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    a[itr_op_attr_index(ITR_OP_SCAN, "n_scan")] = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    int32_t y = -1, seed, grads[2];
    bool reached[2];
    ok = ok && itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ c0, xs }, 2, a, (struct itr_loc){ "f.ir", 3, 7 }, NULL,
                                  &y, d);
    seed = itr_graph_add_input(g, "seed", tc, ITR_NOLOC);
    ok = ok && itr_vjp(g, &y, &seed, 1, (int32_t[]){ c0, xs }, 2, grads, reached, d);
    ok = ok && reached[0] && reached[1] && itr_program_verify(p, d);
    itr_program_free(p);
    return ok;
}

TEST(scan_body_reading_a_trainable_param_is_an_error) {
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!diff_param_body(false, &d));
    char *s = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(s, "3:7: cannot differentiate this scan: its body 'step' reads the trainable parameter 'w'");
    free(s);
    itr_diags_free(&d);
    itr_diags_init(&d);
    CHECK(diff_param_body(true, &d));
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
}

// Each op that tests/gradcheck_cases.h maps to this file was covered by a
// passing check above.
TEST(every_op_mapped_here_is_covered) {
    char msg[4096];
    bool ok = gc_cases_check(GC_INDEX, msg, sizeof msg);
    CHECK_MSG(ok, "%s", msg);
}

int main(void) {
    RUN(gather);
    RUN(scatter_add);
    RUN(take_along_axis);
    RUN(scatter_add_along_axis);
    RUN(sort);
    RUN(topk);
    RUN(scan);
    RUN(scan_of_length_zero);
    RUN(scan_gradient_simplifies);
    RUN(scan_body_reading_a_trainable_param_is_an_error);
    RUN(every_op_mapped_here_is_covered);
    printf("worst f64 gradient error: %.3g\n", worst_seen);
    return test_summary();
}
