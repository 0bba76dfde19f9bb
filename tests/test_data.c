// Data loading: the vocabulary JSON, the tokenizer, caption encoding, splits
// in both im_div layouts, token features, and every broken-file message.
#include <inttypes.h>
#include <sys/stat.h>

#include "runtime/data.h"
#include "runtime/npy.h"
#include "testutil.h"

// ------------------------------------------------------------ helpers

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

// [rows, R, D] f32 where element (r, k, j) = 1000 r + 10 k + j, so a row is recognisable.
static void write_ims(const char *path, int64_t rows, int64_t R, int64_t D, int per_image_repeat) {
    struct itr_tensor *t = itr_tensor_new(ITR_F32, 3, (int64_t[]){ rows, R, D });
    float *p = t->data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < R; k++)
            for (int64_t j = 0; j < D; j++) p[(r * R + k) * D + j] = (float)(1000 * (r / per_image_repeat) + 10 * k + j);
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_npy_write(path, t, &d)) diags_report("write_ims: ", &d);
    itr_diags_free(&d);
    itr_tensor_free(t);
}

static void write_tensor(const char *path, struct itr_tensor *t) {
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_npy_write(path, t, &d)) diags_report("write_tensor: ", &d);
    itr_diags_free(&d);
    itr_tensor_free(t);
}

static const char *caps10 =
    "A dog runs on the grass.\n"
    "The dog's ball is red.\n"
    "A brown dog plays.\n"
    "Dog and a ball\n"
    "a dog\n"
    "Two cats sleep, don't they?\n"
    "A cat on a mat.\n"
    "The cats are grey.\n"
    "cats\n"
    "A zebra-striped cat naps!\n";

// A vocabulary of the specials and words (built in memory, through a file round trip).
static bool make_vocab(const char *words, struct itr_vocab *v) {
    write_text(tmp_path("vcaps.txt"), words);
    struct itr_diags d;
    itr_diags_init(&d);
    const char *files[] = { tmp_path("vcaps.txt") };
    bool ok = itr_vocab_build(files, 1, 1, v, &d);
    if (!ok) diags_report("make_vocab: ", &d);
    itr_diags_free(&d);
    return ok;
}

// ------------------------------------------------------------ tokenizer

// Tokenises s and compares with the space-separated expectation.
static void check_tokens(const char *s, const char *want) {
    char *tok[64];
    int n = itr_tokenize(s, tok, 64);
    char got[1024] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(got, " ");
        strcat(got, tok[i]);
    }
    itr_tokens_free(tok, n);
    CHECK_MSG(strcmp(got, want) == 0, "tokenize(\"%s\") = \"%s\", expected \"%s\"", s, got, want);
}

TEST(tokenizer) {
    check_tokens("A man riding a horse.", "a man riding a horse .");
    check_tokens("Dogs, cats; birds: fish!", "dogs , cats ; birds : fish !");
    check_tokens("Is it raining?", "is it raining ?");
    check_tokens("(a dog) [two] {x}", "( a dog ) [ two ] { x }");
    check_tokens("He said \"hello\" loudly", "he said `` hello '' loudly");
    check_tokens("I don't know", "i do n't know");
    check_tokens("it's the dog's bone", "it 's the dog 's bone");
    check_tokens("the dogs' toys", "the dogs ' toys");
    check_tokens("we'll they're i've i'm he'd can't", "we 'll they 're i 've i 'm he 'd ca n't");
    check_tokens("I cannot", "i can not");
    check_tokens("A well-known T-shirt", "a well-known t-shirt");
    check_tokens("3.5 inches, 1,000 people at 3:30", "3.5 inches , 1,000 people at 3:30");
    check_tokens("Wait... what", "wait ... what");
    check_tokens("A CAFÉ in Zürich.", "a cafÉ in zürich .");
    check_tokens("Mr. Smith walks. A dog barks.", "mr. smith walks . a dog barks .");
    check_tokens("In the U.S.", "in the u.s .");
    check_tokens("  spaces\tand\r\n newlines  ", "spaces and newlines");
    check_tokens("", "");
    check_tokens("...", "...");
    check_tokens("50% off & more #1 @home $5", "50 % off & more # 1 @ home $ 5");
    // max caps the number returned
    char *tok[2];
    CHECK(itr_tokenize("a b c d", tok, 2) == 2);
    CHECK(strcmp(tok[0], "a") == 0 && strcmp(tok[1], "b") == 0);
    itr_tokens_free(tok, 2);
}

