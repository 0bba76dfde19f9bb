// One training step (runtime/train.h). The step itself runs on a session
// (itr_session_train_step); itr_train_step is the same step on a session of
// its own, for callers that hold their state as a named set.
#include "runtime/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/exec.h"
#include "runtime/session.h"

const struct itr_graph *itr_train_entry(const struct itr_program *p, struct itr_diags *d) {
    const struct itr_graph *g = itr_program_train_graph(p);
    if (g && p->train_compiled) return g;
    char list[1024];
    size_t w = 0;
    list[0] = 0;
    for (int i = 0; i < p->n_graphs && w < sizeof list; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) {
            int k = snprintf(list + w, sizeof list - w, "%s%s", w ? ", " : "", p->graphs[i]->name);
            if (k > 0) w += (size_t)k;
        }
    if (g)
        itr_diag_error(d, ITR_NOLOC, "the train entry of model '%s' is not a compiled training step; compile the "
                       "model with 'itrc compile'", p->name ? p->name : "?");
    else
        itr_diag_error(d, ITR_NOLOC, "model '%s' has no train entry (a 'train(...)' entry and an 'optimizer' in its "
                       ".ir); its entry points are: %s", p->name ? p->name : "?", w ? list : "(none)");
    return NULL;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t itr_train_step_seed(uint64_t seed, int64_t step) {
    // Kept below 2^63 so that the i64 input holds it as a non-negative value.
    return splitmix64(seed ^ splitmix64((uint64_t)step)) >> 1;
}

static struct itr_tensor *scalar_tensor(enum itr_dtype dt, double v, int64_t iv) {
    struct itr_tensor *t = itr_tensor_new(dt, 0, NULL);
    if (!t) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    if (dt == ITR_I64) ((int64_t *)t->data)[0] = iv;
    else itr_tensor_set(t, 0, v);
    return t;
}

// A tensor that shares x's data (the views below never own what they show).
static struct itr_tensor *borrow(const struct itr_tensor *x) {
    struct itr_tensor *t = itr_tensor_wrap(x->dtype, x->rank, x->shape, x->data);
    if (!t) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    return t;
}

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    return q;
}

static int output_index(const struct itr_graph *g, const char *name) {
    for (int k = 0; k < g->n_outputs; k++)
        if (strcmp(g->output_names[k], name) == 0) return k;
    return -1;
}

static const struct itr_state_update *update_of(const struct itr_program *p, const char *output) {
    for (int i = 0; i < p->n_updates; i++)
        if (strcmp(p->updates[i].output, output) == 0) return &p->updates[i];
    return NULL;
}

// Fills zeros[j] with a zero tensor (in the backend's memory) for every
// optimizer state j missing from the session. Shapes come from dims bound by
// the parameters that are there (a scratch copy of the bindings: the real
// binding, with its messages, happens in the run).
static bool zero_missing_state(struct itr_session *s, const struct itr_graph *g, const struct itr_dim_bindings *dims,
                               struct itr_tensor **zeros, int *n_zero, const char **first, struct itr_diags *d) {
    const struct itr_program *p = itr_session_program(s);
    const struct itr_backend *be = itr_session_backend(s);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < b.n && i < dims->n; i++) { b.value[i] = dims->value[i]; b.bound[i] = dims->bound[i]; }
    struct itr_diags scratch;
    itr_diags_init(&scratch);
    for (int v = 0; v < g->n_values; v++) {
        if (g->values[v].kind != ITR_VALUE_PARAM) continue;
        const struct itr_param *pp = &p->params[g->values[v].param];
        const struct itr_tensor *t = itr_session_param(s, g->values[v].param);
        if (t) itr_bind_tensor(&b, p, &pp->type, t, pp->name, true, &scratch);
    }
    itr_diags_free(&scratch);
    itr_bind_defaults(&b, p);
    bool ok = true;
    const struct itr_tensor *owner = NULL;
    for (int i = 0; i < p->n_updates; i++) {
        const struct itr_state_update *u = &p->updates[i];
        const struct itr_param *pp = &p->params[u->param];
        // A parameter's optimizer state follows its update (compiler/train.c)
        // and takes its tensor's dtype, so that f64 weights get f64 state.
        if (u->kind == ITR_UPDATE_PARAM) owner = itr_session_param(s, u->param);
        if (u->kind != ITR_UPDATE_OPTIMIZER || itr_session_param(s, u->param) || zeros[u->param]) continue;
        int64_t shape[ITR_MAX_RANK];
        char what[512];
        snprintf(what, sizeof what, "optimizer state '%s'", pp->name);
        if (!itr_eval_shape(&b, p, &pp->type, shape, what, d)) { ok = false; continue; }
        enum itr_dtype dt = owner && itr_dtype_is_float(owner->dtype) ? owner->dtype : pp->type.dtype;
        struct itr_tensor *z = be->buffer_alloc(dt, pp->type.rank, shape);
        if (!z) {
            itr_diag_error(d, ITR_NOLOC, "%s: cannot allocate its zeros", what);
            ok = false;
            continue;
        }
        zeros[u->param] = z;
        if (!*n_zero) *first = pp->name;
        (*n_zero)++;
    }
    itr_bindings_free(&b);
    return ok;
}

