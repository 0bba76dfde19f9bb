// The word vocabulary in the field's JSON layout (models.md §1.2): read with
// every disagreement named, written atomically, looked up through an
// open-addressing table, built from caption files, hashed for plans.
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ir/fileio.h"
#include "runtime/data.h"
#include "runtime/tokenize_internal.h"

static const char *const specials[4] = { "<pad>", "<start>", "<end>", "<unk>" };

static uint64_t word_hash(const char *w) { return XXH64(w, strlen(w), 0); }

// Slot of word in the table: its index there, or the empty slot it would take.
static int32_t find_slot(const struct itr_vocab *v, const char *w) {
    uint32_t mask = (uint32_t)v->table_cap - 1;
    for (uint32_t h = (uint32_t)word_hash(w) & mask;; h = (h + 1) & mask) {
        int32_t i = v->table[h];
        if (i < 0 || strcmp(v->words[i], w) == 0) return (int32_t)h;
    }
}

static void rehash(struct itr_vocab *v, int cap) {
    free(v->table);
    v->table = malloc((size_t)cap * sizeof *v->table);
    if (!v->table) abort();
    v->table_cap = cap;
    for (int i = 0; i < cap; i++) v->table[i] = -1;
    // A duplicate word keeps its first index (itr_vocab_read reports it).
    for (int i = 0; i < v->n; i++) {
        int32_t s = find_slot(v, v->words[i]);
        if (v->table[s] < 0) v->table[s] = i;
    }
}

// Appends w; the index of an existing equal word when it is already there.
static int32_t vocab_add(struct itr_vocab *v, const char *w, int *cap_words) {
    if (2 * (v->n + 1) > v->table_cap) rehash(v, v->table_cap ? 2 * v->table_cap : 64);
    int32_t s = find_slot(v, w);
    if (v->table[s] >= 0) return v->table[s];
    if (v->n == *cap_words) {
        *cap_words = *cap_words ? 2 * *cap_words : 64;
        char **nw = realloc(v->words, (size_t)*cap_words * sizeof *nw);
        if (!nw) abort();
        v->words = nw;
    }
    v->words[v->n] = strdup(w);
    if (!v->words[v->n]) abort();
    v->table[s] = v->n;
    return v->n++;
}

int32_t itr_vocab_lookup(const struct itr_vocab *v, const char *word) {
    if (!v || !v->table_cap) return ITR_VOCAB_UNK;
    int32_t i = v->table[find_slot(v, word)];
    return i < 0 ? ITR_VOCAB_UNK : i;
}

void itr_vocab_free(struct itr_vocab *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->table);
    memset(v, 0, sizeof *v);
}

uint64_t itr_vocab_hash(const struct itr_vocab *v) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) abort();
    XXH64_reset(st, 0);
    // The NUL after each word keeps ["ab","c"] and ["a","bc"] apart.
    for (int i = 0; i < v->n; i++) XXH64_update(st, v->words[i], strlen(v->words[i]) + 1);
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

// ------------------------------------------------------------ JSON

static bool parse_index(const char *key, int64_t *out) {
    if (!*key || (key[0] == '0' && key[1])) return false;
    int64_t x = 0;
    for (const char *p = key; *p; p++) {
        if (*p < '0' || *p > '9' || x > 100000000) return false;
        x = 10 * x + (*p - '0');
    }
    *out = x;
    return true;
}

