// The IR module library (models/modules/*.ir) and VSE++ against PyTorch.
//
// tests/ir/modules_harness.ir has one entry per module; for each, the inputs,
// parameters and PyTorch's outputs are .npy files written by
// tests/gen_module_fixtures.py. Every entry runs in the reference interpreter
// in f32 (compared with PyTorch float32) and f64 (compared with PyTorch
// float64 on the same float32 inputs). Errors are scale-relative,
// max|a-b| / max|b| (models.md §7 item 14), so entries whose outputs have
// exact zeros or tiny rows are not judged element by element.
#include "tests/test.h"

#include <stdlib.h>

#include "backends/ref/ref.h"
#include "ir/bind.h"
#include "ir/text.h"
#include "runtime/npy.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/modules/"

// An independent float32 implementation agrees with PyTorch to a few 1e-7 on
// these sizes; 1e-5 leaves room for other summation orders. In f64 what is
// left is PyTorch's own float64 rounding and summation order (~1e-13 at most
// here): float literals keep their double value, so epsilons are exact.
#define TOL_F32 1e-5
#define TOL_F64 1e-12

static struct itr_program *harness;

static struct itr_program *parse(const char *path, const char *const *overrides, int n_overrides) {
    const char *inc[] = { ITR_SOURCE_DIR "/models" };
    struct itr_parse_options opt = { .include_dirs = inc, .n_include_dirs = 1, .overrides = overrides,
                                     .n_overrides = n_overrides };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(path, &opt, &d);
    if (!p || itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

static struct itr_tensor *fixture(const char *name, bool quiet) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.npy", name);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(path, &d);
    if (!t && !quiet) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return t;
}

static bool file_exists(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.npy", name);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

// The outputs of one entry run; inputs not given in `in` come from
// <prefix><entry>.in.<input>.npy, parameters from <prefix><param>.npy.
struct run {
    const struct itr_graph *g;
    struct itr_tensor **out;
    int n_out;
};

static void run_free(struct run *r) {
    for (int i = 0; r->out && i < r->n_out; i++) itr_tensor_free(r->out[i]);
    free(r->out);
    r->out = NULL;
}

static struct itr_tensor *entry_input(const char *prefix, const char *entry, const char *input) {
    char name[256];
    snprintf(name, sizeof name, "%s%s.in.%s", prefix, entry, input);
    return fixture(name, false);
}

static bool run_entry(const struct itr_program *p, const char *prefix, const char *entry, bool f64,
                      struct itr_tensor *const *given, struct run *r) {
    memset(r, 0, sizeof *r);
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    if (!g || g->kind != ITR_GRAPH_ENTRY) {
        fprintf(stderr, "no entry '%s'\n", entry);
        return false;
    }
    r->g = g;
    bool ok = true;
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    struct itr_tensor **params = calloc((size_t)p->n_params + 1, sizeof *params);
    for (int i = 0; i < g->n_inputs && ok; i++) {
        if (given && given[i]) continue;
        in[i] = entry_input(prefix, entry, g->values[g->inputs[i]].name);
        ok = in[i] != NULL;
    }
    for (int v = 0; v < g->n_values && ok; v++) {
        const struct itr_value *val = &g->values[v];
        if (val->kind != ITR_VALUE_PARAM || params[val->param]) continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, p->params[val->param].name);
        params[val->param] = fixture(name, false);
        ok = params[val->param] != NULL;
    }
    struct itr_tensor **args = calloc((size_t)g->n_inputs + 1, sizeof *args);
    for (int i = 0; i < g->n_inputs; i++) args[i] = given && given[i] ? given[i] : in[i];
    if (ok) {
        struct itr_dim_bindings dims;
        itr_bindings_init(&dims, p);
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_ref_options opt = { .f64 = f64 };
        r->out = calloc((size_t)g->n_outputs + 1, sizeof *r->out);
        r->n_out = g->n_outputs;
        ok = itr_ref_run(g, args, params, &dims, &opt, r->out, &d);
        if (!ok) {
            itr_diags_print(&d, stderr);
            free(r->out);
            r->out = NULL;
        }
        itr_diags_free(&d);
        itr_bindings_free(&dims);
    }
    for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
    for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[j]);
    free(in);
    free(params);
    free(args);
    return ok;
}

static bool same_shape(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

// max|a-b| / max(max|b|, tiny); +inf for a shape mismatch or any NaN.
static double rel_err(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!same_shape(a, b)) return INFINITY;
    double num = 0, den = 1e-30;
    for (int64_t i = 0; i < itr_tensor_numel(b); i++) {
        double x = itr_tensor_get(a, i), y = itr_tensor_get(b, i);
        if (isnan(x) || isnan(y)) return INFINITY;
        if (fabs(x - y) > num) num = fabs(x - y);
        if (fabs(y) > den) den = fabs(y);
    }
    return num / den;
}

