// HREM (models/hrem.ir, models/modules/hrem.ir) and the distance-weighted
// triplet loss (models/modules/losses.ir dw_triplet): against an independent
// PyTorch implementation, against hand-computed and transcribed values,
// f64 finite differences of the new modules' gradients, padding, and
// learning through the training loop.
//
// Fixtures: tests/gen_hrem_fixtures.py (float64 reference from float32
// weights) at D=16, heads=2, ff=16, img_dim=24, tok_dim=12, R=12; 3 images,
// 4 captions of lengths 6, 3, 12, 10 (two shorter than 10: the statistics'
// padding quirk), a training batch of 4 pairs of which two share an image.
// Errors are scale-relative, max|a−b| / max|b| (models.md §7 item 14).
#include "tests/modeltest.h"
#include "tests/gradcheck.h"

#define HREM_IR ITR_SOURCE_DIR "/models/hrem.ir"
#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/hrem/"
#define TOL_F32 1e-5

#define N_SIZE 10
static const char *const FIXTURE_SIZE[N_SIZE] = {
    "D=16", "heads=2", "ff=16", "img_dim=24", "tok_dim=12", "R=12", "dropout_p=0", "warmup_epochs=1",
    "uniforms_input=true", "mask_repeat=true",
};

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

// The model at the fixture size (and the override extra, unless NULL) and
// every parameter from the fixtures in *params; NULL (failed) on errors.
static struct itr_program *load(const char *extra, struct itr_tensor ***params) {
    return mt_load_sized(HREM_IR, FIXTURE_SIZE, N_SIZE, extra, FIXTURES, params);
}

static struct itr_tensor *scalar_i64(int64_t v) {
    struct itr_tensor *t = itr_tensor_new(ITR_I64, 0, NULL);
    itr_tensor_set(t, 0, (double)v);
    return t;
}

// ---------------------------------------------------------------- inference against PyTorch

