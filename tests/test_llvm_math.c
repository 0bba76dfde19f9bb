// The LLVM renderer's f32 exp, log, tanh, sigmoid and erf (backends/llvm/render.c,
// "f32 exp, log, tanh, erf"): inline polynomials instead of libm calls. Checked
// here: accuracy against double-precision libm rounded to f32 over a sweep
// of the whole f32 range, the special values, that an element's bits do not
// depend on whether it ran in a vector lane or in the scalar remainder, and
// that the optimised code is vectorised with no libm call left.
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/llvm/llvm_jit.h"
#include "testjit.h"
#include "ir/diag.h"
#include "ir/kir.h"
#include "tests/test.h"

enum { NFN = 5 };
static const enum kir_op fn_op[NFN] = { KIR_EXP, KIR_LOG, KIR_TANH, KIR_SIGMOID, KIR_ERF };
// The documented bounds (docs/kernels.md): the measured maximum over the sweep.
static const int64_t fn_max_ulp[NFN] = { 1, 1, 1, 2, 2 };

static struct itr_llvm_jit *jit;
static itr_kernel_fn fns[NFN];
static struct kir_kernel *kernels[NFN];

// out[i] = op(a[i]) for i in [0, n), f32, over a vector loop.
static struct kir_kernel *unary_kernel(enum kir_op op) {
    char name[64];
    snprintf(name, sizeof name, "k_math_%s_f32", kir_op_name(op));
    struct kir_kernel *k = kir_kernel_new(name);
    int32_t a = kir_add_buffer(k, "a", ITR_F32, false), out = kir_add_buffer(k, "out", ITR_F32, true);
    k->bufs[out].noalias = true;
    int32_t n = kir_dim_ref(k, kir_add_dim(k, "n", 0));
    int32_t i = kir_add_var(k, "i", KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, i, kir_iconst(k, 0), n, KIR_LOOP_VECTOR);
    kir_append(k, k->body, f);
    kir_append(k, kir_for_body(k, f), kir_store(k, out, kir_var_ref(k, i), kir_unary(k, op, kir_load(k, a, kir_var_ref(k, i)))));
    return k;
}

static void run(int f, const float *a, float *out, int64_t n) {
    void *bufs[2] = { (void *)a, out };
    fns[f](bufs, &n, 0, 1);
}

static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// ref's sigmoid (backends/ref): two branches, one exp that never overflows.
static double sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static float want_f(int f, float x) {
    double d = x;
    switch (fn_op[f]) {
    case KIR_EXP: return (float)exp(d);
    case KIR_LOG: return (float)log(d);
    case KIR_TANH: return (float)tanh(d);
    case KIR_ERF: return (float)erf(d);
    default: return (float)sigmoid_d(d);
    }
}

// Distance in representable f32 values (a monotone map of the bits), so an
// ulp below FLT_MIN is a subnormal step and -0 and +0 are one apart. NaN
// against NaN is 0, NaN against a number "infinitely" far.
static int64_t ulp_dist(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int64_t ka = f_bits(a) & 0x80000000u ? -(int64_t)(f_bits(a) & 0x7fffffffu) - 1 : (int64_t)f_bits(a);
    int64_t kb = f_bits(b) & 0x80000000u ? -(int64_t)(f_bits(b) & 0x7fffffffu) - 1 : (int64_t)f_bits(b);
    return ka > kb ? ka - kb : kb - ka;
}

