// .npy reading and writing: round trips, files written by numpy
// (tests/fixtures/npy, made by make_npy_fixtures.py), byte-identical output
// to numpy's, and a clear message for every kind of bad file.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/npy.h"
#include "testutil.h"

#define FIX ITR_SOURCE_DIR "/tests/fixtures/npy/"

// Expects parsing buf to fail with needle in the message.
static void expect_parse_fail(const uint8_t *buf, size_t len, const char *needle) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_parse(buf, len, "t.npy", &d);
    CHECK_MSG(t == NULL, "expected failure with \"%s\"", needle);
    itr_tensor_free(t);
    CHECK_DIAGS_CONTAIN(&d, needle);
    CHECK_DIAGS_CONTAIN(&d, "t.npy: ");
    itr_diags_free(&d);
}

static void expect_read_fail(const char *path, const char *needle) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(path, &d);
    CHECK_MSG(t == NULL, "%s: expected failure with \"%s\"", path, needle);
    itr_tensor_free(t);
    struct itr_tensor *m = itr_npy_map(path, &d);
    CHECK_MSG(m == NULL, "%s: map: expected failure with \"%s\"", path, needle);
    itr_npy_unmap(m);
    CHECK(d.n_errors == 2);
    CHECK_DIAGS_CONTAIN(&d, needle);
    itr_diags_free(&d);
}

// A .npy image with the given header dict text: version 1.0, padded with
// spaces and a newline to a multiple of 64 (pad) or just the newline, then
// dlen bytes of data (0, 1, 2, ...).
static uint8_t *make_npy(const char *dict, bool pad, size_t dlen, size_t *len) {
    size_t dl = strlen(dict);
    size_t hlen = dl + 1;
    size_t padn = pad ? 64 - (10 + hlen) % 64 : 0;
    if (padn == 64) padn = 0;
    size_t total = 10 + hlen + padn + dlen;
    uint8_t *b = malloc(total);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)((hlen + padn) & 0xff);
    b[9] = (uint8_t)((hlen + padn) >> 8);
    memcpy(b + 10, dict, dl);
    memset(b + 10 + dl, ' ', padn);
    b[10 + dl + padn] = '\n';
    for (size_t i = 0; i < dlen; i++) b[10 + hlen + padn + i] = (uint8_t)i;
    *len = total;
    return b;
}

// ------------------------------------------------------------ round trips

static void fill(struct itr_tensor *t) {
    int64_t n = itr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, t->dtype == ITR_BOOL ? (double)(i % 3 == 0) : (double)i * 1.5 - 7);
}

TEST(roundtrip_every_dtype_and_shape) {
    static const int64_t shapes[3][3] = { { 0 }, { 0, 3 }, { 2, 3, 4 } };
    static const int ranks[3] = { 0, 2, 3 };
    for (int dt = 0; dt < ITR_DTYPE_COUNT; dt++)
        for (int s = 0; s < 3; s++) {
            struct itr_diags d;
            itr_diags_init(&d);
            struct itr_tensor *t = itr_tensor_new((enum itr_dtype)dt, ranks[s], shapes[s]);
            fill(t);
            const char *path = tmp_path("rt.npy");
            CHECK(itr_npy_write(path, t, &d));
            struct itr_tensor *r = itr_npy_read(path, &d);
            CHECK_MSG(r && same_tensor(t, r), "read back %s rank %d", itr_dtype_name((enum itr_dtype)dt), ranks[s]);
            struct itr_tensor *m = itr_npy_map(path, &d);
            CHECK_MSG(m && same_tensor(t, m), "mapped back %s rank %d", itr_dtype_name((enum itr_dtype)dt), ranks[s]);
            // The data offset is a multiple of 64, as numpy makes it.
            size_t len;
            uint8_t *raw = slurp(path, &len);
            CHECK((len - itr_tensor_nbytes(t)) % 64 == 0);
            free(raw);
            CHECK(!itr_diags_has_errors(&d));
            itr_npy_unmap(m);
            itr_tensor_free(r);
            itr_tensor_free(t);
            itr_diags_free(&d);
        }
}

// ------------------------------------------------------------ numpy's files

