// Evaluation (runtime/eval.h): recall on matrices whose every rank is known,
// the 5-fold averaging, protocol checks, and the similarity matrix of a small
// VSE++ — tiled scoring must equal one big tile bit for bit.
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>

#include "ir/text.h"
#include "runtime/eval.h"
#include "runtime/init.h"
#include "runtime/rank.h"
#include "runtime/session.h"
#include "tests/testutil.h"
#include "tests/modeltest.h"

#define K ITR_CAPTIONS_PER_IMAGE

// ------------------------------------------------------------ recall

// The oracle: full sort per query, positions counted the slow way, with an
// equal-scoring wrong item ahead of the positive.
static void oracle_ranks(const float *s, int64_t ni, int64_t nc, int64_t *ri, int64_t *rt) {
    for (int64_t i = 0; i < ni; i++) {
        int64_t best = nc;
        for (int64_t c = i * K; c < i * K + K; c++) {
            int64_t pos = 0;
            for (int64_t j = 0; j < nc; j++)
                if (j / K != i && s[i * nc + j] >= s[i * nc + c]) pos++;
            // Positives strictly above c would also precede it, but then a
            // better positive exists and gives the minimum.
            if (pos < best) best = pos;
        }
        ri[i] = best;
    }
    for (int64_t c = 0; c < nc; c++) {
        int64_t pos = 0;
        for (int64_t i = 0; i < ni; i++)
            if (i != c / K && s[i * nc + c] >= s[(c / K) * nc + c]) pos++;
        rt[c] = pos;
    }
}

static float *matrix(int64_t ni, float (*f)(int64_t i, int64_t c)) {
    float *s = malloc((size_t)(ni * ni * K) * sizeof *s);
    for (int64_t i = 0; i < ni; i++)
        for (int64_t c = 0; c < ni * K; c++) s[i * ni * K + c] = f(i, c);
    return s;
}

static float perfect(int64_t i, int64_t c) { return c / K == i ? 1.0f : 0.0f; }
static float reversed(int64_t i, int64_t c) { return c / K == i ? 0.0f : 1.0f; }
static float constant(int64_t i, int64_t c) { (void)i; (void)c; return 0.5f; }

TEST(perfect_matrix) {
    float *s = matrix(4, perfect);
    struct itr_recall r;
    itr_recall_compute(s, 4, 20, &r);
    CHECK_NEAR(r.i2t_r1, 100, 0);
    CHECK_NEAR(r.t2i_r1, 100, 0);
    CHECK_NEAR(r.rsum, 600, 0);
    CHECK_NEAR(r.i2t_medr, 1, 0);
    CHECK_NEAR(r.t2i_medr, 1, 0);
    CHECK_NEAR(r.i2t_meanr, 1, 0);
    CHECK_NEAR(r.t2i_meanr, 1, 0);
    CHECK(r.n_images == 4 && r.n_captions == 20);
    free(s);
}

TEST(reversed_matrix) {
    // 2 images: every image has 5 negatives above its positives (rank 5);
    // every caption has the other image above its own (rank 1).
    float *s = matrix(2, reversed);
    struct itr_recall r;
    itr_recall_compute(s, 2, 10, &r);
    CHECK_NEAR(r.i2t_r1, 0, 0);
    CHECK_NEAR(r.i2t_r5, 0, 0);
    CHECK_NEAR(r.i2t_r10, 100, 0);
    CHECK_NEAR(r.i2t_medr, 6, 0);
    CHECK_NEAR(r.i2t_meanr, 6, 0);
    CHECK_NEAR(r.t2i_r1, 0, 0);
    CHECK_NEAR(r.t2i_r5, 100, 0);
    CHECK_NEAR(r.t2i_medr, 2, 0);
    CHECK_NEAR(r.rsum, 300, 0);
    free(s);
}

TEST(ties_are_pessimistic) {
    // All equal: every wrong item ranks ahead of the positive.
    float *s = matrix(3, constant);
    struct itr_recall r;
    itr_recall_compute(s, 3, 15, &r);
    CHECK_NEAR(r.i2t_meanr, 11, 0);   // 10 negatives ahead
    CHECK_NEAR(r.t2i_meanr, 3, 0);    // 2 other images ahead
    CHECK_NEAR(r.i2t_r10, 0, 0);
    CHECK_NEAR(r.t2i_r1, 0, 0);
    CHECK_NEAR(r.t2i_r5, 100, 0);
    // One negative tied with the best positive, one below: rank 1.
    float row[2 * 10] = { 0 };
    for (int c = 0; c < 5; c++) row[c] = 0.2f;
    row[2] = 0.7f;        // the best positive
    row[7] = 0.7f;        // a tied negative
    row[8] = 0.6f;        // below it
    for (int c = 0; c < 10; c++) row[10 + c] = c >= 5 ? 1.0f : 0.0f;
    itr_recall_compute(row, 2, 10, &r);
    CHECK_NEAR(r.i2t_r1, 50, 0);       // image 0 rank 1, image 1 rank 0
    CHECK_NEAR(r.i2t_meanr, 1.5, 0);
    free(s);
}

