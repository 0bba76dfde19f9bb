// Packed scans: the proof that a scan body's masked rows may be skipped
// (scan_rows.h).
#include "ir/scan_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

// What the analysis knows of one body value.
enum role { ROLE_WHOLE, ROLE_ROW, ROLE_BAD };
// On a skipped row (a row value), or everywhere (a whole value).
enum holds { HOLDS_ANY, HOLDS_FINITE, HOLDS_CONST, HOLDS_COPY };
struct fact {
    enum role role;
    enum holds holds;
    double c;   // HOLDS_CONST
    int src;    // HOLDS_COPY: the body input whose row it is
};

static const struct fact fact_bad = { ROLE_BAD, HOLDS_ANY, 0, -1 };

static bool is_finite(struct fact f) { return f.holds != HOLDS_ANY; }
static bool is_const(struct fact f, double c) { return f.holds == HOLDS_CONST && f.c == c; }

static struct fact holds_const(enum role r, double c) {
    return (struct fact){ r, isfinite(c) ? HOLDS_CONST : HOLDS_ANY, c, -1 };
}

static struct fact holds_finite(enum role r, bool fin) { return (struct fact){ r, fin ? HOLDS_FINITE : HOLDS_ANY, 0, -1 }; }

static bool mentions(const struct itr_program *p, itr_dim d, int32_t sym) {
    const struct itr_dim_node *n = &p->dimnodes[d];
    switch (n->kind) {
    case ITR_DIM_CONST: return false;
    case ITR_DIM_SYM: return n->value == sym;
    default: return mentions(p, n->a, sym) || mentions(p, n->b, sym);
    }
}

// ROLE_ROW: axis 0 is the batch and no other axis mentions it; ROLE_WHOLE:
// no axis mentions it; ROLE_BAD otherwise.
static enum role role_of_type(const struct itr_program *p, const struct itr_type *t, itr_dim batch, int32_t sym) {
    bool row = t->rank >= 1 && t->dims[0] == batch;
    for (int i = row ? 1 : 0; i < t->rank; i++)
        if (mentions(p, t->dims[i], sym)) return ROLE_BAD;
    return row ? ROLE_ROW : ROLE_WHOLE;
}

