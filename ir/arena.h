// A bump allocator: many small allocations, one free. Programs keep all their
// graph metadata in one arena so that freeing a program cannot leak.
#ifndef ITR_ARENA_H
#define ITR_ARENA_H

#include <stddef.h>

struct itr_arena;

struct itr_arena *itr_arena_new(void);
void  itr_arena_free(struct itr_arena *a);
// Zero-filled, 16-byte aligned; aborts on out-of-memory (a project bug or a
// machine problem, never a user error: sizes are bounded by the input files).
void *itr_arena_alloc(struct itr_arena *a, size_t n);
char *itr_arena_strdup(struct itr_arena *a, const char *s);
char *itr_arena_strndup(struct itr_arena *a, const char *s, size_t n);
void *itr_arena_memdup(struct itr_arena *a, const void *p, size_t n);

#endif
