// Running a plan's entry points: matching named inputs and a weights set to
// an entry's signature, binding dims, and running it on the reference
// interpreter. The sessions (runtime/session.h), which every itr-run command,
// the trainer and the evaluator run through, make these same checks with
// these same messages; itr_exec_run is the direct, session-less path that
// tests compare against.
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

// The pieces of the checks above and of itr_exec_run, shared with the
// session (runtime/session.c) so that both give the same messages.
//
// Warns about each tensor of weights that is no parameter of p.
void itr_exec_warn_unknown_weights(const struct itr_program *p, const struct itr_tensor_set *weights,
                                   const char *weights_what, struct itr_diags *d);
// Checks the parameters entry g uses, given by parameter id (slots has
// p->n_params entries, NULL: absent), binding the dims they carry.
// have_weights false: no weights were given at all (the "--weights" error).
bool itr_exec_check_params(const struct itr_program *p, const struct itr_graph *g, struct itr_tensor *const *slots,
                           bool have_weights, struct itr_dim_bindings *dims, bool allow_f64,
                           const char *weights_what, struct itr_diags *d);
// Matches inputs by name to g's inputs: in[i] for g->inputs[i] (in has
// g->n_inputs slots). Unknown and missing names are errors listing g's inputs.
bool itr_exec_match_inputs(const struct itr_program *p, const struct itr_graph *g,
                           const struct itr_tensor_set *inputs, struct itr_tensor **in, struct itr_diags *d);
// Checks each input's dtype and shape against g's types, binding their dims.
bool itr_exec_bind_inputs(const struct itr_program *p, const struct itr_graph *g, struct itr_tensor *const *in,
                          struct itr_dim_bindings *dims, bool allow_f64, struct itr_diags *d);

// Runs entry g: inputs by name (exactly the entry's inputs), weights by
// parameter name (may be NULL when g uses no parameters), dims with the
// caller's bindings (others come from the tensors, then the defaults; the
// result is written back). Appends one tensor per output, named after it,
// to outputs. On error outputs is left unchanged.
bool itr_exec_run(const struct itr_program *p, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                  const struct itr_tensor_set *weights, struct itr_dim_bindings *dims,
                  const struct itr_exec_options *opt, struct itr_tensor_set *outputs, struct itr_diags *d);

#endif
