// ONNX If and Loop (docs/onnx.md, "Control flow"), where they fold to our
// constructs; the IR has no data-dependent control flow.
//
// If: a condition known when importing (an initializer, a Constant, shape
// arithmetic, a node test's given input) selects the branch, whose nodes are
// then imported into the enclosing graph as if they stood there. Otherwise
// both branches are imported and each output is where(cond, then, else):
// both are evaluated, which is only the same thing as ONNX's If because every
// op we import is pure, and only when the branches' outputs have one type.
//
// Loop: with a trip count M known when importing (a constant or a dim
// expression, Shape(x)[0] for `range(x.size(0))`) and a condition that stays
// true (absent, or known true on entry, and the body's condition output the
// body's condition input passed through or a constant), the loop runs
// exactly M steps: our `scan` over iota(M), the iteration number, with the
// loop-carried values as carries and the scan outputs stacked along axis 0.
// Inside the body the condition input is the constant true, since a step
// only runs while it is. A condition that depends on data is an early exit,
// which a scan cannot express: that is an error naming the node.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"

// A subgraph's import state: its own value environment, whose names the
// enclosing graph's shadow nothing (ONNX subgraphs may reuse a sibling's
// names), resolving unknown names through the parent.
static bool child_init(struct ox *c, struct ox *x, struct itr_graph *g, const Onnx__GraphProto *gp) {
    memset(c, 0, sizeof *c);
    c->p = x->p;
    c->g = g;
    c->d = x->d;
    c->what = x->what;
    c->loc = x->loc;
    c->opt = x->opt;
    c->weights = x->weights;
    c->opset = x->opset;
    c->gp = gp;
    c->parent = x;
    c->n_bodies = x->n_bodies;
    c->depth = x->depth + 1;
    if (c->depth > OX_MAX_DEPTH) return ox_error(x, "subgraphs are nested more than %d deep", OX_MAX_DEPTH);
    return true;
}

static void child_done(struct ox *x, struct ox *c) {
    x->n_bodies = c->n_bodies;
    free(c->captured);
    ox_env_free(c);
}

// The subgraph's initializers and nodes.
static bool child_nodes(struct ox *x, struct ox *c, const char *what) {
    const Onnx__GraphProto *gp = c->gp;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name) return ox_error(x, "an initializer of its %s has no name", what);
        struct itr_tensor *k = ox_tensor_from_proto(t, x->what, x->d);
        if (!k) return false;
        ox_env_add(c, t->name)->k = k;
    }
    if (gp->n_sparse_initializer) return ox_error(x, "its %s has sparse initializers, which are not supported", what);
    for (size_t i = 0; i < gp->n_node; i++) {
        c->node_index = (int)i;
        if (!ox_lower_node(c, gp->node[i])) return false;
    }
    return true;
}

// The subgraph's output j: computed in it, or an enclosing graph's value.
static struct ox_val *child_output(struct ox *x, struct ox *c, int j, const char *what) {
    const char *name = c->gp->output[j]->name;
    struct ox_val *v = name && name[0] ? ox_env_find(c, name) : NULL;
    if (!v && name && name[0]) v = ox_capture(c, name);
    if (!v && !c->failed_reported)
        ox_error(x, "output %d ('%s') of its %s is not computed in it", j, name ? name : "", what);
    return v;
}

// The If's output i is what the taken branch's value v is, known or not.
static bool pass_out(struct ox *x, struct ox_node *n, int i, struct ox *c, struct ox_val *v) {
    if (v->k) return ox_out_known(x, n, i, itr_tensor_clone(v->k));
    if (v->dv) return ox_out_dims(x, n, i, v->dv, v->dv_n, v->dv_scalar, v->dv_dtype);
    return ox_out(x, n, i, ox_id(c, v));
}

static char *type_str(struct ox *x, int32_t id, char *buf, size_t len) {
    itr_type_format(x->p, ox_type(x, id), buf, len);
    return buf;
}

