// Catalogue B (docs/modules.md "The catalogue"): the interactions of
// models/modules/interaction.ir, the wrappers of models/modules/wrappers.ir
// and the losses added to models/modules/losses.ir, against an independent
// PyTorch transcription of models.md's equations
// (tests/gen_catalogue_b_fixtures.py), plus what the fixtures cannot show:
// padded word slots never change a result, every interaction, direction and
// loss of the wrapper models compiles to a training step (the one-line
// swaps), and the pairwise wrapper models score any tile of a score matrix
// the same way.
//
// tests/ir/catalogue_b_harness.ir has one entry per module; each runs in the
// reference interpreter in f32 and f64 against PyTorch's float64 results on
// the same float32 inputs. Errors are scale-relative, max|a-b| / max|b|
// (models.md §7 item 14), per output.
#include "tests/fixture_harness.h"

#define FIXTURES ITR_SOURCE_DIR "/tests/fixtures/catalogue_b/"
#define HARNESS ITR_SOURCE_DIR "/tests/ir/catalogue_b_harness.ir"

// An independent float32 implementation agrees to a few 1e-7 at these sizes.
#define TOL_F32 1e-5
// float64 against float64: what is left is summation order (~1e-15).
#define TOL_F64 1e-11

static struct itr_tensor *fixture(const char *name) { return mt_fixture(FIXTURES, name); }

// The inputs of entry g from E.in.X fixtures (NULL entries where missing).
static struct itr_tensor **entry_inputs(const struct itr_graph *g) {
    return fh_entry_inputs(g, FIXTURES, false);
}

static bool all_present(struct itr_tensor *const *t, int n) {
    for (int i = 0; t && i < n; i++)
        if (!t[i]) return false;
    return t != NULL;
}

// ------------------------------------------------------------ vs PyTorch

TEST(every_entry_matches_pytorch) {
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
    int n_entries = 0;
    double worst32 = 0, worst64 = 0;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        n_entries++;
        struct itr_tensor **in = entry_inputs(g);
        CHECK_MSG(all_present(in, g->n_inputs), "%s: missing fixture inputs", g->name);
        if (!all_present(in, g->n_inputs)) {
            free_tensors(in, g->n_inputs);
            continue;
        }
        struct itr_tensor **o32 = mt_run_graph_as(g, in, params, false, g->name);
        struct itr_tensor **o64 = mt_run_graph_as(g, in, params, true, g->name);
        CHECK_MSG(o32 && o64, "%s: run failed", g->name);
        for (int k = 0; o32 && o64 && k < g->n_outputs; k++) {
            char name[256];
            snprintf(name, sizeof name, "%s.out.%s", g->name, g->output_names[k]);
            struct itr_tensor *want = fixture(name);
            double e32 = mt_rel_err(o32[k], want), e64 = mt_rel_err(o64[k], want);
            printf("  %-28s %-5s f32 %.3g  f64 %.3g\n", g->name, g->output_names[k], e32, e64);
            CHECK_MSG(e32 <= TOL_F32, "%s.%s: f32 error %.3g", g->name, g->output_names[k], e32);
            CHECK_MSG(e64 <= TOL_F64, "%s.%s: f64 error %.3g", g->name, g->output_names[k], e64);
            worst32 = fmax(worst32, e32);
            worst64 = fmax(worst64, e64);
            itr_tensor_free(want);
        }
        if (o32) free_tensors(o32, g->n_outputs);
        if (o64) free_tensors(o64, g->n_outputs);
        free_tensors(in, g->n_inputs);
    }
    printf("  %d entries: worst f32 %.3g, f64 %.3g\n", n_entries, worst32, worst64);
    CHECK(n_entries == 31);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ------------------------------------------------------------ padding

// The padded word rows of the fixture captions hold random values; replacing
// them by others (and by zeros) must leave every output of every entry that
// reads captions bit for bit unchanged: padded slots are kept out with
// `where`, never multiplied away.
TEST(padded_word_slots_never_change_a_result) {
    struct itr_tensor **params;
    struct itr_program *p = fh_load(HARNESS, FIXTURES, &params);
    if (!p) return;
    int n_checked = 0;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY || g->n_inputs != 3) continue;
        struct itr_tensor **in = entry_inputs(g);
        if (!all_present(in, 3)) {
            FAIL_AT("%s: missing inputs", g->name);
            free_tensors(in, 3);
            continue;
        }
        struct itr_tensor **base = mt_run_graph(g, in, params, g->name);
        for (int variant = 0; variant < 2; variant++) {
            struct itr_tensor *cap = in[1];
            int64_t B = cap->shape[0], L = cap->shape[1], D = cap->shape[2];
            uint64_t seed = 99 + (uint64_t)variant;
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = (int64_t)itr_tensor_get(in[2], b); t < L; t++)
                    for (int64_t e = 0; e < D; e++)
                        itr_tensor_set(cap, (b * L + t) * D + e, variant ? 0.0 : gc_uniform(&seed, -3, 3));
            struct itr_tensor **other = mt_run_graph(g, in, params, g->name);
            double diff = 0;
            for (int k = 0; base && other && k < g->n_outputs; k++)
                for (int64_t i = 0; i < itr_tensor_numel(base[k]); i++) {
                    double dd = fabs(itr_tensor_get(base[k], i) - itr_tensor_get(other[k], i));
                    diff = fmax(diff, isnan(dd) ? INFINITY : dd);
                }
            CHECK_MSG(base && other && diff == 0.0, "%s: padded word values change the outputs by %.3g", g->name,
                      diff);
            if (other) free_tensors(other, g->n_outputs);
        }
        n_checked++;
        if (base) free_tensors(base, g->n_outputs);
        free_tensors(in, 3);
    }
    printf("  %d entries unchanged by their padded word rows\n", n_checked);
    CHECK(n_checked == 20);
    free_tensors(params, p->n_params);
    itr_program_free(p);
}

