// Fusion, scheduling and lowering to the kernel IR (compiler/lower.h).
#include "compiler/lower.h"
#include "ir/env.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

static void *xrealloc(void *q, size_t n) {
    void *r = realloc(q, n ? n : 1);
    if (!r) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return r;
}

// How a node is lowered.
// HOW_GEMM_T: a transpose of the last two axes of a float matmul's result
// that is its only reader: one GEMM writes the transposed product directly
// ((A B)^T = B^T A^T); the matmul itself is HOW_NONE and gets no step.
// HOW_ROW: a reduction over the trailing axes of its operand whose result is
// read back over the rows it reduced (softmax, l2norm, layernorm,
// log-sum-exp, cosine): the kernel of the value that reads it computes it
// per row, in a pass over the row before its own loops, and it is never
// materialised (a "row kernel"; see lower_row_kernel).
enum how { HOW_NODE, HOW_INLINE, HOW_REDUCE, HOW_MATMUL, HOW_GEMM_T, HOW_NONE, HOW_ROW };

struct lower {
    const struct itr_graph *g;
    const struct itr_program *p;
    struct kir_schedule *s;
    bool f64;
    int *uses;            // per value: readers (node operands and graph outputs)
    enum how *how;        // per node
    // the kernel being built
    struct kir_kernel *k;
    int32_t *buf_of;      // per value: its buffer parameter in k, or -1
    int32_t *touched; int n_touched;
    int guard;            // > 0 while building operands of pad/concat: loads clamp their index
    char chain[96];       // op names of the fused chain, for the kernel's name
    // row kernels
    int32_t *row_let;     // per node: the let holding a HOW_ROW reduction in the kernel being built, or -1
    int32_t *row_owner;   // per node: the kernel that computed a HOW_ROW reduction, or -1
    int row_rank;         // the rank of the row kernel's reductions' operands, 0 outside one
    bool row_kept[ITR_MAX_RANK];     // their kept (row) axes, whose loops run outermost
    int32_t row_var[ITR_MAX_RANK];   // the loop variables of those axes
    int32_t row_fail;     // a HOW_ROW node the kernel being built could not compute per row, or -1
    // column rows (row_form): row_let then holds each reduction's
    // accumulator, read at the lane of the current column loop
    bool row_column;
    bool column_rows_on;  // !ITRC_NO_COLUMN_ROWS, read once per lowering
    int64_t *sym_size;    // per symbol: its declared size (`dim R = 36`), where sym_declared says so
    bool *sym_declared;
    int32_t col_base;     // the first column of the chunk (an expression)
    int32_t col_lane;     // the lane variable of the innermost loop being built
    int32_t *scratch_of;  // per node: for a division w / sum(w) over a column row whose kernel
                          // stores w into the division's output in the sum's pass, w; else -1
    int32_t *rows;        // per node: kernel_rows' result (one buffer, never in use twice)
    // sibling kernels (plan_siblings)
    int32_t *sib_of;      // per node: its sibling group, or -1
    struct sibling_group *sibs; int n_sibs;
    int32_t *sib_let;     // per value: the let holding it in the sibling kernel being built, or -1
    int32_t sib_var[ITR_MAX_RANK];   // that kernel's loop variables
    bool sib_fail;        // a sibling was read at another index than the kernel's own
};

// Values of the same shape computed by one loop nest: an optimizer's
// update of one parameter (the clipped gradient, both moments, the new
// value) is one kernel instead of four, and a value only its siblings read
// is never stored.
#define SIBLINGS_MAX 8
struct sibling_group {
    int32_t nodes[SIBLINGS_MAX];   // in node order; the kernel runs where the last one stood
    int n;
};

// ---------------------------------------------------------------- classification

// Whether environment variable `name` is set to something other than "" or "0".
static bool attr_ints(const struct itr_node *n, const char *name, const int64_t **v, int *cnt) {
    const struct itr_attr *a = itr_node_attr(n, name);
    if (!a || a->kind != ITR_ATTR_INTS) return false;
    *v = a->u.ints.v;
    *cnt = a->u.ints.n;
    return true;
}

static bool dim_const(const struct itr_program *p, itr_dim d, int64_t *v) { return itr_dim_is_const(p, d, v); }

static enum how classify(const struct lower *L, const struct itr_node *n) {
    const struct itr_value *out = &L->g->values[n->outputs[0]];
    switch (itr_op_info(n->op)->cls) {
    case ITR_CLASS_ELEMENTWISE:
        // Integer division reports division by zero with the reference's message.
        if (n->op == ITR_OP_DIV && !itr_dtype_is_float(out->type.dtype)) return HOW_NODE;
        return HOW_INLINE;
    case ITR_CLASS_MOVEMENT:
        if (n->op == ITR_OP_SLICE) {
            const int64_t *axes, *starts, *steps = NULL;
            int na, ns, nst = 0;
            if (!attr_ints(n, "axes", &axes, &na) || !attr_ints(n, "starts", &starts, &ns)) return HOW_NODE;
            attr_ints(n, "steps", &steps, &nst);
            const struct itr_type *t = &L->g->values[n->inputs[0]].type;
            for (int i = 0; i < na; i++) {
                int ax;
                int64_t dv;
                if (!itr_axis_normalize(axes[i], t->rank, &ax)) return HOW_NODE;
                int64_t step = i < nst ? steps[i] : 1;
                // With a symbolic size only a non-negative start and positive
                // step have a first index that needs no clamping.
                if (!dim_const(L->p, t->dims[ax], &dv) && (starts[i] < 0 || step <= 0)) return HOW_NODE;
            }
        }
        if (n->op == ITR_OP_CONCAT) {
            // Operand sizes along the axis may be symbolic (SGRAF's nodes:
            // one global node, then L words): a size that is 0 at run time is
            // never selected, and guarded loads stay in bounds.
            int axis = (int)itr_node_attr_int(n, "axis");
            const struct itr_type *t = &out->type;
            if (!itr_axis_normalize(axis, t->rank, &axis) || n->n_inputs > 64) return HOW_NODE;
            for (int i = 0; i < n->n_inputs; i++) {
                int64_t dv;
                if (dim_const(L->p, L->g->values[n->inputs[i]].type.dims[axis], &dv) && dv <= 0) return HOW_NODE;
            }
        }
        return HOW_INLINE;
    case ITR_CLASS_SOURCE:
        return n->op == ITR_OP_FULL || n->op == ITR_OP_IOTA ? HOW_INLINE : HOW_NODE;
    case ITR_CLASS_REDUCTION:
        return n->op == ITR_OP_ARGMAX || n->op == ITR_OP_ARGMIN ? HOW_NODE : HOW_REDUCE;
    case ITR_CLASS_CONTRACTION: return HOW_MATMUL;
    default: return HOW_NODE;
    }
}

bool itr_lower_op_supported(enum itr_op op) {
    switch (itr_op_info(op)->cls) {
    case ITR_CLASS_ELEMENTWISE:
    case ITR_CLASS_MOVEMENT:
    case ITR_CLASS_CONTRACTION: return true;
    case ITR_CLASS_SOURCE: return op == ITR_OP_FULL || op == ITR_OP_IOTA;
    case ITR_CLASS_REDUCTION: return op != ITR_OP_ARGMAX && op != ITR_OP_ARGMIN;
    default: return false;
    }
}

// A value whose every element is one load (or a constant): recomputing it in
// each consumer costs nothing, so it is never materialised for sharing.
static bool cheap(const struct lower *L, int32_t v) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return true;
    const struct itr_node *n = &L->g->nodes[val->node];
    if (n->op == ITR_OP_FULL || n->op == ITR_OP_IOTA) return true;
    if (itr_op_info(n->op)->cls == ITR_CLASS_MOVEMENT && n->op != ITR_OP_PAD && n->op != ITR_OP_CONCAT)
        return cheap(L, n->inputs[0]);
    return false;
}

// The operand of a transpose that swaps exactly the last two axes, or -1.
static int32_t swap_last_two_source(const struct lower *L, int32_t v) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE) return -1;
    const struct itr_node *n = &L->g->nodes[val->node];
    if (n->op != ITR_OP_TRANSPOSE) return -1;
    int r = val->type.rank;
    if (r < 2) return -1;
    const int64_t *perm;
    int np;
    if (!attr_ints(n, "perm", &perm, &np)) return r == 2 ? n->inputs[0] : -1;   // reversed axes
    if (np != r) return -1;
    for (int i = 0; i < r - 2; i++)
        if (perm[i] != i) return -1;
    return perm[r - 2] == r - 1 && perm[r - 1] == r - 2 ? n->inputs[0] : -1;
}

// The materialised value whose memory v is, read through a chain of
// reshapes, unsqueezes and squeezes (which change the shape, not the
// row-major order), or -1.
static int32_t layout_source(const struct lower *L, int32_t v) {
    for (;;) {
        const struct itr_value *val = &L->g->values[v];
        if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return v;
        const struct itr_node *n = &L->g->nodes[val->node];
        if (n->op != ITR_OP_RESHAPE && n->op != ITR_OP_UNSQUEEZE && n->op != ITR_OP_SQUEEZE) return -1;
        v = n->inputs[0];
    }
}

// A float matmul goes to the contraction library when both operands can be
// read in place: as materialised values, through a swap of their last two
// axes, or through a change of shape (view: the value whose shape the
// memory of src is read with, -1 when it is src's own).
static bool gemm_operand(const struct lower *L, int32_t v, int32_t *src, bool *trans, int32_t *view) {
    int32_t t = swap_last_two_source(L, v), s;
    if (t >= 0 && (s = layout_source(L, t)) >= 0) {
        *src = s;
        *view = s == t ? -1 : t;
        *trans = true;
        return true;
    }
    if ((s = layout_source(L, v)) >= 0) {
        *src = s;
        *view = s == v ? -1 : v;
        *trans = false;
        return true;
    }
    return false;
}

// ---------------------------------------------------------------- expressions

static enum kir_type ktype(const struct lower *L, enum itr_dtype dt) {
    if (L->f64 && dt == ITR_F32) return KIR_F64;
    return kir_type_of_dtype(dt);
}

static enum itr_dtype bufdtype(const struct lower *L, enum itr_dtype dt) {
    return L->f64 && dt == ITR_F32 ? ITR_F64 : dt;
}

static int32_t dexpr(struct lower *L, itr_dim d) {
    int64_t v;
    if (dim_const(L->p, d, &v)) return kir_iconst(L->k, v);
    char name[128];
    itr_dim_format(L->p, d, name, sizeof name);
    return kir_dim_ref(L->k, kir_add_dim(L->k, name, d));
}

static int32_t linear(struct lower *L, const struct itr_type *t, const int32_t *idx) {
    int32_t flat = kir_iconst(L->k, 0);
    for (int i = 0; i < t->rank; i++) flat = kir_iadd(L->k, kir_imul(L->k, flat, dexpr(L, t->dims[i])), idx[i]);
    return flat;
}

static int32_t numel(struct lower *L, const struct itr_type *t) {
    int32_t n = kir_iconst(L->k, 1);
    for (int i = 0; i < t->rank; i++) n = kir_imul(L->k, n, dexpr(L, t->dims[i]));
    return n;
}

static int32_t imin(struct lower *L, int32_t a, int32_t b) { return kir_binary(L->k, KIR_MIN, a, b); }
static int32_t imax(struct lower *L, int32_t a, int32_t b) { return kir_binary(L->k, KIR_MAX, a, b); }

static int32_t buffer_of(struct lower *L, int32_t v) {
    if (L->buf_of[v] < 0) {
        const struct itr_value *val = &L->g->values[v];
        L->buf_of[v] = kir_add_buffer(L->k, val->name, bufdtype(L, val->type.dtype), false);
        L->touched[L->n_touched++] = v;
    }
    return L->buf_of[v];
}

static int32_t load_flat(struct lower *L, int32_t v, int32_t flat) {
    if (L->guard) {
        // Under pad/concat both arms of a select are evaluated: keep the
        // discarded one in bounds (buffers hold at least one element).
        const struct itr_type *t = &L->g->values[v].type;
        flat = imax(L, imin(L, flat, kir_binary(L->k, KIR_SUB, numel(L, t), kir_iconst(L->k, 1))), kir_iconst(L->k, 0));
    }
    return kir_load(L->k, buffer_of(L, v), flat);
}

static void note_op(struct lower *L, enum itr_op op) {
    const char *nm = itr_op_name(op);
    size_t have = strlen(L->chain);
    if (strstr(L->chain, nm)) return;
    if (have + strlen(nm) + 2 < sizeof L->chain) {
        if (have) strcat(L->chain, "_");
        strcat(L->chain, nm);
    }
}

static int32_t value_at(struct lower *L, int32_t v, const int32_t *idx);
static int32_t node_at(struct lower *L, const struct itr_node *n, const int32_t *idx);

static int32_t value_at_flat(struct lower *L, int32_t v, int32_t flat) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return load_flat(L, v, flat);
    // delinearise over v's dims
    const struct itr_type *t = &val->type;
    int32_t idx[ITR_MAX_RANK];
    int32_t rest = flat;
    for (int i = t->rank - 1; i >= 0; i--) {
        int32_t d = dexpr(L, t->dims[i]);
        if (i == 0) idx[i] = rest;
        else {
            idx[i] = kir_binary(L->k, KIR_MOD, rest, d);
            rest = kir_binary(L->k, KIR_DIV, rest, d);
        }
    }
    return value_at(L, v, idx);
}

