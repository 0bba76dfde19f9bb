// f32 products whose right operand is packed once and used many times
// (docs/performance.md, "Prepacked products").
//
//   C[m, n] = A[m, k] · op(B)[k, n]      (A row-major, leading dimension lda)
//
// A library GEMM packs B into its own panel layout on every call. When B is
// the same for many calls (a recurrent weight read by every step of a scan)
// that copy is repeated work: 12 MB for a GRU's 3072 x 1024 weight, per
// step. Here B is packed once (itr_pgemm_pack) and each product reads the
// packed copy. The register kernel needs AVX-512; itr_pgemm_available()
// says whether this CPU has it, and callers use itr_gemm_f32 otherwise.
//
// Layout: B's columns in panels of ITR_PGEMM_NR; panel p holds columns
// [p*NR, p*NR + NR) as k rows of NR floats, the columns past n as 0.
//
// Bits: every element of C is one chain of fused multiply-adds over
// k = 0, 1, ..., k-1 starting from 0, the same chain wherever the element
// lies in C and however the panels are split between threads. So results do
// not depend on m, on the panel range of a call, or on the thread count
// (tests/test_gemm.c). They differ from the library's in the last bits.
#ifndef ITR_BACKENDS_CPU_PGEMM_H
#define ITR_BACKENDS_CPU_PGEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ITR_PGEMM_NR 32

// The CPU runs the kernel (AVX-512F).
bool itr_pgemm_available(void);

// Panels of n columns, and floats of the packed copy of a k x n operand.
int64_t itr_pgemm_panels(int64_t n);
size_t itr_pgemm_packed_floats(int64_t n, int64_t k);

// Memory for the packed copy of a k x n operand, aligned as the kernel
// needs; release it with free(). NULL when out of memory.
float *itr_pgemm_packed_new(int64_t n, int64_t k);

// Packs panels [p0, p1) of op(B): B stored k x n (ldb >= n), or n x k
// (ldb >= k) when trans_b. Disjoint panel ranges may be packed from several
// threads at once. dst comes from itr_pgemm_packed_new.
void itr_pgemm_pack(bool trans_b, int64_t n, int64_t k, const float *b, int64_t ldb, float *dst, int64_t p0,
                    int64_t p1);

// C's columns of panels [p0, p1) (C overwritten, no beta). One thread per
// call; calls over disjoint panel ranges may run at once. k >= 1.
void itr_pgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed, float *c,
               int64_t ldc, int64_t p0, int64_t p1);

#endif
