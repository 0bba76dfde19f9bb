// The caption tokenizer (docs/data.md "Tokenisation"). It reproduces what
// nltk's word_tokenize (punkt sentence splitting + the Treebank word
// tokenizer) does to lower-cased English captions, because the published
// vocabularies were built that way: a caption split differently maps words
// to <unk> silently and costs recall with no error.
//
// Why ir/: the runtime encodes captions with it, and itrc compile --data
// needs the same token counts to size a model that fixes its caption length
// (ir/dataset.h); compiler/ may not include runtime/, so what both use lives
// here. Encoding with a vocabulary (itr_encode_caption) stays in runtime/.
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ir/tokenize.h"

static void out_push(struct itr_tokbuf *b, char c) {
    if (b->len + 2 > b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 256;
        char *nt = realloc(b->text, nc);
        if (!nt) abort();
        b->text = nt;
        b->cap = nc;
    }
    b->text[b->len++] = c;
    b->text[b->len] = 0;
}

static void out_str(struct itr_tokbuf *b, const char *s) {
    while (*s) out_push(b, *s++);
}

static void tok_push(struct itr_tokbuf *b, size_t start) {
    if (b->n_tok == b->cap_tok) {
        int nc = b->cap_tok ? 2 * b->cap_tok : 32;
        size_t *nt = realloc(b->tok, (size_t)nc * sizeof *nt);
        if (!nt) abort();
        b->tok = nt;
        b->cap_tok = nc;
    }
    b->tok[b->n_tok++] = start;
}

// Appends word[0..n) as one token (NUL-separated in b->text).
static void emit(struct itr_tokbuf *b, const char *word, size_t n) {
    if (n == 0) return;
    tok_push(b, b->len);
    for (size_t i = 0; i < n; i++) out_push(b, word[i]);
    out_push(b, 0);
}

static bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Abbreviations that keep their period in the middle of a caption; punkt's
// English model knows many more, these are the ones captions use.
static bool is_abbrev(const char *w, size_t n) {
    static const char *const list[] = { "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "no", "mt", "ft" };
    for (size_t k = 0; k < sizeof list / sizeof *list; k++)
        if (strlen(list[k]) == n && memcmp(list[k], w, n) == 0) return true;
    if (n == 1 && isalpha((unsigned char)w[0])) return true;        // an initial: "j."
    return memchr(w, '.', n) != NULL;                                   // "e.g", "u.s"
}

static bool ieq_suffix(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(w + n - k, suf, k) == 0;
}

// Treebank's contraction rules on one space-free chunk: "n't", "'ll", "'re",
// "'ve", "'s", "'m", "'d" and a bare trailing "'" split off when something
// other than a quote precedes them; "cannot", "gonna" and friends split in two.
static void emit_word(struct itr_tokbuf *b, const char *w, size_t n) {
    static const char *const pairs[][2] = { { "cannot", "can" }, { "gimme", "gim" }, { "gonna", "gon" },
                                            { "gotta", "got" },   { "lemme", "lem" }, { "wanna", "wan" },
                                            { "'tis", "'t" },     { "'twas", "'t" } };
    for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
        size_t m = strlen(pairs[k][0]), h = strlen(pairs[k][1]);
        if (n == m && memcmp(w, pairs[k][0], m) == 0) {
            emit(b, w, h);
            emit(b, w + h, n - h);
            return;
        }
    }
    static const char *const sufs[] = { "n't", "'ll", "'re", "'ve", "'s", "'m", "'d", "'" };
    for (size_t k = 0; k < sizeof sufs / sizeof *sufs; k++) {
        size_t m = strlen(sufs[k]);
        if (n > m && ieq_suffix(w, n, sufs[k]) && w[n - m - 1] != '\'') {
            emit_word(b, w, n - m);
            emit(b, w + n - m, m);
            return;
        }
    }
    // A leading quote before a word that is not a contraction: "'hello" -> "'" "hello".
    if (n > 1 && w[0] == '\'' && isalnum((unsigned char)w[1])) {
        static const char *const keep[] = { "re", "ve", "ll", "m", "t", "s", "d", "n" };
        bool contraction = false;
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++)
            if (strncmp(w + 1, keep[k], strlen(keep[k])) == 0) contraction = true;
        if (!contraction) {
            emit(b, w, 1);
            emit_word(b, w + 1, n - 1);
            return;
        }
    }
    emit(b, w, n);
}

