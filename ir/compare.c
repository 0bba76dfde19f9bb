// Structural equality of programs (ir.h). Values are matched by what they
// are (input position, parameter index, producing node and result index),
// not by name, and dims by structure across the two programs' dim pools,
// with + and * commutative. Entry graphs are compared in order; scan bodies
// through the scan nodes that use them.
#include "ir.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

struct cmp {
    const struct itr_program *a, *b;
    char *why;
    size_t n;
    bool reported;
};

static bool differ(struct cmp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool differ(struct cmp *c, const char *fmt, ...) {
    if (!c->reported && c->why && c->n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, c->n, fmt, ap);
        va_end(ap);
    }
    c->reported = true;
    return false;
}

static bool dim_eq(const struct itr_program *pa, itr_dim a, const struct itr_program *pb, itr_dim b, int depth) {
    if (a < 0 || a >= pa->n_dimnodes || b < 0 || b >= pb->n_dimnodes || depth > 64) return false;
    const struct itr_dim_node *x = &pa->dimnodes[a], *y = &pb->dimnodes[b];
    if (x->kind != y->kind) return false;
    switch (x->kind) {
    case ITR_DIM_CONST: return x->value == y->value;
    case ITR_DIM_SYM:
        return x->value >= 0 && x->value < pa->n_symbols && y->value >= 0 && y->value < pb->n_symbols &&
               strcmp(pa->symbols[x->value].name, pb->symbols[y->value].name) == 0;
    case ITR_DIM_ADD: case ITR_DIM_MUL:
        if (dim_eq(pa, x->a, pb, y->a, depth + 1) && dim_eq(pa, x->b, pb, y->b, depth + 1)) return true;
        return dim_eq(pa, x->a, pb, y->b, depth + 1) && dim_eq(pa, x->b, pb, y->a, depth + 1);
    default:
        return dim_eq(pa, x->a, pb, y->a, depth + 1) && dim_eq(pa, x->b, pb, y->b, depth + 1);
    }
}

static bool type_eq(struct cmp *c, const struct itr_type *x, const struct itr_type *y) {
    if (x->dtype != y->dtype || x->rank != y->rank) return false;
    for (int i = 0; i < x->rank; i++)
        if (!dim_eq(c->a, x->dims[i], c->b, y->dims[i], 0)) return false;
    return true;
}

static void fmt_type(const struct itr_program *p, const struct itr_type *t, char *buf, size_t n) {
    itr_type_format(p, t, buf, n);
}

static bool float_eq(double x, double y) {
    if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
    return x == y && signbit(x) == signbit(y);
}

static bool tensor_eq(const struct itr_tensor *x, const struct itr_tensor *y) {
    if (!x || !y) return x == y;
    if (x->dtype != y->dtype || x->rank != y->rank) return false;
    for (int i = 0; i < x->rank; i++)
        if (x->shape[i] != y->shape[i]) return false;
    int64_t n = itr_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        switch (x->dtype) {
        case ITR_F32: if (!float_eq(((const float *)x->data)[i], ((const float *)y->data)[i])) return false; break;
        case ITR_F64: if (!float_eq(((const double *)x->data)[i], ((const double *)y->data)[i])) return false; break;
        case ITR_I32: if (((const int32_t *)x->data)[i] != ((const int32_t *)y->data)[i]) return false; break;
        case ITR_I64: if (((const int64_t *)x->data)[i] != ((const int64_t *)y->data)[i]) return false; break;
        case ITR_BOOL: if (!((const uint8_t *)x->data)[i] != !((const uint8_t *)y->data)[i]) return false; break;
        default: return false;
        }
    }
    return true;
}

static bool graph_eq(struct cmp *c, const struct itr_graph *x, const struct itr_graph *y, int depth);