// Maps result indices to the indices of an operand broadcast to the result.
static void broadcast_idx(struct lower *L, const struct itr_type *opnd, const struct itr_type *res, const int32_t *idx,
                          int32_t *out) {
    int off = res->rank - opnd->rank;
    for (int j = 0; j < opnd->rank; j++) {
        itr_dim od = opnd->dims[j], rd = res->dims[j + off];
        int64_t c;
        if (od == rd) out[j] = idx[j + off];
        else if (dim_const(L->p, od, &c) && c == 1) out[j] = kir_iconst(L->k, 0);
        else   // equal only at run time, or 1 at run time: decide there
            out[j] = kir_select(L->k, kir_binary(L->k, KIR_EQ, dexpr(L, od), kir_iconst(L->k, 1)), kir_iconst(L->k, 0),
                                idx[j + off]);
    }
}

static int32_t operand_at(struct lower *L, const struct itr_node *n, int k, const int32_t *idx) {
    const struct itr_type *res = &L->g->values[n->outputs[0]].type;
    int32_t v = n->inputs[k];
    int32_t oi[ITR_MAX_RANK];
    broadcast_idx(L, &L->g->values[v].type, res, idx, oi);
    return value_at(L, v, oi);
}

static int32_t fconst(struct lower *L, enum kir_type t, double x) { return kir_const_float(L->k, t, x); }

static int32_t elementwise(struct lower *L, const struct itr_node *n, const int32_t *idx) {
    enum kir_type t = ktype(L, L->g->values[n->outputs[0]].type.dtype);
    bool fl = t == KIR_F32 || t == KIR_F64;
    struct kir_kernel *k = L->k;
    if (n->op == ITR_OP_WHERE) {
        int32_t c = operand_at(L, n, 0, idx);
        return kir_select(k, c, operand_at(L, n, 1, idx), operand_at(L, n, 2, idx));
    }
    int32_t a = operand_at(L, n, 0, idx);
    if (n->n_inputs == 1) {
        switch (n->op) {
        case ITR_OP_NEG: return kir_unary(k, KIR_NEG, a);
        case ITR_OP_ABS: return kir_unary(k, KIR_ABS, a);
        case ITR_OP_SIGN: return kir_unary(k, KIR_SIGN, a);
        case ITR_OP_EXP: return kir_unary(k, KIR_EXP, a);
        case ITR_OP_LOG: return kir_unary(k, KIR_LOG, a);
        case ITR_OP_SQRT: return kir_unary(k, KIR_SQRT, a);
        case ITR_OP_RSQRT: return kir_unary(k, KIR_RSQRT, a);
        case ITR_OP_RECIPROCAL: return kir_unary(k, KIR_RECIP, a);
        case ITR_OP_RELU: return kir_select(k, kir_binary(k, KIR_GT, a, fconst(L, t, 0)), a, fconst(L, t, 0));
        case ITR_OP_LEAKY_RELU:
            return kir_select(k, kir_binary(k, KIR_GT, a, fconst(L, t, 0)), a,
                              kir_binary(k, KIR_MUL, fconst(L, t, itr_node_attr_float(n, "alpha")), a));
        case ITR_OP_SIGMOID: return kir_unary(k, KIR_SIGMOID, a);
        case ITR_OP_TANH: return kir_unary(k, KIR_TANH, a);
        case ITR_OP_GELU: {
            int32_t e = kir_unary(k, KIR_ERF, kir_binary(k, KIR_MUL, a, fconst(L, t, 0.70710678118654752440)));
            return kir_binary(k, KIR_MUL, kir_binary(k, KIR_MUL, fconst(L, t, 0.5), a),
                              kir_binary(k, KIR_ADD, fconst(L, t, 1.0), e));
        }
        case ITR_OP_ERF: return kir_unary(k, KIR_ERF, a);
        case ITR_OP_SIN: return kir_unary(k, KIR_SIN, a);
        case ITR_OP_COS: return kir_unary(k, KIR_COS, a);
        case ITR_OP_ACOS: return kir_unary(k, KIR_ACOS, a);
        case ITR_OP_NOT: return kir_unary(k, KIR_NOT, a);
        case ITR_OP_CAST: return kir_cast(k, t, a);
        default: return a;   // identity, stop_gradient
        }
    }
    int32_t b = operand_at(L, n, 1, idx);
    switch (n->op) {
    case ITR_OP_ADD: return kir_binary(k, KIR_ADD, a, b);
    case ITR_OP_SUB: return kir_binary(k, KIR_SUB, a, b);
    case ITR_OP_MUL: return kir_binary(k, KIR_MUL, a, b);
    case ITR_OP_DIV: return kir_binary(k, KIR_DIV, a, b);
    case ITR_OP_POW: return kir_binary(k, KIR_POW, a, b);
    case ITR_OP_MAXIMUM: return kir_binary(k, KIR_MAX, a, b);
    case ITR_OP_MINIMUM: return kir_binary(k, KIR_MIN, a, b);
    case ITR_OP_EQ: return kir_binary(k, KIR_EQ, a, b);
    case ITR_OP_NE: return kir_binary(k, KIR_NE, a, b);
    case ITR_OP_LT: return kir_binary(k, KIR_LT, a, b);
    case ITR_OP_LE: return kir_binary(k, KIR_LE, a, b);
    case ITR_OP_GT: return kir_binary(k, KIR_GT, a, b);
    case ITR_OP_GE: return kir_binary(k, KIR_GE, a, b);
    case ITR_OP_AND: return kir_binary(k, KIR_AND, a, b);
    case ITR_OP_OR: return kir_binary(k, KIR_OR, a, b);
    default: (void)fl; return a;
    }
}

static int32_t movement(struct lower *L, const struct itr_node *n, const int32_t *idx) {
    const struct itr_type *res = &L->g->values[n->outputs[0]].type;
    int32_t src = n->inputs[0];
    const struct itr_type *in = &L->g->values[src].type;
    int32_t ii[ITR_MAX_RANK];
    struct kir_kernel *k = L->k;
    switch (n->op) {
    case ITR_OP_RESHAPE: return value_at_flat(L, src, linear(L, res, idx));
    case ITR_OP_TRANSPOSE: {
        const int64_t *perm;
        int np;
        bool has = attr_ints(n, "perm", &perm, &np);
        for (int i = 0; i < res->rank; i++) ii[has ? perm[i] : res->rank - 1 - i] = idx[i];
        return value_at(L, src, ii);
    }
    case ITR_OP_EXPAND:
        broadcast_idx(L, in, res, idx, ii);
        return value_at(L, src, ii);
    case ITR_OP_SQUEEZE: {
        const int64_t *axes;
        int na;
        bool drop[ITR_MAX_RANK] = { false };
        itr_dim one = itr_dim_const((struct itr_program *)L->p, 1);
        if (!attr_ints(n, "axes", &axes, &na) || na == 0)   // no axes: every size-1 axis (the shape rule)
            for (int j = 0; j < in->rank; j++) drop[j] = in->dims[j] == one;
        else
            for (int i = 0; i < na; i++) {
                int ax;
                if (itr_axis_normalize(axes[i], in->rank, &ax)) drop[ax] = true;
            }
        for (int j = 0, o = 0; j < in->rank; j++) ii[j] = drop[j] ? kir_iconst(k, 0) : idx[o++];
        return value_at(L, src, ii);
    }
    case ITR_OP_UNSQUEEZE: {
        const int64_t *axes;
        int na;
        bool ins[ITR_MAX_RANK] = { false };
        if (attr_ints(n, "axes", &axes, &na))
            for (int i = 0; i < na; i++) {
                int ax;
                if (itr_axis_normalize(axes[i], res->rank, &ax)) ins[ax] = true;
            }
        for (int j = 0, o = 0; j < res->rank; j++)
            if (!ins[j]) ii[o++] = idx[j];
        return value_at(L, src, ii);
    }
    case ITR_OP_SLICE: {
        const int64_t *axes = NULL, *starts = NULL, *ends = NULL, *steps = NULL;
        int na = 0, ns = 0, ne = 0, nst = 0;
        attr_ints(n, "axes", &axes, &na);
        attr_ints(n, "starts", &starts, &ns);
        attr_ints(n, "ends", &ends, &ne);
        attr_ints(n, "steps", &steps, &nst);
        for (int j = 0; j < in->rank; j++) ii[j] = idx[j];
        for (int i = 0; i < na && i < ns && i < ne; i++) {
            int ax;
            if (!itr_axis_normalize(axes[i], in->rank, &ax)) continue;
            int64_t step = i < nst ? steps[i] : 1, first = starts[i], dv;
            if (dim_const(L->p, in->dims[ax], &dv)) itr_slice_range(dv, starts[i], ends[i], step, &first);
            ii[ax] = kir_iadd(k, kir_iconst(k, first), kir_imul(k, idx[ax], kir_iconst(k, step)));
        }
        return value_at(L, src, ii);
    }
    case ITR_OP_PAD: {
        const int64_t *pads = NULL;
        int np = 0;
        attr_ints(n, "pads", &pads, &np);
        enum kir_type t = ktype(L, res->dtype);
        int32_t valid = -1;
        for (int j = 0; j < in->rank && 2 * j < np; j++) {
            int32_t x = kir_binary(k, KIR_SUB, idx[j], kir_iconst(k, pads[2 * j]));
            int32_t d = dexpr(L, in->dims[j]);
            int32_t ok = kir_binary(k, KIR_AND, kir_binary(k, KIR_GE, x, kir_iconst(k, 0)), kir_binary(k, KIR_LT, x, d));
            valid = valid < 0 ? ok : kir_binary(k, KIR_AND, valid, ok);
            ii[j] = imax(L, imin(L, x, kir_binary(k, KIR_SUB, d, kir_iconst(k, 1))), kir_iconst(k, 0));
        }
        L->guard++;
        int32_t inner = value_at(L, src, ii);
        L->guard--;
        int32_t pv = t == KIR_F32 || t == KIR_F64 ? fconst(L, t, itr_node_attr_float(n, "value"))
                                                  : kir_const_int(k, t, (int64_t)itr_node_attr_float(n, "value"));
        return valid < 0 ? inner : kir_select(k, valid, inner, pv);
    }
    case ITR_OP_CONCAT: {
        int axis = (int)itr_node_attr_int(n, "axis");
        itr_axis_normalize(axis, res->rank, &axis);
        // Each operand's first index along the axis, and its size there
        // (expressions: constants, or dims bound at launch).
        int32_t off[64 + 1], len[64];
        int cnt = n->n_inputs < 64 ? n->n_inputs : 64;
        off[0] = kir_iconst(k, 0);
        for (int i = 0; i < cnt; i++) {
            len[i] = dexpr(L, L->g->values[n->inputs[i]].type.dims[axis]);
            off[i + 1] = kir_iadd(k, off[i], len[i]);
        }
        L->guard++;
        int32_t e = -1;
        for (int i = cnt - 1; i >= 0; i--) {
            for (int j = 0; j < res->rank; j++) ii[j] = idx[j];
            ii[axis] = imax(L, imin(L, kir_binary(k, KIR_SUB, idx[axis], off[i]),
                                    kir_iadd(k, len[i], kir_iconst(k, -1))),
                            kir_iconst(k, 0));
            int32_t x = value_at(L, n->inputs[i], ii);
            e = e < 0 ? x : kir_select(k, kir_binary(k, KIR_LT, idx[axis], off[i + 1]), x, e);
        }
        L->guard--;
        return e;
    }
    default: return -1;
    }
}

static int32_t source(struct lower *L, const struct itr_node *n, const int32_t *idx) {
    const struct itr_type *res = &L->g->values[n->outputs[0]].type;
    enum kir_type t = ktype(L, res->dtype);
    if (n->op == ITR_OP_FULL) {
        double v = itr_node_attr_float(n, "value");
        if (t == KIR_F32 || t == KIR_F64) return fconst(L, t, v);
        return kir_const_int(L->k, t, t == KIR_BOOL ? v != 0 : (int64_t)v);
    }
    int axis = (int)itr_node_attr_int(n, "axis");   // iota
    itr_axis_normalize(axis, res->rank, &axis);
    return kir_cast(L->k, t, idx[axis]);
}

static int32_t node_at(struct lower *L, const struct itr_node *n, const int32_t *idx) {
    note_op(L, n->op);
    switch (itr_op_info(n->op)->cls) {
    case ITR_CLASS_ELEMENTWISE: return elementwise(L, n, idx);
    case ITR_CLASS_MOVEMENT: return movement(L, n, idx);
    default: return source(L, n, idx);
    }
}

static bool is_var(const struct lower *L, int32_t e, int32_t var) {
    const struct kir_expr *x = &L->k->exprs[e];
    return x->kind == KIR_E_VAR && x->var == var;
}

static bool is_zero(const struct lower *L, int32_t e) {
    const struct kir_expr *x = &L->k->exprs[e];
    return x->kind == KIR_E_CONST_INT && x->ival == 0;
}

static bool expr_equal(const struct kir_kernel *k, int32_t a, int32_t b);

// Whether e is the current column of a column row kernel: col_base + lane.
static bool is_current_column(const struct lower *L, int32_t e) {
    const struct kir_expr *x = &L->k->exprs[e];
    return x->kind == KIR_E_BINARY && x->op == KIR_ADD && expr_equal(L->k, x->a, L->col_base) && is_var(L, x->b, L->col_lane);
}

static void reduced_axes(const struct lower *L, const struct itr_node *n, bool *red);
static int32_t mean_of(struct lower *L, int32_t sum, const struct itr_type *in, const bool *red);

