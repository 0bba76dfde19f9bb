#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_file(const char *path, struct stat *st, struct itr_diags *d) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st->st_mode)) {
        itr_diag_error(d, ITR_NOLOC, "%s: is a directory, not a file", path);
        close(fd);
        return -1;
    }
    if (S_ISREG(st->st_mode) && (uint64_t)st->st_size >= (uint64_t)SIZE_MAX / 2) {
        itr_diag_error(d, ITR_NOLOC, "%s: file too large", path);
        close(fd);
        return -1;
    }
    return fd;
}

bool itr_file_read_all(const char *path, uint8_t **buf, size_t *len, struct itr_diags *d) {
    *buf = NULL;
    *len = 0;
    struct stat st;
    int fd = open_file(path, &st, d);
    if (fd < 0) return false;
    // Regular files are read to their stat size (one probe read confirms
    // the end); pipes and devices report 0 and grow the buffer as they go.
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 65536;
    uint8_t *b = malloc(cap + 1);
    if (!b) {
        itr_diag_error(d, ITR_NOLOC, "%s: out of memory reading %zu bytes", path, cap);
        close(fd);
        return false;
    }
    size_t n = 0;
    for (;;) {
        uint8_t probe;
        uint8_t *dst = n < cap ? b + n : &probe;
        ssize_t k = read(fd, dst, n < cap ? cap - n : 1);
        if (k < 0) {
            if (errno == EINTR) continue;
            itr_diag_error(d, ITR_NOLOC, "%s: read error: %s", path, strerror(errno));
            free(b);
            close(fd);
            return false;
        }
        if (k == 0) break;
        if (dst == &probe) {   // the file grew, or is not a regular file
            if (cap > SIZE_MAX / 4) { free(b); close(fd); itr_diag_error(d, ITR_NOLOC, "%s: file too large", path); return false; }
            uint8_t *nb = realloc(b, cap * 2 + 1);
            if (!nb) { free(b); close(fd); itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path); return false; }
            b = nb;
            cap *= 2;
            b[n] = probe;
        }
        n += (size_t)k;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return true;
}

static const uint8_t empty_map[1];

bool itr_file_map(const char *path, const uint8_t **data, size_t *len, struct itr_diags *d) {
    *data = NULL;
    *len = 0;
    struct stat st;
    int fd = open_file(path, &st, d);
    if (fd < 0) return false;
    if (!S_ISREG(st.st_mode)) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a regular file", path);
        close(fd);
        return false;
    }
    if (st.st_size == 0) {
        close(fd);
        *data = empty_map;
        return true;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot map: %s", path, strerror(err));
        return false;
    }
    *data = p;
    *len = (size_t)st.st_size;
    return true;
}

void itr_file_unmap(const uint8_t *data, size_t len) {
    if (data && data != empty_map && len) munmap((void *)data, len);
}

static bool write_full(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n > (size_t)1 << 30 ? (size_t)1 << 30 : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

bool itr_file_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n,
                           struct itr_diags *d) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) { itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path); return false; }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        return false;
    }
    // mkstemp creates the file 0600; outputs are meant to be shared like any
    // file the user writes.
    (void)fchmod(fd, 0644);
    const char *what = NULL;
    for (int i = 0; i < n && !what; i++)
        if (lens[i] && !write_full(fd, parts[i], lens[i])) what = "write";
    if (!what && fsync(fd) != 0) what = "fsync";
    int err = errno;
    if (close(fd) != 0 && !what) { what = "close"; err = errno; }
    if (!what && rename(tmp, path) != 0) { what = "rename"; err = errno; }
    if (what) {
        itr_diag_error(d, ITR_NOLOC, "%s: %s failed: %s", path, what, strerror(err));
        unlink(tmp);
        free(tmp);
        return false;
    }
    free(tmp);
    // Make the rename itself durable: fsync the directory that holds path.
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *dname = ".";
        if (slash == dir) dname = "/";
        else if (slash) { *slash = 0; dname = dir; }
        int dfd = open(dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
        free(dir);
    }
    return true;
}