// Every 97th bit pattern (both signs, zeros, subnormals, normals, infinities
// and NaNs) through each kernel; the worst ulp distance must stay within the
// documented bound (about 10 s of CPU per run, 20 s under the sanitizers).
TEST(ulp_sweep) {
    const uint64_t step = 97;
    enum { CHUNK = 1 << 16 };
    float *a = malloc(CHUNK * sizeof *a), *o = malloc(CHUNK * sizeof *o);
    CHECK(a && o);
    if (!a || !o) { free(a), free(o); return; }
    for (int f = 0; f < NFN; f++) {
        if (!fns[f]) continue;
        int64_t worst = 0, count = 0;
        float worst_x = 0, worst_got = 0, worst_want = 0;
        uint64_t u = 0;
        while (u <= UINT32_MAX) {
            int64_t n = 0;
            for (; n < CHUNK && u <= UINT32_MAX; u += step) a[n++] = bits_f((uint32_t)u);
            run(f, a, o, n);
            for (int64_t i = 0; i < n; i++) {
                float w = want_f(f, a[i]);
                int64_t d = ulp_dist(o[i], w);
                if (d > worst) worst = d, worst_x = a[i], worst_got = o[i], worst_want = w;
            }
            count += n;
        }
        printf("%s: max %" PRId64 " ulp over %" PRId64 " inputs (x = %a: got %a, libm %a)\n", kir_op_name(fn_op[f]), worst,
               count, (double)worst_x, (double)worst_got, (double)worst_want);
        CHECK_MSG(worst <= fn_max_ulp[f], "%s: %" PRId64 " ulp at x = %a (got %a, want %a), bound %" PRId64,
                  kir_op_name(fn_op[f]), worst, (double)worst_x, (double)worst_got, (double)worst_want, fn_max_ulp[f]);
    }
    free(a), free(o);
}

// Dense sweeps where the functions change formula or lose accuracy: around
// 0 and 1, tanh's switch at 0.625, erf's at 1, the overflow and subnormal edges of exp.
TEST(ulp_dense_ranges) {
    static const float lo_hi[][2] = { { -2.0f, 2.0f }, { 0.5f, 2.0f }, { 0.6f, 0.65f }, { 0.99f, 1.01f }, { 80.0f, 89.0f },
                                      { -104.0f, -80.0f }, { 1e-6f, 1e-4f }, { -20.0f, 20.0f } };
    enum { N = 20000, NR = sizeof lo_hi / sizeof *lo_hi };
    static float a[N], o[N];
    for (int f = 0; f < NFN; f++) {
        if (!fns[f]) continue;
        int64_t worst = 0;
        float wx = 0;
        for (int rg = 0; rg < NR; rg++) {
            for (int i = 0; i < N; i++) a[i] = lo_hi[rg][0] + (lo_hi[rg][1] - lo_hi[rg][0]) * (float)i / (float)(N - 1);
            run(f, a, o, N);
            for (int i = 0; i < N; i++) {
                int64_t d = ulp_dist(o[i], want_f(f, a[i]));
                if (d > worst) worst = d, wx = a[i];
            }
        }
        CHECK_MSG(worst <= fn_max_ulp[f], "%s: %" PRId64 " ulp at x = %a", kir_op_name(fn_op[f]), worst, (double)wx);
    }
}

struct special { float x, want; bool exact; };

// Special values: exactly these bits (NaN: any NaN), or within the bound where exact is false.
static void check_specials(int f, const struct special *s, int n) {
    float a[64], o[64];
    for (int i = 0; i < n; i++) a[i] = s[i].x;
    run(f, a, o, n);
    for (int i = 0; i < n; i++) {
        bool ok = isnan(s[i].want) ? isnan(o[i])
                : s[i].exact ? f_bits(o[i]) == f_bits(s[i].want) : ulp_dist(o[i], s[i].want) <= fn_max_ulp[f];
        CHECK_MSG(ok, "%s(%a) = %a, expected %a%s", kir_op_name(fn_op[f]), (double)s[i].x, (double)o[i], (double)s[i].want,
                  s[i].exact ? " exactly" : "");
    }
}

