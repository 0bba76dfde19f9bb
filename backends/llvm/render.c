// Kernel IR -> LLVM IR with the LLVM 14 C API (anchors-style.md §5.1).
//
// Shape of a rendered kernel:
//   define void @SYM(i8** %bufs, i64* %dims, i64 %begin, i64 %end)
//     loads each buffer pointer and dim, calls @SYM.body and returns;
//   define internal void @SYM.body(T0* noalias ..., i64 dims..., i64 begin, i64 end) alwaysinline
//     the loop nest. The typed, noalias-annotated parameters live on the
//     inner function because noalias only means something on parameters;
//     O3 inlines it into the outer one and turns noalias into scoped alias
//     metadata, which is what lets the vectoriser skip run-time alias checks.
//
// Variables (loop indices, lets, accumulators) are allocas in the entry
// block; O3's SROA/mem2reg turns them into SSA values and phis. An
// accumulator with L lanes is an [L x T] alloca, so lanes indexed by an
// unrolled loop become L independent registers that SLP can pack into one
// vector; the combined value folds lanes 0..L-1 in order (kir.h), so the
// result never depends on the vector width.
//
// Scalar semantics follow the reference interpreter (backends/ref/kernels_*.c)
// except that f32 is computed in f32, not in double:
//   min/max of floats: NaN if either operand is NaN, else a <= b ? a : b /
//     a >= b ? a : b (ties keep the first operand, so for an accumulator the
//     old value; -0 vs +0 keeps the first). llvm.minnum/maxnum drop NaNs
//     and llvm.minimum/maximum order -0 < +0, so neither matches; this is a
//     compare and two selects, which vectorise.
//   sign: x > 0 ? 1 : x < 0 ? -1 : x (keeps -0, 0 and NaN); integers -1/0/1.
//   sigmoid: e = exp(-|x|); x >= 0 ? 1/(1+e) : e/(1+e): ref's two branches
//     with one exp that never overflows. NaN gives NaN.
//   integer div/mod: floor division and its remainder (Python); a divisor of
//     -1 is special-cased so INT_MIN / -1 wraps instead of trapping, as ref.
//   float mod: C's fmod (frem).
//   cast float -> int: llvm.fptosi.sat (truncation toward zero, saturating,
//     NaN -> 0), ref_f2i exactly; -> bool: x != 0 (NaN is true);
//     bool -> number: 0/1; int -> int: sign-extend or wrap.
//   integer neg/add/sub/mul wrap (no nsw), as ref's two's complement.
//   f32 exp, log, tanh, erf (and so sigmoid) are inline polynomials (see
//     "f32 exp, log, tanh, erf" below) that vectorise and give the same bits
//     in every lane; f64 keeps libm: tanh and erf call tanh/erf, exp and log
//     are LLVM intrinsics. acos calls libm (acosf/acos); sqrt, sin, cos, pow
//     and fabs are LLVM intrinsics that lower to libm or instructions.
#ifdef ITR_HAVE_LLVM

#include "backends/llvm/render.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

// Statically unrolled loops of at most this many iterations are copied in
// the renderer (accumulator lanes); longer ones get llvm.loop.unroll.full.
#define RENDER_UNROLL_MAX 64

struct rctx {
    const struct kir_kernel *k;
    LLVMContextRef c;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    LLVMValueRef fn;           // the inner function
    LLVMValueRef *bufp;        // typed buffer pointers (inner params)
    LLVMValueRef *dimv;        // dim values (inner params)
    LLVMValueRef begin, end;
    LLVMValueRef *slot;        // per var: alloca (accumulators: [lanes x T])
    // Expressions are trees in kernel IR but DAGs in practice (an operand
    // used twice: relu's select, an index shared by loads). Within one
    // statement every expression is evaluated in the same block, before the
    // statement's effect, so each is rendered once per statement: memo[id]
    // is valid while memo_gen[id] == gen. Without this a chain of n such ops
    // renders 2^n copies.
    LLVMValueRef *memo;
    uint32_t *memo_gen, gen;
    LLVMTypeRef t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_void;
    char *why; size_t n;
};

static bool fail(struct rctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct rctx *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (r->n) vsnprintf(r->why, r->n, fmt, ap);
    va_end(ap);
    return false;
}

static LLVMTypeRef ty(struct rctx *r, enum kir_type t) {
    switch (t) {
    case KIR_I64: return r->t_i64;
    case KIR_I32: return r->t_i32;
    case KIR_F32: return r->t_f32;
    case KIR_F64: return r->t_f64;
    default: return r->t_i1;
    }
}

// A bool buffer holds one byte per element.
static LLVMTypeRef elem_ty(struct rctx *r, enum itr_dtype dt) {
    return dt == ITR_BOOL ? r->t_i8 : ty(r, kir_type_of_dtype(dt));
}

static bool is_float(enum kir_type t) { return t == KIR_F32 || t == KIR_F64; }
static bool is_int(enum kir_type t) { return t == KIR_I32 || t == KIR_I64; }

static LLVMValueRef intrinsic(struct rctx *r, const char *name, LLVMTypeRef *over, int n_over, LLVMValueRef *args,
                              int n_args) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(r->m, id, over, (size_t)n_over);
    LLVMTypeRef ft = LLVMIntrinsicGetType(r->c, id, over, (size_t)n_over);
    return LLVMBuildCall2(r->b, ft, f, args, (unsigned)n_args, "");
}

static LLVMValueRef intrinsic1(struct rctx *r, const char *name, LLVMTypeRef t, LLVMValueRef x) {
    return intrinsic(r, name, &t, 1, &x, 1);
}

static void add_fn_attr(struct rctx *r, LLVMValueRef fn, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(r->c, kind, 0));
}

static void add_param_attr(struct rctx *r, LLVMValueRef fn, unsigned param, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, param + 1, LLVMCreateEnumAttribute(r->c, kind, 0));
}

// A libm function T name(T), declared once per module. readnone: we never
// read errno, and it lets LICM and GVN treat the call as pure arithmetic.
static LLVMValueRef libm1(struct rctx *r, const char *f32_name, const char *f64_name, LLVMTypeRef t, LLVMValueRef x) {
    const char *name = t == r->t_f32 ? f32_name : f64_name;
    LLVMTypeRef ft = LLVMFunctionType(t, &t, 1, 0);
    LLVMValueRef f = LLVMGetNamedFunction(r->m, name);
    if (!f) {
        f = LLVMAddFunction(r->m, name, ft);
        add_fn_attr(r, f, "nounwind");
        add_fn_attr(r, f, "readnone");
        add_fn_attr(r, f, "willreturn");
    }
    return LLVMBuildCall2(r->b, ft, f, &x, 1, "");
}

