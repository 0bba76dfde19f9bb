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
