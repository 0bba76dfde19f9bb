// Training updates written in place (docs/kernels.md, "Updates in place";
// compiler/lower.c place_updates_in_place, backends/llvm/llvm_exec.c): on
// every model the optimizer's updates of the train schedule overwrite their
// parameter, after every step that can fail and after the loss; the plan
// keeps the aliases and its reader refuses bad ones; a session's step on the
// LLVM backend writes into the session's own tensors and gives the same bits
// as the same step lowered without updates in place; a NaN loss writes
// nothing; a caller that does not allow writes keeps its tensors.
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/pipeline.h"
#include "ir/kir.h"
#include "ir/plan.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "runtime/session.h"
#include "runtime/train.h"
#include "test.h"
#include "testutil.h"

// The program at path (or, with src, the source text) with its kernels;
// without_in_place lowers them with ITRC_NO_UPDATES_IN_PLACE=1.
static struct itr_program *with_kernels(struct itr_program *p, bool without_in_place) {
    if (!p) return NULL;
    struct kir_plan_kernels *made = calloc(1, sizeof *made);
    struct itr_diags d;
    itr_diags_init(&d);
    if (without_in_place) setenv("ITRC_NO_UPDATES_IN_PLACE", "1", 1);
    bool ok = made && itr_compile_kernels(p, made, &d);
    unsetenv("ITRC_NO_UPDATES_IN_PLACE");
    if (!ok) {
        diags_report("lowering failed", &d);
        kir_plan_kernels_free(made);
        free(made);
        itr_program_free(p);
        p = NULL;
    } else {
        p->kernels = made;   // the program frees them
    }
    itr_diags_free(&d);
    return p;
}

static const struct itr_graph *train_graph(const struct itr_program *p, int *gi) {
    for (int i = 0; p->n_updates && i < p->n_graphs; i++)
        for (int o = 0; o < p->graphs[i]->n_outputs; o++)
            if (strcmp(p->graphs[i]->output_names[o], p->updates[0].output) == 0) {
                *gi = i;
                return p->graphs[i];
            }
    return NULL;
}

// The step and buffer that write update u in place, or false.
static bool aliased_at(const struct itr_program *p, const struct itr_graph *g, const struct kir_schedule *s, int u,
                       int *step, int *buf) {
    for (int si = 0; si < s->n_steps; si++)
        for (int b = 0; b < s->steps[si].n_bufs; b++) {
            int32_t a = kir_step_alias(&s->steps[si], b);
            for (int o = 0; a >= 0 && o < g->n_outputs; o++)
                if (g->outputs[o] == a && strcmp(g->output_names[o], p->updates[u].output) == 0) {
                    *step = si;
                    *buf = b;
                    return true;
                }
        }
    return false;
}

// p's plan written to memory and read back as `what` (NULL when the reader
// refuses it, with the reason in d).
static struct itr_program *round_trip(const struct itr_program *p, const char *what, struct itr_diags *d) {
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK(itr_plan_pack(p, "llvm", &buf, &n, d));
    struct itr_program *q = buf ? itr_plan_unpack(buf, n, what, NULL, d) : NULL;
    free(buf);
    return q;
}

static bool step_writes(const struct kir_schedule *s, const struct itr_graph *g, int si, int32_t v) {
    const struct kir_step *st = &s->steps[si];
    if (st->kind == KIR_STEP_KERNEL) {
        for (int b = 0; b < st->n_bufs; b++)
            if (st->bufs[b] == v && s->kernels[st->kernel]->bufs[b].written) return true;
        return false;
    }
    return g->nodes[st->node].outputs[0] == v;
}

