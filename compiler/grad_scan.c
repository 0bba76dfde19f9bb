// The gradient rule of scan: backpropagation through time, as two more scans.
//
// A scan's adjoint needs, at every step t, the carries the body saw at t,
// but the forward scan keeps only the final ones. So the rule
//   1. adds a "record" scan: the same loop, whose body also emits its
//      incoming carries, and the products of its matmuls that the backward
//      body uses, as per-step outputs (stacked like any output). CSE then
//      merges it with the forward scan (compiler/passes.h), as it computes a
//      superset of the forward one, so the loop runs once;
//   2. builds a backward body: it replays the forward body on (c_t, x_t, k)
//      (reading the recorded products rather than recomputing them),
//      differentiates that replay with itr_vjp (so nested scans recurse) and
//      returns the adjoint of c_t as the next carry, the running sum of the
//      constants' adjoints as another carry, and the adjoint of x_t as a
//      per-step output;
//   3. runs it as a scan in the opposite direction over the recorded
//      carries, the scanned operands and the adjoints of the stacked outputs.
// The initial carries' adjoints are its final carries, the scanned
// operands' the stacked per-step outputs, the constants' the final sums.
// docs/autodiff.md ("Gradients of indexing, sorting and scan") has the
// contract, including what a body may not do (read a trainable parameter
// directly).
#include "compiler/autodiff.h"

#include <stdlib.h>
#include <string.h>

// Results of one node (scan's shape context holds at most 16).
#define MAX_RESULTS 16

// The scan being differentiated, in the order of its operands and results.
struct scan_sig {
    const struct itr_graph *body;
    int nc, ns, nk, no;       // carries, scanned operands, constants, per-step outputs
    int64_t axis;
    bool reverse;
};

static bool alloc_fail(struct itr_grad_ctx *c, const struct itr_node *n) {
    itr_diag_error(c->d, n->loc, "out of memory differentiating '%s'", itr_op_name(n->op));
    return false;
}

// A body graph named "<base><suffix>", with a counter if that is taken (a
// scan differentiated twice, or a nested body reached through two copies).
static struct itr_graph *new_body(struct itr_program *p, const char *base, const char *suffix) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    for (int k = 2; itr_program_find_graph(p, name); k++) snprintf(name, sizeof name, "%s%s%d", base, suffix, k);
    return itr_program_add_graph(p, name, ITR_GRAPH_BODY);
}

static bool copy_nodes(struct itr_graph *dst, const struct itr_graph *src, int32_t *map, struct itr_diags *d);

static int32_t *new_map(const struct itr_graph *g) {
    int32_t *map = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *map);
    if (map)
        for (int v = 0; v < g->n_values; v++) map[v] = -1;
    return map;
}

// A copy of body graph src under a new name ("<name>_copy"), nested bodies
// copied too. Every scan node gets a body of its own, as the front end
// builds them: the text format has no way to share one (each call of a def
// elaborates it anew), and passes may then edit a body for its one scan.
static struct itr_graph *clone_body(struct itr_program *p, const struct itr_graph *src, struct itr_diags *d) {
    int32_t *map = new_map(src);
    if (!map) {
        itr_diag_error(d, src->loc, "out of memory copying scan body '%s'", src->name);
        return NULL;
    }
    struct itr_graph *g = new_body(p, src->name, "_copy");
    g->loc = src->loc;
    for (int i = 0; i < src->n_inputs; i++) {
        const struct itr_value *v = &src->values[src->inputs[i]];
        map[src->inputs[i]] = itr_graph_add_input(g, v->name, v->type, v->loc);
    }
    bool ok = copy_nodes(g, src, map, d);
    for (int k = 0; ok && k < src->n_outputs; k++) itr_graph_add_output(g, src->output_names[k], map[src->outputs[k]]);
    free(map);
    return ok ? g : NULL;
}

