// Shared by the ONNX importer's files: the import state, the value
// environment and the graph-building helpers the lowerings use.
#ifndef ITR_FRONTENDS_ONNX_INTERNAL_H
#define ITR_FRONTENDS_ONNX_INTERNAL_H

#include "frontends/onnx/onnx_import.h"
#include "onnx.pb-c.h"

// One ONNX value. It may be known at compile time as a tensor (k), as a
// vector or scalar of dim expressions (dv: what Shape and arithmetic on
// shapes give, possibly symbolic), and/or exist in the entry graph (id).
// A known value gets a graph value only when an op needs it at run time.
struct ox_val {
    char *name;                   // ONNX name (owned)
    int32_t id;                   // IR value id in the entry graph, -1 until needed
    struct itr_tensor *k;         // known value (owned), or NULL
    itr_dim *dv; int dv_n;        // known integer dims (owned), dv_n elements
    bool dv_scalar;               // dv is a scalar (rank 0), else rank 1
    enum itr_dtype dv_dtype;      // i64 or i32
    int input;                    // index of the ONNX graph input, or -1
    bool init;                    // an initializer
    // A one-element integer value known only at run time may be known to
    // be another one's value plus a constant (a Loop's iteration number i
    // and i + 1): then a Slice from one to the other has a known length.
    bool has_base;
    int32_t base;                 // graph value id of a one-element integer
    int64_t off;                  // this value = base + off
};

struct ox_row;
struct ox;

// The node being lowered.
struct ox_node {
    const Onnx__NodeProto *pb;
    const struct ox_row *row;
    struct ox_val *in[32]; int n_in;   // NULL: absent optional input
    int n_out;
};

typedef bool (*ox_lower_fn)(struct ox *x, struct ox_node *n);

// One row of the frontend op table (ops.c).
struct ox_row {
    const char *name;       // ONNX op_type
    int since, until;       // opset range covered (inclusive)
    ox_lower_fn lower;
    enum itr_op op;         // the primitive, for rows that map to one
};

struct ox {
    struct itr_program *p;
    struct itr_graph *g;
    struct itr_diags *d;
    const char *what;             // the model, in messages
    struct itr_loc loc;
    const struct itr_onnx_options *opt;
    struct itr_tensor_set *weights;
    int64_t opset;
    const Onnx__GraphProto *gp;
    struct ox_val *vals; int n_vals, cap_vals;
    int32_t *hash; int hash_cap;
    struct ox_node *cur;          // the node being lowered, for messages
    int node_index;               // its position in the graph
    const char *scope;            // its name, as the IR nodes' scope
    int n_bodies;                 // scan bodies made so far
    bool failed_reported;         // an error naming the node was reported
    // In an ONNX Scan's body (scan.c): the enclosing graph's import, and the
    // enclosing graph's values the body reads at run time, passed to our
    // scan as constant operands (the body's trailing inputs), in order.
    struct ox *parent;
    int32_t *captured; int n_captured, cap_captured;
    // An If branch (control.c) is imported into the enclosing graph itself:
    // the enclosing graph's values are then used directly, not captured as
    // body inputs. depth counts the subgraphs around this one (Scan, Loop
    // and If bodies), bounded so that a malformed model cannot recurse
    // without end.
    bool inline_scope;
    int depth;
};

// Lowering helpers (import.c). Each graph builder returns a value id of the
// entry graph, or -1 after reporting.
bool    ox_error(struct ox *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));   // false
int32_t ox_id(struct ox *x, struct ox_val *v);                  // materialise; -1 on error
const struct itr_type *ox_type(struct ox *x, int32_t id);
struct itr_attr *ox_attrs(struct ox *x, enum itr_op op);
void ox_set_int(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, int64_t v);
void ox_set_float(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, double v);
void ox_set_ints(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, const int64_t *v, int n);
void ox_set_dims(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, const itr_dim *v, int n);
void ox_set_dtype(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, enum itr_dtype dt);
void ox_set_graph(struct ox *x, struct itr_attr *a, enum itr_op op, const char *name, struct itr_graph *g);
bool ox_node_in(struct ox *x, struct itr_graph *g, enum itr_op op, const int32_t *ins, int n,
                const struct itr_attr *attrs, int32_t *outs);
