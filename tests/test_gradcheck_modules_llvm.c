// The f64 finite-difference gradient checks of the module library
// (tests/test_gradcheck_modules.c) on the LLVM backend (backends.md §5):
// every run of the harness — the gradient graph and each probe of the
// forward graph — is lowered (compiler/lower.c) and JIT-compiled, so the
// fused kernels of whole modules (attention, GRU scans, SGRAF, GPO, the
// losses) and of their gradients are checked against central differences.
#include "gradcheck_llvm.h"
#define main gradcheck_modules_main
#include "test_gradcheck_modules.c"
#undef main

GRADCHECK_LLVM_MAIN(gradcheck_modules_main)
