// Kernel IR: construction, verification and printing (ir/kir.h).
#include "ir/kir.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *q, size_t n) {
    void *r = realloc(q, n ? n : 1);
    if (!r) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return r;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *r = xrealloc(NULL, n);
    memcpy(r, s, n);
    return r;
}

#define GROW(arr, n, cap)                                                        \
    do {                                                                         \
        if ((n) == (cap)) {                                                      \
            (cap) = (cap) ? 2 * (cap) : 16;                                      \
            (arr) = xrealloc((arr), (size_t)(cap) * sizeof *(arr));              \
        }                                                                        \
    } while (0)

struct kir_kernel *kir_kernel_new(const char *name) {
    struct kir_kernel *k = xrealloc(NULL, sizeof *k);
    memset(k, 0, sizeof *k);
    k->name = xstrdup(name);
    k->body = kir_seq(k);
    k->parallel_hi = -1;
    k->parallel_dim = -1;
    return k;
}

void kir_kernel_free(struct kir_kernel *k) {
    if (!k) return;
    for (int i = 0; i < k->n_bufs; i++) free((char *)k->bufs[i].name);
    for (int i = 0; i < k->n_dims; i++) free((char *)k->dims[i].name);
    for (int i = 0; i < k->n_vars; i++) free((char *)k->vars[i].name);
    for (int i = 0; i < k->n_stmts; i++) free(k->stmts[i].body);
    free(k->bufs);
    free(k->dims);
    free(k->vars);
    free(k->exprs);
    free(k->stmts);
    free(k->name);
    free(k);
}

int32_t kir_add_buffer(struct kir_kernel *k, const char *name, enum itr_dtype dtype, bool written) {
    GROW(k->bufs, k->n_bufs, k->cap_bufs);
    k->bufs[k->n_bufs] = (struct kir_buffer){ xstrdup(name ? name : "?"), dtype, written, false };
    return k->n_bufs++;
}

int32_t kir_add_dim(struct kir_kernel *k, const char *name, itr_dim dim) {
    for (int i = 0; i < k->n_dims; i++)
        if (k->dims[i].dim == dim) return i;
    GROW(k->dims, k->n_dims, k->cap_dims);
    k->dims[k->n_dims] = (struct kir_dim_param){ xstrdup(name ? name : "?"), dim };
    return k->n_dims++;
}

static int32_t add_var(struct kir_kernel *k, const char *name, enum kir_var_kind kind, enum kir_type type, int lanes,
                       enum kir_op combine) {
    GROW(k->vars, k->n_vars, k->cap_vars);
    char buf[64];
    if (!name) {
        snprintf(buf, sizeof buf, "v%d", k->n_vars);
        name = buf;
    }
    k->vars[k->n_vars] = (struct kir_var){ xstrdup(name), kind, type, lanes < 1 ? 1 : lanes, combine };
    return k->n_vars++;
}

int32_t kir_add_var(struct kir_kernel *k, const char *name, enum kir_var_kind kind, enum kir_type type) {
    return add_var(k, name, kind, type, 1, KIR_ADD);
}

int32_t kir_add_acc(struct kir_kernel *k, const char *name, enum kir_type type, int lanes, enum kir_op combine) {
    return add_var(k, name, KIR_VAR_ACC, type, lanes, combine);
}

static int32_t add_expr(struct kir_kernel *k, struct kir_expr e) {
    GROW(k->exprs, k->n_exprs, k->cap_exprs);
    k->exprs[k->n_exprs] = e;
    return k->n_exprs++;
}

static struct kir_expr blank(enum kir_expr_kind kind, enum kir_type t) {
    return (struct kir_expr){ .kind = kind, .type = t, .a = -1, .b = -1, .c = -1, .buf = -1, .var = -1, .dim = -1 };
}

int32_t kir_const_int(struct kir_kernel *k, enum kir_type t, int64_t v) {
    struct kir_expr e = blank(KIR_E_CONST_INT, t);
    e.ival = v;
    return add_expr(k, e);
}

