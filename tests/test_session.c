// The execution layer (backends/backend.h, runtime/session.h): the backend
// registry, sessions that run entries bit for bit as the reference
// interpreter called directly, training steps that update the session's
// parameter slots in place with the numbers of a direct run of the train
// graph, the errors of itr_exec_run kept word for word, and parameters
// saved and loaded by name.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/llvm/llvm_jit.h"
#include "backends/ref/ref.h"
#include "compiler/passes.h"
#include "compiler/pipeline.h"
#include "ir/text.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "runtime/safetensors.h"
#include "runtime/session.h"
#include "runtime/train.h"
#include "test.h"
#include "testutil.h"

static const char *const include_dirs[] = { ITR_SOURCE_DIR "/models" };

static const char *const MODEL =
    "import \"modules/nn.ir\"\n"
    "model m {\n"
    "  dim B = 4\n"
    "  let fc = linear(3, 2)\n"
    "  entry predict(x: f32[B, 3]) -> (y) { return fc(x) }\n"
    "  entry plain(x: f32[B, 3]) -> (y) { return x * x }\n"
    "  train(x: f32[B, 3], t: f32[B, 2]) -> (loss) {\n"
    "    e = fc(x) - t\n"
    "    return sum(e * e)\n"
    "  }\n"
    "  optimizer adam(lr=0.05)\n"
    "}\n";

static struct itr_program *compile_model(void) {
    struct itr_parse_options o;
    memset(&o, 0, sizeof o);
    o.include_dirs = include_dirs;
    o.n_include_dirs = 1;
    o.no_default_models_dir = true;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_string("t.ir", MODEL, strlen(MODEL), &o, &d);
    if (p && (!itr_compile_training_step(p, &d) || !itr_program_verify(p, &d))) {
        itr_program_free(p);
        p = NULL;
    }
    if (!p) {
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

// Fresh parameters (seed 7); with_state false drops the optimizer state.
static void init_params(const struct itr_program *p, bool with_state, struct itr_tensor_set *w) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_tensor_set all;
    itr_tensor_set_init(&all);
    CHECK(itr_init_params(p, 7, &b, &all, &d));
    itr_tensor_set_init(w);
    for (int k = 0; k < all.n; k++) {
        if (!with_state && strncmp(all.items[k].name, "opt.", 4) == 0) continue;
        itr_tensor_set_put(w, all.items[k].name, itr_tensor_clone(all.items[k].tensor));
    }
    itr_tensor_set_free(&all);
    itr_bindings_free(&b);
    itr_diags_free(&d);
}

static struct itr_tensor *filled(enum itr_dtype dt, int rank, const int64_t *shape, double scale) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    int64_t n = itr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) itr_tensor_set(t, i, scale * (double)((i * 7) % 11 - 5) / 3.0);
    return t;
}

static bool same_bits(const struct itr_tensor *a, const struct itr_tensor *b) {
    return a && b && a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->shape, b->shape, (size_t)a->rank * sizeof *a->shape) == 0 &&
           memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

// ------------------------------------------------------------ the registry

TEST(registry_finds_ref_and_names_the_others) {
    const struct itr_backend *be = itr_backend_find("ref", NULL);
    CHECK(be == &itr_backend_ref);
    CHECK(be && be->host_memory && strcmp(be->name, "ref") == 0);
    CHECK(itr_backend_count() >= 1 && itr_backend_at(0) != NULL);
    CHECK(strcmp(itr_backend_default_name(), "ref") == 0);
    char list[256];
    itr_backend_list(list, sizeof list);
    CHECK_STR_CONTAINS(list, "ref");

    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_backend_find("cuda9", &d) == NULL);
    CHECK(has_diag(&d, ITR_SEV_ERROR, "unknown backend 'cuda9'; available: ref"));
    itr_diags_free(&d);

    struct itr_program *p = compile_model();
    if (!p) return;
    itr_diags_init(&d);
    CHECK(itr_session_new(p, "nope", NULL, &d) == NULL);
    CHECK(has_diag(&d, ITR_SEV_ERROR, "unknown backend 'nope'; available: ref"));
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ runs