static LLVMValueRef fconst(LLVMTypeRef t, double v) { return LLVMConstReal(t, v); }

// ---- f32 exp, log, tanh, erf as inline polynomials
//
// LLVM 14 has no vector math library here, so llvm.exp.f32 and a tanhf call
// stay scalar libm calls and the loop vectoriser gives up on the loop. These
// are straight-line IR (selects, no branches, no calls; the exponent is
// handled as integer bits through bitcasts), which the loop and SLP
// vectorisers widen like any arithmetic. Only IEEE add/sub/mul/div, exact
// bit operations and llvm.fmuladd are used (no fast-math flags), so an
// element's result is the same bits in a vector lane and in the scalar
// remainder loop: results do not depend on the vector width or on where a
// thread's chunk starts. fmuladd is one FMA on a host with FMA (a quarter
// fewer instructions) and a multiply and an add elsewhere; the backend
// makes that choice per target, for scalars and vectors alike, so hosts may
// differ in the last bit but lanes never do. Coefficients are the published Cephes single-
// precision minimax ones (expf.c, logf.c, tanhf.c) with Cody-Waite's split
// of ln 2 (C1 = 355/512 has 9 bits, so n * C1 is exact for |n| < 2^15).
// Measured against double libm rounded to f32 (tests/test_llvm_math.c):
// exp, log and tanh within 1 ulp, sigmoid and erf within 2.

static LLVMValueRef f32c(struct rctx *r, float v) { return LLVMConstReal(r->t_f32, (double)v); }
static LLVMValueRef i32c(struct rctx *r, int32_t v) { return LLVMConstInt(r->t_i32, (unsigned long long)(int64_t)v, 1); }
static LLVMValueRef fmul(struct rctx *r, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(r->b, a, b, ""); }
static LLVMValueRef fadd(struct rctx *r, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(r->b, a, b, ""); }
static LLVMValueRef fsub(struct rctx *r, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(r->b, a, b, ""); }
static LLVMValueRef f2i(struct rctx *r, LLVMValueRef x) { return LLVMBuildBitCast(r->b, x, r->t_i32, ""); }
static LLVMValueRef i2f(struct rctx *r, LLVMValueRef x) { return LLVMBuildBitCast(r->b, x, r->t_f32, ""); }
static LLVMValueRef fsel(struct rctx *r, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef t,
                         LLVMValueRef f) {
    return LLVMBuildSelect(r->b, LLVMBuildFCmp(r->b, p, a, b, ""), t, f, "");
}

// a * b + c, fused where the target has FMA (llvm.fmuladd): the backend
// decides per target, the same way for scalars and vectors.
static LLVMValueRef fma3(struct rctx *r, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = { a, b, c };
    return intrinsic(r, "llvm.fmuladd", &r->t_f32, 1, args, 3);
}

// c[0] x^(n-1) + ... + c[n-1] by Horner's rule.
static LLVMValueRef f32_poly(struct rctx *r, LLVMValueRef x, const float *c, int n) {
    LLVMValueRef y = f32c(r, c[0]);
    for (int i = 1; i < n; i++) y = fma3(r, y, x, f32c(r, c[i]));
    return y;
}

// 2^n for an i32 n in [-126, 127], built from its exponent bits.
static LLVMValueRef f32_pow2i(struct rctx *r, LLVMValueRef n) {
    return i2f(r, LLVMBuildShl(r->b, LLVMBuildAdd(r->b, n, i32c(r, 127), ""), i32c(r, 23), ""));
}

// exp(x) = 2^n exp(g), n = round(x / ln 2), g = x - n ln 2 in [-ln2/2, ln2/2].
static LLVMValueRef f32_exp(struct rctx *r, LLVMValueRef x) {
    static const float p[6] = { 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f };
    // Clamped so that n stays within [-159, 144]: beyond that exp is already
    // inf or 0. The compares are false for NaN, which passes through.
    LLVMValueRef xc = fsel(r, LLVMRealOGT, x, f32c(r, 100.0f), f32c(r, 100.0f), x);
    xc = fsel(r, LLVMRealOLT, xc, f32c(r, -110.0f), f32c(r, -110.0f), xc);
    // Adding 1.5 * 2^23 rounds to an integer (to nearest even) in the low
    // mantissa bits: n as a float and as an integer without a
    // float-to-int conversion (whose NaN case is poison in LLVM).
    LLVMValueRef magic = f32c(r, 12582912.0f);
    LLVMValueRef t = fma3(r, xc, f32c(r, 1.44269504088896341f), magic);
    LLVMValueRef n = LLVMBuildSub(r->b, f2i(r, t), f2i(r, magic), "");
    LLVMValueRef fn = fsub(r, t, magic);
    LLVMValueRef g = fma3(r, fn, f32c(r, -0.693359375f), xc);
    g = fma3(r, fn, f32c(r, 2.12194440e-4f), g);
    LLVMValueRef y = fma3(r, f32_poly(r, g, p, 6), fmul(r, g, g), g);
    y = fadd(r, y, f32c(r, 1.0f));
    // 2^n in two normal halves: one rounding, so results in the subnormal
    // range are rounded once, and n = 128 (x just below overflow) works.
    LLVMValueRef n1 = LLVMBuildAShr(r->b, n, i32c(r, 1), "");
    LLVMValueRef n2 = LLVMBuildSub(r->b, n, n1, "");
    return fmul(r, fmul(r, y, f32_pow2i(r, n1)), f32_pow2i(r, n2));
}

