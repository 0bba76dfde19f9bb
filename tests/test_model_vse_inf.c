// VSE∞ (models/vse_inf.ir) and its GPO (models/modules/gpo.ir) against an
// independent PyTorch transcription, and the model learning on synthetic
// data.
//
// Fixtures: tests/gen_gpo_fixtures.py (D=16, W=8, V=30, img_dim=24,
// tok_dim=12, R=5; GPO at its original 32/32). Errors are scale-relative,
// max|a−b| / max|b| (models.md §7 item 14).
#include "tests/modeltest.h"

#define VSE_INF_IR ITR_SOURCE_DIR "/models/vse_inf.ir"
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/gpo/"

// An independent float32 implementation agrees to a few 1e-7 at this size.
#define TOL_F32 1e-5

static const char *const FIXTURE_SIZE[] = { "D=16", "W=8", "V=30", "img_dim=24", "tok_dim=12", "R=5", "gru_init=0.25" };
#define N_FIXTURE_SIZE 7

static struct itr_program *parse_model(bool feats) {
    const char *ov[N_FIXTURE_SIZE + 1];
    for (int i = 0; i < N_FIXTURE_SIZE; i++) ov[i] = FIXTURE_SIZE[i];
    ov[N_FIXTURE_SIZE] = feats ? "text=feats" : "text=bigru";
    return mt_parse_model(VSE_INF_IR, ov, N_FIXTURE_SIZE + 1, false);
}

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

// Every parameter of p from the fixture "<prefix(name)><name>"; the token-
// feature model's text GPO is stored as feats_txt_gpo.*.
static struct itr_tensor **load_params(const struct itr_program *p, bool feats) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    for (int j = 0; j < p->n_params; j++) {
        const char *n = p->params[j].name;
        char name[160];
        snprintf(name, sizeof name, "%s%s", feats && strncmp(n, "txt_gpo.", 8) == 0 ? "feats_" : "", n);
        t[j] = fixture(name);
        CHECK_MSG(t[j] != NULL, "no fixture for parameter %s", n);
    }
    return t;
}

static struct itr_tensor **run_graph(const struct itr_graph *g, struct itr_tensor *const *inputs,
                                     struct itr_tensor *const *params) {
    return mt_run_graph(g, inputs, params, "running: ");
}

// The error of a against the fixture `want`, printed and checked.
static void expect_close(const char *what, const struct itr_tensor *a, const char *want_name, double tol) {
    mt_expect_close(FIXTURES, 2, 28, what, a, want_name, tol);
}

// ---------------------------------------------------------------- GPO alone

static const char GPO_HARNESS[] = "import \"modules/gpo.ir\"\n"
                                  "model gpo_harness {\n"
                                  "  dim B, L\n"
                                  "  let gpo = gpo()\n"
                                  "  entry pool(x: f32[B, L, 16], lengths: i32[B]) -> (pooled, weights) {\n"
                                  "    return gpo(x, lengths), gpo.weights(x, lengths)\n"
                                  "  }\n"
                                  "}\n";

TEST(gpo_matches_pytorch) {
    // Named inside models/ so that the import resolves as a model's does.
    struct itr_program *p = mt_parse_text(ITR_SOURCE_DIR "/models/gpo_harness.ir", GPO_HARNESS, NULL, 0, false);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor **params = load_params(p, false);
    struct itr_tensor *in[2] = { fixture("gpo.x"), fixture("gpo.lengths") };
    struct itr_tensor **out = run_graph(itr_program_find_graph(p, "pool"), in, params);
    CHECK(out != NULL);
    if (out) {
        // Rows of lengths 6 and 3: the weights depend on n only, and the
        // padded positions get exactly 0.
        expect_close("GPO pooled", out[0], "gpo.pooled", TOL_F32);
        expect_close("GPO weights (n = 6, 3)", out[1], "gpo.weights", TOL_F32);
        for (int k = 3; k < 6; k++) CHECK(itr_tensor_get(out[1], 6 + k) == 0.0);
        free_tensors(out, 2);
    }
    itr_tensor_free(in[0]);
    itr_tensor_free(in[1]);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- encoders and scores

static void check_encoders(bool feats) {
    struct itr_program *p = parse_model(feats);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor **params = load_params(p, feats);
    struct itr_tensor *regions = fixture("regions"), *lengths = fixture("lengths");
    struct itr_tensor *text = fixture(feats ? "token_feats" : "words");
    struct itr_tensor **v = run_graph(itr_program_find_graph(p, "encode_image"), &regions, params);
    struct itr_tensor *tin[2] = { text, lengths };
    struct itr_tensor **u = run_graph(itr_program_find_graph(p, "encode_text"), tin, params);
    CHECK(v && u);
    if (v && u) {
        expect_close("image embeddings", v[0], "img_emb", TOL_F32);
        expect_close(feats ? "caption embeddings (feats)" : "caption embeddings (bigru)", u[0],
                     feats ? "feats_cap_emb" : "cap_emb", TOL_F32);
        struct itr_tensor *sin[2] = { v[0], u[0] };
        struct itr_tensor **s = run_graph(itr_program_find_graph(p, "score"), sin, params);
        CHECK(s != NULL);
        if (s) expect_close(feats ? "scores (feats)" : "scores (bigru)", s[0], feats ? "feats_sims" : "sims", TOL_F32);
        free_tensors(s, 1);
    }
    free_tensors(v, 1);
    free_tensors(u, 1);
    itr_tensor_free(regions);
    itr_tensor_free(lengths);
    itr_tensor_free(text);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

TEST(encoders_and_scores_match_pytorch_bigru) { check_encoders(false); }
TEST(encoders_and_scores_match_pytorch_feats) { check_encoders(true); }

// ---------------------------------------------------------------- training loss and gradients

static int output_index(const struct itr_graph *g, const char *name) {
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->output_names[i], name) == 0) return i;
    return -1;
}

