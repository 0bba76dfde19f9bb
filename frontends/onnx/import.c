// The ONNX importer's driver: reads the ModelProto, declares the graph's
// inputs, keeps the value environment (ONNX name -> known value and/or graph
// value), lowers each node through the op table (ops.c) and declares the
// outputs. The helpers the lowerings build with are here too.
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"
#include "ir/fileio.h"

// ------------------------------------------------------------ messages

bool ox_error(struct ox *x, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->cur) {
        const Onnx__NodeProto *pb = x->cur->pb;
        itr_diag_error(x->d, x->loc, "%s: node %d '%s' (%s, opset %lld): %s", x->what, x->node_index,
                       pb->name && pb->name[0] ? pb->name : "(unnamed)",
                       pb->op_type ? pb->op_type : "?", (long long)x->opset, msg);
        x->failed_reported = true;
    } else {
        itr_diag_error(x->d, x->loc, "%s: %s", x->what, msg);
    }
    return false;
}

// ------------------------------------------------------------ names

static const char *const reserved[] = { "import", "model", "module", "def", "entry", "let", "param", "frozen",
                                        "dim", "return", "if", "else", "true", "false", "train", "optimizer",
                                        "update", "inf", "nan", "training", "rng_seed" };

// An ONNX name as an .ir identifier: characters outside [A-Za-z0-9_] become
// '_', a leading digit gets a '_' before it, and reserved words a '_' after.
// dotted keeps dots between non-empty segments (parameter names stay
// hierarchical: "img_fc.weight").
static void ir_name(const char *s, bool dotted, char *buf, size_t n) {
    size_t k = 0;
    bool seg_start = true;
    for (const char *c = s; *c && k + 3 < n; c++) {
        unsigned char ch = (unsigned char)*c;
        if (dotted && ch == '.' && !seg_start && c[1] && c[1] != '.') {
            buf[k++] = '.';
            seg_start = true;
            continue;
        }
        if (seg_start && isdigit(ch)) buf[k++] = '_';
        buf[k++] = (char)(isalnum(ch) || ch == '_' ? ch : '_');
        seg_start = false;
    }
    if (k == 0) buf[k++] = '_';
    buf[k] = 0;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcmp(buf, reserved[i]) == 0 && k + 1 < n) { buf[k] = '_'; buf[k + 1] = 0; }
}

// ------------------------------------------------------------ environment

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct ox_val *env_find(struct ox *x, const char *name) {
    if (!x->hash_cap) return NULL;
    for (uint32_t i = hash_str(name) & (uint32_t)(x->hash_cap - 1);; i = (i + 1) & (uint32_t)(x->hash_cap - 1)) {
        int32_t v = x->hash[i];
        if (v < 0) return NULL;
        if (strcmp(x->vals[v].name, name) == 0) return &x->vals[v];
    }
}

static void env_rehash(struct ox *x, int cap) {
    free(x->hash);
    x->hash = malloc((size_t)cap * sizeof *x->hash);
    if (!x->hash) abort();
    x->hash_cap = cap;
    for (int i = 0; i < cap; i++) x->hash[i] = -1;
    for (int v = 0; v < x->n_vals; v++) {
        uint32_t i = hash_str(x->vals[v].name) & (uint32_t)(cap - 1);
        while (x->hash[i] >= 0) i = (i + 1) & (uint32_t)(cap - 1);
        x->hash[i] = v;
    }
}

// A new value; an existing one of the same name is reset (ONNX graphs are
// SSA, so this only happens for a malformed model, which then sees the
// later definition).
static struct ox_val *env_add(struct ox *x, const char *name) {
    struct ox_val *old = env_find(x, name);
    if (old) {
        itr_tensor_free(old->k);
        free(old->dv);
        char *nm = old->name;
        memset(old, 0, sizeof *old);
        old->name = nm;
        old->id = -1;
        old->input = -1;
        return old;
    }
    if (x->n_vals == x->cap_vals) {
        x->cap_vals = x->cap_vals ? 2 * x->cap_vals : 64;
        x->vals = realloc(x->vals, (size_t)x->cap_vals * sizeof *x->vals);
        if (!x->vals) abort();
    }
    struct ox_val *v = &x->vals[x->n_vals++];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    if (!v->name) abort();
    v->id = -1;
    v->input = -1;
    if (2 * x->n_vals > x->hash_cap) env_rehash(x, x->hash_cap ? 2 * x->hash_cap : 128);
    else {
        uint32_t i = hash_str(name) & (uint32_t)(x->hash_cap - 1);
        while (x->hash[i] >= 0) i = (i + 1) & (uint32_t)(x->hash_cap - 1);
        x->hash[i] = (int32_t)(v - x->vals);
    }
    return v;
}

