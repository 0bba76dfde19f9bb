// DIME (models/dime_i2t.ir, models/dime_t2i.ir, models/modules/dime.ir)
// against an independent PyTorch implementation (tests/gen_dime_fixtures.py):
// eval-mode scores and tiles, and in training mode (batch-statistics
// BatchNorms) the loss, the path regulariser, the gradient of every trainable
// parameter and the BatchNorms' new running statistics, with and without the
// extra negatives. Then f64 finite-difference checks of the new modules, and
// learning on the synthetic set through the trainer, extra negatives
// included. Errors are scale-relative, max|a−b| / max|b| (models.md §7.14).
#include "tests/gradcheck.h"
#include "tests/modeltest.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/dime/"
#define TOL_F32 1e-5

#define N_SIZE 9
static const char *const FIXTURE_SIZE[N_SIZE] = { "D=16",       "hid_router=8", "heads=4",  "hid_imrc=12", "path_hid=8",
                                                  "tok_dim=12", "img_dim=24",   "R=5",      "L=6" };

static bool read_set(const char *file, struct itr_tensor_set *s) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", FIXTURES, file);
    itr_tensor_set_init(s);
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_safetensors_read(path, s, &d);
    if (!ok) diags_report("", &d);
    itr_diags_free(&d);
    CHECK_MSG(ok, "cannot read %s", path);
    return ok;
}

// A copy of the tensor `name` of s (NULL, and a failed check, if missing).
static struct itr_tensor *get(const struct itr_tensor_set *s, const char *name) {
    struct itr_tensor *t = itr_tensor_set_get(s, name);
    CHECK_MSG(t != NULL, "no fixture tensor %s", name);
    return t ? itr_tensor_clone(t) : NULL;
}

// p's parameters by name from s, indexed like p->params; names p lacks in s
// fail a check.
static struct itr_tensor **params_from(const struct itr_program *p, const struct itr_tensor_set *s) {
    struct itr_tensor **t = calloc((size_t)p->n_params + 1, sizeof *t);
    for (int j = 0; j < p->n_params; j++) t[j] = get(s, p->params[j].name);
    return t;
}

static struct itr_program *parse_dime(const char *dir, const char *extra) {
    char path[512];
    snprintf(path, sizeof path, ITR_SOURCE_DIR "/models/dime_%s.ir", dir);
    const char *ov[N_SIZE + 1];
    for (int i = 0; i < N_SIZE; i++) ov[i] = FIXTURE_SIZE[i];
    int n = N_SIZE;
    if (extra) ov[n++] = extra;
    return mt_parse_model(path, ov, n, false);
}

static struct itr_tensor **run_entry(const struct itr_program *p, const char *entry, struct itr_tensor *const *in,
                                     struct itr_tensor *const *params, int *n_out) {
    const struct itr_graph *g = itr_program_find_graph((struct itr_program *)p, entry);
    CHECK_MSG(g != NULL, "no entry %s", entry);
    if (!g) return NULL;
    *n_out = g->n_outputs;
    return mt_run_graph(g, in, params, entry);
}

// score on rows [i0, i0+ni) of the image outputs and [c0, c0+nc) of the caption outputs.
static struct itr_tensor *score_tile(const struct itr_program *p, struct itr_tensor *const *params,
                                     struct itr_tensor **img, int n_img, struct itr_tensor **cap, int n_cap, int64_t i0,
                                     int64_t ni, int64_t c0, int64_t nc) {
    struct itr_tensor *in[8];
    int n = 0;
    for (int k = 0; k < n_img; k++) in[n++] = mt_rows(img[k], i0, ni);
    for (int k = 0; k < n_cap; k++) in[n++] = mt_rows(cap[k], c0, nc);
    int n_out = 0;
    struct itr_tensor **out = run_entry(p, "score", in, params, &n_out);
    struct itr_tensor *s = out ? out[0] : NULL;
    free(out);
    for (int k = 0; k < n; k++) itr_tensor_free(in[k]);
    return s;
}

