// Locating the first diverging node of a backend-agreement failure
// (tests/agree.h agree_locate, backends.md §5) and the observer hooks it
// stands on (backends/ref/ref.h itr_ref_run_observed, backends/llvm/
// llvm_exec.h itr_llvm_exe_observe).
//
// The failures are made on purpose: the reference runs a graph and the LLVM
// backend the same graph with one op changed (tanh for sigmoid, ...), so the
// node that diverges is known, and the harness must name it — or, when that
// node is fused into a kernel, the first value that kernel writes which
// depends on it.
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/lower.h"
#include "compiler/pipeline.h"
#include "entryrun.h"
#include "test.h"
#include "testutil.h"

// h is read by a GEMM, so it is materialised by a kernel of its own; a is
// used only inside the row kernel that computes s and y.
static const char src_fmt[] = "model m {\n"
                              "  entry f(x: f32[3, 5], w: f32[5, 4]) -> (y, z) {\n"
                              "    h = %s(x)\n"
                              "    u = h @ w\n"
                              "    a = %s(u)\n"
                              "    s = sum(a * a, axes=[-1], keepdims=true)\n"
                              "    y = a / (s + 1.0)\n"
                              "    z = sum(u, axes=[0])\n"
                              "    return y, z\n"
                              "  }\n"
                              "}\n";

static struct itr_program *compile_src(const char *op_h, const char *op_a) {
    char src[1024];
    snprintf(src, sizeof src, src_fmt, op_h, op_a);
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_source("diverge.ir", src, strlen(src), &co, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

// The result of the n-th node (0-based) running op: the test model's values
// are found by their ops, since the passes rename what they rebuild.
static int32_t result_of(const struct itr_graph *g, enum itr_op op, int n) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op && n-- == 0) return g->nodes[i].outputs[0];
    return -1;
}

// The same nodes and values, and the same ops except where noted by differ
// (the node ids that may differ; -1: none).
static bool same_structure(const struct itr_graph *a, const struct itr_graph *b, int *differ) {
    *differ = -1;
    if (a->n_values != b->n_values || a->n_nodes != b->n_nodes) return false;
    for (int i = 0; i < a->n_nodes; i++) {
        if (a->nodes[i].n_inputs != b->nodes[i].n_inputs || a->nodes[i].n_outputs != b->nodes[i].n_outputs) return false;
        for (int k = 0; k < a->nodes[i].n_inputs; k++)
            if (a->nodes[i].inputs[k] != b->nodes[i].inputs[k]) return false;
        if (a->nodes[i].op != b->nodes[i].op) {
            if (*differ >= 0) return false;
            *differ = i;
        }
    }
    return true;
}

struct fixture {
    struct itr_program *pr, *pc;   // the reference's program, the compiled side's
    const struct itr_graph *gr, *gc;
    struct kir_schedule *s;        // gc's schedule
    struct itr_tensor *in[2];
    int differ;                    // the node whose op differs, -1: none
};

static bool fixture_open(struct fixture *f, const char *ref_h, const char *ref_a, const char *comp_h,
                         const char *comp_a, bool f64) {
    memset(f, 0, sizeof *f);
    f->differ = -1;
    f->pr = compile_src(ref_h, ref_a);
    f->pc = compile_src(comp_h, comp_a);
    CHECK_MSG(f->pr && f->pc, "the test model does not compile");
    if (!f->pr || !f->pc) return false;
    f->gr = tu_find_entry(f->pr, "f");
    f->gc = tu_find_entry(f->pc, "f");
    CHECK(f->gr && f->gc);
    if (!f->gr || !f->gc) return false;
    bool same = same_structure(f->gr, f->gc, &f->differ);
    CHECK_MSG(same, "changing one op changed the graph's structure");
    if (!same) return false;
    struct itr_diags d;
    itr_diags_init(&d);
    f->s = itr_lower_graph(f->gc, f64, &d);
    if (!f->s) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    CHECK(f->s != NULL);
    f->in[0] = mk(ITR_F32, SHAPE(3, 5), NULL);
    f->in[1] = mk(ITR_F32, SHAPE(5, 4), NULL);
    for (int64_t i = 0; i < 15; i++) itr_tensor_set(f->in[0], i, 0.3 * (double)(i % 7) - 0.8);
    for (int64_t i = 0; i < 20; i++) itr_tensor_set(f->in[1], i, 0.25 * (double)(i % 5) - 0.4 + 0.01 * (double)i);
    return f->s != NULL;
}

static void fixture_close(struct fixture *f) {
    itr_tensor_free(f->in[0]);
    itr_tensor_free(f->in[1]);
    kir_schedule_free(f->s);
    itr_program_free(f->pr);
    itr_program_free(f->pc);
}

