// Programs, graphs and the op table's run-time form (ir.h).
#include "ir/devcode.h"
#include "ir/kir.h"
#include "ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------ dtypes

static const char *const dtype_names[ITR_DTYPE_COUNT] = { "f32", "f64", "i32", "i64", "bool" };
static const size_t dtype_sizes[ITR_DTYPE_COUNT] = { 4, 8, 4, 8, 1 };

const char *itr_dtype_name(enum itr_dtype dt) { return (unsigned)dt < ITR_DTYPE_COUNT ? dtype_names[dt] : "?"; }
size_t itr_dtype_size(enum itr_dtype dt) { return (unsigned)dt < ITR_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
bool itr_dtype_is_float(enum itr_dtype dt) { return dt == ITR_F32 || dt == ITR_F64; }
bool itr_dtype_is_int(enum itr_dtype dt) { return dt == ITR_I32 || dt == ITR_I64; }

bool itr_dtype_from_name(const char *s, enum itr_dtype *out) {
    for (int i = 0; i < ITR_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_names[i]) == 0) { *out = (enum itr_dtype)i; return true; }
    return false;
}

// ------------------------------------------------------------ growth helper

static void *grow(struct itr_arena *a, void *old, int n, int *cap, size_t elem) {
    if (n < *cap) return old;
    int ncap = *cap ? *cap * 2 : 8;
    void *p = itr_arena_alloc(a, (size_t)ncap * elem);
    if (old) memcpy(p, old, (size_t)n * elem);
    *cap = ncap;
    return p;
}
#define GROW(a, arr, n, cap) ((arr) = grow((a), (arr), (n), &(cap), sizeof *(arr)))

// ------------------------------------------------------------ dims

static uint64_t dim_hash(const struct itr_dim_node *k) {
    uint64_t h = 1469598103934665603ull;
    uint64_t parts[4] = { (uint64_t)k->kind, (uint64_t)k->value, (uint64_t)(uint32_t)k->a, (uint64_t)(uint32_t)k->b };
    for (int i = 0; i < 4; i++) { h ^= parts[i]; h *= 1099511628211ull; h ^= h >> 29; }
    return h;
}

static itr_dim dim_intern(struct itr_program *p, struct itr_dim_node k) {
    if (p->n_dimnodes * 2 >= p->dimhash_cap) {
        int ncap = p->dimhash_cap ? p->dimhash_cap * 2 : 64;
        int32_t *h = itr_arena_alloc(p->arena, (size_t)ncap * sizeof *h);
        for (int i = 0; i < ncap; i++) h[i] = -1;
        for (int i = 0; i < p->n_dimnodes; i++) {
            size_t j = dim_hash(&p->dimnodes[i]) & (size_t)(ncap - 1);
            while (h[j] >= 0) j = (j + 1) & (size_t)(ncap - 1);
            h[j] = i;
        }
        p->dimhash = h;
        p->dimhash_cap = ncap;
    }
    size_t j = dim_hash(&k) & (size_t)(p->dimhash_cap - 1);
    while (p->dimhash[j] >= 0) {
        const struct itr_dim_node *e = &p->dimnodes[p->dimhash[j]];
        if (e->kind == k.kind && e->value == k.value && e->a == k.a && e->b == k.b) return p->dimhash[j];
        j = (j + 1) & (size_t)(p->dimhash_cap - 1);
    }
    GROW(p->arena, p->dimnodes, p->n_dimnodes, p->cap_dimnodes);
    p->dimnodes[p->n_dimnodes] = k;
    p->dimhash[j] = p->n_dimnodes;
    return p->n_dimnodes++;
}

itr_dim itr_dim_const(struct itr_program *p, int64_t v) {
    return dim_intern(p, (struct itr_dim_node){ ITR_DIM_CONST, v, -1, -1 });
}

itr_dim itr_dim_sym(struct itr_program *p, int32_t symbol) {
    return dim_intern(p, (struct itr_dim_node){ ITR_DIM_SYM, symbol, -1, -1 });
}

