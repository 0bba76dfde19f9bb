// The .ir front end's driver: files and imports, the model and its module
// instances (config, parameters, dims), entries, overrides; then the
// verifier. Expressions and calls are in eval.c.
#include "elab.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../fileio.h"

static const struct itr_parse_options no_options;

#define MAX_IMPORT_DEPTH 64
#define MAX_INSTANCE_DEPTH 64

// ------------------------------------------------------------ paths

static char *path_join(struct itr_arena *a, const char *dir, const char *name) {
    if (!dir || !dir[0] || name[0] == '/') return itr_arena_strdup(a, name);
    size_t dl = strlen(dir), n = dl + strlen(name) + 2;
    char *s = itr_arena_alloc(a, n);
    snprintf(s, n, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
    return s;
}

static char *dir_of(struct itr_arena *a, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return itr_arena_strdup(a, "");
    if (slash == path) return itr_arena_strdup(a, "/");
    return itr_arena_strndup(a, path, (size_t)(slash - path));
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Identity of a file for "import twice is harmless" and cycle detection.
static char *canonical(struct itr_arena *a, const char *path) {
    char *r = realpath(path, NULL);
    if (!r) return itr_arena_strdup(a, path);
    char *c = itr_arena_strdup(a, r);
    free(r);
    return c;
}

static void *push_ptr(struct itr_arena *a, void *arr, int *n, int *cap, void *v) {
    void **p = arr;
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        void **q = itr_arena_alloc(a, (size_t)ncap * sizeof *q);
        if (*n) memcpy(q, p, (size_t)*n * sizeof *q);
        p = q;
        *cap = ncap;
    }
    p[(*n)++] = v;
    return p;
}

// ------------------------------------------------------------ files and imports

static void load_file(struct sess *s, const char *display, const char *key, const char *text, size_t len);

static struct lfile *find_file(struct sess *s, const char *key) {
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i]->key, key) == 0) return s->files[i];
    return NULL;
}

static void import_file(struct sess *s, struct lfile *from, const struct ast_item *it) {
    const struct itr_parse_options *o = s->opt;
    const char *cands[2 + 64];
    int nc = 0;
    if (it->path[0] == '/') cands[nc++] = it->path;
    else {
        cands[nc++] = path_join(s->arena, from->dir, it->path);
        for (int i = 0; i < o->n_include_dirs && nc < 64; i++) cands[nc++] = path_join(s->arena, o->include_dirs[i], it->path);
        if (!o->no_default_models_dir) cands[nc++] = path_join(s->arena, ITR_MODELS_DIR, it->path);
    }
    const char *found = NULL;
    for (int i = 0; i < nc && !found; i++)
        if (is_file(cands[i])) found = cands[i];
    if (!found) {
        char looked[2048];
        size_t w = 0;
        looked[0] = 0;
        for (int i = 0; i < nc && w < sizeof looked; i++) {
            int r = snprintf(looked + w, sizeof looked - w, "%s%s", i ? ", " : "", cands[i]);
            if (r > 0) w += (size_t)r;
        }
        itr_diag_error(s->d, it->loc, "cannot find imported file \"%s\" (looked for %s)", it->path, looked);
        return;
    }
    char *key = canonical(s->arena, found);
    struct lfile *old = find_file(s, key);
    if (old) {
        if (!old->loading) return;   // already imported: harmless
        char chain[2048];
        size_t w = 0;
        chain[0] = 0;
        int start = 0;
        for (int i = 0; i < s->n_stack; i++)
            if (s->stack[i] == old) start = i;
        for (int i = start; i < s->n_stack && w < sizeof chain; i++) {
            int r = snprintf(chain + w, sizeof chain - w, "%s -> ", s->stack[i]->path);
            if (r > 0) w += (size_t)r;
        }
        if (w < sizeof chain) snprintf(chain + w, sizeof chain - w, "%s", old->path);
        itr_diag_error(s->d, it->loc, "import cycle: %s", chain);
        return;
    }
    if (s->n_stack >= MAX_IMPORT_DEPTH) {
        itr_diag_error(s->d, it->loc, "imports nested more than %d deep", MAX_IMPORT_DEPTH);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!itr_file_read_all(found, &buf, &len, s->d)) return;
    load_file(s, found, key, (const char *)buf, len);
    free(buf);
}

static void defined_twice(struct sess *s, const char *what, const char *name, struct itr_loc loc, struct itr_loc first) {
    itr_diag_error(s->d, loc, "duplicate definition of %s '%s'", what, name);
    itr_diag_note(s->d, first, "'%s' was first defined here", name);
}

static void register_defs(struct sess *s, struct lfile *lf) {
    for (int i = 0; i < lf->ast->n_items; i++) {
        const struct ast_item *it = &lf->ast->items[i];
        if (it->kind != I_MODULE && it->kind != I_DEF) continue;
        const struct ast_item *m = smap_get(&s->modules, it->name);
        const struct ast_item *f = smap_get(&s->funcs, it->name);
        if (m || f) {
            defined_twice(s, it->kind == I_MODULE ? "module" : "function", it->name, it->name_loc,
                          (m ? m : f)->name_loc);
            continue;
        }
        enum itr_op op;
        if (it->kind == I_DEF && itr_op_lookup(it->name, &op)) {
            itr_diag_error(s->d, it->name_loc, "function '%s' has the name of a primitive op, which calls would "
                           "reach first; choose another name", it->name);
            continue;
        }
        smap_put(s->arena, it->kind == I_MODULE ? &s->modules : &s->funcs, it->name, (void *)it);
    }
}

