// Simplification passes: constant folding, CSE, DCE, exact algebraic
// identities (compiler/passes.h documents what each one does).
//
// Every pass works the same way: it rebuilds each graph node by node through
// the builder API (itr_graph_add_node), mapping old value ids to new ones.
// The builder reruns every shape rule, so a rewrite that broke a type would
// fail here rather than in a later stage, and the new graph is topologically
// ordered by construction. The rebuilt graph then replaces the old one's
// contents in place, so pointers to it (scan bodies) stay valid.
#include "compiler/passes.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "backends/ref/ref.h"
#include "ir/arena.h"
#include "ir/bind.h"

enum { PASS_FOLD = 1, PASS_CSE = 2, PASS_DCE = 4, PASS_IDENT = 8 };

// Operands of a folded node are materialised first (full, iota); this bounds
// what that may cost, separately from the size of the folded result.
#define FOLD_MAX_OPERAND_ELEMENTS (1 << 20)
#define MAX_ROUNDS 32

static void *xcalloc(size_t n, size_t size) {
    void *q = calloc(n ? n : 1, size);
    if (!q) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return q;
}

// ------------------------------------------------------------ small helpers

static bool type_dims_const(const struct itr_program *p, const struct itr_type *t, int64_t *shape, int64_t *numel) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        int64_t v;
        if (!itr_dim_is_const(p, t->dims[i], &v) || v < 0) return false;
        shape[i] = v;
        if (v != 0 && n > INT64_MAX / v) return false;
        n *= v;
    }
    *numel = n;
    return true;
}

// Generated value names ("_12") are not kept across a rebuild: they would
// collide with the builder's fresh ones and collect suffixes.
static bool is_generated_name(const char *s) {
    if (!s || s[0] != '_' || !s[1]) return true;
    for (const char *c = s + 1; *c; c++)
        if (*c < '0' || *c > '9') return false;
    return true;
}

static bool tensor_equal(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (a == b) return true;
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    // Bitwise: 0.0 and -0.0 are different constants, and a NaN equals itself.
    return memcmp(a->data, b->data, itr_tensor_nbytes(a)) == 0;
}

static bool attr_equal(const struct itr_attr *a, const struct itr_attr *b) {
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case ITR_ATTR_NONE: return true;
    case ITR_ATTR_INT: case ITR_ATTR_BOOL: return a->u.i == b->u.i;
    case ITR_ATTR_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
    case ITR_ATTR_DTYPE: return a->u.dtype == b->u.dtype;
    case ITR_ATTR_STR:
        return a->u.s == b->u.s || (a->u.s && b->u.s && strcmp(a->u.s, b->u.s) == 0);
    case ITR_ATTR_INTS:
        return a->u.ints.n == b->u.ints.n &&
               (a->u.ints.n == 0 || memcmp(a->u.ints.v, b->u.ints.v, (size_t)a->u.ints.n * sizeof *a->u.ints.v) == 0);
    case ITR_ATTR_FLOATS:
        return a->u.floats.n == b->u.floats.n &&
               (a->u.floats.n == 0 ||
                memcmp(a->u.floats.v, b->u.floats.v, (size_t)a->u.floats.n * sizeof *a->u.floats.v) == 0);
    case ITR_ATTR_DIMS:   // dims are hash-consed: equal handles = equal expressions
        return a->u.dims.n == b->u.dims.n &&
               (a->u.dims.n == 0 || memcmp(a->u.dims.v, b->u.dims.v, (size_t)a->u.dims.n * sizeof *a->u.dims.v) == 0);
    case ITR_ATTR_GRAPH: return a->u.graph == b->u.graph;
    case ITR_ATTR_TENSOR: return tensor_equal(a->u.tensor, b->u.tensor);
    default: return false;
    }
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t attr_hash(const struct itr_attr *a) {
    uint64_t h = (uint64_t)a->kind;
    switch (a->kind) {
    case ITR_ATTR_INT: case ITR_ATTR_BOOL: return mix(h, (uint64_t)a->u.i);
    case ITR_ATTR_FLOAT: { uint64_t bits; memcpy(&bits, &a->u.f, sizeof bits); return mix(h, bits); }
    case ITR_ATTR_DTYPE: return mix(h, (uint64_t)a->u.dtype);
    case ITR_ATTR_STR: return a->u.s ? mix(h, XXH64(a->u.s, strlen(a->u.s), 0)) : h;
    case ITR_ATTR_INTS: return mix(h, XXH64(a->u.ints.v, (size_t)a->u.ints.n * sizeof *a->u.ints.v, 0));
    case ITR_ATTR_FLOATS: return mix(h, XXH64(a->u.floats.v, (size_t)a->u.floats.n * sizeof *a->u.floats.v, 0));
    case ITR_ATTR_DIMS: return mix(h, XXH64(a->u.dims.v, (size_t)a->u.dims.n * sizeof *a->u.dims.v, 0));
    case ITR_ATTR_GRAPH: return mix(h, (uint64_t)(uintptr_t)a->u.graph);
    case ITR_ATTR_TENSOR:
        if (!a->u.tensor) return h;
        return mix(mix(h, (uint64_t)a->u.tensor->dtype), XXH64(a->u.tensor->data, itr_tensor_nbytes(a->u.tensor), 0));
    default: return h;
    }
}

