// ONNX export (frontends/onnx/export.c, docs/onnx.md "Export"), without
// Python: every model's encoders and score entry, compiled at small sizes
// with seeded weights, exported and imported back through our own ONNX
// importer (its Scan lowering for the GRUs), give on the reference
// interpreter what the plan gives, on the same inputs. The ONNX Runtime side
// is tests/cli/onnx_export.sh. Also: the export table covers every op, the
// model's signature (opset, dynamic dims, initializers), and the errors.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/pipeline.h"
#include "frontends/onnx/onnx_export.h"
#include "frontends/onnx/onnx_import.h"
#include "ir/bind.h"
#include "ir/rng.h"
#include "onnx.pb-c.h"
#include "runtime/exec.h"
#include "runtime/init.h"
#include "test.h"
#include "testutil.h"

#define MODELS ITR_SOURCE_DIR "/models/"

// Small sizes, and a small vocabulary.
static struct itr_program *compile_model(const char *name) {
    char path[512];
    snprintf(path, sizeof path, MODELS "%s.ir", name);
    const char *ov[TU_N_SMALL_SIZES + 1];
    int n = tu_small_overrides(path, ov);
    struct itr_parse_options po = { .overrides = (const char *const[]){ "V=20" }, .n_overrides = 1 };
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *probe = itr_parse_file(path, &po, &d);
    if (probe && !itr_diags_has_errors(&d)) ov[n++] = "V=20";
    itr_program_free(probe);
    itr_diags_free(&d);
    struct itr_compile_options o;
    itr_compile_options_init(&o);
    o.defines = ov;
    o.n_defines = n;
    itr_diags_init(&d);
    struct itr_program *p = NULL;
    if (!itr_compile_file(path, &o, &p, NULL, &d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    return p;
}

// Inputs of entry g at the bindings b: floats uniform in [-0.5, 0.5),
// integers 1, 2, 3, ... cycling (valid word ids and lengths at L >= 3).
static bool make_inputs(const struct itr_program *p, const struct itr_graph *g, const struct itr_dim_bindings *b,
                        struct itr_tensor_set *in) {
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        int64_t shape[ITR_MAX_RANK];
        struct itr_diags d;
        itr_diags_init(&d);
        bool ok = itr_eval_shape(b, p, &v->type, shape, v->name, &d);
        if (!ok) itr_diags_print(&d, stderr);
        itr_diags_free(&d);
        if (!ok) return false;
        struct itr_tensor *t = itr_tensor_new(v->type.dtype, v->type.rank, shape);
        for (int64_t k = 0; k < itr_tensor_numel(t); k++) {
            double u = itr_rng_uniform_f64(5, 100 + (uint64_t)i, (uint64_t)k);
            itr_tensor_set(t, k, itr_dtype_is_float(v->type.dtype) ? u - 0.5 : (double)(1 + (k * 7 + i) % 3));
        }
        itr_tensor_set_put(in, v->name, t);
    }
    return true;
}

static bool has_scan(const struct itr_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == ITR_OP_SCAN) return true;
    return false;
}

