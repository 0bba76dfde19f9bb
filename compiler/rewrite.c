// Algebraic rewrites of contractions (compiler/passes.h, docs/rewrites.md).
//
// Unlike the simplification passes these are not bit-exact: they reorder
// sums. They are checked against the unrewritten graph on the reference
// interpreter in f64 (tests/test_rewrite.c), and each can be turned off
// (itrc --no-rewrite NAME).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/autodiff.h"
#include "compiler/passes.h"
#include "ir/bind.h"

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

// ---------------------------------------------------------------- graph facts

// Which nodes use each value (CSR); a node using a value twice appears twice.
struct uses { int32_t *start, *node; };

static void uses_build(const struct itr_graph *g, struct uses *u) {
    u->start = xcalloc((size_t)g->n_values + 2, sizeof *u->start);
    int total = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) u->start[g->nodes[i].inputs[k] + 1]++, total++;
    for (int v = 0; v < g->n_values; v++) u->start[v + 1] += u->start[v];
    u->node = xcalloc((size_t)total + 1, sizeof *u->node);
    int32_t *fill = xcalloc((size_t)g->n_values + 1, sizeof *fill);
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            int32_t v = g->nodes[i].inputs[k];
            u->node[u->start[v] + fill[v]++] = i;
        }
    free(fill);
}

static void uses_free(struct uses *u) {
    free(u->start);
    free(u->node);
}

// Graph outputs are uses the node list does not show.
static bool is_graph_output(const struct itr_graph *g, int32_t v) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

static const struct itr_node *producer(const struct itr_graph *g, int32_t v) {
    const struct itr_value *val = &g->values[v];
    return val->kind == ITR_VALUE_NODE ? &g->nodes[val->node] : NULL;
}

static const struct itr_type *type_of(const struct itr_graph *g, int32_t v) { return &g->values[v].type; }

static bool is_op(const struct itr_graph *g, int32_t v, enum itr_op op) {
    const struct itr_node *n = producer(g, v);
    return n && n->op == op;
}

static bool dim_is(const struct itr_program *p, itr_dim d, int64_t want) {
    int64_t v;
    return itr_dim_is_const(p, d, &v) && v == want;
}

// A dim's size for cost estimates: its value with the model's defaults
// (itrc -D binds more), else a stand-in of 64 items for a symbolic batch.
#define UNBOUND_DIM_GUESS 64
static double dim_guess(const struct itr_program *p, const struct itr_dim_bindings *b, itr_dim d) {
    int64_t v;
    int32_t unbound;
    return itr_dim_eval(p, d, b->value, b->bound, &v, &unbound) ? (double)v : UNBOUND_DIM_GUESS;
}

// Product of the batch dims (all but the last two) of a type.
static double batch_guess(const struct itr_program *p, const struct itr_dim_bindings *b, const struct itr_type *t) {
    double n = 1;
    for (int i = 0; i < t->rank - 2; i++) n *= dim_guess(p, b, t->dims[i]);
    return n;
}

// The single reduced axis of a sum, normalised; -1 when it reduces several.
static int sum_axis(const struct itr_graph *g, const struct itr_node *n) {
    const struct itr_attr *a = itr_node_attr(n, "axes");
    int rank = type_of(g, n->inputs[0])->rank;
    if (!a || a->u.ints.n != 1) return -1;
    int64_t ax = a->u.ints.v[0];
    return (int)(ax < 0 ? ax + rank : ax);
}

// where(cond, x, k) with k a scalar constant and cond constant along the last
// axis of the rank-`rank` result: a selection of whole rows.
struct wrap { int32_t inner, cond; double k; };

static struct wrap unwrap(const struct itr_graph *g, int32_t v, int rank) {
    struct wrap w = { v, -1, 0 };
    const struct itr_node *n = producer(g, v);
    if (!n || n->op != ITR_OP_WHERE) return w;
    const struct itr_node *k = producer(g, n->inputs[2]);
    const struct itr_type *kt = type_of(g, n->inputs[2]), *ct = type_of(g, n->inputs[0]);
    if (!k || k->op != ITR_OP_FULL || kt->rank != 0 || kt->dtype != type_of(g, v)->dtype) return w;
    if (ct->rank > rank || (ct->rank > 0 && !dim_is(g->prog, ct->dims[ct->rank - 1], 1))) return w;
    if (type_of(g, n->inputs[1])->rank != rank) return w;
    w.inner = n->inputs[1];
    w.cond = n->inputs[0];
    w.k = itr_node_attr_float(k, "value");
    return w;
}

// ---------------------------------------------------------------- gram

// sum(X ⊙ Y, last axis) with Y = P @ C (P [.., L, K], C [.., K, D]):
//   dot:       Σ_d X[l,d] Σ_k P[l,k] C[k,d] = Σ_k P[l,k] (X Cᵀ)[l,k]
//   quadratic: Σ_d Y[l,d]² = Σ_k P[l,k] (P G)[l,k],  G = C Cᵀ [.., K, K]
// so Y ([.., L, D], the attended context of cross attention) is never
// formed. X Cᵀ is emitted as (C Xᵀ)ᵀ, the form the region–word logits of
// every cross-attention module already have, so CSE shares it with them.
// Both operands may be wrapped in the same row selection where(c, ·, k)
// (padded words replaced by constants): the sum then is where(c, ·, kx·ky·D).
struct gram_site {
    int32_t sum;          // the sum node rewritten
    int32_t y, x;         // Y = P @ C, and the other factor (x == y: quadratic)
    int32_t cond;         // shared row selection, or -1
    double kk;            // kx * ky
};

