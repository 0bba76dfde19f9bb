// The ONNX importer on models built here with protobuf-c: error messages
// (unsupported op, opset, non-constant shape operands, bad files), dynamic
// dims and shape arithmetic folded into dim expressions, initializers as
// parameters with their weights (and written as safetensors) or as
// constants, the printed .ir, and a bidirectional GRU with sequence_lens
// and dynamic dims against a direct C transcription of ONNX's equations;
// If and Loop (frontends/onnx/control.c): a known condition inlines its
// branch, a run-time one selects with where, a Loop of a known trip count is
// a scan checked against hand-computed values, and the refused forms.
// The node-test conformance suite is tests/test_onnx_node.c.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/pipeline.h"
#include "frontends/onnx/onnx_import.h"
#include "ir/text.h"
#include "onnx.pb-c.h"
#include "runtime/exec.h"
#include "runtime/safetensors.h"
#include "test.h"

// ------------------------------------------------------------ building models

// Every allocation of a model under construction, freed by mb_free.
static void **allocs;
static int n_allocs, cap_allocs;

static void *A(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? 2 * cap_allocs : 64;
        allocs = realloc(allocs, (size_t)cap_allocs * sizeof *allocs);
    }
    allocs[n_allocs++] = p;
    return p;
}

static char *S(const char *s) { return strcpy(A(strlen(s) + 1), s); }

static void mb_free(void) {
    for (int i = 0; i < n_allocs; i++) free(allocs[i]);
    free(allocs);
    allocs = NULL;
    n_allocs = cap_allocs = 0;
}

