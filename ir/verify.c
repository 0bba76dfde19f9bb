// The verifier (ir.h): checks what every pass must preserve, and reports
// every problem it finds rather than stopping at the first. A failure here
// after a pass is a bug in that pass; after the front end, a bug in it.
#include "ir.h"

#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return p;
}

static const char *vname(const struct itr_graph *g, int32_t v) {
    return v >= 0 && v < g->n_values && g->values[v].name ? g->values[v].name : "?";
}

static bool graph_in_program(const struct itr_program *p, const struct itr_graph *g) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i] == g) return true;
    return false;
}

static bool attr_kind_ok(const struct itr_attr_spec *sp, enum itr_attr_kind have) {
    if (have == sp->kind) return true;
    return have == ITR_ATTR_NONE && !sp->required && !sp->has_default;
}

// Re-runs the node's shape rule and compares with the recorded result types.
static void check_shapes(struct itr_program *p, struct itr_graph *g, int ni, struct itr_diags *d) {
    struct itr_node *n = &g->nodes[ni];
    const struct itr_op_info *info = itr_op_info(n->op);
    struct itr_type *in = xcalloc((size_t)n->n_inputs, sizeof *in);
    const char **names = xcalloc((size_t)n->n_inputs, sizeof *names);
    for (int i = 0; i < n->n_inputs; i++) {
        in[i] = g->values[n->inputs[i]].type;
        names[i] = g->values[n->inputs[i]].name;
    }
    struct itr_shape_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = p;
    c.graph = g;
    c.op = n->op;
    c.in = in;
    c.n_in = n->n_inputs;
    c.attrs = n->attrs;
    c.n_out = info->n_outputs;
    c.loc = n->loc;
    c.diags = d;
    c.in_names = names;
    if (info->shape(&c)) {
        if (c.n_out != n->n_outputs) {
            itr_diag_error(d, n->loc, "graph '%s': node %d (%s) has %d results, its shape rule gives %d", g->name, ni,
                           info->name, n->n_outputs, c.n_out);
        } else {
            for (int k = 0; k < c.n_out; k++) {
                const struct itr_type *have = &g->values[n->outputs[k]].type;
                if (itr_type_equal(have, &c.out[k])) continue;
                char hs[256], ws[256];
                itr_type_format(p, have, hs, sizeof hs);
                itr_type_format(p, &c.out[k], ws, sizeof ws);
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) result %d ('%s') is recorded as %s, its shape "
                               "rule gives %s", g->name, ni, info->name, k, vname(g, n->outputs[k]), hs, ws);
            }
        }
    }
    free(in);
    free(names);
}

