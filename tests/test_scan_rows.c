// Packed scans (ir/scan_rows.c, docs/kernels.md "Packed scans"): which
// scans may skip the rows their mask zeroes, what the skipped rows of their
// results hold, and that the LLVM executor running only the kept rows gives
// the reference interpreter's results — every zoo model's entries with
// scans (the training steps' recorded and gradient scans included) on
// captions of unsorted lengths from 1 to L, f32 and f64, and time-major and
// reversed scans written for the test.
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "backends/cpu/pgemm.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/pipeline.h"
#include "entryrun.h"
#include "ir/bind.h"
#include "ir/kir.h"
#include "ir/scan_rows.h"
#include "test.h"
#include "testutil.h"

static struct itr_program *compile_src(const char *src) {
    return tu_compile_text("scan_rows_test.ir", src, NULL, 0, NULL);
}

// The first scan node of entry `entry`.
static const struct itr_node *first_scan(const struct itr_program *p, const char *entry) {
    const struct itr_graph *g = p ? tu_find_entry(p, entry) : NULL;
    for (int i = 0; g && i < g->n_nodes; i++)
        if (g->nodes[i].op == ITR_OP_SCAN) return &g->nodes[i];
    return NULL;
}

// ------------------------------------------------------------ the proof

// A masked recurrence with the step `step` (h, x, m) -> (h', y), over x
// [B, T, 4] and its mask.
#define MASKED_MODEL(step)                                                                                   \
    "model m {\n  dim B, T\n  param w: f32[4, 4] = uniform(-0.5, 0.5)\n"                                 \
    "  def step(h, x, m) {\n" step "  }\n"                                                               \
    "  entry run(x: f32[B, T, 4], lengths: i32[B]) -> (h, ys) {\n"                                      \
    "    m = unsqueeze(length_mask(x, lengths), axes=[2])\n"                                              \
    "    h, ys = scan(step, full(value=0.0, shape=[B, 4]), x, m, n_carry=1, n_scan=2, axis=1)\n"        \
    "    return h, ys\n  }\n}\n"
#define PRELUDE "import \"nn.ir\"\n"

TEST(gru_like_step_proved) {
    struct itr_program *p = compile_src(PRELUDE MASKED_MODEL(
        "    g = tanh(h @ transpose(w) + x)\n    h2 = m * g + (1.0 - m) * h\n    return h2, m * h2\n"));
    const struct itr_node *n = first_scan(p, "run");
    struct itr_scan_rows r;
    CHECK(n && itr_scan_rows_analyse(n, &r));
    if (n && r.fill) {
        CHECK(r.mask == 2);
        CHECK(r.row_input[0] && r.row_input[1] && r.row_input[2]);
        CHECK(r.fill[0] == ITR_SKIP_COPY && r.src[0] == 0);     // the state is kept
        CHECK(r.fill[1] == ITR_SKIP_CONST && r.value[1] == 0);  // the output is 0
        CHECK(strcmp(p->symbols[r.batch_symbol].name, "B") == 0);
    }
    itr_scan_rows_free(&r);
    itr_program_free(p);
}

// Steps whose skipped rows the reference does not leave as the proof needs,
// or that read across the batch: no proof.
TEST(steps_refused) {
    static const char *const steps[] = {
        // the state decays on a masked row
        "    g = tanh(h @ transpose(w) + x)\n    h2 = m * g + (1.0 - m) * h * 0.5\n    return h2, m * h2\n",
        // a mean over the batch would change with the number of rows run
        "    g = tanh(h @ transpose(w) + x) + mean(h, axes=[0], keepdims=true)\n"
        "    h2 = m * g + (1.0 - m) * h\n    return h2, m * h2\n",
        // exp may overflow, and 0 * inf is not 0: the state is not proved kept
        "    h2 = m * exp(h @ transpose(w) + x) + (1.0 - m) * h\n    return h2, m * h2\n",
        // the row index itself
        "    i = cast(iota(shape=[dimof(h, 0), 4], axis=0), dtype=f32)\n"
        "    h2 = m * tanh(h + x + i) + (1.0 - m) * h\n    return h2, m * h2\n",
        // rows mixed by a product over the batch
        "    g = tanh(h @ (transpose(h) @ h) + x)\n"
        "    h2 = m * g + (1.0 - m) * h\n    return h2, m * h2\n",
    };
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        char src[4096];
        snprintf(src, sizeof src,
                 PRELUDE "model m {\n  dim B, T\n  param w: f32[4, 4] = uniform(-0.5, 0.5)\n"
                         "  def step(h, x, m) {\n%s  }\n"
                         "  entry run(x: f32[B, T, 4], lengths: i32[B]) -> (h, ys) {\n"
                         "    m = unsqueeze(length_mask(x, lengths), axes=[2])\n"
                         "    h, ys = scan(step, full(value=0.0, shape=[B, 4]), x, m, n_carry=1, n_scan=2, axis=1)\n"
                         "    return h, ys\n  }\n}\n",
                 steps[k]);
        struct itr_program *p = compile_src(src);
        const struct itr_node *n = first_scan(p, "run");
        CHECK_MSG(n != NULL, "step %zu does not compile", k);
        struct itr_scan_rows r;
        CHECK_MSG(n && !itr_scan_rows_analyse(n, &r), "step %zu was proved", k);
        itr_program_free(p);
    }
}

