// Shape inference (ir/op_shapes.c) on symbolic dims: results as dim
// expressions, and user errors whose messages name the op, the location,
// the problem with its dims, and every operand with its type.
#include <stdlib.h>

#include "ir/arena.h"
#include "ir/ir.h"
#include "testutil.h"

// ------------------------------------------------------------ harness

struct ctx {
    struct itr_program *p;
    struct itr_graph *g;
    struct itr_diags d;
    itr_dim B, L, N, L1, L2, V, D;
    char tbuf[8][256];
    int tnext;
    char *err;
};

static void setup(struct ctx *c) {
    memset(c, 0, sizeof *c);
    c->p = itr_program_new();
    c->g = itr_program_add_graph(c->p, "main", ITR_GRAPH_ENTRY);
    itr_diags_init(&c->d);
    const char *names[] = { "B", "L", "N", "L1", "L2", "V", "D" };
    itr_dim *dims[] = { &c->B, &c->L, &c->N, &c->L1, &c->L2, &c->V, &c->D };
    for (int i = 0; i < 7; i++) *dims[i] = itr_dim_sym(c->p, itr_program_add_symbol(c->p, names[i], 0, false, ITR_NOLOC));
}

static void teardown(struct ctx *c) {
    free(c->err);
    itr_diags_free(&c->d);
    itr_program_free(c->p);
}

static itr_dim K(struct ctx *c, int64_t v) { return itr_dim_const(c->p, v); }

#define IDS(...) (int)(sizeof((int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t)), (int32_t[]){ __VA_ARGS__ }

static int32_t input(struct ctx *c, const char *name, enum itr_dtype dt, int rank, const itr_dim *dims) {
    return itr_graph_add_input(c->g, name, itr_type_make(dt, rank, dims), ITR_NOLOC);
}

// The formatted type of a value ("f32[B*L, 4]"); a few buffers rotate.
static const char *ty(struct ctx *c, int32_t v) {
    char *b = c->tbuf[c->tnext++ % 8];
    if (v < 0) return "(none)";
    itr_type_format(c->p, &c->g->values[v].type, b, 256);
    return b;
}

// Adds a node; on failure keeps the diagnostics' summary in c->err.
static bool node_at(struct ctx *c, enum itr_op op, const struct itr_attr *a, int n, const int32_t *ins, int32_t *outs,
                    struct itr_loc loc) {
    for (int i = 0; i < 4; i++) outs[i] = -1;
    bool ok = itr_graph_add_node(c->g, op, ins, n, a, loc, NULL, outs, &c->d);
    free(c->err);
    c->err = itr_diags_summary(&c->d);
    return ok;
}
static bool node(struct ctx *c, enum itr_op op, const struct itr_attr *a, int n, const int32_t *ins, int32_t *outs) {
    return node_at(c, op, a, n, ins, outs, ITR_NOLOC);
}

static struct itr_attr *attrs(struct ctx *c, enum itr_op op) { return itr_attrs_default(c->p, op); }
static void aint(struct itr_attr *a, enum itr_op op, const char *name, int64_t v) { attr_slot(a, op, name)->u.i = v; }
static void aflt(struct itr_attr *a, enum itr_op op, const char *name, double v) { attr_slot(a, op, name)->u.f = v; }
static void adt(struct itr_attr *a, enum itr_op op, const char *name, enum itr_dtype v) { attr_slot(a, op, name)->u.dtype = v; }
static void aints(struct ctx *c, struct itr_attr *a, enum itr_op op, const char *name, int n, const int64_t *v) {
    struct itr_attr *s = attr_slot(a, op, name);
    s->u.ints.n = n;
    s->u.ints.v = itr_arena_alloc(c->p->arena, (size_t)(n ? n : 1) * sizeof *v);
    if (n) memcpy(s->u.ints.v, v, (size_t)n * sizeof *v);
}
static void adims(struct ctx *c, struct itr_attr *a, enum itr_op op, const char *name, int n, const itr_dim *v) {
    struct itr_attr *s = attr_slot(a, op, name);
    s->u.dims.n = n;
    s->u.dims.v = itr_arena_memdup(c->p->arena, v, (size_t)(n ? n : 1) * sizeof *v);
}

// A one-attribute op applied to one operand; returns the result id or -1.
static int32_t reshape(struct ctx *c, int32_t x, int n, const itr_dim *shape) {
    struct itr_attr *a = attrs(c, ITR_OP_RESHAPE);
    adims(c, a, ITR_OP_RESHAPE, "shape", n, shape);
    int32_t o[4];
    return node(c, ITR_OP_RESHAPE, a, 1, &x, o) ? o[0] : -1;
}