// log(x) = e ln 2 + log(m), m in [sqrt(1/2), sqrt(2)), log(1 + f) by a polynomial in f.
static LLVMValueRef f32_log(struct rctx *r, LLVMValueRef x) {
    static const float p[9] = { 7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f,
                                -1.2420140846e-1f, 1.4249322787e-1f, -1.6668057665e-1f,
                                2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f };
    // Subnormals are scaled by 2^23 into the normal range first.
    LLVMValueRef sub = LLVMBuildFCmp(r->b, LLVMRealOLT, x, f32c(r, 1.17549435e-38f), "");
    LLVMValueRef xs = LLVMBuildSelect(r->b, sub, fmul(r, x, f32c(r, 8388608.0f)), x, "");
    LLVMValueRef u = f2i(r, xs);
    LLVMValueRef e = LLVMBuildSub(r->b, LLVMBuildLShr(r->b, u, i32c(r, 23), ""), i32c(r, 126), "");
    e = LLVMBuildSub(r->b, e, LLVMBuildSelect(r->b, sub, i32c(r, 23), i32c(r, 0), ""), "");
    // m in [0.5, 1): the mantissa with exponent -1.
    LLVMValueRef m = i2f(r, LLVMBuildOr(r->b, LLVMBuildAnd(r->b, u, i32c(r, 0x007fffff), ""), i32c(r, 0x3f000000), ""));
    LLVMValueRef small = LLVMBuildFCmp(r->b, LLVMRealOLT, m, f32c(r, 0.707106781186547524f), "");
    e = LLVMBuildSub(r->b, e, LLVMBuildZExt(r->b, small, r->t_i32, ""), "");
    LLVMValueRef f = fsub(r, LLVMBuildSelect(r->b, small, fadd(r, m, m), m, ""), f32c(r, 1.0f));
    LLVMValueRef fe = LLVMBuildSIToFP(r->b, e, r->t_f32, "");
    LLVMValueRef z = fmul(r, f, f);
    LLVMValueRef y = fmul(r, fmul(r, f32_poly(r, f, p, 9), f), z);
    y = fma3(r, fe, f32c(r, -2.12194440e-4f), y);
    y = fma3(r, f32c(r, -0.5f), z, y);
    LLVMValueRef v = fma3(r, fe, f32c(r, 0.693359375f), fadd(r, f, y));
    // log(0) = -inf (either zero), log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
    v = fsel(r, LLVMRealOEQ, x, f32c(r, 0.0f), f32c(r, -__builtin_inff()), v);
    v = fsel(r, LLVMRealOLT, x, f32c(r, 0.0f), f32c(r, __builtin_nanf("")), v);
    v = fsel(r, LLVMRealOEQ, x, f32c(r, __builtin_inff()), x, v);
    return fsel(r, LLVMRealUNO, x, x, x, v);
}

// tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above
// (which is 1 once exp overflows), with x's sign: tanh(-0) = -0.
static LLVMValueRef f32_tanh(struct rctx *r, LLVMValueRef x) {
    static const float p[5] = { -5.70498872745e-3f, 2.06390887954e-2f, -5.37397155531e-2f,
                                1.33314422036e-1f, -3.33332819422e-1f };
    LLVMValueRef a = intrinsic1(r, "llvm.fabs", r->t_f32, x);
    LLVMValueRef z = fmul(r, x, x);
    LLVMValueRef s = fma3(r, fmul(r, f32_poly(r, z, p, 5), z), x, x);
    LLVMValueRef e = f32_exp(r, fadd(r, a, a));
    LLVMValueRef l = fsub(r, f32c(r, 1.0f), LLVMBuildFDiv(r->b, f32c(r, 2.0f), fadd(r, e, f32c(r, 1.0f)), ""));
    LLVMValueRef v = fsel(r, LLVMRealOLT, a, f32c(r, 0.625f), s, l);
    LLVMValueRef args[2] = { v, x };
    return intrinsic(r, "llvm.copysign", &r->t_f32, 1, args, 2);
}

// erf on |x| clamped to 4 (beyond, erf is 1 in f32), with x's sign:
//   |x| < 1:  x + x R(x^2), R(z) ~ erf(sqrt z) / sqrt z - 1 (the -1 keeps the
//             rounding of the large constant term out of the result);
//   |x| >= 1: 1 - exp(-x^2) Q(1/|x|), Q(t) ~ erfc(1/t) exp(1/t^2).
// The coefficients are least-squares fits on Chebyshev nodes (near-minimax;
// Q weighted by exp(-x^2), i.e. for erf's absolute error) made for this file.
// Rounding x^2 changes exp(-x^2) by the same amount relatively (2^-24 near
// |x| = 1, at most 2^-21 near 4), which erfc(|x|) <= 0.16 scales far below
// an ulp of erf. Measured: within 2 ulp.
static LLVMValueRef f32_erf(struct rctx *r, LLVMValueRef x) {
    static const float p[8] = { -9.673761647e-06f, 1.126831371e-04f, -8.484404776e-04f, 5.221053973e-03f,
                                -2.686543851e-02f, 1.128378263e-01f, -3.761263848e-01f, 1.128379167e+00f - 1.0f };
    static const float q[10] = { 5.119325880e-02f, -3.319693546e-01f, 9.283888651e-01f, -1.436003894e+00f,
                                 1.275595362e+00f, -5.510896840e-01f, 8.915950424e-03f, -9.891311596e-02f,
                                 5.829893849e-01f, -1.523194973e-03f };
    LLVMValueRef a = intrinsic1(r, "llvm.fabs", r->t_f32, x);
    a = fsel(r, LLVMRealOGT, a, f32c(r, 4.0f), f32c(r, 4.0f), a);   // NaN passes
    LLVMValueRef z = fmul(r, a, a);
    LLVMValueRef s = fma3(r, a, f32_poly(r, z, p, 8), a);
    // For |x| < 1 this arm divides by a small or zero a; the select drops it.
    LLVMValueRef t = LLVMBuildFDiv(r->b, f32c(r, 1.0f), a, "");
    LLVMValueRef l = fma3(r, LLVMBuildFNeg(r->b, f32_exp(r, LLVMBuildFNeg(r->b, z, "")), ""), f32_poly(r, t, q, 10), f32c(r, 1.0f));
    LLVMValueRef v = fsel(r, LLVMRealOLT, a, f32c(r, 1.0f), s, l);
    LLVMValueRef args[2] = { v, x };
    return intrinsic(r, "llvm.copysign", &r->t_f32, 1, args, 2);
}

// ---- scalar operations on LLVM values of kir type t