// A HOW_ROW reduction read in the kernel being built: its per-row let (a
// column row: its accumulator's lane for the current column), when the
// indices are the row's (the kept axes the row loops, the reduced axes kept
// as size 1 read at 0). Otherwise the kernel cannot compute it per row:
// row_fail makes the caller drop the kernel and materialise the reduction.
static int32_t row_value_at(struct lower *L, int32_t node, const int32_t *idx) {
    const struct itr_node *n = &L->g->nodes[node];
    const struct itr_value *val = &L->g->values[n->outputs[0]];
    bool ok = L->row_let[node] >= 0 && L->row_rank > 0;
    bool keep = val->type.rank == L->row_rank;   // else the kept axes only, in order
    for (int j = 0, o = 0; ok && j < L->row_rank; j++) {
        if (L->row_column && j == L->row_rank - 1) ok = is_current_column(L, idx[o++]);
        else if (L->row_kept[j]) ok = is_var(L, idx[o++], L->row_var[j]);
        else if (keep) ok = is_zero(L, idx[o++]);
    }
    if (!ok) {
        if (L->row_fail < 0) L->row_fail = node;
        return kir_const_float(L->k, ktype(L, val->type.dtype), 0);
    }
    if (!L->row_column) return kir_var_ref(L->k, L->row_let[node]);
    // the column's lane of the chunk's accumulator, as a column reduction
    // kernel stores it
    struct kir_kernel *k = L->k;
    int32_t r = kir_acc_ref(k, L->row_let[node], kir_var_ref(k, L->col_lane));
    if (n->op == ITR_OP_MEAN) {
        bool red[ITR_MAX_RANK];
        reduced_axes(L, n, red);
        r = mean_of(L, r, &L->g->values[n->inputs[0]].type, red);
    }
    return kir_cast(k, ktype(L, val->type.dtype), r);
}

// A sibling computed earlier in the same iteration of a sibling kernel: its
// let, when read at the iteration's own index.
static int32_t sibling_value_at(struct lower *L, int32_t v, const int32_t *idx) {
    const struct itr_type *t = &L->g->values[v].type;
    for (int j = 0; j < t->rank; j++)
        if (!is_var(L, idx[j], L->sib_var[j])) {
            L->sib_fail = true;
            return load_flat(L, v, linear(L, t, idx));
        }
    return kir_var_ref(L->k, L->sib_let[v]);
}

static int32_t value_at(struct lower *L, int32_t v, const int32_t *idx) {
    const struct itr_value *val = &L->g->values[v];
    if (L->sib_let[v] >= 0) return sibling_value_at(L, v, idx);
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return load_flat(L, v, linear(L, &val->type, idx));
    if (L->how[val->node] == HOW_ROW) return row_value_at(L, val->node, idx);
    return node_at(L, &L->g->nodes[val->node], idx);
}

// ---------------------------------------------------------------- kernels

static void begin_kernel(struct lower *L) {
    char name[32];
    snprintf(name, sizeof name, "k%d", L->s->n_kernels);
    L->k = kir_kernel_new(name);
    L->chain[0] = 0;
}

// Loops over the dims of shape t that `which` selects (NULL: all), outermost
// first: the kernel's first loop is its parallel loop, the innermost one
// (with vector_last) the vectorised one. With skip_units a dim of constant
// size 1 gets no loop (its index is 0). Writes the loop index expressions to
// idx and returns the innermost body (a SEQ).
static int32_t loop_axes(struct lower *L, const struct itr_type *t, const bool *which, bool vector_last, bool skip_units,
                         int32_t *idx, int32_t seq) {
    struct kir_kernel *k = L->k;
    int64_t c;
    int last = -1;
    for (int i = 0; i < t->rank; i++)
        if ((!which || which[i]) && !(skip_units && dim_const(L->p, t->dims[i], &c) && c == 1)) last = i;
    for (int i = 0; i < t->rank; i++) {
        if (which && !which[i]) continue;
        if (skip_units && dim_const(L->p, t->dims[i], &c) && c == 1) {
            idx[i] = kir_iconst(k, 0);
            continue;
        }
        char nm[16];
        snprintf(nm, sizeof nm, "i%d", i);
        int32_t var = kir_add_var(k, nm, KIR_VAR_LOOP, KIR_I64);
        int32_t f;
        if (k->parallel_hi < 0) {
            k->parallel_hi = dexpr(L, t->dims[i]);
            k->parallel_dim = t->dims[i];
            f = kir_for(k, var, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
        } else {
            f = kir_for(k, var, kir_iconst(k, 0), dexpr(L, t->dims[i]),
                        vector_last && i == last ? KIR_LOOP_VECTOR : KIR_LOOP_SERIAL);
        }
        kir_append(k, seq, f);
        seq = kir_for_body(k, f);
        idx[i] = kir_var_ref(k, var);
    }
    return seq;
}

static int32_t loop_nest(struct lower *L, const struct itr_type *t, int rank, int32_t *idx, int32_t seq) {
    bool which[ITR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) which[i] = i < rank;
    return loop_axes(L, t, which, true, false, idx, seq);
}

static void finish_kernel(struct lower *L, int32_t out_value, int32_t node) {
    struct kir_kernel *k = L->k;
    // The caller materialises row_fail and builds the kernel again, or
    // builds the siblings one kernel each.
    if (L->row_fail >= 0 || L->sib_fail) {
        for (int i = 0; i < L->n_touched; i++) L->buf_of[L->touched[i]] = -1;
        L->n_touched = 0;
        kir_kernel_free(k);
        L->k = NULL;
        return;
    }
    char name[160];
    snprintf(name, sizeof name, "k%d_%s", L->s->n_kernels, L->chain[0] ? L->chain : "copy");
    free(k->name);
    k->name = strdup(name);
    if (!k->name) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    // Read-only buffers never overlap the one the kernel writes (the
    // executor gives every materialised value its own memory).
    for (int b = 0; b < k->n_bufs; b++) k->bufs[b].noalias = true;
    struct kir_schedule *s = L->s;
    if (s->n_kernels == s->cap_kernels) {
        s->cap_kernels = s->cap_kernels ? 2 * s->cap_kernels : 16;
        s->kernels = xrealloc(s->kernels, (size_t)s->cap_kernels * sizeof *s->kernels);
    }
    s->kernels[s->n_kernels] = k;
    if (s->n_steps == s->cap_steps) {
        s->cap_steps = s->cap_steps ? 2 * s->cap_steps : 32;
        s->steps = xrealloc(s->steps, (size_t)s->cap_steps * sizeof *s->steps);
    }
    struct kir_step *st = &s->steps[s->n_steps++];
    memset(st, 0, sizeof *st);
    st->kind = KIR_STEP_KERNEL;
    st->kernel = s->n_kernels++;
    st->node = node;
    st->guard_count = -1;
    st->guard_node = -1;
    st->gemm_view_a = st->gemm_view_b = -1;
    st->n_bufs = k->n_bufs;
    st->bufs = xcalloc((size_t)k->n_bufs, sizeof *st->bufs);
    for (int i = 0; i < L->n_touched; i++) {
        int32_t v = L->touched[i];
        st->bufs[L->buf_of[v]] = v;
        L->buf_of[v] = -1;
    }
    L->n_touched = 0;
    (void)out_value;
    L->k = NULL;
}

static int32_t out_buffer(struct lower *L, int32_t v) {
    int32_t b = buffer_of(L, v);
    L->k->bufs[b].written = true;
    return b;
}

// ---------------------------------------------------------------- reductions

// Lanes of a reduction's accumulator: independent partial sums that the
// renderer keeps in one vector register. A constant, so results never
// depend on the machine's vector width or the thread count.
#define REDUCE_LANES 8

static enum kir_op reduce_combine(enum itr_op op) {
    return op == ITR_OP_MAX ? KIR_MAX : op == ITR_OP_MIN ? KIR_MIN : KIR_ADD;
}

static int32_t reduce_init(struct lower *L, enum kir_type t, enum kir_op comb) {
    bool fl = t == KIR_F32 || t == KIR_F64;
    if (comb == KIR_ADD) return fl ? fconst(L, t, 0) : kir_const_int(L->k, t, 0);
    if (fl) return fconst(L, t, comb == KIR_MAX ? -INFINITY : INFINITY);
    return kir_const_int(L->k, t, comb == KIR_MAX ? (t == KIR_I32 ? INT32_MIN : INT64_MIN)
                                                   : (t == KIR_I32 ? INT32_MAX : INT64_MAX));
}

// max/min over nothing is the reference's error: the step runs as its node
// when the reduced element count is 0 at run time.
static void guard_empty(struct lower *L, int step, const struct itr_type *in, const bool *red) {
    struct itr_program *p = (struct itr_program *)L->p;   // dims are hash-consed into the program's pool
    itr_dim cnt = itr_dim_const(p, 1);
    for (int j = 0; j < in->rank; j++)
        if (red[j]) cnt = itr_dim_binary(p, ITR_DIM_MUL, cnt, in->dims[j]);
    L->s->steps[step].guard_count = cnt;
}

// The accumulator type of a reduction: f32 sums accumulate in f64, as the
// reference interpreter does, so that a gradient that is exactly zero in
// exact arithmetic (a bias before batch norm) comes out zero rather than
// f32 rounding noise, which Adam would turn into full-size steps.
static enum kir_type acc_type(enum kir_type t, enum kir_op comb) {
    return t == KIR_F32 && comb == KIR_ADD ? KIR_F64 : t;
}

// A mean from the sum `sum` (in the accumulator's type) of operand type
// `in` over the axes `red` marks.
static int32_t mean_of(struct lower *L, int32_t sum, const struct itr_type *in, const bool *red) {
    struct kir_kernel *k = L->k;
    int32_t count = kir_iconst(k, 1);
    for (int j = 0; j < in->rank; j++)
        if (red[j]) count = kir_imul(k, count, dexpr(L, in->dims[j]));
    return kir_binary(k, KIR_DIV, sum, kir_cast(k, k->exprs[sum].type, count));
}

// A serial loop "rJ" over reduced axis j of operand type `in`, appended to
// seq, its index in ii[j]; returns the loop's body.
static int32_t reduced_axis_loop(struct lower *L, int32_t seq, const struct itr_type *in, int j, int32_t *ii) {
    struct kir_kernel *k = L->k;
    char nm[16];
    snprintf(nm, sizeof nm, "r%d", j);
    int32_t var = kir_add_var(k, nm, KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, var, kir_iconst(k, 0), dexpr(L, in->dims[j]), KIR_LOOP_SERIAL);
    kir_append(k, seq, f);
    ii[j] = kir_var_ref(k, var);
    return kir_for_body(k, f);
}

// Widest column chunk of a reduction that keeps its innermost axis. A
// chunk as wide as a 2048-feature row (its f64 accumulator, 16 KB, stays in
// L1) reads the rows it reduces as one contiguous stream: VSE++'s mean over
// [128, 36, 2048] regions ran 20% faster than in chunks of 512 or 1024,
// where 36 rows are read side by side in segments (docs/kernels.md).
#define COLUMN_CHUNK_MAX 2048
// With the column chunks as the parallel loop, aim for at least this many
// chunks, so that a thread pool has work to split.
#define COLUMN_CHUNKS_WANTED 8

// ---------------------------------------------------------------- row kernels

static int32_t reduce_pass(struct lower *L, int32_t seq, const struct itr_node *n, const bool *red, int32_t *ii);

// The most bytes of a column row's block (its reduced extent times a chunk
// of columns) for which its passes run over data in L1.
#define COLUMN_ROW_BLOCK_MAX (32 * 1024)

static int64_t column_width(const struct lower *L, itr_dim cols, bool outer_parallel);

// A column row pays only when a chunk's block stays in L1 across its
// passes: under a kept leading axis (else one chunk spans the whole batch),
// with a constant reduced extent. VSE∞'s batch norm over 4608 regions ran
// its passes from memory and measured 60% slower than the column
// reduction kernels; SCAN's block, 36 regions x 16 words, is 4.6 KB in f64.
// ITRC_NO_COLUMN_ROWS=1 turns column rows off (for measuring them).
static bool column_block_fits(const struct lower *L, const struct itr_type *in, const bool *kept) {
    if (!L->column_rows_on || !kept[0]) return false;
    int64_t extent = 1, c;
    int32_t unbound;
    for (int j = 0; j < in->rank - 1; j++)
        if (!kept[j]) {
            // dims with a declared size (`dim R = 36`) count at that size:
            // a run that binds them otherwise only runs slower, never wrong
            if (!itr_dim_eval(L->p, in->dims[j], L->sym_size, L->sym_declared, &c, &unbound)) return false;
            extent *= c;
        }
    return extent * column_width(L, in->dims[in->rank - 1], true) * 8 <= COLUMN_ROW_BLOCK_MAX;
}

// Whether reduction node n can be computed per row, and how. A row over
// the trailing axes: at least one kept and one reduced axis, the reduced
// ones innermost. A column row: the reduced axes lie between a (possibly
// non-empty) run of kept leading axes and the kept innermost axis (SCAN's
// softmax over the regions of [images, captions, regions, words]), and a
// chunk's block fits in L1 (column_block_fits); its kernel goes over the innermost axis in
// column chunks, as a column reduction kernel does, and runs its passes per
// chunk. (Rows over a middle axis walked one column at a time, with a
// stride, measured twice as slow as the column reduction kernels.) Writes
// the kept-axis mask and whether the row is a column row.
static bool row_form(const struct lower *L, const struct itr_node *n, bool *kept, bool *column) {
    const struct itr_type *in = &L->g->values[n->inputs[0]].type;
    bool red[ITR_MAX_RANK];
    reduced_axes(L, n, red);
    int nk = 0, nr = 0, r = in->rank;
    *column = r >= 2 && !red[r - 1];
    for (int j = 0; j < r; j++) {
        kept[j] = !red[j];
        if (red[j]) nr++;
        else if (nr > 0 && !(*column && j == r - 1)) return false;
        else nk++;
    }
    if (nr == 0 || (!*column && nk == 0)) return false;
    return !*column || column_block_fits(L, in, kept);
}

static bool row_axes(const struct lower *L, const struct itr_node *n, bool *kept) {
    bool column;
    return row_form(L, n, kept, &column);
}

// The HOW_ROW reductions that the kernel of value v reaches (through values
// computed inline, and through the operands of those reductions), in node
// order, which is an order their passes can run in.
static void collect_rows(struct lower *L, int32_t v, int32_t *list, int *n) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return;
    int32_t node = val->node;
    if (L->row_let[node] == -2) return;   // visited
    if (L->how[node] == HOW_ROW) {
        int at = *n;
        while (at > 0 && list[at - 1] > node) {
            list[at] = list[at - 1];
            at--;
        }
        list[at] = node;
        (*n)++;
    }
    L->row_let[node] = -2;
    const struct itr_node *nd = &L->g->nodes[node];
    for (int j = 0; j < nd->n_inputs; j++) collect_rows(L, nd->inputs[j], list, n);
}