bool itr_vocab_read(const char *path, struct itr_vocab *v, struct itr_diags *d) {
    memset(v, 0, sizeof *v);
    uint8_t *buf;
    size_t len;
    if (!itr_file_read_all(path, &buf, &len, d)) return false;
    json_error_t err;
    json_t *root = json_loadb((const char *)buf, len, 0, &err);
    free(buf);
    if (!root) {
        itr_diag_error(d, ITR_NOLOC, "%s: not valid JSON: %s (line %d, column %d)", path, err.text, err.line,
                       err.column);
        return false;
    }
    int errs = d->n_errors;
    json_t *w2i = json_object_get(root, "word2idx"), *i2w = json_object_get(root, "idx2word"),
           *idx = json_object_get(root, "idx");
    if (!json_is_object(root)) {
        itr_diag_error(d, ITR_NOLOC, "%s: expected a JSON object with keys word2idx, idx2word and idx", path);
        goto done;
    }
    if (!json_is_object(w2i)) itr_diag_error(d, ITR_NOLOC, "%s: key 'word2idx' %s", path,
                                             w2i ? "is not an object (word -> index)" : "is missing");
    if (!json_is_object(i2w)) itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word' %s", path,
                                             i2w ? "is not an object (\"index\" -> word)" : "is missing");
    if (!json_is_integer(idx)) itr_diag_error(d, ITR_NOLOC, "%s: key 'idx' %s", path,
                                              idx ? "is not an integer (the vocabulary size)" : "is missing");
    if (d->n_errors > errs) goto done;
    int64_t n = json_integer_value(idx);
    if (n < 4 || n > 100000000) {
        itr_diag_error(d, ITR_NOLOC, "%s: key 'idx' is %" PRId64 "; a vocabulary has the 4 specials and at most "
                       "10^8 words", path, n);
        goto done;
    }
    if ((int64_t)json_object_size(i2w) != n)
        itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word' has %zu entries but 'idx' says %" PRId64, path,
                       json_object_size(i2w), n);
    if ((int64_t)json_object_size(w2i) != n)
        itr_diag_error(d, ITR_NOLOC, "%s: key 'word2idx' has %zu entries but 'idx' says %" PRId64, path,
                       json_object_size(w2i), n);
    if (d->n_errors > errs) goto done;
    v->words = calloc((size_t)n, sizeof *v->words);
    if (!v->words) abort();
    v->n = (int)n;
    const char *key;
    json_t *val;
    json_object_foreach(i2w, key, val) {
        int64_t i;
        if (!parse_index(key, &i) || i >= n) {
            itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word' has key \"%s\"; expected the indices \"0\" to \"%" PRId64
                           "\"", path, key, n - 1);
        } else if (!json_is_string(val)) {
            itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word': entry \"%s\" is not a string", path, key);
        } else {
            v->words[i] = strdup(json_string_value(val));
            if (!v->words[i]) abort();
        }
    }
    if (d->n_errors > errs) goto done;
    for (int i = 0; i < 4; i++)
        if (strcmp(v->words[i], specials[i]) != 0)
            itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word': index %d is \"%s\"; expected the special \"%s\"", path, i,
                           v->words[i], specials[i]);
    {
        int cap = 64;
        while (cap < 2 * v->n) cap *= 2;
        rehash(v, cap);
    }
    for (int i = 0; i < v->n; i++) {
        int32_t s = find_slot(v, v->words[i]);
        if (v->table[s] != i) {
            itr_diag_error(d, ITR_NOLOC, "%s: key 'idx2word': \"%s\" appears at indices %d and %d", path, v->words[i],
                           v->table[s], i);
            if (d->n_errors - errs > 20) goto done;
        }
    }
    json_object_foreach(w2i, key, val) {
        int32_t i = itr_vocab_lookup(v, key);
        bool present = i != ITR_VOCAB_UNK || strcmp(key, "<unk>") == 0;
        if (!json_is_integer(val)) {
            itr_diag_error(d, ITR_NOLOC, "%s: key 'word2idx': \"%s\" maps to a non-integer", path, key);
        } else if (!present) {
            itr_diag_error(d, ITR_NOLOC, "%s: key 'word2idx' has \"%s\" (-> %" PRId64 ") but 'idx2word' does not",
                           path, key, (int64_t)json_integer_value(val));
        } else if (json_integer_value(val) != i) {
            itr_diag_error(d, ITR_NOLOC, "%s: maps disagree: 'word2idx' has \"%s\" -> %" PRId64
                           " but 'idx2word' has %d -> \"%s\"", path, key, (int64_t)json_integer_value(val), i, key);
        } else {
            continue;
        }
        if (d->n_errors - errs > 20) break;
    }
