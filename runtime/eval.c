// Evaluation: recall metrics, the field's protocols, and the similarity
// matrix of a split computed through a plan's entry points (runtime/eval.h,
// docs/evaluation.md).
#include "runtime/eval.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ir/env.h"
#include "ir/memplan.h"
#include "runtime/exec.h"
#include "runtime/session.h"

// ------------------------------------------------------------ recall

// NaN scores rank below everything: a model that produced NaN for the
// positive must not be credited with rank 0 (NaN compares false).
static inline double key(float x) { return isnan(x) ? -INFINITY : (double)x; }

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void rank_stats(int64_t *ranks, int64_t n, double *r1, double *r5, double *r10, double *medr, double *meanr) {
    int64_t c1 = 0, c5 = 0, c10 = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        c1 += ranks[i] < 1;
        c5 += ranks[i] < 5;
        c10 += ranks[i] < 10;
        sum += (double)ranks[i];
    }
    if (n == 0) { *r1 = *r5 = *r10 = *medr = *meanr = 0; return; }
    *r1 = 100.0 * (double)c1 / (double)n;
    *r5 = 100.0 * (double)c5 / (double)n;
    *r10 = 100.0 * (double)c10 / (double)n;
    // Sorting integer ranks (one per query) is cheap next to the O(N·M) pass;
    // numpy's median averages the two middle ranks of an even count.
    qsort(ranks, (size_t)n, sizeof *ranks, cmp_i64);
    double med = n % 2 ? (double)ranks[n / 2] : 0.5 * ((double)ranks[n / 2 - 1] + (double)ranks[n / 2]);
    *medr = floor(med) + 1;
    *meanr = sum / (double)n + 1;
}

// sims rows are ld floats apart, so a fold of a larger matrix is evaluated
// in place without copying it.
static void recall_strided(const float *sims, int64_t ld, int64_t n_images, int64_t n_captions, struct itr_recall *out) {
    memset(out, 0, sizeof *out);
    out->n_images = n_images;
    out->n_captions = n_captions;
    int64_t *ri = calloc((size_t)(n_images ? n_images : 1), sizeof *ri);
    int64_t *rt = calloc((size_t)(n_captions ? n_captions : 1), sizeof *rt);
    double *pos = malloc((size_t)(n_captions ? n_captions : 1) * sizeof *pos);
    if (!ri || !rt || !pos) {
        fprintf(stderr, "itr: out of memory computing recall\n");
        abort();
    }
    const int64_t K = ITR_CAPTIONS_PER_IMAGE;
    // i2t: the best positive's position is the number of negatives scoring at
    // least as high as the best positive (pessimistic ties).
    for (int64_t i = 0; i < n_images; i++) {
        const float *row = sims + i * ld;
        double best = -INFINITY;
        int64_t c0 = i * K, c1 = c0 + K < n_captions ? c0 + K : n_captions;
        for (int64_t c = c0; c < c1; c++)
            if (key(row[c]) > best) best = key(row[c]);
        int64_t r = 0;
        for (int64_t c = 0; c < n_captions; c++)
            if ((c < c0 || c >= c1) && key(row[c]) >= best) r++;
        ri[i] = r;
    }
    // t2i: counted row by row so that the matrix is read in memory order.
    for (int64_t c = 0; c < n_captions; c++) {
        int64_t g = c / K;
        pos[c] = g < n_images ? key(sims[g * ld + c]) : INFINITY;
    }
    for (int64_t i = 0; i < n_images; i++) {
        const float *row = sims + i * ld;
        for (int64_t c = 0; c < n_captions; c++)
            if (c / K != i && key(row[c]) >= pos[c]) rt[c]++;
    }
    rank_stats(ri, n_images, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_medr, &out->i2t_meanr);
    rank_stats(rt, n_captions, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_medr, &out->t2i_meanr);
    out->rsum = out->i2t_r1 + out->i2t_r5 + out->i2t_r10 + out->t2i_r1 + out->t2i_r5 + out->t2i_r10;
    free(ri);
    free(rt);
    free(pos);
}

void itr_recall_from_ranks(const int64_t *i2t, int64_t n_images, const int64_t *t2i, int64_t n_captions,
                           struct itr_recall *out) {
    memset(out, 0, sizeof *out);
    out->n_images = n_images;
    out->n_captions = n_captions;
    int64_t *ri = malloc((size_t)(n_images ? n_images : 1) * sizeof *ri);
    int64_t *rt = malloc((size_t)(n_captions ? n_captions : 1) * sizeof *rt);
    if (!ri || !rt) {
        fprintf(stderr, "itr: out of memory computing recall\n");
        abort();
    }
    if (n_images) memcpy(ri, i2t, (size_t)n_images * sizeof *ri);
    if (n_captions) memcpy(rt, t2i, (size_t)n_captions * sizeof *rt);
    rank_stats(ri, n_images, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_medr, &out->i2t_meanr);
    rank_stats(rt, n_captions, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_medr, &out->t2i_meanr);
    out->rsum = out->i2t_r1 + out->i2t_r5 + out->i2t_r10 + out->t2i_r1 + out->t2i_r5 + out->t2i_r10;
    free(ri);
    free(rt);
}

void itr_recall_compute(const float *sims, int64_t n_images, int64_t n_captions, struct itr_recall *out) {
    recall_strided(sims, n_captions, n_images, n_captions, out);
}

// ------------------------------------------------------------ protocols

static const char *const PROTOCOL_NAMES[ITR_PROTOCOL_COUNT] = { "f30k-1k", "coco-1k-5fold", "coco-5k", "all" };

const char *itr_protocol_name(enum itr_protocol p) {
    return (unsigned)p < ITR_PROTOCOL_COUNT ? PROTOCOL_NAMES[p] : "?";
}

bool itr_protocol_from_name(const char *s, enum itr_protocol *out) {
    for (int i = 0; i < ITR_PROTOCOL_COUNT; i++)
        if (s && strcmp(s, PROTOCOL_NAMES[i]) == 0) {
            *out = (enum itr_protocol)i;
            return true;
        }
    return false;
}

#define FOLD_IMAGES 1000
#define COCO_IMAGES 5000

bool itr_protocol_check(enum itr_protocol p, const char *split, int64_t n, struct itr_diags *d) {
    const char *sp = split ? split : "the split";
    if (n <= 0) {
        itr_diag_error(d, ITR_NOLOC, "%s has no images; there is nothing to evaluate", sp);
        return false;
    }
    switch (p) {
    case ITR_PROTOCOL_F30K_1K:
        if (n == FOLD_IMAGES) return true;
        if (n == COCO_IMAGES)
            itr_diag_error(d, ITR_NOLOC,
                           "f30k-1k needs the 1000-image test split; %s has %" PRId64 " images (COCO testall) — use "
                           "--protocol coco-1k-5fold or coco-5k",
                           sp, n);
        else
            itr_diag_error(d, ITR_NOLOC,
                           "f30k-1k needs the 1000-image test split; %s has %" PRId64 " images — use --protocol all "
                           "to evaluate a split of any size",
                           sp, n);
        return false;
    case ITR_PROTOCOL_COCO_1K_5FOLD:
    case ITR_PROTOCOL_COCO_5K:
        if (n == COCO_IMAGES) return true;
        if (n == FOLD_IMAGES)
            itr_diag_error(d, ITR_NOLOC,
                           "%s needs the 5000-image testall split; %s has %" PRId64 " images — use --protocol f30k-1k "
                           "or --split testall",
                           itr_protocol_name(p), sp, n);
        else
            itr_diag_error(d, ITR_NOLOC,
                           "%s needs the 5000-image testall split; %s has %" PRId64 " images — use --split testall, "
                           "or --protocol all to evaluate a split of any size",
                           itr_protocol_name(p), sp, n);
        return false;
    case ITR_PROTOCOL_ALL:
        return true;
    default:
        itr_diag_error(d, ITR_NOLOC, "unknown evaluation protocol %d", (int)p);
        return false;
    }
}

