// safetensors files (ir/safetensors.h).
//
// Reading validates the whole header before touching any data: the header
// length against the file, each entry's dtype, shape and offsets against the
// data section, and that no two tensors share bytes. Data is copied into
// fresh (aligned) buffers because the format does not align tensors.
#include "ir/safetensors.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ir/fileio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and is copied as is; a big-endian host needs byte swapping here"
#endif

#define MAX_HEADER ((uint64_t)100 * 1000 * 1000)

// ------------------------------------------------------------ dtypes

static const struct { const char *name; enum itr_dtype dt; } st_dtypes[] = {
    { "F32", ITR_F32 }, { "F64", ITR_F64 }, { "I32", ITR_I32 }, { "I64", ITR_I64 }, { "BOOL", ITR_BOOL },
};

static const char *st_dtype_name(enum itr_dtype dt) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
    return NULL;
}

static bool st_dtype_from_name(const char *s, enum itr_dtype *dt) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) { *dt = st_dtypes[i].dt; return true; }
    return false;
}

// ------------------------------------------------------------ reading

struct entry {
    const char *name;     // into the JSON document
    enum itr_dtype dtype;
    int rank;
    int64_t shape[ITR_MAX_RANK];
    uint64_t begin, end;
};

static int cmp_entry_begin(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static bool read_entry(const char *what, const char *name, json_t *v, uint64_t data_len, struct entry *e,
                       struct itr_diags *d) {
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!json_is_object(v)) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': its header entry is not a JSON object", what, name);
        return false;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"), *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo)) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': the entry needs \"dtype\" (a string), \"shape\" and "
                       "\"data_offsets\" (arrays)", what, name);
        return false;
    }
    if (!st_dtype_from_name(json_string_value(jd), &e->dtype)) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': unsupported dtype '%s' (itrc reads F32, F64, I32, I64 and BOOL)",
                       what, name, json_string_value(jd));
        return false;
    }
    size_t rank = json_array_size(js);
    if (rank > ITR_MAX_RANK) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': rank %zu exceeds the maximum %d", what, name, rank, ITR_MAX_RANK);
        return false;
    }
    e->rank = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': shape entry %zu is not a non-negative integer", what, name, i);
            return false;
        }
        e->shape[i] = (int64_t)json_integer_value(x);
    }
    int64_t numel;
    size_t isz = itr_dtype_size(e->dtype);
    if (!itr_shape_numel(e->rank, e->shape, &numel) || (uint64_t)numel > UINT64_MAX / isz) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': shape has too many elements", what, name);
        return false;
    }
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)) ||
        json_integer_value(json_array_get(jo, 0)) < 0 || json_integer_value(json_array_get(jo, 1)) < 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': data_offsets must be [begin, end] with non-negative integers",
                       what, name);
        return false;
    }
    e->begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
    e->end = (uint64_t)json_integer_value(json_array_get(jo, 1));
    if (e->begin > e->end || e->end > data_len) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] lie outside the "
                       "%" PRIu64 "-byte data section", what, name, e->begin, e->end, data_len);
        return false;
    }
    uint64_t want = (uint64_t)numel * isz;
    if (e->end - e->begin != want) {
        char sh[256];
        itr_shape_format(e->rank, e->shape, sh, sizeof sh);
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': %s%s needs %" PRIu64 " bytes, data_offsets give %" PRIu64,
                       what, name, json_string_value(jd), sh, want, e->end - e->begin);
        return false;
    }
    return true;
}

bool itr_safetensors_parse(const uint8_t *buf, size_t len, const char *what, struct itr_tensor_set *out,
                           struct itr_diags *d) {
    itr_tensor_set_init(out);
    if (!what) what = "safetensors data";
    if (len == 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: empty file, not a safetensors file", what);
        return false;
    }
    if (len < 8) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated safetensors file: %zu bytes, the header length field alone is 8",
                       what, len);
        return false;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    if (hl > MAX_HEADER) {
        itr_diag_error(d, ITR_NOLOC, "%s: header length %" PRIu64 " exceeds the 100 MB limit (not a safetensors file?)",
                       what, hl);
        return false;
    }
    if (hl > len - 8) {
        itr_diag_error(d, ITR_NOLOC, "%s: header length %" PRIu64 " is larger than the file (%zu bytes after the "
                       "length field); the file is truncated or not a safetensors file", what, hl, len - 8);
        return false;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        itr_diag_error(d, ITR_NOLOC, "%s: bad JSON header: %s (line %d, column %d)", what, jerr.text, jerr.line,
                       jerr.column);
        return false;
    }
    if (!json_is_object(root)) {
        itr_diag_error(d, ITR_NOLOC, "%s: bad JSON header: expected an object", what);
        json_decref(root);
        return false;
    }
    const uint8_t *data = buf + 8 + hl;
    uint64_t data_len = len - 8 - hl;
    size_t n = json_object_size(root);
    struct entry *es = calloc(n ? n : 1, sizeof *es);
    if (!es) {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory", what);
        json_decref(root);
        return false;
    }
    size_t ne = 0;
    bool ok = true;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                itr_diag_error(d, ITR_NOLOC, "%s: __metadata__ must be an object of strings", what);
                ok = false;
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    itr_diag_error(d, ITR_NOLOC, "%s: __metadata__ value for '%s' is not a string", what, mk);
                    ok = false;
                    break;
                }
                itr_tensor_set_meta(out, mk, json_string_value(mv));
            }
            if (!ok) break;
            continue;
        }
        if (!read_entry(what, key, v, data_len, &es[ne], d)) { ok = false; break; }
        ne++;
    }
    if (ok) {
        qsort(es, ne, sizeof *es, cmp_entry_begin);
        // Sorted by begin, a range overlaps an earlier one exactly when it
        // starts before the furthest end seen so far; empty ranges hold no
        // bytes and overlap nothing.
        uint64_t far = 0;
        const char *far_name = NULL;
        for (size_t i = 0; i < ne && ok; i++) {
            if (es[i].begin == es[i].end) continue;
            if (far_name && es[i].begin < far) {
                itr_diag_error(d, ITR_NOLOC, "%s: tensors '%s' and '%s' overlap in the data section", what, far_name,
                               es[i].name);
                ok = false;
            }
            if (es[i].end > far) { far = es[i].end; far_name = es[i].name; }
        }
    }
    for (size_t i = 0; i < ne && ok; i++) {
        struct itr_tensor *t = itr_tensor_new(es[i].dtype, es[i].rank, es[i].shape);
        if (!t) {
            itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s': out of memory", what, es[i].name);
            ok = false;
            break;
        }
        size_t nb = (size_t)(es[i].end - es[i].begin);
        if (nb) memcpy(t->data, data + es[i].begin, nb);
        if (t->dtype == ITR_BOOL)   // kernels rely on bools being exactly 0 or 1
            for (size_t k = 0; k < nb; k++) ((uint8_t *)t->data)[k] = ((uint8_t *)t->data)[k] != 0;
        itr_tensor_set_put(out, es[i].name, t);
    }
    free(es);
    json_decref(root);
    if (!ok) itr_tensor_set_free(out);
    return ok;
}

