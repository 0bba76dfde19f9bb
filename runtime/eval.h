// Evaluation with the field's protocols (models.md §5, docs/evaluation.md).
//
// A model is evaluated through its entry points: encode_image(regions) and
// encode_text(words, lengths) (or token features) run once per item, in
// chunks; score takes the outputs of encode_image followed by the outputs of
// encode_text, sliced to one tile of images x captions, and returns the
// [images, captions] block. Global models' score is a matrix product;
// pair-scoring models (SCAN, SGRAF) run their interaction per tile, so memory
// is bounded by the tile size.
#ifndef ITR_EVAL_H
#define ITR_EVAL_H

#include "ir/ir.h"
#include "runtime/data.h"
#include "runtime/safetensors.h"

struct itr_recall {
    double i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5, t2i_r10, rsum;
    double i2t_medr, t2i_medr, i2t_meanr, t2i_meanr;
    int64_t n_images, n_captions;
};

// sims: [n_images, n_captions] row-major, caption c belongs to image c / 5.
// i2t rank of image i = best 0-based position among its 5 captions; t2i rank
// of caption c = position of image c/5. R@K = 100 * |rank < K| / queries;
// medr = floor(median(rank)) + 1; meanr = mean(rank) + 1. Ties are broken
// against the query: an equal-scoring wrong item ranks ahead (pessimistic,
// deterministic; documented).
void itr_recall_compute(const float *sims, int64_t n_images, int64_t n_captions, struct itr_recall *out);

// Splits sims into `folds` equal diagonal blocks (images f·n/folds.., their
// captions), evaluates each independently and averages every metric; rsum is
// the sum of the six averaged recalls. n_images and n_captions in *out are
// the whole matrix's. coco-1k-5fold is this with 5 folds of 1000 images.
void itr_recall_folds(const float *sims, int64_t n_images, int64_t n_captions, int folds, struct itr_recall *out);

// The metrics from per-query ranks (0-based position of the best match):
// i2t[n_images], t2i[n_captions]; the arrays are not modified.
void itr_recall_from_ranks(const int64_t *i2t, int64_t n_images, const int64_t *t2i, int64_t n_captions,
                           struct itr_recall *out);
// Adds r's metrics divided by folds into out (a fold average; rsum and the
// counts are left to the caller).
void itr_recall_accumulate(struct itr_recall *out, const struct itr_recall *r, int folds);

enum itr_protocol { ITR_PROTOCOL_F30K_1K, ITR_PROTOCOL_COCO_1K_5FOLD, ITR_PROTOCOL_COCO_5K, ITR_PROTOCOL_ALL,
                    ITR_PROTOCOL_COUNT };
const char *itr_protocol_name(enum itr_protocol p);          // "f30k-1k", ..., "all"
bool itr_protocol_from_name(const char *s, enum itr_protocol *out);
// Checks that a protocol applies to a split of n_images images; an
// explanation naming the protocol, the split and the sizes otherwise.
bool itr_protocol_check(enum itr_protocol p, const char *split, int64_t n_images, struct itr_diags *d);
// Applies the protocol to a full similarity matrix: coco-1k-5fold evaluates
// the five 1000-image folds independently and averages every metric (rsum
// recomputed as the sum of the six averaged recalls, models.md §5.1.7).
bool itr_protocol_eval(enum itr_protocol p, const float *sims, int64_t n_images, int64_t n_captions,
                       struct itr_recall *out, struct itr_diags *d);

// ------------------------------------------------------------ caption length
//
// Models declare the caption axis symbolically (words: i32[B, L]), so any
// length binds and batches are padded to their longest caption. A model may
// instead fix it: a constant (words: i32[B, 32]), a config int
// (i32[B, max_words]) or a dim with a default (dim L = 32, or itrc -D L=32).
// Then every batch and evaluation chunk is padded to exactly that length, and
// a longer caption is an error before any work is done (docs/data.md
// "Caption length"); nothing is truncated.
struct itr_caption_limit {
    int64_t len;                // tokens the input holds (with <start> and <end>); 0: not fixed
    bool token_feats;           // the input reads token features [B, L, E], not word ids [B, L]
    const char *model;          // the program's name ("(unnamed)")
    const char *entry, *input;  // "encode_text", "words"
    struct itr_loc loc;         // the input's declaration in the model source
    char type[192];             // "i32[B, 32]", or "i32[B, L] where L = 32"
};

// The limit of `input` of entry `entry` (input NULL: its first input); the
// caption axis is axis 1. False (*out: len 0) when there is no such input.
bool itr_caption_limit(const struct itr_program *p, const char *entry, const char *input,
                       struct itr_caption_limit *out);
// Every caption of s must fit: its encoded length (word ids) or its
// {split}_caps_lens.npy entry (token features). The error names the captions
// file and line, the caption and split, its length, and the model's entry,
// input, type and source location; a note counts the others.
bool itr_caption_limit_check(const struct itr_caption_limit *lim, const struct itr_split *s, struct itr_diags *d);

struct itr_eval_options {
    int64_t tile_images, tile_captions;   // score tile (0: 128 x 1280)
    int64_t encode_chunk;                 // items per encode call (0: 128)
    // Caption encodings larger than this (all captions, all members) are not
    // kept: the scorer encodes the captions of one tile when scoring reaches
    // them, so memory does not grow with the caption count (0: 1 GiB;
    // INT64_MAX: always keep them, for random access such as re-ranking).
    int64_t caption_cache_bytes;
    bool progress;                        // progress bar on stderr when it is a terminal
    bool f64;
};