static uint64_t node_key_hash(enum itr_op op, const int32_t *ins, int n_in, const struct itr_attr *attrs) {
    uint64_t h = mix(0x243f6a8885a308d3ull, (uint64_t)op);
    h = mix(h, (uint64_t)n_in);
    for (int i = 0; i < n_in; i++) h = mix(h, (uint64_t)(uint32_t)ins[i]);
    const struct itr_op_info *info = itr_op_info(op);
    for (int k = 0; k < info->n_attrs; k++) h = mix(h, attr_hash(&attrs[k]));
    return h;
}

// ------------------------------------------------------------ sets of tensor pointers

struct ptrset { const void **v; int n, cap; };

static int ptr_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(const void *const *)a, y = (uintptr_t)*(const void *const *)b;
    return x < y ? -1 : x > y;
}

static void collect_tensors(const struct itr_graph *g, struct ptrset *s) {
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        const struct itr_op_info *info = itr_op_info(n->op);
        for (int k = 0; k < info->n_attrs; k++)
            if (n->attrs[k].kind == ITR_ATTR_TENSOR && n->attrs[k].u.tensor) {
                if (s->n == s->cap) {
                    s->cap = s->cap ? 2 * s->cap : 16;
                    const void **nv = realloc(s->v, (size_t)s->cap * sizeof *nv);
                    if (!nv) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
                    s->v = nv;
                }
                s->v[s->n++] = n->attrs[k].u.tensor;
            }
    }
    if (s->n > 1) qsort(s->v, (size_t)s->n, sizeof *s->v, ptr_cmp);
}

static bool ptrset_has(const struct ptrset *s, const void *p) {
    return s->n && bsearch(&p, s->v, (size_t)s->n, sizeof *s->v, ptr_cmp) != NULL;
}

// Frees the tensors of graph `from` that graph `keep` does not hold.
static void free_tensors_not_in(const struct itr_graph *from, const struct itr_graph *keep) {
    struct ptrset a = { 0 }, b = { 0 };
    collect_tensors(from, &a);
    collect_tensors(keep, &b);
    for (int i = 0; i < a.n; i++)
        if (!ptrset_has(&b, a.v[i]) && (i == 0 || a.v[i] != a.v[i - 1]))
            itr_tensor_free((struct itr_tensor *)a.v[i]);
    free(a.v);
    free(b.v);
}

// ------------------------------------------------------------ the rebuild

struct rebuild {
    struct itr_program *p;
    const struct itr_graph *g;   // old graph (read only)
    struct itr_graph *ng;        // graph under construction
    unsigned passes;
    struct itr_simplify_stats *st;
    struct itr_diags *d;
    int32_t *map;                // old value id -> new value id
    int cap;                     // bound on the new graph's value count
    int32_t *cse; size_t cse_mask;   // open addressing over new node ids, -1 empty
    uint64_t *cse_hash;              // per new node
    // Materialised full/iota results per new value, as the interpreter
    // computes them in f32 mode (mat32) and in f64 mode (mat64): a full's
    // double value is rounded to f32 in the one and exact in the other.
    struct itr_tensor **mat32, **mat64;
    struct itr_dim_bindings dims;
    enum itr_phase phase;        // of the old node being rebuilt: its replacements inherit it
};

static const struct itr_node *producer(const struct rebuild *rb, int32_t v) {
    const struct itr_value *val = &rb->ng->values[v];
    return val->kind == ITR_VALUE_NODE ? &rb->ng->nodes[val->node] : NULL;
}

static const struct itr_type *new_type(const struct rebuild *rb, int32_t v) { return &rb->ng->values[v].type; }

static bool nodes_equal(const struct itr_node *n, enum itr_op op, const int32_t *ins, int n_in,
                        const struct itr_attr *attrs) {
    if (n->op != op || n->n_inputs != n_in) return false;
    for (int i = 0; i < n_in; i++)
        if (n->inputs[i] != ins[i]) return false;
    const struct itr_op_info *info = itr_op_info(op);
    for (int k = 0; k < info->n_attrs; k++)
        if (!attr_equal(&n->attrs[k], &attrs[k])) return false;
    return true;
}

// Appends a node to the new graph, or with CSE on, finds an equal node
// already there. outs receives the results; *added says which happened.
// attrs must be complete (one per schema entry).
static bool emit(struct rebuild *rb, enum itr_op op, const int32_t *ins, int n_in, const struct itr_attr *attrs,
                 struct itr_loc loc, const char *scope, int32_t *outs, bool *added) {
    uint64_t h = 0;
    size_t slot = 0;
    *added = false;
    if (rb->passes & PASS_CSE) {
        h = node_key_hash(op, ins, n_in, attrs);
        slot = (size_t)h & rb->cse_mask;
        while (rb->cse[slot] >= 0) {
            const struct itr_node *n = &rb->ng->nodes[rb->cse[slot]];
            if (rb->cse_hash[rb->cse[slot]] == h && nodes_equal(n, op, ins, n_in, attrs)) {
                for (int i = 0; i < n->n_outputs; i++) outs[i] = n->outputs[i];
                rb->st->merged++;
                return true;
            }
            slot = (slot + 1) & rb->cse_mask;
        }
    }
    if (!itr_graph_add_node(rb->ng, op, ins, n_in, attrs, loc, scope, outs, rb->d)) {
        itr_diag_error(rb->d, loc, "internal error: simplification produced an invalid '%s' node in graph '%s'",
                       itr_op_name(op), rb->g->name);
        return false;
    }
    *added = true;
    int32_t id = rb->ng->n_nodes - 1;
    rb->ng->nodes[id].phase = rb->phase;
    if (rb->passes & PASS_CSE) {
        if ((size_t)id < rb->cse_mask) {   // table sized for every node the rebuild can add
            rb->cse[slot] = id;
            rb->cse_hash[id] = h;
        }
    }
    return true;
}

