// Reverse-mode autodiff as a graph-to-graph transform (autodiff.h,
// docs/autodiff.md): the walk over the graph, adjoint accumulation, and the
// node builders that gradient rules use.
#include "compiler/autodiff.h"

#include <stdlib.h>
#include <string.h>

itr_grad_rule (*itr_vjp_rule_lookup)(enum itr_op op) = itr_grad_rule_of;

// ------------------------------------------------------------ node builders

const struct itr_type *gb_type(struct itr_grad_ctx *c, int32_t v) { return &c->g->values[v].type; }

bool gb_needs(const struct itr_grad_ctx *c, int i) { return !c->need || c->need[i]; }

// Builders take -1 operands from a failed builder upstream and pass the
// failure on, so rules can chain builders and check only the final value.
// A -1 without an error already reported would be a rule bug; it is turned
// into an internal error rather than a silent zero.
static bool operands_ok(struct itr_grad_ctx *c, enum itr_op op, const int32_t *in, int n_in) {
    for (int i = 0; i < n_in; i++) {
        if (in[i] >= 0 && in[i] < c->g->n_values) continue;
        if (!itr_diags_has_errors(c->d))
            itr_diag_error(c->d, c->loc, "internal error: gradient rule of '%s' built op '%s' on no value",
                           c->node ? itr_op_name(c->node->op) : "?", itr_op_name(op));
        return false;
    }
    return true;
}

bool gb_node_multi(struct itr_grad_ctx *c, enum itr_op op, const int32_t *in, int n_in,
                   const struct itr_attr *attrs, int32_t *outs) {
    if (!operands_ok(c, op, in, n_in)) return false;
    int n_before = c->d->n_errors;
    bool ok = itr_graph_add_node(c->g, op, in, n_in, attrs, c->loc, c->scope, outs, c->d);
    if (!ok && c->d->n_errors == n_before)
        itr_diag_error(c->d, c->loc, "internal error: gradient node '%s' was rejected", itr_op_name(op));
    if (!ok && c->node)
        itr_diag_note(c->d, c->loc, "while differentiating op '%s' in graph '%s'", itr_op_name(c->node->op),
                      c->g->name);
    return ok;
}

int32_t gb_node(struct itr_grad_ctx *c, enum itr_op op, const int32_t *in, int n_in, const struct itr_attr *attrs) {
    int32_t outs[16];
    for (int i = 0; i < 16; i++) outs[i] = -1;
    if (!gb_node_multi(c, op, in, n_in, attrs, outs)) return -1;
    return outs[0];
}

struct itr_attr *gb_attrs(struct itr_grad_ctx *c, enum itr_op op) { return itr_attrs_default(c->g->prog, op); }

// A misspelt attribute name in a rule is a project bug, caught by the first
// test that reaches the rule.
static struct itr_attr *attr_slot(struct itr_attr *a, enum itr_op op, const char *name, enum itr_attr_kind kind) {
    int k = itr_op_attr_index(op, name);
    if (k < 0 || itr_op_info(op)->attrs[k].kind != kind) {
        fprintf(stderr, "itrc: internal error: op '%s' has no %s attribute '%s'\n", itr_op_name(op),
                itr_attr_kind_name(kind), name);
        abort();
    }
    a[k].kind = kind;
    return &a[k];
}

void gb_set_int(struct itr_attr *a, enum itr_op op, const char *name, int64_t v) {
    attr_slot(a, op, name, ITR_ATTR_INT)->u.i = v;
}

void gb_set_bool(struct itr_attr *a, enum itr_op op, const char *name, bool v) {
    attr_slot(a, op, name, ITR_ATTR_BOOL)->u.i = v ? 1 : 0;
}

void gb_set_float(struct itr_attr *a, enum itr_op op, const char *name, double v) {
    attr_slot(a, op, name, ITR_ATTR_FLOAT)->u.f = v;
}