TEST(reads_numpy_files) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_read(FIX "f32_2x3.npy", &d);
    CHECK(t && t->dtype == ITR_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    for (int i = 0; t && i < 6; i++) CHECK(((float *)t->data)[i] == (float)(i * 0.5 - 1));
    itr_tensor_free(t);

    t = itr_npy_read(FIX "f64_4.npy", &d);
    CHECK(t && t->dtype == ITR_F64 && t->rank == 1 && t->shape[0] == 4);
    for (int i = 0; t && i < 4; i++) CHECK(((double *)t->data)[i] == i / 3.0);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "i32_3x2.npy", &d);
    CHECK(t && t->dtype == ITR_I32 && t->rank == 2 && t->shape[0] == 3 && t->shape[1] == 2);
    for (int i = 0; t && i < 6; i++) CHECK(((int32_t *)t->data)[i] == i * 7 - 10);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "i64_5.npy", &d);
    CHECK(t && t->dtype == ITR_I64 && t->rank == 1 && t->shape[0] == 5);
    for (int i = 0; t && i < 5; i++) CHECK(((int64_t *)t->data)[i] == i * (INT64_C(1) << 40) - 3);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "bool_2x2.npy", &d);
    CHECK(t && t->dtype == ITR_BOOL && t->rank == 2);
    static const uint8_t eye[4] = { 1, 0, 0, 1 };
    CHECK(t && memcmp(t->data, eye, 4) == 0);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "f64_scalar.npy", &d);
    CHECK(t && t->dtype == ITR_F64 && t->rank == 0 && ((double *)t->data)[0] == 2.5);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "i32_0x3.npy", &d);
    CHECK(t && t->dtype == ITR_I32 && t->rank == 2 && t->shape[0] == 0 && t->shape[1] == 3);
    itr_tensor_free(t);

    t = itr_npy_read(FIX "f32_v2.npy", &d);   // format version 2.0
    CHECK(t && t->dtype == ITR_F32 && t->rank == 1 && t->shape[0] == 3);
    for (int i = 0; t && i < 3; i++) CHECK(((float *)t->data)[i] == i + 1);
    itr_tensor_free(t);

    struct itr_tensor *m = itr_npy_map(FIX "f32_v2.npy", &d);
    CHECK(m && m->dtype == ITR_F32 && ((float *)m->data)[2] == 3.0f);
    itr_npy_unmap(m);
    m = itr_npy_map(FIX "i64_5.npy", &d);
    CHECK(m && ((int64_t *)m->data)[4] == 4 * (INT64_C(1) << 40) - 3);
    itr_npy_unmap(m);

    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
}

TEST(rejects_what_numpy_can_write_but_itrc_cannot_read) {
    expect_read_fail(FIX "f32_fortran.npy",
                     "f32_fortran.npy: Fortran-order arrays are not supported; save with np.ascontiguousarray");
    expect_read_fail(FIX "f32_bigendian.npy", "f32_bigendian.npy: big-endian arrays are not supported (dtype '>f4')");
    expect_read_fail(FIX "u2_3.npy", "u2_3.npy: unsupported dtype '<u2'");
    expect_read_fail(tmp_path("missing.npy"), "missing.npy: cannot open");
}

