// Parameter initialisation (runtime/init.h).
#include "runtime/init.h"

#include <math.h>
#include <stdlib.h>

#include "ir/rng.h"

static void fans(const struct itr_tensor *t, double *fan_in, double *fan_out) {
    if (t->rank == 0) { *fan_in = *fan_out = 1; return; }
    *fan_in = (double)t->shape[t->rank - 1];
    *fan_out = (double)t->shape[0];
}

void itr_init_tensor(const struct itr_param *param, uint64_t seed, struct itr_tensor *t) {
    const struct itr_init *init = &param->init;
    int64_t n = itr_tensor_numel(t);
    uint64_t salt = itr_rng_salt_of_name(param->name);
    bool wide = t->dtype == ITR_F64;
    double lo = init->a, hi = init->b;
    switch (init->kind) {
    case ITR_INIT_ZEROS:
        for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, 0.0);
        return;
    case ITR_INIT_ONES:
        for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, 1.0);
        return;
    case ITR_INIT_CONSTANT:
        for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, init->a);
        return;
    case ITR_INIT_NORMAL:
        for (int64_t i = 0; i < n; i++) {
            double z = wide ? itr_rng_normal_f64(seed, salt, (uint64_t)i) : (double)itr_rng_normal_f32(seed, salt, (uint64_t)i);
            itr_tensor_set(t, i, init->a + init->b * z);
        }
        return;
    case ITR_INIT_XAVIER_UNIFORM: {
        double fi, fo;
        fans(t, &fi, &fo);
        double r = fi + fo > 0 ? init->a * sqrt(6.0 / (fi + fo)) : 0.0;
        lo = -r;
        hi = r;
    }
        // fall through
    case ITR_INIT_UNIFORM:
        for (int64_t i = 0; i < n; i++) {
            double u = wide ? itr_rng_uniform_f64(seed, salt, (uint64_t)i) : (double)itr_rng_uniform_f32(seed, salt, (uint64_t)i);
            itr_tensor_set(t, i, lo + (hi - lo) * u);
        }
        return;
    default:
        for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, 0.0);
        return;
    }
}

bool itr_init_params(const struct itr_program *p, uint64_t seed, struct itr_dim_bindings *dims,
                     struct itr_tensor_set *out, struct itr_diags *d) {
    itr_bind_defaults(dims, p);
    struct itr_tensor **made = calloc((size_t)p->n_params + 1, sizeof *made);
    if (!made) { fprintf(stderr, "itr-run: out of memory\n"); abort(); }
    bool ok = true;
    for (int j = 0; j < p->n_params; j++) {
        const struct itr_param *pp = &p->params[j];
        int64_t shape[ITR_MAX_RANK];
        char what[512];
        snprintf(what, sizeof what, "param '%s'", pp->name);
        if (!itr_eval_shape(dims, p, &pp->type, shape, what, d)) { ok = false; continue; }
        if (!ok) continue;   // keep reporting shapes, skip the work
        made[j] = itr_tensor_new(pp->type.dtype, pp->type.rank, shape);
        if (!made[j]) {
            char s[256];
            itr_shape_format(pp->type.rank, shape, s, sizeof s);
            itr_diag_error(d, pp->loc, "param '%s': cannot allocate a tensor of shape %s", pp->name, s);
            ok = false;
            continue;
        }
        itr_init_tensor(pp, seed, made[j]);
    }
    for (int j = 0; j < p->n_params; j++) {
        if (ok) itr_tensor_set_put(out, p->params[j].name, made[j]);
        else itr_tensor_free(made[j]);
    }
    free(made);
    return ok;
}
