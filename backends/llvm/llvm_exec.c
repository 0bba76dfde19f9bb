// Running schedules on the CPU (backends/llvm/llvm_exec.h).
//
// Every parallel loop iteration of a kernel writes its own part of the
// result, so splitting [0, n) between threads never changes a result: runs
// are bitwise reproducible for any --threads.
#include "backends/llvm/llvm_exec.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/gemm.h"
#include "backends/cpu/pgemm.h"
#include "backends/cpu/qform.h"
#include "backends/llvm/llvm_jit.h"
#include "backends/ref/ref.h"
#include "ir/env.h"
#include "ir/memplan.h"
#include "ir/rng.h"
#include "ir/scan_rows.h"

// In AddressSanitizer builds the arena's free bytes are poisoned, so that a
// read of a value after its planned lifetime (by C code: the reference
// kernels, memcpy) is reported, and a value's bytes are filled with 0xff
// (NaN as a float) when it is placed, so that a kernel relying on fresh (zeroed) memory
// shows up as a wrong result instead of passing by luck.
#if defined(__SANITIZE_ADDRESS__)
#define ITR_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ITR_ARENA_ASAN 1
#endif
#endif
#ifdef ITR_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (size_t)(n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (size_t)(n))
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

// ---------------------------------------------------------------- thread pool

struct pool {
    int n;                         // threads, the caller included
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t generation;           // bumped for every job
    int pending;                   // workers still running the current job
    bool quit;
    // the job
    itr_kernel_fn fn;
    void *const *bufs;
    const int64_t *dims;
    int64_t hi;
};

static void chunk(const struct pool *p, int t, int64_t *b, int64_t *e) {
    int64_t per = p->hi / p->n, extra = p->hi % p->n;
    *b = t * per + (t < extra ? t : extra);
    *e = *b + per + (t < extra ? 1 : 0);
}

struct worker_arg { struct pool *p; int t; };

