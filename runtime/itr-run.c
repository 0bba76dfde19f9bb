// itr-run: the runtime's command line (docs/cli.md). Thin by design:
// argument parsing here, the work in runtime/ and backends/.
//
//   itr-run FILE.plan COMMAND [ARGS]
//
// Commands are rows of one table; a new one (train, eval, query, ...) is a
// function and a row. Exit codes: 0 ok, 1 user error, 2 internal error.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "ir/kir.h"
#include "ir/memplan.h"
#include "ir/plan.h"
#include "ir/cli.h"
#include "runtime/data.h"
#include "runtime/eval.h"
#include "runtime/rank.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/session.h"
#include "runtime/train.h"
#include "runtime/trainer.h"

#define PROG "itr-run"

static const struct itr_cli cli;

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    return itr_cli_usage_error(&cli, cmd, fmt, arg);
}

static int opt_value(const char *cmd, int argc, char **argv, int *i, const char *shrt, const char *lng,
                     const char **val) {
    return itr_cli_opt_value(&cli, cmd, argc, argv, i, shrt, lng, val);
}

// "--dim NAME=VALUE", repeatable; checked when bound (bind_dims).
static int opt_dim(const char *cmd, int argc, char **argv, int *i, struct itr_cli_list *dims) {
    return itr_cli_opt_list(&cli, cmd, argc, argv, i, NULL, "--dim", dims, NULL);
}

// "--in NAME=FILE.npy" or "--in NAME=scalar:VALUE", repeatable (read_inputs).
static int opt_in(const char *cmd, int argc, char **argv, int *i, struct itr_cli_list *ins) {
    return itr_cli_opt_list(&cli, cmd, argc, argv, i, NULL, "--in", ins, "--in expects NAME=FILE.npy, got '%s'");
}

static bool parse_int64(const char *s, int64_t *out);

// "--backend NAME" and "--threads N", which every command accepts: the
// backend its session runs on and the threads it may use (docs/backends.md).
struct exec_opts {
    const char *backend;   // NULL: the default
    int threads;           // 0: the backend's default
    int device;            // --device N + 1 (0: not given): the cuda backend's GPU
    const char *cmd;       // the command, for the usage error of --device without --backend cuda
};

#define EXEC_OPTS_HELP                                                                              \
    "  --backend NAME             run on this backend (default: llvm for a plan with kernels where\n" \
    "                             LLVM is present, else ref; 'itr-run --help' lists them)\n" \
    "  --threads N                threads the backend may use (the ref backend uses one)\n" \
    "  --device N                 with --backend cuda: the GPU to run on (default 0, or\n" \
    "                             ITRC_CUDA_DEVICE)\n"

// 1: matched (stored in x), 0: neither option, -1: an error (reported).
static int opt_exec(const char *cmd, int argc, char **argv, int *i, struct exec_opts *x) {
    const char *v;
    int r;
    if ((r = opt_value(cmd, argc, argv, i, NULL, "--backend", &v)) != 0) {
        if (r < 0) return -1;
        if (!itr_backend_find(v, NULL)) {
            char list[256], msg[512];
            itr_backend_list(list, sizeof list);
            snprintf(msg, sizeof msg, "unknown backend '%%s'; available: %s", list);
            usage_error(cmd, msg, v);
            return -1;
        }
        x->backend = v;
        x->cmd = cmd;
        if (x->device && strcmp(v, "cuda") != 0) {
            usage_error(cmd, "--device applies to --backend cuda only, not '%s'", v);
            return -1;
        }
        return 1;
    }
    if ((r = opt_value(cmd, argc, argv, i, NULL, "--device", &v)) != 0) {
        if (r < 0) return -1;
        int64_t n;
        x->cmd = cmd;
        if (!parse_int64(v, &n) || n < 0 || n > 1024) {
            usage_error(cmd, "--device expects a GPU number from 0 to 1024, got '%s'", v);
            return -1;
        }
        if (x->backend && strcmp(x->backend, "cuda") != 0) {
            usage_error(cmd, "--device applies to --backend cuda only, not '%s'", x->backend);
            return -1;
        }
        x->device = (int)n + 1;
        return 1;
    }
    if ((r = opt_value(cmd, argc, argv, i, NULL, "--threads", &v)) != 0) {
        if (r < 0) return -1;
        int64_t n;
        if (!parse_int64(v, &n) || n < 1 || n > 1024) {
            usage_error(cmd, "--threads expects an integer from 1 to 1024, got '%s'", v);
            return -1;
        }
        x->threads = (int)n;
        return 1;
    }
    return 0;
}

// --device N: only with --backend cuda (a usage error otherwise, also when
// no --backend was given), handed to the backend before it opens.
static bool exec_device(const struct exec_opts *x, struct itr_diags *d) {
    if (!x->device) return true;
    if (!x->backend) {
        usage_error(x->cmd, "%s", "--device applies to --backend cuda only; add --backend cuda");
        return false;
    }
    const struct itr_backend *be = itr_backend_find(x->backend, d);
    return be && be->select_device && be->select_device(x->device - 1, d);
}

// The command's session on p (the backend name was checked when parsed).
static struct itr_session *open_session(const struct itr_program *p, const struct exec_opts *x, bool f64,
                                        struct itr_diags *d) {
    struct itr_session_options so = { .f64 = f64, .threads = x->threads };
    if (!exec_device(x, d)) return NULL;
    return itr_session_new(p, x->backend, &so, d);
}

// Whether a tensor name is one the original PyTorch code's checkpoints use
// and our models do not (DataParallel's "module.", the encoders' img_enc. /
// txt_enc., nn.GRU's weight_ih_l0, weight_norm's weight_g / weight_v).
static bool checkpoint_name(const char *name) {
    static const char *const prefixes[] = { "module.", "img_enc.", "txt_enc.", "sim_enc.", "image_encoder.",
                                            "text_encoder." };
    static const char *const parts[] = { "weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l" };
    static const char *const suffixes[] = { ".weight_g", ".weight_v" };
    for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes; k++)
        if (strncmp(name, prefixes[k], strlen(prefixes[k])) == 0) return true;
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
        if (strstr(name, parts[k])) return true;
    size_t n = strlen(name);
    for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
        size_t m = strlen(suffixes[k]);
        if (n >= m && strcmp(name + n - m, suffixes[k]) == 0) return true;
    }
    return false;
}

// Notes on weights the plan cannot take as they are, added to d before the
// errors the run will report (call before the set is adopted by a session):
// f64 parameters without --f64, and the tensor names of an original PyTorch
// checkpoint, which itr-convert maps onto ours.
static void weights_hints(const struct itr_program *p, const struct itr_tensor_set *w, const char *path, bool f64,
                          struct itr_diags *d) {
    const char *wide = NULL, *orig = NULL;
    int n_params = 0;
    for (int k = 0; k < w->n; k++) {
        const char *nm = w->items[k].name;
        int32_t id = itr_program_find_param(p, nm);
        if (id >= 0) {
            n_params++;
            if (!wide && !f64 && w->items[k].tensor->dtype == ITR_F64 && p->params[id].type.dtype == ITR_F32) wide = nm;
        } else if (!orig && checkpoint_name(nm)) {
            orig = nm;
        }
    }
    if (wide)
        itr_diag_note(d, ITR_NOLOC, "%s holds f64 parameters (e.g. '%s') where the plan's are f32: run with --f64 to "
                      "compute in f64 with them, or convert the file to f32", path, wide);
    if (orig && n_params < w->n - n_params)
        itr_diag_note(d, ITR_NOLOC, "%s looks like a checkpoint of the original PyTorch code (tensor '%s'); convert it "
                      "with 'itr-convert MODEL CHECKPOINT -o W.safetensors' and pass W.safetensors instead", path, orig);
}

static struct itr_program *load_plan(const char *path, struct itr_plan_info *info, struct itr_diags *d) {
    memset(info, 0, sizeof *info);
    return itr_plan_read(path, info, d);
}

// Sets up b for p and binds the --dim values.
static bool bind_dims(const struct itr_cli_list *dims, struct itr_dim_bindings *b, const struct itr_program *p,
                      struct itr_diags *d) {
    itr_bindings_init(b, p);
    bool ok = true;
    for (int i = 0; i < dims->n; i++)
        if (!itr_exec_bind_dim_arg(b, p, dims->v[i], d)) ok = false;
    return ok;
}

// Creates dir and its missing parents.
static bool make_dirs(const char *dir, struct itr_diags *d) {
    char *tmp = strdup(dir);
    if (!tmp) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    bool ok = true;
    for (char *s = tmp + 1; ok; s++) {
        bool last = *s == 0;
        if (*s == '/' || last) {
            char saved = *s;
            *s = 0;
            struct stat st;
            if (stat(tmp, &st) != 0) {
                if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                    itr_diag_error(d, ITR_NOLOC, "cannot create directory '%s': %s", tmp, strerror(errno));
                    ok = false;
                }
            } else if (!S_ISDIR(st.st_mode)) {
                itr_diag_error(d, ITR_NOLOC, "'%s' exists and is not a directory", tmp);
                ok = false;
            }
            *s = saved;
        }
        if (last) break;
    }
    free(tmp);
    return ok;
}

static int finish(struct itr_diags *d, int rc) {
    itr_diags_print(d, stderr);
    itr_diags_free(d);
    return rc;
}

// ------------------------------------------------------------ run

