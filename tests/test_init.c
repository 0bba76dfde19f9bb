// Parameter initialisation (runtime/init.h): determinism, independence of
// parameters, the initialisers' distributions, and unbound-dim errors.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/bind.h"
#include "runtime/init.h"
#include "test.h"

static struct itr_type ty2(struct itr_program *p, enum itr_dtype dt, int rank, int64_t a, int64_t b) {
    itr_dim ds[2] = { itr_dim_const(p, a), itr_dim_const(p, b) };
    return itr_type_make(dt, rank, ds);
}

static struct itr_init init_of(enum itr_init_kind k, double a, double b) { return (struct itr_init){ k, a, b }; }

// A few parameters of every kind; extra_first adds one more at the front.
static struct itr_program *model(bool extra_first) {
    struct itr_program *p = itr_program_new();
    p->name = itr_program_strdup(p, "m");
    if (extra_first)
        itr_program_add_param(p, "aaa.extra", ty2(p, ITR_F32, 2, 7, 7), init_of(ITR_INIT_NORMAL, 0, 1), false, ITR_NOLOC);
    itr_program_add_param(p, "fc.weight", ty2(p, ITR_F32, 2, 200, 300), init_of(ITR_INIT_XAVIER_UNIFORM, 1, 0), false,
                          ITR_NOLOC);
    itr_program_add_param(p, "fc.bias", ty2(p, ITR_F32, 1, 200, 0), init_of(ITR_INIT_ZEROS, 0, 0), false, ITR_NOLOC);
    itr_program_add_param(p, "embed.table", ty2(p, ITR_F32, 2, 50, 20), init_of(ITR_INIT_UNIFORM, -0.1, 0.1), false,
                          ITR_NOLOC);
    itr_program_add_param(p, "noise", ty2(p, ITR_F32, 1, 20000, 0), init_of(ITR_INIT_NORMAL, 1, 2), false, ITR_NOLOC);
    itr_program_add_param(p, "scale", ty2(p, ITR_F64, 1, 3, 0), init_of(ITR_INIT_CONSTANT, 0.25, 0), true, ITR_NOLOC);
    itr_program_add_param(p, "gain", ty2(p, ITR_F32, 1, 4, 0), init_of(ITR_INIT_ONES, 0, 0), false, ITR_NOLOC);
    itr_program_add_param(p, "vec", ty2(p, ITR_F32, 1, 50, 0), init_of(ITR_INIT_XAVIER_UNIFORM, 2, 0), false, ITR_NOLOC);
    return p;
}

static bool init(const struct itr_program *p, uint64_t seed, struct itr_tensor_set *out) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_diags d;
    itr_diags_init(&d);
    itr_tensor_set_init(out);
    bool ok = itr_init_params(p, seed, &b, out, &d);
    if (!ok) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    itr_bindings_free(&b);
    return ok;
}