static void *worker(void *arg) {
    struct worker_arg *wa = arg;
    struct pool *p = wa->p;
    int t = wa->t;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        int64_t b, e;
        chunk(p, t, &b, &e);
        if (b < e) p->fn(p->bufs, p->dims, b, e);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static struct pool *pool_new(int n) {
    struct pool *p = xcalloc(1, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tid = xcalloc((size_t)n, sizeof *p->tid);
    for (int t = 1; t < n; t++) {
        struct worker_arg *wa = xcalloc(1, sizeof *wa);
        wa->p = p;
        wa->t = t;
        if (pthread_create(&p->tid[t], NULL, worker, wa) != 0) {   // fewer threads, same results
            free(wa);
            p->n = t;
            break;
        }
    }
    return p;
}

static void pool_free(struct pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n; t++) pthread_join(p->tid[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

// Small loops are not worth waking the other threads for: a wake-up and the
// wait for the slowest thread cost some 10-20 us of system time, more than a
// kernel over fewer than PARALLEL_MIN_ELEMENTS elements (its largest buffer)
// takes on one core. Results do not depend on it (each iteration writes its
// own outputs).
#define PARALLEL_MIN_ITERATIONS 4
static int64_t parallel_min_elements(void) {
    static int64_t v = -1;
    if (v < 0) {
        const char *s = getenv("ITRC_PARALLEL_MIN_ELEMENTS");
        v = s && s[0] ? atoll(s) : 32768;
    }
    return v;
}

// Runs fn over [0, hi) split into one contiguous chunk per thread of p.
static void pool_run(struct pool *p, itr_kernel_fn fn, void *const *bufs, const int64_t *dims, int64_t hi) {
    if (!p || p->n <= 1) {
        fn(bufs, dims, 0, hi);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->bufs = bufs;
    p->dims = dims;
    p->hi = hi;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    int64_t b, e;
    chunk(p, 0, &b, &e);
    if (b < e) fn(bufs, dims, b, e);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

// A kernel launch: on the pool unless it is too small to gain from it.
static void launch(struct pool *p, itr_kernel_fn fn, void *const *bufs, const int64_t *dims, int64_t hi, int64_t work) {
    if (hi < PARALLEL_MIN_ITERATIONS || work < parallel_min_elements()) fn(bufs, dims, 0, hi);
    else pool_run(p, fn, bufs, dims, hi);
}

// ---------------------------------------------------------------- the arena

// Prepacked products (backends/cpu/pgemm.h, docs/performance.md). A
// library GEMM packs its right operand on every call. An f32 product whose
// right operand is the same from call to call reads a copy packed once
// instead:
// - in a scan body, one of the scan's fixed inputs (a recurrent weight: 12
//   MB packed per step for a GRU's 3072 x 1024 weight); the copies live as
//   long as the scan's run;
// - at the top level, a parameter, when the caller numbers its parameters
//   (itr_run_options.params_version: a session's inference runs); the
//   copies live in the arena until the number changes.
// ITRC_NO_PREPACKED_GEMM=1 turns both off (A/B).
#define PREPACKED_MAX 16
struct prepacked_slot {
    int input;           // the body input, or the parameter
    bool tb;
    int64_t n, k, ldb;
    const void *data;
    float *packed;
};

struct prepacked {
    const bool *fixed;   // per body input: the same memory and contents every step (NULL: params)
    int n;
    struct prepacked_slot slot[PREPACKED_MAX];
};

static void prepacked_free(struct prepacked *pp) {
    for (int i = 0; i < pp->n; i++) free(pp->slot[i].packed);
    pp->n = 0;
}

// The memory of a top-level executable's runs (docs/memplan.md, "Schedule
// plans"): one block holding every planned intermediate value at the
// offsets of the schedule plan bound to the run's dims, and the GEMM's pack
// buffers. Both grow when a larger binding comes and are reused by every
// later run, so a run of a repeated binding allocates only its outputs and
// what the reference kernels allocate. Scan bodies use a slice of it (their
// workspace) and the same pack buffers. A run that finds the arena taken
// (the same executable run from two threads at once) allocates per value,
// as with ITRC_NO_EXEC_ARENA=1.
struct arena {
    pthread_mutex_t mu;            // held for a whole run
    char *mem;
    int64_t cap;
    int64_t grows;                 // times mem was (re)allocated
    int64_t runs;                  // runs that used it
    // The binding the plan is bound to: every symbol's (bound, value).
    bool key_valid, plan_ok;
    int key_n;
    bool *key_bound;
    int64_t *key_value;
    char *scratch[3];              // GEMM pack buffers: A, B, C
    size_t scratch_cap[3];
    int64_t scratch_grows;
    // Packed copies of the parameters the products read as right operand,
    // kept while the caller's params_version stays the same (struct
    // prepacked); their version, 0: none kept.
    struct prepacked weights;
    uint64_t weights_version;
};

// What a run allocates from: base is this executable's part of the arena
// (NULL: every value allocated on its own), ar the arena whose pack
// buffers it may use (NULL: malloc per call).
struct run_ctx {
    char *base;
    struct arena *ar;
    // A scan body's run: per output of the graph, memory to write it into
    // (NULL: none) and its bytes; the scan reuses it every step.
    struct itr_tensor *const *into;
    const int64_t *into_cap;
    // The caller's permissions for updates in place (NULL: parameters are
    // read only); top-level runs only.
    struct itr_run_options *ro;
    // The rows this run's packed scans filled with 0 (NULL: not followed).
    struct zero_rows *zr;
    // A scan body's run: its products' right operands packed once for the
    // whole scan (struct prepacked; NULL: none).
    struct prepacked *pp;
};

// Products over the mask's rows (docs/kernels.md): per value of a run, the
// rows a packed scan skipped and filled with 0, the value seen as rows over
// its first two axes (batch and scan axis, in its order). A product reading
// such a value leaves those rows out: a gradient summed over (caption, word)
// rows skips its padded words, a product of them writes 0 rows. Like the
// packed scan's proof this takes the other operand's rows to be finite.
struct zero_rows {
    int64_t *rows;      // per value: its row count (0: none known)
    int64_t *n_zero;    // per value: how many of them are 0
    uint8_t **zero;     // per value: 1 where the row is 0
};

// Value v's rows flags (rows of them), owned by z from now on.
static void zero_rows_set(struct zero_rows *z, int32_t v, uint8_t *flags, int64_t rows) {
    int64_t n = 0;
    for (int64_t i = 0; i < rows; i++) n += flags[i] != 0;
    free(z->zero[v]);
    z->zero[v] = flags;
    z->rows[v] = rows;
    z->n_zero[v] = n;
}

static void zero_rows_free(struct zero_rows *z, int n_values) {
    for (int v = 0; z->zero && v < n_values; v++) free(z->zero[v]);
    free(z->zero);
    free(z->rows);
    free(z->n_zero);
}

// ---------------------------------------------------------------- executables

struct itr_llvm_exe {
    double *step_seconds;          // ITRC_PROFILE: time spent in each step over all runs
    int64_t runs;
    const struct itr_graph *g;
    const struct kir_schedule *s;  // borrowed
    bool owns;                     // the JIT and the pool (false for scan bodies)
    struct itr_llvm_jit *jit;
    itr_kernel_fn *fns;
    struct pool *pool;
    struct itr_llvm_exe **bodies;  // per step: the compiled body of a scan, or NULL
    // Per step: the proof that the scan may skip its masked rows
    // (ir/scan_rows.h), or NULL: the scan runs every row.
    struct itr_scan_rows **packed;
    int64_t rows_run, rows_skipped;   // packed scans' body rows, over all runs (atomic)
    // Per step: the end of the run of independent kernel steps that starts
    // there and is launched at once (plan_launch_groups); i + 1: alone.
    int32_t *group_end;
    // Per step: for a GEMM whose result rows no reader uses where this value
    // (a packed scan's mask) is 0, the mask (plan_unread_rows); else -1.
    int32_t *unread_rows_mask;
    int64_t multi_launches;        // groups launched at once, over all runs (atomic)
    bool prepack;                  // scans pack their fixed right operands once (struct prepacked)
    int64_t prepacked_products;    // products run on such a copy, over all runs (atomic)
    bool any_packed;               // some step has a proof
    bool packed_products;          // products skip the rows packed scans filled with 0
    int64_t product_rows, product_rows_skipped;   // their rows (of K or M), over all runs (atomic)
    // The values to free after each step: free_vals[free_start[i] .. free_start[i+1]) are
    // those step i reads last, or produces when nothing reads them (derived once from
    // the schedule's liveness, so a run does not scan every value after every step).
    int32_t *free_start, *free_vals;
    itr_llvm_observer observe;     // itr_llvm_exe_observe; NULL: none
    void *observe_ctx;
    // The schedule plan: owned by a top-level executable; a scan body's is
    // its parent's workspace plan for that step. NULL: none (values are
    // allocated one by one).
    struct itr_memplan *plan;
    int32_t *slot;                 // per value: its buffer in plan, or -1
    int32_t *ws;                   // per step: the scan workspace's buffer in plan, or -1
    struct arena *arena;           // top-level executables only; NULL with ITRC_NO_EXEC_ARENA=1
    // Quadratic forms (plan_qforms): per step, for a GEMM whose product only
    // feeds sum(X * product, last axis), the kernel step that sums (-1: none);
    // per step, for that kernel step, the GEMM (-1: none).
    int32_t *qform_sum, *qform_gemm;
    bool any_qform;
    bool gram;                     // Gram matrices by itr_gram_f32 (ITRC_NO_GRAM_KERNEL=1: by the library)
    int64_t qform_runs;            // products replaced by a quadratic form, over all runs (atomic)
};

// Buckets the graph's intermediate values by the step after which they die.
static void plan_frees(struct itr_llvm_exe *e) {
    const struct kir_schedule *s = e->s;
    const struct itr_graph *g = e->g;
    int32_t *step_of_node = xcalloc((size_t)g->n_nodes, sizeof *step_of_node);
    for (int i = 0; i < g->n_nodes; i++) step_of_node[i] = -1;
    for (int i = 0; i < s->n_steps; i++) step_of_node[s->steps[i].node] = i;
    int32_t *at = xcalloc((size_t)g->n_values, sizeof *at);
    e->free_start = xcalloc((size_t)s->n_steps + 2, sizeof *e->free_start);
    for (int v = 0; v < g->n_values; v++) {
        at[v] = -1;
        if (g->values[v].kind != ITR_VALUE_NODE || s->last_step[v] >= s->n_steps) continue;   // inputs, outputs
        at[v] = s->last_step[v] >= 0 ? s->last_step[v] : step_of_node[g->values[v].node];
        if (at[v] >= 0) e->free_start[at[v] + 1]++;
    }
    for (int i = 0; i < s->n_steps; i++) e->free_start[i + 1] += e->free_start[i];
    e->free_vals = xcalloc((size_t)e->free_start[s->n_steps] + 1, sizeof *e->free_vals);
    int32_t *fill = xcalloc((size_t)s->n_steps + 1, sizeof *fill);
    for (int v = 0; v < g->n_values; v++)
        if (at[v] >= 0) e->free_vals[e->free_start[at[v]] + fill[at[v]]++] = v;
    free(fill);
    free(at);
    free(step_of_node);
}

// Indexes plan (may be NULL) by value and by scan step.
static void index_plan(struct itr_llvm_exe *e, struct itr_memplan *plan) {
    e->plan = plan;
    e->slot = xcalloc((size_t)e->g->n_values, sizeof *e->slot);
    e->ws = xcalloc((size_t)e->s->n_steps, sizeof *e->ws);
    for (int v = 0; v < e->g->n_values; v++) e->slot[v] = -1;
    for (int i = 0; i < e->s->n_steps; i++) e->ws[i] = -1;
    for (int i = 0; plan && i < plan->n_buffers; i++) {
        const struct itr_memplan_buffer *b = &plan->buffers[i];
        if (b->value >= 0 && b->value < e->g->n_values) e->slot[b->value] = i;
        else if (b->value < 0 && b->node >= 0 && b->node < e->s->n_steps) e->ws[b->node] = i;
    }
}

// Whether value v of g is read only as a scanned operand of scans that may
// skip the rows of the same mask along the same axis as step si's scan:
// then what v holds on the rows si skips is never used (scan_rows.h,
// ITR_SKIP_ANY), and not a graph output. Step `writer` (-1: none), which
// writes v, does not count as a reader.
static bool read_only_by_packed(const struct itr_llvm_exe *e, int si, int32_t v, int writer) {
    const struct itr_graph *g = e->g;
    const struct itr_node *n = &g->nodes[e->s->steps[si].node];
    int32_t mask = n->inputs[e->packed[si]->mask];
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) return false;
    for (int j = 0; j < e->s->n_steps; j++) {   // a fused kernel or a product reads what its buffers name
        const struct kir_step *st = &e->s->steps[j];
        if (j == writer) continue;
        if (st->kind == KIR_STEP_GEMM && (st->gemm_a == v || st->gemm_b == v)) return false;
        for (int b = 0; st->kind == KIR_STEP_KERNEL && b < st->n_bufs; b++)
            if (st->bufs[b] == v) return false;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *r = &g->nodes[i];
        bool reads = false;
        for (int q = 0; q < r->n_inputs; q++) reads = reads || r->inputs[q] == v;
        if (!reads) continue;
        int j = 0;
        while (j < e->s->n_steps && !(e->s->steps[j].node == i && e->s->steps[j].kind == KIR_STEP_NODE)) j++;
        if (j == e->s->n_steps || !e->packed[j] || itr_node_attr_int(r, "axis") != itr_node_attr_int(n, "axis") ||
            r->inputs[e->packed[j]->mask] != mask)
            return false;
        int nc = (int)itr_node_attr_int(r, "n_carry"), ns = (int)itr_node_attr_int(r, "n_scan");
        for (int q = 0; q < r->n_inputs; q++)
            if (r->inputs[q] == v && (q < nc || q >= nc + ns)) return false;
    }
    return true;
}

// Whether the proof leaves the skipped rows of some result unspecified.
static bool leaves_rows_unspecified(const struct itr_scan_rows *r) {
    for (int o = 0; o < r->n_outputs; o++)
        if (r->fill[o] == ITR_SKIP_ANY) return true;
    return false;
}

// Step si's scan runs every row from now on.
static void drop_packed(struct itr_llvm_exe *e, int si) {
    itr_scan_rows_free(e->packed[si]);
    free(e->packed[si]);
    e->packed[si] = NULL;
}

// The proofs of the scans that may skip their masked rows. A scan whose
// skipped rows of some result are left unspecified keeps its proof only
// while every reader of that result is such a scan over the same mask
// (repeated, as dropping one proof can make another's readers fail).
static void plan_packed_scans(struct itr_llvm_exe *e) {
    if (itr_env_flag("ITRC_NO_PACKED_SCANS")) return;
    const struct kir_schedule *s = e->s;
    e->packed = xcalloc((size_t)s->n_steps, sizeof *e->packed);
    for (int i = 0; i < s->n_steps; i++) {
        if (!e->bodies[i]) continue;
        struct itr_scan_rows r;
        if (!itr_scan_rows_analyse(&e->g->nodes[s->steps[i].node], &r)) continue;
        e->packed[i] = xcalloc(1, sizeof r);
        *e->packed[i] = r;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < s->n_steps; i++) {
            struct itr_scan_rows *r = e->packed[i];
            if (!r) continue;
            const struct itr_node *n = &e->g->nodes[s->steps[i].node];
            bool keep = true;
            for (int o = 0; o < r->n_outputs && keep; o++)
                if (r->fill[o] == ITR_SKIP_ANY) keep = read_only_by_packed(e, i, n->outputs[o], -1);
            if (keep) continue;
            drop_packed(e, i);
            changed = true;
        }
    }
    for (int i = 0; i < s->n_steps; i++) e->any_packed = e->any_packed || e->packed[i];
    e->packed_products = e->any_packed && !itr_env_flag("ITRC_NO_PACKED_PRODUCTS");
}

// Multi-tensor launches (docs/kernels.md): consecutive kernel steps none of
// which reads or writes a value another one writes run as one launch on the
// pool, their iterations split by work over the threads. The optimizer's
// squared gradient norms (one serial reduction per parameter) then run side
// by side, and every parameter's Adam update is one pass with one wake-up
// of the pool. Guarded steps stay alone (they may run as their node).
// ITRC_NO_LAUNCH_GROUPS=1 launches every step alone, for A/B.
#define LAUNCH_GROUP_MAX 64

// Whether step st reads or writes value v (written_only: writes it). An
// update in place writes the output it names as well as its buffer's value.
static bool step_touches(const struct itr_llvm_exe *e, const struct kir_step *st, int32_t v, bool written_only) {
    const struct kir_kernel *k = e->s->kernels[st->kernel];
    for (int b = 0; b < st->n_bufs; b++) {
        bool w = k->bufs[b].written;
        if ((st->bufs[b] == v && (w || !written_only)) || (w && kir_step_alias(st, b) == v)) return true;
    }
    return false;
}

static bool independent_steps(const struct itr_llvm_exe *e, const struct kir_step *a, const struct kir_step *b) {
    const struct kir_kernel *ka = e->s->kernels[a->kernel], *kb = e->s->kernels[b->kernel];
    for (int i = 0; i < a->n_bufs; i++) {
        bool w = ka->bufs[i].written;
        if (step_touches(e, b, a->bufs[i], !w)) return false;
        if (w && kir_step_alias(a, i) >= 0 && step_touches(e, b, kir_step_alias(a, i), false)) return false;
    }
    for (int i = 0; i < b->n_bufs; i++) {
        if (!kb->bufs[i].written) continue;
        if (step_touches(e, a, b->bufs[i], false)) return false;
        if (kir_step_alias(b, i) >= 0 && step_touches(e, a, kir_step_alias(b, i), false)) return false;
    }
    return true;
}

// Whether step st stores a value of its own (not an update in place), which
// the memory plan may place where a value freed before it lived.
static bool allocates(const struct itr_llvm_exe *e, const struct kir_step *st) {
    const struct kir_kernel *k = e->s->kernels[st->kernel];
    for (int b = 0; b < st->n_bufs; b++)
        if (k->bufs[b].written && kir_step_alias(st, b) < 0) return true;
    return false;
}

// Quadratic forms (backends/cpu/qform.h): a GEMM Y = X @ G whose result is
// read only by q = sum(X * Y, last axis), that sum computed by a kernel step
// of its own. The GEMM step then computes q directly (run_qform), into a
// buffer of the run that the kernel step copies into place, so the memory
// plan and the schedule stay as they are: Y is never allocated. This is the
// Gram rewrite's ‖context‖² (docs/rewrites.md) in SCAN, BFAN and their
// kin. ITRC_NO_QFORM=1 turns it off (A/B).
static int32_t only_reader(const struct itr_graph *g, int32_t v, int *count) {
    int32_t who = -1;
    *count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_inputs; j++)
            if (g->nodes[i].inputs[j] == v) {
                (*count)++;
                who = i;
            }
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) (*count)++;
    return who;
}

static int32_t qform_match(const struct itr_llvm_exe *e, int si) {
    const struct itr_graph *g = e->g;
    const struct kir_schedule *s = e->s;
    const struct kir_step *st = &s->steps[si];
    if (st->kind != KIR_STEP_GEMM || st->gemm_view_a >= 0 || st->gemm_view_b >= 0) return -1;
    const struct itr_node *mm = &g->nodes[st->node];
    if (mm->op != ITR_OP_MATMUL || mm->n_outputs != 1) return -1;
    int32_t x = mm->inputs[0], y = mm->outputs[0];
    const struct itr_type *tx = &g->values[x].type, *ty = &g->values[y].type;
    if (!itr_type_equal(tx, ty) || (tx->dtype != ITR_F32 && tx->dtype != ITR_F64) || tx->rank < 2) return -1;
    int uses;
    int32_t mi = only_reader(g, y, &uses);
    if (uses != 1) return -1;
    const struct itr_node *mul = &g->nodes[mi];
    if (mul->op != ITR_OP_MUL || !((mul->inputs[0] == x && mul->inputs[1] == y) ||
                                   (mul->inputs[0] == y && mul->inputs[1] == x)))
        return -1;
    int32_t prod = mul->outputs[0];
    if (s->materialised[prod] || !itr_type_equal(&g->values[prod].type, ty)) return -1;
    int32_t si_sum = only_reader(g, prod, &uses);
    if (uses != 1) return -1;
    const struct itr_node *sum = &g->nodes[si_sum];
    const struct itr_attr *ax = itr_node_attr(sum, "axes");
    if (sum->op != ITR_OP_SUM || !ax || ax->u.ints.n != 1 ||
        (ax->u.ints.v[0] != -1 && ax->u.ints.v[0] != ty->rank - 1))
        return -1;
    int32_t q = sum->outputs[0];
    for (int t = si + 1; t < s->n_steps; t++) {
        const struct kir_step *kt = &s->steps[t];
        if (kt->kind == KIR_STEP_KERNEL && kt->node == si_sum) {
            if (kt->guard_count >= 0 || kt->alias || !s->materialised[q]) return -1;
            const struct kir_kernel *k = s->kernels[kt->kernel];
            for (int b = 0; b < k->n_bufs; b++)
                if (k->bufs[b].written && kt->bufs[b] != q) return -1;
            // Y is read by that step alone.
            for (int o = si + 1; o < s->n_steps; o++)
                if (o != t && ((s->steps[o].kind == KIR_STEP_KERNEL && step_touches(e, &s->steps[o], y, false)) ||
                               (s->steps[o].kind == KIR_STEP_GEMM &&
                                (s->steps[o].gemm_a == y || s->steps[o].gemm_b == y))))
                    return -1;
            return t;
        }
        if (kt->kind != KIR_STEP_KERNEL && kt->kind != KIR_STEP_GEMM) return -1;
    }
    return -1;
}

static void plan_qforms(struct itr_llvm_exe *e) {
    const struct kir_schedule *s = e->s;
    e->qform_sum = xcalloc((size_t)s->n_steps + 1, sizeof *e->qform_sum);
    e->qform_gemm = xcalloc((size_t)s->n_steps + 1, sizeof *e->qform_gemm);
    for (int i = 0; i <= s->n_steps; i++) e->qform_sum[i] = e->qform_gemm[i] = -1;
    if (itr_env_flag("ITRC_NO_QFORM")) return;
    for (int i = 0; i < s->n_steps; i++) {
        int32_t t = qform_match(e, i);
        if (t < 0) continue;
        e->qform_sum[i] = t;
        e->qform_gemm[t] = i;
        e->any_qform = true;
    }
}

static void plan_launch_groups(struct itr_llvm_exe *e) {
    const struct kir_schedule *s = e->s;
    e->group_end = xcalloc((size_t)s->n_steps + 1, sizeof *e->group_end);
    bool off = itr_env_flag("ITRC_NO_LAUNCH_GROUPS");
    for (int i = 0; i < s->n_steps;) {
        int j = i + 1;
        const struct kir_step *si = &s->steps[i];
        bool groupable = !off && si->kind == KIR_STEP_KERNEL && si->guard_count < 0 && e->qform_gemm[i] < 0;
        while (groupable && j < s->n_steps && j - i < LAUNCH_GROUP_MAX) {
            const struct kir_step *sj = &s->steps[j];
            if (sj->kind != KIR_STEP_KERNEL || sj->guard_count >= 0 || e->qform_gemm[j] >= 0) break;
            // A value freed after a step of the group (its last reader's) may
            // share memory with a later step's result: that one waits.
            bool ok = !(allocates(e, sj) && e->free_start[j] > e->free_start[i]);
            for (int q = i; q < j && ok; q++) ok = independent_steps(e, &s->steps[q], sj);
            if (!ok) break;
            j++;
        }
        for (int q = i; q < j; q++) e->group_end[q] = j;
        i = j;
    }
}

// Whether value x is v or computed from it.
static bool derives_from(const struct itr_graph *g, int32_t x, int32_t v, uint8_t *seen) {
    if (x == v) return true;
    if (seen[x]) return false;
    seen[x] = 1;
    const struct itr_value *xv = &g->values[x];
    if (xv->kind != ITR_VALUE_NODE || xv->node < 0) return false;
    const struct itr_node *n = &g->nodes[xv->node];
    for (int i = 0; i < n->n_inputs; i++)
        if (derives_from(g, n->inputs[i], v, seen)) return true;
    return false;
}

// The mask of the packed scan that alone reads w (as a scanned operand;
// step `writer` writes it), or -1. *axis: the scan's axis.
static int32_t packed_reader_mask(const struct itr_llvm_exe *e, int32_t w, int writer, int64_t *axis) {
    for (int j = 0; j < e->s->n_steps; j++) {
        if (!e->packed[j]) continue;
        const struct itr_node *n = &e->g->nodes[e->s->steps[j].node];
        bool reads = false;
        for (int q = 0; q < n->n_inputs; q++) reads = reads || n->inputs[q] == w;
        if (!reads) continue;
        if (!read_only_by_packed(e, j, w, writer)) return -1;
        *axis = itr_node_attr_int(n, "axis");
        return n->inputs[e->packed[j]->mask];
    }
    return -1;
}

// The forward input projection of a recurrence, x W_ihᵀ, feeds the packed
// scans through one elementwise kernel (the bias's add): its rows where
// the scans' mask is 0 are read by nothing that uses them. For GEMM step gi
// (A read as stored, its rows C's) that is the mask: C's result reaches
// only packed scans over it, directly or through one kernel each of whose
// stored values is an elementwise op of C's shape with C as an operand and
// the others not computed from C (so row r of it depends on row r of C
// alone). -1: some reader may use every row.
static int32_t unread_rows_of(const struct itr_llvm_exe *e, int gi, uint8_t *seen) {
    const struct itr_graph *g = e->g;
    const struct kir_schedule *s = e->s;
    if (s->steps[gi].trans_a) return -1;
    int32_t v = g->nodes[s->steps[gi].node].outputs[0];
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) return -1;
    int reader = -1;
    for (int j = 0; j < s->n_steps; j++) {
        const struct kir_step *st = &s->steps[j];
        if (j == gi) continue;
        if (st->kind == KIR_STEP_GEMM && (st->gemm_a == v || st->gemm_b == v)) return -1;
        for (int b = 0; st->kind == KIR_STEP_KERNEL && b < st->n_bufs; b++)
            if (st->bufs[b] == v) {
                if (reader >= 0 && reader != j) return -1;
                reader = j;
            }
    }
    int64_t axis = 0;
    if (reader < 0) return packed_reader_mask(e, v, gi, &axis);
    for (int j = 0; j < s->n_steps; j++) {   // no node step reads C itself
        const struct itr_node *n = &g->nodes[s->steps[j].node];
        for (int q = 0; s->steps[j].kind == KIR_STEP_NODE && q < n->n_inputs; q++)
            if (n->inputs[q] == v) return -1;
    }
    const struct kir_step *st = &s->steps[reader];
    const struct kir_kernel *k = s->kernels[st->kernel];
    if (st->alias || st->guard_count >= 0) return -1;
    int32_t mask = -1;
    int64_t mask_axis = 0;
    for (int b = 0; b < st->n_bufs; b++) {
        if (!k->bufs[b].written) continue;
        int32_t w = st->bufs[b];
        const struct itr_value *wv = &g->values[w];
        if (wv->kind != ITR_VALUE_NODE || wv->node < 0 || !itr_type_equal(&wv->type, &g->values[v].type)) return -1;
        const struct itr_node *n = &g->nodes[wv->node];
        if (itr_op_info(n->op)->cls != ITR_CLASS_ELEMENTWISE) return -1;
        bool direct = false;
        for (int q = 0; q < n->n_inputs; q++) {
            if (n->inputs[q] == v) {
                direct = true;
                continue;
            }
            memset(seen, 0, (size_t)g->n_values);
            if (derives_from(g, n->inputs[q], v, seen)) return -1;
        }
        int32_t m = packed_reader_mask(e, w, reader, &axis);
        if (!direct || m < 0 || (mask >= 0 && (m != mask || axis != mask_axis))) return -1;
        mask = m;
        mask_axis = axis;
    }
    return mask;
}

static void plan_unread_rows(struct itr_llvm_exe *e) {
    e->unread_rows_mask = xcalloc((size_t)e->s->n_steps + 1, sizeof *e->unread_rows_mask);
    uint8_t *seen = xcalloc((size_t)e->g->n_values + 1, 1);
    for (int i = 0; i < e->s->n_steps; i++)
        e->unread_rows_mask[i] = e->packed_products && e->s->steps[i].kind == KIR_STEP_GEMM ? unread_rows_of(e, i, seen)
                                                                                          : -1;
    free(seen);
}

// A scan body's executable shares its parent's JIT and thread pool, and
// its plan is the parent plan's workspace for that step.
static struct itr_llvm_exe *exe_build(const struct itr_graph *g, const struct kir_schedule *s, struct itr_llvm_jit *jit,
                                      struct pool *pool, bool owns, struct itr_memplan *plan, struct itr_diags *d) {
    struct itr_llvm_exe *e = xcalloc(1, sizeof *e);
    e->g = g;
    e->s = s;
    e->owns = owns;
    e->jit = jit;
    e->pool = pool;
    e->fns = xcalloc((size_t)s->n_kernels, sizeof *e->fns);
    e->bodies = xcalloc((size_t)s->n_steps, sizeof *e->bodies);
    plan_frees(e);
    plan_qforms(e);
    plan_launch_groups(e);
    index_plan(e, plan);
    if (itr_env_flag("ITRC_PROFILE")) e->step_seconds = xcalloc((size_t)s->n_steps, sizeof *e->step_seconds);
    e->prepack = itr_pgemm_available() && !itr_env_flag("ITRC_NO_PREPACKED_GEMM");
    e->gram = !itr_env_flag("ITRC_NO_GRAM_KERNEL");
    if (s->n_kernels && !itr_llvm_compile(jit, s->kernels, s->n_kernels, e->fns, d)) {
        itr_llvm_exe_free(e);
        return NULL;
    }
    for (int i = 0; i < s->n_steps; i++) {
        if (!s->steps[i].body) continue;
        const struct itr_attr *ba = itr_node_attr(&g->nodes[s->steps[i].node], "body");
        struct itr_memplan *bp = plan && e->ws[i] >= 0 ? plan->buffers[e->ws[i]].body : NULL;
        e->bodies[i] = exe_build(ba->u.graph, s->steps[i].body, jit, pool, false, bp, d);
        if (!e->bodies[i]) {
            itr_llvm_exe_free(e);
            return NULL;
        }
    }
    plan_packed_scans(e);
    plan_unread_rows(e);
    return e;
}

struct itr_llvm_exe *itr_llvm_exe_new(const struct itr_graph *g, const struct kir_schedule *s, int threads,
                                      struct itr_diags *d) {
    struct itr_llvm_jit *jit = itr_llvm_jit_new(d);
    if (!jit) return NULL;
    // Without a plan (ITRC_NO_EXEC_ARENA=1, for A/B measurements, or a
    // schedule the planner rejects) every value is allocated on its own.
    struct itr_memplan *plan = NULL;
    if (!itr_env_flag("ITRC_NO_EXEC_ARENA")) {
        struct itr_diags local;
        itr_diags_init(&local);
        plan = itr_memplan_build_schedule(g->prog, g, s, &local);
        itr_diags_free(&local);
    }
    // On failure exe_build has freed the JIT, the pool and the plan.
    struct itr_llvm_exe *e = exe_build(g, s, jit, threads > 1 ? pool_new(threads) : NULL, true, plan, d);
    if (e && plan) {
        e->arena = xcalloc(1, sizeof *e->arena);
        pthread_mutex_init(&e->arena->mu, NULL);
    }
    return e;
}

static void arena_free(struct arena *ar) {
    if (!ar) return;
    pthread_mutex_destroy(&ar->mu);
    ARENA_UNPOISON(ar->mem, ar->cap);
    free(ar->mem);
    for (int i = 0; i < 3; i++) free(ar->scratch[i]);
    prepacked_free(&ar->weights);
    free(ar->key_bound);
    free(ar->key_value);
    free(ar);
}

// The arena for a run of top-level executable e under dims (taken with its
// lock held): the plan is bound again when the binding differs from the last
// one, and the memory grows when the plan needs more. NULL: this run
// allocates per value (a size the plan cannot evaluate, out of memory).
static char *arena_prepare(struct itr_llvm_exe *e, struct arena *ar, const struct itr_dim_bindings *dims) {
    bool same = ar->key_valid && ar->key_n == dims->n;
    for (int i = 0; same && i < dims->n; i++)
        same = ar->key_bound[i] == dims->bound[i] && (!dims->bound[i] || ar->key_value[i] == dims->value[i]);
    if (!same) {
        ar->plan_ok = itr_memplan_bind(e->plan, dims, NULL, NULL);
#ifdef ITR_ARENA_ASAN
        char why[512];
        if (ar->plan_ok && !itr_memplan_verify(e->plan, why, sizeof why)) {
            fprintf(stderr, "itrc: internal error: the executor's memory plan is wrong: %s\n", why);
            abort();
        }
#endif
        if (ar->key_n != dims->n) {
            free(ar->key_bound);
            free(ar->key_value);
            ar->key_bound = xcalloc((size_t)dims->n + 1, sizeof *ar->key_bound);
            ar->key_value = xcalloc((size_t)dims->n + 1, sizeof *ar->key_value);
            ar->key_n = dims->n;
        }
        for (int i = 0; i < dims->n; i++) {
            ar->key_bound[i] = dims->bound[i];
            ar->key_value[i] = dims->value[i];
        }
        ar->key_valid = true;
    }
    if (!ar->plan_ok) return NULL;
    int64_t need = e->plan->arena_bytes;
    if (need > ar->cap) {
        ARENA_UNPOISON(ar->mem, ar->cap);
        free(ar->mem);
        ar->cap = 0;
        ar->mem = aligned_alloc(ITR_MEMPLAN_ALIGN, (size_t)need);   // need is a multiple of the alignment
        if (!ar->mem) return NULL;
        ar->cap = need;
        ar->grows++;
    }
    if (!ar->mem) return NULL;
    ARENA_POISON(ar->mem, ar->cap);
    ar->runs++;
    return ar->mem;
}

const struct itr_memplan *itr_llvm_exe_plan(const struct itr_llvm_exe *e) { return e->plan; }

void itr_llvm_exe_arena_stats(const struct itr_llvm_exe *e, struct itr_llvm_arena_stats *out) {
    memset(out, 0, sizeof *out);
    if (!e->arena) return;
    struct arena *ar = e->arena;
    pthread_mutex_lock(&ar->mu);
    out->plan_bytes = ar->plan_ok && e->plan->bound ? e->plan->arena_bytes : 0;
    out->capacity = ar->cap;
    out->grows = ar->grows;
    out->runs = ar->runs;
    for (int i = 0; i < 3; i++) out->scratch_bytes += (int64_t)ar->scratch_cap[i];
    out->scratch_grows = ar->scratch_grows;
    pthread_mutex_unlock(&ar->mu);
}

int64_t itr_llvm_exe_multi_launches(const struct itr_llvm_exe *e) {
    return e ? __atomic_load_n(&e->multi_launches, __ATOMIC_RELAXED) : 0;
}

void itr_llvm_exe_product_rows(const struct itr_llvm_exe *e, int64_t *rows, int64_t *skipped) {
    if (!e) return;
    *rows += __atomic_load_n(&e->product_rows, __ATOMIC_RELAXED);
    *skipped += __atomic_load_n(&e->product_rows_skipped, __ATOMIC_RELAXED);
}

void itr_llvm_exe_packed_rows(const struct itr_llvm_exe *e, int64_t *run, int64_t *skipped) {
    if (!e) return;
    *run += __atomic_load_n(&e->rows_run, __ATOMIC_RELAXED);
    *skipped += __atomic_load_n(&e->rows_skipped, __ATOMIC_RELAXED);
    for (int i = 0; e->bodies && i < e->s->n_steps; i++) itr_llvm_exe_packed_rows(e->bodies[i], run, skipped);
}

int64_t itr_llvm_exe_qform_runs(const struct itr_llvm_exe *e) {
    if (!e) return 0;
    int64_t n = __atomic_load_n(&e->qform_runs, __ATOMIC_RELAXED);
    for (int i = 0; e->bodies && i < e->s->n_steps; i++) n += itr_llvm_exe_qform_runs(e->bodies[i]);
    return n;
}

int64_t itr_llvm_exe_prepacked_products(const struct itr_llvm_exe *e) {
    if (!e) return 0;
    int64_t n = __atomic_load_n(&e->prepacked_products, __ATOMIC_RELAXED);
    for (int i = 0; e->bodies && i < e->s->n_steps; i++) n += itr_llvm_exe_prepacked_products(e->bodies[i]);
    return n;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct step_time { int step; double s; };

static int by_time_desc(const void *a, const void *b) {
    double x = ((const struct step_time *)a)->s, y = ((const struct step_time *)b)->s;
    return x < y ? 1 : x > y ? -1 : 0;
}

// ITRC_PROFILE=1: where the time of this executable's runs went, the
// costliest 15 steps first (stderr, when the executable is released);
// ITRC_PROFILE=N (N > 1): the costliest N.
static void print_profile(const struct itr_llvm_exe *e) {
    const char *prof = getenv("ITRC_PROFILE");
    long top = prof ? strtol(prof, NULL, 10) : 0;
    if (top <= 1) top = 15;
    const struct kir_schedule *s = e->s;
    double total = 0;
    struct step_time *t = xcalloc((size_t)s->n_steps, sizeof *t);
    for (int i = 0; i < s->n_steps; i++) {
        t[i] = (struct step_time){ i, e->step_seconds[i] };
        total += e->step_seconds[i];
    }
    qsort(t, (size_t)s->n_steps, sizeof *t, by_time_desc);
    fprintf(stderr, "profile of '%s': %lld runs, %.4f s in %d steps\n", e->g->name, (long long)e->runs, total,
            s->n_steps);
    for (int i = 0; i < s->n_steps && i < top; i++) {
        const struct kir_step *st = &s->steps[t[i].step];
        const struct itr_node *n = &e->g->nodes[st->node];
        const char *what = st->kind == KIR_STEP_KERNEL ? s->kernels[st->kernel]->name
                           : st->kind == KIR_STEP_GEMM ? "gemm" : itr_op_name(n->op);
        fprintf(stderr, "  %6.2f%%  %9.4f s  step %d %s -> %s%s%s\n", total > 0 ? 100 * t[i].s / total : 0, t[i].s,
                t[i].step, what, e->g->values[n->outputs[0]].name, n->scope ? " in " : "", n->scope ? n->scope : "");
    }
    free(t);
}

void itr_llvm_exe_free(struct itr_llvm_exe *e) {
    if (!e) return;
    if (e->step_seconds) {
        print_profile(e);
        free(e->step_seconds);
    }
    for (int i = 0; e->bodies && i < e->s->n_steps; i++) itr_llvm_exe_free(e->bodies[i]);
    free(e->bodies);
    for (int i = 0; e->packed && i < e->s->n_steps; i++)
        if (e->packed[i]) drop_packed(e, i);
    free(e->packed);
    free(e->free_start);
    free(e->group_end);
    free(e->qform_sum);
    free(e->qform_gemm);
    free(e->unread_rows_mask);
    free(e->free_vals);
    free(e->fns);
    free(e->slot);
    free(e->ws);
    if (e->owns) {
        pool_free(e->pool);
        itr_llvm_jit_free(e->jit);
        itr_memplan_free(e->plan);
        arena_free(e->arena);
    }
    free(e);
}

const struct kir_schedule *itr_llvm_exe_schedule(const struct itr_llvm_exe *e) { return e->s; }

void itr_llvm_exe_observe(struct itr_llvm_exe *e, itr_llvm_observer fn, void *ctx) {
    e->observe = fn;
    e->observe_ctx = ctx;
    // An observer sees whole values: a scan that would leave the skipped
    // rows of a result unspecified runs every row (its readers may still
    // skip theirs; what they skip does not depend on those rows).
    for (int i = 0; fn && e->packed && i < e->s->n_steps; i++)
        if (e->packed[i] && leaves_rows_unspecified(e->packed[i])) drop_packed(e, i);
}

// Hands the observer what step si (run as_node or not) wrote.
static void observe_step(const struct itr_llvm_exe *e, int si, bool as_node, struct itr_tensor *const *val) {
    const struct kir_step *st = &e->s->steps[si];
    const struct itr_node *n = &e->g->nodes[st->node];
    if (st->kind == KIR_STEP_KERNEL && !as_node) {
        const struct kir_kernel *k = e->s->kernels[st->kernel];
        for (int b = 0; b < k->n_bufs; b++)
            if (k->bufs[b].written && val[st->bufs[b]]) e->observe(e->observe_ctx, si, st->bufs[b], val[st->bufs[b]]);
    } else {
        int nout = st->kind == KIR_STEP_GEMM ? 1 : n->n_outputs;
        for (int k = 0; k < nout; k++)
            if (val[n->outputs[k]]) e->observe(e->observe_ctx, si, n->outputs[k], val[n->outputs[k]]);
    }
}

static int64_t eval_dim(const struct itr_program *p, const struct itr_dim_bindings *b, itr_dim d, bool *ok) {
    int64_t v = 0;
    int32_t unbound;
    if (!itr_dim_eval(p, d, b->value, b->bound, &v, &unbound)) *ok = false;
    return v;
}

// The shape, dtype and bytes (at least 64, so that the clamped loads of pad
// and concat stay inside even an empty buffer) of value v under b.
static bool value_layout(const struct itr_graph *g, const struct itr_value *v, bool f64,
                         const struct itr_dim_bindings *b, int64_t *shape, enum itr_dtype *dt, size_t *bytes,
                         struct itr_diags *d) {
    char what[200];
    snprintf(what, sizeof what, "value '%s'", v->name ? v->name : "?");
    if (!itr_eval_shape(b, g->prog, &v->type, shape, what, d)) return false;
    *dt = f64 && v->type.dtype == ITR_F32 ? ITR_F64 : v->type.dtype;
    int64_t n;
    if (!itr_shape_numel(v->type.rank, shape, &n) || n > INT64_MAX / 8) {
        itr_diag_error(d, v->loc, "value '%s' is too large to allocate", v->name);
        return false;
    }
    *bytes = (size_t)n * itr_dtype_size(*dt);
    if (*bytes < 64) *bytes = 64;
    return true;
}

// A tensor of its own for value v.
static struct itr_tensor *alloc_value(const struct itr_graph *g, const struct itr_value *v, bool f64,
                                      const struct itr_dim_bindings *b, struct itr_diags *d) {
    int64_t shape[ITR_MAX_RANK];
    enum itr_dtype dt;
    size_t bytes;
    if (!value_layout(g, v, f64, b, shape, &dt, &bytes, d)) return NULL;
    void *data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!data) {
        itr_diag_error(d, v->loc, "out of memory allocating '%s' (%zu bytes)", v->name, bytes);
        return NULL;
    }
    struct itr_tensor *t = itr_tensor_wrap(dt, v->type.rank, shape, data);
    if (!t) {
        free(data);
        itr_diag_error(d, v->loc, "out of memory allocating '%s'", v->name);
        return NULL;
    }
    t->owns_data = true;
    return t;
}

// A tensor for value vi of e: at its place in the arena when the run has
// one and the plan gives vi a place that holds it, else of its own.
static struct itr_tensor *new_value(const struct itr_llvm_exe *e, const struct run_ctx *rc, int32_t vi,
                                    const struct itr_dim_bindings *b, struct itr_diags *d) {
    const struct itr_value *v = &e->g->values[vi];
    for (int k = 0; rc->into && k < e->g->n_outputs; k++) {
        if (e->g->outputs[k] != vi || !rc->into[k]) continue;
        int64_t shape[ITR_MAX_RANK];
        enum itr_dtype dt;
        size_t bytes;
        if (!value_layout(e->g, v, e->s->f64, b, shape, &dt, &bytes, d)) return NULL;
        if ((int64_t)bytes > rc->into_cap[k]) break;
        struct itr_tensor *t = itr_tensor_wrap(dt, v->type.rank, shape, rc->into[k]->data);
        if (!t) itr_diag_error(d, v->loc, "out of memory allocating '%s'", v->name);
        return t;
    }
    if (!rc->base || e->slot[vi] < 0) return alloc_value(e->g, v, e->s->f64, b, d);
    const struct itr_memplan_buffer *pb = &e->plan->buffers[e->slot[vi]];
    int64_t shape[ITR_MAX_RANK];
    enum itr_dtype dt;
    size_t bytes;
    if (!value_layout(e->g, v, e->s->f64, b, shape, &dt, &bytes, d)) return NULL;
    // The plan sized it from the same dims; a dim bound later in the run
    // (bytes 0) or any disagreement falls back to an allocation.
    if ((int64_t)bytes > pb->bytes) return alloc_value(e->g, v, e->s->f64, b, d);
    char *data = rc->base + pb->offset;
    ARENA_UNPOISON(data, pb->bytes);
#ifdef ITR_ARENA_ASAN
    memset(data, 0xff, (size_t)pb->bytes);
#endif
    struct itr_tensor *t = itr_tensor_wrap(dt, v->type.rank, shape, data);
    if (!t) itr_diag_error(d, v->loc, "out of memory allocating '%s'", v->name);
    return t;
}

// Frees a value's tensor; one in the arena only gives its bytes back.
static void release_value(const struct itr_llvm_exe *e, const struct run_ctx *rc, int32_t vi, struct itr_tensor *t) {
    if (!t) return;
    if (!t->owns_data && rc->base && e->slot[vi] >= 0) {
        const struct itr_memplan_buffer *pb = &e->plan->buffers[e->slot[vi]];
        if (t->data == rc->base + pb->offset) ARENA_POISON(t->data, pb->bytes);
    }
    itr_tensor_free(t);
}

static char *value_what(const struct itr_value *v, char *buf, size_t n) {
    snprintf(buf, n, "%s '%s'", v->kind == ITR_VALUE_PARAM ? "param" : "input", v->name ? v->name : "?");
    return buf;
}

// Binds inputs and parameters exactly as the reference interpreter does and
// widens f32 tensors in f64 runs.
static bool bind_inputs(const struct itr_llvm_exe *e, struct itr_tensor *const *inputs,
                        struct itr_tensor *const *params, struct itr_dim_bindings *dims, struct itr_tensor **val,
                        bool *owned, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    const struct itr_program *p = g->prog;
    int nv = g->n_values, nb = 0;
    const struct itr_type **types = xcalloc((size_t)nv, sizeof *types);
    const struct itr_tensor **xs = xcalloc((size_t)nv, sizeof *xs);
    char (*what)[160] = xcalloc((size_t)nv, sizeof *what);
    const char **whats = xcalloc((size_t)nv, sizeof *whats);
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        types[nb] = &v->type;
        xs[nb] = val[g->inputs[i]] = inputs ? inputs[i] : NULL;
        whats[nb] = value_what(v, what[nb], sizeof what[nb]);
        nb++;
    }
    for (int vi = 0; vi < nv; vi++) {
        const struct itr_value *v = &g->values[vi];
        if (v->kind != ITR_VALUE_PARAM) continue;
        types[nb] = &v->type;
        xs[nb] = val[vi] = params && v->param >= 0 && v->param < p->n_params ? params[v->param] : NULL;
        whats[nb] = value_what(v, what[nb], sizeof what[nb]);
        nb++;
    }
    bool ok = itr_bind_tensors(dims, p, nb, types, xs, whats, e->s->f64, d);
    free(types);
    free(xs);
    free(what);
    free(whats);
    if (!ok) return false;
    itr_bind_defaults(dims, p);
    for (int vi = 0; vi < nv; vi++) {
        if (!val[vi] || !e->s->f64 || val[vi]->dtype != ITR_F32) continue;
        val[vi] = itr_tensor_cast(val[vi], ITR_F64);
        if (!val[vi]) {
            itr_diag_error(d, g->values[vi].loc, "out of memory widening '%s' to f64", g->values[vi].name);
            return false;
        }
        owned[vi] = true;
    }
    return true;
}