// An entry through a session and the same graph through itr_ref_run, with
// the same tensors: identical bits, in f32 and in f64.
TEST(run_matches_direct_ref_bit_for_bit) {
    struct itr_program *p = compile_model();
    if (!p) return;
    const struct itr_graph *g = itr_exec_find_entry(p, "predict", NULL);
    CHECK(g != NULL);
    struct itr_tensor_set w;
    init_params(p, true, &w);
    for (int f = 0; f < 2 && g; f++) {
        bool f64 = f == 1;
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_session_options so = { .f64 = f64, .threads = 2 };
        struct itr_session *s = itr_session_new(p, "ref", &so, &d);
        CHECK(s && itr_session_options(s)->threads == 2 && itr_session_backend(s) == &itr_backend_ref);
        if (!s) { itr_diags_free(&d); continue; }
        itr_session_load(s, &w, "w.safetensors", &d);
        struct itr_tensor_set in, out;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&out);
        itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 4, 3 }, 1.0));
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        CHECK(itr_session_run(s, "predict", &in, &b, &out, &d));
        itr_bindings_free(&b);

        // The direct call: parameters by id from the set, the input as given.
        struct itr_tensor **params = calloc((size_t)p->n_params, sizeof *params);
        for (int j = 0; j < p->n_params; j++) params[j] = itr_tensor_set_get(&w, p->params[j].name);
        struct itr_tensor *x = itr_tensor_set_get(&in, "x"), *y = NULL;
        struct itr_ref_options ro = { .f64 = f64 };
        itr_bindings_init(&b, p);
        CHECK(itr_ref_run(g, &x, params, &b, &ro, &y, &d));
        itr_bindings_free(&b);
        const struct itr_tensor *ys = itr_tensor_set_get(&out, "y");
        CHECK(ys && ys->dtype == (f64 ? ITR_F64 : ITR_F32) && ys->rank == 2 && ys->shape[0] == 4 && ys->shape[1] == 2);
        CHECK_MSG(same_bits(ys, y), "f64=%d: session and direct ref outputs differ", f64);
        // Not a vacuous equality: the output depends on the weights.
        CHECK(ys && fabs(itr_tensor_get(ys, 0)) > 0);

        // A second run reuses the prepared entry and gives the same bits.
        struct itr_tensor_set out2;
        itr_tensor_set_init(&out2);
        itr_bindings_init(&b, p);
        CHECK(itr_session_run(s, "predict", &in, &b, &out2, &d));
        itr_bindings_free(&b);
        CHECK(same_bits(itr_tensor_set_get(&out2, "y"), y));
        CHECK(!itr_diags_has_errors(&d));
        itr_tensor_set_free(&out2);
        itr_tensor_free(y);
        free(params);
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&out);
        itr_session_free(s);
        itr_diags_free(&d);
    }
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// The session reports what itr_exec_run reports, word for word.
TEST(errors_match_itr_exec_run) {
    struct itr_program *p = compile_model();
    if (!p) return;
    struct itr_tensor_set w;
    init_params(p, true, &w);
    // Four mistakes: no weights at all, a missing input, a wrong shape, a missing parameter.
    for (int c = 0; c < 4; c++) {
        struct itr_tensor_set in, weights, out1, out2;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&weights);
        itr_tensor_set_init(&out1);
        itr_tensor_set_init(&out2);
        if (c != 1) itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 4, c == 2 ? 5 : 3 }, 1.0));
        for (int k = 0; k < w.n; k++)
            if (c != 3 || strcmp(w.items[k].name, "fc.bias") != 0)
                itr_tensor_set_put(&weights, w.items[k].name, itr_tensor_clone(w.items[k].tensor));
        const struct itr_tensor_set *ws = c == 0 ? NULL : &weights;

        struct itr_diags d1, d2;
        itr_diags_init(&d1);
        itr_diags_init(&d2);
        struct itr_dim_bindings b1, b2;
        itr_bindings_init(&b1, p);
        itr_bindings_init(&b2, p);
        struct itr_exec_options eo = { .weights_what = "w.safetensors" };
        CHECK(!itr_exec_run(p, itr_exec_find_entry(p, "predict", NULL), &in, ws, &b1, &eo, &out1, &d1));
        struct itr_session *s = itr_session_new(p, NULL, NULL, &d2);
        if (ws) itr_session_load(s, ws, "w.safetensors", &d2);
        CHECK(!itr_session_run(s, "predict", &in, &b2, &out2, &d2));
        CHECK(out2.n == 0);
        CHECK_MSG(d1.n == d2.n && d1.n > 0, "case %d: %d messages direct, %d through the session", c, d1.n, d2.n);
        for (int i = 0; i < d1.n && i < d2.n; i++)
            CHECK_MSG(d1.items[i].sev == d2.items[i].sev && strcmp(d1.items[i].msg, d2.items[i].msg) == 0,
                      "case %d: '%s' vs '%s'", c, d1.items[i].msg, d2.items[i].msg);
        const char *expect[] = { "give them with --weights", "needs input 'x'", "input 'x'", "no tensor 'fc.bias'" };
        CHECK_MSG(has_diag(&d2, ITR_SEV_ERROR, expect[c]), "case %d: no error containing '%s'", c, expect[c]);
        itr_session_free(s);
        itr_bindings_free(&b1);
        itr_bindings_free(&b2);
        itr_diags_free(&d1);
        itr_diags_free(&d2);
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&weights);
        itr_tensor_set_free(&out1);
        itr_tensor_set_free(&out2);
    }
    // An entry without parameters needs no weights.
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session *s = itr_session_new(p, NULL, NULL, &d);
    struct itr_tensor_set in, out;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&out);
    itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 4, 3 }, 1.0));
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK(itr_session_run(s, "plain", &in, &b, &out, &d));
    const struct itr_tensor *y = itr_tensor_set_get(&out, "y");
    float x1 = (float)itr_tensor_get(itr_tensor_set_get(&in, "x"), 1);
    CHECK(y && x1 != 0 && itr_tensor_get(y, 1) == (double)(x1 * x1));
    CHECK(!itr_session_run(s, "nothere", &in, &b, &out, &d));
    CHECK(has_diag(&d, ITR_SEV_ERROR, "has no entry point 'nothere'"));
    itr_bindings_free(&b);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&out);
    itr_session_free(s);
    itr_diags_free(&d);
    itr_tensor_set_free(&w);
    itr_program_free(p);
}

