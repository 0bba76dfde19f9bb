// The LLVM backend's renderer and JIT (backends.md §3, §6): kernel IR
// (ir/kir.h) becomes one LLVM module per distinct kernel body, built with
// the LLVM 14 C API, optimised at O2 for the host CPU (loop and SLP
// vectorisation on) and run by ORC LLJIT.
//
// Every rendered kernel has kir.h's CPU calling convention, itr_kernel_fn.
//
// The library always builds. Without LLVM (ITR_HAVE_LLVM undefined) every
// entry point reports "built without LLVM" and itr_llvm_available() is
// false, so callers need no #ifdefs.
//
// Environment:
//   ITRC_DUMP_LLVM=1   print each module's optimised LLVM IR to stderr;
//   ITRC_DUMP_LLVM=2   also print it as rendered, before optimisation.
//                      (A dump compiles one module of every new body, with
//                      the kernels' own names; the cache is not used then.)
//   ITRC_NO_CACHE=1    do not read or write the on-disk object cache.
//   ITRC_LLVM_PASSES   the optimisation pipeline (default "default<O2>").
//   ITRC_JIT_THREADS   how many threads compile (default: the online CPUs,
//                      at most 16); the objects do not depend on it.
//   ITRC_JIT_TIMES=1   print each compile's CPU time per phase (render,
//                      optimise, codegen, load and link) to stderr.
//   XDG_CACHE_HOME     the cache lives in $XDG_CACHE_HOME/itrc (default
//                      ~/.cache/itrc); one object file per distinct kernel
//                      body, named by a hash of the body (names left out),
//                      the CPU name and features, the LLVM version, the
//                      renderer's version and ITRC_LLVM_PASSES.
#ifndef ITR_LLVM_JIT_H
#define ITR_LLVM_JIT_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "ir/kir.h"

typedef void (*itr_kernel_fn)(void *const *bufs, const int64_t *dims, int64_t begin, int64_t end);

struct itr_llvm_jit;

// Whether this build has the LLVM backend.
bool itr_llvm_available(void);

// One LLJIT for the host CPU. NULL (with an error in d) when LLVM is absent
// or the JIT cannot be created. Kernels stay valid until itr_llvm_jit_free.
struct itr_llvm_jit *itr_llvm_jit_new(struct itr_diags *d);
void itr_llvm_jit_free(struct itr_llvm_jit *j);

// Renders each distinct body of kernels[0..n) (kernels equal but for their
// names share one) into its own module, verifies, optimises and emits them
// on a pool of threads (or loads them from the cache), adds them to the JIT
// and stores each kernel's entry point in fns_out[i]; kernels with one body
// get the same entry point. A kernel that fails kir_verify or LLVM's
// verifier is an internal error naming the kernel, with the reason and the
// kernel's printed form; nothing is added then. A body already in the JIT
// (from any earlier compile) is reused, not compiled again.
bool itr_llvm_compile(struct itr_llvm_jit *j, struct kir_kernel *const *kernels, int n, itr_kernel_fn *fns_out,
                      struct itr_diags *d);

// The LLVM IR that itr_llvm_compile renders for kernels[0..n), before
// optimisation (for `itrc dump` and tests). Caller frees; NULL with an error
// in d on failure.
char *itr_llvm_render_ir(struct kir_kernel *const *kernels, int n, struct itr_diags *d);

// Where the last itr_llvm_compile got its code, for tests and timing:
// true when every body it had to add came from the on-disk cache.
bool itr_llvm_last_was_cache_hit(const struct itr_llvm_jit *j);

#endif