bool itr_dim_is_const(const struct itr_program *p, itr_dim d, int64_t *value) {
    if (d < 0 || d >= p->n_dimnodes || p->dimnodes[d].kind != ITR_DIM_CONST) return false;
    if (value) *value = p->dimnodes[d].value;
    return true;
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

itr_dim itr_dim_binary(struct itr_program *p, enum itr_dim_kind kind, itr_dim a, itr_dim b) {
    int64_t va = 0, vb = 0;
    bool ca = itr_dim_is_const(p, a, &va), cb = itr_dim_is_const(p, b, &vb);
    if (ca && cb) {
        switch (kind) {
        case ITR_DIM_ADD: return itr_dim_const(p, va + vb);
        case ITR_DIM_SUB: return itr_dim_const(p, va - vb);
        case ITR_DIM_MUL: return itr_dim_const(p, va * vb);
        case ITR_DIM_DIV: if (vb != 0) return itr_dim_const(p, floordiv(va, vb)); break;
        default: break;
        }
    }
    if (kind == ITR_DIM_ADD || kind == ITR_DIM_MUL) {
        if (ca && !cb) { itr_dim t = a; a = b; b = t; int64_t tv = va; va = vb; vb = tv; ca = false; cb = true; }
        if (!ca && !cb && a > b) { itr_dim t = a; a = b; b = t; }
    }
    if (cb) {
        if ((kind == ITR_DIM_ADD || kind == ITR_DIM_SUB) && vb == 0) return a;
        if ((kind == ITR_DIM_MUL || kind == ITR_DIM_DIV) && vb == 1) return a;
        if (kind == ITR_DIM_MUL && vb == 0) return itr_dim_const(p, 0);
    }
    if (kind == ITR_DIM_SUB && a == b) return itr_dim_const(p, 0);
    return dim_intern(p, (struct itr_dim_node){ kind, 0, a, b });
}

bool itr_dim_eval(const struct itr_program *p, itr_dim d, const int64_t *bound, const bool *bound_mask,
                  int64_t *out, int32_t *unbound) {
    if (d < 0 || d >= p->n_dimnodes) { if (unbound) *unbound = -2; return false; }
    const struct itr_dim_node *n = &p->dimnodes[d];
    int64_t a, b;
    switch (n->kind) {
    case ITR_DIM_CONST: *out = n->value; return true;
    case ITR_DIM_SYM:
        if (bound_mask && bound_mask[n->value]) { *out = bound[n->value]; return true; }
        if (unbound) *unbound = (int32_t)n->value;
        return false;
    default:
        if (!itr_dim_eval(p, n->a, bound, bound_mask, &a, unbound)) return false;
        if (!itr_dim_eval(p, n->b, bound, bound_mask, &b, unbound)) return false;
        switch (n->kind) {
        case ITR_DIM_ADD: *out = a + b; return true;
        case ITR_DIM_SUB: *out = a - b; return true;
        case ITR_DIM_MUL: *out = a * b; return true;
        case ITR_DIM_DIV:
            if (b == 0) { if (unbound) *unbound = -2; return false; }
            *out = floordiv(a, b);
            return true;
        default: return false;
        }
    }
}

static int dim_prec(enum itr_dim_kind k) {
    return k == ITR_DIM_ADD || k == ITR_DIM_SUB ? 1 : k == ITR_DIM_MUL || k == ITR_DIM_DIV ? 2 : 3;
}

static int dim_format_prec(const struct itr_program *p, itr_dim d, char *buf, size_t n, int min_prec) {
    if (d < 0 || d >= p->n_dimnodes) return snprintf(buf, n, "?");
    const struct itr_dim_node *e = &p->dimnodes[d];
    if (e->kind == ITR_DIM_CONST) return snprintf(buf, n, "%lld", (long long)e->value);
    if (e->kind == ITR_DIM_SYM)
        return snprintf(buf, n, "%s", e->value < p->n_symbols ? p->symbols[e->value].name : "?");
    int prec = dim_prec(e->kind);
    size_t w = 0;
#define PUT(expr) do { int k_ = (expr); if (k_ > 0) w += (size_t)k_; } while (0)
#define REST (w < n ? n - w : 0), (w < n ? buf + w : NULL)
    char tmp[1];
    (void)tmp;
    if (prec < min_prec) PUT(snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "("));
    PUT(dim_format_prec(p, e->a, w < n ? buf + w : NULL, w < n ? n - w : 0, prec));
    const char *op = e->kind == ITR_DIM_ADD ? "+" : e->kind == ITR_DIM_SUB ? "-" : e->kind == ITR_DIM_MUL ? "*" : "/";
    PUT(snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "%s", op));
    // right operand of - and / binds tighter: a-(b+c)
    PUT(dim_format_prec(p, e->b, w < n ? buf + w : NULL, w < n ? n - w : 0,
                        e->kind == ITR_DIM_SUB || e->kind == ITR_DIM_DIV ? prec + 1 : prec));
    if (prec < min_prec) PUT(snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, ")"));
#undef PUT
#undef REST
    return (int)w;
}

int itr_dim_format(const struct itr_program *p, itr_dim d, char *buf, size_t n) {
    if (n && buf) buf[0] = 0;
    return dim_format_prec(p, d, buf, n, 0);
}

// ------------------------------------------------------------ types

