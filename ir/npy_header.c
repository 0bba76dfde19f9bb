// The .npy header (ir/npy_header.h).
//
// Layout: "\x93NUMPY", major, minor, then the header length (u16 LE for
// version 1.0, u32 LE for 2.0 and 3.0), then the header, a Python dict
// literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ending in '\n', then the raw C-order data.
#include "ir/npy_header.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint8_t npy_magic[6] = { 0x93, 'N', 'U', 'M', 'P', 'Y' };

// ------------------------------------------------------------ header dict parser

struct hparse {
    const char *s;     // header text
    size_t n, i;       // length, cursor
    const char *what;
    struct itr_diags *d;
};

static bool hbad(struct hparse *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool hbad(struct hparse *h, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    itr_diag_error(h->d, ITR_NOLOC, "%s: bad .npy header: %s (at header offset %zu)", h->what, msg, h->i);
    return false;
}

static void skip_ws(struct hparse *h) {
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n' || h->s[h->i] == '\r'))
        h->i++;
}

static bool expect(struct hparse *h, char c) {
    skip_ws(h);
    if (h->i >= h->n) return hbad(h, "expected '%c', the header ends", c);
    if (h->s[h->i] != c) return hbad(h, "expected '%c', found '%c'", c, h->s[h->i] >= 0x20 && h->s[h->i] < 0x7f ? h->s[h->i] : '?');
    h->i++;
    return true;
}

// A Python string literal without escapes (dtype strings and keys need none).
static bool parse_str(struct hparse *h, char *out, size_t cap) {
    skip_ws(h);
    if (h->i >= h->n || (h->s[h->i] != '\'' && h->s[h->i] != '"')) return hbad(h, "expected a quoted string");
    char q = h->s[h->i++];
    size_t k = 0;
    while (h->i < h->n && h->s[h->i] != q) {
        char c = h->s[h->i];
        if (c == '\n') break;   // the header's final newline: the string never closed
        if (c == '\\') return hbad(h, "escape sequences are not supported in header strings");
        if (k + 1 >= cap) return hbad(h, "string too long");
        out[k++] = c;
        h->i++;
    }
    if (h->i >= h->n || h->s[h->i] != q) return hbad(h, "unterminated string");
    h->i++;
    out[k] = 0;
    return true;
}

static bool parse_word(struct hparse *h, const char *w) {
    size_t n = strlen(w);
    if (h->n - h->i >= n && memcmp(h->s + h->i, w, n) == 0) {
        h->i += n;
        return true;
    }
    return false;
}

static bool parse_bool(struct hparse *h, bool *out) {
    skip_ws(h);
    if (parse_word(h, "True")) { *out = true; return true; }
    if (parse_word(h, "False")) { *out = false; return true; }
    return hbad(h, "'fortran_order' must be True or False");
}

static bool parse_dim(struct hparse *h, int64_t *out) {
    skip_ws(h);
    bool neg = false;
    if (h->i < h->n && h->s[h->i] == '-') { neg = true; h->i++; }
    if (h->i >= h->n || h->s[h->i] < '0' || h->s[h->i] > '9') return hbad(h, "expected a dimension");
    int64_t v = 0;
    while (h->i < h->n && h->s[h->i] >= '0' && h->s[h->i] <= '9') {
        int dgt = h->s[h->i] - '0';
        if (v > (INT64_MAX - dgt) / 10) return hbad(h, "dimension too large");
        v = v * 10 + dgt;
        h->i++;
    }
    if (h->i < h->n && h->s[h->i] == 'L') h->i++;   // Python 2 long literals (old numpy)
    if (neg && v != 0) return hbad(h, "negative dimension -%" PRId64 " in 'shape'", v);
    *out = v;
    return true;
}

static bool parse_shape(struct hparse *h, int *rank, int64_t *shape) {
    if (!expect(h, '(')) return false;
    *rank = 0;
    for (;;) {
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == ')') { h->i++; return true; }
        if (*rank >= ITR_MAX_RANK) return hbad(h, "shape has more than %d dimensions", ITR_MAX_RANK);
        if (!parse_dim(h, &shape[(*rank)++])) return false;
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == ',') { h->i++; continue; }
        if (h->i < h->n && h->s[h->i] == ')') { h->i++; return true; }
        return hbad(h, "expected ',' or ')' in 'shape'");
    }
}

