// Replays fuzz inputs without libFuzzer: every file named on the command
// line, and every file in every folder named (sorted, so runs repeat), goes
// through LLVMFuzzerTestOneInput once. The normal builds register this over
// each target's seed corpus (tests/fuzz/CMakeLists.txt); a crash found by a
// fuzzer is reproduced in a gdb-friendly build with `fuzz_<reader> FILE`.
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz.h"

static int n_run;

static void run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        if (k == 0) break;
        len += k;
    }
    if (ferror(f)) { perror(path); exit(1); }
    fclose(f);
    // libFuzzer hands over a buffer of exactly the input's size; a copy of
    // that size lets ASan catch a read one past the end here too.
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) abort();
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    n_run++;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) { perror(argv[a]); return 1; }
        if (!S_ISDIR(st.st_mode)) { run_file(argv[a]); continue; }
        struct dirent **ents;
        int n = scandir(argv[a], &ents, NULL, by_name);
        if (n < 0) { perror(argv[a]); return 1; }
        for (int i = 0; i < n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], ents[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) run_file(path);
            free(ents[i]);
        }
        free(ents);
    }
    // An empty corpus would make the test pass while checking nothing.
    if (n_run == 0) {
        fprintf(stderr, "%s: no inputs found\n", argv[0]);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("%d passed, 0 failed (inputs replayed without a crash or a broken invariant)\n", n_run);
    return 0;
}
