// The LLVM backend in the backend vtable (backends/backend.h): runs the
// fused kernels a plan carries (p->kernels, written by `itrc compile
// --target llvm`) through the ORC JIT, and GEMM steps through the CPU
// contraction library. A plan without kernels cannot be served; the
// message says how to get one.
#include <stdlib.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/llvm/llvm_exec.h"
#include "backends/llvm/llvm_jit.h"

static int graph_index(const struct itr_program *p, const struct itr_graph *g) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i] == g) return i;
    return -1;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static struct itr_backend_exec *llvm_prepare(const struct itr_program *p, const struct itr_graph *g,
                                             const struct itr_backend_options *o, struct itr_diags *d) {
    if (!itr_llvm_available()) {
        itr_diag_error(d, ITR_NOLOC, "backend 'llvm': this build has no LLVM (install llvm-14-dev and rebuild); "
                       "use --backend ref");
        return NULL;
    }
    bool f64 = o && o->f64;
    const struct kir_schedule *s = kir_plan_kernels_find(p->kernels, graph_index(p, g), f64);
    if (!s) {
        itr_diag_error(d, ITR_NOLOC, "backend 'llvm': the plan has no %s kernels for entry '%s'; compile it with "
                       "'itrc compile --target llvm', or run it with --backend ref", f64 ? "f64" : "f32", g->name);
        return NULL;
    }
    int threads = o && o->threads > 0 ? o->threads : default_threads();
    return (struct itr_backend_exec *)itr_llvm_exe_new(g, s, threads, d);
}

static bool llvm_run(struct itr_backend_exec *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                     struct itr_dim_bindings *dims, struct itr_run_options *ro, struct itr_tensor **outputs,
                     struct itr_diags *d) {
    return itr_llvm_exe_run_with((struct itr_llvm_exe *)e, inputs, params, dims, ro, outputs, d);
}

static void llvm_release(struct itr_backend_exec *e) { itr_llvm_exe_free((struct itr_llvm_exe *)e); }

static void llvm_upload(struct itr_tensor *dst, const struct itr_tensor *src) { itr_backend_host_copy(dst, src); }
static void llvm_sync(void) {}

const struct itr_backend itr_backend_llvm = {
    .name = "llvm",
    .description = "fused kernels JIT-compiled by LLVM for this CPU (plans compiled with --target llvm)",
    .host_memory = true,
    .prepare = llvm_prepare,
    .run = llvm_run,
    .release = llvm_release,
    .buffer_alloc = itr_backend_host_alloc,
    .buffer_free = itr_backend_host_free,
    .buffer_upload = llvm_upload,
    .buffer_download = llvm_upload,
    .buffer_copy = llvm_upload,
    .sync = llvm_sync,
};
