// Binding symbolic dims to run-time sizes (design.md principle 6).
//
// A graph's symbols get values from the shapes of the tensors fed to it:
// each input/param dim that is a bare symbol binds it, every other dim is
// checked against its evaluated expression. Symbols nothing binds take their
// declared default. Mismatches are user errors naming the tensor and both
// shapes ("input 'regions': expected f32[N, 36, 2048] = [4, 36, 2048], got [4, 36, 1024]").
#ifndef ITR_BIND_H
#define ITR_BIND_H

#include "ir.h"

struct itr_dim_bindings {
    int n;                 // = prog->n_symbols
    int64_t *value;        // value[i] for symbol i
    bool *bound;           // bound[i]
};

void itr_bindings_init(struct itr_dim_bindings *b, const struct itr_program *p);
void itr_bindings_free(struct itr_dim_bindings *b);
// Binds symbol by name; false if no such symbol or it is bound to another value.
bool itr_bindings_set(struct itr_dim_bindings *b, const struct itr_program *p, const char *name, int64_t value,
                      struct itr_diags *d);
// Binds one "--dim NAME=VALUE" argument (itr-run, itrc dump): a malformed
// argument, a negative or non-integer value, or a name the model has no dim
// of is an error naming the argument (the last lists the model's dims).
bool itr_bindings_set_arg(struct itr_dim_bindings *b, const struct itr_program *p, const char *arg,
                          struct itr_diags *d);
// Binds from one tensor against its declared type; what = "input 'x'" etc.
bool itr_bind_tensor(struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                     const struct itr_tensor *x, const char *what, bool allow_f64, struct itr_diags *d);
// Binds n tensors against their types in whichever order makes progress
// (lengths: i32[B] may come after flat: f32[B*L]), then the defaults, then
// reports every tensor that still does not match. whats[i] names tensor i.
bool itr_bind_tensors(struct itr_dim_bindings *b, const struct itr_program *p, int n,
                      const struct itr_type *const *types, const struct itr_tensor *const *xs,
                      const char *const *whats, bool allow_f64, struct itr_diags *d);
// Binds still-unbound symbols that have defaults.
void itr_bind_defaults(struct itr_dim_bindings *b, const struct itr_program *p);
// Evaluates a type's dims to a concrete shape; false + diagnostic naming the
// unbound symbol (what says whose type it is).
bool itr_eval_shape(const struct itr_dim_bindings *b, const struct itr_program *p, const struct itr_type *t,
                    int64_t *shape, const char *what, struct itr_diags *d);
// t's memory read with the shape of graph value `value` (a reshape,
// unsqueeze or squeeze of t, which keep the row-major order): out, a header
// that borrows t's data; t itself when value is -1. NULL + diagnostic when
// the element counts differ.
const struct itr_tensor *itr_view_as(const struct itr_graph *g, const struct itr_tensor *t, int32_t value,
                                     const struct itr_dim_bindings *b, struct itr_tensor *out, struct itr_diags *d);

#endif
