// Fusion, scheduling and lowering of a graph to the kernel IR
// (backends.md §2–4; the kernel IR is ir/kir.h).
//
// The rule that decides fusion (docs/kernels.md):
//   - Elementwise ops, movement ops and the sources `full` and `iota` are
//     never materialised on their own: each consumer computes them inline
//     through index maps (broadcasting is a stride-0 map, reshape a
//     linearise/delinearise, transpose a permutation, slice an offset and
//     step, pad and concat bounded selects).
//   - A value is materialised (written to a buffer by one kernel) when it is
//     a graph output, an operand of a node that runs on the reference
//     kernels, or read by more than one consumer while computing it costs
//     more than a load (anything but a movement chain over a materialised
//     value or a constant source).
//   - A reduction computes its operand inline (its elementwise prologue
//     fuses) with a lane-split accumulator; mean divides by the count.
//   - A reduction over trailing axes that is read back over its rows
//     (softmax, l2norm, layernorm, log-sum-exp, cosine) is computed per row
//     inside its reader's kernel, a pass over the row before the reader's
//     own loops: one kernel per row pattern.
//   - Materialised values of one shape whose kernels read each other (an
//     optimizer's update of one parameter) are one kernel, "siblings"; a
//     value only its siblings read is not stored.
//   - A float matmul is a GEMM step: the contraction library reads both
//     operands in memory, a transpose of the last two axes becomes its
//     trans flag and broadcast batch dims a stride of 0, so neither copies;
//     an operand that is not in memory is materialised first. An integer
//     matmul is one loop-nest kernel.
//   - Everything else (indexing, sort/top-k, random sources, constants,
//     argmax/argmin, integer division) runs as a NODE step on the
//     reference kernels, so every graph runs and errors keep their messages.
//   - A scan is a NODE step whose body is lowered to its own schedule; the
//     executor drives the steps and runs the compiled body once per step.
#ifndef ITR_COMPILER_LOWER_H
#define ITR_COMPILER_LOWER_H

#include "ir/ir.h"
#include "ir/kir.h"

// Lowers graph g (an entry or a scan body) to a schedule. f64: compute f32
// values as f64 (the reference interpreter's f64 mode). Returns NULL with a
// diagnostic only on an internal error.
struct kir_schedule *itr_lower_graph(const struct itr_graph *g, bool f64, struct itr_diags *d);

// Whether op has a lowering (the rest run as NODE steps); tests use it to
// require an agreement case for every lowered op.
bool itr_lower_op_supported(enum itr_op op);

#endif
