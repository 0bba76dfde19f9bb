// itrc dump: a plan, readably (compiler/dump.h).
#include "compiler/dump.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ir/kir.h"
#include "ir/memplan.h"

void itr_format_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    // Keep float literals recognisable as floats ("1.0", not "1").
    if (strspn(buf, "-0123456789") == strlen(buf) && strlen(buf) + 3 <= n) strcat(buf, ".0");
}

void itr_format_init(const struct itr_init *init, char *buf, size_t n) {
    char a[40], b[40];
    itr_format_double(init->a, a, sizeof a);
    itr_format_double(init->b, b, sizeof b);
    const char *name = itr_init_kind_name(init->kind);
    switch (init->kind) {
    case ITR_INIT_CONSTANT: snprintf(buf, n, "%s(%s)", name, a); break;
    case ITR_INIT_UNIFORM: case ITR_INIT_NORMAL: snprintf(buf, n, "%s(%s, %s)", name, a, b); break;
    case ITR_INIT_XAVIER_UNIFORM: snprintf(buf, n, "%s(%s)", name, a); break;
    default: snprintf(buf, n, "%s", name); break;
    }
}

bool itr_type_numel_default(const struct itr_program *p, const struct itr_type *t, int64_t *numel, char *expr,
                            size_t n) {
    int64_t *val = calloc((size_t)p->n_symbols + 1, sizeof *val);
    bool *bound = calloc((size_t)p->n_symbols + 1, sizeof *bound);
    if (!val || !bound) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    for (int i = 0; i < p->n_symbols; i++) {
        bound[i] = p->symbols[i].has_default;
        val[i] = p->symbols[i].default_value;
    }
    bool ok = true;
    int64_t total = 1;
    for (int i = 0; i < t->rank && ok; i++) {
        int64_t v;
        int32_t unb;
        if (!itr_dim_eval(p, t->dims[i], val, bound, &v, &unb) || v < 0) ok = false;
        else if (v != 0 && total > INT64_MAX / v) ok = false;
        else total *= v;
    }
    free(val);
    free(bound);
    if (ok) {
        *numel = total;
        if (expr && n) snprintf(expr, n, "%" PRId64, total);
        return true;
    }
    if (expr && n) {
        size_t w = 0;
        expr[0] = 0;
        for (int i = 0; i < t->rank && w + 1 < n; i++) {
            char ds[96];
            itr_dim_format(p, t->dims[i], ds, sizeof ds);
            bool compound = strpbrk(ds, "+-*/") != NULL;
            int k = snprintf(expr + w, n - w, "%s%s%s%s", i ? "*" : "", compound ? "(" : "", ds, compound ? ")" : "");
            if (k > 0) w += (size_t)k;
        }
    }
    return false;
}

// ------------------------------------------------------------ attributes

// Shortest form that reads back as the same float (1e-08, not 9.99999994e-09).
static void format_float(float v, char *buf, size_t n) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (strspn(buf, "-0123456789") == strlen(buf) && strlen(buf) + 3 <= n) strcat(buf, ".0");
}

static void print_tensor_literal(FILE *f, const struct itr_tensor *t) {
    char shape[160];
    itr_shape_format(t->rank, t->shape, shape, sizeof shape);
    fprintf(f, "%s%s{", itr_dtype_name(t->dtype), shape);
    int64_t n = itr_tensor_numel(t);
    const int64_t shown = 8;
    for (int64_t i = 0; i < n && i < shown; i++) {
        char v[40];
        if (t->dtype == ITR_F32) format_float(((const float *)t->data)[i], v, sizeof v);
        else if (t->dtype == ITR_F64) itr_format_double(((const double *)t->data)[i], v, sizeof v);
        else if (t->dtype == ITR_BOOL) snprintf(v, sizeof v, "%s", itr_tensor_get(t, i) != 0 ? "true" : "false");
        else if (t->dtype == ITR_I64) snprintf(v, sizeof v, "%" PRId64, ((const int64_t *)t->data)[i]);
        else snprintf(v, sizeof v, "%.0f", itr_tensor_get(t, i));
        fprintf(f, "%s%s", i ? ", " : "", v);
    }
    if (n > shown) fprintf(f, ", ... (%" PRId64 " elements)", n);
    fputc('}', f);
}

