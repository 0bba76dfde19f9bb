// The IR module library (models/modules/*.ir) and VSE++ against PyTorch.
//
// tests/ir/modules_harness.ir has one entry per module; for each, the inputs,
// parameters and PyTorch's outputs are .npy files written by
// tests/gen_module_fixtures.py. Every entry runs in the reference interpreter
// in f32 (compared with PyTorch float32) and f64 (compared with PyTorch
// float64 on the same float32 inputs). Errors are scale-relative,
// max|a-b| / max|b| (models.md §7 item 14), so entries whose outputs have
// exact zeros or tiny rows are not judged element by element.
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/modules/"
#define FH_HARNESS_DIR FIXTURES
#include "tests/fixture_harness.h"

// ---------------------------------------------------------------- tests

TEST(harness_parses) { fh_check_verifies(harness); }

TEST(every_entry_matches_pytorch) {
    CHECK(fh_check_every_entry(FIXTURES, harness, FH_TOL_F32, FH_TOL_F64) >= 30);
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
    struct itr_tensor *len = mt_fixture(FIXTURES, "run_bigru.in.lengths");
    if (!len) { FAIL_AT("no lengths"); return; }
    for (size_t e = 0; e < 3; e++)
        for (int mode = 0; mode < 2; mode++) {
            struct fh_run r;
            if (!run_harness(entries[e], mode, NULL, &r)) { FAIL_AT("%s did not run", entries[e]); continue; }
            const struct itr_tensor *y = r.out[0];
            int64_t B = y->shape[0], L = y->shape[1], H = y->shape[2];
            int nonzero = 0, padded = 0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = (int64_t)itr_tensor_get(len, b); t < L; t++)
                    for (int64_t h = 0; h < H; h++, padded++) nonzero += itr_tensor_get(y, (b * L + t) * H + h) != 0.0;
            CHECK_MSG(padded > 0 && nonzero == 0, "%s: %d of %d padded outputs are nonzero", entries[e], nonzero, padded);
            fh_run_free(&r);
        }
    itr_tensor_free(len);
}

// Changing the features at padded positions leaves every valid position's
// output bit-identical: padded keys get weight exactly 0.
static void check_padded_keys_ignored(const char *entry) {
    struct itr_tensor *x = fh_entry_input(FIXTURES, "", entry, "x");
    struct itr_tensor *len = fh_entry_input(FIXTURES, "", entry, "lengths");
    if (!x || !len) { FAIL_AT("no inputs for %s", entry); itr_tensor_free(x); itr_tensor_free(len); return; }
    int64_t B = x->shape[0], L = x->shape[1], D = x->shape[2];
    struct fh_run base, moved;
    bool ok = run_harness(entry, false, NULL, &base);
    struct itr_tensor *x2 = itr_tensor_clone(x);
    int changed = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = (int64_t)itr_tensor_get(len, b); t < L; t++, changed++)
            for (int64_t k = 0; k < D; k++) itr_tensor_set(x2, (b * L + t) * D + k, 1e3 * (double)(k + 1));
    const struct itr_graph *g = itr_program_find_graph(harness, entry);
    struct itr_tensor *given[3] = { NULL, NULL, NULL };
    for (int i = 0; g && i < g->n_inputs && i < 3; i++)
        if (strcmp(g->values[g->inputs[i]].name, "x") == 0) given[i] = x2;
    ok = ok && run_harness(entry, false, given, &moved);
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
        fh_run_free(&moved);
    }
    fh_run_free(&base);
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
    struct itr_tensor *mask = mt_fixture(FIXTURES, "run_masked_softmax.in.mask");
    if (!mask) { FAIL_AT("no mask"); return; }
    const char *entries[] = { "run_masked_softmax", "run_masked_softmax_f", "run_masked_log_softmax" };
    for (size_t e = 0; e < 3; e++)
        for (int mode = 0; mode < 2; mode++) {
            struct fh_run r;
            if (!run_harness(entries[e], mode, NULL, &r)) { FAIL_AT("%s did not run", entries[e]); continue; }
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
            fh_run_free(&r);
        }
    itr_tensor_free(mask);
}

// ---------------------------------------------------------------- VSE++

TEST(vsepp_default_config) {
    struct itr_program *p = fh_parse(ITR_SOURCE_DIR "/models/vsepp.ir", NULL, 0);
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
    struct itr_program *p = fh_parse(ITR_SOURCE_DIR "/models/vsepp.ir", ov, 3);
    CHECK(p != NULL);
    if (!p) return;
    const char *entries[] = { "encode_image", "encode_text", "score" };
    for (int i = 0; i < 3; i++) {
        fh_check_entry(FIXTURES, p, "vsepp.", entries[i], FH_TOL_F32, FH_TOL_F64);
    }
    itr_program_free(p);
}

int main(void) {
    harness = fh_parse(ITR_SOURCE_DIR "/tests/ir/modules_harness.ir", NULL, 0);
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
