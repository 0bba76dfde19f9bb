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
#include "tests/fixture_harness.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/modules/"

// Elements probed per differentiated tensor: enough to cover every gate and
// head of these sizes, few enough for the ASan build.
#define MAX_PROBES 64

#define HARNESS ITR_SOURCE_DIR "/tests/ir/modules_harness.ir"


// Inputs of an entry: fixture tensors for masks and integer inputs, random
// floats for the rest.
static struct itr_tensor **entry_inputs(const struct itr_graph *g) {
    return fh_entry_inputs(g, FIXTURES, true);
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
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
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
        struct gc_options o = gc_defaults();
        o.max_elems = MAX_PROBES;
        struct gc_result r;
        fh_gc_entry(p, g, FIXTURES, params, &o, &r);
        printf("  %-24s %4d elements, f64 error %.2g, f32 error %.2g%s%s\n", g->name, r.n_checked, r.worst,
               r.worst_f32, r.unreached[0] ? ", unreached: " : "", r.unreached);
        if (n_results < 64) {
            struct entry_result *e = &results[n_results++];
            snprintf(e->name, sizeof e->name, "%s", g->name);
            e->worst = r.worst;
            e->worst_f32 = r.worst_f32;
            e->n_checked = r.n_checked;
        }
    }
    CHECK(n_entries >= 30);
    gc_free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- padding hazards

// Gradients of a padded-sequence entry (inputs x [B, L, ...] and lengths
// [B]) with lengths lens: every gradient finite, and dx exactly 0 at padded
// steps. zero_padded: the loss ignores outputs at padded positions (as a
// masked pooling or loss downstream does); the GRUs need no such help,
// since their outputs there are exactly 0 whatever the seed.
static void check_padded(const char *name, const int *lens, bool zero_padded) {
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
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
    bool ok = fh_output_seeds(p, name, in, params, in[il], zero_padded, w) &&
              fh_adjoint(p, name, in, params, w, grads, &nonfinite);
    CHECK_MSG(ok && grads[ix], "%s: no gradient", name);
    CHECK_MSG(nonfinite == 0, "%s: %d non-finite gradient elements", name, nonfinite);
    if (ok && grads[ix]) {
        int64_t lens64[16];
        for (int64_t b = 0; b < grads[ix]->shape[0] && b < 16; b++) lens64[b] = lens[b];
        int padded_nonzero, valid_nonzero;
        fh_count_padded_nonzero(grads[ix], lens64, &padded_nonzero, &valid_nonzero);
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
        struct itr_program *p = fh_load(HARNESS, FIXTURES, NULL);
        if (!p) return;
        struct itr_graph *g = itr_program_find_graph(p, entries[e]);
        if (e == 2) g->n_outputs = 1;   // ym only: y holds -1e30 at masked entries
        struct itr_tensor **in = entry_inputs(g);
        int n_in = g->n_inputs;   // the adjoint adds seed inputs to g
        struct itr_tensor *w[16] = { 0 }, *grads[4] = { 0 };
        int nonfinite = -1;
        bool ok = in && in[0] && in[1] && fh_output_seeds(p, entries[e], in, NULL, NULL, false, w) &&
                  fh_adjoint(p, entries[e], in, NULL, w, grads, &nonfinite);
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
        struct itr_program *p = fh_load(HARNESS, FIXTURES, NULL);
        if (!p) return;
        struct itr_graph *g = itr_program_find_graph(p, cases[c].entry);
        int n_in = g->n_inputs;   // the adjoint adds seed inputs to g
        struct itr_tensor **in = entry_inputs(g);
        // One all-zero row along the normalised axis of x [3, 5, 4] (of a for cosine).
        for (int k = 0; in && in[0] && k < in[0]->shape[cases[c].axis]; k++)
            itr_tensor_set(in[0], cases[c].axis == 2 ? (1 * 5 + 2) * 4 + k : (1 * 5 + k) * 4 + 2, 0.0);
        struct itr_tensor *w[16] = { 0 }, *grads[4] = { 0 };
        int nonfinite = -1;
        bool ok = in && in[0] && fh_output_seeds(p, cases[c].entry, in, NULL, NULL, false, w) &&
                  fh_adjoint(p, cases[c].entry, in, NULL, w, grads, &nonfinite);
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
