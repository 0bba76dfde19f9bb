// itr-run: the runtime's command line (docs/cli.md). Thin by design:
// argument parsing here, the work in runtime/ and backends/.
//
//   itr-run FILE.plan COMMAND [ARGS]
//
// Commands are rows of one table; a new one (train, eval, query, ...) is a
// function and a row. Exit codes: 0 ok, 1 user error, 2 internal error.
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/plan.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"

#define PROG "itr-run"

struct command {
    const char *name;
    const char *args;      // after "itr-run FILE.plan NAME"
    const char *summary;
    const char *help;
    int (*run)(const char *plan, int argc, char **argv);   // argv[0] is the command name
};

static bool is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s%s%s: ", PROG, cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see '%s%s%s --help')\n", PROG, cmd ? " " : "", cmd ? cmd : "");
    return ITR_EXIT_USER;
}

// Matches "--name VALUE" or "--name=VALUE" (and "-x VALUE" when shrt is
// given). 1: matched; 0: not this option; -1: value missing (reported).
static int opt_value(const char *cmd, int argc, char **argv, int *i, const char *shrt, const char *lng,
                     const char **val) {
    const char *a = argv[*i];
    size_t ll = strlen(lng);
    if ((shrt && strcmp(a, shrt) == 0) || strcmp(a, lng) == 0) {
        if (*i + 1 >= argc) { usage_error(cmd, "option '%s' needs a value", a); return -1; }
        *val = argv[++*i];
        return 1;
    }
    if (strncmp(a, lng, ll) == 0 && a[ll] == '=') { *val = a + ll + 1; return 1; }
    return 0;
}

struct strlist { const char **v; int n; };

static void strlist_push(struct strlist *l, const char *s) {
    const char **nv = realloc(l->v, (size_t)(l->n + 1) * sizeof *nv);
    if (!nv) { fprintf(stderr, "%s: out of memory\n", PROG); exit(ITR_EXIT_INTERNAL); }
    nv[l->n++] = s;
    l->v = nv;
}

static struct itr_program *load_plan(const char *path, struct itr_plan_info *info, struct itr_diags *d) {
    memset(info, 0, sizeof *info);
    return itr_plan_read(path, info, d);
}

