// Expressions, statements, calls and scans: the part of elaboration that
// builds graph nodes (docs/ir.md, "Statements and expressions").
#include "elab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------ string map

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

void *smap_get(const struct smap *m, const char *key) {
    if (!m->cap) return NULL;
    size_t mask = (size_t)m->cap - 1, j = hash_str(key) & mask;
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) return m->vals[j];
        j = (j + 1) & mask;
    }
    return NULL;
}

static void smap_insert(struct smap *m, const char *key, void *val) {
    size_t mask = (size_t)m->cap - 1, j = hash_str(key) & mask;
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) { m->vals[j] = val; return; }
        j = (j + 1) & mask;
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
}

void smap_put(struct itr_arena *a, struct smap *m, const char *key, void *val) {
    if ((m->n + 1) * 2 > m->cap) {
        struct smap nm = { 0 };
        nm.cap = m->cap ? m->cap * 2 : 8;
        nm.keys = itr_arena_alloc(a, (size_t)nm.cap * sizeof *nm.keys);
        nm.vals = itr_arena_alloc(a, (size_t)nm.cap * sizeof *nm.vals);
        for (int i = 0; i < m->cap; i++)
            if (m->keys[i]) smap_insert(&nm, m->keys[i], m->vals[i]);
        *m = nm;
    }
    smap_insert(m, key, val);
}

// ------------------------------------------------------------ values and messages

static struct val verr(void) { return (struct val){ .k = V_ERR }; }
static struct val vtensor(int32_t t) { return (struct val){ .k = V_TENSOR, .u.t = t }; }
static struct val vint(int64_t i) { return (struct val){ .k = V_INT, .u.i = i }; }
static struct val vfloat(double x) { return (struct val){ .k = V_FLOAT, .u.f = x }; }
static struct val vbool(bool b) { return (struct val){ .k = V_BOOL, .u.b = b }; }

static struct val vdim(struct sess *s, itr_dim d) {
    int64_t c;
    if (itr_dim_is_const(s->prog, d, &c)) return vint(c);
    return (struct val){ .k = V_DIM, .u.dim = d };
}

const char *vkind_name(enum vkind k) {
    static const char *const names[] = { "an erroneous value", "a tensor", "an int", "a symbolic dim", "a float",
                                         "a bool", "a string", "a dtype", "a list", "a tensor literal",
                                         "several values" };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

const char *fn_display_name(const struct ast_item *fn, const struct inst *owner, char *buf, size_t n) {
    if (owner && owner->path[0]) snprintf(buf, n, "%s.%s", owner->path, fn->name);
    else snprintf(buf, n, "%s", fn->name);
    return buf;
}

// Points from an error inside inlined code back to the calls that led there.
void call_notes(struct frame *f) {
    int k = 0;
    for (struct frame *c = f; c && k < 8; c = c->caller) {
        if (!c->fn || !c->caller || !c->call_loc.file) continue;
        char nb[256];
        itr_diag_note(c->s->d, c->call_loc, "in the call to '%s' here", fn_display_name(c->fn, c->inst, nb, sizeof nb));
        k++;
    }
}

void ferr(struct frame *f, struct itr_loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    itr_diag_vreport(f->s->d, ITR_SEV_ERROR, loc, fmt, ap);
    va_end(ap);
    call_notes(f);
}

void val_bind(struct frame *f, const char *name, struct val v) {
    struct val *slot = itr_arena_alloc(f->s->arena, sizeof *slot);
    *slot = v;
    smap_put(f->s->arena, &f->env, name, slot);
}

static void describe_val(struct frame *f, struct val v, char *buf, size_t n) {
    switch (v.k) {
    case V_TENSOR: {
        char t[200] = "";
        if (f->gc) itr_type_format(f->s->prog, &f->gc->g->values[v.u.t].type, t, sizeof t);
        snprintf(buf, n, "a tensor %.*s", (int)(n > 10 ? n - 10 : 0), t);   // bounded: callers pass small buffers
        break;
    }
    case V_INT: snprintf(buf, n, "the int %lld", (long long)v.u.i); break;
    case V_FLOAT: snprintf(buf, n, "the float %g", v.u.f); break;
    case V_BOOL: snprintf(buf, n, "the bool %s", v.u.b ? "true" : "false"); break;
    case V_STR: snprintf(buf, n, "the string \"%.60s\"", v.u.s); break;
    case V_DTYPE: snprintf(buf, n, "the dtype %s", itr_dtype_name(v.u.dt)); break;
    case V_DIM: {
        char t[120];
        itr_dim_format(f->s->prog, v.u.dim, t, sizeof t);
        snprintf(buf, n, "the symbolic dim %s", t);
        break;
    }
    case V_MULTI: snprintf(buf, n, "%d values", v.u.list.n); break;
    default: snprintf(buf, n, "%s", vkind_name(v.k)); break;
    }
}

// ------------------------------------------------------------ instances and names

struct member *resolve_member_path(struct inst *in, const char *path, struct inst **owner) {
    // Canonical programs declare parameters under their full dotted names.
    struct member *m = smap_get(&in->names, path);
    if (m) { if (owner) *owner = in; return m; }
    const char *dot = strchr(path, '.');
    if (!dot) return NULL;
    char head[256];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof head) return NULL;
    memcpy(head, path, n);
    head[n] = 0;
    m = smap_get(&in->names, head);
    if (!m || m->kind != M_INST) return NULL;
    return resolve_member_path(m->sub, dot + 1, owner);
}

// The value of program parameter p in the graph being built. Entry graphs
// read parameters directly; a scan body receives each parameter it reads as
// an extra input, which the scan node passes in from the enclosing graph.
static int32_t gc_param(struct sess *s, struct gctx *gc, int32_t p) {
    if (!gc->outer) return itr_graph_use_param(gc->g, p);
    for (int i = 0; i < gc->n_cap; i++)
        if (gc->cap_param[i] == p) return gc->cap_value[i];
    const struct itr_param *pp = &s->prog->params[p];
    int32_t v = itr_graph_add_input(gc->g, pp->name, pp->type, pp->loc);
    if (gc->n_cap == gc->cap_cap) {
        int ncap = gc->cap_cap ? gc->cap_cap * 2 : 8;
        int32_t *a = itr_arena_alloc(s->arena, (size_t)ncap * sizeof *a);
        int32_t *b = itr_arena_alloc(s->arena, (size_t)ncap * sizeof *b);
        if (gc->n_cap) {
            memcpy(a, gc->cap_param, (size_t)gc->n_cap * sizeof *a);
            memcpy(b, gc->cap_value, (size_t)gc->n_cap * sizeof *b);
        }
        gc->cap_param = a;
        gc->cap_value = b;
        gc->cap_cap = ncap;
    }
    gc->cap_param[gc->n_cap] = p;
    gc->cap_value[gc->n_cap] = v;
    gc->n_cap++;
    return v;
}

// rng_seed: the train entry's `seed: i64[]` input, added on first use.
static struct val rng_seed_value(struct frame *f, struct itr_loc loc) {
    struct sess *s = f->s;
    if (!s->training || !f->gc) {
        ferr(f, loc, "rng_seed is only available in the train entry (and the functions it calls)");
        return verr();
    }
    if (f->gc != s->train_gc) {
        ferr(f, loc, "rng_seed is not available inside a scan body; draw the random numbers before the scan and pass "
             "them in as a scanned operand or constant");
        return verr();
    }
    struct itr_graph *g = s->train_gc->g;
    if (s->train_seed >= 0) {
        const struct itr_type *t = &g->values[s->train_seed].type;
        if (t->rank != 0 || t->dtype != ITR_I64) {
            char ts[200];
            itr_type_format(s->prog, t, ts, sizeof ts);
            ferr(f, loc, "rng_seed refers to the train input 'seed', which must be i64[], but it is declared %s", ts);
            return verr();
        }
        return vtensor(s->train_seed);
    }
    // Parameters join the graph when first read, so look at the program's too.
    int32_t taken = itr_graph_find_value(g, "seed");
    if (taken >= 0 || itr_program_find_param(s->prog, "seed") >= 0) {
        ferr(f, loc, "rng_seed needs the train input 'seed', but 'seed' already names a %s",
             taken < 0 || g->values[taken].kind == ITR_VALUE_PARAM ? "parameter" : "value");
        return verr();
    }
    s->train_seed = itr_graph_add_input(g, "seed", itr_type_make(ITR_I64, 0, NULL), loc);
    return vtensor(s->train_seed);
}

