// The reference interpreter as a whole: binding dims from inputs and
// params (and the errors that name the tensor and both shapes), scans,
// f32 against f64 runs, run-time errors that must not crash, outputs that
// alias inputs, and single-node runs for constant folding.
#include <stdlib.h>
#include <time.h>

#include "backends/ref/ref.h"
#include "ir/arena.h"
#include "ir/bind.h"
#include "testutil.h"

static struct itr_type T(enum itr_dtype dt, int rank, const itr_dim *dims) { return itr_type_make(dt, rank, dims); }

// A new symbolic dim without a default.
static itr_dim sym(struct itr_program *p, const char *name) {
    return itr_dim_sym(p, itr_program_add_symbol(p, name, 0, false, ITR_NOLOC));
}

// Attributes of a scan over body with one carry and one scanned operand.
static struct itr_attr *scan1_attrs(struct itr_program *p, struct itr_graph *body) {
    struct itr_attr *a = itr_attrs_default(p, ITR_OP_SCAN);
    attr_slot(a, ITR_OP_SCAN, "body")->u.graph = body;
    attr_slot(a, ITR_OP_SCAN, "n_carry")->u.i = 1;
    attr_slot(a, ITR_OP_SCAN, "n_scan")->u.i = 1;
    return a;
}

static int32_t add1(struct itr_graph *g, enum itr_op op, const struct itr_attr *a, int n, const int32_t *ins,
                    struct itr_diags *d) {
    int32_t o[4] = { -1, -1, -1, -1 };
    if (!itr_graph_add_node(g, op, ins, n, a, ITR_NOLOC, NULL, o, d)) diags_report("building the test graph failed: ", d);
    return o[0];
}
#define IN1(x) 1, (int32_t[]){ x }
#define IN2(x, y) 2, (int32_t[]){ x, y }

// ------------------------------------------------------------ binding