// ---------------------------------------------------------------- the hooks

struct seen {
    const struct itr_graph *g;
    int calls;
    int *count;                 // per value
    int last_order;             // the last node (ref) or step (LLVM) seen
    bool in_order;
    struct itr_tensor **copy;   // per value: the last tensor seen
};

static void seen_init(struct seen *w, const struct itr_graph *g) {
    memset(w, 0, sizeof *w);
    w->g = g;
    w->count = calloc((size_t)g->n_values, sizeof *w->count);
    w->copy = calloc((size_t)g->n_values, sizeof *w->copy);
    w->last_order = -1;
    w->in_order = true;
}

static void seen_free(struct seen *w) {
    for (int v = 0; v < w->g->n_values; v++) itr_tensor_free(w->copy[v]);
    free(w->count);
    free(w->copy);
}

static void seen_value(struct seen *w, int order, int32_t v, const struct itr_tensor *t) {
    w->calls++;
    if (v < 0 || v >= w->g->n_values) {
        w->in_order = false;   // not a value of the observed graph (a scan body's)
        return;
    }
    if (order < w->last_order) w->in_order = false;
    w->last_order = order;
    w->count[v]++;
    itr_tensor_free(w->copy[v]);
    w->copy[v] = itr_tensor_clone(t);
}

static void ref_seen(void *ctx, int32_t v, const struct itr_tensor *t) {
    struct seen *w = ctx;
    seen_value(w, v >= 0 && v < w->g->n_values ? w->g->values[v].node : -1, v, t);
}

static void llvm_seen(void *ctx, int32_t step, int32_t v, const struct itr_tensor *t) { seen_value(ctx, step, v, t); }

// The reference reports every result of every node once, in node order, and
// what it reports of an output is the output; the LLVM backend reports every
// value its schedule materialises, in step order, and nothing it fused away.
static void check_observers(bool f64) {
    struct fixture f;
    if (!fixture_open(&f, "tanh", "tanh", "tanh", "tanh", f64)) { fixture_close(&f); return; }
    const struct itr_graph *g = f.gr;
    struct itr_ref_options opt = { .f64 = f64 };
    struct itr_tensor *ro[2] = { 0 }, *lo[2] = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct seen rw, lw;
    seen_init(&rw, g);
    seen_init(&lw, g);
    CHECK(itr_ref_run_observed(g, f.in, NULL, NULL, &opt, ref_seen, &rw, ro, &d));
    int results = 0;
    for (int i = 0; i < g->n_nodes; i++) results += g->nodes[i].n_outputs;
    CHECK_MSG(rw.calls == results, "reference: %d calls for %d node results", rw.calls, results);
    CHECK(rw.in_order);
    for (int v = 0; v < g->n_values; v++)
        CHECK_MSG(rw.count[v] == (g->values[v].kind == ITR_VALUE_NODE), "reference: value '%s' seen %d times",
                  g->values[v].name, rw.count[v]);
    for (int k = 0; k < g->n_outputs; k++) CHECK(same_tensor(ro[k], rw.copy[g->outputs[k]]));
    // f64 runs report f32 values as f64, as the kernels hold them
    int32_t h = result_of(g, ITR_OP_TANH, 0), u = result_of(g, ITR_OP_MATMUL, 0), a = result_of(g, ITR_OP_TANH, 1);
    CHECK(h >= 0 && u >= 0 && a >= 0);
    if (h < 0 || u < 0 || a < 0) h = u = a = 0;
    CHECK(rw.copy[h] && rw.copy[h]->dtype == (f64 ? ITR_F64 : ITR_F32));

    struct itr_llvm_exe *e = itr_llvm_exe_new(f.gc, f.s, 2, &d);
    CHECK(e != NULL);
    if (e) {
        // unobserved first: the hook is off by default
        CHECK(itr_llvm_exe_run(e, f.in, NULL, NULL, lo, &d));
        CHECK(lw.calls == 0);
        for (int k = 0; k < 2; k++) { itr_tensor_free(lo[k]); lo[k] = NULL; }
        itr_llvm_exe_observe(e, llvm_seen, &lw);
        CHECK(itr_llvm_exe_run(e, f.in, NULL, NULL, lo, &d));
        CHECK(lw.in_order);
        int fused = 0;
        for (int v = 0; v < g->n_values; v++) {
            if (g->values[v].kind != ITR_VALUE_NODE) {
                CHECK_MSG(lw.count[v] == 0, "LLVM: input '%s' reported", g->values[v].name);
                continue;
            }
            fused += !f.s->materialised[v];
            CHECK_MSG((lw.count[v] > 0) == f.s->materialised[v], "LLVM: value '%s' (materialised %d) seen %d times",
                      g->values[v].name, f.s->materialised[v], lw.count[v]);
        }
        // a is fused into the row kernel; h and u are materialised (a GEMM reads h and writes u)
        CHECK(fused > 0);
        CHECK(lw.count[h] == 1 && lw.count[u] == 1);
        CHECK(lw.count[a] == 0);
        for (int k = 0; k < g->n_outputs; k++) CHECK(same_tensor(lo[k], lw.copy[g->outputs[k]]));
        // off again
        itr_llvm_exe_observe(e, NULL, NULL);
        int before = lw.calls;
        for (int k = 0; k < 2; k++) { itr_tensor_free(lo[k]); lo[k] = NULL; }
        CHECK(itr_llvm_exe_run(e, f.in, NULL, NULL, lo, &d));
        CHECK(lw.calls == before);
    }
    if (d.n) itr_diags_print(&d, stderr);
    itr_llvm_exe_free(e);
    for (int k = 0; k < 2; k++) { itr_tensor_free(ro[k]); itr_tensor_free(lo[k]); }
    seen_free(&rw);
    seen_free(&lw);
    itr_diags_free(&d);
    fixture_close(&f);
}

