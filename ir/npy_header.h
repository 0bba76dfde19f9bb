// The header of a NumPy .npy file (format versions 1.0, 2.0 and 3.0): the
// dtype, shape and where the data starts. runtime/npy.h reads and maps whole
// arrays with it; itrc compile --data reads only the shapes of a data set's
// arrays (ir/dataset.h), and compiler/ may not include runtime/, so the
// parser lives here, where both reach it.
#ifndef ITR_NPY_HEADER_H
#define ITR_NPY_HEADER_H

#include "ir/ir.h"

struct itr_npy_header {
    enum itr_dtype dtype;
    int rank;
    int64_t shape[ITR_MAX_RANK];
    size_t data_offset;   // bytes from the start of the file
    size_t nbytes;        // of the data, which the file holds exactly
};

// Parses the header at buf[0..len) (the whole file: the data size is checked
// against the header). Every failure is an error naming what (the file) and
// what is wrong; little-endian C-order arrays of f4, f8, i4, i8 and b1 only.
bool itr_npy_header_parse(const uint8_t *buf, size_t len, const char *what, struct itr_npy_header *hd,
                          struct itr_diags *d);

#endif
