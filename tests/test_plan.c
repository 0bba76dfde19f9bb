// Plans: pack/unpack round trips, file I/O, the fingerprint, and a reader
// that fails cleanly on every kind of damaged or crafted plan.
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "ir/ir.h"
#include "ir/plan.h"
#include "ir/plan.pb-c.h"
#include "testutil.h"

// ------------------------------------------------------------ a small program

static struct itr_attr *attrs(struct itr_program *p, enum itr_op op) { return itr_attrs_default(p, op); }

static int32_t node1(struct itr_graph *g, enum itr_op op, const int32_t *in, int n, const struct itr_attr *a,
                     const char *scope, struct itr_diags *d) {
    int32_t out[16];
    if (!itr_graph_add_node(g, op, in, n, a, (struct itr_loc){ "tiny.ir", 20 + g->n_nodes, 3 }, scope, out, d)) {
        diags_report("building the test program failed:\n", d);
        abort();
    }
    return out[0];
}

// Covers: symbols with and without defaults, every initialiser, a frozen
// param, attributes of kinds int, float, bool, ints, dims (symbolic), dtype,
// graph and tensor (f32/i64/bool), a multi-result op, a scan over a body
// graph, a renamed value, scopes and locations, and two entry points.
static struct itr_program *build_program(void) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_program_new();
    p->name = itr_program_strdup(p, "tiny");
    p->loc = (struct itr_loc){ "tiny.ir", 1, 1 };
    int32_t B = itr_program_add_symbol(p, "B", 0, false, (struct itr_loc){ "tiny.ir", 2, 7 });
    int32_t L = itr_program_add_symbol(p, "L", 12, true, (struct itr_loc){ "tiny.ir", 2, 10 });
    itr_dim dB = itr_dim_sym(p, B), dL = itr_dim_sym(p, L);
    itr_dim c3 = itr_dim_const(p, 3), c4 = itr_dim_const(p, 4), c10 = itr_dim_const(p, 10);
    struct itr_loc pl = { "tiny.ir", 4, 3 };

    int32_t w = itr_program_add_param(p, "img.fc.w", itr_type_make(ITR_F32, 2, (itr_dim[]){ c4, c3 }),
                                      (struct itr_init){ ITR_INIT_XAVIER_UNIFORM, 1.0, 0 }, false, pl);
    int32_t b = itr_program_add_param(p, "img.fc.b", itr_type_make(ITR_F32, 1, &c3),
                                      (struct itr_init){ ITR_INIT_ZEROS, 0, 0 }, false, pl);
    int32_t emb = itr_program_add_param(p, "txt.emb", itr_type_make(ITR_F32, 2, (itr_dim[]){ c10, c4 }),
                                        (struct itr_init){ ITR_INIT_UNIFORM, -0.1, 0.1 }, false, pl);
    itr_program_add_param(p, "gain", itr_type_make(ITR_F32, 1, &c3), (struct itr_init){ ITR_INIT_ONES, 0, 0 }, true, pl);
    itr_program_add_param(p, "temp", itr_type_make(ITR_F32, 0, NULL), (struct itr_init){ ITR_INIT_CONSTANT, 0.07, 0 },
                          false, ITR_NOLOC);
    itr_program_add_param(p, "noise", itr_type_make(ITR_F64, 1, &c4), (struct itr_init){ ITR_INIT_NORMAL, 0, 0.02 },
                          false, ITR_NOLOC);

    // scan body: (carry h, slice x_t) -> (h + x_t, tanh(h + x_t))
    struct itr_graph *body = itr_program_add_graph(p, "step", ITR_GRAPH_BODY);
    struct itr_type bt4 = itr_type_make(ITR_F32, 2, (itr_dim[]){ dB, c4 });
    int32_t h = itr_graph_add_input(body, "h", bt4, ITR_NOLOC);
    int32_t xt = itr_graph_add_input(body, "x_t", bt4, ITR_NOLOC);
    int32_t nh = node1(body, ITR_OP_ADD, (int32_t[]){ h, xt }, 2, NULL, "txt.rnn", &d);
    int32_t y = node1(body, ITR_OP_TANH, &nh, 1, NULL, "txt.rnn", &d);
    itr_graph_add_output(body, "h", nh);
    itr_graph_add_output(body, "y", y);

    struct itr_graph *g = itr_program_add_graph(p, "forward", ITR_GRAPH_ENTRY);
    g->loc = (struct itr_loc){ "tiny.ir", 10, 3 };
    int32_t x = itr_graph_add_input(g, "x", bt4, (struct itr_loc){ "tiny.ir", 11, 9 });
    int32_t idx = itr_graph_add_input(g, "idx", itr_type_make(ITR_I32, 2, (itr_dim[]){ dB, dL }), ITR_NOLOC);
    int32_t vw = itr_graph_use_param(g, w), vb = itr_graph_use_param(g, b), ve = itr_graph_use_param(g, emb);

    int32_t mm = node1(g, ITR_OP_MATMUL, (int32_t[]){ x, vw }, 2, NULL, "img.fc", &d);
    int32_t hb = node1(g, ITR_OP_ADD, (int32_t[]){ mm, vb }, 2, NULL, "img.fc", &d);
    itr_graph_name_value(g, hb, "hidden");

    struct itr_attr *a = attrs(p, ITR_OP_LEAKY_RELU);
    *attr_slot(a, ITR_OP_LEAKY_RELU, "alpha") = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 0.2 };
    int32_t lr = node1(g, ITR_OP_LEAKY_RELU, &hb, 1, a, NULL, &d);

    a = attrs(p, ITR_OP_SUM);
    int64_t *axes = itr_arena_alloc(p->arena, sizeof(int64_t));
    axes[0] = 1;
    *attr_slot(a, ITR_OP_SUM, "axes") = (struct itr_attr){ .kind = ITR_ATTR_INTS, .u.ints = { axes, 1 } };
    *attr_slot(a, ITR_OP_SUM, "keepdims") = (struct itr_attr){ .kind = ITR_ATTR_BOOL, .u.i = 1 };
    int32_t sm = node1(g, ITR_OP_SUM, &lr, 1, a, NULL, &d);

    a = attrs(p, ITR_OP_CAST);
    *attr_slot(a, ITR_OP_CAST, "dtype") = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = ITR_F64 };
    int32_t cst = node1(g, ITR_OP_CAST, &x, 1, a, NULL, &d);

    a = attrs(p, ITR_OP_RESHAPE);
    itr_dim *rs_dims = itr_arena_alloc(p->arena, sizeof(itr_dim));
    rs_dims[0] = itr_dim_binary(p, ITR_DIM_MUL, dB, c4);
    *attr_slot(a, ITR_OP_RESHAPE, "shape") = (struct itr_attr){ .kind = ITR_ATTR_DIMS, .u.dims = { rs_dims, 1 } };
    int32_t rs = node1(g, ITR_OP_RESHAPE, &x, 1, a, NULL, &d);

    a = attrs(p, ITR_OP_FULL);
    itr_dim *fl_dims = itr_arena_alloc(p->arena, 2 * sizeof(itr_dim));
    fl_dims[0] = dB;
    fl_dims[1] = itr_dim_binary(p, ITR_DIM_SUB, dL, itr_dim_const(p, 1));
    *attr_slot(a, ITR_OP_FULL, "value") = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = 1.5 };
    *attr_slot(a, ITR_OP_FULL, "shape") = (struct itr_attr){ .kind = ITR_ATTR_DIMS, .u.dims = { fl_dims, 2 } };
    int32_t fl = node1(g, ITR_OP_FULL, NULL, 0, a, NULL, &d);

    a = attrs(p, ITR_OP_CONSTANT);
    struct itr_tensor *kt = itr_tensor_new(ITR_I64, 2, (int64_t[]){ 2, 2 });
    for (int i = 0; i < 4; i++) ((int64_t *)kt->data)[i] = (i + 1) * (INT64_C(1) << 40);
    *attr_slot(a, ITR_OP_CONSTANT, "value") = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = kt };
    int32_t k = node1(g, ITR_OP_CONSTANT, NULL, 0, a, NULL, &d);

    a = attrs(p, ITR_OP_CONSTANT);
    struct itr_tensor *mt = itr_tensor_new(ITR_BOOL, 1, (int64_t[]){ 3 });
    ((uint8_t *)mt->data)[0] = 1;
    ((uint8_t *)mt->data)[2] = 1;
    *attr_slot(a, ITR_OP_CONSTANT, "value") = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = mt };
    int32_t mask = node1(g, ITR_OP_CONSTANT, NULL, 0, a, NULL, &d);

    a = attrs(p, ITR_OP_CONSTANT);
    struct itr_tensor *st = itr_tensor_new(ITR_F32, 0, NULL);
    ((float *)st->data)[0] = 0.25f;
    *attr_slot(a, ITR_OP_CONSTANT, "value") = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = st };
    int32_t quarter = node1(g, ITR_OP_CONSTANT, NULL, 0, a, NULL, &d);

    a = attrs(p, ITR_OP_GATHER);
    *attr_slot(a, ITR_OP_GATHER, "axis") = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 0 };
    int32_t e = node1(g, ITR_OP_GATHER, (int32_t[]){ ve, idx }, 2, a, "txt.emb", &d);

    a = attrs(p, ITR_OP_SCAN);
    *attr_slot(a, ITR_OP_SCAN, "body") = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = body };
    *attr_slot(a, ITR_OP_SCAN, "n_carry") = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    *attr_slot(a, ITR_OP_SCAN, "n_scan") = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    *attr_slot(a, ITR_OP_SCAN, "axis") = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 1 };
    int32_t sc[16];
    if (!itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ x, e }, 2, a, ITR_NOLOC, "txt.rnn", sc, &d)) abort();

    a = attrs(p, ITR_OP_TOPK);
    *attr_slot(a, ITR_OP_TOPK, "k") = (struct itr_attr){ .kind = ITR_ATTR_INT, .u.i = 2 };
    *attr_slot(a, ITR_OP_TOPK, "largest") = (struct itr_attr){ .kind = ITR_ATTR_BOOL, .u.i = 0 };
    int32_t tk[16];
    if (!itr_graph_add_node(g, ITR_OP_TOPK, &lr, 1, a, ITR_NOLOC, NULL, tk, &d)) abort();

    itr_graph_add_output(g, "score", sm);
    itr_graph_add_output(g, "h_final", sc[0]);
    itr_graph_add_output(g, "ys", sc[1]);
    itr_graph_add_output(g, "flat", rs);
    itr_graph_add_output(g, "filled", fl);
    itr_graph_add_output(g, "k", k);
    itr_graph_add_output(g, "mask", mask);
    itr_graph_add_output(g, "quarter", quarter);
    itr_graph_add_output(g, "top", tk[0]);
    itr_graph_add_output(g, "top_idx", tk[1]);
    itr_graph_add_output(g, "as_f64", cst);

    // A second entry: score(v, u) = v @ transpose(u, perm = [1, 0])
    struct itr_graph *s = itr_program_add_graph(p, "score", ITR_GRAPH_ENTRY);
    int32_t v = itr_graph_add_input(s, "v", itr_type_make(ITR_F32, 2, (itr_dim[]){ dB, c3 }), ITR_NOLOC);
    int32_t u = itr_graph_add_input(s, "u", itr_type_make(ITR_F32, 2, (itr_dim[]){ dL, c3 }), ITR_NOLOC);
    a = attrs(p, ITR_OP_TRANSPOSE);
    int64_t *perm = itr_arena_alloc(p->arena, 2 * sizeof(int64_t));
    perm[0] = 1;
    perm[1] = 0;
    *attr_slot(a, ITR_OP_TRANSPOSE, "perm") = (struct itr_attr){ .kind = ITR_ATTR_INTS, .u.ints = { perm, 2 } };
    int32_t ut = node1(s, ITR_OP_TRANSPOSE, &u, 1, a, NULL, &d);
    int32_t sim = node1(s, ITR_OP_MATMUL, (int32_t[]){ v, ut }, 2, NULL, NULL, &d);
    itr_graph_add_output(s, "sim", sim);

    itr_diags_free(&d);
    return p;
}