static void env_free(struct ox *x) {
    for (int i = 0; i < x->n_vals; i++) {
        free(x->vals[i].name);
        itr_tensor_free(x->vals[i].k);
        free(x->vals[i].dv);
    }
    free(x->vals);
    free(x->hash);
}

// ------------------------------------------------------------ graph building

const struct itr_type *ox_type(struct ox *x, int32_t id) { return &x->g->values[id].type; }

struct itr_attr *ox_attrs(struct ox *x, enum itr_op op) { return itr_attrs_default(x->p, op); }

static struct itr_attr *slot(enum itr_op op, struct itr_attr *a, const char *name) {
    int k = itr_op_attr_index(op, name);
    if (k < 0) abort();   // a lowering naming an attribute its op lacks: our bug
    return &a[k];
}

void ox_set_int(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, int64_t v) {
    (void)x;
    struct itr_attr *s = slot(op, a, name);
    int k = itr_op_attr_index(op, name);
    bool is_bool = itr_op_info(op)->attrs[k].kind == ITR_ATTR_BOOL;
    *s = (struct itr_attr){ .kind = is_bool ? ITR_ATTR_BOOL : ITR_ATTR_INT, .u.i = is_bool ? v != 0 : v };
}

void ox_set_float(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, double v) {
    (void)x;
    *slot(op, a, name) = (struct itr_attr){ .kind = ITR_ATTR_FLOAT, .u.f = v };
}

void ox_set_ints(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, const int64_t *v, int n) {
    int64_t *c = itr_arena_alloc(x->p->arena, (size_t)(n ? n : 1) * sizeof *c);
    if (n) memcpy(c, v, (size_t)n * sizeof *c);
    struct itr_attr *s = slot(op, a, name);
    s->kind = ITR_ATTR_INTS;
    s->u.ints.v = c;
    s->u.ints.n = n;
}

void ox_set_dims(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, const itr_dim *v, int n) {
    itr_dim *c = itr_arena_alloc(x->p->arena, (size_t)(n ? n : 1) * sizeof *c);
    if (n) memcpy(c, v, (size_t)n * sizeof *c);
    struct itr_attr *s = slot(op, a, name);
    s->kind = ITR_ATTR_DIMS;
    s->u.dims.v = c;
    s->u.dims.n = n;
}

void ox_set_dtype(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, enum itr_dtype dt) {
    (void)x;
    *slot(op, a, name) = (struct itr_attr){ .kind = ITR_ATTR_DTYPE, .u.dtype = dt };
}

void ox_set_graph(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, struct itr_graph *g) {
    (void)x;
    *slot(op, a, name) = (struct itr_attr){ .kind = ITR_ATTR_GRAPH, .u.graph = g };
}

bool ox_node_in(struct ox *x, struct itr_graph *g, enum itr_op op, const int32_t *ins, int n,
                const struct itr_attr *attrs, int32_t *outs) {
    for (int i = 0; i < n; i++)
        if (ins[i] < 0) return false;   // an operand failed, already reported
    if (!itr_graph_add_node(g, op, ins, n, attrs, x->loc, x->scope, outs, x->d)) {
        if (x->cur && !x->failed_reported) ox_error(x, "its lowering to '%s' failed (see above)", itr_op_name(op));
        return false;
    }
    return true;
}

int32_t ox_op(struct ox *x, enum itr_op op, const int32_t *ins, int n, const struct itr_attr *attrs) {
    int32_t outs[16];
    return ox_node_in(x, x->g, op, ins, n, attrs, outs) ? outs[0] : -1;
}

