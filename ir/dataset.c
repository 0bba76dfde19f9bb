// Data-set sizes for itrc compile --data (ir/dataset.h).
#include "ir/dataset.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/fileio.h"
#include "ir/npy_header.h"
#include "ir/tokenize.h"

static const char *const splits[] = { "train", "dev", "test", "testall" };
#define N_SPLITS ((int)(sizeof splits / sizeof *splits))

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Reads the header of path into *h (the file stays mapped only meanwhile).
// want_rank > 0: the array must be f32 (or i32 with want_i32) of that rank.
static bool npy_header(const char *path, int want_rank, bool want_i32, struct itr_npy_header *h,
                       const uint8_t **map, size_t *map_len, struct itr_diags *d) {
    const uint8_t *data;
    size_t len;
    if (!itr_file_map(path, &data, &len, d)) return false;
    bool ok = itr_npy_header_parse(data, len, path, h, d);
    enum itr_dtype want = want_i32 ? ITR_I32 : ITR_F32;
    if (ok && (h->rank != want_rank || h->dtype != want)) {
        char sh[128];
        itr_shape_format(h->rank, h->shape, sh, sizeof sh);
        itr_diag_error(d, ITR_NOLOC, "%s: is %s%s; expected %s of rank %d (docs/data.md)", path,
                       itr_dtype_name(h->dtype), sh, itr_dtype_name(want), want_rank);
        ok = false;
    }
    if (ok && map) {
        *map = data;
        *map_len = len;
    } else {
        itr_file_unmap(data, len);
    }
    return ok;
}

static bool read_vocab_size(const char *path, int64_t *out, struct itr_diags *d) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        itr_diag_error(d, ITR_NOLOC, "%s: not valid JSON: %s (line %d, column %d)", path, err.text, err.line,
                       err.column);
        return false;
    }
    json_t *idx = json_is_object(root) ? json_object_get(root, "idx") : NULL;
    json_t *w2i = json_is_object(root) ? json_object_get(root, "word2idx") : NULL;
    json_t *i2w = json_is_object(root) ? json_object_get(root, "idx2word") : NULL;
    bool ok = false;
    if (!json_is_integer(idx) || !json_is_object(w2i) || !json_is_object(i2w)) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a vocabulary: expected an object with 'word2idx', 'idx2word' and the "
                       "integer 'idx' (docs/data.md; 'itr-data verify' checks it in full)", path);
    } else if (json_integer_value(idx) < 4 || (int64_t)json_object_size(w2i) != json_integer_value(idx) ||
               (int64_t)json_object_size(i2w) != json_integer_value(idx)) {
        itr_diag_error(d, ITR_NOLOC, "%s: 'idx' is %" PRId64 " but 'word2idx' has %zu entries and 'idx2word' %zu; "
                       "they must agree, with the 4 specials included ('itr-data verify' checks it in full)", path,
                       (int64_t)json_integer_value(idx), json_object_size(w2i), json_object_size(i2w));
    } else {
        *out = json_integer_value(idx);
        ok = true;
    }
    json_decref(root);
    return ok;
}

