// Support code shared by the model tests (tests/test_model_*.c): fixtures,
// parsing, running entries, scale-relative errors (max|a−b| / max|b|,
// models.md §7.14) and the synthetic-set learning driver.
#ifndef ITR_MODELTEST_H
#define ITR_MODELTEST_H

#include <inttypes.h>
#include <math.h>
#include <time.h>

#include "backends/llvm/llvm_jit.h"
#include "backends/ref/ref.h"
#include "compiler/pipeline.h"
#include "ir/kir.h"
#include "compiler/autodiff.h"
#include "compiler/passes.h"
#include "ir/bind.h"
#include "ir/plan.h"
#include "ir/text.h"
#include "runtime/data.h"
#include "runtime/eval.h"
#include "runtime/init.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/synth.h"
#include "runtime/trainer.h"
#include "tests/gradcheck.h"
#include "tests/test.h"
#include "tests/testutil.h"

// The tensor <dir><name>.npy, reporting why when it cannot be read.
static inline struct itr_tensor *mt_fixture(const char *dir, const char *name) {
    char path[1024];
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

// Parses a model from text (NULL: from the file `name`) with overrides, optionally compiling the training step;
// NULL (reported) on errors. A text keeps `name` for its imports: name it inside models/ to resolve them there.
static inline struct itr_program *mt_parse_text(const char *name, const char *text, const char *const *ov, int n,
                                                bool compile) {
    struct itr_parse_options opt = { .overrides = ov, .n_overrides = n };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = text ? itr_parse_string(name, text, strlen(text), &opt, &d) : itr_parse_file(name, &opt, &d);
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

// p's parameters initialised from seed (runtime/init.h, p's default dim
// bindings) into *set, which this initialises; false (reported) on failure.
static inline bool mt_init_params(const struct itr_program *p, uint64_t seed, struct itr_tensor_set *set) {
    itr_tensor_set_init(set);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_init_params(p, seed, &b, set, &d);
    if (!ok) diags_report("init: ", &d);
    itr_diags_free(&d);
    itr_bindings_free(&b);
    return ok;
}

// Parses a model file with overrides, optionally compiling the training step; NULL (reported) on errors.
static inline struct itr_program *mt_parse_model(const char *file, const char *const *ov, int n, bool compile) {
    return mt_parse_text(file, NULL, ov, n, compile);
}

// mt_parse_model with the overrides size[0, n_size) and then extra (unless NULL).
static inline struct itr_program *mt_parse_sized(const char *file, const char *const *size, int n_size,
                                                 const char *extra, bool compile) {
    const char *ov[64];
    int n = 0;
    for (; n < n_size && n < 63; n++) ov[n] = size[n];
    if (extra) ov[n++] = extra;
    return mt_parse_model(file, ov, n, compile);
}

// Frees the first n tensors of t, then t.
static inline void free_tensors(struct itr_tensor **t, int n) {
    for (int i = 0; t && i < n; i++) itr_tensor_free(t[i]);
    free(t);
}

// Runs g on the reference backend (in float64 if f64); NULL (reported after `what`) on failure.
static inline struct itr_tensor **mt_run_graph_as(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                                  struct itr_tensor *const *params, bool f64, const char *what) {
    struct itr_dim_bindings dims;
    itr_bindings_init(&dims, g->prog);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options opt = { .f64 = f64 };
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

// Runs g in float32 on the reference backend; NULL (reported after `what`) on failure.
static inline struct itr_tensor **mt_run_graph(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                        struct itr_tensor *const *params, const char *what) {
    return mt_run_graph_as(g, inputs, params, false, what);
}

// Rows [start, start + n) of t along axis 0, as a new tensor.
static inline struct itr_tensor *mt_rows(const struct itr_tensor *t, int64_t start, int64_t n) {
    int64_t shape[ITR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) shape[i] = t->shape[i];
    shape[0] = n;
    struct itr_tensor *r = itr_tensor_new(t->dtype, t->rank, shape);
    size_t row = itr_tensor_nbytes(t) / (size_t)t->shape[0];
    memcpy(r->data, (const char *)t->data + (size_t)start * row, (size_t)n * row);
    return r;
}

// score(img[i0, i0+ni), cap[c0, c0+nc), len[c0, c0+nc)) of p's score entry on encoder outputs; NULL on failure.
static inline struct itr_tensor *mt_score_tile(const struct itr_program *p, struct itr_tensor *const *params,
                                               const struct itr_tensor *img, const struct itr_tensor *cap,
                                               const struct itr_tensor *len, int64_t i0, int64_t ni, int64_t c0,
                                               int64_t nc) {
    const struct itr_graph *g = itr_program_find_graph(p, "score");
    struct itr_tensor *in[3] = { mt_rows(img, i0, ni), mt_rows(cap, c0, nc), mt_rows(len, c0, nc) };
    struct itr_tensor **out = mt_run_graph(g, in, params, "");
    struct itr_tensor *s = out ? out[0] : NULL;
    free(out);
    for (int i = 0; i < 3; i++) itr_tensor_free(in[i]);
    return s;
}

// The largest |difference| between the full score matrix `full` [ni, nc] of
// img[0, ni) × cap[0, nc) and the same scores computed in 1-image tiles,
// 1-caption tiles and every 1x1 tile (each tile's shape is checked): a
// pair-scoring model's score must not depend on what else is in the tile.
static inline double mt_tiles_vs_full(const struct itr_program *p, struct itr_tensor *const *params,
                                      const struct itr_tensor *img, const struct itr_tensor *cap,
                                      const struct itr_tensor *len, const struct itr_tensor *full, int64_t ni,
                                      int64_t nc) {
    double diff = 0;
    for (int64_t i = 0; i < ni; i++) {
        struct itr_tensor *s = mt_score_tile(p, params, img, cap, len, i, 1, 0, nc);
        CHECK(s && s->shape[0] == 1 && s->shape[1] == nc);
        for (int64_t j = 0; s && j < nc; j++)
            diff = fmax(diff, fabs(itr_tensor_get(s, j) - itr_tensor_get(full, i * nc + j)));
        itr_tensor_free(s);
    }
    for (int64_t j = 0; j < nc; j++) {
        struct itr_tensor *s = mt_score_tile(p, params, img, cap, len, 0, ni, j, 1);
        CHECK(s && s->shape[0] == ni && s->shape[1] == 1);
        for (int64_t i = 0; s && i < ni; i++)
            diff = fmax(diff, fabs(itr_tensor_get(s, i) - itr_tensor_get(full, i * nc + j)));
        itr_tensor_free(s);
    }
    for (int64_t i = 0; i < ni; i++)
        for (int64_t j = 0; j < nc; j++) {
            struct itr_tensor *one = mt_score_tile(p, params, img, cap, len, i, 1, j, 1);
            CHECK(one && one->shape[0] == 1 && one->shape[1] == 1);
            if (one) diff = fmax(diff, fabs(itr_tensor_get(one, 0) - itr_tensor_get(full, i * nc + j)));
            itr_tensor_free(one);
        }
    return diff;
}

// mt_tiles_vs_full for a pair-scoring model p (entries encode_image,
// encode_text, score), freshly initialised from seed 3, on ni random images
// [ni, n_regions, img_dim] and nc captions of random word ids in [1, vocab)
// with the given lengths in n_words slots (seed 7). Also checks that the
// full [ni, nc] score matrix is finite (`label` names the model in the
// message). INFINITY when a step fails (checked).
static inline double mt_tiles_of_fresh_model(const struct itr_program *p, int64_t ni, int64_t n_regions,
                                             int64_t img_dim, int64_t nc, int64_t n_words, int vocab,
                                             const double *lengths, const char *label) {
    struct itr_tensor_set set;
    bool ok = mt_init_params(p, 3, &set);
    CHECK(ok);
    struct itr_tensor **params = calloc((size_t)p->n_params + 1, sizeof *params);
    for (int j = 0; ok && j < p->n_params; j++) params[j] = itr_tensor_set_get(&set, p->params[j].name);
    uint64_t seed = 7;
    int64_t sr[3] = { ni, n_regions, img_dim }, sw[2] = { nc, n_words }, sl[1] = { nc };
    struct itr_tensor *regions = gc_random(ITR_F32, 3, sr, -1, 1, 0, &seed);
    struct itr_tensor *words = gc_random(ITR_I32, 2, sw, 1, vocab, 0, &seed);
    struct itr_tensor *lens = gc_tensor(ITR_I32, 1, sl, lengths);
    struct itr_tensor *ri[1] = { regions }, *ti[2] = { words, lens };
    struct itr_tensor **img = ok ? mt_run_graph(itr_program_find_graph(p, "encode_image"), ri, params, "") : NULL;
    struct itr_tensor **cap = ok ? mt_run_graph(itr_program_find_graph(p, "encode_text"), ti, params, "") : NULL;
    CHECK(img && cap);
    double tile = INFINITY;
    if (img && cap) {
        struct itr_tensor *full = mt_score_tile(p, params, img[0], cap[0], cap[1], 0, ni, 0, nc);
        CHECK(full && full->shape[0] == ni && full->shape[1] == nc);
        bool finite = full != NULL;
        for (int64_t i = 0; full && i < ni * nc; i++) finite = finite && isfinite(itr_tensor_get(full, i));
        CHECK_MSG(finite, "%s: a score is not finite", label);
        if (full) tile = mt_tiles_vs_full(p, params, img[0], cap[0], cap[1], full, ni, nc);
        itr_tensor_free(full);
    }
    free_tensors(img, 1);
    free_tensors(cap, 2);
    itr_tensor_free(regions);
    itr_tensor_free(words);
    itr_tensor_free(lens);
    free(params);
    itr_tensor_set_free(&set);
    return tile;
}

// p's parameters from the fixtures <dir><prefix><param>, indexed like p->params. names NULL: every parameter,
// each of which must have a fixture; else only the n named ones (the others stay NULL), each of which p must have.
static inline struct itr_tensor **mt_fixture_params(const struct itr_program *p, const char *dir, const char *prefix,
                                                    const char *const *names, int n) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    char name[256];
    if (!names) {
        for (int j = 0; j < p->n_params; j++) {
            snprintf(name, sizeof name, "%s%s", prefix, p->params[j].name);
            t[j] = mt_fixture(dir, name);
            CHECK_MSG(t[j] != NULL, "no fixture for parameter %s", p->params[j].name);
        }
        return t;
    }
    for (int k = 0; k < n; k++) {
        int32_t j = itr_program_find_param(p, names[k]);
        CHECK_MSG(j >= 0, "the model has no parameter %s", names[k]);
        if (j < 0) continue;
        snprintf(name, sizeof name, "%s%s", prefix, names[k]);
        t[j] = mt_fixture(dir, name);
    }
    return t;
}

// mt_parse_sized (not compiled) and every parameter from the fixtures
// <dir><param>.npy into *params; NULL (failed) on errors.
static inline struct itr_program *mt_load_sized(const char *file, const char *const *size, int n_size,
                                                const char *extra, const char *dir, struct itr_tensor ***params) {
    struct itr_program *p = mt_parse_sized(file, size, n_size, extra, false);
    CHECK(p != NULL);
    *params = p ? mt_fixture_params(p, dir, "", NULL, 0) : NULL;
    return p;
}

// Appends to g the adjoint of its output 0 (the loss), by itr_vjp itself, as outputs "grad.<param>": with respect
// to the n parameters named, in that order, or (names NULL) to every trainable parameter in p's order. *first
// (unless NULL) gets the index of the first. A parameter p lacks, or one the loss does not reach, fails a check and
// makes the result false. This checks the model and autodiff independently of how the training step is assembled.
static inline bool mt_add_gradients(struct itr_graph *g, const char *const *names, int n, int *first,
                                    struct itr_diags *d) {
    struct itr_program *p = g->prog;
    struct itr_attr *one = itr_attrs_default(p, ITR_OP_FULL);
    struct itr_attr *value = &one[itr_op_attr_index(ITR_OP_FULL, "value")];
    value->kind = ITR_ATTR_FLOAT;
    value->u.f = 1.0;
    int32_t seed = -1;
    if (!itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, one, g->loc, NULL, &seed, d)) return false;
    int np = p->n_params, nw = 0;
    int32_t *wrt = calloc((size_t)np + 1, sizeof *wrt), *grads = calloc((size_t)np + 1, sizeof *grads);
    int *which = calloc((size_t)np + 1, sizeof *which);
    bool *reached = calloc((size_t)np + 1, sizeof *reached);
    bool ok = true;
    for (int k = 0; names ? k < n && nw < np : k < np; k++) {
        int32_t j = names ? itr_program_find_param(p, names[k]) : k;
        CHECK_MSG(j >= 0, "the model has no parameter %s", names ? names[k] : "");
        if (j < 0) {
            ok = false;
            continue;
        }
        if (!names && p->params[j].frozen) continue;
        which[nw] = j;
        wrt[nw++] = itr_graph_use_param(g, j);
    }
    ok = ok && itr_vjp(g, &g->outputs[0], &seed, 1, wrt, nw, grads, reached, d);
    if (first) *first = g->n_outputs;
    for (int k = 0; ok && k < nw; k++) {
        const char *pn = p->params[which[k]].name;
        CHECK_MSG(reached[k], "the loss does not depend on %s", pn);
        if (!reached[k]) {
            ok = false;
            break;
        }
        char name[300];
        snprintf(name, sizeof name, "grad.%s", pn);
        itr_graph_add_output(g, itr_program_strdup(p, name), grads[k]);
    }
    free(wrt);
    free(grads);
    free(which);
    free(reached);
    return ok;
}

// The train graph of p with the loss gradient of every trainable parameter
// appended as outputs from index *first (first may be NULL; mt_add_gradients); NULL (reported)
// when p has no train graph or autodiff fails.
static inline struct itr_graph *mt_train_with_gradients(struct itr_program *p, int *first) {
    struct itr_graph *g = itr_program_find_graph(p, "train");
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = g && mt_add_gradients(g, NULL, 0, first, &d);
    if (!ok) diags_report(g ? "gradients: " : "no train graph: ", &d);
    itr_diags_free(&d);
    return ok ? g : NULL;
}

// Runs p's train graph with the loss gradient of every trainable parameter
// appended (mt_train_with_gradients; *first gets the first gradient's
// output index, *g the graph) on inputs and params; NULL (failed) on
// errors. The caller frees the result with free_tensors(out, (*g)->n_outputs).
static inline struct itr_tensor **mt_run_train_with_gradients(struct itr_program *p, struct itr_tensor *const *inputs,
                                                              struct itr_tensor *const *params, struct itr_graph **g,
                                                              int *first) {
    *g = mt_train_with_gradients(p, first);
    CHECK(*g != NULL);
    struct itr_tensor **out = *g ? mt_run_graph(*g, inputs, params, "train: ") : NULL;
    CHECK(out != NULL);
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

// The error of a against the fixture <dir><want_name>, printed as `what` (indented, in a column of `width`)
// and checked against tol.
static inline double mt_expect_close(const char *dir, int indent, int width, const char *what,
                                     const struct itr_tensor *a, const char *want_name, double tol) {
    struct itr_tensor *want = mt_fixture(dir, want_name);
    struct err e = { 0, 0 };
    err_add(&e, a, want);
    printf("%*s%-*s rel. error %.3g\n", indent, "", width, what, err_rel(&e));
    CHECK_MSG(err_rel(&e) <= tol, "%s: error %.3g against %s", what, err_rel(&e), want_name);
    itr_tensor_free(want);
    return err_rel(&e);
}

// The loss out (a scalar) against the fixture <dir><want_name>, printed as
// `what` with both values and checked against tol.
static inline void mt_expect_loss(const char *dir, const char *what, const struct itr_tensor *out,
                                  const char *want_name, double tol) {
    struct itr_tensor *want = mt_fixture(dir, want_name);
    double el = mt_rel_err(out, want);
    printf("  %s %.9g (PyTorch %.9g), rel. error %.3g\n", what, itr_tensor_get(out, 0),
           want ? itr_tensor_get(want, 0) : NAN, el);
    CHECK_MSG(el <= tol, "%s: error %.3g", what, el);
    itr_tensor_free(want);
}

// The loss gradients out[first + k] of mt_train_with_gradients (one per
// trainable parameter of p, in order) against the fixtures
// <dir>grad.<param>, on one scale for all: the largest |grad| of the model
// (§7.14). Prints the error and the parameter where it is worst, checks
// it against tol and that every gradient is finite; returns how many
// gradients there are.
static inline int mt_expect_gradients(const struct itr_program *p, struct itr_tensor *const *out, int first,
                                      const char *dir, double tol) {
    double num = 0, den = 0;
    const char *worst_name = "";
    bool finite = true;
    int n_grads = 0;
    for (int j = 0; j < p->n_params; j++) {
        if (p->params[j].frozen) continue;
        char name[160];
        snprintf(name, sizeof name, "grad.%s", p->params[j].name);
        struct itr_tensor *w = mt_fixture(dir, name);
        const struct itr_tensor *a = out[first + n_grads++];
        if (!w || !a || !same_shape(a, w)) { num = INFINITY; itr_tensor_free(w); continue; }
        for (int64_t i = 0; i < itr_tensor_numel(w); i++) {
            double x = itr_tensor_get(a, i), y = itr_tensor_get(w, i);
            finite &= isfinite(x) != 0;
            double dd = isnan(x - y) ? INFINITY : fabs(x - y);
            if (dd > num) { num = dd; worst_name = p->params[j].name; }
            den = fmax(den, fabs(y));
        }
        itr_tensor_free(w);
    }
    double worst = num / fmax(den, 1e-300);
    printf("  gradients of %d parameters: max error / max |grad| %.3g (worst: %s), max |grad| %.3g\n", n_grads,
           worst, worst_name, den);
    CHECK_MSG(finite, "non-finite gradients");
    CHECK_MSG(worst <= tol, "gradients: error %.3g at %s", worst, worst_name);
    return n_grads;
}

// Output 0 of p's entry (in float64 if f64) on the reference backend, the
// others freed; NULL (reported) when it fails.
static inline struct itr_tensor *mt_run_entry0(const struct itr_program *p, const char *entry,
                                               struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                                               bool f64) {
    const struct itr_graph *g = itr_program_find_graph((struct itr_program *)p, entry);
    CHECK_MSG(g != NULL, "no entry %s", entry);
    if (!g) return NULL;
    struct itr_tensor **out = mt_run_graph_as(g, inputs, params, f64, "running a graph: ");
    if (!out) return NULL;
    struct itr_tensor *r = out[0];
    for (int i = 1; i < g->n_outputs; i++) itr_tensor_free(out[i]);
    free(out);
    return r;
}

// Caption features feats [B, L, E] with `extra` more slots, every slot at or
// past lengths[b] holding large other values: a model that masks its
// padding encodes both the same.
static inline struct itr_tensor *mt_garbage_padded(const struct itr_tensor *feats, const struct itr_tensor *lengths,
                                                   int64_t extra) {
    int64_t B = feats->shape[0], L = feats->shape[1], E = feats->shape[2], L2 = L + extra;
    struct itr_tensor *wide = itr_tensor_new(ITR_F32, 3, (int64_t[]){ B, L2, E });
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L2; t++)
            for (int64_t e = 0; e < E; e++) {
                bool valid = t < (int64_t)itr_tensor_get(lengths, b);
                double x = valid ? itr_tensor_get(feats, (b * L + t) * E + e) : 1e3 * cos((double)(t * E + e));
                itr_tensor_set(wide, (b * L2 + t) * E + e, x);
            }
    return wide;
}

// How much p's caption embeddings (entry encode_text of the fixtures
// <dir>token_feats and <dir>token_lengths) change when every padded slot,
// and three more, hold other large values (mt_garbage_padded): the
// scale-relative error; *finite tells whether the embeddings are finite.
static inline double mt_padding_change(const struct itr_program *p, struct itr_tensor *const *params, const char *dir,
                                       bool *finite) {
    struct itr_tensor *feats = mt_fixture(dir, "token_feats"), *lens = mt_fixture(dir, "token_lengths");
    if (!feats || !lens) {
        itr_tensor_free(feats);
        itr_tensor_free(lens);
        *finite = false;
        return INFINITY;
    }
    struct itr_tensor *u = mt_run_entry0(p, "encode_text", (struct itr_tensor *[]){ feats, lens }, params, false);
    struct itr_tensor *wide = mt_garbage_padded(feats, lens, 3);
    struct itr_tensor *u2 = mt_run_entry0(p, "encode_text", (struct itr_tensor *[]){ wide, lens }, params, false);
    double e = mt_rel_err(u2, u);
    *finite = u != NULL;
    for (int64_t i = 0; u && i < itr_tensor_numel(u); i++) *finite &= isfinite(itr_tensor_get(u, i)) != 0;
    itr_tensor_free(u);
    itr_tensor_free(u2);
    itr_tensor_free(wide);
    itr_tensor_free(feats);
    itr_tensor_free(lens);
    return e;
}

// The "all" protocol's recalls on the test split of dir with the given weights in *rc; false (reported) on errors.
static inline bool mt_test_recalls(const struct itr_program *p, const char *dir, const char *weights,
                                   struct itr_recall *rc) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab v;
    struct itr_split s;
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    float *sims = NULL;
    bool ok = false;
    char vocab[700];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    struct itr_eval_options eo = { 0 };
    if (itr_vocab_read(vocab, &v, &d)) {
        if (itr_split_open(dir, "test", &v, &s, &d)) {
            ok = itr_safetensors_read(weights, &w, &d) && itr_eval_sims(p, &w, &s, &eo, &sims, &d) &&
                 itr_protocol_eval(ITR_PROTOCOL_ALL, sims, s.n_images, s.n_captions, rc, &d);
            itr_split_close(&s);
        }
        itr_vocab_free(&v);
    }
    if (itr_diags_has_errors(&d)) diags_report("evaluating: ", &d);
    free(sims);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    return ok;
}