// Floor division / remainder of signed integers; see the header comment.
static LLVMValueRef int_floordiv(struct rctx *r, LLVMTypeRef t, LLVMValueRef a, LLVMValueRef b, bool want_mod) {
    LLVMValueRef zero = LLVMConstInt(t, 0, 0), one = LLVMConstInt(t, 1, 0), m1 = LLVMConstAllOnes(t);
    LLVMValueRef is_m1 = LLVMBuildICmp(r->b, LLVMIntEQ, b, m1, "");
    LLVMValueRef bs = LLVMBuildSelect(r->b, is_m1, one, b, "");   // never divides INT_MIN by -1
    LLVMValueRef q = LLVMBuildSDiv(r->b, a, bs, "");
    LLVMValueRef rem = LLVMBuildSRem(r->b, a, bs, "");
    // The remainder has a's sign; when it is nonzero and differs in sign from b,
    // the truncated quotient is one too large.
    LLVMValueRef rnz = LLVMBuildICmp(r->b, LLVMIntNE, rem, zero, "");
    LLVMValueRef sx = LLVMBuildXor(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, rem, zero, ""),
                                   LLVMBuildICmp(r->b, LLVMIntSLT, bs, zero, ""), "");
    LLVMValueRef adj = LLVMBuildAnd(r->b, rnz, sx, "");
    if (want_mod) return LLVMBuildSelect(r->b, adj, LLVMBuildAdd(r->b, rem, bs, ""), rem, "");
    LLVMValueRef fq = LLVMBuildSelect(r->b, adj, LLVMBuildSub(r->b, q, one, ""), q, "");
    return LLVMBuildSelect(r->b, is_m1, LLVMBuildSub(r->b, zero, a, ""), fq, "");
}

// NaN-propagating min/max with ref's tie rule (first operand wins).
static LLVMValueRef float_minmax(struct rctx *r, LLVMTypeRef t, LLVMValueRef a, LLVMValueRef b, bool is_max) {
    LLVMValueRef keep_a = LLVMBuildFCmp(r->b, is_max ? LLVMRealOGE : LLVMRealOLE, a, b, "");
    LLVMValueRef v = LLVMBuildSelect(r->b, keep_a, a, b, "");
    LLVMValueRef uno = LLVMBuildFCmp(r->b, LLVMRealUNO, a, b, "");
    return LLVMBuildSelect(r->b, uno, fconst(t, __builtin_nan("")), v, "");
}

static LLVMValueRef truthy(struct rctx *r, enum kir_type t, LLVMValueRef v) {
    if (t == KIR_BOOL) return v;
    if (is_float(t)) return LLVMBuildFCmp(r->b, LLVMRealUNE, v, fconst(ty(r, t), 0), "");
    return LLVMBuildICmp(r->b, LLVMIntNE, v, LLVMConstInt(ty(r, t), 0, 0), "");
}

// op(a, b) for operands of kir type t; NULL (with why) when unsupported.
static LLVMValueRef binop(struct rctx *r, enum kir_op op, enum kir_type t, LLVMValueRef a, LLVMValueRef b) {
    LLVMTypeRef lt = ty(r, t);
    bool f = is_float(t), i = is_int(t), bl = t == KIR_BOOL;
    switch (op) {
    case KIR_ADD:
        if (f) return LLVMBuildFAdd(r->b, a, b, "");
        if (i) return LLVMBuildAdd(r->b, a, b, "");
        return LLVMBuildOr(r->b, a, b, "");   // bool: any
    case KIR_SUB:
        if (f) return LLVMBuildFSub(r->b, a, b, "");
        if (i) return LLVMBuildSub(r->b, a, b, "");
        break;
    case KIR_MUL:
        if (f) return LLVMBuildFMul(r->b, a, b, "");
        if (i) return LLVMBuildMul(r->b, a, b, "");
        return LLVMBuildAnd(r->b, a, b, "");  // bool: all
    case KIR_DIV:
        if (f) return LLVMBuildFDiv(r->b, a, b, "");
        if (i) return int_floordiv(r, lt, a, b, false);
        break;
    case KIR_MOD:
        if (f) return LLVMBuildFRem(r->b, a, b, "");
        if (i) return int_floordiv(r, lt, a, b, true);
        break;
    case KIR_MIN:
    case KIR_MAX: {
        bool mx = op == KIR_MAX;
        if (f) return float_minmax(r, lt, a, b, mx);
        if (bl) return mx ? LLVMBuildOr(r->b, a, b, "") : LLVMBuildAnd(r->b, a, b, "");
        LLVMValueRef keep_a = LLVMBuildICmp(r->b, mx ? LLVMIntSGE : LLVMIntSLE, a, b, "");
        return LLVMBuildSelect(r->b, keep_a, a, b, "");
    }
    case KIR_POW:
        if (f) {
            LLVMValueRef args[2] = { a, b };
            return intrinsic(r, "llvm.pow", &lt, 1, args, 2);
        }
        break;
    case KIR_EQ: case KIR_NE: case KIR_LT: case KIR_LE: case KIR_GT: case KIR_GE: {
        int k = op - KIR_EQ;
        // ne is true when either operand is NaN (C's !=); the others are ordered.
        static const LLVMRealPredicate fp[] = { LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE };
        static const LLVMIntPredicate sp[] = { LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE };
        static const LLVMIntPredicate up[] = { LLVMIntEQ, LLVMIntNE, LLVMIntULT, LLVMIntULE, LLVMIntUGT, LLVMIntUGE };
        if (f) return LLVMBuildFCmp(r->b, fp[k], a, b, "");
        return LLVMBuildICmp(r->b, bl ? up[k] : sp[k], a, b, "");   // false < true for bools
    }
    case KIR_AND: return LLVMBuildAnd(r->b, truthy(r, t, a), truthy(r, t, b), "");
    case KIR_OR: return LLVMBuildOr(r->b, truthy(r, t, a), truthy(r, t, b), "");
    default: break;
    }
    fail(r, "'%s' of %s operands has no LLVM rendering", kir_op_name(op), kir_type_name(t));
    return NULL;
}