bool itr_dataset_dims_read(const char *dir, struct itr_dataset_dims *out, struct itr_diags *d) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        itr_diag_error(d, ITR_NOLOC, "%s: %s; --data expects a data set directory (docs/data.md)", dir,
                       stat(dir, &st) != 0 ? "no such directory" : "not a directory");
        return false;
    }
    int errs = d->n_errors;
    char path[600], tok_path[600] = "";
    for (int k = 0; k < N_SPLITS; k++) {
        struct itr_npy_header h;
        snprintf(path, sizeof path, "%s/%s_ims.npy", dir, splits[k]);
        if (exists(path) && npy_header(path, 3, false, &h, NULL, NULL, d)) {
            if (!out->ims_path[0]) {
                out->n_regions = h.shape[1];
                out->feat_dim = h.shape[2];
                snprintf(out->ims_path, sizeof out->ims_path, "%s", path);
            } else if (h.shape[1] != out->n_regions || h.shape[2] != out->feat_dim) {
                itr_diag_error(d, ITR_NOLOC, "%s: %" PRId64 " regions x %" PRId64 " features, but %s has %" PRId64
                               " x %" PRId64 "; every split must have the same feature layout", path, h.shape[1],
                               h.shape[2], out->ims_path, out->n_regions, out->feat_dim);
            }
        }
        snprintf(path, sizeof path, "%s/%s_caps_feats.npy", dir, splits[k]);
        if (exists(path) && npy_header(path, 3, false, &h, NULL, NULL, d)) {
            if (!tok_path[0]) {
                out->token_dim = h.shape[2];
                snprintf(tok_path, sizeof tok_path, "%s", path);
            } else if (h.shape[2] != out->token_dim) {
                itr_diag_error(d, ITR_NOLOC, "%s: token features of size %" PRId64 ", but %s has %" PRId64, path,
                               h.shape[2], tok_path, out->token_dim);
            }
        }
    }
    if (!out->ims_path[0] && d->n_errors == errs)
        itr_diag_error(d, ITR_NOLOC, "%s: no region features (train_ims.npy, dev_ims.npy, test_ims.npy or "
                       "testall_ims.npy); a data set has the layout of docs/data.md", dir);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if (exists(path)) read_vocab_size(path, &out->vocab_size, d);
    return d->n_errors == errs;
}

// The longest line of a captions file in tokens + 2; *line gets its 1-based
// number. Trailing empty lines are not captions (runtime/data.c drops them).
static bool longest_in_captions(const char *path, int64_t *best, int64_t *line, struct itr_diags *d) {
    const uint8_t *data;
    size_t len;
    if (!itr_file_map(path, &data, &len, d)) return false;
    size_t end = len;
    while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r')) end--;
    struct itr_tokbuf tb = { 0 };
    char *text = NULL;
    size_t cap = 0;
    int64_t ln = 0;
    for (size_t i = 0; end > 0 && i <= end;) {
        size_t j = i;
        while (j < end && data[j] != '\n') j++;
        size_t m = j;
        if (m > i && data[m - 1] == '\r') m--;
        if (m - i + 1 > cap) {
            cap = 2 * (m - i + 1);
            text = realloc(text, cap);
            if (!text) abort();
        }
        memcpy(text, data + i, m - i);
        text[m - i] = 0;
        ln++;
        itr_tokbuf_run(&tb, text);
        if (tb.n_tok + 2 > *best) {
            *best = tb.n_tok + 2;
            *line = ln;
        }
        i = j + 1;
    }
    free(text);
    itr_tokbuf_free(&tb);
    itr_file_unmap(data, len);
    return true;
}

bool itr_dataset_longest_caption(const char *dir, bool token_feats, int64_t *len, char *where, size_t n_where,
                                 struct itr_diags *d) {
    *len = 0;
    if (n_where) where[0] = 0;
    int errs = d->n_errors;
    bool any = false;
    char path[600];
    for (int k = 0; k < N_SPLITS; k++) {
        if (token_feats) {
            snprintf(path, sizeof path, "%s/%s_caps_lens.npy", dir, splits[k]);
            struct itr_npy_header h;
            const uint8_t *map;
            size_t map_len;
            if (!exists(path) || !npy_header(path, 1, true, &h, &map, &map_len, d)) continue;
            any = true;
            for (int64_t c = 0; c < h.shape[0]; c++) {
                int32_t v;
                memcpy(&v, map + h.data_offset + (size_t)c * sizeof v, sizeof v);   // any alignment
                if (v > *len) {
                    *len = v;
                    snprintf(where, n_where, "%s: caption %" PRId64, path, c);
                }
            }
            itr_file_unmap(map, map_len);
        } else {
            snprintf(path, sizeof path, "%s/%s_caps.txt", dir, splits[k]);
            if (!exists(path)) continue;
            any = true;
            int64_t before = *len, line = 0;
            if (longest_in_captions(path, len, &line, d) && *len > before)
                snprintf(where, n_where, "%s:%" PRId64, path, line);
        }
    }
    if (!any && d->n_errors == errs)
        itr_diag_error(d, ITR_NOLOC, "%s: no %s of train, dev, test or testall; the model fixes its caption length, "
                       "so --data needs them to size it", dir, token_feats ? "{split}_caps_lens.npy" : "{split}_caps.txt");
    return d->n_errors == errs;
}