bool ox_lower_if(struct ox *x, struct ox_node *n) {
    static const char *const names[2] = { "then_branch", "else_branch" };
    const Onnx__GraphProto *br[2];
    for (int b = 0; b < 2; b++) {
        const Onnx__AttributeProto *a = ox_attr(n, names[b]);
        if (!a || !a->g) return ox_error(x, "has no '%s' graph", names[b]);
        br[b] = a->g;
        if (br[b]->n_input) return ox_error(x, "its %s takes %zu inputs; an If branch takes none", names[b], br[b]->n_input);
    }
    if (br[0]->n_output != br[1]->n_output)
        return ox_error(x, "its then_branch returns %zu values and its else_branch %zu", br[0]->n_output, br[1]->n_output);
    if (n->n_out > (int)br[0]->n_output)
        return ox_error(x, "has %d outputs; its branches return %zu", n->n_out, br[0]->n_output);
    if (n->n_in < 1 || !n->in[0]) return ox_error(x, "has no condition");
    int n_out = n->n_out;

    struct ox_val *cv = n->in[0];
    const struct itr_tensor *ck = ox_known(x, cv);
    if (ck) {
        if (itr_tensor_numel(ck) != 1)
            return ox_error(x, "its condition '%s' has %lld elements; it needs one", cv->name,
                            (long long)itr_tensor_numel(ck));
        int b = itr_tensor_get(ck, 0) != 0 ? 0 : 1;
        struct ox c;
        if (!child_init(&c, x, x->g, br[b])) return false;
        c.inline_scope = true;
        bool ok = child_nodes(x, &c, names[b]);
        for (int i = 0; ok && i < n_out; i++) {
            if (!ox_out_wanted(n, i)) continue;
            struct ox_val *v = child_output(x, &c, i, names[b]);
            ok = v && pass_out(x, n, i, &c, v);
        }
        bool reported = c.failed_reported;
        child_done(x, &c);
        if (!ok && reported) return ox_error(x, "its %s could not be imported (see above)", names[b]);
        return ok;
    }

    // Known only at run time: both branches, then a where per output.
    int32_t cid = ox_id(x, cv);
    if (cid < 0) return false;
    char tb[160], eb[160];
    const struct itr_type *ct = ox_type(x, cid);
    if (ct->dtype != ITR_BOOL)
        return ox_error(x, "its condition '%s' is %s; If needs a bool", cv->name, type_str(x, cid, tb, sizeof tb));
    for (int k = 0; k < ct->rank; k++) {
        int64_t c1;
        if (!itr_dim_is_const(x->p, ct->dims[k], &c1) || c1 != 1)
            return ox_error(x, "its condition '%s' is %s; it needs a single element", cv->name,
                            type_str(x, cid, tb, sizeof tb));
    }
    if (ct->rank) {   // a scalar, so that where() does not broadcast the outputs up to its rank
        struct itr_attr *a = ox_attrs(x, ITR_OP_RESHAPE);
        ox_set_dims(x, a, ITR_OP_RESHAPE, "shape", NULL, 0);
        if ((cid = ox_op(x, ITR_OP_RESHAPE, &cid, 1, a)) < 0) return false;
    }
    int32_t outs[2][64];
    if (n_out > 64) return ox_error(x, "has %d outputs; at most 64 are supported", n_out);
    for (int b = 0; b < 2; b++) {
        struct ox c;
        if (!child_init(&c, x, x->g, br[b])) return false;
        c.inline_scope = true;
        bool ok = child_nodes(x, &c, names[b]);
        for (int i = 0; ok && i < n_out; i++) {
            outs[b][i] = -1;
            if (!ox_out_wanted(n, i)) continue;
            struct ox_val *v = child_output(x, &c, i, names[b]);
            ok = v && (outs[b][i] = ox_id(&c, v)) >= 0;
        }
        bool reported = c.failed_reported;
        child_done(x, &c);
        if (!ok) return reported ? ox_error(x, "its %s could not be imported (see above)", names[b]) : false;
    }
    for (int i = 0; i < n_out; i++) {
        if (!ox_out_wanted(n, i)) continue;
        int32_t t = outs[0][i], e = outs[1][i];
        if (!itr_type_equal(ox_type(x, t), ox_type(x, e)))
            return ox_error(x, "its condition is known only at run time, so both branches are computed and output %d "
                            "selected with 'where', which needs one type; it is %s in then_branch and %s in "
                            "else_branch", i, type_str(x, t, tb, sizeof tb), type_str(x, e, eb, sizeof eb));
        int32_t ins[3] = { cid, t, e };
        if (!ox_out(x, n, i, ox_op(x, ITR_OP_WHERE, ins, 3, NULL))) return false;
    }
    return true;
}

