// Plans (ir/plan.h): packing a program into the protobuf schema of
// ir/plan.proto and back, the file header around it, and the program hash.
//
// Reading treats the file as hostile: every index is range-checked before
// use, ops are looked up by name, and the graphs are rebuilt through the
// graph builder (itr_graph_add_node re-runs each op's arity, attribute and
// shape rules), so that what comes out is a program the builder itself could
// have made, and the whole result then goes through itr_program_verify.
#include "plan.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "fileio.h"
#include "ir/devcode.h"
#include "ir/kir.h"
#include "ir/plan.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "plan tensors are stored little-endian; a big-endian host needs byte swapping here"
#endif

// ------------------------------------------------------------ file header

static const uint8_t plan_magic[8] = { 'I', 'T', 'R', 'P', 'L', 'A', 'N', 0 };
enum { HEADER_SIZE = 32 };

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

// ------------------------------------------------------------ enum mappings

static Itr__Plan__DType dtype_to_pb(enum itr_dtype dt) {
    switch (dt) {
    case ITR_F32: return ITR__PLAN__DTYPE__DTYPE_F32;
    case ITR_F64: return ITR__PLAN__DTYPE__DTYPE_F64;
    case ITR_I32: return ITR__PLAN__DTYPE__DTYPE_I32;
    case ITR_I64: return ITR__PLAN__DTYPE__DTYPE_I64;
    case ITR_BOOL: return ITR__PLAN__DTYPE__DTYPE_BOOL;
    default: return ITR__PLAN__DTYPE__DTYPE_UNSPECIFIED;
    }
}

static bool dtype_from_pb(int v, enum itr_dtype *out) {
    switch (v) {
    case ITR__PLAN__DTYPE__DTYPE_F32: *out = ITR_F32; return true;
    case ITR__PLAN__DTYPE__DTYPE_F64: *out = ITR_F64; return true;
    case ITR__PLAN__DTYPE__DTYPE_I32: *out = ITR_I32; return true;
    case ITR__PLAN__DTYPE__DTYPE_I64: *out = ITR_I64; return true;
    case ITR__PLAN__DTYPE__DTYPE_BOOL: *out = ITR_BOOL; return true;
    default: return false;
    }
}

static Itr__Plan__DimKind dimkind_to_pb(enum itr_dim_kind k) {
    switch (k) {
    case ITR_DIM_CONST: return ITR__PLAN__DIM_KIND__DIM_CONST;
    case ITR_DIM_SYM: return ITR__PLAN__DIM_KIND__DIM_SYM;
    case ITR_DIM_ADD: return ITR__PLAN__DIM_KIND__DIM_ADD;
    case ITR_DIM_SUB: return ITR__PLAN__DIM_KIND__DIM_SUB;
    case ITR_DIM_MUL: return ITR__PLAN__DIM_KIND__DIM_MUL;
    default: return ITR__PLAN__DIM_KIND__DIM_DIV;
    }
}

static bool dimkind_from_pb(int v, enum itr_dim_kind *out) {
    switch (v) {
    case ITR__PLAN__DIM_KIND__DIM_CONST: *out = ITR_DIM_CONST; return true;
    case ITR__PLAN__DIM_KIND__DIM_SYM: *out = ITR_DIM_SYM; return true;
    case ITR__PLAN__DIM_KIND__DIM_ADD: *out = ITR_DIM_ADD; return true;
    case ITR__PLAN__DIM_KIND__DIM_SUB: *out = ITR_DIM_SUB; return true;
    case ITR__PLAN__DIM_KIND__DIM_MUL: *out = ITR_DIM_MUL; return true;
    case ITR__PLAN__DIM_KIND__DIM_DIV: *out = ITR_DIM_DIV; return true;
    default: return false;
    }
}

static Itr__Plan__InitKind init_to_pb(enum itr_init_kind k) {
    switch (k) {
    case ITR_INIT_ZEROS: return ITR__PLAN__INIT_KIND__INIT_ZEROS;
    case ITR_INIT_ONES: return ITR__PLAN__INIT_KIND__INIT_ONES;
    case ITR_INIT_CONSTANT: return ITR__PLAN__INIT_KIND__INIT_CONSTANT;
    case ITR_INIT_UNIFORM: return ITR__PLAN__INIT_KIND__INIT_UNIFORM;
    case ITR_INIT_NORMAL: return ITR__PLAN__INIT_KIND__INIT_NORMAL;
    case ITR_INIT_XAVIER_UNIFORM: return ITR__PLAN__INIT_KIND__INIT_XAVIER_UNIFORM;
    default: return ITR__PLAN__INIT_KIND__INIT_UNSPECIFIED;
    }
}

static bool init_from_pb(int v, enum itr_init_kind *out) {
    switch (v) {
    case ITR__PLAN__INIT_KIND__INIT_ZEROS: *out = ITR_INIT_ZEROS; return true;
    case ITR__PLAN__INIT_KIND__INIT_ONES: *out = ITR_INIT_ONES; return true;
    case ITR__PLAN__INIT_KIND__INIT_CONSTANT: *out = ITR_INIT_CONSTANT; return true;
    case ITR__PLAN__INIT_KIND__INIT_UNIFORM: *out = ITR_INIT_UNIFORM; return true;
    case ITR__PLAN__INIT_KIND__INIT_NORMAL: *out = ITR_INIT_NORMAL; return true;
    case ITR__PLAN__INIT_KIND__INIT_XAVIER_UNIFORM: *out = ITR_INIT_XAVIER_UNIFORM; return true;
    default: return false;
    }
}

static Itr__Plan__Phase phase_to_pb(enum itr_phase ph) {
    switch (ph) {
    case ITR_PHASE_FORWARD: return ITR__PLAN__PHASE__PHASE_FORWARD;
    case ITR_PHASE_BACKWARD: return ITR__PLAN__PHASE__PHASE_BACKWARD;
    case ITR_PHASE_OPTIMIZER: return ITR__PLAN__PHASE__PHASE_OPTIMIZER;
    default: return ITR__PLAN__PHASE__PHASE_NONE;
    }
}

static bool phase_from_pb(int v, enum itr_phase *out) {
    switch (v) {
    case ITR__PLAN__PHASE__PHASE_NONE: *out = ITR_PHASE_NONE; return true;
    case ITR__PLAN__PHASE__PHASE_FORWARD: *out = ITR_PHASE_FORWARD; return true;
    case ITR__PLAN__PHASE__PHASE_BACKWARD: *out = ITR_PHASE_BACKWARD; return true;
    case ITR__PLAN__PHASE__PHASE_OPTIMIZER: *out = ITR_PHASE_OPTIMIZER; return true;
    default: return false;
    }
}

static Itr__Plan__OptimizerKind optkind_to_pb(enum itr_optimizer_kind k) {
    switch (k) {
    case ITR_OPT_SGD: return ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_SGD;
    case ITR_OPT_ADAM: return ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_ADAM;
    case ITR_OPT_ADAMW: return ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_ADAMW;
    default: return ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_NONE;
    }
}

static bool optkind_from_pb(int v, enum itr_optimizer_kind *out) {
    switch (v) {
    case ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_NONE: *out = ITR_OPT_NONE; return true;
    case ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_SGD: *out = ITR_OPT_SGD; return true;
    case ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_ADAM: *out = ITR_OPT_ADAM; return true;
    case ITR__PLAN__OPTIMIZER_KIND__OPTIMIZER_ADAMW: *out = ITR_OPT_ADAMW; return true;
    default: return false;
    }
}

static Itr__Plan__UpdateKind updkind_to_pb(enum itr_update_kind k) {
    switch (k) {
    case ITR_UPDATE_PARAM: return ITR__PLAN__UPDATE_KIND__UPDATE_PARAM;
    case ITR_UPDATE_OPTIMIZER: return ITR__PLAN__UPDATE_KIND__UPDATE_OPTIMIZER;
    default: return ITR__PLAN__UPDATE_KIND__UPDATE_STATE;
    }
}

static bool updkind_from_pb(int v, enum itr_update_kind *out) {
    switch (v) {
    case ITR__PLAN__UPDATE_KIND__UPDATE_STATE: *out = ITR_UPDATE_STATE; return true;
    case ITR__PLAN__UPDATE_KIND__UPDATE_PARAM: *out = ITR_UPDATE_PARAM; return true;
    case ITR__PLAN__UPDATE_KIND__UPDATE_OPTIMIZER: *out = ITR_UPDATE_OPTIMIZER; return true;
    default: return false;
    }
}

// ------------------------------------------------------------ the program hash
//
// XXH64 over a canonical byte stream: every integer as 8 little-endian
// bytes, every string as its length then its bytes, floats by bit pattern.
// Dims enter by the structural hash of their expression rather than by pool
// index, so two programs with the same types hash alike even if their dim
// pools were filled in different orders or hold unused entries. Source
// locations are left out: moving code around in the .ir does not change the
// program.

struct hasher {
    XXH64_state_t st;
    const uint64_t *dimh;
    int n_dims;
};

static void h_bytes(struct hasher *h, const void *p, size_t n) { XXH64_update(&h->st, p, n); }
static void h_u64(struct hasher *h, uint64_t v) { uint8_t b[8]; put_u64(b, v); h_bytes(h, b, 8); }
static void h_i64(struct hasher *h, int64_t v) { h_u64(h, (uint64_t)v); }
static void h_f64(struct hasher *h, double v) { uint64_t u; memcpy(&u, &v, 8); h_u64(h, u); }
static void h_str(struct hasher *h, const char *s) {
    size_t n = s ? strlen(s) : 0;
    h_u64(h, n);
    h_bytes(h, s ? s : "", n);
}
static void h_dim(struct hasher *h, itr_dim d) {
    h_u64(h, d >= 0 && d < h->n_dims ? h->dimh[d] : UINT64_C(0xbad0d1));
}
static void h_type(struct hasher *h, const struct itr_type *t) {
    h_i64(h, t->dtype);
    h_i64(h, t->rank);
    for (int i = 0; i < t->rank && i < ITR_MAX_RANK; i++) h_dim(h, t->dims[i]);
}

static int graph_index(const struct itr_program *p, const struct itr_graph *g) {
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i] == g) return i;
    return -1;
}

