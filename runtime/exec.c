// Running entry points on the reference interpreter (runtime/exec.h).
#include "runtime/exec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ref/ref.h"

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    return q;
}

// Appends with snprintf semantics; *w tracks the would-be length.
static void append(char *buf, size_t n, size_t *w, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t n, size_t *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*w < n ? buf + *w : NULL, *w < n ? n - *w : 0, fmt, ap);
    va_end(ap);
    if (k > 0) *w += (size_t)k;
}

static void format_inputs(const struct itr_program *p, const struct itr_graph *g, char *buf, size_t n) {
    size_t w = 0;
    if (n) buf[0] = 0;
    if (g->n_inputs == 0) { append(buf, n, &w, "(none)"); return; }
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        char t[256];
        itr_type_format(p, &v->type, t, sizeof t);
        append(buf, n, &w, "%s%s: %s", i ? ", " : "", v->name, t);
    }
}

void itr_exec_format_signature(const struct itr_program *p, const struct itr_graph *g, char *buf, size_t n) {
    size_t w = 0;
    if (n) buf[0] = 0;
    append(buf, n, &w, "%s(", g->name);
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        char t[256];
        itr_type_format(p, &v->type, t, sizeof t);
        append(buf, n, &w, "%s%s: %s", i ? ", " : "", v->name, t);
    }
    append(buf, n, &w, ") -> (");
    for (int i = 0; i < g->n_outputs; i++) {
        char t[256];
        itr_type_format(p, &g->values[g->outputs[i]].type, t, sizeof t);
        append(buf, n, &w, "%s%s: %s", i ? ", " : "", g->output_names[i], t);
    }
    append(buf, n, &w, ")");
}

const struct itr_graph *itr_exec_find_entry(const struct itr_program *p, const char *name, struct itr_diags *d) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY && strcmp(p->graphs[i]->name, name) == 0) return p->graphs[i];
    char list[1024];
    size_t w = 0;
    list[0] = 0;
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) append(list, sizeof list, &w, "%s%s", w ? ", " : "", p->graphs[i]->name);
    itr_diag_error(d, ITR_NOLOC, "model '%s' has no entry point '%s'; its entry points are: %s",
                   p->name ? p->name : "?", name, w ? list : "(none)");
    return NULL;
}

bool itr_exec_bind_dim_arg(struct itr_dim_bindings *b, const struct itr_program *p, const char *arg,
                           struct itr_diags *d) {
    return itr_bindings_set_arg(b, p, arg, d);
}

static struct itr_loc file_loc(const char *what) { return (struct itr_loc){ what, 0, 0 }; }

void itr_exec_warn_unknown_weights(const struct itr_program *p, const struct itr_tensor_set *weights,
                                   const char *weights_what, struct itr_diags *d) {
    const char *wn = weights_what ? weights_what : "weights";
    for (int k = 0; weights && k < weights->n; k++)
        if (itr_program_find_param(p, weights->items[k].name) < 0)
            itr_diag_warning(d, file_loc(wn), "tensor '%s' is not a parameter of model '%s' (ignored)",
                             weights->items[k].name, p->name ? p->name : "?");
}

bool itr_exec_check_params(const struct itr_program *p, const struct itr_graph *g, struct itr_tensor *const *slots,
                           bool have_weights, struct itr_dim_bindings *dims, bool allow_f64,
                           const char *weights_what, struct itr_diags *d) {
    const char *wn = weights_what ? weights_what : "weights";
    int used = 0;
    for (int i = 0; i < g->n_values; i++) used += g->values[i].kind == ITR_VALUE_PARAM;
    if (used && !have_weights) {
        itr_diag_error(d, ITR_NOLOC, "entry '%s' uses %d parameter%s; give %s with --weights FILE "
                       "('itr-run PLAN init' writes a freshly initialised set)", g->name, used, used == 1 ? "" : "s",
                       used == 1 ? "it" : "them");
        return false;
    }
    bool ok = true;
    for (int i = 0; i < g->n_values; i++) {
        const struct itr_value *v = &g->values[i];
        if (v->kind != ITR_VALUE_PARAM) continue;
        const struct itr_param *pp = &p->params[v->param];
        const struct itr_tensor *t = slots[v->param];
        if (!t) {
            char type[256];
            itr_type_format(p, &pp->type, type, sizeof type);
            itr_diag_error(d, file_loc(wn), "no tensor '%s' (parameter %s of entry '%s')", pp->name, type, g->name);
            ok = false;
            continue;
        }
        char what[512];
        snprintf(what, sizeof what, "tensor '%s'", pp->name);
        // Exact dtype (f64 for f32 only in f64 runs): a checkpoint of
        // another precision is another model.
        struct itr_diags tmp;
        itr_diags_init(&tmp);
        bool bound = itr_bind_tensor(dims, p, &pp->type, t, what, allow_f64, &tmp);
        for (int k = 0; k < tmp.n; k++)
            itr_diag_error(d, file_loc(wn), "%s", tmp.items[k].msg);
        itr_diags_free(&tmp);
        if (!bound) ok = false;
    }
    return ok;
}

