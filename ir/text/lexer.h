// Tokens of the .ir text format (docs/ir.md, "Lexical structure").
//
// The lexer streams: it produces tokens on demand with a few tokens of
// lookahead, so memory does not grow with the input (a 10 MB line costs
// nothing beyond the source text). Lexical errors go to diags and the bad
// bytes are skipped; the parser only ever sees well-formed tokens.
#ifndef ITR_TEXT_LEXER_H
#define ITR_TEXT_LEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../arena.h"
#include "../diag.h"

enum tok_kind {
    TOK_EOF, TOK_IDENT, TOK_INT, TOK_FLOAT, TOK_STRING,
    TOK_LPAREN, TOK_RPAREN, TOK_LBRACE, TOK_RBRACE, TOK_LBRACK, TOK_RBRACK,
    TOK_COMMA, TOK_COLON, TOK_ASSIGN, TOK_ARROW,
    TOK_EQ, TOK_NE, TOK_LT, TOK_LE, TOK_GT, TOK_GE, TOK_ANDAND, TOK_OROR, TOK_BANG,
    TOK_PLUS, TOK_MINUS, TOK_STAR, TOK_SLASH, TOK_AT,
    TOK_KIND_COUNT
};

// Words that start items and statements. They are contextual: the parser
// treats them as keywords only where an item or statement begins, so that
// module authors may still call a config parameter `dim` (nn.ir does).
enum tok_kw {
    KW_NONE, KW_IMPORT, KW_MODEL, KW_MODULE, KW_DEF, KW_ENTRY, KW_LET, KW_PARAM, KW_FROZEN,
    KW_DIM, KW_RETURN, KW_IF, KW_ELSE, KW_TRUE, KW_FALSE, KW_TRAIN, KW_OPTIMIZER, KW_UPDATE
};

struct token {
    enum tok_kind kind;
    enum tok_kw kw;          // for TOK_IDENT
    struct itr_loc loc;
    bool nl_before;          // a newline separates it from the previous token
    const char *text;        // IDENT: the (dotted) name; STRING: decoded contents (arena)
    size_t len;              // length of text
    int64_t ival;            // INT
    bool int_2p63;           // INT: the literal is 2^63, INT64_MIN's magnitude: valid only negated (ival INT64_MIN)
    double fval;             // FLOAT (INT tokens also set it)
};

#define LEX_LOOKAHEAD 4

struct lexer {
    const char *src;
    size_t len, pos;
    int line;
    size_t line_start;
    const char *file;        // stable path pointer used in locations
    struct itr_diags *diags;
    struct itr_arena *arena;
    struct token la[LEX_LOOKAHEAD];
    int n_la;
    bool pending_nl;
    int n_errors;            // errors reported by this lexer
};

void lexer_init(struct lexer *lx, const char *file, const char *src, size_t len, struct itr_arena *arena,
                struct itr_diags *diags);
// The k-th token ahead (k < LEX_LOOKAHEAD); EOF repeats at the end.
const struct token *lex_peek(struct lexer *lx, int k);
struct token lex_next(struct lexer *lx);
const char *tok_kind_name(enum tok_kind k);
// A token as the user wrote it, for messages ("'foo'", "end of file").
void tok_describe(const struct token *t, char *buf, size_t n);

#endif