// ------------------------------------------------------------ vocabulary

TEST(vocab_build_and_lookup) {
    struct itr_vocab v;
    write_text(tmp_path("b1.txt"), "b a b\nc b a\r\n");
    write_text(tmp_path("b2.txt"), "d a\n");
    const char *files[] = { tmp_path("b1.txt"), tmp_path("b2.txt") };
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_vocab_build(files, 2, 2, &v, &d));
    // counts: b 3, a 3, c 1, d 1; ties in first-seen order
    CHECK(v.n == 6);
    if (v.n == 6) {
        CHECK(strcmp(v.words[0], "<pad>") == 0 && strcmp(v.words[3], "<unk>") == 0);
        CHECK(strcmp(v.words[4], "b") == 0 && strcmp(v.words[5], "a") == 0);
    }
    CHECK(itr_vocab_lookup(&v, "a") == 5);
    CHECK(itr_vocab_lookup(&v, "c") == ITR_VOCAB_UNK);
    CHECK(itr_vocab_lookup(&v, "<end>") == ITR_VOCAB_END);
    itr_vocab_free(&v);
    // a missing caption file is named
    const char *missing[] = { tmp_path("nope.txt") };
    CHECK(!itr_vocab_build(missing, 1, 1, &v, &d));
    CHECK_DIAGS_CONTAIN(&d, "nope.txt");
    itr_diags_free(&d);
}

TEST(vocab_round_trip) {
    struct itr_vocab v, w;
    if (!make_vocab("zebra apple zebra \xc3\xa9t\xc3\xa9 q\"uote\n", &v)) { CHECK(0); return; }
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_vocab_write(tmp_path("v.json"), &v, &d));
    CHECK(itr_vocab_read(tmp_path("v.json"), &w, &d));
    CHECK(!itr_diags_has_errors(&d));
    CHECK(w.n == v.n);
    for (int i = 0; i < v.n && i < w.n; i++) CHECK(strcmp(v.words[i], w.words[i]) == 0);
    CHECK(itr_vocab_hash(&v) == itr_vocab_hash(&w));
    CHECK(itr_vocab_lookup(&w, "zebra") == 4);
    // written twice, same bytes
    CHECK(itr_vocab_write(tmp_path("v2.json"), &w, &d));
    size_t la, lb;
    uint8_t *a = slurp(tmp_path("v.json"), &la), *b = slurp(tmp_path("v2.json"), &lb);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    CHECK_STR_CONTAINS((char *)a, "\"word2idx\"");
    CHECK_STR_CONTAINS((char *)a, "\"idx\":");
    free(a);
    free(b);
    // the hash depends on order and on word boundaries
    char *tmp = w.words[4];
    w.words[4] = w.words[5];
    w.words[5] = tmp;
    CHECK(itr_vocab_hash(&v) != itr_vocab_hash(&w));
    itr_vocab_free(&v);
    itr_vocab_free(&w);
    itr_diags_free(&d);
}

TEST(vocab_read_scan_layout) {
    // As SCAN's serialize_vocab writes it: idx2word keys are decimal strings, in any order.
    write_text(tmp_path("scan.json"),
               "{\"word2idx\": {\"<pad>\": 0, \"<start>\": 1, \"<end>\": 2, \"<unk>\": 3, \"dog\": 4},"
               " \"idx2word\": {\"4\": \"dog\", \"0\": \"<pad>\", \"1\": \"<start>\", \"2\": \"<end>\", \"3\": \"<unk>\"},"
               " \"idx\": 5}");
    struct itr_vocab v;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_vocab_read(tmp_path("scan.json"), &v, &d));
    CHECK(v.n == 5 && itr_vocab_lookup(&v, "dog") == 4);
    itr_vocab_free(&v);
    itr_diags_free(&d);
}

