// Recursive-descent parser for the .ir text format (docs/ir.md).
//
// Error recovery: a failed construct returns NULL up to the enclosing
// statement or item, which reports nothing more and skips ahead to the next
// token that starts a line and can start a statement (or item), or to the
// brace that closes the block. One mistake therefore gives one message, and
// later mistakes in the same file are still found.
#include "ast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    struct lexer lx;
    struct itr_arena *arena;
    struct itr_diags *d;
    int depth;
    bool fatal;          // stop: too deep, or too many errors
    int error_limit;
};

// ------------------------------------------------------------ helpers

static void *grow_arr(struct itr_arena *a, void *old, int n, int *cap, size_t elem) {
    if (n < *cap) return old;
    int ncap = *cap ? *cap * 2 : 4;
    void *p = itr_arena_alloc(a, (size_t)ncap * elem);
    if (old && n) memcpy(p, old, (size_t)n * elem);
    *cap = ncap;
    return p;
}
#define PUSH(P, arr, n, cap, val) \
    do { (arr) = grow_arr((P)->arena, (arr), (n), &(cap), sizeof *(arr)); (arr)[(n)++] = (val); } while (0)

static const struct token *peek(struct parser *p) {
    static const struct token eof = { .kind = TOK_EOF, .text = "" };
    if (p->fatal) return &eof;
    return lex_peek(&p->lx, 0);
}
static const struct token *peek2(struct parser *p, int k) {
    static const struct token eof = { .kind = TOK_EOF, .text = "" };
    if (p->fatal) return &eof;
    return lex_peek(&p->lx, k);
}
static struct token next(struct parser *p) {
    if (p->fatal) return *peek(p);
    return lex_next(&p->lx);
}
static bool at_kind(struct parser *p, enum tok_kind k) { return peek(p)->kind == k; }
static bool at_kw(struct parser *p, enum tok_kw kw) { return peek(p)->kind == TOK_IDENT && peek(p)->kw == kw; }

static void check_limit(struct parser *p) {
    if (p->d->n_errors >= p->error_limit) p->fatal = true;
}

