// Fusion beyond one value per kernel (compiler/lower.c, docs/kernels.md).
//
// Row kernels: the row patterns of the models — softmax, masked and log
// softmax, l2norm, clipped l2norm, log-sum-exp, cosine, layernorm — each
// lower to exactly one kernel, and reductions that cannot be computed per
// row where they are read (read at another row's index, read by two
// kernels, a graph output) get their own kernel.
//
// Sibling kernels: values of one shape that one loop nest computes together
// (an Adam update: clipped gradient, both moments, the new parameter) are
// one kernel, and a value only its siblings read is not stored; a sibling
// read at another index, or a reader that runs between the siblings, keeps
// them apart.
//
// Every case runs on the LLVM backend against the reference interpreter at
// row lengths 1, 7, 8, 9 and 20 (lanes and their tail), in f32 and f64; a
// max over an empty row gives the reference's error.
//
// Column rows: reductions over a middle axis whose innermost axis is kept
// are computed per column chunk by their reader's kernel when the chunk's
// block fits in L1, and give the same bits as the column reduction kernels
// they replace.
//
// Column reductions (the innermost axis kept): one kernel whose chunks of
// columns have an accumulator lane per column, of the documented width, and
// that agrees with the reference at widths around the chunk and vector
// sizes, with and without an outer parallel axis.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/lower.h"
#include "compiler/pipeline.h"
#include "entryrun.h"
#include "test.h"
#include "testutil.h"