TEST(known_ranks_medr_meanr) {
    // 4 images with i2t ranks 0, 1, 2, 3 by construction: the first r_i
    // negatives of row i score above the positives.
    const int64_t ni = 4, nc = 20, want[4] = { 0, 1, 2, 3 };
    float s[4 * 20];
    for (int64_t i = 0; i < ni; i++) {
        int64_t placed = 0;
        for (int64_t c = 0; c < nc; c++) {
            if (c / K == i) s[i * nc + c] = 0.5f;
            else s[i * nc + c] = placed++ < want[i] ? 0.9f : 0.0f;
        }
    }
    struct itr_recall r;
    itr_recall_compute(s, ni, nc, &r);
    CHECK_NEAR(r.i2t_r1, 25, 0);
    CHECK_NEAR(r.i2t_r5, 100, 0);
    CHECK_NEAR(r.i2t_medr, 2, 0);        // median 1.5 -> floor 1 -> +1
    CHECK_NEAR(r.i2t_meanr, 2.5, 0);     // mean 1.5 + 1
    int64_t ri[4], rt[20];
    oracle_ranks(s, ni, nc, ri, rt);
    for (int i = 0; i < 4; i++) CHECK(ri[i] == want[i]);
    // t2i against the oracle.
    double m = 0;
    int64_t h1 = 0;
    for (int c = 0; c < 20; c++) { m += (double)rt[c]; h1 += rt[c] < 1; }
    CHECK_NEAR(r.t2i_meanr, m / 20 + 1, 1e-12);
    CHECK_NEAR(r.t2i_r1, 100.0 * (double)h1 / 20, 1e-12);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t xrand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void stats(int64_t *r, int64_t n, double out[5]) {
    // r1 r5 r10 medr meanr, the slow way.
    double s = 0;
    int64_t h[3] = { 0 };
    for (int64_t i = 0; i < n; i++) {
        s += (double)r[i];
        h[0] += r[i] < 1; h[1] += r[i] < 5; h[2] += r[i] < 10;
    }
    for (int64_t i = 0; i < n; i++)   // selection sort
        for (int64_t j = i + 1; j < n; j++)
            if (r[j] < r[i]) { int64_t t = r[i]; r[i] = r[j]; r[j] = t; }
    double med = n % 2 ? (double)r[n / 2] : ((double)r[n / 2 - 1] + (double)r[n / 2]) / 2;
    out[0] = 100.0 * (double)h[0] / (double)n;
    out[1] = 100.0 * (double)h[1] / (double)n;
    out[2] = 100.0 * (double)h[2] / (double)n;
    out[3] = floor(med) + 1;
    out[4] = s / (double)n + 1;
}

TEST(random_matrices_match_the_oracle) {
    for (int trial = 0; trial < 20; trial++) {
        int64_t ni = 2 + (int64_t)(xrand() % 9), nc = ni * K;
        float *s = malloc((size_t)(ni * nc) * sizeof *s);
        // Few distinct values: many ties.
        for (int64_t i = 0; i < ni * nc; i++) s[i] = (float)(xrand() % (trial % 2 ? 4 : 1000)) / 8.0f;
        int64_t *ri = malloc((size_t)ni * sizeof *ri), *rt = malloc((size_t)nc * sizeof *rt);
        oracle_ranks(s, ni, nc, ri, rt);
        double a[5], b[5];
        stats(ri, ni, a);
        stats(rt, nc, b);
        struct itr_recall r;
        itr_recall_compute(s, ni, nc, &r);
        CHECK_NEAR(r.i2t_r1, a[0], 1e-9);
        CHECK_NEAR(r.i2t_r5, a[1], 1e-9);
        CHECK_NEAR(r.i2t_r10, a[2], 1e-9);
        CHECK_NEAR(r.i2t_medr, a[3], 0);
        CHECK_NEAR(r.i2t_meanr, a[4], 1e-9);
        CHECK_NEAR(r.t2i_r1, b[0], 1e-9);
        CHECK_NEAR(r.t2i_r5, b[1], 1e-9);
        CHECK_NEAR(r.t2i_r10, b[2], 1e-9);
        CHECK_NEAR(r.t2i_medr, b[3], 0);
        CHECK_NEAR(r.t2i_meanr, b[4], 1e-9);
        CHECK_NEAR(r.rsum, a[0] + a[1] + a[2] + b[0] + b[1] + b[2], 1e-9);
        free(s);
        free(ri);
        free(rt);
    }
}

TEST(nan_ranks_last) {
    float *s = matrix(2, perfect);
    s[0] = s[1] = s[2] = s[3] = s[4] = NAN;   // image 0's positives are NaN
    struct itr_recall r;
    itr_recall_compute(s, 2, 10, &r);
    CHECK_NEAR(r.i2t_r1, 50, 0);               // image 0 is not credited
    CHECK_NEAR(r.i2t_meanr, (5 + 0) / 2.0 + 1, 0);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_protocol_eval(ITR_PROTOCOL_ALL, s, 2, 10, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "5 of 20 similarities are NaN");
    itr_diags_free(&d);
    free(s);
}

// ------------------------------------------------------------ folds and protocols

TEST(five_folds_average_and_recompute_rsum) {
    // 5 folds of 2 images (10 captions): fold f is perfect for f < 3 and
    // reversed for f >= 3; off-diagonal blocks are huge and must be ignored.
    const int64_t ni = 10, nc = 50;
    float *s = malloc((size_t)(ni * nc) * sizeof *s);
    for (int64_t i = 0; i < ni; i++)
        for (int64_t c = 0; c < nc; c++) {
            int64_t fi = i / 2, fcap = c / 10;
            if (fi != fcap) { s[i * nc + c] = 100.0f; continue; }
            bool pos = c / K == i;
            s[i * nc + c] = fi < 3 ? (pos ? 1.0f : 0.0f) : (pos ? 0.0f : 1.0f);
        }
    struct itr_recall r;
    itr_recall_folds(s, ni, nc, 5, &r);
    // perfect: 100 100 100 | 100 100 100, medr 1, meanr 1
    // reversed: i2t 0 0 100, medr 6, meanr 6 | t2i 0 100 100, medr 2, meanr 2
    CHECK_NEAR(r.i2t_r1, 60, 1e-9);
    CHECK_NEAR(r.i2t_r5, 60, 1e-9);
    CHECK_NEAR(r.i2t_r10, 100, 1e-9);
    CHECK_NEAR(r.t2i_r1, 60, 1e-9);
    CHECK_NEAR(r.t2i_r5, 100, 1e-9);
    CHECK_NEAR(r.t2i_r10, 100, 1e-9);
    CHECK_NEAR(r.i2t_medr, (3 * 1 + 2 * 6) / 5.0, 1e-9);
    CHECK_NEAR(r.t2i_meanr, (3 * 1 + 2 * 2) / 5.0, 1e-9);
    CHECK_NEAR(r.rsum, 60 + 60 + 100 + 60 + 100 + 100, 1e-9);
    CHECK(r.n_images == 10 && r.n_captions == 50);
    // One matrix over all 10 images instead sees the 100.0 blocks.
    struct itr_recall whole;
    itr_recall_compute(s, ni, nc, &whole);
    CHECK(whole.rsum < r.rsum);
    free(s);
}

TEST(protocol_names_and_checks) {
    enum itr_protocol p;
    for (int i = 0; i < ITR_PROTOCOL_COUNT; i++) {
        CHECK(itr_protocol_from_name(itr_protocol_name((enum itr_protocol)i), &p));
        CHECK(p == (enum itr_protocol)i);
    }
    CHECK(!itr_protocol_from_name("coco-1k", &p));
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_protocol_check(ITR_PROTOCOL_F30K_1K, "test", 1000, &d));
    CHECK(itr_protocol_check(ITR_PROTOCOL_COCO_5K, "testall", 5000, &d));
    CHECK(itr_protocol_check(ITR_PROTOCOL_COCO_1K_5FOLD, "testall", 5000, &d));
    CHECK(itr_protocol_check(ITR_PROTOCOL_ALL, "mini", 7, &d));
    CHECK(d.n_errors == 0);
    CHECK(!itr_protocol_check(ITR_PROTOCOL_COCO_5K, "test", 1000, &d));
    CHECK_DIAGS_CONTAIN(&d, "coco-5k needs the 5000-image testall split; test has 1000 images — use --protocol "
                            "f30k-1k or --split testall");
    diags_reset(&d);
    CHECK(!itr_protocol_check(ITR_PROTOCOL_COCO_1K_5FOLD, "val", 1000, &d));
    CHECK_DIAGS_CONTAIN(&d, "coco-1k-5fold needs the 5000-image testall split; val has 1000 images");
    diags_reset(&d);
    CHECK(!itr_protocol_check(ITR_PROTOCOL_F30K_1K, "testall", 5000, &d));
    CHECK_DIAGS_CONTAIN(&d, "f30k-1k needs the 1000-image test split; testall has 5000 images (COCO testall) — use "
                            "--protocol coco-1k-5fold or coco-5k");
    diags_reset(&d);
    CHECK(!itr_protocol_check(ITR_PROTOCOL_F30K_1K, "mini", 12, &d));
    CHECK_DIAGS_CONTAIN(&d, "use --protocol all");
    diags_reset(&d);
    CHECK(!itr_protocol_check(ITR_PROTOCOL_ALL, "empty", 0, &d));
    CHECK_DIAGS_CONTAIN(&d, "empty has no images");
    diags_reset(&d);
    struct itr_recall r;
    float s[2 * 9] = { 0 };
    CHECK(!itr_protocol_eval(ITR_PROTOCOL_ALL, s, 2, 9, &r, &d));
    CHECK_DIAGS_CONTAIN(&d, "evaluation needs 5 captions per image (10 columns)");
    itr_diags_free(&d);
}