// dims: >= 0 a size; < 0 the named dim params[-dims[i] - 1].
static Onnx__ValueInfoProto *vi(const char *name, int elem, int rank, const int64_t *dims, const char *const *params) {
    Onnx__ValueInfoProto *v = A(sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = S(name);
    Onnx__TypeProto *tp = A(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = A(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    Onnx__TensorShapeProto *sh = A(sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)rank;
    sh->dim = A((size_t)rank * sizeof *sh->dim);
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *dm = A(sizeof *dm);
        onnx__tensor_shape_proto__dimension__init(dm);
        if (dims[i] >= 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = dims[i];
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = S(params[-dims[i] - 1]);
        }
        sh->dim[i] = dm;
    }
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

static Onnx__TensorProto *tensor(const char *name, int elem, int rank, const int64_t *dims, const void *data) {
    Onnx__TensorProto *t = A(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = S(name);
    t->has_data_type = 1;
    t->data_type = elem;
    t->n_dims = (size_t)rank;
    t->dims = A((size_t)rank * sizeof(int64_t));
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (t->dims[i] = dims[i]);
    size_t es = elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : elem == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? 1 : 4;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * es;
    t->raw_data.data = A(t->raw_data.len);
    memcpy(t->raw_data.data, data, t->raw_data.len);
    return t;
}

static Onnx__AttributeProto *attr_i(const char *name, int64_t v) {
    Onnx__AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_s(const char *name, const char *v) {
    Onnx__AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)S(v);
    return a;
}

static Onnx__AttributeProto *attr_g(const char *name, Onnx__GraphProto *g) {
    Onnx__AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    a->g = g;
    return a;
}

static Onnx__NodeProto *node(const char *name, const char *op, int nin, const char *const *ins, int nout,
                             const char *const *outs, int nattr, Onnx__AttributeProto *const *attrs) {
    Onnx__NodeProto *n = A(sizeof *n);
    onnx__node_proto__init(n);
    n->name = S(name);
    n->op_type = S(op);
    n->n_input = (size_t)nin;
    n->input = A((size_t)nin * sizeof(char *));
    for (int i = 0; i < nin; i++) n->input[i] = S(ins[i]);
    n->n_output = (size_t)nout;
    n->output = A((size_t)nout * sizeof(char *));
    for (int i = 0; i < nout; i++) n->output[i] = S(outs[i]);
    n->n_attribute = (size_t)nattr;
    n->attribute = A((size_t)nattr * sizeof *n->attribute);
    for (int i = 0; i < nattr; i++) n->attribute[i] = attrs[i];
    return n;
}

struct model_spec {
    int opset;
    int n_nodes; Onnx__NodeProto *nodes[16];
    int n_inputs; Onnx__ValueInfoProto *inputs[8];
    int n_outputs; Onnx__ValueInfoProto *outputs[8];
    int n_inits; Onnx__TensorProto *inits[8];
};

// A subgraph (an If branch, a Loop body): nodes, inputs, outputs, initializers.
static Onnx__GraphProto *subgraph(const char *name, int nn, Onnx__NodeProto *const *nodes, int ni,
                                  Onnx__ValueInfoProto *const *ins, int no, Onnx__ValueInfoProto *const *outs, int nt,
                                  Onnx__TensorProto *const *inits) {
    Onnx__GraphProto *g = A(sizeof *g);
    onnx__graph_proto__init(g);
    g->name = S(name);
    g->n_node = (size_t)nn;
    g->node = A((size_t)nn * sizeof *g->node);
    for (int i = 0; i < nn; i++) g->node[i] = nodes[i];
    g->n_input = (size_t)ni;
    g->input = A((size_t)ni * sizeof *g->input);
    for (int i = 0; i < ni; i++) g->input[i] = ins[i];
    g->n_output = (size_t)no;
    g->output = A((size_t)no * sizeof *g->output);
    for (int i = 0; i < no; i++) g->output[i] = outs[i];
    g->n_initializer = (size_t)nt;
    g->initializer = A((size_t)nt * sizeof *g->initializer);
    for (int i = 0; i < nt; i++) g->initializer[i] = inits[i];
    return g;
}

// The serialized model (malloc'd; *len bytes).
static uint8_t *pack(const struct model_spec *s, size_t *len) {
    Onnx__GraphProto g;
    onnx__graph_proto__init(&g);
    g.name = S("g");
    g.n_node = (size_t)s->n_nodes;
    g.node = (Onnx__NodeProto **)s->nodes;
    g.n_input = (size_t)s->n_inputs;
    g.input = (Onnx__ValueInfoProto **)s->inputs;
    g.n_output = (size_t)s->n_outputs;
    g.output = (Onnx__ValueInfoProto **)s->outputs;
    g.n_initializer = (size_t)s->n_inits;
    g.initializer = (Onnx__TensorProto **)s->inits;
    Onnx__OperatorSetIdProto os;
    onnx__operator_set_id_proto__init(&os);
    os.domain = S("");
    os.has_version = 1;
    os.version = s->opset;
    Onnx__OperatorSetIdProto *osp = &os;
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    m.graph = &g;
    *len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(*len);
    onnx__model_proto__pack(&m, buf);
    return buf;
}

static struct itr_program *import_spec(const struct model_spec *s, bool params, struct itr_tensor_set *w,
                                       struct itr_diags *d) {
    size_t len;
    uint8_t *buf = pack(s, &len);
    struct itr_onnx_options o;
    itr_onnx_options_init(&o);
    o.params = params;
    struct itr_program *p = itr_onnx_import_bytes("m.onnx", buf, len, &o, w, NULL, d);
    free(buf);
    return p;
}

static char *errors_of(struct itr_diags *d) { return itr_diags_summary(d); }

// Importing s fails, and the message contains want (and also, when given).
static void import_fails_with(const struct model_spec *s, const char *want, const char *also) {
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(import_spec(s, false, NULL, &d) == NULL);
    char *e = errors_of(&d);
    CHECK_STR_CONTAINS(e, want);
    if (also) CHECK_STR_CONTAINS(e, also);
    free(e);
    itr_diags_free(&d);
}

enum { F32 = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, I64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
       I32 = ONNX__TENSOR_PROTO__DATA_TYPE__INT32, BOOL = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL };

// Runs entry "forward" of a compiled copy of p; returns output 0 (caller frees).
static struct itr_tensor *run1(struct itr_program *p, struct itr_tensor_set *in, struct itr_tensor_set *w,
                               const char *out_name) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_tensor *r = NULL;
    struct itr_tensor_set res;
    itr_tensor_set_init(&res);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_exec_options eo = { 0 };
    const struct itr_graph *g = itr_compile_program(p, &co, NULL, &d) ? itr_exec_find_entry(p, "forward", &d) : NULL;
    if (g && itr_exec_run(p, g, in, w, &b, &eo, &res, &d)) {
        struct itr_tensor *t = itr_tensor_set_get(&res, out_name);
        r = t ? itr_tensor_clone(t) : NULL;
    }
    if (!r) {
        itr_diags_print(&d, stderr);
    }
    itr_bindings_free(&b);
    itr_tensor_set_free(&res);
    itr_diags_free(&d);
    return r;
}

static struct itr_tensor *f32_tensor(int rank, const int64_t *shape, const float *v) {
    struct itr_tensor *t = itr_tensor_new(ITR_F32, rank, shape);
    memcpy(t->data, v, itr_tensor_nbytes(t));
    return t;
}

// ------------------------------------------------------------ errors

TEST(unsupported_op_names_node_and_opset) {
    struct model_spec s = { .opset = 13 };
    int64_t dims[2] = { 2, 3 };
    s.inputs[s.n_inputs++] = vi("x", F32, 2, dims, NULL);
    s.outputs[s.n_outputs++] = vi("y", F32, 2, dims, NULL);
    s.nodes[s.n_nodes++] = node("relu0", "Relu", 1, (const char *[]){ "x" }, 1, (const char *[]){ "h" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("my_hardmax", "Hardmax", 1, (const char *[]){ "h" }, 1, (const char *[]){ "y" }, 0, NULL);
    import_fails_with(&s, "m.onnx: node 1 'my_hardmax' (Hardmax, opset 13): op 'Hardmax' is not supported", NULL);
    mb_free();
}

TEST(opset_outside_a_rows_range) {
    struct model_spec s = { .opset = 13 };
    int64_t dims[2] = { 2, 3 }, one[1] = { 3 };
    float sc[3] = { 1, 1, 1 };
    s.inputs[s.n_inputs++] = vi("x", F32, 2, dims, NULL);
    s.outputs[s.n_outputs++] = vi("y", F32, 2, dims, NULL);
    s.inits[s.n_inits++] = tensor("scale", F32, 1, one, sc);
    s.nodes[s.n_nodes++] = node("ln", "LayerNormalization", 2, (const char *[]){ "x", "scale" }, 1, (const char *[]){ "y" }, 0, NULL);
    import_fails_with(&s, "node 0 'ln' (LayerNormalization, opset 13): op 'LayerNormalization' is supported for opsets 17 to 17, not opset 13", NULL);
    mb_free();
}

TEST(shape_operand_must_be_known) {
    struct model_spec s = { .opset = 13 };
    int64_t dims[2] = { 2, 3 }, two[1] = { 2 };
    s.inputs[s.n_inputs++] = vi("x", F32, 2, dims, NULL);
    s.inputs[s.n_inputs++] = vi("shape", I64, 1, two, NULL);
    s.outputs[s.n_outputs++] = vi("y", F32, 2, dims, NULL);
    s.nodes[s.n_nodes++] = node("r", "Reshape", 2, (const char *[]){ "x", "shape" }, 1, (const char *[]){ "y" }, 0, NULL);
    import_fails_with(&s, "(Reshape, opset 13): the target shape ('shape') must be known when importing", NULL);
    mb_free();
}

TEST(not_a_model) {
    struct itr_diags d;
    itr_diags_init(&d);
    const uint8_t junk[] = { 0xff, 0xff, 0xff, 0x07, 0x12 };
    CHECK(itr_onnx_import_bytes("junk.onnx", junk, sizeof junk, NULL, NULL, NULL, &d) == NULL);
    char *e = errors_of(&d);
    CHECK_STR_CONTAINS(e, "junk.onnx: not a valid ONNX model");
    free(e);
    itr_diags_free(&d);
    // A TensorProto with fewer elements than its dims say.
    itr_diags_init(&d);
    int64_t dims[1] = { 4 };
    float v[4] = { 1, 2, 3, 4 };
    Onnx__TensorProto *t = tensor("t", F32, 1, dims, v);
    t->raw_data.len = 8;
    size_t len = onnx__tensor_proto__get_packed_size(t);
    uint8_t *buf = malloc(len);
    onnx__tensor_proto__pack(t, buf);
    CHECK(itr_onnx_tensor_parse("t.pb", buf, len, NULL, &d) == NULL);
    e = errors_of(&d);
    CHECK_STR_CONTAINS(e, "t.pb: tensor 't' of 4 elements holds 2");
    free(e);
    free(buf);
    itr_diags_free(&d);
    mb_free();
}

// ------------------------------------------------------------ dims and folding

// PyTorch's flatten idiom: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
TEST(dynamic_dims_and_shape_arithmetic_fold) {
    struct model_spec s = { .opset = 13 };
    const char *params[] = { "batch" };
    int64_t dims[3] = { -1, 4, 6 }, odims[2] = { -1, 24 }, one[1] = { 1 }, zero = 0, m1 = -1;
    s.inputs[s.n_inputs++] = vi("x", F32, 3, dims, params);
    s.outputs[s.n_outputs++] = vi("y", F32, 2, odims, params);
    s.inits[s.n_inits++] = tensor("zero", I64, 0, NULL, &zero);
    s.inits[s.n_inits++] = tensor("axes0", I64, 1, one, &zero);
    s.inits[s.n_inits++] = tensor("minus1", I64, 1, one, &m1);
    s.nodes[s.n_nodes++] = node("shape", "Shape", 1, (const char *[]){ "x" }, 1, (const char *[]){ "s" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("g", "Gather", 2, (const char *[]){ "s", "zero" }, 1, (const char *[]){ "b" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("u", "Unsqueeze", 2, (const char *[]){ "b", "axes0" }, 1, (const char *[]){ "b1" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("c", "Concat", 2, (const char *[]){ "b1", "minus1" }, 1, (const char *[]){ "target" }, 1,
                                (Onnx__AttributeProto *[]){ attr_i("axis", 0) });
    s.nodes[s.n_nodes++] = node("r", "Reshape", 2, (const char *[]){ "x", "target" }, 1, (const char *[]){ "y" }, 0, NULL);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); mb_free(); return; }
    char *text = itr_print_program(p);
    // Nothing of the shape arithmetic is left: one reshape to a dim expression.
    CHECK_STR_CONTAINS(text, "dim batch");
    CHECK_STR_CONTAINS(text, "entry forward(x: f32[batch, 4, 6]) -> (y)");
    CHECK_STR_CONTAINS(text, "reshape(x, shape=[batch, 24])");
    CHECK(p->graphs[0]->n_nodes == 1);
    // The printed program reads back as the same one.
    struct itr_program *back = itr_parse_string("back.ir", text, strlen(text), NULL, &d);
    char why[200] = "";
    CHECK_MSG(back && itr_program_equal(p, back, why, sizeof why), "round trip: %s", why);
    itr_program_free(back);
    free(text);
    // And runs for any batch.
    float xv[2 * 24];
    for (int i = 0; i < 48; i++) xv[i] = (float)i * 0.5f;
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "x", f32_tensor(3, (int64_t[]){ 2, 4, 6 }, xv));
    struct itr_tensor *y = run1(p, &in, NULL, "y");
    CHECK(y && y->rank == 2 && y->shape[0] == 2 && y->shape[1] == 24);
    for (int i = 0; y && i < 48; i++) CHECK_NEAR(((float *)y->data)[i], xv[i], 0);
    itr_tensor_free(y);
    itr_tensor_set_free(&in);
    itr_program_free(p);
    itr_diags_free(&d);
    mb_free();
}

// ------------------------------------------------------------ initializers

static void linear_spec(struct model_spec *s, const float *w, const float *b) {
    s->opset = 13;
    const char *params[] = { "N" };
    int64_t xd[2] = { -1, 3 }, yd[2] = { -1, 2 }, wd[2] = { 3, 2 }, bd[1] = { 2 };
    s->inputs[s->n_inputs++] = vi("input.1", F32, 2, xd, params);
    s->outputs[s->n_outputs++] = vi("out", F32, 2, yd, params);
    s->inits[s->n_inits++] = tensor("fc.weight", F32, 2, wd, w);
    s->inits[s->n_inits++] = tensor("fc.bias", F32, 1, bd, b);
    s->nodes[s->n_nodes++] = node("mm", "MatMul", 2, (const char *[]){ "input.1", "fc.weight" }, 1, (const char *[]){ "h" }, 0, NULL);
    s->nodes[s->n_nodes++] = node("add", "Add", 2, (const char *[]){ "h", "fc.bias" }, 1, (const char *[]){ "out" }, 0, NULL);
}

TEST(initializers_become_parameters_with_weights) {
    const float w[6] = { 1, 2, 3, 4, 5, 6 }, b[2] = { 0.5f, -1 };
    struct model_spec s = { 0 };
    linear_spec(&s, w, b);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set ws;
    itr_tensor_set_init(&ws);
    struct itr_program *p = import_spec(&s, true, &ws, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); itr_tensor_set_free(&ws); mb_free(); return; }
    CHECK(p->n_params == 2);
    CHECK(itr_program_find_param(p, "fc.weight") >= 0 && itr_program_find_param(p, "fc.bias") >= 0);
    struct itr_tensor *wt = itr_tensor_set_get(&ws, "fc.weight");
    CHECK(wt && wt->rank == 2 && wt->shape[0] == 3 && wt->shape[1] == 2 && ((float *)wt->data)[5] == 6);
    // "input.1" is no identifier: it becomes input_1.
    char *text = itr_print_program(p);
    CHECK_STR_CONTAINS(text, "param fc.weight: f32[3, 2] = zeros");
    CHECK_STR_CONTAINS(text, "entry forward(input_1: f32[N, 3]) -> (out)");
    free(text);

    // The weights file reads back with runtime/'s reader.
    char path[] = "/tmp/itr_onnx_wXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(itr_onnx_write_safetensors(path, &ws, &d));
    struct itr_tensor_set back;
    itr_tensor_set_init(&back);
    CHECK(itr_safetensors_read(path, &back, &d));
    struct itr_tensor *bb = itr_tensor_set_get(&back, "fc.bias");
    CHECK(back.n == 2 && bb && bb->dtype == ITR_F32 && ((float *)bb->data)[0] == 0.5f && ((float *)bb->data)[1] == -1);
    itr_tensor_set_free(&back);
    unlink(path);

    // y = x W + b for two rows.
    const float xv[6] = { 1, 0, 0, 0, 1, -1 };
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "input_1", f32_tensor(2, (int64_t[]){ 2, 3 }, xv));
    struct itr_tensor *y = run1(p, &in, &ws, "out");
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 2);
    if (y) {
        const float want[4] = { 1.5f, 1.0f, 3 - 5 + 0.5f, 4 - 6 - 1.0f };
        for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)y->data)[i], want[i], 1e-6);
    }
    itr_tensor_free(y);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&ws);
    itr_program_free(p);
    itr_diags_free(&d);
    mb_free();
}

TEST(initializers_as_constants_need_no_weights) {
    const float w[6] = { 1, 2, 3, 4, 5, 6 }, b[2] = { 0.5f, -1 };
    struct model_spec s = { 0 };
    linear_spec(&s, w, b);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p && p->n_params == 0);
    const float xv[3] = { 0, 0, 2 };
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "input_1", f32_tensor(2, (int64_t[]){ 1, 3 }, xv));
    struct itr_tensor *y = p ? run1(p, &in, NULL, "out") : NULL;
    CHECK(y && ((float *)y->data)[0] == 10.5f && ((float *)y->data)[1] == 11.0f);
    itr_tensor_free(y);
    itr_tensor_set_free(&in);
    itr_program_free(p);
    itr_diags_free(&d);
    mb_free();
}