// Exports entry of p with weights w, imports it back, and compares the two
// programs' outputs at dims N, B, L. Returns the number of outputs compared.
static int round_trip(const char *model, struct itr_program *p, const struct itr_tensor_set *w, const char *entry,
                      int64_t N, int64_t B, int64_t L) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_onnx_export_options eo = { .entry = entry, .weights = w };
    uint8_t *buf = NULL;
    size_t len = 0;
    bool ok = itr_onnx_export(p, &eo, &buf, &len, &d);
    CHECK_MSG(ok, "%s: exporting %s failed", model, entry);
    struct itr_onnx_options io;
    itr_onnx_options_init(&io);
    io.entry_name = entry;
    struct itr_program *q = ok ? itr_onnx_import_bytes("exported.onnx", buf, len, &io, NULL, NULL, &d) : NULL;
    CHECK_MSG(!ok || q, "%s: importing the exported %s failed", model, entry);
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    if (q && !itr_compile_program(q, &co, NULL, &d)) {
        FAIL_AT("%s: compiling the imported %s failed", model, entry);
        itr_program_free(q);
        q = NULL;
    }
    int compared = 0;
    const struct itr_graph *g = itr_program_find_graph(p, entry), *gq = q ? itr_program_find_graph(q, entry) : NULL;
    if (q && gq) {
        // The GRUs came back as scans, not unrolled or lost.
        CHECK_MSG(has_scan(g) == has_scan(gq), "%s %s: scan %s the round trip", model, entry,
                  has_scan(g) ? "lost in" : "appeared in");
        struct itr_dim_bindings b, bq;
        itr_bindings_init(&b, p);
        itr_bindings_init(&bq, q);
        const char *syms[3] = { "N", "B", "L" };
        int64_t vals[3] = { N, B, L };
        for (int k = 0; k < 3; k++)
            if (itr_program_find_symbol(p, syms[k]) >= 0) itr_bindings_set(&b, p, syms[k], vals[k], &d);
        for (int i = 0; i < p->n_params; i++) {
            const struct itr_tensor *t = itr_tensor_set_get(w, p->params[i].name);
            if (t) itr_bind_tensor(&b, p, &p->params[i].type, t, p->params[i].name, false, &d);
        }
        itr_bind_defaults(&b, p);
        struct itr_tensor_set in, out, outq;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&out);
        itr_tensor_set_init(&outq);
        struct itr_exec_options xo = { 0 };
        bool ran = make_inputs(p, g, &b, &in) && itr_exec_run(p, g, &in, w, &b, &xo, &out, &d);
        CHECK_MSG(ran, "%s: running %s failed", model, entry);
        bool ranq = ran && itr_exec_run(q, gq, &in, NULL, &bq, &xo, &outq, &d);
        CHECK_MSG(!ran || ranq, "%s: running the imported %s failed", model, entry);
        CHECK(gq->n_outputs == g->n_outputs);
        for (int k = 0; ranq && k < g->n_outputs && k < gq->n_outputs; k++) {
            const char *name = g->output_names[k];
            CHECK_MSG(strcmp(gq->output_names[k], name) == 0, "%s %s: output %d is '%s', expected '%s'", model, entry,
                      k, gq->output_names[k], name);
            const struct itr_tensor *a = itr_tensor_set_get(&out, name), *c = itr_tensor_set_get(&outq, name);
            if (!a || !c) { FAIL_AT("%s %s: output '%s' missing", model, entry, name); continue; }
            bool same_shape = a->dtype == c->dtype && a->rank == c->rank;
            for (int r = 0; same_shape && r < a->rank; r++) same_shape = a->shape[r] == c->shape[r];
            CHECK_MSG(same_shape, "%s %s: output '%s' changed dtype or shape", model, entry, name);
            if (!same_shape) continue;
            double scale = 1, worst = 0;
            for (int64_t e = 0; e < itr_tensor_numel(a); e++) scale = fmax(scale, fabs(itr_tensor_get(a, e)));
            bool constant = itr_tensor_numel(a) > 1;
            for (int64_t e = 0; e < itr_tensor_numel(a); e++) {
                worst = fmax(worst, fabs(itr_tensor_get(a, e) - itr_tensor_get(c, e)));
                constant &= itr_tensor_get(a, e) == itr_tensor_get(a, 0);
            }
            CHECK_MSG(worst <= 1e-5 * scale, "%s %s: output '%s' differs by %g after the round trip", model, entry,
                      name, worst);
            CHECK_MSG(!constant || !itr_dtype_is_float(a->dtype), "%s %s: output '%s' is constant", model, entry,
                      name);
            compared++;
        }
        itr_tensor_set_free(&in);
        itr_tensor_set_free(&out);
        itr_tensor_set_free(&outq);
        itr_bindings_free(&b);
        itr_bindings_free(&bq);
    }
    if (itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    itr_program_free(q);
    free(buf);
    itr_diags_free(&d);
    return compared;
}