// Looks a name up: locals, then members of the owning instance (config,
// parameters, dotted paths into sub-instances), then the model's dims, then
// dtype names and inf/nan. Returns false, reporting nothing, if undefined.
static bool lookup(struct frame *f, const char *name, struct itr_loc loc, struct val *out) {
    struct val *v = smap_get(&f->env, name);
    if (v) { *out = *v; return true; }
    if (f->inst) {
        struct member *m = resolve_member_path(f->inst, name, NULL);
        if (m) {
            switch (m->kind) {
            case M_CONFIG: *out = m->cfg; return true;
            case M_PARAM:
                if (m->param < 0) { *out = verr(); return true; }
                if (!f->gc) {
                    ferr(f, loc, "parameter '%s' is a tensor; a compile-time value is needed here", name);
                    *out = verr();
                    return true;
                }
                if (f->s->training && f->gc == f->s->train_gc) {
                    // Reads after an `update` see the new value, as after an
                    // in-place update in PyTorch.
                    int32_t u = pending_update(f->s, m->param);
                    if (u >= 0) { *out = vtensor(u); return true; }
                }
                *out = vtensor(gc_param(f->s, f->gc, m->param));
                return true;
            case M_INST:
                ferr(f, loc, "'%s' is a module instance; call it (%s(...)) or one of its methods", name, name);
                *out = verr();
                return true;
            case M_FUNC:
                ferr(f, loc, "'%s' is a function; call it (%s(...))", name, name);
                *out = verr();
                return true;
            }
        }
    }
    if (strcmp(name, "training") == 0) {
        if (!f->gc) {
            // Module items run once for both modes, so parameters cannot
            // depend on the mode.
            ferr(f, loc, "'training' is only defined inside functions and entries (module items such as parameters "
                 "exist in both modes)");
            *out = verr();
            return true;
        }
        *out = vbool(f->s->training);
        return true;
    }
    if (strcmp(name, "rng_seed") == 0) { *out = rng_seed_value(f, loc); return true; }
    int32_t sym = itr_program_find_symbol(f->s->prog, name);
    if (sym >= 0) { *out = vdim(f->s, itr_dim_sym(f->s->prog, sym)); return true; }
    enum itr_dtype dt;
    if (itr_dtype_from_name(name, &dt)) { *out = (struct val){ .k = V_DTYPE, .u.dt = dt }; return true; }
    if (strcmp(name, "inf") == 0) { *out = vfloat(HUGE_VAL); return true; }
    if (strcmp(name, "nan") == 0) { *out = vfloat(NAN); return true; }
    return false;
}

// ------------------------------------------------------------ nodes

static void free_tensor_attrs(enum itr_op op, struct itr_attr *attrs) {
    const struct itr_op_info *info = itr_op_info(op);
    for (int k = 0; k < info->n_attrs; k++)
        if (attrs[k].kind == ITR_ATTR_TENSOR && attrs[k].u.tensor) {
            itr_tensor_free(attrs[k].u.tensor);
            attrs[k].u.tensor = NULL;
            attrs[k].kind = ITR_ATTR_NONE;
        }
}

// Appends a node to the current graph; on error (already reported by the
// graph builder) adds the call chain and frees literal tensors.
static bool add_node(struct frame *f, enum itr_op op, const int32_t *ins, int n, struct itr_attr *attrs,
                     struct itr_loc loc, int32_t *outs) {
    if (!itr_graph_add_node(f->gc->g, op, ins, n, attrs, loc, f->scope, outs, f->s->d)) {
        if (attrs) free_tensor_attrs(op, attrs);
        call_notes(f);
        return false;
    }
    return true;
}

static struct val node_result(struct frame *f, const int32_t *outs, int n) {
    if (n == 1) return vtensor(outs[0]);
    struct val *v = itr_arena_alloc(f->s->arena, (size_t)(n ? n : 1) * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = vtensor(outs[i]);
    return (struct val){ .k = V_MULTI, .u.list = { v, n } };
}

static bool store_elem(struct frame *f, struct itr_tensor *t, int64_t i, bool is_int, int64_t iv, double fv,
                       struct itr_loc loc) {
    switch (t->dtype) {
    case ITR_F32: {
        double x = is_int ? (double)iv : fv;
        float y = (float)x;
        if (isinf(y) && !isinf(x)) { ferr(f, loc, "the literal %g is out of range for f32", x); return false; }
        ((float *)t->data)[i] = y;
        return true;
    }
    case ITR_F64: ((double *)t->data)[i] = is_int ? (double)iv : fv; return true;
    case ITR_I32: case ITR_I64: {
        int64_t v = iv;
        if (!is_int) {
            if (!(fv == floor(fv)) || fabs(fv) > 9.2e18) {
                ferr(f, loc, "the literal %g is not an integer; it cannot be an %s constant", fv, itr_dtype_name(t->dtype));
                return false;
            }
            v = (int64_t)fv;
        }
        if (t->dtype == ITR_I32) {
            if (v < INT32_MIN || v > INT32_MAX) {
                ferr(f, loc, "the literal %lld is out of range for i32", (long long)v);
                return false;
            }
            ((int32_t *)t->data)[i] = (int32_t)v;
        } else {
            ((int64_t *)t->data)[i] = v;
        }
        return true;
    }
    case ITR_BOOL: {
        double x = is_int ? (double)iv : fv;
        if (x != 0 && x != 1) { ferr(f, loc, "the literal %g is not a bool (0 or 1)", x); return false; }
        ((uint8_t *)t->data)[i] = x != 0;
        return true;
    }
    default: return false;
    }
}

static int32_t add_constant(struct frame *f, struct itr_tensor *t, struct itr_loc loc) {
    struct itr_attr *attrs = itr_attrs_default(f->s->prog, ITR_OP_CONSTANT);
    attrs[0] = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = t };
    int32_t out = -1;
    if (!add_node(f, ITR_OP_CONSTANT, NULL, 0, attrs, loc, &out)) return -1;
    return out;
}

// A config value where a tensor is expected becomes a constant of dtype dt.
static int32_t as_tensor(struct frame *f, struct val v, enum itr_dtype dt, struct itr_loc loc, const char *what) {
    if (v.k == V_TENSOR) return v.u.t;
    if (v.k == V_ERR) return -1;
    if (!f->gc) { ferr(f, loc, "%s: tensors are not available here (only compile-time values)", what); return -1; }
    if (v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL) {
        if (itr_dtype_is_float(dt)) {
            // A float scalar keeps its double value in a `full` node, so a graph
            // run in f64 (gradient checks) sees 1e-8, not its f32 rounding.
            struct itr_attr *attrs = itr_attrs_default(f->s->prog, ITR_OP_FULL);
            double x = v.k == V_INT ? (double)v.u.i : v.k == V_BOOL ? (double)v.u.b : v.u.f;
            attrs[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = x };
            attrs[itr_op_attr_index(ITR_OP_FULL, "dtype")] = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = dt };
            int32_t out = -1;
            return add_node(f, ITR_OP_FULL, NULL, 0, attrs, loc, &out) ? out : -1;
        }
        struct itr_tensor *t = itr_tensor_new(dt, 0, NULL);
        if (!t) return -1;
        bool ok = v.k == V_INT ? store_elem(f, t, 0, true, v.u.i, 0, loc)
                               : store_elem(f, t, 0, false, 0, v.k == V_BOOL ? (double)v.u.b : v.u.f, loc);
        if (!ok) { itr_tensor_free(t); return -1; }
        return add_constant(f, t, loc);
    }
    if (v.k == V_TLIT) {
        const struct tlit *tl = v.u.tl;
        struct itr_tensor *t = itr_tensor_new(tl->dtype, tl->rank, tl->shape);
        if (!t) { ferr(f, loc, "tensor literal too large"); return -1; }
        for (int64_t i = 0; i < tl->n; i++) {
            bool ok = tl->i ? store_elem(f, t, i, true, tl->i[i], 0, loc) : store_elem(f, t, i, false, 0, tl->f[i], loc);
            if (!ok) { itr_tensor_free(t); return -1; }
        }
        return add_constant(f, t, loc);
    }
    char d[160];
    describe_val(f, v, d, sizeof d);
    if (v.k == V_DIM) ferr(f, loc, "%s: %s cannot be used as a tensor value", what, d);
    else ferr(f, loc, "%s must be a tensor, got %s", what, d);
    return -1;
}

// The dtype a literal operand takes: that of the first non-bool tensor
// operand (so where(c, x, 0.0) gets x's dtype), else the first tensor's,
// else f32.
static enum itr_dtype literal_dtype(const struct itr_graph *g, const struct val *v, int n) {
    int first = -1;
    for (int i = 0; i < n; i++) {
        if (v[i].k != V_TENSOR) continue;
        enum itr_dtype dt = g->values[v[i].u.t].type.dtype;
        if (dt != ITR_BOOL) return dt;
        if (first < 0) first = i;
    }
    return first >= 0 ? ITR_BOOL : ITR_F32;
}

// ------------------------------------------------------------ operators