static bool is_closing(const char *w, size_t n) {
    return (n == 1 && strchr(")]}>'", w[0])) || (n == 2 && memcmp(w, "''", 2) == 0);
}

void itr_tokbuf_run(struct itr_tokbuf *b, const char *caption) {
    b->len = 0;
    b->n_tok = 0;
    // Pass 1: lower case and spaces around the punctuation that Treebank
    // always separates, into a scratch string.
    struct itr_tokbuf s = { 0 };
    out_push(&s, ' ');
    size_t n = strlen(caption);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)caption[i];
        unsigned char prev = i ? (unsigned char)caption[i - 1] : ' ';
        unsigned char next = i + 1 < n ? (unsigned char)caption[i + 1] : 0;
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        if (c == '"') {
            // nltk writes opening quotes as `` and closing ones as ''.
            out_str(&s, is_space(prev) || strchr("([{<", prev) ? " `` " : " '' ");
        } else if (strchr(";@#$%&?![](){}<>", c)) {
            out_push(&s, ' ');
            out_push(&s, (char)c);
            out_push(&s, ' ');
        } else if ((c == ',' || c == ':') && !isdigit(next)) {
            out_push(&s, ' ');
            out_push(&s, (char)c);
            out_push(&s, ' ');
        } else if (c == '.' && next == '.' && i + 2 < n && caption[i + 2] == '.') {
            out_str(&s, " ... ");
            i += 2;
        } else if (c == '-' && next == '-') {
            out_str(&s, " -- ");
            i += 1;
        } else {
            out_push(&s, (char)c);
        }
    }
    out_push(&s, ' ');
    // Pass 2: chunks between spaces; the last word of the caption (closing
    // brackets and quotes after it aside) always loses its final period,
    // others unless they look like an abbreviation (punkt's decision).
    size_t last_start = (size_t)-1, last_len = 0;
    for (size_t i = 0; i < s.len;) {
        while (i < s.len && is_space((unsigned char)s.text[i])) i++;
        size_t j = i;
        while (j < s.len && !is_space((unsigned char)s.text[j])) j++;
        if (j > i && !is_closing(s.text + i, j - i)) { last_start = i; last_len = j - i; }
        i = j;
    }
    for (size_t i = 0; i < s.len;) {
        while (i < s.len && is_space((unsigned char)s.text[i])) i++;
        size_t j = i;
        while (j < s.len && !is_space((unsigned char)s.text[j])) j++;
        size_t m = j - i;
        const char *w = s.text + i;
        if (m > 1 && w[m - 1] == '.' && w[m - 2] != '.' &&
            ((i == last_start && m == last_len) || !is_abbrev(w, m - 1))) {
            emit_word(b, w, m - 1);
            emit(b, ".", 1);
        } else if (m) {
            emit_word(b, w, m);
        }
        i = j;
    }
    free(s.text);
    free(s.tok);
}

void itr_tokbuf_free(struct itr_tokbuf *b) {
    free(b->text);
    free(b->tok);
    memset(b, 0, sizeof *b);
}

int itr_tokenize(const char *caption, char **tokens, int max) {
    struct itr_tokbuf b = { 0 };
    itr_tokbuf_run(&b, caption);
    int n = b.n_tok < max ? b.n_tok : max;
    for (int i = 0; i < n; i++) {
        tokens[i] = strdup(b.text + b.tok[i]);
        if (!tokens[i]) abort();
    }
    itr_tokbuf_free(&b);
    return n;
}

void itr_tokens_free(char **tokens, int n) {
    for (int i = 0; i < n; i++) free(tokens[i]);
}
