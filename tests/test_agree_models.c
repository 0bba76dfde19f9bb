// Backend agreement for whole models (backends.md §5): every entry point of
// every model in models/ (the compiled training step included) runs on the
// LLVM backend and on the reference interpreter, f32 and f64, on the same
// seeded inputs and parameters, at the small sizes the other model tests
// use. f32 outputs agree to 1e-4 of max(1, max|ref|), f64 to 1e-12. A
// disagreement names the first diverging node (tests/agree.h agree_locate).
#include <dirent.h>
#include <stdlib.h>

#include "agree.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "backends/ref/ref.h"
#include "compiler/lower.h"
#include "compiler/pipeline.h"
#include "ir/bind.h"
#include "ir/env.h"
#include "ir/plan.h"
#include "ir/rng.h"
#include "test.h"
#include "entryrun.h"
#include "testutil.h"

static int compared_entries;

// The compiled side of the comparison: entry g (graph gi of p) on the
// backend under test, outputs into out. A file that includes this one to
// check another backend (test_cuda_agree.c) defines AGREE_COMPILED_RUN and
// AGREE_BACKEND_NAME first; the default is the plan's schedule on LLVM.
#ifndef AGREE_COMPILED_RUN
// Quadratic forms run by SCAN t2i's score entry (llvm_exec.h): the compared
// outputs then come from them (backends/cpu/qform.h).
static int64_t scan_score_qforms;

static bool llvm_entry_run(const struct itr_program *p, int gi, const struct itr_graph *g, struct itr_tensor **in,
                           struct itr_tensor *const *params, struct itr_dim_bindings *b, bool f64,
                           struct itr_tensor **out, const char *file, struct itr_diags *d) {
    const struct kir_schedule *sched = kir_plan_kernels_find(p->kernels, gi, f64);
    if (!sched) FAIL_AT("%s: the plan has no %s schedule for entry '%s'", file, f64 ? "f64" : "f32", g->name);
    struct itr_llvm_exe *e = sched ? itr_llvm_exe_new(g, sched, 2, d) : NULL;
    bool ok = e && itr_llvm_exe_run(e, in, params, b, out, d);
    int64_t q = itr_llvm_exe_qform_runs(e);
    if (q > 0 && !f64) printf("  %s: entry '%s' ran %lld quadratic forms\n", file, g->name, (long long)q);
    if (strcmp(file, "scan_t2i.ir") == 0 && strcmp(g->name, "score") == 0) scan_score_qforms += q;
    itr_llvm_exe_free(e);
    return ok;
}
#define AGREE_COMPILED_RUN llvm_entry_run
#define AGREE_COUNTS_QFORMS
#define AGREE_BACKEND_NAME "LLVM"
// Where a disagreeing entry first diverges: the same inputs again on both
// sides with observers (tests/agree.h), into dv.
#define AGREE_LOCATE(p, gi, g, in, params, b, f64, tol, dv)                                      \
    do {                                                                                       \
        const struct kir_schedule *ls_ = kir_plan_kernels_find((p)->kernels, (gi), (f64));       \
        if (ls_) agree_locate((g), (g), ls_, (in), (params), (b), (f64), (tol), (dv));          \
        else snprintf((dv)->msg, sizeof (dv)->msg, "no %s schedule to locate the divergence in", \
                      (f64) ? "f64" : "f32");                                                  \
    } while (0)
#endif

