// Memory planning (ir/memplan.h, docs/memplan.md).
#include "ir/memplan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/kir.h"

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    return p;
}

// ------------------------------------------------------------ build

void itr_memplan_free(struct itr_memplan *m) {
    if (!m) return;
    for (int i = 0; i < m->n_buffers; i++) itr_memplan_free(m->buffers[i].body);
    free(m->buffers);
    free(m);
}

struct itr_memplan *itr_memplan_build(const struct itr_program *p, const struct itr_graph *g, struct itr_diags *d) {
    struct itr_memplan *m = xcalloc(1, sizeof *m);
    m->prog = p;
    m->graph = g;
    // Last reader of every value; graph outputs are read "after" the last node.
    int *last = xcalloc((size_t)g->n_values, sizeof *last);
    for (int v = 0; v < g->n_values; v++) last[v] = -1;
    for (int t = 0; t < g->n_nodes; t++)
        for (int k = 0; k < g->nodes[t].n_inputs; k++) {
            int32_t v = g->nodes[t].inputs[k];
            if (v >= 0 && v < g->n_values && last[v] < t) last[v] = t;
        }
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] >= 0 && g->outputs[k] < g->n_values) last[g->outputs[k]] = g->n_nodes;

    int cap = 0;
    for (int t = 0; t < g->n_nodes; t++) cap += g->nodes[t].n_outputs + (g->nodes[t].op == ITR_OP_SCAN);
    m->buffers = xcalloc((size_t)cap, sizeof *m->buffers);
    bool ok = true;
    for (int t = 0; t < g->n_nodes && ok; t++) {
        const struct itr_node *n = &g->nodes[t];
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            // A result nobody reads still gets written: it lives at its node.
            m->buffers[m->n_buffers++] = (struct itr_memplan_buffer){
                .value = v, .node = t, .first = t, .last = last[v] > t ? last[v] : t };
        }
        if (n->op == ITR_OP_SCAN) {
            const struct itr_attr *ba = itr_node_attr(n, "body");
            const struct itr_graph *body = ba && ba->kind == ITR_ATTR_GRAPH ? ba->u.graph : NULL;
            struct itr_memplan *bm = body ? itr_memplan_build(p, body, d) : NULL;
            if (!bm) {
                if (!body) itr_diag_error(d, n->loc, "memory plan of '%s': scan node %d has no body graph", g->name, t);
                ok = false;
                break;
            }
            m->buffers[m->n_buffers++] = (struct itr_memplan_buffer){
                .value = -1, .node = t, .first = t, .last = t, .body = bm };
        }
    }
    free(last);
    if (!ok) {
        itr_memplan_free(m);
        return NULL;
    }
    return m;
}

// ------------------------------------------------------------ sizes

// Marks in unbound every symbol of dim expression x that b does not bind.
static void mark_unbound(const struct itr_program *p, itr_dim x, const struct itr_dim_bindings *b, bool *unbound) {
    if (x < 0 || x >= p->n_dimnodes) return;
    const struct itr_dim_node *dn = &p->dimnodes[x];
    switch (dn->kind) {
    case ITR_DIM_CONST: return;
    case ITR_DIM_SYM:
        if (dn->value >= 0 && dn->value < b->n && !b->bound[dn->value] && unbound) unbound[dn->value] = true;
        return;
    default:
        mark_unbound(p, dn->a, b, unbound);
        mark_unbound(p, dn->b, b, unbound);
    }
}

static int64_t align_up(int64_t x) { return (x + ITR_MEMPLAN_ALIGN - 1) / ITR_MEMPLAN_ALIGN * ITR_MEMPLAN_ALIGN; }