// Eval-mode scores of 3 images × 4 captions against PyTorch; every 1×1 tile
// and a 2×3 tile are slices of the full matrix, bit for bit.
static void check_scores(const char *dir) {
    struct itr_program *p = parse_dime(dir, NULL);
    CHECK(p != NULL);
    if (!p) return;
    char name[64];
    struct itr_tensor_set in, ps, out;
    snprintf(name, sizeof name, "%s_params.safetensors", dir);
    bool ok = read_set("inputs.safetensors", &in) & read_set(name, &ps);
    snprintf(name, sizeof name, "%s_out.safetensors", dir);
    ok &= read_set(name, &out);
    struct itr_tensor **params = ok ? params_from(p, &ps) : NULL;
    struct itr_tensor *regions = get(&in, "regions"), *feats = get(&in, "feats"), *lens = get(&in, "lengths");
    int ni = 0, nc = 0;
    struct itr_tensor **img = ok ? run_entry(p, "encode_image", (struct itr_tensor *[]){ regions }, params, &ni) : NULL;
    struct itr_tensor **cap = ok ? run_entry(p, "encode_text", (struct itr_tensor *[]){ feats, lens }, params, &nc) : NULL;
    CHECK(img && cap);
    if (img && cap) {
        struct itr_tensor *want = itr_tensor_set_get(&out, "sims");
        struct itr_tensor *full = score_tile(p, params, img, ni, cap, nc, 0, 3, 0, 4);
        double e = mt_rel_err(full, want);
        printf("  dime_%s: 3x4 scores, rel. error vs PyTorch %.3g\n", dir, e);
        CHECK_MSG(e <= TOL_F32, "dime_%s scores: error %.3g", dir, e);
        bool same = full != NULL;
        for (int64_t i = 0; same && i < 3; i++)
            for (int64_t c = 0; same && c < 4; c++) {
                struct itr_tensor *t = score_tile(p, params, img, ni, cap, nc, i, 1, c, 1);
                same = t && itr_tensor_get(t, 0) == itr_tensor_get(full, i * 4 + c);
                itr_tensor_free(t);
            }
        struct itr_tensor *t = score_tile(p, params, img, ni, cap, nc, 1, 2, 1, 3);
        for (int64_t i = 0; same && t && i < 2; i++)
            for (int64_t c = 0; c < 3; c++) same &= itr_tensor_get(t, i * 3 + c) == itr_tensor_get(full, (i + 1) * 4 + c + 1);
        same &= t != NULL;
        itr_tensor_free(t);
        CHECK_MSG(same, "dime_%s: a tile differs from the slice of the full matrix", dir);
        itr_tensor_free(full);
    }
    if (img) free_tensors(img, ni);
    if (cap) free_tensors(cap, nc);
    itr_tensor_free(regions);
    itr_tensor_free(feats);
    itr_tensor_free(lens);
    if (params) free_tensors(params, p->n_params);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&ps);
    itr_tensor_set_free(&out);
    itr_program_free(p);
}

TEST(i2t_scores_match_pytorch_and_tile) { check_scores("i2t"); }
TEST(t2i_scores_match_pytorch_and_tile) { check_scores("t2i"); }

// ---------------------------------------------------------------- training vs PyTorch

// The train entry's input `name` from the fixture inputs.
static struct itr_tensor *train_input(const struct itr_tensor_set *in, const char *name) {
    static const char *const MAP[][2] = { { "regions", "train_regions" },
                                          { "token_feats", "feats" },
                                          { "token_lengths", "lengths" },
                                          { "extra_token_feats", "extra_feats" },
                                          { "extra_token_lengths", "extra_lengths" },
                                          { "extra_regions", "extra_regions" } };
    for (size_t k = 0; k < sizeof MAP / sizeof *MAP; k++)
        if (!strcmp(name, MAP[k][0])) return get(in, MAP[k][1]);
    CHECK_MSG(false, "unexpected train input %s", name);
    return NULL;
}

// |a − b| / |b| of two one-element tensors (the fixtures' scalars may be
// stored with shape [] or [1]); infinite if either is missing.
static double scalar_err(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!a || !b || itr_tensor_numel(a) != 1 || itr_tensor_numel(b) != 1) return INFINITY;
    return fabs(itr_tensor_get(a, 0) - itr_tensor_get(b, 0)) / fabs(itr_tensor_get(b, 0));
}