static void print_attr(FILE *f, const struct itr_program *p, const struct itr_attr *a) {
    char buf[64];
    switch (a->kind) {
    case ITR_ATTR_INT: fprintf(f, "%" PRId64, a->u.i); break;
    case ITR_ATTR_BOOL: fputs(a->u.i ? "true" : "false", f); break;
    case ITR_ATTR_FLOAT: itr_format_double(a->u.f, buf, sizeof buf); fputs(buf, f); break;
    case ITR_ATTR_DTYPE: fputs(itr_dtype_name(a->u.dtype), f); break;
    case ITR_ATTR_STR: fprintf(f, "\"%s\"", a->u.s ? a->u.s : ""); break;
    case ITR_ATTR_INTS:
        fputc('[', f);
        for (int i = 0; i < a->u.ints.n; i++) fprintf(f, "%s%" PRId64, i ? ", " : "", a->u.ints.v[i]);
        fputc(']', f);
        break;
    case ITR_ATTR_FLOATS:
        fputc('[', f);
        for (int i = 0; i < a->u.floats.n; i++) {
            itr_format_double(a->u.floats.v[i], buf, sizeof buf);
            fprintf(f, "%s%s", i ? ", " : "", buf);
        }
        fputc(']', f);
        break;
    case ITR_ATTR_DIMS:
        fputc('[', f);
        for (int i = 0; i < a->u.dims.n; i++) {
            char ds[96];
            itr_dim_format(p, a->u.dims.v[i], ds, sizeof ds);
            fprintf(f, "%s%s", i ? ", " : "", ds);
        }
        fputc(']', f);
        break;
    case ITR_ATTR_GRAPH: fputs(a->u.graph && a->u.graph->name ? a->u.graph->name : "?", f); break;
    case ITR_ATTR_TENSOR:
        if (a->u.tensor) print_tensor_literal(f, a->u.tensor);
        else fputs("?", f);
        break;
    default: fputs("?", f); break;
    }
}

static bool attr_is_default(const struct itr_attr_spec *s, const struct itr_attr *a) {
    if (a->kind == ITR_ATTR_NONE) return true;
    if (!s->has_default || s->def.kind != a->kind) return false;
    switch (a->kind) {
    case ITR_ATTR_INT: case ITR_ATTR_BOOL: return a->u.i == s->def.u.i;
    case ITR_ATTR_FLOAT: return memcmp(&a->u.f, &s->def.u.f, sizeof a->u.f) == 0;
    case ITR_ATTR_DTYPE: return a->u.dtype == s->def.u.dtype;
    case ITR_ATTR_INTS: return a->u.ints.n == 0;     // list defaults are always []
    case ITR_ATTR_FLOATS: return a->u.floats.n == 0;
    case ITR_ATTR_DIMS: return a->u.dims.n == 0;
    default: return false;
    }
}

// ------------------------------------------------------------ graphs

static void print_type(FILE *f, const struct itr_program *p, const struct itr_type *t) {
    char buf[512];
    itr_type_format(p, t, buf, sizeof buf);
    fputs(buf, f);
}

static void print_signature(FILE *f, const struct itr_program *p, const struct itr_graph *g) {
    fprintf(f, "%s(", g->name);
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        fprintf(f, "%s%s: ", i ? ", " : "", v->name);
        print_type(f, p, &v->type);
    }
    fputs(") -> (", f);
    for (int i = 0; i < g->n_outputs; i++) {
        fprintf(f, "%s%s: ", i ? ", " : "", g->output_names[i]);
        print_type(f, p, &g->values[g->outputs[i]].type);
    }
    fputc(')', f);
}

static int graph_param_count(const struct itr_graph *g) {
    int n = 0;
    for (int i = 0; i < g->n_values; i++) n += g->values[i].kind == ITR_VALUE_PARAM;
    return n;
}

static void print_node(FILE *f, const struct itr_program *p, const struct itr_graph *g, const struct itr_node *n) {
    fputs("  ", f);
    for (int i = 0; i < n->n_outputs; i++) fprintf(f, "%s%s", i ? ", " : "", g->values[n->outputs[i]].name);
    fprintf(f, "%s%s(", n->n_outputs ? " = " : "", itr_op_name(n->op));
    bool first = true;
    for (int i = 0; i < n->n_inputs; i++) {
        int32_t v = n->inputs[i];
        fprintf(f, "%s%s", first ? "" : ", ", v >= 0 && v < g->n_values ? g->values[v].name : "?");
        first = false;
    }
    const struct itr_op_info *info = itr_op_info(n->op);
    for (int k = 0; k < info->n_attrs; k++) {
        if (attr_is_default(&info->attrs[k], &n->attrs[k])) continue;
        fprintf(f, "%s%s=", first ? "" : ", ", info->attrs[k].name);
        print_attr(f, p, &n->attrs[k]);
        first = false;
    }
    fputs(")  : ", f);
    for (int i = 0; i < n->n_outputs; i++) {
        if (i) fputs(", ", f);
        print_type(f, p, &g->values[n->outputs[i]].type);
    }
    if (n->scope) fprintf(f, "  [%s]", n->scope);
    fputc('\n', f);
}

