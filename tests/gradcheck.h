// Finite-difference gradient checks for any graph of the IR (docs/autodiff.md,
// "Checking gradients"). Header-only, so every test executable can include it.
//
//   struct gc_options o = gc_defaults();            // tolerances, wrt = everything
//   struct gc_result r;
//   bool ok = gc_check(prog, "forward", inputs, params, &o, &r);
//   CHECK_MSG(ok, "%s", gc_describe(&r));
//
// The checker turns the graph's float outputs y_k into one scalar loss
//
//   L = sum_k sum(y_k * w_k),   w_k ~ U[-1, 1) fixed by o.seed,
//
// differentiates it with itr_vjp with respect to the chosen inputs and
// params, and compares every (or a sample of every) gradient element with a
// central difference of L computed by the reference interpreter in f64:
//
//   fd = (L(x + h) - L(x - h)) / (2h),   h = o.step * max(1, |x|)
//   error = |ad - fd| / max(1, |fd|) <= o.tol   (default 1e-6)
//
// With o.f32_tol >= 0 it also runs the same gradient graph in f32 and
// requires |g32 - g64| / max(1, |g64|) <= o.f32_tol (default 1e-4).
// Values the loss does not depend on (reached = false) must have a zero
// finite difference. Inputs must keep away from kinks (relu at 0, ties in
// max) by more than the step: the checker cannot tell a kink from a bug.
//
// gc_check appends its loss, weights and gradients to the graph, so each
// program is checked once. It records the ops whose gradients it checked
// (on a path from a differentiated value to the loss) for gc_op_covered.
#ifndef ITR_TESTS_GRADCHECK_H
#define ITR_TESTS_GRADCHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ref/ref.h"
#include "compiler/autodiff.h"
#include "ir/bind.h"
#include "ir/text.h"

#define GC_API static __attribute__((unused))

struct gc_options {
    uint64_t seed;                  // random weights of the loss
    double step;                    // relative finite-difference step (1e-6)
    double tol;                     // f64 tolerance (1e-6)
    double f32_tol;                 // f32-vs-f64 tolerance (1e-4); < 0 skips the f32 run
    int max_elems;                  // elements checked per differentiated tensor (0 = all)
    const char *const *wrt;         // names of graph inputs or params to differentiate;
    int n_wrt;                      //   n_wrt = 0: every float input and every param the graph uses
    struct itr_dim_bindings *dims;  // symbol values the inputs do not give (may be NULL)
};

struct gc_result {
    bool ok;
    int n_checked;                  // gradient elements compared with finite differences
    double worst;                   // worst f64 error, as defined above
    char worst_at[256];             // "x[1, 2]: ad 0.25 fd 0.2500001"
    double worst_f32;
    char worst_f32_at[256];
    char unreached[256];            // wrt names with reached = false (comma separated)
    char error[2048];               // why the check could not run, or what failed
};

GC_API struct gc_options gc_defaults(void) {
    struct gc_options o;
    memset(&o, 0, sizeof o);
    o.seed = 0x5eedULL;
    o.step = 1e-6;
    o.tol = 1e-6;
    o.f32_tol = 1e-4;
    return o;
}

static bool gc_covered_[ITR_OP_COUNT];

// Whether a gc_check of this process has checked the gradient of op.
GC_API bool gc_op_covered(enum itr_op op) { return (unsigned)op < ITR_OP_COUNT && gc_covered_[op]; }

// ------------------------------------------------------------ small tools

static uint64_t gc_next_(uint64_t *s) {   // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

GC_API double gc_uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * (double)(gc_next_(s) >> 11) * (1.0 / 9007199254740992.0);
}

// A seed from a name (FNV-1a), so that each graph checked draws its own inputs.
GC_API uint64_t gc_name_seed(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// A tensor of the given shape: floats uniform in [lo, hi) (kept at least
// `gap` away from 0 when gap > 0, for ops with a kink there), integers in
// [lo, hi), bools 0/1.
GC_API struct itr_tensor *gc_random(enum itr_dtype dt, int rank, const int64_t *shape, double lo, double hi,
                                    double gap, uint64_t *seed) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < itr_tensor_numel(t); i++) {
        double v;
        if (dt == ITR_BOOL) v = (double)(gc_next_(seed) & 1);
        else if (itr_dtype_is_int(dt)) v = floor(gc_uniform(seed, lo, hi));
        else {
            v = gc_uniform(seed, lo, hi);
            if (gap > 0 && fabs(v) < gap) v = v < 0 ? -gap - fabs(v) : gap + v;
        }
        itr_tensor_set(t, i, v);
    }
    return t;
}