static void h_attr(struct hasher *h, const struct itr_program *p, const struct itr_attr *a) {
    h_i64(h, a->kind);
    switch (a->kind) {
    case ITR_ATTR_INT: h_i64(h, a->u.i); break;
    case ITR_ATTR_BOOL: h_i64(h, a->u.i != 0); break;   // plans store bools as 0/1
    case ITR_ATTR_FLOAT: h_f64(h, a->u.f); break;
    case ITR_ATTR_DTYPE: h_i64(h, a->u.dtype); break;
    case ITR_ATTR_STR: h_str(h, a->u.s); break;
    case ITR_ATTR_INTS:
        h_i64(h, a->u.ints.n);
        for (int i = 0; i < a->u.ints.n; i++) h_i64(h, a->u.ints.v[i]);
        break;
    case ITR_ATTR_FLOATS:
        h_i64(h, a->u.floats.n);
        for (int i = 0; i < a->u.floats.n; i++) h_f64(h, a->u.floats.v[i]);
        break;
    case ITR_ATTR_DIMS:
        h_i64(h, a->u.dims.n);
        for (int i = 0; i < a->u.dims.n; i++) h_dim(h, a->u.dims.v[i]);
        break;
    case ITR_ATTR_GRAPH: h_i64(h, graph_index(p, a->u.graph)); break;
    case ITR_ATTR_TENSOR: {
        const struct itr_tensor *t = a->u.tensor;
        if (!t) { h_i64(h, -1); break; }
        h_i64(h, t->dtype);
        h_i64(h, t->rank);
        for (int i = 0; i < t->rank; i++) h_i64(h, t->shape[i]);
        size_t nb = itr_tensor_nbytes(t);
        h_u64(h, nb);
        if (t->dtype == ITR_BOOL)   // any nonzero byte means true, as plans normalise them
            for (size_t i = 0; i < nb; i++) h_bytes(h, ((const uint8_t *)t->data)[i] ? "\1" : "\0", 1);
        else if (nb)
            h_bytes(h, t->data, nb);
        break;
    }
    default: break;
    }
}

uint64_t itr_program_hash(const struct itr_program *p) {
    struct hasher h;
    XXH64_reset(&h.st, 0);
    uint64_t *dimh = malloc((size_t)(p->n_dimnodes > 0 ? p->n_dimnodes : 1) * sizeof *dimh);
    if (!dimh) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    // Operands always precede their expression in the pool (they are interned
    // first), so one forward sweep computes every structural hash.
    for (int i = 0; i < p->n_dimnodes; i++) {
        const struct itr_dim_node *n = &p->dimnodes[i];
        uint64_t w[4] = { (uint64_t)n->kind, (uint64_t)n->value, 0, 0 };
        if (n->kind != ITR_DIM_CONST && n->kind != ITR_DIM_SYM) {
            w[1] = 0;
            w[2] = n->a >= 0 && n->a < i ? dimh[n->a] : UINT64_C(0xbad0d1);
            w[3] = n->b >= 0 && n->b < i ? dimh[n->b] : UINT64_C(0xbad0d1);
        }
        uint8_t b[32];
        for (int k = 0; k < 4; k++) put_u64(b + 8 * k, w[k]);
        dimh[i] = XXH64(b, sizeof b, 0x17c);
    }
    h.dimh = dimh;
    h.n_dims = p->n_dimnodes;

    h_bytes(&h, "itrc-program-v1", 15);
    h_str(&h, p->name);
    h_i64(&h, p->n_symbols);
    for (int i = 0; i < p->n_symbols; i++) {
        h_str(&h, p->symbols[i].name);
        h_i64(&h, p->symbols[i].default_value);
        h_i64(&h, p->symbols[i].has_default);
    }
    h_i64(&h, p->n_params);
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_param *q = &p->params[i];
        h_str(&h, q->name);
        h_type(&h, &q->type);
        h_i64(&h, q->init.kind);
        h_f64(&h, q->init.a);
        h_f64(&h, q->init.b);
        h_i64(&h, q->frozen);
    }
    h_i64(&h, p->n_graphs);
    for (int gi = 0; gi < p->n_graphs; gi++) {
        const struct itr_graph *g = p->graphs[gi];
        h_str(&h, g->name);
        h_i64(&h, g->kind);
        h_i64(&h, g->n_values);
        for (int i = 0; i < g->n_values; i++) {
            const struct itr_value *v = &g->values[i];
            h_str(&h, v->name);
            h_type(&h, &v->type);
            h_i64(&h, v->kind);
            h_i64(&h, v->node);
            h_i64(&h, v->out_index);
            h_i64(&h, v->param);
        }
        h_i64(&h, g->n_nodes);
        for (int i = 0; i < g->n_nodes; i++) {
            const struct itr_node *n = &g->nodes[i];
            const struct itr_op_info *info = itr_op_info(n->op);
            h_str(&h, info ? info->name : "?");
            h_i64(&h, n->n_inputs);
            for (int k = 0; k < n->n_inputs; k++) h_i64(&h, n->inputs[k]);
            h_i64(&h, n->n_outputs);
            for (int k = 0; k < n->n_outputs; k++) h_i64(&h, n->outputs[k]);
            int na = info ? info->n_attrs : 0;
            h_i64(&h, na);
            for (int k = 0; k < na; k++) {
                h_str(&h, info->attrs[k].name);
                h_attr(&h, p, &n->attrs[k]);
            }
            h_str(&h, n->scope);
        }
        h_i64(&h, g->n_inputs);
        for (int i = 0; i < g->n_inputs; i++) h_i64(&h, g->inputs[i]);
        h_i64(&h, g->n_outputs);
        for (int i = 0; i < g->n_outputs; i++) {
            h_i64(&h, g->outputs[i]);
            h_str(&h, g->output_names ? g->output_names[i] : NULL);
        }
    }
    // Programs without training hash exactly as before this block existed,
    // so their fingerprints (and the weights that record them) stay valid.
    bool training = p->optimizer.kind != ITR_OPT_NONE || p->n_updates || p->train_compiled;
    for (int gi = 0; gi < p->n_graphs && !training; gi++) training = p->graphs[gi]->train;
    if (training) {
        const struct itr_optimizer *o = &p->optimizer;
        h_bytes(&h, "itrc-training-v1", 16);
        h_i64(&h, o->kind);
        h_f64(&h, o->lr);
        h_f64(&h, o->beta1);
        h_f64(&h, o->beta2);
        h_f64(&h, o->eps);
        h_f64(&h, o->momentum);
        h_f64(&h, o->weight_decay);
        h_f64(&h, o->clip_grad_norm);
        h_i64(&h, p->train_compiled);
        h_i64(&h, p->n_updates);
        for (int i = 0; i < p->n_updates; i++) {
            h_i64(&h, p->updates[i].param);
            h_str(&h, p->updates[i].output);
            h_i64(&h, p->updates[i].kind);
        }
        for (int gi = 0; gi < p->n_graphs; gi++) {
            const struct itr_graph *g = p->graphs[gi];
            if (!g->train) continue;
            h_i64(&h, gi);
            for (int i = 0; i < g->n_nodes; i++) h_i64(&h, g->nodes[i].phase);
        }
    }
    free(dimh);
    return XXH64_digest(&h.st);
}

// ------------------------------------------------------------ packing
//
// Every protobuf struct and array lives in one scratch arena, freed once the
// message is serialised; strings point into the program (protobuf-c only
// reads them while packing).

struct packer {
    struct itr_arena *a;
    const struct itr_program *p;
    struct itr_diags *d;
    bool ok;
};

#define NEW(pk, T, init_fn) ({ T *x_ = itr_arena_alloc((pk)->a, sizeof(T)); init_fn(x_); x_; })
#define NEW_ARRAY(pk, T, n) ((T *)itr_arena_alloc((pk)->a, ((size_t)(n) ? (size_t)(n) : 1) * sizeof(T)))

static char *pstr(const char *s) { return (char *)(s ? s : ""); }

static Itr__Plan__Location *pack_loc(struct packer *pk, struct itr_loc loc) {
    if (!loc.file && loc.line == 0 && loc.col == 0) return NULL;
    Itr__Plan__Location *l = NEW(pk, Itr__Plan__Location, itr__plan__location__init);
    l->file = pstr(loc.file);
    l->line = loc.line;
    l->col = loc.col;
    return l;
}

static int32_t *pack_dims(struct packer *pk, const struct itr_type *t, size_t *n) {
    int rank = t->rank < 0 ? 0 : t->rank > ITR_MAX_RANK ? ITR_MAX_RANK : t->rank;
    int32_t *v = NEW_ARRAY(pk, int32_t, rank);
    for (int i = 0; i < rank; i++) v[i] = t->dims[i];
    *n = (size_t)rank;
    return v;
}

static Itr__Plan__Attribute *pack_attr(struct packer *pk, const char *name, const struct itr_attr *a) {
    Itr__Plan__Attribute *pa = NEW(pk, Itr__Plan__Attribute, itr__plan__attribute__init);
    pa->name = pstr(name);
    switch (a->kind) {
    case ITR_ATTR_INT: pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_I; pa->i = a->u.i; break;
    case ITR_ATTR_FLOAT: pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_F; pa->f = a->u.f; break;
    case ITR_ATTR_BOOL: pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_B; pa->b = a->u.i != 0; break;
    case ITR_ATTR_DTYPE: pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_DTYPE; pa->dtype = dtype_to_pb(a->u.dtype); break;
    case ITR_ATTR_STR: pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_S; pa->s = pstr(a->u.s); break;
    case ITR_ATTR_INTS: {
        Itr__Plan__Ints *x = NEW(pk, Itr__Plan__Ints, itr__plan__ints__init);
        x->n_v = a->u.ints.n > 0 ? (size_t)a->u.ints.n : 0;
        x->v = a->u.ints.v;
        pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_INTS;
        pa->ints = x;
        break;
    }
    case ITR_ATTR_FLOATS: {
        Itr__Plan__Floats *x = NEW(pk, Itr__Plan__Floats, itr__plan__floats__init);
        x->n_v = a->u.floats.n > 0 ? (size_t)a->u.floats.n : 0;
        x->v = a->u.floats.v;
        pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_FLOATS;
        pa->floats = x;
        break;
    }
    case ITR_ATTR_DIMS: {
        Itr__Plan__Dims *x = NEW(pk, Itr__Plan__Dims, itr__plan__dims__init);
        x->n_v = a->u.dims.n > 0 ? (size_t)a->u.dims.n : 0;
        x->v = a->u.dims.v;
        pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_DIMS;
        pa->dims = x;
        break;
    }
    case ITR_ATTR_GRAPH: {
        int gi = graph_index(pk->p, a->u.graph);
        if (gi < 0) {
            itr_diag_error(pk->d, ITR_NOLOC, "internal error: attribute '%s' refers to a graph outside the program", name);
            pk->ok = false;
        }
        pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_GRAPH;
        pa->graph = gi;
        break;
    }
    case ITR_ATTR_TENSOR: {
        const struct itr_tensor *t = a->u.tensor;
        if (!t) {
            itr_diag_error(pk->d, ITR_NOLOC, "internal error: tensor attribute '%s' has no tensor", name);
            pk->ok = false;
            return pa;
        }
        Itr__Plan__Tensor *x = NEW(pk, Itr__Plan__Tensor, itr__plan__tensor__init);
        x->dtype = dtype_to_pb(t->dtype);
        x->n_shape = (size_t)t->rank;
        x->shape = NEW_ARRAY(pk, int64_t, t->rank);
        for (int i = 0; i < t->rank; i++) x->shape[i] = t->shape[i];
        x->data.len = itr_tensor_nbytes(t);
        x->data.data = t->data;
        pa->value_case = ITR__PLAN__ATTRIBUTE__VALUE_TENSOR;
        pa->tensor = x;
        break;
    }
    default: return NULL;   // absent optional attribute: not written
    }
    return pa;
}

