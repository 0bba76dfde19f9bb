// Helpers shared by the tests, on top of test.h: a scratch directory and
// whole-file reads and writes, checks on diagnostics, exact-size prefixes
// for truncation tests, and small tensor and attribute builders.
//
//   int main(void) { if (!tmpdir_create("npy")) return 1; RUN(...); tmpdir_remove(); return test_summary(); }
#ifndef ITR_TESTUTIL_H
#define ITR_TESTUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "ir/bind.h"
#include "ir/ir.h"
#include "ir/text.h"
#include "test.h"

// ------------------------------------------------------------ files and bytes

// The test's scratch directory, set by tmpdir_create.
static char tmpdir[256] __attribute__((unused));

// Makes a fresh directory /tmp/itr_test_<tag>.XXXXXX in tmpdir; false (after perror) if it cannot.
static inline bool tmpdir_create(const char *tag) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/itr_test_%s.XXXXXX", tag);
    if (mkdtemp(tmpdir)) return true;
    perror("mkdtemp");
    return false;
}

// Removes tmpdir and everything in it, saying so on stderr if that fails.
static inline void tmpdir_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

// tmpdir/name, in one of four rotating buffers (so up to four are usable at once).
static inline const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

// The whole file at path in a malloc'd buffer (NUL-terminated), its size in *len; aborts if unreadable.
static inline uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); abort(); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

// Writes the n bytes at data to path, replacing it; aborts if it cannot be created.
static inline void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

// The number of entries in dir, not counting names that start with '.'; -1 if it cannot be opened.
static inline int count_entries(const char *dir) {
    DIR *dd = opendir(dir);
    int n = 0;
    if (!dd) return -1;
    for (struct dirent *e; (e = readdir(dd));)
        if (e->d_name[0] != '.') n++;
    closedir(dd);
    return n;
}

// Calls fn(ctx, file, path) for every model of models/ (file "vsepp.ir",
// path its full path); returns how many there were, -1 if the folder
// cannot be read.
static inline int for_each_model(void (*fn)(void *ctx, const char *file, const char *path), void *ctx) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    if (!dir) return -1;
    int models = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".ir") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        fn(ctx, e->d_name, path);
        models++;
    }
    closedir(dir);
    return models;
}

// The little-endian 64-bit number at p (as in file headers).
static inline uint64_t get_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// Stores v at p as a little-endian 64-bit number.
static inline void put_u64le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Calls fn(ctx, cut, n) for every n < len with a heap copy of exactly n bytes of buf, so ASan sees any over-read.
static inline void for_each_prefix(const uint8_t *buf, size_t len, void (*fn)(void *ctx, const uint8_t *cut, size_t n),
                                   void *ctx) {
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        fn(ctx, cut, n);
        free(cut);
    }
}

// Whether the n bytes at buf contain the string s with its NUL (a symbol
// in an ELF string table, say).
static inline bool tu_has_cstring(const void *buf, size_t n, const char *s) {
    size_t l = strlen(s) + 1;
    for (const char *q = buf, *end = (const char *)buf + n; q + l <= end; q++) {
        q = memchr(q, s[0], (size_t)(end - q));
        if (!q || q + l > end) return false;
        if (memcmp(q, s, l) == 0) return true;
    }
    return false;
}

// ------------------------------------------------------------ diagnostics

// Frees d's diagnostics and starts it afresh, for the next step of a test.
static inline void diags_reset(struct itr_diags *d) {
    itr_diags_free(d);
    itr_diags_init(d);
}

// Prints intro and then d's summary to stderr (for failures while building a test's input).
static inline void diags_report(const char *intro, const struct itr_diags *d) {
    char *s = itr_diags_summary(d);
    fprintf(stderr, "%s%s", intro, s);
    free(s);
}

// CHECK_STR_CONTAINS on the summary of the diagnostics *d (a macro, so a failure names the caller's line).
#define CHECK_DIAGS_CONTAIN(d, needle)                                                  \
    do {                                                                                \
        char *tu_summary_ = itr_diags_summary(d);                                       \
        CHECK_STR_CONTAINS(tu_summary_, needle);                                        \
        free(tu_summary_);                                                              \
    } while (0)

// ------------------------------------------------------------ tensors and attributes