struct itr_type itr_type_make(enum itr_dtype dt, int rank, const itr_dim *dims) {
    struct itr_type t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank && i < ITR_MAX_RANK; i++) t.dims[i] = dims[i];
    return t;
}

bool itr_type_equal(const struct itr_type *a, const struct itr_type *b) {
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

int itr_type_format(const struct itr_program *p, const struct itr_type *t, char *buf, size_t n) {
    size_t w = 0;
    int k = snprintf(buf, n, "%s[", itr_dtype_name(t->dtype));
    if (k > 0) w += (size_t)k;
    for (int i = 0; i < t->rank; i++) {
        if (i) { k = snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, ", "); if (k > 0) w += (size_t)k; }
        k = itr_dim_format(p, t->dims[i], w < n ? buf + w : NULL, w < n ? n - w : 0);
        if (k > 0) w += (size_t)k;
    }
    k = snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "]");
    if (k > 0) w += (size_t)k;
    return (int)w;
}

// ------------------------------------------------------------ the op table

static const char *const class_names[ITR_CLASS_COUNT] = {
    "elementwise", "reduction", "contraction", "movement", "indexing", "sort", "source", "scan"
};
const char *itr_op_class_name(enum itr_op_class c) { return (unsigned)c < ITR_CLASS_COUNT ? class_names[c] : "?"; }

#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) bool shape(struct itr_shape_ctx *);
#include "ops.def"
#undef OP