// ------------------------------------------------------------ similarity matrices

static const char *const SMALL[] = { "D=8", "W=4", "V=30", "img_dim=16", "R=3" };

// extra: one more override ("L=8"), or NULL.
static struct itr_program *parse_small_with(const char *path, const char *img_dim, const char *extra) {
    const char *ov[6] = { SMALL[0], SMALL[1], SMALL[2], img_dim ? img_dim : SMALL[3], SMALL[4], extra };
    struct itr_parse_options opt = { .overrides = ov, .n_overrides = extra ? 6 : 5 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(path, &opt, &d);
    if (!p || itr_diags_has_errors(&d)) {
        diags_report("parsing: ", &d);
        if (p) itr_program_free(p);
        p = NULL;
    }
    itr_diags_free(&d);
    return p;
}

static struct itr_program *parse_small(const char *path, const char *img_dim) {
    return parse_small_with(path, img_dim, NULL);
}

static struct itr_program *parse_vsepp(const char *img_dim) {
    return parse_small(ITR_SOURCE_DIR "/models/vsepp.ir", img_dim);
}


// A split built in memory: n images of 3 regions x 16 features, 5n captions
// of 3..6 tokens.
static void make_split(struct itr_split *s, int64_t n) {
    memset(s, 0, sizeof *s);
    s->name = "mem";
    s->n_images = n;
    s->n_captions = n * K;
    s->im_div = K;   // one feature row per image
    s->n_regions = 3;
    s->feat_dim = 16;
    s->ims = itr_tensor_new(ITR_F32, 3, (int64_t[]){ n, 3, 16 });
    for (int64_t i = 0; i < n * 3 * 16; i++) ((float *)s->ims->data)[i] = (float)(xrand() % 2001) / 1000.0f - 1.0f;
    s->max_len = 6;
    s->tokens = calloc((size_t)(s->n_captions * 6), sizeof *s->tokens);
    s->lengths = calloc((size_t)s->n_captions, sizeof *s->lengths);
    for (int64_t c = 0; c < s->n_captions; c++) {
        int len = 3 + (int)(xrand() % 4);
        s->lengths[c] = len;
        s->tokens[c * 6] = ITR_VOCAB_START;
        for (int t = 1; t < len - 1; t++) s->tokens[c * 6 + t] = 4 + (int32_t)(xrand() % 26);
        s->tokens[c * 6 + len - 1] = ITR_VOCAB_END;
    }
}

static void free_split(struct itr_split *s) {
    itr_tensor_free(s->ims);
    free(s->tokens);
    free(s->lengths);
}

static float *sims_of(const struct itr_program *p, const struct itr_tensor_set *w, const struct itr_split *s,
                      int64_t ti, int64_t tc, int64_t chunk, bool f64) {
    struct itr_eval_options opt = { .tile_images = ti, .tile_captions = tc, .encode_chunk = chunk, .f64 = f64 };
    struct itr_diags d;
    itr_diags_init(&d);
    float *out = NULL;
    if (!itr_eval_sims(p, w, s, &opt, &out, &d)) diags_report("itr_eval_sims: ", &d);
    itr_diags_free(&d);
    return out;
}

TEST(tiled_equals_untiled_bit_for_bit) {
    struct itr_program *p = parse_vsepp(NULL);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor_set w;
    CHECK(mt_init_params(p, 7, &w));
    struct itr_split s;
    make_split(&s, 7);
    for (int f64 = 0; f64 < 2; f64++) {
        float *big = sims_of(p, &w, &s, 1000, 1000, 1000, f64);
        float *tiled = sims_of(p, &w, &s, 3, 7, 4, f64);
        float *odd = sims_of(p, &w, &s, 1, 35, 1, f64);
        CHECK(big && tiled && odd);
        if (big && tiled && odd) {
            CHECK_MSG(memcmp(big, tiled, (size_t)(7 * 35) * sizeof *big) == 0, "tile 3x7 differs (f64 %d)", f64);
            CHECK_MSG(memcmp(big, odd, (size_t)(7 * 35) * sizeof *big) == 0, "tile 1x35 differs (f64 %d)", f64);
            // Unit vectors: cosine similarities.
            bool in_range = true;
            for (int i = 0; i < 7 * 35; i++) in_range &= big[i] >= -1.0001f && big[i] <= 1.0001f && big[i] != 0;
            CHECK(in_range);
        }
        free(big);
        free(tiled);
        free(odd);
    }
    // One feature row per caption (im_div 1): image i is row 5i; the other
    // copies are ignored, so they may hold anything.
    struct itr_split s5 = s;
    s5.im_div = 1;
    s5.ims = itr_tensor_new(ITR_F32, 3, (int64_t[]){ 35, 3, 16 });
    for (int64_t r = 0; r < 35; r++)
        for (int64_t e = 0; e < 48; e++)
            ((float *)s5.ims->data)[r * 48 + e] = r % K ? 9.0f : ((float *)s.ims->data)[(r / K) * 48 + e];
    float *a = sims_of(p, &w, &s, 0, 0, 0, false), *b = sims_of(p, &w, &s5, 3, 7, 2, false);
    CHECK(a && b && memcmp(a, b, (size_t)(7 * 35) * sizeof *a) == 0);
    free(a);
    free(b);
    itr_tensor_free(s5.ims);
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// A pair-scoring model's encode_text returns per-word features as long as
// the chunk's longest caption; chunks of captions of different lengths must
// still concatenate, and chunking must not change a single score.
TEST(pair_scoring_model_in_chunks_equals_one_chunk) {
    struct itr_program *p = parse_small(ITR_SOURCE_DIR "/models/scan_t2i.ir", NULL);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor_set w;
    CHECK(mt_init_params(p, 3, &w));
    struct itr_split s;
    make_split(&s, 6);
    float *one = sims_of(p, &w, &s, 1000, 1000, 1000, false);
    float *chunked = sims_of(p, &w, &s, 2, 9, 4, false);
    CHECK(one && chunked);
    if (one && chunked) CHECK(memcmp(one, chunked, (size_t)(6 * 30) * sizeof *one) == 0);
    free(one);
    free(chunked);
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// Length buckets: a pair-scoring model scores each caption with its words
// cut to its own length. The scores agree with those of captions padded to
// the split's longest (ITRC_NO_LENGTH_BUCKETS=1), the metrics are the same,
// and an image query's row is the matrix's row bit for bit.
TEST(length_buckets_agree_with_padded_captions) {
    struct itr_program *p = parse_small(ITR_SOURCE_DIR "/models/scan_t2i.ir", NULL);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor_set w;
    CHECK(mt_init_params(p, 5, &w));
    struct itr_split s;
    make_split(&s, 8);
    for (int f64 = 0; f64 < 2; f64++) {
        float *cut = sims_of(p, &w, &s, 3, 11, 5, f64);
        setenv("ITRC_NO_LENGTH_BUCKETS", "1", 1);
        float *padded = sims_of(p, &w, &s, 3, 11, 5, f64);
        unsetenv("ITRC_NO_LENGTH_BUCKETS");
        CHECK(cut && padded);
        if (cut && padded) {
            double worst = 0;
            for (int i = 0; i < 8 * 40; i++) {
                double e = fabs((double)cut[i] - padded[i]) / (1.0 + fabs((double)padded[i]));
                if (e > worst) worst = e;
            }
            CHECK_MSG(worst < 1e-5, "f64 %d: bucketed scores %g off the padded ones", f64, worst);
            struct itr_recall a, b;
            itr_recall_compute(cut, 8, 40, &a);
            itr_recall_compute(padded, 8, 40, &b);
            CHECK(a.rsum == b.rsum && a.i2t_r1 == b.i2t_r1 && a.t2i_r1 == b.t2i_r1 && a.t2i_meanr == b.t2i_meanr);
        }
        if (cut && !f64) {
            struct itr_eval_options opt = { 0 };
            struct itr_diags d;
            itr_diags_init(&d);
            float *row = NULL;
            CHECK(itr_eval_query_image(p, &w, &s, 3, &opt, &row, &d));
            CHECK_MSG(row && memcmp(row, cut + 3 * 40, 40 * sizeof *row) == 0, "image 3's query differs from its row");
            free(row);
            itr_diags_free(&d);
        }
        free(cut);
        free(padded);
    }
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

TEST(ensemble_is_the_average) {
    struct itr_program *p = parse_vsepp(NULL);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor_set wa, wb;
    CHECK(mt_init_params(p, 1, &wa) && mt_init_params(p, 2, &wb));
    struct itr_split s;
    make_split(&s, 4);
    float *a = sims_of(p, &wa, &s, 0, 0, 0, false), *b = sims_of(p, &wb, &s, 0, 0, 0, false);
    const struct itr_program *ps[2] = { p, p };
    const struct itr_tensor_set *ws[2] = { &wa, &wb };
    struct itr_eval_options opt = { .tile_images = 2, .tile_captions = 3 };
    struct itr_diags d;
    itr_diags_init(&d);
    float *e = NULL, *one = NULL;
    CHECK(itr_eval_sims_ensemble(2, ps, ws, &s, &opt, &e, &d));
    CHECK(itr_eval_sims_ensemble(1, ps, ws, &s, &opt, &one, &d));
    CHECK(a && b && e && one);
    if (a && b && e && one) {
        bool same = true;
        for (int i = 0; i < 4 * 20; i++) same &= e[i] == (float)(((double)a[i] + (double)b[i]) / 2);
        CHECK_MSG(same, "the ensemble is not the average of its members");
        CHECK(memcmp(one, a, 80 * sizeof *a) == 0);
        CHECK(memcmp(a, b, 80 * sizeof *a) != 0);
    }
    free(a); free(b); free(e); free(one);
    // A member reading other features is refused, naming both.
    struct itr_program *q = parse_vsepp("img_dim=24");
    CHECK(q != NULL);
    if (q) {
        CHECK(itr_eval_check_compatible(p, "a.plan", p, "b.plan", &d));
        CHECK(!itr_eval_check_compatible(p, "a.plan", q, "c.plan", &d));
        CHECK_DIAGS_CONTAIN(&d, "a.plan's region features (encode_image input) is f32[*, 3, 16], c.plan's is "
                                "f32[*, 3, 24]");
        itr_program_free(q);
    }
    itr_diags_free(&d);
    free_split(&s);
    itr_tensor_set_free(&wa);
    itr_tensor_set_free(&wb);
    itr_program_free(p);
}

TEST(queries_agree_with_the_matrix) {
    struct itr_program *p = parse_vsepp(NULL);
    CHECK(p != NULL);
    if (!p) return;
    struct itr_tensor_set w;
    CHECK(mt_init_params(p, 3, &w));
    struct itr_split s;
    make_split(&s, 5);
    float *full = sims_of(p, &w, &s, 0, 0, 0, false);
    struct itr_eval_options opt = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    float *col = NULL, *row = NULL;
    int64_t c = 13;
    CHECK(itr_eval_query_text(p, &w, &s, s.tokens + c * s.max_len, s.lengths[c], &opt, &col, &d));
    CHECK(itr_eval_query_image(p, &w, &s, 2, &opt, &row, &d));
    CHECK(full && col && row);
    if (full && col && row) {
        bool same = true;
        for (int i = 0; i < 5; i++) same &= col[i] == full[i * 25 + c];
        CHECK_MSG(same, "text query differs from column %d", (int)c);
        CHECK(memcmp(row, full + 2 * 25, 25 * sizeof *row) == 0);
    }
    free(full); free(col); free(row);
    CHECK(!itr_eval_query_image(p, &w, &s, 5, &opt, &row, &d) && row == NULL);
    CHECK_DIAGS_CONTAIN(&d, "image index 5 is out of range; split 'mem' has images 0..4");
    diags_reset(&d);
    // Wrong weights: a clear error, not a crash.
    struct itr_tensor_set none;
    itr_tensor_set_init(&none);
    float *x = NULL;
    CHECK(!itr_eval_sims(p, &none, &s, &opt, &x, &d) && x == NULL);
    CHECK(d.n_errors > 0);
    itr_diags_free(&d);
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// ------------------------------------------------------------ a fixed caption length

// The caption length a model fixes: none for dim L, the default for dim L = 8
// (itrc -D L=8), the constant of a config int; with the input's location.
TEST(caption_limit_of_a_model) {
    struct itr_program *p = parse_vsepp(NULL), *q = parse_small_with(ITR_SOURCE_DIR "/models/vsepp.ir", NULL, "L=8");
    CHECK(p && q);
    if (!p || !q) { itr_program_free(p); itr_program_free(q); return; }
    struct itr_caption_limit lim;
    CHECK(itr_caption_limit(p, "encode_text", NULL, &lim) && lim.len == 0 && !lim.token_feats);
    CHECK(itr_caption_limit(q, "encode_text", NULL, &lim) && lim.len == 8);
    CHECK(strcmp(lim.model, "vsepp") == 0 && strcmp(lim.entry, "encode_text") == 0 && strcmp(lim.input, "words") == 0);
    CHECK_MSG(strcmp(lim.type, "i32[B, L] where L = 8") == 0, "type '%s'", lim.type);
    CHECK(lim.loc.file && strstr(lim.loc.file, "models/vsepp.ir") && lim.loc.line > 0 && lim.loc.col > 0);
    CHECK(itr_caption_limit(q, "train", "words", &lim) && lim.len == 8);
    CHECK(!itr_caption_limit(q, "train", "token_feats", &lim) && lim.len == 0);
    CHECK(!itr_caption_limit(q, "no_such_entry", NULL, &lim));
    itr_program_free(p);
    itr_program_free(q);
    // A config int in the type: a constant once the model is elaborated.
    static const char src[] =
        "import \"modules/nn.ir\"\n"
        "model fixed(max_words: int = 7) {\n"
        "  dim N, B, R = 3\n"
        "  let fc = linear(16, 4)\n"
        "  let embed = embedding(30, 4)\n"
        "  entry encode_image(regions: f32[N, R, 16]) -> (v) { return fc(mean(regions, axes=[1])) }\n"
        "  entry encode_text(words: i32[B, max_words], lengths: i32[B]) -> (u) {\n"
        "    return sum(embed(words), axes=[1])\n"
        "  }\n"
        "  entry score(v: f32[N, 4], u: f32[B, 4]) -> (sims) { return v @ transpose(u) }\n"
        "}\n";
    const char *inc[] = { ITR_SOURCE_DIR "/models" };
    struct itr_parse_options opt = { .include_dirs = inc, .n_include_dirs = 1 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *f = itr_parse_string("fixed.ir", src, sizeof src - 1, &opt, &d);
    if (!f) diags_report("fixed.ir: ", &d);
    CHECK(f != NULL);
    if (f) {
        CHECK(itr_caption_limit(f, "encode_text", NULL, &lim) && lim.len == 7);
        CHECK_MSG(strcmp(lim.type, "i32[B, 7]") == 0, "type '%s'", lim.type);
        CHECK(lim.loc.file && strcmp(lim.loc.file, "fixed.ir") == 0 && lim.loc.line == 7 && lim.loc.col == 21);
        // Fits: evaluation pads every chunk to 7 and binds.
        struct itr_tensor_set w;
        CHECK(mt_init_params(f, 1, &w));
        struct itr_split s;
        make_split(&s, 3);
        float *sims = NULL;
        struct itr_eval_options eo = { .encode_chunk = 4 };
        CHECK(itr_eval_sims(f, &w, &s, &eo, &sims, &d) && sims != NULL);
        free(sims);
        // One caption of 9 tokens: refused, naming the model's source.
        s.lengths[11] = 9;
        diags_reset(&d);
        CHECK(!itr_eval_sims(f, &w, &s, &eo, &sims, &d) && sims == NULL);
        CHECK_DIAGS_CONTAIN(&d, "caption 11 of split 'mem' has 9 tokens (with <start> and <end>); model 'fixed' reads "
                                "at most 7 (encode_text input 'words': i32[B, 7], fixed.ir:7:21)");
        free_split(&s);
        itr_tensor_set_free(&w);
        itr_program_free(f);
    }
    itr_diags_free(&d);
}

// Padding to the model's fixed length changes no score: the lengths mask
// the padding. Matrix, chunks and queries agree bit for bit with the
// unfixed model.
TEST(fixed_caption_length_pads_and_changes_nothing) {
    struct itr_program *p = parse_vsepp(NULL), *q = parse_small_with(ITR_SOURCE_DIR "/models/vsepp.ir", NULL, "L=9");
    CHECK(p && q);
    if (!p || !q) { itr_program_free(p); itr_program_free(q); return; }
    struct itr_tensor_set w;
    CHECK(mt_init_params(p, 5, &w));
    struct itr_split s;
    make_split(&s, 4);
    float *a = sims_of(p, &w, &s, 0, 0, 0, false), *b = sims_of(q, &w, &s, 3, 7, 3, false);
    CHECK(a && b);
    if (a && b) CHECK_MSG(memcmp(a, b, 4 * 20 * sizeof *a) == 0, "a fixed caption length changed the similarities");
    struct itr_eval_options opt = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    float *col = NULL;
    int64_t c = 6;
    CHECK(itr_eval_query_text(q, &w, &s, s.tokens + c * s.max_len, s.lengths[c], &opt, &col, &d));
    if (a && col) {
        bool same = true;
        for (int i = 0; i < 4; i++) same &= col[i] == a[i * 20 + c];
        CHECK_MSG(same, "a padded text query differs from column %d", (int)c);
    }
    free(a); free(b); free(col);
    itr_diags_free(&d);
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(p);
    itr_program_free(q);
}

// A caption longer than the fixed length is an error before any work, in
// every path: the matrix, an ensemble, an image query and a text query.
TEST(over_long_captions_are_errors) {
    struct itr_program *q = parse_small_with(ITR_SOURCE_DIR "/models/vsepp.ir", NULL, "L=5");
    CHECK(q != NULL);
    if (!q) return;
    struct itr_tensor_set w;
    CHECK(mt_init_params(q, 5, &w));
    struct itr_split s;
    make_split(&s, 4);
    s.lengths[19] = 6;   // at least two over-long captions (never encoded)
    int64_t first = -1, n_over = 0;
    for (int64_t c = 0; c < s.n_captions; c++)
        if (s.lengths[c] > 5) { if (first < 0) first = c; n_over++; }
    CHECK(first >= 0 && first < 19 && n_over > 1);   // make_split draws 3..6 tokens
    char want[256];
    snprintf(want, sizeof want, "caption %d of split 'mem' has 6 tokens (with <start> and <end>); model 'vsepp' reads "
             "at most 5 (encode_text input 'words': i32[B, L] where L = 5, ", (int)first);
    char note[128];
    snprintf(note, sizeof note, "%d captions of split 'mem' are longer than 5 tokens", (int)n_over);
    struct itr_eval_options opt = { 0 };
    struct itr_diags d;
    itr_diags_init(&d);
    float *x = NULL;
    CHECK(!itr_eval_sims(q, &w, &s, &opt, &x, &d) && x == NULL);
    CHECK_DIAGS_CONTAIN(&d, want);
    CHECK_DIAGS_CONTAIN(&d, "models/vsepp.ir:");
    CHECK_DIAGS_CONTAIN(&d, note);
    CHECK(d.n_errors == 1);
    diags_reset(&d);
    const struct itr_program *ps[2] = { q, q };
    const struct itr_tensor_set *ws[2] = { &w, &w };
    CHECK(!itr_eval_sims_ensemble(2, ps, ws, &s, &opt, &x, &d) && x == NULL);
    CHECK_DIAGS_CONTAIN(&d, want);
    diags_reset(&d);
    CHECK(!itr_eval_query_image(q, &w, &s, 1, &opt, &x, &d) && x == NULL);
    CHECK_DIAGS_CONTAIN(&d, want);
    diags_reset(&d);
    CHECK(!itr_eval_query_text(q, &w, &s, s.tokens + first * s.max_len, 6, &opt, &x, &d) && x == NULL);
    CHECK_DIAGS_CONTAIN(&d, "the query has 6 tokens (with <start> and <end>); model 'vsepp' reads at most 5 "
                            "(encode_text input 'words': i32[B, L] where L = 5, ");
    diags_reset(&d);
    // With a data directory the message names the captions file and line.
    struct itr_caption_limit lim;
    CHECK(itr_caption_limit(q, "encode_text", NULL, &lim));
    s.dir = "data/x";
    CHECK(!itr_caption_limit_check(&lim, &s, &d));
    snprintf(want, sizeof want, "data/x/mem_caps.txt:%d: caption %d of split 'mem' has 6 tokens", (int)first + 1,
             (int)first);
    CHECK_DIAGS_CONTAIN(&d, want);
    diags_reset(&d);
    // Token features: the lengths file is named.
    lim.token_feats = true;
    int32_t lv[20];
    for (int i = 0; i < 20; i++) lv[i] = 2;
    lv[13] = 8;
    s.token_lengths = itr_tensor_wrap(ITR_I32, 1, (int64_t[]){ 20 }, lv);
    CHECK(!itr_caption_limit_check(&lim, &s, &d));
    CHECK_DIAGS_CONTAIN(&d, "data/x/mem_caps_lens.npy: caption 13 of split 'mem' has 8 tokens; model 'vsepp' reads at "
                            "most 5");
    lv[13] = 5;
    CHECK(itr_caption_limit_check(&lim, &s, &d));
    itr_tensor_free(s.token_lengths);
    s.token_lengths = NULL;
    itr_diags_free(&d);
    free_split(&s);
    itr_tensor_set_free(&w);
    itr_program_free(q);
}

// ------------------------------------------------------------ streaming, two stages

static struct itr_session *session_of(const struct itr_program *p, const struct itr_tensor_set *w) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session_options so = { 0 };
    struct itr_session *s = itr_session_new(p, NULL, &so, &d);
    if (s) itr_session_load(s, w, NULL, &d);
    if (!s) diags_report("session: ", &d);
    itr_diags_free(&d);
    return s;
}

static struct itr_scorer *scorer_of(struct itr_session *ss, const struct itr_split *s, int64_t ti, int64_t tc) {
    struct itr_eval_options opt = { .tile_images = ti, .tile_captions = tc, .encode_chunk = 4 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_scorer *sc = NULL;
    if (!itr_scorer_new(1, &ss, s, &opt, &sc, &d)) diags_report("scorer: ", &d);
    itr_diags_free(&d);
    return sc;
}

static bool same_recall(const struct itr_recall *a, const struct itr_recall *b) {
    return a->i2t_r1 == b->i2t_r1 && a->i2t_r5 == b->i2t_r5 && a->i2t_r10 == b->i2t_r10 && a->t2i_r1 == b->t2i_r1 &&
           a->t2i_r5 == b->t2i_r5 && a->t2i_r10 == b->t2i_r10 && a->rsum == b->rsum && a->i2t_medr == b->i2t_medr &&
           a->t2i_medr == b->t2i_medr && a->i2t_meanr == b->i2t_meanr && a->t2i_meanr == b->t2i_meanr;
}

// Streaming keeps ranks and top-K lists, never the matrix; on the same
// tiles it must give exactly the full matrix's metrics, ranks and lists,
// for a global and a pair-scoring model, tiles dividing the sizes or not.
TEST(streamed_equals_full_matrix) {
    const char *models[2] = { ITR_SOURCE_DIR "/models/vsepp.ir", ITR_SOURCE_DIR "/models/scan_t2i.ir" };
    const int64_t tiles[3][2] = { { 1000, 1000 }, { 3, 7 }, { 2, 9 } };
    for (int m = 0; m < 2; m++) {
        struct itr_program *p = parse_small(models[m], NULL);
        CHECK(p != NULL);
        if (!p) continue;
        struct itr_tensor_set w;
        CHECK(mt_init_params(p, 5, &w));
        struct itr_split s;
        make_split(&s, 7);
        int64_t ni = 7, nc = 35;
        struct itr_session *ss = session_of(p, &w);
        for (int t = 0; ss && t < 3; t++) {
            float *full = sims_of(p, &w, &s, tiles[t][0], tiles[t][1], 4, false);
            struct itr_scorer *sc = scorer_of(ss, &s, tiles[t][0], tiles[t][1]);
            CHECK(full && sc);
            if (!full || !sc) { free(full); itr_scorer_free(sc); continue; }
            struct itr_recall want;
            itr_recall_compute(full, ni, nc, &want);
            struct itr_eval_options opt = { .tile_images = tiles[t][0], .tile_captions = tiles[t][1] };
            struct itr_stream_result r;
            struct itr_diags d;
            itr_diags_init(&d);
            CHECK(itr_eval_stream(sc, ITR_PROTOCOL_ALL, 10, &opt, &r, &d));
            CHECK_MSG(same_recall(&want, &r.recall), "model %d tile %d: streamed metrics differ (rsum %g vs %g)", m, t,
                      r.recall.rsum, want.rsum);
            int64_t ri[7], rt[35];
            oracle_ranks(full, ni, nc, ri, rt);
            CHECK(memcmp(ri, r.i2t_rank, sizeof ri) == 0 && memcmp(rt, r.t2i_rank, sizeof rt) == 0);
            // Top-10 per query: the rows and the columns of the matrix, sorted.
            bool lists = true;
            int64_t idx[35];
            float col[7];
            for (int64_t i = 0; i < ni; i++) {
                itr_eval_topk(full + i * nc, nc, 10, idx);
                lists &= memcmp(idx, r.i2t_top + i * 10, 10 * sizeof *idx) == 0;
            }
            for (int64_t c = 0; c < nc; c++) {
                for (int64_t i = 0; i < ni; i++) col[i] = full[i * nc + c];
                itr_eval_topk(col, ni, 10, idx);
                lists &= memcmp(idx, r.t2i_top + c * 10, 7 * sizeof *idx) == 0 && r.t2i_top[c * 10 + 7] == -1;
            }
            CHECK_MSG(lists, "model %d tile %d: top-K lists differ from the matrix's", m, t);
            itr_stream_result_free(&r);
            itr_diags_free(&d);
            itr_scorer_free(sc);
            free(full);
        }
        itr_session_free(ss);
        free_split(&s);
        itr_tensor_set_free(&w);
        itr_program_free(p);
    }
}

// Two stages: candidates from the first model's top-N, re-scored by the
// second; checked against ranks computed by brute force from both full
// matrices. N = everything is plain evaluation of the second model.
TEST(rerank_matches_brute_force) {
    struct itr_program *p1 = parse_vsepp(NULL), *p2 = parse_small(ITR_SOURCE_DIR "/models/scan_t2i.ir", NULL);
    CHECK(p1 && p2);
    struct itr_tensor_set w1, w2;
    CHECK(p1 && p2 && mt_init_params(p1, 11, &w1) && mt_init_params(p2, 12, &w2));
    if (!p1 || !p2) return;
    struct itr_split s;
    make_split(&s, 7);
    int64_t ni = 7, nc = 35;
    float *a = sims_of(p1, &w1, &s, 3, 7, 4, false), *b = sims_of(p2, &w2, &s, 3, 7, 4, false);
    struct itr_session *s1 = session_of(p1, &w1), *s2 = session_of(p2, &w2);
    struct itr_scorer *f = s1 ? scorer_of(s1, &s, 3, 7) : NULL, *g = s2 ? scorer_of(s2, &s, 3, 7) : NULL;
    CHECK(a && b && f && g);
    const int64_t ns[4] = { 1, 3, 10, 100 };
    for (int q = 0; a && b && f && g && q < 4; q++) {
        int64_t n = ns[q], ri[7], rt[35], r1i[7], r1t[35], in_i = 0, in_t = 0;
        oracle_ranks(a, ni, nc, r1i, r1t);
        int64_t idx[35];
        float col[7];
        for (int64_t i = 0; i < ni; i++) {   // image -> text
            int64_t m = itr_eval_topk(a + i * nc, nc, n, idx);
            double best = -INFINITY;
            bool any = false;
            for (int64_t j = 0; j < m; j++)
                if (idx[j] / K == i) { any = true; best = fmax(best, b[i * nc + idx[j]]); }
            int64_t r = 0;
            for (int64_t j = 0; any && j < m; j++) r += idx[j] / K != i && b[i * nc + idx[j]] >= best;
            ri[i] = any ? r : r1i[i];
            in_i += any;
        }
        for (int64_t c = 0; c < nc; c++) {   // text -> image
            for (int64_t i = 0; i < ni; i++) col[i] = a[i * nc + c];
            int64_t m = itr_eval_topk(col, ni, n, idx), at = -1;
            for (int64_t j = 0; j < m; j++)
                if (idx[j] == c / K) at = j;
            int64_t r = 0;
            for (int64_t j = 0; at >= 0 && j < m; j++) r += j != at && b[idx[j] * nc + c] >= b[(c / K) * nc + c];
            rt[c] = at >= 0 ? r : r1t[c];
            in_t += at >= 0;
        }
        struct itr_recall want;
        itr_recall_from_ranks(ri, ni, rt, nc, &want);
        struct itr_eval_options opt = { .tile_images = 3, .tile_captions = 7 };
        struct itr_rerank_result rr;
        struct itr_diags d;
        itr_diags_init(&d);
        CHECK(itr_eval_rerank(f, g, ITR_PROTOCOL_ALL, n, &opt, &rr, &d));
        CHECK_MSG(same_recall(&want, &rr.recall), "N=%lld: re-ranked metrics differ (rsum %g vs %g)", (long long)n,
                  rr.recall.rsum, want.rsum);
        CHECK_NEAR(rr.i2t_ceiling, 100.0 * (double)in_i / 7, 1e-9);
        CHECK_NEAR(rr.t2i_ceiling, 100.0 * (double)in_t / 35, 1e-9);
        struct itr_recall first;
        itr_recall_compute(a, ni, nc, &first);
        CHECK(same_recall(&first, &rr.first));
        if (n >= 35) {   // every item a candidate: the second model alone
            struct itr_recall second;
            itr_recall_compute(b, ni, nc, &second);
            CHECK(same_recall(&second, &rr.recall));
            CHECK(rr.i2t_ceiling == 100.0 && rr.t2i_ceiling == 100.0);
        }
        itr_diags_free(&d);
    }
    itr_scorer_free(f);
    itr_scorer_free(g);
    itr_session_free(s1);
    itr_session_free(s2);
    free(a);
    free(b);
    free_split(&s);
    itr_tensor_set_free(&w1);
    itr_tensor_set_free(&w2);
    itr_program_free(p1);
    itr_program_free(p2);
}

TEST(topk) {
    float s[7] = { 0.1f, 0.9f, NAN, 0.5f, 0.9f, -1.0f, 0.5f };
    int64_t idx[7];
    CHECK(itr_eval_topk(s, 7, 4, idx) == 4);
    CHECK(idx[0] == 1 && idx[1] == 4 && idx[2] == 3 && idx[3] == 6);
    CHECK(itr_eval_topk(s, 7, 100, idx) == 7);
    CHECK(idx[4] == 0 && idx[5] == 5 && idx[6] == 2);
    CHECK(itr_eval_topk(s, 7, 0, idx) == 0);
}

int main(void) {
    RUN(perfect_matrix);
    RUN(reversed_matrix);
    RUN(ties_are_pessimistic);
    RUN(known_ranks_medr_meanr);
    RUN(random_matrices_match_the_oracle);
    RUN(nan_ranks_last);
    RUN(five_folds_average_and_recompute_rsum);
    RUN(protocol_names_and_checks);
    RUN(tiled_equals_untiled_bit_for_bit);
    RUN(pair_scoring_model_in_chunks_equals_one_chunk);
    RUN(length_buckets_agree_with_padded_captions);
    RUN(ensemble_is_the_average);
    RUN(queries_agree_with_the_matrix);
    RUN(caption_limit_of_a_model);
    RUN(fixed_caption_length_pads_and_changes_nothing);
    RUN(over_long_captions_are_errors);
    RUN(topk);
    RUN(streamed_equals_full_matrix);
    RUN(rerank_matches_brute_force);
    return test_summary();
}
