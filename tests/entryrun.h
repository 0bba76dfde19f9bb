// Running entry points on the reference interpreter with seeded random
// inputs and parameters, for tests that compare two compilations of the
// same model (tests/test_fold_precision.c, tests/test_rewrite.c).
#ifndef ITR_TEST_ENTRYRUN_H
#define ITR_TEST_ENTRYRUN_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ref/ref.h"
#include "ir/bind.h"
#include "ir/rng.h"
#include "test.h"

// A tensor of type t at bindings b from rng stream (stream, salt): floats
// lo + width * u with u uniform in [0, 1); integers 1 (a valid index,
// length, step and seed for every model); bools half true. NULL (the shape
// error printed) when b does not bind t.
static inline struct itr_tensor *tu_uniform_tensor(const struct itr_program *p, const struct itr_type *t,
                                                   const struct itr_dim_bindings *b, uint64_t stream, uint64_t salt,
                                                   double lo, double width) {
    int64_t shape[ITR_MAX_RANK];
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_eval_shape(b, p, t, shape, "test input", &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    if (!ok) return NULL;
    struct itr_tensor *x = itr_tensor_new(t->dtype, t->rank, shape);
    for (int64_t i = 0; x && i < itr_tensor_numel(x); i++) {
        double u = itr_rng_uniform_f64(stream, salt, (uint64_t)i);
        itr_tensor_set(x, i, itr_dtype_is_float(t->dtype) ? lo + width * u : t->dtype == ITR_BOOL ? u < 0.5 : 1);
    }
    return x;
}

// Floats uniform in [-2, 2) from stream `salt`, or with `positive` in
// [0.25, 1.25) (parameters include Adam's second moments and batch-norm
// running variances, whose square roots must not be NaN for the comparison
// to mean much).
static inline struct itr_tensor *tu_random_tensor(const struct itr_program *p, const struct itr_type *t,
                                        const struct itr_dim_bindings *b, uint64_t salt, bool positive) {
    return positive ? tu_uniform_tensor(p, t, b, 11, salt, 0.25, 1) : tu_uniform_tensor(p, t, b, 11, salt, -2, 4);
}

// A model's input or parameter for agreement runs: floats uniform in
// [-0.5, 0.5) from rng stream (stream, salt).
static inline struct itr_tensor *tu_model_input(const struct itr_program *p, const struct itr_type *t,
                                                const struct itr_dim_bindings *b, uint64_t stream, uint64_t salt) {
    return tu_uniform_tensor(p, t, b, stream, salt, -0.5, 1);
}

static inline const struct itr_graph *tu_find_entry(const struct itr_program *p, const char *name) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY && strcmp(p->graphs[i]->name, name) == 0) return p->graphs[i];
    return NULL;
}

// Runs g in the given precision; a NULL-terminated-free array of outputs, or NULL (reported).
static inline struct itr_tensor **tu_run_entry(const struct itr_graph *g, struct itr_tensor *const *in, struct itr_tensor *const *params,
                               const int64_t *syms, bool f64) {
    const struct itr_program *p = g->prog;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) { b.bound[i] = true; b.value[i] = syms[i]; }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options opt = { .f64 = f64 };
    struct itr_tensor **out = calloc((size_t)g->n_outputs + 1, sizeof *out);
    if (!itr_ref_run(g, in, params, &b, &opt, out, &d)) {
        itr_diags_print(&d, stderr);
        free(out);
        out = NULL;
    }
    itr_diags_free(&d);
    itr_bindings_free(&b);
    return out;
}

static inline double tu_max_abs_diff(const struct itr_tensor *a, const struct itr_tensor *b) {
    double m = 0;
    for (int64_t i = 0; i < itr_tensor_numel(a); i++) {
        double x = fabs(itr_tensor_get(a, i) - itr_tensor_get(b, i));
        if (!(x <= m)) m = x;   // NaN wins
    }
    return m;
}

// Same bytes (shapes and dtypes already known equal): -0 against 0, or two
// NaNs with other payloads, differ.
static inline bool tu_bits_equal(const struct itr_tensor *a, const struct itr_tensor *b) {
    return itr_tensor_nbytes(a) == itr_tensor_nbytes(b) && memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

static inline bool tu_same_shape_and_dtype(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

// Binds every symbol of p: its default where that is small, else 3; the
// values are returned (caller frees) and set in *b (caller frees).
static inline int64_t *tu_bind_symbols(const struct itr_program *p, struct itr_dim_bindings *b) {
    int64_t *syms = calloc((size_t)p->n_symbols + 1, sizeof *syms);
    itr_bindings_init(b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        const struct itr_symbol *s = &p->symbols[i];
        syms[i] = s->has_default && s->default_value <= 64 ? s->default_value : 3;
        b->bound[i] = true;
        b->value[i] = syms[i];
    }
    return syms;
}

// One random tensor per parameter of p (salts salt0 + j; positive values,
// see tu_random_tensor), and one per input of entry g (salts salt0 + i).
static inline struct itr_tensor **tu_random_params(const struct itr_program *p, const struct itr_dim_bindings *b,
                                                   uint64_t salt0) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    for (int j = 0; t && j < p->n_params; j++) t[j] = tu_random_tensor(p, &p->params[j].type, b, salt0 + (uint64_t)j, true);
    return t;
}

// A model's parameters for agreement runs (tu_model_input from rng stream
// `stream`, salts salt0 + j), with the optimizer state at zero as `itr-run
// init` writes it.
static inline struct itr_tensor **tu_model_params(const struct itr_program *p, const struct itr_dim_bindings *b,
                                                  uint64_t stream, uint64_t salt0) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    for (int j = 0; t && j < p->n_params; j++) {
        t[j] = tu_model_input(p, &p->params[j].type, b, stream, salt0 + (uint64_t)j);
        if (strncmp(p->params[j].name, "opt.", 4) == 0 && t[j]) memset(t[j]->data, 0, itr_tensor_nbytes(t[j]));
    }
    return t;
}

static inline struct itr_tensor **tu_random_inputs(const struct itr_graph *g, const struct itr_dim_bindings *b,
                                                   uint64_t salt0) {
    struct itr_tensor **t = calloc((size_t)g->n_inputs + 1, sizeof *t);
    for (int i = 0; t && i < g->n_inputs; i++)
        t[i] = tu_random_tensor(g->prog, &g->values[g->inputs[i]].type, b, salt0 + (uint64_t)i, false);
    return t;
}

#endif