static const char *SRC =
    "import \"nn.ir\"\n"
    "model rows() {\n"
    "  dim N, M, L\n"
    "  entry soft(x: f32[N, L]) -> (y) { return softmax(x) }\n"
    // a value read as three disjoint slices (a GRU's gates): computed
    // inline by their one kernel, never stored
    "  entry thirds(x: f32[N, 12], b: f32[12]) -> (y) {\n"
    "    t = x + b\n"
    "    return sigmoid(slice(t, axes=[1], starts=[0], ends=[4])) * tanh(slice(t, axes=[1], starts=[4], ends=[8]))\n"
    "           + slice(t, axes=[1], starts=[8], ends=[12])\n"
    "  }\n"
    // overlapping slices: t is stored once
    "  entry overlap(x: f32[N, 12], b: f32[12]) -> (y) {\n"
    "    t = exp(x + b)\n"
    "    return slice(t, axes=[1], starts=[0], ends=[8]) * slice(t, axes=[1], starts=[4], ends=[12])\n"
    "  }\n"
    // a concatenation with a symbolic size along its axis (SGRAF's nodes)
    "  entry cat(g: f32[N, 1, 4], x: f32[N, L, 4]) -> (y) { return concat(g * 2.0, x, axis=1) + 1.0 }\n"
    "  entry soft3(x: f32[N, M, L]) -> (y) { return softmax(x * 2.0) }\n"
    // over a middle axis: a column row kernel, which writes the
    // exponentials into its output in the sum's pass and divides them there
    "  entry softr(x: f32[N, 6, L]) -> (y) { return softmax(x, axis=1) }\n"
    // the same softmax read inline by a reduction: no kernel of its own to
    // divide in, so the exponentials are stored (once), then their sum
    "  entry softsum(x: f32[N, 6, L]) -> (y) { return sum(softmax(x, axis=1) * x, axes=[1]) }\n"
    // not column rows: a chunk's block may not fit in L1 (a symbolic
    // reduced extent, no kept leading axis, a block over 32 KB)
    "  entry softm(x: f32[N, M, L]) -> (y) { return softmax(x, axis=1) }\n"
    "  entry bigblock(x: f32[N, 40, 1024]) -> (y) { return x - mean(x, axes=[1], keepdims=true) }\n"
    "  entry bnorm(x: f32[M, L]) -> (y) {\n"
    "    d = x - mean(x, axes=[0], keepdims=true)\n"
    "    return d / sqrt(mean(d * d, axes=[0], keepdims=true) + 1e-5)\n"
    "  }\n"
    "  entry bnwide(x: f32[M, 1030]) -> (y) { return x - mean(x, axes=[0], keepdims=true) }\n"
    // SCAN's attention: the weights, which a product reads through a
    // transpose, are stored by the softmax's kernel; the weighted sum is a
    // column reduction of its own
    "  entry attn(x: f32[N, 6, L], y: f32[N, 6, M]) -> (c, s) {\n"
    "    a = softmax(x, axis=1)\n"
    "    return transpose(a, perm=[0, 2, 1]) @ y, sum(a * x, axes=[1])\n"
    "  }\n"
    // one value per column: the reader has the kept axes only
    "  entry colpick(x: f32[N, 6, L]) -> (y) { return max(x, axes=[1]) + log(sum(exp(x), axes=[1])) }\n"
    // two column rows over different lengths
    "  entry twomeans(x: f32[N, 3, L], y: f32[N, 5, L]) -> (z) { return mean(x, axes=[1]) * 0.8 + mean(y, axes=[1]) }\n"
    "  entry msoft(x: f32[N, L], m: bool[N, L]) -> (y) { return masked_softmax(x, m) }\n"
    "  entry lsoft(x: f32[N, L]) -> (y) { return log_softmax(x) }\n"
    "  entry l2(x: f32[N, L]) -> (y) { return l2norm(x) }\n"
    "  entry cl2(x: f32[N, L]) -> (y) { return clipped_l2norm(x) }\n"
    "  entry lse(x: f32[N, L]) -> (y) { return logsumexp(x) }\n"
    "  entry cos(a: f32[N, L], b: f32[N, L]) -> (y) { return cosine(a, b) }\n"
    "  entry lnorm(x: f32[N, L], g: f32[L]) -> (y) {\n"
    "    d = x - mean(x, axes=[-1], keepdims=true)\n"
    "    return d / sqrt(mean(d * d, axes=[-1], keepdims=true) + 1e-5) * g\n"
    "  }\n"
    // s is read at the column's index, not the row's: its own kernel
    "  entry cross(x: f32[N, N]) -> (y) { return x * sum(x, axes=[-1]) }\n"
    // s read by two kernels: the first computes it per row, the second reads it from memory
    "  entry twice(x: f32[N, L]) -> (y, z) {\n"
    "    s = sum(x, axes=[-1], keepdims=true)\n"
    "    return x / s, x * s\n"
    "  }\n"
    // a reduction that is an output is stored; its reader loads it
    "  entry shown(x: f32[N, L]) -> (y, s) {\n"
    "    s = max(x, axes=[-1], keepdims=true)\n"
    "    return x - s, s\n"
    "  }\n"
    // siblings: one kernel; the clipped gradient g2 is never stored
    "  entry adam(p: f32[N, L], m: f32[N, L], v: f32[N, L], g: f32[N, L], lr: f32[]) -> (p2, m2, v2) {\n"
    "    g2 = g * 0.5\n"
    "    m2 = m * 0.9 + g2 * 0.1\n"
    "    v2 = v * 0.999 + g2 * g2 * 0.001\n"
    "    return p - lr * m2 / (sqrt(v2) + 1e-8), m2, v2\n"
    "  }\n"
    // a sibling read at the transposed index: two kernels
    "  entry transposed(x: f32[N, N]) -> (y) {\n"
    "    a = exp(x)\n"
    "    return a + transpose(a)\n"
    "  }\n"
    // a reader between the siblings (the sum): three kernels
    // GEMM operands read through unsqueezes: views of the inputs, no copies
    "  entry pairs(x: f32[N, M, L], y: f32[N, M, L]) -> (s) {\n"
    "    return unsqueeze(x, axes=[1]) @ transpose(unsqueeze(y, axes=[0]), perm=[0, 1, 3, 2])\n"
    "  }\n"
    "  entry between(x: f32[N, L]) -> (y, r) {\n"
    "    a = exp(x)\n"
    "    r = sum(a * a)\n"
    "    return a * 2.0 + a, r\n"
    "  }\n"
    "}\n";

// Column reductions: kept innermost axis, with (colsum, colmax, wide3) and
// without (batch, wide) a kept outer axis for the parallel loop.
static const char *SRC_COLS =
    "model cols() {\n"
    "  dim N, M, L\n"
    "  entry colsum(x: f32[N, M, L]) -> (y) { return sum(x, axes=[1]) }\n"
    "  entry colmax(x: f32[N, M, L]) -> (y) { return max(x * 2.0, axes=[1], keepdims=true) }\n"
    "  entry batch(x: f32[M, L]) -> (y) { return sum(x * x, axes=[0]) }\n"
    "  entry wide(x: f32[M, 1030]) -> (y) { return mean(x, axes=[0]) }\n"
    "  entry wide3(x: f32[N, M, 1030]) -> (y) { return min(exp(x), axes=[1]) }\n"
    "}\n";

struct expect {
    const char *entry;
    int kernels;   // kernel steps in the schedule
};

