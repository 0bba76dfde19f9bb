// Data: the precomputed-feature layout the field uses (models.md §1.1–1.2,
// docs/data.md). Region features are memory-mapped, never loaded whole;
// captions are tokenised and encoded once when a split is opened.
#ifndef ITR_DATA_H
#define ITR_DATA_H

#include "ir/ir.h"
#include "ir/tokenize.h"

// ---------------------------------------------------------------- vocabulary

#define ITR_VOCAB_PAD 0
#define ITR_VOCAB_START 1
#define ITR_VOCAB_END 2
#define ITR_VOCAB_UNK 3

struct itr_vocab {
    char **words; int n;             // idx -> word; words[0..3] are <pad> <start> <end> <unk>
    int32_t *table; int table_cap;   // open addressing: word -> idx
};

// Reads the field's vocabulary JSON ({"word2idx": {...}, "idx2word": {...}, "idx": N});
// checks that the two maps agree and that the specials have their indices.
bool    itr_vocab_read(const char *path, struct itr_vocab *v, struct itr_diags *d);
bool    itr_vocab_write(const char *path, const struct itr_vocab *v, struct itr_diags *d);   // atomic
void    itr_vocab_free(struct itr_vocab *v);
int32_t itr_vocab_lookup(const struct itr_vocab *v, const char *word);   // ITR_VOCAB_UNK when absent
// Specials, then every word occurring at least min_count times in the
// captions, by descending count, ties in first-seen order.
bool    itr_vocab_build(const char *const *caption_files, int n_files, int min_count, struct itr_vocab *v,
                        struct itr_diags *d);
// Hash of the idx -> word list (XXH64); plans trained with a vocabulary
// record it, and loading another vocabulary is a hard error.
uint64_t itr_vocab_hash(const struct itr_vocab *v);

// Tokenisation as the GRU models expect (docs/data.md): itr_tokenize and
// itr_tokens_free, in ir/tokenize.h (itrc compile --data counts tokens too).
// Encodes [<start>] + ids + [<end>] into ids[0..max); returns the length, or
// -1 when the caption needs more than max slots. *n_unknown counts OOV words.
int  itr_encode_caption(const struct itr_vocab *v, const char *caption, int32_t *ids, int max, int *n_unknown);

// ---------------------------------------------------------------- splits

struct itr_split {
    char *dir, *name;                 // "data/f30k_precomp", "test"
    struct itr_tensor *ims;           // mapped {split}_ims.npy [N_rows, R, D] f32
    int64_t n_images, n_captions;     // n_captions = 5 * n_images
    int im_div;                       // 5: one row per image; 1: one row per caption
    int64_t n_regions, feat_dim;      // R, D
    char **captions;                  // raw caption text, n_captions
    int32_t *tokens;                  // [n_captions, max_len], padded with <pad>
    int32_t *lengths;                 // [n_captions], <start> and <end> included
    int max_len;
    int64_t n_unknown_words;          // OOV tokens over the split
    struct itr_tensor *token_feats;   // optional {split}_caps_feats.npy [n_captions, L, E] f32 (mapped)
    struct itr_tensor *token_lengths; // optional {split}_caps_lens.npy [n_captions] i32
};

#define ITR_CAPTIONS_PER_IMAGE 5

// Opens DIR/{split}_ims.npy (mapped), DIR/{split}_caps.txt (and the token
// feature files if present) and encodes the captions with v (may be NULL
// when the model reads token features only). Checks every count and shape
// and names the file and what was expected. Prints nothing.
bool itr_split_open(const char *dir, const char *split, const struct itr_vocab *v, struct itr_split *s,
                    struct itr_diags *d);
void itr_split_close(struct itr_split *s);
// Bytes mapped and the resident-memory estimate of an open split (for the
// start-up report: "features: mmap 33.4 GB, resident <= 0.2 GB").
void itr_split_memory(const struct itr_split *s, int64_t *mapped_bytes, int64_t *resident_bytes);

// Batches (new tensors, caller frees):
//   regions [n, R, D] f32 of images ids[0..n)
//   words [n, L] i32 and lengths [n] i32 of captions ids[0..n)
//   token features [n, L, E] f32 + lengths, when the split has them
// L is the batch's longest caption for width 0, else exactly width (a model
// that fixes its caption length, e.g. words: i32[B, 32]); a caption longer
// than width makes the call fail, so check the split first
// (itr_caption_limit_check, runtime/eval.h).
struct itr_tensor *itr_split_regions(const struct itr_split *s, const int64_t *image_ids, int n);
// Tells the kernel that the mapped features of images first..first+n-1 will
// not be read again soon, so a pass over a large split (evaluation encodes
// each image once) does not keep the whole file resident. Later reads map
// the pages in again; nothing happens when the features were read into
// memory instead of mapped.
void itr_split_release_regions(const struct itr_split *s, int64_t first, int64_t n);
bool itr_split_words(const struct itr_split *s, const int64_t *caption_ids, int n, int64_t width,
                     struct itr_tensor **words, struct itr_tensor **lengths);
bool itr_split_token_feats(const struct itr_split *s, const int64_t *caption_ids, int n, int64_t width,
                           struct itr_tensor **feats, struct itr_tensor **lengths);

// Checks a data set (every split present, shapes, dtypes, caption counts vs
// images, vocabulary) and reports every problem; false if any.
bool itr_data_verify(const char *dir, const char *vocab_path, struct itr_diags *d);

// The same checks, and what was found per split (train, dev, test, testall,
// in that order; present is false for a split that failed or is absent) for
// `itr-data verify`'s summary. vocab_path NULL: DIR/vocab.json.
#define ITR_DATA_N_SPLITS 4
struct itr_split_summary {
    char name[16];
    bool present;
    int64_t n_images, n_captions, n_rows, n_regions, feat_dim, token_dim;   // token_dim 0: no token features
    int im_div, max_len;
    int64_t n_unknown;
};
bool itr_data_verify_summary(const char *dir, const char *vocab_path, struct itr_split_summary *out,
                             struct itr_diags *d);

#endif
