// Kernel IR -> CUDA C (backends/cuda/cuda_render.h).
//
// The scalar semantics are those of the LLVM renderer (backends/llvm/render.c,
// whose header lists them), written as C++ that NVRTC compiles without
// fast-math: f32 is computed in f32 and f64 in f64, f32 sums accumulate in
// the f64 accumulators the schedule declares; float min/max propagate NaN
// and keep the first operand on ties; integer add, sub, mul and neg wrap
// (done in unsigned arithmetic: signed overflow is undefined in C++, and the
// optimiser would otherwise assume it away); integer div and mod floor, a
// divisor of -1 never traps; float -> int casts truncate and saturate with
// NaN -> 0; sigmoid never overflows. The prelude below holds these as
// `itr_*` device functions.
//
// Expressions are DAGs (an operand used twice); as in the LLVM renderer,
// each is computed once per statement: every non-trivial expression becomes
// a `const T eN = ...;` in a brace block around the statement that uses it,
// before the statement's effect. Lets and accumulators are function-scope
// locals (lets are visible after their statement, outside its braces);
// loop indices are declared by their `for`. Unrolled loops with constant
// bounds get `#pragma unroll`, so an accumulator's lanes indexed by them
// become registers.
#include "backends/cuda/cuda_render.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char prelude[] =
    "// itrc CUDA kernels: scalar helpers (backends/cuda/cuda_render.c)\n"
    "#define ITR_D __device__ __forceinline__\n"
    "ITR_D float itr_nan_f32() { return __int_as_float(0x7fc00000); }\n"
    "ITR_D double itr_nan_f64() { return __longlong_as_double(0x7ff8000000000000LL); }\n"
    "ITR_D float itr_inf_f32() { return __int_as_float(0x7f800000); }\n"
    "ITR_D double itr_inf_f64() { return __longlong_as_double(0x7ff0000000000000LL); }\n"
    "ITR_D float itr_min_f32(float a, float b) { return (a != a || b != b) ? itr_nan_f32() : a <= b ? a : b; }\n"
    "ITR_D float itr_max_f32(float a, float b) { return (a != a || b != b) ? itr_nan_f32() : a >= b ? a : b; }\n"
    "ITR_D double itr_min_f64(double a, double b) { return (a != a || b != b) ? itr_nan_f64() : a <= b ? a : b; }\n"
    "ITR_D double itr_max_f64(double a, double b) { return (a != a || b != b) ? itr_nan_f64() : a >= b ? a : b; }\n"
    "ITR_D float itr_sign_f32(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x; }\n"
    "ITR_D double itr_sign_f64(double x) { return x > 0.0 ? 1.0 : x < 0.0 ? -1.0 : x; }\n"
    "ITR_D float itr_sigmoid_f32(float x) {\n"
    "    float e = expf(-fabsf(x)), d = 1.0f + e;\n"
    "    return x >= 0.0f ? 1.0f / d : e / d;\n"
    "}\n"
    "ITR_D double itr_sigmoid_f64(double x) {\n"
    "    double e = exp(-fabs(x)), d = 1.0 + e;\n"
    "    return x >= 0.0 ? 1.0 / d : e / d;\n"
    "}\n"
    "ITR_D int itr_add_i32(int a, int b) { return (int)((unsigned)a + (unsigned)b); }\n"
    "ITR_D int itr_sub_i32(int a, int b) { return (int)((unsigned)a - (unsigned)b); }\n"
    "ITR_D int itr_mul_i32(int a, int b) { return (int)((unsigned)a * (unsigned)b); }\n"
    "ITR_D int itr_neg_i32(int a) { return (int)(0u - (unsigned)a); }\n"
    "ITR_D long long itr_add_i64(long long a, long long b) { return (long long)((unsigned long long)a + (unsigned long long)b); }\n"
    "ITR_D long long itr_sub_i64(long long a, long long b) { return (long long)((unsigned long long)a - (unsigned long long)b); }\n"
    "ITR_D long long itr_mul_i64(long long a, long long b) { return (long long)((unsigned long long)a * (unsigned long long)b); }\n"
    "ITR_D long long itr_neg_i64(long long a) { return (long long)(0ull - (unsigned long long)a); }\n"
    "ITR_D int itr_abs_i32(int a) { return a < 0 ? itr_neg_i32(a) : a; }\n"
    "ITR_D long long itr_abs_i64(long long a) { return a < 0 ? itr_neg_i64(a) : a; }\n"
    "ITR_D int itr_sign_i32(int a) { return (a > 0) - (a < 0); }\n"
    "ITR_D long long itr_sign_i64(long long a) { return (long long)((a > 0) - (a < 0)); }\n"
    // floor division and its remainder; b == -1 is a negation (INT_MIN / -1 wraps)
    "#define ITR_FLOORDIV(T, N)                                                   \\\n"
    "    ITR_D T itr_div_##N(T a, T b) {                                          \\\n"
    "        if (b == -1) return itr_neg_##N(a);                                  \\\n"
    "        T q = a / b, r = a % b;                                              \\\n"
    "        return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;                 \\\n"
    "    }                                                                        \\\n"
    "    ITR_D T itr_mod_##N(T a, T b) {                                          \\\n"
    "        if (b == -1) return 0;                                               \\\n"
    "        T r = a % b;                                                         \\\n"
    "        return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;                 \\\n"
    "    }\n"
    "ITR_FLOORDIV(int, i32)\n"
    "ITR_FLOORDIV(long long, i64)\n"
    // truncation toward zero, saturating, NaN -> 0
    "ITR_D int itr_f32_to_i32(float x) {\n"
    "    return x != x ? 0 : x >= 2147483648.0f ? 2147483647 : x <= -2147483648.0f ? (-2147483647 - 1) : (int)x;\n"
    "}\n"
    "ITR_D int itr_f64_to_i32(double x) {\n"
    "    return x != x ? 0 : x >= 2147483648.0 ? 2147483647 : x <= -2147483648.0 ? (-2147483647 - 1) : (int)x;\n"
    "}\n"
    "ITR_D long long itr_f32_to_i64(float x) {\n"
    "    return x != x ? 0 : x >= 9223372036854775808.0f ? 9223372036854775807LL\n"
    "         : x <= -9223372036854775808.0f ? (-9223372036854775807LL - 1) : (long long)x;\n"
    "}\n"
    "ITR_D long long itr_f64_to_i64(double x) {\n"
    "    return x != x ? 0 : x >= 9223372036854775808.0 ? 9223372036854775807LL\n"
    "         : x <= -9223372036854775808.0 ? (-9223372036854775807LL - 1) : (long long)x;\n"
    "}\n";

