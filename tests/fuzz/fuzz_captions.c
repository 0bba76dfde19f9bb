// Fuzzes caption reading (runtime/data.c) and the tokenizer
// (runtime/tokenize.c): the input is a {split}_caps.txt. It is read three
// ways, each with what must hold between them:
//  - itr_vocab_build over the file builds a vocabulary (min count 1);
//  - itr_split_open opens the split with that vocabulary beside a region
//    file of the matching row count, so every token is known (no <unk>),
//    and each caption's encoded row is what itr_encode_caption gives;
//  - itr_tokenize gives tokens that are non-empty and hold no spaces.
#include <ctype.h>

#include "fuzz.h"
#include "runtime/data.h"
#include "runtime/npy.h"

// Caption count by read_captions' rule: trailing newlines dropped, then one
// caption per line.
static int64_t count_lines(const uint8_t *data, size_t size) {
    size_t end = size;
    while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r')) end--;
    if (!end) return 0;
    int64_t n = 1;
    for (size_t i = 0; i < end; i++) n += data[i] == '\n';
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *caps = fuzz_write_file("fz_caps.txt", data, size);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab v;
    FUZZ_CHECK(itr_vocab_build(&caps, 1, 1, &v, &d));
    FUZZ_CHECK(v.n >= 4);

    // One region row per image when the count allows it, else one per
    // caption; an empty file gets one row and must be refused.
    int64_t n = count_lines(data, size);
    int64_t rows = n == 0 ? 1 : n % ITR_CAPTIONS_PER_IMAGE == 0 ? n / ITR_CAPTIONS_PER_IMAGE : n;
    struct itr_tensor *ims = itr_tensor_new(ITR_F32, 3, (int64_t[]){ rows, 1, 2 });
    char ims_path[256];
    snprintf(ims_path, sizeof ims_path, "%s/fz_ims.npy", fuzz_dir());
    FUZZ_CHECK(ims && itr_npy_write(ims_path, ims, &d));
    itr_tensor_free(ims);

    struct itr_split s;
    bool ok = itr_split_open(fuzz_dir(), "fz", &v, &s, &d);
    fuzz_check_outcome(ok, &d);
    if (ok) {
        FUZZ_CHECK(s.n_captions == n && n > 0 && n % ITR_CAPTIONS_PER_IMAGE == 0);
        FUZZ_CHECK(s.n_unknown_words == 0);
        int32_t *ids = malloc((size_t)s.max_len * sizeof *ids);
        if (!ids) abort();
        for (int64_t c = 0; c < s.n_captions; c++) {
            int unk = -1;
            int len = itr_encode_caption(&v, s.captions[c], ids, s.max_len, &unk);
            FUZZ_CHECK(len == s.lengths[c] && len >= 2 && unk == 0);
            FUZZ_CHECK(memcmp(ids, s.tokens + c * s.max_len, (size_t)len * sizeof *ids) == 0);
            for (int k = len; k < s.max_len; k++) FUZZ_CHECK(s.tokens[c * s.max_len + k] == ITR_VOCAB_PAD);
            for (int k = 1; k < len - 1; k++) FUZZ_CHECK(ids[k] >= 4 && ids[k] < v.n);
        }
        free(ids);
        itr_split_close(&s);
    }
    itr_vocab_free(&v);
    itr_diags_free(&d);

    // The tokenizer on the first line as one caption.
    size_t m = 0;
    while (m < size && data[m] != '\n' && data[m]) m++;
    char *line = malloc(m + 1);
    if (!line) abort();
    memcpy(line, data, m);
    line[m] = 0;
    char *toks[64];
    int nt = itr_tokenize(line, toks, 64);
    FUZZ_CHECK(nt >= 0 && nt <= 64);
    for (int i = 0; i < nt; i++) {
        FUZZ_CHECK(toks[i][0] != 0);
        for (const char *c = toks[i]; *c; c++) FUZZ_CHECK(!isspace((unsigned char)*c));
    }
    itr_tokens_free(toks, nt);
    free(line);
    return 0;
}