// Every optimizer update (parameters and their state) of every model's
// train schedule, f32 and f64, is written in place, after the loss and
// after every step that may fail, by a step that is the parameter's last
// reader; running statistics (computed in the forward pass, before the
// loss) keep their own outputs. The plan round trip keeps every alias.
TEST(every_models_optimizer_updates_in_place) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    if (!dir) return;
    int models = 0, in_place = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".ir") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, ITR_SOURCE_DIR "/models/%s", de->d_name);
        struct itr_program *p = with_kernels(tu_compile_small(path, "llvm"), false);
        CHECK_MSG(p != NULL, "%s", de->d_name);
        if (!p) continue;
        int gi = -1;
        const struct itr_graph *g = train_graph(p, &gi);
        CHECK_MSG(g != NULL, "%s has no train graph", de->d_name);
        models++;
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *q = round_trip(p, "round trip", &d);
        CHECK_MSG(q != NULL, "%s: the plan does not read back", de->d_name);
        for (int f = 0; g && f < 2; f++) {
            const struct kir_schedule *s = kir_plan_kernels_find(p->kernels, gi, f == 1);
            const struct kir_schedule *sq = q ? kir_plan_kernels_find(q->kernels, gi, f == 1) : NULL;
            CHECK(s != NULL && (!q || sq != NULL));
            if (!s) continue;
            int barrier = -1;
            for (int si = 0; si < s->n_steps; si++)
                if (s->steps[si].kind == KIR_STEP_NODE || s->steps[si].guard_count >= 0 ||
                    step_writes(s, g, si, g->outputs[0]))
                    barrier = si;
            for (int u = 0; u < p->n_updates; u++) {
                int si = -1, b = -1;
                bool aliased = aliased_at(p, g, s, u, &si, &b);
                if (p->updates[u].kind == ITR_UPDATE_STATE) continue;
                CHECK_MSG(aliased, "%s (%s): update '%s' is not in place", de->d_name, f ? "f64" : "f32",
                          p->updates[u].output);
                if (!aliased) continue;
                in_place++;
                const struct kir_step *st = &s->steps[si];
                int32_t v_in = st->bufs[b];
                CHECK(g->values[v_in].kind == ITR_VALUE_PARAM && g->values[v_in].param == p->updates[u].param);
                CHECK(si > barrier && s->last_step[v_in] == si);
                CHECK(s->kernels[st->kernel]->bufs[b].written);
                if (sq) CHECK(sq->steps[si].alias && sq->steps[si].alias[b] == st->alias[b]);
            }
        }
        if (q) itr_program_free(q);
        itr_diags_free(&d);
        itr_program_free(p);
    }
    closedir(dir);
    CHECK(models >= 14);
    CHECK(in_place > 100);
}

static const char *const MODEL =
    "import \"modules/nn.ir\"\n"
    "model m {\n"
    "  dim B = 4\n"
    "  let fc = linear(3, 2)\n"
    "  entry predict(x: f32[B, 3]) -> (y) { return fc(x) }\n"
    "  train(x: f32[B, 3], t: f32[B, 2]) -> (loss) {\n"
    "    e = fc(x) - t\n"
    "    return sum(e * e)\n"
    "  }\n"
    "  optimizer adam(lr=0.05)\n"
    "}\n";

static struct itr_program *small_model(bool without_in_place) {
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    static const char *const inc[] = { ITR_SOURCE_DIR "/models" };
    o.include_dirs = inc;
    o.n_include_dirs = 1;
    o.target = "llvm";
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_source("m.ir", MODEL, strlen(MODEL), &o, &p, NULL, &d)) diags_report("compile failed", &d);
    itr_diags_free(&d);
    return with_kernels(p, without_in_place);
}

static struct itr_tensor *filled(int rank, const int64_t *shape, double scale, double bad) {
    struct itr_tensor *t = itr_tensor_new(ITR_F32, rank, shape);
    int64_t n = itr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, scale * (double)((i * 7) % 11 - 5) / 3.0);
    if (bad != 0) itr_tensor_set(t, 1, bad);
    return t;
}

static struct itr_session *llvm_session(const struct itr_program *p) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session_options so = { .threads = 2 };
    struct itr_session *s = itr_session_new(p, "llvm", &so, &d);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    CHECK(itr_init_params(p, 7, &b, &w, &d));
    if (s) itr_session_adopt(s, &w, "fresh", &d);
    itr_tensor_set_free(&w);
    itr_bindings_free(&b);
    itr_diags_free(&d);
    return s;
}

static bool step(struct itr_session *s, const struct itr_program *p, int64_t n, double bad, struct itr_diags *d) {
    struct itr_tensor_set in, metrics;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&metrics);
    itr_tensor_set_put(&in, "x", filled(2, (int64_t[]){ 4, 3 }, 1.0, bad));
    itr_tensor_set_put(&in, "t", filled(2, (int64_t[]){ 4, 2 }, 0.5, 0));
    struct itr_train_options o = { .lr = 0.05, .step = n, .seed = 3 };
    struct itr_train_result r;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    bool ok = itr_session_train_step(s, &in, &b, &o, &metrics, &r, d);
    itr_bindings_free(&b);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&metrics);
    return ok;
}

