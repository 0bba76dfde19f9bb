// Whole-file reads and atomic writes, shared by every file format itrc
// writes (plans, .npy, safetensors). Errors are user errors (a missing file,
// a full disk) and go to diags as "<path>: <what went wrong>".
#ifndef ITR_FILEIO_H
#define ITR_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

// Reads the whole regular file at path into a malloc'd buffer (*len bytes; the
// buffer has one extra NUL byte so text parsers may treat it as a string).
bool itr_file_read_all(const char *path, uint8_t **buf, size_t *len, struct itr_diags *d);

// Maps the whole regular file at path read-only. An empty file gives a
// non-NULL pointer to zero bytes. Release with itr_file_unmap. Readers that
// copy what they need out of the file use this instead of itr_file_read_all
// so that peak memory holds one copy of the data, not two.
bool itr_file_map(const char *path, const uint8_t **data, size_t *len, struct itr_diags *d);
void itr_file_unmap(const uint8_t *data, size_t len);

// Writes the concatenation of n parts to path atomically: a temporary
// "path.tmp.XXXXXX" in the same directory is written, flushed to disk and
// renamed over path, so a reader sees the old file or the new one, never a
// mixture, even if the writer dies half-way.
bool itr_file_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n,
                           struct itr_diags *d);

#endif
