// The CUDA renderer's semantics, checked without a GPU: the rendered CUDA C
// is compiled as host C++ (g++, with a small header that defines what CUDA
// provides: __global__, blockIdx, __int_as_float, ...) and every thread of
// a launch is run in turn on the CPU. What that checks is the renderer's
// own part — the scalar semantics, the index maths, the guards, the
// accumulator lanes and the thread mapping of cuda_render.h — against the
// LLVM renderer (bitwise: the same IR, the same libm) and, for lowered
// graphs, against the reference interpreter. It cannot check NVRTC's or
// the GPU's arithmetic (tools/gpu-check.sh does, on a GPU).
//
// Without a C++ compiler (or LLVM, for the bitwise half) those parts print
// why and are skipped.
#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cuda/cuda_render.h"
#include "backends/llvm/llvm_jit.h"
#include "backends/ref/ref.h"
#include "compiler/lower.h"
#include "compiler/pipeline.h"
#include "ir/bind.h"
#include "ir/kir.h"
#include "ir/rng.h"
#include "test.h"

static const char shim[] =
    "#include <math.h>\n"
    "#include <string.h>\n"
    "struct itr_emu_dim3 { unsigned x, y, z; };\n"
    "extern \"C\" { itr_emu_dim3 itr_emu_block_idx, itr_emu_block_dim, itr_emu_thread_idx; }\n"
    "#define blockIdx itr_emu_block_idx\n"
    "#define blockDim itr_emu_block_dim\n"
    "#define threadIdx itr_emu_thread_idx\n"
    "#define __global__\n"
    "#define __device__\n"
    "#define __forceinline__ inline\n"
    "#define __launch_bounds__(n)\n"
    "#define __restrict__ __restrict\n"
    "static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, 8); return f; }\n";

struct emu { void *so; unsigned *block_idx, *block_dim, *thread_idx; };

static char tmpdir[256];
static int n_units;

// Compiles a rendered unit as host C++; false (with the compiler's output
// on stderr) when it does not compile.
static bool emu_build(const char *unit, struct emu *e) {
    char src[512], so[512], cmd[1400];
    snprintf(src, sizeof src, "%s/unit%d.cpp", tmpdir, n_units);
    snprintf(so, sizeof so, "%s/unit%d.so", tmpdir, n_units);
    n_units++;
    FILE *f = fopen(src, "w");
    if (!f) return false;
    fputs(shim, f);
    fputs(unit, f);
    fclose(f);
    // -ffp-contract=off: no a*b+c fused into an FMA, as --fmad=false on the GPU.
    snprintf(cmd, sizeof cmd, "g++ -std=c++17 -O1 -ffp-contract=off -fPIC -shared -w -o '%s' '%s'", so, src);
    if (system(cmd) != 0) return false;
    e->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!e->so) { fprintf(stderr, "%s\n", dlerror()); return false; }
    e->block_idx = dlsym(e->so, "itr_emu_block_idx");
    e->block_dim = dlsym(e->so, "itr_emu_block_dim");
    e->thread_idx = dlsym(e->so, "itr_emu_thread_idx");
    return e->block_idx && e->block_dim && e->thread_idx;
}

// Runs every thread of the launch of kernel sym over [0, hi) (cuda_render.h's grid).
static void emu_launch(const struct emu *e, const char *sym, void *const *bufs, int nb, const int64_t *dims, int nd, int64_t hi) {
    void *f = dlsym(e->so, sym);
    if (!f) { FAIL_AT("no symbol %s", sym); return; }
    uint32_t grid, block;
    if (!itr_cuda_launch_dims(hi, &grid, &block)) { FAIL_AT("no grid for %" PRId64, hi); return; }
    long long a[18] = { 0 };
    int n = 0;
    for (int i = 0; i < nb; i++) a[n++] = (long long)(intptr_t)bufs[i];
    for (int i = 0; i < nd; i++) a[n++] = dims[i];
    a[n++] = 0;
    a[n++] = hi;
    typedef void (*f18)(long long, long long, long long, long long, long long, long long, long long, long long, long long,
                        long long, long long, long long, long long, long long, long long, long long, long long, long long);
    f18 fn = (f18)(uintptr_t)f;
    // Every argument is a pointer or a long long, which the x86-64 and
    // AArch64 calling conventions pass alike, and arguments past the
    // kernel's own are ignored by the callee: one call shape fits all.
    e->block_dim[0] = block;
    for (uint32_t b = 0; b < grid; b++)
        for (uint32_t t = 0; t < block; t++) {
            e->block_idx[0] = b;
            e->thread_idx[0] = t;
            fn(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16],
               a[17]);
        }
}

