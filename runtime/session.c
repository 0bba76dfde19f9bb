// Sessions (runtime/session.h).
#include "runtime/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/exec.h"

struct itr_session {
    const struct itr_program *p;
    const struct itr_backend *be;
    struct itr_session_options opt;
    struct itr_tensor **params;           // [p->n_params], in the backend's memory
    struct itr_backend_exec **execs;      // [p->n_graphs], prepared on first run
    bool has_weights;
    char *what;                           // names the loaded set in messages
    // Numbers the parameters' values (itr_run_options.params_version): a
    // new number, unique in the process, whenever a slot is set or a run may
    // write one, so a backend never keeps what it derived from old weights.
    uint64_t params_version;
};

static uint64_t new_params_version(void) {
    static uint64_t last;
    return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    return q;
}

struct itr_session *itr_session_new(const struct itr_program *p, const char *backend,
                                    const struct itr_session_options *o, struct itr_diags *d) {
    const struct itr_backend *be = itr_backend_find(backend ? backend : itr_backend_default_for(p), d);
    if (!be || (be->open && !be->open(d))) return NULL;
    struct itr_session *s = xcalloc(1, sizeof *s);
    s->p = p;
    s->be = be;
    if (o) s->opt = *o;
    s->params = xcalloc((size_t)p->n_params, sizeof *s->params);
    s->execs = xcalloc((size_t)p->n_graphs, sizeof *s->execs);
    s->params_version = new_params_version();
    return s;
}

void itr_session_free(struct itr_session *s) {
    if (!s) return;
    s->be->sync();
    for (int i = 0; i < s->p->n_graphs; i++)
        if (s->execs[i]) s->be->release(s->execs[i]);
    for (int j = 0; j < s->p->n_params; j++)
        if (s->params[j]) s->be->buffer_free(s->params[j]);
    free(s->execs);
    free(s->params);
    free(s->what);
    free(s);
}

const struct itr_program *itr_session_program(const struct itr_session *s) { return s->p; }
const struct itr_backend *itr_session_backend(const struct itr_session *s) { return s->be; }
const struct itr_session_options *itr_session_options(const struct itr_session *s) { return &s->opt; }
bool itr_session_has_weights(const struct itr_session *s) { return s->has_weights; }
const char *itr_session_weights_what(const struct itr_session *s) { return s->what; }

struct itr_tensor *itr_session_param(const struct itr_session *s, int id) {
    return id >= 0 && id < s->p->n_params ? s->params[id] : NULL;
}

// A host tensor into the backend's memory (itself on a host-memory backend).
static struct itr_tensor *to_backend(const struct itr_backend *be, struct itr_tensor *t) {
    if (!t || be->host_memory) return t;
    struct itr_tensor *b = be->buffer_alloc(t->dtype, t->rank, t->shape);
    if (!b) { fprintf(stderr, "itr: out of backend memory\n"); abort(); }
    be->buffer_upload(b, t);
    itr_tensor_free(t);
    return b;
}

void itr_session_set_param(struct itr_session *s, int id, struct itr_tensor *t) {
    if (id < 0 || id >= s->p->n_params) { itr_tensor_free(t); return; }
    s->params_version = new_params_version();
    if (t == s->params[id]) return;   // updated in place
    if (s->params[id]) s->be->buffer_free(s->params[id]);
    s->params[id] = to_backend(s->be, t);
}

static void set_what(struct itr_session *s, const char *what) {
    free(s->what);
    s->what = what ? strdup(what) : NULL;
    if (what && !s->what) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    s->has_weights = true;
}

void itr_session_load(struct itr_session *s, const struct itr_tensor_set *set, const char *what,
                      struct itr_diags *d) {
    set_what(s, what);
    itr_exec_warn_unknown_weights(s->p, set, what, d);
    for (int k = 0; set && k < set->n; k++) {
        int id = itr_program_find_param(s->p, set->items[k].name);
        if (id < 0) continue;
        struct itr_tensor *c = itr_tensor_clone(set->items[k].tensor);
        if (!c) { fprintf(stderr, "itr: out of memory\n"); abort(); }
        itr_session_set_param(s, id, c);
    }
}

void itr_session_adopt(struct itr_session *s, struct itr_tensor_set *set, const char *what, struct itr_diags *d) {
    set_what(s, what);
    itr_exec_warn_unknown_weights(s->p, set, what, d);
    int w = 0;
    for (int k = 0; k < set->n; k++) {
        int id = itr_program_find_param(s->p, set->items[k].name);
        if (id < 0) { set->items[w++] = set->items[k]; continue; }
        itr_session_set_param(s, id, set->items[k].tensor);
        free(set->items[k].name);
    }
    set->n = w;
}