// Runs entry in both precisions and compares every output that has a
// reference file; returns the worst f32 error and writes the f64 one.
static double check_entry(const struct itr_program *p, const char *prefix, const char *entry, double *err64) {
    double worst[2] = { 0, 0 };
    for (int mode = 0; mode < 2; mode++) {
        struct run r;
        if (!run_entry(p, prefix, entry, mode == 1, NULL, &r)) {
            FAIL_AT("entry '%s%s' did not run (%s)", prefix, entry, mode ? "f64" : "f32");
            worst[mode] = INFINITY;
            continue;
        }
        int compared = 0;
        for (int k = 0; k < r.n_out; k++) {
            char name[256];
            snprintf(name, sizeof name, "%s%s.%s.%s", prefix, entry, mode ? "out64" : "out", r.g->output_names[k]);
            if (!file_exists(name)) continue;
            struct itr_tensor *want = fixture(name, false);
            CHECK_MSG(want != NULL, "cannot read %s", name);
            if (!want) continue;
            CHECK_MSG(r.out[k]->dtype == (mode ? ITR_F64 : ITR_F32), "%s%s output %s has dtype %s", prefix, entry,
                      r.g->output_names[k], itr_dtype_name(r.out[k]->dtype));
            double e = rel_err(r.out[k], want);
            if (!(e <= worst[mode])) worst[mode] = e;
            compared++;
            itr_tensor_free(want);
        }
        CHECK_MSG(compared > 0, "entry '%s%s' has no reference outputs", prefix, entry);
        run_free(&r);
    }
    *err64 = worst[1];
    return worst[0];
}

static void report(const char *prefix, const char *entry, double e32, double e64) {
    printf("  %-28s f32 %.3g  f64 %.3g\n", entry, e32, e64);
    (void)prefix;
    CHECK_MSG(e32 <= TOL_F32, "%s%s: f32 error %.3g > %g", prefix, entry, e32, TOL_F32);
    CHECK_MSG(e64 <= TOL_F64, "%s%s: f64 error %.3g > %g", prefix, entry, e64, TOL_F64);
}

// ---------------------------------------------------------------- tests

TEST(harness_parses) {
    CHECK(harness != NULL);
    if (!harness) return;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_program_verify(harness, &d));
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
}

TEST(every_entry_matches_pytorch) {
    if (!harness) { FAIL_AT("no harness"); return; }
    int n = 0;
    for (int i = 0; i < harness->n_graphs; i++) {
        const struct itr_graph *g = harness->graphs[i];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        double e64, e32 = check_entry(harness, "", g->name, &e64);
        report("", g->name, e32, e64);
        n++;
    }
    CHECK(n >= 30);
}

// Parameter declarations: names, shapes and initialisers of the module library.
TEST(parameter_declarations) {
    if (!harness) { FAIL_AT("no harness"); return; }
    struct { const char *name; enum itr_init_kind init; double a, b; bool frozen; } want[] = {
        { "lin.weight", ITR_INIT_XAVIER_UNIFORM, 1.0, 0, false },
        { "lin.bias", ITR_INIT_ZEROS, 0, 0, false },
        { "emb.weight", ITR_INIT_UNIFORM, -0.1, 0.1, false },
        { "ln.weight", ITR_INIT_ONES, 0, 0, false },
        { "ln.bias", ITR_INIT_ZEROS, 0, 0, false },
        { "bn.running_mean", ITR_INIT_ZEROS, 0, 0, true },
        { "bn.running_var", ITR_INIT_ONES, 0, 0, true },
        { "bn.weight", ITR_INIT_ONES, 0, 0, false },
        { "attn.in_proj_weight", ITR_INIT_XAVIER_UNIFORM, 1.0, 0, false },
        { "enc.self_attn.out_proj.weight", ITR_INIT_XAVIER_UNIFORM, 1.0, 0, false },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int32_t j = itr_program_find_param(harness, want[i].name);
        CHECK_MSG(j >= 0, "no parameter %s", want[i].name);
        if (j < 0) continue;
        const struct itr_param *pp = &harness->params[j];
        CHECK_MSG(pp->init.kind == want[i].init, "%s: init %s", want[i].name, itr_init_kind_name(pp->init.kind));
        if (want[i].init == ITR_INIT_UNIFORM || want[i].init == ITR_INIT_XAVIER_UNIFORM) CHECK_NEAR(pp->init.a, want[i].a, 0);
        if (want[i].init == ITR_INIT_UNIFORM) CHECK_NEAR(pp->init.b, want[i].b, 0);
        CHECK_MSG(pp->frozen == want[i].frozen, "%s: frozen = %d", want[i].name, pp->frozen);
    }
    CHECK(itr_program_find_param(harness, "lin_nb.bias") < 0);
    CHECK(itr_program_find_param(harness, "birnn.fwd.w_ih") >= 0);
    CHECK(itr_program_find_param(harness, "birnn.bwd.w_hh") >= 0);
}

