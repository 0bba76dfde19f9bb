// Streaming evaluation and two-stage retrieval (runtime/rank.h).
#include "runtime/rank.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    return q;
}

// NaN ranks below everything, as in the full-matrix recall (runtime/eval.c).
static inline double key(float x) { return isnan(x) ? -INFINITY : (double)x; }

// ------------------------------------------------------------ running top-K

// Per query a min-heap of its k best (score, id) so far, the worst at the
// root. "Better" is a higher score, then a lower id (itr_eval_topk's order),
// so the lists do not depend on the order tiles arrive in.
struct topk {
    int64_t k;
    int64_t *id;
    float *score;
    int64_t *n;
};

static bool worse(float sa, int64_t ia, float sb, int64_t ib) {
    double a = key(sa), b = key(sb);
    return a < b || (a == b && ia > ib);
}

static void topk_init(struct topk *t, int64_t queries, int64_t k) {
    t->k = k;
    t->id = xcalloc((size_t)(queries * k), sizeof *t->id);
    t->score = xcalloc((size_t)(queries * k), sizeof *t->score);
    t->n = xcalloc((size_t)queries, sizeof *t->n);
}

static void topk_free(struct topk *t) {
    free(t->id);
    free(t->score);
    free(t->n);
}

static void sift_down(int64_t *id, float *sc, int64_t n, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(sc[l], id[l], sc[w], id[w])) w = l;
        if (r < n && worse(sc[r], id[r], sc[w], id[w])) w = r;
        if (w == i) return;
        int64_t ti = id[i]; id[i] = id[w]; id[w] = ti;
        float ts = sc[i]; sc[i] = sc[w]; sc[w] = ts;
        i = w;
    }
}

static inline void topk_offer(struct topk *t, int64_t q, float s, int64_t item) {
    int64_t *id = t->id + q * t->k;
    float *sc = t->score + q * t->k;
    int64_t n = t->n[q];
    if (n < t->k) {
        int64_t i = n;
        id[i] = item;
        sc[i] = s;
        t->n[q] = n + 1;
        while (i > 0) {   // sift up
            int64_t p = (i - 1) / 2;
            if (!worse(sc[i], id[i], sc[p], id[p])) break;
            int64_t ti = id[i]; id[i] = id[p]; id[p] = ti;
            float ts = sc[i]; sc[i] = sc[p]; sc[p] = ts;
            i = p;
        }
        return;
    }
    if (!worse(sc[0], id[0], s, item)) return;
    id[0] = item;
    sc[0] = s;
    sift_down(id, sc, n, 0);
}

// The heap of query q sorted best first into out_id/out_score (k slots,
// -1 / NaN past the end).
static void topk_sorted(struct topk *t, int64_t q, int64_t *out_id, float *out_score) {
    int64_t *id = t->id + q * t->k;
    float *sc = t->score + q * t->k;
    int64_t n = t->n[q];
    for (int64_t m = n; m > 1; m--) {   // heap sort: the worst goes to the end
        int64_t ti = id[0]; id[0] = id[m - 1]; id[m - 1] = ti;
        float ts = sc[0]; sc[0] = sc[m - 1]; sc[m - 1] = ts;
        sift_down(id, sc, m - 1, 0);
    }
    for (int64_t j = 0; j < t->k; j++) {
        out_id[j] = j < n ? id[j] : -1;
        out_score[j] = j < n ? sc[j] : NAN;
    }
}

// ------------------------------------------------------------ one block

// A protocol's independent blocks: coco-1k-5fold's five folds, else the
// whole split. Images [img0, img0 + n_img) with captions 5·img0 onwards.
struct block { int64_t img0, n_img, cap0, n_cap; };

static int blocks_of(enum itr_protocol p, int64_t n_images, int64_t n_captions, struct block *b, int max) {
    int folds = p == ITR_PROTOCOL_COCO_1K_5FOLD ? (int)(n_images / 1000) : 1;
    if (folds < 1) folds = 1;
    if (folds > max) folds = max;
    int64_t fi = n_images / folds, fc = n_captions / folds;
    for (int f = 0; f < folds; f++) b[f] = (struct block){ f * fi, fi, f * fc, fc };
    return folds;
}

struct stream {
    struct itr_scorer *sc;
    const struct itr_eval_options *opt;
    struct itr_diags *d;
    struct itr_progress pr;
    double *best;           // per image: its best positive's key
    double *pos;            // per caption: its positive's key (+inf: its image is not in the split)
    int64_t *ri, *rt;       // ranks being counted
    struct topk ti, tt;     // i2t (queries: images), t2i (queries: captions)
    int64_t nan_scores;
};