static const struct expect EXPECT[] = {
    { "soft", 1 }, { "cat", 1 }, { "thirds", 1 }, { "overlap", 2 }, { "soft3", 1 }, { "softr", 1 }, { "softsum", 3 }, { "softm", 4 }, { "bigblock", 2 }, { "attn", 2 },
    { "colpick", 1 }, { "twomeans", 1 }, { "msoft", 1 }, { "lsoft", 1 }, { "l2", 1 }, { "cl2", 1 },  { "lse", 1 },
    { "cos", 1 },  { "lnorm", 1 }, { "cross", 2 }, { "twice", 3 }, { "shown", 2 }, { "adam", 1 },
    { "transposed", 2 }, { "between", 3 }, { "pairs", 0 },
};

// The test lowers the graphs itself: no kernels in the program.
static struct itr_program *compile_src(const char *src) { return tu_compile_text("rows.ir", src, "ref", 0, NULL); }

static struct itr_program *compile_rows(void) { return compile_src(SRC); }

// The f32 schedule of entry `name` of the test program (NULL: reported).
static struct kir_schedule *lower_entry(const struct itr_program *p, const char *name, const struct itr_graph **g) {
    *g = tu_find_entry(p, name);
    CHECK_MSG(*g != NULL, "no entry '%s'", name);
    if (!*g) return NULL;
    struct itr_diags d;
    itr_diags_init(&d);
    struct kir_schedule *s = itr_lower_graph(*g, false, &d);
    if (!s) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    CHECK(s != NULL);
    return s;
}

static int kernel_steps(const struct kir_schedule *s) {
    int n = 0;
    for (int i = 0; i < s->n_steps; i++) n += s->steps[i].kind == KIR_STEP_KERNEL;
    return n;
}

TEST(each_row_pattern_is_one_kernel) {
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    for (size_t c = 0; c < sizeof EXPECT / sizeof EXPECT[0]; c++) {
        const struct itr_graph *g = tu_find_entry(p, EXPECT[c].entry);
        CHECK(g != NULL);
        if (!g) continue;
        for (int f64 = 0; f64 < 2; f64++) {
            struct itr_diags d;
            itr_diags_init(&d);
            struct kir_schedule *s = itr_lower_graph(g, f64, &d);
            CHECK(s != NULL);
            if (s) {
                if (kernel_steps(s) != EXPECT[c].kernels) {
                    kir_schedule_print(s, g, stderr);
                    FAIL_AT("entry '%s' (%s): %d kernel steps, expected %d", g->name, f64 ? "f64" : "f32",
                            kernel_steps(s), EXPECT[c].kernels);
                }
                for (int k = 0; k < s->n_kernels; k++) {
                    char why[256];
                    CHECK_MSG(kir_verify(s->kernels[k], why, sizeof why), "%s: %s", s->kernels[k]->name, why);
                }
            }
            kir_schedule_free(s);
            itr_diags_free(&d);
        }
    }
    itr_program_free(p);
}

// Runs entry g at N = 3, M = 2 and row length len on both backends.
static void agree_at(const struct itr_program *p, const struct itr_graph *g, int64_t len, bool f64) {
    int64_t syms[8] = { 0 };
    for (int i = 0; i < p->n_symbols && i < 8; i++) {
        const char *nm = p->symbols[i].name;
        syms[i] = strcmp(nm, "L") == 0 ? len : strcmp(nm, "M") == 0 ? 2 : 3;
    }
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) { b.bound[i] = true; b.value[i] = syms[i]; }
    struct itr_tensor *in[8] = { 0 };
    CHECK(g->n_inputs <= 8 && g->n_outputs <= 8);
    for (int i = 0; i < g->n_inputs && i < 8; i++) in[i] = tu_random_tensor(p, &g->values[g->inputs[i]].type, &b, 40 + (uint64_t)i, false);
    struct itr_diags rd, ld;
    itr_diags_init(&rd);
    itr_diags_init(&ld);
    struct itr_tensor *ro[8] = { 0 }, *lo[8] = { 0 };
    struct itr_ref_options opt = { .f64 = f64 };
    bool ref_ok = itr_ref_run(g, in, NULL, &b, &opt, ro, &rd);
    struct kir_schedule *s = itr_lower_graph(g, f64, &ld);
    struct itr_llvm_exe *e = s ? itr_llvm_exe_new(g, s, 2, &ld) : NULL;
    CHECK(e != NULL);
    bool ok = e && itr_llvm_exe_run(e, in, NULL, &b, lo, &ld);
    if (ok != ref_ok) {
        itr_diags_print(&rd, stderr);
        itr_diags_print(&ld, stderr);
        FAIL_AT("entry '%s' L=%lld (%s): the reference %s, LLVM %s", g->name, (long long)len, f64 ? "f64" : "f32",
                ref_ok ? "ran" : "failed", ok ? "ran" : "failed");
    } else if (!ok) {
        char *a = itr_diags_summary(&rd), *c = itr_diags_summary(&ld);
        CHECK_MSG(a && c && strcmp(a, c) == 0, "entry '%s' L=%lld: errors differ:\n  ref:  %s\n  llvm: %s", g->name,
                  (long long)len, a ? a : "", c ? c : "");
        free(a);
        free(c);
    } else {
        for (int k = 0; k < g->n_outputs; k++) {
            char why[256];
            CHECK_MSG(agree_tensors(ro[k], lo[k], f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_OP, why, sizeof why),
                      "entry '%s' output %d L=%lld (%s): %s", g->name, k, (long long)len, f64 ? "f64" : "f32", why);
        }
    }
    for (int k = 0; k < 8; k++) {
        itr_tensor_free(ro[k]);
        itr_tensor_free(lo[k]);
        itr_tensor_free(in[k]);
    }
    itr_llvm_exe_free(e);
    kir_schedule_free(s);
    itr_diags_free(&rd);
    itr_diags_free(&ld);
    itr_bindings_free(&b);
}

