// The reference interpreter: runs any graph of the IR op by op in plain C.
// It is the oracle of every other path (design.md principle 5), so it favours
// clarity; contractions still use cache-friendly loops.
//
// Float precision is chosen per run: with f64 = true every f32 value of the
// graph is computed and returned as f64 (the same graph, for gradient checks
// by finite differences). Integer and bool values are unaffected.
#ifndef ITR_REF_H
#define ITR_REF_H

#include "ir/ir.h"
#include "ir/bind.h"

struct itr_ref_options {
    bool f64;                 // run f32 values as f64
};

// Runs graph g of its program.
//   inputs[i]  : tensor for g->inputs[i] (dtype must match, or be f32 where the
//                graph says f32 and f64 mode converts it)
//   params[j]  : tensor for program param j; may be NULL for params g does not use
//   dims       : symbol bindings; symbols still unbound are bound from the
//                inputs and params (then defaults) and the result is written back
//   outputs[k] : receives a new tensor for g->outputs[k] (caller frees)
// Returns false with a diagnostic (shape mismatch naming the tensor and both
// shapes, unbound symbol, index out of range, ...) and no outputs on error.
bool itr_ref_run(const struct itr_graph *g, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                 struct itr_dim_bindings *dims, const struct itr_ref_options *opt,
                 struct itr_tensor **outputs, struct itr_diags *d);

// Observes a run of itr_ref_run_observed: called after each node of graph g
// (not of the scan bodies it runs) once for every result the node produced,
// in node order; the node is g->values[value].node. t is borrowed and valid
// only during the call (copy what must outlive it); in f64 runs f32 values
// arrive as f64. The backend-agreement harness (tests/agree.h) compares them
// with a compiled run's values to name the first node that diverges.
typedef void (*itr_ref_observer)(void *ctx, int32_t value, const struct itr_tensor *t);

// itr_ref_run with an observer (NULL: none, which is itr_ref_run).
bool itr_ref_run_observed(const struct itr_graph *g, struct itr_tensor *const *inputs,
                          struct itr_tensor *const *params, struct itr_dim_bindings *dims,
                          const struct itr_ref_options *opt, itr_ref_observer observe, void *observe_ctx,
                          struct itr_tensor **outputs, struct itr_diags *d);

// The sort and topk kernels' work on lines [lo, hi) of x along axis ax
// (line o * inner + i, with inner the product of the dims after ax): each
// sorted (ties by index), its first k values and indices written into vals
// and idx, whose shapes the caller has checked (x's, with k along ax).
// Lines are independent, so callers may split them over threads; false only
// when out of memory.
bool itr_ref_sort_lines(const struct itr_tensor *x, int ax, bool descending, int64_t k, int64_t lo, int64_t hi,
                        struct itr_tensor *vals, struct itr_tensor *idx);

// Runs one node on concrete tensors (used by constant folding): outputs are
// allocated from the node's result types evaluated with dims.
bool itr_ref_run_node(const struct itr_graph *g, const struct itr_node *n, struct itr_tensor *const *in,
                      struct itr_dim_bindings *dims, const struct itr_ref_options *opt,
                      struct itr_tensor **out, struct itr_diags *d);

#endif
