// The f64 finite-difference gradient checks of the aggregation and
// similarity catalogue (tests/test_gradcheck_catalogue_a.c) on the LLVM
// backend: every run — the gradient graph and each probe of the forward
// graph — is lowered (compiler/lower.c) and JIT-compiled, so the fused
// kernels of the new modules (the acos op, the nested Sinkhorn scans of
// DistWD and DistGWD, top-k, the graph heads) and of their gradients are
// checked against central differences.
#include "gradcheck_llvm.h"
#define MAX_PROBES 16
#define main gradcheck_catalogue_a_main
#include "test_gradcheck_catalogue_a.c"
#undef main

GRADCHECK_LLVM_MAIN(gradcheck_catalogue_a_main)