int32_t ox_op(struct ox *x, enum itr_op op, const int32_t *ins, int n, const struct itr_attr *attrs);
int32_t ox_op1(struct ox *x, enum itr_op op, int32_t a);
int32_t ox_op2(struct ox *x, enum itr_op op, int32_t a, int32_t b);
int32_t ox_scalar(struct ox *x, struct itr_graph *g, enum itr_dtype dt, double v);   // rank-0 constant
int32_t ox_const(struct ox *x, struct itr_graph *g, const struct itr_tensor *t);     // copies t
int32_t ox_dim_scalar(struct ox *x, itr_dim dim, enum itr_dtype dt);                // a dim's value at run time

// Outputs of the current node.
bool ox_out(struct ox *x, struct ox_node *n, int i, int32_t id);
bool ox_out_known(struct ox *x, struct ox_node *n, int i, struct itr_tensor *k);        // takes ownership
bool ox_out_dims(struct ox *x, struct ox_node *n, int i, const itr_dim *dv, int nd, bool scalar,
                 enum itr_dtype dt);
bool ox_out_wanted(const struct ox_node *n, int i);   // the output exists and is named

// Compile-time values. ox_known_dims: an integer value of rank <= 1 as dims
// (constants for a known tensor), malloc'd into *out. ox_known_ints: the
// same when every element is a constant.
bool ox_known_dims(struct ox *x, struct ox_val *v, itr_dim **out, int *n, bool *scalar);
bool ox_known_ints(struct ox *x, struct ox_val *v, int64_t **out, int *n);
bool ox_need_ints(struct ox *x, struct ox_val *v, const char *what, int64_t **out, int *n);
bool ox_need_dims(struct ox *x, struct ox_val *v, const char *what, itr_dim **out, int *n);
struct itr_tensor *ox_known(struct ox *x, struct ox_val *v);   // a known tensor (from k or constant dv), or NULL

// ONNX attributes of the current node.
const Onnx__AttributeProto *ox_attr(const struct ox_node *n, const char *name);
int64_t ox_attr_i(const struct ox_node *n, const char *name, int64_t def);
double  ox_attr_f(const struct ox_node *n, const char *name, double def);
const char *ox_attr_s(const struct ox_node *n, const char *name, const char *def, char *buf, size_t len);
bool ox_attr_ints(const struct ox_node *n, const char *name, const int64_t **v, int *count);

bool ox_dtype_from_onnx(int32_t onnx_type, enum itr_dtype *out);
const char *ox_onnx_type_name(int32_t onnx_type);
struct itr_tensor *ox_tensor_from_proto(const Onnx__TensorProto *t, const char *what, struct itr_diags *d);

// The op table (ops.c) and the recurrent lowerings (rnn.c).
const struct ox_row *ox_find_row(const char *op_type, int64_t opset, const struct ox_row **other);
bool ox_lower_gru(struct ox *x, struct ox_node *n);
bool ox_lower_lstm(struct ox *x, struct ox_node *n);
bool ox_lower_rnn(struct ox *x, struct ox_node *n);

// ONNX Scan (scan.c), and what it needs of the driver (import.c): the value
// environment, one node's lowering, and names as .ir identifiers.
bool ox_lower_scan(struct ox *x, struct ox_node *n);
// ONNX If and Loop (control.c).
bool ox_lower_if(struct ox *x, struct ox_node *n);
bool ox_lower_loop(struct ox *x, struct ox_node *n);
#define OX_MAX_DEPTH 32   // nested subgraphs
// After a node is lowered: records base + offset relations (above) for its
// output. ox_dynamic_slice: a Slice whose start is known only at run time
// but whose end is start + k, as a gather of k elements; 1 done, 0 not that
// case, -1 error (reported).
void ox_track_offsets(struct ox *x, struct ox_node *n);
int ox_dynamic_slice(struct ox *x, struct ox_node *n);
struct ox_val *ox_capture(struct ox *x, const char *name);   // an enclosing graph's value, in a body; NULL if none
struct ox_val *ox_env_find(struct ox *x, const char *name);
struct ox_val *ox_env_add(struct ox *x, const char *name);
void ox_env_free(struct ox *x);
bool ox_lower_node(struct ox *x, const Onnx__NodeProto *pb);
void ox_ir_name(const char *s, char *buf, size_t n);

#endif
