#include "diag.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

void itr_diags_init(struct itr_diags *d) { memset(d, 0, sizeof *d); }

void itr_diags_free(struct itr_diags *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].msg);
        free((char *)d->items[i].loc.file);
    }
    free(d->items);
    for (int i = 0; i < d->n_sources; i++) { free(d->sources[i].path); free(d->sources[i].text); }
    free(d->sources);
    memset(d, 0, sizeof *d);
}

void itr_diag_vreport(struct itr_diags *d, enum itr_severity sev, struct itr_loc loc, const char *fmt, va_list ap) {
    if (sev == ITR_SEV_ERROR) d->n_errors++;
    if (sev == ITR_SEV_WARNING) d->n_warnings++;
    int max = d->max_errors ? d->max_errors : 100;
    if (d->n >= max) return;
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *msg = malloc((size_t)(len < 0 ? 0 : len) + 1);
    if (!msg) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    vsnprintf(msg, (size_t)(len < 0 ? 0 : len) + 1, fmt, ap);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = xrealloc(d->items, (size_t)d->cap * sizeof *d->items);
    }
    // The diagnostic keeps its own copy of the file name: a location may
    // name a string that is freed before the diagnostics are printed (a
    // session's weights file, a program's source path).
    if (loc.file) {
        char *f = strdup(loc.file);
        if (!f) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        loc.file = f;
    }
    d->items[d->n++] = (struct itr_diag){ sev, loc, msg };
}

#define DEFINE_REPORT(fn, sev)                                                  \
    void fn(struct itr_diags *d, struct itr_loc loc, const char *fmt, ...) {   \
        va_list ap;                                                             \
        va_start(ap, fmt);                                                      \
        itr_diag_vreport(d, sev, loc, fmt, ap);                                 \
        va_end(ap);                                                             \
    }
DEFINE_REPORT(itr_diag_error, ITR_SEV_ERROR)
DEFINE_REPORT(itr_diag_warning, ITR_SEV_WARNING)
DEFINE_REPORT(itr_diag_note, ITR_SEV_NOTE)

const char *itr_diags_add_source(struct itr_diags *d, const char *path, const char *text, size_t len) {
    for (int i = 0; i < d->n_sources; i++)
        if (strcmp(d->sources[i].path, path) == 0) return d->sources[i].path;
    if (d->n_sources == d->cap_sources) {
        d->cap_sources = d->cap_sources ? d->cap_sources * 2 : 4;
        d->sources = xrealloc(d->sources, (size_t)d->cap_sources * sizeof *d->sources);
    }
    struct itr_source *s = &d->sources[d->n_sources++];
    s->path = strdup(path);
    s->text = malloc(len + 1);
    if (!s->path || !s->text) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    memcpy(s->text, text, len);
    s->text[len] = 0;
    s->len = len;
    return s->path;
}

static const struct itr_source *find_source(const struct itr_diags *d, const char *path) {
    if (!path) return NULL;
    for (int i = 0; i < d->n_sources; i++)
        if (d->sources[i].path == path || strcmp(d->sources[i].path, path) == 0) return &d->sources[i];
    return NULL;
}

// Prints the source line of loc with a caret under the column. Very long
// lines are shown as a window around the column so a 10 MB line stays readable.
static void print_excerpt(FILE *f, const struct itr_source *s, struct itr_loc loc) {
    if (loc.line <= 0) return;
    const char *p = s->text, *end = s->text + s->len;
    for (int line = 1; line < loc.line && p < end; p++)
        if (*p == '\n') line++;
    if (p >= end && loc.line > 1 && (p == s->text || p[-1] != '\n')) return;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    size_t line_len = (size_t)(eol - p);
    size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0;
    if (col > line_len) col = line_len;
    size_t start = 0, stop = line_len;
    const size_t window = 120;
    if (line_len > window) {
        start = col > window / 2 ? col - window / 2 : 0;
        stop = start + window < line_len ? start + window : line_len;
    }
    fputs("    ", f);
    if (start > 0) fputs("...", f);
    for (size_t i = start; i < stop; i++) {
        unsigned char c = (unsigned char)p[i];
        fputc(c == '\t' ? ' ' : (c < 0x20 || c == 0x7f ? '?' : c), f);
    }
    if (stop < line_len) fputs("...", f);
    fputs("\n    ", f);
    if (start > 0) fputs("   ", f);
    for (size_t i = start; i < col; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c & 0xc0) != 0x80) fputc(' ', f);   // one column per UTF-8 character
    }
    fputs("^\n", f);
}

void itr_diags_print(const struct itr_diags *d, FILE *f) {
    static const char *sev_name[] = { "error", "warning", "note" };
    for (int i = 0; i < d->n; i++) {
        const struct itr_diag *g = &d->items[i];
        if (g->loc.file && g->loc.line > 0)
            fprintf(f, "%s:%d:%d: %s: %s\n", g->loc.file, g->loc.line, g->loc.col, sev_name[g->sev], g->msg);
        else if (g->loc.file)
            fprintf(f, "%s: %s: %s\n", g->loc.file, sev_name[g->sev], g->msg);
        else
            fprintf(f, "%s: %s\n", sev_name[g->sev], g->msg);
        const struct itr_source *s = find_source(d, g->loc.file);
        if (s) print_excerpt(f, s, g->loc);
    }
    int max = d->max_errors ? d->max_errors : 100;
    if (d->n_errors + d->n_warnings > max)
        fprintf(f, "(%d more diagnostics not shown)\n", d->n_errors + d->n_warnings - max);
}

bool itr_diags_has_errors(const struct itr_diags *d) { return d->n_errors > 0; }

char *itr_diags_summary(const struct itr_diags *d) {
    size_t total = 1;
    for (int i = 0; i < d->n; i++) total += strlen(d->items[i].msg) + 32;
    char *out = malloc(total), *p = out;
    if (!out) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    *p = 0;
    for (int i = 0; i < d->n; i++)
        p += sprintf(p, "%d:%d: %s\n", d->items[i].loc.line, d->items[i].loc.col, d->items[i].msg);
    return out;
}
