// The cuda backend in the backend vtable (backends/backend.h,
// docs/backends.md "CUDA"): the fused kernels a plan carries (p->kernels,
// `itrc compile --target llvm` or `cuda`), rendered to CUDA C and compiled
// by NVRTC for the device's architecture when an entry is prepared, or, for
// a plan compiled with --target cuda, its cubin or PTX for the device
// (backends/cuda/cuda_plan.h); loaded with the driver API and launched on
// the device's primary context (default stream).
//
// Steps of a schedule (ir/kir.h):
//   KERNEL  one launch, one thread per parallel iteration (cuda_render.h);
//   GEMM    cuBLAS (libcublas loaded with dlopen), row-major products as
//           column-major ones with the operands swapped;
//   NODE    the reference kernel on the host: operands are downloaded, the
//           node runs (a scan runs whole in the reference interpreter) and
//           its results are uploaded. Correct everywhere, fast nowhere: the
//           ops that take this path have no lowering yet.
// Buffers are device memory: a tensor whose header (dtype, shape) is on the
// host and whose data is the device address.
//
// NOT YET RUN ON A GPU: no machine with one was lent while this was written.
// What is tested (tests/test_cuda_compile.c, tests/cli/cuda.sh) is that
// every kernel renders and compiles, and that without a driver the backend
// fails with its message. tools/gpu-check.sh is the first run on a device.
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "backends/cuda/cuda_plan.h"
#include "backends/cuda/cuda_render.h"
#include "backends/ref/ref.h"
#include "ir/devcode.h"
#include "ir/kir.h"

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

static const struct itr_cuda_device *dev;   // set by cuda_open