static int64_t floordiv64(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static const char *op_text(enum tok_kind k) { return tok_kind_name(k); }

static bool is_num(struct val v) { return v.k == V_INT || v.k == V_FLOAT; }
static double num(struct val v) { return v.k == V_INT ? (double)v.u.i : v.u.f; }

static struct val config_binop(struct frame *f, enum tok_kind op, struct val a, struct val b, struct itr_loc loc) {
    struct sess *s = f->s;
    char da[160], db[160];
    if (op == TOK_ANDAND || op == TOK_OROR) {
        if (a.k == V_BOOL && b.k == V_BOOL) return vbool(op == TOK_ANDAND ? a.u.b && b.u.b : a.u.b || b.u.b);
        goto bad;
    }
    if (op == TOK_EQ || op == TOK_NE) {
        bool eq;
        if (is_num(a) && is_num(b)) eq = (a.k == V_INT && b.k == V_INT) ? a.u.i == b.u.i : num(a) == num(b);
        else if (a.k == V_BOOL && b.k == V_BOOL) eq = a.u.b == b.u.b;
        else if (a.k == V_STR && b.k == V_STR) eq = strcmp(a.u.s, b.u.s) == 0;
        else if (a.k == V_DTYPE && b.k == V_DTYPE) eq = a.u.dt == b.u.dt;
        else if ((a.k == V_DIM || a.k == V_INT) && (b.k == V_DIM || b.k == V_INT)) {
            if (a.k == V_DIM && b.k == V_DIM && a.u.dim == b.u.dim) eq = true;
            else {
                describe_val(f, a, da, sizeof da);
                describe_val(f, b, db, sizeof db);
                ferr(f, loc, "cannot decide at compile time whether %s equals %s", da, db);
                return verr();
            }
        } else goto bad;
        return vbool(op == TOK_EQ ? eq : !eq);
    }
    if (op == TOK_LT || op == TOK_LE || op == TOK_GT || op == TOK_GE) {
        if (!is_num(a) || !is_num(b)) goto bad;
        bool r;
        if (a.k == V_INT && b.k == V_INT) {
            int64_t x = a.u.i, y = b.u.i;
            r = op == TOK_LT ? x < y : op == TOK_LE ? x <= y : op == TOK_GT ? x > y : x >= y;
        } else {
            double x = num(a), y = num(b);
            r = op == TOK_LT ? x < y : op == TOK_LE ? x <= y : op == TOK_GT ? x > y : x >= y;
        }
        return vbool(r);
    }
    if (op == TOK_AT) goto bad;
    // + - * /
    if (a.k == V_INT && b.k == V_INT) {
        int64_t r;
        bool ovf = false;
        switch (op) {
        case TOK_PLUS: ovf = __builtin_add_overflow(a.u.i, b.u.i, &r); break;
        case TOK_MINUS: ovf = __builtin_sub_overflow(a.u.i, b.u.i, &r); break;
        case TOK_STAR: ovf = __builtin_mul_overflow(a.u.i, b.u.i, &r); break;
        default:
            if (b.u.i == 0) { ferr(f, loc, "division by zero"); return verr(); }
            if (a.u.i == INT64_MIN && b.u.i == -1) { ovf = true; r = 0; break; }
            r = floordiv64(a.u.i, b.u.i);
            break;
        }
        if (ovf) { ferr(f, loc, "integer overflow in '%s'", op_text(op)); return verr(); }
        return vint(r);
    }
    if ((a.k == V_DIM || a.k == V_INT) && (b.k == V_DIM || b.k == V_INT)) {
        itr_dim x = a.k == V_DIM ? a.u.dim : itr_dim_const(s->prog, a.u.i);
        itr_dim y = b.k == V_DIM ? b.u.dim : itr_dim_const(s->prog, b.u.i);
        if (op == TOK_SLASH && b.k == V_INT && b.u.i == 0) { ferr(f, loc, "division by zero"); return verr(); }
        enum itr_dim_kind k = op == TOK_PLUS ? ITR_DIM_ADD : op == TOK_MINUS ? ITR_DIM_SUB
                            : op == TOK_STAR ? ITR_DIM_MUL : ITR_DIM_DIV;
        return vdim(s, itr_dim_binary(s->prog, k, x, y));
    }
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        switch (op) {
        case TOK_PLUS: return vfloat(x + y);
        case TOK_MINUS: return vfloat(x - y);
        case TOK_STAR: return vfloat(x * y);
        default: return vfloat(x / y);
        }
    }
bad:
    describe_val(f, a, da, sizeof da);
    describe_val(f, b, db, sizeof db);
    ferr(f, loc, "operator %s cannot combine %s and %s", op_text(op), da, db);
    return verr();
}

static struct val binop(struct frame *f, enum tok_kind op, struct val a, struct val b, struct itr_loc loc) {
    if (a.k == V_ERR || b.k == V_ERR) return verr();
    if (a.k == V_MULTI || b.k == V_MULTI) {
        ferr(f, loc, "operand of %s is a call with %d results; unpack them first (a, b = ...)", op_text(op),
             a.k == V_MULTI ? a.u.list.n : b.u.list.n);
        return verr();
    }
    if (a.k != V_TENSOR && b.k != V_TENSOR) return config_binop(f, op, a, b, loc);
    enum itr_op o;
    switch (op) {
    case TOK_PLUS: o = ITR_OP_ADD; break;
    case TOK_MINUS: o = ITR_OP_SUB; break;
    case TOK_STAR: o = ITR_OP_MUL; break;
    case TOK_SLASH: o = ITR_OP_DIV; break;
    case TOK_AT: o = ITR_OP_MATMUL; break;
    case TOK_EQ: o = ITR_OP_EQ; break;
    case TOK_NE: o = ITR_OP_NE; break;
    case TOK_LT: o = ITR_OP_LT; break;
    case TOK_LE: o = ITR_OP_LE; break;
    case TOK_GT: o = ITR_OP_GT; break;
    case TOK_GE: o = ITR_OP_GE; break;
    case TOK_ANDAND: o = ITR_OP_AND; break;
    default: o = ITR_OP_OR; break;
    }
    struct val both[2] = { a, b };
    enum itr_dtype dt = literal_dtype(f->gc->g, both, 2);
    char what[64];
    snprintf(what, sizeof what, "operand of %s", op_text(op));
    int32_t ins[2] = { as_tensor(f, a, dt, loc, what), as_tensor(f, b, dt, loc, what) };
    if (ins[0] < 0 || ins[1] < 0) return verr();
    int32_t out;
    if (!add_node(f, o, ins, 2, NULL, loc, &out)) return verr();
    return vtensor(out);
}

static struct val unop(struct frame *f, enum ast_expr_kind k, struct val v, struct itr_loc loc) {
    char d[160];
    if (v.k == V_ERR) return verr();
    if (v.k == V_TENSOR) {
        int32_t out;
        if (!add_node(f, k == E_NEG ? ITR_OP_NEG : ITR_OP_NOT, &v.u.t, 1, NULL, loc, &out)) return verr();
        return vtensor(out);
    }
    if (k == E_NOT) {
        if (v.k == V_BOOL) return vbool(!v.u.b);
    } else {
        if (v.k == V_INT && v.u.i != INT64_MIN) return vint(-v.u.i);
        if (v.k == V_FLOAT) return vfloat(-v.u.f);
        if (v.k == V_DIM) return vdim(f->s, itr_dim_binary(f->s->prog, ITR_DIM_SUB, itr_dim_const(f->s->prog, 0), v.u.dim));
    }
    describe_val(f, v, d, sizeof d);
    ferr(f, loc, "operator %s cannot be applied to %s", k == E_NEG ? "'-'" : "'!'", d);
    return verr();
}

// ------------------------------------------------------------ literals

static struct val eval_tlit(struct frame *f, const struct ast_expr *e) {
    struct tlit *tl = itr_arena_alloc(f->s->arena, sizeof *tl);
    tl->dtype = e->u.tensor.dtype;
    tl->rank = e->u.tensor.rank;
    int64_t n = 1;
    for (int i = 0; i < tl->rank; i++) {
        struct val d = eval_expr(f, e->u.tensor.dims[i]);
        if (d.k == V_ERR) return verr();
        if (d.k != V_INT || d.u.i < 0) {
            ferr(f, e->u.tensor.dims[i]->loc, "the dims of a tensor literal must be non-negative integers");
            return verr();
        }
        tl->shape[i] = d.u.i;
        if (__builtin_mul_overflow(n, d.u.i, &n) || n > ((int64_t)1 << 40)) {
            ferr(f, e->loc, "tensor literal too large");
            return verr();
        }
    }
    if (n != e->u.tensor.n_vals) {
        ferr(f, e->loc, "tensor literal of shape with %lld elements lists %d values", (long long)n, e->u.tensor.n_vals);
        return verr();
    }
    tl->n = n;
    bool ints = tl->dtype == ITR_I32 || tl->dtype == ITR_I64;
    if (ints) tl->i = itr_arena_alloc(f->s->arena, (size_t)(n ? n : 1) * sizeof *tl->i);
    else tl->f = itr_arena_alloc(f->s->arena, (size_t)(n ? n : 1) * sizeof *tl->f);
    for (int64_t i = 0; i < n; i++) {
        const struct ast_expr *x = e->u.tensor.vals[i];
        if (ints) {
            if (x->kind == E_INT) tl->i[i] = x->u.i;
            else if (x->kind == E_FLOAT && x->u.f == floor(x->u.f) && fabs(x->u.f) < 9.2e18) tl->i[i] = (int64_t)x->u.f;
            else { ferr(f, x->loc, "element of an %s tensor literal must be an integer", itr_dtype_name(tl->dtype)); return verr(); }
        } else {
            tl->f[i] = x->kind == E_INT ? (double)x->u.i : x->kind == E_BOOL ? (double)x->u.b : x->u.f;
        }
    }
    return (struct val){ .k = V_TLIT, .u.tl = tl };
}