// ------------------------------------------------------------ GRU

static double sigm(double v) { return 1 / (1 + exp(-v)); }

// ONNX GRU, linear_before_reset = 1 (as PyTorch exports it), gates z, r, h,
// bidirectional, with sequence_lens: Y [T, 2, B, H], Y_h [2, B, H].
static void gru_reference(int T, int B, int I, int H, const float *X, const float *W, const float *R, const float *Bi,
                          const int32_t *lens, float *Y, float *Yh) {
    for (int dir = 0; dir < 2; dir++) {
        const float *w = W + dir * 3 * H * I, *r = R + dir * 3 * H * H, *bw = Bi + dir * 6 * H, *br = bw + 3 * H;
        for (int b = 0; b < B; b++) {
            double h[16] = { 0 };
            for (int s = 0; s < T; s++) {
                int t = dir == 0 ? s : T - 1 - s;
                if (t >= lens[b]) {
                    for (int k = 0; k < H; k++) Y[((t * 2 + dir) * B + b) * H + k] = 0;
                    continue;
                }
                double gi[48], gh[48], hn[16];
                for (int j = 0; j < 3 * H; j++) {
                    gi[j] = bw[j];
                    gh[j] = br[j];
                    for (int k = 0; k < I; k++) gi[j] += w[j * I + k] * X[(t * B + b) * I + k];
                    for (int k = 0; k < H; k++) gh[j] += r[j * H + k] * h[k];
                }
                for (int k = 0; k < H; k++) {
                    double z = sigm(gi[k] + gh[k]), rr = sigm(gi[H + k] + gh[H + k]);
                    double n = tanh(gi[2 * H + k] + rr * gh[2 * H + k]);
                    hn[k] = (1 - z) * n + z * h[k];
                }
                for (int k = 0; k < H; k++) {
                    h[k] = hn[k];
                    Y[((t * 2 + dir) * B + b) * H + k] = (float)h[k];
                }
            }
            for (int k = 0; k < H; k++) Yh[(dir * B + b) * H + k] = (float)h[k];
        }
    }
}

