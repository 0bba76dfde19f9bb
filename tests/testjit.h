// The JIT that the kernel-level tests (test_llvm_kir, test_llvm_math,
// test_llvm_jit_dedup) share.
#ifndef ITR_TEST_TESTJIT_H
#define ITR_TEST_TESTJIT_H

#include <stdio.h>
#include <stdlib.h>

#include "backends/llvm/llvm_jit.h"
#include "test.h"

// A JIT (with the on-disk object cache unless ITRC_NO_CACHE is set); NULL
// (the reason printed) when it cannot start.
static inline struct itr_llvm_jit *tu_jit_new(void) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_jit *j = itr_llvm_jit_new(&d);
    if (!j) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return j;
}

// A JIT without the on-disk object cache, so that every test really
// compiles its kernels; NULL (the reason printed) when it cannot start.
static inline struct itr_llvm_jit *tu_uncached_jit(void) {
    setenv("ITRC_NO_CACHE", "1", 1);
    return tu_jit_new();
}

// The start of a JIT test's main: sets *jit to an uncached JIT and returns
// -1 to go on; otherwise the status main returns (built without LLVM: the
// tests are skipped; the JIT cannot start: one failure).
static inline int tu_jit_main_start(struct itr_llvm_jit **jit) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM\n");
        return test_summary();
    }
    *jit = tu_uncached_jit();
    if (!*jit) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    return -1;
}

// Compiles kernels into jit; on failure prints the diagnostics.
static inline bool tu_jit_compile(struct itr_llvm_jit *j, struct kir_kernel **ks, int n, itr_kernel_fn *fns) {
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_llvm_compile(j, ks, n, fns, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return ok;
}

#endif