TEST(observers_f32) { check_observers(false); }
TEST(observers_f64) { check_observers(true); }

// ---------------------------------------------------------------- locating

// The changed node writes a value of its own (h, read by the GEMM): the
// harness names exactly that node, its op in the reference's graph, and the
// kernel that wrote it; nothing was written before it.
static void check_materialised_node(bool f64) {
    struct fixture f;
    if (!fixture_open(&f, "tanh", "tanh", "sigmoid", "tanh", f64)) { fixture_close(&f); return; }
    int32_t h = result_of(f.gr, ITR_OP_TANH, 0);
    CHECK(h >= 0 && f.differ == f.gr->values[h].node);
    if (h < 0) { fixture_close(&f); return; }
    CHECK(f.s->materialised[h]);
    struct agree_divergence dv;
    agree_locate(f.gr, f.gc, f.s, f.in, NULL, NULL, f64, f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_OP, &dv);
    printf("  %s\n", dv.msg);
    CHECK(dv.found && !dv.failed);
    CHECK(dv.value == h);
    CHECK(dv.node == f.differ);
    CHECK(dv.step >= 0 && dv.step < f.s->n_steps && f.s->steps[dv.step].kind == KIR_STEP_KERNEL);
    CHECK(dv.reads_agree);   // it reads only x
    CHECK(dv.compared == 1);
    char want[128];
    snprintf(want, sizeof want, "node %d 'tanh' at diverge.ir:3:", f.differ);
    CHECK_STR_CONTAINS(dv.msg, want);
    char arrow[64];
    snprintf(arrow, sizeof arrow, "-> '%s'", f.gr->values[h].name);
    CHECK_STR_CONTAINS(dv.msg, arrow);
    CHECK_STR_CONTAINS(dv.msg, f64 ? "f64[3, 5]" : "f32[3, 5]");
    if (dv.step >= 0) CHECK_STR_CONTAINS(dv.msg, f.s->kernels[f.s->steps[dv.step].kernel]->name);
    CHECK_STR_CONTAINS(dv.msg, "element 0: ref");
    fixture_close(&f);
}

TEST(names_a_materialised_node) {
    check_materialised_node(false);
    check_materialised_node(true);
}

// Whether value v depends on node n's results (over g's edges).
static bool depends_on(const struct itr_graph *g, int32_t v, int n) {
    bool *t = calloc((size_t)g->n_values, sizeof *t);
    for (int k = 0; k < g->nodes[n].n_outputs; k++) t[g->nodes[n].outputs[k]] = true;
    for (int i = n + 1; i < g->n_nodes; i++) {
        bool any = false;
        for (int k = 0; k < g->nodes[i].n_inputs; k++) any |= t[g->nodes[i].inputs[k]];
        for (int k = 0; k < g->nodes[i].n_outputs && any; k++) t[g->nodes[i].outputs[k]] = true;
    }
    bool r = t[v];
    free(t);
    return r;
}