static bool have_cxx(void) { return system("g++ --version > /dev/null 2>&1") == 0; }

// ---------------------------------------------------------------- every op vs the LLVM renderer

// Values that exercise the edges: zeros of both signs, NaN, infinities,
// integer extremes, fractions around casts' truncation.
static double sample(int i, enum kir_type t) {
    static const double fl[] = { 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.3, -7.75, 1e30, -1e30, 3e9, -3e9, 1e-40, NAN, INFINITY,
                                 -INFINITY, 123456.789, -0.5, 9.3e18, -9.3e18 };
    static const double in[] = { 0, 1, -1, 2, -2, 7, -7, 3, -3, 2147483647.0, -2147483648.0, 100, -100, 5, -6, 13, 64, -64,
                                 1, 4 };
    int n = (int)(sizeof fl / sizeof *fl);
    i %= n;
    if (t == KIR_BOOL) return (i * 7) % 3 == 0;
    if (t == KIR_F32 || t == KIR_F64) return fl[i];
    return in[i];
}

static enum itr_dtype dtype_of(enum kir_type t) {
    switch (t) {
    case KIR_F32: return ITR_F32;
    case KIR_F64: return ITR_F64;
    case KIR_I32: return ITR_I32;
    case KIR_I64: return ITR_I64;
    default: return ITR_BOOL;
    }
}

#define N_VALS 20
#define N_PAIRS (N_VALS * N_VALS)