static LLVMValueRef unop(struct rctx *r, enum kir_op op, enum kir_type t, LLVMValueRef x) {
    LLVMTypeRef lt = ty(r, t);
    bool f = is_float(t), i = is_int(t);
    if (op == KIR_NOT) {
        if (t == KIR_BOOL) return LLVMBuildXor(r->b, x, LLVMConstInt(r->t_i1, 1, 0), "");
        LLVMValueRef z = f ? LLVMBuildFCmp(r->b, LLVMRealOEQ, x, fconst(lt, 0), "")
                           : LLVMBuildICmp(r->b, LLVMIntEQ, x, LLVMConstInt(lt, 0, 0), "");
        return f ? LLVMBuildUIToFP(r->b, z, lt, "") : LLVMBuildZExt(r->b, z, lt, "");
    }
    if (i) {
        LLVMValueRef zero = LLVMConstInt(lt, 0, 0);
        switch (op) {
        case KIR_NEG: return LLVMBuildSub(r->b, zero, x, "");
        case KIR_ABS:
            return LLVMBuildSelect(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, x, zero, ""), LLVMBuildSub(r->b, zero, x, ""), x, "");
        case KIR_SIGN:
            return LLVMBuildSub(r->b, LLVMBuildZExt(r->b, LLVMBuildICmp(r->b, LLVMIntSGT, x, zero, ""), lt, ""),
                                LLVMBuildZExt(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, x, zero, ""), lt, ""), "");
        default: break;
        }
    }
    if (f) {
        LLVMValueRef one = fconst(lt, 1.0), zero = fconst(lt, 0.0);
        switch (op) {
        case KIR_NEG: return LLVMBuildFNeg(r->b, x, "");
        case KIR_ABS: return intrinsic1(r, "llvm.fabs", lt, x);
        case KIR_SIGN: {
            LLVMValueRef neg = LLVMBuildSelect(r->b, LLVMBuildFCmp(r->b, LLVMRealOLT, x, zero, ""), fconst(lt, -1.0), x, "");
            return LLVMBuildSelect(r->b, LLVMBuildFCmp(r->b, LLVMRealOGT, x, zero, ""), one, neg, "");
        }
        case KIR_EXP: return t == KIR_F32 ? f32_exp(r, x) : intrinsic1(r, "llvm.exp", lt, x);
        case KIR_LOG: return t == KIR_F32 ? f32_log(r, x) : intrinsic1(r, "llvm.log", lt, x);
        case KIR_SQRT: return intrinsic1(r, "llvm.sqrt", lt, x);
        case KIR_RSQRT: return LLVMBuildFDiv(r->b, one, intrinsic1(r, "llvm.sqrt", lt, x), "");
        case KIR_RECIP: return LLVMBuildFDiv(r->b, one, x, "");
        case KIR_TANH: return t == KIR_F32 ? f32_tanh(r, x) : libm1(r, "tanhf", "tanh", lt, x);
        case KIR_ERF: return t == KIR_F32 ? f32_erf(r, x) : libm1(r, "erff", "erf", lt, x);
        case KIR_ACOS: return libm1(r, "acosf", "acos", lt, x);
        case KIR_SIN: return intrinsic1(r, "llvm.sin", lt, x);
        case KIR_COS: return intrinsic1(r, "llvm.cos", lt, x);
        case KIR_SIGMOID: {
            LLVMValueRef na = LLVMBuildFNeg(r->b, intrinsic1(r, "llvm.fabs", lt, x), "");
            LLVMValueRef e = t == KIR_F32 ? f32_exp(r, na) : intrinsic1(r, "llvm.exp", lt, na);
            LLVMValueRef d = LLVMBuildFAdd(r->b, one, e, "");
            LLVMValueRef pos = LLVMBuildFDiv(r->b, one, d, ""), neg = LLVMBuildFDiv(r->b, e, d, "");
            return LLVMBuildSelect(r->b, LLVMBuildFCmp(r->b, LLVMRealOGE, x, zero, ""), pos, neg, "");
        }
        default: break;
        }
    }
    fail(r, "'%s' of %s has no LLVM rendering", kir_op_name(op), kir_type_name(t));
    return NULL;
}

static LLVMValueRef cast(struct rctx *r, enum kir_type from, enum kir_type to, LLVMValueRef x) {
    LLVMTypeRef lt = ty(r, to);
    if (from == to) return x;
    if (to == KIR_BOOL) return truthy(r, from, x);
    if (from == KIR_BOOL) return is_float(to) ? LLVMBuildUIToFP(r->b, x, lt, "") : LLVMBuildZExt(r->b, x, lt, "");
    if (is_float(from) && is_float(to))
        return to == KIR_F64 ? LLVMBuildFPExt(r->b, x, lt, "") : LLVMBuildFPTrunc(r->b, x, lt, "");
    if (is_float(from)) {
        LLVMTypeRef over[2] = { lt, ty(r, from) };
        return intrinsic(r, "llvm.fptosi.sat", over, 2, &x, 1);
    }
    if (is_float(to)) return LLVMBuildSIToFP(r->b, x, lt, "");
    return to == KIR_I64 ? LLVMBuildSExt(r->b, x, lt, "") : LLVMBuildTrunc(r->b, x, lt, "");
}

// ---- expressions

static LLVMValueRef acc_lane_ptr(struct rctx *r, int32_t var, LLVMValueRef lane) {
    const struct kir_var *v = &r->k->vars[var];
    LLVMTypeRef at = LLVMArrayType(ty(r, v->type), (unsigned)v->lanes);
    LLVMValueRef idx[2] = { LLVMConstInt(r->t_i64, 0, 0), lane };
    return LLVMBuildInBoundsGEP2(r->b, at, r->slot[var], idx, 2, "");
}

static LLVMValueRef expr(struct rctx *r, int32_t id);

static LLVMValueRef index_expr(struct rctx *r, int32_t id) {
    LLVMValueRef v = expr(r, id);
    if (!v) return NULL;
    enum kir_type t = r->k->exprs[id].type;
    if (t == KIR_I64) return v;
    if (!is_int(t)) return fail(r, "e%d: an index of type %s", id, kir_type_name(t)), NULL;
    return LLVMBuildSExt(r->b, v, r->t_i64, "");
}

static LLVMValueRef expr_uncached(struct rctx *r, int32_t id);

static LLVMValueRef expr(struct rctx *r, int32_t id) {
    if (r->memo_gen[id] == r->gen) return r->memo[id];
    LLVMValueRef v = expr_uncached(r, id);
    if (v) {
        r->memo[id] = v;
        r->memo_gen[id] = r->gen;
    }
    return v;
}

