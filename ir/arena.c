#include "arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chunk {
    struct chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

struct itr_arena {
    struct chunk *head;
};

struct itr_arena *itr_arena_new(void) {
    struct itr_arena *a = calloc(1, sizeof *a);
    if (!a) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return a;
}

void itr_arena_free(struct itr_arena *a) {
    if (!a) return;
    for (struct chunk *c = a->head; c;) { struct chunk *n = c->next; free(c); c = n; }
    free(a);
}

void *itr_arena_alloc(struct itr_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    struct chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + size);
        if (!c) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *itr_arena_strndup(struct itr_arena *a, const char *s, size_t n) {
    char *d = itr_arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *itr_arena_strdup(struct itr_arena *a, const char *s) {
    return s ? itr_arena_strndup(a, s, strlen(s)) : NULL;
}

void *itr_arena_memdup(struct itr_arena *a, const void *p, size_t n) {
    void *d = itr_arena_alloc(a, n);
    if (n) memcpy(d, p, n);
    return d;
}