// The "all" protocol's rsum on the test split of dir with the given weights; NaN (reported) on errors.
static inline double test_rsum(const struct itr_program *p, const char *dir, const char *weights) {
    struct itr_recall rc;
    return mt_test_recalls(p, dir, weights, &rc) ? rc.rsum : NAN;
}

// The expected test rsum of random scores on n_images images with
// per_image captions each: t2i R@K = K / n_images, i2t R@K = 1 − C(N − per_image, K) / C(N, K)
// for N = n_images · per_image captions.
static inline double mt_chance_rsum(int n_images, int per_image) {
    double n = (double)n_images * per_image, chance = 0;
    for (int k = 1; k <= 10; k++) {
        double miss = 1;
        for (int i = 0; i < k; i++) miss *= (n - per_image - i) / (n - i);
        if (k == 1 || k == 5 || k == 10) chance += 100.0 * k / n_images + 100 * (1 - miss);
    }
    return chance;
}

// Trainer options for a test's run: constant-lr epochs over batches of `batch`, seed 5, no periodic checkpoints.
static inline void mt_trainer_options(struct itr_trainer_options *o, const char *data, const char *run,
                                      const char *fingerprint, int epochs, int batch, double lr) {
    memset(o, 0, sizeof *o);
    o->data_dir = data;
    o->run_dir = run;
    o->fingerprint = fingerprint;
    o->epochs = epochs;
    o->batch_size = batch;
    o->seed = 5;
    o->lr_given = true;
    o->lr.kind = ITR_LR_CONSTANT;
    o->lr.lr = lr;
    o->checkpoint_every = -1;
}