// "--in seed=scalar:7": a rank-0 input given on the command line (seeds,
// step counters), typed as the entry declares it, so no .npy file is needed.
static struct itr_tensor *scalar_input(const struct itr_graph *g, const char *name, const char *text,
                                       struct itr_diags *d) {
    int32_t v = -1;
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->values[g->inputs[i]].name, name) == 0) v = g->inputs[i];
    if (v < 0) {
        itr_diag_error(d, ITR_NOLOC, "entry '%s' has no input '%s'", g->name, name);
        return NULL;
    }
    const struct itr_type *t = &g->values[v].type;
    if (t->rank != 0) {
        char ts[256];
        itr_type_format(g->prog, t, ts, sizeof ts);
        itr_diag_error(d, ITR_NOLOC, "input '%s' is %s; scalar:VALUE only gives rank-0 inputs", name, ts);
        return NULL;
    }
    char *end;
    double x = strtod(text, &end);
    if (end == text || *end) {
        itr_diag_error(d, ITR_NOLOC, "input '%s': 'scalar:%s' is not a number", name, text);
        return NULL;
    }
    if (itr_dtype_is_int(t->dtype) && x != (double)(int64_t)x) {
        itr_diag_error(d, ITR_NOLOC, "input '%s' is %s; '%s' is not an integer", name, itr_dtype_name(t->dtype), text);
        return NULL;
    }
    struct itr_tensor *s = itr_tensor_new(t->dtype, 0, NULL);
    if (!s) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    if (t->dtype == ITR_I64) ((int64_t *)s->data)[0] = strtoll(text, NULL, 10);
    else itr_tensor_set(s, 0, x);
    return s;
}

static const struct itr_value *entry_input(const struct itr_graph *g, const char *name) {
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->values[g->inputs[i]].name, name) == 0) return &g->values[g->inputs[i]];
    return NULL;
}

// Integer inputs in the other integer width than the entry declares: word
// ids and lengths are i32 in the models, but numpy and PyTorch write int64
// (docs/modules.md takes ids and lengths in either). i64 values are narrowed
// when every one fits; the first that does not is an error. *t is replaced.
static bool convert_int_input(const struct itr_graph *g, const char *name, const char *src, struct itr_tensor **t,
                              struct itr_diags *d) {
    const struct itr_value *v = entry_input(g, name);
    if (!v || (*t)->dtype == v->type.dtype) return true;
    bool narrow = (*t)->dtype == ITR_I64 && v->type.dtype == ITR_I32;
    if (!narrow && !((*t)->dtype == ITR_I32 && v->type.dtype == ITR_I64)) return true;   // binding reports it
    struct itr_tensor *c = itr_tensor_new(v->type.dtype, (*t)->rank, (*t)->shape);
    if (!c) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    int64_t n = itr_tensor_numel(*t);
    for (int64_t k = 0; k < n; k++) {
        if (!narrow) {
            ((int64_t *)c->data)[k] = ((const int32_t *)(*t)->data)[k];
            continue;
        }
        int64_t x = ((const int64_t *)(*t)->data)[k];
        if (x < INT32_MIN || x > INT32_MAX) {
            itr_diag_error(d, ITR_NOLOC, "input '%s' (%s): value %" PRId64 " at flat index %" PRId64 " does not fit "
                           "i32, the entry's dtype for it", name, src, x, k);
            itr_tensor_free(c);
            return false;
        }
        ((int32_t *)c->data)[k] = (int32_t)x;
    }
    itr_tensor_free(*t);
    *t = c;
    return true;
}

// Reads the --in values (NAME=FILE.npy or NAME=scalar:VALUE) of entry g into inputs.
static bool read_inputs(const struct itr_cli_list *ins, const struct itr_graph *g, struct itr_tensor_set *inputs,
                        struct itr_diags *d) {
    for (int i = 0; i < ins->n; i++) {
        const char *eq = strchr(ins->v[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - ins->v[i]), ins->v[i]);
        if (itr_tensor_set_get(inputs, name)) {
            itr_diag_error(d, ITR_NOLOC, "input '%s' is given twice", name);
            return false;
        }
        struct itr_tensor *t = strncmp(eq + 1, "scalar:", 7) == 0 ? scalar_input(g, name, eq + 8, d)
                                                                 : itr_npy_read(eq + 1, d);
        if (!t) return false;
        if (!convert_int_input(g, name, eq + 1, &t, d)) {
            itr_tensor_free(t);
            return false;
        }
        itr_tensor_set_put(inputs, name, t);
    }
    return true;
}

// The sequence input a lengths input counts positions of: X_lengths pairs
// with an input named X_... (token_lengths: token_feats, cap_lengths:
// cap_words); else word ids (an integer input of rank 2) with the same batch
// dim; else the only rank-3 input with it (SGRAF's u: f32[B, L, D]).
static const struct itr_value *lengths_partner(const struct itr_graph *g, const struct itr_value *lv) {
    const char *us = strrchr(lv->name, '_');
    size_t pre = us ? (size_t)(us - lv->name) + 1 : 0;
    const struct itr_value *ints = NULL, *rank3 = NULL;
    int n_rank3 = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        if (v == lv || v->type.rank < 2 || v->type.dims[0] != lv->type.dims[0]) continue;
        if (pre && strncmp(v->name, lv->name, pre) == 0) return v;
        if (!ints && itr_dtype_is_int(v->type.dtype) && v->type.rank == 2) ints = v;
        if (v->type.rank == 3 && itr_dtype_is_float(v->type.dtype)) {
            rank3 = v;
            n_rank3++;
        }
    }
    return ints ? ints : n_rank3 == 1 ? rank3 : NULL;
}

// Every caption length must lie in 1 .. the padded length of its sequence:
// a 0 makes the masked softmax and the GRU's last state undefined (NaN), one
// past the padding reads positions that are not the caption's; the model
// code would clamp or propagate either silently.
static bool check_lengths(const struct itr_cli_list *ins, const struct itr_graph *g,
                          const struct itr_tensor_set *inputs, struct itr_diags *d) {
    bool ok = true;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *lv = &g->values[g->inputs[i]];
        size_t n = strlen(lv->name);
        if (lv->type.rank != 1 || !itr_dtype_is_int(lv->type.dtype) ||
            !(strcmp(lv->name, "lengths") == 0 || (n > 8 && strcmp(lv->name + n - 8, "_lengths") == 0)))
            continue;
        const struct itr_value *sv = lengths_partner(g, lv);
        const struct itr_tensor *lt = itr_tensor_set_get(inputs, lv->name);
        const struct itr_tensor *st = sv ? itr_tensor_set_get(inputs, sv->name) : NULL;
        if (!lt || !st || lt->rank != 1 || st->rank < 2 || !itr_dtype_is_int(lt->dtype)) continue;
        int64_t L = st->shape[1], first = -1, n_bad = 0, first_v = 0;
        for (int64_t c = 0; c < lt->shape[0]; c++) {
            int64_t x = lt->dtype == ITR_I64 ? ((const int64_t *)lt->data)[c] : ((const int32_t *)lt->data)[c];
            if (x >= 1 && x <= L) continue;
            if (first < 0) {
                first = c;
                first_v = x;
            }
            n_bad++;
        }
        if (first < 0) continue;
        const char *src = "";
        size_t ln = strlen(lv->name);
        for (int k = 0; k < ins->n; k++)
            if (strncmp(ins->v[k], lv->name, ln) == 0 && ins->v[k][ln] == '=') src = ins->v[k] + ln + 1;
        char sh[128];
        itr_shape_format(st->rank, st->shape, sh, sizeof sh);
        itr_diag_error(d, ITR_NOLOC, "input '%s' (%s): caption %" PRId64 " has length %" PRId64 "; expected 1 to %"
                       PRId64 ", the padded length of input '%s' %s%s", lv->name, src, first, first_v, L, sv->name,
                       itr_dtype_name(st->dtype), sh);
        if (n_bad > 1)
            itr_diag_note(d, ITR_NOLOC, "input '%s': %" PRId64 " lengths in all are outside 1 to %" PRId64, lv->name,
                          n_bad, L);
        ok = false;
    }
    return ok;
}