TEST(bidirectional_gru_with_sequence_lens_and_dynamic_dims) {
    enum { T = 4, B = 3, I = 2, H = 3 };
    float X[T * B * I], W[2 * 3 * H * I], R[2 * 3 * H * H], Bi[2 * 6 * H];
    uint32_t seed = 12345;
    float *all[4] = { X, W, R, Bi };
    int sizes[4] = { T * B * I, 2 * 3 * H * I, 2 * 3 * H * H, 2 * 6 * H };
    for (int a = 0; a < 4; a++)
        for (int i = 0; i < sizes[a]; i++) {
            seed = seed * 1664525u + 1013904223u;
            all[a][i] = (float)((seed >> 8) / 16777216.0 - 0.5);
        }
    const int32_t lens[B] = { 4, 2, 1 };
    struct model_spec s = { .opset = 14 };
    const char *params[] = { "T", "B" };
    int64_t xd[3] = { -1, -2, I }, ld[1] = { -2 }, yd[4] = { -1, 2, -2, H }, hd[3] = { 2, -2, H };
    int64_t wd[3] = { 2, 3 * H, I }, rd[3] = { 2, 3 * H, H }, bd[2] = { 2, 6 * H };
    s.inputs[s.n_inputs++] = vi("X", F32, 3, xd, params);
    s.inputs[s.n_inputs++] = vi("lens", I32, 1, ld, params);
    s.outputs[s.n_outputs++] = vi("Y", F32, 4, yd, params);
    s.outputs[s.n_outputs++] = vi("Y_h", F32, 3, hd, params);
    s.inits[s.n_inits++] = tensor("W", F32, 3, wd, W);
    s.inits[s.n_inits++] = tensor("R", F32, 3, rd, R);
    s.inits[s.n_inits++] = tensor("B", F32, 2, bd, Bi);
    s.nodes[s.n_nodes++] = node("gru", "GRU", 5, (const char *[]){ "X", "W", "R", "B", "lens" }, 2,
                                (const char *[]){ "Y", "Y_h" }, 3,
                                (Onnx__AttributeProto *[]){ attr_i("hidden_size", H), attr_s("direction", "bidirectional"),
                                                            attr_i("linear_before_reset", 1) });
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set ws;
    itr_tensor_set_init(&ws);
    struct itr_program *p = import_spec(&s, true, &ws, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); itr_tensor_set_free(&ws); mb_free(); return; }
    // Two scans (one per direction), each with a GRU cell body.
    const struct itr_graph *entry = itr_program_find_graph(p, "forward");
    int scans = 0;
    for (int i = 0; entry && i < entry->n_nodes; i++) scans += entry->nodes[i].op == ITR_OP_SCAN;
    CHECK(scans == 2);
    float Yw[T * 2 * B * H], Yhw[2 * B * H];
    gru_reference(T, B, I, H, X, W, R, Bi, lens, Yw, Yhw);
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "X", f32_tensor(3, (int64_t[]){ T, B, I }, X));
    struct itr_tensor *lt = itr_tensor_new(ITR_I32, 1, (int64_t[]){ B });
    memcpy(lt->data, lens, sizeof lens);
    itr_tensor_set_put(&in, "lens", lt);
    struct itr_program *p2 = import_spec(&s, true, NULL, &d);   // run1 compiles in place: one copy per output
    struct itr_tensor *y = run1(p, &in, &ws, "Y"), *yh = p2 ? run1(p2, &in, &ws, "Y_h") : NULL;
    CHECK(y && y->rank == 4 && y->shape[0] == T && y->shape[1] == 2 && y->shape[2] == B && y->shape[3] == H);
    CHECK(yh && yh->rank == 3 && yh->shape[0] == 2 && yh->shape[1] == B);
    for (int i = 0; y && i < T * 2 * B * H; i++) CHECK_NEAR(((float *)y->data)[i], Yw[i], 1e-5);
    for (int i = 0; yh && i < 2 * B * H; i++) CHECK_NEAR(((float *)yh->data)[i], Yhw[i], 1e-5);
    itr_tensor_free(y);
    itr_tensor_free(yh);
    itr_tensor_set_free(&in);
    itr_tensor_set_free(&ws);
    itr_program_free(p);
    itr_program_free(p2);
    itr_diags_free(&d);
    mb_free();
}

// ------------------------------------------------------------ If and Loop

static int count_op(const struct itr_graph *g, enum itr_op op) {
    int k = 0;
    for (int i = 0; g && i < g->n_nodes; i++) k += g->nodes[i].op == op;
    return k;
}

// If(cond) { t = x + x } else { e = -x }, both branches reading x from the
// enclosing graph; cond_nodes compute "cond" (or it is an initializer).
static void if_spec(struct model_spec *s, int n_cond_nodes, Onnx__NodeProto *const *cond_nodes) {
    s->opset = 13;
    int64_t xd[2] = { 2, 3 };
    s->inputs[s->n_inputs++] = vi("x", F32, 2, xd, NULL);
    s->outputs[s->n_outputs++] = vi("y", F32, 2, xd, NULL);
    for (int i = 0; i < n_cond_nodes; i++) s->nodes[s->n_nodes++] = cond_nodes[i];
    Onnx__NodeProto *tn = node("double", "Add", 2, (const char *[]){ "x", "x" }, 1, (const char *[]){ "t" }, 0, NULL);
    Onnx__NodeProto *en = node("negate", "Neg", 1, (const char *[]){ "x" }, 1, (const char *[]){ "e" }, 0, NULL);
    Onnx__GraphProto *tg = subgraph("then_g", 1, &tn, 0, NULL, 1, (Onnx__ValueInfoProto *[]){ vi("t", F32, 2, xd, NULL) }, 0, NULL);
    Onnx__GraphProto *eg = subgraph("else_g", 1, &en, 0, NULL, 1, (Onnx__ValueInfoProto *[]){ vi("e", F32, 2, xd, NULL) }, 0, NULL);
    s->nodes[s->n_nodes++] = node("choose", "If", 1, (const char *[]){ "cond" }, 1, (const char *[]){ "y" }, 2,
                                  (Onnx__AttributeProto *[]){ attr_g("then_branch", tg), attr_g("else_branch", eg) });
}

