// CUDA code carried by plans (backends/cuda/cuda_plan.h).
#include "backends/cuda/cuda_plan.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "backends/cuda/cuda_nvrtc.h"
#include "backends/cuda/cuda_render.h"
#include "ir/ir.h"
#include "ir/kir.h"

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

bool itr_cuda_unit_render(const struct kir_schedule *s, struct itr_cuda_unit *u, char *why, size_t n) {
    memset(u, 0, sizeof *u);
    u->n = s->n_kernels;
    u->names = xcalloc((size_t)s->n_kernels, sizeof *u->names);
    u->first_line = xcalloc((size_t)s->n_kernels, sizeof *u->first_line);
    for (int i = 0; i < s->n_kernels; i++) u->names[i] = s->kernels[i]->name;
    u->src = itr_cuda_render_unit((const struct kir_kernel *const *)s->kernels, u->names, s->n_kernels, u->first_line,
                                  why, n);
    if (!u->src) itr_cuda_unit_free(u);
    return u->src != NULL;
}

void itr_cuda_unit_free(struct itr_cuda_unit *u) {
    free(u->src);
    free(u->names);
    free(u->first_line);
    memset(u, 0, sizeof *u);
}

// "sm_86" -> cubin, 86; "compute_80" -> PTX, 80. False for anything else.
static bool parse_arch(const char *a, bool *cubin, int *cc) {
    const char *d;
    if (strncmp(a, "sm_", 3) == 0) { *cubin = true; d = a + 3; }
    else if (strncmp(a, "compute_", 8) == 0) { *cubin = false; d = a + 8; }
    else return false;
    size_t n = strspn(d, "0123456789");
    if ((n != 2 && n != 3) || d[n] || d[0] == '0') return false;
    *cc = atoi(d);
    return true;
}

int itr_cuda_pick_image(int cc_major, int cc_minor, const char *const *archs, int n) {
    int dev = cc_major * 10 + cc_minor;
    int best_cubin = -1, best_cubin_cc = -1, best_ptx = -1, best_ptx_cc = -1;
    for (int i = 0; i < n; i++) {
        bool cubin;
        int cc;
        if (!archs[i] || !parse_arch(archs[i], &cubin, &cc) || cc > dev) continue;
        if (cubin && cc / 10 == cc_major && cc > best_cubin_cc) best_cubin = i, best_cubin_cc = cc;
        if (!cubin && cc > best_ptx_cc) best_ptx = i, best_ptx_cc = cc;
    }
    return best_cubin >= 0 ? best_cubin : best_ptx;
}

// ---------------------------------------------------------------- compiling

// One distinct unit: the schedules that render to it share its images.
struct unit {
    struct itr_cuda_unit u;
    uint64_t hash;
    char name[200];     // "vsepp: entry 'train' (f32)" (the first schedule's)
};

struct job {
    const struct unit *unit;
    const char *arch;
    bool ok;
    char *msg;
    struct itr_nvrtc_output out;
};

struct pool {
    struct job *jobs;
    int n, next;
    pthread_mutex_t mu;
};

static void *worker(void *arg) {
    struct pool *pl = arg;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        int j = pl->next < pl->n ? pl->next++ : -1;
        pthread_mutex_unlock(&pl->mu);
        if (j < 0) return NULL;
        struct job *x = &pl->jobs[j];
        struct itr_nvrtc_kernels map = { x->unit->u.names, x->unit->u.first_line, x->unit->u.n };
        struct itr_diags d;
        itr_diags_init(&d);
        x->ok = itr_nvrtc_compile(x->unit->u.src, x->unit->name, x->arch, &map, &x->out, &d);
        if (!x->ok) x->msg = itr_diags_summary(&d);
        itr_diags_free(&d);
    }
}

// Largest units first, so that the last job to start is a small one.
static int by_size_desc(const void *a, const void *b) {
    size_t la = strlen(((const struct job *)a)->unit->u.src), lb = strlen(((const struct job *)b)->unit->u.src);
    return la < lb ? 1 : la > lb ? -1 : 0;
}

