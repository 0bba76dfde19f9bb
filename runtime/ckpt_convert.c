// Checkpoint name maps and conversion (runtime/ckpt_convert.h).
#include "runtime/ckpt_convert.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/bind.h"
#include "ir/fileio.h"

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    return q;
}

static char *xstrndup(const char *s, size_t n) {
    char *r = xrealloc(NULL, n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xrealloc(NULL, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void push_str(char ***v, int *n, int *cap, char *s) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *v = xrealloc(*v, (size_t)*cap * sizeof **v);
    }
    (*v)[(*n)++] = s;
}

// ---------------------------------------------------------------- maps

void itr_ckpt_map_init(struct itr_ckpt_map *m) { memset(m, 0, sizeof *m); }

void itr_ckpt_map_free(struct itr_ckpt_map *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->rules[i].ours);
        free(m->rules[i].theirs);
    }
    free(m->rules);
    free(m->path);
    itr_ckpt_map_init(m);
}

// Checks the "{name}" placeholders of a pattern; collects their names.
static bool check_placeholders(const char *s, char names[][32], int *n, const char **bad) {
    *n = 0;
    for (const char *c = s; *c; c++) {
        if (*c == '}') { *bad = c; return false; }
        if (*c != '{') continue;
        const char *e = strchr(c + 1, '}');
        if (!e || e == c + 1 || e - c - 1 >= 32) { *bad = c; return false; }
        for (const char *q = c + 1; q < e; q++)
            if (!isalnum((unsigned char)*q) && *q != '_') { *bad = c; return false; }
        if (*n < 8) {
            memcpy(names[*n], c + 1, (size_t)(e - c - 1));
            names[*n][e - c - 1] = 0;
            (*n)++;
        }
        c = e;
    }
    return true;
}

bool itr_ckpt_map_parse(const char *path, const char *text, size_t len, struct itr_ckpt_map *m,
                        struct itr_diags *d) {
    itr_ckpt_map_init(m);
    m->path = xstrndup(path, strlen(path));
    const char *file = itr_diags_add_source(d, path, text, len);
    int errors = d->n_errors, line = 0;
    for (size_t pos = 0; pos < len;) {
        line++;
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        const char *tok[8]; size_t tlen[8]; int ntok = 0, col[8];
        bool too_many = false;
        for (size_t i = pos; i < end;) {
            if (text[i] == '#') break;
            if (isspace((unsigned char)text[i])) { i++; continue; }
            size_t j = i;
            while (j < end && !isspace((unsigned char)text[j]) && text[j] != '#') j++;
            if (ntok < 8) { tok[ntok] = text + i; tlen[ntok] = j - i; col[ntok] = (int)(i - pos) + 1; ntok++; }
            else too_many = true;
            i = j;
        }
        struct itr_loc loc = { file, line, ntok ? col[0] : 1 };
        if (memchr(text + pos, 0, end - pos)) {
            itr_diag_error(d, (struct itr_loc){ file, line, 1 }, "a NUL byte in a checkpoint map");
        } else if (ntok == 1 || too_many) {
            itr_diag_error(d, loc, "expected 'OURS THEIRS [transpose] [reshape]' (a parameter name or prefix, "
                                   "then the checkpoint tensor's)");
        } else if (ntok >= 2) {
            struct itr_ckpt_rule r = { xstrndup(tok[0], tlen[0]), xstrndup(tok[1], tlen[1]), false, 0, line };
            bool ok = true;
            for (int k = 2; k < ntok; k++) {
                if (tlen[k] == 9 && !memcmp(tok[k], "transpose", 9)) r.flags |= ITR_CKPT_TRANSPOSE;
                else if (tlen[k] == 7 && !memcmp(tok[k], "reshape", 7)) r.flags |= ITR_CKPT_RESHAPE;
                else {
                    itr_diag_error(d, (struct itr_loc){ file, line, col[k] },
                                   "unknown option '%.*s' (known: transpose, reshape)", (int)tlen[k], tok[k]);
                    ok = false;
                }
            }
            size_t lo = strlen(r.ours), lt = strlen(r.theirs);
            r.prefix = r.ours[lo - 1] == '.';
            if (ok && r.prefix != (r.theirs[lt - 1] == '.')) {
                itr_diag_error(d, loc, "'%s' and '%s': a prefix rule ends both names with '.', an exact rule "
                                       "neither", r.ours, r.theirs);
                ok = false;
            }
            if (ok && r.prefix && r.flags) {
                itr_diag_error(d, loc, "transpose and reshape apply to one tensor, not to a prefix rule");
                ok = false;
            }
            char on[8][32], tn[8][32]; int non = 0, ntn = 0; const char *bad = NULL;
            if (ok && (!check_placeholders(r.ours, on, &non, &bad) || !check_placeholders(r.theirs, tn, &ntn, &bad))) {
                itr_diag_error(d, loc, "a malformed placeholder at '%s' (write {k}: letters, digits, '_')", bad);
                ok = false;
            }
            for (int a = 0; ok && a < ntn; a++) {
                bool found = false;
                for (int b = 0; b < non; b++) found |= !strcmp(tn[a], on[b]);
                if (!found) {
                    itr_diag_error(d, loc, "'{%s}' in '%s' does not occur in '%s'", tn[a], r.theirs, r.ours);
                    ok = false;
                }
            }
            for (int i = 0; ok && i < m->n; i++)
                if (!strcmp(m->rules[i].ours, r.ours)) {
                    itr_diag_error(d, loc, "a second rule for '%s' (the first is on line %d)", r.ours,
                                   m->rules[i].line);
                    ok = false;
                }
            if (ok) {
                if (m->n == m->cap) {
                    m->cap = m->cap ? 2 * m->cap : 32;
                    m->rules = xrealloc(m->rules, (size_t)m->cap * sizeof *m->rules);
                }
                m->rules[m->n++] = r;
            } else {
                free(r.ours);
                free(r.theirs);
            }
        }
        pos = end + 1;
    }
    if (d->n_errors > errors) {
        itr_ckpt_map_free(m);
        return false;
    }
    if (m->n == 0) {
        itr_diag_error(d, (struct itr_loc){ file, 1, 1 }, "the checkpoint map has no rules");
        itr_ckpt_map_free(m);
        return false;
    }
    return true;
}

