// Parameter initialisation: one tensor per parameter, drawn from its
// initialiser (docs/ir.md, "param") with the counter-based generator of
// ir/rng.h.
//
// Parameter j's values are elements 0, 1, ... (row-major) of the stream
// (seed, itr_rng_salt_of_name(full name of j)). The stream depends on the
// name alone, so adding, removing or reordering parameters never changes
// the values of the others, and the same seed gives the same bytes on every
// machine.
//
//   zeros, ones, constant(v)   no draws
//   uniform(a, b)              a + (b - a) * u, u uniform in [0, 1)
//   normal(m, s)               m + s * z, z standard normal
//   xavier_uniform(gain)       uniform(-r, r), r = gain * sqrt(6 / (fan_in + fan_out)),
//                              fan_in = last dim, fan_out = first dim;
//                              rank 1: fan_in = fan_out = the dim; rank 0: both 1
// u and z follow the parameter's dtype: f32 parameters use the f32 draws of
// rng.h, f64 parameters the f64 ones; integer parameters get the draws
// truncated toward zero.
#ifndef ITR_RUNTIME_INIT_H
#define ITR_RUNTIME_INIT_H

#include <stdint.h>

#include "ir/bind.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

// Appends one tensor per parameter of p, named after it, to out. dims holds
// the caller's bindings (--dim); symbols still unbound take their defaults
// (written back to dims). A parameter whose shape needs a symbol that is
// still unbound is an error naming the parameter and the symbol; every such
// parameter is reported and out is left unchanged.
bool itr_init_params(const struct itr_program *p, uint64_t seed, struct itr_dim_bindings *dims,
                     struct itr_tensor_set *out, struct itr_diags *d);

// Initialises one parameter into t (which has the parameter's shape).
void itr_init_tensor(const struct itr_param *param, uint64_t seed, struct itr_tensor *t);

#endif