static const float if_x[6] = { 1, -2, 3, 0.5f, 4, -6 };

// Imports s, checks the entry has no where (and wants_neg negations), runs
// it on if_x and checks y = scale * x.
static void check_inlined(const struct model_spec *s, int wants_neg, float scale) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(s, false, NULL, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "forward");
    CHECK(p->n_graphs == 1);
    CHECK(count_op(g, ITR_OP_WHERE) == 0);
    CHECK(count_op(g, ITR_OP_NEG) == wants_neg);
    CHECK(count_op(g, ITR_OP_ADD) == 1 - wants_neg);
    struct itr_tensor_set in;
    itr_tensor_set_init(&in);
    itr_tensor_set_put(&in, "x", f32_tensor(2, (int64_t[]){ 2, 3 }, if_x));
    struct itr_tensor *y = run1(p, &in, NULL, "y");
    CHECK(y && y->rank == 2 && y->shape[0] == 2 && y->shape[1] == 3);
    for (int i = 0; y && i < 6; i++) CHECK_NEAR(((float *)y->data)[i], scale * if_x[i], 0);
    itr_tensor_free(y);
    itr_tensor_set_free(&in);
    itr_program_free(p);
    itr_diags_free(&d);
}

TEST(if_with_a_known_condition_inlines_the_taken_branch) {
    // An initializer, true: the then branch.
    struct model_spec s = { 0 };
    bool t = true, f = false;
    s.inits[s.n_inits++] = tensor("cond", BOOL, 0, NULL, &t);
    if_spec(&s, 0, NULL);
    check_inlined(&s, 0, 2);
    mb_free();
    // A Constant node, false: the else branch.
    struct model_spec s2 = { 0 };
    Onnx__AttributeProto *va = A(sizeof *va);
    onnx__attribute_proto__init(va);
    va->name = S("value");
    va->has_type = 1;
    va->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    va->t = tensor("c", BOOL, 0, NULL, &f);
    Onnx__NodeProto *cn = node("c", "Constant", 0, NULL, 1, (const char *[]){ "cond" }, 1, &va);
    if_spec(&s2, 1, &cn);
    check_inlined(&s2, 1, -1);
    mb_free();
    // Shape arithmetic: Shape(x)[1] == 3.
    struct model_spec s3 = { 0 };
    int64_t one = 1, three = 3;
    s3.inits[s3.n_inits++] = tensor("one", I64, 0, NULL, &one);
    s3.inits[s3.n_inits++] = tensor("three", I64, 0, NULL, &three);
    Onnx__NodeProto *sn[3] = {
        node("shape", "Shape", 1, (const char *[]){ "x" }, 1, (const char *[]){ "sh" }, 0, NULL),
        node("cols", "Gather", 2, (const char *[]){ "sh", "one" }, 1, (const char *[]){ "cols" }, 0, NULL),
        node("is3", "Equal", 2, (const char *[]){ "cols", "three" }, 1, (const char *[]){ "cond" }, 0, NULL),
    };
    if_spec(&s3, 3, sn);
    check_inlined(&s3, 0, 2);
    mb_free();
}

// cond = ReduceSum(x) > 0 is known only at run time: both branches and a
// where, right for every row of the batch either way.
TEST(if_with_a_runtime_condition_selects_with_where) {
    struct model_spec s = { 0 };
    float zero = 0;
    s.inits[s.n_inits++] = tensor("zero", F32, 0, NULL, &zero);
    Onnx__NodeProto *cn[2] = {
        node("total", "ReduceSum", 1, (const char *[]){ "x" }, 1, (const char *[]){ "total" }, 1,
             (Onnx__AttributeProto *[]){ attr_i("keepdims", 0) }),
        node("positive", "Greater", 2, (const char *[]){ "total", "zero" }, 1, (const char *[]){ "cond" }, 0, NULL),
    };
    if_spec(&s, 2, cn);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); mb_free(); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "forward");
    CHECK(count_op(g, ITR_OP_WHERE) == 1 && count_op(g, ITR_OP_NEG) == 1);
    char *text = itr_print_program(p);
    struct itr_program *back = itr_parse_string("back.ir", text, strlen(text), NULL, &d);
    char why[200] = "";
    CHECK_MSG(back && itr_program_equal(p, back, why, sizeof why), "round trip: %s", why);
    itr_program_free(back);
    free(text);
    itr_program_free(p);
    // Sum 0.5 > 0: 2x; negated input, sum -0.5: -(-x) = x.
    for (int sign = 1; sign >= -1; sign -= 2) {
        float xv[6];
        for (int i = 0; i < 6; i++) xv[i] = (float)sign * if_x[i];
        struct itr_program *q = import_spec(&s, false, NULL, &d);
        struct itr_tensor_set in;
        itr_tensor_set_init(&in);
        itr_tensor_set_put(&in, "x", f32_tensor(2, (int64_t[]){ 2, 3 }, xv));
        struct itr_tensor *y = q ? run1(q, &in, NULL, "y") : NULL;
        CHECK(y && y->rank == 2 && y->shape[0] == 2 && y->shape[1] == 3);
        for (int i = 0; y && i < 6; i++) CHECK_NEAR(((float *)y->data)[i], sign > 0 ? 2 * xv[i] : -xv[i], 0);
        itr_tensor_free(y);
        itr_tensor_set_free(&in);
        itr_program_free(q);
    }
    itr_diags_free(&d);
    mb_free();
}

TEST(if_with_a_runtime_condition_needs_branches_of_one_type) {
    struct model_spec s = { .opset = 13 };
    int64_t xd[2] = { 2, 3 }, rd[2] = { 2, 1 };
    s.inputs[s.n_inputs++] = vi("x", F32, 2, xd, NULL);
    s.inputs[s.n_inputs++] = vi("c", BOOL, 0, NULL, NULL);
    s.outputs[s.n_outputs++] = vi("y", F32, 2, xd, NULL);
    Onnx__NodeProto *tn = node("double", "Add", 2, (const char *[]){ "x", "x" }, 1, (const char *[]){ "t" }, 0, NULL);
    Onnx__NodeProto *en = node("rowsum", "ReduceSum", 1, (const char *[]){ "x" }, 1, (const char *[]){ "e" }, 0, NULL);
    Onnx__GraphProto *tg = subgraph("then_g", 1, &tn, 0, NULL, 1, (Onnx__ValueInfoProto *[]){ vi("t", F32, 2, xd, NULL) }, 0, NULL);
    Onnx__GraphProto *eg = subgraph("else_g", 1, &en, 0, NULL, 1, (Onnx__ValueInfoProto *[]){ vi("e", F32, 2, rd, NULL) }, 0, NULL);
    s.nodes[s.n_nodes++] = node("choose", "If", 1, (const char *[]){ "c" }, 1, (const char *[]){ "y" }, 2,
                                (Onnx__AttributeProto *[]){ attr_g("then_branch", tg), attr_g("else_branch", eg) });
    import_fails_with(&s, "m.onnx: node 0 'choose' (If, opset 13): its condition is known only at run time, so both "
                          "branches are computed", "it is f32[2, 3] in then_branch and f32[1, 1] in else_branch");
    mb_free();
}

