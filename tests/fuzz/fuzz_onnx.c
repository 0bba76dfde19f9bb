// Fuzzes ONNX model import (frontends/onnx/): the input is a whole .onnx
// file (a ModelProto). Beyond "no crash, every failure reported": a model
// that imports with its float initializers as parameters also imports with
// them as constants, every parameter's value is in the weights set with the
// parameter's dtype, and the program prints and parses back equal (so
// `itrc import` writes a .ir that reads back).
#include "frontends/onnx/onnx_import.h"
#include "fuzz.h"
#include "ir/text.h"

static struct itr_program *import(const uint8_t *data, size_t size, bool params, struct itr_tensor_set *w) {
    struct itr_onnx_options o;
    itr_onnx_options_init(&o);
    o.params = params;
    struct itr_onnx_import_info info = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    itr_tensor_set_init(w);
    struct itr_program *p = itr_onnx_import_bytes("fuzz.onnx", data, size, &o, w, &info, &d);
    fuzz_check_outcome(p != NULL, &d);
    itr_diags_free(&d);
    itr_onnx_import_info_free(&info);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_tensor_set w;
    struct itr_program *p = import(data, size, true, &w);
    if (!p) {
        itr_tensor_set_free(&w);
        return 0;
    }
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_tensor *t = itr_tensor_set_get(&w, p->params[i].name);
        FUZZ_CHECK(t != NULL && t->dtype == p->params[i].type.dtype && t->rank == p->params[i].type.rank);
    }
    itr_tensor_set_free(&w);

    struct itr_tensor_set none;
    struct itr_program *c = import(data, size, false, &none);
    FUZZ_CHECK(c != NULL);
    itr_tensor_set_free(&none);
    itr_program_free(c);

    char *text = itr_print_program(p);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *q = itr_parse_string("printed.ir", text, strlen(text), NULL, &d);
    if (!q) {
        fprintf(stderr, "the imported program's text does not parse back:\n%s\n", text);
        itr_diags_print(&d, stderr);
    }
    FUZZ_CHECK(q != NULL);
    char why[256];
    if (!itr_program_equal(p, q, why, sizeof why)) {
        fprintf(stderr, "the imported program's text parses back different (%s):\n%s\n", why, text);
        FUZZ_CHECK(false);
    }
    itr_program_free(q);
    itr_diags_free(&d);
    free(text);
    itr_program_free(p);
    return 0;
}