static Itr__Plan__Graph *pack_graph(struct packer *pk, const struct itr_graph *g) {
    Itr__Plan__Graph *pg = NEW(pk, Itr__Plan__Graph, itr__plan__graph__init);
    pg->name = pstr(g->name);
    pg->kind = g->kind == ITR_GRAPH_BODY ? ITR__PLAN__GRAPH_KIND__GRAPH_BODY : ITR__PLAN__GRAPH_KIND__GRAPH_ENTRY;
    pg->loc = pack_loc(pk, g->loc);
    pg->n_values = (size_t)g->n_values;
    pg->values = NEW_ARRAY(pk, Itr__Plan__Value *, g->n_values);
    for (int i = 0; i < g->n_values; i++) {
        const struct itr_value *v = &g->values[i];
        Itr__Plan__Value *pv = NEW(pk, Itr__Plan__Value, itr__plan__value__init);
        pv->name = pstr(v->name);
        pv->dtype = dtype_to_pb(v->type.dtype);
        pv->dims = pack_dims(pk, &v->type, &pv->n_dims);
        pv->kind = v->kind == ITR_VALUE_PARAM ? ITR__PLAN__VALUE_KIND__VALUE_PARAM
                 : v->kind == ITR_VALUE_NODE ? ITR__PLAN__VALUE_KIND__VALUE_NODE : ITR__PLAN__VALUE_KIND__VALUE_INPUT;
        pv->node = v->kind == ITR_VALUE_NODE ? v->node : 0;
        pv->out_index = v->kind == ITR_VALUE_NODE ? v->out_index : 0;
        pv->param = v->kind == ITR_VALUE_PARAM ? v->param : 0;
        pv->loc = pack_loc(pk, v->loc);
        pg->values[i] = pv;
    }
    pg->n_nodes = (size_t)g->n_nodes;
    pg->nodes = NEW_ARRAY(pk, Itr__Plan__Node *, g->n_nodes);
    for (int i = 0; i < g->n_nodes; i++) {
        const struct itr_node *n = &g->nodes[i];
        const struct itr_op_info *info = itr_op_info(n->op);
        Itr__Plan__Node *pn = NEW(pk, Itr__Plan__Node, itr__plan__node__init);
        if (!info) {
            itr_diag_error(pk->d, ITR_NOLOC, "internal error: graph '%s' node %d has no valid op", g->name, i);
            pk->ok = false;
            pg->nodes[i] = pn;
            continue;
        }
        pn->op = pstr(info->name);
        pn->n_inputs = (size_t)n->n_inputs;
        pn->inputs = n->inputs;
        pn->n_outputs = (size_t)n->n_outputs;
        pn->outputs = n->outputs;
        pn->attrs = NEW_ARRAY(pk, Itr__Plan__Attribute *, info->n_attrs);
        for (int k = 0; k < info->n_attrs; k++) {
            Itr__Plan__Attribute *pa = pack_attr(pk, info->attrs[k].name, &n->attrs[k]);
            if (pa) pn->attrs[pn->n_attrs++] = pa;
        }
        pn->loc = pack_loc(pk, n->loc);
        pn->scope = pstr(n->scope);
        pn->phase = phase_to_pb(n->phase);
        pg->nodes[i] = pn;
    }
    pg->n_inputs = (size_t)g->n_inputs;
    pg->inputs = g->inputs;
    pg->n_outputs = (size_t)g->n_outputs;
    pg->outputs = g->outputs;
    pg->n_output_names = (size_t)g->n_outputs;
    pg->output_names = NEW_ARRAY(pk, char *, g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) pg->output_names[i] = pstr(g->output_names ? g->output_names[i] : NULL);
    pg->train = g->train;
    return pg;
}

static Itr__Plan__Schedule *pack_schedule(struct packer *pk, int32_t graph, bool f64, const struct kir_schedule *s) {
    Itr__Plan__Schedule *x = NEW(pk, Itr__Plan__Schedule, itr__plan__schedule__init);
    x->graph = graph;
    x->f64 = f64;
    x->n_kernels = (size_t)s->n_kernels;
    x->kernels = NEW_ARRAY(pk, Itr__Plan__Kernel *, s->n_kernels);
    for (int i = 0; i < s->n_kernels; i++) {
        const struct kir_kernel *k = s->kernels[i];
        Itr__Plan__Kernel *pk_ = NEW(pk, Itr__Plan__Kernel, itr__plan__kernel__init);
        pk_->name = pstr(k->name);
        pk_->n_bufs = (size_t)k->n_bufs;
        pk_->bufs = NEW_ARRAY(pk, Itr__Plan__KirBuffer *, k->n_bufs);
        for (int j = 0; j < k->n_bufs; j++) {
            Itr__Plan__KirBuffer *b = NEW(pk, Itr__Plan__KirBuffer, itr__plan__kir_buffer__init);
            b->name = pstr(k->bufs[j].name);
            b->dtype = dtype_to_pb(k->bufs[j].dtype);
            b->written = k->bufs[j].written;
            b->noalias = k->bufs[j].noalias;
            pk_->bufs[j] = b;
        }
        pk_->n_dims = (size_t)k->n_dims;
        pk_->dims = NEW_ARRAY(pk, Itr__Plan__KirDim *, k->n_dims);
        for (int j = 0; j < k->n_dims; j++) {
            Itr__Plan__KirDim *dm = NEW(pk, Itr__Plan__KirDim, itr__plan__kir_dim__init);
            dm->name = pstr(k->dims[j].name);
            dm->dim = k->dims[j].dim;
            pk_->dims[j] = dm;
        }
        pk_->n_vars = (size_t)k->n_vars;
        pk_->vars = NEW_ARRAY(pk, Itr__Plan__KirVar *, k->n_vars);
        for (int j = 0; j < k->n_vars; j++) {
            Itr__Plan__KirVar *v = NEW(pk, Itr__Plan__KirVar, itr__plan__kir_var__init);
            v->name = pstr(k->vars[j].name);
            v->kind = k->vars[j].kind;
            v->type = k->vars[j].type;
            v->lanes = k->vars[j].lanes;
            v->combine = k->vars[j].combine;
            pk_->vars[j] = v;
        }
        pk_->n_exprs = (size_t)k->n_exprs;
        pk_->exprs = NEW_ARRAY(pk, Itr__Plan__KirExpr *, k->n_exprs);
        for (int j = 0; j < k->n_exprs; j++) {
            const struct kir_expr *e = &k->exprs[j];
            Itr__Plan__KirExpr *x2 = NEW(pk, Itr__Plan__KirExpr, itr__plan__kir_expr__init);
            x2->kind = e->kind;
            x2->type = e->type;
            x2->op = e->op;
            x2->a = e->a;
            x2->b = e->b;
            x2->c = e->c;
            x2->buf = e->buf;
            x2->var = e->var;
            x2->dim = e->dim;
            x2->ival = e->ival;
            x2->fval = e->fval;
            pk_->exprs[j] = x2;
        }
        pk_->n_stmts = (size_t)k->n_stmts;
        pk_->stmts = NEW_ARRAY(pk, Itr__Plan__KirStmt *, k->n_stmts);
        for (int j = 0; j < k->n_stmts; j++) {
            const struct kir_stmt *st = &k->stmts[j];
            Itr__Plan__KirStmt *x2 = NEW(pk, Itr__Plan__KirStmt, itr__plan__kir_stmt__init);
            x2->kind = st->kind;
            x2->loop = st->loop;
            x2->var = st->var;
            x2->lo = st->lo;
            x2->hi = st->hi;
            x2->buf = st->buf;
            x2->index = st->index;
            x2->value = st->value;
            x2->cond = st->cond;
            x2->n_body = (size_t)st->n_body;
            x2->body = (int32_t *)st->body;
            pk_->stmts[j] = x2;
        }
        pk_->body = k->body;
        pk_->parallel_hi = k->parallel_hi;
        pk_->parallel_dim = k->parallel_dim;
        x->kernels[i] = pk_;
    }
    x->n_steps = (size_t)s->n_steps;
    x->steps = NEW_ARRAY(pk, Itr__Plan__ScheduleStep *, s->n_steps);
    for (int i = 0; i < s->n_steps; i++) {
        const struct kir_step *st = &s->steps[i];
        Itr__Plan__ScheduleStep *y = NEW(pk, Itr__Plan__ScheduleStep, itr__plan__schedule_step__init);
        y->kind = st->kind;
        y->kernel = st->kernel;
        y->n_bufs = (size_t)st->n_bufs;
        y->bufs = st->bufs;
        y->node = st->node;
        y->guard_count = st->guard_count;
        y->guard_node = st->guard_node + 1;
        y->gemm_view_a = st->gemm_view_a + 1;
        y->gemm_view_b = st->gemm_view_b + 1;
        if (st->alias) {
            y->n_alias = (size_t)st->n_bufs;
            y->alias = NEW_ARRAY(pk, int32_t, st->n_bufs);
            for (int b = 0; b < st->n_bufs; b++) y->alias[b] = st->alias[b] + 1;
        }
        y->body = st->body ? pack_schedule(pk, -1, f64, st->body) : NULL;
        y->gemm_a = st->gemm_a;
        y->gemm_b = st->gemm_b;
        y->trans_a = st->trans_a;
        y->trans_b = st->trans_b;
        x->steps[i] = y;
    }
    x->n_materialised = (size_t)s->n_values;
    x->materialised = NEW_ARRAY(pk, protobuf_c_boolean, s->n_values);
    for (int i = 0; i < s->n_values; i++) x->materialised[i] = s->materialised[i];
    x->n_last_step = (size_t)s->n_values;
    x->last_step = s->last_step;
    return x;
}

// A schedule's device code (target cuda); the bytes stay the program's.
static void pack_images(struct packer *pk, Itr__Plan__Schedule *x, const struct itr_devcode_unit *u) {
    if (!u || !u->n_images) return;
    x->n_images = (size_t)u->n_images;
    x->images = NEW_ARRAY(pk, Itr__Plan__DeviceImage *, u->n_images);
    for (int i = 0; i < u->n_images; i++) {
        Itr__Plan__DeviceImage *y = NEW(pk, Itr__Plan__DeviceImage, itr__plan__device_image__init);
        y->arch = (char *)u->images[i].arch;
        y->image.data = u->images[i].data;
        y->image.len = u->images[i].size;
        x->images[i] = y;
    }
}

