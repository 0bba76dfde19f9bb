// The canonical form of a program (docs/ir.md, "The canonical form").
//
// Everything printed is chosen so that parsing it back gives an equal
// program and printing that again gives the same text: node results get
// fresh names _0, _1, ... in node order; dims are written with commutative
// operands in a fixed order and explicit parentheses for right-nested
// operations (the dim pool's own operand order depends on interning
// history, which a re-parse does not reproduce); floats use the fewest
// digits that read back to the same bits.
#include "../text.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct sb {
    char *s;
    size_t n, cap;
};

static void sb_reserve(struct sb *b, size_t more) {
    if (b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    b->s = s;
    b->cap = cap;
}

static void sb_puts(struct sb *b, const char *s) {
    size_t k = strlen(s);
    sb_reserve(b, k);
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k > 0) {
        sb_reserve(b, (size_t)k);
        vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap2);
        b->n += (size_t)k;
    }
    va_end(ap2);
}

// ------------------------------------------------------------ names

static bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

// A name as the lexer reads it back: dotted identifiers; anything else is
// mapped to '_' (names from other front ends may hold any character).
static void put_name(struct sb *b, const char *name) {
    if (!name || !*name) { sb_puts(b, "_"); return; }
    if (strcmp(name, "true") == 0 || strcmp(name, "false") == 0) { sb_printf(b, "%s_", name); return; }
    sb_reserve(b, strlen(name) + 1);
    bool seg_start = true;
    for (const char *c = name; *c; c++) {
        char ch = *c;
        if (ch == '.' && !seg_start && c[1] && ident_start(c[1])) { b->s[b->n++] = '.'; seg_start = true; continue; }
        if (seg_start && !ident_start(ch)) {
            b->s[b->n++] = '_';
            if (ident_char(ch)) { sb_reserve(b, strlen(c) + 1); b->s[b->n++] = ch; }
        } else {
            b->s[b->n++] = ident_char(ch) ? ch : '_';
        }
        seg_start = false;
    }
    b->s[b->n] = 0;
}

// ------------------------------------------------------------ numbers

// Fewest significant digits that read back (as the lexer and the
// elaborator do: strtod, then a cast for f32) to the same value.
static void put_double(struct sb *b, double x, bool as_f32) {
    if (isnan(x)) { sb_puts(b, "nan"); return; }
    if (isinf(x)) { sb_puts(b, x < 0 ? "-inf" : "inf"); return; }
    if (x == 0) { sb_puts(b, signbit(x) ? "-0.0" : "0"); return; }
    char buf[64];
    int maxp = as_f32 ? 9 : 17;
    for (int prec = 1; prec <= maxp; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        double y = strtod(buf, NULL);
        if (as_f32 ? (float)y == (float)x : y == x) break;
    }
    sb_puts(b, buf);
}

// ------------------------------------------------------------ dims and types

static int dim_prec(const struct itr_program *p, itr_dim d) {
    if (d < 0 || d >= p->n_dimnodes) return 3;
    switch (p->dimnodes[d].kind) {
    case ITR_DIM_ADD: case ITR_DIM_SUB: return 1;
    case ITR_DIM_MUL: case ITR_DIM_DIV: return 2;
    default: return 3;
    }
}

