// Run-time tensors: dtype, concrete shape, contiguous row-major data.
#include "ir.h"

#include <stdlib.h>
#include <string.h>

bool itr_shape_numel(int rank, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return false;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return false;
        n *= shape[i];
    }
    *out = n;
    return true;
}

int64_t itr_tensor_numel(const struct itr_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

size_t itr_tensor_nbytes(const struct itr_tensor *t) {
    return (size_t)itr_tensor_numel(t) * itr_dtype_size(t->dtype);
}

static struct itr_tensor *tensor_header(enum itr_dtype dt, int rank, const int64_t *shape) {
    int64_t n;
    if (rank < 0 || rank > ITR_MAX_RANK || (unsigned)dt >= ITR_DTYPE_COUNT || !itr_shape_numel(rank, shape, &n)) return NULL;
    if ((uint64_t)n > SIZE_MAX / 8) return NULL;
    struct itr_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
    return t;
}

struct itr_tensor *itr_tensor_new(enum itr_dtype dt, int rank, const int64_t *shape) {
    struct itr_tensor *t = tensor_header(dt, rank, shape);
    if (!t) return NULL;
    size_t nb = itr_tensor_nbytes(t);
    t->data = calloc(nb ? nb : 1, 1);
    if (!t->data) { free(t); return NULL; }
    t->owns_data = true;
    return t;
}

struct itr_tensor *itr_tensor_wrap(enum itr_dtype dt, int rank, const int64_t *shape, void *data) {
    struct itr_tensor *t = tensor_header(dt, rank, shape);
    if (!t) return NULL;
    t->data = data;
    return t;
}

struct itr_tensor *itr_tensor_clone(const struct itr_tensor *src) {
    struct itr_tensor *t = itr_tensor_new(src->dtype, src->rank, src->shape);
    if (t) memcpy(t->data, src->data, itr_tensor_nbytes(src));
    return t;
}

void itr_tensor_free(struct itr_tensor *t) {
    if (!t) return;
    if (t->owns_data) free(t->data);
    free(t);
}

double itr_tensor_get(const struct itr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case ITR_F32: return ((const float *)t->data)[i];
    case ITR_F64: return ((const double *)t->data)[i];
    case ITR_I32: return ((const int32_t *)t->data)[i];
    case ITR_I64: return (double)((const int64_t *)t->data)[i];
    case ITR_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    default: return 0;
    }
}

void itr_tensor_set(struct itr_tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case ITR_F32: ((float *)t->data)[i] = (float)v; break;
    case ITR_F64: ((double *)t->data)[i] = v; break;
    case ITR_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case ITR_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case ITR_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}

struct itr_tensor *itr_tensor_cast(const struct itr_tensor *src, enum itr_dtype dt) {
    struct itr_tensor *t = itr_tensor_new(dt, src->rank, src->shape);
    if (!t) return NULL;
    int64_t n = itr_tensor_numel(src);
    if (src->dtype == ITR_I64 && dt == ITR_I64) memcpy(t->data, src->data, (size_t)n * 8);
    else if (src->dtype == ITR_I64 && dt == ITR_I32)
        for (int64_t i = 0; i < n; i++) ((int32_t *)t->data)[i] = (int32_t)((const int64_t *)src->data)[i];
    else
        for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, itr_tensor_get(src, i));
    return t;
}

int itr_shape_format(int rank, const int64_t *shape, char *buf, size_t n) {
    size_t w = 0;
    int k = snprintf(buf, n, "[");
    if (k > 0) w += (size_t)k;
    for (int i = 0; i < rank; i++) {
        k = snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (k > 0) w += (size_t)k;
    }
    k = snprintf(w < n ? buf + w : NULL, w < n ? n - w : 0, "]");
    if (k > 0) w += (size_t)k;
    return (int)w;
}