static void unmark_rows(struct lower *L, int32_t v) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v] || L->row_let[val->node] != -2) return;
    L->row_let[val->node] = -1;
    const struct itr_node *nd = &L->g->nodes[val->node];
    for (int j = 0; j < nd->n_inputs; j++) unmark_rows(L, nd->inputs[j]);
}

// The body of a row kernel over trailing-axis rows: the row loops, a pass
// per reduction bound to a let, then v's remaining loops.
static void build_trailing_rows(struct lower *L, int32_t v, int32_t node, const int32_t *rows, int nrows,
                                const bool *kept, bool per_row) {
    const struct itr_type *t = &L->g->values[v].type;
    const struct itr_type *in0 = &L->g->values[L->g->nodes[rows[0]].inputs[0]].type;
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    int32_t ob = out_buffer(L, v);
    int32_t idx[ITR_MAX_RANK], rowidx[ITR_MAX_RANK];
    // the row loops hold the passes: none of them is the vectorised one
    bool vkept[ITR_MAX_RANK];
    for (int j = 0; j < t->rank; j++) vkept[j] = per_row || kept[j];
    int32_t seq = loop_axes(L, t, vkept, false, false, idx, k->body);
    for (int j = 0, o = 0; j < in0->rank; j++) {
        L->row_kept[j] = kept[j];
        if (!kept[j]) continue;
        rowidx[j] = idx[per_row ? o++ : j];
        L->row_var[j] = k->exprs[rowidx[j]].var;
    }
    L->row_rank = in0->rank;
    for (int i = 0; i < nrows; i++) {
        const struct itr_node *rn = &L->g->nodes[rows[i]];
        note_op(L, rn->op);
        bool red[ITR_MAX_RANK];
        reduced_axes(L, rn, red);
        int32_t ii[ITR_MAX_RANK];
        for (int j = 0; j < in0->rank; j++)
            if (kept[j]) ii[j] = rowidx[j];
        int32_t r = reduce_pass(L, seq, rn, red, ii);
        const struct itr_value *rv = &L->g->values[rn->outputs[0]];
        int32_t let = kir_add_var(k, rv->name, KIR_VAR_LET, ktype(L, rv->type.dtype));
        kir_append(k, seq, kir_let(k, let, r));
        L->row_let[rows[i]] = let;
    }
    // the rest of v's axes; size-1 ones need no loop
    if (!per_row) {
        bool rest[ITR_MAX_RANK];
        for (int j = 0; j < t->rank; j++) rest[j] = !kept[j];
        seq = loop_axes(L, t, rest, true, true, idx, seq);
    }
    int32_t e = node_at(L, &L->g->nodes[node], idx);
    kir_append(k, seq, kir_store(k, ob, linear(L, t, idx), e));
}

// The column chunk width of a reduction over the rows of a [..., cols]
// operand: the chunks are the parallel loop when no kept outer axis is.
static int64_t column_width(const struct lower *L, itr_dim cols, bool outer_parallel) {
    int64_t width = COLUMN_CHUNK_MAX, c;
    if (dim_const(L->p, cols, &c)) {
        if (!outer_parallel) c = (c + COLUMN_CHUNKS_WANTED - 1) / COLUMN_CHUNKS_WANTED;
        c = (c + 7) / 8 * 8;   // whole vectors
        return c < 8 ? 8 : c < width ? c : width;
    }
    // A symbolic width is usually a caption's words (SCAN's softmax over
    // regions of [images, captions, regions, words]): the accumulator
    // is initialised whole for every row, so keep it near that size.
    return outer_parallel ? 16 : 64;
}

