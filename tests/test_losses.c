// The retrieval losses of models/modules/losses.ir (models.md §3).
//
// Each loss runs in the reference interpreter on small hand-made similarity
// matrices and is compared with values worked out by hand (a 3×3 case whose
// every cost term is written out below) and with a direct C transcription
// of its equation on larger random matrices, in f32 and f64. Gradients are
// checked against f64 central finite differences (tests/gradcheck.h).
#include "tests/test.h"

#include <stdlib.h>

#include "backends/ref/ref.h"
#include "ir/bind.h"
#include "ir/text.h"
#include "tests/gradcheck.h"

// One entry per loss and setting; all take S as a float [B, B].
static const char HARNESS[] =
    "import \"modules/losses.ir\"\n"
    "model losses {\n"
    "  dim B\n"
    "  entry hinge_sum(s: f32[B, B]) -> (loss) { return hinge(s, margin=0.2, max_violation=false) }\n"
    "  entry hinge_max(s: f32[B, B]) -> (loss) { return hinge(s, margin=0.2) }\n"
    "  entry hinge_sum_m0(s: f32[B, B]) -> (loss) { return hinge(s, margin=0.0, max_violation=false) }\n"
    "  entry hinge_max_m0(s: f32[B, B]) -> (loss) { return hinge(s, margin=0.0, max_violation=true) }\n"
    "  entry hinge_sig(x: f32[B, B]) -> (loss) { return hinge(sigmoid(x), margin=0.2) }\n"
    "  entry warmup(s: f32[B, B], use_max: f32[]) -> (loss) { return hinge_warmup(s, use_max, margin=0.2) }\n"
    "  entry nce(s: f32[B, B]) -> (loss) { return infonce(s, temperature=0.1) }\n"
    "  entry nce_cold(s: f32[B, B]) -> (loss) { return infonce(s, temperature=0.001) }\n"
    "  entry bce(s: f32[B, B]) -> (loss) { return bce_scores(s) }\n"
    "  entry bce_max(s: f32[B, B]) -> (loss) { return bce_scores(s, max_violation=true) }\n"
    "  entry bce_sig(x: f32[B, B]) -> (loss) { return bce_scores(sigmoid(x), eps=1e-6) }\n"
    "}\n";

static struct itr_program *prog;