bool itr_protocol_eval(enum itr_protocol p, const float *sims, int64_t n_images, int64_t n_captions,
                       struct itr_recall *out, struct itr_diags *d) {
    memset(out, 0, sizeof *out);
    if (!itr_protocol_check(p, NULL, n_images, d)) return false;
    if (n_captions != ITR_CAPTIONS_PER_IMAGE * n_images) {
        itr_diag_error(d, ITR_NOLOC,
                       "the similarity matrix is %" PRId64 " x %" PRId64 "; evaluation needs %d captions per image "
                       "(%" PRId64 " columns)",
                       n_images, n_captions, ITR_CAPTIONS_PER_IMAGE, ITR_CAPTIONS_PER_IMAGE * n_images);
        return false;
    }
    int64_t n_nan = 0, total = n_images * n_captions;
    for (int64_t i = 0; i < total; i++) n_nan += isnan(sims[i]);
    if (n_nan)
        itr_diag_warning(d, ITR_NOLOC, "%" PRId64 " of %" PRId64 " similarities are NaN; they rank last", n_nan, total);
    if (p != ITR_PROTOCOL_COCO_1K_5FOLD) {
        itr_recall_compute(sims, n_images, n_captions, out);
        return true;
    }
    itr_recall_folds(sims, n_images, n_captions, (int)(n_images / FOLD_IMAGES), out);
    return true;
}

// models.md §5.1.6-7: folds are evaluated independently, every metric
// averaged, and rsum recomputed from the averaged recalls (the originals'
// printed 5-fold rsum is wrong in several repositories).
void itr_recall_folds(const float *sims, int64_t n_images, int64_t n_captions, int folds, struct itr_recall *out) {
    memset(out, 0, sizeof *out);
    if (folds < 1) folds = 1;
    const int64_t fi = n_images / folds, fc = n_captions / folds;
    for (int f = 0; f < folds; f++) {
        struct itr_recall r;
        recall_strided(sims + (int64_t)f * fi * n_captions + f * fc, n_captions, fi, fc, &r);
        itr_recall_accumulate(out, &r, folds);
    }
    out->rsum = out->i2t_r1 + out->i2t_r5 + out->i2t_r10 + out->t2i_r1 + out->t2i_r5 + out->t2i_r10;
    out->n_images = n_images;
    out->n_captions = n_captions;
}

// Adds one fold's metrics, each divided by the number of folds (rsum and
// the counts are the caller's).
void itr_recall_accumulate(struct itr_recall *out, const struct itr_recall *r, int folds) {
    out->i2t_r1 += r->i2t_r1 / folds;
    out->i2t_r5 += r->i2t_r5 / folds;
    out->i2t_r10 += r->i2t_r10 / folds;
    out->t2i_r1 += r->t2i_r1 / folds;
    out->t2i_r5 += r->t2i_r5 / folds;
    out->t2i_r10 += r->t2i_r10 / folds;
    out->i2t_medr += r->i2t_medr / folds;
    out->t2i_medr += r->t2i_medr / folds;
    out->i2t_meanr += r->i2t_meanr / folds;
    out->t2i_meanr += r->t2i_meanr / folds;
}

// ------------------------------------------------------------ progress

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void itr_progress_start(struct itr_progress *pr, bool on, const char *what, int64_t total) {
    pr->on = on;
    pr->tty = on && isatty(fileno(stderr));
    pr->what = what;
    pr->total = total;
    pr->done = 0;
    pr->t0 = pr->last = now_s();
}

static void progress_show(struct itr_progress *pr, bool final) {
    double t = now_s(), el = t - pr->t0;
    double rate = el > 0 ? (double)pr->done / el : 0;
    double eta = rate > 0 ? (double)(pr->total - pr->done) / rate : 0;
    int pct = pr->total ? (int)(100 * pr->done / pr->total) : 100;
    if (pr->tty) {
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%-16s [%s] %3d%% %" PRId64 "/%" PRId64 "  %.0f/s  ETA %.0fs ", pr->what, bar, pct, pr->done,
                pr->total, rate, eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %" PRId64 "/%" PRId64 " (%d%%), %.0f/s, %s %.0fs\n", pr->what, pr->done, pr->total, pct,
                rate, final ? "took" : "ETA", final ? el : eta);
    }
    fflush(stderr);
    pr->last = t;
}

void itr_progress_add(struct itr_progress *pr, int64_t n) {
    pr->done += n;
    if (!pr->on) return;
    bool final = pr->done >= pr->total;
    // A terminal redraws often; a log gets a line every 10 s at most.
    // A log gets no line at all for a stage that took under 2 s.
    double t = now_s(), gap = pr->tty ? 0.2 : 10.0;
    if (final ? pr->tty || t - pr->t0 >= 2.0 : t - pr->last >= gap) progress_show(pr, final);
}

// ------------------------------------------------------------ caption length

bool itr_caption_limit(const struct itr_program *p, const char *entry, const char *input,
                       struct itr_caption_limit *out) {
    memset(out, 0, sizeof *out);
    out->model = p->name ? p->name : "(unnamed)";
    const struct itr_graph *g = NULL;
    for (int k = 0; k < p->n_graphs && !g; k++)
        if (p->graphs[k]->kind == ITR_GRAPH_ENTRY && strcmp(p->graphs[k]->name, entry) == 0) g = p->graphs[k];
    if (!g || g->n_inputs < 1) return false;
    const struct itr_value *v = NULL;
    for (int i = 0; i < g->n_inputs && !v; i++)
        if (!input ? i == 0 : strcmp(g->values[g->inputs[i]].name, input) == 0) v = &g->values[g->inputs[i]];
    if (!v) return false;
    out->entry = g->name;
    out->input = v->name;
    out->loc = v->loc;
    out->token_feats = v->type.dtype == ITR_F32 && v->type.rank == 3;
    itr_type_format(p, &v->type, out->type, sizeof out->type);
    if (v->type.rank < 2) return true;
    // Fixed: the caption axis evaluates without any tensor, from constants
    // and dim defaults alone (as the trainer reads the regions' R).
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_bind_defaults(&b, p);
    int64_t n;
    int32_t unbound;
    if (itr_dim_eval(p, v->type.dims[1], b.value, b.bound, &n, &unbound) && n >= 0) {
        out->len = n;
        if (!itr_dim_is_const(p, v->type.dims[1], NULL)) {
            char ds[64];
            itr_dim_format(p, v->type.dims[1], ds, sizeof ds);
            size_t w = strlen(out->type);
            snprintf(out->type + w, sizeof out->type - w, " where %s = %" PRId64, ds, n);
        }
    }
    itr_bindings_free(&b);
    return true;
}

// "encode_text input 'words': i32[B, 32], models/dime.ir:30:27"
static void limit_source(const struct itr_caption_limit *lim, char *buf, size_t n) {
    int w = snprintf(buf, n, "%s input '%s': %s", lim->entry, lim->input, lim->type);
    if (lim->loc.file && w > 0 && (size_t)w < n)
        snprintf(buf + w, n - (size_t)w, ", %s:%d:%d", lim->loc.file, lim->loc.line, lim->loc.col);
}