// itr_npy_write produces exactly numpy's bytes.
TEST(writes_what_numpy_writes) {
    struct {
        const char *file;
        enum itr_dtype dt;
        int rank;
        int64_t shape[2];
    } cases[] = {
        { "f32_2x3.npy", ITR_F32, 2, { 2, 3 } }, { "f64_4.npy", ITR_F64, 1, { 4 } },
        { "i32_3x2.npy", ITR_I32, 2, { 3, 2 } }, { "i64_5.npy", ITR_I64, 1, { 5 } },
        { "bool_2x2.npy", ITR_BOOL, 2, { 2, 2 } }, { "f64_scalar.npy", ITR_F64, 0, { 0 } },
        { "i32_0x3.npy", ITR_I32, 2, { 0, 3 } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct itr_diags d;
        itr_diags_init(&d);
        char path[400];
        snprintf(path, sizeof path, "%s%s", FIX, cases[c].file);
        struct itr_tensor *src = itr_npy_read(path, &d);
        CHECK(src != NULL);
        if (!src) { itr_diags_free(&d); continue; }
        // Rebuild the tensor from scratch so the writer sees only the values.
        struct itr_tensor *t = itr_tensor_new(cases[c].dt, cases[c].rank, cases[c].shape);
        memcpy(t->data, src->data, itr_tensor_nbytes(t));
        CHECK(itr_npy_write(tmp_path("mine.npy"), t, &d));
        size_t la, lb;
        uint8_t *a = slurp(path, &la), *b = slurp(tmp_path("mine.npy"), &lb);
        CHECK_MSG(la == lb && memcmp(a, b, la) == 0, "%s: bytes differ from numpy's", cases[c].file);
        free(a);
        free(b);
        itr_tensor_free(t);
        itr_tensor_free(src);
        itr_diags_free(&d);
    }
}

// ------------------------------------------------------------ damaged files

// f32_2x3.npy cut to n bytes: a 128-byte header, then 24 bytes of data.
static void cut_npy_fails(void *ctx, const uint8_t *cut, size_t n) {
    (void)ctx;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_npy_parse(cut, n, "cut.npy", &d);
    CHECK_MSG(t == NULL, "cut to %zu bytes loaded", n);
    itr_tensor_free(t);
    if (n == 0) CHECK_DIAGS_CONTAIN(&d, "empty file");
    else if (n < 128) CHECK_DIAGS_CONTAIN(&d, "cut.npy: truncated .npy file");
    else {
        char want[80];
        snprintf(want, sizeof want, "header promises 24 bytes of data, file has %zu", n - 128);
        CHECK_DIAGS_CONTAIN(&d, want);
    }
    itr_diags_free(&d);
}

TEST(every_truncation_fails) {
    size_t len;
    uint8_t *full = slurp(FIX "f32_2x3.npy", &len);
    for_each_prefix(full, len, cut_npy_fails, NULL);
    // Also through the file readers.
    write_bytes(tmp_path("short.npy"), full, len - 5);
    expect_read_fail(tmp_path("short.npy"), "short.npy: header promises 24 bytes of data, file has 19");
    write_bytes(tmp_path("empty.npy"), "", 0);
    expect_read_fail(tmp_path("empty.npy"), "empty.npy: empty file");
    free(full);
}

TEST(bad_magic_and_version) {
    size_t len;
    uint8_t *b = slurp(FIX "f32_2x3.npy", &len);
    b[1] = 'M';
    expect_parse_fail(b, len, "not a .npy file (bad magic)");
    b[1] = 'N';
    b[6] = 4;
    expect_parse_fail(b, len, "unsupported .npy format version 4.0");
    b[6] = 1;
    b[7] = 1;
    expect_parse_fail(b, len, "unsupported .npy format version 1.1");
    free(b);
    expect_parse_fail((const uint8_t *)"PK\3\4", 4, "not a .npy file (bad magic)");   // a .npz
}

TEST(header_size_lies) {
    size_t len;
    uint8_t *b = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", true, 24, &len);
    expect_parse_fail(b, len, "header promises 32 bytes of data, file has 24");
    free(b);
    b = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", true, 28, &len);
    expect_parse_fail(b, len, "header promises 24 bytes of data, file has 28");
    free(b);
    // Header length field pointing past the end of the file.
    b = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", true, 24, &len);
    b[9] = 0x40;
    expect_parse_fail(b, len, "truncated .npy file: the header is");
    free(b);
}

TEST(header_dict_variants_accepted) {
    static const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{ 'shape':(2,3,) ,'descr':'<f4','fortran_order':False}",
        "{\"fortran_order\": False, \"shape\": (2, 3), \"descr\": \"<f4\"}",
        "{'descr': '=f4', 'fortran_order': False, 'shape': (2L, 3L), }",
        "{'descr':'<f4','fortran_order':False,'shape':(2,3),}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        for (int pad = 0; pad < 2; pad++) {
            size_t len;
            uint8_t *b = make_npy(ok[i], pad, 24, &len);
            struct itr_diags d;
            itr_diags_init(&d);
            struct itr_tensor *t = itr_npy_parse(b, len, "t.npy", &d);
            CHECK_MSG(t && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->dtype == ITR_F32,
                      "header %s (pad %d) rejected", ok[i], pad);
            // Misaligned data (no padding) is still read correctly.
            if (t) CHECK(memcmp(t->data, b + len - 24, 24) == 0);
            itr_tensor_free(t);
            itr_diags_free(&d);
            free(b);
        }
    // A 1-d array marked Fortran-order has C-order bytes: accepted. So are
    // a scalar, and a 1-element tuple written without the comma.
    static const struct { const char *dict; size_t dlen; int rank; int64_t dim0; } other[] = {
        { "{'descr': '<i4', 'fortran_order': True, 'shape': (3,), }", 12, 1, 3 },
        { "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", 8, 0, 0 },
        { "{'descr': '<i8', 'fortran_order': False, 'shape': (2), }", 16, 1, 2 },
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        size_t len;
        uint8_t *b = make_npy(other[i].dict, true, other[i].dlen, &len);
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_tensor *t = itr_npy_parse(b, len, "t.npy", &d);
        CHECK_MSG(t && t->rank == other[i].rank && (t->rank == 0 || t->shape[0] == other[i].dim0),
                  "header %s: rejected or misread", other[i].dict);
        itr_tensor_free(t);
        itr_diags_free(&d);
        free(b);
    }
}