TEST(row_kernels_agree_with_the_reference) {
    if (!itr_llvm_available()) {
        fprintf(stderr, "note: no LLVM; the runs are skipped\n");
        return;
    }
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    static const int64_t lens[] = { 1, 7, 8, 9, 20 };
    for (size_t c = 0; c < sizeof EXPECT / sizeof EXPECT[0]; c++) {
        const struct itr_graph *g = tu_find_entry(p, EXPECT[c].entry);
        if (!g) continue;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            // square ones: N is their row length
            if ((strcmp(g->name, "cross") == 0 || strcmp(g->name, "transposed") == 0) && li > 0) break;
            agree_at(p, g, lens[li], false);
            agree_at(p, g, lens[li], true);
        }
    }
    itr_program_free(p);
}

// The concatenation's symbolic operand empty at run time: never selected,
// and its loads stay in bounds.
TEST(a_concat_with_an_empty_operand_agrees) {
    if (!itr_llvm_available()) return;
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g = tu_find_entry(p, "cat");
    CHECK(g != NULL);
    if (g) {
        agree_at(p, g, 0, false);
        agree_at(p, g, 0, true);
    }
    itr_program_free(p);
}

// A fused max over a row that is empty at run time: the step runs the max
// as its node, whose error is the reference's, in both precisions.
TEST(a_max_over_an_empty_row_reports_the_reference_error) {
    if (!itr_llvm_available()) return;
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    const char *entries[] = { "soft", "lse", "msoft" };
    for (int i = 0; i < 3; i++) {
        const struct itr_graph *g;
        struct kir_schedule *s = lower_entry(p, entries[i], &g);
        if (!g) continue;
        bool guarded = false;
        for (int k = 0; s && k < s->n_steps; k++)
            guarded |= s->steps[k].guard_count >= 0 && s->steps[k].guard_node >= 0 &&
                       g->nodes[s->steps[k].guard_node].op == ITR_OP_MAX;
        CHECK_MSG(guarded, "entry '%s': no step guards its fused max", g->name);
        kir_schedule_free(s);
        agree_at(p, g, 0, false);
        agree_at(p, g, 0, true);
    }
    itr_program_free(p);
}

// Runs schedule s of entry g on the LLVM backend at N = 3, M = 2, L = len
// (inputs as agree_at makes them) into out.
static bool run_schedule(const struct itr_program *p, const struct itr_graph *g, const struct kir_schedule *s,
                         int64_t len, struct itr_tensor **out) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        b.bound[i] = true;
        b.value[i] = strcmp(p->symbols[i].name, "L") == 0 ? len : strcmp(p->symbols[i].name, "M") == 0 ? 2 : 3;
    }
    struct itr_tensor *in[8] = { 0 };
    for (int i = 0; i < g->n_inputs && i < 8; i++) in[i] = tu_random_tensor(p, &g->values[g->inputs[i]].type, &b, 40 + (uint64_t)i, false);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_exe *e = itr_llvm_exe_new(g, s, 2, &d);
    bool ok = e && itr_llvm_exe_run(e, in, NULL, &b, out, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_llvm_exe_free(e);
    for (int i = 0; i < 8; i++) itr_tensor_free(in[i]);
    itr_diags_free(&d);
    itr_bindings_free(&b);
    return ok;
}

