// The LLVM renderer and JIT (backends/llvm/): kernels built by hand with the
// kir builders, compiled, run, and compared with the same arithmetic done in
// C here (the reference interpreter's semantics: backends/ref/kernels_*.c).
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm/llvm_jit.h"
#include "testjit.h"
#include "ir/diag.h"
#include "ir/kir.h"
#include "tests/test.h"

static struct itr_llvm_jit *jit;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// NaN matches NaN, infinities match exactly, the rest within rtol * max(1, |want|).
static bool close_to(double got, double want, double rtol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= rtol * fmax(1.0, fabs(want));
}

// ---------------------------------------------------------------- (a), (f)

// out[r, c] = x[r, c] + y[c] over a parallel row loop and a vector column loop.
static struct kir_kernel *add_bcast_kernel(void) {
    struct kir_kernel *k = kir_kernel_new("k_add_bcast");
    int32_t x = kir_add_buffer(k, "x", ITR_F32, false), y = kir_add_buffer(k, "y", ITR_F32, false);
    int32_t out = kir_add_buffer(k, "out", ITR_F32, true);
    k->bufs[out].noalias = true;
    int32_t C = kir_dim_ref(k, kir_add_dim(k, "C", 1));
    int32_t r = kir_add_var(k, "r", KIR_VAR_LOOP, KIR_I64), c = kir_add_var(k, "c", KIR_VAR_LOOP, KIR_I64);
    int32_t fr = kir_for(k, r, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
    kir_append(k, k->body, fr);
    int32_t fc = kir_for(k, c, kir_iconst(k, 0), C, KIR_LOOP_VECTOR);
    kir_append(k, kir_for_body(k, fr), fc);
    int32_t i = kir_iadd(k, kir_imul(k, kir_var_ref(k, r), C), kir_var_ref(k, c));
    // y's index is c + r*0: the stride-0 broadcast a scheduler emits.
    int32_t yi = kir_iadd(k, kir_imul(k, kir_var_ref(k, r), kir_iconst(k, 0)), kir_var_ref(k, c));
    kir_append(k, kir_for_body(k, fc),
               kir_store(k, out, i, kir_binary(k, KIR_ADD, kir_load(k, x, i), kir_load(k, y, yi))));
    k->parallel_hi = kir_dim_ref(k, kir_add_dim(k, "R", 0));
    return k;
}

TEST(add_broadcast) {
    struct kir_kernel *k = add_bcast_kernel();
    itr_kernel_fn fn = NULL;
    CHECK(tu_jit_compile(jit, &k, 1, &fn));
    if (!fn) { kir_kernel_free(k); return; }
    // Two launches with different dims: the dims are launch arguments.
    int64_t shapes[2][2] = { { 3, 5 }, { 4, 37 } };
    for (int s = 0; s < 2; s++) {
        int64_t R = shapes[s][0], C = shapes[s][1];
        float *x = malloc((size_t)(R * C) * sizeof *x), *y = malloc((size_t)C * sizeof *y);
        float *out = malloc((size_t)(R * C) * sizeof *out);
        for (int64_t i = 0; i < R * C; i++) x[i] = (float)i * 0.25f - 3.0f;
        for (int64_t i = 0; i < C; i++) y[i] = (float)i * -1.5f;
        void *bufs[3] = { x, y, out };
        int64_t dims[2] = { C, R };   // dim order: C was added first
        fn(bufs, dims, 0, R);
        int bad = 0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) bad += out[r * C + c] != x[r * C + c] + y[c];
        CHECK_MSG(bad == 0, "%d of %" PRId64 " wrong for %" PRId64 "x%" PRId64, bad, R * C, R, C);
        free(x), free(y), free(out);
    }
    kir_kernel_free(k);
}

// out[i] = f64(off + i) with an i64 dim offset beyond 32 bits.
TEST(i64_dims) {
    struct kir_kernel *k = kir_kernel_new("k_iota");
    int32_t out = kir_add_buffer(k, "out", ITR_F64, true);
    int32_t off = kir_dim_ref(k, kir_add_dim(k, "off", 0)), n = kir_dim_ref(k, kir_add_dim(k, "n", 1));
    int32_t i = kir_add_var(k, "i", KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, i, kir_iconst(k, 0), n, KIR_LOOP_SERIAL);
    kir_append(k, k->body, f);
    kir_append(k, kir_for_body(k, f), kir_store(k, out, kir_var_ref(k, i),
                                                kir_cast(k, KIR_F64, kir_iadd(k, off, kir_var_ref(k, i)))));
    itr_kernel_fn fn = NULL;
    CHECK(tu_jit_compile(jit, &k, 1, &fn));
    if (fn) {
        double o[4];
        void *bufs[1] = { o };
        int64_t dims[2] = { INT64_C(5000000000), 4 };
        fn(bufs, dims, 0, 1);
        for (int j = 0; j < 4; j++) CHECK(o[j] == 5000000000.0 + j);
        dims[0] = -INT64_C(1099511627776);   // -2^40
        dims[1] = 2;
        o[2] = -1;
        fn(bufs, dims, 0, 1);
        CHECK(o[0] == -1099511627776.0 && o[1] == -1099511627775.0 && o[2] == -1);
    }
    kir_kernel_free(k);
}