// out[i] = op(x[i / N], y[i % N]) for unary/binary ops, or (to) x[i/N] for casts.
static struct kir_kernel *op_kernel(const char *name, enum kir_op op, bool is_cast, enum kir_type t, enum kir_type to,
                                    enum kir_type *out_t) {
    struct kir_kernel *k = kir_kernel_new(name);
    int32_t x = kir_add_buffer(k, "x", dtype_of(t), false), y = kir_add_buffer(k, "y", dtype_of(t), false);
    int32_t i = kir_add_var(k, "i", KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, i, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
    kir_append(k, k->body, f);
    int32_t iv = kir_var_ref(k, i);
    int32_t a = kir_load(k, x, kir_binary(k, KIR_DIV, iv, kir_iconst(k, N_VALS)));
    int32_t b = kir_load(k, y, kir_binary(k, KIR_MOD, iv, kir_iconst(k, N_VALS)));
    int32_t v = is_cast ? kir_cast(k, to, a) : kir_op_is_unary(op) ? kir_unary(k, op, a) : kir_binary(k, op, a, b);
    *out_t = k->exprs[v].type;
    int32_t out = kir_add_buffer(k, "out", dtype_of(*out_t), true);
    kir_append(k, kir_for_body(k, f), kir_store(k, out, iv, v));
    k->parallel_hi = kir_iconst(k, N_PAIRS);
    for (int j = 0; j < k->n_bufs; j++) k->bufs[j].noalias = true;
    return k;
}

static bool same_bits(const void *a, const void *b, enum kir_type t, int64_t i) {
    if (t == KIR_F32) {
        float x = ((const float *)a)[i], y = ((const float *)b)[i];
        return (isnan(x) && isnan(y)) || memcmp(&x, &y, 4) == 0;
    }
    if (t == KIR_F64) {
        double x = ((const double *)a)[i], y = ((const double *)b)[i];
        return (isnan(x) && isnan(y)) || memcmp(&x, &y, 8) == 0;
    }
    size_t es = t == KIR_BOOL ? 1 : t == KIR_I32 ? 4 : 8;
    return memcmp((const char *)a + i * es, (const char *)b + i * es, es) == 0;
}

// f32 exp, log, tanh, erf and sigmoid are inline polynomials in the LLVM
// renderer (docs/kernels.md) but libm calls here: within 2 ulp, not bitwise.
static bool llvm_inline_math(enum kir_op op, enum kir_type t) {
    return t == KIR_F32 && (op == KIR_EXP || op == KIR_LOG || op == KIR_TANH || op == KIR_ERF || op == KIR_SIGMOID);
}

static bool within_2ulp_f32(const void *a, const void *b, int64_t i) {
    float x = ((const float *)a)[i], y = ((const float *)b)[i];
    if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
    uint32_t ux, uy;
    memcpy(&ux, &x, 4), memcpy(&uy, &y, 4);
    // A monotone map of the bits onto integers: the distance counts representable floats.
    int64_t kx = ux >> 31 ? -(int64_t)(ux & 0x7fffffffu) : (int64_t)ux;
    int64_t ky = uy >> 31 ? -(int64_t)(uy & 0x7fffffffu) : (int64_t)uy;
    return llabs(kx - ky) <= 2;
}

TEST(every_op_matches_the_llvm_renderer) {
    if (!itr_llvm_available()) { printf("  skipped: built without LLVM\n"); return; }
    struct kir_kernel *ks[512];
    enum kir_type in_t[512], out_t[512];
    bool near[512] = { false };
    int n = 0;
    static const enum kir_type types[] = { KIR_F32, KIR_F64, KIR_I32, KIR_I64, KIR_BOOL };
    char why[256];
    int skipped = 0;
    for (int ti = 0; ti < 5; ti++) {
        for (int op = 0; op < KIR_OP_COUNT; op++) {
            char name[64];
            snprintf(name, sizeof name, "k_%s_%s", kir_op_name((enum kir_op)op), kir_type_name(types[ti]));
            for (char *c = name; *c; c++) if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))) *c = '_';
            struct kir_kernel *k = op_kernel(name, (enum kir_op)op, false, types[ti], types[ti], &out_t[n]);
            // Only the combinations both renderers accept (the same set:
            // checked here as the CUDA renderer's refusals matching LLVM's).
            char *src = itr_cuda_render_kernel(k, k->name, why, sizeof why);
            struct itr_diags d;
            itr_diags_init(&d);
            char *ir = itr_llvm_render_ir(&k, 1, &d);
            itr_diags_free(&d);
            CHECK_MSG((src != NULL) == (ir != NULL), "%s: CUDA %s it, LLVM %s it", name, src ? "renders" : "refuses",
                      ir ? "renders" : "refuses");
            if (!src || !ir) {
                skipped++;
                kir_kernel_free(k);
            } else {
                in_t[n] = types[ti];
                near[n] = llvm_inline_math((enum kir_op)op, types[ti]);
                ks[n++] = k;
            }
            free(src);
            free(ir);
        }
        for (int to = 0; to < 5; to++) {
            char name[64];
            snprintf(name, sizeof name, "k_cast_%s_%s", kir_type_name(types[ti]), kir_type_name(types[to]));
            in_t[n] = types[ti];
            ks[n] = op_kernel(name, KIR_ADD, true, types[ti], types[to], &out_t[n]);
            n++;
        }
    }
    const char **syms = calloc((size_t)n, sizeof *syms);
    for (int i = 0; i < n; i++) syms[i] = ks[i]->name;
    char *unit = itr_cuda_render_unit((const struct kir_kernel *const *)ks, syms, n, NULL, why, sizeof why);
    CHECK_MSG(unit != NULL, "%s", why);
    struct emu e;
    bool built = unit && emu_build(unit, &e);
    CHECK_MSG(built, "the rendered unit does not compile as host C++");
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_llvm_jit *jit = itr_llvm_jit_new(&d);
    itr_kernel_fn *fns = calloc((size_t)n, sizeof *fns);
    bool jitted = jit && itr_llvm_compile(jit, ks, n, fns, &d);
    if (!jitted) itr_diags_print(&d, stderr);
    CHECK(jitted);
    int compared = 0;
    for (int i = 0; built && jitted && i < n; i++) {
        enum kir_type t = in_t[i];
        size_t es = t == KIR_BOOL ? 1 : t == KIR_I32 ? 4 : 8;
        if (t == KIR_F32) es = 4;
        char x[N_VALS * 8], y[N_VALS * 8], oc[N_PAIRS * 8 + 64], ol[N_PAIRS * 8 + 64];
        for (int j = 0; j < N_VALS; j++) {
            double vx = sample(j, t), vy = sample(j * 3 + 1, t);
            // integer division by zero is outside the kernel IR (kir.h): the
            // scheduler never emits it, and the CPU traps on it
            if ((t == KIR_I32 || t == KIR_I64) && vy == 0) vy = -3;
            switch (t) {
            case KIR_F32: ((float *)x)[j] = (float)vx; ((float *)y)[j] = (float)vy; break;
            case KIR_F64: ((double *)x)[j] = vx; ((double *)y)[j] = vy; break;
            case KIR_I32: ((int32_t *)x)[j] = (int32_t)vx; ((int32_t *)y)[j] = (int32_t)vy; break;
            case KIR_I64: ((int64_t *)x)[j] = (int64_t)vx * 3037000499LL; ((int64_t *)y)[j] = (int64_t)vy; break;
            default: ((uint8_t *)x)[j] = vx != 0; ((uint8_t *)y)[j] = vy != 0; break;
            }
        }
        (void)es;
        memset(oc, 0x5a, sizeof oc);
        memset(ol, 0xa5, sizeof ol);
        void *bc[3] = { x, y, oc }, *bl[3] = { x, y, ol };
        emu_launch(&e, ks[i]->name, bc, 3, NULL, 0, N_PAIRS);
        fns[i](bl, NULL, 0, N_PAIRS);
        int bad = 0, first = -1;
        for (int j = 0; j < N_PAIRS; j++)
            if (near[i] ? !within_2ulp_f32(oc, ol, j) : !same_bits(oc, ol, out_t[i], j)) { bad++; if (first < 0) first = j; }
        CHECK_MSG(bad == 0, "%s: %d of %d results differ from the LLVM renderer's (first: pair %d)", ks[i]->name, bad,
                  N_PAIRS, first);
        compared++;
    }
    printf("  %d op/type kernels agree with the LLVM renderer, bitwise but for f32 exp/log/tanh/erf/sigmoid (2 ulp; "
           "%d combinations neither renders)\n", compared, skipped);
    CHECK(compared > 100);
    itr_llvm_jit_free(jit);
    itr_diags_free(&d);
    free(fns);
    free(syms);
    free(unit);
    if (built) dlclose(e.so);
    for (int i = 0; i < n; i++) kir_kernel_free(ks[i]);
}

