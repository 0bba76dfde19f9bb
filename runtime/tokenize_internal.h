// The tokenizer's working buffer, shared by runtime/tokenize.c and
// runtime/data.c so that encoding a whole split reuses one allocation
// instead of a malloc per token.
#ifndef ITR_TOKENIZE_INTERNAL_H
#define ITR_TOKENIZE_INTERNAL_H

#include <stddef.h>

struct itr_tokbuf {
    char *text; size_t len, cap;   // the tokens, each NUL-terminated
    size_t *tok; int n_tok, cap_tok;   // offset of each token in text
};

// Tokenises caption into b (previous contents dropped).
void itr_tokbuf_run(struct itr_tokbuf *b, const char *caption);
void itr_tokbuf_free(struct itr_tokbuf *b);

#endif
