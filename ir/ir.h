// itrc graph IR: dtypes, symbolic dims, tensors, values, nodes, graphs,
// programs and the op table. Every other layer builds on this header.
//
// Ownership: an itr_program owns everything reachable from it (graphs,
// nodes, names, attribute payloads, dim expressions) through its arena; one
// itr_program_free releases it all. Tensors (itr_tensor) are separate: they
// hold run-time data and are freed with itr_tensor_free.
//
// Worked example (build y = relu(x @ w) by hand):
//
//   itr_program *p = itr_program_new();
//   int32_t B = itr_program_add_symbol(p, "B", 0, false, ITR_NOLOC);
//   itr_graph *g = itr_program_add_graph(p, "forward", ITR_GRAPH_ENTRY);
//   itr_type tx = itr_type_make(ITR_F32, 2, (itr_dim[]){itr_dim_sym(p, B), itr_dim_const(p, 4)});
//   int32_t x = itr_graph_add_input(g, "x", tx, ITR_NOLOC);
//   int32_t w = itr_graph_use_param(g, itr_program_add_param(p, "w", ...));
//   int32_t h, y;
//   itr_graph_add_node(g, ITR_OP_MATMUL, (int32_t[]){x, w}, 2, NULL, ITR_NOLOC, &h, diags);
//   itr_graph_add_node(g, ITR_OP_RELU, &h, 1, NULL, ITR_NOLOC, &y, diags);
//   itr_graph_add_output(g, "y", y);
#ifndef ITR_IR_H
#define ITR_IR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "diag.h"

#define ITR_VERSION_STRING "0.1.0"
#define ITR_MAX_RANK 8

// ---------------------------------------------------------------- dtypes

enum itr_dtype { ITR_F32, ITR_F64, ITR_I32, ITR_I64, ITR_BOOL, ITR_DTYPE_COUNT };

const char *itr_dtype_name(enum itr_dtype dt);              // "f32", ...
bool        itr_dtype_from_name(const char *s, enum itr_dtype *out);
size_t      itr_dtype_size(enum itr_dtype dt);              // bool is 1 byte
bool        itr_dtype_is_float(enum itr_dtype dt);
bool        itr_dtype_is_int(enum itr_dtype dt);

// ---------------------------------------------------------------- dims
//
// A dim is a handle into the program's pool of hash-consed dim expressions:
// integer constants, named symbols (B, L, R, V, ...) bound when a graph runs,
// and + - * / (floor) of those, as reshapes, slices and concatenations need.
// Equal handles mean structurally equal expressions after the simple
// canonicalisation done on construction (constant folding, sorted operands
// of + and *, x+0, x*1, x*0).

typedef int32_t itr_dim;

enum itr_dim_kind { ITR_DIM_CONST, ITR_DIM_SYM, ITR_DIM_ADD, ITR_DIM_SUB, ITR_DIM_MUL, ITR_DIM_DIV };

struct itr_dim_node {
    enum itr_dim_kind kind;
    int64_t value;       // constant value, or symbol index for ITR_DIM_SYM
    itr_dim a, b;        // operands of binary kinds
};

struct itr_symbol {
    const char *name;
    int64_t default_value;   // used when nothing else binds the symbol
    bool has_default;
    struct itr_loc loc;
};

struct itr_program;

itr_dim itr_dim_const(struct itr_program *p, int64_t v);
itr_dim itr_dim_sym(struct itr_program *p, int32_t symbol);
itr_dim itr_dim_binary(struct itr_program *p, enum itr_dim_kind kind, itr_dim a, itr_dim b);
bool    itr_dim_is_const(const struct itr_program *p, itr_dim d, int64_t *value);
// Evaluates d with symbol values bound[i] (bound_mask[i] says which are bound).
// Returns false, naming the unbound symbol in *unbound, if d needs an unbound one;
// a division by zero or negative result is reported the same way with *unbound = -2.
bool    itr_dim_eval(const struct itr_program *p, itr_dim d, const int64_t *bound,
                     const bool *bound_mask, int64_t *out, int32_t *unbound);
