// -O1 keeps -O0's outputs bit for bit in both precisions of the reference
// interpreter (docs/cli.md, compiler/passes.h): every model of the zoo, every
// entry point including the compiled training step, run on the same seeded
// random inputs and parameters in f32 mode and in f64 mode. Constant folding
// used to evaluate only in f32, so an f64 run of a -O1 plan read f32-rounded
// folded constants (TERN's attention scale) where -O0 computed them in f64.
// The simplified program goes through a plan file's bytes first, so the
// folded values are also the ones a plan carries.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "backends/ref/ref.h"
#include "compiler/passes.h"
#include "ir/bind.h"
#include "ir/plan.h"
#include "ir/rng.h"
#include "ir/text.h"
#include "test.h"
#include "testutil.h"
#include "entryrun.h"

// The model at path as `itrc compile -O0` (simplify false) or `-O1` builds
// it: parsed with the small overrides, training step compiled, verified;
// the -O1 program is then packed into a plan and unpacked. NULL (reported)
// on any failure.
static struct itr_program *compile(const char *path, bool simplify, struct itr_simplify_stats *st) {
    const char *ov[TU_N_SMALL_SIZES];
    struct itr_parse_options po;
    memset(&po, 0, sizeof po);
    po.overrides = ov;
    po.n_overrides = tu_small_overrides(path, ov);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(path, &po, &d);
    bool ok = p && !itr_diags_has_errors(&d) && itr_compile_training_step(p, &d) && itr_program_verify(p, &d);
    if (ok && simplify) ok = itr_simplify(p, st, &d) && itr_program_verify(p, &d);
    if (ok && simplify) {
        uint8_t *buf = NULL;
        size_t len = 0;
        struct itr_plan_info info;
        ok = itr_plan_pack(p, "ref", &buf, &len, &d);
        struct itr_program *q = ok ? itr_plan_unpack(buf, len, "packed plan", &info, &d) : NULL;
        free(buf);
        itr_program_free(p);
        p = q;
        ok = q != NULL;
    }
    if (!ok) {
        itr_diags_print(&d, stderr);
        FAIL_AT("cannot compile %s at -O%d", path, simplify ? 1 : 0);
        if (p) itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

// Every entry of the model at path, -O1 against -O0, f32 and f64. The
// number of entry runs compared is added to *compared.
static void check_model(const char *path, int *compared) {
    const char *file = strrchr(path, '/') + 1;
    struct itr_simplify_stats st;
    memset(&st, 0, sizeof st);
    struct itr_program *p0 = compile(path, false, NULL), *p1 = compile(path, true, &st);
    if (!p0 || !p1) goto done;
    CHECK_MSG(p0->n_params == p1->n_params && p0->n_symbols == p1->n_symbols,
              "%s: -O1 changed the parameters or symbols", file);
    if (p0->n_params != p1->n_params || p0->n_symbols != p1->n_symbols) goto done;
    // Symbols at their defaults where small, else 3, as tests/test_passes.c binds them.
    struct itr_dim_bindings b;
    int64_t *syms = tu_bind_symbols(p0, &b);
    struct itr_tensor **params = tu_random_params(p0, &b, 1000);
    int entries = 0;
    for (int gi = 0; gi < p0->n_graphs; gi++) {
        const struct itr_graph *g0 = p0->graphs[gi];
        if (g0->kind != ITR_GRAPH_ENTRY) continue;
        const struct itr_graph *g1 = tu_find_entry(p1, g0->name);
        CHECK_MSG(g1 && g1->n_inputs == g0->n_inputs && g1->n_outputs == g0->n_outputs,
                  "%s: entry '%s' lost or changed its signature at -O1", file, g0->name);
        if (!g1 || g1->n_inputs != g0->n_inputs || g1->n_outputs != g0->n_outputs) continue;
        entries++;
        struct itr_tensor **in = tu_random_inputs(g0, &b, (uint64_t)gi * 100);
        for (int f64 = 0; f64 <= 1; f64++) {
            struct itr_tensor **o0 = tu_run_entry(g0, in, params, syms, f64), **o1 = tu_run_entry(g1, in, params, syms, f64);
            CHECK_MSG(o0 && o1, "%s: entry '%s' does not run in %s mode", file, g0->name, f64 ? "f64" : "f32");
            for (int k = 0; o0 && o1 && k < g0->n_outputs; k++) {
                const struct itr_tensor *x = o0[k], *y = o1[k];
                int64_t nans = 0;
                for (int64_t i = 0; i < itr_tensor_numel(x); i++) nans += isnan(itr_tensor_get(x, i));
                // NaNs compare bitwise too, but would hide what they replace.
                CHECK_MSG(nans == 0, "%s: entry '%s' output '%s' (%s) holds %lld NaNs at -O0 on the test inputs",
                          file, g0->name, g0->output_names[k], f64 ? "f64" : "f32", (long long)nans);
                if (!tu_same_shape_and_dtype(x, y)) {
                    FAIL_AT("%s: entry '%s' output '%s' (%s): -O1 changed its shape or dtype", file, g0->name,
                            g0->output_names[k], f64 ? "f64" : "f32");
                } else if (memcmp(x->data, y->data, itr_tensor_nbytes(x)) != 0) {
                    FAIL_AT("%s: entry '%s' output '%s' (%s): -O1 differs from -O0, max |diff| %.3g", file, g0->name,
                            g0->output_names[k], f64 ? "f64" : "f32", tu_max_abs_diff(x, y));
                }
            }
            for (int k = 0; k < g0->n_outputs; k++) {
                if (o0) itr_tensor_free(o0[k]);
                if (o1) itr_tensor_free(o1[k]);
            }
            free(o0);
            free(o1);
            (*compared)++;
        }
        for (int i = 0; i < g0->n_inputs; i++) itr_tensor_free(in[i]);
        free(in);
    }
    CHECK_MSG(entries > 0, "%s: no entry point compared", file);
    CHECK_MSG(!itr_program_train_graph(p0) || tu_find_entry(p1, itr_program_train_graph(p0)->name),
              "%s: the training step is missing at -O1", file);
    printf("  %s: %d entr%s, %s; %d folded, %d left unfolded for precision\n", file, entries,
           entries == 1 ? "y" : "ies", itr_program_train_graph(p0) ? "with the training step" : "no training step",
           st.folded, st.unfolded_precision);
    for (int j = 0; j < p0->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    free(syms);
    itr_bindings_free(&b);
done:
    if (p0) itr_program_free(p0);
    if (p1) itr_program_free(p1);
}

TEST(zoo_o1_matches_o0_in_f32_and_f64) {
    int compared = 0, models = 0;
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        check_model(path, &compared);
        models++;
    }
    if (dir) closedir(dir);
    check_model(ITR_SOURCE_DIR "/models/demo/batch.ir", &compared);
    CHECK(models >= 8);   // the zoo: vsepp, vse_inf, scan_i2t, scan_t2i, sgr, saf, bfan, tern
    CHECK(compared >= 2 * (models + 1));
}

int main(void) {
    RUN(zoo_o1_matches_o0_in_f32_and_f64);
    return test_summary();
}
