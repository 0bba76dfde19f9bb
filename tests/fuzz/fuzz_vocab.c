// Fuzzes the vocabulary reader (runtime/vocab.c): the input is a vocab.json.
// The reader only takes a path, so the input goes through a scratch file.
// On success every word looks up to its own index, and the vocabulary
// writes and reads back with the same words (the same hash).
#include "fuzz.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab v;
    bool ok = itr_vocab_read(fuzz_write_file("vocab.json", data, size), &v, &d);
    fuzz_check_outcome(ok, &d);
    itr_diags_free(&d);
    if (!ok) {
        FUZZ_CHECK(v.n == 0 && v.words == NULL && v.table == NULL);
        return 0;
    }
    FUZZ_CHECK(v.n >= 4);
    FUZZ_CHECK(strcmp(v.words[ITR_VOCAB_UNK], "<unk>") == 0);
    for (int i = 0; i < v.n; i++) FUZZ_CHECK(itr_vocab_lookup(&v, v.words[i]) == i);

    itr_diags_init(&d);
    char out[256];
    snprintf(out, sizeof out, "%s/out.json", fuzz_dir());
    struct itr_vocab w;
    FUZZ_CHECK(itr_vocab_write(out, &v, &d));
    FUZZ_CHECK(itr_vocab_read(out, &w, &d));
    FUZZ_CHECK(w.n == v.n && itr_vocab_hash(&w) == itr_vocab_hash(&v));
    itr_vocab_free(&w);
    itr_vocab_free(&v);
    itr_diags_free(&d);
    return 0;
}
