// The training loop (runtime/trainer.h).
//
// Exact resumption rests on every source of variation being a pure function
// of what the checkpoint records: the data order of an epoch comes from
// (seed, epoch), dropout from (seed, step) (itr_train_step_seed), the lr from
// (schedule, step, epoch), and the parameters and optimizer state are stored
// bitwise. The per-epoch loss sum is stored too (as %.17g, which round-trips
// a double), so a resumed epoch logs the same mean as an uninterrupted one.
#include "ir/memplan.h"
#include "runtime/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ir/bind.h"
#include "ir/fileio.h"
#include "ir/rng.h"
#include "runtime/data.h"
#include "runtime/eval.h"
#include "runtime/init.h"
#include "runtime/safetensors.h"
#include "runtime/session.h"
#include "runtime/train.h"

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    return p;
}

static char *xstrdup(const char *s) {
    char *c = strdup(s);
    if (!c) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    return c;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---------------------------------------------------------------- schedule

static bool parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return false;
    *out = v;
    return true;
}

bool itr_lr_parse(const char *text, struct itr_lr_options *o, struct itr_diags *d) {
    if (strcmp(text, "constant") == 0) { o->kind = ITR_LR_CONSTANT; return true; }
    if (strcmp(text, "cosine") == 0) { o->kind = ITR_LR_COSINE; return true; }
    if (strncmp(text, "step:", 5) == 0) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", text + 5);
        char *colon = strchr(buf, ':');
        double gamma = 0.1;
        if (colon) {
            *colon = 0;
            char *end;
            gamma = strtod(colon + 1, &end);
            if (!colon[1] || *end || !(gamma > 0) || !isfinite(gamma)) {
                itr_diag_error(d, ITR_NOLOC, "--lr-schedule '%s': GAMMA must be a positive number", text);
                return false;
            }
        }
        int64_t k;
        if (!parse_i64(buf, &k) || k < 1) {
            itr_diag_error(d, ITR_NOLOC, "--lr-schedule '%s': K (epochs between decays) must be a positive integer",
                           text);
            return false;
        }
        o->kind = ITR_LR_STEP;
        o->step_epochs = k;
        o->gamma = gamma;
        return true;
    }
    itr_diag_error(d, ITR_NOLOC, "unknown lr schedule '%s' (accepted: constant, step:K, step:K:GAMMA, cosine)", text);
    return false;
}

void itr_lr_format(const struct itr_lr_options *o, char *buf, size_t n) {
    switch (o->kind) {
    case ITR_LR_STEP: {
        // The shortest form that reads back as the same double: checkpoints
        // store this text and resume from it.
        char g[40];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(g, sizeof g, "%.*g", prec, o->gamma);
            if (strtod(g, NULL) == o->gamma) break;
        }
        snprintf(buf, n, "step:%" PRId64 ":%s", o->step_epochs, g);
        break;
    }
    case ITR_LR_COSINE: snprintf(buf, n, "cosine"); break;
    default: snprintf(buf, n, "constant"); break;
    }
}

double itr_lr_at(const struct itr_lr_options *o, int64_t step, int64_t epoch, int64_t total_steps) {
    double lr = o->lr;
    if (o->kind == ITR_LR_STEP && o->step_epochs > 0) lr *= pow(o->gamma, (double)(epoch / o->step_epochs));
    if (o->kind == ITR_LR_COSINE && total_steps > 0) {
        double t = (double)(step - 1) / (double)total_steps;
        if (t > 1) t = 1;
        lr *= 0.5 * (1 + cos(M_PI * t));
    }
    if (o->warmup_steps > 0 && step < o->warmup_steps) lr *= (double)step / (double)o->warmup_steps;
    return lr;
}

void itr_epoch_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm) {
    uint64_t salt = itr_rng_salt_of_name("itr.shuffle") + (uint64_t)epoch;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(itr_rng_uniform_f64(seed, salt, (uint64_t)i) * (double)(i + 1));
        if (j > i) j = i;
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

// ---------------------------------------------------------------- inputs

// The extra_* sources are a second batch of the same size, of captions
// drawn uniformly at random from the train split (and their images): DIME's
// extra negatives (models.md §2.8). extra_X is fed as X would be.
enum source { SRC_REGIONS, SRC_WORDS, SRC_LENGTHS, SRC_TFEATS, SRC_TLENS, SRC_EPOCH, SRC_XREGIONS, SRC_XWORDS,
              SRC_XLENGTHS, SRC_XTFEATS, SRC_XTLENS, SRC_OPTION };

static const char *const SOURCE_NAMES[] = { "regions", "words", "lengths", "token_feats", "token_lengths", "epoch",
                                            "extra_regions", "extra_words", "extra_lengths", "extra_token_feats",
                                            "extra_token_lengths" };

// The plain source an extra_* source mirrors (itself for the others).
static enum source plain_source(enum source k) {
    return k >= SRC_XREGIONS && k <= SRC_XTLENS ? (k == SRC_XREGIONS ? SRC_REGIONS : (enum source)(k - SRC_XREGIONS))
                                                 : k;
}

struct binding {
    const char *name;
    enum source src;
    enum itr_dtype dtype;
    int64_t width;   // words, token_feats: the model's fixed caption length (0: the batch's longest)
};

// Maps each input of the train entry to what feeds it; unknown names are
// errors listing what the data provides.
static bool plan_inputs(const struct itr_graph *g, const struct itr_split *s, struct binding *b, struct itr_diags *d) {
    bool ok = true;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        b[i].name = v->name;
        b[i].dtype = v->type.dtype;
        b[i].src = SRC_OPTION;
        b[i].width = 0;
        if (!strcmp(v->name, "lr") || !strcmp(v->name, "step") || !strcmp(v->name, "seed")) continue;
        int k = -1;
        for (int j = 0; j < (int)(sizeof SOURCE_NAMES / sizeof *SOURCE_NAMES); j++)
            if (!strcmp(v->name, SOURCE_NAMES[j])) k = j;
        if (k < 0) {
            itr_diag_error(d, ITR_NOLOC, "the train entry's input '%s' is not something the data provides; it "
                           "provides: regions, words, lengths, token_feats and token_lengths (when the split has "
                           "token features), the same with an extra_ prefix (as many random train captions as the "
                           "batch has, e.g. extra_regions) and epoch (0-based, i64[])", v->name);
            ok = false;
            continue;
        }
        b[i].src = (enum source)k;
        enum source pk = plain_source((enum source)k);
        if ((pk == SRC_TFEATS || pk == SRC_TLENS) && !s->token_feats) {
            itr_diag_error(d, ITR_NOLOC, "the train entry reads '%s' but %s has no token features "
                           "(%s_caps_feats.npy, %s_caps_lens.npy)", v->name, s->dir, s->name, s->name);
            ok = false;
        }
        if (k == SRC_EPOCH && v->type.rank != 0) {
            itr_diag_error(d, ITR_NOLOC, "the train entry's input 'epoch' must be a scalar (i64[])");
            ok = false;
        }
    }
    return ok;
}