// ---- constants

// Folded nodes have constant shapes; each evaluation starts from no bindings
// so that one node's (defaulted) symbols never leak into the next.
static void fresh_bindings(struct rebuild *rb) {
    for (int i = 0; i < rb->dims.n; i++) rb->dims.bound[i] = false;
}

// The value of constant v as the interpreter sees it in a run of the given
// precision (NULL: not a constant, or too large to materialise). A
// `constant` holds its tensor in the declared dtype, so both precisions read
// the same elements (f64 mode widens f32 ones exactly).
static struct itr_tensor *constant_of(struct rebuild *rb, int32_t v, bool f64) {
    const struct itr_node *n = producer(rb, v);
    if (!n) return NULL;
    if (n->op == ITR_OP_CONSTANT) {
        const struct itr_attr *a = itr_node_attr(n, "value");
        return a && a->kind == ITR_ATTR_TENSOR ? a->u.tensor : NULL;
    }
    if (n->op != ITR_OP_FULL && n->op != ITR_OP_IOTA) return NULL;
    if (v >= rb->cap) return NULL;
    struct itr_tensor **mat = f64 ? rb->mat64 : rb->mat32;
    if (mat[v]) return mat[v];
    int64_t shape[ITR_MAX_RANK], numel;
    if (!type_dims_const(rb->p, new_type(rb, v), shape, &numel) || numel > FOLD_MAX_OPERAND_ELEMENTS) return NULL;
    struct itr_diags scratch;
    itr_diags_init(&scratch);
    struct itr_ref_options opt = { .f64 = f64 };
    struct itr_tensor *out[1] = { NULL }, *none[1] = { NULL };
    fresh_bindings(rb);
    bool ok = itr_ref_run_node(rb->ng, n, none, &rb->dims, &opt, out, &scratch);
    itr_diags_free(&scratch);
    if (!ok) return NULL;
    mat[v] = out[0];
    return out[0];
}

// Is v a constant whose every element equals x (0 or 1 here)?
static bool is_splat(struct rebuild *rb, int32_t v, double x) {
    const struct itr_node *n = producer(rb, v);
    if (!n) return false;
    if (n->op == ITR_OP_FULL) return itr_node_attr_float(n, "value") == x;
    if (n->op != ITR_OP_CONSTANT) return false;
    const struct itr_attr *a = itr_node_attr(n, "value");
    if (!a || a->kind != ITR_ATTR_TENSOR || !a->u.tensor) return false;
    const struct itr_tensor *t = a->u.tensor;
    int64_t cnt = itr_tensor_numel(t);
    for (int64_t i = 0; i < cnt; i++)
        if (itr_tensor_get(t, i) != x) return false;
    return true;
}

// A folded result whose elements are all bitwise equal, and exactly
// representable as the double `full` stores, is written as a `full`.
static bool splat_value(const struct itr_tensor *t, double *value) {
    int64_t n = itr_tensor_numel(t);
    size_t es = itr_dtype_size(t->dtype);
    if (n < 2) return false;
    const unsigned char *b = t->data;
    for (int64_t i = 1; i < n; i++)
        if (memcmp(b, b + (size_t)i * es, es) != 0) return false;
    double v = itr_tensor_get(t, 0);
    if (t->dtype == ITR_I64) {
        int64_t x = ((const int64_t *)t->data)[0];
        if (x > (INT64_C(1) << 53) || x < -(INT64_C(1) << 53)) return false;
    }
    if (v != v) return false;   // a NaN payload would not survive the round trip
    *value = v;
    return true;
}