// Reads text as a vocabulary; expects failure with each needle in the messages.
static void vocab_rejects(const char *text, const char *needle1, const char *needle2) {
    write_text(tmp_path("bad.json"), text);
    struct itr_vocab v;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!itr_vocab_read(tmp_path("bad.json"), &v, &d));
    CHECK_DIAGS_CONTAIN(&d, "bad.json");
    CHECK_DIAGS_CONTAIN(&d, needle1);
    if (needle2) CHECK_DIAGS_CONTAIN(&d, needle2);
    CHECK(v.words == NULL && v.n == 0);
    itr_diags_free(&d);
}

#define SPECIALS_W "\"<pad>\": 0, \"<start>\": 1, \"<end>\": 2, \"<unk>\": 3"
#define SPECIALS_I "\"0\": \"<pad>\", \"1\": \"<start>\", \"2\": \"<end>\", \"3\": \"<unk>\""

TEST(vocab_rejects_bad_files) {
    vocab_rejects("{\"word2idx\": {", "not valid JSON", NULL);
    vocab_rejects("[1, 2]", "expected a JSON object", NULL);
    vocab_rejects("{\"idx2word\": {}, \"idx\": 4}", "key 'word2idx' is missing", NULL);
    vocab_rejects("{\"word2idx\": {}, \"idx2word\": [], \"idx\": \"4\"}", "key 'idx2word' is not an object",
                  "key 'idx' is not an integer");
    // wrong specials
    vocab_rejects("{\"word2idx\": {\"<start>\": 0, \"<pad>\": 1, \"<end>\": 2, \"<unk>\": 3},"
                  " \"idx2word\": {\"0\": \"<start>\", \"1\": \"<pad>\", \"2\": \"<end>\", \"3\": \"<unk>\"}, \"idx\": 4}",
                  "index 0 is \"<start>\"; expected the special \"<pad>\"", "index 1 is \"<pad>\"");
    // the maps disagree
    vocab_rejects("{\"word2idx\": {" SPECIALS_W ", \"dog\": 5, \"cat\": 4},"
                  " \"idx2word\": {" SPECIALS_I ", \"4\": \"dog\", \"5\": \"cat\"}, \"idx\": 6}",
                  "maps disagree: 'word2idx' has \"dog\" -> 5 but 'idx2word' has 4 -> \"dog\"", "\"cat\" -> 4");
    vocab_rejects("{\"word2idx\": {" SPECIALS_W ", \"dog\": 4},"
                  " \"idx2word\": {" SPECIALS_I ", \"4\": \"cat\"}, \"idx\": 5}",
                  "'word2idx' has \"dog\" (-> 4) but 'idx2word' does not", NULL);
    vocab_rejects("{\"word2idx\": {" SPECIALS_W "}, \"idx2word\": {" SPECIALS_I "}, \"idx\": 7}",
                  "'idx2word' has 4 entries but 'idx' says 7", NULL);
    vocab_rejects("{\"word2idx\": {" SPECIALS_W ", \"a\": 4},"
                  " \"idx2word\": {" SPECIALS_I ", \"04\": \"a\"}, \"idx\": 5}",
                  "'idx2word' has key \"04\"", NULL);
    vocab_rejects("{\"word2idx\": {" SPECIALS_W ", \"a\": 4},"
                  " \"idx2word\": {" SPECIALS_I ", \"4\": \"<pad>\"}, \"idx\": 5}",
                  "\"<pad>\" appears at indices 0 and 4", NULL);
    struct itr_vocab v;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!itr_vocab_read(tmp_path("absent.json"), &v, &d));
    CHECK_DIAGS_CONTAIN(&d, "absent.json");
    itr_diags_free(&d);
}

static void read_prefix(void *ctx, const uint8_t *cut, size_t n) {
    int *n_ok = ctx;
    write_bytes(tmp_path("cut.json"), cut, n);
    struct itr_vocab v;
    struct itr_diags d;
    itr_diags_init(&d);
    if (itr_vocab_read(tmp_path("cut.json"), &v, &d)) {
        (*n_ok)++;
        itr_vocab_free(&v);
    } else {
        CHECK(itr_diags_has_errors(&d));
    }
    itr_diags_free(&d);
}

