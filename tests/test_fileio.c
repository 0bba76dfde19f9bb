// Whole-file reads, read-only maps and atomic writes (ir/fileio.h).
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/fileio.h"
#include "testutil.h"

TEST(atomic_write_then_read_and_map) {
    struct itr_diags d;
    itr_diags_init(&d);
    const void *parts[3] = { "hello, ", "", "world" };
    size_t lens[3] = { 7, 0, 5 };
    CHECK(itr_file_write_atomic(tmp_path("a.txt"), parts, lens, 3, &d));
    uint8_t *buf;
    size_t len;
    CHECK(itr_file_read_all(tmp_path("a.txt"), &buf, &len, &d));
    CHECK(len == 12 && memcmp(buf, "hello, world", 12) == 0 && buf[12] == 0);
    free(buf);
    const uint8_t *m;
    CHECK(itr_file_map(tmp_path("a.txt"), &m, &len, &d));
    CHECK(len == 12 && memcmp(m, "hello, world", 12) == 0);
    itr_file_unmap(m, len);
    // Overwrite with something shorter: the old contents are gone entirely.
    lens[0] = 2;
    lens[2] = 0;
    CHECK(itr_file_write_atomic(tmp_path("a.txt"), parts, lens, 3, &d));
    CHECK(itr_file_read_all(tmp_path("a.txt"), &buf, &len, &d));
    CHECK(len == 2 && memcmp(buf, "he", 2) == 0);
    free(buf);
    CHECK(count_entries(tmpdir) == 1);   // no temporary files left
    struct stat st;
    CHECK(stat(tmp_path("a.txt"), &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
}

TEST(empty_and_special_files) {
    struct itr_diags d;
    itr_diags_init(&d);
    const void *parts[1] = { "" };
    size_t lens[1] = { 0 };
    CHECK(itr_file_write_atomic(tmp_path("empty"), parts, lens, 1, &d));
    uint8_t *buf;
    size_t len;
    CHECK(itr_file_read_all(tmp_path("empty"), &buf, &len, &d) && len == 0 && buf && buf[0] == 0);
    free(buf);
    const uint8_t *m;
    CHECK(itr_file_map(tmp_path("empty"), &m, &len, &d) && len == 0 && m != NULL);
    itr_file_unmap(m, len);
    // A character device reports size 0 and is read to its end.
    CHECK(itr_file_read_all("/dev/null", &buf, &len, &d) && len == 0);
    free(buf);
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
}

TEST(errors_name_the_file) {
    struct itr_diags d;
    itr_diags_init(&d);
    uint8_t *buf;
    const uint8_t *m;
    size_t len;
    CHECK(!itr_file_read_all(tmp_path("nope"), &buf, &len, &d) && buf == NULL);
    CHECK(!itr_file_map(tmp_path("nope"), &m, &len, &d) && m == NULL);
    CHECK(!itr_file_read_all(tmpdir, &buf, &len, &d));
    CHECK(!itr_file_map("/dev/null", &m, &len, &d));
    const void *parts[1] = { "x" };
    size_t lens[1] = { 1 };
    CHECK(!itr_file_write_atomic("/nonexistent-dir/f", parts, lens, 1, &d));
    CHECK(!itr_file_write_atomic(tmpdir, parts, lens, 1, &d));   // rename over a directory
    CHECK(d.n_errors == 6);
    CHECK_DIAGS_CONTAIN(&d, "/nope: cannot open: No such file or directory");
    CHECK_DIAGS_CONTAIN(&d, ": is a directory, not a file");
    CHECK_DIAGS_CONTAIN(&d, "/dev/null: not a regular file");
    CHECK_DIAGS_CONTAIN(&d, "/nonexistent-dir/f: cannot create a temporary file beside it");
    CHECK_DIAGS_CONTAIN(&d, ": rename failed");
    itr_diags_free(&d);
    // The failed rename cleaned up its temporary file (in tmpdir's parent).
    char parent[300], base[300];
    snprintf(parent, sizeof parent, "%s", tmpdir);
    char *slash = strrchr(parent, '/');
    snprintf(base, sizeof base, "%s.tmp.", slash + 1);
    *slash = 0;
    DIR *dd = opendir(parent);
    bool leftover = false;
    for (struct dirent *e; dd && (e = readdir(dd));)
        if (strncmp(e->d_name, base, strlen(base)) == 0) leftover = true;
    if (dd) closedir(dd);
    CHECK(!leftover);
}

int main(void) {
    if (!tmpdir_create("fileio")) return 1;
    RUN(atomic_write_then_read_and_map);
    RUN(empty_and_special_files);
    RUN(errors_name_the_file);
    tmpdir_remove();
    return test_summary();
}
