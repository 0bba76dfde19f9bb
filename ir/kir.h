// The kernel IR (backends.md §3): a small typed loop-nest IR between the
// graph IR and the renderers. Fusion and scheduling (compiler/lower.c)
// produce it; the LLVM renderer (backends/llvm/) and the CUDA renderer only
// print or build it and never re-derive fusion.
//
// A kernel is a function over
//   - buffer parameters: typed pointers (dtype), read-only or written;
//     `noalias` when the scheduler guarantees that no other parameter of the
//     kernel overlaps it;
//   - i64 dim parameters: symbolic dims of the graph (B, L, ...) or values
//     derived from them, passed at every launch (design.md principle 6);
//   - the range [begin, end) of its outermost parallel loop, so that a thread
//     pool (or a GPU grid) can split it without re-rendering.
//
// Expressions and statements live in pools inside the kernel and refer to
// each other by index, so a kernel is one flat object that serialises
// without pointers. Expressions are pure; a `load` reads a buffer at an
// element index (not bytes).
//
// The calling convention of a rendered kernel, on every CPU target:
//   void NAME(void *const *bufs, const int64_t *dims, int64_t begin, int64_t end);
// bufs[i] is buffer parameter i, dims[j] dim parameter j. On the GPU the
// same parameters become kernel arguments and [begin, end) the grid's range.
//
// An accumulator's combined value (lane -1) folds its lanes in order,
// lane 0 first.
//
// Variables are scalars numbered per kernel: loop indices (i64), `let`
// bindings (immutable) and accumulators (mutable, optionally with several
// lanes: independent partial results that a renderer may keep in one vector
// register; the lanes are combined in a fixed order, so results do not
// depend on the vector width).
#ifndef ITR_KIR_H
#define ITR_KIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"

// Scalar types of expressions. Buffers use itr_dtype; a bool buffer holds
// one byte per element, loaded as KIR_BOOL.
enum kir_type { KIR_I64, KIR_I32, KIR_F32, KIR_F64, KIR_BOOL, KIR_TYPE_COUNT };

enum kir_expr_kind {
    KIR_E_CONST_INT,   // ival, type I64/I32/BOOL
    KIR_E_CONST_FLOAT, // fval, type F32/F64 (the double rounded to the type)
    KIR_E_VAR,         // var: a loop index, let or accumulator (its lane a, -1 = the combined value)
    KIR_E_DIM,         // dim: the kernel's i64 dim parameter index
    KIR_E_BEGIN,       // the kernel's `begin` argument (i64)
    KIR_E_END,         // the kernel's `end` argument (i64)
    KIR_E_LOAD,        // buf[a]
    KIR_E_UNARY,       // op(a)
    KIR_E_BINARY,      // op(a, b)
    KIR_E_SELECT,      // a ? b : c  (a is BOOL; both arms may be evaluated)
    KIR_E_CAST,        // (type) a
    KIR_E_KIND_COUNT
};

// Scalar operations. Float ops follow C's <math.h> in the expression's type;
// integer DIV and MOD are floor division and its remainder (the divisor is
// never 0 where the scheduler emits them); comparisons give BOOL.
enum kir_op {
    // unary
    KIR_NEG, KIR_ABS, KIR_SIGN, KIR_EXP, KIR_LOG, KIR_SQRT, KIR_RSQRT, KIR_RECIP, KIR_TANH, KIR_ERF,
    KIR_SIN, KIR_COS, KIR_SIGMOID, KIR_NOT,
    // binary
    KIR_ADD, KIR_SUB, KIR_MUL, KIR_DIV, KIR_MOD, KIR_MIN, KIR_MAX, KIR_POW,
    KIR_EQ, KIR_NE, KIR_LT, KIR_LE, KIR_GT, KIR_GE, KIR_AND, KIR_OR,
    // unary ops added later go here: plans store kernel ops by number
    KIR_ACOS,
    KIR_OP_COUNT
};

struct kir_expr {
    enum kir_expr_kind kind;
    enum kir_type type;
    enum kir_op op;          // UNARY, BINARY
    int32_t a, b, c;         // operand expressions (LOAD: a = index; VAR: a = lane or -1)
    int32_t buf;             // LOAD
    int32_t var;             // VAR
    int32_t dim;             // DIM
    int64_t ival;
    double fval;
};

enum kir_stmt_kind {
    KIR_S_SEQ,         // body[0..n_body)
    KIR_S_FOR,         // for var in [lo, hi): body[0]
    KIR_S_STORE,       // buf[index] = value
    KIR_S_LET,         // var = value; visible to the statements after it in the enclosing SEQ
    KIR_S_ACC_INIT,    // var (every lane) = value
    KIR_S_ACC_UPDATE,  // var[lane] = combine(var[lane], value), with the accumulator's combine
    KIR_S_IF,          // if cond: body[0] (else body[1] when n_body == 2)
    KIR_S_KIND_COUNT
};