// Region features whose shape differs from the train entry's regions type
// would fail on the first batch with a less direct message.
static bool check_feature_dims(const struct itr_program *p, const struct itr_graph *g, const struct itr_split *s,
                               struct itr_diags *d) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_bind_defaults(&b, p);
    bool ok = true;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        if ((strcmp(v->name, "regions") && strcmp(v->name, "extra_regions")) || v->type.rank != 3) continue;
        const int64_t have[2] = { s->n_regions, s->feat_dim };
        const char *what[2] = { "regions per image", "feature dim" };
        for (int k = 0; k < 2; k++) {
            int64_t want;
            int32_t unbound;
            if (!itr_dim_eval(p, v->type.dims[1 + k], b.value, b.bound, &want, &unbound)) continue;
            if (want != have[k]) {
                char ts[256];
                itr_type_format(p, &v->type, ts, sizeof ts);
                itr_diag_error(d, ITR_NOLOC, "%s/%s_ims.npy: %s %" PRId64 ", but the model's train entry reads "
                               "regions: %s with %s %" PRId64 " (recompile the model with matching sizes, e.g. "
                               "-D img_dim=%" PRId64 ")", s->dir, s->name, what[k], have[k], ts, what[k], want,
                               s->feat_dim);
                ok = false;
            }
        }
    }
    itr_bindings_free(&b);
    return ok;
}

static struct itr_tensor *scalar(enum itr_dtype dt, int64_t v) {
    struct itr_tensor *t = itr_tensor_new(dt, 0, NULL);
    if (!t) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    if (dt == ITR_I64) ((int64_t *)t->data)[0] = v;
    else itr_tensor_set(t, 0, (double)v);
    return t;
}

// A train entry that fixes its caption length (words: i32[B, 32]) gets
// batches padded to it; every train caption must fit, and the captions of
// the evaluation split must fit encode_text. Checked before the run directory
// is touched, so an over-long caption leaves nothing behind.
static bool check_caption_lengths(const struct itr_program *p, const struct itr_graph *g, struct binding *b,
                                  const struct itr_split *tr, const struct itr_split *dev, struct itr_diags *d) {
    bool ok = true;
    int64_t words_w = 0, feats_w = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        enum source k = plain_source(b[i].src);
        if (k != SRC_WORDS && k != SRC_TFEATS) continue;
        struct itr_caption_limit lim;
        itr_caption_limit(p, g->name, b[i].name, &lim);
        lim.token_feats = k == SRC_TFEATS;
        if (!itr_caption_limit_check(&lim, tr, d)) ok = false;
        if (k == SRC_WORDS) words_w = lim.len;
        else feats_w = lim.len;
    }
    // lengths and token_lengths come from the same batch call as their
    // tensors; extra captions are padded like the batch's.
    for (int i = 0; i < g->n_inputs; i++) {
        enum source k = plain_source(b[i].src);
        if (k == SRC_WORDS || k == SRC_LENGTHS) b[i].width = words_w;
        if (k == SRC_TFEATS || k == SRC_TLENS) b[i].width = feats_w;
    }
    struct itr_caption_limit lim;
    if (itr_caption_limit(p, "encode_text", NULL, &lim) && !itr_caption_limit_check(&lim, dev, d)) ok = false;
    return ok;
}

// The longest caption among caps[0, n) and xcaps[0, n) (NULL: none), in
// word ids (token features if feats): without a fixed caption length a
// batch and its extra captions are padded to one width, so that a model can
// concatenate them.
static int64_t longest(const struct itr_split *s, bool feats, const int64_t *caps, const int64_t *xcaps, int n) {
    int64_t m = 1;
    for (int k = 0; k < 2; k++) {
        const int64_t *c = k ? xcaps : caps;
        for (int i = 0; c && i < n; i++) {
            int64_t len = feats ? ((const int32_t *)s->token_lengths->data)[c[i]] : s->lengths[c[i]];
            if (len > m) m = len;
        }
    }
    return m;
}

// The batch of captions caps[0, n); with extra_* inputs also n extra
// captions, uniform over the split, drawn from (seed, step) so that a resumed
// run draws the same ones. It reads only its arguments and the split
// (which nothing writes after it is opened), so worker threads may build
// several batches at once. fail: tests, the first tensor cannot be built.
static bool make_batch(const struct itr_split *s, const struct binding *b, int nb, const int64_t *caps, int n,
                       int64_t epoch, uint64_t seed, int64_t step, bool fail, struct itr_tensor_set *in,
                       struct itr_diags *d) {
    bool extra = false;
    for (int i = 0; i < nb; i++) extra |= b[i].src >= SRC_XREGIONS && b[i].src <= SRC_XTLENS;
    int64_t *ims = xmalloc((size_t)n * 2 * sizeof *ims), *xcaps = NULL, *xims = ims + n;
    for (int i = 0; i < n; i++) ims[i] = caps[i] / ITR_CAPTIONS_PER_IMAGE;
    if (extra) {
        xcaps = xmalloc((size_t)n * sizeof *xcaps);
        uint64_t salt = itr_rng_salt_of_name("itr.extra") + (uint64_t)step;
        for (int i = 0; i < n; i++) {
            int64_t c = (int64_t)(itr_rng_uniform_f64(seed, salt, (uint64_t)i) * (double)s->n_captions);
            xcaps[i] = c < s->n_captions ? c : s->n_captions - 1;
            xims[i] = xcaps[i] / ITR_CAPTIONS_PER_IMAGE;
        }
    }
    bool ok = true;
    struct itr_tensor *w = NULL, *l = NULL, *tf = NULL, *tl = NULL, *xw = NULL, *xl = NULL, *xtf = NULL, *xtl = NULL;
    for (int i = 0; ok && i < nb; i++) {
        struct itr_tensor *t = NULL;
        enum source k = plain_source(b[i].src);
        bool x = k != b[i].src;
        const int64_t *cs = x ? xcaps : caps;
        struct itr_tensor **tw = x ? &xw : &w, **tlen = x ? &xl : &l, **tfe = x ? &xtf : &tf, **tfl = x ? &xtl : &tl;
        int64_t width = b[i].width;
        if (width == 0 && extra && (k == SRC_WORDS || k == SRC_LENGTHS || k == SRC_TFEATS || k == SRC_TLENS))
            width = longest(s, k == SRC_TFEATS || k == SRC_TLENS, caps, xcaps, n);
        switch (k) {
        case SRC_REGIONS: t = itr_split_regions(s, x ? xims : ims, n); break;
        case SRC_WORDS: case SRC_LENGTHS:
            if (!*tw && !itr_split_words(s, cs, n, width, tw, tlen)) { ok = false; break; }
            t = itr_tensor_clone(k == SRC_WORDS ? *tw : *tlen);
            break;
        case SRC_TFEATS: case SRC_TLENS:
            if (!*tfe && !itr_split_token_feats(s, cs, n, width, tfe, tfl)) { ok = false; break; }
            t = itr_tensor_clone(k == SRC_TFEATS ? *tfe : *tfl);
            break;
        case SRC_EPOCH: t = scalar(b[i].dtype, epoch); break;
        case SRC_OPTION: continue;
        default: break;
        }
        if (fail) {
            itr_tensor_free(t);
            t = NULL;
        }
        if (!t) {
            itr_diag_error(d, ITR_NOLOC, "cannot build the batch's '%s' from %s/%s", b[i].name, s->dir, s->name);
            ok = false;
            break;
        }
        itr_tensor_set_put(in, b[i].name, t);
    }
    struct itr_tensor *all[8] = { w, l, tf, tl, xw, xl, xtf, xtl };
    for (int i = 0; i < 8; i++) itr_tensor_free(all[i]);
    free(ims);
    free(xcaps);
    return ok;
}