static bool attr_eq(struct cmp *c, const struct itr_attr *x, const struct itr_attr *y, int depth) {
    if (x->kind != y->kind) return false;
    switch (x->kind) {
    case ITR_ATTR_NONE: return true;
    case ITR_ATTR_INT: case ITR_ATTR_BOOL: return x->u.i == y->u.i;
    case ITR_ATTR_FLOAT: return float_eq(x->u.f, y->u.f);
    case ITR_ATTR_DTYPE: return x->u.dtype == y->u.dtype;
    case ITR_ATTR_STR: return strcmp(x->u.s ? x->u.s : "", y->u.s ? y->u.s : "") == 0;
    case ITR_ATTR_INTS:
        if (x->u.ints.n != y->u.ints.n) return false;
        for (int i = 0; i < x->u.ints.n; i++)
            if (x->u.ints.v[i] != y->u.ints.v[i]) return false;
        return true;
    case ITR_ATTR_FLOATS:
        if (x->u.floats.n != y->u.floats.n) return false;
        for (int i = 0; i < x->u.floats.n; i++)
            if (!float_eq(x->u.floats.v[i], y->u.floats.v[i])) return false;
        return true;
    case ITR_ATTR_DIMS:
        if (x->u.dims.n != y->u.dims.n) return false;
        for (int i = 0; i < x->u.dims.n; i++)
            if (!dim_eq(c->a, x->u.dims.v[i], c->b, y->u.dims.v[i], 0)) return false;
        return true;
    case ITR_ATTR_TENSOR: return tensor_eq(x->u.tensor, y->u.tensor);
    case ITR_ATTR_GRAPH:
        if (!x->u.graph || !y->u.graph) return x->u.graph == y->u.graph;
        return graph_eq(c, x->u.graph, y->u.graph, depth + 1);
    default: return false;
    }
}

// What a value is, independent of ids and names.
struct vref { int kind; int32_t a, b; };

static struct vref vref_of(const struct itr_graph *g, int32_t v) {
    struct vref r = { -1, 0, 0 };
    if (v < 0 || v >= g->n_values) return r;
    const struct itr_value *val = &g->values[v];
    r.kind = (int)val->kind;
    if (val->kind == ITR_VALUE_INPUT) {
        for (int i = 0; i < g->n_inputs; i++)
            if (g->inputs[i] == v) r.a = i;
    } else if (val->kind == ITR_VALUE_PARAM) {
        r.a = val->param;
    } else {
        r.a = val->node;
        r.b = val->out_index;
    }
    return r;
}

static bool vref_eq(struct vref x, struct vref y) { return x.kind == y.kind && x.a == y.a && x.b == y.b; }

