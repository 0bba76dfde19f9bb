// Internal to the elaborator (elaborate.c: files, imports, instances,
// entries; eval.c: expressions, statements, calls, scans).
//
// Elaboration is template instantiation: a module's items run once per
// `let`, a function's body runs once per call, inlined into the graph being
// built. Config values are computed on the way; tensors are value ids in
// the current graph.
#ifndef ITR_TEXT_ELAB_H
#define ITR_TEXT_ELAB_H

#include "../text.h"
#include "ast.h"

// ------------------------------------------------------------ string map (arena-backed)

struct smap {
    const char **keys;
    void **vals;
    int cap, n;
};

void *smap_get(const struct smap *m, const char *key);
void  smap_put(struct itr_arena *a, struct smap *m, const char *key, void *val);

// ------------------------------------------------------------ values

enum vkind {
    V_ERR,        // an error was already reported; propagate silently
    V_TENSOR,     // a value id of the current graph
    V_INT, V_DIM, // compile-time integer; V_DIM is symbolic (never a constant)
    V_FLOAT, V_BOOL, V_STR, V_DTYPE,
    V_LIST,       // [a, b, ...] of config values
    V_TLIT,       // a literal tensor f32[2]{...}
    V_MULTI,      // the results of a multi-result call
};

struct tlit {
    enum itr_dtype dtype;
    int rank;
    int64_t shape[ITR_MAX_RANK];
    int64_t n;
    double *f;      // float and bool elements
    int64_t *i;     // integer elements (exact)
};

struct val {
    enum vkind k;
    union {
        int32_t t;
        int64_t i;
        itr_dim dim;
        double f;
        bool b;
        const char *s;
        enum itr_dtype dt;
        struct { struct val *v; int n; } list;   // V_LIST, V_MULTI
        const struct tlit *tl;
    } u;
};

// ------------------------------------------------------------ instances

// One module instance (or the model itself, path ""): what its names mean.
struct inst {
    const char *path;              // "" for the model, "txt.rnn"
    const char *module_name;
    const struct ast_item *def;    // the module or model item
    struct inst *parent;
    struct smap names;             // every member name -> struct member *
};

enum member_kind { M_CONFIG, M_PARAM, M_INST, M_FUNC };

struct member {
    enum member_kind kind;
    struct itr_loc loc;
    struct val cfg;                // M_CONFIG
    int32_t param;                 // M_PARAM: program param index
    struct inst *sub;              // M_INST
    const struct ast_item *fn;     // M_FUNC: def or entry
};

// ------------------------------------------------------------ files and the session

struct lfile {
    char *key;                     // canonical path (realpath), identity for imports
    const char *path;              // as registered with the diags (locations)
    char *dir;                     // folder for relative imports
    struct ast_file *ast;
    bool loading;
};

struct sess {
    struct itr_arena *arena;       // AST and all elaboration scratch
    struct itr_diags *d;
    const struct itr_parse_options *opt;
    struct itr_program *prog;
    struct lfile **files; int n_files, cap_files;
    struct lfile **stack; int n_stack, cap_stack;          // imports being loaded
    struct smap modules, funcs;                            // name -> const struct ast_item *
    struct smap graph_names;                               // names taken by graphs (entries reserved)
    const struct ast_item **inst_stack; int n_inst_stack, cap_inst_stack;   // modules being instantiated
    struct inst *root;
    const struct ast_item **entries; int n_entries, cap_entries;   // the model's, in order
    int scan_counter;
    // Training (docs/ir.md "Training"): the model's train entry and
    // optimizer items, and while the train entry is elaborated, its graph,
    // the value of its seed input and the state updates made so far.
    const struct ast_item *train_item, *optimizer_item;
    bool training;
    struct gctx *train_gc;
    int32_t train_seed;                                    // -1 until rng_seed is used
    int32_t *upd_param, *upd_value; int n_upd, cap_upd;    // latest value per updated param
};

// A graph under construction. Body graphs turn the parameters they read
// into extra inputs (captures), which the scan node passes in.
struct gctx {
    struct itr_graph *g;
    struct gctx *outer;            // NULL for entry graphs
    int32_t *cap_param, *cap_value; int n_cap, cap_cap;
};

// One activation: a function call being inlined, an entry, or a config
// context (module items, with g == NULL).
struct frame {
    struct sess *s;
    struct gctx *gc;               // NULL: no tensors here
    struct inst *inst;             // owner of the function; NULL for free functions
    const char *scope;             // node scope (instance path) or NULL
    struct smap env;               // locals and parameters: name -> struct val *
    const struct ast_item *fn;     // function being run, or NULL
    struct frame *caller;
    struct itr_loc call_loc;
    int depth;
};

#define ITR_TEXT_MAX_CALL_DEPTH 64

// What a function body returned.
struct ret {
    struct val *v;
    const char **names;            // the identifier returned at each position, or NULL
    int n;
    bool has;                      // a return statement ran
    struct itr_loc loc;
};

// eval.c
struct val eval_expr(struct frame *f, const struct ast_expr *e);
void exec_stmts(struct frame *f, const struct ast_stmt *s, int n, struct ret *r);
bool eval_type(struct frame *f, const struct ast_type *t, struct itr_type *out);
// Checks and converts a config value to a declared kind (int, float, ...).
bool val_to_config(struct frame *f, enum ast_config_kind k, struct val v, struct itr_loc loc, const char *what,
                   struct val *out);
// Binds the arguments of fn and runs its body; the caller's gc is used.
struct val invoke(struct frame *caller, struct gctx *gc, const struct ast_item *fn, struct inst *owner,
                  const struct val *pos, const struct itr_loc *pos_locs, int n_pos,
                  const char *const *kw, const struct val *kw_vals, const struct itr_loc *kw_locs, int n_kw,
                  struct itr_loc call_loc);
const char *vkind_name(enum vkind k);
void ferr(struct frame *f, struct itr_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void call_notes(struct frame *f);
// Resolves "a.b.c" through instance members of in; *owner gets the
// instance holding the member. NULL if there is no such member.
struct member *resolve_member_path(struct inst *in, const char *path, struct inst **owner);
const char *fn_display_name(const struct ast_item *fn, const struct inst *owner, char *buf, size_t n);
// The value a state update last gave program param p in the train graph, or -1.
int32_t pending_update(const struct sess *s, int32_t p);
void val_bind(struct frame *f, const char *name, struct val v);

#endif