// ---------------------------------------------------------------- prefetching (--workers)

// The captions of batch bi of an epoch: perm[bi * B, ...), *n of them (the
// last batch keeps the remainder).
static const int64_t *batch_ids(const int64_t *perm, int64_t n_captions, int64_t batch_size, int64_t bi, int *n) {
    int64_t first = bi * batch_size;
    *n = (int)(n_captions - first < batch_size ? n_captions - first : batch_size);
    return perm + first;
}

// The rest of an epoch's batches, built ahead by worker threads while the
// step runs. Job j is batch first_batch + j of the epoch at global step
// step0 + j; workers claim jobs in order and put job j in slot j % depth,
// which is free once the loop has taken job j - depth, so at most depth
// batches exist ahead of the step. The loop takes the jobs in order, and
// each batch is a pure function of (seed, epoch, step, the split), so the
// loop sees exactly the tensors, and for a batch that fails exactly the
// diagnostics, that building it in place would give; after a failure no
// later job is started (those already started are built and dropped).
struct prefetch_slot {
    bool ready, ok;
    struct itr_tensor_set in;
    struct itr_diags d;
};

struct prefetch {
    // Read-only while the threads run.
    const struct itr_split *s;
    const struct binding *b;
    int nb;
    const int64_t *perm;
    int64_t epoch, first_batch, step0, batch_size, fail_step;
    uint64_t seed;
    int depth, n_threads;
    struct prefetch_slot *slots;
    pthread_t *threads;
    // Guarded by mu.
    pthread_mutex_t mu;
    pthread_cond_t can_build, built;
    int64_t next_job, taken;   // the next job to claim; jobs the loop has taken
    int64_t n_jobs;            // lowered to just past a job that failed: the loop stops there
    bool stop;
};

static void *prefetch_main(void *arg) {
    struct prefetch *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && q->next_job < q->n_jobs && q->next_job >= q->taken + q->depth)
            pthread_cond_wait(&q->can_build, &q->mu);
        if (q->stop || q->next_job >= q->n_jobs) break;
        int64_t j = q->next_job++;
        pthread_mutex_unlock(&q->mu);
        struct prefetch_slot built;
        itr_tensor_set_init(&built.in);
        itr_diags_init(&built.d);
        int n;
        const int64_t *ids = batch_ids(q->perm, q->s->n_captions, q->batch_size, q->first_batch + j, &n);
        built.ok = make_batch(q->s, q->b, q->nb, ids, n, q->epoch, q->seed, q->step0 + j,
                              q->step0 + j == q->fail_step, &built.in, &built.d);
        built.ready = true;
        pthread_mutex_lock(&q->mu);
        q->slots[j % q->depth] = built;
        if (!built.ok && j + 1 < q->n_jobs) q->n_jobs = j + 1;
        pthread_cond_broadcast(&q->built);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void prefetch_free(struct prefetch *q) {
    for (int i = 0; i < q->depth; i++)
        if (q->slots[i].ready) {
            itr_tensor_set_free(&q->slots[i].in);
            itr_diags_free(&q->slots[i].d);
        }
    free(q->slots);
    free(q->threads);
    pthread_cond_destroy(&q->built);
    pthread_cond_destroy(&q->can_build);
    pthread_mutex_destroy(&q->mu);
}

// Starts up to `workers` threads on the jobs; false if none could start
// (the caller then builds the batches itself: fewer threads, same batches).
static bool prefetch_start(struct prefetch *q, int workers, const struct itr_split *s, const struct binding *b,
                           int nb, const int64_t *perm, int64_t epoch, int64_t first_batch, int64_t n_jobs,
                           int64_t step0, int64_t batch_size, uint64_t seed, int64_t fail_step) {
    *q = (struct prefetch){ .s = s, .b = b, .nb = nb, .perm = perm, .epoch = epoch, .first_batch = first_batch,
                            .n_jobs = n_jobs, .step0 = step0, .batch_size = batch_size, .fail_step = fail_step,
                            .seed = seed };
    q->depth = (int)(workers < n_jobs ? workers : n_jobs);
    q->slots = calloc((size_t)q->depth, sizeof *q->slots);
    q->threads = calloc((size_t)q->depth, sizeof *q->threads);
    if (!q->slots || !q->threads) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->can_build, NULL);
    pthread_cond_init(&q->built, NULL);
    for (int t = 0; t < q->depth; t++) {
        if (pthread_create(&q->threads[q->n_threads], NULL, prefetch_main, q) != 0) break;
        q->n_threads++;
    }
    if (q->n_threads == 0) prefetch_free(q);
    return q->n_threads > 0;
}

// The next job's batch, into in (initialised here), and its diagnostics
// into d; step is the global step the loop is about to run, which must be
// the job's.
static bool prefetch_take(struct prefetch *q, int64_t step, struct itr_tensor_set *in, struct itr_diags *d) {
    pthread_mutex_lock(&q->mu);
    int64_t j = q->taken;
    if (q->step0 + j != step) {
        fprintf(stderr, "itr-run: internal error: prefetched batch of step %" PRId64 " taken at step %" PRId64 "\n",
                q->step0 + j, step);
        abort();
    }
    struct prefetch_slot *sl = &q->slots[j % q->depth];
    while (!sl->ready) pthread_cond_wait(&q->built, &q->mu);
    struct prefetch_slot got = *sl;
    sl->ready = false;
    q->taken = j + 1;
    pthread_cond_broadcast(&q->can_build);
    pthread_mutex_unlock(&q->mu);
    *in = got.in;
    for (int i = 0; i < got.d.n; i++) {
        const struct itr_diag *g = &got.d.items[i];
        if (g->sev == ITR_SEV_ERROR) itr_diag_error(d, g->loc, "%s", g->msg);
        else if (g->sev == ITR_SEV_WARNING) itr_diag_warning(d, g->loc, "%s", g->msg);
        else itr_diag_note(d, g->loc, "%s", g->msg);
    }
    itr_diags_free(&got.d);
    return got.ok;
}

