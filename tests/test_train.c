// The compiled training step (compiler/train.c, runtime/train.c) and the
// language around it (train, optimizer, update, training, rng_seed,
// site_salt, shapeof, dropout, batchnorm's training path): small models
// from strings, optimizer steps against PyTorch's formulas written out by
// hand in double precision, and the error messages a user meets.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/autodiff.h"
#include "compiler/passes.h"
#include "ir/plan.h"
#include "ir/text.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "runtime/train.h"
#include "test.h"

static const char *const include_dirs[] = { ITR_SOURCE_DIR "/models" };

static struct itr_program *parse(const char *src, struct itr_diags *d) {
    struct itr_parse_options o;
    memset(&o, 0, sizeof o);
    o.include_dirs = include_dirs;
    o.n_include_dirs = 1;
    o.no_default_models_dir = true;
    itr_diags_init(d);
    return itr_parse_string("t.ir", src, strlen(src), &o, d);
}

// Parses and compiles the training step; NULL (diagnostics in d) on error.
static struct itr_program *compile(const char *src, struct itr_diags *d) {
    struct itr_program *p = parse(src, d);
    if (!p) return NULL;
    if (!itr_compile_training_step(p, d) || !itr_program_verify(p, d)) {
        itr_program_free(p);
        return NULL;
    }
    return p;
}

static struct itr_program *compile_ok(const char *src) {
    struct itr_diags d;
    struct itr_program *p = compile(src, &d);
    if (!p || itr_diags_has_errors(&d)) {
        char *s = itr_diags_summary(&d);
        FAIL_AT("compiling failed:\n%s", s);
        free(s);
    }
    itr_diags_free(&d);
    return p;
}

static bool has_diag(const struct itr_diags *d, enum itr_severity sev, const char *text) {
    for (int i = 0; i < d->n; i++)
        if (d->items[i].sev == sev && strstr(d->items[i].msg, text)) return true;
    return false;
}

#define CHECK_DIAG(d, sev, text)                                                            \
    do {                                                                                    \
        if (!has_diag((d), (sev), (text))) {                                                \
            char *s_ = itr_diags_summary(d);                                                \
            FAIL_AT("expected a diagnostic containing \"%s\"; got:\n%s", (text), s_);       \
            free(s_);                                                                       \
        }                                                                                   \
    } while (0)

// A parse (or compile) that must fail with a message containing text.
static void expect_error(const char *src, bool compile_step, const char *text) {
    struct itr_diags d;
    struct itr_program *p = compile_step ? compile(src, &d) : parse(src, &d);
    CHECK_MSG(!p, "expected an error containing \"%s\"", text);
    CHECK_DIAG(&d, ITR_SEV_ERROR, text);
    itr_program_free(p);
    itr_diags_free(&d);
}

static struct itr_tensor *vec(enum itr_dtype dt, int n, const double *v) {
    int64_t shape[1] = { n };
    struct itr_tensor *t = itr_tensor_new(dt, 1, shape);
    for (int i = 0; i < n; i++) itr_tensor_set(t, i, v[i]);
    return t;
}

static double get(const struct itr_tensor_set *s, const char *name, int64_t i) {
    const struct itr_tensor *t = itr_tensor_set_get(s, name);
    if (!t) { FAIL_AT("no tensor '%s'", name); return NAN; }
    return itr_tensor_get(t, i);
}

static int find_input(const struct itr_graph *g, const char *name) {
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->values[g->inputs[i]].name, name) == 0) return i;
    return -1;
}

static int find_output(const struct itr_graph *g, const char *name) {
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->output_names[i], name) == 0) return i;
    return -1;
}

// ------------------------------------------------------------ a one-parameter model

// loss = mean((x w - y)²), so dL/dw = mean(2 (x w - y) x).
static const double X[4] = { 1.0, -2.0, 0.5, 3.0 }, Y[4] = { 0.25, 1.0, -1.5, 2.0 };

static char *lin_model(const char *optimizer) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "model lin {\n"
             "  dim N = 4\n"
             "  param w: f32[1] = constant(0.5)\n"
             "  train(x: f32[N], y: f32[N]) -> (loss) {\n"
             "    e = x * w - y\n"
             "    return mean(e * e)\n"
             "  }\n"
             "  optimizer %s\n"
             "}\n", optimizer);
    return buf;
}

static double lin_grad(double w) {
    double g = 0;
    for (int i = 0; i < 4; i++) g += 2 * (X[i] * w - Y[i]) * X[i];
    return g / 4;
}

// One step in f64 on state (w and optimizer state as f64 tensors).
static bool lin_step(const struct itr_program *p, struct itr_tensor_set *state, double lr, int64_t step, double *loss) {
    struct itr_tensor_set in, metrics;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&metrics);
    itr_tensor_set_put(&in, "x", vec(ITR_F64, 4, X));
    itr_tensor_set_put(&in, "y", vec(ITR_F64, 4, Y));
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_train_options o = { .lr = lr, .step = step, .seed = 1, .f64 = true, .weights_what = "state" };
    struct itr_train_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    bool ok = itr_train_step(p, &in, state, &b, &o, &metrics, &r, &d);
    if (!ok) {
        char *s = itr_diags_summary(&d);
        FAIL_AT("training step failed:\n%s", s);
        free(s);
    }
    if (loss) *loss = r.loss;
    itr_diags_free(&d);
    itr_bindings_free(&b);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&metrics);
    return ok;
}

static void lin_state(struct itr_tensor_set *s, double w) {
    itr_tensor_set_init(s);
    itr_tensor_set_put(s, "w", vec(ITR_F64, 1, &w));
}