// Writes the expression in .ir syntax ("B*L", "L-1", "36"); returns chars written.
int     itr_dim_format(const struct itr_program *p, itr_dim d, char *buf, size_t n);

// ---------------------------------------------------------------- types

struct itr_type {
    enum itr_dtype dtype;
    int rank;
    itr_dim dims[ITR_MAX_RANK];
};

struct itr_type itr_type_make(enum itr_dtype dt, int rank, const itr_dim *dims);
bool itr_type_equal(const struct itr_type *a, const struct itr_type *b);
// "f32[B, 36, 2048]"
int  itr_type_format(const struct itr_program *p, const struct itr_type *t, char *buf, size_t n);

// ---------------------------------------------------------------- tensors (run-time data)

struct itr_tensor {
    enum itr_dtype dtype;
    int rank;
    int64_t shape[ITR_MAX_RANK];
    void *data;          // row-major, contiguous
    bool owns_data;      // free data with the tensor
};

struct itr_tensor *itr_tensor_new(enum itr_dtype dt, int rank, const int64_t *shape); // zero-filled; NULL on overflow/OOM
struct itr_tensor *itr_tensor_wrap(enum itr_dtype dt, int rank, const int64_t *shape, void *data); // borrows data
struct itr_tensor *itr_tensor_clone(const struct itr_tensor *t);
void    itr_tensor_free(struct itr_tensor *t);
int64_t itr_tensor_numel(const struct itr_tensor *t);
size_t  itr_tensor_nbytes(const struct itr_tensor *t);
// Element i as double / written from double (any dtype).
double  itr_tensor_get(const struct itr_tensor *t, int64_t i);
void    itr_tensor_set(struct itr_tensor *t, int64_t i, double v);
// Converts to another dtype (new tensor).
struct itr_tensor *itr_tensor_cast(const struct itr_tensor *t, enum itr_dtype dt);
// "[2, 3]"
int     itr_shape_format(int rank, const int64_t *shape, char *buf, size_t n);
// Product of shape with overflow check; false on overflow or negative dims.
bool    itr_shape_numel(int rank, const int64_t *shape, int64_t *out);

// ---------------------------------------------------------------- attributes

enum itr_attr_kind {
    ITR_ATTR_NONE,       // absent optional attribute
    ITR_ATTR_INT, ITR_ATTR_FLOAT, ITR_ATTR_BOOL, ITR_ATTR_INTS, ITR_ATTR_FLOATS,
    ITR_ATTR_DIMS, ITR_ATTR_DTYPE, ITR_ATTR_STR, ITR_ATTR_GRAPH, ITR_ATTR_TENSOR,
    ITR_ATTR_KIND_COUNT
};

struct itr_graph;

struct itr_attr {
    enum itr_attr_kind kind;
    union {
        int64_t i;                                   // INT, BOOL (0/1)
        double f;                                    // FLOAT
        enum itr_dtype dtype;                        // DTYPE
        const char *s;                               // STR
        struct { int64_t *v; int n; } ints;          // INTS
        struct { double *v; int n; } floats;         // FLOATS
        struct { itr_dim *v; int n; } dims;          // DIMS (may be symbolic)
        struct itr_graph *graph;                     // GRAPH (scan bodies)
        struct itr_tensor *tensor;                   // TENSOR (owned by the program)
    } u;
};

// One entry of an op's attribute schema, parsed from the ATTRS column.
struct itr_attr_spec {
    const char *name;
    enum itr_attr_kind kind;
    bool required;            // no default and not optional
    bool has_default;
    struct itr_attr def;      // default value (scalars, lists and dims "[]")
};

const char *itr_attr_kind_name(enum itr_attr_kind k);

// ---------------------------------------------------------------- the op table

enum itr_op {
#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) ITR_OP_##id,
#include "ops.def"
#undef OP
    ITR_OP_COUNT
};

enum itr_op_class {
    ITR_CLASS_ELEMENTWISE, ITR_CLASS_REDUCTION, ITR_CLASS_CONTRACTION, ITR_CLASS_MOVEMENT,
    ITR_CLASS_INDEXING, ITR_CLASS_SORT, ITR_CLASS_SOURCE, ITR_CLASS_SCAN, ITR_CLASS_COUNT
};

