// SCAN (models/scan_t2i.ir, models/scan_i2t.ir; models.md §2.2) against an
// independent PyTorch transcription of the SCAN repository, tile
// independence of the pairwise score, finite gradients with padded
// captions, and learning on a synthetic set through itr_trainer_run.
//
// Fixtures: tests/gen_scan_fixtures.py at D=16, W=8, V=30, img_dim=24, R=5;
// 4 images, 4 captions of lengths 5, 3, 6, 2 padded to 6; scores of the
// first 3 images x 4 captions, loss and gradients on the 4 pairs. Errors
// are scale-relative, max|a−b| / max|b| (models.md §7.14).
#include "tests/modeltest.h"

#define T2I_IR ITR_SOURCE_DIR "/models/scan_t2i.ir"
#define I2T_IR ITR_SOURCE_DIR "/models/scan_i2t.ir"
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/scan/"

// Measured errors are a few 1e-7 (printed); §7.14 allows a few 1e-6.
#define TOL_F32 1e-5

#define N_PARAMS 11
static const char *const PARAMS[N_PARAMS] = {
    "img_fc.weight", "img_fc.bias", "embed.weight", "rnn.fwd.w_ih", "rnn.fwd.w_hh", "rnn.fwd.b_ih",
    "rnn.fwd.b_hh",  "rnn.bwd.w_ih", "rnn.bwd.w_hh", "rnn.bwd.b_ih", "rnn.bwd.b_hh",
};

static const struct {
    const char *name, *file, *agg;
} VARIANTS[] = {
    { "t2i_lse", T2I_IR, "agg=lse" },
    { "t2i_mean", T2I_IR, "agg=mean" },
    { "i2t_lse", I2T_IR, "agg=lse" },
    { "i2t_mean", I2T_IR, "agg=mean" },
};
#define N_VARIANTS 4

static struct itr_program *fixture_model(int v) {
    const char *ov[] = { "D=16", "W=8", "V=30", "img_dim=24", "R=5", "gru_init=0.25", VARIANTS[v].agg };
    return mt_parse_model(VARIANTS[v].file, ov, 7, false);
}

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

static struct itr_tensor **fixture_params(const struct itr_program *p) {
    return mt_fixture_params(p, FIXTURES, "", PARAMS, N_PARAMS);
}

static struct itr_tensor **run_graph(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                     struct itr_tensor *const *params) {
    return mt_run_graph(g, inputs, params, "");
}

