// ONNX export (frontends/onnx/onnx_export.h, docs/onnx.md "Export").
//
// The ModelProto is built in one arena (every message, name and array) and
// packed once; tensor bytes are not copied (initializers point at the
// weights' and the program's own data until the model is packed).
//
// Names. Every ONNX value name is unique over the main graph and all Scan
// bodies: the entry's inputs, outputs and parameters keep their names, other
// values keep their IR name where free, body values are prefixed with their
// body's name ("_scan0/h"), and clashes get a "_N" suffix.
//
// Dims. A symbol the weights' shapes fix, or that nothing else binds but has
// a default, is a constant. A symbol an entry input carries as a bare dim is
// dynamic: the input's type names it (dim_param) and, where a value needs it
// at run time (a reshape target, a fill shape), Shape(input) slices it out.
// Those dim computations depend on the inputs only, so they go first in the
// main graph, where every Scan body can also reference them.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_export.h"
#include "ir/bind.h"
#include "ir/fileio.h"
#include "onnx.pb-c.h"

// ------------------------------------------------------------ state

struct exg {                       // one ONNX graph being built
    Onnx__NodeProto **nodes; int n, cap;
    const struct itr_graph *ig;    // NULL for the prologue
    const char **names;            // ONNX name of each IR value of ig
};

struct ex {
    const struct itr_program *p;
    struct itr_arena *a;
    struct itr_diags *d;
    const char *entry;
    const struct itr_tensor_set *weights;
    struct itr_dim_bindings b;     // the constant symbols
    int *sym_input, *sym_axis;     // a dynamic symbol's source: entry input and axis (-1: none)
    const struct itr_graph *main;
    const char **main_input_names;
    const char **dimval;           // per dim handle: the int64[1] tensor holding its value, or NULL
    struct exg prologue;           // dim computations
    Onnx__TensorProto **inits; int n_inits, cap_inits;
    bool *param_done;              // initializer made for the parameter
    const char **used; int used_cap, n_used;   // open-addressing set of taken names
    const struct itr_node *cur;    // the node being exported, for messages
    const struct itr_graph *cur_graph;
    int cur_index;
    bool failed;
};

static void *grow(struct ex *x, void *arr, int n, int *cap, size_t elem) {
    if (n < *cap) return arr;
    int nc = *cap ? *cap * 2 : 16;
    void *na = itr_arena_alloc(x->a, (size_t)nc * elem);
    if (n) memcpy(na, arr, (size_t)n * elem);
    *cap = nc;
    return na;
}

// ------------------------------------------------------------ messages

static bool ex_error(struct ex *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool ex_error(struct ex *x, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->cur) {
        const struct itr_node *n = x->cur;
        itr_diag_error(x->d, n->loc, "entry '%s': node %d%s%s%s (%s%s%s): %s", x->entry, x->cur_index,
                       n->scope ? " '" : "", n->scope ? n->scope : "", n->scope ? "'" : "", itr_op_name(n->op),
                       x->cur_graph && x->cur_graph != x->main ? ", in scan body " : "",
                       x->cur_graph && x->cur_graph != x->main ? x->cur_graph->name : "", msg);
    } else {
        itr_diag_error(x->d, ITR_NOLOC, "entry '%s': %s", x->entry, msg);
    }
    x->failed = true;
    return false;
}

// ------------------------------------------------------------ names

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool name_taken(const struct ex *x, const char *s) {
    if (!x->used_cap) return false;
    for (uint64_t i = hash_str(s) & (uint64_t)(x->used_cap - 1);; i = (i + 1) & (uint64_t)(x->used_cap - 1)) {
        if (!x->used[i]) return false;
        if (strcmp(x->used[i], s) == 0) return true;
    }
}

static void name_take(struct ex *x, const char *s) {
    if (2 * (x->n_used + 1) > x->used_cap) {
        int nc = x->used_cap ? x->used_cap * 2 : 256;
        const char **nu = itr_arena_alloc(x->a, (size_t)nc * sizeof *nu);
        for (int i = 0; i < x->used_cap; i++) {
            if (!x->used[i]) continue;
            uint64_t j = hash_str(x->used[i]) & (uint64_t)(nc - 1);
            while (nu[j]) j = (j + 1) & (uint64_t)(nc - 1);
            nu[j] = x->used[i];
        }
        x->used = nu;
        x->used_cap = nc;
    }
    uint64_t j = hash_str(s) & (uint64_t)(x->used_cap - 1);
    while (x->used[j]) {
        if (strcmp(x->used[j], s) == 0) return;
        j = (j + 1) & (uint64_t)(x->used_cap - 1);
    }
    x->used[j] = s;
    x->n_used++;
}

// A name not taken yet, base itself where free; taken by this call.
static const char *fresh(struct ex *x, const char *base) {
    if (!name_taken(x, base)) {
        const char *s = itr_arena_strdup(x->a, base);
        name_take(x, s);
        return s;
    }
    char buf[512];
    for (int k = 1;; k++) {
        snprintf(buf, sizeof buf, "%s_%d", base, k);
        if (!name_taken(x, buf)) return fresh(x, buf);
    }
}

static const char *tmp(struct ex *x) { return fresh(x, "_t"); }

// ------------------------------------------------------------ building messages

static int32_t onnx_dtype(enum itr_dtype dt) {
    switch (dt) {
    case ITR_F32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    case ITR_F64: return ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    case ITR_I32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    case ITR_I64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    case ITR_BOOL: return ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    default: abort();
    }
}

#define NEW(x, T, INIT) ({ T *m_ = itr_arena_alloc((x)->a, sizeof(T)); T i_ = INIT; *m_ = i_; m_; })

