// Every kernel of every model compiles for the GPU (backends.md §5, issue 11):
// each entry of each model in models/ (the training step included), in its
// f32 and f64 schedules (scan bodies too), is lowered to kernel IR at the
// small test sizes, rendered to CUDA C (backends/cuda/cuda_render.h) and
// compiled by NVRTC to a cubin for sm_80 and for sm_90. Every cubin must be
// a non-empty ELF image that defines every kernel of its unit, and NVRTC
// must not warn.
//
// Kernels repeat across entries and models (the same fused chain at the
// same sizes), so each distinct kernel is compiled once: kernels are keyed
// by a hash of their CUDA source and the distinct ones compiled in units of
// up to UNIT_KERNELS (NVRTC's cost is mostly per unit). Each schedule is also
// rendered as one unit under its own kernel names, as the backend does.
//
// Without NVRTC in the build the test prints why and exits 77, which ctest
// reports as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt).
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <time.h>

#include <xxhash.h>

#include "backends/cuda/cuda_nvrtc.h"
#include "backends/cuda/cuda_render.h"
#include "compiler/pipeline.h"
#include "ir/kir.h"
#include "test.h"
#include "testutil.h"

#define UNIT_KERNELS 100

struct distinct {
    uint64_t hash;
    const struct kir_kernel *k;   // the first kernel with this source (owned by a schedule in `plans`)
    char origin[160];             // "vsepp.ir: train (f32), k7_sub_exp"
};

static struct distinct *kernels;
static int n_kernels, cap_kernels, n_seen;
static struct kir_plan_kernels *plans;   // kept alive until the end: `kernels` points into them
static int n_plans, n_schedules;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void add_kernel(const struct kir_kernel *k, const char *where) {
    char why[512];
    char *src = itr_cuda_render_kernel(k, "itr_k", why, sizeof why);
    n_seen++;
    if (!src) {
        FAIL_AT("%s: kernel %s does not render: %s", where, k->name, why);
        return;
    }
    // The key is the code without its comments (which name the graph's
    // values): the same code under other names is one kernel to compile.
    size_t w = 0;
    for (size_t i = 0; src[i];) {
        if (src[i] == '/' && src[i + 1] == '/') {
            while (src[i] && src[i] != '\n') i++;
        } else {
            src[w++] = src[i++];
        }
    }
    uint64_t h = XXH3_64bits(src, w);
    free(src);
    for (int i = 0; i < n_kernels; i++)
        if (kernels[i].hash == h) return;
    if (n_kernels == cap_kernels) {
        cap_kernels = cap_kernels ? 2 * cap_kernels : 256;
        kernels = realloc(kernels, (size_t)cap_kernels * sizeof *kernels);
        if (!kernels) abort();
    }
    struct distinct *x = &kernels[n_kernels++];
    x->hash = h;
    x->k = k;
    snprintf(x->origin, sizeof x->origin, "%s, %s", where, k->name);
}

// The schedule rendered as the backend renders it (one unit, the kernels'
// own names), then its kernels and those of its scan bodies collected.
static void add_schedule(const struct kir_schedule *s, const char *where) {
    n_schedules++;
    if (s->n_kernels) {
        const char **names = calloc((size_t)s->n_kernels, sizeof *names);
        int *first = calloc((size_t)s->n_kernels, sizeof *first);
        for (int i = 0; i < s->n_kernels; i++) names[i] = s->kernels[i]->name;
        char why[512];
        char *unit = itr_cuda_render_unit((const struct kir_kernel *const *)s->kernels, names, s->n_kernels, first, why,
                                          sizeof why);
        CHECK_MSG(unit != NULL, "%s: the schedule does not render as one unit: %s", where, why);
        for (int i = 1; unit && i < s->n_kernels; i++) CHECK(first[i] > first[i - 1]);
        free(unit);
        free(names);
        free(first);
    }
    for (int i = 0; i < s->n_kernels; i++) add_kernel(s->kernels[i], where);
    for (int i = 0; i < s->n_steps; i++)
        if (s->steps[i].body) {
            char w[160];
            snprintf(w, sizeof w, "%s, scan body of step %d", where, i);
            add_schedule(s->steps[i].body, w);
        }
}

static void add_model(const char *path) {
    const char *file = strrchr(path, '/') + 1;
    struct itr_program *p = tu_compile_small(path, NULL);
    if (!p) {
        FAIL_AT("cannot compile %s", path);
        return;
    }
    plans = realloc(plans, (size_t)(n_plans + 1) * sizeof *plans);
    if (!plans) abort();
    struct kir_plan_kernels *pk = &plans[n_plans++];
    memset(pk, 0, sizeof *pk);
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_compile_kernels(p, pk, &d)) {
        itr_diags_print(&d, stderr);
        FAIL_AT("%s: lowering to kernels fails", file);
    }
    itr_diags_free(&d);
    int entries = 0;
    for (int gi = 0; gi < p->n_graphs; gi++) {
        if (p->graphs[gi]->kind != ITR_GRAPH_ENTRY) continue;
        entries++;
        for (int f64 = 0; f64 < 2; f64++) {
            char where[160];
            snprintf(where, sizeof where, "%s: %s (%s)", file, p->graphs[gi]->name, f64 ? "f64" : "f32");
            const struct kir_schedule *s = kir_plan_kernels_find(pk, gi, f64);
            CHECK_MSG(s != NULL, "%s: no schedule", where);
            if (s) add_schedule(s, where);
        }
    }
    CHECK_MSG(entries > 0, "%s has no entries", file);
    // The schedules' kernels keep pointers into the program's dims only as
    // numbers, so the program can go; the schedules stay until the end.
    itr_program_free(p);
}