// A failed driver call: the located error "cuda backend: WHAT: CUDA_ERROR_X (n)".
static bool cu_ok(itr_cu_result r, struct itr_diags *d, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool cu_ok(itr_cu_result r, struct itr_diags *d, const char *fmt, ...) {
    if (r == 0) return true;
    char what[256], nm[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    itr_diag_error(d, ITR_NOLOC, "cuda backend: %s: %s", what, itr_cuda_error_name(r, nm, sizeof nm));
    return false;
}

static bool cuda_open(struct itr_diags *d) {
    if (!dev) dev = itr_cuda_open(d);
    return dev != NULL;
}

// ---------------------------------------------------------------- buffers

static size_t alloc_bytes(enum itr_dtype dt, int rank, const int64_t *shape) {
    int64_t n;
    if (!itr_shape_numel(rank, shape, &n) || n > INT64_MAX / 8) return 0;
    size_t b = (size_t)n * itr_dtype_size(dt);
    return b < 64 ? 64 : b;   // the clamped loads of pad and concat read inside even an empty buffer
}

static struct itr_tensor *dev_alloc(enum itr_dtype dt, int rank, const int64_t *shape, bool zero) {
    size_t bytes = alloc_bytes(dt, rank, shape);
    itr_cu_deviceptr p = 0;
    if (!dev || !bytes || dev->api->cuMemAlloc_v2(&p, bytes) != 0) return NULL;
    if (zero && dev->api->cuMemsetD8_v2(p, 0, bytes) != 0) {
        dev->api->cuMemFree_v2(p);
        return NULL;
    }
    struct itr_tensor *t = itr_tensor_wrap(dt, rank, shape, (void *)(uintptr_t)p);
    if (!t) dev->api->cuMemFree_v2(p);
    return t;   // owns_data is false: buffer_free releases the device memory
}

static itr_cu_deviceptr dptr(const struct itr_tensor *t) { return (itr_cu_deviceptr)(uintptr_t)t->data; }

static struct itr_tensor *cuda_buffer_alloc(enum itr_dtype dt, int rank, const int64_t *shape) {
    return dev_alloc(dt, rank, shape, true);
}

static void cuda_buffer_free(struct itr_tensor *t) {
    if (!t) return;
    if (dev && t->data) dev->api->cuMemFree_v2(dptr(t));
    t->data = NULL;
    itr_tensor_free(t);
}

// The vtable's copies cannot report; a failure here is a lost device, and
// the next launch or synchronisation reports it.
static void cuda_buffer_upload(struct itr_tensor *dst, const struct itr_tensor *src) {
    size_t n = itr_tensor_nbytes(src);
    if (n && dev) dev->api->cuMemcpyHtoD_v2(dptr(dst), src->data, n);
}

static void cuda_buffer_download(struct itr_tensor *dst, const struct itr_tensor *src) {
    size_t n = itr_tensor_nbytes(src);
    if (n && dev) dev->api->cuMemcpyDtoH_v2(dst->data, dptr(src), n);
}

static void cuda_buffer_copy(struct itr_tensor *dst, const struct itr_tensor *src) {
    size_t n = itr_tensor_nbytes(src);
    if (n && dev && dst->data != src->data) dev->api->cuMemcpyDtoD_v2(dptr(dst), dptr(src), n);
}

static void cuda_sync(void) {
    if (dev) dev->api->cuCtxSynchronize();
}

// ---------------------------------------------------------------- cuBLAS

// cublas_api.h, loaded like the driver: cublas<t>gemm_v2 are the exported
// names of the API's cublasSgemm / cublasDgemm.
typedef int (*cublas_create_fn)(void **h);
typedef int (*cublas_sgemm_fn)(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda,
                               const float *B, int ldb, const float *beta, float *C, int ldc);
typedef int (*cublas_dgemm_fn)(void *h, int ta, int tb, int m, int n, int k, const double *alpha, const double *A,
                               int lda, const double *B, int ldb, const double *beta, double *C, int ldc);

static struct { void *handle; cublas_sgemm_fn sgemm; cublas_dgemm_fn dgemm; bool tried; char error[256]; } blas;

static bool cublas_load(struct itr_diags *d) {
    if (!blas.tried) {
        blas.tried = true;
        static const char *const libs[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so" };
        void *h = NULL;
        for (size_t i = 0; !h && i < sizeof libs / sizeof *libs; i++) h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        cublas_create_fn create = h ? (cublas_create_fn)dlsym(h, "cublasCreate_v2") : NULL;
        blas.sgemm = h ? (cublas_sgemm_fn)dlsym(h, "cublasSgemm_v2") : NULL;
        blas.dgemm = h ? (cublas_dgemm_fn)dlsym(h, "cublasDgemm_v2") : NULL;
        int r = -1;
        if (!h) snprintf(blas.error, sizeof blas.error, "cuda backend: cannot load libcublas.so.13 (install the CUDA toolkit's cuBLAS)");
        else if (!create || !blas.sgemm || !blas.dgemm) snprintf(blas.error, sizeof blas.error, "cuda backend: libcublas lacks cublasCreate_v2 or the gemm entry points");
        else if ((r = create(&blas.handle)) != 0) snprintf(blas.error, sizeof blas.error, "cuda backend: cublasCreate failed (status %d)", r);
        if (r != 0) blas.handle = NULL;
    }
    if (!blas.handle) itr_diag_error(d, ITR_NOLOC, "%s", blas.error);
    return blas.handle != NULL;
}

// ---------------------------------------------------------------- executables

struct cuda_exe {
    const struct itr_graph *g;
    const struct kir_schedule *s;
    itr_cu_module mod;
    itr_cu_function *fns;   // per kernel
};

static int graph_index(const struct itr_program *p, const struct itr_graph *g) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i] == g) return i;
    return -1;
}

static void exe_free(struct cuda_exe *e) {
    if (!e) return;
    if (e->mod && dev) dev->api->cuModuleUnload(e->mod);
    free(e->fns);
    free(e);
}