enum kir_loop_kind {
    KIR_LOOP_SERIAL,
    KIR_LOOP_PARALLEL,   // the outermost one: runs over [begin, end) given at launch
    KIR_LOOP_VECTOR,     // innermost, independent iterations: the renderer vectorises it
    KIR_LOOP_UNROLL,     // constant trip count, unrolled (accumulator lanes)
    KIR_LOOP_KIND_COUNT
};

struct kir_stmt {
    enum kir_stmt_kind kind;
    enum kir_loop_kind loop;  // FOR
    int32_t var;              // FOR, LET, ACC_*
    int32_t lo, hi;           // FOR bounds (expressions)
    int32_t buf;              // STORE
    int32_t index, value;     // STORE; LET/ACC_* use value; ACC_UPDATE uses index as the lane expression
    int32_t cond;             // IF
    int32_t *body; int n_body, cap_body;   // SEQ, FOR (1), IF (1 or 2)
};

enum kir_var_kind { KIR_VAR_LOOP, KIR_VAR_LET, KIR_VAR_ACC };

// The most lanes an accumulator may have: a column-reduction chunk
// (compiler/lower.c) is the widest; renderers keep it on the stack.
#define KIR_MAX_LANES 2048

struct kir_var {
    const char *name;        // for printing ("i0", "acc")
    enum kir_var_kind kind;
    enum kir_type type;
    int lanes;               // accumulators: number of independent partial results (>= 1)
    enum kir_op combine;     // accumulators: ADD, MUL, MIN or MAX
};

struct kir_buffer {
    const char *name;        // the graph value it holds, for printing and errors
    enum itr_dtype dtype;
    bool written;            // the kernel stores to it
    bool noalias;
};

struct kir_dim_param {
    const char *name;        // printing ("B", "B*L")
    itr_dim dim;             // the program's dim expression it is evaluated from at launch
};

struct kir_kernel {
    char *name;              // derived from the fused op chain: "k7_sub_exp_sum_div"
    struct kir_buffer *bufs; int n_bufs, cap_bufs;
    struct kir_dim_param *dims; int n_dims, cap_dims;
    struct kir_var *vars; int n_vars, cap_vars;
    struct kir_expr *exprs; int n_exprs, cap_exprs;
    struct kir_stmt *stmts; int n_stmts, cap_stmts;
    int32_t body;            // the root statement (a SEQ)
    int32_t parallel_hi;     // expression: the trip count of the parallel loop ([0, hi)), for
                             // printing and checking; -1 when the kernel has none (begin=0, end=1)
    itr_dim parallel_dim;    // the same trip count as a dim of the program, which launchers evaluate
                             // with the run's bindings; -1 when the kernel has none
};

// A schedule: how one graph runs on a kernel backend. Steps run in order;
// a KERNEL step launches a kernel with graph values bound to its buffers, a
// GEMM step calls the contraction library, a NODE step runs one graph node
// with the reference kernels (ops that have no lowering yet: indexing,
// sort, random) or, for a scan with a compiled body, the executor's loop. Values the schedule
// materialises are the graph's inputs, parameters and outputs and every
// value a step writes; all others live only inside fused kernels.
enum kir_step_kind { KIR_STEP_KERNEL, KIR_STEP_NODE, KIR_STEP_GEMM };

struct kir_schedule;

struct kir_step {
    enum kir_step_kind kind;
    int32_t kernel;              // KERNEL: index into kernels
    int32_t *bufs; int n_bufs;   // KERNEL: graph value bound to each buffer parameter
    int32_t node;                // NODE: the node run; KERNEL: the node whose result it computes
    itr_dim guard_count;         // KERNEL: when this dim evaluates to 0 the step runs as a NODE
                                 // instead (max/min over nothing: the reference's error); -1: none
    int32_t guard_node;          // KERNEL with a guard: the node run when it trips (-1: `node`); a
                                 // row-fused max/min, whose fused operand then has no elements
    struct kir_schedule *body;   // NODE of a scan: its body's schedule, which the executor runs once
                                 // per step (NULL: the reference interpreter runs the scan)
    // GEMM: the node's matmul through the contraction library: operands are
    // materialised values, each read as stored or with its last two axes
    // swapped (a transpose never copies); batch dims broadcast with stride 0.
    int32_t gemm_a, gemm_b;
    bool trans_a, trans_b;
    // GEMM: the value whose shape an operand is read with, when gemm_a (b)
    // is read through a reshape, unsqueeze or squeeze (the same memory in
    // another shape, so no copy); -1: the operand's own shape.
    int32_t gemm_view_a, gemm_view_b;
    // KERNEL, a training update written in place (docs/kernels.md, "Updates
    // in place"): per buffer, the graph output that the buffer's memory holds
    // after the step when the kernel overwrites an input (a parameter or its
    // optimizer state) with it; -1: none. NULL when no buffer is aliased.
    int32_t *alias;
};

