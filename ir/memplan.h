// Memory plan of a graph (docs/memplan.md): where every intermediate result
// lives in one arena per entry point, so that running an entry allocates
// once per dims binding instead of once per node.
//
// Two stages, because the graph is fixed at compile time but its sizes are
// not (symbolic dims, design.md principle 6):
//   itr_memplan_build  once per graph: liveness over the node order and
//                      each buffer's size as the dim expressions of its type;
//   itr_memplan_bind   once per dims binding: sizes evaluated, then offsets
//                      assigned greedily (best-fitting gap among the buffers
//                      live at the same time; largest-first and
//                      longest-lived-first orders, the smaller arena kept),
//                      64-byte aligned. A binding that repeats needs no new
//                      bind.
//
// What is in the arena: every node result, live from the node that produces
// it to its last reader (graph outputs to the end of the graph). Graph inputs
// and parameters are not: the caller and the session own them. A scan node
// also gets a workspace, live only while it runs: its body's own arena
// (planned the same way, recursively, for one step) plus one buffer per carry
// (the carry handed to the next step must outlive the step's arena). Scanned
// slices are views into the operand and need no space.
//
// Nothing is aliased or updated in place yet: a node's operands and results
// are live together, so they never share bytes.
//
// Why ir/ and not compiler/ (where backends.md §1 first put it): the plan is
// bound to dims at run time, so the runtime's sessions and the backends'
// prepare must call it, and neither may include compiler/ (design.md's
// layers). It needs nothing but the graph IR and ir/bind.h.
#ifndef ITR_MEMPLAN_H
#define ITR_MEMPLAN_H

#include "ir/bind.h"
#include "ir/ir.h"

#define ITR_MEMPLAN_ALIGN 64

struct itr_memplan;

struct itr_memplan_buffer {
    int32_t value;     // value id in the graph; -1 for a scan node's workspace
    int32_t node;      // the producing node (the scan node, for a workspace)
    int first, last;   // live from node index first to last, inclusive; n_nodes = to the end
    // Under the current binding (itr_memplan_bind):
    int64_t bytes;     // rounded up to ITR_MEMPLAN_ALIGN; 0 = needs no space
    int64_t offset;    // in the arena, a multiple of ITR_MEMPLAN_ALIGN
    struct itr_memplan *body;   // workspace: the scan body's plan; else NULL
};

struct itr_memplan {
    const struct itr_program *prog;
    const struct itr_graph *graph;
    struct itr_memplan_buffer *buffers; int n_buffers;
    // A schedule plan (itr_memplan_build_schedule): first/last and `node`
    // are step indices of this schedule, f32 values are sized as f64 in an
    // f64 schedule, and every sized buffer takes at least ITR_MEMPLAN_ALIGN
    // bytes (the executor's floor for empty tensors). NULL: a graph plan.
    const struct kir_schedule *schedule;
    // Under the current binding:
    bool bound;
    int64_t arena_bytes;   // the arena's size: the peak this graph needs while it runs
    int64_t live_bytes;    // the most bytes live at one node (a lower bound of arena_bytes)
    int n_unsized;         // schedule plans: buffers whose size needs a dim the binding leaves
                           // unbound (bytes 0: not in the arena), in this plan and its bodies
};

// Liveness and sizes of g (an entry or a scan body of p). NULL, with a
// diagnostic, only for a malformed graph (a scan without its body).
struct itr_memplan *itr_memplan_build(const struct itr_program *p, const struct itr_graph *g, struct itr_diags *d);
void itr_memplan_free(struct itr_memplan *m);

// Evaluates sizes under b and assigns offsets. False when a size needs a
// symbol b leaves unbound: unbound (n_symbols flags, may be NULL) then marks
// every such symbol. A size that overflows int64 or a dim expression that
// cannot be evaluated (division by zero) is reported in d (may be NULL).
bool itr_memplan_bind(struct itr_memplan *m, const struct itr_dim_bindings *b, bool *unbound, struct itr_diags *d);

// Checks a bound plan: every offset aligned, every buffer inside the arena,
// and no two buffers live at the same node sharing a byte, in this graph and
// in every scan body. False with the first violation described in why.
bool itr_memplan_verify(const struct itr_memplan *m, char *why, size_t n);

// One call for callers that want only the number (itrc dump, itr-run
// start-up): the arena bytes g needs under b. False when b leaves a symbol
// the sizes need unbound (flagged in unbound, as for itr_memplan_bind) or on
// an error (reported in d, may be NULL).
bool itr_memplan_peak_bytes(const struct itr_program *p, const struct itr_graph *g, const struct itr_dim_bindings *b,
                            int64_t *peak, bool *unbound, struct itr_diags *d);

// ---- schedule plans: the LLVM executor's arena (docs/memplan.md, "Schedule plans")
//
// The same packing over a kernel schedule (ir/kir.h) instead of the graph's
// nodes: a buffer is a materialised value that the executor itself
// allocates, i.e. whose first writer is a KERNEL step, a GEMM step or a scan
// with a compiled body, live from that step to the last step that reads or
// writes it. Not planned: inputs and parameters (the caller's), the entry's
// outputs (handed to the caller, who frees them), and values a NODE step
// produces first (the reference kernels allocate those). A scan step with a
// compiled body gets a workspace live only at that step: the body's own
// schedule plan, in which the body's outputs (a carry, a stacked slice) are
// not planned either, since they outlive one step.
//
// itr_memplan_bind binds a schedule plan like a graph plan, except that a
// buffer whose size needs an unbound dim is left out of the arena (bytes 0,
// counted in n_unsized, its symbols flagged in unbound) instead of failing
// the bind: the executor allocates it when it is written.
struct kir_schedule;
struct itr_memplan *itr_memplan_build_schedule(const struct itr_program *p, const struct itr_graph *g,
                                               const struct kir_schedule *s, struct itr_diags *d);
// The buffer of value v in plan m, or NULL when v is not planned.
const struct itr_memplan_buffer *itr_memplan_find(const struct itr_memplan *m, int32_t value);
// itr_memplan_peak_bytes for schedule s of g: false when a planned value's
// size needs an unbound dim (flagged in unbound) or on an error.
bool itr_memplan_schedule_peak_bytes(const struct itr_program *p, const struct itr_graph *g,
                                     const struct kir_schedule *s, const struct itr_dim_bindings *b, int64_t *peak,
                                     bool *unbound, struct itr_diags *d);

// "1536 bytes", "1.50 KiB", "12.3 MiB", "118 MiB": short form for reports.
void itr_format_bytes(int64_t bytes, char *buf, size_t n);

#endif