// Loop(M = 4, no condition, s0) with the body
//   s_out = s_in + x * (i + 1)       (x from the enclosing graph)
//   dbl   = 2 * s_out                (stacked)
//   pick  = table[i : i + 1]         (a Slice from the iteration number)
// and cond_out = cond_expr (Identity(cond_in) for the loop that runs M steps).
static void loop_spec(struct model_spec *s, const char *m_name, const char *cond_name, Onnx__NodeProto *cond_node) {
    s->opset = 13;
    int64_t two[1] = { 2 }, four[1] = { 4 }, one1[1] = { 1 }, sd[2] = { 4, 2 }, pd[2] = { 4, 1 };
    static const int64_t M = 4, one = 1, zero = 0;
    static const float table[4] = { 10, 20, 30, 40 }, onef = 1, twof = 2;
    s->inputs[s->n_inputs++] = vi("x", F32, 1, two, NULL);
    s->inputs[s->n_inputs++] = vi("s0", F32, 1, two, NULL);
    s->outputs[s->n_outputs++] = vi("s_final", F32, 1, two, NULL);
    s->outputs[s->n_outputs++] = vi("doubled", F32, 2, sd, NULL);
    s->outputs[s->n_outputs++] = vi("picked", F32, 2, pd, NULL);
    s->inits[s->n_inits++] = tensor("M", I64, 0, NULL, &M);
    s->inits[s->n_inits++] = tensor("table", F32, 1, four, table);
    Onnx__NodeProto *bn[10] = {
        node("fi", "Cast", 1, (const char *[]){ "i" }, 1, (const char *[]){ "fi" }, 1,
             (Onnx__AttributeProto *[]){ attr_i("to", F32) }),
        node("k", "Add", 2, (const char *[]){ "fi", "one_f" }, 1, (const char *[]){ "k" }, 0, NULL),
        node("step", "Mul", 2, (const char *[]){ "x", "k" }, 1, (const char *[]){ "step" }, 0, NULL),
        node("acc", "Add", 2, (const char *[]){ "s_in", "step" }, 1, (const char *[]){ "s_out" }, 0, NULL),
        node("dbl", "Mul", 2, (const char *[]){ "s_out", "two" }, 1, (const char *[]){ "dbl" }, 0, NULL),
        node("i1", "Add", 2, (const char *[]){ "i", "one" }, 1, (const char *[]){ "i1" }, 0, NULL),
        node("start", "Unsqueeze", 2, (const char *[]){ "i", "axes0" }, 1, (const char *[]){ "start" }, 0, NULL),
        node("end", "Unsqueeze", 2, (const char *[]){ "i1", "axes0" }, 1, (const char *[]){ "end" }, 0, NULL),
        node("pick", "Slice", 3, (const char *[]){ "table", "start", "end" }, 1, (const char *[]){ "pick" }, 0, NULL),
        cond_node ? cond_node : node("cond", "Identity", 1, (const char *[]){ "cond_in" }, 1, (const char *[]){ "cond_out" }, 0, NULL),
    };
    Onnx__TensorProto *bi[4] = { tensor("one_f", F32, 0, NULL, &onef), tensor("two", F32, 0, NULL, &twof),
                                 tensor("one", I64, 0, NULL, &one), tensor("axes0", I64, 1, one1, &zero) };
    Onnx__GraphProto *body = subgraph(
        "body", 10, bn, 3,
        (Onnx__ValueInfoProto *[]){ vi("i", I64, 0, NULL, NULL), vi("cond_in", BOOL, 0, NULL, NULL), vi("s_in", F32, 1, two, NULL) },
        4,
        (Onnx__ValueInfoProto *[]){ vi("cond_out", BOOL, 0, NULL, NULL), vi("s_out", F32, 1, two, NULL),
                                    vi("dbl", F32, 1, two, NULL), vi("pick", F32, 1, one1, NULL) },
        4, bi);
    s->nodes[s->n_nodes++] = node("steps", "Loop", 3, (const char *[]){ m_name, cond_name, "s0" }, 3,
                                  (const char *[]){ "s_final", "doubled", "picked" }, 1,
                                  (Onnx__AttributeProto *[]){ attr_g("body", body) });
}

TEST(loop_with_a_known_trip_count_is_a_scan) {
    struct model_spec s = { 0 };
    loop_spec(&s, "M", "", NULL);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); mb_free(); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "forward");
    CHECK(count_op(g, ITR_OP_SCAN) == 1 && count_op(g, ITR_OP_IOTA) == 1);
    char *text = itr_print_program(p);
    CHECK_STR_CONTAINS(text, "def loop_body0(");
    struct itr_program *back = itr_parse_string("back.ir", text, strlen(text), NULL, &d);
    char why[200] = "";
    CHECK_MSG(back && itr_program_equal(p, back, why, sizeof why), "round trip: %s", why);
    itr_program_free(back);
    free(text);
    itr_program_free(p);
    // Hand-computed: after step i, s = s0 + x (1 + ... + (i + 1)).
    const float xv[2] = { 1, -2 }, s0[2] = { 0.5f, 3 };
    const int tri[4] = { 1, 3, 6, 10 };
    const char *outs[3] = { "s_final", "doubled", "picked" };
    for (int o = 0; o < 3; o++) {
        struct itr_program *q = import_spec(&s, false, NULL, &d);
        struct itr_tensor_set in;
        itr_tensor_set_init(&in);
        itr_tensor_set_put(&in, "x", f32_tensor(1, (int64_t[]){ 2 }, xv));
        itr_tensor_set_put(&in, "s0", f32_tensor(1, (int64_t[]){ 2 }, s0));
        struct itr_tensor *y = q ? run1(q, &in, NULL, outs[o]) : NULL;
        CHECK_MSG(y != NULL, "output %s", outs[o]);
        if (y && o == 0) {
            CHECK(y->rank == 1 && y->shape[0] == 2);
            CHECK_NEAR(((float *)y->data)[0], 10.5, 0);
            CHECK_NEAR(((float *)y->data)[1], -17, 0);
        } else if (y && o == 1) {
            CHECK(y->rank == 2 && y->shape[0] == 4 && y->shape[1] == 2);
            for (int i = 0; i < 4 && y->rank == 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(((float *)y->data)[2 * i + j], 2 * (s0[j] + xv[j] * tri[i]), 0);
        } else if (y) {
            CHECK(y->rank == 2 && y->shape[0] == 4 && y->shape[1] == 1);
            for (int i = 0; i < 4 && y->rank == 2; i++) CHECK_NEAR(((float *)y->data)[i], 10 * (i + 1), 0);
        }
        itr_tensor_free(y);
        itr_tensor_set_free(&in);
        itr_program_free(q);
    }
    itr_diags_free(&d);
    mb_free();
}