bool itr_exec_match_weights(const struct itr_program *p, const struct itr_graph *g,
                            const struct itr_tensor_set *weights, struct itr_dim_bindings *dims, bool allow_f64,
                            const char *weights_what, struct itr_tensor **params, struct itr_diags *d) {
    for (int j = 0; j < p->n_params; j++) params[j] = NULL;
    // The "give them with --weights" error comes before any warning about the set.
    if (!weights) return itr_exec_check_params(p, g, params, false, dims, allow_f64, weights_what, d);
    itr_exec_warn_unknown_weights(p, weights, weights_what, d);
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == ITR_VALUE_PARAM)
            params[g->values[i].param] = itr_tensor_set_get(weights, p->params[g->values[i].param].name);
    if (itr_exec_check_params(p, g, params, true, dims, allow_f64, weights_what, d)) return true;
    for (int j = 0; j < p->n_params; j++) params[j] = NULL;
    return false;
}

bool itr_exec_match_inputs(const struct itr_program *p, const struct itr_graph *g,
                           const struct itr_tensor_set *inputs, struct itr_tensor **in, struct itr_diags *d) {
    bool ok = true;
    char sig[2048];
    format_inputs(p, g, sig, sizeof sig);

    // Names first: every given input must exist, every input must be given.
    if (inputs)
        for (int k = 0; k < inputs->n; k++) {
            bool found = false;
            for (int i = 0; i < g->n_inputs && !found; i++)
                found = strcmp(g->values[g->inputs[i]].name, inputs->items[k].name) == 0;
            if (!found) {
                itr_diag_error(d, ITR_NOLOC, "entry '%s' has no input '%s'; its inputs are: %s", g->name,
                               inputs->items[k].name, sig);
                ok = false;
            }
        }
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        in[i] = inputs ? itr_tensor_set_get(inputs, v->name) : NULL;
        if (!in[i]) {
            char t[256];
            itr_type_format(p, &v->type, t, sizeof t);
            itr_diag_error(d, ITR_NOLOC, "entry '%s' needs input '%s' (%s), which was not given; its inputs are: %s",
                           g->name, v->name, t, sig);
            ok = false;
        }
    }
    return ok;
}

bool itr_exec_bind_inputs(const struct itr_program *p, const struct itr_graph *g, struct itr_tensor *const *in,
                          struct itr_dim_bindings *dims, bool allow_f64, struct itr_diags *d) {
    bool ok = true;
    for (int i = 0; i < g->n_inputs && ok; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        char what[512];
        snprintf(what, sizeof what, "input '%s'", v->name);
        if (!itr_bind_tensor(dims, p, &v->type, in[i], what, allow_f64, d)) ok = false;
    }
    return ok;
}

bool itr_exec_run(const struct itr_program *p, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                  const struct itr_tensor_set *weights, struct itr_dim_bindings *dims,
                  const struct itr_exec_options *opt, struct itr_tensor_set *outputs, struct itr_diags *d) {
    bool f64 = opt && opt->f64;
    struct itr_tensor **in = xcalloc((size_t)g->n_inputs, sizeof *in);
    bool ok = itr_exec_match_inputs(p, g, inputs, in, d);
    struct itr_tensor **params = xcalloc((size_t)p->n_params, sizeof *params);
    if (ok) ok = itr_exec_match_weights(p, g, weights, dims, f64, opt ? opt->weights_what : NULL, params, d);
    if (ok) ok = itr_exec_bind_inputs(p, g, in, dims, f64, d);

    struct itr_tensor **outs = xcalloc((size_t)g->n_outputs, sizeof *outs);
    if (ok) {
        itr_bind_defaults(dims, p);
        struct itr_ref_options ro = { .f64 = f64 };
        ok = itr_ref_run(g, in, params, dims, &ro, outs, d);
    }
    if (ok)
        for (int k = 0; k < g->n_outputs; k++) itr_tensor_set_put(outputs, g->output_names[k], outs[k]);
    free(outs);
    free(params);
    free(in);
    return ok;
}