bool itr_session_train_step(struct itr_session *s, const struct itr_tensor_set *inputs,
                            struct itr_dim_bindings *dims, const struct itr_train_options *opt,
                            struct itr_tensor_set *metrics, struct itr_train_result *result, struct itr_diags *d) {
    memset(result, 0, sizeof *result);
    const struct itr_program *p = itr_session_program(s);
    const struct itr_backend *be = itr_session_backend(s);
    bool f64 = itr_session_options(s)->f64;
    const struct itr_graph *g = itr_train_entry(p, d);
    if (!g) return false;
    const char *wn = opt->weights_what ? opt->weights_what
                   : itr_session_weights_what(s) ? itr_session_weights_what(s) : "weights";
    bool ok = true;

    // The inputs: the caller's (borrowed), then lr, step and the step's seed.
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    for (int k = 0; inputs && k < inputs->n; k++) {
        const char *nm = inputs->items[k].name;
        if (strcmp(nm, "lr") == 0 || strcmp(nm, "step") == 0 || strcmp(nm, "seed") == 0) {
            itr_diag_error(d, ITR_NOLOC, "input '%s' of the train entry comes from the training step's options "
                           "(--%s), not from the data", nm, nm);
            ok = false;
            continue;
        }
        itr_tensor_set_put(&in, nm, borrow(inputs->items[k].tensor));
    }
    if (opt->step < 1) {
        itr_diag_error(d, ITR_NOLOC, "step %" PRId64 ": steps count from 1", opt->step);
        ok = false;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const char *nm = g->values[g->inputs[i]].name;
        if (strcmp(nm, "lr") == 0)
            itr_tensor_set_put(&in, nm, scalar_tensor(f64 ? ITR_F64 : ITR_F32, opt->lr, 0));
        else if (strcmp(nm, "step") == 0)
            itr_tensor_set_put(&in, nm, scalar_tensor(ITR_I64, 0, opt->step));
        else if (strcmp(nm, "seed") == 0)
            itr_tensor_set_put(&in, nm, scalar_tensor(ITR_I64, 0, (int64_t)itr_train_step_seed(opt->seed, opt->step)));
    }

    // The parameters: the session's slots, and zeros for missing optimizer
    // state (the session takes them only if the step succeeds).
    struct itr_tensor **zeros = xcalloc((size_t)p->n_params, sizeof *zeros);
    struct itr_tensor **slots = xcalloc((size_t)p->n_params, sizeof *slots);
    const char *first = NULL;
    if (ok) ok = zero_missing_state(s, g, dims, zeros, &result->n_zero_state, &first, d);
    if (ok && result->n_zero_state)
        itr_diag_note(d, (struct itr_loc){ wn, 0, 0 }, "%d optimizer-state tensor%s missing ('%s'%s); %s at zero",
                      result->n_zero_state, result->n_zero_state == 1 ? " is" : "s are", first,
                      result->n_zero_state > 1 ? ", ..." : "", result->n_zero_state == 1 ? "it starts" : "they start");
    for (int j = 0; j < p->n_params; j++) slots[j] = zeros[j] ? zeros[j] : itr_session_param(s, j);

    struct itr_tensor **outs = xcalloc((size_t)g->n_outputs, sizeof *outs);
    // The backend may write the updates over the slots (zeros included); it
    // writes nothing unless the loss is finite, and nothing that can fail
    // runs after the first such write.
    struct itr_run_options ro = { .params_writable = true, .finite_output = 0 };
    if (ok) ok = itr_session_exec(s, g, &in, slots, dims, &ro, outs, d);
    if (ok) {
        result->loss = g->n_outputs > 0 && outs[0] ? itr_tensor_get(outs[0], 0) : NAN;
        if (!isfinite(result->loss)) {
            itr_diag_error(d, ITR_NOLOC, "step %" PRId64 ": the loss '%s' is %s; the parameters were not updated",
                           opt->step, g->output_names[0], isnan(result->loss) ? "NaN" : "infinite");
            ok = false;
        }
    }
    // Every update is found (and converted where its dtype differs) first,
    // so that the parameters change all at once or not at all.
    struct itr_tensor **next = xcalloc((size_t)p->n_updates + 1, sizeof *next);
    for (int i = 0; ok && i < p->n_updates; i++) {
        const struct itr_state_update *u = &p->updates[i];
        int k = output_index(g, u->output);
        const struct itr_tensor *old = slots[u->param];
        if (k < 0 || !outs[k]) {
            itr_diag_error(d, ITR_NOLOC, "internal error: the train entry did not produce '%s'", u->output);
            ok = false;
            break;
        }
        enum itr_dtype dt = old ? old->dtype : p->params[u->param].type.dtype;
        if (outs[k]->dtype == dt) {
            next[i] = outs[k];   // the step's tensor takes the slot (or is it): no copy
            outs[k] = NULL;
        } else {
            // f64 mode with f32 parameters: rounded at every update, as a
            // resumed run (from an f32 checkpoint) must be bitwise the same.
            next[i] = itr_tensor_cast(outs[k], dt);
            if (!next[i]) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
        }
    }
    if (ok) {
        for (int i = 0; i < p->n_updates; i++) {
            int j = p->updates[i].param;
            itr_session_set_param(s, j, next[i]);
            if (next[i] == zeros[j]) zeros[j] = NULL;   // fresh state updated in place: the session's now
            next[i] = NULL;
        }
        for (int k = 0; k < g->n_outputs; k++) {
            if (!outs[k] || update_of(p, g->output_names[k])) continue;
            itr_tensor_set_put(metrics, g->output_names[k], outs[k]);
            outs[k] = NULL;
        }
    }
    // After an internal error: what the step wrote in place stays the slot's.
    for (int i = 0; i < p->n_updates; i++)
        if (next[i] != slots[p->updates[i].param]) itr_tensor_free(next[i]);
    for (int k = 0; k < g->n_outputs; k++) {
        const struct itr_state_update *u = update_of(p, g->output_names[k]);
        if (!u || outs[k] != slots[u->param]) itr_tensor_free(outs[k]);
    }
    for (int j = 0; j < p->n_params; j++)
        if (zeros[j]) be->buffer_free(zeros[j]);
    free(next);
    free(outs);
    free(slots);
    free(zeros);
    itr_tensor_set_free(&in);
    return ok;
}

bool itr_train_step(const struct itr_program *p, const struct itr_tensor_set *inputs, struct itr_tensor_set *state,
                    struct itr_dim_bindings *dims, const struct itr_train_options *opt, struct itr_tensor_set *metrics,
                    struct itr_train_result *result, struct itr_diags *d) {
    memset(result, 0, sizeof *result);
    if (!itr_train_entry(p, d)) return false;
    struct itr_session_options so = { .f64 = opt->f64 };
    struct itr_session *s = itr_session_new(p, NULL, &so, d);
    if (!s) return false;
    itr_session_load(s, state, opt->weights_what, d);
    bool ok = itr_session_train_step(s, inputs, dims, opt, metrics, result, d);
    for (int i = 0; ok && i < p->n_updates; i++) {
        int id = p->updates[i].param;
        struct itr_tensor *c = itr_tensor_clone(itr_session_param(s, id));
        if (!c) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
        itr_tensor_set_put(state, p->params[id].name, c);
    }
    itr_session_free(s);
    return ok;
}
