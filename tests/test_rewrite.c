// The contraction rewrites (compiler/rewrite.c, docs/rewrites.md): where they
// apply, where they must not, and that a rewritten program computes what the
// unrewritten one does — every entry of every model, the training step
// included, on the reference interpreter in f64 to 1e-12 (scale-relative),
// with captions of every length from 1 to the padded length.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/passes.h"
#include "compiler/pipeline.h"
#include "entryrun.h"
#include "test.h"
#include "testutil.h"

static struct itr_program *compile_src(const char *src, unsigned no_rewrites, struct itr_compile_report *rep) {
    return tu_compile_text("rewrite_test.ir", src, NULL, no_rewrites, rep);
}

static struct itr_program *compile_path(const char *path, unsigned no_rewrites, struct itr_compile_report *rep) {
    // Captions of 3 words, bound at compile time as the cost model sees
    // them (itrc -D L=3): at the small test sizes (D = 16) the Gram form
    // pays for i2t's context only when the words are few.
    const char *ov[TU_N_SMALL_SIZES + 1];
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    co.no_rewrites = no_rewrites;
    co.defines = ov;
    co.n_defines = tu_small_overrides(path, ov);
    ov[co.n_defines++] = "L=3";
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_file(path, &co, &p, rep, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

static int count_op(const struct itr_graph *g, enum itr_op op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) n += g->nodes[i].op == op;
    return n;
}

// Whether a graph holds a value of shape [N, B, L, last]: the attended
// context of every word of every pair, when it is formed.
static bool forms_context(const struct itr_graph *g, int64_t last) {
    for (int i = 0; i < g->n_values; i++) {
        const struct itr_type *t = &g->values[i].type;
        int64_t v;
        char n[16], b[16], l[16];
        if (t->rank != 4 || !itr_dim_is_const(g->prog, t->dims[3], &v) || v != last) continue;
        itr_dim_format(g->prog, t->dims[0], n, sizeof n);
        itr_dim_format(g->prog, t->dims[1], b, sizeof b);
        itr_dim_format(g->prog, t->dims[2], l, sizeof l);
        if (strcmp(n, "N") == 0 && strcmp(b, "B") == 0 && strcmp(l, "L") == 0) return true;
    }
    return false;
}

// Integer inputs named like lengths get 1, 2, 3, 1, ...; ids stay 1.
static void vary_lengths(const struct itr_graph *g, struct itr_tensor **in) {
    for (int i = 0; i < g->n_inputs; i++) {
        const char *name = g->values[g->inputs[i]].name;
        if (!in[i] || itr_dtype_is_float(in[i]->dtype) || !strstr(name, "len")) continue;
        for (int64_t k = 0; k < itr_tensor_numel(in[i]); k++) itr_tensor_set(in[i], k, (double)(1 + k % 3));
    }
}

static double max_abs(const struct itr_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < itr_tensor_numel(t); i++) {
        double x = fabs(itr_tensor_get(t, i));
        if (x > m) m = x;
    }
    return m;
}