static bool same_bits_f64(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }
static bool same_bits_f32(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

// How one folded result is written, so that a run of either precision reads
// what it would have computed itself (passes.h). t32 is the node's result in
// an f32-mode run (the declared dtype), t64 in an f64-mode run (f64 where
// the declared dtype is f32, else the same dtype). The interpreter runs
//   full(value v, f32)   as (float)v in f32 mode and v in f64 mode,
//   constant(T, f32)     as T in f32 mode and T widened exactly in f64 mode,
//   anything not f32     identically in both modes,
// so: a `full` holding the f64 result when its elements are all equal and
// it rounds to the f32 result; else a `constant` holding the f32 result
// when the f64 result is that exactly; else nothing (false), and the node
// stays in the graph to be computed by each run in its own precision.
// On true, *is_full says which; *value is the full's value.
static bool fold_form(const struct itr_tensor *t32, const struct itr_tensor *t64, bool *is_full, double *value) {
    int64_t n = itr_tensor_numel(t32);
    if (itr_tensor_numel(t64) != n) return false;
    if (t32->dtype != ITR_F32) {
        if (t64->dtype != t32->dtype || memcmp(t32->data, t64->data, itr_tensor_nbytes(t32)) != 0) return false;
        *is_full = splat_value(t32, value);
        return true;
    }
    if (t64->dtype != ITR_F64) return false;
    const float *x = t32->data;
    const double *y = t64->data;
    bool exact = true;
    for (int64_t i = 0; i < n && exact; i++) exact = same_bits_f64((double)x[i], y[i]);
    // A scalar stays a `constant` where that is exact, as it did before the
    // f64 check; otherwise, and for any larger splat, try the `full`.
    if (n >= 2 || (n == 1 && !exact)) {
        double v = y[0];
        bool full = v == v;   // a NaN payload would not survive the round trip
        for (int64_t i = 0; i < n && full; i++) full = same_bits_f64(y[i], v) && same_bits_f32((float)v, x[i]);
        if (full) {
            *is_full = true;
            *value = v;
            return true;
        }
    }
    *is_full = false;
    return exact;
}

// Emits the node that stands for folded tensor t (taking ownership of t):
// a `full` of value v when is_full, else a `constant` holding t.
static const int32_t no_operands[1] = { -1 };
static bool emit_constant(struct rebuild *rb, struct itr_tensor *t, bool is_full, double v, const struct itr_type *type,
                          struct itr_loc loc, const char *scope, int32_t *out) {
    bool added;
    struct itr_attr *a;
    if (is_full) {
        a = itr_attrs_default(rb->p, ITR_OP_FULL);
        int kv = itr_op_attr_index(ITR_OP_FULL, "value"), ks = itr_op_attr_index(ITR_OP_FULL, "shape"),
            kd = itr_op_attr_index(ITR_OP_FULL, "dtype");
        a[kv].kind = ITR_ATTR_FLOAT;
        a[kv].u.f = v;
        a[ks].kind = ITR_ATTR_DIMS;
        a[ks].u.dims.n = type->rank;
        a[ks].u.dims.v = itr_arena_memdup(rb->p->arena, type->dims, (size_t)(type->rank ? type->rank : 1) * sizeof(itr_dim));
        a[kd].kind = ITR_ATTR_DTYPE;
        a[kd].u.dtype = t->dtype;
        itr_tensor_free(t);
        return emit(rb, ITR_OP_FULL, no_operands, 0, a, loc, scope, out, &added);
    }
    a = itr_attrs_default(rb->p, ITR_OP_CONSTANT);
    int kv = itr_op_attr_index(ITR_OP_CONSTANT, "value");
    a[kv].kind = ITR_ATTR_TENSOR;
    a[kv].u.tensor = t;
    if (!emit(rb, ITR_OP_CONSTANT, no_operands, 0, a, loc, scope, out, &added)) { itr_tensor_free(t); return false; }
    if (!added) itr_tensor_free(t);   // an equal constant already existed
    return true;
}

// Runs n on its constant operands in one precision into out; false when an
// operand is not a constant or the node fails on them. A node that fails on
// constant operands (an integer division by zero, an index out of range) is
// left for the run to report with its full context; folding never turns it
// into a compile error.
static bool eval_folded(struct rebuild *rb, const struct itr_node *n, const int32_t *ins, bool f64,
                        struct itr_tensor **in, struct itr_tensor **out) {
    for (int i = 0; i < n->n_inputs; i++)
        if (!(in[i] = constant_of(rb, ins[i], f64))) return false;
    struct itr_diags scratch;
    itr_diags_init(&scratch);
    struct itr_ref_options opt = { .f64 = f64 };
    fresh_bindings(rb);
    bool ok = itr_ref_run_node(rb->g, n, in, &rb->dims, &opt, out, &scratch);
    itr_diags_free(&scratch);
    return ok;
}

// 1: folded (outputs mapped), 0: not foldable, -1: internal error.
static int try_fold(struct rebuild *rb, const struct itr_node *n, const int32_t *ins) {
    const struct itr_op_info *info = itr_op_info(n->op);
    if (info->cls == ITR_CLASS_SOURCE || info->cls == ITR_CLASS_SCAN || n->n_inputs == 0) return 0;
    for (int i = 0; i < n->n_outputs; i++) {
        int64_t shape[ITR_MAX_RANK], numel;
        if (!type_dims_const(rb->p, &rb->g->values[n->outputs[i]].type, shape, &numel) || numel > ITR_FOLD_MAX_ELEMENTS)
            return 0;
    }
    int no = n->n_outputs;
    struct itr_tensor *in_stack[8], **in = n->n_inputs <= 8 ? in_stack : xcalloc((size_t)n->n_inputs, sizeof *in);
    struct itr_tensor *stack32[16] = { 0 }, *stack64[16] = { 0 };
    struct itr_tensor **out32 = no <= 16 ? stack32 : xcalloc((size_t)no, sizeof *out32);
    struct itr_tensor **out64 = no <= 16 ? stack64 : xcalloc((size_t)no, sizeof *out64);
    bool form_full[16], *is_full = no <= 16 ? form_full : xcalloc((size_t)no, sizeof *is_full);
    double form_value[16], *value = no <= 16 ? form_value : xcalloc((size_t)no, sizeof *value);
    // Evaluated in both precisions, since the plan may run in either (passes.h).
    int result = eval_folded(rb, n, ins, false, in, out32) && eval_folded(rb, n, ins, true, in, out64) ? 1 : 0;
    for (int i = 0; i < no && result == 1; i++) {
        const struct itr_value *ov = &rb->g->values[n->outputs[i]];
        enum itr_dtype dt64 = ov->type.dtype == ITR_F32 ? ITR_F64 : ov->type.dtype;
        if (!out32[i] || out32[i]->dtype != ov->type.dtype || !out64[i] || out64[i]->dtype != dt64) {
            itr_diag_error(rb->d, n->loc, "internal error: folding '%s' gave a result of the wrong dtype",
                           itr_op_name(n->op));
            result = -1;
        } else if (!fold_form(out32[i], out64[i], &is_full[i], &value[i])) {
            rb->st->unfolded_precision++;
            result = 0;
        }
    }
    for (int i = 0; i < no && result == 1; i++) {
        int32_t nv;
        const struct itr_value *ov = &rb->g->values[n->outputs[i]];
        struct itr_tensor *t = out32[i];
        out32[i] = NULL;
        if (!emit_constant(rb, t, is_full[i], value[i], &ov->type, n->loc, n->scope, &nv)) { result = -1; break; }
        rb->map[n->outputs[i]] = nv;
        if (!is_generated_name(ov->name) && rb->ng->values[nv].kind == ITR_VALUE_NODE &&
            is_generated_name(rb->ng->values[nv].name))
            itr_graph_name_value(rb->ng, nv, ov->name);
    }
    if (result == 1) rb->st->folded++;
    for (int i = 0; i < no; i++) {
        itr_tensor_free(out32[i]);
        itr_tensor_free(out64[i]);
    }
    if (in != in_stack) free(in);
    if (out32 != stack32) { free(out32); free(out64); free(is_full); free(value); }
    return result;
}

// ---- identities

static bool perm_of(const struct itr_node *n, int rank, int *perm) {
    const struct itr_attr *a = itr_node_attr(n, "perm");
    if (!a || a->kind == ITR_ATTR_NONE) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return true;
    }
    if (a->kind != ITR_ATTR_INTS || a->u.ints.n != rank) return false;
    for (int i = 0; i < rank; i++)
        if (!itr_axis_normalize(a->u.ints.v[i], rank, &perm[i])) return false;
    return true;
}