static int32_t slice1(struct ctx *c, int32_t x, int64_t axis, int64_t s, int64_t e, int64_t k) {
    struct itr_attr *a = attrs(c, ITR_OP_SLICE);
    aints(c, a, ITR_OP_SLICE, "axes", 1, &axis);
    aints(c, a, ITR_OP_SLICE, "starts", 1, &s);
    aints(c, a, ITR_OP_SLICE, "ends", 1, &e);
    aints(c, a, ITR_OP_SLICE, "steps", 1, &k);
    int32_t o[4];
    return node(c, ITR_OP_SLICE, a, 1, &x, o) ? o[0] : -1;
}

// ------------------------------------------------------------ tests

TEST(reshape_symbolic) {
    struct ctx c;
    setup(&c);
    int32_t x = input(&c, "x", ITR_F32, DIMS(c.B, c.L, K(&c, 4)));
    itr_dim BL = itr_dim_binary(c.p, ITR_DIM_MUL, c.B, c.L);
    int32_t y = reshape(&c, x, DIMS(BL, K(&c, 4)));
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B*L, 4]");
    // -1 is inferred by cancelling factors: the same handle as B*L
    y = reshape(&c, x, DIMS(K(&c, -1), K(&c, 4)));
    CHECK(y >= 0 && c.g->values[y].type.dims[0] == BL);
    y = reshape(&c, x, DIMS(c.B, K(&c, -1)));
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B, L*4]");
    // the product in another grouping and order is still the same count
    itr_dim LB4 = itr_dim_binary(c.p, ITR_DIM_MUL, itr_dim_binary(c.p, ITR_DIM_MUL, c.L, K(&c, 4)), c.B);
    CHECK(reshape(&c, x, DIMS(LB4)) >= 0);
    // provably different: same symbols, different constant factor
    CHECK(reshape(&c, x, DIMS(BL, K(&c, 5))) < 0);
    CHECK_STR_CONTAINS(c.err, "op 'reshape': element counts differ");
    CHECK_STR_CONTAINS(c.err, "x: f32[B, L, 4]");
    // cannot be decided at compile time: accepted, checked at run time
    CHECK(reshape(&c, x, DIMS(c.N, K(&c, 4))) >= 0);
    // constants
    int32_t z = input(&c, "z", ITR_I32, DIMS(K(&c, 6), K(&c, 4)));
    CHECK_STR_CONTAINS(ty(&c, reshape(&c, z, DIMS(K(&c, 3), K(&c, -1)))), "i32[3, 8]");
    CHECK(reshape(&c, z, DIMS(K(&c, 5), K(&c, 5))) < 0);
    CHECK_STR_CONTAINS(c.err, "element counts differ: i32[6, 4] has 24 elements, target shape i32[5, 5] has 25");
    CHECK(reshape(&c, z, DIMS(K(&c, -1), K(&c, 5))) < 0);
    CHECK_STR_CONTAINS(c.err, "cannot infer the -1 dim");
    CHECK(reshape(&c, z, DIMS(K(&c, -1), K(&c, -1))) < 0);
    CHECK_STR_CONTAINS(c.err, "at most one dim");
    teardown(&c);
}

TEST(slice_symbolic) {
    struct ctx c;
    setup(&c);
    int32_t x = input(&c, "x", ITR_F32, DIMS(c.B, c.L));
    itr_dim Lm1 = itr_dim_binary(c.p, ITR_DIM_SUB, c.L, K(&c, 1));
    int32_t y = slice1(&c, x, 1, 0, -1, 1);
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B, L-1]");
    CHECK(y >= 0 && c.g->values[y].type.dims[1] == Lm1);
    y = slice1(&c, x, 1, 1, INT64_MAX, 1);
    CHECK(y >= 0 && c.g->values[y].type.dims[1] == Lm1);
    y = slice1(&c, x, -1, 1, -1, 1);
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B, L-2]");
    y = slice1(&c, x, 1, 0, INT64_MAX, 2);
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B, (L+1)/2]");
    y = slice1(&c, x, 1, -3, INT64_MAX, 1);
    CHECK_STR_CONTAINS(ty(&c, y), "f32[B, 3]");
    y = slice1(&c, x, 0, 2, 5, 1);
    CHECK_STR_CONTAINS(ty(&c, y), "f32[3, L]");
    CHECK(slice1(&c, x, 1, 5, 0, -1) < 0);
    CHECK_STR_CONTAINS(c.err, "negative step needs a constant axis size; axis 1 has size L");
    CHECK(slice1(&c, x, 2, 0, 1, 1) < 0);
    CHECK_STR_CONTAINS(c.err, "axis 2 is out of range for rank 2");
    int32_t k = input(&c, "k", ITR_F32, DIMS(K(&c, 10)));
    CHECK_STR_CONTAINS(ty(&c, slice1(&c, k, 0, 1, -1, 1)), "f32[8]");
    CHECK_STR_CONTAINS(ty(&c, slice1(&c, k, 0, -1, -11, -3)), "f32[4]");
    teardown(&c);
}