struct gram_plan {
    struct gram_site *sites; int n, cap;
    int32_t *site_of_sum;   // per old node: index into sites, or -1
};

// A candidate site at sum node i, or false.
static bool gram_match(const struct itr_graph *g, int i, struct gram_site *s) {
    const struct itr_node *n = &g->nodes[i];
    if (n->op != ITR_OP_SUM) return false;
    int32_t m = n->inputs[0];
    const struct itr_type *mt = type_of(g, m);
    int r = mt->rank;
    if (r < 2 || sum_axis(g, n) != r - 1 || !is_op(g, m, ITR_OP_MUL)) return false;
    const struct itr_node *mul = producer(g, m);
    struct wrap a = unwrap(g, mul->inputs[0], r), b = unwrap(g, mul->inputs[1], r);
    if (a.cond != b.cond) return false;
    if (a.cond >= 0 && !itr_dim_is_const(g->prog, mt->dims[r - 1], &(int64_t){ 0 })) return false;
    int32_t x = a.inner, y = b.inner;
    if (!is_op(g, y, ITR_OP_MATMUL)) {
        int32_t t = x;
        x = y;
        y = t;
    }
    if (!is_op(g, y, ITR_OP_MATMUL)) return false;
    const struct itr_node *mm = producer(g, y);
    const struct itr_type *xt = type_of(g, x), *yt = type_of(g, y);
    const struct itr_type *pt = type_of(g, mm->inputs[0]), *ct = type_of(g, mm->inputs[1]);
    // Same rank everywhere, and no broadcasting along the reduced axis.
    if (xt->rank != r || yt->rank != r || pt->rank != r || ct->rank != r) return false;
    if (xt->dims[r - 1] != mt->dims[r - 1] || yt->dims[r - 1] != mt->dims[r - 1]) return false;
    if (xt->dtype != yt->dtype || yt->dtype == ITR_I32 || yt->dtype == ITR_I64) return false;
    s->sum = i;
    s->y = y;
    s->x = x;
    s->cond = a.cond;
    s->kk = a.k * b.k;
    return true;
}

// Every use of y (directly, or through row selections of it) is a product
// whose every use is a matched sum; then y dies once the sums are rewritten.
static bool site_for(const struct gram_plan *pl, int node, int32_t y) {
    return pl->site_of_sum[node] >= 0 && pl->sites[pl->site_of_sum[node]].y == y;
}

static bool gram_covers(const struct itr_graph *g, const struct uses *u, int32_t y, const struct gram_plan *pl) {
    if (is_graph_output(g, y)) return false;
    for (int q = u->start[y]; q < u->start[y + 1]; q++) {
        const struct itr_node *n = &g->nodes[u->node[q]];
        int32_t v = n->outputs[0];
        if (n->op == ITR_OP_WHERE) {
            if (n->inputs[1] != y || n->inputs[0] == y || n->inputs[2] == y || is_graph_output(g, v)) return false;
            for (int q2 = u->start[v]; q2 < u->start[v + 1]; q2++) {
                const struct itr_node *m = &g->nodes[u->node[q2]];
                if (m->op != ITR_OP_MUL || is_graph_output(g, m->outputs[0])) return false;
                int32_t mv = m->outputs[0];
                for (int q3 = u->start[mv]; q3 < u->start[mv + 1]; q3++)
                    if (!site_for(pl, u->node[q3], y)) return false;
            }
        } else if (n->op == ITR_OP_MUL) {
            if (is_graph_output(g, v)) return false;
            for (int q3 = u->start[v]; q3 < u->start[v + 1]; q3++)
                if (!site_for(pl, u->node[q3], y)) return false;
        } else {
            return false;
        }
    }
    return true;
}

// The quadratic form pays for G = C Cᵀ (once per C, shared by the batch
// where C is broadcast) and P G; forming Y pays L·K·D per batch element.
static bool gram_profitable(const struct itr_graph *g, const struct itr_dim_bindings *b, int32_t y, bool quadratic) {
    if (!quadratic) return true;   // X Cᵀ costs what Y did, and is usually shared
    const struct itr_program *p = g->prog;
    const struct itr_node *mm = producer(g, y);
    const struct itr_type *yt = type_of(g, y), *ct = type_of(g, mm->inputs[1]);
    int r = yt->rank;
    double L = dim_guess(p, b, yt->dims[r - 2]), D = dim_guess(p, b, yt->dims[r - 1]);
    double K = dim_guess(p, b, ct->dims[r - 2]);
    double by = batch_guess(p, b, yt), bc = batch_guess(p, b, ct);
    double before = by * L * K * D, after = bc * K * K * D + by * L * K * K;
    return 2 * after <= before;
}