// A random op draws every element from (seed, salt, index) alone (ir/rng.h),
// so its result is filled in blocks on the pool: the same values as the
// reference's one loop, in a fraction of the time (a transformer's dropout
// masks were a sixth of TERN's training step on that loop).
struct rng_job { struct itr_rng_fill f; char *out; bool f64; int64_t n; };

#define RNG_BLOCK 4096

static void rng_blocks(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct rng_job *j = bufs[0];
    int64_t b = lo * RNG_BLOCK, end = hi * RNG_BLOCK < j->n ? hi * RNG_BLOCK : j->n;
    if (b < end) itr_rng_fill_range(&j->f, j->out + (size_t)b * (j->f64 ? 8 : 4), j->f64, b, end);
}

// False with nothing done when the reference should run n instead (it
// reports a seed that is not a scalar).
static bool run_random_step(const struct itr_llvm_exe *e, const struct itr_node *n, struct itr_dim_bindings *dims,
                            struct itr_tensor **val, bool *owned, bool *ok, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    const struct itr_tensor *seed = val[n->inputs[0]];
    if (!seed || itr_tensor_numel(seed) != 1 || (seed->dtype != ITR_I32 && seed->dtype != ITR_I64)) return false;
    struct itr_tensor *y = alloc_value(g, &g->values[n->outputs[0]], e->s->f64, dims, d);
    *ok = y != NULL;
    if (!y) return true;
    int64_t s = seed->dtype == ITR_I64 ? *(const int64_t *)seed->data : *(const int32_t *)seed->data;
    struct rng_job j = { .out = y->data, .f64 = y->dtype == ITR_F64, .n = itr_tensor_numel(y) };
    itr_rng_fill_of_node(n, g->values[n->outputs[0]].type.dtype, (uint64_t)s, &j.f);
    void *bufs[1] = { &j };
    launch(e->pool, rng_blocks, bufs, NULL, (j.n + RNG_BLOCK - 1) / RNG_BLOCK, j.n);
    val[n->outputs[0]] = y;
    owned[n->outputs[0]] = true;
    return true;
}

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

// sort and topk order every line along the axis on its own, so the lines
// are split over the pool; each is sorted by the reference's code (the same
// order, ties by index). VSE∞'s GPO sorts 131 K lines of 36 values a batch.
struct sort_job { const struct itr_tensor *x; int ax; bool descending; int64_t k, lines; struct itr_tensor *vals, *idx; };

#define SORT_BLOCK 256

static void sort_blocks(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct sort_job *j = bufs[0];
    int64_t b = lo * SORT_BLOCK, end = hi * SORT_BLOCK < j->lines ? hi * SORT_BLOCK : j->lines;
    if (!itr_ref_sort_lines(j->x, j->ax, j->descending, j->k, b, end, j->vals, j->idx)) {
        fprintf(stderr, "itr: out of memory sorting\n");
        abort();
    }
}