int32_t kir_const_float(struct kir_kernel *k, enum kir_type t, double v) {
    struct kir_expr e = blank(KIR_E_CONST_FLOAT, t);
    e.fval = t == KIR_F32 ? (double)(float)v : v;
    return add_expr(k, e);
}

int32_t kir_var_ref(struct kir_kernel *k, int32_t var) {
    struct kir_expr e = blank(KIR_E_VAR, k->vars[var].type);
    e.var = var;
    return add_expr(k, e);
}

int32_t kir_acc_ref(struct kir_kernel *k, int32_t var, int32_t lane) {
    struct kir_expr e = blank(KIR_E_VAR, k->vars[var].type);
    e.var = var;
    e.a = lane;
    return add_expr(k, e);
}

int32_t kir_dim_ref(struct kir_kernel *k, int32_t dim) {
    struct kir_expr e = blank(KIR_E_DIM, KIR_I64);
    e.dim = dim;
    return add_expr(k, e);
}

int32_t kir_begin(struct kir_kernel *k) { return add_expr(k, blank(KIR_E_BEGIN, KIR_I64)); }
int32_t kir_end(struct kir_kernel *k) { return add_expr(k, blank(KIR_E_END, KIR_I64)); }

int32_t kir_load(struct kir_kernel *k, int32_t buf, int32_t index) {
    struct kir_expr e = blank(KIR_E_LOAD, kir_type_of_dtype(k->bufs[buf].dtype));
    e.buf = buf;
    e.a = index;
    return add_expr(k, e);
}

static bool is_compare(enum kir_op op) { return op >= KIR_EQ && op <= KIR_OR; }

int32_t kir_unary(struct kir_kernel *k, enum kir_op op, int32_t a) {
    struct kir_expr e = blank(KIR_E_UNARY, k->exprs[a].type);
    e.op = op;
    e.a = a;
    return add_expr(k, e);
}

int32_t kir_binary(struct kir_kernel *k, enum kir_op op, int32_t a, int32_t b) {
    struct kir_expr e = blank(KIR_E_BINARY, is_compare(op) ? KIR_BOOL : k->exprs[a].type);
    e.op = op;
    e.a = a;
    e.b = b;
    return add_expr(k, e);
}

int32_t kir_select(struct kir_kernel *k, int32_t cond, int32_t a, int32_t b) {
    struct kir_expr e = blank(KIR_E_SELECT, k->exprs[a].type);
    e.a = cond;
    e.b = a;
    e.c = b;
    return add_expr(k, e);
}

int32_t kir_cast(struct kir_kernel *k, enum kir_type t, int32_t a) {
    if (k->exprs[a].type == t) return a;
    struct kir_expr e = blank(KIR_E_CAST, t);
    e.a = a;
    return add_expr(k, e);
}

static bool const_i64(const struct kir_kernel *k, int32_t e, int64_t *v) {
    if (k->exprs[e].kind != KIR_E_CONST_INT) return false;
    *v = k->exprs[e].ival;
    return true;
}

int32_t kir_iconst(struct kir_kernel *k, int64_t v) { return kir_const_int(k, KIR_I64, v); }

int32_t kir_iadd(struct kir_kernel *k, int32_t a, int32_t b) {
    int64_t x, y;
    bool ca = const_i64(k, a, &x), cb = const_i64(k, b, &y);
    if (ca && cb) return kir_iconst(k, x + y);
    if (ca && x == 0) return b;
    if (cb && y == 0) return a;
    return kir_binary(k, KIR_ADD, a, b);
}

int32_t kir_imul(struct kir_kernel *k, int32_t a, int32_t b) {
    int64_t x, y;
    bool ca = const_i64(k, a, &x), cb = const_i64(k, b, &y);
    if (ca && cb) return kir_iconst(k, x * y);
    if ((ca && x == 0) || (cb && y == 0)) return kir_iconst(k, 0);
    if (ca && x == 1) return b;
    if (cb && y == 1) return a;
    return kir_binary(k, KIR_MUL, a, b);
}