// g's schedule lowered with the A/B switch `flag` (an environment
// variable the lowering reads) set.
static struct kir_schedule *lower_with_flag(const struct itr_graph *g, bool f64, const char *flag, struct itr_diags *d) {
    setenv(flag, "1", 1);
    struct kir_schedule *s = itr_lower_graph(g, f64, d);
    unsetenv(flag);
    return s;
}

// A column row kernel accumulates each reduction exactly as the column
// reduction kernel it replaces: the outputs are the same bits as with row
// kernels off (ITRC_NO_ROW_KERNELS=1), in both precisions, over two column
// chunks of which the last is partial. Where a chunk's block may not fit in
// L1 the reductions keep their own kernels.
TEST(column_rows_change_no_bits) {
    if (!itr_llvm_available()) return;
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    const char *entries[] = { "softr", "softsum", "attn", "colpick", "twomeans" };
    for (int i = 0; i < 5; i++) {
        const struct itr_graph *g = tu_find_entry(p, entries[i]);
        CHECK(g != NULL);
        if (!g) continue;
        for (int f64 = 0; f64 < 2; f64++) {
            struct itr_diags d;
            itr_diags_init(&d);
            struct kir_schedule *fused = itr_lower_graph(g, f64, &d);
            struct kir_schedule *apart = lower_with_flag(g, f64, "ITRC_NO_ROW_KERNELS", &d);
            CHECK(fused && apart);
            CHECK_MSG(!fused || !apart || kernel_steps(fused) < kernel_steps(apart),
                      "entry '%s': %d kernels fused, %d apart", g->name, fused ? kernel_steps(fused) : -1,
                      apart ? kernel_steps(apart) : -1);
            struct itr_tensor *a[8] = { 0 }, *b[8] = { 0 };
            if (fused && apart && run_schedule(p, g, fused, 20, a) && run_schedule(p, g, apart, 20, b)) {
                for (int k = 0; k < g->n_outputs; k++)
                    CHECK_MSG(a[k] && b[k] && itr_tensor_nbytes(a[k]) == itr_tensor_nbytes(b[k]) &&
                                  memcmp(a[k]->data, b[k]->data, itr_tensor_nbytes(a[k])) == 0,
                              "entry '%s' output %d (%s): fused and unfused differ in the bits", g->name, k,
                              f64 ? "f64" : "f32");
            } else {
                FAIL_AT("entry '%s' (%s) did not run", g->name, f64 ? "f64" : "f32");
            }
            for (int k = 0; k < 8; k++) {
                itr_tensor_free(a[k]);
                itr_tensor_free(b[k]);
            }
            kir_schedule_free(fused);
            kir_schedule_free(apart);
            itr_diags_free(&d);
        }
    }
    // where a chunk's block may not fit in L1 there are no column rows:
    // the same kernels as with them off
    const char *apart_entries[] = { "softm", "bigblock", "bnorm", "bnwide" };
    for (int i = 0; i < 4; i++) {
        const struct itr_graph *g = tu_find_entry(p, apart_entries[i]);
        CHECK(g != NULL);
        if (!g) continue;
        struct itr_diags d;
        itr_diags_init(&d);
        struct kir_schedule *on = itr_lower_graph(g, false, &d);
        struct kir_schedule *off = lower_with_flag(g, false, "ITRC_NO_COLUMN_ROWS", &d);
        CHECK_MSG(on && off && kernel_steps(on) == kernel_steps(off) && kernel_steps(on) > 1,
                  "entry '%s': %d kernels, %d without column rows; expected the same, more than one", g->name,
                  on ? kernel_steps(on) : -1, off ? kernel_steps(off) : -1);
        kir_schedule_free(on);
        kir_schedule_free(off);
        itr_diags_free(&d);
    }
    itr_program_free(p);
}

// The Adam-like update stores its three results and not the clipped
// gradient that only its siblings read.
TEST(a_value_only_siblings_read_is_not_stored) {
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g;
    struct kir_schedule *s = lower_entry(p, "adam", &g);
    CHECK(s == NULL || s->n_kernels == 1);
    if (s && s->n_kernels == 1) {
        int written = 0;
        for (int b = 0; b < s->kernels[0]->n_bufs; b++) written += s->kernels[0]->bufs[b].written;
        CHECK_MSG(written == 3, "the sibling kernel writes %d buffers, expected 3 (p2, m2, v2)", written);
        int stored = 0;
        for (int v = 0; v < g->n_values; v++) stored += g->values[v].kind == ITR_VALUE_NODE && s->materialised[v];
        CHECK_MSG(stored == 3, "%d node values materialised, expected 3", stored);
    }
    kir_schedule_free(s);
    itr_program_free(p);
}

