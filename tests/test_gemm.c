// itr_gemm_f32 / itr_gemm_f64 (backends/cpu/gemm.h) against a naive GEMM
// accumulated in double, on sizes that hit every edge of the blocking: one
// element, sizes that are not multiples of the register tile, k across several
// k-blocks, transposed operands, leading dimensions wider than the rows, beta
// 0 (C's old contents, even NaN, must not leak in) and 1, and k = 0.
//
// Tolerance: f32 within 1e-5 of max(1, max|ref|), f64 within 1e-12 (the
// inputs are in [-1, 1], so a k-term sum's rounding error stays well inside).
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/gemm.h"
#include "backends/cpu/pgemm.h"
#include "backends/cpu/qform.h"
#include "tests/test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static double rnd(void) {   // xorshift64*: uniform in [-1, 1)
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

// Element (i, p) of op(A) for a row-major A stored with leading dimension lda.
static double at(const double *x, bool trans, int64_t ld, int64_t r, int64_t c) {
    return trans ? x[c * ld + r] : x[r * ld + c];
}

struct gcase { bool ta, tb; int64_t m, n, k, pad; double beta; int threads; };

// Runs one case in both precisions; returns the worst error over tolerance
// (<= 1 passes) so failures say by how much.
static void run_case(struct gcase g) {
    // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k).
    int64_t ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k;
    int64_t br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
    int64_t lda = ac + g.pad, ldb = bc + g.pad, ldc = g.n + g.pad;
    size_t na = (size_t)(ar * lda) + 1, nb = (size_t)(br * ldb) + 1, nc = (size_t)(g.m * ldc) + 1;
    double *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c0 = malloc(nc * sizeof *c0);
    float *af = malloc(na * sizeof *af), *bf = malloc(nb * sizeof *bf), *cf = malloc(nc * sizeof *cf);
    double *cd = malloc(nc * sizeof *cd), *ref = malloc(nc * sizeof *ref);
    // f32 and f64 see the same values (rounded to float first) so one
    // reference serves both.
    for (size_t i = 0; i < na; i++) { af[i] = (float)rnd(); a[i] = af[i]; }
    for (size_t i = 0; i < nb; i++) { bf[i] = (float)rnd(); b[i] = bf[i]; }
    for (size_t i = 0; i < nc; i++) { float v = (float)rnd(); c0[i] = v; cf[i] = v; cd[i] = v; }
    if (g.beta == 0.0) {   // beta 0 must overwrite C, not multiply it: NaN must not survive
        for (int64_t i = 0; i < g.m; i++) { cf[i * ldc] = NAN; cd[i * ldc] = NAN; }
    }
    double maxref = 1.0;
    for (int64_t i = 0; i < g.m; i++)
        for (int64_t j = 0; j < g.n; j++) {
            double s = 0;
            for (int64_t p = 0; p < g.k; p++) s += at(a, g.ta, lda, i, p) * at(b, g.tb, ldb, p, j);
            if (g.beta != 0.0) s += g.beta * c0[i * ldc + j];
            ref[i * ldc + j] = s;
            if (fabs(s) > maxref) maxref = fabs(s);
        }
    itr_gemm_f32(g.ta, g.tb, g.m, g.n, g.k, af, lda, bf, ldb, (float)g.beta, cf, ldc, g.threads);
    itr_gemm_f64(g.ta, g.tb, g.m, g.n, g.k, a, lda, b, ldb, g.beta, cd, ldc, g.threads);
    double worst32 = 0, worst64 = 0;
    bool pad_ok = true;
    for (int64_t i = 0; i < g.m; i++) {
        for (int64_t j = 0; j < g.n; j++) {
            double e32 = fabs(cf[i * ldc + j] - ref[i * ldc + j]) / (1e-5 * maxref);
            double e64 = fabs(cd[i * ldc + j] - ref[i * ldc + j]) / (1e-12 * maxref);
            if (!(e32 <= worst32)) worst32 = isnan(e32) ? INFINITY : e32;
            if (!(e64 <= worst64)) worst64 = isnan(e64) ? INFINITY : e64;
        }
        // Padding columns of C lie outside the product: they must be untouched.
        for (int64_t j = g.n; j < ldc && i + 1 < g.m; j++)
            if (cf[i * ldc + j] != (float)c0[i * ldc + j] || cd[i * ldc + j] != c0[i * ldc + j]) pad_ok = false;
    }
    CHECK_MSG(worst32 <= 1.0, "f32 %s%s m=%lld n=%lld k=%lld pad=%lld beta=%g threads=%d: error %.3g x tolerance",
              g.ta ? "T" : "N", g.tb ? "T" : "N", (long long)g.m, (long long)g.n, (long long)g.k,
              (long long)g.pad, g.beta, g.threads, worst32);
    CHECK_MSG(worst64 <= 1.0, "f64 %s%s m=%lld n=%lld k=%lld pad=%lld beta=%g threads=%d: error %.3g x tolerance",
              g.ta ? "T" : "N", g.tb ? "T" : "N", (long long)g.m, (long long)g.n, (long long)g.k,
              (long long)g.pad, g.beta, g.threads, worst64);
    CHECK_MSG(pad_ok, "m=%lld n=%lld k=%lld: wrote outside the m x n block of C", (long long)g.m,
              (long long)g.n, (long long)g.k);
    free(a); free(b); free(c0); free(af); free(bf); free(cf); free(cd); free(ref);
}