// ---- statements

static int32_t add_stmt(struct kir_kernel *k, struct kir_stmt s) {
    GROW(k->stmts, k->n_stmts, k->cap_stmts);
    k->stmts[k->n_stmts] = s;
    return k->n_stmts++;
}

static struct kir_stmt sblank(enum kir_stmt_kind kind) {
    return (struct kir_stmt){ .kind = kind, .var = -1, .lo = -1, .hi = -1, .buf = -1, .index = -1, .value = -1,
                              .cond = -1 };
}

int32_t kir_seq(struct kir_kernel *k) { return add_stmt(k, sblank(KIR_S_SEQ)); }

void kir_append(struct kir_kernel *k, int32_t seq, int32_t stmt) {
    struct kir_stmt *s = &k->stmts[seq];
    if (s->kind != KIR_S_SEQ) {   // FOR and IF append to their (first) body
        seq = s->body[s->kind == KIR_S_IF && s->n_body == 2 ? 1 : 0];
        s = &k->stmts[seq];
    }
    GROW(s->body, s->n_body, s->cap_body);
    s->body[s->n_body++] = stmt;
}

static void push_body(struct kir_kernel *k, int32_t stmt, int32_t child) {
    struct kir_stmt *s = &k->stmts[stmt];
    GROW(s->body, s->n_body, s->cap_body);
    s->body[s->n_body++] = child;
}

int32_t kir_for(struct kir_kernel *k, int32_t var, int32_t lo, int32_t hi, enum kir_loop_kind kind) {
    struct kir_stmt s = sblank(KIR_S_FOR);
    s.var = var;
    s.lo = lo;
    s.hi = hi;
    s.loop = kind;
    int32_t id = add_stmt(k, s);
    int32_t body = kir_seq(k);
    push_body(k, id, body);
    return id;
}

int32_t kir_for_body(const struct kir_kernel *k, int32_t for_stmt) { return k->stmts[for_stmt].body[0]; }

int32_t kir_store(struct kir_kernel *k, int32_t buf, int32_t index, int32_t value) {
    struct kir_stmt s = sblank(KIR_S_STORE);
    s.buf = buf;
    s.index = index;
    s.value = value;
    return add_stmt(k, s);
}

int32_t kir_let(struct kir_kernel *k, int32_t var, int32_t value) {
    struct kir_stmt s = sblank(KIR_S_LET);
    s.var = var;
    s.value = value;
    return add_stmt(k, s);
}

int32_t kir_acc_init(struct kir_kernel *k, int32_t var, int32_t value) {
    struct kir_stmt s = sblank(KIR_S_ACC_INIT);
    s.var = var;
    s.value = value;
    return add_stmt(k, s);
}

int32_t kir_acc_update(struct kir_kernel *k, int32_t var, int32_t lane, int32_t value) {
    struct kir_stmt s = sblank(KIR_S_ACC_UPDATE);
    s.var = var;
    s.index = lane;
    s.value = value;
    return add_stmt(k, s);
}

int32_t kir_if(struct kir_kernel *k, int32_t cond) {
    struct kir_stmt s = sblank(KIR_S_IF);
    s.cond = cond;
    int32_t id = add_stmt(k, s);
    int32_t body = kir_seq(k);
    push_body(k, id, body);
    return id;
}

int32_t kir_if_else(struct kir_kernel *k, int32_t if_stmt) {
    int32_t body = kir_seq(k);
    push_body(k, if_stmt, body);
    return body;
}

// ---- names

const char *kir_type_name(enum kir_type t) {
    static const char *n[] = { "i64", "i32", "f32", "f64", "bool" };
    return (unsigned)t < KIR_TYPE_COUNT ? n[t] : "?";
}