static bool gram_plan(const struct itr_graph *g, const struct itr_dim_bindings *b, struct gram_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->site_of_sum = xcalloc((size_t)g->n_nodes + 1, sizeof *pl->site_of_sum);
    for (int i = 0; i < g->n_nodes; i++) pl->site_of_sum[i] = -1;
    struct gram_site s;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!gram_match(g, i, &s)) continue;
        if (pl->n == pl->cap) {
            pl->cap = pl->cap ? 2 * pl->cap : 8;
            pl->sites = realloc(pl->sites, (size_t)pl->cap * sizeof *pl->sites);
            if (!pl->sites) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        }
        pl->site_of_sum[i] = pl->n;
        pl->sites[pl->n++] = s;
    }
    if (pl->n == 0) return false;
    // Keep only the sites whose Y dies entirely, and only where it pays.
    struct uses u;
    uses_build(g, &u);
    bool *keep_y = xcalloc((size_t)g->n_values + 1, sizeof *keep_y);
    bool *decided = xcalloc((size_t)g->n_values + 1, sizeof *decided);
    for (int k = 0; k < pl->n; k++) {
        int32_t y = pl->sites[k].y;
        if (decided[y]) continue;
        decided[y] = true;
        bool quad = false;
        for (int j = 0; j < pl->n; j++) quad |= pl->sites[j].y == y && pl->sites[j].x == y;
        keep_y[y] = gram_covers(g, &u, y, pl) && gram_profitable(g, b, y, quad);
    }
    // A site whose Y survives would add work without removing any.
    for (int k = 0; k < pl->n; k++)
        if (!keep_y[pl->sites[k].y]) pl->site_of_sum[pl->sites[k].sum] = -1;
    // A product of two contexts (X is itself a rewritten Y) is left alone:
    // the dot form needs X materialised.
    for (int k = 0; k < pl->n; k++) {
        const struct gram_site *st = &pl->sites[k];
        if (pl->site_of_sum[st->sum] >= 0 && st->x != st->y && keep_y[st->x]) {
            pl->site_of_sum[st->sum] = -1;
        }
    }
    uses_free(&u);
    free(keep_y);
    free(decided);
    for (int i = 0; i < g->n_nodes; i++)
        if (pl->site_of_sum[i] >= 0) return true;
    return false;
}

static void gram_plan_free(struct gram_plan *pl) {
    free(pl->sites);
    free(pl->site_of_sum);
}

// transpose(a) swapping the last two axes: its operand, else -1.
static int32_t untransposed(const struct itr_graph *g, int32_t v) {
    const struct itr_node *n = producer(g, v);
    if (!n || n->op != ITR_OP_TRANSPOSE) return -1;
    const struct itr_attr *a = itr_node_attr(n, "perm");
    int r = type_of(g, v)->rank;
    if (!a || a->u.ints.n != r || r < 2) return -1;
    for (int i = 0; i < r - 2; i++)
        if (a->u.ints.v[i] != i) return -1;
    return a->u.ints.v[r - 2] == r - 1 && a->u.ints.v[r - 1] == r - 2 ? n->inputs[0] : -1;
}

// The replacement of one site, in the new graph (map: old -> new values).
static int32_t gram_emit(struct itr_grad_ctx *c, const struct itr_graph *g, const struct gram_site *s,
                         const int32_t *map) {
    const struct itr_node *mm = producer(g, s->y);
    const struct itr_node *sum = &g->nodes[s->sum];
    int r = type_of(g, s->y)->rank;
    int32_t P = map[mm->inputs[0]], C = map[mm->inputs[1]];
    int32_t out;
    if (s->x == s->y) {
        int32_t G = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ C, gb_swap_last2(c, C) }, 2, NULL);
        int32_t Q = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ P, G }, 2, NULL);
        int64_t ax = r - 1;
        out = gb_reduce(c, ITR_OP_SUM, gb_mul(c, P, Q), &ax, 1, false);
        // A sum of squares reassociated may round below zero where it is ~0.
        out = gb_node(c, ITR_OP_MAXIMUM, (int32_t[]){ out, gb_scalar(c, 0.0, gb_type(c, out)->dtype) }, 2, NULL);
    } else {
        int32_t X = map[s->x];
        int32_t S = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ C, gb_swap_last2(c, X) }, 2, NULL);   // [.., K, L]
        int32_t alpha = untransposed(c->g, P);
        if (alpha >= 0) {
            int64_t ax = r - 2;
            out = gb_reduce(c, ITR_OP_SUM, gb_mul(c, alpha, S), &ax, 1, false);
        } else {
            int64_t ax = r - 1;
            out = gb_reduce(c, ITR_OP_SUM, gb_mul(c, P, gb_swap_last2(c, S)), &ax, 1, false);
        }
    }
    if (out < 0) return -1;
    if (s->cond >= 0) {
        int32_t cond = map[s->cond];
        const struct itr_type *ct = gb_type(c, cond);
        if (ct->rank > 0) {
            struct itr_type sq = itr_type_make(ct->dtype, ct->rank - 1, ct->dims);
            cond = gb_reshape(c, cond, &sq);
        }
        int64_t d;
        itr_dim_is_const(g->prog, type_of(g, s->y)->dims[r - 1], &d);
        out = gb_where(c, cond, out, gb_scalar(c, s->kk * (double)d, gb_type(c, out)->dtype));
    }
    const struct itr_type *want = type_of(g, sum->outputs[0]);
    if (out >= 0 && gb_type(c, out)->rank != want->rank) out = gb_reshape(c, out, want);
    if (out >= 0 && !itr_type_equal(gb_type(c, out), want)) out = gb_expand(c, out, want);
    if (out >= 0 && !itr_type_equal(gb_type(c, out), want)) {
        itr_diag_error(c->d, sum->loc, "internal error: the gram rewrite of a sum in graph '%s' changed its type",
                       g->name);
        return -1;
    }
    return out;
}