static Onnx__NodeProto *node(struct ex *x, struct exg *g, const char *op, int n_in, const char *const *in, int n_out,
                             const char *const *out) {
    Onnx__NodeProto *nd = NEW(x, Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
    nd->op_type = (char *)op;
    nd->n_input = (size_t)n_in;
    nd->input = itr_arena_alloc(x->a, (size_t)(n_in + 1) * sizeof(char *));
    for (int i = 0; i < n_in; i++) nd->input[i] = (char *)in[i];
    nd->n_output = (size_t)n_out;
    nd->output = itr_arena_alloc(x->a, (size_t)(n_out + 1) * sizeof(char *));
    for (int i = 0; i < n_out; i++) nd->output[i] = (char *)out[i];
    nd->attribute = itr_arena_alloc(x->a, 8 * sizeof(Onnx__AttributeProto *));
    // Node names must be unique (ONNX Runtime refuses a model otherwise);
    // the module scope says where a node came from.
    char nm[512];
    snprintf(nm, sizeof nm, "%s%s%s", x->cur && x->cur->scope ? x->cur->scope : "", x->cur && x->cur->scope ? "/" : "",
             op);
    nd->name = (char *)fresh(x, nm);
    g->nodes = grow(x, g->nodes, g->n, &g->cap, sizeof *g->nodes);
    g->nodes[g->n++] = nd;
    return nd;
}

// One-input, one-output node writing a fresh value; its name.
static const char *op1(struct ex *x, struct exg *g, const char *op, const char *a) {
    const char *o = tmp(x);
    node(x, g, op, 1, &a, 1, &o);
    return o;
}

static const char *op2(struct ex *x, struct exg *g, const char *op, const char *a, const char *b) {
    const char *o = tmp(x);
    node(x, g, op, 2, (const char *[]){ a, b }, 1, &o);
    return o;
}

static Onnx__AttributeProto *attr(struct ex *x, Onnx__NodeProto *nd, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
    if (nd->n_attribute >= 8) abort();
    Onnx__AttributeProto *at = NEW(x, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
    at->name = (char *)name;
    at->has_type = 1;
    at->type = type;
    nd->attribute[nd->n_attribute++] = at;
    return at;
}

static void attr_i(struct ex *x, Onnx__NodeProto *nd, const char *name, int64_t v) {
    Onnx__AttributeProto *at = attr(x, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    at->has_i = 1;
    at->i = v;
}

static void attr_f(struct ex *x, Onnx__NodeProto *nd, const char *name, double v) {
    Onnx__AttributeProto *at = attr(x, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    at->has_f = 1;
    at->f = (float)v;
}

static void attr_ints(struct ex *x, Onnx__NodeProto *nd, const char *name, const int64_t *v, int n) {
    Onnx__AttributeProto *at = attr(x, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    at->n_ints = (size_t)n;
    at->ints = itr_arena_memdup(x->a, v, (size_t)(n ? n : 1) * sizeof *v);
}

// A TensorProto of t's bytes (borrowed, not copied).
static Onnx__TensorProto *tensor_proto(struct ex *x, const char *name, const struct itr_tensor *t) {
    Onnx__TensorProto *tp = NEW(x, Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
    tp->name = (char *)name;
    tp->has_data_type = 1;
    tp->data_type = onnx_dtype(t->dtype);
    tp->n_dims = (size_t)t->rank;
    tp->dims = itr_arena_alloc(x->a, (size_t)(t->rank + 1) * sizeof(int64_t));
    for (int i = 0; i < t->rank; i++) tp->dims[i] = t->shape[i];
    tp->has_raw_data = 1;
    tp->raw_data.len = itr_tensor_nbytes(t);
    tp->raw_data.data = t->data;
    return tp;
}

static void add_init(struct ex *x, Onnx__TensorProto *tp) {
    x->inits = grow(x, x->inits, x->n_inits, &x->cap_inits, sizeof *x->inits);
    x->inits[x->n_inits++] = tp;
}

// A TensorProto of raw values (copied into the arena).
static Onnx__TensorProto *raw_proto(struct ex *x, const char *name, enum itr_dtype dt, int rank, const int64_t *shape,
                                    const void *data, size_t nbytes) {
    struct itr_tensor t = { .dtype = dt, .rank = rank, .data = itr_arena_memdup(x->a, data, nbytes ? nbytes : 1) };
    for (int i = 0; i < rank; i++) t.shape[i] = shape[i];
    Onnx__TensorProto *tp = tensor_proto(x, name, &t);
    tp->raw_data.len = nbytes;
    return tp;
}

// A constant initializer from raw values.
static const char *const_raw(struct ex *x, enum itr_dtype dt, int rank, const int64_t *shape, const void *data,
                             size_t nbytes) {
    Onnx__TensorProto *tp = raw_proto(x, fresh(x, "_c"), dt, rank, shape, data, nbytes);
    add_init(x, tp);
    return tp->name;
}

union scalar { float f; double d; int32_t i; int64_t l; uint8_t b; };

// v as one element of dtype dt, in *u; returns u.
static const void *scalar_bytes(enum itr_dtype dt, double v, union scalar *u) {
    switch (dt) {
    case ITR_F32: u->f = (float)v; break;
    case ITR_F64: u->d = v; break;
    case ITR_I32: u->i = (int32_t)v; break;
    case ITR_I64: u->l = (int64_t)v; break;
    default: u->b = v != 0; break;
    }
    return u;
}

static const char *const_i64s(struct ex *x, const int64_t *v, int n) {
    int64_t shape[1] = { n };
    return const_raw(x, ITR_I64, 1, shape, v, (size_t)n * sizeof *v);
}

static const char *const_scalar(struct ex *x, enum itr_dtype dt, double v) {
    union scalar u;
    return const_raw(x, dt, 0, NULL, scalar_bytes(dt, v, &u), itr_dtype_size(dt));
}

// ------------------------------------------------------------ dims

static bool dim_const(const struct ex *x, itr_dim dim, int64_t *v) {
    int32_t unbound;
    return itr_dim_eval(x->p, dim, x->b.value, x->b.bound, v, &unbound);
}

static Onnx__TypeProto *type_proto(struct ex *x, const struct itr_type *t) {
    Onnx__TypeProto *tp = NEW(x, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
    Onnx__TypeProto__Tensor *tt = NEW(x, Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
    Onnx__TensorShapeProto *sp = NEW(x, Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = onnx_dtype(t->dtype);
    tt->shape = sp;
    sp->n_dim = (size_t)t->rank;
    sp->dim = itr_arena_alloc(x->a, (size_t)(t->rank + 1) * sizeof *sp->dim);
    for (int i = 0; i < t->rank; i++) {
        Onnx__TensorShapeProto__Dimension *dm =
            NEW(x, Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
        int64_t v;
        if (dim_const(x, t->dims[i], &v)) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = v;
        } else {
            char buf[256];
            itr_dim_format(x->p, t->dims[i], buf, sizeof buf);
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = itr_arena_strdup(x->a, buf);
        }
        sp->dim[i] = dm;
    }
    return tp;
}

static Onnx__ValueInfoProto *value_info(struct ex *x, const char *name, const struct itr_type *t) {
    Onnx__ValueInfoProto *vi = NEW(x, Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
    vi->name = (char *)name;
    vi->type = type_proto(x, t);
    return vi;
}

// The int64[1] tensor holding dim's value at run time (computed once, in the
// prologue).
static const char *dimval(struct ex *x, itr_dim dim) {
    if (x->dimval[dim]) return x->dimval[dim];
    const char *r = NULL;
    int64_t v;
    const struct itr_dim_node *dn = &x->p->dimnodes[dim];
    if (dim_const(x, dim, &v)) {
        r = const_i64s(x, &v, 1);
    } else if (dn->kind == ITR_DIM_SYM) {
        int s = (int)dn->value;
        if (x->sym_input[s] < 0) {
            ex_error(x, "dim '%s' is fixed neither by the weights nor by an input of the entry, and has no default",
                     x->p->symbols[s].name);
            return NULL;
        }
        const char *in = x->main_input_names[x->sym_input[s]];
        const char *o = tmp(x);
        Onnx__NodeProto *nd = node(x, &x->prologue, "Shape", 1, &in, 1, &o);
        attr_i(x, nd, "start", x->sym_axis[s]);
        attr_i(x, nd, "end", x->sym_axis[s] + 1);
        r = o;
    } else {
        const char *a = dimval(x, dn->a), *b = dimval(x, dn->b);
        if (!a || !b) return NULL;
        // Dims are non-negative, so ONNX's truncating Div is our floor.
        const char *op = dn->kind == ITR_DIM_ADD ? "Add" : dn->kind == ITR_DIM_SUB ? "Sub"
                       : dn->kind == ITR_DIM_MUL ? "Mul" : "Div";
        r = op2(x, &x->prologue, op, a, b);
    }
    x->dimval[dim] = r;
    return r;
}

// A shape as a 1-D int64 tensor: a constant when every dim is, else a
// Concat of the dims' run-time values.
static const char *shape_tensor(struct ex *x, const itr_dim *dims, int n) {
    int64_t v[ITR_MAX_RANK];
    bool all = true;
    for (int i = 0; i < n && all; i++) all = dim_const(x, dims[i], &v[i]);
    if (all) return const_i64s(x, v, n);
    const char *parts[ITR_MAX_RANK];
    for (int i = 0; i < n; i++)
        if (!(parts[i] = dimval(x, dims[i]))) return NULL;
    const char *o = tmp(x);
    Onnx__NodeProto *nd = node(x, &x->prologue, "Concat", n, parts, 1, &o);
    attr_i(x, nd, "axis", 0);
    return o;
}

// ------------------------------------------------------------ the export table

struct ex_row;
typedef bool (*ex_fn)(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                      const struct ex_row *r);

struct ex_row {
    const char *op;      // our op's name (ir/ops.def)
    ex_fn fn;            // NULL: unsupported
    const char *onnx;    // the ONNX op(s) it becomes (docs, and the op of the simple rows)
    const char *reason;  // why there is no mapping
};

static const struct itr_type *in_type(const struct exg *g, const struct itr_node *n, int i) {
    return &g->ig->values[n->inputs[i]].type;
}

static const struct itr_type *out_type(const struct exg *g, const struct itr_node *n, int i) {
    return &g->ig->values[n->outputs[i]].type;
}

static const struct itr_attr *nattr(const struct itr_node *n, const char *name) { return itr_node_attr(n, name); }

// The row's ONNX op on the node's operands.
static bool ex_simple(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                      const struct ex_row *r) {
    node(x, g, r->onnx, n->n_inputs, in, 1, out);
    return true;
}

static bool ex_rsqrt(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                     const struct ex_row *r) {
    (void)n; (void)r;
    const char *s = op1(x, g, "Sqrt", in[0]);
    node(x, g, "Reciprocal", 1, &s, 1, out);
    return true;
}

static bool ex_leaky_relu(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                          const struct ex_row *r) {
    (void)r;
    attr_f(x, node(x, g, "LeakyRelu", 1, in, 1, out), "alpha", itr_node_attr_float(n, "alpha"));
    return true;
}

// Opset 17 has no Gelu (it came in 20): x * 0.5 * (1 + erf(x / sqrt 2)).
static bool ex_gelu(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)r;
    enum itr_dtype dt = in_type(g, n, 0)->dtype;
    const char *e = op1(x, g, "Erf", op2(x, g, "Mul", in[0], const_scalar(x, dt, 0.70710678118654752440)));
    const char *h = op2(x, g, "Mul", op2(x, g, "Add", e, const_scalar(x, dt, 1.0)), const_scalar(x, dt, 0.5));
    node(x, g, "Mul", 2, (const char *[]){ in[0], h }, 1, out);
    return true;
}

static bool ex_cast(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)r;
    attr_i(x, node(x, g, "Cast", 1, in, 1, out), "to", onnx_dtype(nattr(n, "dtype")->u.dtype));
    return true;
}

// Integer division floors in our IR and truncates in ONNX: (a - a mod b) / b
// with Python's mod (fmod = 0) divides exactly, so either rounding gives the
// floor.
static bool ex_div(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                   const struct ex_row *r) {
    (void)r;
    if (itr_dtype_is_float(in_type(g, n, 0)->dtype)) {
        node(x, g, "Div", 2, in, 1, out);
        return true;
    }
    const char *m = tmp(x);
    attr_i(x, node(x, g, "Mod", 2, in, 1, &m), "fmod", 0);
    node(x, g, "Div", 2, (const char *[]){ op2(x, g, "Sub", in[0], m), in[1] }, 1, out);
    return true;
}

static bool ex_ne(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                  const struct ex_row *r) {
    (void)n; (void)r;
    const char *e = op2(x, g, "Equal", in[0], in[1]);
    node(x, g, "Not", 1, &e, 1, out);
    return true;
}

// Reductions: ReduceSum takes its axes as an input since opset 13, the
// others as an attribute until opset 18. Absent axes reduce every axis in
// both, and so does an empty list in ours, so it is written as absent.
static bool ex_reduce(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                      const struct ex_row *r) {
    const struct itr_attr *axes = nattr(n, "axes");
    bool keep = itr_node_attr_int(n, "keepdims") != 0;
    bool has_axes = axes && axes->kind == ITR_ATTR_INTS && axes->u.ints.n > 0;
    Onnx__NodeProto *nd;
    if (strcmp(r->onnx, "ReduceSum") == 0 && has_axes)
        nd = node(x, g, r->onnx, 2, (const char *[]){ in[0], const_i64s(x, axes->u.ints.v, axes->u.ints.n) }, 1, out);
    else
        nd = node(x, g, r->onnx, 1, in, 1, out);
    if (has_axes && strcmp(r->onnx, "ReduceSum") != 0) attr_ints(x, nd, "axes", axes->u.ints.v, axes->u.ints.n);
    attr_i(x, nd, "keepdims", keep);
    return true;
}

static bool ex_argreduce(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                         const struct ex_row *r) {
    Onnx__NodeProto *nd = node(x, g, r->onnx, 1, in, 1, out);
    attr_i(x, nd, "axis", itr_node_attr_int(n, "axis"));
    attr_i(x, nd, "keepdims", itr_node_attr_int(n, "keepdims") != 0);
    return true;
}

static bool ex_reshape(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                       const struct ex_row *r) {
    (void)r;
    const struct itr_type *t = out_type(g, n, 0);
    const char *s = shape_tensor(x, t->dims, t->rank);
    if (!s) return false;
    // allowzero: a run-time 0 (an empty batch) is a size, not "copy the dim".
    attr_i(x, node(x, g, "Reshape", 2, (const char *[]){ in[0], s }, 1, out), "allowzero", 1);
    return true;
}

static bool ex_transpose(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                         const struct ex_row *r) {
    (void)r;
    Onnx__NodeProto *nd = node(x, g, "Transpose", 1, in, 1, out);
    const struct itr_attr *perm = nattr(n, "perm");
    if (perm && perm->kind == ITR_ATTR_INTS) attr_ints(x, nd, "perm", perm->u.ints.v, perm->u.ints.n);
    return true;
}

static bool ex_expand(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                      const struct ex_row *r) {
    (void)r;
    const struct itr_type *t = out_type(g, n, 0);
    const char *s = shape_tensor(x, t->dims, t->rank);
    if (!s) return false;
    node(x, g, "Expand", 2, (const char *[]){ in[0], s }, 1, out);
    return true;
}

// Squeeze, Unsqueeze: axes as an input since opset 13.
static bool ex_axes_input(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                          const struct ex_row *r) {
    const struct itr_attr *axes = nattr(n, "axes");
    node(x, g, r->onnx, 2, (const char *[]){ in[0], const_i64s(x, axes->u.ints.v, axes->u.ints.n) }, 1, out);
    return true;
}

// Slice has numpy's clamping in both (ONNX clamps out-of-range starts and
// ends the same way, INT64_MIN/MAX included).
static bool ex_slice(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                     const struct ex_row *r) {
    (void)r;
    const struct itr_attr *axes = nattr(n, "axes"), *st = nattr(n, "starts"), *en = nattr(n, "ends"),
                          *sp = nattr(n, "steps");
    const char *ins[5] = { in[0], const_i64s(x, st->u.ints.v, st->u.ints.n), const_i64s(x, en->u.ints.v, en->u.ints.n),
                           const_i64s(x, axes->u.ints.v, axes->u.ints.n), NULL };
    int k = 4;
    if (sp && sp->kind == ITR_ATTR_INTS) ins[k++] = const_i64s(x, sp->u.ints.v, sp->u.ints.n);
    node(x, g, "Slice", k, ins, 1, out);
    return true;
}

static bool ex_axis_attr(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                         const struct ex_row *r) {
    attr_i(x, node(x, g, r->onnx, n->n_inputs, in, 1, out), "axis", itr_node_attr_int(n, "axis"));
    return true;
}

// Our pads interleave [before_0, after_0, ...]; ONNX lists every before,
// then every after.
static bool ex_pad(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                   const struct ex_row *r) {
    (void)r;
    const struct itr_attr *pads = nattr(n, "pads");
    int rank = in_type(g, n, 0)->rank;
    if (pads->u.ints.n != 2 * rank) return ex_error(x, "pads has %d entries for rank %d", pads->u.ints.n, rank);
    int64_t v[2 * ITR_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        v[i] = pads->u.ints.v[2 * i];
        v[rank + i] = pads->u.ints.v[2 * i + 1];
    }
    const char *ins[3] = { in[0], const_i64s(x, v, 2 * rank),
                           const_scalar(x, in_type(g, n, 0)->dtype, itr_node_attr_float(n, "value")) };
    attr(x, node(x, g, "Pad", 3, ins, 1, out), "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    Onnx__NodeProto *nd = g->nodes[g->n - 1];
    Onnx__AttributeProto *at = nd->attribute[0];
    at->has_s = 1;
    at->s.data = (uint8_t *)"constant";
    at->s.len = 8;
    return true;
}

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

// The adjoint of gather (numpy take), as ScatterElements with reduction
// add: the index's dims are flattened into one (in the updates too), then
// the index is broadcast to the updates' shape along the other axes.
static bool ex_scatter_add(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                           const struct ex_row *r) {
    (void)r;
    const struct itr_type *bt = in_type(g, n, 0);
    int ax = norm_axis(itr_node_attr_int(n, "axis"), bt->rank);
    const char *parts[ITR_MAX_RANK];
    int64_t all_c[ITR_MAX_RANK], minus1 = -1;
    bool all = true;
    for (int i = 0; i < bt->rank; i++) {
        if (i == ax) { all_c[i] = -1; continue; }
        if (!dim_const(x, bt->dims[i], &all_c[i])) all = false;
    }
    const char *ushape;
    if (all) {
        ushape = const_i64s(x, all_c, bt->rank);
    } else {
        for (int i = 0; i < bt->rank; i++)
            if (!(parts[i] = i == ax ? const_i64s(x, &minus1, 1) : dimval(x, bt->dims[i]))) return false;
        ushape = tmp(x);
        attr_i(x, node(x, &x->prologue, "Concat", bt->rank, parts, 1, &ushape), "axis", 0);
    }
    const char *upd = op2(x, g, "Reshape", in[2], ushape);
    const char *idx = op2(x, g, "Reshape", in[1], const_i64s(x, &minus1, 1));
    if (bt->rank > 1) {
        int64_t axes[ITR_MAX_RANK];
        int k = 0;
        for (int i = 0; i < bt->rank; i++)
            if (i != ax) axes[k++] = i;
        idx = op2(x, g, "Unsqueeze", idx, const_i64s(x, axes, k));
    }
    idx = op2(x, g, "Expand", idx, op1(x, g, "Shape", upd));
    Onnx__NodeProto *nd = node(x, g, "ScatterElements", 3, (const char *[]){ in[0], idx, upd }, 1, out);
    attr_i(x, nd, "axis", ax);
    Onnx__AttributeProto *at = attr(x, nd, "reduction", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    at->has_s = 1;
    at->s.data = (uint8_t *)"add";
    at->s.len = 3;
    return true;
}

// take_along_axis broadcasts the operand and the index off the axis;
// GatherElements wants them to agree, so each is expanded where it differs.
static bool ex_take_along(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                          const struct ex_row *r) {
    (void)r;
    const struct itr_type *xt = in_type(g, n, 0), *it = in_type(g, n, 1), *ot = out_type(g, n, 0);
    int ax = norm_axis(itr_node_attr_int(n, "axis"), xt->rank);
    const char *a = in[0], *idx = in[1];
    bool ex_x = false, ex_i = false;
    itr_dim xd[ITR_MAX_RANK], id[ITR_MAX_RANK];
    for (int i = 0; i < xt->rank; i++) {
        xd[i] = i == ax ? xt->dims[i] : ot->dims[i];
        id[i] = ot->dims[i];
        if (xd[i] != xt->dims[i]) ex_x = true;
        if (id[i] != it->dims[i]) ex_i = true;
    }
    if (ex_x) {
        const char *s = shape_tensor(x, xd, xt->rank);
        if (!s) return false;
        a = op2(x, g, "Expand", a, s);
    }
    if (ex_i) {
        const char *s = shape_tensor(x, id, xt->rank);
        if (!s) return false;
        idx = op2(x, g, "Expand", idx, s);
    }
    attr_i(x, node(x, g, "GatherElements", 2, (const char *[]){ a, idx }, 1, out), "axis", ax);
    return true;
}

static bool ex_scatter_add_along(struct ex *x, struct exg *g, const struct itr_node *n, const char **in,
                                 const char **out, const struct ex_row *r) {
    (void)r;
    const struct itr_type *bt = in_type(g, n, 0), *it = in_type(g, n, 1), *ut = in_type(g, n, 2);
    int ax = norm_axis(itr_node_attr_int(n, "axis"), bt->rank);
    for (int i = 0; i < bt->rank; i++)
        if (it->dims[i] != ut->dims[i] || (i != ax && it->dims[i] != bt->dims[i]))
            return ex_error(x, "the index, updates and base differ off the axis (broadcasting), which "
                               "ScatterElements cannot express");
    Onnx__NodeProto *nd = node(x, g, "ScatterElements", 3, in, 1, out);
    attr_i(x, nd, "axis", ax);
    Onnx__AttributeProto *at = attr(x, nd, "reduction", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    at->has_s = 1;
    at->s.data = (uint8_t *)"add";
    at->s.len = 3;
    return true;
}

// sort is a TopK over the whole axis; ONNX's TopK, like our sort, keeps equal
// elements in index order.
static bool ex_sort(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)r;
    const struct itr_type *t = in_type(g, n, 0);
    int ax = norm_axis(itr_node_attr_int(n, "axis"), t->rank);
    const char *k = dimval(x, t->dims[ax]);
    if (!k) return false;
    Onnx__NodeProto *nd = node(x, g, "TopK", 2, (const char *[]){ in[0], k }, 2, out);
    attr_i(x, nd, "axis", ax);
    attr_i(x, nd, "largest", itr_node_attr_int(n, "descending") != 0);
    attr_i(x, nd, "sorted", 1);
    return true;
}

static bool ex_topk(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)r;
    int64_t k = itr_node_attr_int(n, "k");
    Onnx__NodeProto *nd = node(x, g, "TopK", 2, (const char *[]){ in[0], const_i64s(x, &k, 1) }, 2, out);
    attr_i(x, nd, "axis", itr_node_attr_int(n, "axis"));
    attr_i(x, nd, "largest", itr_node_attr_int(n, "largest") != 0);
    attr_i(x, nd, "sorted", 1);
    return true;
}

// A literal is an initializer under the value's own name.
static bool ex_constant(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                        const struct ex_row *r) {
    (void)g; (void)in; (void)r;
    add_init(x, tensor_proto(x, out[0], nattr(n, "value")->u.tensor));
    return true;
}

static bool ex_full(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)in; (void)r;
    const struct itr_type *t = out_type(g, n, 0);
    const char *s = shape_tensor(x, t->dims, t->rank);
    if (!s) return false;
    Onnx__NodeProto *nd = node(x, g, "ConstantOfShape", 1, &s, 1, out);
    // The fill value is a one-element tensor attribute (not an initializer).
    double v = itr_node_attr_float(n, "value");
    int64_t one = 1;
    union scalar u;
    Onnx__AttributeProto *at = attr(x, nd, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    at->t = raw_proto(x, "value", t->dtype, 1, &one, scalar_bytes(t->dtype, v, &u), itr_dtype_size(t->dtype));
    return true;
}

// iota: Range(0, n) along the axis, unsqueezed to the rank, expanded to the
// shape, cast to the dtype.
static bool ex_iota(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)in; (void)r;
    const struct itr_type *t = out_type(g, n, 0);
    int ax = norm_axis(itr_node_attr_int(n, "axis"), t->rank);
    if (t->rank == 0) {
        const char *z = const_scalar(x, t->dtype, 0);
        node(x, g, "Identity", 1, &z, 1, out);
        return true;
    }
    const char *shape = shape_tensor(x, t->dims, t->rank), *lim;
    if (!shape) return false;
    int64_t n_ax, zero = 0;
    if (dim_const(x, t->dims[ax], &n_ax)) {
        lim = const_scalar(x, ITR_I64, (double)n_ax);
    } else {
        const char *len = dimval(x, t->dims[ax]);
        if (!len) return false;
        lim = op2(x, &x->prologue, "Squeeze", len, const_i64s(x, &zero, 1));
    }
    const char *rg = tmp(x);
    node(x, g, "Range", 3, (const char *[]){ const_scalar(x, ITR_I64, 0), lim, const_scalar(x, ITR_I64, 1) }, 1, &rg);
    if (t->rank > 1) {
        int64_t axes[ITR_MAX_RANK];
        int k = 0;
        for (int i = 0; i < t->rank; i++)
            if (i != ax) axes[k++] = i;
        rg = op2(x, g, "Unsqueeze", rg, const_i64s(x, axes, k));
    }
    if (t->dtype == ITR_I64) {
        node(x, g, "Expand", 2, (const char *[]){ rg, shape }, 1, out);
    } else {
        const char *e = op2(x, g, "Expand", rg, shape);
        attr_i(x, node(x, g, "Cast", 1, &e, 1, out), "to", onnx_dtype(t->dtype));
    }
    return true;
}

static bool export_nodes(struct ex *x, struct exg *g);
static const char *value_name(struct ex *x, struct exg *g, int32_t v, const char *prefix);

// scan -> Scan. Carries are ONNX state variables and scanned operands scan
// inputs; our constants have no slot in Scan, so the body reads them from
// the enclosing graph by name. reverse walks every scanned operand from the
// end and writes every output back to front, which is what our scan does
// (outputs stay at their steps' positions).
static bool ex_scan(struct ex *x, struct exg *g, const struct itr_node *n, const char **in, const char **out,
                    const struct ex_row *r) {
    (void)r;
    const struct itr_graph *body = nattr(n, "body")->u.graph;
    int nc = (int)itr_node_attr_int(n, "n_carry"), ns = (int)itr_node_attr_int(n, "n_scan");
    int64_t axis = itr_node_attr_int(n, "axis");
    bool rev = itr_node_attr_int(n, "reverse") != 0;

    struct exg bg = { .ig = body };
    bg.names = itr_arena_alloc(x->a, (size_t)(body->n_values + 1) * sizeof *bg.names);
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/", body->name);
    for (int i = 0; i < body->n_inputs; i++) {
        int32_t v = body->inputs[i];
        bg.names[v] = i < nc + ns ? value_name(x, &bg, v, prefix) : in[i];
    }
    const struct itr_node *saved = x->cur;
    const struct itr_graph *saved_g = x->cur_graph;
    int saved_i = x->cur_index;
    bool ok = export_nodes(x, &bg);
    x->cur = saved;
    x->cur_graph = saved_g;
    x->cur_index = saved_i;
    if (!ok) return false;

    Onnx__GraphProto *gp = NEW(x, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
    gp->name = (char *)fresh(x, body->name);
    gp->n_input = (size_t)(nc + ns);
    gp->input = itr_arena_alloc(x->a, (size_t)(nc + ns + 1) * sizeof *gp->input);
    for (int i = 0; i < nc + ns; i++)
        gp->input[i] = value_info(x, bg.names[body->inputs[i]], &body->values[body->inputs[i]].type);
    gp->n_output = (size_t)body->n_outputs;
    gp->output = itr_arena_alloc(x->a, (size_t)(body->n_outputs + 1) * sizeof *gp->output);
    for (int k = 0; k < body->n_outputs; k++) {
        int32_t v = body->outputs[k];
        const char *nm = bg.names[v];
        // A body output must be made in the body and be distinct: a carry
        // passed through, a constant or a value returned twice gets a copy.
        bool fresh_needed = body->values[v].kind != ITR_VALUE_NODE;
        for (int j = 0; j < k && !fresh_needed; j++) fresh_needed = body->outputs[j] == v;
        if (!fresh_needed) {
            const struct itr_node *pn = &body->nodes[body->values[v].node];
            fresh_needed = pn->op == ITR_OP_CONSTANT;
        }
        if (fresh_needed) {
            char b2[512];
            snprintf(b2, sizeof b2, "%s%s", prefix, body->output_names[k] ? body->output_names[k] : "out");
            const char *o = fresh(x, b2);
            node(x, &bg, "Identity", 1, &nm, 1, &o);
            nm = o;
        }
        gp->output[k] = value_info(x, nm, &body->values[v].type);
    }
    gp->n_node = (size_t)bg.n;
    gp->node = bg.nodes;

    Onnx__NodeProto *nd = node(x, g, "Scan", nc + ns, in, n->n_outputs, out);
    Onnx__AttributeProto *at = attr(x, nd, "body", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    at->g = gp;
    attr_i(x, nd, "num_scan_inputs", ns);
    int64_t v[16];
    for (int i = 0; i < ns; i++) v[i] = norm_axis(axis, in_type(g, n, nc + i)->rank);
    attr_ints(x, nd, "scan_input_axes", v, ns);
    for (int i = 0; i < ns; i++) v[i] = rev;
    attr_ints(x, nd, "scan_input_directions", v, ns);
    int nso = n->n_outputs - nc;
    if (nso > 0) {
        for (int i = 0; i < nso; i++) v[i] = norm_axis(axis, out_type(g, n, nc + i)->rank);
        attr_ints(x, nd, "scan_output_axes", v, nso);
        for (int i = 0; i < nso; i++) v[i] = rev;
        attr_ints(x, nd, "scan_output_directions", v, nso);
    }
    return true;
}

#define SIMPLE(op, onnx) { op, ex_simple, onnx, NULL }
#define FN(op, fn, onnx) { op, fn, onnx, NULL }
#define NONE(op, why) { op, NULL, NULL, why }

// By op name rather than enum, so that the table does not break the build
// while an op is being added; tests/test_onnx_export.c fails for an op of
// ops.def without a row.
static const struct ex_row rows[] = {
    SIMPLE("neg", "Neg"), SIMPLE("abs", "Abs"), SIMPLE("sign", "Sign"), SIMPLE("exp", "Exp"), SIMPLE("log", "Log"),
    SIMPLE("sqrt", "Sqrt"), FN("rsqrt", ex_rsqrt, "Sqrt, Reciprocal"), SIMPLE("reciprocal", "Reciprocal"),
    SIMPLE("relu", "Relu"), FN("leaky_relu", ex_leaky_relu, "LeakyRelu"), SIMPLE("sigmoid", "Sigmoid"),
    SIMPLE("tanh", "Tanh"), FN("gelu", ex_gelu, "Mul, Erf, Add: x/2 (1 + erf(x/sqrt 2)) (Gelu is opset 20)"),
    SIMPLE("erf", "Erf"), SIMPLE("sin", "Sin"), SIMPLE("cos", "Cos"), SIMPLE("acos", "Acos"),
    SIMPLE("logical_not", "Not"), SIMPLE("identity", "Identity"), SIMPLE("stop_gradient", "Identity"),
    FN("cast", ex_cast, "Cast"),
    SIMPLE("add", "Add"), SIMPLE("sub", "Sub"), SIMPLE("mul", "Mul"),
    FN("div", ex_div, "Div (integers: Mod, Sub, Div, which floors)"), SIMPLE("pow", "Pow"),
    SIMPLE("maximum", "Max"), SIMPLE("minimum", "Min"), SIMPLE("eq", "Equal"), FN("ne", ex_ne, "Equal, Not"),
    SIMPLE("lt", "Less"), SIMPLE("le", "LessOrEqual"), SIMPLE("gt", "Greater"), SIMPLE("ge", "GreaterOrEqual"),
    SIMPLE("logical_and", "And"), SIMPLE("logical_or", "Or"), SIMPLE("where", "Where"),
    FN("sum", ex_reduce, "ReduceSum"), FN("mean", ex_reduce, "ReduceMean"), FN("max", ex_reduce, "ReduceMax"),
    FN("min", ex_reduce, "ReduceMin"), FN("argmax", ex_argreduce, "ArgMax"), FN("argmin", ex_argreduce, "ArgMin"),
    SIMPLE("matmul", "MatMul"),
    FN("reshape", ex_reshape, "Reshape (allowzero = 1)"), FN("transpose", ex_transpose, "Transpose"),
    FN("expand", ex_expand, "Expand"), FN("squeeze", ex_axes_input, "Squeeze"),
    FN("unsqueeze", ex_axes_input, "Unsqueeze"), FN("slice", ex_slice, "Slice"), FN("concat", ex_axis_attr, "Concat"),
    FN("pad", ex_pad, "Pad (mode constant)"),
    FN("gather", ex_axis_attr, "Gather"),
    FN("scatter_add", ex_scatter_add, "ScatterElements (reduction add; the index flattened and broadcast)"),
    FN("take_along_axis", ex_take_along, "GatherElements (Expand where the operands broadcast)"),
    FN("scatter_add_along_axis", ex_scatter_add_along, "ScatterElements (reduction add; without broadcasting)"),
    FN("sort", ex_sort, "TopK over the whole axis"), FN("topk", ex_topk, "TopK"),
    FN("constant", ex_constant, "an initializer"), FN("full", ex_full, "ConstantOfShape"),
    FN("iota", ex_iota, "Range, Unsqueeze, Expand, Cast"),
    NONE("random_uniform", "draws from Philox-4x32-10 keyed by a seed input; ONNX's RandomUniform has no fixed "
                           "generator, so the model would not compute what ours does"),
    NONE("random_normal", "draws from Philox-4x32-10 keyed by a seed input; ONNX's RandomNormal has no fixed "
                          "generator"),
    NONE("random_bernoulli", "draws from Philox-4x32-10 keyed by a seed input; ONNX's Bernoulli has no fixed "
                             "generator"),
    FN("scan", ex_scan, "Scan (the body as a subgraph)"),
};

static const struct ex_row *find_row(enum itr_op op) {
    const char *name = itr_op_name(op);
    for (size_t i = 0; name && i < sizeof rows / sizeof *rows; i++)
        if (strcmp(rows[i].op, name) == 0) return &rows[i];
    return NULL;
}

const char *itr_onnx_export_mapping(enum itr_op op, const char **unsupported_reason) {
    const struct ex_row *r = (int)op >= 0 && op < ITR_OP_COUNT ? find_row(op) : NULL;
    if (unsupported_reason) *unsupported_reason = r ? r->reason : NULL;
    return r && r->fn ? r->onnx : NULL;
}

// ------------------------------------------------------------ graphs

// The ONNX name of value v of g's IR graph: a parameter's own name (its
// initializer made on first use), otherwise a fresh name from the IR one.
static const char *value_name(struct ex *x, struct exg *g, int32_t v, const char *prefix) {
    const struct itr_value *val = &g->ig->values[v];
    if (val->kind == ITR_VALUE_PARAM) {
        const struct itr_param *pa = &x->p->params[val->param];
        if (!x->param_done[val->param]) {
            x->param_done[val->param] = true;
            const struct itr_tensor *t = x->weights ? itr_tensor_set_get(x->weights, pa->name) : NULL;
            if (t) add_init(x, tensor_proto(x, pa->name, t));
        }
        return pa->name;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s", prefix, val->name);
    return fresh(x, buf);
}

static bool export_nodes(struct ex *x, struct exg *g) {
    const struct itr_graph *ig = g->ig;
    char prefix[256] = "";
    if (ig != x->main) snprintf(prefix, sizeof prefix, "%s/", ig->name);
    for (int i = 0; i < ig->n_nodes; i++) {
        const struct itr_node *n = &ig->nodes[i];
        x->cur = n;
        x->cur_graph = ig;
        x->cur_index = i;
        const char *in[64], *out[32];
        if (n->n_inputs > 64 || n->n_outputs > 32) return ex_error(x, "too many operands");
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            if (!g->names[v]) g->names[v] = value_name(x, g, v, prefix);   // parameters
            in[k] = g->names[v];
        }
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (!g->names[v]) g->names[v] = value_name(x, g, v, prefix);
            out[k] = g->names[v];
        }
        const struct ex_row *r = find_row(n->op);
        if (!r) return ex_error(x, "cannot be exported to ONNX: op '%s' has no row in the export table",
                                itr_op_name(n->op));
        if (!r->fn) return ex_error(x, "cannot be exported to ONNX: op '%s' %s", itr_op_name(n->op), r->reason);
        if (!r->fn(x, g, n, in, out, r)) {
            if (!x->failed) ex_error(x, "cannot be exported to ONNX");
            return false;
        }
    }
    x->cur = NULL;
    return !x->failed;
}

// ------------------------------------------------------------ the model

static void collect_params(const struct itr_graph *g, bool *used) {
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == ITR_VALUE_PARAM) used[g->values[i].param] = true;
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_attr *ba = g->nodes[i].op == ITR_OP_SCAN ? itr_node_attr(&g->nodes[i], "body") : NULL;
        if (ba && ba->kind == ITR_ATTR_GRAPH && ba->u.graph) collect_params(ba->u.graph, used);
    }
}

// Binds the symbols the weights fix, finds each remaining symbol's source
// among the entry's inputs, and gives the rest their defaults.
static bool bind_dims(struct ex *x, const bool *used) {
    const struct itr_program *p = x->p;
    bool ok = true;
    for (int i = 0; i < p->n_params; i++) {
        if (!used[i]) continue;
        const struct itr_param *pa = &p->params[i];
        const struct itr_tensor *t = x->weights ? itr_tensor_set_get(x->weights, pa->name) : NULL;
        if (!t) {
            if (x->weights)
                itr_diag_error(x->d, pa->loc, "entry '%s' uses parameter '%s', which the weights do not hold",
                               x->entry, pa->name);
            else
                itr_diag_error(x->d, pa->loc, "entry '%s' uses parameter '%s': give the weights with --weights "
                               "W.safetensors ('itr-run FILE.plan init -o W.safetensors' makes one)", x->entry,
                               pa->name);
            ok = false;
            continue;
        }
        char what[300];
        snprintf(what, sizeof what, "parameter '%s'", pa->name);
        if (!itr_bind_tensor(&x->b, p, &pa->type, t, what, false, x->d)) ok = false;
    }
    if (!ok) return false;
    for (int s = 0; s < p->n_symbols; s++) x->sym_input[s] = x->sym_axis[s] = -1;
    for (int i = 0; i < x->main->n_inputs; i++) {
        const struct itr_type *t = &x->main->values[x->main->inputs[i]].type;
        for (int k = 0; k < t->rank; k++) {
            const struct itr_dim_node *dn = &p->dimnodes[t->dims[k]];
            if (dn->kind != ITR_DIM_SYM || x->b.bound[dn->value] || x->sym_input[dn->value] >= 0) continue;
            x->sym_input[dn->value] = i;
            x->sym_axis[dn->value] = k;
        }
    }
    for (int s = 0; s < p->n_symbols; s++)
        if (!x->b.bound[s] && x->sym_input[s] < 0 && p->symbols[s].has_default) {
            x->b.bound[s] = true;
            x->b.value[s] = p->symbols[s].default_value;
        }
    return true;
}

static bool build(struct ex *x, Onnx__ModelProto *m) {
    const struct itr_program *p = x->p;
    const struct itr_graph *g = x->main;
    bool *used = itr_arena_alloc(x->a, (size_t)p->n_params + 1);
    collect_params(g, used);
    if (!bind_dims(x, used)) return false;

    // Names the outside world sees are taken first.
    x->main_input_names = itr_arena_alloc(x->a, (size_t)(g->n_inputs + 1) * sizeof(char *));
    struct exg mg = { .ig = g };
    mg.names = itr_arena_alloc(x->a, (size_t)(g->n_values + 1) * sizeof *mg.names);
    for (int i = 0; i < g->n_inputs; i++) {
        const char *nm = itr_arena_strdup(x->a, g->values[g->inputs[i]].name);
        name_take(x, nm);
        x->main_input_names[i] = mg.names[g->inputs[i]] = nm;
    }
    for (int i = 0; i < p->n_params; i++) name_take(x, p->params[i].name);
    for (int k = 0; k < g->n_outputs; k++) {
        // ONNX values have one name each: an output cannot share an input's.
        if (name_taken(x, g->output_names[k]))
            return ex_error(x, "output '%s' has the name of an input, a parameter or another output; rename it "
                            "in the model", g->output_names[k]);
        name_take(x, g->output_names[k]);
    }
    // A node's result returned once by the entry is written under the
    // output's name directly; anything else gets an Identity below.
    bool *direct = itr_arena_alloc(x->a, (size_t)g->n_outputs + 1);
    for (int k = 0; k < g->n_outputs; k++) {
        int32_t v = g->outputs[k];
        if (g->values[v].kind != ITR_VALUE_NODE || mg.names[v]) continue;
        const struct itr_node *pn = &g->nodes[g->values[v].node];
        if (pn->op == ITR_OP_CONSTANT) continue;
        mg.names[v] = g->output_names[k];
        direct[k] = true;
    }
    if (!export_nodes(x, &mg)) return false;
    for (int k = 0; k < g->n_outputs; k++) {
        if (direct[k]) continue;
        int32_t v = g->outputs[k];
        if (!mg.names[v]) mg.names[v] = value_name(x, &mg, v, "");
        node(x, &mg, "Identity", 1, &mg.names[v], 1, &g->output_names[k]);
    }

    Onnx__GraphProto *gp = NEW(x, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
    char gname[300];
    snprintf(gname, sizeof gname, "%s_%s", p->name ? p->name : "model", x->entry);
    gp->name = itr_arena_strdup(x->a, gname);
    gp->n_node = (size_t)(x->prologue.n + mg.n);
    gp->node = itr_arena_alloc(x->a, (gp->n_node + 1) * sizeof *gp->node);
    if (x->prologue.n) memcpy(gp->node, x->prologue.nodes, (size_t)x->prologue.n * sizeof *gp->node);
    if (mg.n) memcpy(gp->node + x->prologue.n, mg.nodes, (size_t)mg.n * sizeof *gp->node);
    gp->n_initializer = (size_t)x->n_inits;
    gp->initializer = x->inits;
    gp->n_input = (size_t)g->n_inputs;
    gp->input = itr_arena_alloc(x->a, (size_t)(g->n_inputs + 1) * sizeof *gp->input);
    for (int i = 0; i < g->n_inputs; i++)
        gp->input[i] = value_info(x, x->main_input_names[i], &g->values[g->inputs[i]].type);
    gp->n_output = (size_t)g->n_outputs;
    gp->output = itr_arena_alloc(x->a, (size_t)(g->n_outputs + 1) * sizeof *gp->output);
    for (int k = 0; k < g->n_outputs; k++)
        gp->output[k] = value_info(x, g->output_names[k], &g->values[g->outputs[k]].type);

    Onnx__OperatorSetIdProto *os = NEW(x, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT);
    os->domain = (char *)"";
    os->has_version = 1;
    os->version = ITR_ONNX_EXPORT_OPSET;
    m->has_ir_version = 1;
    m->ir_version = ITR_ONNX_EXPORT_IR_VERSION;
    m->n_opset_import = 1;
    m->opset_import = itr_arena_alloc(x->a, sizeof *m->opset_import);
    m->opset_import[0] = os;
    m->producer_name = (char *)"itrc";
    m->producer_version = (char *)ITR_VERSION_STRING;
    m->graph = gp;
    return true;
}

bool itr_onnx_export(const struct itr_program *p, const struct itr_onnx_export_options *o, uint8_t **buf,
                     size_t *len, struct itr_diags *d) {
    *buf = NULL;
    *len = 0;
    const struct itr_graph *g = o->entry ? itr_program_find_graph(p, o->entry) : NULL;
    if (!g || g->kind != ITR_GRAPH_ENTRY || g->train) {
        char list[512] = "";
        size_t k = 0;
        for (int i = 0; i < p->n_graphs; i++) {
            const struct itr_graph *e = p->graphs[i];
            if (e->kind != ITR_GRAPH_ENTRY || e->train) continue;
            k += (size_t)snprintf(list + k, k < sizeof list ? sizeof list - k : 0, "%s%s", k ? ", " : "", e->name);
            if (k >= sizeof list) break;
        }
        if (g && g->train)
            itr_diag_error(d, ITR_NOLOC, "entry '%s' is the training step; only inference entries are exported "
                           "(this model has: %s)", o->entry, list);
        else
            itr_diag_error(d, ITR_NOLOC, "the model has no entry '%s' (its inference entries: %s)",
                           o->entry ? o->entry : "(none given)", list);
        return false;
    }
    struct ex x = { .p = p, .a = itr_arena_new(), .d = d, .entry = o->entry, .weights = o->weights, .main = g };
    itr_bindings_init(&x.b, p);
    x.sym_input = itr_arena_alloc(x.a, (size_t)(p->n_symbols + 1) * sizeof(int));
    x.sym_axis = itr_arena_alloc(x.a, (size_t)(p->n_symbols + 1) * sizeof(int));
    x.dimval = itr_arena_alloc(x.a, (size_t)(p->n_dimnodes + 1) * sizeof(char *));
    x.param_done = itr_arena_alloc(x.a, (size_t)p->n_params + 1);
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    bool ok = build(&x, &m);
    if (ok) {
        *len = onnx__model_proto__get_packed_size(&m);
        *buf = malloc(*len ? *len : 1);
        if (!*buf) abort();
        onnx__model_proto__pack(&m, *buf);
    }
    itr_bindings_free(&x.b);
    itr_arena_free(x.a);
    return ok;
}

bool itr_onnx_export_file(const struct itr_program *p, const struct itr_onnx_export_options *o, const char *path,
                          struct itr_diags *d) {
    uint8_t *buf;
    size_t len;
    if (!itr_onnx_export(p, o, &buf, &len, d)) return false;
    const void *parts[1] = { buf };
    bool ok = itr_file_write_atomic(path, parts, &len, 1, d);
    free(buf);
    return ok;
}
