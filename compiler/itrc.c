// itrc: the compiler's command line (docs/cli.md). Thin by design: argument
// parsing and printing here, the work in ir/ and compiler/ (the compile
// pipeline is compiler/pipeline.h).
//
// Exit codes: 0 ok, 1 user error (bad input or usage), 2 internal error.
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_plan.h"
#include "compiler/dump.h"
#include "compiler/pipeline.h"
#include "frontends/onnx/onnx_export.h"
#include "frontends/onnx/onnx_import.h"
#include "ir/bind.h"
#include "ir/cli.h"
#include "ir/dataset.h"
#include "ir/devcode.h"
#include "ir/kir.h"
#include "ir/plan.h"
#include "ir/text.h"

#define PROG "itrc"

static const struct itr_cli cli;

// ------------------------------------------------------------ option parsing

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    return itr_cli_usage_error(&cli, cmd, fmt, arg);
}

// "-I DIR", "-IDIR", "--include DIR" or "--include=DIR" (ir/cli.h).
static int opt_value(const char *cmd, int argc, char **argv, int *i, const char *shrt, const char *lng,
                     const char **val) {
    return itr_cli_opt_value(&cli, cmd, argc, argv, i, shrt, lng, val);
}

// Options shared by the commands that read .ir files.
struct front_opts {
    const char *file;
    const char *data;   // --data DIR: sizes from a data set (data_bind)
    struct itr_cli_list includes, defines;
};

static void front_free(struct front_opts *o) {
    free(o->includes.v);
    free(o->defines.v);
}

// 1: consumed argv[*i]; 0: not a front-end option; -1: error (reported).
static int front_option(const char *cmd, struct front_opts *o, int argc, char **argv, int *i) {
    int r = itr_cli_opt_list(&cli, cmd, argc, argv, i, "-I", "--include", &o->includes, NULL);
    if (r) return r;
    const char *v;
    if ((r = opt_value(cmd, argc, argv, i, NULL, "--data", &v)) != 0) {
        if (r > 0 && o->data) {
            usage_error(cmd, "%s", "--data given twice");
            return -1;
        }
        if (r > 0) o->data = v;
        return r;
    }
    return itr_cli_opt_list(&cli, cmd, argc, argv, i, "-D", "--define", &o->defines, "-D expects NAME=VALUE, got '%s'");
}

static int positional_file(const char *cmd, const char **slot, const char *arg) {
    if (*slot) return usage_error(cmd, "unexpected extra argument '%s'", arg);
    *slot = arg;
    return 0;
}

static void front_compile_options(const struct front_opts *o, struct itr_compile_options *co) {
    itr_compile_options_init(co);
    co->include_dirs = o->includes.v;
    co->n_include_dirs = o->includes.n;
    co->defines = o->defines.v;
    co->n_defines = o->defines.n;
}

// ------------------------------------------------------------ --data

// The sizes a data set gives a model (docs/cli.md "--data"): by name, the
// zoo's convention — img_dim (config) from the region features' D, R (dim)
// from their R, V (dim) from the vocabulary, tok_dim (config) from the token
// features' E — and the caption length where the model fixes it with a dim
// that has a default. Each applies only where the model declares the name;
// an explicit -D NAME=VALUE wins (with a warning when it differs).
#define DATA_MAX 5
struct data_bind {
    const char *dir;
    struct itr_dataset_dims dims;
    char text[DATA_MAX][96];
    const char *defs[DATA_MAX];
    bool used[DATA_MAX];
    int n;
    char caption_where[700];   // set when the caption length came from the data
};

static void data_add(struct data_bind *db, const char *name, int64_t v) {
    snprintf(db->text[db->n], sizeof db->text[db->n], "%s=%" PRId64, name, v);
    db->defs[db->n] = db->text[db->n];
    db->n++;
}

// The value of the last -D NAME=..., or NULL.
static const char *user_define(const struct front_opts *o, const char *name) {
    const char *r = NULL;
    size_t n = strlen(name);
    for (int i = 0; i < o->defines.n; i++)
        if (strncmp(o->defines.v[i], name, n) == 0 && o->defines.v[i][n] == '=') r = o->defines.v[i] + n + 1;
    return r;
}

// The caption input of the model's text encoder (as the runtime finds it,
// runtime/eval.c itr_caption_limit): encode_text's first input.
static const struct itr_value *caption_input(const struct itr_program *p) {
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind == ITR_GRAPH_ENTRY && strcmp(g->name, "encode_text") == 0 && g->n_inputs > 0)
            return &g->values[g->inputs[0]];
    }
    return NULL;
}