static bool perm_is_identity(const int *perm, int rank) {
    for (int i = 0; i < rank; i++)
        if (perm[i] != i) return false;
    return true;
}

// 1: rewritten (output mapped), 0: no identity applies, -1: internal error.
static int try_identity(struct rebuild *rb, const struct itr_node *n, const int32_t *ins) {
    if (n->n_outputs != 1) return 0;
    const struct itr_type *ot = &rb->g->values[n->outputs[0]].type;
    int32_t x = -1;
    switch (n->op) {
    case ITR_OP_IDENTITY:
        x = ins[0];
        break;
    case ITR_OP_CAST:
        x = ins[0];   // the type check below keeps only casts to x's own dtype
        break;
    case ITR_OP_NEG: {
        const struct itr_node *pn = producer(rb, ins[0]);
        if (pn && pn->op == ITR_OP_NEG) x = pn->inputs[0];
        break;
    }
    case ITR_OP_ADD:
        if (is_splat(rb, ins[1], 0.0) && itr_type_equal(new_type(rb, ins[0]), ot)) x = ins[0];
        else if (is_splat(rb, ins[0], 0.0) && itr_type_equal(new_type(rb, ins[1]), ot)) x = ins[1];
        break;
    case ITR_OP_SUB:
        if (is_splat(rb, ins[1], 0.0)) x = ins[0];
        break;
    case ITR_OP_MUL:
        if (is_splat(rb, ins[1], 1.0) && itr_type_equal(new_type(rb, ins[0]), ot)) x = ins[0];
        else if (is_splat(rb, ins[0], 1.0) && itr_type_equal(new_type(rb, ins[1]), ot)) x = ins[1];
        break;
    case ITR_OP_DIV:
        if (is_splat(rb, ins[1], 1.0)) x = ins[0];
        break;
    case ITR_OP_RESHAPE: case ITR_OP_EXPAND: case ITR_OP_SQUEEZE: case ITR_OP_UNSQUEEZE:
        x = ins[0];
        break;
    case ITR_OP_CONCAT:
        if (n->n_inputs == 1) x = ins[0];
        break;
    case ITR_OP_PAD: {
        const struct itr_attr *a = itr_node_attr(n, "pads");
        bool zero = a && a->kind == ITR_ATTR_INTS;
        for (int i = 0; zero && i < a->u.ints.n; i++)
            if (a->u.ints.v[i] != 0) zero = false;
        if (zero) x = ins[0];
        break;
    }
    case ITR_OP_TRANSPOSE: {
        int rank = new_type(rb, ins[0])->rank, p2[ITR_MAX_RANK], p1[ITR_MAX_RANK], q[ITR_MAX_RANK];
        if (!perm_of(n, rank, p2)) return 0;
        if (perm_is_identity(p2, rank)) { x = ins[0]; break; }
        const struct itr_node *pn = producer(rb, ins[0]);
        if (!pn || pn->op != ITR_OP_TRANSPOSE) return 0;
        int32_t src = pn->inputs[0];
        if (!perm_of(pn, rank, p1)) return 0;
        // y = transpose(src, p1): y.dim[i] = src.dim[p1[i]]; z = transpose(y, p2):
        // z.dim[i] = y.dim[p2[i]] = src.dim[p1[p2[i]]].
        for (int i = 0; i < rank; i++) q[i] = p1[p2[i]];
        if (perm_is_identity(q, rank)) { x = src; break; }
        struct itr_attr *a = itr_attrs_default(rb->p, ITR_OP_TRANSPOSE);
        int k = itr_op_attr_index(ITR_OP_TRANSPOSE, "perm");
        a[k].kind = ITR_ATTR_INTS;
        a[k].u.ints.n = rank;
        a[k].u.ints.v = itr_arena_alloc(rb->p->arena, (size_t)(rank ? rank : 1) * sizeof(int64_t));
        for (int i = 0; i < rank; i++) a[k].u.ints.v[i] = q[i];
        int32_t out;
        bool added;
        if (!emit(rb, ITR_OP_TRANSPOSE, &src, 1, a, n->loc, n->scope, &out, &added)) return -1;
        if (!itr_type_equal(new_type(rb, out), ot)) {
            itr_diag_error(rb->d, n->loc, "internal error: composing two transposes changed the result type");
            return -1;
        }
        rb->map[n->outputs[0]] = out;
        rb->st->rewritten++;
        return 1;
    }
    default:
        return 0;
    }
    if (x < 0 || !itr_type_equal(new_type(rb, x), ot)) return 0;
    rb->map[n->outputs[0]] = x;
    rb->st->rewritten++;
    return 1;
}