// ------------------------------------------------------------ attributes

static bool val_to_attr(struct frame *f, enum itr_op op, const struct itr_attr_spec *sp, struct val v,
                        struct itr_loc loc, struct itr_attr *out) {
    struct sess *s = f->s;
    char d[160];
    const char *opname = itr_op_name(op);
    switch (sp->kind) {
    case ITR_ATTR_INT:
        if (v.k == V_INT) { *out = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = v.u.i }; return true; }
        break;
    case ITR_ATTR_FLOAT:
        if (is_num(v)) { *out = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = num(v) }; return true; }
        break;
    case ITR_ATTR_BOOL:
        if (v.k == V_BOOL) { *out = (struct itr_attr){ .kind = ITR_ATTR_BOOL, .u.i = v.u.b }; return true; }
        break;
    case ITR_ATTR_DTYPE:
        if (v.k == V_DTYPE) { *out = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = v.u.dt }; return true; }
        break;
    case ITR_ATTR_STR:
        if (v.k == V_STR) { *out = (struct itr_attr){ .kind = ITR_ATTR_STR, .u.s = itr_program_strdup(s->prog, v.u.s) }; return true; }
        break;
    case ITR_ATTR_INTS: case ITR_ATTR_FLOATS: case ITR_ATTR_DIMS: {
        const struct val *items = &v;
        int n = 1;
        if (v.k == V_LIST) { items = v.u.list.v; n = v.u.list.n; }
        int64_t *iv = NULL;
        double *fv = NULL;
        itr_dim *dv = NULL;
        size_t cnt = (size_t)(n ? n : 1);
        if (sp->kind == ITR_ATTR_INTS) iv = itr_arena_alloc(s->prog->arena, cnt * sizeof *iv);
        if (sp->kind == ITR_ATTR_FLOATS) fv = itr_arena_alloc(s->prog->arena, cnt * sizeof *fv);
        if (sp->kind == ITR_ATTR_DIMS) dv = itr_arena_alloc(s->prog->arena, cnt * sizeof *dv);
        for (int i = 0; i < n; i++) {
            struct val x = items[i];
            if (sp->kind == ITR_ATTR_INTS && x.k == V_INT) iv[i] = x.u.i;
            else if (sp->kind == ITR_ATTR_FLOATS && is_num(x)) fv[i] = num(x);
            else if (sp->kind == ITR_ATTR_DIMS && x.k == V_INT && x.u.i >= 0) dv[i] = itr_dim_const(s->prog, x.u.i);
            else if (sp->kind == ITR_ATTR_DIMS && x.k == V_DIM) dv[i] = x.u.dim;
            else {
                if (v.k != V_LIST) goto bad;
                describe_val(f, x, d, sizeof d);
                ferr(f, loc, "attribute '%s' of op '%s' must be %s; element %d is %s", sp->name, opname,
                     itr_attr_kind_name(sp->kind), i, d);
                return false;
            }
        }
        out->kind = sp->kind;
        if (iv) { out->u.ints.v = iv; out->u.ints.n = n; }
        if (fv) { out->u.floats.v = fv; out->u.floats.n = n; }
        if (dv) { out->u.dims.v = dv; out->u.dims.n = n; }
        return true;
    }
    case ITR_ATTR_TENSOR:
        if (v.k == V_TLIT) {
            const struct tlit *tl = v.u.tl;
            struct itr_tensor *t = itr_tensor_new(tl->dtype, tl->rank, tl->shape);
            if (!t) { ferr(f, loc, "tensor literal too large"); return false; }
            for (int64_t i = 0; i < tl->n; i++) {
                bool ok = tl->i ? store_elem(f, t, i, true, tl->i[i], 0, loc) : store_elem(f, t, i, false, 0, tl->f[i], loc);
                if (!ok) { itr_tensor_free(t); return false; }
            }
            *out = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = t };
            return true;
        }
        break;
    case ITR_ATTR_GRAPH:
        ferr(f, loc, "attribute '%s' of op '%s' is set by passing a function as the first argument", sp->name, opname);
        return false;
    default: break;
    }
bad:
    describe_val(f, v, d, sizeof d);
    ferr(f, loc, "attribute '%s' of op '%s' must be %s, got %s", sp->name, opname, itr_attr_kind_name(sp->kind), d);
    return false;
}

static void attr_names(enum itr_op op, char *buf, size_t n) {
    const struct itr_op_info *info = itr_op_info(op);
    size_t w = 0;
    buf[0] = 0;
    for (int k = 0; k < info->n_attrs && w < n; k++) {
        int r = snprintf(buf + w, n - w, "%s%s", k ? ", " : "", info->attrs[k].name);
        if (r > 0) w += (size_t)r;
    }
}

static bool check_arity(struct frame *f, enum itr_op op, int n, struct itr_loc loc) {
    const struct itr_op_info *info = itr_op_info(op);
    if (n >= info->min_inputs && (info->max_inputs < 0 || n <= info->max_inputs)) return true;
    if (info->max_inputs < 0)
        ferr(f, loc, "op '%s' takes at least %d operand%s, got %d", info->name, info->min_inputs,
             info->min_inputs == 1 ? "" : "s", n);
    else if (info->min_inputs == info->max_inputs)
        ferr(f, loc, "op '%s' takes %d operand%s, got %d", info->name, info->min_inputs, info->min_inputs == 1 ? "" : "s", n);
    else
        ferr(f, loc, "op '%s' takes %d to %d operands, got %d", info->name, info->min_inputs, info->max_inputs, n);
    return false;
}

// ------------------------------------------------------------ calls

struct args {
    struct val *pos; struct itr_loc *pos_locs; int n_pos;
    const char **kw; struct val *kw_vals; struct itr_loc *kw_locs; int n_kw;
    bool bad;
};

// Evaluates a call's arguments; skip_first leaves out a leading positional
// argument (scan's body name).
static void eval_args(struct frame *f, const struct ast_expr *e, bool skip_first, struct args *a) {
    int n = e->u.call.n_args;
    memset(a, 0, sizeof *a);
    size_t cnt = (size_t)(n ? n : 1);
    a->pos = itr_arena_alloc(f->s->arena, cnt * sizeof *a->pos);
    a->pos_locs = itr_arena_alloc(f->s->arena, cnt * sizeof *a->pos_locs);
    a->kw = itr_arena_alloc(f->s->arena, cnt * sizeof *a->kw);
    a->kw_vals = itr_arena_alloc(f->s->arena, cnt * sizeof *a->kw_vals);
    a->kw_locs = itr_arena_alloc(f->s->arena, cnt * sizeof *a->kw_locs);
    for (int i = skip_first ? 1 : 0; i < n; i++) {
        const struct ast_arg *g = &e->u.call.args[i];
        if (g->name) {
            for (int j = 0; j < a->n_kw; j++)
                if (strcmp(a->kw[j], g->name) == 0) {
                    ferr(f, g->loc, "argument '%s' is given twice", g->name);
                    a->bad = true;
                }
        }
        struct val v = eval_expr(f, g->value);
        if (v.k == V_ERR) a->bad = true;
        if (v.k == V_MULTI) {
            ferr(f, g->value->loc, "argument is a call with %d results; unpack them first (a, b = ...)", v.u.list.n);
            a->bad = true;
        }
        if (g->name) {
            a->kw[a->n_kw] = g->name;
            a->kw_vals[a->n_kw] = v;
            a->kw_locs[a->n_kw++] = g->loc;
        } else {
            a->pos[a->n_pos] = v;
            a->pos_locs[a->n_pos++] = g->value->loc;
        }
    }
}