const char *kir_op_name(enum kir_op op) {
    static const char *n[] = { "neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf",
                               "sin", "cos", "sigmoid", "not",
                               "add", "sub", "mul", "div", "mod", "min", "max", "pow",
                               "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "acos" };
    _Static_assert(sizeof n / sizeof *n == KIR_OP_COUNT, "kir_op names");
    return (unsigned)op < KIR_OP_COUNT ? n[op] : "?";
}

bool kir_op_is_unary(enum kir_op op) { return op <= KIR_NOT || op == KIR_ACOS; }

enum kir_type kir_type_of_dtype(enum itr_dtype dt) {
    switch (dt) {
    case ITR_F32: return KIR_F32;
    case ITR_F64: return KIR_F64;
    case ITR_I32: return KIR_I32;
    case ITR_I64: return KIR_I64;
    default: return KIR_BOOL;
    }
}

// ---- verification

struct vctx {
    const struct kir_kernel *k;
    char *why; size_t n;
    bool *in_scope;   // per var
};

static bool fail(struct vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct vctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->n) vsnprintf(c->why, c->n, fmt, ap);
    va_end(ap);
    return false;
}

static bool is_float(enum kir_type t) { return t == KIR_F32 || t == KIR_F64; }
static bool is_int(enum kir_type t) { return t == KIR_I32 || t == KIR_I64; }

static bool check_expr(struct vctx *c, int32_t id, int depth) {
    const struct kir_kernel *k = c->k;
    if (id < 0 || id >= k->n_exprs) return fail(c, "expression %d out of range", id);
    if (depth > 10000) return fail(c, "expression %d nests too deeply", id);
    const struct kir_expr *e = &k->exprs[id];
    switch (e->kind) {
    case KIR_E_CONST_INT:
    case KIR_E_CONST_FLOAT:
    case KIR_E_BEGIN:
    case KIR_E_END: return true;
    case KIR_E_DIM:
        if (e->dim < 0 || e->dim >= k->n_dims) return fail(c, "e%d: dim parameter %d out of range", id, e->dim);
        return true;
    case KIR_E_VAR:
        if (e->var < 0 || e->var >= k->n_vars) return fail(c, "e%d: variable %d out of range", id, e->var);
        if (!c->in_scope[e->var]) return fail(c, "e%d: variable '%s' used outside its scope", id, k->vars[e->var].name);
        if (k->vars[e->var].kind == KIR_VAR_ACC && e->a >= 0) return check_expr(c, e->a, depth + 1);
        return true;
    case KIR_E_LOAD:
        if (e->buf < 0 || e->buf >= k->n_bufs) return fail(c, "e%d: buffer %d out of range", id, e->buf);
        if (!check_expr(c, e->a, depth + 1)) return false;
        if (!is_int(k->exprs[e->a].type)) return fail(c, "e%d: load index is not an integer", id);
        return true;
    case KIR_E_UNARY:
        if (!kir_op_is_unary(e->op)) return fail(c, "e%d: '%s' is not a unary op", id, kir_op_name(e->op));
        return check_expr(c, e->a, depth + 1);
    case KIR_E_BINARY:
        if (kir_op_is_unary(e->op) || e->op >= KIR_OP_COUNT) return fail(c, "e%d: '%s' is not a binary op", id, kir_op_name(e->op));
        if (!check_expr(c, e->a, depth + 1) || !check_expr(c, e->b, depth + 1)) return false;
        if (k->exprs[e->a].type != k->exprs[e->b].type)
            return fail(c, "e%d: %s of %s and %s", id, kir_op_name(e->op), kir_type_name(k->exprs[e->a].type),
                        kir_type_name(k->exprs[e->b].type));
        if (e->op == KIR_POW && !is_float(e->type)) return fail(c, "e%d: pow of integers", id);
        return true;
    case KIR_E_SELECT:
        if (!check_expr(c, e->a, depth + 1) || !check_expr(c, e->b, depth + 1) || !check_expr(c, e->c, depth + 1))
            return false;
        if (k->exprs[e->a].type != KIR_BOOL) return fail(c, "e%d: select condition is not bool", id);
        if (k->exprs[e->b].type != k->exprs[e->c].type) return fail(c, "e%d: select arms differ in type", id);
        return true;
    case KIR_E_CAST: return check_expr(c, e->a, depth + 1);
    default: return fail(c, "e%d: unknown expression kind %d", id, (int)e->kind);
    }
}