// The pair-scoring product reads both operands through their unsqueezes:
// one GEMM step, no copy kernels, both operands views.
TEST(gemm_operands_are_read_through_shape_changes) {
    struct itr_program *p = compile_rows();
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g;
    struct kir_schedule *s = lower_entry(p, "pairs", &g);
    CHECK(s == NULL || (s->n_steps == 1 && s->steps[0].kind == KIR_STEP_GEMM));
    if (s && s->n_steps == 1) {
        const struct kir_step *st = &s->steps[0];
        CHECK(st->gemm_a == g->inputs[0] && st->gemm_b == g->inputs[1]);
        CHECK(st->gemm_view_a >= 0 && g->values[st->gemm_view_a].type.rank == 4);
        CHECK(st->gemm_view_b >= 0 && st->trans_b);
    }
    kir_schedule_free(s);
    itr_program_free(p);
}

// The accumulator of the one kernel of entry `name`: its lanes, and the
// parallel loop's trip count at the test's bindings (-1: none).
static void column_kernel(const struct itr_program *p, const char *name, int *lanes, int64_t *chunks) {
    const struct itr_graph *g;
    struct kir_schedule *s = lower_entry(p, name, &g);
    *lanes = -1;
    *chunks = -1;
    CHECK_MSG(s == NULL || (s->n_kernels == 1 && kernel_steps(s) == 1), "entry '%s': not one kernel", name);
    if (s && s->n_kernels == 1) {
        const struct kir_kernel *k = s->kernels[0];
        for (int v = 0; v < k->n_vars; v++)
            if (k->vars[v].kind == KIR_VAR_ACC) *lanes = k->vars[v].lanes;
        int64_t c;
        if (k->parallel_dim >= 0 && itr_dim_is_const(p, k->parallel_dim, &c)) *chunks = c;
    }
    kir_schedule_free(s);
}

TEST(column_reductions_stream_chunks_of_columns) {
    struct itr_program *p = compile_src(SRC_COLS);
    CHECK(p != NULL);
    if (!p) return;
    int lanes;
    int64_t chunks;
    // no kept outer axis: 1030 columns in 8 chunks of 136 (whole vectors), the chunks in parallel
    column_kernel(p, "wide", &lanes, &chunks);
    CHECK_MSG(lanes == 136 && chunks == 8, "wide: %d lanes, %lld chunks; expected 136 and 8", lanes, (long long)chunks);
    // a kept outer axis runs in parallel: the chunk is the whole row (1030
    // columns in whole vectors), up to 2048
    column_kernel(p, "wide3", &lanes, &chunks);
    CHECK_MSG(lanes == 1032, "wide3: %d lanes, expected 1032", lanes);
    // symbolic columns without an outer axis: 64-column chunks
    column_kernel(p, "batch", &lanes, &chunks);
    CHECK_MSG(lanes == 64, "batch: %d lanes, expected 64", lanes);
    // symbolic columns under a kept outer axis: 16-column chunks
    column_kernel(p, "colsum", &lanes, &chunks);
    CHECK_MSG(lanes == 16, "colsum: %d lanes, expected 16", lanes);
    if (itr_llvm_available()) {
        static const int64_t lens[] = { 1, 7, 8, 9, 20, 63, 64, 65, 513, 700 };
        const char *entries[] = { "colsum", "colmax", "batch", "wide", "wide3" };
        for (int e = 0; e < 5; e++) {
            const struct itr_graph *g = tu_find_entry(p, entries[e]);
            CHECK(g != NULL);
            for (size_t li = 0; g && li < sizeof lens / sizeof lens[0]; li++) {
                if (e >= 3 && li > 0) break;   // fixed width
                agree_at(p, g, lens[li], false);
                agree_at(p, g, lens[li], true);
            }
        }
    }
    itr_program_free(p);
}