void gb_set_ints(struct itr_grad_ctx *c, struct itr_attr *a, enum itr_op op, const char *name, const int64_t *v,
                 int n) {
    struct itr_attr *s = attr_slot(a, op, name, ITR_ATTR_INTS);
    s->u.ints.v = n ? itr_arena_memdup(c->g->prog->arena, v, (size_t)n * sizeof *v) : NULL;
    s->u.ints.n = n;
}

void gb_set_dims(struct itr_grad_ctx *c, struct itr_attr *a, enum itr_op op, const char *name, const itr_dim *v,
                 int n) {
    struct itr_attr *s = attr_slot(a, op, name, ITR_ATTR_DIMS);
    s->u.dims.v = n ? itr_arena_memdup(c->g->prog->arena, v, (size_t)n * sizeof *v) : NULL;
    s->u.dims.n = n;
}

void gb_set_dtype(struct itr_attr *a, enum itr_op op, const char *name, enum itr_dtype dt) {
    attr_slot(a, op, name, ITR_ATTR_DTYPE)->u.dtype = dt;
}

static int32_t binop(struct itr_grad_ctx *c, enum itr_op op, int32_t a, int32_t b) {
    int32_t in[2] = { a, b };
    return gb_node(c, op, in, 2, NULL);
}

int32_t gb_add(struct itr_grad_ctx *c, int32_t a, int32_t b) { return binop(c, ITR_OP_ADD, a, b); }
int32_t gb_sub(struct itr_grad_ctx *c, int32_t a, int32_t b) { return binop(c, ITR_OP_SUB, a, b); }
int32_t gb_mul(struct itr_grad_ctx *c, int32_t a, int32_t b) { return binop(c, ITR_OP_MUL, a, b); }
int32_t gb_div(struct itr_grad_ctx *c, int32_t a, int32_t b) { return binop(c, ITR_OP_DIV, a, b); }
int32_t gb_neg(struct itr_grad_ctx *c, int32_t a) { return gb_unary(c, ITR_OP_NEG, a); }
int32_t gb_unary(struct itr_grad_ctx *c, enum itr_op op, int32_t a) { return gb_node(c, op, &a, 1, NULL); }

static int32_t full_of(struct itr_grad_ctx *c, double v, enum itr_dtype dt, const itr_dim *dims, int rank) {
    struct itr_attr *a = gb_attrs(c, ITR_OP_FULL);
    gb_set_float(a, ITR_OP_FULL, "value", v);
    gb_set_dims(c, a, ITR_OP_FULL, "shape", dims, rank);
    gb_set_dtype(a, ITR_OP_FULL, "dtype", dt);
    return gb_node(c, ITR_OP_FULL, NULL, 0, a);
}

int32_t gb_scalar(struct itr_grad_ctx *c, double v, enum itr_dtype dt) { return full_of(c, v, dt, NULL, 0); }

int32_t gb_zeros(struct itr_grad_ctx *c, const struct itr_type *t) {
    struct itr_type tt = *t;
    return full_of(c, 0.0, tt.dtype, tt.dims, tt.rank);
}

int32_t gb_reshape(struct itr_grad_ctx *c, int32_t x, const struct itr_type *t) {
    if (!operands_ok(c, ITR_OP_RESHAPE, &x, 1)) return -1;
    struct itr_type tt = *t;
    if (itr_type_equal(gb_type(c, x), &tt)) return x;
    struct itr_attr *a = gb_attrs(c, ITR_OP_RESHAPE);
    gb_set_dims(c, a, ITR_OP_RESHAPE, "shape", tt.dims, tt.rank);
    return gb_node(c, ITR_OP_RESHAPE, &x, 1, a);
}

int32_t gb_rows(struct itr_grad_ctx *c, int32_t x) {
    struct itr_type t = *gb_type(c, x);
    itr_dim rows = t.dims[0];
    for (int i = 1; i < t.rank - 1; i++) rows = itr_dim_binary(c->g->prog, ITR_DIM_MUL, rows, t.dims[i]);
    itr_dim dims[2] = { rows, t.dims[t.rank - 1] };
    struct itr_type r = itr_type_make(t.dtype, 2, dims);
    return gb_reshape(c, x, &r);
}

