// Running the entries of an IR test harness (tests/ir/*_harness.ir: one
// entry per module) against PyTorch fixtures, for the module and catalogue
// tests (tests/test_modules.c, test_catalogue_*.c) and their gradient checks
// (tests/test_gradcheck_modules.c, test_gradcheck_catalogue_*.c).
//
// A fixture directory `dir` (ending in '/') holds, for entry E of a harness
// whose files carry the prefix P ("" for the harness itself, "vsepp." for
// a model checked the same way):
//   <P><E>.in.<X>.npy      entry input X
//   <P><W>.npy             parameter W
//   <P><E>.out.<Y>.npy     PyTorch's float32 output Y (optional per output)
//   <P><E>.out64.<Y>.npy   PyTorch's float64 output Y on the same inputs (optional)
// Errors are scale-relative, max|a-b| / max|b| (models.md §7 item 14; mt_rel_err).
#ifndef ITR_TEST_FIXTURE_HARNESS_H
#define ITR_TEST_FIXTURE_HARNESS_H

#include <stdlib.h>

#include "tests/gradcheck.h"
#include "tests/modeltest.h"

// The tolerances of a harness against PyTorch. An independent float32
// implementation agrees with PyTorch to a few 1e-7 on these sizes; 1e-5
// leaves room for other summation orders. In f64 what is left is PyTorch's
// own float64 rounding and summation order (~1e-13 at most here): float
// literals keep their double value, so epsilons are exact.
#define FH_TOL_F32 1e-5
#define FH_TOL_F64 1e-12