// The schedule's kernels as one module: the plan's image for this device
// when it carries one (itrc compile --target cuda), else the unit compiled
// here by NVRTC for the device's sm_XY.
static bool load_kernels(struct cuda_exe *e, const struct itr_devcode_unit *dc, struct itr_diags *d) {
    const struct kir_schedule *s = e->s;
    e->fns = xcalloc((size_t)s->n_kernels, sizeof *e->fns);
    if (!s->n_kernels) return true;
    char why[512], unit[200], arch[32];
    snprintf(unit, sizeof unit, "entry '%s' (%s)", e->g->name, s->f64 ? "f64" : "f32");
    snprintf(arch, sizeof arch, "sm_%d%d", dev->cc_major, dev->cc_minor);
    const char *archs[ITR_DEVCODE_MAX_IMAGES];
    for (int i = 0; dc && i < dc->n_images; i++) archs[i] = dc->images[i].arch;
    int pick = dc ? itr_cuda_pick_image(dev->cc_major, dev->cc_minor, archs, dc->n_images) : -1;
    struct itr_cuda_unit u = { 0 };
    struct itr_nvrtc_output out = { 0 };
    const void *image = NULL;
    bool ok = true;
    if (pick >= 0) {
        image = dc->images[pick].data;
        snprintf(arch, sizeof arch, "%s", dc->images[pick].arch);
    } else {
        if (!itr_nvrtc_available()) {
            itr_diag_error(d, ITR_NOLOC, "cuda backend: %s: the plan carries no code for %s and this build has no "
                           "NVRTC to compile it (compile the plan with 'itrc compile --target cuda' where the CUDA "
                           "toolkit is installed); use --backend llvm or ref", unit, arch);
            return false;
        }
        ok = itr_cuda_unit_render(s, &u, why, sizeof why);
        if (!ok) itr_diag_error(d, ITR_NOLOC, "cuda backend: entry '%s': %s", e->g->name, why);
        struct itr_nvrtc_kernels map = { u.names, u.first_line, u.n };
        if (ok) ok = itr_nvrtc_compile(u.src, unit, arch, &map, &out, d);
        image = out.cubin;
    }
    if (ok) {
        char log[4096] = "";
        int opts[2] = { 5 /* CU_JIT_ERROR_LOG_BUFFER */, 6 /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */ };
        void *vals[2] = { log, (void *)(uintptr_t)sizeof log };
        itr_cu_result r = dev->api->cuModuleLoadDataEx(&e->mod, image, 2, opts, vals);
        ok = cu_ok(r, d, "loading the %s kernels of %s", arch, unit);
        if (!ok && log[0]) itr_diag_note(d, ITR_NOLOC, "the driver's log: %s", log);
    }
    for (int i = 0; ok && i < s->n_kernels; i++)
        ok = cu_ok(dev->api->cuModuleGetFunction(&e->fns[i], e->mod, s->kernels[i]->name), d, "kernel %s of %s",
                   s->kernels[i]->name, unit);
    itr_nvrtc_output_free(&out);
    itr_cuda_unit_free(&u);
    return ok;
}

static struct itr_backend_exec *cuda_prepare(const struct itr_program *p, const struct itr_graph *g,
                                             const struct itr_backend_options *o, struct itr_diags *d) {
    if (!cuda_open(d)) return NULL;
    bool f64 = o && o->f64;
    int gi = graph_index(p, g);
    const struct kir_schedule *s = kir_plan_kernels_find(p->kernels, gi, f64);
    if (!s) {
        itr_diag_error(d, ITR_NOLOC, "cuda backend: the plan has no %s kernels for entry '%s'; compile it with "
                       "'itrc compile --target cuda' (or llvm), or run it with --backend ref", f64 ? "f64" : "f32",
                       g->name);
        return NULL;
    }
    struct cuda_exe *e = xcalloc(1, sizeof *e);
    e->g = g;
    e->s = s;
    if (!load_kernels(e, itr_devcode_find(p->devcode, gi, f64), d)) {
        exe_free(e);
        return NULL;
    }
    return (struct itr_backend_exec *)e;
}

static void cuda_release(struct itr_backend_exec *x) { exe_free((struct cuda_exe *)x); }