void itr_session_save(const struct itr_session *s, struct itr_tensor_set *out) {
    for (int j = 0; j < s->p->n_params; j++) {
        const struct itr_tensor *t = s->params[j];
        if (!t) continue;
        struct itr_tensor *h;
        if (s->be->host_memory) {
            h = itr_tensor_wrap(t->dtype, t->rank, t->shape, t->data);
        } else {
            h = itr_tensor_new(t->dtype, t->rank, t->shape);
            if (h) s->be->buffer_download(h, t);
        }
        if (!h) { fprintf(stderr, "itr: out of memory\n"); abort(); }
        itr_tensor_set_put(out, s->p->params[j].name, h);
    }
    s->be->sync();
}

static int graph_index(const struct itr_program *p, const struct itr_graph *g) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i] == g) return i;
    return -1;
}

bool itr_session_exec(struct itr_session *s, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                      struct itr_tensor *const *params, struct itr_dim_bindings *dims, struct itr_run_options *ro,
                      struct itr_tensor **outs, struct itr_diags *d) {
    const struct itr_program *p = s->p;
    bool f64 = s->opt.f64;
    int gi = graph_index(p, g);
    if (gi < 0) {
        itr_diag_error(d, ITR_NOLOC, "internal error: graph '%s' is not part of the session's program", g->name);
        return false;
    }
    if (!params) params = s->params;
    // The checks in the order itr_exec_run makes them, with its messages:
    // input names, parameters (binding their dims), input types.
    struct itr_tensor **in = xcalloc((size_t)g->n_inputs, sizeof *in);
    bool ok = itr_exec_match_inputs(p, g, inputs, in, d);
    if (ok) ok = itr_exec_check_params(p, g, params, s->has_weights, dims, f64, s->what, d);
    if (ok) ok = itr_exec_bind_inputs(p, g, in, dims, f64, d);
    if (ok) itr_bind_defaults(dims, p);

    // Prepared once per entry; a failed prepare is retried on the next run
    // (it reported why) rather than cached.
    if (ok && !s->execs[gi]) {
        struct itr_backend_options bo = { .f64 = f64, .threads = s->opt.threads };
        s->execs[gi] = s->be->prepare(p, g, &bo, d);
        ok = s->execs[gi] != NULL;
    }

    // A device backend reads inputs from its memory and returns outputs there.
    struct itr_tensor **dev_in = in;
    if (ok && !s->be->host_memory) {
        dev_in = xcalloc((size_t)g->n_inputs, sizeof *dev_in);
        for (int i = 0; i < g->n_inputs; i++) {
            struct itr_tensor *c = itr_tensor_clone(in[i]);
            if (!c) { fprintf(stderr, "itr: out of memory\n"); abort(); }
            dev_in[i] = to_backend(s->be, c);
        }
    }
    for (int k = 0; k < g->n_outputs; k++) outs[k] = NULL;
    // A run on the session's own weights that writes none tells the backend
    // their number; a run that may write them gives them a new one.
    struct itr_run_options numbered = { .finite_output = -1, .params_version = s->params_version };
    if (!ro && params == s->params) ro = &numbered;
    if (ok) ok = s->be->run(s->execs[gi], dev_in, params, dims, ro, outs, d);
    if (ro && ro->params_writable) s->params_version = new_params_version();
    if (dev_in != in) {
        for (int i = 0; i < g->n_inputs; i++) s->be->buffer_free(dev_in[i]);
        free(dev_in);
        for (int k = 0; ok && k < g->n_outputs; k++) {
            if (!outs[k]) continue;   // a run stopped before its updates (ro->stopped)
            struct itr_tensor *h = itr_tensor_new(outs[k]->dtype, outs[k]->rank, outs[k]->shape);
            if (!h) { fprintf(stderr, "itr: out of memory\n"); abort(); }
            s->be->buffer_download(h, outs[k]);
            s->be->buffer_free(outs[k]);
            outs[k] = h;
        }
        s->be->sync();
    }
    free(in);
    return ok;
}

bool itr_session_run_graph(struct itr_session *s, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                           struct itr_dim_bindings *dims, struct itr_tensor_set *outputs, struct itr_diags *d) {
    struct itr_tensor **outs = xcalloc((size_t)g->n_outputs, sizeof *outs);
    bool ok = itr_session_exec(s, g, inputs, NULL, dims, NULL, outs, d);
    if (ok)
        for (int k = 0; k < g->n_outputs; k++) itr_tensor_set_put(outputs, g->output_names[k], outs[k]);
    free(outs);
    return ok;
}

bool itr_session_run(struct itr_session *s, const char *entry, const struct itr_tensor_set *inputs,
                     struct itr_dim_bindings *dims, struct itr_tensor_set *outputs, struct itr_diags *d) {
    const struct itr_graph *g = itr_exec_find_entry(s->p, entry, d);
    return g && itr_session_run_graph(s, g, inputs, dims, outputs, d);
}