static LLVMValueRef expr_uncached(struct rctx *r, int32_t id) {
    const struct kir_kernel *k = r->k;
    const struct kir_expr *e = &k->exprs[id];
    LLVMTypeRef lt = ty(r, e->type);
    switch (e->kind) {
    case KIR_E_CONST_INT:
        if (is_float(e->type)) return fconst(lt, (double)e->ival);
        return LLVMConstInt(lt, e->type == KIR_BOOL ? e->ival != 0 : (unsigned long long)e->ival, 1);
    case KIR_E_CONST_FLOAT:
        if (!is_float(e->type)) return fail(r, "e%d: a float constant of type %s", id, kir_type_name(e->type)), NULL;
        return fconst(lt, e->fval);
    case KIR_E_DIM: return r->dimv[e->dim];
    case KIR_E_BEGIN: return r->begin;
    case KIR_E_END: return r->end;
    case KIR_E_VAR: {
        const struct kir_var *v = &k->vars[e->var];
        if (v->kind == KIR_VAR_LOOP) return LLVMBuildLoad2(r->b, r->t_i64, r->slot[e->var], v->name);
        if (v->kind != KIR_VAR_ACC) return LLVMBuildLoad2(r->b, ty(r, v->type), r->slot[e->var], v->name);
        if (e->a >= 0) {
            LLVMValueRef lane = index_expr(r, e->a);
            return lane ? LLVMBuildLoad2(r->b, lt, acc_lane_ptr(r, e->var, lane), "") : NULL;
        }
        // The combined value: lanes folded in order, lane 0 first.
        LLVMValueRef acc = NULL;
        for (int l = 0; l < v->lanes; l++) {
            LLVMValueRef x = LLVMBuildLoad2(r->b, lt, acc_lane_ptr(r, e->var, LLVMConstInt(r->t_i64, (unsigned)l, 0)), "");
            acc = acc ? binop(r, v->combine, v->type, acc, x) : x;
            if (!acc) return NULL;
        }
        return acc;
    }
    case KIR_E_LOAD: {
        const struct kir_buffer *bf = &k->bufs[e->buf];
        LLVMValueRef idx = index_expr(r, e->a);
        if (!idx) return NULL;
        LLVMTypeRef et = elem_ty(r, bf->dtype);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(r->b, et, r->bufp[e->buf], &idx, 1, "");
        LLVMValueRef v = LLVMBuildLoad2(r->b, et, p, "");
        if (bf->dtype == ITR_BOOL) v = LLVMBuildICmp(r->b, LLVMIntNE, v, LLVMConstInt(r->t_i8, 0, 0), "");
        return v;
    }
    case KIR_E_UNARY: {
        LLVMValueRef a = expr(r, e->a);
        return a ? unop(r, e->op, k->exprs[e->a].type, a) : NULL;
    }
    case KIR_E_BINARY: {
        LLVMValueRef a = expr(r, e->a), b = a ? expr(r, e->b) : NULL;
        return b ? binop(r, e->op, k->exprs[e->a].type, a, b) : NULL;
    }
    case KIR_E_SELECT: {
        // Both arms are pure, so computing both is allowed (kir.h) and keeps
        // the code branch-free for the vectoriser.
        LLVMValueRef c = expr(r, e->a), a = c ? expr(r, e->b) : NULL, b = a ? expr(r, e->c) : NULL;
        return b ? LLVMBuildSelect(r->b, c, a, b, "") : NULL;
    }
    case KIR_E_CAST: {
        LLVMValueRef a = expr(r, e->a);
        return a ? cast(r, k->exprs[e->a].type, e->type, a) : NULL;
    }
    default: break;
    }
    fail(r, "e%d: expression kind %d has no LLVM rendering", id, (int)e->kind);
    return NULL;
}

// ---- statements

// A self-referencing loop ID node {self, {name, true}} for the latch branch.
static void set_loop_md(struct rctx *r, LLVMValueRef br, const char *property) {
    LLVMMetadataRef prop[2] = { LLVMMDStringInContext2(r->c, property, strlen(property)),
                                LLVMValueAsMetadata(LLVMConstInt(r->t_i1, 1, 0)) };
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(r->c, NULL, 0);
    LLVMMetadataRef ops[2] = { tmp, LLVMMDNodeInContext2(r->c, prop, 2) };
    LLVMMetadataRef id = LLVMMDNodeInContext2(r->c, ops, 2);
    LLVMMetadataReplaceAllUsesWith(tmp, id);   // also disposes tmp
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(r->c, "llvm.loop", 9), LLVMMetadataAsValue(r->c, id));
}

static bool stmt(struct rctx *r, int32_t id);

static bool render_for(struct rctx *r, const struct kir_stmt *s) {
    const struct kir_kernel *k = r->k;
    const struct kir_expr *elo = &k->exprs[s->lo], *ehi = &k->exprs[s->hi];
    LLVMValueRef slot = r->slot[s->var];
    if (k->vars[s->var].type != KIR_I64)   // the slot and the bound arithmetic are i64
        return fail(r, "loop variable '%s' is %s, not i64", k->vars[s->var].name, kir_type_name(k->vars[s->var].type));
    if (s->loop == KIR_LOOP_UNROLL && elo->kind == KIR_E_CONST_INT && ehi->kind == KIR_E_CONST_INT &&
        ehi->ival - elo->ival <= RENDER_UNROLL_MAX) {
        for (int64_t v = elo->ival; v < ehi->ival; v++) {
            LLVMBuildStore(r->b, LLVMConstInt(r->t_i64, (unsigned long long)v, 1), slot);
            if (!stmt(r, s->body[0])) return false;
        }
        return true;
    }
    LLVMValueRef lo = index_expr(r, s->lo), hi = lo ? index_expr(r, s->hi) : NULL;
    if (!hi) return false;
    LLVMBuildStore(r->b, lo, slot);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(r->c, r->fn, "for.head");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(r->c, r->fn, "for.body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(r->c, r->fn, "for.exit");
    LLVMBuildBr(r->b, head);
    LLVMPositionBuilderAtEnd(r->b, head);
    LLVMValueRef iv = LLVMBuildLoad2(r->b, r->t_i64, slot, "");
    LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, iv, hi, ""), body, exit);
    LLVMPositionBuilderAtEnd(r->b, body);
    if (!stmt(r, s->body[0])) return false;
    // The body may have moved the builder to a later block; the latch is wherever it ended.
    LLVMValueRef next = LLVMBuildAdd(r->b, LLVMBuildLoad2(r->b, r->t_i64, slot, ""), LLVMConstInt(r->t_i64, 1, 0), "");
    LLVMBuildStore(r->b, next, slot);
    LLVMValueRef br = LLVMBuildBr(r->b, head);
    if (s->loop == KIR_LOOP_VECTOR) set_loop_md(r, br, "llvm.loop.vectorize.enable");
    else if (s->loop == KIR_LOOP_UNROLL) set_loop_md(r, br, "llvm.loop.unroll.full");
    LLVMPositionBuilderAtEnd(r->b, exit);
    return true;
}