TEST(binding_errors_name_tensor_and_shapes) {
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t N = itr_program_add_symbol(p, "N", 0, false, ITR_NOLOC);
    itr_dim n = itr_dim_sym(p, N), c36 = itr_dim_const(p, 36), c2048 = itr_dim_const(p, 2048);
    struct itr_graph *g = itr_program_add_graph(p, "encode_image", ITR_GRAPH_ENTRY);
    int32_t r = itr_graph_add_input(g, "regions", T(ITR_F32, DIMS(n, c36, c2048)), ITR_NOLOC);
    int32_t ids = itr_graph_add_input(g, "ids", T(ITR_I64, DIMS(n)), ITR_NOLOC);
    struct itr_attr *ma = itr_attrs_default(p, ITR_OP_MEAN);
    int64_t ax = 1;
    attr_slot(ma, ITR_OP_MEAN, "axes")->u.ints = (typeof(ma->u.ints)){ &ax, 1 };
    int32_t m = add1(g, ITR_OP_MEAN, ma, IN1(r), &d);
    itr_graph_add_output(g, "pooled", m);
    itr_graph_add_output(g, "ids", ids);

    struct itr_tensor *good = mk(ITR_F32, SHAPE(4, 36, 2048), NULL), *bad = mk(ITR_F32, SHAPE(4, 36, 1024), NULL);
    struct itr_tensor *ids4 = mk(ITR_I64, SHAPE(4), NULL), *ids5 = mk(ITR_I64, SHAPE(5), NULL);
    struct itr_tensor *ids_i32 = mk(ITR_I32, SHAPE(4), NULL), *ids_2d = mk(ITR_I64, SHAPE(4, 1), NULL);
    struct itr_tensor *out[2] = { NULL, NULL };

    // Each run is refused with no outputs. N is bound by regions first, so
    // ids of length 5 conflicts.
    struct { struct itr_tensor *in[2]; const char *msg; } refused[] = {
        { { bad, ids4 }, "input 'regions': expected f32[N, 36, 2048] = [4, 36, 2048], got f32[4, 36, 1024]" },
        { { good, ids5 }, "input 'ids': expected i64[N] = [4], got i64[5]" },
        { { good, ids_i32 }, "input 'ids': expected i64[N] = [4], got i32[4]; dtype i32 where i64 is expected" },
        { { good, ids_2d }, "input 'ids': expected i64[N] = [4], got i64[4, 1]; rank 2 where 1 is expected" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(!itr_ref_run(g, refused[i].in, NULL, NULL, NULL, out, &d));
        CHECK_DIAGS_CONTAIN(&d, refused[i].msg);
        CHECK(out[0] == NULL && out[1] == NULL);
        diags_reset(&d);
    }

    // a binding given by the caller is checked too, and the run writes N back
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    CHECK(itr_bindings_set(&b, p, "N", 3, &d));
    CHECK(!itr_ref_run(g, (struct itr_tensor *[]){ good, ids4 }, NULL, &b, NULL, out, &d));
    CHECK_DIAGS_CONTAIN(&d, "expected f32[N, 36, 2048] = [3, 36, 2048], got f32[4, 36, 2048]");
    itr_bindings_free(&b);
    diags_reset(&d);
    itr_bindings_init(&b, p);
    CHECK(itr_ref_run(g, (struct itr_tensor *[]){ good, ids4 }, NULL, &b, NULL, out, &d));
    CHECK(b.bound[N] && b.value[N] == 4);
    CHECK(out[0] && out[0]->rank == 2 && out[0]->shape[0] == 4 && out[0]->shape[1] == 2048);
    // an output that is an input comes back as a copy
    CHECK(out[1] && out[1] != ids4 && out[1]->data != ids4->data && out[1]->shape[0] == 4);
    itr_tensor_free(out[0]);
    itr_tensor_free(out[1]);
    itr_bindings_free(&b);

    // bindings API: unknown names, conflicts
    itr_bindings_init(&b, p);
    CHECK(!itr_bindings_set(&b, p, "Q", 1, &d));
    CHECK(itr_bindings_set(&b, p, "N", 2, &d));
    CHECK(!itr_bindings_set(&b, p, "N", 3, &d));
    CHECK_DIAGS_CONTAIN(&d, "no dim named 'Q'");
    CHECK_DIAGS_CONTAIN(&d, "dim N = 3 conflicts with its earlier binding N = 2");
    itr_bindings_free(&b);

    itr_tensor_free(good);
    itr_tensor_free(bad);
    itr_tensor_free(ids4);
    itr_tensor_free(ids5);
    itr_tensor_free(ids_i32);
    itr_tensor_free(ids_2d);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(binding_expressions_defaults_and_params) {
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    int32_t B = itr_program_add_symbol(p, "B", 0, false, ITR_NOLOC), L = itr_program_add_symbol(p, "L", 0, false, ITR_NOLOC);
    int32_t R = itr_program_add_symbol(p, "R", 36, true, ITR_NOLOC), V = itr_program_add_symbol(p, "V", 0, false, ITR_NOLOC);
    itr_dim b = itr_dim_sym(p, B), l = itr_dim_sym(p, L), r = itr_dim_sym(p, R), v = itr_dim_sym(p, V);
    itr_dim bl = itr_dim_binary(p, ITR_DIM_MUL, b, l);
    struct itr_graph *g = itr_program_add_graph(p, "g", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "flat", T(ITR_F32, DIMS(bl)), ITR_NOLOC);
    int32_t y = itr_graph_add_input(g, "lengths", T(ITR_I32, DIMS(b)), ITR_NOLOC);
    int32_t wp = itr_program_add_param(p, "w", T(ITR_F32, DIMS(r)), (struct itr_init){ ITR_INIT_ZEROS, 0, 0 }, false,
                                       ITR_NOLOC);
    int32_t w = itr_graph_use_param(g, wp);
    struct itr_attr *ra = itr_attrs_default(p, ITR_OP_RESHAPE);
    attr_slot(ra, ITR_OP_RESHAPE, "shape")->u.dims = (typeof(ra->u.dims)){ (itr_dim[]){ b, l }, 2 };
    int32_t x2 = add1(g, ITR_OP_RESHAPE, ra, IN1(x), &d);
    itr_graph_add_output(g, "x2", x2);
    itr_graph_add_output(g, "w", w);
    itr_graph_add_output(g, "lengths", y);

    // B from 'lengths', then L solved from B*L = 12; R from w
    struct itr_tensor *flat = mk(ITR_F32, SHAPE(12), NULL), *len3 = mk(ITR_I32, SHAPE(3), NULL);
    struct itr_tensor *w36 = mk(ITR_F32, SHAPE(36), NULL), *w10 = mk(ITR_F32, SHAPE(10), NULL);
    struct itr_tensor *out[3] = { NULL, NULL, NULL };
    struct itr_dim_bindings bd;
    itr_bindings_init(&bd, p);
    CHECK(itr_ref_run(g, (struct itr_tensor *[]){ flat, len3 }, (struct itr_tensor *[]){ w36 }, &bd, NULL, out, &d));
    CHECK(bd.bound[L] && bd.value[L] == 4 && bd.value[B] == 3 && bd.value[R] == 36 && !bd.bound[V]);
    CHECK(out[0] && out[0]->rank == 2 && out[0]->shape[0] == 3 && out[0]->shape[1] == 4);
    CHECK(out[1] && out[1] != w36 && out[1]->shape[0] == 36);
    for (int i = 0; i < 3; i++) itr_tensor_free(out[i]);
    itr_bindings_free(&bd);

    // a tensor binds R before its default does
    CHECK(itr_ref_run(g, (struct itr_tensor *[]){ flat, len3 }, (struct itr_tensor *[]){ w10 }, NULL, NULL, out, &d));
    CHECK(out[1] && out[1]->shape[0] == 10);
    for (int i = 0; i < 3; i++) itr_tensor_free(out[i]);
    // a param of the wrong shape, or none
    itr_bindings_init(&bd, p);
    CHECK(itr_bindings_set(&bd, p, "R", 36, &d));
    CHECK(!itr_ref_run(g, (struct itr_tensor *[]){ flat, len3 }, (struct itr_tensor *[]){ w10 }, &bd, NULL, out, &d));
    itr_bindings_free(&bd);
    CHECK(!itr_ref_run(g, (struct itr_tensor *[]){ flat, len3 }, (struct itr_tensor *[]){ NULL }, NULL, NULL, out, &d));
    CHECK_DIAGS_CONTAIN(&d, "param 'w': expected f32[R] = [36], got f32[10]");
    CHECK_DIAGS_CONTAIN(&d, "param 'w': no tensor given");
    // a size that B*L cannot match: 13 = 3 * L has no integer solution
    struct itr_tensor *flat13 = mk(ITR_F32, SHAPE(13), NULL);
    diags_reset(&d);
    CHECK(!itr_ref_run(g, (struct itr_tensor *[]){ flat13, len3 }, (struct itr_tensor *[]){ w36 }, NULL, NULL, out, &d));
    CHECK_DIAGS_CONTAIN(&d, "input 'flat': expected f32[B*L]");

    // an unbound symbol in a result type
    struct itr_graph *g2 = itr_program_add_graph(p, "g2", ITR_GRAPH_ENTRY);
    struct itr_attr *fa = itr_attrs_default(p, ITR_OP_FULL);
    attr_slot(fa, ITR_OP_FULL, "value")->u.f = 1;
    attr_slot(fa, ITR_OP_FULL, "shape")->u.dims = (typeof(fa->u.dims)){ (itr_dim[]){ v }, 1 };
    int32_t f = add1(g2, ITR_OP_FULL, fa, 0, NULL, &d);
    itr_graph_add_output(g2, "f", f);
    diags_reset(&d);
    CHECK(!itr_ref_run(g2, NULL, NULL, NULL, NULL, out, &d));
    CHECK_DIAGS_CONTAIN(&d, "dim V is not bound");
    itr_bindings_init(&bd, p);
    CHECK(itr_bindings_set(&bd, p, "V", 2, &d));
    CHECK(itr_ref_run(g2, NULL, NULL, &bd, NULL, out, &d));
    CHECK(out[0] && out[0]->shape[0] == 2 && ((float *)out[0]->data)[1] == 1.0f);
    itr_tensor_free(out[0]);
    itr_bindings_free(&bd);

    itr_tensor_free(flat);
    itr_tensor_free(flat13);
    itr_tensor_free(len3);
    itr_tensor_free(w36);
    itr_tensor_free(w10);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ scan

// cumsum over axis 0 of xs [L, D] with carry s [D]; reverse gives suffix sums.
static void cumsum_case(bool reverse, bool f64) {
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim L = sym(p, "L"), D = itr_dim_const(p, 2);
    struct itr_graph *body = itr_program_add_graph(p, "step", ITR_GRAPH_BODY);
    int32_t s = itr_graph_add_input(body, "s", T(ITR_F32, DIMS(D)), ITR_NOLOC);
    int32_t x = itr_graph_add_input(body, "x", T(ITR_F32, DIMS(D)), ITR_NOLOC);
    int32_t s2 = add1(body, ITR_OP_ADD, NULL, IN2(s, x), &d);
    itr_graph_add_output(body, "s", s2);
    itr_graph_add_output(body, "y", s2);
    struct itr_graph *g = itr_program_add_graph(p, "main", ITR_GRAPH_ENTRY);
    int32_t s0 = itr_graph_add_input(g, "s0", T(ITR_F32, DIMS(D)), ITR_NOLOC);
    int32_t xs = itr_graph_add_input(g, "xs", T(ITR_F32, DIMS(L, D)), ITR_NOLOC);
    struct itr_attr *a = scan1_attrs(p, body);
    attr_slot(a, ITR_OP_SCAN, "reverse")->u.i = reverse;
    int32_t o[2];
    CHECK(itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ s0, xs }, 2, a, ITR_NOLOC, NULL, o, &d));
    itr_graph_add_output(g, "total", o[0]);
    itr_graph_add_output(g, "running", o[1]);

    const double xv[8] = { 1, 10, 2, 20, 3, 30, 4, 40 };
    struct itr_tensor *in[2] = { mk(ITR_F32, SHAPE(2), VALS(100, 0)), mk(ITR_F32, SHAPE(4, 2), xv) };
    struct itr_tensor *out[2] = { NULL, NULL };
    struct itr_ref_options opt = { f64 };
    CHECK(itr_ref_run(g, in, NULL, NULL, &opt, out, &d));
    // expected by direct summation
    double want[8], acc[2] = { 100, 0 };
    for (int k = 0; k < 4; k++) {
        int t = reverse ? 3 - k : k;
        for (int j = 0; j < 2; j++) {
            acc[j] += xv[t * 2 + j];
            want[t * 2 + j] = acc[j];
        }
    }
    CHECK(out[0] && out[0]->dtype == (f64 ? ITR_F64 : ITR_F32));
    CHECK(out[0] && itr_tensor_get(out[0], 0) == 110 && itr_tensor_get(out[0], 1) == 100);
    CHECK(out[1] && out[1]->rank == 2 && out[1]->shape[0] == 4 && out[1]->shape[1] == 2);
    for (int i = 0; out[1] && i < 8; i++)
        CHECK_MSG(itr_tensor_get(out[1], i) == want[i], "reverse=%d element %d: %g vs %g", reverse, i,
                  itr_tensor_get(out[1], i), want[i]);
    for (int i = 0; i < 2; i++) itr_tensor_free(out[i]);
    itr_tensor_free(in[1]);

    // an empty sequence returns the initial carry and an empty stack
    in[1] = mk(ITR_F32, SHAPE(0, 2), NULL);
    CHECK(itr_ref_run(g, in, NULL, NULL, &opt, out, &d));
    CHECK(out[0] && itr_tensor_get(out[0], 0) == 100);
    CHECK(out[1] && out[1]->shape[0] == 0);
    for (int i = 0; i < 2; i++) itr_tensor_free(out[i]);
    itr_tensor_free(in[0]);
    itr_tensor_free(in[1]);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(scan_cumsum) { cumsum_case(false, false); cumsum_case(false, true); }
TEST(scan_reverse_cumsum) { cumsum_case(true, false); cumsum_case(true, true); }

TEST(scan_body_error_is_reported) {
    // body divides an integer carry by the step's element: a zero errors out
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_graph *body = itr_program_add_graph(p, "step", ITR_GRAPH_BODY);
    int32_t c = itr_graph_add_input(body, "c", T(ITR_I64, 0, NULL), ITR_NOLOC);
    int32_t x = itr_graph_add_input(body, "x", T(ITR_I64, 0, NULL), ITR_NOLOC);
    int32_t q = add1(body, ITR_OP_DIV, NULL, IN2(c, x), &d);
    itr_graph_add_output(body, "c", q);
    struct itr_graph *g = itr_program_add_graph(p, "main", ITR_GRAPH_ENTRY);
    itr_dim three = itr_dim_const(p, 3);
    int32_t c0 = itr_graph_add_input(g, "c0", T(ITR_I64, 0, NULL), ITR_NOLOC);
    int32_t xs = itr_graph_add_input(g, "xs", T(ITR_I64, DIMS(three)), ITR_NOLOC);
    struct itr_attr *a = scan1_attrs(p, body);
    int32_t o;
    CHECK(itr_graph_add_node(g, ITR_OP_SCAN, (int32_t[]){ c0, xs }, 2, a, (struct itr_loc){ "m.ir", 4, 9 }, NULL, &o, &d));
    itr_graph_add_output(g, "c", o);
    struct itr_tensor *in[2] = { mk(ITR_I64, 0, NULL, VALS(100)), mk(ITR_I64, SHAPE(3), VALS(2, -3, 7)) };
    struct itr_tensor *out = NULL;
    CHECK(itr_ref_run(g, in, NULL, NULL, NULL, &out, &d));
    CHECK(out && itr_tensor_get(out, 0) == -3);   // 100/2 = 50, 50//-3 = -17, -17//7 = -3
    itr_tensor_free(out);
    out = NULL;
    itr_tensor_set(in[1], 1, 0);
    CHECK(!itr_ref_run(g, in, NULL, NULL, NULL, &out, &d));
    CHECK(out == NULL);
    CHECK_DIAGS_CONTAIN(&d, "op 'div': integer division by zero");
    CHECK_DIAGS_CONTAIN(&d, "4:9: in step 1 of the scan over 'step'");
    itr_tensor_free(in[0]);
    itr_tensor_free(in[1]);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ a small network in f32 and f64

TEST(two_layer_mlp_f32_vs_f64) {
    // y = sigmoid(relu(x @ w1 + b1) @ w2), x [B, 8], w1 [8, 16], w2 [16, 4]
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim B = sym(p, "B");
    itr_dim c8 = itr_dim_const(p, 8), c16 = itr_dim_const(p, 16), c4 = itr_dim_const(p, 4);
    struct itr_init z = { ITR_INIT_ZEROS, 0, 0 };
    int32_t pw1 = itr_program_add_param(p, "l1.w", T(ITR_F32, DIMS(c8, c16)), z, false, ITR_NOLOC);
    int32_t pb1 = itr_program_add_param(p, "l1.b", T(ITR_F32, DIMS(c16)), z, false, ITR_NOLOC);
    int32_t pw2 = itr_program_add_param(p, "l2.w", T(ITR_F32, DIMS(c16, c4)), z, false, ITR_NOLOC);
    struct itr_graph *g = itr_program_add_graph(p, "forward", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", T(ITR_F32, DIMS(B, c8)), ITR_NOLOC);
    int32_t w1 = itr_graph_use_param(g, pw1), b1 = itr_graph_use_param(g, pb1), w2 = itr_graph_use_param(g, pw2);
    int32_t h = add1(g, ITR_OP_MATMUL, NULL, IN2(x, w1), &d);
    h = add1(g, ITR_OP_ADD, NULL, IN2(h, b1), &d);
    h = add1(g, ITR_OP_RELU, NULL, IN1(h), &d);
    h = add1(g, ITR_OP_MATMUL, NULL, IN2(h, w2), &d);
    int32_t y = add1(g, ITR_OP_SIGMOID, NULL, IN1(h), &d);
    itr_graph_add_output(g, "y", y);

    // deterministic pseudo-random values in [-1, 1)
    uint32_t st = 12345;
    double xv[5 * 8], w1v[128], b1v[16], w2v[64];
    double *arrs[4] = { xv, w1v, b1v, w2v };
    int lens[4] = { 40, 128, 16, 64 };
    for (int a = 0; a < 4; a++)
        for (int i = 0; i < lens[a]; i++) {
            st = st * 1664525u + 1013904223u;
            arrs[a][i] = (float)((st >> 8) / 8388608.0 - 1.0);
        }
    struct itr_tensor *xt = mk(ITR_F32, SHAPE(5, 8), xv);
    struct itr_tensor *params[3] = { mk(ITR_F32, SHAPE(8, 16), w1v), mk(ITR_F32, SHAPE(16), b1v),
                                     mk(ITR_F32, SHAPE(16, 4), w2v) };
    struct itr_tensor *y32 = NULL, *y64 = NULL;
    struct itr_ref_options o32 = { false }, o64 = { true };
    CHECK(itr_ref_run(g, &xt, params, NULL, &o32, &y32, &d));
    CHECK(itr_ref_run(g, &xt, params, NULL, &o64, &y64, &d));
    CHECK(y32 && y32->dtype == ITR_F32 && y32->shape[0] == 5 && y32->shape[1] == 4);
    CHECK(y64 && y64->dtype == ITR_F64 && y64->shape[0] == 5 && y64->shape[1] == 4);
    // the same network computed directly in double
    for (int bi = 0; bi < 5 && y32 && y64; bi++) {
        double hid[16];
        for (int j = 0; j < 16; j++) {
            double s = b1v[j];
            for (int k = 0; k < 8; k++) s += xv[bi * 8 + k] * w1v[k * 16 + j];
            hid[j] = s > 0 ? s : 0;
        }
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += hid[k] * w2v[k * 4 + j];
            double want = 1 / (1 + exp(-s));
            CHECK_NEAR(itr_tensor_get(y64, bi * 4 + j), want, 1e-13);
            CHECK_NEAR(itr_tensor_get(y32, bi * 4 + j), want, 1e-6);
        }
    }
    itr_tensor_free(y32);
    itr_tensor_free(y64);
    itr_tensor_free(xt);
    for (int i = 0; i < 3; i++) itr_tensor_free(params[i]);
    itr_diags_free(&d);
    itr_program_free(p);
}

// ------------------------------------------------------------ run-time errors

TEST(gather_out_of_range_is_an_error) {
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim V = itr_dim_const(p, 5), D = itr_dim_const(p, 3);
    itr_dim B = sym(p, "B"), L = sym(p, "L");
    struct itr_graph *g = itr_program_add_graph(p, "encode_text", ITR_GRAPH_ENTRY);
    int32_t tab = itr_graph_add_input(g, "table", T(ITR_F32, DIMS(V, D)), ITR_NOLOC);
    int32_t w = itr_graph_add_input(g, "words", T(ITR_I32, DIMS(B, L)), ITR_NOLOC);
    int32_t e;
    CHECK(itr_graph_add_node(g, ITR_OP_GATHER, (int32_t[]){ tab, w }, 2, NULL, (struct itr_loc){ "vsepp.ir", 3, 7 },
                             "embed", &e, &d));
    int32_t m = add1(g, ITR_OP_RELU, NULL, IN1(e), &d);
    itr_graph_add_output(g, "emb", m);
    struct itr_tensor *t = mk(ITR_F32, SHAPE(5, 3), NULL), *ok_w = mk(ITR_I32, SHAPE(2, 2), VALS(0, 4, 1, 2));
    struct itr_tensor *bad_w = mk(ITR_I32, SHAPE(2, 2), VALS(0, 4, 10, 2));
    struct itr_tensor *out = NULL;
    CHECK(itr_ref_run(g, (struct itr_tensor *[]){ t, ok_w }, NULL, NULL, NULL, &out, &d));
    itr_tensor_free(out);
    out = NULL;
    CHECK(!itr_ref_run(g, (struct itr_tensor *[]){ t, bad_w }, NULL, NULL, NULL, &out, &d));
    CHECK(out == NULL);
    CHECK_DIAGS_CONTAIN(&d, "3:7: op 'gather' (in embed): index 10 is out of range for axis 0 of size 5 (index element [1, 0])");
    CHECK(d.n_errors == 1 && d.items[0].loc.file && strcmp(d.items[0].loc.file, "vsepp.ir") == 0);
    itr_tensor_free(t);
    itr_tensor_free(ok_w);
    itr_tensor_free(bad_w);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(runtime_shape_checks) {
    // reshape [N, 4] -> [B, 8] cannot be decided at compile time
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim N = sym(p, "N"), B = sym(p, "B"), L = sym(p, "L");
    struct itr_graph *g = itr_program_add_graph(p, "g", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", T(ITR_F32, DIMS(N, itr_dim_const(p, 4))), ITR_NOLOC);
    struct itr_attr *ra = itr_attrs_default(p, ITR_OP_RESHAPE);
    attr_slot(ra, ITR_OP_RESHAPE, "shape")->u.dims = (typeof(ra->u.dims)){ (itr_dim[]){ B, itr_dim_const(p, 8) }, 2 };
    int32_t y = add1(g, ITR_OP_RESHAPE, ra, IN1(x), &d);
    itr_graph_add_output(g, "y", y);
    struct itr_tensor *xt = mk(ITR_F32, SHAPE(4, 4), NULL), *out = NULL;
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_bindings_set(&b, p, "B", 3, &d);
    CHECK(!itr_ref_run(g, &xt, NULL, &b, NULL, &out, &d));
    CHECK_DIAGS_CONTAIN(&d, "op 'reshape': operand of shape [4, 4] has 16 elements; the result shape [3, 8] has 24");
    itr_bindings_free(&b);
    itr_bindings_init(&b, p);
    itr_bindings_set(&b, p, "B", 2, &d);
    CHECK(itr_ref_run(g, &xt, NULL, &b, NULL, &out, &d));
    itr_tensor_free(out);
    itr_bindings_free(&b);
    itr_tensor_free(xt);

    // slice [2:5] of a symbolic L is declared 3 long; with L = 4 numpy gives 2
    struct itr_graph *g2 = itr_program_add_graph(p, "g2", ITR_GRAPH_ENTRY);
    int32_t v = itr_graph_add_input(g2, "v", T(ITR_F32, DIMS(L)), ITR_NOLOC);
    struct itr_attr *sa = itr_attrs_default(p, ITR_OP_SLICE);
    static int64_t ax[1] = { 0 }, st[1] = { 2 }, en[1] = { 5 };
    attr_slot(sa, ITR_OP_SLICE, "axes")->u.ints = (typeof(sa->u.ints)){ ax, 1 };
    attr_slot(sa, ITR_OP_SLICE, "starts")->u.ints = (typeof(sa->u.ints)){ st, 1 };
    attr_slot(sa, ITR_OP_SLICE, "ends")->u.ints = (typeof(sa->u.ints)){ en, 1 };
    int32_t sv = add1(g2, ITR_OP_SLICE, sa, IN1(v), &d);
    itr_graph_add_output(g2, "s", sv);
    struct itr_tensor *v4 = mk(ITR_F32, SHAPE(4), VALS(0, 1, 2, 3)), *v6 = mk(ITR_F32, SHAPE(6), VALS(0, 1, 2, 3, 4, 5));
    diags_reset(&d);
    CHECK(!itr_ref_run(g2, &v4, NULL, NULL, NULL, &out, &d));
    CHECK_DIAGS_CONTAIN(&d, "axis 0 of [4] slices to 2 elements, but the result dim 3 is 3 here");
    CHECK(itr_ref_run(g2, &v6, NULL, NULL, NULL, &out, &d));
    CHECK(out && out->shape[0] == 3 && itr_tensor_get(out, 0) == 2 && itr_tensor_get(out, 2) == 4);
    itr_tensor_free(out);
    itr_tensor_free(v4);
    itr_tensor_free(v6);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(outputs_alias_and_repeat) {
    // the same value returned twice, and an intermediate used by two nodes
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim two = itr_dim_const(p, 2);
    struct itr_graph *g = itr_program_add_graph(p, "g", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", T(ITR_F32, DIMS(two)), ITR_NOLOC);
    int32_t e = add1(g, ITR_OP_EXP, NULL, IN1(x), &d);
    int32_t a = add1(g, ITR_OP_ADD, NULL, IN2(e, e), &d);
    int32_t m = add1(g, ITR_OP_MUL, NULL, IN2(a, x), &d);
    add1(g, ITR_OP_NEG, NULL, IN1(m), &d);   // a result nobody reads
    itr_graph_add_output(g, "m", m);
    itr_graph_add_output(g, "m_again", m);
    itr_graph_add_output(g, "x", x);
    struct itr_tensor *xt = mk(ITR_F32, SHAPE(2), VALS(0, 1)), *out[3] = { NULL, NULL, NULL };
    CHECK(itr_ref_run(g, &xt, NULL, NULL, NULL, out, &d));
    CHECK(out[0] && out[1] && out[2] && out[0] != out[1] && out[0]->data != out[1]->data && out[2] != xt);
    CHECK_NEAR(itr_tensor_get(out[0], 0), 0, 0);
    CHECK_NEAR(itr_tensor_get(out[1], 1), (float)(2 * exp(1.0)), 1e-6);
    CHECK_NEAR(itr_tensor_get(out[2], 1), 1, 0);
    for (int i = 0; i < 3; i++) itr_tensor_free(out[i]);
    itr_tensor_free(xt);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(run_single_node) {
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim three = itr_dim_const(p, 3);
    struct itr_graph *g = itr_program_add_graph(p, "g", ITR_GRAPH_ENTRY);
    int32_t x = itr_graph_add_input(g, "x", T(ITR_F32, DIMS(three)), ITR_NOLOC);
    int32_t y = itr_graph_add_input(g, "y", T(ITR_F32, DIMS(three)), ITR_NOLOC);
    add1(g, ITR_OP_SUB, NULL, IN2(x, y), &d);
    struct itr_tensor *a = mk(ITR_F32, SHAPE(3), VALS(5, 6, 7)), *b = mk(ITR_F32, SHAPE(3), VALS(1, 2, 3));
    struct itr_tensor *out = NULL;
    CHECK(itr_ref_run_node(g, &g->nodes[0], (struct itr_tensor *[]){ a, b }, NULL, NULL, &out, &d));
    CHECK(out && out->dtype == ITR_F32 && itr_tensor_get(out, 2) == 4);
    itr_tensor_free(out);
    out = NULL;
    struct itr_ref_options o64 = { true };
    CHECK(itr_ref_run_node(g, &g->nodes[0], (struct itr_tensor *[]){ a, b }, NULL, &o64, &out, &d));
    CHECK(out && out->dtype == ITR_F64 && itr_tensor_get(out, 0) == 4);
    itr_tensor_free(out);
    out = NULL;
    struct itr_tensor *c = mk(ITR_F32, SHAPE(2), NULL);
    CHECK(!itr_ref_run_node(g, &g->nodes[0], (struct itr_tensor *[]){ a, c }, NULL, NULL, &out, &d));
    CHECK_DIAGS_CONTAIN(&d, "operand 1 ('y') of op 'sub': expected f32[3], got f32[2]");
    itr_tensor_free(a);
    itr_tensor_free(b);
    itr_tensor_free(c);
    itr_diags_free(&d);
    itr_program_free(p);
}

TEST(matmul_moderate_size_matches_naive) {
    // [48, 96] x [96, 40] batched by 2, compared with a naive triple loop
    struct itr_program *p = itr_program_new();
    struct itr_diags d;
    itr_diags_init(&d);
    itr_dim c2 = itr_dim_const(p, 2), m = itr_dim_const(p, 48), k = itr_dim_const(p, 96), n = itr_dim_const(p, 40);
    struct itr_graph *g = itr_program_add_graph(p, "g", ITR_GRAPH_ENTRY);
    int32_t a = itr_graph_add_input(g, "a", T(ITR_F32, DIMS(c2, m, k)), ITR_NOLOC);
    int32_t b = itr_graph_add_input(g, "b", T(ITR_F32, DIMS(k, n)), ITR_NOLOC);
    itr_graph_add_output(g, "c", add1(g, ITR_OP_MATMUL, NULL, IN2(a, b), &d));
    struct itr_tensor *at = itr_tensor_new(ITR_F32, 3, (int64_t[]){ 2, 48, 96 });
    struct itr_tensor *bt = itr_tensor_new(ITR_F32, 2, (int64_t[]){ 96, 40 });
    float *av = at->data, *bv = bt->data;
    for (int i = 0; i < 2 * 48 * 96; i++) av[i] = (float)((i * 37 % 101) - 50) / 25.0f;
    for (int i = 0; i < 96 * 40; i++) bv[i] = (float)((i * 53 % 97) - 48) / 24.0f;
    struct itr_tensor *ct = NULL;
    CHECK(itr_ref_run(g, (struct itr_tensor *[]){ at, bt }, NULL, NULL, NULL, &ct, &d));
    int bad = 0;
    for (int q = 0; ct && q < 2; q++)
        for (int i = 0; i < 48; i++)
            for (int j = 0; j < 40; j++) {
                double s = 0;
                for (int l = 0; l < 96; l++) s += (double)av[q * 48 * 96 + i * 96 + l] * bv[l * 40 + j];
                if (fabs(((float *)ct->data)[(q * 48 + i) * 40 + j] - s) > 1e-4 * (1 + fabs(s))) bad++;
            }
    CHECK(ct && bad == 0);
    itr_tensor_free(ct);
    itr_tensor_free(at);
    itr_tensor_free(bt);
    itr_diags_free(&d);
    itr_program_free(p);
}

int main(void) {
    RUN(binding_errors_name_tensor_and_shapes);
    RUN(binding_expressions_defaults_and_params);
    RUN(scan_cumsum);
    RUN(scan_reverse_cumsum);
    RUN(scan_body_error_is_reported);
    RUN(two_layer_mlp_f32_vs_f64);
    RUN(gather_out_of_range_is_an_error);
    RUN(runtime_shape_checks);
    RUN(outputs_alias_and_repeat);
    RUN(run_single_node);
    RUN(matmul_moderate_size_matches_naive);
    return test_summary();
}