static void load_file(struct sess *s, const char *display, const char *key, const char *text, size_t len) {
    struct lfile *lf = itr_arena_alloc(s->arena, sizeof *lf);
    lf->key = itr_arena_strdup(s->arena, key);
    lf->path = itr_diags_add_source(s->d, display, text, len);
    lf->dir = dir_of(s->arena, display);
    lf->loading = true;
    s->files = push_ptr(s->arena, s->files, &s->n_files, &s->cap_files, lf);
    s->stack = push_ptr(s->arena, s->stack, &s->n_stack, &s->cap_stack, lf);
    lf->ast = itr_text_parse(s->arena, s->d, lf->path, text, len);
    for (int i = 0; i < lf->ast->n_items; i++)
        if (lf->ast->items[i].kind == I_IMPORT) import_file(s, lf, &lf->ast->items[i]);
    register_defs(s, lf);
    lf->loading = false;
    s->n_stack--;
}

// ------------------------------------------------------------ overrides

struct override {
    const char *name, *value, *text;
    bool used;
    int data;   // index into the parse options' data_overrides, or -1 for a -D override
};

struct ovr_set {
    struct override *v;
    int n;
};

static bool parse_overrides(struct sess *s, struct ovr_set *o) {
    const struct itr_parse_options *opt = s->opt;
    o->n = 0;
    int n_all = opt->n_overrides + opt->n_data_overrides;
    o->v = itr_arena_alloc(s->arena, (size_t)(n_all ? n_all : 1) * sizeof *o->v);
    bool ok = true;
    for (int i = 0; i < n_all; i++) {
        bool data = i >= opt->n_overrides;
        const char *t = data ? opt->data_overrides[i - opt->n_overrides] : opt->overrides[i];
        const char *eq = t ? strchr(t, '=') : NULL;
        if (!eq || eq == t) {
            itr_diag_error(s->d, ITR_NOLOC, "override '%s' is not of the form NAME=VALUE", t ? t : "(null)");
            ok = false;
            continue;
        }
        o->v[o->n++] = (struct override){ itr_arena_strndup(s->arena, t, (size_t)(eq - t)), eq + 1, t, false,
                                          data ? i - opt->n_overrides : -1 };
    }
    return ok;
}

// The last -D override of name, else the last data-set value of it.
static struct override *find_override(struct sess *s, struct ovr_set *o, const char *name) {
    struct override *r = NULL, *rd = NULL;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->v[i].name, name) == 0) {
            if (o->v[i].data < 0) r = &o->v[i];
            else rd = &o->v[i];
        }
    if (!r) r = rd;
    if (r)
        for (int i = 0; i < o->n; i++)
            if (strcmp(o->v[i].name, name) == 0) o->v[i].used = true;
    if (r && r->data >= 0 && s->opt->data_used) s->opt->data_used[r->data] = true;
    return r;
}

static bool parse_int_text(const char *t, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (!*t || *end || errno) return false;
    *out = v;
    return true;
}

static bool override_value(struct sess *s, const struct override *ov, enum ast_config_kind k, struct val *out) {
    static const char *const kinds[] = { "int", "float", "bool", "str" };
    int64_t i;
    char *end;
    switch (k) {
    case CK_INT:
        if (parse_int_text(ov->value, &i)) { *out = (struct val){ .k = V_INT, .u.i = i }; return true; }
        break;
    case CK_FLOAT: {
        errno = 0;
        double x = strtod(ov->value, &end);
        if (*ov->value && !*end && !errno) { *out = (struct val){ .k = V_FLOAT, .u.f = x }; return true; }
        break;
    }
    case CK_BOOL:
        if (strcmp(ov->value, "true") == 0 || strcmp(ov->value, "false") == 0) {
            *out = (struct val){ .k = V_BOOL, .u.b = ov->value[0] == 't' };
            return true;
        }
        break;
    case CK_STR: *out = (struct val){ .k = V_STR, .u.s = ov->value }; return true;
    }
    itr_diag_error(s->d, ITR_NOLOC, "override '%s': '%s' is a config parameter of kind %s", ov->text, ov->name, kinds[k]);
    return false;
}

// ------------------------------------------------------------ instances

static struct member *new_member(struct sess *s, enum member_kind k, struct itr_loc loc) {
    struct member *m = itr_arena_alloc(s->arena, sizeof *m);
    m->kind = k;
    m->loc = loc;
    m->param = -1;
    return m;
}

static bool add_member(struct sess *s, struct inst *in, const char *name, struct member *m) {
    struct member *old = smap_get(&in->names, name);
    if (old) {
        itr_diag_error(s->d, m->loc, "duplicate definition of '%s' in %s '%s'", name, in->parent ? "module" : "model",
                       in->module_name);
        itr_diag_note(s->d, old->loc, "'%s' was first defined here", name);
        return false;
    }
    smap_put(s->arena, &in->names, name, m);
    return true;
}

static struct frame config_frame(struct sess *s, struct inst *in) {
    struct frame f;
    memset(&f, 0, sizeof f);
    f.s = s;
    f.inst = in;
    return f;
}