static char *dim_canon(const struct itr_program *p, itr_dim d);

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)(k > 0 ? k : 0) + 1);
    if (!s) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    vsnprintf(s, (size_t)(k > 0 ? k : 0) + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

// The canonical text of a dim (malloc'd). Commutative operands: a constant
// goes right, otherwise the operand with the smaller text goes left.
static char *dim_canon(const struct itr_program *p, itr_dim d) {
    if (d < 0 || d >= p->n_dimnodes) return dup_printf("?");
    const struct itr_dim_node *e = &p->dimnodes[d];
    if (e->kind == ITR_DIM_CONST) return dup_printf("%lld", (long long)e->value);
    if (e->kind == ITR_DIM_SYM) {
        struct sb b = { 0 };
        put_name(&b, e->value >= 0 && e->value < p->n_symbols ? p->symbols[e->value].name : "?");
        return b.s;
    }
    itr_dim l = e->a, r = e->b;
    char *ls = dim_canon(p, l), *rs = dim_canon(p, r);
    if (e->kind == ITR_DIM_ADD || e->kind == ITR_DIM_MUL) {
        bool lc = itr_dim_is_const(p, l, NULL), rc = itr_dim_is_const(p, r, NULL);
        if ((lc && !rc) || (lc == rc && strcmp(ls, rs) > 0)) {
            char *t = ls; ls = rs; rs = t;
            itr_dim td = l; l = r; r = td;
        }
    }
    int prec = dim_prec(p, d);
    const char *op = e->kind == ITR_DIM_ADD ? "+" : e->kind == ITR_DIM_SUB ? "-" : e->kind == ITR_DIM_MUL ? "*" : "/";
    bool lp = dim_prec(p, l) < prec, rp = dim_prec(p, r) <= prec;
    char *s = dup_printf("%s%s%s%s%s%s%s", lp ? "(" : "", ls, lp ? ")" : "", op, rp ? "(" : "", rs, rp ? ")" : "");
    free(ls);
    free(rs);
    return s;
}

static void put_dim(struct sb *b, const struct itr_program *p, itr_dim d) {
    char *s = dim_canon(p, d);
    sb_puts(b, s);
    free(s);
}

static void put_type(struct sb *b, const struct itr_program *p, const struct itr_type *t) {
    sb_printf(b, "%s[", itr_dtype_name(t->dtype));
    for (int i = 0; i < t->rank; i++) {
        if (i) sb_puts(b, ", ");
        put_dim(b, p, t->dims[i]);
    }
    sb_puts(b, "]");
}

// ------------------------------------------------------------ attributes

static void put_tensor(struct sb *b, const struct itr_tensor *t) {
    sb_printf(b, "%s[", itr_dtype_name(t->dtype));
    for (int i = 0; i < t->rank; i++) sb_printf(b, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    sb_puts(b, "]{");
    int64_t n = itr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (i) sb_puts(b, ", ");
        switch (t->dtype) {
        case ITR_F32: put_double(b, ((const float *)t->data)[i], true); break;
        case ITR_F64: put_double(b, ((const double *)t->data)[i], false); break;
        case ITR_I32: sb_printf(b, "%d", ((const int32_t *)t->data)[i]); break;
        case ITR_I64: sb_printf(b, "%lld", (long long)((const int64_t *)t->data)[i]); break;
        case ITR_BOOL: sb_puts(b, ((const uint8_t *)t->data)[i] ? "true" : "false"); break;
        default: sb_puts(b, "0"); break;
        }
    }
    sb_puts(b, "}");
}

static void put_str(struct sb *b, const char *s) {
    sb_puts(b, "\"");
    for (; *s; s++) {
        switch (*s) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default: { char c[2] = { *s, 0 }; sb_puts(b, c); break; }
        }
    }
    sb_puts(b, "\"");
}

static void put_attr(struct sb *b, const struct itr_program *p, const struct itr_attr *a) {
    switch (a->kind) {
    case ITR_ATTR_INT: sb_printf(b, "%lld", (long long)a->u.i); break;
    case ITR_ATTR_FLOAT: put_double(b, a->u.f, false); break;
    case ITR_ATTR_BOOL: sb_puts(b, a->u.i ? "true" : "false"); break;
    case ITR_ATTR_INTS:
        sb_puts(b, "[");
        for (int i = 0; i < a->u.ints.n; i++) sb_printf(b, "%s%lld", i ? ", " : "", (long long)a->u.ints.v[i]);
        sb_puts(b, "]");
        break;
    case ITR_ATTR_FLOATS:
        sb_puts(b, "[");
        for (int i = 0; i < a->u.floats.n; i++) {
            if (i) sb_puts(b, ", ");
            put_double(b, a->u.floats.v[i], false);
        }
        sb_puts(b, "]");
        break;
    case ITR_ATTR_DIMS:
        sb_puts(b, "[");
        for (int i = 0; i < a->u.dims.n; i++) {
            if (i) sb_puts(b, ", ");
            put_dim(b, p, a->u.dims.v[i]);
        }
        sb_puts(b, "]");
        break;
    case ITR_ATTR_DTYPE: sb_puts(b, itr_dtype_name(a->u.dtype)); break;
    case ITR_ATTR_STR: put_str(b, a->u.s ? a->u.s : ""); break;
    case ITR_ATTR_TENSOR:
        if (a->u.tensor) put_tensor(b, a->u.tensor);
        else sb_puts(b, "f32[]{0}");
        break;
    case ITR_ATTR_GRAPH: put_name(b, a->u.graph ? a->u.graph->name : "?"); break;
    default: sb_puts(b, "?"); break;
    }
}

