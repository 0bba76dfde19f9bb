// Fuzzes the .npy reader (runtime/npy.c): the input is a whole .npy file.
// Beyond "no crash, every failure reported": what parses from memory must
// also come out of itr_npy_read and itr_npy_map (aligned or copied) with the
// same dtype, shape and bytes, and must survive a write + read round trip.
#include "fuzz.h"
#include "runtime/npy.h"

static bool same(const struct itr_tensor *a, const struct itr_tensor *b) {
    return a->dtype == b->dtype && a->rank == b->rank && memcmp(a->shape, b->shape, sizeof a->shape) == 0 &&
           memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_parse(data, size, "fuzz.npy", &d);
    fuzz_check_outcome(t != NULL, &d);
    itr_diags_free(&d);
    if (!t) return 0;
    FUZZ_CHECK(t->rank >= 0 && t->rank <= ITR_MAX_RANK);
    FUZZ_CHECK(itr_tensor_nbytes(t) <= size);
    if (t->dtype == ITR_BOOL)   // kernels rely on bools being 0 or 1
        for (size_t i = 0; i < itr_tensor_nbytes(t); i++) FUZZ_CHECK(((const uint8_t *)t->data)[i] <= 1);

    const char *path = fuzz_write_file("in.npy", data, size);
    itr_diags_init(&d);
    struct itr_tensor *r = itr_npy_read(path, &d), *m = itr_npy_map(path, &d);
    FUZZ_CHECK(r && m && d.n_errors == 0);
    FUZZ_CHECK(same(t, r) && same(t, m));
    itr_tensor_free(r);
    itr_npy_unmap(m);

    char out[256];
    snprintf(out, sizeof out, "%s/out.npy", fuzz_dir());
    FUZZ_CHECK(itr_npy_write(out, t, &d));
    struct itr_tensor *w = itr_npy_read(out, &d);
    FUZZ_CHECK(w && d.n_errors == 0 && same(t, w));
    itr_tensor_free(w);
    itr_diags_free(&d);
    itr_tensor_free(t);
    return 0;
}
