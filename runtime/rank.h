// Streaming evaluation and two-stage retrieval (docs/evaluation.md
// "Streaming evaluation", "Two-stage retrieval").
//
// itr_eval_stream scores a split tile by tile (runtime/eval.h's scorer) and
// keeps, per query, only the rank of its ground truth and a running top-K:
// memory is the embeddings, one tile, and O(queries x K), never the
// [images x captions] matrix. It computes exactly what the protocols compute
// on the full matrix (the same tiles, the same tie rule): the tiles holding
// ground-truth pairs are scored first, so that every query's positive score
// is known before any other tile is counted.
//
// itr_eval_rerank runs a first, cheap model (global embeddings) over every
// pair with a running top-N per query, then re-scores only those N
// candidates with a second (pair-scoring) model. A query whose match is not
// among its candidates keeps the first stage's rank (every candidate is
// ranked ahead of every non-candidate).
#ifndef ITR_RANK_H
#define ITR_RANK_H

#include "runtime/eval.h"

struct itr_stream_result {
    struct itr_recall recall;
    int64_t n_images, n_captions;
    int64_t *i2t_rank, *t2i_rank;       // 0-based rank of each query's match: [n_images], [n_captions]
    int64_t k;                          // entries per top-K list
    // Best first, within the query's fold; -1 where a fold has fewer items.
    int64_t *i2t_top;                   // [n_images x k] caption ids
    int64_t *t2i_top;                   // [n_captions x k] image ids
    float *i2t_top_score, *t2i_top_score;
};

// Scores every pair of sc's split under protocol p (coco-1k-5fold: only the
// pairs inside each fold) and fills *out; k >= 1 (10 for the protocols'
// R@10). The caller frees with itr_stream_result_free.
bool itr_eval_stream(struct itr_scorer *sc, enum itr_protocol p, int64_t k, const struct itr_eval_options *opt,
                     struct itr_stream_result *out, struct itr_diags *d);
void itr_stream_result_free(struct itr_stream_result *r);

struct itr_rerank_result {
    struct itr_recall recall;           // after re-scoring
    struct itr_recall first;            // the first stage alone
    int64_t candidates;                 // N
    // Queries whose match is among their N candidates, in percent (the
    // recall ceiling of the second stage), averaged over folds.
    double i2t_ceiling, t2i_ceiling;
    int64_t pairs_rescored;
};

// first: the global model's scorer; second: the pair-scoring model's, on the
// same split. n_candidates >= 1 (clamped to the fold's size).
bool itr_eval_rerank(struct itr_scorer *first, struct itr_scorer *second, enum itr_protocol p, int64_t n_candidates,
                     const struct itr_eval_options *opt, struct itr_rerank_result *out, struct itr_diags *d);

#endif