// Every entry of p1 (rewritten) against p0 (not), run in f64 (or f32) on the
// reference interpreter, to `tol` scale-relative (0: bit for bit); returns
// the entry runs compared. label names the model in messages.
static int compare_programs_at(const char *label, const struct itr_program *p0, const struct itr_program *p1,
                               bool f64, double tol) {
    if (p0->n_params != p1->n_params || p0->n_symbols != p1->n_symbols) {
        FAIL_AT("%s: the rewrites changed the parameters or symbols", label);
        return 0;
    }
    struct itr_dim_bindings b;
    int64_t *syms = tu_bind_symbols(p0, &b);  // L = 3: lengths 1..3 cover padded and length-1 captions
    struct itr_tensor **params = tu_random_params(p0, &b, 2000);
    int compared = 0;
    for (int gi = 0; gi < p0->n_graphs; gi++) {
        const struct itr_graph *g0 = p0->graphs[gi];
        if (g0->kind != ITR_GRAPH_ENTRY) continue;
        const struct itr_graph *g1 = tu_find_entry(p1, g0->name);
        CHECK_MSG(g1 && g1->n_inputs == g0->n_inputs && g1->n_outputs == g0->n_outputs,
                  "%s: entry '%s' changed its signature", label, g0->name);
        if (!g1 || g1->n_inputs != g0->n_inputs || g1->n_outputs != g0->n_outputs) continue;
        struct itr_tensor **in = tu_random_inputs(g0, &b, (uint64_t)gi * 100);
        vary_lengths(g0, in);
        struct itr_tensor **o0 = tu_run_entry(g0, in, params, syms, f64), **o1 = tu_run_entry(g1, in, params, syms, f64);
        CHECK_MSG(o0 && o1, "%s: entry '%s' does not run in %s", label, g0->name, f64 ? "f64" : "f32");
        for (int k = 0; o0 && o1 && k < g0->n_outputs; k++) {
            if (!tu_same_shape_and_dtype(o0[k], o1[k])) {
                FAIL_AT("%s: entry '%s' output '%s': the rewrites changed its shape or dtype", label, g0->name,
                        g0->output_names[k]);
                continue;
            }
            double scale = max_abs(o0[k]), diff = tu_max_abs_diff(o0[k], o1[k]);
            CHECK_MSG(diff <= tol * (scale > 1 ? scale : 1) && (tol > 0 || tu_bits_equal(o0[k], o1[k])),
                      "%s: entry '%s' output '%s': rewritten differs by %.3g (scale %.3g, %s)", label, g0->name,
                      g0->output_names[k], diff, scale, f64 ? "f64" : "f32");
        }
        for (int k = 0; k < g0->n_outputs; k++) {
            if (o0) itr_tensor_free(o0[k]);
            if (o1) itr_tensor_free(o1[k]);
        }
        free(o0);
        free(o1);
        for (int i = 0; i < g0->n_inputs; i++) itr_tensor_free(in[i]);
        free(in);
        compared++;
    }
    for (int j = 0; j < p0->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    free(syms);
    itr_bindings_free(&b);
    return compared;
}

static int compare_programs(const char *label, const struct itr_program *p0, const struct itr_program *p1) {
    return compare_programs_at(label, p0, p1, true, 1e-12);
}

// SCAN t2i's cosine between each word and its attended context.
static const char *CROSS_ATTENTION =
    "import \"nn.ir\"\n"
    "model m() {\n"
    "  dim N, B, L, R = 5\n"
    "  entry score(img: f32[N, R, 16], cap: f32[B, L, 16], lengths: i32[B]) -> (sims, ctx_norm) {\n"
    "    m = length_mask(cap, lengths)\n"
    "    v = unsqueeze(img, axes=[1])\n"
    "    u = unsqueeze(cap, axes=[0])\n"
    "    a = v @ transpose(u, perm=[0, 1, 3, 2])\n"
    "    alpha = softmax(a * 9.0, axis=2)\n"
    "    att = transpose(alpha, perm=[0, 1, 3, 2]) @ v\n"
    "    w = unsqueeze(m, axes=[0, 3]) > 0.5\n"
    "    r = cosine(where(w, u, 1.0), where(w, att, 1.0), eps=1e-8)\n"
    "    return sum(r, axes=[2]), sum(att * att, axes=[-1])\n"
    "  }\n"
    "}\n";

TEST(gram_rewrites_the_cosine_of_an_attended_context) {
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_src(CROSS_ATTENTION, ITR_REWRITE_ALL, &r0);
    struct itr_program *p1 = compile_src(CROSS_ATTENTION, 0, &r1);
    CHECK(p0 && p1);
    if (!p0 || !p1) goto done;
    CHECK_MSG(r0.rewrites.gram == 0, "r0.rewrites.gram is %d, expected 0", r0.rewrites.gram);
    // word·context, ‖context‖² in the cosine, and the second output's ‖context‖².
    CHECK_MSG(r1.rewrites.gram == 3, "r1.rewrites.gram is %d, expected 3", r1.rewrites.gram);
    const struct itr_graph *g0 = tu_find_entry(p0, "score"), *g1 = tu_find_entry(p1, "score");
    CHECK(forms_context(g0, 16));
    CHECK(!forms_context(g1, 16));   // the context [N, B, L, 16] is gone
    // logits (shared by the dot product), the Gram matrix, and P·G.
    CHECK_MSG(count_op(g1, ITR_OP_MATMUL) == 3, "%d matmuls, expected 3", count_op(g1, ITR_OP_MATMUL));
    CHECK(compare_programs("cross attention", p0, p1) == 1);
done:
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

// The context also leaves the graph: it must be formed, so nothing changes.
static const char *CONTEXT_RETURNED =
    "model m() {\n"
    "  dim N, L, R = 5\n"
    "  entry f(p: f32[N, L, R], c: f32[N, R, 16], x: f32[N, L, 16]) -> (s, att) {\n"
    "    att = p @ c\n"
    "    return sum(x * att, axes=[-1]), att\n"
    "  }\n"
    "}\n";

// Wide contractions (K = 64 > D = 4): the quadratic form would cost more.
static const char *NOT_PROFITABLE =
    "model m() {\n"
    "  dim N, L\n"
    "  entry f(p: f32[N, L, 64], c: f32[N, 64, 4]) -> (s) {\n"
    "    att = p @ c\n"
    "    return sum(att * att, axes=[-1])\n"
    "  }\n"
    "}\n";

TEST(gram_leaves_contexts_that_must_exist_or_do_not_pay) {
    struct itr_compile_report r;
    struct itr_program *p = compile_src(CONTEXT_RETURNED, 0, &r);
    CHECK(p != NULL);
    if (p) {
        CHECK_MSG(r.rewrites.gram == 0, "r.rewrites.gram is %d, expected 0", r.rewrites.gram);
        itr_program_free(p);
    }
    p = compile_src(NOT_PROFITABLE, 0, &r);
    CHECK(p != NULL);
    if (p) {
        CHECK_MSG(r.rewrites.gram == 0, "r.rewrites.gram is %d, expected 0", r.rewrites.gram);
        itr_program_free(p);
    }
}

// (A B) C with A [64, 64], B [64, 64], C [64, 2]: A (B C) costs 2·64·64·2
// multiply-adds against 64³ + 64·64·2.
static const char *CHAIN =
    "model m() {\n"
    "  entry f(a: f32[64, 64], b: f32[64, 64], c: f32[64, 2]) -> (y, z) {\n"
    "    return (a @ b) @ c, c @ (transpose(c) @ a)\n"
    "  }\n"
    "}\n";

TEST(reassociation_picks_the_cheaper_order) {
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_src(CHAIN, ITR_REWRITE_ALL, &r0);
    struct itr_program *p1 = compile_src(CHAIN, 0, &r1);
    CHECK(p0 && p1);
    if (p0 && p1) {
        CHECK_MSG(r0.rewrites.reassociated == 0, "r0.rewrites.reassociated is %d, expected 0", r0.rewrites.reassociated);
        // (a b) c -> a (b c); c (cᵀ a) [64,2]x([2,64]x[64,64]) is already the cheaper order.
        CHECK_MSG(r1.rewrites.reassociated == 1, "r1.rewrites.reassociated is %d, expected 1", r1.rewrites.reassociated);
        CHECK(compare_programs("matmul chain", p0, p1) == 1);
    }
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

// A graph step on nodes h [4, 6, 8] of which only node 0 is read (SGR's
// last step): every node on the way computes one row per batch item.
static const char *FIRST_ROW =
    "import \"nn.ir\"\n"
    "model m() {\n"
    "  entry f(x: f32[4, 6, 8], w: f32[8, 8], b: f32[8]) -> (y, n) {\n"
    "    h = relu(x @ transpose(w) + b)\n"
    "    e = softmax(h @ transpose(h, perm=[0, 2, 1]), axis=-1)\n"
    "    z = tanh(e @ h) * 2.0\n"
    "    return squeeze(slice(z, axes=[1], starts=[0], ends=[1]), axes=[1]),\n"
    "           slice(sum(h, axes=[2]), axes=[1], starts=[2], ends=[4])\n"
    "  }\n"
    "}\n";

// Slices whose rows do not come from the same rows of the value sliced.
static const char *NOT_ROWS =
    "model m() {\n"
    "  entry f(x: f32[4, 6, 8]) -> (a, b, c) {\n"
    "    s = exp(x)\n"
    "    return slice(sum(s, axes=[1], keepdims=true), axes=[1], starts=[0], ends=[1]),\n"
    "           slice(tanh(x), axes=[1], starts=[0], ends=[6], steps=[2]),\n"
    "           slice(reshape(sigmoid(x), shape=[4, 48]), axes=[1], starts=[0], ends=[8])\n"
    "  }\n"
    "}\n";

// The largest number of elements of any matmul result in an entry.
static int64_t largest_product(const struct itr_graph *g) {
    int64_t most = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != ITR_OP_MATMUL) continue;
        const struct itr_type *t = &g->values[g->nodes[i].outputs[0]].type;
        int64_t n = 1, v;
        for (int k = 0; k < t->rank; k++) n *= itr_dim_is_const(g->prog, t->dims[k], &v) ? v : 1000;
        if (n > most) most = n;
    }
    return most;
}

TEST(rows_computes_only_the_rows_read) {
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_src(FIRST_ROW, ITR_REWRITE_ALL, &r0);
    struct itr_program *p1 = compile_src(FIRST_ROW, ITR_REWRITE_GRAM | ITR_REWRITE_REASSOC, &r1);
    CHECK(p0 && p1);
    if (p0 && p1) {
        CHECK_MSG(r0.rewrites.rows == 0, "r0.rewrites.rows is %d, expected 0", r0.rewrites.rows);
        // tanh, mul, the two matmuls, the softmax's nodes; sum(h) over 2 of 6 rows.
        CHECK_MSG(r1.rewrites.rows >= 5, "r1.rewrites.rows is %d, expected at least 5", r1.rewrites.rows);
        const struct itr_graph *g0 = tu_find_entry(p0, "f"), *g1 = tu_find_entry(p1, "f");
        // Unrewritten: h and e @ h are [4, 6, 8], e is [4, 6, 6]; rewritten,
        // only h itself (read whole by the logits' right operand) keeps 6 rows.
        CHECK(g0 && g1 && largest_product(g0) == 4 * 6 * 8);
        if (g0 && g1) {
            int big = 0;
            for (int i = 0; i < g1->n_nodes; i++) {
                if (g1->nodes[i].op != ITR_OP_MATMUL) continue;
                const struct itr_type *t = &g1->values[g1->nodes[i].outputs[0]].type;
                int64_t rows;
                big += itr_dim_is_const(p1, t->dims[1], &rows) && rows > 1;
            }
            CHECK_MSG(big == 1, "%d matmuls compute more than one row, expected 1 (h)", big);
        }
        CHECK(compare_programs_at("first row, f64", p0, p1, true, 0) == 1);
        CHECK(compare_programs_at("first row, f32", p0, p1, false, 0) == 1);
    }
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
    struct itr_program *q = compile_src(NOT_ROWS, 0, &r1);
    CHECK(q);
    if (q) {
        CHECK_MSG(r1.rewrites.rows == 0, "r1.rewrites.rows is %d for slices that take no rows, expected 0",
                  r1.rewrites.rows);
        itr_program_free(q);
    }
}

// The rows rewrite alone changes no bit of any model's outputs on the
// reference interpreter, in f64 and f32: every row it keeps is computed by
// the same operations in the same order.
static void rows_exact(void *ctx, const char *file, const char *path) {
    int *shrunk = ctx;
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_path(path, ITR_REWRITE_ALL, &r0);
    struct itr_program *p1 = compile_path(path, ITR_REWRITE_GRAM | ITR_REWRITE_REASSOC, &r1);
    CHECK_MSG(p0 && p1, "%s does not compile", file);
    if (p0 && p1 && r1.rewrites.rows > 0) {
        CHECK_MSG(compare_programs_at(file, p0, p1, true, 0) > 0, "%s: no entry compared", file);
        CHECK_MSG(compare_programs_at(file, p0, p1, false, 0) > 0, "%s: no entry compared", file);
        printf("  %s: %d nodes on fewer rows\n", file, r1.rewrites.rows);
        *shrunk += strcmp(file, "sgr.ir") == 0 || strcmp(file, "tern.ir") == 0;
    }
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

// The rows rewrite alone changes no bit of any model's outputs on the
// reference interpreter, in f64 and f32: every row it keeps is computed by
// the same operations in the same order.
TEST(zoo_rows_rewrite_is_exact) {
    int shrunk = 0;
    CHECK(for_each_model(rows_exact, &shrunk) >= 8);
    // SGR's last graph step and TERN's last layer (aggregation `first`).
    CHECK_MSG(shrunk == 2, "%d of SGR and TERN computed fewer rows, expected 2", shrunk);
}

// Query and key projections meeting in one product (a graph step's logits):
// to 64-wide features, X (Aᵀ B) Xᵀ pays; to 8-wide ones it does not.
static const char *QUERY_KEY =
    "model m() {\n"
    "  entry f(x: f32[64, 13, 32], wq: f32[32, 32], bq: f32[32], wk: f32[32, 32], bk: f32[32],\n"
    "          v: f32[64, 3, 32], wa: f32[8, 32], wb: f32[8, 32]) -> (y, z) {\n"
    "    q = x @ transpose(wq) + bq\n"
    "    k = x @ transpose(wk) + bk\n"
    "    return q @ transpose(k, perm=[0, 2, 1]),\n"
    "           (v @ transpose(wa)) @ transpose(v @ transpose(wb), perm=[0, 2, 1])\n"
    "  }\n"
    "}\n";

// Products x @ transpose(w) with x the input "x".
static int projects_x(const struct itr_graph *g) {
    int n = 0;
    for (int i = 0; g && i < g->n_nodes; i++) {
        const struct itr_node *m = &g->nodes[i];
        if (m->op != ITR_OP_MATMUL || g->values[m->inputs[0]].kind != ITR_VALUE_INPUT) continue;
        const struct itr_value *b = &g->values[m->inputs[1]];
        n += strcmp(g->values[m->inputs[0]].name, "x") == 0 && b->kind == ITR_VALUE_NODE &&
             g->nodes[b->node].op == ITR_OP_TRANSPOSE;
    }
    return n;
}

TEST(reassociation_folds_query_and_key_projections) {
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_src(QUERY_KEY, ITR_REWRITE_ALL, &r0);
    struct itr_program *p1 = compile_src(QUERY_KEY, 0, &r1);
    CHECK(p0 && p1);
    if (p0 && p1) {
        CHECK_MSG(r1.rewrites.reassociated == 1, "r1.rewrites.reassociated is %d, expected 1", r1.rewrites.reassociated);
        // X (Wqᵀ Wk) Xᵀ plus the two bias terms: x is no longer multiplied
        // by a transposed weight.
        CHECK(projects_x(tu_find_entry(p0, "f")) == 2);
        int projected = projects_x(tu_find_entry(p1, "f"));
        CHECK_MSG(projected == 0, "x is still projected by %d weights", projected);
        CHECK(compare_programs("query-key", p0, p1) == 1);
    }
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

struct zoo_counts { int rewritten, compared; };

static void rewritten_matches(void *ctx, const char *file, const char *path) {
    struct zoo_counts *z = ctx;
    struct itr_compile_report r0, r1;
    struct itr_program *p0 = compile_path(path, ITR_REWRITE_ALL, &r0), *p1 = compile_path(path, 0, &r1);
    CHECK_MSG(p0 && p1, "%s does not compile", file);
    if (p0 && p1) {
        int c = compare_programs(file, p0, p1);
        CHECK_MSG(c > 0, "%s: no entry compared", file);
        z->compared += c;
        printf("  %s: %d entries, %d gram, %d reassociated, %d on fewer rows\n", file, c, r1.rewrites.gram,
               r1.rewrites.reassociated, r1.rewrites.rows);
        z->rewritten += r1.rewrites.gram > 0;
    }
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

TEST(zoo_rewritten_matches_unrewritten_in_f64) {
    struct zoo_counts z = { 0, 0 };
    int models = for_each_model(rewritten_matches, &z);
    CHECK(models >= 8);
    CHECK(z.compared >= 3 * models);
    // SCAN t2i, SCAN i2t and BFAN at least (score and training step each).
    CHECK(z.rewritten >= 3);
}

int main(void) {
    RUN(gram_rewrites_the_cosine_of_an_attended_context);
    RUN(gram_leaves_contexts_that_must_exist_or_do_not_pay);
    RUN(reassociation_picks_the_cheaper_order);
    RUN(reassociation_folds_query_and_key_projections);
    RUN(rows_computes_only_the_rows_read);
    RUN(zoo_rows_rewrite_is_exact);
    RUN(zoo_rewritten_matches_unrewritten_in_f64);
    return test_summary();
}