static void check_model(const char *model) {
    struct itr_program *p = compile_model(model);
    CHECK_MSG(p != NULL, "%s does not compile", model);
    if (!p) return;
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_init_params(p, 7, &b, &w, &d));
    itr_diags_print(&d, stderr);
    const char *entries[3] = { "encode_image", "encode_text", "score" };
    for (int e = 0; e < 3; e++) {
        // Two sizes of the dynamic dims through one export each.
        int n = round_trip(model, p, &w, entries[e], 3, 2, 5);
        n += round_trip(model, p, &w, entries[e], 2, 3, 4);
        CHECK_MSG(n >= 2, "%s %s: no outputs compared", model, entries[e]);
    }
    itr_bindings_free(&b);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(vsepp) { check_model("vsepp"); }
TEST(scan_t2i) { check_model("scan_t2i"); }
TEST(scan_i2t) { check_model("scan_i2t"); }
TEST(bfan) { check_model("bfan"); }
TEST(sgr) { check_model("sgr"); }
TEST(saf) { check_model("saf"); }
TEST(vse_inf) { check_model("vse_inf"); }
TEST(tern) { check_model("tern"); }

// tests/test_onnx_export_ops.ir: every mapped op, entry by entry (no
// parameters), at two sizes of N, compiled at -O0 (identity and
// stop_gradient stay) and -O1.
TEST(every_mapped_op) {
    bool seen[ITR_OP_COUNT] = { false };
    for (int level = 0; level <= 1; level++) {
        struct itr_compile_options co;
        itr_compile_options_init(&co);
        co.opt_level = level;
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *p = NULL;
        CHECK(itr_compile_file(ITR_SOURCE_DIR "/tests/test_onnx_export_ops.ir", &co, &p, NULL, &d));
        itr_diags_print(&d, stderr);
        itr_diags_free(&d);
        if (!p) return;
        struct itr_tensor_set none;
        itr_tensor_set_init(&none);
        int entries = 0;
        for (int i = 0; i < p->n_graphs; i++) {
            const struct itr_graph *g = p->graphs[i];
            for (int k = 0; k < g->n_nodes; k++) seen[g->nodes[k].op] = true;
            if (g->kind != ITR_GRAPH_ENTRY) continue;
            entries++;
            int n = round_trip("export_ops", p, &none, g->name, 3, 1, 1);
            n += round_trip("export_ops", p, &none, g->name, 2, 1, 1);
            CHECK_MSG(n == 2 * g->n_outputs, "export_ops %s (-O%d): %d of %d outputs compared", g->name, level, n,
                      2 * g->n_outputs);
        }
        CHECK(entries == 9);
        itr_tensor_set_free(&none);
        itr_program_free(p);
    }
    // Every op with a mapping occurs.
    for (int op = 0; op < ITR_OP_COUNT; op++) {
        const char *why;
        if (!itr_onnx_export_mapping((enum itr_op)op, &why) || seen[op]) continue;
        FAIL_AT("op '%s' is mapped but not used by tests/test_onnx_export_ops.ir", itr_op_name((enum itr_op)op));
    }
}

// Every op of ops.def has a row: a mapping or the reason it has none.
TEST(export_table_covers_every_op) {
    for (int op = 0; op < ITR_OP_COUNT; op++) {
        const char *why = NULL, *onnx = itr_onnx_export_mapping((enum itr_op)op, &why);
        CHECK_MSG((onnx != NULL) != (why != NULL), "op '%s' has %s", itr_op_name((enum itr_op)op),
                  onnx ? "both a mapping and a reason" : "no row in the export table (frontends/onnx/export.c)");
    }
    const char *why;
    CHECK(strcmp(itr_onnx_export_mapping(ITR_OP_MATMUL, &why), "MatMul") == 0 && why == NULL);
    CHECK(itr_onnx_export_mapping(ITR_OP_RANDOM_NORMAL, &why) == NULL && why && strstr(why, "Philox"));
}

