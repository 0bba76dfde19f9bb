// CUDA code carried by plans (`itrc compile --target cuda`, docs/backends.md
// "CUDA"): each schedule's kernels rendered as one CUDA C unit, compiled
// ahead of time by NVRTC to a cubin per architecture of ITR_CUDA_ARCHS and
// to PTX, stored in the plan (ir/devcode.h); and the choice of which of
// them a device loads. The backend renders a unit the same way
// (itr_cuda_unit_render) when a plan has no image its device can load.
#ifndef ITR_CUDA_PLAN_H
#define ITR_CUDA_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/devcode.h"
#include "ir/diag.h"

struct itr_program;
struct kir_schedule;
struct kir_plan_kernels;

// A schedule's kernels as one unit, under the kernels' own names (the
// symbols the backend looks up), and the line each kernel starts on.
struct itr_cuda_unit {
    char *src;
    const char **names;   // the schedule's kernel names (not copied)
    int *first_line;
    int n;
};

bool itr_cuda_unit_render(const struct kir_schedule *s, struct itr_cuda_unit *u, char *why, size_t n);
void itr_cuda_unit_free(struct itr_cuda_unit *u);

// Which of a schedule's images (their archs, ir/devcode.h) a device of
// compute capability major.minor loads: the cubin of its own architecture;
// else a cubin of the same major and a lower minor (cubins run on later
// minors of their major); else the PTX of the highest compute_XY not above
// the device, which the driver JIT-compiles; else -1 (compile with NVRTC).
// Malformed arch names are never picked.
int itr_cuda_pick_image(int cc_major, int cc_minor, const char *const *archs, int n);

struct itr_cuda_compile_stats {
    int schedules;      // schedules with kernels
    int units;          // distinct units compiled (identical units once)
    int kernels;        // kernels over those schedules
    int threads;
    size_t cubin_bytes, ptx_bytes;
};

// Compiles every top-level schedule of k (the program p's, for names in
// messages) for each arch of ITR_CUDA_ARCHS, on up to `threads` threads (0:
// the machine's cores, at most 8), and adds the images to out: one cubin per
// arch and the PTX of the first (lowest) arch as "compute_XY". False with
// the errors in d (NVRTC missing, a unit that does not compile).
bool itr_cuda_compile_plan(const struct itr_program *p, const struct kir_plan_kernels *k, int threads,
                           struct itr_devcode *out, struct itr_cuda_compile_stats *st, struct itr_diags *d);

#endif
