// Syntax tree of one .ir file, as the parser produces it and the elaborator
// reads it. Everything lives in one arena owned by the caller.
//
// Binary operators of one precedence level form one flat chain node
// (operands plus operators), so that a long sum `a + b + c + ...` never
// becomes a deep tree that recursion over it could overflow on.
#ifndef ITR_TEXT_AST_H
#define ITR_TEXT_AST_H

#include "../ir.h"
#include "lexer.h"

enum ast_expr_kind {
    E_NAME,      // x, rnn.last, f32 (as an attribute value)
    E_INT, E_FLOAT, E_STR, E_BOOL,
    E_CALL,      // f(args, k=v)
    E_CHAIN,     // operands[0] op[0] operands[1] op[1] ... (one precedence level, left-assoc)
    E_NEG,       // -e
    E_NOT,       // !e
    E_LIST,      // [a, b, ...]
    E_TENSOR,    // f32[2, 3]{1, 2, ...}: a literal tensor (the canonical form of constants)
};

struct ast_expr;

struct ast_arg {
    const char *name;        // keyword argument name, or NULL for positional
    struct itr_loc loc;
    struct ast_expr *value;
};

struct ast_expr {
    enum ast_expr_kind kind;
    struct itr_loc loc;
    union {
        const char *name;                                                    // E_NAME
        int64_t i;                                                           // E_INT
        double f;                                                            // E_FLOAT
        struct { const char *s; size_t len; } str;                           // E_STR
        bool b;                                                              // E_BOOL
        struct { const char *callee; struct ast_arg *args; int n_args; } call;
        struct {
            struct ast_expr **operands; int n;                               // n >= 2
            enum tok_kind *ops; struct itr_loc *op_locs;                     // n - 1 of each
        } chain;
        struct ast_expr *operand;                                            // E_NEG, E_NOT
        struct { struct ast_expr **items; int n; } list;
        struct {
            enum itr_dtype dtype;
            struct ast_expr **dims; int rank;
            struct ast_expr **vals; int n_vals;                              // E_INT/E_FLOAT/E_BOOL/E_NAME (inf, nan), maybe E_NEG
        } tensor;
    } u;
};

struct ast_type {
    enum itr_dtype dtype;
    struct ast_expr **dims; int rank;
    struct itr_loc loc;
};

enum ast_config_kind { CK_INT, CK_FLOAT, CK_BOOL, CK_STR };

// A parameter of a module, model, function or entry. Config parameters have
// a kind; tensor parameters have an optional type.
struct ast_param {
    const char *name;
    struct itr_loc loc;
    bool is_config;
    enum ast_config_kind ckind;   // config
    struct ast_type *type;        // tensor: NULL = untyped
    struct ast_expr *def;         // config default, or NULL
};

enum ast_stmt_kind { S_ASSIGN, S_RETURN, S_IF, S_UPDATE };

struct ast_stmt {
    enum ast_stmt_kind kind;
    struct itr_loc loc;
    // S_ASSIGN: names = expr; S_RETURN: exprs; S_UPDATE: update names[0] = expr
    const char **names; struct itr_loc *name_locs; int n_names;
    struct ast_expr *expr;
    struct ast_expr **exprs; int n_exprs;
    // S_IF
    struct ast_expr *cond;
    struct ast_stmt *then_s; int n_then;
    struct ast_stmt *else_s; int n_else;
};

enum ast_item_kind { I_IMPORT, I_MODULE, I_MODEL, I_DEF, I_ENTRY, I_DIM, I_PARAM, I_LET, I_IF, I_OPTIMIZER };

struct ast_dimdecl {
    const char *name;
    struct itr_loc loc;
    struct ast_expr *def;     // default, or NULL
};

struct ast_item {
    enum ast_item_kind kind;
    struct itr_loc loc;       // the keyword
    const char *name;         // module/model/def/entry/param/let name
    struct itr_loc name_loc;
    const char *path;         // I_IMPORT
    // I_MODULE, I_MODEL: config params and body; I_DEF, I_ENTRY: params and statements
    struct ast_param *params; int n_params;
    bool has_paren;           // the header had "(...)"
    struct ast_item *items; int n_items;
    struct ast_stmt *body; int n_body;
    const char **outs; struct itr_loc *out_locs; int n_outs;   // I_ENTRY "-> (a, b)"; n_outs -1: absent
    bool is_train;            // I_ENTRY: the `train(...)` entry (name "train")
    // I_DIM
    struct ast_dimdecl *dims; int n_dims;
    // I_PARAM
    struct ast_type *type;
    struct ast_expr *init;    // NULL: zeros
    bool frozen;
    // I_LET: the module and its config arguments; I_OPTIMIZER: name is the
    // optimizer's kind ("adam"), args its hyperparameters
    const char *callee; struct itr_loc callee_loc;
    struct ast_arg *args; int n_args;
    // I_IF: cond, then items, else items
    struct ast_expr *cond;
    struct ast_item *then_i; int n_then;
    struct ast_item *else_i; int n_else;
};

struct ast_file {
    const char *path;         // as given (stable, registered with the diags)
    struct ast_item *items; int n_items;
};

// Parses one file's text into an AST in arena. Errors go to d (the text must
// be registered there already for caret display). Returns the (possibly
// partial) tree; check d's error count to know whether it is usable.
struct ast_file *itr_text_parse(struct itr_arena *arena, struct itr_diags *d, const char *path,
                                const char *text, size_t len);

// Deepest nesting of parentheses, brackets, blocks and unary operators the
// parser accepts before reporting an error (protects the C stack).
#define ITR_TEXT_MAX_DEPTH 200

#endif