const char *itr_cuda_prelude(void) { return prelude; }

// ---- a growing string

struct sb { char *s; size_t len, cap; bool oom; };

static void sb_vadd(struct sb *b, const char *fmt, va_list ap) {
    if (b->oom) return;
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, aq);
    va_end(aq);
    if (n < 0) { b->oom = true; return; }
    if (!b->s || b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

static void sb_add(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vadd(b, fmt, ap);
    va_end(ap);
}

// ---- rendering context

// Operand text of one expression: a literal, a variable, or the temp eN.
#define TXT 72

struct rctx {
    const struct kir_kernel *k;
    struct sb *o;
    int indent;
    char (*txt)[TXT];          // per expression, valid while gen_of[id] == gen
    uint32_t *gen_of, gen;
    char *why; size_t n;
    bool failed;
};

static bool fail(struct rctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct rctx *r, const char *fmt, ...) {
    if (r->failed) return false;   // keep the first reason
    va_list ap;
    va_start(ap, fmt);
    if (r->n) vsnprintf(r->why, r->n, fmt, ap);
    va_end(ap);
    r->failed = true;
    return false;
}

static void line(struct rctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(struct rctx *r, const char *fmt, ...) {
    sb_add(r->o, "%*s", 4 * r->indent, "");
    va_list ap;
    va_start(ap, fmt);
    sb_vadd(r->o, fmt, ap);
    va_end(ap);
    sb_add(r->o, "\n");
}

static bool is_float(enum kir_type t) { return t == KIR_F32 || t == KIR_F64; }
static bool is_int(enum kir_type t) { return t == KIR_I32 || t == KIR_I64; }

static const char *ctype(enum kir_type t) {
    switch (t) {
    case KIR_I64: return "long long";
    case KIR_I32: return "int";
    case KIR_F32: return "float";
    case KIR_F64: return "double";
    default: return "bool";
    }
}

static const char *sfx(enum kir_type t) {
    switch (t) {
    case KIR_I64: return "i64";
    case KIR_I32: return "i32";
    case KIR_F32: return "f32";
    default: return "f64";
    }
}

// A bool buffer holds one byte per element.
static const char *elem_ctype(enum itr_dtype dt) { return dt == ITR_BOOL ? "unsigned char" : ctype(kir_type_of_dtype(dt)); }

static void float_lit(char *buf, size_t n, double v, enum kir_type t) {
    const char *s = sfx(t);
    if (isnan(v)) { snprintf(buf, n, "itr_nan_%s()", s); return; }
    if (isinf(v)) { snprintf(buf, n, "%sitr_inf_%s()", v < 0 ? "-" : "", s); return; }
    char d[40];
    snprintf(d, sizeof d, "%.17g", v);
    if (!strpbrk(d, ".e")) strcat(d, ".0");
    // An f32 constant is the double rounded to float, as LLVMConstReal does.
    snprintf(buf, n, t == KIR_F32 ? "((float)%s)" : "(%s)", d);
}

static void int_lit(char *buf, size_t n, int64_t v, enum kir_type t) {
    if (t == KIR_BOOL) snprintf(buf, n, "%s", v ? "true" : "false");
    else if (t == KIR_I32 && (int32_t)v == INT32_MIN) snprintf(buf, n, "(-2147483647 - 1)");
    else if (t == KIR_I32) snprintf(buf, n, v < 0 ? "(%" PRId32 ")" : "%" PRId32, (int32_t)v);
    else if (v == INT64_MIN) snprintf(buf, n, "(-9223372036854775807LL - 1)");
    else snprintf(buf, n, v < 0 ? "(%" PRId64 "LL)" : "%" PRId64 "LL", v);
}

// ---- scalar operations: the formula of op over operand texts a, b

static const char *truthy(char *buf, size_t n, enum kir_type t, const char *a) {
    if (t == KIR_BOOL) snprintf(buf, n, "%s", a);
    else snprintf(buf, n, "(%s != 0)", a);
    return buf;
}

// Appends op(a, b) for operands of kir type t to o; false (with why) when
// the LLVM renderer has no rendering either.
static bool binop(struct rctx *r, struct sb *o, enum kir_op op, enum kir_type t, const char *a, const char *b) {
    bool f = is_float(t), i = is_int(t), bl = t == KIR_BOOL;
    switch (op) {
    case KIR_ADD:
        if (f) { sb_add(o, "(%s + %s)", a, b); return true; }
        if (i) { sb_add(o, "itr_add_%s(%s, %s)", sfx(t), a, b); return true; }
        sb_add(o, "(%s || %s)", a, b);   // bool: any
        return true;
    case KIR_SUB:
        if (f) { sb_add(o, "(%s - %s)", a, b); return true; }
        if (i) { sb_add(o, "itr_sub_%s(%s, %s)", sfx(t), a, b); return true; }
        break;
    case KIR_MUL:
        if (f) { sb_add(o, "(%s * %s)", a, b); return true; }
        if (i) { sb_add(o, "itr_mul_%s(%s, %s)", sfx(t), a, b); return true; }
        sb_add(o, "(%s && %s)", a, b);   // bool: all
        return true;
    case KIR_DIV:
        if (f) { sb_add(o, "(%s / %s)", a, b); return true; }
        if (i) { sb_add(o, "itr_div_%s(%s, %s)", sfx(t), a, b); return true; }
        break;
    case KIR_MOD:
        if (f) { sb_add(o, "%s(%s, %s)", t == KIR_F32 ? "fmodf" : "fmod", a, b); return true; }
        if (i) { sb_add(o, "itr_mod_%s(%s, %s)", sfx(t), a, b); return true; }
        break;
    case KIR_MIN:
    case KIR_MAX: {
        bool mx = op == KIR_MAX;
        if (f) sb_add(o, "itr_%s_%s(%s, %s)", mx ? "max" : "min", sfx(t), a, b);
        else if (bl) sb_add(o, "(%s %s %s)", a, mx ? "||" : "&&", b);
        else sb_add(o, "(%s %s %s ? %s : %s)", a, mx ? ">=" : "<=", b, a, b);
        return true;
    }
    case KIR_POW:
        if (f) { sb_add(o, "%s(%s, %s)", t == KIR_F32 ? "powf" : "pow", a, b); return true; }
        break;
    case KIR_EQ: case KIR_NE: case KIR_LT: case KIR_LE: case KIR_GT: case KIR_GE: {
        // C's != is true when either operand is NaN, the others are ordered:
        // the predicates the LLVM renderer uses. false < true for bools.
        static const char *cmp[] = { "==", "!=", "<", "<=", ">", ">=" };
        sb_add(o, "(%s %s %s)", a, cmp[op - KIR_EQ], b);
        return true;
    }
    case KIR_AND:
    case KIR_OR: {
        char ta[TXT + 8], tb[TXT + 8];
        sb_add(o, "(%s %s %s)", truthy(ta, sizeof ta, t, a), op == KIR_AND ? "&&" : "||", truthy(tb, sizeof tb, t, b));
        return true;
    }
    default: break;
    }
    return fail(r, "'%s' of %s operands has no CUDA rendering", kir_op_name(op), kir_type_name(t));
}

static bool unop(struct rctx *r, struct sb *o, enum kir_op op, enum kir_type t, const char *x) {
    bool f = is_float(t), i = is_int(t), f32 = t == KIR_F32;
    if (op == KIR_NOT) {
        if (t == KIR_BOOL) sb_add(o, "(!%s)", x);
        else if (f) sb_add(o, "(%s == 0 ? %s : %s)", x, f32 ? "1.0f" : "1.0", f32 ? "0.0f" : "0.0");
        else sb_add(o, "(%s)(%s == 0)", ctype(t), x);
        return true;
    }
    if (i) {
        switch (op) {
        case KIR_NEG: sb_add(o, "itr_neg_%s(%s)", sfx(t), x); return true;
        case KIR_ABS: sb_add(o, "itr_abs_%s(%s)", sfx(t), x); return true;
        case KIR_SIGN: sb_add(o, "itr_sign_%s(%s)", sfx(t), x); return true;
        default: break;
        }
    }
    if (f) {
        const char *one = f32 ? "1.0f" : "1.0";
        switch (op) {
        case KIR_NEG: sb_add(o, "(-%s)", x); return true;
        case KIR_ABS: sb_add(o, "%s(%s)", f32 ? "fabsf" : "fabs", x); return true;
        case KIR_SIGN: sb_add(o, "itr_sign_%s(%s)", sfx(t), x); return true;
        case KIR_EXP: sb_add(o, "%s(%s)", f32 ? "expf" : "exp", x); return true;
        case KIR_LOG: sb_add(o, "%s(%s)", f32 ? "logf" : "log", x); return true;
        case KIR_SQRT: sb_add(o, "%s(%s)", f32 ? "sqrtf" : "sqrt", x); return true;
        // 1/sqrt rather than rsqrt: the LLVM renderer's rounding, not rsqrt's ulps.
        case KIR_RSQRT: sb_add(o, "(%s / %s(%s))", one, f32 ? "sqrtf" : "sqrt", x); return true;
        case KIR_RECIP: sb_add(o, "(%s / %s)", one, x); return true;
        case KIR_TANH: sb_add(o, "%s(%s)", f32 ? "tanhf" : "tanh", x); return true;
        case KIR_ERF: sb_add(o, "%s(%s)", f32 ? "erff" : "erf", x); return true;
        case KIR_SIN: sb_add(o, "%s(%s)", f32 ? "sinf" : "sin", x); return true;
        case KIR_COS: sb_add(o, "%s(%s)", f32 ? "cosf" : "cos", x); return true;
        case KIR_ACOS: sb_add(o, "%s(%s)", f32 ? "acosf" : "acos", x); return true;
        case KIR_SIGMOID: sb_add(o, "itr_sigmoid_%s(%s)", sfx(t), x); return true;
        default: break;
        }
    }
    return fail(r, "'%s' of %s has no CUDA rendering", kir_op_name(op), kir_type_name(t));
}

static bool cast(struct sb *o, enum kir_type from, enum kir_type to, const char *x) {
    char tb[TXT + 8];
    if (from == to) sb_add(o, "%s", x);
    else if (to == KIR_BOOL) sb_add(o, "%s", truthy(tb, sizeof tb, from, x));
    else if (is_float(from) && is_int(to)) sb_add(o, "itr_%s_to_%s(%s)", sfx(from), sfx(to), x);
    else sb_add(o, "((%s)%s)", ctype(to), x);   // bool -> 0/1, int <-> float (nearest), f64 <-> f32, sext/trunc
    return true;
}

// ---- expressions

static const char *operand(struct rctx *r, int32_t id);

// The formula of expression id (its operands already have texts) into o.
static bool formula(struct rctx *r, struct sb *o, int32_t id) {
    const struct kir_kernel *k = r->k;
    const struct kir_expr *e = &k->exprs[id];
    switch (e->kind) {
    case KIR_E_VAR: {
        const struct kir_var *v = &k->vars[e->var];
        if (e->a >= 0) {
            sb_add(o, "v%d[%s]", e->var, r->txt[e->a]);
            return true;
        }
        // The combined value: lanes folded in order, lane 0 first.
        char acc[TXT], lane[TXT];
        snprintf(acc, sizeof acc, "v%d[0]", e->var);
        if (v->lanes == 1) { sb_add(o, "%s", acc); return true; }
        struct sb t = { 0 };
        for (int l = 1; l < v->lanes; l++) {
            snprintf(lane, sizeof lane, "v%d[%d]", e->var, l);
            struct sb next = { 0 };
            if (!binop(r, &next, v->combine, v->type, l == 1 ? acc : t.s, lane)) { free(t.s); free(next.s); return false; }
            free(t.s);
            t = next;
            if (t.oom) break;
        }
        if (t.oom || !t.s) { free(t.s); return fail(r, "out of memory"); }
        sb_add(o, "%s", t.s);
        free(t.s);
        return true;
    }
    case KIR_E_LOAD:
        if (k->bufs[e->buf].dtype == ITR_BOOL) sb_add(o, "(b%d[%s] != 0)", e->buf, r->txt[e->a]);
        else sb_add(o, "b%d[%s]", e->buf, r->txt[e->a]);
        return true;
    case KIR_E_UNARY: return unop(r, o, e->op, k->exprs[e->a].type, r->txt[e->a]);
    case KIR_E_BINARY: return binop(r, o, e->op, k->exprs[e->a].type, r->txt[e->a], r->txt[e->b]);
    // Both arms are pure (kir.h), so C's lazy ?: is the same value.
    case KIR_E_SELECT: sb_add(o, "(%s ? %s : %s)", r->txt[e->a], r->txt[e->b], r->txt[e->c]); return true;
    case KIR_E_CAST: return cast(o, k->exprs[e->a].type, e->type, r->txt[e->a]);
    default: break;
    }
    return fail(r, "e%d: expression kind %d has no CUDA rendering", id, (int)e->kind);
}

// The text that stands for expression id in the current statement; emits
// the temps it needs. NULL after a failure.
static const char *operand(struct rctx *r, int32_t id) {
    if (r->failed) return NULL;
    if (r->gen_of[id] == r->gen) return r->txt[id];
    const struct kir_kernel *k = r->k;
    const struct kir_expr *e = &k->exprs[id];
    char *t = r->txt[id];
    switch (e->kind) {
    case KIR_E_CONST_INT:
        if (is_float(e->type)) float_lit(t, TXT, (double)e->ival, e->type);
        else int_lit(t, TXT, e->ival, e->type);
        break;
    case KIR_E_CONST_FLOAT:
        if (!is_float(e->type)) return fail(r, "e%d: a float constant of type %s", id, kir_type_name(e->type)), NULL;
        float_lit(t, TXT, e->fval, e->type);
        break;
    case KIR_E_DIM: snprintf(t, TXT, "d%d", e->dim); break;
    case KIR_E_BEGIN: snprintf(t, TXT, "itr_begin"); break;
    case KIR_E_END: snprintf(t, TXT, "itr_end"); break;
    case KIR_E_VAR:
        if (k->vars[e->var].kind != KIR_VAR_ACC) {
            snprintf(t, TXT, "v%d", e->var);
            break;
        }
        if (e->a >= 0 && !operand(r, e->a)) return NULL;
        goto temp;
    case KIR_E_LOAD:
        if (!operand(r, e->a)) return NULL;
        if (!is_int(k->exprs[e->a].type)) return fail(r, "e%d: an index of type %s", id, kir_type_name(k->exprs[e->a].type)), NULL;
        goto temp;
    case KIR_E_UNARY:
    case KIR_E_CAST:
        if (!operand(r, e->a)) return NULL;
        goto temp;
    case KIR_E_BINARY:
        if (!operand(r, e->a) || !operand(r, e->b)) return NULL;
        goto temp;
    case KIR_E_SELECT:
        if (!operand(r, e->a) || !operand(r, e->b) || !operand(r, e->c)) return NULL;
        goto temp;
    default: return fail(r, "e%d: expression kind %d has no CUDA rendering", id, (int)e->kind), NULL;
    }
    r->gen_of[id] = r->gen;
    return t;
temp: {
        struct sb f = { 0 };
        bool ok = formula(r, &f, id) && !f.oom;
        if (ok) line(r, "const %s e%d = %s;", ctype(e->type), id, f.s);
        else if (f.oom) fail(r, "out of memory");
        free(f.s);
        if (!ok) return NULL;
        snprintf(t, TXT, "e%d", id);
        r->gen_of[id] = r->gen;
        return t;
    }
}

// ---- statements

static bool stmt(struct rctx *r, int32_t id);

// A statement with its temps in a block of its own. The braces end the
// temps' scope, so a later statement may compute the same expression anew.
static void open_block(struct rctx *r) {
    r->gen++;
    line(r, "{");
    r->indent++;
}

static void close_block(struct rctx *r) {
    r->indent--;
    line(r, "}");
}

static bool render_for(struct rctx *r, const struct kir_stmt *s) {
    const struct kir_kernel *k = r->k;
    if (k->vars[s->var].type != KIR_I64)
        return fail(r, "loop variable '%s' is %s, not i64", k->vars[s->var].name, kir_type_name(k->vars[s->var].type));
    open_block(r);
    const char *lo = operand(r, s->lo), *hi = lo ? operand(r, s->hi) : NULL;
    if (!hi) return false;
    const struct kir_expr *elo = &k->exprs[s->lo], *ehi = &k->exprs[s->hi];
    // The vectorised loop of the CPU is an ordinary loop in one thread here;
    // the parallel loop runs the thread's one iteration [begin, end).
    if (s->loop == KIR_LOOP_UNROLL && elo->kind == KIR_E_CONST_INT && ehi->kind == KIR_E_CONST_INT) line(r, "#pragma unroll");
    line(r, "for (long long v%d = %s; v%d < %s; v%d++) {  // %s (%s)", s->var, lo, s->var, hi, s->var, k->vars[s->var].name,
         s->loop == KIR_LOOP_PARALLEL ? "parallel" : s->loop == KIR_LOOP_VECTOR ? "vector"
         : s->loop == KIR_LOOP_UNROLL ? "unroll" : "serial");
    r->indent++;
    bool ok = stmt(r, s->body[0]);
    r->indent--;
    line(r, "}");
    close_block(r);
    return ok;
}

static bool stmt(struct rctx *r, int32_t id) {
    const struct kir_kernel *k = r->k;
    const struct kir_stmt *s = &k->stmts[id];
    switch (s->kind) {
    case KIR_S_SEQ:
        for (int i = 0; i < s->n_body; i++)
            if (!stmt(r, s->body[i])) return false;
        return true;
    case KIR_S_FOR: return render_for(r, s);
    case KIR_S_STORE: {
        const struct kir_buffer *bf = &k->bufs[s->buf];
        open_block(r);
        const char *idx = operand(r, s->index), *v = idx ? operand(r, s->value) : NULL;
        if (!v) return false;
        if (!is_int(k->exprs[s->index].type))
            return fail(r, "s%d: an index of type %s", id, kir_type_name(k->exprs[s->index].type));
        if (bf->dtype == ITR_BOOL) line(r, "b%d[%s] = (unsigned char)%s;", s->buf, idx, v);
        else line(r, "b%d[%s] = %s;", s->buf, idx, v);
        close_block(r);
        return true;
    }
    case KIR_S_LET: {
        open_block(r);
        const char *v = operand(r, s->value);
        if (!v) return false;
        line(r, "v%d = %s;", s->var, v);
        close_block(r);
        return true;
    }
    case KIR_S_ACC_INIT: {
        open_block(r);
        const char *v = operand(r, s->value);
        if (!v) return false;
        int lanes = k->vars[s->var].lanes;
        // Wide accumulators (a column-reduction chunk) get a loop, not a line per lane.
        if (lanes > 16) line(r, "for (int l = 0; l < %d; l++) v%d[l] = %s;", lanes, s->var, v);
        else
            for (int l = 0; l < lanes; l++) line(r, "v%d[%d] = %s;", s->var, l, v);
        close_block(r);
        return true;
    }
    case KIR_S_ACC_UPDATE: {
        const struct kir_var *var = &k->vars[s->var];
        open_block(r);
        const char *lane = operand(r, s->index), *v = lane ? operand(r, s->value) : NULL;
        if (!v) return false;
        char old[TXT + 16];
        snprintf(old, sizeof old, "v%d[%s]", s->var, lane);
        struct sb f = { 0 };
        bool ok = binop(r, &f, var->combine, var->type, old, v) && !f.oom;
        if (ok) line(r, "%s = %s;", old, f.s);
        else if (f.oom) fail(r, "out of memory");
        free(f.s);
        if (!ok) return false;
        close_block(r);
        return true;
    }
    case KIR_S_IF: {
        open_block(r);
        const char *c = operand(r, s->cond);
        if (!c) return false;
        line(r, "if (%s) {", c);
        r->indent++;
        if (!stmt(r, s->body[0])) return false;
        r->indent--;
        if (s->n_body == 2) {
            line(r, "} else {");
            r->indent++;
            if (!stmt(r, s->body[1])) return false;
            r->indent--;
        }
        line(r, "}");
        close_block(r);
        return true;
    }
    default: break;
    }
    return fail(r, "s%d: statement kind %d has no CUDA rendering", id, (int)s->kind);
}

// ---- kernels

// __restrict__ where the LLVM renderer says noalias (render.c's
// buffer_noalias): proved by the scheduler, or read-only while every written
// buffer is noalias.
static bool buffer_noalias(const struct kir_kernel *k, int i) {
    if (k->bufs[i].noalias) return true;
    if (k->bufs[i].written) return false;
    for (int j = 0; j < k->n_bufs; j++)
        if (k->bufs[j].written && !k->bufs[j].noalias) return false;
    return true;
}

static bool is_identifier(const char *s) {
    if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))) return false;
    return true;
}

