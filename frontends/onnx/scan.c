// ONNX Scan (opsets 9-17) as our `scan` (docs/onnx.md). The body graph is
// imported with the same driver into a scan body: its first inputs are the
// state variables (our carries) and the per-step slices of the scan inputs;
// values the body reads from the enclosing graph by name become our scan's
// constant operands, appended as the body's last inputs when first used,
// except values known when importing (initializers that are not parameters,
// shapes), which the body keeps as its own constants so that lowerings
// needing them at compile time (Reshape's shape) still see them.
//
// Our scan has one axis and one direction for every scanned operand and
// stacked output; a Scan whose axes or directions differ is refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"

struct ox_val *ox_capture(struct ox *x, const char *name) {
    struct ox *px = x->parent;
    if (!px) return NULL;
    struct ox_val *pv = ox_env_find(px, name);
    if (!pv) pv = ox_capture(px, name);
    if (!pv) return NULL;
    bool param = pv->init && pv->k && px->opt->params && itr_dtype_is_float(pv->k->dtype);
    if (!param && (pv->k || pv->dv)) {
        struct itr_tensor *k = pv->k ? itr_tensor_clone(pv->k) : NULL;
        if (pv->k && !k) { ox_error(x, "out of memory"); return NULL; }
        itr_dim *dv = NULL;
        if (pv->dv) {
            dv = malloc((size_t)(pv->dv_n ? pv->dv_n : 1) * sizeof *dv);
            if (!dv) abort();
            memcpy(dv, pv->dv, (size_t)pv->dv_n * sizeof *dv);
        }
        int dv_n = pv->dv_n;
        bool dv_scalar = pv->dv_scalar;
        enum itr_dtype dv_dtype = pv->dv_dtype;
        struct ox_val *v = ox_env_add(x, name);
        v->k = k;
        v->dv = dv;
        v->dv_n = dv_n;
        v->dv_scalar = dv_scalar;
        v->dv_dtype = dv_dtype;
        return v;
    }
    int32_t pid = ox_id(px, pv);
    if (pid < 0) {
        x->failed_reported = true;
        return NULL;
    }
    if (x->inline_scope) {   // the same graph: the value itself
        bool hb = pv->has_base;   // read before adding: pv is the parent's, but be safe
        int32_t base = pv->base;
        int64_t off = pv->off;
        struct ox_val *v = ox_env_add(x, name);
        v->id = pid;
        v->has_base = hb;
        v->base = base;
        v->off = off;
        return v;
    }
    struct itr_type t = px->g->values[pid].type;
    char nm[512];
    ox_ir_name(name, nm, sizeof nm);
    int32_t id = itr_graph_add_input(x->g, nm, t, x->loc);
    if (id < 0) return NULL;
    if (x->n_captured == x->cap_captured) {
        x->cap_captured = x->cap_captured ? 2 * x->cap_captured : 8;
        x->captured = realloc(x->captured, (size_t)x->cap_captured * sizeof *x->captured);
        if (!x->captured) abort();
    }
    x->captured[x->n_captured++] = pid;
    struct ox_val *v = ox_env_add(x, name);
    v->id = id;
    return v;
}

// The attribute's ints, or n zeros when it is absent; false (reported) when
// it has another count.
static bool ints_or_zeros(struct ox *x, struct ox_node *n, const char *name, int count, int64_t *out) {
    const int64_t *v;
    int k;
    for (int i = 0; i < count; i++) out[i] = 0;
    if (!ox_attr_ints(n, name, &v, &k)) return true;
    if (k != count) return ox_error(x, "'%s' has %d entries; %d are needed", name, k, count);
    for (int i = 0; i < count; i++) out[i] = v[i];
    return true;
}

static int64_t norm(int64_t axis, int rank) { return axis < 0 ? axis + rank : axis; }