// A data set and the model compiled for it, with the fingerprint its runs
// check (the training-loop tests).
struct mt_run_fixture {
    char dir[512];
    struct itr_program *p;
    char fingerprint[17];
};

// The training-loop tests' run: batches of 16, 2 epochs, seed 5, the lr
// halved each epoch after 3 warm-up steps, a checkpoint every 3 steps.
static inline void mt_loop_options(struct itr_trainer_options *o, const struct mt_run_fixture *f, const char *run) {
    memset(o, 0, sizeof *o);
    o->data_dir = f->dir;
    o->run_dir = tmp_path(run);
    o->fingerprint = f->fingerprint;
    o->batch_size = 16;
    o->epochs = 2;
    o->seed = 5;
    o->lr.kind = ITR_LR_STEP;
    o->lr.step_epochs = 1;
    o->lr.gamma = 0.5;
    o->lr.warmup_steps = 3;
    o->checkpoint_every = 3;
}

// Reads a checkpoint into s; false (the reason printed) when it cannot.
static inline bool mt_read_checkpoint(const char *path, struct itr_tensor_set *s) {
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_safetensors_read(path, s, &d);
    if (!ok) diags_report("reading a checkpoint: ", &d);
    itr_diags_free(&d);
    return ok;
}

// DIR/NAME, in one of four buffers used in turn, so that one call can take
// several.
static inline const char *mt_path_in(const char *dir, const char *name) {
    static char buf[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
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
    char w0[1024], w1[1024];
    snprintf(w0, sizeof w0, "%s/last.safetensors", run0);
    snprintf(w1, sizeof w1, "%s/best.safetensors", o->run_dir);
    *untrained = test_rsum(p, o->data_dir, w0);
    *trained = test_rsum(p, o->data_dir, w1);
}

// Generates the seeded synthetic set so in dir; its vocabulary size in *vocab_n (unless NULL). False (reported) on
// errors.
static inline bool mt_synth(const char *dir, const struct itr_synth_options *so, int *vocab_n) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab voc;
    memset(&voc, 0, sizeof voc);
    char vocab[600];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    bool ok = itr_synth_generate(dir, so, &d) && (!vocab_n || itr_vocab_read(vocab, &voc, &d));
    if (!ok) diags_report("making the synthetic set: ", &d);
    if (ok && vocab_n) *vocab_n = voc.n;
    if (vocab_n) itr_vocab_free(&voc);
    itr_diags_free(&d);
    return ok;
}