// Stops the workers (those mid-batch finish it first), joins them and frees
// every batch not taken.
static void prefetch_stop(struct prefetch *q) {
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->can_build);
    pthread_mutex_unlock(&q->mu);
    for (int t = 0; t < q->n_threads; t++) pthread_join(q->threads[t], NULL);
    prefetch_free(q);
}

// ---------------------------------------------------------------- checkpoints and logs

struct cursor {
    int64_t epoch, batch, step;   // next epoch / batch to run; steps done
    double loss_sum;              // of the epoch so far
    int64_t loss_n;
    double best_rsum;             // NAN: none yet
    int64_t best_epoch;
};

struct run_config {
    uint64_t seed;
    int64_t batch_size, epochs;
    struct itr_lr_options lr;
    const char *fingerprint;
    char vocab_hash[17];
};

static void set_meta_i64(struct itr_tensor_set *s, const char *k, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    itr_tensor_set_meta(s, k, buf);
}

static void set_meta_f64(struct itr_tensor_set *s, const char *k, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    itr_tensor_set_meta(s, k, buf);
}

// What a checkpoint holds: the session's parameters and optimizer state,
// and whatever else the starting set carried (its metadata, tensors that are
// no parameter), all as views: nothing is copied to be written.
static void checkpoint_view(const struct itr_session *s, const struct itr_tensor_set *rest, struct itr_tensor_set *v) {
    itr_tensor_set_init(v);
    for (int k = 0; k < rest->n_meta; k++) itr_tensor_set_meta(v, rest->meta_keys[k], rest->meta_values[k]);
    for (int k = 0; k < rest->n; k++) {
        const struct itr_tensor *t = rest->items[k].tensor;
        struct itr_tensor *w = itr_tensor_wrap(t->dtype, t->rank, t->shape, t->data);
        if (!w) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
        itr_tensor_set_put(v, rest->items[k].name, w);
    }
    itr_session_save(s, v);
}

static bool write_state(struct itr_tensor_set *state, const char *path, const struct run_config *c,
                        const struct cursor *cur, const struct itr_program *p, struct itr_diags *d);

static bool write_checkpoint(const struct itr_session *s, const struct itr_tensor_set *rest, const char *path,
                             const struct run_config *c, const struct cursor *cur, const struct itr_program *p,
                             struct itr_diags *d) {
    struct itr_tensor_set v;
    checkpoint_view(s, rest, &v);
    bool ok = write_state(&v, path, c, cur, p, d);
    itr_tensor_set_free(&v);
    return ok;
}

static bool write_state(struct itr_tensor_set *state, const char *path, const struct run_config *c,
                        const struct cursor *cur, const struct itr_program *p, struct itr_diags *d) {
    char buf[128];
    itr_tensor_set_meta(state, "itr.plan_fingerprint", c->fingerprint);
    itr_tensor_set_meta(state, "itr.vocab_hash", c->vocab_hash);
    if (p->name) itr_tensor_set_meta(state, "itr.model", p->name);
    snprintf(buf, sizeof buf, "%" PRIu64, c->seed);
    itr_tensor_set_meta(state, "itr.seed", buf);
    set_meta_i64(state, "itr.batch_size", c->batch_size);
    set_meta_i64(state, "itr.epochs", c->epochs);
    itr_lr_format(&c->lr, buf, sizeof buf);
    itr_tensor_set_meta(state, "itr.lr_schedule", buf);
    set_meta_f64(state, "itr.lr", c->lr.lr);
    set_meta_i64(state, "itr.warmup_steps", c->lr.warmup_steps);
    set_meta_i64(state, "itr.epoch", cur->epoch);
    set_meta_i64(state, "itr.batch", cur->batch);
    set_meta_i64(state, "itr.step", cur->step);
    set_meta_f64(state, "itr.epoch_loss_sum", cur->loss_sum);
    set_meta_i64(state, "itr.epoch_loss_n", cur->loss_n);
    set_meta_f64(state, "itr.best_rsum", cur->best_rsum);
    set_meta_i64(state, "itr.best_epoch", cur->best_epoch);
    return itr_safetensors_write(path, state, d);
}

static bool meta_i64(const struct itr_tensor_set *s, const char *path, const char *k, int64_t *v,
                     struct itr_diags *d) {
    const char *m = itr_tensor_set_get_meta(s, k);
    if (m && parse_i64(m, v)) return true;
    itr_diag_error(d, ITR_NOLOC, "%s: not a training checkpoint: its metadata has no valid '%s'", path, k);
    return false;
}

static bool meta_f64(const struct itr_tensor_set *s, const char *path, const char *k, double *v,
                     struct itr_diags *d) {
    const char *m = itr_tensor_set_get_meta(s, k);
    char *end = NULL;
    if (m) *v = strtod(m, &end);
    if (m && *m && end && !*end) return true;
    itr_diag_error(d, ITR_NOLOC, "%s: not a training checkpoint: its metadata has no valid '%s'", path, k);
    return false;
}