// As run_random_step: false with nothing done when the reference should run
// n (and report what is wrong with it).
static bool run_sort_step(const struct itr_llvm_exe *e, const struct itr_node *n, struct itr_dim_bindings *dims,
                          struct itr_tensor **val, bool *owned, bool *ok, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    const struct itr_tensor *x = val[n->inputs[0]];
    if (!x || x->rank == 0) return false;
    int64_t axis = itr_node_attr_int(n, "axis");
    int ax = norm_axis(axis, x->rank);
    if (ax < 0 || ax >= x->rank) return false;
    bool topk = n->op == ITR_OP_TOPK;
    int64_t k = topk ? itr_node_attr_int(n, "k") : x->shape[ax];
    if (k < 0 || k > x->shape[ax]) return false;
    struct itr_tensor *out[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++) {
        out[i] = alloc_value(g, &g->values[n->outputs[i]], e->s->f64, dims, d);
        if (!out[i]) {
            itr_tensor_free(out[0]);
            *ok = false;
            return true;
        }
    }
    bool fits = out[0]->dtype == x->dtype && out[1]->dtype == ITR_I64 && out[0]->rank == x->rank &&
                out[1]->rank == x->rank;
    for (int i = 0; fits && i < x->rank; i++)
        fits = out[0]->shape[i] == (i == ax ? k : x->shape[i]) && out[1]->shape[i] == out[0]->shape[i];
    if (!fits) {
        itr_tensor_free(out[0]);
        itr_tensor_free(out[1]);
        return false;
    }
    int64_t lines = x->shape[ax] == 0 ? 0 : itr_tensor_numel(x) / x->shape[ax];
    struct sort_job j = { x, ax, topk ? itr_node_attr_int(n, "largest") != 0 : itr_node_attr_int(n, "descending") != 0,
                          k, lines, out[0], out[1] };
    void *bufs[1] = { &j };
    launch(e->pool, sort_blocks, bufs, NULL, (lines + SORT_BLOCK - 1) / SORT_BLOCK, itr_tensor_numel(x));
    for (int i = 0; i < 2; i++) {
        val[n->outputs[i]] = out[i];
        owned[n->outputs[i]] = true;
    }
    *ok = true;
    return true;
}

static bool run_node_step(const struct itr_llvm_exe *e, const struct itr_node *n, struct itr_dim_bindings *dims,
                          struct itr_tensor **val, bool *owned, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    bool random_ok, sort_ok;
    if ((n->op == ITR_OP_SORT || n->op == ITR_OP_TOPK) && run_sort_step(e, n, dims, val, owned, &sort_ok, d))
        return sort_ok;
    if ((n->op == ITR_OP_RANDOM_UNIFORM || n->op == ITR_OP_RANDOM_NORMAL || n->op == ITR_OP_RANDOM_BERNOULLI) &&
        run_random_step(e, n, dims, val, owned, &random_ok, d))
        return random_ok;
    struct itr_tensor *in_buf[64], *out_buf[16];
    struct itr_tensor **in = n->n_inputs > 64 ? xcalloc((size_t)n->n_inputs, sizeof *in) : in_buf;
    bool ok = n->n_outputs <= 16;
    if (!ok) itr_diag_error(d, n->loc, "op '%s': more than 16 results", itr_op_name(n->op));
    bool *tmp = xcalloc((size_t)(n->n_inputs ? n->n_inputs : 1), sizeof *tmp);
    for (int k = 0; k < n->n_inputs && ok; k++) {
        in[k] = val[n->inputs[k]];
        if (!in[k]) {
            // A fused operand of a guarded step: it has no elements then.
            in[k] = alloc_value(g, &g->values[n->inputs[k]], e->s->f64, dims, d);
            tmp[k] = true;
            if (!in[k]) ok = false;
        }
    }
    struct itr_ref_options ro = { .f64 = e->s->f64 };
    if (ok) ok = itr_ref_run_node(g, n, in, dims, &ro, out_buf, d);
    for (int k = 0; k < n->n_inputs; k++)
        if (tmp[k]) itr_tensor_free(in[k]);
    free(tmp);
    if (in != in_buf) free(in);
    if (!ok) return false;
    for (int k = 0; k < n->n_outputs; k++) {
        val[n->outputs[k]] = out_buf[k];
        owned[n->outputs[k]] = true;
    }
    return true;
}

// The reference's message form for a node's run-time error (ref_error).
static bool node_error(const struct itr_node *n, struct itr_diags *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool node_error(const struct itr_node *n, struct itr_diags *d, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n->scope) itr_diag_error(d, n->loc, "op '%s' (in %s): %s", itr_op_name(n->op), n->scope, msg);
    else itr_diag_error(d, n->loc, "op '%s': %s", itr_op_name(n->op), msg);
    return false;
}


static void shape_str(const struct itr_tensor *t, char *buf, size_t n) { itr_shape_format(t->rank, t->shape, buf, n); }

static bool same_shape(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (a->rank != b->rank || a->dtype != b->dtype) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

// Moving slice t along an axis: outer blocks of `inner` bytes, len apart.
struct lane { int64_t outer, len; size_t inner; };

static struct lane lane_of(const struct itr_tensor *t, int ax) {
    struct lane l = { 1, t->shape[ax], itr_dtype_size(t->dtype) };
    for (int i = 0; i < ax; i++) l.outer *= t->shape[i];
    for (int i = ax + 1; i < t->rank; i++) l.inner *= (size_t)t->shape[i];
    return l;
}

#define GEMM_PARALLEL_MIN_MACS (1 << 21)

// A product is split over the executable's pool: each thread computes a
// block of C's columns (or rows, when C is taller than wide) with a
// one-thread library call. After a product on the library's own threads,
// they spin (OpenBLAS waits with sched_yield for about 0.1 s) against the
// pool's threads and the kernels between products: at make demo's sizes,
// where a product takes well under a millisecond, that was most of a
// training run's CPU time (2 epochs: 9.1 s wall, 3.1 s system, on a loaded
// machine; split: 4.4 s, 0.1 s). Large products kept the library's threads
// until it was measured that their spinning slows the kernels after them
// as well (VSE++'s region mean ran at half the memory bandwidth after the
// projection of the call before): every benchmark workload is faster with
// all products on the pool (docs/kernels.md, "Products on the pool").
// ITRC_GEMM_LIBRARY_THREADS=1 gives products to the library's threads
// again, for A/B. The pool's threads sleep. As with the library's threads,
// the last bits of a product can depend on the thread count (the library
// blocks a narrower product differently), never on the run: the blocks are
// fixed by the count.
struct gemm_job {
    bool f64, ta, tb, split_n;
    int64_t m, n, k, lda, ldb, ldc, parts;
    const char *a, *b;
    char *c;
};

// The first column (row) of part t of `total`, on a multiple of 16 so that
// every part but the last fills whole register blocks.
static int64_t gemm_part_start(int64_t total, int64_t t, int64_t parts) {
    if (t >= parts) return total;
    int64_t s = total * t / parts / 16 * 16;
    return s < total ? s : total;
}

static void gemm_parts(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct gemm_job *j = bufs[0];
    size_t es = j->f64 ? sizeof(double) : sizeof(float);
    for (int64_t t = lo; t < hi; t++) {
        int64_t total = j->split_n ? j->n : j->m;
        int64_t s0 = gemm_part_start(total, t, j->parts), s1 = gemm_part_start(total, t + 1, j->parts);
        if (s1 <= s0) continue;
        const char *a = j->a, *b = j->b;
        char *c = j->c;
        int64_t m = j->m, n = j->n;
        if (j->split_n) {
            n = s1 - s0;
            b += (size_t)(j->tb ? s0 * j->ldb : s0) * es;
            c += (size_t)s0 * es;
        } else {
            m = s1 - s0;
            a += (size_t)(j->ta ? s0 : s0 * j->lda) * es;
            c += (size_t)(s0 * j->ldc) * es;
        }
        if (j->f64)
            itr_gemm_f64(j->ta, j->tb, m, n, j->k, (const double *)a, j->lda, (const double *)b, j->ldb, 0.0,
                         (double *)c, j->ldc, 1);
        else
            itr_gemm_f32(j->ta, j->tb, m, n, j->k, (const float *)a, j->lda, (const float *)b, j->ldb, 0.0f,
                         (float *)c, j->ldc, 1);
    }
}

// ITRC_GEMM_LIBRARY_THREADS=1: the library's own threads for every product
// (A/B).
static bool gemm_library_threads(void) {
    static int v = -1;
    if (v < 0) v = itr_env_flag("ITRC_GEMM_LIBRARY_THREADS");
    return v;
}

static void gemm_run(struct pool *pool, bool f64, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
                     int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc) {
    double macs = (double)m * (double)n * (double)k;
    bool parallel = pool && pool->n > 1 && macs >= GEMM_PARALLEL_MIN_MACS;
    if (!parallel || gemm_library_threads()) {
        int threads = parallel ? pool->n : 1;
        if (f64)
            itr_gemm_f64(ta, tb, m, n, k, a, lda, b, ldb, 0.0, c, ldc, threads);
        else
            itr_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc, threads);
        return;
    }
    struct gemm_job j = { f64, ta, tb, n >= m, m, n, k, lda, ldb, ldc, pool->n, a, b, c };
    void *bufs[1] = { &j };
    itr_gemm_one_thread_each();   // before the pool's threads call it at once
    pool_run(pool, gemm_parts, bufs, NULL, j.parts);
}

// Offsets (elements) in A and B of batch index bi of a batched product
// whose result has batch dims shape[0..nbatch): A's and B's batch dims
// align right, a dim of 1 broadcasts (stride 0); sa and sb are the
// elements of one A and one B matrix.
static void batch_offsets(const struct itr_tensor *A, const struct itr_tensor *B, const int64_t *shape, int nbatch,
                          int64_t sa, int64_t sb, int64_t bi, int64_t *offa, int64_t *offb) {
    int ra = A->rank, rb = B->rank;
    int64_t rem = bi;
    *offa = *offb = 0;
    for (int i = nbatch - 1; i >= 0; i--) {
        int64_t idx = rem % shape[i];
        rem /= shape[i];
        int ia = i - (nbatch - (ra - 2)), ib = i - (nbatch - (rb - 2));
        if (ia >= 0) {
            if (A->shape[ia] != 1) *offa += idx * sa;
            sa *= A->shape[ia];
        }
        if (ib >= 0) {
            if (B->shape[ib] != 1) *offb += idx * sb;
            sb *= B->shape[ib];
        }
    }
}

// A batch of products each too small to split (SCAN's Gram matrices and
// its logits times them per image, SGR's edges per pair): whole products
// spread over the pool instead of run one after the other on the calling
// thread while the others wait (they were 15-19% of SCAN scoring's time at
// half the machine). Each product is still one one-thread library call, so
// the bits are those of the serial loop, for any thread count.
struct gemm_batch_job {
    bool f64, ta, tb;
    bool gram;            // C = A·Aᵀ (B is A): itr_gram_f32
    int64_t m, n, k, lda, ldb, ldc;
    const char *a, *b;
    char *c;
    const int64_t *off;   // per product: A's, B's and C's offsets (elements)
};

static void gemm_batch_part(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct gemm_batch_job *j = bufs[0];
    size_t es = j->f64 ? sizeof(double) : sizeof(float);
    for (int64_t t = lo; t < hi; t++) {
        const int64_t *o = j->off + 3 * t;
        const char *a = j->a + (size_t)o[0] * es, *b = j->b + (size_t)o[1] * es;
        char *c = j->c + (size_t)o[2] * es;
        if (j->gram)
            itr_gram_f32(j->m, j->k, (const float *)a, j->lda, (float *)c, j->ldc);
        else if (j->f64)
            itr_gemm_f64(j->ta, j->tb, j->m, j->n, j->k, (const double *)a, j->lda, (const double *)b, j->ldb, 0.0,
                         (double *)c, j->ldc, 1);
        else
            itr_gemm_f32(j->ta, j->tb, j->m, j->n, j->k, (const float *)a, j->lda, (const float *)b, j->ldb, 0.0f,
                         (float *)c, j->ldc, 1);
    }
}

// Whether `batch` products of m x n x k go to gemm_batch_on_pool rather
// than one by one to gemm_run (which splits each product when it is large).
static bool gemm_batch_wanted(const struct pool *pool, int64_t batch, int64_t m, int64_t n, int64_t k) {
    double macs = (double)m * (double)n * (double)k;
    return pool && pool->n > 1 && batch >= 2 && macs < GEMM_PARALLEL_MIN_MACS &&
           macs * (double)batch >= GEMM_PARALLEL_MIN_MACS && !gemm_library_threads();
}

static void gemm_batch_on_pool(struct pool *pool, const struct gemm_batch_job *j, int64_t batch) {
    void *bufs[1] = { (void *)j };
    itr_gemm_one_thread_each();
    pool_run(pool, gemm_batch_part, bufs, NULL, batch);
}

// Batch dims of the result where only one operand varies are folded into
// one large product. Scoring a tile of images against captions is
// v[i, 1, R, D] x u[1, c, D, L]: i*c products of 36x12x1024, each too small
// for the library to reach its rate, or one (i*R) x (c*L) x D product that
// does. A's rows over its own dims and B's columns over B's are packed
// where the layout does not already give them (packing costs 1/n resp. 1/m
// of the product), and the result is scattered into C's order. Dims where
// both operands vary stay an outer loop. False when nothing would fold.
struct fold_dims { int n; int dim[ITR_MAX_RANK]; int64_t size[ITR_MAX_RANK]; };

// Offset of the q-th combination of the dims of f (row-major in C's order).
static int64_t fold_offset(const struct fold_dims *f, int64_t q, const int64_t *stride) {
    int64_t off = 0;
    for (int j = f->n - 1; j >= 0; j--) {
        off += (q % f->size[j]) * stride[f->dim[j]];
        q /= f->size[j];
    }
    return off;
}

static int64_t fold_count(const struct fold_dims *f) {
    int64_t n = 1;
    for (int j = 0; j < f->n; j++) n *= f->size[j];
    return n;
}

// The dims of f, as rows of `row` elements, are one run of consecutive rows.
static bool fold_consecutive(const struct fold_dims *f, const int64_t *stride, int64_t row) {
    for (int j = f->n - 1; j >= 0; j--) {
        if (stride[f->dim[j]] != row) return false;
        row *= f->size[j];
    }
    return true;
}

// dst[cols, rows] = src[rows, cols]ᵀ, elements of es bytes (4 or 8).
static void transpose_block(char *dst, const char *src, int64_t rows, int64_t cols, size_t es) {
    if (es == 4) {
        const float *s = (const float *)src;
        float *d = (float *)dst;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) d[c * rows + r] = s[r * cols + c];
    } else {
        const double *s = (const double *)src;
        double *d = (double *)dst;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) d[c * rows + r] = s[r * cols + c];
    }
}

// Pack buffer i (0: A, 1: B, 2: C) of at least `bytes`: the arena's, grown
// when too small, or (no arena) a fresh one that *own receives.
static char *pack_buffer(struct arena *ar, int i, size_t bytes, char **own) {
    if (!bytes) bytes = 1;
    if (!ar) return *own = malloc(bytes);
    if (ar->scratch_cap[i] < bytes) {
        free(ar->scratch[i]);
        ar->scratch_cap[i] = 0;
        if (!(ar->scratch[i] = malloc(bytes))) return NULL;
        ar->scratch_cap[i] = bytes;
        ar->scratch_grows++;
    }
    return ar->scratch[i];
}

// The folded product's rows of A's combinations [lo, hi) put into C's order.
// On the pool: a SCAN scoring tile's product is hundreds of MB, and copied
// on one thread it left the other idle for a few percent of the tile.
struct fold_scatter_job {
    const struct fold_dims *aonly, *bonly;
    const int64_t *sc;
    char *cbase;
    const char *cp;
    int64_t m, nn, N;
    size_t es;
};

static void fold_scatter_part(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct fold_scatter_job *j = bufs[0];
    int64_t nbb = fold_count(j->bonly);
    size_t es = j->es;
    for (int64_t x = lo; x < hi; x++) {
        char *dst = j->cbase + (size_t)fold_offset(j->aonly, x, j->sc) * es;
        for (int64_t y = 0; y < nbb; y++) {
            char *d = dst + (size_t)fold_offset(j->bonly, y, j->sc) * es;
            const char *s = j->cp + (size_t)(x * j->m * j->N + y * j->nn) * es;
            for (int64_t r = 0; r < j->m; r++)
                memcpy(d + (size_t)(r * j->nn) * es, s + (size_t)(r * j->N) * es, (size_t)j->nn * es);
        }
    }
}

// One folded product: what gemm_fold_batches does for each combination q
// of the dims where both operands vary.
struct fold_job {
    struct fold_dims both, aonly, bonly;
    int64_t sa[ITR_MAX_RANK], sb[ITR_MAX_RANK], sc[ITR_MAX_RANK];
    bool f64, trans_a, trans_b, a_direct, b_direct, b_trans, c_direct;
    int64_t m, nn, k, M, N, ldb_direct;
    size_t es;
    const char *abase, *bbase;
    char *cbase;
    char *ap, *bp, *cp;   // pack buffers (parts of them on the pool)
};

static void fold_one(const struct fold_job *j, int64_t q, char *ap, char *bp, char *cp, struct pool *pool) {
    size_t es = j->es;
    int64_t m = j->m, nn = j->nn, k = j->k;
    int64_t na = fold_count(&j->aonly), nbb = fold_count(&j->bonly);
    int64_t oa = fold_offset(&j->both, q, j->sa), ob = fold_offset(&j->both, q, j->sb);
    int64_t oc = fold_offset(&j->both, q, j->sc);
    if (!j->a_direct)
        for (int64_t x = 0; x < na; x++) {
            const char *src = j->abase + (size_t)(oa + fold_offset(&j->aonly, x, j->sa)) * es;
            char *dst = ap + (size_t)(x * m * k) * es;
            if (!j->trans_a) memcpy(dst, src, (size_t)(m * k) * es);
            else transpose_block(dst, src, k, m, es);
        }
    if (!j->b_direct)
        for (int64_t y = 0; y < nbb; y++) {
            const char *src = j->bbase + (size_t)(ob + fold_offset(&j->bonly, y, j->sb)) * es;
            char *dst = bp + (size_t)(y * nn * k) * es;
            if (j->trans_b) memcpy(dst, src, (size_t)(nn * k) * es);
            else transpose_block(dst, src, k, nn, es);
        }
    const char *a = j->a_direct ? j->abase + (size_t)oa * es : ap;
    const char *b = j->b_direct ? j->bbase + (size_t)ob * es : bp;
    char *c = j->c_direct ? j->cbase + (size_t)oc * es : cp;
    gemm_run(pool, j->f64, false, j->b_trans, j->M, j->N, k, a, k, b, j->b_direct ? j->ldb_direct : k, c, j->N);
    if (!j->c_direct) {
        struct fold_scatter_job sj = { &j->aonly, &j->bonly, j->sc, j->cbase + (size_t)oc * es, cp, m, nn, j->N, es };
        void *bufs[1] = { &sj };
        bool parallel = pool && (double)j->M * (double)j->N >= (double)parallel_min_elements();
        pool_run(parallel ? pool : NULL, fold_scatter_part, bufs, NULL, na);
    }
}

