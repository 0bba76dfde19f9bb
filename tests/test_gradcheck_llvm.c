// The f64 finite-difference gradient checks of tests/test_gradcheck.c on the
// LLVM backend (backends.md §5): every run of the harness — the gradient
// graph and each finite-difference probe of the forward graph — is lowered
// (compiler/lower.c) and JIT-compiled instead of interpreted, so the fused
// kernels of every differentiable op and of its gradient rule are checked
// against central differences in f64.
#include "gradcheck_llvm.h"
#define main gradcheck_main
#include "test_gradcheck.c"
#undef main

GRADCHECK_LLVM_MAIN(gradcheck_main)
