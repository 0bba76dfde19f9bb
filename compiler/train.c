// The compiled training step (design.md principle 7, docs/training.md): the
// train entry becomes forward + loss + backward + gradient clipping +
// optimizer update, one graph that the later passes and backends treat like
// any other. The update formulas are PyTorch's (torch.optim.SGD, Adam, AdamW
// and torch.nn.utils.clip_grad_norm_), in the same order of operations where
// that order changes the rounding.
#include "compiler/autodiff.h"
#include "compiler/passes.h"

#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------ node building

struct builder {
    struct itr_graph *g;
    struct itr_diags *d;
    struct itr_loc loc;     // the optimizer's declaration: where the step's nodes come from
    bool ok;
};

static int32_t node(struct builder *b, enum itr_op op, const int32_t *in, int n, struct itr_attr *attrs) {
    for (int i = 0; i < n; i++)
        if (in[i] < 0) b->ok = false;
    if (!b->ok) return -1;
    int32_t out = -1;
    if (!itr_graph_add_node(b->g, op, in, n, attrs, b->loc, NULL, &out, b->d)) {
        itr_diag_error(b->d, b->loc, "internal error: the training step built an invalid '%s' node", itr_op_name(op));
        b->ok = false;
        return -1;
    }
    return out;
}

static int32_t bin(struct builder *b, enum itr_op op, int32_t x, int32_t y) {
    int32_t in[2] = { x, y };
    return node(b, op, in, 2, NULL);
}

static int32_t un(struct builder *b, enum itr_op op, int32_t x) { return node(b, op, &x, 1, NULL); }

static enum itr_dtype dtype_of(struct builder *b, int32_t v) { return b->g->values[v].type.dtype; }

// A scalar that keeps v in double precision (a `full`, as the front end
// writes float literals).
static int32_t scalar(struct builder *b, double v, enum itr_dtype dt) {
    struct itr_attr *a = itr_attrs_default(b->g->prog, ITR_OP_FULL);
    a[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = v };
    a[itr_op_attr_index(ITR_OP_FULL, "dtype")] = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = dt };
    return node(b, ITR_OP_FULL, NULL, 0, a);
}

static int32_t cast(struct builder *b, int32_t x, enum itr_dtype dt) {
    if (x < 0 || dtype_of(b, x) == dt) return x;
    struct itr_attr *a = itr_attrs_default(b->g->prog, ITR_OP_CAST);
    a[itr_op_attr_index(ITR_OP_CAST, "dtype")] = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = dt };
    return node(b, ITR_OP_CAST, &x, 1, a);
}

static int32_t sum_all(struct builder *b, int32_t x) { return un(b, ITR_OP_SUM, x); }   // no axes: every axis

// Gives a generated value a readable name in dumps; names of inputs,
// parameters and user-named values stay.
static void name_value(struct builder *b, int32_t v, const char *prefix, const char *param) {
    if (v < 0 || b->g->values[v].kind != ITR_VALUE_NODE) return;
    const char *old = b->g->values[v].name;
    if (!old || old[0] != '_' || strspn(old + 1, "0123456789") != strlen(old + 1)) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s", prefix, param);
    itr_graph_name_value(b->g, v, buf);
}

// ------------------------------------------------------------ the step

// Per-step scalars, computed once in f64 (PyTorch computes them as Python
// floats) and rounded to each parameter dtype where used.
struct scalars {
    int32_t lr;                    // the lr input (f32)
    int32_t lr64, step64;
    int32_t step_size64;           // Adam: lr / (1 - beta1^t)
    int32_t bc2_sqrt64;            // Adam: sqrt(1 - beta2^t)
    int32_t decay64;               // AdamW: 1 - lr * weight_decay
};

static void step_scalars(struct builder *b, const struct itr_optimizer *o, int32_t lr, int32_t step, struct scalars *s) {
    memset(s, 0, sizeof *s);
    s->lr = lr;
    s->lr64 = cast(b, lr, ITR_F64);
    s->step64 = cast(b, step, ITR_F64);
    s->step_size64 = s->bc2_sqrt64 = s->decay64 = -1;
    if (o->kind == ITR_OPT_ADAM || o->kind == ITR_OPT_ADAMW) {
        int32_t one = scalar(b, 1.0, ITR_F64);
        int32_t bc1 = bin(b, ITR_OP_SUB, one, bin(b, ITR_OP_POW, scalar(b, o->beta1, ITR_F64), s->step64));
        int32_t bc2 = bin(b, ITR_OP_SUB, one, bin(b, ITR_OP_POW, scalar(b, o->beta2, ITR_F64), s->step64));
        s->step_size64 = bin(b, ITR_OP_DIV, s->lr64, bc1);
        s->bc2_sqrt64 = un(b, ITR_OP_SQRT, bc2);
        if (o->kind == ITR_OPT_ADAMW)
            s->decay64 = bin(b, ITR_OP_SUB, one, bin(b, ITR_OP_MUL, s->lr64, scalar(b, o->weight_decay, ITR_F64)));
    }
}