// Part t of `parts` of the combinations, each on one thread with its own
// slice of the pack buffers.
struct fold_parts_job { const struct fold_job *j; int64_t nboth, parts; };

static void fold_parts(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct fold_parts_job *pj = bufs[0];
    const struct fold_job *j = pj->j;
    size_t es = j->es;
    for (int64_t t = lo; t < hi; t++) {
        char *ap = j->ap ? j->ap + (size_t)(t * j->M * j->k) * es : NULL;
        char *bp = j->bp ? j->bp + (size_t)(t * j->N * j->k) * es : NULL;
        char *cp = j->cp ? j->cp + (size_t)(t * j->M * j->N) * es : NULL;
        for (int64_t q = pj->nboth * t / pj->parts; q < pj->nboth * (t + 1) / pj->parts; q++)
            fold_one(j, q, ap, bp, cp, NULL);
    }
}

static bool gemm_fold_batches(const struct itr_tensor *A, const struct itr_tensor *B, struct itr_tensor *C,
                              bool trans_a, bool trans_b, int64_t m, int64_t nn, int64_t k, struct pool *pool,
                              struct arena *ar) {
    struct fold_job j = { .f64 = C->dtype == ITR_F64, .trans_a = trans_a, .trans_b = trans_b, .m = m, .nn = nn, .k = k };
    int ra = A->rank, rb = B->rank, nb = C->rank - 2;
    int64_t st_a = m * k, st_b = k * nn, st_c = m * nn;
    for (int i = nb - 1; i >= 0; i--) {
        int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
        int64_t as = ia >= 0 ? A->shape[ia] : 1, bs = ib >= 0 ? B->shape[ib] : 1, cs = C->shape[i];
        j.sa[i] = as > 1 ? st_a : 0;
        j.sb[i] = bs > 1 ? st_b : 0;
        j.sc[i] = st_c;
        st_a *= as;
        st_b *= bs;
        st_c *= cs;
    }
    for (int i = 0; i < nb; i++) {
        int64_t cs = C->shape[i];
        if (cs == 1) continue;
        struct fold_dims *f = j.sa[i] && j.sb[i] ? &j.both : j.sa[i] ? &j.aonly : &j.bonly;
        f->dim[f->n] = i;
        f->size[f->n++] = cs;
    }
    int64_t na = fold_count(&j.aonly), nbb = fold_count(&j.bonly), nboth = fold_count(&j.both);
    if (na * nbb <= 1) return false;
    size_t es = j.es = itr_dtype_size(C->dtype);
    int64_t M = j.M = na * m, N = j.N = nbb * nn;
    // A as [M, k] rows: used in place when its own dims are consecutive rows.
    j.a_direct = !trans_a && fold_consecutive(&j.aonly, j.sa, m * k);
    // B: in place when nothing folds on its side; else Bᵀ as [N, k] rows.
    j.b_direct = nbb == 1 || (trans_b && fold_consecutive(&j.bonly, j.sb, nn * k));
    j.b_trans = nbb == 1 ? trans_b : true;
    j.ldb_direct = nbb == 1 ? B->shape[rb - 1] : k;
    // C: written in place when its rows (A's dims, m) are consecutive.
    j.c_direct = nbb == 1 && fold_consecutive(&j.aonly, j.sc, m * nn);
    // Small products (SCAN's logits times the Gram matrix, one per image):
    // whole ones on each thread, as gemm_batch_on_pool does.
    bool spread = gemm_batch_wanted(pool, nboth, M, N, k);
    int64_t parts = spread ? (pool->n < nboth ? pool->n : nboth) : 1;
    char *own[3] = { NULL, NULL, NULL };
    j.ap = j.a_direct ? NULL : pack_buffer(ar, 0, (size_t)(parts * M * k) * es, &own[0]);
    j.bp = j.b_direct ? NULL : pack_buffer(ar, 1, (size_t)(parts * N * k) * es, &own[1]);
    j.cp = j.c_direct ? NULL : pack_buffer(ar, 2, (size_t)(parts * M * N) * es, &own[2]);
    if ((!j.a_direct && !j.ap) || (!j.b_direct && !j.bp) || (!j.c_direct && !j.cp)) {
        for (int i = 0; i < 3; i++) free(own[i]);
        return false;
    }
    j.abase = A->data;
    j.bbase = B->data;
    j.cbase = C->data;
    if (spread) {
        struct fold_parts_job pj = { &j, nboth, parts };
        void *bufs[1] = { &pj };
        itr_gemm_one_thread_each();
        pool_run(pool, fold_parts, bufs, NULL, parts);
    } else {
        for (int64_t q = 0; q < nboth; q++) fold_one(&j, q, j.ap, j.bp, j.cp, pool);
    }
    for (int i = 0; i < 3; i++) free(own[i]);
    return true;
}

// dst row r = src row idx[r] (rows of row_bytes), over the pool.
struct gather_job { char *dst; const char *src; size_t row_bytes; const int64_t *idx; bool scatter; };

static void gather_part(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct gather_job *j = bufs[0];
    size_t rb = j->row_bytes;
    for (int64_t r = lo; r < hi; r++) {
        if (j->scatter) memcpy(j->dst + (size_t)j->idx[r] * rb, j->src + (size_t)r * rb, rb);
        else memcpy(j->dst + (size_t)r * rb, j->src + (size_t)j->idx[r] * rb, rb);
    }
}

// Gathers rows idx[0..n) of src into dst, or (scatter) the reverse.
static void gather_rows(struct pool *pool, char *dst, const char *src, size_t row_bytes, const int64_t *idx, int64_t n,
                        bool scatter) {
    struct gather_job j = { dst, src, row_bytes, idx, scatter };
    void *bufs[1] = { &j };
    launch(pool, gather_part, bufs, NULL, n, n * (int64_t)(row_bytes / sizeof(float)));
}

// Flags of C's rows that no reader uses (the mask of plan_unread_rows is
// 0 there), or NULL when the step has no such mask or the run's shapes do
// not line up with it; *n: how many.
static uint8_t *unread_rows(const struct itr_llvm_exe *e, const struct kir_step *st, const struct itr_tensor *C,
                            int64_t m, struct itr_tensor *const *val, int64_t *n) {
    int32_t mv = e->unread_rows_mask ? e->unread_rows_mask[st - e->s->steps] : -1;
    const struct itr_tensor *M = mv >= 0 ? val[mv] : NULL;
    if (!M || M->rank < 2 || C->rank < 2 || M->shape[0] != C->shape[0] || M->shape[1] != C->shape[1] ||
        itr_tensor_numel(M) != m || C->shape[0] * C->shape[1] != m || (M->dtype != ITR_F32 && M->dtype != ITR_F64))
        return NULL;
    uint8_t *f = xcalloc((size_t)m, 1);
    *n = 0;
    for (int64_t r = 0; r < m; r++) {
        double x = M->dtype == ITR_F64 ? ((const double *)M->data)[r] : ((const float *)M->data)[r];
        f[r] = x == 0;   // the scan runs a NaN row
        *n += f[r];
    }
    return f;
}

// A product over the rows a packed scan filled with 0 (struct zero_rows)
// runs on the others only: K rows, when both operands are stored with K as
// their rows (a weight's gradient summed over every (caption, word) row),
// or A's M rows, whose rows of C are then 0 (C's zero rows are recorded in
// turn). The kept rows are gathered into the pack buffers first; a product
// with fewer than an eighth of its rows 0 is not worth that copy. False:
// nothing was done.
#define ZERO_ROWS_MIN_FRACTION 8
static bool gemm_skip_zero_rows(const struct itr_llvm_exe *e, const struct run_ctx *ctx, const struct kir_step *st,
                                int32_t ov, const struct itr_tensor *A, const struct itr_tensor *B,
                                struct itr_tensor *C, int64_t m, int64_t nn, int64_t k, int64_t lda, int64_t ldb,
                                struct itr_tensor *const *val) {
    struct zero_rows *z = ctx->zr;
    bool k_rows = st->trans_a && !st->trans_b && itr_tensor_numel(A) == k * lda && itr_tensor_numel(B) == k * ldb;
    bool m_rows = !st->trans_a && itr_tensor_numel(A) == m * lda && itr_tensor_numel(C) == m * nn;
    int64_t rows = k_rows ? k : m;
    const uint8_t *za = (k_rows || m_rows) && z->rows[st->gemm_a] == rows ? z->zero[st->gemm_a] : NULL;
    const uint8_t *zb = k_rows && z->rows[st->gemm_b] == rows ? z->zero[st->gemm_b] : NULL;
    int64_t most = (za ? z->n_zero[st->gemm_a] : 0) + (zb ? z->n_zero[st->gemm_b] : 0);
    uint8_t *unread = NULL;   // C's rows nothing uses (plan_unread_rows): computed, then 0
    if (!za && !zb && m_rows && !e->observe) unread = unread_rows(e, st, C, m, val, &most);
    if (!za && !zb && !unread) return false;
    if (unread) za = unread;
    if (most * ZERO_ROWS_MIN_FRACTION < rows) {
        free(unread);
        return false;
    }
    int64_t *idx = xcalloc((size_t)rows, sizeof *idx), kept = 0;
    for (int64_t r = 0; r < rows; r++)
        if (!(za && za[r]) && !(zb && zb[r])) idx[kept++] = r;
    if ((rows - kept) * ZERO_ROWS_MIN_FRACTION < rows) {
        free(idx);
        free(unread);
        return false;
    }
    size_t es = itr_dtype_size(C->dtype);
    bool f64 = C->dtype == ITR_F64;
    char *own[3] = { NULL, NULL, NULL };
    char *ap = pack_buffer(ctx->ar, 0, (size_t)(kept * lda) * es, &own[0]);
    char *bp = k_rows ? pack_buffer(ctx->ar, 1, (size_t)(kept * ldb) * es, &own[1]) : NULL;
    char *cp = k_rows ? NULL : pack_buffer(ctx->ar, 2, (size_t)(kept * nn) * es, &own[2]);
    if (!ap || (k_rows ? !bp : !cp)) {
        for (int i = 0; i < 3; i++) free(own[i]);
        free(idx);
        free(unread);
        return false;
    }
    gather_rows(e->pool, ap, A->data, (size_t)lda * es, idx, kept, false);
    if (k_rows) {
        gather_rows(e->pool, bp, B->data, (size_t)ldb * es, idx, kept, false);
        if (kept) gemm_run(e->pool, f64, true, false, m, nn, kept, ap, lda, bp, ldb, C->data, nn);
        else memset(C->data, 0, itr_tensor_nbytes(C));
    } else {
        if (kept) gemm_run(e->pool, f64, false, st->trans_b, kept, nn, k, ap, lda, B->data, ldb, cp, nn);
        size_t rb = (size_t)nn * es;
        for (int64_t r = 0; r < m; r++)
            if (za[r]) memset((char *)C->data + (size_t)r * rb, 0, rb);
        gather_rows(e->pool, C->data, cp, rb, idx, kept, true);
        if (!unread) {   // unread rows are written 0 too, but that is not C's value there
            uint8_t *zc = xcalloc((size_t)m, 1);
            memcpy(zc, za, (size_t)m);
            zero_rows_set(z, ov, zc, m);
        }
    }
    free(unread);
    struct itr_llvm_exe *me = (struct itr_llvm_exe *)e;
    __atomic_add_fetch(&me->product_rows, rows, __ATOMIC_RELAXED);
    __atomic_add_fetch(&me->product_rows_skipped, rows - kept, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++) free(own[i]);
    free(idx);
    return true;
}

// ---- prepacked products: the kernels (struct prepacked above)

struct pgemm_job {
    bool pack, tb;
    int64_t m, n, k, lda, ldb, ldc, panels, parts;
    const float *a, *b;
    float *packed, *c;
};

static void pgemm_parts(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct pgemm_job *j = bufs[0];
    for (int64_t t = lo; t < hi; t++) {
        int64_t p0 = j->panels * t / j->parts, p1 = j->panels * (t + 1) / j->parts;
        if (p1 <= p0) continue;
        if (j->pack) itr_pgemm_pack(j->tb, j->n, j->k, j->b, j->ldb, j->packed, p0, p1);
        else itr_pgemm(j->m, j->n, j->k, j->a, j->lda, j->packed, j->c, j->ldc, p0, p1);
    }
}

// C = A · op(B) through a packed copy of B when B is a fixed input of the
// scan body (pp->fixed) or, for pp->fixed NULL, a parameter (packed here on
// first use); false: not one, the caller runs the library's product.
static bool prepacked_gemm(struct itr_llvm_exe *e, struct prepacked *pp, int32_t vb, bool tb, int64_t m,
                           int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c) {
    int input = -1;
    if (!pp->fixed)
        input = e->g->values[vb].kind == ITR_VALUE_PARAM ? e->g->values[vb].param : -1;
    for (int j = 0; pp->fixed && j < e->g->n_inputs && input < 0; j++)
        if (e->g->inputs[j] == vb && pp->fixed[j]) input = j;
    if (input < 0 || m <= 0 || n <= 0 || k <= 0) return false;
    int s = 0;
    while (s < pp->n && !(pp->slot[s].input == input && pp->slot[s].tb == tb && pp->slot[s].n == n &&
                          pp->slot[s].k == k && pp->slot[s].ldb == ldb && pp->slot[s].data == b))
        s++;
    struct pool *pool = e->pool;
    int64_t panels = itr_pgemm_panels(n), threads = pool && pool->n > 1 ? pool->n : 1;
    if (s == pp->n) {
        if (s == PREPACKED_MAX) return false;
        float *packed = itr_pgemm_packed_new(n, k);
        if (!packed) return false;
        struct pgemm_job j = { .pack = true, .tb = tb, .n = n, .k = k, .ldb = ldb, .panels = panels,
                               .parts = threads, .b = b, .packed = packed };
        void *bufs[1] = { &j };
        pool_run(threads > 1 ? pool : NULL, pgemm_parts, bufs, NULL, j.parts);
        pp->slot[pp->n++] = (struct prepacked_slot){ input, tb, n, k, ldb, b, packed };
    }
    bool parallel = threads > 1 && (double)m * (double)n * (double)k >= GEMM_PARALLEL_MIN_MACS;
    struct pgemm_job j = { .m = m, .n = n, .k = k, .lda = lda, .ldc = n, .panels = panels,
                           .parts = parallel ? threads : 1, .a = a, .packed = pp->slot[s].packed, .c = c };
    void *bufs[1] = { &j };
    pool_run(parallel ? pool : NULL, pgemm_parts, bufs, NULL, j.parts);
    __atomic_add_fetch(&e->prepacked_products, 1, __ATOMIC_RELAXED);
    return true;
}

// A GEMM step: out[b] = A[b] x B[b] for every batch index b of the result,
// the operands' batch dims broadcast (numpy rules, right-aligned).
static bool run_gemm(const struct itr_llvm_exe *e, const struct run_ctx *ctx, const struct kir_step *st,
                     const struct itr_node *n, struct itr_dim_bindings *dims, struct itr_tensor **val, bool *owned,
                     struct itr_diags *d) {
    struct itr_tensor view_a, view_b;
    const struct itr_tensor *A = itr_view_as(e->g, val[st->gemm_a], st->gemm_view_a, dims, &view_a, d);
    const struct itr_tensor *B = itr_view_as(e->g, val[st->gemm_b], st->gemm_view_b, dims, &view_b, d);
    if (!A || !B) return false;
    int32_t ov = n->outputs[0];
    struct itr_tensor *C = new_value(e, ctx, ov, dims, d);
    if (!C) return false;
    int ra = A->rank, rb = B->rank, rc = C->rank;
    int64_t m = st->trans_a ? A->shape[ra - 1] : A->shape[ra - 2];
    int64_t k = st->trans_a ? A->shape[ra - 2] : A->shape[ra - 1];
    int64_t kb = st->trans_b ? B->shape[rb - 1] : B->shape[rb - 2];
    int64_t nn = st->trans_b ? B->shape[rb - 2] : B->shape[rb - 1];
    if (k != kb || C->shape[rc - 2] != m || C->shape[rc - 1] != nn) {
        release_value(e, ctx, ov, C);
        return node_error(n, d, "internal error: gemm operands [%lld x %lld] and [%lld x %lld] do not give the result",
                          (long long)m, (long long)k, (long long)kb, (long long)nn);
    }
    int64_t lda = A->shape[ra - 1], ldb = B->shape[rb - 1];
    int64_t batch = 1, nbatch = rc - 2;
    for (int i = 0; i < nbatch; i++) batch *= C->shape[i];
    // x[..., m, k] . W[k, n] (a projection applied to every position): the
    // batch rows of a stored A are consecutive rows of one matrix, so one
    // product of (batch * m) rows replaces batch small ones.
    if (batch > 1 && rb == 2 && !st->trans_a && ra == rc) {
        m *= batch;
        batch = 1;
        nbatch = 0;
    }
    if ((batch == 1 && ctx->zr && gemm_skip_zero_rows(e, ctx, st, ov, A, B, C, m, nn, k, lda, ldb, val)) ||
        (batch == 1 && ctx->pp && C->dtype == ITR_F32 && !st->trans_a &&
         prepacked_gemm((struct itr_llvm_exe *)e, ctx->pp, st->gemm_b, st->trans_b, m, nn, k, A->data, lda,
                        B->data, ldb, C->data)) ||
        (batch > 1 && gemm_fold_batches(A, B, C, st->trans_a, st->trans_b, m, nn, k, e->pool, ctx->ar))) {
        val[ov] = C;
        owned[ov] = true;
        return true;
    }
    size_t es = itr_dtype_size(C->dtype);
    bool f64 = C->dtype == ITR_F64;
    // Gram matrices (SCAN's regions times their own transpose, per image):
    // the same operand read as stored and transposed. Only products too
    // small to split, which the library would run on one thread.
    bool gram = e->gram && !f64 && st->gemm_a == st->gemm_b && st->gemm_view_a == st->gemm_view_b && !st->trans_a &&
                st->trans_b && (double)m * (double)m * (double)k < GEMM_PARALLEL_MIN_MACS;
    int64_t *off = gram || gemm_batch_wanted(e->pool, batch, m, nn, k) ? malloc((size_t)(3 * batch) * sizeof *off)
                                                                       : NULL;
    for (int64_t bi = 0; bi < batch; bi++) {
        int64_t offa, offb;
        batch_offsets(A, B, C->shape, nbatch, m * k, k * nn, bi, &offa, &offb);
        if (off) {
            off[3 * bi] = offa;
            off[3 * bi + 1] = offb;
            off[3 * bi + 2] = bi * m * nn;
            continue;
        }
        char *c = (char *)C->data + (size_t)(bi * m * nn) * es;
        const char *a = (const char *)A->data + (size_t)offa * es, *b = (const char *)B->data + (size_t)offb * es;
        gemm_run(e->pool, f64, st->trans_a, st->trans_b, m, nn, k, a, lda, b, ldb, c, nn);
    }
    if (off) {
        struct gemm_batch_job j = { f64, st->trans_a, st->trans_b, gram, m, nn, k, lda, ldb, nn,
                                    A->data, B->data, C->data, off };
        if (gemm_batch_wanted(e->pool, batch, m, nn, k)) {
            gemm_batch_on_pool(e->pool, &j, batch);
        } else {
            void *bufs[1] = { &j };
            gemm_batch_part(bufs, NULL, 0, batch);
        }
        free(off);
    }
    val[ov] = C;
    owned[ov] = true;
    return true;
}