static bool graph_eq(struct cmp *c, const struct itr_graph *x, const struct itr_graph *y, int depth) {
    if (depth > 64) return differ(c, "graphs nested too deeply to compare");
    const char *gn = x->name ? x->name : "?";
    if (strcmp(x->name ? x->name : "", y->name ? y->name : "") != 0)
        return differ(c, "graph names differ: '%s' vs '%s'", gn, y->name ? y->name : "?");
    if (x->kind != y->kind) return differ(c, "graph '%s': kinds differ", gn);
    if (x->train != y->train) return differ(c, "graph '%s' is the train entry in only one program", gn);
    if (x->n_inputs != y->n_inputs)
        return differ(c, "graph '%s': %d inputs vs %d", gn, x->n_inputs, y->n_inputs);
    for (int i = 0; i < x->n_inputs; i++) {
        const struct itr_value *u = &x->values[x->inputs[i]], *v = &y->values[y->inputs[i]];
        if (strcmp(u->name ? u->name : "", v->name ? v->name : "") != 0)
            return differ(c, "graph '%s': input %d is named '%s' vs '%s'", gn, i, u->name, v->name);
        if (!type_eq(c, &u->type, &v->type)) {
            char s1[256], s2[256];
            fmt_type(c->a, &u->type, s1, sizeof s1);
            fmt_type(c->b, &v->type, s2, sizeof s2);
            return differ(c, "graph '%s': input '%s' has type %s vs %s", gn, u->name, s1, s2);
        }
    }
    if (x->n_nodes != y->n_nodes) return differ(c, "graph '%s': %d nodes vs %d", gn, x->n_nodes, y->n_nodes);
    for (int ni = 0; ni < x->n_nodes; ni++) {
        const struct itr_node *m = &x->nodes[ni], *n = &y->nodes[ni];
        if (m->op != n->op)
            return differ(c, "graph '%s': node %d is '%s' vs '%s'", gn, ni, itr_op_name(m->op), itr_op_name(n->op));
        const char *on = itr_op_name(m->op);
        if (m->phase != n->phase)
            return differ(c, "graph '%s': node %d (%s) is in phase %s vs %s", gn, ni, on, itr_phase_name(m->phase),
                          itr_phase_name(n->phase));
        if (m->n_inputs != n->n_inputs)
            return differ(c, "graph '%s': node %d (%s) has %d operands vs %d", gn, ni, on, m->n_inputs, n->n_inputs);
        for (int i = 0; i < m->n_inputs; i++)
            if (!vref_eq(vref_of(x, m->inputs[i]), vref_of(y, n->inputs[i])))
                return differ(c, "graph '%s': node %d (%s) operand %d differs ('%s' vs '%s')", gn, ni, on, i,
                              x->values[m->inputs[i]].name, y->values[n->inputs[i]].name);
        if (m->n_outputs != n->n_outputs)
            return differ(c, "graph '%s': node %d (%s) has %d results vs %d", gn, ni, on, m->n_outputs, n->n_outputs);
        for (int k = 0; k < m->n_outputs; k++)
            if (!type_eq(c, &x->values[m->outputs[k]].type, &y->values[n->outputs[k]].type)) {
                char s1[256], s2[256];
                fmt_type(c->a, &x->values[m->outputs[k]].type, s1, sizeof s1);
                fmt_type(c->b, &y->values[n->outputs[k]].type, s2, sizeof s2);
                return differ(c, "graph '%s': node %d (%s) result %d has type %s vs %s", gn, ni, on, k, s1, s2);
            }
        const struct itr_op_info *info = itr_op_info(m->op);
        for (int k = 0; k < info->n_attrs; k++)
            if (!attr_eq(c, &m->attrs[k], &n->attrs[k], depth)) {
                if (c->reported) return false;
                return differ(c, "graph '%s': node %d (%s) attribute '%s' differs", gn, ni, on, info->attrs[k].name);
            }
    }
    if (x->n_outputs != y->n_outputs) return differ(c, "graph '%s': %d outputs vs %d", gn, x->n_outputs, y->n_outputs);
    for (int i = 0; i < x->n_outputs; i++) {
        if (!vref_eq(vref_of(x, x->outputs[i]), vref_of(y, y->outputs[i])))
            return differ(c, "graph '%s': output %d is a different value", gn, i);
        // Body outputs are positional; only entries' output names are part of the interface.
        if (x->kind == ITR_GRAPH_ENTRY) {
            const char *p = x->output_names ? x->output_names[i] : "", *q = y->output_names ? y->output_names[i] : "";
            if (strcmp(p ? p : "", q ? q : "") != 0)
                return differ(c, "graph '%s': output %d is named '%s' vs '%s'", gn, i, p ? p : "", q ? q : "");
        }
    }
    return true;
}

static bool init_eq(const struct itr_init *x, const struct itr_init *y) {
    if (x->kind != y->kind) return false;
    switch (x->kind) {
    case ITR_INIT_CONSTANT: case ITR_INIT_XAVIER_UNIFORM: return float_eq(x->a, y->a);
    case ITR_INIT_UNIFORM: case ITR_INIT_NORMAL: return float_eq(x->a, y->a) && float_eq(x->b, y->b);
    default: return true;
    }
}