static struct itr_op_info op_table[ITR_OP_COUNT] = {
#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) \
    [ITR_OP_##id] = { ITR_OP_##id, name, ITR_CLASS_##cls, min_in, max_in, n_out, attrs, NULL, 0, shape, (uint32_t)(nondiff), doc },
#include "ops.def"
#undef OP
};

static const char *const attr_kind_names[ITR_ATTR_KIND_COUNT] = {
    "none", "int", "float", "bool", "ints", "floats", "dims", "dtype", "str", "graph", "tensor"
};
const char *itr_attr_kind_name(enum itr_attr_kind k) { return (unsigned)k < ITR_ATTR_KIND_COUNT ? attr_kind_names[k] : "?"; }

// Parses "name:kind[=default]|name:kind?" lists once, at first use. The
// table is static program data, so a malformed schema is a project bug.
static struct itr_attr_spec spec_storage[ITR_OP_COUNT][8];

static void parse_schema(struct itr_op_info *info) {
    const char *s = info->attr_schema;
    int n = 0;
    while (*s) {
        struct itr_attr_spec *sp = &spec_storage[info->op][n];
        const char *colon = strchr(s, ':');
        if (!colon || n >= 8) { fprintf(stderr, "itrc: bad attribute schema for op %s\n", info->name); abort(); }
        sp->name = strndup(s, (size_t)(colon - s));
        const char *k = colon + 1;
        size_t klen = strcspn(k, "=?,");
        sp->kind = ITR_ATTR_NONE;
        for (int i = 1; i < ITR_ATTR_KIND_COUNT; i++)
            if (strlen(attr_kind_names[i]) == klen && strncmp(k, attr_kind_names[i], klen) == 0) sp->kind = (enum itr_attr_kind)i;
        if (sp->kind == ITR_ATTR_NONE) { fprintf(stderr, "itrc: bad attribute kind in schema of op %s\n", info->name); abort(); }
        const char *e = k + klen;
        sp->required = true;
        if (*e == '?') { sp->required = false; e++; }
        else if (*e == '=') {
            e++;
            size_t dlen = strcspn(e, ",");
            if (e[0] == '[') dlen = (size_t)(strchr(e, ']') - e) + 1;
            char dv[64];
            snprintf(dv, sizeof dv, "%.*s", (int)dlen, e);
            sp->required = false;
            sp->has_default = true;
            sp->def.kind = sp->kind;
            switch (sp->kind) {
            case ITR_ATTR_INT: sp->def.u.i = strtoll(dv, NULL, 10); break;
            case ITR_ATTR_FLOAT: sp->def.u.f = strtod(dv, NULL); break;
            case ITR_ATTR_BOOL: sp->def.u.i = strcmp(dv, "true") == 0; break;
            case ITR_ATTR_DTYPE:
                if (!itr_dtype_from_name(dv, &sp->def.u.dtype)) { fprintf(stderr, "itrc: bad dtype default\n"); abort(); }
                break;
            case ITR_ATTR_INTS: case ITR_ATTR_FLOATS: case ITR_ATTR_DIMS:
                if (strcmp(dv, "[]") != 0) { fprintf(stderr, "itrc: only [] list defaults\n"); abort(); }
                break;   // empty list: n = 0
            default: fprintf(stderr, "itrc: unsupported default in schema\n"); abort();
            }
            e += dlen;
        }
        n++;
        s = *e == ',' ? e + 1 : e;
    }
    info->attrs = spec_storage[info->op];
    info->n_attrs = n;
}

static void op_table_init(void) {
    static bool done;
    if (done) return;
    for (int i = 0; i < ITR_OP_COUNT; i++) parse_schema(&op_table[i]);
    done = true;
}

const struct itr_op_info *itr_op_info(enum itr_op op) {
    op_table_init();
    return (unsigned)op < ITR_OP_COUNT ? &op_table[op] : NULL;
}

const char *itr_op_name(enum itr_op op) { return (unsigned)op < ITR_OP_COUNT ? op_table[op].name : "?"; }

bool itr_op_lookup(const char *name, enum itr_op *out) {
    for (int i = 0; i < ITR_OP_COUNT; i++)
        if (strcmp(op_table[i].name, name) == 0) { *out = (enum itr_op)i; return true; }
    return false;
}

int itr_op_attr_index(enum itr_op op, const char *attr_name) {
    const struct itr_op_info *info = itr_op_info(op);
    for (int i = 0; i < info->n_attrs; i++)
        if (strcmp(info->attrs[i].name, attr_name) == 0) return i;
    return -1;
}

// ------------------------------------------------------------ init kinds

static const char *const init_names[ITR_INIT_KIND_COUNT] = {
    "zeros", "ones", "constant", "uniform", "normal", "xavier_uniform"
};
const char *itr_init_kind_name(enum itr_init_kind k) { return (unsigned)k < ITR_INIT_KIND_COUNT ? init_names[k] : "?"; }
bool itr_init_kind_from_name(const char *s, enum itr_init_kind *out) {
    for (int i = 0; i < ITR_INIT_KIND_COUNT; i++)
        if (strcmp(s, init_names[i]) == 0) { *out = (enum itr_init_kind)i; return true; }
    return false;
}

// ------------------------------------------------------------ programs

struct itr_program *itr_program_new(void) {
    op_table_init();
    struct itr_arena *a = itr_arena_new();
    struct itr_program *p = itr_arena_alloc(a, sizeof *p);
    p->arena = a;
    return p;
}

void itr_program_free(struct itr_program *p) {
    if (!p) return;
    // Tensor attributes hold heap data outside the arena.
    for (int g = 0; g < p->n_graphs; g++)
        for (int i = 0; i < p->graphs[g]->n_nodes; i++) {
            struct itr_node *n = &p->graphs[g]->nodes[i];
            const struct itr_op_info *info = itr_op_info(n->op);
            for (int k = 0; k < info->n_attrs; k++)
                if (n->attrs[k].kind == ITR_ATTR_TENSOR) itr_tensor_free(n->attrs[k].u.tensor);
        }
    if (p->kernels) {
        kir_plan_kernels_free(p->kernels);
        free(p->kernels);
    }
    if (p->devcode) {
        itr_devcode_free(p->devcode);
        free(p->devcode);
    }
    itr_arena_free(p->arena);
}

char *itr_program_strdup(struct itr_program *p, const char *s) { return itr_arena_strdup(p->arena, s); }

int32_t itr_program_add_symbol(struct itr_program *p, const char *name, int64_t def, bool has_def, struct itr_loc loc) {
    GROW(p->arena, p->symbols, p->n_symbols, p->cap_symbols);
    p->symbols[p->n_symbols] = (struct itr_symbol){ itr_arena_strdup(p->arena, name), def, has_def, loc };
    return p->n_symbols++;
}

int32_t itr_program_find_symbol(const struct itr_program *p, const char *name) {
    for (int i = 0; i < p->n_symbols; i++)
        if (strcmp(p->symbols[i].name, name) == 0) return i;
    return -1;
}

int32_t itr_program_add_param(struct itr_program *p, const char *name, struct itr_type t, struct itr_init init,
                              bool frozen, struct itr_loc loc) {
    GROW(p->arena, p->params, p->n_params, p->cap_params);
    p->params[p->n_params] = (struct itr_param){ itr_arena_strdup(p->arena, name), t, init, frozen, loc };
    return p->n_params++;
}

int32_t itr_program_find_param(const struct itr_program *p, const char *name) {
    for (int i = 0; i < p->n_params; i++)
        if (strcmp(p->params[i].name, name) == 0) return i;
    return -1;
}

struct itr_graph *itr_program_add_graph(struct itr_program *p, const char *name, enum itr_graph_kind kind) {
    GROW(p->arena, p->graphs, p->n_graphs, p->cap_graphs);
    struct itr_graph *g = itr_arena_alloc(p->arena, sizeof *g);
    g->prog = p;
    g->name = itr_arena_strdup(p->arena, name);
    g->kind = kind;
    p->graphs[p->n_graphs++] = g;
    return g;
}

struct itr_graph *itr_program_find_graph(const struct itr_program *p, const char *name) {
    for (int i = 0; i < p->n_graphs; i++)
        if (strcmp(p->graphs[i]->name, name) == 0) return p->graphs[i];
    return NULL;
}

// ------------------------------------------------------------ graphs

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

// Graphs of many thousands of values are named one value at a time, so the
// lookup behind unique naming must not scan the graph. Renamed values leave
// stale slots behind; a slot matches only if its value still has that name.
static void name_index_insert(struct itr_graph *g, int32_t value) {
    if ((g->n_values + 1) * 2 > g->name_index_cap) {
        int cap = g->name_index_cap ? g->name_index_cap * 2 : 64;
        while (cap < (g->n_values + 1) * 2) cap *= 2;
        int32_t *idx = itr_arena_alloc(g->prog->arena, (size_t)cap * sizeof *idx);
        for (int i = 0; i < cap; i++) idx[i] = -1;
        g->name_index = idx;
        g->name_index_cap = cap;
        for (int v = 0; v < g->n_values; v++)
            if (g->values[v].name && v != value) {
                size_t j = name_hash(g->values[v].name) & (size_t)(cap - 1);
                while (idx[j] >= 0) j = (j + 1) & (size_t)(cap - 1);
                idx[j] = v;
            }
    }
    size_t j = name_hash(g->values[value].name) & (size_t)(g->name_index_cap - 1);
    while (g->name_index[j] >= 0) j = (j + 1) & (size_t)(g->name_index_cap - 1);
    g->name_index[j] = value;
}

int32_t itr_graph_find_value(const struct itr_graph *g, const char *name) {
    if (!g->name_index_cap) return -1;
    size_t j = name_hash(name) & (size_t)(g->name_index_cap - 1);
    for (int32_t v; (v = g->name_index[j]) >= 0; j = (j + 1) & (size_t)(g->name_index_cap - 1))
        if (g->values[v].name && strcmp(g->values[v].name, name) == 0) return v;
    return -1;
}

static int32_t new_value(struct itr_graph *g, struct itr_type t, enum itr_value_kind kind, struct itr_loc loc) {
    struct itr_program *p = g->prog;
    GROW(p->arena, g->values, g->n_values, g->cap_values);
    int32_t id = g->n_values++;
    g->values[id] = (struct itr_value){ NULL, t, kind, -1, 0, -1, loc };
    return id;
}

const char *itr_graph_name_value(struct itr_graph *g, int32_t value, const char *name) {
    char buf[256];
    const char *use = name;
    for (int k = 1; itr_graph_find_value(g, use) >= 0 && itr_graph_find_value(g, use) != value; k++) {
        snprintf(buf, sizeof buf, "%s_%d", name, k);
        use = buf;
    }
    g->values[value].name = itr_arena_strdup(g->prog->arena, use);
    name_index_insert(g, value);
    return g->values[value].name;
}

int32_t itr_graph_add_input(struct itr_graph *g, const char *name, struct itr_type t, struct itr_loc loc) {
    int32_t v = new_value(g, t, ITR_VALUE_INPUT, loc);
    itr_graph_name_value(g, v, name);
    GROW(g->prog->arena, g->inputs, g->n_inputs, g->cap_inputs);
    g->inputs[g->n_inputs++] = v;
    return v;
}

int32_t itr_graph_use_param(struct itr_graph *g, int32_t param) {
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == ITR_VALUE_PARAM && g->values[i].param == param) return i;
    const struct itr_param *pp = &g->prog->params[param];
    int32_t v = new_value(g, pp->type, ITR_VALUE_PARAM, pp->loc);
    g->values[v].param = param;
    g->values[v].name = pp->name;   // params are unique program-wide
    name_index_insert(g, v);
    return v;
}