static bool pack_impl(const struct itr_program *p, const char *target, const struct kir_plan_kernels *kernels,
                      uint8_t **buf, size_t *len, struct itr_diags *d) {
    *buf = NULL;
    *len = 0;
    struct packer pk = { itr_arena_new(), p, d, true };
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(p));

    Itr__Plan__Plan m;
    itr__plan__plan__init(&m);
    m.format_version = ITR_PLAN_FORMAT_VERSION;
    m.compiler_version = (char *)ITR_VERSION_STRING;
    m.fingerprint = fp;
    m.target = pstr(target ? target : "ref");
    m.model_name = pstr(p->name);
    m.loc = pack_loc(&pk, p->loc);

    m.n_symbols = (size_t)p->n_symbols;
    m.symbols = NEW_ARRAY(&pk, Itr__Plan__Symbol *, p->n_symbols);
    for (int i = 0; i < p->n_symbols; i++) {
        Itr__Plan__Symbol *s = NEW(&pk, Itr__Plan__Symbol, itr__plan__symbol__init);
        s->name = pstr(p->symbols[i].name);
        s->default_value = p->symbols[i].default_value;
        s->has_default = p->symbols[i].has_default;
        s->loc = pack_loc(&pk, p->symbols[i].loc);
        m.symbols[i] = s;
    }
    m.n_dims = (size_t)p->n_dimnodes;
    m.dims = NEW_ARRAY(&pk, Itr__Plan__DimNode *, p->n_dimnodes);
    for (int i = 0; i < p->n_dimnodes; i++) {
        const struct itr_dim_node *n = &p->dimnodes[i];
        Itr__Plan__DimNode *x = NEW(&pk, Itr__Plan__DimNode, itr__plan__dim_node__init);
        x->kind = dimkind_to_pb(n->kind);
        x->value = n->value;
        if (n->kind != ITR_DIM_CONST && n->kind != ITR_DIM_SYM) { x->a = n->a; x->b = n->b; }
        m.dims[i] = x;
    }
    m.n_params = (size_t)p->n_params;
    m.params = NEW_ARRAY(&pk, Itr__Plan__Param *, p->n_params);
    for (int i = 0; i < p->n_params; i++) {
        const struct itr_param *q = &p->params[i];
        Itr__Plan__Param *x = NEW(&pk, Itr__Plan__Param, itr__plan__param__init);
        x->name = pstr(q->name);
        x->dtype = dtype_to_pb(q->type.dtype);
        x->dims = pack_dims(&pk, &q->type, &x->n_dims);
        x->init = init_to_pb(q->init.kind);
        x->init_a = q->init.a;
        x->init_b = q->init.b;
        x->frozen = q->frozen;
        x->loc = pack_loc(&pk, q->loc);
        m.params[i] = x;
    }
    m.n_graphs = (size_t)p->n_graphs;
    m.graphs = NEW_ARRAY(&pk, Itr__Plan__Graph *, p->n_graphs);
    for (int i = 0; i < p->n_graphs; i++) m.graphs[i] = pack_graph(&pk, p->graphs[i]);
    if (p->optimizer.kind != ITR_OPT_NONE) {
        const struct itr_optimizer *o = &p->optimizer;
        Itr__Plan__Optimizer *x = NEW(&pk, Itr__Plan__Optimizer, itr__plan__optimizer__init);
        x->kind = optkind_to_pb(o->kind);
        x->lr = o->lr;
        x->beta1 = o->beta1;
        x->beta2 = o->beta2;
        x->eps = o->eps;
        x->momentum = o->momentum;
        x->weight_decay = o->weight_decay;
        x->clip_grad_norm = o->clip_grad_norm;
        x->loc = pack_loc(&pk, o->loc);
        m.optimizer = x;
    }
    m.n_updates = (size_t)p->n_updates;
    m.updates = NEW_ARRAY(&pk, Itr__Plan__StateUpdate *, p->n_updates);
    for (int i = 0; i < p->n_updates; i++) {
        Itr__Plan__StateUpdate *x = NEW(&pk, Itr__Plan__StateUpdate, itr__plan__state_update__init);
        x->param = p->updates[i].param;
        x->output = pstr(p->updates[i].output);
        x->kind = updkind_to_pb(p->updates[i].kind);
        m.updates[i] = x;
    }
    m.train_compiled = p->train_compiled;
    if (kernels) {
        m.n_schedules = (size_t)kernels->n;
        m.schedules = NEW_ARRAY(&pk, Itr__Plan__Schedule *, kernels->n);
        for (int i = 0; i < kernels->n; i++) {
            m.schedules[i] = pack_schedule(&pk, kernels->items[i].graph, kernels->items[i].f64, kernels->items[i].s);
            pack_images(&pk, m.schedules[i], itr_devcode_find(p->devcode, kernels->items[i].graph, kernels->items[i].f64));
        }
    }

    if (!pk.ok) { itr_arena_free(pk.a); return false; }
    size_t body = itr__plan__plan__get_packed_size(&m);
    uint8_t *out = malloc(HEADER_SIZE + body);
    if (!out) {
        itr_diag_error(d, ITR_NOLOC, "out of memory packing a plan of %zu bytes", body);
        itr_arena_free(pk.a);
        return false;
    }
    size_t written = itr__plan__plan__pack(&m, out + HEADER_SIZE);
    itr_arena_free(pk.a);
    memcpy(out, plan_magic, 8);
    put_u32(out + 8, ITR_PLAN_FORMAT_VERSION);
    put_u32(out + 12, 0);
    put_u64(out + 16, written);
    put_u64(out + 24, XXH64(out + HEADER_SIZE, written, 0));
    *buf = out;
    *len = HEADER_SIZE + written;
    return true;
}

bool itr_plan_pack(const struct itr_program *p, const char *target, uint8_t **buf, size_t *len, struct itr_diags *d) {
    return pack_impl(p, target, p->kernels, buf, len, d);
}

bool itr_plan_write(const struct itr_program *p, const char *target, const char *path, struct itr_diags *d) {
    uint8_t *buf;
    size_t len;
    if (!itr_plan_pack(p, target, &buf, &len, d)) return false;
    const void *parts[1] = { buf };
    bool ok = itr_file_write_atomic(path, parts, &len, 1, d);
    free(buf);
    return ok;
}

// ------------------------------------------------------------ unpacking

struct reader {
    const char *what;
    struct itr_diags *d;
    const Itr__Plan__Plan *m;
    struct itr_program *p;
    const char *last_file;       // locations repeat one file name thousands of times:
    const char *last_file_copy;  // keep one arena copy of the latest
};

