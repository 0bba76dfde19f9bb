// Backend agreement (backends.md §5): comparing a compiled backend's results
// with the reference interpreter's. f32: max|a-b| <= tol * max(1, max|ref|)
// per output; NaN and infinity positions must agree exactly; integers and
// bools exactly.
#ifndef ITR_TEST_AGREE_H
#define ITR_TEST_AGREE_H

#include <math.h>
#include <stdio.h>

#include "ir/ir.h"

#define AGREE_TOL_F32_OP 1e-5
#define AGREE_TOL_F32_MODEL 1e-4
#define AGREE_TOL_F64 1e-12

// Describes the first disagreement in why; true when the tensors agree.
static inline bool agree_tensors(const struct itr_tensor *ref, const struct itr_tensor *got, double tol, char *why,
                                 size_t n) {
    if (!ref || !got) {
        snprintf(why, n, "missing tensor (ref %p, got %p)", (const void *)ref, (const void *)got);
        return false;
    }
    if (ref->dtype != got->dtype || ref->rank != got->rank) {
        snprintf(why, n, "type differs: ref %s rank %d, got %s rank %d", itr_dtype_name(ref->dtype), ref->rank,
                 itr_dtype_name(got->dtype), got->rank);
        return false;
    }
    for (int i = 0; i < ref->rank; i++)
        if (ref->shape[i] != got->shape[i]) {
            snprintf(why, n, "dim %d differs: ref %lld, got %lld", i, (long long)ref->shape[i], (long long)got->shape[i]);
            return false;
        }
    int64_t cnt = itr_tensor_numel(ref);
    bool fl = itr_dtype_is_float(ref->dtype);
    double scale = 1;
    for (int64_t i = 0; i < cnt && fl; i++) {
        double r = fabs(itr_tensor_get(ref, i));
        if (isfinite(r) && r > scale) scale = r;
    }
    for (int64_t i = 0; i < cnt; i++) {
        double r = itr_tensor_get(ref, i), g = itr_tensor_get(got, i);
        bool ok;
        if (!fl) ok = r == g;
        else if (isnan(r) || isnan(g)) ok = isnan(r) && isnan(g);
        else if (isinf(r) || isinf(g)) ok = r == g;
        else ok = fabs(r - g) <= tol * scale;
        if (!ok) {
            snprintf(why, n, "element %lld: ref %.10g, got %.10g (|diff| %.3g, allowed %.3g)", (long long)i, r, g,
                     fabs(r - g), tol * scale);
            return false;
        }
    }
    return true;
}

#endif