// Every truncation of a valid file is an error, never a crash (ASan build).
TEST(vocab_truncated) {
    struct itr_vocab v;
    if (!make_vocab("dog cat\n", &v)) { CHECK(0); return; }
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_vocab_write(tmp_path("full.json"), &v, &d));
    itr_diags_free(&d);
    itr_vocab_free(&v);
    size_t len;
    uint8_t *buf = slurp(tmp_path("full.json"), &len);
    int n_ok = 0;
    for_each_prefix(buf, len, read_prefix, &n_ok);
    CHECK(n_ok == 1);   // only the one without the final newline
    free(buf);
}

// ------------------------------------------------------------ encoding

TEST(encode_caption) {
    struct itr_vocab v;
    if (!make_vocab("a dog runs .\n", &v)) { CHECK(0); return; }
    int32_t ids[16];
    int unk = -1;
    int n = itr_encode_caption(&v, "A dog flies.", ids, 16, &unk);
    CHECK(n == 6);
    CHECK(unk == 1);
    int32_t want[] = { ITR_VOCAB_START, itr_vocab_lookup(&v, "a"), itr_vocab_lookup(&v, "dog"), ITR_VOCAB_UNK,
                       itr_vocab_lookup(&v, "."), ITR_VOCAB_END };
    for (int i = 0; i < 6 && n == 6; i++) CHECK(ids[i] == want[i]);
    // exactly enough room, then one slot short
    CHECK(itr_encode_caption(&v, "a dog", ids, 4, &unk) == 4 && unk == 0);
    CHECK(itr_encode_caption(&v, "a dog runs", ids, 4, &unk) == -1);
    CHECK(itr_encode_caption(&v, "", ids, 2, &unk) == 2 && ids[0] == ITR_VOCAB_START && ids[1] == ITR_VOCAB_END);
    itr_vocab_free(&v);
}

// ------------------------------------------------------------ splits

static bool open_split(const char *dir, const char *name, const struct itr_vocab *v, struct itr_split *s) {
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_split_open(dir, name, v, s, &d);
    if (!ok) diags_report("open_split: ", &d);
    itr_diags_free(&d);
    return ok;
}