// The optimizer, the size of each phase of the training step, and what the
// runtime writes back after a step.
static void print_training(FILE *f, const struct itr_program *p) {
    const struct itr_graph *g = itr_program_train_graph(p);
    if (!g) return;
    const struct itr_optimizer *o = &p->optimizer;
    char v[7][40];
    double x[7] = { o->lr, o->beta1, o->beta2, o->eps, o->momentum, o->weight_decay, o->clip_grad_norm };
    for (int i = 0; i < 7; i++) itr_format_double(x[i], v[i], sizeof v[i]);
    fprintf(f, "\ntraining\n  optimizer: %s(lr=%s", itr_optimizer_kind_name(o->kind), v[0]);
    if (o->kind == ITR_OPT_SGD) fprintf(f, ", momentum=%s", v[4]);
    else fprintf(f, ", beta1=%s, beta2=%s, eps=%s", v[1], v[2], v[3]);
    fprintf(f, ", weight_decay=%s, clip_grad_norm=%s)\n", v[5], v[6]);
    int count[ITR_PHASE_COUNT] = { 0 };
    for (int i = 0; i < g->n_nodes; i++)
        if ((unsigned)g->nodes[i].phase < ITR_PHASE_COUNT) count[g->nodes[i].phase]++;
    if (p->train_compiled)
        fprintf(f, "  train: %d nodes (forward %d, backward %d, optimizer %d)\n", g->n_nodes, count[ITR_PHASE_FORWARD],
                count[ITR_PHASE_BACKWARD], count[ITR_PHASE_OPTIMIZER]);
    else
        fprintf(f, "  train: %d nodes (the forward pass only: the training step is not compiled)\n", g->n_nodes);
    static const char *const kind[ITR_UPDATE_KIND_COUNT] = { "state", "param", "optimizer state" };
    fprintf(f, "  updates after each step (%d)\n", p->n_updates);
    for (int i = 0; i < p->n_updates; i++) {
        const struct itr_state_update *u = &p->updates[i];
        fprintf(f, "    %s -> %s  (%s)\n", u->output, u->param >= 0 && u->param < p->n_params ? p->params[u->param].name : "?",
                (unsigned)u->kind < ITR_UPDATE_KIND_COUNT ? kind[u->kind] : "?");
    }
}

void itr_dump_plan(FILE *f, const char *path, const struct itr_program *p, const struct itr_plan_info *info) {
    fprintf(f, "plan %s\n", path);
    fprintf(f, "  format version: %u\n", info->format_version);
    fprintf(f, "  compiler:       itrc %s\n", info->compiler_version);
    fprintf(f, "  fingerprint:    %s\n", info->fingerprint);
    fprintf(f, "  target:         %s\n", info->target);
    fprintf(f, "  model:          %s\n", p->name ? p->name : "(unnamed)");

    fprintf(f, "\nsymbols (%d)\n", p->n_symbols);
    for (int i = 0; i < p->n_symbols; i++) {
        if (p->symbols[i].has_default)
            fprintf(f, "  %s = %" PRId64 "\n", p->symbols[i].name, p->symbols[i].default_value);
        else
            fprintf(f, "  %s  (bound at run time)\n", p->symbols[i].name);
    }

    fprintf(f, "\nparameters (%d)\n", p->n_params);
    int64_t total = 0;
    int symbolic = 0;
    size_t width = 4;
    for (int i = 0; i < p->n_params; i++)
        if (strlen(p->params[i].name) > width) width = strlen(p->params[i].name);
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_param *pp = &p->params[i];
        char type[256], init[128], count[128];
        itr_type_format(p, &pp->type, type, sizeof type);
        itr_format_init(&pp->init, init, sizeof init);
        int64_t numel;
        if (itr_type_numel_default(p, &pp->type, &numel, count, sizeof count)) total += numel;
        else symbolic++;
        fprintf(f, "  %-*s  %-20s  %-28s  %s%s\n", (int)width, pp->name, type, init, count,
                pp->frozen ? "  frozen" : "");
    }
    if (symbolic)
        fprintf(f, "  total: %" PRId64 " values in %d params, plus %d params sized by unbound dims\n", total,
                p->n_params - symbolic, symbolic);
    else
        fprintf(f, "  total: %" PRId64 " values in %d param%s\n", total, p->n_params, p->n_params == 1 ? "" : "s");

    int n_entries = 0, n_bodies = 0;
    for (int i = 0; i < p->n_graphs; i++) {
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) n_entries++;
        else n_bodies++;
    }
    fprintf(f, "\nentry points (%d)\n", n_entries);
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        fputs("  ", f);
        print_signature(f, p, g);
        int np = graph_param_count(g);
        fprintf(f, "\n      %d node%s, %d param%s%s\n", g->n_nodes, g->n_nodes == 1 ? "" : "s", np, np == 1 ? "" : "s",
                g->train ? " (the train entry)" : "");
    }
    print_training(f, p);
    if (n_bodies) {
        fprintf(f, "\nscan bodies (%d)\n", n_bodies);
        for (int i = 0; i < p->n_graphs; i++) {
            const struct itr_graph *g = p->graphs[i];
            if (g->kind != ITR_GRAPH_BODY) continue;
            fputs("  ", f);
            print_signature(f, p, g);
            fprintf(f, "\n      %d node%s\n", g->n_nodes, g->n_nodes == 1 ? "" : "s");
        }
    }
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        fprintf(f, "\n%s %s\n", g->kind == ITR_GRAPH_ENTRY ? "entry" : "body", g->name);
        for (int k = 0; k < g->n_nodes; k++) {
            enum itr_phase ph = g->nodes[k].phase;
            if (ph != ITR_PHASE_NONE && (k == 0 || g->nodes[k - 1].phase != ph)) fprintf(f, "  # %s\n", itr_phase_name(ph));
            print_node(f, p, g, &g->nodes[k]);
        }
        fputs("  return ", f);
        for (int k = 0; k < g->n_outputs; k++) {
            int32_t v = g->outputs[k];
            const char *vn = v >= 0 && v < g->n_values ? g->values[v].name : "?";
            if (strcmp(vn, g->output_names[k]) == 0) fprintf(f, "%s%s", k ? ", " : "", vn);
            else fprintf(f, "%s%s = %s", k ? ", " : "", g->output_names[k], vn);
        }
        fputc('\n', f);
    }
}