static bool render_into(struct sb *o, const struct kir_kernel *k, const char *symbol, char *why, size_t n) {
    struct rctx r = { .k = k, .o = o, .why = why, .n = n, .gen = 1 };
    if (!is_identifier(symbol)) return fail(&r, "kernel symbol '%s' is not a C identifier", symbol ? symbol : "(null)");
    char vwhy[256];
    if (!kir_verify(k, vwhy, sizeof vwhy)) return fail(&r, "invalid kernel: %s", vwhy);
    r.txt = calloc((size_t)k->n_exprs + 1, sizeof *r.txt);
    r.gen_of = calloc((size_t)k->n_exprs + 1, sizeof *r.gen_of);
    if (!r.txt || !r.gen_of) {
        free(r.txt), free(r.gen_of);
        return fail(&r, "out of memory");
    }
    line(&r, "// %s", k->name ? k->name : "(unnamed)");
    sb_add(o, "extern \"C\" __global__ void __launch_bounds__(%d) %s(", ITR_CUDA_BLOCK, symbol);
    for (int i = 0; i < k->n_bufs; i++)
        sb_add(o, "%s%s%s *%sb%d", i ? ", " : "", k->bufs[i].written ? "" : "const ", elem_ctype(k->bufs[i].dtype),
               buffer_noalias(k, i) ? "__restrict__ " : "", i);
    for (int j = 0; j < k->n_dims; j++) sb_add(o, "%slong long d%d", k->n_bufs + j ? ", " : "", j);
    sb_add(o, "%slong long itr_lo, long long itr_hi) {\n", k->n_bufs + k->n_dims ? ", " : "");
    r.indent = 1;
    for (int i = 0; i < k->n_bufs; i++) line(&r, "// b%d: %s", i, k->bufs[i].name ? k->bufs[i].name : "?");
    for (int j = 0; j < k->n_dims; j++) line(&r, "// d%d: %s", j, k->dims[j].name ? k->dims[j].name : "?");
    // One thread per iteration of the parallel loop (cuda_render.h); thread
    // 0 of an empty launch still runs the body once, with begin == end.
    line(&r, "const long long itr_t = (long long)blockIdx.x * blockDim.x + threadIdx.x;");
    line(&r, "const long long itr_begin = itr_lo + itr_t;");
    line(&r, "if (itr_begin >= itr_hi && itr_t != 0) return;");
    line(&r, "const long long itr_end = itr_begin < itr_hi ? itr_begin + 1 : itr_begin;");
    line(&r, "(void)itr_end;");
    for (int i = 0; i < k->n_vars; i++) {
        const struct kir_var *v = &k->vars[i];
        if (v->kind == KIR_VAR_LET) line(&r, "%s v%d;  // %s", ctype(v->type), i, v->name ? v->name : "");
        else if (v->kind == KIR_VAR_ACC) {
            if (v->lanes < 1) {
                free(r.txt), free(r.gen_of);
                return fail(&r, "accumulator '%s' has %d lanes", v->name, v->lanes);
            }
            line(&r, "%s v%d[%d];  // %s", ctype(v->type), i, v->lanes, v->name ? v->name : "");
        }
    }
    bool ok = stmt(&r, k->body);
    sb_add(o, "}\n");
    free(r.txt);
    free(r.gen_of);
    if (o->oom) return fail(&r, "out of memory");
    return ok;
}