static bool bad(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool bad(struct reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    itr_diag_error(r->d, ITR_NOLOC, "%s: %s", r->what, msg);
    return false;
}

// Counts from protobuf-c are size_t; the program stores int. Anything beyond
// this is not a plan itrc wrote, and keeps later int arithmetic overflow-free.
#define MAX_COUNT ((size_t)1 << 28)

static struct itr_loc read_loc(struct reader *r, const Itr__Plan__Location *l) {
    if (!l) return ITR_NOLOC;
    struct itr_loc loc = { NULL, l->line < 0 ? 0 : l->line, l->col < 0 ? 0 : l->col };
    if (l->file && l->file[0]) {
        if (!r->last_file || strcmp(r->last_file, l->file) != 0) {
            r->last_file = l->file;
            r->last_file_copy = itr_program_strdup(r->p, l->file);
        }
        loc.file = r->last_file_copy;
    }
    return loc;
}

static const char *dup_name(const char **names, size_t n);

static bool read_type(struct reader *r, int dtype, const int32_t *dims, size_t n_dims, struct itr_type *t,
                      const char *whose) {
    memset(t, 0, sizeof *t);
    if (!dtype_from_pb(dtype, &t->dtype)) return bad(r, "%s: invalid dtype code %d", whose, dtype);
    if (n_dims > ITR_MAX_RANK) return bad(r, "%s: rank %zu exceeds the maximum %d", whose, n_dims, ITR_MAX_RANK);
    t->rank = (int)n_dims;
    for (size_t i = 0; i < n_dims; i++) {
        if (dims[i] < 0 || dims[i] >= r->p->n_dimnodes)
            return bad(r, "%s: dimension %zu refers to dim expression %d, the plan has %d", whose, i, dims[i],
                       r->p->n_dimnodes);
        t->dims[i] = dims[i];
    }
    return true;
}

static bool read_symbols(struct reader *r) {
    const Itr__Plan__Plan *m = r->m;
    if (m->n_symbols > MAX_COUNT) return bad(r, "too many symbols (%zu)", m->n_symbols);
    const char **names = malloc((m->n_symbols ? m->n_symbols : 1) * sizeof *names);
    if (!names) return bad(r, "out of memory");
    for (size_t i = 0; i < m->n_symbols; i++) {
        const Itr__Plan__Symbol *s = m->symbols[i];
        if (!s->name || !s->name[0]) { free(names); return bad(r, "symbol %zu has no name", i); }
        names[i] = s->name;
        itr_program_add_symbol(r->p, s->name, s->default_value, s->has_default, read_loc(r, s->loc));
    }
    const char *dup = dup_name(names, m->n_symbols);
    bool ok = !dup || bad(r, "symbol '%s' is declared twice", dup);
    free(names);
    return ok;
}

// The pool is rebuilt by replaying each entry through the dim constructors,
// which re-apply their canonicalisation; a pool itrc wrote replays to the same
// indices, and anything else (duplicates, unfolded constants, unsorted
// operands) is rejected instead of silently renumbered.
static bool read_dims(struct reader *r) {
    const Itr__Plan__Plan *m = r->m;
    struct itr_program *p = r->p;
    if (m->n_dims > MAX_COUNT) return bad(r, "too many dim expressions (%zu)", m->n_dims);
    for (size_t i = 0; i < m->n_dims; i++) {
        const Itr__Plan__DimNode *x = m->dims[i];
        enum itr_dim_kind kind;
        if (!dimkind_from_pb(x->kind, &kind)) return bad(r, "dim expression %zu has invalid kind %d", i, x->kind);
        itr_dim got;
        if (kind == ITR_DIM_CONST) got = itr_dim_const(p, x->value);
        else if (kind == ITR_DIM_SYM) {
            if (x->value < 0 || x->value >= p->n_symbols)
                return bad(r, "dim expression %zu refers to symbol %" PRId64 ", the plan has %d", i, x->value,
                           p->n_symbols);
            got = itr_dim_sym(p, (int32_t)x->value);
        } else {
            if (x->a < 0 || (size_t)x->a >= i || x->b < 0 || (size_t)x->b >= i)
                return bad(r, "dim expression %zu: operands %d and %d must refer to earlier expressions", i, x->a, x->b);
            int64_t va, vb;
            bool ca = itr_dim_is_const(p, x->a, &va), cb = itr_dim_is_const(p, x->b, &vb);
            // Two constants would be folded, and folding crafted values
            // could overflow; the only unfolded pair is a division by zero.
            if (x->value != 0 || (ca && cb && !(kind == ITR_DIM_DIV && vb == 0)))
                return bad(r, "dim expression %zu is not in canonical form", i);
            got = itr_dim_binary(p, kind, x->a, x->b);
        }
        if (got != (itr_dim)i) return bad(r, "dim expression %zu is not in canonical form (duplicate or unsimplified)", i);
    }
    return true;
}

static bool read_params(struct reader *r) {
    const Itr__Plan__Plan *m = r->m;
    if (m->n_params > MAX_COUNT) return bad(r, "too many parameters (%zu)", m->n_params);
    const char **names = malloc((m->n_params ? m->n_params : 1) * sizeof *names);
    if (!names) return bad(r, "out of memory");
    bool ok = true;
    for (size_t i = 0; i < m->n_params && ok; i++) {
        const Itr__Plan__Param *x = m->params[i];
        char whose[300];
        snprintf(whose, sizeof whose, "parameter '%.200s'", x->name ? x->name : "");
        struct itr_type t;
        struct itr_init init = { ITR_INIT_ZEROS, x->init_a, x->init_b };
        if (!x->name || !x->name[0]) ok = bad(r, "parameter %zu has no name", i);
        else if (!read_type(r, x->dtype, x->dims, x->n_dims, &t, whose)) ok = false;
        else if (!init_from_pb(x->init, &init.kind)) ok = bad(r, "%s: invalid initialiser code %d", whose, x->init);
        else {
            names[i] = x->name;
            itr_program_add_param(r->p, x->name, t, init, x->frozen, read_loc(r, x->loc));
        }
    }
    if (ok) {
        const char *dup = dup_name(names, m->n_params);
        if (dup) ok = bad(r, "parameter '%s' is declared twice", dup);
    }
    free(names);
    return ok;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Returns a name that occurs twice (sorting a copy), or NULL.
static const char *dup_name(const char **names, size_t n) {
    if (n < 2) return NULL;
    const char **s = malloc(n * sizeof *s);
    if (!s) return NULL;
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

static enum itr_attr_kind attr_case_kind(Itr__Plan__Attribute__ValueCase c) {
    switch (c) {
    case ITR__PLAN__ATTRIBUTE__VALUE_I: return ITR_ATTR_INT;
    case ITR__PLAN__ATTRIBUTE__VALUE_F: return ITR_ATTR_FLOAT;
    case ITR__PLAN__ATTRIBUTE__VALUE_B: return ITR_ATTR_BOOL;
    case ITR__PLAN__ATTRIBUTE__VALUE_INTS: return ITR_ATTR_INTS;
    case ITR__PLAN__ATTRIBUTE__VALUE_FLOATS: return ITR_ATTR_FLOATS;
    case ITR__PLAN__ATTRIBUTE__VALUE_DIMS: return ITR_ATTR_DIMS;
    case ITR__PLAN__ATTRIBUTE__VALUE_DTYPE: return ITR_ATTR_DTYPE;
    case ITR__PLAN__ATTRIBUTE__VALUE_S: return ITR_ATTR_STR;
    case ITR__PLAN__ATTRIBUTE__VALUE_GRAPH: return ITR_ATTR_GRAPH;
    case ITR__PLAN__ATTRIBUTE__VALUE_TENSOR: return ITR_ATTR_TENSOR;
    default: return ITR_ATTR_NONE;
    }
}

static bool read_tensor(struct reader *r, const Itr__Plan__Tensor *x, const char *whose, struct itr_tensor **out) {
    *out = NULL;
    enum itr_dtype dt;
    if (!dtype_from_pb(x->dtype, &dt)) return bad(r, "%s: invalid tensor dtype code %d", whose, x->dtype);
    if (x->n_shape > ITR_MAX_RANK) return bad(r, "%s: tensor rank %zu exceeds the maximum %d", whose, x->n_shape, ITR_MAX_RANK);
    int64_t shape[ITR_MAX_RANK], numel;
    for (size_t i = 0; i < x->n_shape; i++) shape[i] = x->shape[i];
    if (!itr_shape_numel((int)x->n_shape, shape, &numel))
        return bad(r, "%s: tensor shape has a negative or overflowing dimension", whose);
    size_t isz = itr_dtype_size(dt);
    if ((uint64_t)numel > SIZE_MAX / isz || (size_t)numel * isz != x->data.len) {
        char sh[128], need[32];
        itr_shape_format((int)x->n_shape, shape, sh, sizeof sh);
        if ((uint64_t)numel > SIZE_MAX / isz) snprintf(need, sizeof need, "too many");
        else snprintf(need, sizeof need, "%zu", (size_t)numel * isz);
        return bad(r, "%s: tensor %s%s needs %s bytes, the plan holds %zu", whose, itr_dtype_name(dt), sh, need,
                   x->data.len);
    }
    struct itr_tensor *t = itr_tensor_new(dt, (int)x->n_shape, shape);
    if (!t) return bad(r, "%s: out of memory for a tensor of %zu bytes", whose, x->data.len);
    if (x->data.len) memcpy(t->data, x->data.data, x->data.len);
    if (dt == ITR_BOOL)   // kernels may rely on bools being exactly 0 or 1
        for (size_t i = 0; i < x->data.len; i++) ((uint8_t *)t->data)[i] = ((uint8_t *)t->data)[i] != 0;
    *out = t;
    return true;
}

static void free_attr_tensors(struct itr_attr *attrs, int n) {
    for (int k = 0; k < n; k++)
        if (attrs[k].kind == ITR_ATTR_TENSOR) { itr_tensor_free(attrs[k].u.tensor); attrs[k].kind = ITR_ATTR_NONE; }
}

// Fills attrs (one per schema entry, NONE where the plan has nothing) from a
// node's stored attributes.
static bool read_attrs(struct reader *r, const Itr__Plan__Node *x, enum itr_op op, const char *where,
                       const bool *filled, struct itr_attr *attrs) {
    const struct itr_op_info *info = itr_op_info(op);
    struct itr_program *p = r->p;
    for (size_t j = 0; j < x->n_attrs; j++) {
        const Itr__Plan__Attribute *a = x->attrs[j];
        const char *aname = a->name ? a->name : "";
        int k = itr_op_attr_index(op, aname);
        if (k < 0) return bad(r, "%s: op '%s' has no attribute '%.100s'", where, info->name, aname);
        if (attrs[k].kind != ITR_ATTR_NONE) return bad(r, "%s: attribute '%s' is given twice", where, aname);
        enum itr_attr_kind kind = attr_case_kind(a->value_case);
        if (kind == ITR_ATTR_NONE) return bad(r, "%s: attribute '%s' has no value", where, aname);
        if (kind != info->attrs[k].kind)
            return bad(r, "%s: attribute '%s' of op '%s' must be %s, the plan has %s", where, aname, info->name,
                       itr_attr_kind_name(info->attrs[k].kind), itr_attr_kind_name(kind));
        struct itr_attr v = { .kind = kind };
        switch (kind) {
        case ITR_ATTR_INT: v.u.i = a->i; break;
        case ITR_ATTR_BOOL: v.u.i = a->b ? 1 : 0; break;
        case ITR_ATTR_FLOAT: v.u.f = a->f; break;
        case ITR_ATTR_DTYPE:
            if (!dtype_from_pb(a->dtype, &v.u.dtype))
                return bad(r, "%s: attribute '%s' has invalid dtype code %d", where, aname, a->dtype);
            break;
        case ITR_ATTR_STR: v.u.s = itr_program_strdup(p, a->s ? a->s : ""); break;
        case ITR_ATTR_INTS: {
            size_t n = a->ints ? a->ints->n_v : 0;
            if (n > MAX_COUNT) return bad(r, "%s: attribute '%s' is too long", where, aname);
            v.u.ints.n = (int)n;
            v.u.ints.v = itr_arena_memdup(p->arena, n ? a->ints->v : NULL, n * sizeof(int64_t));
            break;
        }
        case ITR_ATTR_FLOATS: {
            size_t n = a->floats ? a->floats->n_v : 0;
            if (n > MAX_COUNT) return bad(r, "%s: attribute '%s' is too long", where, aname);
            v.u.floats.n = (int)n;
            v.u.floats.v = itr_arena_memdup(p->arena, n ? a->floats->v : NULL, n * sizeof(double));
            break;
        }
        case ITR_ATTR_DIMS: {
            size_t n = a->dims ? a->dims->n_v : 0;
            if (n > MAX_COUNT) return bad(r, "%s: attribute '%s' is too long", where, aname);
            for (size_t i = 0; i < n; i++)
                if (a->dims->v[i] < 0 || a->dims->v[i] >= p->n_dimnodes)
                    return bad(r, "%s: attribute '%s' element %zu refers to dim expression %d, the plan has %d",
                               where, aname, i, a->dims->v[i], p->n_dimnodes);
            v.u.dims.n = (int)n;
            v.u.dims.v = itr_arena_memdup(p->arena, n ? a->dims->v : NULL, n * sizeof(itr_dim));
            break;
        }
        case ITR_ATTR_GRAPH:
            // Range and order were checked when the graphs were sorted.
            if (a->graph < 0 || a->graph >= p->n_graphs || !filled[a->graph])
                return bad(r, "%s: attribute '%s' refers to graph %d, which is not available", where, aname, a->graph);
            v.u.graph = p->graphs[a->graph];
            break;
        case ITR_ATTR_TENSOR: {
            char whose[400];
            snprintf(whose, sizeof whose, "%s: attribute '%s'", where, aname);
            if (!a->tensor) return bad(r, "%s: no tensor", whose);
            if (!read_tensor(r, a->tensor, whose, &v.u.tensor)) return false;
            break;
        }
        default: break;
        }
        attrs[k] = v;
    }
    return true;
}

// Re-creates value v, an input or a parameter use, through the builder.
static bool replay_leaf(struct reader *r, const Itr__Plan__Graph *G, struct itr_graph *g, int v) {
    const Itr__Plan__Value *V = G->values[v];
    char whose[400];
    snprintf(whose, sizeof whose, "graph '%.100s' value %d '%.100s'", g->name, v, V->name ? V->name : "");
    struct itr_type t;
    if (!read_type(r, V->dtype, V->dims, V->n_dims, &t, whose)) return false;
    if (!V->name || !V->name[0]) return bad(r, "graph '%s' value %d has no name", g->name, v);
    struct itr_loc loc = read_loc(r, V->loc);
    int32_t id;
    switch (V->kind) {
    case ITR__PLAN__VALUE_KIND__VALUE_INPUT:
        id = itr_graph_add_input(g, V->name, t, loc);
        break;
    case ITR__PLAN__VALUE_KIND__VALUE_PARAM: {
        if (V->param < 0 || V->param >= r->p->n_params)
            return bad(r, "%s: refers to parameter %d, the plan has %d", whose, V->param, r->p->n_params);
        const struct itr_param *q = &r->p->params[V->param];
        if (strcmp(q->name, V->name) != 0)
            return bad(r, "%s: a parameter value must carry its parameter's name '%s'", whose, q->name);
        if (!itr_type_equal(&q->type, &t)) return bad(r, "%s: type differs from the parameter's", whose);
        id = itr_graph_use_param(g, V->param);
        break;
    }
    case ITR__PLAN__VALUE_KIND__VALUE_NODE:
        return bad(r, "%s: produced by node %d, but that node does not create it in this position", whose, V->node);
    default:
        return bad(r, "%s: invalid value kind %d", whose, V->kind);
    }
    if (id != v) return bad(r, "%s: parameter %d is used twice in this graph", whose, V->param);
    if (strcmp(g->values[id].name, V->name) != 0) return bad(r, "%s: the name is used twice", whose);
    g->values[id].loc = loc;
    return true;
}

static bool read_graph(struct reader *r, int gi, const bool *filled) {
    const Itr__Plan__Graph *G = r->m->graphs[gi];
    struct itr_graph *g = r->p->graphs[gi];
    struct itr_program *p = r->p;
    if (G->n_values > MAX_COUNT || G->n_nodes > MAX_COUNT || G->n_inputs > MAX_COUNT || G->n_outputs > MAX_COUNT)
        return bad(r, "graph '%s' is too large", g->name);
    int nv = (int)G->n_values;
    // Names are unique per graph; checking them all up front keeps the
    // builder from silently renaming a duplicate.
    const char **names = malloc((size_t)(nv ? nv : 1) * sizeof *names);
    if (!names) return bad(r, "out of memory");
    for (int i = 0; i < nv; i++) {
        if (!G->values[i]->name || !G->values[i]->name[0]) {
            free(names);
            return bad(r, "graph '%s' value %d has no name", g->name, i);
        }
        names[i] = G->values[i]->name;
    }
    const char *dup = dup_name(names, (size_t)nv);
    free(names);
    if (dup) return bad(r, "graph '%s': value name '%.100s' is used twice", g->name, dup);
    int v = 0;
    for (size_t k = 0; k < G->n_nodes; k++) {
        const Itr__Plan__Node *x = G->nodes[k];
        char where[300];
        snprintf(where, sizeof where, "graph '%.100s' node %zu", g->name, k);
        enum itr_op op;
        if (!x->op || !itr_op_lookup(x->op, &op))
            return bad(r, "%s: unknown op '%.100s' (this itr-run may be older than the itrc that wrote the plan)",
                       where, x->op ? x->op : "");
        snprintf(where, sizeof where, "graph '%.100s' node %zu (%s)", g->name, k, itr_op_name(op));
        if (x->n_inputs > MAX_COUNT || x->n_outputs > 16)
            return bad(r, "%s: too many operands or results", where);
        for (size_t i = 0; i < x->n_inputs; i++)
            if (x->inputs[i] < 0 || x->inputs[i] >= nv)
                return bad(r, "%s: operand %zu refers to value %d, the graph has %d", where, i, x->inputs[i], nv);
        for (size_t i = 0; i < x->n_outputs; i++)
            if (x->outputs[i] < 0 || x->outputs[i] >= nv)
                return bad(r, "%s: result %zu refers to value %d, the graph has %d", where, i, x->outputs[i], nv);
        int first = x->n_outputs ? x->outputs[0] : v;
        if (first < v) return bad(r, "%s: results are not in value order", where);
        for (; v < first; v++)
            if (!replay_leaf(r, G, g, v)) return false;
        for (size_t i = 0; i < x->n_inputs; i++)
            if (x->inputs[i] >= v)
                return bad(r, "%s: operand %zu uses value %d before it is defined", where, i, x->inputs[i]);

        const struct itr_op_info *info = itr_op_info(op);
        struct itr_attr *attrs = itr_arena_alloc(p->arena, (size_t)(info->n_attrs ? info->n_attrs : 1) * sizeof *attrs);
        if (!read_attrs(r, x, op, where, filled, attrs)) { free_attr_tensors(attrs, info->n_attrs); return false; }
        int32_t outs[16];
        int before = g->n_nodes;
        if (!itr_graph_add_node(g, op, x->inputs, (int)x->n_inputs, attrs, read_loc(r, x->loc),
                                x->scope && x->scope[0] ? x->scope : NULL, outs, r->d)) {
            free_attr_tensors(attrs, info->n_attrs);
            return bad(r, "%s: the node does not satisfy the op's rules", where);
        }
        struct itr_node *n = &g->nodes[before];
        if (!phase_from_pb(x->phase, &n->phase)) return bad(r, "%s: invalid phase code %d", where, x->phase);
        if ((size_t)n->n_outputs != x->n_outputs)
            return bad(r, "%s: the plan lists %zu results, the op gives %d", where, x->n_outputs, n->n_outputs);
        for (int i = 0; i < n->n_outputs; i++) {
            int o = outs[i];
            if (x->outputs[i] != o) return bad(r, "%s: results are not in value order", where);
            if (o >= nv) return bad(r, "%s: result %d lies beyond the graph's %d values", where, i, nv);
            const Itr__Plan__Value *V = G->values[o];
            if (V->kind != ITR__PLAN__VALUE_KIND__VALUE_NODE || V->node != (int32_t)k || V->out_index != i)
                return bad(r, "%s: value %d is listed as its result %d but does not say so", where, o, i);
            char whose[400];
            snprintf(whose, sizeof whose, "%s result %d", where, i);
            struct itr_type t;
            if (!read_type(r, V->dtype, V->dims, V->n_dims, &t, whose)) return false;
            if (!itr_type_equal(&t, &g->values[o].type)) {
                char a[256], b[256];
                itr_type_format(p, &t, a, sizeof a);
                itr_type_format(p, &g->values[o].type, b, sizeof b);
                return bad(r, "%s: the plan says %s, the op's shape rule gives %s", whose, a, b);
            }
            if (!V->name || !V->name[0]) return bad(r, "%s: value has no name", whose);
            if (strcmp(g->values[o].name, V->name) != 0 &&
                strcmp(itr_graph_name_value(g, o, V->name), V->name) != 0)
                return bad(r, "%s: the name '%.100s' is used twice", whose, V->name);
            g->values[o].loc = read_loc(r, V->loc);
        }
        v += n->n_outputs;
    }
    for (; v < nv; v++)
        if (!replay_leaf(r, G, g, v)) return false;

    // The builder appended inputs in value order; the plan's list may order
    // them differently but must name each input value exactly once.
    if (G->n_inputs != (size_t)g->n_inputs)
        return bad(r, "graph '%s' lists %zu inputs but has %d input values", g->name, G->n_inputs, g->n_inputs);
    bool *seen = calloc((size_t)(nv ? nv : 1), 1);
    if (!seen) return bad(r, "out of memory");
    for (size_t i = 0; i < G->n_inputs; i++) {
        int32_t in = G->inputs[i];
        if (in < 0 || in >= nv || g->values[in].kind != ITR_VALUE_INPUT || seen[in]) {
            free(seen);
            return bad(r, "graph '%s' input %zu refers to value %d, which is not an unlisted input value", g->name, i, in);
        }
        seen[in] = true;
    }
    free(seen);
    for (size_t i = 0; i < G->n_inputs; i++) g->inputs[i] = G->inputs[i];

    if (G->n_output_names != G->n_outputs)
        return bad(r, "graph '%s' has %zu outputs but %zu output names", g->name, G->n_outputs, G->n_output_names);
    for (size_t i = 0; i < G->n_outputs; i++) {
        if (G->outputs[i] < 0 || G->outputs[i] >= nv)
            return bad(r, "graph '%s' output %zu refers to value %d, the graph has %d", g->name, i, G->outputs[i], nv);
        itr_graph_add_output(g, G->output_names[i] ? G->output_names[i] : "", G->outputs[i]);
    }
    return true;
}

// Scan bodies must be rebuilt before the nodes that refer to them (their
// shape rule reads the body's signature): Kahn's algorithm over the "refers
// to" relation, which also rejects cycles.
static bool read_graphs(struct reader *r) {
    const Itr__Plan__Plan *m = r->m;
    struct itr_program *p = r->p;
    if (m->n_graphs > MAX_COUNT) return bad(r, "too many graphs (%zu)", m->n_graphs);
    int ng = (int)m->n_graphs;
    const char **names = malloc((size_t)(ng ? ng : 1) * sizeof *names);
    if (!names) return bad(r, "out of memory");
    for (int i = 0; i < ng; i++) {
        const Itr__Plan__Graph *G = m->graphs[i];
        if (!G->name || !G->name[0]) { free(names); return bad(r, "graph %d has no name", i); }
        if (G->kind != ITR__PLAN__GRAPH_KIND__GRAPH_ENTRY && G->kind != ITR__PLAN__GRAPH_KIND__GRAPH_BODY) {
            free(names);
            return bad(r, "graph '%s' has invalid kind %d", G->name, G->kind);
        }
        names[i] = G->name;
        struct itr_graph *g = itr_program_add_graph(p, G->name,
                                                    G->kind == ITR__PLAN__GRAPH_KIND__GRAPH_BODY ? ITR_GRAPH_BODY : ITR_GRAPH_ENTRY);
        g->loc = read_loc(r, G->loc);
        g->train = G->train;
    }
    const char *dup = dup_name(names, (size_t)ng);
    free(names);
    if (dup) return bad(r, "graph '%s' is defined twice", dup);

    // pending[i]: references of graph i to graphs not yet rebuilt;
    // users: for each graph, the graphs that refer to it (with multiplicity).
    int *pending = calloc((size_t)(ng ? ng : 1), sizeof *pending);
    int *user_start = calloc((size_t)ng + 1, sizeof *user_start);
    bool *filled = calloc((size_t)(ng ? ng : 1), sizeof *filled);
    int *queue = malloc((size_t)(ng ? ng : 1) * sizeof *queue);
    int *users = NULL;
    bool ok = pending && user_start && filled && queue;
    if (!ok) bad(r, "out of memory");
    size_t n_refs = 0;
    for (int i = 0; i < ng && ok; i++)
        for (size_t k = 0; k < m->graphs[i]->n_nodes && ok; k++) {
            const Itr__Plan__Node *x = m->graphs[i]->nodes[k];
            for (size_t j = 0; j < x->n_attrs; j++)
                if (x->attrs[j]->value_case == ITR__PLAN__ATTRIBUTE__VALUE_GRAPH) {
                    int32_t t = x->attrs[j]->graph;
                    if (t < 0 || t >= ng) {
                        ok = bad(r, "graph '%s' node %zu: attribute '%s' refers to graph %d, the plan has %d",
                                 p->graphs[i]->name, k, x->attrs[j]->name, t, ng);
                        break;
                    }
                    pending[i]++;
                    user_start[t + 1]++;
                    n_refs++;
                }
        }
    if (ok) {
        users = malloc((n_refs ? n_refs : 1) * sizeof *users);
        int *fill = calloc((size_t)ng + 1, sizeof *fill);
        if (!users || !fill) ok = bad(r, "out of memory");
        for (int i = 0; i < ng && ok; i++) user_start[i + 1] += user_start[i];
        for (int i = 0; i < ng && ok; i++)
            for (size_t k = 0; k < m->graphs[i]->n_nodes; k++) {
                const Itr__Plan__Node *x = m->graphs[i]->nodes[k];
                for (size_t j = 0; j < x->n_attrs; j++)
                    if (x->attrs[j]->value_case == ITR__PLAN__ATTRIBUTE__VALUE_GRAPH) {
                        int32_t t = x->attrs[j]->graph;
                        users[user_start[t] + fill[t]++] = i;
                    }
            }
        free(fill);
    }
    int head = 0, tail = 0;
    for (int i = 0; i < ng && ok; i++)
        if (pending[i] == 0) queue[tail++] = i;
    while (ok && head < tail) {
        int gi = queue[head++];
        if (!read_graph(r, gi, filled)) { ok = false; break; }
        filled[gi] = true;
        for (int u = user_start[gi]; u < user_start[gi + 1]; u++)
            if (--pending[users[u]] == 0) queue[tail++] = users[u];
    }
    if (ok && tail < ng) {
        for (int i = 0; i < ng; i++)
            if (!filled[i]) { ok = bad(r, "graph '%s' refers to itself through its scan bodies", p->graphs[i]->name); break; }
    }
    free(pending);
    free(user_start);
    free(filled);
    free(queue);
    free(users);
    return ok;
}

// The optimizer and the state updates; their consistency with the graphs
// (outputs, types) is the verifier's to check.
static bool read_training(struct reader *r) {
    const Itr__Plan__Plan *m = r->m;
    struct itr_program *p = r->p;
    if (m->optimizer) {
        const Itr__Plan__Optimizer *x = m->optimizer;
        struct itr_optimizer *o = &p->optimizer;
        if (!optkind_from_pb(x->kind, &o->kind)) return bad(r, "the optimizer has invalid kind %d", x->kind);
        o->lr = x->lr;
        o->beta1 = x->beta1;
        o->beta2 = x->beta2;
        o->eps = x->eps;
        o->momentum = x->momentum;
        o->weight_decay = x->weight_decay;
        o->clip_grad_norm = x->clip_grad_norm;
        o->loc = read_loc(r, x->loc);
    }
    if (m->n_updates > MAX_COUNT) return bad(r, "too many state updates (%zu)", m->n_updates);
    for (size_t i = 0; i < m->n_updates; i++) {
        const Itr__Plan__StateUpdate *x = m->updates[i];
        enum itr_update_kind kind;
        if (x->param < 0 || x->param >= p->n_params)
            return bad(r, "state update %zu refers to parameter %d, the plan has %d", i, x->param, p->n_params);
        if (!x->output || !x->output[0]) return bad(r, "state update %zu names no output", i);
        if (!updkind_from_pb(x->kind, &kind)) return bad(r, "state update %zu has invalid kind %d", i, x->kind);
        itr_program_add_update(p, x->param, x->output, kind);
    }
    p->train_compiled = m->train_compiled;
    return true;
}

static void copy_info(struct itr_plan_info *info, const Itr__Plan__Plan *m) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->format_version = m->format_version;
    snprintf(info->compiler_version, sizeof info->compiler_version, "%s", m->compiler_version ? m->compiler_version : "");
    snprintf(info->fingerprint, sizeof info->fingerprint, "%s", m->fingerprint ? m->fingerprint : "");
    snprintf(info->target, sizeof info->target, "%s", m->target ? m->target : "");
}

// Reads one schedule of graph g, checking every index; NULL after bad().
// A step's updates in place: each aliased buffer is written, bound to an
// input or parameter, and holds an output of the graph of the same type
// (the executor gives the output the input's memory), each output once.
static bool read_aliases(struct reader *r, const Itr__Plan__ScheduleStep *y, struct kir_step *st,
                         const struct kir_kernel *k, const struct itr_graph *g, size_t i) {
    if ((int)y->n_alias != st->n_bufs) return bad(r, "schedule of '%s': step %zu has %zu aliases for %d buffers", g->name, i, y->n_alias, st->n_bufs);
    st->alias = calloc((size_t)st->n_bufs, sizeof *st->alias);
    if (!st->alias) return bad(r, "out of memory");
    for (int b = 0; b < st->n_bufs; b++) {
        int32_t a = y->alias[b] - 1;
        st->alias[b] = a;
        if (a == -1) continue;
        bool is_output = false;
        for (int o = 0; o < g->n_outputs; o++) is_output |= g->outputs[o] == a;
        for (int c = 0; c < b && is_output; c++) is_output = st->alias[c] != a;
        const struct itr_value *in = &g->values[st->bufs[b]];
        if (a < -1 || a >= g->n_values || !is_output || g->values[a].kind != ITR_VALUE_NODE || !k->bufs[b].written ||
            in->kind == ITR_VALUE_NODE || !itr_type_equal(&in->type, &g->values[a].type))
            return bad(r, "schedule of '%s': step %zu aliases buffer %d badly", g->name, i, b);
    }
    return true;
}

static struct kir_schedule *read_schedule(struct reader *r, const Itr__Plan__Schedule *x, const struct itr_graph *g,
                                          int depth) {
    if (depth > 16) { bad(r, "schedule of '%s': scans nest too deeply", g->name); return NULL; }
    if (depth > 0 && x->n_images) { bad(r, "schedule of '%s': a scan body carries device code", g->name); return NULL; }
    const struct itr_program *p = r->p;
    struct kir_schedule *s = calloc(1, sizeof *s);
    if (!s) { bad(r, "out of memory"); return NULL; }
    s->f64 = x->f64;
    s->n_values = g->n_values;
    bool ok = x->n_materialised == (size_t)g->n_values && x->n_last_step == (size_t)g->n_values;
    if (!ok) bad(r, "schedule of '%s': %zu value flags for %d values", g->name, x->n_materialised, g->n_values);
    s->materialised = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *s->materialised);
    s->last_step = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *s->last_step);
    if (ok && (!s->materialised || !s->last_step)) ok = bad(r, "out of memory");
    for (int i = 0; ok && i < g->n_values; i++) {
        s->materialised[i] = x->materialised[i];
        s->last_step[i] = x->last_step[i];
        if (x->last_step[i] < -1 || x->last_step[i] > (int32_t)x->n_steps)
            ok = bad(r, "schedule of '%s': value %d's last step %d is out of range", g->name, i, x->last_step[i]);
    }
    for (size_t i = 0; ok && i < x->n_kernels; i++) {
        const Itr__Plan__Kernel *pk = x->kernels[i];
        struct kir_kernel *k = kir_kernel_new(pk->name ? pk->name : "k");
        for (size_t j = 0; ok && j < pk->n_bufs; j++) {
            enum itr_dtype dt;
            if (!dtype_from_pb(pk->bufs[j]->dtype, &dt)) { ok = bad(r, "kernel %s: bad buffer dtype", k->name); break; }
            int32_t b = kir_add_buffer(k, pk->bufs[j]->name, dt, pk->bufs[j]->written);
            k->bufs[b].noalias = pk->bufs[j]->noalias;
        }
        for (size_t j = 0; ok && j < pk->n_dims; j++) {
            if (pk->dims[j]->dim < 0 || pk->dims[j]->dim >= p->n_dimnodes) { ok = bad(r, "kernel %s: bad dim", k->name); break; }
            // kir_add_dim merges equal dims; a plan never repeats one, so indices stay
            if (kir_add_dim(k, pk->dims[j]->name, pk->dims[j]->dim) != (int32_t)j) { ok = bad(r, "kernel %s: repeated dim", k->name); break; }
        }
        for (size_t j = 0; ok && j < pk->n_vars; j++) {
            const Itr__Plan__KirVar *v = pk->vars[j];
            if (v->kind < 0 || v->kind > KIR_VAR_ACC || v->type < 0 || v->type >= KIR_TYPE_COUNT || v->combine < 0 ||
                v->combine >= KIR_OP_COUNT || v->lanes < 1 || v->lanes > KIR_MAX_LANES) { ok = bad(r, "kernel %s: bad variable", k->name); break; }
            if (v->kind == KIR_VAR_ACC) kir_add_acc(k, v->name, (enum kir_type)v->type, v->lanes, (enum kir_op)v->combine);
            else kir_add_var(k, v->name, (enum kir_var_kind)v->kind, (enum kir_type)v->type);
        }
        for (size_t j = 0; ok && j < pk->n_exprs; j++) {
            const Itr__Plan__KirExpr *e = pk->exprs[j];
            if (e->kind < 0 || e->kind >= KIR_E_KIND_COUNT || e->type < 0 || e->type >= KIR_TYPE_COUNT || e->op < 0 ||
                e->op >= KIR_OP_COUNT) { ok = bad(r, "kernel %s: bad expression %zu", k->name, j); break; }
            if (k->n_exprs == k->cap_exprs) {
                k->cap_exprs = k->cap_exprs ? 2 * k->cap_exprs : 16;
                struct kir_expr *ne = realloc(k->exprs, (size_t)k->cap_exprs * sizeof *ne);
                if (!ne) { ok = bad(r, "out of memory"); break; }
                k->exprs = ne;
            }
            k->exprs[k->n_exprs++] = (struct kir_expr){ (enum kir_expr_kind)e->kind, (enum kir_type)e->type,
                                                        (enum kir_op)e->op, e->a, e->b, e->c, e->buf, e->var, e->dim,
                                                        e->ival, e->fval };
        }
        for (size_t j = 0; ok && j < pk->n_stmts; j++) {
            const Itr__Plan__KirStmt *st = pk->stmts[j];
            if (st->kind < 0 || st->kind >= KIR_S_KIND_COUNT || st->loop < 0 || st->loop >= KIR_LOOP_KIND_COUNT ||
                st->n_body > 1u << 20) { ok = bad(r, "kernel %s: bad statement %zu", k->name, j); break; }
            int32_t id = j == 0 ? k->body : kir_seq(k);   // statement 0 is the root SEQ kir_kernel_new made
            struct kir_stmt *ks = &k->stmts[id];
            ks->kind = (enum kir_stmt_kind)st->kind;
            ks->loop = (enum kir_loop_kind)st->loop;
            ks->var = st->var;
            ks->lo = st->lo;
            ks->hi = st->hi;
            ks->buf = st->buf;
            ks->index = st->index;
            ks->value = st->value;
            ks->cond = st->cond;
            // A body statement comes after its parent (as the kernel builders
            // create them), which rules out cycles in a hostile plan.
            for (size_t b = 0; b < st->n_body; b++) {
                if (st->body[b] < 0 || st->body[b] >= (int32_t)pk->n_stmts || st->body[b] <= (int32_t)j) {
                    ok = bad(r, "kernel %s: statement %zu has a bad body", k->name, j);
                    break;
                }
                if (ks->n_body == ks->cap_body) {
                    ks->cap_body = ks->cap_body ? 2 * ks->cap_body : 4;
                    int32_t *nb = realloc(ks->body, (size_t)ks->cap_body * sizeof *nb);
                    if (!nb) { ok = bad(r, "out of memory"); break; }
                    ks->body = nb;
                }
                ks->body[ks->n_body++] = st->body[b];
            }
        }
        if (ok) {
            k->body = pk->body;
            k->parallel_hi = pk->parallel_hi;
            k->parallel_dim = pk->parallel_dim;
            if (k->body != 0 || pk->n_stmts == 0 || k->parallel_hi < -1 || k->parallel_hi >= k->n_exprs ||
                k->parallel_dim < -1 || k->parallel_dim >= p->n_dimnodes)
                ok = bad(r, "kernel %s: bad root or parallel loop", k->name);
        }
        if (ok) {
            char why[256];
            if (!kir_verify(k, why, sizeof why)) ok = bad(r, "kernel %s does not verify: %s", k->name, why);
        }
        if (!ok) { kir_kernel_free(k); break; }
        if (s->n_kernels == s->cap_kernels) {
            s->cap_kernels = s->cap_kernels ? 2 * s->cap_kernels : 16;
            struct kir_kernel **nk = realloc(s->kernels, (size_t)s->cap_kernels * sizeof *nk);
            if (!nk) { kir_kernel_free(k); ok = bad(r, "out of memory"); break; }
            s->kernels = nk;
        }
        s->kernels[s->n_kernels++] = k;
    }
    s->cap_steps = (int)x->n_steps;
    s->steps = calloc(x->n_steps ? x->n_steps : 1, sizeof *s->steps);
    if (ok && !s->steps) ok = bad(r, "out of memory");
    for (size_t i = 0; ok && i < x->n_steps; i++) {
        const Itr__Plan__ScheduleStep *y = x->steps[i];
        struct kir_step *st = &s->steps[s->n_steps++];
        st->kind = (enum kir_step_kind)y->kind;
        st->kernel = y->kernel;
        st->node = y->node;
        st->guard_count = y->guard_count;
        st->guard_node = y->guard_node - 1;
        st->gemm_view_a = y->gemm_view_a - 1;
        st->gemm_view_b = y->gemm_view_b - 1;
        st->gemm_a = y->gemm_a;
        st->gemm_b = y->gemm_b;
        st->trans_a = y->trans_a;
        st->trans_b = y->trans_b;
        if (y->kind < KIR_STEP_KERNEL || y->kind > KIR_STEP_GEMM || y->node < 0 || y->node >= g->n_nodes ||
            y->guard_count < -1 || y->guard_count >= p->n_dimnodes || y->guard_node < 0 ||
            y->guard_node > g->n_nodes || y->gemm_view_a < 0 || y->gemm_view_a > g->n_values || y->gemm_view_b < 0 ||
            y->gemm_view_b > g->n_values) { ok = bad(r, "schedule of '%s': bad step %zu", g->name, i); break; }
        const struct itr_node *n = &g->nodes[y->node];
        if (st->kind == KIR_STEP_KERNEL) {
            if (y->kernel < 0 || y->kernel >= s->n_kernels || (int)y->n_bufs != s->kernels[y->kernel]->n_bufs) {
                ok = bad(r, "schedule of '%s': step %zu names a bad kernel", g->name, i);
                break;
            }
            st->n_bufs = (int)y->n_bufs;
            st->bufs = calloc(y->n_bufs ? y->n_bufs : 1, sizeof *st->bufs);
            if (!st->bufs) { ok = bad(r, "out of memory"); break; }
            for (size_t b = 0; b < y->n_bufs && ok; b++) {
                st->bufs[b] = y->bufs[b];
                if (y->bufs[b] < 0 || y->bufs[b] >= g->n_values) ok = bad(r, "schedule of '%s': step %zu binds a bad value", g->name, i);
            }
            if (ok && y->n_alias) ok = read_aliases(r, y, st, s->kernels[y->kernel], g, i);
        } else if (st->kind == KIR_STEP_GEMM) {
            if ((n->op != ITR_OP_MATMUL && n->op != ITR_OP_TRANSPOSE) || y->gemm_a < 0 || y->gemm_a >= g->n_values || y->gemm_b < 0 || y->gemm_b >= g->n_values)
                ok = bad(r, "schedule of '%s': step %zu is a bad gemm", g->name, i);
        } else if (y->body) {
            const struct itr_attr *ba = itr_node_attr(n, "body");
            if (n->op != ITR_OP_SCAN || !ba || ba->kind != ITR_ATTR_GRAPH || !ba->u.graph) {
                ok = bad(r, "schedule of '%s': step %zu has a body but is no scan", g->name, i);
                break;
            }
            st->body = read_schedule(r, y->body, ba->u.graph, depth + 1);
            if (!st->body) ok = false;
        }
    }
    if (!ok) {
        kir_schedule_free(s);
        return NULL;
    }
    return s;
}

