#include "lexer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[TOK_KIND_COUNT] = {
    "end of file", "identifier", "integer", "number", "string",
    "'('", "')'", "'{'", "'}'", "'['", "']'",
    "','", "':'", "'='", "'->'",
    "'=='", "'!='", "'<'", "'<='", "'>'", "'>='", "'&&'", "'||'", "'!'",
    "'+'", "'-'", "'*'", "'/'", "'@'",
};

const char *tok_kind_name(enum tok_kind k) { return (unsigned)k < TOK_KIND_COUNT ? kind_names[k] : "?"; }

void tok_describe(const struct token *t, char *buf, size_t n) {
    switch (t->kind) {
    case TOK_IDENT: snprintf(buf, n, "'%.60s%s'", t->text, t->len > 60 ? "..." : ""); break;
    case TOK_INT: snprintf(buf, n, "integer %lld", (long long)t->ival); break;
    case TOK_FLOAT: snprintf(buf, n, "number %g", t->fval); break;
    case TOK_STRING: snprintf(buf, n, "string \"%.40s%s\"", t->text, t->len > 40 ? "..." : ""); break;
    default: snprintf(buf, n, "%s", tok_kind_name(t->kind)); break;
    }
}

void lexer_init(struct lexer *lx, const char *file, const char *src, size_t len, struct itr_arena *arena,
                struct itr_diags *diags) {
    memset(lx, 0, sizeof *lx);
    lx->src = src;
    lx->len = len;
    lx->line = 1;
    lx->file = file;
    lx->arena = arena;
    lx->diags = diags;
    // Editors on some systems start UTF-8 files with a byte-order mark.
    if (len >= 3 && memcmp(src, "\xef\xbb\xbf", 3) == 0) lx->pos = lx->line_start = 3;
}

static struct itr_loc here(const struct lexer *lx, size_t pos) {
    return (struct itr_loc){ lx->file, lx->line, (int)(pos - lx->line_start + 1) };
}