TEST(signature_after_transform) {
    struct itr_program *p = compile_ok(
        "import \"modules/nn.ir\"\n"
        "model m {\n"
        "  dim B = 4\n"
        "  let fc = linear(3, 2)\n"
        "  let bn = batchnorm(2)\n"
        "  entry predict(x: f32[B, 3]) -> (y) { return bn(fc(x)) }\n"
        "  train(x: f32[B, 3], t: f32[B, 2]) -> (loss, err) {\n"
        "    e = dropout(bn(fc(x)), p=0.1) - t\n"
        "    return sum(e * e), mean(abs(e))\n"
        "  }\n"
        "  optimizer adam(lr=1e-3, clip_grad_norm=2.0)\n"
        "}\n");
    if (!p) return;
    const struct itr_graph *g = itr_program_train_graph(p);
    CHECK(g && g->train && p->train_compiled);
    CHECK(strcmp(g->name, "train") == 0);
    const char *ins[] = { "x", "t", "lr", "step", "seed" };
    CHECK(g->n_inputs == 5);
    for (int i = 0; i < 5 && i < g->n_inputs; i++)
        CHECK_MSG(strcmp(g->values[g->inputs[i]].name, ins[i]) == 0, "input %d is '%s', expected '%s'", i,
                  g->values[g->inputs[i]].name, ins[i]);
    CHECK(g->values[g->inputs[2]].type.dtype == ITR_F32 && g->values[g->inputs[2]].type.rank == 0);
    CHECK(g->values[g->inputs[3]].type.dtype == ITR_I64 && g->values[g->inputs[4]].type.dtype == ITR_I64);
    const char *outs[] = { "loss", "err", "new.bn.running_mean", "new.bn.running_var", "new.fc.weight",
                           "new.opt.m.fc.weight", "new.opt.v.fc.weight", "new.fc.bias" };
    for (int i = 0; i < 8; i++)
        CHECK_MSG(i < g->n_outputs && strcmp(g->output_names[i], outs[i]) == 0, "output %d is '%s', expected '%s'", i,
                  i < g->n_outputs ? g->output_names[i] : "(none)", outs[i]);
    // 4 trained params: param + m + v each; 2 running statistics.
    CHECK(g->n_outputs == 2 + 2 + 4 * 3);
    CHECK(p->n_updates == 2 + 4 * 3);
    int kinds[ITR_UPDATE_KIND_COUNT] = { 0 };
    for (int i = 0; i < p->n_updates; i++) kinds[p->updates[i].kind]++;
    CHECK(kinds[ITR_UPDATE_STATE] == 2 && kinds[ITR_UPDATE_PARAM] == 4 && kinds[ITR_UPDATE_OPTIMIZER] == 8);
    int32_t m = itr_program_find_param(p, "opt.m.fc.weight");
    CHECK(m >= 0 && p->params[m].frozen && p->params[m].init.kind == ITR_INIT_ZEROS);
    CHECK(m >= 0 && itr_type_equal(&p->params[m].type, &p->params[itr_program_find_param(p, "fc.weight")].type));
    CHECK(itr_program_find_param(p, "opt.m.bn.running_mean") < 0);   // frozen: no optimizer state
    // Other entries are untouched.
    const struct itr_graph *pr = itr_program_find_graph(p, "predict");
    CHECK(pr && !pr->train && pr->n_inputs == 1 && pr->n_outputs == 1);
    for (int i = 0; pr && i < pr->n_nodes; i++) CHECK(pr->nodes[i].phase == ITR_PHASE_NONE);
    itr_program_free(p);
}

TEST(sgd_momentum_weight_decay_two_steps) {
    struct itr_program *p = compile_ok(lin_model("sgd(lr=0.1, momentum=0.9, weight_decay=0.01)"));
    if (!p) return;
    struct itr_tensor_set s;
    lin_state(&s, 0.5);
    double w = 0.5, buf = 0, lr = 0.05;
    for (int t = 1; t <= 2; t++) {
        double loss;
        if (!lin_step(p, &s, lr, t, &loss)) break;
        double g = lin_grad(w) + 0.01 * w;
        buf = 0.9 * buf + g;
        w = w - lr * buf;
        CHECK_NEAR(get(&s, "w", 0), w, 1e-12);
        CHECK_NEAR(get(&s, "opt.momentum.w", 0), buf, 1e-12);
    }
    itr_tensor_set_free(&s);
    itr_program_free(p);
}

TEST(sgd_plain_has_no_state) {
    struct itr_program *p = compile_ok(lin_model("sgd(lr=0.1)"));
    if (!p) return;
    CHECK(itr_program_find_param(p, "opt.momentum.w") < 0);
    struct itr_tensor_set s;
    lin_state(&s, 0.5);
    double loss;
    if (lin_step(p, &s, 0.1, 1, &loss)) {
        CHECK_NEAR(get(&s, "w", 0), 0.5 - 0.1 * lin_grad(0.5), 1e-12);
        double l = 0;
        for (int i = 0; i < 4; i++) l += (X[i] * 0.5 - Y[i]) * (X[i] * 0.5 - Y[i]);
        CHECK_NEAR(loss, l / 4, 1e-12);
    }
    CHECK(s.n == 1);
    itr_tensor_set_free(&s);
    itr_program_free(p);
}

static void adam_reference(bool decoupled, double wd, double *w, double *m, double *v, double lr, int t) {
    double g = lin_grad(*w);
    double p = *w;
    if (decoupled) p *= 1 - lr * wd;
    else g += wd * *w;
    *m = 0.9 * *m + 0.1 * g;
    *v = 0.999 * *v + 0.001 * g * g;
    double mh = *m / (1 - pow(0.9, t)), vh = *v / (1 - pow(0.999, t));
    *w = p - lr * mh / (sqrt(vh) + 1e-8);
}

static void check_adam(const char *opt, bool decoupled, double wd) {
    struct itr_program *p = compile_ok(lin_model(opt));
    if (!p) return;
    struct itr_tensor_set s;
    lin_state(&s, 0.5);
    double w = 0.5, m = 0, v = 0;
    for (int t = 1; t <= 3; t++) {
        double lr = t == 3 ? 0.02 : 0.01;   // an lr schedule is an input
        if (!lin_step(p, &s, lr, t, NULL)) break;
        adam_reference(decoupled, wd, &w, &m, &v, lr, t);
        CHECK_NEAR(get(&s, "w", 0), w, 1e-12);
        CHECK_NEAR(get(&s, "opt.m.w", 0), m, 1e-12);
        CHECK_NEAR(get(&s, "opt.v.w", 0), v, 1e-14);
    }
    itr_tensor_set_free(&s);
    itr_program_free(p);
}