// Appends the nodes of src to dst. map[v] must already hold the dst value of
// every input of src; params are mapped here and node results as they are
// made. Literal tensors and scan bodies are copied: each constant node owns
// its tensor, each scan node its body.
static bool copy_nodes(struct itr_graph *dst, const struct itr_graph *src, int32_t *map, struct itr_diags *d) {
    for (int v = 0; v < src->n_values; v++)
        if (src->values[v].kind == ITR_VALUE_PARAM) map[v] = itr_graph_use_param(dst, src->values[v].param);
    for (int ni = 0; ni < src->n_nodes; ni++) {
        const struct itr_node *sn = &src->nodes[ni];
        const struct itr_op_info *info = itr_op_info(sn->op);
        int32_t *in = malloc((size_t)(sn->n_inputs ? sn->n_inputs : 1) * sizeof *in);
        struct itr_attr *attrs = malloc((size_t)(info->n_attrs ? info->n_attrs : 1) * sizeof *attrs);
        int32_t outs[MAX_RESULTS];
        if (!in || !attrs || sn->n_outputs > MAX_RESULTS) {
            free(in);
            free(attrs);
            itr_diag_error(d, sn->loc, "out of memory copying scan body '%s'", src->name);
            return false;
        }
        for (int k = 0; k < sn->n_inputs; k++) in[k] = map[sn->inputs[k]];
        struct itr_tensor *cloned = NULL;
        for (int k = 0; k < info->n_attrs; k++) {
            attrs[k] = sn->attrs[k];
            if (attrs[k].kind == ITR_ATTR_TENSOR && attrs[k].u.tensor) {
                cloned = attrs[k].u.tensor = itr_tensor_clone(sn->attrs[k].u.tensor);
                if (!cloned) {
                    free(in);
                    free(attrs);
                    itr_diag_error(d, sn->loc, "out of memory copying a literal of scan body '%s'", src->name);
                    return false;
                }
            } else if (attrs[k].kind == ITR_ATTR_GRAPH && attrs[k].u.graph &&
                       !(attrs[k].u.graph = clone_body(dst->prog, sn->attrs[k].u.graph, d))) {
                free(in);
                free(attrs);
                return false;
            }
        }
        bool ok = itr_graph_add_node(dst, sn->op, in, sn->n_inputs, attrs, sn->loc, sn->scope, outs, d);
        free(in);
        free(attrs);
        if (!ok) {
            itr_tensor_free(cloned);
            itr_diag_note(d, sn->loc, "while copying scan body '%s' for its gradient", src->name);
            return false;
        }
        for (int k = 0; k < sn->n_outputs; k++) map[sn->outputs[k]] = outs[k];
    }
    return true;
}

static struct itr_attr *scan_attrs(struct itr_grad_ctx *c, struct itr_graph *body, int n_carry, int n_scan,
                                   int64_t axis, bool reverse) {
    struct itr_attr *a = gb_attrs(c, ITR_OP_SCAN);
    a[itr_op_attr_index(ITR_OP_SCAN, "body")] = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = body };
    gb_set_int(a, ITR_OP_SCAN, "n_carry", n_carry);
    gb_set_int(a, ITR_OP_SCAN, "n_scan", n_scan);
    gb_set_int(a, ITR_OP_SCAN, "axis", axis);
    gb_set_bool(a, ITR_OP_SCAN, "reverse", reverse);
    return a;
}

// Step 1: the forward scan again, with the incoming carries of every step as
// extra stacked outputs; rec[i] receives the one of carry i.
static bool record_carries(struct itr_grad_ctx *c, const struct itr_node *n, const struct scan_sig *s,
                           const int32_t *rec_vals, int n_rec, int32_t *rec) {
    const struct itr_graph *body = s->body;
    if (body->n_outputs + s->nc + n_rec > MAX_RESULTS) {
        itr_diag_error(c->d, n->loc, "cannot differentiate this scan: recording its %d carries would give %d results "
                       "(at most %d)", s->nc, body->n_outputs + s->nc, MAX_RESULTS);
        return false;
    }
    struct itr_graph *r = new_body(c->g->prog, body->name, "_rec");
    int32_t *map = new_map(body);
    if (!map) return alloc_fail(c, n);
    for (int i = 0; i < body->n_inputs; i++) {
        const struct itr_value *v = &body->values[body->inputs[i]];
        map[body->inputs[i]] = itr_graph_add_input(r, v->name, v->type, v->loc);
    }
    bool ok = copy_nodes(r, body, map, c->d);
    if (ok) {
        for (int k = 0; k < body->n_outputs; k++) itr_graph_add_output(r, body->output_names[k], map[body->outputs[k]]);
        for (int i = 0; i < s->nc; i++) {
            char name[256];
            snprintf(name, sizeof name, "%s_in", body->values[body->inputs[i]].name);
            itr_graph_add_output(r, name, map[body->inputs[i]]);
        }
        for (int j = 0; j < n_rec; j++) {
            char name[256];
            snprintf(name, sizeof name, "%s_rec", body->values[rec_vals[j]].name);
            itr_graph_add_output(r, name, map[rec_vals[j]]);
        }
    }
    free(map);
    if (!ok) return false;
    int32_t outs[MAX_RESULTS];
    if (!gb_node_multi(c, ITR_OP_SCAN, n->inputs, n->n_inputs, scan_attrs(c, r, s->nc, s->ns, s->axis, s->reverse),
                       outs))
        return false;
    for (int i = 0; i < s->nc + n_rec; i++) rec[i] = outs[body->n_outputs + i];
    return true;
}

