// Running a plan's entry points: matching named inputs and a weights set to
// an entry's signature, binding dims, and running it on the reference
// interpreter. The commands of itr-run (run, init, info, and later train,
// eval, query) are built on these calls.
//
// Every mismatch is a user error that names what is wrong: an input or
// parameter that is missing (with the entry's inputs and their types), a
// tensor whose dtype or shape differs (its name and both shapes), a dim
// that nothing binds.
#ifndef ITR_RUNTIME_EXEC_H
#define ITR_RUNTIME_EXEC_H

#include "ir/bind.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

struct itr_exec_options {
    bool f64;                    // run f32 values as f64 (outputs come back as f64)
    const char *weights_what;    // names the weights in messages ("w.safetensors"); NULL: "weights"
};

// The entry point called name; NULL with an error listing the entries.
const struct itr_graph *itr_exec_find_entry(const struct itr_program *p, const char *name, struct itr_diags *d);

// "encode_image(regions: f32[N, R, 2048]) -> (img_emb: f32[N, 1024])"
void itr_exec_format_signature(const struct itr_program *p, const struct itr_graph *g, char *buf, size_t n);

// Parses a --dim argument "NAME=VALUE" and binds it.
bool itr_exec_bind_dim_arg(struct itr_dim_bindings *b, const struct itr_program *p, const char *arg,
                           struct itr_diags *d);

// Checks weights against the parameters that entry g uses: each must be
// present with its declared dtype and shape (binding the dims it carries).
// Tensors that are no parameter of the program draw a warning. On success
// params[j] points into weights for every parameter j that g uses (NULL for
// the others); params has p->n_params slots.
bool itr_exec_match_weights(const struct itr_program *p, const struct itr_graph *g,
                            const struct itr_tensor_set *weights, struct itr_dim_bindings *dims, bool allow_f64,
                            const char *weights_what, struct itr_tensor **params, struct itr_diags *d);

// Runs entry g: inputs by name (exactly the entry's inputs), weights by
// parameter name (may be NULL when g uses no parameters), dims with the
// caller's bindings (others come from the tensors, then the defaults; the
// result is written back). Appends one tensor per output, named after it,
// to outputs. On error outputs is left unchanged.
bool itr_exec_run(const struct itr_program *p, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                  const struct itr_tensor_set *weights, struct itr_dim_bindings *dims,
                  const struct itr_exec_options *opt, struct itr_tensor_set *outputs, struct itr_diags *d);

#endif