TEST(adam_three_steps) { check_adam("adam(lr=1e-3)", false, 0); }
TEST(adam_l2_weight_decay) { check_adam("adam(lr=1e-3, weight_decay=0.1)", false, 0.1); }
TEST(adamw_decoupled_weight_decay) { check_adam("adamw(lr=1e-3, weight_decay=0.1)", true, 0.1); }
TEST(adamw_default_weight_decay) { check_adam("adamw(1e-3)", true, 1e-2); }

// Two parameters, loss = a·x + b·y: gradients x and y, norm sqrt(|x|² + |y|²).
static const char *clip_model =
    "model c {\n"
    "  param a: f32[2] = constant(1)\n"
    "  param b: f32[] = constant(2)\n"
    "  train(x: f32[2], y: f32[]) -> (loss) { return sum(a * x) + b * y }\n"
    "  optimizer sgd(lr=1, clip_grad_norm=%s)\n"
    "}\n";

static void clip_run(const char *clip, double *a0, double *a1, double *bb) {
    char src[512];
    snprintf(src, sizeof src, clip_model, clip);
    struct itr_program *p = compile_ok(src);
    if (!p) return;
    struct itr_tensor_set s, in, metrics;
    itr_tensor_set_init(&s);
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&metrics);
    double a[2] = { 1, 1 }, b = 2, x[2] = { 3, 4 }, y = 12;
    itr_tensor_set_put(&s, "a", vec(ITR_F64, 2, a));
    itr_tensor_set_put(&s, "b", itr_tensor_new(ITR_F64, 0, NULL));
    itr_tensor_set(itr_tensor_set_get(&s, "b"), 0, b);
    itr_tensor_set_put(&in, "x", vec(ITR_F64, 2, x));
    itr_tensor_set_put(&in, "y", itr_tensor_new(ITR_F64, 0, NULL));
    itr_tensor_set(itr_tensor_set_get(&in, "y"), 0, y);
    struct itr_dim_bindings bd;
    itr_bindings_init(&bd, p);
    struct itr_train_options o = { .lr = 1, .step = 1, .f64 = true };
    struct itr_train_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_train_step(p, &in, &s, &bd, &o, &metrics, &r, &d));
    *a0 = get(&s, "a", 0);
    *a1 = get(&s, "a", 1);
    *bb = get(&s, "b", 0);
    itr_diags_free(&d);
    itr_bindings_free(&bd);
    itr_tensor_set_free(&s);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&metrics);
    itr_program_free(p);
}

TEST(clip_grad_norm_scales_every_gradient) {
    double a0, a1, b;
    // ‖g‖ = sqrt(3² + 4² + 12²) = 13; coef = 2.6 / (13 + 1e-6).
    clip_run("2.6", &a0, &a1, &b);
    double coef = 2.6 / (13 + 1e-6);
    CHECK_NEAR(a0, 1 - 3 * coef, 1e-14);
    CHECK_NEAR(a1, 1 - 4 * coef, 1e-14);
    CHECK_NEAR(b, 2 - 12 * coef, 1e-14);
    // A bound above the norm leaves the gradients alone (min(coef, 1)).
    clip_run("100", &a0, &a1, &b);
    CHECK(a0 == 1 - 3.0 && a1 == 1 - 4.0 && b == 2 - 12.0);
    // clip_grad_norm = 0: no clipping at all.
    clip_run("0", &a0, &a1, &b);
    CHECK(a0 == -2.0 && a1 == -3.0 && b == -10.0);
}

TEST(non_scalar_loss_is_an_error) {
    expect_error("model m {\n"
                 "  param w: f32[3] = ones\n"
                 "  train(x: f32[3]) -> (loss) { return x * w }\n"
                 "  optimizer sgd(lr=0.1)\n"
                 "}\n", true, "the first output of the train entry, the loss 'loss', must be a float scalar (f32[] or "
                 "f64[]), but it is f32[3]");
    expect_error("model m {\n"
                 "  param w: f32[3] = ones\n"
                 "  train(x: i32[]) -> (loss) { return x }\n"
                 "  optimizer sgd(lr=0.1)\n"
                 "}\n", true, "but it is i32[]");
}

TEST(unreached_parameter_warns) {
    struct itr_diags d;
    struct itr_program *p = compile("model m {\n"
                                    "  param w: f32[2] = ones\n"
                                    "  param b: f32[2] = ones\n"
                                    "  train(x: f32[2]) -> (loss, shifted) { return sum(x * w), x + b }\n"
                                    "  optimizer adam(lr=0.1)\n"
                                    "}\n", &d);
    CHECK(p != NULL);
    CHECK(!itr_diags_has_errors(&d));
    CHECK_DIAG(&d, ITR_SEV_WARNING, "parameter 'b' does not influence the loss 'loss'");
    // The warning points at the parameter's declaration.
    bool located = false;
    for (int i = 0; i < d.n; i++) located |= d.items[i].sev == ITR_SEV_WARNING && d.items[i].loc.line == 3;
    CHECK(located);
    // No update and no state for it.
    CHECK(p && itr_program_find_param(p, "opt.m.b") < 0 && itr_program_find_param(p, "opt.m.w") >= 0);
    const struct itr_graph *g = p ? itr_program_train_graph(p) : NULL;
    CHECK(g && find_output(g, "new.b") < 0 && find_output(g, "new.w") >= 0);
    itr_program_free(p);
    itr_diags_free(&d);
}

// The test hook of compiler/autodiff.h: pretend tanh has no rule.
static itr_grad_rule without_tanh(enum itr_op op) { return op == ITR_OP_TANH ? NULL : itr_grad_rule_of(op); }