static bool same_type(const struct itr_type *a, const struct itr_type *b) {
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

static bool normalised_axes_include_0(const struct itr_attr *a, int rank) {
    if (!a || a->kind != ITR_ATTR_INTS) return true;   // every axis
    for (int i = 0; i < a->u.ints.n; i++) {
        int ax;
        if (!itr_axis_normalize(a->u.ints.v[i], rank, &ax) || ax == 0) return true;
    }
    return false;
}

// The axis of operand k that result axis 0 reads, as itr_rows_operand_axis,
// with the movement ops along other axes that keep the rows.
static int row_axis(const struct itr_graph *g, const struct itr_node *n, int k) {
    const struct itr_type *in = &g->values[n->inputs[k]].type;
    switch (n->op) {
    case ITR_OP_SLICE:
        return normalised_axes_include_0(itr_node_attr(n, "axes"), in->rank) ? -2 : 0;
    case ITR_OP_PAD: {
        const struct itr_attr *a = itr_node_attr(n, "pads");
        return a && a->kind == ITR_ATTR_INTS && a->u.ints.n >= 2 && a->u.ints.v[0] == 0 && a->u.ints.v[1] == 0 ? 0 : -2;
    }
    case ITR_OP_CONCAT: {
        int ax;
        return itr_axis_normalize(itr_node_attr_int(n, "axis"), in->rank, &ax) && ax != 0 ? 0 : -2;
    }
    case ITR_OP_EXPAND: {
        const struct itr_type *out = &g->values[n->outputs[0]].type;
        return in->rank == out->rank && in->dims[0] == out->dims[0] ? 0 : -2;
    }
    default:
        return itr_rows_operand_axis(g, n, 0, k);
    }
}

// What an op computes from its operands' facts, on one skipped row (or
// everywhere, for whole values): constants fold where the op is linear in
// a zero or the identity for a one; otherwise finite ops keep finiteness.
static struct fact transfer(const struct itr_graph *g, const struct itr_node *n, const struct fact *a, enum role r) {
    bool fin = true;
    for (int k = 0; k < n->n_inputs; k++) fin = fin && is_finite(a[k]);
    const struct itr_type *out = &g->values[n->outputs[0]].type;
    // x itself, where the result has x's type (no broadcast)
    #define PASS(k) (same_type(out, &g->values[n->inputs[k]].type) ? (struct fact){ r, a[k].holds, a[k].c, a[k].src } \
                                                                     : holds_finite(r, is_finite(a[k])))
    switch (n->op) {
    case ITR_OP_MUL:
        if (fin && (is_const(a[0], 0) || is_const(a[1], 0))) return holds_const(r, 0);
        if (a[0].holds == HOLDS_CONST && a[1].holds == HOLDS_CONST) return holds_const(r, a[0].c * a[1].c);
        if (is_const(a[0], 1)) return PASS(1);
        if (is_const(a[1], 1)) return PASS(0);
        return holds_finite(r, fin);
    case ITR_OP_ADD:
        if (a[0].holds == HOLDS_CONST && a[1].holds == HOLDS_CONST) return holds_const(r, a[0].c + a[1].c);
        if (is_const(a[0], 0)) return PASS(1);
        if (is_const(a[1], 0)) return PASS(0);
        return holds_finite(r, fin);
    case ITR_OP_SUB:
        if (a[0].holds == HOLDS_CONST && a[1].holds == HOLDS_CONST) return holds_const(r, a[0].c - a[1].c);
        if (is_const(a[1], 0)) return PASS(0);
        return holds_finite(r, fin);
    case ITR_OP_NEG:
        return a[0].holds == HOLDS_CONST ? holds_const(r, -a[0].c) : holds_finite(r, fin);
    case ITR_OP_IDENTITY: case ITR_OP_STOP_GRADIENT:
        return PASS(0);
    // zero stays zero
    case ITR_OP_ABS: case ITR_OP_RELU: case ITR_OP_LEAKY_RELU: case ITR_OP_TANH: case ITR_OP_GELU: case ITR_OP_ERF:
    case ITR_OP_SIN: case ITR_OP_SIGN:
    case ITR_OP_SLICE: case ITR_OP_RESHAPE: case ITR_OP_TRANSPOSE: case ITR_OP_SQUEEZE: case ITR_OP_UNSQUEEZE:
    case ITR_OP_EXPAND: case ITR_OP_SUM: case ITR_OP_MEAN: case ITR_OP_MAX: case ITR_OP_MIN:
        return is_const(a[0], 0) ? holds_const(r, 0) : holds_finite(r, fin);
    case ITR_OP_PAD: {
        double v = itr_node_attr_float(n, "value");
        return is_const(a[0], v) ? holds_const(r, v) : holds_finite(r, fin && isfinite(v));
    }
    case ITR_OP_CONCAT: {
        bool all = a[0].holds == HOLDS_CONST;
        for (int k = 1; k < n->n_inputs && all; k++) all = is_const(a[k], a[0].c);
        return all ? holds_const(r, a[0].c) : holds_finite(r, fin);
    }
    case ITR_OP_MATMUL:
        if (fin && (is_const(a[0], 0) || is_const(a[1], 0))) return holds_const(r, 0);
        return holds_finite(r, fin);
    case ITR_OP_MAXIMUM: case ITR_OP_MINIMUM:
        if (a[0].holds == HOLDS_CONST && a[1].holds == HOLDS_CONST && a[0].c == a[1].c) return holds_const(r, a[0].c);
        return holds_finite(r, fin);
    case ITR_OP_WHERE:
        return holds_finite(r, is_finite(a[1]) && is_finite(a[2]));
    case ITR_OP_SIGMOID: case ITR_OP_COS: case ITR_OP_CAST: case ITR_OP_ARGMAX: case ITR_OP_ARGMIN:
    case ITR_OP_EQ: case ITR_OP_NE: case ITR_OP_LT: case ITR_OP_LE: case ITR_OP_GT: case ITR_OP_GE:
    case ITR_OP_AND: case ITR_OP_OR: case ITR_OP_NOT:
        return holds_finite(r, fin);
    case ITR_OP_FULL:
        return holds_const(r, itr_node_attr_float(n, "value"));
    default:
        // exp, log, division, square roots, powers and the rest: any value
        return holds_finite(r, false);
    }
    #undef PASS
}

