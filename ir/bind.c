// Binding symbolic dims to run-time sizes (bind.h).
#include "bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void itr_bindings_init(struct itr_dim_bindings *b, const struct itr_program *p) {
    b->n = p->n_symbols;
    size_t n = (size_t)(b->n ? b->n : 1);
    b->value = calloc(n, sizeof *b->value);
    b->bound = calloc(n, sizeof *b->bound);
    if (!b->value || !b->bound) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
}

void itr_bindings_free(struct itr_dim_bindings *b) {
    free(b->value);
    free(b->bound);
    b->value = NULL;
    b->bound = NULL;
    b->n = 0;
}

// Programs may gain symbols after the bindings were made (a pass adding a
// dim); such symbols read as unbound rather than out of bounds.
static bool sym_ok(const struct itr_dim_bindings *b, int64_t s) { return s >= 0 && s < b->n; }

bool itr_bindings_set(struct itr_dim_bindings *b, const struct itr_program *p, const char *name, int64_t value,
                      struct itr_diags *d) {
    int32_t s = itr_program_find_symbol(p, name);
    if (s < 0 || !sym_ok(b, s)) {
        itr_diag_error(d, ITR_NOLOC, "no dim named '%s' in model '%s'", name, p->name ? p->name : "?");
        return false;
    }
    if (value < 0) {
        itr_diag_error(d, ITR_NOLOC, "dim %s = %lld: sizes cannot be negative", name, (long long)value);
        return false;
    }
    if (b->bound[s] && b->value[s] != value) {
        itr_diag_error(d, ITR_NOLOC, "dim %s = %lld conflicts with its earlier binding %s = %lld", name,
                       (long long)value, name, (long long)b->value[s]);
        return false;
    }
    b->bound[s] = true;
    b->value[s] = value;
    return true;
}

bool itr_bindings_set_arg(struct itr_dim_bindings *b, const struct itr_program *p, const char *arg,
                          struct itr_diags *d) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        itr_diag_error(d, ITR_NOLOC, "--dim expects NAME=VALUE, got '%s'", arg);
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (*end || errno || v < 0) {
        itr_diag_error(d, ITR_NOLOC, "--dim %s: '%s' is not a non-negative integer", arg, eq + 1);
        return false;
    }
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    if (itr_program_find_symbol(p, name) < 0) {
        char list[1024];
        size_t w = 0;
        list[0] = 0;
        for (int i = 0; i < p->n_symbols && w < sizeof list; i++) {
            int k = snprintf(list + w, sizeof list - w, "%s%s", i ? ", " : "", p->symbols[i].name);
            if (k > 0) w += (size_t)k;
        }
        itr_diag_error(d, ITR_NOLOC, "--dim %s: model '%s' has no dim '%s'; its dims are: %s", arg,
                       p->name ? p->name : "?", name, w ? list : "(none)");
        return false;
    }
    return itr_bindings_set(b, p, name, v, d);
}

static bool eval(const struct itr_dim_bindings *b, const struct itr_program *p, itr_dim dim, int64_t *v) {
    int32_t unb;
    return itr_dim_eval(p, dim, b->value, b->bound, v, &unb);
}

// Solves dim = value for the one unbound symbol in dim when the rest of the
// expression is known (B*L = 120 with B = 4 gives L = 30). Returns true if
// it bound something; a dim it cannot solve is left for the check.
static bool solve(struct itr_dim_bindings *b, const struct itr_program *p, itr_dim dim, int64_t value) {
    if (dim < 0 || dim >= p->n_dimnodes) return false;
    const struct itr_dim_node *e = &p->dimnodes[dim];
    int64_t va, vb;
    bool ka, kb;
    switch (e->kind) {
    case ITR_DIM_SYM:
        if (!sym_ok(b, e->value) || b->bound[e->value] || value < 0) return false;
        b->bound[e->value] = true;
        b->value[e->value] = value;
        return true;
    case ITR_DIM_ADD:
        ka = eval(b, p, e->a, &va);
        kb = eval(b, p, e->b, &vb);
        if (ka && !kb) return solve(b, p, e->b, value - va);
        if (kb && !ka) return solve(b, p, e->a, value - vb);
        return false;
    case ITR_DIM_SUB:
        ka = eval(b, p, e->a, &va);
        kb = eval(b, p, e->b, &vb);
        if (ka && !kb) return solve(b, p, e->b, va - value);
        if (kb && !ka) return solve(b, p, e->a, value + vb);
        return false;
    case ITR_DIM_MUL:
        ka = eval(b, p, e->a, &va);
        kb = eval(b, p, e->b, &vb);
        if (ka && !kb && va != 0 && value % va == 0) return solve(b, p, e->b, value / va);
        if (kb && !ka && vb != 0 && value % vb == 0) return solve(b, p, e->a, value / vb);
        return false;
    default:
        return false;
    }
}