TEST(op_without_gradient_rule_names_op_and_location) {
    itr_grad_rule (*saved)(enum itr_op) = itr_vjp_rule_lookup;
    itr_vjp_rule_lookup = without_tanh;
    struct itr_diags d;
    struct itr_program *p = compile("model m {\n"
                                    "  param w: f32[2] = ones\n"
                                    "  train(x: f32[2]) -> (loss) {\n"
                                    "    return sum(tanh(x * w))\n"
                                    "  }\n"
                                    "  optimizer sgd(lr=0.1)\n"
                                    "}\n", &d);
    itr_vjp_rule_lookup = saved;
    CHECK(!p);
    CHECK_DIAG(&d, ITR_SEV_ERROR, "op 'tanh' has no gradient rule");
    bool located = false;
    for (int i = 0; i < d.n; i++)
        located |= d.items[i].sev == ITR_SEV_ERROR && d.items[i].loc.line == 4 && d.items[i].loc.col == 16;
    CHECK_MSG(located, "the error is not at 4:16 (the tanh call)");
    itr_program_free(p);
    itr_diags_free(&d);
}

// ------------------------------------------------------------ dropout

static const char *dropout_model =
    "import \"modules/nn.ir\"\n"
    "model m {\n"
    "  dim N = 10000\n"
    "  param w: f32[] = ones\n"
    "  entry infer(x: f32[N]) -> (y) { return dropout(x, p=0.5) }\n"
    "  train(x: f32[N]) -> (loss, y, z) {\n"
    "    y = dropout(x, p=0.5)\n"
    "    z = dropout(x, p=0.5)\n"
    "    return sum(y) * w, y, z\n"
    "  }\n"
    "  optimizer sgd(lr=0.1)\n"
    "}\n";

static bool run_graph(const struct itr_program *p, const char *entry, struct itr_tensor_set *in,
                      const struct itr_tensor_set *weights, struct itr_tensor_set *out) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    const struct itr_graph *g = itr_exec_find_entry(p, entry, &d);
    struct itr_exec_options o = { .f64 = false };
    bool ok = g && itr_exec_run(p, g, in, weights, &b, &o, out, &d);
    if (!ok) {
        char *s = itr_diags_summary(&d);
        FAIL_AT("running '%s' failed:\n%s", entry, s);
        free(s);
    }
    itr_bindings_free(&b);
    itr_diags_free(&d);
    return ok;
}

static struct itr_tensor *scalar_i64(int64_t v) {
    struct itr_tensor *t = itr_tensor_new(ITR_I64, 0, NULL);
    ((int64_t *)t->data)[0] = v;
    return t;
}