done:
    json_decref(root);
    if (d->n_errors > errs) {
        itr_vocab_free(v);
        return false;
    }
    return true;
}

bool itr_vocab_write(const char *path, const struct itr_vocab *v, struct itr_diags *d) {
    json_t *root = json_object(), *w2i = json_object(), *i2w = json_object();
    if (!root || !w2i || !i2w) abort();
    for (int i = 0; i < v->n; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        if (json_object_set_new(w2i, v->words[i], json_integer(i)) != 0 ||
            json_object_set_new(i2w, key, json_string(v->words[i])) != 0) {
            itr_diag_error(d, ITR_NOLOC, "%s: word %d is not valid UTF-8; cannot write it as JSON", path, i);
            json_decref(w2i);
            json_decref(i2w);
            json_decref(root);
            return false;
        }
    }
    json_object_set_new(root, "word2idx", w2i);
    json_object_set_new(root, "idx2word", i2w);
    json_object_set_new(root, "idx", json_integer(v->n));
    char *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    if (!text) abort();
    const void *parts[] = { text, "\n" };
    size_t lens[] = { strlen(text), 1 };
    bool ok = itr_file_write_atomic(path, parts, lens, 2, d);
    free(text);
    return ok;
}

// ------------------------------------------------------------ building

struct build_entry { int64_t count, first; };

static int by_count(const void *a, const void *b) {
    const struct build_entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

bool itr_vocab_build(const char *const *caption_files, int n_files, int min_count, struct itr_vocab *v,
                     struct itr_diags *d) {
    memset(v, 0, sizeof *v);
    // All words seen go into a scratch vocabulary; counts ride alongside.
    struct itr_vocab all = { 0 };
    int cap_all = 0, cap_counts = 0;
    struct build_entry *counts = NULL;
    struct itr_tokbuf tb = { 0 };
    bool ok = true;
    for (int f = 0; f < n_files; f++) {
        const uint8_t *data;
        size_t len;
        if (!itr_file_map(caption_files[f], &data, &len, d)) { ok = false; continue; }
        char *line = NULL;
        size_t line_cap = 0;
        for (size_t i = 0; i < len;) {
            size_t j = i;
            while (j < len && data[j] != '\n') j++;
            size_t m = j;
            if (m > i && data[m - 1] == '\r') m--;
            if (m - i + 1 > line_cap) {
                line_cap = m - i + 1;
                line = realloc(line, line_cap);
                if (!line) abort();
            }
            memcpy(line, data + i, m - i);
            line[m - i] = 0;
            itr_tokbuf_run(&tb, line);
            for (int t = 0; t < tb.n_tok; t++) {
                int n_before = all.n;
                int32_t k = vocab_add(&all, tb.text + tb.tok[t], &cap_all);
                if (all.n > n_before) {
                    if (all.n > cap_counts) {
                        cap_counts = cap_counts ? 2 * cap_counts : 256;
                        counts = realloc(counts, (size_t)cap_counts * sizeof *counts);
                        if (!counts) abort();
                    }
                    counts[k] = (struct build_entry){ 0, k };
                }
                counts[k].count++;
            }
            i = j + 1;
        }
        free(line);
        itr_file_unmap(data, len);
    }
    itr_tokbuf_free(&tb);
    if (ok) {
        int cap_v = 0;
        for (int i = 0; i < 4; i++) vocab_add(v, specials[i], &cap_v);
        if (all.n) qsort(counts, (size_t)all.n, sizeof *counts, by_count);
        for (int i = 0; i < all.n; i++)
            if (counts[i].count >= min_count) vocab_add(v, all.words[counts[i].first], &cap_v);
    }
    free(counts);
    itr_vocab_free(&all);
    return ok;
}