// Padded steps of the GRUs and BiGRU-avg output exactly 0 (as packed
// sequences do), in both precisions.
TEST(padded_steps_are_zero) {
    if (!harness) { FAIL_AT("no harness"); return; }
    const char *entries[] = { "run_gru", "run_gru_reverse", "run_bigru" };
    struct itr_tensor *len = fixture("run_bigru.in.lengths", false);
    if (!len) { FAIL_AT("no lengths"); return; }
    for (size_t e = 0; e < 3; e++)
        for (int mode = 0; mode < 2; mode++) {
            struct run r;
            if (!run_entry(harness, "", entries[e], mode, NULL, &r)) { FAIL_AT("%s did not run", entries[e]); continue; }
            const struct itr_tensor *y = r.out[0];
            int64_t B = y->shape[0], L = y->shape[1], H = y->shape[2];
            int nonzero = 0, padded = 0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = (int64_t)itr_tensor_get(len, b); t < L; t++)
                    for (int64_t h = 0; h < H; h++, padded++) nonzero += itr_tensor_get(y, (b * L + t) * H + h) != 0.0;
            CHECK_MSG(padded > 0 && nonzero == 0, "%s: %d of %d padded outputs are nonzero", entries[e], nonzero, padded);
            run_free(&r);
        }
    itr_tensor_free(len);
}

// Changing the features at padded positions leaves every valid position's
// output bit-identical: padded keys get weight exactly 0.
static void check_padded_keys_ignored(const char *entry) {
    struct itr_tensor *x = entry_input("", entry, "x");
    struct itr_tensor *len = entry_input("", entry, "lengths");
    if (!x || !len) { FAIL_AT("no inputs for %s", entry); itr_tensor_free(x); itr_tensor_free(len); return; }
    int64_t B = x->shape[0], L = x->shape[1], D = x->shape[2];
    struct run base, moved;
    bool ok = run_entry(harness, "", entry, false, NULL, &base);
    struct itr_tensor *x2 = itr_tensor_clone(x);
    int changed = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = (int64_t)itr_tensor_get(len, b); t < L; t++, changed++)
            for (int64_t k = 0; k < D; k++) itr_tensor_set(x2, (b * L + t) * D + k, 1e3 * (double)(k + 1));
    const struct itr_graph *g = itr_program_find_graph(harness, entry);
    struct itr_tensor *given[3] = { NULL, NULL, NULL };
    for (int i = 0; g && i < g->n_inputs && i < 3; i++)
        if (strcmp(g->values[g->inputs[i]].name, "x") == 0) given[i] = x2;
    ok = ok && run_entry(harness, "", entry, false, given, &moved);
    CHECK_MSG(ok, "%s did not run", entry);
    CHECK(changed > 0);
    if (ok) {
        int differ = 0, padded_differ = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < L; t++)
                for (int64_t k = 0; k < D; k++) {
                    int64_t i = (b * L + t) * D + k;
                    bool diff = itr_tensor_get(base.out[0], i) != itr_tensor_get(moved.out[0], i);
                    if (t < (int64_t)itr_tensor_get(len, b)) differ += diff;
                    else padded_differ += diff;
                }
        CHECK_MSG(differ == 0, "%s: %d valid outputs changed with padded inputs", entry, differ);
        // The padded queries themselves did change, so the edit reached the graph.
        CHECK_MSG(padded_differ > 0, "%s: changing padded inputs changed nothing", entry);
        run_free(&moved);
    }
    run_free(&base);
    itr_tensor_free(x);
    itr_tensor_free(x2);
    itr_tensor_free(len);
}

TEST(attention_ignores_padded_keys) {
    if (!harness) { FAIL_AT("no harness"); return; }
    check_padded_keys_ignored("run_mha");
    check_padded_keys_ignored("run_transformer");
}

