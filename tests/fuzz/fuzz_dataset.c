// Fuzzes what `itrc compile --data DIR` reads (ir/dataset.c): a data set's
// region-feature header, its vocabulary's size and its captions' token
// counts. The input is one split's files packed together: a 2-byte
// little-endian length and test_ims.npy, a 2-byte length and vocab.json,
// then test_caps.txt (lengths past the end are cut to what is there).
//
// Beyond "no crash, every failure reported", the compiler's reads must agree
// with the runtime's (runtime/data.c) where both succeed: R, D and the
// vocabulary size, and the longest caption with the padded length the
// runtime's split gets.
#include <sys/stat.h>

#include "fuzz.h"
#include "ir/dataset.h"
#include "ir/npy_header.h"
#include "runtime/data.h"

static const uint8_t *part(const uint8_t **p, size_t *left, size_t *n) {
    size_t k = *left >= 2 ? (size_t)((*p)[0] | (*p)[1] << 8) : 0;
    size_t skip = *left >= 2 ? 2 : *left;
    *p += skip;
    *left -= skip;
    *n = k < *left ? k : *left;
    const uint8_t *at = *p;
    *p += *n;
    *left -= *n;
    return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data;
    size_t left = size, n_ims, n_voc;
    const uint8_t *ims = part(&p, &left, &n_ims), *voc = part(&p, &left, &n_voc);
    char dir[128], vocab_path[160];
    snprintf(dir, sizeof dir, "%s/ds", fuzz_dir());
    mkdir(dir, 0700);
    fuzz_write_file("ds/test_ims.npy", ims, n_ims);
    fuzz_write_file("ds/vocab.json", voc, n_voc);
    fuzz_write_file("ds/test_caps.txt", p, left);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", dir);

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dataset_dims dims;
    bool dims_ok = itr_dataset_dims_read(dir, &dims, &d);
    fuzz_check_outcome(dims_ok, &d);
    itr_diags_free(&d);
    itr_diags_init(&d);
    int64_t longest = -1;
    char where[700];
    bool len_ok = itr_dataset_longest_caption(dir, false, &longest, where, sizeof where, &d);
    fuzz_check_outcome(len_ok, &d);
    itr_diags_free(&d);

    // The runtime's reading of the same files.
    itr_diags_init(&d);
    struct itr_npy_header h;
    if (dims_ok) {
        FUZZ_CHECK(itr_npy_header_parse(ims, n_ims, "test_ims.npy", &h, &d));
        FUZZ_CHECK(h.rank == 3 && dims.n_regions == h.shape[1] && dims.feat_dim == h.shape[2]);
    }
    struct itr_vocab v;
    bool voc_ok = itr_vocab_read(vocab_path, &v, &d);
    if (voc_ok && dims_ok) FUZZ_CHECK(dims.vocab_size == v.n);
    if (voc_ok) {
        struct itr_split s;
        if (itr_split_open(dir, "test", &v, &s, &d)) {
            FUZZ_CHECK(len_ok && longest == s.max_len);
            itr_split_close(&s);
        }
        itr_vocab_free(&v);
    }
    itr_diags_free(&d);
    return 0;
}
