// Reverse-mode automatic differentiation as a graph-to-graph transform.
//
// itr_vjp appends the adjoint of a graph to the graph itself, in the same IR,
// so the backward pass goes through the same passes and backends as any
// graph (design.md principles 1 and 7). Each op's gradient rule is the GRAD
// column of ir/ops.def; an op whose results carry no gradient
// (ITR_NONDIFF_ALL: comparisons, argmax, random, stop_gradient) stops the
// walk, and operands in the NONDIFF mask (indices, masks, lengths, seeds)
// never receive an adjoint.
#ifndef ITR_AUTODIFF_H
#define ITR_AUTODIFF_H

#include "ir/ir.h"

// What a gradient rule sees. Rules build their nodes with the gb_* helpers,
// which put them in c->g at the differentiated node's location and scope.
struct itr_grad_ctx {
    struct itr_graph *g;
    struct itr_diags *d;
    const struct itr_node *node;   // the node being differentiated (a copy: g->nodes may move)
    struct itr_loc loc;
    const char *scope;
    // need[i]: whether operand i's adjoint is used (it lies on a path from a
    // differentiated input). A rule may leave dx[i] = -1 where need[i] is
    // false and save the nodes; NULL means every operand is needed.
    const bool *need;
};

// A gradient rule. dy[k] is the adjoint of the node's result k, or -1 when
// that result does not reach the differentiated outputs. The rule writes
// dx[i] for every operand i: an adjoint with exactly the operand's type, or -1
// for "zero" (always -1 for operands in the NONDIFF mask). Returns false after
// reporting to c->d. Broadcasting must be undone by the rule (gb_sum_to).
typedef bool (*itr_grad_rule)(struct itr_grad_ctx *c, const struct itr_node *n, const int32_t *dy, int32_t *dx);

// The rule of an op, NULL if it has none.
itr_grad_rule itr_grad_rule_of(enum itr_op op);

// Appends to g the adjoint of outputs[0..n_out) with incoming adjoints
// seeds[0..n_out) (value ids in g with the outputs' types) and returns in
// grads[j] the adjoint of wrt[j], or -1 when wrt[j] does not influence the
// outputs (reached[j] = false; the caller decides whether that is a warning).
// Adjoints meeting at a value are summed. Errors: an op on the path without a
// rule (naming the op and the node's location), a rule giving a wrongly-typed
// adjoint (an internal error naming the op).
bool itr_vjp(struct itr_graph *g, const int32_t *outputs, const int32_t *seeds, int n_out,
             const int32_t *wrt, int n_wrt, int32_t *grads, bool *reached, struct itr_diags *d);

// ---- node builders for rules: each returns a value id, or -1 after reporting

int32_t gb_node(struct itr_grad_ctx *c, enum itr_op op, const int32_t *in, int n_in, const struct itr_attr *attrs);
// Same, for ops with several results (sort, topk, scan); outs receives them.
bool    gb_node_multi(struct itr_grad_ctx *c, enum itr_op op, const int32_t *in, int n_in,
                      const struct itr_attr *attrs, int32_t *outs);
struct itr_attr *gb_attrs(struct itr_grad_ctx *c, enum itr_op op);   // defaults, in the arena
void    gb_set_int(struct itr_attr *a, enum itr_op op, const char *name, int64_t v);
void    gb_set_bool(struct itr_attr *a, enum itr_op op, const char *name, bool v);
void    gb_set_float(struct itr_attr *a, enum itr_op op, const char *name, double v);
void    gb_set_ints(struct itr_grad_ctx *c, struct itr_attr *a, enum itr_op op, const char *name,
                    const int64_t *v, int n);
void    gb_set_dims(struct itr_grad_ctx *c, struct itr_attr *a, enum itr_op op, const char *name,
                    const itr_dim *v, int n);
void    gb_set_dtype(struct itr_attr *a, enum itr_op op, const char *name, enum itr_dtype dt);

int32_t gb_add(struct itr_grad_ctx *c, int32_t a, int32_t b);
int32_t gb_sub(struct itr_grad_ctx *c, int32_t a, int32_t b);
int32_t gb_mul(struct itr_grad_ctx *c, int32_t a, int32_t b);
int32_t gb_div(struct itr_grad_ctx *c, int32_t a, int32_t b);
int32_t gb_neg(struct itr_grad_ctx *c, int32_t a);
int32_t gb_unary(struct itr_grad_ctx *c, enum itr_op op, int32_t a);
// A scalar (rank 0) of the given dtype, holding v in double precision.
int32_t gb_scalar(struct itr_grad_ctx *c, double v, enum itr_dtype dt);
// Zeros with the given type (symbolic dims allowed).
int32_t gb_zeros(struct itr_grad_ctx *c, const struct itr_type *t);
// Sums x over the axes along which `target` was broadcast to x's shape
// (numpy rules), then reshapes to exactly `target`'s type.
int32_t gb_sum_to(struct itr_grad_ctx *c, int32_t x, const struct itr_type *target);
// Broadcasts x to type t (expand; x itself when the types are equal). Dims
// align at the right, as in numpy: give a reduction's result its reduced
// axes back as size 1 first (gb_reshape) when they are not leading.
int32_t gb_expand(struct itr_grad_ctx *c, int32_t x, const struct itr_type *t);
const struct itr_type *gb_type(struct itr_grad_ctx *c, int32_t v);
// reshape to t (x itself when the types are equal).
int32_t gb_reshape(struct itr_grad_ctx *c, int32_t x, const struct itr_type *t);
// x [..., m] as the matrix [prod(...), m] of its rows (the batch rows of a
// projection, or a scan's stacked per-step rows, as one matrix).
int32_t gb_rows(struct itr_grad_ctx *c, int32_t x);
// sum/mean/max/min over axes (x itself for n_axes = 0: never "all axes").
int32_t gb_reduce(struct itr_grad_ctx *c, enum itr_op op, int32_t x, const int64_t *axes, int n_axes, bool keepdims);
int32_t gb_cast(struct itr_grad_ctx *c, int32_t x, enum itr_dtype dt);      // x itself if already dt
int32_t gb_where(struct itr_grad_ctx *c, int32_t cond, int32_t a, int32_t b);
int32_t gb_transpose(struct itr_grad_ctx *c, int32_t x, const int64_t *perm, int n);   // perm NULL: reverse
int32_t gb_swap_last2(struct itr_grad_ctx *c, int32_t x);   // x with its last two axes swapped (a matrix transpose)
// True when operand i's adjoint is wanted (c->need, see above).
bool    gb_needs(const struct itr_grad_ctx *c, int i);

// Builders given a -1 operand (a failed builder upstream) return -1, so a
// rule may chain them and check only the final value.

// Test hook: itr_vjp looks rules up through this pointer (itr_grad_rule_of by
// default), so tests can reach the "no rule" and "wrongly typed adjoint"
// error paths, which no op of the table exercises. Not for production use.
extern itr_grad_rule (*itr_vjp_rule_lookup)(enum itr_op op);

#endif
