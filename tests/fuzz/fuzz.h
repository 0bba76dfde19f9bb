// Shared by the fuzz targets (tests/fuzz/fuzz_*.c): the libFuzzer entry
// point, the invariant every reader keeps, and scratch files for readers that
// only take a path.
//
// Invariant: a reader that fails has reported at least one error, and one
// that succeeds has reported none (docs/contributing.md: bad input is a
// clear error, never a crash and never a silent failure).
#ifndef ITR_FUZZ_H
#define ITR_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// A broken invariant is a finding: abort so libFuzzer saves the input.
#define FUZZ_CHECK(cond)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static inline void fuzz_check_outcome(bool ok, const struct itr_diags *d) {
    if (!ok && d->n_errors == 0) {
        fprintf(stderr, "fuzz invariant failed: the reader failed without reporting an error\n");
        abort();
    }
    if (ok && d->n_errors > 0) {
        itr_diags_print(d, stderr);
        fprintf(stderr, "fuzz invariant failed: the reader succeeded but reported the errors above\n");
        abort();
    }
}

// The per-process scratch folder (in /dev/shm where it exists, so the file
// round trips cost no disk I/O), removed at exit.
static char fuzz_dir_path[64];
static void fuzz_dir_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/itr-fuzz-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(fuzz_dir_path)) { perror("fuzz: mkdtemp"); abort(); }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_path;
}

// Writes data to fuzz_dir()/name and returns the path (a static buffer,
// overwritten by the next call).
static inline const char *fuzz_write_file(const char *name, const void *data, size_t n) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) { perror(path); abort(); }
    return path;
}

#endif