// What the backward body computes, filled in by build_backward_body.
struct bwd {
    struct itr_graph *g;
    bool *fc;            // [nc] carry i is float: it has an adjoint carry
    bool *dy_in;         // [no] per-step output j has an adjoint fed to the backward scan
    bool *dk;            // [nk] constant k is reached: it has an accumulated adjoint
    bool *dxs;           // [ns] scanned operand j is reached: it has a per-step adjoint
    int n_fc, n_dk, n_dxs, n_dy;
    // Body values the record scan stacks so the backward body reads them
    // instead of recomputing them (the products of the body's matmuls).
    int32_t rec_vals[MAX_RESULTS];
    int n_rec;
    // Constants whose per-step adjoint is one product a_t^T b_t (a weight
    // read by a matmul in the body): instead of accumulating it in a carry,
    // the backward body emits a_t and b_t per step, and one product of the
    // stacked rows after the loop sums every step at once.
    bool *hoist;         // [nk]
    bool *hoist_t;       // [nk] the adjoint is the transpose of that product
    int n_hoist;
};

static void bwd_free(struct bwd *b) {
    free(b->hoist);
    free(b->hoist_t);
    free(b->fc);
    free(b->dy_in);
    free(b->dk);
    free(b->dxs);
}

static bool use_recorded_products(struct itr_grad_ctx *c, const struct itr_node *n, const struct scan_sig *s,
                                  struct bwd *b, const int32_t *map);

static const struct itr_node *producer_of(const struct itr_graph *g, int32_t v) {
    return g->values[v].kind == ITR_VALUE_NODE ? &g->nodes[g->values[v].node] : NULL;
}

// A transpose that swaps the two axes of a matrix.
static bool is_matrix_transpose(const struct itr_graph *g, const struct itr_node *x) {
    if (!x || x->op != ITR_OP_TRANSPOSE || g->values[x->inputs[0]].type.rank != 2) return false;
    const struct itr_attr *a = itr_node_attr(x, "perm");
    return !a || a->kind != ITR_ATTR_INTS || (a->u.ints.n == 2 && a->u.ints.v[0] == 1);
}

// v = matmul(transpose(a), b) or its transpose, a and b matrices: the
// adjoint of a weight w read as x w or x w^T.
static bool outer_product_form(const struct itr_graph *g, int32_t v, int32_t *a, int32_t *b, bool *transposed) {
    const struct itr_node *x = producer_of(g, v);
    *transposed = is_matrix_transpose(g, x);
    if (*transposed) x = producer_of(g, x->inputs[0]);
    if (!x || x->op != ITR_OP_MATMUL || g->values[x->inputs[0]].type.rank != 2 ||
        g->values[x->inputs[1]].type.rank != 2)
        return false;
    const struct itr_node *ta = producer_of(g, x->inputs[0]);
    if (!is_matrix_transpose(g, ta)) return false;
    *a = ta->inputs[0];
    *b = x->inputs[1];
    return true;
}