// One NVRTC compilation of a unit for an arch, run on a worker thread; the
// checks are made on the main thread (the CHECK macros are not thread-safe).
struct job {
    const char *src, *arch;
    int unit, n;
    const char *const *syms, *const *names;
    const int *first;
    bool ok;
    char *msg;                    // the diagnostics when !ok
    struct itr_nvrtc_output out;
    double seconds;
};

static struct job *jobs;
static int n_jobs, next_job;
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&job_mu);
        int j = next_job < n_jobs ? next_job++ : -1;
        pthread_mutex_unlock(&job_mu);
        if (j < 0) return NULL;
        struct job *x = &jobs[j];
        double t0 = now();
        struct itr_nvrtc_kernels map = { x->names, x->first, x->n };
        struct itr_diags d;
        itr_diags_init(&d);
        char unit[64];
        snprintf(unit, sizeof unit, "unit %d of the models' kernels", x->unit);
        x->ok = itr_nvrtc_compile(x->src, unit, x->arch, &map, &x->out, &d);
        if (!x->ok) {
            x->msg = itr_diags_summary(&d);
        }
        itr_diags_free(&d);
        x->seconds = now() - t0;
    }
}

// Compile threads: the machine's cores (CI has 2), at most 8.
static int compile_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

static void compile_distinct(void) {
    static const char *const archs[] = ITR_CUDA_ARCHS;
    const int n_archs = (int)(sizeof archs / sizeof *archs);
    int n_units = (n_kernels + UNIT_KERNELS - 1) / UNIT_KERNELS;
    char **srcs = calloc((size_t)n_units + 1, sizeof *srcs);
    char (*sym)[24] = calloc((size_t)n_kernels + 1, sizeof *sym);
    const char **syms = calloc((size_t)n_kernels + 1, sizeof *syms), **names = calloc((size_t)n_kernels + 1, sizeof *names);
    const struct kir_kernel **ks = calloc((size_t)n_kernels + 1, sizeof *ks);
    int *first = calloc((size_t)n_kernels + 1, sizeof *first);
    jobs = calloc((size_t)(n_units * n_archs) + 1, sizeof *jobs);
    n_jobs = next_job = 0;
    for (int i = 0; i < n_kernels; i++) {
        ks[i] = kernels[i].k;
        snprintf(sym[i], sizeof sym[i], "k_%016llx", (unsigned long long)kernels[i].hash);
        syms[i] = sym[i];
        names[i] = kernels[i].origin;
    }
    for (int u = 0; u < n_units; u++) {
        int u0 = u * UNIT_KERNELS, n = n_kernels - u0 < UNIT_KERNELS ? n_kernels - u0 : UNIT_KERNELS;
        char why[512];
        srcs[u] = itr_cuda_render_unit(ks + u0, syms + u0, n, first + u0, why, sizeof why);
        CHECK_MSG(srcs[u] != NULL, "unit %d does not render: %s", u, why);
        const char *dump = getenv("ITRC_TEST_DUMP_UNIT");
        if (srcs[u] && dump && u == 0) {
            FILE *f = fopen(dump, "w");
            if (f) { fputs(srcs[u], f); fclose(f); }
        }
        for (int a = 0; srcs[u] && a < n_archs; a++)
            jobs[n_jobs++] = (struct job){ .src = srcs[u], .arch = archs[a], .unit = u, .n = n, .syms = syms + u0,
                                           .names = names + u0, .first = first + u0 };
    }
    int nt = compile_threads();
    pthread_t tid[8];
    for (int t = 0; t < nt; t++) pthread_create(&tid[t], NULL, worker, NULL);
    for (int t = 0; t < nt; t++) pthread_join(tid[t], NULL);
    size_t total_cubin = 0;
    for (int j = 0; j < n_jobs; j++) {
        struct job *x = &jobs[j];
        if (getenv("ITRC_TEST_VERBOSE")) printf("  unit %d (%d kernels), %s: %.2f s\n", x->unit, x->n, x->arch, x->seconds);
        CHECK_MSG(x->ok, "unit %d does not compile for %s:\n%s", x->unit, x->arch, x->msg ? x->msg : "");
        if (x->ok) {
            CHECK_MSG(itr_cubin_is_elf(x->out.cubin, x->out.cubin_size), "unit %d: the %s cubin is not an ELF image",
                      x->unit, x->arch);
            CHECK_MSG(x->out.ptx && strstr(x->out.ptx, ".visible .entry"), "unit %d: no kernel entry in the PTX", x->unit);
            CHECK_MSG(x->out.log == NULL, "unit %d: NVRTC warns for %s:\n%s", x->unit, x->arch, x->out.log);
            for (int i = 0; i < x->n; i++)
                CHECK_MSG(tu_has_cstring(x->out.cubin, x->out.cubin_size, x->syms[i]), "unit %d: the %s cubin lacks kernel %s (%s)",
                          x->unit, x->arch, x->syms[i], x->names[i]);
            total_cubin += x->out.cubin_size;
        }
        itr_nvrtc_output_free(&x->out);
        free(x->msg);
    }
    printf("  %d distinct kernels in %d units for %d archs on %d threads, %.1f MiB of cubins\n", n_kernels, n_units,
           n_archs, nt, (double)total_cubin / (1 << 20));
    for (int u = 0; u < n_units; u++) free(srcs[u]);
    free(srcs);
    free(sym);
    free(syms);
    free(names);
    free(ks);
    free(first);
    free(jobs);
}

