// Support code shared by the model tests (tests/test_model_*.c): fixtures,
// parsing, running entries, scale-relative errors (max|a−b| / max|b|,
// models.md §7.14) and the synthetic-set learning driver.
#ifndef ITR_MODELTEST_H
#define ITR_MODELTEST_H

#include <inttypes.h>
#include <math.h>
#include <time.h>

#include "backends/ref/ref.h"
#include "compiler/passes.h"
#include "ir/bind.h"
#include "ir/plan.h"
#include "ir/text.h"
#include "runtime/data.h"
#include "runtime/eval.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/synth.h"
#include "runtime/trainer.h"
#include "tests/test.h"
#include "tests/testutil.h"

// The tensor <dir><name>.npy, reporting why when it cannot be read.
static inline struct itr_tensor *mt_fixture(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s%s.npy", dir, name);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(path, &d);
    if (!t) diags_report("", &d);
    itr_diags_free(&d);
    return t;
}

// Compiles p's training step, verifying it before and after simplifying.
static inline bool mt_compile_training(struct itr_program *p, struct itr_diags *d) {
    return itr_compile_training_step(p, d) && itr_program_verify(p, d) && itr_simplify(p, NULL, d) &&
           itr_program_verify(p, d);
}

// Parses a model file with overrides, optionally compiling the training step; NULL (reported) on errors.
static inline struct itr_program *mt_parse_model(const char *file, const char *const *ov, int n, bool compile) {
    struct itr_parse_options opt = { .overrides = ov, .n_overrides = n };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(file, &opt, &d);
    bool ok = p && !itr_diags_has_errors(&d);
    if (ok && compile) ok = mt_compile_training(p, &d);
    if (!ok) {
        diags_report("", &d);
        if (p) itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

// Frees the first n tensors of t, then t.
static inline void free_tensors(struct itr_tensor **t, int n) {
    for (int i = 0; t && i < n; i++) itr_tensor_free(t[i]);
    free(t);
}

// Runs g in float32 on the reference backend; NULL (reported after `what`) on failure.
static inline struct itr_tensor **mt_run_graph(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                        struct itr_tensor *const *params, const char *what) {
    struct itr_dim_bindings dims;
    itr_bindings_init(&dims, g->prog);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options opt = { .f64 = false };
    struct itr_tensor **out = calloc((size_t)g->n_outputs + 1, sizeof *out);
    if (!itr_ref_run(g, inputs, params, &dims, &opt, out, &d)) {
        diags_report(what, &d);
        free(out);
        out = NULL;
    }
    itr_diags_free(&d);
    itr_bindings_free(&dims);
    return out;
}

// Whether a and b have the same rank and shape.
static inline bool same_shape(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

// Running maxima of |a − b| and |b|.
struct err {
    double num, den;
};

// Folds |a − b| and |b| into e; a missing tensor, a shape mismatch or NaN makes it infinite.
static inline void err_add(struct err *e, const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!a || !b || !same_shape(a, b)) {
        e->num = INFINITY;
        return;
    }
    for (int64_t i = 0; i < itr_tensor_numel(b); i++) {
        double x = itr_tensor_get(a, i), y = itr_tensor_get(b, i);
        double dd = fabs(x - y);
        if (isnan(dd)) dd = INFINITY;
        if (dd > e->num) e->num = dd;
        if (fabs(y) > e->den) e->den = fabs(y);
    }
}

// max|a − b| / max|b| so far.
static inline double err_rel(const struct err *e) { return e->num / fmax(e->den, 1e-300); }

// max|a − b| / max|b| of one pair.
static inline double mt_rel_err(const struct itr_tensor *a, const struct itr_tensor *b) {
    struct err e = { 0, 0 };
    err_add(&e, a, b);
    return err_rel(&e);
}

// The "all" protocol's rsum on the test split of dir with the given weights; NaN (reported) on errors.
static inline double test_rsum(const struct itr_program *p, const char *dir, const char *weights) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab v;
    struct itr_split s;
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    float *sims = NULL;
    struct itr_recall rc;
    double rsum = NAN;
    char vocab[700];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    struct itr_eval_options eo = { 0 };
    if (itr_vocab_read(vocab, &v, &d)) {
        if (itr_split_open(dir, "test", &v, &s, &d)) {
            if (itr_safetensors_read(weights, &w, &d) && itr_eval_sims(p, &w, &s, &eo, &sims, &d) &&
                itr_protocol_eval(ITR_PROTOCOL_ALL, sims, s.n_images, s.n_captions, &rc, &d))
                rsum = rc.rsum;
            itr_split_close(&s);
        }
        itr_vocab_free(&v);
    }
    if (itr_diags_has_errors(&d)) diags_report("evaluating: ", &d);
    free(sims);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    return rsum;
}

// Trains p with o (CPU seconds in *secs), then the untrained model: the step-0 checkpoint of the same run
// killed after step 1 in run0; test rsums of both from o->data_dir.
static inline void mt_train_eval(const struct itr_program *p, const struct itr_trainer_options *o, const char *run0,
                                 const char *what, struct itr_trainer_result *r, double *secs, double *untrained,
                                 double *trained, struct itr_diags *d) {
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    CHECK(itr_trainer_run(p, o, r, d));
    *secs = (double)clock() / CLOCKS_PER_SEC - t0;
    if (itr_diags_has_errors(d)) diags_report(what, d);
    struct itr_trainer_options o0 = *o;
    o0.run_dir = run0;
    o0.max_steps = 1;
    o0.kill_at_max_steps = true;
    struct itr_trainer_result r0;
    CHECK(itr_trainer_run(p, &o0, &r0, d));
    char w0[700], w1[700];
    snprintf(w0, sizeof w0, "%s/last.safetensors", run0);
    snprintf(w1, sizeof w1, "%s/best.safetensors", o->run_dir);
    *untrained = test_rsum(p, o->data_dir, w0);
    *trained = test_rsum(p, o->data_dir, w1);
}

// Trains model ir (D=16, W=8, plus the extra config overrides) on a seeded
// synthetic set and checks test rsum trained >= 3x untrained. Each label
// gets its own data and run directories, so one test file can learn several
// models.
static inline void mt_learn_with(const char *ir, const char *label, int n_train, int n_test, int epochs, double lr,
                                 const char *const *extra, int n_extra) {
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = n_train;
    so.n_dev = 20;
    so.n_test = n_test;
    so.regions = 4;
    so.dim = 32;
    so.seed = 11;
    char sub[96];
    snprintf(sub, sizeof sub, "synth_%s", label);
    const char *dir = tmp_path(sub);
    char data[512];
    snprintf(data, sizeof data, "%s", dir);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab voc;
    memset(&voc, 0, sizeof voc);
    char vocab[600];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", data);
    bool ok = itr_synth_generate(data, &so, &d) && itr_vocab_read(vocab, &voc, &d);
    if (!ok) diags_report("making the synthetic set: ", &d);
    CHECK(ok);
    if (!ok) {
        itr_diags_free(&d);
        return;
    }
    char r[32], i[32], v[32];
    snprintf(r, sizeof r, "R=%d", so.regions);
    snprintf(i, sizeof i, "img_dim=%d", so.dim);
    snprintf(v, sizeof v, "V=%d", voc.n);
    itr_vocab_free(&voc);
    const char *ov[16] = { "D=16", "W=8", "gru_init=0.25", r, i, v };
    int n_ov = 6;
    for (int k = 0; k < n_extra && n_ov < 16; k++) ov[n_ov++] = extra[k];
    struct itr_program *p = mt_parse_model(ir, ov, n_ov, true);
    CHECK(p != NULL);
    if (!p) {
        itr_diags_free(&d);
        return;
    }
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
    struct itr_trainer_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = data;
    char run[512];
    snprintf(sub, sizeof sub, "run_%s", label);
    snprintf(run, sizeof run, "%s", tmp_path(sub));
    o.run_dir = run;
    o.fingerprint = fp;
    o.batch_size = 16;
    o.epochs = epochs;
    o.seed = 5;
    o.lr_given = true;
    o.lr.lr = lr;
    o.lr.kind = ITR_LR_CONSTANT;
    o.checkpoint_every = -1;
    struct itr_trainer_result res;
    double secs, chance, trained;
    char run0[512];
    snprintf(sub, sizeof sub, "init_%s", label);
    snprintf(run0, sizeof run0, "%s", tmp_path(sub));
    mt_train_eval(p, &o, run0, "", &res, &secs, &chance, &trained, &d);
    printf("  %s D=16: test rsum %.2f untrained, %.2f after %" PRId64 " steps (%d epochs, B=16, Adam %g); "
           "%.1f s CPU\n",
           label, chance, trained, res.steps, epochs, lr, secs);
    CHECK_MSG(trained >= 3 * chance, "test rsum %.2f trained vs %.2f untrained: less than 3x", trained, chance);
    itr_diags_free(&d);
    itr_program_free(p);
}

static inline void mt_learn(const char *ir, const char *label, int n_train, int n_test, int epochs, double lr) {
    mt_learn_with(ir, label, n_train, n_test, epochs, lr, NULL, 0);
}

#endif
