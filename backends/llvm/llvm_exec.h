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

bool itr_llvm_exe_run(struct itr_llvm_exe *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                      struct itr_dim_bindings *dims, struct itr_tensor **outputs, struct itr_diags *d);

#endif