// ---------------------------------------------------------------- lowered graphs vs the reference

// A mini executor for schedules made only of KERNEL steps: each materialised
// value gets a host buffer, each kernel runs as emulated GPU threads.
static void check_graph(const char *name, const char *ir_text, int64_t rows, int64_t cols, bool f64) {
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_source(name, ir_text, strlen(ir_text), &o, &p, NULL, &d)) {
        itr_diags_print(&d, stderr);
        FAIL_AT("%s does not compile", name);
        itr_diags_free(&d);
        return;
    }
    const struct itr_graph *g = NULL;
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) g = p->graphs[i];
    struct kir_schedule *s = g ? itr_lower_graph(g, f64, &d) : NULL;
    CHECK_MSG(s != NULL, "%s: no schedule", name);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        b.bound[i] = true;
        b.value[i] = strcmp(p->symbols[i].name, "R") == 0 ? rows : cols;
    }
    int nv = g ? g->n_values : 0;
    struct itr_tensor **val = calloc((size_t)nv + 1, sizeof *val);
    struct itr_tensor *in = NULL;
    if (g) {
        int64_t shape[ITR_MAX_RANK];
        itr_eval_shape(&b, p, &g->values[g->inputs[0]].type, shape, "x", &d);
        in = itr_tensor_new(ITR_F32, g->values[g->inputs[0]].type.rank, shape);
        for (int64_t i = 0; i < itr_tensor_numel(in); i++) itr_tensor_set(in, i, 4 * itr_rng_uniform_f64(5, 1, (uint64_t)i) - 2);
        val[g->inputs[0]] = f64 ? itr_tensor_cast(in, ITR_F64) : itr_tensor_clone(in);
    }
    bool ok = s != NULL;
    for (int si = 0; ok && si < s->n_steps; si++)
        if (s->steps[si].kind != KIR_STEP_KERNEL) ok = false;   // (guards of max/min: the sizes here are never empty)
    CHECK_MSG(!s || ok, "%s: the schedule has a step that is not a plain kernel", name);
    const char **syms = s ? calloc((size_t)s->n_kernels + 1, sizeof *syms) : NULL;
    for (int i = 0; s && i < s->n_kernels; i++) syms[i] = s->kernels[i]->name;
    char why[256];
    char *unit = ok ? itr_cuda_render_unit((const struct kir_kernel *const *)s->kernels, syms, s->n_kernels, NULL, why, sizeof why) : NULL;
    struct emu e = { 0 };
    ok = unit && emu_build(unit, &e);
    CHECK_MSG(!unit || ok, "%s: the rendered unit does not compile as host C++", name);
    for (int si = 0; ok && si < s->n_steps; si++) {
        const struct kir_step *st = &s->steps[si];
        const struct kir_kernel *k = s->kernels[st->kernel];
        void *bufs[8];
        int64_t dv[8];
        for (int j = 0; j < k->n_bufs; j++) {
            int32_t v = st->bufs[j];
            if (!val[v]) {
                int64_t shape[ITR_MAX_RANK];
                itr_eval_shape(&b, p, &g->values[v].type, shape, "v", &d);
                enum itr_dtype dt = f64 && g->values[v].type.dtype == ITR_F32 ? ITR_F64 : g->values[v].type.dtype;
                val[v] = itr_tensor_new(dt, g->values[v].type.rank, shape);
            }
            bufs[j] = val[v]->data;
        }
        for (int j = 0; j < k->n_dims; j++) {
            int32_t unbound;
            itr_dim_eval(p, k->dims[j].dim, b.value, b.bound, &dv[j], &unbound);
        }
        int64_t hi = 1;
        int32_t unbound;
        if (k->parallel_dim >= 0) itr_dim_eval(p, k->parallel_dim, b.value, b.bound, &hi, &unbound);
        emu_launch(&e, k->name, bufs, k->n_bufs, dv, k->n_dims, hi);
    }
    if (ok) {
        struct itr_tensor *ro[4] = { 0 };
        struct itr_ref_options ropt = { .f64 = f64 };
        struct itr_tensor *ins[1] = { in };
        CHECK(itr_ref_run(g, ins, NULL, &b, &ropt, ro, &d));
        for (int k = 0; k < g->n_outputs && ro[k]; k++) {
            const struct itr_tensor *got = val[g->outputs[k]];
            CHECK_MSG(got && itr_tensor_numel(got) == itr_tensor_numel(ro[k]), "%s: output %d missing", name, k);
            double worst = 0, scale = 1;
            for (int64_t i = 0; got && i < itr_tensor_numel(got); i++) {
                double r = itr_tensor_get(ro[k], i), c = itr_tensor_get(got, i);
                scale = fmax(scale, fabs(r));
                worst = fmax(worst, isnan(r) != isnan(c) ? INFINITY : isnan(r) ? 0 : fabs(r - c));
            }
            CHECK_MSG(worst <= (f64 ? 1e-12 : 1e-5) * scale, "%s (%s, %lld x %lld): output %d differs from the reference by %g",
                      name, f64 ? "f64" : "f32", (long long)rows, (long long)cols, k, worst);
            itr_tensor_free(ro[k]);
        }
    }
    for (int v = 0; v < nv; v++) itr_tensor_free(val[v]);
    free(val);
    itr_tensor_free(in);
    free(syms);
    free(unit);
    if (e.so) dlclose(e.so);
    kir_schedule_free(s);
    itr_bindings_free(&b);
    itr_program_free(p);
    itr_diags_free(&d);
}