// Zeros with type t, built in graph g (a scan body, not the rule's graph).
static int32_t zeros_in(struct itr_grad_ctx *c, struct itr_graph *g, const struct itr_type *t) {
    struct itr_grad_ctx bc = *c;
    bc.g = g;
    struct itr_type copy = *t;
    return gb_zeros(&bc, &copy);
}

// Step 2. The backward body's signature, in scan order:
//   carries:  dc_i (float carries), dk_acc_k (reached constants)
//   scanned:  c_t (every carry, recorded), x_t (every scanned operand),
//             dy_t (per-step outputs with an adjoint)
//   consts:   every constant
// and its results: dc_{t} for each float carry, dk_acc + dk_t, then dx_t of
// each reached scanned operand.
static bool build_backward_body(struct itr_grad_ctx *c, const struct itr_node *n, const struct scan_sig *s,
                                const int32_t *dy, struct bwd *b) {
    const struct itr_graph *body = s->body;
    struct itr_program *p = c->g->prog;
    b->fc = calloc((size_t)s->nc + 1, sizeof *b->fc);
    b->dy_in = calloc((size_t)s->no + 1, sizeof *b->dy_in);
    b->dk = calloc((size_t)s->nk + 1, sizeof *b->dk);
    b->dxs = calloc((size_t)s->ns + 1, sizeof *b->dxs);
    int nb_in = body->n_inputs, nb_out = body->n_outputs;
    int32_t *map = new_map(body);
    int32_t *outs = calloc((size_t)nb_out + 1, sizeof *outs), *seeds = calloc((size_t)nb_out + 1, sizeof *seeds);
    int32_t *dc_in = calloc((size_t)s->nc + 1, sizeof *dc_in);
    int32_t *wrt = calloc((size_t)nb_in + (size_t)body->n_values + 1, sizeof *wrt);
    int32_t *grads = calloc((size_t)nb_in + (size_t)body->n_values + 1, sizeof *grads);
    bool *reached = calloc((size_t)nb_in + (size_t)body->n_values + 1, sizeof *reached);
    int *wrt_of = calloc((size_t)nb_in + 1, sizeof *wrt_of);
    int32_t *in_grad = calloc((size_t)nb_in + 1, sizeof *in_grad);
    bool ok = b->fc && b->dy_in && b->dk && b->dxs && map && outs && seeds && dc_in && wrt && grads && reached &&
              wrt_of && in_grad;
    if (!ok) {
        alloc_fail(c, n);
        goto done;
    }
    struct itr_graph *g = b->g = new_body(p, body->name, "_grad");

    for (int i = 0; i < s->nc; i++) {
        const struct itr_value *v = &body->values[body->inputs[i]];
        if (!(b->fc[i] = itr_dtype_is_float(v->type.dtype))) continue;
        char name[256];
        snprintf(name, sizeof name, "d_%s", v->name);
        dc_in[i] = itr_graph_add_input(g, name, v->type, v->loc);
        b->n_fc++;
    }
    int n_front = g->n_inputs;   // the dk_acc carries are inserted here once known
    for (int i = 0; i < s->nc + s->ns; i++) {
        const struct itr_value *v = &body->values[body->inputs[i]];
        map[body->inputs[i]] = itr_graph_add_input(g, v->name, v->type, v->loc);
    }
    int n_out = 0;
    for (int i = 0; i < s->nc; i++)
        if (b->fc[i]) outs[n_out] = body->outputs[i], seeds[n_out++] = dc_in[i];
    for (int j = 0; j < s->no; j++) {
        int32_t ov = body->outputs[s->nc + j];
        if (dy[s->nc + j] < 0 || !itr_dtype_is_float(body->values[ov].type.dtype)) continue;
        char name[256];
        snprintf(name, sizeof name, "d_%s", body->output_names[s->nc + j]);
        b->dy_in[j] = true;
        b->n_dy++;
        outs[n_out] = ov;
        seeds[n_out++] = itr_graph_add_input(g, name, body->values[ov].type, body->values[ov].loc);
    }
    for (int i = s->nc + s->ns; i < nb_in; i++) {
        const struct itr_value *v = &body->values[body->inputs[i]];
        map[body->inputs[i]] = itr_graph_add_input(g, v->name, v->type, v->loc);
    }
    if (!(ok = copy_nodes(g, body, map, c->d))) goto done;
    for (int k = 0; k < n_out; k++) outs[k] = map[outs[k]];

    // wrt: the float inputs whose adjoint is wanted (wrt_of[i] is input i's
    // place, or -1), then the trainable parameters, listed only to report them.
    int n_wrt = 0;
    for (int i = 0; i < nb_in; i++) {
        wrt_of[i] = -1;
        // Carries are always differentiated: their adjoints carry the chain
        // from later steps to the scanned operands and constants.
        if (itr_dtype_is_float(body->values[body->inputs[i]].type.dtype) && (i < s->nc || gb_needs(c, i))) {
            wrt_of[i] = n_wrt;
            wrt[n_wrt++] = map[body->inputs[i]];
        }
    }
    int n_inputs_wrt = n_wrt;
    for (int v = 0; v < body->n_values; v++) {
        const struct itr_value *val = &body->values[v];
        if (val->kind == ITR_VALUE_PARAM && itr_dtype_is_float(val->type.dtype) && !p->params[val->param].frozen)
            wrt[n_wrt++] = map[v];
    }
    for (int k = 0; k < n_wrt; k++) grads[k] = -1, reached[k] = false;
    if (n_out && !(ok = itr_vjp(g, outs, seeds, n_out, wrt, n_wrt, grads, reached, c->d))) {
        itr_diag_note(c->d, n->loc, "in the gradient of the body '%s' of this scan", body->name);
        goto done;
    }
    for (int k = n_inputs_wrt; k < n_wrt; k++)
        if (reached[k] && grads[k] >= 0) {
            itr_diag_error(c->d, n->loc, "cannot differentiate this scan: its body '%s' reads the trainable parameter "
                           "'%s' directly, and a parameter's gradient cannot leave a scan; pass it to the scan as a "
                           "constant", body->name, g->values[wrt[k]].name);
            ok = false;
            goto done;
        }
    // The adjoint of body input i in the replay, or -1.
    for (int i = 0; i < nb_in; i++) in_grad[i] = wrt_of[i] >= 0 && reached[wrt_of[i]] ? grads[wrt_of[i]] : -1;

    // The accumulated constants' adjoints: new carry inputs, moved to their
    // place among the carries (after the dc_i) now that they are known.
    int32_t *dk_acc = calloc((size_t)s->nk + 1, sizeof *dk_acc);
    if (!dk_acc) {
        ok = alloc_fail(c, n);
        goto done;
    }
    int32_t *hoist_ab = calloc((size_t)s->nk * 2 + 1, sizeof *hoist_ab);
    b->hoist = calloc((size_t)s->nk + 1, sizeof *b->hoist);
    b->hoist_t = calloc((size_t)s->nk + 1, sizeof *b->hoist_t);
    if (!hoist_ab || !b->hoist || !b->hoist_t) {
        free(dk_acc);
        free(hoist_ab);
        ok = alloc_fail(c, n);
        goto done;
    }
    for (int k = 0; k < s->nk; k++) {
        int i = s->nc + s->ns + k;
        if (!(b->dk[k] = in_grad[i] >= 0))
            continue;
        // Stacked along axis 0 or 1, a per-step matrix keeps its last axis
        // last, so the stacked rows are the steps' rows in some order.
        if ((s->axis == 0 || s->axis == 1) &&
            outer_product_form(g, in_grad[i], &hoist_ab[2 * k], &hoist_ab[2 * k + 1], &b->hoist_t[k])) {
            b->dk[k] = false;
            b->hoist[k] = true;
            b->n_hoist++;
            continue;
        }
        const struct itr_value *v = &body->values[body->inputs[i]];
        char name[256];
        snprintf(name, sizeof name, "d_%s_acc", v->name);
        dk_acc[k] = itr_graph_add_input(g, name, v->type, v->loc);
        b->n_dk++;
    }
    if (b->n_dk) {
        int32_t moved[64], *tmp = b->n_dk <= 64 ? moved : malloc((size_t)b->n_dk * sizeof *tmp);
        if (!tmp) {
            free(dk_acc);
            ok = alloc_fail(c, n);
            goto done;
        }
        memcpy(tmp, g->inputs + g->n_inputs - b->n_dk, (size_t)b->n_dk * sizeof *tmp);
        memmove(g->inputs + n_front + b->n_dk, g->inputs + n_front,
                (size_t)(g->n_inputs - b->n_dk - n_front) * sizeof *g->inputs);
        memcpy(g->inputs + n_front, tmp, (size_t)b->n_dk * sizeof *tmp);
        if (tmp != moved) free(tmp);
    }

    struct itr_grad_ctx bc = *c;
    bc.g = g;
    for (int i = 0; i < s->nc && ok; i++) {
        if (!b->fc[i]) continue;
        int32_t v = in_grad[i];
        if (v < 0) v = zeros_in(c, g, &body->values[body->inputs[i]].type);
        if (v < 0) ok = false;
        else itr_graph_add_output(g, g->values[dc_in[i]].name, v);
    }
    for (int k = 0; k < s->nk && ok; k++) {
        if (!b->dk[k]) continue;
        int32_t v = gb_add(&bc, dk_acc[k], in_grad[s->nc + s->ns + k]);
        if (v < 0) ok = false;
        else itr_graph_add_output(g, g->values[dk_acc[k]].name, v);
    }
    for (int j = 0; j < s->ns && ok; j++) {
        int i = s->nc + j;
        if (!(b->dxs[j] = in_grad[i] >= 0))
            continue;
        char name[256];
        snprintf(name, sizeof name, "d_%s", body->values[body->inputs[i]].name);
        itr_graph_add_output(g, name, in_grad[i]);
        b->n_dxs++;
    }
    for (int k = 0; k < s->nk && ok; k++) {
        if (!b->hoist[k]) continue;
        const char *kn = body->values[body->inputs[s->nc + s->ns + k]].name;
        char name[256];
        snprintf(name, sizeof name, "d_%s_lhs", kn);
        itr_graph_add_output(g, name, hoist_ab[2 * k]);
        snprintf(name, sizeof name, "d_%s_rhs", kn);
        itr_graph_add_output(g, name, hoist_ab[2 * k + 1]);
    }
    free(hoist_ab);
    free(dk_acc);
    if (ok) ok = use_recorded_products(c, n, s, b, map);

done:
    free(map);
    free(outs);
    free(seeds);
    free(dc_in);
    free(wrt);
    free(grads);
    free(reached);
    free(wrt_of);
    free(in_grad);
    return ok;
}