static bool eval_init(struct frame *f, const struct ast_expr *e, struct itr_init *out) {
    static const int min_args[ITR_INIT_KIND_COUNT] = { 0, 0, 1, 2, 2, 0 };
    static const int max_args[ITR_INIT_KIND_COUNT] = { 0, 0, 1, 2, 2, 1 };
    static const char *const sig[ITR_INIT_KIND_COUNT] = { "", "", " (value)", " (low, high)", " (mean, std)", " (gain)" };
    memset(out, 0, sizeof *out);
    out->kind = ITR_INIT_ZEROS;
    if (!e) return true;
    const char *name;
    int n = 0;
    const struct ast_arg *args = NULL;
    if (e->kind == E_NAME) name = e->u.name;
    else if (e->kind == E_CALL) { name = e->u.call.callee; n = e->u.call.n_args; args = e->u.call.args; }
    else {
        ferr(f, e->loc, "expected an initialiser: zeros, ones, constant(v), uniform(low, high), normal(mean, std) or "
             "xavier_uniform(gain)");
        return false;
    }
    enum itr_init_kind k;
    if (!itr_init_kind_from_name(name, &k)) {
        ferr(f, e->loc, "unknown initialiser '%s' (expected zeros, ones, constant(v), uniform(low, high), "
             "normal(mean, std) or xavier_uniform(gain))", name);
        return false;
    }
    if (n < min_args[k] || n > max_args[k]) {
        ferr(f, e->loc, "initialiser '%s' takes %d argument%s%s, got %d", name, max_args[k], max_args[k] == 1 ? "" : "s",
             sig[k], n);
        return false;
    }
    double v[2] = { k == ITR_INIT_XAVIER_UNIFORM ? 1.0 : 0.0, 0.0 };
    for (int i = 0; i < n; i++) {
        if (args[i].name) { ferr(f, args[i].loc, "initialiser arguments are positional"); return false; }
        struct val x = eval_expr(f, args[i].value);
        if (x.k == V_ERR) return false;
        if (x.k != V_INT && x.k != V_FLOAT) {
            ferr(f, args[i].value->loc, "argument %d of initialiser '%s' must be a number, got %s", i, name, vkind_name(x.k));
            return false;
        }
        v[i] = x.k == V_INT ? (double)x.u.i : x.u.f;
        if (!isfinite(v[i])) { ferr(f, args[i].value->loc, "argument %d of initialiser '%s' is not finite", i, name); return false; }
    }
    if (k == ITR_INIT_UNIFORM && v[0] > v[1]) { ferr(f, e->loc, "uniform(low, high) needs low <= high"); return false; }
    if (k == ITR_INIT_NORMAL && v[1] < 0) { ferr(f, e->loc, "normal(mean, std) needs std >= 0"); return false; }
    out->kind = k;
    out->a = v[0];
    out->b = v[1];
    return true;
}

static void declare_param(struct frame *cf, struct inst *in, const struct ast_item *it) {
    struct sess *s = cf->s;
    // The member exists even if its declaration is wrong, so that uses of
    // it do not add "undefined name" errors (param -1 reads as an error).
    struct member *m = new_member(s, M_PARAM, it->name_loc);
    if (!add_member(s, in, it->name, m)) return;
    struct itr_type t;
    struct itr_init init;
    bool type_ok = eval_type(cf, it->type, &t);
    if (!eval_init(cf, it->init, &init) || !type_ok) return;
    const char *full = it->name;
    if (in->path[0]) {
        size_t n = strlen(in->path) + strlen(it->name) + 2;
        char *b = itr_arena_alloc(s->arena, n);
        snprintf(b, n, "%s.%s", in->path, it->name);
        full = b;
    }
    int32_t old = itr_program_find_param(s->prog, full);
    if (old >= 0) {
        itr_diag_error(s->d, it->name_loc, "duplicate parameter '%s'", full);
        itr_diag_note(s->d, s->prog->params[old].loc, "'%s' was first declared here", full);
        return;
    }
    m->param = itr_program_add_param(s->prog, full, t, init, it->frozen, it->name_loc);
}

static void declare_dim(struct frame *cf, const struct ast_dimdecl *dd, struct ovr_set *ovr) {
    struct sess *s = cf->s;
    int32_t old = itr_program_find_symbol(s->prog, dd->name);
    if (old >= 0) {
        itr_diag_error(s->d, dd->loc, "dim '%s' is declared twice", dd->name);
        itr_diag_note(s->d, s->prog->symbols[old].loc, "first declared here");
        return;
    }
    struct member *m = smap_get(&s->root->names, dd->name);
    if (m) {
        itr_diag_error(s->d, dd->loc, "dim '%s' has the name of a model member", dd->name);
        itr_diag_note(s->d, m->loc, "'%s' is defined here", dd->name);
        return;
    }
    int64_t def = 0;
    bool has_def = false;
    struct override *ov = ovr ? find_override(s, ovr, dd->name) : NULL;
    if (ov) {
        if (!parse_int_text(ov->value, &def) || def < 0) {
            itr_diag_error(s->d, ITR_NOLOC, "override '%s': dim '%s' needs a non-negative integer", ov->text, dd->name);
            return;
        }
        has_def = true;
    } else if (dd->def) {
        struct val v = eval_expr(cf, dd->def);
        if (v.k == V_ERR) return;
        if (v.k != V_INT || v.u.i < 0) {
            ferr(cf, dd->def->loc, "the default of dim '%s' must be a non-negative integer, got %s", dd->name, vkind_name(v.k));
            return;
        }
        def = v.u.i;
        has_def = true;
    }
    int32_t sym = itr_program_add_symbol(s->prog, dd->name, def, has_def, dd->loc);
    itr_dim_sym(s->prog, sym);
}

static void run_items(struct frame *cf, struct inst *in, const struct ast_item *items, int n, struct ovr_set *ovr,
                      bool skip_dims);