void itr_graph_add_output(struct itr_graph *g, const char *name, int32_t value) {
    struct itr_program *p = g->prog;
    int cap = g->cap_outputs;
    GROW(p->arena, g->outputs, g->n_outputs, g->cap_outputs);
    if (cap != g->cap_outputs) {
        const char **names = itr_arena_alloc(p->arena, (size_t)g->cap_outputs * sizeof *names);
        if (g->output_names) memcpy(names, g->output_names, (size_t)g->n_outputs * sizeof *names);
        g->output_names = names;
    }
    g->outputs[g->n_outputs] = value;
    g->output_names[g->n_outputs] = itr_arena_strdup(p->arena, name);
    g->n_outputs++;
}

struct itr_attr *itr_attrs_default(struct itr_program *p, enum itr_op op) {
    const struct itr_op_info *info = itr_op_info(op);
    struct itr_attr *a = itr_arena_alloc(p->arena, (size_t)(info->n_attrs ? info->n_attrs : 1) * sizeof *a);
    for (int i = 0; i < info->n_attrs; i++)
        a[i] = info->attrs[i].has_default ? info->attrs[i].def : (struct itr_attr){ .kind = ITR_ATTR_NONE };
    return a;
}

const struct itr_attr *itr_node_attr(const struct itr_node *n, const char *name) {
    int k = itr_op_attr_index(n->op, name);
    return k < 0 ? NULL : &n->attrs[k];
}

