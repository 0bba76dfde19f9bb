// Focal attention (models/modules/focal.ir, BFAN; models.md §2.9 AttnBFAN)
// and the model built on it (models/bfan.ir): the keep mask and the
// reassigned attention on a hand-made attention matrix, finite-difference
// gradients of the batched focal t2i score with padded captions, tile
// independence of bfan's pairwise score, bfan against an independent PyTorch
// transcription of BFAN (tests/gen_focal_fixtures.py: eval scores, training
// loss and the gradient of every parameter, errors scale-relative as in
// models.md §7.14), and learning on a synthetic set through
// itr_trainer_run. docs/adding-a-module.md walks through all of it.
#include "tests/modeltest.h"
#include "tests/gradcheck.h"

#include "runtime/init.h"

#define BFAN_IR ITR_SOURCE_DIR "/models/bfan.ir"
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/focal/"

// An independent float32 implementation agrees to a few 1e-7 at this size.
#define TOL_F32 1e-5

// A harness model in the test itself: the module's two functions as
// entries. Its name places it in models/, so the import resolves there.
static const char HARNESS[] =
    "import \"modules/focal.ir\"\n"
    "model focal_harness(focal: str = \"equal\", agg: str = \"mean\") {\n"
    "  dim N, B, L, R, C, Q, D\n"
    "  entry reassign(alpha: f32[1, 1, C, Q], valid: f32[1, 1, C, 1]) -> (out) {\n"
    "    return focal_reassign(alpha, valid, focal=focal, masked=true)\n"
    "  }\n"
    "  entry pair(img: f32[N, R, D], cap: f32[B, L, D], lengths: i32[B]) -> (sims) {\n"
    "    return xattn_focal_t2i(l2norm(img, eps=1e-8), masked_l2norm_words(cap, lengths), lengths,\n"
    "                           focal=focal, agg=agg)\n"
    "  }\n"
    "}\n";

static struct itr_program *parse_harness(const char *focal, const char *agg) {
    char f[64], a[64];
    snprintf(f, sizeof f, "focal=%s", focal);
    snprintf(a, sizeof a, "agg=%s", agg);
    const char *ov[] = { f, a };
    return mt_parse_text(ITR_SOURCE_DIR "/models/focal_harness.ir", HARNESS, ov, 2, false);
}

static struct itr_tensor **run_graph(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                     struct itr_tensor *const *params) {
    return mt_run_graph(g, inputs, params, "");
}

// ------------------------------------------------------- (a) hand-computed

// α [context 4, query 4]; context item 3 is padding (valid 0). Columns:
//   0: (0.5, 0.34, 0.16 | 0)    mean 1/3: equal keeps 0.5, 0.34; prob's
//      threshold Σα^1.5/Σα^0.5 = 0.3643 keeps 0.5 only
//   1: (0.6, 0.3, 0.1 | 0.9)    keeps 0.6 (with the padded 0.9 counted, the
//      mean would be 0.475 and 0.9 would be kept)
//   2: (0.25, 0.25, 0.25 | .25) all equal: nothing strictly above the
//      threshold, so every valid item is kept (SCAN's α, renormalised)
//   3: (0.2, 0.3, 0.5 | 0)      keeps 0.5
static const double ALPHA[16] = {
    0.5,  0.6, 0.25, 0.2,
    0.34, 0.3, 0.25, 0.3,
    0.16, 0.1, 0.25, 0.5,
    0.0,  0.9, 0.25, 0.0,
};
static const double VALID[4] = { 1, 1, 1, 0 };
static const double WANT_EQUAL[16] = {
    0.5 / 0.84,  1, 1.0 / 3, 0,
    0.34 / 0.84, 0, 1.0 / 3, 0,
    0,           0, 1.0 / 3, 1,
    0,           0, 0,       0,
};
static const double WANT_PROB[16] = {
    1, 1, 1.0 / 3, 0,
    0, 0, 1.0 / 3, 0,
    0, 0, 1.0 / 3, 1,
    0, 0, 0,       0,
};

TEST(focal_mask_on_a_hand_made_attention_matrix) {
    const char *kinds[2] = { "equal", "prob" };
    const double *want[2] = { WANT_EQUAL, WANT_PROB };
    for (int k = 0; k < 2; k++) {
        struct itr_program *p = parse_harness(kinds[k], "mean");
        CHECK(p != NULL);
        if (!p) continue;
        int64_t sa[4] = { 1, 1, 4, 4 }, sv[4] = { 1, 1, 4, 1 };
        struct itr_tensor *in[2] = { gc_tensor(ITR_F32, 4, sa, ALPHA), gc_tensor(ITR_F32, 4, sv, VALID) };
        struct itr_tensor **out = run_graph(itr_program_find_graph(p, "reassign"), in, NULL);
        CHECK(out && out[0] && out[0]->shape[2] == 4 && out[0]->shape[3] == 4);
        double worst = 0;
        for (int i = 0; out && out[0] && i < 16; i++) {
            double dd = fabs(itr_tensor_get(out[0], i) - want[k][i]);
            worst = fmax(worst, isnan(dd) ? INFINITY : dd);
        }
        printf("  %-5s: alpha' vs hand-computed: max |diff| %.3g\n", kinds[k], worst);
        CHECK_MSG(worst <= 1e-6, "%s: alpha' differs from the hand-computed one by %.3g", kinds[k], worst);
        if (out) free_tensors(out, 1);
        for (int i = 0; i < 2; i++) itr_tensor_free(in[i]);
        itr_program_free(p);
    }
}