// ------------------------------------------------------------ helpers

// Unpacks buf and expects failure with a message containing needle.
static void expect_fail(const uint8_t *buf, size_t len, const char *needle) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_plan_unpack(buf, len, "x.plan", NULL, &d);
    CHECK_MSG(p == NULL, "expected failure with \"%s\", but the plan loaded", needle);
    itr_program_free(p);
    CHECK(itr_diags_has_errors(&d));
    CHECK_DIAGS_CONTAIN(&d, needle);
    itr_diags_free(&d);
}

static uint8_t *pack(const struct itr_program *p, size_t *len) {
    struct itr_diags d;
    itr_diags_init(&d);
    uint8_t *buf = NULL;
    if (!itr_plan_pack(p, "ref", &buf, len, &d)) {
        diags_report("pack failed: ", &d);
        abort();
    }
    itr_diags_free(&d);
    return buf;
}

// Header fields of the file layout (ir/plan.proto).
enum { HDR = 32 };
static void fix_checksum(uint8_t *buf, size_t len) { put_u64le(buf + 24, XXH64(buf + HDR, len - HDR, 0)); }

// Decodes a plan's message, for tests that craft bad plans field by field.
static Itr__Plan__Plan *decode(const uint8_t *buf, size_t len) {
    Itr__Plan__Plan *m = itr__plan__plan__unpack(NULL, len - HDR, buf + HDR);
    if (!m) abort();
    return m;
}