// Whether a equals the schema default (so the canonical form leaves it out).
static bool attr_is_default(const struct itr_attr_spec *sp, const struct itr_attr *a) {
    if (!sp->has_default) return !sp->required && a->kind == ITR_ATTR_NONE;
    const struct itr_attr *d = &sp->def;
    if (a->kind != d->kind) return false;
    switch (a->kind) {
    case ITR_ATTR_INT: case ITR_ATTR_BOOL: return a->u.i == d->u.i;
    case ITR_ATTR_FLOAT: return a->u.f == d->u.f && signbit(a->u.f) == signbit(d->u.f);
    case ITR_ATTR_DTYPE: return a->u.dtype == d->u.dtype;
    case ITR_ATTR_INTS: return a->u.ints.n == 0 && d->u.ints.n == 0;
    case ITR_ATTR_FLOATS: return a->u.floats.n == 0 && d->u.floats.n == 0;
    case ITR_ATTR_DIMS: return a->u.dims.n == 0 && d->u.dims.n == 0;
    default: return false;
    }
}

// ------------------------------------------------------------ graphs

static bool name_reserved(const struct itr_program *p, const struct itr_graph *g, const char *s) {
    for (int i = 0; i < g->n_inputs; i++)
        if (g->values[g->inputs[i]].name && strcmp(g->values[g->inputs[i]].name, s) == 0) return true;
    if (itr_program_find_param(p, s) >= 0) return true;
    if (itr_program_find_symbol(p, s) >= 0) return true;
    return false;
}

static void put_value(struct sb *b, const struct itr_graph *g, char **names, int32_t v) {
    if (v < 0 || v >= g->n_values) { sb_puts(b, "?"); return; }
    if (names[v]) sb_puts(b, names[v]);
    else put_name(b, g->values[v].name);
}

// The update that writes output k of the train graph, or NULL.
static const struct itr_state_update *update_of_output(const struct itr_program *p, const struct itr_graph *g, int k) {
    if (!g->train || !g->output_names) return NULL;
    for (int i = 0; i < p->n_updates; i++)
        if (p->updates[i].output && strcmp(p->updates[i].output, g->output_names[k]) == 0) return &p->updates[i];
    return NULL;
}

static void put_graph(struct sb *b, const struct itr_program *p, const struct itr_graph *g) {
    bool entry = g->kind == ITR_GRAPH_ENTRY;
    if (g->train) sb_puts(b, "  train");
    else {
        sb_puts(b, entry ? "  entry " : "  def ");
        put_name(b, g->name);
    }
    sb_puts(b, "(");
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        if (i) sb_puts(b, ", ");
        put_name(b, v->name);
        sb_puts(b, ": ");
        put_type(b, p, &v->type);
    }
    sb_puts(b, ")");
    if (entry) {
        // The train entry's state updates are `update` statements, not outputs.
        sb_puts(b, " -> (");
        bool first = true;
        for (int i = 0; i < g->n_outputs; i++) {
            if (update_of_output(p, g, i)) continue;
            if (!first) sb_puts(b, ", ");
            put_name(b, g->output_names ? g->output_names[i] : NULL);
            first = false;
        }
        sb_puts(b, ")");
    }
    sb_puts(b, " {\n");

    // Fresh names for node results; inputs and parameters keep theirs.
    char **names = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *names);
    if (!names) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    int counter = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const struct itr_node *n = &g->nodes[ni];
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (v < 0 || v >= g->n_values || names[v]) continue;
            char buf[32];
            do snprintf(buf, sizeof buf, "_%d", counter++);
            while (name_reserved(p, g, buf));
            names[v] = strdup(buf);
            if (!names[v]) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        }
    }
    for (int ni = 0; ni < g->n_nodes; ni++) {
        const struct itr_node *n = &g->nodes[ni];
        const struct itr_op_info *info = itr_op_info(n->op);
        sb_puts(b, "    ");
        for (int k = 0; k < n->n_outputs; k++) {
            if (k) sb_puts(b, ", ");
            put_value(b, g, names, n->outputs[k]);
        }
        sb_printf(b, " = %s(", info->name);
        bool first = true;
        int body = -1;
        for (int k = 0; k < info->n_attrs; k++)
            if (info->attrs[k].kind == ITR_ATTR_GRAPH) body = k;
        if (body >= 0) {
            put_attr(b, p, &n->attrs[body]);
            first = false;
        }
        for (int i = 0; i < n->n_inputs; i++) {
            if (!first) sb_puts(b, ", ");
            put_value(b, g, names, n->inputs[i]);
            first = false;
        }
        for (int k = 0; k < info->n_attrs; k++) {
            if (k == body || attr_is_default(&info->attrs[k], &n->attrs[k])) continue;
            if (!first) sb_puts(b, ", ");
            sb_printf(b, "%s=", info->attrs[k].name);
            put_attr(b, p, &n->attrs[k]);
            first = false;
        }
        sb_puts(b, ")\n");
    }
    for (int i = 0; i < p->n_updates && g->train; i++) {
        for (int k = 0; k < g->n_outputs; k++) {
            if (update_of_output(p, g, k) != &p->updates[i]) continue;
            sb_puts(b, "    update ");
            put_name(b, p->updates[i].param >= 0 && p->updates[i].param < p->n_params
                            ? p->params[p->updates[i].param].name : "?");
            sb_puts(b, " = ");
            put_value(b, g, names, g->outputs[k]);
            sb_puts(b, "\n");
            break;
        }
    }
    sb_puts(b, "    return");
    bool first_out = true;
    for (int i = 0; i < g->n_outputs; i++) {
        if (update_of_output(p, g, i)) continue;
        sb_puts(b, first_out ? " " : ", ");
        put_value(b, g, names, g->outputs[i]);
        first_out = false;
    }
    sb_puts(b, "\n  }\n");
    for (int i = 0; i < g->n_values; i++) free(names[i]);
    free(names);
}