// Every recurrence of the zoo (GRUs over captions and GPO's over regions,
// forward, recorded and gradient scans) is masked the way the proof needs.
static int zoo_scans, zoo_packed;

static void zoo_proofs(void *ctx, const char *file, const char *path) {
    (void)ctx;
    struct itr_program *p = tu_compile_small(path, "ref");
    CHECK_MSG(p != NULL, "%s does not compile", file);
    for (int gi = 0; p && gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        for (int i = 0; i < g->n_nodes; i++) {
            if (g->nodes[i].op != ITR_OP_SCAN) continue;
            struct itr_scan_rows r;
            bool ok = itr_scan_rows_analyse(&g->nodes[i], &r);
            zoo_scans++;
            zoo_packed += ok;
            CHECK_MSG(ok, "%s: the scan at node %d of '%s' is not proved", file, i, g->name);
            itr_scan_rows_free(&r);
        }
    }
    // VSE++'s training step: the recorded forward scan keeps the state,
    // stacks the state it read and leaves the recorded product free; the
    // gradient scan keeps the state's gradient, sums the bias gradient over
    // the kept rows and zeroes the rest.
    if (p && strcmp(file, "vsepp.ir") == 0) {
        const struct itr_graph *g = tu_find_entry(p, "train");
        int seen = 0;
        for (int i = 0; g && i < g->n_nodes; i++) {
            struct itr_scan_rows r;
            if (g->nodes[i].op != ITR_OP_SCAN || !itr_scan_rows_analyse(&g->nodes[i], &r)) continue;
            if (r.n_outputs == 3) {
                CHECK(r.fill[0] == ITR_SKIP_COPY && r.fill[1] == ITR_SKIP_COPY && r.src[1] == 0);
                CHECK(r.fill[2] == ITR_SKIP_ANY);
                seen++;
            } else if (r.n_outputs == 5) {
                CHECK(r.fill[0] == ITR_SKIP_COPY && r.src[0] == 0 && r.fill[1] == ITR_SKIP_WHOLE);
                CHECK(r.fill[2] == ITR_SKIP_CONST && r.value[2] == 0 && r.fill[3] == ITR_SKIP_COPY);
                CHECK(r.fill[4] == ITR_SKIP_CONST && r.value[4] == 0);
                seen++;
            }
            itr_scan_rows_free(&r);
        }
        CHECK(seen == 2);
    }
    itr_program_free(p);
}

TEST(zoo_recurrences_proved) {
    CHECK(for_each_model(zoo_proofs, NULL) >= 8);
    printf("  %d of %d zoo scans proved\n", zoo_packed, zoo_scans);
    CHECK(zoo_scans >= 40);
}

// ------------------------------------------------------------ running packed

// Lengths 1..L, unsorted, every row different from its neighbours.
static int32_t caption_length(int64_t b, int64_t L) { return (int32_t)(1 + (b * 3 + 1) % L); }

