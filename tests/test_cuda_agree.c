// Backend agreement on the GPU (backends.md §5): every entry point of every
// model in models/ (the compiled training step included) runs on the cuda
// backend through a session — parameters uploaded, inputs uploaded,
// outputs downloaded — and on the reference interpreter, f32 and f64, at the
// small sizes of the other model tests. The harness is
// tests/test_agree_models.c with its compiled side replaced; f32 outputs
// agree to 1e-4 of max(1, max|ref|), f64 to 1e-12.
//
// It needs a GPU: where the cuda backend cannot open (no driver, no device,
// no NVRTC) it prints why and exits 77 (skipped). tools/gpu-check.sh runs it
// on a machine with one. NOT YET RUN ON A GPU.
#include "backends/backend.h"
#include "backends/cuda/cuda_nvrtc.h"
#include "ir/tensor_set.h"
#include "runtime/session.h"
#include "test.h"

static bool cuda_entry_run(const struct itr_program *p, int gi, const struct itr_graph *g, struct itr_tensor **in,
                           struct itr_tensor *const *params, struct itr_dim_bindings *b, bool f64,
                           struct itr_tensor **out, const char *file, struct itr_diags *d) {
    (void)gi;
    struct itr_tensor_set inputs = { 0 }, outs = { 0 };
    for (int i = 0; i < g->n_inputs; i++)
        if (in[i]) itr_tensor_set_put(&inputs, g->values[g->inputs[i]].name, itr_tensor_clone(in[i]));
    struct itr_session_options so = { .f64 = f64 };
    struct itr_session *s = itr_session_new(p, "cuda", &so, d);
    for (int j = 0; s && j < p->n_params; j++)
        if (params[j]) itr_session_set_param(s, j, itr_tensor_clone(params[j]));
    bool ok = s && itr_session_run_graph(s, g, &inputs, b, &outs, d);
    for (int k = 0; ok && k < g->n_outputs; k++) {
        const struct itr_tensor *got = itr_tensor_set_get(&outs, g->output_names[k]);
        if (!got) FAIL_AT("%s: entry '%s': no output '%s'", file, g->name, g->output_names[k]);
        out[k] = got ? itr_tensor_clone(got) : NULL;
    }
    itr_tensor_set_free(&outs);
    itr_tensor_set_free(&inputs);
    itr_session_free(s);
    return ok;
}

#define AGREE_COMPILED_RUN cuda_entry_run
#define AGREE_BACKEND_NAME "cuda"
#define main agree_models_main
#include "test_agree_models.c"
#undef main

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