int32_t gb_reduce(struct itr_grad_ctx *c, enum itr_op op, int32_t x, const int64_t *axes, int n_axes, bool keepdims) {
    if (n_axes == 0) return operands_ok(c, op, &x, 1) ? x : -1;   // [] would mean "every axis"
    struct itr_attr *a = gb_attrs(c, op);
    gb_set_ints(c, a, op, "axes", axes, n_axes);
    gb_set_bool(a, op, "keepdims", keepdims);
    return gb_node(c, op, &x, 1, a);
}

int32_t gb_sum_to(struct itr_grad_ctx *c, int32_t x, const struct itr_type *target) {
    if (!operands_ok(c, ITR_OP_SUM, &x, 1)) return -1;
    struct itr_type xt = *gb_type(c, x), tt = *target;
    if (itr_type_equal(&xt, &tt)) return x;
    itr_dim one = itr_dim_const(c->g->prog, 1);
    int lead = xt.rank - tt.rank;
    int64_t axes[ITR_MAX_RANK];
    int n = 0;
    bool ok = lead >= 0 && xt.dtype == tt.dtype;
    for (int i = 0; ok && i < xt.rank; i++) {
        if (i < lead) { axes[n++] = i; continue; }
        itr_dim dt = tt.dims[i - lead], dxd = xt.dims[i];
        if (dt == dxd) continue;
        if (dt == one) axes[n++] = i;
        else ok = false;
    }
    if (!ok) {
        char a[160], b[160];
        itr_type_format(c->g->prog, &xt, a, sizeof a);
        itr_type_format(c->g->prog, &tt, b, sizeof b);
        itr_diag_error(c->d, c->loc, "internal error: gradient of '%s': cannot sum %s down to %s",
                       c->node ? itr_op_name(c->node->op) : "?", a, b);
        return -1;
    }
    // keepdims leaves size-1 axes where the target has them; the reshape then
    // drops the leading ones (same element count, same order).
    return gb_reshape(c, gb_reduce(c, ITR_OP_SUM, x, axes, n, true), &tt);
}

int32_t gb_expand(struct itr_grad_ctx *c, int32_t x, const struct itr_type *t) {
    if (!operands_ok(c, ITR_OP_EXPAND, &x, 1)) return -1;
    struct itr_type tt = *t;
    if (itr_type_equal(gb_type(c, x), &tt)) return x;
    struct itr_attr *a = gb_attrs(c, ITR_OP_EXPAND);
    gb_set_dims(c, a, ITR_OP_EXPAND, "shape", tt.dims, tt.rank);
    return gb_node(c, ITR_OP_EXPAND, &x, 1, a);
}

int32_t gb_cast(struct itr_grad_ctx *c, int32_t x, enum itr_dtype dt) {
    if (!operands_ok(c, ITR_OP_CAST, &x, 1)) return -1;
    if (gb_type(c, x)->dtype == dt) return x;
    struct itr_attr *a = gb_attrs(c, ITR_OP_CAST);
    gb_set_dtype(a, ITR_OP_CAST, "dtype", dt);
    return gb_node(c, ITR_OP_CAST, &x, 1, a);
}

int32_t gb_where(struct itr_grad_ctx *c, int32_t cond, int32_t a, int32_t b) {
    int32_t in[3] = { cond, a, b };
    return gb_node(c, ITR_OP_WHERE, in, 3, NULL);
}

int32_t gb_transpose(struct itr_grad_ctx *c, int32_t x, const int64_t *perm, int n) {
    if (!operands_ok(c, ITR_OP_TRANSPOSE, &x, 1)) return -1;
    struct itr_attr *a = gb_attrs(c, ITR_OP_TRANSPOSE);
    if (perm) gb_set_ints(c, a, ITR_OP_TRANSPOSE, "perm", perm, n);
    return gb_node(c, ITR_OP_TRANSPOSE, &x, 1, a);
}