static struct itr_tensor *entry_input(const struct itr_program *p, const struct itr_graph *g, int i,
                                      const struct itr_dim_bindings *b, int64_t L, bool f64) {
    const struct itr_value *v = &g->values[g->inputs[i]];
    struct itr_tensor *x = tu_model_input(p, &v->type, b, 17, 300 + (uint64_t)i);
    if (!x) return NULL;
    if (strcmp(v->name, "lengths") == 0)
        for (int64_t k = 0; k < itr_tensor_numel(x); k++) itr_tensor_set(x, k, caption_length(k, L));
    else if (itr_dtype_is_int(v->type.dtype))   // word ids: varied, under every small vocabulary
        for (int64_t k = 0; k < itr_tensor_numel(x); k++) itr_tensor_set(x, k, (double)((k * 7 + 1) % 3));
    else if (strcmp(v->name, "lr") == 0 && itr_tensor_numel(x) == 1)
        itr_tensor_set(x, 0, f64 ? 1e-14 : 1e-6);   // Adam's first step: see test_agree_models
    return x;
}

// Entry gi on LLVM, packed or not; the rows its packed scans ran and skipped.
static bool llvm_run(const struct itr_program *p, int gi, struct itr_tensor **in, struct itr_tensor *const *params,
                     const struct itr_dim_bindings *b, bool f64, bool packed, struct itr_tensor **out,
                     int64_t *rows_run, int64_t *rows_skipped, int64_t *product_skipped, int64_t *prepacked) {
    const struct itr_graph *g = p->graphs[gi];
    const struct kir_schedule *s = kir_plan_kernels_find(p->kernels, gi, f64);
    if (!packed) setenv("ITRC_NO_PACKED_SCANS", "1", 1);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings lb;
    tu_bindings_copy(&lb, p, b);
    struct itr_llvm_exe *e = s ? itr_llvm_exe_new(g, s, 2, &d) : NULL;
    unsetenv("ITRC_NO_PACKED_SCANS");
    bool ok = e && itr_llvm_exe_run(e, in, params, &lb, out, &d);
    if (!ok) itr_diags_print(&d, stderr);
    *rows_run = *rows_skipped = *product_skipped = 0;
    itr_llvm_exe_packed_rows(e, rows_run, rows_skipped);
    int64_t product_rows = 0;
    itr_llvm_exe_product_rows(e, &product_rows, product_skipped);
    *prepacked = itr_llvm_exe_prepacked_products(e);
    itr_llvm_exe_free(e);
    itr_bindings_free(&lb);
    itr_diags_free(&d);
    return ok;
}

static int entries_checked;
static int64_t product_rows_skipped, prepacked_products;