// The fact of node n's (single) result, given its operands' facts.
static struct fact node_fact(const struct itr_graph *g, const struct itr_node *n, const struct fact *f, itr_dim batch,
                             int32_t sym) {
    const struct itr_program *p = g->prog;
    bool any_row = false;
    struct fact a[8];
    if (n->n_inputs > 8) return fact_bad;
    for (int k = 0; k < n->n_inputs; k++) {
        a[k] = f[n->inputs[k]];
        if (a[k].role == ROLE_BAD) return fact_bad;
        any_row = any_row || a[k].role == ROLE_ROW;
    }
    if (n->n_outputs != 1) {
        // several results (a nested scan, topk): only away from the batch
        for (int k = 0; k < n->n_outputs; k++)
            if (any_row || role_of_type(p, &g->values[n->outputs[k]].type, batch, sym) != ROLE_WHOLE) return fact_bad;
        return holds_finite(ROLE_WHOLE, false);
    }
    enum role out = role_of_type(p, &g->values[n->outputs[0]].type, batch, sym);
    if (out == ROLE_BAD) return fact_bad;
    if (!any_row) {
        // A row value made from no rows: the same on every row (a constant,
        // a broadcast), else it would depend on the row's index (iota, random).
        if (out == ROLE_ROW && n->op != ITR_OP_FULL && n->op != ITR_OP_EXPAND) return fact_bad;
        return transfer(g, n, a, out);
    }
    for (int k = 0; k < n->n_inputs; k++) {
        int ax = row_axis(g, n, k);
        if (a[k].role == ROLE_ROW ? ax == 0 : ax == -1) continue;
        // A sum over the batch of rows that are zero where skipped is the
        // sum over the kept rows: a whole value.
        if (n->op == ITR_OP_SUM && out == ROLE_WHOLE && is_const(a[0], 0) &&
            normalised_axes_include_0(itr_node_attr(n, "axes"), g->values[n->inputs[0]].type.rank))
            return holds_finite(ROLE_WHOLE, true);
        return fact_bad;
    }
    if (out != ROLE_ROW) return fact_bad;
    return transfer(g, n, a, ROLE_ROW);
}

void itr_scan_rows_free(struct itr_scan_rows *r) {
    if (!r) return;
    free(r->row_input);
    free(r->fill);
    free(r->src);
    free(r->value);
    memset(r, 0, sizeof *r);
}