static bool bind_module_config(struct frame *parent, struct frame *cf, struct inst *in, const struct ast_item *mod,
                               const struct ast_item *let) {
    struct sess *s = parent->s;
    int np = mod->n_params;
    const struct ast_expr **given = itr_arena_alloc(s->arena, (size_t)(np ? np : 1) * sizeof *given);
    struct itr_loc *locs = itr_arena_alloc(s->arena, (size_t)(np ? np : 1) * sizeof *locs);
    int n_pos = 0;
    bool ok = true;
    for (int i = 0; i < let->n_args; i++) {
        const struct ast_arg *a = &let->args[i];
        int k = -1;
        if (!a->name) {
            if (n_pos >= np) {
                itr_diag_error(s->d, a->loc, "module '%s' takes %d config argument%s, got more", mod->name, np,
                               np == 1 ? "" : "s");
                return false;
            }
            k = n_pos++;
        } else {
            for (int j = 0; j < np; j++)
                if (strcmp(mod->params[j].name, a->name) == 0) k = j;
            if (k < 0) {
                itr_diag_error(s->d, a->loc, "module '%s' has no config parameter '%s'", mod->name, a->name);
                ok = false;
                continue;
            }
        }
        if (given[k]) {
            itr_diag_error(s->d, a->loc, "config argument '%s' of module '%s' is given twice", mod->params[k].name, mod->name);
            ok = false;
            continue;
        }
        given[k] = a->value;
        locs[k] = a->loc;
    }
    if (!ok) return false;
    for (int j = 0; j < np; j++) {
        const struct ast_param *pa = &mod->params[j];
        struct val v;
        struct itr_loc loc;
        if (given[j]) { v = eval_expr(parent, given[j]); loc = locs[j]; }
        else if (pa->def) { v = eval_expr(cf, pa->def); loc = pa->def->loc; }
        else {
            itr_diag_error(s->d, let->callee_loc, "missing config argument '%s' for module '%s'", pa->name, mod->name);
            ok = false;
            continue;
        }
        char what[256];
        snprintf(what, sizeof what, "config parameter '%s' of module '%s'", pa->name, mod->name);
        struct member *m = new_member(s, M_CONFIG, pa->loc);
        if (!val_to_config(given[j] ? parent : cf, pa->ckind, v, loc, what, &m->cfg)) { ok = false; continue; }
        if (!add_member(s, in, pa->name, m)) ok = false;
    }
    return ok;
}

static void instantiate(struct frame *parent, struct inst *pin, const struct ast_item *let) {
    struct sess *s = parent->s;
    const struct ast_item *mod = smap_get(&s->modules, let->callee);
    if (!mod) {
        if (smap_get(&s->funcs, let->callee))
            itr_diag_error(s->d, let->callee_loc, "'%s' is a function; 'let' instantiates modules", let->callee);
        else
            itr_diag_error(s->d, let->callee_loc, "unknown module '%s'", let->callee);
        return;
    }
    for (int i = 0; i < s->n_inst_stack; i++)
        if (s->inst_stack[i] == mod) {
            char chain[1024];
            size_t w = 0;
            chain[0] = 0;
            for (int j = i; j < s->n_inst_stack && w < sizeof chain; j++) {
                int r = snprintf(chain + w, sizeof chain - w, "%s -> ", s->inst_stack[j]->name);
                if (r > 0) w += (size_t)r;
            }
            if (w < sizeof chain) snprintf(chain + w, sizeof chain - w, "%s", mod->name);
            itr_diag_error(s->d, let->callee_loc, "module instantiation cycle: %s", chain);
            return;
        }
    if (s->n_inst_stack >= MAX_INSTANCE_DEPTH) {
        itr_diag_error(s->d, let->callee_loc, "module instances nested more than %d deep", MAX_INSTANCE_DEPTH);
        return;
    }
    struct inst *in = itr_arena_alloc(s->arena, sizeof *in);
    in->path = let->name;
    if (pin->path[0]) {
        size_t n = strlen(pin->path) + strlen(let->name) + 2;
        char *b = itr_arena_alloc(s->arena, n);
        snprintf(b, n, "%s.%s", pin->path, let->name);
        in->path = b;
    }
    in->module_name = mod->name;
    in->def = mod;
    in->parent = pin;
    struct member *m = new_member(s, M_INST, let->name_loc);
    m->sub = in;
    if (!add_member(s, pin, let->name, m)) return;
    struct frame cf = config_frame(s, in);
    if (!bind_module_config(parent, &cf, in, mod, let)) return;
    s->inst_stack = push_ptr(s->arena, s->inst_stack, &s->n_inst_stack, &s->cap_inst_stack, (void *)mod);
    run_items(&cf, in, mod->items, mod->n_items, NULL, false);
    s->n_inst_stack--;
}

static void run_items(struct frame *cf, struct inst *in, const struct ast_item *items, int n, struct ovr_set *ovr,
                      bool skip_dims) {
    struct sess *s = cf->s;
    for (int i = 0; i < n; i++) {
        const struct ast_item *it = &items[i];
        switch (it->kind) {
        case I_DIM:
            if (!skip_dims)
                for (int k = 0; k < it->n_dims; k++) declare_dim(cf, &it->dims[k], ovr);
            break;
        case I_PARAM: declare_param(cf, in, it); break;
        case I_LET: instantiate(cf, in, it); break;
        case I_DEF: case I_ENTRY: {
            struct member *m = new_member(s, M_FUNC, it->name_loc);
            m->fn = it;
            if (add_member(s, in, it->name, m) && it->kind == I_ENTRY) {
                s->entries = push_ptr(s->arena, s->entries, &s->n_entries, &s->cap_entries, (void *)it);
                if (it->is_train) s->train_item = it;
            }
            break;
        }
        case I_OPTIMIZER:
            if (s->optimizer_item) {
                itr_diag_error(s->d, it->loc, "model '%s' declares a second optimizer", s->root->module_name);
                itr_diag_note(s->d, s->optimizer_item->loc, "the first is declared here");
            } else {
                s->optimizer_item = it;
            }
            break;
        case I_IF: {
            struct val c = eval_expr(cf, it->cond);
            if (c.k == V_ERR) break;
            if (c.k != V_BOOL) {
                itr_diag_error(s->d, it->cond->loc, "an if condition must be a compile-time bool, got %s", vkind_name(c.k));
                break;
            }
            if (c.u.b) run_items(cf, in, it->then_i, it->n_then, ovr, false);
            else run_items(cf, in, it->else_i, it->n_else, ovr, false);
            break;
        }
        default: break;
        }
    }
}

