// What a data set (docs/data.md) says about the sizes of a model that reads
// it, read from file headers, the vocabulary and the captions without
// loading the features: itrc compile --data DIR binds img_dim, R, V, tok_dim
// (and a fixed caption length) from it instead of -D flags.
//
// Why ir/: itrc (compiler/) may not include runtime/, and these reads are
// small — the .npy headers (ir/npy_header.h), the vocabulary's size and the
// token count of each caption (ir/tokenize.h). Opening a split for training
// (runtime/data.h) checks far more and stays in runtime/.
#ifndef ITR_DATASET_H
#define ITR_DATASET_H

#include "ir/ir.h"

struct itr_dataset_dims {
    int64_t n_regions, feat_dim;   // R and D of {split}_ims.npy f32 [N, R, D]
    char ims_path[600];            // the file they were read from (the first split present)
    int64_t vocab_size;            // 'idx' of DIR/vocab.json; 0 when there is none
    int64_t token_dim;             // E of {split}_caps_feats.npy f32 [n, L, E]; 0 when absent
};

// Reads the splits present of train, dev, test, testall: every
// {split}_ims.npy must be f32 rank 3 with the same R and D (the token
// features likewise with the same E); DIR/vocab.json, when present, must be a
// vocabulary object whose maps have 'idx' entries. Errors name the file and
// what is wrong; false then.
bool itr_dataset_dims_read(const char *dir, struct itr_dataset_dims *out, struct itr_diags *d);

// The longest caption over the splits present, as the runtime counts it: for
// word captions the tokens of {split}_caps.txt with <start> and <end>
// (docs/data.md "Tokenisation"); with token_feats the largest entry of
// {split}_caps_lens.npy. *where gets "DIR/test_caps.txt:18" (the line) or
// "DIR/test_caps_lens.npy: caption 17". False, with an error, when no split
// has the files or one cannot be read.
bool itr_dataset_longest_caption(const char *dir, bool token_feats, int64_t *len, char *where, size_t n_where,
                                 struct itr_diags *d);

#endif