// The largest trip count accepted: the iteration numbers are an iota of that
// length, and stacked outputs hold one row per step.
#define MAX_TRIPS ((int64_t)1 << 31)

bool ox_lower_loop(struct ox *x, struct ox_node *n) {
    const Onnx__AttributeProto *ba = ox_attr(n, "body");
    if (!ba || !ba->g) return ox_error(x, "has no 'body' graph");
    const Onnx__GraphProto *bp = ba->g;
    int nc = n->n_in > 2 ? n->n_in - 2 : 0;
    if ((int)bp->n_input != 2 + nc)
        return ox_error(x, "its body takes %zu inputs; the Loop passes %d (the iteration number, the condition and %d "
                        "loop-carried values)", bp->n_input, 2 + nc, nc);
    int nso = (int)bp->n_output - 1 - nc;
    if (nso < 0)
        return ox_error(x, "its body returns %zu values; it needs the condition and its %d loop-carried values",
                        bp->n_output, nc);
    if (nc + nso > 16) return ox_error(x, "its body returns %d loop-carried and scan values; at most 16 are supported",
                                       nc + nso);
    struct ox_val *mv = n->n_in > 0 ? n->in[0] : NULL, *cv = n->n_in > 1 ? n->in[1] : NULL;
    if (!mv)
        return ox_error(x, "a Loop without a trip count M (a while loop) is not supported: the number of steps must be "
                        "known when importing");
    // M may be a dim expression (PyTorch's `for i in range(x.size(0))` is
    // Gather(Shape(x), 0)): the scan then runs that many steps.
    itr_dim *m;
    int mn;
    if (!ox_need_dims(x, mv, "the trip count M", &m, &mn)) return false;
    itr_dim mdim = mn == 1 ? m[0] : -1;
    free(m);
    if (mn != 1) return ox_error(x, "its trip count M ('%s') has %d elements; it needs one", mv->name, mn);
    int64_t trips = -1;   // the constant trip count, or -1 for a symbolic one
    if (itr_dim_is_const(x->p, mdim, &trips) && (trips < 0 || trips > MAX_TRIPS))
        return ox_error(x, "its trip count M ('%s') is %lld; 0 to %lld are supported", mv->name, (long long)trips,
                        (long long)MAX_TRIPS);
    if (cv) {
        const struct itr_tensor *ck = ox_known(x, cv);
        if (!ck)
            return ox_error(x, "Loop with a data-dependent condition is not supported: its condition input '%s' is "
                            "known only at run time (an early exit, which a scan of M steps cannot express)", cv->name);
        if (itr_tensor_numel(ck) != 1)
            return ox_error(x, "its condition '%s' has %lld elements; it needs one", cv->name,
                            (long long)itr_tensor_numel(ck));
        if (itr_tensor_get(ck, 0) == 0) trips = 0;   // false on entry: no step runs
    }

    // Our scan's operands: the carries, the iteration numbers, then what
    // the body reads from the enclosing graph.
    int32_t ops[17 + 64];
    for (int i = 0; i < nc; i++) {
        if (!n->in[2 + i]) return ox_error(x, "loop-carried input %d is missing", i);
        if ((ops[i] = ox_id(x, n->in[2 + i])) < 0) return false;
    }
    char bname[64];
    snprintf(bname, sizeof bname, "loop_body%d", x->n_bodies++);
    struct itr_graph *bg = itr_program_add_graph(x->p, bname, ITR_GRAPH_BODY);
    struct ox c;
    if (!child_init(&c, x, bg, bp)) return false;
    bool ok = true;
    for (int i = 0; i < 2 + nc && ok; i++)
        if (!bp->input[i]->name || !bp->input[i]->name[0]) ok = ox_error(x, "body input %d has no name", i);
    char nm[512];
    for (int i = 0; i < nc && ok; i++) {
        ox_ir_name(bp->input[2 + i]->name, nm, sizeof nm);
        int32_t id = itr_graph_add_input(bg, nm, *ox_type(x, ops[i]), x->loc);
        if (id < 0) ok = ox_error(x, "body input '%s' cannot be declared", bp->input[2 + i]->name);
        else ox_env_add(&c, bp->input[2 + i]->name)->id = id;
    }
    if (ok) {
        ox_ir_name(bp->input[0]->name, nm, sizeof nm);
        struct itr_type it = itr_type_make(ITR_I64, 0, NULL);
        int32_t id = itr_graph_add_input(bg, nm, it, x->loc);
        if (id < 0) ok = ox_error(x, "body input '%s' cannot be declared", bp->input[0]->name);
        else ox_env_add(&c, bp->input[0]->name)->id = id;
    }
    if (ok) {
        struct itr_tensor *t = itr_tensor_new(ITR_BOOL, 0, NULL);
        if (!t) ok = ox_error(x, "out of memory");
        else {
            itr_tensor_set(t, 0, 1);
            ox_env_add(&c, bp->input[1]->name)->k = t;
        }
    }
    if (ok) ok = child_nodes(x, &c, "body");
    if (ok) {
        struct ox_val *v = child_output(x, &c, 0, "body");
        const struct itr_tensor *ck = v ? ox_known(&c, v) : NULL;
        if (!v) ok = false;
        else if (!ck)
            ok = ox_error(x, "Loop with a data-dependent condition is not supported: the body's condition output '%s' is "
                          "computed at run time (an early exit, which a scan of M steps cannot express)", v->name);
        else if (itr_tensor_numel(ck) != 1)
            ok = ox_error(x, "the body's condition output '%s' has %lld elements; it needs one", v->name,
                          (long long)itr_tensor_numel(ck));
        else if (itr_tensor_get(ck, 0) == 0 && trips != 0) {
            // The first step runs, and ends the loop.
            if (trips < 0)
                ok = ox_error(x, "its body's condition output is constant false, which ends the loop after one step "
                              "of a trip count known only as a dim (%s); a scan of at most one step is not supported",
                              mv->name);
            trips = 1;
        }
    }
    for (int j = 1; ok && j < 1 + nc + nso; j++) {
        struct ox_val *v = child_output(x, &c, j, "body");
        int32_t id = v ? ox_id(&c, v) : -1;
        if (id < 0) { ok = false; break; }
        ox_ir_name(bp->output[j]->name, nm, sizeof nm);
        itr_graph_add_output(bg, nm, id);
    }
    int n_ops = nc + 1;
    for (int k = 0; ok && k < c.n_captured; k++) {
        if (n_ops == (int)(sizeof ops / sizeof *ops)) ok = ox_error(x, "its body reads too many outer values");
        else ops[n_ops++] = c.captured[k];
    }
    bool reported = c.failed_reported;
    child_done(x, &c);
    if (!ok) return reported ? ox_error(x, "its body could not be imported (see above)") : false;

    itr_dim len = trips >= 0 ? itr_dim_const(x->p, trips) : mdim;
    struct itr_attr *ia = ox_attrs(x, ITR_OP_IOTA);
    ox_set_dims(x, ia, ITR_OP_IOTA, "shape", &len, 1);
    ox_set_dtype(x, ia, ITR_OP_IOTA, "dtype", ITR_I64);
    if ((ops[nc] = ox_op(x, ITR_OP_IOTA, NULL, 0, ia)) < 0) return false;
    struct itr_attr *a = ox_attrs(x, ITR_OP_SCAN);
    ox_set_graph(x, a, ITR_OP_SCAN, "body", bg);
    ox_set_int(x, a, ITR_OP_SCAN, "n_carry", nc);
    ox_set_int(x, a, ITR_OP_SCAN, "n_scan", 1);
    int32_t outs[16];
    if (!ox_node_in(x, x->g, ITR_OP_SCAN, ops, n_ops, a, outs)) return false;
    for (int i = 0; i < n->n_out && i < nc + nso; i++)
        if (!ox_out(x, n, i, outs[i])) return false;
    return true;
}