// Mid-sized products are split over the executor's threads (a block of
// C's columns or rows each, llvm_exec.c gemm_run) and small kernels run on
// the calling thread: with 1, 2 and 3 threads the results agree with the
// reference, and a second run with the same count gives the same bits. The
// sizes straddle the split (2 M to 32 M multiply-adds) and the 32 K-element
// kernel threshold; both split directions, and transposed operands, are
// covered.
static const char *SRC_THREADS =
    "model thr() {\n"
    "  entry wide(a: f32[96, 200], b: f32[200, 170]) -> (y) { return exp(matmul(a, b) * 0.01) }\n"
    "  entry tall(a: f32[300, 120], b: f32[90, 120]) -> (y) { return matmul(a, transpose(b)) }\n"
    "  entry tr(a: f32[150, 130], b: f32[150, 140]) -> (y) { return matmul(transpose(a), b) + 1.0 }\n"
    // Pair scoring's folded product: one (6*36) x (20*12) GEMM whose result
    // is scattered into [6, 20, 36, 12] on the pool's threads.
    "  entry pairs(v: f32[6, 36, 120], u: f32[20, 12, 120]) -> (y) {\n"
    "    return matmul(unsqueeze(v, axes=[1]), transpose(unsqueeze(u, axes=[0]), perm=[0, 1, 3, 2]))\n"
    "  }\n"
    // Batches of products too small to split, spread whole over the
    // threads: per-image Gram matrices (both operands vary), and weights
    // times one matrix per image folded over the captions (the A operand
    // packed transposed, per thread).
    "  entry grams(v: f32[64, 36, 120], w: f32[64, 36, 120]) -> (y) {\n"
    "    return matmul(v, transpose(w, perm=[0, 2, 1]))\n"
    "  }\n"
    // A tensor times its own transpose: Gram matrices by their own kernel.
    "  entry selfgram(v: f32[64, 36, 120], w: f32[1]) -> (y) {\n"
    "    return matmul(v, transpose(v, perm=[0, 2, 1])) + w\n"
    "  }\n"
    "  entry foldsmall(a: f32[8, 20, 36, 12], g: f32[8, 36, 36]) -> (y) {\n"
    "    return matmul(transpose(a, perm=[0, 1, 3, 2]), unsqueeze(g, axes=[1]))\n"
    "  }\n"
    "}\n";

TEST(split_products_agree_at_every_thread_count) {
    struct itr_program *p = compile_src(SRC_THREADS);
    CHECK(p != NULL);
    if (!p) return;
    const char *entries[] = { "wide", "tall", "tr", "pairs", "grams", "selfgram", "foldsmall" };
    for (int ei = 0; ei < 7; ei++) {
        // Whole products per thread: the bits of one thread at any count.
        bool whole = ei >= 4;
        struct itr_tensor *first = NULL;
        const struct itr_graph *g;
        struct kir_schedule *s = lower_entry(p, entries[ei], &g);
        CHECK(s != NULL);
        if (!s) continue;
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        struct itr_tensor *in[2] = { 0 };
        for (int i = 0; i < 2; i++) in[i] = tu_random_tensor(p, &g->values[g->inputs[i]].type, &b, 70 + (uint64_t)i, false);
        struct itr_tensor *ref[1] = { 0 };
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_ref_options opt = { .f64 = false };
        CHECK(itr_ref_run(g, in, NULL, &b, &opt, ref, &d));
        for (int threads = 1; threads <= 3; threads++) {
            struct itr_llvm_exe *e = itr_llvm_exe_new(g, s, threads, &d);
            struct itr_tensor *out[1] = { 0 }, *again[1] = { 0 };
            CHECK(e && itr_llvm_exe_run(e, in, NULL, &b, out, &d) && itr_llvm_exe_run(e, in, NULL, &b, again, &d));
            if (out[0] && ref[0]) {
                // the product's scale: sums of 120-200 products of values in [-1, 1]
                double worst = 0;
                for (int64_t i = 0; i < itr_tensor_numel(out[0]); i++) {
                    double r = fabs(itr_tensor_get(out[0], i) - itr_tensor_get(ref[0], i)) / (1.0 + fabs(itr_tensor_get(ref[0], i)));
                    if (r > worst) worst = r;
                }
                CHECK_MSG(worst < 1e-4, "entry '%s', %d threads: %g off the reference", entries[ei], threads, worst);
            }
            CHECK_MSG(out[0] && again[0] && memcmp(out[0]->data, again[0]->data, itr_tensor_nbytes(out[0])) == 0,
                      "entry '%s', %d threads: two runs differ in the bits", entries[ei], threads);
            if (whole && threads == 1) {
                first = out[0];
                out[0] = NULL;
            } else if (whole) {
                CHECK_MSG(first && out[0] && memcmp(first->data, out[0]->data, itr_tensor_nbytes(first)) == 0,
                          "entry '%s': %d threads give other bits than 1", entries[ei], threads);
            }
            itr_tensor_free(out[0]);
            itr_tensor_free(again[0]);
            if (e) itr_llvm_exe_free(e);
        }
        itr_tensor_free(first);
        itr_tensor_free(ref[0]);
        for (int i = 0; i < 2; i++) itr_tensor_free(in[i]);
        itr_bindings_free(&b);
        itr_diags_free(&d);
        kir_schedule_free(s);
    }
    itr_program_free(p);
}

