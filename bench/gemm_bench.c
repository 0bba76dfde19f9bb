// GFLOP/s of itr_gemm_f32 (backends/cpu/gemm.h) on the sizes itrc's models
// multiply, at 1 and 2 threads, with cblas_sgemm beside it when OpenBLAS's
// header is there, and the prepacked product (backends/cpu/pgemm.h: B
// packed once before the timing, as a scan or an inference session does;
// its panels split over pthreads as the executor splits them) where the CPU
// runs it (docs/performance.md, "GEMM", has the numbers it gave).
//
// Timing: each (size, threads, implementation) runs one warm-up call, then
// --reps timed repeats (default 10) of enough calls to do ~0.3 GFLOP; the
// two implementations alternate repeat by repeat so a busy machine slows
// both alike, and the figure is the best repeat (the machines are shared;
// the best repeat is the one least disturbed). "cpu" is the same work over
// the process's CPU time instead of the wall clock, per thread used: on a
// loaded machine it shows what the cores did while they ran this.
//
// Usage: gemm_bench [--reps N]
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/gemm.h"
#include "backends/cpu/pgemm.h"

#if __has_include(<cblas.h>)
#include <cblas.h>
#define HAVE_CBLAS 1
#else
#define HAVE_CBLAS 0
#endif

struct size { int64_t m, n, k; int batch; bool trans_b; const char *what; };
static const struct size sizes[] = {
    {128, 1024, 2048, 1, false, "projection, batch 128"},
    {4608, 1024, 2048, 1, false, "regions, 128 images x 36"},
    {128, 3072, 1024, 1, false, "GRU gates"},
    {1536, 1024, 1024, 1, false, "1536 x 1024 x 1024"},
    {1024, 1024, 1024, 1, false, "square 1024"},
    {128, 1024, 2048, 1, true, "projection, B transposed"},
    {36, 12, 1024, 256, true, "SCAN pair 36x12, x256 calls"},
};

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { ITR, CBLAS, PGEMM, NIMPL };

struct pgemm_part { const struct size *s; const float *a, *packed; float *c; int64_t p0, p1; };

static void *pgemm_part_run(void *arg) {
    const struct pgemm_part *q = arg;
    itr_pgemm(q->s->m, q->s->n, q->s->k, q->a, q->s->k, q->packed, q->c, q->s->n, q->p0, q->p1);
    return NULL;
}

// The product on panels split over `threads` (the second on a new pthread).
static void pgemm_call(const struct size *s, const float *a, const float *packed, float *c, int threads) {
    int64_t panels = itr_pgemm_panels(s->n);
    struct pgemm_part q[2] = { { s, a, packed, c, 0, threads > 1 ? panels / 2 : panels },
                               { s, a, packed, c, panels / 2, panels } };
    pthread_t t;
    bool two = threads > 1 && pthread_create(&t, NULL, pgemm_part_run, &q[1]) == 0;
    if (!two) q[0].p1 = panels;
    pgemm_part_run(&q[0]);
    if (two) pthread_join(t, NULL);
}

// packed: per batch index, B packed for the prepacked product (NULL: none).
static void call(int impl, const struct size *s, const float *a, const float *b, float *const *packed, float *c,
                 int threads) {
    int64_t ldb = s->trans_b ? s->k : s->n;
    for (int i = 0; i < s->batch; i++) {
        const float *ai = a + (size_t)i * s->m * s->k, *bi = b + (size_t)i * s->k * s->n;
        float *ci = c + (size_t)i * s->m * s->n;
        if (impl == PGEMM) {
            pgemm_call(s, ai, packed[i], ci, threads);
        } else if (impl == ITR) {
            itr_gemm_f32(false, s->trans_b, s->m, s->n, s->k, ai, s->k, bi, ldb, 0.0f, ci, s->n, threads);
        } else {
#if HAVE_CBLAS
            openblas_set_num_threads(threads);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, (int)s->m,
                        (int)s->n, (int)s->k, 1.0f, ai, (int)s->k, bi, (int)ldb, 0.0f, ci, (int)s->n);
#endif
        }
    }
}