TEST(scores_match_pytorch_and_tiles_agree) {
    struct itr_tensor *regions = fixture("regions"), *words = fixture("words"), *lengths = fixture("lengths");
    for (int v = 0; v < N_VARIANTS; v++) {
        struct itr_program *p = fixture_model(v);
        CHECK(p != NULL);
        if (!p || !regions || !words || !lengths) continue;
        struct itr_tensor **params = fixture_params(p);
        struct itr_tensor *ri[1] = { regions }, *ti[2] = { words, lengths };
        struct itr_tensor **img = run_graph(itr_program_find_graph(p, "encode_image"), ri, params);
        struct itr_tensor **cap = run_graph(itr_program_find_graph(p, "encode_text"), ti, params);
        CHECK(img && cap);
        if (img && cap) {
            char name[64];
            snprintf(name, sizeof name, "%s.sims", VARIANTS[v].name);
            struct itr_tensor *want = fixture(name);
            struct itr_tensor *full = mt_score_tile(p, params, img[0], cap[0], cap[1], 0, 3, 0, 4);
            struct err e = { 0, 0 };
            err_add(&e, full, want);
            printf("  %-8s score [3 x 4] rel. error %.3g\n", VARIANTS[v].name, err_rel(&e));
            CHECK_MSG(err_rel(&e) <= TOL_F32, "%s: score error %.3g", VARIANTS[v].name, err_rel(&e));
            // 1-image, 1-caption and 1x1 tiles (the original crashes on
            // 1-image batches, models.md §2.2) give the slices of the full
            // matrix.
            double tile = full ? mt_tiles_vs_full(p, params, img[0], cap[0], cap[1], full, 3, 4) : INFINITY;
            printf("           1-image / 1-caption / 1x1 tiles vs full matrix: max |diff| %.3g\n", tile);
            CHECK_MSG(tile <= 1e-6, "%s: tiles differ from the full matrix by %.3g", VARIANTS[v].name, tile);
            itr_tensor_free(full);
            itr_tensor_free(want);
        }
        if (img) free_tensors(img, 1);
        if (cap) free_tensors(cap, 2);
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
    itr_tensor_free(regions);
    itr_tensor_free(words);
    itr_tensor_free(lengths);
}

// The fixture captions are padded (lengths 5, 3, 6, 2 in 6 slots): every
// gradient must be finite, which a mask applied after a norm would break
// (models.md §7.13), and match PyTorch's.
TEST(loss_and_gradients_match_pytorch) {
    struct itr_tensor *inputs[3] = { fixture("regions"), fixture("words"), fixture("lengths") };
    for (int v = 0; v < N_VARIANTS; v++) {
        struct itr_program *p = fixture_model(v);
        CHECK(p != NULL);
        if (!p) continue;
        struct itr_graph *g = itr_program_find_graph(p, "train");
        struct itr_diags d;
        itr_diags_init(&d);
        bool ok = g && mt_add_gradients(g, PARAMS, N_PARAMS, NULL, &d);
        if (!ok) diags_report("", &d);
        itr_diags_free(&d);
        CHECK(ok);
        struct itr_tensor **params = fixture_params(p);
        struct itr_tensor **out = ok ? run_graph(g, inputs, params) : NULL;
        CHECK(out != NULL);
        if (out) {
            char name[128];
            snprintf(name, sizeof name, "%s.loss", VARIANTS[v].name);
            struct itr_tensor *want = fixture(name);
            struct err le = { 0, 0 };
            err_add(&le, out[0], want);
            CHECK_MSG(err_rel(&le) <= TOL_F32, "%s: loss error %.3g", VARIANTS[v].name, err_rel(&le));
            struct err all = { 0, 0 };
            bool finite = true;
            for (int k = 0; k < N_PARAMS; k++) {
                for (int64_t i = 0; out[1 + k] && i < itr_tensor_numel(out[1 + k]); i++)
                    finite = finite && isfinite(itr_tensor_get(out[1 + k], i));
                snprintf(name, sizeof name, "%s.grad.%s", VARIANTS[v].name, PARAMS[k]);
                struct itr_tensor *wg = fixture(name);
                err_add(&all, out[1 + k], wg);
                itr_tensor_free(wg);
            }
            printf("  %-8s loss %.7g (PyTorch %.7g) rel. error %.3g; gradients: max error / max |grad| %.3g\n",
                   VARIANTS[v].name, itr_tensor_get(out[0], 0), want ? itr_tensor_get(want, 0) : NAN, err_rel(&le),
                   err_rel(&all));
            CHECK_MSG(finite, "%s: a gradient is not finite", VARIANTS[v].name);
            CHECK_MSG(err_rel(&all) <= TOL_F32, "%s: gradient error %.3g", VARIANTS[v].name, err_rel(&all));
            itr_tensor_free(want);
            free_tensors(out, g->n_outputs);
        }
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
    for (int i = 0; i < 3; i++) itr_tensor_free(inputs[i]);
}

// ---------------------------------------------------------------- learning

#define LEARN_TRAIN 300
#define LEARN_TEST 50
#define LEARN_EPOCHS 8
#define LEARN_LR 5e-3

TEST(scan_t2i_learns_well_above_chance) { mt_learn(T2I_IR, "scan_t2i", LEARN_TRAIN, LEARN_TEST, LEARN_EPOCHS, LEARN_LR); }
// Pure max-violation from scratch leaves i2t at D=16 near the equal-scores
// plateau (rsum ~135 of a needed ~146 here); two sum-hinge warm-up epochs get
// it past (models/scan_i2t.ir, warmup_epochs).
TEST(scan_i2t_learns_well_above_chance) {
    const char *warmup[] = { "warmup_epochs=2" };
    mt_learn_with(I2T_IR, "scan_i2t", LEARN_TRAIN, LEARN_TEST, LEARN_EPOCHS, LEARN_LR, warmup, 1);
}

int main(void) {
    if (!tmpdir_create("scan")) return 1;
    RUN(scores_match_pytorch_and_tiles_agree);
    RUN(loss_and_gradients_match_pytorch);
    RUN(scan_t2i_learns_well_above_chance);
    RUN(scan_i2t_learns_well_above_chance);
    tmpdir_remove();
    return test_summary();
}