// One training step's forward and backward on 4 matched pairs (+ 4 extra
// captions or images with extra=true): loss, path term, every gradient (one
// scale: the largest gradient) and the running statistics.
static void check_training(const char *dir, bool extra) {
    const char *tag = extra ? "extra" : "plain";
    struct itr_program *p = parse_dime(dir, extra ? NULL : "extra=false");
    CHECK(p != NULL);
    if (!p) return;
    int first = 0;
    struct itr_graph *g = mt_train_with_gradients(p, &first);
    CHECK(g != NULL);
    char name[300];
    struct itr_tensor_set in, ps, out;
    snprintf(name, sizeof name, "%s_params.safetensors", dir);
    bool ok = g && read_set("inputs.safetensors", &in) & read_set(name, &ps);
    snprintf(name, sizeof name, "%s_out.safetensors", dir);
    ok &= read_set(name, &out);
    if (!ok) {
        itr_program_free(p);
        return;
    }
    // No dropout anywhere: the step needs no seed.
    CHECK(g->n_inputs == (extra ? (strcmp(dir, "i2t") ? 3 : 5) : (strcmp(dir, "i2t") ? 2 : 3)));
    struct itr_tensor *inputs[8] = { 0 };
    for (int i = 0; i < g->n_inputs && i < 8; i++) inputs[i] = train_input(&in, g->values[g->inputs[i]].name);
    struct itr_tensor **params = params_from(p, &ps);
    struct itr_tensor **res = mt_run_graph(g, inputs, params, "train");
    CHECK(res != NULL);
    if (res) {
        printf("  dime_%s, %s: loss %.7g, path %.7g\n", dir, tag, itr_tensor_get(res[0], 0), itr_tensor_get(res[1], 0));
        snprintf(name, sizeof name, "loss_%s", tag);
        double e = scalar_err(res[0], itr_tensor_set_get(&out, name));
        snprintf(name, sizeof name, "path_%s", tag);
        double ep = scalar_err(res[1], itr_tensor_set_get(&out, name));
        printf("    loss rel. error %.3g, path term %.3g\n", e, ep);
        CHECK_MSG(e <= TOL_F32 && ep <= TOL_F32, "dime_%s %s loss: errors %.3g, %.3g", dir, tag, e, ep);
        struct err all = { 0, 0 };
        bool finite = true;
        double worst = 0;
        const char *worst_name = "";
        int n_grad = 0;
        for (int k = first; k < g->n_outputs; k++) {
            snprintf(name, sizeof name, "grad_%s.%s", tag, g->output_names[k] + 5);
            struct itr_tensor *want = itr_tensor_set_get(&out, name);
            CHECK_MSG(want != NULL, "no fixture %s", name);
            struct err one = { 0, 0 };
            err_add(&one, res[k], want);
            err_add(&all, res[k], want);
            if (one.num > worst) {
                worst = one.num;
                worst_name = g->output_names[k] + 5;
            }
            for (int64_t i = 0; i < itr_tensor_numel(res[k]); i++) finite = finite && isfinite(itr_tensor_get(res[k], i));
            n_grad++;
        }
        printf("    %d gradients: max error / max |grad| %.3g (max |grad| %.3g; largest error in %s)\n", n_grad,
               err_rel(&all), all.den, worst_name);
        CHECK(finite);
        CHECK_MSG(err_rel(&all) <= TOL_F32, "dime_%s %s gradients: error %.3g", dir, tag, err_rel(&all));
        // Every parameter but the running statistics is trained.
        int n_frozen = 0;
        for (int j = 0; j < p->n_params; j++) n_frozen += p->params[j].frozen;
        CHECK(n_grad == p->n_params - n_frozen);
        int n_new = 0;
        double worst_new = 0;
        for (int k = 2; k < first; k++) {
            if (strncmp(g->output_names[k], "new.", 4) != 0) continue;
            n_new++;
            if (!extra) continue;
            snprintf(name, sizeof name, "new_extra.%s", g->output_names[k] + 4);
            double en = mt_rel_err(res[k], itr_tensor_set_get(&out, name));
            worst_new = fmax(worst_new, en);
            CHECK_MSG(en <= TOL_F32, "%s: error %.3g", g->output_names[k], en);
        }
        if (extra) printf("    %d running statistics: worst rel. error %.3g\n", n_new, worst_new);
        // The head's BatchNorm, and the t2i image encoder's.
        CHECK(n_new == (strcmp(dir, "i2t") ? 4 : 2));
        free_tensors(res, g->n_outputs);
    }
    for (int i = 0; i < 8; i++) itr_tensor_free(inputs[i]);
    free_tensors(params, p->n_params);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&ps);
    itr_tensor_set_free(&out);
    itr_program_free(p);
}