// Train and evaluate as `itrc compile` + `itr-run` do by default: on the
// fused kernels (the llvm backend) where this build has LLVM. Compiles p's
// kernel schedules and returns the backend the session will pick.
static inline const char *mt_use_fused_kernels(struct itr_program *p) {
    if (!itr_llvm_available()) return "ref";
    struct itr_diags kd;
    itr_diags_init(&kd);
    p->kernels = calloc(1, sizeof *p->kernels);
    CHECK(p->kernels && itr_compile_kernels(p, p->kernels, &kd));
    itr_diags_free(&kd);
    return "llvm";
}

// What mt_learn_run trains and on what. Zero fields take the defaults noted.
struct mt_learn_options {
    const char *ir, *label;      // the model file; names the data and run directories and the printed line
    int n_train, n_test, n_dev;  // synthetic set (n_dev: 20; 4 regions of 32-dim features, seed 11)
    int epochs;                  // of Adam at a constant lr, batches of 16, seed 5
    double lr;
    // The model's size overrides, before the data's R=, img_dim=, V= (NULL: D=16, W=8, gru_init=0.25) ...
    const char *const *size;
    int n_size;
    // ... and overrides after them.
    const char *const *extra;
    int n_extra;
};

// Trains o->ir on a seeded synthetic set and checks test rsum trained >= 3x untrained. Each label gets its own
// data and run directories, so one test file can learn several models.
static inline void mt_learn_run(const struct mt_learn_options *o) {
    static const char *const SMALL[] = { "D=16", "W=8", "gru_init=0.25" };
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = o->n_train;
    so.n_dev = o->n_dev ? o->n_dev : 20;
    so.n_test = o->n_test;
    so.regions = 4;
    so.dim = 32;
    so.seed = 11;
    char sub[96];
    snprintf(sub, sizeof sub, "synth_%s", o->label);
    char data[512];
    snprintf(data, sizeof data, "%s", tmp_path(sub));
    int n_vocab = 0;
    bool ok = mt_synth(data, &so, &n_vocab);
    CHECK(ok);
    if (!ok) return;
    char r[32], i[32], v[32];
    snprintf(r, sizeof r, "R=%d", so.regions);
    snprintf(i, sizeof i, "img_dim=%d", so.dim);
    snprintf(v, sizeof v, "V=%d", n_vocab);
    const char *const *size = o->size ? o->size : SMALL;
    int n_size = o->size ? o->n_size : 3;
    const char *ov[32];
    int n_ov = 0;
    for (int k = 0; k < n_size && n_ov < 29; k++) ov[n_ov++] = size[k];
    ov[n_ov++] = r;
    ov[n_ov++] = i;
    ov[n_ov++] = v;
    for (int k = 0; k < o->n_extra && n_ov < 32; k++) ov[n_ov++] = o->extra[k];
    const char *dsize = "";   // "D=..." for the printed line
    for (int k = 0; k < n_ov; k++)
        if (strncmp(ov[k], "D=", 2) == 0) dsize = ov[k];
    struct itr_program *p = mt_parse_model(o->ir, ov, n_ov, true);
    CHECK(p != NULL);
    if (!p) return;
    const char *backend = mt_use_fused_kernels(p);
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
    char run[512];
    snprintf(sub, sizeof sub, "run_%s", o->label);
    snprintf(run, sizeof run, "%s", tmp_path(sub));
    struct itr_trainer_options to;
    mt_trainer_options(&to, data, run, fp, o->epochs, 16, o->lr);
    struct itr_trainer_result res;
    double secs, chance, trained;
    char run0[512];
    snprintf(sub, sizeof sub, "init_%s", o->label);
    snprintf(run0, sizeof run0, "%s", tmp_path(sub));
    struct itr_diags d;
    itr_diags_init(&d);
    // The untrained model: a run killed after its first step leaves only the step-0 checkpoint.
    mt_train_eval(p, &to, run0, "", &res, &secs, &chance, &trained, &d);
    printf("  %s %s: test rsum %.2f untrained, %.2f after %" PRId64 " steps (%d epochs, B=16, Adam %g); "
           "%.1f s CPU on %s, last loss %.4g\n",
           o->label, dsize, chance, trained, res.steps, o->epochs, o->lr, secs, backend, res.last_loss);
    CHECK_MSG(trained >= 3 * chance, "%s: test rsum %.2f trained vs %.2f untrained: less than 3x", o->label, trained,
              chance);
    itr_diags_free(&d);
    itr_program_free(p);
}