TEST(every_model_kernel_compiles) {
    double t0 = now();
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    int models = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
        char path[4096];
#ifdef ITR_CUDA_COMPILE_ONE_MODEL
        // The sanitizer build checks the renderer and the NVRTC driver code on
        // one model; NVRTC's own time is not instrumented, and the release
        // build compiles every model.
        if (strcmp(e->d_name, "scan_t2i.ir") != 0) continue;
#endif
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        add_model(path);
        models++;
    }
    if (dir) closedir(dir);
    add_model(ITR_SOURCE_DIR "/models/demo/batch.ir");
    double t1 = now();
    printf("  %d models, %d schedules, %d kernels (%d distinct) rendered in %.1f s\n", models + 1, n_schedules, n_seen,
           n_kernels, t1 - t0);
#ifdef ITR_CUDA_COMPILE_ONE_MODEL
    CHECK(models == 1);
    CHECK(n_kernels > 50);
#else
    CHECK(models >= 8);
    CHECK(n_kernels > 100);
#endif
    compile_distinct();
    printf("  NVRTC: %.1f s\n", now() - t1);
    for (int i = 0; i < n_plans; i++) kir_plan_kernels_free(&plans[i]);
    free(plans);
    free(kernels);
}

// A compile error names the unit, the kernel whose lines the log points at
// and the architecture, and carries NVRTC's log.
TEST(compile_error_names_the_kernel) {
    struct kir_kernel *k = kir_kernel_new("k0_exp");
    int32_t b = kir_add_buffer(k, "y", ITR_F32, true);
    kir_append(k, k->body, kir_store(k, b, kir_iconst(k, 0), kir_const_float(k, KIR_F32, 1.5)));
    const struct kir_kernel *ks[2] = { k, k };
    const char *syms[2] = { "first", "second" };
    const char *names[2] = { "k0_exp", "k1_broken" };
    int first[2];
    char why[256];
    char *src = itr_cuda_render_unit(ks, syms, 2, first, why, sizeof why);
    CHECK(src != NULL);
    if (src) {
        // Break the second kernel: its store's value names nothing.
        char *p = strstr(strstr(src, "second"), "((float)1.5)");
        CHECK(p != NULL);
        if (p) memcpy(p, "(undefined_)", 12);
        struct itr_nvrtc_kernels map = { names, first, 2 };
        struct itr_nvrtc_output out;
        struct itr_diags d;
        itr_diags_init(&d);
        CHECK(!itr_nvrtc_compile(src, "the test unit", "sm_80", &map, &out, &d));
        CHECK(out.cubin == NULL && out.ptx == NULL);
        char *msg = itr_diags_summary(&d);
        CHECK_STR_CONTAINS(msg, "NVRTC cannot compile the test unit, kernel 'k1_broken' for sm_80");
        CHECK_STR_CONTAINS(msg, "identifier \"undefined_\" is undefined");
        CHECK(strstr(msg, "k0_exp") == NULL);
        free(msg);
        itr_diags_free(&d);
        // An architecture that is none.
        itr_diags_init(&d);
        CHECK(!itr_nvrtc_compile(src, "the test unit", "gfx90a", NULL, &out, &d));
        msg = itr_diags_summary(&d);
        CHECK_STR_CONTAINS(msg, "'gfx90a' is not a GPU architecture");
        free(msg);
        itr_diags_free(&d);
    }
    free(src);
    kir_kernel_free(k);
}

int main(void) {
    if (!itr_nvrtc_available()) {
        printf("skipped: this build has no NVRTC (the CUDA toolkit was not found when it was configured)\n");
        printf("0 passed, 0 failed\n");
        return 77;
    }
    int maj, min;
    itr_nvrtc_version(&maj, &min);
    printf("NVRTC %d.%d\n", maj, min);
    RUN(compile_error_names_the_kernel);
    RUN(every_model_kernel_compiles);
    return test_summary();
}
