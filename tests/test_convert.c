// Checkpoint maps and conversion (runtime/ckpt_convert.h): the map format,
// rule matching (exact, prefix, {k}), weight_norm folding against
// hand-computed values, transpose/reshape/f64 rounding, shape and dim checks,
// the errors for what is missing or wrong, and the zoo's own maps parsing.
// The end-to-end path (reader, itr-convert, scoring through itr-run against
// reference weights and PyTorch) is tests/cli/convert.sh.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/pipeline.h"
#include "runtime/ckpt_convert.h"
#include "test.h"

// fc: [2, 3]; emb: [V, 4]; l0, l1: linear(2, 2) with bias; a train entry, so
// the program also has optimizer state that is not a weight.
static const char model_src[] =
    "model m {\n"
    "  dim B, V\n"
    "  param fc.weight: f32[2, 3] = zeros\n"
    "  param fc.bias: f32[2] = zeros\n"
    "  param emb.weight: f32[V, 4] = zeros\n"
    "  param l0.weight: f32[2, 2] = zeros\n"
    "  param l0.bias: f32[2] = zeros\n"
    "  param l1.weight: f32[2, 2] = zeros\n"
    "  param l1.bias: f32[2] = zeros\n"
    "  entry f(x: f32[B, 3]) -> (y) {\n"
    "    h = x @ transpose(fc.weight) + fc.bias\n"
    "    return (h @ transpose(l0.weight) + l0.bias) @ transpose(l1.weight) + l1.bias + sum(emb.weight)\n"
    "  }\n"
    "  train(x: f32[B, 3]) -> (loss) {\n"
    "    return sum(x @ transpose(fc.weight) + fc.bias)\n"
    "  }\n"
    "  optimizer adam(lr=0.001)\n"
    "}\n";

static struct itr_program *compile_model(void) {
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    co.opt_level = 0;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_source("m.ir", model_src, strlen(model_src), &co, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

static struct itr_tensor *tensor(enum itr_dtype dt, int rank, const int64_t *shape, const double *v) {
    struct itr_tensor *t = itr_tensor_new(dt, rank, shape);
    for (int64_t i = 0; i < itr_tensor_numel(t); i++) itr_tensor_set(t, i, v ? v[i] : (double)i + 1);
    return t;
}

static void put(struct itr_tensor_set *s, const char *name, int rank, const int64_t *shape, const double *v) {
    itr_tensor_set_put(s, name, tensor(ITR_F32, rank, shape, v));
}

static bool parse(const char *text, struct itr_ckpt_map *m, struct itr_diags *d) {
    return itr_ckpt_map_parse("t.ckpt-map", text, strlen(text), m, d);
}

static char *errors_of(const char *text) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ckpt_map m;
    bool ok = parse(text, &m, &d);
    CHECK(!ok);
    CHECK(m.n == 0);
    char *s = itr_diags_summary(&d);
    itr_diags_free(&d);
    return s;
}

TEST(map_parses_rules_and_options) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ckpt_map m;
    CHECK(parse("# comment\n\n  a.w   0.fc.weight   transpose # trailing\nl{k}.  2.layers.{k}.\nb 1.x reshape\n", &m,
                &d));
    CHECK(m.n == 3);
    if (m.n == 3) {
        CHECK(!strcmp(m.rules[0].ours, "a.w") && !strcmp(m.rules[0].theirs, "0.fc.weight"));
        CHECK(m.rules[0].flags == ITR_CKPT_TRANSPOSE && !m.rules[0].prefix && m.rules[0].line == 3);
        CHECK(m.rules[1].prefix && m.rules[1].flags == 0 && m.rules[1].line == 4);
        CHECK(m.rules[2].flags == ITR_CKPT_RESHAPE);
    }
    itr_ckpt_map_free(&m);
    itr_diags_free(&d);
}