bool itr_program_equal(const struct itr_program *a, const struct itr_program *b, char *why, size_t n) {
    struct cmp c = { a, b, why, n, false };
    if (why && n) why[0] = 0;
    if (strcmp(a->name ? a->name : "", b->name ? b->name : "") != 0)
        return differ(&c, "model names differ: '%s' vs '%s'", a->name ? a->name : "", b->name ? b->name : "");
    if (a->n_symbols != b->n_symbols) return differ(&c, "%d dims vs %d", a->n_symbols, b->n_symbols);
    for (int i = 0; i < a->n_symbols; i++) {
        const struct itr_symbol *x = &a->symbols[i], *y = &b->symbols[i];
        if (strcmp(x->name, y->name) != 0) return differ(&c, "dim %d is '%s' vs '%s'", i, x->name, y->name);
        if (x->has_default != y->has_default || (x->has_default && x->default_value != y->default_value))
            return differ(&c, "dim '%s' has different defaults", x->name);
    }
    if (a->n_params != b->n_params) return differ(&c, "%d parameters vs %d", a->n_params, b->n_params);
    for (int i = 0; i < a->n_params; i++) {
        const struct itr_param *x = &a->params[i], *y = &b->params[i];
        if (strcmp(x->name, y->name) != 0) return differ(&c, "parameter %d is '%s' vs '%s'", i, x->name, y->name);
        if (!type_eq(&c, &x->type, &y->type)) {
            char s1[256], s2[256];
            fmt_type(a, &x->type, s1, sizeof s1);
            fmt_type(b, &y->type, s2, sizeof s2);
            return differ(&c, "parameter '%s' has type %s vs %s", x->name, s1, s2);
        }
        if (!init_eq(&x->init, &y->init)) return differ(&c, "parameter '%s' has different initialisers", x->name);
        if (x->frozen != y->frozen) return differ(&c, "parameter '%s' is frozen in only one program", x->name);
    }
    const struct itr_optimizer *oa = &a->optimizer, *ob = &b->optimizer;
    if (oa->kind != ob->kind)
        return differ(&c, "optimizer %s vs %s", itr_optimizer_kind_name(oa->kind), itr_optimizer_kind_name(ob->kind));
    if (!float_eq(oa->lr, ob->lr) || !float_eq(oa->beta1, ob->beta1) || !float_eq(oa->beta2, ob->beta2) ||
        !float_eq(oa->eps, ob->eps) || !float_eq(oa->momentum, ob->momentum) ||
        !float_eq(oa->weight_decay, ob->weight_decay) || !float_eq(oa->clip_grad_norm, ob->clip_grad_norm))
        return differ(&c, "the optimizers' hyperparameters differ");
    if (a->train_compiled != b->train_compiled) return differ(&c, "the training step is compiled in only one program");
    if (a->n_updates != b->n_updates) return differ(&c, "%d state updates vs %d", a->n_updates, b->n_updates);
    for (int i = 0; i < a->n_updates; i++) {
        const struct itr_state_update *x = &a->updates[i], *y = &b->updates[i];
        if (x->param != y->param || x->kind != y->kind || strcmp(x->output ? x->output : "", y->output ? y->output : ""))
            return differ(&c, "state update %d differs ('%s' vs '%s')", i, x->output ? x->output : "",
                          y->output ? y->output : "");
    }
    int ia = 0, ib = 0;
    for (;;) {
        while (ia < a->n_graphs && a->graphs[ia]->kind != ITR_GRAPH_ENTRY) ia++;
        while (ib < b->n_graphs && b->graphs[ib]->kind != ITR_GRAPH_ENTRY) ib++;
        if (ia == a->n_graphs || ib == b->n_graphs) {
            if (ia != a->n_graphs || ib != b->n_graphs)
                return differ(&c, "entry '%s' exists in only one program",
                              ia < a->n_graphs ? a->graphs[ia]->name : b->graphs[ib]->name);
            break;
        }
        if (!graph_eq(&c, a->graphs[ia], b->graphs[ib], 0)) return false;
        ia++;
        ib++;
    }
    return true;
}
