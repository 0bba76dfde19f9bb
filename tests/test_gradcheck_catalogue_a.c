// Gradients of the aggregation and similarity catalogue (one entry per
// module and option in tests/ir/catalogue_a_harness.ir) against f64
// central differences, with respect to every parameter and every float
// input but the masks; and the padding hazard of models.md §7 item 13 for
// the masked modules: with zero padded rows (as encoders give them) no
// gradient is NaN and padded rows get exactly zero gradient.
//
// Inputs: the fixture parameters and integer/mask inputs of
// tests/fixtures/catalogue_a/, and seeded random float inputs in [-1, 1)
// (the fixtures' padded rows are huge or zero, where the finite
// differences would straddle kinks).
//
// What the finite differences see is the whole function, so the entry
// checked for DistGWD is run_dist_gwd_nodetach: the collection's
// stop-gradient on the last plan (run_dist_gwd) is a deliberate
// non-gradient.
#include "tests/fixture_harness.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/catalogue_a/"

// Elements probed per differentiated tensor (the LLVM variant, which
// compiles every probe, takes fewer).
#ifndef MAX_PROBES
#define MAX_PROBES 48
#endif

#define HARNESS ITR_SOURCE_DIR "/tests/ir/catalogue_a_harness.ir"


// ---------------------------------------------------------------- finite differences

TEST(every_module_gradient_matches_finite_differences) {
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
    int n_entries = 0;
    double worst = 0, worst32 = 0;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY || strcmp(g->name, "run_dist_gwd") == 0) continue;
        n_entries++;
        struct gc_options o = gc_defaults();
        o.max_elems = MAX_PROBES;
        // Gromov-Wasserstein runs 5 x 20 Sinkhorn steps at beta = 0.1, whose
        // exp(-C/0.1) multiplies the relative rounding of the cost by up
        // to |C|/0.1, and the threshold's relu and global min/max may take
        // other branches at rounding level: its f32 gradient is 2.6e-3 from
        // the f64 one here (4.5e-3 on the LLVM backend; the f64 gradient
        // matches finite differences).
        if (strcmp(g->name, "run_dist_gwd_nodetach") == 0) o.f32_tol = 1e-2;
        struct gc_result r;
        fh_gc_entry(p, g, FIXTURES, params, &o, &r);
        printf("  %-26s %4d elements, f64 error %.2g, f32 error %.2g%s%s\n", g->name, r.n_checked, r.worst,
               r.worst_f32, r.unreached[0] ? ", unreached: " : "", r.unreached);
        if (r.worst > worst) worst = r.worst;
        if (r.worst_f32 > worst32) worst32 = r.worst_f32;
    }
    printf("worst gradient error over %d entries: f64 %.3g, f32 %.3g\n", n_entries, worst, worst32);
    CHECK(n_entries >= 37);
    gc_free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- padding hazard

// The adjoint of entry `name` in f64 for a random seed of its output 0
// (fh_adjoint), with respect to its float inputs and parameters; grads[i]
// gets input i's gradient (NULL if none) and *nonfinite counts non-finite
// elements over every gradient, the parameters' included.
static bool adjoint(struct itr_program *p, const char *name, struct itr_tensor *const *in,
                    struct itr_tensor *const *params, struct itr_tensor **grads, int *nonfinite) {
    struct itr_tensor *w[16] = { 0 };
    bool ok = fh_output_seeds(p, name, in, params, NULL, false, w);
    for (int k = 1; k < 16; k++) {
        itr_tensor_free(w[k]);
        w[k] = NULL;
    }
    ok = ok && fh_adjoint(p, name, in, params, w, grads, nonfinite);
    itr_tensor_free(w[0]);
    return ok;
}