static struct val eval_op(struct frame *f, enum itr_op op, const struct ast_expr *e) {
    const struct itr_op_info *info = itr_op_info(op);
    struct args a;
    eval_args(f, e, false, &a);
    if (a.bad) return verr();
    if (!f->gc) {
        ferr(f, e->loc, "op '%s' builds a tensor; only compile-time values are allowed here", info->name);
        return verr();
    }
    struct itr_attr *attrs = itr_attrs_default(f->s->prog, op);
    bool bad = false;
    for (int i = 0; i < a.n_kw; i++) {
        int k = itr_op_attr_index(op, a.kw[i]);
        if (k < 0) {
            char names[256];
            attr_names(op, names, sizeof names);
            if (info->n_attrs) ferr(f, a.kw_locs[i], "op '%s' has no attribute '%s' (its attributes: %s)", info->name, a.kw[i], names);
            else ferr(f, a.kw_locs[i], "op '%s' has no attribute '%s' (it takes none)", info->name, a.kw[i]);
            bad = true;
            continue;
        }
        if (!val_to_attr(f, op, &info->attrs[k], a.kw_vals[i], a.kw_locs[i], &attrs[k])) bad = true;
    }
    if (bad || !check_arity(f, op, a.n_pos, e->loc)) { free_tensor_attrs(op, attrs); return verr(); }
    enum itr_dtype dt = literal_dtype(f->gc->g, a.pos, a.n_pos);
    int32_t *ins = itr_arena_alloc(f->s->arena, (size_t)(a.n_pos ? a.n_pos : 1) * sizeof *ins);
    for (int i = 0; i < a.n_pos; i++) {
        char what[80];
        snprintf(what, sizeof what, "operand %d of '%s'", i, info->name);
        ins[i] = as_tensor(f, a.pos[i], dt, a.pos_locs[i], what);
        if (ins[i] < 0) bad = true;
    }
    if (bad) { free_tensor_attrs(op, attrs); return verr(); }
    int32_t outs[16];
    if (!add_node(f, op, ins, a.n_pos, attrs, e->loc, outs)) return verr();
    return node_result(f, outs, f->gc->g->nodes[f->gc->g->n_nodes - 1].n_outputs);
}

static struct val eval_dimof(struct frame *f, const struct ast_expr *e) {
    struct args a;
    eval_args(f, e, false, &a);
    if (a.bad) return verr();
    if (a.n_pos != 2 || a.n_kw) { ferr(f, e->loc, "dimof takes two arguments: dimof(tensor, axis)"); return verr(); }
    if (a.pos[0].k != V_TENSOR) {
        char d[160];
        describe_val(f, a.pos[0], d, sizeof d);
        ferr(f, a.pos_locs[0], "dimof needs a tensor, got %s", d);
        return verr();
    }
    if (a.pos[1].k != V_INT) { ferr(f, a.pos_locs[1], "dimof's axis must be a compile-time int"); return verr(); }
    const struct itr_type *t = &f->gc->g->values[a.pos[0].u.t].type;
    int ax;
    if (!itr_axis_normalize(a.pos[1].u.i, t->rank, &ax)) {
        char ts[200];
        itr_type_format(f->s->prog, t, ts, sizeof ts);
        ferr(f, a.pos_locs[1], "dimof: axis %lld is out of range for %s", (long long)a.pos[1].u.i, ts);
        return verr();
    }
    return vdim(f->s, t->dims[ax]);
}

// shapeof(x): every dim of x as a list (for dims attributes); rankof(x): its rank.
static struct val eval_shapeof(struct frame *f, const struct ast_expr *e, bool rank) {
    const char *what = rank ? "rankof" : "shapeof";
    struct args a;
    eval_args(f, e, false, &a);
    if (a.bad) return verr();
    if (a.n_pos != 1 || a.n_kw) { ferr(f, e->loc, "%s takes one argument: %s(tensor)", what, what); return verr(); }
    if (a.pos[0].k != V_TENSOR) {
        char d[160];
        describe_val(f, a.pos[0], d, sizeof d);
        ferr(f, a.pos_locs[0], "%s needs a tensor, got %s", what, d);
        return verr();
    }
    const struct itr_type *t = &f->gc->g->values[a.pos[0].u.t].type;
    if (rank) return vint(t->rank);
    struct val *v = itr_arena_alloc(f->s->arena, (size_t)(t->rank ? t->rank : 1) * sizeof *v);
    for (int i = 0; i < t->rank; i++) v[i] = vdim(f->s, t->dims[i]);
    return (struct val){ .k = V_LIST, .u.list = { v, t->rank } };
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= ((const unsigned char *)p)[i]; h *= 1099511628211ull; }
    return h;
}

static uint64_t fnv_loc(uint64_t h, struct itr_loc loc) {
    // The file's base name only, so a salt does not depend on the folder
    // itrc was run from.
    const char *file = loc.file ? loc.file : "";
    const char *slash = strrchr(file, '/');
    if (slash) file = slash + 1;
    h = fnv_bytes(h, file, strlen(file) + 1);
    int32_t lc[2] = { loc.line, loc.col };
    return fnv_bytes(h, lc, sizeof lc);
}

// site_salt(): an int unique to this call site along the whole chain of
// calls that inlined it, and to the instance path, so that two dropouts
// (even two calls of one `dropout` function) draw independent masks.
static struct val eval_site_salt(struct frame *f, const struct ast_expr *e) {
    if (e->u.call.n_args) { ferr(f, e->loc, "site_salt takes no arguments"); return verr(); }
    uint64_t h = 1469598103934665603ull;
    const char *scope = f->scope ? f->scope : "";
    h = fnv_bytes(h, scope, strlen(scope) + 1);
    h = fnv_loc(h, e->loc);
    for (const struct frame *c = f; c; c = c->caller)
        if (c->caller) h = fnv_loc(h, c->call_loc);
    h ^= h >> 31;
    return vint((int64_t)(h & 0x7fffffff));
}

// Finds the function a callee name denotes through the owning instance: a
// method, an instance (its forward) or an instance's method. 1: found,
// 0: not a member, -1: error reported.
static int resolve_method(struct frame *f, const char *name, struct itr_loc loc, const struct ast_item **fn,
                          struct inst **owner) {
    if (!f->inst) return 0;
    struct inst *o = NULL;
    struct member *m = resolve_member_path(f->inst, name, &o);
    if (!m) {
        // "inst.missing": say what the instance lacks.
        const char *dot = strrchr(name, '.');
        if (dot) {
            char head[256];
            size_t n = (size_t)(dot - name);
            if (n < sizeof head) {
                memcpy(head, name, n);
                head[n] = 0;
                struct member *hm = resolve_member_path(f->inst, head, NULL);
                if (hm && hm->kind == M_INST) {
                    ferr(f, loc, "instance '%s' (module %s) has no method '%s'", head, hm->sub->module_name, dot + 1);
                    return -1;
                }
            }
        }
        return 0;
    }
    if (m->kind == M_FUNC) { *fn = m->fn; *owner = o; return 1; }
    if (m->kind == M_INST) {
        struct member *fw = smap_get(&m->sub->names, "forward");
        if (!fw || fw->kind != M_FUNC) {
            ferr(f, loc, "instance '%s' (module %s) has no 'forward' method to call", name, m->sub->module_name);
            return -1;
        }
        *fn = fw->fn;
        *owner = m->sub;
        return 1;
    }
    ferr(f, loc, "'%s' is a %s, not a function", name, m->kind == M_PARAM ? "parameter" : "config value");
    return -1;
}

static int resolve_callable(struct frame *f, const char *name, struct itr_loc loc, const struct ast_item **fn,
                            struct inst **owner) {
    int r = resolve_method(f, name, loc, fn, owner);
    if (r) return r;
    enum itr_op op;
    if (!strchr(name, '.') && itr_op_lookup(name, &op)) return 0;
    const struct ast_item *g = smap_get(&f->s->funcs, name);
    if (g) { *fn = g; *owner = NULL; return 1; }
    return 0;
}

static void unknown_callee(struct frame *f, const char *name, struct itr_loc loc) {
    if (smap_get(&f->s->modules, name))
        ferr(f, loc, "'%s' is a module; instantiate it with 'let NAME = %s(...)' in a model or module body", name, name);
    else
        ferr(f, loc, "unknown function or op '%s'", name);
}

static void recursion_chain(struct frame *caller, const struct ast_item *fn, const struct inst *owner,
                            struct itr_loc loc) {
    // Names from the first activation of fn down to the new call.
    char buf[1024];
    size_t w = 0;
    const struct frame *chain[ITR_TEXT_MAX_CALL_DEPTH + 2];
    int n = 0;
    for (struct frame *c = caller; c && n < ITR_TEXT_MAX_CALL_DEPTH + 1; c = c->caller) {
        if (!c->fn) break;
        chain[n++] = c;
        if (c->fn == fn) break;
    }
    buf[0] = 0;
    for (int i = n - 1; i >= 0 && w < sizeof buf; i--) {
        char nb[256];
        int r = snprintf(buf + w, sizeof buf - w, "%s -> ", fn_display_name(chain[i]->fn, chain[i]->inst, nb, sizeof nb));
        if (r > 0) w += (size_t)r;
    }
    char nb[256];
    if (w < sizeof buf) snprintf(buf + w, sizeof buf - w, "%s", fn_display_name(fn, owner, nb, sizeof nb));
    ferr(caller, loc, "recursive call: %s (functions are inlined, so recursion cannot end)", buf);
}