// Schedule i's device code into the program's devcode, each image checked
// (ir/devcode.h); an error names the plan, the schedule and the image.
static bool read_images(struct reader *r, const Itr__Plan__Schedule *x, size_t i) {
    const char *name = r->p->graphs[x->graph]->name;
    const char *prec = x->f64 ? "f64" : "f32";
    if (x->n_images > ITR_DEVCODE_MAX_IMAGES)
        return bad(r, "schedule %zu (entry '%s', %s): %zu device images (at most %d)", i, name, prec, x->n_images,
                   ITR_DEVCODE_MAX_IMAGES);
    if (itr_devcode_find(r->p->devcode, x->graph, x->f64))
        return bad(r, "schedule %zu (entry '%s', %s): a second schedule with device code for it", i, name, prec);
    if (!r->p->devcode && !(r->p->devcode = calloc(1, sizeof *r->p->devcode))) return bad(r, "out of memory");
    for (size_t j = 0; j < x->n_images; j++) {
        const Itr__Plan__DeviceImage *y = x->images[j];
        const char *arch = y->arch ? y->arch : "";
        char why[160];
        if (itr_devcode_image_error(arch, y->image.data, y->image.len, why, sizeof why))
            return bad(r, "schedule %zu (entry '%s', %s): device image %zu: %s", i, name, prec, j, why);
        if (!itr_devcode_add(r->p->devcode, x->graph, x->f64, arch, y->image.data, y->image.len))
            return bad(r, "schedule %zu (entry '%s', %s): device image %zu: a second %s image (or out of memory)", i,
                       name, prec, j, arch);
    }
    return true;
}

