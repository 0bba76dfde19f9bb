// The tokenizer's working buffer (struct itr_tokbuf) now lives with the
// tokenizer in ir/tokenize.h; this header stays for the files that include it.
#ifndef ITR_TOKENIZE_INTERNAL_H
#define ITR_TOKENIZE_INTERNAL_H

#include "ir/tokenize.h"

#endif