// "[4, 36, 2048]" with "?" for dims that cannot be evaluated yet.
static void format_expected(const struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                            char *buf, size_t n) {
    size_t w = 0;
    int k = snprintf(buf, n, "[");
    if (k > 0) w += (size_t)k;
    for (int i = 0; i < t->rank && w < n; i++) {
        int64_t v;
        if (eval(b, p, t->dims[i], &v)) k = snprintf(buf + w, n - w, "%s%lld", i ? ", " : "", (long long)v);
        else k = snprintf(buf + w, n - w, "%s?", i ? ", " : "");
        if (k > 0) w += (size_t)k;
    }
    if (w < n) snprintf(buf + w, n - w, "]");
}

static void mismatch(const struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                     const struct itr_tensor *x, const char *what, const char *detail, struct itr_diags *d) {
    char want[256], eval_s[256], got[256];
    itr_type_format(p, t, want, sizeof want);
    format_expected(b, p, t, eval_s, sizeof eval_s);
    int k = snprintf(got, sizeof got, "%s", itr_dtype_name(x->dtype));
    if (k > 0 && (size_t)k < sizeof got) itr_shape_format(x->rank, x->shape, got + k, sizeof got - (size_t)k);
    // Without symbols the evaluated form repeats the declared one.
    bool symbolic = false;
    for (int i = 0; i < t->rank; i++)
        if (!itr_dim_is_const(p, t->dims[i], NULL)) symbolic = true;
    if (symbolic)
        itr_diag_error(d, ITR_NOLOC, "%s: expected %s = %s, got %s%s%s", what, want, eval_s, got, detail ? "; " : "",
                       detail ? detail : "");
    else
        itr_diag_error(d, ITR_NOLOC, "%s: expected %s, got %s%s%s", what, want, got, detail ? "; " : "",
                       detail ? detail : "");
}

enum bind_result { BIND_OK, BIND_FAIL, BIND_PENDING };

// Binds one tensor. With `defer`, a dim that needs a symbol nothing has
// bound yet makes the tensor PENDING (no diagnostic, no change) so that a
// caller binding several tensors can come back to it.
static enum bind_result bind_one(struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                                 const struct itr_tensor *x, const char *what, bool allow_f64, bool defer,
                                 struct itr_diags *d) {
    if (!x) {
        itr_diag_error(d, ITR_NOLOC, "%s: no tensor given", what);
        return BIND_FAIL;
    }
    bool dtype_ok = x->dtype == t->dtype || (allow_f64 && t->dtype == ITR_F32 && x->dtype == ITR_F64);
    if (!dtype_ok || x->rank != t->rank) {
        char detail[96];
        if (!dtype_ok) snprintf(detail, sizeof detail, "dtype %s where %s is expected", itr_dtype_name(x->dtype),
                                itr_dtype_name(t->dtype));
        else snprintf(detail, sizeof detail, "rank %d where %d is expected", x->rank, t->rank);
        mismatch(b, p, t, x, what, detail, d);
        return BIND_FAIL;
    }
    // Bind on a copy so that a mismatching tensor leaves the bindings as they were.
    struct itr_dim_bindings tmp = { b->n, NULL, NULL };
    size_t n = (size_t)(b->n ? b->n : 1);
    tmp.value = malloc(n * sizeof *tmp.value);
    tmp.bound = malloc(n * sizeof *tmp.bound);
    if (!tmp.value || !tmp.bound) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    memcpy(tmp.value, b->value, (size_t)b->n * sizeof *tmp.value);
    memcpy(tmp.bound, b->bound, (size_t)b->n * sizeof *tmp.bound);
    // Bare symbols first, then expressions that become solvable, until no
    // more progress; then every dim must evaluate to the tensor's size.
    for (bool progress = true; progress;) {
        progress = false;
        for (int i = 0; i < t->rank; i++) {
            int64_t v;
            if (!eval(&tmp, p, t->dims[i], &v) && solve(&tmp, p, t->dims[i], x->shape[i])) progress = true;
        }
    }
    enum bind_result r = BIND_OK;
    for (int i = 0; i < t->rank && r == BIND_OK; i++) {
        int64_t v;
        int32_t unb = -1;
        if (!itr_dim_eval(p, t->dims[i], tmp.value, tmp.bound, &v, &unb)) {
            if (defer && unb >= 0) { r = BIND_PENDING; break; }
            char detail[160], ds[64];
            itr_dim_format(p, t->dims[i], ds, sizeof ds);
            if (unb >= 0 && unb < p->n_symbols)
                snprintf(detail, sizeof detail, "cannot bind dim %s from it (give %s explicitly)", ds,
                         p->symbols[unb].name);
            else
                snprintf(detail, sizeof detail, "dim %s cannot be evaluated (division by zero)", ds);
            mismatch(&tmp, p, t, x, what, detail, d);
            r = BIND_FAIL;
        } else if (v != x->shape[i]) {
            mismatch(&tmp, p, t, x, what, NULL, d);
            r = BIND_FAIL;
        }
    }
    if (r == BIND_OK) {
        memcpy(b->value, tmp.value, (size_t)b->n * sizeof *tmp.value);
        memcpy(b->bound, tmp.bound, (size_t)b->n * sizeof *tmp.bound);
    }
    free(tmp.value);
    free(tmp.bound);
    return r;
}