bool itr_caption_limit_check(const struct itr_caption_limit *lim, const struct itr_split *s, struct itr_diags *d) {
    if (!lim || lim->len <= 0) return true;
    const int32_t *len = NULL;
    int64_t n = 0;
    if (lim->token_feats && s->token_lengths) {
        len = s->token_lengths->data;
        n = s->token_lengths->shape[0];
    } else if (!lim->token_feats && s->lengths) {
        len = s->lengths;
        n = s->n_captions;
    }
    int64_t first = -1, n_over = 0, longest = -1;
    for (int64_t c = 0; c < n; c++) {
        if (len[c] <= lim->len) continue;
        if (first < 0) first = c;
        if (longest < 0 || len[c] > len[longest]) longest = c;
        n_over++;
    }
    if (first < 0) return true;
    const char *split = s->name ? s->name : "?";
    // The captions file and its line (caption c is line c + 1: only
    // trailing empty lines are dropped), or the lengths file.
    char where[512] = "", src[512];
    if (s->dir && lim->token_feats)
        snprintf(where, sizeof where, "%s/%s_caps_lens.npy: ", s->dir, split);
    else if (s->dir)
        snprintf(where, sizeof where, "%s/%s_caps.txt:%" PRId64 ": ", s->dir, split, first + 1);
    limit_source(lim, src, sizeof src);
    itr_diag_error(d, ITR_NOLOC, "%scaption %" PRId64 " of split '%s' has %d tokens%s; model '%s' reads at most %"
                   PRId64 " (%s)", where, first, split, len[first], lim->token_feats ? "" : " (with <start> and <end>)",
                   lim->model, lim->len, src);
    if (n_over > 1)
        itr_diag_note(d, ITR_NOLOC, "%" PRId64 " captions of split '%s' are longer than %" PRId64 " tokens; the "
                      "longest, caption %" PRId64 ", has %d. Nothing is truncated: recompile the model with a larger "
                      "caption length, or shorten the captions", n_over, split, lim->len, longest, len[longest]);
    else
        itr_diag_note(d, ITR_NOLOC, "nothing is truncated: recompile the model with a larger caption length, or "
                      "shorten the caption");
    return false;
}

// ------------------------------------------------------------ running entries

#define MAX_OUTS 16   // outputs of encode_image or encode_text (check_outs)

struct ctx {
    const struct itr_program *p;
    struct itr_session *s;                 // the parameters, the backend, f64
    const struct itr_graph *enc_img, *enc_txt, *score;
    bool token_feats;
    struct itr_caption_limit text_limit;   // encode_text's caption input
    // Per encode_text output: its axis 1 is the caption's words (the caption
    // input's axis 1, a symbol), which a length bucket trims (below).
    bool word_axis[MAX_OUTS];
    // Captions are scored one length at a time: some output has the words'
    // axis, the caption length is not fixed, and ITRC_NO_LENGTH_BUCKETS=1
    // (A/B: every caption at the split's width) is not set.
    bool length_buckets;
    int calls;
    struct itr_diags *d;
};

// Runs an entry with fresh dim bindings (chunk and tile sizes vary). The
// session reports the weights' warnings (unused tensors) when they are
// loaded; anything else a run warns about is reported once, not per chunk.
static bool run_entry(struct ctx *c, const struct itr_graph *g, const struct itr_tensor_set *in,
                      struct itr_tensor_set *out) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, c->p);
    struct itr_diags tmp;
    itr_diags_init(&tmp);
    bool first = c->calls++ == 0;
    bool ok = itr_session_run_graph(c->s, g, in, &b, out, first ? c->d : &tmp);
    for (int i = 0; i < tmp.n; i++)
        if (tmp.items[i].sev == ITR_SEV_ERROR) itr_diag_error(c->d, tmp.items[i].loc, "%s", tmp.items[i].msg);
    itr_diags_free(&tmp);
    itr_bindings_free(&b);
    return ok;
}

static bool ctx_init(struct ctx *c, struct itr_session *s, struct itr_diags *d) {
    memset(c, 0, sizeof *c);
    const struct itr_program *p = itr_session_program(s);
    c->p = p;
    c->s = s;
    c->d = d;
    c->enc_img = itr_exec_find_entry(p, "encode_image", d);
    c->enc_txt = itr_exec_find_entry(p, "encode_text", d);
    c->score = itr_exec_find_entry(p, "score", d);
    if (!c->enc_img || !c->enc_txt || !c->score) return false;
    if (c->enc_img->n_inputs != 1) {
        itr_diag_error(d, ITR_NOLOC, "entry 'encode_image' must take one input (the regions [N, R, D]); it takes %d",
                       c->enc_img->n_inputs);
        return false;
    }
    if (c->enc_txt->n_inputs != 2) {
        itr_diag_error(d, ITR_NOLOC,
                       "entry 'encode_text' must take two inputs (words [B, L] and lengths [B], or token features "
                       "[B, L, E] and lengths [B]); it takes %d",
                       c->enc_txt->n_inputs);
        return false;
    }
    const struct itr_type *t0 = &c->enc_txt->values[c->enc_txt->inputs[0]].type;
    c->token_feats = t0->dtype == ITR_F32 && t0->rank == 3;
    itr_caption_limit(p, "encode_text", NULL, &c->text_limit);
    bool any_word_axis = false;
    for (int k = 0; t0->rank >= 2 && k < c->enc_txt->n_outputs && k < MAX_OUTS; k++) {
        const struct itr_type *t = &c->enc_txt->values[c->enc_txt->outputs[k]].type;
        c->word_axis[k] = t->rank >= 2 && t->dims[1] == t0->dims[1] && !itr_dim_is_const(p, t0->dims[1], NULL);
        any_word_axis = any_word_axis || c->word_axis[k];
    }
    c->length_buckets = any_word_axis && c->text_limit.len == 0 && !itr_env_flag("ITRC_NO_LENGTH_BUCKETS");
    int want = c->enc_img->n_outputs + c->enc_txt->n_outputs;
    if (c->score->n_inputs != want || c->score->n_outputs < 1) {
        itr_diag_error(d, ITR_NOLOC,
                       "entry 'score' must take the %d output(s) of encode_image followed by the %d output(s) of "
                       "encode_text (%d inputs) and return the similarity block; it takes %d input(s) and returns %d",
                       c->enc_img->n_outputs, c->enc_txt->n_outputs, want, c->score->n_inputs, c->score->n_outputs);
        return false;
    }
    return true;
}

static const char *input_name(const struct itr_graph *g, int i) { return g->values[g->inputs[i]].name; }

// Appends the rows of one encode call's outputs (axis 0) to the full
// embedding tensors full[k], created on the first chunk.
static bool append_rows(struct ctx *c, const struct itr_graph *g, struct itr_tensor_set *chunk, int64_t first,
                        int64_t n, int64_t total, struct itr_tensor **full) {
    for (int k = 0; k < g->n_outputs; k++) {
        const struct itr_tensor *t = chunk->items[k].tensor;
        if (t->rank < 1 || t->shape[0] != n) {
            char sh[128];
            itr_shape_format(t->rank, t->shape, sh, sizeof sh);
            itr_diag_error(c->d, ITR_NOLOC, "entry '%s' returned '%s' with shape %s for %" PRId64
                           " items; its first axis must be the items", g->name, chunk->items[k].name, sh, n);
            return false;
        }
        if (!full[k]) {
            int64_t shape[ITR_MAX_RANK];
            memcpy(shape, t->shape, sizeof shape);
            shape[0] = total;
            full[k] = itr_tensor_new(t->dtype, t->rank, shape);
            if (!full[k]) {
                itr_diag_error(c->d, ITR_NOLOC, "out of memory for the %" PRId64 " embeddings of '%s'", total,
                               chunk->items[k].name);
                return false;
            }
        }
        bool same = full[k]->dtype == t->dtype && full[k]->rank == t->rank;
        for (int r = 1; same && r < t->rank; r++) same = full[k]->shape[r] == t->shape[r];
        if (!same) {
            itr_diag_error(c->d, ITR_NOLOC, "entry '%s' returned '%s' with different shapes for different chunks",
                           g->name, chunk->items[k].name);
            return false;
        }
        size_t row = itr_tensor_nbytes(t) / (size_t)n;
        memcpy((char *)full[k]->data + (size_t)first * row, t->data, itr_tensor_nbytes(t));
    }
    return true;
}