// Where the model fixes its caption length, the data set's longest caption
// must fit: a dim with a default (dim L = 32) is set to the longest caption;
// a length fixed otherwise (a constant, a config int) is checked against it
// here rather than when training starts. False after reporting.
static bool data_caption_length(struct data_bind *db, const struct front_opts *o, struct itr_compile_options *co,
                                struct itr_diags *d) {
    // The front end alone, with the sizes so far; its errors are reported by
    // the real compile that follows, so they are dropped here.
    struct itr_diags scratch;
    itr_diags_init(&scratch);
    co->data_defines = db->defs;
    co->n_data_defines = db->n;
    struct itr_program *p = itr_elaborate_file(o->file, co, &scratch);
    itr_diags_free(&scratch);
    const struct itr_value *v = p ? caption_input(p) : NULL;
    bool ok = true;
    if (v && v->type.rank >= 2) {
        itr_dim dim = v->type.dims[1];
        const struct itr_dim_node *dn = &p->dimnodes[dim];
        bool token_feats = v->type.dtype == ITR_F32 && v->type.rank == 3;
        const char *sym = dn->kind == ITR_DIM_SYM ? p->symbols[dn->value].name : NULL;
        bool has_default = sym && p->symbols[dn->value].has_default;
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        itr_bind_defaults(&b, p);
        int64_t fixed = -1;
        int32_t unbound;
        if (!itr_dim_eval(p, dim, b.value, b.bound, &fixed, &unbound)) fixed = -1;
        itr_bindings_free(&b);
        int64_t longest;
        char where[650];
        if (has_default && !user_define(o, sym)) {
            // The caption axis is a dim with a default: make it the data's.
            ok = itr_dataset_longest_caption(db->dir, token_feats, &longest, where, sizeof where, d);
            if (ok && longest > 0) {
                data_add(db, sym, longest);
                snprintf(db->caption_where, sizeof db->caption_where, "%s", where);
            }
        } else if (fixed > 0 && !sym) {
            ok = itr_dataset_longest_caption(db->dir, token_feats, &longest, where, sizeof where, d);
            if (ok && longest > fixed) {
                char ts[256];
                itr_type_format(p, &v->type, ts, sizeof ts);
                itr_diag_error(d, ITR_NOLOC, "%s: the data set's longest caption has %" PRId64 " tokens%s; model '%s' "
                               "reads at most %" PRId64 " (encode_text input '%s': %s, %s:%d:%d)", where, longest,
                               token_feats ? "" : " (with <start> and <end>)", p->name, fixed, v->name, ts,
                               v->loc.file ? v->loc.file : "?", v->loc.line, v->loc.col);
                itr_diag_note(d, ITR_NOLOC, "nothing is truncated: give the model a caption length of at least %"
                              PRId64 " (the config parameter or dim its input type uses)", longest);
                ok = false;
            }
        }
    }
    itr_program_free(p);
    return ok;
}

// Reads the data set named by --data and puts its sizes into co (db must
// outlive co's use). False after reporting into d.
static bool data_bind(struct data_bind *db, const struct front_opts *o, struct itr_compile_options *co,
                      struct itr_diags *d) {
    memset(db, 0, sizeof *db);
    db->dir = o->data;
    if (!itr_dataset_dims_read(o->data, &db->dims, d)) return false;
    data_add(db, "img_dim", db->dims.feat_dim);
    data_add(db, "R", db->dims.n_regions);
    if (db->dims.vocab_size > 0) data_add(db, "V", db->dims.vocab_size);
    if (db->dims.token_dim > 0) data_add(db, "tok_dim", db->dims.token_dim);
    if (!data_caption_length(db, o, co, d)) return false;
    co->data_defines = db->defs;
    co->n_data_defines = db->n;
    co->data_used = db->used;
    return true;
}