static bool check_stmt(struct vctx *c, int32_t id, int depth) {
    const struct kir_kernel *k = c->k;
    if (id < 0 || id >= k->n_stmts) return fail(c, "statement %d out of range", id);
    if (depth > 1000) return fail(c, "statements nest too deeply");
    const struct kir_stmt *s = &k->stmts[id];
    // Children come after their parent, as the builders create them; plans
    // rely on it to rule out cycles.
    for (int i = 0; i < s->n_body; i++)
        if (s->body[i] <= id) return fail(c, "s%d: child statement s%d was created before its parent", id, s->body[i]);
    switch (s->kind) {
    case KIR_S_SEQ: {
        // lets and accumulators declared in a sequence go out of scope at its end
        bool *saved = xrealloc(NULL, (size_t)(k->n_vars ? k->n_vars : 1) * sizeof *saved);
        memcpy(saved, c->in_scope, (size_t)k->n_vars * sizeof *saved);
        bool ok = true;
        for (int i = 0; i < s->n_body && ok; i++) ok = check_stmt(c, s->body[i], depth + 1);
        memcpy(c->in_scope, saved, (size_t)k->n_vars * sizeof *saved);
        free(saved);
        return ok;
    }
    case KIR_S_FOR:
        if (s->var < 0 || s->var >= k->n_vars || k->vars[s->var].kind != KIR_VAR_LOOP)
            return fail(c, "s%d: loop variable is not a loop variable", id);
        if (!check_expr(c, s->lo, 0) || !check_expr(c, s->hi, 0)) return false;
        if (s->n_body != 1) return fail(c, "s%d: a loop has one body", id);
        if (c->in_scope[s->var]) return fail(c, "s%d: loop variable '%s' is already in scope", id, k->vars[s->var].name);
        c->in_scope[s->var] = true;
        {
            bool ok = check_stmt(c, s->body[0], depth + 1);
            c->in_scope[s->var] = false;
            return ok;
        }
    case KIR_S_STORE:
        if (s->buf < 0 || s->buf >= k->n_bufs) return fail(c, "s%d: buffer %d out of range", id, s->buf);
        if (!k->bufs[s->buf].written) return fail(c, "s%d: store to read-only buffer '%s'", id, k->bufs[s->buf].name);
        if (!check_expr(c, s->index, 0) || !check_expr(c, s->value, 0)) return false;
        if (k->exprs[s->value].type != kir_type_of_dtype(k->bufs[s->buf].dtype))
            return fail(c, "s%d: store of %s to %s buffer '%s'", id, kir_type_name(k->exprs[s->value].type),
                        itr_dtype_name(k->bufs[s->buf].dtype), k->bufs[s->buf].name);
        return true;
    case KIR_S_LET:
    case KIR_S_ACC_INIT:
        if (s->var < 0 || s->var >= k->n_vars) return fail(c, "s%d: variable out of range", id);
        if (!check_expr(c, s->value, 0)) return false;
        if (k->exprs[s->value].type != k->vars[s->var].type)
            return fail(c, "s%d: '%s' is %s, given %s", id, k->vars[s->var].name, kir_type_name(k->vars[s->var].type),
                        kir_type_name(k->exprs[s->value].type));
        if (s->kind == KIR_S_LET && k->vars[s->var].kind != KIR_VAR_LET) return fail(c, "s%d: let of a non-let", id);
        if (s->kind == KIR_S_ACC_INIT && k->vars[s->var].kind != KIR_VAR_ACC)
            return fail(c, "s%d: accumulator init of a non-accumulator", id);
        c->in_scope[s->var] = true;
        return true;
    case KIR_S_ACC_UPDATE:
        if (s->var < 0 || s->var >= k->n_vars || k->vars[s->var].kind != KIR_VAR_ACC)
            return fail(c, "s%d: update of a non-accumulator", id);
        if (!c->in_scope[s->var]) return fail(c, "s%d: accumulator '%s' updated before its init", id, k->vars[s->var].name);
        if (!check_expr(c, s->index, 0) || !check_expr(c, s->value, 0)) return false;
        if (k->exprs[s->value].type != k->vars[s->var].type) return fail(c, "s%d: accumulator type mismatch", id);
        return true;
    case KIR_S_IF:
        if (!check_expr(c, s->cond, 0)) return false;
        if (k->exprs[s->cond].type != KIR_BOOL) return fail(c, "s%d: if condition is not bool", id);
        if (s->n_body < 1 || s->n_body > 2) return fail(c, "s%d: if has %d bodies", id, s->n_body);
        for (int i = 0; i < s->n_body; i++)
            if (!check_stmt(c, s->body[i], depth + 1)) return false;
        return true;
    default: return fail(c, "s%d: unknown statement kind %d", id, (int)s->kind);
    }
}