// The quadratic form of GEMM step st (plan_qforms), computed per batch item
// of the product into *out (batch * m elements, in the precision the
// kernel step writes). False, with nothing done, when the run's sizes are
// past what qform.h takes: the product and the kernel step then run as
// scheduled.
struct qform_job {
    bool f64, ta, tb;
    int64_t m, k, lda, ldb;
    const char *a, *b;
    char *out;
    const int64_t *xoff, *goff;   // per item: X's and G's offsets (elements)
};

static void qform_part(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct qform_job *j = bufs[0];
    for (int64_t t = lo, u; t < hi; t = u) {
        // a run of items with the same G (every caption of an image)
        for (u = t + 1; u < hi && j->goff[u] == j->goff[t];) u++;
        if (j->f64)
            itr_qform_f64(j->ta, j->tb, j->m, j->k, u - t, (const double *)j->a, j->xoff + t, j->lda,
                          (const double *)j->b + j->goff[t], j->ldb, (double *)j->out + t * j->m);
        else
            itr_qform_f32(j->ta, j->tb, j->m, j->k, u - t, (const float *)j->a, j->xoff + t, j->lda,
                          (const float *)j->b + j->goff[t], j->ldb, (float *)j->out + t * j->m);
    }
}

static bool run_qform(const struct itr_llvm_exe *e, const struct kir_step *st, const struct itr_node *n,
                      struct itr_tensor *const *val, char **out, size_t *out_bytes) {
    const struct itr_tensor *A = val[st->gemm_a], *B = val[st->gemm_b];
    if (!A || !B || A->dtype != B->dtype || (A->dtype != ITR_F32 && A->dtype != ITR_F64)) return false;
    int ra = A->rank, rb = B->rank, rc = e->g->values[n->outputs[0]].type.rank;
    if (ra < 2 || rb < 2 || ra > rc || rb > rc) return false;
    int64_t m = st->trans_a ? A->shape[ra - 1] : A->shape[ra - 2];
    int64_t k = st->trans_a ? A->shape[ra - 2] : A->shape[ra - 1];
    int64_t kb = st->trans_b ? B->shape[rb - 1] : B->shape[rb - 2];
    int64_t nn = st->trans_b ? B->shape[rb - 2] : B->shape[rb - 1];
    if (k != kb || nn != k || m < 1 || k < 1 || m > ITR_QFORM_MAX_ROWS || k > ITR_QFORM_MAX_K) return false;
    // The product's batch dims: A's and B's, broadcast, aligned right.
    int nbatch = rc - 2;
    int64_t shape[ITR_MAX_RANK], batch = 1;
    for (int i = 0; i < nbatch; i++) {
        int ia = i - (nbatch - (ra - 2)), ib = i - (nbatch - (rb - 2));
        int64_t as = ia >= 0 ? A->shape[ia] : 1, bs = ib >= 0 ? B->shape[ib] : 1;
        if (as != bs && as != 1 && bs != 1) return false;
        shape[i] = as > bs ? as : bs;
        batch *= shape[i];
    }
    int64_t *off = malloc((size_t)(2 * (batch > 0 ? batch : 1)) * sizeof *off);   // X's, then G's
    size_t es = itr_dtype_size(A->dtype);
    *out_bytes = (size_t)(batch * m) * es;
    *out = malloc(*out_bytes ? *out_bytes : 1);
    if (!off || !*out) {
        free(off);
        free(*out);
        *out = NULL;
        return false;
    }
    for (int64_t bi = 0; bi < batch; bi++) batch_offsets(A, B, shape, nbatch, m * k, k * k, bi, &off[bi], &off[batch + bi]);
    struct qform_job j = { A->dtype == ITR_F64, st->trans_a, st->trans_b, m, k, A->shape[ra - 1], B->shape[rb - 1],
                           A->data, B->data, *out, off, off + batch };
    void *bufs[1] = { &j };
    double macs = (double)batch * (double)m * (double)k * (double)k;
    pool_run(batch >= 2 && macs >= GEMM_PARALLEL_MIN_MACS ? e->pool : NULL, qform_part, bufs, NULL, batch);
    free(off);
    __atomic_add_fetch(&((struct itr_llvm_exe *)e)->qform_runs, 1, __ATOMIC_RELAXED);
    return true;
}

// A scan with a compiled body, with the semantics (and messages) of the
// reference's ref_scan. Slices along a leading axis are views into the
// scanned operand; others are gathered into one buffer reused every step.
static bool exe_run(struct itr_llvm_exe *e, const struct run_ctx *rc, struct itr_tensor *const *inputs,
                    struct itr_tensor *const *params, struct itr_dim_bindings *dims, struct itr_tensor **outputs,
                    struct itr_diags *d);

// Step t's whole slice of x along axis ax copied to buf, packed (into_x:
// from buf into x).
static void slice_copy(const struct itr_tensor *x, int ax, int64_t t, char *buf, bool into_x) {
    struct lane l = lane_of(x, ax);
    for (int64_t o = 0; o < l.outer; o++) {
        char *p = (char *)x->data + (size_t)(o * l.len + t) * l.inner, *q = buf + (size_t)o * l.inner;
        memcpy(into_x ? p : q, into_x ? q : p, l.inner);
    }
}

// ---- packed scans (ir/scan_rows.h, docs/kernels.md "Packed scans")

// Bytes of one batch row of a step's slice of scanned operand x (scan axis
// ax, batch B along the slice's first axis).
static size_t slice_row_bytes(const struct itr_tensor *x, int ax, int64_t B) {
    struct lane l = lane_of(x, ax);
    return ax == 0 ? l.inner / (size_t)B : (size_t)(l.outer / B) * l.inner;
}

// Row b of step t's slice of x copied to row (into_x: from row into x).
static void slice_row(const struct itr_tensor *x, int ax, int64_t t, int64_t b, int64_t B, char *row, bool into_x) {
    struct lane l = lane_of(x, ax);
    char *base = x->data;
    if (ax == 0) {
        size_t rb = l.inner / (size_t)B;
        char *p = base + (size_t)t * l.inner + (size_t)b * rb;
        memcpy(into_x ? p : row, into_x ? row : p, rb);
        return;
    }
    int64_t q = l.outer / B;
    for (int64_t o = b * q; o < (b + 1) * q; o++, row += l.inner) {
        char *p = base + (size_t)(o * l.len + t) * l.inner;
        memcpy(into_x ? p : row, into_x ? row : p, l.inner);
    }
}

static void fill_row(char *row, size_t bytes, enum itr_dtype dt, double c) {
    size_t n = bytes / itr_dtype_size(dt);
    if (c == 0) memset(row, 0, bytes);
    else
        for (size_t i = 0; i < n; i++) switch (dt) {
            case ITR_F32: ((float *)row)[i] = (float)c; break;
            case ITR_F64: ((double *)row)[i] = c; break;
            case ITR_I32: ((int32_t *)row)[i] = (int32_t)c; break;
            case ITR_I64: ((int64_t *)row)[i] = (int64_t)c; break;
            default: ((uint8_t *)row)[i] = c != 0; break;
            }
}

// What a packed scan holds for its run.
struct packed_run {
    const struct itr_scan_rows *r;
    int nc, ns, nb_in, nb_out, ax_of_scan;
    int64_t B, len;
    size_t *in_rb, *out_rb;      // bytes of a row: per ROW input (its step slice's), per ROW output
    char **gathered;             // per ROW input: its kept rows, packed (capacity B rows)
    char **whole_slice;          // per whole scanned input: its step slice
    char **fill;                 // per ROW output: the row written on skipped rows (CONST, ANY)
    char *tmp;                   // one row, for copies between tensors
};

static void packed_run_free(struct packed_run *pr) {
    for (int k = 0; pr->gathered && k < pr->nb_in; k++) free(pr->gathered[k]);
    for (int k = 0; pr->whole_slice && k < pr->nb_in; k++) free(pr->whole_slice[k]);
    for (int o = 0; pr->fill && o < pr->nb_out; o++) free(pr->fill[o]);
    free(pr->gathered);
    free(pr->whole_slice);
    free(pr->fill);
    free(pr->in_rb);
    free(pr->out_rb);
    free(pr->tmp);
}