struct kir_schedule {
    struct kir_kernel **kernels; int n_kernels, cap_kernels;
    struct kir_step *steps; int n_steps, cap_steps;
    bool f64;                    // f32 values are computed (and held) as f64
    int n_values;                // of the graph
    bool *materialised;          // per graph value
    int32_t *last_step;          // per graph value: the last step that reads it (-1: none; outputs: n_steps)
};

void kir_schedule_free(struct kir_schedule *s);
// The output that step st's buffer b holds after the step, or -1.
static inline int32_t kir_step_alias(const struct kir_step *st, int b) { return st->alias ? st->alias[b] : -1; }

// The schedules a plan carries: one per (graph, precision).
struct kir_plan_schedule {
    int32_t graph;               // index into the program's graphs
    bool f64;
    struct kir_schedule *s;
};

struct kir_plan_kernels {
    struct kir_plan_schedule *items; int n, cap;
};

// Takes ownership of s.
void kir_plan_kernels_add(struct kir_plan_kernels *k, int32_t graph, bool f64, struct kir_schedule *s);
const struct kir_schedule *kir_plan_kernels_find(const struct kir_plan_kernels *k, int32_t graph, bool f64);
void kir_plan_kernels_free(struct kir_plan_kernels *k);   // frees the schedules; k itself is the caller's
// Kernels and steps, readable (`itrc dump --kernels`).
void kir_schedule_print(const struct kir_schedule *s, const struct itr_graph *g, FILE *f);

// ---- construction (every function aborts on out-of-memory, like the IR arena)

struct kir_kernel *kir_kernel_new(const char *name);
void    kir_kernel_free(struct kir_kernel *k);
int32_t kir_add_buffer(struct kir_kernel *k, const char *name, enum itr_dtype dtype, bool written);
int32_t kir_add_dim(struct kir_kernel *k, const char *name, itr_dim dim);
int32_t kir_add_var(struct kir_kernel *k, const char *name, enum kir_var_kind kind, enum kir_type type);
int32_t kir_add_acc(struct kir_kernel *k, const char *name, enum kir_type type, int lanes, enum kir_op combine);

int32_t kir_const_int(struct kir_kernel *k, enum kir_type t, int64_t v);
int32_t kir_const_float(struct kir_kernel *k, enum kir_type t, double v);
int32_t kir_var_ref(struct kir_kernel *k, int32_t var);                // a loop index or let
int32_t kir_acc_ref(struct kir_kernel *k, int32_t var, int32_t lane);  // an accumulator lane (-1: combined)
int32_t kir_dim_ref(struct kir_kernel *k, int32_t dim);
int32_t kir_begin(struct kir_kernel *k);
int32_t kir_end(struct kir_kernel *k);
int32_t kir_load(struct kir_kernel *k, int32_t buf, int32_t index);
int32_t kir_unary(struct kir_kernel *k, enum kir_op op, int32_t a);
int32_t kir_binary(struct kir_kernel *k, enum kir_op op, int32_t a, int32_t b);
int32_t kir_select(struct kir_kernel *k, int32_t cond, int32_t a, int32_t b);
int32_t kir_cast(struct kir_kernel *k, enum kir_type t, int32_t a);
// Index arithmetic on i64 with the obvious simplifications (x+0, x*1, x*0,
// constants folded), so that lowering can compose index maps freely.
int32_t kir_iadd(struct kir_kernel *k, int32_t a, int32_t b);
int32_t kir_imul(struct kir_kernel *k, int32_t a, int32_t b);
int32_t kir_iconst(struct kir_kernel *k, int64_t v);

int32_t kir_seq(struct kir_kernel *k);
void    kir_append(struct kir_kernel *k, int32_t seq, int32_t stmt);   // to a SEQ, FOR or IF body
int32_t kir_for(struct kir_kernel *k, int32_t var, int32_t lo, int32_t hi, enum kir_loop_kind kind); // body: a new SEQ
int32_t kir_for_body(const struct kir_kernel *k, int32_t for_stmt);
int32_t kir_store(struct kir_kernel *k, int32_t buf, int32_t index, int32_t value);
int32_t kir_let(struct kir_kernel *k, int32_t var, int32_t value);
int32_t kir_acc_init(struct kir_kernel *k, int32_t var, int32_t value);
int32_t kir_acc_update(struct kir_kernel *k, int32_t var, int32_t lane, int32_t value);
int32_t kir_if(struct kir_kernel *k, int32_t cond);   // then-body: a new SEQ; kir_if_else adds the else SEQ
int32_t kir_if_else(struct kir_kernel *k, int32_t if_stmt);

// ---- inspection

const char *kir_type_name(enum kir_type t);
const char *kir_op_name(enum kir_op op);
enum kir_type kir_type_of_dtype(enum itr_dtype dt);
bool kir_op_is_unary(enum kir_op op);
// Checks operand ids, types and variable scoping; on failure writes why.
bool kir_verify(const struct kir_kernel *k, char *why, size_t n);
// Readable form, as `itrc dump --kernels` prints it.
void kir_print(const struct kir_kernel *k, FILE *f);

#endif