// ---------------------------------------------------------------- running

static int64_t eval_dim(const struct itr_program *p, const struct itr_dim_bindings *b, itr_dim dd, bool *ok) {
    int64_t v = 0;
    int32_t unbound;
    if (!itr_dim_eval(p, dd, b->value, b->bound, &v, &unbound)) *ok = false;
    return v;
}

static struct itr_tensor *alloc_value(const struct itr_graph *g, int32_t v, bool f64, const struct itr_dim_bindings *b,
                                      struct itr_diags *d) {
    const struct itr_value *val = &g->values[v];
    int64_t shape[ITR_MAX_RANK];
    if (!itr_eval_shape(b, g->prog, &val->type, shape, val->name ? val->name : "value", d)) return NULL;
    enum itr_dtype dt = f64 && val->type.dtype == ITR_F32 ? ITR_F64 : val->type.dtype;
    struct itr_tensor *t = dev_alloc(dt, val->type.rank, shape, false);
    if (!t) itr_diag_error(d, val->loc, "cuda backend: out of device memory for '%s'", val->name ? val->name : "?");
    return t;
}

static struct itr_tensor *download(const struct itr_tensor *t) {
    struct itr_tensor *h = itr_tensor_new(t->dtype, t->rank, t->shape);
    if (h) cuda_buffer_download(h, t);
    return h;
}

static struct itr_tensor *upload(struct itr_tensor *h) {
    struct itr_tensor *t = dev_alloc(h->dtype, h->rank, h->shape, false);
    if (t) cuda_buffer_upload(t, h);
    return t;
}

// A node on the host with the reference kernels.
static bool run_node(const struct cuda_exe *e, const struct itr_node *n, struct itr_dim_bindings *dims,
                     struct itr_tensor **val, bool *owned, struct itr_diags *d) {
    struct itr_tensor **in = xcalloc((size_t)n->n_inputs + 1, sizeof *in);
    struct itr_tensor **out = xcalloc((size_t)n->n_outputs + 1, sizeof *out);
    bool ok = true;
    for (int k = 0; k < n->n_inputs && ok; k++) {
        const struct itr_tensor *x = val[n->inputs[k]];
        if (x) in[k] = download(x);
        else {   // a fused operand of a guarded step: it has no elements then
            struct itr_tensor *t = alloc_value(e->g, n->inputs[k], e->s->f64, dims, d);
            in[k] = t ? itr_tensor_new(t->dtype, t->rank, t->shape) : NULL;
            cuda_buffer_free(t);
        }
        if (!in[k]) ok = false;
    }
    struct itr_ref_options ro = { .f64 = e->s->f64 };
    if (ok) ok = itr_ref_run_node(e->g, n, in, dims, &ro, out, d);
    for (int k = 0; ok && k < n->n_outputs; k++) {
        val[n->outputs[k]] = upload(out[k]);
        owned[n->outputs[k]] = val[n->outputs[k]] != NULL;
        if (!val[n->outputs[k]]) {
            itr_diag_error(d, n->loc, "cuda backend: out of device memory");
            ok = false;
        }
    }
    for (int k = 0; k < n->n_inputs; k++) itr_tensor_free(in[k]);
    for (int k = 0; ok && k < n->n_outputs; k++) itr_tensor_free(out[k]);
    free(in);
    free(out);
    return ok;
}

