// scan: runs the body graph once per position along the scan axis through
// the same interpreter. Step t feeds the carries, slice t of every scanned
// operand and the constants; the body's first n_carry results become the
// next carries and the rest are written at position t of the stacked
// outputs. reverse walks t from the end; outputs stay at their positions.
#include "backends/ref/kernels.h"

#include <stdlib.h>

// Geometry of moving slice t of a tensor along axis ax: outer blocks of
// `inner` bytes, len positions apart.
struct lane {
    int64_t outer, len;
    size_t inner;
};

static struct lane lane_of(const struct itr_tensor *t, int ax) {
    struct lane l = { 1, t->shape[ax], itr_dtype_size(t->dtype) };
    for (int i = 0; i < ax; i++) l.outer *= t->shape[i];
    for (int i = ax + 1; i < t->rank; i++) l.inner *= (size_t)t->shape[i];
    return l;
}

static void take_slice(const struct itr_tensor *src, struct lane l, int64_t t, struct itr_tensor *dst) {
    for (int64_t o = 0; o < l.outer; o++)
        memcpy((char *)dst->data + (size_t)o * l.inner, (const char *)src->data + (size_t)(o * l.len + t) * l.inner,
               l.inner);
}

static void put_slice(struct itr_tensor *dst, struct lane l, int64_t t, const struct itr_tensor *src) {
    for (int64_t o = 0; o < l.outer; o++)
        memcpy((char *)dst->data + (size_t)(o * l.len + t) * l.inner, (const char *)src->data + (size_t)o * l.inner,
               l.inner);
}

static bool same_shape(const struct itr_tensor *a, const struct itr_tensor *b) {
    if (a->rank != b->rank || a->dtype != b->dtype) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

bool ref_scan(struct itr_ref_exec *ex, const struct itr_node *n, struct itr_tensor *const *in,
              struct itr_tensor **out) {
    const struct itr_attr *ba = itr_node_attr(n, "body");
    const struct itr_graph *body = ba ? ba->u.graph : NULL;
    int nc = (int)itr_node_attr_int(n, "n_carry"), ns = (int)itr_node_attr_int(n, "n_scan");
    int64_t axis = itr_node_attr_int(n, "axis");
    bool reverse = itr_node_attr_int(n, "reverse") != 0;
    if (!body || body->n_inputs != n->n_inputs || body->n_outputs != n->n_outputs)
        return ref_error(ex, n, "the body graph does not match the scan's operands and results");
    int nb_in = n->n_inputs, nb_out = n->n_outputs;

    int64_t len = in[nc]->shape[ref_axis(axis, in[nc]->rank)];
    for (int i = nc; i < nc + ns; i++)
        if (in[i]->shape[ref_axis(axis, in[i]->rank)] != len)
            return ref_error(ex, n, "scanned operands %d (%s) and %d (%s) have different lengths along axis %lld", nc,
                             ref_shape_str(in[nc]).s, i, ref_shape_str(in[i]).s, (long long)axis);

    struct itr_tensor **step_in = calloc((size_t)nb_in, sizeof *step_in);
    struct itr_tensor **step_out = calloc((size_t)(nb_out ? nb_out : 1), sizeof *step_out);
    struct itr_tensor **carry = calloc((size_t)(nc ? nc : 1), sizeof *carry);   // owned by the loop after step 0
    if (!step_in || !step_out || !carry) {
        free(step_in); free(step_out); free(carry);
        return ref_error(ex, n, "out of memory");
    }
    bool ok = true;
    // Slice buffers, one per scanned operand, reused across steps.
    for (int i = nc; i < nc + ns && ok; i++) {
        const struct itr_tensor *s = in[i];
        int ax = ref_axis(axis, s->rank);
        int64_t shape[ITR_MAX_RANK];
        for (int k = 0, r = 0; k < s->rank; k++)
            if (k != ax) shape[r++] = s->shape[k];
        step_in[i] = itr_tensor_new(s->dtype, s->rank - 1, shape);
        if (!step_in[i]) ok = ref_error(ex, n, "out of memory");
    }
    for (int i = nc + ns; i < nb_in; i++) step_in[i] = in[i];
    for (int i = 0; i < nc; i++) carry[i] = in[i];

    for (int64_t s = 0; s < len && ok; s++) {
        int64_t t = reverse ? len - 1 - s : s;
        for (int i = 0; i < nc; i++) step_in[i] = carry[i];
        for (int i = nc; i < nc + ns; i++) {
            int ax = ref_axis(axis, in[i]->rank);
            take_slice(in[i], lane_of(in[i], ax), t, step_in[i]);
        }
        if (!ref_run_graph(ex, body, step_in, step_out)) {
            itr_diag_note(ex->diags, n->loc, "in step %lld of the scan over '%s'", (long long)t, body->name);
            ok = false;
            break;
        }
        for (int i = 0; i < nc; i++) {
            if (!same_shape(step_out[i], in[i]))
                ok = ref_error(ex, n, "step %lld: new carry %d has shape %s, the carry has %s", (long long)t, i,
                               ref_shape_str(step_out[i]).s, ref_shape_str(in[i]).s);
            if (s > 0) itr_tensor_free(carry[i]);
            carry[i] = step_out[i];
        }
        for (int i = nc; i < nb_out; i++) {
            struct itr_tensor *y = out[i];
            int ax = ref_axis(axis, y->rank);
            bool fits = y->rank == step_out[i]->rank + 1 && y->shape[ax] == len && y->dtype == step_out[i]->dtype;
            for (int k = 0, r = 0; fits && k < y->rank; k++)
                if (k != ax) fits = y->shape[k] == step_out[i]->shape[r++];
            if (!fits && ok)
                ok = ref_error(ex, n, "step %lld: output %d of shape %s does not stack into %s", (long long)t, i,
                               ref_shape_str(step_out[i]).s, ref_shape_str(y).s);
            if (ok) put_slice(y, lane_of(y, ax), t, step_out[i]);
            itr_tensor_free(step_out[i]);
            step_out[i] = NULL;
        }
    }
    for (int i = 0; i < nc; i++) {
        if (ok) {
            if (!same_shape(carry[i], out[i]))
                ok = ref_error(ex, n, "final carry %d has shape %s, the result has %s", i, ref_shape_str(carry[i]).s,
                               ref_shape_str(out[i]).s);
            else memcpy(out[i]->data, carry[i]->data, itr_tensor_nbytes(carry[i]));
        }
        if (carry[i] != in[i]) itr_tensor_free(carry[i]);
    }
    for (int i = nc; i < nc + ns; i++) itr_tensor_free(step_in[i]);
    free(step_in);
    free(step_out);
    free(carry);
    return ok;
}