// Re-serialises a (modified) message with a valid header and checksum.
static uint8_t *encode(const Itr__Plan__Plan *m, size_t *len) {
    size_t body = itr__plan__plan__get_packed_size(m);
    uint8_t *buf = malloc(HDR + body);
    memcpy(buf, "ITRPLAN\0", 8);
    buf[8] = ITR_PLAN_FORMAT_VERSION; buf[9] = buf[10] = buf[11] = 0;
    memset(buf + 12, 0, 4);
    itr__plan__plan__pack(m, buf + HDR);
    put_u64le(buf + 16, body);
    *len = HDR + body;
    fix_checksum(buf, *len);
    return buf;
}

static int find_graph(const Itr__Plan__Plan *m, const char *name) {
    for (size_t i = 0; i < m->n_graphs; i++)
        if (strcmp(m->graphs[i]->name, name) == 0) return (int)i;
    abort();
}

static Itr__Plan__Graph *graph_named(const Itr__Plan__Plan *m, const char *name) { return m->graphs[find_graph(m, name)]; }

// The first node of g with the given op.
static Itr__Plan__Node *node_of_op(const Itr__Plan__Graph *g, const char *op) {
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->op, op) == 0) return g->nodes[i];
    abort();
}

// The first node with the given op in the graph 'forward'.
static Itr__Plan__Node *fwd_node(const Itr__Plan__Plan *m, const char *op) {
    return node_of_op(graph_named(m, "forward"), op);
}

// Applies one modification to a freshly decoded copy of the reference plan
// and expects the reader to reject the result with needle in its message.
typedef void (*mutator)(Itr__Plan__Plan *m);

static void expect_crafted_fail(mutator f, const char *needle) {
    struct itr_program *p = build_program();
    size_t len;
    uint8_t *buf = pack(p, &len);
    Itr__Plan__Plan *m = decode(buf, len);
    f(m);
    size_t len2;
    uint8_t *buf2 = encode(m, &len2);
    expect_fail(buf2, len2, needle);
    itr__plan__plan__free_unpacked(m, NULL);
    free(buf);
    free(buf2);
    itr_program_free(p);
}