// The step's input k, the kept rows act[0..n) of a ROW input packed.
static struct itr_tensor *packed_input(const struct packed_run *pr, struct itr_tensor *const *in,
                                       struct itr_tensor *const *out, int k, int64_t t, const int64_t *act, int64_t n) {
    bool scanned = k >= pr->nc && k < pr->nc + pr->ns;
    const struct itr_tensor *x = k < pr->nc ? out[k] : in[k];   // a carry's state is in its result
    int ax = scanned ? norm_axis(pr->ax_of_scan, x->rank) : -1;
    int64_t shape[ITR_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (i != ax) shape[rank++] = x->shape[i];
    if (!pr->r->row_input[k]) {
        if (!scanned) return itr_tensor_wrap(x->dtype, x->rank, x->shape, x->data);
        slice_copy(x, ax, t, pr->whole_slice[k], false);
        return itr_tensor_wrap(x->dtype, rank, shape, pr->whole_slice[k]);
    }
    size_t rb = pr->in_rb[k];
    for (int64_t r = 0; r < n; r++) {
        char *dst = pr->gathered[k] + (size_t)r * rb;
        if (scanned) slice_row(x, ax, t, act[r], pr->B, dst, false);
        else memcpy(dst, (const char *)x->data + (size_t)act[r] * rb, rb);
    }
    shape[0] = n;
    return itr_tensor_wrap(x->dtype, rank, shape, pr->gathered[k]);
}

// Row b of body input k as it was before the step (a carry's, from its result).
static const char *input_row(const struct packed_run *pr, struct itr_tensor *const *in, struct itr_tensor *const *out,
                             int k, int64_t t, int64_t b) {
    if (k < pr->nc) return (const char *)out[k]->data + (size_t)b * pr->in_rb[k];
    if (k >= pr->nc + pr->ns) return (const char *)in[k]->data + (size_t)b * pr->in_rb[k];
    slice_row(in[k], norm_axis(pr->ax_of_scan, in[k]->rank), t, b, pr->B, pr->tmp, false);
    return pr->tmp;
}

// Sets up pr for scan node n with operands in and results out (allocated);
// false when this run cannot be packed (the caller runs every row).
static bool packed_setup(struct packed_run *pr, const struct itr_scan_rows *r, const struct itr_node *n,
                         struct itr_tensor *const *in, struct itr_tensor *const *out,
                         const struct itr_dim_bindings *dims) {
    memset(pr, 0, sizeof *pr);
    pr->r = r;
    pr->nc = (int)itr_node_attr_int(n, "n_carry");
    pr->ns = (int)itr_node_attr_int(n, "n_scan");
    pr->nb_in = n->n_inputs;
    pr->nb_out = n->n_outputs;
    pr->ax_of_scan = (int)itr_node_attr_int(n, "axis");
    if (r->batch_symbol < 0 || r->batch_symbol >= dims->n || !dims->bound[r->batch_symbol]) return false;
    int64_t B = pr->B = dims->value[r->batch_symbol];
    const struct itr_tensor *m = in[r->mask];
    int max = norm_axis(pr->ax_of_scan, m->rank);
    pr->len = m->shape[max];
    if (B < 1 || pr->len < 1 || (m->dtype != ITR_F32 && m->dtype != ITR_F64)) return false;
    pr->in_rb = xcalloc((size_t)pr->nb_in, sizeof *pr->in_rb);
    pr->out_rb = xcalloc((size_t)pr->nb_out, sizeof *pr->out_rb);
    pr->gathered = xcalloc((size_t)pr->nb_in, sizeof *pr->gathered);
    pr->whole_slice = xcalloc((size_t)pr->nb_in, sizeof *pr->whole_slice);
    pr->fill = xcalloc((size_t)pr->nb_out, sizeof *pr->fill);
    size_t widest = 0;
    for (int k = 0; k < pr->nb_in; k++) {
        const struct itr_tensor *x = in[k];
        bool scanned = k >= pr->nc && k < pr->nc + pr->ns;
        int ax = scanned ? norm_axis(pr->ax_of_scan, x->rank) : -1;
        if (scanned && x->shape[ax] != pr->len) return false;
        if (!r->row_input[k]) {
            if (scanned) pr->whole_slice[k] = xcalloc(1, itr_tensor_nbytes(x) / (size_t)pr->len + 1);
            continue;
        }
        int batch_axis = ax == 0 ? 1 : 0;
        if (x->rank <= batch_axis || x->shape[batch_axis] != B) return false;
        pr->in_rb[k] = scanned ? slice_row_bytes(x, ax, B) : itr_tensor_nbytes(x) / (size_t)B;
        pr->gathered[k] = xcalloc((size_t)B, pr->in_rb[k] + 1);
        if (pr->in_rb[k] > widest) widest = pr->in_rb[k];
    }
    if (pr->in_rb[r->mask] != itr_dtype_size(m->dtype)) return false;   // one value per row
    for (int o = 0; o < pr->nb_out; o++) {
        if (r->fill[o] == ITR_SKIP_WHOLE) continue;
        const struct itr_tensor *y = out[o];
        if (o < pr->nc) {
            if (!same_shape(y, in[o])) return false;
            pr->out_rb[o] = pr->in_rb[o];
        } else {
            int ax = norm_axis(pr->ax_of_scan, y->rank);
            int batch_axis = ax == 0 ? 1 : 0;
            if (y->rank <= batch_axis || y->shape[batch_axis] != B || y->shape[ax] != pr->len) return false;
            pr->out_rb[o] = slice_row_bytes(y, ax, B);
        }
        if (r->fill[o] == ITR_SKIP_COPY && pr->in_rb[r->src[o]] != pr->out_rb[o]) return false;
        if (r->fill[o] == ITR_SKIP_CONST || r->fill[o] == ITR_SKIP_ANY) {
            pr->fill[o] = xcalloc(1, pr->out_rb[o] + 1);
            fill_row(pr->fill[o], pr->out_rb[o], y->dtype, r->fill[o] == ITR_SKIP_CONST ? r->value[o] : 0);
        }
        if (pr->out_rb[o] > widest) widest = pr->out_rb[o];
    }
    pr->tmp = xcalloc(1, widest + 1);
    return true;
}

// A scan run on the rows whose mask is not 0 at each step, with the batch
// symbol bound to their count; the other rows take what the proof says
// (ITR_SKIP_*). Results as run_scan's. *packed false: this run's operands
// do not fit the proof, nothing was done, and the caller runs every row.
static bool run_scan_packed(const struct itr_llvm_exe *e, const struct run_ctx *rc, int si,
                            const struct itr_llvm_exe *body, const struct itr_node *n, struct itr_tensor *const *params,
                            struct itr_dim_bindings *dims, struct itr_tensor **val, bool *owned, bool *packed,
                            struct itr_diags *d) {
    const struct itr_scan_rows *r = e->packed[si];
    int nb_in = n->n_inputs, nb_out = n->n_outputs;
    *packed = false;
    if (body->g->n_inputs != nb_in || body->g->n_outputs != nb_out) return true;
    struct itr_tensor **in = xcalloc((size_t)nb_in, sizeof *in);
    struct itr_tensor **out = xcalloc((size_t)nb_out + 1, sizeof *out);
    for (int i = 0; i < nb_in; i++) in[i] = val[n->inputs[i]];
    bool ok = true;
    for (int i = 0; i < nb_out && ok; i++) {
        out[i] = new_value(e, rc, n->outputs[i], dims, d);
        if (!out[i]) ok = false;
    }
    struct packed_run pr;
    bool fits = ok && packed_setup(&pr, r, n, in, out, dims);
    if (!fits) {
        if (ok) packed_run_free(&pr);
        for (int i = 0; i < nb_out; i++) release_value(e, rc, n->outputs[i], out[i]);
        free(out);
        free(in);
        *packed = !ok;   // an allocation failure is this run's error
        return ok;
    }
    *packed = true;
    int nc = pr.nc;
    int64_t B = pr.B, len = pr.len;
    bool reverse = itr_node_attr_int(n, "reverse") != 0;
    for (int i = 0; i < nc; i++) memcpy(out[i]->data, in[i]->data, itr_tensor_nbytes(in[i]));
    // The body writes its results into buffers of the full batch's size,
    // reused every step.
    struct itr_tensor **into = xcalloc((size_t)nb_out + 1, sizeof *into);
    int64_t *into_cap = xcalloc((size_t)nb_out + 1, sizeof *into_cap);
    bool any_whole = false;
    for (int o = 0; o < nb_out; o++) {
        size_t bytes = o < nc ? itr_tensor_nbytes(in[o]) : itr_tensor_nbytes(out[o]) / (size_t)len;
        int64_t shape[1] = { 0 };
        into_cap[o] = (int64_t)(bytes < 64 ? 64 : bytes);
        void *data = aligned_alloc(64, ((size_t)into_cap[o] + 63) / 64 * 64);
        into[o] = data ? itr_tensor_wrap(out[o]->dtype, 1, shape, data) : NULL;
        if (into[o]) into[o]->owns_data = true;
        else free(data);
        any_whole = any_whole || r->fill[o] == ITR_SKIP_WHOLE;
    }
    struct run_ctx body_rc = { NULL, rc->ar, into, into_cap, NULL, NULL, NULL };
    if (rc->base && e->ws[si] >= 0 && e->plan->buffers[e->ws[si]].bytes > 0)
        body_rc.base = rc->base + e->plan->buffers[e->ws[si]].offset;
    // Fixed inputs read whole every step (not gathered by row) are the same
    // every step.
    bool *fixed = xcalloc((size_t)nb_in + 1, sizeof *fixed);
    for (int k = pr.nc + pr.ns; k < nb_in; k++) fixed[k] = !r->row_input[k];
    struct prepacked pp = { .fixed = fixed };
    if (e->prepack) body_rc.pp = &pp;
    struct itr_dim_bindings kept = *dims;   // the batch symbol bound to the kept rows' count
    kept.value = xcalloc((size_t)dims->n + 1, sizeof *kept.value);
    memcpy(kept.value, dims->value, (size_t)dims->n * sizeof *kept.value);
    int64_t *act = xcalloc((size_t)B, sizeof *act);
    bool *on = xcalloc((size_t)B, sizeof *on);
    struct itr_tensor **step_in = xcalloc((size_t)nb_in, sizeof *step_in);
    struct itr_tensor **step_out = xcalloc((size_t)nb_out + 1, sizeof *step_out);
    const struct itr_tensor *m = in[r->mask];
    int max = norm_axis(pr.ax_of_scan, m->rank);
    int64_t run_rows = 0, skipped_rows = 0;
    // The stacked results whose skipped rows are 0, for the products that
    // read them (struct zero_rows): rows over the batch and scan axes.
    uint8_t **zrow = xcalloc((size_t)nb_out + 1, sizeof *zrow);
    for (int o = nc; rc->zr && o < nb_out; o++)
        if (r->fill[o] == ITR_SKIP_CONST && r->value[o] == 0 && out[o]->rank >= 2 &&
            norm_axis(pr.ax_of_scan, out[o]->rank) <= 1)
            zrow[o] = xcalloc((size_t)(B * len), 1);
    for (int64_t st = 0; st < len && ok; st++) {
        int64_t t = reverse ? len - 1 - st : st;
        int64_t n_on = 0;
        for (int64_t b = 0; b < B; b++) {
            double mv;
            slice_row(m, max, t, b, B, pr.tmp, false);
            mv = m->dtype == ITR_F64 ? *(const double *)pr.tmp : *(const float *)pr.tmp;
            on[b] = mv != 0;   // NaN runs
            if (on[b]) act[n_on++] = b;
        }
        // With no row kept a whole result still needs its step: one skipped
        // row adds nothing to it (the proof), and its rows are filled below.
        int64_t n_run = n_on ? n_on : any_whole ? 1 : 0;
        if (!n_on) act[0] = 0;
        run_rows += n_run;
        skipped_rows += B - n_run;
        if (n_run) {
            kept.value[r->batch_symbol] = n_run;
            for (int k = 0; k < nb_in; k++) step_in[k] = packed_input(&pr, in, out, k, t, act, n_run);
            bool ran = exe_run((struct itr_llvm_exe *)body, &body_rc, step_in, params, &kept, step_out, d);
            for (int k = 0; k < nb_in; k++) itr_tensor_free(step_in[k]);
            if (!ran) {
                itr_diag_note(d, n->loc, "in step %lld of the scan over '%s'", (long long)t, body->g->name);
                ok = false;
                break;
            }
            for (int o = 0; o < nb_out && ok; o++) {
                size_t want = r->fill[o] == ITR_SKIP_WHOLE ? (o < nc ? itr_tensor_nbytes(out[o])
                                                                     : itr_tensor_nbytes(out[o]) / (size_t)len)
                                                           : (size_t)n_run * pr.out_rb[o];
                if (itr_tensor_nbytes(step_out[o]) != want || step_out[o]->dtype != out[o]->dtype)
                    ok = node_error(n, d, "internal error: step %lld of the packed scan: output %d has %zu bytes, "
                                          "not %zu", (long long)t, o, itr_tensor_nbytes(step_out[o]), want);
            }
        }
        // The stacked outputs first: a skipped row may copy a carry's row
        // as it was before the step.
        for (int o = nc; o < nb_out && ok; o++) {
            struct itr_tensor *y = out[o];
            int ax = norm_axis(pr.ax_of_scan, y->rank);
            if (r->fill[o] == ITR_SKIP_WHOLE) {
                slice_copy(y, ax, t, step_out[o]->data, true);
                continue;
            }
            for (int64_t i = 0; i < n_on; i++)
                slice_row(y, ax, t, act[i], B, (char *)step_out[o]->data + (size_t)i * pr.out_rb[o], true);
            for (int64_t b = 0; b < B; b++) {
                if (on[b]) continue;
                if (zrow[o]) zrow[o][ax == 0 ? t * B + b : b * len + t] = 1;
                const char *row = r->fill[o] == ITR_SKIP_COPY ? input_row(&pr, in, out, r->src[o], t, b) : pr.fill[o];
                if (row != pr.tmp) memcpy(pr.tmp, row, pr.out_rb[o]);
                slice_row(y, ax, t, b, B, pr.tmp, true);
            }
        }
        for (int i = 0; i < nc && ok; i++) {
            char *state = out[i]->data;
            if (r->fill[i] == ITR_SKIP_WHOLE) {
                if (n_run) memcpy(state, step_out[i]->data, itr_tensor_nbytes(out[i]));
                continue;
            }
            size_t rb = pr.out_rb[i];
            for (int64_t k = 0; k < n_on; k++)
                memcpy(state + (size_t)act[k] * rb, (const char *)step_out[i]->data + (size_t)k * rb, rb);
            if (r->fill[i] == ITR_SKIP_CONST)   // COPY keeps the row where it is
                for (int64_t b = 0; b < B; b++)
                    if (!on[b]) memcpy(state + (size_t)b * rb, pr.fill[i], rb);
        }
        for (int o = 0; o < nb_out; o++) {
            itr_tensor_free(step_out[o]);
            step_out[o] = NULL;
        }
    }
    __atomic_add_fetch(&((struct itr_llvm_exe *)e)->rows_run, run_rows, __ATOMIC_RELAXED);
    __atomic_add_fetch(&((struct itr_llvm_exe *)e)->rows_skipped, skipped_rows, __ATOMIC_RELAXED);
    for (int o = 0; o < nb_out; o++) {
        itr_tensor_free(step_out[o]);
        if (ok) {
            val[n->outputs[o]] = out[o];
            owned[n->outputs[o]] = true;
        } else {
            release_value(e, rc, n->outputs[o], out[o]);
        }
        itr_tensor_free(into[o]);
        if (ok && zrow[o]) zero_rows_set(rc->zr, n->outputs[o], zrow[o], B * len);
        else free(zrow[o]);
    }
    free(zrow);
    prepacked_free(&pp);
    free(fixed);
    packed_run_free(&pr);
    free(kept.value);
    free(act);
    free(on);
    free(step_in);
    free(step_out);
    free(into);
    free(into_cap);
    free(out);
    free(in);
    return ok;
}

// The body runs in the scan's workspace in the arena (its own plan's
// offsets, reused every step); its outputs are allocated per step.
static bool run_scan(const struct itr_llvm_exe *e, const struct run_ctx *rc, int si, const struct itr_llvm_exe *body,
                     const struct itr_node *n, struct itr_tensor *const *params, struct itr_dim_bindings *dims,
                     struct itr_tensor **val, bool *owned, struct itr_diags *d) {
    const struct itr_graph *bg = body->g;
    int nc = (int)itr_node_attr_int(n, "n_carry"), ns = (int)itr_node_attr_int(n, "n_scan");
    int64_t axis = itr_node_attr_int(n, "axis");
    bool reverse = itr_node_attr_int(n, "reverse") != 0;
    int nb_in = n->n_inputs, nb_out = n->n_outputs;
    if (bg->n_inputs != nb_in || bg->n_outputs != nb_out)
        return node_error(n, d, "the body graph does not match the scan's operands and results");
    struct itr_tensor **in = xcalloc((size_t)nb_in, sizeof *in);
    for (int i = 0; i < nb_in; i++) in[i] = val[n->inputs[i]];
    int64_t len = in[nc]->shape[norm_axis(axis, in[nc]->rank)];
    for (int i = nc; i < nc + ns; i++)
        if (in[i]->shape[norm_axis(axis, in[i]->rank)] != len) {
            char a[64], b[64];
            shape_str(in[nc], a, sizeof a);
            shape_str(in[i], b, sizeof b);
            free(in);
            return node_error(n, d, "scanned operands %d (%s) and %d (%s) have different lengths along axis %lld", nc,
                              a, i, b, (long long)axis);
        }
    bool ok = true;
    struct itr_tensor **out = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *out);
    for (int i = 0; i < nb_out && ok; i++) {
        out[i] = new_value(e, rc, n->outputs[i], dims, d);
        if (!out[i]) ok = false;
    }
    // What the body writes its outputs into, allocated once for the scan:
    // each carry alternates between two buffers (the step reads one and
    // writes the other); a stacked output is written straight into its
    // slice of the result where the slice is contiguous (the scan runs along
    // the leading axis), else into one staging buffer copied out per step.
    struct itr_tensor **into = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *into);
    struct itr_tensor **spare = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *spare);
    int64_t *into_cap = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *into_cap);
    bool *direct = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *direct);
    // (Not with ITRC_NO_EXEC_ARENA=1, or when another thread holds the
    // arena: the body then allocates its outputs every step, as before.)
    for (int i = 0; i < nb_out && ok && rc->ar; i++) {
        int64_t shape[ITR_MAX_RANK];
        int rank;
        enum itr_dtype dt = out[i]->dtype;
        if (i < nc) {
            rank = in[i]->rank;
            memcpy(shape, in[i]->shape, sizeof shape);
            dt = in[i]->dtype;
        } else {
            int ax = norm_axis(axis, out[i]->rank);
            rank = out[i]->rank - 1;
            for (int k = 0, r = 0; k < out[i]->rank; k++)
                if (k != ax) shape[r++] = out[i]->shape[k];
            struct lane l = lane_of(out[i], ax);
            direct[i] = l.outer == 1 && l.inner >= 64;
            if (direct[i]) {
                into[i] = itr_tensor_wrap(dt, rank, shape, out[i]->data);
                into_cap[i] = (int64_t)l.inner;
                continue;
            }
        }
        int64_t numel;
        if (!itr_shape_numel(rank, shape, &numel)) continue;   // the body's own output will not fit: none
        into_cap[i] = numel * (int64_t)itr_dtype_size(dt) < 64 ? 64 : numel * (int64_t)itr_dtype_size(dt);
        for (int c = 0; c < (i < nc ? 2 : 1); c++) {
            struct itr_tensor **slot = c ? &spare[i] : &into[i];
            void *data = aligned_alloc(64, (size_t)(into_cap[i] + 63) / 64 * 64);
            *slot = data ? itr_tensor_wrap(dt, rank, shape, data) : NULL;
            if (*slot) (*slot)->owns_data = true;
            else free(data);
        }
        if (i < nc && (!into[i] || !spare[i])) {   // out of memory: the body allocates it per step
            itr_tensor_free(into[i]);
            itr_tensor_free(spare[i]);
            into[i] = spare[i] = NULL;
        }
    }
    struct run_ctx body_rc = { NULL, rc->ar, into, into_cap, NULL, NULL, NULL };   // a body writes no parameter
    if (rc->base && e->ws[si] >= 0 && e->plan->buffers[e->ws[si]].bytes > 0)
        body_rc.base = rc->base + e->plan->buffers[e->ws[si]].offset;
    bool *fixed = xcalloc((size_t)nb_in + 1, sizeof *fixed);
    for (int i = nc + ns; i < nb_in; i++) fixed[i] = true;
    struct prepacked pp = { .fixed = fixed };
    if (e->prepack) body_rc.pp = &pp;
    struct itr_tensor **step_in = xcalloc((size_t)nb_in, sizeof *step_in);
    struct itr_tensor **step_out = xcalloc((size_t)(nb_out ? nb_out : 1), sizeof *step_out);
    struct itr_tensor **carry = xcalloc((size_t)(nc ? nc : 1), sizeof *carry);
    bool *view = xcalloc((size_t)nb_in, sizeof *view);
    for (int i = nc; i < nc + ns && ok; i++) {
        const struct itr_tensor *s = in[i];
        int ax = norm_axis(axis, s->rank);
        int64_t shape[ITR_MAX_RANK];
        for (int k = 0, r = 0; k < s->rank; k++)
            if (k != ax) shape[r++] = s->shape[k];
        view[i] = lane_of(s, ax).outer == 1;
        step_in[i] = view[i] ? itr_tensor_wrap(s->dtype, s->rank - 1, shape, s->data)
                             : itr_tensor_new(s->dtype, s->rank - 1, shape);
        if (!step_in[i]) ok = node_error(n, d, "out of memory");
    }
    for (int i = nc + ns; i < nb_in; i++) step_in[i] = in[i];
    for (int i = 0; i < nc; i++) carry[i] = in[i];
    for (int64_t st = 0; st < len && ok; st++) {
        int64_t t = reverse ? len - 1 - st : st;
        for (int i = 0; i < nc; i++) step_in[i] = carry[i];
        for (int i = 0; i < nb_out; i++) {
            struct lane l = direct[i] ? lane_of(out[i], norm_axis(axis, out[i]->rank)) : (struct lane){ 0, 0, 0 };
            if (direct[i]) into[i]->data = (char *)out[i]->data + (size_t)t * l.inner;
        }
        for (int i = nc; i < nc + ns; i++) {
            int ax = norm_axis(axis, in[i]->rank);
            if (view[i]) step_in[i]->data = (char *)in[i]->data + (size_t)t * lane_of(in[i], ax).inner;
            else slice_copy(in[i], ax, t, step_in[i]->data, false);
        }
        if (!exe_run((struct itr_llvm_exe *)body, &body_rc, step_in, params, dims, step_out, d)) {
            itr_diag_note(d, n->loc, "in step %lld of the scan over '%s'", (long long)t, bg->name);
            ok = false;
            break;
        }
        for (int i = 0; i < nc; i++) {
            if (!same_shape(step_out[i], in[i])) {
                char a[64], b[64];
                shape_str(step_out[i], a, sizeof a);
                shape_str(in[i], b, sizeof b);
                ok = node_error(n, d, "step %lld: new carry %d has shape %s, the carry has %s", (long long)t, i, a, b);
            }
            if (st > 0) itr_tensor_free(carry[i]);   // in a carry buffer: only the tensor
            carry[i] = step_out[i];
            // the next step writes the other buffer
            struct itr_tensor *x = into[i];
            into[i] = spare[i];
            spare[i] = x;
        }
        for (int i = nc; i < nb_out; i++) {
            struct itr_tensor *y = out[i];
            int ax = norm_axis(axis, y->rank);
            bool fits = y->rank == step_out[i]->rank + 1 && y->shape[ax] == len && y->dtype == step_out[i]->dtype;
            for (int k = 0, r = 0; fits && k < y->rank; k++)
                if (k != ax) fits = y->shape[k] == step_out[i]->shape[r++];
            if (!fits && ok) {
                char a[64], b[64];
                shape_str(step_out[i], a, sizeof a);
                shape_str(y, b, sizeof b);
                ok = node_error(n, d, "step %lld: output %d of shape %s does not stack into %s", (long long)t, i, a, b);
            }
            // written in place (direct) unless the body could not use the slice
            if (ok && !(direct[i] && step_out[i]->data == into[i]->data)) slice_copy(y, ax, t, step_out[i]->data, true);
            itr_tensor_free(step_out[i]);
            step_out[i] = NULL;
        }
    }
    for (int i = 0; i < nc; i++) {
        if (ok) {
            if (!same_shape(carry[i], out[i])) {
                char a[64], b[64];
                shape_str(carry[i], a, sizeof a);
                shape_str(out[i], b, sizeof b);
                ok = node_error(n, d, "final carry %d has shape %s, the result has %s", i, a, b);
            } else {
                memcpy(out[i]->data, carry[i]->data, itr_tensor_nbytes(carry[i]));
            }
        }
        if (carry[i] != in[i]) itr_tensor_free(carry[i]);
    }
    for (int i = nc; i < nc + ns; i++) {
        if (view[i] && step_in[i]) step_in[i]->data = NULL;   // a view: the data is the operand's
        itr_tensor_free(step_in[i]);
    }
    for (int i = 0; i < nb_out; i++) {
        if (ok) {
            val[n->outputs[i]] = out[i];
            owned[n->outputs[i]] = true;
        } else {
            release_value(e, rc, n->outputs[i], out[i]);
        }
    }
    for (int i = 0; i < nb_out; i++) {
        if (direct[i] && into[i]) into[i]->data = NULL;   // a view into the result
        itr_tensor_free(into[i]);
        itr_tensor_free(spare[i]);
    }
    prepacked_free(&pp);
    free(fixed);
    free(into);
    free(spare);
    free(into_cap);
    free(direct);
    free(view);
    free(step_in);
    free(step_out);
    free(carry);
    free(out);
    free(in);
    return ok;
}