// The model's header and signature: opset 17, IR version 8, the entry's
// inputs with their dims (dynamic ones by the model's dim names), the
// parameters as initializers under their own names.
TEST(signature_and_dynamic_dims) {
    struct itr_program *p = compile_model("vsepp");
    if (!p) { FAIL_AT("vsepp does not compile"); return; }
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_init_params(p, 1, &b, &w, &d));
    struct itr_onnx_export_options eo = { .entry = "encode_text", .weights = &w };
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(itr_onnx_export(p, &eo, &buf, &len, &d));
    Onnx__ModelProto *m = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
    CHECK(m != NULL);
    if (m) {
        CHECK(m->ir_version == 8 && m->n_opset_import == 1 && m->opset_import[0]->version == 17);
        CHECK(strcmp(m->producer_name, "itrc") == 0);
        const Onnx__GraphProto *g = m->graph;
        CHECK(g->n_input == 2 && strcmp(g->input[0]->name, "words") == 0 && strcmp(g->input[1]->name, "lengths") == 0);
        const Onnx__TypeProto__Tensor *tw = g->input[0]->type->tensor_type;
        CHECK(tw->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 && tw->shape->n_dim == 2);
        CHECK(tw->shape->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
              strcmp(tw->shape->dim[0]->dim_param, "B") == 0);
        CHECK(strcmp(tw->shape->dim[1]->dim_param, "L") == 0);
        CHECK(g->n_output == 1 && strcmp(g->output[0]->name, "cap_emb") == 0);
        const Onnx__TensorShapeProto *so = g->output[0]->type->tensor_type->shape;
        CHECK(so->n_dim == 2 && strcmp(so->dim[0]->dim_param, "B") == 0 && so->dim[1]->dim_value == 16);
        // The embedding and the GRU's four tensors, under their names, with
        // the weights' bytes.
        int params = 0;
        for (size_t i = 0; i < g->n_initializer; i++) {
            const struct itr_tensor *t = itr_tensor_set_get(&w, g->initializer[i]->name);
            if (!t) continue;
            params++;
            CHECK(g->initializer[i]->raw_data.len == itr_tensor_nbytes(t) &&
                  memcmp(g->initializer[i]->raw_data.data, t->data, itr_tensor_nbytes(t)) == 0);
        }
        CHECK_MSG(params == 5, "%d parameters exported, expected 5", params);
        int scans = 0;
        for (size_t i = 0; i < g->n_node; i++) {
            if (strcmp(g->node[i]->op_type, "Scan") != 0) continue;
            scans++;
            for (size_t k = 0; k < g->node[i]->n_attribute; k++) {
                const Onnx__AttributeProto *a = g->node[i]->attribute[k];
                if (strcmp(a->name, "num_scan_inputs") == 0) CHECK(a->i == 2);
                if (strcmp(a->name, "scan_input_axes") == 0) CHECK(a->n_ints == 2 && a->ints[0] == 1 && a->ints[1] == 1);
                if (strcmp(a->name, "body") == 0) CHECK(a->g && a->g->n_input == 3 && a->g->n_output == 1);
            }
        }
        CHECK(scans == 1);
        onnx__model_proto__free_unpacked(m, NULL);
    }
    free(buf);
    itr_bindings_free(&b);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    itr_program_free(p);
}

static char *export_error(struct itr_program *p, const char *entry, const struct itr_tensor_set *w) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_onnx_export_options eo = { .entry = entry, .weights = w };
    uint8_t *buf = NULL;
    size_t len = 0;
    bool ok = itr_onnx_export(p, &eo, &buf, &len, &d);
    CHECK_MSG(!ok && buf == NULL, "exporting %s should fail", entry);
    char *s = itr_diags_summary(&d);
    free(buf);
    itr_diags_free(&d);
    return s;
}