bool itr_ckpt_map_read(const char *path, struct itr_ckpt_map *m, struct itr_diags *d) {
    uint8_t *buf; size_t len;
    itr_ckpt_map_init(m);
    if (!itr_file_read_all(path, &buf, &len, d)) return false;
    bool ok = itr_ckpt_map_parse(path, (const char *)buf, len, m, d);
    free(buf);
    return ok;
}

// Matches pattern against the start of name. Placeholders match one or more
// digits; their values go to caps (name, value). Returns the number of name
// bytes matched, or -1.
struct caps { int n; const char *name[8]; size_t nlen[8]; const char *val[8]; size_t vlen[8]; };

static long match_pattern(const char *pat, const char *name, struct caps *c) {
    const char *s = name;
    c->n = 0;
    for (const char *q = pat; *q;) {
        if (*q == '{') {
            const char *e = strchr(q, '}');
            const char *v = s;
            while (isdigit((unsigned char)*s)) s++;
            if (s == v) return -1;
            if (c->n < 8) {
                c->name[c->n] = q + 1; c->nlen[c->n] = (size_t)(e - q - 1);
                c->val[c->n] = v; c->vlen[c->n] = (size_t)(s - v);
                c->n++;
            }
            q = e + 1;
        } else {
            if (*s != *q) return -1;
            s++, q++;
        }
    }
    return (long)(s - name);
}

// THEIRS with the placeholders substituted, then rest appended.
static char *substitute(const char *theirs, const struct caps *c, const char *rest) {
    size_t cap = strlen(theirs) + strlen(rest) + 64, n = 0;
    char *out = xrealloc(NULL, cap);
    for (const char *q = theirs; *q;) {
        const char *piece = q; size_t plen = 1;
        if (*q == '{') {
            const char *e = strchr(q, '}');
            for (int i = 0; i < c->n; i++)
                if (c->nlen[i] == (size_t)(e - q - 1) && !memcmp(c->name[i], q + 1, c->nlen[i])) {
                    piece = c->val[i]; plen = c->vlen[i];
                }
            q = e + 1;
        } else {
            q++;
        }
        if (n + plen + strlen(rest) + 1 > cap) cap = 2 * (n + plen + strlen(rest) + 1), out = xrealloc(out, cap);
        memcpy(out + n, piece, plen);
        n += plen;
    }
    strcpy(out + n, rest);
    return out;
}