bool ox_lower_scan(struct ox *x, struct ox_node *n) {
    const Onnx__AttributeProto *ba = ox_attr(n, "body");
    if (!ba || !ba->g) return ox_error(x, "has no 'body' graph");
    const Onnx__GraphProto *bp = ba->g;
    int64_t ns = ox_attr_i(n, "num_scan_inputs", -1);
    int n_in = n->n_in;
    if (n_in > 16 || ns < 1 || ns > n_in)
        return ox_error(x, "needs 1 to 16 inputs, num_scan_inputs (%lld) of them scanned; it has %d", (long long)ns,
                        n_in);
    int nc = n_in - (int)ns;
    if ((int)bp->n_input != n_in)
        return ox_error(x, "its body takes %zu inputs; the Scan passes %d", bp->n_input, n_in);
    int n_bout = (int)bp->n_output;
    if (n_bout < nc || n_bout > 16)
        return ox_error(x, "its body returns %d values; it needs its %d state variables and at most 16 in all",
                        n_bout, nc);
    int nso = n_bout - nc;
    int64_t in_ax[16], in_dir[16], out_ax[16], out_dir[16];
    if (!ints_or_zeros(x, n, "scan_input_axes", (int)ns, in_ax) ||
        !ints_or_zeros(x, n, "scan_input_directions", (int)ns, in_dir) ||
        !ints_or_zeros(x, n, "scan_output_axes", nso, out_ax) ||
        !ints_or_zeros(x, n, "scan_output_directions", nso, out_dir))
        return false;
    int64_t rev = in_dir[0];
    for (int i = 0; i < ns; i++)
        if (in_dir[i] != rev) return ox_error(x, "scan inputs in different directions are not supported");
    for (int i = 0; i < nso; i++)
        if (out_dir[i] != rev)
            return ox_error(x, "scan outputs written in another direction than the inputs are read are not supported");

    int32_t ops[16 + 64];
    for (int i = 0; i < n_in; i++) {
        if (!n->in[i]) return ox_error(x, "input %d is missing", i);
        if ((ops[i] = ox_id(x, n->in[i])) < 0) return false;
    }
    for (int i = 0; i < ns; i++) {
        const struct itr_type *t = ox_type(x, ops[nc + i]);
        in_ax[i] = norm(in_ax[i], t->rank);
        if (in_ax[i] < 0 || in_ax[i] >= t->rank)
            return ox_error(x, "scan_input_axes[%d] is out of range for input '%s' of rank %d", i, n->in[nc + i]->name,
                            t->rank);
    }

    char bname[64];
    snprintf(bname, sizeof bname, "scan_body%d", x->n_bodies++);
    struct itr_graph *bg = itr_program_add_graph(x->p, bname, ITR_GRAPH_BODY);
    struct ox bx;
    memset(&bx, 0, sizeof bx);
    bx.p = x->p;
    bx.g = bg;
    bx.d = x->d;
    bx.what = x->what;
    bx.loc = x->loc;
    bx.opt = x->opt;
    bx.weights = x->weights;
    bx.opset = x->opset;
    bx.gp = bp;
    bx.parent = x;
    bx.n_bodies = x->n_bodies;
    bx.depth = x->depth + 1;
    if (bx.depth > OX_MAX_DEPTH) return ox_error(x, "subgraphs are nested more than %d deep", OX_MAX_DEPTH);
    bool ok = true;
    for (int i = 0; i < n_in && ok; i++) {
        const char *name = bp->input[i]->name;
        if (!name) { ok = ox_error(x, "body input %d has no name", i); break; }
        struct itr_type t = *ox_type(x, ops[i]);
        if (i >= nc) {
            int ax = (int)in_ax[i - nc];
            for (int k = ax; k + 1 < t.rank; k++) t.dims[k] = t.dims[k + 1];
            t.rank--;
        }
        char nm[512];
        ox_ir_name(name, nm, sizeof nm);
        int32_t id = itr_graph_add_input(bg, nm, t, x->loc);
        if (id < 0) ok = false;
        else ox_env_add(&bx, name)->id = id;
    }
    for (size_t i = 0; ok && i < bp->n_initializer; i++) {
        const Onnx__TensorProto *t = bp->initializer[i];
        struct itr_tensor *k = t->name ? ox_tensor_from_proto(t, x->what, x->d) : NULL;
        if (!k) { ok = t->name ? false : ox_error(x, "a body initializer has no name"); break; }
        ox_env_add(&bx, t->name)->k = k;
    }
    for (size_t i = 0; ok && i < bp->n_node; i++) {
        bx.node_index = (int)i;
        ok = ox_lower_node(&bx, bp->node[i]);
    }
    for (int j = 0; ok && j < n_bout; j++) {
        const char *name = bp->output[j]->name;
        struct ox_val *v = name ? ox_env_find(&bx, name) : NULL;
        if (!v && name) v = ox_capture(&bx, name);
        if (!v) { ok = ox_error(x, "body output '%s' is not computed in the body", name ? name : "(unnamed)"); break; }
        int32_t id = ox_id(&bx, v);
        if (id < 0) { ok = false; break; }
        char nm[512];
        ox_ir_name(name, nm, sizeof nm);
        itr_graph_add_output(bg, nm, id);
    }
    x->n_bodies = bx.n_bodies;
    if (!ok) {
        x->failed_reported = true;
        free(bx.captured);
        ox_env_free(&bx);
        return ox_error(x, "its body could not be imported (see above)");
    }
    int n_ops = n_in;
    for (int k = 0; k < bx.n_captured && ok; k++) {
        if (n_ops == (int)(sizeof ops / sizeof *ops)) ok = ox_error(x, "its body reads too many outer values");
        else ops[n_ops++] = bx.captured[k];
    }
    free(bx.captured);
    ox_env_free(&bx);
    if (!ok) return false;

    // One axis for all: the first input's, as given or counted from the end,
    // must name every input's and output's axis.
    int r0 = ox_type(x, ops[nc])->rank;
    int64_t cand[2] = { in_ax[0], in_ax[0] - r0 }, axis = 0;
    bool found = false;
    for (int c = 0; c < 2 && !found; c++) {
        bool all = true;
        for (int i = 0; i < ns; i++) all &= norm(cand[c], ox_type(x, ops[nc + i])->rank) == in_ax[i];
        for (int j = 0; j < nso; j++) {
            int rank = bg->values[bg->outputs[nc + j]].type.rank + 1;
            all &= norm(cand[c], rank) == norm(out_ax[j], rank);
        }
        if (all) { axis = cand[c]; found = true; }
    }
    if (!found) return ox_error(x, "its inputs and outputs are scanned along different axes, which is not supported");

    struct itr_attr *a = ox_attrs(x, ITR_OP_SCAN);
    ox_set_graph(x, a, ITR_OP_SCAN, "body", bg);
    ox_set_int(x, a, ITR_OP_SCAN, "n_carry", nc);
    ox_set_int(x, a, ITR_OP_SCAN, "n_scan", ns);
    ox_set_int(x, a, ITR_OP_SCAN, "axis", axis);
    ox_set_int(x, a, ITR_OP_SCAN, "reverse", rev != 0);
    int32_t outs[16];
    if (!ox_node_in(x, x->g, ITR_OP_SCAN, ops, n_ops, a, outs)) return false;
    for (int i = 0; i < n->n_out && i < n_bout; i++)
        if (!ox_out(x, n, i, outs[i])) return false;
    return true;
}