// Training-mode forward (BatchNorm on the batch's B·R rows) and backward of
// both hinge forms, selected by the epoch input, against PyTorch. The
// captions are padded (lengths 5, 7, 1, 3), so the gradient also crosses
// the sort with pads.
TEST(training_loss_and_gradients_match_pytorch) {
    struct itr_program *p = parse_model(false);
    CHECK(p != NULL);
    if (!p) return;
    int first = 0;
    struct itr_graph *g = mt_train_with_gradients(p, &first);
    bool ok = g != NULL;
    CHECK(ok);
    if (!ok) {
        itr_program_free(p);
        return;
    }
    struct itr_tensor **params = load_params(p, false);
    for (int form = 0; form < 2; form++) {
        struct itr_tensor *epoch = mk(ITR_I64, 0, NULL, VALS((double)form));
        struct itr_tensor *in[4] = { fixture("train_regions"), fixture("words"), fixture("lengths"), epoch };
        CHECK(g->n_inputs == 4);
        struct itr_tensor **out = run_graph(g, in, params);
        CHECK(out != NULL);
        const char *tag = form ? "max" : "sum";
        if (out) {
            char name[200];
            snprintf(name, sizeof name, "train_loss_%s", tag);
            printf("  %s hinge: loss %.7g\n", tag, itr_tensor_get(out[0], 0));
            expect_close(name, out[0], name, TOL_F32);
            int rm = output_index(g, "new.img_bn.running_mean"), rv = output_index(g, "new.img_bn.running_var");
            CHECK(rm >= 0 && rv >= 0);
            if (rm >= 0 && rv >= 0) {
                expect_close("new running_mean", out[rm], "new.img_bn.running_mean", TOL_F32);
                expect_close("new running_var", out[rv], "new.img_bn.running_var", TOL_F32);
            }
            // Scale: the largest gradient of the model, so that the first MLP
            // bias (zero up to rounding before a training BatchNorm) is not
            // judged on its own rounding-sized scale.
            struct err all = { 0, 0 };
            bool finite = true;
            for (int k = first; k < g->n_outputs; k++) {
                snprintf(name, sizeof name, "grad_%s.%s", tag, g->output_names[k] + 5);
                struct itr_tensor *want = fixture(name);
                err_add(&all, out[k], want);
                for (int64_t i = 0; out[k] && i < itr_tensor_numel(out[k]); i++)
                    finite = finite && isfinite(itr_tensor_get(out[k], i));
                itr_tensor_free(want);
            }
            printf("  %s hinge: max grad error / max |grad| %.3g (max |grad| %.3g)\n", tag, err_rel(&all), all.den);
            CHECK(finite);
            CHECK_MSG(err_rel(&all) <= TOL_F32, "%s gradients: error %.3g", tag, err_rel(&all));
            free_tensors(out, g->n_outputs);
        }
        for (int i = 0; i < 4; i++) itr_tensor_free(in[i]);
    }
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- learning

// A small GPO (8/8) as well: its size does not change what it computes.
static const char *const LEARN_SIZE[] = { "D=16", "W=8", "gru_init=0.25", "gpo_pe=8", "gpo_hidden=8",
                                          "gpo_init=0.35355339" };

TEST(learns_well_above_chance) {
    struct mt_learn_options o = { .ir = VSE_INF_IR, .label = "vse_inf", .n_train = 300, .n_test = 100, .epochs = 6,
                                  .lr = 0.01, .size = LEARN_SIZE, .n_size = 6 };
    mt_learn_run(&o);
}

int main(void) {
    if (!tmpdir_create("vse_inf")) return 1;
    RUN(gpo_matches_pytorch);
    RUN(encoders_and_scores_match_pytorch_bigru);
    RUN(encoders_and_scores_match_pytorch_feats);
    RUN(training_loss_and_gradients_match_pytorch);
    RUN(learns_well_above_chance);
    tmpdir_remove();
    return test_summary();
}
