// Compiled device code a plan carries for its schedules (`itrc compile
// --target cuda`, docs/backends.md "CUDA"): per schedule (entry x
// precision), the CUDA C unit its kernels render to, compiled ahead of time
// for a few architectures, so that the cuda backend loads an image instead
// of running NVRTC when an entry is prepared.
//
// ir/ only stores and checks the bytes; what they are is the cuda backend's
// business (backends/cuda/cuda_plan.h makes them and picks one to load).
// An image's arch says what it is:
//   "sm_XY"       a cubin (an ELF image) for compute capability X.Y
//   "compute_XY"  PTX text (NUL-terminated), JIT-compiled by the driver on
//                 compute capability X.Y or newer
#ifndef ITR_IR_DEVCODE_H
#define ITR_IR_DEVCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// More than any unit of one schedule compiles to; a larger size is not a
// plan itrc wrote.
#define ITR_DEVCODE_MAX_IMAGE ((size_t)1 << 30)
#define ITR_DEVCODE_MAX_IMAGES 16

struct itr_devcode_image {
    char arch[16];        // "sm_80", "compute_80"
    uint8_t *data;        // owned
    size_t size;          // PTX: counts the terminating NUL
};

struct itr_devcode_unit {
    int32_t graph;        // index into the program's graphs (an entry)
    bool f64;
    struct itr_devcode_image images[ITR_DEVCODE_MAX_IMAGES];
    int n_images;
};

struct itr_devcode {
    struct itr_devcode_unit *items; int n, cap;
};

// Adds a copy of data as graph/f64's image for arch (the unit is created on
// first use). False when the unit already has ITR_DEVCODE_MAX_IMAGES images
// or that arch, or arch does not fit.
bool itr_devcode_add(struct itr_devcode *c, int32_t graph, bool f64, const char *arch, const void *data, size_t size);
const struct itr_devcode_unit *itr_devcode_find(const struct itr_devcode *c, int32_t graph, bool f64);
void itr_devcode_free(struct itr_devcode *c);   // frees the images; c itself is the caller's

// NULL when (arch, data, size) is a well-formed image; otherwise why not,
// written to buf ("the sm_80 image is 12 bytes, not an ELF cubin").
const char *itr_devcode_image_error(const char *arch, const uint8_t *data, size_t size, char *buf, size_t n);

#endif