// Parses an .ir file with models/ on the import path (harnesses live in
// tests/ir/ and import "modules/..."); NULL (reported) on errors.
static inline struct itr_program *fh_parse(const char *path, const char *const *overrides, int n_overrides) {
    const char *inc[] = { ITR_SOURCE_DIR "/models" };
    struct itr_parse_options opt = { .include_dirs = inc, .n_include_dirs = 1, .overrides = overrides,
                                     .n_overrides = n_overrides };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(path, &opt, &d);
    if (!p || itr_diags_has_errors(&d)) {
        diags_report("", &d);
        itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

// fh_parse of a harness and (params not NULL) every parameter from
// <dir><param>.npy (mt_fixture_params) into *params; NULL (failed) on errors.
static inline struct itr_program *fh_load(const char *path, const char *dir, struct itr_tensor ***params) {
    struct itr_program *p = fh_parse(path, NULL, 0);
    CHECK_MSG(p != NULL, "no harness %s", path);
    if (params) *params = p ? mt_fixture_params(p, dir, "", NULL, 0) : NULL;
    return p;
}

// Whether the fixture <dir><name>.npy exists (reference outputs are optional).
static inline bool fh_exists(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s.npy", dir, name);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

// Entry input <dir><prefix><entry>.in.<input>.npy; NULL (reported) when missing.
static inline struct itr_tensor *fh_entry_input(const char *dir, const char *prefix, const char *entry,
                                                const char *input) {
    char name[256];
    snprintf(name, sizeof name, "%s%s.in.%s", prefix, entry, input);
    return mt_fixture(dir, name);
}

// The parameters g reads, from <dir><prefix><param>.npy, indexed like p->params
// (the others NULL); false (reported) when one is missing.
static inline bool fh_graph_params(const struct itr_program *p, const struct itr_graph *g, const char *dir,
                                   const char *prefix, struct itr_tensor **params) {
    for (int v = 0; v < g->n_values; v++) {
        const struct itr_value *val = &g->values[v];
        if (val->kind != ITR_VALUE_PARAM || params[val->param]) continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, p->params[val->param].name);
        if (!(params[val->param] = mt_fixture(dir, name))) return false;
    }
    return true;
}

// The outputs of one entry run.
struct fh_run {
    const struct itr_graph *g;
    struct itr_tensor **out;
    int n_out;
};

static inline void fh_run_free(struct fh_run *r) {
    free_tensors(r->out, r->n_out);
    r->out = NULL;
}

// Runs entry of p on the reference interpreter (in f64 if f64): inputs from
// `given` where given[i] is set (given may be NULL), the rest and every
// parameter from the fixtures. False (reported) when a fixture is missing or
// the run fails.
static inline bool fh_run_entry(const char *dir, const struct itr_program *p, const char *prefix, const char *entry,
                                bool f64, struct itr_tensor *const *given, struct fh_run *r) {
    memset(r, 0, sizeof *r);
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    if (!g || g->kind != ITR_GRAPH_ENTRY) {
        fprintf(stderr, "no entry '%s'\n", entry);
        return false;
    }
    r->g = g;
    bool ok = true;
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    struct itr_tensor **params = calloc((size_t)p->n_params + 1, sizeof *params);
    for (int i = 0; i < g->n_inputs && ok; i++) {
        if (given && given[i]) continue;
        in[i] = fh_entry_input(dir, prefix, entry, g->values[g->inputs[i]].name);
        ok = in[i] != NULL;
    }
    ok = ok && fh_graph_params(p, g, dir, prefix, params);
    struct itr_tensor **args = calloc((size_t)g->n_inputs + 1, sizeof *args);
    for (int i = 0; i < g->n_inputs; i++) args[i] = given && given[i] ? given[i] : in[i];
    if (ok) {
        r->out = mt_run_graph_as(g, args, params, f64, "");
        r->n_out = g->n_outputs;
        ok = r->out != NULL;
    }
    free_tensors(in, g->n_inputs);
    free_tensors(params, p->n_params);
    free(args);
    return ok;
}

// Runs entry in both precisions, compares every output that has a
// reference file, prints the worst error of each precision and checks it
// against tol32 / tol64.
static inline void fh_check_entry(const char *dir, const struct itr_program *p, const char *prefix, const char *entry,
                                  double tol32, double tol64) {
    double worst[2] = { 0, 0 };
    for (int mode = 0; mode < 2; mode++) {
        struct fh_run r;
        if (!fh_run_entry(dir, p, prefix, entry, mode == 1, NULL, &r)) {
            FAIL_AT("entry '%s%s' did not run (%s)", prefix, entry, mode ? "f64" : "f32");
            worst[mode] = INFINITY;
            continue;
        }
        int compared = 0;
        for (int k = 0; k < r.n_out; k++) {
            char name[256];
            snprintf(name, sizeof name, "%s%s.%s.%s", prefix, entry, mode ? "out64" : "out", r.g->output_names[k]);
            if (!fh_exists(dir, name)) continue;
            struct itr_tensor *want = mt_fixture(dir, name);
            CHECK_MSG(want != NULL, "cannot read %s", name);
            if (!want) continue;
            CHECK_MSG(r.out[k]->dtype == (mode ? ITR_F64 : ITR_F32), "%s%s output %s has dtype %s", prefix, entry,
                      r.g->output_names[k], itr_dtype_name(r.out[k]->dtype));
            double e = mt_rel_err(r.out[k], want);
            if (!(e <= worst[mode])) worst[mode] = e;
            compared++;
            itr_tensor_free(want);
        }
        CHECK_MSG(compared > 0, "entry '%s%s' has no reference outputs", prefix, entry);
        fh_run_free(&r);
    }
    printf("  %-28s f32 %.3g  f64 %.3g\n", entry, worst[0], worst[1]);
    CHECK_MSG(worst[0] <= tol32, "%s%s: f32 error %.3g > %g", prefix, entry, worst[0], tol32);
    CHECK_MSG(worst[1] <= tol64, "%s%s: f64 error %.3g > %g", prefix, entry, worst[1], tol64);
}

// The harness verifies (ir/verify.c) without diagnostics to show.
static inline void fh_check_verifies(struct itr_program *p) {
    CHECK(p != NULL);
    if (!p) return;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_program_verify(p, &d));
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
}

// fh_check_entry of every entry of p; their number (0 without p, failed).
static inline int fh_check_every_entry(const char *dir, const struct itr_program *p, double tol32, double tol64) {
    if (!p) { FAIL_AT("no harness"); return 0; }
    int n = 0;
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        fh_check_entry(dir, p, "", g->name, tol32, tol64);
        n++;
    }
    return n;
}

// A test of one harness (tests/test_modules.c, test_catalogue_a.c) defines
// FH_HARNESS_DIR, the harness's fixture directory, before including this
// header, and gets the harness (its main parses it) and its runs.
#ifdef FH_HARNESS_DIR
static struct itr_program *harness;