TEST(errors_name_what_is_wrong) {
    struct itr_program *p = compile_model("vsepp");
    if (!p) { FAIL_AT("vsepp does not compile"); return; }
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    char *s = export_error(p, "encode", NULL);
    CHECK_STR_CONTAINS(s, "the model has no entry 'encode' (its inference entries: encode_image, encode_text, score)");
    free(s);
    s = export_error(p, "train", NULL);
    CHECK_STR_CONTAINS(s, "entry 'train' is the training step");
    free(s);
    s = export_error(p, "encode_image", NULL);
    CHECK_STR_CONTAINS(s, "entry 'encode_image' uses parameter 'img_fc.weight': give the weights with --weights");
    free(s);
    // Weights of another shape: the parameter and both shapes.
    int64_t shape[2] = { 3, 3 };
    itr_tensor_set_put(&w, "img_fc.weight", itr_tensor_new(ITR_F32, 2, shape));
    shape[0] = 16;
    itr_tensor_set_put(&w, "img_fc.bias", itr_tensor_new(ITR_F32, 1, shape));
    s = export_error(p, "encode_image", &w);
    CHECK_STR_CONTAINS(s, "parameter 'img_fc.weight'");
    free(s);
    itr_tensor_set_free(&w);
    itr_program_free(p);

    // An op without an ONNX form: the node, its op and the reason.
    const char *src = "model noisy {\n  dim N\n  entry forward(x: f32[N, 4], seed: i64[]) -> (y) {\n"
                      "    return x + random_normal(seed, shape=[N, 4])\n  }\n}\n";
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *q = NULL;
    CHECK(itr_compile_source("noisy.ir", src, strlen(src), &co, &q, NULL, &d));
    if (q) {
        s = export_error(q, "forward", NULL);
        CHECK_STR_CONTAINS(s, "4:");
        CHECK_STR_CONTAINS(s, "(random_normal): cannot be exported to ONNX: op 'random_normal' draws from Philox");
        free(s);
        // Nothing is written on an error; a success leaves only the file.
        char dir[] = "/tmp/itr-onnx-export-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        char path[600];
        snprintf(path, sizeof path, "%s/noisy.onnx", dir);
        struct itr_onnx_export_options eo = { .entry = "forward" };
        CHECK(!itr_onnx_export_file(q, &eo, path, &d));
        CHECK(access(path, F_OK) != 0);
        itr_program_free(q);
        rmdir(dir);
    }
    itr_diags_free(&d);
}

TEST(file_is_written_atomically) {
    struct itr_program *p = compile_model("vsepp");
    if (!p) { FAIL_AT("vsepp does not compile"); return; }
    char dir[] = "/tmp/itr-onnx-export-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/score.onnx", dir);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_onnx_export_options eo = { .entry = "score" };
    CHECK(itr_onnx_export_file(p, &eo, path, &d));
    struct itr_onnx_options io;
    itr_onnx_options_init(&io);
    io.entry_name = "score";
    struct itr_program *q = itr_onnx_import_file(path, &io, NULL, NULL, &d);
    CHECK(q != NULL && q->n_graphs == 1 && q->graphs[0]->n_inputs == 2);
    itr_program_free(q);
    unlink(path);
    CHECK_MSG(rmdir(dir) == 0, "a temporary file was left in %s", dir);
    itr_diags_free(&d);
    itr_program_free(p);
}

int main(void) {
    RUN(export_table_covers_every_op);
    RUN(signature_and_dynamic_dims);
    RUN(errors_name_what_is_wrong);
    RUN(file_is_written_atomically);
    RUN(every_mapped_op);
    RUN(vsepp);
    RUN(scan_t2i);
    RUN(scan_i2t);
    RUN(bfan);
    RUN(sgr);
    RUN(saf);
    RUN(vse_inf);
    RUN(tern);
    return test_summary();
}