// Restores the cursor and the run's configuration from a checkpoint,
// refusing one of another plan or vocabulary.
static bool read_resume(const struct itr_tensor_set *s, const char *path, struct run_config *c, struct cursor *cur,
                        struct itr_diags *d) {
    const char *fp = itr_tensor_set_get_meta(s, "itr.plan_fingerprint");
    const char *vh = itr_tensor_set_get_meta(s, "itr.vocab_hash");
    bool ok = true;
    if (!fp || strcmp(fp, c->fingerprint)) {
        itr_diag_error(d, ITR_NOLOC, "%s was written by a plan with fingerprint %s, but this plan's fingerprint is %s; "
                       "it cannot be resumed with this plan", path, fp ? fp : "(none)", c->fingerprint);
        ok = false;
    }
    if (!vh || strcmp(vh, c->vocab_hash)) {
        itr_diag_error(d, ITR_NOLOC, "%s was trained with vocabulary hash %s, but the vocabulary now has hash %s",
                       path, vh ? vh : "(none)", c->vocab_hash);
        ok = false;
    }
    if (!ok) return false;
    int64_t seed = 0;
    const char *sched = itr_tensor_set_get_meta(s, "itr.lr_schedule");
    ok = meta_i64(s, path, "itr.seed", &seed, d) && meta_i64(s, path, "itr.batch_size", &c->batch_size, d) &&
         meta_i64(s, path, "itr.epochs", &c->epochs, d) && meta_f64(s, path, "itr.lr", &c->lr.lr, d) &&
         meta_i64(s, path, "itr.warmup_steps", &c->lr.warmup_steps, d) &&
         meta_i64(s, path, "itr.epoch", &cur->epoch, d) && meta_i64(s, path, "itr.batch", &cur->batch, d) &&
         meta_i64(s, path, "itr.step", &cur->step, d) &&
         meta_f64(s, path, "itr.epoch_loss_sum", &cur->loss_sum, d) &&
         meta_i64(s, path, "itr.epoch_loss_n", &cur->loss_n, d) &&
         meta_f64(s, path, "itr.best_rsum", &cur->best_rsum, d) &&
         meta_i64(s, path, "itr.best_epoch", &cur->best_epoch, d);
    if (ok && !sched) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a training checkpoint: its metadata has no 'itr.lr_schedule'", path);
        ok = false;
    }
    if (ok) ok = itr_lr_parse(sched, &c->lr, d);
    if (ok && (c->batch_size < 1 || c->epochs < 1 || cur->epoch < 0 || cur->batch < 0 || cur->step < 0)) {
        itr_diag_error(d, ITR_NOLOC, "%s: its training cursor is out of range", path);
        ok = false;
    }
    c->seed = (uint64_t)seed;
    return ok;
}

// Keeps only the log lines of epochs before `epochs` (the lines a resumed
// run will not write again), so a run killed between its checkpoint and its
// log line logs every epoch exactly once.
static bool trim_log(const char *path, int64_t epochs, bool csv, struct itr_diags *d) {
    uint8_t *buf;
    size_t len;
    if (access(path, F_OK) != 0) return true;
    struct itr_diags scratch;
    itr_diags_init(&scratch);
    bool read = itr_file_read_all(path, &buf, &len, &scratch);
    itr_diags_free(&scratch);
    if (!read) return true;
    char *out = xmalloc(len + 1);
    size_t w = 0;
    for (char *line = (char *)buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        long long e = -1;
        bool keep = csv ? (sscanf(line, "%lld,", &e) != 1 || e <= epochs) : (sscanf(line, "{\"epoch\": %lld", &e) == 1 && e <= epochs);
        if (keep) { memcpy(out + w, line, n); w += n; }
        line += n;
    }
    const void *parts[1] = { out };
    bool ok = itr_file_write_atomic(path, parts, &w, 1, d);
    free(out);
    free(buf);
    return ok;
}

static bool append_line(const char *path, const char *line, struct itr_diags *d) {
    FILE *f = fopen(path, "a");
    if (!f || fputs(line, f) < 0 || fflush(f) != 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot append to it: %s", path, strerror(errno));
        if (f) fclose(f);
        return false;
    }
    fsync(fileno(f));
    fclose(f);
    return true;
}

#define CSV_HEADER "epoch,step,loss,lr,seconds,pairs_per_s,dev_r1,dev_r5,dev_r10,dev_r1i,dev_r5i,dev_r10i,dev_rsum\n"

// ---------------------------------------------------------------- curves.svg

static void svg_chart(FILE *f, double x0, const char *title, const double *ys, int n, const char *color) {
    const double w = 420, h = 260, ml = 60, mr = 15, mt = 30, mb = 40;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(ys[i])) { lo = fmin(lo, ys[i]); hi = fmax(hi, ys[i]); }
    if (!isfinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
    fprintf(f, "<g transform=\"translate(%g,0)\">\n", x0);
    fprintf(f, "<text x=\"%g\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">%s</text>\n", w / 2, title);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#888\"/>\n", ml, mt,
            w - ml - mr, h - mt - mb);
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", ml - 4, mt + 4, hi);
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", ml - 4, h - mb, lo);
    fprintf(f, "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">epoch (1..%d)</text>\n",
            (ml + w - mr) / 2, h - 12, n);
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < n; i++) {
        if (!isfinite(ys[i])) continue;
        double x = ml + (n > 1 ? (double)i / (n - 1) : 0.5) * (w - ml - mr);
        double y = mt + (hi - ys[i]) / (hi - lo) * (h - mt - mb);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n</g>\n");
}

static bool write_curves(const char *run_dir, struct itr_diags *d) {
    char *log = path_join(run_dir, "log.jsonl"), *svg = path_join(run_dir, "curves.svg");
    uint8_t *buf = NULL;
    size_t len = 0;
    bool ok = itr_file_read_all(log, &buf, &len, d);
    int n = 0, cap = 16;
    double *loss = xmalloc((size_t)cap * sizeof *loss), *rsum = xmalloc((size_t)cap * sizeof *rsum);
    for (char *line = ok ? (char *)buf : NULL; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        json_t *j = json_loads(line, 0, NULL);
        if (j) {
            if (n == cap) {
                cap *= 2;
                loss = realloc(loss, (size_t)cap * sizeof *loss);
                rsum = realloc(rsum, (size_t)cap * sizeof *rsum);
                if (!loss || !rsum) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
            }
            json_t *l = json_object_get(j, "loss"), *r = json_object_get(j, "dev_rsum");
            loss[n] = json_is_number(l) ? json_number_value(l) : NAN;
            rsum[n] = json_is_number(r) ? json_number_value(r) : NAN;
            n++;
            json_decref(j);
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    if (ok) {
        char *text = NULL;
        size_t tlen = 0;
        FILE *f = open_memstream(&text, &tlen);
        if (!f) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"840\" height=\"260\" "
                   "font-family=\"sans-serif\">\n<rect width=\"840\" height=\"260\" fill=\"white\"/>\n");
        svg_chart(f, 0, "training loss (mean per epoch)", loss, n, "#c0392b");
        svg_chart(f, 420, "dev rsum", rsum, n, "#2471a3");
        fprintf(f, "</svg>\n");
        fclose(f);
        const void *parts[1] = { text };
        ok = itr_file_write_atomic(svg, parts, &tlen, 1, d);
        free(text);
    }
    free(loss);
    free(rsum);
    free(buf);
    free(log);
    free(svg);
    return ok;
}

// ---------------------------------------------------------------- the loop

// The first parameter (by id) of the session holding an infinity or NaN.
static const char *first_non_finite(const struct itr_session *ss) {
    const struct itr_program *p = itr_session_program(ss);
    struct itr_tensor_set view;
    itr_tensor_set_init(&view);
    itr_session_save(ss, &view);   // host views (copies on a device backend)
    const char *bad = NULL;
    for (int k = 0; !bad && k < view.n; k++) {
        const struct itr_tensor *t = view.items[k].tensor;
        int64_t n = itr_tensor_numel(t);
        bool finite = true;
        if (t->dtype == ITR_F32) {
            const float *x = t->data;
            for (int64_t i = 0; i < n && finite; i++) finite = isfinite(x[i]);
        } else if (t->dtype == ITR_F64) {
            const double *x = t->data;
            for (int64_t i = 0; i < n && finite; i++) finite = isfinite(x[i]);
        }
        // The name the program owns: the view's copy goes with the view.
        if (!finite) bad = p->params[itr_program_find_param(p, view.items[k].name)].name;
    }
    itr_tensor_set_free(&view);
    return bad;
}

static bool make_dir(const char *dir, struct itr_diags *d) {
    char *tmp = xstrdup(dir);
    bool ok = true;
    for (char *s = tmp + 1; ok; s++) {
        bool last = *s == 0;
        if (*s == '/' || last) {
            char saved = *s;
            *s = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                itr_diag_error(d, ITR_NOLOC, "cannot create directory '%s': %s", tmp, strerror(errno));
                ok = false;
            }
            *s = saved;
        }
        if (last) break;
    }
    struct stat st;
    if (ok && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        itr_diag_error(d, ITR_NOLOC, "'%s' is not a directory", dir);
        ok = false;
    }
    free(tmp);
    return ok;
}