// ------------------------------------------------------------ memory plan

bool itr_dump_memory_plan(FILE *f, const struct itr_program *p, const struct itr_dim_bindings *b,
                          struct itr_diags *d) {
    // The binding the numbers hold for, so that they can be compared with
    // another run: every symbol, bound or not.
    fputs("\nmemory plan (one arena per entry, 64-byte aligned; dims:", f);
    for (int i = 0; i < p->n_symbols; i++) {
        if (i < b->n && b->bound[i]) fprintf(f, "%s %s = %" PRId64, i ? "," : "", p->symbols[i].name, b->value[i]);
        else fprintf(f, "%s %s unbound", i ? "," : "", p->symbols[i].name);
    }
    fputs(p->n_symbols ? ")\n" : " none)\n", f);
    size_t width = 4;
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY && strlen(p->graphs[i]->name) > width) width = strlen(p->graphs[i]->name);
    bool *unbound = calloc((size_t)p->n_symbols + 1, sizeof *unbound);
    if (!unbound) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    bool ok = true;
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        memset(unbound, 0, (size_t)p->n_symbols * sizeof *unbound);
        struct itr_memplan *m = itr_memplan_build(p, g, d);
        if (!m) { ok = false; continue; }
        if (itr_memplan_bind(m, b, unbound, d)) {
            char human[32];
            itr_format_bytes(m->arena_bytes, human, sizeof human);
            fprintf(f, "  %-*s  peak %" PRId64 " bytes", (int)width, g->name, m->arena_bytes);
            if (m->arena_bytes >= 1024) fprintf(f, " (%s)", human);
            fprintf(f, ", %d buffer%s\n", m->n_buffers, m->n_buffers == 1 ? "" : "s");
            // The LLVM executor's arena: the same packing over the f32
            // schedule, where fused values take no space (docs/memplan.md).
            const struct kir_schedule *ks = kir_plan_kernels_find(p->kernels, i, false);
            int64_t exec_peak;
            if (ks && itr_memplan_schedule_peak_bytes(p, g, ks, b, &exec_peak, NULL, NULL)) {
                itr_format_bytes(exec_peak, human, sizeof human);
                fprintf(f, "  %-*s  llvm executor arena %" PRId64 " bytes", (int)width, "", exec_peak);
                if (exec_peak >= 1024) fprintf(f, " (%s)", human);
                fputc('\n', f);
            }
        } else {
            bool any = false;
            fprintf(f, "  %-*s  unbound:", (int)width, g->name);
            for (int s = 0; s < p->n_symbols; s++)
                if (unbound[s]) {
                    fprintf(f, "%s %s", any ? "," : "", p->symbols[s].name);
                    any = true;
                }
            // Not a missing dim: an error, which d holds for the caller.
            if (!any) ok = false;
            fputs(any ? "\n" : " none: no plan (see the error)\n", f);
        }
        itr_memplan_free(m);
    }
    free(unbound);
    return ok;
}