// ---- liveness

static void liveness(const struct itr_graph *g, bool *live_value, bool *live_node) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] >= 0 && g->outputs[i] < g->n_values) live_value[g->outputs[i]] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const struct itr_node *n = &g->nodes[i];
        bool live = false;
        for (int k = 0; k < n->n_outputs && !live; k++) live = live_value[n->outputs[k]];
        live_node[i] = live;
        if (live)
            for (int k = 0; k < n->n_inputs; k++) live_value[n->inputs[k]] = true;
    }
}

// Rebuilds one graph with the given passes enabled.
// ---- scans that another scan subsumes

static bool bodies_match(const struct itr_graph *a, const struct itr_graph *b, bool prefix);

// Operand x of body a and operand y of body b are the same value, given the
// correspondence map built so far (parameters match by parameter).
static bool same_operand(const struct itr_graph *a, const struct itr_graph *b, const int32_t *map, int32_t x, int32_t y) {
    const struct itr_value *va = &a->values[x], *vb = &b->values[y];
    if (va->kind == ITR_VALUE_PARAM) return vb->kind == ITR_VALUE_PARAM && va->param == vb->param;
    return map[x] == y;
}

// Body b computes everything body a does, node for node: the same inputs,
// the same nodes in the same order, and a's outputs as b's first ones (all
// of them, with prefix false). The record scan that a scan's gradient adds
// (compiler/grad_scan.c) is a copy of the forward body with extra outputs,
// and the passes treat both copies alike, so this structural test finds it.
static bool bodies_match(const struct itr_graph *a, const struct itr_graph *b, bool prefix) {
    if (a == b) return true;
    if (a->n_inputs != b->n_inputs || a->n_nodes != b->n_nodes || a->n_outputs > b->n_outputs) return false;
    if (!prefix && a->n_outputs != b->n_outputs) return false;
    int32_t *map = xcalloc((size_t)a->n_values + 1, sizeof *map);
    for (int i = 0; i < a->n_values; i++) map[i] = -1;
    bool ok = true;
    for (int i = 0; i < a->n_inputs && ok; i++) {
        ok = itr_type_equal(&a->values[a->inputs[i]].type, &b->values[b->inputs[i]].type);
        map[a->inputs[i]] = b->inputs[i];
    }
    for (int i = 0; i < a->n_nodes && ok; i++) {
        const struct itr_node *x = &a->nodes[i], *y = &b->nodes[i];
        ok = x->op == y->op && x->n_inputs == y->n_inputs && x->n_outputs == y->n_outputs;
        for (int k = 0; ok && k < x->n_inputs; k++) ok = same_operand(a, b, map, x->inputs[k], y->inputs[k]);
        const struct itr_op_info *info = itr_op_info(x->op);
        for (int k = 0; ok && k < info->n_attrs; k++) {
            const struct itr_attr *ax = &x->attrs[k], *ay = &y->attrs[k];
            ok = ax->kind == ITR_ATTR_GRAPH && ay->kind == ITR_ATTR_GRAPH ? bodies_match(ax->u.graph, ay->u.graph, false)
                                                                        : attr_equal(ax, ay);
        }
        for (int k = 0; ok && k < x->n_outputs; k++) {
            ok = itr_type_equal(&a->values[x->outputs[k]].type, &b->values[y->outputs[k]].type);
            map[x->outputs[k]] = y->outputs[k];
        }
    }
    for (int k = 0; ok && k < a->n_outputs; k++) ok = same_operand(a, b, map, a->outputs[k], b->outputs[k]);
    free(map);
    return ok;
}

// subst[i] = j when scan node j computes everything scan node i does (same
// operands and loop, a body with more outputs): node i's results are then
// node j's first results, and one loop runs where two did. -1 elsewhere.
static void find_subsumed_scans(const struct itr_graph *g, const bool *live_node, int32_t *subst) {
    for (int i = 0; i < g->n_nodes; i++) subst[i] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *x = &g->nodes[i];
        if (x->op != ITR_OP_SCAN || (live_node && !live_node[i])) continue;
        for (int j = i + 1; j < g->n_nodes && subst[i] < 0; j++) {
            const struct itr_node *y = &g->nodes[j];
            if (y->op != ITR_OP_SCAN || (live_node && !live_node[j]) || subst[j] >= 0) continue;
            if (x->n_inputs != y->n_inputs || x->n_outputs > y->n_outputs) continue;
            bool same = true;
            for (int k = 0; same && k < x->n_inputs; k++) same = x->inputs[k] == y->inputs[k];
            const struct itr_op_info *info = itr_op_info(ITR_OP_SCAN);
            for (int k = 0; same && k < info->n_attrs; k++)
                same = x->attrs[k].kind == ITR_ATTR_GRAPH ? y->attrs[k].kind == ITR_ATTR_GRAPH &&
                                                                bodies_match(x->attrs[k].u.graph, y->attrs[k].u.graph, true)
                                                          : attr_equal(&x->attrs[k], &y->attrs[k]);
            if (same) subst[i] = j;
        }
    }
}