static const int64_t sizes[][3] = {
    {1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {6, 16, 1}, {13, 50, 600}, {1, 300, 70}, {300, 1, 70},
    {36, 12, 1024}, {100, 130, 700},
};

TEST(all_sizes_transposes_and_betas) {
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 4; t++)
            for (int bi = 0; bi < 2; bi++)
                run_case((struct gcase){t & 1, (t >> 1) & 1, sizes[s][0], sizes[s][1], sizes[s][2],
                                        0, bi ? 1.0 : 0.0, 1});
}

TEST(leading_dimensions_wider_than_rows) {
    for (int t = 0; t < 4; t++) {
        run_case((struct gcase){t & 1, (t >> 1) & 1, 7, 13, 5, 3, 1.0, 1});
        run_case((struct gcase){t & 1, (t >> 1) & 1, 65, 33, 129, 17, 0.0, 2});
    }
}

TEST(k_zero_scales_c_by_beta) {
    run_case((struct gcase){false, false, 5, 9, 0, 0, 0.0, 1});
    run_case((struct gcase){false, false, 5, 9, 0, 2, 1.0, 1});
    // A beta other than 0 and 1: C = beta * C.
    run_case((struct gcase){true, false, 5, 9, 0, 0, 0.5, 1});
    run_case((struct gcase){false, true, 33, 7, 17, 0, -2.0, 1});
}

// Big enough that two threads really split the work. The same call with the
// same thread count must give the same bits (gemm.h); 1 and 2 threads may
// differ in the last bits (OpenBLAS's kernels do: gemm.h says why), so that
// pair is only held to the tolerance, which run_case already checks.
TEST(same_thread_count_same_bits) {
    int64_t m = 150, n = 260, k = 300;
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *c1 = malloc(sizeof(float) * m * n), *c2 = malloc(sizeof(float) * m * n);
    double *ad = malloc(sizeof(double) * m * k), *bd = malloc(sizeof(double) * k * n);
    double *d1 = malloc(sizeof(double) * m * n), *d2 = malloc(sizeof(double) * m * n);
    for (int64_t i = 0; i < m * k; i++) { a[i] = (float)rnd(); ad[i] = rnd(); }
    for (int64_t i = 0; i < k * n; i++) { b[i] = (float)rnd(); bd[i] = rnd(); }
    for (int threads = 1; threads <= 2; threads++) {
        itr_gemm_f32(false, true, m, n, k, a, k, b, k, 0.0f, c1, n, threads);
        itr_gemm_f64(false, true, m, n, k, ad, k, bd, k, 0.0, d1, n, threads);
        for (int rep = 0; rep < 3; rep++) {
            // Another thread count in between, so a count left over from
            // the previous call cannot make the repeat look deterministic.
            itr_gemm_f32(false, true, m, n, k, a, k, b, k, 0.0f, c2, n, 3 - threads);
            itr_gemm_f32(false, true, m, n, k, a, k, b, k, 0.0f, c2, n, threads);
            itr_gemm_f64(false, true, m, n, k, ad, k, bd, k, 0.0, d2, n, threads);
            CHECK_MSG(memcmp(c1, c2, sizeof(float) * m * n) == 0, "f32, %d threads, repeat %d", threads, rep);
            CHECK_MSG(memcmp(d1, d2, sizeof(double) * m * n) == 0, "f64, %d threads, repeat %d", threads, rep);
        }
    }
    free(a); free(b); free(c1); free(c2); free(ad); free(bd); free(d1); free(d2);
}