bool itr_safetensors_read(const char *path, struct itr_tensor_set *out, struct itr_diags *d) {
    const uint8_t *buf;
    size_t len;
    itr_tensor_set_init(out);
    if (!itr_file_map(path, &buf, &len, d)) return false;
    bool ok = itr_safetensors_parse(buf, len, path, out, d);
    itr_file_unmap(buf, len);
    return ok;
}

// ------------------------------------------------------------ writing

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const struct itr_named_tensor *const *)a)->name, (*(const struct itr_named_tensor *const *)b)->name);
}

bool itr_safetensors_write(const char *path, const struct itr_tensor_set *s, struct itr_diags *d) {
    const struct itr_named_tensor **order = malloc((size_t)(s->n ? s->n : 1) * sizeof *order);
    const void **parts = malloc((size_t)(s->n + 2) * sizeof *parts);
    size_t *lens = malloc((size_t)(s->n + 2) * sizeof *lens);
    json_t *root = json_object();
    char *text = NULL;
    bool ok = order && parts && lens && root;
    if (!ok) itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path);
    for (int i = 0; i < s->n && ok; i++) order[i] = &s->items[i];
    // The file's layout must not depend on insertion order: sorted names.
    if (ok) qsort(order, (size_t)s->n, sizeof *order, cmp_by_name);
    if (ok && s->n_meta > 0) {
        json_t *meta = json_object();
        for (int i = 0; i < s->n_meta && ok; i++)
            if (!meta || json_object_set_new(meta, s->meta_keys[i], json_string(s->meta_values[i])) != 0) {
                itr_diag_error(d, ITR_NOLOC, "%s: metadata '%s' is not valid UTF-8", path, s->meta_keys[i]);
                ok = false;
            }
        if (ok) json_object_set_new(root, "__metadata__", meta);
        else json_decref(meta);
    }
    uint64_t offset = 0;
    for (int k = 0; k < s->n && ok; k++) {
        const struct itr_named_tensor *it = order[k];
        const struct itr_tensor *t = it->tensor;
        int64_t numel;
        if (strcmp(it->name, "__metadata__") == 0) {
            itr_diag_error(d, ITR_NOLOC, "%s: '__metadata__' cannot be a tensor name", path);
            ok = false;
            break;
        }
        if (!t || !st_dtype_name(t->dtype) || t->rank < 0 || t->rank > ITR_MAX_RANK ||
            !itr_shape_numel(t->rank, t->shape, &numel)) {
            itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' is invalid", path, it->name);
            ok = false;
            break;
        }
        size_t nb = itr_tensor_nbytes(t);
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int i = 0; i < t->rank; i++) json_array_append_new(shape, json_integer(t->shape[i]));
        json_array_append_new(offs, json_integer((json_int_t)offset));
        json_array_append_new(offs, json_integer((json_int_t)(offset + nb)));
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, it->name, e) != 0) {
            itr_diag_error(d, ITR_NOLOC, "%s: tensor name '%s' is not valid UTF-8", path, it->name);
            ok = false;
            break;
        }
        parts[2 + k] = t->data;
        lens[2 + k] = nb;
        offset += nb;
    }
    if (ok) {
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text) { itr_diag_error(d, ITR_NOLOC, "%s: cannot encode the header", path); ok = false; }
    }
    uint8_t *head = NULL;
    if (ok) {
        // Spaces pad the JSON so the data section starts 8-byte aligned.
        size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
        head = malloc(8 + padded);
        if (!head) { itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path); ok = false; }
        else {
            for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)padded >> (8 * i));
            memcpy(head + 8, text, tl);
            memset(head + 8 + tl, ' ', padded - tl);
            parts[0] = head;
            lens[0] = 8 + padded;
            parts[1] = "";
            lens[1] = 0;
        }
    }
    if (ok) ok = itr_file_write_atomic(path, parts, lens, s->n + 2, d);
    free(head);
    free(text);
    if (root) json_decref(root);
    free(order);
    free(parts);
    free(lens);
    return ok;
}
