// SGRAF (models/sgr.ir, models/saf.ir) against an independent PyTorch
// transcription (tests/gen_sgraf_fixtures.py): eval-mode scores, tiles of any
// size, and in training mode (dropout off, BatchNorms on batch statistics,
// padded captions) the loss of both hinge forms, the gradient of every
// trainable parameter and the BatchNorms' new running statistics; finite
// training gradients with dropout on, and learning on a tiny synthetic set
// with the trainer (SAF, sum-hinge warm-up). Gradient errors are
// scale-relative, max|a−b| / max|b| over all parameters (models.md §7.14).
#include "tests/modeltest.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/sgraf/"

// Scores are in (0, 1); float32 against float64 PyTorch agrees to a few 1e-7.
#define TOL_F32 1e-5

static const char *const FIXTURE_SIZE[] = { "D=16", "sim_dim=8", "W=8", "V=30", "img_dim=24", "R=5", "gru_init=0.25" };

static struct itr_program *parse_model(const char *model, const char *const *ov, int n) {
    char path[512];
    snprintf(path, sizeof path, ITR_SOURCE_DIR "/models/%s.ir", model);
    return mt_parse_model(path, ov, n, false);
}

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

// Every parameter of p from the fixture directory of the model.
static struct itr_tensor **fixture_params(const struct itr_program *p, const char *model) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s/", model);
    return mt_fixture_params(p, FIXTURES, prefix, NULL, 0);
}

static struct itr_tensor **run_graph(const struct itr_program *p, const char *entry, struct itr_tensor *const *inputs,
                                     struct itr_tensor *const *params) {
    const struct itr_graph *g = itr_program_find_graph(p, entry);
    CHECK_MSG(g != NULL, "no entry %s", entry);
    if (!g) return NULL;
    return mt_run_graph(g, inputs, params, entry);
}

// score(encode_image(regions)[i0:i1], encode_text(...)[c0:c1]).
static struct itr_tensor *score_tile(const struct itr_program *p, struct itr_tensor *const *img, struct itr_tensor *const *cap,
                                     struct itr_tensor *const *params, int64_t i0, int64_t i1, int64_t c0, int64_t c1) {
    struct itr_tensor *in[5] = { mt_rows(img[0], i0, i1 - i0), mt_rows(img[1], i0, i1 - i0), mt_rows(cap[0], c0, c1 - c0),
                                 mt_rows(cap[1], c0, c1 - c0), mt_rows(cap[2], c0, c1 - c0) };
    struct itr_tensor **out = run_graph(p, "score", in, params);
    struct itr_tensor *s = out ? out[0] : NULL;
    free(out);
    for (int k = 0; k < 5; k++) itr_tensor_free(in[k]);
    return s;
}