// The f32 schedule of p's train graph (g receives the graph); the test may
// change it, as the plan reader's test does.
static struct kir_schedule *train_schedule(struct itr_program *p, const struct itr_graph **g) {
    int gi = -1;
    *g = train_graph(p, &gi);
    for (int i = 0; *g && i < p->kernels->n; i++)
        if (p->kernels->items[i].graph == gi && !p->kernels->items[i].f64) return p->kernels->items[i].s;
    return NULL;
}

static bool same_bits(const struct itr_tensor *a, const struct itr_tensor *b) {
    return a && b && a->dtype == b->dtype && itr_tensor_numel(a) == itr_tensor_numel(b) &&
           memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

// Three steps through a session: the parameters and their Adam moments stay
// the same tensors (written in place, from the step that created the
// moments on), with the bits of the same steps lowered without updates in
// place; then a NaN loss is refused and changes no bit.
TEST(session_steps_write_the_sessions_tensors) {
    struct itr_program *p = small_model(false), *q = small_model(true);
    CHECK(p && q);
    if (!p || !q) goto out;
    struct itr_session *s = llvm_session(p), *t = llvm_session(q);
    CHECK(s && t);
    if (!s || !t) goto out_s;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(step(s, p, 1, 0, &d) && step(t, q, 1, 0, &d));
    struct itr_tensor **held = calloc((size_t)p->n_params, sizeof *held);
    for (int j = 0; j < p->n_params; j++) held[j] = itr_session_param(s, j);
    for (int k = 2; k <= 3; k++) CHECK(step(s, p, k, 0, &d) && step(t, q, k, 0, &d));
    int same = 0;
    for (int j = 0; j < p->n_params; j++) {
        CHECK_MSG(itr_session_param(s, j) == held[j], "'%s' was replaced, not updated in place", p->params[j].name);
        CHECK_MSG(same_bits(itr_session_param(s, j), itr_session_param(t, j)), "'%s' differs from the step without "
                  "updates in place", p->params[j].name);
        same++;
    }
    CHECK(same == p->n_params && same >= 6);   // weight, bias and their two moments
    // A NaN loss: an error, and every slot is the same tensor with the same bits.
    struct itr_tensor **before = calloc((size_t)p->n_params, sizeof *before);
    for (int j = 0; j < p->n_params; j++) before[j] = itr_tensor_clone(itr_session_param(s, j));
    diags_reset(&d);
    CHECK(!step(s, p, 4, NAN, &d));
    CHECK(itr_diags_has_errors(&d));
    for (int j = 0; j < p->n_params; j++) {
        CHECK(itr_session_param(s, j) == held[j]);
        CHECK_MSG(same_bits(itr_session_param(s, j), before[j]), "'%s' changed at a NaN loss", p->params[j].name);
        itr_tensor_free(before[j]);
    }
    free(before);
    free(held);
    itr_diags_free(&d);
out_s:
    itr_session_free(s);
    itr_session_free(t);
out:
    if (p) itr_program_free(p);
    if (q) itr_program_free(q);
}

// The executor run with read-only parameters (itr_llvm_exe_run, what the
// agreement harness and benchmarks call): the caller's tensors keep their
// bits, and the updates come back as new tensors with the values of a
// writable run.
TEST(read_only_runs_update_a_copy) {
    struct itr_program *p = small_model(false);
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g;
    const struct kir_schedule *s = train_schedule(p, &g);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_exe *e = s ? itr_llvm_exe_new(g, s, 2, &d) : NULL;
    CHECK(e != NULL);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    CHECK(itr_init_params(p, 7, &b, &w, &d));
    struct itr_tensor **params = calloc((size_t)p->n_params, sizeof *params), **copy = calloc((size_t)p->n_params, sizeof *copy);
    for (int j = 0; j < p->n_params; j++) {
        params[j] = itr_tensor_clone(itr_tensor_set_get(&w, p->params[j].name));
        copy[j] = itr_tensor_clone(params[j]);
    }
    struct itr_tensor **in = calloc((size_t)g->n_inputs, sizeof *in);
    for (int i = 0; i < g->n_inputs; i++) {
        const char *nm = g->values[g->inputs[i]].name;
        in[i] = strcmp(nm, "x") == 0   ? filled(2, (int64_t[]){ 4, 3 }, 1.0, 0)
              : strcmp(nm, "t") == 0   ? filled(2, (int64_t[]){ 4, 2 }, 0.5, 0)
              : strcmp(nm, "lr") == 0  ? itr_tensor_new(ITR_F32, 0, NULL)
                                       : itr_tensor_new(ITR_I64, 0, NULL);
        if (strcmp(nm, "lr") == 0) itr_tensor_set(in[i], 0, 0.05);
        if (strcmp(nm, "step") == 0) itr_tensor_set(in[i], 0, 1);
    }
    struct itr_tensor **ro_out = calloc((size_t)g->n_outputs, sizeof *ro_out);
    struct itr_tensor **rw_out = calloc((size_t)g->n_outputs, sizeof *rw_out);
    CHECK(e && itr_llvm_exe_run(e, in, params, &b, ro_out, &d));
    for (int j = 0; j < p->n_params; j++) CHECK(same_bits(params[j], copy[j]));
    struct itr_run_options ro = { .params_writable = true, .finite_output = 0 };
    CHECK(e && itr_llvm_exe_run_with(e, in, params, &b, &ro, rw_out, &d) && !ro.stopped);
    int written = 0;
    for (int u = 0; u < p->n_updates; u++) {
        int k = -1;
        for (int o = 0; o < g->n_outputs; o++)
            if (strcmp(g->output_names[o], p->updates[u].output) == 0) k = o;
        int j = p->updates[u].param;
        CHECK(k >= 0 && ro_out[k] && rw_out[k]);
        if (k < 0 || !ro_out[k] || !rw_out[k]) continue;
        CHECK(ro_out[k] != params[j]);
        CHECK(same_bits(ro_out[k], rw_out[k]));
        if (rw_out[k] == params[j]) {
            written++;
            rw_out[k] = NULL;   // the caller's own tensor
        }
    }
    CHECK(written == p->n_updates);
    for (int o = 0; o < g->n_outputs; o++) {
        itr_tensor_free(ro_out[o]);
        itr_tensor_free(rw_out[o]);
    }
    for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
    for (int j = 0; j < p->n_params; j++) {
        itr_tensor_free(params[j]);
        itr_tensor_free(copy[j]);
    }
    free(in);
    free(ro_out);
    free(rw_out);
    free(params);
    free(copy);
    itr_tensor_set_free(&w);
    itr_bindings_free(&b);
    if (e) itr_llvm_exe_free(e);
    itr_diags_free(&d);
    itr_program_free(p);
}

// A plan whose step aliases a buffer to something that is not an output of
// the graph (or to a buffer the kernel only reads) is refused with the
// schedule and step named.
TEST(plan_reader_refuses_bad_aliases) {
    struct itr_program *p = small_model(false);
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g;
    struct kir_schedule *s = train_schedule(p, &g);
    int si = -1, b = -1;
    CHECK(g && s && aliased_at(p, g, s, 0, &si, &b));
    if (si < 0) {
        itr_program_free(p);
        return;
    }
    int32_t keep = s->steps[si].alias[b];
    for (int bad = 0; bad < 2; bad++) {
        if (bad == 0) s->steps[si].alias[b] = g->inputs[0];   // an input, not an output
        else {
            s->steps[si].alias[b] = keep;
            int r = -1;   // a buffer the kernel only reads
            for (int c = 0; c < s->steps[si].n_bufs; c++)
                if (!s->kernels[s->steps[si].kernel]->bufs[c].written) r = c;
            CHECK(r >= 0);
            if (r < 0) break;
            s->steps[si].alias[r] = keep;
            s->steps[si].alias[b] = -1;
        }
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *q = round_trip(p, "bad.plan", &d);
        CHECK(q == NULL);
        char *sum = itr_diags_summary(&d);
        CHECK_STR_CONTAINS(sum, "aliases buffer");
        free(sum);
        if (q) itr_program_free(q);
        itr_diags_free(&d);
    }
    itr_program_free(p);
}

int main(void) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n");
        return test_summary();
    }
    RUN(every_models_optimizer_updates_in_place);
    RUN(session_steps_write_the_sessions_tensors);
    RUN(read_only_runs_update_a_copy);
    RUN(plan_reader_refuses_bad_aliases);
    return test_summary();
}