static void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

static void report_startup(FILE *f, const struct itr_split *tr, const struct itr_split *dev, const struct itr_vocab *v,
                           const struct binding *b, int nb, const struct run_config *c, int64_t spe) {
    int64_t mapped = 0, resident = 0, m2 = 0, r2 = 0;
    itr_split_memory(tr, &mapped, &resident);
    itr_split_memory(dev, &m2, &r2);
    fprintf(f, "data: %s: train %" PRId64 " images, %" PRId64 " captions; %s %" PRId64 " images; regions %" PRId64
               " x %" PRId64 "; vocabulary %d words\n", tr->dir, tr->n_images, tr->n_captions, dev->name,
            dev->n_images, tr->n_regions, tr->feat_dim, v->n);
    fprintf(f, "features: mmap %.1f MB, resident <= %.1f MB\n", (double)(mapped + m2) / 1e6,
            (double)(resident + r2) / 1e6);
    fprintf(f, "inputs:");
    for (int i = 0; i < nb; i++) {
        const char *from = "";
        switch (b[i].src) {
        case SRC_REGIONS: from = "train_ims.npy (the caption's image)"; break;
        case SRC_WORDS: case SRC_LENGTHS: from = "train_caps.txt"; break;
        case SRC_TFEATS: from = "train_caps_feats.npy"; break;
        case SRC_TLENS: from = "train_caps_lens.npy"; break;
        case SRC_EPOCH: from = "the epoch (0-based)"; break;
        case SRC_XREGIONS: case SRC_XWORDS: case SRC_XLENGTHS: case SRC_XTFEATS: case SRC_XTLENS:
            from = "random train captions (extra negatives)";
            break;
        case SRC_OPTION: from = !strcmp(b[i].name, "lr") ? "the schedule" : !strcmp(b[i].name, "step") ? "the step"
                                                                                                      : "the seed";
            break;
        }
        fprintf(f, "%s %s <- %s", i ? "," : "", b[i].name, from);
    }
    char sched[96];
    itr_lr_format(&c->lr, sched, sizeof sched);
    fprintf(f, "\nschedule: lr %g, %s, warm-up %" PRId64 " steps; %" PRId64 " epochs x %" PRId64
               " steps of batch %" PRId64 "; seed %" PRIu64 "\n", c->lr.lr, sched, c->lr.warmup_steps, c->epochs, spe,
            c->batch_size, c->seed);
}

// The backend, and the training step's peak arena bytes (ir/memplan.h) at
// the batch size and the train split's longest caption (B, N and L where
// the model has them; the defaults for the rest).
static void report_backend(FILE *f, const struct itr_session *ss, const struct itr_program *p,
                           const struct itr_graph *g, int64_t batch, int max_len) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    for (int i = 0; i < p->n_symbols; i++) {
        const char *nm = p->symbols[i].name;
        if (!strcmp(nm, "B") || !strcmp(nm, "N")) { b.value[i] = batch; b.bound[i] = true; }
        if (!strcmp(nm, "L") && !p->symbols[i].has_default) { b.value[i] = max_len; b.bound[i] = true; }
    }
    itr_bind_defaults(&b, p);
    int64_t peak;
    fprintf(f, "backend: %s", itr_session_backend(ss)->name);
    if (itr_memplan_peak_bytes(p, g, &b, &peak, NULL, NULL)) {
        char bytes[32];
        itr_format_bytes(peak, bytes, sizeof bytes);
        fprintf(f, "; memory plan of the training step: peak %s at batch %" PRId64 "", bytes, batch);
    }
    fprintf(f, "\n");
    itr_bindings_free(&b);
}