// ------------------------------------------------------------ run-time offsets

static bool is_int_scalar_like(struct ox *x, int32_t id) {
    const struct itr_type *t = ox_type(x, id);
    if (!itr_dtype_is_int(t->dtype)) return false;
    for (int k = 0; k < t->rank; k++) {
        int64_t c;
        if (!itr_dim_is_const(x->p, t->dims[k], &c) || c != 1) return false;
    }
    return true;
}

// v as base + off, where v is a one-element integer known only at run time.
static bool base_of(struct ox *x, struct ox_val *v, int32_t *base, int64_t *off) {
    if (!v || v->k || v->dv || v->id < 0) return false;
    if (v->has_base) { *base = v->base; *off = v->off; return true; }
    if (!is_int_scalar_like(x, v->id)) return false;
    *base = v->id;
    *off = 0;
    return true;
}

// v's value, when it is one known integer.
static bool known_int1(struct ox *x, struct ox_val *v, int64_t *out) {
    if (!v || v->input >= 0 || (!v->k && !v->dv)) return false;
    int64_t *k;
    int nk;
    if (!ox_known_ints(x, v, &k, &nk)) return false;
    bool ok = nk == 1;
    if (ok) *out = k[0];
    free(k);
    return ok;
}

void ox_track_offsets(struct ox *x, struct ox_node *n) {
    const char *op = n->pb->op_type;
    if (n->n_out < 1 || !n->pb->output[0] || !n->pb->output[0][0]) return;
    struct ox_val *a = n->n_in > 0 ? n->in[0] : NULL, *b = n->n_in > 1 ? n->in[1] : NULL;
    int32_t base;
    int64_t off, c;
    bool found = false;
    // n->in may point at values moved by adding the outputs: find them again.
    if (a) a = ox_env_find(x, n->pb->input[0]);
    if (b) b = ox_env_find(x, n->pb->input[1]);
    if (strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0) {
        if (base_of(x, a, &base, &off) && known_int1(x, b, &c)) {
            off = op[0] == 'A' ? off + c : off - c;
            found = true;
        } else if (op[0] == 'A' && base_of(x, b, &base, &off) && known_int1(x, a, &c)) {
            off += c;
            found = true;
        }
    } else if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0 || strcmp(op, "Reshape") == 0 ||
               strcmp(op, "Identity") == 0 || strcmp(op, "Flatten") == 0 || strcmp(op, "Cast") == 0) {
        found = base_of(x, a, &base, &off);
    }
    if (!found) return;
    struct ox_val *o = ox_env_find(x, n->pb->output[0]);
    if (!o || o->k || o->dv || o->id < 0 || !is_int_scalar_like(x, o->id)) return;
    o->has_base = true;
    o->base = base;
    o->off = off;
}

