// The aggregation and similarity catalogue (models/modules/aggregation.ir,
// similarity.ir, gpo.ir) against PyTorch.
//
// tests/ir/catalogue_a_harness.ir has one entry per module and option; for
// each, the inputs, parameters and PyTorch's outputs are .npy files written
// by tests/gen_catalogue_a_fixtures.py, whose references truncate every
// item to its length where itrc masks. Every entry runs in the reference
// interpreter in f32 (against PyTorch float32) and f64 (against PyTorch
// float64 on the same float32 inputs); errors are scale-relative,
// max|a-b| / max|b| (models.md §7 item 14). Besides: padded rows and
// fragments change nothing they must not, and a Sinkhorn plan has the
// marginals the iteration enforces.
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/catalogue_a/"
#define FH_HARNESS_DIR FIXTURES
#include "tests/fixture_harness.h"

// Tolerances FH_TOL_F32 and FH_TOL_F64, as tests/test_modules.c: the
// iterative distances (Sinkhorn, Gromov-Wasserstein) stay within 1e-6 in
// f32 here.

// ---------------------------------------------------------------- tests

TEST(harness_parses) { fh_check_verifies(harness); }

TEST(every_entry_matches_pytorch) {
    CHECK(fh_check_every_entry(FIXTURES, harness, FH_TOL_F32, FH_TOL_F64) >= 37);
}

// Overwrites the rows [b, t >= len_b] of input `which` (a [B, L, ...] tensor)
// with huge values, runs the entry in f32 and f64 and requires every output
// element to be bit-identical: padded rows and fragments are masked out,
// never merely down-weighted.
static void check_padding_ignored(const char *entry, const char *which, const char *len_name, bool len_is_mask) {
    struct itr_tensor *len = fh_entry_input(FIXTURES, "", entry, len_name);
    const struct itr_graph *g = itr_program_find_graph(harness, entry);
    if (!len || !g) { FAIL_AT("%s: no %s", entry, len_name); itr_tensor_free(len); return; }
    for (int mode = 0; mode < 2; mode++) {
        struct itr_tensor *given[8] = { 0 };
        struct itr_tensor *x = NULL;
        int changed = 0;
        for (int i = 0; i < g->n_inputs && i < 8; i++) {
            if (strcmp(g->values[g->inputs[i]].name, which) != 0) continue;
            x = fh_entry_input(FIXTURES, "", entry, which);
            if (!x) break;
            int64_t B = x->shape[0], L = x->shape[1], inner = itr_tensor_numel(x) / (B * L);
            for (int64_t b = 0; b < B; b++) {
                int64_t n = 0;
                if (len_is_mask) for (int64_t t = 0; t < L; t++) n += itr_tensor_get(len, b * L + t) != 0.0;
                else n = (int64_t)itr_tensor_get(len, b);
                for (int64_t t = n; t < L; t++, changed++)
                    for (int64_t e = 0; e < inner; e++) itr_tensor_set(x, (b * L + t) * inner + e, 1e3 * (double)(e + 1));
            }
            given[i] = x;
        }
        CHECK_MSG(x && changed > 0, "%s: no padded rows of %s to change", entry, which);
        struct fh_run base, moved;
        bool ok = run_harness(entry, mode == 1, NULL, &base);
        ok = ok && run_harness(entry, mode == 1, given, &moved);
        CHECK_MSG(ok, "%s did not run", entry);
        if (ok) {
            int differ = 0;
            for (int64_t i = 0; i < itr_tensor_numel(base.out[0]); i++)
                differ += itr_tensor_get(base.out[0], i) != itr_tensor_get(moved.out[0], i);
            CHECK_MSG(differ == 0, "%s (%s): %d outputs changed with padded %s", entry, mode ? "f64" : "f32", differ,
                      which);
            fh_run_free(&moved);
        }
        if (base.out) fh_run_free(&base);
        itr_tensor_free(x);
    }
    itr_tensor_free(len);
}

TEST(aggregations_ignore_padded_rows) {
    if (!harness) { FAIL_AT("no harness"); return; }
    const char *entries[] = { "run_agg_lse", "run_agg_max", "run_agg_min", "run_agg_sum", "run_agg_mean",
                              "run_agg_variable_max", "run_agg_variable_min", "run_agg_gru", "run_agg_gru_nobn",
                              "run_agg_sgraf_masked_mean", "run_agg_gpo" };
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) check_padding_ignored(entries[i], "x", "lengths", false);
}

TEST(local_heads_ignore_padded_fragments) {
    if (!harness) { FAIL_AT("no harness"); return; }
    const char *entries[] = { "run_sim_rar", "run_sim_sgr", "run_sim_saf", "run_sim_gsmn", "run_sim_gsmn_propagate" };
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        check_padding_ignored(entries[i], "q", "mask", true);
        check_padding_ignored(entries[i], "a", "mask", true);
    }
    check_padding_ignored("run_cos_reduce_masked", "a", "lengths", false);
}