int main(int argc, char **argv) {
    int reps = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: gemm_bench [--reps N]\n"); return 2; }
    }
    if (reps < 1) reps = 1;
    printf("itr_gemm_f32 implementation: %s\n", itr_gemm_impl_name());
#if HAVE_CBLAS
    printf("OpenBLAS: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
#endif
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", ct ? ct : "(unset)", l2 ? l2 : "(unset)");
    bool pgemm = itr_pgemm_available();
    printf("%-30s %-16s %3s  %-22s %-29s %s\n", "size", "m x n x k", "thr", "itr_gemm_f32 GFLOP/s",
           HAVE_CBLAS ? "cblas_sgemm GFLOP/s" : "", pgemm ? "prepacked (itr_pgemm) GFLOP/s" : "");
    if (!pgemm) printf("(no AVX-512 on this CPU: the prepacked product is not measured)\n");
    bool run_impl[NIMPL] = { true, HAVE_CBLAS, pgemm };
    for (int threads = 1; threads <= 2; threads++) {
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            const struct size *s = &sizes[si];
            size_t na = (size_t)(s->m * s->k * s->batch), nb = (size_t)(s->k * s->n * s->batch);
            size_t nc = (size_t)(s->m * s->n * s->batch);
            float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
            if (!a || !b || !c) { fprintf(stderr, "gemm_bench: out of memory\n"); return 1; }
            for (size_t i = 0; i < na; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
            for (size_t i = 0; i < nb; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
            float **packed = calloc((size_t)s->batch, sizeof *packed);
            for (int i = 0; pgemm && packed && i < s->batch; i++) {
                packed[i] = itr_pgemm_packed_new(s->n, s->k);
                if (!packed[i]) { fprintf(stderr, "gemm_bench: out of memory\n"); return 1; }
                itr_pgemm_pack(s->trans_b, s->n, s->k, b + (size_t)i * s->k * s->n, s->trans_b ? s->k : s->n,
                               packed[i], 0, itr_pgemm_panels(s->n));
            }
            if (!packed) { fprintf(stderr, "gemm_bench: out of memory\n"); return 1; }
            double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k * s->batch;
            int inner = flops < 3e8 ? (int)(3e8 / flops) : 1;
            double best[NIMPL], best_cpu[NIMPL];
            for (int im = 0; im < NIMPL; im++) best[im] = best_cpu[im] = 1e30;
            for (int r = -1; r < reps; r++) {   // r = -1: warm-up
                for (int im = 0; im < NIMPL; im++) {
                    if (!run_impl[im]) continue;
                    // OpenBLAS's threads spin for a while after a call with
                    // 2 threads and would take a core from the prepacked
                    // product's second thread: let them go to sleep first.
                    if (im == PGEMM && threads > 1 && HAVE_CBLAS) nanosleep(&(struct timespec){ 0, 200000000 }, NULL);
                    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                    for (int it = 0; it < inner; it++) call(im, s, a, b, packed, c, threads);
                    double t = (clock_s(CLOCK_MONOTONIC) - t0) / inner;
                    double tc = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / inner / threads;
                    if (r >= 0 && t < best[im]) best[im] = t;
                    if (r >= 0 && tc < best_cpu[im]) best_cpu[im] = tc;
                }
            }
            char dims[32];
            snprintf(dims, sizeof dims, "%lldx%lldx%lld", (long long)s->m, (long long)s->n, (long long)s->k);
            printf("%-30s %-16s %3d ", s->what, dims, threads);
            for (int im = 0; im < NIMPL; im++)
                if (run_impl[im])
                    printf(" %7.1f (cpu %6.1f)       ", flops / best[im] * 1e-9, flops / best_cpu[im] * 1e-9);
            printf("\n");
            fflush(stdout);
            for (int i = 0; i < s->batch; i++) free(packed[i]);
            free(packed);
            free(a); free(b); free(c);
        }
    }
    return 0;
}