GC_API struct itr_tensor *gc_tensor(enum itr_dtype dt, int rank, const int64_t *shape, const double *vals) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    if (t && vals)
        for (int64_t i = 0; i < itr_tensor_numel(t); i++) itr_tensor_set(t, i, vals[i]);
    return t;
}

// Parses .ir text; NULL after printing the diagnostics.
GC_API struct itr_program *gc_parse(const char *name, const char *text) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_parse_options po;
    memset(&po, 0, sizeof po);
    struct itr_program *p = itr_parse_string(name, text, strlen(text), &po, &d);
    if (!p || itr_diags_has_errors(&d)) {
        itr_diags_print(&d, stderr);
        itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

// Random tensors for every input of graph `graph` (floats in [lo, hi) with
// `gap` as in gc_random; integers in [0, 3); bools 0/1), symbols taken from
// dims (may be NULL: then every symbol must have a default). Returns a
// malloc'd array of g->n_inputs tensors, or NULL.
GC_API struct itr_tensor **gc_random_inputs(struct itr_program *p, const char *graph, struct itr_dim_bindings *dims,
                                            double lo, double hi, double gap, uint64_t *seed) {
    struct itr_graph *g = itr_program_find_graph(p, graph);
    if (!g) return NULL;
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    struct itr_dim_bindings own;
    if (!dims) { itr_bindings_init(&own, p); itr_bind_defaults(&own, p); }
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = in != NULL;
    for (int i = 0; ok && i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        int64_t shape[ITR_MAX_RANK];
        ok = itr_eval_shape(dims ? dims : &own, p, &v->type, shape, v->name, &d);
        if (ok) {
            bool fl = itr_dtype_is_float(v->type.dtype);
            in[i] = gc_random(v->type.dtype, v->type.rank, shape, fl ? lo : 0, fl ? hi : 3, gap, seed);
            ok = in[i] != NULL;
        }
    }
    if (!ok) {
        itr_diags_print(&d, stderr);
        for (int i = 0; in && i < g->n_inputs; i++) itr_tensor_free(in[i]);
        free(in);
        in = NULL;
    }
    itr_diags_free(&d);
    if (!dims) itr_bindings_free(&own);
    return in;
}

// Random tensors for every param of the program whose type evaluates with
// dims (NULL entries for the others), uniform in [lo, hi).
GC_API struct itr_tensor **gc_random_params(struct itr_program *p, struct itr_dim_bindings *dims, double lo,
                                            double hi, uint64_t *seed) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    struct itr_diags d;
    itr_diags_init(&d);
    for (int i = 0; t && i < p->n_params; i++) {
        int64_t shape[ITR_MAX_RANK];
        if (itr_eval_shape(dims, p, &p->params[i].type, shape, p->params[i].name, &d))
            t[i] = gc_random(p->params[i].type.dtype, p->params[i].type.rank, shape, lo, hi, 0, seed);
    }
    itr_diags_free(&d);
    return t;
}

GC_API void gc_free_tensors(struct itr_tensor **t, int n) {
    for (int i = 0; t && i < n; i++) itr_tensor_free(t[i]);
    free(t);
}

GC_API const char *gc_describe(const struct gc_result *r) {
    static char buf[3072];
    snprintf(buf, sizeof buf, "%s; %d elements, worst f64 error %.3g at %s, worst f32 error %.3g at %s%s%s",
             r->error[0] ? r->error : (r->ok ? "ok" : "failed"), r->n_checked, r->worst, r->worst_at,
             r->worst_f32, r->worst_f32_at, r->unreached[0] ? "; unreached: " : "", r->unreached);
    return buf;
}

static void gc_fail_(struct gc_result *r, struct itr_diags *d, const char *what) {
    char *s = d ? itr_diags_summary(d) : NULL;
    snprintf(r->error, sizeof r->error, "%s%s%s", what, s && *s ? ": " : "", s ? s : "");
    free(s);
    r->ok = false;
}