// ---------------------------------------------------------------- (b) every op

enum ew_kind { EW_UNARY, EW_BINARY, EW_CAST, EW_SELECT };

// out[i] = op(a[i]) / op(a[i], b[i]) / cast(a[i]) / select(a[i] < b[i], a[i], b[i]) over a vector loop.
static struct kir_kernel *ew_kernel(enum ew_kind kind, enum kir_op op, enum itr_dtype din, enum itr_dtype dout) {
    char name[64];
    snprintf(name, sizeof name, "k_%s_%s_%s", kind == EW_CAST ? "cast" : kind == EW_SELECT ? "select" : kir_op_name(op),
             itr_dtype_name(din), itr_dtype_name(dout));
    struct kir_kernel *k = kir_kernel_new(name);
    int32_t a = kir_add_buffer(k, "a", din, false), b = kir_add_buffer(k, "b", din, false);
    int32_t out = kir_add_buffer(k, "out", dout, true);
    k->bufs[out].noalias = true;
    int32_t n = kir_dim_ref(k, kir_add_dim(k, "n", 0));
    int32_t i = kir_add_var(k, "i", KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, i, kir_iconst(k, 0), n, KIR_LOOP_VECTOR);
    kir_append(k, k->body, f);
    int32_t la = kir_load(k, a, kir_var_ref(k, i)), lb = kir_load(k, b, kir_var_ref(k, i)), v;
    switch (kind) {
    case EW_UNARY: v = kir_unary(k, op, la); break;
    case EW_BINARY: v = kir_binary(k, op, la, lb); break;
    case EW_CAST: v = kir_cast(k, kir_type_of_dtype(dout), la); break;
    default: v = kir_select(k, kir_binary(k, KIR_LT, la, lb), la, lb); break;
    }
    kir_append(k, kir_for_body(k, f), kir_store(k, out, kir_var_ref(k, i), v));
    return k;
}

#define NF 23
static const double fa[NF] = { 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.5, -7.25, 100.0, -100.0, 1e-3, 3.0,
                                -3.0, 7.0, 1e30, -1e30, INFINITY, -INFINITY, NAN, 2.0, 0.75, -0.5, 5.5 };
static const double fb[NF] = { 0.0, 0.0, -1.0, 2.0, 2.5, 2.0, -0.5, 3.0, 0.1, 7.0, 2.0, -3.0,
                               -2.0, 7.0, 2.0, 3.0, 1.0, INFINITY, 1.0, NAN, 0.25, -0.5, -2.0 };