bool kir_verify(const struct kir_kernel *k, char *why, size_t n) {
    struct vctx c = { k, why, n, NULL };
    c.in_scope = xrealloc(NULL, (size_t)(k->n_vars ? k->n_vars : 1) * sizeof *c.in_scope);
    memset(c.in_scope, 0, (size_t)(k->n_vars ? k->n_vars : 1) * sizeof *c.in_scope);
    bool ok = check_stmt(&c, k->body, 0);
    if (ok && k->parallel_hi >= 0) ok = check_expr(&c, k->parallel_hi, 0);
    free(c.in_scope);
    if (ok && n) why[0] = 0;
    return ok;
}

// ---- printing

static void print_expr(const struct kir_kernel *k, int32_t id, FILE *f) {
    const struct kir_expr *e = &k->exprs[id];
    switch (e->kind) {
    case KIR_E_CONST_INT:
        if (e->type == KIR_BOOL) fputs(e->ival ? "true" : "false", f);
        else fprintf(f, "%" PRId64, e->ival);
        break;
    case KIR_E_CONST_FLOAT: fprintf(f, "%.17g%s", e->fval, e->type == KIR_F32 ? "f" : ""); break;
    case KIR_E_VAR:
        fputs(k->vars[e->var].name, f);
        if (k->vars[e->var].kind == KIR_VAR_ACC) {
            if (e->a < 0) fputs(".all", f);
            else { fputc('[', f); print_expr(k, e->a, f); fputc(']', f); }
        }
        break;
    case KIR_E_DIM: fputs(k->dims[e->dim].name, f); break;
    case KIR_E_BEGIN: fputs("begin", f); break;
    case KIR_E_END: fputs("end", f); break;
    case KIR_E_LOAD:
        fprintf(f, "%s[", k->bufs[e->buf].name);
        print_expr(k, e->a, f);
        fputc(']', f);
        break;
    case KIR_E_UNARY:
        fprintf(f, "%s(", kir_op_name(e->op));
        print_expr(k, e->a, f);
        fputc(')', f);
        break;
    case KIR_E_BINARY: {
        static const char *sym[KIR_OP_COUNT] = { [KIR_ADD] = "+", [KIR_SUB] = "-", [KIR_MUL] = "*", [KIR_DIV] = "/",
                                                 [KIR_MOD] = "%", [KIR_EQ] = "==", [KIR_NE] = "!=", [KIR_LT] = "<",
                                                 [KIR_LE] = "<=", [KIR_GT] = ">", [KIR_GE] = ">=", [KIR_AND] = "&&",
                                                 [KIR_OR] = "||" };
        if (sym[e->op]) {
            fputc('(', f);
            print_expr(k, e->a, f);
            fprintf(f, " %s ", sym[e->op]);
            print_expr(k, e->b, f);
            fputc(')', f);
        } else {
            fprintf(f, "%s(", kir_op_name(e->op));
            print_expr(k, e->a, f);
            fputs(", ", f);
            print_expr(k, e->b, f);
            fputc(')', f);
        }
        break;
    }
    case KIR_E_SELECT:
        fputs("select(", f);
        print_expr(k, e->a, f);
        fputs(", ", f);
        print_expr(k, e->b, f);
        fputs(", ", f);
        print_expr(k, e->c, f);
        fputc(')', f);
        break;
    case KIR_E_CAST:
        fprintf(f, "%s(", kir_type_name(e->type));
        print_expr(k, e->a, f);
        fputc(')', f);
        break;
    default: fputs("?", f);
    }
}

