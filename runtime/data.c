// Splits of the precomputed-feature layout (models.md §1.1, docs/data.md):
// region features stay memory-mapped and batches copy rows out of the
// mapping, so a 33 GB COCO train split costs page cache, not heap; captions
// are small and are tokenised and encoded once at open.
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/fileio.h"
#include "runtime/data.h"
#include "runtime/npy.h"
#include "runtime/tokenize_internal.h"

static char *path_join(const char *dir, const char *split, const char *suffix) {
    size_t n = strlen(dir) + strlen(split) + strlen(suffix) + 3;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s%s", dir, split, suffix);
    return p;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one.
static size_t utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t k;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { k = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; cp = c & 0x07; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return k;
}

// Reads the caption file: one caption per line, CRLF or LF, trailing empty
// lines dropped (editors add them). False after reporting.
static bool read_captions(const char *path, char ***out, int64_t *n_out, struct itr_diags *d) {
    const uint8_t *data;
    size_t len;
    *out = NULL;
    *n_out = 0;
    if (!itr_file_map(path, &data, &len, d)) return false;
    int errs = d->n_errors;
    int64_t line = 1;
    for (size_t i = 0; i < len;) {
        if (data[i] == '\n') { line++; i++; continue; }
        size_t k = utf8_seq(data + i, len - i);
        if (!k) {
            itr_diag_error(d, ITR_NOLOC, "%s:%" PRId64 ": not valid UTF-8 (byte 0x%02x); captions must be UTF-8 text",
                           path, line, data[i]);
            if (d->n_errors - errs >= 5) break;
            k = 1;
        }
        i += k;
    }
    size_t end = len;
    while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r')) end--;
    int64_t n = 0;
    if (end > 0) {
        n = 1;
        for (size_t i = 0; i < end; i++) n += data[i] == '\n';
    }
    if (d->n_errors > errs) { itr_file_unmap(data, len); return false; }
    char **caps = calloc((size_t)(n ? n : 1), sizeof *caps);
    if (!caps) abort();
    size_t i = 0;
    for (int64_t c = 0; c < n; c++) {
        size_t j = i;
        while (j < end && data[j] != '\n') j++;
        size_t m = j;
        if (m > i && data[m - 1] == '\r') m--;
        caps[c] = malloc(m - i + 1);
        if (!caps[c]) abort();
        memcpy(caps[c], data + i, m - i);
        caps[c][m - i] = 0;
        i = j + 1;
    }
    itr_file_unmap(data, len);
    *out = caps;
    *n_out = n;
    return true;
}

static bool encode_all(struct itr_split *s, const struct itr_vocab *v) {
    int32_t *flat = NULL;
    int64_t flat_n = 0, flat_cap = 0;
    s->lengths = malloc((size_t)(s->n_captions ? s->n_captions : 1) * sizeof *s->lengths);
    if (!s->lengths) abort();
    struct itr_tokbuf tb = { 0 };
    s->max_len = 0;
    for (int64_t c = 0; c < s->n_captions; c++) {
        itr_tokbuf_run(&tb, s->captions[c]);
        int len = tb.n_tok + 2;
        if (flat_n + len > flat_cap) {
            flat_cap = 2 * (flat_n + len) + 1024;
            flat = realloc(flat, (size_t)flat_cap * sizeof *flat);
            if (!flat) abort();
        }
        flat[flat_n] = ITR_VOCAB_START;
        for (int t = 0; t < tb.n_tok; t++) {
            int32_t id = itr_vocab_lookup(v, tb.text + tb.tok[t]);
            s->n_unknown_words += id == ITR_VOCAB_UNK;
            flat[flat_n + 1 + t] = id;
        }
        flat[flat_n + len - 1] = ITR_VOCAB_END;
        flat_n += len;
        s->lengths[c] = len;
        if (len > s->max_len) s->max_len = len;
    }
    itr_tokbuf_free(&tb);
    s->tokens = calloc((size_t)(s->n_captions ? s->n_captions : 1) * (size_t)(s->max_len ? s->max_len : 1),
                       sizeof *s->tokens);
    if (!s->tokens) abort();
    int64_t off = 0;
    for (int64_t c = 0; c < s->n_captions; c++) {
        memcpy(s->tokens + c * s->max_len, flat + off, (size_t)s->lengths[c] * sizeof *flat);
        off += s->lengths[c];
    }
    free(flat);
    return true;
}

static void shape_str(const struct itr_tensor *t, char *buf, size_t n) { itr_shape_format(t->rank, t->shape, buf, n); }

// The optional token features: both files or neither, shapes tied to the captions.
static void open_token_feats(struct itr_split *s, struct itr_diags *d) {
    char *fp = path_join(s->dir, s->name, "_caps_feats.npy"), *lp = path_join(s->dir, s->name, "_caps_lens.npy");
    bool hf = file_exists(fp), hl = file_exists(lp);
    char sh[128];
    if (hf != hl) {
        itr_diag_error(d, ITR_NOLOC, "%s: found without %s; token features need both files", hf ? fp : lp,
                       hf ? lp : fp);
    } else if (hf) {
        s->token_feats = itr_npy_map(fp, d);
        s->token_lengths = itr_npy_map(lp, d);
        struct itr_tensor *f = s->token_feats, *l = s->token_lengths;
        if (f && (f->rank != 3 || f->dtype != ITR_F32)) {
            shape_str(f, sh, sizeof sh);
            itr_diag_error(d, ITR_NOLOC, "%s: is %s%s; expected f32 [n_captions, L, E]", fp, itr_dtype_name(f->dtype),
                           sh);
        } else if (f && s->n_captions && f->shape[0] != s->n_captions) {
            itr_diag_error(d, ITR_NOLOC, "%s: has %" PRId64 " rows but %s has %" PRId64 " captions", fp, f->shape[0],
                           s->name, s->n_captions);
        }
        if (l && (l->rank != 1 || l->dtype != ITR_I32)) {
            shape_str(l, sh, sizeof sh);
            itr_diag_error(d, ITR_NOLOC, "%s: is %s%s; expected i32 [n_captions]", lp, itr_dtype_name(l->dtype), sh);
        } else if (l && f && f->rank == 3 && l->shape[0] != f->shape[0]) {
            itr_diag_error(d, ITR_NOLOC, "%s: has %" PRId64 " lengths but %s has %" PRId64 " rows", lp, l->shape[0], fp,
                           f->shape[0]);
        } else if (l && f && f->rank == 3) {
            // A length past L would make a batch read the next caption's
            // features (or past the mapping); one below 1 is no caption.
            const int32_t *lv = l->data;
            int64_t first = -1, n_bad = 0;
            for (int64_t i = 0; i < l->shape[0]; i++)
                if (lv[i] < 1 || lv[i] > f->shape[1]) {
                    if (first < 0) first = i;
                    n_bad++;
                }
            if (first >= 0)
                itr_diag_error(d, ITR_NOLOC, "%s: caption %" PRId64 " of split '%s' has length %d; expected 1 to %"
                               PRId64 " (the L of %s)", lp, first, s->name, lv[first], f->shape[1], fp);
            if (n_bad > 1)
                itr_diag_note(d, ITR_NOLOC, "%s: %" PRId64 " lengths in all are outside 1 to %" PRId64, lp, n_bad,
                              f->shape[1]);
        }
    }
    free(fp);
    free(lp);
}

bool itr_split_open(const char *dir, const char *split, const struct itr_vocab *v, struct itr_split *s,
                    struct itr_diags *d) {
    memset(s, 0, sizeof *s);
    s->dir = strdup(dir);
    s->name = strdup(split);
    if (!s->dir || !s->name) abort();
    int errs = d->n_errors;
    char *ip = path_join(dir, split, "_ims.npy"), *cp = path_join(dir, split, "_caps.txt");
    char sh[128];
    // Both files are checked before either failure returns, so one run
    // reports everything wrong with the split.
    if (!file_exists(ip)) {
        itr_diag_error(d, ITR_NOLOC, "%s: missing; split '%s' needs its region features [N, R, D] f32 "
                       "(the SCAN precomp data, models.md §1.1)", ip, split);
    } else if ((s->ims = itr_npy_map(ip, d))) {
        if (s->ims->rank != 3 || s->ims->dtype != ITR_F32) {
            shape_str(s->ims, sh, sizeof sh);
            itr_diag_error(d, ITR_NOLOC, "%s: is %s%s; expected f32 [N, R, D] (regions per image x feature size)", ip,
                           itr_dtype_name(s->ims->dtype), sh);
        } else {
            s->n_regions = s->ims->shape[1];
            s->feat_dim = s->ims->shape[2];
        }
    }
    if (!file_exists(cp)) {
        itr_diag_error(d, ITR_NOLOC, "%s: missing; split '%s' needs its captions (one per line, %d per image)", cp,
                       split, ITR_CAPTIONS_PER_IMAGE);
    } else if (read_captions(cp, &s->captions, &s->n_captions, d)) {
        if (s->n_captions == 0)
            itr_diag_error(d, ITR_NOLOC, "%s: no captions; expected %d per image", cp, ITR_CAPTIONS_PER_IMAGE);
        else if (s->n_captions % ITR_CAPTIONS_PER_IMAGE)
            itr_diag_error(d, ITR_NOLOC, "%s: %" PRId64 " captions, not a multiple of %d (%d captions per image, "
                           "grouped by image)", cp, s->n_captions, ITR_CAPTIONS_PER_IMAGE, ITR_CAPTIONS_PER_IMAGE);
    }
    if (d->n_errors == errs && s->ims && s->captions) {
        int64_t rows = s->ims->shape[0];
        s->n_images = s->n_captions / ITR_CAPTIONS_PER_IMAGE;
        if (rows == s->n_captions) {
            s->im_div = 1;
        } else if (rows == s->n_images) {
            s->im_div = ITR_CAPTIONS_PER_IMAGE;
        } else {
            itr_diag_error(d, ITR_NOLOC, "%s: %" PRId64 " rows, but %s has %" PRId64 " captions; expected %" PRId64
                           " rows (one per image) or %" PRId64 " (one per caption)", ip, rows, cp, s->n_captions,
                           s->n_images, s->n_captions);
        }
    }
    if (d->n_errors == errs && v) encode_all(s, v);
    if (s->captions || s->n_captions == 0) open_token_feats(s, d);
    free(ip);
    free(cp);
    if (d->n_errors > errs) {
        itr_split_close(s);
        return false;
    }
    return true;
}

void itr_split_close(struct itr_split *s) {
    if (!s) return;
    itr_npy_unmap(s->ims);
    itr_npy_unmap(s->token_feats);
    itr_npy_unmap(s->token_lengths);
    for (int64_t i = 0; s->captions && i < s->n_captions; i++) free(s->captions[i]);
    free(s->captions);
    free(s->tokens);
    free(s->lengths);
    free(s->dir);
    free(s->name);
    memset(s, 0, sizeof *s);
}

void itr_split_memory(const struct itr_split *s, int64_t *mapped_bytes, int64_t *resident_bytes) {
    int64_t mapped = 0, resident = 0;
    const struct itr_tensor *big[3] = { s->ims, s->token_feats, s->token_lengths };
    for (int i = 0; i < 3; i++) {
        if (!big[i]) continue;
        // owns_data: the file was misaligned and read into memory instead.
        if (big[i]->owns_data) resident += (int64_t)itr_tensor_nbytes(big[i]);
        else mapped += (int64_t)itr_tensor_nbytes(big[i]);
    }
    for (int64_t i = 0; s->captions && i < s->n_captions; i++)
        resident += (int64_t)strlen(s->captions[i]) + 1 + (int64_t)sizeof(char *);
    if (s->tokens) resident += s->n_captions * (int64_t)s->max_len * 4;
    if (s->lengths) resident += s->n_captions * 4;
    *mapped_bytes = mapped;
    *resident_bytes = resident;
}

// ------------------------------------------------------------ batches

struct itr_tensor *itr_split_regions(const struct itr_split *s, const int64_t *image_ids, int n) {
    if (!s->ims || s->ims->rank != 3 || n < 0) return NULL;
    int64_t rows = s->ims->shape[0], row_elems = s->n_regions * s->feat_dim;
    // im_div 1 stores each image's features 5 times; its first copy serves.
    int64_t stride = ITR_CAPTIONS_PER_IMAGE / s->im_div;
    for (int i = 0; i < n; i++)
        if (image_ids[i] < 0 || image_ids[i] * stride >= rows) return NULL;
    struct itr_tensor *t = itr_tensor_new(ITR_F32, 3, (int64_t[]){ n, s->n_regions, s->feat_dim });
    if (!t) return NULL;
    const float *src = s->ims->data;
    for (int i = 0; i < n; i++)
        memcpy((float *)t->data + (int64_t)i * row_elems, src + image_ids[i] * stride * row_elems,
               (size_t)row_elems * sizeof(float));
    return t;
}

void itr_split_release_regions(const struct itr_split *s, int64_t first, int64_t n) {
    if (!s->ims || s->ims->owns_data || s->ims->rank != 3 || n <= 0 || first < 0) return;
    int64_t stride = ITR_CAPTIONS_PER_IMAGE / s->im_div, rows = s->ims->shape[0];
    int64_t r0 = first * stride, r1 = (first + n) * stride;
    if (r1 > rows) r1 = rows;
    if (r0 >= r1) return;
    size_t row = (size_t)(s->n_regions * s->feat_dim) * sizeof(float);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    // Only whole pages inside the range: a neighbour's rows stay mapped.
    uintptr_t a = (uintptr_t)s->ims->data + (size_t)r0 * row, b = (uintptr_t)s->ims->data + (size_t)r1 * row;
    a = (a + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    b = b / (uintptr_t)page * (uintptr_t)page;
    if (a < b) (void)madvise((void *)a, b - a, MADV_DONTNEED);   // advice only: a failure costs nothing
}

// width 0: the batch's longest caption; else exactly width, and false if a
// caption is longer (callers check lengths against a model's fixed width
// when the split is opened, so this is a safety net, not a message).
bool itr_split_words(const struct itr_split *s, const int64_t *caption_ids, int n, int64_t width,
                     struct itr_tensor **words, struct itr_tensor **lengths) {
    *words = *lengths = NULL;
    if (!s->tokens || n < 0 || width < 0) return false;
    int64_t L = 1;
    for (int i = 0; i < n; i++) {
        if (caption_ids[i] < 0 || caption_ids[i] >= s->n_captions) return false;
        if (s->lengths[caption_ids[i]] > L) L = s->lengths[caption_ids[i]];
    }
    if (width > 0) {
        if (L > width) return false;
        L = width;
    }
    *words = itr_tensor_new(ITR_I32, 2, (int64_t[]){ n, L });
    *lengths = itr_tensor_new(ITR_I32, 1, (int64_t[]){ n });
    if (!*words || !*lengths) {
        itr_tensor_free(*words);
        itr_tensor_free(*lengths);
        *words = *lengths = NULL;
        return false;
    }
    for (int i = 0; i < n; i++) {
        int64_t c = caption_ids[i];
        memcpy((int32_t *)(*words)->data + (int64_t)i * L, s->tokens + c * s->max_len,
               (size_t)s->lengths[c] * sizeof(int32_t));
        ((int32_t *)(*lengths)->data)[i] = s->lengths[c];
    }
    return true;
}

bool itr_split_token_feats(const struct itr_split *s, const int64_t *caption_ids, int n, int64_t width,
                           struct itr_tensor **feats, struct itr_tensor **lengths) {
    *feats = *lengths = NULL;
    if (!s->token_feats || !s->token_lengths || n < 0 || width < 0) return false;
    const int32_t *lv = s->token_lengths->data;
    int64_t Lf = s->token_feats->shape[1], E = s->token_feats->shape[2];
    int64_t L = 1;
    for (int i = 0; i < n; i++) {
        if (caption_ids[i] < 0 || caption_ids[i] >= s->token_feats->shape[0]) return false;
        if (lv[caption_ids[i]] > L) L = lv[caption_ids[i]];
    }
    if (width > 0) {
        if (L > width) return false;
        L = width;
    }
    *feats = itr_tensor_new(ITR_F32, 3, (int64_t[]){ n, L, E });
    *lengths = itr_tensor_new(ITR_I32, 1, (int64_t[]){ n });
    if (!*feats || !*lengths) {
        itr_tensor_free(*feats);
        itr_tensor_free(*lengths);
        *feats = *lengths = NULL;
        return false;
    }
    const float *src = s->token_feats->data;
    for (int i = 0; i < n; i++) {
        int64_t c = caption_ids[i];
        memcpy((float *)(*feats)->data + (int64_t)i * L * E, src + c * Lf * E, (size_t)((int64_t)lv[c] * E) * sizeof(float));
        ((int32_t *)(*lengths)->data)[i] = lv[c];
    }
    return true;
}

// ------------------------------------------------------------ verify

static const char *const verify_splits[ITR_DATA_N_SPLITS] = { "train", "dev", "test", "testall" };

bool itr_data_verify_summary(const char *dir, const char *vocab_path, struct itr_split_summary *out,
                             struct itr_diags *d) {
    int errs = d->n_errors;
    struct itr_vocab v;
    char *vp = vocab_path ? NULL : path_join(dir, "vocab", ".json");
    const char *vpath = vocab_path ? vocab_path : vp;
    bool have_vocab = false;
    if (!file_exists(vpath))
        itr_diag_error(d, ITR_NOLOC, "%s: missing; the vocabulary JSON (word2idx, idx2word, idx) is needed to "
                       "encode captions (build one with 'itr-data vocab build')", vpath);
    else
        have_vocab = itr_vocab_read(vpath, &v, d);
    int64_t ref_r = -1, ref_d = -1, ref_e = -1;
    const char *ref_name = NULL, *ref_e_name = NULL;
    for (int k = 0; k < ITR_DATA_N_SPLITS; k++) {
        const char *name = verify_splits[k];
        struct itr_split_summary *o = out ? &out[k] : NULL;
        if (o) {
            memset(o, 0, sizeof *o);
            snprintf(o->name, sizeof o->name, "%s", name);
        }
        if (k == 3) {
            char *a = path_join(dir, name, "_ims.npy"), *b = path_join(dir, name, "_caps.txt");
            bool any = file_exists(a) || file_exists(b);
            free(a);
            free(b);
            if (!any) continue;   // testall is COCO's 5K set; other data sets lack it
        }
        struct itr_split s;
        if (!itr_split_open(dir, name, have_vocab ? &v : NULL, &s, d)) continue;
        if (o) {
            o->present = true;
            o->n_images = s.n_images;
            o->n_captions = s.n_captions;
            o->n_rows = s.ims->shape[0];
            o->n_regions = s.n_regions;
            o->feat_dim = s.feat_dim;
            o->im_div = s.im_div;
            o->max_len = s.max_len;
            o->n_unknown = s.n_unknown_words;
            o->token_dim = s.token_feats ? s.token_feats->shape[2] : 0;
        }
        if (ref_name == NULL) {
            ref_r = s.n_regions;
            ref_d = s.feat_dim;
            ref_name = name;
        } else if (s.n_regions != ref_r || s.feat_dim != ref_d) {
            itr_diag_error(d, ITR_NOLOC, "%s/%s_ims.npy: %" PRId64 " regions x %" PRId64 " features, but %s has %" PRId64
                           " x %" PRId64 "; every split must have the same feature layout", dir, name, s.n_regions,
                           s.feat_dim, ref_name, ref_r, ref_d);
        }
        if (s.token_feats) {
            if (!ref_e_name) {
                ref_e = s.token_feats->shape[2];
                ref_e_name = name;
            } else if (s.token_feats->shape[2] != ref_e) {
                itr_diag_error(d, ITR_NOLOC, "%s/%s_caps_feats.npy: token features of size %" PRId64 ", but %s has %"
                               PRId64, dir, name, s.token_feats->shape[2], ref_e_name, ref_e);
            }
        }
        itr_split_close(&s);
    }
    if (have_vocab) itr_vocab_free(&v);
    free(vp);
    return d->n_errors == errs;
}

bool itr_data_verify(const char *dir, const char *vocab_path, struct itr_diags *d) {
    return itr_data_verify_summary(dir, vocab_path, NULL, d);
}