TEST(split_both_im_div_layouts) {
    struct itr_vocab v;
    if (!make_vocab(caps10, &v)) { CHECK(0); return; }
    mkdir(tmp_path("two"), 0777);
    // per image: 2 rows; per caption: 10 rows (each image's row repeated 5 times), CRLF captions
    write_ims(tmp_path("two/img_ims.npy"), 2, 3, 4, 1);
    write_ims(tmp_path("two/cap_ims.npy"), 10, 3, 4, 5);
    write_text(tmp_path("two/img_caps.txt"), caps10);
    char crlf[1024];
    size_t k = 0;
    for (const char *p = caps10; *p; p++) {
        if (*p == '\n') crlf[k++] = '\r';
        crlf[k++] = *p;
    }
    crlf[k] = 0;
    write_text(tmp_path("two/cap_caps.txt"), crlf);
    struct itr_split a, b;
    if (!open_split(tmp_path("two"), "img", &v, &a)) { CHECK(0); itr_vocab_free(&v); return; }
    if (!open_split(tmp_path("two"), "cap", &v, &b)) { CHECK(0); itr_split_close(&a); itr_vocab_free(&v); return; }
    CHECK(a.im_div == 5 && b.im_div == 1);
    CHECK(a.n_images == 2 && b.n_images == 2 && a.n_captions == 10 && b.n_captions == 10);
    CHECK(a.n_regions == 3 && a.feat_dim == 4);
    CHECK(strcmp(a.captions[3], "Dog and a ball") == 0 && strcmp(b.captions[3], "Dog and a ball") == 0);
    CHECK(a.max_len == b.max_len && a.n_unknown_words == 0);
    // caption c belongs to image c / 5 in both layouts
    for (int64_t c = 0; c < 10; c++) {
        int64_t img = c / ITR_CAPTIONS_PER_IMAGE;
        struct itr_tensor *ra = itr_split_regions(&a, &img, 1), *rb = itr_split_regions(&b, &img, 1);
        CHECK(same_tensor(ra, rb));
        if (ra) CHECK(((float *)ra->data)[5] == (float)(1000 * img + 10 + 1));
        itr_tensor_free(ra);
        itr_tensor_free(rb);
    }
    int64_t bad = 2;
    CHECK(itr_split_regions(&a, &bad, 1) == NULL && itr_split_regions(&b, &bad, 1) == NULL);
    // words: padded to the batch's longest caption
    int64_t ids[] = { 4, 0, 8 };
    struct itr_tensor *w, *l;
    CHECK(itr_split_words(&a, ids, 3, 0, &w, &l));
    if (w && l) {
        int32_t *lv = l->data, *wv = w->data;
        CHECK(lv[0] == 4 && lv[1] == 9 && lv[2] == 3);   // "a dog"; "a dog runs on the grass ."; "cats"
        CHECK(w->shape[0] == 3 && w->shape[1] == 9);
        CHECK(wv[0] == ITR_VOCAB_START && wv[3] == ITR_VOCAB_END && wv[4] == ITR_VOCAB_PAD && wv[8] == ITR_VOCAB_PAD);
        CHECK(wv[1] == itr_vocab_lookup(&v, "a") && wv[2] == itr_vocab_lookup(&v, "dog"));
        CHECK(wv[2 * 9 + 1] == itr_vocab_lookup(&v, "cats"));
    }
    itr_tensor_free(w);
    itr_tensor_free(l);
    // a fixed width (a model's fixed caption length): exactly that, <pad> beyond
    CHECK(itr_split_words(&a, ids, 3, 12, &w, &l));
    if (w && l) {
        int32_t *wv = w->data;
        CHECK(w->shape[0] == 3 && w->shape[1] == 12);
        CHECK(wv[12 + 8] == ITR_VOCAB_END && wv[12 + 9] == ITR_VOCAB_PAD && wv[12 + 11] == ITR_VOCAB_PAD);
        CHECK(wv[2 * 12 + 2] == ITR_VOCAB_END && wv[2 * 12 + 3] == ITR_VOCAB_PAD);
        CHECK(((int32_t *)l->data)[1] == 9);
    }
    itr_tensor_free(w);
    itr_tensor_free(l);
    // exactly the longest fits; one less does not (no silent truncation)
    CHECK(itr_split_words(&a, ids, 3, 9, &w, &l) && w->shape[1] == 9);
    itr_tensor_free(w);
    itr_tensor_free(l);
    CHECK(!itr_split_words(&a, ids, 3, 8, &w, &l) && w == NULL && l == NULL);
    struct itr_tensor *f;
    CHECK(!itr_split_token_feats(&a, ids, 3, 0, &f, &l));   // this split has none
    int64_t mapped, resident;
    itr_split_memory(&a, &mapped, &resident);
    CHECK(mapped == 2 * 3 * 4 * 4);
    CHECK(resident > 0 && resident < 4096);
    itr_split_close(&a);
    itr_split_close(&b);
    itr_vocab_free(&v);
}

TEST(split_unknown_words_and_no_vocab) {
    struct itr_vocab v;
    if (!make_vocab("a dog\n", &v)) { CHECK(0); return; }
    mkdir(tmp_path("unk"), 0777);
    write_ims(tmp_path("unk/x_ims.npy"), 1, 2, 2, 1);
    write_text(tmp_path("unk/x_caps.txt"), "a dog\na cat\na cat and a cow\na\ndog\n\n");   // trailing empty line
    struct itr_split s;
    if (open_split(tmp_path("unk"), "x", &v, &s)) {
        CHECK(s.n_captions == 5 && s.n_unknown_words == 4 && s.max_len == 7);
        itr_split_close(&s);
    } else {
        CHECK(0);
    }
    if (open_split(tmp_path("unk"), "x", NULL, &s)) {
        CHECK(s.tokens == NULL && s.n_captions == 5);
        int64_t id = 0;
        struct itr_tensor *w, *l;
        CHECK(!itr_split_words(&s, &id, 1, 0, &w, &l));
        itr_split_close(&s);
    } else {
        CHECK(0);
    }
    itr_vocab_free(&v);
}