// ------------------------------------------------------------ round trips

TEST(pack_unpack_roundtrip) {
    struct itr_program *p = build_program();
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_program_verify(p, &d));
    size_t len;
    uint8_t *buf = pack(p, &len);
    CHECK(len > HDR);
    CHECK(memcmp(buf, "ITRPLAN\0", 8) == 0);
    CHECK(buf[8] == 1 && buf[9] == 0 && buf[10] == 0 && buf[11] == 0);

    struct itr_plan_info info;
    struct itr_program *q = itr_plan_unpack(buf, len, "mem.plan", &info, &d);
    if (!q) {
        char *s = itr_diags_summary(&d);
        FAIL_AT("unpack failed: %s", s);
        free(s);
        free(buf);
        itr_program_free(p);
        itr_diags_free(&d);
        return;
    }
    char why[512] = "";
    CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "programs differ: %s", why);
    CHECK(itr_program_hash(p) == itr_program_hash(q));
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));
    CHECK(strcmp(info.fingerprint, fp) == 0);
    CHECK(info.format_version == ITR_PLAN_FORMAT_VERSION);
    CHECK(strcmp(info.compiler_version, ITR_VERSION_STRING) == 0);
    CHECK(strcmp(info.target, "ref") == 0);

    // Field-by-field, independently of itr_program_equal.
    CHECK(strcmp(q->name, "tiny") == 0);
    CHECK(q->n_symbols == 2 && q->symbols[1].has_default && q->symbols[1].default_value == 12 && !q->symbols[0].has_default);
    CHECK(q->symbols[0].loc.line == 2 && q->symbols[0].loc.col == 7 && strcmp(q->symbols[0].loc.file, "tiny.ir") == 0);
    CHECK(q->n_dimnodes == p->n_dimnodes);
    for (int i = 0; i < p->n_dimnodes && i < q->n_dimnodes; i++) {
        char a[64], b[64];
        itr_dim_format(p, i, a, sizeof a);
        itr_dim_format(q, i, b, sizeof b);
        CHECK_MSG(strcmp(a, b) == 0, "dim %d: %s vs %s", i, a, b);
    }
    CHECK(q->n_params == p->n_params);
    for (int i = 0; i < p->n_params && i < q->n_params; i++) {
        CHECK(strcmp(p->params[i].name, q->params[i].name) == 0);
        CHECK(itr_type_equal(&p->params[i].type, &q->params[i].type));
        CHECK(p->params[i].init.kind == q->params[i].init.kind);
        CHECK(p->params[i].init.a == q->params[i].init.a && p->params[i].init.b == q->params[i].init.b);
        CHECK(p->params[i].frozen == q->params[i].frozen);
    }
    CHECK(q->n_graphs == 3);
    for (int gi = 0; gi < p->n_graphs && gi < q->n_graphs; gi++) {
        const struct itr_graph *a = p->graphs[gi], *b = q->graphs[gi];
        CHECK(strcmp(a->name, b->name) == 0 && a->kind == b->kind);
        CHECK(a->n_values == b->n_values && a->n_nodes == b->n_nodes);
        CHECK(a->n_inputs == b->n_inputs && a->n_outputs == b->n_outputs);
        for (int i = 0; i < a->n_values && i < b->n_values; i++) {
            CHECK_MSG(strcmp(a->values[i].name, b->values[i].name) == 0, "value %d: %s vs %s", i, a->values[i].name,
                      b->values[i].name);
            CHECK(itr_type_equal(&a->values[i].type, &b->values[i].type));
            CHECK(a->values[i].kind == b->values[i].kind && a->values[i].param == b->values[i].param);
        }
        for (int i = 0; i < a->n_nodes && i < b->n_nodes; i++) {
            CHECK(a->nodes[i].op == b->nodes[i].op);
            CHECK((a->nodes[i].scope == NULL) == (b->nodes[i].scope == NULL));
            if (a->nodes[i].scope && b->nodes[i].scope) CHECK(strcmp(a->nodes[i].scope, b->nodes[i].scope) == 0);
            CHECK(a->nodes[i].loc.line == b->nodes[i].loc.line && a->nodes[i].loc.col == b->nodes[i].loc.col);
        }
        for (int i = 0; i < a->n_outputs && i < b->n_outputs; i++) {
            CHECK(a->outputs[i] == b->outputs[i]);
            CHECK(strcmp(a->output_names[i], b->output_names[i]) == 0);
        }
    }
    struct itr_graph *g = itr_program_find_graph(q, "forward");
    CHECK(g != NULL);
    if (g) {
        CHECK(itr_graph_find_value(g, "hidden") >= 0);
        CHECK(g->values[itr_graph_find_value(g, "x")].loc.line == 11);
        for (int i = 0; i < g->n_nodes; i++) {
            const struct itr_node *n = &g->nodes[i];
            if (n->op == ITR_OP_LEAKY_RELU) CHECK(itr_node_attr_float(n, "alpha") == 0.2);
            if (n->op == ITR_OP_SUM) {
                const struct itr_attr *ax = itr_node_attr(n, "axes");
                CHECK(ax->kind == ITR_ATTR_INTS && ax->u.ints.n == 1 && ax->u.ints.v[0] == 1);
                CHECK(itr_node_attr_int(n, "keepdims") == 1);
            }
            if (n->op == ITR_OP_RESHAPE) {
                const struct itr_attr *sh = itr_node_attr(n, "shape");
                char buf2[64];
                CHECK(sh->kind == ITR_ATTR_DIMS && sh->u.dims.n == 1);
                itr_dim_format(q, sh->u.dims.v[0], buf2, sizeof buf2);
                CHECK_MSG(strcmp(buf2, "B*4") == 0, "reshape dim is %s", buf2);
            }
            if (n->op == ITR_OP_FULL) {
                const struct itr_attr *sh = itr_node_attr(n, "shape");
                char buf2[64];
                itr_dim_format(q, sh->u.dims.v[1], buf2, sizeof buf2);
                CHECK_MSG(strcmp(buf2, "L-1") == 0, "full dim is %s", buf2);
            }
            if (n->op == ITR_OP_CAST) CHECK(itr_node_attr(n, "dtype")->u.dtype == ITR_F64);
            if (n->op == ITR_OP_SCAN) {
                CHECK(itr_node_attr(n, "body")->u.graph == itr_program_find_graph(q, "step"));
                CHECK(n->n_outputs == 2);
            }
            if (n->op == ITR_OP_TOPK) CHECK(itr_node_attr_int(n, "largest") == 0);
            if (n->op == ITR_OP_CONSTANT) {
                const struct itr_tensor *t = itr_node_attr(n, "value")->u.tensor;
                if (t->dtype == ITR_I64) {
                    CHECK(t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 2);
                    CHECK(((int64_t *)t->data)[3] == 4 * (INT64_C(1) << 40));
                } else if (t->dtype == ITR_BOOL) {
                    CHECK(t->rank == 1 && ((uint8_t *)t->data)[0] == 1 && ((uint8_t *)t->data)[1] == 0);
                } else {
                    CHECK(t->dtype == ITR_F32 && t->rank == 0 && ((float *)t->data)[0] == 0.25f);
                }
            }
        }
    }
    // Packing the loaded program again gives the same bytes: the format is
    // deterministic and nothing was lost.
    size_t len2;
    uint8_t *buf2 = pack(q, &len2);
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    free(buf);
    itr_program_free(q);
    itr_program_free(p);
    itr_diags_free(&d);
}