static bool is_positive(int64_t i, int64_t c) { return c / ITR_CAPTIONS_PER_IMAGE == i; }

// Counts one scored tile: negatives at least as good as the positive push
// the query's rank (pessimistic ties), and every pair is offered to both
// queries' top-K.
static void count_tile(struct stream *st, int64_t i0, int64_t mi, int64_t c0, int64_t mc, const float *tile) {
    for (int64_t r = 0; r < mi; r++) {
        int64_t i = i0 + r;
        const float *row = tile + r * mc;
        double best = st->best[i];
        int64_t ri = 0;
        for (int64_t q = 0; q < mc; q++) {
            int64_t c = c0 + q;
            double v = key(row[q]);
            st->nan_scores += isnan(row[q]);
            if (!is_positive(i, c)) {
                ri += v >= best;
                st->rt[c] += v >= st->pos[c];
            }
            topk_offer(&st->ti, i, row[q], c);
            topk_offer(&st->tt, c, row[q], i);
        }
        st->ri[i] += ri;
    }
}

static bool holds_positives(int64_t i0, int64_t mi, int64_t c0, int64_t mc) {
    int64_t lo = i0 * ITR_CAPTIONS_PER_IMAGE, hi = (i0 + mi) * ITR_CAPTIONS_PER_IMAGE;
    return c0 < hi && lo < c0 + mc;
}

struct held { int64_t i0, mi, c0, mc; float *s; };

static bool stream_block(struct stream *st, const struct block *b) {
    int64_t ti = itr_eval_tile_images(st->opt), tc = itr_eval_tile_captions(st->opt);
    int64_t ie = b->img0 + b->n_img, ce = b->cap0 + b->n_cap;
    for (int64_t c = b->cap0; c < ce; c++) st->pos[c] = INFINITY;
    for (int64_t i = b->img0; i < ie; i++) st->best[i] = -INFINITY;
    // Pass 1: the tiles on the diagonal, kept until every positive is known.
    struct held *h = NULL;
    int64_t nh = 0, caph = 0;
    bool ok = true;
    // Captions outermost in both passes: a windowed scorer (eval.h,
    // caption_cache_bytes) encodes each caption tile once per pass.
    for (int64_t c0 = b->cap0; ok && c0 < ce; c0 += tc) {
        int64_t mc = ce - c0 < tc ? ce - c0 : tc;
        for (int64_t i0 = b->img0; ok && i0 < ie; i0 += ti) {
            int64_t mi = ie - i0 < ti ? ie - i0 : ti;
            if (!holds_positives(i0, mi, c0, mc)) continue;
            if (nh == caph) {
                caph = caph ? 2 * caph : 16;
                h = realloc(h, (size_t)caph * sizeof *h);
                if (!h) { fprintf(stderr, "itr: out of memory\n"); abort(); }
            }
            float *s = malloc((size_t)(mi * mc) * sizeof *s);
            if (!s) {
                itr_diag_error(st->d, ITR_NOLOC, "out of memory for a %" PRId64 " x %" PRId64 " tile", mi, mc);
                ok = false;
                break;
            }
            h[nh++] = (struct held){ i0, mi, c0, mc, s };
            ok = itr_scorer_tile(st->sc, i0, mi, c0, mc, s);
            for (int64_t r = 0; ok && r < mi; r++)
                for (int64_t q = 0; q < mc; q++)
                    if (is_positive(i0 + r, c0 + q)) {
                        double v = key(s[r * mc + q]);
                        st->pos[c0 + q] = v;
                        if (v > st->best[i0 + r]) st->best[i0 + r] = v;
                    }
            itr_progress_add(&st->pr, mi * mc);
        }
    }
    for (int64_t k = 0; ok && k < nh; k++) count_tile(st, h[k].i0, h[k].mi, h[k].c0, h[k].mc, h[k].s);
    for (int64_t k = 0; k < nh; k++) free(h[k].s);
    free(h);
    // Pass 2: every other tile, counted and dropped.
    float *tile = ok ? malloc((size_t)(ti * tc) * sizeof *tile) : NULL;
    if (ok && !tile) {
        itr_diag_error(st->d, ITR_NOLOC, "out of memory for a %" PRId64 " x %" PRId64 " tile", ti, tc);
        ok = false;
    }
    for (int64_t c0 = b->cap0; ok && c0 < ce; c0 += tc) {
        int64_t mc = ce - c0 < tc ? ce - c0 : tc;
        for (int64_t i0 = b->img0; ok && i0 < ie; i0 += ti) {
            int64_t mi = ie - i0 < ti ? ie - i0 : ti;
            if (holds_positives(i0, mi, c0, mc)) continue;
            ok = itr_scorer_tile(st->sc, i0, mi, c0, mc, tile);
            if (ok) count_tile(st, i0, mi, c0, mc, tile);
            itr_progress_add(&st->pr, mi * mc);
        }
    }
    free(tile);
    return ok;
}