// Computes the full [n_images, n_captions] similarity matrix of a split with
// the program's entries and weights (*sims malloc'd, caller frees).
bool itr_eval_sims(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                   const struct itr_eval_options *opt, float **sims, struct itr_diags *d);

// Averages the similarity matrices of n_models members (each a program and
// its weights, evaluated on the same split) in f64, then rounds to f32. One
// member gives exactly itr_eval_sims's matrix.
bool itr_eval_sims_ensemble(int n_models, const struct itr_program *const *progs,
                            const struct itr_tensor_set *const *weights, const struct itr_split *s,
                            const struct itr_eval_options *opt, float **sims, struct itr_diags *d);
// Ensemble members must read the same data: encode_image's and encode_text's
// first inputs must agree past the item axis (dims with defaults resolved).
// The error names both members (name_a, name_b: e.g. their plan files).
bool itr_eval_check_compatible(const struct itr_program *a, const char *name_a, const struct itr_program *b,
                               const char *name_b, struct itr_diags *d);

// Queries. A caption given as word ids (<start> ... <end>, len of them)
// scored against every image of s: *scores[n_images] (malloc'd).
bool itr_eval_query_text(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                         const int32_t *ids, int len, const struct itr_eval_options *opt, float **scores,
                         struct itr_diags *d);
// Image `image` of s scored against every caption of s: *scores[n_captions].
bool itr_eval_query_image(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                          int64_t image, const struct itr_eval_options *opt, float **scores, struct itr_diags *d);
// The same calls on sessions (runtime/session.h), which hold the weights,
// the backend and the precision (opt->f64 is then ignored: the session's
// option decides). The calls above make a session of their own per call.
struct itr_session;
bool itr_eval_sims_session(struct itr_session *ss, const struct itr_split *s, const struct itr_eval_options *opt,
                           float **sims, struct itr_diags *d);
bool itr_eval_sims_ensemble_sessions(int n_models, struct itr_session *const *sessions, const struct itr_split *s,
                                     const struct itr_eval_options *opt, float **sims, struct itr_diags *d);
bool itr_eval_query_text_session(struct itr_session *ss, const struct itr_split *s, const int32_t *ids, int len,
                                 const struct itr_eval_options *opt, float **scores, struct itr_diags *d);
bool itr_eval_query_image_session(struct itr_session *ss, const struct itr_split *s, int64_t image,
                                  const struct itr_eval_options *opt, float **scores, struct itr_diags *d);
// The same against only the gallery items items[0..n_items) (images for a
// text query, captions for an image query; items NULL: all of them, in
// order): *scores[n_items]. Only those items are encoded (two-stage queries).
bool itr_eval_query_text_items(struct itr_session *ss, const struct itr_split *s, const int32_t *ids, int len,
                               const int64_t *items, int64_t n_items, const struct itr_eval_options *opt,
                               float **scores, struct itr_diags *d);
bool itr_eval_query_image_items(struct itr_session *ss, const struct itr_split *s, int64_t image,
                                const int64_t *items, int64_t n_items, const struct itr_eval_options *opt,
                                float **scores, struct itr_diags *d);

// ------------------------------------------------------------ scoring tiles
//
// A split encoded once by one model or an ensemble (scores averaged in f64
// in member order, then rounded: exactly the full matrix's values), ready to
// score any tile or any set of pairs. Memory: the embeddings, and one tile.
struct itr_scorer;
bool itr_scorer_new(int n_models, struct itr_session *const *sessions, const struct itr_split *s,
                    const struct itr_eval_options *opt, struct itr_scorer **out, struct itr_diags *d);
// images [i0, i0+ni) x captions [c0, c0+nc) -> out[ni * nc], row-major.
bool itr_scorer_tile(struct itr_scorer *sc, int64_t i0, int64_t ni, int64_t c0, int64_t nc, float *out);
// images img_ids[0..ni) x captions cap_ids[0..nc) -> out[ni * nc].
bool itr_scorer_pairs(struct itr_scorer *sc, const int64_t *img_ids, int64_t ni, const int64_t *cap_ids, int64_t nc,
                      float *out);
int64_t itr_scorer_images(const struct itr_scorer *sc);
int64_t itr_scorer_captions(const struct itr_scorer *sc);
void itr_scorer_free(struct itr_scorer *sc);
// The tile size of opt (defaults 128 images x 1280 captions).
int64_t itr_eval_tile_images(const struct itr_eval_options *opt);
int64_t itr_eval_tile_captions(const struct itr_eval_options *opt);

// Progress on stderr: a bar with items/s and the ETA on a terminal, a line
// every 10 s in a log (none for a stage under 2 s).
struct itr_progress {
    bool on, tty;
    const char *what;
    int64_t total, done;
    double t0, last;
};
void itr_progress_start(struct itr_progress *pr, bool on, const char *what, int64_t total);
void itr_progress_add(struct itr_progress *pr, int64_t n);

// The indices of the k highest scores, best first (ties: lower index first;
// NaN last) into idx[0..k); returns min(k, n).
int64_t itr_eval_topk(const float *scores, int64_t n, int64_t k, int64_t *idx);

#endif