// The rule for parameter name and the checkpoint name it gives (caller
// frees), or NULL.
static const struct itr_ckpt_rule *find_rule(const struct itr_ckpt_map *m, const char *name, char **src) {
    struct caps c;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n; i++) {
            const struct itr_ckpt_rule *r = &m->rules[i];
            if (r->prefix != (pass == 1)) continue;
            long k = match_pattern(r->ours, name, &c);
            if (k < 0) continue;
            if (!r->prefix && name[k]) continue;
            if (r->prefix && !name[k]) continue;
            *src = substitute(r->theirs, &c, r->prefix ? name + k : "");
            return r;
        }
    return NULL;
}

// ---------------------------------------------------------------- conversion

void itr_ckpt_report_free(struct itr_ckpt_report *r) {
    for (int i = 0; i < r->n_lines; i++) free(r->lines[i]);
    for (int i = 0; i < r->n_ignored; i++) free(r->ignored[i]);
    free(r->lines);
    free(r->ignored);
    memset(r, 0, sizeof *r);
}

bool itr_ckpt_is_weight(const struct itr_program *p, int param) {
    for (int i = 0; i < p->n_updates; i++)
        if (p->updates[i].param == param && p->updates[i].kind == ITR_UPDATE_OPTIMIZER) return false;
    return true;
}

static void shape_str(const struct itr_tensor *t, char *buf, size_t n) { itr_shape_format(t->rank, t->shape, buf, n); }

struct itr_tensor *itr_ckpt_fold_weight_norm(const struct itr_tensor *g, const struct itr_tensor *v, const char *what,
                                             struct itr_diags *d) {
    char gs[128], vs[128];
    shape_str(g, gs, sizeof gs);
    shape_str(v, vs, sizeof vs);
    if (!itr_dtype_is_float(g->dtype) || !itr_dtype_is_float(v->dtype)) {
        itr_diag_error(d, ITR_NOLOC, "checkpoint tensors '%s_g' and '%s_v' (weight_norm) must be floats, not %s and %s",
                       what, what, itr_dtype_name(g->dtype), itr_dtype_name(v->dtype));
        return NULL;
    }
    int64_t ng = itr_tensor_numel(g), nv = itr_tensor_numel(v);
    int axis = -1;   // -1: one norm over the whole tensor
    if (ng != 1) {
        bool fits = g->rank == v->rank;
        for (int k = 0; fits && k < g->rank; k++) {
            if (g->shape[k] == 1) continue;
            if (g->shape[k] != v->shape[k] || axis >= 0) fits = false;
            else axis = k;
        }
        if (!fits || axis < 0) {
            itr_diag_error(d, ITR_NOLOC, "checkpoint tensors '%s_g' %s and '%s_v' %s are no weight_norm pair: g "
                           "must have one element, or v's size along one dim and 1 along the others",
                           what, gs, what, vs);
            return NULL;
        }
    }
    int64_t outer = 1, mid = 1, inner = 1;
    if (axis >= 0) {
        for (int k = 0; k < axis; k++) outer *= v->shape[k];
        mid = v->shape[axis];
        for (int k = axis + 1; k < v->rank; k++) inner *= v->shape[k];
    } else {
        inner = nv;
    }
    struct itr_tensor *w = itr_tensor_new(v->dtype, v->rank, v->shape);
    double *norm = calloc((size_t)(mid ? mid : 1), sizeof *norm);
    if (!w || !norm) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < mid; j++)
            for (int64_t i = 0; i < inner; i++) {
                double x = itr_tensor_get(v, (o * mid + j) * inner + i);
                norm[j] += x * x;
            }
    for (int64_t j = 0; j < mid; j++) norm[j] = sqrt(norm[j]);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < mid; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t e = (o * mid + j) * inner + i;
                itr_tensor_set(w, e, itr_tensor_get(g, axis >= 0 ? j : 0) * itr_tensor_get(v, e) / norm[j]);
            }
    free(norm);
    return w;
}

static int find_index(const struct itr_tensor_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->items[i].name, name)) return i;
    return -1;
}