// After a successful front end: what the data set set, and where a -D
// overrode a different value from it.
static void data_report(const struct data_bind *db, const struct front_opts *o, const char *model, FILE *f) {
    int n_used = 0;
    for (int i = 0; i < db->n; i++) n_used += db->used[i];
    for (int i = 0; i < db->n; i++) {
        const char *eq = strchr(db->defs[i], '=');
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - db->defs[i]), db->defs[i]);
        const char *mine = user_define(o, name);
        if (mine && strcmp(mine, eq + 1) != 0)
            fprintf(stderr, "%s: warning: -D %s=%s overrides %s from the data set %s\n", PROG, name, mine,
                    db->defs[i], db->dir);
    }
    if (!n_used) {
        fprintf(stderr, "%s: warning: --data %s set nothing: model '%s' declares none of img_dim, R, V, tok_dim "
                "without a -D of its own\n", PROG, db->dir, model ? model : "?");
        return;
    }
    fprintf(f, "from data set %s:", db->dir);
    for (int i = 0; i < db->n; i++)
        if (db->used[i]) fprintf(f, " %s", db->defs[i]);
    if (db->caption_where[0] && db->used[db->n - 1])
        fprintf(f, " (caption length: the longest caption, %s)", db->caption_where);
    fprintf(f, "\n");
}

// Prints what a failed pipeline left in d and returns the exit code it means.
static int report_failure(const struct itr_compile_report *rep, struct itr_diags *d) {
    itr_diags_print(d, stderr);
    if (rep->status == ITR_COMPILE_INTERNAL_ERROR) {
        fprintf(stderr, "%s: internal error: %s\n", PROG, rep->internal);
        return ITR_EXIT_INTERNAL;
    }
    return ITR_EXIT_USER;
}

// Parses the arguments of a command that takes only FILE.ir and the
// front-end options into o. Not ITR_EXIT_OK: a usage error, o freed.
static int front_args(const char *cmd, int argc, char **argv, struct front_opts *o) {
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        int r = front_option(cmd, o, argc, argv, &i);
        if (r < 0) rc = ITR_EXIT_USER;
        else if (r == 0 && argv[i][0] == '-' && argv[i][1]) rc = usage_error(cmd, "unknown option '%s'", argv[i]);
        else if (r == 0) rc = positional_file(cmd, &o->file, argv[i]);
    }
    if (rc == ITR_EXIT_OK && !o->file) rc = usage_error(cmd, "%s", "missing FILE.ir");
    if (rc != ITR_EXIT_OK) front_free(o);
    return rc;
}

// ------------------------------------------------------------ check

// Values in the first n params (the model's own, without the optimizer
// state the training step appends).
static void count_values(const struct itr_program *p, int n, int64_t *total, int *symbolic) {
    *total = 0;
    *symbolic = 0;
    for (int i = 0; i < n && i < p->n_params; i++) {
        int64_t k;
        if (itr_type_numel_default(p, &p->params[i].type, &k, NULL, 0)) *total += k;
        else (*symbolic)++;
    }
}

static int count_entries(const struct itr_program *p) {
    int n = 0;
    for (int i = 0; i < p->n_graphs; i++) n += p->graphs[i]->kind == ITR_GRAPH_ENTRY;
    return n;
}

// "812 nodes (forward 120, backward 402, optimizer 290)"
static void train_summary(const struct itr_program *p, char *buf, size_t n) {
    const struct itr_graph *g = itr_program_train_graph(p);
    int count[ITR_PHASE_COUNT] = { 0 };
    for (int i = 0; g && i < g->n_nodes; i++)
        if ((unsigned)g->nodes[i].phase < ITR_PHASE_COUNT) count[g->nodes[i].phase]++;
    snprintf(buf, n, "%d nodes (forward %d, backward %d, optimizer %d)", g ? g->n_nodes : 0, count[ITR_PHASE_FORWARD],
             count[ITR_PHASE_BACKWARD], count[ITR_PHASE_OPTIMIZER]);
}

