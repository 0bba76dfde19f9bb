// safetensors: round trips with metadata, the writer's layout, and a clear
// message for every kind of damaged or inconsistent file.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"
#include "testutil.h"

// A safetensors image: the header length, the JSON text, then dlen data
// bytes 0, 1, 2, ...
static uint8_t *make_st(const char *json, size_t dlen, size_t *len) {
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + dlen + 1);
    put_u64le(b, jl);
    memcpy(b + 8, json, jl);
    for (size_t i = 0; i < dlen; i++) b[8 + jl + i] = (uint8_t)i;
    *len = 8 + jl + dlen;
    return b;
}

static void expect_fail(const uint8_t *buf, size_t len, const char *needle) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set s;
    CHECK_MSG(!itr_safetensors_parse(buf, len, "w.safetensors", &s, &d), "expected failure with \"%s\"", needle);
    CHECK(s.n == 0 && s.n_meta == 0);
    CHECK_DIAGS_CONTAIN(&d, needle);
    CHECK_DIAGS_CONTAIN(&d, "w.safetensors: ");
    itr_tensor_set_free(&s);
    itr_diags_free(&d);
}

static void expect_json_fail(const char *json, size_t dlen, const char *needle) {
    size_t len;
    uint8_t *b = make_st(json, dlen, &len);
    expect_fail(b, len, needle);
    free(b);
}

static struct itr_tensor *tensor(enum itr_dtype dt, int rank, const int64_t *shape) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    int64_t n = itr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, dt == ITR_BOOL ? (double)(i % 2) : (double)i * 0.75 - 2);
    return t;
}

static void build_set(struct itr_tensor_set *s) {
    itr_tensor_set_init(s);
    // Inserted out of name order on purpose.
    itr_tensor_set_put(s, "txt.gru.w_ih", tensor(ITR_F32, 2, (int64_t[]){ 2, 3 }));
    itr_tensor_set_put(s, "adam.step", tensor(ITR_I64, 0, NULL));
    itr_tensor_set_put(s, "img.fc.b", tensor(ITR_F64, 1, (int64_t[]){ 5 }));
    itr_tensor_set_put(s, "empty", tensor(ITR_I32, 2, (int64_t[]){ 0, 4 }));
    itr_tensor_set_put(s, "mask", tensor(ITR_BOOL, 1, (int64_t[]){ 3 }));
    itr_tensor_set_put(s, "rng", tensor(ITR_I32, 1, (int64_t[]){ 4 }));
    itr_tensor_set_meta(s, "format", "itrc");
    itr_tensor_set_meta(s, "best_rsum", "512.25");
}

// ------------------------------------------------------------ tensor sets and round trips

TEST(tensor_set_basics) {
    struct itr_tensor_set s;
    itr_tensor_set_init(&s);
    itr_tensor_set_put(&s, "a", tensor(ITR_F32, 1, (int64_t[]){ 2 }));
    itr_tensor_set_put(&s, "a", tensor(ITR_F32, 1, (int64_t[]){ 3 }));   // replaces (and frees) the first
    CHECK(s.n == 1 && itr_tensor_set_get(&s, "a")->shape[0] == 3);
    CHECK(itr_tensor_set_get(&s, "b") == NULL);
    itr_tensor_set_meta(&s, "k", "1");
    itr_tensor_set_meta(&s, "k", "2");
    CHECK(s.n_meta == 1 && strcmp(itr_tensor_set_get_meta(&s, "k"), "2") == 0);
    CHECK(itr_tensor_set_get_meta(&s, "nope") == NULL);
    itr_tensor_set_free(&s);
    CHECK(s.n == 0 && s.items == NULL);
}