static bool stmt(struct rctx *r, int32_t id) {
    const struct kir_kernel *k = r->k;
    const struct kir_stmt *s = &k->stmts[id];
    if (s->kind != KIR_S_SEQ) r->gen++;   // a new statement: earlier values may be stale
    switch (s->kind) {
    case KIR_S_SEQ:
        for (int i = 0; i < s->n_body; i++)
            if (!stmt(r, s->body[i])) return false;
        return true;
    case KIR_S_FOR: return render_for(r, s);
    case KIR_S_STORE: {
        const struct kir_buffer *bf = &k->bufs[s->buf];
        LLVMValueRef idx = index_expr(r, s->index), v = idx ? expr(r, s->value) : NULL;
        if (!v) return false;
        LLVMTypeRef et = elem_ty(r, bf->dtype);
        if (bf->dtype == ITR_BOOL) v = LLVMBuildZExt(r->b, v, r->t_i8, "");
        LLVMBuildStore(r->b, v, LLVMBuildInBoundsGEP2(r->b, et, r->bufp[s->buf], &idx, 1, ""));
        return true;
    }
    case KIR_S_LET: {
        LLVMValueRef v = expr(r, s->value);
        if (!v) return false;
        LLVMBuildStore(r->b, v, r->slot[s->var]);
        return true;
    }
    case KIR_S_ACC_INIT: {
        LLVMValueRef v = expr(r, s->value);
        if (!v) return false;
        int lanes = k->vars[s->var].lanes;
        if (lanes <= RENDER_UNROLL_MAX) {
            for (int l = 0; l < lanes; l++)
                LLVMBuildStore(r->b, v, acc_lane_ptr(r, s->var, LLVMConstInt(r->t_i64, (unsigned)l, 0)));
            return true;
        }
        // A wide accumulator (a column-reduction chunk): a vectorised loop
        // rather than thousands of stores for the optimiser to merge.
        LLVMBasicBlockRef pre = LLVMGetInsertBlock(r->b);
        LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(r->c, r->fn, "init.head");
        LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(r->c, r->fn, "init.body");
        LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(r->c, r->fn, "init.exit");
        LLVMBuildBr(r->b, head);
        LLVMPositionBuilderAtEnd(r->b, head);
        LLVMValueRef iv = LLVMBuildPhi(r->b, r->t_i64, "init.lane");
        LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntSLT, iv, LLVMConstInt(r->t_i64, (unsigned)lanes, 0), ""), body,
                        exit);
        LLVMPositionBuilderAtEnd(r->b, body);
        LLVMBuildStore(r->b, v, acc_lane_ptr(r, s->var, iv));
        LLVMValueRef next = LLVMBuildAdd(r->b, iv, LLVMConstInt(r->t_i64, 1, 0), "");
        LLVMValueRef in_v[2] = { LLVMConstInt(r->t_i64, 0, 0), next };
        LLVMBasicBlockRef in_b[2] = { pre, body };
        LLVMAddIncoming(iv, in_v, in_b, 2);
        set_loop_md(r, LLVMBuildBr(r->b, head), "llvm.loop.vectorize.enable");
        LLVMPositionBuilderAtEnd(r->b, exit);
        return true;
    }
    case KIR_S_ACC_UPDATE: {
        const struct kir_var *var = &k->vars[s->var];
        LLVMValueRef lane = index_expr(r, s->index), v = lane ? expr(r, s->value) : NULL;
        if (!v) return false;
        LLVMValueRef p = acc_lane_ptr(r, s->var, lane);
        LLVMValueRef old = LLVMBuildLoad2(r->b, ty(r, var->type), p, "");
        LLVMValueRef nv = binop(r, var->combine, var->type, old, v);
        if (!nv) return false;
        LLVMBuildStore(r->b, nv, p);
        return true;
    }
    case KIR_S_IF: {
        LLVMValueRef c = expr(r, s->cond);
        if (!c) return false;
        LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(r->c, r->fn, "if.then");
        LLVMBasicBlockRef els = s->n_body == 2 ? LLVMAppendBasicBlockInContext(r->c, r->fn, "if.else") : NULL;
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(r->c, r->fn, "if.end");
        LLVMBuildCondBr(r->b, c, then, els ? els : done);
        LLVMPositionBuilderAtEnd(r->b, then);
        if (!stmt(r, s->body[0])) return false;
        LLVMBuildBr(r->b, done);
        if (els) {
            LLVMPositionBuilderAtEnd(r->b, els);
            if (!stmt(r, s->body[1])) return false;
            LLVMBuildBr(r->b, done);
        }
        LLVMPositionBuilderAtEnd(r->b, done);
        return true;
    }
    default: break;
    }
    return fail(r, "s%d: statement kind %d has no LLVM rendering", id, (int)s->kind);
}

// ---- functions

// noalias on buffer i: where the scheduler proved it, and on a read-only
// buffer when every written buffer is noalias: then no memory written during
// the call is reachable through it, which is all noalias promises (two
// read-only views of the same memory may both be noalias).
static bool buffer_noalias(const struct kir_kernel *k, int i) {
    if (k->bufs[i].noalias) return true;
    if (k->bufs[i].written) return false;
    for (int j = 0; j < k->n_bufs; j++)
        if (k->bufs[j].written && !k->bufs[j].noalias) return false;
    return true;
}

