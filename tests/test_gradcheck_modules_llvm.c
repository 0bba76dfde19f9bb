// The f64 finite-difference gradient checks of the module library
// (tests/test_gradcheck_modules.c) on the LLVM backend (backends.md §5):
// every run of the harness — the gradient graph and each probe of the
// forward graph — is lowered (compiler/lower.c) and JIT-compiled, so the
// fused kernels of whole modules (attention, GRU scans, SGRAF, GPO, the
// losses) and of their gradients are checked against central differences.
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
#define main gradcheck_modules_main
#include "test_gradcheck_modules.c"
#undef main

int main(void) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM (the LLVM backend is not compiled in)\n");
        return test_summary();
    }
    return gradcheck_modules_main();
}
