// Device code carried by plans (ir/devcode.h).
#include "ir/devcode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct itr_devcode_unit *itr_devcode_find(const struct itr_devcode *c, int32_t graph, bool f64) {
    for (int i = 0; c && i < c->n; i++)
        if (c->items[i].graph == graph && c->items[i].f64 == f64) return &c->items[i];
    return NULL;
}

bool itr_devcode_add(struct itr_devcode *c, int32_t graph, bool f64, const char *arch, const void *data, size_t size) {
    if (strlen(arch) >= sizeof c->items[0].images[0].arch) return false;
    struct itr_devcode_unit *u = (struct itr_devcode_unit *)itr_devcode_find(c, graph, f64);
    if (!u) {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 8;
            struct itr_devcode_unit *q = realloc(c->items, (size_t)cap * sizeof *q);
            if (!q) return false;
            c->items = q;
            c->cap = cap;
        }
        u = &c->items[c->n++];
        memset(u, 0, sizeof *u);
        u->graph = graph;
        u->f64 = f64;
    }
    if (u->n_images == ITR_DEVCODE_MAX_IMAGES) return false;
    for (int i = 0; i < u->n_images; i++)
        if (strcmp(u->images[i].arch, arch) == 0) return false;
    struct itr_devcode_image *im = &u->images[u->n_images];
    im->data = malloc(size ? size : 1);
    if (!im->data) return false;
    if (size) memcpy(im->data, data, size);
    im->size = size;
    snprintf(im->arch, sizeof im->arch, "%s", arch);
    u->n_images++;
    return true;
}

void itr_devcode_free(struct itr_devcode *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++)
        for (int k = 0; k < c->items[i].n_images; k++) free(c->items[i].images[k].data);
    free(c->items);
    memset(c, 0, sizeof *c);
}

// "sm_" or "compute_" then two or three digits: the architectures NVRTC
// names (sm_80, sm_90, sm_100). Suffixed ones (sm_90a) are not written.
static bool arch_ok(const char *arch, bool *cubin) {
    const char *d;
    if (strncmp(arch, "sm_", 3) == 0) { *cubin = true; d = arch + 3; }
    else if (strncmp(arch, "compute_", 8) == 0) { *cubin = false; d = arch + 8; }
    else return false;
    size_t n = strspn(d, "0123456789");
    return (n == 2 || n == 3) && d[n] == 0 && d[0] != '0';
}

const char *itr_devcode_image_error(const char *arch, const uint8_t *data, size_t size, char *buf, size_t n) {
    bool cubin;
    if (!arch_ok(arch, &cubin)) {
        snprintf(buf, n, "'%.20s' is not a GPU architecture (sm_XY or compute_XY)", arch);
        return buf;
    }
    if (size == 0 || size > ITR_DEVCODE_MAX_IMAGE) {
        snprintf(buf, n, "the %s image has %zu bytes (1 to %zu expected)", arch, size, ITR_DEVCODE_MAX_IMAGE);
        return buf;
    }
    // An ELF header is 52 bytes (32-bit) or 64 (64-bit); the magic is 4.
    if (cubin && (size < 52 || memcmp(data, "\x7f" "ELF", 4) != 0)) {
        snprintf(buf, n, "the %s image (%zu bytes) is not an ELF cubin", arch, size);
        return buf;
    }
    if (!cubin && (data[size - 1] != 0 || memchr(data, 0, size - 1) != NULL)) {
        snprintf(buf, n, "the %s image (%zu bytes) is not PTX text ending in one NUL", arch, size);
        return buf;
    }
    return NULL;
}