// Prepacked products (pgemm.h): each element must be exactly the fma chain
// over k = 0 .. k-1 from 0, whatever its place in C, the rows of the call
// and the panel range; so the check is bitwise against fmaf in that order.
// Sizes cross every edge: rows past a multiple of the 8-row tile, columns
// past a 32-column panel and its 16-column half, k across 512-step blocks,
// rows across the 256-row blocks, wider leading dimensions.
static void pgemm_case(bool tb, int64_t m, int64_t n, int64_t k, int64_t pad) {
    int64_t lda = k + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int64_t brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(m * lda)), *b = malloc(sizeof(float) * (size_t)(brows * ldb));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc)), *c2 = malloc(sizeof(float) * (size_t)(m * ldc));
    float *packed = itr_pgemm_packed_new(n, k);
    for (int64_t i = 0; i < m * lda; i++) a[i] = (float)rnd();
    for (int64_t i = 0; i < brows * ldb; i++) b[i] = (float)rnd();
    for (int64_t i = 0; i < m * ldc; i++) c[i] = c2[i] = NAN;   // must be overwritten, padding left alone
    int64_t panels = itr_pgemm_panels(n);
    // Packed in two ranges, as two threads would.
    itr_pgemm_pack(tb, n, k, b, ldb, packed, panels / 2, panels);
    itr_pgemm_pack(tb, n, k, b, ldb, packed, 0, panels / 2);
    itr_pgemm(m, n, k, a, lda, packed, c, ldc, 0, panels);
    // The same product as panel ranges and row ranges of other sizes.
    int64_t cut = m / 3;
    for (int64_t p = panels; p-- > 0;) {
        itr_pgemm(cut, n, k, a, lda, packed, c2, ldc, p, p + 1);
        itr_pgemm(m - cut, n, k, a + cut * lda, lda, packed, c2 + cut * ldc, ldc, p, p + 1);
    }
    int64_t wrong = 0, split_diff = 0;
    bool pad_ok = true;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) s = fmaf(a[i * lda + p], tb ? b[j * ldb + p] : b[p * ldb + j], s);
            if (memcmp(&s, &c[i * ldc + j], sizeof s) != 0) wrong++;
            if (memcmp(&c[i * ldc + j], &c2[i * ldc + j], sizeof s) != 0) split_diff++;
        }
        for (int64_t j = n; j < ldc; j++) pad_ok = pad_ok && isnan(c[i * ldc + j]) && isnan(c2[i * ldc + j]);
    }
    CHECK_MSG(wrong == 0, "pgemm %s m=%lld n=%lld k=%lld pad=%lld: %lld elements differ from the fma chain",
              tb ? "T" : "N", (long long)m, (long long)n, (long long)k, (long long)pad, (long long)wrong);
    CHECK_MSG(split_diff == 0, "pgemm m=%lld n=%lld k=%lld: %lld elements change with the row and panel split",
              (long long)m, (long long)n, (long long)k, (long long)split_diff);
    CHECK_MSG(pad_ok, "pgemm m=%lld n=%lld k=%lld: wrote outside the m x n block of C", (long long)m, (long long)n,
              (long long)k);
    free(a); free(b); free(c); free(c2); free(packed);
}

