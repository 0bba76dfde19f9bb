// One step of training: runs a plan's compiled train entry (docs/training.md)
// on a batch and applies its updates to the parameters and optimizer state.
// `itr-run step` is one call; the training loop calls it once per batch.
#ifndef ITR_RUNTIME_TRAIN_H
#define ITR_RUNTIME_TRAIN_H

#include "ir/bind.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

struct itr_train_options {
    double lr;                   // the learning rate of this step (the lr input)
    int64_t step;                // 1-based: Adam's bias corrections use it
    uint64_t seed;               // the run's seed; the step's comes from itr_train_step_seed
    bool f64;                    // compute f32 values in f64 (updates are stored in each tensor's dtype)
    const char *weights_what;    // names the state in messages ("w.safetensors"); NULL: "weights"
};

struct itr_train_result {
    double loss;                 // the train entry's first output
    int n_zero_state;            // optimizer-state tensors that were missing and started at zero
};

// The plan's train entry if its training step is compiled; NULL with an
// error naming the plan's entries otherwise.
const struct itr_graph *itr_train_entry(const struct itr_program *p, struct itr_diags *d);

// The value of the train graph's `seed` input at a step: a mix of the run's
// seed and the step, so that dropout draws a new mask every step and a run
// is reproducible from (seed, step).
uint64_t itr_train_step_seed(uint64_t seed, int64_t step);

// Runs one training step. inputs: the train entry's inputs by name, except
// lr, step and seed, which come from opt. state: every parameter and
// optimizer-state tensor by name (as `itr-run init` writes them); optimizer
// state missing from it starts at zero (counted in result, noted in d).
// dims: the caller's bindings (written back). On success the loss and the
// other outputs that are not updates (metrics) are appended to metrics, and
// every parameter and state tensor the step updates is replaced in state,
// converted to the dtype of the tensor it replaces. A loss that is NaN or
// infinite is an error naming the step; state is then left unchanged, as it
// is on every error.
bool itr_train_step(const struct itr_program *p, const struct itr_tensor_set *inputs, struct itr_tensor_set *state,
                    struct itr_dim_bindings *dims, const struct itr_train_options *opt, struct itr_tensor_set *metrics,
                    struct itr_train_result *result, struct itr_diags *d);

// The same step on a session (runtime/session.h): inputs and results as
// above; the parameters and optimizer state are the session's slots, and
// each update takes its slot in place (written over the slot's tensor where
// the backend does that, else the step's output tensor replaces the old
// one; converted only where the dtypes differ, as in f64 mode with f32
// parameters). Missing optimizer state starts at zero and joins the
// session when the step succeeds. opt->f64 is ignored: the session's
// option decides. opt->weights_what NULL: the session's name for its set.
struct itr_session;
bool itr_session_train_step(struct itr_session *s, const struct itr_tensor_set *inputs,
                            struct itr_dim_bindings *dims, const struct itr_train_options *opt,
                            struct itr_tensor_set *metrics, struct itr_train_result *result, struct itr_diags *d);

#endif