// ------------------------------------------------------------ training

// The train graph run directly on the reference interpreter: what the step
// must produce. Returns the outputs (g->n_outputs of them, caller frees).
static struct itr_tensor **direct_step(const struct itr_program *p, const struct itr_tensor_set *state,
                                       struct itr_tensor *x, struct itr_tensor *t, double lr, int64_t step,
                                       uint64_t seed, bool f64) {
    const struct itr_graph *g = itr_program_train_graph(p);
    struct itr_tensor **in = calloc((size_t)g->n_inputs, sizeof *in);
    struct itr_tensor *owned[3] = { 0 };
    int no = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const char *nm = g->values[g->inputs[i]].name;
        if (!strcmp(nm, "x")) in[i] = x;
        else if (!strcmp(nm, "t")) in[i] = t;
        else {
            bool is_lr = !strcmp(nm, "lr");
            struct itr_tensor *s = itr_tensor_new(is_lr ? (f64 ? ITR_F64 : ITR_F32) : ITR_I64, 0, NULL);
            if (is_lr) itr_tensor_set(s, 0, lr);
            else ((int64_t *)s->data)[0] = !strcmp(nm, "step") ? step : (int64_t)itr_train_step_seed(seed, step);
            in[i] = owned[no++] = s;
        }
    }
    struct itr_tensor **params = calloc((size_t)p->n_params, sizeof *params);
    for (int j = 0; j < p->n_params; j++) params[j] = itr_tensor_set_get(state, p->params[j].name);
    struct itr_tensor **outs = calloc((size_t)g->n_outputs, sizeof *outs);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_ref_options ro = { .f64 = f64 };
    CHECK(itr_ref_run(g, in, params, &b, &ro, outs, &d));
    itr_bindings_free(&b);
    itr_diags_free(&d);
    for (int i = 0; i < no; i++) itr_tensor_free(owned[i]);
    free(params);
    free(in);
    return outs;
}