TEST(split_token_features) {
    mkdir(tmp_path("tf"), 0777);
    write_ims(tmp_path("tf/t_ims.npy"), 1, 2, 2, 1);
    write_text(tmp_path("tf/t_caps.txt"), "a\nb\nc\nd\ne\n");
    struct itr_tensor *f = itr_tensor_new(ITR_F32, 3, (int64_t[]){ 5, 4, 3 });
    for (int64_t i = 0; i < 60; i++) ((float *)f->data)[i] = (float)i;
    write_tensor(tmp_path("tf/t_caps_feats.npy"), f);
    struct itr_tensor *lens = itr_tensor_new(ITR_I32, 1, (int64_t[]){ 5 });
    int32_t lv[] = { 4, 2, 1, 3, 2 };
    memcpy(lens->data, lv, sizeof lv);
    write_tensor(tmp_path("tf/t_caps_lens.npy"), lens);
    struct itr_split s;
    if (!open_split(tmp_path("tf"), "t", NULL, &s)) { CHECK(0); return; }
    int64_t ids[] = { 1, 3 };
    struct itr_tensor *tf, *tl;
    CHECK(itr_split_token_feats(&s, ids, 2, 0, &tf, &tl));
    if (tf && tl) {
        CHECK(tf->shape[0] == 2 && tf->shape[1] == 3 && tf->shape[2] == 3);
        const float *p = tf->data;
        CHECK(p[0] == 12.0f && p[5] == 17.0f && p[6] == 0.0f);   // caption 1: 2 tokens, then zero padding
        CHECK(p[9] == 36.0f && p[17] == 44.0f);                  // caption 3: 3 tokens
        CHECK(((int32_t *)tl->data)[0] == 2 && ((int32_t *)tl->data)[1] == 3);
    }
    itr_tensor_free(tf);
    itr_tensor_free(tl);
    // a fixed width past the file's L pads with zeros; below a length fails
    CHECK(itr_split_token_feats(&s, ids, 2, 6, &tf, &tl));
    if (tf && tl) {
        CHECK(tf->shape[0] == 2 && tf->shape[1] == 6 && tf->shape[2] == 3);
        const float *p = tf->data;
        CHECK(p[0] == 12.0f && p[5] == 17.0f && p[6] == 0.0f && p[17] == 0.0f);
        CHECK(p[18] == 36.0f && p[26] == 44.0f && p[27] == 0.0f && p[35] == 0.0f);
    }
    itr_tensor_free(tf);
    itr_tensor_free(tl);
    CHECK(!itr_split_token_feats(&s, ids, 2, 2, &tf, &tl) && tf == NULL && tl == NULL);
    int64_t mapped, resident;
    itr_split_memory(&s, &mapped, &resident);
    CHECK(mapped == 1 * 2 * 2 * 4 + 5 * 4 * 3 * 4 + 5 * 4);
    itr_split_close(&s);
}

// Opening split name in dir fails with every needle in the messages.
static void split_rejects(const char *dir, const char *name, const char *n1, const char *n2, const char *n3) {
    struct itr_split s;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!itr_split_open(dir, name, NULL, &s, &d));
    CHECK_DIAGS_CONTAIN(&d, n1);
    if (n2) CHECK_DIAGS_CONTAIN(&d, n2);
    if (n3) CHECK_DIAGS_CONTAIN(&d, n3);
    CHECK(s.ims == NULL && s.captions == NULL);
    itr_diags_free(&d);
}

