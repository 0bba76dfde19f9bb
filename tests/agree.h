// Backend agreement (backends.md §5): comparing a compiled backend's results
// with the reference interpreter's. f32: max|a-b| <= tol * max(1, max|ref|)
// per output; NaN and infinity positions must agree exactly; integers and
// bools exactly.
#ifndef ITR_TEST_AGREE_H
#define ITR_TEST_AGREE_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm/llvm_exec.h"
#include "backends/ref/ref.h"
#include "ir/bind.h"
#include "ir/ir.h"
#include "ir/kir.h"

#define AGREE_TOL_F32_OP 1e-5
#define AGREE_TOL_F32_MODEL 1e-4
#define AGREE_TOL_F64 1e-12

// Describes the first disagreement in why; true when the tensors agree.
static inline bool agree_tensors(const struct itr_tensor *ref, const struct itr_tensor *got, double tol, char *why,
                                 size_t n) {
    if (!ref || !got) {
        snprintf(why, n, "missing tensor (ref %p, got %p)", (const void *)ref, (const void *)got);
        return false;
    }
    if (ref->dtype != got->dtype || ref->rank != got->rank) {
        snprintf(why, n, "type differs: ref %s rank %d, got %s rank %d", itr_dtype_name(ref->dtype), ref->rank,
                 itr_dtype_name(got->dtype), got->rank);
        return false;
    }
    for (int i = 0; i < ref->rank; i++)
        if (ref->shape[i] != got->shape[i]) {
            snprintf(why, n, "dim %d differs: ref %lld, got %lld", i, (long long)ref->shape[i], (long long)got->shape[i]);
            return false;
        }
    int64_t cnt = itr_tensor_numel(ref);
    bool fl = itr_dtype_is_float(ref->dtype);
    double scale = 1;
    for (int64_t i = 0; i < cnt && fl; i++) {
        double r = fabs(itr_tensor_get(ref, i));
        if (isfinite(r) && r > scale) scale = r;
    }
    for (int64_t i = 0; i < cnt; i++) {
        double r = itr_tensor_get(ref, i), g = itr_tensor_get(got, i);
        bool ok;
        if (!fl) ok = r == g;
        else if (isnan(r) || isnan(g)) ok = isnan(r) && isnan(g);
        else if (isinf(r) || isinf(g)) ok = r == g;
        else ok = fabs(r - g) <= tol * scale;
        if (!ok) {
            snprintf(why, n, "element %lld: ref %.10g, got %.10g (|diff| %.3g, allowed %.3g)", (long long)i, r, g,
                     fabs(r - g), tol * scale);
            return false;
        }
    }
    return true;
}

// ------------------------------------------------------------ locating a divergence
//
// When an output disagrees, agree_locate runs the same inputs again on both
// sides with observers (itr_ref_run_observed, itr_llvm_exe_observe) and
// compares, in step order, every value the compiled run materialised with
// the reference's value of the same graph value, at the same tolerance. The
// first that differs names the node, the op, the value, its shape and the
// step (kernel, gemm, node) that wrote it; when everything that step reads
// agreed, the difference arises inside that step.