TEST(embeddings_and_scores_match_pytorch) {
    struct itr_tensor **params;
    struct itr_program *p = load(NULL, &params);
    if (!p) return;
    struct itr_tensor *regions = fixture("regions"), *feats = fixture("token_feats"), *lens = fixture("token_lengths");
    struct itr_tensor *v = mt_run_entry0(p, "encode_image", (struct itr_tensor *[]){ regions }, params, false);
    struct itr_tensor *u = mt_run_entry0(p, "encode_text", (struct itr_tensor *[]){ feats, lens }, params, false);
    mt_expect_close(FIXTURES, 2, 8, "img_emb", v, "img_emb", TOL_F32);
    mt_expect_close(FIXTURES, 2, 8, "cap_emb", u, "cap_emb", TOL_F32);
    if (v && u) {
        struct itr_tensor *s = mt_run_entry0(p, "score", (struct itr_tensor *[]){ v, u }, params, false);
        mt_expect_close(FIXTURES, 2, 8, "sims", s, "sims", TOL_F32);
        itr_tensor_free(s);
    }
    itr_tensor_free(v);
    itr_tensor_free(u);
    itr_tensor_free(regions);
    itr_tensor_free(feats);
    itr_tensor_free(lens);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// Token features past each caption's length, and three extra padding
// columns, leave the caption embeddings unchanged: the key-padding mask,
// the masked mean and the masked max-k pooling never read them.
TEST(padded_positions_do_not_change_caption_embeddings) {
    struct itr_tensor **params;
    struct itr_program *p = load(NULL, &params);
    if (!p) return;
    bool finite;
    double e = mt_padding_change(p, params, FIXTURES, &finite);
    printf("  padded vs. garbage-padded caption embeddings: rel. error %.3g\n", e);
    CHECK_MSG(e <= 1e-6, "padding changes the caption embeddings by %.3g", e);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- training criterion against PyTorch

// The train graph (dropout 0, the draws' uniforms as an input) with the
// adjoint of its loss w.r.t. every trainable parameter appended, by itr_vjp.
// epoch 1 (after the warm-up): the full criterion, its loss and every
// gradient against PyTorch. epoch 0: only L_trip(V, U), and the
// instance-level parameters get exactly zero gradient.
TEST(loss_and_gradients_match_pytorch) {
    for (int epoch = 1; epoch >= 0; epoch--) {
        struct itr_tensor **params;
        struct itr_program *p = load(NULL, &params);
        if (!p) return;
        struct itr_tensor *inputs[5] = { fixture("train_regions"), fixture("token_feats"), fixture("token_lengths"),
                                         scalar_i64(epoch), fixture("trip_u") };
        struct itr_graph *g;
        int first = 0;
        struct itr_tensor **out = mt_run_train_with_gradients(p, inputs, params, &g, &first);
        if (out && epoch == 1) {
            mt_expect_loss(FIXTURES, "loss", out[0], "loss", TOL_F32);
            CHECK(mt_expect_gradients(p, out, first, FIXTURES, TOL_F32) == 54);
        } else if (out) {
            mt_expect_loss(FIXTURES, "warm-up loss", out[0], "loss_warmup", TOL_F32);
            int k = 0, inst_nonzero = 0, inst_seen = 0, other_nonzero = 0;
            for (int j = 0; j < p->n_params; j++) {
                if (p->params[j].frozen) continue;
                const struct itr_tensor *a = out[first + k++];
                bool nz = false;
                for (int64_t i = 0; a && i < itr_tensor_numel(a); i++) nz |= itr_tensor_get(a, i) != 0.0;
                if (strncmp(p->params[j].name, "inst.", 5) == 0) {
                    inst_seen++;
                    inst_nonzero += nz;
                } else {
                    other_nonzero += nz;
                }
            }
            printf("  warm-up: %d instance-level parameters, %d with a nonzero gradient; %d others nonzero\n",
                   inst_seen, inst_nonzero, other_nonzero);
            CHECK(inst_seen == 20 && inst_nonzero == 0 && other_nonzero > 20);
        }
        if (out) free_tensors(out, g->n_outputs);
        for (int i = 0; i < 5; i++) itr_tensor_free(inputs[i]);
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
}

// ---------------------------------------------------------------- dw_triplet

// The loss's parts, as entries of a harness model.
static const char PARTS[] =
    "import \"modules/losses.ir\"\n"
    "import \"modules/hrem.ir\"\n"
    "model hrem_parts {\n"
    "  dim A, C, B, L\n"
    "  let frag = hrem_fragment(8, 2, 8, p=0.0)\n"
    "  entry trip(s: f32[A, C], pos: bool[A, C], u1: f32[A, C], u2: f32[C, A]) -> (loss) {\n"
    "    return dw_triplet(s, pos, u1, u2)\n"
    "  }\n"
    "  entry trip_coco(s: f32[A, C], pos: bool[A, C], u1: f32[A, C], u2: f32[C, A]) -> (loss) {\n"
    "    return dw_triplet(s, pos, u1, u2, nonzero_cutoff=1.9)\n"
    "  }\n"
    "  entry vse(s: f32[A, A], pos: bool[A, A], use_max: f32[]) -> (loss) { return hrem_vse(s, pos, use_max) }\n"
    "  entry maxk(x: f32[B, L, 6], lengths: i32[B]) -> (y) { return hrem_maxk_pool(x, lengths) }\n"
    "  entry fragment(x: f32[B, L, 8], lengths: i32[B]) -> (y) { return frag(x, lengths) }\n"
    "}\n";

static struct itr_program *parse_parts(void) {
    return mt_parse_text(ITR_SOURCE_DIR "/models/hrem_parts.ir", PARTS, NULL, 0, false);
}

// A transcription of §3.3 in plain C, one direction, anchors on the rows
// of s [A, C]: log-weights, cut-off, normalisation, then for each positive
// the first index whose running sum of weights exceeds u·total.
static double trip_rows_ref(const double *s, const bool *pos, const double *u, int A, int C, double tau) {
    const double n = 512.0;
    double *w = calloc((size_t)A * C, sizeof *w);
    for (int a = 0; a < A; a++) {
        double mx = -INFINITY;
        for (int j = 0; j < C; j++) {
            double q = 2 - 2 * s[a * C + j];
            double dist = q >= 0 ? fmax(sqrt(q), 0.5) : NAN;
            double lw = (2 - n) * log(dist) - (n - 3) / 2 * log(1 - dist * dist / 4);
            if (pos[a * C + j] || !isfinite(lw)) lw = 0;
            w[a * C + j] = lw;
            mx = fmax(mx, lw);
        }
        double sum = 0;
        for (int j = 0; j < C; j++) {
            double q = 2 - 2 * s[a * C + j];
            double dist = q >= 0 ? fmax(sqrt(q), 0.5) : NAN;
            bool keep = !pos[a * C + j] && dist < tau;   // false for NaN
            w[a * C + j] = keep ? exp(w[a * C + j] - mx) : 0;
            sum += w[a * C + j];
        }
        for (int j = 0; j < C; j++) w[a * C + j] /= sum + 1e-20;
    }
    double loss = 0;
    for (int a = 0; a < A; a++) {
        bool any = false;
        double total = 0;
        for (int j = 0; j < C; j++) any |= pos[a * C + j], total += w[a * C + j];
        if (any && total == 0) { free(w); return 0; }
    }
    for (int a = 0; a < A; a++)
        for (int p = 0; p < C; p++) {
            if (!pos[a * C + p]) continue;
            double total = 0;
            for (int j = 0; j < C; j++) total += w[a * C + j];
            double t = u[a * C + p] * total, c = 0;
            int pick = -1;
            for (int j = 0; j < C && pick < 0; j++) {
                c += w[a * C + j];
                if (c > t) pick = j;
            }
            if (pick >= 0) loss += fmax(0, 0.2 + s[a * C + pick] - s[a * C + p]);
        }
    free(w);
    return loss;
}

static double trip_ref(const double *s, const bool *pos, const double *u1, const double *u2, int A, int C,
                       double tau) {
    double *st = malloc(sizeof(double) * (size_t)A * C);
    bool *pt = malloc(sizeof(bool) * (size_t)A * C);
    for (int a = 0; a < A; a++)
        for (int c = 0; c < C; c++) st[c * A + a] = s[a * C + c], pt[c * A + a] = pos[a * C + c];
    double l = trip_rows_ref(s, pos, u1, A, C, tau) + trip_rows_ref(st, pt, u2, C, A, tau);
    free(st);
    free(pt);
    return l;
}

// dw_triplet of the harness on these values, in f64 (f32 = false) or f32.
static double trip_ir(struct itr_program *p, const char *entry, const double *s, const bool *pos, const double *u1,
                      const double *u2, int A, int C, bool f64) {
    enum itr_dtype dt = f64 ? ITR_F64 : ITR_F32;
    int64_t sa[2] = { A, C }, st[2] = { C, A };
    double *pd = malloc(sizeof(double) * (size_t)A * C);
    for (int i = 0; i < A * C; i++) pd[i] = pos[i];
    struct itr_tensor *in[4] = { gc_tensor(dt, 2, sa, s), gc_tensor(ITR_BOOL, 2, sa, pd), gc_tensor(dt, 2, sa, u1),
                                 gc_tensor(dt, 2, st, u2) };
    struct itr_tensor *l = mt_run_entry0(p, entry, in, NULL, f64);
    double v = l ? itr_tensor_get(l, 0) : NAN;
    itr_tensor_free(l);
    for (int i = 0; i < 4; i++) itr_tensor_free(in[i]);
    free(pd);
    return v;
}

static uint64_t rng_state = 99;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

// Hand-computed: one image, four captions, the first its own. The three
// negatives (0.9, 0.88, 0.93) are all within δ ≤ 0.5 of the image, where δ
// is clamped: equal weights 1/3 each, so u = 0.1, 0.5, 0.9 draw the 1st,
// 2nd and 3rd: L = 0.2 + s_n − 0.95 = 0.15, 0.13, 0.18. The caption-anchor
// direction has an anchor (caption 0) with no negative at all, so the
// original's multinomial would raise: that direction is 0.
TEST(dw_triplet_hand_computed) {
    struct itr_program *p = parse_parts();
    CHECK(p != NULL);
    if (!p) return;
    const double s[4] = { 0.95, 0.9, 0.88, 0.93 };
    const bool pos[4] = { true, false, false, false };
    const double us[3] = { 0.1, 0.5, 0.9 }, want[3] = { 0.15, 0.13, 0.18 };
    const double u2[4] = { 0.5, 0.5, 0.5, 0.5 };
    for (int k = 0; k < 3; k++) {
        double u1[4] = { us[k], 0.3, 0.3, 0.3 };
        double l = trip_ir(p, "trip", s, pos, u1, u2, 1, 4, true);
        printf("  u = %.1f: loss %.12g (want %.2f)\n", us[k], l, want[k]);
        CHECK_MSG(fabs(l - want[k]) < 1e-12, "u = %g: loss %.17g, want %g", us[k], l, want[k]);
    }
    itr_program_free(p);
}

// Random cases against the C transcription, in f64 and f32: diagonal
// positives; a repeated image (off-diagonal positives); an anchor whose
// negatives are all beyond the cut-off τ (so one direction is 0); a score
// just above 1 (√ of a negative: PyTorch's NaN weight, excluded); τ = 1.9.
TEST(dw_triplet_matches_transcription) {
    struct itr_program *p = parse_parts();
    CHECK(p != NULL);
    if (!p) return;
    enum { A = 6, C = 6 };
    double worst64 = 0, worst32 = 0;
    int n_zero = 0;
    for (int c = 0; c < 5; c++) {
        double s[A * C], u1[A * C], u2[A * C];
        bool pos[A * C];
        for (int i = 0; i < A * C; i++) {
            s[i] = -0.3 + 1.2 * urand();
            u1[i] = 0.02 + 0.96 * urand();
            u2[i] = 0.02 + 0.96 * urand();
            pos[i] = i / C == i % C;
        }
        if (c == 1) pos[0 * C + 2] = pos[2 * C + 0] = true;             // images 0 and 2 are one image
        if (c == 2)
            for (int j = 1; j < C; j++) s[1 * C + j] = -0.5 + 0.04 * urand();   // δ in (1.709, 1.732]
        if (c == 3) s[3 * C + 4] = 1.0 + 1e-6;
        const char *entry = c == 4 ? "trip_coco" : "trip";
        double tau = c == 4 ? 1.9 : 1.7;
        double want = trip_ref(s, pos, u1, u2, A, C, tau);
        double l64 = trip_ir(p, entry, s, pos, u1, u2, A, C, true);
        double l32 = trip_ir(p, entry, s, pos, u1, u2, A, C, false);
        double e64 = fabs(l64 - want) / fmax(1, fabs(want)), e32 = fabs(l32 - want) / fmax(1, fabs(want));
        printf("  case %d: loss %.9g (transcription %.9g): f64 error %.3g, f32 %.3g\n", c, l64, want, e64, e32);
        worst64 = fmax(worst64, isnan(e64) ? INFINITY : e64);
        worst32 = fmax(worst32, isnan(e32) ? INFINITY : e32);
        n_zero += want == 0;
    }
    CHECK_MSG(worst64 <= 1e-12, "f64 error %.3g", worst64);
    CHECK_MSG(worst32 <= 1e-5, "f32 error %.3g", worst32);
    CHECK(n_zero == 0);   // every case keeps a nonzero loss: the checks compare something
    itr_program_free(p);
}

// The draws follow the weights: with two negatives of equal weight (both
// inside the clamp δ ≤ 0.5) and a third of weight e^{-Δ}, uniforms on a fine
// grid draw each in proportion to its weight.
TEST(dw_triplet_draws_follow_the_weights) {
    struct itr_program *p = parse_parts();
    CHECK(p != NULL);
    if (!p) return;
    // s = 0.9 and 0.95: δ clamped to 0.5, log w = 369.8 each; s = 0.75:
    // δ = 0.7071, log w = (2 − 512) ln 0.7071 − 254.5 ln 0.875 = 210.76.
    const double s[4] = { 0.99, 0.9, 0.95, 0.75 };
    const bool pos[4] = { true, false, false, false };
    const double u2[4] = { 0.5, 0.5, 0.5, 0.5 };
    int count[3] = { 0 };
    const int n = 200;
    for (int k = 0; k < n; k++) {
        double u1[4] = { (k + 0.5) / n, 0.5, 0.5, 0.5 };
        double l = trip_ir(p, "trip", s, pos, u1, u2, 1, 4, true);
        // L = 0.2 + s_n − 0.99: tells which negative was drawn
        for (int j = 0; j < 3; j++)
            if (fabs(l - fmax(0, 0.2 + s[1 + j] - 0.99)) < 1e-12) count[j]++;
    }
    printf("  %d draws: %d, %d, %d\n", n, count[0], count[1], count[2]);
    CHECK(count[0] == n / 2 && count[1] == n / 2 && count[2] == 0);
    itr_program_free(p);
}

// ---------------------------------------------------------------- gradients (f64 finite differences)

// dw_triplet w.r.t. the scores (the draws are fixed by the uniforms and
// stay fixed under the tiny steps); max-k pooling and the fragment head
// w.r.t. their inputs and parameters, with padded rows.
TEST(module_gradients_match_finite_differences) {
    struct itr_program *p = parse_parts();
    CHECK(p != NULL);
    if (!p) return;
    uint64_t seed = 17;
    {
        int64_t sa[2] = { 5, 5 };
        double pd[25];
        for (int i = 0; i < 25; i++) pd[i] = i / 5 == i % 5 || i == 2 || i == 10;
        struct itr_tensor *in[4] = { gc_random(ITR_F64, 2, sa, -0.3, 0.9, 0, &seed), gc_tensor(ITR_BOOL, 2, sa, pd),
                                     gc_random(ITR_F64, 2, sa, 0.05, 0.95, 0, &seed),
                                     gc_random(ITR_F64, 2, sa, 0.05, 0.95, 0, &seed) };
        struct gc_options o = gc_defaults();
        const char *wrt[] = { "s" };
        o.wrt = wrt;
        o.n_wrt = 1;
        struct gc_result r;
        bool ok = gc_check(p, "trip", in, NULL, &o, &r);
        printf("  dw_triplet:     %s\n", gc_describe(&r));
        CHECK_MSG(ok && r.n_checked == 25, "dw_triplet: %s", gc_describe(&r));
        for (int i = 0; i < 4; i++) itr_tensor_free(in[i]);
    }
    // hrem_vse (the `vse` option), both forms, with a repeated image
    // (pairs 0 and 2 positive for each other) on random scores.
    for (int form = 0; form < 2; form++) {
        struct itr_program *q = parse_parts();   // a check extends the graph it runs: a fresh one each
        if (!q) break;
        int64_t sa[2] = { 5, 5 };
        double pd[25], um = form;
        for (int i = 0; i < 25; i++) pd[i] = i / 5 == i % 5 || i == 2 || i == 10;
        struct itr_tensor *in[3] = { gc_random(ITR_F64, 2, sa, -0.3, 0.9, 0, &seed), gc_tensor(ITR_BOOL, 2, sa, pd),
                                     gc_tensor(ITR_F64, 0, NULL, &um) };
        struct gc_options o = gc_defaults();
        const char *wrt[] = { "s" };
        o.wrt = wrt;
        o.n_wrt = 1;
        struct gc_result r;
        bool ok = gc_check(q, "vse", in, NULL, &o, &r);
        printf("  hrem_vse (%s): %s\n", form ? "max" : "sum", gc_describe(&r));
        CHECK_MSG(ok && r.n_checked == 25, "hrem_vse: %s", gc_describe(&r));
        for (int i = 0; i < 3; i++) itr_tensor_free(in[i]);
        itr_program_free(q);
    }
    const char *entries[2] = { "maxk", "fragment" };
    const int64_t width[2] = { 6, 8 };
    for (int e = 0; e < 2; e++) {
        struct itr_program *q = parse_parts();
        if (!q) break;
        int64_t sx[3] = { 3, 5, width[e] }, sl[1] = { 3 };
        const double len[3] = { 5, 1, 3 };
        struct itr_tensor *in[2] = { gc_random(ITR_F64, 3, sx, -1, 1, 0, &seed), gc_tensor(ITR_I32, 1, sl, len) };
        struct itr_dim_bindings dims;
        itr_bindings_init(&dims, q);
        itr_bind_defaults(&dims, q);
        struct itr_tensor **params = gc_random_params(q, &dims, -0.5, 0.5, &seed);
        // LayerNorm weights near 1, as trained ones are.
        for (int j = 0; j < q->n_params; j++)
            if (params[j] && strstr(q->params[j].name, "norm") && strstr(q->params[j].name, "weight"))
                for (int64_t i = 0; i < itr_tensor_numel(params[j]); i++)
                    itr_tensor_set(params[j], i, 1 + itr_tensor_get(params[j], i));
        struct gc_options o = gc_defaults();
        o.max_elems = 48;
        struct gc_result r;
        bool ok = gc_check(q, entries[e], in, params, &o, &r);
        printf("  %-15s %s\n", entries[e], gc_describe(&r));
        CHECK_MSG(ok && r.n_checked > 0, "%s: %s", entries[e], gc_describe(&r));
        gc_free_tensors(params, q->n_params);
        itr_bindings_free(&dims);
        for (int i = 0; i < 2; i++) itr_tensor_free(in[i]);
        itr_program_free(q);
    }
    itr_program_free(p);
}

// The whole training criterion (fixture weights and batch, instance level
// on) w.r.t. the instance-level module's parameters (relevance MLPs, the
// biased 2B-token layer), through the KL regulariser and the three
// instance-level triplet losses, against f64 central differences. The
// encoders' parameters are left to the PyTorch comparison: HREM detaches
// the region–word statistics and the KL target, so the loss's gradient
// w.r.t. them is not the derivative that finite differences measure.
TEST(criterion_gradients_match_finite_differences) {
    struct itr_tensor **params;
    struct itr_program *p = load(NULL, &params);
    if (!p) return;
    struct itr_tensor *inputs[5] = { fixture("train_regions"), fixture("token_feats"), fixture("token_lengths"),
                                     scalar_i64(1), fixture("trip_u") };
    const char *wrt[64];
    int n_wrt = 0;
    for (int j = 0; j < p->n_params && n_wrt < 64; j++)
        if (!p->params[j].frozen && strncmp(p->params[j].name, "inst.", 5) == 0) wrt[n_wrt++] = p->params[j].name;
    CHECK(n_wrt == 20);
    struct gc_options o = gc_defaults();
    o.wrt = wrt;
    o.n_wrt = n_wrt;
    o.max_elems = 16;
    struct gc_result r;
    bool ok = gc_check(p, "train", inputs, params, &o, &r);
    printf("  criterion: %s\n", gc_describe(&r));
    CHECK_MSG(ok && r.n_checked >= 200, "criterion: %s", gc_describe(&r));
    for (int i = 0; i < 5; i++) itr_tensor_free(inputs[i]);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ---------------------------------------------------------------- the `vse` loss option

// HREM's `vse` hinge by hand from S = V Uᵀ [b, b]: negatives leave out the
// pairs marked in mask; the sum form or the hardest negative per query.
static double vse_ref(const double *S, const bool *mask, int b, bool max_violation) {
    double sum = 0, hard = 0;
    for (int i = 0; i < b; i++) {
        double row = 0, col = 0;
        for (int j = 0; j < b; j++) {
            double cs = mask[i * b + j] ? 0 : fmax(0, 0.2 + S[i * b + j] - S[i * b + i]);   // image i the query
            double cim = mask[j * b + i] ? 0 : fmax(0, 0.2 + S[j * b + i] - S[i * b + i]);  // caption i the query
            sum += cs + cim;
            row = fmax(row, cs);
            col = fmax(col, cim);
        }
        hard += row + col;
    }
    return max_violation ? hard : sum;
}

// The train entry's loss at this epoch (out[0]); NAN on failure.
static double train_loss(struct itr_program *p, struct itr_tensor *const *params, int64_t epoch) {
    struct itr_tensor *in[5] = { fixture("train_regions"), fixture("token_feats"), fixture("token_lengths"),
                                 scalar_i64(epoch), fixture("trip_u") };
    const struct itr_graph *g = itr_program_find_graph(p, "train");
    struct itr_tensor **out = g ? mt_run_graph(g, in, params, "train: ") : NULL;
    double l = out ? itr_tensor_get(out[0], 0) : NAN;
    if (out) free_tensors(out, g->n_outputs);
    for (int i = 0; i < 5; i++) itr_tensor_free(in[i]);
    return l;
}

// `-D loss=vse` (HREM's hinge in place of the triplet, base and relation
// losses alike) against a hand computation from the model's own scores. With
// the image BatchNorm's weight at 0 its output is its bias in training and in
// inference alike, and dropout is 0, so encode_image / encode_text of the
// training batch give the training step's V and U exactly. Two of the batch's
// pairs share an image: `vse` leaves them out of each other's negatives
// (mask_repeat), which moves the loss by at least the margin. Epoch 0: sum
// form; epoch 1 (vse_mean_warmup_epochs 1): max violation; both before the
// instance level (warmup_epochs 3). From epoch 3 the relation losses and the
// regulariser, all ≥ 0, add to the base, and the instance-level parameters
// get gradients.
TEST(vse_loss_from_the_models_scores) {
    for (int repeat = 1; repeat >= 0; repeat--) {
        const char *size[N_SIZE + 2];
        int n = 0;
        for (int i = 0; i < N_SIZE; i++)
            if (strncmp(FIXTURE_SIZE[i], "warmup_epochs=", 14) != 0 && strncmp(FIXTURE_SIZE[i], "mask_repeat=", 12) != 0)
                size[n++] = FIXTURE_SIZE[i];
        size[n++] = "warmup_epochs=3";
        size[n++] = repeat ? "mask_repeat=true" : "mask_repeat=false";
        struct itr_tensor **params;
        struct itr_program *p = mt_load_sized(HREM_IR, size, n, "loss=vse", FIXTURES, &params);
        if (!p) return;
        int bn = itr_program_find_param(p, "img_bn.weight");
        CHECK(bn >= 0);
        if (bn < 0) break;
        for (int64_t i = 0; i < itr_tensor_numel(params[bn]); i++) itr_tensor_set(params[bn], i, 0.0);
        struct itr_tensor *regions = fixture("train_regions"), *feats = fixture("token_feats"),
                          *lens = fixture("token_lengths");
        struct itr_tensor *v = mt_run_entry0(p, "encode_image", (struct itr_tensor *[]){ regions }, params, false);
        struct itr_tensor *u = mt_run_entry0(p, "encode_text", (struct itr_tensor *[]){ feats, lens }, params, false);
        CHECK(v && u && v->shape[0] == 4 && u->shape[0] == 4);
        if (v && u && v->shape[0] == 4 && u->shape[0] == 4) {
            enum { b = 4 };
            int64_t dim = v->shape[1], per = itr_tensor_numel(regions) / b;
            double S[b * b];
            bool same[b * b], diag[b * b];
            for (int i = 0; i < b; i++)
                for (int j = 0; j < b; j++) {
                    double acc = 0;
                    for (int64_t k = 0; k < dim; k++) acc += itr_tensor_get(v, i * dim + k) * itr_tensor_get(u, j * dim + k);
                    S[i * b + j] = acc;
                    bool eq = true;
                    for (int64_t k = 0; k < per && eq; k++)
                        eq = itr_tensor_get(regions, i * per + k) == itr_tensor_get(regions, j * per + k);
                    same[i * b + j] = eq;
                    diag[i * b + j] = i == j;
                }
            int shared = 0;
            for (int i = 0; i < b * b; i++) shared += same[i] && !diag[i];
            CHECK_MSG(shared == 2, "the fixture batch has one pair of pairs sharing an image, not %d / 2", shared);
            const bool *mask = repeat ? same : diag;
            double want_sum = vse_ref(S, mask, b, false), want_max = vse_ref(S, mask, b, true);
            double l0 = train_loss(p, params, 0), l1 = train_loss(p, params, 1), l3 = train_loss(p, params, 3);
            printf("  vse, mask_repeat=%s: loss %.7g (sum form; by hand %.7g), %.7g (max violation; %.7g), "
                   "%.7g with the instance level\n", repeat ? "true" : "false", l0, want_sum, l1, want_max, l3);
            CHECK_MSG(fabs(l0 - want_sum) <= 1e-5 * fmax(1, fabs(want_sum)), "sum form %.9g, by hand %.9g", l0,
                      want_sum);
            CHECK_MSG(fabs(l1 - want_max) <= 1e-5 * fmax(1, fabs(want_max)), "max violation %.9g, by hand %.9g", l1,
                      want_max);
            CHECK_MSG(l3 > l1 + 1e-3, "with the instance level %.9g, not above the base %.9g", l3, l1);
            if (repeat) {
                // Masking the other caption of the same image matters: the
                // diagonal-only hinge differs by at least the margin here.
                double other = vse_ref(S, diag, b, false);
                printf("  the same hinge with only the diagonal masked: %.7g\n", other);
                CHECK(other - want_sum >= 0.2 - 1e-6);
            }
        }
        itr_tensor_free(v);
        itr_tensor_free(u);
        itr_tensor_free(regions);
        itr_tensor_free(feats);
        itr_tensor_free(lens);
        if (repeat) {
            // Gradients after the warm-up: all finite, and the relation
            // losses reach every instance-level parameter.
            struct itr_tensor *inputs[5] = { fixture("train_regions"), fixture("token_feats"), fixture("token_lengths"),
                                             scalar_i64(3), fixture("trip_u") };
            struct itr_graph *g;
            int first = 0;
            struct itr_tensor **out = mt_run_train_with_gradients(p, inputs, params, &g, &first);
            int k = 0, inst = 0, inst_nonzero = 0, finite = 0, trained = 0;
            for (int j = 0; out && j < p->n_params; j++) {
                if (p->params[j].frozen) continue;
                const struct itr_tensor *a = out[first + k++];
                bool nz = false, fin = true;
                for (int64_t i = 0; i < itr_tensor_numel(a); i++) {
                    double x = itr_tensor_get(a, i);
                    nz |= x != 0.0;
                    fin &= isfinite(x);
                }
                trained++;
                finite += fin;
                if (strncmp(p->params[j].name, "inst.", 5) == 0) inst++, inst_nonzero += nz;
            }
            printf("  vse after the warm-up: %d gradients, %d finite; %d of %d instance-level ones nonzero\n", trained,
                   finite, inst_nonzero, inst);
            CHECK(out && trained == 54 && finite == trained && inst == 20 && inst_nonzero == 20);
            if (out) free_tensors(out, g->n_outputs);
            for (int i = 0; i < 5; i++) itr_tensor_free(inputs[i]);
        }
        free_tensors(params, p->n_params);
        itr_program_free(p);
    }
}

// The `vse` option's training step through the trainer: one epoch of a small
// synthetic set (10 steps of 16 pairs, the sum form, then dev evaluation).
// A loss name outside trip / vse is a compile error naming them.
TEST(vse_option_trains_and_bad_names_fail) {
    struct itr_synth_options so;
    itr_synth_defaults(&so);
    so.n_train = 32;
    so.n_dev = 8;
    so.n_test = 8;
    so.regions = 12;
    so.dim = 32;
    so.seed = 11;
    so.token_dim = 16;
    char data[512];
    snprintf(data, sizeof data, "%s", tmp_path("vse_data"));
    bool ok = mt_synth(data, &so, NULL);
    CHECK(ok);
    const char *size[] = { "D=16", "heads=2", "ff=16", "img_dim=32", "tok_dim=16", "R=12", "dropout_p=0", "loss=vse" };
    struct itr_program *p = ok ? mt_parse_model(HREM_IR, size, 8, true) : NULL;
    CHECK(p != NULL);
    if (p) {
        char fp[17];
        snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
        struct itr_trainer_options o;
        mt_trainer_options(&o, data, tmp_path("vse_run"), fp, 1, 16, 2e-3);
        struct itr_trainer_result r;
        struct itr_diags d;
        itr_diags_init(&d);
        bool trained = itr_trainer_run(p, &o, &r, &d);
        if (!trained) diags_report("vse training: ", &d);
        printf("  vse: %" PRId64 " steps, mean loss %.4g, dev rsum %.1f\n", r.steps, r.last_loss, r.last_rsum);
        CHECK(trained && r.steps == 10 && r.epochs_done == 1 && isfinite(r.last_loss) && r.last_loss > 0);
        itr_diags_free(&d);
        itr_program_free(p);
    }
    const char *bad[] = { "loss=hinge" };
    struct itr_parse_options po = { .overrides = bad, .n_overrides = 1 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *q = itr_parse_file(HREM_IR, &po, &d);
    bool named = false;
    for (int i = 0; i < d.n; i++) named |= strstr(d.items[i].msg, "hrem_loss_is_one_of_trip_vse") != NULL;
    printf("  loss=hinge: %d errors, the choices named: %s\n", d.n_errors, named ? "yes" : "no");
    CHECK_MSG((q == NULL || itr_diags_has_errors(&d)) && named, "loss=hinge: no error naming trip and vse");
    if (q) itr_program_free(q);
    itr_diags_free(&d);
}

// ---------------------------------------------------------------- options

// The full-size defaults and the variants compile their training step;
// with fewer than 10 regions (the top-10's zero extension) the criterion
// still runs and gives a finite loss.
TEST(configurations_compile) {
    const char *const sets[][2] = {
        { NULL, NULL }, { "mask_repeat=false", NULL }, { "nonzero_cutoff=1.9", "mask_weight=1.5" },
        { "loss=vse", NULL }, { "loss=vse", "mask_repeat=false" },
    };
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
        int n = sets[k][0] ? (sets[k][1] ? 2 : 1) : 0;
        struct itr_program *p = mt_parse_model(HREM_IR, sets[k], n, true);
        CHECK_MSG(p != NULL, "hrem.ir with %s does not compile", sets[k][0] ? sets[k][0] : "the defaults");
        if (p) {
            const struct itr_graph *g = itr_program_find_graph(p, "train");
            CHECK(g != NULL && g->n_inputs >= 4);
            itr_program_free(p);
        }
    }
}

// ---------------------------------------------------------------- learning

// A synthetic set (runtime/synth.h: 300/40/100 images, 12 regions of 32
// features) with the generator's stand-in token features (16-d, docs/data.md).
// Model: D = 32, 4 heads, ff 32, dropout 0, 2 epochs of warm-up, then the
// instance level; AdamW lr 2e-3 constant, batch 16, 5 epochs, reference
// backend.
static const char *const LEARN_SIZE[] = {
    "D=32", "heads=4", "ff=32", "img_dim=32", "tok_dim=16", "R=12", "dropout_p=0", "warmup_epochs=2",
};

TEST(learns_well_above_chance) {
    struct mt_learn_tokens_options o = { .ir = HREM_IR, .size = LEARN_SIZE, .n_size = 8, .regions = 12,
                                         .token_dim = 16, .epochs = 5, .fused = false };
    mt_learn_tokens(&o);
}

int main(void) {
    if (!tmpdir_create("hrem")) return 1;
    RUN(embeddings_and_scores_match_pytorch);
    RUN(padded_positions_do_not_change_caption_embeddings);
    RUN(loss_and_gradients_match_pytorch);
    RUN(dw_triplet_hand_computed);
    RUN(dw_triplet_matches_transcription);
    RUN(dw_triplet_draws_follow_the_weights);
    RUN(module_gradients_match_finite_differences);
    RUN(criterion_gradients_match_finite_differences);
    RUN(vse_loss_from_the_models_scores);
    RUN(vse_option_trains_and_bad_names_fail);
    RUN(configurations_compile);
#ifndef ITR_SANITIZER_BUILD
    // Learning is a numerical property, checked in the release build; under
    // the sanitizers the run takes about five minutes.
    RUN(learns_well_above_chance);
#else
    (void)test_learns_well_above_chance;
#endif
    tmpdir_remove();
    return test_summary();
}