// ---------------------------------------------------------------- reassociation

// matmul(matmul(A, B), C) or matmul(A, matmul(B, C)) with the inner product
// used once: evaluated in the cheaper order for the bound dims. Cost of a
// product: (elements of its result) x (contracted size).
static double matmul_cost(const struct itr_program *p, const struct itr_dim_bindings *b, const struct itr_type *a,
                          const struct itr_type *bt) {
    int ra = a->rank, rb = bt->rank;
    double batch = 1;
    int nb = (ra > rb ? ra : rb) - 2;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
        double x = ia >= 0 ? dim_guess(p, b, a->dims[ia]) : 1, y = ib >= 0 ? dim_guess(p, b, bt->dims[ib]) : 1;
        batch *= x > y ? x : y;
    }
    return batch * dim_guess(p, b, a->dims[ra - 2]) * dim_guess(p, b, a->dims[ra - 1]) *
           dim_guess(p, b, bt->dims[rb - 1]);
}

// The type of A @ B (rank and dims only matter for the cost).
static struct itr_type product_type(const struct itr_type *a, const struct itr_type *b) {
    struct itr_type t = *a;
    int ra = a->rank, rb = b->rank, r = ra > rb ? ra : rb;
    t.rank = r;
    for (int i = 0; i < r - 2; i++) {
        int ia = i - (r - ra), ib = i - (r - rb);
        t.dims[i] = ia >= 0 ? a->dims[ia] : b->dims[ib];
    }
    t.dims[r - 2] = a->dims[ra - 2];
    t.dims[r - 1] = b->dims[rb - 1];
    return t;
}

// Reassociation moves batch broadcasting between the products, so it is
// done only when all three operands have the same rank and batch dims.
static bool same_batch(const struct itr_type *a, const struct itr_type *b, const struct itr_type *c) {
    if (a->rank != b->rank || a->rank != c->rank || a->rank < 2) return false;
    for (int i = 0; i < a->rank - 2; i++)
        if (a->dims[i] != b->dims[i] || a->dims[i] != c->dims[i]) return false;
    return true;
}

// 1: rewrite (A B) C as A (B C); 2: A (B C) as (A B) C; 0: leave it.
static int reassoc_choice(const struct itr_graph *g, const struct uses *u, const struct itr_dim_bindings *b, int i,
                          int32_t *A, int32_t *B, int32_t *C) {
    const struct itr_node *n = &g->nodes[i];
    if (n->op != ITR_OP_MATMUL) return 0;
    const struct itr_program *p = g->prog;
    for (int side = 0; side < 2; side++) {
        int32_t inner = n->inputs[side];
        if (!is_op(g, inner, ITR_OP_MATMUL) || u->start[inner + 1] - u->start[inner] != 1 ||
            is_graph_output(g, inner))
            continue;
        const struct itr_node *in = producer(g, inner);
        if (side == 0) { *A = in->inputs[0]; *B = in->inputs[1]; *C = n->inputs[1]; }
        else { *A = n->inputs[0]; *B = in->inputs[0]; *C = in->inputs[1]; }
        const struct itr_type *ta = type_of(g, *A), *tb = type_of(g, *B), *tc = type_of(g, *C);
        if (!same_batch(ta, tb, tc)) continue;
        struct itr_type ab = product_type(ta, tb), bc = product_type(tb, tc);
        double left = matmul_cost(p, b, ta, tb) + matmul_cost(p, b, &ab, tc);
        double right = matmul_cost(p, b, tb, tc) + matmul_cost(p, b, ta, &bc);
        // Only a clear gain: ties keep the source's order.
        if (side == 0 && right * 1.25 < left) return 1;
        if (side == 1 && left * 1.25 < right) return 2;
    }
    return 0;
}

// (X A + a)(Y B + b)ᵀ with A, B matrices and a, b vectors (two linear
// layers meeting in one product: the query–key logits of a graph step)
//   = X (A Bᵀ) Yᵀ + X (A b) 1ᵀ + 1 (Y (B a))ᵀ + a·b
// where A Bᵀ is computed once instead of projecting every row twice.
struct bilinear_site {
    int32_t x, a, bias_a;   // P = X @ A (+ bias_a); bias -1 when absent
    int32_t y, b, bias_b;   // Q = Y @ B (+ bias_b); the product is P @ Qᵀ
};

static bool used_once(const struct itr_graph *g, const struct uses *u, int32_t v) {
    return u->start[v + 1] - u->start[v] == 1 && !is_graph_output(g, v);
}

// v = X @ W + bias (or X @ W) with W a matrix and bias a vector of W's
// columns, every intermediate read only on the way to v.
static bool affine_of(const struct itr_graph *g, const struct uses *u, int32_t v, int32_t *x, int32_t *w,
                      int32_t *bias) {
    *bias = -1;
    int32_t mm = v;
    const struct itr_node *n = producer(g, v);
    if (n && n->op == ITR_OP_ADD) {
        for (int side = 0; side < 2 && mm == v; side++) {
            int32_t m = n->inputs[side], b = n->inputs[1 - side];
            const struct itr_type *bt = type_of(g, b);
            if (is_op(g, m, ITR_OP_MATMUL) && used_once(g, u, m) && bt->rank == 1 &&
                bt->dims[0] == type_of(g, v)->dims[type_of(g, v)->rank - 1]) {
                mm = m;
                *bias = b;
            }
        }
        if (mm == v) return false;
    }
    if (!is_op(g, mm, ITR_OP_MATMUL)) return false;
    const struct itr_node *m = producer(g, mm);
    if (type_of(g, m->inputs[1])->rank != 2 || type_of(g, m->inputs[0])->rank < 2) return false;
    if (!itr_type_equal(type_of(g, mm), type_of(g, v))) return false;   // the bias broadcasts nothing new
    *x = m->inputs[0];
    *w = m->inputs[1];
    return true;
}