static bool rebuild_graph(struct itr_program *p, struct itr_graph *g, unsigned passes, struct itr_simplify_stats *st,
                          struct itr_diags *d) {
    struct rebuild rb;
    memset(&rb, 0, sizeof rb);
    rb.p = p;
    rb.g = g;
    rb.passes = passes;
    rb.st = st;
    rb.d = d;
    // The new graph has at most one value per old value (every node the
    // rebuild adds stands for an old node's results), plus slack.
    rb.cap = g->n_values + 8;
    rb.map = xcalloc((size_t)g->n_values + 1, sizeof *rb.map);
    for (int i = 0; i < g->n_values; i++) rb.map[i] = -1;
    rb.mat32 = xcalloc((size_t)rb.cap, sizeof *rb.mat32);
    rb.mat64 = xcalloc((size_t)rb.cap, sizeof *rb.mat64);
    size_t tcap = 16;
    while (tcap < 2 * (size_t)rb.cap) tcap *= 2;
    if (passes & PASS_CSE) {
        rb.cse = xcalloc(tcap, sizeof *rb.cse);
        for (size_t i = 0; i < tcap; i++) rb.cse[i] = -1;
        rb.cse_mask = tcap - 1;
        rb.cse_hash = xcalloc(tcap, sizeof *rb.cse_hash);
    }
    itr_bindings_init(&rb.dims, p);
    bool *live_value = NULL, *live_node = NULL;
    if (passes & PASS_DCE) {
        live_value = xcalloc((size_t)g->n_values + 1, sizeof *live_value);
        live_node = xcalloc((size_t)g->n_nodes + 1, sizeof *live_node);
        liveness(g, live_value, live_node);
    }
    // Scans subsumed by a later scan, and the new node each later scan became.
    int32_t *subst = NULL, *merged_into = NULL;
    if (passes & PASS_CSE) {
        subst = xcalloc((size_t)g->n_nodes + 1, sizeof *subst);
        merged_into = xcalloc((size_t)g->n_nodes + 1, sizeof *merged_into);
        find_subsumed_scans(g, live_node, subst);
        for (int i = 0; i < g->n_nodes; i++) merged_into[i] = -1;
    }

    struct itr_graph *ng = itr_arena_alloc(p->arena, sizeof *ng);
    ng->prog = p;
    ng->name = g->name;
    ng->kind = g->kind;
    ng->loc = g->loc;
    ng->train = g->train;
    rb.ng = ng;
    bool ok = true;

    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        rb.map[g->inputs[i]] = itr_graph_add_input(ng, v->name, v->type, v->loc);
    }
    for (int i = 0; i < g->n_values; i++) {
        const struct itr_value *v = &g->values[i];
        if (v->kind != ITR_VALUE_PARAM) continue;
        if (live_value && !live_value[i]) continue;
        rb.map[i] = itr_graph_use_param(ng, v->param);
    }

    int32_t ins_stack[16];
    for (int i = 0; i < g->n_nodes && ok; i++) {
        const struct itr_node *n = &g->nodes[i];
        if (live_node && !live_node[i]) { st->removed++; continue; }
        rb.phase = n->phase;
        int32_t *ins = n->n_inputs <= 16 ? ins_stack : xcalloc((size_t)n->n_inputs, sizeof *ins);
        for (int k = 0; k < n->n_inputs; k++) {
            ins[k] = rb.map[n->inputs[k]];
            if (ins[k] < 0) {
                itr_diag_error(d, n->loc, "internal error: graph '%s': operand %d of '%s' is defined after its use",
                               g->name, k, itr_op_name(n->op));
                ok = false;
            }
        }
        if (ok && merged_into && merged_into[i] >= 0) {   // computed earlier, in place of a scan it subsumes
            const struct itr_node *nn = &ng->nodes[merged_into[i]];
            for (int k = 0; k < n->n_outputs; k++) rb.map[n->outputs[k]] = nn->outputs[k];
            st->merged++;
            if (ins != ins_stack) free(ins);
            continue;
        }
        if (ok && subst && subst[i] >= 0) {
            // Run the subsuming scan here: its operands are this one's, so
            // all defined; this node's results are its first results.
            const struct itr_node *big = &g->nodes[subst[i]];
            int32_t *outs = xcalloc((size_t)big->n_outputs, sizeof *outs);
            bool added;
            ok = emit(&rb, big->op, ins, n->n_inputs, big->attrs, n->loc, n->scope, outs, &added);
            if (ok) {
                merged_into[subst[i]] = ng->values[outs[0]].node;
                for (int k = 0; k < n->n_outputs; k++) rb.map[n->outputs[k]] = outs[k];
                st->merged++;
            }
            free(outs);
            if (ins != ins_stack) free(ins);
            continue;
        }
        int r = 0;
        if (ok && (passes & PASS_IDENT)) r = try_identity(&rb, n, ins);
        if (ok && r == 0 && (passes & PASS_FOLD)) r = try_fold(&rb, n, ins);
        if (r < 0) ok = false;
        if (ok && r == 0) {
            int32_t out_stack[16], *outs = n->n_outputs <= 16 ? out_stack : xcalloc((size_t)n->n_outputs, sizeof *outs);
            bool added;
            if (!emit(&rb, n->op, ins, n->n_inputs, n->attrs, n->loc, n->scope, outs, &added)) ok = false;
            else {
                const struct itr_node *nn = &ng->nodes[ng->n_nodes - 1];
                if (added && nn->n_outputs != n->n_outputs) {
                    itr_diag_error(d, n->loc, "internal error: '%s' changed its number of results when rebuilt",
                                   itr_op_name(n->op));
                    ok = false;
                }
                for (int k = 0; ok && k < n->n_outputs; k++) {
                    rb.map[n->outputs[k]] = outs[k];
                    const char *name = g->values[n->outputs[k]].name;
                    if (added && !is_generated_name(name)) itr_graph_name_value(ng, outs[k], name);
                }
            }
            if (outs != out_stack) free(outs);
        }
        if (ins != ins_stack) free(ins);
    }
    for (int i = 0; i < g->n_outputs && ok; i++) {
        int32_t v = g->outputs[i] >= 0 && g->outputs[i] < g->n_values ? rb.map[g->outputs[i]] : -1;
        if (v < 0) {
            itr_diag_error(d, g->loc, "internal error: graph '%s': output '%s' has no value", g->name, g->output_names[i]);
            ok = false;
            break;
        }
        itr_graph_add_output(ng, g->output_names[i], v);
    }

    if (ok) {
        free_tensors_not_in(g, ng);
        *g = *ng;
    } else {
        free_tensors_not_in(ng, g);   // folded constants the old graph never held
    }
    for (int i = 0; i < rb.cap; i++) {
        itr_tensor_free(rb.mat32[i]);
        itr_tensor_free(rb.mat64[i]);
    }
    itr_bindings_free(&rb.dims);
    free(rb.map);
    free(rb.mat32);
    free(rb.mat64);
    free(rb.cse);
    free(rb.cse_hash);
    free(live_value);
    free(live_node);
    free(subst);
    free(merged_into);
    return ok;
}