// out[b] = A[b] x B[b] (see the LLVM executor's run_gemm, whose batch and
// broadcasting rules these are). cuBLAS is column-major: the row-major
// C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T, the same
// memory, so the operands swap and keep their trans flags.
static bool run_gemm(const struct cuda_exe *e, const struct kir_step *st, const struct itr_node *n,
                     struct itr_dim_bindings *dims, struct itr_tensor **val, bool *owned, struct itr_diags *d) {
    if (!cublas_load(d)) return false;
    struct itr_tensor view_a, view_b;
    const struct itr_tensor *A = itr_view_as(e->g, val[st->gemm_a], st->gemm_view_a, dims, &view_a, d);
    const struct itr_tensor *B = itr_view_as(e->g, val[st->gemm_b], st->gemm_view_b, dims, &view_b, d);
    if (!A || !B) return false;
    int32_t ov = n->outputs[0];
    struct itr_tensor *C = alloc_value(e->g, ov, e->s->f64, dims, d);
    if (!C) return false;
    int ra = A->rank, rb = B->rank, rc = C->rank;
    int64_t m = st->trans_a ? A->shape[ra - 1] : A->shape[ra - 2];
    int64_t k = st->trans_a ? A->shape[ra - 2] : A->shape[ra - 1];
    int64_t nn = st->trans_b ? B->shape[rb - 2] : B->shape[rb - 1];
    int64_t lda = A->shape[ra - 1], ldb = B->shape[rb - 1];
    int64_t batch = 1, nbatch = rc - 2;
    for (int i = 0; i < nbatch; i++) batch *= C->shape[i];
    if (batch > 1 && rb == 2 && !st->trans_a && ra == rc) {
        m *= batch;
        batch = 1;
        nbatch = 0;
    }
    if (m > INT32_MAX || nn > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX) {
        cuda_buffer_free(C);
        itr_diag_error(d, n->loc, "cuda backend: a product of [%lld x %lld] and [%lld x %lld] is too large for cuBLAS",
                       (long long)m, (long long)k, (long long)k, (long long)nn);
        return false;
    }
    size_t es = itr_dtype_size(C->dtype);
    bool ok = true;
    for (int64_t bi = 0; bi < batch && ok; bi++) {
        int64_t rem = bi, offa = 0, offb = 0, sa = m * k, sb = k * nn;
        for (int i = (int)nbatch - 1; i >= 0; i--) {
            int64_t idx = rem % C->shape[i];
            rem /= C->shape[i];
            int ia = i - ((int)nbatch - (ra - 2)), ib = i - ((int)nbatch - (rb - 2));
            if (ia >= 0) {
                if (A->shape[ia] != 1) offa += idx * sa;
                sa *= A->shape[ia];
            }
            if (ib >= 0) {
                if (B->shape[ib] != 1) offb += idx * sb;
                sb *= B->shape[ib];
            }
        }
        char *c = (char *)C->data + (size_t)(bi * m * nn) * es;
        const char *a = (const char *)A->data + (size_t)offa * es, *b = (const char *)B->data + (size_t)offb * es;
        int r;
        if (m == 0 || nn == 0) continue;
        if (C->dtype == ITR_F64) {
            const double one = 1, zero = 0;
            r = blas.dgemm(blas.handle, st->trans_b, st->trans_a, (int)nn, (int)m, (int)k, &one, (const double *)b,
                           (int)ldb, (const double *)a, (int)lda, &zero, (double *)c, (int)nn);
        } else {
            const float one = 1, zero = 0;
            r = blas.sgemm(blas.handle, st->trans_b, st->trans_a, (int)nn, (int)m, (int)k, &one, (const float *)b,
                           (int)ldb, (const float *)a, (int)lda, &zero, (float *)c, (int)nn);
        }
        if (r != 0) {
            itr_diag_error(d, n->loc, "cuda backend: cuBLAS gemm failed (status %d)", r);
            ok = false;
        }
    }
    if (!ok) {
        cuda_buffer_free(C);
        return false;
    }
    val[ov] = C;
    owned[ov] = true;
    return true;
}