TEST(hash_tracks_structure_not_locations) {
    struct itr_program *p = build_program(), *q = build_program();
    CHECK(itr_program_hash(p) == itr_program_hash(q));
    // Locations are not structure.
    q->graphs[1]->nodes[0].loc.line += 100;
    q->params[0].loc.col = 99;
    CHECK(itr_program_hash(p) == itr_program_hash(q));
    // An attribute value is.
    struct itr_graph *g = itr_program_find_graph(q, "forward");
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == ITR_OP_LEAKY_RELU) g->nodes[i].attrs[0].u.f = 0.3;
    CHECK(itr_program_hash(p) != itr_program_hash(q));
    itr_program_free(q);
    // So are a symbol's default, a param's initialiser, and an output name.
    q = build_program();
    q->symbols[1].default_value = 13;
    CHECK(itr_program_hash(p) != itr_program_hash(q));
    itr_program_free(q);
    q = build_program();
    q->params[2].init.b = 0.2;
    CHECK(itr_program_hash(p) != itr_program_hash(q));
    itr_program_free(q);
    q = build_program();
    itr_program_find_graph(q, "score")->output_names[0] = "other";
    CHECK(itr_program_hash(p) != itr_program_hash(q));
    itr_program_free(q);
    itr_program_free(p);
}

TEST(write_read_file) {
    struct itr_program *p = build_program();
    struct itr_diags d;
    itr_diags_init(&d);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/w", tmpdir);
    mkdir(dir, 0755);
    char path[400];
    snprintf(path, sizeof path, "%s/tiny.plan", dir);
    CHECK(itr_plan_write(p, "ref", path, &d));
    CHECK(itr_plan_write(p, "ref", path, &d));   // overwriting works too
    CHECK(count_entries(dir) == 1);          // no temporary file left behind
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    struct itr_plan_info info;
    struct itr_program *q = itr_plan_read(path, &info, &d);
    CHECK(q != NULL);
    if (q) {
        char why[512] = "";
        CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "%s", why);
        CHECK(itr_program_hash(p) == itr_program_hash(q));
        CHECK(strlen(info.fingerprint) == 16);
    }
    CHECK(!itr_diags_has_errors(&d));
    itr_program_free(q);
    itr_program_free(p);
    itr_diags_free(&d);

    // Writing into a directory that does not exist fails with a message.
    itr_diags_init(&d);
    p = build_program();
    CHECK(!itr_plan_write(p, "ref", "/nonexistent-dir/x.plan", &d));
    CHECK_DIAGS_CONTAIN(&d, "/nonexistent-dir/x.plan");
    itr_program_free(p);
    itr_diags_free(&d);
}

// ------------------------------------------------------------ damaged files

// Reading the file at path fails with a message containing needle.
static void expect_read_fail(const char *path, const char *needle) {
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_plan_read(path, NULL, &d) == NULL);
    CHECK_DIAGS_CONTAIN(&d, needle);
    itr_diags_free(&d);
}