static void check_entry(const struct itr_program *p, int gi, struct itr_tensor *const *params,
                        const struct itr_dim_bindings *b, bool f64, const char *file) {
    const struct itr_graph *g = p->graphs[gi];
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    for (int i = 0; i < g->n_inputs; i++) {
        in[i] = tu_model_input(p, &g->values[g->inputs[i]].type, b, 11, 100 + (uint64_t)i);
        // Some parameters have an exact gradient of zero (a bias before batch
        // norm, the key bias of attention), so the sign of Adam's first step
        // on them is rounding noise. A small learning rate keeps that noise
        // below the tolerance; the optimizer state (first and second
        // moments) still compares the gradients at full size.
        if (strcmp(g->values[g->inputs[i]].name, "lr") == 0 && in[i] && itr_tensor_numel(in[i]) == 1)
            itr_tensor_set(in[i], 0, f64 ? 1e-14 : 1e-6);
    }
    struct itr_tensor **ro = calloc((size_t)g->n_outputs + 1, sizeof *ro), **lo = calloc((size_t)g->n_outputs + 1, sizeof *lo);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings rb, lb;
    itr_bindings_init(&rb, p);
    itr_bindings_init(&lb, p);
    for (int i = 0; i < p->n_symbols; i++) {
        rb.value[i] = lb.value[i] = b->value[i];
        rb.bound[i] = lb.bound[i] = b->bound[i];
    }
    struct itr_ref_options opt = { .f64 = f64 };
    bool ref_ok = itr_ref_run(g, in, params, &rb, &opt, ro, &d);
    if (!ref_ok) {
        fprintf(stderr, "note: %s: entry '%s' does not run on the generic inputs; skipped\n", file, g->name);
        itr_diags_print(&d, stderr);
    } else {
        if (!AGREE_COMPILED_RUN(p, gi, g, in, params, &lb, f64, lo, file, &d)) {
            itr_diags_print(&d, stderr);
            FAIL_AT("%s: entry '%s' (%s) fails on the %s backend", file, g->name, f64 ? "f64" : "f32",
                    AGREE_BACKEND_NAME);
        } else {
            compared_entries++;
            double tol = f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_MODEL;
            struct agree_divergence dv;
            bool located = false;
            for (int k = 0; k < g->n_outputs; k++) {
                char why[256];
                if (agree_tensors(ro[k], lo[k], tol, why, sizeof why)) continue;
#ifdef AGREE_LOCATE
                if (!located) AGREE_LOCATE(p, gi, g, in, params, b, f64, tol, &dv);
#else
                // another backend: no observer to locate the divergence with
                if (!located) snprintf(dv.msg, sizeof dv.msg, "(the first diverging node is located on LLVM only)");
#endif
                FAIL_AT("%s: entry '%s' (%s), output '%s': %s\n  %s", file, g->name, f64 ? "f64" : "f32",
                        g->output_names[k], why, located ? "(the first diverging node: as above)" : dv.msg);
                located = true;
            }
        }
    }
    for (int k = 0; k < g->n_outputs; k++) { itr_tensor_free(ro[k]); itr_tensor_free(lo[k]); }
    for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
    free(in);
    free(ro);
    free(lo);
    itr_bindings_free(&rb);
    itr_bindings_free(&lb);
    itr_diags_free(&d);
}

// The program and its kernels as itr-run sees them: packed into a plan
// (itrc compile --target llvm) and read back.
static struct itr_program *through_plan(struct itr_program *p) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct kir_plan_kernels made = { 0 };
    uint8_t *buf = NULL;
    size_t len = 0;
    struct itr_program *q = NULL;
    bool ok = itr_compile_kernels(p, &made, &d);
    p->kernels = &made;
    if (ok && itr_plan_pack(p, "llvm", &buf, &len, &d)) q = itr_plan_unpack(buf, len, "test plan", NULL, &d);
    p->kernels = NULL;
    if (!q || !q->kernels) itr_diags_print(&d, stderr);
    free(buf);
    kir_plan_kernels_free(&made);
    itr_diags_free(&d);
    itr_program_free(p);
    return q;
}

static void check_model(const char *path) {
    const char *file = strrchr(path, '/') + 1;
    struct itr_program *p = tu_compile_small(path, NULL);
    if (p) p = through_plan(p);
    if (!p) {
        FAIL_AT("cannot compile %s, or its plan does not read back", path);
        return;
    }
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        b.bound[i] = true;
        b.value[i] = p->symbols[i].has_default && p->symbols[i].default_value <= 64 ? p->symbols[i].default_value : 3;
    }
    struct itr_tensor **params = tu_model_params(p, &b, 11, 1000);
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        check_entry(p, gi, params, &b, false, file);
        check_entry(p, gi, params, &b, true, file);
    }
    for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    itr_bindings_free(&b);
    itr_program_free(p);
}

TEST(every_model_every_entry) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    int models = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
#ifdef ITR_AGREE_MODEL_SUBSET
        // The sanitizer build looks for memory errors in the executor, not
        // for disagreements (the release build compares every model): one
        // model per kind of graph keeps it within CI's time.
        static const char *const subset[] = { "vsepp.ir", "scan_t2i.ir", "sgr.ir", "tern.ir", "vse_inf.ir" };
        bool in = false;
        for (size_t k = 0; k < sizeof subset / sizeof *subset; k++) in |= strcmp(e->d_name, subset[k]) == 0;
        if (!in) continue;
#endif
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        check_model(path);
        models++;
    }
    if (dir) closedir(dir);
    check_model(ITR_SOURCE_DIR "/models/demo/batch.ir");
    printf("  %d models, %d entry runs compared on %s (f32 and f64)\n", models + 1, compared_entries,
           AGREE_BACKEND_NAME);
#ifdef ITR_AGREE_MODEL_SUBSET
    CHECK(models == 5);
#else
    CHECK(models >= 8);
#endif
    CHECK(compared_entries >= 2 * 3 * models);
#ifdef AGREE_COUNTS_QFORMS
    CHECK_MSG(itr_env_flag("ITRC_NO_QFORM") || scan_score_qforms >= 2,
              "SCAN t2i's score entry ran %lld quadratic forms in f32 and f64, expected one each",
              (long long)scan_score_qforms);
#endif
}

int main(void) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n");
        return test_summary();
    }
    RUN(every_model_every_entry);
    return test_summary();
}