int32_t ox_op1(struct ox *x, enum itr_op op, int32_t a) { return ox_op(x, op, &a, 1, NULL); }

int32_t ox_op2(struct ox *x, enum itr_op op, int32_t a, int32_t b) {
    int32_t ins[2] = { a, b };
    return ox_op(x, op, ins, 2, NULL);
}

int32_t ox_const(struct ox *x, struct itr_graph *g, const struct itr_tensor *t) {
    struct itr_tensor *c = itr_tensor_clone(t);
    if (!c) { ox_error(x, "out of memory"); return -1; }
    struct itr_attr *a = ox_attrs(x, ITR_OP_CONSTANT);
    *slot(ITR_OP_CONSTANT, a, "value") = (struct itr_attr){ .kind = ITR_ATTR_TENSOR, .u.tensor = c };
    int32_t out;
    if (!ox_node_in(x, g, ITR_OP_CONSTANT, NULL, 0, a, &out)) { itr_tensor_free(c); return -1; }
    return out;
}

int32_t ox_scalar(struct ox *x, struct itr_graph *g, enum itr_dtype dt, double v) {
    struct itr_tensor *t = itr_tensor_new(dt, 0, NULL);
    if (!t) { ox_error(x, "out of memory"); return -1; }
    itr_tensor_set(t, 0, v);
    int32_t id = ox_const(x, g, t);
    itr_tensor_free(t);
    return id;
}

// sum(full(1, [dim])) is the dim's value as a run-time scalar, whatever
// expression it is (as nn.ir's batchnorm counts rows).
int32_t ox_dim_scalar(struct ox *x, itr_dim dim, enum itr_dtype dt) {
    int64_t c;
    if (itr_dim_is_const(x->p, dim, &c)) return ox_scalar(x, x->g, dt, (double)c);
    struct itr_attr *a = ox_attrs(x, ITR_OP_FULL);
    ox_set_float(x, a, ITR_OP_FULL, "value", 1.0);
    ox_set_dims(x, a, ITR_OP_FULL, "shape", &dim, 1);
    ox_set_dtype(x, a, ITR_OP_FULL, "dtype", dt);
    int32_t ones = ox_op(x, ITR_OP_FULL, NULL, 0, a);
    return ox_op(x, ITR_OP_SUM, &ones, 1, NULL);
}

// ------------------------------------------------------------ known values

bool ox_known_dims(struct ox *x, struct ox_val *v, itr_dim **out, int *n, bool *scalar) {
    if (v->dv) {
        *out = malloc((size_t)(v->dv_n ? v->dv_n : 1) * sizeof **out);
        if (!*out) abort();
        memcpy(*out, v->dv, (size_t)v->dv_n * sizeof **out);
        *n = v->dv_n;
        if (scalar) *scalar = v->dv_scalar;
        return true;
    }
    if (v->k && itr_dtype_is_int(v->k->dtype) && v->k->rank <= 1) {
        int64_t m = itr_tensor_numel(v->k);
        *out = malloc((size_t)(m ? m : 1) * sizeof **out);
        if (!*out) abort();
        for (int64_t i = 0; i < m; i++) (*out)[i] = itr_dim_const(x->p, (int64_t)itr_tensor_get(v->k, i));
        *n = (int)m;
        if (scalar) *scalar = v->k->rank == 0;
        return true;
    }
    return false;
}

bool ox_known_ints(struct ox *x, struct ox_val *v, int64_t **out, int *n) {
    if (v->k && itr_dtype_is_int(v->k->dtype)) {
        int64_t m = itr_tensor_numel(v->k);
        *out = malloc((size_t)(m ? m : 1) * sizeof **out);
        if (!*out) abort();
        // Read integers exactly, not through double.
        for (int64_t i = 0; i < m; i++)
            (*out)[i] = v->k->dtype == ITR_I64 ? ((int64_t *)v->k->data)[i] : ((int32_t *)v->k->data)[i];
        *n = (int)m;
        return true;
    }
    if (v->dv) {
        int64_t *r = malloc((size_t)(v->dv_n ? v->dv_n : 1) * sizeof *r);
        if (!r) abort();
        for (int i = 0; i < v->dv_n; i++)
            if (!itr_dim_is_const(x->p, v->dv[i], &r[i])) { free(r); return false; }
        *out = r;
        *n = v->dv_n;
        return true;
    }
    return false;
}