// Independent kernels of different shapes and work, two of them serial
// reductions: launched at once on two or more threads (multi-tensor
// launches), with the same bits as one launch per step and as one thread.
static const char *SRC_GROUPS =
    "model grp() {\n"
    "  entry many(a: f32[300, 200], b: f32[70], c: f32[50, 900], d: f32[4000]) -> (w, x, y, z, sa, sc) {\n"
    "    return exp(a * 0.01), b * 2.0 + 1.0, tanh(c), d * d, sum(a * a), sum(c)\n  }\n"
    "}\n";

TEST(independent_kernels_launched_at_once_change_no_bits) {
    struct itr_program *p = compile_src(SRC_GROUPS);
    CHECK(p != NULL);
    if (!p) return;
    const struct itr_graph *g;
    struct kir_schedule *s = lower_entry(p, "many", &g);
    if (!s) {
        itr_program_free(p);
        return;
    }
    enum { NIN = 4, NOUT = 6 };
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_tensor *in[NIN] = { 0 }, *ref[NOUT] = { 0 }, *base[NOUT] = { 0 };
    for (int i = 0; i < NIN; i++) in[i] = tu_random_tensor(p, &g->values[g->inputs[i]].type, &b, 90 + (uint64_t)i, false);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ref_options opt = { .f64 = false };
    CHECK(itr_ref_run(g, in, NULL, &b, &opt, ref, &d));
    for (int threads = 1; threads <= 3; threads++)
        for (int grouped = 0; grouped < 2; grouped++) {
            if (!grouped) setenv("ITRC_NO_LAUNCH_GROUPS", "1", 1);
            struct itr_llvm_exe *e = itr_llvm_exe_new(g, s, threads, &d);
            unsetenv("ITRC_NO_LAUNCH_GROUPS");
            struct itr_tensor *out[NOUT] = { 0 };
            CHECK(e && itr_llvm_exe_run(e, in, NULL, &b, out, &d));
            int64_t launches = itr_llvm_exe_multi_launches(e);
            CHECK_MSG(grouped && threads > 1 ? launches > 0 : launches == 0,
                      "%d threads, groups %s: %lld multi-tensor launches", threads, grouped ? "on" : "off",
                      (long long)launches);
            for (int k = 0; k < NOUT; k++) {
                if (!out[k] || !ref[k]) continue;
                char why[256];
                CHECK_MSG(agree_tensors(ref[k], out[k], 1e-5, why, sizeof why), "output %d, %d threads: %s", k,
                          threads, why);
                if (!base[k]) {
                    base[k] = out[k];
                    continue;
                }
                CHECK_MSG(memcmp(base[k]->data, out[k]->data, itr_tensor_nbytes(out[k])) == 0,
                          "output %d, %d threads, groups %s: other bits than one launch per step on one thread", k,
                          threads, grouped ? "on" : "off");
                itr_tensor_free(out[k]);
            }
            if (e) itr_llvm_exe_free(e);
        }
    itr_diags_print(&d, stderr);
    for (int k = 0; k < NOUT; k++) {
        itr_tensor_free(ref[k]);
        itr_tensor_free(base[k]);
    }
    for (int i = 0; i < NIN; i++) itr_tensor_free(in[i]);
    itr_bindings_free(&b);
    itr_diags_free(&d);
    kir_schedule_free(s);
    itr_program_free(p);
}

int main(void) {
    RUN(gemm_operands_are_read_through_shape_changes);
    RUN(each_row_pattern_is_one_kernel);
    RUN(a_value_only_siblings_read_is_not_stored);
    RUN(row_kernels_agree_with_the_reference);
    RUN(a_max_over_an_empty_row_reports_the_reference_error);
    RUN(a_concat_with_an_empty_operand_agrees);
    RUN(column_rows_change_no_bits);
    RUN(column_reductions_stream_chunks_of_columns);
    RUN(split_products_agree_at_every_thread_count);
    RUN(independent_kernels_launched_at_once_change_no_bits);
    return test_summary();
}