// A fully masked row: softmax gives zeros, log-softmax gives -1e30, no NaN;
// masked entries of other rows are exactly 0 (softmax) or <= -1e29 (log).
TEST(masked_softmax_rows) {
    if (!harness) { FAIL_AT("no harness"); return; }
    struct itr_tensor *mask = fixture("run_masked_softmax.in.mask", false);
    if (!mask) { FAIL_AT("no mask"); return; }
    const char *entries[] = { "run_masked_softmax", "run_masked_softmax_f", "run_masked_log_softmax" };
    for (size_t e = 0; e < 3; e++)
        for (int mode = 0; mode < 2; mode++) {
            struct run r;
            if (!run_entry(harness, "", entries[e], mode, NULL, &r)) { FAIL_AT("%s did not run", entries[e]); continue; }
            bool logp = e == 2;
            const struct itr_tensor *y = r.out[logp ? 1 : 0];
            int64_t B = y->shape[0], L = y->shape[1];
            for (int64_t b = 0; b < B; b++) {
                double total = 0;
                int valid = 0;
                for (int64_t t = 0; t < L; t++) {
                    double v = itr_tensor_get(y, b * L + t);
                    bool m = itr_tensor_get(mask, b * L + t) != 0;
                    CHECK_MSG(isfinite(v), "%s[%lld, %lld] = %g", entries[e], (long long)b, (long long)t, v);
                    if (!m) CHECK_MSG(logp ? v <= -1e29 : v == 0.0, "%s: masked [%lld, %lld] = %g", entries[e],
                                      (long long)b, (long long)t, v);
                    total += m ? (logp ? exp(v) : v) : 0;
                    valid += m;
                }
                if (valid) CHECK_NEAR(total, 1.0, 1e-6);
            }
            run_free(&r);
        }
    itr_tensor_free(mask);
}

// ---------------------------------------------------------------- VSE++

TEST(vsepp_default_config) {
    struct itr_program *p = parse(ITR_SOURCE_DIR "/models/vsepp.ir", NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    struct { const char *name; int rank; int64_t d0, d1; enum itr_init_kind init; double a; } want[] = {
        { "img_fc.weight", 2, 1024, 2048, ITR_INIT_XAVIER_UNIFORM, 1.0 },
        { "img_fc.bias", 1, 1024, 0, ITR_INIT_ZEROS, 0 },
        { "embed.weight", 2, -1, 300, ITR_INIT_UNIFORM, -0.1 },
        { "rnn.w_ih", 2, 3072, 300, ITR_INIT_UNIFORM, -0.03125 },
        { "rnn.w_hh", 2, 3072, 1024, ITR_INIT_UNIFORM, -0.03125 },
        { "rnn.b_ih", 1, 3072, 0, ITR_INIT_UNIFORM, -0.03125 },
        { "rnn.b_hh", 1, 3072, 0, ITR_INIT_UNIFORM, -0.03125 },
    };
    CHECK(p->n_params == (int)(sizeof want / sizeof want[0]));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int32_t j = itr_program_find_param(p, want[i].name);
        CHECK_MSG(j >= 0, "no parameter %s", want[i].name);
        if (j < 0) continue;
        const struct itr_param *pp = &p->params[j];
        CHECK(pp->type.rank == want[i].rank);
        int64_t v;
        if (want[i].d0 >= 0) CHECK(itr_dim_is_const(p, pp->type.dims[0], &v) && v == want[i].d0);
        else CHECK(!itr_dim_is_const(p, pp->type.dims[0], NULL));   // the vocabulary symbol V
        if (want[i].rank == 2) CHECK(itr_dim_is_const(p, pp->type.dims[1], &v) && v == want[i].d1);
        CHECK_MSG(pp->init.kind == want[i].init, "%s: init %s", want[i].name, itr_init_kind_name(pp->init.kind));
        if (want[i].init != ITR_INIT_ZEROS) CHECK_NEAR(pp->init.a, want[i].a, 0);
    }
    const char *entries[] = { "encode_image", "encode_text", "score" };
    for (int i = 0; i < 3; i++) CHECK_MSG(itr_program_find_graph(p, entries[i]), "no entry %s", entries[i]);
    int32_t V = itr_program_find_symbol(p, "V"), R = itr_program_find_symbol(p, "R");
    CHECK(V >= 0 && p->symbols[V].has_default && p->symbols[V].default_value == 10000);
    CHECK(R >= 0 && p->symbols[R].has_default && p->symbols[R].default_value == 36);
    itr_program_free(p);
}

TEST(vsepp_matches_pytorch) {
    const char *ov[] = { "D=8", "W=6", "V=20" };
    struct itr_program *p = parse(ITR_SOURCE_DIR "/models/vsepp.ir", ov, 3);
    CHECK(p != NULL);
    if (!p) return;
    const char *entries[] = { "encode_image", "encode_text", "score" };
    for (int i = 0; i < 3; i++) {
        double e64, e32 = check_entry(p, "vsepp.", entries[i], &e64);
        report("vsepp.", entries[i], e32, e64);
    }
    itr_program_free(p);
}

int main(void) {
    harness = parse(ITR_SOURCE_DIR "/tests/ir/modules_harness.ir", NULL, 0);
    RUN(harness_parses);
    RUN(every_entry_matches_pytorch);
    RUN(parameter_declarations);
    RUN(padded_steps_are_zero);
    RUN(attention_ignores_padded_keys);
    RUN(masked_softmax_rows);
    RUN(vsepp_default_config);
    RUN(vsepp_matches_pytorch);
    if (harness) itr_program_free(harness);
    return test_summary();
}