static void free_all(struct itr_tensor **ts, int n) {
    for (int k = 0; k < n; k++) {
        itr_tensor_free(ts[k]);
        ts[k] = NULL;
    }
}

// Ids first, first+1, ..., first+n-1 for the data layer's batch builders.
static int64_t *id_range(int64_t first, int64_t n) {
    int64_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    if (ids)
        for (int64_t i = 0; i < n; i++) ids[i] = first + i;
    return ids;
}

// Chunks are contiguous ranges, so with one feature row per image (im_div 5)
// the mapped rows are wrapped, not copied; otherwise the data layer gathers them.
static struct itr_tensor *regions_chunk(const struct itr_split *s, const int64_t *pick, int64_t first, int64_t n) {
    const struct itr_tensor *ims = s->ims;
    if (pick) return itr_split_regions(s, pick + first, (int)n);
    if (s->im_div == ITR_CAPTIONS_PER_IMAGE) {
        if (first + n > ims->shape[0]) return NULL;
        int64_t shape[3] = { n, ims->shape[1], ims->shape[2] };
        size_t row = (size_t)(ims->shape[1] * ims->shape[2]) * sizeof(float);
        return itr_tensor_wrap(ITR_F32, 3, shape, (char *)ims->data + (size_t)first * row);
    }
    int64_t *ids = id_range(first, n);
    struct itr_tensor *t = ids ? itr_split_regions(s, ids, (int)n) : NULL;
    free(ids);
    return t;
}

// words [n, W] and lengths [n]: W is the model's fixed caption length, else
// the split's longest caption, so that per-word encoder outputs (pair-scoring
// models) of every chunk have one length and concatenate. Padded slots are
// masked by the lengths.
static bool words_chunk(const struct itr_split *s, const int64_t *pick, int64_t first, int64_t n, int64_t fixed,
                        struct itr_tensor **words, struct itr_tensor **lengths) {
    int64_t *ids = pick ? NULL : id_range(first, n);
    const int64_t *use = pick ? pick + first : ids;
    bool ok = use && itr_split_words(s, use, (int)n, fixed > 0 ? fixed : s->max_len, words, lengths);
    free(ids);
    return ok;
}

// token features [n, W, E] and lengths [n], W as for words (the file's L).
static bool feats_chunk(const struct itr_split *s, const int64_t *pick, int64_t first, int64_t n, int64_t fixed,
                        struct itr_tensor **feats, struct itr_tensor **lengths) {
    int64_t *ids = pick ? NULL : id_range(first, n);
    const int64_t *use = pick ? pick + first : ids;
    bool ok = use && itr_split_token_feats(s, use, (int)n, fixed > 0 ? fixed : s->token_feats->shape[1], feats,
                                           lengths);
    free(ids);
    return ok;
}

static int64_t chunk_size(const struct itr_eval_options *opt) {
    return opt && opt->encode_chunk > 0 ? opt->encode_chunk : 128;
}

// pick: the items' ids (n of them, first ignored), or NULL for first..first+n-1.
static bool encode_images(struct ctx *c, const struct itr_split *s, const int64_t *pick, int64_t first, int64_t n,
                          const struct itr_eval_options *opt, struct itr_tensor **full) {
    if (!s->ims || s->ims->rank != 3 || s->ims->dtype != ITR_F32) {
        itr_diag_error(c->d, ITR_NOLOC, "split '%s' has no f32 [N, R, D] region features", s->name ? s->name : "?");
        return false;
    }
    struct itr_progress pr;
    itr_progress_start(&pr, opt && opt->progress && n > 1, "encoding images", n);
    bool ok = true;
    for (int64_t at = 0; ok && at < n; at += chunk_size(opt)) {
        int64_t m = n - at < chunk_size(opt) ? n - at : chunk_size(opt);
        struct itr_tensor_set in, out;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&out);
        struct itr_tensor *r = pick ? regions_chunk(s, pick, at, m) : regions_chunk(s, NULL, first + at, m);
        if (!r) {
            itr_diag_error(c->d, ITR_NOLOC, "cannot take images %" PRId64 "..%" PRId64 " of split '%s' (%" PRId64
                           " feature rows; out of memory or too few rows)", first + at, first + at + m - 1,
                           s->name ? s->name : "?", s->ims->shape[0]);
            ok = false;
        } else {
            itr_tensor_set_put(&in, input_name(c->enc_img, 0), r);
            ok = run_entry(c, c->enc_img, &in, &out) && append_rows(c, c->enc_img, &out, at, m, n, full);
            if (!pick) itr_split_release_regions(s, first + at, m);
        }
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&out);
        itr_progress_add(&pr, m);
    }
    return ok;
}

static bool encode_captions(struct ctx *c, const struct itr_split *s, const int64_t *pick, int64_t first, int64_t n,
                            const struct itr_eval_options *opt, struct itr_tensor **full) {
    if (c->token_feats ? !s->token_feats || !s->token_lengths : !s->tokens || !s->lengths) {
        itr_diag_error(c->d, ITR_NOLOC, "the model's encode_text reads %s, which split '%s' does not have",
                       c->token_feats ? "token features ({split}_caps_feats.npy and _caps_lens.npy)"
                                      : "word ids (encoded captions; is a vocabulary given?)",
                       s->name ? s->name : "?");
        return false;
    }
    struct itr_progress pr;
    itr_progress_start(&pr, opt && opt->progress && n > 1, "encoding captions", n);
    bool ok = true;
    for (int64_t at = 0; ok && at < n; at += chunk_size(opt)) {
        int64_t m = n - at < chunk_size(opt) ? n - at : chunk_size(opt);
        struct itr_tensor_set in, out;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&out);
        struct itr_tensor *a = NULL, *b = NULL;
        int64_t fixed = c->text_limit.len;
        int64_t from = pick ? at : first + at;
        ok = c->token_feats ? feats_chunk(s, pick, from, m, fixed, &a, &b) : words_chunk(s, pick, from, m, fixed, &a, &b);
        if (!ok) {
            itr_diag_error(c->d, ITR_NOLOC, "out of memory for a chunk of %" PRId64 " captions", m);
            itr_tensor_free(a);
            itr_tensor_free(b);
        } else {
            itr_tensor_set_put(&in, input_name(c->enc_txt, 0), a);
            itr_tensor_set_put(&in, input_name(c->enc_txt, 1), b);
            ok = run_entry(c, c->enc_txt, &in, &out) && append_rows(c, c->enc_txt, &out, at, m, n, full);
        }
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&out);
        itr_progress_add(&pr, m);
    }
    return ok;
}

