// Row-wise quadratic forms (qform.h). Rows of X go in vectors of LANES
// (vector extensions: one zmm on AVX-512, compiled for it and for generic
// x86-64 by target_clones). Per item X is laid out as k rows of the padded
// row count; G's columns are read in place when G is stored transposed
// (its rows are then its columns) and copied once per call otherwise, so
// the inner loop is one broadcast and one fma. Four columns of G at a time
// keep four independent fma chains in flight.
#include "backends/cpu/qform.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define QFORM_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define QFORM_CLONES
#endif

#define QFORM_DEF(T, SUF, LANES)                                                                                      \
    typedef T vec_##SUF __attribute__((vector_size(LANES * sizeof(T))));                                             \
    QFORM_CLONES void itr_qform_##SUF(bool trans_x, bool trans_g, int64_t m, int64_t k, int64_t items, const T *x,    \
                                      const int64_t *x_off, int64_t ldx, const T *g, int64_t ldg, T *out) {          \
        enum { NV = (ITR_QFORM_MAX_ROWS + LANES - 1) / LANES };                                                      \
        int64_t nv = (m + LANES - 1) / LANES;                                                                        \
        union { vec_##SUF v[NV]; T s[NV * LANES]; } xt[ITR_QFORM_MAX_K]; /* xt[r] lane l: X(l, r), 0 past m */       \
        T gcopy[trans_g ? 1 : ITR_QFORM_MAX_K * ITR_QFORM_MAX_K];                                                   \
        const T *gc = g; /* column j of G at gc + j * ldgc */                                                        \
        int64_t ldgc = ldg;                                                                                          \
        if (!trans_g) {                                                                                              \
            for (int64_t j = 0; j < k; j++)                                                                          \
                for (int64_t r = 0; r < k; r++) gcopy[j * k + r] = g[r * ldg + j];                                   \
            gc = gcopy;                                                                                              \
            ldgc = k;                                                                                                \
        }                                                                                                            \
        for (int64_t t = 0; t < items; t++) {                                                                        \
            const T *xi = x + x_off[t];                                                                              \
            for (int64_t r = 0; r < k; r++) {                                                                        \
                if (trans_x) memcpy(xt[r].s, xi + r * ldx, (size_t)m * sizeof(T));                                   \
                else                                                                                                 \
                    for (int64_t l = 0; l < m; l++) xt[r].s[l] = xi[l * ldx + r];                                    \
                for (int64_t l = m; l < nv * LANES; l++) xt[r].s[l] = 0;                                             \
            }                                                                                                        \
            T *o = out + t * m;                                                                                      \
            for (int64_t v = 0; v < nv; v++) {                                                                       \
                vec_##SUF acc = { 0 };                                                                               \
                int64_t j = 0;                                                                                       \
                for (; j + 4 <= k; j += 4) {                                                                         \
                    const T *c0 = gc + j * ldgc, *c1 = c0 + ldgc, *c2 = c1 + ldgc, *c3 = c2 + ldgc;                  \
                    vec_##SUF y0 = { 0 }, y1 = { 0 }, y2 = { 0 }, y3 = { 0 };                                        \
                    for (int64_t r = 0; r < k; r++) {                                                                \
                        vec_##SUF xr = xt[r].v[v];                                                                   \
                        y0 += c0[r] * xr;                                                                            \
                        y1 += c1[r] * xr;                                                                            \
                        y2 += c2[r] * xr;                                                                            \
                        y3 += c3[r] * xr;                                                                            \
                    }                                                                                                \
                    acc += xt[j].v[v] * y0 + xt[j + 1].v[v] * y1 + xt[j + 2].v[v] * y2 + xt[j + 3].v[v] * y3;        \
                }                                                                                                    \
                for (; j < k; j++) {                                                                                 \
                    const T *cj = gc + j * ldgc;                                                                     \
                    vec_##SUF y = { 0 };                                                                             \
                    for (int64_t r = 0; r < k; r++) y += cj[r] * xt[r].v[v];                                         \
                    acc += xt[j].v[v] * y;                                                                           \
                }                                                                                                    \
                for (int64_t l = 0; l < LANES && v * LANES + l < m; l++) o[v * LANES + l] = acc[l];                  \
            }                                                                                                        \
        }                                                                                                            \
    }

QFORM_DEF(float, f32, 16)
QFORM_DEF(double, f64, 8)

typedef float v16f __attribute__((vector_size(64)));

// (Macros, not functions: a 64-byte vector passed by value changes the ABI
// between the AVX-512 clone and the generic one.)
#define LOAD16(v, p) memcpy(&(v), (p), sizeof(v))

QFORM_CLONES void itr_gram_f32(int64_t n, int64_t k, const float *x, int64_t ldx, float *c, int64_t ldc) {
    int64_t kv = k / 16 * 16;
    for (int64_t r0 = 0; r0 < n; r0 += 4) {
        int64_t nr = n - r0 < 4 ? n - r0 : 4;
        for (int64_t s0 = r0; s0 < n; s0 += 4) {
            int64_t ns = n - s0 < 4 ? n - s0 : 4;
            // 16 named accumulators: an array indexed in a loop stays in memory.
            v16f c00 = { 0 }, c01 = { 0 }, c02 = { 0 }, c03 = { 0 }, c10 = { 0 }, c11 = { 0 }, c12 = { 0 },
                 c13 = { 0 }, c20 = { 0 }, c21 = { 0 }, c22 = { 0 }, c23 = { 0 }, c30 = { 0 }, c31 = { 0 },
                 c32 = { 0 }, c33 = { 0 };
            const float *xr[4], *xs[4];
            for (int i = 0; i < 4; i++) {
                xr[i] = x + (r0 + (i < nr ? i : 0)) * ldx;   // rows past n repeat row r0; not stored
                xs[i] = x + (s0 + (i < ns ? i : 0)) * ldx;
            }
            for (int64_t d = 0; d < kv; d += 16) {
                v16f a0, a1, a2, a3, b0, b1, b2, b3;
                LOAD16(a0, xr[0] + d);
                LOAD16(a1, xr[1] + d);
                LOAD16(a2, xr[2] + d);
                LOAD16(a3, xr[3] + d);
                LOAD16(b0, xs[0] + d);
                LOAD16(b1, xs[1] + d);
                LOAD16(b2, xs[2] + d);
                LOAD16(b3, xs[3] + d);
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            v16f acc[4][4] = { { c00, c01, c02, c03 }, { c10, c11, c12, c13 }, { c20, c21, c22, c23 },
                               { c30, c31, c32, c33 } };
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < ns; j++) {
                    float v = 0;
                    for (int l = 0; l < 16; l++) v += acc[i][j][l];
                    for (int64_t d = kv; d < k; d++) v += xr[i][d] * xs[j][d];
                    c[(r0 + i) * ldc + s0 + j] = v;
                    c[(s0 + j) * ldc + r0 + i] = v;
                }
        }
    }
}