static bool bilinear_match(const struct itr_graph *g, const struct uses *u, const struct itr_dim_bindings *b, int i,
                           struct bilinear_site *s) {
    const struct itr_node *n = &g->nodes[i];
    if (n->op != ITR_OP_MATMUL || !itr_dtype_is_float(type_of(g, n->outputs[0])->dtype)) return false;
    int32_t P = n->inputs[0], Qt = n->inputs[1], Q = untransposed(g, Qt);
    if (Q < 0 || !used_once(g, u, P) || !used_once(g, u, Qt) || !used_once(g, u, Q)) return false;
    if (!affine_of(g, u, P, &s->x, &s->a, &s->bias_a) || !affine_of(g, u, Q, &s->y, &s->b, &s->bias_b)) return false;
    // Cost per product as matmul_cost counts it, before and after.
    const struct itr_program *p = g->prog;
    const struct itr_type *tx = type_of(g, s->x), *ty = type_of(g, s->y), *ta = type_of(g, s->a),
                          *tb = type_of(g, s->b);
    struct itr_type tyt = *ty, tbt = *tb, tm, txm;
    tyt.dims[ty->rank - 2] = ty->dims[ty->rank - 1];
    tyt.dims[ty->rank - 1] = ty->dims[ty->rank - 2];
    tbt.dims[0] = tb->dims[1];
    tbt.dims[1] = tb->dims[0];
    tm = product_type(ta, &tbt);
    txm = product_type(tx, &tm);
    double before = matmul_cost(p, b, tx, ta) + matmul_cost(p, b, ty, tb) +
                    matmul_cost(p, b, type_of(g, P), type_of(g, Qt));
    double after = matmul_cost(p, b, ta, &tbt) + matmul_cost(p, b, tx, &tm) + matmul_cost(p, b, &txm, &tyt);
    return after * 1.25 < before;
}

// A vector v [n] as the matrix [n, 1].
static int32_t as_column(struct itr_grad_ctx *c, int32_t v) {
    const struct itr_type *t = gb_type(c, v);
    itr_dim dims[2] = { t->dims[0], itr_dim_const(c->g->prog, 1) };
    struct itr_type col = itr_type_make(t->dtype, 2, dims);
    return gb_reshape(c, v, &col);
}

static int32_t bilinear_emit(struct itr_grad_ctx *c, const struct bilinear_site *s, const int32_t *map) {
    int32_t X = map[s->x], A = map[s->a], Y = map[s->y], B = map[s->b];
    int32_t M = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ A, gb_swap_last2(c, B) }, 2, NULL);
    int32_t XM = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ X, M }, 2, NULL);
    int32_t out = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ XM, gb_swap_last2(c, Y) }, 2, NULL);
    if (s->bias_b >= 0) {   // each row of P's X against b: constant along the row
        int32_t Ab = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ A, as_column(c, map[s->bias_b]) }, 2, NULL);
        out = gb_add(c, out, gb_node(c, ITR_OP_MATMUL, (int32_t[]){ X, Ab }, 2, NULL));
    }
    if (s->bias_a >= 0) {   // a against each row of Q's Y: constant along the columns
        int32_t Ba = gb_node(c, ITR_OP_MATMUL, (int32_t[]){ B, as_column(c, map[s->bias_a]) }, 2, NULL);
        out = gb_add(c, out, gb_swap_last2(c, gb_node(c, ITR_OP_MATMUL, (int32_t[]){ Y, Ba }, 2, NULL)));
    }
    if (s->bias_a >= 0 && s->bias_b >= 0) {
        int64_t ax = 0;
        out = gb_add(c, out, gb_reduce(c, ITR_OP_SUM, gb_mul(c, map[s->bias_a], map[s->bias_b]), &ax, 1, false));
    }
    return out;
}

// ---------------------------------------------------------------- rows

// The part of a value that its readers use: nothing, all of it, or the
// rows [lo, hi) along one axis (constants, 0 <= lo < hi).
enum rows_kind { ROWS_NONE, ROWS_ALL, ROWS_RANGE };
struct rows { enum rows_kind kind; int axis; int64_t lo, hi; };

static const struct rows rows_all = { ROWS_ALL, 0, 0, 0 };

static struct rows rows_merge(struct rows a, struct rows b) {
    if (a.kind == ROWS_NONE) return b;
    if (b.kind == ROWS_NONE) return a;
    if (a.kind == ROWS_ALL || b.kind == ROWS_ALL || a.axis != b.axis) return rows_all;
    a.lo = a.lo < b.lo ? a.lo : b.lo;
    a.hi = a.hi > b.hi ? a.hi : b.hi;
    return a;
}

static bool rows_equal(struct rows a, struct rows b) {
    return a.kind == b.kind && (a.kind != ROWS_RANGE || (a.axis == b.axis && a.lo == b.lo && a.hi == b.hi));
}

