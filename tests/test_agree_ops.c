// Backend agreement for every op of the table (backends.md §5): each case of
// tests/test_ops.c (dtypes, broadcasting, empty and size-1 dims, f64 mode,
// error cases) runs on the LLVM backend too, through the same lowering the
// runtime uses, and must agree with the reference interpreter. An op the
// lowering supports that no case reached fails the run. A disagreement
// names the first value of the schedule that diverges (agree_locate).
#include "agree.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/lower.h"

static int agree_cases[ITR_OP_COUNT];   // cases compared per op (fused kernels only)
static int agree_failures;

static void agree_run(const struct itr_graph *g, struct itr_tensor *const *ins, bool f64, bool ref_ok,
                      struct itr_tensor *const *ref_out, struct itr_diags *ref_d);
#define OPS_AGREE agree_run
static void agree_finish(void);
#define OPS_AGREE_FINISH agree_finish

#include "test_ops.c"

static void agree_run(const struct itr_graph *g, struct itr_tensor *const *ins, bool f64, bool ref_ok,
                      struct itr_tensor *const *ref_out, struct itr_diags *ref_d) {
    if (!itr_llvm_available()) return;
    const struct itr_node *n = &g->nodes[0];
    struct itr_diags d;
    itr_diags_init(&d);
    struct kir_schedule *s = itr_lower_graph(g, f64, &d);
    bool fused = s && s->n_kernels > 0;
    struct itr_llvm_exe *e = s ? itr_llvm_exe_new(g, s, 2, &d) : NULL;
    if (!e) {
        char *msg = itr_diags_summary(&d);
        FAIL_AT("op '%s': the LLVM backend could not prepare the case: %s", itr_op_name(n->op), msg ? msg : "?");
        free(msg);
        itr_diags_free(&d);
        kir_schedule_free(s);
        agree_failures++;
        return;
    }
    struct itr_tensor *out[16] = { 0 };
    bool ok = itr_llvm_exe_run(e, ins, NULL, NULL, out, &d);
    if (ok != ref_ok) {
        char *a = itr_diags_summary(ref_d), *b = itr_diags_summary(&d);
        FAIL_AT("op '%s' (%s): the reference %s, the LLVM backend %s: %s | %s", itr_op_name(n->op), f64 ? "f64" : "f32",
                ref_ok ? "succeeded" : "failed", ok ? "succeeded" : "failed", a ? a : "", b ? b : "");
        free(a);
        free(b);
        agree_failures++;
    } else if (!ok) {
        // the same located message (NODE steps run the reference kernels)
        char *a = itr_diags_summary(ref_d), *b = itr_diags_summary(&d);
        if (!a || !b || strcmp(a, b) != 0) {
            FAIL_AT("op '%s': errors differ:\n  ref:  %s\n  llvm: %s", itr_op_name(n->op), a ? a : "", b ? b : "");
            agree_failures++;
        }
        free(a);
        free(b);
    } else {
        double tol = f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_OP;
        for (int i = 0; i < g->n_outputs; i++) {
            char why[256];
            if (!agree_tensors(ref_out[i], out[i], tol, why, sizeof why)) {
                // which value of the schedule diverges first (tests/agree.h)
                struct agree_divergence dv;
                agree_locate(g, g, s, ins, NULL, NULL, f64, tol, &dv);
                FAIL_AT("op '%s' (%s), output %d: %s\n  %s", itr_op_name(n->op), f64 ? "f64" : "f32", i, why, dv.msg);
                kir_schedule_print(itr_llvm_exe_schedule(e), g, stderr);
                agree_failures++;
            }
        }
        if (fused) agree_cases[n->op]++;
    }
    for (int i = 0; i < g->n_outputs; i++) itr_tensor_free(out[i]);
    itr_llvm_exe_free(e);
    kir_schedule_free(s);
    itr_diags_free(&d);
}

TEST(every_lowered_op_has_an_agreement_case) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n");
        return;
    }
    for (int op = 0; op < ITR_OP_COUNT; op++)
        if (itr_lower_op_supported((enum itr_op)op))
            CHECK_MSG(agree_cases[op] > 0, "op '%s' is lowered to kernels but no case of tests/test_ops.c ran it fused",
                      itr_op_name((enum itr_op)op));
}

static void agree_finish(void) {
    RUN(every_lowered_op_has_an_agreement_case);
    int total = 0;
    for (int op = 0; op < ITR_OP_COUNT; op++) total += agree_cases[op];
    printf("agreement: %d fused cases compared with the reference, %d disagreements\n", total, agree_failures);
}
