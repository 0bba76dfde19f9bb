// Fuzzes the plan reader (ir/plan.c): the protobuf message, the program it
// rebuilds (symbols, dims, params, graphs, training), the verifier, and the
// fused-kernel schedules read back through kir_verify.
//
// A plan file is a 32-byte header (magic, version, length, XXH64 of the body)
// and the protobuf body, and the body records the program's fingerprint. A
// mutated file almost never keeps either right, so the fuzzer would only ever
// reach the checksum test. The input is therefore the body alone, which this
// target wraps in a correct header; when the reader then rejects only the
// fingerprint, it tries again with the fingerprint the reader computed, so
// mutations of the program also reach the schedules. An input that starts
// with the plan magic is a whole file and goes in unchanged (the header
// checks).
//
// On success: the program packs, and the packed plan reads back equal.
#include <xxhash.h>

#include "fuzz.h"
#include "ir/ir.h"
#include "ir/plan.h"
#include "ir/plan.pb-c.h"
#include "ir/text.h"

static const uint8_t magic[8] = { 'I', 'T', 'R', 'P', 'L', 'A', 'N', 0 };
enum { HEADER = 32 };

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// body wrapped as a plan file (caller frees).
static uint8_t *wrap(const uint8_t *body, size_t n, size_t *len) {
    uint8_t *f = malloc(HEADER + n);
    if (!f) abort();
    memcpy(f, magic, 8);
    put_le(f + 8, ITR_PLAN_FORMAT_VERSION, 4);
    put_le(f + 12, 0, 4);
    put_le(f + 16, n, 8);
    put_le(f + 24, XXH64(body, n, 0), 8);
    if (n) memcpy(f + HEADER, body, n);
    *len = HEADER + n;
    return f;
}

static void check_program(struct itr_program *p, struct itr_plan_info *info) {
    struct itr_diags d;
    itr_diags_init(&d);
    uint8_t *buf;
    size_t len;
    FUZZ_CHECK(itr_plan_pack(p, info->target, &buf, &len, &d));
    struct itr_program *q = itr_plan_unpack(buf, len, "repacked plan", NULL, &d);
    if (!q) itr_diags_print(&d, stderr);
    FUZZ_CHECK(q != NULL);
    char why[256];
    if (!itr_program_equal(p, q, why, sizeof why)) {
        fprintf(stderr, "repacked plan differs: %s\n", why);
        FUZZ_CHECK(false);
    }
    // The printer must cope with whatever the reader accepts.
    free(itr_print_program(p));
    itr_program_free(q);
    free(buf);
    itr_diags_free(&d);
}

// Reads the plan; returns true when it failed only on the fingerprint, with
// the fingerprint the program hashes to in fp.
static bool read_plan(const uint8_t *file, size_t len, char fp[17]) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_plan_info info;
    struct itr_program *p = itr_plan_unpack(file, len, "fuzz.plan", &info, &d);
    fuzz_check_outcome(p != NULL, &d);
    bool only_fp = false;
    if (p) {
        check_program(p, &info);
        itr_program_free(p);
    } else if (d.n_errors == 1) {
        // The message ends with "its program hashes to '<16 hex digits>'".
        // Only that ending counts: names the message quotes are the input's
        // and may contain the same words (a fuzzer put them in one).
        const char *msg = d.items[0].msg, *key = "its program hashes to '";
        size_t n = strlen(msg), k = strlen(key);
        if (strstr(msg, "fingerprint mismatch: ") && n >= k + 17 && strncmp(msg + n - k - 17, key, k) == 0 &&
            msg[n - 1] == '\'') {
            const char *hex = msg + n - 17;
            bool ok_hex = true;
            for (int i = 0; i < 16; i++) ok_hex &= (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f');
            if (ok_hex) {
                memcpy(fp, hex, 16);
                fp[16] = 0;
                only_fp = true;
            }
        }
    }
    itr_diags_free(&d);
    return only_fp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 8 && memcmp(data, magic, 8) == 0) {
        char fp[17];
        read_plan(data, size, fp);
        return 0;
    }
    size_t len;
    uint8_t *file = wrap(data, size, &len);
    char fp[17];
    bool retry = read_plan(file, len, fp);
    free(file);
    if (!retry) return 0;
    Itr__Plan__Plan *m = itr__plan__plan__unpack(NULL, size, data);
    FUZZ_CHECK(m != NULL);   // the reader decoded it a moment ago
    char *old = m->fingerprint;
    m->fingerprint = fp;
    size_t n = itr__plan__plan__get_packed_size(m);
    uint8_t *body = malloc(n ? n : 1);
    if (!body) abort();
    FUZZ_CHECK(itr__plan__plan__pack(m, body) == n);
    m->fingerprint = old;
    itr__plan__plan__free_unpacked(m, NULL);
    file = wrap(body, n, &len);
    free(body);
    // The program, and so its hash, is the same as a moment ago.
    FUZZ_CHECK(!read_plan(file, len, fp));
    free(file);
    return 0;
}