// mt_learn_run of ir at D=16, W=8 with the extra config overrides.
static inline void mt_learn_with(const char *ir, const char *label, int n_train, int n_test, int epochs, double lr,
                                 const char *const *extra, int n_extra) {
    struct mt_learn_options o = { .ir = ir, .label = label, .n_train = n_train, .n_test = n_test, .epochs = epochs,
                                  .lr = lr, .extra = extra, .n_extra = n_extra };
    mt_learn_run(&o);
}

static inline void mt_learn(const char *ir, const char *label, int n_train, int n_test, int epochs, double lr) {
    mt_learn_with(ir, label, n_train, n_test, epochs, lr, NULL, 0);
}

// What mt_learn_tokens trains: a model reading the synthetic set's
// stand-in token features (runtime/synth.h token_dim, docs/data.md) in
// place of a frozen text encoder's.
struct mt_learn_tokens_options {
    const char *ir;              // the model file
    const char *const *size;     // its overrides
    int n_size;
    int regions;                 // per image (of 32 features)
    int token_dim;
    int epochs;                  // batches of 16, constant lr 2e-3, seed 5
    bool fused;                  // on the llvm backend where built (mt_use_fused_kernels), else ref
};

// Trains o->ir on a seeded synthetic set (300/40/100 images, seed 11) in
// the test's tmp_path("learn"), and checks test rsum >= 3x chance
// (mt_chance_rsum on 100 images x 500 captions).
static inline void mt_learn_tokens(const struct mt_learn_tokens_options *lo) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("learn"));
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = 300;
    so.n_dev = 40;
    so.n_test = 100;
    so.regions = lo->regions;
    so.dim = 32;
    so.seed = 11;
    so.token_dim = lo->token_dim;
    bool ok = mt_synth(dir, &so, NULL);
    CHECK(ok);
    struct itr_program *p = ok ? mt_parse_model(lo->ir, lo->size, lo->n_size, true) : NULL;
    CHECK(p != NULL);
    if (!p) return;
    const char *backend = lo->fused ? mt_use_fused_kernels(p) : "ref";
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
    struct itr_trainer_options o;
    mt_trainer_options(&o, dir, tmp_path("learn_run"), fp, lo->epochs, 16, 2e-3);
    struct itr_trainer_result r;
    double secs, untrained, trained;
    struct itr_diags d;
    itr_diags_init(&d);
    // The untrained model: the step-0 checkpoint of a run killed at step 1.
    mt_train_eval(p, &o, tmp_path("learn_init"), "", &r, &secs, &untrained, &trained, &d);
    double chance = mt_chance_rsum(100, 5);
    printf("  learning: test rsum %.2f untrained, %.2f after %" PRId64 " steps (%.1f s CPU on %s), last loss %.4g; "
           "chance %.2f\n", untrained, trained, r.steps, secs, backend, r.last_loss, chance);
    CHECK_MSG(trained >= 3 * chance, "test rsum %.2f: less than 3x chance (%.2f)", trained, chance);
    itr_diags_free(&d);
    itr_program_free(p);
}

#endif