static void check_model(const char *model, const char *const *extra, int n_extra) {
    const char *ov[16];
    int n = 0;
    for (int k = 0; k < 7; k++) ov[n++] = FIXTURE_SIZE[k];
    for (int k = 0; k < n_extra; k++) ov[n++] = extra[k];
    struct itr_program *p = parse_model(model, ov, n);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor **params = fixture_params(p, model);
    struct itr_tensor *regions = fixture("regions"), *words = fixture("words"), *lengths = fixture("lengths");
    char name[128];
    snprintf(name, sizeof name, "%s/sims", model);
    struct itr_tensor *want = fixture(name);
    struct itr_tensor *ii[1] = { regions }, *ti[2] = { words, lengths };
    struct itr_tensor **img = run_graph(p, "encode_image", ii, params);
    struct itr_tensor **cap = run_graph(p, "encode_text", ti, params);
    CHECK(img && cap && want);
    if (img && cap && want) {
        int64_t ni = want->shape[0], nc = want->shape[1];
        struct itr_tensor *full = score_tile(p, img, cap, params, 0, ni, 0, nc);
        CHECK(full != NULL && full->rank == 2 && full->shape[0] == ni && full->shape[1] == nc);
        double err = 0;
        for (int64_t k = 0; full && k < ni * nc; k++) {
            double e = fabs(itr_tensor_get(full, k) - itr_tensor_get(want, k)) / fabs(itr_tensor_get(want, k));
            if (!(e <= err)) err = e;
        }
        printf("  %s: %" PRId64 "x%" PRId64 " scores, max rel. error vs PyTorch %.3g\n", model, ni, nc, err);
        CHECK_MSG(err <= TOL_F32, "%s scores: rel. error %.3g", model, err);
        // Every 1x1 tile and a 2x3 tile are slices of the full matrix, bit for bit.
        bool same = full != NULL;
        for (int64_t i = 0; same && i < ni; i++)
            for (int64_t c = 0; same && c < nc; c++) {
                struct itr_tensor *t = score_tile(p, img, cap, params, i, i + 1, c, c + 1);
                same = t && itr_tensor_get(t, 0) == itr_tensor_get(full, i * nc + c);
                itr_tensor_free(t);
            }
        struct itr_tensor *t = score_tile(p, img, cap, params, 1, 3, 1, 4);
        for (int64_t i = 0; same && t && i < 2; i++)
            for (int64_t c = 0; c < 3; c++) same &= itr_tensor_get(t, i * 3 + c) == itr_tensor_get(full, (i + 1) * nc + c + 1);
        same &= t != NULL;
        itr_tensor_free(t);
        CHECK_MSG(same, "%s: a tile differs from the slice of the full matrix", model);
        itr_tensor_free(full);
    }
    for (int k = 0; img && k < 2; k++) itr_tensor_free(img[k]);
    for (int k = 0; cap && k < 3; k++) itr_tensor_free(cap[k]);
    free(img);
    free(cap);
    itr_tensor_free(regions);
    itr_tensor_free(words);
    itr_tensor_free(lengths);
    itr_tensor_free(want);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

TEST(sgr_scores_match_pytorch_and_tile) { check_model("sgr", NULL, 0); }
TEST(saf_scores_match_pytorch_and_tile) { check_model("saf", NULL, 0); }

// ---------------------------------------------------------------- training gradients

// The train graph (training-mode BatchNorms, dropout) on a batch of 4 pairs
// with padded captions (lengths 4, 6, 1, 3): the loss and the gradient of
// every trainable parameter, from itr_vjp, are finite.
static void check_gradients(const char *model) {
    struct itr_program *p = parse_model(model, FIXTURE_SIZE, 7);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_graph *g = itr_program_find_graph(p, "train");
    CHECK(g != NULL);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_attr *one = itr_attrs_default(p, ITR_OP_FULL);
    struct itr_attr *value = &one[itr_op_attr_index(ITR_OP_FULL, "value")];
    value->kind = ITR_ATTR_FLOAT;
    value->u.f = 1.0;
    int32_t seed = -1;
    bool ok = g && itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, one, g->loc, NULL, &seed, &d);
    int np = p->n_params, nw = 0;
    int32_t *wrt = calloc((size_t)np, sizeof *wrt), *grads = calloc((size_t)np, sizeof *grads);
    int *which = calloc((size_t)np, sizeof *which);
    bool *reached = calloc((size_t)np, sizeof *reached);
    for (int k = 0; ok && k < np; k++) {
        if (p->params[k].frozen) continue;
        which[nw] = k;
        wrt[nw++] = itr_graph_use_param(g, k);
    }
    int first = g ? g->n_outputs : 0;
    ok = ok && itr_vjp(g, &g->outputs[0], &seed, 1, wrt, nw, grads, reached, &d);
    for (int k = 0; ok && k < nw; k++)
        if (reached[k]) itr_graph_add_output(g, itr_program_strdup(p, p->params[which[k]].name), grads[k]);
    if (!ok) diags_report("gradients: ", &d);
    itr_diags_free(&d);
    struct itr_tensor **params = fixture_params(p, model);
    int64_t no_shape[1] = { 0 };
    struct itr_tensor *s = itr_tensor_new(ITR_I64, 0, no_shape);
    itr_tensor_set(s, 0, 17);
    struct itr_tensor *in[4] = { fixture("regions"), fixture("words"), fixture("lengths"), s };
    // 3 images in the fixture: make a 4-pair batch from image rows 0,1,2,0.
    struct itr_tensor *r4 = NULL;
    if (in[0]) {
        int64_t sh[3] = { 4, in[0]->shape[1], in[0]->shape[2] };
        r4 = itr_tensor_new(ITR_F32, 3, sh);
        int64_t per = sh[1] * sh[2];
        for (int64_t i = 0; i < 4 * per; i++) itr_tensor_set(r4, i, itr_tensor_get(in[0], (i / per % 3) * per + i % per));
        itr_tensor_free(in[0]);
        in[0] = r4;
    }
    struct itr_tensor **out = ok ? run_graph(p, "train", in, params) : NULL;
    CHECK(out != NULL);
    if (out) {
        double loss = itr_tensor_get(out[0], 0);
        bool finite = isfinite(loss);
        int n_zero = 0;
        for (int k = first; k < g->n_outputs; k++) {
            double mx = 0;
            for (int64_t i = 0; i < itr_tensor_numel(out[k]); i++) {
                double v = itr_tensor_get(out[k], i);
                if (!isfinite(v)) {
                    finite = false;
                    fprintf(stderr, "  %s: gradient of %s not finite\n", model, g->output_names[k]);
                    break;
                }
                mx = fmax(mx, fabs(v));
            }
            n_zero += mx == 0;
        }
        printf("  %s: training loss %.6g, %d gradients, %d of them exactly zero\n", model, loss, g->n_outputs - first,
               n_zero);
        CHECK_MSG(finite, "%s: non-finite training loss or gradient", model);
        CHECK(g->n_outputs - first >= nw - 4);
        for (int k = 0; k < g->n_outputs; k++) itr_tensor_free(out[k]);
        free(out);
    }
    for (int k = 0; k < 4; k++) itr_tensor_free(in[k]);
    free_tensors(params, np);
    free(wrt);
    free(grads);
    free(which);
    free(reached);
    itr_program_free(p);
}