// An entry of the harness on the fixtures, but for the inputs `given` sets (may be NULL).
static inline bool run_harness(const char *entry, bool f64, struct itr_tensor *const *given, struct fh_run *r) {
    return fh_run_entry(FH_HARNESS_DIR, harness, "", entry, f64, given, r);
}
#endif

// ------------------------------------------------------------ gradient checks

// Masks are switches, not data: the masked softmax adds (m - 1)·1e30, whose
// derivative in m is 1e30 and whose finite differences mean nothing.
static inline bool fh_is_mask(const char *name) { return strcmp(name, "mask") == 0; }

// Inputs of entry g: the fixtures <dir><g>.in.<X>, NULL where missing. With
// random_floats (for gradient checks) the float inputs but masks are
// instead seeded random f64 floats in [-1, 1) of the fixture's shape: the
// fixtures' float inputs hold padded, all-zero or huge rows, where finite
// differences would straddle kinks.
static inline struct itr_tensor **fh_entry_inputs(const struct itr_graph *g, const char *dir,
                                                  bool random_floats) {
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    uint64_t seed = gc_name_seed(g->name);
    for (int i = 0; in && i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        struct itr_tensor *fx = fh_entry_input(dir, "", g->name, v->name);
        if (!fx) continue;
        if (random_floats && itr_dtype_is_float(v->type.dtype) && !fh_is_mask(v->name)) {
            in[i] = gc_random(ITR_F64, fx->rank, fx->shape, -1, 1, 0, &seed);
            itr_tensor_free(fx);
        } else {
            in[i] = fx;
        }
    }
    return in;
}

// gc_check of entry g on fh_entry_inputs (random floats) and params, with
// respect to every float input but masks and every parameter g reads (o's
// wrt is set here; o->max_elems and the tolerances are the caller's).
// Fails a check when an input is missing, the check fails or checks nothing.
static inline bool fh_gc_entry(struct itr_program *p, struct itr_graph *g, const char *dir,
                               struct itr_tensor *const *params, struct gc_options *o, struct gc_result *r) {
    int n_in = g->n_inputs;   // gc_check adds inputs to g
    struct itr_tensor **in = fh_entry_inputs(g, dir, true);
    bool have = in != NULL;
    for (int i = 0; have && i < n_in; i++) have = in[i] != NULL;
    CHECK_MSG(have, "%s: missing fixture inputs", g->name);
    const char *wrt[64];
    int n_wrt = 0;
    for (int i = 0; i < n_in; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        if (itr_dtype_is_float(v->type.dtype) && !fh_is_mask(v->name)) wrt[n_wrt++] = v->name;
    }
    for (int v = 0; v < g->n_values && n_wrt < 64; v++)
        if (g->values[v].kind == ITR_VALUE_PARAM) wrt[n_wrt++] = g->values[v].name;
    o->wrt = wrt;
    o->n_wrt = n_wrt;
    memset(r, 0, sizeof *r);
    bool ok = have && gc_check(p, g->name, in, params, o, r);
    o->wrt = NULL;   // wrt is gone on return
    o->n_wrt = 0;
    CHECK_MSG(ok, "%s: %s", g->name, gc_describe(r));
    CHECK_MSG(r->n_checked > 0, "%s: nothing checked", g->name);
    gc_free_tensors(in, n_in);
    return ok;
}

// Random output seeds shaped like each float output of entry `name` (run
// once in f64 to learn the shapes; w[k] NULL for the others), w holding at
// least 16; zero at rows [b, t >= lengths[b]] when zero_padded and lengths.
static inline bool fh_output_seeds(struct itr_program *p, const char *name, struct itr_tensor *const *in,
                                   struct itr_tensor *const *params, const struct itr_tensor *lengths,
                                   bool zero_padded, struct itr_tensor **w) {
    const struct itr_graph *g = itr_program_find_graph(p, name);
    struct itr_tensor *out[16] = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options ro = { .f64 = true };
    bool ok = itr_ref_run(g, in, params, NULL, &ro, out, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    uint64_t seed = gc_name_seed(name) ^ 0x77;
    for (int k = 0; k < g->n_outputs; k++) {
        w[k] = NULL;
        if (!ok || !itr_dtype_is_float(out[k]->dtype)) continue;
        w[k] = gc_random(ITR_F64, out[k]->rank, out[k]->shape, -1, 1, 0, &seed);
        if (zero_padded && lengths && out[k]->rank >= 2) {
            int64_t B = out[k]->shape[0], L = out[k]->shape[1], inner = itr_tensor_numel(out[k]) / (B * L);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = (int64_t)itr_tensor_get(lengths, b); t < L; t++)
                    for (int64_t e = 0; e < inner; e++) itr_tensor_set(w[k], (b * L + t) * inner + e, 0.0);
        }
    }
    for (int k = 0; k < 16; k++) itr_tensor_free(out[k]);
    return ok;
}