bool itr_llvm_exe_run(struct itr_llvm_exe *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                      struct itr_dim_bindings *dims, struct itr_tensor **outputs, struct itr_diags *d) {
    return itr_llvm_exe_run_with(e, inputs, params, dims, NULL, outputs, d);
}

bool itr_llvm_exe_run_with(struct itr_llvm_exe *e, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                           struct itr_dim_bindings *dims, struct itr_run_options *ro, struct itr_tensor **outputs,
                           struct itr_diags *d) {
    if (ro) ro->stopped = false;
    // The same executable run from two threads at once: the second run
    // allocates per value rather than wait.
    struct arena *ar = e->arena && pthread_mutex_trylock(&e->arena->mu) == 0 ? e->arena : NULL;
    struct run_ctx rc = { .ar = ar, .ro = ro };
    bool ok = exe_run(e, &rc, inputs, params, dims, outputs, d);
    if (ar) {
        ARENA_POISON(ar->mem, ar->cap);
        pthread_mutex_unlock(&ar->mu);
    }
    return ok;
}

// Before a step that writes an update over an input (kir_step alias): the
// input's memory must be the run's to write. A parameter of a caller that
// allows it (a session's training step) is written where it is; any other
// input is copied first, so the caller's tensor keeps its value. When the
// loss the caller names is not finite, sets *stop (nothing may be written)
// and returns true; false is an error.
static bool prepare_aliases(const struct itr_llvm_exe *e, const struct run_ctx *rc, const struct kir_step *st,
                            struct itr_tensor **val, bool *owned, bool *shared, bool *stop, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    struct itr_run_options *ro = rc->ro;
    for (int b = 0; b < st->n_bufs; b++) {
        int32_t a = kir_step_alias(st, b), v = st->bufs[b];
        if (a < 0) continue;
        if (!val[v]) {
            itr_diag_error(d, g->values[v].loc, "internal error: '%s' has no value to update in place", g->values[v].name);
            return false;
        }
        if (owned[v]) continue;
        bool writable = ro && ro->params_writable && g->values[v].kind == ITR_VALUE_PARAM && val[v]->owns_data;
        if (writable && ro->finite_output >= 0 && !ro->stopped) {
            // Before any parameter is written (the loss stays as it is).
            const struct itr_tensor *loss = val[g->outputs[ro->finite_output]];
            if (!loss) writable = false;
            else if (!isfinite(itr_tensor_get(loss, 0))) {
                ro->stopped = true;
                *stop = true;
                return true;
            }
        }
        if (writable) {
            shared[v] = true;
            continue;
        }
        struct itr_tensor *c = itr_tensor_clone(val[v]);
        if (!c) {
            itr_diag_error(d, g->values[v].loc, "out of memory copying '%s' to update it", g->values[v].name);
            return false;
        }
        val[v] = c;
        owned[v] = true;
    }
    return true;
}

// After it: each aliased output takes its input's tensor.
static void take_aliases(const struct kir_step *st, struct itr_tensor **val, bool *owned, bool *shared) {
    for (int b = 0; b < st->n_bufs; b++) {
        int32_t a = kir_step_alias(st, b), v = st->bufs[b];
        if (a < 0) continue;
        val[a] = val[v];
        owned[a] = owned[v];
        shared[a] = shared[v];
        val[v] = NULL;
        owned[v] = shared[v] = false;
    }
}

// Frees what step si was the last to read, and results nobody reads.
static void free_after_step(const struct itr_llvm_exe *e, const struct run_ctx *rc, int si, struct itr_tensor **val,
                            bool *owned) {
    for (int32_t f = e->free_start[si]; f < e->free_start[si + 1]; f++) {
        int32_t v = e->free_vals[f];
        if (owned[v]) { release_value(e, rc, v, val[v]); val[v] = NULL; owned[v] = false; }
    }
}

// One kernel step of a launch: its entry point, bound buffers and dims, its
// iterations and its work (its largest buffer's elements); start: where its
// work begins in the launch's.
struct launch_seg { itr_kernel_fn fn; void **bufs; int64_t *dims; int64_t hi, work, start; };
struct multi_launch { const struct launch_seg *seg; int n; int64_t total, parts; };

// Part t of a multi-tensor launch: the work [total t / parts, total (t+1) /
// parts) of the steps laid end to end, each step's share of it mapped to its
// iterations. Consecutive parts meet at the same iteration, so every
// iteration runs once, and a serial kernel (one iteration) wholly on the
// thread whose part covers its end.
static void multi_part(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi) {
    (void)dims;
    const struct multi_launch *ml = bufs[0];
    for (int64_t t = lo; t < hi; t++) {
        int64_t a = ml->total * t / ml->parts, b = ml->total * (t + 1) / ml->parts;
        for (int i = 0; i < ml->n; i++) {
            const struct launch_seg *g = &ml->seg[i];
            int64_t s0 = g->start, s1 = g->start + g->work;
            if (!g->hi || s1 <= a || s0 >= b) continue;
            int64_t x0 = (a > s0 ? a : s0) - s0, x1 = (b < s1 ? b : s1) - s0;
            int64_t i0 = x0 * g->hi / g->work, i1 = x1 * g->hi / g->work;
            if (i0 < i1) g->fn(g->bufs, g->dims, i0, i1);
        }
    }
}

static bool ranges_overlap(const struct itr_tensor *x, const struct itr_tensor *y) {
    const char *a = x->data, *b = y->data;
    size_t na = itr_tensor_nbytes(x), nb = itr_tensor_nbytes(y);
    return na && nb && a < b + nb && b < a + na;
}

// Whether a written buffer of one step of the group shares memory with any
// buffer of another. plan_launch_groups keeps a step that stores a new value
// out of a group in which a value is freed, so the memory plan cannot place
// one over the other; this guards that rule at run time (the group then runs
// one step after another).
static bool launch_memory_overlaps(const struct itr_llvm_exe *e, int si, int n, struct itr_tensor *const *val) {
    for (int p = 0; p < n; p++) {
        const struct kir_step *a = &e->s->steps[si + p];
        const struct kir_kernel *ka = e->s->kernels[a->kernel];
        for (int q = 0; q < n; q++) {
            const struct kir_step *b = &e->s->steps[si + q];
            for (int i = 0; p != q && i < a->n_bufs; i++) {
                if (!ka->bufs[i].written) continue;
                for (int j = 0; j < b->n_bufs; j++)
                    if (ranges_overlap(val[a->bufs[i]], val[b->bufs[j]])) return true;
            }
        }
    }
    return false;
}

// Kernel steps [si, ge): their updates in place prepared (all before any
// writes: a loss that is not finite sets *stopped and nothing is written),
// their results allocated, and launched: one step as before, several as one
// multi-tensor launch (plan_launch_groups).
static bool run_kernel_steps(struct itr_llvm_exe *e, const struct run_ctx *rc, int si, int ge,
                             struct itr_dim_bindings *dims, struct itr_tensor **val, bool *owned, bool *shared,
                             bool *stopped, struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    const struct itr_program *p = g->prog;
    const struct kir_schedule *s = e->s;
    int n = ge - si;
    for (int q = si; q < ge; q++) {
        const struct kir_step *st = &s->steps[q];
        if (st->alias && !prepare_aliases(e, rc, st, val, owned, shared, stopped, d)) return false;
        if (*stopped) return true;
    }
    struct launch_seg *seg = xcalloc((size_t)n, sizeof *seg);
    bool ok = true;
    int64_t total = 0;
    for (int q = 0; q < n && ok; q++) {
        const struct kir_step *st = &s->steps[si + q];
        const struct itr_node *nd = &g->nodes[st->node];
        const struct kir_kernel *k = s->kernels[st->kernel];
        struct launch_seg *sg = &seg[q];
        sg->fn = e->fns[st->kernel];
        sg->bufs = xcalloc((size_t)k->n_bufs + 1, sizeof *sg->bufs);
        sg->dims = xcalloc((size_t)k->n_dims + 1, sizeof *sg->dims);
        for (int b = 0; b < k->n_bufs && ok; b++) {
            int32_t v = st->bufs[b];
            if (k->bufs[b].written && !val[v]) {
                val[v] = new_value(e, rc, v, dims, d);
                owned[v] = val[v] != NULL;
                if (!val[v]) ok = false;
            }
            if (ok && !val[v]) {
                itr_diag_error(d, nd->loc, "internal error: kernel %s reads '%s', which has no value", k->name,
                               g->values[v].name);
                ok = false;
            }
            if (ok) sg->bufs[b] = val[v]->data;
        }
        bool dok = true;
        for (int j = 0; j < k->n_dims; j++) sg->dims[j] = eval_dim(p, dims, k->dims[j].dim, &dok);
        sg->hi = k->parallel_dim >= 0 ? eval_dim(p, dims, k->parallel_dim, &dok) : 1;
        if (ok && !dok) {
            itr_diag_error(d, nd->loc, "internal error: kernel %s has a dim that the run does not bind", k->name);
            ok = false;
        }
        for (int b = 0; ok && b < k->n_bufs; b++) {
            int64_t ne = itr_tensor_numel(val[st->bufs[b]]);
            if (ne > sg->work) sg->work = ne;
        }
        if (sg->hi > 0 && sg->work < 1) sg->work = 1;
        sg->start = total;
        total += sg->hi > 0 ? sg->work : 0;
    }
    if (ok) {
        if (n == 1) {
            launch(e->pool, seg[0].fn, seg[0].bufs, seg[0].dims, seg[0].hi, seg[0].work);
        } else if (!e->pool || e->pool->n <= 1 || total < parallel_min_elements() ||
                   launch_memory_overlaps(e, si, n, val)) {
            for (int q = 0; q < n; q++) launch(e->pool, seg[q].fn, seg[q].bufs, seg[q].dims, seg[q].hi, seg[q].work);
        } else {
            struct multi_launch ml = { seg, n, total, e->pool->n };
            void *bufs[1] = { &ml };
            pool_run(e->pool, multi_part, bufs, NULL, ml.parts);
            __atomic_add_fetch(&e->multi_launches, 1, __ATOMIC_RELAXED);
        }
        for (int q = si; q < ge; q++)
            if (s->steps[q].alias) take_aliases(&s->steps[q], val, owned, shared);
    }
    for (int q = 0; q < n; q++) {
        free(seg[q].bufs);
        free(seg[q].dims);
    }
    free(seg);
    return ok;
}

// A run of e; a top-level executable (e->owns) holding the arena (rc->ar)
// prepares it once the dims are bound, a scan body gets its base in rc.
static bool exe_run(struct itr_llvm_exe *e, const struct run_ctx *rc_in, struct itr_tensor *const *inputs,
                    struct itr_tensor *const *params, struct itr_dim_bindings *dims, struct itr_tensor **outputs,
                    struct itr_diags *d) {
    const struct itr_graph *g = e->g;
    const struct itr_program *p = g->prog;
    const struct kir_schedule *s = e->s;
    struct itr_dim_bindings local;
    bool own_dims = !dims;
    if (own_dims) { itr_bindings_init(&local, p); dims = &local; }
    int nv = g->n_values;
    struct itr_tensor **val = xcalloc((size_t)nv, sizeof *val);
    bool *owned = xcalloc((size_t)nv, sizeof *owned), *given = xcalloc((size_t)nv, sizeof *given);
    bool *shared = xcalloc((size_t)nv, sizeof *shared);   // a caller's parameter, updated in place
    bool stopped = false;
    for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
    bool ok = bind_inputs(e, inputs, params, dims, val, owned, d);
    struct run_ctx rcv = *rc_in, *rc = &rcv;
    if (ok && e->owns && rc->ar && e->plan) rc->base = arena_prepare(e, rc->ar, dims);
    if (e->owns && rc->ar && e->prepack && rc->ro && rc->ro->params_version && !rc->ro->params_writable) {
        struct arena *ar = rc->ar;
        if (ar->weights_version != rc->ro->params_version) prepacked_free(&ar->weights);
        ar->weights_version = rc->ro->params_version;
        rc->pp = &ar->weights;
    }
    struct zero_rows zr = { 0 };
    if (e->owns && e->packed_products && !rc->zr) {
        zr.rows = xcalloc((size_t)nv, sizeof *zr.rows);
        zr.n_zero = xcalloc((size_t)nv, sizeof *zr.n_zero);
        zr.zero = xcalloc((size_t)nv, sizeof *zr.zero);
        rc->zr = &zr;
    }

    // Per GEMM step with a quadratic form: the form, until its kernel step
    // copies it into place (plan_qforms).
    char **qres = e->any_qform ? xcalloc((size_t)s->n_steps, sizeof *qres) : NULL;
    size_t *qbytes = e->any_qform ? xcalloc((size_t)s->n_steps, sizeof *qbytes) : NULL;

    e->runs++;
    for (int si = 0; si < s->n_steps && ok; si++) {
        double t0 = e->step_seconds ? now_seconds() : 0;
        const struct kir_step *st = &s->steps[si];
        const struct itr_node *n = &g->nodes[st->node];
        bool as_node = st->kind == KIR_STEP_NODE;
        if (!as_node && st->guard_count >= 0) {
            bool dok = true;
            as_node = eval_dim(p, dims, st->guard_count, &dok) == 0 || !dok;
        }
        int32_t qg = qres ? e->qform_gemm[si] : -1;
        if (qg >= 0 && qres[qg]) {
            int32_t q = g->nodes[st->node].outputs[0];
            val[q] = new_value(e, rc, q, dims, d);
            owned[q] = val[q] != NULL;
            ok = val[q] != NULL;
            if (ok && itr_tensor_nbytes(val[q]) != qbytes[qg]) {
                ok = node_error(n, d, "internal error: a quadratic form of %zu bytes for '%s' of %zu",
                                qbytes[qg], g->values[q].name, itr_tensor_nbytes(val[q]));
            }
            if (ok) memcpy(val[q]->data, qres[qg], qbytes[qg]);
            free(qres[qg]);
            qres[qg] = NULL;
        } else if (st->kind == KIR_STEP_GEMM && qres && e->qform_sum[si] >= 0 &&
                   run_qform(e, st, n, val, &qres[si], &qbytes[si])) {
            // the product is not formed
        } else if (st->kind == KIR_STEP_GEMM) {
            ok = run_gemm(e, rc, st, n, dims, val, owned, d);
        } else if (as_node && e->bodies[si]) {
            bool packed = false;
            if (e->packed && e->packed[si])
                ok = run_scan_packed(e, rc, si, e->bodies[si], n, params, dims, val, owned, &packed, d);
            if (!packed) ok = run_scan(e, rc, si, e->bodies[si], n, params, dims, val, owned, d);
        } else if (as_node) {
            const struct itr_node *gn = st->kind == KIR_STEP_KERNEL && st->guard_node >= 0 ? &g->nodes[st->guard_node] : n;
            ok = run_node_step(e, gn, dims, val, owned, d);
        } else {
            int ge = e->group_end[si];
            ok = run_kernel_steps(e, rc, si, ge, dims, val, owned, shared, &stopped, d);
            if (stopped || !ok) break;
            if (ge > si + 1) {   // a group: its time, observations and frees per step
                double dt = e->step_seconds ? now_seconds() - t0 : 0;
                for (int q = si; q < ge; q++) {
                    if (e->step_seconds) e->step_seconds[q] += dt / (ge - si);
                    if (e->observe) observe_step(e, q, false, val);
                    free_after_step(e, rc, q, val, owned);
                }
                si = ge - 1;
                continue;
            }
        }
        if (e->step_seconds) e->step_seconds[si] += now_seconds() - t0;
        if (!ok) break;
        if (e->observe) observe_step(e, si, as_node, val);
        free_after_step(e, rc, si, val, owned);
    }
    for (int k = 0; k < g->n_outputs && ok; k++) {
        int32_t v = g->outputs[k];
        // Stopped before the updates (a loss that is not finite): only the
        // loss comes back.
        if (stopped && k != rc->ro->finite_output) continue;
        if (shared[v] && !given[v]) {   // the caller's own parameter, updated
            outputs[k] = val[v];
            given[v] = true;
            continue;
        }
        if (!val[v]) {
            itr_diag_error(d, g->loc, "graph '%s': output '%s' has no value", g->name, g->output_names[k]);
            ok = false;
            break;
        }
        // A tensor in the arena is copied out (the plan leaves the entry's
        // outputs out of it; this keeps the caller's tensors its own anyway).
        bool in_place = rc->into && rc->into[k] && val[v]->data == rc->into[k]->data;
        if (owned[v] && !given[v] && (val[v]->owns_data || in_place)) {
            outputs[k] = val[v];
            given[v] = true;
        } else {
            outputs[k] = itr_tensor_clone(val[v]);
            if (!outputs[k]) {
                itr_diag_error(d, g->loc, "out of memory copying output '%s'", g->output_names[k]);
                ok = false;
            }
        }
    }
    // An output tensor keeps its 64-byte floor allocation; callers read shape.
    if (!ok)
        for (int k = 0; k < g->n_outputs; k++) {
            if (outputs[k] && !given[g->outputs[k]]) itr_tensor_free(outputs[k]);
            outputs[k] = NULL;
        }
    for (int v = 0; v < nv; v++)
        if (owned[v] && (!given[v] || !ok)) release_value(e, rc, v, val[v]);
    free(val);
    free(owned);
    free(given);
    free(shared);
    zero_rows_free(&zr, nv);
    for (int i = 0; qres && i < s->n_steps; i++) free(qres[i]);
    free(qres);
    free(qbytes);
    if (own_dims) itr_bindings_free(&local);
    return ok;
}
