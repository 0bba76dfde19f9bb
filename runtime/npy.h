// NumPy .npy files (format versions 1.0, 2.0 and 3.0), little-endian, C order.
// Reading checks the magic, the header's dict, the dtype, and that the data
// the header promises is really in the file; every failure is a message that
// names the file and what is wrong. Fortran-order and big-endian arrays are
// rejected with a message saying so.
#ifndef ITR_NPY_H
#define ITR_NPY_H

#include "ir/ir.h"

// Reads the whole array into memory.
struct itr_tensor *itr_npy_read(const char *path, struct itr_diags *d);
// Maps the file read-only (data pointer into the mapping); release with
// itr_npy_unmap, never itr_tensor_free. A file whose data is misaligned for
// its dtype (numpy never writes one) is read into memory instead.
struct itr_tensor *itr_npy_map(const char *path, struct itr_diags *d);
void itr_npy_unmap(struct itr_tensor *t);
// From a buffer already in memory (what names it in messages).
struct itr_tensor *itr_npy_parse(const uint8_t *buf, size_t len, const char *what, struct itr_diags *d);
// Writes atomically (temporary file + rename).
bool itr_npy_write(const char *path, const struct itr_tensor *t, struct itr_diags *d);

#endif