char *itr_cuda_render_kernel(const struct kir_kernel *k, const char *symbol, char *why, size_t n) {
    struct sb o = { 0 };
    if (!render_into(&o, k, symbol, why, n)) {
        free(o.s);
        return NULL;
    }
    return o.s;
}

static int count_lines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

char *itr_cuda_render_unit(const struct kir_kernel *const *ks, const char *const *symbols, int n, int *first_line,
                           char *why, size_t wn) {
    struct sb o = { 0 };
    sb_add(&o, "%s", prelude);
    int lines = count_lines(o.s ? o.s : "", o.len);
    for (int i = 0; i < n; i++) {
        size_t at = o.len;
        char w[512];
        if (!render_into(&o, ks[i], symbols[i], w, sizeof w)) {
            if (wn) snprintf(why, wn, "kernel '%s': %s", ks[i]->name ? ks[i]->name : symbols[i], w);
            free(o.s);
            return NULL;
        }
        if (first_line) first_line[i] = lines + 1;
        lines += count_lines(o.s + at, o.len - at);
    }
    if (o.oom) {
        if (wn) snprintf(why, wn, "out of memory");
        free(o.s);
        return NULL;
    }
    return o.s;
}

bool itr_cuda_launch_dims(int64_t hi, uint32_t *grid, uint32_t *block) {
    int64_t n = hi < 1 ? 1 : hi;
    int64_t g = (n + ITR_CUDA_BLOCK - 1) / ITR_CUDA_BLOCK;
    if (g > 2147483647) return false;   // the grid's x-dimension limit
    *grid = (uint32_t)g;
    *block = ITR_CUDA_BLOCK;
    return true;
}