// A loop over [begin, end) of the chunks of `cols` columns, each `width`
// wide, appended to seq: the parallel loop when the kernel has none yet.
// Writes the chunk's first column and its width (the last may be narrower)
// and returns the loop's body.
static int32_t column_chunk_loop(struct lower *L, int32_t seq, itr_dim cols, int64_t width, int32_t *base, int32_t *span) {
    struct kir_kernel *k = L->k;
    struct itr_program *p = (struct itr_program *)L->p;   // dims are hash-consed into the program's pool
    int32_t ncol = dexpr(L, cols), w = kir_iconst(k, width);
    int32_t cvar = kir_add_var(k, "cc", KIR_VAR_LOOP, KIR_I64);
    int32_t f;
    if (k->parallel_hi < 0) {
        itr_dim chunks = itr_dim_binary(p, ITR_DIM_DIV, itr_dim_binary(p, ITR_DIM_ADD, cols, itr_dim_const(p, width - 1)),
                                        itr_dim_const(p, width));
        k->parallel_hi = dexpr(L, chunks);
        k->parallel_dim = chunks;
        f = kir_for(k, cvar, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
    } else {
        int32_t nchunk = kir_binary(k, KIR_DIV, kir_iadd(k, ncol, kir_iconst(k, width - 1)), w);
        f = kir_for(k, cvar, kir_iconst(k, 0), nchunk, KIR_LOOP_SERIAL);
    }
    kir_append(k, seq, f);
    *base = kir_imul(k, kir_var_ref(k, cvar), w);
    *span = imin(L, w, kir_binary(k, KIR_SUB, ncol, *base));
    return kir_for_body(k, f);
}

// A vectorised loop over the chunk's columns, appended to seq; it becomes
// the current column loop (col_lane). Returns its body.
static int32_t column_lane_loop(struct lower *L, int32_t seq, int32_t span) {
    struct kir_kernel *k = L->k;
    int32_t lv = kir_add_var(k, "lane", KIR_VAR_LOOP, KIR_I64);
    int32_t f = kir_for(k, lv, kir_iconst(k, 0), span, KIR_LOOP_VECTOR);
    kir_append(k, seq, f);
    L->col_lane = lv;
    return kir_for_body(k, f);
}

// The body of a row kernel over column rows: the kept leading axes' loops,
// then the column chunks; per chunk, one pass per reduction, accumulated
// exactly as a column reduction kernel does (a lane per column, the reduced
// axes in index order, the lanes innermost), then v's remaining loops
// with the lanes innermost. A reduction is read as its column's lane.
static void build_column_rows(struct lower *L, int32_t v, int32_t node, const int32_t *rows, int nrows,
                              const bool *kept, bool per_row) {
    const struct itr_type *t = &L->g->values[v].type;
    const struct itr_type *in0 = &L->g->values[L->g->nodes[rows[0]].inputs[0]].type;
    int r = in0->rank, last = r - 1;
    int32_t scratch = L->scratch_of[node];   // normalising_division's w, or -1
    bool scratch_stored = false;
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    int32_t ob = out_buffer(L, v);
    int32_t idx[ITR_MAX_RANK], rowidx[ITR_MAX_RANK];
    // v's axes for the kept leading ones
    bool lead[ITR_MAX_RANK];
    for (int j = 0; j < t->rank; j++) lead[j] = false;
    for (int j = 0, o = 0; j < last; j++)
        if (kept[j]) lead[per_row ? o++ : j] = true;
    int32_t seq = loop_axes(L, t, lead, false, false, idx, k->body);
    for (int j = 0, o = 0; j < last; j++) {
        L->row_kept[j] = kept[j];
        if (!kept[j]) continue;
        rowidx[j] = idx[per_row ? o++ : j];
        L->row_var[j] = k->exprs[rowidx[j]].var;
    }
    L->row_kept[last] = true;
    L->row_rank = r;
    L->row_column = true;
    int64_t width = column_width(L, in0->dims[last], k->parallel_hi >= 0);
    int32_t span;
    seq = column_chunk_loop(L, seq, in0->dims[last], width, &L->col_base, &span);
    for (int i = 0; i < nrows; i++) {
        const struct itr_node *rn = &L->g->nodes[rows[i]];
        note_op(L, rn->op);
        const struct itr_type *rt = &L->g->values[rn->outputs[0]].type;
        enum kir_op comb = reduce_combine(rn->op);
        enum kir_type at = acc_type(ktype(L, rt->dtype), comb);
        int32_t acc = kir_add_acc(k, L->g->values[rn->outputs[0]].name, at, (int)width, comb);
        kir_append(k, seq, kir_acc_init(k, acc, reduce_init(L, at, comb)));
        // each reduction walks its own operand's reduced axes (two means
        // over different lengths can share the kernel)
        const struct itr_type *in = &L->g->values[rn->inputs[0]].type;
        int32_t ii[ITR_MAX_RANK];
        int32_t rs = seq;
        for (int j = 0; j < last; j++) {
            if (kept[j]) ii[j] = rowidx[j];
            else rs = reduced_axis_loop(L, rs, in, j, ii);
        }
        int32_t body = column_lane_loop(L, rs, span);
        int32_t lane = kir_var_ref(k, L->col_lane);
        ii[last] = kir_iadd(k, L->col_base, lane);
        int32_t x = value_at(L, rn->inputs[0], ii);
        if (scratch >= 0 && rn->op == ITR_OP_SUM && rn->inputs[0] == scratch && !per_row) {
            // a normalisation w / sum(w): w goes to v's memory here, and v's
            // loop divides it in place
            const struct itr_value *wv = &L->g->values[scratch];
            int32_t let = kir_add_var(k, wv->name, KIR_VAR_LET, ktype(L, wv->type.dtype));
            kir_append(k, body, kir_let(k, let, x));
            x = kir_var_ref(k, let);
            kir_append(k, body, kir_store(k, ob, linear(L, t, ii), x));
            scratch_stored = true;
        }
        kir_append(k, body, kir_acc_update(k, acc, lane, kir_cast(k, at, x)));
        L->row_let[rows[i]] = acc;
    }
    // v's remaining axes (its reduced ones; size-1 ones need no loop), then
    // the chunk's columns
    if (!per_row) {
        bool rest[ITR_MAX_RANK];
        for (int j = 0; j < t->rank; j++) rest[j] = !kept[j];
        seq = loop_axes(L, t, rest, false, true, idx, seq);
    }
    seq = column_lane_loop(L, seq, span);
    idx[t->rank - 1] = kir_iadd(k, L->col_base, kir_var_ref(k, L->col_lane));
    const struct itr_node *n = &L->g->nodes[node];
    int32_t off = linear(L, t, idx);
    int32_t e = scratch_stored ? kir_binary(k, KIR_DIV, kir_load(k, ob, off), operand_at(L, n, 1, idx)) : node_at(L, n, idx);
    kir_append(k, seq, kir_store(k, ob, off, e));
}

// The kernel of value v (computed by node, elementwise or movement), when it
// reads the HOW_ROW reductions rows[0..nrows): one kernel whose leading
// loops run over the rows; per row, one pass per reduction (its accumulation
// over the row, bound to a let), then v's remaining loops. The reductions
// see their operands in the order a standalone reduction kernel would, so
// they give the same bits. A reduction that does not fit (other row axes,
// already computed by another kernel, a second max/min whose row may be
// empty) is left in row_fail for the caller to materialise.
static void lower_row_kernel(struct lower *L, int32_t v, int32_t node, const int32_t *rows, int nrows) {
    const struct itr_type *t = &L->g->values[v].type;
    const struct itr_type *in0 = &L->g->values[L->g->nodes[rows[0]].inputs[0]].type;
    bool kept[ITR_MAX_RANK], column;
    row_form(L, &L->g->nodes[rows[0]], kept, &column);
    // v either has the operands' shape on the kept axes (the rest its own
    // loops) or is one value per row (its axes the kept ones, in order)
    int nk = 0;
    for (int j = 0; j < in0->rank; j++) nk += kept[j];
    bool per_row = t->rank == nk && t->rank < in0->rank;
    bool fits_v = per_row || t->rank == in0->rank;
    for (int j = 0, o = 0; fits_v && j < in0->rank; j++)
        if (kept[j]) fits_v = t->dims[per_row ? o++ : j] == in0->dims[j];
    int32_t guarded = -1;
    itr_dim guard_cnt = -1;
    for (int i = 0; i < nrows; i++) {
        const struct itr_node *rn = &L->g->nodes[rows[i]];
        const struct itr_type *in = &L->g->values[rn->inputs[0]].type;
        bool k2[ITR_MAX_RANK];
        bool fits = fits_v && row_axes(L, rn, k2) && in->rank == in0->rank && L->row_owner[rows[i]] < 0;
        for (int j = 0; fits && j < in->rank; j++) fits = k2[j] == kept[j] && (!kept[j] || in->dims[j] == in0->dims[j]);
        if (fits && (rn->op == ITR_OP_MAX || rn->op == ITR_OP_MIN)) {
            // max/min over an empty row is the reference's error: the step then
            // runs this reduction as its node (its fused operand is empty)
            struct itr_program *pg = (struct itr_program *)L->p;
            itr_dim cnt = itr_dim_const(pg, 1);
            for (int j = 0; j < in->rank; j++)
                if (!kept[j]) cnt = itr_dim_binary(pg, ITR_DIM_MUL, cnt, in->dims[j]);
            int64_t c;
            if (!dim_const(L->p, cnt, &c)) {
                fits = guarded < 0;
                guarded = rows[i];
                guard_cnt = cnt;
            } else {
                fits = c > 0;
            }
        }
        if (!fits) {
            L->row_fail = rows[i];
            return;
        }
    }
    if (column) build_column_rows(L, v, node, rows, nrows, kept, per_row);
    else build_trailing_rows(L, v, node, rows, nrows, kept, per_row);
    int step = L->s->n_steps, kernel = L->s->n_kernels;
    finish_kernel(L, v, node);
    for (int i = 0; i < nrows; i++) {
        L->row_let[rows[i]] = -1;
        if (L->row_fail < 0) L->row_owner[rows[i]] = kernel;
    }
    L->row_rank = 0;
    L->row_column = false;
    if (L->row_fail < 0 && guarded >= 0) {
        L->s->steps[step].guard_count = guard_cnt;
        L->s->steps[step].guard_node = guarded;
    }
}

// The HOW_ROW reductions that node's kernel reaches, in node order, into
// L->rows; returns how many.
static int kernel_rows(struct lower *L, int32_t node) {
    int nrows = 0;
    const struct itr_node *nd = &L->g->nodes[node];
    for (int j = 0; j < nd->n_inputs; j++) collect_rows(L, nd->inputs[j], L->rows, &nrows);
    for (int j = 0; j < nd->n_inputs; j++) unmark_rows(L, nd->inputs[j]);
    return nrows;
}

static void lower_inline(struct lower *L, int32_t v, int32_t node) {
    int nrows = kernel_rows(L, node);
    if (nrows > 0) {
        lower_row_kernel(L, v, node, L->rows, nrows);
        return;
    }
    begin_kernel(L);
    const struct itr_type *t = &L->g->values[v].type;
    int32_t idx[ITR_MAX_RANK];
    int32_t ob = out_buffer(L, v);
    int32_t body = loop_nest(L, t, t->rank, idx, L->k->body);
    int32_t e = node_at(L, &L->g->nodes[node], idx);
    kir_append(L->k, body, kir_store(L->k, ob, linear(L, t, idx), e));
    finish_kernel(L, v, node);
}

// A reduction whose innermost input axis is kept (a sum over time, over the
// batch, over regions). The columns go in chunks of up to COLUMN_CHUNK_MAX;
// a chunk has one accumulator with a lane per column, and the reduced axes
// are walked in index order with a vector loop over the chunk's columns
// inside, so each step streams one contiguous run of a row and every output
// element still sees its inputs in index order (the same bits as one
// column at a time). Streaming whole row segments measured 1.6x faster than
// 8-column blocks, whose 36 strided 32-byte reads per block defeat the
// prefetcher (docs/kernels.md "Column reductions").
// The parallel loop runs over the first kept axis (disjoint outputs); when
// the innermost axis is the only kept one, the chunks are, and they are
// narrowed so that there are several of them.
static void lower_reduce_outer(struct lower *L, int32_t node, const bool *red, bool keep) {
    const struct itr_node *n = &L->g->nodes[node];
    int32_t v = n->outputs[0];
    const struct itr_type *res = &L->g->values[v].type, *in = &L->g->values[n->inputs[0]].type;
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    note_op(L, n->op);
    int32_t ob = out_buffer(L, v);
    enum kir_type t = ktype(L, res->dtype);
    enum kir_op comb = reduce_combine(n->op);
    enum kir_type at = acc_type(t, comb);
    int r = in->rank;
    int32_t ii[ITR_MAX_RANK], oi[ITR_MAX_RANK];
    int32_t seq = k->body;
    bool parallel_done = false;
    // kept axes but the innermost, outermost first
    for (int j = 0; j < r - 1; j++) {
        if (red[j]) continue;
        char nm[16];
        snprintf(nm, sizeof nm, "i%d", j);
        int32_t var = kir_add_var(k, nm, KIR_VAR_LOOP, KIR_I64);
        int32_t f;
        if (!parallel_done) {
            k->parallel_hi = dexpr(L, in->dims[j]);
            k->parallel_dim = in->dims[j];
            f = kir_for(k, var, kir_begin(k), kir_end(k), KIR_LOOP_PARALLEL);
            parallel_done = true;
        } else {
            f = kir_for(k, var, kir_iconst(k, 0), dexpr(L, in->dims[j]), KIR_LOOP_SERIAL);
        }
        kir_append(k, seq, f);
        seq = kir_for_body(k, f);
        ii[j] = kir_var_ref(k, var);
    }
    // The chunk width is fixed at lowering; the last chunk may be narrower.
    itr_dim cols = in->dims[r - 1];
    int64_t width = column_width(L, cols, parallel_done);
    int32_t col_base, span;
    int32_t body = column_chunk_loop(L, seq, cols, width, &col_base, &span);
    int32_t acc = kir_add_acc(k, "acc", at, (int)width, comb);
    kir_append(k, body, kir_acc_init(k, acc, reduce_init(L, at, comb)));
    int32_t rs = body;
    for (int j = 0; j < r - 1; j++)
        if (red[j]) rs = reduced_axis_loop(L, rs, in, j, ii);
    int32_t lv = kir_add_var(k, "lane", KIR_VAR_LOOP, KIR_I64);
    int32_t fl = kir_for(k, lv, kir_iconst(k, 0), span, KIR_LOOP_VECTOR);
    kir_append(k, rs, fl);
    int32_t lane = kir_var_ref(k, lv);
    ii[r - 1] = kir_iadd(k, col_base, lane);
    kir_append(k, kir_for_body(k, fl), kir_acc_update(k, acc, lane, kir_cast(k, at, value_at(L, n->inputs[0], ii))));
    // store every lane
    int32_t sv = kir_add_var(k, "lane", KIR_VAR_LOOP, KIR_I64);
    int32_t fs = kir_for(k, sv, kir_iconst(k, 0), span, KIR_LOOP_VECTOR);
    kir_append(k, body, fs);
    int32_t st_lane = kir_var_ref(k, sv);
    ii[r - 1] = kir_iadd(k, col_base, st_lane);
    int o = 0;
    for (int j = 0; j < r; j++) {
        if (!red[j]) oi[o++] = ii[j];
        else if (keep) oi[o++] = kir_iconst(k, 0);
    }
    int32_t val = kir_acc_ref(k, acc, st_lane);
    if (n->op == ITR_OP_MEAN) val = mean_of(L, val, in, red);
    kir_append(k, kir_for_body(k, fs), kir_store(k, ob, linear(L, res, oi), kir_cast(k, t, val)));
    int step = L->s->n_steps;
    finish_kernel(L, v, node);
    if (comb != KIR_ADD && L->row_fail < 0) guard_empty(L, step, in, red);
}

// The reduced-axis mask of reduction node n.
static void reduced_axes(const struct lower *L, const struct itr_node *n, bool *red) {
    const struct itr_type *in = &L->g->values[n->inputs[0]].type;
    const int64_t *axes;
    int na;
    for (int i = 0; i < ITR_MAX_RANK; i++) red[i] = false;
    if (attr_ints(n, "axes", &axes, &na)) {
        for (int i = 0; i < na; i++) {
            int ax;
            if (itr_axis_normalize(axes[i], in->rank, &ax)) red[ax] = true;
        }
    } else {
        for (int i = 0; i < in->rank; i++) red[i] = true;
    }
}

// Appends to seq the accumulation of reduction node n over its reduced axes
// (innermost one reduced) and returns its value in the result's type. ii
// holds the operand's indices on the kept axes; the reduced ones get loops.
static int32_t reduce_pass(struct lower *L, int32_t seq, const struct itr_node *n, const bool *red, int32_t *ii) {
    struct kir_kernel *k = L->k;
    const struct itr_type *res = &L->g->values[n->outputs[0]].type, *in = &L->g->values[n->inputs[0]].type;
    enum kir_type t = ktype(L, res->dtype);
    bool fl = t == KIR_F32 || t == KIR_F64;
    enum kir_op comb = reduce_combine(n->op);
    enum kir_type at = acc_type(t, comb);
    int last_red = -1;
    for (int j = 0; j < in->rank; j++)
        if (red[j]) last_red = j;
    int lanes = last_red >= 0 && fl ? REDUCE_LANES : 1;
    int32_t acc = kir_add_acc(k, "acc", at, lanes, comb);
    kir_append(k, seq, kir_acc_init(k, acc, reduce_init(L, at, comb)));
    int32_t count = kir_iconst(k, 1);
    for (int j = 0; j < in->rank; j++) {
        if (!red[j]) continue;
        count = kir_imul(k, count, dexpr(L, in->dims[j]));
        if (j == last_red) break;
        seq = reduced_axis_loop(L, seq, in, j, ii);
    }
    if (last_red >= 0) {
        int32_t d = dexpr(L, in->dims[last_red]);
        if (lanes > 1) {
            // for ro in [0, d/lanes): for lane in [0, lanes) unrolled: acc[lane] op= x[ro*lanes + lane]
            int32_t vo = kir_add_var(k, "ro", KIR_VAR_LOOP, KIR_I64), vl = kir_add_var(k, "lane", KIR_VAR_LOOP, KIR_I64);
            int32_t f = kir_for(k, vo, kir_iconst(k, 0), kir_binary(k, KIR_DIV, d, kir_iconst(k, lanes)), KIR_LOOP_SERIAL);
            kir_append(k, seq, f);
            int32_t fl2 = kir_for(k, vl, kir_iconst(k, 0), kir_iconst(k, lanes), KIR_LOOP_UNROLL);
            kir_append(k, kir_for_body(k, f), fl2);
            int32_t lane = kir_var_ref(k, vl);
            ii[last_red] = kir_iadd(k, kir_imul(k, kir_var_ref(k, vo), kir_iconst(k, lanes)), lane);
            kir_append(k, kir_for_body(k, fl2), kir_acc_update(k, acc, lane, kir_cast(k, at, value_at(L, n->inputs[0], ii))));
            // the tail goes to lane 0, in order
            int32_t vt = kir_add_var(k, "rt", KIR_VAR_LOOP, KIR_I64);
            int32_t ft = kir_for(k, vt, kir_imul(k, kir_binary(k, KIR_DIV, d, kir_iconst(k, lanes)), kir_iconst(k, lanes)), d,
                                 KIR_LOOP_SERIAL);
            kir_append(k, seq, ft);
            ii[last_red] = kir_var_ref(k, vt);
            kir_append(k, kir_for_body(k, ft), kir_acc_update(k, acc, kir_iconst(k, 0), kir_cast(k, at, value_at(L, n->inputs[0], ii))));
        } else {
            int32_t var = kir_add_var(k, "r", KIR_VAR_LOOP, KIR_I64);
            int32_t f = kir_for(k, var, kir_iconst(k, 0), d, KIR_LOOP_SERIAL);
            kir_append(k, seq, f);
            ii[last_red] = kir_var_ref(k, var);
            kir_append(k, kir_for_body(k, f), kir_acc_update(k, acc, kir_iconst(k, 0), kir_cast(k, at, value_at(L, n->inputs[0], ii))));
        }
    } else {
        kir_append(k, seq, kir_acc_update(k, acc, kir_iconst(k, 0), kir_cast(k, at, value_at(L, n->inputs[0], ii))));
    }
    int32_t r = kir_acc_ref(k, acc, -1);
    if (n->op == ITR_OP_MEAN) r = kir_binary(k, KIR_DIV, r, kir_cast(k, at, count));
    return kir_cast(k, t, r);
}

static void lower_reduce(struct lower *L, int32_t node) {
    const struct itr_node *n = &L->g->nodes[node];
    int32_t v = n->outputs[0];
    const struct itr_type *res = &L->g->values[v].type, *in = &L->g->values[n->inputs[0]].type;
    bool red[ITR_MAX_RANK];
    reduced_axes(L, n, red);
    bool keep = itr_node_attr_int(n, "keepdims") != 0;
    if (in->rank > 0 && !red[in->rank - 1]) {
        lower_reduce_outer(L, node, red, keep);
        return;
    }
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    note_op(L, n->op);
    int32_t ob = out_buffer(L, v);
    int32_t oidx[ITR_MAX_RANK];
    int32_t body = loop_nest(L, res, res->rank, oidx, k->body);
    // input indices: kept axes from the result's loops, reduced ones from new loops
    int32_t ii[ITR_MAX_RANK];
    int o = 0;
    for (int j = 0; j < in->rank; j++) {
        if (!red[j]) ii[j] = oidx[o++];
        else if (keep) o++;
    }
    int32_t r = reduce_pass(L, body, n, red, ii);
    kir_append(k, body, kir_store(k, ob, linear(L, res, oidx), r));
    int step = L->s->n_steps;
    finish_kernel(L, v, node);
    if (n->op != ITR_OP_SUM && n->op != ITR_OP_MEAN && L->row_fail < 0) guard_empty(L, step, in, red);
}

static void lower_matmul(struct lower *L, int32_t node) {
    const struct itr_node *n = &L->g->nodes[node];
    int32_t v = n->outputs[0];
    const struct itr_type *res = &L->g->values[v].type;
    const struct itr_type *ta = &L->g->values[n->inputs[0]].type, *tb = &L->g->values[n->inputs[1]].type;
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    note_op(L, n->op);
    int32_t ob = out_buffer(L, v);
    enum kir_type t = ktype(L, res->dtype);
    bool fl = t == KIR_F32 || t == KIR_F64;
    // loops over batch dims and rows; then C[i, :] = 0; for kk: C[i, :] += A[i, kk] * B[kk, :]
    int32_t idx[ITR_MAX_RANK];
    int32_t body = loop_nest(L, res, res->rank - 1, idx, k->body);
    int r = res->rank;
    int32_t vj = kir_add_var(k, "j", KIR_VAR_LOOP, KIR_I64);
    int32_t nn = dexpr(L, res->dims[r - 1]);
    int32_t f0 = kir_for(k, vj, kir_iconst(k, 0), nn, KIR_LOOP_VECTOR);
    kir_append(k, body, f0);
    idx[r - 1] = kir_var_ref(k, vj);
    int32_t zero = fl ? fconst(L, t, 0) : kir_const_int(k, t, 0);
    kir_append(k, kir_for_body(k, f0), kir_store(k, ob, linear(L, res, idx), zero));
    int32_t vk = kir_add_var(k, "kk", KIR_VAR_LOOP, KIR_I64);
    int32_t fk = kir_for(k, vk, kir_iconst(k, 0), dexpr(L, ta->dims[ta->rank - 1]), KIR_LOOP_SERIAL);
    kir_append(k, body, fk);
    int32_t kkv = kir_var_ref(k, vk);
    // A[batch.., i, kk] with A's batch dims broadcast against the result's
    struct itr_type rb = *res;
    rb.rank = r - 2;
    struct itr_type ab = *ta, bb = *tb;
    ab.rank -= 2;
    bb.rank -= 2;
    int32_t ai[ITR_MAX_RANK], bi[ITR_MAX_RANK];
    broadcast_idx(L, &ab, &rb, idx, ai);
    ai[ta->rank - 2] = idx[r - 2];
    ai[ta->rank - 1] = kkv;
    int32_t a = value_at(L, n->inputs[0], ai);
    int32_t va = kir_add_var(k, "a", KIR_VAR_LET, t);
    kir_append(k, kir_for_body(k, fk), kir_let(k, va, a));
    int32_t vj2 = kir_add_var(k, "j2", KIR_VAR_LOOP, KIR_I64);
    int32_t fj = kir_for(k, vj2, kir_iconst(k, 0), nn, KIR_LOOP_VECTOR);
    kir_append(k, kir_for_body(k, fk), fj);
    int32_t j2 = kir_var_ref(k, vj2);
    broadcast_idx(L, &bb, &rb, idx, bi);
    bi[tb->rank - 2] = kkv;
    bi[tb->rank - 1] = j2;
    int32_t b = value_at(L, n->inputs[1], bi);
    idx[r - 1] = j2;
    int32_t ci = linear(L, res, idx);
    int32_t cur = kir_load(k, ob, ci);
    kir_append(k, kir_for_body(k, fj),
               kir_store(k, ob, ci, kir_binary(k, KIR_ADD, cur, kir_binary(k, KIR_MUL, kir_var_ref(k, va), b))));
    finish_kernel(L, v, node);
}

static void add_node_step(struct lower *L, int32_t node) {
    struct kir_schedule *s = L->s;
    if (s->n_steps == s->cap_steps) {
        s->cap_steps = s->cap_steps ? 2 * s->cap_steps : 32;
        s->steps = xrealloc(s->steps, (size_t)s->cap_steps * sizeof *s->steps);
    }
    struct kir_step *st = &s->steps[s->n_steps++];
    memset(st, 0, sizeof *st);
    st->kind = KIR_STEP_NODE;
    st->kernel = -1;
    st->node = node;
    st->guard_count = -1;
    st->guard_node = -1;
    st->gemm_view_a = st->gemm_view_b = -1;
}

static void add_gemm_step(struct lower *L, int32_t node) {
    add_node_step(L, node);
    struct kir_step *st = &L->s->steps[L->s->n_steps - 1];
    const struct itr_node *n = &L->g->nodes[node];
    st->kind = KIR_STEP_GEMM;
    gemm_operand(L, n->inputs[0], &st->gemm_a, &st->trans_a, &st->gemm_view_a);
    gemm_operand(L, n->inputs[1], &st->gemm_b, &st->trans_b, &st->gemm_view_b);
}

static void add_gemm_t_step(struct lower *L, int32_t node) {
    const struct itr_node *mm = &L->g->nodes[L->g->values[swap_last_two_source(L, L->g->nodes[node].outputs[0])].node];
    add_node_step(L, node);
    struct kir_step *st = &L->s->steps[L->s->n_steps - 1];
    st->kind = KIR_STEP_GEMM;
    int32_t a, b, va, vb;
    bool ta, tb;
    gemm_operand(L, mm->inputs[0], &a, &ta, &va);
    gemm_operand(L, mm->inputs[1], &b, &tb, &vb);
    st->gemm_a = b;
    st->trans_a = !tb;
    st->gemm_view_a = vb;
    st->gemm_b = a;
    st->trans_b = !ta;
    st->gemm_view_b = va;
}

// Lowers node (its kernel or GEMM step), first materialising, each with its
// own kernel, the row reductions that its kernel cannot compute per row.
static void lower_node(struct lower *L, int32_t node);

static void demote_row(struct lower *L, int32_t rnode) {
    L->how[rnode] = HOW_REDUCE;
    L->s->materialised[L->g->nodes[rnode].outputs[0]] = true;
    lower_node(L, rnode);
}

static void lower_node(struct lower *L, int32_t node) {
    const struct itr_node *n = &L->g->nodes[node];
    for (;;) {
        L->row_fail = -1;
        switch (L->how[node]) {
        case HOW_REDUCE: lower_reduce(L, node); break;
        case HOW_MATMUL: lower_matmul(L, node); break;
        case HOW_INLINE: lower_inline(L, n->outputs[0], node); break;
        default: return;
        }
        if (L->row_fail < 0) return;
        demote_row(L, L->row_fail);
    }
}

// ---------------------------------------------------------------- sibling kernels

// The materialised values that the kernel computing v reads (through the
// values it computes inline), at most cap of them.
static void kernel_reads(const struct lower *L, int32_t v, int32_t *stamp, int32_t cur, int32_t *out, int *n, int cap) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || stamp[v] == cur) return;
    stamp[v] = cur;
    if (L->s->materialised[v]) {
        if (*n < cap) out[(*n)++] = v;
        return;
    }
    const struct itr_node *nd = &L->g->nodes[val->node];
    for (int j = 0; j < nd->n_inputs; j++) kernel_reads(L, nd->inputs[j], stamp, cur, out, n, cap);
}