TEST(split_rejects_broken_files) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("bad"));
    mkdir(dir, 0777);
    // 7 captions
    write_ims(tmp_path("bad/c7_ims.npy"), 1, 2, 2, 1);
    write_text(tmp_path("bad/c7_caps.txt"), "a\nb\nc\nd\ne\nf\ng\n");
    split_rejects(dir, "c7", "c7_caps.txt: 7 captions, not a multiple of 5", NULL, NULL);
    // 3 rows for 10 captions
    write_ims(tmp_path("bad/r3_ims.npy"), 3, 2, 2, 1);
    write_text(tmp_path("bad/r3_caps.txt"), caps10);
    split_rejects(dir, "r3", "r3_ims.npy: 3 rows, but", "r3_caps.txt has 10 captions; expected 2 rows (one per image) or 10",
                  NULL);
    // rank 2
    write_tensor(tmp_path("bad/rk_ims.npy"), itr_tensor_new(ITR_F32, 2, (int64_t[]){ 2, 8 }));
    write_text(tmp_path("bad/rk_caps.txt"), caps10);
    split_rejects(dir, "rk", "rk_ims.npy: is f32[2, 8]; expected f32 [N, R, D]", NULL, NULL);
    // f64 features
    write_tensor(tmp_path("bad/f64_ims.npy"), itr_tensor_new(ITR_F64, 3, (int64_t[]){ 2, 2, 2 }));
    write_text(tmp_path("bad/f64_caps.txt"), caps10);
    split_rejects(dir, "f64", "f64_ims.npy: is f64[2, 2, 2]; expected f32", NULL, NULL);
    // missing caps, and the bad features beside it are reported too
    write_tensor(tmp_path("bad/nc_ims.npy"), itr_tensor_new(ITR_I32, 3, (int64_t[]){ 2, 2, 2 }));
    split_rejects(dir, "nc", "nc_caps.txt: missing", "nc_ims.npy: is i32", NULL);
    // nothing there at all
    split_rejects(dir, "none", "none_ims.npy: missing", "none_caps.txt: missing", NULL);
    // not .npy
    write_text(tmp_path("bad/garb_ims.npy"), "hello");
    write_text(tmp_path("bad/garb_caps.txt"), caps10);
    split_rejects(dir, "garb", "garb_ims.npy", NULL, NULL);
    // invalid UTF-8 in captions
    write_ims(tmp_path("bad/u8_ims.npy"), 1, 2, 2, 1);
    write_text(tmp_path("bad/u8_caps.txt"), "a\nb\nc\xff\nd\ne\n");
    split_rejects(dir, "u8", "u8_caps.txt:3: not valid UTF-8", NULL, NULL);
    // empty caption file
    write_text(tmp_path("bad/e_caps.txt"), "\n");
    write_ims(tmp_path("bad/e_ims.npy"), 1, 2, 2, 1);
    split_rejects(dir, "e", "e_caps.txt: no captions", NULL, NULL);
    // token features: one file without the other, f64, bad lengths
    write_ims(tmp_path("bad/t1_ims.npy"), 1, 2, 2, 1);
    write_text(tmp_path("bad/t1_caps.txt"), "a\nb\nc\nd\ne\n");
    write_tensor(tmp_path("bad/t1_caps_feats.npy"), itr_tensor_new(ITR_F32, 3, (int64_t[]){ 5, 2, 2 }));
    split_rejects(dir, "t1", "t1_caps_feats.npy: found without", "t1_caps_lens.npy", NULL);
    write_tensor(tmp_path("bad/t1_caps_feats.npy"), itr_tensor_new(ITR_F64, 3, (int64_t[]){ 5, 2, 2 }));
    write_tensor(tmp_path("bad/t1_caps_lens.npy"), itr_tensor_new(ITR_I32, 1, (int64_t[]){ 5 }));
    split_rejects(dir, "t1", "t1_caps_feats.npy: is f64[5, 2, 2]; expected f32",
                  "t1_caps_lens.npy: caption 0 of split 't1' has length 0; expected 1 to 2 (the L of ", NULL);
    write_tensor(tmp_path("bad/t1_caps_feats.npy"), itr_tensor_new(ITR_F32, 3, (int64_t[]){ 4, 2, 2 }));
    split_rejects(dir, "t1", "t1_caps_feats.npy: has 4 rows but t1 has 5 captions", NULL, NULL);
    // a length past the features' L (a batch would read the next caption's
    // features, or past the mapping): the file, caption, split, length and L;
    // a note counts every bad entry
    write_tensor(tmp_path("bad/t1_caps_feats.npy"), itr_tensor_new(ITR_F32, 3, (int64_t[]){ 5, 4, 2 }));
    struct itr_tensor *lens = itr_tensor_new(ITR_I32, 1, (int64_t[]){ 5 });
    int32_t lv[] = { 4, 1, 5, 3, 9 };
    memcpy(lens->data, lv, sizeof lv);
    write_tensor(tmp_path("bad/t1_caps_lens.npy"), lens);
    split_rejects(dir, "t1", "t1_caps_lens.npy: caption 2 of split 't1' has length 5; expected 1 to 4 (the L of ",
                  "t1_caps_feats.npy)", "t1_caps_lens.npy: 2 lengths in all are outside 1 to 4");
    lens = itr_tensor_new(ITR_I32, 1, (int64_t[]){ 5 });
    int32_t neg[] = { 4, 1, 2, -3, 1 };
    memcpy(lens->data, neg, sizeof neg);
    write_tensor(tmp_path("bad/t1_caps_lens.npy"), lens);
    split_rejects(dir, "t1", "t1_caps_lens.npy: caption 3 of split 't1' has length -3; expected 1 to 4", NULL, NULL);
}