static bool run_kernel(const struct cuda_exe *e, int si, struct itr_dim_bindings *dims, struct itr_tensor **val,
                       bool *owned, struct itr_diags *d) {
    const struct kir_schedule *s = e->s;
    const struct kir_step *st = &s->steps[si];
    const struct kir_kernel *k = s->kernels[st->kernel];
    const struct itr_node *n = &e->g->nodes[st->node];
    int np = k->n_bufs + k->n_dims + 2;
    itr_cu_deviceptr *bp = xcalloc((size_t)k->n_bufs + 1, sizeof *bp);
    int64_t *dv = xcalloc((size_t)k->n_dims + 2, sizeof *dv);
    void **args = xcalloc((size_t)np, sizeof *args);
    bool ok = true;
    for (int b = 0; b < k->n_bufs && ok; b++) {
        int32_t v = st->bufs[b];
        if (k->bufs[b].written && !val[v]) {
            val[v] = alloc_value(e->g, v, s->f64, dims, d);
            owned[v] = val[v] != NULL;
            ok = val[v] != NULL;
        }
        if (ok && !val[v]) {
            itr_diag_error(d, n->loc, "internal error: kernel %s reads '%s', which has no value", k->name, e->g->values[v].name);
            ok = false;
        }
        // An update in place (kir_step alias) writes over a copy here: the
        // session's parameters stay read only on this backend.
        if (ok && kir_step_alias(st, b) >= 0 && !owned[v]) {
            struct itr_tensor *c = dev_alloc(val[v]->dtype, val[v]->rank, val[v]->shape, false);
            if (!c) {
                itr_diag_error(d, n->loc, "cuda backend: out of device memory copying '%s'", e->g->values[v].name);
                ok = false;
            } else {
                cuda_buffer_copy(c, val[v]);
                val[v] = c;
                owned[v] = true;
            }
        }
        if (ok) bp[b] = dptr(val[v]);
        args[b] = &bp[b];
    }
    bool dok = true;
    for (int j = 0; j < k->n_dims; j++) {
        dv[j] = eval_dim(e->g->prog, dims, k->dims[j].dim, &dok);
        args[k->n_bufs + j] = &dv[j];
    }
    int64_t range[2] = { 0, k->parallel_dim >= 0 ? eval_dim(e->g->prog, dims, k->parallel_dim, &dok) : 1 };
    args[np - 2] = &range[0];
    args[np - 1] = &range[1];
    if (ok && !dok) {
        itr_diag_error(d, n->loc, "internal error: kernel %s has a dim that the run does not bind", k->name);
        ok = false;
    }
    uint32_t grid, block;
    if (ok && !itr_cuda_launch_dims(range[1], &grid, &block)) {
        itr_diag_error(d, n->loc, "cuda backend: kernel %s: %lld parallel iterations exceed the grid", k->name,
                       (long long)range[1]);
        ok = false;
    }
    if (ok)
        ok = cu_ok(dev->api->cuLaunchKernel(e->fns[st->kernel], grid, 1, 1, block, 1, 1, 0, NULL, args, NULL), d,
                   "launching kernel %s", k->name);
    for (int b = 0; ok && b < k->n_bufs; b++) {
        int32_t a = kir_step_alias(st, b), v = st->bufs[b];
        if (a < 0) continue;
        val[a] = val[v];
        owned[a] = owned[v];
        val[v] = NULL;
        owned[v] = false;
    }
    free(bp);
    free(dv);
    free(args);
    return ok;
}