// Entry gi packed against the reference, and run unpacked: the packed run
// skips rows, the unpacked one none, and both agree with the reference.
static void check_entry(const struct itr_program *p, int gi, struct itr_tensor *const *params,
                        const struct itr_dim_bindings *b, int64_t L, bool f64, const char *file) {
    const struct itr_graph *g = p->graphs[gi];
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    for (int i = 0; i < g->n_inputs; i++) in[i] = entry_input(p, g, i, b, L, f64);
    struct itr_tensor **ro = calloc((size_t)g->n_outputs + 1, sizeof *ro);
    struct itr_tensor **po = calloc((size_t)g->n_outputs + 1, sizeof *po);
    struct itr_tensor **uo = calloc((size_t)g->n_outputs + 1, sizeof *uo);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings rb;
    tu_bindings_copy(&rb, p, b);
    struct itr_ref_options opt = { .f64 = f64 };
    const char *prec = f64 ? "f64" : "f32";
    if (!itr_ref_run(g, in, params, &rb, &opt, ro, &d)) {
        itr_diags_print(&d, stderr);
        FAIL_AT("%s: entry '%s' (%s) does not run on the reference", file, g->name, prec);
    } else {
        int64_t run = 0, skipped = 0, urun = 0, uskipped = 0, pskipped = 0, upskipped = 0, prepacked = 0,
                uprepacked = 0;
        bool pok = llvm_run(p, gi, in, params, b, f64, true, po, &run, &skipped, &pskipped, &prepacked);
        bool uok = llvm_run(p, gi, in, params, b, f64, false, uo, &urun, &uskipped, &upskipped, &uprepacked);
        CHECK_MSG(pok && uok, "%s: entry '%s' (%s) fails on LLVM (packed: %d, unpacked: %d)", file, g->name, prec,
                  pok, uok);
        // Captions of lengths 1..L leave rows to skip (GPO's scans over a
        // full set of regions have none).
        bool captions = false;
        for (int i = 0; i < g->n_inputs; i++) captions = captions || strcmp(g->values[g->inputs[i]].name, "lengths") == 0;
        CHECK_MSG(run > 0 && (skipped > 0 || !captions),
                  "%s: entry '%s' (%s): packed scans ran %lld rows and skipped %lld", file, g->name, prec,
                  (long long)run, (long long)skipped);
        CHECK_MSG(uskipped == 0 && urun == 0 && upskipped == 0,
                  "%s: entry '%s' (%s) skipped rows with ITRC_NO_PACKED_SCANS=1", file, g->name, prec);
        // A training step's weight gradients sum over the (caption, word)
        // rows, and a text encoder projects every word before its GRU: their
        // products leave out the padded rows.
        CHECK_MSG(pskipped > 0 || !captions,
                  "%s: entry '%s' (%s): its products skipped no row", file, g->name, prec);
        product_rows_skipped += pskipped;
        // The GRUs' recurrent products read their weight packed once per
        // scan, packed scans or not (f32, on CPUs with AVX-512), and still
        // agree with the reference below.
        CHECK_MSG(f64 || !captions || !itr_pgemm_available() || (prepacked > 0 && uprepacked > 0),
                  "%s: entry '%s': no prepacked product (packed scans %lld, unpacked %lld)", file, g->name,
                  (long long)prepacked, (long long)uprepacked);
        CHECK_MSG(!f64 || prepacked + uprepacked == 0, "%s: entry '%s' (f64) ran a prepacked f32 product", file,
                  g->name);
        prepacked_products += prepacked + uprepacked;
        double tol = f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_MODEL;
        for (int k = 0; pok && uok && k < g->n_outputs; k++) {
            char why[256];
            CHECK_MSG(agree_tensors(ro[k], po[k], tol, why, sizeof why), "%s: entry '%s' (%s), output '%s', packed: %s",
                      file, g->name, prec, g->output_names[k], why);
            CHECK_MSG(agree_tensors(ro[k], uo[k], tol, why, sizeof why),
                      "%s: entry '%s' (%s), output '%s', unpacked: %s", file, g->name, prec, g->output_names[k], why);
        }
        entries_checked++;
    }
    for (int k = 0; k < g->n_outputs; k++) {
        itr_tensor_free(ro[k]);
        itr_tensor_free(po[k]);
        itr_tensor_free(uo[k]);
    }
    for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
    free(in);
    free(ro);
    free(po);
    free(uo);
    itr_bindings_free(&rb);
    itr_diags_free(&d);
}

static bool has_scan(const struct itr_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == ITR_OP_SCAN) return true;
    return false;
}

// Every entry with a scan of program p (its kernels compiled here), at
// batch B and length L.
static void check_program(struct itr_program *p, int64_t B, int64_t L, const char *file) {
    struct kir_plan_kernels made = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_compile_kernels(p, &made, &d)) {
        itr_diags_print(&d, stderr);
        FAIL_AT("%s: the kernels do not compile", file);
        itr_diags_free(&d);
        kir_plan_kernels_free(&made);
        return;
    }
    itr_diags_free(&d);
    p->kernels = &made;
    struct itr_dim_bindings b;
    free(tu_bind_symbols(p, &b));
    for (int i = 0; i < p->n_symbols; i++) {
        const char *s = p->symbols[i].name;
        if (strcmp(s, "B") == 0) b.value[i] = B;
        if (strcmp(s, "L") == 0 || strcmp(s, "T") == 0) b.value[i] = L;
    }
    struct itr_tensor **params = tu_model_params(p, &b, 17, 1000);
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY || !has_scan(g)) continue;
        check_entry(p, gi, params, &b, L, false, file);
        check_entry(p, gi, params, &b, L, true, file);
    }
    for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    itr_bindings_free(&b);
    p->kernels = NULL;
    kir_plan_kernels_free(&made);
}

static void zoo_packed_runs(void *ctx, const char *file, const char *path) {
    (void)ctx;
    struct itr_program *p = tu_compile_small(path, NULL);
    if (!p) {
        FAIL_AT("cannot compile %s", file);
        return;
    }
    check_program(p, 7, 5, file);
    itr_program_free(p);
}

TEST(zoo_packed_agrees) {
    if (!itr_llvm_available()) return;
    for_each_model(zoo_packed_runs, NULL);
    printf("  %d entry runs with packed scans compared; their products left out %lld rows; %lld products "
           "prepacked\n", entries_checked, (long long)product_rows_skipped, (long long)prepacked_products);
    CHECK(entries_checked >= 40);
}

