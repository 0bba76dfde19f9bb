// The reference interpreter's driver (ref.h): binds dims, allocates each
// node's results from its result types, dispatches to the kernels named in
// ops.def's REF column, and frees every intermediate after its last use.
#include "backends/ref/kernels.h"

#include <stdarg.h>
#include <stdlib.h>

static const itr_ref_kernel kernel_table[ITR_OP_COUNT] = {
#define OP(id, name, cls, min_in, max_in, n_out, attrs, shape, ref, grad, nondiff, doc) [ITR_OP_##id] = ref,
#include "ir/ops.def"
#undef OP
};

bool ref_error(struct itr_ref_exec *ex, const struct itr_node *n, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n->scope)
        itr_diag_error(ex->diags, n->loc, "op '%s' (in %s): %s", itr_op_name(n->op), n->scope, msg);
    else
        itr_diag_error(ex->diags, n->loc, "op '%s': %s", itr_op_name(n->op), msg);
    return false;
}

// Allocates node n's results from its result types under the run's bindings.
static bool alloc_results(struct itr_ref_exec *ex, const struct itr_graph *g, const struct itr_node *n,
                          struct itr_tensor **out) {
    for (int i = 0; i < n->n_outputs; i++) out[i] = NULL;
    for (int i = 0; i < n->n_outputs; i++) {
        const struct itr_value *v = &g->values[n->outputs[i]];
        int64_t shape[ITR_MAX_RANK];
        char what[160];
        snprintf(what, sizeof what, "result %d of op '%s'", i, itr_op_name(n->op));
        bool ok = itr_eval_shape(ex->dims, ex->prog, &v->type, shape, what, ex->diags);
        if (ok) {
            out[i] = itr_tensor_new(ref_run_dtype(ex, v->type.dtype), v->type.rank, shape);
            if (!out[i]) {
                char s[160];
                itr_shape_format(v->type.rank, shape, s, sizeof s);
                ref_error(ex, n, "cannot allocate result %d of shape %s (too large)", i, s);
                ok = false;
            }
        }
        if (!ok) {
            for (int k = 0; k < i; k++) { itr_tensor_free(out[k]); out[k] = NULL; }
            return false;
        }
    }
    return true;
}

static bool run_node(struct itr_ref_exec *ex, const struct itr_graph *g, const struct itr_node *n,
                     struct itr_tensor *const *in, struct itr_tensor **out) {
    if (!alloc_results(ex, g, n, out)) return false;
    const struct itr_graph *saved = ex->graph;
    ex->graph = g;
    bool ok = kernel_table[n->op](ex, n, in, out);
    ex->graph = saved;
    if (!ok)
        for (int i = 0; i < n->n_outputs; i++) { itr_tensor_free(out[i]); out[i] = NULL; }
    return ok;
}

static char *value_what(const struct itr_value *v, char *buf, size_t n) {
    snprintf(buf, n, "%s '%s'", v->kind == ITR_VALUE_PARAM ? "param" : "input", v->name ? v->name : "?");
    return buf;
}