// ------------------------------------------------------------ the optimizer

// The hyperparameters each optimizer takes, in positional order, with
// PyTorch's defaults (NAN: required).
struct opt_arg { const char *name; double def; };
static const struct opt_arg sgd_args[] = {
    { "lr", NAN }, { "momentum", 0 }, { "weight_decay", 0 }, { "clip_grad_norm", 0 }, { NULL, 0 } };
static const struct opt_arg adam_args[] = {
    { "lr", NAN }, { "beta1", 0.9 }, { "beta2", 0.999 }, { "eps", 1e-8 }, { "weight_decay", 0 },
    { "clip_grad_norm", 0 }, { NULL, 0 } };
static const struct opt_arg adamw_args[] = {
    { "lr", NAN }, { "beta1", 0.9 }, { "beta2", 0.999 }, { "eps", 1e-8 }, { "weight_decay", 1e-2 },
    { "clip_grad_norm", 0 }, { NULL, 0 } };

static double *opt_field(struct itr_optimizer *o, const char *name) {
    if (strcmp(name, "lr") == 0) return &o->lr;
    if (strcmp(name, "beta1") == 0) return &o->beta1;
    if (strcmp(name, "beta2") == 0) return &o->beta2;
    if (strcmp(name, "eps") == 0) return &o->eps;
    if (strcmp(name, "momentum") == 0) return &o->momentum;
    if (strcmp(name, "weight_decay") == 0) return &o->weight_decay;
    return &o->clip_grad_norm;
}

static void elab_optimizer(struct sess *s, const struct ast_item *it) {
    struct frame cf = config_frame(s, s->root);
    struct itr_optimizer o;
    memset(&o, 0, sizeof o);
    o.loc = it->name_loc;
    if (!itr_optimizer_kind_from_name(it->name, &o.kind)) {
        itr_diag_error(s->d, it->name_loc, "unknown optimizer '%s' (expected sgd, adam or adamw)", it->name);
        return;
    }
    const struct opt_arg *spec = o.kind == ITR_OPT_SGD ? sgd_args : o.kind == ITR_OPT_ADAM ? adam_args : adamw_args;
    int n_spec = 0;
    while (spec[n_spec].name) n_spec++;
    bool given[8] = { false };
    bool ok = true;
    int n_pos = 0;
    for (int i = 0; i < it->n_args; i++) {
        const struct ast_arg *a = &it->args[i];
        int k = -1;
        if (!a->name) {
            if (n_pos >= n_spec) {
                itr_diag_error(s->d, a->loc, "optimizer '%s' takes at most %d arguments", it->name, n_spec);
                ok = false;
                continue;
            }
            k = n_pos++;
        } else {
            for (int j = 0; j < n_spec; j++)
                if (strcmp(spec[j].name, a->name) == 0) k = j;
            if (k < 0) {
                char names[256];
                size_t w = 0;
                for (int j = 0; j < n_spec && w < sizeof names; j++) {
                    int r = snprintf(names + w, sizeof names - w, "%s%s", j ? ", " : "", spec[j].name);
                    if (r > 0) w += (size_t)r;
                }
                itr_diag_error(s->d, a->loc, "optimizer '%s' has no hyperparameter '%s' (its hyperparameters: %s)",
                               it->name, a->name, names);
                ok = false;
                continue;
            }
        }
        if (given[k]) {
            itr_diag_error(s->d, a->loc, "hyperparameter '%s' of optimizer '%s' is given twice", spec[k].name, it->name);
            ok = false;
            continue;
        }
        given[k] = true;
        struct val v = eval_expr(&cf, a->value);
        if (v.k == V_ERR) { ok = false; continue; }
        double x = v.k == V_INT ? (double)v.u.i : v.k == V_FLOAT ? v.u.f : NAN;
        if (v.k != V_INT && v.k != V_FLOAT) {
            itr_diag_error(s->d, a->value->loc, "hyperparameter '%s' of optimizer '%s' must be a number, got %s",
                           spec[k].name, it->name, vkind_name(v.k));
            ok = false;
            continue;
        }
        // The ranges torch.optim checks.
        const char *bad = NULL;
        const char *nm = spec[k].name;
        if (!isfinite(x)) bad = "a finite number";
        else if ((strcmp(nm, "beta1") == 0 || strcmp(nm, "beta2") == 0) && !(x >= 0 && x < 1)) bad = "in [0, 1)";
        else if (x < 0) bad = "non-negative";
        if (bad) {
            itr_diag_error(s->d, a->value->loc, "hyperparameter '%s' of optimizer '%s' must be %s, got %g", nm, it->name,
                           bad, x);
            ok = false;
            continue;
        }
        *opt_field(&o, nm) = x;
    }
    for (int j = 0; j < n_spec; j++) {
        if (given[j]) continue;
        if (isnan(spec[j].def)) {
            itr_diag_error(s->d, it->name_loc, "optimizer '%s' needs a learning rate: %s(lr=...)", it->name, it->name);
            ok = false;
            continue;
        }
        *opt_field(&o, spec[j].name) = spec[j].def;
    }
    if (ok) s->prog->optimizer = o;
}