// The adjoint of entry `name` in f64 with output seeds w[k] (per float
// output; NULL: that output is not seeded), differentiated with respect to
// every float input and every parameter it reads. grads[i] receives the
// gradient of input i (NULL if not a float input or not reached);
// *nonfinite counts non-finite elements in all gradients, parameters
// included. Adds the seeds as inputs of the entry: each entry once.
static inline bool fh_adjoint(struct itr_program *p, const char *name, struct itr_tensor *const *in,
                              struct itr_tensor *const *params, struct itr_tensor *const *w,
                              struct itr_tensor **grads, int *nonfinite) {
    struct itr_graph *g = itr_program_find_graph(p, name);
    if (!g) return false;
    int n_in = g->n_inputs, n_out = g->n_outputs;
    int32_t outs[16], seeds[16], wrt[64], gv[64];
    bool reached[64];
    struct itr_tensor *args[32];
    int ns = 0, nw = 0;
    for (int i = 0; i < n_in; i++) args[i] = in[i];
    for (int k = 0; k < n_out; k++) {
        if (!w[k]) continue;
        outs[ns] = g->outputs[k];
        args[n_in + ns] = w[k];
        seeds[ns++] = itr_graph_add_input(g, "seed", g->values[g->outputs[k]].type, ITR_NOLOC);
    }
    for (int i = 0; i < n_in; i++)
        if (itr_dtype_is_float(g->values[g->inputs[i]].type.dtype)) wrt[nw++] = g->inputs[i];
    int n_input_wrt = nw;
    for (int v = 0; v < g->n_values && nw < 64; v++)
        if (g->values[v].kind == ITR_VALUE_PARAM) wrt[nw++] = v;
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_vjp(g, outs, seeds, ns, wrt, nw, gv, reached, &d);
    int first = g->n_outputs, n_grads = 0;
    for (int j = 0; ok && j < nw; j++)
        if (reached[j]) itr_graph_add_output(g, "grad", gv[j]), n_grads++;
    ok = ok && itr_program_verify(p, &d);
    struct itr_tensor *res[96] = { 0 };
    struct itr_ref_options ro = { .f64 = true };
    ok = ok && itr_ref_run(g, args, params, NULL, &ro, res, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    *nonfinite = 0;
    for (int r = first; ok && r < first + n_grads; r++)
        for (int64_t e = 0; e < itr_tensor_numel(res[r]); e++) *nonfinite += !isfinite(itr_tensor_get(res[r], e));
    for (int i = 0, j = 0, r = first; i < n_in; i++) {
        grads[i] = NULL;
        if (j < n_input_wrt && wrt[j] == g->inputs[i]) {
            if (ok && reached[j]) {
                grads[i] = res[r];
                res[r++] = NULL;
            }
            j++;
        }
    }
    for (int k = 0; k < 96; k++) itr_tensor_free(res[k]);
    return ok;
}

// Counts the nonzero elements of dx [B, L, ...] at padded rows
// [b, t >= lens[b]] and at valid ones.
static inline void fh_count_padded_nonzero(const struct itr_tensor *dx, const int64_t *lens, int *padded_nonzero,
                                           int *valid_nonzero) {
    int64_t B = dx->shape[0], L = dx->shape[1], inner = itr_tensor_numel(dx) / (B * L);
    *padded_nonzero = *valid_nonzero = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t e = 0; e < inner; e++) {
                bool nz = itr_tensor_get(dx, (b * L + t) * inner + e) != 0.0;
                if (t >= lens[b]) *padded_nonzero += nz;
                else *valid_nonzero += nz;
            }
}

#endif