#define ITR_NONDIFF_ALL 0x7fffffff

struct itr_node;
struct itr_shape_ctx;
typedef bool (*itr_shape_fn)(struct itr_shape_ctx *ctx);

struct itr_op_info {
    enum itr_op op;
    const char *name;
    enum itr_op_class cls;
    int min_inputs, max_inputs;   // max -1: variadic
    int n_outputs;                // -1: decided by the shape rule
    const char *attr_schema;
    const struct itr_attr_spec *attrs;  // parsed schema
    int n_attrs;
    itr_shape_fn shape;
    uint32_t nondiff;             // operand mask, or ITR_NONDIFF_ALL
    const char *doc;
};

const struct itr_op_info *itr_op_info(enum itr_op op);
bool        itr_op_lookup(const char *name, enum itr_op *out);
const char *itr_op_name(enum itr_op op);
const char *itr_op_class_name(enum itr_op_class c);
int         itr_op_attr_index(enum itr_op op, const char *attr_name); // -1 if none

// ---------------------------------------------------------------- values, nodes, graphs

enum itr_value_kind { ITR_VALUE_INPUT, ITR_VALUE_PARAM, ITR_VALUE_NODE };

struct itr_value {
    const char *name;        // source name or generated "_N"; unique in its graph
    struct itr_type type;
    enum itr_value_kind kind;
    int32_t node;            // producing node (ITR_VALUE_NODE), else -1
    int32_t out_index;       // which result of the node
    int32_t param;           // program param index (ITR_VALUE_PARAM), else -1
    struct itr_loc loc;
};

// Which part of a compiled training step a node belongs to (docs/training.md).
// Nodes of every other graph, and of a train entry before it is compiled,
// are ITR_PHASE_NONE.
enum itr_phase { ITR_PHASE_NONE, ITR_PHASE_FORWARD, ITR_PHASE_BACKWARD, ITR_PHASE_OPTIMIZER, ITR_PHASE_COUNT };

const char *itr_phase_name(enum itr_phase ph);              // "none", "forward", ...

struct itr_node {
    enum itr_op op;
    int32_t *inputs;  int n_inputs;    // value ids in the node's graph
    int32_t *outputs; int n_outputs;
    struct itr_attr *attrs;            // one per schema entry, in schema order
    struct itr_loc loc;
    const char *scope;                 // module instance path ("txt.gru"), or NULL
    enum itr_phase phase;              // set by the training transform; the builder leaves NONE
};

enum itr_graph_kind { ITR_GRAPH_ENTRY, ITR_GRAPH_BODY };

struct itr_graph {
    struct itr_program *prog;
    const char *name;
    enum itr_graph_kind kind;
    struct itr_value *values; int n_values, cap_values;
    struct itr_node  *nodes;  int n_nodes,  cap_nodes;   // topological order
    int32_t *inputs;  int n_inputs,  cap_inputs;          // value ids
    int32_t *outputs; int n_outputs, cap_outputs;
    const char **output_names;                            // parallel to outputs
    struct itr_loc loc;
    int32_t *name_index; int name_index_cap;              // open addressing: value ids by name
    bool train;                                           // the model's train entry (kind ENTRY)
};

// ---------------------------------------------------------------- parameters and initialisers

enum itr_init_kind {
    ITR_INIT_ZEROS, ITR_INIT_ONES, ITR_INIT_CONSTANT, ITR_INIT_UNIFORM, ITR_INIT_NORMAL,
    ITR_INIT_XAVIER_UNIFORM, ITR_INIT_KIND_COUNT
};

struct itr_init {
    enum itr_init_kind kind;
    double a, b;     // CONSTANT: a = value; UNIFORM: [a, b); NORMAL: mean a, std b; XAVIER_UNIFORM: a = gain
};

const char *itr_init_kind_name(enum itr_init_kind k);
bool        itr_init_kind_from_name(const char *s, enum itr_init_kind *out);

struct itr_param {
    const char *name;        // hierarchical: "txt.gru.w_ih"
    struct itr_type type;
    struct itr_init init;
    bool frozen;             // excluded from training updates
    struct itr_loc loc;
};