TEST(map_errors_name_the_line) {
    char *s = errors_of("a 0.a\nlonely\n");
    CHECK_STR_CONTAINS(s, "2:1: expected 'OURS THEIRS [transpose] [reshape]'");
    free(s);
    s = errors_of("a 0.a flip\n");
    CHECK_STR_CONTAINS(s, "1:7: unknown option 'flip' (known: transpose, reshape)");
    free(s);
    s = errors_of("a. 0.a\n");
    CHECK_STR_CONTAINS(s, "a prefix rule ends both names with '.'");
    free(s);
    s = errors_of("l{k}.w 2.{j}.w\n");
    CHECK_STR_CONTAINS(s, "'{j}' in '2.{j}.w' does not occur in 'l{k}.w'");
    free(s);
    s = errors_of("l{.w 2.w\n");
    CHECK_STR_CONTAINS(s, "a malformed placeholder");
    free(s);
    s = errors_of("a 0.a\nb 0.b\na 0.c\n");
    CHECK_STR_CONTAINS(s, "3:1: a second rule for 'a' (the first is on line 1)");
    free(s);
    s = errors_of("# only a comment\n");
    CHECK_STR_CONTAINS(s, "the checkpoint map has no rules");
    free(s);
    s = errors_of("a. 0.a. transpose\n");
    CHECK_STR_CONTAINS(s, "not to a prefix rule");
    free(s);
}

TEST(weight_norm_folds_as_pytorch) {
    struct itr_diags d;
    itr_diags_init(&d);
    int64_t s22[2] = { 2, 2 }, s21[2] = { 2, 1 }, s12[2] = { 1, 2 };
    double v[4] = { 3, 4, 6, 8 };
    struct itr_tensor *tv = tensor(ITR_F32, 2, s22, v);
    // dim=None: g is a scalar, one norm over everything (sqrt(125))
    double g0 = 2;
    struct itr_tensor *g = tensor(ITR_F32, 0, NULL, &g0);
    struct itr_tensor *w = itr_ckpt_fold_weight_norm(g, tv, "fc.weight", &d);
    CHECK(w && w->dtype == ITR_F32 && w->rank == 2);
    for (int i = 0; w && i < 4; i++) CHECK_NEAR(itr_tensor_get(w, i), 2 * v[i] / sqrt(125.0), 1e-7);
    itr_tensor_free(g), itr_tensor_free(w);
    // dim=0: one norm per row (5 and 10)
    double g1[2] = { 1, 10 };
    g = tensor(ITR_F32, 2, s21, g1);
    w = itr_ckpt_fold_weight_norm(g, tv, "fc.weight", &d);
    double want1[4] = { 0.6, 0.8, 6, 8 };
    for (int i = 0; w && i < 4; i++) CHECK_NEAR(itr_tensor_get(w, i), want1[i], 1e-6);
    itr_tensor_free(g), itr_tensor_free(w);
    // dim=1: one norm per column (sqrt(45), sqrt(80))
    double g2[2] = { 2, 3 };
    g = tensor(ITR_F32, 2, s12, g2);
    w = itr_ckpt_fold_weight_norm(g, tv, "fc.weight", &d);
    double want2[4] = { 2 * 3 / sqrt(45.0), 3 * 4 / sqrt(80.0), 2 * 6 / sqrt(45.0), 3 * 8 / sqrt(80.0) };
    for (int i = 0; w && i < 4; i++) CHECK_NEAR(itr_tensor_get(w, i), want2[i], 1e-6);
    itr_tensor_free(g), itr_tensor_free(w);
    CHECK(d.n_errors == 0);
    // a g that fits no dim of v
    int64_t s3[1] = { 3 };
    g = tensor(ITR_F32, 1, s3, NULL);
    CHECK(!itr_ckpt_fold_weight_norm(g, tv, "fc.weight", &d));
    char *s = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(s, "checkpoint tensors 'fc.weight_g' [3] and 'fc.weight_v' [2, 2] are no weight_norm pair");
    free(s);
    itr_tensor_free(g), itr_tensor_free(tv);
    itr_diags_free(&d);
}

// The checkpoint of the happy path: every kind of rule, a weight_norm pair,
// an f64 tensor and one tensor nothing uses.
static void good_checkpoint(struct itr_tensor_set *ck) {
    int64_t s32[2] = { 3, 2 }, s2[1] = { 2 }, s74[2] = { 7, 4 }, s21[2] = { 2, 1 }, s22[2] = { 2, 2 }, s1[1] = { 1 };
    itr_tensor_set_init(ck);
    put(ck, "0.fc.weight_t", 2, s32, NULL);            // stored transposed: [[1,2],[3,4],[5,6]]
    put(ck, "0.fc.bias", 1, s2, NULL);
    put(ck, "1.embed.weight", 2, s74, NULL);           // binds V = 7
    double g[2] = { 1, 10 }, v[4] = { 3, 4, 6, 8 };
    put(ck, "2.layers.0.weight_g", 2, s21, g);
    put(ck, "2.layers.0.weight_v", 2, s22, v);
    put(ck, "2.layers.0.bias", 1, s2, NULL);
    double l1[4] = { 0.1, 0.2, 0.3, 1.0 / 3.0 };
    itr_tensor_set_put(ck, "2.layers.1.weight", tensor(ITR_F64, 2, s22, l1));
    put(ck, "2.layers.1.bias", 1, s2, NULL);
    put(ck, "3.unused", 1, s1, NULL);
}