// The protocol's metrics from the ranks: per block, averaged over blocks,
// rsum from the averaged recalls (itr_recall_folds's rule).
static void blocks_recall(const struct block *b, int nb, const int64_t *ri, const int64_t *rt, int64_t ni, int64_t nc,
                          struct itr_recall *out) {
    memset(out, 0, sizeof *out);
    for (int f = 0; f < nb; f++) {
        struct itr_recall r;
        itr_recall_from_ranks(ri + b[f].img0, b[f].n_img, rt + b[f].cap0, b[f].n_cap, &r);
        if (nb == 1) *out = r;
        else itr_recall_accumulate(out, &r, nb);
    }
    out->rsum = out->i2t_r1 + out->i2t_r5 + out->i2t_r10 + out->t2i_r1 + out->t2i_r5 + out->t2i_r10;
    out->n_images = ni;
    out->n_captions = nc;
}

static bool check_split(enum itr_protocol p, int64_t n_images, int64_t n_captions, struct itr_diags *d) {
    if (!itr_protocol_check(p, NULL, n_images, d)) return false;
    if (n_captions == ITR_CAPTIONS_PER_IMAGE * n_images) return true;
    itr_diag_error(d, ITR_NOLOC, "the split has %" PRId64 " images and %" PRId64 " captions; evaluation needs %d "
                   "captions per image", n_images, n_captions, ITR_CAPTIONS_PER_IMAGE);
    return false;
}

void itr_stream_result_free(struct itr_stream_result *r) {
    if (!r) return;
    free(r->i2t_rank);
    free(r->t2i_rank);
    free(r->i2t_top);
    free(r->t2i_top);
    free(r->i2t_top_score);
    free(r->t2i_top_score);
    memset(r, 0, sizeof *r);
}

bool itr_eval_stream(struct itr_scorer *sc, enum itr_protocol p, int64_t k, const struct itr_eval_options *opt,
                     struct itr_stream_result *out, struct itr_diags *d) {
    memset(out, 0, sizeof *out);
    int64_t ni = itr_scorer_images(sc), nc = itr_scorer_captions(sc);
    if (!check_split(p, ni, nc, d)) return false;
    if (k < 1) k = 1;
    struct block b[8];
    int nb = blocks_of(p, ni, nc, b, 8);
    struct stream st = { .sc = sc, .opt = opt, .d = d };
    st.best = xcalloc((size_t)ni, sizeof *st.best);
    st.pos = xcalloc((size_t)nc, sizeof *st.pos);
    st.ri = xcalloc((size_t)ni, sizeof *st.ri);
    st.rt = xcalloc((size_t)nc, sizeof *st.rt);
    topk_init(&st.ti, ni, k);
    topk_init(&st.tt, nc, k);
    int64_t total = 0;
    for (int f = 0; f < nb; f++) total += b[f].n_img * b[f].n_cap;
    itr_progress_start(&st.pr, opt && opt->progress, "scoring pairs", total);
    bool ok = true;
    for (int f = 0; ok && f < nb; f++) ok = stream_block(&st, &b[f]);
    if (ok) {
        out->n_images = ni;
        out->n_captions = nc;
        out->k = k;
        blocks_recall(b, nb, st.ri, st.rt, ni, nc, &out->recall);
        out->i2t_rank = st.ri;
        out->t2i_rank = st.rt;
        st.ri = st.rt = NULL;
        out->i2t_top = xcalloc((size_t)(ni * k), sizeof *out->i2t_top);
        out->t2i_top = xcalloc((size_t)(nc * k), sizeof *out->t2i_top);
        out->i2t_top_score = xcalloc((size_t)(ni * k), sizeof *out->i2t_top_score);
        out->t2i_top_score = xcalloc((size_t)(nc * k), sizeof *out->t2i_top_score);
        for (int64_t i = 0; i < ni; i++) topk_sorted(&st.ti, i, out->i2t_top + i * k, out->i2t_top_score + i * k);
        for (int64_t c = 0; c < nc; c++) topk_sorted(&st.tt, c, out->t2i_top + c * k, out->t2i_top_score + c * k);
        if (st.nan_scores)
            itr_diag_warning(d, ITR_NOLOC, "%" PRId64 " of %" PRId64 " similarities are NaN; they rank last",
                             st.nan_scores, total);
    }
    free(st.best);
    free(st.pos);
    free(st.ri);
    free(st.rt);
    topk_free(&st.ti);
    topk_free(&st.tt);
    return ok;
}

