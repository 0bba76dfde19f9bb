// PyTorch-exported VSE++ encoders (tests/gen_onnx_fixtures.py: an image
// encoder, and a GRU text encoder with lengths as an input) imported with
// their weights, compiled and run on the reference interpreter at other
// batch and caption sizes than they were exported with, against PyTorch's
// outputs. Also through the printed .ir: parsed back and run with the
// weights the import wrote, as `itrc import` leaves them.
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "frontends/onnx/onnx_import.h"
#include "ir/text.h"
#include "runtime/exec.h"
#include "runtime/npy.h"
#include "test.h"

#define FIX ITR_SOURCE_DIR "/tests/fixtures/onnx/"

static struct itr_tensor *npy(const char *name) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(name, &d);
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return t;
}

// Imports model (through its printed .ir when via_text), runs `entry` on
// the inputs and compares output 'emb' with expected.
static void check_model(const char *model, const char *entry, const char *const *in_names, const char *const *in_files,
                        int n_in, const char *expected, bool via_text) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_onnx_options o;
    itr_onnx_options_init(&o);
    o.params = true;
    o.entry_name = entry;
    struct itr_tensor_set w, in, out;
    itr_tensor_set_init(&w);
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    struct itr_program *p = itr_onnx_import_file(model, &o, &w, NULL, &d);
    CHECK_MSG(p != NULL, "import of %s failed", model);
    if (p && via_text) {
        char *text = itr_print_program(p);
        itr_program_free(p);
        p = text ? itr_parse_string("imported.ir", text, strlen(text), NULL, &d) : NULL;
        CHECK_MSG(p != NULL, "the printed .ir of %s does not parse", model);
        free(text);
    }
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    bool ok = p && itr_compile_program(p, &co, NULL, &d);
    CHECK(ok);
    for (int i = 0; i < n_in; i++) {
        struct itr_tensor *t = npy(in_files[i]);
        CHECK(t != NULL);
        if (t) itr_tensor_set_put(&in, in_names[i], t);
    }
    const struct itr_graph *g = ok ? itr_exec_find_entry(p, entry, &d) : NULL;
    struct itr_dim_bindings b;
    if (p) itr_bindings_init(&b, p);
    struct itr_exec_options eo = { 0 };
    ok = g && itr_exec_run(p, g, &in, &w, &b, &eo, &out, &d);
    CHECK_MSG(ok, "running %s failed", model);
    struct itr_tensor *got = itr_tensor_set_get(&out, "emb"), *want = npy(expected);
    CHECK(want != NULL);
    if (ok && got && want) {
        CHECK(got->rank == want->rank && got->shape[0] == want->shape[0] && got->shape[1] == want->shape[1]);
        for (int64_t i = 0; i < itr_tensor_numel(want); i++)
            CHECK_NEAR(itr_tensor_get(got, i), itr_tensor_get(want, i), 2e-6);
    }
    if (!ok) itr_diags_print(&d, stderr);
    itr_tensor_free(want);
    if (p) itr_bindings_free(&b);
    itr_program_free(p);
    itr_tensor_set_free(&w);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    itr_diags_free(&d);
}

static const char *const img_names[] = { "regions" }, *const img_files[] = { FIX "regions.npy" };
static const char *const txt_names[] = { "words", "lengths" };
static const char *const txt_files[] = { FIX "words.npy", FIX "lengths.npy" };

TEST(vsepp_image_encoder_matches_pytorch) {
    check_model(FIX "vsepp_image.onnx", "encode_image", img_names, img_files, 1, FIX "image_emb.npy", false);
    check_model(FIX "vsepp_image.onnx", "encode_image", img_names, img_files, 1, FIX "image_emb.npy", true);
}

TEST(vsepp_gru_text_encoder_matches_pytorch) {
    check_model(FIX "vsepp_text.onnx", "encode_text", txt_names, txt_files, 2, FIX "text_emb.npy", false);
    check_model(FIX "vsepp_text.onnx", "encode_text", txt_names, txt_files, 2, FIX "text_emb.npy", true);
}

int main(void) {
    RUN(vsepp_image_encoder_matches_pytorch);
    RUN(vsepp_gru_text_encoder_matches_pytorch);
    return test_summary();
}