// ------------------------------------------------------------ entries

int32_t pending_update(const struct sess *s, int32_t p) {
    for (int i = 0; i < s->n_upd; i++)
        if (s->upd_param[i] == p) return s->upd_value[i];
    return -1;
}

// The train graph's state updates become outputs "new.<param>" after the
// returned values, in the order of each parameter's first update.
static void add_update_outputs(struct sess *s, struct itr_graph *g) {
    for (int i = 0; i < s->n_upd; i++) {
        const struct itr_param *pp = &s->prog->params[s->upd_param[i]];
        size_t n = strlen(pp->name) + 5;
        char *name = itr_arena_alloc(s->arena, n);
        snprintf(name, n, "new.%s", pp->name);
        for (int k = 0; k < g->n_outputs; k++)
            if (strcmp(g->output_names[k], name) == 0) {
                itr_diag_error(s->d, g->loc, "output name '%s' of the train entry is reserved for the update of "
                               "parameter '%s'", name, pp->name);
                return;
            }
        itr_graph_add_output(g, name, s->upd_value[i]);
        itr_program_add_update(s->prog, s->upd_param[i], name, ITR_UPDATE_STATE);
    }
}

static void elab_entry_body(struct sess *s, const struct ast_item *en, struct itr_graph *g, struct gctx *gc);

static void elab_entry(struct sess *s, const struct ast_item *en) {
    struct itr_graph *g = itr_program_add_graph(s->prog, en->name, ITR_GRAPH_ENTRY);
    g->loc = en->name_loc;
    struct gctx gc;
    memset(&gc, 0, sizeof gc);
    gc.g = g;
    if (en->is_train) {
        g->train = true;
        s->training = true;
        s->train_gc = &gc;
        s->train_seed = -1;
        s->n_upd = 0;
    }
    elab_entry_body(s, en, g, &gc);
    if (en->is_train) {
        if (g->n_outputs) add_update_outputs(s, g);
        s->training = false;
        s->train_gc = NULL;
    }
}

static void elab_entry_body(struct sess *s, const struct ast_item *en, struct itr_graph *g, struct gctx *gcp) {
    struct frame f;
    memset(&f, 0, sizeof f);
    f.s = s;
    f.gc = gcp;
    f.inst = s->root;
    f.fn = en;
    bool bad = false;
    for (int i = 0; i < en->n_params; i++) {
        const struct ast_param *pa = &en->params[i];
        if (smap_get(&f.env, pa->name)) {
            itr_diag_error(s->d, pa->loc, "duplicate parameter '%s' in entry '%s'", pa->name, en->name);
            bad = true;
            continue;
        }
        if (pa->is_config) {
            itr_diag_error(s->d, pa->loc, "entry '%s' takes tensors only; '%s' is a config parameter (make it a "
                           "config parameter of the model)", en->name, pa->name);
            bad = true;
            continue;
        }
        if (!pa->type) {
            itr_diag_error(s->d, pa->loc, "entry parameter '%s' needs a type (%s: f32[...])", pa->name, pa->name);
            bad = true;
            continue;
        }
        struct itr_type t;
        if (!eval_type(&f, pa->type, &t)) { bad = true; continue; }
        int32_t v = itr_graph_add_input(g, pa->name, t, pa->loc);
        val_bind(&f, pa->name, (struct val){ .k = V_TENSOR, .u.t = v });
        // A declared `seed` is what rng_seed reads (the canonical form
        // lists the implicit one this way).
        if (en->is_train && strcmp(pa->name, "seed") == 0) s->train_seed = v;
    }
    if (bad) return;
    struct ret r;
    memset(&r, 0, sizeof r);
    exec_stmts(&f, en->body, en->n_body, &r);
    if (!r.has) {
        if (r.n >= 0) itr_diag_error(s->d, en->name_loc, "entry '%s' has no return statement", en->name);
        return;
    }
    for (int i = 0; i < r.n; i++) {
        if (r.v[i].k == V_ERR) return;
        if (r.v[i].k != V_TENSOR) {
            itr_diag_error(s->d, r.loc, "entry '%s' must return tensors; value %d is %s", en->name, i, vkind_name(r.v[i].k));
            return;
        }
    }
    const char **names = itr_arena_alloc(s->arena, (size_t)(r.n ? r.n : 1) * sizeof *names);
    if (en->n_outs >= 0) {
        if (en->n_outs != r.n) {
            itr_diag_error(s->d, r.loc, "entry '%s' names %d output%s (-> (...)) but returns %d value%s", en->name,
                           en->n_outs, en->n_outs == 1 ? "" : "s", r.n, r.n == 1 ? "" : "s");
            return;
        }
        for (int i = 0; i < r.n; i++) {
            for (int j = 0; j < i; j++)
                if (strcmp(en->outs[j], en->outs[i]) == 0) {
                    itr_diag_error(s->d, en->out_locs[i], "duplicate output name '%s'", en->outs[i]);
                    return;
                }
            names[i] = en->outs[i];
        }
    } else {
        struct smap used = { 0 };
        for (int i = 0; i < r.n; i++) {
            char buf[300];
            if (r.names[i]) snprintf(buf, sizeof buf, "%s", r.names[i]);
            else snprintf(buf, sizeof buf, "out%d", i);
            for (int k = 1; smap_get(&used, buf); k++) {
                if (r.names[i]) snprintf(buf, sizeof buf, "%s_%d", r.names[i], k);
                else snprintf(buf, sizeof buf, "out%d_%d", i, k);
            }
            names[i] = itr_arena_strdup(s->arena, buf);
            smap_put(s->arena, &used, names[i], (void *)names[i]);
        }
    }
    for (int i = 0; i < r.n; i++) itr_graph_add_output(g, names[i], r.v[i].u.t);
}