// A graph input whose value the caller supplied (input_values) is known.
static void adopt_input_value(struct ox *x, struct ox_val *v) {
    if (v->input < 0 || v->k || !x->opt->input_values) return;
    struct itr_tensor *t = itr_tensor_set_get(x->opt->input_values, v->name);
    if (t) v->k = itr_tensor_clone(t);
}

bool ox_need_ints(struct ox *x, struct ox_val *v, const char *what, int64_t **out, int *n) {
    adopt_input_value(x, v);
    if (ox_known_ints(x, v, out, n)) return true;
    return ox_error(x, "%s ('%s') must be known when importing: an initializer, a Constant, or computed from "
                    "shapes%s", what, v->name, v->dv ? " (it depends on a dynamic dim here)" : "");
}

bool ox_need_dims(struct ox *x, struct ox_val *v, const char *what, itr_dim **out, int *n) {
    adopt_input_value(x, v);
    if (ox_known_dims(x, v, out, n, NULL)) return true;
    return ox_error(x, "%s ('%s') must be known when importing: an initializer, a Constant, or computed from "
                    "shapes", what, v->name);
}

struct itr_tensor *ox_known(struct ox *x, struct ox_val *v) {
    adopt_input_value(x, v);
    if (v->k) return v->k;
    int64_t *ints;
    int n;
    if (v->dv && ox_known_ints(x, v, &ints, &n)) {
        int64_t shape[1] = { n };
        v->k = itr_tensor_new(v->dv_dtype, v->dv_scalar ? 0 : 1, shape);
        if (v->k)
            for (int i = 0; i < n; i++) {
                if (v->dv_dtype == ITR_I64) ((int64_t *)v->k->data)[i] = ints[i];
                else ((int32_t *)v->k->data)[i] = (int32_t)ints[i];
            }
        free(ints);
        return v->k;
    }
    return NULL;
}

// ------------------------------------------------------------ materialising

static int32_t declare_input(struct ox *x, struct ox_val *v);

static int32_t materialise_dims(struct ox *x, struct ox_val *v) {
    if (ox_known(x, v)) return ox_const(x, x->g, v->k);
    // Symbolic elements: each one's run-time value, joined.
    int32_t *parts = malloc((size_t)(v->dv_n ? v->dv_n : 1) * sizeof *parts);
    if (!parts) abort();
    int32_t r = 0;
    for (int i = 0; i < v->dv_n && r >= 0; i++) {
        parts[i] = ox_dim_scalar(x, v->dv[i], v->dv_dtype);
        if (parts[i] < 0) r = -1;
        else if (!v->dv_scalar) {
            struct itr_attr *a = ox_attrs(x, ITR_OP_UNSQUEEZE);
            int64_t ax = 0;
            ox_set_ints(x, a, ITR_OP_UNSQUEEZE, "axes", &ax, 1);
            parts[i] = ox_op(x, ITR_OP_UNSQUEEZE, &parts[i], 1, a);
            if (parts[i] < 0) r = -1;
        }
    }
    if (r >= 0) {
        if (v->dv_scalar) r = parts[0];
        else {
            struct itr_attr *a = ox_attrs(x, ITR_OP_CONCAT);
            ox_set_int(x, a, ITR_OP_CONCAT, "axis", 0);
            r = ox_op(x, ITR_OP_CONCAT, parts, v->dv_n, a);
        }
    }
    free(parts);
    return r;
}