TEST(sgr_training_gradients_finite) { check_gradients("sgr"); }
TEST(saf_training_gradients_finite) { check_gradients("saf"); }

// ---------------------------------------------------------------- training vs PyTorch

// The error of a against the fixture `want`, printed and checked.
static double expect_close(const char *what, const struct itr_tensor *a, const char *want_name, double tol) {
    return mt_expect_close(FIXTURES, 4, 44, what, a, want_name, tol);
}

// The train entry on the fixture batch (4 matched pairs, captions of lengths
// 4, 6, 1, 3) with dropout off, in both hinge forms: "max" is the default
// train entry (max violation), "sum" the warm-up form (warmup_epochs=1 at
// epoch 0). The loss, the gradient of every trainable parameter (one scale:
// the largest gradient of the model, since several are exactly zero in
// exact arithmetic: biases before a softmax or a batch-statistics
// BatchNorm) and every `new.<bn>.running_*` output against PyTorch.
static void check_training(const char *model) {
    for (int form = 0; form < 2; form++) {
        const char *tag = form ? "sum" : "max";
        const char *ov[10];
        int n = 0;
        for (int k = 0; k < 7; k++) ov[n++] = FIXTURE_SIZE[k];
        ov[n++] = "dropout_p=0";
        if (form) ov[n++] = "warmup_epochs=1";
        struct itr_program *p = parse_model(model, ov, n);
        CHECK(p != NULL);
        if (!p) continue;
        int first = 0;
        struct itr_graph *g = mt_train_with_gradients(p, &first);
        bool ok = g != NULL;
        CHECK(ok);
        // Dropout off: no seed input; the warm-up form takes the epoch.
        CHECK(g && g->n_inputs == 3 + form);
        if (!ok || g->n_inputs != 3 + form) {
            itr_program_free(p);
            continue;
        }
        struct itr_tensor **params = fixture_params(p, model);
        struct itr_tensor *in[4] = { fixture("train_regions"), fixture("words"), fixture("lengths"),
                                     mk(ITR_I64, 0, NULL, VALS(0.0)) };
        struct itr_tensor **out = run_graph(p, "train", in, params);
        CHECK(out != NULL);
        if (out) {
            char name[256], what[256];
            printf("  %s, %s hinge (train mode, dropout off): loss %.7g\n", model, tag, itr_tensor_get(out[0], 0));
            snprintf(name, sizeof name, "%s/train_loss_%s", model, tag);
            expect_close("loss", out[0], name, TOL_F32);
            struct err all = { 0, 0 };
            bool finite = true;
            double worst = 0;
            const char *worst_name = "";
            for (int k = first; k < g->n_outputs; k++) {
                snprintf(name, sizeof name, "%s/grad_%s.%s", model, tag, g->output_names[k] + 5);
                struct itr_tensor *want = fixture(name);
                struct err one = { 0, 0 };
                err_add(&one, out[k], want);
                err_add(&all, out[k], want);
                if (one.num > worst) {
                    worst = one.num;
                    worst_name = g->output_names[k] + 5;
                }
                for (int64_t i = 0; out[k] && i < itr_tensor_numel(out[k]); i++)
                    finite = finite && isfinite(itr_tensor_get(out[k], i));
                itr_tensor_free(want);
            }
            printf("    %d gradients: max error / max |grad| %.3g (max |grad| %.3g; largest error in %s)\n",
                   g->n_outputs - first, err_rel(&all), all.den, worst_name);
            CHECK(finite);
            CHECK_MSG(err_rel(&all) <= TOL_F32, "%s %s gradients: error %.3g", model, tag, err_rel(&all));
            CHECK(g->n_outputs - first == (strcmp(model, "sgr") == 0 ? 51 : 37));
            // The running statistics (the same in both forms).
            int n_new = 0;
            for (int k = 1; k < first; k++) {
                if (strncmp(g->output_names[k], "new.", 4) != 0) continue;
                n_new++;
                snprintf(name, sizeof name, "%s/%s", model, g->output_names[k]);
                snprintf(what, sizeof what, "%s", g->output_names[k]);
                expect_close(what, out[k], name, TOL_F32);
            }
            // VisualSA's two BatchNorms, and SAF's BN₁.
            CHECK(n_new == (strcmp(model, "sgr") == 0 ? 4 : 6));
            free_tensors(out, g->n_outputs);
        }
        for (int k = 0; k < 4; k++) itr_tensor_free(in[k]);
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
}

TEST(sgr_training_matches_pytorch) { check_training("sgr"); }
TEST(saf_training_matches_pytorch) { check_training("saf"); }

// ---------------------------------------------------------------- learning

// Without the sum-hinge warm-up both heads fall from scratch onto the
// collapsed plateau of the max-violation hinge (every score equal, loss
// 2·B·margin) on this set; dropout only slows so small a model down.
// At D=16 / sim_dim=8 neither head learns reliably: SGR stays near chance,
// and whether SAF passes 3x moved with the last bits of a GEMM's summation
// order (data-order seeds 5-8: 2.9-5.4x). At D=32 / sim_dim=16, Adam 0.006
// and 6 warm-up epochs both learn on all four seeds (SGR 4.0-6.8x, SAF
// 4.2-7.6x) and keep learning after the switch to max-violation. SAF's
// best test rsum after 10 epochs still moved with rounding: running the
// GRU on the unpadded rows only (packed scans, which agree with the
// full-batch run to 1e-12 in f64 over 189 training steps) took it from
// 4.2x to 2.7x; after 12 epochs 3.9x, after 15 4.1x (SGR 5.1x), so the
// test trains 15.
static const char *const LEARN_SGRAF[] = { "D=32", "sim_dim=16", "W=8", "gru_init=0.17677669529663687",
                                           "dropout_p=0", "warmup_epochs=6" };

static void learn(const char *model, const char *const *size, double lr) {
    char ir[512];
    snprintf(ir, sizeof ir, ITR_SOURCE_DIR "/models/%s.ir", model);
    struct mt_learn_options o = { .ir = ir, .label = model, .n_train = 200, .n_test = 50, .epochs = 15, .lr = lr,
                                  .size = size, .n_size = 6 };
    mt_learn_run(&o);
}

TEST(saf_learns_well_above_chance) { learn("saf", LEARN_SGRAF, 0.006); }
TEST(sgr_learns_well_above_chance) { learn("sgr", LEARN_SGRAF, 0.006); }

int main(void) {
    if (!tmpdir_create("sgraf")) return 1;
    RUN(sgr_scores_match_pytorch_and_tile);
    RUN(saf_scores_match_pytorch_and_tile);
    RUN(sgr_training_gradients_finite);
    RUN(saf_training_gradients_finite);
    RUN(sgr_training_matches_pytorch);
    RUN(saf_training_matches_pytorch);
    RUN(saf_learns_well_above_chance);
    RUN(sgr_learns_well_above_chance);
    tmpdir_remove();
    return test_summary();
}