static int output_index(const struct itr_graph *g, const char *name) {
    for (int k = 0; k < g->n_outputs; k++)
        if (!strcmp(g->output_names[k], name)) return k;
    return -1;
}

// Two steps through a session: after each, every parameter and optimizer
// state slot holds exactly the train graph's new.* output (converted to the
// slot's dtype where f64 mode computes f32 parameters in f64), and the
// loss is the graph's.
TEST(train_step_updates_slots_in_place) {
    struct itr_program *p = compile_model();
    if (!p) return;
    const struct itr_graph *g = itr_program_train_graph(p);
    for (int f = 0; f < 2; f++) {
        bool f64 = f == 1;
        struct itr_tensor_set w, ref;
        init_params(p, true, &w);
        init_params(p, true, &ref);
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_session_options so = { .f64 = f64 };
        struct itr_session *s = itr_session_new(p, "ref", &so, &d);
        itr_session_adopt(s, &w, "w.safetensors", &d);
        CHECK(w.n == 0);   // every tensor was a parameter: all moved into the session
        int wid = itr_program_find_param(p, "fc.weight");
        CHECK(wid >= 0);

        struct itr_tensor *x = filled(ITR_F32, 2, (int64_t[]){ 4, 3 }, 1.0);
        struct itr_tensor *t = filled(ITR_F32, 2, (int64_t[]){ 4, 2 }, 0.5);
        struct itr_tensor_set in;
        itr_tensor_set_init(&in);
        itr_tensor_set_put(&in, "x", itr_tensor_clone(x));
        itr_tensor_set_put(&in, "t", itr_tensor_clone(t));
        for (int64_t step = 1; step <= 2; step++) {
            struct itr_tensor *before = itr_session_param(s, wid);
            struct itr_tensor *before_copy = itr_tensor_clone(before);
            struct itr_tensor **want = direct_step(p, &ref, x, t, 0.05, step, 3, f64);
            struct itr_train_options o = { .lr = 0.05, .step = step, .seed = 3 };
            struct itr_train_result r;
            struct itr_tensor_set metrics;
            itr_tensor_set_init(&metrics);
            struct itr_dim_bindings b;
            itr_bindings_init(&b, p);
            CHECK(itr_session_train_step(s, &in, &b, &o, &metrics, &r, &d));
            itr_bindings_free(&b);
            CHECK(r.loss == itr_tensor_get(want[0], 0) && r.loss > 0);
            CHECK(r.n_zero_state == 0);
            CHECK(metrics.n == 1 && itr_tensor_set_get(&metrics, "loss") != NULL);
            // The slot moved on: a new tensor with the step's values, the old one gone.
            struct itr_tensor *after = itr_session_param(s, wid);
            CHECK(after && after->dtype == ITR_F32);
            CHECK(!same_bits(after, before_copy));
            for (int i = 0; i < p->n_updates; i++) {
                const struct itr_state_update *u = &p->updates[i];
                int k = output_index(g, u->output);
                CHECK(k >= 0);
                if (k < 0) continue;
                struct itr_tensor *exp = itr_tensor_cast(want[k], ITR_F32);
                CHECK_MSG(same_bits(itr_session_param(s, u->param), exp), "f64=%d step %d: '%s' differs", f64,
                          (int)step, p->params[u->param].name);
                // The next reference step starts from these values.
                itr_tensor_set_put(&ref, p->params[u->param].name, exp);
            }
            for (int k = 0; k < g->n_outputs; k++) itr_tensor_free(want[k]);
            free(want);
            itr_tensor_free(before_copy);
            itr_tensor_set_free(&metrics);
        }
        // save gives views of the slots: the same memory, no copy.
        struct itr_tensor_set v;
        itr_tensor_set_init(&v);
        itr_session_save(s, &v);
        CHECK(v.n == p->n_params);
        const struct itr_tensor *vw = itr_tensor_set_get(&v, "fc.weight");
        CHECK(vw && vw->data == itr_session_param(s, wid)->data && !vw->owns_data);
        itr_tensor_set_free(&v);
        CHECK(!itr_diags_has_errors(&d));
        itr_tensor_free(x);
        itr_tensor_free(t);
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&w);
        itr_tensor_set_free(&ref);
        itr_session_free(s);
        itr_diags_free(&d);
    }
    itr_program_free(p);
}