static int cmd_check(const char *operand, int argc, char **argv) {
    (void)operand;
    struct front_opts o = { 0 };
    int rc = front_args("check", argc, argv, &o);
    if (rc != ITR_EXIT_OK) return rc;
    // The pipeline without simplification: the training step is built too,
    // so that its errors (a loss that is not a scalar, an op without a
    // gradient rule) show up in a check.
    struct itr_compile_options co;
    front_compile_options(&o, &co);
    co.opt_level = 0;
    struct itr_compile_report rep;
    struct itr_diags d;
    itr_diags_init(&d);
    // A file without a model is a module library: every module in it is
    // checked instead (ir/text.h itr_check_library).
    struct itr_parse_options po = { .include_dirs = o.includes.v, .n_include_dirs = o.includes.n };
    struct itr_library_report lib;
    int lr = itr_check_library(o.file, &po, &lib, &d);
    if (lr >= 0) {
        itr_diags_print(&d, stderr);
        if (lr == 1) {
            if (o.defines.n || o.data)
                fprintf(stderr, "%s: warning: -D and --data size a model; %s has none, so they were not used\n", PROG,
                        o.file);
            printf("%s: ok: module library, %d module%s instantiated%s%s%s, %d function%s (checked where a model "
                   "calls them)\n", o.file, lib.n_modules - lib.n_skipped, lib.n_modules - lib.n_skipped == 1 ? "" : "s",
                   lib.modules[0] ? " (" : "", lib.modules, lib.modules[0] ? ")" : "", lib.n_functions,
                   lib.n_functions == 1 ? "" : "s");
        }
        itr_diags_free(&d);
        front_free(&o);
        return lr == 1 ? ITR_EXIT_OK : ITR_EXIT_USER;
    }
    struct data_bind db;
    if (o.data && !data_bind(&db, &o, &co, &d)) {
        itr_diags_print(&d, stderr);
        itr_diags_free(&d);
        front_free(&o);
        return ITR_EXIT_USER;
    }
    struct itr_program *p;
    if (itr_compile_file(o.file, &co, &p, &rep, &d)) {
        itr_diags_print(&d, stderr);   // warnings
        if (o.data) data_report(&db, &o, p->name, stdout);
        // The summary counts the model's own parameters, without the
        // optimizer state the training step adds.
        int64_t total;
        int symbolic, n_params = rep.model_params;
        count_values(p, n_params, &total, &symbolic);
        int ne = count_entries(p);
        printf("%s: ok: %d entr%s, %d param%s (%lld values", o.file, ne, ne == 1 ? "y" : "ies", n_params,
               n_params == 1 ? "" : "s", (long long)total);
        if (symbolic) printf(", plus %d param%s sized by dims without defaults", symbolic, symbolic == 1 ? "" : "s");
        printf(")\n");
        if (itr_program_train_graph(p)) {
            char sum[160];
            train_summary(p, sum, sizeof sum);
            printf("%s: train step (%s): %s\n", o.file, itr_optimizer_kind_name(p->optimizer.kind), sum);
        }
    } else {
        rc = report_failure(&rep, &d);
    }
    itr_program_free(p);
    itr_diags_free(&d);
    front_free(&o);
    return rc;
}

// ------------------------------------------------------------ print

static int cmd_print(const char *operand, int argc, char **argv) {
    (void)operand;
    struct front_opts o = { 0 };
    int rc = front_args("print", argc, argv, &o);
    if (rc != ITR_EXIT_OK) return rc;
    struct itr_compile_options co;
    front_compile_options(&o, &co);
    struct itr_diags d;
    itr_diags_init(&d);
    struct data_bind db;
    if (o.data && !data_bind(&db, &o, &co, &d)) {
        itr_diags_print(&d, stderr);
        itr_diags_free(&d);
        front_free(&o);
        return ITR_EXIT_USER;
    }
    struct itr_program *p = itr_elaborate_file(o.file, &co, &d);
    itr_diags_print(&d, stderr);
    if (p && o.data) data_report(&db, &o, p->name, stderr);   // stdout is the program
    if (p) {
        char *text = itr_print_program(p);
        if (!text) { fprintf(stderr, "%s: internal error: printing failed\n", PROG); rc = ITR_EXIT_INTERNAL; }
        else fputs(text, stdout);
        free(text);
    } else {
        rc = ITR_EXIT_USER;
    }
    itr_program_free(p);
    itr_diags_free(&d);
    front_free(&o);
    return rc;
}

// ------------------------------------------------------------ compile

static char *default_plan_path(const char *src) {
    size_t n = strlen(src);
    const char *slash = strrchr(src, '/');
    const char *base = slash ? slash + 1 : src;
    size_t stem = n;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base && strcmp(dot, ".ir") == 0) stem = (size_t)(dot - src);
    char *out = malloc(stem + 6);
    if (!out) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    memcpy(out, src, stem);
    strcpy(out + stem, ".plan");
    return out;
}

