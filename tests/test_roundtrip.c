// parse -> print -> parse gives an equal program, and printing that again
// gives the same text, for every .ir file under models/ and tests/ir/
// (found at run time, so new models are covered without editing this test).
// Files without a model (module libraries) are checked by importing them
// into an empty model. Negative fixtures carry "bad" in their path.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/text.h"
#include "test.h"

static const char *const include_dirs[] = { ITR_SOURCE_DIR "/tests/ir", ITR_SOURCE_DIR "/models" };

struct files {
    char **v;
    int n, cap;
};

static void collect(const char *dir, struct files *out) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        snprintf(path, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            collect(path, out);
            free(path);
            continue;
        }
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".ir") != 0 || strstr(path, "bad")) {
            free(path);
            continue;
        }
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 16;
            out->v = realloc(out->v, (size_t)out->cap * sizeof *out->v);
        }
        out->v[out->n++] = path;
    }
    closedir(d);
}

static struct itr_parse_options opts(void) {
    struct itr_parse_options o;
    memset(&o, 0, sizeof o);
    o.include_dirs = include_dirs;
    o.n_include_dirs = 2;
    return o;
}

static void fail_with_diags(const char *what, const char *path, struct itr_diags *d) {
    char *s = itr_diags_summary(d);
    FAIL_AT("%s %s:\n%s", what, path, s);
    free(s);
}

static int n_models, n_libraries;

static bool only_no_model(const struct itr_diags *d) {
    return d->n_errors == 1 && d->n == 1 && strncmp(d->items[0].msg, "no model in", 11) == 0;
}

static void check_library(const char *path) {
    size_t n = strlen(path) + 64;
    char *src = malloc(n);
    snprintf(src, n, "import \"%s\"\nmodel library_check {\n}\n", path);
    struct itr_parse_options o = opts();
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_string(ITR_SOURCE_DIR "/tests/library_check.ir", src, strlen(src), &o, &d);
    if (!p) fail_with_diags("module library does not load:", path, &d);
    else n_libraries++;
    itr_program_free(p);
    itr_diags_free(&d);
    free(src);
}

static void check_file(const char *path) {
    struct itr_parse_options o = opts();
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p1 = itr_parse_file(path, &o, &d);
    if (!p1) {
        if (only_no_model(&d)) check_library(path);
        else fail_with_diags("cannot parse", path, &d);
        itr_diags_free(&d);
        return;
    }
    itr_diags_free(&d);
    n_models++;
    char *t1 = itr_print_program(p1);
    // The canonical form is self-contained: no imports, no search paths.
    struct itr_parse_options bare;
    memset(&bare, 0, sizeof bare);
    bare.no_default_models_dir = true;
    itr_diags_init(&d);
    struct itr_program *p2 = itr_parse_string("<canonical>", t1, strlen(t1), &bare, &d);
    if (!p2) {
        fail_with_diags("printed text does not parse back for", path, &d);
        fprintf(stderr, "%s", t1);
    } else {
        char why[512];
        CHECK_MSG(itr_program_equal(p1, p2, why, sizeof why), "%s: reparsed program differs: %s", path, why);
        CHECK_MSG(itr_program_equal(p2, p1, why, sizeof why), "%s: equality is not symmetric: %s", path, why);
        char *t2 = itr_print_program(p2);
        if (strcmp(t1, t2) != 0) {
            size_t i = 0;
            while (t1[i] && t1[i] == t2[i]) i++;
            size_t from = i > 80 ? i - 80 : 0;
            FAIL_AT("%s: printing twice differs at byte %zu:\n---\n%.160s\n+++\n%.160s", path, i, t1 + from, t2 + from);
        }
        free(t2);
        struct itr_diags dv;
        itr_diags_init(&dv);
        CHECK_MSG(itr_program_verify(p2, &dv), "%s: reparsed program does not verify", path);
        itr_diags_free(&dv);
    }
    itr_diags_free(&d);
    itr_program_free(p2);
    free(t1);
    itr_program_free(p1);
}

TEST(every_ir_file_round_trips) {
    struct files f = { 0 };
    collect(ITR_SOURCE_DIR "/models", &f);
    collect(ITR_SOURCE_DIR "/tests/ir", &f);
    CHECK(f.n >= 3);
    for (int i = 0; i < f.n; i++) {
        check_file(f.v[i]);
        free(f.v[i]);
    }
    free(f.v);
    printf("round trip: %d models, %d module libraries\n", n_models, n_libraries);
    CHECK(n_models >= 2);
}

// The canonical form of a file is a fixed point of print(parse(.)), also
// when it is itself the input (names like _scan0 and dotted parameter
// names come back as they were).
TEST(canonical_text_is_a_fixed_point) {
    struct itr_parse_options o = opts();
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_file(ITR_SOURCE_DIR "/tests/ir/tour.ir", &o, &d);
    CHECK(p != NULL);
    itr_diags_free(&d);
    if (!p) return;
    char *t = itr_print_program(p);
    for (int round = 0; round < 3; round++) {
        itr_diags_init(&d);
        struct itr_program *q = itr_parse_string("<canonical>", t, strlen(t), &o, &d);
        CHECK(q != NULL);
        itr_diags_free(&d);
        if (!q) break;
        char *u = itr_print_program(q);
        CHECK(strcmp(t, u) == 0);
        CHECK(itr_program_find_graph(q, "_scan0") != NULL);
        CHECK(itr_program_find_graph(q, "step2") != NULL);
        free(t);
        t = u;
        itr_program_free(q);
    }
    free(t);
    itr_program_free(p);
}

int main(void) {
    RUN(every_ir_file_round_trips);
    RUN(canonical_text_is_a_fixed_point);
    return test_summary();
}
