// NumPy .npy files (runtime/npy.h).
//
// Layout: "\x93NUMPY", major, minor, then the header length (u16 LE for
// version 1.0, u32 LE for 2.0 and 3.0), then the header, a Python dict
// literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ending in '\n', then the raw C-order data. The
// header parser is ir/npy_header.c (itrc compile --data reads shapes too).
#include "npy.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ir/fileio.h"
#include "ir/npy_header.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .npy reader hands little-endian data to kernels as is; a big-endian host needs byte swapping here"
#endif

// ------------------------------------------------------------ reading

static struct itr_tensor *copy_out(const uint8_t *buf, const struct itr_npy_header *hd, const char *what,
                                   struct itr_diags *d) {
    struct itr_tensor *t = itr_tensor_new(hd->dtype, hd->rank, hd->shape);
    if (!t) {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory for %zu bytes of data", what, hd->nbytes);
        return NULL;
    }
    if (hd->nbytes) memcpy(t->data, buf + hd->data_offset, hd->nbytes);
    if (hd->dtype == ITR_BOOL)   // kernels rely on bools being exactly 0 or 1
        for (size_t i = 0; i < hd->nbytes; i++) ((uint8_t *)t->data)[i] = ((uint8_t *)t->data)[i] != 0;
    return t;
}

struct itr_tensor *itr_npy_parse(const uint8_t *buf, size_t len, const char *what, struct itr_diags *d) {
    struct itr_npy_header hd;
    if (!what) what = ".npy data";
    if (!itr_npy_header_parse(buf, len, what, &hd, d)) return NULL;
    return copy_out(buf, &hd, what, d);
}

struct itr_tensor *itr_npy_read(const char *path, struct itr_diags *d) {
    const uint8_t *base;
    size_t len;
    if (!itr_file_map(path, &base, &len, d)) return NULL;
    struct itr_npy_header hd;
    struct itr_tensor *t = NULL;
    if (itr_npy_header_parse(base, len, path, &hd, d)) t = copy_out(base, &hd, path, d);
    itr_file_unmap(base, len);
    return t;
}

// A mapped tensor remembers its mapping; the tensor comes first so that the
// pointer handed out is also the pointer itr_npy_unmap gets back.
struct npy_mapped {
    struct itr_tensor t;
    const uint8_t *base;   // NULL when the data was copied
    size_t len;
};

struct itr_tensor *itr_npy_map(const char *path, struct itr_diags *d) {
    const uint8_t *base;
    size_t len;
    if (!itr_file_map(path, &base, &len, d)) return NULL;
    struct itr_npy_header hd;
    if (!itr_npy_header_parse(base, len, path, &hd, d)) {
        itr_file_unmap(base, len);
        return NULL;
    }
    struct npy_mapped *nm = calloc(1, sizeof *nm);
    if (!nm) {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path);
        itr_file_unmap(base, len);
        return NULL;
    }
    nm->t.dtype = hd.dtype;
    nm->t.rank = hd.rank;
    memcpy(nm->t.shape, hd.shape, sizeof hd.shape);
    const uint8_t *data = base + hd.data_offset;
    // Kernels need aligned elements and bools of exactly 0 or 1. numpy pads
    // headers so both hold; a file where they do not is read into memory.
    bool usable = hd.data_offset % itr_dtype_size(hd.dtype) == 0;
    if (usable && hd.dtype == ITR_BOOL)
        for (size_t i = 0; i < hd.nbytes && usable; i++) usable = data[i] <= 1;
    if (usable) {
        nm->t.data = (void *)data;
        nm->base = base;
        nm->len = len;
        return &nm->t;
    }
    struct itr_tensor *c = copy_out(base, &hd, path, d);
    itr_file_unmap(base, len);
    if (!c) { free(nm); return NULL; }
    nm->t.data = c->data;
    nm->t.owns_data = true;
    c->owns_data = false;
    itr_tensor_free(c);
    return &nm->t;
}

void itr_npy_unmap(struct itr_tensor *t) {
    if (!t) return;
    struct npy_mapped *nm = (struct npy_mapped *)t;
    if (nm->base) itr_file_unmap(nm->base, nm->len);
    if (nm->t.owns_data) free(nm->t.data);
    free(nm);
}

// ------------------------------------------------------------ writing

static const uint8_t npy_magic[6] = { 0x93, 'N', 'U', 'M', 'P', 'Y' };

static const char *descr_of(enum itr_dtype dt) {
    switch (dt) {
    case ITR_F32: return "<f4";
    case ITR_F64: return "<f8";
    case ITR_I32: return "<i4";
    case ITR_I64: return "<i8";
    case ITR_BOOL: return "|b1";
    default: return NULL;
    }
}

// Byte-for-byte what numpy's np.save writes (format 1.0): the dict with keys
// sorted, the spare spaces numpy leaves so the first axis can grow in place,
// then padding to a multiple of 64 bytes and a newline.
static size_t npy_header_bytes(const struct itr_tensor *t, char *out, size_t cap) {
    char dict[512];
    size_t w = 0;
    w += (size_t)snprintf(dict + w, sizeof dict - w, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                          descr_of(t->dtype));
    for (int i = 0; i < t->rank; i++)
        w += (size_t)snprintf(dict + w, sizeof dict - w, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    w += (size_t)snprintf(dict + w, sizeof dict - w, "%s), }", t->rank == 1 ? "," : "");
    if (t->rank > 0) {
        // numpy's GROWTH_AXIS_MAX_DIGITS is 21
        char first[32];
        int k = snprintf(first, sizeof first, "%" PRId64, t->shape[0]);
        for (int i = k; i < 21; i++) dict[w++] = ' ';
    }
    size_t hlen = w + 1;                       // with the newline
    size_t pad = 64 - (10 + hlen) % 64;
    size_t total = 10 + hlen + pad;
    if (total > cap) return 0;
    memcpy(out, npy_magic, 6);
    out[6] = 1;
    out[7] = 0;
    size_t field = hlen + pad;
    out[8] = (char)(field & 0xff);
    out[9] = (char)(field >> 8);
    memcpy(out + 10, dict, w);
    memset(out + 10 + w, ' ', pad);
    out[total - 1] = '\n';
    return total;
}

bool itr_npy_write(const char *path, const struct itr_tensor *t, struct itr_diags *d) {
    int64_t numel;
    if (!t || !descr_of(t->dtype) || t->rank < 0 || t->rank > ITR_MAX_RANK || !itr_shape_numel(t->rank, t->shape, &numel)) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot write an invalid tensor", path);
        return false;
    }
    char header[1024];
    size_t hn = npy_header_bytes(t, header, sizeof header);
    if (!hn) {
        itr_diag_error(d, ITR_NOLOC, "%s: .npy header too long", path);
        return false;
    }
    const void *parts[2] = { header, t->data };
    size_t lens[2] = { hn, itr_tensor_nbytes(t) };
    return itr_file_write_atomic(path, parts, lens, 2, d);
}