TEST(bad_header_dicts) {
    static const struct { const char *dict; const char *msg; } bad[] = {
        { "{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'" },
        { "{'fortran_order': False, 'shape': (2, 3)}", "missing key 'descr'" },
        { "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", "'fortran_order' must be True or False" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", "negative dimension -3 in 'shape'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "dimension too large" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
          "shape [4294967296, 4294967296, 4294967296] has too many elements" },
        { "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }", "has too many elements" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "more than 8 dimensions" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "unexpected key 'extra'" },
        { "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "key 'descr' appears twice" },
        { "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", "expected ',' or '}' after the value of 'descr'" },
        { "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3)}", "structured dtypes are not supported" },
        { "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3)}", "unsupported dtype '<c8'" },
        { "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3)}", "unsupported dtype '|u1'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} trailing", "unexpected text after the dict" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", "expected ',' or ')' in 'shape'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", "expected ',' or ')' in 'shape'" },
        { "{'descr': '<f4", "unterminated string" },
        { "{descr: '<f4'}", "expected a quoted string" },
        { "['descr', '<f4']", "expected '{'" },
        { "", "expected '{', the header ends" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "expected '('" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (a, 3)}", "expected a dimension" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", "expected ',' or '}'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        uint8_t *b = make_npy(bad[i].dict, true, 24, &len);
        expect_parse_fail(b, len, bad[i].msg);
        free(b);
    }
}

// A file that maps with misaligned data, or with bools other than 0/1, is
// copied and normalised instead of handed out as is.
TEST(map_falls_back_to_a_copy) {
    size_t len;
    uint8_t *b = make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", false, 24, &len);
    CHECK((len - 24) % 8 != 0);
    write_bytes(tmp_path("odd.npy"), b, len);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *m = itr_npy_map(tmp_path("odd.npy"), &d);
    CHECK(m && ((uintptr_t)m->data % 8) == 0 && memcmp(m->data, b + len - 24, 24) == 0);
    itr_npy_unmap(m);
    free(b);

    b = make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", true, 4, &len);
    b[len - 1] = 7;
    write_bytes(tmp_path("bools.npy"), b, len);
    m = itr_npy_map(tmp_path("bools.npy"), &d);
    static const uint8_t want[4] = { 0, 1, 1, 1 };
    CHECK(m && memcmp(m->data, want, 4) == 0);
    itr_npy_unmap(m);
    struct itr_tensor *t = itr_npy_read(tmp_path("bools.npy"), &d);
    CHECK(t && memcmp(t->data, want, 4) == 0);
    itr_tensor_free(t);
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
    free(b);
}

TEST(write_errors) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor *t = itr_tensor_new(ITR_F32, 1, (int64_t[]){ 2 });
    CHECK(!itr_npy_write("/nonexistent-dir/a.npy", t, &d));
    CHECK_DIAGS_CONTAIN(&d, "/nonexistent-dir/a.npy: cannot create");
    itr_tensor_free(t);
    itr_diags_free(&d);
}

int main(void) {
    if (!tmpdir_create("npy")) return 1;
    RUN(roundtrip_every_dtype_and_shape);
    RUN(reads_numpy_files);
    RUN(rejects_what_numpy_can_write_but_itrc_cannot_read);
    RUN(writes_what_numpy_writes);
    RUN(every_truncation_fails);
    RUN(bad_magic_and_version);
    RUN(header_size_lies);
    RUN(header_dict_variants_accepted);
    RUN(bad_header_dicts);
    RUN(map_falls_back_to_a_copy);
    RUN(write_errors);
    tmpdir_remove();
    return test_summary();
}
