// The run hook of the gradient-check harness (tests/gradcheck.h) for the
// LLVM backend: every run — the gradient graph and each finite-difference
// probe of the forward graph — is lowered (compiler/lower.c) and
// JIT-compiled instead of interpreted. Include before the harness.
#ifndef ITR_TEST_GRADCHECK_LLVM_H
#define ITR_TEST_GRADCHECK_LLVM_H

#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"
#include "compiler/lower.h"
#include "ir/ir.h"

static bool llvm_run(const struct itr_graph *g, struct itr_tensor **in, struct itr_tensor **params,
                     struct itr_dim_bindings *dims, bool f64, struct itr_tensor **out, struct itr_diags *d) {
    struct kir_schedule *s = itr_lower_graph(g, f64, d);
    if (!s) return false;
    struct itr_llvm_exe *e = itr_llvm_exe_new(g, s, 1, d);
    bool ok = e && itr_llvm_exe_run(e, in, params, dims, out, d);
    itr_llvm_exe_free(e);
    kir_schedule_free(s);
    return ok;
}

#define GRADCHECK_RUN llvm_run

// The main of an LLVM variant, which includes a gradient-check test with its
// main renamed to `inner` (#define main inner ... #undef main): runs it
// where this build has LLVM, else reports the skip.
#define GRADCHECK_LLVM_MAIN(inner)                                                         \
    int main(void) {                                                                       \
        if (!itr_llvm_available()) {                                                       \
            printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n"); \
            return test_summary();                                                         \
        }                                                                                  \
        return inner();                                                                    \
    }

#endif
