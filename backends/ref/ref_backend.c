// The reference interpreter as a backend (backends/backend.h). It has
// nothing to compile: an executable is the graph and the run's precision,
// and run() is itr_ref_run. Buffers are host tensors.
#include <stdio.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "backends/ref/ref.h"

struct itr_backend_exec {
    const struct itr_graph *g;
    struct itr_ref_options opt;
};

static struct itr_backend_exec *ref_prepare(const struct itr_program *p, const struct itr_graph *g,
                                            const struct itr_backend_options *o, struct itr_diags *d) {
    (void)p;
    (void)d;
    struct itr_backend_exec *e = calloc(1, sizeof *e);
    if (!e) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    e->g = g;
    e->opt.f64 = o && o->f64;   // threads: the interpreter is single-threaded
    return e;
}

static bool ref_exec_run(struct itr_backend_exec *e, struct itr_tensor *const *inputs,
                         struct itr_tensor *const *params, struct itr_dim_bindings *dims,
                         struct itr_run_options *ro, struct itr_tensor **outputs, struct itr_diags *d) {
    (void)ro;   // the interpreter writes every result to a new tensor
    return itr_ref_run(e->g, inputs, params, dims, &e->opt, outputs, d);
}

static void ref_release(struct itr_backend_exec *e) { free(e); }

// Host memory: upload and download are copies between host tensors.
static void ref_copy(struct itr_tensor *dst, const struct itr_tensor *src) { itr_backend_host_copy(dst, src); }

static void ref_sync(void) {}

const struct itr_backend itr_backend_ref = {
    .name = "ref",
    .description = "the reference interpreter: plain C, op by op, f32 and f64",
    .host_memory = true,
    .prepare = ref_prepare,
    .run = ref_exec_run,
    .release = ref_release,
    .buffer_alloc = itr_backend_host_alloc,
    .buffer_free = itr_backend_host_free,
    .buffer_upload = ref_copy,
    .buffer_download = ref_copy,
    .buffer_copy = ref_copy,
    .sync = ref_sync,
};