// ------------------------------------------------------------ (b) gradients

// The batched focal t2i score of 2 images x 3 captions (lengths 4, 2, 3 in
// 4 slots; the padded rows hold random values, which must not matter) with
// respect to the image regions and the word features, against f64 central
// differences. The keep mask is a comparison: fixed under the tiny
// finite-difference steps, it contributes no gradient in either.
TEST(focal_gradients_with_padded_captions) {
    const char *cases[3][2] = { { "equal", "mean" }, { "equal", "lse" }, { "prob", "mean" } };
    for (int c = 0; c < 3; c++) {
        struct itr_program *p = parse_harness(cases[c][0], cases[c][1]);
        CHECK(p != NULL);
        if (!p) continue;
        uint64_t seed = 42 + (uint64_t)c;
        int64_t si[3] = { 2, 3, 5 }, sc[3] = { 3, 4, 5 }, sl[1] = { 3 };
        const double len[3] = { 4, 2, 3 };
        struct itr_tensor *in[3] = { gc_random(ITR_F64, 3, si, -1, 1, 0, &seed),
                                     gc_random(ITR_F64, 3, sc, -1, 1, 0, &seed), gc_tensor(ITR_I32, 1, sl, len) };
        struct gc_options o = gc_defaults();
        struct gc_result r;
        bool ok = gc_check(p, "pair", in, NULL, &o, &r);
        printf("  %-5s %-4s: %s\n", cases[c][0], cases[c][1], gc_describe(&r));
        CHECK_MSG(ok, "%s/%s: %s", cases[c][0], cases[c][1], gc_describe(&r));
        CHECK(r.n_checked == 2 * 3 * 5 + 3 * 4 * 5);
        for (int i = 0; i < 3; i++) itr_tensor_free(in[i]);
        itr_program_free(p);
    }
}

// ---------------------------------------------------------------- (c) tiles

// bfan at D=16 with freshly initialised parameters (seed 3), 3 images of 5
// regions and 4 captions of lengths 5, 3, 6, 2 padded to 6: every 1-image,
// 1-caption and 1x1 tile equals its slice of the full [3, 4] matrix.
TEST(bfan_tiles_equal_slices_of_the_full_matrix) {
    const char *foc[2] = { "focal=equal", "focal=prob" };
    for (int k = 0; k < 2; k++) {
        const char *ov[] = { "D=16", "W=8", "V=30", "img_dim=24", "R=5", "gru_init=0.25", foc[k] };
        struct itr_program *p = mt_parse_model(BFAN_IR, ov, 7, false);
        CHECK(p != NULL);
        if (!p) continue;
        const double len[4] = { 5, 3, 6, 2 };
        double tile = mt_tiles_of_fresh_model(p, 3, 5, 24, 4, 6, 30, len, foc[k]);
        printf("  %s: score [3 x 4] finite; 1-image / 1-caption / 1x1 tiles vs full matrix: max |diff| %.3g\n",
               foc[k], tile);
        CHECK_MSG(tile <= 1e-6, "%s: tiles differ from the full matrix by %.3g", foc[k], tile);
        itr_program_free(p);
    }
}

// ------------------------------------------------------- (d) vs PyTorch

// The fixtures' sizes (tests/gen_focal_fixtures.py).
static const char *const FIXTURE_SIZE[] = { "D=16", "W=8", "V=30", "img_dim=24", "R=5", "gru_init=0.25" };

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

// bfan at the fixture sizes with the given focal / agg, NULL (reported) on errors.
static struct itr_program *parse_bfan(const char *focal, const char *agg) {
    char f[64], a[64];
    snprintf(f, sizeof f, "focal=%s", focal);
    snprintf(a, sizeof a, "agg=%s", agg);
    const char *ov[8];
    for (int k = 0; k < 6; k++) ov[k] = FIXTURE_SIZE[k];
    ov[6] = f;
    ov[7] = a;
    return mt_parse_model(BFAN_IR, ov, 8, false);
}

// Every parameter of p from the fixtures.
static struct itr_tensor **fixture_params(const struct itr_program *p) {
    return mt_fixture_params(p, FIXTURES, "", NULL, 0);
}

// The error of a against the fixture `want`, printed and checked.
static double expect_close(const char *what, const struct itr_tensor *a, const char *want_name, double tol) {
    return mt_expect_close(FIXTURES, 2, 36, what, a, want_name, tol);
}