TEST(prepacked_products_are_the_fma_chain) {
    if (!itr_pgemm_available()) {
        printf("  (this CPU has no AVX-512: prepacked products are not used here, nothing to check)\n");
        return;
    }
    static const int64_t ps[][3] = {
        {1, 1, 1}, {8, 32, 16}, {9, 33, 7}, {7, 17, 513}, {17, 100, 1100}, {300, 48, 40}, {3, 70, 2048},
        {10, 40, 2049}, {5, 20, 4500},
    };
    for (size_t s = 0; s < sizeof ps / sizeof *ps; s++)
        for (int tb = 0; tb < 2; tb++) {
            pgemm_case(tb, ps[s][0], ps[s][1], ps[s][2], 0);
            pgemm_case(tb, ps[s][0], ps[s][1], ps[s][2], 5);
        }
}

// Quadratic forms (qform.h): out[l] = Σ_j X[l,j] (X·G)[l,j] against the
// same sum in double, for both layouts of X and G, row counts across the
// vector width (16 floats, 8 doubles) and its multiples, k past the
// four-column groups, leading dimensions wider than the rows, several items
// sharing G at scattered offsets. Each item's results must also be the same
// bits when it is computed alone (callers split items between threads).
// Tolerance as above, relative to Σ_j |X[l,j]| Σ_r |X[l,r] G[r,j]|.
static void qform_case(bool tx, bool tg, int64_t m, int64_t k, int64_t pad) {
    int64_t items = 3, ldx = (tx ? m : k) + pad, xrows = tx ? k : m, ldg = k + pad, block = xrows * ldx + 7;
    double *x = malloc(sizeof(double) * (size_t)(items * block)), *g = malloc(sizeof(double) * (size_t)(k * ldg));
    float *xf = malloc(sizeof(float) * (size_t)(items * block)), *gf = malloc(sizeof(float) * (size_t)(k * ldg));
    double *od = malloc(sizeof(double) * (size_t)(items * m));
    float *of = malloc(sizeof(float) * (size_t)(items * m)), *one = malloc(sizeof(float) * (size_t)m);
    int64_t off[3] = { 2 * block, 0, block };   // not in item order
    for (int64_t i = 0; i < items * block; i++) xf[i] = (float)(x[i] = rnd());
    for (int64_t i = 0; i < k * ldg; i++) gf[i] = (float)(g[i] = rnd());
    itr_qform_f64(tx, tg, m, k, items, x, off, ldx, g, ldg, od);
    itr_qform_f32(tx, tg, m, k, items, xf, off, ldx, gf, ldg, of);
    double worst32 = 0, worst64 = 0;
    bool alone_same = true;
    for (int64_t t = 0; t < items; t++) {
        itr_qform_f32(tx, tg, m, k, 1, xf, &off[t], ldx, gf, ldg, one);
        alone_same = alone_same && memcmp(one, of + t * m, sizeof(float) * (size_t)m) == 0;
        const double *xi = x + off[t];
        for (int64_t l = 0; l < m; l++) {
            double want = 0, scale = 0;
            for (int64_t j = 0; j < k; j++) {
                double y = 0, ya = 0;
                for (int64_t r = 0; r < k; r++) {
                    double xr = tx ? xi[r * ldx + l] : xi[l * ldx + r], grj = tg ? g[j * ldg + r] : g[r * ldg + j];
                    y += xr * grj;
                    ya += fabs(xr * grj);
                }
                double xj = tx ? xi[j * ldx + l] : xi[l * ldx + j];
                want += xj * y;
                scale += fabs(xj) * ya;
            }
            if (scale < 1) scale = 1;
            double e32 = fabs(of[t * m + l] - want) / scale / 1e-5, e64 = fabs(od[t * m + l] - want) / scale / 1e-12;
            if (!(e32 <= worst32)) worst32 = e32;   // NaN counts as worst
            if (!(e64 <= worst64)) worst64 = e64;
        }
    }
    CHECK_MSG(worst32 <= 1 && worst64 <= 1,
              "qform %s%s m=%lld k=%lld pad=%lld: error %.3g (f32), %.3g (f64) times the tolerance", tx ? "T" : "N",
              tg ? "T" : "N", (long long)m, (long long)k, (long long)pad, worst32, worst64);
    CHECK_MSG(alone_same, "qform m=%lld k=%lld: an item computed alone differs from the same item among others",
              (long long)m, (long long)k);
    free(x); free(g); free(xf); free(gf); free(od); free(of); free(one);
}