// ---------------------------------------------------------------- training
//
// A program with a train entry (graph->train) also has an optimizer and a
// list of state updates: train-graph outputs whose values are written back
// to parameters after each step. Before `itrc compile` the updates are the
// modules' `update` statements; the training transform (compiler/train.c)
// adds the parameters and optimizer state it updates and sets
// train_compiled. docs/training.md has the conventions.

enum itr_optimizer_kind { ITR_OPT_NONE, ITR_OPT_SGD, ITR_OPT_ADAM, ITR_OPT_ADAMW, ITR_OPT_KIND_COUNT };

const char *itr_optimizer_kind_name(enum itr_optimizer_kind k);   // "sgd", "adam", "adamw"
bool        itr_optimizer_kind_from_name(const char *s, enum itr_optimizer_kind *out);

// PyTorch's hyperparameters (torch.optim.SGD / Adam / AdamW); fields a kind
// does not use are 0. clip_grad_norm 0 means no clipping.
struct itr_optimizer {
    enum itr_optimizer_kind kind;   // NONE: the program has no train entry
    double lr, beta1, beta2, eps, momentum, weight_decay, clip_grad_norm;
    struct itr_loc loc;
};

enum itr_update_kind {
    ITR_UPDATE_STATE,       // a module's `update` (running statistics)
    ITR_UPDATE_PARAM,       // a trained parameter's optimizer step
    ITR_UPDATE_OPTIMIZER,   // optimizer state (moments, momentum buffers)
    ITR_UPDATE_KIND_COUNT
};

struct itr_state_update {
    int32_t param;            // the program parameter written back
    const char *output;       // the train graph's output holding its new value
    enum itr_update_kind kind;
};

// ---------------------------------------------------------------- programs

struct itr_program {
    struct itr_arena *arena;
    struct itr_dim_node *dimnodes; int n_dimnodes, cap_dimnodes;
    int32_t *dimhash; int dimhash_cap;               // open addressing over dimnodes
    struct itr_symbol *symbols; int n_symbols, cap_symbols;
    struct itr_param *params;   int n_params, cap_params;
    struct itr_graph **graphs;  int n_graphs, cap_graphs;   // entries and scan bodies
    const char *name;            // model name
    struct itr_loc loc;
    struct itr_optimizer optimizer;                        // kind NONE without a train entry
    struct itr_state_update *updates; int n_updates, cap_updates;
    bool train_compiled;         // the train entry is the whole training step
    // Fused kernels of a kernel target (ir/kir.h): set by `itrc compile
    // --target llvm` and read back from its plans; NULL otherwise. Owned.
    struct kir_plan_kernels *kernels;
    // Their compiled device code (ir/devcode.h): set by `itrc compile
    // --target cuda` and read back from its plans; NULL otherwise. Owned.
    struct itr_devcode *devcode;
};

struct kir_plan_kernels;
struct itr_devcode;
struct itr_program *itr_program_new(void);
void     itr_program_free(struct itr_program *p);
int32_t  itr_program_add_symbol(struct itr_program *p, const char *name, int64_t def, bool has_def, struct itr_loc loc);
int32_t  itr_program_find_symbol(const struct itr_program *p, const char *name);   // -1 if absent
int32_t  itr_program_add_param(struct itr_program *p, const char *name, struct itr_type t,
                               struct itr_init init, bool frozen, struct itr_loc loc);
int32_t  itr_program_find_param(const struct itr_program *p, const char *name);    // -1 if absent
struct itr_graph *itr_program_add_graph(struct itr_program *p, const char *name, enum itr_graph_kind kind);
struct itr_graph *itr_program_find_graph(const struct itr_program *p, const char *name);
char    *itr_program_strdup(struct itr_program *p, const char *s);   // arena copy
// The train entry, or NULL.
struct itr_graph *itr_program_train_graph(const struct itr_program *p);
void     itr_program_add_update(struct itr_program *p, int32_t param, const char *output, enum itr_update_kind kind);

