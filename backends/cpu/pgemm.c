// Products over a prepacked right operand (pgemm.h), with an AVX-512 register
// kernel compiled for that ISA alone and chosen at run time, so the rest of
// the build stays generic x86-64.
//
// Blocking (measured on the Zen 4 VM, docs/performance.md): an 8 x 32 tile
// of C in 16 zmm accumulators; per k, two 16-float loads of the packed
// panel and 8 broadcasts of A. K goes in blocks of KC = 2048 (the models'
// products have K <= 2048, so one block: a panel's block, 256 KB, stays in
// L2 while the rows pass over it), rows in blocks of MC = 256. Between K
// blocks the tile goes through C in f32, which is exact, so the bits are
// those of one fma chain per element (pgemm.h).
#include "backends/cpu/pgemm.h"

#include <stdlib.h>

#define NR ITR_PGEMM_NR
#define MR 8
#define KC 2048
#define MC 256

int64_t itr_pgemm_panels(int64_t n) { return (n + NR - 1) / NR; }

size_t itr_pgemm_packed_floats(int64_t n, int64_t k) { return (size_t)itr_pgemm_panels(n) * NR * (size_t)k; }

// The kernel's panel loads are aligned 64-byte loads; aligned_alloc wants a
// multiple of the alignment.
float *itr_pgemm_packed_new(int64_t n, int64_t k) {
    size_t bytes = itr_pgemm_packed_floats(n, k) * sizeof(float);
    return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
}

void itr_pgemm_pack(bool trans_b, int64_t n, int64_t k, const float *b, int64_t ldb, float *dst, int64_t p0,
                    int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        float *panel = dst + (size_t)p * NR * (size_t)k;
        int64_t col0 = p * NR, w = n - col0 < NR ? n - col0 : NR;
        if (!trans_b) {
            for (int64_t kk = 0; kk < k; kk++) {
                const float *src = b + kk * ldb + col0;
                float *row = panel + kk * NR;
                for (int64_t c = 0; c < w; c++) row[c] = src[c];
                for (int64_t c = w; c < NR; c++) row[c] = 0.0f;
            }
            continue;
        }
        // B stored n x k: walk k in short runs so each column's run and the
        // panel rows it lands in stay in cache.
        for (int64_t k0 = 0; k0 < k; k0 += 16) {
            int64_t kn = k - k0 < 16 ? k - k0 : 16;
            for (int64_t c = 0; c < NR; c++) {
                const float *src = b + (col0 + c) * ldb + k0;
                for (int64_t kk = 0; kk < kn; kk++) panel[(k0 + kk) * NR + c] = c < w ? src[kk] : 0.0f;
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

bool itr_pgemm_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

// rows x 32 tile of C over kc steps of k; `first`: the first K block, so
// the tile starts from 0 rather than from C. m0, m1: C's columns in the
// tile's two halves (the last panel may be narrower). rows is a constant
// in each caller below, so the loops over it unroll into registers (the
// pragmas make sure of it at -O2, where a loop kept rolled leaves the
// accumulators in memory: 3x slower).
static inline __attribute__((always_inline)) AVX512 void tile(int rows, int64_t kc, const float *a, int64_t lda,
                                                               const float *bp, float *c, int64_t ldc, bool first,
                                                               __mmask16 m0, __mmask16 m1) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= rows) continue;
        if (first) {
            acc[r][0] = _mm512_setzero_ps();
            acc[r][1] = _mm512_setzero_ps();
        } else {
            acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
            acc[r][1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_load_ps(bp + kk * NR), b1 = _mm512_load_ps(bp + kk * NR + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            if (r >= rows) continue;
            __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= rows) continue;
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

typedef void tile_fn(int64_t, const float *, int64_t, const float *, float *, int64_t, bool, __mmask16, __mmask16);
#define TILE(R)                                                                                                   \
    static AVX512 void tile##R(int64_t kc, const float *a, int64_t lda, const float *bp, float *c, int64_t ldc, \
                               bool first, __mmask16 m0, __mmask16 m1) {                                          \
        tile(R, kc, a, lda, bp, c, ldc, first, m0, m1);                                                           \
    }
TILE(1)
TILE(2)
TILE(3)
TILE(4)
TILE(5)
TILE(6)
TILE(7)
TILE(8)
static tile_fn *const tiles[MR + 1] = { NULL, tile1, tile2, tile3, tile4, tile5, tile6, tile7, tile8 };

static __mmask16 lanes(int64_t w) { return w >= 16 ? (__mmask16)0xffff : w <= 0 ? 0 : (__mmask16)((1u << w) - 1); }

AVX512 void itr_pgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed, float *c,
                      int64_t ldc, int64_t p0, int64_t p1) {
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
        int64_t kc = k - k0 < KC ? k - k0 : KC;
        for (int64_t i0 = 0; i0 < m; i0 += MC) {
            int64_t i1 = m - i0 < MC ? m : i0 + MC;
            for (int64_t p = p0; p < p1; p++) {
                int64_t col = p * NR, w = n - col;
                __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
                const float *bp = packed + ((size_t)p * (size_t)k + (size_t)k0) * NR;
                for (int64_t i = i0; i < i1; i += MR) {
                    int rows = i1 - i < MR ? (int)(i1 - i) : MR;
                    tiles[rows](kc, a + i * lda + k0, lda, bp, c + i * ldc + col, ldc, k0 == 0, m0, m1);
                }
            }
        }
    }
}

#else

bool itr_pgemm_available(void) { return false; }

void itr_pgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed, float *c,
               int64_t ldc, int64_t p0, int64_t p1) {
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)packed, (void)c, (void)ldc, (void)p0, (void)p1;
    abort();   // callers check itr_pgemm_available() first
}

#endif
