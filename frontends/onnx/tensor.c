// ONNX TensorProto <-> itr_tensor, and the small safetensors writer of
// `itrc import --weights`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"
#include "ir/fileio.h"

bool ox_dtype_from_onnx(int32_t t, enum itr_dtype *out) {
    switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: *out = ITR_F32; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: *out = ITR_F64; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: *out = ITR_I32; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: *out = ITR_I64; return true;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: *out = ITR_BOOL; return true;
    default: return false;
    }
}

const char *ox_onnx_type_name(int32_t t) {
    static const char *names[] = { "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                   "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                   "COMPLEX128", "BFLOAT16" };
    return t >= 0 && t < (int32_t)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

// Little-endian raw bytes to host values; the machines itrc runs on are
// little-endian, which the build assumes elsewhere too (plans, safetensors).
struct itr_tensor *ox_tensor_from_proto(const Onnx__TensorProto *t, const char *what, struct itr_diags *d) {
    const char *nm = t->name && t->name[0] ? t->name : "(unnamed)";
    enum itr_dtype dt;
    if (!ox_dtype_from_onnx(t->data_type, &dt)) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' has ONNX type %s, which itrc does not support (f32, f64, "
                       "i32, i64 and bool are)", what, nm, ox_onnx_type_name(t->data_type));
        return NULL;
    }
    if (t->n_dims > ITR_MAX_RANK) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' has rank %zu; at most %d is supported", what, nm, t->n_dims,
                       ITR_MAX_RANK);
        return NULL;
    }
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' keeps its data in an external file, which is not supported",
                       what, nm);
        return NULL;
    }
    int64_t shape[ITR_MAX_RANK];
    for (size_t i = 0; i < t->n_dims; i++) shape[i] = t->dims[i];
    int64_t numel;
    if (!itr_shape_numel((int)t->n_dims, shape, &numel)) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' has an invalid shape", what, nm);
        return NULL;
    }
    size_t es = itr_dtype_size(dt);
    // Every source of elements, with how many it holds.
    size_t have;
    if (t->has_raw_data) have = t->raw_data.len / es;
    else if (dt == ITR_F32) have = t->n_float_data;
    else if (dt == ITR_F64) have = t->n_double_data;
    else if (dt == ITR_I64) have = t->n_int64_data;
    else have = t->n_int32_data;   // INT32 and BOOL live in int32_data
    if ((t->has_raw_data && t->raw_data.len != (size_t)numel * es) || have != (size_t)numel) {
        itr_diag_error(d, ITR_NOLOC, "%s: tensor '%s' of %lld elements holds %zu", what, nm, (long long)numel,
                       t->has_raw_data ? t->raw_data.len / es : have);
        return NULL;
    }
    struct itr_tensor *out = itr_tensor_new(dt, (int)t->n_dims, shape);
    if (!out) {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory for tensor '%s'", what, nm);
        return NULL;
    }
    if (t->has_raw_data) {
        if (numel) memcpy(out->data, t->raw_data.data, (size_t)numel * es);
        if (dt == ITR_BOOL)
            for (int64_t i = 0; i < numel; i++) ((uint8_t *)out->data)[i] = ((uint8_t *)out->data)[i] != 0;
        return out;
    }
    for (int64_t i = 0; i < numel; i++) {
        switch (dt) {
        case ITR_F32: ((float *)out->data)[i] = t->float_data[i]; break;
        case ITR_F64: ((double *)out->data)[i] = t->double_data[i]; break;
        case ITR_I64: ((int64_t *)out->data)[i] = t->int64_data[i]; break;
        case ITR_I32: ((int32_t *)out->data)[i] = t->int32_data[i]; break;
        case ITR_BOOL: ((uint8_t *)out->data)[i] = t->int32_data[i] != 0; break;
        default: break;
        }
    }
    return out;
}

struct itr_tensor *itr_onnx_tensor_parse(const char *what, const uint8_t *buf, size_t len, char **name,
                                         struct itr_diags *d) {
    if (name) *name = NULL;
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!t) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a valid ONNX TensorProto", what);
        return NULL;
    }
    struct itr_tensor *out = ox_tensor_from_proto(t, what, d);
    if (out && name && t->name) *name = strdup(t->name);
    onnx__tensor_proto__free_unpacked(t, NULL);
    return out;
}

struct itr_tensor *itr_onnx_tensor_read_file(const char *path, char **name, struct itr_diags *d) {
    uint8_t *buf;
    size_t len;
    if (!itr_file_read_all(path, &buf, &len, d)) return NULL;
    struct itr_tensor *t = itr_onnx_tensor_parse(path, buf, len, name, d);
    free(buf);
    return t;
}

// ------------------------------------------------------------ safetensors

struct sbuf { char *s; size_t n, cap; bool oom; };

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
}

// Names are JSON strings: quotes, backslashes and control characters escaped.
static void sb_json_string(struct sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

bool itr_onnx_write_safetensors(const char *path, const struct itr_tensor_set *s, struct itr_diags *d) {
    static const char *st_names[ITR_DTYPE_COUNT] = { "F32", "F64", "I32", "I64", "BOOL" };
    struct sbuf h = { 0 };
    sb_printf(&h, "{");
    size_t off = 0;
    for (int i = 0; i < s->n; i++) {
        const struct itr_tensor *t = s->items[i].tensor;
        if (i) sb_printf(&h, ",");
        sb_json_string(&h, s->items[i].name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_names[t->dtype]);
        for (int k = 0; k < t->rank; k++) sb_printf(&h, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        size_t nb = itr_tensor_nbytes(t);
        sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    sb_printf(&h, "}");
    // The format pads the header with spaces to a multiple of 8 bytes.
    while (!h.oom && h.n % 8) sb_printf(&h, " ");
    if (h.oom) {
        free(h.s);
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path);
        return false;
    }
    int n = s->n + 2;
    const void **parts = malloc((size_t)n * sizeof *parts);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    bool ok = parts && lens;
    if (ok) {
        uint8_t len8[8];
        for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)h.n >> (8 * k));
        parts[0] = len8; lens[0] = 8;
        parts[1] = h.s; lens[1] = h.n;
        for (int i = 0; i < s->n; i++) {
            parts[i + 2] = s->items[i].tensor->data;
            lens[i + 2] = itr_tensor_nbytes(s->items[i].tensor);
        }
        ok = itr_file_write_atomic(path, parts, lens, n, d);
    } else {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path);
    }
    free(parts);
    free(lens);
    free(h.s);
    return ok;
}