// ------------------------------------------------------------ two stages

bool itr_eval_rerank(struct itr_scorer *first, struct itr_scorer *second, enum itr_protocol p, int64_t n_candidates,
                     const struct itr_eval_options *opt, struct itr_rerank_result *out, struct itr_diags *d) {
    memset(out, 0, sizeof *out);
    int64_t ni = itr_scorer_images(first), nc = itr_scorer_captions(first);
    if (itr_scorer_images(second) != ni || itr_scorer_captions(second) != nc) {
        itr_diag_error(d, ITR_NOLOC, "the two stages see different splits (%" PRId64 " x %" PRId64 " and %" PRId64
                       " x %" PRId64 ")", ni, nc, itr_scorer_images(second), itr_scorer_captions(second));
        return false;
    }
    struct block b[8];
    int nb = blocks_of(p, ni, nc, b, 8);
    int64_t fold_img = b[0].n_img, fold_cap = b[0].n_cap;
    int64_t ki = n_candidates < fold_cap ? n_candidates : fold_cap;   // i2t: captions per image query
    int64_t kt = n_candidates < fold_img ? n_candidates : fold_img;   // t2i: images per caption query
    int64_t k = ki > kt ? ki : kt;
    struct itr_stream_result s1;
    if (!itr_eval_stream(first, p, k, opt, &s1, d)) return false;
    out->first = s1.recall;
    out->candidates = n_candidates;
    int64_t *ri = xcalloc((size_t)ni, sizeof *ri), *rt = xcalloc((size_t)nc, sizeof *rt);
    float *sc = xcalloc((size_t)k, sizeof *sc);
    int64_t in_i = 0, in_t = 0;
    struct itr_progress pr;
    itr_progress_start(&pr, opt && opt->progress, "re-scoring", ni * ki + nc * kt);
    bool ok = true;
    // text -> image: caption c against its kt candidate images.
    for (int64_t c = 0; ok && c < nc; c++) {
        const int64_t *cand = s1.t2i_top + c * k;
        ok = itr_scorer_pairs(second, cand, kt, &c, 1, sc);
        int64_t g = c / ITR_CAPTIONS_PER_IMAGE, at = -1;
        for (int64_t j = 0; j < kt; j++)
            if (cand[j] == g) at = j;
        if (at < 0) {
            rt[c] = s1.t2i_rank[c];
        } else {
            in_t++;
            double v = key(sc[at]);
            int64_t r = 0;
            for (int64_t j = 0; j < kt; j++) r += j != at && key(sc[j]) >= v;
            rt[c] = r;
        }
        itr_progress_add(&pr, kt);
    }
    // image -> text: image i against its ki candidate captions.
    for (int64_t i = 0; ok && i < ni; i++) {
        const int64_t *cand = s1.i2t_top + i * k;
        ok = itr_scorer_pairs(second, &i, 1, cand, ki, sc);
        double best = -INFINITY;
        bool any = false;
        for (int64_t j = 0; j < ki; j++)
            if (is_positive(i, cand[j])) {
                any = true;
                if (key(sc[j]) > best) best = key(sc[j]);
            }
        if (!any) {
            ri[i] = s1.i2t_rank[i];
        } else {
            in_i++;
            int64_t r = 0;
            for (int64_t j = 0; j < ki; j++) r += !is_positive(i, cand[j]) && key(sc[j]) >= best;
            ri[i] = r;
        }
        itr_progress_add(&pr, ki);
    }
    if (ok) {
        blocks_recall(b, nb, ri, rt, ni, nc, &out->recall);
        out->i2t_ceiling = ni ? 100.0 * (double)in_i / (double)ni : 0;
        out->t2i_ceiling = nc ? 100.0 * (double)in_t / (double)nc : 0;
        out->pairs_rescored = ni * ki + nc * kt;
    }
    free(ri);
    free(rt);
    free(sc);
    itr_stream_result_free(&s1);
    return ok;
}