// ------------------------------------------------------------ the model

static void elab_model(struct sess *s, const struct ast_item *model) {
    struct itr_program *p = s->prog;
    p->name = itr_program_strdup(p, model->name);
    p->loc = model->name_loc;
    struct inst *root = itr_arena_alloc(s->arena, sizeof *root);
    root->path = "";
    root->module_name = model->name;
    root->def = model;
    s->root = root;
    struct frame cf = config_frame(s, root);
    struct ovr_set ovr;
    if (!parse_overrides(s, &ovr)) return;
    for (int i = 0; i < model->n_params; i++) {
        const struct ast_param *pa = &model->params[i];
        struct override *ov = find_override(s, &ovr, pa->name);
        struct member *m = new_member(s, M_CONFIG, pa->loc);
        if (ov) {
            if (!override_value(s, ov, pa->ckind, &m->cfg)) continue;
        } else if (pa->def) {
            char what[256];
            snprintf(what, sizeof what, "config parameter '%s' of model '%s'", pa->name, model->name);
            struct val v = eval_expr(&cf, pa->def);
            if (!val_to_config(&cf, pa->ckind, v, pa->def->loc, what, &m->cfg)) continue;
        } else {
            itr_diag_error(s->d, pa->loc, "config parameter '%s' of model '%s' is unbound: give it a default or set "
                           "it with %s=VALUE", pa->name, model->name, pa->name);
            continue;
        }
        add_member(s, root, pa->name, m);
    }
    // Dims first, so that types anywhere in the model may use them.
    for (int i = 0; i < model->n_items; i++)
        if (model->items[i].kind == I_DIM)
            for (int k = 0; k < model->items[i].n_dims; k++) declare_dim(&cf, &model->items[i].dims[k], &ovr);
    run_items(&cf, root, model->items, model->n_items, &ovr, true);
    for (int i = 0; i < ovr.n; i++)
        if (!ovr.v[i].used && ovr.v[i].data < 0)   // a data set's value applies only where the name exists
            itr_diag_error(s->d, ITR_NOLOC, "override '%s': model '%s' has no config parameter or dim named '%s'",
                           ovr.v[i].text, model->name, ovr.v[i].name);
    if (s->train_item && !s->optimizer_item)
        itr_diag_error(s->d, s->train_item->loc, "model '%s' has a train entry but no optimizer; add one to the model, "
                       "e.g. 'optimizer adam(lr=2e-4)'", model->name);
    if (s->optimizer_item && !s->train_item)
        itr_diag_error(s->d, s->optimizer_item->loc, "model '%s' declares an optimizer but has no train entry "
                       "('train(inputs...) -> (loss, ...) { ... }')", model->name);
    if (s->optimizer_item) elab_optimizer(s, s->optimizer_item);
    for (int i = 0; i < s->n_entries; i++) smap_put(s->arena, &s->graph_names, s->entries[i]->name, (void *)s->entries[i]);
    for (int i = 0; i < s->n_entries; i++) elab_entry(s, s->entries[i]);
}

static void elaborate(struct sess *s, struct lfile *main) {
    const struct ast_item *model = NULL;
    for (int i = 0; i < main->ast->n_items; i++) {
        const struct ast_item *it = &main->ast->items[i];
        if (it->kind != I_MODEL) continue;
        if (model) {
            itr_diag_error(s->d, it->loc, "more than one model in %s; a file to compile has exactly one", main->path);
            itr_diag_note(s->d, model->loc, "the first model, '%s', is here", model->name);
            return;
        }
        model = it;
    }
    if (!model) {
        itr_diag_error(s->d, (struct itr_loc){ main->path, 1, 1 },
                       "no model in %s (a file to compile needs one 'model NAME { ... }')", main->path);
        return;
    }
    elab_model(s, model);
}

// ------------------------------------------------------------ locations

// Locations point into the diags' copy of each path while elaborating (so
// messages outlive a failed program); the finished program gets its own.
struct reloc {
    const char *from[16], *to[16];
    int n;
};

static void reloc(struct itr_program *p, struct reloc *r, struct itr_loc *loc) {
    if (!loc->file) return;
    for (int i = 0; i < r->n; i++)
        if (r->from[i] == loc->file) { loc->file = r->to[i]; return; }
    const char *c = itr_program_strdup(p, loc->file);
    if (r->n < 16) {
        r->from[r->n] = loc->file;
        r->to[r->n++] = c;
    }
    loc->file = c;
}

static void relocate(struct itr_program *p) {
    struct reloc r;
    memset(&r, 0, sizeof r);
    reloc(p, &r, &p->loc);
    reloc(p, &r, &p->optimizer.loc);
    for (int i = 0; i < p->n_symbols; i++) reloc(p, &r, &p->symbols[i].loc);
    for (int i = 0; i < p->n_params; i++) reloc(p, &r, &p->params[i].loc);
    for (int gi = 0; gi < p->n_graphs; gi++) {
        struct itr_graph *g = p->graphs[gi];
        reloc(p, &r, &g->loc);
        for (int i = 0; i < g->n_values; i++) reloc(p, &r, &g->values[i].loc);
        for (int i = 0; i < g->n_nodes; i++) reloc(p, &r, &g->nodes[i].loc);
    }
}