// The rows a slice node reads of its operand: one axis, unit step, constant
// bounds inside the axis (a slice to the end of a symbolic axis reads all).
static struct rows slice_rows(const struct itr_graph *g, const struct itr_node *n) {
    const struct itr_type *in = type_of(g, n->inputs[0]);
    int ax;
    int64_t lo, hi, len;
    if (!itr_slice_one_axis(n, in->rank, &ax, &lo, &hi)) return rows_all;
    if (lo < 0 || hi <= lo || hi >= INT32_MAX) return rows_all;
    if (itr_dim_is_const(g->prog, in->dims[ax], &len) && (hi > len || (lo == 0 && hi == len))) return rows_all;
    return (struct rows){ ROWS_RANGE, ax, lo, hi };
}

struct rows_plan {
    struct rows *need;     // per value: what its readers use
    struct rows *made;     // per value: what the rewritten graph computes of it
    bool *shrink;          // per node: computed on its operands' rows only
    int shrunk;
};

// What the readers of node n's results need of them (NONE: n is dead).
static struct rows result_rows(const struct rows_plan *pl, const struct itr_node *n) {
    struct rows out = { ROWS_NONE, 0, 0, 0 };
    for (int k = 0; k < n->n_outputs; k++) out = rows_merge(out, pl->need[n->outputs[k]]);
    return out;
}

// What node n needs of operand k, given its results' rows `out` and whether
// it computes only those (shrink): the matching rows of the operand, the
// rows a slice takes, or all of it.
static struct rows operand_rows(const struct itr_graph *g, const struct itr_node *n, bool shrink, struct rows out,
                                int k) {
    if (shrink) {
        int ak = itr_rows_operand_axis(g, n, out.axis, k);
        return ak >= 0 ? (struct rows){ ROWS_RANGE, ak, out.lo, out.hi } : rows_all;
    }
    return n->op == ITR_OP_SLICE ? slice_rows(g, n) : rows_all;
}

// Backwards from the outputs: what each value's readers need, and which
// nodes can compute only the rows they are asked for.
static bool rows_plan(const struct itr_graph *g, struct rows_plan *pl) {
    pl->need = xcalloc((size_t)g->n_values + 1, sizeof *pl->need);
    pl->made = xcalloc((size_t)g->n_values + 1, sizeof *pl->made);
    pl->shrink = xcalloc((size_t)g->n_nodes + 1, sizeof *pl->shrink);
    pl->shrunk = 0;
    for (int i = 0; i < g->n_outputs; i++) pl->need[g->outputs[i]] = rows_all;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const struct itr_node *n = &g->nodes[i];
        struct rows out = result_rows(pl, n);
        if (out.kind == ROWS_NONE) continue;   // dead: not rebuilt
        bool shrink = out.kind == ROWS_RANGE && n->op != ITR_OP_SLICE;
        for (int k = 0; k < n->n_inputs && shrink; k++) shrink = itr_rows_operand_axis(g, n, out.axis, k) != -2;
        pl->shrink[i] = shrink;
        pl->shrunk += shrink;
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            pl->need[v] = rows_merge(pl->need[v], operand_rows(g, n, shrink, out, k));
            // Readers that together take every row take it all.
            int64_t len;
            struct rows *r = &pl->need[v];
            if (r->kind == ROWS_RANGE && r->lo == 0 && itr_dim_is_const(g->prog, type_of(g, v)->dims[r->axis], &len) &&
                r->hi >= len)
                *r = rows_all;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_outputs; k++) pl->made[n->outputs[k]] = pl->shrink[i] ? pl->need[n->outputs[k]] : rows_all;
    }
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind != ITR_VALUE_NODE) pl->made[i] = rows_all;
    return pl->shrunk > 0;
}

static void rows_plan_free(struct rows_plan *pl) {
    free(pl->need);
    free(pl->made);
    free(pl->shrink);
}

// Old value v as a value of the new graph holding the rows `want` of it.
static int32_t rows_view(struct itr_grad_ctx *c, const struct rows_plan *pl, const int32_t *map, int32_t v,
                         struct rows want) {
    struct rows made = pl->made[v];
    if (rows_equal(made, want) || want.kind != ROWS_RANGE) return map[v];
    int64_t base = made.kind == ROWS_RANGE ? made.lo : 0;
    struct itr_attr *a = gb_attrs(c, ITR_OP_SLICE);
    int64_t ax = want.axis, lo = want.lo - base, hi = want.hi - base;
    gb_set_ints(c, a, ITR_OP_SLICE, "axes", &ax, 1);
    gb_set_ints(c, a, ITR_OP_SLICE, "starts", &lo, 1);
    gb_set_ints(c, a, ITR_OP_SLICE, "ends", &hi, 1);
    return gb_node(c, ITR_OP_SLICE, &map[v], 1, a);
}

// ---------------------------------------------------------------- the rebuild

static bool is_generated_name(const char *s) {
    if (!s || s[0] != '_' || !s[1]) return false;
    for (const char *q = s + 1; *q; q++)
        if (*q < '0' || *q > '9') return false;
    return true;
}

