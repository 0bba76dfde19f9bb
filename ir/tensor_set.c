// Named tensor sets (ir/tensor_set.h). Lookups are linear: sets hold a
// model's parameters (tens to a few hundred), looked up by name only at the
// boundaries (loading, saving, binding), never per element.
#include "ir/tensor_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

static char *xstrdup(const char *s) {
    char *c = strdup(s);
    if (!c) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return c;
}

void itr_tensor_set_init(struct itr_tensor_set *s) { memset(s, 0, sizeof *s); }

void itr_tensor_set_free(struct itr_tensor_set *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->items[i].name);
        itr_tensor_free(s->items[i].tensor);
    }
    free(s->items);
    for (int i = 0; i < s->n_meta; i++) {
        free(s->meta_keys[i]);
        free(s->meta_values[i]);
    }
    free(s->meta_keys);
    free(s->meta_values);
    memset(s, 0, sizeof *s);
}

void itr_tensor_set_put(struct itr_tensor_set *s, const char *name, struct itr_tensor *t) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0) {
            if (s->items[i].tensor != t) itr_tensor_free(s->items[i].tensor);
            s->items[i].tensor = t;
            return;
        }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = xrealloc(s->items, (size_t)s->cap * sizeof *s->items);
    }
    s->items[s->n].name = xstrdup(name);
    s->items[s->n].tensor = t;
    s->n++;
}

struct itr_tensor *itr_tensor_set_get(const struct itr_tensor_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0) return s->items[i].tensor;
    return NULL;
}

void itr_tensor_set_meta(struct itr_tensor_set *s, const char *key, const char *value) {
    for (int i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta_keys[i], key) == 0) {
            char *v = xstrdup(value);
            free(s->meta_values[i]);
            s->meta_values[i] = v;
            return;
        }
    if (s->n_meta == s->cap_meta) {
        s->cap_meta = s->cap_meta ? s->cap_meta * 2 : 8;
        s->meta_keys = xrealloc(s->meta_keys, (size_t)s->cap_meta * sizeof *s->meta_keys);
        s->meta_values = xrealloc(s->meta_values, (size_t)s->cap_meta * sizeof *s->meta_values);
    }
    s->meta_keys[s->n_meta] = xstrdup(key);
    s->meta_values[s->n_meta] = xstrdup(value);
    s->n_meta++;
}

const char *itr_tensor_set_get_meta(const struct itr_tensor_set *s, const char *key) {
    for (int i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta_keys[i], key) == 0) return s->meta_values[i];
    return NULL;
}