// g again with its values in definition order (inputs first, then each
// node's results), as plans and the verifier require after inputs were added
// behind the nodes. Attributes move to the new nodes; nothing is copied.
static bool renumber_body(struct itr_graph *g, struct itr_diags *d) {
    struct itr_graph *ng = itr_arena_alloc(g->prog->arena, sizeof *ng);
    int32_t *map = new_map(g);
    if (!ng || !map) {
        free(map);
        itr_diag_error(d, g->loc, "out of memory building scan body '%s'", g->name);
        return false;
    }
    memset(ng, 0, sizeof *ng);
    ng->prog = g->prog;
    ng->name = g->name;
    ng->kind = g->kind;
    ng->loc = g->loc;
    ng->train = g->train;
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        map[g->inputs[i]] = itr_graph_add_input(ng, v->name, v->type, v->loc);
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == ITR_VALUE_PARAM) map[v] = itr_graph_use_param(ng, g->values[v].param);
    bool ok = true;
    for (int ni = 0; ni < g->n_nodes && ok; ni++) {
        const struct itr_node *x = &g->nodes[ni];
        int32_t in[64], outs[MAX_RESULTS];
        if (x->n_inputs > 64 || x->n_outputs > MAX_RESULTS) {
            itr_diag_error(d, x->loc, "internal error: node with %d operands in scan body '%s'", x->n_inputs, g->name);
            ok = false;
            break;
        }
        for (int k = 0; k < x->n_inputs; k++) in[k] = map[x->inputs[k]];
        ok = itr_graph_add_node(ng, x->op, in, x->n_inputs, x->attrs, x->loc, x->scope, outs, d);
        for (int k = 0; ok && k < x->n_outputs; k++) map[x->outputs[k]] = outs[k];
    }
    for (int k = 0; ok && k < g->n_outputs; k++) itr_graph_add_output(ng, g->output_names[k], map[g->outputs[k]]);
    free(map);
    if (ok) *g = *ng;
    return ok;
}