TEST(special_values) {
    const float inf = INFINITY, nan = NAN, den = bits_f(1), big_den = bits_f(0x007fffff);
    const struct special ex[] = {
        { nan, nan, true }, { -nan, nan, true }, { inf, inf, true }, { -inf, 0.0f, true }, { 0.0f, 1.0f, true },
        { -0.0f, 1.0f, true }, { den, 1.0f, true }, { -den, 1.0f, true },
        { 88.72283f, want_f(0, 88.72283f), false },   // the largest x with a finite result
        { 88.7229f, inf, true }, { 89.0f, inf, true }, { 1e30f, inf, true }, { FLT_MAX, inf, true },
        { -87.33654f, want_f(0, -87.33654f), false },   // about FLT_MIN
        { -100.0f, want_f(0, -100.0f), false },          // a subnormal result
        { -103.27893f, bits_f(1), true },                // rounds to the smallest subnormal
        { -104.0f, 0.0f, true }, { -1e30f, 0.0f, true }, { -FLT_MAX, 0.0f, true },
        { 1.0f, 2.7182817f, true }, { -1.0f, want_f(0, -1.0f), false }, { 10.0f, want_f(0, 10.0f), false },
    };
    const struct special lg[] = {
        { nan, nan, true }, { 0.0f, -inf, true }, { -0.0f, -inf, true }, { -1.0f, nan, true }, { -den, nan, true },
        { -inf, nan, true }, { inf, inf, true }, { 1.0f, 0.0f, true }, { den, want_f(1, den), false },
        { big_den, want_f(1, big_den), false }, { FLT_MIN, want_f(1, FLT_MIN), false },
        { FLT_MAX, want_f(1, FLT_MAX), false }, { 2.7182817f, want_f(1, 2.7182817f), false },
        { 0.70710677f, want_f(1, 0.70710677f), false }, { 1.0000001f, want_f(1, 1.0000001f), false },
        { 0.99999994f, want_f(1, 0.99999994f), false },
    };
    const struct special th[] = {
        { nan, nan, true }, { inf, 1.0f, true }, { -inf, -1.0f, true }, { 0.0f, 0.0f, true }, { -0.0f, -0.0f, true },
        { den, den, true }, { -den, -den, true }, { 1e-20f, 1e-20f, true }, { 10.0f, 1.0f, true },
        { -10.0f, -1.0f, true }, { 50.0f, 1.0f, true }, { -1e30f, -1.0f, true }, { FLT_MAX, 1.0f, true },
        { 0.625f, want_f(2, 0.625f), false }, { -0.62499994f, want_f(2, -0.62499994f), false },
        { 0.5f, want_f(2, 0.5f), false }, { -3.0f, want_f(2, -3.0f), false },
    };
    const struct special sg[] = {
        { nan, nan, true }, { inf, 1.0f, true }, { -inf, 0.0f, true }, { 0.0f, 0.5f, true }, { -0.0f, 0.5f, true },
        { 100.0f, 1.0f, true }, { 1e30f, 1.0f, true }, { -200.0f, 0.0f, true }, { -FLT_MAX, 0.0f, true },
        { -100.0f, want_f(3, -100.0f), false },   // subnormal, no overflow of exp(100)
        { -90.0f, want_f(3, -90.0f), false }, { 2.0f, want_f(3, 2.0f), false }, { -2.0f, want_f(3, -2.0f), false },
        { den, 0.5f, true },
    };
    const struct special ef[] = {
        { nan, nan, true }, { inf, 1.0f, true }, { -inf, -1.0f, true }, { 0.0f, 0.0f, true }, { -0.0f, -0.0f, true },
        { den, den, true }, { -den, -den, true }, { 4.0f, 1.0f, true }, { -10.0f, -1.0f, true }, { FLT_MAX, 1.0f, true },
        { 1.0f, want_f(4, 1.0f), false }, { 0.99999994f, want_f(4, 0.99999994f), false },
        { -3.9f, want_f(4, -3.9f), false }, { 1e-20f, want_f(4, 1e-20f), false }, { 0.5f, want_f(4, 0.5f), false },
    };
    if (fns[0]) check_specials(0, ex, (int)(sizeof ex / sizeof *ex));
    if (fns[1]) check_specials(1, lg, (int)(sizeof lg / sizeof *lg));
    if (fns[2]) check_specials(2, th, (int)(sizeof th / sizeof *th));
    if (fns[3]) check_specials(3, sg, (int)(sizeof sg / sizeof *sg));
    if (fns[4]) check_specials(4, ef, (int)(sizeof ef / sizeof *ef));
}