// ------------------------------------------------------------ swaps

#define WRAP_L2L ITR_SOURCE_DIR "/models/wrap_l2l.ir"
#define WRAP_G2L ITR_SOURCE_DIR "/models/wrap_g2l.ir"
#define WRAP_G2G ITR_SOURCE_DIR "/models/wrap_g2g.ir"

static const char *const SMALL[] = { "D=8", "W=4", "V=20", "img_dim=10", "R=3", "gru_init=0.25", "d_attn=4" };

// Parses a wrapper model at a small size with one more override and
// compiles its training step; true when both succeed.
static bool compiles(const char *ir, const char *extra, const char *extra2) {
    const char *ov[9];
    int n = 0;
    for (int k = 0; k < 7; k++)
        if (strcmp(ir, WRAP_G2G) != 0 || strcmp(SMALL[k], "d_attn=4") != 0) ov[n++] = SMALL[k];
    ov[n++] = extra;
    if (extra2) ov[n++] = extra2;
    struct itr_program *p = mt_parse_model(ir, ov, n, true);
    bool ok = p != NULL;
    itr_program_free(p);
    return ok;
}

TEST(every_interaction_direction_and_loss_swaps_in_one_override) {
    const char *attn[] = { "attn=scan", "attn=bfan", "attn=camp", "attn=adapt", "attn=imram", "attn=rcr", "attn=san" };
    const char *dir[] = { "direction=t2i", "direction=i2t" };
    int n = 0;
    for (int a = 0; a < 7; a++)
        for (int d = 0; d < 2; d++) {
            CHECK_MSG(compiles(WRAP_L2L, attn[a], dir[d]), "wrap_l2l %s %s", attn[a], dir[d]);
            CHECK_MSG(compiles(WRAP_G2L, attn[a], dir[d]), "wrap_g2l %s %s", attn[a], dir[d]);
            n += 2;
        }
    const char *loss[] = { "loss=hinge",   "loss=hinge_sum",   "loss=hinge_warmup", "loss=cmpl",
                           "loss=infonce", "loss=poly",        "loss=npair",        "loss=angular",
                           "loss=pml_contrastive", "loss=ntxent", "loss=pml_triplet" };
    for (int l = 0; l < 11; l++, n++) CHECK_MSG(compiles(WRAP_G2G, loss[l], NULL), "wrap_g2g %s", loss[l]);
    for (int l = 0; l < 7; l++, n++) CHECK_MSG(compiles(WRAP_L2L, loss[l], NULL), "wrap_l2l %s", loss[l]);
    CHECK(compiles(WRAP_G2G, "pool=max", NULL));
    CHECK(compiles(WRAP_L2L, "agg=mean", NULL));
    printf("  %d model variants compile to a training step\n", n + 2);
    // A name outside the catalogue is a compile-time error, not a silent default.
    CHECK(!compiles(WRAP_L2L, "attn=nope", NULL));
    CHECK(!compiles(WRAP_G2G, "loss=nope", NULL));
}

// ------------------------------------------------------------ tiles

// wrap_l2l and wrap_g2l (pairwise) at a small size, freshly initialised, for
// a few interactions: every 1-image, 1-caption and 1x1 tile equals its slice
// of the full [3, 4] score matrix.
TEST(pairwise_wrappers_score_tiles_like_the_full_matrix) {
    const char *cases[][3] = { { WRAP_L2L, "attn=scan", "direction=t2i" }, { WRAP_L2L, "attn=camp", "direction=i2t" },
                               { WRAP_L2L, "attn=rcr", "direction=t2i" },  { WRAP_G2L, "attn=san", "direction=t2i" },
                               { WRAP_G2L, "attn=adapt", "direction=i2t" } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *ov[9];
        for (int k = 0; k < 7; k++) ov[k] = SMALL[k];
        ov[7] = cases[c][1];
        ov[8] = cases[c][2];
        struct itr_program *p = mt_parse_model(cases[c][0], ov, 9, false);
        CHECK(p != NULL);
        if (!p) continue;
        const double len[4] = { 5, 3, 4, 2 };
        char label[96];
        snprintf(label, sizeof label, "%s %s", cases[c][1], cases[c][2]);
        double tile = mt_tiles_of_fresh_model(p, 3, 3, 10, 4, 5, 20, len, label);
        printf("  %s %s %s: tiles vs full matrix: max |diff| %.3g\n", strrchr(cases[c][0], '/') + 1, cases[c][1],
               cases[c][2], tile);
        CHECK_MSG(tile <= 1e-6, "%s: tiles differ from the full matrix by %.3g", cases[c][1], tile);
        itr_program_free(p);
    }
}

int main(void) {
    RUN(every_entry_matches_pytorch);
    RUN(padded_word_slots_never_change_a_result);
    RUN(every_interaction_direction_and_loss_swaps_in_one_override);
    RUN(pairwise_wrappers_score_tiles_like_the_full_matrix);
    return test_summary();
}