bool itr_cuda_compile_plan(const struct itr_program *p, const struct kir_plan_kernels *k, int threads,
                           struct itr_devcode *out, struct itr_cuda_compile_stats *st, struct itr_diags *d) {
    static const char *const archs[] = ITR_CUDA_ARCHS;
    const int n_archs = (int)(sizeof archs / sizeof *archs);
    struct itr_cuda_compile_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (!itr_nvrtc_available()) {
        itr_diag_error(d, ITR_NOLOC, "target 'cuda' needs NVRTC, which this build lacks (the CUDA toolkit was not "
                                     "found when it was configured)");
        return false;
    }
    // Each schedule's unit, identical units compiled once.
    struct unit *units = xcalloc((size_t)k->n, sizeof *units);
    int *unit_of = xcalloc((size_t)k->n, sizeof *unit_of);
    int n_units = 0;
    bool ok = true;
    for (int i = 0; i < k->n && ok; i++) {
        const struct kir_schedule *s = k->items[i].s;
        unit_of[i] = -1;
        if (!s->n_kernels) continue;
        st->schedules++;
        st->kernels += s->n_kernels;
        struct unit *x = &units[n_units];
        char why[512];
        snprintf(x->name, sizeof x->name, "%s: entry '%s' (%s)", p->name ? p->name : "model",
                 p->graphs[k->items[i].graph]->name, k->items[i].f64 ? "f64" : "f32");
        if (!itr_cuda_unit_render(s, &x->u, why, sizeof why)) {
            itr_diag_error(d, ITR_NOLOC, "cuda: %s does not render: %s", x->name, why);
            ok = false;
            break;
        }
        x->hash = XXH3_64bits(x->u.src, strlen(x->u.src));
        for (int j = 0; j < n_units && unit_of[i] < 0; j++)
            if (units[j].hash == x->hash && strcmp(units[j].u.src, x->u.src) == 0) unit_of[i] = j;
        if (unit_of[i] >= 0) itr_cuda_unit_free(&x->u);
        else unit_of[i] = n_units++;
    }
    st->units = n_units;
    struct pool pl = { xcalloc((size_t)(n_units * n_archs), sizeof *pl.jobs), 0, 0, PTHREAD_MUTEX_INITIALIZER };
    for (int u = 0; ok && u < n_units; u++)
        for (int a = 0; a < n_archs; a++) pl.jobs[pl.n++] = (struct job){ .unit = &units[u], .arch = archs[a] };
    qsort(pl.jobs, (size_t)pl.n, sizeof *pl.jobs, by_size_desc);
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c < 1 ? 1 : c > 8 ? 8 : (int)c;
    }
    if (threads > pl.n) threads = pl.n > 0 ? pl.n : 1;
    st->threads = threads;
    pthread_t tid[64];
    int started = 0;
    for (int t = 0; ok && t < threads && t < 64; t++)
        if (pthread_create(&tid[t], NULL, worker, &pl) == 0) started++;
    if (ok && !started) worker(&pl);   // no thread could start: compile here
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    // The images, per schedule, in a fixed order: the cubins in
    // ITR_CUDA_ARCHS order, then the PTX of the first arch.
    for (int j = 0; j < pl.n && ok; j++)
        if (!pl.jobs[j].ok) {
            itr_diag_error(d, ITR_NOLOC, "%s", pl.jobs[j].msg ? pl.jobs[j].msg : "NVRTC failed");
            ok = false;
        }
    for (int i = 0; i < k->n && ok; i++) {
        if (unit_of[i] < 0) continue;
        for (int a = 0; a <= n_archs && ok; a++) {
            const char *arch = archs[a < n_archs ? a : 0];
            const struct job *x = NULL;
            for (int j = 0; j < pl.n && !x; j++)
                if (pl.jobs[j].unit == &units[unit_of[i]] && pl.jobs[j].arch == arch) x = &pl.jobs[j];
            char name[16];
            const void *data = a < n_archs ? x->out.cubin : x->out.ptx;
            size_t size = a < n_archs ? x->out.cubin_size : x->out.ptx_size;
            snprintf(name, sizeof name, a < n_archs ? "%s" : "compute_%s", a < n_archs ? arch : arch + 3);
            if (!itr_devcode_add(out, k->items[i].graph, k->items[i].f64, name, data, size)) {
                itr_diag_error(d, ITR_NOLOC, "cuda: %s: cannot store its %s image", units[unit_of[i]].name, name);
                ok = false;
            }
            if (a < n_archs) st->cubin_bytes += size;
            else st->ptx_bytes += size;
        }
    }
    for (int j = 0; j < pl.n; j++) {
        itr_nvrtc_output_free(&pl.jobs[j].out);
        free(pl.jobs[j].msg);
    }
    free(pl.jobs);
    for (int u = 0; u < n_units; u++) itr_cuda_unit_free(&units[u].u);
    free(units);
    free(unit_of);
    return ok;
}