// Bytes of a value of type t, aligned. 0: unbound (marked) or error (reported), with *ok false.
static int64_t type_bytes(const struct itr_program *p, const struct itr_graph *g, const struct itr_type *t,
                          const struct itr_dim_bindings *b, bool *unbound, struct itr_diags *d, bool *ok,
                          bool *missing_out) {
    int64_t total = (int64_t)itr_dtype_size(t->dtype);
    bool missing = false;
    for (int i = 0; i < t->rank; i++) {
        int64_t v;
        int32_t unb;
        if (!itr_dim_eval(p, t->dims[i], b->value, b->bound, &v, &unb)) {
            if (unb >= 0) {
                mark_unbound(p, t->dims[i], b, unbound);
                missing = true;
                continue;
            }
            char ds[96];
            itr_dim_format(p, t->dims[i], ds, sizeof ds);
            if (d) itr_diag_error(d, ITR_NOLOC, "memory plan of '%s': dim %s cannot be evaluated", g->name, ds);
            *ok = false;
            return 0;
        }
        if (v != 0 && total > (INT64_MAX - ITR_MEMPLAN_ALIGN) / v) {
            if (d) itr_diag_error(d, ITR_NOLOC, "memory plan of '%s': a value's size overflows 64 bits", g->name);
            *ok = false;
            return 0;
        }
        total *= v;
    }
    if (missing) {
        *ok = false;
        if (missing_out) *missing_out = true;
        return 0;
    }
    return align_up(total);
}

// ------------------------------------------------------------ offsets

static bool live_together(const struct itr_memplan_buffer *a, const struct itr_memplan_buffer *b) {
    return a->first <= b->last && b->first <= a->last;
}

// Sort keys are copied out of the buffers so that the comparators need no
// global state: plans may be made from several threads at once.
struct order_key { int64_t bytes; int first, span, idx; };
struct extent { int64_t offset, end; };

// Largest first; ties by earliest start, then by position (deterministic).
static int cmp_by_size(const void *x, const void *y) {
    const struct order_key *a = x, *b = y;
    if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a->idx - b->idx;
}

// Longest-lived first (then as by size): values that span the graph (outputs,
// activations kept for the backward pass) settle at the bottom.
static int cmp_by_span(const void *x, const void *y) {
    const struct order_key *a = x, *b = y;
    if (a->span != b->span) return a->span > b->span ? -1 : 1;
    return cmp_by_size(x, y);
}