int32_t ox_id(struct ox *x, struct ox_val *v) {
    if (v->id >= 0) return v->id;
    // A graph input stays one even when its value was supplied for folding.
    if (v->input >= 0) return v->id = declare_input(x, v);
    if (v->k) {
        if (v->init && x->opt->params && itr_dtype_is_float(v->k->dtype)) {
            // A parameter named after the initializer, its value a weight.
            char nm[512];
            ir_name(v->name, true, nm, sizeof nm);
            char unique[540];
            snprintf(unique, sizeof unique, "%s", nm);
            for (int k = 1; itr_program_find_param(x->p, unique) >= 0; k++) snprintf(unique, sizeof unique, "%s_%d", nm, k);
            itr_dim dims[ITR_MAX_RANK];
            for (int i = 0; i < v->k->rank; i++) dims[i] = itr_dim_const(x->p, v->k->shape[i]);
            struct itr_type t = itr_type_make(v->k->dtype, v->k->rank, dims);
            int32_t pi = itr_program_add_param(x->p, unique, t, (struct itr_init){ .kind = ITR_INIT_ZEROS }, false, x->loc);
            if (x->weights) {
                struct itr_tensor *c = itr_tensor_clone(v->k);
                if (!c) { ox_error(x, "out of memory"); return -1; }
                itr_tensor_set_put(x->weights, unique, c);
            }
            v->id = itr_graph_use_param(x->g, pi);
        } else {
            v->id = ox_const(x, x->g, v->k);
        }
        return v->id;
    }
    if (v->dv) return v->id = materialise_dims(x, v);
    ox_error(x, "value '%s' has no definition", v->name);
    return -1;
}

// ------------------------------------------------------------ node outputs

bool ox_out_wanted(const struct ox_node *n, int i) {
    return i < (int)n->pb->n_output && n->pb->output[i] && n->pb->output[i][0];
}

static struct ox_val *out_val(struct ox *x, struct ox_node *n, int i) {
    if (!ox_out_wanted(n, i)) return NULL;
    return env_add(x, n->pb->output[i]);
}

bool ox_out(struct ox *x, struct ox_node *n, int i, int32_t id) {
    if (id < 0) return false;
    struct ox_val *v = out_val(x, n, i);
    if (v) v->id = id;
    return true;
}

bool ox_out_known(struct ox *x, struct ox_node *n, int i, struct itr_tensor *k) {
    if (!k) return ox_error(x, "out of memory");
    struct ox_val *v = out_val(x, n, i);
    if (v) v->k = k;
    else itr_tensor_free(k);
    return true;
}

bool ox_out_dims(struct ox *x, struct ox_node *n, int i, const itr_dim *dv, int nd, bool scalar, enum itr_dtype dt) {
    // dv may belong to the value this output replaces (a malformed model
    // that defines a name twice), which out_val frees: copy it first.
    itr_dim *copy = malloc((size_t)(nd ? nd : 1) * sizeof *copy);
    if (!copy) abort();
    if (nd) memcpy(copy, dv, (size_t)nd * sizeof *dv);
    struct ox_val *v = out_val(x, n, i);
    if (!v) { free(copy); return true; }
    v->dv = copy;
    v->dv_n = nd;
    v->dv_scalar = scalar;
    v->dv_dtype = dt;
    return true;
}

// ------------------------------------------------------------ attributes

const Onnx__AttributeProto *ox_attr(const struct ox_node *n, const char *name) {
    for (size_t i = 0; i < n->pb->n_attribute; i++)
        if (n->pb->attribute[i]->name && strcmp(n->pb->attribute[i]->name, name) == 0) return n->pb->attribute[i];
    return NULL;
}

int64_t ox_attr_i(const struct ox_node *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_i ? a->i : def;
}

double ox_attr_f(const struct ox_node *n, const char *name, double def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_f ? a->f : def;
}

const char *ox_attr_s(const struct ox_node *n, const char *name, const char *def, char *buf, size_t len) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a || !a->has_s) return def;
    size_t k = a->s.len < len - 1 ? a->s.len : len - 1;
    memcpy(buf, a->s.data, k);
    buf[k] = 0;
    return buf;
}

bool ox_attr_ints(const struct ox_node *n, const char *name, const int64_t **v, int *count) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a) return false;
    if (a->n_ints == 0 && a->has_i) { *v = &a->i; *count = 1; return true; }
    *v = a->ints;
    *count = (int)a->n_ints;
    return true;
}

// ------------------------------------------------------------ graph inputs