// An element's result must not depend on whether it ran in the vectorised
// loop body or in the scalar remainder (or a lane of another width): arrays
// of length 1..33 starting at several offsets against one long run.
TEST(position_independent) {
    enum { LONG = 1024 };
    static float a[LONG], ref[LONG], o[LONG];
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < LONG; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        // Mostly moderate values (where every formula branch is taken), some arbitrary bit patterns.
        a[i] = i % 4 == 3 ? bits_f((uint32_t)(s >> 32)) : ((float)(int32_t)(s >> 32) / 2147483648.0f) * 30.0f;
    }
    for (int f = 0; f < NFN; f++) {
        if (!fns[f]) continue;
        run(f, a, ref, LONG);
        int bad = 0;
        static const int offs[] = { 0, 1, 3, 7, 100, 513 };
        for (int oi = 0; oi < (int)(sizeof offs / sizeof *offs); oi++)
            for (int len = 1; len <= 33; len++) {
                memset(o, 0xff, sizeof o);
                run(f, a + offs[oi], o, len);
                for (int i = 0; i < len; i++) {
                    if (memcmp(&o[i], &ref[offs[oi] + i], 4) == 0) continue;
                    if (bad++ < 5)
                        FAIL_AT("%s(%a): %a in a run of %d at %d, %a in the long run", kir_op_name(fn_op[f]),
                                (double)a[offs[oi] + i], (double)o[i], len, offs[oi], (double)ref[offs[oi] + i]);
                }
            }
        CHECK_MSG(bad == 0, "%s: %d elements differ by position", kir_op_name(fn_op[f]), bad);
    }
}

// The optimised module (ITRC_DUMP_LLVM=1, captured from stderr) has vector
// float operations and no call into libm or an exp/log intrinsic.
TEST(vectorised) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/llvm-math-dump-%ld.txt", ITR_BINARY_DIR, (long)getpid());
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved >= 0 && fd >= 0);
    if (saved < 0 || fd < 0) {
        if (saved >= 0) close(saved);
        if (fd >= 0) close(fd);
        return;
    }
    dup2(fd, 2);
    close(fd);
    setenv("ITRC_DUMP_LLVM", "1", 1);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_jit *j = itr_llvm_jit_new(&d);
    itr_kernel_fn out[NFN] = { 0 };
    bool ok = j && itr_llvm_compile(j, kernels, NFN, out, &d);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsetenv("ITRC_DUMP_LLVM");
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    CHECK(ok);
    itr_llvm_jit_free(j);
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    if (!fp) return;
    size_t cap = 1 << 22, len = 0;
    char *text = malloc(cap + 1);
    if (text) len = fread(text, 1, cap, fp);
    fclose(fp);
    remove(path);
    CHECK(text != NULL);
    if (!text) return;
    text[len] = 0;
    for (int f = 0; f < NFN; f++) {
        // The kernel's definition (the only one: the body is inlined), up to the next.
        char head[96];
        snprintf(head, sizeof head, "@%s.", kernels[f]->name);
        char *def = strstr(text, head);
        CHECK_MSG(def != NULL, "no definition of %s in the dump", kernels[f]->name);
        if (!def) continue;
        char *end = strstr(def + 1, "\ndefine");
        char save = 0;
        if (end) save = *end, *end = 0;
        CHECK_MSG(strstr(def, " x float>") != NULL, "%s: no vector float operation", kernels[f]->name);
        static const char *calls[] = { "@expf", "@logf", "@tanhf", "@erff", "@llvm.exp.", "@llvm.log." };
        for (int c = 0; c < 6; c++)
            CHECK_MSG(strstr(def, calls[c]) == NULL, "%s still calls %s", kernels[f]->name, calls[c]);
        if (end) *end = save;
    }
    free(text);
}

int main(void) {
    int rc = tu_jit_main_start(&jit);
    if (rc >= 0) return rc;
    for (int f = 0; f < NFN; f++) kernels[f] = unary_kernel(fn_op[f]);
    if (!tu_jit_compile(jit, kernels, NFN, fns)) {
        for (int f = 0; f < NFN; f++) kir_kernel_free(kernels[f]);
        itr_llvm_jit_free(jit);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(special_values);
    RUN(position_independent);
    RUN(ulp_dense_ranges);
    RUN(ulp_sweep);
    RUN(vectorised);
    for (int f = 0; f < NFN; f++) kir_kernel_free(kernels[f]);
    itr_llvm_jit_free(jit);
    return test_summary();
}