TEST(missing_empty_and_foreign_files) {
    expect_read_fail(tmp_path("does-not-exist.plan"), "does-not-exist.plan: cannot open");
    write_bytes(tmp_path("empty.plan"), "", 0);
    expect_read_fail(tmp_path("empty.plan"), "empty.plan: empty file");
    expect_read_fail(ITR_SOURCE_DIR "/tests/fixtures/npy/f32_2x3.npy", "f32_2x3.npy: not an itrc plan (bad magic)");
    expect_read_fail(tmpdir, "is a directory");
    expect_fail((const uint8_t *)"ITRPLAM\0\1\0\0\0", 12, "not an itrc plan (bad magic)");
    expect_fail((const uint8_t *)"hello", 5, "not an itrc plan (bad magic)");
}

TEST(other_format_version) {
    struct itr_program *p = build_program();
    size_t len;
    uint8_t *buf = pack(p, &len);
    buf[8] = 7;
    expect_fail(buf, len, "x.plan: plan format version 7 is not supported by this itr-run (expects 1); recompile it with itrc");
    buf[8] = 0;
    buf[11] = 1;   // 2^24
    expect_fail(buf, len, "plan format version 16777216 is not supported");
    free(buf);
    itr_program_free(p);
}

// A packed plan cut to n bytes; ctx points to its full length.
static void cut_plan_fails(void *ctx, const uint8_t *cut, size_t n) {
    size_t len = *(const size_t *)ctx;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *q = itr_plan_unpack(cut, n, "cut.plan", NULL, &d);
    CHECK_MSG(q == NULL, "a plan cut to %zu of %zu bytes loaded", n, len);
    CHECK_MSG(d.n_errors > 0 && d.n > 0 && strstr(d.items[0].msg, "cut.plan: "), "no message at %zu bytes", n);
    if (n >= 12 && n < len && d.n) CHECK_STR_CONTAINS(d.items[0].msg, "truncated plan");
    itr_program_free(q);
    itr_diags_free(&d);
}

TEST(every_truncation_fails) {
    struct itr_program *p = build_program();
    size_t len;
    uint8_t *buf = pack(p, &len);
    for_each_prefix(buf, len, cut_plan_fails, &len);
    // Extra bytes after the message are corruption too.
    uint8_t *longer = malloc(len + 3);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 3);
    expect_fail(longer, len + 3, "3 unexpected bytes after the plan data");
    free(longer);
    free(buf);
    itr_program_free(p);
}

TEST(checksum_catches_damage) {
    struct itr_program *p = build_program();
    size_t len;
    uint8_t *buf = pack(p, &len);
    buf[len / 2] ^= 0x10;
    expect_fail(buf, len, "checksum mismatch");
    free(buf);
    itr_program_free(p);
}

// Random damage behind a valid checksum, i.e. what a buggy or malicious
// writer could produce: every result is a clean error or a program that
// verifies.
TEST(random_byte_flips) {
    struct itr_program *p = build_program();
    size_t len;
    uint8_t *buf = pack(p, &len);
    uint8_t *copy = malloc(len);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int loaded = 0, rejected = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, buf, len);
        int flips = 1 + iter % 3;
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = HDR + (size_t)((rng >> 33) % (len - HDR));
            uint8_t val = (uint8_t)(rng >> 17);
            if (iter % 2) copy[pos] ^= (uint8_t)(1u << (val & 7));   // one bit
            else copy[pos] = val;                                   // any byte
        }
        fix_checksum(copy, len);
        struct itr_diags d;
        itr_diags_init(&d);
        struct itr_program *q = itr_plan_unpack(copy, len, "fuzz.plan", NULL, &d);
        if (q) {
            loaded++;
            struct itr_diags vd;
            itr_diags_init(&vd);
            CHECK_MSG(itr_program_verify(q, &vd), "iteration %d loaded a program that does not verify", iter);
            itr_diags_free(&vd);
            itr_program_free(q);
        } else {
            rejected++;
            CHECK_MSG(d.n > 0 && d.n_errors > 0, "iteration %d failed without a message", iter);
        }
        itr_diags_free(&d);
    }
    CHECK(rejected > 0);
    printf("random_byte_flips: %d rejected, %d loaded and verified\n", rejected, loaded);
    free(copy);
    free(buf);
    itr_program_free(p);
}

// ------------------------------------------------------------ crafted plans

// Strings in an unpacked message belong to protobuf-c (freed with it).
static void set_str(char **field, const char *v) {
    if (*field && *field != protobuf_c_empty_string) free(*field);
    *field = strdup(v);
}