TEST(roundtrip_with_metadata) {
    struct itr_tensor_set s, r;
    build_set(&s);
    struct itr_diags d;
    itr_diags_init(&d);
    const char *path = tmp_path("ck.safetensors");
    CHECK(itr_safetensors_write(path, &s, &d));
    CHECK(itr_safetensors_read(path, &r, &d));
    CHECK(!itr_diags_has_errors(&d));
    CHECK(r.n == s.n && r.n_meta == 2);
    for (int i = 0; i < s.n; i++)
        CHECK_MSG(same_tensor(s.items[i].tensor, itr_tensor_set_get(&r, s.items[i].name)), "tensor %s differs",
                  s.items[i].name);
    CHECK(strcmp(itr_tensor_set_get_meta(&r, "format"), "itrc") == 0);
    CHECK(strcmp(itr_tensor_set_get_meta(&r, "best_rsum"), "512.25") == 0);

    // Layout: header length a multiple of 8, space padding, metadata first,
    // then tensors in name order, each one's bytes following the previous.
    size_t len;
    uint8_t *b = slurp(path, &len);
    uint64_t hl = get_u64le(b);
    CHECK(hl % 8 == 0 && hl + 8 <= len);
    char *hdr = calloc(1, hl + 1);
    memcpy(hdr, b + 8, hl);
    CHECK(hdr[0] == '{');
    const char *order[] = { "\"__metadata__\"", "\"adam.step\"", "\"empty\"", "\"img.fc.b\"", "\"mask\"", "\"rng\"",
                            "\"txt.gru.w_ih\"" };
    const char *prev = hdr;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *at = strstr(hdr, order[i]);
        CHECK_MSG(at && at >= prev, "%s out of order in %s", order[i], hdr);
        if (at) prev = at;
    }
    size_t end = strlen(hdr);
    while (end > 0 && hdr[end - 1] == ' ') end--;
    CHECK(hdr[end - 1] == '}');
    CHECK(strstr(hdr, "\"adam.step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}") != NULL);
    CHECK(len == 8 + hl + 8 + 0 + 40 + 3 + 16 + 24);
    free(hdr);
    free(b);

    // Reading into a set that is then written gives the same file.
    CHECK(itr_safetensors_write(tmp_path("ck2.safetensors"), &r, &d));
    size_t len2;
    uint8_t *b1 = slurp(path, &len), *b2 = slurp(tmp_path("ck2.safetensors"), &len2);
    CHECK(len == len2 && memcmp(b1, b2, len) == 0);
    free(b1);
    free(b2);

    itr_tensor_set_free(&r);
    itr_tensor_set_free(&s);
    itr_diags_free(&d);
}

// Files from other writers: no padding, no metadata, unaligned offsets,
// keys in any order, tensors not in name order.
TEST(reads_foreign_layouts) {
    size_t len;
    uint8_t *b = make_st("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]},"
                         "\"a\":{\"data_offsets\":[3,11],\"shape\":[2],\"dtype\":\"F32\"}}", 11, &len);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set s;
    CHECK(itr_safetensors_parse(b, len, "x", &s, &d));
    struct itr_tensor *a = itr_tensor_set_get(&s, "a"), *m = itr_tensor_set_get(&s, "m");
    CHECK(a && a->dtype == ITR_F32 && a->rank == 1 && a->shape[0] == 2 && ((uintptr_t)a->data % 4) == 0);
    CHECK(a && memcmp(a->data, b + len - 8, 8) == 0);
    static const uint8_t want[3] = { 0, 1, 1 };   // bytes 0, 1, 2 read as bools
    CHECK(m && m->dtype == ITR_BOOL && memcmp(m->data, want, 3) == 0);
    CHECK(s.n_meta == 0);
    itr_tensor_set_free(&s);
    free(b);

    // An empty header and no data.
    b = make_st("{}", 0, &len);
    CHECK(itr_safetensors_parse(b, len, "x", &s, &d) && s.n == 0);
    itr_tensor_set_free(&s);
    free(b);
    // Zero-size tensors may share an offset with anything.
    b = make_st("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &len);
    CHECK(itr_safetensors_parse(b, len, "x", &s, &d) && s.n == 2);
    itr_tensor_set_free(&s);
    free(b);
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
}

// ------------------------------------------------------------ damaged files

// A file from build_set cut to n bytes; ctx points to its header length.
static void cut_file_fails(void *ctx, const uint8_t *cut, size_t n) {
    uint64_t hl = *(const uint64_t *)ctx;
    const char *needle = n == 0 ? "empty file"
                       : n < 8 ? "truncated safetensors file"
                       : n < 8 + hl ? "is larger than the file"
                       : "lie outside the";
    expect_fail(cut, n, needle);
}

TEST(every_truncation_fails) {
    struct itr_tensor_set s;
    build_set(&s);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_safetensors_write(tmp_path("t.safetensors"), &s, &d));
    itr_tensor_set_free(&s);
    itr_diags_free(&d);
    size_t len;
    uint8_t *full = slurp(tmp_path("t.safetensors"), &len);
    uint64_t hl = get_u64le(full);
    for_each_prefix(full, len, cut_file_fails, &hl);
    free(full);
}