// ------------------------------------------------------------ API

struct itr_program *itr_parse_string(const char *name, const char *text, size_t len,
                                     const struct itr_parse_options *opt, struct itr_diags *d) {
    struct sess s;
    memset(&s, 0, sizeof s);
    s.arena = itr_arena_new();
    s.d = d;
    s.opt = opt ? opt : &no_options;
    int errors0 = d->n_errors;
    if (!name) name = "<string>";
    load_file(&s, name, canonical(s.arena, name), text ? text : "", text ? len : 0);
    struct itr_program *p = NULL;
    if (d->n_errors == errors0) {
        s.prog = itr_program_new();
        elaborate(&s, s.files[0]);
        if (d->n_errors == errors0) itr_program_verify(s.prog, d);
        if (d->n_errors == errors0) {
            relocate(s.prog);
            p = s.prog;
        } else {
            itr_program_free(s.prog);
        }
    }
    itr_arena_free(s.arena);
    return p;
}

struct itr_program *itr_parse_file(const char *path, const struct itr_parse_options *opt, struct itr_diags *d) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!itr_file_read_all(path, &buf, &len, d)) return NULL;
    struct itr_program *p = itr_parse_string(path, (const char *)buf, len, opt, d);
    free(buf);
    return p;
}

// ------------------------------------------------------------ module libraries

static void append(char *buf, size_t n, const char *fmt, const char *a) {
    size_t w = strlen(buf);
    if (w + 1 < n) snprintf(buf + w, n - w, fmt, a);
}

// The source of a model that instantiates module it of the library file
// (imported by its base name); NULL when a config parameter needs a value
// that cannot be made up (float, bool, str without a default).
static char *library_probe(struct itr_arena *a, const char *lib_base, const struct ast_item *it, const char **why) {
    char dims[2048] = "", args[2048] = "";
    for (int k = 0; k < it->n_params; k++) {
        const struct ast_param *pa = &it->params[k];
        if (!pa->is_config || pa->def) continue;
        if (pa->ckind != CK_INT) {
            *why = pa->name;
            return NULL;
        }
        char up[128];
        size_t j = 0;
        for (; pa->name[j] && j + 1 < sizeof up; j++) up[j] = (char)toupper((unsigned char)pa->name[j]);
        up[j] = 0;
        append(dims, sizeof dims, dims[0] ? ", %s" : "  dim %s", up);
        char kv[300];
        snprintf(kv, sizeof kv, "%s%s=%s", args[0] ? ", " : "", pa->name, up);
        append(args, sizeof args, "%s", kv);
    }
    size_t n = strlen(lib_base) + strlen(dims) + strlen(args) + 2 * strlen(it->name) + 128;
    char *src = itr_arena_alloc(a, n);
    snprintf(src, n, "import \"%s\"\nmodel check_%s {\n%s\n  let m = %s(%s)\n}\n", lib_base, it->name, dims,
             it->name, args);
    return src;
}

int itr_check_library(const char *path, const struct itr_parse_options *opt, struct itr_library_report *rep,
                      struct itr_diags *d) {
    memset(rep, 0, sizeof *rep);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!itr_file_read_all(path, &buf, &len, d)) return 0;
    struct sess s;
    memset(&s, 0, sizeof s);
    s.arena = itr_arena_new();
    s.d = d;
    s.opt = opt ? opt : &no_options;
    int errors0 = d->n_errors;
    load_file(&s, path, canonical(s.arena, path), (const char *)buf, len);
    free(buf);
    int result = d->n_errors == errors0 ? 1 : 0;
    const struct ast_file *ast = s.files[0]->ast;
    for (int i = 0; result && i < ast->n_items; i++)
        if (ast->items[i].kind == I_MODEL) result = -1;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    bool failed = false;
    for (int i = 0; result == 1 && i < ast->n_items; i++) {
        const struct ast_item *it = &ast->items[i];
        if (it->kind == I_DEF) rep->n_functions++;
        if (it->kind != I_MODULE) continue;
        rep->n_modules++;
        const char *why = NULL;
        char *src = library_probe(s.arena, base, it, &why);
        if (!src) {
            rep->n_skipped++;
            itr_diag_note(d, it->name_loc, "module '%s' is not instantiated: its config parameter '%s' has no "
                          "default and is not an int", it->name, why);
            continue;
        }
        // Named after the library, in its folder, so that the import finds it.
        char name[1024];
        snprintf(name, sizeof name, "%s (check of module %s)", path, it->name);
        struct itr_parse_options po = opt ? *opt : no_options;
        po.overrides = NULL;
        po.n_overrides = 0;
        po.data_overrides = NULL;
        po.n_data_overrides = 0;
        int before = d->n_errors;
        struct itr_program *p = itr_parse_string(name, src, strlen(src), &po, d);
        itr_program_free(p);
        if (d->n_errors > before) {
            itr_diag_note(d, it->name_loc, "while checking module '%s', instantiated with each int config parameter "
                          "without a default as a dim of its name in capitals", it->name);
            failed = true;
            continue;
        }
        if (rep->modules[0]) append(rep->modules, sizeof rep->modules, "%s", ", ");
        append(rep->modules, sizeof rep->modules, "%s", it->name);
    }
    itr_arena_free(s.arena);
    return result == 1 && failed ? 0 : result;
}
