// A session: one program on one backend with one set of options
// (docs/backends.md). It owns the model's parameters and optimizer state as
// tensors indexed by parameter id — names appear only at the boundary, when
// a safetensors set is loaded or saved — and the executables the backend
// prepared, one per entry, made on first use and reused by every later run.
// The trainer, the evaluator and every itr-run command run through one.
//
// A training step (runtime/train.h, itr_session_train_step) writes its
// updates into the parameter slots in place: on the LLVM backend the
// update kernels write over the slots' own tensors (docs/kernels.md,
// "Updates in place"); elsewhere the step's new tensor takes the slot and
// the old one is released. No copy back either way.
#ifndef ITR_RUNTIME_SESSION_H
#define ITR_RUNTIME_SESSION_H

#include "backends/backend.h"
#include "ir/bind.h"
#include "ir/ir.h"
#include "ir/tensor_set.h"

struct itr_session_options {
    bool f64;       // compute f32 values in f64 (outputs come back as f64)
    int threads;    // kernel threads (0: the backend's default); stored for the backend, ref ignores it
};

struct itr_session;

// A session of p (which must outlive it) on the backend called backend
// (NULL: the default, itr_backend_default_name()). An unknown name is an
// error listing the available backends; NULL then.
struct itr_session *itr_session_new(const struct itr_program *p, const char *backend,
                                    const struct itr_session_options *o, struct itr_diags *d);
void itr_session_free(struct itr_session *s);

const struct itr_program *itr_session_program(const struct itr_session *s);
const struct itr_backend *itr_session_backend(const struct itr_session *s);
const struct itr_session_options *itr_session_options(const struct itr_session *s);

// ---- parameters (by id: 0 .. p->n_params-1)

// Loads the tensors of set whose names are parameters (optimizer state
// included) into their slots, replacing what was there. Other tensors draw a
// warning and are ignored. what names the set in later messages
// ("w.safetensors", "the training state"; NULL: "weights"). Dtypes and
// shapes are checked when an entry that uses the parameter runs, as before
// sessions: a file may hold a parameter only some entries use.
//   load  copies the tensors (set is left as it was);
//   adopt moves them out of set, which keeps its other tensors and its
//         metadata (no copy of what may be hundreds of megabytes).
void itr_session_load(struct itr_session *s, const struct itr_tensor_set *set, const char *what,
                      struct itr_diags *d);
void itr_session_adopt(struct itr_session *s, struct itr_tensor_set *set, const char *what, struct itr_diags *d);
// True once a set was loaded or adopted (even an empty one): until then an
// entry that uses parameters is told to give them with --weights.
bool itr_session_has_weights(const struct itr_session *s);
const char *itr_session_weights_what(const struct itr_session *s);

// Puts every present parameter into out under its name. On a host-memory
// backend these are views of the session's tensors (no copy), valid until
// the next training step or itr_session_free; otherwise host copies. Each
// keeps its dtype: an f32 parameter trained with f64 on is rounded to f32 at
// each update (so that a resumed run is bitwise the uninterrupted one).
void itr_session_save(const struct itr_session *s, struct itr_tensor_set *out);

// The tensor in slot id (NULL: absent); in the backend's memory.
struct itr_tensor *itr_session_param(const struct itr_session *s, int id);
// Puts t (a host tensor; the session takes it) into slot id, releasing what
// was there; on a device backend it is uploaded.
void itr_session_set_param(struct itr_session *s, int id, struct itr_tensor *t);

// ---- runs

// Runs entry point `entry` (or graph g): inputs by name (exactly g's
// inputs; NULL: none), dims with the caller's bindings (the rest come from
// the tensors, then the defaults; written back). Appends one tensor per
// output, named after it, to outputs. Every mismatch is the same located
// error as itr_exec_run's; on error outputs is left unchanged.
bool itr_session_run(struct itr_session *s, const char *entry, const struct itr_tensor_set *inputs,
                     struct itr_dim_bindings *dims, struct itr_tensor_set *outputs, struct itr_diags *d);
bool itr_session_run_graph(struct itr_session *s, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                           struct itr_dim_bindings *dims, struct itr_tensor_set *outputs, struct itr_diags *d);
// The step under both: params gives the parameters by id (NULL: the
// session's slots; the train step passes its slots plus fresh optimizer
// state); outs[k] receives g's output k as a new host tensor, or, where ro
// lets the backend update a parameter in place (backends/backend.h), that
// parameter's own tensor (outs[k] == params[j]). ro may be NULL.
bool itr_session_exec(struct itr_session *s, const struct itr_graph *g, const struct itr_tensor_set *inputs,
                      struct itr_tensor *const *params, struct itr_dim_bindings *dims, struct itr_run_options *ro,
                      struct itr_tensor **outs, struct itr_diags *d);

#endif