// Reductions over rows and over columns (the column one's parallel loop runs
// over blocks of 8 columns, with the tail columns done by the thread whose
// chunk ends the range — or by thread 0 of an empty launch when there are
// fewer than 8), softmax (reduction, broadcast back, second reduction), and
// movement ops composed into index maps.
TEST(lowered_graphs_match_the_reference) {
    static const char *const graphs[][2] = {
        { "sum_rows.ir", "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    return sum(x, axes=[1])\n  }\n}\n" },
        { "sum_cols.ir", "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    return sum(x, axes=[0])\n  }\n}\n" },
        { "max_cols.ir", "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    return max(x, axes=[0])\n  }\n}\n" },
        { "mean_all.ir", "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    return mean(x)\n  }\n}\n" },
        { "softmax.ir",
          "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    mx = max(x, axes=[1], keepdims=true)\n"
          "    e = exp(x - mx)\n    return e / sum(e, axes=[1], keepdims=true)\n  }\n}\n" },
        { "transpose_tanh.ir",
          "model m {\n  dim R, C\n  entry f(x: f32[R, C]) -> (y) {\n    return tanh(transpose(x)) * 2.0\n  }\n}\n" },
    };
    static const int64_t sizes[][2] = { { 3, 5 }, { 4, 21 }, { 1, 8 }, { 7, 300 } };
    for (size_t gi = 0; gi < sizeof graphs / sizeof *graphs; gi++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            for (int f64 = 0; f64 < 2; f64++) check_graph(graphs[gi][0], graphs[gi][1], sizes[si][0], sizes[si][1], f64);
}

int main(void) {
    if (!have_cxx()) {
        printf("skipped: no C++ compiler (g++) to run the rendered kernels on the host\n0 passed, 0 failed\n");
        return 77;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/itr-cuda-emu.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(every_op_matches_the_llvm_renderer);
    RUN(lowered_graphs_match_the_reference);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return test_summary();
}