// The run proper. `bind` says whether inputs/params still need binding and
// precision conversion (entry runs) or arrive in run precision (scan bodies).
static bool run_graph(struct itr_ref_exec *ex, const struct itr_graph *g, struct itr_tensor *const *inputs,
                      struct itr_tensor **outputs) {
    const struct itr_program *p = ex->prog;
    bool f64 = ex->opt && ex->opt->f64;
    int nv = g->n_values;
    struct itr_tensor **val = calloc((size_t)(nv ? nv : 1), sizeof *val);
    bool *owned = calloc((size_t)(nv ? nv : 1), sizeof *owned);
    int *last_use = calloc((size_t)(nv ? nv : 1), sizeof *last_use);
    bool *given = calloc((size_t)(nv ? nv : 1), sizeof *given);
    if (!val || !owned || !last_use || !given) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    bool ok = true;

    // Inputs and params: bind their dims (in any order), then widen f32
    // tensors in f64 mode.
    int nb = 0;
    const struct itr_type **btypes = calloc((size_t)(nv ? nv : 1), sizeof *btypes);
    const struct itr_tensor **bxs = calloc((size_t)(nv ? nv : 1), sizeof *bxs);
    char (*bwhat)[160] = calloc((size_t)(nv ? nv : 1), sizeof *bwhat);
    const char **bwhats = calloc((size_t)(nv ? nv : 1), sizeof *bwhats);
    if (!btypes || !bxs || !bwhat || !bwhats) {
        fprintf(stderr, "itrc: out of memory\n");
        abort();
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const struct itr_value *v = &g->values[g->inputs[i]];
        btypes[nb] = &v->type;
        bxs[nb] = val[g->inputs[i]] = inputs ? inputs[i] : NULL;
        bwhats[nb] = value_what(v, bwhat[nb], sizeof bwhat[nb]);
        nb++;
    }
    for (int vi = 0; vi < nv; vi++) {
        const struct itr_value *v = &g->values[vi];
        if (v->kind != ITR_VALUE_PARAM) continue;
        btypes[nb] = &v->type;
        bxs[nb] = val[vi] = ex->params && v->param >= 0 && v->param < p->n_params ? ex->params[v->param] : NULL;
        bwhats[nb] = value_what(v, bwhat[nb], sizeof bwhat[nb]);
        nb++;
    }
    ok = itr_bind_tensors(ex->dims, p, nb, btypes, bxs, bwhats, f64, ex->diags);
    free(btypes);
    free(bxs);
    free(bwhat);
    free(bwhats);
    if (!ok)
        for (int vi = 0; vi < nv; vi++) val[vi] = NULL;
    for (int vi = 0; vi < nv && ok; vi++) {
        if (!val[vi] || !f64 || val[vi]->dtype != ITR_F32) continue;
        val[vi] = itr_tensor_cast(val[vi], ITR_F64);
        if (!val[vi]) {
            itr_diag_error(ex->diags, g->values[vi].loc, "out of memory widening '%s' to f64", g->values[vi].name);
            ok = false;
        } else {
            owned[vi] = true;
        }
    }

    // Last use of every value; graph outputs live to the end.
    for (int vi = 0; vi < nv; vi++) last_use[vi] = -1;
    for (int ni = 0; ni < g->n_nodes; ni++)
        for (int k = 0; k < g->nodes[ni].n_inputs; k++) last_use[g->nodes[ni].inputs[k]] = ni;
    for (int k = 0; k < g->n_outputs; k++) last_use[g->outputs[k]] = g->n_nodes;

    struct itr_tensor *in_buf[64], *out_buf[16];
    for (int ni = 0; ni < g->n_nodes && ok; ni++) {
        const struct itr_node *n = &g->nodes[ni];
        struct itr_tensor **in = n->n_inputs > 64 ? malloc((size_t)n->n_inputs * sizeof *in) : in_buf;
        if (!in) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        for (int k = 0; k < n->n_inputs; k++) {
            in[k] = val[n->inputs[k]];
            if (!in[k]) {
                itr_diag_error(ex->diags, n->loc, "op '%s': operand %d ('%s') has no value (graph not in "
                               "topological order?)", itr_op_name(n->op), k, g->values[n->inputs[k]].name);
                ok = false;
            }
        }
        if (ok && n->n_outputs > 16) ok = ref_error(ex, n, "more than 16 results");
        if (ok) ok = run_node(ex, g, n, in, out_buf);
        if (in != in_buf) free(in);
        if (!ok) break;
        for (int k = 0; k < n->n_outputs; k++) {
            val[n->outputs[k]] = out_buf[k];
            owned[n->outputs[k]] = true;
        }
        if (ex->observe && g == ex->observed)
            for (int k = 0; k < n->n_outputs; k++) ex->observe(ex->observe_ctx, n->outputs[k], out_buf[k]);
        // Free what this node was the last to read, and results nobody reads.
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            if (last_use[v] == ni && owned[v]) { itr_tensor_free(val[v]); val[v] = NULL; owned[v] = false; }
        }
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (last_use[v] < ni && owned[v]) { itr_tensor_free(val[v]); val[v] = NULL; owned[v] = false; }
        }
    }

    // Outputs: hand over owned results once; borrowed or repeated ones are cloned.
    for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
    for (int k = 0; k < g->n_outputs && ok; k++) {
        int32_t v = g->outputs[k];
        if (!val[v]) {
            itr_diag_error(ex->diags, g->loc, "graph '%s': output '%s' has no value", g->name, g->output_names[k]);
            ok = false;
            break;
        }
        if (owned[v] && !given[v]) {
            outputs[k] = val[v];
            given[v] = true;
        } else {
            outputs[k] = itr_tensor_clone(val[v]);
            if (!outputs[k]) {
                itr_diag_error(ex->diags, g->loc, "out of memory copying output '%s'", g->output_names[k]);
                ok = false;
            }
        }
    }
    if (!ok)
        for (int k = 0; k < g->n_outputs; k++) {
            if (outputs[k] && !given[g->outputs[k]]) itr_tensor_free(outputs[k]);
            outputs[k] = NULL;
        }
    for (int vi = 0; vi < nv; vi++)
        if (owned[vi] && (!given[vi] || !ok)) itr_tensor_free(val[vi]);
    free(val);
    free(owned);
    free(last_use);
    free(given);
    return ok;
}