// The checkpoint tensor for src, folding weight_norm's (src_g, src_v) or
// parametrize's (….parametrizations.LEAF.original0/1) pair where src itself
// is absent. Marks what it used. NULL: missing (nothing reported) or a bad
// pair (reported, *bad set). *fresh: the result is new (caller frees).
static struct itr_tensor *resolve(const struct itr_tensor_set *ck, const char *src, bool *used, bool *fresh,
                                  bool *bad, char *how, size_t how_n, struct itr_diags *d) {
    *fresh = false;
    how[0] = 0;
    int i = find_index(ck, src);
    if (i >= 0) {
        used[i] = true;
        return ck->items[i].tensor;
    }
    char *gn = xasprintf("%s_g", src), *vn = xasprintf("%s_v", src);
    int gi = find_index(ck, gn), vi = find_index(ck, vn);
    if (gi < 0 || vi < 0) {
        const char *dot = strrchr(src, '.');
        if (dot) {
            free(gn), free(vn);
            gn = xasprintf("%.*s.parametrizations.%s.original0", (int)(dot - src), src, dot + 1);
            vn = xasprintf("%.*s.parametrizations.%s.original1", (int)(dot - src), src, dot + 1);
            gi = find_index(ck, gn), vi = find_index(ck, vn);
        }
    }
    struct itr_tensor *w = NULL;
    if (gi >= 0 && vi >= 0) {
        used[gi] = used[vi] = true;
        w = itr_ckpt_fold_weight_norm(ck->items[gi].tensor, ck->items[vi].tensor, src, d);
        if (w) {
            *fresh = true;
            snprintf(how, how_n, "%s, %s (weight_norm folded)", gn, vn);
        } else {
            *bad = true;
        }
    }
    free(gn), free(vn);
    return w;
}

static struct itr_tensor *transpose2(const struct itr_tensor *t) {
    int64_t shp[2] = { t->shape[1], t->shape[0] };
    struct itr_tensor *r = itr_tensor_new(t->dtype, 2, shp);
    if (!r) abort();
    for (int64_t a = 0; a < t->shape[0]; a++)
        for (int64_t b = 0; b < t->shape[1]; b++)
            itr_tensor_set(r, b * t->shape[0] + a, itr_tensor_get(t, a * t->shape[1] + b));
    return r;
}