static struct itr_program *parse_harness(void) {
    const char *inc[] = { ITR_SOURCE_DIR "/models" };
    struct itr_parse_options opt = { .include_dirs = inc, .n_include_dirs = 1 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_string("losses_harness.ir", HARNESS, sizeof HARNESS - 1, &opt, &d);
    if (!p || itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

// In f64 mode the interpreter accepts f64 tensors for f32 inputs, so the
// f64 runs see the doubles of the test unrounded.
static struct itr_tensor *matrix(int b, const double *v, enum itr_dtype dt) {
    int64_t shape[2] = { b, b };
    struct itr_tensor *t = itr_tensor_new(dt, 2, shape);
    for (int i = 0; i < b * b; i++) itr_tensor_set(t, i, v[i]);
    return t;
}

// Runs a loss entry on S [b, b] (and the warm-up switch when the entry has a
// second input); NAN when it does not run.
static double run_loss(const char *entry, int b, const double *s, double use_max, bool f64) {
    const struct itr_graph *g = prog ? itr_program_find_graph(prog, entry) : NULL;
    if (!g) {
        fprintf(stderr, "no entry %s\n", entry);
        return NAN;
    }
    enum itr_dtype dt = f64 ? ITR_F64 : ITR_F32;
    struct itr_tensor *in[2] = { matrix(b, s, dt), itr_tensor_new(dt, 0, NULL) };
    itr_tensor_set(in[1], 0, use_max);
    struct itr_tensor *out = NULL;
    struct itr_dim_bindings dims;
    itr_bindings_init(&dims, prog);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options opt = { .f64 = f64 };
    double r = NAN;
    if (itr_ref_run(g, in, NULL, &dims, &opt, &out, &d)) {
        CHECK(out->rank == 0 && out->dtype == (f64 ? ITR_F64 : ITR_F32));
        r = itr_tensor_get(out, 0);
        itr_tensor_free(out);
    } else {
        itr_diags_print(&d, stderr);
    }
    itr_diags_free(&d);
    itr_bindings_free(&dims);
    itr_tensor_free(in[0]);
    itr_tensor_free(in[1]);
    return r;
}

// ---------------------------------------------------------------- direct formulas

static double relu(double x) { return x > 0 ? x : 0; }

// §3.1 written out: cost_s over rows, cost_im over columns, diagonal skipped.
static double ref_hinge(int b, const double *s, double m, bool max_violation) {
    double total = 0;
    for (int i = 0; i < b; i++) {
        double best_s = 0, best_im = 0;
        for (int j = 0; j < b; j++) {
            if (j == i) continue;
            double cs = relu(m + s[i * b + j] - s[i * b + i]);   // image i queries caption j
            double cim = relu(m + s[j * b + i] - s[i * b + i]);  // caption i queries image j
            if (max_violation) {
                if (cs > best_s) best_s = cs;
                if (cim > best_im) best_im = cim;
            } else {
                total += cs + cim;
            }
        }
        total += best_s + best_im;
    }
    return total;
}

// 0.5·CE(S/τ, I) + 0.5·CE(Sᵀ/τ, I), each a mean over the batch.
static double ref_infonce(int b, const double *s, double tau) {
    double ce_rows = 0, ce_cols = 0;
    for (int i = 0; i < b; i++) {
        double mr = -INFINITY, mc = -INFINITY;
        for (int j = 0; j < b; j++) {
            mr = fmax(mr, s[i * b + j] / tau);
            mc = fmax(mc, s[j * b + i] / tau);
        }
        double er = 0, ec = 0;
        for (int j = 0; j < b; j++) {
            er += exp(s[i * b + j] / tau - mr);
            ec += exp(s[j * b + i] / tau - mc);
        }
        ce_rows += mr + log(er) - s[i * b + i] / tau;
        ce_cols += mc + log(ec) - s[i * b + i] / tau;
    }
    return 0.5 * ce_rows / b + 0.5 * ce_cols / b;
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

// BENCH BCELoss (§3.5), and its max variant with the doubled positive term.
static double ref_bce(int b, const double *s, double eps, bool max_violation) {
    double pos = 0, neg = 0;
    for (int i = 0; i < b; i++) pos += log(clampd(s[i * b + i], eps, 1 - eps));
    if (!max_violation) {
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
                if (i != j) neg += log(1 - clampd(s[i * b + j], eps, 1 - eps));
        return -(pos / b + neg / ((double)b * b));
    }
    for (int i = 0; i < b; i++) {
        double row = INFINITY, col = INFINITY;
        for (int j = 0; j < b; j++) {
            if (j == i) continue;
            row = fmin(row, log(1 - clampd(s[i * b + j], eps, 1 - eps)));
            col = fmin(col, log(1 - clampd(s[j * b + i], eps, 1 - eps)));
        }
        neg += row + col;
    }
    return -(2 * pos + neg);
}

static void random_matrix(int b, double *s, double lo, double hi, unsigned *state) {
    for (int i = 0; i < b * b; i++) {
        *state = *state * 1103515245u + 12345u;
        s[i] = lo + (hi - lo) * (double)((*state >> 8) & 0xffffff) / 16777216.0;
    }
}

// f32 results agree with the f64 formulas to a few f32 ulps of the terms.
#define TOL32 2e-6
#define TOL64 1e-12

static void check_both(const char *entry, int b, const double *s, double want, double use_max) {
    double r32 = run_loss(entry, b, s, use_max, false), r64 = run_loss(entry, b, s, use_max, true);
    double scale = fmax(1.0, fabs(want));
    CHECK_MSG(fabs(r32 - want) <= TOL32 * scale, "%s (f32) = %.9g, expected %.9g", entry, r32, want);
    CHECK_MSG(fabs(r64 - want) <= TOL64 * scale, "%s (f64) = %.17g, expected %.17g", entry, r64, want);
}

// ---------------------------------------------------------------- hinge

// S for the hand-worked case, diagonal d = (0.9, 0.6, 0.7).
static const double S3[9] = {
    0.9, 0.5, 0.1,
    0.8, 0.6, 0.75,
    0.2, 0.3, 0.7,
};

TEST(hinge_by_hand) {
    // margin 0.2. cost_s[i, j] = [0.2 + S_ij - S_ii]+ :
    //   row 0: 0.2+0.5-0.9 < 0, 0.2+0.1-0.9 < 0           -> 0, 0        (max 0)
    //   row 1: 0.2+0.8-0.6 = 0.4, 0.2+0.75-0.6 = 0.35      -> 0.4, 0.35   (max 0.4)
    //   row 2: 0.2+0.2-0.7 < 0, 0.2+0.3-0.7 < 0            -> 0, 0        (max 0)
    // cost_im[i, j] = [0.2 + S_ij - S_jj]+ :
    //   col 0: 0.2+0.8-0.9 = 0.1, 0.2+0.2-0.9 < 0          -> max 0.1
    //   col 1: 0.2+0.5-0.6 = 0.1, 0.2+0.3-0.6 < 0          -> max 0.1
    //   col 2: 0.2+0.1-0.7 < 0, 0.2+0.75-0.7 = 0.25        -> max 0.25
    // sum: 0.75 + 0.45 = 1.2;  max violation: 0.4 + 0.45 = 0.85
    check_both("hinge_sum", 3, S3, 1.2, 0);
    check_both("hinge_max", 3, S3, 0.85, 0);
    // margin 0: cost_s row 1 = 0.2, 0.15; cost_im col 2 = 0.05; nothing else.
    check_both("hinge_sum_m0", 3, S3, 0.4, 0);
    check_both("hinge_max_m0", 3, S3, 0.25, 0);
}

TEST(hinge_masks_the_diagonal) {
    // Every negative far below its positive: each cost is 0. An unmasked
    // diagonal would add [m + S_ii - S_ii]+ = m per row and per column
    // (2·B·m = 1.6 in the sum form, the same in max violation).
    double s[16];
    for (int i = 0; i < 16; i++) s[i] = i % 5 == 0 ? 1.0 : -5.0;
    check_both("hinge_sum", 4, s, 0.0, 0);
    check_both("hinge_max", 4, s, 0.0, 0);
    // A single violating pair (image 2, caption 0) costs in both directions:
    // cost_s[2, 0] = 0.2 + 0.95 - 1 and cost_im[2, 0] = 0.2 + 0.95 - 1.
    s[2 * 4 + 0] = 0.95;
    check_both("hinge_sum", 4, s, 2 * (0.2 + 0.95 - 1.0), 0);
    check_both("hinge_max", 4, s, 2 * (0.2 + 0.95 - 1.0), 0);
}

TEST(hinge_is_a_sum_over_the_batch) {
    // A batch of two copies of the same 2×2 problem placed block-diagonally
    // (cross blocks far negative) costs twice as much: a sum, not a mean.
    double s2[4] = { 0.5, 0.6, 0.1, 0.4 };
    double s4[16];
    for (int i = 0; i < 16; i++) s4[i] = -10;
    for (int blk = 0; blk < 2; blk++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) s4[(2 * blk + i) * 4 + 2 * blk + j] = s2[i * 2 + j];
    for (int mv = 0; mv < 2; mv++) {
        const char *e = mv ? "hinge_max" : "hinge_sum";
        double one = run_loss(e, 2, s2, 0, true), two = run_loss(e, 4, s4, 0, true);
        CHECK_NEAR(one, ref_hinge(2, s2, 0.2, mv), 1e-12);
        CHECK_NEAR(two, 2 * one, 1e-12);
    }
}

TEST(hinge_random_matrices) {
    unsigned st = 7;
    double s[64];
    for (int b = 1; b <= 8; b++) {
        random_matrix(b, s, -1, 1, &st);
        check_both("hinge_sum", b, s, ref_hinge(b, s, 0.2, false), 0);
        check_both("hinge_max", b, s, ref_hinge(b, s, 0.2, true), 0);
        check_both("hinge_max_m0", b, s, ref_hinge(b, s, 0.0, true), 0);
    }
    // SGRAF: the same hinge on sigmoid scores.
    random_matrix(5, s, -3, 3, &st);
    double sig[25];
    for (int i = 0; i < 25; i++) sig[i] = 1 / (1 + exp(-s[i]));
    check_both("hinge_sig", 5, s, ref_hinge(5, sig, 0.2, true), 0);
}

TEST(warmup_switch_blends_exactly) {
    unsigned st = 11;
    double s[36];
    random_matrix(6, s, -1, 1, &st);
    for (int f64 = 0; f64 < 2; f64++) {
        double sum = run_loss("hinge_sum", 6, s, 0, f64), mx = run_loss("hinge_max", 6, s, 0, f64);
        CHECK(sum > mx && mx > 0);
        // bit for bit: 1·a + 0·b = a and 0·a + 1·b = b
        CHECK(run_loss("warmup", 6, s, 1.0, f64) == mx);
        CHECK(run_loss("warmup", 6, s, 0.0, f64) == sum);
        CHECK_NEAR(run_loss("warmup", 6, s, 0.25, f64), 0.25 * mx + 0.75 * sum, f64 ? 1e-12 : 1e-5);
    }
}

// ---------------------------------------------------------------- InfoNCE

TEST(infonce_values) {
    // All scores equal: every softmax is uniform, CE = log B in both directions.
    double z[16] = { 0 };
    check_both("nce", 4, z, log(4.0), 0);
    // 2×2 by hand, τ = 0.1: A = [[10, 0], [0, 0]]
    //   rows: (log(e^10 + 1) - 10) + (log 2 - 0);  cols: the same (A symmetric)
    double s2[4] = { 1.0, 0.0, 0.0, 0.0 };
    double row = (log(exp(10.0) + 1) - 10) + log(2.0);
    check_both("nce", 2, s2, 0.5 * row / 2 + 0.5 * row / 2, 0);
    unsigned st = 3;
    double s[49];
    for (int b = 1; b <= 7; b++) {
        random_matrix(b, s, -1, 1, &st);
        check_both("nce", b, s, ref_infonce(b, s, 0.1), 0);
    }
    // Asymmetric S: the row and column terms differ, and both count.
    random_matrix(5, s, -1, 1, &st);
    s[0 * 5 + 3] = 0.99;
    check_both("nce", 5, s, ref_infonce(5, s, 0.1), 0);
}

TEST(infonce_large_logits_stay_finite) {
    // τ = 0.001 puts the logits near ±1000, where an unshifted exp overflows.
    unsigned st = 5;
    double s[25];
    random_matrix(5, s, -1, 1, &st);
    double want = ref_infonce(5, s, 0.001);
    CHECK(isfinite(want) && want > 0);
    double r32 = run_loss("nce_cold", 5, s, 0, false), r64 = run_loss("nce_cold", 5, s, 0, true);
    CHECK(isfinite(r32) && isfinite(r64));
    CHECK_NEAR(r64, want, 1e-9 * want);
    // f32 logits carry ~1e-4 absolute rounding at magnitude 1000
    CHECK_NEAR(r32, want, 1e-3 + 1e-6 * want);
}

// ---------------------------------------------------------------- BCE

TEST(bce_values) {
    // All 0.5: L = -(log .5 + (1/4)·2·log .5) = 1.5 ln 2; max variant:
    // -(2·2·log .5 + 2·log .5 + 2·log .5) = 8 ln 2.
    double h[4] = { 0.5, 0.5, 0.5, 0.5 };
    check_both("bce", 2, h, 1.5 * log(2.0), 0);
    check_both("bce_max", 2, h, 8 * log(2.0), 0);
    unsigned st = 9;
    double s[36];
    for (int b = 2; b <= 6; b++) {
        random_matrix(b, s, 0.01, 0.99, &st);
        check_both("bce", b, s, ref_bce(b, s, 1e-6, false), 0);
        check_both("bce_max", b, s, ref_bce(b, s, 1e-6, true), 0);
    }
}

TEST(bce_clamps_to_eps) {
    // Scores of exactly 0 and 1 would give log 0; the clamp keeps them at
    // log(1e-6). In f32, 1 - 1e-6 rounds to the nearest float (~1 - 9.5e-7).
    double s[9] = {
        0.0, 1.0, 0.2,
        0.3, 1.0, 0.0,
        1.0, 0.4, 0.6,
    };
    double want = ref_bce(3, s, 1e-6, false);
    double r64 = run_loss("bce", 3, s, 0, true), r32 = run_loss("bce", 3, s, 0, false);
    CHECK(isfinite(want) && isfinite(r32));
    CHECK_NEAR(r64, want, 1e-12 * want);
    CHECK_NEAR(r32, want, 1e-3 * want);
    double wmax = ref_bce(3, s, 1e-6, true);
    CHECK_NEAR(run_loss("bce_max", 3, s, 0, true), wmax, 1e-12 * wmax);
}

// ---------------------------------------------------------------- gradients

// Each entry's gradient against f64 central differences (tests/gradcheck.h),
// on a fresh copy of the harness (the checker appends to the graph). Random
// scores keep away from the kinks — relu at 0, ties in max and min, the BCE
// clamp — by far more than the finite-difference step.
static void gradcheck_entry(const char *entry, int b, double lo, double hi, uint64_t seed) {
    struct itr_program *p = parse_harness();
    CHECK(p != NULL);
    if (!p) return;
    struct itr_dim_bindings dims;
    itr_bindings_init(&dims, p);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_bindings_set(&dims, p, "B", b, &d));
    itr_diags_free(&d);
    struct itr_tensor **in = gc_random_inputs(p, entry, &dims, lo, hi, 0, &seed);
    CHECK(in != NULL);
    if (in) {
        const struct itr_graph *g = itr_program_find_graph(p, entry);
        int n_in = g->n_inputs;
        struct gc_options o = gc_defaults();
        o.dims = &dims;
        struct gc_result r;
        bool ok = gc_check(p, entry, in, NULL, &o, &r);
        printf("  %-13s B=%d  %3d elements, f64 error %.2g, f32 error %.2g\n", entry, b, r.n_checked, r.worst,
               r.worst_f32);
        CHECK_MSG(ok, "%s: %s", entry, gc_describe(&r));
        CHECK_MSG(r.n_checked >= b * b, "%s: only %d elements checked", entry, r.n_checked);
        gc_free_tensors(in, n_in);
    }
    itr_bindings_free(&dims);
    itr_program_free(p);
}

TEST(gradients_match_finite_differences) {
    gradcheck_entry("hinge_sum", 5, -1, 1, 1);
    gradcheck_entry("hinge_max", 5, -1, 1, 2);
    gradcheck_entry("hinge_max_m0", 4, -1, 1, 3);
    gradcheck_entry("hinge_sig", 5, -3, 3, 4);
    gradcheck_entry("warmup", 5, -1, 1, 5);   // also d/d use_max = L_max - L_sum
    gradcheck_entry("nce", 5, -1, 1, 6);
    gradcheck_entry("bce", 5, 0.05, 0.95, 7);
    gradcheck_entry("bce_max", 5, 0.05, 0.95, 8);
    gradcheck_entry("bce_sig", 4, -3, 3, 9);
}

// The masked diagonal of the hinge gets no gradient from its own cost: with
// every negative far below, the loss is flat (0) and so is its gradient,
// exactly; with one violating pair (i, j), only S[i, j] and the two
// positives it is compared with, S[i, i] and S[j, j], move.
TEST(hinge_gradient_pattern) {
    struct itr_program *p = parse_harness();
    CHECK(p != NULL);
    if (!p) return;
    struct itr_graph *g = itr_program_find_graph(p, "hinge_max");
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_attr *one = itr_attrs_default(p, ITR_OP_FULL);
    one[itr_op_attr_index(ITR_OP_FULL, "value")] = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.0 };
    int32_t seed = -1, grad = -1;
    bool reached = false;
    bool ok = itr_graph_add_node(g, ITR_OP_FULL, NULL, 0, one, ITR_NOLOC, NULL, &seed, &d) &&
              itr_vjp(g, &g->outputs[0], &seed, 1, &g->inputs[0], 1, &grad, &reached, &d);
    if (ok) itr_graph_add_output(g, "grad", grad);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    CHECK(ok && reached);
    double s[16];
    for (int i = 0; i < 16; i++) s[i] = i % 5 == 0 ? 1.0 : -5.0;
    for (int pass = 0; ok && pass < 2; pass++) {
        if (pass) s[2 * 4 + 0] = 0.95;   // image 2 violates with caption 0
        struct itr_tensor *in = matrix(4, s, ITR_F64), *out[2] = { NULL, NULL };
        struct itr_dim_bindings dims;
        itr_bindings_init(&dims, p);
        itr_diags_init(&d);
        struct itr_ref_options ro = { .f64 = true };
        CHECK(itr_ref_run(g, &in, NULL, &dims, &ro, out, &d));
        for (int k = 0; out[1] && k < 16; k++) {
            // cost_s[2, 0] = m + S20 - S22 and cost_im[2, 0] = m + S20 - S00
            double want = !pass ? 0 : k == 8 ? 2 : k == 10 || k == 0 ? -1 : 0;
            CHECK_MSG(itr_tensor_get(out[1], k) == want, "pass %d: dL/dS[%d, %d] = %g, expected %g", pass, k / 4,
                      k % 4, itr_tensor_get(out[1], k), want);
        }
        itr_diags_free(&d);
        itr_bindings_free(&dims);
        itr_tensor_free(in);
        itr_tensor_free(out[0]);
        itr_tensor_free(out[1]);
    }
    itr_program_free(p);
}

int main(void) {
    prog = parse_harness();
    CHECK(prog != NULL);
    RUN(hinge_by_hand);
    RUN(hinge_masks_the_diagonal);
    RUN(hinge_is_a_sum_over_the_batch);
    RUN(hinge_random_matrices);
    RUN(warmup_switch_blends_exactly);
    RUN(infonce_values);
    RUN(infonce_large_logits_stay_finite);
    RUN(bce_values);
    RUN(bce_clamps_to_eps);
    RUN(gradients_match_finite_differences);
    RUN(hinge_gradient_pattern);
    if (prog) itr_program_free(prog);
    return test_summary();
}