static void lex_error(struct lexer *lx, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lex_error(struct lexer *lx, size_t pos, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    itr_diag_vreport(lx->diags, ITR_SEV_ERROR, here(lx, pos), fmt, ap);
    va_end(ap);
    lx->n_errors++;
}

// Length (1-4) of the well-formed UTF-8 sequence at s[0..n), or 0. Rejects
// overlong forms, surrogates and code points above U+10FFFF.
static int utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if ((size_t)len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    uint32_t v = c & (0x7f >> len);
    for (int i = 1; i < len; i++) v = (v << 6) | (s[i] & 0x3f);
    *cp = v;
    return len;
}

static bool is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_ident_char(int c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static int at(const struct lexer *lx, size_t i) { return i < lx->len ? (unsigned char)lx->src[i] : -1; }

static void newline(struct lexer *lx, size_t pos_after) {
    lx->line++;
    lx->line_start = pos_after;
    lx->pending_nl = true;
}

// Skips a comment body, checking that it is valid UTF-8.
static void skip_comment(struct lexer *lx) {
    const unsigned char *s = (const unsigned char *)lx->src;
    size_t i = lx->pos;
    while (i < lx->len && s[i] != '\n') {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        int k = utf8_seq(s + i, lx->len - i, &cp);
        if (!k) { lex_error(lx, i, "invalid UTF-8 byte 0x%02x in comment", s[i]); k = 1; }
        i += (size_t)k;
    }
    lx->pos = i;
}

static void skip_space(struct lexer *lx) {
    for (;;) {
        int c = at(lx, lx->pos);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') lx->pos++;
        else if (c == '\n') { lx->pos++; newline(lx, lx->pos); }
        else if (c == '#') skip_comment(lx);
        else return;
    }
}

static const struct { const char *w; enum tok_kw kw; } keywords[] = {
    { "import", KW_IMPORT }, { "model", KW_MODEL }, { "module", KW_MODULE }, { "def", KW_DEF },
    { "entry", KW_ENTRY }, { "let", KW_LET }, { "param", KW_PARAM }, { "frozen", KW_FROZEN },
    { "dim", KW_DIM }, { "return", KW_RETURN }, { "if", KW_IF }, { "else", KW_ELSE },
    { "true", KW_TRUE }, { "false", KW_FALSE }, { "train", KW_TRAIN }, { "optimizer", KW_OPTIMIZER },
    { "update", KW_UPDATE },
};

static void lex_ident(struct lexer *lx, struct token *t) {
    size_t start = lx->pos, i = lx->pos;
    bool dotted = false;
    for (;;) {
        while (is_ident_char(at(lx, i))) i++;
        // A dot joins two names only with no space on either side.
        if (at(lx, i) == '.' && is_ident_start(at(lx, i + 1))) { i++; dotted = true; continue; }
        if (at(lx, i) == '.') lex_error(lx, i, "expected a name after '.'");
        break;
    }
    t->kind = TOK_IDENT;
    t->len = i - start;
    t->text = itr_arena_strndup(lx->arena, lx->src + start, t->len);
    if (!dotted && t->len <= 9)
        for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
            if (strcmp(t->text, keywords[k].w) == 0) t->kw = keywords[k].kw;
    lx->pos = i;
    if (at(lx, i) == '.') lx->pos++;   // the stray dot was reported
}

static void lex_number(struct lexer *lx, struct token *t) {
    size_t start = lx->pos, i = lx->pos;
    bool is_float = false, bad = false;
    while (is_digit(at(lx, i))) i++;
    if (at(lx, i) == '.') {
        is_float = true;
        i++;
        if (!is_digit(at(lx, i))) bad = true;
        while (is_digit(at(lx, i))) i++;
    }
    if (at(lx, i) == 'e' || at(lx, i) == 'E') {
        is_float = true;
        i++;
        if (at(lx, i) == '+' || at(lx, i) == '-') i++;
        if (!is_digit(at(lx, i))) bad = true;
        while (is_digit(at(lx, i))) i++;
    }
    // "12abc" or "1.2.3" is one bad token, not a number followed by a name.
    while (is_ident_char(at(lx, i)) || (at(lx, i) == '.' && is_digit(at(lx, i + 1)))) { i++; bad = true; }
    size_t n = i - start;
    lx->pos = i;
    t->kind = is_float ? TOK_FLOAT : TOK_INT;
    if (bad) {
        lex_error(lx, start, "invalid number '%.*s%s'", n > 40 ? 40 : (int)n, lx->src + start, n > 40 ? "..." : "");
        return;
    }
    char small[64];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    memcpy(buf, lx->src + start, n);
    buf[n] = 0;
    errno = 0;
    if (is_float) {
        t->fval = strtod(buf, NULL);
        if (isinf(t->fval)) { lex_error(lx, start, "number out of range: %.40s", buf); t->fval = 0; }
    } else {
        unsigned long long v = strtoull(buf, NULL, 10);
        // 2^63 is let through for the parser to accept after a minus sign:
        // the printer writes INT64_MIN as -9223372036854775808.
        t->int_2p63 = errno != ERANGE && v == (unsigned long long)INT64_MAX + 1;
        if (errno == ERANGE || (v > (unsigned long long)INT64_MAX && !t->int_2p63)) {
            lex_error(lx, start, "integer literal out of range (more than 64 bits): %.40s%s", buf, n > 40 ? "..." : "");
            v = 0;
        }
        t->ival = t->int_2p63 ? INT64_MIN : (int64_t)v;
        t->fval = (double)v;
    }
    if (buf != small) free(buf);
}

static void lex_string(struct lexer *lx, struct token *t) {
    const unsigned char *s = (const unsigned char *)lx->src;
    size_t start = lx->pos, i = lx->pos + 1;
    // Decoded text is never longer than the source bytes.
    size_t cap = 0;
    for (size_t k = i; k < lx->len && s[k] != '"' && s[k] != '\n'; k++, cap++)
        if (s[k] == '\\' && k + 1 < lx->len && s[k + 1] != '\n') k++;
    char *out = itr_arena_alloc(lx->arena, cap + 1);
    size_t w = 0;
    t->kind = TOK_STRING;
    for (;;) {
        if (i >= lx->len || s[i] == '\n') {
            lex_error(lx, start, "unterminated string");
            break;
        }
        unsigned c = s[i];
        if (c == '"') { i++; break; }
        if (c == '\\') {
            int e = at(lx, i + 1);
            char r = 0;
            switch (e) {
            case '"': r = '"'; break;
            case '\\': r = '\\'; break;
            case 'n': r = '\n'; break;
            case 't': r = '\t'; break;
            default:
                if (e >= 0x20 && e < 0x7f) lex_error(lx, i, "unknown escape '\\%c' in string", e);
                else lex_error(lx, i, "unknown escape in string");
                break;
            }
            if (r && w < cap) out[w++] = r;
            i += (e == '\n' || e < 0) ? 1 : 2;
            continue;
        }
        if (c == 0) { lex_error(lx, i, "NUL byte in string"); i++; continue; }
        if (c < 0x80) { if (w < cap) out[w++] = (char)c; i++; continue; }
        uint32_t cp;
        int k = utf8_seq(s + i, lx->len - i, &cp);
        if (!k) { lex_error(lx, i, "invalid UTF-8 byte 0x%02x in string", c); i++; continue; }
        for (int j = 0; j < k && w < cap; j++) out[w++] = (char)s[i + (size_t)j];
        i += (size_t)k;
    }
    out[w] = 0;
    t->text = out;
    t->len = w;
    lx->pos = i;
}

static void lex_one(struct lexer *lx, struct token *t) {
    memset(t, 0, sizeof *t);
    for (;;) {
        skip_space(lx);
        t->loc = here(lx, lx->pos);
        t->nl_before = lx->pending_nl;
        int c = at(lx, lx->pos);
        if (c < 0) { t->kind = TOK_EOF; t->text = ""; return; }
        if (is_ident_start(c)) { lex_ident(lx, t); break; }
        if (is_digit(c)) { lex_number(lx, t); break; }
        if (c == '"') { lex_string(lx, t); break; }
        int d = at(lx, lx->pos + 1);
        enum tok_kind k = TOK_EOF;
        int w = 1;
        switch (c) {
        case '(': k = TOK_LPAREN; break;
        case ')': k = TOK_RPAREN; break;
        case '{': k = TOK_LBRACE; break;
        case '}': k = TOK_RBRACE; break;
        case '[': k = TOK_LBRACK; break;
        case ']': k = TOK_RBRACK; break;
        case ',': k = TOK_COMMA; break;
        case ':': k = TOK_COLON; break;
        case '+': k = TOK_PLUS; break;
        case '*': k = TOK_STAR; break;
        case '/': k = TOK_SLASH; break;
        case '@': k = TOK_AT; break;
        case '=': if (d == '=') { k = TOK_EQ; w = 2; } else k = TOK_ASSIGN; break;
        case '!': if (d == '=') { k = TOK_NE; w = 2; } else k = TOK_BANG; break;
        case '<': if (d == '=') { k = TOK_LE; w = 2; } else k = TOK_LT; break;
        case '>': if (d == '=') { k = TOK_GE; w = 2; } else k = TOK_GT; break;
        case '-': if (d == '>') { k = TOK_ARROW; w = 2; } else k = TOK_MINUS; break;
        case '&': if (d == '&') { k = TOK_ANDAND; w = 2; } break;
        case '|': if (d == '|') { k = TOK_OROR; w = 2; } break;
        default: break;
        }
        if (k != TOK_EOF) {
            t->kind = k;
            lx->pos += (size_t)w;
            break;
        }
        // Not a token: report and skip one character (a whole UTF-8 sequence).
        const unsigned char *s = (const unsigned char *)lx->src + lx->pos;
        uint32_t cp = 0;
        int n = utf8_seq(s, lx->len - lx->pos, &cp);
        if (n == 0) lex_error(lx, lx->pos, "invalid UTF-8 byte 0x%02x", s[0]);
        else if (c == 0) lex_error(lx, lx->pos, "unexpected NUL byte");
        else if (c == '&' || c == '|') lex_error(lx, lx->pos, "unexpected character '%c' (did you mean '%c%c'?)", c, c, c);
        else if (c == '.') lex_error(lx, lx->pos, "unexpected '.' (numbers need a digit before the point: 0.5)");
        else if (cp >= 0x20 && cp < 0x7f) lex_error(lx, lx->pos, "unexpected character '%c'", (int)cp);
        else lex_error(lx, lx->pos, "unexpected character U+%04X", (unsigned)cp);
        lx->pos += (size_t)(n ? n : 1);
    }
    lx->pending_nl = false;
}

const struct token *lex_peek(struct lexer *lx, int k) {
    while (lx->n_la <= k) {
        if (lx->n_la > 0 && lx->la[lx->n_la - 1].kind == TOK_EOF) {
            lx->la[lx->n_la] = lx->la[lx->n_la - 1];
            lx->n_la++;
            continue;
        }
        lex_one(lx, &lx->la[lx->n_la++]);
    }
    return &lx->la[k];
}

struct token lex_next(struct lexer *lx) {
    lex_peek(lx, 0);
    struct token t = lx->la[0];
    memmove(&lx->la[0], &lx->la[1], (size_t)(lx->n_la - 1) * sizeof lx->la[0]);
    lx->n_la--;
    return t;
}
