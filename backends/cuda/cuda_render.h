// Kernel IR (ir/kir.h) -> CUDA C for NVRTC: the second renderer of the same
// kernels the LLVM backend runs (backends.md §3, docs/kernels.md "The CUDA
// renderer"). Pure C: it needs no CUDA toolkit to build or to run.
//
// A rendered kernel is
//   extern "C" __global__ void SYMBOL(T0 *b0, const T1 *b1, ..., long long d0, ...,
//                                     long long itr_lo, long long itr_hi)
// with the buffers and dims of the kernel IR in order (a bool buffer is
// unsigned char, one byte per element, as on the CPU) and [itr_lo, itr_hi)
// the range of the kernel's parallel loop that this launch covers. The
// source needs no #include; a translation unit is the prelude
// (itr_cuda_prelude: the scalar helpers) followed by any number of kernels.
//
// The mapping to the grid: one thread per iteration of the parallel loop.
// Thread t of the launch runs the kernel body with begin = itr_lo + t and
// end = begin + 1, so the kernel's parallel `for` runs exactly one
// iteration in it; threads past itr_hi return. As on the CPU, where the
// launcher calls a kernel once even for an empty range (a kernel may do
// work outside its parallel loop, e.g. a reduction's tail columns guarded
// by `end >= blocks`), thread 0 of an empty launch runs the body with
// begin = end = itr_lo. A kernel without a parallel loop is launched with
// [0, 1): one thread. Accumulators (with their lanes) are per-thread locals;
// lanes are combined lane 0 first, so each output element sees its inputs
// in the same order as on the CPU.
#ifndef ITR_CUDA_RENDER_H
#define ITR_CUDA_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/kir.h"

// Threads per block of every launch; the launcher's grid is
// ceil(max(1, hi - lo) / ITR_CUDA_BLOCK) blocks.
#define ITR_CUDA_BLOCK 256

// The helper functions every translation unit starts with (a static string).
const char *itr_cuda_prelude(void);

// The CUDA C of kernel k as a __global__ function named symbol (a C
// identifier), without the prelude. Returns a malloc'd string (caller frees),
// or NULL with the reason in why[0..n) when k fails kir_verify or uses an
// operation the renderer cannot express (the same set the LLVM renderer
// rejects).
char *itr_cuda_render_kernel(const struct kir_kernel *k, const char *symbol, char *why, size_t n);

// One translation unit: the prelude and kernels ks[0..n) named symbols[i].
// first_line[i] (when not NULL) receives the 1-based line of the unit on
// which kernel i starts, so that a compiler's line numbers name a kernel.
// NULL with why as above; the reason names the kernel (ks[i]->name).
char *itr_cuda_render_unit(const struct kir_kernel *const *ks, const char *const *symbols, int n, int *first_line,
                           char *why, size_t wn);

// The launch of a kernel over a parallel range of hi iterations: grid and
// block x-dimensions. False when the grid would exceed the device limit.
bool itr_cuda_launch_dims(int64_t hi, uint32_t *grid, uint32_t *block);

#endif
