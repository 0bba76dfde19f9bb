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
    // Under the current binding:
    bool bound;
    int64_t arena_bytes;   // the arena's size: the peak this graph needs while it runs
    int64_t live_bytes;    // the most bytes live at one node (a lower bound of arena_bytes)
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

// "1536 bytes", "1.50 KiB", "12.3 MiB", "118 MiB": short form for reports.
void itr_format_bytes(int64_t bytes, char *buf, size_t n);

#endif