// A condition known only at run time is an early exit: refused, naming the
// node, the op and the opset.
TEST(loop_with_a_data_dependent_condition_is_refused) {
    // In the body: cond_out = i < 2.
    struct model_spec s = { 0 };
    int64_t two = 2;
    Onnx__NodeProto *less = node("keep_going", "Less", 2, (const char *[]){ "i", "two_i" }, 1,
                                 (const char *[]){ "cond_out" }, 0, NULL);
    loop_spec(&s, "M", "", less);
    s.inits[s.n_inits++] = tensor("two_i", I64, 0, NULL, &two);
    import_fails_with(&s, "m.onnx: node 0 'steps' (Loop, opset 13): Loop with a data-dependent condition is not "
                          "supported: the body's condition output 'cond_out' is computed at run time", NULL);
    mb_free();
    // On entry: the condition is a graph input.
    struct model_spec s2 = { 0 };
    loop_spec(&s2, "M", "go", NULL);
    s2.inputs[s2.n_inputs++] = vi("go", BOOL, 0, NULL, NULL);
    import_fails_with(&s2, "node 0 'steps' (Loop, opset 13): Loop with a data-dependent condition is not supported: its "
                          "condition input 'go' is known only at run time", NULL);
    mb_free();
    // A trip count known only at run time.
    struct model_spec s4 = { 0 };
    loop_spec(&s4, "m_in", "", NULL);
    s4.inputs[s4.n_inputs++] = vi("m_in", I64, 0, NULL, NULL);
    import_fails_with(&s4, "node 0 'steps' (Loop, opset 13): the trip count M ('m_in') must be known when importing", NULL);
    mb_free();
    // No trip count: a while loop.
    struct model_spec s3 = { 0 };
    loop_spec(&s3, "", "", NULL);
    import_fails_with(&s3, "node 0 'steps' (Loop, opset 13): a Loop without a trip count M (a while loop) is not supported", NULL);
    mb_free();
}

// PyTorch's `for i in range(x.size(0))`: M = Shape(x)[0], a dynamic dim, so
// the scan runs N steps whatever N is. The body gathers x[i] by the run-time
// iteration number: a running sum (the final carry) and its prefix sums.
TEST(loop_over_a_dynamic_dim_is_a_scan_of_that_length) {
    struct model_spec s = { .opset = 13 };
    const char *params[] = { "N" };
    int64_t xd[1] = { -1 };
    static const int64_t zero = 0;
    static const float zf = 0;
    s.inputs[s.n_inputs++] = vi("x", F32, 1, xd, params);
    s.outputs[s.n_outputs++] = vi("total", F32, 0, NULL, NULL);
    s.outputs[s.n_outputs++] = vi("prefix", F32, 1, xd, params);
    s.inits[s.n_inits++] = tensor("zero", I64, 0, NULL, &zero);
    s.inits[s.n_inits++] = tensor("s0", F32, 0, NULL, &zf);
    s.nodes[s.n_nodes++] = node("shape", "Shape", 1, (const char *[]){ "x" }, 1, (const char *[]){ "sh" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("n", "Gather", 2, (const char *[]){ "sh", "zero" }, 1, (const char *[]){ "n" }, 0, NULL);
    Onnx__NodeProto *bn[3] = {
        node("xi", "Gather", 2, (const char *[]){ "x", "i" }, 1, (const char *[]){ "xi" }, 0, NULL),
        node("acc", "Add", 2, (const char *[]){ "s_in", "xi" }, 1, (const char *[]){ "s_out" }, 0, NULL),
        node("keep", "Identity", 1, (const char *[]){ "s_out" }, 1, (const char *[]){ "p" }, 0, NULL),
    };
    Onnx__GraphProto *body = subgraph(
        "body", 3, bn, 3,
        (Onnx__ValueInfoProto *[]){ vi("i", I64, 0, NULL, NULL), vi("c", BOOL, 0, NULL, NULL), vi("s_in", F32, 0, NULL, NULL) },
        3,
        (Onnx__ValueInfoProto *[]){ vi("c", BOOL, 0, NULL, NULL), vi("s_out", F32, 0, NULL, NULL), vi("p", F32, 0, NULL, NULL) },
        0, NULL);
    s.nodes[s.n_nodes++] = node("steps", "Loop", 3, (const char *[]){ "n", "", "s0" }, 2,
                                (const char *[]){ "total", "prefix" }, 1, (Onnx__AttributeProto *[]){ attr_g("body", body) });
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p != NULL);
    if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); mb_free(); return; }
    char *text = itr_print_program(p);
    CHECK_STR_CONTAINS(text, "iota(shape=[N])");
    CHECK_STR_CONTAINS(text, "entry forward(x: f32[N]) -> (total, prefix)");
    free(text);
    itr_program_free(p);
    const float xv[5] = { 1, 2, -4, 0.5f, 8 };
    for (int n = 3; n <= 5; n += 2) {
        float want = 0;
        for (int o = 0; o < 2; o++) {
            struct itr_program *q = import_spec(&s, false, NULL, &d);
            struct itr_tensor_set in;
            itr_tensor_set_init(&in);
            itr_tensor_set_put(&in, "x", f32_tensor(1, (int64_t[]){ n }, xv));
            struct itr_tensor *y = q ? run1(q, &in, NULL, o ? "prefix" : "total") : NULL;
            CHECK(y != NULL);
            if (y && o == 0) {
                for (int i = 0; i < n; i++) want += xv[i];
                CHECK(y->rank == 0);
                CHECK_NEAR(((float *)y->data)[0], want, 0);
            } else if (y) {
                CHECK(y->rank == 1 && y->shape[0] == n);
                float run = 0;
                for (int i = 0; i < n && y->rank == 1; i++) {
                    run += xv[i];
                    CHECK_NEAR(((float *)y->data)[i], run, 0);
                }
            }
            itr_tensor_free(y);
            itr_tensor_set_free(&in);
            itr_program_free(q);
        }
    }
    itr_diags_free(&d);
    mb_free();
}