TEST(dropout_identity_outside_training_mean_preserving_inside) {
    struct itr_diags d;
    struct itr_program *p = parse(dropout_model, &d);   // not compiled: run the forward train graph
    CHECK(p != NULL);
    itr_diags_free(&d);
    if (!p) return;
    const struct itr_graph *g = itr_program_train_graph(p);
    CHECK(g && find_input(g, "seed") == 1);   // added by the first use of rng_seed
    double *ones = malloc(10000 * sizeof *ones);
    for (int i = 0; i < 10000; i++) ones[i] = 1.0;
    struct itr_tensor_set in, out, w;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    itr_tensor_set_init(&w);
    itr_tensor_set_put(&in, "x", vec(ITR_F32, 10000, ones));
    if (run_graph(p, "infer", &in, NULL, &out))
        for (int i = 0; i < 10000; i++)
            if (get(&out, "y", i) != 1.0) { FAIL_AT("eval dropout changed element %d", i); break; }
    itr_tensor_set_free(&out);
    itr_tensor_set_init(&out);
    itr_tensor_set_put(&in, "seed", scalar_i64(42));
    itr_tensor_set_put(&w, "w", itr_tensor_new(ITR_F32, 0, NULL));
    if (run_graph(p, "train", &in, &w, &out)) {
        double sum = 0;
        int zeros = 0, same = 0, bad = 0;
        for (int i = 0; i < 10000; i++) {
            double y = get(&out, "y", i), z = get(&out, "z", i);
            sum += y;
            zeros += y == 0;
            same += y == z;
            bad += y != 0 && y != 2;
        }
        CHECK(bad == 0);                              // kept elements are scaled by 1/(1-p)
        CHECK_NEAR(sum / 10000, 1.0, 0.05);           // mean preserved (±5 sigma)
        CHECK_NEAR(zeros / 10000.0, 0.5, 0.025);
        CHECK_MSG(same < 6000, "the two dropouts share their mask (%d of 10000 equal)", same);
        // The same seed draws the same mask.
        struct itr_tensor_set again;
        itr_tensor_set_init(&again);
        if (run_graph(p, "train", &in, &w, &again))
            CHECK(memcmp(itr_tensor_set_get(&again, "y")->data, itr_tensor_set_get(&out, "y")->data, 40000) == 0);
        itr_tensor_set_free(&again);
    }
    free(ones);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

TEST(step_seed_varies_with_step) {
    CHECK(itr_train_step_seed(1, 1) != itr_train_step_seed(1, 2));
    CHECK(itr_train_step_seed(1, 1) != itr_train_step_seed(2, 1));
    CHECK(itr_train_step_seed(7, 3) == itr_train_step_seed(7, 3));
    CHECK((int64_t)itr_train_step_seed(~0ull, 99) >= 0);
}

// ------------------------------------------------------------ batchnorm

TEST(batchnorm_training_uses_batch_stats_and_updates_running_stats) {
    struct itr_diags d;
    struct itr_program *p = parse("import \"modules/nn.ir\"\n"
                                  "model m {\n"
                                  "  let bn = batchnorm(2)\n"
                                  "  let bn3 = batchnorm(2)\n"
                                  "  let bnf = batchnorm(2)\n"
                                  "  entry infer(x: f32[5, 2]) -> (y) { return bn(x) }\n"
                                  "  train(x: f32[5, 2], x3: f32[1, 5, 2], xf: f32[1, 2, 5]) -> (loss, y, y3, yf) {\n"
                                  "    y = bn(x)\n"
                                  "    y3 = bn3(x3)\n"
                                  "    yf = bnf.channels_first(xf)\n"
                                  "    return sum(y * y), y, y3, yf\n"
                                  "  }\n"
                                  "  optimizer sgd(lr=0.1)\n"
                                  "}\n", &d);
    CHECK(p != NULL);
    itr_diags_free(&d);
    if (!p) return;
    const double x[10] = { 1, 10, 2, 20, 4, 0, 8, -5, 0, 5 };   // rows of [5, 2]
    double xf[10];
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 2; c++) xf[c * 5 + r] = x[r * 2 + c];
    struct itr_tensor_set in, out, w;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    itr_tensor_set_init(&w);
    int64_t s2[2] = { 5, 2 }, s3[3] = { 1, 5, 2 }, sf[3] = { 1, 2, 5 };
    struct itr_tensor *tx = itr_tensor_new(ITR_F64, 2, s2), *t3 = itr_tensor_new(ITR_F64, 3, s3),
                      *tf = itr_tensor_new(ITR_F64, 3, sf);
    for (int i = 0; i < 10; i++) {
        itr_tensor_set(tx, i, x[i]);
        itr_tensor_set(t3, i, x[i]);
        itr_tensor_set(tf, i, xf[i]);
    }
    itr_tensor_set_put(&in, "x", itr_tensor_cast(tx, ITR_F32));
    itr_tensor_set_put(&in, "x3", itr_tensor_cast(t3, ITR_F32));
    itr_tensor_set_put(&in, "xf", itr_tensor_cast(tf, ITR_F32));
    itr_tensor_free(tx);
    itr_tensor_free(t3);
    itr_tensor_free(tf);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_diags_init(&d);
    CHECK(itr_init_params(p, 0, &b, &w, &d));
    itr_diags_free(&d);
    itr_bindings_free(&b);
    const struct itr_graph *g = itr_program_train_graph(p);
    CHECK(g && find_output(g, "new.bn.running_mean") == 4 && find_output(g, "new.bn.running_var") == 5);
    if (run_graph(p, "train", &in, &w, &out)) {
        for (int c = 0; c < 2; c++) {
            double mu = 0, var = 0;
            for (int r = 0; r < 5; r++) mu += x[r * 2 + c] / 5;
            for (int r = 0; r < 5; r++) var += (x[r * 2 + c] - mu) * (x[r * 2 + c] - mu);
            double biased = var / 5, unbiased = var / 4;
            for (int r = 0; r < 5; r++) {
                double want = (x[r * 2 + c] - mu) / sqrt(biased + 1e-5);
                CHECK_NEAR(get(&out, "y", r * 2 + c), want, 1e-5);
                CHECK_NEAR(get(&out, "y3", r * 2 + c), want, 1e-5);
                CHECK_NEAR(get(&out, "yf", c * 5 + r), want, 1e-5);
            }
            const char *names[3][2] = { { "new.bn.running_mean", "new.bn.running_var" },
                                         { "new.bn3.running_mean", "new.bn3.running_var" },
                                         { "new.bnf.running_mean", "new.bnf.running_var" } };
            for (int k = 0; k < 3; k++) {
                CHECK_NEAR(get(&out, names[k][0], c), 0.1 * mu, 1e-5);
                CHECK_NEAR(get(&out, names[k][1], c), 0.9 * 1.0 + 0.1 * unbiased, 1e-4);
            }
        }
    }
    // Outside training the running statistics are used (here: 0 and 1).
    itr_tensor_set_free(&out);
    itr_tensor_set_init(&out);
    struct itr_tensor_set in1;
    itr_tensor_set_init(&in1);
    itr_tensor_set_put(&in1, "x", itr_tensor_clone(itr_tensor_set_get(&in, "x")));
    if (run_graph(p, "infer", &in1, &w, &out))
        for (int i = 0; i < 10; i++) CHECK_NEAR(get(&out, "y", i), x[i] / sqrt(1 + 1e-5), 1e-5);
    itr_tensor_set_free(&in1);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

TEST(updates_chain_and_later_reads_see_them) {
    // The same batchnorm used twice in one step updates its statistics twice,
    // the second time from the first update's result (as in PyTorch).
    struct itr_diags d;
    struct itr_program *p = parse("import \"modules/nn.ir\"\n"
                                  "model m {\n"
                                  "  let bn = batchnorm(1)\n"
                                  "  train(a: f32[2, 1], b: f32[2, 1]) -> (loss) {\n"
                                  "    return sum(bn(a) + bn(b))\n"
                                  "  }\n"
                                  "  optimizer sgd(lr=0.1)\n"
                                  "}\n", &d);
    CHECK(p != NULL);
    itr_diags_free(&d);
    if (!p) return;
    CHECK(p->n_updates == 2);
    struct itr_tensor_set in, out, w;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    itr_tensor_set_init(&w);
    int64_t sh[2] = { 2, 1 };
    struct itr_tensor *a = itr_tensor_new(ITR_F32, 2, sh), *bb = itr_tensor_new(ITR_F32, 2, sh);
    itr_tensor_set(a, 0, 1);
    itr_tensor_set(a, 1, 3);     // mean 2
    itr_tensor_set(bb, 0, 10);
    itr_tensor_set(bb, 1, 30);   // mean 20
    itr_tensor_set_put(&in, "a", a);
    itr_tensor_set_put(&in, "b", bb);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_diags_init(&d);
    CHECK(itr_init_params(p, 0, &b, &w, &d));
    itr_diags_free(&d);
    itr_bindings_free(&b);
    if (run_graph(p, "train", &in, &w, &out)) CHECK_NEAR(get(&out, "new.bn.running_mean", 0), 0.9 * 0.2 + 0.1 * 20, 1e-5);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// ------------------------------------------------------------ phases, passes, plans

static const char *bn_model =
    "import \"modules/nn.ir\"\n"
    "model m {\n"
    "  dim B = 4\n"
    "  let fc = linear(3, 2)\n"
    "  let bn = batchnorm(2)\n"
    "  train(x: f32[B, 3], t: f32[B, 2]) -> (loss, err) {\n"
    "    e = dropout(bn(fc(x)), p=0.1) - t\n"
    "    return sum(e * e), mean(abs(e))\n"
    "  }\n"
    "  optimizer adamw(lr=1e-3, clip_grad_norm=1.0)\n"
    "}\n";

static void count_phases(const struct itr_graph *g, int *c) {
    for (int i = 0; i < ITR_PHASE_COUNT; i++) c[i] = 0;
    for (int i = 0; i < g->n_nodes; i++) c[g->nodes[i].phase]++;
}

TEST(phases_are_counted_and_survive_simplification) {
    struct itr_diags d;
    struct itr_program *p = parse(bn_model, &d);
    itr_diags_free(&d);
    if (!p) { FAIL_AT("parse failed"); return; }
    int forward = itr_program_train_graph(p)->n_nodes;
    itr_diags_init(&d);
    CHECK(itr_compile_training_step(p, &d));
    CHECK(itr_compile_training_step(p, &d));   // a second call changes nothing
    const struct itr_graph *g = itr_program_train_graph(p);
    int c[ITR_PHASE_COUNT];
    count_phases(g, c);
    CHECK(c[ITR_PHASE_NONE] == 0);
    CHECK(c[ITR_PHASE_FORWARD] == forward);
    CHECK(c[ITR_PHASE_BACKWARD] > 0 && c[ITR_PHASE_OPTIMIZER] > 0);
    // Phases are contiguous: forward, then backward, then optimizer.
    for (int i = 1; i < g->n_nodes; i++) CHECK(g->nodes[i].phase >= g->nodes[i - 1].phase);
    int before = g->n_nodes;
    CHECK(itr_simplify(p, NULL, &d));
    CHECK(itr_program_verify(p, &d));
    g = itr_program_train_graph(p);
    CHECK(g->train && g->n_nodes < before);
    count_phases(g, c);
    CHECK(c[ITR_PHASE_NONE] == 0 && c[ITR_PHASE_FORWARD] > 0 && c[ITR_PHASE_BACKWARD] > 0 && c[ITR_PHASE_OPTIMIZER] > 0);
    CHECK(!itr_diags_has_errors(&d));
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(plan_round_trip_of_train_programs) {
    struct itr_program *p = compile_ok(bn_model);
    if (!p) return;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_simplify(p, NULL, &d));
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(itr_plan_pack(p, "ref", &buf, &len, &d));
    struct itr_plan_info info;
    struct itr_program *q = buf ? itr_plan_unpack(buf, len, "mem.plan", &info, &d) : NULL;
    CHECK(q != NULL);
    if (q) {
        char why[512];
        CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "%s", why);
        CHECK(q->train_compiled && q->optimizer.kind == ITR_OPT_ADAMW && q->optimizer.lr == 1e-3);
        CHECK(q->optimizer.weight_decay == 1e-2 && q->optimizer.clip_grad_norm == 1.0);
        CHECK(q->n_updates == p->n_updates);
        const struct itr_graph *g = itr_program_train_graph(q);
        CHECK(g && g->nodes[0].phase == ITR_PHASE_FORWARD && g->nodes[g->n_nodes - 1].phase == ITR_PHASE_OPTIMIZER);
    }
    if (!itr_diags_has_errors(&d) && q) {
        // The fingerprint covers the training parts: another lr, another plan.
        uint64_t h = itr_program_hash(q);
        q->optimizer.lr = 2e-3;
        CHECK(itr_program_hash(q) != h);
        q->optimizer.lr = 1e-3;
        itr_program_train_graph(q)->nodes[0].phase = ITR_PHASE_BACKWARD;
        CHECK(itr_program_hash(q) != h);
        char why[256];
        CHECK(!itr_program_equal(p, q, why, sizeof why));
        CHECK_STR_CONTAINS(why, "phase");
    }
    free(buf);
    itr_program_free(q);
    itr_program_free(p);
    itr_diags_free(&d);
}

TEST(plan_reader_rejects_inconsistent_training) {
    struct itr_program *p = compile_ok(lin_model("sgd(lr=0.1)"));
    if (!p) return;
    struct itr_diags d;
    itr_diags_init(&d);
    // An update naming an output the graph does not have.
    p->updates[0].output = "new.nothing";
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(itr_plan_pack(p, "ref", &buf, &len, &d));
    struct itr_program *q = buf ? itr_plan_unpack(buf, len, "bad.plan", NULL, &d) : NULL;
    CHECK(!q);
    CHECK_DIAG(&d, ITR_SEV_ERROR, "names output 'new.nothing'");
    free(buf);
    itr_program_free(q);
    itr_program_free(p);
    itr_diags_free(&d);
}

TEST(text_round_trip_of_train_programs) {
    struct itr_diags d;
    struct itr_program *p = parse(bn_model, &d);
    itr_diags_free(&d);
    if (!p) { FAIL_AT("parse failed"); return; }
    char *t1 = itr_print_program(p);
    CHECK_STR_CONTAINS(t1, "  train(x: f32[B, 3], t: f32[B, 2], seed: i64[]) -> (loss, err) {");
    CHECK_STR_CONTAINS(t1, "    update bn.running_mean = ");
    CHECK_STR_CONTAINS(t1, "  optimizer adamw(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01, "
                           "clip_grad_norm=1)");
    struct itr_program *q = parse(t1, &d);
    CHECK(q != NULL);
    if (q) {
        char why[512];
        CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "%s", why);
        char *t2 = itr_print_program(q);
        CHECK(strcmp(t1, t2) == 0);
        free(t2);
    } else {
        char *s = itr_diags_summary(&d);
        FAIL_AT("reparse failed:\n%s\n%s", s, t1);
        free(s);
    }
    free(t1);
    itr_program_free(q);
    itr_program_free(p);
    itr_diags_free(&d);
}