// Dims of an input: dim_value is a constant, dim_param a named dim shared
// by every input that names it, and a missing one a dim named INPUT_AXIS.
static bool input_type(struct ox *x, const Onnx__ValueInfoProto *vi, struct itr_type *out) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ox_error(x, "graph input '%s' is not a tensor (sequences, maps and optionals are not supported)",
                        vi->name);
    enum itr_dtype dt;
    if (!ox_dtype_from_onnx(tp->tensor_type->elem_type, &dt))
        return ox_error(x, "graph input '%s' has ONNX type %s, which itrc does not support (f32, f64, i32, i64 and "
                        "bool are)", vi->name, ox_onnx_type_name(tp->tensor_type->elem_type));
    const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
    if (!sh) return ox_error(x, "graph input '%s' has no shape; itrc needs every input's rank", vi->name);
    if (sh->n_dim > ITR_MAX_RANK)
        return ox_error(x, "graph input '%s' has rank %zu; at most %d is supported", vi->name, sh->n_dim, ITR_MAX_RANK);
    itr_dim dims[ITR_MAX_RANK];
    for (size_t i = 0; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = sh->dim[i];
        if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && dm->dim_value >= 0) {
            dims[i] = itr_dim_const(x->p, dm->dim_value);
            continue;
        }
        char raw[300], nm[320];
        if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dm->dim_param && dm->dim_param[0])
            snprintf(raw, sizeof raw, "%s", dm->dim_param);
        else
            snprintf(raw, sizeof raw, "%s_%zu", vi->name, i);
        ir_name(raw, false, nm, sizeof nm);
        int32_t s = itr_program_find_symbol(x->p, nm);
        if (s < 0) s = itr_program_add_symbol(x->p, nm, 0, false, x->loc);
        dims[i] = itr_dim_sym(x->p, s);
    }
    *out = itr_type_make(dt, (int)sh->n_dim, dims);
    return true;
}

static int32_t declare_input(struct ox *x, struct ox_val *v) {
    const Onnx__ValueInfoProto *vi = x->gp->input[v->input];
    struct itr_type t;
    if (!input_type(x, vi, &t)) return -1;
    char nm[512];
    ir_name(vi->name, false, nm, sizeof nm);
    return itr_graph_add_input(x->g, nm, t, x->loc);
}

// ------------------------------------------------------------ the import

void itr_onnx_options_init(struct itr_onnx_options *o) { memset(o, 0, sizeof *o); }

void itr_onnx_import_info_free(struct itr_onnx_import_info *info) {
    if (!info) return;
    for (int i = 0; i < info->n_inputs; i++) { free(info->input_onnx[i]); free(info->input_ir[i]); }
    for (int i = 0; i < info->n_outputs; i++) { free(info->output_onnx[i]); free(info->output_ir[i]); }
    free(info->input_onnx);
    free(info->input_ir);
    free(info->output_onnx);
    free(info->output_ir);
    memset(info, 0, sizeof *info);
}

bool itr_onnx_is_model_path(const char *path) {
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".onnx") == 0;
}

static char *xstrdup(const char *s) {
    char *c = strdup(s ? s : "");
    if (!c) abort();
    return c;
}