static void m_unknown_op(Itr__Plan__Plan *m) { set_str(&fwd_node(m, "leaky_relu")->op, "frobnicate"); }
static void m_node_input_range(Itr__Plan__Plan *m) { fwd_node(m, "matmul")->inputs[1] = 999; }
static void m_node_input_forward(Itr__Plan__Plan *m) {
    Itr__Plan__Node *n = fwd_node(m, "matmul");
    n->inputs[0] = n->outputs[0];
}
static void m_value_dim_range(Itr__Plan__Plan *m) { graph_named(m, "forward")->values[0]->dims[0] = 9999; }
static void m_value_dtype(Itr__Plan__Plan *m) { graph_named(m, "forward")->values[0]->dtype = 77; }
static void m_dim_operand_range(Itr__Plan__Plan *m) {
    for (size_t i = 0; i < m->n_dims; i++)
        if (m->dims[i]->kind == ITR__PLAN__DIM_KIND__DIM_MUL) { m->dims[i]->b = (int32_t)i; return; }
    abort();
}
static void m_dim_symbol_range(Itr__Plan__Plan *m) {
    for (size_t i = 0; i < m->n_dims; i++)
        if (m->dims[i]->kind == ITR__PLAN__DIM_KIND__DIM_SYM) { m->dims[i]->value = 5; return; }
    abort();
}
static void m_dim_kind(Itr__Plan__Plan *m) { m->dims[0]->kind = 42; }
static void m_dim_duplicate(Itr__Plan__Plan *m) {
    // Make the second constant equal to the first one: the pool is hash-consed.
    int first = -1;
    for (size_t i = 0; i < m->n_dims; i++)
        if (m->dims[i]->kind == ITR__PLAN__DIM_KIND__DIM_CONST) {
            if (first < 0) first = (int)i;
            else { m->dims[i]->value = m->dims[first]->value; return; }
        }
    abort();
}
static void m_dim_const_fold_overflow(Itr__Plan__Plan *m) {
    // An ADD of two constants, one of them INT64_MAX: must be rejected
    // without ever being folded (which would overflow).
    m->dims[0]->kind = ITR__PLAN__DIM_KIND__DIM_CONST;
    m->dims[0]->value = INT64_MAX;
    for (size_t i = 1; i < m->n_dims; i++)
        if (m->dims[i]->kind == ITR__PLAN__DIM_KIND__DIM_MUL) {
            m->dims[i]->kind = ITR__PLAN__DIM_KIND__DIM_ADD;
            m->dims[i]->a = 0;
            m->dims[i]->b = 0;
            return;
        }
    abort();
}
static void m_param_range(Itr__Plan__Plan *m) {
    Itr__Plan__Graph *g = graph_named(m, "forward");
    for (size_t i = 0; i < g->n_values; i++)
        if (g->values[i]->kind == ITR__PLAN__VALUE_KIND__VALUE_PARAM) { g->values[i]->param = 100; return; }
    abort();
}
static void m_param_init(Itr__Plan__Plan *m) { m->params[0]->init = 99; }
static void m_param_dup(Itr__Plan__Plan *m) { set_str(&m->params[1]->name, m->params[0]->name); }
static void m_graph_attr_range(Itr__Plan__Plan *m) {
    Itr__Plan__Node *n = fwd_node(m, "scan");
    for (size_t j = 0; j < n->n_attrs; j++)
        if (n->attrs[j]->value_case == ITR__PLAN__ATTRIBUTE__VALUE_GRAPH) n->attrs[j]->graph = 42;
}
static void m_graph_cycle(Itr__Plan__Plan *m) {
    int fw = find_graph(m, "forward");
    Itr__Plan__Node *n = fwd_node(m, "scan");
    for (size_t j = 0; j < n->n_attrs; j++)
        if (n->attrs[j]->value_case == ITR__PLAN__ATTRIBUTE__VALUE_GRAPH) n->attrs[j]->graph = fw;
}
static void m_body_is_entry(Itr__Plan__Plan *m) { graph_named(m, "step")->kind = ITR__PLAN__GRAPH_KIND__GRAPH_ENTRY; }
static void m_attr_kind(Itr__Plan__Plan *m) {
    Itr__Plan__Node *n = fwd_node(m, "leaky_relu");
    n->attrs[0]->value_case = ITR__PLAN__ATTRIBUTE__VALUE_I;
    n->attrs[0]->i = 3;
}
static void m_attr_unknown(Itr__Plan__Plan *m) { set_str(&fwd_node(m, "leaky_relu")->attrs[0]->name, "beta"); }
static void m_attr_missing(Itr__Plan__Plan *m) {
    Itr__Plan__Node *n = fwd_node(m, "cast");
    for (size_t j = 0; j < n->n_attrs; j++) itr__plan__attribute__free_unpacked(n->attrs[j], NULL);
    n->n_attrs = 0;
}
static void m_attr_dims_range(Itr__Plan__Plan *m) { fwd_node(m, "reshape")->attrs[0]->dims->v[0] = -3; }
static void m_tensor_size(Itr__Plan__Plan *m) { fwd_node(m, "constant")->attrs[0]->tensor->data.len -= 1; }
static void m_tensor_shape(Itr__Plan__Plan *m) { fwd_node(m, "constant")->attrs[0]->tensor->shape[0] = -1; }
static void m_tensor_overflow(Itr__Plan__Plan *m) {
    Itr__Plan__Tensor *t = fwd_node(m, "constant")->attrs[0]->tensor;
    t->shape[0] = INT64_C(1) << 40;
    t->shape[1] = INT64_C(1) << 40;
}
static void m_output_type(Itr__Plan__Plan *m) {
    Itr__Plan__Graph *g = graph_named(m, "forward");
    Itr__Plan__Node *n = node_of_op(g, "matmul");
    g->values[n->outputs[0]]->dtype = ITR__PLAN__DTYPE__DTYPE_F64;
}
static void m_op_rules(Itr__Plan__Plan *m) {
    // matmul of x with itself: [B, 4] x [B, 4] has mismatched inner dims.
    Itr__Plan__Node *n = fwd_node(m, "matmul");
    n->inputs[1] = n->inputs[0];
}
static void m_graph_output_range(Itr__Plan__Plan *m) { graph_named(m, "score")->outputs[0] = -1; }
static void m_graph_input_not_input(Itr__Plan__Plan *m) {
    Itr__Plan__Graph *g = graph_named(m, "score");
    g->inputs[1] = g->inputs[0];
}
static void m_value_name_dup(Itr__Plan__Plan *m) {
    Itr__Plan__Graph *g = graph_named(m, "score");
    set_str(&g->values[1]->name, g->values[0]->name);
}
static void m_graph_name_dup(Itr__Plan__Plan *m) { set_str(&graph_named(m, "score")->name, "forward"); }
static void m_symbol_dup(Itr__Plan__Plan *m) { set_str(&m->symbols[1]->name, "B"); }
static void m_fingerprint(Itr__Plan__Plan *m) { set_str(&m->fingerprint, "0123456789abcdef"); }
static void m_version_inside(Itr__Plan__Plan *m) { m->format_version = 2; }
static void m_scope_change(Itr__Plan__Plan *m) {
    // Consistent but different from what was fingerprinted.
    set_str(&fwd_node(m, "matmul")->scope, "elsewhere");
}