int64_t itr_node_attr_int(const struct itr_node *n, const char *name) {
    const struct itr_attr *a = itr_node_attr(n, name);
    return a && (a->kind == ITR_ATTR_INT || a->kind == ITR_ATTR_BOOL) ? a->u.i : 0;
}

double itr_node_attr_float(const struct itr_node *n, const char *name) {
    const struct itr_attr *a = itr_node_attr(n, name);
    if (!a) return 0;
    if (a->kind == ITR_ATTR_FLOAT) return a->u.f;
    if (a->kind == ITR_ATTR_INT || a->kind == ITR_ATTR_BOOL) return (double)a->u.i;
    return 0;
}

bool itr_slice_one_axis(const struct itr_node *n, int rank, int *axis, int64_t *start, int64_t *end) {
    if (n->op != ITR_OP_SLICE) return false;
    const struct itr_attr *axes = itr_node_attr(n, "axes"), *starts = itr_node_attr(n, "starts"),
                          *ends = itr_node_attr(n, "ends"), *steps = itr_node_attr(n, "steps");
    if (!axes || !starts || !ends || axes->kind != ITR_ATTR_INTS || starts->kind != ITR_ATTR_INTS ||
        ends->kind != ITR_ATTR_INTS || axes->u.ints.n != 1 || starts->u.ints.n != 1 || ends->u.ints.n != 1)
        return false;
    if (steps && steps->kind == ITR_ATTR_INTS && (steps->u.ints.n != 1 || steps->u.ints.v[0] != 1)) return false;
    if (!itr_axis_normalize(axes->u.ints.v[0], rank, axis)) return false;
    *start = starts->u.ints.v[0];
    *end = ends->u.ints.v[0];
    return true;
}

static bool dim_is_const(const struct itr_program *p, itr_dim d, int64_t want) {
    int64_t v;
    return itr_dim_is_const(p, d, &v) && v == want;
}

// Axes (normalised) of a reduction node; false when it reduces every axis.
static bool rows_reduced_axes(const struct itr_node *n, bool *red, int rank) {
    for (int i = 0; i < rank; i++) red[i] = false;
    if (n->op == ITR_OP_ARGMAX || n->op == ITR_OP_ARGMIN) {
        int64_t ax = itr_node_attr_int(n, "axis");
        red[ax < 0 ? ax + rank : ax] = true;
        return true;
    }
    const struct itr_attr *a = itr_node_attr(n, "axes");
    if (!a || a->kind != ITR_ATTR_INTS) return false;
    for (int i = 0; i < a->u.ints.n; i++) {
        int64_t ax = a->u.ints.v[i];
        red[ax < 0 ? ax + rank : ax] = true;
    }
    return true;
}

// Under numpy broadcasting, the axis of operand type `in` that result axis
// `axis` of `out` reads: -1 when the operand lacks it or has size 1 there
// (broadcast: read whole), -2 when the two sizes cannot be told equal.
static int broadcast_axis(const struct itr_graph *g, const struct itr_type *in, const struct itr_type *out,
                          int axis) {
    int ak = axis - (out->rank - in->rank);
    if (ak < 0 || (dim_is_const(g->prog, in->dims[ak], 1) && !dim_is_const(g->prog, out->dims[axis], 1))) return -1;
    return in->dims[ak] == out->dims[axis] ? ak : -2;
}