// One parameter's optimizer state: a frozen, zero-initialised program
// parameter "opt.<what>.<param>" (so weights files and `itr-run init` carry
// it), read by the step and written back through "new.opt.<what>.<param>".
struct state {
    int32_t param;      // program parameter index
    int32_t value;      // its value in the train graph
    int32_t next;       // the new value
};

static bool add_state(struct itr_program *p, struct builder *b, const struct itr_optimizer *o, const char *what,
                      int32_t owner, struct state *st) {
    const struct itr_param *pp = &p->params[owner];
    char name[512];
    snprintf(name, sizeof name, "opt.%s.%s", what, pp->name);
    int32_t old = itr_program_find_param(p, name);
    if (old >= 0) {
        itr_diag_error(b->d, p->params[old].loc, "parameter '%s' has the name the optimizer gives to the %s state of "
                       "'%s'; rename it", name, what, pp->name);
        return false;
    }
    struct itr_type t = pp->type;
    struct itr_init zeros = { ITR_INIT_ZEROS, 0, 0 };
    st->param = itr_program_add_param(p, name, t, zeros, true, o->loc);
    st->value = itr_graph_use_param(b->g, st->param);
    st->next = -1;
    return true;
}

// The update of one trained parameter; appends its new value and its new
// state to *outs / *out_params (in that order).
static void update_param(struct itr_program *p, struct builder *b, const struct itr_optimizer *o,
                         const struct scalars *s, int32_t param, int32_t pv, int32_t grad, int32_t *outs,
                         int32_t *out_params, enum itr_update_kind *kinds, int *n_out) {
    enum itr_dtype dt = dtype_of(b, pv);
    const char *pname = p->params[param].name;
    int32_t g = grad;
    int32_t next = -1;
    struct state m = { -1, -1, -1 }, v = { -1, -1, -1 }, buf = { -1, -1, -1 };
    switch (o->kind) {
    case ITR_OPT_SGD: {
        // d = g + wd p; buf = momentum buf + d; p -= lr buf (torch.optim.SGD,
        // dampening 0, no Nesterov).
        if (o->weight_decay != 0) g = bin(b, ITR_OP_ADD, g, bin(b, ITR_OP_MUL, pv, scalar(b, o->weight_decay, dt)));
        if (o->momentum != 0) {
            if (!add_state(p, b, o, "momentum", param, &buf)) { b->ok = false; return; }
            buf.next = bin(b, ITR_OP_ADD, bin(b, ITR_OP_MUL, buf.value, scalar(b, o->momentum, dt)), g);
            g = buf.next;
        }
        next = bin(b, ITR_OP_SUB, pv, bin(b, ITR_OP_MUL, cast(b, s->lr, dt), g));
        break;
    }
    case ITR_OPT_ADAM: case ITR_OPT_ADAMW: {
        int32_t w = pv;
        if (o->kind == ITR_OPT_ADAMW) {
            // Decoupled decay first: p *= 1 - lr wd.
            if (o->weight_decay != 0) w = bin(b, ITR_OP_MUL, pv, cast(b, s->decay64, dt));
        } else if (o->weight_decay != 0) {
            g = bin(b, ITR_OP_ADD, g, bin(b, ITR_OP_MUL, pv, scalar(b, o->weight_decay, dt)));   // L2, as torch.optim.Adam
        }
        if (!add_state(p, b, o, "m", param, &m) || !add_state(p, b, o, "v", param, &v)) { b->ok = false; return; }
        m.next = bin(b, ITR_OP_ADD, bin(b, ITR_OP_MUL, m.value, scalar(b, o->beta1, dt)),
                     bin(b, ITR_OP_MUL, g, scalar(b, 1.0 - o->beta1, dt)));
        v.next = bin(b, ITR_OP_ADD, bin(b, ITR_OP_MUL, v.value, scalar(b, o->beta2, dt)),
                     bin(b, ITR_OP_MUL, bin(b, ITR_OP_MUL, g, g), scalar(b, 1.0 - o->beta2, dt)));
        // denom = sqrt(v) / sqrt(1 - beta2^t) + eps; p -= lr / (1 - beta1^t) * m / denom
        int32_t denom = bin(b, ITR_OP_ADD, bin(b, ITR_OP_DIV, un(b, ITR_OP_SQRT, v.next), cast(b, s->bc2_sqrt64, dt)),
                            scalar(b, o->eps, dt));
        next = bin(b, ITR_OP_SUB, w, bin(b, ITR_OP_MUL, cast(b, s->step_size64, dt), bin(b, ITR_OP_DIV, m.next, denom)));
        break;
    }
    default:
        itr_diag_error(b->d, b->loc, "internal error: no optimizer to compile");
        b->ok = false;
        return;
    }
    if (!b->ok) return;
    name_value(b, next, "new.", pname);
    outs[*n_out] = next;
    out_params[*n_out] = param;
    kinds[(*n_out)++] = ITR_UPDATE_PARAM;
    const struct state *states[3] = { &m, &v, &buf };
    for (int k = 0; k < 3; k++) {
        if (states[k]->param < 0) continue;
        name_value(b, states[k]->next, "new.", p->params[states[k]->param].name);
        outs[*n_out] = states[k]->next;
        out_params[*n_out] = states[k]->param;
        kinds[(*n_out)++] = ITR_UPDATE_OPTIMIZER;
    }
}