static bool dtype_from_descr(const char *descr, enum itr_dtype *dt, const char *what, struct itr_diags *d) {
    char order = 0;
    const char *t = descr;
    if (*t == '<' || *t == '>' || *t == '|' || *t == '=') order = *t++;
    static const struct { const char *code; enum itr_dtype dt; } known[] = {
        { "f4", ITR_F32 }, { "f8", ITR_F64 }, { "i4", ITR_I32 }, { "i8", ITR_I64 }, { "b1", ITR_BOOL },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(t, known[i].code) == 0) {
            if (order == '>' && known[i].dt != ITR_BOOL) {
                itr_diag_error(d, ITR_NOLOC, "%s: big-endian arrays are not supported (dtype '%s'); "
                               "convert with arr.astype('<%s')", what, descr, t);
                return false;
            }
            *dt = known[i].dt;
            return true;
        }
    itr_diag_error(d, ITR_NOLOC, "%s: unsupported dtype '%s' (itrc reads <f4, <f8, <i4, <i8 and |b1)", what, descr);
    return false;
}

static bool parse_dict(struct hparse *h, struct itr_npy_header *hd) {
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    char descr[64] = "";
    if (!expect(h, '{')) return false;
    for (;;) {
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == '}') { h->i++; break; }
        char key[64];
        if (!parse_str(h, key, sizeof key)) return false;
        if (!expect(h, ':')) return false;
        skip_ws(h);
        if (strcmp(key, "descr") == 0) {
            if (have_descr) return hbad(h, "key 'descr' appears twice");
            if (h->i < h->n && h->s[h->i] == '[')
                return hbad(h, "structured dtypes are not supported (itrc reads plain arrays of one dtype)");
            if (!parse_str(h, descr, sizeof descr)) return false;
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order) return hbad(h, "key 'fortran_order' appears twice");
            if (!parse_bool(h, &fortran)) return false;
            have_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape) return hbad(h, "key 'shape' appears twice");
            if (!parse_shape(h, &hd->rank, hd->shape)) return false;
            have_shape = true;
        } else {
            return hbad(h, "unexpected key '%s' (a .npy header has 'descr', 'fortran_order' and 'shape')", key);
        }
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == ',') { h->i++; continue; }
        if (h->i < h->n && h->s[h->i] == '}') { h->i++; break; }
        return hbad(h, "expected ',' or '}' after the value of '%s'", key);
    }
    skip_ws(h);
    if (h->i < h->n) return hbad(h, "unexpected text after the dict");
    if (!have_descr || !have_order || !have_shape)
        return hbad(h, "missing key '%s'", !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    if (!dtype_from_descr(descr, &hd->dtype, h->what, h->d)) return false;
    // A Fortran-order array of rank < 2 has the same bytes as a C-order one.
    if (fortran && hd->rank >= 2) {
        itr_diag_error(h->d, ITR_NOLOC,
                       "%s: Fortran-order arrays are not supported; save with np.ascontiguousarray", h->what);
        return false;
    }
    return true;
}

bool itr_npy_header_parse(const uint8_t *buf, size_t len, const char *what, struct itr_npy_header *hd,
                          struct itr_diags *d) {
    memset(hd, 0, sizeof *hd);
    if (len == 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: empty file, not a .npy file", what);
        return false;
    }
    if (memcmp(buf, npy_magic, len < 6 ? len : 6) != 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a .npy file (bad magic)", what);
        return false;
    }
    if (len < 8) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated .npy file: %zu bytes, it ends inside the header", what, len);
        return false;
    }
    unsigned major = buf[6], minor = buf[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: unsupported .npy format version %u.%u (itrc reads 1.0, 2.0 and 3.0)",
                       what, major, minor);
        return false;
    }
    size_t lenbytes = major == 1 ? 2 : 4;
    if (len < 8 + lenbytes) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated .npy file: %zu bytes, it ends inside the header", what, len);
        return false;
    }
    size_t hlen = major == 1 ? (size_t)buf[8] | (size_t)buf[9] << 8
                             : (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    size_t start = 8 + lenbytes;
    if (hlen > len - start) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated .npy file: the header is %zu bytes, the file ends after %zu",
                       what, hlen, len - start);
        return false;
    }
    struct hparse h = { (const char *)buf + start, hlen, 0, what, d };
    if (!parse_dict(&h, hd)) return false;

    int64_t numel;
    size_t isz = itr_dtype_size(hd->dtype);
    if (!itr_shape_numel(hd->rank, hd->shape, &numel) || (uint64_t)numel > SIZE_MAX / isz) {
        char sh[256];
        itr_shape_format(hd->rank, hd->shape, sh, sizeof sh);
        itr_diag_error(d, ITR_NOLOC, "%s: shape %s has too many elements", what, sh);
        return false;
    }
    hd->data_offset = start + hlen;
    hd->nbytes = (size_t)numel * isz;
    if (hd->nbytes != len - hd->data_offset) {
        itr_diag_error(d, ITR_NOLOC, "%s: header promises %zu bytes of data, file has %zu", what, hd->nbytes,
                       len - hd->data_offset);
        return false;
    }
    return true;
}