static void gc_index_str_(const struct itr_tensor *t, int64_t e, char *buf, size_t n) {
    int64_t idx[ITR_MAX_RANK];
    for (int i = t->rank - 1; i >= 0; i--) {
        idx[i] = t->shape[i] ? e % t->shape[i] : 0;
        e = t->shape[i] ? e / t->shape[i] : 0;
    }
    size_t w = 0;
    w += (size_t)snprintf(buf + w, n - w, "[");
    for (int i = 0; i < t->rank && w < n; i++)
        w += (size_t)snprintf(buf + w, n - w, "%s%lld", i ? ", " : "", (long long)idx[i]);
    if (w < n) snprintf(buf + w, n - w, "]");
}

static struct itr_tensor *gc_as_(const struct itr_tensor *t, enum itr_dtype dt) {
    return t->dtype == dt ? itr_tensor_clone(t) : itr_tensor_cast(t, dt);
}

// Runs g, returns the scalar at output index `loss` and keeps outputs in outs
// (caller frees) when outs != NULL.
static bool gc_run_(struct itr_graph *g, struct itr_tensor **in, struct itr_tensor **params,
                    struct itr_dim_bindings *dims, bool f64, int loss, double *L, struct itr_tensor **outs,
                    struct itr_diags *d) {
    struct itr_tensor **o = calloc((size_t)g->n_outputs + 1, sizeof *o);
    if (!o) return false;
#ifdef GRADCHECK_RUN
    // tests/test_gradcheck_llvm.c: every run (the gradient graph and each
    // finite-difference probe) on a compiled backend instead
    bool ok = GRADCHECK_RUN(g, in, params, dims, f64, o, d);
#else
    struct itr_ref_options ro = { f64 };
    bool ok = itr_ref_run(g, in, params, dims, &ro, o, d);
#endif
    if (ok && L) *L = itr_tensor_get(o[loss], 0);
    for (int k = 0; k < g->n_outputs; k++) {
        if (ok && outs) outs[k] = o[k];
        else itr_tensor_free(o[k]);
    }
    free(o);
    return ok;
}

// Marks the ops of the original graph's nodes (0..nn) on a path from a wrt
// value to the loss, i.e. whose gradient rules this check exercised.
static void gc_mark_coverage_(const struct itr_graph *g, int nn, int nv, const int32_t *wrt, int n_wrt,
                              int32_t loss) {
    bool *f = calloc((size_t)g->n_values + 1, 1), *b = calloc((size_t)g->n_values + 1, 1);
    if (!f || !b) { free(f); free(b); return; }
    for (int j = 0; j < n_wrt; j++) f[wrt[j]] = true;
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        const struct itr_op_info *info = itr_op_info(n->op);
        bool any = false;
        for (int k = 0; k < n->n_inputs; k++)
            any |= f[n->inputs[k]] && info->nondiff != ITR_NONDIFF_ALL && !(k < 32 && (info->nondiff >> k) & 1u);
        for (int k = 0; any && k < n->n_outputs; k++) f[n->outputs[k]] = itr_dtype_is_float(g->values[n->outputs[k]].type.dtype);
    }
    b[loss] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const struct itr_node *n = &g->nodes[i];
        bool any = false;
        for (int k = 0; k < n->n_outputs; k++) any |= b[n->outputs[k]];
        for (int k = 0; any && k < n->n_inputs; k++) b[n->inputs[k]] = true;
    }
    for (int i = 0; i < nn; i++) {
        const struct itr_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] < nv && f[n->outputs[k]] && b[n->outputs[k]]) gc_covered_[n->op] = true;
    }
    free(f);
    free(b);
}

// ------------------------------------------------------------ the check