// Rescales every gradient by min(clip / (‖g‖₂ + 1e-6), 1), ‖g‖₂ over all of
// them together (torch.nn.utils.clip_grad_norm_).
static void clip_gradients(struct builder *b, double clip, int32_t *grads, int n) {
    int first = -1;
    for (int j = 0; j < n && first < 0; j++)
        if (grads[j] >= 0) first = j;
    if (first < 0) return;
    enum itr_dtype acc = dtype_of(b, grads[first]);
    int32_t total = -1;
    for (int j = 0; j < n; j++) {
        if (grads[j] < 0) continue;
        int32_t sq = cast(b, sum_all(b, bin(b, ITR_OP_MUL, grads[j], grads[j])), acc);
        total = total < 0 ? sq : bin(b, ITR_OP_ADD, total, sq);
    }
    int32_t norm = un(b, ITR_OP_SQRT, total);
    name_value(b, norm, "grad_norm", "");
    int32_t coef = bin(b, ITR_OP_DIV, scalar(b, clip, acc), bin(b, ITR_OP_ADD, norm, scalar(b, 1e-6, acc)));
    coef = bin(b, ITR_OP_MINIMUM, coef, scalar(b, 1.0, acc));
    name_value(b, coef, "clip_coef", "");
    for (int j = 0; j < n; j++)
        if (grads[j] >= 0) grads[j] = bin(b, ITR_OP_MUL, grads[j], cast(b, coef, dtype_of(b, grads[j])));
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void mark(struct itr_graph *g, int from, enum itr_phase ph) {
    for (int i = from; i < g->n_nodes; i++) g->nodes[i].phase = ph;
}

static bool check_signature(struct itr_program *p, struct itr_graph *g, struct itr_diags *d) {
    bool ok = true;
    if (g->n_outputs == 0) {
        itr_diag_error(d, g->loc, "the train entry returns nothing; its first output must be the loss, a float scalar");
        return false;
    }
    const struct itr_type *lt = &g->values[g->outputs[0]].type;
    if (lt->rank != 0 || !itr_dtype_is_float(lt->dtype)) {
        char ts[256];
        itr_type_format(p, lt, ts, sizeof ts);
        itr_diag_error(d, g->loc, "the first output of the train entry, the loss '%s', must be a float scalar "
                       "(f32[] or f64[]), but it is %s; reduce it, e.g. with sum(...) or mean(...)",
                       g->output_names[0], ts);
        ok = false;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        if (strcmp(v->name, "lr") == 0 || strcmp(v->name, "step") == 0) {
            itr_diag_error(d, v->loc, "train input '%s' has the name of an input that the training step adds (lr, "
                           "step); rename it", v->name);
            ok = false;
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        if (strncmp(g->output_names[k], "new.", 4) != 0) continue;
        bool is_update = false;
        for (int i = 0; i < p->n_updates; i++) is_update |= strcmp(p->updates[i].output, g->output_names[k]) == 0;
        if (!is_update) {
            itr_diag_error(d, g->loc, "output '%s' of the train entry: names starting with 'new.' are reserved for "
                           "the updated parameters", g->output_names[k]);
            ok = false;
        }
    }
    return ok;
}

bool itr_compile_training_step(struct itr_program *p, struct itr_diags *d) {
    struct itr_graph *g = itr_program_train_graph(p);
    if (!g || p->train_compiled) return true;
    const struct itr_optimizer *o = &p->optimizer;
    if (o->kind == ITR_OPT_NONE) {
        itr_diag_error(d, g->loc, "the train entry has no optimizer; add one to the model, e.g. 'optimizer adam(lr=2e-4)'");
        return false;
    }
    if (!check_signature(p, g, d)) return false;

    // The trainable parameters the entry reads, in declaration order.
    int32_t *params = malloc(((size_t)g->n_values + 1) * sizeof *params);
    int32_t *wrt = malloc(((size_t)g->n_values + 1) * sizeof *wrt);
    int32_t *grads = malloc(((size_t)g->n_values + 1) * sizeof *grads);
    bool *reached = malloc(((size_t)g->n_values + 1) * sizeof *reached);
    if (!params || !wrt || !grads || !reached) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    int n = 0;
    bool ok = true;
    for (int v = 0; v < g->n_values; v++) {
        const struct itr_value *val = &g->values[v];
        if (val->kind != ITR_VALUE_PARAM || p->params[val->param].frozen) continue;
        const struct itr_param *pp = &p->params[val->param];
        if (!itr_dtype_is_float(pp->type.dtype)) {
            itr_diag_error(d, pp->loc, "parameter '%s' is %s and not frozen; trainable parameters must be float "
                           "(declare it 'frozen param')", pp->name, itr_dtype_name(pp->type.dtype));
            ok = false;
            continue;
        }
        params[n++] = val->param;
    }
    qsort(params, (size_t)n, sizeof *params, cmp_int32);
    for (int j = 0; j < n; j++) wrt[j] = itr_graph_use_param(g, params[j]);

    struct builder b = { g, d, o->loc, ok };
    int32_t loss = g->outputs[0];
    int n_forward = g->n_nodes;
    mark(g, 0, ITR_PHASE_FORWARD);
    if (b.ok && n) {
        int32_t seed = scalar(&b, 1.0, dtype_of(&b, loss));
        b.ok = b.ok && itr_vjp(g, &loss, &seed, 1, wrt, n, grads, reached, d);
    } else {
        for (int j = 0; j < n; j++) { grads[j] = -1; reached[j] = false; }
    }
    mark(g, n_forward, ITR_PHASE_BACKWARD);
    int n_backward_end = g->n_nodes;
    for (int j = 0; j < n && b.ok; j++) {
        if (reached[j]) { name_value(&b, grads[j], "grad.", p->params[params[j]].name); continue; }
        itr_diag_warning(d, p->params[params[j]].loc, "parameter '%s' does not influence the loss '%s'; training "
                         "leaves it unchanged (declare it 'frozen param' if that is intended)",
                         p->params[params[j]].name, g->output_names[0]);
    }

    // The step's inputs: lr and step after the user's, then the seed.
    if (b.ok) {
        int32_t lr = itr_graph_add_input(g, "lr", itr_type_make(ITR_F32, 0, NULL), o->loc);
        int32_t step = itr_graph_add_input(g, "step", itr_type_make(ITR_I64, 0, NULL), o->loc);
        for (int i = 0; i + 1 < g->n_inputs; i++) {
            const struct itr_value *v = &g->values[g->inputs[i]];
            if (strcmp(v->name, "seed") != 0 || v->type.rank != 0 || v->type.dtype != ITR_I64) continue;
            int32_t s = g->inputs[i];
            memmove(&g->inputs[i], &g->inputs[i + 1], (size_t)(g->n_inputs - i - 1) * sizeof *g->inputs);
            g->inputs[g->n_inputs - 1] = s;
            break;
        }
        if (o->clip_grad_norm > 0) clip_gradients(&b, o->clip_grad_norm, grads, n);
        struct scalars sc;
        step_scalars(&b, o, lr, step, &sc);
        int32_t *outs = malloc(((size_t)n * 4 + 1) * sizeof *outs);
        int32_t *out_params = malloc(((size_t)n * 4 + 1) * sizeof *out_params);
        enum itr_update_kind *kinds = malloc(((size_t)n * 4 + 1) * sizeof *kinds);
        if (!outs || !out_params || !kinds) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        int n_out = 0;
        for (int j = 0; j < n && b.ok; j++)
            if (grads[j] >= 0) update_param(p, &b, o, &sc, params[j], wrt[j], grads[j], outs, out_params, kinds, &n_out);
        for (int k = 0; k < n_out && b.ok; k++) {
            char name[512];
            snprintf(name, sizeof name, "new.%s", p->params[out_params[k]].name);
            itr_graph_add_output(g, name, outs[k]);
            itr_program_add_update(p, out_params[k], name, kinds[k]);
        }
        free(outs);
        free(out_params);
        free(kinds);
    }
    mark(g, n_backward_end, ITR_PHASE_OPTIMIZER);
    if (b.ok) p->train_compiled = true;
    free(params);
    free(wrt);
    free(grads);
    free(reached);
    return b.ok;
}