static void put_init(struct sb *b, const struct itr_init *in) {
    sb_puts(b, itr_init_kind_name(in->kind));
    switch (in->kind) {
    case ITR_INIT_CONSTANT: case ITR_INIT_XAVIER_UNIFORM:
        sb_puts(b, "(");
        put_double(b, in->a, false);
        sb_puts(b, ")");
        break;
    case ITR_INIT_UNIFORM: case ITR_INIT_NORMAL:
        sb_puts(b, "(");
        put_double(b, in->a, false);
        sb_puts(b, ", ");
        put_double(b, in->b, false);
        sb_puts(b, ")");
        break;
    default: break;
    }
}

// Every hyperparameter the optimizer takes, defaults included, so the text
// does not depend on the defaults of the version that reads it.
static void put_optimizer(struct sb *b, const struct itr_optimizer *o) {
    sb_printf(b, "  optimizer %s(lr=", itr_optimizer_kind_name(o->kind));
    put_double(b, o->lr, false);
    if (o->kind == ITR_OPT_SGD) {
        sb_puts(b, ", momentum=");
        put_double(b, o->momentum, false);
    } else {
        sb_puts(b, ", beta1=");
        put_double(b, o->beta1, false);
        sb_puts(b, ", beta2=");
        put_double(b, o->beta2, false);
        sb_puts(b, ", eps=");
        put_double(b, o->eps, false);
    }
    sb_puts(b, ", weight_decay=");
    put_double(b, o->weight_decay, false);
    sb_puts(b, ", clip_grad_norm=");
    put_double(b, o->clip_grad_norm, false);
    sb_puts(b, ")\n");
}

char *itr_print_program(const struct itr_program *p) {
    struct sb b = { 0 };
    sb_puts(&b, "model ");
    put_name(&b, p->name ? p->name : "model");
    sb_puts(&b, " {\n");
    if (p->n_symbols) {
        sb_puts(&b, "  dim ");
        for (int i = 0; i < p->n_symbols; i++) {
            if (i) sb_puts(&b, ", ");
            put_name(&b, p->symbols[i].name);
            if (p->symbols[i].has_default) sb_printf(&b, " = %lld", (long long)p->symbols[i].default_value);
        }
        sb_puts(&b, "\n");
    }
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_param *pa = &p->params[i];
        sb_puts(&b, pa->frozen ? "  frozen param " : "  param ");
        put_name(&b, pa->name);
        sb_puts(&b, ": ");
        put_type(&b, p, &pa->type);
        sb_puts(&b, " = ");
        put_init(&b, &pa->init);
        sb_puts(&b, "\n");
    }
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_BODY) put_graph(&b, p, p->graphs[i]);
    if (p->train_compiled)
        sb_puts(&b, "  # the train entry is a compiled training step (docs/training.md): this text is for reading\n"
                    "  # and does not parse back to the same program\n");
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) put_graph(&b, p, p->graphs[i]);
    if (p->optimizer.kind != ITR_OPT_NONE) put_optimizer(&b, &p->optimizer);
    sb_puts(&b, "}\n");
    return b.s;
}