bool itr_llvm_render_kernel(LLVMModuleRef m, const struct kir_kernel *k, const char *symbol, char *why, size_t n) {
    struct rctx r = { .k = k, .m = m, .c = LLVMGetModuleContext(m), .why = why, .n = n };
    r.t_i1 = LLVMInt1TypeInContext(r.c);
    r.t_i8 = LLVMInt8TypeInContext(r.c);
    r.t_i32 = LLVMInt32TypeInContext(r.c);
    r.t_i64 = LLVMInt64TypeInContext(r.c);
    r.t_f32 = LLVMFloatTypeInContext(r.c);
    r.t_f64 = LLVMDoubleTypeInContext(r.c);
    r.t_void = LLVMVoidTypeInContext(r.c);
    if (LLVMGetNamedFunction(m, symbol)) return fail(&r, "two kernels named '%s' in one module", k->name);

    // The inner function: typed buffers, dims, begin, end.
    int np = k->n_bufs + k->n_dims + 2;
    LLVMTypeRef *pt = calloc((size_t)np, sizeof *pt);
    r.bufp = calloc((size_t)k->n_bufs + 1, sizeof *r.bufp);
    r.dimv = calloc((size_t)k->n_dims + 1, sizeof *r.dimv);
    r.slot = calloc((size_t)k->n_vars + 1, sizeof *r.slot);
    r.memo = calloc((size_t)k->n_exprs + 1, sizeof *r.memo);
    r.memo_gen = calloc((size_t)k->n_exprs + 1, sizeof *r.memo_gen);
    r.gen = 1;
    if (!pt || !r.bufp || !r.dimv || !r.slot || !r.memo || !r.memo_gen) {
        free(pt), free(r.bufp), free(r.dimv), free(r.slot), free(r.memo), free(r.memo_gen);
        return fail(&r, "out of memory");
    }
    for (int i = 0; i < k->n_bufs; i++) pt[i] = LLVMPointerType(elem_ty(&r, k->bufs[i].dtype), 0);
    for (int i = k->n_bufs; i < np; i++) pt[i] = r.t_i64;
    LLVMTypeRef inner_t = LLVMFunctionType(r.t_void, pt, (unsigned)np, 0);
    size_t sl = strlen(symbol);
    char *inner_name = malloc(sl + 6);
    if (!inner_name) {
        free(pt), free(r.bufp), free(r.dimv), free(r.slot), free(r.memo), free(r.memo_gen);
        return fail(&r, "out of memory");
    }
    memcpy(inner_name, symbol, sl);
    memcpy(inner_name + sl, ".body", 6);
    r.fn = LLVMAddFunction(m, inner_name, inner_t);
    free(inner_name);
    LLVMSetLinkage(r.fn, LLVMInternalLinkage);
    add_fn_attr(&r, r.fn, "alwaysinline");
    add_fn_attr(&r, r.fn, "nounwind");
    for (int i = 0; i < k->n_bufs; i++) {
        r.bufp[i] = LLVMGetParam(r.fn, (unsigned)i);
        LLVMSetValueName2(r.bufp[i], k->bufs[i].name, strlen(k->bufs[i].name));
        add_param_attr(&r, r.fn, (unsigned)i, "nocapture");
        if (buffer_noalias(k, i)) add_param_attr(&r, r.fn, (unsigned)i, "noalias");
        if (!k->bufs[i].written) add_param_attr(&r, r.fn, (unsigned)i, "readonly");
    }
    for (int i = 0; i < k->n_dims; i++) {
        r.dimv[i] = LLVMGetParam(r.fn, (unsigned)(k->n_bufs + i));
        LLVMSetValueName2(r.dimv[i], k->dims[i].name, strlen(k->dims[i].name));
    }
    r.begin = LLVMGetParam(r.fn, (unsigned)(np - 2));
    r.end = LLVMGetParam(r.fn, (unsigned)(np - 1));
    LLVMSetValueName2(r.begin, "begin", 5);
    LLVMSetValueName2(r.end, "end", 3);

    r.b = LLVMCreateBuilderInContext(r.c);
    LLVMPositionBuilderAtEnd(r.b, LLVMAppendBasicBlockInContext(r.c, r.fn, "entry"));
    for (int i = 0; i < k->n_vars; i++) {
        const struct kir_var *v = &k->vars[i];
        LLVMTypeRef t = v->kind == KIR_VAR_LOOP ? r.t_i64 : ty(&r, v->type);
        if (v->kind == KIR_VAR_ACC) t = LLVMArrayType(t, (unsigned)v->lanes);
        r.slot[i] = LLVMBuildAlloca(r.b, t, v->name);
    }
    bool ok = stmt(&r, k->body);
    if (ok) LLVMBuildRetVoid(r.b);

    // The outer function: the itr_kernel_fn convention.
    if (ok) {
        LLVMTypeRef i8p = LLVMPointerType(r.t_i8, 0);
        LLVMTypeRef outer_pt[4] = { LLVMPointerType(i8p, 0), LLVMPointerType(r.t_i64, 0), r.t_i64, r.t_i64 };
        LLVMValueRef outer = LLVMAddFunction(m, symbol, LLVMFunctionType(r.t_void, outer_pt, 4, 0));
        add_fn_attr(&r, outer, "nounwind");
        LLVMPositionBuilderAtEnd(r.b, LLVMAppendBasicBlockInContext(r.c, outer, "entry"));
        LLVMValueRef *args = calloc((size_t)np, sizeof *args);
        if (!args) ok = fail(&r, "out of memory");
        for (int i = 0; ok && i < np; i++) {
            if (i < k->n_bufs) {
                LLVMValueRef idx = LLVMConstInt(r.t_i64, (unsigned)i, 0);
                LLVMValueRef p = LLVMBuildLoad2(r.b, i8p, LLVMBuildInBoundsGEP2(r.b, i8p, LLVMGetParam(outer, 0), &idx, 1, ""),
                                                k->bufs[i].name);
                args[i] = LLVMBuildBitCast(r.b, p, pt[i], "");
            } else if (i < k->n_bufs + k->n_dims) {
                LLVMValueRef idx = LLVMConstInt(r.t_i64, (unsigned)(i - k->n_bufs), 0);
                args[i] = LLVMBuildLoad2(r.b, r.t_i64, LLVMBuildInBoundsGEP2(r.b, r.t_i64, LLVMGetParam(outer, 1), &idx, 1, ""),
                                         k->dims[i - k->n_bufs].name);
            } else {
                args[i] = LLVMGetParam(outer, (unsigned)(i - k->n_bufs - k->n_dims + 2));
            }
        }
        if (ok) {
            LLVMBuildCall2(r.b, inner_t, r.fn, args, (unsigned)np, "");
            LLVMBuildRetVoid(r.b);
        }
        free(args);
    }
    LLVMDisposeBuilder(r.b);
    free(pt), free(r.bufp), free(r.dimv), free(r.slot), free(r.memo), free(r.memo_gen);
    return ok;
}

#else
// Built without LLVM: llvm_jit.c's stubs stand in; ISO C wants a declaration here.
typedef int itr_llvm_render_disabled;
#endif