static const char good_map[] =
    "fc.weight   0.fc.weight_t transpose\n"
    "fc.bias     0.fc.bias\n"
    "emb.weight  1.embed.weight\n"
    "l{k}.       2.layers.{k}.\n"
    "l1.bias     2.layers.1.bias   # exact beats prefix\n"
    "nothing.here 9.absent\n";

static bool convert(const char *map_text, const struct itr_tensor_set *ck, struct itr_tensor_set *out,
                    struct itr_ckpt_report *rep, char **errors) {
    struct itr_program *p = compile_model();
    CHECK(p != NULL);
    if (!p) return false;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ckpt_map m;
    bool ok = parse(map_text, &m, &d);
    CHECK(ok);
    itr_tensor_set_init(out);
    ok = ok && itr_ckpt_convert(p, &m, ck, out, rep, &d);
    *errors = itr_diags_summary(&d);
    itr_ckpt_map_free(&m);
    itr_diags_free(&d);
    itr_program_free(p);
    return ok;
}

static bool has_line(char **lines, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(lines[i], s)) return true;
    return false;
}

TEST(converts_every_kind_of_rule) {
    struct itr_program *p = compile_model();
    CHECK(p && p->n_params > 7);   // the optimizer's moments are there too
    int weights = 0;
    for (int j = 0; p && j < p->n_params; j++) weights += itr_ckpt_is_weight(p, j);
    CHECK(weights == 7);
    itr_program_free(p);

    struct itr_tensor_set ck, out;
    struct itr_ckpt_report rep;
    char *err;
    good_checkpoint(&ck);
    bool ok = convert(good_map, &ck, &out, &rep, &err);
    CHECK_MSG(ok, "conversion failed: %s", err);
    CHECK(out.n == 7 && rep.n_params == 7);
    struct itr_tensor *t = itr_tensor_set_get(&out, "fc.weight");
    double fcw[6] = { 1, 3, 5, 2, 4, 6 };   // the transpose of [[1,2],[3,4],[5,6]]
    CHECK(t && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    for (int i = 0; t && i < 6; i++) CHECK_NEAR(itr_tensor_get(t, i), fcw[i], 0);
    t = itr_tensor_set_get(&out, "l0.weight");
    double l0[4] = { 0.6, 0.8, 6, 8 };
    for (int i = 0; t && i < 4; i++) CHECK_NEAR(itr_tensor_get(t, i), l0[i], 1e-6);
    t = itr_tensor_set_get(&out, "l1.weight");
    CHECK(t && t->dtype == ITR_F32);
    if (t) CHECK(((float *)t->data)[3] == (float)(1.0 / 3.0));
    t = itr_tensor_set_get(&out, "emb.weight");
    CHECK(t && t->shape[0] == 7 && itr_tensor_get(t, 27) == 28);
    CHECK(has_line(rep.lines, rep.n_lines, "fc.weight <- 0.fc.weight_t (transposed)"));
    CHECK(has_line(rep.lines, rep.n_lines,
                   "l0.weight <- 2.layers.0.weight_g, 2.layers.0.weight_v (weight_norm folded)"));
    CHECK(has_line(rep.lines, rep.n_lines, "l1.weight <- 2.layers.1.weight (f64 rounded to f32)"));
    CHECK(has_line(rep.lines, rep.n_lines, "l1.bias <- 2.layers.1.bias"));
    CHECK(has_line(rep.lines, rep.n_lines, "emb.weight <- 1.embed.weight"));
    CHECK(rep.n_ignored == 1 && has_line(rep.ignored, rep.n_ignored, "3.unused f32 [1]"));
    itr_ckpt_report_free(&rep);
    itr_tensor_set_free(&out);
    itr_tensor_set_free(&ck);
    free(err);
}

TEST(reports_every_problem) {
    struct itr_tensor_set ck, out;
    struct itr_ckpt_report rep;
    char *err;
    good_checkpoint(&ck);
    int64_t s23[2] = { 2, 3 }, s34[2] = { 3, 4 }, s2[1] = { 2 };
    put(&ck, "0.fc.weight_t", 2, s23, NULL);   // transposed to [3, 2]: wrong
    put(&ck, "1.embed.weight", 2, s34, NULL);  // fine alone (V = 3)
    itr_tensor_set_put(&ck, "2.layers.0.bias", tensor(ITR_I32, 1, s2, NULL));
    bool ok = convert("fc.weight 0.fc.weight_t transpose\nfc.bias 0.fc.nope\nemb.weight 1.embed.weight\n"
                      "l{k}. 2.layers.{k}.\n", &ck, &out, &rep, &err);
    CHECK(!ok);
    CHECK(out.n == 0);
    CHECK_STR_CONTAINS(err, "parameter 'fc.bias': the checkpoint has no tensor '0.fc.nope' (t.ckpt-map line 2)");
    CHECK_STR_CONTAINS(err, "parameter 'fc.weight' (checkpoint tensor '0.fc.weight_t')");
    CHECK_STR_CONTAINS(err, "[3, 2]");
    CHECK_STR_CONTAINS(err, "parameter 'l0.bias' (checkpoint tensor '2.layers.0.bias')");
    CHECK_STR_CONTAINS(err, "i32");
    itr_ckpt_report_free(&rep);
    free(err);

    // a parameter no rule maps
    ok = convert("fc. 0.fc.\n", &ck, &out, &rep, &err);
    CHECK(!ok);
    CHECK_STR_CONTAINS(err, "parameter 'emb.weight': no rule of t.ckpt-map maps it");
    itr_ckpt_report_free(&rep);
    free(err);
    itr_tensor_set_free(&ck);
}

TEST(reshape_takes_the_parameters_shape) {
    struct itr_tensor_set ck, out;
    struct itr_ckpt_report rep;
    char *err;
    good_checkpoint(&ck);
    int64_t s4[1] = { 4 }, s5[1] = { 5 };
    put(&ck, "flat", 1, s4, NULL);
    bool ok = convert("l1.weight flat reshape\nfc.weight 0.fc.weight_t transpose\nfc.bias 0.fc.bias\n"
                      "emb.weight 1.embed.weight\nl{k}. 2.layers.{k}.\n", &ck, &out, &rep, &err);
    CHECK_MSG(ok, "%s", err);
    struct itr_tensor *t = itr_tensor_set_get(&out, "l1.weight");
    CHECK(t && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 2 && itr_tensor_get(t, 3) == 4);
    itr_ckpt_report_free(&rep);
    itr_tensor_set_free(&out);
    free(err);
    put(&ck, "flat", 1, s5, NULL);
    ok = convert("l1.weight flat reshape\nfc.weight 0.fc.weight_t transpose\nfc.bias 0.fc.bias\n"
                 "emb.weight 1.embed.weight\nl{k}. 2.layers.{k}.\n", &ck, &out, &rep, &err);
    CHECK(!ok);
    CHECK_STR_CONTAINS(err, "[5] has 5 values, the parameter's shape [2, 2] needs 4");
    itr_ckpt_report_free(&rep);
    free(err);
    itr_tensor_set_free(&ck);
}

// Every map in models/ parses, and each sits next to a model file.
TEST(zoo_maps_parse) {
    DIR *dir = opendir(ITR_SOURCE_DIR "/models");
    CHECK(dir != NULL);
    int n = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 10 || strcmp(e->d_name + len - 9, ".ckpt-map")) continue;
        char path[1024], model[1024];
        snprintf(path, sizeof path, "%s/models/%s", ITR_SOURCE_DIR, e->d_name);
        snprintf(model, sizeof model, "%s/models/%.*s.ir", ITR_SOURCE_DIR, (int)(len - 9), e->d_name);
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_ckpt_map m;
        bool ok = itr_ckpt_map_read(path, &m, &d);
        CHECK_MSG(ok, "%s does not parse", path);
        if (!ok) itr_diags_print(&d, stderr);
        FILE *f = fopen(model, "r");
        CHECK_MSG(f != NULL, "%s has no model %s", path, model);
        if (f) fclose(f);
        itr_ckpt_map_free(&m);
        itr_diags_free(&d);
        n++;
    }
    if (dir) closedir(dir);
    CHECK(n == 8);   // vsepp, scan_t2i, scan_i2t, bfan, sgr, saf, vse_inf, tern
}

int main(void) {
    RUN(map_parses_rules_and_options);
    RUN(map_errors_name_the_line);
    RUN(weight_norm_folds_as_pytorch);
    RUN(converts_every_kind_of_rule);
    RUN(reports_every_problem);
    RUN(reshape_takes_the_parameters_shape);
    RUN(zoo_maps_parse);
    return test_summary();
}