// A time-major scan (axis 0) run backwards, with a whole carry summed over
// the kept rows and a stacked output that copies a scanned operand's row.
TEST(time_major_reverse) {
    if (!itr_llvm_available()) return;
    struct itr_program *p = compile_src(
        "model m {\n  dim B, T\n  param w: f32[4, 4] = uniform(-0.5, 0.5)\n"
        "  def step(h, acc, x, m) {\n"
        "    g = tanh(h @ transpose(w) + x)\n    h2 = m * g + (1.0 - m) * h\n"
        "    return h2, acc + sum(m * g, axes=[0]), x, m * h2\n  }\n"
        "  entry run(x: f32[T, B, 4], m: f32[T, B, 1]) -> (h, acc, xs, ys, gk, gm) {\n"
        "    h, acc, xs, ys = scan(step, full(value=0.0, shape=[B, 4]), full(value=0.0, shape=[4]), x, m,\n"
        "                          n_carry=2, n_scan=2, axis=0, reverse=true)\n"
        "    yr = reshape(ys, shape=[T*B, 4])\n"
        "    return h, acc, xs, ys, transpose(yr) @ reshape(x, shape=[T*B, 4]), yr @ w\n  }\n}\n");
    const struct itr_node *n = first_scan(p, "run");
    struct itr_scan_rows r;
    CHECK(n && itr_scan_rows_analyse(n, &r));
    if (n && r.fill) {
        CHECK(r.fill[1] == ITR_SKIP_WHOLE && r.fill[2] == ITR_SKIP_COPY && r.src[2] == 2);
        itr_scan_rows_free(&r);
    }
    if (!p) return;
    // the mask is not a length mask here: rows drop out and come back
    const struct itr_graph *g = tu_find_entry(p, "run");
    struct kir_plan_kernels made = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_compile_kernels(p, &made, &d));
    p->kernels = &made;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK(itr_bindings_set(&b, p, "B", 6, &d) && itr_bindings_set(&b, p, "T", 5, &d));
    int gi = 0;
    while (p->graphs[gi] != g) gi++;
    for (int prec = 0; prec < 2; prec++) {
        bool f64 = prec == 1;
        struct itr_tensor *params[1] = { tu_model_input(p, &p->params[0].type, &b, 17, 1) };
        struct itr_tensor *in[2] = { tu_model_input(p, &g->values[g->inputs[0]].type, &b, 17, 2),
                                     tu_model_input(p, &g->values[g->inputs[1]].type, &b, 17, 3) };
        for (int64_t k = 0; k < itr_tensor_numel(in[1]); k++)   // steps 0..4, rows 0..5
            itr_tensor_set(in[1], k, (k * 5 + k / 6) % 3 == 0 ? 0.0 : 1.0);
        for (int64_t k = 12; k < 18; k++) itr_tensor_set(in[1], k, 0.0);   // step 2: no row kept
        struct itr_tensor *ro[6] = { 0 }, *po[6] = { 0 };
        struct itr_ref_options opt = { .f64 = f64 };
        CHECK(itr_ref_run(g, in, params, &b, &opt, ro, &d));
        int64_t run = 0, skipped = 0, pskipped = 0, prepacked = 0;
        CHECK(llvm_run(p, gi, in, params, &b, f64, true, po, &run, &skipped, &pskipped, &prepacked));
        CHECK(skipped > 0);
        // Both products leave out the rows of ys the scan filled with 0
        // (time-major rows t * B + b): 14 of the 30.
        CHECK_MSG(pskipped == 28, "%s: the products skipped %lld rows", f64 ? "f64" : "f32", (long long)pskipped);
        for (int k = 0; k < 6; k++) {
            char why[256];
            CHECK_MSG(agree_tensors(ro[k], po[k], f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_OP, why, sizeof why),
                      "%s output %d: %s", f64 ? "f64" : "f32", k, why);
            itr_tensor_free(ro[k]);
            itr_tensor_free(po[k]);
        }
        itr_tensor_free(in[0]);
        itr_tensor_free(in[1]);
        itr_tensor_free(params[0]);
    }
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    itr_bindings_free(&b);
    p->kernels = NULL;
    kir_plan_kernels_free(&made);
    itr_program_free(p);
}

int main(void) {
    RUN(gru_like_step_proved);
    RUN(steps_refused);
    RUN(zoo_recurrences_proved);
    RUN(zoo_packed_agrees);
    RUN(time_major_reverse);
    return test_summary();
}