static void error_at(struct parser *p, struct itr_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_at(struct parser *p, struct itr_loc loc, const char *fmt, ...) {
    if (p->fatal) return;
    va_list ap;
    va_start(ap, fmt);
    itr_diag_vreport(p->d, ITR_SEV_ERROR, loc, fmt, ap);
    va_end(ap);
    check_limit(p);
}

// "expected X, got Y" at the current token.
static void expected(struct parser *p, const char *what) {
    char got[128];
    tok_describe(peek(p), got, sizeof got);
    error_at(p, peek(p)->loc, "expected %s, got %s", what, got);
}

static bool expect(struct parser *p, enum tok_kind k, const char *what) {
    check_limit(p);
    if (at_kind(p, k)) { next(p); return true; }
    expected(p, what);
    return false;
}

static bool enter(struct parser *p) {
    if (++p->depth > ITR_TEXT_MAX_DEPTH) {
        error_at(p, peek(p)->loc, "nesting too deep (more than %d levels)", ITR_TEXT_MAX_DEPTH);
        p->fatal = true;
        return false;
    }
    return true;
}
static void leave(struct parser *p) { p->depth--; }

static struct ast_expr *new_expr(struct parser *p, enum ast_expr_kind k, struct itr_loc loc) {
    struct ast_expr *e = itr_arena_alloc(p->arena, sizeof *e);
    e->kind = k;
    e->loc = loc;
    return e;
}

// Skips to a plausible restart point: a token at the start of a line for
// which starts(tok) holds, or the '}' that closes the current block (left
// unconsumed), or the end of the file. Always makes progress unless it is
// already at such a point.
static void sync(struct parser *p, bool (*starts)(const struct token *)) {
    int depth = 0;
    bool first = true;
    for (;;) {
        const struct token *t = peek(p);
        if (t->kind == TOK_EOF) return;
        if (depth == 0 && t->kind == TOK_RBRACE) return;
        if (depth == 0 && !first && t->nl_before && starts(t)) return;
        if (t->kind == TOK_LBRACE) depth++;
        if (t->kind == TOK_RBRACE) depth--;
        next(p);
        first = false;
    }
}

static bool starts_stmt(const struct token *t) { return t->kind == TOK_IDENT; }

static bool starts_file_item(const struct token *t) {
    return t->kind == TOK_IDENT && (t->kw == KW_IMPORT || t->kw == KW_MODEL || t->kw == KW_MODULE || t->kw == KW_DEF);
}

static bool starts_item(const struct token *t) {
    if (t->kind != TOK_IDENT) return false;
    switch (t->kw) {
    case KW_IMPORT: case KW_MODEL: case KW_MODULE: case KW_DEF: case KW_ENTRY: case KW_LET:
    case KW_PARAM: case KW_FROZEN: case KW_DIM: case KW_IF: case KW_TRAIN: case KW_OPTIMIZER:
        return true;
    default: return false;
    }
}

// ------------------------------------------------------------ expressions

static struct ast_expr *parse_expr(struct parser *p);

static struct ast_expr *parse_args(struct parser *p, struct ast_expr *call) {
    // at '('
    next(p);
    struct ast_arg *args = NULL;
    int n = 0, cap = 0;
    while (!at_kind(p, TOK_RPAREN)) {
        struct ast_arg a = { NULL, peek(p)->loc, NULL };
        if (at_kind(p, TOK_IDENT) && peek2(p, 1)->kind == TOK_ASSIGN) {
            a.name = next(p).text;
            next(p);
        }
        a.value = parse_expr(p);
        if (!a.value) return NULL;
        PUSH(p, args, n, cap, a);
        if (at_kind(p, TOK_COMMA)) { next(p); continue; }
        if (!at_kind(p, TOK_RPAREN)) { expected(p, "',' or ')' in the argument list"); return NULL; }
    }
    next(p);
    call->u.call.args = args;
    call->u.call.n_args = n;
    return call;
}

// -x with two's-complement wrap-around (-INT64_MIN is INT64_MIN), never
// the signed overflow of plain negation.
static int64_t negate_int(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

static void literal_out_of_range(struct parser *p, const struct token *t) {
    error_at(p, t->loc, "integer literal out of range (more than 64 bits): 9223372036854775808");
}

// One element of a tensor literal: a number, true/false, inf/nan, with an
// optional leading minus.
static struct ast_expr *parse_tensor_elem(struct parser *p) {
    const struct token *t = peek(p);
    struct itr_loc loc = t->loc;
    bool neg = false;
    if (t->kind == TOK_MINUS) { neg = true; next(p); t = peek(p); }
    struct ast_expr *e = NULL;
    if (t->kind == TOK_INT) {
        e = new_expr(p, E_INT, loc);
        e->u.i = neg ? negate_int(t->ival) : t->ival;
        if (t->int_2p63 && !neg) literal_out_of_range(p, t);
    }
    else if (t->kind == TOK_FLOAT) { e = new_expr(p, E_FLOAT, loc); e->u.f = neg ? -t->fval : t->fval; }
    else if (t->kind == TOK_IDENT && (t->kw == KW_TRUE || t->kw == KW_FALSE) && !neg) {
        e = new_expr(p, E_BOOL, loc); e->u.b = t->kw == KW_TRUE;
    } else if (t->kind == TOK_IDENT && (strcmp(t->text, "inf") == 0 || strcmp(t->text, "nan") == 0)) {
        e = new_expr(p, E_FLOAT, loc);
        e->u.f = t->text[0] == 'i' ? (neg ? -HUGE_VAL : HUGE_VAL) : (neg ? -NAN : NAN);
    } else {
        expected(p, "a number in the tensor literal");
        return NULL;
    }
    next(p);
    return e;
}

// '[' expr, ... ']' (dims of a type or tensor literal, or a list value).
static bool parse_bracket_list(struct parser *p, struct ast_expr ***items, int *n_items) {
    next(p);
    struct ast_expr **v = NULL;
    int n = 0, cap = 0;
    while (!at_kind(p, TOK_RBRACK)) {
        struct ast_expr *e = parse_expr(p);
        if (!e) return false;
        PUSH(p, v, n, cap, e);
        if (at_kind(p, TOK_COMMA)) { next(p); continue; }
        if (!at_kind(p, TOK_RBRACK)) { expected(p, "',' or ']'"); return false; }
    }
    next(p);
    *items = v;
    *n_items = n;
    return true;
}

static struct ast_expr *parse_tensor_literal(struct parser *p, const struct token *dtname, struct itr_loc loc) {
    struct ast_expr *e = new_expr(p, E_TENSOR, loc);
    if (!itr_dtype_from_name(dtname->text, &e->u.tensor.dtype)) {
        error_at(p, loc, "unknown dtype '%s' (expected f32, f64, i32, i64 or bool)", dtname->text);
        return NULL;
    }
    if (!parse_bracket_list(p, &e->u.tensor.dims, &e->u.tensor.rank)) return NULL;
    if (!at_kind(p, TOK_LBRACE)) { expected(p, "'{' and the elements of the tensor literal"); return NULL; }
    next(p);
    struct ast_expr **v = NULL;
    int n = 0, cap = 0;
    while (!at_kind(p, TOK_RBRACE)) {
        struct ast_expr *x = parse_tensor_elem(p);
        if (!x) return NULL;
        PUSH(p, v, n, cap, x);
        if (at_kind(p, TOK_COMMA)) { next(p); continue; }
        if (!at_kind(p, TOK_RBRACE)) { expected(p, "',' or '}' in the tensor literal"); return NULL; }
    }
    next(p);
    e->u.tensor.vals = v;
    e->u.tensor.n_vals = n;
    return e;
}

static struct ast_expr *parse_primary(struct parser *p) {
    const struct token *t = peek(p);
    struct itr_loc loc = t->loc;
    struct ast_expr *e;
    switch (t->kind) {
    case TOK_INT:
        if (t->int_2p63) literal_out_of_range(p, t);
        e = new_expr(p, E_INT, loc);
        e->u.i = t->ival;
        next(p);
        return e;
    case TOK_FLOAT: e = new_expr(p, E_FLOAT, loc); e->u.f = t->fval; next(p); return e;
    case TOK_STRING:
        e = new_expr(p, E_STR, loc);
        e->u.str.s = t->text;
        e->u.str.len = t->len;
        next(p);
        return e;
    case TOK_IDENT: {
        if (t->kw == KW_TRUE || t->kw == KW_FALSE) {
            e = new_expr(p, E_BOOL, loc);
            e->u.b = t->kw == KW_TRUE;
            next(p);
            return e;
        }
        struct token name = next(p);
        if (at_kind(p, TOK_LPAREN)) {
            e = new_expr(p, E_CALL, loc);
            e->u.call.callee = name.text;
            if (!enter(p)) return NULL;
            struct ast_expr *r = parse_args(p, e);
            leave(p);
            return r;
        }
        if (at_kind(p, TOK_LBRACK)) return parse_tensor_literal(p, &name, loc);
        e = new_expr(p, E_NAME, loc);
        e->u.name = name.text;
        return e;
    }
    case TOK_LPAREN: {
        next(p);
        if (!enter(p)) return NULL;
        e = parse_expr(p);
        leave(p);
        if (!e) return NULL;
        if (!expect(p, TOK_RPAREN, "')'")) return NULL;
        return e;
    }
    case TOK_LBRACK: {
        if (!enter(p)) return NULL;
        e = new_expr(p, E_LIST, loc);
        bool ok = parse_bracket_list(p, &e->u.list.items, &e->u.list.n);
        leave(p);
        return ok ? e : NULL;
    }
    default:
        expected(p, "an expression");
        return NULL;
    }
}

static struct ast_expr *parse_unary(struct parser *p) {
    const struct token *t = peek(p);
    if (t->kind != TOK_MINUS && t->kind != TOK_BANG) return parse_primary(p);
    struct itr_loc loc = t->loc;
    enum tok_kind k = t->kind;
    next(p);
    if (k == TOK_MINUS && peek(p)->kind == TOK_INT && peek(p)->int_2p63) {   // INT64_MIN itself
        struct ast_expr *e = new_expr(p, E_INT, loc);
        e->u.i = INT64_MIN;
        next(p);
        return e;
    }
    if (!enter(p)) return NULL;
    struct ast_expr *x = parse_unary(p);
    leave(p);
    if (!x) return NULL;
    // A negative literal is a literal, so "-1" is an int and "-0.5" a float.
    if (k == TOK_MINUS && x->kind == E_INT) { x->u.i = negate_int(x->u.i); x->loc = loc; return x; }
    if (k == TOK_MINUS && x->kind == E_FLOAT) { x->u.f = -x->u.f; x->loc = loc; return x; }
    struct ast_expr *e = new_expr(p, k == TOK_MINUS ? E_NEG : E_NOT, loc);
    e->u.operand = x;
    return e;
}

// Precedence levels, lowest first; each is a left-associative chain.
static const enum tok_kind level_ops[][7] = {
    { TOK_OROR, TOK_EOF },
    { TOK_ANDAND, TOK_EOF },
    { TOK_EQ, TOK_NE, TOK_LT, TOK_LE, TOK_GT, TOK_GE, TOK_EOF },
    { TOK_PLUS, TOK_MINUS, TOK_EOF },
    { TOK_STAR, TOK_SLASH, TOK_AT, TOK_EOF },
};
#define N_LEVELS ((int)(sizeof level_ops / sizeof level_ops[0]))

static bool in_level(int level, enum tok_kind k) {
    for (int i = 0; level_ops[level][i] != TOK_EOF; i++)
        if (level_ops[level][i] == k) return true;
    return false;
}

static struct ast_expr *parse_level(struct parser *p, int level) {
    if (level == N_LEVELS) return parse_unary(p);
    struct ast_expr *first = parse_level(p, level + 1);
    if (!first || !in_level(level, peek(p)->kind)) return first;
    struct ast_expr *e = new_expr(p, E_CHAIN, first->loc);
    struct ast_expr **ops = NULL;
    enum tok_kind *kinds = NULL;
    struct itr_loc *locs = NULL;
    int n = 0, cap = 0, nk = 0, capk = 0, nl = 0, capl = 0;
    PUSH(p, ops, n, cap, first);
    while (in_level(level, peek(p)->kind)) {
        struct token op = next(p);
        struct ast_expr *rhs = parse_level(p, level + 1);
        if (!rhs) return NULL;
        PUSH(p, kinds, nk, capk, op.kind);
        PUSH(p, locs, nl, capl, op.loc);
        PUSH(p, ops, n, cap, rhs);
    }
    e->u.chain.operands = ops;
    e->u.chain.n = n;
    e->u.chain.ops = kinds;
    e->u.chain.op_locs = locs;
    return e;
}

static struct ast_expr *parse_expr(struct parser *p) { return parse_level(p, 0); }

// ------------------------------------------------------------ types and params

static bool is_config_kind(const char *s, enum ast_config_kind *k) {
    static const char *const names[] = { "int", "float", "bool", "str" };
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) { *k = (enum ast_config_kind)i; return true; }
    return false;
}

// DTYPE '[' dims ']'
static struct ast_type *parse_type(struct parser *p) {
    const struct token *t = peek(p);
    if (t->kind != TOK_IDENT) { expected(p, "a type such as f32[B, D]"); return NULL; }
    struct ast_type *ty = itr_arena_alloc(p->arena, sizeof *ty);
    ty->loc = t->loc;
    if (!itr_dtype_from_name(t->text, &ty->dtype)) {
        error_at(p, t->loc, "unknown dtype '%s' (expected f32, f64, i32, i64 or bool)", t->text);
        return NULL;
    }
    next(p);
    if (!at_kind(p, TOK_LBRACK)) { expected(p, "'[' and the dims of the type (f32[] for a scalar)"); return NULL; }
    if (!enter(p)) return NULL;
    bool ok = parse_bracket_list(p, &ty->dims, &ty->rank);
    leave(p);
    if (!ok) return NULL;
    if (ty->rank > ITR_MAX_RANK) {
        error_at(p, ty->loc, "type has rank %d; at most %d dims are supported", ty->rank, ITR_MAX_RANK);
        return NULL;
    }
    return ty;
}

// '(' param, ... ')'. Each: NAME [':' (KIND | TYPE)] ['=' expr].
static bool parse_params(struct parser *p, struct ast_param **out, int *n_out) {
    if (!expect(p, TOK_LPAREN, "'('")) return false;
    struct ast_param *v = NULL;
    int n = 0, cap = 0;
    while (!at_kind(p, TOK_RPAREN)) {
        const struct token *t = peek(p);
        if (t->kind != TOK_IDENT) { expected(p, "a parameter name"); return false; }
        struct ast_param pa;
        memset(&pa, 0, sizeof pa);
        pa.name = t->text;
        pa.loc = t->loc;
        next(p);
        if (at_kind(p, TOK_COLON)) {
            next(p);
            const struct token *k = peek(p);
            enum ast_config_kind ck;
            if (k->kind == TOK_IDENT && is_config_kind(k->text, &ck) && peek2(p, 1)->kind != TOK_LBRACK) {
                pa.is_config = true;
                pa.ckind = ck;
                next(p);
            } else {
                if (k->kind == TOK_IDENT && !itr_dtype_from_name(k->text, &(enum itr_dtype){ 0 }) &&
                    peek2(p, 1)->kind != TOK_LBRACK) {
                    error_at(p, k->loc, "unknown type '%s': expected a tensor type (f32[...]) or a config kind "
                             "(int, float, bool, str)", k->text);
                    return false;
                }
                pa.type = parse_type(p);
                if (!pa.type) return false;
            }
        }
        if (at_kind(p, TOK_ASSIGN)) {
            next(p);
            pa.def = parse_expr(p);
            if (!pa.def) return false;
            if (!pa.is_config) {
                error_at(p, pa.loc, "only config parameters (int, float, bool, str) can have defaults; "
                         "annotate '%s' with its kind", pa.name);
                return false;
            }
        }
        PUSH(p, v, n, cap, pa);
        if (at_kind(p, TOK_COMMA)) { next(p); continue; }
        if (!at_kind(p, TOK_RPAREN)) { expected(p, "',' or ')' in the parameter list"); return false; }
    }
    next(p);
    *out = v;
    *n_out = n;
    return true;
}

// ------------------------------------------------------------ statements

static bool parse_stmts(struct parser *p, struct ast_stmt **out, int *n_out);

static bool parse_block(struct parser *p, struct ast_stmt **out, int *n_out) {
    if (!expect(p, TOK_LBRACE, "'{'")) return false;
    if (!enter(p)) return false;
    // Errors inside were reported and recovered from; the block is usable
    // for recovery purposes as long as it closes.
    parse_stmts(p, out, n_out);
    leave(p);
    return expect(p, TOK_RBRACE, "'}'");
}

static bool parse_stmt(struct parser *p, struct ast_stmt *s) {
    memset(s, 0, sizeof *s);
    const struct token *t = peek(p);
    s->loc = t->loc;
    if (t->kind != TOK_IDENT) { expected(p, "a statement (name = ..., return or if)"); return false; }
    if (t->kw == KW_RETURN && peek2(p, 1)->kind != TOK_ASSIGN && peek2(p, 1)->kind != TOK_COMMA) {
        s->kind = S_RETURN;
        next(p);
        int cap = 0;
        // "return" alone returns nothing; the values must be on its line.
        if (at_kind(p, TOK_RBRACE) || peek(p)->nl_before || at_kind(p, TOK_EOF)) return true;
        for (;;) {
            struct ast_expr *e = parse_expr(p);
            if (!e) return false;
            PUSH(p, s->exprs, s->n_exprs, cap, e);
            if (!at_kind(p, TOK_COMMA)) break;
            next(p);
        }
        return true;
    }
    if (t->kw == KW_IF && peek2(p, 1)->kind != TOK_ASSIGN && peek2(p, 1)->kind != TOK_COMMA) {
        s->kind = S_IF;
        next(p);
        s->cond = parse_expr(p);
        if (!s->cond) return false;
        if (!parse_block(p, &s->then_s, &s->n_then)) return false;
        if (at_kw(p, KW_ELSE)) {
            next(p);
            if (at_kw(p, KW_IF)) {
                s->else_s = itr_arena_alloc(p->arena, sizeof *s->else_s);
                s->n_else = 1;
                if (!enter(p)) return false;
                bool ok = parse_stmt(p, s->else_s);
                leave(p);
                return ok;
            }
            if (!parse_block(p, &s->else_s, &s->n_else)) return false;
        }
        return true;
    }
    if (t->kw == KW_UPDATE && peek2(p, 1)->kind == TOK_IDENT) {
        // update NAME = expr (a state update, docs/ir.md "Training")
        s->kind = S_UPDATE;
        next(p);
        const struct token *nt = peek(p);
        s->names = itr_arena_alloc(p->arena, sizeof *s->names);
        s->name_locs = itr_arena_alloc(p->arena, sizeof *s->name_locs);
        s->names[0] = nt->text;
        s->name_locs[0] = nt->loc;
        s->n_names = 1;
        next(p);
        if (!expect(p, TOK_ASSIGN, "'=' after 'update NAME'")) return false;
        s->expr = parse_expr(p);
        return s->expr != NULL;
    }
    enum tok_kw kw = t->kw;
    if ((kw == KW_PARAM || kw == KW_LET || kw == KW_DEF || kw == KW_DIM || kw == KW_ENTRY || kw == KW_FROZEN ||
         kw == KW_MODULE || kw == KW_MODEL || kw == KW_IMPORT || kw == KW_OPTIMIZER) &&
        peek2(p, 1)->kind == TOK_IDENT) {
        error_at(p, t->loc, "'%s' is not allowed inside a function body", t->text);
        return false;
    }
    // NAME (',' NAME)* '=' expr
    s->kind = S_ASSIGN;
    int cap = 0, capl = 0, nl = 0;
    for (;;) {
        const struct token *nt = peek(p);
        if (nt->kind != TOK_IDENT) { expected(p, "a name"); return false; }
        if (strchr(nt->text, '.')) {
            error_at(p, nt->loc, "cannot assign to the dotted name '%s'", nt->text);
            return false;
        }
        PUSH(p, s->names, s->n_names, cap, nt->text);
        PUSH(p, s->name_locs, nl, capl, nt->loc);
        next(p);
        if (at_kind(p, TOK_COMMA)) { next(p); continue; }
        break;
    }
    if (!at_kind(p, TOK_ASSIGN)) {
        if (s->n_names == 1 && at_kind(p, TOK_LPAREN))
            error_at(p, s->loc, "a call's result must be assigned or returned (name = %s(...))", s->names[0]);
        else
            expected(p, "'='");
        return false;
    }
    next(p);
    s->expr = parse_expr(p);
    return s->expr != NULL;
}

static bool parse_stmts(struct parser *p, struct ast_stmt **out, int *n_out) {
    struct ast_stmt *v = NULL;
    int n = 0, cap = 0;
    bool ok = true;
    while (!at_kind(p, TOK_RBRACE) && !at_kind(p, TOK_EOF)) {
        struct ast_stmt s;
        if (parse_stmt(p, &s)) {
            PUSH(p, v, n, cap, s);
            // Statements on one line must be separated by a newline.
            const struct token *t = peek(p);
            if (t->kind != TOK_RBRACE && t->kind != TOK_EOF && !t->nl_before) {
                char got[128];
                tok_describe(t, got, sizeof got);
                error_at(p, t->loc, "expected a new line or '}' after the statement, got %s", got);
                ok = false;
                sync(p, starts_stmt);
            }
        } else {
            ok = false;
            sync(p, starts_stmt);
        }
    }
    *out = v;
    *n_out = n;
    return ok;
}

// ------------------------------------------------------------ items

enum item_ctx { CTX_FILE, CTX_MODEL, CTX_MODULE };

static bool parse_items(struct parser *p, enum item_ctx ctx, struct ast_item **out, int *n_out, bool top);

static bool parse_body_items(struct parser *p, enum item_ctx ctx, struct ast_item **out, int *n_out) {
    if (!expect(p, TOK_LBRACE, "'{'")) return false;
    if (!enter(p)) return false;
    parse_items(p, ctx, out, n_out, false);
    leave(p);
    return expect(p, TOK_RBRACE, "'}'");
}

static bool take_name(struct parser *p, struct ast_item *it, const char *what, bool allow_dots) {
    const struct token *t = peek(p);
    if (t->kind != TOK_IDENT) { expected(p, what); return false; }
    if (!allow_dots && strchr(t->text, '.')) {
        error_at(p, t->loc, "%s cannot be the dotted name '%s'", what, t->text);
        return false;
    }
    it->name = t->text;
    it->name_loc = t->loc;
    next(p);
    return true;
}

static const char *ctx_name(enum item_ctx c) { return c == CTX_FILE ? "at file level" : c == CTX_MODEL ? "in a model" : "in a module"; }

static bool parse_item(struct parser *p, enum item_ctx ctx, struct ast_item *it) {
    memset(it, 0, sizeof *it);
    it->n_outs = -1;
    const struct token *t = peek(p);
    it->loc = t->loc;
    if (t->kind != TOK_IDENT || t->kw == KW_NONE) {
        if (ctx == CTX_FILE) expected(p, "'import', 'module', 'def' or 'model'");
        else if (ctx == CTX_MODEL) expected(p, "'dim', 'param', 'let', 'def', 'entry' or 'if' in the model body");
        else expected(p, "'param', 'let', 'def' or 'if' in the module body");
        return false;
    }
    enum tok_kw kw = t->kw;
    bool file_only = kw == KW_IMPORT || kw == KW_MODULE || kw == KW_MODEL;
    bool body_only = kw == KW_PARAM || kw == KW_FROZEN || kw == KW_LET || kw == KW_IF || kw == KW_DIM || kw == KW_ENTRY;
    bool model_only = kw == KW_DIM || kw == KW_ENTRY || kw == KW_TRAIN || kw == KW_OPTIMIZER;
    if (kw == KW_UPDATE) {
        error_at(p, t->loc, "'update' is a statement of module methods (update NAME = value), not an item");
        return false;
    }
    if ((file_only && ctx != CTX_FILE) || (body_only && ctx == CTX_FILE) || (model_only && ctx != CTX_MODEL) ||
        kw == KW_RETURN || kw == KW_ELSE || kw == KW_TRUE || kw == KW_FALSE) {
        error_at(p, t->loc, "'%s' is not allowed %s", t->text, ctx_name(ctx));
        return false;
    }
    next(p);
    switch (kw) {
    case KW_IMPORT: {
        it->kind = I_IMPORT;
        if (!at_kind(p, TOK_STRING)) { expected(p, "a file name in quotes after 'import'"); return false; }
        it->path = next(p).text;
        return true;
    }
    case KW_MODULE: case KW_MODEL: {
        it->kind = kw == KW_MODULE ? I_MODULE : I_MODEL;
        if (!take_name(p, it, kw == KW_MODULE ? "a module name" : "a model name", false)) return false;
        if (at_kind(p, TOK_LPAREN)) {
            it->has_paren = true;
            if (!parse_params(p, &it->params, &it->n_params)) return false;
            for (int i = 0; i < it->n_params; i++)
                if (!it->params[i].is_config) {
                    error_at(p, it->params[i].loc, "parameter '%s' of %s '%s' needs a config kind (int, float, bool "
                             "or str)", it->params[i].name, kw == KW_MODULE ? "module" : "model", it->name);
                    return false;
                }
        }
        return parse_body_items(p, kw == KW_MODULE ? CTX_MODULE : CTX_MODEL, &it->items, &it->n_items);
    }
    case KW_DEF: case KW_ENTRY: case KW_TRAIN: {
        it->kind = kw == KW_DEF ? I_DEF : I_ENTRY;
        if (kw == KW_TRAIN) {
            // "train(...)": the keyword is also the entry's name.
            it->is_train = true;
            it->name = "train";
            it->name_loc = it->loc;
            if (!at_kind(p, TOK_LPAREN)) { expected(p, "'(' and the train entry's inputs after 'train'"); return false; }
        } else if (!take_name(p, it, kw == KW_DEF ? "a function name" : "an entry name", false)) {
            return false;
        }
        if (!parse_params(p, &it->params, &it->n_params)) return false;
        if (at_kind(p, TOK_ARROW)) {
            if (kw == KW_DEF) { error_at(p, peek(p)->loc, "only entries name their outputs with '->'"); return false; }
            next(p);
            if (!expect(p, TOK_LPAREN, "'(' after '->'")) return false;
            int cap = 0, capl = 0, nl = 0;
            it->n_outs = 0;
            while (!at_kind(p, TOK_RPAREN)) {
                const struct token *o = peek(p);
                if (o->kind != TOK_IDENT) { expected(p, "an output name"); return false; }
                PUSH(p, it->outs, it->n_outs, cap, o->text);
                PUSH(p, it->out_locs, nl, capl, o->loc);
                next(p);
                if (at_kind(p, TOK_COMMA)) { next(p); continue; }
                if (!at_kind(p, TOK_RPAREN)) { expected(p, "',' or ')' in the output names"); return false; }
            }
            next(p);
        }
        return parse_block(p, &it->body, &it->n_body);
    }
    case KW_DIM: {
        it->kind = I_DIM;
        int cap = 0;
        for (;;) {
            const struct token *nt = peek(p);
            if (nt->kind != TOK_IDENT || strchr(nt->text, '.')) { expected(p, "a dim name"); return false; }
            struct ast_dimdecl dd = { nt->text, nt->loc, NULL };
            next(p);
            if (at_kind(p, TOK_ASSIGN)) {
                next(p);
                dd.def = parse_expr(p);
                if (!dd.def) return false;
            }
            PUSH(p, it->dims, it->n_dims, cap, dd);
            if (!at_kind(p, TOK_COMMA)) break;
            next(p);
        }
        return true;
    }
    case KW_FROZEN: case KW_PARAM: {
        it->kind = I_PARAM;
        if (kw == KW_FROZEN) {
            it->frozen = true;
            if (!at_kw(p, KW_PARAM)) { expected(p, "'param' after 'frozen'"); return false; }
            next(p);
        }
        // Dotted names are the canonical form's full parameter names.
        if (!take_name(p, it, "a parameter name", ctx == CTX_MODEL)) return false;
        if (!expect(p, TOK_COLON, "':' and the parameter's type")) return false;
        it->type = parse_type(p);
        if (!it->type) return false;
        if (at_kind(p, TOK_ASSIGN)) {
            next(p);
            it->init = parse_expr(p);
            if (!it->init) return false;
        }
        return true;
    }
    case KW_OPTIMIZER: {
        it->kind = I_OPTIMIZER;
        if (!take_name(p, it, "an optimizer (sgd, adam or adamw)", false)) return false;
        if (!at_kind(p, TOK_LPAREN)) { expected(p, "'(' and the optimizer's hyperparameters (lr=...)"); return false; }
        struct ast_expr call;
        memset(&call, 0, sizeof call);
        if (!enter(p)) return false;
        struct ast_expr *ok = parse_args(p, &call);
        leave(p);
        if (!ok) return false;
        it->args = call.u.call.args;
        it->n_args = call.u.call.n_args;
        return true;
    }
    case KW_LET: {
        it->kind = I_LET;
        if (!take_name(p, it, "an instance name", false)) return false;
        if (!expect(p, TOK_ASSIGN, "'='")) return false;
        const struct token *c = peek(p);
        if (c->kind != TOK_IDENT) { expected(p, "a module name"); return false; }
        it->callee = c->text;
        it->callee_loc = c->loc;
        next(p);
        if (!at_kind(p, TOK_LPAREN)) { expected(p, "'(' and the module's config arguments"); return false; }
        struct ast_expr call;
        memset(&call, 0, sizeof call);
        if (!enter(p)) return false;
        struct ast_expr *ok = parse_args(p, &call);
        leave(p);
        if (!ok) return false;
        it->args = call.u.call.args;
        it->n_args = call.u.call.n_args;
        return true;
    }
    case KW_IF: {
        it->kind = I_IF;
        it->cond = parse_expr(p);
        if (!it->cond) return false;
        if (!parse_body_items(p, ctx, &it->then_i, &it->n_then)) return false;
        if (at_kw(p, KW_ELSE)) {
            next(p);
            if (at_kw(p, KW_IF)) {
                it->else_i = itr_arena_alloc(p->arena, sizeof *it->else_i);
                it->n_else = 1;
                if (!enter(p)) return false;
                bool ok = parse_item(p, ctx, it->else_i);
                leave(p);
                return ok;
            }
            if (!parse_body_items(p, ctx, &it->else_i, &it->n_else)) return false;
        }
        return true;
    }
    default:
        error_at(p, t->loc, "unexpected '%s'", t->text);
        return false;
    }
}

static bool parse_items(struct parser *p, enum item_ctx ctx, struct ast_item **out, int *n_out, bool top) {
    struct ast_item *v = NULL;
    int n = 0, cap = 0;
    bool ok = true;
    for (;;) {
        if (at_kind(p, TOK_EOF)) break;
        if (at_kind(p, TOK_RBRACE)) {
            if (!top) break;
            error_at(p, peek(p)->loc, "unexpected '}' at file level");
            next(p);
            ok = false;
            continue;
        }
        struct ast_item it;
        if (parse_item(p, ctx, &it)) {
            PUSH(p, v, n, cap, it);
            const struct token *t = peek(p);
            if (t->kind != TOK_RBRACE && t->kind != TOK_EOF && !t->nl_before) {
                char got[128];
                tok_describe(t, got, sizeof got);
                error_at(p, t->loc, "expected a new line after the %s, got %s",
                         it.kind == I_PARAM ? "parameter" : it.kind == I_DIM ? "dims" : "item", got);
                ok = false;
                sync(p, top ? starts_file_item : starts_item);
            }
        } else {
            ok = false;
            sync(p, top ? starts_file_item : starts_item);
        }
    }
    *out = v;
    *n_out = n;
    return ok;
}

struct ast_file *itr_text_parse(struct itr_arena *arena, struct itr_diags *d, const char *path, const char *text,
                                size_t len) {
    struct parser p;
    memset(&p, 0, sizeof p);
    p.arena = arena;
    p.d = d;
    int max = d->max_errors ? d->max_errors : 100;
    p.error_limit = d->n_errors + max;
    lexer_init(&p.lx, path, text, len, arena, d);
    struct ast_file *f = itr_arena_alloc(arena, sizeof *f);
    f->path = path;
    parse_items(&p, CTX_FILE, &f->items, &f->n_items, true);
    return f;
}