TEST(crafted_plans_fail_cleanly) {
    expect_crafted_fail(m_unknown_op, "graph 'forward' node 2: unknown op 'frobnicate'");
    expect_crafted_fail(m_node_input_range, "operand 1 refers to value 999");
    expect_crafted_fail(m_node_input_forward, "before it is defined");
    expect_crafted_fail(m_value_dim_range, "refers to dim expression 9999");
    expect_crafted_fail(m_value_dtype, "invalid dtype code 77");
    expect_crafted_fail(m_dim_operand_range, "must refer to earlier expressions");
    expect_crafted_fail(m_dim_symbol_range, "refers to symbol 5, the plan has 2");
    expect_crafted_fail(m_dim_kind, "invalid kind 42");
    expect_crafted_fail(m_dim_duplicate, "not in canonical form");
    expect_crafted_fail(m_dim_const_fold_overflow, "not in canonical form");
    expect_crafted_fail(m_param_range, "refers to parameter 100");
    expect_crafted_fail(m_param_init, "invalid initialiser code 99");
    expect_crafted_fail(m_param_dup, "parameter 'img.fc.w' is declared twice");
    expect_crafted_fail(m_graph_attr_range, "refers to graph 42");
    expect_crafted_fail(m_graph_cycle, "refers to itself");
    expect_crafted_fail(m_body_is_entry, "is an entry point, not a scan body");
    expect_crafted_fail(m_attr_kind, "attribute 'alpha' of op 'leaky_relu' must be float, the plan has int");
    expect_crafted_fail(m_attr_unknown, "op 'leaky_relu' has no attribute 'beta'");
    expect_crafted_fail(m_attr_missing, "missing required attribute 'dtype'");
    expect_crafted_fail(m_attr_dims_range, "refers to dim expression -3");
    expect_crafted_fail(m_tensor_size, "attribute 'value': tensor i64[2, 2] needs 32 bytes, the plan holds 31");
    expect_crafted_fail(m_tensor_shape, "negative or overflowing");
    expect_crafted_fail(m_tensor_overflow, "negative or overflowing");
    expect_crafted_fail(m_output_type, "the op's shape rule gives f32[B, 3]");
    expect_crafted_fail(m_op_rules, "does not satisfy the op's rules");
    expect_crafted_fail(m_graph_output_range, "output 0 refers to value -1");
    expect_crafted_fail(m_graph_input_not_input, "input 1 refers to value");
    expect_crafted_fail(m_value_name_dup, "graph 'score': value name 'v' is used twice");
    expect_crafted_fail(m_graph_name_dup, "graph 'forward' is defined twice");
    expect_crafted_fail(m_symbol_dup, "symbol 'B' is declared twice");
    expect_crafted_fail(m_fingerprint, "fingerprint mismatch");
    expect_crafted_fail(m_version_inside, "the message says format version 2");
    expect_crafted_fail(m_scope_change, "fingerprint mismatch");
}

// An empty program (no graphs) is a valid plan too.
TEST(empty_program) {
    struct itr_program *p = itr_program_new();
    size_t len;
    uint8_t *buf = pack(p, &len);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *q = itr_plan_unpack(buf, len, "empty", NULL, &d);
    CHECK(q != NULL);
    if (q) {
        CHECK(q->n_graphs == 0 && q->name == NULL);
        CHECK(itr_program_hash(p) == itr_program_hash(q));
    }
    itr_program_free(q);
    itr_program_free(p);
    free(buf);
    itr_diags_free(&d);
}

int main(void) {
    if (!tmpdir_create("plan")) return 1;
    RUN(pack_unpack_roundtrip);
    RUN(hash_tracks_structure_not_locations);
    RUN(write_read_file);
    RUN(missing_empty_and_foreign_files);
    RUN(other_format_version);
    RUN(every_truncation_fails);
    RUN(checksum_catches_damage);
    RUN(random_byte_flips);
    RUN(crafted_plans_fail_cleanly);
    RUN(empty_program);
    tmpdir_remove();
    return test_summary();
}
