// Gradients of every module of models/modules/ (one entry each in
// tests/ir/modules_harness.ir) against f64 central differences, with respect
// to every parameter and every float input, and the padding hazards of
// models.md §7 item 13: no NaN reaches a gradient through padded steps,
// padded keys or fully masked rows, and padded inputs get exactly zero
// gradient where nothing downstream reads them.
//
// Inputs: the fixture parameters and integer/bool inputs of
// tests/fixtures/modules/ (mixed lengths 5, 2, 3; a fully masked softmax
// row), and seeded random float inputs in [-1, 1): the fixtures' float
// inputs hold all-zero and near-zero rows, where the norms are not
// differentiable, so they serve the hazard tests instead.
#include "tests/test.h"
#include "tests/gradcheck.h"

#include "runtime/npy.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/modules/"

// Elements probed per differentiated tensor: enough to cover every gate and
// head of these sizes, few enough for the ASan build.
#define MAX_PROBES 64

static struct itr_program *load_harness(void) {
    const char *inc[] = { ITR_SOURCE_DIR "/models" };
    struct itr_parse_options po = { .include_dirs = inc, .n_include_dirs = 1 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(ITR_SOURCE_DIR "/tests/ir/modules_harness.ir", &po, &d);
    if (!p || itr_diags_has_errors(&d)) {
        itr_diags_print(&d, stderr);
        itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

static struct itr_tensor *fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s.npy", name);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(path, &d);
    if (!t) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return t;
}

// Every parameter of the harness from its fixture (all are present).
static struct itr_tensor **load_params(const struct itr_program *p) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    for (int i = 0; t && i < p->n_params; i++) t[i] = fixture(p->params[i].name);
    return t;
}

static uint64_t name_seed(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// Masks are switches, not data: the masked softmax adds (m - 1)·1e30, whose
// derivative in m is 1e30 and whose finite differences mean nothing.
static bool is_mask(const char *name) { return strcmp(name, "mask") == 0; }

// Inputs of an entry: fixture tensors for masks and integer inputs, random
// floats for the rest.
static struct itr_tensor **entry_inputs(const struct itr_graph *g) {
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    uint64_t seed = name_seed(g->name);
    for (int i = 0; in && i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        char name[256];
        snprintf(name, sizeof name, "%s.in.%s", g->name, v->name);
        struct itr_tensor *fx = fixture(name);
        if (!fx) continue;
        if (itr_dtype_is_float(v->type.dtype) && !is_mask(v->name)) {
            in[i] = gc_random(ITR_F64, fx->rank, fx->shape, -1, 1, 0, &seed);
            itr_tensor_free(fx);
        } else {
            in[i] = fx;
        }
    }
    return in;
}

// ---------------------------------------------------------------- finite differences

struct entry_result {
    char name[64];
    double worst, worst_f32;
    int n_checked;
};

static struct entry_result results[64];
static int n_results;

TEST(every_module_gradient_matches_finite_differences) {
    struct itr_program *p = load_harness();
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor **params = load_params(p);
    int n_entries = 0;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        n_entries++;
        // masked_log_softmax's raw output holds -1e30 at masked entries: a
        // loss over it loses every other term to rounding. Its masked copy
        // ym is the differentiable result.
        if (strcmp(g->name, "run_masked_log_softmax") == 0)
            for (int k = 0; k < g->n_outputs; k++)
                if (strcmp(g->output_names[k], "y") == 0) {
                    g->outputs[k] = g->outputs[g->n_outputs - 1];
                    g->output_names[k] = g->output_names[g->n_outputs - 1];
                    g->n_outputs--;
                }
        struct itr_tensor **in = entry_inputs(g);
        int n_in = g->n_inputs;
        bool have = in != NULL;
        for (int i = 0; have && i < n_in; i++) have = in[i] != NULL;
        CHECK_MSG(have, "%s: missing fixture inputs", g->name);
        // wrt: every float input but masks, and every parameter the entry reads.
        const char *wrt[64];
        int n_wrt = 0;
        for (int i = 0; i < n_in; i++) {
            const struct itr_value *v = &g->values[g->inputs[i]];
            if (itr_dtype_is_float(v->type.dtype) && !is_mask(v->name)) wrt[n_wrt++] = v->name;
        }
        for (int v = 0; v < g->n_values && n_wrt < 64; v++)
            if (g->values[v].kind == ITR_VALUE_PARAM) wrt[n_wrt++] = g->values[v].name;
        struct gc_options o = gc_defaults();
        o.max_elems = MAX_PROBES;
        o.wrt = wrt;
        o.n_wrt = n_wrt;
        struct gc_result r;
        memset(&r, 0, sizeof r);
        bool ok = have && gc_check(p, g->name, in, params, &o, &r);
        CHECK_MSG(ok, "%s: %s", g->name, gc_describe(&r));
        CHECK_MSG(r.n_checked > 0, "%s: nothing checked", g->name);
        printf("  %-24s %4d elements, f64 error %.2g, f32 error %.2g%s%s\n", g->name, r.n_checked, r.worst,
               r.worst_f32, r.unreached[0] ? ", unreached: " : "", r.unreached);
        if (n_results < 64) {
            struct entry_result *e = &results[n_results++];
            snprintf(e->name, sizeof e->name, "%s", g->name);
            e->worst = r.worst;
            e->worst_f32 = r.worst_f32;
            e->n_checked = r.n_checked;
        }
        gc_free_tensors(in, n_in);
    }
    CHECK(n_entries >= 30);
    gc_free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- padding hazards

// The adjoint of entry `name` in f64 with output seeds w[k] (per float
// output), differentiated with respect to every float input and every
// parameter it reads. grads[i] receives the gradient of input i (NULL if
// not a float input or not reached); *nan counts non-finite elements in all
// gradients, parameters included.
static bool adjoint(struct itr_program *p, const char *name, struct itr_tensor *const *in,
                    struct itr_tensor *const *params, struct itr_tensor *const *w, struct itr_tensor **grads,
                    int *nonfinite) {
    struct itr_graph *g = itr_program_find_graph(p, name);
    if (!g) return false;
    int n_in = g->n_inputs, n_out = g->n_outputs;
    int32_t outs[16], seeds[16], wrt[64], gv[64];
    bool reached[64];
    struct itr_tensor *args[32];
    int ns = 0, nw = 0;
    for (int i = 0; i < n_in; i++) args[i] = in[i];
    for (int k = 0; k < n_out; k++) {
        if (!w[k]) continue;
        outs[ns] = g->outputs[k];
        args[n_in + ns] = w[k];
        seeds[ns++] = itr_graph_add_input(g, "seed", g->values[g->outputs[k]].type, ITR_NOLOC);
    }
    for (int i = 0; i < n_in; i++)
        if (itr_dtype_is_float(g->values[g->inputs[i]].type.dtype)) wrt[nw++] = g->inputs[i];
    int n_input_wrt = nw;
    for (int v = 0; v < g->n_values && nw < 64; v++)
        if (g->values[v].kind == ITR_VALUE_PARAM) wrt[nw++] = v;
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_vjp(g, outs, seeds, ns, wrt, nw, gv, reached, &d);
    int first = g->n_outputs, n_grads = 0;
    for (int j = 0; ok && j < nw; j++)
        if (reached[j]) itr_graph_add_output(g, "grad", gv[j]), n_grads++;
    ok = ok && itr_program_verify(p, &d);
    struct itr_tensor *res[96] = { 0 };
    struct itr_ref_options ro = { .f64 = true };
    ok = ok && itr_ref_run(g, args, params, NULL, &ro, res, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    *nonfinite = 0;
    for (int r = first; ok && r < first + n_grads; r++)
        for (int64_t e = 0; e < itr_tensor_numel(res[r]); e++) *nonfinite += !isfinite(itr_tensor_get(res[r], e));
    for (int i = 0, j = 0, r = first; i < n_in; i++) {
        grads[i] = NULL;
        if (j < n_input_wrt && wrt[j] == g->inputs[i]) {
            if (ok && reached[j]) {
                grads[i] = res[r];
                res[r++] = NULL;
            }
            j++;
        }
    }
    for (int k = 0; k < 96; k++) itr_tensor_free(res[k]);
    return ok;
}

// Random seeds shaped like each float output of the entry (run once to
// learn the shapes); zero at rows [b, t >= lengths[b]] when zero_padded.
static bool seeds_for(struct itr_program *p, const char *name, struct itr_tensor *const *in,
                      struct itr_tensor *const *params, const struct itr_tensor *lengths, bool zero_padded,
                      struct itr_tensor **w) {
    const struct itr_graph *g = itr_program_find_graph(p, name);
    struct itr_tensor *out[16] = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options ro = { .f64 = true };
    bool ok = itr_ref_run(g, in, params, NULL, &ro, out, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    uint64_t seed = name_seed(name) ^ 0x77;
    for (int k = 0; k < g->n_outputs; k++) {
        w[k] = NULL;
        if (!ok || !itr_dtype_is_float(out[k]->dtype)) continue;
        w[k] = gc_random(ITR_F64, out[k]->rank, out[k]->shape, -1, 1, 0, &seed);
        if (zero_padded && lengths && out[k]->rank >= 2) {
            int64_t B = out[k]->shape[0], L = out[k]->shape[1], inner = itr_tensor_numel(out[k]) / (B * L);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = (int64_t)itr_tensor_get(lengths, b); t < L; t++)
                    for (int64_t e = 0; e < inner; e++) itr_tensor_set(w[k], (b * L + t) * inner + e, 0.0);
        }
    }
    for (int k = 0; k < 16; k++) itr_tensor_free(out[k]);
    return ok;
}

// Gradients of a padded-sequence entry (inputs x [B, L, ...] and lengths
// [B]) with lengths lens: every gradient finite, and dx exactly 0 at padded
// steps. zero_padded: the loss ignores outputs at padded positions (as a
// masked pooling or loss downstream does); the GRUs need no such help,
// since their outputs there are exactly 0 whatever the seed.
static void check_padded(const char *name, const int *lens, bool zero_padded) {
    struct itr_program *p = load_harness();
    if (!p) { FAIL_AT("no harness"); return; }
    struct itr_tensor **params = load_params(p);
    const struct itr_graph *g = itr_program_find_graph(p, name);
    struct itr_tensor **in = entry_inputs(g);
    int n_in = g->n_inputs, ix = -1, il = -1;
    for (int i = 0; i < n_in; i++) {
        if (strcmp(g->values[g->inputs[i]].name, "x") == 0) ix = i;
        if (strcmp(g->values[g->inputs[i]].name, "lengths") == 0) il = i;
    }
    if (ix < 0 || il < 0 || !in || !in[ix] || !in[il]) {
        FAIL_AT("%s: no x/lengths", name);
        gc_free_tensors(in, n_in);
        gc_free_tensors(params, p->n_params);
        itr_program_free(p);
        return;
    }
    for (int b = 0; b < in[il]->shape[0]; b++) itr_tensor_set(in[il], b, lens[b]);
    struct itr_tensor *w[16] = { 0 }, *grads[8] = { 0 };
    int nonfinite = -1;
    bool ok = seeds_for(p, name, in, params, in[il], zero_padded, w) &&
              adjoint(p, name, in, params, w, grads, &nonfinite);
    CHECK_MSG(ok && grads[ix], "%s: no gradient", name);
    CHECK_MSG(nonfinite == 0, "%s: %d non-finite gradient elements", name, nonfinite);
    if (ok && grads[ix]) {
        const struct itr_tensor *dx = grads[ix];
        int64_t B = dx->shape[0], L = dx->shape[1], inner = itr_tensor_numel(dx) / (B * L);
        int padded_nonzero = 0, valid_nonzero = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < L; t++)
                for (int64_t e = 0; e < inner; e++) {
                    bool nz = itr_tensor_get(dx, (b * L + t) * inner + e) != 0.0;
                    if (t >= lens[b]) padded_nonzero += nz;
                    else valid_nonzero += nz;
                }
        CHECK_MSG(padded_nonzero == 0, "%s: %d padded input elements have a nonzero gradient", name, padded_nonzero);
        CHECK_MSG(valid_nonzero > 0, "%s: no valid input element has a gradient", name);
    }
    for (int k = 0; k < 16; k++) itr_tensor_free(w[k]);
    for (int k = 0; k < 8; k++) itr_tensor_free(grads[k]);
    gc_free_tensors(in, n_in);
    gc_free_tensors(params, p->n_params);
    itr_program_free(p);
}

static const int MIXED[3] = { 5, 2, 3 };
static const int WITH_EMPTY[3] = { 5, 0, 3 };

TEST(gru_gradients_through_padding) {
    const char *entries[] = { "run_gru", "run_gru_last", "run_gru_reverse", "run_bigru" };
    for (size_t i = 0; i < 4; i++) {
        check_padded(entries[i], MIXED, false);
        check_padded(entries[i], WITH_EMPTY, false);
    }
}

TEST(masked_pooling_and_attention_gradients_through_padding) {
    check_padded("run_masked_mean", MIXED, false);
    check_padded("run_masked_mean", WITH_EMPTY, false);
    const char *entries[] = { "run_mha", "run_mha_bias", "run_transformer" };
    for (size_t i = 0; i < 3; i++) {
        check_padded(entries[i], MIXED, true);
        // A sequence of length 0 has every key masked: its query rows are
        // fully masked softmax rows.
        check_padded(entries[i], WITH_EMPTY, true);
    }
}

// The fixture masks have a fully masked row: finite gradients, exactly 0
// at every masked logit.
TEST(masked_softmax_gradients) {
    const char *entries[] = { "run_masked_softmax", "run_masked_softmax_f", "run_masked_log_softmax" };
    for (size_t e = 0; e < 3; e++) {
        struct itr_program *p = load_harness();
        if (!p) { FAIL_AT("no harness"); return; }
        struct itr_graph *g = itr_program_find_graph(p, entries[e]);
        if (e == 2) g->n_outputs = 1;   // ym only: y holds -1e30 at masked entries
        struct itr_tensor **in = entry_inputs(g);
        int n_in = g->n_inputs;   // the adjoint adds seed inputs to g
        struct itr_tensor *w[16] = { 0 }, *grads[4] = { 0 };
        int nonfinite = -1;
        bool ok = in && in[0] && in[1] && seeds_for(p, entries[e], in, NULL, NULL, false, w) &&
                  adjoint(p, entries[e], in, NULL, w, grads, &nonfinite);
        CHECK_MSG(ok && grads[0], "%s: no gradient", entries[e]);
        CHECK_MSG(nonfinite == 0, "%s: %d non-finite gradient elements", entries[e], nonfinite);
        if (ok && grads[0])
            for (int64_t i = 0; i < itr_tensor_numel(in[1]); i++)
                if (itr_tensor_get(in[1], i) == 0.0)
                    CHECK_MSG(itr_tensor_get(grads[0], i) == 0.0, "%s: masked dx[%lld] = %g", entries[e],
                              (long long)i, itr_tensor_get(grads[0], i));
        for (int k = 0; k < 16; k++) itr_tensor_free(w[k]);
        for (int k = 0; k < 4; k++) itr_tensor_free(grads[k]);
        gc_free_tensors(in, n_in);
        itr_program_free(p);
    }
}

// The hazard itself (models.md §7 item 13): the norms at an all-zero row,
// as a padded row reaches them. sqrt's adjoint dy/(2y) would be 0/0 at
// y = 0 although the adjoint reaching the sqrt is exactly 0 there, and the
// NaN would spread to every parameter upstream; the sqrt rule keeps a zero
// adjoint zero, so every norm module stays finite (as F.normalize and
// cosine_similarity do in PyTorch).
TEST(norm_gradients_at_zero_rows) {
    const struct { const char *entry; int axis; bool nan_expected; } cases[] = {
        { "run_l2norm_e", 2, false }, { "run_l2norm_axis1", 1, false }, { "run_clipped_l2norm", 2, false },
        { "run_fnorm", 2, false },    { "run_cosine", 2, false },       { "run_l1norm", 2, false },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct itr_program *p = load_harness();
        if (!p) { FAIL_AT("no harness"); return; }
        struct itr_graph *g = itr_program_find_graph(p, cases[c].entry);
        int n_in = g->n_inputs;   // the adjoint adds seed inputs to g
        struct itr_tensor **in = entry_inputs(g);
        // One all-zero row along the normalised axis of x [3, 5, 4] (of a for cosine).
        for (int k = 0; in && in[0] && k < in[0]->shape[cases[c].axis]; k++)
            itr_tensor_set(in[0], cases[c].axis == 2 ? (1 * 5 + 2) * 4 + k : (1 * 5 + k) * 4 + 2, 0.0);
        struct itr_tensor *w[16] = { 0 }, *grads[4] = { 0 };
        int nonfinite = -1;
        bool ok = in && in[0] && seeds_for(p, cases[c].entry, in, NULL, NULL, false, w) &&
                  adjoint(p, cases[c].entry, in, NULL, w, grads, &nonfinite);
        CHECK_MSG(ok, "%s: no gradient", cases[c].entry);
        printf("  %-20s with a zero row: %d non-finite gradient elements\n", cases[c].entry, nonfinite);
        CHECK_MSG((nonfinite > 0) == cases[c].nan_expected, "%s: %d non-finite gradient elements (expected %s)",
                  cases[c].entry, nonfinite, cases[c].nan_expected ? "some" : "none");
        for (int k = 0; k < 16; k++) itr_tensor_free(w[k]);
        for (int k = 0; k < 4; k++) itr_tensor_free(grads[k]);
        gc_free_tensors(in, n_in);
        itr_program_free(p);
    }
}

int main(void) {
    RUN(every_module_gradient_matches_finite_differences);
    RUN(gru_gradients_through_padding);
    RUN(masked_pooling_and_attention_gradients_through_padding);
    RUN(masked_softmax_gradients);
    RUN(norm_gradients_at_zero_rows);
    double worst = 0, worst32 = 0;
    for (int i = 0; i < n_results; i++) {
        if (results[i].worst > worst) worst = results[i].worst;
        if (results[i].worst_f32 > worst32) worst32 = results[i].worst_f32;
    }
    printf("worst gradient error over %d entries: f64 %.3g, f32 %.3g\n", n_results, worst, worst32);
    return test_summary();
}
