// The LLVM JIT's body deduplication and per-body object cache
// (backends/llvm/llvm_jit.c, docs/kernels.md "The LLVM renderer and JIT"):
// kernels that differ only in names share one compiled body, every name
// runs and gives the reference's values, and a cached load runs
// bit-for-bit the code a cold compile produced.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/llvm/llvm_jit.h"
#include "compiler/lower.h"
#include "compiler/pipeline.h"
#include "ir/diag.h"
#include "ir/kir.h"
#include "tests/test.h"
#include "tests/testjit.h"

enum { R = 5, C = 67 };   // C: a vector body and a remainder

// out[r, c] = tanh(x[r, c] * s) + exp(-x[r, c]), over a parallel row loop
// and a vector column loop; every name (kernel, buffers, dims, variables)
// carries `tag`, so that two tags give kernels equal but for names.
static struct kir_kernel *tanh_exp_kernel(const char *tag, double s) {
    char n[7][64];
    const char *what[7] = { "k", "x", "out", "C", "r", "c", "R" };
    for (int i = 0; i < 7; i++) snprintf(n[i], sizeof n[i], "%s_%s", what[i], tag);
    struct kir_kernel *k = kir_kernel_new(n[0]);
    int32_t x = kir_add_buffer(k, n[1], ITR_F32, false), out = kir_add_buffer(k, n[2], ITR_F32, true);
    k->bufs[out].noalias = true;
    int32_t Cd = kir_dim_ref(k, kir_add_dim(k, n[3], 1));
    int32_t r = kir_add_var(k, n[4], KIR_VAR_LOOP, KIR_I64), c = kir_add_var(k, n[5], KIR_VAR_LOOP, KIR_I64);
    int32_t fr = kir_for(k, r, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
    kir_append(k, k->body, fr);
    int32_t fc = kir_for(k, c, kir_iconst(k, 0), Cd, KIR_LOOP_VECTOR);
    kir_append(k, kir_for_body(k, fr), fc);
    int32_t i = kir_iadd(k, kir_imul(k, kir_var_ref(k, r), Cd), kir_var_ref(k, c));
    int32_t xv = kir_load(k, x, i);
    int32_t v = kir_binary(k, KIR_ADD, kir_unary(k, KIR_TANH, kir_binary(k, KIR_MUL, xv, kir_const_float(k, KIR_F32, s))),
                           kir_unary(k, KIR_EXP, kir_unary(k, KIR_NEG, xv)));
    kir_append(k, kir_for_body(k, fc), kir_store(k, out, i, v));
    k->parallel_hi = kir_dim_ref(k, kir_add_dim(k, n[6], 0));
    return k;
}

static float xin[R * C];

static void init_input(void) {
    uint64_t s = 987654321;
    for (int i = 0; i < R * C; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        xin[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    }
}

static void run(itr_kernel_fn fn, float *out) {
    void *bufs[2] = { xin, out };
    int64_t dims[2] = { C, R };
    fn(bufs, dims, 0, R);
}

// Against double-precision libm: the renderer's polynomials are within 2 ulp.
static int check_reference(const float *out, double s) {
    int bad = 0;
    for (int i = 0; i < R * C; i++) {
        double want = tanh((double)xin[i] * (double)(float)s) + exp(-(double)xin[i]);
        if (!(fabs(out[i] - want) <= 1e-5 * fmax(1.0, fabs(want)))) bad++;
    }
    return bad;
}

static int count_objects(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "find '%s/itrc' -type f -name '*.o' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void private_cache(char *dir, size_t n, const char *what) {
    snprintf(dir, n, "%s/tests/llvm-dedup-%s-%ld", ITR_BINARY_DIR, what, (long)getpid());
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("ITRC_NO_CACHE");
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
}

// Two kernels equal but for their names, and a third with another constant:
// two bodies compiled (two objects cached), the first two bound to one
// entry point, all three giving the reference's values.
TEST(equal_bodies_compile_once) {
    char dir[512];
    private_cache(dir, sizeof dir, "once");
    struct kir_kernel *ks[3] = { tanh_exp_kernel("layer1", 0.5), tanh_exp_kernel("layer2", 0.5),
                                 tanh_exp_kernel("layer3", 0.75) };
    struct itr_llvm_jit *j = tu_jit_new();
    CHECK(j != NULL);
    itr_kernel_fn fns[3] = { 0 };
    if (j && tu_jit_compile(j, ks, 3, fns)) {
        CHECK(!itr_llvm_last_was_cache_hit(j));
        CHECK(fns[0] && fns[1] && fns[2]);
        CHECK_MSG(fns[0] == fns[1], "kernels equal but for names were compiled twice");
        CHECK(fns[2] != fns[0]);
        CHECK_MSG(count_objects(dir) == 2, "%d cached objects, want one per distinct body (2)", count_objects(dir));
        float out[3][R * C];
        for (int k = 0; k < 3 && fns[k]; k++) run(fns[k], out[k]);
        if (fns[0] && fns[1] && fns[2]) {
            CHECK_MSG(check_reference(out[0], 0.5) == 0, "layer1: %d values off", check_reference(out[0], 0.5));
            CHECK_MSG(check_reference(out[1], 0.5) == 0, "layer2: %d values off", check_reference(out[1], 0.5));
            CHECK_MSG(check_reference(out[2], 0.75) == 0, "layer3: %d values off", check_reference(out[2], 0.75));
            CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
            CHECK(memcmp(out[0], out[2], sizeof out[0]) != 0);
        }
        // A later compile in the same JIT with a body it already has (a scan
        // body's kernels, another entry) binds to that code, defines nothing
        // twice, and compiles only the new body.
        struct kir_kernel *more[2] = { tanh_exp_kernel("again", 0.5), tanh_exp_kernel("new", 1.5) };
        itr_kernel_fn fm[2] = { 0 };
        CHECK(tu_jit_compile(j, more, 2, fm));
        CHECK(fm[0] == fns[0]);
        CHECK(fm[1] && fm[1] != fns[0] && fm[1] != fns[2]);
        CHECK(count_objects(dir) == 3);
        if (fm[1]) {
            float o[R * C];
            run(fm[1], o);
            CHECK_MSG(check_reference(o, 1.5) == 0, "new: %d values off", check_reference(o, 1.5));
        }
        for (int k = 0; k < 2; k++) kir_kernel_free(more[k]);
    }
    itr_llvm_jit_free(j);
    for (int k = 0; k < 3; k++) kir_kernel_free(ks[k]);
    remove_dir(dir);
}

// Cold, then cached in a new JIT, then cached under other names (another
// plan with the same bodies): every load runs bit-for-bit the same code.
TEST(cold_and_cached_are_bitwise_identical) {
    char dir[512];
    private_cache(dir, sizeof dir, "bits");
    float out[3][2][R * C];
    const char *tags[3][2] = { { "a1", "a2" }, { "a1", "a2" }, { "other1", "other2" } };
    for (int pass = 0; pass < 3; pass++) {
        struct kir_kernel *ks[2] = { tanh_exp_kernel(tags[pass][0], 0.5), tanh_exp_kernel(tags[pass][1], 2.0) };
        struct itr_llvm_jit *j = tu_jit_new();
        CHECK(j != NULL);
        itr_kernel_fn fns[2] = { 0 };
        bool ok = j && tu_jit_compile(j, ks, 2, fns);
        CHECK(ok);
        if (ok) {
            CHECK_MSG(itr_llvm_last_was_cache_hit(j) == (pass > 0), "pass %d: cache hit %d", pass,
                      itr_llvm_last_was_cache_hit(j));
            for (int k = 0; k < 2; k++) run(fns[k], out[pass][k]);
        } else {
            memset(out[pass], 0xff, sizeof out[pass]);
        }
        itr_llvm_jit_free(j);
        for (int k = 0; k < 2; k++) kir_kernel_free(ks[k]);
    }
    CHECK(check_reference(out[0][0], 0.5) == 0 && check_reference(out[0][1], 2.0) == 0);
    CHECK_MSG(memcmp(out[0], out[1], sizeof out[0]) == 0, "the cached load differs from the cold compile");
    CHECK_MSG(memcmp(out[0], out[2], sizeof out[0]) == 0, "the cached load under other names differs");
    CHECK(count_objects(dir) == 2);
    remove_dir(dir);
}

// A real plan: VSE++'s training step has kernels that share bodies (its
// optimizer updates); the JIT binds them to fewer entry points than
// kernels, and kernels share an entry point only when their bodies print
// the same once names are set aside.
static char *printed_without_names(const struct kir_kernel *k) {
    struct kir_kernel c = *k;
    c.name = (char *)"k";
    struct kir_buffer *b = malloc(((size_t)k->n_bufs + 1) * sizeof *b);
    struct kir_dim_param *dm = malloc(((size_t)k->n_dims + 1) * sizeof *dm);
    struct kir_var *v = malloc(((size_t)k->n_vars + 1) * sizeof *v);
    char *s = NULL;
    size_t n = 0;
    FILE *f = b && dm && v ? open_memstream(&s, &n) : NULL;
    if (f) {
        for (int i = 0; i < k->n_bufs; i++) b[i] = k->bufs[i], b[i].name = "b";
        for (int i = 0; i < k->n_dims; i++) dm[i] = k->dims[i], dm[i].name = "d";
        for (int i = 0; i < k->n_vars; i++) v[i] = k->vars[i], v[i].name = "v";
        c.bufs = b, c.dims = dm, c.vars = v;
        kir_print(&c, f);
        fclose(f);
    }
    free(b), free(dm), free(v);
    return s;
}

TEST(model_kernels_share_bodies) {
    setenv("ITRC_NO_CACHE", "1", 1);
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    bool ok = itr_compile_file(ITR_SOURCE_DIR "/models/vsepp.ir", &o, &p, NULL, &d);
    CHECK(ok);
    const struct itr_graph *g = ok ? itr_program_find_graph(p, "train") : NULL;
    CHECK(g != NULL);
    struct kir_schedule *s = g ? itr_lower_graph(g, false, &d) : NULL;
    CHECK(s != NULL);
    if (!s) itr_diags_print(&d, stderr);
    struct itr_llvm_jit *j = s ? tu_jit_new() : NULL;
    itr_kernel_fn *fns = s ? calloc((size_t)s->n_kernels + 1, sizeof *fns) : NULL;
    if (j && fns && tu_jit_compile(j, s->kernels, s->n_kernels, fns)) {
        int distinct = 0, mismatched = 0;
        for (int a = 0; a < s->n_kernels; a++) {
            int first = a;
            for (int b = 0; b < a && first == a; b++)
                if (fns[b] == fns[a]) first = b;
            distinct += first == a;
            char *ta = printed_without_names(s->kernels[a]), *tb = printed_without_names(s->kernels[first]);
            // Shared code, shared body; and equal bodies, shared code.
            for (int b = 0; b < a; b++) {
                if (fns[b] == fns[a]) continue;
                char *tc = printed_without_names(s->kernels[b]);
                if (tc && ta && strcmp(tc, ta) == 0) mismatched++;
                free(tc);
            }
            if (!ta || !tb || strcmp(ta, tb) != 0) mismatched++;
            free(ta), free(tb);
        }
        printf("vsepp train: %d kernels, %d distinct bodies\n", s->n_kernels, distinct);
        CHECK_MSG(distinct < s->n_kernels, "no kernel shares a body (%d kernels)", s->n_kernels);
        CHECK_MSG(mismatched == 0, "%d kernels share code without sharing a body, or the reverse", mismatched);
    }
    free(fns);
    itr_llvm_jit_free(j);
    if (s) kir_schedule_free(s);
    itr_program_free(p);
    itr_diags_free(&d);
}

int main(void) {
    if (!itr_llvm_available()) {
        printf("skipped: built without LLVM\n");
        return test_summary();
    }
    init_input();
    RUN(equal_bodies_compile_once);
    RUN(cold_and_cached_are_bitwise_identical);
    RUN(model_kernels_share_bodies);
    return test_summary();
}