TEST(quadratic_forms_match_the_product_and_sum) {
    static const int64_t qs[][2] = { {1, 1}, {1, 36}, {12, 36}, {16, 3}, {17, 5}, {33, 36}, {8, 64}, {64, 64},
                                     {9, 7} };
    for (size_t q = 0; q < sizeof qs / sizeof *qs; q++)
        for (int tx = 0; tx < 2; tx++)
            for (int tg = 0; tg < 2; tg++) {
                qform_case(tx, tg, qs[q][0], qs[q][1], 0);
                qform_case(tx, tg, qs[q][0], qs[q][1], 3);
            }
}

// Gram matrices (qform.h): C = X·Xᵀ against the sum in double, exactly
// symmetric, for n across the 4-row blocks and k across the 16-float
// vectors, with wider leading dimensions; entries outside n x n untouched.
TEST(gram_matrices_match_the_product) {
    static const int64_t gs[][2] = { {1, 1}, {3, 15}, {4, 16}, {5, 17}, {36, 1024}, {37, 1030}, {8, 33} };
    for (size_t q = 0; q < sizeof gs / sizeof *gs; q++)
        for (int64_t pad = 0; pad <= 3; pad += 3) {
            int64_t n = gs[q][0], k = gs[q][1], ldx = k + pad, ldc = n + pad;
            float *x = malloc(sizeof(float) * (size_t)(n * ldx)), *c = malloc(sizeof(float) * (size_t)(n * ldc));
            for (int64_t i = 0; i < n * ldx; i++) x[i] = (float)rnd();
            for (int64_t i = 0; i < n * ldc; i++) c[i] = NAN;
            itr_gram_f32(n, k, x, ldx, c, ldc);
            double worst = 0;
            bool symmetric = true, pad_ok = true;
            for (int64_t r = 0; r < n; r++) {
                for (int64_t t = 0; t < n; t++) {
                    double want = 0, scale = 0;
                    for (int64_t d = 0; d < k; d++) {
                        want += (double)x[r * ldx + d] * x[t * ldx + d];
                        scale += fabs((double)x[r * ldx + d] * x[t * ldx + d]);
                    }
                    double e = fabs(c[r * ldc + t] - want) / (scale > 1 ? scale : 1) / 1e-5;
                    if (!(e <= worst)) worst = e;
                    symmetric = symmetric && memcmp(&c[r * ldc + t], &c[t * ldc + r], sizeof(float)) == 0;
                }
                for (int64_t t = n; t < ldc; t++) pad_ok = pad_ok && isnan(c[r * ldc + t]);
            }
            CHECK_MSG(worst <= 1, "gram n=%lld k=%lld pad=%lld: error %.3g times the tolerance", (long long)n,
                      (long long)k, (long long)pad, worst);
            CHECK_MSG(symmetric, "gram n=%lld k=%lld: not exactly symmetric", (long long)n, (long long)k);
            CHECK_MSG(pad_ok, "gram n=%lld k=%lld: wrote past the n x n block", (long long)n, (long long)k);
            free(x);
            free(c);
        }
}

TEST(names_its_implementation) {
    const char *name = itr_gemm_impl_name();
    CHECK(name != NULL && name[0] != '\0');
}

int main(void) {
    RUN(all_sizes_transposes_and_betas);
    RUN(leading_dimensions_wider_than_rows);
    RUN(k_zero_scales_c_by_beta);
    RUN(same_thread_count_same_bits);
    RUN(prepacked_products_are_the_fma_chain);
    RUN(quadratic_forms_match_the_product_and_sum);
    RUN(gram_matrices_match_the_product);
    RUN(names_its_implementation);
    return test_summary();
}