// The changed node (a) is fused away: the first value that differs is one
// the row kernel writes from a, every value that kernel reads (u) agrees,
// and the message says the divergence is inside that kernel.
TEST(names_the_kernel_of_a_fused_node) {
    struct fixture f;
    if (!fixture_open(&f, "tanh", "tanh", "tanh", "sigmoid", false)) { fixture_close(&f); return; }
    int32_t a = result_of(f.gr, ITR_OP_TANH, 1), u = result_of(f.gr, ITR_OP_MATMUL, 0);
    CHECK(a >= 0 && u >= 0 && f.differ == f.gr->values[a].node);
    if (a < 0 || u < 0) { fixture_close(&f); return; }
    CHECK(!f.s->materialised[a]);
    struct agree_divergence dv;
    agree_locate(f.gr, f.gc, f.s, f.in, NULL, NULL, false, AGREE_TOL_F32_OP, &dv);
    printf("  %s\n", dv.msg);
    CHECK(dv.found && !dv.failed);
    if (!dv.found) { fixture_close(&f); return; }
    CHECK(dv.value != a && depends_on(f.gr, dv.value, f.differ));
    CHECK(dv.node > f.differ);
    const struct kir_step *st = &f.s->steps[dv.step];
    CHECK(st->kind == KIR_STEP_KERNEL);
    bool reads_u = false;
    for (int b = 0; st->kind == KIR_STEP_KERNEL && b < st->n_bufs; b++) reads_u |= st->bufs[b] == u;
    CHECK(reads_u);
    CHECK(dv.reads_agree);
    CHECK(dv.compared >= 3);   // h, u (and z) were written and agree first
    CHECK_STR_CONTAINS(dv.msg, f.s->kernels[st->kernel]->name);
    CHECK_STR_CONTAINS(dv.msg, "the divergence is inside");
    char want[64];
    snprintf(want, sizeof want, "node %d '%s'", dv.node, itr_op_name(f.gr->nodes[dv.node].op));
    CHECK_STR_CONTAINS(dv.msg, want);
    fixture_close(&f);
}

TEST(agreeing_runs_have_no_diverging_node) {
    struct fixture f;
    if (!fixture_open(&f, "tanh", "exp", "tanh", "exp", false)) { fixture_close(&f); return; }
    int materialised = 0;
    for (int v = 0; v < f.gr->n_values; v++)
        materialised += f.gr->values[v].kind == ITR_VALUE_NODE && f.s->materialised[v];
    struct agree_divergence dv;
    agree_locate(f.gr, f.gc, f.s, f.in, NULL, NULL, false, AGREE_TOL_F32_OP, &dv);
    CHECK(!dv.found && !dv.failed);
    CHECK(dv.value == -1 && dv.node == -1);
    CHECK(dv.compared == materialised);
    CHECK_STR_CONTAINS(dv.msg, "no diverging node");
    fixture_close(&f);
}

// Graphs that are not the same graph are refused, not compared value by value.
TEST(mismatched_graphs_are_refused) {
    struct itr_program *p1 = compile_src("tanh", "tanh");
    static const char other[] = "model m {\n  entry f(x: f32[3]) -> (y) {\n    return exp(x)\n  }\n}\n";
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p2 = NULL;
    CHECK(itr_compile_source("other.ir", other, strlen(other), &co, &p2, NULL, &d));
    struct kir_schedule *s = p2 ? itr_lower_graph(tu_find_entry(p2, "f"), false, &d) : NULL;
    if (p1 && p2 && s) {
        struct agree_divergence dv;
        agree_locate(tu_find_entry(p1, "f"), tu_find_entry(p2, "f"), s, NULL, NULL, NULL, false, 1e-5, &dv);
        CHECK(dv.failed && !dv.found);
        CHECK_STR_CONTAINS(dv.msg, "do not match");
    }
    kir_schedule_free(s);
    itr_program_free(p1);
    itr_program_free(p2);
    itr_diags_free(&d);
}

// ---------------------------------------------------------------- a model