// The proof with body input `mask` as the mask.
static bool analyse_with_mask(const struct itr_graph *b, int nc, int mask, struct itr_scan_rows *out) {
    const struct itr_program *p = b->prog;
    const struct itr_type *mt = &b->values[b->inputs[mask]].type;
    if (!itr_dtype_is_float(mt->dtype) || mt->rank < 1 || p->dimnodes[mt->dims[0]].kind != ITR_DIM_SYM) return false;
    for (int i = 1; i < mt->rank; i++) {
        int64_t v;
        if (!itr_dim_is_const(p, mt->dims[i], &v) || v != 1) return false;
    }
    itr_dim batch = mt->dims[0];
    int32_t sym = (int32_t)p->dimnodes[batch].value;
    struct fact *f = malloc(((size_t)b->n_values + 1) * sizeof *f);
    if (!f) return false;
    for (int v = 0; v < b->n_values; v++) {
        enum role r = role_of_type(p, &b->values[v].type, batch, sym);
        f[v] = b->values[v].kind == ITR_VALUE_NODE ? fact_bad : holds_finite(r, true);
        if (r == ROLE_BAD) f[v] = fact_bad;
    }
    for (int i = 0; i < b->n_inputs; i++) {
        struct fact *fi = &f[b->inputs[i]];
        if (fi->role == ROLE_ROW) *fi = (struct fact){ ROLE_ROW, HOLDS_COPY, 0, i };
    }
    f[b->inputs[mask]] = holds_const(ROLE_ROW, 0);
    bool ok = true;
    for (int i = 0; i < b->n_nodes && ok; i++) {
        const struct itr_node *n = &b->nodes[i];
        struct fact r = node_fact(b, n, f, batch, sym);
        for (int k = 0; k < n->n_outputs; k++) f[n->outputs[k]] = r;
        // A value nothing reads may stay unproved; one that is read may not.
        if (r.role == ROLE_BAD) {
            bool read = false;
            for (int k = 0; k < n->n_outputs && !read; k++)
                for (int j = i + 1; j < b->n_nodes && !read; j++)
                    for (int q = 0; q < b->nodes[j].n_inputs && !read; q++) read = b->nodes[j].inputs[q] == n->outputs[k];
            for (int k = 0; k < n->n_outputs && !read; k++)
                for (int o = 0; o < b->n_outputs && !read; o++) read = b->outputs[o] == n->outputs[k];
            if (read) ok = false;
        }
    }
    out->mask = mask;
    out->batch_symbol = sym;
    out->n_inputs = b->n_inputs;
    out->n_outputs = b->n_outputs;
    out->row_input = calloc((size_t)b->n_inputs + 1, sizeof *out->row_input);
    out->fill = calloc((size_t)b->n_outputs + 1, sizeof *out->fill);
    out->src = calloc((size_t)b->n_outputs + 1, sizeof *out->src);
    out->value = calloc((size_t)b->n_outputs + 1, sizeof *out->value);
    ok = ok && out->row_input && out->fill && out->src && out->value;
    bool any_row = false;
    for (int i = 0; ok && i < b->n_inputs; i++) {
        struct fact fi = f[b->inputs[i]];
        if (fi.role == ROLE_BAD) ok = false;
        out->row_input[i] = fi.role == ROLE_ROW;
    }
    for (int o = 0; ok && o < b->n_outputs; o++) {
        struct fact fo = f[b->outputs[o]];
        out->src[o] = -1;
        if (fo.role == ROLE_BAD) { ok = false; break; }
        any_row = any_row || fo.role == ROLE_ROW;
        if (o < nc && (fo.role == ROLE_ROW) != out->row_input[o]) { ok = false; break; }
        if (fo.role == ROLE_WHOLE) out->fill[o] = ITR_SKIP_WHOLE;
        else if (fo.holds == HOLDS_CONST) out->fill[o] = ITR_SKIP_CONST, out->value[o] = fo.c;
        else if (fo.holds == HOLDS_COPY) out->fill[o] = ITR_SKIP_COPY, out->src[o] = fo.src;
        else if (o < nc) ok = false;   // a carry must keep its row, or take a known one
        else out->fill[o] = ITR_SKIP_ANY;
        // A carry copies its own row: the executor keeps it in place.
        if (ok && o < nc && out->fill[o] == ITR_SKIP_COPY && out->src[o] != o) ok = false;
    }
    free(f);
    if (!ok || !any_row) {
        itr_scan_rows_free(out);
        return false;
    }
    return true;
}

bool itr_scan_rows_analyse(const struct itr_node *scan, struct itr_scan_rows *out) {
    memset(out, 0, sizeof *out);
    if (scan->op != ITR_OP_SCAN) return false;
    const struct itr_attr *ba = itr_node_attr(scan, "body");
    if (!ba || ba->kind != ITR_ATTR_GRAPH || !ba->u.graph) return false;
    const struct itr_graph *b = ba->u.graph;
    int nc = (int)itr_node_attr_int(scan, "n_carry"), ns = (int)itr_node_attr_int(scan, "n_scan");
    if (nc < 0 || ns < 1 || nc + ns > b->n_inputs || b->n_outputs < nc) return false;
    for (int k = nc; k < nc + ns; k++)
        if (analyse_with_mask(b, nc, k, out)) return true;
    return false;
}