static struct itr_tensor *rows_view(const struct itr_tensor *t, int64_t first, int64_t n) {
    int64_t shape[ITR_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = n;
    size_t row = t->shape[0] ? itr_tensor_nbytes(t) / (size_t)t->shape[0] : 0;
    return itr_tensor_wrap(t->dtype, t->rank, shape, (char *)t->data + (size_t)first * row);
}

static bool check_outs(const struct ctx *c) {
    if (c->enc_img->n_outputs <= MAX_OUTS && c->enc_txt->n_outputs <= MAX_OUTS) return true;
    itr_diag_error(c->d, ITR_NOLOC, "encode_image and encode_text may return at most %d outputs each", MAX_OUTS);
    return false;
}

// Before anything is encoded: every caption of s fits the model.
static bool check_captions(const struct ctx *c, const struct itr_split *s) {
    return itr_caption_limit_check(&c->text_limit, s, c->d);
}

// ------------------------------------------------------------ scoring tiles

struct itr_scorer {
    int n;                                  // members (an ensemble averages their scores)
    struct ctx *c;                          // per member
    struct itr_tensor *(*img)[MAX_OUTS];    // per member: encode_image's outputs for every image
    struct itr_tensor *(*txt)[MAX_OUTS];    // per member: encode_text's outputs for every caption, or for
                                            // captions win0..win0+nwin-1 only (windowed)
    int64_t n_images, n_captions;
    bool windowed;                          // captions encoded tile by tile (caption_cache_bytes)
    int64_t win0, nwin;
    const struct itr_split *split;          // where captions come from (NULL: a text query)
    const int64_t *cap_map;                 // the split's caption of each column (NULL: the same index)
    struct itr_eval_options opt;            // windowed: how they are encoded (no progress)
    double *acc;                            // ensemble accumulator, one tile
    int64_t acc_cap;
    struct itr_diags *d;
};

// Runs member k's score entry on the given rows (views or gathered copies)
// and writes the [ni, nc] block into out (f32; f64 runs rounded).
static bool score_rows(struct ctx *c, struct itr_tensor *const *img, struct itr_tensor *const *txt, int64_t ni,
                       int64_t nc, float *out) {
    int nim = c->enc_img->n_outputs, nt = c->enc_txt->n_outputs;
    struct itr_tensor_set in, res;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&res);
    for (int k = 0; k < nim; k++) itr_tensor_set_put(&in, input_name(c->score, k), img[k]);
    for (int k = 0; k < nt; k++) itr_tensor_set_put(&in, input_name(c->score, nim + k), txt[k]);
    bool ok = run_entry(c, c->score, &in, &res);
    if (ok) {
        const struct itr_tensor *t = res.items[0].tensor;
        if (t->rank != 2 || t->shape[0] != ni || t->shape[1] != nc) {
            char sh[128];
            itr_shape_format(t->rank, t->shape, sh, sizeof sh);
            itr_diag_error(c->d, ITR_NOLOC,
                           "entry 'score' returned '%s' with shape %s for a tile of %" PRId64 " images x %" PRId64
                           " captions; it must be [%" PRId64 ", %" PRId64 "]",
                           res.items[0].name, sh, ni, nc, ni, nc);
            ok = false;
        } else if (t->dtype == ITR_F32) {
            memcpy(out, t->data, (size_t)(ni * nc) * sizeof *out);
        } else {
            for (int64_t q = 0; q < ni * nc; q++) out[q] = (float)itr_tensor_get(t, q);
        }
    }
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&res);
    return ok;
}

// Rows ids[0..n) of t (axis 0), copied; with `cut` > 0, axis 1 cut to its
// first `cut` entries.
static struct itr_tensor *rows_gather_cut(const struct itr_tensor *t, const int64_t *ids, int64_t n, int64_t cut) {
    int64_t shape[ITR_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = n;
    if (cut > 0) shape[1] = cut;
    struct itr_tensor *r = itr_tensor_new(t->dtype, t->rank, shape);
    if (!r) return NULL;
    size_t row = t->shape[0] ? itr_tensor_nbytes(t) / (size_t)t->shape[0] : 0;
    size_t keep = cut > 0 && t->shape[1] ? row / (size_t)t->shape[1] * (size_t)cut : row;
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)r->data + (size_t)i * keep, (const char *)t->data + (size_t)ids[i] * row, keep);
    return r;
}

static struct itr_tensor *rows_gather(const struct itr_tensor *t, const int64_t *ids, int64_t n) {
    return rows_gather_cut(t, ids, n, 0);
}

// Length buckets (docs/evaluation.md, "Length buckets"). Caption encodings
// are padded to the split's longest caption, and a pair-scoring model's cost
// grows with the padded length (SCAN's region-word product is R x L x D per
// pair). A block of captions is scored in groups of one length instead,
// each group's per-word encodings cut to that length; the padded words are
// masked by the lengths either way, so the scores are those of the padded
// block (up to the rounding of sums over fewer padded zeros).
static int32_t caption_len(const struct itr_split *s, bool token_feats, int64_t id) {
    if (token_feats) return (int32_t)itr_tensor_get(s->token_lengths, id);
    return s->lengths[id];
}

// Whether the block's per-word encodings are wider than some of its
// captions need: the model scores by length (ctx) and a split says how long
// each caption is.
static bool length_buckets_apply(const struct itr_scorer *sc, const struct ctx *c, struct itr_tensor *const *txt,
                                 int64_t nc) {
    if (!sc->split || !c->length_buckets || nc < 1) return false;
    if (c->token_feats ? !sc->split->token_lengths : !sc->split->lengths) return false;
    for (int q = 0; q < c->enc_txt->n_outputs && q < MAX_OUTS; q++)
        if (c->word_axis[q] && (txt[q]->rank < 2 || txt[q]->shape[0] != nc)) return false;
    return true;
}

struct by_len { int32_t len; int64_t pos; };