bool itr_ckpt_convert(const struct itr_program *p, const struct itr_ckpt_map *m, const struct itr_tensor_set *ckpt,
                      struct itr_tensor_set *out, struct itr_ckpt_report *rep, struct itr_diags *d) {
    int np = p->n_params, errors = d->n_errors;
    bool *used = calloc((size_t)(ckpt->n ? ckpt->n : 1), sizeof *used);
    struct itr_tensor **val = calloc((size_t)(np ? np : 1), sizeof *val);
    bool *fresh = calloc((size_t)(np ? np : 1), sizeof *fresh);
    char **srcs = calloc((size_t)(np ? np : 1), sizeof *srcs);
    const struct itr_ckpt_rule **rule = calloc((size_t)(np ? np : 1), sizeof *rule);
    if (!used || !val || !fresh || !srcs || !rule) abort();
    memset(rep, 0, sizeof *rep);

    // 1. every weight parameter's tensor, by rule
    for (int j = 0; j < np; j++) {
        if (!itr_ckpt_is_weight(p, j)) continue;
        rep->n_params++;
        const char *name = p->params[j].name;
        rule[j] = find_rule(m, name, &srcs[j]);
        if (!rule[j]) {
            itr_diag_error(d, ITR_NOLOC, "parameter '%s': no rule of %s maps it (add a line '%s  CHECKPOINT_NAME')",
                           name, m->path, name);
            continue;
        }
        bool bad = false;
        char how[512];
        val[j] = resolve(ckpt, srcs[j], used, &fresh[j], &bad, how, sizeof how, d);
        if (!val[j]) {
            if (!bad)
                itr_diag_error(d, ITR_NOLOC, "parameter '%s': the checkpoint has no tensor '%s' (%s line %d)", name,
                               srcs[j], m->path, rule[j]->line);
            continue;
        }
        char note[128] = "";
        if (rule[j]->flags & ITR_CKPT_TRANSPOSE) {
            if (val[j]->rank != 2) {
                char s[128];
                shape_str(val[j], s, sizeof s);
                itr_diag_error(d, ITR_NOLOC, "parameter '%s': checkpoint tensor '%s' %s: transpose needs 2 dims",
                               name, srcs[j], s);
                if (fresh[j]) itr_tensor_free(val[j]);
                val[j] = NULL;
                continue;
            }
            struct itr_tensor *t = transpose2(val[j]);
            if (fresh[j]) itr_tensor_free(val[j]);
            val[j] = t, fresh[j] = true;
            strcat(note, " (transposed)");
        }
        enum itr_dtype want = p->params[j].type.dtype;
        if (val[j]->dtype != want && itr_dtype_is_float(val[j]->dtype) && itr_dtype_is_float(want)) {
            struct itr_tensor *t = itr_tensor_cast(val[j], want);
            if (!t) abort();
            snprintf(note + strlen(note), sizeof note - strlen(note), " (%s rounded to %s)",
                     itr_dtype_name(val[j]->dtype), itr_dtype_name(want));
            if (fresh[j]) itr_tensor_free(val[j]);
            val[j] = t, fresh[j] = true;
        }
        push_str(&rep->lines, &rep->n_lines, &rep->cap_lines,
                 xasprintf("%s <- %s%s", name, how[0] ? how : srcs[j], note));
    }

    // 2. dtypes and shapes against the program, binding dims across all of
    // them (reshape rules last: they take the shape the others determine)
    int n = 0;
    const struct itr_type **types = calloc((size_t)(np ? np : 1), sizeof *types);
    const struct itr_tensor **xs = calloc((size_t)(np ? np : 1), sizeof *xs);
    char **whats = calloc((size_t)(np ? np : 1), sizeof *whats);
    if (!types || !xs || !whats) abort();
    for (int j = 0; j < np; j++) {
        if (!val[j] || (rule[j]->flags & ITR_CKPT_RESHAPE)) continue;
        types[n] = &p->params[j].type;
        xs[n] = val[j];
        whats[n] = xasprintf("parameter '%s' (checkpoint tensor '%s')", p->params[j].name, srcs[j]);
        n++;
    }
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    if (n > 0) itr_bind_tensors(&b, p, n, types, xs, (const char *const *)whats, false, d);
    for (int j = 0; j < np; j++) {
        if (!val[j] || !(rule[j]->flags & ITR_CKPT_RESHAPE)) continue;
        int64_t shp[ITR_MAX_RANK], numel = 1;
        char *what = xasprintf("parameter '%s' (checkpoint tensor '%s', reshape)", p->params[j].name, srcs[j]);
        if (itr_eval_shape(&b, p, &p->params[j].type, shp, what, d)) {
            for (int k = 0; k < p->params[j].type.rank; k++) numel *= shp[k];
            if (numel != itr_tensor_numel(val[j])) {
                char s[128], t[128];
                shape_str(val[j], s, sizeof s);
                itr_shape_format(p->params[j].type.rank, shp, t, sizeof t);
                itr_diag_error(d, ITR_NOLOC, "%s: %s has %lld values, the parameter's shape %s needs %lld", what, s,
                               (long long)itr_tensor_numel(val[j]), t, (long long)numel);
            } else {
                struct itr_tensor *t = itr_tensor_new(val[j]->dtype, p->params[j].type.rank, shp);
                if (!t) abort();
                memcpy(t->data, val[j]->data, itr_tensor_nbytes(t));
                if (fresh[j]) itr_tensor_free(val[j]);
                val[j] = t, fresh[j] = true;
                if (!itr_bind_tensor(&b, p, &p->params[j].type, t, what, false, d)) { /* reported */ }
            }
        }
        free(what);
    }
    itr_bindings_free(&b);
    for (int i = 0; i < n; i++) free(whats[i]);
    free(types), free(xs), free(whats);

    // 3. what the checkpoint had that no parameter used
    for (int i = 0; i < ckpt->n; i++)
        if (!used[i]) {
            char s[128];
            shape_str(ckpt->items[i].tensor, s, sizeof s);
            push_str(&rep->ignored, &rep->n_ignored, &rep->cap_ignored,
                     xasprintf("%s %s %s", ckpt->items[i].name, itr_dtype_name(ckpt->items[i].tensor->dtype), s));
        }

    bool ok = d->n_errors == errors;
    for (int j = 0; j < np; j++) {
        if (ok && val[j])
            itr_tensor_set_put(out, p->params[j].name, fresh[j] ? val[j] : itr_tensor_clone(val[j]));
        else if (fresh[j])
            itr_tensor_free(val[j]);
        free(srcs[j]);
    }
    free(used), free(val), free(fresh), free(srcs), free(rule);
    if (!ok) {
        itr_tensor_set_free(out);
        itr_tensor_set_init(out);
    }
    return ok;
}
