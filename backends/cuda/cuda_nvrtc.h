// NVRTC: CUDA C (backends/cuda/cuda_render.h) -> cubin and PTX, on any
// machine with the CUDA toolkit; no GPU or driver is needed (anchors-style
// §5.2). The library always builds: without the toolkit at configure time
// (ITR_HAVE_NVRTC undefined) itr_nvrtc_available() is false and compiling
// reports that, so callers and tests need no #ifdefs.
//
// Options: --fmad=false (no contraction of a*b+c into an FMA, so results
// round as on the CPU, and a difference that is exactly zero there stays
// zero), no fast-math (IEEE division, square root and denormals), and
// --minimal (no implicit CUDA headers: the rendered source needs none, and
// it compiles in about half the time).
#ifndef ITR_CUDA_NVRTC_H
#define ITR_CUDA_NVRTC_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/diag.h"

// The architectures a plan carries cubins for (backends.md §6).
#define ITR_CUDA_ARCHS { "sm_80", "sm_90" }

bool itr_nvrtc_available(void);
// NVRTC's version (0.0 when not built in).
void itr_nvrtc_version(int *major, int *minor);

struct itr_nvrtc_output {
    void *cubin; size_t cubin_size;   // an ELF image for a real arch (sm_XX); NULL for compute_XX
    char *ptx; size_t ptx_size;       // NUL-terminated PTX (size counts the NUL)
    char *log;                        // NVRTC's log, NULL when empty (warnings on success)
};

void itr_nvrtc_output_free(struct itr_nvrtc_output *o);

// Where each kernel of a unit starts, to name the kernel of a compile error
// (itr_cuda_render_unit's first_line, ascending).
struct itr_nvrtc_kernels {
    const char *const *names;
    const int *first_line;
    int n;
};

// Compiles the CUDA C unit src, named unit in messages ("vsepp.ir: train
// (f32)"), for arch: "sm_80" (cubin and PTX) or "compute_80" (PTX only).
// On failure: false, out zeroed, and an error in d that names the unit, the
// kernel(s) whose lines the log points at (when ks is given) and the arch,
// followed by NVRTC's whole log.
bool itr_nvrtc_compile(const char *src, const char *unit, const char *arch, const struct itr_nvrtc_kernels *ks,
                       struct itr_nvrtc_output *out, struct itr_diags *d);

// True when image is an ELF file (what a cubin is).
bool itr_cubin_is_elf(const void *image, size_t size);

#endif