TEST(i2t_training_matches_pytorch) {
    check_training("i2t", true);
    check_training("i2t", false);
}
TEST(t2i_training_matches_pytorch) {
    check_training("t2i", true);
    check_training("t2i", false);
}

// ---------------------------------------------------------------- f64 gradient checks of the modules

// The modules of dime.ir in a harness whose instances carry the fixture
// models' parameter names, so that the checks run at the PyTorch fixtures'
// (non-degenerate) parameters rather than at zero biases.
static const char HARNESS[] =
    "import \"modules/nn.ir\"\n"
    "import \"modules/dime.ir\"\n"
    "model dime_harness(dir: str = \"i2t\", lam: float = 4.0) {\n"
    "  dim N, B, L, R\n"
    "  let txt_enc = dime_text_encoder(12, 16)\n"
    "  let l0 = dime_layer(16, 8, 4, direction=dir, heads=4, hid_imrc=12, lambda_softmax=lam)\n"
    "  let l2 = dime_layer(16, 8, 1, direction=dir, heads=4, hid_imrc=12, lambda_softmax=lam)\n"
    "  let head = dime_head(16)\n"
    "  entry text(h: f32[B, L, 12]) -> (w, s, label) {\n"
    "    w, s = txt_enc(h)\n"
    "    return w, s, dime_text_label(h)\n"
    "  }\n"
    "  def layer4(x, glob, ctx, lengths) {\n"
    "    a, b, c, d, p = l0(x, x * 0.5, x * x, x + 0.25, glob, ctx, lengths)\n"
    "    return a, b, c, d, p\n"
    "  }\n"
    "  def layer1(x, glob, ctx, lengths) {\n"
    "    a, b, c, d, p = l2(x, x * 0.5, x * x, x + 0.25, glob, ctx, lengths)\n"
    "    return a, p\n"
    "  }\n"
    "  if dir == \"i2t\" {\n"
    "    entry layer4_(x: f32[N, B, R, 16], glob: f32[B, 16], ctx: f32[B, L, 16], lengths: i32[B]) -> (r0, r1, r2, r3, probs) {\n"
    "      a, b, c, d, p = layer4(x, glob, ctx, lengths)\n"
    "      return a, b, c, d, p\n"
    "    }\n"
    "    entry layer1_(x: f32[N, B, R, 16], glob: f32[B, 16], ctx: f32[B, L, 16], lengths: i32[B]) -> (out, probs) {\n"
    "      a, p = layer1(x, glob, ctx, lengths)\n"
    "      return a, p\n"
    "    }\n"
    "  } else {\n"
    "    entry layer4_(x: f32[N, B, L, 16], glob: f32[N, 16], ctx: f32[N, R, 16], lengths: i32[B]) -> (r0, r1, r2, r3, probs) {\n"
    "      a, b, c, d, p = layer4(x, glob, ctx, lengths)\n"
    "      return a, b, c, d, p\n"
    "    }\n"
    "    entry layer1_(x: f32[N, B, L, 16], glob: f32[N, 16], ctx: f32[N, R, 16], lengths: i32[B]) -> (out, probs) {\n"
    "      a, p = layer1(x, glob, ctx, lengths)\n"
    "      return a, p\n"
    "    }\n"
    "  }\n"
    "  entry head_scores(out: f32[N, B, L, 16], glob: f32[1, B, 16]) -> (s) {\n"
    "    return head(out, glob)\n"
    "  }\n"
    "  entry losses(s: f32[3, 5], t: f32[5, 3], q: f32[4, 6], label: f32[4, 7]) -> (a, b, c, d) {\n"
    "    return dime_hinge(s), dime_hinge(t), dime_hinge(s, max_violation=false), dime_path_loss(fnorm(q), fnorm(label))\n"
    "  }\n"
    "}\n";

static void gradcheck_entry(struct itr_program *p, struct itr_tensor *const *params, const char *entry,
                            struct itr_tensor **in, int n_in, const char *what) {
    struct gc_options o = gc_defaults();
    o.max_elems = 24;
    struct gc_result r;
    bool ok = gc_check(p, entry, in, params, &o, &r);
    printf("  %-22s %s\n", what, gc_describe(&r));
    CHECK_MSG(ok, "%s: %s", what, gc_describe(&r));
    for (int i = 0; i < n_in; i++) itr_tensor_free(in[i]);
}