bool itr_trainer_run(const struct itr_program *p, const struct itr_trainer_options *o, struct itr_trainer_result *r,
                     struct itr_diags *d) {
    memset(r, 0, sizeof *r);
    r->last_rsum = r->best_rsum = r->last_loss = NAN;
    const struct itr_graph *g = itr_train_entry(p, d);
    if (!g) return false;
    FILE *pf = o->progress;
    bool tty = pf && isatty(fileno(pf));
    char *vocab_path = o->vocab_path ? xstrdup(o->vocab_path) : path_join(o->data_dir, "vocab.json");
    char *last_path = path_join(o->run_dir, "last.safetensors"), *best_path = path_join(o->run_dir, "best.safetensors");
    char *jsonl_path = path_join(o->run_dir, "log.jsonl"), *csv_path = path_join(o->run_dir, "log.csv");
    const char *eval_name = o->eval_split ? o->eval_split : "dev";
    struct itr_vocab vocab;
    memset(&vocab, 0, sizeof vocab);
    struct itr_split tr, dev;
    memset(&tr, 0, sizeof tr);
    memset(&dev, 0, sizeof dev);
    struct itr_tensor_set state;
    itr_tensor_set_init(&state);
    struct binding *bind = xmalloc((size_t)(g->n_inputs + 1) * sizeof *bind);
    int64_t *perm = NULL;
    bool tr_open = false, dev_open = false;

    struct run_config cfg = { .seed = o->seed, .batch_size = o->batch_size > 0 ? o->batch_size : 128,
                              .epochs = o->epochs > 0 ? o->epochs : 30, .lr = o->lr,
                              .fingerprint = o->fingerprint ? o->fingerprint : "" };
    if (!o->lr_given) cfg.lr.lr = p->optimizer.lr;
    struct cursor cur = { .best_rsum = NAN, .best_epoch = 0 };

    // One session for the whole run: the train step and the dev evaluation
    // share its parameters and its prepared entries.
    struct itr_session_options so = { .f64 = o->f64, .threads = o->threads };
    struct itr_session *ss = itr_session_new(p, o->backend, &so, d);
    bool ok = ss != NULL;
    if (ok) ok = itr_vocab_read(vocab_path, &vocab, d);
    if (ok) snprintf(cfg.vocab_hash, sizeof cfg.vocab_hash, "%016" PRIx64, itr_vocab_hash(&vocab));
    if (ok) ok = tr_open = itr_split_open(o->data_dir, "train", &vocab, &tr, d);
    if (ok) ok = dev_open = itr_split_open(o->data_dir, eval_name, &vocab, &dev, d);
    if (ok) ok = plan_inputs(g, &tr, bind, d) && check_feature_dims(p, g, &tr, d) &&
                 check_caption_lengths(p, g, bind, &tr, &dev, d);
    if (ok && tr.n_captions < 1) {
        itr_diag_error(d, ITR_NOLOC, "%s: the train split has no captions", o->data_dir);
        ok = false;
    }
    if (ok) ok = make_dir(o->run_dir, d);

    // The starting state: a checkpoint, given weights, or fresh parameters.
    if (ok && o->resume) {
        if (access(last_path, F_OK) != 0) {
            itr_diag_error(d, ITR_NOLOC, "nothing to resume: %s does not exist", last_path);
            ok = false;
        } else {
            ok = itr_safetensors_read(last_path, &state, d) && read_resume(&state, last_path, &cfg, &cur, d);
        }
    } else if (ok) {
        if (access(last_path, F_OK) == 0) {
            itr_diag_error(d, ITR_NOLOC, "%s already holds a run (last.safetensors); pass --resume to continue it, "
                           "or choose another run directory", o->run_dir);
            ok = false;
        } else if (o->weights) {
            ok = itr_safetensors_read(o->weights, &state, d);
        } else {
            struct itr_dim_bindings b;
            itr_bindings_init(&b, p);
            ok = itr_init_params(p, cfg.seed, &b, &state, d);
            itr_bindings_free(&b);
        }
    }
    // The parameters move into the session; state keeps the rest (metadata,
    // tensors that are no parameter) for the checkpoints.
    if (ok) itr_session_adopt(ss, &state, "the training state", d);
    int64_t spe = ok ? (tr.n_captions + cfg.batch_size - 1) / cfg.batch_size : 0;
    int64_t total = spe * cfg.epochs;
    if (ok && cur.batch > spe) {
        itr_diag_error(d, ITR_NOLOC, "%s: its cursor (batch %" PRId64 ") is past the epoch's %" PRId64 " batches",
                       last_path, cur.batch, spe);
        ok = false;
    }
    if (ok) {
        if (pf) report_startup(pf, &tr, &dev, &vocab, bind, g->n_inputs, &cfg, spe);
        if (pf) report_backend(pf, ss, p, g, cfg.batch_size, tr.max_len);
        if (pf && o->resume)
            fprintf(pf, "resuming %s: epoch %" PRId64 ", batch %" PRId64 ", step %" PRId64 "\n", last_path,
                    cur.epoch + 1, cur.batch, cur.step);
        if (o->resume) {
            ok = trim_log(jsonl_path, cur.epoch, false, d) && trim_log(csv_path, cur.epoch, true, d);
        } else {
            // The step-0 checkpoint: a run always has a last good state to
            // keep, even if its first steps diverge.
            ok = write_checkpoint(ss, &state, last_path, &cfg, &cur, p, d);
            if (ok && access(csv_path, F_OK) != 0) ok = append_line(csv_path, CSV_HEADER, d);
        }
    }
    perm = xmalloc((size_t)(tr.n_captions > 0 ? tr.n_captions : 1) * sizeof *perm);
    enum itr_protocol proto = dev.n_images == 1000 ? ITR_PROTOCOL_F30K_1K : ITR_PROTOCOL_ALL;
    double t_start = now_seconds();
    int64_t stopped_dirty = 0;   // steps since the last checkpoint when max_steps stops us
    bool stop = false;

    for (int64_t epoch = cur.epoch; ok && !stop && epoch < cfg.epochs; epoch++) {
        itr_epoch_permutation(cfg.seed, epoch, tr.n_captions, perm);
        double t_epoch = now_seconds();
        int64_t pairs = 0, batch0 = cur.batch;
        double lr = 0, batch_wait = 0;   // seconds the loop spent getting batches (building or waiting)
        // With workers, the epoch's remaining batches (up to max_steps) are
        // built ahead; the loop below takes them in order.
        int64_t n_jobs = spe - cur.batch;
        if (o->max_steps > 0 && o->max_steps - cur.step < n_jobs)
            n_jobs = o->max_steps > cur.step ? o->max_steps - cur.step : 0;
        struct prefetch q;
        bool ahead = ok && o->workers > 1 && n_jobs > 1 &&
                     prefetch_start(&q, o->workers, &tr, bind, g->n_inputs, perm, epoch, cur.batch, n_jobs,
                                    cur.step + 1, cfg.batch_size, cfg.seed, o->fail_batch_at_step);
        for (int64_t bi = cur.batch; ok && bi < spe; bi++) {
            if (o->max_steps > 0 && cur.step >= o->max_steps) { stop = true; break; }
            int n;
            const int64_t *ids = batch_ids(perm, tr.n_captions, cfg.batch_size, bi, &n);
            struct itr_tensor_set in, metrics;
            itr_tensor_set_init(&metrics);
            double t_batch = now_seconds();
            if (ahead) {
                ok = prefetch_take(&q, cur.step + 1, &in, d);
                r->batches_ahead++;
            } else {
                itr_tensor_set_init(&in);
                ok = make_batch(&tr, bind, g->n_inputs, ids, n, epoch, cfg.seed, cur.step + 1,
                                cur.step + 1 == o->fail_batch_at_step, &in, d);
            }
            batch_wait += now_seconds() - t_batch;
            lr = itr_lr_at(&cfg.lr, cur.step + 1, epoch, total);
            struct itr_train_options to = { .lr = lr, .step = cur.step + 1, .seed = cfg.seed, .f64 = o->f64,
                                            .weights_what = "the training state" };
            struct itr_train_result res;
            memset(&res, 0, sizeof res);
            if (ok) {
                struct itr_dim_bindings dims;
                itr_bindings_init(&dims, p);
                ok = itr_session_train_step(ss, &in, &dims, &to, &metrics, &res, d);
                itr_bindings_free(&dims);
                if (!ok && !isfinite(res.loss))
                    itr_diag_error(d, ITR_NOLOC, "training stopped at epoch %" PRId64 ", step %" PRId64 " (batch %"
                                   PRId64 " of the epoch): the loss is not finite; %s keeps the last good state "
                                   "(lower the lr or check the data)", epoch + 1, cur.step + 1, bi, last_path);
            }
            itr_tensor_set_free(&in);
            itr_tensor_set_free(&metrics);
            // A finite loss can still leave infinite parameters (a huge lr);
            // stopping here keeps every checkpoint finite.
            const char *bad = ok ? first_non_finite(ss) : NULL;
            if (bad) {
                itr_diag_error(d, ITR_NOLOC, "training stopped at epoch %" PRId64 ", step %" PRId64 " (batch %" PRId64
                               " of the epoch): the step made '%s' not finite; %s keeps the last good state (lower "
                               "the lr)", epoch + 1, cur.step + 1, bi, bad, last_path);
                ok = false;
            }
            if (!ok) break;
            cur.step++;
            cur.batch = bi + 1;
            cur.loss_sum += res.loss;
            cur.loss_n++;
            pairs += n;
            stopped_dirty++;
            if (tty) {
                double el = now_seconds() - t_epoch, rate = (double)pairs / fmax(el, 1e-9);
                double left = (double)(spe - bi - 1) * el / (double)(bi + 1 - batch0);
                char eta[32];
                format_duration(left, eta, sizeof eta);
                int filled = (int)(20 * (bi + 1) / spe);
                fprintf(pf, "\repoch %" PRId64 "/%" PRId64 " [%.*s%*s] %" PRId64 "/%" PRId64 " %.0f pairs/s ETA %s "
                            "loss %.4f   ", epoch + 1, cfg.epochs, filled, "####################", 20 - filled, "",
                        bi + 1, spe, rate, eta, cur.loss_sum / (double)cur.loss_n);
                fflush(pf);
            }
            int64_t every = o->checkpoint_every == 0 ? 200 : o->checkpoint_every;
            if (every > 0 && cur.step % every == 0 && cur.batch < spe) {
                ok = write_checkpoint(ss, &state, last_path, &cfg, &cur, p, d);
                stopped_dirty = 0;
            }
        }
        if (ahead) prefetch_stop(&q);
        if (tty) fprintf(pf, "\n");
        if (!ok || stop) break;

        // End of the epoch: dev evaluation, best and last checkpoints, the log.
        double train_s = now_seconds() - t_epoch;
        float *sims = NULL;
        struct itr_eval_options eo = { .f64 = o->f64 };
        struct itr_recall rc;
        memset(&rc, 0, sizeof rc);
        ok = itr_eval_sims_session(ss, &dev, &eo, &sims, d) &&
             itr_protocol_eval(proto, sims, dev.n_images, dev.n_captions, &rc, d);
        free(sims);
        if (!ok) break;
        double mean_loss = cur.loss_n ? cur.loss_sum / (double)cur.loss_n : NAN;
        cur.epoch = epoch + 1;
        cur.batch = 0;
        cur.loss_sum = 0;
        cur.loss_n = 0;
        bool better = isnan(cur.best_rsum) || rc.rsum > cur.best_rsum;
        if (better) {
            cur.best_rsum = rc.rsum;
            cur.best_epoch = epoch + 1;
            ok = write_checkpoint(ss, &state, best_path, &cfg, &cur, p, d);
        }
        if (ok) ok = write_checkpoint(ss, &state, last_path, &cfg, &cur, p, d);
        stopped_dirty = 0;
        double secs = now_seconds() - t_epoch, rate = (double)pairs / fmax(train_s, 1e-9);
        char line[1024];
        snprintf(line, sizeof line, "{\"epoch\": %" PRId64 ", \"step\": %" PRId64 ", \"loss\": %.9g, \"lr\": %.9g, "
                 "\"seconds\": %.3f, \"pairs_per_s\": %.2f, \"batch_wait_s\": %.3f, \"dev_protocol\": \"%s\", "
                 "\"dev_r1\": %.2f, \"dev_r5\": %.2f, \"dev_r10\": %.2f, \"dev_r1i\": %.2f, \"dev_r5i\": %.2f, "
                 "\"dev_r10i\": %.2f, \"dev_rsum\": %.2f}\n", epoch + 1, cur.step, mean_loss, lr, secs, rate,
                 batch_wait, itr_protocol_name(proto),
                 rc.i2t_r1, rc.i2t_r5, rc.i2t_r10, rc.t2i_r1, rc.t2i_r5, rc.t2i_r10, rc.rsum);
        if (ok) ok = append_line(jsonl_path, line, d);
        snprintf(line, sizeof line, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,%.3f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f\n",
                 epoch + 1, cur.step, mean_loss, lr, secs, rate, rc.i2t_r1, rc.i2t_r5, rc.i2t_r10, rc.t2i_r1,
                 rc.t2i_r5, rc.t2i_r10, rc.rsum);
        if (ok) ok = append_line(csv_path, line, d);
        if (pf)
            fprintf(pf, "epoch %" PRId64 "/%" PRId64 ": step %" PRId64 ", loss %.4f, lr %.3g, %.1fs (%.0f pairs/s); "
                        "%s rsum %.2f (R@1 %.1f/%.1f)%s\n", epoch + 1, cfg.epochs, cur.step, mean_loss, lr, secs,
                    rate, dev.name, rc.rsum, rc.i2t_r1, rc.t2i_r1, better ? " best" : "");
        r->last_rsum = rc.rsum;
        r->last_loss = mean_loss;
        if (ok && o->plot) ok = write_curves(o->run_dir, d);
    }
    if (ok && stop && stopped_dirty > 0 && !o->kill_at_max_steps) ok = write_checkpoint(ss, &state, last_path, &cfg, &cur, p, d);
    if (ok && stop && pf)
        fprintf(pf, "stopped at step %" PRId64 " (--max-steps); --resume with --out %s continues from epoch %" PRId64
                    ", batch %" PRId64 "\n", cur.step, o->run_dir, cur.epoch + 1, cur.batch);
    r->steps = cur.step;
    r->epochs_done = cur.epoch;
    r->best_rsum = cur.best_rsum;
    r->stopped_early = stop;
    r->seconds = now_seconds() - t_start;

    free(perm);
    free(bind);
    itr_tensor_set_free(&state);
    itr_session_free(ss);
    if (tr_open) itr_split_close(&tr);
    if (dev_open) itr_split_close(&dev);
    if (vocab.words || vocab.table) itr_vocab_free(&vocab);
    free(vocab_path);
    free(last_path);
    free(best_path);
    free(jsonl_path);
    free(csv_path);
    return ok;
}