// An empty graph with g's name, kind and inputs, and map[] from g's values
// to it holding the inputs and parameters (every other value -1).
static struct itr_graph *new_graph_like(struct itr_program *p, const struct itr_graph *g, int32_t **map_out) {
    struct itr_graph *ng = itr_arena_alloc(p->arena, sizeof *ng);
    memset(ng, 0, sizeof *ng);
    ng->prog = p;
    ng->name = g->name;
    ng->kind = g->kind;
    ng->loc = g->loc;
    ng->train = g->train;
    int32_t *map = xcalloc((size_t)g->n_values + 1, sizeof *map);
    for (int i = 0; i < g->n_values; i++) map[i] = -1;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        map[g->inputs[i]] = itr_graph_add_input(ng, v->name, v->type, v->loc);
    }
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == ITR_VALUE_PARAM) map[i] = itr_graph_use_param(ng, g->values[i].param);
    *map_out = map;
    return ng;
}

// Appends old node n to ng, on operands ins (NULL: its own operands mapped),
// and maps its results, keeping their names.
static bool copy_node(struct itr_graph *ng, const struct itr_graph *g, const struct itr_node *n, const int32_t *ins,
                      int32_t *map, struct itr_diags *d) {
    int32_t ins_stack[16], outs_stack[16];
    int32_t *mapped = n->n_inputs <= 16 ? ins_stack : xcalloc((size_t)n->n_inputs, sizeof *mapped);
    int32_t *outs = n->n_outputs <= 16 ? outs_stack : xcalloc((size_t)n->n_outputs, sizeof *outs);
    for (int k = 0; k < n->n_inputs; k++) mapped[k] = ins ? ins[k] : map[n->inputs[k]];
    bool ok = itr_graph_add_node(ng, n->op, mapped, n->n_inputs, n->attrs, n->loc, n->scope, outs, d);
    if (!ok) {
        itr_diag_error(d, n->loc, "internal error: a rewrite left an invalid '%s' node in graph '%s'",
                       itr_op_name(n->op), g->name);
    } else {
        ng->nodes[ng->n_nodes - 1].phase = n->phase;
        for (int k = 0; k < n->n_outputs; k++) {
            map[n->outputs[k]] = outs[k];
            const char *name = g->values[n->outputs[k]].name;
            if (!is_generated_name(name)) itr_graph_name_value(ng, outs[k], name);
        }
    }
    if (mapped != ins_stack) free(mapped);
    if (outs != outs_stack) free(outs);
    return ok;
}

static bool rewrite_graph(struct itr_program *p, struct itr_graph *g, unsigned which, struct itr_rewrite_stats *st,
                          struct itr_diags *d) {
    struct itr_dim_bindings b;
    itr_bindings_init(&b, p);
    itr_bind_defaults(&b, p);
    struct gram_plan gp = { 0 };
    bool gram = (which & ITR_REWRITE_GRAM) && gram_plan(g, &b, &gp);
    struct uses u;
    uses_build(g, &u);
    int *reassoc = xcalloc((size_t)g->n_nodes + 1, sizeof *reassoc);
    int32_t (*abc)[3] = xcalloc((size_t)g->n_nodes + 1, sizeof *abc);
    bool any_reassoc = false;
    struct bilinear_site *bil = xcalloc((size_t)g->n_nodes + 1, sizeof *bil);
    if (which & ITR_REWRITE_REASSOC)
        for (int i = 0; i < g->n_nodes; i++) {
            reassoc[i] = reassoc_choice(g, &u, &b, i, &abc[i][0], &abc[i][1], &abc[i][2]);
            if (!reassoc[i] && bilinear_match(g, &u, &b, i, &bil[i])) reassoc[i] = 3;
            any_reassoc |= reassoc[i] != 0;
        }
    bool ok = true;
    if (gram || any_reassoc) {
        int32_t *map = NULL;
        struct itr_graph *ng = new_graph_like(p, g, &map);
        for (int i = 0; i < g->n_nodes && ok; i++) {
            const struct itr_node *n = &g->nodes[i];
            struct itr_grad_ctx c = { .g = ng, .d = d, .node = n, .loc = n->loc, .scope = n->scope };
            int32_t repl = -1;
            if (gram && gp.site_of_sum[i] >= 0) {
                repl = gram_emit(&c, g, &gp.sites[gp.site_of_sum[i]], map);
                if (repl < 0) ok = false;
                else st->gram++;
            } else if (reassoc[i]) {
                int32_t A = map[abc[i][0]], B = map[abc[i][1]], C = map[abc[i][2]];
                if (reassoc[i] == 3) {
                    repl = bilinear_emit(&c, &bil[i], map);
                } else if (reassoc[i] == 1) {
                    int32_t bc = gb_node(&c, ITR_OP_MATMUL, (int32_t[]){ B, C }, 2, NULL);
                    repl = gb_node(&c, ITR_OP_MATMUL, (int32_t[]){ A, bc }, 2, NULL);
                } else {
                    int32_t ab = gb_node(&c, ITR_OP_MATMUL, (int32_t[]){ A, B }, 2, NULL);
                    repl = gb_node(&c, ITR_OP_MATMUL, (int32_t[]){ ab, C }, 2, NULL);
                }
                if (repl < 0 || !itr_type_equal(gb_type(&c, repl), type_of(g, n->outputs[0]))) {
                    itr_diag_error(d, n->loc, "internal error: reassociating a matmul chain in graph '%s' failed",
                                   g->name);
                    ok = false;
                } else {
                    st->reassociated++;
                }
            }
            if (!ok) break;
            if (repl >= 0) {
                map[n->outputs[0]] = repl;
                const char *name = g->values[n->outputs[0]].name;
                if (!is_generated_name(name)) itr_graph_name_value(ng, repl, name);
                continue;
            }
            // A node the plan leaves alone (the replaced products stay until DCE).
            ok = copy_node(ng, g, n, NULL, map, d);
        }
        for (int i = 0; i < g->n_outputs && ok; i++) itr_graph_add_output(ng, g->output_names[i], map[g->outputs[i]]);
        if (ok) *g = *ng;
        free(map);
    }
    free(reassoc);
    free(abc);
    free(bil);
    uses_free(&u);
    gram_plan_free(&gp);
    itr_bindings_free(&b);
    return ok;
}