static void indent(FILE *f, int d) {
    for (int i = 0; i < d; i++) fputs("  ", f);
}

static void print_stmt(const struct kir_kernel *k, int32_t id, int d, FILE *f) {
    static const char *loop_name[] = { "serial", "parallel", "vector", "unroll" };
    const struct kir_stmt *s = &k->stmts[id];
    switch (s->kind) {
    case KIR_S_SEQ:
        for (int i = 0; i < s->n_body; i++) print_stmt(k, s->body[i], d, f);
        break;
    case KIR_S_FOR:
        indent(f, d);
        fprintf(f, "for %s in [", k->vars[s->var].name);
        print_expr(k, s->lo, f);
        fputs(", ", f);
        print_expr(k, s->hi, f);
        fprintf(f, ") %s:\n", loop_name[s->loop]);
        print_stmt(k, s->body[0], d + 1, f);
        break;
    case KIR_S_STORE:
        indent(f, d);
        fprintf(f, "%s[", k->bufs[s->buf].name);
        print_expr(k, s->index, f);
        fputs("] = ", f);
        print_expr(k, s->value, f);
        fputc('\n', f);
        break;
    case KIR_S_LET:
        indent(f, d);
        fprintf(f, "let %s = ", k->vars[s->var].name);
        print_expr(k, s->value, f);
        fputc('\n', f);
        break;
    case KIR_S_ACC_INIT:
        indent(f, d);
        fprintf(f, "acc %s: %s x%d (%s) = ", k->vars[s->var].name, kir_type_name(k->vars[s->var].type),
                k->vars[s->var].lanes, kir_op_name(k->vars[s->var].combine));
        print_expr(k, s->value, f);
        fputc('\n', f);
        break;
    case KIR_S_ACC_UPDATE:
        indent(f, d);
        fprintf(f, "%s[", k->vars[s->var].name);
        print_expr(k, s->index, f);
        fprintf(f, "] %s= ", kir_op_name(k->vars[s->var].combine));
        print_expr(k, s->value, f);
        fputc('\n', f);
        break;
    case KIR_S_IF:
        indent(f, d);
        fputs("if ", f);
        print_expr(k, s->cond, f);
        fputs(":\n", f);
        print_stmt(k, s->body[0], d + 1, f);
        if (s->n_body == 2) {
            indent(f, d);
            fputs("else:\n", f);
            print_stmt(k, s->body[1], d + 1, f);
        }
        break;
    default: indent(f, d); fputs("?\n", f);
    }
}

void kir_print(const struct kir_kernel *k, FILE *f) {
    fprintf(f, "kernel %s(", k->name);
    for (int i = 0; i < k->n_bufs; i++)
        fprintf(f, "%s%s%s: %s*%s", i ? ", " : "", k->bufs[i].written ? "out " : "", k->bufs[i].name,
                itr_dtype_name(k->bufs[i].dtype), k->bufs[i].noalias ? " noalias" : "");
    for (int i = 0; i < k->n_dims; i++) fprintf(f, "%s%s: i64", k->n_bufs || i ? ", " : "", k->dims[i].name);
    fputs(")", f);
    if (k->parallel_hi >= 0) {
        fputs(" parallel over [0, ", f);
        print_expr(k, k->parallel_hi, f);
        fputs(")", f);
    }
    fputs(":\n", f);
    print_stmt(k, k->body, 1, f);
}

