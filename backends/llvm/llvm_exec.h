// Running a graph's schedule (ir/kir.h) on the CPU: JIT-compiled kernels for
// the fused steps, the reference kernels for NODE steps. One executable per
// (graph, precision); it runs any number of times with any dim bindings.
//
// The run has the same contract as itr_ref_run (backends/ref/ref.h): the
// same inputs, parameters and bindings, outputs the caller frees, and the
// same user errors (shape mismatches and unbound dims name the tensor;
// errors inside NODE steps are the reference's own).
#ifndef ITR_LLVM_EXEC_H
#define ITR_LLVM_EXEC_H

#include "backends/backend.h"
#include "ir/bind.h"
#include "ir/ir.h"
#include "ir/kir.h"

struct itr_llvm_exe;

// Compiles every kernel of schedule s for graph g. s is borrowed: it must
// outlive the executable (a session keeps the plan's schedules). NULL with
// an error in d when LLVM is absent or compilation fails.
struct itr_llvm_exe *itr_llvm_exe_new(const struct itr_graph *g, const struct kir_schedule *s, int threads,
                                      struct itr_diags *d);
void itr_llvm_exe_free(struct itr_llvm_exe *e);
const struct kir_schedule *itr_llvm_exe_schedule(const struct itr_llvm_exe *e);

// Observes the runs of e (NULL fn: none, the default): after each step of
// its schedule, fn is called once for every graph value the step wrote, in
// step order: a kernel's written buffers, a GEMM's result, the results of a
// node run on the reference kernels (a guarded kernel run as its node
// included) or of a scan. t is the executor's buffer, borrowed for the call;
// in f64 runs f32 values are f64. Values computed inside a fused kernel
// without being stored are not seen, nor are scan bodies' steps. The
// backend-agreement harness (tests/agree.h) compares them with the reference
// interpreter's (backends/ref/ref.h itr_ref_run_observed).
// A packed scan of an observed executable computes every row of the results
// whose skipped rows it would otherwise leave unspecified.
typedef void (*itr_llvm_observer)(void *ctx, int32_t step, int32_t value, const struct itr_tensor *t);
void itr_llvm_exe_observe(struct itr_llvm_exe *e, itr_llvm_observer fn, void *ctx);

// The arena (docs/memplan.md, "Schedule plans"): every intermediate value
// the executor allocates itself lives at its offset in the schedule's memory
// plan, bound to the run's dims (again only when they change), in one block
// that grows when a binding needs more and is reused by every later run; the
// GEMM's pack buffers likewise. Scan bodies run in their workspace inside it.
// ITRC_NO_EXEC_ARENA=1 (read when the executable is made) allocates every
// value on its own instead, as before the arena, for A/B measurements.
struct itr_llvm_arena_stats {
    int64_t plan_bytes;      // the plan's arena under the last run's dims (0: none)
    int64_t capacity;        // bytes held for the arena
    int64_t grows;           // times the arena was allocated or grown
    int64_t runs;            // runs that used it
    int64_t scratch_bytes;   // GEMM pack buffers held
    int64_t scratch_grows;   // times a pack buffer was allocated or grown
};
void itr_llvm_exe_arena_stats(const struct itr_llvm_exe *e, struct itr_llvm_arena_stats *out);
// The schedule plan (NULL with ITRC_NO_EXEC_ARENA=1), bound to the last
// run's dims: for tests (itr_memplan_verify).
struct itr_memplan;
const struct itr_memplan *itr_llvm_exe_plan(const struct itr_llvm_exe *e);

// Packed scans (docs/kernels.md): the batch rows their bodies ran and the
// rows they skipped (masked), over every run so far, added to *run and
// *skipped. ITRC_NO_PACKED_SCANS=1 (read when the executable is made) runs
// every row instead, for A/B measurements.
void itr_llvm_exe_packed_rows(const struct itr_llvm_exe *e, int64_t *run, int64_t *skipped);
// Products over the mask's rows (docs/kernels.md): the rows (of K, or of A's
// M) of the products that could leave out rows a packed scan filled with 0,
// and how many they left out, over every run so far, added to *rows and
// *skipped. ITRC_NO_PACKED_PRODUCTS=1 (read when the executable is made)
// runs every row instead, for A/B measurements.
void itr_llvm_exe_product_rows(const struct itr_llvm_exe *e, int64_t *rows, int64_t *skipped);

// Multi-tensor launches (docs/kernels.md): how many runs of independent
// kernel steps were launched at once on the pool, over every run so far.
// ITRC_NO_LAUNCH_GROUPS=1 (read when the executable is made) launches every
// step alone, for A/B measurements.
int64_t itr_llvm_exe_multi_launches(const struct itr_llvm_exe *e);

// Prepacked products (docs/kernels.md): how many f32 products read their
// right operand from a packed copy (a scan's fixed input, packed once per
// scan run, or a numbered weight), in e and its scan bodies, over every run
// so far. 0 where the CPU lacks
// AVX-512 or with ITRC_NO_PREPACKED_GEMM=1 (read when the executable is
// made), for A/B measurements.
int64_t itr_llvm_exe_prepacked_products(const struct itr_llvm_exe *e);

// Quadratic forms (docs/kernels.md): how many products X @ G read only by
// sum(X * (X @ G), last axis) were computed as that sum directly
// (backends/cpu/qform.h), in e and its scan bodies, over every run so far.
// ITRC_NO_QFORM=1 (read when the executable is made) turns them off, for
// A/B measurements.
int64_t itr_llvm_exe_qform_runs(const struct itr_llvm_exe *e);

// Runs e with read-only parameters.
bool itr_llvm_exe_run(struct itr_llvm_exe *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                      struct itr_dim_bindings *dims, struct itr_tensor **outputs, struct itr_diags *d);
// The same, with what the run may do to params (backends/backend.h,
// struct itr_run_options; NULL: read only). A step that writes an update in
// place over a parameter it may not write works on a copy.
bool itr_llvm_exe_run_with(struct itr_llvm_exe *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                           struct itr_dim_bindings *dims, struct itr_run_options *ro, struct itr_tensor **outputs,
                           struct itr_diags *d);

#endif