// Entry `name` with random float inputs whose padded rows [b, t >= n_b]
// (n_b from input `len_name`: lengths, or the count of a mask row) are set
// to exactly 0: every gradient finite, and each float input of shape
// [B, L, ...] has exactly zero gradient on its padded rows and some nonzero
// gradient elsewhere.
static void check_padded(const char *name, const char *len_name) {
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
    const struct itr_graph *g = itr_program_find_graph(p, name);
    int n_in = g ? g->n_inputs : 0;
    struct itr_tensor **in = g ? fh_entry_inputs(g, FIXTURES, true) : NULL;
    int il = -1;
    for (int i = 0; i < n_in; i++)
        if (strcmp(g->values[g->inputs[i]].name, len_name) == 0) il = i;
    if (!g || !in || il < 0 || !in[il]) {
        FAIL_AT("%s: no %s", name, len_name);
        gc_free_tensors(in, n_in);
        gc_free_tensors(params, p->n_params);
        itr_program_free(p);
        return;
    }
    const struct itr_tensor *len = in[il];
    bool is_len = len->rank == 1;
    int64_t n_items = len->shape[0];
    int64_t lens[16];
    for (int64_t b = 0; b < n_items && b < 16; b++) {
        if (is_len) lens[b] = (int64_t)itr_tensor_get(len, b);
        else {
            lens[b] = 0;
            for (int64_t t = 0; t < len->shape[1]; t++) lens[b] += itr_tensor_get(len, b * len->shape[1] + t) != 0.0;
        }
    }
    int checked_inputs = 0;
    for (int i = 0; i < n_in; i++) {
        struct itr_tensor *x = in[i];
        if (i == il || !itr_dtype_is_float(x->dtype) || x->rank < 3 || x->shape[0] != n_items) continue;
        int64_t L = x->shape[1], inner = itr_tensor_numel(x) / (n_items * L);
        for (int64_t b = 0; b < n_items; b++)
            for (int64_t t = lens[b]; t < L; t++)
                for (int64_t e = 0; e < inner; e++) itr_tensor_set(x, (b * L + t) * inner + e, 0.0);
    }
    struct itr_tensor *grads[16] = { 0 };
    int nonfinite = -1;
    bool ok = adjoint(p, name, in, params, grads, &nonfinite);
    CHECK_MSG(ok, "%s: no gradient", name);
    CHECK_MSG(nonfinite == 0, "%s: %d non-finite gradient elements with zero padded rows", name, nonfinite);
    for (int i = 0; ok && i < n_in && i < 16; i++) {
        const struct itr_tensor *dx = grads[i];
        if (!dx || dx->rank < 3 || dx->shape[0] != n_items) continue;
        int padded_nonzero, valid_nonzero;
        fh_count_padded_nonzero(dx, lens, &padded_nonzero, &valid_nonzero);
        const char *iname = g->values[g->inputs[i]].name;
        CHECK_MSG(padded_nonzero == 0, "%s: %d padded elements of %s have a nonzero gradient", name, padded_nonzero, iname);
        CHECK_MSG(valid_nonzero > 0, "%s: no valid element of %s has a gradient", name, iname);
        checked_inputs++;
    }
    CHECK_MSG(checked_inputs > 0, "%s: no padded input checked", name);
    for (int k = 0; k < 16; k++) itr_tensor_free(grads[k]);
    gc_free_tensors(in, n_in);
    gc_free_tensors(params, p->n_params);
    itr_program_free(p);
}

TEST(aggregation_gradients_through_padding) {
    const char *entries[] = { "run_agg_lse", "run_agg_max", "run_agg_min", "run_agg_sum", "run_agg_mean",
                              "run_agg_variable_max", "run_agg_variable_min", "run_agg_gru", "run_agg_gru_nobn",
                              "run_agg_sgraf_masked_mean", "run_agg_gpo", "run_cos_reduce_masked" };
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) check_padded(entries[i], "lengths");
}

TEST(local_head_gradients_through_padding) {
    const char *entries[] = { "run_sim_rar", "run_sim_sgr", "run_sim_saf", "run_sim_sgr_global", "run_sim_gsmn",
                              "run_sim_gsmn_propagate" };
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) check_padded(entries[i], "mask");
}

int main(void) {
    RUN(every_module_gradient_matches_finite_differences);
    RUN(aggregation_gradients_through_padding);
    RUN(local_head_gradients_through_padding);
    return test_summary();
}