struct val invoke(struct frame *caller, struct gctx *gc, const struct ast_item *fn, struct inst *owner,
                  const struct val *pos, const struct itr_loc *pos_locs, int n_pos,
                  const char *const *kw, const struct val *kw_vals, const struct itr_loc *kw_locs, int n_kw,
                  struct itr_loc call_loc) {
    struct sess *s = caller->s;
    char fname[256];
    fn_display_name(fn, owner, fname, sizeof fname);
    if (fn->is_train) {
        ferr(caller, call_loc, "the train entry cannot be called; move the shared code into a function that both "
             "call");
        return verr();
    }
    for (struct frame *c = caller; c; c = c->caller)
        if (c->fn == fn) { recursion_chain(caller, fn, owner, call_loc); return verr(); }
    if (caller->depth >= ITR_TEXT_MAX_CALL_DEPTH) {
        ferr(caller, call_loc, "calls nested more than %d deep", ITR_TEXT_MAX_CALL_DEPTH);
        return verr();
    }
    struct frame nf;
    memset(&nf, 0, sizeof nf);
    nf.s = s;
    nf.gc = gc;
    nf.inst = owner;
    nf.scope = owner ? (owner->path[0] ? owner->path : NULL) : caller->scope;
    nf.fn = fn;
    nf.caller = caller;
    nf.call_loc = call_loc;
    nf.depth = caller->depth + 1;

    int n_tensor = 0;
    for (int i = 0; i < fn->n_params; i++) n_tensor += !fn->params[i].is_config;
    if (n_pos > n_tensor) {
        ferr(caller, pos_locs[n_tensor], "'%s' takes %d tensor argument%s, got %d%s", fname, n_tensor,
             n_tensor == 1 ? "" : "s", n_pos, n_tensor < fn->n_params ? " (pass config parameters by name: k=value)" : "");
        return verr();
    }
    bool *used = itr_arena_alloc(s->arena, (size_t)(n_kw ? n_kw : 1) * sizeof *used);
    bool bad = false;
    enum itr_dtype lit_dt = gc ? literal_dtype(gc->g, pos, n_pos) : ITR_F32;
    // Bind in declaration order: config parameters first get their values
    // so that defaults and tensor types can refer to earlier ones.
    int ti = 0;
    struct val *targ = itr_arena_alloc(s->arena, (size_t)(fn->n_params ? fn->n_params : 1) * sizeof *targ);
    struct itr_loc *tloc = itr_arena_alloc(s->arena, (size_t)(fn->n_params ? fn->n_params : 1) * sizeof *tloc);
    for (int i = 0; i < fn->n_params; i++) {
        const struct ast_param *pa = &fn->params[i];
        for (int j = i + 1; j < fn->n_params; j++)
            if (strcmp(fn->params[j].name, pa->name) == 0) {
                ferr(caller, fn->params[j].loc, "duplicate parameter '%s' in '%s'", pa->name, fname);
                return verr();
            }
        struct val v = { .k = V_ERR };
        struct itr_loc vloc = call_loc;
        bool have = false;
        if (!pa->is_config && ti < n_pos) { v = pos[ti]; vloc = pos_locs[ti]; ti++; have = true; }
        for (int j = 0; j < n_kw; j++)
            if (strcmp(kw[j], pa->name) == 0) {
                if (have) { ferr(caller, kw_locs[j], "argument '%s' of '%s' is given twice", pa->name, fname); bad = true; }
                v = kw_vals[j];
                vloc = kw_locs[j];
                used[j] = true;
                have = true;
            }
        if (pa->is_config) {
            if (!have && pa->def) { v = eval_expr(&nf, pa->def); vloc = pa->def->loc; have = v.k != V_ERR; if (!have) bad = true; }
            if (!have) {
                if (!bad) ferr(caller, call_loc, "missing config argument '%s' in the call to '%s'", pa->name, fname);
                bad = true;
                continue;
            }
            char what[300];
            snprintf(what, sizeof what, "config parameter '%s' of '%s'", pa->name, fname);
            struct val cv;
            if (!val_to_config(caller, pa->ckind, v, vloc, what, &cv)) { bad = true; continue; }
            val_bind(&nf, pa->name, cv);
        } else {
            if (!have) {
                ferr(caller, call_loc, "missing argument '%s' in the call to '%s'", pa->name, fname);
                bad = true;
                continue;
            }
            targ[i] = v;
            tloc[i] = vloc;
        }
    }
    for (int j = 0; j < n_kw; j++)
        if (!used[j]) { ferr(caller, kw_locs[j], "'%s' has no parameter '%s'", fname, kw[j]); bad = true; }
    if (bad) return verr();
    for (int i = 0; i < fn->n_params; i++) {
        const struct ast_param *pa = &fn->params[i];
        if (pa->is_config) continue;
        struct val v = targ[i];
        struct itr_type want;
        bool typed = pa->type != NULL;
        if (typed && !eval_type(&nf, pa->type, &want)) return verr();
        if (v.k != V_TENSOR) {
            if (!gc) { ferr(caller, tloc[i], "argument '%s' of '%s' must be a tensor", pa->name, fname); return verr(); }
            char what[300];
            snprintf(what, sizeof what, "argument '%s' of '%s'", pa->name, fname);
            int32_t t = as_tensor(caller, v, typed ? want.dtype : lit_dt, tloc[i], what);
            if (t < 0) return verr();
            v = vtensor(t);
        }
        if (typed) {
            const struct itr_type *have = &gc->g->values[v.u.t].type;
            if (!itr_type_equal(&want, have)) {
                char ws[200], hs[200];
                itr_type_format(s->prog, &want, ws, sizeof ws);
                itr_type_format(s->prog, have, hs, sizeof hs);
                ferr(caller, tloc[i], "argument '%s' of '%s' has type %s, but the parameter is declared %s", pa->name,
                     fname, hs, ws);
                return verr();
            }
        }
        val_bind(&nf, pa->name, v);
    }
    struct ret r;
    memset(&r, 0, sizeof r);
    exec_stmts(&nf, fn->body, fn->n_body, &r);
    if (!r.has) {
        if (r.n >= 0) ferr(&nf, fn->name_loc, "function '%s' has no return statement", fname);
        return verr();
    }
    for (int i = 0; i < r.n; i++)
        if (r.v[i].k == V_ERR) return verr();
    if (r.n == 1) return r.v[0];
    return (struct val){ .k = V_MULTI, .u.list = { r.v, r.n } };
}

static struct val call_fn(struct frame *f, const struct ast_item *fn, struct inst *owner, const struct ast_expr *e) {
    struct args a;
    eval_args(f, e, false, &a);
    if (a.bad) return verr();
    return invoke(f, f->gc, fn, owner, a.pos, a.pos_locs, a.n_pos, a.kw, a.kw_vals, a.kw_locs, a.n_kw, e->loc);
}

// ------------------------------------------------------------ scan

static bool graph_name_taken(struct sess *s, const char *name) {
    return smap_get(&s->graph_names, name) != NULL;
}

// Body graphs are named after the function when it is a model-level or
// free function whose name is still free (so that printed canonical text,
// where bodies are `def _scanN`, parses back to the same names), else _scanN.
static const char *body_graph_name(struct sess *s, const struct ast_item *fn, const struct inst *owner) {
    if ((!owner || owner == s->root) && !graph_name_taken(s, fn->name)) return fn->name;
    for (;;) {
        char buf[64];
        snprintf(buf, sizeof buf, "_scan%d", s->scan_counter++);
        if (!graph_name_taken(s, buf)) return itr_arena_strdup(s->arena, buf);
    }
}