// ------------------------------------------------------------ the runtime step

TEST(step_errors_and_nan_loss) {
    struct itr_program *p = compile_ok(
        "model m {\n"
        "  param w: f32[2] = ones\n"
        "  train(x: f32[2]) -> (loss) { return sum(log(x * w)) }\n"
        "  optimizer adam(lr=0.1)\n"
        "}\n");
    if (!p) return;
    struct itr_tensor_set s, in, metrics;
    itr_tensor_set_init(&s);
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&metrics);
    double w[2] = { 1, 1 }, bad[2] = { -1, 2 }, good[2] = { 1, 2 };
    itr_tensor_set_put(&s, "w", vec(ITR_F32, 2, w));
    itr_tensor_set_put(&in, "x", vec(ITR_F32, 2, bad));
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_train_options o = { .lr = 0.1, .step = 4 };
    struct itr_train_result r;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!itr_train_step(p, &in, &s, &b, &o, &metrics, &r, &d));
    CHECK_DIAG(&d, ITR_SEV_ERROR, "step 4: the loss 'loss' is NaN; the parameters were not updated");
    CHECK(s.n == 1 && get(&s, "w", 0) == 1.0);   // state unchanged, no zeros added
    itr_diags_free(&d);
    itr_diags_init(&d);
    itr_tensor_set_put(&in, "x", vec(ITR_F32, 2, good));
    CHECK(itr_train_step(p, &in, &s, &b, &o, &metrics, &r, &d));
    CHECK(r.n_zero_state == 2);
    CHECK_DIAG(&d, ITR_SEV_NOTE, "2 optimizer-state tensors are missing");
    CHECK(s.n == 3 && get(&s, "w", 0) != 1.0 && itr_tensor_set_get(&s, "opt.v.w"));
    CHECK(itr_tensor_set_get(&metrics, "loss") && itr_tensor_set_get(&s, "w")->dtype == ITR_F32);
    itr_diags_free(&d);
    // lr, step and seed are not data.
    itr_diags_init(&d);
    itr_tensor_set_put(&in, "lr", vec(ITR_F32, 1, w));
    CHECK(!itr_train_step(p, &in, &s, &b, &o, &metrics, &r, &d));
    CHECK_DIAG(&d, ITR_SEV_ERROR, "input 'lr' of the train entry comes from the training step's options");
    itr_diags_free(&d);
    // A shape mismatch names the tensor and both shapes.
    itr_diags_init(&d);
    itr_tensor_set_free(&in);
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "x", vec(ITR_F32, 2, good));
    itr_tensor_set_put(&s, "opt.m.w", vec(ITR_F32, 1, w));
    CHECK(!itr_train_step(p, &in, &s, &b, &o, &metrics, &r, &d));
    CHECK_DIAG(&d, ITR_SEV_ERROR, "opt.m.w");
    itr_diags_free(&d);
    itr_bindings_free(&b);
    itr_tensor_set_free(&s);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&metrics);
    itr_program_free(p);

    // A plan without a train entry.
    itr_diags_init(&d);
    struct itr_program *e = parse("model e { entry f(x: f32[]) -> (y) { return x } }\n", &d);
    CHECK(e && !itr_train_entry(e, &d));
    CHECK_DIAG(&d, ITR_SEV_ERROR, "model 'e' has no train entry");
    itr_program_free(e);
    itr_diags_free(&d);
}