// Whether node c, which reads a value of sibling group gi, runs after the
// group's kernel (which runs where node `last` stood) or inside it.
static bool sibling_reader_ok(const struct lower *L, int32_t c, int gi, int32_t last, const int32_t *cons_start,
                              const int32_t *cons, int depth) {
    if (c >= last || L->sib_of[c] == gi) return true;
    int32_t w = L->g->nodes[c].outputs[0];
    if (depth > 4 || L->how[c] != HOW_INLINE || L->s->materialised[w]) return false;
    for (int32_t k = cons_start[w]; k < cons_start[w + 1]; k++)
        if (!sibling_reader_ok(L, cons[k], gi, last, cons_start, cons, depth + 1)) return false;
    return true;
}

// Whether node c, a reader of a value of sibling group gi, is computed only
// inside the group's kernel (a sibling, or inline for siblings only).
static bool sibling_reader_inside(const struct lower *L, int32_t c, int gi, const int32_t *cons_start,
                                  const int32_t *cons, int depth) {
    if (L->sib_of[c] == gi) return true;
    int32_t w = L->g->nodes[c].outputs[0];
    if (depth > 4 || L->how[c] != HOW_INLINE || L->s->materialised[w]) return false;
    for (int32_t k = cons_start[w]; k < cons_start[w + 1]; k++)
        if (!sibling_reader_inside(L, cons[k], gi, cons_start, cons, depth + 1)) return false;
    return cons_start[w] < cons_start[w + 1];
}

static bool same_shape(const struct itr_type *a, const struct itr_type *b) {
    if (a->rank != b->rank) return false;
    for (int j = 0; j < a->rank; j++)
        if (a->dims[j] != b->dims[j]) return false;
    return true;
}

// Groups the values that inline kernels materialise: a value joins the group
// of a value of the same shape that its kernel reads, when every other
// reader of the group's values runs inside the group's kernel or after it
// (the kernel runs where the group's last value stood).
static void plan_siblings(struct lower *L, const int32_t *cons_start, const int32_t *cons) {
    const struct itr_graph *g = L->g;
    bool *member_ok = xcalloc((size_t)g->n_nodes + 1, sizeof *member_ok);
    int32_t *stamp = xcalloc((size_t)g->n_values + 1, sizeof *stamp);
    for (int i = 0; i < g->n_nodes; i++) {
        int32_t w = g->nodes[i].outputs[0];
        if (L->how[i] != HOW_INLINE || !L->s->materialised[w] || kernel_rows(L, i) > 0) continue;
        member_ok[i] = true;
        int32_t reads[32];
        int nr = 0;
        const struct itr_node *nd = &g->nodes[i];
        for (int j = 0; j < nd->n_inputs; j++) kernel_reads(L, nd->inputs[j], stamp, i + 1, reads, &nr, 32);
        int32_t best = -1;
        for (int r = 0; r < nr; r++) {
            const struct itr_value *uv = &g->values[reads[r]];
            int32_t u = uv->node;
            if (!member_ok[u] || !same_shape(&uv->type, &g->values[w].type) || u <= best) continue;
            best = u;
        }
        if (best < 0) continue;
        int gi = L->sib_of[best];
        if (gi < 0) {
            if (L->n_sibs % 16 == 0) L->sibs = xrealloc(L->sibs, (size_t)(L->n_sibs + 16) * sizeof *L->sibs);
            gi = L->n_sibs++;
            L->sibs[gi].n = 1;
            L->sibs[gi].nodes[0] = best;
            L->sib_of[best] = gi;
        }
        struct sibling_group *G = &L->sibs[gi];
        bool ok = G->n < SIBLINGS_MAX;
        L->sib_of[i] = gi;   // as a member while checking
        for (int m = 0; ok && m < G->n; m++) {
            int32_t x = g->nodes[G->nodes[m]].outputs[0];
            for (int32_t k = cons_start[x]; ok && k < cons_start[x + 1]; k++)
                ok = sibling_reader_ok(L, cons[k], gi, i, cons_start, cons, 0);
        }
        if (ok) G->nodes[G->n++] = i;
        else {
            L->sib_of[i] = -1;
            if (G->n == 1) {   // a group that never formed
                L->sib_of[G->nodes[0]] = -1;
                L->n_sibs--;
            }
        }
    }
    free(member_ok);
    free(stamp);
}

// One kernel for sibling group gi, at its last value's place: one loop nest
// over their shape whose body computes each value in node order, binds it to
// a let the later ones read, and stores the values read outside the group.
// When a sibling is read at another index than the iteration's own, each
// value gets its own kernel instead.
static void lower_siblings(struct lower *L, int gi, const bool *is_output, const int32_t *cons_start,
                           const int32_t *cons) {
    const struct sibling_group *G = &L->sibs[gi];
    const struct itr_graph *g = L->g;
    const struct itr_type *t = &g->values[g->nodes[G->nodes[0]].outputs[0]].type;
    bool stored[SIBLINGS_MAX];
    L->sib_fail = false;
    begin_kernel(L);
    struct kir_kernel *k = L->k;
    int32_t idx[ITR_MAX_RANK];
    int32_t body = loop_nest(L, t, t->rank, idx, k->body);
    for (int j = 0; j < t->rank; j++) L->sib_var[j] = k->exprs[idx[j]].var;
    for (int m = 0; m < G->n; m++) {
        const struct itr_node *n = &g->nodes[G->nodes[m]];
        int32_t v = n->outputs[0];
        const struct itr_value *val = &g->values[v];
        int32_t e = node_at(L, n, idx);
        int32_t let = kir_add_var(k, val->name, KIR_VAR_LET, ktype(L, val->type.dtype));
        kir_append(k, body, kir_let(k, let, e));
        stored[m] = is_output[v];
        for (int32_t c = cons_start[v]; !stored[m] && c < cons_start[v + 1]; c++)
            stored[m] = !sibling_reader_inside(L, cons[c], gi, cons_start, cons, 0);
        if (stored[m]) kir_append(k, body, kir_store(k, out_buffer(L, v), linear(L, t, idx), kir_var_ref(k, let)));
        L->sib_let[v] = let;
    }
    int32_t last = G->nodes[G->n - 1];
    bool failed = L->sib_fail || L->row_fail >= 0;
    finish_kernel(L, g->nodes[last].outputs[0], last);   // drops the kernel when failed
    for (int m = 0; m < G->n; m++) L->sib_let[g->nodes[G->nodes[m]].outputs[0]] = -1;
    L->sib_fail = false;
    L->row_fail = -1;
    if (failed) {
        for (int m = 0; m < G->n; m++) lower_node(L, G->nodes[m]);
        return;
    }
    for (int m = 0; m < G->n; m++)
        if (!stored[m]) L->s->materialised[g->nodes[G->nodes[m]].outputs[0]] = false;
}