// One op of a real model's compiled training step is changed on the compiled
// side (from -> to, the first or the last such node of the phase): the
// harness names that node when its value is materialised, else a value that
// depends on it. The step's GRU runs as a scan (forward and backward): the
// reference's observer sees only the step's own nodes, none of the bodies'.
static struct itr_program *compile_model(const char *path) {
    const char *ov[TU_N_SMALL_SIZES];
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    co.defines = ov;
    co.n_defines = tu_small_overrides(path, ov);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_file(path, &co, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

static void check_model_entry(const char *model, const char *entry, enum itr_phase phase, enum itr_op from,
                              enum itr_op to, bool last) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, model);
    struct itr_program *pr = compile_model(path), *pc = compile_model(path);
    CHECK_MSG(pr && pc, "cannot compile %s", path);
    const struct itr_graph *gr = pr ? tu_find_entry(pr, entry) : NULL;
    struct itr_graph *gc = pc ? (struct itr_graph *)tu_find_entry(pc, entry) : NULL;
    CHECK_MSG(gr && gc, "%s has no entry '%s'", model, entry);
    if (!gr || !gc) {
        itr_program_free(pr);
        itr_program_free(pc);
        return;
    }
    int changed = -1, scans = 0;
    for (int i = 0; i < gc->n_nodes; i++) {
        if (gc->nodes[i].op == from && gc->nodes[i].phase == phase && (last || changed < 0)) changed = i;
        scans += gc->nodes[i].op == ITR_OP_SCAN;
    }
    CHECK_MSG(changed >= 0, "%s '%s' has no %s node in its %s phase", model, entry, itr_op_name(from),
              itr_phase_name(phase));
    CHECK_MSG(scans > 0, "%s '%s' has no scan", model, entry);
    struct itr_dim_bindings b;
    int64_t *syms = tu_bind_symbols(pr, &b);
    struct itr_tensor **params = tu_random_params(pr, &b, 1000);
    struct itr_tensor **in = tu_random_inputs(gr, &b, 100);
    struct itr_diags d;
    itr_diags_init(&d);
    struct kir_schedule *s = NULL;
    if (changed >= 0) {
        gc->nodes[changed].op = to;
        s = itr_lower_graph(gc, false, &d);
        CHECK(s != NULL);
    }
    if (s) {
        // the reference's observer sees this graph's node results, not the scan body's
        struct seen rw;
        seen_init(&rw, gr);
        struct itr_ref_options opt = { .f64 = false };
        struct itr_tensor **ro = calloc((size_t)gr->n_outputs + 1, sizeof *ro);
        struct itr_dim_bindings rb;
        itr_bindings_init(&rb, pr);
        for (int i = 0; i < pr->n_symbols; i++) { rb.value[i] = b.value[i]; rb.bound[i] = true; }
        CHECK(itr_ref_run_observed(gr, in, params, &rb, &opt, ref_seen, &rw, ro, &d));
        int results = 0;
        for (int i = 0; i < gr->n_nodes; i++) results += gr->nodes[i].n_outputs;
        CHECK_MSG(rw.calls == results && rw.in_order, "%d calls for %d results", rw.calls, results);
        for (int k = 0; k < gr->n_outputs; k++) itr_tensor_free(ro[k]);
        free(ro);
        itr_bindings_free(&rb);
        seen_free(&rw);

        struct agree_divergence dv;
        agree_locate(gr, gc, s, in, params, &b, false, AGREE_TOL_F32_MODEL, &dv);
        printf("  %s '%s', node %d changed from %s to %s:\n    %s\n", model, entry, changed,
               itr_op_name(gr->nodes[changed].op), itr_op_name(gc->nodes[changed].op), dv.msg);
        CHECK(dv.found && !dv.failed);
        if (dv.found) {
            int32_t out = gr->nodes[changed].outputs[0];
            CHECK(depends_on(gr, dv.value, changed));
            if (s->materialised[out]) {
                CHECK(dv.value == out);
                CHECK(dv.node == changed);
            } else {
                CHECK(dv.node > changed);
            }
            char want[64];
            snprintf(want, sizeof want, "node %d '%s'", dv.node, itr_op_name(gr->nodes[dv.node].op));
            CHECK_STR_CONTAINS(dv.msg, want);
            CHECK_STR_CONTAINS(dv.msg, gr->values[dv.value].name);
        }
    }
    if (d.n) itr_diags_print(&d, stderr);
    kir_schedule_free(s);
    for (int i = 0; i < gr->n_inputs; i++) itr_tensor_free(in[i]);
    for (int j = 0; j < pr->n_params; j++) itr_tensor_free(params[j]);
    free(in);
    free(params);
    free(syms);
    itr_bindings_free(&b);
    itr_diags_free(&d);
    itr_program_free(pr);
    itr_program_free(pc);
}

TEST(names_the_changed_node_of_a_model) {
    // the gradient of a sum in the backward pass
    check_model_entry("vsepp.ir", "train", ITR_PHASE_BACKWARD, ITR_OP_ADD, ITR_OP_SUB, true);
    // the norm of an embedding in the forward pass
    check_model_entry("vsepp.ir", "train", ITR_PHASE_FORWARD, ITR_OP_SQRT, ITR_OP_EXP, false);
}

int main(void) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n");
        return test_summary();
    }
    RUN(observers_f32);
    RUN(observers_f64);
    RUN(names_a_materialised_node);
    RUN(names_the_kernel_of_a_fused_node);
    RUN(agreeing_runs_have_no_diverging_node);
    RUN(mismatched_graphs_are_refused);
    RUN(names_the_changed_node_of_a_model);
    return test_summary();
}