// ---- schedules

void kir_schedule_free(struct kir_schedule *s) {
    if (!s) return;
    for (int i = 0; i < s->n_kernels; i++) kir_kernel_free(s->kernels[i]);
    for (int i = 0; i < s->n_steps; i++) {
        free(s->steps[i].bufs);
        free(s->steps[i].alias);
        kir_schedule_free(s->steps[i].body);
    }
    free(s->kernels);
    free(s->steps);
    free(s->materialised);
    free(s->last_step);
    free(s);
}

void kir_schedule_print(const struct kir_schedule *s, const struct itr_graph *g, FILE *f) {
    int fused = 0;
    for (int i = 0; i < s->n_values; i++) fused += g->values[i].kind == ITR_VALUE_NODE && !s->materialised[i];
    fprintf(f, "schedule of '%s' (%s): %d steps, %d kernels, %d values fused away\n", g->name,
            s->f64 ? "f64" : "f32", s->n_steps, s->n_kernels, fused);
    for (int i = 0; i < s->n_steps; i++) {
        const struct kir_step *st = &s->steps[i];
        const struct itr_node *n = &g->nodes[st->node];
        if (st->kind == KIR_STEP_NODE) {
            if (st->body) {
                const struct itr_attr *ba = itr_node_attr(n, "body");
                fprintf(f, "  step %d: scan (%s), its body compiled:\n", i, g->values[n->outputs[0]].name);
                if (ba && ba->u.graph) kir_schedule_print(st->body, ba->u.graph, f);
            } else {
                fprintf(f, "  step %d: node %s (%s) on the reference kernels\n", i, itr_op_name(n->op),
                        g->values[n->outputs[0]].name);
            }
            continue;
        }
        if (st->kind == KIR_STEP_GEMM) {
            fprintf(f, "  step %d: gemm %s = %s%s%s%s x %s%s%s%s\n", i, g->values[n->outputs[0]].name,
                    g->values[st->gemm_a].name, st->gemm_view_a >= 0 ? " as " : "",
                    st->gemm_view_a >= 0 ? g->values[st->gemm_view_a].name : "", st->trans_a ? "^T" : "",
                    g->values[st->gemm_b].name, st->gemm_view_b >= 0 ? " as " : "",
                    st->gemm_view_b >= 0 ? g->values[st->gemm_view_b].name : "", st->trans_b ? "^T" : "");
            continue;
        }
        const struct kir_kernel *k = s->kernels[st->kernel];
        fprintf(f, "  step %d: kernel %s(", i, k->name);
        for (int b = 0; b < st->n_bufs; b++) {
            fprintf(f, "%s%s", b ? ", " : "", g->values[st->bufs[b]].name);
            if (kir_step_alias(st, b) >= 0) fprintf(f, " -> %s in place", g->values[kir_step_alias(st, b)].name);
        }
        fputs(")\n", f);
    }
    for (int i = 0; i < s->n_kernels; i++) kir_print(s->kernels[i], f);
}

void kir_plan_kernels_add(struct kir_plan_kernels *k, int32_t graph, bool f64, struct kir_schedule *s) {
    GROW(k->items, k->n, k->cap);
    k->items[k->n++] = (struct kir_plan_schedule){ graph, f64, s };
}

const struct kir_schedule *kir_plan_kernels_find(const struct kir_plan_kernels *k, int32_t graph, bool f64) {
    for (int i = 0; k && i < k->n; i++)
        if (k->items[i].graph == graph && k->items[i].f64 == f64) return k->items[i].s;
    return NULL;
}

void kir_plan_kernels_free(struct kir_plan_kernels *k) {
    if (!k) return;
    for (int i = 0; i < k->n; i++) kir_schedule_free(k->items[i].s);
    free(k->items);
    k->items = NULL;
    k->n = k->cap = 0;
}