static bool read_schedules(struct reader *r, struct kir_plan_kernels *k) {
    const Itr__Plan__Plan *m = r->m;
    for (size_t i = 0; i < m->n_schedules; i++) {
        const Itr__Plan__Schedule *x = m->schedules[i];
        if (x->graph < 0 || x->graph >= r->p->n_graphs) return bad(r, "schedule %zu names graph %d", i, x->graph);
        struct kir_schedule *s = read_schedule(r, x, r->p->graphs[x->graph], 0);
        if (!s) return false;
        kir_plan_kernels_add(k, x->graph, x->f64, s);
        if (x->n_images && !read_images(r, x, i)) return false;
    }
    return true;
}

struct itr_program *itr_plan_unpack(const uint8_t *buf, size_t len, const char *what, struct itr_plan_info *info,
                                    struct itr_diags *d) {
    if (!what) what = "plan";
    if (info) memset(info, 0, sizeof *info);
    if (len == 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: empty file, not an itrc plan", what);
        return NULL;
    }
    size_t mlen = len < 8 ? len : 8;
    if (memcmp(buf, plan_magic, mlen) != 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: not an itrc plan (bad magic)", what);
        return NULL;
    }
    if (len < 12) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated plan: %zu bytes, the header alone is %d", what, len, HEADER_SIZE);
        return NULL;
    }
    uint32_t version = get_u32(buf + 8);
    if (version != ITR_PLAN_FORMAT_VERSION) {
        itr_diag_error(d, ITR_NOLOC,
                       "%s: plan format version %" PRIu32 " is not supported by this itr-run (expects %d); "
                       "recompile it with itrc", what, version, ITR_PLAN_FORMAT_VERSION);
        return NULL;
    }
    if (len < HEADER_SIZE) {
        itr_diag_error(d, ITR_NOLOC, "%s: truncated plan: %zu bytes, the header alone is %d", what, len, HEADER_SIZE);
        return NULL;
    }
    uint64_t body = get_u64(buf + 16);
    if (body != len - HEADER_SIZE) {
        if (body > len - HEADER_SIZE)
            itr_diag_error(d, ITR_NOLOC, "%s: truncated plan: the header promises %" PRIu64 " bytes of plan data, "
                           "the file has %zu", what, body, len - HEADER_SIZE);
        else
            itr_diag_error(d, ITR_NOLOC, "%s: corrupt plan: %zu unexpected bytes after the plan data", what,
                           (size_t)(len - HEADER_SIZE - body));
        return NULL;
    }
    if (XXH64(buf + HEADER_SIZE, (size_t)body, 0) != get_u64(buf + 24)) {
        itr_diag_error(d, ITR_NOLOC, "%s: corrupt plan: checksum mismatch (the file was damaged or modified)", what);
        return NULL;
    }
    Itr__Plan__Plan *m = itr__plan__plan__unpack(NULL, (size_t)body, buf + HEADER_SIZE);
    if (!m) {
        itr_diag_error(d, ITR_NOLOC, "%s: corrupt plan: the plan data does not decode as an itr.plan.Plan message", what);
        return NULL;
    }
    if (m->format_version != version) {
        itr_diag_error(d, ITR_NOLOC, "%s: corrupt plan: the message says format version %" PRIu32 ", the header %" PRIu32,
                       what, m->format_version, version);
        itr__plan__plan__free_unpacked(m, NULL);
        return NULL;
    }
    struct reader r = { what, d, m, itr_program_new(), NULL, NULL };
    bool ok = true;
    if (m->model_name && m->model_name[0]) r.p->name = itr_program_strdup(r.p, m->model_name);
    r.p->loc = read_loc(&r, m->loc);
    ok = read_symbols(&r) && read_dims(&r) && read_params(&r) && read_graphs(&r) && read_training(&r);
    if (ok) {
        struct itr_diags vd;
        itr_diags_init(&vd);
        if (!itr_program_verify(r.p, &vd)) {
            // Pass the verifier's findings on, then say whose they are.
            for (int i = 0; i < vd.n; i++) itr_diag_error(d, vd.items[i].loc, "%s", vd.items[i].msg);
            ok = bad(&r, "the program in the plan does not verify");
        }
        itr_diags_free(&vd);
    }
    if (ok) {
        char fp[17];
        snprintf(fp, sizeof fp, "%016" PRIx64, itr_program_hash(r.p));
        if (!m->fingerprint || strcmp(fp, m->fingerprint) != 0)
            ok = bad(&r, "fingerprint mismatch: the plan records '%.20s', its program hashes to '%s'",
                     m->fingerprint ? m->fingerprint : "", fp);
    }
    if (ok && m->n_schedules) {
        r.p->kernels = calloc(1, sizeof *r.p->kernels);
        if (!r.p->kernels) ok = bad(&r, "out of memory");
        else ok = read_schedules(&r, r.p->kernels);
    }
    if (ok) copy_info(info, m);
    itr__plan__plan__free_unpacked(m, NULL);
    if (!ok) {
        itr_program_free(r.p);
        return NULL;
    }
    return r.p;
}

struct itr_program *itr_plan_read(const char *path, struct itr_plan_info *info, struct itr_diags *d) {
    const uint8_t *buf;
    size_t len;
    if (info) memset(info, 0, sizeof *info);
    if (!itr_file_map(path, &buf, &len, d)) return NULL;
    struct itr_program *p = itr_plan_unpack(buf, len, path, info, d);
    itr_file_unmap(buf, len);
    return p;
}