TEST(concat_and_pad_symbolic) {
    struct ctx c;
    setup(&c);
    int32_t a = input(&c, "a", ITR_F32, DIMS(c.B, c.L1, K(&c, 4)));
    int32_t b = input(&c, "b", ITR_F32, DIMS(c.B, c.L2, K(&c, 4)));
    struct itr_attr *at = attrs(&c, ITR_OP_CONCAT);
    aint(at, ITR_OP_CONCAT, "axis", 1);
    int32_t o[4];
    CHECK(node(&c, ITR_OP_CONCAT, at, IDS(a, b), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L1+L2, 4]");
    CHECK(o[0] >= 0 && c.g->values[o[0]].type.dims[1] == itr_dim_binary(c.p, ITR_DIM_ADD, c.L2, c.L1));
    aint(at, ITR_OP_CONCAT, "axis", 0);
    CHECK(!node(&c, ITR_OP_CONCAT, at, IDS(a, b), o));
    CHECK_STR_CONTAINS(c.err, "operand 1 differs from operand 0 in dim 1 (L2 vs L1)");
    int32_t i = input(&c, "i", ITR_I32, DIMS(c.B, c.L2, K(&c, 4)));
    aint(at, ITR_OP_CONCAT, "axis", 1);
    CHECK(!node(&c, ITR_OP_CONCAT, at, IDS(a, i), o));
    CHECK_STR_CONTAINS(c.err, "dtypes differ: f32 vs i32");
    // padding L-1 by one on each side gives L+1; by (1, 0) gives L back
    int32_t s = slice1(&c, a, 1, 0, -1, 1);
    struct itr_attr *pa = attrs(&c, ITR_OP_PAD);
    aints(&c, pa, ITR_OP_PAD, "pads", INTS(0, 0, 1, 1, 0, 2));
    CHECK(node(&c, ITR_OP_PAD, pa, 1, &s, o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L1+1, 6]");
    aints(&c, pa, ITR_OP_PAD, "pads", INTS(0, 0, 1, 0, 0, 0));
    CHECK(node(&c, ITR_OP_PAD, pa, 1, &s, o));
    CHECK(o[0] >= 0 && c.g->values[o[0]].type.dims[1] == c.L1);
    aints(&c, pa, ITR_OP_PAD, "pads", INTS(0, 0, -1, 0, 0, 0));
    CHECK(!node(&c, ITR_OP_PAD, pa, 1, &s, o));
    CHECK_STR_CONTAINS(c.err, "negative");
    teardown(&c);
}

TEST(matmul_messages) {
    struct ctx c;
    setup(&c);
    int32_t x = input(&c, "x", ITR_F32, DIMS(c.N, K(&c, 2048)));
    int32_t w = input(&c, "img_fc.weight", ITR_F32, DIMS(K(&c, 1024), K(&c, 1024)));
    int32_t o[4];
    struct itr_loc loc = { "vsepp.ir", 12, 22 };
    CHECK(!node_at(&c, ITR_OP_MATMUL, NULL, IDS(x, w), o, loc));
    CHECK_STR_CONTAINS(c.err, "12:22: op 'matmul': inner dimensions differ: 2048 vs 1024 (operands: x: f32[N, 2048], "
                              "img_fc.weight: f32[1024, 1024])");
    CHECK(c.d.n_errors == 1 && c.d.items[0].loc.file && strcmp(c.d.items[0].loc.file, "vsepp.ir") == 0);
    // batched with symbolic batch dims broadcasting
    int32_t q = input(&c, "q", ITR_F32, DIMS(c.B, K(&c, 1), c.L, c.D));
    int32_t k = input(&c, "k", ITR_F32, DIMS(c.N, c.D, c.L2));
    CHECK(node(&c, ITR_OP_MATMUL, NULL, IDS(q, k), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, N, L, L2]");
    int32_t v = input(&c, "v", ITR_F32, DIMS(c.D));
    CHECK(!node(&c, ITR_OP_MATMUL, NULL, IDS(q, v), o));
    CHECK_STR_CONTAINS(c.err, "rank >= 2");
    int32_t b1 = input(&c, "b1", ITR_F32, DIMS(c.B, c.L, c.D)), b2 = input(&c, "b2", ITR_F32, DIMS(c.N, c.D, c.D));
    CHECK(!node(&c, ITR_OP_MATMUL, NULL, IDS(b1, b2), o));
    CHECK_STR_CONTAINS(c.err, "do not broadcast");
    int32_t bb = input(&c, "bb", ITR_BOOL, DIMS(c.D, c.D));
    CHECK(!node(&c, ITR_OP_MATMUL, NULL, IDS(bb, bb), o));
    CHECK_STR_CONTAINS(c.err, "numeric");
    teardown(&c);
}

TEST(broadcasting) {
    struct ctx c;
    setup(&c);
    int32_t a = input(&c, "a", ITR_F32, DIMS(c.B, K(&c, 1), K(&c, 3)));
    int32_t b = input(&c, "b", ITR_F32, DIMS(c.L, K(&c, 1)));
    int32_t o[4];
    CHECK(node(&c, ITR_OP_ADD, NULL, IDS(a, b), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L, 3]");
    int32_t e = input(&c, "e", ITR_F32, DIMS(c.L, K(&c, 3)));
    int32_t f = input(&c, "f", ITR_F32, DIMS(c.B, K(&c, 3)));
    CHECK(!node(&c, ITR_OP_MUL, NULL, IDS(e, f), o));
    CHECK_STR_CONTAINS(c.err, "op 'mul': operands 0 and 1 do not broadcast: dimension -2 is L vs B "
                              "(operands: e: f32[L, 3], f: f32[B, 3])");
    int32_t cond = input(&c, "m", ITR_BOOL, DIMS(c.B, K(&c, 1), K(&c, 1)));
    CHECK(node(&c, ITR_OP_WHERE, NULL, IDS(cond, e, e), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L, 3]");
    CHECK(!node(&c, ITR_OP_WHERE, NULL, IDS(e, e, e), o));
    CHECK_STR_CONTAINS(c.err, "condition (operand 0) must be bool, got f32");
    CHECK(node(&c, ITR_OP_LT, NULL, IDS(a, b), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "bool[B, L, 3]");
    teardown(&c);
}

TEST(wrong_dtypes) {
    struct ctx c;
    setup(&c);
    int32_t f = input(&c, "f", ITR_F32, DIMS(c.B));
    int32_t i = input(&c, "i", ITR_I32, DIMS(c.B));
    int32_t l = input(&c, "l", ITR_I64, DIMS(c.B));
    int32_t o[4];
    CHECK(!node(&c, ITR_OP_ADD, NULL, IDS(f, i), o));
    CHECK_STR_CONTAINS(c.err, "dtypes differ: f32 vs i32");
    CHECK(!node(&c, ITR_OP_EXP, NULL, IDS(l), o));
    CHECK_STR_CONTAINS(c.err, "op 'exp': operand 0 must be a float tensor (f32 or f64), got i64 (operands: l: i64[B])");
    CHECK(!node(&c, ITR_OP_MEAN, NULL, IDS(i), o));
    CHECK_STR_CONTAINS(c.err, "mean needs a float operand, got i32");
    CHECK(node(&c, ITR_OP_SUM, NULL, IDS(i), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "i32[]");
    CHECK(!node(&c, ITR_OP_GATHER, NULL, IDS(f, f), o));
    CHECK_STR_CONTAINS(c.err, "index (operand 1) must be i32 or i64, got f32");
    struct itr_attr *ca = attrs(&c, ITR_OP_CAST);
    adt(ca, ITR_OP_CAST, "dtype", ITR_BOOL);
    CHECK(node(&c, ITR_OP_CAST, ca, IDS(f), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "bool[B]");
    // random: seed must be an integer scalar, results floats
    struct itr_attr *ra = attrs(&c, ITR_OP_RANDOM_UNIFORM);
    adims(&c, ra, ITR_OP_RANDOM_UNIFORM, "shape", DIMS(c.B, K(&c, 2)));
    int32_t seed = input(&c, "seed", ITR_I64, 0, NULL), fseed = input(&c, "fseed", ITR_F32, 0, NULL);
    CHECK(node(&c, ITR_OP_RANDOM_UNIFORM, ra, IDS(seed), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, 2]");
    CHECK(!node(&c, ITR_OP_RANDOM_UNIFORM, ra, IDS(fseed), o));
    CHECK_STR_CONTAINS(c.err, "the seed must be an i32 or i64 scalar, got f32[]");
    CHECK(!node(&c, ITR_OP_RANDOM_UNIFORM, ra, IDS(l), o));
    CHECK_STR_CONTAINS(c.err, "got i64[B]");
    adt(ra, ITR_OP_RANDOM_UNIFORM, "dtype", ITR_I32);
    CHECK(!node(&c, ITR_OP_RANDOM_UNIFORM, ra, IDS(seed), o));
    CHECK_STR_CONTAINS(c.err, "f32 or f64, not i32");
    struct itr_attr *na = attrs(&c, ITR_OP_RANDOM_NORMAL);
    adims(&c, na, ITR_OP_RANDOM_NORMAL, "shape", DIMS(c.L));
    aflt(na, ITR_OP_RANDOM_NORMAL, "std", -1);
    CHECK(!node(&c, ITR_OP_RANDOM_NORMAL, na, IDS(seed), o));
    CHECK_STR_CONTAINS(c.err, "std");
    int32_t bo = input(&c, "bo", ITR_BOOL, DIMS(c.B));
    CHECK(!node(&c, ITR_OP_SORT, NULL, IDS(bo), o));
    CHECK(!node(&c, ITR_OP_AND, NULL, IDS(bo, f), o));
    CHECK_STR_CONTAINS(c.err, "operand 1 must be bool, got f32");
    teardown(&c);
}

TEST(reductions_and_movement_symbolic) {
    struct ctx c;
    setup(&c);
    int32_t x = input(&c, "x", ITR_F32, DIMS(c.B, c.L, c.D));
    int32_t o[4];
    struct itr_attr *a = attrs(&c, ITR_OP_MEAN);
    aints(&c, a, ITR_OP_MEAN, "axes", INTS(1));
    CHECK(node(&c, ITR_OP_MEAN, a, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, D]");
    aint(a, ITR_OP_MEAN, "keepdims", 1);
    aints(&c, a, ITR_OP_MEAN, "axes", INTS(-1, 0));
    CHECK(node(&c, ITR_OP_MEAN, a, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[1, L, 1]");
    aints(&c, a, ITR_OP_MEAN, "axes", INTS(1, -2));
    CHECK(!node(&c, ITR_OP_MEAN, a, IDS(x), o));
    CHECK_STR_CONTAINS(c.err, "listed twice");
    struct itr_attr *am = attrs(&c, ITR_OP_ARGMAX);
    aint(am, ITR_OP_ARGMAX, "axis", 2);
    CHECK(node(&c, ITR_OP_ARGMAX, am, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "i64[B, L]");
    struct itr_attr *tp = attrs(&c, ITR_OP_TRANSPOSE);
    CHECK(node(&c, ITR_OP_TRANSPOSE, tp, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[D, L, B]");
    aints(&c, tp, ITR_OP_TRANSPOSE, "perm", INTS(0, 2, 1));
    CHECK(node(&c, ITR_OP_TRANSPOSE, tp, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, D, L]");
    aints(&c, tp, ITR_OP_TRANSPOSE, "perm", INTS(0, 1));
    CHECK(!node(&c, ITR_OP_TRANSPOSE, tp, IDS(x), o));
    CHECK_STR_CONTAINS(c.err, "perm has 2 entries for an operand of rank 3");
    int32_t r = input(&c, "r", ITR_F32, DIMS(K(&c, 1), c.D));
    struct itr_attr *ea = attrs(&c, ITR_OP_EXPAND);
    adims(&c, ea, ITR_OP_EXPAND, "shape", DIMS(c.N, c.B, c.D));
    CHECK(node(&c, ITR_OP_EXPAND, ea, IDS(r), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[N, B, D]");
    adims(&c, ea, ITR_OP_EXPAND, "shape", DIMS(c.B, c.L));
    CHECK(!node(&c, ITR_OP_EXPAND, ea, IDS(r), o));
    CHECK_STR_CONTAINS(c.err, "cannot expand dim 1 of size D to L");
    struct itr_attr *sq = attrs(&c, ITR_OP_SQUEEZE);
    aints(&c, sq, ITR_OP_SQUEEZE, "axes", INTS(0));
    CHECK(node(&c, ITR_OP_SQUEEZE, sq, IDS(r), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[D]");
    aints(&c, sq, ITR_OP_SQUEEZE, "axes", INTS(1));
    CHECK(!node(&c, ITR_OP_SQUEEZE, sq, IDS(r), o));
    CHECK_STR_CONTAINS(c.err, "cannot squeeze axis 1 of size D (must be 1)");
    struct itr_attr *us = attrs(&c, ITR_OP_UNSQUEEZE);
    aints(&c, us, ITR_OP_UNSQUEEZE, "axes", INTS(1, 3));
    CHECK(node(&c, ITR_OP_UNSQUEEZE, us, IDS(x), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, 1, L, 1, D]");
    teardown(&c);
}

TEST(indexing_and_sorting_symbolic) {
    struct ctx c;
    setup(&c);
    int32_t tab = input(&c, "table", ITR_F32, DIMS(c.V, c.D));
    int32_t words = input(&c, "words", ITR_I32, DIMS(c.B, c.L));
    int32_t o[4];
    CHECK(node(&c, ITR_OP_GATHER, NULL, IDS(tab, words), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L, D]");
    int32_t emb = o[0];
    struct itr_attr *sa = attrs(&c, ITR_OP_SCATTER_ADD);
    CHECK(node(&c, ITR_OP_SCATTER_ADD, sa, IDS(tab, words, emb), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[V, D]");
    CHECK(!node(&c, ITR_OP_SCATTER_ADD, sa, IDS(tab, words, tab), o));
    CHECK_STR_CONTAINS(c.err, "updates must have shape base[:axis] + index + base[axis+1:] = f32[B, L, D], got f32[V, D]");
    // take_along_axis: x [B, L], idx [B, 1] -> [B, 1]; idx [1, N] broadcasts rows
    int32_t s = input(&c, "s", ITR_F32, DIMS(c.B, c.L));
    int32_t i1 = input(&c, "i1", ITR_I64, DIMS(c.B, K(&c, 1)));
    int32_t i2 = input(&c, "i2", ITR_I64, DIMS(K(&c, 1), c.N));
    int32_t i3 = input(&c, "i3", ITR_I64, DIMS(c.N, c.N));
    struct itr_attr *ta = attrs(&c, ITR_OP_TAKE_ALONG);
    aint(ta, ITR_OP_TAKE_ALONG, "axis", 1);
    CHECK(node(&c, ITR_OP_TAKE_ALONG, ta, IDS(s, i1), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, 1]");
    CHECK(node(&c, ITR_OP_TAKE_ALONG, ta, IDS(s, i2), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, N]");
    CHECK(!node(&c, ITR_OP_TAKE_ALONG, ta, IDS(s, i3), o));
    CHECK_STR_CONTAINS(c.err, "do not broadcast in dim 0: B vs N");
    int32_t taken;
    CHECK(node(&c, ITR_OP_TAKE_ALONG, ta, IDS(s, i1), o));
    taken = o[0];
    struct itr_attr *sal = attrs(&c, ITR_OP_SCATTER_ADD_ALONG);
    aint(sal, ITR_OP_SCATTER_ADD_ALONG, "axis", 1);
    CHECK(node(&c, ITR_OP_SCATTER_ADD_ALONG, sal, IDS(s, i1, taken), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L]");
    CHECK(!node(&c, ITR_OP_SCATTER_ADD_ALONG, sal, IDS(s, i3, i3), o));
    // sort and topk
    CHECK(node(&c, ITR_OP_SORT, NULL, IDS(s), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, L]");
    CHECK_STR_CONTAINS(ty(&c, o[1]), "i64[B, L]");
    struct itr_attr *tk = attrs(&c, ITR_OP_TOPK);
    aint(tk, ITR_OP_TOPK, "k", 10);
    CHECK(node(&c, ITR_OP_TOPK, tk, IDS(s), o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "f32[B, 10]");
    CHECK_STR_CONTAINS(ty(&c, o[1]), "i64[B, 10]");
    int32_t f5 = input(&c, "scores", ITR_F32, DIMS(c.B, K(&c, 5)));
    CHECK(!node(&c, ITR_OP_TOPK, tk, IDS(f5), o));
    CHECK_STR_CONTAINS(c.err, "op 'topk': k = 10 exceeds the size 5 of axis 1 (operands: scores: f32[B, 5])");
    aint(tk, ITR_OP_TOPK, "axis", 2);
    CHECK(!node(&c, ITR_OP_TOPK, tk, IDS(f5), o));
    CHECK_STR_CONTAINS(c.err, "axis 2 is out of range");
    teardown(&c);
}

TEST(sources) {
    struct ctx c;
    setup(&c);
    int32_t o[4];
    struct itr_attr *fa = attrs(&c, ITR_OP_FULL);
    aflt(fa, ITR_OP_FULL, "value", 1);
    adims(&c, fa, ITR_OP_FULL, "shape", DIMS(c.B, itr_dim_binary(c.p, ITR_DIM_MUL, c.L, K(&c, 2))));
    adt(fa, ITR_OP_FULL, "dtype", ITR_I64);
    CHECK(node(&c, ITR_OP_FULL, fa, 0, NULL, o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "i64[B, L*2]");
    adims(&c, fa, ITR_OP_FULL, "shape", DIMS(K(&c, -2)));
    CHECK(!node(&c, ITR_OP_FULL, fa, 0, NULL, o));
    CHECK_STR_CONTAINS(c.err, "negative");
    struct itr_attr *ia = attrs(&c, ITR_OP_IOTA);
    adims(&c, ia, ITR_OP_IOTA, "shape", DIMS(c.B, c.L));
    aint(ia, ITR_OP_IOTA, "axis", 1);
    CHECK(node(&c, ITR_OP_IOTA, ia, 0, NULL, o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "i64[B, L]");
    aint(ia, ITR_OP_IOTA, "axis", 2);
    CHECK(!node(&c, ITR_OP_IOTA, ia, 0, NULL, o));
    struct itr_attr *ka = attrs(&c, ITR_OP_CONSTANT);
    CHECK(!node(&c, ITR_OP_CONSTANT, ka, 0, NULL, o));   // value is required
    ka[0].kind = ITR_ATTR_TENSOR;
    ka[0].u.tensor = itr_tensor_new(ITR_I32, 2, (int64_t[]){ 2, 3 });
    CHECK(node(&c, ITR_OP_CONSTANT, ka, 0, NULL, o));
    CHECK_STR_CONTAINS(ty(&c, o[0]), "i32[2, 3]");
    teardown(&c);
}

// ------------------------------------------------------------ scan

struct scan_fixture {
    struct ctx c;
    struct itr_graph *body;
    int32_t h0, xs, w;
};

// body(h: f32[B, D], x: f32[B, D], w: f32[D, D]) -> (tanh(h @ w + x), h)
static void scan_fixture(struct scan_fixture *f, bool bad_carry) {
    struct ctx *c = &f->c;
    setup(c);
    f->body = itr_program_add_graph(c->p, "step", ITR_GRAPH_BODY);
    struct itr_type hb = itr_type_make(ITR_F32, 2, (itr_dim[]){ c->B, c->D });
    struct itr_type ww = itr_type_make(ITR_F32, 2, (itr_dim[]){ c->D, c->D });
    int32_t h = itr_graph_add_input(f->body, "h", hb, ITR_NOLOC), x = itr_graph_add_input(f->body, "x", hb, ITR_NOLOC);
    int32_t w = itr_graph_add_input(f->body, "w", ww, ITR_NOLOC);
    int32_t m, s, t;
    itr_graph_add_node(f->body, ITR_OP_MATMUL, (int32_t[]){ h, w }, 2, NULL, ITR_NOLOC, NULL, &m, &c->d);
    itr_graph_add_node(f->body, ITR_OP_ADD, (int32_t[]){ m, x }, 2, NULL, ITR_NOLOC, NULL, &s, &c->d);
    itr_graph_add_node(f->body, ITR_OP_TANH, &s, 1, NULL, ITR_NOLOC, NULL, &t, &c->d);
    if (bad_carry) {
        struct itr_attr *a = itr_attrs_default(c->p, ITR_OP_SUM);
        int32_t r;
        itr_graph_add_node(f->body, ITR_OP_SUM, &t, 1, a, ITR_NOLOC, NULL, &r, &c->d);
        t = r;
    }
    itr_graph_add_output(f->body, "h", t);
    itr_graph_add_output(f->body, "y", h);
    f->h0 = input(c, "h0", ITR_F32, DIMS(c->B, c->D));
    f->xs = input(c, "xs", ITR_F32, DIMS(c->B, c->L, c->D));
    f->w = input(c, "w", ITR_F32, DIMS(c->D, c->D));
}

static struct itr_attr *scan_attrs(struct ctx *c, struct itr_graph *body, int nc, int ns, int axis) {
    struct itr_attr *a = attrs(c, ITR_OP_SCAN);
    a[itr_op_attr_index(ITR_OP_SCAN, "body")] = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = body };
    aint(a, ITR_OP_SCAN, "n_carry", nc);
    aint(a, ITR_OP_SCAN, "n_scan", ns);
    aint(a, ITR_OP_SCAN, "axis", axis);
    return a;
}

TEST(scan_signature) {
    struct scan_fixture f;
    scan_fixture(&f, false);
    struct ctx *c = &f.c;
    int32_t o[4];
    CHECK_MSG(node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 1, 1, 1), IDS(f.h0, f.xs, f.w), o), "%s", c->err);
    CHECK_STR_CONTAINS(ty(c, o[0]), "f32[B, D]");
    CHECK_STR_CONTAINS(ty(c, o[1]), "f32[B, L, D]");
    // scanning axis 0 of xs gives slices [L, D], not the body's [B, D]
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 1, 1, 0), IDS(f.h0, f.xs, f.w), o));
    CHECK_STR_CONTAINS(c->err, "body 'step' input 1 ('x', per-step slice of scanned operand 1) has type f32[B, D], "
                               "expected f32[L, D]");
    // wrong operand count for the body
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 1, 1, 1), IDS(f.h0, f.xs), o));
    CHECK_STR_CONTAINS(c->err, "body 'step' takes 3 inputs; scan passes 2");
    // n_scan must be at least 1
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 3, 0, 1), IDS(f.h0, f.xs, f.w), o));
    CHECK_STR_CONTAINS(c->err, "n_scan >= 1");
    // a constant of the wrong type
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 1, 1, 1), IDS(f.h0, f.xs, f.h0), o));
    CHECK_STR_CONTAINS(c->err, "input 2 ('w', constant 2) has type f32[D, D], expected f32[B, D]");
    // an entry graph cannot be a body
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, c->g, 1, 1, 1), IDS(f.h0, f.xs, f.w), o));
    CHECK_STR_CONTAINS(c->err, "is an entry point");
    // scanned operands of different lengths
    struct itr_graph *b2 = itr_program_add_graph(c->p, "two", ITR_GRAPH_BODY);
    struct itr_type hb = itr_type_make(ITR_F32, 2, (itr_dim[]){ c->B, c->D });
    int32_t p = itr_graph_add_input(b2, "p", hb, ITR_NOLOC), q = itr_graph_add_input(b2, "q", hb, ITR_NOLOC);
    int32_t sum;
    CHECK(itr_graph_add_node(b2, ITR_OP_ADD, (int32_t[]){ p, q }, 2, NULL, ITR_NOLOC, NULL, &sum, &c->d));
    itr_graph_add_output(b2, "s", sum);
    int32_t ys = input(c, "ys", ITR_F32, DIMS(c->B, c->N, c->D));
    CHECK(node(c, ITR_OP_SCAN, scan_attrs(c, b2, 0, 2, 1), IDS(f.xs, f.xs), o));
    CHECK_STR_CONTAINS(ty(c, o[0]), "f32[B, L, D]");
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, b2, 0, 2, 1), IDS(f.xs, ys), o));
    CHECK_STR_CONTAINS(c->err, "scanned operands have different lengths along axis 1: L (operand 0) vs N (operand 1)");
    // a negative axis counts from the end, for slicing and stacking alike
    CHECK(node(c, ITR_OP_SCAN, scan_attrs(c, b2, 0, 2, -2), IDS(f.xs, f.xs), o));
    CHECK_STR_CONTAINS(ty(c, o[0]), "f32[B, L, D]");
    teardown(c);

    // a body whose new carry has another type than the carry
    scan_fixture(&f, true);
    c = &f.c;
    CHECK(!node(c, ITR_OP_SCAN, scan_attrs(c, f.body, 1, 1, 1), IDS(f.h0, f.xs, f.w), o));
    CHECK_STR_CONTAINS(c->err, "body 'step' output 0 (new carry 0) has type f32[]; the carry's type is f32[B, D]");
    teardown(c);
}

TEST(arity_and_attributes) {
    struct ctx c;
    setup(&c);
    int32_t x = input(&c, "x", ITR_F32, DIMS(c.B));
    int32_t o[4];
    CHECK(!node(&c, ITR_OP_ADD, NULL, IDS(x), o));
    CHECK_STR_CONTAINS(c.err, "op 'add' takes 2 operands, got 1");
    struct itr_attr *a = attrs(&c, ITR_OP_ARGMAX);
    CHECK(!node(&c, ITR_OP_ARGMAX, a, IDS(x), o));
    CHECK_STR_CONTAINS(c.err, "missing required attribute 'axis'");
    teardown(&c);
}

int main(void) {
    RUN(reshape_symbolic);
    RUN(slice_symbolic);
    RUN(concat_and_pad_symbolic);
    RUN(matmul_messages);
    RUN(broadcasting);
    RUN(wrong_dtypes);
    RUN(reductions_and_movement_symbolic);
    RUN(indexing_and_sorting_symbolic);
    RUN(sources);
    RUN(scan_signature);
    RUN(arity_and_attributes);
    return test_summary();
}