// ---------------------------------------------------------------- the schedule

// Whether reduction node i can be a HOW_ROW: a float reduction over the
// trailing axes of its operand, read only by kernels (inline values and
// reductions), not a graph output.
static bool row_candidate(const struct lower *L, int32_t i, const bool *is_output, const int32_t *cons_start,
                          const int32_t *cons) {
    const struct itr_node *n = &L->g->nodes[i];
    int32_t v = n->outputs[0];
    bool kept[ITR_MAX_RANK];
    if (!itr_dtype_is_float(L->g->values[v].type.dtype) || is_output[v] || !row_axes(L, n, kept)) return false;
    for (int32_t c = cons_start[v]; c < cons_start[v + 1]; c++) {
        enum how h = L->how[cons[c]];
        if (h != HOW_INLINE && h != HOW_REDUCE && h != HOW_ROW) return false;
    }
    return true;
}

// A value read by several consumers that a row kernel recomputes rather
// than materialises: softmax's exp(x - max) feeds its row sum and the
// division, layernorm's x - mean its variance and the output. Its readers
// are kernels, one of them a row reduction or an inline value that a row
// reduction reads, and there are few of them (each recomputes it).
// Whether HOW_ROW node a's rows are node b's: one kernel can host both.
static bool same_rows(const struct lower *L, int32_t a, int32_t b) {
    const struct itr_type *ta = &L->g->values[L->g->nodes[a].inputs[0]].type,
                          *tb = &L->g->values[L->g->nodes[b].inputs[0]].type;
    bool ka[ITR_MAX_RANK], kb[ITR_MAX_RANK];
    if (ta->rank != tb->rank || !row_axes(L, &L->g->nodes[a], ka) || !row_axes(L, &L->g->nodes[b], kb)) return false;
    for (int j = 0; j < ta->rank; j++)
        if (ka[j] != kb[j] || (ka[j] && ta->dims[j] != tb->dims[j])) return false;
    return true;
}

// Whether the value of v, computed inline, reaches HOW_ROW reductions of
// other rows than `rows` (through values computed inline; depth-limited).
static bool upstream_rows_differ(const struct lower *L, int32_t v, int32_t rows, int depth) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v]) return false;
    int32_t n = val->node;
    if (L->how[n] == HOW_ROW) return !same_rows(L, n, rows);
    if (depth > 32 || L->how[n] != HOW_INLINE) return depth > 32;
    for (int j = 0; j < L->g->nodes[n].n_inputs; j++)
        if (upstream_rows_differ(L, L->g->nodes[n].inputs[j], rows, depth + 1)) return true;
    return false;
}

// Whether computing v inline evaluates a transcendental function (through
// the values computed inline with it; depth-limited).
static bool transcendental(const struct lower *L, int32_t v, int depth) {
    const struct itr_value *val = &L->g->values[v];
    if (val->kind != ITR_VALUE_NODE || L->s->materialised[v] || L->how[val->node] != HOW_INLINE) return false;
    const struct itr_node *n = &L->g->nodes[val->node];
    switch (n->op) {
    case ITR_OP_EXP: case ITR_OP_LOG: case ITR_OP_SIGMOID: case ITR_OP_TANH: case ITR_OP_GELU: case ITR_OP_ERF:
    case ITR_OP_POW: case ITR_OP_SIN: case ITR_OP_COS: case ITR_OP_ACOS:
        return true;
    default: break;
    }
    if (depth > 16) return true;
    for (int j = 0; j < n->n_inputs; j++)
        if (transcendental(L, n->inputs[j], depth + 1)) return true;
    return false;
}

// The division node of a normalisation over a column row, w / sum(w) with
// w read by nothing else, or -1. Its kernel stores w into the division's
// output in the sum's pass and divides there in place: w is computed once
// and never stored on its own (SCAN's softmax over regions, one kernel).
static int32_t normalising_division(const struct lower *L, int32_t w, const int32_t *cons_start, const int32_t *cons) {
    if (cons_start[w + 1] - cons_start[w] != 2) return -1;
    int32_t r = -1, d = -1;
    for (int32_t c = cons_start[w]; c < cons_start[w + 1]; c++) {
        const struct itr_node *n = &L->g->nodes[cons[c]];
        if (L->how[cons[c]] == HOW_ROW && n->op == ITR_OP_SUM) r = cons[c];
        else if (L->how[cons[c]] == HOW_INLINE && n->op == ITR_OP_DIV) d = cons[c];
    }
    if (r < 0 || d < 0) return -1;
    const struct itr_node *dn = &L->g->nodes[d];
    if (dn->inputs[0] != w || dn->inputs[1] != L->g->nodes[r].outputs[0]) return -1;
    return same_shape(&L->g->values[dn->outputs[0]].type, &L->g->values[w].type) ? d : -1;
}

// Every reader of v is a slice along one axis, with constant bounds that do
// not overlap (a GRU's gates: three thirds of `h Wᵀ + b`): computed inline,
// each element is still computed at most once, so storing v would only add
// a pass over it.
static bool read_as_disjoint_slices(const struct lower *L, int32_t v, const int32_t *cons_start, const int32_t *cons) {
    int n = cons_start[v + 1] - cons_start[v];
    if (n < 2 || n > 16) return false;
    int64_t lo[16], hi[16];
    int axis = -1;
    for (int q = 0; q < n; q++) {
        int ax;
        if (!itr_slice_one_axis(&L->g->nodes[cons[cons_start[v] + q]], L->g->values[v].type.rank, &ax, &lo[q], &hi[q]) ||
            (axis >= 0 && ax != axis) || lo[q] < 0 || hi[q] < lo[q])
            return false;
        axis = ax;
        for (int r = 0; r < q; r++)
            if (lo[q] < hi[r] && lo[r] < hi[q]) return false;
    }
    return true;
}

static bool row_shared(struct lower *L, int32_t v, const int32_t *cons_start, const int32_t *cons) {
    if (cons_start[v + 1] - cons_start[v] > 4) return false;
    int32_t row = -1;   // a row reduction that reads v, directly or through one inline value
    for (int32_t c = cons_start[v]; c < cons_start[v + 1]; c++) {
        int32_t cn = cons[c];
        if (L->how[cn] == HOW_ROW) row = cn;
        // a transposed read is never at the row's own indices: that kernel
        // would have to store the row reductions, so store v instead (SCAN's
        // attention weights, a GEMM operand through a transpose)
        else if (L->how[cn] != HOW_INLINE || L->g->nodes[cn].op == ITR_OP_TRANSPOSE) return false;
        else {
            int32_t w = L->g->nodes[cn].outputs[0];
            for (int32_t c2 = cons_start[w]; c2 < cons_start[w + 1]; c2++)
                if (L->how[cons[c2]] == HOW_ROW) row = cons[c2];
        }
    }
    if (row < 0) return false;
    // v computed again in each pass of that row's kernel must not need
    // reductions over other rows, which that kernel cannot host (SCAN's
    // logits, normalised over the words, then a softmax over the regions)
    if (upstream_rows_differ(L, v, row, 0)) return false;
    // A column row's passes run over data in L1, where an exponential costs
    // more than storing and loading it: SCAN's exp(x - max) computed in the
    // sum's pass and again in the division measured no faster than four
    // kernels, and BFAN's focal weights, which recompute the softmax in
    // three kernels, 20% slower. Such a value is stored.
    bool kept[ITR_MAX_RANK], column;
    row_form(L, &L->g->nodes[row], kept, &column);
    if (!column || !transcendental(L, v, 0)) return true;
    int32_t d = normalising_division(L, v, cons_start, cons);
    if (d < 0) return false;
    L->scratch_of[d] = v;   // undone after planning if the division is not stored
    return true;
}

// ---------------------------------------------------------------- updates in place

static bool expr_equal(const struct kir_kernel *k, int32_t a, int32_t b) {
    if (a == b) return true;
    if (a < 0 || b < 0) return false;
    const struct kir_expr *x = &k->exprs[a], *y = &k->exprs[b];
    if (x->kind != y->kind || x->type != y->type) return false;
    switch (x->kind) {
    case KIR_E_CONST_INT: return x->ival == y->ival;
    case KIR_E_CONST_FLOAT: return x->fval == y->fval;
    case KIR_E_VAR: return x->var == y->var && x->a == y->a;
    case KIR_E_DIM: return x->dim == y->dim;
    case KIR_E_BEGIN: case KIR_E_END: return true;
    case KIR_E_LOAD: return x->buf == y->buf && expr_equal(k, x->a, y->a);
    case KIR_E_UNARY: case KIR_E_CAST: return x->op == y->op && expr_equal(k, x->a, y->a);
    case KIR_E_BINARY: return x->op == y->op && expr_equal(k, x->a, y->a) && expr_equal(k, x->b, y->b);
    case KIR_E_SELECT: return expr_equal(k, x->a, y->a) && expr_equal(k, x->b, y->b) && expr_equal(k, x->c, y->c);
    default: return false;
    }
}

// What in_place_walk checks: every load of buffer `in` happens before the
// one store to `out` in program order, at the store's index.
struct in_place_check { int32_t in, out, store_index; int stores; bool ok; };

static void in_place_expr(const struct kir_kernel *k, int32_t e, struct in_place_check *c) {
    if (e < 0 || !c->ok) return;
    const struct kir_expr *x = &k->exprs[e];
    if (x->kind == KIR_E_LOAD && x->buf == c->in)
        c->ok = c->stores == 0 && c->store_index >= 0 && expr_equal(k, x->a, c->store_index);
    if (x->kind == KIR_E_LOAD || x->kind == KIR_E_UNARY || x->kind == KIR_E_CAST || x->kind == KIR_E_BINARY ||
        x->kind == KIR_E_SELECT)
        in_place_expr(k, x->a, c);
    if (x->kind == KIR_E_BINARY || x->kind == KIR_E_SELECT) in_place_expr(k, x->b, c);
    if (x->kind == KIR_E_SELECT) in_place_expr(k, x->c, c);
}

static void in_place_walk(const struct kir_kernel *k, int32_t si, struct in_place_check *c) {
    const struct kir_stmt *st = &k->stmts[si];
    switch (st->kind) {
    case KIR_S_FOR: in_place_expr(k, st->lo, c); in_place_expr(k, st->hi, c); break;
    case KIR_S_IF: in_place_expr(k, st->cond, c); break;
    case KIR_S_STORE: in_place_expr(k, st->index, c); in_place_expr(k, st->value, c); break;
    case KIR_S_LET: case KIR_S_ACC_INIT: in_place_expr(k, st->value, c); break;
    case KIR_S_ACC_UPDATE: in_place_expr(k, st->index, c); in_place_expr(k, st->value, c); break;
    default: break;
    }
    if (st->kind == KIR_S_STORE && st->buf == c->out) c->stores++;
    // A loop or branch around the store could run it more than once, or a
    // load after it: only straight-line code inside the loop nest qualifies.
    if (st->kind == KIR_S_IF && c->stores == 0) {
        for (int j = 0; j < st->n_body; j++) in_place_walk(k, st->body[j], c);
        if (c->stores != 0) c->ok = false;
        return;
    }
    for (int j = 0; j < st->n_body && c->ok; j++) in_place_walk(k, st->body[j], c);
}

static int32_t store_index_of(const struct kir_kernel *k, int32_t buf) {
    for (int i = 0; i < k->n_stmts; i++)
        if (k->stmts[i].kind == KIR_S_STORE && k->stmts[i].buf == buf) return k->stmts[i].index;
    return -1;
}

// Rewrites step st so that its kernel stores output buffer `out` into input
// buffer `in` and drops `out`; the step records which output `in` holds.
static void alias_buffers(struct kir_schedule *s, struct kir_step *st, int32_t in, int32_t out) {
    struct kir_kernel *k = s->kernels[st->kernel];
    int32_t v_out = st->bufs[out];
    if (!st->alias) {
        st->alias = xcalloc((size_t)st->n_bufs, sizeof *st->alias);
        for (int b = 0; b < st->n_bufs; b++) st->alias[b] = -1;
    }
    st->alias[in] = v_out;
    k->bufs[in].written = true;
    for (int i = 0; i < k->n_stmts; i++)
        if (k->stmts[i].kind == KIR_S_STORE && k->stmts[i].buf == out) k->stmts[i].buf = in;
    // Buffers after `out` move down one, in the kernel and the step.
    for (int i = 0; i < k->n_exprs; i++)
        if (k->exprs[i].kind == KIR_E_LOAD && k->exprs[i].buf > out) k->exprs[i].buf--;
    for (int i = 0; i < k->n_stmts; i++)
        if (k->stmts[i].kind == KIR_S_STORE && k->stmts[i].buf > out) k->stmts[i].buf--;
    free((char *)k->bufs[out].name);
    for (int b = out; b + 1 < k->n_bufs; b++) {
        k->bufs[b] = k->bufs[b + 1];
        st->bufs[b] = st->bufs[b + 1];
        st->alias[b] = st->alias[b + 1];
    }
    k->n_bufs--;
    st->n_bufs--;
}

// The steps that can fail at run time (the reference kernels' located
// errors) or whose guard may send them there.
static bool step_may_fail(const struct kir_step *st) {
    return st->kind == KIR_STEP_NODE || (st->kind == KIR_STEP_KERNEL && st->guard_count >= 0);
}