// Drops scan bodies that no entry reaches any more.
static void drop_dead_bodies(struct itr_program *p, struct itr_simplify_stats *st) {
    bool *reach = xcalloc((size_t)p->n_graphs + 1, sizeof *reach);
    int32_t *stack = xcalloc((size_t)p->n_graphs + 1, sizeof *stack);
    int sp = 0;
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == ITR_GRAPH_ENTRY) { reach[i] = true; stack[sp++] = i; }
    while (sp > 0) {
        const struct itr_graph *g = p->graphs[stack[--sp]];
        for (int i = 0; i < g->n_nodes; i++) {
            const struct itr_node *n = &g->nodes[i];
            const struct itr_op_info *info = itr_op_info(n->op);
            for (int k = 0; k < info->n_attrs; k++) {
                if (n->attrs[k].kind != ITR_ATTR_GRAPH) continue;
                for (int j = 0; j < p->n_graphs; j++)
                    if (p->graphs[j] == n->attrs[k].u.graph && !reach[j]) { reach[j] = true; stack[sp++] = j; }
            }
        }
    }
    int w = 0;
    for (int i = 0; i < p->n_graphs; i++) {
        if (reach[i]) { p->graphs[w++] = p->graphs[i]; continue; }
        struct itr_graph empty;
        memset(&empty, 0, sizeof empty);
        free_tensors_not_in(p->graphs[i], &empty);
        st->removed_graphs++;
    }
    p->n_graphs = w;
    free(reach);
    free(stack);
}

static bool run_passes(struct itr_program *p, unsigned passes, struct itr_simplify_stats *st, struct itr_diags *d) {
    for (int i = 0; i < p->n_graphs; i++)
        if (!rebuild_graph(p, p->graphs[i], passes, st, d)) return false;
    if (passes & PASS_DCE) drop_dead_bodies(p, st);
    return true;
}

bool itr_pass_fold_constants(struct itr_program *p, struct itr_diags *d) {
    struct itr_simplify_stats st = { 0 };
    return run_passes(p, PASS_FOLD, &st, d);
}

bool itr_pass_cse(struct itr_program *p, struct itr_diags *d) {
    struct itr_simplify_stats st = { 0 };
    return run_passes(p, PASS_CSE, &st, d);
}

bool itr_pass_dce(struct itr_program *p, struct itr_diags *d) {
    struct itr_simplify_stats st = { 0 };
    return run_passes(p, PASS_DCE, &st, d);
}

bool itr_pass_identities(struct itr_program *p, struct itr_diags *d) {
    struct itr_simplify_stats st = { 0 };
    return run_passes(p, PASS_IDENT, &st, d);
}

static int total_changes(const struct itr_simplify_stats *s) {
    return s->folded + s->merged + s->rewritten + s->removed + s->removed_graphs;
}

bool itr_simplify(struct itr_program *p, struct itr_simplify_stats *stats, struct itr_diags *d) {
    struct itr_simplify_stats local = { 0 };
    struct itr_simplify_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int before = total_changes(st);
        st->iterations++;
        st->unfolded_precision = 0;   // what the last round left, not a sum over rounds
        // Rewrites first, then one DCE sweep that removes what they orphaned.
        if (!run_passes(p, PASS_IDENT | PASS_FOLD | PASS_CSE, st, d)) return false;
        if (!run_passes(p, PASS_DCE, st, d)) return false;
        if (total_changes(st) == before) break;
    }
    return true;
}