// Optimizer state missing from the loaded set starts at zero, joins the
// session when the step succeeds, and stays out of it when the step fails.
TEST(train_step_zero_state_and_failure_leave_slots_consistent) {
    struct itr_program *p = compile_model();
    if (!p) return;
    struct itr_tensor_set w;
    init_params(p, false, &w);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session *s = itr_session_new(p, NULL, NULL, &d);
    itr_session_load(s, &w, "w.safetensors", &d);
    int mid = itr_program_find_param(p, "opt.m.fc.weight"), wid = itr_program_find_param(p, "fc.weight");
    CHECK(mid >= 0 && itr_session_param(s, mid) == NULL);
    struct itr_tensor_set in, metrics;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&metrics);
    // A failing step first: an input of the wrong shape.
    itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 4, 5 }, 1.0));
    itr_tensor_set_put(&in, "t", filled(ITR_F32, 2, (int64_t[]){ 4, 2 }, 0.5));
    struct itr_tensor *w0 = itr_session_param(s, wid);
    struct itr_train_options o = { .lr = 0.05, .step = 1, .seed = 3 };
    struct itr_train_result r;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK(!itr_session_train_step(s, &in, &b, &o, &metrics, &r, &d));
    itr_bindings_free(&b);
    CHECK(itr_session_param(s, mid) == NULL && itr_session_param(s, wid) == w0 && metrics.n == 0);
    // Then a good one.
    itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 4, 3 }, 1.0));
    itr_diags_free(&d);
    itr_diags_init(&d);
    itr_bindings_init(&b, p);
    CHECK(itr_session_train_step(s, &in, &b, &o, &metrics, &r, &d));
    itr_bindings_free(&b);
    CHECK(r.n_zero_state == 4);
    CHECK(has_diag(&d, ITR_SEV_NOTE, "4 optimizer-state tensors are missing"));
    const struct itr_tensor *m = itr_session_param(s, mid);
    CHECK(m && m->dtype == ITR_F32 && itr_tensor_numel(m) == itr_tensor_numel(itr_session_param(s, wid)));
    // Adam's first moment after one step is (1 - beta1) g: not zero.
    CHECK(m && itr_tensor_get(m, 0) != 0);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&metrics);
    itr_tensor_set_free(&w);
    itr_session_free(s);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ save and load