// The rows rewrite of one graph: every node whose result is read only in
// rows [lo, hi) of one axis, and whose rows there come from its operands'
// rows, computes those rows only.
static bool rows_graph(struct itr_program *p, struct itr_graph *g, struct itr_rewrite_stats *st,
                       struct itr_diags *d) {
    struct rows_plan pl;
    bool any = rows_plan(g, &pl);
    bool ok = true;
    if (any) {
        int32_t *map = NULL;
        struct itr_graph *ng = new_graph_like(p, g, &map);
        for (int i = 0; i < g->n_nodes && ok; i++) {
            const struct itr_node *n = &g->nodes[i];
            struct rows out = result_rows(&pl, n);
            if (out.kind == ROWS_NONE) continue;
            struct itr_grad_ctx c = { .g = ng, .d = d, .node = n, .loc = n->loc, .scope = n->scope };
            int32_t ins_stack[16];
            int32_t *ins = n->n_inputs <= 16 ? ins_stack : xcalloc((size_t)n->n_inputs, sizeof *ins);
            for (int k = 0; k < n->n_inputs && ok; k++) {
                ins[k] = rows_view(&c, &pl, map, n->inputs[k], operand_rows(g, n, pl.shrink[i], out, k));
                ok = ins[k] >= 0;
            }
            if (ok && n->op == ITR_OP_SLICE && slice_rows(g, n).kind == ROWS_RANGE) {
                // Its operand now holds exactly the rows it takes.
                int32_t v = n->outputs[0];
                if (!itr_type_equal(&ng->values[ins[0]].type, type_of(g, v))) {
                    itr_diag_error(d, n->loc, "internal error: the rows rewrite changed a slice's type in graph '%s'",
                                   g->name);
                    ok = false;
                } else {
                    map[v] = ins[0];
                    if (!is_generated_name(g->values[v].name)) itr_graph_name_value(ng, ins[0], g->values[v].name);
                }
            } else if (ok && pl.shrink[i] && n->op == ITR_OP_RESHAPE) {
                // Its target shape names the rows it keeps.
                const struct itr_op_info *info = itr_op_info(n->op);
                struct itr_attr *attrs = itr_arena_alloc(p->arena, (size_t)info->n_attrs * sizeof *attrs);
                memcpy(attrs, n->attrs, (size_t)info->n_attrs * sizeof *attrs);
                for (int a = 0; a < info->n_attrs; a++) {
                    if (attrs[a].kind != ITR_ATTR_DIMS) continue;
                    int nd = attrs[a].u.dims.n;
                    itr_dim *dims = itr_arena_alloc(p->arena, (size_t)nd * sizeof *dims);
                    memcpy(dims, attrs[a].u.dims.v, (size_t)nd * sizeof *dims);
                    dims[out.axis] = itr_dim_const(p, out.hi - out.lo);
                    attrs[a].u.dims.v = dims;
                }
                struct itr_node shrunk = *n;
                shrunk.attrs = attrs;
                ok = copy_node(ng, g, &shrunk, ins, map, d);
            } else if (ok) {
                ok = copy_node(ng, g, n, ins, map, d);
            }
            if (ins != ins_stack) free(ins);
        }
        for (int i = 0; i < g->n_outputs && ok; i++) {
            if (!itr_type_equal(&ng->values[map[g->outputs[i]]].type, type_of(g, g->outputs[i]))) {
                itr_diag_error(d, g->loc, "internal error: the rows rewrite changed output '%s' of graph '%s'",
                               g->output_names[i], g->name);
                ok = false;
                break;
            }
            itr_graph_add_output(ng, g->output_names[i], map[g->outputs[i]]);
        }
        if (ok) {
            *g = *ng;
            st->rows += pl.shrunk;
        }
        free(map);
    }
    rows_plan_free(&pl);
    return ok;
}

bool itr_rewrite_contractions(struct itr_program *p, unsigned which, struct itr_rewrite_stats *stats,
                              struct itr_diags *d) {
    struct itr_rewrite_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    int n = p->n_graphs;   // graphs added while rewriting are new, never rewritten
    for (int i = 0; i < n; i++) {
        if (!rewrite_graph(p, p->graphs[i], which, stats, d)) return false;
        if ((which & ITR_REWRITE_ROWS) && !rows_graph(p, p->graphs[i], stats, d)) return false;
    }
    return true;
}

unsigned itr_rewrite_from_name(const char *name) {
    if (!name) return 0;
    if (strcmp(name, "gram") == 0) return ITR_REWRITE_GRAM;
    if (strcmp(name, "reassoc") == 0) return ITR_REWRITE_REASSOC;
    if (strcmp(name, "rows") == 0) return ITR_REWRITE_ROWS;
    if (strcmp(name, "all") == 0) return ITR_REWRITE_ALL;
    return 0;
}