static void verify_graph(struct itr_program *p, struct itr_graph *g, struct itr_diags *d) {
    const char *gn = g->name ? g->name : "?";
    int *input_count = xcalloc((size_t)g->n_values, sizeof *input_count);
    for (int i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        if (v < 0 || v >= g->n_values) {
            itr_diag_error(d, g->loc, "graph '%s': input %d refers to no value (%d)", gn, i, v);
            continue;
        }
        if (g->values[v].kind != ITR_VALUE_INPUT)
            itr_diag_error(d, g->loc, "graph '%s': input %d ('%s') is not an input value", gn, i, vname(g, v));
        if (++input_count[v] == 2)
            itr_diag_error(d, g->loc, "graph '%s': value '%s' is listed twice as an input", gn, vname(g, v));
    }
    for (int v = 0; v < g->n_values; v++) {
        const struct itr_value *val = &g->values[v];
        if (!val->name) itr_diag_error(d, val->loc, "graph '%s': value %d has no name", gn, v);
        if (val->type.rank < 0 || val->type.rank > ITR_MAX_RANK || (unsigned)val->type.dtype >= ITR_DTYPE_COUNT) {
            itr_diag_error(d, val->loc, "graph '%s': value '%s' has an invalid type", gn, vname(g, v));
            continue;
        }
        for (int k = 0; k < val->type.rank; k++)
            if (val->type.dims[k] < 0 || val->type.dims[k] >= p->n_dimnodes)
                itr_diag_error(d, val->loc, "graph '%s': value '%s' has an invalid dim %d", gn, vname(g, v), k);
        switch (val->kind) {
        case ITR_VALUE_INPUT:
            if (!input_count[v]) itr_diag_error(d, val->loc, "graph '%s': input value '%s' is not among the graph's inputs", gn, vname(g, v));
            break;
        case ITR_VALUE_PARAM:
            if (val->param < 0 || val->param >= p->n_params)
                itr_diag_error(d, val->loc, "graph '%s': value '%s' refers to no parameter (%d)", gn, vname(g, v), val->param);
            else if (!itr_type_equal(&val->type, &p->params[val->param].type))
                itr_diag_error(d, val->loc, "graph '%s': value '%s' does not have its parameter's type", gn, vname(g, v));
            break;
        case ITR_VALUE_NODE:
            if (val->node < 0 || val->node >= g->n_nodes || val->out_index < 0 ||
                val->out_index >= g->nodes[val->node].n_outputs || g->nodes[val->node].outputs[val->out_index] != v)
                itr_diag_error(d, val->loc, "graph '%s': value '%s' does not match its producing node", gn, vname(g, v));
            break;
        default:
            itr_diag_error(d, val->loc, "graph '%s': value '%s' has an invalid kind", gn, vname(g, v));
        }
    }
    for (int ni = 0; ni < g->n_nodes; ni++) {
        struct itr_node *n = &g->nodes[ni];
        if ((unsigned)n->op >= ITR_OP_COUNT) {
            itr_diag_error(d, n->loc, "graph '%s': node %d has an invalid op (%d)", gn, ni, (int)n->op);
            continue;
        }
        const struct itr_op_info *info = itr_op_info(n->op);
        bool ok = true;
        if (n->n_inputs < info->min_inputs || (info->max_inputs >= 0 && n->n_inputs > info->max_inputs)) {
            itr_diag_error(d, n->loc, "graph '%s': node %d (%s) has %d operands", gn, ni, info->name, n->n_inputs);
            ok = false;
        }
        for (int i = 0; i < n->n_inputs; i++) {
            int32_t v = n->inputs[i];
            if (v < 0 || v >= g->n_values) {
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) operand %d refers to no value (%d)", gn, ni,
                               info->name, i, v);
                ok = false;
            } else if (g->values[v].kind == ITR_VALUE_NODE && g->values[v].node >= ni) {
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) uses '%s' before it is defined (by node %d)", gn,
                               ni, info->name, vname(g, v), g->values[v].node);
                ok = false;
            }
        }
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (v < 0 || v >= g->n_values || g->values[v].kind != ITR_VALUE_NODE || g->values[v].node != ni ||
                g->values[v].out_index != k) {
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) result %d is not a value it produces", gn, ni,
                               info->name, k);
                ok = false;
            }
        }
        if (info->n_attrs && !n->attrs) {
            itr_diag_error(d, n->loc, "graph '%s': node %d (%s) has no attributes", gn, ni, info->name);
            continue;
        }
        for (int k = 0; k < info->n_attrs; k++) {
            const struct itr_attr_spec *sp = &info->attrs[k];
            if (!attr_kind_ok(sp, n->attrs[k].kind)) {
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) attribute '%s' is %s, expected %s", gn, ni,
                               info->name, sp->name, itr_attr_kind_name(n->attrs[k].kind), itr_attr_kind_name(sp->kind));
                ok = false;
            } else if (n->attrs[k].kind == ITR_ATTR_GRAPH) {
                const struct itr_graph *body = n->attrs[k].u.graph;
                if (!body || !graph_in_program(p, body)) {
                    itr_diag_error(d, n->loc, "graph '%s': node %d (%s) attribute '%s' names a graph outside the program",
                                   gn, ni, info->name, sp->name);
                    ok = false;
                } else if (body->kind != ITR_GRAPH_BODY) {
                    itr_diag_error(d, n->loc, "graph '%s': node %d (%s) body '%s' is not a body graph", gn, ni,
                                   info->name, body->name);
                    ok = false;
                }
            } else if (n->attrs[k].kind == ITR_ATTR_TENSOR && !n->attrs[k].u.tensor) {
                itr_diag_error(d, n->loc, "graph '%s': node %d (%s) attribute '%s' holds no tensor", gn, ni, info->name,
                               sp->name);
                ok = false;
            }
        }
        if (ok) check_shapes(p, g, ni, d);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int32_t v = g->outputs[i];
        if (v < 0 || v >= g->n_values)
            itr_diag_error(d, g->loc, "graph '%s': output %d refers to no value (%d)", gn, i, v);
        if (!g->output_names || !g->output_names[i])
            itr_diag_error(d, g->loc, "graph '%s': output %d has no name", gn, i);
    }
    free(input_count);
}