static int cmp_extent(const void *x, const void *y) {
    const struct extent *a = x, *b = y;
    if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

// Greedy placement: buffers are taken in the given order; each goes into
// the smallest gap, among the already placed buffers that are live at the
// same time, that holds it, or above all of them. Returns the arena size.
static int64_t place(struct itr_memplan_buffer *bufs, int n, int (*order_cmp)(const void *, const void *)) {
    struct order_key *order = xcalloc((size_t)n, sizeof *order);
    int *placed = xcalloc((size_t)n, sizeof *placed);
    struct extent *conflict = xcalloc((size_t)n, sizeof *conflict);
    int n_order = 0, n_placed = 0;
    for (int i = 0; i < n; i++) {
        const struct itr_memplan_buffer *b = &bufs[i];
        bufs[i].offset = 0;
        if (b->bytes > 0) order[n_order++] = (struct order_key){ b->bytes, b->first, b->last - b->first, i };
    }
    qsort(order, (size_t)n_order, sizeof *order, order_cmp);
    int64_t arena = 0;
    for (int k = 0; k < n_order; k++) {
        struct itr_memplan_buffer *b = &bufs[order[k].idx];
        int nc = 0;
        for (int j = 0; j < n_placed; j++) {
            const struct itr_memplan_buffer *c = &bufs[placed[j]];
            if (live_together(b, c)) conflict[nc++] = (struct extent){ c->offset, c->offset + c->bytes };
        }
        qsort(conflict, (size_t)nc, sizeof *conflict, cmp_extent);
        int64_t best = -1, best_gap = INT64_MAX, cursor = 0;
        for (int j = 0; j < nc; j++) {
            int64_t gap = conflict[j].offset - cursor;
            if (gap >= b->bytes && gap < best_gap) { best = cursor; best_gap = gap; }
            if (conflict[j].end > cursor) cursor = conflict[j].end;
        }
        b->offset = best >= 0 ? best : cursor;
        if (b->offset + b->bytes > arena) arena = b->offset + b->bytes;
        placed[n_placed++] = order[k].idx;
    }
    free(order);
    free(placed);
    free(conflict);
    return arena;
}

// Two greedy orders, the smaller arena kept. By size is the strategy of
// TensorFlow Lite's arena planner: large buffers fix the arena's shape, small
// ones fill the holes dead values leave. By lifetime does better when a few
// long-lived values would otherwise split the arena (training steps, whose
// forward activations live until the backward pass reads them). Neither is
// optimal (the problem is NP-hard); together they stay within a few percent
// of the live peak on every model (docs/memplan.md).
static void assign_offsets(struct itr_memplan *m) {
    int64_t by_span = place(m->buffers, m->n_buffers, cmp_by_span);
    int64_t by_size = place(m->buffers, m->n_buffers, cmp_by_size);
    if (by_span < by_size) by_size = place(m->buffers, m->n_buffers, cmp_by_span);   // redo the winner: offsets are in the buffers
    m->arena_bytes = by_size;
}

// The most bytes live at one node: what any placement needs at least.
static int64_t live_peak(const struct itr_memplan *m) {
    int n_nodes = m->schedule ? m->schedule->n_steps : m->graph->n_nodes;
    int64_t *delta = xcalloc((size_t)n_nodes + 2, sizeof *delta);
    for (int i = 0; i < m->n_buffers; i++) {
        delta[m->buffers[i].first] += m->buffers[i].bytes;
        delta[m->buffers[i].last + 1] -= m->buffers[i].bytes;
    }
    int64_t cur = 0, peak = 0;
    for (int t = 0; t <= n_nodes; t++) {
        cur += delta[t];
        if (cur > peak) peak = cur;
    }
    free(delta);
    return peak;
}

// A schedule plan's value: f32 held as f64 in an f64 schedule, and never
// under ITR_MEMPLAN_ALIGN bytes (the executor gives an empty tensor 64 bytes
// so that the clamped loads of pad and concat stay inside it).
static int64_t schedule_value_bytes(const struct itr_memplan *m, int32_t v, const struct itr_dim_bindings *b,
                                    bool *unbound, struct itr_diags *d, bool *ok, bool *missing) {
    struct itr_type t = m->graph->values[v].type;
    if (m->schedule->f64 && t.dtype == ITR_F32) t.dtype = ITR_F64;
    int64_t bytes = type_bytes(m->prog, m->graph, &t, b, unbound, d, ok, missing);
    return *ok && bytes < ITR_MEMPLAN_ALIGN ? ITR_MEMPLAN_ALIGN : bytes;
}

bool itr_memplan_bind(struct itr_memplan *m, const struct itr_dim_bindings *b, bool *unbound, struct itr_diags *d) {
    const struct itr_program *p = m->prog;
    const struct itr_graph *g = m->graph;
    bool ok = true;
    m->bound = false;
    m->n_unsized = 0;
    for (int i = 0; i < m->n_buffers; i++) {
        struct itr_memplan_buffer *buf = &m->buffers[i];
        bool one = true, missing = false;
        if (buf->value >= 0 && m->schedule) {
            buf->bytes = schedule_value_bytes(m, buf->value, b, unbound, d, &one, &missing);
            // Left out of the arena, not an error: the executor allocates it.
            if (missing) {
                m->n_unsized++;
                one = true;
            }
        } else if (buf->value >= 0) {
            buf->bytes = type_bytes(p, g, &g->values[buf->value].type, b, unbound, d, &one, NULL);
        } else if (m->schedule) {
            // The body's outputs are allocated per step, outside its arena.
            buf->bytes = 0;
            one = itr_memplan_bind(buf->body, b, unbound, d);
            if (one) {
                buf->bytes = buf->body->arena_bytes;
                m->n_unsized += buf->body->n_unsized;
            }
        } else {
            // Scan workspace: the body's arena for one step, and the carries
            // that step hands to the next (the body's first n_carry inputs).
            buf->bytes = 0;
            one = itr_memplan_bind(buf->body, b, unbound, d);
            if (one) buf->bytes = buf->body->arena_bytes;
            const struct itr_graph *body = buf->body->graph;
            int nc = (int)itr_node_attr_int(&g->nodes[buf->node], "n_carry");
            for (int k = 0; k < nc && k < body->n_inputs; k++) {
                bool c = true;
                int64_t cb = type_bytes(p, body, &body->values[body->inputs[k]].type, b, unbound, d, &c, NULL);
                if (!c) one = false;
                else if (cb > INT64_MAX / 2 - buf->bytes) {
                    if (d) itr_diag_error(d, ITR_NOLOC, "memory plan of '%s': a workspace size overflows 64 bits",
                                          g->name);
                    one = false;
                } else buf->bytes += cb;
            }
        }
        if (!one) ok = false;
    }
    if (!ok) return false;
    assign_offsets(m);
    m->live_bytes = live_peak(m);
    m->bound = true;
    return true;
}

// ------------------------------------------------------------ checks

bool itr_memplan_verify(const struct itr_memplan *m, char *why, size_t n) {
    const struct itr_graph *g = m->graph;
    if (!m->bound) { snprintf(why, n, "%s: the plan is not bound to dims", g->name); return false; }
    for (int i = 0; i < m->n_buffers; i++) {
        const struct itr_memplan_buffer *a = &m->buffers[i];
        const char *an = a->value >= 0 ? g->values[a->value].name : "(scan workspace)";
        if (a->offset % ITR_MEMPLAN_ALIGN || a->bytes % ITR_MEMPLAN_ALIGN || a->offset < 0 ||
            a->offset + a->bytes > m->arena_bytes) {
            snprintf(why, n, "%s: %s at [%" PRId64 ", +%" PRId64 ") is misaligned or outside the arena of %" PRId64
                     " bytes", g->name, an, a->offset, a->bytes, m->arena_bytes);
            return false;
        }
        if (a->body && !itr_memplan_verify(a->body, why, n)) return false;
        if (a->body && a->bytes < a->body->arena_bytes) {
            snprintf(why, n, "%s: the workspace of scan node %d is smaller than its body's arena", g->name, a->node);
            return false;
        }
        for (int j = i + 1; j < m->n_buffers; j++) {
            const struct itr_memplan_buffer *b = &m->buffers[j];
            if (!a->bytes || !b->bytes || !live_together(a, b)) continue;
            if (a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes) {
                const char *at = m->schedule ? "steps" : "nodes";
                snprintf(why, n, "%s: %s [%" PRId64 ", +%" PRId64 ") live at %s %d..%d overlaps %s [%" PRId64
                         ", +%" PRId64 ") live at %s %d..%d", g->name, an, a->offset, a->bytes, at, a->first, a->last,
                         b->value >= 0 ? g->values[b->value].name : "(scan workspace)", b->offset, b->bytes, at,
                         b->first, b->last);
                return false;
            }
        }
    }
    if (m->arena_bytes < m->live_bytes) {
        snprintf(why, n, "%s: arena of %" PRId64 " bytes is below the %" PRId64 " bytes live at once", g->name,
                 m->arena_bytes, m->live_bytes);
        return false;
    }
    return true;
}

// ------------------------------------------------------------ one call

bool itr_memplan_peak_bytes(const struct itr_program *p, const struct itr_graph *g, const struct itr_dim_bindings *b,
                            int64_t *peak, bool *unbound, struct itr_diags *d) {
    struct itr_diags local;
    itr_diags_init(&local);
    struct itr_memplan *m = itr_memplan_build(p, g, d ? d : &local);
    bool ok = m && itr_memplan_bind(m, b, unbound, d);
    if (ok) *peak = m->arena_bytes;
    itr_memplan_free(m);
    itr_diags_free(&local);
    return ok;
}

// ------------------------------------------------------------ schedule plans

struct itr_memplan *itr_memplan_build_schedule(const struct itr_program *p, const struct itr_graph *g,
                                               const struct kir_schedule *s, struct itr_diags *d) {
    if (s->n_values != g->n_values) {
        itr_diag_error(d, g->loc, "memory plan of '%s': the schedule has %d values, the graph %d", g->name,
                       s->n_values, g->n_values);
        return NULL;
    }
    struct itr_memplan *m = xcalloc(1, sizeof *m);
    m->prog = p;
    m->graph = g;
    m->schedule = s;
    int nv = g->n_values;
    // The first and last step writing each value, and whether the first
    // writer is one whose result the executor allocates.
    int32_t *first = xcalloc((size_t)nv, sizeof *first), *last_w = xcalloc((size_t)nv, sizeof *last_w);
    bool *by_exec = xcalloc((size_t)nv, sizeof *by_exec), *is_output = xcalloc((size_t)nv, sizeof *is_output);
    for (int v = 0; v < nv; v++) first[v] = last_w[v] = -1;
#define WRITES(v_, exec_)                                                     \
    do {                                                                      \
        int32_t w_ = (v_);                                                    \
        if (w_ < 0 || w_ >= nv) break;                                        \
        if (first[w_] < 0) { first[w_] = si; by_exec[w_] = (exec_); }         \
        last_w[w_] = si;                                                      \
    } while (0)
    bool ok = true;
    for (int si = 0; si < s->n_steps; si++) {
        const struct kir_step *st = &s->steps[si];
        const struct itr_node *n = st->node >= 0 && st->node < g->n_nodes ? &g->nodes[st->node] : NULL;
        if (st->kind == KIR_STEP_KERNEL) {
            const struct kir_kernel *k = st->kernel >= 0 && st->kernel < s->n_kernels ? s->kernels[st->kernel] : NULL;
            for (int b = 0; k && b < k->n_bufs && b < st->n_bufs; b++)
                if (k->bufs[b].written) WRITES(st->bufs[b], true);
        } else if (st->kind == KIR_STEP_GEMM && n && n->n_outputs > 0) {
            WRITES(n->outputs[0], true);
        } else if (n) {
            for (int k = 0; k < n->n_outputs; k++) WRITES(n->outputs[k], st->body != NULL);
        }
    }
#undef WRITES
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] >= 0 && g->outputs[k] < nv) is_output[g->outputs[k]] = true;
    m->buffers = xcalloc((size_t)nv + (size_t)s->n_steps + 1, sizeof *m->buffers);
    for (int v = 0; v < nv; v++) {
        if (g->values[v].kind != ITR_VALUE_NODE || first[v] < 0 || !by_exec[v] || is_output[v] ||
            s->last_step[v] >= s->n_steps)
            continue;
        int32_t last = s->last_step[v] > last_w[v] ? s->last_step[v] : last_w[v];
        m->buffers[m->n_buffers++] = (struct itr_memplan_buffer){
            .value = v, .node = first[v], .first = first[v], .last = last };
    }
    for (int si = 0; si < s->n_steps && ok; si++) {
        const struct kir_step *st = &s->steps[si];
        if (st->kind != KIR_STEP_NODE || !st->body) continue;
        const struct itr_attr *ba = st->node >= 0 && st->node < g->n_nodes ? itr_node_attr(&g->nodes[st->node], "body")
                                                                           : NULL;
        const struct itr_graph *body = ba && ba->kind == ITR_ATTR_GRAPH ? ba->u.graph : NULL;
        struct itr_memplan *bm = body ? itr_memplan_build_schedule(p, body, st->body, d) : NULL;
        if (!bm) {
            if (!body) itr_diag_error(d, g->loc, "memory plan of '%s': scan step %d has no body graph", g->name, si);
            ok = false;
            break;
        }
        m->buffers[m->n_buffers++] = (struct itr_memplan_buffer){
            .value = -1, .node = si, .first = si, .last = si, .body = bm };
    }
    free(first);
    free(last_w);
    free(by_exec);
    free(is_output);
    if (!ok) {
        itr_memplan_free(m);
        return NULL;
    }
    return m;
}

const struct itr_memplan_buffer *itr_memplan_find(const struct itr_memplan *m, int32_t value) {
    for (int i = 0; i < m->n_buffers; i++)
        if (m->buffers[i].value == value) return &m->buffers[i];
    return NULL;
}

bool itr_memplan_schedule_peak_bytes(const struct itr_program *p, const struct itr_graph *g,
                                     const struct kir_schedule *s, const struct itr_dim_bindings *b, int64_t *peak,
                                     bool *unbound, struct itr_diags *d) {
    struct itr_diags local;
    itr_diags_init(&local);
    struct itr_memplan *m = itr_memplan_build_schedule(p, g, s, d ? d : &local);
    bool ok = m && itr_memplan_bind(m, b, unbound, d) && m->n_unsized == 0;
    if (ok) *peak = m->arena_bytes;
    itr_memplan_free(m);
    itr_diags_free(&local);
    return ok;
}

void itr_format_bytes(int64_t bytes, char *buf, size_t n) {
    static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
    if (bytes < 1024) { snprintf(buf, n, "%" PRId64 " bytes", bytes); return; }
    double v = (double)bytes;
    int u = -1;
    while (v >= 1024 && u < 3) { v /= 1024; u++; }
    snprintf(buf, n, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}
