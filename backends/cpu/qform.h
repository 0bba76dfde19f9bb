// Row-wise quadratic forms: the norm of an attended context from the
// attention weights and the region Gram matrix (docs/kernels.md, "Quadratic
// forms").
//
//   out[l] = Σ_j X[l, j] · (X · G)[l, j]      X [m, k], G [k, k]
//
// The Gram rewrite (docs/rewrites.md) turns ‖Σ_r α_lr c_r‖² into this: X the
// attention weights of word l over the k regions, G = C·Cᵀ. As a product
// followed by a multiply-and-sum, every X of a SCAN scoring tile was copied
// transposed, multiplied by G through the library one small product per
// image (k = 36), written out and read back. Here each X block is read
// once, X·G is formed in registers and reduced at once.
//
// Layouts: X(l, r) = x[r * ldx + l] when trans_x (X stored as [k, m], the
// softmax's layout), else x[l * ldx + r]; G(r, j) = g[j * ldg + r] when
// trans_g, else g[r * ldg + j].
//
// Bits: out[l] depends only on X's row l and G, computed the same way
// wherever the row lies (the lanes of a vector are independent), so results
// do not depend on how callers split items between threads. (X·G)[l, j] is
// a chain over r = 0..k-1 and out[l] a sum over j in groups of four, in the
// working precision, as the product it replaces accumulates.
#ifndef ITR_BACKENDS_CPU_QFORM_H
#define ITR_BACKENDS_CPU_QFORM_H

#include <stdbool.h>
#include <stdint.h>

// The largest m and k the functions take.
#define ITR_QFORM_MAX_ROWS 64
#define ITR_QFORM_MAX_K 64

// `items` forms sharing G: item t's X at x + x_off[t], its m results at
// out + t * m.
void itr_qform_f32(bool trans_x, bool trans_g, int64_t m, int64_t k, int64_t items, const float *x,
                   const int64_t *x_off, int64_t ldx, const float *g, int64_t ldg, float *out);
void itr_qform_f64(bool trans_x, bool trans_g, int64_t m, int64_t k, int64_t items, const double *x,
                   const int64_t *x_off, int64_t ldx, const double *g, int64_t ldg, double *out);

// Gram matrices of short, wide blocks: C = X·Xᵀ, X [n, k] row-major
// (leading dimension ldx), C [n, n] (ldc). SCAN's region Gram matrix per
// image (n = 36, k = 1024): a library product of that shape ran at a
// quarter of the machine's rate. Only the upper triangle is computed, in
// 4 x 4 blocks of 16-float dot products, and mirrored, so C is exactly
// symmetric. Each element is a sum of 16 lane sums (lane i over
// d = i, i + 16, ...) added in lane order, then the d past the last multiple
// of 16 in order: the same for any caller's split of the matrices.
void itr_gram_f32(int64_t n, int64_t k, const float *x, int64_t ldx, float *c, int64_t ldc);

#endif