int itr_rows_operand_axis(const struct itr_graph *g, const struct itr_node *n, int axis, int k) {
    if (n->n_outputs != 1) return -2;
    const struct itr_type *out = &g->values[n->outputs[0]].type, *in = &g->values[n->inputs[k]].type;
    int r = out->rank, rk = in->rank;
    const struct itr_op_info *info = itr_op_info(n->op);
    if (info->cls == ITR_CLASS_ELEMENTWISE) return broadcast_axis(g, in, out, axis);
    switch (n->op) {
    case ITR_OP_SUM: case ITR_OP_MEAN: case ITR_OP_MAX: case ITR_OP_MIN: case ITR_OP_ARGMAX: case ITR_OP_ARGMIN: {
        bool red[ITR_MAX_RANK];
        if (!rows_reduced_axes(n, red, rk)) return -2;
        if (itr_node_attr_int(n, "keepdims")) return red[axis] ? -2 : axis;
        for (int i = 0, kept = 0; i < rk; i++)
            if (!red[i] && kept++ == axis) return i;
        return -2;
    }
    case ITR_OP_MATMUL: {
        const struct itr_type *ta = &g->values[n->inputs[0]].type, *tb = &g->values[n->inputs[1]].type;
        if (ta->rank < 2 || tb->rank < 2) return -2;
        if (axis == r - 2) return k == 0 ? rk - 2 : -1;
        if (axis == r - 1) return k == 1 ? rk - 1 : -1;
        return broadcast_axis(g, in, out, axis);
    }
    case ITR_OP_TRANSPOSE: {
        const struct itr_attr *a = itr_node_attr(n, "perm");
        if (!a || a->kind != ITR_ATTR_INTS) return r - 1 - axis;
        int64_t pa = a->u.ints.v[axis];
        return (int)(pa < 0 ? pa + rk : pa);
    }
    case ITR_OP_RESHAPE: {
        // Splitting or merging only axes after `axis` (a transformer's heads).
        if (axis >= rk) return -2;
        for (int i = 0; i <= axis; i++)
            if (in->dims[i] != out->dims[i]) return -2;
        return axis;
    }
    case ITR_OP_UNSQUEEZE: case ITR_OP_SQUEEZE: {
        // The axes that exist in the larger of the two shapes only.
        bool extra[ITR_MAX_RANK] = { false };
        const struct itr_attr *a = itr_node_attr(n, "axes");
        int big = n->op == ITR_OP_UNSQUEEZE ? r : rk;
        for (int i = 0; i < a->u.ints.n; i++) {
            int64_t ax = a->u.ints.v[i];
            extra[ax < 0 ? ax + big : ax] = true;
        }
        if (n->op == ITR_OP_UNSQUEEZE) {
            if (extra[axis]) return -2;
            int before = 0;
            for (int i = 0; i < axis; i++) before += extra[i];
            return axis - before;
        }
        for (int i = 0, kept = 0; i < rk; i++)
            if (!extra[i] && kept++ == axis) return i;
        return -2;
    }
    default:
        return -2;
    }
}

// ------------------------------------------------------------ shape-rule helpers

bool itr_shape_error(struct itr_shape_ctx *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char operands[1024] = "";
    size_t w = 0;
    for (int i = 0; i < c->n_in && w < sizeof operands - 1; i++) {
        char t[256];
        itr_type_format(c->prog, &c->in[i], t, sizeof t);
        int k = snprintf(operands + w, sizeof operands - w, "%s%s: %s", i ? ", " : "",
                         c->in_names && c->in_names[i] ? c->in_names[i] : "?", t);
        if (k > 0) w += (size_t)k;
    }
    if (c->n_in)
        itr_diag_error(c->diags, c->loc, "op '%s': %s (operands: %s)", itr_op_name(c->op), msg, operands);
    else
        itr_diag_error(c->diags, c->loc, "op '%s': %s", itr_op_name(c->op), msg);
    return false;
}

const struct itr_attr *itr_shape_attr(const struct itr_shape_ctx *c, const char *name) {
    int k = itr_op_attr_index(c->op, name);
    return k < 0 ? NULL : &c->attrs[k];
}

bool itr_axis_normalize(int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank) return false;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}

bool itr_broadcast_types(struct itr_shape_ctx *c, const struct itr_type *a, const struct itr_type *b,
                         struct itr_type *out, int ia, int ib) {
    int rank = a->rank > b->rank ? a->rank : b->rank;
    struct itr_type t;
    memset(&t, 0, sizeof t);
    t.dtype = a->dtype;
    t.rank = rank;
    itr_dim one = itr_dim_const(c->prog, 1);
    for (int i = 0; i < rank; i++) {
        int ka = i - (rank - a->rank), kb = i - (rank - b->rank);
        itr_dim da = ka >= 0 ? a->dims[ka] : one, db = kb >= 0 ? b->dims[kb] : one;
        if (da == db || db == one) t.dims[i] = da;
        else if (da == one) t.dims[i] = db;
        else {
            char sa[64], sb[64];
            itr_dim_format(c->prog, da, sa, sizeof sa);
            itr_dim_format(c->prog, db, sb, sizeof sb);
            return itr_shape_error(c, "operands %d and %d do not broadcast: dimension %d is %s vs %s",
                                   ia, ib, i - rank, sa, sb);
        }
    }
    *out = t;
    return true;
}

// ------------------------------------------------------------ adding nodes