// Graph construction. Each returns a value id, or -1 after reporting to diags.
int32_t itr_graph_add_input(struct itr_graph *g, const char *name, struct itr_type t, struct itr_loc loc);
int32_t itr_graph_use_param(struct itr_graph *g, int32_t param);   // one value per param per graph
void    itr_graph_add_output(struct itr_graph *g, const char *name, int32_t value);
// Appends a node, checks arity and attributes against the op table and runs
// its shape rule; results go to outs[0..]. attrs: one per schema entry in
// schema order (NULL = all defaults). Returns false (nothing appended) with
// a diagnostic naming the node, op, operand and shapes on error.
bool    itr_graph_add_node(struct itr_graph *g, enum itr_op op, const int32_t *inputs, int n_inputs,
                           const struct itr_attr *attrs, struct itr_loc loc, const char *scope,
                           int32_t *outs, struct itr_diags *d);
// Renames a value (keeps names unique by suffixing); returns the final name.
const char *itr_graph_name_value(struct itr_graph *g, int32_t value, const char *name);
int32_t itr_graph_find_value(const struct itr_graph *g, const char *name);  // -1 if absent

// Attribute helpers for kernels and passes (look the name up in the schema).
int64_t        itr_node_attr_int(const struct itr_node *n, const char *name);
double         itr_node_attr_float(const struct itr_node *n, const char *name);
const struct itr_attr *itr_node_attr(const struct itr_node *n, const char *name);
// A slice of one axis with unit step: its axis (normalised for an operand of
// rank `rank`) and its start and end as written (unclamped); false for any
// other node.
bool itr_slice_one_axis(const struct itr_node *n, int rank, int *axis, int64_t *start, int64_t *end);
// For node n whose result is needed only along rows of `axis`: the axis of
// operand k that those rows come from (its rows there give exactly the
// result's rows), -1 when operand k is read whole (broadcast along the axis,
// or the matmul operand the axis does not index), or -2 when n's rows do not
// come from its operands' rows. Elementwise ops, reductions, matmul,
// transpose, reshapes of later axes, squeeze and unsqueeze; -2 for the rest.
// Read by the rows rewrite and by packed scans (ir/scan_rows.h).
int itr_rows_operand_axis(const struct itr_graph *g, const struct itr_node *n, int axis, int k);
// A full attribute array with the schema's defaults, in the program's arena.
struct itr_attr *itr_attrs_default(struct itr_program *p, enum itr_op op);

// Verifier: arity, attribute kinds, value ids, topological order, types
// agree with the shape rules, entry/body signatures. Reports every problem.
bool itr_program_verify(struct itr_program *p, struct itr_diags *d);

// Structural equality of two programs (symbols, params, graphs, attrs).
// On difference, writes a description to why (if non-NULL).
bool itr_program_equal(const struct itr_program *a, const struct itr_program *b, char *why, size_t n);

// ---------------------------------------------------------------- shape rules

// What a shape rule sees. Rules report errors through itr_shape_error, which
// prefixes the node's location, op and scope; they set out[i] for each result.
struct itr_shape_ctx {
    struct itr_program *prog;
    struct itr_graph *graph;
    enum itr_op op;
    const struct itr_type *in; int n_in;
    const struct itr_attr *attrs;
    struct itr_type out[16]; int n_out;
    struct itr_loc loc;
    struct itr_diags *diags;
    const char *const *in_names;   // operand value names, for messages
};

bool itr_shape_error(struct itr_shape_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));   // always returns false
const struct itr_attr *itr_shape_attr(const struct itr_shape_ctx *c, const char *name);
// Normalises a possibly negative axis against rank; false if out of range.
bool itr_axis_normalize(int64_t axis, int rank, int *out);
// numpy's slice x[start:end:step] of an axis of size n (negative indices
// count from the end, out-of-range bounds clamp): the element count, and the
// first index in *first. One definition for shape rules, kernels and gradients.
int64_t itr_slice_range(int64_t n, int64_t start, int64_t end, int64_t step, int64_t *first);
// numpy broadcasting of two types' dims into out (dtype of a).
bool itr_broadcast_types(struct itr_shape_ctx *c, const struct itr_type *a, const struct itr_type *b,
                         struct itr_type *out, int ia, int ib);

#endif