// The train entry, its optimizer and state updates (ir.h, "training").
static void verify_training(struct itr_program *p, struct itr_diags *d) {
    const struct itr_graph *train = NULL;
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (!g || g->prog != p) continue;
        if (g->train) {
            if (train) itr_diag_error(d, g->loc, "graph '%s': a second train entry (the first is '%s')", g->name, train->name);
            else train = g;
            if (g->kind != ITR_GRAPH_ENTRY) itr_diag_error(d, g->loc, "graph '%s': the train graph is not an entry", g->name);
        }
        for (int k = 0; k < g->n_nodes; k++) {
            enum itr_phase ph = g->nodes[k].phase;
            if ((unsigned)ph >= ITR_PHASE_COUNT)
                itr_diag_error(d, g->nodes[k].loc, "graph '%s': node %d has an invalid phase (%d)", g->name, k, (int)ph);
            else if (ph != ITR_PHASE_NONE && !g->train)
                itr_diag_error(d, g->nodes[k].loc, "graph '%s': node %d has a training phase (%s) outside the train entry",
                               g->name, k, itr_phase_name(ph));
        }
    }
    const struct itr_optimizer *o = &p->optimizer;
    if ((unsigned)o->kind >= ITR_OPT_KIND_COUNT) itr_diag_error(d, o->loc, "the optimizer has an invalid kind (%d)", (int)o->kind);
    else if (train && o->kind == ITR_OPT_NONE) itr_diag_error(d, train->loc, "the train entry has no optimizer");
    else if (!train && o->kind != ITR_OPT_NONE) itr_diag_error(d, o->loc, "an optimizer without a train entry");
    if (!train && p->train_compiled) itr_diag_error(d, p->loc, "a compiled training step without a train entry");
    if (!train && p->n_updates) itr_diag_error(d, p->loc, "state updates without a train entry");
    for (int i = 0; i < p->n_updates && train; i++) {
        const struct itr_state_update *u = &p->updates[i];
        if (u->param < 0 || u->param >= p->n_params) {
            itr_diag_error(d, train->loc, "state update %d refers to no parameter (%d)", i, u->param);
            continue;
        }
        const struct itr_param *pp = &p->params[u->param];
        if ((unsigned)u->kind >= ITR_UPDATE_KIND_COUNT)
            itr_diag_error(d, train->loc, "the update of '%s' has an invalid kind (%d)", pp->name, (int)u->kind);
        for (int j = 0; j < i; j++) {
            if (p->updates[j].param == u->param)
                itr_diag_error(d, train->loc, "parameter '%s' is updated twice", pp->name);
            if (u->output && p->updates[j].output && strcmp(p->updates[j].output, u->output) == 0)
                itr_diag_error(d, train->loc, "output '%s' updates two parameters", u->output);
        }
        int k = -1;
        for (int j = 0; j < train->n_outputs && u->output; j++)
            if (train->output_names && train->output_names[j] && strcmp(train->output_names[j], u->output) == 0) k = j;
        if (k < 0) {
            itr_diag_error(d, train->loc, "the update of '%s' names output '%s', which the train entry does not have",
                           pp->name, u->output ? u->output : "");
            continue;
        }
        int32_t v = train->outputs[k];
        if (v < 0 || v >= train->n_values) continue;   // reported with the graph
        if (!itr_type_equal(&train->values[v].type, &pp->type)) {
            char a[256], b[256];
            itr_type_format(p, &train->values[v].type, a, sizeof a);
            itr_type_format(p, &pp->type, b, sizeof b);
            itr_diag_error(d, train->loc, "output '%s' (%s) cannot update parameter '%s' (%s)", u->output, a, pp->name, b);
        }
    }
}

bool itr_program_verify(struct itr_program *p, struct itr_diags *d) {
    int errors0 = d->n_errors;
    for (int i = 0; i < p->n_graphs; i++) {
        struct itr_graph *g = p->graphs[i];
        if (!g || g->prog != p) {
            itr_diag_error(d, ITR_NOLOC, "graph %d does not belong to the program", i);
            continue;
        }
        verify_graph(p, g, d);
    }
    for (int i = 0; i < p->n_params; i++)
        for (int k = 0; k < p->params[i].type.rank; k++)
            if (p->params[i].type.dims[k] < 0 || p->params[i].type.dims[k] >= p->n_dimnodes)
                itr_diag_error(d, p->params[i].loc, "parameter '%s' has an invalid dim %d", p->params[i].name, k);
    verify_training(p, d);
    return d->n_errors == errors0;
}