static int cmd_run(const char *plan, int argc, char **argv) {
    const char *entry = NULL, *weights_path = NULL, *out_dir = ".";
    struct itr_cli_list ins = { 0 }, dims = { 0 };
    struct exec_opts x = { 0 };
    bool f64 = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_exec("run", argc, argv, &i, &x)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_in("run", argc, argv, &i, &ins)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_value("run", argc, argv, &i, "-w", "--weights", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else if (weights_path) rc = usage_error("run", "%s", "--weights given twice");
            else weights_path = v;
        } else if ((r = opt_dim("run", argc, argv, &i, &dims)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_value("run", argc, argv, &i, NULL, "--out", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out_dir = v;
        } else if (strcmp(argv[i], "--f64") == 0) {
            f64 = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("run", "unknown option '%s' (accepted: --in, --weights, --dim, --out, --f64, --backend, --threads, --device)", argv[i]);
        } else if (entry) {
            rc = usage_error("run", "unexpected extra argument '%s'", argv[i]);
        } else {
            entry = argv[i];
        }
    }
    if (rc == ITR_EXIT_OK && !entry) rc = usage_error("run", "%s", "missing ENTRY (the entry point to run)");
    if (rc != ITR_EXIT_OK) { free(ins.v); free(dims.v); return rc; }

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    const struct itr_graph *g = p ? itr_exec_find_entry(p, entry, &d) : NULL;
    struct itr_tensor_set inputs, weights, outputs;
    itr_tensor_set_init(&inputs);
    itr_tensor_set_init(&weights);
    itr_tensor_set_init(&outputs);
    struct itr_dim_bindings b = { 0 };
    bool ok = g != NULL;
    if (ok) ok = bind_dims(&dims, &b, p, &d);
    if (ok) ok = read_inputs(&ins, g, &inputs, &d) && check_lengths(&ins, g, &inputs, &d);
    if (ok && weights_path) ok = itr_safetensors_read(weights_path, &weights, &d);
    if (ok && weights_path) weights_hints(p, &weights, weights_path, f64, &d);
    struct itr_session *ss = ok ? open_session(p, &x, f64, &d) : NULL;
    if (ss && weights_path) itr_session_adopt(ss, &weights, weights_path, &d);
    ok = ss && itr_session_run_graph(ss, g, &inputs, &b, &outputs, &d);
    // Output names become file names: refuse ones that would leave DIR.
    for (int k = 0; ok && k < outputs.n; k++) {
        const char *nm = outputs.items[k].name;
        if (!nm[0] || strchr(nm, '/') || strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) {
            itr_diag_error(&d, ITR_NOLOC, "output '%s' of entry '%s' cannot be used as a file name", nm, entry);
            ok = false;
        }
    }
    if (ok && outputs.n) ok = make_dirs(out_dir, &d);
    for (int k = 0; ok && k < outputs.n; k++) {
        size_t len = strlen(out_dir) + strlen(outputs.items[k].name) + 8;
        char *path = malloc(len);
        if (!path) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
        snprintf(path, len, "%s/%s.npy", out_dir, outputs.items[k].name);
        const struct itr_tensor *t = outputs.items[k].tensor;
        if (itr_npy_write(path, t, &d)) {
            char shape[256];
            itr_shape_format(t->rank, t->shape, shape, sizeof shape);
            printf("%s: %s %s -> %s\n", outputs.items[k].name, itr_dtype_name(t->dtype), shape, path);
        } else {
            ok = false;
        }
        free(path);
    }
    if (p && b.value) itr_bindings_free(&b);
    itr_tensor_set_free(&inputs);
    itr_tensor_set_free(&weights);
    itr_tensor_set_free(&outputs);
    itr_session_free(ss);
    itr_program_free(p);
    free(ins.v);
    free(dims.v);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ init

static int cmd_init(const char *plan, int argc, char **argv) {
    const char *out = NULL, *seed_s = "0";
    struct itr_cli_list dims = { 0 };
    struct exec_opts x = { 0 };
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_exec("init", argc, argv, &i, &x)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_value("init", argc, argv, &i, NULL, "--seed", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else seed_s = v;
        } else if ((r = opt_value("init", argc, argv, &i, "-o", "--output", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out = v;
        } else if ((r = opt_dim("init", argc, argv, &i, &dims)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("init", "unknown option '%s' (accepted: --seed, -o/--output, --dim, --backend, --threads, --device)", argv[i]);
        } else {
            rc = usage_error("init", "unexpected argument '%s'", argv[i]);
        }
    }
    uint64_t seed = 0;
    if (rc == ITR_EXIT_OK) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(seed_s, &end, 10);
        if (!*seed_s || *end || errno || seed_s[0] == '-')
            rc = usage_error("init", "--seed expects a non-negative integer, got '%s'", seed_s);
        seed = s;
    }
    if (rc == ITR_EXIT_OK && !out) rc = usage_error("init", "%s", "missing -o FILE.safetensors");
    if (rc != ITR_EXIT_OK) { free(dims.v); return rc; }

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    bool ok = p != NULL;
    struct itr_dim_bindings b = { 0 };
    if (ok) ok = bind_dims(&dims, &b, p, &d) && itr_init_params(p, seed, &b, &w, &d);
    // The fresh parameters pass through a session like any others, so that
    // a device backend holds them as it will in training; what is written
    // is the session's view of them.
    struct itr_session *ss = ok ? open_session(p, &x, false, &d) : NULL;
    ok = ok && ss;
    if (ok) {
        itr_session_adopt(ss, &w, NULL, &d);
        itr_session_save(ss, &w);
    }
    if (ok) {
        char seed_buf[32];
        snprintf(seed_buf, sizeof seed_buf, "%" PRIu64, seed);
        itr_tensor_set_meta(&w, "itr.plan_fingerprint", info.fingerprint);
        itr_tensor_set_meta(&w, "itr.seed", seed_buf);
        if (p->name) itr_tensor_set_meta(&w, "itr.model", p->name);
        ok = itr_safetensors_write(out, &w, &d);
    }
    if (ok) {
        int64_t total = 0;
        for (int k = 0; k < w.n; k++) total += itr_tensor_numel(w.items[k].tensor);
        printf("wrote %s: %d param%s, %" PRId64 " values (seed %" PRIu64 ")\n", out, w.n, w.n == 1 ? "" : "s", total,
               seed);
    }
    if (b.value) itr_bindings_free(&b);
    itr_tensor_set_free(&w);
    itr_session_free(ss);
    itr_program_free(p);
    free(dims.v);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ step

static bool parse_int64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return false;
    *out = v;
    return true;
}

static int cmd_step(const char *plan, int argc, char **argv) {
    const char *weights_path = NULL, *out = NULL, *lr_s = NULL, *step_s = NULL, *seed_s = NULL;
    struct itr_cli_list ins = { 0 }, dims = { 0 };
    struct exec_opts x = { 0 };
    bool f64 = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_exec("step", argc, argv, &i, &x)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_in("step", argc, argv, &i, &ins)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = opt_value("step", argc, argv, &i, "-w", "--weights", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else weights_path = v;
        } else if ((r = opt_value("step", argc, argv, &i, "-o", "--out", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out = v;
        } else if ((r = opt_value("step", argc, argv, &i, NULL, "--lr", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else lr_s = v;
        } else if ((r = opt_value("step", argc, argv, &i, NULL, "--step", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else step_s = v;
        } else if ((r = opt_value("step", argc, argv, &i, NULL, "--seed", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else seed_s = v;
        } else if ((r = opt_dim("step", argc, argv, &i, &dims)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if (strcmp(argv[i], "--f64") == 0) {
            f64 = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("step", "unknown option '%s' (accepted: --in, --weights, --out, --lr, --step, --seed, "
                             "--dim, --f64, --backend, --threads, --device)", argv[i]);
        } else {
            rc = usage_error("step", "unexpected argument '%s'", argv[i]);
        }
    }
    double lr = 0;
    int64_t step = 0, seed = 0;
    if (rc == ITR_EXIT_OK && lr_s) {
        char *end;
        errno = 0;
        lr = strtod(lr_s, &end);
        if (!*lr_s || *end || errno || !(lr >= 0) || lr > 1e30)
            rc = usage_error("step", "--lr expects a non-negative number, got '%s'", lr_s);
    }
    if (rc == ITR_EXIT_OK && step_s && (!parse_int64(step_s, &step) || step < 1))
        rc = usage_error("step", "--step expects a positive integer (steps count from 1), got '%s'", step_s);
    if (rc == ITR_EXIT_OK && seed_s && (!parse_int64(seed_s, &seed) || seed < 0))
        rc = usage_error("step", "--seed expects a non-negative integer, got '%s'", seed_s);
    if (rc == ITR_EXIT_OK && !weights_path) rc = usage_error("step", "%s", "missing --weights W.safetensors");
    if (rc == ITR_EXIT_OK && !out) rc = usage_error("step", "%s", "missing --out W2.safetensors");
    if (rc != ITR_EXIT_OK) { free(ins.v); free(dims.v); return rc; }

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    const struct itr_graph *g = p ? itr_train_entry(p, &d) : NULL;
    struct itr_tensor_set inputs, state, metrics;
    itr_tensor_set_init(&inputs);
    itr_tensor_set_init(&state);
    itr_tensor_set_init(&metrics);
    struct itr_dim_bindings b = { 0 };
    bool ok = g != NULL;
    if (ok) ok = bind_dims(&dims, &b, p, &d);
    if (ok) ok = read_inputs(&ins, g, &inputs, &d) && check_lengths(&ins, g, &inputs, &d);
    if (ok) ok = itr_safetensors_read(weights_path, &state, &d);
    if (ok) weights_hints(p, &state, weights_path, f64, &d);
    struct itr_train_options to = { .lr = lr, .step = step, .seed = (uint64_t)seed, .f64 = f64, .weights_what = weights_path };
    if (ok) {
        // Defaults: the optimizer's lr; the step after the one W records; the
        // seed W was initialised with.
        if (!lr_s) to.lr = p->optimizer.lr;
        const char *m = itr_tensor_set_get_meta(&state, "itr.step");
        int64_t prev = 0;
        if (!step_s) to.step = m && parse_int64(m, &prev) && prev >= 0 ? prev + 1 : 1;
        m = itr_tensor_set_get_meta(&state, "itr.seed");
        int64_t s0 = 0;
        if (!seed_s && m && parse_int64(m, &s0) && s0 >= 0) to.seed = (uint64_t)s0;
    }
    struct itr_train_result res;
    memset(&res, 0, sizeof res);
    // The parameters and optimizer state move into the session; state keeps
    // its metadata and any other tensors, and gets the updated ones back.
    struct itr_session *ss = ok ? open_session(p, &x, f64, &d) : NULL;
    ok = ok && ss;
    if (ok) itr_session_adopt(ss, &state, weights_path, &d);
    if (ok) ok = itr_session_train_step(ss, &inputs, &b, &to, &metrics, &res, &d);
    if (ok) itr_session_save(ss, &state);
    if (ok) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, to.step);
        itr_tensor_set_meta(&state, "itr.step", buf);
        itr_tensor_set_meta(&state, "itr.plan_fingerprint", info.fingerprint);
        if (p->name) itr_tensor_set_meta(&state, "itr.model", p->name);
        ok = itr_safetensors_write(out, &state, &d);
    }
    if (ok) {
        printf("step %" PRId64 ":", to.step);
        for (int k = 0; k < metrics.n; k++) {
            const struct itr_tensor *t = metrics.items[k].tensor;
            if (itr_tensor_numel(t) == 1) {
                printf("%s %s %.9g", k ? "," : "", metrics.items[k].name, itr_tensor_get(t, 0));
            } else {
                char shape[128];
                itr_shape_format(t->rank, t->shape, shape, sizeof shape);
                printf("%s %s %s%s", k ? "," : "", metrics.items[k].name, itr_dtype_name(t->dtype), shape);
            }
        }
        printf(" (lr %.9g)\n", to.lr);
        printf("wrote %s: %d tensors, step %" PRId64 "\n", out, state.n, to.step);
    }
    if (b.value) itr_bindings_free(&b);
    itr_tensor_set_free(&inputs);
    itr_tensor_set_free(&state);
    itr_tensor_set_free(&metrics);
    itr_session_free(ss);
    itr_program_free(p);
    free(ins.v);
    free(dims.v);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ train

static int cmd_train(const char *plan, int argc, char **argv) {
    struct itr_trainer_options o;
    memset(&o, 0, sizeof o);
    const char *sched = NULL, *lr_s = NULL;
    int rc = ITR_EXIT_OK;
    int64_t n, ckpt = -1, workers = 1;
    struct exec_opts x = { 0 };
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v = NULL;
        int r = 0;
        const char *a = argv[i];
        if ((r = opt_exec("train", argc, argv, &i, &x)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            continue;
        }
#define TRAIN_OPT(lng) ((r = opt_value("train", argc, argv, &i, NULL, lng, &v)) != 0)
#define TRAIN_INT(lng, field, min)                                                                              \
        if (TRAIN_OPT(lng)) {                                                                                   \
            if (r < 0) rc = ITR_EXIT_USER;                                                                      \
            else if (!parse_int64(v, &n) || n < (min))                                                          \
                rc = usage_error("train", lng " expects an integer >= " #min ", got '%s'", v);                  \
            else field = n;                                                                                     \
        }
        TRAIN_INT("--epochs", o.epochs, 1)
        else TRAIN_INT("--batch-size", o.batch_size, 1)
        else TRAIN_INT("--warmup-steps", o.lr.warmup_steps, 0)
        else TRAIN_INT("--max-steps", o.max_steps, 1)
        else TRAIN_INT("--checkpoint-every", ckpt, 0)
        else TRAIN_INT("--workers", workers, 1)
        else if (TRAIN_OPT("--seed")) {
            if (r < 0) rc = ITR_EXIT_USER;
            else if (!parse_int64(v, &n) || n < 0) rc = usage_error("train", "--seed expects a non-negative integer, got '%s'", v);
            else o.seed = (uint64_t)n;
        } else if (TRAIN_OPT("--data")) { if (r < 0) rc = ITR_EXIT_USER; else o.data_dir = v; }
        else if (TRAIN_OPT("--vocab")) { if (r < 0) rc = ITR_EXIT_USER; else o.vocab_path = v; }
        else if (TRAIN_OPT("--out")) { if (r < 0) rc = ITR_EXIT_USER; else o.run_dir = v; }
        else if (TRAIN_OPT("--weights")) { if (r < 0) rc = ITR_EXIT_USER; else o.weights = v; }
        else if (TRAIN_OPT("--eval-split")) { if (r < 0) rc = ITR_EXIT_USER; else o.eval_split = v; }
        else if (TRAIN_OPT("--lr")) { if (r < 0) rc = ITR_EXIT_USER; else lr_s = v; }
        else if (TRAIN_OPT("--lr-schedule")) { if (r < 0) rc = ITR_EXIT_USER; else sched = v; }
        else if (strcmp(a, "--resume") == 0) o.resume = true;
        else if (strcmp(a, "--plot") == 0) o.plot = true;
        else if (strcmp(a, "--f64") == 0) o.f64 = true;
        else if (a[0] == '-' && a[1])
            rc = usage_error("train", "unknown option '%s' (see the list of options)", a);
        else rc = usage_error("train", "unexpected argument '%s'", a);
#undef TRAIN_INT
#undef TRAIN_OPT
    }
    // --checkpoint-every 0 means "only at epoch ends", the library's -1 (its 0 is the default).
    o.checkpoint_every = ckpt == 0 ? -1 : ckpt > 0 ? ckpt : 0;
    o.workers = (int)(workers < 256 ? workers : 256);   // more than batches ahead could ever help
    if (rc == ITR_EXIT_OK && lr_s) {
        char *end;
        errno = 0;
        o.lr.lr = strtod(lr_s, &end);
        if (!*lr_s || *end || errno || !(o.lr.lr >= 0) || o.lr.lr > 1e30)
            rc = usage_error("train", "--lr expects a non-negative number, got '%s'", lr_s);
        o.lr_given = true;
    }
    if (rc == ITR_EXIT_OK && !o.data_dir) rc = usage_error("train", "%s", "missing --data DIR");
    if (rc != ITR_EXIT_OK) return rc;

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    bool ok = p != NULL;
    if (ok && sched) ok = itr_lr_parse(sched, &o.lr, &d);
    else if (ok) {
        // No schedule given: the model family's default, ×0.1 every 15 epochs (models.md §4).
        o.lr.kind = ITR_LR_STEP;
        o.lr.step_epochs = 15;
        o.lr.gamma = 0.1;
    }
    char run_dir[512];
    if (ok) {
        snprintf(run_dir, sizeof run_dir, "runs/%s", p->name ? p->name : "model");
        if (!o.run_dir) o.run_dir = run_dir;
        o.fingerprint = info.fingerprint;
        o.progress = stderr;
        o.backend = x.backend;
        o.threads = x.threads;
        ok = exec_device(&x, &d);
    }
    struct itr_trainer_result res;
    if (ok) ok = itr_trainer_run(p, &o, &res, &d);
    if (!ok && p && o.weights) {
        // The trainer read --weights itself; a failure may be the file's.
        struct itr_tensor_set w;
        itr_tensor_set_init(&w);
        struct itr_diags quiet;
        itr_diags_init(&quiet);
        if (itr_safetensors_read(o.weights, &w, &quiet)) weights_hints(p, &w, o.weights, o.f64, &d);
        itr_diags_free(&quiet);
        itr_tensor_set_free(&w);
    }
    if (ok) {
        printf("trained %" PRId64 " steps, %" PRId64 " epochs in %.1fs; ", res.steps, res.epochs_done, res.seconds);
        if (isnan(res.best_rsum)) printf("no dev evaluation yet\n");
        else printf("best dev rsum %.2f, last %.2f\n", res.best_rsum, res.last_rsum);
        printf("run directory: %s\n", o.run_dir);
    }
    itr_program_free(p);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ info

static int cmd_info(const char *plan, int argc, char **argv) {
    struct exec_opts x = { 0 };
    for (int i = 1; i < argc; i++) {
        int r = opt_exec("info", argc, argv, &i, &x);
        if (r < 0) return ITR_EXIT_USER;
        if (r == 0) return usage_error("info", "unexpected argument '%s'", argv[i]);
    }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    if (!p) return finish(&d, ITR_EXIT_USER);
    struct itr_session *ss = open_session(p, &x, false, &d);
    if (!ss) {
        itr_program_free(p);
        return finish(&d, ITR_EXIT_USER);
    }
    printf("plan %s: model %s, target %s, fingerprint %s (itrc %s, plan format %u)\n", plan,
           p->name ? p->name : "(unnamed)", info.target, info.fingerprint, info.compiler_version, info.format_version);
    printf("dims:");
    if (!p->n_symbols) printf(" (none)");
    for (int i = 0; i < p->n_symbols; i++) {
        if (p->symbols[i].has_default) printf(" %s=%" PRId64, p->symbols[i].name, p->symbols[i].default_value);
        else printf(" %s", p->symbols[i].name);
    }
    printf("\n");
    // Every parameter with its declared type and, where dims are symbolic,
    // its shape at the plan's defaults: what a weights file must hold
    // (optimizer state included, as itr-run init and training write it).
    printf("params: %d\n", p->n_params);
    struct itr_dim_bindings pb;
    itr_bindings_init(&pb, p);
    itr_bind_defaults(&pb, p);
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_type *t = &p->params[i].type;
        char ts[256], sh[256];
        itr_type_format(p, t, ts, sizeof ts);
        int64_t shape[ITR_MAX_RANK];
        bool symbolic = false, known = true;
        for (int k = 0; k < t->rank; k++) {
            int32_t unbound;
            symbolic |= !itr_dim_is_const(p, t->dims[k], NULL);
            if (!itr_dim_eval(p, t->dims[k], pb.value, pb.bound, &shape[k], &unbound)) known = false;
        }
        printf("  %s: %s", p->params[i].name, ts);
        if (symbolic && known) {
            itr_shape_format(t->rank, shape, sh, sizeof sh);
            printf(" = %s", sh);
        } else if (symbolic) {
            printf(" (sized by dims without defaults)");
        }
        if (p->params[i].frozen) printf(", frozen");
        printf("\n");
    }
    itr_bindings_free(&pb);
    printf("backend: %s (%s)\n", itr_session_backend(ss)->name, itr_session_backend(ss)->description);
    printf("entry points:\n");
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        char sig[4096];
        itr_exec_format_signature(p, g, sig, sizeof sig);
        int np = 0;
        for (int k = 0; k < g->n_values; k++) np += g->values[k].kind == ITR_VALUE_PARAM;
        printf("  %s\n      uses %d param%s", sig, np, np == 1 ? "" : "s");
        // The memory plan at the plan's default dims (ir/memplan.h).
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        itr_bind_defaults(&b, p);
        int64_t peak;
        bool unbound[256] = { false };
        if (p->n_symbols <= 256 && itr_memplan_peak_bytes(p, g, &b, &peak, unbound, NULL)) {
            char bytes[32];
            itr_format_bytes(peak, bytes, sizeof bytes);
            printf("; memory plan: peak %s at the default dims", bytes);
            // The LLVM executor's arena over the f32 schedule (docs/memplan.md).
            const struct kir_schedule *ks = kir_plan_kernels_find(p->kernels, i, false);
            if (ks && itr_memplan_schedule_peak_bytes(p, g, ks, &b, &peak, NULL, NULL)) {
                itr_format_bytes(peak, bytes, sizeof bytes);
                printf(" (llvm executor arena %s)", bytes);
            }
        } else {
            printf("; memory plan: needs");
            for (int k = 0; k < p->n_symbols && k < 256; k++)
                if (unbound[k]) printf(" %s", p->symbols[k].name);
            printf(" bound");
        }
        printf("\n");
        itr_bindings_free(&b);
    }
    itr_session_free(ss);
    itr_program_free(p);
    return finish(&d, ITR_EXIT_OK);
}

// ------------------------------------------------------------ eval, query

// The entry's first text input decides whether captions are read as word
// ids (a vocabulary is needed) or as precomputed token features.
static bool reads_words(const struct itr_program *p) {
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind == ITR_GRAPH_ENTRY && strcmp(g->name, "encode_text") == 0 && g->n_inputs > 0)
            return g->values[g->inputs[0]].type.dtype != ITR_F32;
    }
    return true;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (!s) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static bool parse_tile(const char *cmd, const char *opt, const char *v, int64_t *out) {
    if (!parse_int64(v, out) || *out < 1) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s expects a positive integer, got '%%s'", opt);
        usage_error(cmd, msg, v);
        return false;
    }
    return true;
}

// "PLAN:WEIGHTS" as an option's value (--ensemble, --rerank); a usage error
// naming the option otherwise.
static bool plan_weights_spec(const char *cmd, const char *opt, const char *what, const char *v) {
    const char *colon = strrchr(v, ':');
    if (colon && colon != v && colon[1]) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "%s expects %s.plan:WEIGHTS.safetensors, got '%%s'", opt, what);
    usage_error(cmd, msg, v);
    return false;
}

// A member of an evaluation: a plan and its weights.
struct member {
    const char *plan_path, *weights_path;
    char *spec;                       // "plan:weights" copy that the two paths point into
    struct itr_program *p;
    struct itr_tensor_set w;          // the weights' metadata (the parameters are in the session)
    struct itr_session *s;
};

// The plan and weights paths of m from a checked "PLAN:WEIGHTS" spec.
static void member_from_spec(struct member *m, const char *spec) {
    m->spec = strdup(spec);
    if (!m->spec) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    char *colon = strrchr(m->spec, ':');
    *colon = 0;
    m->plan_path = m->spec;
    m->weights_path = colon + 1;
}

static bool member_load(struct member *m, const struct exec_opts *x, bool f64, struct itr_diags *d) {
    struct itr_plan_info info;
    itr_tensor_set_init(&m->w);
    m->p = load_plan(m->plan_path, &info, d);
    if (!m->p || !itr_safetensors_read(m->weights_path, &m->w, d)) return false;
    weights_hints(m->p, &m->w, m->weights_path, f64, d);
    m->s = open_session(m->p, x, f64, d);
    if (m->s) itr_session_adopt(m->s, &m->w, m->weights_path, d);
    return m->s != NULL;
}

// Weights trained by itr-run train record the hash of their vocabulary; word
// ids mean nothing under another vocabulary, so a mismatch is a hard error.
// Weights without the record (fresh from init) are not checked.
static bool member_check_vocab(const struct member *m, const struct itr_vocab *v, const char *vocab_path,
                               struct itr_diags *d) {
    const char *trained = itr_tensor_set_get_meta(&m->w, "itr.vocab_hash");
    if (!trained) return true;
    char have[17];
    snprintf(have, sizeof have, "%016" PRIx64, itr_vocab_hash(v));
    if (strcmp(trained, have) == 0) return true;
    itr_diag_error(d, ITR_NOLOC, "%s was trained with vocabulary %s, but %s has hash %s; evaluate with the "
                   "vocabulary of the training run", m->weights_path, trained, vocab_path, have);
    return false;
}

static void print_recall_table(const struct itr_recall *r) {
    printf("              R@1     R@5    R@10    medr    meanr\n");
    printf("image→text  %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n", r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_medr,
           r->i2t_meanr);
    printf("text→image  %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n", r->t2i_r1, r->t2i_r5, r->t2i_r10, r->t2i_medr,
           r->t2i_meanr);
    printf("rsum        %.2f\n", r->rsum);
}

// The process's peak resident set (getrusage: kilobytes on Linux).
static double peak_rss_mb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
}

static void print_recall_json(const struct itr_recall *r, enum itr_protocol proto, int n_models,
                              const struct itr_rerank_result *rr) {
    printf("{\"i2t_r1\": %.10g, \"i2t_r5\": %.10g, \"i2t_r10\": %.10g, \"t2i_r1\": %.10g, \"t2i_r5\": %.10g, "
           "\"t2i_r10\": %.10g, \"rsum\": %.10g, \"i2t_medr\": %.10g, \"t2i_medr\": %.10g, \"i2t_meanr\": %.10g, "
           "\"t2i_meanr\": %.10g, \"protocol\": \"%s\", \"n_images\": %" PRId64 ", \"n_captions\": %" PRId64,
           r->i2t_r1, r->i2t_r5, r->i2t_r10, r->t2i_r1, r->t2i_r5, r->t2i_r10, r->rsum, r->i2t_medr, r->t2i_medr,
           r->i2t_meanr, r->t2i_meanr, itr_protocol_name(proto), r->n_images, r->n_captions);
    if (n_models > 1) printf(", \"ensemble\": %d", n_models);
    if (rr)
        printf(", \"candidates\": %" PRId64 ", \"i2t_ceiling\": %.10g, \"t2i_ceiling\": %.10g, \"first_rsum\": "
               "%.10g, \"first_i2t_r1\": %.10g, \"first_t2i_r1\": %.10g", rr->candidates, rr->i2t_ceiling,
               rr->t2i_ceiling, rr->first.rsum, rr->first.i2t_r1, rr->first.t2i_r1);
    printf("}\n");
}

static int cmd_eval(const char *plan, int argc, char **argv) {
    const char *data = NULL, *split = "test", *weights = NULL, *vocab = NULL, *proto_s = NULL, *save = NULL;
    const char *rerank = NULL;
    int64_t candidates = 100;
    struct itr_cli_list ens = { 0 };
    struct exec_opts x = { 0 };
    bool json = false, f64 = false, quiet = false;
    struct itr_eval_options eo = { 0 };
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r = 0;
#define EVAL_OPT(shrt, lng) ((r = opt_value("eval", argc, argv, &i, shrt, lng, &v)) != 0)
        if ((r = opt_exec("eval", argc, argv, &i, &x)) != 0) {}
        else if (EVAL_OPT(NULL, "--data")) { if (r > 0) data = v; }
        else if (EVAL_OPT(NULL, "--split")) { if (r > 0) split = v; }
        else if (EVAL_OPT("-w", "--weights")) { if (r > 0) weights = v; }
        else if (EVAL_OPT(NULL, "--vocab")) { if (r > 0) vocab = v; }
        else if (EVAL_OPT(NULL, "--protocol")) { if (r > 0) proto_s = v; }
        else if (EVAL_OPT(NULL, "--save-sims")) { if (r > 0) save = v; }
        else if (EVAL_OPT(NULL, "--ensemble")) {
            if (r > 0 && !plan_weights_spec("eval", "--ensemble", "OTHER", v)) rc = ITR_EXIT_USER;
            else if (r > 0) itr_cli_list_push(&cli, &ens, v);
        } else if (EVAL_OPT(NULL, "--rerank")) {
            if (r > 0 && !plan_weights_spec("eval", "--rerank", "FIRST", v)) rc = ITR_EXIT_USER;
            else if (r > 0) rerank = v;
        } else if (EVAL_OPT(NULL, "--candidates")) {
            if (r > 0 && !parse_tile("eval", "--candidates", v, &candidates)) rc = ITR_EXIT_USER;
        } else if (EVAL_OPT(NULL, "--tile-images")) {
            if (r > 0 && !parse_tile("eval", "--tile-images", v, &eo.tile_images)) rc = ITR_EXIT_USER;
        } else if (EVAL_OPT(NULL, "--tile-captions")) {
            if (r > 0 && !parse_tile("eval", "--tile-captions", v, &eo.tile_captions)) rc = ITR_EXIT_USER;
        } else if (EVAL_OPT(NULL, "--caption-cache-mb")) {
            int64_t mb = 0;
            if (r > 0 && !parse_tile("eval", "--caption-cache-mb", v, &mb)) rc = ITR_EXIT_USER;
            else if (r > 0) eo.caption_cache_bytes = mb > (INT64_MAX >> 20) ? INT64_MAX : mb << 20;
        } else if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--f64") == 0) f64 = true;
        else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) quiet = true;
        else if (argv[i][0] == '-' && argv[i][1])
            rc = usage_error("eval", "unknown option '%s' (accepted: --data, --split, --weights, --vocab, --protocol, "
                             "--json, --save-sims, --ensemble, --rerank, --candidates, --tile-images, --tile-captions, "
                             "--caption-cache-mb, --f64, "
                             "--quiet, --backend, --threads, --device)", argv[i]);
        else rc = usage_error("eval", "unexpected argument '%s'", argv[i]);
        if (r < 0) rc = ITR_EXIT_USER;
#undef EVAL_OPT
    }
    enum itr_protocol proto = ITR_PROTOCOL_ALL;
    if (rc == ITR_EXIT_OK && proto_s && !itr_protocol_from_name(proto_s, &proto))
        rc = usage_error("eval", "unknown protocol '%s' (accepted: f30k-1k, coco-1k-5fold, coco-5k, all)", proto_s);
    if (rc == ITR_EXIT_OK && !data) rc = usage_error("eval", "%s", "missing --data DIR");
    if (rc == ITR_EXIT_OK && !weights) rc = usage_error("eval", "%s", "missing --weights W.safetensors");
    if (rc == ITR_EXIT_OK && rerank && save)
        rc = usage_error("eval", "%s", "--save-sims writes the full matrix of one model; it does not combine with "
                         "--rerank");
    if (rc != ITR_EXIT_OK) { free(ens.v); return rc; }
    eo.f64 = f64;
    eo.progress = !quiet;

    struct itr_diags d;
    itr_diags_init(&d);
    int n = 1 + ens.n;
    // The first stage of --rerank is loaded and checked like a member, as
    // m[n]; it is not part of the ensemble.
    int n_all = n + (rerank != NULL);
    struct member *m = calloc((size_t)n_all, sizeof *m);
    if (!m) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    m[0].plan_path = plan;
    m[0].weights_path = weights;
    for (int k = 1; k < n; k++) member_from_spec(&m[k], ens.v[k - 1]);
    if (rerank) member_from_spec(&m[n], rerank);
    bool ok = true;
    for (int k = 0; k < n_all; k++) ok = member_load(&m[k], &x, f64, &d) && ok;
    for (int k = 1; ok && k < n; k++) ok = itr_eval_check_compatible(m[0].p, m[0].plan_path, m[k].p, m[k].plan_path, &d);
    bool words = false;
    for (int k = 0; ok && k < n_all; k++) words |= reads_words(m[k].p);

    struct itr_vocab v = { 0 };
    bool have_vocab = false;
    char *vpath = vocab ? NULL : path_join(data, "vocab.json");
    if (ok && words) ok = have_vocab = itr_vocab_read(vocab ? vocab : vpath, &v, &d);
    for (int k = 0; ok && have_vocab && k < n_all; k++)
        ok = member_check_vocab(&m[k], &v, vocab ? vocab : vpath, &d);
    struct itr_split s;
    memset(&s, 0, sizeof s);
    bool have_split = false;
    if (ok) ok = have_split = itr_split_open(data, split, have_vocab ? &v : NULL, &s, &d);
    // A model that fixes its caption length refuses a longer caption here,
    // before anything is encoded or written.
    for (int k = 0; ok && k < n_all; k++) {
        struct itr_caption_limit lim;
        itr_caption_limit(m[k].p, "encode_text", NULL, &lim);
        ok = itr_caption_limit_check(&lim, &s, &d);
    }
    if (ok && !proto_s) {
        proto = s.n_images == 1000 ? ITR_PROTOCOL_F30K_1K : ITR_PROTOCOL_ALL;
        if (s.n_images == 5000)
            itr_diag_note(&d, ITR_NOLOC, "%s has 5000 images: evaluating all of them in one matrix (--protocol all); "
                          "the published COCO numbers use --protocol coco-1k-5fold or coco-5k", split);
    }
    if (ok) ok = itr_protocol_check(proto, split, s.n_images, &d);
    if (ok && s.n_unknown_words)
        itr_diag_note(&d, ITR_NOLOC, "%" PRId64 " caption word%s of split %s not in the vocabulary (mapped to <unk>)",
                      s.n_unknown_words, s.n_unknown_words == 1 ? "" : "s", split);
    // Notes so far (the protocol default, unknown words) come before the
    // progress bar, not after the table.
    itr_diags_print(&d, stderr);
    struct itr_diags d2;
    itr_diags_init(&d2);
    float *sims = NULL;
    struct itr_recall r;
    struct itr_rerank_result rr;
    memset(&rr, 0, sizeof rr);
    struct itr_session **ss = calloc((size_t)n, sizeof *ss);
    if (!ss) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    for (int k = 0; k < n; k++) ss[k] = m[k].s;
    if (ok && save) {
        // The full matrix, as asked; then the protocol on it.
        ok = itr_eval_sims_ensemble_sessions(n, ss, &s, &eo, &sims, &d2);
        if (ok) {
            struct itr_tensor *t = itr_tensor_wrap(ITR_F32, 2, (int64_t[]){ s.n_images, s.n_captions }, sims);
            ok = t && itr_npy_write(save, t, &d2);
            itr_tensor_free(t);
        }
        if (ok) ok = itr_protocol_eval(proto, sims, s.n_images, s.n_captions, &r, &d2);
    } else if (ok && rerank) {
        struct itr_scorer *first = NULL, *second = NULL;
        // The second stage scores scattered candidates: every caption stays encoded.
        struct itr_eval_options keep = eo;
        keep.caption_cache_bytes = INT64_MAX;
        ok = itr_scorer_new(1, &m[n].s, &s, &eo, &first, &d2) && itr_scorer_new(n, ss, &s, &keep, &second, &d2) &&
             itr_eval_rerank(first, second, proto, candidates, &eo, &rr, &d2);
        r = rr.recall;
        itr_scorer_free(first);
        itr_scorer_free(second);
    } else if (ok) {
        // Streamed: ranks and top-K per query, never the whole matrix.
        struct itr_scorer *sc = NULL;
        struct itr_stream_result sr;
        memset(&sr, 0, sizeof sr);
        ok = itr_scorer_new(n, ss, &s, &eo, &sc, &d2) && itr_eval_stream(sc, proto, 10, &eo, &sr, &d2);
        r = sr.recall;
        itr_stream_result_free(&sr);
        itr_scorer_free(sc);
    }
    free(ss);
    if (ok && json) {
        print_recall_json(&r, proto, n, rerank ? &rr : NULL);
    } else if (ok) {
        if (n > 1) {
            printf("ensemble of %d models (similarities averaged):", n);
            for (int k = 0; k < n; k++) printf(" %s", m[k].plan_path);
            printf("\n");
        } else {
            printf("model: %s (%s)\n", m[0].p->name ? m[0].p->name : "(unnamed)", plan);
        }
        printf("protocol: %s — split %s, %" PRId64 " images, %" PRId64 " captions%s\n", itr_protocol_name(proto),
               split, s.n_images, s.n_captions,
               proto == ITR_PROTOCOL_COCO_1K_5FOLD ? " (5 folds of 1000 images, metrics averaged)" : "");
        if (rerank) {
            printf("first stage: %s, every pair; its top %" PRId64 " per query re-scored (%" PRId64 " pairs)\n",
                   m[n].plan_path, candidates, rr.pairs_rescored);
            print_recall_table(&rr.first);
            printf("recall ceiling at %" PRId64 " candidates: image→text %.2f%%, text→image %.2f%%\n", candidates,
                   rr.i2t_ceiling, rr.t2i_ceiling);
            printf("re-scored:\n");
        }
        print_recall_table(&r);
        if (save) printf("similarities: f32 [%" PRId64 ", %" PRId64 "] -> %s\n", s.n_images, s.n_captions, save);
        printf("peak memory: %.0f MB\n", peak_rss_mb());
    }
    free(sims);
    if (have_split) itr_split_close(&s);
    if (have_vocab) itr_vocab_free(&v);
    free(vpath);
    for (int k = 0; k < n_all; k++) {
        itr_session_free(m[k].s);
        itr_program_free(m[k].p);
        itr_tensor_set_free(&m[k].w);
        free(m[k].spec);
    }
    free(m);
    free(ens.v);
    itr_diags_free(&d);
    return finish(&d2, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

#define QUERY_MAX_TOKENS 256

static int cmd_query(const char *plan, int argc, char **argv) {
    const char *weights = NULL, *gallery = NULL, *split = "test", *vocab = NULL, *text = NULL, *image_s = NULL;
    int64_t topk = 10, image = -1, candidates = 100;
    const char *rerank = NULL;
    struct exec_opts x = { 0 };
    bool f64 = false, quiet = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r = 0;
#define QUERY_OPT(shrt, lng) ((r = opt_value("query", argc, argv, &i, shrt, lng, &v)) != 0)
        if ((r = opt_exec("query", argc, argv, &i, &x)) != 0) {}
        else if (QUERY_OPT("-w", "--weights")) { if (r > 0) weights = v; }
        else if (QUERY_OPT(NULL, "--gallery")) { if (r > 0) gallery = v; }
        else if (QUERY_OPT(NULL, "--split")) { if (r > 0) split = v; }
        else if (QUERY_OPT(NULL, "--vocab")) { if (r > 0) vocab = v; }
        else if (QUERY_OPT(NULL, "--text")) { if (r > 0) text = v; }
        else if (QUERY_OPT(NULL, "--image-index")) {
            if (r > 0 && (!parse_int64(v, &image) || image < 0))
                rc = usage_error("query", "--image-index expects a non-negative integer, got '%s'", v);
            image_s = v;
        } else if (QUERY_OPT(NULL, "--rerank")) {
            if (r > 0 && !plan_weights_spec("query", "--rerank", "FIRST", v)) rc = ITR_EXIT_USER;
            else if (r > 0) rerank = v;
        } else if (QUERY_OPT(NULL, "--candidates")) {
            if (r > 0 && !parse_tile("query", "--candidates", v, &candidates)) rc = ITR_EXIT_USER;
        } else if (QUERY_OPT(NULL, "--topk")) {
            if (r > 0 && !parse_tile("query", "--topk", v, &topk)) rc = ITR_EXIT_USER;
        } else if (strcmp(argv[i], "--f64") == 0) f64 = true;
        else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) quiet = true;
        else if (argv[i][0] == '-' && argv[i][1])
            rc = usage_error("query", "unknown option '%s' (accepted: --weights, --gallery, --split, --vocab, --text, "
                             "--image-index, --topk, --rerank, --candidates, --f64, --quiet, --backend, --threads, --device)", argv[i]);
        else rc = usage_error("query", "unexpected argument '%s'", argv[i]);
        if (r < 0) rc = ITR_EXIT_USER;
#undef QUERY_OPT
    }
    if (rc == ITR_EXIT_OK && !weights) rc = usage_error("query", "%s", "missing --weights W.safetensors");
    if (rc == ITR_EXIT_OK && !gallery) rc = usage_error("query", "%s", "missing --gallery DIR");
    if (rc == ITR_EXIT_OK && !text == !image_s)
        rc = usage_error("query", "%s", "give exactly one of --text \"A CAPTION\" and --image-index K");
    if (rc != ITR_EXIT_OK) return rc;

    struct itr_diags d;
    itr_diags_init(&d);
    struct member mb = { .plan_path = plan, .weights_path = weights }, first = { 0 };
    bool ok = member_load(&mb, &x, f64, &d);
    if (ok && rerank) {
        member_from_spec(&first, rerank);
        ok = member_load(&first, &x, f64, &d);
    }
    bool words = ok && (reads_words(mb.p) || (rerank && reads_words(first.p)));
    struct itr_vocab v = { 0 };
    bool have_vocab = false;
    char *vpath = vocab ? NULL : path_join(gallery, "vocab.json");
    if (ok && (words || text)) ok = have_vocab = itr_vocab_read(vocab ? vocab : vpath, &v, &d);
    if (ok && have_vocab) ok = member_check_vocab(&mb, &v, vocab ? vocab : vpath, &d);
    if (ok && have_vocab && rerank) ok = member_check_vocab(&first, &v, vocab ? vocab : vpath, &d);
    struct itr_split s;
    memset(&s, 0, sizeof s);
    bool have_split = false;
    if (ok) ok = have_split = itr_split_open(gallery, split, have_vocab ? &v : NULL, &s, &d);
    int32_t ids[QUERY_MAX_TOKENS + 2];
    int len = 0;
    if (ok && text) {
        // Every unknown word is named: a query silently reduced to <unk>s
        // returns confident nonsense.
        char *toks[QUERY_MAX_TOKENS];
        int nt = itr_tokenize(text, toks, QUERY_MAX_TOKENS);
        size_t cap = strlen(text) + 1, w = 0;
        char *unk = calloc(cap + (size_t)nt * 2 + 1, 1);
        if (!unk) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
        for (int t = 0; t < nt; t++)
            if (itr_vocab_lookup(&v, toks[t]) == ITR_VOCAB_UNK)
                w += (size_t)sprintf(unk + w, "%s%s", w ? ", " : "", toks[t]);
        if (w) fprintf(stderr, "%s query: unknown words: %s (mapped to <unk>)\n", PROG, unk);
        free(unk);
        itr_tokens_free(toks, nt);
        int n_unknown = 0;
        len = itr_encode_caption(&v, text, ids, QUERY_MAX_TOKENS + 2, &n_unknown);
        if (len < 0) {
            itr_diag_error(&d, ITR_NOLOC, "the query is longer than %d tokens", QUERY_MAX_TOKENS);
            ok = false;
        } else if (len <= 2) {
            itr_diag_error(&d, ITR_NOLOC, "the query \"%s\" has no words", text);
            ok = false;
        }
    }
    struct itr_eval_options eo = { .f64 = f64, .progress = !quiet };
    float *scores = NULL;
    // Two stages: the first model ranks the whole gallery, this plan
    // re-scores its top N; items[] maps the rows of scores to gallery ids.
    int64_t *items = NULL, n_items = 0, *first_rank = NULL;
    if (ok && rerank) {
        float *s1 = NULL;
        int64_t n = text ? s.n_images : s.n_captions;
        ok = text ? itr_eval_query_text_session(first.s, &s, ids, len, &eo, &s1, &d)
                  : itr_eval_query_image_session(first.s, &s, image, &eo, &s1, &d);
        if (ok) {
            items = malloc((size_t)(candidates < n ? candidates : n) * sizeof *items);
            first_rank = malloc((size_t)(candidates < n ? candidates : n) * sizeof *first_rank);
            if (!items || !first_rank) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
            n_items = itr_eval_topk(s1, n, candidates, items);
            for (int64_t k = 0; k < n_items; k++) first_rank[k] = k + 1;
            ok = text ? itr_eval_query_text_items(mb.s, &s, ids, len, items, n_items, &eo, &scores, &d)
                      : itr_eval_query_image_items(mb.s, &s, image, items, n_items, &eo, &scores, &d);
        }
        free(s1);
    } else if (ok) {
        ok = text ? itr_eval_query_text_session(mb.s, &s, ids, len, &eo, &scores, &d)
                  : itr_eval_query_image_session(mb.s, &s, image, &eo, &scores, &d);
    }
    if (ok) {
        int64_t gallery_n = text ? s.n_images : s.n_captions;
        int64_t n = rerank ? n_items : gallery_n;
        if (rerank)
            printf("two stages: %s ranked all %" PRId64 " %s; its top %" PRId64 " re-scored by %s (column 'first': "
                   "the first stage's rank)\n", first.plan_path, gallery_n, text ? "images" : "captions", n_items,
                   plan);
        int64_t *idx = malloc((size_t)(topk < n ? topk : n) * sizeof *idx);
        if (!idx) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
        int64_t got = itr_eval_topk(scores, n, topk, idx);
        if (text) {
            printf("query: \"%s\" (%d tokens) against %" PRId64 " images of %s/%s\n", text, len - 2, n, gallery,
                   split);
            printf("rank  score      image%s\n", rerank ? "  first" : "");
            for (int64_t k = 0; k < got; k++) {
                int64_t item = items ? items[idx[k]] : idx[k];
                printf("%4" PRId64 "  %9.6f  %" PRId64, k + 1, scores[idx[k]], item);
                if (rerank) printf("  %" PRId64, first_rank[idx[k]]);
                printf("\n");
            }
        } else {
            printf("query: image %" PRId64 " of %s/%s against %" PRId64 " captions (* marks its own captions)\n",
                   image, gallery, split, n);
            printf("rank  score      caption%s\n", rerank ? "  (first-stage rank)" : "");
            for (int64_t k = 0; k < got; k++) {
                int64_t item = items ? items[idx[k]] : idx[k];
                printf("%4" PRId64 "  %9.6f  %" PRId64 "%s  %s", k + 1, scores[idx[k]], item,
                       item / ITR_CAPTIONS_PER_IMAGE == image ? "*" : " ", s.captions ? s.captions[item] : "");
                if (rerank) printf("  (%" PRId64 ")", first_rank[idx[k]]);
                printf("\n");
            }
        }
        free(idx);
    }
    free(scores);
    free(items);
    free(first_rank);
    if (have_split) itr_split_close(&s);
    if (have_vocab) itr_vocab_free(&v);
    free(vpath);
    itr_session_free(mb.s);
    itr_program_free(mb.p);
    itr_tensor_set_free(&mb.w);
    itr_session_free(first.s);
    itr_program_free(first.p);
    itr_tensor_set_free(&first.w);
    free(first.spec);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ dispatch

static const struct itr_cli_command commands[] = {
    { "run", "ENTRY [--in NAME=FILE.npy]... [--weights W.safetensors] [--dim NAME=VALUE]... [--out DIR] [--f64] [--backend NAME] [--threads N]",
      "run an entry point on .npy inputs",
      "  --in NAME=FILE.npy         the entry's input NAME; one per input\n"
      "  --in NAME=scalar:VALUE     a rank-0 input given inline (a seed, a step counter)\n"
      "  -w, --weights FILE         parameters (safetensors), as 'init' or training writes them;\n"
      "                             every parameter the entry uses must be there with its exact\n"
      "                             dtype and shape\n"
      "  --dim NAME=VALUE           bind a dim the tensors do not determine; repeatable\n"
      "  --out DIR                  where to write the outputs, one DIR/NAME.npy each (default .)\n"
      "  --f64                      compute f32 values in f64 (outputs are f64)\n"
      EXEC_OPTS_HELP
      "Prints one line per output: 'NAME: DTYPE [SHAPE] -> PATH'.\n",
      cmd_run },
    { "init", "--seed S -o W.safetensors [--dim NAME=VALUE]...", "write freshly initialised parameters",
      "  --seed S                   the seed (a non-negative integer; default 0); the same seed\n"
      "                             gives the same bytes on every machine\n"
      "  -o, --output FILE          the safetensors file to write (atomically)\n"
      "  --dim NAME=VALUE           bind a dim that parameter shapes use and that has no default\n"
      EXEC_OPTS_HELP
      "The file's metadata records the plan's fingerprint and the seed.\n",
      cmd_init },
    { "info", "[--backend NAME]", "show the plan's entry points and their signatures",
      EXEC_OPTS_HELP
      "Prints the model, target, fingerprint, dims (with defaults), the backend, and each entry\n"
      "point with its inputs and outputs.\n",
      cmd_info },
    { "step", "--weights W.safetensors --out W2.safetensors [--in NAME=FILE.npy]... [--lr X] [--step N] [--seed S] "
      "[--dim NAME=VALUE]... [--f64] [--backend NAME] [--threads N]",
      "run one training step",
      "  --in NAME=FILE.npy         an input of the train entry (NAME=scalar:VALUE for rank 0);\n"
      "                             lr, step and seed are not inputs: they come from the options\n"
      "  -w, --weights FILE         parameters and optimizer state (safetensors), as 'init' or an\n"
      "                             earlier step wrote them; optimizer state missing there starts\n"
      "                             at zero (a note says so)\n"
      "  -o, --out FILE             where to write the updated parameters and state (atomically;\n"
      "                             nothing is written when the step fails or its loss is NaN)\n"
      "  --lr X                     learning rate of this step (default: the optimizer's lr)\n"
      "  --step N                   the step number, from 1, for Adam's bias corrections (default:\n"
      "                             1 + the step W records, else 1)\n"
      "  --seed S                   the run's seed for dropout and other random ops (default: the\n"
      "                             seed W was initialised with, else 0)\n"
      "  --dim NAME=VALUE           bind a dim the tensors do not determine; repeatable\n"
      "  --f64                      compute f32 values in f64 (W2 keeps each tensor's dtype)\n"
      EXEC_OPTS_HELP
      "Prints 'step N: LOSS_NAME VALUE, METRIC VALUE, ... (lr X)'; W2's metadata records the step\n"
      "and the plan's fingerprint.\n",
      cmd_step },
    { "train", "--data DIR [--vocab FILE] [--epochs N] [--batch-size B] [--lr X] [--lr-schedule S] "
      "[--warmup-steps N] [--seed S] [--out RUN_DIR] [--resume] [--weights W] [--max-steps N] "
      "[--checkpoint-every N] [--eval-split SPLIT] [--plot] [--workers N] [--f64] [--backend NAME] [--threads N]",
      "train the model: epochs of batches, dev evaluation, checkpoints",
      "  --data DIR                 the data set ({split}_ims.npy, {split}_caps.txt; docs/data.md)\n"
      "  --vocab FILE               the vocabulary (default DIR/vocab.json)\n"
      "  --epochs N                 epochs to train (default 30)\n"
      "  --batch-size B             pairs per batch (default 128); the last partial batch is kept\n"
      "  --lr X                     base learning rate (default: the optimizer's lr)\n"
      "  --lr-schedule S            constant | step:K[:GAMMA] (lr * GAMMA^floor(epoch/K), GAMMA 0.1)\n"
      "                             | cosine (to 0 over the run); default step:15\n"
      "  --warmup-steps N           linear warm-up over the first N steps (default 0)\n"
      "  --seed S                   initialisation, data order and dropout (default 0)\n"
      "  --out RUN_DIR              the run directory (default runs/MODEL): last.safetensors,\n"
      "                             best.safetensors (best dev rsum), log.jsonl, log.csv\n"
      "  --resume                   continue RUN_DIR/last.safetensors exactly where it stopped; the\n"
      "                             seed, batch size, epochs and schedule come from the checkpoint\n"
      "  --weights W                start from these weights instead of fresh parameters\n"
      "  --max-steps N              stop once N steps (in all) are done, with a checkpoint\n"
      "  --checkpoint-every N       mid-epoch checkpoints every N steps (default 200; 0: only at\n"
      "                             epoch ends)\n"
      "  --eval-split SPLIT         the split evaluated after each epoch (default dev; protocol\n"
      "                             f30k-1k for 1000 images, else all)\n"
      "  --plot                     write RUN_DIR/curves.svg (loss and dev rsum per epoch)\n"
      "  --workers N                threads building the next batches (reading features, assembling\n"
      "                             tensors) while the step runs, up to N batches ahead (default 1:\n"
      "                             none, each batch is built between steps); results are bitwise the\n"
      "                             same for any N\n"
      "  --f64                      compute f32 values in f64 (weights keep their dtype)\n"
      EXEC_OPTS_HELP
      "The train entry's inputs are bound by name: regions, words, lengths, token_feats,\n"
      "token_lengths and epoch (i64[], 0-based) come from the data, extra_regions ... extra_token_lengths\n"
      "from as many random train captions (extra negatives); lr, step and seed from the run.\n",
      cmd_train },
    { "eval", "--data DIR --weights W.safetensors [--split S] [--vocab FILE] [--protocol P] [--json] "
      "[--save-sims FILE.npy] [--ensemble OTHER.plan:W2]... [--rerank FIRST.plan:W1 [--candidates N]] "
      "[--tile-images N] [--tile-captions N] [--caption-cache-mb N] [--f64] [--quiet]",
      "evaluate retrieval (R@K, medr, meanr, rsum) on a split",
      "  --data DIR                 the data set (docs/data.md): DIR/{split}_ims.npy, {split}_caps.txt\n"
      "  -w, --weights FILE         the model's parameters (safetensors)\n"
      "  --split S                  the split to evaluate (default test)\n"
      "  --vocab FILE               the vocabulary (default DIR/vocab.json)\n"
      "  --protocol P               f30k-1k (1000 images), coco-1k-5fold (5000 images, five 1000-image\n"
      "                             folds averaged), coco-5k (5000 images, one matrix) or all (any\n"
      "                             size); default f30k-1k for 1000 images, else all\n"
      "  --json                     print one JSON object instead of the table\n"
      "  --save-sims FILE.npy       write the [images, captions] f32 similarity matrix (without it,\n"
      "                             tiles are streamed into per-query ranks: memory is the embeddings\n"
      "                             and one tile, whatever the split's size)\n"
      "  --ensemble OTHER.plan:W2   average the similarities with another model's; repeatable\n"
      "  --rerank FIRST.plan:W1     two stages: FIRST (a global-embedding model) scores every pair,\n"
      "                             this plan re-scores each query's top N; prints both stages and\n"
      "                             the first stage's recall ceiling at N\n"
      "  --candidates N             first-stage candidates per query for --rerank (default 100)\n"
      "  --tile-images N            images per score tile (default 128)\n"
      "  --tile-captions N          captions per score tile (default 1280)\n"
      "  --caption-cache-mb N       keep every caption's encoding only when they take at most N MB\n"
      "                             (default 1024); above, each caption tile is encoded when scoring\n"
      "                             reaches it (streamed: twice; --save-sims: once)\n"
      "  --f64                      compute in f64\n"
      "  -q, --quiet                no progress on stderr\n"
      EXEC_OPTS_HELP
      "Captions 5i..5i+4 belong to image i. Ties rank the query's match last (docs/evaluation.md).\n",
      cmd_eval },
    { "query", "--weights W.safetensors --gallery DIR [--split S] [--vocab FILE] (--text \"A CAPTION\" | "
      "--image-index K) [--topk N] [--rerank FIRST.plan:W1 [--candidates N]] [--f64] [--quiet]",
      "retrieve images for a sentence, or captions for an image",
      "  -w, --weights FILE         the model's parameters (safetensors)\n"
      "  --gallery DIR              the data set to search (DIR/{split}_ims.npy, {split}_caps.txt)\n"
      "  --split S                  its split (default test)\n"
      "  --vocab FILE               the vocabulary (default DIR/vocab.json)\n"
      "  --text \"A CAPTION\"         rank the split's images for this sentence; words not in the\n"
      "                             vocabulary are named on stderr and mapped to <unk>\n"
      "  --image-index K            rank the split's captions for image K (its own marked '*')\n"
      "  --topk N                   how many results (default 10)\n"
      "  --rerank FIRST.plan:W1     two stages: FIRST ranks the whole gallery, this plan re-scores\n"
      "                             its top N (only those items are encoded and scored)\n"
      "  --candidates N             first-stage candidates for --rerank (default 100)\n"
      EXEC_OPTS_HELP
      "Prints 'rank score index' per result (and the caption's text for --image-index).\n",
      cmd_query },
};

static const struct itr_cli cli = {
    .prog = PROG,
    .operand = " FILE.plan",
    .description = "Runs plans that itrc compiled (docs/cli.md).",
    .footer = "\n  " PROG " FILE.plan COMMAND --help   options of a command (also: " PROG " help COMMAND)\n"
              "  " PROG " --version                  version and plan format\n"
              "  --backend NAME (any command)        the backend to run on (default ref; a wrong name lists\n"
              "                                      the ones built in; docs/backends.md)\n",
    .name_width = 6,
    .plan_format = ITR_PLAN_FORMAT_VERSION,
    .help_lists_commands = true,
    .commands = commands,
    .n_commands = (int)(sizeof commands / sizeof *commands),
};

int main(int argc, char **argv) { return itr_cli_main(&cli, argc, argv); }