static struct val eval_scan(struct frame *f, const struct ast_expr *e) {
    struct sess *s = f->s;
    const struct itr_op_info *info = itr_op_info(ITR_OP_SCAN);
    if (!f->gc) { ferr(f, e->loc, "scan builds tensors; only compile-time values are allowed here"); return verr(); }
    if (e->u.call.n_args == 0 || e->u.call.args[0].name || e->u.call.args[0].value->kind != E_NAME) {
        ferr(f, e->loc, "scan's first argument must name the body function: scan(step, carries..., scanned..., "
             "constants..., n_carry=C, n_scan=S)");
        return verr();
    }
    const struct ast_expr *bname = e->u.call.args[0].value;
    const struct ast_item *fn = NULL;
    struct inst *owner = NULL;
    int r = resolve_callable(f, bname->u.name, bname->loc, &fn, &owner);
    if (r < 0) return verr();
    if (r == 0) {
        enum itr_op op;
        if (itr_op_lookup(bname->u.name, &op))
            ferr(f, bname->loc, "scan's body must be a function, not the op '%s'", bname->u.name);
        else
            unknown_callee(f, bname->u.name, bname->loc);
        return verr();
    }
    struct args a;
    eval_args(f, e, true, &a);
    if (a.bad) return verr();
    struct itr_attr *attrs = itr_attrs_default(s->prog, ITR_OP_SCAN);
    bool bad = false, have_nc = false, have_ns = false;
    for (int i = 0; i < a.n_kw; i++) {
        int k = itr_op_attr_index(ITR_OP_SCAN, a.kw[i]);
        if (k < 0) {
            char names[256];
            attr_names(ITR_OP_SCAN, names, sizeof names);
            ferr(f, a.kw_locs[i], "op 'scan' has no attribute '%s' (its attributes: %s)", a.kw[i], names);
            bad = true;
            continue;
        }
        if (!val_to_attr(f, ITR_OP_SCAN, &info->attrs[k], a.kw_vals[i], a.kw_locs[i], &attrs[k])) bad = true;
        if (strcmp(a.kw[i], "n_carry") == 0) have_nc = true;
        if (strcmp(a.kw[i], "n_scan") == 0) have_ns = true;
    }
    if (bad) return verr();
    if (!have_nc || !have_ns) {
        ferr(f, e->loc, "op 'scan': missing required attribute '%s' (int)", have_nc ? "n_scan" : "n_carry");
        return verr();
    }
    int64_t nc = attrs[itr_op_attr_index(ITR_OP_SCAN, "n_carry")].u.i;
    int64_t ns = attrs[itr_op_attr_index(ITR_OP_SCAN, "n_scan")].u.i;
    int64_t axis = attrs[itr_op_attr_index(ITR_OP_SCAN, "axis")].u.i;
    int n = a.n_pos;
    if (nc < 0 || ns < 1 || nc + ns > n) {
        ferr(f, e->loc, "op 'scan': needs n_carry >= 0 carries and n_scan >= 1 scanned operands among its %d operands "
             "(n_carry = %lld, n_scan = %lld)", n, (long long)nc, (long long)ns);
        return verr();
    }
    enum itr_dtype dt = literal_dtype(f->gc->g, a.pos, n);
    int32_t *ins = itr_arena_alloc(s->arena, (size_t)(n + 1) * sizeof *ins);
    for (int i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "operand %d of 'scan'", i);
        ins[i] = as_tensor(f, a.pos[i], dt, a.pos_locs[i], what);
        if (ins[i] < 0) return verr();
    }
    // The body's inputs: carries, one slice of each scanned operand, constants.
    int n_tensor = 0;
    for (int i = 0; i < fn->n_params; i++) n_tensor += !fn->params[i].is_config;
    char fname[256];
    fn_display_name(fn, owner, fname, sizeof fname);
    if (n_tensor != n) {
        ferr(f, bname->loc, "scan body '%s' takes %d tensor parameter%s, but scan passes %d (%lld carr%s, %lld "
             "scanned, %lld constant%s)", fname, n_tensor, n_tensor == 1 ? "" : "s", n, (long long)nc,
             nc == 1 ? "y" : "ies", (long long)ns, (long long)(n - nc - ns), n - nc - ns == 1 ? "" : "s");
        return verr();
    }
    struct gctx bgc;
    memset(&bgc, 0, sizeof bgc);
    bgc.outer = f->gc;
    const char *gname = body_graph_name(s, fn, owner);
    smap_put(s->arena, &s->graph_names, gname, (void *)fn);
    bgc.g = itr_program_add_graph(s->prog, gname, ITR_GRAPH_BODY);
    bgc.g->loc = fn->name_loc;
    struct val *bpos = itr_arena_alloc(s->arena, (size_t)(n ? n : 1) * sizeof *bpos);
    struct itr_loc *blocs = itr_arena_alloc(s->arena, (size_t)(n ? n : 1) * sizeof *blocs);
    int k = 0;
    for (int i = 0; i < fn->n_params; i++) {
        if (fn->params[i].is_config) continue;
        struct itr_type t = f->gc->g->values[ins[k]].type;
        if (k >= nc && k < nc + ns) {
            int ax;
            if (t.rank == 0 || !itr_axis_normalize(axis, t.rank, &ax)) {
                char ts[200];
                itr_type_format(s->prog, &t, ts, sizeof ts);
                ferr(f, a.pos_locs[k], "op 'scan': axis %lld is out of range for scanned operand %d (%s)",
                     (long long)axis, k, ts);
                return verr();
            }
            for (int j = ax; j + 1 < t.rank; j++) t.dims[j] = t.dims[j + 1];
            t.rank--;
        }
        bpos[k] = vtensor(itr_graph_add_input(bgc.g, fn->params[i].name, t, fn->params[i].loc));
        blocs[k] = a.pos_locs[k];
        k++;
    }
    struct val res = invoke(f, &bgc, fn, owner, bpos, blocs, n, NULL, NULL, NULL, 0, e->loc);
    if (res.k == V_ERR) return verr();
    int n_res = res.k == V_MULTI ? res.u.list.n : 1;
    const struct val *rv = res.k == V_MULTI ? res.u.list.v : &res;
    for (int i = 0; i < n_res; i++) {
        if (rv[i].k != V_TENSOR) {
            char d[160];
            describe_val(f, rv[i], d, sizeof d);
            ferr(f, fn->name_loc, "scan body '%s' must return tensors; result %d is %s", fname, i, d);
            return verr();
        }
        char on[32];
        snprintf(on, sizeof on, "out%d", i);
        itr_graph_add_output(bgc.g, on, rv[i].u.t);
    }
    // Parameters the body read become extra constant operands.
    int32_t *all = itr_arena_alloc(s->arena, (size_t)(n + bgc.n_cap + 1) * sizeof *all);
    memcpy(all, ins, (size_t)n * sizeof *all);
    for (int i = 0; i < bgc.n_cap; i++) all[n + i] = gc_param(s, f->gc, bgc.cap_param[i]);
    attrs[itr_op_attr_index(ITR_OP_SCAN, "body")] = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = bgc.g };
    int32_t outs[16];
    if (!add_node(f, ITR_OP_SCAN, all, n + bgc.n_cap, attrs, e->loc, outs)) return verr();
    return node_result(f, outs, f->gc->g->nodes[f->gc->g->n_nodes - 1].n_outputs);
}

static struct val eval_call(struct frame *f, const struct ast_expr *e) {
    const char *name = e->u.call.callee;
    if (strcmp(name, "dimof") == 0) return eval_dimof(f, e);
    if (strcmp(name, "shapeof") == 0 || strcmp(name, "rankof") == 0) return eval_shapeof(f, e, name[0] == 'r');
    if (strcmp(name, "site_salt") == 0) return eval_site_salt(f, e);
    const struct ast_item *fn = NULL;
    struct inst *owner = NULL;
    int r = resolve_method(f, name, e->loc, &fn, &owner);
    if (r < 0) return verr();
    if (r > 0) return call_fn(f, fn, owner, e);
    enum itr_op op;
    if (!strchr(name, '.') && itr_op_lookup(name, &op)) return op == ITR_OP_SCAN ? eval_scan(f, e) : eval_op(f, op, e);
    fn = smap_get(&f->s->funcs, name);
    if (fn) return call_fn(f, fn, NULL, e);
    unknown_callee(f, name, e->loc);
    return verr();
}

// ------------------------------------------------------------ expressions

struct val eval_expr(struct frame *f, const struct ast_expr *e) {
    switch (e->kind) {
    case E_INT: return vint(e->u.i);
    case E_FLOAT: return vfloat(e->u.f);
    case E_BOOL: return vbool(e->u.b);
    case E_STR: return (struct val){ .k = V_STR, .u.s = e->u.str.s };
    case E_NAME: {
        struct val v;
        if (lookup(f, e->u.name, e->loc, &v)) return v;
        ferr(f, e->loc, "undefined name '%s'", e->u.name);
        return verr();
    }
    case E_LIST: {
        int n = e->u.list.n;
        struct val *v = itr_arena_alloc(f->s->arena, (size_t)(n ? n : 1) * sizeof *v);
        bool bad = false;
        for (int i = 0; i < n; i++) {
            v[i] = eval_expr(f, e->u.list.items[i]);
            if (v[i].k == V_ERR) bad = true;
            else if (v[i].k == V_TENSOR || v[i].k == V_MULTI || v[i].k == V_LIST) {
                ferr(f, e->u.list.items[i]->loc, "a list holds compile-time values (ints, floats, dims), not %s",
                     vkind_name(v[i].k));
                bad = true;
            }
        }
        if (bad) return verr();
        return (struct val){ .k = V_LIST, .u.list = { v, n } };
    }
    case E_TENSOR: return eval_tlit(f, e);
    case E_NEG: case E_NOT: return unop(f, e->kind, eval_expr(f, e->u.operand), e->loc);
    case E_CHAIN: {
        struct val v = eval_expr(f, e->u.chain.operands[0]);
        for (int i = 1; i < e->u.chain.n; i++) {
            struct val r = eval_expr(f, e->u.chain.operands[i]);
            v = binop(f, e->u.chain.ops[i - 1], v, r, e->u.chain.op_locs[i - 1]);
        }
        return v;
    }
    case E_CALL: return eval_call(f, e);
    }
    return verr();
}