static bool step_writes(const struct kir_schedule *s, const struct kir_step *st, const struct itr_graph *g, int32_t v) {
    if (st->kind == KIR_STEP_KERNEL) {
        const struct kir_kernel *k = s->kernels[st->kernel];
        for (int b = 0; b < st->n_bufs; b++)
            if (st->bufs[b] == v && k->bufs[b].written) return true;
        return false;
    }
    const struct itr_node *n = &g->nodes[st->node];
    for (int j = 0; j < n->n_outputs; j++)
        if (n->outputs[j] == v) return true;
    return false;
}

// Training updates in place (docs/kernels.md, "Updates in place"): the
// kernel computing a parameter's (or its optimizer state's) new value
// writes it over the old one when it is the old value's last reader, reads
// it only at the index it writes, before writing, and runs after the loss
// (output 0) is known and after every step that can fail, so that the
// executor can refuse to write anything for a NaN loss and a failed step
// leaves the parameters as they were.
static void place_updates_in_place(struct kir_schedule *s, const struct itr_graph *g) {
    const struct itr_program *p = g->prog;
    if (p->n_updates == 0 || g->n_outputs == 0 || itr_env_flag("ITRC_NO_UPDATES_IN_PLACE")) return;
    int barrier = -1;
    for (int si = 0; si < s->n_steps; si++)
        if (step_may_fail(&s->steps[si]) || step_writes(s, &s->steps[si], g, g->outputs[0])) barrier = si;
    for (int u = 0; u < p->n_updates; u++) {
        int32_t v_out = -1, v_in = -1;
        for (int o = 0; o < g->n_outputs; o++)
            if (strcmp(g->output_names[o], p->updates[u].output) == 0) v_out = g->outputs[o];
        for (int v = 0; v < g->n_values; v++)
            if (g->values[v].kind == ITR_VALUE_PARAM && g->values[v].param == p->updates[u].param) v_in = v;
        if (v_out < 0 || v_in < 0 || g->values[v_out].kind != ITR_VALUE_NODE ||
            !itr_type_equal(&g->values[v_in].type, &g->values[v_out].type))
            continue;
        int listed = 0;
        for (int o = 0; o < g->n_outputs; o++) listed += g->outputs[o] == v_out || g->outputs[o] == v_in;
        if (listed != 1) continue;
        for (int si = barrier + 1; si < s->n_steps; si++) {
            struct kir_step *st = &s->steps[si];
            if (st->kind != KIR_STEP_KERNEL || s->last_step[v_in] != si) continue;
            const struct kir_kernel *k = s->kernels[st->kernel];
            int32_t in = -1, out = -1;
            for (int b = 0; b < st->n_bufs; b++) {
                if (st->bufs[b] == v_in && !k->bufs[b].written && kir_step_alias(st, b) < 0) in = b;
                if (st->bufs[b] == v_out && k->bufs[b].written) out = b;
            }
            if (in < 0 || out < 0) break;
            struct in_place_check c = { in, out, store_index_of(k, out), 0, true };
            in_place_walk(k, k->body, &c);
            if (c.ok && c.stores == 1) alias_buffers(s, st, in, out);
            break;
        }
    }
}

struct kir_schedule *itr_lower_graph(const struct itr_graph *g, bool f64, struct itr_diags *d) {
    struct lower L = { 0 };
    L.g = g;
    L.p = g->prog;
    L.f64 = f64;
    struct kir_schedule *s = xcalloc(1, sizeof *s);
    L.s = s;
    s->f64 = f64;
    s->n_values = g->n_values;
    s->materialised = xcalloc((size_t)g->n_values, sizeof *s->materialised);
    s->last_step = xcalloc((size_t)g->n_values, sizeof *s->last_step);
    L.uses = xcalloc((size_t)g->n_values, sizeof *L.uses);
    L.how = xcalloc((size_t)g->n_nodes, sizeof *L.how);
    L.buf_of = xcalloc((size_t)g->n_values, sizeof *L.buf_of);
    L.touched = xcalloc((size_t)g->n_values, sizeof *L.touched);
    L.row_let = xcalloc((size_t)g->n_nodes + 1, sizeof *L.row_let);
    L.row_owner = xcalloc((size_t)g->n_nodes + 1, sizeof *L.row_owner);
    L.scratch_of = xcalloc((size_t)g->n_nodes + 1, sizeof *L.scratch_of);
    L.column_rows_on = !itr_env_flag("ITRC_NO_COLUMN_ROWS");
    L.sym_size = xcalloc((size_t)L.p->n_symbols + 1, sizeof *L.sym_size);
    L.sym_declared = xcalloc((size_t)L.p->n_symbols + 1, sizeof *L.sym_declared);
    for (int i = 0; i < L.p->n_symbols; i++) {
        L.sym_size[i] = L.p->symbols[i].default_value;
        L.sym_declared[i] = L.p->symbols[i].has_default;
    }
    L.rows = xcalloc((size_t)g->n_nodes + 1, sizeof *L.rows);
    L.row_fail = -1;
    L.sib_of = xcalloc((size_t)g->n_nodes + 1, sizeof *L.sib_of);
    L.sib_let = xcalloc((size_t)g->n_values + 1, sizeof *L.sib_let);
    for (int i = 0; i < g->n_nodes; i++) L.sib_of[i] = -1;
    for (int i = 0; i < g->n_values; i++) L.sib_let[i] = -1;
    for (int i = 0; i < g->n_values; i++) L.buf_of[i] = -1;
    for (int i = 0; i < g->n_nodes; i++) L.row_let[i] = L.row_owner[i] = L.scratch_of[i] = -1;

    for (int i = 0; i < g->n_nodes; i++) {
        L.how[i] = classify(&L, &g->nodes[i]);
        for (int j = 0; j < g->nodes[i].n_inputs; j++) L.uses[g->nodes[i].inputs[j]]++;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        L.uses[g->outputs[i]]++;
        s->materialised[g->outputs[i]] = true;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        int32_t m = swap_last_two_source(&L, g->nodes[i].outputs[0]);
        if (m < 0 || g->values[m].kind != ITR_VALUE_NODE || L.uses[m] != 1 || s->materialised[m]) continue;
        int32_t mn = g->values[m].node;
        if (g->nodes[mn].op != ITR_OP_MATMUL || !itr_dtype_is_float(g->values[m].type.dtype)) continue;
        L.how[i] = HOW_GEMM_T;
        L.how[mn] = HOW_NONE;
    }
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind != ITR_VALUE_NODE) s->materialised[i] = true;
    // Node results that are not inlined, and operands of NODE steps.
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        if (L.how[i] != HOW_INLINE && L.how[i] != HOW_NONE)
            for (int j = 0; j < n->n_outputs; j++) s->materialised[n->outputs[j]] = true;
        if (L.how[i] == HOW_NODE)
            for (int j = 0; j < n->n_inputs; j++) s->materialised[n->inputs[j]] = true;
    }
    // Each value's consumer nodes (a node reading a value twice is listed
    // twice).
    int32_t *cons_start = xcalloc((size_t)g->n_values + 1, sizeof *cons_start);
    int32_t n_cons = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_inputs; j++) cons_start[g->nodes[i].inputs[j] + 1]++, n_cons++;
    for (int v = 0; v < g->n_values; v++) cons_start[v + 1] += cons_start[v];
    int32_t *cons = xcalloc((size_t)n_cons + 1, sizeof *cons), *fill = xcalloc((size_t)g->n_values + 1, sizeof *fill);
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_inputs; j++) {
            int32_t v = g->nodes[i].inputs[j];
            cons[cons_start[v] + fill[v]++] = i;
        }
    free(fill);
    bool *is_output = xcalloc((size_t)g->n_values, sizeof *is_output);
    for (int i = 0; i < g->n_outputs; i++) is_output[g->outputs[i]] = true;
    // Row reductions, which their readers' kernels compute per row (a
    // reduction that later turns out to be needed in memory is lowered as
    // its own kernel after all).
    // ITRC_NO_ROW_KERNELS=1 turns them off, to measure what they bring.
    bool rows_on = !itr_env_flag("ITRC_NO_ROW_KERNELS");
    for (int i = 0; i < g->n_nodes && rows_on; i++)
        if (L.how[i] == HOW_REDUCE && row_candidate(&L, i, is_output, cons_start, cons)) {
            L.how[i] = HOW_ROW;
            s->materialised[g->nodes[i].outputs[0]] = false;
        }
    // ITRC_NO_DISJOINT_SLICES=1 stores values read as disjoint slices (A/B).
    bool disjoint_on = !itr_env_flag("ITRC_NO_DISJOINT_SLICES");
    // Sharing and contraction operands, in topological order so that
    // cheap() sees its operands' decisions.
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        if (L.how[i] == HOW_INLINE && L.uses[n->outputs[0]] > 1 && !cheap(&L, n->outputs[0]) &&
            !row_shared(&L, n->outputs[0], cons_start, cons) &&
            !(disjoint_on && read_as_disjoint_slices(&L, n->outputs[0], cons_start, cons)))
            s->materialised[n->outputs[0]] = true;
        if ((L.how[i] == HOW_MATMUL || L.how[i] == HOW_NONE) && n->op == ITR_OP_MATMUL &&
            itr_dtype_is_float(g->values[n->outputs[0]].type.dtype)) {
            // the library reads operands in memory: materialise what is not
            // (the source of a last-two-axes transpose, or the operand)
            for (int j = 0; j < n->n_inputs; j++) {
                int32_t src, view;
                bool tr;
                if (gemm_operand(&L, n->inputs[j], &src, &tr, &view)) continue;
                int32_t t = swap_last_two_source(&L, n->inputs[j]);
                s->materialised[t >= 0 ? t : n->inputs[j]] = true;
            }
        } else if (L.how[i] == HOW_MATMUL) {
            for (int j = 0; j < n->n_inputs; j++)
                if (!cheap(&L, n->inputs[j])) s->materialised[n->inputs[j]] = true;
        }
    }
    // A normalisation's numerator is computed in the division's kernel only
    // when that kernel exists: the division stored
    for (int i = 0; i < g->n_nodes; i++)
        if (L.scratch_of[i] >= 0 && !s->materialised[g->nodes[i].outputs[0]]) {
            s->materialised[L.scratch_of[i]] = true;
            L.scratch_of[i] = -1;
        }
    if (!itr_env_flag("ITRC_NO_SIBLING_KERNELS")) plan_siblings(&L, cons_start, cons);
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        switch (L.how[i]) {
        case HOW_NODE:
            add_node_step(&L, i);
            if (n->op == ITR_OP_SCAN) {
                const struct itr_attr *ba = itr_node_attr(n, "body");
                if (ba && ba->kind == ITR_ATTR_GRAPH && ba->u.graph) {
                    s->steps[s->n_steps - 1].body = itr_lower_graph(ba->u.graph, f64, d);
                    if (!s->steps[s->n_steps - 1].body) goto fail;
                }
            }
            break;
        case HOW_ROW:
            // needed in memory after all (a contraction operand)
            if (s->materialised[n->outputs[0]]) {
                L.how[i] = HOW_REDUCE;
                lower_node(&L, i);
            }
            break;
        case HOW_REDUCE: lower_node(&L, i); break;
        case HOW_MATMUL:
            if (itr_dtype_is_float(g->values[n->outputs[0]].type.dtype)) add_gemm_step(&L, i);
            else lower_node(&L, i);
            break;
        case HOW_GEMM_T: add_gemm_t_step(&L, i); break;
        case HOW_NONE: break;
        case HOW_INLINE:
            if (L.sib_of[i] >= 0) {
                const struct sibling_group *G = &L.sibs[L.sib_of[i]];
                if (G->nodes[G->n - 1] == i) lower_siblings(&L, L.sib_of[i], is_output, cons_start, cons);
            } else if (s->materialised[n->outputs[0]]) {
                lower_node(&L, i);
            }
            break;
        }
    }
    // Liveness: the last step reading each value.
    for (int i = 0; i < g->n_values; i++) s->last_step[i] = -1;
    for (int si = 0; si < s->n_steps; si++) {
        const struct kir_step *st = &s->steps[si];
        if (st->kind == KIR_STEP_NODE) {
            const struct itr_node *n = &g->nodes[st->node];
            for (int j = 0; j < n->n_inputs; j++) s->last_step[n->inputs[j]] = si;
        } else if (st->kind == KIR_STEP_GEMM) {
            s->last_step[st->gemm_a] = si;
            s->last_step[st->gemm_b] = si;
        } else {
            for (int b = 0; b < st->n_bufs; b++) s->last_step[st->bufs[b]] = si;
            // a guarded step may run as its node
            if (st->guard_count >= 0) {
                const struct itr_node *n = &g->nodes[st->guard_node >= 0 ? st->guard_node : st->node];
                for (int j = 0; j < n->n_inputs; j++) s->last_step[n->inputs[j]] = si;
            }
        }
    }
    for (int i = 0; i < g->n_outputs; i++) s->last_step[g->outputs[i]] = s->n_steps;
    place_updates_in_place(s, g);
    if (0) {
    fail:
        kir_schedule_free(s);
        s = NULL;
    }
    free(cons_start);
    free(cons);
    free(is_output);
    free(L.row_let);
    free(L.row_owner);
    free(L.scratch_of);
    free(L.sym_size);
    free(L.sym_declared);
    free(L.rows);
    free(L.sib_of);
    free(L.sib_let);
    free(L.sibs);
    free(L.uses);
    free(L.how);
    free(L.buf_of);
    free(L.touched);
    return s;
}