static bool lower_node(struct ox *x, const Onnx__NodeProto *pb) {
    struct ox_node n;
    memset(&n, 0, sizeof n);
    n.pb = pb;
    x->cur = &n;
    x->failed_reported = false;
    char scope[256];
    ir_name(pb->name && pb->name[0] ? pb->name : (pb->n_output ? pb->output[0] : "node"), false, scope, sizeof scope);
    x->scope = itr_program_strdup(x->p, scope);
    bool ok = true;
    if (!pb->op_type) ok = ox_error(x, "has no op_type");
    else if (pb->domain && pb->domain[0] && strcmp(pb->domain, "ai.onnx") != 0)
        ok = ox_error(x, "op domain '%s' is not supported (only the default ONNX domain is)", pb->domain);
    else if (pb->n_input > 32) ok = ox_error(x, "has %zu inputs; at most 32 are supported", pb->n_input);
    if (ok) {
        const struct ox_row *other = NULL;
        n.row = ox_find_row(pb->op_type, x->opset, &other);
        if (!n.row && other)
            ok = ox_error(x, "op '%s' is supported for opsets %d to %d, not opset %lld", pb->op_type, other->since,
                          other->until, (long long)x->opset);
        else if (!n.row)
            ok = ox_error(x, "op '%s' is not supported by the ONNX importer (docs/onnx.md lists the supported ops)",
                          pb->op_type);
    }
    // In a Scan body, a name the body does not define is the enclosing
    // graph's. Those are added to the environment before any value of it is
    // pointed at: adding may move the values.
    for (size_t i = 0; ok && x->parent && i < pb->n_input; i++)
        if (pb->input[i] && pb->input[i][0] && !env_find(x, pb->input[i]) && !ox_capture(x, pb->input[i]) &&
            x->failed_reported)
            ok = false;
    for (size_t i = 0; ok && i < pb->n_input; i++) {
        if (!pb->input[i] || !pb->input[i][0]) { n.in[i] = NULL; continue; }
        n.in[i] = env_find(x, pb->input[i]);
        if (!n.in[i]) ok = ox_error(x, "input '%s' is not defined before the node", pb->input[i]);
    }
    n.n_in = (int)pb->n_input;
    n.n_out = (int)pb->n_output;
    if (ok) ok = n.row->lower(x, &n);
    if (ok) ox_track_offsets(x, &n);
    if (!ok && !x->failed_reported) ox_error(x, "could not be imported");
    x->cur = NULL;
    x->scope = NULL;
    return ok;
}

static bool import_model(struct ox *x, const Onnx__ModelProto *m, struct itr_onnx_import_info *info) {
    x->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = m->opset_import[i];
        if (!os->domain || !os->domain[0] || strcmp(os->domain, "ai.onnx") == 0) x->opset = os->version;
    }
    if (x->opset < 0) return ox_error(x, "the model imports no opset of the default ONNX domain");
    if (info) info->opset = x->opset;
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return ox_error(x, "the model has no graph");
    x->gp = gp;

    char nm[256];
    ir_name(x->opt->model_name ? x->opt->model_name : gp->name && gp->name[0] ? gp->name : "onnx_model", false, nm,
            sizeof nm);
    x->p->name = itr_program_strdup(x->p, nm);
    x->g = itr_program_add_graph(x->p, x->opt->entry_name ? x->opt->entry_name : "forward", ITR_GRAPH_ENTRY);

    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name) return ox_error(x, "initializer %zu has no name", i);
        struct itr_tensor *k = ox_tensor_from_proto(t, x->what, x->d);
        if (!k) return false;
        struct ox_val *v = env_add(x, t->name);
        v->k = k;
        v->init = true;
    }
    for (size_t i = 0; i < gp->n_sparse_initializer; i++)
        return ox_error(x, "sparse initializers are not supported");
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = gp->input[i]->name;
        if (!name) return ox_error(x, "graph input %zu has no name", i);
        struct ox_val *v = env_find(x, name);
        if (v && v->init) continue;   // an initializer listed as an input (IR < 4): a constant
        v = env_add(x, name);
        v->input = (int)i;
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        x->node_index = (int)i;
        if (!lower_node(x, gp->node[i])) return false;
    }

    // Inputs were declared when first used; the entry lists them in the
    // model's order, with unused ones too (they are part of its signature)
    // unless their value was taken at compile time.
    int32_t *order = malloc((gp->n_input ? gp->n_input : 1) * sizeof *order);
    if (!order) abort();
    int n_order = 0;
    for (size_t i = 0; i < gp->n_input; i++) {
        struct ox_val *v = env_find(x, gp->input[i]->name);
        if (!v || v->init || v->input != (int)i) continue;
        if (v->id < 0 && v->k) continue;   // used only as a compile-time value
        if (v->id < 0 && (v->id = declare_input(x, v)) < 0) { free(order); return false; }
        order[n_order++] = v->id;
    }
    if (n_order != x->g->n_inputs) { free(order); return ox_error(x, "internal error: input bookkeeping"); }
    if (n_order) memcpy(x->g->inputs, order, (size_t)n_order * sizeof *order);
    free(order);

    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = gp->output[i]->name;
        struct ox_val *v = name ? env_find(x, name) : NULL;
        if (!v) return ox_error(x, "graph output '%s' is not computed by any node", name ? name : "(unnamed)");
        int32_t id = ox_id(x, v);
        if (id < 0) return false;
        char onm[512];
        ir_name(name, false, onm, sizeof onm);
        // Output names must be unique and must not shadow another value's name
        // when printed; a repeated one gets a suffix.
        char unique[540];
        snprintf(unique, sizeof unique, "%s", onm);
        for (int k = 1;; k++) {
            bool clash = false;
            for (int j = 0; j < x->g->n_outputs; j++) clash |= strcmp(x->g->output_names[j], unique) == 0;
            if (!clash) break;
            snprintf(unique, sizeof unique, "%s_%d", onm, k);
        }
        itr_graph_add_output(x->g, unique, id);
    }
    if (info) {
        info->input_onnx = calloc(gp->n_input + 1, sizeof(char *));
        info->input_ir = calloc(gp->n_input + 1, sizeof(char *));
        info->output_onnx = calloc(gp->n_output + 1, sizeof(char *));
        info->output_ir = calloc(gp->n_output + 1, sizeof(char *));
        if (!info->input_onnx || !info->input_ir || !info->output_onnx || !info->output_ir) abort();
        for (size_t i = 0; i < gp->n_input; i++) {
            struct ox_val *v = env_find(x, gp->input[i]->name);
            if (!v || v->init || v->input != (int)i || v->id < 0) continue;
            info->input_onnx[info->n_inputs] = xstrdup(v->name);
            info->input_ir[info->n_inputs++] = xstrdup(x->g->values[v->id].name);
        }
        for (int i = 0; i < x->g->n_outputs; i++) {
            info->output_onnx[info->n_outputs] = xstrdup(gp->output[i]->name);
            info->output_ir[info->n_outputs++] = xstrdup(x->g->output_names[i]);
        }
    }
    return true;
}