// encode_image, encode_text and score of 3 images x 4 captions (lengths 4,
// 6, 2, 3 padded to 6) against PyTorch: both keep masks with BFAN's Mean
// over words, and `equal` with SCAN's LogSumExp (-D agg=lse).
TEST(bfan_scores_match_pytorch) {
    const char *cases[3][3] = { { "equal", "mean", "sims_equal" }, { "prob", "mean", "sims_prob" },
                                { "equal", "lse", "sims_equal_lse" } };
    for (int c = 0; c < 3; c++) {
        struct itr_program *p = parse_bfan(cases[c][0], cases[c][1]);
        CHECK(p != NULL);
        if (!p) continue;
        struct itr_tensor **params = fixture_params(p);
        struct itr_tensor *regions = fixture("regions"), *words = fixture("words"), *lengths = fixture("lengths");
        struct itr_tensor *ri[1] = { regions }, *ti[2] = { words, lengths };
        struct itr_tensor **img = run_graph(itr_program_find_graph(p, "encode_image"), ri, params);
        struct itr_tensor **cap = run_graph(itr_program_find_graph(p, "encode_text"), ti, params);
        CHECK(img && cap);
        if (img && cap) {
            struct itr_tensor *si[3] = { img[0], cap[0], cap[1] };
            struct itr_tensor **s = run_graph(itr_program_find_graph(p, "score"), si, params);
            CHECK(s != NULL);
            char what[96];
            snprintf(what, sizeof what, "scores, focal %s, agg %s", cases[c][0], cases[c][1]);
            if (s) expect_close(what, s[0], cases[c][2], TOL_F32);
            free_tensors(s, 1);
        }
        free_tensors(img, 1);
        free_tensors(cap, 2);
        itr_tensor_free(regions);
        itr_tensor_free(words);
        itr_tensor_free(lengths);
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
}

// The train entry (max-violation hinge over the focal t2i scores; bfan has
// no dropout and no BatchNorm) on a batch of 4 matched pairs with padded
// captions: the loss and the gradient of every parameter, against PyTorch,
// for both keep masks. One scale for all gradients: the largest of the model.
TEST(bfan_training_matches_pytorch) {
    const char *kinds[2] = { "equal", "prob" };
    for (int k = 0; k < 2; k++) {
        struct itr_program *p = parse_bfan(kinds[k], "mean");
        CHECK(p != NULL);
        if (!p) continue;
        int first = 0;
        struct itr_graph *g = mt_train_with_gradients(p, &first);
        bool ok = g != NULL;
        CHECK(ok && g->n_inputs == 3);
        if (!ok || g->n_inputs != 3) {
            itr_program_free(p);
            continue;
        }
        struct itr_tensor **params = fixture_params(p);
        struct itr_tensor *in[3] = { fixture("train_regions"), fixture("words"), fixture("lengths") };
        struct itr_tensor **out = run_graph(g, in, params);
        CHECK(out != NULL);
        if (out) {
            char name[200];
            printf("  focal %s, training loss %.7g\n", kinds[k], itr_tensor_get(out[0], 0));
            snprintf(name, sizeof name, "train_loss_%s", kinds[k]);
            expect_close("loss", out[0], name, TOL_F32);
            struct err all = { 0, 0 };
            bool finite = true;
            for (int j = first; j < g->n_outputs; j++) {
                snprintf(name, sizeof name, "grad_%s.%s", kinds[k], g->output_names[j] + 5);
                struct itr_tensor *want = fixture(name);
                err_add(&all, out[j], want);
                for (int64_t i = 0; out[j] && i < itr_tensor_numel(out[j]); i++)
                    finite = finite && isfinite(itr_tensor_get(out[j], i));
                itr_tensor_free(want);
            }
            printf("  %d gradients: max error / max |grad| %.3g (max |grad| %.3g)\n", g->n_outputs - first,
                   err_rel(&all), all.den);
            CHECK(finite);
            CHECK(g->n_outputs - first == p->n_params);
            CHECK_MSG(err_rel(&all) <= TOL_F32, "focal %s gradients: error %.3g", kinds[k], err_rel(&all));
            free_tensors(out, g->n_outputs);
        }
        for (int i = 0; i < 3; i++) itr_tensor_free(in[i]);
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
}

// ---------------------------------------------------------------- learning

#define LEARN_TRAIN 300
#define LEARN_TEST 50
#define LEARN_EPOCHS 8
#define LEARN_LR 5e-3

TEST(bfan_learns_well_above_chance) { mt_learn(BFAN_IR, "bfan", LEARN_TRAIN, LEARN_TEST, LEARN_EPOCHS, LEARN_LR); }

int main(void) {
    if (!tmpdir_create("focal")) return 1;
    RUN(focal_mask_on_a_hand_made_attention_matrix);
    RUN(focal_gradients_with_padded_captions);
    RUN(bfan_tiles_equal_slices_of_the_full_matrix);
    RUN(bfan_scores_match_pytorch);
    RUN(bfan_training_matches_pytorch);
    RUN(bfan_learns_well_above_chance);
    tmpdir_remove();
    return test_summary();
}