bool itr_bind_tensor(struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                     const struct itr_tensor *x, const char *what, bool allow_f64, struct itr_diags *d) {
    return bind_one(b, p, t, x, what, allow_f64, false, d) == BIND_OK;
}

bool itr_bind_tensors(struct itr_dim_bindings *b, const struct itr_program *p, int n,
                      const struct itr_type *const *types, const struct itr_tensor *const *xs,
                      const char *const *whats, bool allow_f64, struct itr_diags *d) {
    enum bind_result *st = malloc((size_t)(n ? n : 1) * sizeof *st);
    if (!st) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    bool ok = true;
    for (int i = 0; i < n; i++) st[i] = BIND_PENDING;
    // Rounds until nothing changes: a tensor waiting on a symbol that a later
    // tensor binds is retried; then defaults; then the rest, reporting.
    for (bool progress = true; progress;) {
        progress = false;
        for (int i = 0; i < n; i++) {
            if (st[i] != BIND_PENDING) continue;
            st[i] = bind_one(b, p, types[i], xs[i], whats[i], allow_f64, true, d);
            if (st[i] == BIND_OK) progress = true;
            if (st[i] == BIND_FAIL) ok = false;
        }
    }
    itr_bind_defaults(b, p);
    for (int i = 0; i < n; i++)
        if (st[i] == BIND_PENDING && bind_one(b, p, types[i], xs[i], whats[i], allow_f64, false, d) != BIND_OK)
            ok = false;
    free(st);
    return ok;
}

void itr_bind_defaults(struct itr_dim_bindings *b, const struct itr_program *p) {
    for (int i = 0; i < b->n && i < p->n_symbols; i++)
        if (!b->bound[i] && p->symbols[i].has_default) {
            b->bound[i] = true;
            b->value[i] = p->symbols[i].default_value;
        }
}

bool itr_eval_shape(const struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                    int64_t *shape, const char *what, struct itr_diags *d) {
    for (int i = 0; i < t->rank; i++) {
        int32_t unb = -1;
        char ds[96], ts[256];
        if (!itr_dim_eval(p, t->dims[i], b->value, b->bound, &shape[i], &unb)) {
            itr_dim_format(p, t->dims[i], ds, sizeof ds);
            itr_type_format(p, t, ts, sizeof ts);
            if (unb >= 0 && unb < p->n_symbols)
                itr_diag_error(d, ITR_NOLOC, "%s (%s): dim %s is not bound; feed a tensor that has it or set it "
                               "(--dim %s=VALUE)", what, ts, p->symbols[unb].name, p->symbols[unb].name);
            else
                itr_diag_error(d, ITR_NOLOC, "%s (%s): dim %s divides by zero", what, ts, ds);
            return false;
        }
        if (shape[i] < 0) {
            itr_dim_format(p, t->dims[i], ds, sizeof ds);
            itr_type_format(p, t, ts, sizeof ts);
            itr_diag_error(d, ITR_NOLOC, "%s (%s): dim %s evaluates to %lld, a negative size", what, ts, ds,
                           (long long)shape[i]);
            return false;
        }
    }
    return true;
}

const struct itr_tensor *itr_view_as(const struct itr_graph *g, const struct itr_tensor *t, int32_t value,
                                     const struct itr_dim_bindings *b, struct itr_tensor *out, struct itr_diags *d) {
    if (value < 0) return t;
    const struct itr_value *v = &g->values[value];
    *out = *t;
    out->owns_data = false;
    out->rank = v->type.rank;
    char what[200];
    snprintf(what, sizeof what, "value '%s'", v->name ? v->name : "?");
    if (!itr_eval_shape(b, g->prog, &v->type, out->shape, what, d)) return NULL;
    if (itr_tensor_numel(out) != itr_tensor_numel(t)) {
        itr_diag_error(d, v->loc, "internal error: '%s' viewed with %lld elements of a buffer of %lld", v->name,
                       (long long)itr_tensor_numel(out), (long long)itr_tensor_numel(t));
        return NULL;
    }
    return out;
}