static int cmp_by_len(const void *a, const void *b) {
    const struct by_len *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

// The block scored group by group: its captions sorted by length, one group
// per length, each scored with its words cut to that length and its columns
// put back in place. A caption is therefore always scored at its own
// length, whatever tile it falls in, and the tiling still changes no bit.
// Frees img and txt.
static bool score_buckets(struct itr_scorer *sc, struct ctx *c, struct itr_tensor **img, struct itr_tensor **txt,
                          int64_t ni, const int64_t *cap_ids, int64_t c0, int64_t nc, float *out) {
    int nim = c->enc_img->n_outputs, nt = c->enc_txt->n_outputs;
    struct by_len *order = malloc((size_t)nc * sizeof *order);
    int64_t *pos = malloc((size_t)nc * sizeof *pos);   // the block's columns, by length
    float *part = malloc((size_t)(ni * nc) * sizeof *part);
    bool ok = order && pos && part;
    for (int64_t j = 0; ok && j < nc; j++) {
        int64_t id = cap_ids ? cap_ids[j] : c0 + j;
        order[j] = (struct by_len){ caption_len(sc->split, c->token_feats, sc->cap_map ? sc->cap_map[id] : id), j };
    }
    if (ok) qsort(order, (size_t)nc, sizeof *order, cmp_by_len);
    for (int64_t j = 0; ok && j < nc; j++) pos[j] = order[j].pos;
    int64_t width = 0;
    for (int q = 0; q < nt; q++)
        if (c->word_axis[q]) width = txt[q]->shape[1];
    for (int64_t g0 = 0, g1; ok && g0 < nc; g0 = g1) {
        g1 = g0 + 1;
        while (g1 < nc && order[g1].len == order[g0].len) g1++;
        int64_t n = g1 - g0, cut = order[g1 - 1].len;
        if (cut < 1) cut = 1;
        if (cut > width) cut = width;
        struct itr_tensor *gi[MAX_OUTS] = { 0 }, *gt[MAX_OUTS] = { 0 };
        for (int q = 0; ok && q < nim; q++) ok = (gi[q] = rows_view(img[q], 0, ni)) != NULL;
        for (int q = 0; ok && q < nt; q++)
            ok = (gt[q] = rows_gather_cut(txt[q], pos + g0, n, c->word_axis[q] ? cut : 0)) != NULL;
        if (!ok) {
            itr_diag_error(sc->d, ITR_NOLOC, "out of memory for a tile of %" PRId64 " x %" PRId64, ni, n);
            free_all(gi, nim);
            free_all(gt, nt);
            break;
        }
        ok = score_rows(c, gi, gt, ni, n, part);   // the set took the tensors
        for (int64_t r = 0; ok && r < ni; r++)
            for (int64_t j = 0; j < n; j++) out[r * nc + pos[g0 + j]] = part[r * n + j];
    }
    free(order);
    free(pos);
    free(part);
    free_all(img, nim);
    free_all(txt, nt);
    return ok;
}

// One member's block for image rows and caption rows given either as a
// contiguous range (ids NULL: first..first+n) or as a list of ids.
static bool member_block(struct itr_scorer *sc, int k, const int64_t *img_ids, int64_t i0, int64_t ni,
                         const int64_t *cap_ids, int64_t c0, int64_t nc, float *out) {
    struct ctx *c = &sc->c[k];
    int nim = c->enc_img->n_outputs, nt = c->enc_txt->n_outputs;
    struct itr_tensor *img[MAX_OUTS] = { 0 }, *txt[MAX_OUTS] = { 0 };
    bool ok = true;
    for (int q = 0; ok && q < nim; q++)
        ok = (img[q] = img_ids ? rows_gather(sc->img[k][q], img_ids, ni) : rows_view(sc->img[k][q], i0, ni)) != NULL;
    if (ok && sc->windowed && cap_ids) {
        // Scattered captions: encoded for this block alone (the set takes them).
        if (!encode_captions(c, sc->split, cap_ids, 0, nc, &sc->opt, txt)) {
            free_all(img, nim);
            return false;
        }
    } else {
        int64_t base = sc->windowed ? sc->win0 : 0;
        for (int q = 0; ok && q < nt; q++)
            ok = (txt[q] = cap_ids ? rows_gather(sc->txt[k][q], cap_ids, nc) : rows_view(sc->txt[k][q], c0 - base, nc)) != NULL;
    }
    if (!ok) {
        itr_diag_error(sc->d, ITR_NOLOC, "out of memory for a tile of %" PRId64 " x %" PRId64, ni, nc);
        free_all(img, nim);
        free_all(txt, nt);
        return false;
    }
    if (length_buckets_apply(sc, c, txt, nc))
        return score_buckets(sc, c, img, txt, ni, cap_ids, c0, nc, out);   // frees img and txt
    return score_rows(c, img, txt, ni, nc, out);   // the set took the tensors
}

// Windowed: the captions c0..c0+nc-1 encoded, by every member, unless the
// window already holds them.
static bool caption_window(struct itr_scorer *sc, int64_t c0, int64_t nc) {
    if (c0 >= sc->win0 && c0 + nc <= sc->win0 + sc->nwin) return true;
    sc->nwin = 0;
    for (int k = 0; k < sc->n; k++) {
        free_all(sc->txt[k], sc->c[k].enc_txt->n_outputs);
        if (!encode_captions(&sc->c[k], sc->split, NULL, c0, nc, &sc->opt, sc->txt[k])) return false;
    }
    sc->win0 = c0;
    sc->nwin = nc;
    return true;
}

// An ensemble's block: the members' scores summed in f64 in member order and
// divided once, so a tile holds exactly what the full matrix holds.
static bool scorer_block(struct itr_scorer *sc, const int64_t *img_ids, int64_t i0, int64_t ni,
                         const int64_t *cap_ids, int64_t c0, int64_t nc, float *out) {
    if (sc->windowed && !cap_ids && !caption_window(sc, c0, nc)) return false;
    if (sc->n == 1) return member_block(sc, 0, img_ids, i0, ni, cap_ids, c0, nc, out);
    int64_t n = ni * nc;
    if (n > sc->acc_cap) {
        free(sc->acc);
        sc->acc = malloc((size_t)n * sizeof *sc->acc);
        sc->acc_cap = sc->acc ? n : 0;
        if (!sc->acc) {
            itr_diag_error(sc->d, ITR_NOLOC, "out of memory for the ensemble's tile accumulator");
            return false;
        }
    }
    for (int64_t q = 0; q < n; q++) sc->acc[q] = 0;
    for (int k = 0; k < sc->n; k++) {
        if (!member_block(sc, k, img_ids, i0, ni, cap_ids, c0, nc, out)) {
            itr_diag_note(sc->d, ITR_NOLOC, "while scoring member %d of the ensemble", k + 1);
            return false;
        }
        for (int64_t q = 0; q < n; q++) sc->acc[q] += out[q];
    }
    for (int64_t q = 0; q < n; q++) out[q] = (float)(sc->acc[q] / sc->n);
    return true;
}

bool itr_scorer_tile(struct itr_scorer *sc, int64_t i0, int64_t ni, int64_t c0, int64_t nc, float *out) {
    return scorer_block(sc, NULL, i0, ni, NULL, c0, nc, out);
}

bool itr_scorer_pairs(struct itr_scorer *sc, const int64_t *img_ids, int64_t ni, const int64_t *cap_ids, int64_t nc,
                      float *out) {
    return scorer_block(sc, img_ids, 0, ni, cap_ids, 0, nc, out);
}

int64_t itr_scorer_images(const struct itr_scorer *sc) { return sc->n_images; }
int64_t itr_scorer_captions(const struct itr_scorer *sc) { return sc->n_captions; }

void itr_scorer_free(struct itr_scorer *sc) {
    if (!sc) return;
    for (int k = 0; k < sc->n; k++) {
        if (sc->c[k].enc_img) free_all(sc->img[k], sc->c[k].enc_img->n_outputs);
        if (sc->c[k].enc_txt) free_all(sc->txt[k], sc->c[k].enc_txt->n_outputs);
    }
    free(sc->c);
    free(sc->img);
    free(sc->txt);
    free(sc->acc);
    free(sc);
}

// Every member's caption length is checked before anything is encoded, so
// no member is computed in vain.
bool itr_scorer_new(int n_models, struct itr_session *const *sessions, const struct itr_split *s,
                    const struct itr_eval_options *opt, struct itr_scorer **out, struct itr_diags *d) {
    *out = NULL;
    if (n_models < 1) {
        itr_diag_error(d, ITR_NOLOC, "an ensemble needs at least one model");
        return false;
    }
    struct itr_scorer *sc = calloc(1, sizeof *sc);
    if (sc) {
        sc->c = calloc((size_t)n_models, sizeof *sc->c);
        sc->img = calloc((size_t)n_models, sizeof *sc->img);
        sc->txt = calloc((size_t)n_models, sizeof *sc->txt);
    }
    if (!sc || !sc->c || !sc->img || !sc->txt) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    int64_t n_cap = s->n_captions;
    sc->n = n_models;
    sc->d = d;
    sc->n_images = s->n_images;
    sc->n_captions = n_cap;
    sc->split = s;   // the captions' lengths (length buckets), and a windowed scorer's captions
    bool ok = true;
    for (int k = 0; ok && k < n_models; k++)
        ok = ctx_init(&sc->c[k], sessions[k], d) && check_outs(&sc->c[k]) && check_captions(&sc->c[k], s);
    // The first chunk of captions tells what all of them would take; when it
    // is every caption, it is the encoding kept.
    int64_t probe = n_cap < chunk_size(opt) ? n_cap : chunk_size(opt), bytes = 0;
    struct itr_eval_options quiet = { 0 };
    if (opt) quiet = *opt;
    quiet.progress = false;
    for (int k = 0; ok && k < n_models; k++) {
        ok = encode_images(&sc->c[k], s, NULL, 0, s->n_images, opt, sc->img[k]) &&
             (probe == 0 || encode_captions(&sc->c[k], s, NULL, 0, probe, probe == n_cap ? opt : &quiet, sc->txt[k]));
        for (int q = 0; ok && probe > 0 && q < sc->c[k].enc_txt->n_outputs; q++)
            bytes += (int64_t)itr_tensor_nbytes(sc->txt[k][q]);
        if (!ok && n_models > 1) itr_diag_note(d, ITR_NOLOC, "while encoding for member %d of the ensemble", k + 1);
    }
    int64_t budget = opt && opt->caption_cache_bytes > 0 ? opt->caption_cache_bytes : (int64_t)1 << 30;
    if (ok && probe > 0 && bytes / probe > budget / n_cap) {
        char need[32], have[32];
        itr_format_bytes(bytes / probe * n_cap, need, sizeof need);
        itr_format_bytes(budget, have, sizeof have);
        itr_diag_note(d, ITR_NOLOC, "the captions' encodings would take %s, more than the caption cache (%s, "
                      "--caption-cache-mb): each caption tile is encoded when scoring reaches it", need, have);
        sc->windowed = true;   // the probe is the first window
        sc->win0 = 0;
        sc->nwin = probe;
        sc->opt = quiet;
    } else if (probe < n_cap) {
        // Kept whole: encoded again from the first caption (the probe was one chunk).
        for (int k = 0; ok && k < n_models; k++) {
            free_all(sc->txt[k], sc->c[k].enc_txt->n_outputs);
            ok = encode_captions(&sc->c[k], s, NULL, 0, n_cap, opt, sc->txt[k]);
            if (!ok && n_models > 1) itr_diag_note(d, ITR_NOLOC, "while encoding for member %d of the ensemble", k + 1);
        }
    }
    if (!ok) {
        itr_scorer_free(sc);
        return false;
    }
    *out = sc;
    return true;
}

int64_t itr_eval_tile_images(const struct itr_eval_options *opt) {
    return opt && opt->tile_images > 0 ? opt->tile_images : 128;
}

int64_t itr_eval_tile_captions(const struct itr_eval_options *opt) {
    return opt && opt->tile_captions > 0 ? opt->tile_captions : 1280;
}

// Scores every image against every caption, tile by tile, into sims
// [n_images, n_captions].
static bool score_all(struct itr_scorer *sc, const struct itr_eval_options *opt, float *sims) {
    int64_t ti = itr_eval_tile_images(opt), tc = itr_eval_tile_captions(opt);
    int64_t n_img = sc->n_images, n_txt = sc->n_captions;
    float *tile = malloc((size_t)(ti * tc) * sizeof *tile);
    if (!tile) {
        itr_diag_error(sc->d, ITR_NOLOC, "out of memory for a %" PRId64 " x %" PRId64 " tile", ti, tc);
        return false;
    }
    struct itr_progress pr;
    itr_progress_start(&pr, opt && opt->progress && (n_img > ti || n_txt > tc), "scoring pairs", n_img * n_txt);
    bool ok = true;
    // Captions outermost: a windowed scorer encodes each caption tile once.
    for (int64_t c0 = 0; ok && c0 < n_txt; c0 += tc) {
        int64_t mc = n_txt - c0 < tc ? n_txt - c0 : tc;
        for (int64_t i0 = 0; ok && i0 < n_img; i0 += ti) {
            int64_t mi = n_img - i0 < ti ? n_img - i0 : ti;
            ok = itr_scorer_tile(sc, i0, mi, c0, mc, tile);
            for (int64_t r = 0; ok && r < mi; r++)
                memcpy(sims + (i0 + r) * n_txt + c0, tile + r * mc, (size_t)mc * sizeof *tile);
            itr_progress_add(&pr, mi * mc);
        }
    }
    free(tile);
    return ok;
}

// A query against a gallery: every image of img x every caption of txt,
// tile by tile (one member, embeddings already encoded). Captions of split s
// (NULL: a text query, encoded at its own length): caption j is the split's
// cap_map[j] (NULL: j), which gives its length.
static bool score_tiles(struct ctx *c, struct itr_tensor **img, int64_t n_img, struct itr_tensor **txt, int64_t n_txt,
                        const struct itr_split *s, const int64_t *cap_map, const struct itr_eval_options *opt,
                        float *sims) {
    struct itr_scorer sc = { .n = 1, .c = c, .n_images = n_img, .n_captions = n_txt, .split = s, .cap_map = cap_map,
                             .d = c->d };
    struct itr_tensor *(*im)[MAX_OUTS] = (struct itr_tensor *(*)[MAX_OUTS])img;
    struct itr_tensor *(*tx)[MAX_OUTS] = (struct itr_tensor *(*)[MAX_OUTS])txt;
    sc.img = im;
    sc.txt = tx;
    return score_all(&sc, opt, sims);
}

static float *alloc_sims(int64_t n, int64_t m, struct itr_diags *d) {
    float *s = n > 0 && m > 0 && n <= INT64_MAX / m / 4 ? malloc((size_t)(n * m) * sizeof *s) : NULL;
    if (!s)
        itr_diag_error(d, ITR_NOLOC, "cannot allocate the %" PRId64 " x %" PRId64 " similarity matrix", n, m);
    return s;
}

bool itr_eval_sims_session(struct itr_session *ss, const struct itr_split *s, const struct itr_eval_options *opt,
                           float **sims, struct itr_diags *d) {
    return itr_eval_sims_ensemble_sessions(1, &ss, s, opt, sims, d);
}

bool itr_eval_sims_ensemble_sessions(int n_models, struct itr_session *const *sessions, const struct itr_split *s,
                                     const struct itr_eval_options *opt, float **sims, struct itr_diags *d) {
    *sims = NULL;
    struct itr_scorer *sc;
    if (!itr_scorer_new(n_models, sessions, s, opt, &sc, d)) return false;
    float *out = alloc_sims(s->n_images, s->n_captions, d);
    bool ok = out && score_all(sc, opt, out);
    itr_scorer_free(sc);
    if (!ok) free(out);
    else *sims = out;
    return ok;
}

// ------------------------------------------------------------ ensemble compatibility

static bool input_spec(const struct itr_program *p, const char *entry, int i, char *buf, size_t n) {
    for (int k = 0; k < p->n_graphs; k++) {
        const struct itr_graph *g = p->graphs[k];
        if (g->kind != ITR_GRAPH_ENTRY || strcmp(g->name, entry) != 0 || i >= g->n_inputs) continue;
        const struct itr_type *t = &g->values[g->inputs[i]].type;
        // Dims with defaults are resolved so that two plans naming the same
        // size differently compare equal; the item axis (0) never matters.
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        itr_bind_defaults(&b, p);
        size_t w = 0;
        int r = snprintf(buf, n, "%s[*", itr_dtype_name(t->dtype));
        w = r > 0 ? (size_t)r : 0;
        for (int a = 1; a < t->rank && w < n; a++) {
            int64_t v;
            int32_t unbound;
            if (itr_dim_eval(p, t->dims[a], b.value, b.bound, &v, &unbound))
                r = snprintf(buf + w, n - w, ", %" PRId64, v);
            else {
                char e[64];
                itr_dim_format(p, t->dims[a], e, sizeof e);
                r = snprintf(buf + w, n - w, ", %s", e);
            }
            w += r > 0 ? (size_t)r : 0;
        }
        if (w < n) snprintf(buf + w, n - w, "]");
        itr_bindings_free(&b);
        return true;
    }
    snprintf(buf, n, "(no input)");
    return false;
}

bool itr_eval_check_compatible(const struct itr_program *a, const char *name_a, const struct itr_program *b,
                               const char *name_b, struct itr_diags *d) {
    static const struct { const char *entry; int input; const char *what; } specs[] = {
        { "encode_image", 0, "region features" },
        { "encode_text", 0, "caption input" },
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        char sa[256], sb[256];
        input_spec(a, specs[i].entry, specs[i].input, sa, sizeof sa);
        input_spec(b, specs[i].entry, specs[i].input, sb, sizeof sb);
        if (strcmp(sa, sb) != 0) {
            itr_diag_error(d, ITR_NOLOC,
                           "ensemble members read different data: %s's %s (%s input) is %s, %s's is %s; members "
                           "must be evaluated on the same features",
                           name_a, specs[i].what, specs[i].entry, sa, name_b, sb);
            ok = false;
        }
    }
    return ok;
}

// ------------------------------------------------------------ queries

bool itr_eval_query_text_session(struct itr_session *ss, const struct itr_split *s, const int32_t *ids, int len,
                                 const struct itr_eval_options *opt, float **scores, struct itr_diags *d) {
    return itr_eval_query_text_items(ss, s, ids, len, NULL, s->n_images, opt, scores, d);
}

bool itr_eval_query_text_items(struct itr_session *ss, const struct itr_split *s, const int32_t *ids, int len,
                               const int64_t *items, int64_t n_items, const struct itr_eval_options *opt,
                               float **scores, struct itr_diags *d) {
    *scores = NULL;
    struct ctx c;
    if (!ctx_init(&c, ss, d) || !check_outs(&c)) return false;
    if (c.token_feats) {
        itr_diag_error(d, ITR_NOLOC, "this model's encode_text reads token features, not words; a text query needs a "
                       "model that reads word ids");
        return false;
    }
    if (len < 1) {
        itr_diag_error(d, ITR_NOLOC, "the query has no tokens");
        return false;
    }
    const struct itr_caption_limit *lim = &c.text_limit;
    if (lim->len > 0 && len > lim->len) {
        char src[512];
        limit_source(lim, src, sizeof src);
        itr_diag_error(d, ITR_NOLOC, "the query has %d tokens (with <start> and <end>); model '%s' reads at most %"
                       PRId64 " (%s)", len, lim->model, lim->len, src);
        itr_diag_note(d, ITR_NOLOC, "nothing is truncated: shorten the query, or recompile the model with a larger "
                      "caption length");
        return false;
    }
    // A fixed caption length: the query is padded to it, as the captions are.
    int64_t width = lim->len > 0 ? lim->len : len;
    struct itr_tensor *img[MAX_OUTS] = { 0 }, *txt[MAX_OUTS] = { 0 };
    struct itr_tensor_set in, out;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    struct itr_tensor *w = itr_tensor_new(ITR_I32, 2, (int64_t[]){ 1, width });
    struct itr_tensor *l = itr_tensor_new(ITR_I32, 1, (int64_t[]){ 1 });
    float *res = NULL;
    bool ok = w && l;
    if (ok) {
        memcpy(w->data, ids, (size_t)len * sizeof *ids);
        ((int32_t *)l->data)[0] = len;
        itr_tensor_set_put(&in, input_name(c.enc_txt, 0), w);
        itr_tensor_set_put(&in, input_name(c.enc_txt, 1), l);
        w = l = NULL;
        ok = run_entry(&c, c.enc_txt, &in, &out) && append_rows(&c, c.enc_txt, &out, 0, 1, 1, txt);
    } else {
        itr_diag_error(d, ITR_NOLOC, "out of memory");
    }
    itr_tensor_free(w);
    itr_tensor_free(l);
    ok = ok && encode_images(&c, s, items, 0, n_items, opt, img) && (res = alloc_sims(n_items, 1, d)) != NULL &&
         score_tiles(&c, img, n_items, txt, 1, NULL, NULL, opt, res);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    free_all(img, c.enc_img->n_outputs);
    free_all(txt, c.enc_txt->n_outputs);
    if (!ok) free(res);
    else *scores = res;
    return ok;
}

bool itr_eval_query_image_session(struct itr_session *ss, const struct itr_split *s, int64_t image,
                                  const struct itr_eval_options *opt, float **scores, struct itr_diags *d) {
    return itr_eval_query_image_items(ss, s, image, NULL, s->n_captions, opt, scores, d);
}

bool itr_eval_query_image_items(struct itr_session *ss, const struct itr_split *s, int64_t image,
                                const int64_t *items, int64_t n_items, const struct itr_eval_options *opt,
                                float **scores, struct itr_diags *d) {
    *scores = NULL;
    if (image < 0 || image >= s->n_images) {
        itr_diag_error(d, ITR_NOLOC, "image index %" PRId64 " is out of range; split '%s' has images 0..%" PRId64,
                       image, s->name ? s->name : "?", s->n_images - 1);
        return false;
    }
    struct ctx c;
    if (!ctx_init(&c, ss, d) || !check_outs(&c) || !check_captions(&c, s)) return false;
    struct itr_tensor *img[MAX_OUTS] = { 0 }, *txt[MAX_OUTS] = { 0 };
    float *res = NULL;
    bool ok = encode_images(&c, s, NULL, image, 1, opt, img) && encode_captions(&c, s, items, 0, n_items, opt, txt) &&
              (res = alloc_sims(1, n_items, d)) != NULL && score_tiles(&c, img, 1, txt, n_items, s, items, opt, res);
    free_all(img, c.enc_img->n_outputs);
    free_all(txt, c.enc_txt->n_outputs);
    if (!ok) free(res);
    else *scores = res;
    return ok;
}

// ------------------------------------------------------------ without a session

// The calls above on a session of their own on the default backend, the
// weights copied in (tests and one-off callers; the CLI and the trainer
// hold their session across calls).
static struct itr_session *one_off(const struct itr_program *p, const struct itr_tensor_set *weights,
                                   const struct itr_eval_options *opt, struct itr_diags *d) {
    struct itr_session_options so = { .f64 = opt && opt->f64 };
    struct itr_session *s = itr_session_new(p, NULL, &so, d);
    if (s && weights) itr_session_load(s, weights, NULL, d);
    return s;
}

bool itr_eval_sims(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                   const struct itr_eval_options *opt, float **sims, struct itr_diags *d) {
    *sims = NULL;
    struct itr_session *ss = one_off(p, weights, opt, d);
    bool ok = ss && itr_eval_sims_session(ss, s, opt, sims, d);
    itr_session_free(ss);
    return ok;
}

bool itr_eval_sims_ensemble(int n_models, const struct itr_program *const *progs,
                            const struct itr_tensor_set *const *weights, const struct itr_split *s,
                            const struct itr_eval_options *opt, float **sims, struct itr_diags *d) {
    *sims = NULL;
    struct itr_session **ss = calloc((size_t)(n_models > 0 ? n_models : 1), sizeof *ss);
    if (!ss) { fprintf(stderr, "itr: out of memory\n"); abort(); }
    bool ok = true;
    for (int m = 0; ok && m < n_models; m++) ok = (ss[m] = one_off(progs[m], weights[m], opt, d)) != NULL;
    if (ok) ok = itr_eval_sims_ensemble_sessions(n_models, ss, s, opt, sims, d);
    for (int m = 0; m < n_models; m++) itr_session_free(ss[m]);
    free(ss);
    return ok;
}

bool itr_eval_query_text(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                         const int32_t *ids, int len, const struct itr_eval_options *opt, float **scores,
                         struct itr_diags *d) {
    *scores = NULL;
    struct itr_session *ss = one_off(p, weights, opt, d);
    bool ok = ss && itr_eval_query_text_session(ss, s, ids, len, opt, scores, d);
    itr_session_free(ss);
    return ok;
}

bool itr_eval_query_image(const struct itr_program *p, const struct itr_tensor_set *weights, const struct itr_split *s,
                          int64_t image, const struct itr_eval_options *opt, float **scores, struct itr_diags *d) {
    *scores = NULL;
    struct itr_session *ss = one_off(p, weights, opt, d);
    bool ok = ss && itr_eval_query_image_session(ss, s, image, opt, scores, d);
    itr_session_free(ss);
    return ok;
}

int64_t itr_eval_topk(const float *scores, int64_t n, int64_t k, int64_t *idx) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    int64_t m = 0;
    // Insertion into a sorted list of k: O(n·k), fine for the small k of a
    // query; ties keep the lower index first, NaN ranks last.
    for (int64_t i = 0; i < n; i++) {
        double v = key(scores[i]);
        if (m == k && !(v > key(scores[idx[m - 1]]))) continue;
        int64_t j = m < k ? m++ : m - 1;
        while (j > 0 && v > key(scores[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    return m;
}