// An ONNX model (docs/onnx.md) compiles like a .ir file once imported; its
// initializers become constants, so the plan needs no weights file.
static bool onnx_compile(const char *path, const struct itr_compile_options *co, struct itr_program **p,
                         struct itr_compile_report *rep, struct itr_diags *d) {
    memset(rep, 0, sizeof *rep);
    rep->status = ITR_COMPILE_USER_ERROR;
    *p = itr_onnx_import_file(path, NULL, NULL, NULL, d);
    if (*p && itr_compile_program(*p, co, rep, d)) return true;
    itr_program_free(*p);
    *p = NULL;
    return false;
}

static int cmd_import(const char *operand, int argc, char **argv) {
    (void)operand;
    return itr_onnx_cmd_import(&cli, argc, argv);
}

// What `itrc export` exports (frontends/onnx/export_cli.c): a plan, or a .ir
// compiled here at the default level for the reference target (the graphs are what is
// exported, so kernels would be wasted work).
static struct itr_program *export_load(const char *path, const char *const *defines, int n_defines,
                                       const char *const *includes, int n_includes, struct itr_diags *d) {
    size_t n = strlen(path);
    if (n < 3 || strcmp(path + n - 3, ".ir") != 0) return itr_plan_read(path, NULL, d);
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    co.defines = defines;
    co.n_defines = n_defines;
    co.include_dirs = includes;
    co.n_include_dirs = n_includes;
    co.target = "ref";
    struct itr_program *p = NULL;
    itr_compile_file(path, &co, &p, NULL, d);
    return p;
}

static int cmd_export(const char *operand, int argc, char **argv) {
    (void)operand;
    return itr_onnx_cmd_export(&cli, argc, argv, export_load);
}

