// The caption tokenizer (docs/data.md "Tokenisation"): lower case, words and
// punctuation split the way nltk's word_tokenize splits English captions.
// In ir/ because both the runtime (encoding splits) and itrc compile --data
// (the longest caption of a data set, ir/dataset.h) count tokens with it.
#ifndef ITR_TOKENIZE_H
#define ITR_TOKENIZE_H

#include <stddef.h>

// Returns the number of tokens written into tokens[] (each a malloc'd string;
// free with itr_tokens_free); at most max tokens.
int  itr_tokenize(const char *caption, char **tokens, int max);
void itr_tokens_free(char **tokens, int n);

// The tokenizer's working buffer, so that tokenising many captions reuses
// one allocation instead of a malloc per token.
struct itr_tokbuf {
    char *text; size_t len, cap;   // the tokens, each NUL-terminated
    size_t *tok; int n_tok, cap_tok;   // offset of each token in text
};

// Tokenises caption into b (previous contents dropped).
void itr_tokbuf_run(struct itr_tokbuf *b, const char *caption);
void itr_tokbuf_free(struct itr_tokbuf *b);

#endif