// ------------------------------------------------------------ types and config kinds

static bool eval_dim(struct frame *f, const struct ast_expr *e, itr_dim *out) {
    struct val v;
    if (e->kind == E_NAME) {
        if (!lookup(f, e->u.name, e->loc, &v)) {
            ferr(f, e->loc, "undeclared dim '%s' (declare it with 'dim %s' in the model, or use a config parameter)",
                 e->u.name, e->u.name);
            return false;
        }
    } else {
        v = eval_expr(f, e);
    }
    if (v.k == V_ERR) return false;
    if (v.k == V_INT) {
        if (v.u.i < 0) { ferr(f, e->loc, "dim %lld is negative", (long long)v.u.i); return false; }
        *out = itr_dim_const(f->s->prog, v.u.i);
        return true;
    }
    if (v.k == V_DIM) { *out = v.u.dim; return true; }
    char d[160];
    describe_val(f, v, d, sizeof d);
    ferr(f, e->loc, "a dim must be an integer, a dim symbol or an int config value; got %s", d);
    return false;
}

bool eval_type(struct frame *f, const struct ast_type *t, struct itr_type *out) {
    itr_dim dims[ITR_MAX_RANK];
    for (int i = 0; i < t->rank; i++)
        if (!eval_dim(f, t->dims[i], &dims[i])) return false;
    *out = itr_type_make(t->dtype, t->rank, dims);
    return true;
}

bool val_to_config(struct frame *f, enum ast_config_kind k, struct val v, struct itr_loc loc, const char *what,
                   struct val *out) {
    static const char *const kinds[] = { "int", "float", "bool", "str" };
    if (v.k == V_ERR) return false;
    switch (k) {
    case CK_INT: if (v.k == V_INT || v.k == V_DIM) { *out = v; return true; } break;
    case CK_FLOAT: if (is_num(v)) { *out = vfloat(num(v)); return true; } break;
    case CK_BOOL: if (v.k == V_BOOL) { *out = v; return true; } break;
    case CK_STR: if (v.k == V_STR) { *out = v; return true; } break;
    }
    char d[160];
    describe_val(f, v, d, sizeof d);
    ferr(f, loc, "%s is %s, got %s", what, kinds[k], d);
    return false;
}

// ------------------------------------------------------------ statements

static void exec_assign(struct frame *f, const struct ast_stmt *st) {
    struct val v = eval_expr(f, st->expr);
    int n = st->n_names;
    if (v.k == V_ERR) {
        for (int i = 0; i < n; i++) val_bind(f, st->names[i], verr());
        return;
    }
    if (n == 1) {
        if (v.k == V_MULTI) {
            ferr(f, st->loc, "the right-hand side gives %d values, but 1 name is assigned", v.u.list.n);
            v = verr();
        }
        val_bind(f, st->names[0], v);
        return;
    }
    int have = v.k == V_MULTI ? v.u.list.n : 1;
    if (have != n) {
        ferr(f, st->loc, "cannot unpack %d value%s into %d names", have, have == 1 ? "" : "s", n);
        for (int i = 0; i < n; i++) val_bind(f, st->names[i], verr());
        return;
    }
    for (int i = 0; i < n; i++) val_bind(f, st->names[i], v.u.list.v[i]);
}

// update NAME = expr: a new value for a frozen parameter of the current
// module, written back after the training step (docs/ir.md "Training").
static void exec_update(struct frame *f, const struct ast_stmt *st) {
    struct sess *s = f->s;
    const char *name = st->names[0];
    if (!s->training || !f->gc) {
        ferr(f, st->loc, "update %s: state updates are only allowed in training (the train entry and the functions it "
             "calls); guard the statement with 'if training { ... }'", name);
        return;
    }
    if (f->gc != s->train_gc) {
        ferr(f, st->loc, "update %s: state updates are not allowed inside a scan body", name);
        return;
    }
    struct member *m = f->inst ? resolve_member_path(f->inst, name, NULL) : NULL;
    if (!m || m->kind != M_PARAM) {
        if (!f->inst)
            ferr(f, st->name_locs[0], "update %s: only methods of the module that declares a parameter can update it",
                 name);
        else
            ferr(f, st->name_locs[0], "update %s: '%s' is not a parameter of %s '%s'", name, name,
                 f->inst->parent ? "module" : "model", f->inst->module_name);
        return;
    }
    if (m->param < 0) return;   // its declaration failed (reported)
    const struct itr_param *pp = &s->prog->params[m->param];
    if (!pp->frozen) {
        ferr(f, st->name_locs[0], "update %s: '%s' is a trainable parameter, which the optimizer updates; only frozen "
             "params (such as running statistics) take updates", name, pp->name);
        return;
    }
    struct val v = eval_expr(f, st->expr);
    if (v.k == V_ERR) return;
    if (v.k == V_MULTI) {
        ferr(f, st->expr->loc, "update %s: the value is a call with %d results", name, v.u.list.n);
        return;
    }
    char what[300];
    snprintf(what, sizeof what, "the value of 'update %s'", name);
    int32_t t = as_tensor(f, v, pp->type.dtype, st->expr->loc, what);
    if (t < 0) return;
    const struct itr_type *have = &f->gc->g->values[t].type;
    if (!itr_type_equal(have, &pp->type)) {
        char hs[200], ws[200];
        itr_type_format(s->prog, have, hs, sizeof hs);
        itr_type_format(s->prog, &pp->type, ws, sizeof ws);
        ferr(f, st->expr->loc, "update %s: the value has type %s, but parameter '%s' is %s", name, hs, pp->name, ws);
        return;
    }
    for (int i = 0; i < s->n_upd; i++)
        if (s->upd_param[i] == m->param) { s->upd_value[i] = t; return; }
    if (s->n_upd == s->cap_upd) {
        int ncap = s->cap_upd ? s->cap_upd * 2 : 8;
        int32_t *a = itr_arena_alloc(s->arena, (size_t)ncap * sizeof *a);
        int32_t *b = itr_arena_alloc(s->arena, (size_t)ncap * sizeof *b);
        if (s->n_upd) {
            memcpy(a, s->upd_param, (size_t)s->n_upd * sizeof *a);
            memcpy(b, s->upd_value, (size_t)s->n_upd * sizeof *b);
        }
        s->upd_param = a;
        s->upd_value = b;
        s->cap_upd = ncap;
    }
    s->upd_param[s->n_upd] = m->param;
    s->upd_value[s->n_upd++] = t;
}

void exec_stmts(struct frame *f, const struct ast_stmt *s, int n, struct ret *r) {
    for (int i = 0; i < n; i++) {
        const struct ast_stmt *st = &s[i];
        if (r->has) {
            ferr(f, st->loc, "statement after return (return must be the last statement of a function)");
            r->n = -1;
            return;
        }
        switch (st->kind) {
        case S_ASSIGN: exec_assign(f, st); break;
        case S_UPDATE: exec_update(f, st); break;
        case S_RETURN: {
            int m = st->n_exprs;
            r->v = itr_arena_alloc(f->s->arena, (size_t)(m ? m : 1) * sizeof *r->v);
            r->names = itr_arena_alloc(f->s->arena, (size_t)(m ? m : 1) * sizeof *r->names);
            for (int j = 0; j < m; j++) {
                r->v[j] = eval_expr(f, st->exprs[j]);
                if (r->v[j].k == V_MULTI) {
                    ferr(f, st->exprs[j]->loc, "returned value %d is a call with %d results; unpack them first", j,
                         r->v[j].u.list.n);
                    r->v[j] = verr();
                }
                r->names[j] = st->exprs[j]->kind == E_NAME ? st->exprs[j]->u.name : NULL;
            }
            r->n = m;
            r->has = true;
            r->loc = st->loc;
            break;
        }
        case S_IF: {
            struct val c = eval_expr(f, st->cond);
            if (c.k == V_ERR) { r->n = -1; return; }
            if (c.k != V_BOOL) {
                char d[160];
                describe_val(f, c, d, sizeof d);
                ferr(f, st->cond->loc, "an if condition must be a compile-time bool (config values and literals), got %s", d);
                r->n = -1;
                return;
            }
            if (c.u.b) exec_stmts(f, st->then_s, st->n_then, r);
            else exec_stmts(f, st->else_s, st->n_else, r);
            if (r->n < 0) return;
            break;
        }
        }
    }
}