static int cmd_compile(const char *operand, int argc, char **argv) {
    (void)operand;
    struct front_opts o = { 0 };
    const char *out = NULL, *target = itr_compile_default_target();
    int opt_level = 2;
    unsigned no_rewrites = 0;
    bool verbose = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r = front_option("compile", &o, argc, argv, &i);
        if (r < 0) { rc = ITR_EXIT_USER; break; }
        if (r > 0) continue;
        if ((r = opt_value("compile", argc, argv, &i, "-o", "--output", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out = v;
        } else if ((r = opt_value("compile", argc, argv, &i, NULL, "--target", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else target = v;
        } else if ((r = opt_value("compile", argc, argv, &i, NULL, "--no-rewrite", &v)) != 0) {
            unsigned bits = r > 0 ? itr_rewrite_from_name(v) : 0;
            if (r < 0) rc = ITR_EXIT_USER;
            else if (!bits)
                rc = usage_error("compile", "unknown rewrite '%s' for --no-rewrite (known: gram, reassoc, rows, all)", v);
            else no_rewrites |= bits;
        } else if (strcmp(argv[i], "-O0") == 0) opt_level = 0;
        else if (strcmp(argv[i], "-O1") == 0) opt_level = 1;
        else if (strcmp(argv[i], "-O2") == 0 || strcmp(argv[i], "-O") == 0) opt_level = 2;
        else if (strncmp(argv[i], "-O", 2) == 0)
            rc = usage_error("compile", "unknown optimisation level '%s' (accepted: -O0, -O1, -O2)", argv[i]);
        else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) verbose = true;
        else if (argv[i][0] == '-' && argv[i][1]) rc = usage_error("compile", "unknown option '%s'", argv[i]);
        else rc = positional_file("compile", &o.file, argv[i]);
    }
    if (rc == ITR_EXIT_OK && !o.file) rc = usage_error("compile", "%s", "missing FILE.ir");
    // The target is checked before the file is read, so a wrong target is
    // reported even when the model has errors too.
    char why[160];
    if (rc == ITR_EXIT_OK && itr_compile_target_error(target, why, sizeof why)) {
        fprintf(stderr, "%s compile: %s\n", PROG, why);
        rc = ITR_EXIT_USER;
    }
    if (rc != ITR_EXIT_OK) { front_free(&o); return rc; }

    char *plan_path = out ? NULL : default_plan_path(o.file);
    const char *dest = out ? out : plan_path;
    struct itr_compile_options co;
    front_compile_options(&o, &co);
    co.opt_level = opt_level;
    co.no_rewrites = no_rewrites;
    co.target = target;
    struct itr_compile_report rep;
    struct itr_diags d;
    itr_diags_init(&d);
    struct data_bind db;
    if (o.data && !data_bind(&db, &o, &co, &d)) {
        itr_diags_print(&d, stderr);
        itr_diags_free(&d);
        front_free(&o);
        free(plan_path);
        return ITR_EXIT_USER;
    }
    struct itr_program *p;
    if (!(itr_onnx_is_model_path(o.file) ? onnx_compile(o.file, &co, &p, &rep, &d)
                                          : itr_compile_file(o.file, &co, &p, &rep, &d))) {
        rc = report_failure(&rep, &d);
    } else {
        if (o.data) data_report(&db, &o, p->name, stdout);
        if (verbose && opt_level >= 2)
            fprintf(stderr, "rewrite: %d gram, %d reassociated, %d on fewer rows\n", rep.rewrites.gram,
                    rep.rewrites.reassociated, rep.rewrites.rows);
        if (verbose && opt_level >= 1) {
            const struct itr_simplify_stats *st = &rep.simplify;
            fprintf(stderr, "simplify: %d -> %d nodes in %d rounds: %d folded, %d merged, %d rewritten, %d dead "
                            "removed, %d scan bodies removed\n", rep.nodes_before, rep.nodes_after, st->iterations,
                    st->folded, st->merged, st->rewritten, st->removed, st->removed_graphs);
        }
        bool cuda = strcmp(target, "cuda") == 0;
        bool with_kernels = cuda || strcmp(target, "llvm") == 0;
        struct kir_plan_kernels kernels = { 0 };
        if (with_kernels && !itr_compile_kernels(p, &kernels, &d)) {
            itr_diags_print(&d, stderr);
            fprintf(stderr, "%s compile: internal error: lowering to kernels failed; please report it\n", PROG);
            itr_diags_free(&d);
            itr_program_free(p);
            front_free(&o);
            free(plan_path);
            return ITR_EXIT_INTERNAL;
        }
        // --target cuda: every schedule's kernels compiled for the GPU too
        // (backends/cuda/cuda_plan.h). A unit NVRTC rejects is our bug.
        struct itr_devcode code = { 0 };
        struct itr_cuda_compile_stats cst = { 0 };
        if (cuda && !itr_cuda_compile_plan(p, &kernels, 0, &code, &cst, &d)) {
            itr_diags_print(&d, stderr);
            fprintf(stderr, "%s compile: internal error: compiling the kernels for CUDA failed; please report it\n", PROG);
            itr_devcode_free(&code);
            kir_plan_kernels_free(&kernels);
            itr_diags_free(&d);
            itr_program_free(p);
            front_free(&o);
            free(plan_path);
            return ITR_EXIT_INTERNAL;
        }
        p->kernels = with_kernels ? &kernels : NULL;
        p->devcode = cuda ? &code : NULL;
        if (!itr_plan_write(p, target, dest, &d)) rc = ITR_EXIT_USER;
        p->kernels = NULL;   // kernels and code are this function's
        p->devcode = NULL;
        itr_devcode_free(&code);
        itr_diags_print(&d, stderr);
        if (rc == ITR_EXIT_OK) {
            printf("wrote %s: %d entr%s, %d nodes, target %s", dest, count_entries(p),
                   count_entries(p) == 1 ? "y" : "ies", itr_program_node_count(p), target);
            if (with_kernels) {
                int nk = 0;
                for (int i = 0; i < kernels.n; i++)
                    if (!kernels.items[i].f64) nk += kernels.items[i].s->n_kernels;
                printf(", %d fused kernels", nk);
            }
            if (cuda)
                printf(", CUDA code for %d schedules (%d units on %d threads): %.1f MiB of cubins, %.1f MiB of PTX",
                       cst.schedules, cst.units, cst.threads, (double)cst.cubin_bytes / (1 << 20),
                       (double)cst.ptx_bytes / (1 << 20));
            printf("\n");
        }
        kir_plan_kernels_free(&kernels);
        if (rc == ITR_EXIT_OK && itr_program_train_graph(p)) {
            char sum[160];
            train_summary(p, sum, sizeof sum);
            printf("train step (%s): %s\n", itr_optimizer_kind_name(p->optimizer.kind), sum);
        }
    }
    itr_program_free(p);
    itr_diags_free(&d);
    free(plan_path);
    front_free(&o);
    return rc;
}

// ------------------------------------------------------------ dump

// The CUDA code a --target cuda plan carries: per schedule, each image's size.
static void dump_devcode(const struct itr_program *p) {
    if (!p->devcode || !p->devcode->n) return;
    printf("\ncuda code (%d schedules):\n", p->devcode->n);
    for (int i = 0; i < p->devcode->n; i++) {
        const struct itr_devcode_unit *u = &p->devcode->items[i];
        printf("  %s (%s):", p->graphs[u->graph]->name, u->f64 ? "f64" : "f32");
        for (int k = 0; k < u->n_images; k++)
            printf("%s %s %s %zu bytes", k ? "," : "", u->images[k].arch,
                   strncmp(u->images[k].arch, "sm_", 3) == 0 ? "cubin" : "PTX", u->images[k].size);
        printf("\n");
    }
}

static int cmd_dump(const char *operand, int argc, char **argv) {
    (void)operand;
    const char *file = NULL;
    struct itr_cli_list dims = { 0 };
    bool kernels = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        int r = itr_cli_opt_list(&cli, "dump", argc, argv, &i, NULL, "--dim", &dims, NULL);
        if (r < 0) rc = ITR_EXIT_USER;
        else if (r > 0) continue;
        else if (strcmp(argv[i], "--kernels") == 0) kernels = true;
        else if (argv[i][0] == '-' && argv[i][1]) rc = usage_error("dump", "unknown option '%s'", argv[i]);
        else rc = positional_file("dump", &file, argv[i]);
    }
    if (rc == ITR_EXIT_OK && !file) rc = usage_error("dump", "%s", "missing FILE.plan");
    if (rc != ITR_EXIT_OK) { free(dims.v); return rc; }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    memset(&info, 0, sizeof info);
    struct itr_program *p = itr_plan_read(file, &info, &d);
    // The memory plan's sizes: --dim values first, the plan's defaults for
    // the rest, as itr-run binds them.
    struct itr_dim_bindings b = { 0 };
    if (p) {
        itr_bindings_init(&b, p);
        for (int i = 0; i < dims.n; i++)
            if (!itr_bindings_set_arg(&b, p, dims.v[i], &d)) rc = ITR_EXIT_USER;
        itr_bind_defaults(&b, p);
    }
    if (p && rc == ITR_EXIT_OK) {
        itr_dump_plan(stdout, file, p, &info);
        dump_devcode(p);
        if (!itr_dump_memory_plan(stdout, p, &b, &d)) rc = ITR_EXIT_USER;   // e.g. a --dim making a size negative
        if (kernels) {
            if (!p->kernels) printf("\nkernels: none (the plan's target is %s; compile with --target llvm or cuda)\n", info.target);
            for (int i = 0; p->kernels && i < p->kernels->n; i++) {
                const struct kir_plan_schedule *ks = &p->kernels->items[i];
                printf("\n");
                kir_schedule_print(ks->s, p->graphs[ks->graph], stdout);
            }
        }
    } else {
        rc = ITR_EXIT_USER;
    }
    itr_diags_print(&d, stderr);
    if (p) itr_bindings_free(&b);
    itr_program_free(p);
    itr_diags_free(&d);
    free(dims.v);
    return rc;
}

// ------------------------------------------------------------ ops

static int cmd_ops(const char *operand, int argc, char **argv) {
    (void)operand;
    bool markdown = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) markdown = true;
        else return usage_error("ops", "unexpected argument '%s'", argv[i]);
    }
    itr_print_op_reference(stdout, markdown);
    return ITR_EXIT_OK;
}