// Slicing past the end by the iteration number: ONNX would give a shorter
// slice (a shape that depends on data); here gather's range check reports
// it when the step runs, rather than reading out of bounds.
TEST(loop_slice_past_the_end_is_a_runtime_error) {
    struct model_spec s = { 0 };
    static const int64_t five = 5;
    loop_spec(&s, "M5", "", NULL);
    s.inits[s.n_inits++] = tensor("M5", I64, 0, NULL, &five);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = import_spec(&s, false, NULL, &d);
    CHECK(p != NULL);
    const float xv[2] = { 1, -2 }, s0[2] = { 0.5f, 3 };
    struct itr_tensor_set in, res;
    itr_tensor_set_init(&in);
    itr_tensor_set_init(&res);
    itr_tensor_set_put(&in, "x", f32_tensor(1, (int64_t[]){ 2 }, xv));
    itr_tensor_set_put(&in, "s0", f32_tensor(1, (int64_t[]){ 2 }, s0));
    struct itr_compile_options co;
    itr_compile_options_init(&co);
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    struct itr_exec_options eo = { 0 };
    const struct itr_graph *g = p && itr_compile_program(p, &co, NULL, &d) ? itr_exec_find_entry(p, "forward", &d) : NULL;
    CHECK(g != NULL);
    CHECK(g && !itr_exec_run(p, g, &in, NULL, &b, &eo, &res, &d));
    char *e = errors_of(&d);
    CHECK_STR_CONTAINS(e, "index 4 is out of range for axis 0 of size 4");
    free(e);
    itr_bindings_free(&b);
    itr_tensor_set_free(&res);
    itr_tensor_set_free(&in);
    itr_program_free(p);
    itr_diags_free(&d);
    mb_free();
}

// Slice(table, j, j + 1) with j an input: the start is known only at run
// time, the length (1) when importing, so it is a gather at j. A negative j
// counts from the end; where ONNX's clamping would change the length (past
// the end, or j = -1 whose end 0 makes it empty) the run fails.
TEST(slice_with_a_runtime_start_and_known_length) {
    struct model_spec s = { .opset = 13 };
    int64_t one1[1] = { 1 }, four[1] = { 4 };
    static const int64_t one = 1;
    static const float table[4] = { 10, 20, 30, 40 };
    s.inputs[s.n_inputs++] = vi("j", I64, 1, one1, NULL);
    s.outputs[s.n_outputs++] = vi("y", F32, 1, one1, NULL);
    s.inits[s.n_inits++] = tensor("one", I64, 0, NULL, &one);
    s.inits[s.n_inits++] = tensor("table", F32, 1, four, table);
    s.nodes[s.n_nodes++] = node("end", "Add", 2, (const char *[]){ "j", "one" }, 1, (const char *[]){ "e" }, 0, NULL);
    s.nodes[s.n_nodes++] = node("pick", "Slice", 3, (const char *[]){ "table", "j", "e" }, 1, (const char *[]){ "y" }, 0, NULL);
    const int64_t js[5] = { 1, -2, 3, 4, -1 };
    const float want[5] = { 20, 30, 40, -1, -1 };   // -1: a run-time error
    for (int t = 0; t < 5; t++) {
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *p = import_spec(&s, false, NULL, &d);
        CHECK(p != NULL);
        if (!p) { itr_diags_print(&d, stderr); itr_diags_free(&d); break; }
        CHECK(count_op(itr_program_find_graph(p, "forward"), ITR_OP_GATHER) == 1);
        struct itr_tensor_set in, res;
        itr_tensor_set_init(&in);
        itr_tensor_set_init(&res);
        struct itr_tensor *jt = itr_tensor_new(ITR_I64, 1, (int64_t[]){ 1 });
        ((int64_t *)jt->data)[0] = js[t];
        itr_tensor_set_put(&in, "j", jt);
        struct itr_compile_options co;
        itr_compile_options_init(&co);
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        struct itr_exec_options eo = { 0 };
        const struct itr_graph *g = itr_compile_program(p, &co, NULL, &d) ? itr_exec_find_entry(p, "forward", &d) : NULL;
        bool ran = g && itr_exec_run(p, g, &in, NULL, &b, &eo, &res, &d);
        struct itr_tensor *y = itr_tensor_set_get(&res, "y");
        if (want[t] >= 0) {
            CHECK_MSG(ran && y && y->rank == 1 && y->shape[0] == 1, "j = %lld", (long long)js[t]);
            if (ran && y) CHECK_NEAR(((float *)y->data)[0], want[t], 0);
        } else {
            CHECK_MSG(!ran, "j = %lld should fail", (long long)js[t]);
            char *e = errors_of(&d);
            CHECK_STR_CONTAINS(e, "index 4 is out of range for axis 0 of size 4");
            free(e);
        }
        itr_bindings_free(&b);
        itr_tensor_set_free(&res);
        itr_tensor_set_free(&in);
        itr_program_free(p);
        itr_diags_free(&d);
    }
    mb_free();
}

// A condition known false on entry runs no step: the carries come out as
// they went in and the stacked outputs are empty.
TEST(loop_with_a_false_condition_runs_no_step) {
    struct model_spec s = { 0 };
    bool f = false;
    loop_spec(&s, "M", "stop", NULL);
    s.inits[s.n_inits++] = tensor("stop", BOOL, 0, NULL, &f);
    struct itr_diags d;
    itr_diags_init(&d);
    const float xv[2] = { 1, -2 }, s0[2] = { 0.5f, 3 };
    const char *outs[2] = { "s_final", "doubled" };
    for (int o = 0; o < 2; o++) {
        struct itr_program *q = import_spec(&s, false, NULL, &d);
        CHECK(q != NULL);
        struct itr_tensor_set in;
        itr_tensor_set_init(&in);
        itr_tensor_set_put(&in, "x", f32_tensor(1, (int64_t[]){ 2 }, xv));
        itr_tensor_set_put(&in, "s0", f32_tensor(1, (int64_t[]){ 2 }, s0));
        struct itr_tensor *y = q ? run1(q, &in, NULL, outs[o]) : NULL;
        CHECK_MSG(y != NULL, "output %s", outs[o]);
        if (y && o == 0) CHECK(y->rank == 1 && ((float *)y->data)[0] == 0.5f && ((float *)y->data)[1] == 3);
        if (y && o == 1) CHECK(y->rank == 2 && y->shape[0] == 0 && y->shape[1] == 2);
        itr_tensor_free(y);
        itr_tensor_set_free(&in);
        itr_program_free(q);
    }
    if (itr_diags_has_errors(&d)) itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    mb_free();
}

int main(void) {
    RUN(unsupported_op_names_node_and_opset);
    RUN(opset_outside_a_rows_range);
    RUN(shape_operand_must_be_known);
    RUN(not_a_model);
    RUN(dynamic_dims_and_shape_arithmetic_fold);
    RUN(initializers_become_parameters_with_weights);
    RUN(initializers_as_constants_need_no_weights);
    RUN(bidirectional_gru_with_sequence_lens_and_dynamic_dims);
    RUN(if_with_a_known_condition_inlines_the_taken_branch);
    RUN(if_with_a_runtime_condition_selects_with_where);
    RUN(if_with_a_runtime_condition_needs_branches_of_one_type);
    RUN(loop_with_a_known_trip_count_is_a_scan);
    RUN(loop_with_a_data_dependent_condition_is_refused);
    RUN(loop_with_a_false_condition_runs_no_step);
    RUN(loop_over_a_dynamic_dim_is_a_scan_of_that_length);
    RUN(loop_slice_past_the_end_is_a_runtime_error);
    RUN(slice_with_a_runtime_start_and_known_length);
    return test_summary();
}