// Each entry of the harness, in one direction: the gradient with respect to
// every float input and every parameter it uses against f64 central
// differences (24 elements of each tensor). Captions of lengths 6, 3, 1, 4
// padded to 6 (i2t: padded context words get no gradient through the
// attention).
static void gradcheck_modules(const char *dir) {
    struct itr_tensor_set ps;
    char file[64];
    snprintf(file, sizeof file, "%s_params.safetensors", dir);
    if (!read_set(file, &ps)) return;
    char o1[32], o2[32];
    snprintf(o1, sizeof o1, "dir=%s", dir);
    snprintf(o2, sizeof o2, "lam=%s", strcmp(dir, "i2t") ? "9.0" : "4.0");
    const char *ov[2] = { o1, o2 };
    static const char *const ENTRIES[] = { "text", "layer4_", "layer1_", "head_scores", "losses" };
    bool i2t = !strcmp(dir, "i2t");
    for (int e = 0; e < 5; e++) {
        // One program per check: gc_check appends to its graph.
        struct itr_program *p = mt_parse_text(ITR_SOURCE_DIR "/models/dime_harness.ir", HARNESS, ov, 2, false);
        CHECK(p != NULL);
        if (!p) break;
        struct itr_tensor **params = params_from(p, &ps);
        uint64_t seed = 7 + (uint64_t)e;
        // i2t: x [N=2, B=4, R=5, D], glob = sentences [B, D], ctx = words [B, L=6, D];
        // t2i: x [N, B, L, D], glob = image globals [N, D], ctx = regions [N, R, D].
        int64_t sh[4] = { 2, 4, i2t ? 5 : 6, 16 }, sg[2] = { i2t ? 4 : 2, 16 }, sc[3] = { i2t ? 4 : 2, i2t ? 6 : 5, 16 },
                sl[1] = { 4 }, sf[3] = { 4, 6, 12 };
        const double len[4] = { 6, 3, 1, 4 };
        char what[64];
        snprintf(what, sizeof what, "%s %s:", dir, ENTRIES[e]);
        if (e == 0) {
            struct itr_tensor *in[1] = { gc_random(ITR_F64, 3, sf, -1, 1, 0, &seed) };
            gradcheck_entry(p, params, "text", in, 1, what);
        } else if (e == 1 || e == 2) {
            struct itr_tensor *in[4] = { gc_random(ITR_F64, 4, sh, -1, 1, 0, &seed), gc_random(ITR_F64, 2, sg, -1, 1, 0, &seed),
                                         gc_random(ITR_F64, 3, sc, -1, 1, 0, &seed), gc_tensor(ITR_I32, 1, sl, len) };
            gradcheck_entry(p, params, ENTRIES[e], in, 4, what);
        } else if (e == 3) {
            int64_t sgl[3] = { 1, 4, 16 };
            struct itr_tensor *in[2] = { gc_random(ITR_F64, 4, sh, -1, 1, 0, &seed), gc_random(ITR_F64, 3, sgl, -1, 1, 0, &seed) };
            gradcheck_entry(p, params, "head_scores", in, 2, what);
        } else {
            int64_t a[2] = { 3, 5 }, b[2] = { 5, 3 }, q[2] = { 4, 6 }, l[2] = { 4, 7 };
            struct itr_tensor *in[4] = { gc_random(ITR_F64, 2, a, -1, 1, 0, &seed), gc_random(ITR_F64, 2, b, -1, 1, 0, &seed),
                                         gc_random(ITR_F64, 2, q, -1, 1, 0, &seed), gc_random(ITR_F64, 2, l, -1, 1, 0, &seed) };
            gradcheck_entry(p, params, "losses", in, 4, what);
        }
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
    itr_tensor_set_free(&ps);
}

TEST(i2t_modules_gradcheck) { gradcheck_modules("i2t"); }
TEST(t2i_modules_gradcheck) { gradcheck_modules("t2i"); }

// dime_hinge on a hand-made matrix: extra columns only enter caption
// retrieval, extra rows only image retrieval, a square one is the usual hinge.
TEST(hinge_with_extra_negatives) {
    struct itr_program *p = mt_parse_text(ITR_SOURCE_DIR "/models/dime_hinge.ir",
                                          "import \"modules/dime.ir\"\n"
                                          "model h {\n"
                                          "  entry cols(s: f32[2, 4]) -> (l) { return dime_hinge(s) }\n"
                                          "  entry rows(s: f32[4, 2]) -> (l) { return dime_hinge(s) }\n"
                                          "  entry sum(s: f32[2, 4]) -> (l) { return dime_hinge(s, max_violation=false) }\n"
                                          "}\n",
                                          NULL, 0, false);
    CHECK(p != NULL);
    if (!p) return;
    // Image 0: positive 0.5, negatives 0.4 (caption 1), 0.45 and 0.1 (extra).
    // Image 1: positive 0.6, negatives 0.0 (caption 0), 0.7 and 0.2 (extra).
    int64_t sh[2] = { 2, 4 }, st[2] = { 4, 2 };
    struct itr_tensor *s = mk(ITR_F32, 2, sh, VALS(0.5, 0.4, 0.45, 0.1, 0.0, 0.6, 0.7, 0.2));
    struct itr_tensor *t = mk(ITR_F32, 2, st, VALS(0.5, 0.0, 0.4, 0.6, 0.45, 0.7, 0.1, 0.2));
    int n;
    struct itr_tensor **a = run_entry(p, "cols", &s, NULL, &n);
    struct itr_tensor **b = run_entry(p, "rows", &t, NULL, &n);
    struct itr_tensor **c = run_entry(p, "sum", &s, NULL, &n);
    // cols, caption retrieval: max(0.1, 0.15, 0) + max(0, 0.3, 0) = 0.45; image
    // retrieval over the two batch captions: [0.2 + 0 − 0.5]₊ = 0, [0.2 + 0.4 − 0.6]₊ = 0.
    // rows (the transpose): image retrieval over all four images of caption 0:
    // 0 + ... max(0, 0.15, 0) = 0.15, of caption 1: max(0.1, 0.3, 0) = 0.3; caption
    // retrieval over the batch images: 0 + 0 → 0.45 again.
    // sum: 0.1 + 0.15 + 0.3 (row 1: 0.2+0.7−0.6) + 0 = 0.55; no image-retrieval cost.
    CHECK(a && b && c);
    if (a && b && c) {
        CHECK_NEAR(itr_tensor_get(a[0], 0), 0.45, 1e-6);
        CHECK_NEAR(itr_tensor_get(b[0], 0), 0.45, 1e-6);
        CHECK_NEAR(itr_tensor_get(c[0], 0), 0.55, 1e-6);
    }
    if (a) free_tensors(a, 1);
    if (b) free_tensors(b, 1);
    if (c) free_tensors(c, 1);
    itr_tensor_free(s);
    itr_tensor_free(t);
    itr_program_free(p);
}

// ---------------------------------------------------------------- learning

#define LEARN_TOK 16

static void learn(const char *dir, int epochs, double lr) {
    // Sizes, data and schedule: docs/models.md "DIME", "Learning test".
    char label[32], path[512];
    snprintf(label, sizeof label, "dime_%s", dir);
    snprintf(path, sizeof path, ITR_SOURCE_DIR "/models/dime_%s.ir", dir);
    char sub[96], data[512];
    snprintf(sub, sizeof sub, "synth_%s", dir);
    snprintf(data, sizeof data, "%s", tmp_path(sub));
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = 400;
    so.n_dev = 20;
    so.n_test = 50;
    so.regions = 4;
    so.dim = 32;
    so.seed = 11;
    so.token_dim = LEARN_TOK;
    bool ok = mt_synth(data, &so, NULL);
    CHECK(ok);
    // The sum-of-negatives hinge: with DIME's max violation from the first
    // step (and no warm-up in the original) the model sat on the plateau where
    // every score is equal (measured at D=32, B=16, lr 2e-3: loss 7.2-7.4
    // over 6 epochs, the plateau's 2·B·0.2 = 6.4 plus the path term). L = 15
    // fits the set's longest caption (token features include <start>, <end>).
    static const char *const SIZE[] = { "D=16", "hid_router=16", "heads=2", "hid_imrc=32", "path_hid=16",
                                        "tok_dim=16", "img_dim=32", "R=4", "L=15", "max_violation=false" };
    struct itr_program *p = ok ? mt_parse_model(path, SIZE, 10, true) : NULL;
    CHECK(p != NULL);
    if (!p) return;
    // The reference interpreter: at this size the llvm backend's JIT compile
    // of the ~5,700-node step costs more than the whole run saves.
    const char *backend = "ref";
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
    char run[512], run0[512];
    snprintf(sub, sizeof sub, "run_%s", dir);
    snprintf(run, sizeof run, "%s", tmp_path(sub));
    snprintf(sub, sizeof sub, "init_%s", dir);
    snprintf(run0, sizeof run0, "%s", tmp_path(sub));
    struct itr_trainer_options o;
    mt_trainer_options(&o, data, run, fp, epochs, 8, lr);
    struct itr_trainer_result r;
    double secs, untrained, trained;
    struct itr_diags d;
    itr_diags_init(&d);
    mt_train_eval(p, &o, run0, "", &r, &secs, &untrained, &trained, &d);
    char best[1024];
    snprintf(best, sizeof best, "%s/best.safetensors", run);
    struct itr_recall rc;
    memset(&rc, 0, sizeof rc);
    CHECK(mt_test_recalls(p, data, best, &rc));
    // Chance on 50 images × 250 captions: t2i R@K = 2K%, i2t 1 − C(245, K)/C(250, K)
    // (R@1: 2% each way).
    double chance = mt_chance_rsum(50, 5);
    double r1 = rc.i2t_r1 + rc.t2i_r1;
    printf("  %s D=16: test rsum %.2f untrained, %.2f after %" PRId64 " steps (%d epochs, B=8, Adam %g, sum hinge, "
           "extra negatives), R@1 %.1f + %.1f; %.1f s CPU on %s, last loss %.4g; chance rsum %.2f, R@1 sum 4\n",
           label, untrained, trained, r.steps, epochs, lr, rc.i2t_r1, rc.t2i_r1, secs, backend, r.last_loss, chance);
    // The bounds, 2x chance on R@1 and 1.75x on rsum, hold on data-order
    // seeds 5-8 with a margin (docs/models.md, "DIME": i2t rsum 176-215,
    // t2i 132-162; the test runs seed 5).
    CHECK_MSG(r1 >= 2 * 4.0, "%s: test R@1 sum %.1f, less than 2x chance (4)", label, r1);
    CHECK_MSG(trained >= 1.75 * chance, "%s: test rsum %.2f, less than 1.75x chance (%.2f)", label, trained, chance);
    itr_diags_free(&d);
    itr_program_free(p);
}

// i2t steps are cheaper (4 regions per image against 15 word slots per
// caption in t2i), so it gets more epochs in the same budget. On the earlier
// 200-image set the model overfitted (training loss still falling while dev
// and test fell) and the result moved with the data order: i2t (lr 2e-3 x 6
// epochs) 110.8-165.2, t2i (5e-3 x 2) 83.2-145.6 over seeds 5-8, failing
// the bounds on 1 and 2 of them. Twice the training images at the same
// number of steps fixed both (docs/models.md, "DIME", the sweep).
TEST(i2t_learns_well_above_chance) { learn("i2t", 3, 3e-3); }
TEST(t2i_learns_well_above_chance) { learn("t2i", 1, 5e-3); }

int main(void) {
    if (!tmpdir_create("dime")) return 1;
    RUN(i2t_scores_match_pytorch_and_tile);
    RUN(t2i_scores_match_pytorch_and_tile);
    RUN(i2t_training_matches_pytorch);
    RUN(t2i_training_matches_pytorch);
    RUN(hinge_with_extra_negatives);
    RUN(i2t_modules_gradcheck);
    RUN(t2i_modules_gradcheck);
#ifndef ITR_SANITIZER_BUILD
    // Learning is a numerical property, checked in the release build; under
    // the sanitizers the reference interpreter's runs take over ten minutes.
    RUN(i2t_learns_well_above_chance);
    RUN(t2i_learns_well_above_chance);
#else
    (void)test_i2t_learns_well_above_chance;
    (void)test_t2i_learns_well_above_chance;
#endif
    tmpdir_remove();
    return test_summary();
}