// After the last iteration σ = 1/(m Qᵀδ), so every column of T = δQσ sums
// to exactly 1/m (up to rounding); the rows approach 1/n.
TEST(sinkhorn_plan_marginals) {
    if (!harness) { FAIL_AT("no harness"); return; }
    for (int mode = 0; mode < 2; mode++) {
        struct fh_run r;
        if (!run_harness("run_sinkhorn", mode == 1, NULL, &r)) { FAIL_AT("run_sinkhorn did not run"); continue; }
        const struct itr_tensor *t = r.out[0];
        int64_t B = t->shape[0], n = t->shape[1], m = t->shape[2];
        double col_err = 0, row_err = 0;
        for (int64_t b = 0; b < B; b++) {
            for (int64_t j = 0; j < m; j++) {
                double s = 0;
                for (int64_t i = 0; i < n; i++) s += itr_tensor_get(t, (b * n + i) * m + j);
                col_err = fmax(col_err, fabs(s - 1.0 / (double)m));
            }
            for (int64_t i = 0; i < n; i++) {
                double s = 0;
                for (int64_t j = 0; j < m; j++) s += itr_tensor_get(t, (b * n + i) * m + j);
                row_err = fmax(row_err, fabs(s - 1.0 / (double)n));
            }
        }
        printf("  sinkhorn (%s): column marginal error %.3g, row marginal error %.3g\n", mode ? "f64" : "f32", col_err,
               row_err);
        CHECK_MSG(col_err <= (mode ? 1e-15 : 1e-7), "column marginals off by %g", col_err);
        // 30 iterations leave these rows a few 1e-3 off their marginal.
        CHECK_MSG(row_err <= 5e-3, "row marginals off by %g after 30 iterations", row_err);
        fh_run_free(&r);
    }
}

// The dense text graph's kernel weights are A_ij·p_k normalised over the
// neighbours j, so p_k cancels: the kernel parameters change nothing, with
// or without propagate (their gradient is 0; docs/modules.md).
TEST(gsmn_kernel_parameters) {
    if (!harness) { FAIL_AT("no harness"); return; }
    const char *entries[2] = { "run_sim_gsmn", "run_sim_gsmn_propagate" };
    for (int e = 0; e < 2; e++) {
        struct fh_run base;
        if (!run_harness(entries[e], true, NULL, &base)) { FAIL_AT("%s did not run", entries[e]); continue; }
        // Run again with the kernel parameters p_k scaled and shifted.
        const struct itr_graph *g = base.g;
        struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
        struct itr_tensor **params = calloc((size_t)harness->n_params + 1, sizeof *params);
        bool ok = true;
        for (int i = 0; i < g->n_inputs && ok; i++)
            ok = (in[i] = fh_entry_input(FIXTURES, "", entries[e], g->values[g->inputs[i]].name)) != NULL;
        ok = ok && fh_graph_params(harness, g, FIXTURES, "", params);
        for (int j = 0; ok && j < harness->n_params; j++)
            if (params[j] && strstr(harness->params[j].name, ".params"))
                for (int64_t k = 0; k < itr_tensor_numel(params[j]); k++)
                    itr_tensor_set(params[j], k, 0.3 + 2.0 * (double)k);
        struct itr_tensor **out = ok ? mt_run_graph_as(g, in, params, true, "") : NULL;
        ok = out != NULL;
        CHECK_MSG(ok, "%s did not run with new kernel parameters", entries[e]);
        if (ok) {
            double e_max = mt_rel_err(out[0], base.out[0]);
            printf("  %-24s change with the kernel parameters: %.3g\n", entries[e], e_max);
            CHECK_MSG(e_max <= 1e-14, "%s: kernel parameters changed the score by %g", entries[e], e_max);
        }
        free_tensors(out, g->n_outputs);
        free_tensors(in, g->n_inputs);
        free_tensors(params, harness->n_params);
        fh_run_free(&base);
    }
}

// Training mode: the train entry of tests/ir/catalogue_a_train.ir returns
// AggGRU's, AggSGRAF's and the SAF head's outputs with their BatchNorms on
// batch statistics, and the moved running statistics (new.*), against
// nn.BatchNorm1d in train mode.
TEST(training_mode_matches_pytorch) {
    struct itr_program *p = fh_parse(ITR_SOURCE_DIR "/tests/ir/catalogue_a_train.ir", NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g = itr_program_find_graph(p, "train");
    CHECK(g != NULL);
    int n_new = 0;
    for (int k = 0; g && k < g->n_outputs; k++) n_new += strncmp(g->output_names[k], "new.", 4) == 0;
    CHECK_MSG(n_new == 8, "%d running statistics updated, expected 8", n_new);
    fh_check_entry(FIXTURES, p, "", "train", FH_TOL_F32, FH_TOL_F64);
    itr_program_free(p);
}

int main(void) {
    harness = fh_parse(ITR_SOURCE_DIR "/tests/ir/catalogue_a_harness.ir", NULL, 0);
    RUN(harness_parses);
    RUN(every_entry_matches_pytorch);
    RUN(aggregations_ignore_padded_rows);
    RUN(local_heads_ignore_padded_fragments);
    RUN(sinkhorn_plan_marginals);
    RUN(gsmn_kernel_parameters);
    RUN(training_mode_matches_pytorch);
    if (harness) itr_program_free(harness);
    return test_summary();
}