int32_t gb_swap_last2(struct itr_grad_ctx *c, int32_t x) {
    if (x < 0) return -1;
    int rank = gb_type(c, x)->rank;
    int64_t perm[ITR_MAX_RANK];
    for (int i = 0; i < rank; i++) perm[i] = i;
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return gb_transpose(c, x, perm, rank);
}

// ------------------------------------------------------------ the walk

static bool is_float(const struct itr_graph *g, int32_t v) { return itr_dtype_is_float(g->values[v].type.dtype); }

static bool operand_carries(const struct itr_op_info *info, int i) {
    return info->nondiff != ITR_NONDIFF_ALL && !(i < 32 && (info->nondiff >> i) & 1u);
}

bool itr_vjp(struct itr_graph *g, const int32_t *outputs, const int32_t *seeds, int n_out, const int32_t *wrt,
             int n_wrt, int32_t *grads, bool *reached, struct itr_diags *d) {
    const int nv = g->n_values, nn = g->n_nodes;
    for (int j = 0; j < n_wrt; j++) { grads[j] = -1; reached[j] = false; }
    for (int k = 0; k < n_out; k++)
        if (outputs[k] < 0 || outputs[k] >= nv || seeds[k] < 0 || seeds[k] >= nv ||
            !itr_type_equal(&g->values[outputs[k]].type, &g->values[seeds[k]].type)) {
            itr_diag_error(d, g->loc, "internal error: autodiff of graph '%s': seed %d does not match output %d",
                           g->name, k, k);
            return false;
        }
    for (int j = 0; j < n_wrt; j++)
        if (wrt[j] < 0 || wrt[j] >= nv) {
            itr_diag_error(d, g->loc, "internal error: autodiff of graph '%s': wrt %d is no value", g->name, j);
            return false;
        }

    // fwd: float values that depend differentiably on some wrt; bwd: values
    // some output depends on. Only nodes with a result in both are walked,
    // so unrelated parts of the graph (other heads, the data pipeline) get
    // no adjoint nodes.
    bool *fwd = calloc((size_t)nv + 1, sizeof *fwd), *bwd = calloc((size_t)nv + 1, sizeof *bwd);
    int32_t *adj = malloc(((size_t)nv + 1) * sizeof *adj);
    int32_t *dy = NULL, *dx = NULL;
    bool *need = NULL;
    bool ok = fwd && bwd && adj;
    if (!ok) { itr_diag_error(d, g->loc, "out of memory differentiating graph '%s'", g->name); goto done; }
    for (int v = 0; v < nv; v++) adj[v] = -1;
    for (int j = 0; j < n_wrt; j++)
        if (is_float(g, wrt[j])) fwd[wrt[j]] = true;
    for (int i = 0; i < nn; i++) {
        const struct itr_node *n = &g->nodes[i];
        const struct itr_op_info *info = itr_op_info(n->op);
        bool any = false;
        for (int k = 0; k < n->n_inputs && !any; k++) any = fwd[n->inputs[k]] && operand_carries(info, k);
        if (any)
            for (int k = 0; k < n->n_outputs; k++) fwd[n->outputs[k]] = is_float(g, n->outputs[k]);
    }
    for (int k = 0; k < n_out; k++) bwd[outputs[k]] = true;
    for (int i = nn - 1; i >= 0; i--) {
        const struct itr_node *n = &g->nodes[i];
        bool any = false;
        for (int k = 0; k < n->n_outputs && !any; k++) any = bwd[n->outputs[k]];
        if (any)
            for (int k = 0; k < n->n_inputs; k++) bwd[n->inputs[k]] = true;
    }

    // Seeds of an output listed twice add up, like any other meeting adjoints.
    struct itr_grad_ctx seed_ctx = { g, d, NULL, g->loc, NULL, NULL };
    for (int k = 0; k < n_out && ok; k++) {
        int32_t v = outputs[k];
        if (!fwd[v]) continue;
        adj[v] = adj[v] < 0 ? seeds[k] : gb_add(&seed_ctx, adj[v], seeds[k]);
        ok = adj[v] >= 0;
    }

    int max_in = 1, max_out = 1;
    for (int i = 0; i < nn; i++) {
        if (g->nodes[i].n_inputs > max_in) max_in = g->nodes[i].n_inputs;
        if (g->nodes[i].n_outputs > max_out) max_out = g->nodes[i].n_outputs;
    }
    dy = malloc((size_t)max_out * sizeof *dy);
    dx = malloc((size_t)max_in * sizeof *dx);
    need = malloc((size_t)max_in * sizeof *need);
    if (ok && (!dy || !dx || !need)) {
        itr_diag_error(d, g->loc, "out of memory differentiating graph '%s'", g->name);
        ok = false;
    }

    for (int i = nn - 1; i >= 0 && ok; i--) {
        // A copy: rules append nodes, which may move g->nodes.
        struct itr_node node = g->nodes[i];
        const struct itr_op_info *info = itr_op_info(node.op);
        bool has_dy = false;
        for (int k = 0; k < node.n_outputs; k++) {
            int32_t v = node.outputs[k];
            dy[k] = fwd[v] && bwd[v] ? adj[v] : -1;
            has_dy |= dy[k] >= 0;
        }
        if (!has_dy || info->nondiff == ITR_NONDIFF_ALL) continue;
        bool any_need = false;
        for (int k = 0; k < node.n_inputs; k++) {
            int32_t v = node.inputs[k];
            need[k] = fwd[v] && operand_carries(info, k);
            any_need |= need[k];
        }
        if (!any_need) continue;
        itr_grad_rule rule = itr_vjp_rule_lookup(node.op);
        if (!rule) {
            itr_diag_error(d, node.loc, "op '%s' has no gradient rule, but differentiating graph '%s' needs one here",
                           itr_op_name(node.op), g->name);
            if (node.scope) itr_diag_note(d, node.loc, "inside module instance '%s'", node.scope);
            ok = false;
            break;
        }
        for (int k = 0; k < node.n_inputs; k++) dx[k] = -1;
        struct itr_grad_ctx c = { g, d, &node, node.loc, node.scope, need };
        int errors_before = d->n_errors;
        if (!rule(&c, &node, dy, dx) || d->n_errors > errors_before) {
            if (d->n_errors == errors_before)
                itr_diag_error(d, node.loc, "internal error: gradient rule of '%s' failed without a message",
                               itr_op_name(node.op));
            ok = false;
            break;
        }
        for (int k = 0; k < node.n_inputs && ok; k++) {
            int32_t v = node.inputs[k];
            if (!need[k] || dx[k] < 0) continue;
            if (dx[k] >= g->n_values || !itr_type_equal(&g->values[dx[k]].type, &g->values[v].type)) {
                char want[160], got[160] = "no value";
                itr_type_format(g->prog, &g->values[v].type, want, sizeof want);
                if (dx[k] < g->n_values) itr_type_format(g->prog, &g->values[dx[k]].type, got, sizeof got);
                itr_diag_error(d, node.loc,
                               "internal error: gradient rule of '%s' gave operand %d an adjoint of type %s, "
                               "but the operand is %s (graph '%s')",
                               itr_op_name(node.op), k, got, want, g->name);
                ok = false;
                break;
            }
            adj[v] = adj[v] < 0 ? dx[k] : gb_add(&c, adj[v], dx[k]);
            ok = adj[v] >= 0;
        }
    }

    for (int j = 0; j < n_wrt && ok; j++) {
        grads[j] = adj[wrt[j]];
        reached[j] = grads[j] >= 0;
    }
    if (!ok)
        for (int j = 0; j < n_wrt; j++) { grads[j] = -1; reached[j] = false; }
done:
    free(fwd);
    free(bwd);
    free(adj);
    free(dy);
    free(dx);
    free(need);
    return ok;
}