// ------------------------------------------------------------ language errors

TEST(train_and_optimizer_come_together) {
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n}\n", false,
                 "model 'm' has a train entry but no optimizer");
    expect_error("model m {\n  entry f(x: f32[]) -> (y) { return x }\n  optimizer sgd(lr=0.1)\n}\n", false,
                 "model 'm' declares an optimizer but has no train entry");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  train(x: f32[]) -> (loss) { return x }\n"
                 "  optimizer sgd(lr=0.1)\n}\n", false, "duplicate definition of 'train'");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer sgd(lr=0.1)\n"
                 "  optimizer adam(lr=0.1)\n}\n", false, "declares a second optimizer");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer rmsprop(lr=0.1)\n}\n", false,
                 "unknown optimizer 'rmsprop' (expected sgd, adam or adamw)");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer adam(beta1=0.5)\n}\n", false,
                 "optimizer 'adam' needs a learning rate");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer adam(lr=0.1, beta2=1.0)\n}\n",
                 false, "hyperparameter 'beta2' of optimizer 'adam' must be in [0, 1), got 1");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer sgd(lr=0.1, beta1=0.9)\n}\n",
                 false, "optimizer 'sgd' has no hyperparameter 'beta1'");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer sgd(lr=-1)\n}\n", false,
                 "must be non-negative, got -1");
    expect_error("module k {\n  train(x: f32[]) -> (loss) { return x }\n}\nmodel m { }\n", false,
                 "'train' is not allowed in a module");
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x }\n  optimizer sgd(lr=0.1)\n"
                 "  entry f(x: f32[]) -> (y) { return train(x) }\n}\n", false, "the train entry cannot be called");
    expect_error("model m {\n  param lr: f32[] = ones\n  train(lr: f32[]) -> (loss) { return lr }\n"
                 "  optimizer sgd(lr=0.1)\n}\n", true, "train input 'lr' has the name of an input that the training step adds");
}

static const char *module_with_state =
    "module counter {\n"
    "  frozen param seen: f32[2] = zeros\n"
    "  param scale: f32[2] = ones\n"
    "  def forward(x) {\n"
    "    %s\n"
    "    return x * scale\n"
    "  }\n"
    "}\n"
    "def helper(x) {\n"
    "  %s\n"
    "  return x\n"
    "}\n"
    "model m {\n"
    "  let c = counter()\n"
    "  entry f(x: f32[2]) -> (y) { return c(x) }\n"
    "  train(x: f32[2]) -> (loss) { return sum(helper(c(x))) }\n"
    "  optimizer sgd(lr=0.1)\n"
    "}\n";

static void state_error(const char *in_module, const char *in_helper, const char *text) {
    char src[2048];
    snprintf(src, sizeof src, module_with_state, in_module, in_helper);
    expect_error(src, false, text);
}