GC_API bool gc_check(struct itr_program *p, const char *graph, struct itr_tensor *const *inputs,
                     struct itr_tensor *const *params, const struct gc_options *opt, struct gc_result *r) {
    struct gc_options o = opt ? *opt : gc_defaults();
    memset(r, 0, sizeof *r);
    snprintf(r->worst_at, sizeof r->worst_at, "-");
    snprintf(r->worst_f32_at, sizeof r->worst_f32_at, "-");
    struct itr_graph *g = itr_program_find_graph(p, graph);
    if (!g) { snprintf(r->error, sizeof r->error, "no graph '%s'", graph); return false; }
    struct itr_diags d;
    itr_diags_init(&d);
    const int n_in0 = g->n_inputs, n_out0 = g->n_outputs, nn0 = g->n_nodes;
    uint64_t seed = o.seed;

    // Working copies: f64 for everything float (perturbed in place), the rest as given.
    int np = p->n_params;
    struct itr_tensor **in64 = calloc((size_t)n_in0 + (size_t)n_out0 + 1, sizeof *in64);
    struct itr_tensor **par64 = calloc((size_t)np + 1, sizeof *par64);
    struct itr_tensor **outs0 = calloc((size_t)n_out0 + 1, sizeof *outs0);
    struct itr_tensor **res64 = NULL, **res32 = NULL, **in32 = NULL, **par32 = NULL;
    int32_t *wrt = NULL, *grads = NULL;
    bool *reached = NULL;
    const char **wrt_names = NULL;
    int n_wrt = 0, n_wk = 0;
    bool ok = in64 && par64 && outs0;
    for (int i = 0; ok && i < n_in0; i++) {
        enum itr_dtype dt = g->values[g->inputs[i]].type.dtype;
        if (!inputs[i]) { snprintf(r->error, sizeof r->error, "input %d is NULL", i); ok = false; break; }
        in64[i] = itr_dtype_is_float(dt) ? gc_as_(inputs[i], ITR_F64) : itr_tensor_clone(inputs[i]);
    }
    for (int j = 0; ok && j < np; j++)
        if (params && params[j])
            par64[j] = itr_dtype_is_float(params[j]->dtype) ? gc_as_(params[j], ITR_F64) : itr_tensor_clone(params[j]);
    if (ok && !gc_run_(g, in64, par64, o.dims, true, 0, NULL, outs0, &d)) { gc_fail_(r, &d, "the forward run failed"); ok = false; }

    // The loss: sum_k sum(y_k * w_k) in f64.
    int32_t loss = -1;
    for (int k = 0; ok && k < n_out0; k++) {
        int32_t y = g->outputs[k];
        struct itr_type yt = g->values[y].type;
        if (!itr_dtype_is_float(yt.dtype)) continue;
        char name[32];
        snprintf(name, sizeof name, "__gc_w%d", k);
        int32_t w = itr_graph_add_input(g, name, yt, ITR_NOLOC);
        in64[n_in0 + n_wk++] = gc_random(ITR_F64, outs0[k]->rank, outs0[k]->shape, -1, 1, 0, &seed);
        int32_t t, s, s64;
        ok = w >= 0 && itr_graph_add_node(g, ITR_OP_MUL, (int32_t[]){ y, w }, 2, NULL, ITR_NOLOC, NULL, &t, &d) &&
             itr_graph_add_node(g, ITR_OP_SUM, &t, 1, NULL, ITR_NOLOC, NULL, &s, &d);
        if (ok && yt.dtype != ITR_F64) {
            struct itr_attr *ca = itr_attrs_default(p, ITR_OP_CAST);
            ca[itr_op_attr_index(ITR_OP_CAST, "dtype")] = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = ITR_F64 };
            ok = itr_graph_add_node(g, ITR_OP_CAST, &s, 1, ca, ITR_NOLOC, NULL, &s64, &d);
            s = s64;
        }
        if (ok && loss >= 0) ok = itr_graph_add_node(g, ITR_OP_ADD, (int32_t[]){ loss, s }, 2, NULL, ITR_NOLOC, NULL, &s, &d);
        if (ok) loss = s;
        if (!ok) gc_fail_(r, &d, "building the loss failed");
    }
    if (ok && loss < 0) { snprintf(r->error, sizeof r->error, "graph '%s' has no float output", graph); ok = false; }

    // What to differentiate.
    int cap = (o.n_wrt ? o.n_wrt : g->n_values) + 1;
    wrt = calloc((size_t)cap, sizeof *wrt);
    grads = calloc((size_t)cap, sizeof *grads);
    reached = calloc((size_t)cap, sizeof *reached);
    wrt_names = calloc((size_t)cap, sizeof *wrt_names);
    if (ok && (!wrt || !grads || !reached || !wrt_names)) ok = false;
    if (ok && o.n_wrt) {
        for (int j = 0; ok && j < o.n_wrt; j++) {
            int32_t v = itr_graph_find_value(g, o.wrt[j]);
            if (v < 0 || g->values[v].kind == ITR_VALUE_NODE) {
                int32_t pi = itr_program_find_param(p, o.wrt[j]);
                v = pi >= 0 ? itr_graph_use_param(g, pi) : -1;
            }
            if (v < 0) { snprintf(r->error, sizeof r->error, "no input or param named '%s'", o.wrt[j]); ok = false; }
            else { wrt[n_wrt] = v; wrt_names[n_wrt++] = o.wrt[j]; }
        }
    } else if (ok) {
        for (int v = 0; v < g->n_values; v++) {
            const struct itr_value *val = &g->values[v];
            bool in0 = false;
            for (int i = 0; i < n_in0; i++) in0 |= g->inputs[i] == v;
            if (itr_dtype_is_float(val->type.dtype) && (in0 || val->kind == ITR_VALUE_PARAM)) {
                wrt[n_wrt] = v;
                wrt_names[n_wrt++] = val->name;
            }
        }
    }
    // The tensor behind each wrt value, and every wrt must be float.
    struct itr_tensor **wt = calloc((size_t)cap, sizeof *wt);
    if (!wt) ok = false;
    for (int j = 0; ok && j < n_wrt; j++) {
        const struct itr_value *val = &g->values[wrt[j]];
        if (!itr_dtype_is_float(val->type.dtype)) {
            snprintf(r->error, sizeof r->error, "'%s' is not a float value", wrt_names[j]);
            ok = false;
        } else if (val->kind == ITR_VALUE_PARAM) {
            wt[j] = par64[val->param];
            if (!wt[j]) { snprintf(r->error, sizeof r->error, "param '%s' has no tensor", wrt_names[j]); ok = false; }
        } else {
            for (int i = 0; i < n_in0; i++)
                if (g->inputs[i] == wrt[j]) wt[j] = in64[i];
        }
    }

    int32_t seed_v = -1;
    if (ok) {
        struct itr_attr *fa = itr_attrs_default(p, ITR_OP_FULL);
        fa[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.0 };
        fa[itr_op_attr_index(ITR_OP_FULL, "dtype")] = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = ITR_F64 };
        ok = itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, fa, ITR_NOLOC, NULL, &seed_v, &d);
        if (!ok) gc_fail_(r, &d, "building the seed failed");
    }
    const int nv_fwd = g->n_values;
    if (ok && !itr_vjp(g, &loss, &seed_v, 1, wrt, n_wrt, grads, reached, &d)) { gc_fail_(r, &d, "itr_vjp failed"); ok = false; }
    if (ok) {
        itr_graph_add_output(g, "__gc_loss", loss);
        for (int j = 0; j < n_wrt; j++) {
            char name[32];
            snprintf(name, sizeof name, "__gc_grad%d", j);
            if (reached[j]) itr_graph_add_output(g, name, grads[j]);
            else {
                size_t w = strlen(r->unreached);
                snprintf(r->unreached + w, sizeof r->unreached - w, "%s%s", w ? ", " : "", wrt_names[j]);
            }
        }
        if (!itr_program_verify(p, &d)) { gc_fail_(r, &d, "the gradient graph does not verify"); ok = false; }
    }

    // f64 gradients, then central differences element by element.
    const int loss_out = n_out0;
    res64 = calloc((size_t)g->n_outputs + 1, sizeof *res64);
    double L0 = 0;
    if (ok && !gc_run_(g, in64, par64, o.dims, true, loss_out, &L0, res64, &d)) { gc_fail_(r, &d, "the gradient run failed"); ok = false; }
    bool pass = ok;
    for (int j = 0, out_k = loss_out + 1; ok && j < n_wrt; j++) {
        struct itr_tensor *x = wt[j], *gr = reached[j] ? res64[out_k++] : NULL;
        int64_t n = itr_tensor_numel(x);
        int64_t m = o.max_elems > 0 && o.max_elems < n ? o.max_elems : n;
        for (int64_t s = 0; ok && s < m; s++) {
            int64_t e = m == n ? s : (s * n) / m;
            double x0 = itr_tensor_get(x, e), h = o.step * fmax(1.0, fabs(x0)), Lp = 0, Lm = 0;
            itr_tensor_set(x, e, x0 + h);
            double xp = itr_tensor_get(x, e);
            ok = gc_run_(g, in64, par64, o.dims, true, loss_out, &Lp, NULL, &d);
            itr_tensor_set(x, e, x0 - h);
            double xm = itr_tensor_get(x, e);
            ok = ok && gc_run_(g, in64, par64, o.dims, true, loss_out, &Lm, NULL, &d);
            itr_tensor_set(x, e, x0);
            if (!ok) { gc_fail_(r, &d, "a finite-difference run failed"); break; }
            double fd = (Lp - Lm) / (xp - xm), ad = gr ? itr_tensor_get(gr, e) : 0.0;
            double err = fabs(ad - fd) / fmax(1.0, fabs(fd));
            if (r->n_checked == 0 || !(err <= r->worst)) {
                r->worst = isnan(err) ? INFINITY : err;
                char idx[96];
                gc_index_str_(x, e, idx, sizeof idx);
                snprintf(r->worst_at, sizeof r->worst_at, "%s%s: ad %.10g fd %.10g", wrt_names[j], idx, ad, fd);
            }
            if (!(err <= o.tol)) pass = false;
            r->n_checked++;
        }
    }

    // The same gradient graph in f32.
    if (ok && o.f32_tol >= 0) {
        in32 = calloc((size_t)n_in0 + (size_t)n_out0 + 1, sizeof *in32);
        par32 = calloc((size_t)np + 1, sizeof *par32);
        res32 = calloc((size_t)g->n_outputs + 1, sizeof *res32);
        for (int i = 0; i < g->n_inputs && in32; i++) {
            enum itr_dtype dt = g->values[g->inputs[i]].type.dtype;
            in32[i] = gc_as_(in64[i], itr_dtype_is_float(dt) ? dt : in64[i]->dtype);
        }
        for (int j = 0; j < np && par32; j++)
            if (par64[j]) par32[j] = gc_as_(par64[j], p->params[j].type.dtype);
        double L32;
        if (!in32 || !par32 || !res32 || !gc_run_(g, in32, par32, o.dims, false, loss_out, &L32, res32, &d)) {
            gc_fail_(r, &d, "the f32 gradient run failed");
            ok = false;
        }
        for (int j = 0, out_k = loss_out + 1; ok && j < n_wrt; j++) {
            if (!reached[j]) continue;
            struct itr_tensor *a = res32[out_k], *b = res64[out_k];
            out_k++;
            for (int64_t e = 0; e < itr_tensor_numel(b); e++) {
                double g32 = itr_tensor_get(a, e), g64 = itr_tensor_get(b, e);
                double err = fabs(g32 - g64) / fmax(1.0, fabs(g64));
                if (!(err <= r->worst_f32)) {
                    r->worst_f32 = isnan(err) ? INFINITY : err;
                    char idx[96];
                    gc_index_str_(b, e, idx, sizeof idx);
                    snprintf(r->worst_f32_at, sizeof r->worst_f32_at, "%s%s: f32 %.8g f64 %.10g", wrt_names[j], idx,
                             g32, g64);
                }
                if (!(err <= o.f32_tol)) pass = false;
            }
        }
    }
    r->ok = ok && pass;
    if (r->ok) gc_mark_coverage_(g, nn0, nv_fwd, wrt, n_wrt, loss);
    if (ok && !pass)
        snprintf(r->error, sizeof r->error, "gradients of '%s' disagree (tolerance %g, f32 %g)", graph, o.tol, o.f32_tol);

    if (in64) for (int i = 0; i < n_in0 + n_out0; i++) itr_tensor_free(in64[i]);
    if (in32) for (int i = 0; i < n_in0 + n_out0; i++) itr_tensor_free(in32[i]);
    gc_free_tensors(par64, np);
    gc_free_tensors(par32, np);
    gc_free_tensors(outs0, n_out0);
    gc_free_tensors(res64, g->n_outputs);
    gc_free_tensors(res32, g->n_outputs);
    free(in64);
    free(in32);
    free(wt);
    free(wrt);
    free(grads);
    free(reached);
    free(wrt_names);
    itr_diags_free(&d);
    return r->ok;
}

#endif