// snprintf for a report that may be cut short (a long name, a long path).
static inline __attribute__((format(printf, 3, 4))) void agree_fmt(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

struct agree_divergence {
    bool found;           // a value the compiled run wrote disagrees
    bool failed;          // a re-run failed or the graphs do not match (msg says why)
    int32_t value;        // the first diverging value (graph value id)
    int32_t node;         // the node that computes it
    int32_t step;         // the step of the schedule that wrote it
    bool reads_agree;     // every value that step reads is an input or agreed
    int compared;         // values compared, up to and including the diverging one
    char msg[1536];       // the report (also when nothing diverges)
};

// What step st of s is, e.g. "kernel k12_sub_exp_sum_div", "gemm",
// "node gather on the reference kernels", "scan with a compiled body".
static inline void agree_step_name(const struct kir_schedule *s, const struct itr_graph *g, int32_t si, char *buf,
                                   size_t n) {
    const struct kir_step *st = &s->steps[si];
    if (st->kind == KIR_STEP_KERNEL) snprintf(buf, n, "kernel %s", s->kernels[st->kernel]->name);
    else if (st->kind == KIR_STEP_GEMM) snprintf(buf, n, "gemm");
    else if (st->body) snprintf(buf, n, "scan with a compiled body");
    else snprintf(buf, n, "node %s on the reference kernels", itr_op_name(g->nodes[st->node].op));
}

struct agree_ref_capture {
    struct itr_tensor **val;   // per graph value: a copy of the reference's result
};

static inline void agree_ref_observe(void *ctx, int32_t v, const struct itr_tensor *t) {
    struct agree_ref_capture *c = ctx;
    itr_tensor_free(c->val[v]);
    c->val[v] = itr_tensor_clone(t);
}

struct agree_cmp {
    const struct itr_graph *g;
    struct itr_tensor **ref;    // the reference's values
    const int32_t *last_write;  // per value: the last step that writes it (-1: none)
    bool *agreed;               // per value: compared and agreed
    double tol;
    struct agree_divergence *out;
    char why[256];
};

static inline void agree_cmp_observe(void *ctx, int32_t step, int32_t v, const struct itr_tensor *t) {
    struct agree_cmp *c = ctx;
    // A value written in parts by several steps is complete after the last.
    if (c->out->found || c->last_write[v] != step || !c->ref[v]) return;
    c->out->compared++;
    if (agree_tensors(c->ref[v], t, c->tol, c->why, sizeof c->why)) {
        c->agreed[v] = true;
        return;
    }
    c->out->found = true;
    c->out->value = v;
    c->out->step = step;
    c->out->node = c->g->values[v].node;
}

// Whether every value step si reads is an input or a parameter or agreed.
static inline bool agree_step_reads_agree(const struct kir_schedule *s, const struct itr_graph *g, int32_t si,
                                          const bool *agreed) {
    const struct kir_step *st = &s->steps[si];
    const struct itr_node *n = &g->nodes[st->node];
    int32_t reads[64];
    int nr = 0;
    if (st->kind == KIR_STEP_KERNEL) {
        const struct kir_kernel *k = s->kernels[st->kernel];
        for (int b = 0; b < k->n_bufs && nr < 64; b++)
            if (!k->bufs[b].written) reads[nr++] = st->bufs[b];
    } else if (st->kind == KIR_STEP_GEMM) {
        reads[nr++] = st->gemm_a;
        reads[nr++] = st->gemm_b;
    } else {
        for (int k = 0; k < n->n_inputs && nr < 64; k++) reads[nr++] = n->inputs[k];
    }
    for (int i = 0; i < nr; i++)
        if (g->values[reads[i]].kind == ITR_VALUE_NODE && !agreed[reads[i]]) return false;
    return true;
}

// Runs gref on the reference interpreter and gcomp with schedule s on the
// LLVM backend, both on in/params/a copy of b (b NULL: bound from the
// inputs), and describes the first value the compiled run wrote that differs
// from the reference's by more than tol (agree_tensors). gref and gcomp are
// normally the same graph; a test passes a copy with one node changed.
static inline void agree_locate(const struct itr_graph *gref, const struct itr_graph *gcomp,
                                const struct kir_schedule *s, struct itr_tensor *const *in,
                                struct itr_tensor *const *params, const struct itr_dim_bindings *b, bool f64,
                                double tol, struct agree_divergence *out) {
    memset(out, 0, sizeof *out);
    out->value = out->node = out->step = -1;
    if (gref->n_values != gcomp->n_values || gref->n_nodes != gcomp->n_nodes || s->n_values != gcomp->n_values) {
        out->failed = true;
        snprintf(out->msg, sizeof out->msg, "cannot locate the divergence: the graphs or the schedule do not match");
        return;
    }
    int nv = gref->n_values;
    struct agree_ref_capture rc = { calloc((size_t)nv + 1, sizeof *rc.val) };
    int32_t *last_write = malloc(((size_t)nv + 1) * sizeof *last_write);
    bool *agreed = calloc((size_t)nv + 1, sizeof *agreed);
    if (!rc.val || !last_write || !agreed) abort();
    for (int v = 0; v < nv; v++) last_write[v] = -1;
    for (int si = 0; si < s->n_steps; si++) {
        const struct kir_step *st = &s->steps[si];
        const struct itr_node *n = &gcomp->nodes[st->node];
        if (st->kind == KIR_STEP_KERNEL) {
            const struct kir_kernel *k = s->kernels[st->kernel];
            for (int j = 0; j < k->n_bufs; j++)
                if (k->bufs[j].written) last_write[st->bufs[j]] = si;
        } else {
            for (int j = 0; j < (st->kind == KIR_STEP_GEMM ? 1 : n->n_outputs); j++) last_write[n->outputs[j]] = si;
        }
    }
    struct itr_diags d;
    itr_diags_init(&d);
    const struct itr_program *p = gref->prog;
    struct itr_dim_bindings rb, lb;
    itr_bindings_init(&rb, p);
    itr_bindings_init(&lb, gcomp->prog);
    for (int i = 0; b && i < p->n_symbols; i++) {
        rb.value[i] = b->value[i];
        rb.bound[i] = b->bound[i];
    }
    // the compiled graph's program declares the same symbols (the same source)
    for (int i = 0; b && i < gcomp->prog->n_symbols && i < b->n; i++) {
        lb.value[i] = b->value[i];
        lb.bound[i] = b->bound[i];
    }
    struct itr_tensor **ro = calloc((size_t)gref->n_outputs + 1, sizeof *ro);
    struct itr_tensor **lo = calloc((size_t)gcomp->n_outputs + 1, sizeof *lo);
    struct itr_ref_options opt = { .f64 = f64 };
    struct agree_cmp cmp = { gcomp, rc.val, last_write, agreed, tol, out, "" };
    struct itr_llvm_exe *e = NULL;
    if (!ro || !lo) abort();
    if (!itr_ref_run_observed(gref, in, params, &rb, &opt, agree_ref_observe, &rc, ro, &d)) {
        char *m = itr_diags_summary(&d);
        out->failed = true;
        snprintf(out->msg, sizeof out->msg, "cannot locate the divergence: the reference's re-run fails: %s",
                 m ? m : "?");
        free(m);
    } else if (!(e = itr_llvm_exe_new(gcomp, s, 2, &d))) {
        out->failed = true;
        snprintf(out->msg, sizeof out->msg, "cannot locate the divergence: the schedule does not compile");
    } else {
        itr_llvm_exe_observe(e, agree_cmp_observe, &cmp);
        if (!itr_llvm_exe_run(e, in, params, &lb, lo, &d)) {
            char *m = itr_diags_summary(&d);
            out->failed = true;
            snprintf(out->msg, sizeof out->msg, "cannot locate the divergence: the compiled re-run fails: %s",
                     m ? m : "?");
            free(m);
        }
    }
    if (out->found) {
        const struct itr_value *v = &gref->values[out->value];
        const struct itr_node *n = &gref->nodes[out->node];
        char shape[96], step[160], node[600], outname[200] = "";
        itr_shape_format(v->type.rank, rc.val[out->value]->shape, shape, sizeof shape);
        agree_step_name(s, gcomp, out->step, step, sizeof step);
        int len = snprintf(node, sizeof node, "node %d '%s'", out->node, itr_op_name(n->op));
        if (n->scope && len < (int)sizeof node) len += snprintf(node + len, sizeof node - (size_t)len, " in %s", n->scope);
        if (n->phase != ITR_PHASE_NONE && len < (int)sizeof node)
            len += snprintf(node + len, sizeof node - (size_t)len, " (%s)", itr_phase_name(n->phase));
        if (n->loc.file && len < (int)sizeof node)
            snprintf(node + len, sizeof node - (size_t)len, " at %s:%d:%d", n->loc.file, n->loc.line, n->loc.col);
        for (int k = 0; k < gref->n_outputs; k++)
            if (gref->outputs[k] == out->value) {
                snprintf(outname, sizeof outname, " (output '%s')", gref->output_names[k]);
                break;
            }
        out->reads_agree = agree_step_reads_agree(s, gcomp, out->step, agreed);
        int before = out->compared - 1;
        const char *pl = before == 1 ? "" : "s", *vb = before == 1 ? "s" : "";
        char tail[400];
        if (!out->reads_agree)
            snprintf(tail, sizeof tail, "the %d value%s written before it agree%s", before, pl, vb);
        else if (before == 0)
            snprintf(tail, sizeof tail, "it is the first value the compiled run writes, from inputs and parameters "
                     "only: the divergence is inside step %d (%s)", out->step, step);
        else if (outname[0])
            snprintf(tail, sizeof tail, "every intermediate the compiled run materialised agrees (%d value%s), every "
                     "value this step reads among them: the divergence is inside the final step, %s", before, pl,
                     step);
        else
            snprintf(tail, sizeof tail, "the %d value%s written before it agree%s, every value this step reads among "
                     "them: the divergence is inside step %d (%s)", before, pl, vb, out->step, step);
        agree_fmt(out->msg, sizeof out->msg, "first diverging node: %s -> '%s'%s %s%s, written by step %d (%s): %s; %s",
                 node, v->name ? v->name : "?", outname, itr_dtype_name(rc.val[out->value]->dtype), shape, out->step,
                 step, cmp.why, tail);
    } else if (!out->failed) {
        snprintf(out->msg, sizeof out->msg,
                 "no diverging node: on a re-run with the same inputs all %d values the compiled run wrote agree with "
                 "the reference (the difference does not reproduce)", out->compared);
    }
    for (int k = 0; k < gref->n_outputs; k++) itr_tensor_free(ro[k]);
    for (int k = 0; k < gcomp->n_outputs; k++) itr_tensor_free(lo[k]);
    for (int v = 0; v < nv; v++) itr_tensor_free(rc.val[v]);
    free(ro);
    free(lo);
    free(rc.val);
    free(last_write);
    free(agreed);
    itr_llvm_exe_free(e);
    itr_bindings_free(&rb);
    itr_bindings_free(&lb);
    itr_diags_free(&d);
}

#endif
