// Fuzzes the ONNX tensor reader (frontends/onnx/tensor.c): the input is a
// serialized TensorProto, as the node tests' input_N.pb files hold (raw_data
// or the typed fields, any dims). Beyond "no crash, every failure reported":
// what reads has one of our dtypes and a shape within the rank limit.
#include "frontends/onnx/onnx_import.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_diags d;
    itr_diags_init(&d);
    char *name = NULL;
    struct itr_tensor *t = itr_onnx_tensor_parse("fuzz.pb", data, size, &name, &d);
    fuzz_check_outcome(t != NULL, &d);
    if (t) {
        FUZZ_CHECK(t->rank >= 0 && t->rank <= ITR_MAX_RANK);
        FUZZ_CHECK(t->dtype == ITR_F32 || t->dtype == ITR_F64 || t->dtype == ITR_I32 || t->dtype == ITR_I64 ||
                   t->dtype == ITR_BOOL);
        int64_t n = itr_tensor_numel(t);
        FUZZ_CHECK(n >= 0);
        // Every element readable (ASan checks the buffer's extent).
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += itr_tensor_get(t, i) != 0;
        FUZZ_CHECK(sum <= (double)n);
        if (t->dtype == ITR_BOOL)
            for (int64_t i = 0; i < n; i++) FUZZ_CHECK(((const uint8_t *)t->data)[i] <= 1);
        itr_tensor_free(t);
    }
    free(name);
    itr_diags_free(&d);
    return 0;
}
