// Backend agreement on the GPU (backends.md §5): every entry point of every
// model in models/ (the compiled training step included) runs on the cuda
// backend through a session — parameters uploaded, inputs uploaded,
// outputs downloaded — and on the reference interpreter, f32 and f64, at the
// small sizes of the other model tests. f32 outputs agree to 1e-4 of
// max(1, max|ref|), f64 to 1e-12.
//
// It needs a GPU: where the cuda backend cannot open (no driver, no device,
// no NVRTC) it prints why and exits 77 (skipped). tools/gpu-check.sh runs it
// on a machine with one. NOT YET RUN ON A GPU.
#include <dirent.h>
#include <stdlib.h>

#include "agree.h"
#include "backends/backend.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "backends/ref/ref.h"
#include "compiler/pipeline.h"
#include "ir/bind.h"
#include "ir/kir.h"
#include "ir/plan.h"
#include "ir/rng.h"
#include "runtime/session.h"
#include "test.h"
#include "testutil.h"

static struct itr_program *compile_small(const char *path) {
    const char *ov[TU_N_SMALL_SIZES];
    int n = tu_small_overrides(path, ov);
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    o.defines = ov;
    o.n_defines = n;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_file(path, &o, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

static struct itr_tensor *random_tensor(const struct itr_program *p, const struct itr_type *t,
                                        const struct itr_dim_bindings *b, uint64_t salt) {
    int64_t shape[ITR_MAX_RANK];
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_eval_shape(b, p, t, shape, "test input", &d);
    itr_diags_free(&d);
    if (!ok) return NULL;
    struct itr_tensor *x = itr_tensor_new(t->dtype, t->rank, shape);
    for (int64_t i = 0; i < itr_tensor_numel(x); i++) {
        double u = itr_rng_uniform_f64(11, salt, (uint64_t)i);
        // integer inputs are 1: a valid index, length, step and seed for every model
        itr_tensor_set(x, i, itr_dtype_is_float(t->dtype) ? u - 0.5 : t->dtype == ITR_BOOL ? u < 0.5 : 1);
    }
    return x;
}

static int compared_entries;

static void check_entry(const struct itr_program *p, const struct itr_graph *g, struct itr_tensor *const *params,
                        const struct itr_dim_bindings *b, bool f64, const char *file) {
    struct itr_tensor **in = calloc((size_t)g->n_inputs + 1, sizeof *in);
    struct itr_tensor_set inputs = { 0 };
    for (int i = 0; i < g->n_inputs; i++) {
        in[i] = random_tensor(p, &g->values[g->inputs[i]].type, b, 100 + (uint64_t)i);
        // a tiny learning rate, as in test_agree_models.c (why: there)
        if (strcmp(g->values[g->inputs[i]].name, "lr") == 0 && in[i] && itr_tensor_numel(in[i]) == 1)
            itr_tensor_set(in[i], 0, f64 ? 1e-14 : 1e-6);
        if (in[i]) itr_tensor_set_put(&inputs, g->values[g->inputs[i]].name, itr_tensor_clone(in[i]));
    }
    struct itr_tensor **ro = calloc((size_t)g->n_outputs + 1, sizeof *ro);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings rb, cb;
    itr_bindings_init(&rb, p);
    itr_bindings_init(&cb, p);
    for (int i = 0; i < p->n_symbols; i++) {
        rb.value[i] = cb.value[i] = b->value[i];
        rb.bound[i] = cb.bound[i] = b->bound[i];
    }
    struct itr_ref_options opt = { .f64 = f64 };
    if (!itr_ref_run(g, in, params, &rb, &opt, ro, &d)) {
        fprintf(stderr, "note: %s: entry '%s' does not run on the generic inputs; skipped\n", file, g->name);
    } else {
        struct itr_session_options so = { .f64 = f64 };
        struct itr_session *s = itr_session_new(p, "cuda", &so, &d);
        for (int j = 0; s && j < p->n_params; j++)
            if (params[j]) itr_session_set_param(s, j, itr_tensor_clone(params[j]));
        struct itr_tensor_set outs = { 0 };
        bool ok = s && itr_session_run_graph(s, g, &inputs, &cb, &outs, &d);
        if (!ok) {
            itr_diags_print(&d, stderr);
            FAIL_AT("%s: entry '%s' (%s) fails on the cuda backend", file, g->name, f64 ? "f64" : "f32");
        } else {
            compared_entries++;
            for (int k = 0; k < g->n_outputs; k++) {
                const struct itr_tensor *got = itr_tensor_set_get(&outs, g->output_names[k]);
                char why[256];
                if (!got) FAIL_AT("%s: entry '%s': no output '%s'", file, g->name, g->output_names[k]);
                else if (!agree_tensors(ro[k], got, f64 ? AGREE_TOL_F64 : AGREE_TOL_F32_MODEL, why, sizeof why))
                    FAIL_AT("%s: entry '%s' (%s), output '%s': %s", file, g->name, f64 ? "f64" : "f32",
                            g->output_names[k], why);
            }
        }
        itr_tensor_set_free(&outs);
        itr_session_free(s);
    }
    for (int k = 0; k < g->n_outputs; k++) itr_tensor_free(ro[k]);
    for (int i = 0; i < g->n_inputs; i++) itr_tensor_free(in[i]);
    itr_tensor_set_free(&inputs);
    free(in);
    free(ro);
    itr_bindings_free(&rb);
    itr_bindings_free(&cb);
    itr_diags_free(&d);
}

// The program and its kernels as itr-run sees them: packed into a plan
// (itrc compile --target llvm) and read back.
static struct itr_program *through_plan(struct itr_program *p) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct kir_plan_kernels made = { 0 };
    uint8_t *buf = NULL;
    size_t len = 0;
    struct itr_program *q = NULL;
    bool ok = itr_compile_kernels(p, &made, &d);
    p->kernels = &made;
    if (ok && itr_plan_pack(p, "llvm", &buf, &len, &d)) q = itr_plan_unpack(buf, len, "test plan", NULL, &d);
    p->kernels = NULL;
    if (!q || !q->kernels) itr_diags_print(&d, stderr);
    free(buf);
    kir_plan_kernels_free(&made);
    itr_diags_free(&d);
    itr_program_free(p);
    return q;
}

static void check_model(const char *path) {
    const char *file = strrchr(path, '/') + 1;
    struct itr_program *p = compile_small(path);
    if (p) p = through_plan(p);
    if (!p) {
        FAIL_AT("cannot compile %s, or its plan does not read back", path);
        return;
    }
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        b.bound[i] = true;
        b.value[i] = p->symbols[i].has_default && p->symbols[i].default_value <= 64 ? p->symbols[i].default_value : 3;
    }
    struct itr_tensor **params = calloc((size_t)p->n_params + 1, sizeof *params);
    for (int j = 0; j < p->n_params; j++) {
        params[j] = random_tensor(p, &p->params[j].type, &b, 1000 + (uint64_t)j);
        // optimizer state starts at zero, as `itr-run init` writes it
        if (strncmp(p->params[j].name, "opt.", 4) == 0 && params[j]) memset(params[j]->data, 0, itr_tensor_nbytes(params[j]));
    }
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        if (g->kind != ITR_GRAPH_ENTRY) continue;
        check_entry(p, g, params, &b, false, file);
        check_entry(p, g, params, &b, true, file);
    }
    for (int j = 0; j < p->n_params; j++) itr_tensor_free(params[j]);
    free(params);
    itr_bindings_free(&b);
    itr_program_free(p);
}

TEST(every_model_every_entry) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    int models = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        check_model(path);
        models++;
    }
    if (dir) closedir(dir);
    check_model(ITR_SOURCE_DIR "/models/demo/batch.ir");
    printf("  %d models, %d entry runs compared on the GPU (f32 and f64)\n", models + 1, compared_entries);
    CHECK(models >= 8);
    CHECK(compared_entries >= 2 * 3 * models);
}

int main(void) {
    struct itr_diags d;
    itr_diags_init(&d);
    const struct itr_backend *be = itr_backend_find("cuda", &d);
    bool can = be && be->open && be->open(&d) && itr_nvrtc_available();
    if (!can) {
        printf("skipped: the cuda backend cannot run here: %s\n0 passed, 0 failed\n",
               d.n ? d.items[0].msg : "this build has no NVRTC");
        itr_diags_free(&d);
        return 77;
    }
    itr_diags_free(&d);
    RUN(every_model_every_entry);
    return test_summary();
}