static bool cuda_run(struct itr_backend_exec *x, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                     struct itr_dim_bindings *dims, struct itr_run_options *ro, struct itr_tensor **outputs,
                     struct itr_diags *d) {
    (void)ro;   // parameters are read only here (run_kernel copies before an update in place)
    struct cuda_exe *e = (struct cuda_exe *)x;
    const struct itr_graph *g = e->g;
    const struct itr_program *p = g->prog;
    const struct kir_schedule *s = e->s;
    int nv = g->n_values;
    struct itr_tensor **val = xcalloc((size_t)nv, sizeof *val);
    bool *owned = xcalloc((size_t)nv, sizeof *owned), *given = xcalloc((size_t)nv, sizeof *given);
    for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
    // Inputs and parameters are device tensors already checked and bound by
    // the session; f32 ones are widened (through the host) in f64 runs.
    bool ok = true;
    for (int i = 0; i < g->n_inputs; i++) val[g->inputs[i]] = inputs[i];
    for (int vi = 0; vi < nv; vi++)
        if (g->values[vi].kind == ITR_VALUE_PARAM && params && g->values[vi].param >= 0 && g->values[vi].param < p->n_params)
            val[vi] = params[g->values[vi].param];
    for (int vi = 0; vi < nv && ok; vi++) {
        if (!val[vi] || !s->f64 || val[vi]->dtype != ITR_F32) continue;
        struct itr_tensor *h = download(val[vi]), *w = h ? itr_tensor_cast(h, ITR_F64) : NULL;
        val[vi] = w ? upload(w) : NULL;
        itr_tensor_free(h);
        itr_tensor_free(w);
        owned[vi] = val[vi] != NULL;
        if (!val[vi]) {
            itr_diag_error(d, g->values[vi].loc, "cuda backend: out of memory widening '%s' to f64", g->values[vi].name);
            ok = false;
        }
    }
    for (int si = 0; si < s->n_steps && ok; si++) {
        const struct kir_step *st = &s->steps[si];
        const struct itr_node *n = &g->nodes[st->node];
        bool as_node = st->kind == KIR_STEP_NODE;
        if (!as_node && st->guard_count >= 0) {
            bool dok = true;
            as_node = eval_dim(p, dims, st->guard_count, &dok) == 0 || !dok;
        }
        if (st->kind == KIR_STEP_GEMM) ok = run_gemm(e, st, n, dims, val, owned, d);
        else if (as_node)
            ok = run_node(e, st->kind == KIR_STEP_KERNEL && st->guard_node >= 0 ? &g->nodes[st->guard_node] : n, dims, val,
                          owned, d);
        else ok = run_kernel(e, si, dims, val, owned, d);
        // Values whose last reader this step was (outputs live on).
        for (int v = 0; ok && v < nv; v++)
            if (owned[v] && s->last_step[v] == si && s->last_step[v] < s->n_steps) {
                cuda_buffer_free(val[v]);
                val[v] = NULL;
                owned[v] = false;
            }
    }
    if (ok) ok = cu_ok(dev->api->cuCtxSynchronize(), d, "running entry '%s'", g->name);
    for (int k = 0; k < g->n_outputs && ok; k++) {
        int32_t v = g->outputs[k];
        if (!val[v]) {
            itr_diag_error(d, g->loc, "graph '%s': output '%s' has no value", g->name, g->output_names[k]);
            ok = false;
        } else if (owned[v] && !given[v]) {
            outputs[k] = val[v];
            given[v] = true;
        } else {
            outputs[k] = dev_alloc(val[v]->dtype, val[v]->rank, val[v]->shape, false);
            if (outputs[k]) cuda_buffer_copy(outputs[k], val[v]);
            else {
                itr_diag_error(d, g->loc, "cuda backend: out of device memory copying output '%s'", g->output_names[k]);
                ok = false;
            }
        }
    }
    if (!ok)
        for (int k = 0; k < g->n_outputs; k++) {
            if (outputs[k] && !given[g->outputs[k]]) cuda_buffer_free(outputs[k]);
            outputs[k] = NULL;
        }
    for (int v = 0; v < nv; v++)
        if (owned[v] && (!given[v] || !ok)) cuda_buffer_free(val[v]);
    free(val);
    free(owned);
    free(given);
    return ok;
}

const struct itr_backend itr_backend_cuda = {
    .name = "cuda",
    .description = "fused kernels for an NVIDIA GPU (plans compiled with --target cuda, or llvm and NVRTC)",
    .host_memory = false,
    .open = cuda_open,
    .select_device = itr_cuda_select_device,
    .prepare = cuda_prepare,
    .run = cuda_run,
    .release = cuda_release,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .buffer_upload = cuda_buffer_upload,
    .buffer_download = cuda_buffer_download,
    .buffer_copy = cuda_buffer_copy,
    .sync = cuda_sync,
};