// The replay's matmul products, read from the record scan instead of
// recomputed: the forward loop computed them already, and they are the
// replay's costly part (a GRU's h W_hh^T is as large as the rest of the
// backward step together). The product node stays in the replay until the
// vjp is built, since its operands' adjoints come from it; then its uses
// read a new scanned input, and dead-code elimination drops the product.
// Only products the backward body still uses are recorded, within the
// scan's result limit; the rest are recomputed as before.
static bool use_recorded_products(struct itr_grad_ctx *c, const struct itr_node *n, const struct scan_sig *s,
                                  struct bwd *b, const int32_t *map) {
    const struct itr_graph *body = s->body;
    struct itr_graph *g = b->g;
    int room = MAX_RESULTS - body->n_outputs - s->nc;
    if (s->nc == 0 || room <= 0) return true;   // no record scan, or no room in it
    int n_old = g->n_values;
    bool *live = calloc((size_t)n_old + 1, sizeof *live);
    if (!live) return alloc_fail(c, n);
    for (int k = 0; k < g->n_outputs; k++) live[g->outputs[k]] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const struct itr_node *x = &g->nodes[i];
        bool used = false;
        for (int k = 0; k < x->n_outputs; k++) used |= live[x->outputs[k]];
        for (int k = 0; used && k < x->n_inputs; k++) live[x->inputs[k]] = true;
    }
    int first = g->n_inputs;
    for (int ni = 0; ni < body->n_nodes && b->n_rec < room; ni++) {
        const struct itr_node *bn = &body->nodes[ni];
        int32_t v = bn->outputs[0];
        if (bn->op != ITR_OP_MATMUL || !itr_dtype_is_float(body->values[v].type.dtype) || !live[map[v]]) continue;
        char name[256];
        snprintf(name, sizeof name, "%s_rec", body->values[v].name);
        int32_t in = itr_graph_add_input(g, name, body->values[v].type, body->values[v].loc);
        if (in < 0) {
            free(live);
            return alloc_fail(c, n);
        }
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++)
                if (g->nodes[i].inputs[k] == map[v]) g->nodes[i].inputs[k] = in;
        for (int k = 0; k < g->n_outputs; k++)
            if (g->outputs[k] == map[v]) g->outputs[k] = in;
        b->rec_vals[b->n_rec++] = v;
    }
    free(live);
    // The new inputs are scanned operands: they go before the constants,
    // which are the last nk inputs.
    if (b->n_rec && s->nk) {
        int32_t moved[MAX_RESULTS];
        memcpy(moved, g->inputs + first, (size_t)b->n_rec * sizeof *moved);
        memmove(g->inputs + first - s->nk + b->n_rec, g->inputs + first - s->nk, (size_t)s->nk * sizeof *g->inputs);
        memcpy(g->inputs + first - s->nk, moved, (size_t)b->n_rec * sizeof *moved);
    }
    return b->n_rec == 0 || renumber_body(g, c->d);
}