// (count, array) argument pairs from a literal list: SHAPE(2, 3) for a shape, INTS(0, -1) for ints, DIMS(B, c4) for dims.
#define SHAPE(...) (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ }
#define INTS(...) SHAPE(__VA_ARGS__)
#define DIMS(...) (int)(sizeof((itr_dim[]){ __VA_ARGS__ }) / sizeof(itr_dim)), (itr_dim[]){ __VA_ARGS__ }
// A literal list of element values for mk.
#define VALS(...) (double[]){ __VA_ARGS__ }

// A new tensor of dtype dt and the given shape, holding vals (row-major) unless vals is NULL.
static inline struct itr_tensor *mk(enum itr_dtype dt, int rank, const int64_t *shape, const double *vals) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    if (vals)
        for (int64_t i = 0; i < itr_tensor_numel(t); i++) itr_tensor_set(t, i, vals[i]);
    return t;
}

// Whether a and b are both non-NULL with the same dtype, shape and bytes.
static inline bool same_tensor(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    size_t n = itr_tensor_nbytes(a);
    return n == 0 || memcmp(a->data, b->data, n) == 0;
}

// Attribute name of op in a (from itr_attrs_default), its kind set from the op table; aborts on an unknown name.
static inline struct itr_attr *attr_slot(struct itr_attr *a, enum itr_op op, const char *name) {
    int k = itr_op_attr_index(op, name);
    if (k < 0) { fprintf(stderr, "test bug: op %s has no attribute %s\n", itr_op_name(op), name); abort(); }
    a[k].kind = itr_op_info(op)->attrs[k].kind;
    return &a[k];
}

// Small sizes for the models' config parameters and dims (-D overrides):
// the graphs, and so what passes and backends do with them, are the same at
// any size, while the defaults (D=1024, img_dim=2048, ...) would make every
// run of every entry dominate a test's time.
static const char *const TU_SMALL_SIZES[] = { "D=16",        "W=8",       "img_dim=24", "R=5",   "sim_dim=8", "d_img=16",
                                              "img_heads=2", "img_ff=32", "heads=2",    "ff=32", "tok_dim=12" };
#define TU_N_SMALL_SIZES (int)(sizeof TU_SMALL_SIZES / sizeof TU_SMALL_SIZES[0])

// The overrides of TU_SMALL_SIZES that the model at path declares (each
// tried on its own), in ov (TU_N_SMALL_SIZES slots); their number.
static inline int tu_small_overrides(const char *path, const char **ov) {
    int n = 0;
    for (int k = 0; k < TU_N_SMALL_SIZES; k++) {
        struct itr_parse_options po = { .overrides = &TU_SMALL_SIZES[k], .n_overrides = 1 };
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *p = itr_parse_file(path, &po, &d);
        if (p && !itr_diags_has_errors(&d)) ov[n++] = TU_SMALL_SIZES[k];
        if (p) itr_program_free(p);
        itr_diags_free(&d);
    }
    return n;
}

// IR source text compiled as a file called `name`, with models/modules on
// the include path (for `import "nn.ir"`), for target (NULL: the default
// options' target), the rewrites in no_rewrites off; its report into rep
// (may be NULL). NULL with the diagnostics printed.
static inline struct itr_program *tu_compile_text(const char *name, const char *src, const char *target,
                                                 unsigned no_rewrites, struct itr_compile_report *rep) {
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    const char *inc[] = { ITR_SOURCE_DIR "/models/modules" };
    co.include_dirs = inc;
    co.n_include_dirs = 1;
    co.no_rewrites = no_rewrites;
    if (target) co.target = target;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_source(name, src, strlen(src), &co, &p, rep, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

// A copy of src's bindings of p's symbols, to free with itr_bindings_free.
static inline void tu_bindings_copy(struct itr_dim_bindings *dst, const struct itr_program *p,
                                    const struct itr_dim_bindings *src) {
    itr_bindings_init(dst, p);
    memcpy(dst->value, src->value, (size_t)p->n_symbols * sizeof *dst->value);
    memcpy(dst->bound, src->bound, (size_t)p->n_symbols * sizeof *dst->bound);
}

// The model at path compiled at the small sizes for target (NULL: the
// default options' target); NULL with the diagnostics printed.
static inline struct itr_program *tu_compile_small(const char *path, const char *target) {
    const char *ov[TU_N_SMALL_SIZES];
    int n = tu_small_overrides(path, ov);
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    o.defines = ov;
    o.n_defines = n;
    if (target) o.target = target;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_file(path, &o, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

#endif