// For the Scan lowering (scan.c), which imports a body graph with the same
// driver.
struct ox_val *ox_env_find(struct ox *x, const char *name) { return env_find(x, name); }
struct ox_val *ox_env_add(struct ox *x, const char *name) { return env_add(x, name); }
void ox_env_free(struct ox *x) { env_free(x); }
bool ox_lower_node(struct ox *x, const Onnx__NodeProto *pb) { return lower_node(x, pb); }
void ox_ir_name(const char *s, char *buf, size_t n) { ir_name(s, false, buf, n); }

struct itr_program *itr_onnx_import_bytes(const char *what, const uint8_t *buf, size_t len,
                                          const struct itr_onnx_options *o, struct itr_tensor_set *weights,
                                          struct itr_onnx_import_info *info, struct itr_diags *d) {
    struct itr_onnx_options defaults;
    itr_onnx_options_init(&defaults);
    if (!o) o = &defaults;
    if (info) memset(info, 0, sizeof *info);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m) {
        itr_diag_error(d, ITR_NOLOC, "%s: not a valid ONNX model (the protobuf does not parse as a ModelProto)", what);
        return NULL;
    }
    struct ox x;
    memset(&x, 0, sizeof x);
    x.p = itr_program_new();
    x.d = d;
    x.what = what;
    x.loc = ITR_NOLOC;
    x.opt = o;
    x.weights = weights;
    bool ok = import_model(&x, m, info);
    if (ok && !itr_program_verify(x.p, d)) {
        itr_diag_error(d, ITR_NOLOC, "%s: internal error: the imported program does not verify; please report it", what);
        ok = false;
    }
    env_free(&x);
    onnx__model_proto__free_unpacked(m, NULL);
    if (!ok) {
        itr_program_free(x.p);
        if (info) itr_onnx_import_info_free(info);
        return NULL;
    }
    return x.p;
}

struct itr_program *itr_onnx_import_file(const char *path, const struct itr_onnx_options *o,
                                         struct itr_tensor_set *weights, struct itr_onnx_import_info *info,
                                         struct itr_diags *d) {
    uint8_t *buf;
    size_t len;
    if (info) memset(info, 0, sizeof *info);
    if (!itr_file_read_all(path, &buf, &len, d)) return NULL;
    struct itr_program *p = itr_onnx_import_bytes(path, buf, len, o, weights, info, d);
    free(buf);
    return p;
}