// a^T b for matrices a and b.
static int32_t gb_matmul_tn(struct itr_grad_ctx *c, int32_t a, int32_t b) {
    int32_t in[2] = { gb_transpose(c, a, NULL, 0), b };
    return in[0] < 0 ? -1 : gb_node(c, ITR_OP_MATMUL, in, 2, NULL);
}

bool grad_scan(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx) {
    for (int i = 0; i < n->n_inputs; i++) dx[i] = -1;
    const struct itr_attr *ba = itr_node_attr(n, "body");
    struct scan_sig s = { ba ? ba->u.graph : NULL, (int)itr_node_attr_int(n, "n_carry"),
                          (int)itr_node_attr_int(n, "n_scan"), 0, 0, itr_node_attr_int(n, "axis"),
                          itr_node_attr_int(n, "reverse") != 0 };
    if (!s.body || s.body->n_inputs != n->n_inputs || s.body->n_outputs != n->n_outputs) {
        itr_diag_error(c->d, n->loc, "internal error: scan body does not match the node in its gradient");
        return false;
    }
    s.nk = n->n_inputs - s.nc - s.ns;
    s.no = n->n_outputs - s.nc;

    bool any_dy = false;
    for (int k = 0; k < n->n_outputs; k++) any_dy |= dy[k] >= 0;
    if (!any_dy) return true;

    int32_t *rec = calloc((size_t)s.nc + MAX_RESULTS + 1, sizeof *rec);
    int32_t *in = calloc((size_t)n->n_inputs * 2 + (size_t)n->n_outputs + MAX_RESULTS + 1, sizeof *in);
    struct bwd b;
    memset(&b, 0, sizeof b);
    bool ok = rec && in;
    if (!ok) alloc_fail(c, n);
    if (ok) ok = build_backward_body(c, n, &s, dy, &b);
    if (ok && b.n_fc + b.n_dk + b.n_dxs + b.n_hoist == 0) goto done;   // nothing differentiable reaches the results
    if (ok && b.n_fc + b.n_dk + b.n_dxs + 2 * b.n_hoist > MAX_RESULTS) {
        itr_diag_error(c->d, n->loc, "cannot differentiate this scan: its backward scan would have %d results "
                       "(at most %d)", b.n_fc + b.n_dk + b.n_dxs + 2 * b.n_hoist, MAX_RESULTS);
        ok = false;
    }
    if (ok && s.nc) ok = record_carries(c, n, &s, b.rec_vals, b.n_rec, rec);

    // Step 3: the backward scan, in the opposite direction.
    int n_in = 0;
    for (int i = 0; i < s.nc && ok; i++) {
        if (!b.fc[i]) continue;
        int32_t v = dy[i];
        if (v < 0) {
            struct itr_type t = *gb_type(c, n->inputs[i]);
            v = gb_zeros(c, &t);
        }
        ok = v >= 0;
        in[n_in++] = v;
    }
    for (int k = 0; k < s.nk && ok; k++) {
        if (!b.dk[k]) continue;
        struct itr_type t = *gb_type(c, n->inputs[s.nc + s.ns + k]);
        ok = (in[n_in++] = gb_zeros(c, &t)) >= 0;
    }
    if (!ok) goto done;
    int n_carry = n_in;
    for (int i = 0; i < s.nc; i++) in[n_in++] = rec[i];
    for (int j = 0; j < s.ns; j++) in[n_in++] = n->inputs[s.nc + j];
    for (int j = 0; j < s.no; j++)
        if (b.dy_in[j]) in[n_in++] = dy[s.nc + j];
    for (int j = 0; j < b.n_rec; j++) in[n_in++] = rec[s.nc + j];
    int n_scan = n_in - n_carry;
    for (int k = 0; k < s.nk; k++) in[n_in++] = n->inputs[s.nc + s.ns + k];

    int32_t outs[MAX_RESULTS];
    if (!(ok = gb_node_multi(c, ITR_OP_SCAN, in, n_in, scan_attrs(c, b.g, n_carry, n_scan, s.axis, !s.reverse), outs)))
        goto done;

    // Step 4: the adjoints of the operands.
    int r = 0;
    for (int i = 0; i < s.nc; i++)
        if (b.fc[i]) dx[i] = outs[r++];
    for (int k = 0; k < s.nk; k++)
        if (b.dk[k]) dx[s.nc + s.ns + k] = outs[r++];
    for (int j = 0; j < s.ns; j++)
        if (b.dxs[j]) dx[s.nc + j] = outs[r++];
    for (int k = 0; k < s.nk && ok; k++) {
        if (!b.hoist[k]) continue;
        int32_t lhs = gb_rows(c, outs[r++]), rhs = gb_rows(c, outs[r++]);
        int32_t prod = lhs >= 0 && rhs >= 0 ? gb_matmul_tn(c, lhs, rhs) : -1;
        if (prod >= 0 && b.hoist_t[k]) prod = gb_transpose(c, prod, NULL, 0);
        ok = prod >= 0;
        dx[s.nc + s.ns + k] = prod;
    }

done:
    bwd_free(&b);
    free(rec);
    free(in);
    return ok;
}