TEST(update_statement_errors) {
    state_error("update seen = x", "y = x",
                "update seen: state updates are only allowed in training (the train entry and the functions it calls)");
    state_error("if training { update scale = x }", "y = x",
                "update scale: 'c.scale' is a trainable parameter, which the optimizer updates");
    state_error("if training { update seen = sum(x) }", "y = x",
                "update seen: the value has type f32[], but parameter 'c.seen' is f32[2]");
    state_error("if training { update nothing = x }", "y = x", "update nothing: 'nothing' is not a parameter of module 'counter'");
    state_error("y = x", "if training { update seen = x }",
                "update seen: only methods of the module that declares a parameter can update it");
    state_error("y = rng_seed", "y = x", "rng_seed is only available in the train entry");
    // In training, with the right type: fine, and the update is an output.
    char src[2048];
    snprintf(src, sizeof src, module_with_state, "if training { update seen = seen + x }", "y = x");
    struct itr_diags d;
    struct itr_program *p = parse(src, &d);
    CHECK(p && p->n_updates == 1 && p->updates[0].kind == ITR_UPDATE_STATE);
    CHECK(p && strcmp(p->updates[0].output, "new.c.seen") == 0);
    itr_program_free(p);
    itr_diags_free(&d);
    expect_error("module k(n: int) {\n  if training { param a: f32[n] = zeros }\n  def forward(x) { return x }\n}\n"
                 "model m {\n  let z = k(2)\n}\n", false, "'training' is only defined inside functions and entries");
    expect_error("model m {\n  param seed: f32[] = ones\n  train(x: f32[]) -> (loss) {\n"
                 "    return sum(random_uniform(rng_seed, shape=[2])) + x * seed\n  }\n  optimizer sgd(lr=0.1)\n}\n",
                 false, "rng_seed needs the train input 'seed', but 'seed' already names a parameter");
    expect_error("model m {\n  train(x: f32[], seed: f32[]) -> (loss) {\n"
                 "    return sum(random_uniform(rng_seed, shape=[2])) + x\n  }\n  optimizer sgd(lr=0.1)\n}\n", false,
                 "rng_seed refers to the train input 'seed', which must be i64[], but it is declared f32[]");
    expect_error("model m {\n  train(x: f32[]) -> (loss, new.x) { return x, x }\n  optimizer sgd(lr=0.1)\n}\n", true,
                 "names starting with 'new.' are reserved");
}

TEST(builtins_shapeof_rankof_site_salt) {
    struct itr_diags d;
    struct itr_program *p = parse(
        "def noise(x) { return random_uniform(rng_seed, shape=shapeof(x), salt=site_salt()) }\n"
        "model m {\n"
        "  dim B\n"
        "  train(x: f32[B, 3]) -> (loss, a, b) {\n"
        "    a = noise(x)\n"
        "    b = noise(x)\n"
        "    r = rankof(x)\n"
        "    if r == 2 { s = sum(a) } else { s = sum(b) }\n"
        "    return s, a, b\n"
        "  }\n"
        "  optimizer sgd(lr=0.1)\n"
        "}\n", &d);
    CHECK(p != NULL);
    if (p) {
        const struct itr_graph *g = itr_program_train_graph(p);
        int64_t salts[2];
        int n = 0;
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].op == ITR_OP_RANDOM_UNIFORM && n < 2) {
                salts[n++] = itr_node_attr_int(&g->nodes[i], "salt");
                const struct itr_type *t = &g->values[g->nodes[i].outputs[0]].type;
                CHECK(t->rank == 2 && itr_type_equal(t, &g->values[g->inputs[0]].type));
            }
        CHECK(n == 2 && salts[0] != salts[1]);   // one function, two call sites
        // The salt does not depend on the folder the file was read from.
        struct itr_parse_options o;
        memset(&o, 0, sizeof o);
        const char *src = "def noise(x) { return random_uniform(rng_seed, shape=shapeof(x), salt=site_salt()) }\n"
                          "model m {\n  dim B\n  train(x: f32[B, 3]) -> (loss) { return sum(noise(x)) }\n"
                          "  optimizer sgd(lr=0.1)\n}\n";
        struct itr_diags d2;
        itr_diags_init(&d2);
        struct itr_program *q1 = itr_parse_string("one/t.ir", src, strlen(src), &o, &d2);
        struct itr_program *q2 = itr_parse_string("/two/three/t.ir", src, strlen(src), &o, &d2);
        char why[256];
        CHECK(q1 && q2 && itr_program_equal(q1, q2, why, sizeof why));
        itr_program_free(q1);
        itr_program_free(q2);
        itr_diags_free(&d2);
    }
    itr_program_free(p);
    itr_diags_free(&d);
    expect_error("model m {\n  train(x: f32[]) -> (loss) { return x * site_salt(1) }\n  optimizer sgd(lr=0.1)\n}\n",
                 false, "site_salt takes no arguments");
    expect_error("model m {\n  entry f(x: f32[2]) -> (y) { return reshape(x, shape=shapeof(3)) }\n}\n", false,
                 "shapeof needs a tensor");
}

int main(void) {
    RUN(signature_after_transform);
    RUN(sgd_momentum_weight_decay_two_steps);
    RUN(sgd_plain_has_no_state);
    RUN(adam_three_steps);
    RUN(adam_l2_weight_decay);
    RUN(adamw_decoupled_weight_decay);
    RUN(adamw_default_weight_decay);
    RUN(clip_grad_norm_scales_every_gradient);
    RUN(non_scalar_loss_is_an_error);
    RUN(unreached_parameter_warns);
    RUN(op_without_gradient_rule_names_op_and_location);
    RUN(dropout_identity_outside_training_mean_preserving_inside);
    RUN(step_seed_varies_with_step);
    RUN(batchnorm_training_uses_batch_stats_and_updates_running_stats);
    RUN(updates_chain_and_later_reads_see_them);
    RUN(phases_are_counted_and_survive_simplification);
    RUN(plan_round_trip_of_train_programs);
    RUN(plan_reader_rejects_inconsistent_training);
    RUN(text_round_trip_of_train_programs);
    RUN(step_errors_and_nan_loss);
    RUN(train_and_optimizer_come_together);
    RUN(update_statement_errors);
    RUN(builtins_shapeof_rankof_site_salt);
    return test_summary();
}