// ------------------------------------------------------------ verify

static void make_good_split(const char *dir, const char *name, int64_t R, int64_t D) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s_ims.npy", dir, name);
    write_ims(p, 2, R, D, 1);
    snprintf(p, sizeof p, "%s/%s_caps.txt", dir, name);
    write_text(p, caps10);
}

TEST(verify) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("ds"));
    mkdir(dir, 0777);
    make_good_split(dir, "train", 3, 4);
    make_good_split(dir, "dev", 3, 4);
    make_good_split(dir, "test", 3, 4);
    struct itr_vocab v;
    if (!make_vocab(caps10, &v)) { CHECK(0); return; }
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_vocab_write(tmp_path("ds/vocab.json"), &v, &d));
    itr_vocab_free(&v);
    struct itr_split_summary sum[ITR_DATA_N_SPLITS];
    CHECK(itr_data_verify_summary(dir, NULL, sum, &d));
    CHECK(!itr_diags_has_errors(&d));
    CHECK(sum[0].present && sum[1].present && sum[2].present && !sum[3].present);
    CHECK(sum[2].n_images == 2 && sum[2].n_captions == 10 && sum[2].im_div == 5 && sum[2].feat_dim == 4);
    CHECK(sum[0].max_len == 10 && sum[0].n_unknown == 0);
    // several problems at once: a bad vocabulary, dev's caption count, test's features, testall half present
    write_text(tmp_path("ds/vocab.json"), "{\"word2idx\": 3}");
    write_text(tmp_path("ds/dev_caps.txt"), "a\nb\nc\n");
    make_good_split(dir, "test", 3, 5);
    write_ims(tmp_path("ds/testall_ims.npy"), 2, 3, 4, 1);
    diags_reset(&d);
    CHECK(!itr_data_verify(dir, NULL, &d));
    CHECK_DIAGS_CONTAIN(&d, "vocab.json: key 'word2idx' is not an object");
    CHECK_DIAGS_CONTAIN(&d, "dev_caps.txt: 3 captions, not a multiple of 5");
    CHECK_DIAGS_CONTAIN(&d, "test_ims.npy: 3 regions x 5 features, but train has 3 x 4");
    CHECK_DIAGS_CONTAIN(&d, "testall_caps.txt: missing");
    CHECK(d.n_errors >= 5);
    // a missing split and a missing vocabulary
    remove(tmp_path("ds/train_ims.npy"));
    diags_reset(&d);
    CHECK(!itr_data_verify(dir, tmp_path("ds/other.json"), &d));
    CHECK_DIAGS_CONTAIN(&d, "train_ims.npy: missing; split 'train' needs");
    CHECK_DIAGS_CONTAIN(&d, "other.json: missing");
    itr_diags_free(&d);
}

int main(void) {
    if (!tmpdir_create("data")) return 1;
    RUN(tokenizer);
    RUN(vocab_build_and_lookup);
    RUN(vocab_round_trip);
    RUN(vocab_read_scan_layout);
    RUN(vocab_rejects_bad_files);
    RUN(vocab_truncated);
    RUN(encode_caption);
    RUN(split_both_im_div_layouts);
    RUN(split_unknown_words_and_no_vocab);
    RUN(split_token_features);
    RUN(split_rejects_broken_files);
    RUN(verify);
    tmpdir_remove();
    return test_summary();
}