TEST(header_length_checks) {
    uint8_t b[16] = { 0 };
    b[0] = 9;   // 9 bytes of header, 8 in the file
    memcpy(b + 8, "{}      ", 8);
    expect_fail(b, 16, "header length 9 is larger than the file (8 bytes after the length field)");
    memset(b, 0, 8);
    b[3] = 0x10;   // 268 MB
    expect_fail(b, 16, "header length 268435456 exceeds the 100 MB limit");
    memset(b, 0xff, 8);   // 2^64 - 1: no overflow in the size arithmetic
    expect_fail(b, 16, "exceeds the 100 MB limit");
}

TEST(bad_entries) {
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,100]}}", 8,
                     "tensor 'a': data_offsets [0, 100] lie outside the 8-byte data section");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "lie outside the");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                     "tensor 'a': F32[2, 3] needs 24 bytes, data_offsets give 20");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
                     "\"b\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 32,
                     "tensors 'a' and 'b' overlap in the data section");
    expect_json_fail("{\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                     "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "overlap");
    expect_json_fail("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                     "tensor 'a': unsupported dtype 'F16' (itrc reads F32, F64, I32, I64 and BOOL)");
    expect_json_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "unsupported dtype 'U8'");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
                     "bad JSON header: duplicate object key");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "bad JSON header");
    expect_json_fail("not json at all", 0, "bad JSON header");
    expect_json_fail("[1, 2]", 0, "bad JSON header: expected an object");
    expect_json_fail("{\"a\":[1]}", 0, "tensor 'a': its header entry is not a JSON object");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "the entry needs \"dtype\"");
    expect_json_fail("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "the entry needs");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                     "shape entry 0 is not a non-negative integer");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
                     "shape entry 0 is not a non-negative integer");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                     "rank 9 exceeds the maximum 8");
    expect_json_fail("{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}",
                     8, "shape has too many elements");
    expect_json_fail("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
                     "shape has too many elements");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
                     "data_offsets must be [begin, end]");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                     "data_offsets must be [begin, end]");
    expect_json_fail("{\"__metadata__\":{\"step\":12}}", 0, "__metadata__ value for 'step' is not a string");
    expect_json_fail("{\"__metadata__\":[\"x\"]}", 0, "__metadata__ must be an object of strings");
}

TEST(file_errors) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set s;
    CHECK(!itr_safetensors_read(tmp_path("missing.safetensors"), &s, &d));
    CHECK_DIAGS_CONTAIN(&d, "missing.safetensors: cannot open");

    // Invalid sets are refused by the writer, which leaves no file behind.
    diags_reset(&d);
    itr_tensor_set_init(&s);
    itr_tensor_set_put(&s, "__metadata__", tensor(ITR_F32, 1, (int64_t[]){ 1 }));
    CHECK(!itr_safetensors_write(tmp_path("bad.safetensors"), &s, &d));
    itr_tensor_set_free(&s);
    itr_tensor_set_init(&s);
    itr_tensor_set_put(&s, "bad\xff", tensor(ITR_F32, 1, (int64_t[]){ 1 }));
    CHECK(!itr_safetensors_write(tmp_path("bad.safetensors"), &s, &d));
    itr_tensor_set_free(&s);
    CHECK_DIAGS_CONTAIN(&d, "'__metadata__' cannot be a tensor name");
    CHECK_DIAGS_CONTAIN(&d, "is not valid UTF-8");
    FILE *f = fopen(tmp_path("bad.safetensors"), "rb");
    CHECK(f == NULL);
    if (f) fclose(f);
    itr_tensor_set_init(&s);
    CHECK(!itr_safetensors_write("/nonexistent-dir/x.safetensors", &s, &d));
    itr_tensor_set_free(&s);
    itr_diags_free(&d);
}

int main(void) {
    if (!tmpdir_create("st")) return 1;
    RUN(tensor_set_basics);
    RUN(roundtrip_with_metadata);
    RUN(reads_foreign_layouts);
    RUN(every_truncation_fails);
    RUN(header_length_checks);
    RUN(bad_entries);
    RUN(file_errors);
    tmpdir_remove();
    return test_summary();
}