static bool attr_kind_ok(enum itr_attr_kind want, enum itr_attr_kind have) {
    return want == have || have == ITR_ATTR_NONE;
}

bool itr_graph_add_node(struct itr_graph *g, enum itr_op op, const int32_t *inputs, int n_inputs,
                        const struct itr_attr *attrs, struct itr_loc loc, const char *scope,
                        int32_t *outs, struct itr_diags *d) {
    struct itr_program *p = g->prog;
    const struct itr_op_info *info = itr_op_info(op);
    if (n_inputs < info->min_inputs || (info->max_inputs >= 0 && n_inputs > info->max_inputs)) {
        if (info->max_inputs < 0)
            itr_diag_error(d, loc, "op '%s' takes at least %d operand%s, got %d", info->name, info->min_inputs,
                           info->min_inputs == 1 ? "" : "s", n_inputs);
        else if (info->min_inputs == info->max_inputs)
            itr_diag_error(d, loc, "op '%s' takes %d operand%s, got %d", info->name, info->min_inputs,
                           info->min_inputs == 1 ? "" : "s", n_inputs);
        else
            itr_diag_error(d, loc, "op '%s' takes %d to %d operands, got %d", info->name, info->min_inputs,
                           info->max_inputs, n_inputs);
        return false;
    }
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] < 0 || inputs[i] >= g->n_values) {
            itr_diag_error(d, loc, "op '%s': operand %d refers to no value", info->name, i);
            return false;
        }
    struct itr_attr *na = itr_attrs_default(p, op);
    if (attrs) {
        for (int k = 0; k < info->n_attrs; k++) {
            if (!attr_kind_ok(info->attrs[k].kind, attrs[k].kind)) {
                itr_diag_error(d, loc, "op '%s': attribute '%s' must be %s, got %s", info->name, info->attrs[k].name,
                               itr_attr_kind_name(info->attrs[k].kind), itr_attr_kind_name(attrs[k].kind));
                return false;
            }
            if (attrs[k].kind != ITR_ATTR_NONE) na[k] = attrs[k];
        }
    }
    for (int k = 0; k < info->n_attrs; k++)
        if (info->attrs[k].required && na[k].kind == ITR_ATTR_NONE) {
            itr_diag_error(d, loc, "op '%s': missing required attribute '%s' (%s)", info->name, info->attrs[k].name,
                           itr_attr_kind_name(info->attrs[k].kind));
            return false;
        }
    struct itr_type in_types[64];
    const char *in_names[64];
    struct itr_shape_ctx c;
    memset(&c, 0, sizeof c);
    struct itr_type *in_heap = NULL;
    const char **names_heap = NULL;
    if (n_inputs > 64) {
        in_heap = malloc((size_t)n_inputs * sizeof *in_heap);
        names_heap = malloc((size_t)n_inputs * sizeof *names_heap);
        if (!in_heap || !names_heap) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    }
    struct itr_type *it = in_heap ? in_heap : in_types;
    const char **nm = names_heap ? names_heap : in_names;
    for (int i = 0; i < n_inputs; i++) { it[i] = g->values[inputs[i]].type; nm[i] = g->values[inputs[i]].name; }
    c.prog = p; c.graph = g; c.op = op; c.in = it; c.n_in = n_inputs; c.attrs = na;
    c.n_out = info->n_outputs; c.loc = loc; c.diags = d; c.in_names = nm;
    bool ok = info->shape(&c);
    free(in_heap);
    free(names_heap);
    if (!ok) return false;
    if (c.n_out < 0 || c.n_out > 16) { itr_diag_error(d, loc, "op '%s': shape rule gave no result count", info->name); return false; }

    struct itr_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_inputs = n_inputs;
    n.inputs = itr_arena_memdup(p->arena, inputs, (size_t)n_inputs * sizeof *inputs);
    n.n_outputs = c.n_out;
    n.outputs = itr_arena_alloc(p->arena, (size_t)(c.n_out ? c.n_out : 1) * sizeof *n.outputs);
    n.attrs = na;
    n.loc = loc;
    n.scope = scope ? itr_arena_strdup(p->arena, scope) : NULL;
    GROW(p->arena, g->nodes, g->n_nodes, g->cap_nodes);
    int32_t node_id = g->n_nodes;
    for (int i = 0; i < c.n_out; i++) {
        int32_t v = new_value(g, c.out[i], ITR_VALUE_NODE, loc);
        g->values[v].node = node_id;
        g->values[v].out_index = i;
        char nbuf[32];
        snprintf(nbuf, sizeof nbuf, "_%d", v);
        itr_graph_name_value(g, v, nbuf);
        n.outputs[i] = v;
        if (outs) outs[i] = v;
    }
    g->nodes[g->n_nodes++] = n;
    return true;
}
