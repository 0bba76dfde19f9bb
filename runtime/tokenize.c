// Encoding a caption with a vocabulary (runtime/data.h). The tokenizer
// itself is ir/tokenize.c, shared with itrc compile --data.
#include <stdlib.h>

#include "runtime/data.h"
#include "runtime/tokenize_internal.h"

int itr_encode_caption(const struct itr_vocab *v, const char *caption, int32_t *ids, int max, int *n_unknown) {
    struct itr_tokbuf b = { 0 };
    itr_tokbuf_run(&b, caption);
    int len = b.n_tok + 2, unk = 0;
    if (len > max) {
        itr_tokbuf_free(&b);
        return -1;
    }
    ids[0] = ITR_VOCAB_START;
    for (int i = 0; i < b.n_tok; i++) {
        ids[i + 1] = itr_vocab_lookup(v, b.text + b.tok[i]);
        if (ids[i + 1] == ITR_VOCAB_UNK) unk++;
    }
    ids[len - 1] = ITR_VOCAB_END;
    if (n_unknown) *n_unknown = unk;
    itr_tokbuf_free(&b);
    return len;
}