TEST(save_load_round_trip_by_name) {
    struct itr_program *p = compile_model();
    if (!p) return;
    struct itr_tensor_set w;
    init_params(p, true, &w);
    itr_tensor_set_put(&w, "not.a.param", filled(ITR_F32, 1, (int64_t[]){ 3 }, 1.0));
    itr_tensor_set_meta(&w, "itr.seed", "7");
    int n_all = w.n;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session *s = itr_session_new(p, NULL, NULL, &d);
    struct itr_tensor_set keep;
    itr_tensor_set_init(&keep);
    for (int k = 0; k < w.n; k++) itr_tensor_set_put(&keep, w.items[k].name, itr_tensor_clone(w.items[k].tensor));
    itr_session_adopt(s, &w, "w.safetensors", &d);
    CHECK(has_diag(&d, ITR_SEV_WARNING, "tensor 'not.a.param' is not a parameter of model 'm' (ignored)"));
    // adopt leaves what is not a parameter, and the metadata, in the set.
    CHECK(w.n == 1 && itr_tensor_set_get(&w, "not.a.param") != NULL);
    CHECK(itr_tensor_set_get_meta(&w, "itr.seed") && !strcmp(itr_tensor_set_get_meta(&w, "itr.seed"), "7"));
    CHECK(itr_session_has_weights(s) && !strcmp(itr_session_weights_what(s), "w.safetensors"));

    char path[] = "/tmp/itr_test_session_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    struct itr_tensor_set out;
    itr_tensor_set_init(&out);
    itr_session_save(s, &out);
    CHECK(out.n == p->n_params && out.n == n_all - 1);
    CHECK(itr_safetensors_write(path, &out, &d));
    itr_tensor_set_free(&out);

    struct itr_tensor_set back;
    CHECK(itr_safetensors_read(path, &back, &d));
    struct itr_session *s2 = itr_session_new(p, "ref", NULL, &d);
    itr_session_load(s2, &back, path, &d);
    CHECK(back.n == p->n_params);   // load copies: the set keeps its tensors
    for (int j = 0; j < p->n_params; j++) {
        const struct itr_tensor *orig = itr_tensor_set_get(&keep, p->params[j].name);
        CHECK_MSG(same_bits(itr_session_param(s2, j), orig), "'%s' changed in the round trip", p->params[j].name);
        CHECK(itr_session_param(s2, j) != itr_session_param(s, j));
    }
    CHECK(!itr_diags_has_errors(&d));
    unlink(path);
    itr_tensor_set_free(&back);
    itr_tensor_set_free(&keep);
    itr_tensor_set_free(&w);
    itr_session_free(s);
    itr_session_free(s2);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ numbered weights

// On the LLVM backend an inference run keeps packed copies of the weights
// its products read (itr_run_options.params_version, docs/performance.md
// "Prepacked products"). Every way the weights change must show in the next
// run: a new tensor in the slot, the slot's own tensor written and set
// again, a loaded set, a training step. Each run is held to the reference
// on the session's current weights; a stale copy would give the old
// weights' outputs, which differ from these by far more than the tolerance.
static const char *const WIDE =
    "import \"modules/nn.ir\"\n"
    "model m {\n"
    "  dim B = 40\n"
    "  let fc = linear(80, 72)\n"
    "  entry predict(x: f32[B, 80]) -> (y) { return fc(x) }\n"
    "  train(x: f32[B, 80], t: f32[B, 72]) -> (loss) {\n"
    "    e = fc(x) - t\n"
    "    return sum(e * e)\n"
    "  }\n"
    "  optimizer adam(lr=0.05)\n"
    "}\n";

// predict on the session against the reference on the session's weights.
static void predict_agrees(struct itr_session *s, const struct itr_program *p, const struct itr_tensor_set *in,
                           const char *when, struct itr_tensor **y_out) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set out;
    itr_tensor_set_init(&out);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK_MSG(itr_session_run(s, "predict", in, &b, &out, &d), "%s: predict fails", when);
    itr_bindings_free(&b);
    struct itr_tensor **params = calloc((size_t)p->n_params, sizeof *params);
    for (int j = 0; j < p->n_params; j++) params[j] = itr_session_param(s, j);
    struct itr_tensor *x = itr_tensor_set_get(in, "x"), *want = NULL;
    struct itr_ref_options ro = { .f64 = false };
    itr_bindings_init(&b, p);
    CHECK(itr_ref_run(itr_exec_find_entry(p, "predict", NULL), &x, params, &b, &ro, &want, &d));
    itr_bindings_free(&b);
    const struct itr_tensor *y = itr_tensor_set_get(&out, "y");
    double worst = y && want ? 0 : INFINITY;
    for (int64_t i = 0; y && want && i < itr_tensor_numel(y); i++) {
        double e = fabs(itr_tensor_get(y, i) - itr_tensor_get(want, i)) / (1e-5 * (1 + fabs(itr_tensor_get(want, i))));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    CHECK_MSG(worst <= 1.0, "%s: predict differs from the reference on the current weights (%.3g x tolerance)", when,
              worst);
    if (itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    CHECK(!itr_diags_has_errors(&d));
    if (y_out) *y_out = y ? itr_tensor_clone(y) : NULL;
    itr_tensor_free(want);
    free(params);
    itr_tensor_set_free(&out);
    itr_diags_free(&d);
}

TEST(llvm_inference_follows_every_weight_change) {
    if (!itr_llvm_available()) {
        printf("  (built without LLVM: nothing to check)\n");
        return;
    }
    struct itr_program *p = tu_compile_text("wide.ir", WIDE, "llvm", 0, NULL);
    struct kir_plan_kernels made = { 0 };
    struct itr_diags kd;
    itr_diags_init(&kd);
    CHECK(p && itr_compile_kernels(p, &made, &kd));
    itr_diags_free(&kd);
    if (!p) return;
    p->kernels = &made;
    struct itr_tensor_set w;
    init_params(p, true, &w);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_session_options so = { .threads = 2 };
    struct itr_session *s = itr_session_new(p, "llvm", &so, &d);
    CHECK(s != NULL);
    if (!s) {
        itr_diags_print(&d, stderr);
        itr_tensor_set_free(&w);
        p->kernels = NULL;
        kir_plan_kernels_free(&made);
        itr_program_free(p);
        return;
    }
    itr_session_load(s, &w, "w.safetensors", &d);
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "x", filled(ITR_F32, 2, (int64_t[]){ 40, 80 }, 1.0));
    struct itr_tensor_set tin;   // the training step's
    itr_tensor_set_init(&tin);
    itr_tensor_set_put(&tin, "x", filled(ITR_F32, 2, (int64_t[]){ 40, 80 }, 1.0));
    itr_tensor_set_put(&tin, "t", filled(ITR_F32, 2, (int64_t[]){ 40, 72 }, 0.5));
    int wid = itr_program_find_param(p, "fc.weight");
    CHECK(wid >= 0);
    struct itr_tensor *y0 = NULL, *y1 = NULL;
    predict_agrees(s, p, &in, "first run", &y0);
    predict_agrees(s, p, &in, "second run, same weights", NULL);

    // A new tensor in the slot.
    struct itr_tensor *w2 = itr_tensor_clone(itr_session_param(s, wid));
    for (int64_t i = 0; i < itr_tensor_numel(w2); i++) itr_tensor_set(w2, i, -2.0 * itr_tensor_get(w2, i));
    itr_session_set_param(s, wid, w2);
    predict_agrees(s, p, &in, "after a new weight tensor", &y1);
    CHECK(y0 && y1 && !same_bits(y0, y1));

    // The slot's own tensor written, then set again (an update in place).
    struct itr_tensor *own = itr_session_param(s, wid);
    for (int64_t i = 0; i < itr_tensor_numel(own); i++) itr_tensor_set(own, i, 0.25 * itr_tensor_get(own, i) + 0.01);
    itr_session_set_param(s, wid, own);
    predict_agrees(s, p, &in, "after the weight was written in place", NULL);

    // A loaded set (the first weights again).
    itr_session_load(s, &w, "w.safetensors", &d);
    predict_agrees(s, p, &in, "after loading the weights again", NULL);

    // A training step, which writes the weights where they are.
    struct itr_train_options o = { .lr = 0.05, .step = 1, .seed = 3 };
    struct itr_train_result r;
    struct itr_tensor_set metrics;
    itr_tensor_set_init(&metrics);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK(itr_session_train_step(s, &tin, &b, &o, &metrics, &r, &d));
    itr_bindings_free(&b);
    predict_agrees(s, p, &in, "after a training step", NULL);

    CHECK(!itr_diags_has_errors(&d));
    itr_tensor_free(y0);
    itr_tensor_free(y1);
    itr_tensor_set_free(&metrics);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&tin);
    itr_tensor_set_free(&w);
    itr_session_free(s);
    itr_diags_free(&d);
    p->kernels = NULL;
    kir_plan_kernels_free(&made);
    itr_program_free(p);
}

int main(void) {
    RUN(registry_finds_ref_and_names_the_others);
    RUN(run_matches_direct_ref_bit_for_bit);
    RUN(errors_match_itr_exec_run);
    RUN(train_step_updates_slots_in_place);
    RUN(train_step_zero_state_and_failure_leave_slots_consistent);
    RUN(save_load_round_trip_by_name);
    RUN(llvm_inference_follows_every_weight_change);
    return test_summary();
}