static bool same_bytes(const struct itr_tensor *a, const struct itr_tensor *b) {
    return a && b && a->dtype == b->dtype && itr_tensor_nbytes(a) == itr_tensor_nbytes(b) &&
           memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

TEST(same_seed_same_bytes) {
    struct itr_program *p = model(false);
    struct itr_tensor_set a, b;
    CHECK(init(p, 1234, &a));
    CHECK(init(p, 1234, &b));
    CHECK(a.n == p->n_params && b.n == p->n_params);
    for (int i = 0; i < a.n; i++) {
        CHECK(strcmp(a.items[i].name, p->params[i].name) == 0);
        CHECK_MSG(same_bytes(a.items[i].tensor, itr_tensor_set_get(&b, a.items[i].name)), "%s differs",
                  a.items[i].name);
    }
    itr_tensor_set_free(&a);
    itr_tensor_set_free(&b);
    itr_program_free(p);
}

TEST(different_seed_different_values) {
    struct itr_program *p = model(false);
    struct itr_tensor_set a, b;
    CHECK(init(p, 1, &a));
    CHECK(init(p, 2, &b));
    const char *random[] = { "fc.weight", "embed.table", "noise", "vec" };
    for (int i = 0; i < 4; i++)
        CHECK_MSG(!same_bytes(itr_tensor_set_get(&a, random[i]), itr_tensor_set_get(&b, random[i])),
                  "%s did not change with the seed", random[i]);
    CHECK(same_bytes(itr_tensor_set_get(&a, "fc.bias"), itr_tensor_set_get(&b, "fc.bias")));
    itr_tensor_set_free(&a);
    itr_tensor_set_free(&b);
    itr_program_free(p);
}

TEST(adding_a_param_changes_no_other) {
    struct itr_program *p = model(false), *q = model(true);
    struct itr_tensor_set a, b;
    CHECK(init(p, 99, &a));
    CHECK(init(q, 99, &b));
    CHECK(b.n == a.n + 1);
    for (int i = 0; i < a.n; i++)
        CHECK_MSG(same_bytes(a.items[i].tensor, itr_tensor_set_get(&b, a.items[i].name)), "%s changed",
                  a.items[i].name);
    itr_tensor_set_free(&a);
    itr_tensor_set_free(&b);
    itr_program_free(p);
    itr_program_free(q);
}

static void moments(const struct itr_tensor *t, double *mean, double *std, double *lo, double *hi) {
    int64_t n = itr_tensor_numel(t);
    double s = 0, s2 = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v = itr_tensor_get(t, i);
        s += v;
        s2 += v * v;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

TEST(distributions) {
    struct itr_program *p = model(false);
    struct itr_tensor_set a;
    CHECK(init(p, 7, &a));
    double mean, std, lo, hi;

    // xavier_uniform on [200, 300]: U(-r, r), r = sqrt(6 / (300 + 200))
    const struct itr_tensor *w = itr_tensor_set_get(&a, "fc.weight");
    CHECK(w && w->dtype == ITR_F32 && w->rank == 2 && w->shape[0] == 200 && w->shape[1] == 300);
    double r = sqrt(6.0 / 500.0), n = 60000;
    moments(w, &mean, &std, &lo, &hi);
    double eps = 1e-6 * r;   // f32 rounding of the bounds
    CHECK(lo >= -r - eps && hi <= r + eps);
    CHECK(lo < -0.99 * r && hi > 0.99 * r);
    CHECK_NEAR(mean, 0, 5 * (r / sqrt(3)) / sqrt(n));
    CHECK_NEAR(std, r / sqrt(3), 0.02 * r / sqrt(3));

    // rank 1: fan_in = fan_out = the dim, gain 2
    const struct itr_tensor *v = itr_tensor_set_get(&a, "vec");
    double rv = 2 * sqrt(6.0 / 100.0);
    moments(v, &mean, &std, &lo, &hi);
    CHECK(lo >= -rv * (1 + 1e-6) && hi <= rv * (1 + 1e-6) && hi - lo > rv);

    // uniform(-0.1, 0.1)
    moments(itr_tensor_set_get(&a, "embed.table"), &mean, &std, &lo, &hi);
    CHECK(lo >= -0.1 - 1e-7 && hi <= 0.1 + 1e-7);
    CHECK_NEAR(mean, 0, 5 * (0.2 / sqrt(12)) / sqrt(1000));

    // normal(1, 2) over 20000 draws
    moments(itr_tensor_set_get(&a, "noise"), &mean, &std, &lo, &hi);
    CHECK_NEAR(mean, 1, 5 * 2 / sqrt(20000));
    CHECK_NEAR(std, 2, 0.05 * 2);

    // zeros, ones, constant (f64)
    const struct itr_tensor *z = itr_tensor_set_get(&a, "fc.bias"), *o = itr_tensor_set_get(&a, "gain"),
                            *c = itr_tensor_set_get(&a, "scale");
    for (int i = 0; i < 200; i++) CHECK(itr_tensor_get(z, i) == 0);
    for (int i = 0; i < 4; i++) CHECK(itr_tensor_get(o, i) == 1);
    CHECK(c->dtype == ITR_F64);
    for (int i = 0; i < 3; i++) CHECK(itr_tensor_get(c, i) == 0.25);
    itr_tensor_set_free(&a);
    itr_program_free(p);
}

TEST(unbound_dim_is_an_error_naming_param_and_symbol) {
    struct itr_program *p = itr_program_new();
    p->name = itr_program_strdup(p, "m");
    int32_t V = itr_program_add_symbol(p, "V", 0, false, ITR_NOLOC);
    int32_t D = itr_program_add_symbol(p, "D", 6, true, ITR_NOLOC);
    itr_dim dims[2] = { itr_dim_sym(p, V), itr_dim_sym(p, D) };
    itr_program_add_param(p, "embed.table", itr_type_make(ITR_F32, 2, dims), init_of(ITR_INIT_UNIFORM, -1, 1), false,
                          ITR_NOLOC);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set out;
    itr_tensor_set_init(&out);
    CHECK(!itr_init_params(p, 1, &b, &out, &d));
    CHECK(out.n == 0);
    char *s = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(s, "embed.table");
    CHECK_STR_CONTAINS(s, "V");
    free(s);
    itr_diags_free(&d);

    // bound by the caller (--dim V=7), D from its default
    itr_diags_init(&d);
    CHECK(itr_bindings_set(&b, p, "V", 7, &d));
    CHECK(itr_init_params(p, 1, &b, &out, &d));
    const struct itr_tensor *t = itr_tensor_set_get(&out, "embed.table");
    CHECK(t && t->shape[0] == 7 && t->shape[1] == 6);
    itr_diags_free(&d);
    itr_tensor_set_free(&out);
    itr_bindings_free(&b);
    itr_program_free(p);
}

int main(void) {
    RUN(same_seed_same_bytes);
    RUN(different_seed_different_values);
    RUN(adding_a_param_changes_no_other);
    RUN(distributions);
    RUN(unbound_dim_is_an_error_naming_param_and_symbol);
    return test_summary();
}