// ------------------------------------------------------------ help

static const struct itr_cli_command commands[] = {
    { "check", "FILE.ir [-I DIR]... [-D NAME=VALUE]... [--data DIR]", "parse, elaborate and verify a model",
      "  -I DIR, --include DIR      search DIR for imports (after the importing file's folder,\n"
      "                             before the installed models/ directory); repeatable\n"
      "  -D NAME=VALUE              override a model config parameter or a dim's default; repeatable\n"
      "  --data DIR                 take img_dim, R, V, tok_dim (and a caption length the model\n"
      "                             fixes with a dim default) from a data set; -D wins\n"
      "Prints 'FILE: ok: N entries, M params (K values)' or every error as file:line:col.\n"
      "A file without a model (a module library) has every module in it checked.\n",
      cmd_check },
    { "print", "FILE.ir [-I DIR]... [-D NAME=VALUE]... [--data DIR]", "print the canonical form (modules inlined)",
      "  -I DIR, -D, --data         as for 'itrc check'\n"
      "The output parses back to the same program.\n",
      cmd_print },
    { "compile", "FILE.ir [-o FILE.plan] [--target llvm|cuda|ref] [-O0|-O1|-O2] [--no-rewrite gram|reassoc|rows|all] [-v] [-I DIR]... [-D NAME=VALUE]... "
      "[--data DIR]",
      "compile a model into a plan",
      "  -o FILE, --output FILE     where to write the plan (default: FILE.ir with .plan)\n"
      "  --target T                 llvm: also fuse and lower every entry to kernels, which itr-run\n"
      "                             JIT-compiles (the default where LLVM is present); cuda: the\n"
      "                             same kernels, also compiled by NVRTC to cubins for sm_80 and\n"
      "                             sm_90 and to PTX, which itr-run --backend cuda loads; ref: the\n"
      "                             graphs only, for the reference interpreter\n"
      "  -O0                        no graph simplification\n"
      "  -O1                        constant folding, CSE, DCE, exact algebraic identities; outputs\n"
      "                             bit-for-bit those of -O0\n"
      "  -O2                        -O1 and the contraction rewrites, which reorder sums (default)\n"
      "  --no-rewrite R             turn rewrite R off at -O2: gram, reassoc, rows, or all (repeatable)\n"
      "  -v, --verbose              report what the passes did\n"
      "  -I DIR, -D, --data         as for 'itrc check'\n"
      "The plan is written atomically: on any error no file is left behind. A train entry becomes\n"
      "the whole training step, forward + backward + optimizer (docs/training.md).\n",
      cmd_compile },
    { "dump", "FILE.plan [--dim NAME=VALUE]... [--kernels]", "print a plan readably",
      "  --dim NAME=VALUE           bind a dim for the memory plan (default: the plan's defaults);\n"
      "                             repeatable\n"
      "  --kernels                  also print the fused kernels and schedules (targets llvm, cuda)\n"
      "Prints the header (format and compiler versions, fingerprint, target), symbols, parameters\n"
      "with their initialisers and sizes, entry points with their signatures, every graph, one\n"
      "node per line, and the memory plan: the arena bytes each entry point needs per run. A\n"
      "--target cuda plan also lists its CUDA code: each schedule's cubins and PTX, with sizes.\n",
      cmd_dump },
    { "ops", "[--markdown]", "the op reference, generated from the op table",
      "  --markdown                 print the table docs/ops.md embeds\n",
      cmd_ops },
    { "import", "MODEL.onnx -o FILE.ir [--weights FILE.safetensors] [--name NAME] [--entry NAME]",
      "import an ONNX model as a .ir file",
      "  -o FILE, --output FILE     the .ir to write (one model, its entry point and parameters)\n"
      "  --weights FILE             float initializers become parameters, their values written to\n"
      "                             FILE (safetensors); without it they are constants in the .ir\n"
      "  --name NAME                the model's name (default: the ONNX graph's name)\n"
      "  --entry NAME               the entry point's name (default: forward)\n"
      "Files are written atomically. 'itrc compile MODEL.onnx' compiles a model directly\n"
      "(docs/onnx.md lists the supported ops).\n",
      cmd_import },
    { "export", "FILE.plan|FILE.ir --entry NAME -o FILE.onnx [--weights W.safetensors] [-D NAME=VALUE]... [-I DIR]...",
      "export an inference entry as an ONNX model",
      "  -e NAME, --entry NAME      the entry point (encode_image, encode_text, score, ...)\n"
      "  -o FILE, --output FILE     the .onnx to write (opset 17), atomically\n"
      "  -w FILE, --weights FILE    the parameters' values (safetensors), written as initializers;\n"
      "                             needed when the entry uses parameters\n"
      "  -D NAME=VALUE, -I DIR      for a .ir, compiled first: as for 'itrc compile'\n"
      "Dims the weights do not fix and the inputs carry become dynamic (dim_param); a scan\n"
      "becomes an ONNX Scan (docs/onnx.md, \"Export\", lists the op mapping).\n",
      cmd_export },
};

static const struct itr_cli cli = {
    .prog = PROG,
    .description = "The itrc compiler for image-text retrieval models (docs/cli.md).",
    .footer = "\n  " PROG " COMMAND --help   options of a command\n"
              "  " PROG " --version        version and plan format\n",
    .name_width = 9,
    .plan_format = ITR_PLAN_FORMAT_VERSION,
    .attached_short = true,
    .commands = commands,
    .n_commands = (int)(sizeof commands / sizeof *commands),
};

int main(int argc, char **argv) { return itr_cli_main(&cli, argc, argv); }