static double sigmoid_ref(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double unary_f(enum kir_op op, double x) {
    switch (op) {
    case KIR_NEG: return -x;
    case KIR_ABS: return fabs(x);
    case KIR_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x;
    case KIR_EXP: return exp(x);
    case KIR_LOG: return log(x);
    case KIR_SQRT: return sqrt(x);
    case KIR_RSQRT: return 1.0 / sqrt(x);
    case KIR_RECIP: return 1.0 / x;
    case KIR_TANH: return tanh(x);
    case KIR_ERF: return erf(x);
    case KIR_SIN: return sin(x);
    case KIR_COS: return cos(x);
    case KIR_ACOS: return acos(x);
    case KIR_SIGMOID: return sigmoid_ref(x);
    case KIR_NOT: return x == 0;
    default: return NAN;
    }
}

static double binary_f(enum kir_op op, double a, double b) {
    switch (op) {
    case KIR_ADD: return a + b;
    case KIR_SUB: return a - b;
    case KIR_MUL: return a * b;
    case KIR_DIV: return a / b;
    case KIR_MOD: return fmod(a, b);
    case KIR_POW: return pow(a, b);
    case KIR_MAX: return a != a || b != b ? NAN : a >= b ? a : b;
    case KIR_MIN: return a != a || b != b ? NAN : a <= b ? a : b;
    case KIR_EQ: return a == b;
    case KIR_NE: return a != b;
    case KIR_LT: return a < b;
    case KIR_LE: return a <= b;
    case KIR_GT: return a > b;
    case KIR_GE: return a >= b;
    case KIR_AND: return a != 0 && b != 0;
    case KIR_OR: return a != 0 || b != 0;
    default: return NAN;
    }
}

static bool is_cmp(enum kir_op op) { return op >= KIR_EQ && op <= KIR_OR; }

static double ld(const void *p, enum itr_dtype dt, int i) {
    switch (dt) {
    case ITR_F32: return ((const float *)p)[i];
    case ITR_F64: return ((const double *)p)[i];
    case ITR_I32: return ((const int32_t *)p)[i];
    case ITR_I64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

struct ew_case { enum ew_kind kind; enum kir_op op; enum itr_dtype din, dout; };

// Float ops on f32 and f64: results within a few ulps of the double-precision
// formula (the libm calls may round differently), exact for the exact ones.
TEST(float_ops) {
    struct ew_case cs[64];
    int n = 0;
    enum itr_dtype fts[2] = { ITR_F32, ITR_F64 };
    for (int t = 0; t < 2; t++) {
        for (int op = KIR_NEG; op <= KIR_SIGMOID; op++) cs[n++] = (struct ew_case){ EW_UNARY, op, fts[t], fts[t] };
        cs[n++] = (struct ew_case){ EW_UNARY, KIR_ACOS, fts[t], fts[t] };
        for (int op = KIR_ADD; op <= KIR_OR; op++)
            cs[n++] = (struct ew_case){ EW_BINARY, op, fts[t], is_cmp(op) ? ITR_BOOL : fts[t] };
        cs[n++] = (struct ew_case){ EW_SELECT, KIR_LT, fts[t], fts[t] };
    }
    struct kir_kernel *ks[64];
    itr_kernel_fn fns[64] = { 0 };
    for (int i = 0; i < n; i++) ks[i] = ew_kernel(cs[i].kind, cs[i].op, cs[i].din, cs[i].dout);
    double t0 = now_s();
    CHECK(tu_jit_compile(jit, ks, n, fns));
    printf("float_ops: %d kernels compiled in %.3f s\n", n, now_s() - t0);
    for (int c = 0; c < n && fns[c]; c++) {
        float a32[NF], b32[NF], o32[NF];
        double a64[NF], b64[NF], o64[NF];
        uint8_t ob[NF];
        for (int i = 0; i < NF; i++) a32[i] = (float)fa[i], b32[i] = (float)fb[i], a64[i] = fa[i], b64[i] = fb[i];
        bool f32 = cs[c].din == ITR_F32;
        void *out = cs[c].dout == ITR_BOOL ? (void *)ob : f32 ? (void *)o32 : (void *)o64;
        void *bufs[3] = { f32 ? (void *)a32 : (void *)a64, f32 ? (void *)b32 : (void *)b64, out };
        int64_t dims[1] = { NF };
        fns[c](bufs, dims, 0, 1);
        for (int i = 0; i < NF; i++) {
            double a = f32 ? a32[i] : a64[i], b = f32 ? b32[i] : b64[i];
            double want = cs[c].kind == EW_UNARY ? unary_f(cs[c].op, a)
                        : cs[c].kind == EW_SELECT ? (a < b ? a : b) : binary_f(cs[c].op, a, b);
            if (f32 && cs[c].dout == ITR_F32) want = (float)want;
            double got = ld(out, cs[c].dout, i);
            // libm's f32 and f64 functions are correctly rounded to within an ulp or two.
            bool transcendental = cs[c].kind == EW_UNARY && cs[c].op >= KIR_EXP && cs[c].op != KIR_RECIP;
            double tol = !transcendental && cs[c].op != KIR_POW ? 0 : f32 ? 4e-7 : 1e-15;
            CHECK_MSG(close_to(got, want, tol), "%s: op(%g, %g) = %.17g, expected %.17g", ks[c]->name, a, b, got, want);
        }
    }
    // Ties keep the first operand, like ref: max(-0, +0) = -0, min(+0, -0) = +0.
    for (int c = 0; c < n && fns[c]; c++) {
        if (cs[c].kind != EW_BINARY || (cs[c].op != KIR_MAX && cs[c].op != KIR_MIN) || cs[c].din != ITR_F64) continue;
        double a[2] = { -0.0, 0.0 }, b[2] = { 0.0, -0.0 }, o[2];
        void *bufs[3] = { a, b, o };
        int64_t dims[1] = { 2 };
        fns[c](bufs, dims, 0, 1);
        CHECK(signbit(o[0]) && !signbit(o[1]));
    }
    for (int i = 0; i < n; i++) kir_kernel_free(ks[i]);
}

static int64_t wrap(int64_t v, enum itr_dtype dt) { return dt == ITR_I32 ? (int32_t)(uint32_t)(uint64_t)v : v; }

static int64_t floordiv(int64_t a, int64_t b) {
    if (b == -1) return (int64_t)(0 - (uint64_t)a);
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

static int64_t floormod(int64_t a, int64_t b) {
    if (b == -1) return 0;
    int64_t r = a % b;
    return r != 0 && ((r < 0) != (b < 0)) ? r + b : r;
}

static int64_t int_op(enum kir_op op, int64_t a, int64_t b, enum itr_dtype dt) {
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    switch (op) {
    case KIR_NEG: return wrap((int64_t)(0 - ua), dt);
    case KIR_ABS: return wrap(a < 0 ? (int64_t)(0 - ua) : a, dt);
    case KIR_SIGN: return (a > 0) - (a < 0);
    case KIR_NOT: return !a;
    case KIR_ADD: return wrap((int64_t)(ua + ub), dt);
    case KIR_SUB: return wrap((int64_t)(ua - ub), dt);
    case KIR_MUL: return wrap((int64_t)(ua * ub), dt);
    case KIR_DIV: return wrap(floordiv(a, b), dt);
    case KIR_MOD: return wrap(floormod(a, b), dt);
    case KIR_MAX: return a >= b ? a : b;
    case KIR_MIN: return a <= b ? a : b;
    case KIR_EQ: return a == b;
    case KIR_NE: return a != b;
    case KIR_LT: return a < b;
    case KIR_LE: return a <= b;
    case KIR_GT: return a > b;
    case KIR_GE: return a >= b;
    case KIR_AND: return a && b;
    case KIR_OR: return a || b;
    default: return 0;
    }
}

// Integer ops on i64 and i32, exactly: wrap-around, floor div/mod with
// negative operands and INT_MIN / -1, comparisons into bool buffers.
TEST(int_ops) {
    enum { NI = 14 };
    static const int64_t ia[NI] = { 7, -7, 7, -7, 0, 5, -1, 3, INT64_MIN, INT64_MAX, 100, -100, 6, -6 };
    static const int64_t ib[NI] = { 2, 2, -2, -2, 3, 5, 1, -1, -1, 3, 7, 7, -3, 3 };
    struct ew_case cs[64];
    int n = 0;
    enum itr_dtype its[2] = { ITR_I64, ITR_I32 };
    for (int t = 0; t < 2; t++) {
        enum kir_op un[4] = { KIR_NEG, KIR_ABS, KIR_SIGN, KIR_NOT };
        for (int u = 0; u < 4; u++) cs[n++] = (struct ew_case){ EW_UNARY, un[u], its[t], its[t] };
        for (int op = KIR_ADD; op <= KIR_OR; op++)
            if (op != KIR_POW) cs[n++] = (struct ew_case){ EW_BINARY, op, its[t], is_cmp(op) ? ITR_BOOL : its[t] };
    }
    struct kir_kernel *ks[64];
    itr_kernel_fn fns[64] = { 0 };
    for (int i = 0; i < n; i++) ks[i] = ew_kernel(cs[i].kind, cs[i].op, cs[i].din, cs[i].dout);
    CHECK(tu_jit_compile(jit, ks, n, fns));
    for (int c = 0; c < n && fns[c]; c++) {
        enum itr_dtype dt = cs[c].din;
        int64_t a64[NI], b64[NI], o64[NI];
        int32_t a32[NI], b32[NI], o32[NI];
        uint8_t ob[NI];
        for (int i = 0; i < NI; i++) {
            a64[i] = ia[i], b64[i] = ib[i];
            a32[i] = (int32_t)wrap(ia[i], ITR_I32), b32[i] = (int32_t)wrap(ib[i], ITR_I32);
        }
        if (dt == ITR_I32) a32[8] = INT32_MIN;   // INT32_MIN / -1 and its wrap
        bool i32 = dt == ITR_I32;
        void *out = cs[c].dout == ITR_BOOL ? (void *)ob : i32 ? (void *)o32 : (void *)o64;
        void *bufs[3] = { i32 ? (void *)a32 : (void *)a64, i32 ? (void *)b32 : (void *)b64, out };
        int64_t dims[1] = { NI };
        fns[c](bufs, dims, 0, 1);
        for (int i = 0; i < NI; i++) {
            int64_t a = i32 ? a32[i] : a64[i], b = i32 ? b32[i] : b64[i];
            int64_t want = int_op(cs[c].op, a, b, dt);
            int64_t got = cs[c].dout == ITR_BOOL ? ob[i] : i32 ? o32[i] : o64[i];
            CHECK_MSG(got == want, "%s: op(%" PRId64 ", %" PRId64 ") = %" PRId64 ", expected %" PRId64, ks[c]->name, a, b,
                      got, want);
        }
    }
    for (int i = 0; i < n; i++) kir_kernel_free(ks[i]);
}

// Casts: float -> int truncates toward zero and saturates (NaN -> 0, as
// ref_f2i), -> bool is x != 0, bool -> number 0/1, ints wrap or extend.
TEST(casts) {
    struct ew_case cs[] = {
        { EW_CAST, 0, ITR_F32, ITR_I32 }, { EW_CAST, 0, ITR_F64, ITR_I64 }, { EW_CAST, 0, ITR_F32, ITR_I64 },
        { EW_CAST, 0, ITR_I64, ITR_F32 }, { EW_CAST, 0, ITR_I64, ITR_I32 }, { EW_CAST, 0, ITR_I32, ITR_I64 },
        { EW_CAST, 0, ITR_F32, ITR_BOOL }, { EW_CAST, 0, ITR_BOOL, ITR_F32 }, { EW_CAST, 0, ITR_BOOL, ITR_I64 },
        { EW_CAST, 0, ITR_F32, ITR_F64 }, { EW_CAST, 0, ITR_F64, ITR_F32 }, { EW_CAST, 0, ITR_I32, ITR_BOOL },
        { EW_CAST, 0, ITR_I32, ITR_F64 },
    };
    enum { NC = sizeof cs / sizeof *cs };
    struct kir_kernel *ks[NC];
    itr_kernel_fn fns[NC] = { 0 };
    for (int i = 0; i < NC; i++) ks[i] = ew_kernel(cs[i].kind, 0, cs[i].din, cs[i].dout);
    CHECK(tu_jit_compile(jit, ks, NC, fns));
    enum { N = 9 };
    static const double fv[N] = { -2.7, 2.7, 0.0, NAN, 1e10, -1e10, 1e30, -0.5, 123456789.0 };
    static const int64_t iv[N] = { -5, 0, 1, INT64_C(4294967297), INT64_MIN, INT64_MAX, -1, 2, 16777217 };
    static const uint8_t bv[N] = { 0, 1, 1, 0, 1, 0, 0, 1, 1 };
    for (int c = 0; c < NC && fns[c]; c++) {
        union { float f32[N]; double f64[N]; int32_t i32[N]; int64_t i64[N]; uint8_t b[N]; } in, out, dummy;
        enum itr_dtype di = cs[c].din, dout = cs[c].dout;
        for (int i = 0; i < N; i++) switch (di) {
            case ITR_F32: in.f32[i] = (float)fv[i]; break;
            case ITR_F64: in.f64[i] = fv[i]; break;
            case ITR_I32: in.i32[i] = (int32_t)iv[i]; break;
            case ITR_I64: in.i64[i] = iv[i]; break;
            default: in.b[i] = bv[i]; break;
            }
        void *bufs[3] = { &in, &dummy, &out };
        int64_t dims[1] = { N };
        fns[c](bufs, dims, 0, 1);
        for (int i = 0; i < N; i++) {
            double x = ld(&in, di, i);
            int64_t xi = di == ITR_I64 ? in.i64[i] : di == ITR_I32 ? in.i32[i] : 0;
            bool ok;
            if (dout == ITR_BOOL) ok = out.b[i] == (x != 0);
            else if (dout == ITR_I32 || dout == ITR_I64) {
                int64_t want;
                if (di == ITR_F32 || di == ITR_F64) {
                    double lo = dout == ITR_I32 ? -2147483648.0 : -9223372036854775808.0;
                    double hi = dout == ITR_I32 ? 2147483647.0 : 9223372036854775807.0;
                    want = x != x ? 0 : x <= lo ? (dout == ITR_I32 ? INT32_MIN : INT64_MIN)
                         : x >= hi ? (dout == ITR_I32 ? INT32_MAX : INT64_MAX) : (int64_t)x;
                } else {
                    want = di == ITR_BOOL ? in.b[i] : wrap(xi, dout);
                }
                int64_t got = dout == ITR_I32 ? out.i32[i] : out.i64[i];
                ok = got == want;
            } else {
                double want = di == ITR_I64 ? (double)xi : x;   // i64 -> f32 rounds once, directly
                if (dout == ITR_F32) want = di == ITR_I64 ? (double)(float)xi : (double)(float)want;
                double got = ld(&out, dout, i);
                ok = isnan(want) ? isnan(got) : got == want;
            }
            CHECK_MSG(ok, "%s: element %d (input %.17g) wrong", ks[c]->name, i, x);
        }
    }
    for (int i = 0; i < NC; i++) kir_kernel_free(ks[i]);
}

// ---------------------------------------------------------------- (c), (d) reductions

// out[r] = fold over c of x[r, c] with an 8-lane accumulator: the full
// 8-blocks go lane by lane through an unrolled loop, the tail into lane 0.
static struct kir_kernel *row_reduce_kernel(const char *name, enum kir_op combine, double init) {
    struct kir_kernel *k = kir_kernel_new(name);
    int32_t x = kir_add_buffer(k, "x", ITR_F32, false), out = kir_add_buffer(k, "out", ITR_F32, true);
    k->bufs[out].noalias = true;
    int32_t C = kir_dim_ref(k, kir_add_dim(k, "C", 1));
    int32_t r = kir_add_var(k, "r", KIR_VAR_LOOP, KIR_I64), i = kir_add_var(k, "i", KIR_VAR_LOOP, KIR_I64);
    int32_t l = kir_add_var(k, "l", KIR_VAR_LOOP, KIR_I64), t = kir_add_var(k, "t", KIR_VAR_LOOP, KIR_I64);
    int32_t acc = kir_add_acc(k, "acc", KIR_F32, 8, combine);
    int32_t fr = kir_for(k, r, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
    kir_append(k, k->body, fr);
    int32_t body = kir_for_body(k, fr);
    int32_t row = kir_imul(k, kir_var_ref(k, r), C);
    kir_append(k, body, kir_acc_init(k, acc, kir_const_float(k, KIR_F32, init)));
    int32_t nblk = kir_binary(k, KIR_DIV, C, kir_iconst(k, 8));
    int32_t fi = kir_for(k, i, kir_iconst(k, 0), nblk, KIR_LOOP_SERIAL);
    kir_append(k, body, fi);
    int32_t fl = kir_for(k, l, kir_iconst(k, 0), kir_iconst(k, 8), KIR_LOOP_UNROLL);
    kir_append(k, kir_for_body(k, fi), fl);
    int32_t idx = kir_iadd(k, row, kir_iadd(k, kir_imul(k, kir_var_ref(k, i), kir_iconst(k, 8)), kir_var_ref(k, l)));
    kir_append(k, kir_for_body(k, fl), kir_acc_update(k, acc, kir_var_ref(k, l), kir_load(k, x, idx)));
    int32_t ft = kir_for(k, t, kir_imul(k, nblk, kir_iconst(k, 8)), C, KIR_LOOP_SERIAL);
    kir_append(k, body, ft);
    kir_append(k, kir_for_body(k, ft),
               kir_acc_update(k, acc, kir_iconst(k, 0), kir_load(k, x, kir_iadd(k, row, kir_var_ref(k, t)))));
    kir_append(k, body, kir_store(k, out, kir_var_ref(k, r), kir_acc_ref(k, acc, -1)));
    k->parallel_hi = kir_dim_ref(k, kir_add_dim(k, "R", 0));
    return k;
}

TEST(row_sum_and_max) {
    struct kir_kernel *ks[2] = { row_reduce_kernel("k_row_sum", KIR_ADD, 0.0),
                                 row_reduce_kernel("k_row_max", KIR_MAX, -INFINITY) };
    itr_kernel_fn fns[2] = { 0 };
    CHECK(tu_jit_compile(jit, ks, 2, fns));
    if (fns[0] && fns[1]) {
        enum { R = 6, C = 1003 };
        float *x = malloc(sizeof(float) * R * C), sum[R], mx[R];
        uint64_t s = 12345;
        for (int i = 0; i < R * C; i++) {
            s = s * 6364136223846793005u + 1442695040888963407u;
            x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 0.5);
        }
        x[2 * C + 517] = NAN;          // row 2: NaN in a block lane
        x[4 * C + C - 1] = NAN;        // row 4: NaN in the tail
        x[5 * C + 3] = 7.0f;           // row 5: a clear maximum in lane 3
        void *b_sum[2] = { x, sum }, *b_max[2] = { x, mx };
        int64_t dims[2] = { C, R };
        fns[0](b_sum, dims, 0, R);
        fns[1](b_max, dims, 0, R);
        for (int r = 0; r < R; r++) {
            double ref = 0, m = -INFINITY;
            for (int c = 0; c < C; c++) {
                float v = x[r * C + c];
                ref += v;
                if (v > m || v != v) m = m != m ? m : v;
            }
            CHECK_MSG(close_to(sum[r], ref, 1e-5), "row %d: sum %.9g, expected %.9g", r, sum[r], ref);
            CHECK_MSG(isnan(m) ? isnan(mx[r]) : mx[r] == m, "row %d: max %.9g, expected %.9g", r, mx[r], m);
        }
        CHECK(isnan(mx[2]) && isnan(mx[4]) && mx[5] == 7.0f);

        // (d) the parallel loop split over two launches gives the same bits.
        float sum2[R];
        void *b2[2] = { x, sum2 };
        fns[0](b2, dims, 0, 2);
        fns[0](b2, dims, 2, R);
        CHECK(memcmp(sum, sum2, sizeof sum) == 0);
        free(x);
    }
    kir_kernel_free(ks[0]);
    kir_kernel_free(ks[1]);
}

// ---------------------------------------------------------------- (e) errors

TEST(invalid_kernels_are_clean_errors) {
    // A store of f64 to an f32 buffer: kir_verify rejects it.
    struct kir_kernel *k = kir_kernel_new("k_bad_store");
    int32_t out = kir_add_buffer(k, "out", ITR_F32, true);
    kir_append(k, k->body, kir_store(k, out, kir_iconst(k, 0), kir_const_float(k, KIR_F64, 1.0)));
    struct itr_diags d;
    itr_diags_init(&d);
    itr_kernel_fn fn = NULL;
    CHECK(!itr_llvm_compile(jit, &k, 1, &fn, &d));
    char *msg = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(msg, "internal error: kernel 'k_bad_store'");
    CHECK_STR_CONTAINS(msg, "store of f64 to f32 buffer");
    CHECK_STR_CONTAINS(msg, "kernel k_bad_store(");   // the printed kernel
    free(msg);
    itr_diags_free(&d);
    kir_kernel_free(k);

    // exp of an integer passes kir_verify but has no rendering.
    k = kir_kernel_new("k_exp_int");
    int32_t a = kir_add_buffer(k, "a", ITR_I64, false);
    out = kir_add_buffer(k, "out", ITR_I64, true);
    kir_append(k, k->body, kir_store(k, out, kir_iconst(k, 0), kir_unary(k, KIR_EXP, kir_load(k, a, kir_iconst(k, 0)))));
    itr_diags_init(&d);
    CHECK(!itr_llvm_compile(jit, &k, 1, &fn, &d));
    msg = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(msg, "kernel 'k_exp_int' cannot be rendered to LLVM IR: 'exp' of i64");
    free(msg);
    itr_diags_free(&d);
    kir_kernel_free(k);

    // The JIT is still usable afterwards.
    k = add_bcast_kernel();
    CHECK(tu_jit_compile(jit, &k, 1, &fn));
    kir_kernel_free(k);
}

// The rendered IR carries what the optimiser needs: noalias, always-inline,
// the vectorisation hint.
TEST(rendered_ir) {
    struct kir_kernel *k = add_bcast_kernel();
    struct itr_diags d;
    itr_diags_init(&d);
    char *ir = itr_llvm_render_ir(&k, 1, &d);
    CHECK(ir != NULL);
    CHECK_STR_CONTAINS(ir, "noalias");
    CHECK_STR_CONTAINS(ir, "alwaysinline");
    CHECK_STR_CONTAINS(ir, "llvm.loop.vectorize.enable");
    CHECK_STR_CONTAINS(ir, "define internal void @k_add_bcast.");
    free(ir);
    itr_diags_free(&d);
    kir_kernel_free(k);
}

// ---------------------------------------------------------------- the object cache

TEST(object_cache) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/llvm-cache-%ld", ITR_BINARY_DIR, (long)getpid());
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("ITRC_NO_CACHE");
    struct kir_kernel *k = row_reduce_kernel("k_row_sum_cached", KIR_ADD, 0.0);
    float x[2 * 20], o1[2], o2[2];
    for (int i = 0; i < 40; i++) x[i] = (float)i * 0.5f;
    int64_t dims[2] = { 20, 2 };
    double t_miss = 0, t_hit = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_llvm_jit *j = itr_llvm_jit_new(&d);
        CHECK(j != NULL);
        itr_diags_free(&d);
        if (!j) break;
        itr_kernel_fn fn = NULL;
        double t0 = now_s();
        CHECK(tu_jit_compile(j, &k, 1, &fn));
        if (pass) t_hit = now_s() - t0;
        else t_miss = now_s() - t0;
        CHECK(itr_llvm_last_was_cache_hit(j) == (pass == 1));
        if (fn) {
            void *bufs[2] = { x, pass ? o2 : o1 };
            fn(bufs, dims, 0, 2);
        }
        itr_llvm_jit_free(j);
    }
    CHECK(memcmp(o1, o2, sizeof o1) == 0 && o1[0] == 95.0f);
    printf("object_cache: miss %.4f s, hit %.4f s\n", t_miss, t_hit);

    // ITRC_NO_CACHE=1: no hit even though the object is there.
    setenv("ITRC_NO_CACHE", "1", 1);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_jit *j = itr_llvm_jit_new(&d);
    itr_kernel_fn fn = NULL;
    CHECK(j && tu_jit_compile(j, &k, 1, &fn) && !itr_llvm_last_was_cache_hit(j));
    itr_llvm_jit_free(j);
    itr_diags_free(&d);
    unsetenv("ITRC_NO_CACHE");
    kir_kernel_free(k);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
}

// A large compile is spread over threads, each distinct body cached as its
// own object: a second JIT finds every one, and the code is the same.
TEST(object_cache_in_parts) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/llvm-cache-parts-%ld", ITR_BINARY_DIR, (long)getpid());
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("ITRC_NO_CACHE");
    struct kir_kernel *ks[64];
    int n = 0;
    for (int op = KIR_ADD; op <= KIR_OR && n < 64; op++)
        for (int t = 0; t < 2 && n < 64; t++) {
            enum itr_dtype dt = t ? ITR_F64 : ITR_F32;
            ks[n++] = ew_kernel(EW_BINARY, op, dt, is_cmp(op) ? ITR_BOOL : dt);
        }
    for (int op = KIR_NEG; op <= KIR_SIGMOID && n < 64; op++)
        for (int t = 0; t < 2 && n < 64; t++) {
            enum itr_dtype dt = t ? ITR_F64 : ITR_F32;
            ks[n++] = ew_kernel(EW_UNARY, op, dt, dt);
        }
    CHECK(n >= 48);   // at least two parts of 24
    double out[2][NF];
    for (int pass = 0; pass < 2; pass++) {
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_llvm_jit *j = itr_llvm_jit_new(&d);
        itr_diags_free(&d);
        CHECK(j != NULL);
        if (!j) break;
        itr_kernel_fn fns[64] = { 0 };
        CHECK(tu_jit_compile(j, ks, n, fns));
        CHECK_MSG(itr_llvm_last_was_cache_hit(j) == (pass == 1), "pass %d: cache hit %d", pass,
                  itr_llvm_last_was_cache_hit(j));
        // kernel 1: f64 add
        double a[NF], b[NF];
        for (int i = 0; i < NF; i++) a[i] = fa[i], b[i] = fb[i];
        void *bufs[3] = { a, b, out[pass] };
        int64_t dims[1] = { NF };
        if (fns[1]) fns[1](bufs, dims, 0, 1);
        for (int i = 0; i < NF; i++) CHECK(close_to(out[pass][i], binary_f(KIR_ADD, fa[i], fb[i]), 0));
        itr_llvm_jit_free(j);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
    // One object file per distinct body.
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test $(find '%s/itrc' -type f | wc -l) -ge 2", dir);
    CHECK_MSG(system(cmd) == 0, "fewer than two cached objects in %s/itrc", dir);
    for (int i = 0; i < n; i++) kir_kernel_free(ks[i]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    setenv("ITRC_NO_CACHE", "1", 1);
}

int main(void) {
    int rc = tu_jit_main_start(&jit);
    if (rc >= 0) return rc;
    RUN(add_broadcast);
    RUN(i64_dims);
    RUN(float_ops);
    RUN(int_ops);
    RUN(casts);
    RUN(row_sum_and_max);
    RUN(invalid_kernels_are_clean_errors);
    RUN(rendered_ir);
    RUN(object_cache);
    RUN(object_cache_in_parts);
    itr_llvm_jit_free(jit);
    return test_summary();
}
