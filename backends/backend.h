// The execution layer's backend interface (docs/backends.md, design.md
// "Layers"): one vtable per way of running a graph, ggml-backend style.
// Callers (runtime/session.c, tests) only ever see this interface, so a new
// backend — the LLVM JIT, CUDA — plugs in by filling one struct and adding
// one line to the registry in backends/backend.c; no caller changes.
//
// The life of a graph on a backend:
//   prepare(program, graph, options)  -> an executable (ref: the graph
//                                        itself; llvm: fused kernels, memory
//                                        plan, JIT module; cuda: cubins)
//   run(executable, inputs, params, dims) -> outputs, any number of times
//   release(executable)
//
// Tensors a backend reads and writes are struct itr_tensor. On a backend
// whose memory is the host's (host_memory true: ref, llvm) a "buffer" is an
// ordinary host tensor, so upload, download and copy are memcpy-cheap and
// the session hands its parameter tensors to run() as they are. A device
// backend (cuda) keeps the header (dtype, shape) on the host and `data`
// pointing to device memory; the session then moves user data across with
// upload/download and never dereferences `data` itself.
#ifndef ITR_BACKEND_H
#define ITR_BACKEND_H

#include <string.h>

#include "ir/bind.h"
#include "ir/ir.h"

struct itr_backend_options {
    bool f64;       // compute f32 values in f64 (a second specialisation of the same graph)
    int threads;    // worker threads for kernels (0: the backend's default); ref ignores it
};

// What a run may do to the parameters it is given (run()'s ro; NULL: they
// are read only).
struct itr_run_options {
    // A session's training step: a backend may write an update over the
    // parameter (or optimizer state) it replaces (docs/kernels.md, "Updates
    // in place") and return that tensor itself as the output: outputs[k] ==
    // params[j]. Only tensors that own their memory are written.
    bool params_writable;
    // With params_writable: nothing is written over a parameter unless output
    // finite_output (the loss) is finite; otherwise the run stops before the
    // first such write, returns true with only that output and sets stopped.
    // -1: no check.
    int finite_output;
    bool stopped;
    // Nonzero: the parameters are those of every earlier run given the same
    // number (a session numbers its weights anew whenever one may have
    // changed), so a backend may keep what it derives from them from one run
    // to the next: the LLVM backend's packed copies of weights
    // (docs/performance.md, "Prepacked products"). 0: nothing is kept.
    uint64_t params_version;
};

// What prepare() returns; each backend defines its own struct (ref_backend.c).
struct itr_backend_exec;

struct itr_backend {
    const char *name;           // "ref", "llvm", "cuda": what --backend NAME selects
    const char *description;    // one line for listings
    bool host_memory;           // buffers are host memory (see above)

    // Optional (NULL: always usable). Called when a session is made on the
    // backend, before any buffer is allocated: false with the reason in d
    // when it cannot run on this machine (cuda without a driver or a GPU).
    bool (*open)(struct itr_diags *d);

    // Optional (NULL: the backend has no devices to choose from). Picks the
    // device later opens use (itr-run --device N), before the first open;
    // false with the reason in d when the backend is already open on another.
    bool (*select_device)(int ordinal, struct itr_diags *d);

    // Prepares graph g of program p for runs with options o. Returns NULL
    // with a diagnostic when the backend cannot run g (an op it lacks, a
    // compile error); the caller reports it and stops.
    struct itr_backend_exec *(*prepare)(const struct itr_program *p, const struct itr_graph *g,
                                        const struct itr_backend_options *o, struct itr_diags *d);

    // Runs a prepared graph.
    //   inputs[i]  : the tensor of g->inputs[i] (already checked and bound by the caller)
    //   params[j]  : the tensor of program parameter j (NULL for those g does not use);
    //                a backend never keeps or frees them
    //   dims       : every symbol the run needs is bound (the session binds
    //                them from the tensors, then the defaults); a backend may
    //                bind more (a scan's intermediate sizes) and writes them back
    //   ro         : NULL, or what the run may do to params (struct itr_run_options)
    //   outputs[k] : receives a new tensor for g->outputs[k], owned by the caller
    //                (or, with ro->params_writable, possibly params[j] itself)
    // False with a located diagnostic (index out of range, ...) and no outputs.
    bool (*run)(struct itr_backend_exec *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                struct itr_dim_bindings *dims, struct itr_run_options *ro, struct itr_tensor **outputs,
                struct itr_diags *d);

    void (*release)(struct itr_backend_exec *e);

    // Buffers. alloc returns a zero-filled tensor in the backend's memory
    // (NULL when out of memory); free releases one. upload/download/copy need
    // matching dtype and shape (the caller checks).
    struct itr_tensor *(*buffer_alloc)(enum itr_dtype dt, int rank, const int64_t *shape);
    void (*buffer_free)(struct itr_tensor *t);
    void (*buffer_upload)(struct itr_tensor *dst, const struct itr_tensor *host_src);
    void (*buffer_download)(struct itr_tensor *host_dst, const struct itr_tensor *src);
    void (*buffer_copy)(struct itr_tensor *dst, const struct itr_tensor *src);

    // Waits until every run and copy issued so far has finished (a no-op on
    // backends that run synchronously).
    void (*sync)(void);
};

// The backend called name, or NULL with an error "unknown backend 'x';
// available: ref, ..." (d may be NULL: no message).
const struct itr_backend *itr_backend_find(const char *name, struct itr_diags *d);
// The backends built into this binary, in registry order (the first is the default).
int itr_backend_count(void);
const struct itr_backend *itr_backend_at(int i);
// "ref, llvm": the names, comma-separated, for messages and --help.
void itr_backend_list(char *buf, size_t n);
// The name --backend defaults to.
const char *itr_backend_default_name(void);

// Host-memory buffer helpers that CPU backends share (plain itr_tensor).
// Inline so that a backend's library needs nothing from the registry's
// (which links every backend: the other direction).
static inline struct itr_tensor *itr_backend_host_alloc(enum itr_dtype dt, int rank, const int64_t *shape) {
    return itr_tensor_new(dt, rank, shape);
}
static inline void itr_backend_host_free(struct itr_tensor *t) { itr_tensor_free(t); }
static inline void itr_backend_host_copy(struct itr_tensor *dst, const struct itr_tensor *src) {
    size_t n = itr_tensor_nbytes(src);
    if (n && dst->data != src->data) memcpy(dst->data, src->data, n);
}

// The reference interpreter as a backend (backends/ref/ref_backend.c).
extern const struct itr_backend itr_backend_ref;
// Fused kernels through the LLVM ORC JIT (backends/llvm/llvm_backend.c);
// always registered: a build without LLVM says so when asked to prepare.
extern const struct itr_backend itr_backend_llvm;
// Fused kernels as CUDA C through NVRTC and the driver API
// (backends/cuda/cuda_backend.c); always registered: without a driver or a
// GPU, opening a session on it says so.
extern const struct itr_backend itr_backend_cuda;

// The backend a session uses when none is named: llvm when this build has
// LLVM and the plan carries kernels, ref otherwise.
const char *itr_backend_default_for(const struct itr_program *p);

#endif