bool ref_run_graph(struct itr_ref_exec *ex, const struct itr_graph *g, struct itr_tensor *const *inputs,
                   struct itr_tensor **outs) {
    return run_graph(ex, g, inputs, outs);
}

bool itr_ref_run_observed(const struct itr_graph *g, struct itr_tensor *const *inputs,
                          struct itr_tensor *const *params, struct itr_dim_bindings *dims,
                          const struct itr_ref_options *opt, itr_ref_observer observe, void *observe_ctx,
                          struct itr_tensor **outputs, struct itr_diags *d) {
    struct itr_ref_options defaults = { false };
    struct itr_dim_bindings local;
    bool own_dims = !dims;
    if (own_dims) { itr_bindings_init(&local, g->prog); dims = &local; }
    struct itr_ref_exec ex = { .graph = g, .prog = g->prog, .dims = dims, .opt = opt ? opt : &defaults,
                               .params = params, .diags = d, .observed = g, .observe = observe,
                               .observe_ctx = observe_ctx };
    bool ok = run_graph(&ex, g, inputs, outputs);
    if (own_dims) itr_bindings_free(&local);
    return ok;
}

bool itr_ref_run(const struct itr_graph *g, struct itr_tensor *const *inputs, struct itr_tensor *const *params,
                 struct itr_dim_bindings *dims, const struct itr_ref_options *opt, struct itr_tensor **outputs,
                 struct itr_diags *d) {
    return itr_ref_run_observed(g, inputs, params, dims, opt, NULL, NULL, outputs, d);
}

bool itr_ref_run_node(const struct itr_graph *g, const struct itr_node *n, struct itr_tensor *const *in,
                      struct itr_dim_bindings *dims, const struct itr_ref_options *opt, struct itr_tensor **out,
                      struct itr_diags *d) {
    struct itr_ref_options defaults = { false };
    struct itr_dim_bindings local;
    bool own_dims = !dims;
    if (own_dims) { itr_bindings_init(&local, g->prog); dims = &local; }
    struct itr_ref_exec ex = { .graph = g, .prog = g->prog, .dims = dims, .opt = opt ? opt : &defaults,
                               .diags = d };
    // Operands must match their declared types; this also binds symbols the
    // caller left unbound.
    bool ok = true;
    for (int k = 0; k < n->n_inputs && ok; k++) {
        const struct itr_value *v = &g->values[n->inputs[k]];
        char what[160];
        snprintf(what, sizeof what, "operand %d ('%s') of op '%s'", k, v->name ? v->name : "?", itr_op_name(n->op));
        ok = itr_bind_tensor(dims, g->prog, &v->type, in[k], what, ex.opt->f64, d);
    }
    struct itr_tensor *wide_buf[64], **wide = n->n_inputs > 64 ? calloc((size_t)n->n_inputs, sizeof *wide) : wide_buf;
    if (!wide) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
    for (int k = 0; k < n->n_inputs; k++) wide[k] = NULL;
    if (ok) {
        itr_bind_defaults(dims, g->prog);
        // Kernels expect one precision per run: widen f32 operands in f64 mode.
        struct itr_tensor *use_buf[64], **use = n->n_inputs > 64 ? calloc((size_t)n->n_inputs, sizeof *use) : use_buf;
        if (!use) { fprintf(stderr, "itrc: out of memory\n"); abort(); }
        for (int k = 0; k < n->n_inputs && ok; k++) {
            use[k] = in[k];
            if (ex.opt->f64 && in[k]->dtype == ITR_F32) {
                use[k] = wide[k] = itr_tensor_cast(in[k], ITR_F64);
                if (!wide[k]) ok = ref_error(&ex, n, "out of memory widening operand %d to f64", k);
            }
        }
        if (ok) ok = run_node(&ex, g, n, use, out);
        if (use != use_buf) free(use);
    }
    for (int k = 0; k < n->n_inputs; k++) itr_tensor_free(wide[k]);
    if (wide != wide_buf) free(wide);
    if (own_dims) itr_bindings_free(&local);
    return ok;
}