int ox_dynamic_slice(struct ox *x, struct ox_node *n) {
    struct ox_val *sv = n->in[1], *ev = n->in[2];
    int32_t sb, eb;
    int64_t so, eo;
    if (ox_known(x, sv) || ox_known(x, ev) || !base_of(x, sv, &sb, &so) || !base_of(x, ev, &eb, &eo) || sb != eb)
        return 0;
    int64_t axis = 0, step = 1;
    if (n->n_in > 3 && n->in[3] && !known_int1(x, n->in[3], &axis)) return 0;
    if (n->n_in > 4 && n->in[4] && (!known_int1(x, n->in[4], &step) || step != 1)) return 0;
    int64_t k = eo - so;
    if (k < 0 || k > MAX_TRIPS) {
        ox_error(x, "its end is its start %+lld, a length outside 0 to %lld", (long long)k, (long long)MAX_TRIPS);
        return -1;
    }
    int32_t d = ox_id(x, n->in[0]);
    if (d < 0) return -1;
    const struct itr_type *t = ox_type(x, d);
    int rank = t->rank;
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) {
        ox_error(x, "axis %lld is out of range for rank %d", (long long)axis, rank);
        return -1;
    }
    itr_dim dim = t->dims[axis];
    int64_t dc;
    if (itr_dim_is_const(x->p, dim, &dc) && k > dc) {
        ox_error(x, "it takes %lld elements (end = start %+lld) of an axis of %lld", (long long)k, (long long)k,
                 (long long)dc);
        return -1;
    }
    int32_t s = ox_id(x, sv);
    if (s < 0) return -1;
    enum itr_dtype dt = ox_type(x, s)->dtype;
    if (ox_type(x, s)->rank) {
        struct itr_attr *a = ox_attrs(x, ITR_OP_RESHAPE);
        ox_set_dims(x, a, ITR_OP_RESHAPE, "shape", NULL, 0);
        s = ox_op(x, ITR_OP_RESHAPE, &s, 1, a);
    }
    // ONNX counts a negative start (and end) from the end. Where its
    // clamping would give another length than k — past the end, before the
    // start, or a negative start with an end at or after 0, which is empty
    // — the result's shape would depend on data: the start is then made the
    // axis size, out of range, so that gather's range check reports it when
    // the step runs rather than a wrong slice coming out.
    int32_t size = ox_dim_scalar(x, dim, dt);
    int32_t neg = ox_op2(x, ITR_OP_LT, s, ox_scalar(x, x->g, dt, 0));
    int32_t wrapped = ox_op2(x, ITR_OP_ADD, s, size);
    int32_t ins[3] = { neg, wrapped, s };
    int32_t fixed = ox_op(x, ITR_OP_WHERE, ins, 3, NULL);
    if (k > 0) {
        int32_t crosses = ox_op2(x, ITR_OP_AND, neg, ox_op2(x, ITR_OP_GE, s, ox_scalar(x, x->g, dt, (double)-k)));
        int32_t ins2[3] = { crosses, size, fixed };
        fixed = ox_op(x, ITR_OP_WHERE, ins2, 3, NULL);
    }
    s = fixed;
    itr_dim len = itr_dim_const(x->p, k);
    struct itr_attr *ia = ox_attrs(x, ITR_OP_IOTA);
    ox_set_dims(x, ia, ITR_OP_IOTA, "shape", &len, 1);
    ox_set_dtype(x, ia, ITR_OP_IOTA, "dtype", dt);
    int32_t idx = ox_op2(x, ITR_OP_ADD, ox_op(x, ITR_OP_IOTA, NULL, 0, ia), s);
    int32_t gi[2] = { d, idx };
    struct itr_attr *ga = ox_attrs(x, ITR_OP_GATHER);
    ox_set_int(x, ga, ITR_OP_GATHER, "axis", axis);
    return ox_out(x, n, 0, ox_op(x, ITR_OP_GATHER, gi, 2, ga)) ? 1 : -1;
}
