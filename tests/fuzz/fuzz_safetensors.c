// Fuzzes the safetensors reader (runtime/safetensors.c): the input is a whole
// file (8-byte header length, JSON header, data). Beyond "no crash, every
// failure reported": the file path reads the same set, and what was read
// writes and reads back with the same names, dtypes, shapes, bytes and
// metadata.
#include "fuzz.h"
#include "runtime/safetensors.h"

static void check_same(const struct itr_tensor_set *a, const struct itr_tensor_set *b) {
    FUZZ_CHECK(a->n == b->n && a->n_meta == b->n_meta);
    for (int i = 0; i < a->n; i++) {
        const struct itr_tensor *x = a->items[i].tensor, *y = itr_tensor_set_get(b, a->items[i].name);
        FUZZ_CHECK(y != NULL);
        FUZZ_CHECK(x->dtype == y->dtype && x->rank == y->rank && memcmp(x->shape, y->shape, sizeof x->shape) == 0);
        FUZZ_CHECK(memcmp(x->data, y->data, itr_tensor_nbytes(x)) == 0);
    }
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = itr_tensor_set_get_meta(b, a->meta_keys[i]);
        FUZZ_CHECK(v && strcmp(v, a->meta_values[i]) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set s;
    bool ok = itr_safetensors_parse(data, size, "fuzz.safetensors", &s, &d);
    fuzz_check_outcome(ok, &d);
    itr_diags_free(&d);
    if (!ok) {
        FUZZ_CHECK(s.n == 0 && s.n_meta == 0);   // left empty on failure
        return 0;
    }
    for (int i = 0; i < s.n; i++) {
        const struct itr_tensor *t = s.items[i].tensor;
        FUZZ_CHECK(t->rank >= 0 && t->rank <= ITR_MAX_RANK && itr_tensor_nbytes(t) <= size);
        if (t->dtype == ITR_BOOL)
            for (size_t k = 0; k < itr_tensor_nbytes(t); k++) FUZZ_CHECK(((const uint8_t *)t->data)[k] <= 1);
    }

    itr_diags_init(&d);
    struct itr_tensor_set r, w;
    FUZZ_CHECK(itr_safetensors_read(fuzz_write_file("in.safetensors", data, size), &r, &d));
    check_same(&s, &r);
    char out[256];
    snprintf(out, sizeof out, "%s/out.safetensors", fuzz_dir());
    // Names and metadata come from valid JSON, so they are valid UTF-8 and
    // the writer has no reason to refuse them.
    if (!itr_safetensors_write(out, &s, &d)) itr_diags_print(&d, stderr);
    FUZZ_CHECK(d.n_errors == 0);
    FUZZ_CHECK(itr_safetensors_read(out, &w, &d));
    check_same(&s, &w);
    check_same(&w, &s);
    itr_tensor_set_free(&r);
    itr_tensor_set_free(&w);
    itr_tensor_set_free(&s);
    itr_diags_free(&d);
    return 0;
}