static bool bind_dims(const struct strlist *dims, struct itr_dim_bindings *b, const struct itr_program *p,
                      struct itr_diags *d) {
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

static int cmd_run(const char *plan, int argc, char **argv) {
    const char *entry = NULL, *weights_path = NULL, *out_dir = ".";
    struct strlist ins = { 0 }, dims = { 0 };
    bool f64 = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_value("run", argc, argv, &i, NULL, "--in", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else if (!strchr(v, '=') || v[0] == '=' || !strchr(v, '=')[1])
                rc = usage_error("run", "--in expects NAME=FILE.npy, got '%s'", v);
            else strlist_push(&ins, v);
        } else if ((r = opt_value("run", argc, argv, &i, "-w", "--weights", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else if (weights_path) rc = usage_error("run", "%s", "--weights given twice");
            else weights_path = v;
        } else if ((r = opt_value("run", argc, argv, &i, NULL, "--dim", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else strlist_push(&dims, v);
        } else if ((r = opt_value("run", argc, argv, &i, NULL, "--out", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out_dir = v;
        } else if (strcmp(argv[i], "--f64") == 0) {
            f64 = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("run", "unknown option '%s' (accepted: --in, --weights, --dim, --out, --f64)", argv[i]);
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
    if (ok) {
        itr_bindings_init(&b, p);
        ok = bind_dims(&dims, &b, p, &d);
    }
    for (int i = 0; ok && i < ins.n; i++) {
        const char *eq = strchr(ins.v[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - ins.v[i]), ins.v[i]);
        if (itr_tensor_set_get(&inputs, name)) {
            itr_diag_error(&d, ITR_NOLOC, "input '%s' is given twice", name);
            ok = false;
            break;
        }
        struct itr_tensor *t = strncmp(eq + 1, "scalar:", 7) == 0 ? scalar_input(g, name, eq + 8, &d)
                                                                 : itr_npy_read(eq + 1, &d);
        if (!t) { ok = false; break; }
        itr_tensor_set_put(&inputs, name, t);
    }
    if (ok && weights_path) ok = itr_safetensors_read(weights_path, &weights, &d);
    if (ok) {
        struct itr_exec_options eo = { .f64 = f64, .weights_what = weights_path };
        ok = itr_exec_run(p, g, &inputs, weights_path ? &weights : NULL, &b, &eo, &outputs, &d);
    }
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
    itr_program_free(p);
    free(ins.v);
    free(dims.v);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ init

static int cmd_init(const char *plan, int argc, char **argv) {
    const char *out = NULL, *seed_s = "0";
    struct strlist dims = { 0 };
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_value("init", argc, argv, &i, NULL, "--seed", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else seed_s = v;
        } else if ((r = opt_value("init", argc, argv, &i, "-o", "--output", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else out = v;
        } else if ((r = opt_value("init", argc, argv, &i, NULL, "--dim", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else strlist_push(&dims, v);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("init", "unknown option '%s' (accepted: --seed, -o/--output, --dim)", argv[i]);
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
    if (ok) {
        itr_bindings_init(&b, p);
        ok = bind_dims(&dims, &b, p, &d) && itr_init_params(p, seed, &b, &w, &d);
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
    struct strlist ins = { 0 }, dims = { 0 };
    bool f64 = false;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = opt_value("step", argc, argv, &i, NULL, "--in", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else if (!strchr(v, '=') || v[0] == '=' || !strchr(v, '=')[1])
                rc = usage_error("step", "--in expects NAME=FILE.npy, got '%s'", v);
            else strlist_push(&ins, v);
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
        } else if ((r = opt_value("step", argc, argv, &i, NULL, "--dim", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
            else strlist_push(&dims, v);
        } else if (strcmp(argv[i], "--f64") == 0) {
            f64 = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = usage_error("step", "unknown option '%s' (accepted: --in, --weights, --out, --lr, --step, --seed, "
                             "--dim, --f64)", argv[i]);
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
    if (ok) {
        itr_bindings_init(&b, p);
        ok = bind_dims(&dims, &b, p, &d);
    }
    for (int i = 0; ok && i < ins.n; i++) {
        const char *eq = strchr(ins.v[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - ins.v[i]), ins.v[i]);
        if (itr_tensor_set_get(&inputs, name)) {
            itr_diag_error(&d, ITR_NOLOC, "input '%s' is given twice", name);
            ok = false;
            break;
        }
        struct itr_tensor *t = strncmp(eq + 1, "scalar:", 7) == 0 ? scalar_input(g, name, eq + 8, &d)
                                                                 : itr_npy_read(eq + 1, &d);
        if (!t) { ok = false; break; }
        itr_tensor_set_put(&inputs, name, t);
    }
    if (ok) ok = itr_safetensors_read(weights_path, &state, &d);
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
    if (ok) ok = itr_train_step(p, &inputs, &state, &b, &to, &metrics, &res, &d);
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
    itr_program_free(p);
    free(ins.v);
    free(dims.v);
    return finish(&d, ok ? ITR_EXIT_OK : ITR_EXIT_USER);
}

// ------------------------------------------------------------ info

static int cmd_info(const char *plan, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        return usage_error("info", "unexpected argument '%s'", argv[i]);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = load_plan(plan, &info, &d);
    if (!p) return finish(&d, ITR_EXIT_USER);
    printf("plan %s: model %s, target %s, fingerprint %s (itrc %s, plan format %u)\n", plan,
           p->name ? p->name : "(unnamed)", info.target, info.fingerprint, info.compiler_version, info.format_version);
    printf("dims:");
    if (!p->n_symbols) printf(" (none)");
    for (int i = 0; i < p->n_symbols; i++) {
        if (p->symbols[i].has_default) printf(" %s=%" PRId64, p->symbols[i].name, p->symbols[i].default_value);
        else printf(" %s", p->symbols[i].name);
    }
    printf("\n");
    printf("params: %d\n", p->n_params);
    printf("entry points:\n");
    for (int i = 0; i < p->n_graphs; i++) {
        const struct itr_graph *g = p->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        char sig[4096];
        itr_exec_format_signature(p, g, sig, sizeof sig);
        int np = 0;
        for (int k = 0; k < g->n_values; k++) np += g->values[k].kind == ITR_VALUE_PARAM;
        printf("  %s\n      uses %d param%s\n", sig, np, np == 1 ? "" : "s");
    }
    itr_program_free(p);
    return finish(&d, ITR_EXIT_OK);
}

// ------------------------------------------------------------ dispatch

static const struct command commands[] = {
    { "run", "ENTRY [--in NAME=FILE.npy]... [--weights W.safetensors] [--dim NAME=VALUE]... [--out DIR] [--f64]",
      "run an entry point on .npy inputs",
      "  --in NAME=FILE.npy         the entry's input NAME; one per input\n"
      "  --in NAME=scalar:VALUE     a rank-0 input given inline (a seed, a step counter)\n"
      "  -w, --weights FILE         parameters (safetensors), as 'init' or training writes them;\n"
      "                             every parameter the entry uses must be there with its exact\n"
      "                             dtype and shape\n"
      "  --dim NAME=VALUE           bind a dim the tensors do not determine; repeatable\n"
      "  --out DIR                  where to write the outputs, one DIR/NAME.npy each (default .)\n"
      "  --f64                      compute f32 values in f64 (outputs are f64)\n"
      "Prints one line per output: 'NAME: DTYPE [SHAPE] -> PATH'.\n",
      cmd_run },
    { "init", "--seed S -o W.safetensors [--dim NAME=VALUE]...", "write freshly initialised parameters",
      "  --seed S                   the seed (a non-negative integer; default 0); the same seed\n"
      "                             gives the same bytes on every machine\n"
      "  -o, --output FILE          the safetensors file to write (atomically)\n"
      "  --dim NAME=VALUE           bind a dim that parameter shapes use and that has no default\n"
      "The file's metadata records the plan's fingerprint and the seed.\n",
      cmd_init },
    { "info", "", "show the plan's entry points and their signatures",
      "Prints the model, target, fingerprint, dims (with defaults), and each entry point with its\n"
      "inputs and outputs.\n",
      cmd_info },
    { "step", "--weights W.safetensors --out W2.safetensors [--in NAME=FILE.npy]... [--lr X] [--step N] [--seed S] "
      "[--dim NAME=VALUE]... [--f64]",
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
      "Prints 'step N: LOSS_NAME VALUE, METRIC VALUE, ... (lr X)'; W2's metadata records the step\n"
      "and the plan's fingerprint.\n",
      cmd_step },
};
#define N_COMMANDS ((int)(sizeof commands / sizeof *commands))

static const struct command *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void list_commands(FILE *f) {
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "%s%s", i ? ", " : "", commands[i].name);
}

static void print_usage(FILE *f) {
    fprintf(f, "usage: %s FILE.plan COMMAND [ARGS]\n\n"
               "Runs plans that itrc compiled (docs/cli.md).\n\ncommands:\n", PROG);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-6s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  %s FILE.plan COMMAND --help   options of a command (also: %s help COMMAND)\n"
               "  %s --version                  version and plan format\n\n"
               "exit status: 0 ok, 1 user error (bad input or usage), 2 internal error\n", PROG, PROG, PROG);
}

static void print_command_help(const struct command *c) {
    printf("usage: %s FILE.plan %s%s%s\n\n%s.\n\n%s", PROG, c->name, c->args[0] ? " " : "", c->args, c->summary,
           c->help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return ITR_EXIT_USER;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc > 2) {
            const struct command *c = find_command(argv[2]);
            if (!c) {
                fprintf(stderr, "%s: unknown command '%s'; commands: ", PROG, argv[2]);
                list_commands(stderr);
                fputc('\n', stderr);
                return ITR_EXIT_USER;
            }
            print_command_help(c);
        } else {
            print_usage(stdout);
        }
        return ITR_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("%s %s (plan format %d)\n", PROG, ITR_VERSION_STRING, ITR_PLAN_FORMAT_VERSION);
        return ITR_EXIT_OK;
    }
    if (argv[1][0] == '-' && argv[1][1]) return usage_error(NULL, "unknown option '%s'", argv[1]);
    const char *plan = argv[1];
    if (argc < 3) {
        fprintf(stderr, "%s: missing command after '%s'; commands: ", PROG, plan);
        list_commands(stderr);
        fprintf(stderr, " (see '%s --help')\n", PROG);
        return ITR_EXIT_USER;
    }
    if (is_help(argv[2])) {
        print_usage(stdout);
        return ITR_EXIT_OK;
    }
    const struct command *c = find_command(argv[2]);
    if (!c) {
        fprintf(stderr, "%s: unknown command '%s'; commands: ", PROG, argv[2]);
        list_commands(stderr);
        fprintf(stderr, " (see '%s --help')\n", PROG);
        return ITR_EXIT_USER;
    }
    for (int i = 3; i < argc; i++)
        if (is_help(argv[i])) { print_command_help(c); return ITR_EXIT_OK; }
    return c->run(plan, argc - 2, argv + 2);
}
