// ONNX GRU, LSTM and RNN as `scan` nodes (design.md principle 3): the input
// projection of every step is one matmul over the whole sequence, the cell
// is the scan's body, and sequence_lens becomes a [T, B, 1] validity mask
// under which padded steps keep the state and output zeros, as ONNX
// specifies. A reverse direction scans from the end, so padded steps come
// first and leave the initial state alone: each sequence starts at its own
// last valid step, as with packed sequences (the same construction as
// models/modules/rnn.ir).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_internal.h"

enum cell { CELL_GRU, CELL_LSTM, CELL_RNN };

struct rnn {
    enum cell kind;
    int gates;                 // 3 (GRU), 4 (LSTM), 1 (RNN)
    int64_t hidden;
    double clip;               // 0: none
    bool lbr;                  // GRU linear_before_reset
    enum itr_op act[2][3];     // per direction: f, g, h
    int n_act;
};

static bool has_in(const struct ox_node *n, int i) { return i < n->n_in && n->in[i]; }

static int32_t scalar_like(struct ox *x, int32_t like, double v) {
    return like < 0 ? -1 : ox_scalar(x, x->g, ox_type(x, like)->dtype, v);
}

static int32_t slice1(struct ox *x, int32_t v, int axis, int64_t from, int64_t to) {
    struct itr_attr *a = ox_attrs(x, ITR_OP_SLICE);
    int64_t ax = axis;
    ox_set_ints(x, a, ITR_OP_SLICE, "axes", &ax, 1);
    ox_set_ints(x, a, ITR_OP_SLICE, "starts", &from, 1);
    ox_set_ints(x, a, ITR_OP_SLICE, "ends", &to, 1);
    return ox_op(x, ITR_OP_SLICE, &v, 1, a);
}

static int32_t unsqueeze1(struct ox *x, int32_t v, int64_t axis) {
    struct itr_attr *a = ox_attrs(x, ITR_OP_UNSQUEEZE);
    ox_set_ints(x, a, ITR_OP_UNSQUEEZE, "axes", &axis, 1);
    return ox_op(x, ITR_OP_UNSQUEEZE, &v, 1, a);
}

static int32_t transpose(struct ox *x, int32_t v, const int64_t *perm, int n) {
    struct itr_attr *a = ox_attrs(x, ITR_OP_TRANSPOSE);
    ox_set_ints(x, a, ITR_OP_TRANSPOSE, "perm", perm, n);
    return ox_op(x, ITR_OP_TRANSPOSE, &v, 1, a);
}

// Row d of a [num_directions, ...] tensor.
static int32_t direction(struct ox *x, int32_t v, int d) {
    int32_t idx = ox_scalar(x, x->g, ITR_I64, d);
    int32_t ins[2] = { v, idx };
    return ox_op(x, ITR_OP_GATHER, ins, 2, NULL);
}

static int32_t concat(struct ox *x, const int32_t *v, int n, int axis) {
    if (n == 1) return v[0];
    struct itr_attr *a = ox_attrs(x, ITR_OP_CONCAT);
    ox_set_int(x, a, ITR_OP_CONCAT, "axis", axis);
    return ox_op(x, ITR_OP_CONCAT, v, n, a);
}

static bool parse_activations(struct ox *x, struct ox_node *n, struct rnn *r, int nd) {
    static const enum itr_op defaults[3][3] = {
        [CELL_GRU] = { ITR_OP_SIGMOID, ITR_OP_TANH, ITR_OP_TANH },
        [CELL_LSTM] = { ITR_OP_SIGMOID, ITR_OP_TANH, ITR_OP_TANH },
        [CELL_RNN] = { ITR_OP_TANH, ITR_OP_TANH, ITR_OP_TANH },
    };
    r->n_act = r->kind == CELL_GRU ? 2 : r->kind == CELL_LSTM ? 3 : 1;
    for (int d = 0; d < 2; d++) memcpy(r->act[d], defaults[r->kind], sizeof r->act[d]);
    const Onnx__AttributeProto *a = ox_attr(n, "activations");
    if (!a) return true;
    if ((int)a->n_strings != r->n_act * nd)
        return ox_error(x, "'activations' lists %zu functions; %d directions need %d", a->n_strings, nd, r->n_act * nd);
    if (ox_attr(n, "activation_alpha") || ox_attr(n, "activation_beta"))
        return ox_error(x, "activation_alpha/activation_beta are not supported");
    for (int i = 0; i < r->n_act * nd; i++) {
        char nm[32];
        size_t k = a->strings[i].len < sizeof nm - 1 ? a->strings[i].len : sizeof nm - 1;
        memcpy(nm, a->strings[i].data, k);
        nm[k] = 0;
        enum itr_op op;
        if (strcmp(nm, "Sigmoid") == 0) op = ITR_OP_SIGMOID;
        else if (strcmp(nm, "Tanh") == 0) op = ITR_OP_TANH;
        else if (strcmp(nm, "Relu") == 0) op = ITR_OP_RELU;
        else return ox_error(x, "activation '%s' is not supported (Sigmoid, Tanh and Relu are)", nm);
        r->act[i / r->n_act][i % r->n_act] = op;
    }
    return true;
}

// An activation of a gate's pre-activation, clipped first when 'clip' is set.
static int32_t act(struct ox *x, const struct rnn *r, enum itr_op op, int32_t v) {
    if (r->clip > 0) {
        v = ox_op2(x, ITR_OP_MAXIMUM, v, scalar_like(x, v, -r->clip));
        v = ox_op2(x, ITR_OP_MINIMUM, v, scalar_like(x, v, r->clip));
    }
    return ox_op1(x, op, v);
}

// The cell as a scan body: (h[, c], gi_t[, m_t], r_t, r_b[, p]) ->
// (h'[, c'], y_t). Built with x->g pointing at the body.
static struct itr_graph *build_body(struct ox *x, const struct rnn *r, int d, const struct itr_type *th,
                                    const struct itr_type *tgi, const struct itr_type *tm, const struct itr_type *trt,
                                    const struct itr_type *trb, const struct itr_type *tp) {
    char name[64];
    snprintf(name, sizeof name, "%s_cell%d", r->kind == CELL_GRU ? "gru" : r->kind == CELL_LSTM ? "lstm" : "rnn",
             x->n_bodies++);
    struct itr_graph *outer = x->g;
    struct itr_graph *g = itr_program_add_graph(x->p, name, ITR_GRAPH_BODY);
    x->g = g;
    int64_t H = r->hidden;
    int32_t h = itr_graph_add_input(g, "h", *th, x->loc);
    int32_t c = r->kind == CELL_LSTM ? itr_graph_add_input(g, "c", *th, x->loc) : -1;
    int32_t gi = itr_graph_add_input(g, "gi", *tgi, x->loc);
    int32_t m = tm ? itr_graph_add_input(g, "m", *tm, x->loc) : -1;
    int32_t rt = itr_graph_add_input(g, "r_t", *trt, x->loc);
    int32_t rb = itr_graph_add_input(g, "r_b", *trb, x->loc);
    int32_t p = tp ? itr_graph_add_input(g, "p", *tp, x->loc) : -1;
    const enum itr_op *f = r->act[d];
    int32_t gh = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MATMUL, h, rt), rb);
    int32_t hn, cn = -1;
    if (r->kind == CELL_GRU) {
        // ONNX gate order z, r, h.
        int32_t z = act(x, r, f[0], ox_op2(x, ITR_OP_ADD, slice1(x, gi, 1, 0, H), slice1(x, gh, 1, 0, H)));
        int32_t rr = act(x, r, f[0], ox_op2(x, ITR_OP_ADD, slice1(x, gi, 1, H, 2 * H), slice1(x, gh, 1, H, 2 * H)));
        int32_t pre;
        if (r->lbr) {
            pre = ox_op2(x, ITR_OP_ADD, slice1(x, gi, 1, 2 * H, 3 * H), ox_op2(x, ITR_OP_MUL, rr, slice1(x, gh, 1, 2 * H, 3 * H)));
        } else {
            int32_t rh = ox_op2(x, ITR_OP_MATMUL, ox_op2(x, ITR_OP_MUL, rr, h), slice1(x, rt, 1, 2 * H, 3 * H));
            pre = ox_op2(x, ITR_OP_ADD, slice1(x, gi, 1, 2 * H, 3 * H), ox_op2(x, ITR_OP_ADD, rh, slice1(x, rb, 0, 2 * H, 3 * H)));
        }
        int32_t nn = act(x, r, f[1], pre);
        // (1 - z) n + z h, evaluated as n + z (h - n).
        hn = ox_op2(x, ITR_OP_ADD, nn, ox_op2(x, ITR_OP_MUL, z, ox_op2(x, ITR_OP_SUB, h, nn)));
    } else if (r->kind == CELL_LSTM) {
        // ONNX gate order i, o, f, c; peepholes i, o, f.
        int32_t gsum = ox_op2(x, ITR_OP_ADD, gi, gh);
        int32_t ig = slice1(x, gsum, 1, 0, H), og = slice1(x, gsum, 1, H, 2 * H);
        int32_t fg = slice1(x, gsum, 1, 2 * H, 3 * H), cg = slice1(x, gsum, 1, 3 * H, 4 * H);
        if (p >= 0) {
            ig = ox_op2(x, ITR_OP_ADD, ig, ox_op2(x, ITR_OP_MUL, slice1(x, p, 0, 0, H), c));
            fg = ox_op2(x, ITR_OP_ADD, fg, ox_op2(x, ITR_OP_MUL, slice1(x, p, 0, 2 * H, 3 * H), c));
        }
        int32_t i_ = act(x, r, f[0], ig), f_ = act(x, r, f[0], fg), ct = act(x, r, f[1], cg);
        cn = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MUL, f_, c), ox_op2(x, ITR_OP_MUL, i_, ct));
        if (p >= 0) og = ox_op2(x, ITR_OP_ADD, og, ox_op2(x, ITR_OP_MUL, slice1(x, p, 0, H, 2 * H), cn));
        hn = ox_op2(x, ITR_OP_MUL, act(x, r, f[0], og), ox_op1(x, f[2], cn));
    } else {
        hn = act(x, r, f[0], ox_op2(x, ITR_OP_ADD, gi, gh));
    }
    int32_t y = hn;
    if (m >= 0) {
        // Padded steps keep the state and output zeros.
        int32_t keep = ox_op2(x, ITR_OP_SUB, scalar_like(x, m, 1), m);
        hn = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MUL, m, hn), ox_op2(x, ITR_OP_MUL, keep, h));
        if (cn >= 0) cn = ox_op2(x, ITR_OP_ADD, ox_op2(x, ITR_OP_MUL, m, cn), ox_op2(x, ITR_OP_MUL, keep, c));
        y = ox_op2(x, ITR_OP_MUL, m, hn);
    }
    x->g = outer;
    if (hn < 0 || y < 0 || (r->kind == CELL_LSTM && cn < 0)) return NULL;
    itr_graph_add_output(g, "h_next", hn);
    if (cn >= 0) itr_graph_add_output(g, "c_next", cn);
    itr_graph_add_output(g, "y", y);
    return g;
}

static bool lower(struct ox *x, struct ox_node *n, enum cell kind) {
    struct rnn r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.gates = kind == CELL_GRU ? 3 : kind == CELL_LSTM ? 4 : 1;
    char db[32];
    const char *dir = ox_attr_s(n, "direction", "forward", db, sizeof db);
    int nd = strcmp(dir, "bidirectional") == 0 ? 2 : 1;
    bool rev = strcmp(dir, "reverse") == 0;
    if (!rev && nd == 1 && strcmp(dir, "forward") != 0) return ox_error(x, "unknown direction '%s'", dir);
    r.clip = ox_attr_f(n, "clip", 0);
    r.lbr = ox_attr_i(n, "linear_before_reset", 0) != 0;
    if (kind == CELL_LSTM && ox_attr_i(n, "input_forget", 0)) return ox_error(x, "input_forget = 1 is not supported");
    if (!parse_activations(x, n, &r, nd)) return false;
    bool batch_first = ox_attr_i(n, "layout", 0) != 0;

    int32_t X = has_in(n, 0) ? ox_id(x, n->in[0]) : -1, W = has_in(n, 1) ? ox_id(x, n->in[1]) : -1;
    int32_t R = has_in(n, 2) ? ox_id(x, n->in[2]) : -1;
    if (X < 0 || W < 0 || R < 0) return x->failed_reported ? false : ox_error(x, "needs X, W and R");
    static const int64_t swap01[3] = { 1, 0, 2 };
    if (batch_first) X = transpose(x, X, swap01, 3);
    if (X < 0) return false;
    const struct itr_type tx = *ox_type(x, X), tr = *ox_type(x, R);
    if (tx.rank != 3 || tr.rank != 3) return ox_error(x, "X and R must have rank 3");
    int64_t H;
    if (!itr_dim_is_const(x->p, tr.dims[2], &H)) return ox_error(x, "R's hidden size must be constant");
    r.hidden = ox_attr_i(n, "hidden_size", H);
    if (r.hidden != H) return ox_error(x, "hidden_size %lld disagrees with R's %lld", (long long)r.hidden, (long long)H);
    enum itr_dtype dt = tx.dtype;
    itr_dim T = tx.dims[0], Bd = tx.dims[1];
    itr_dim GH = itr_dim_const(x->p, r.gates * H), Hd = itr_dim_const(x->p, H);

    int32_t Bias = has_in(n, 3) ? ox_id(x, n->in[3]) : -1;
    int32_t mask = -1;
    if (has_in(n, 4)) {
        // m[t, b] = t < sequence_lens[b], as [T, B, 1] in X's dtype.
        int32_t lens = ox_id(x, n->in[4]);
        if (lens < 0) return false;
        itr_dim tb[2] = { T, Bd };
        struct itr_attr *a = ox_attrs(x, ITR_OP_IOTA);
        ox_set_dims(x, a, ITR_OP_IOTA, "shape", tb, 2);
        ox_set_dtype(x, a, ITR_OP_IOTA, "dtype", ox_type(x, lens)->dtype);
        int32_t t = ox_op(x, ITR_OP_IOTA, NULL, 0, a);
        struct itr_attr *c = ox_attrs(x, ITR_OP_CAST);
        ox_set_dtype(x, c, ITR_OP_CAST, "dtype", dt);
        int32_t valid = ox_op2(x, ITR_OP_LT, t, lens);
        mask = unsqueeze1(x, ox_op(x, ITR_OP_CAST, &valid, 1, c), 2);
        if (mask < 0) return false;
    }
    int32_t H0 = has_in(n, 5) ? ox_id(x, n->in[5]) : -1;
    int32_t C0 = kind == CELL_LSTM && has_in(n, 6) ? ox_id(x, n->in[6]) : -1;
    int32_t P = kind == CELL_LSTM && has_in(n, 7) ? ox_id(x, n->in[7]) : -1;
    static const int64_t swap_bd[3] = { 1, 0, 2 };
    if (batch_first && H0 >= 0) H0 = transpose(x, H0, swap_bd, 3);
    if (batch_first && C0 >= 0) C0 = transpose(x, C0, swap_bd, 3);

    int32_t ys[2], hs[2], cs[2];
    for (int d = 0; d < nd; d++) {
        bool reverse = rev || d == 1;
        int32_t w = direction(x, W, d), rt = ox_op1(x, ITR_OP_TRANSPOSE, direction(x, R, d));
        int32_t gi = ox_op2(x, ITR_OP_MATMUL, X, ox_op1(x, ITR_OP_TRANSPOSE, w));
        int32_t rb;
        if (Bias >= 0) {
            int32_t b = direction(x, Bias, d);
            gi = ox_op2(x, ITR_OP_ADD, gi, slice1(x, b, 0, 0, r.gates * H));
            rb = slice1(x, b, 0, r.gates * H, 2 * r.gates * H);
        } else {
            struct itr_attr *a = ox_attrs(x, ITR_OP_FULL);
            ox_set_float(x, a, ITR_OP_FULL, "value", 0);
            ox_set_dims(x, a, ITR_OP_FULL, "shape", &GH, 1);
            ox_set_dtype(x, a, ITR_OP_FULL, "dtype", dt);
            rb = ox_op(x, ITR_OP_FULL, NULL, 0, a);
        }
        itr_dim bh[2] = { Bd, Hd };
        int32_t h0, c0 = -1;
        struct itr_attr *za = ox_attrs(x, ITR_OP_FULL);
        ox_set_float(x, za, ITR_OP_FULL, "value", 0);
        ox_set_dims(x, za, ITR_OP_FULL, "shape", bh, 2);
        ox_set_dtype(x, za, ITR_OP_FULL, "dtype", dt);
        h0 = H0 >= 0 ? direction(x, H0, d) : ox_op(x, ITR_OP_FULL, NULL, 0, za);
        if (kind == CELL_LSTM) c0 = C0 >= 0 ? direction(x, C0, d) : ox_op(x, ITR_OP_FULL, NULL, 0, za);
        int32_t p = P >= 0 ? direction(x, P, d) : -1;
        if (w < 0 || rt < 0 || gi < 0 || rb < 0 || h0 < 0 || (kind == CELL_LSTM && c0 < 0) || (P >= 0 && p < 0))
            return false;

        struct itr_type th = itr_type_make(dt, 2, bh), tgi = itr_type_make(dt, 2, (itr_dim[]){ Bd, GH });
        struct itr_type tm = itr_type_make(dt, 2, (itr_dim[]){ Bd, itr_dim_const(x->p, 1) });
        struct itr_graph *body = build_body(x, &r, d, &th, &tgi, mask >= 0 ? &tm : NULL, ox_type(x, rt),
                                            ox_type(x, rb), p >= 0 ? ox_type(x, p) : NULL);
        if (!body) return false;
        int32_t ins[8];
        int ni = 0;
        ins[ni++] = h0;
        if (c0 >= 0) ins[ni++] = c0;
        ins[ni++] = gi;
        if (mask >= 0) ins[ni++] = mask;
        ins[ni++] = rt;
        ins[ni++] = rb;
        if (p >= 0) ins[ni++] = p;
        struct itr_attr *a = ox_attrs(x, ITR_OP_SCAN);
        ox_set_graph(x, a, ITR_OP_SCAN, "body", body);
        ox_set_int(x, a, ITR_OP_SCAN, "n_carry", kind == CELL_LSTM ? 2 : 1);
        ox_set_int(x, a, ITR_OP_SCAN, "n_scan", mask >= 0 ? 2 : 1);
        ox_set_int(x, a, ITR_OP_SCAN, "axis", 0);
        ox_set_int(x, a, ITR_OP_SCAN, "reverse", reverse);
        int32_t outs[3];
        if (!ox_node_in(x, x->g, ITR_OP_SCAN, ins, ni, a, outs)) return false;
        hs[d] = unsqueeze1(x, outs[0], 0);
        cs[d] = kind == CELL_LSTM ? unsqueeze1(x, outs[1], 0) : -1;
        ys[d] = unsqueeze1(x, outs[kind == CELL_LSTM ? 2 : 1], 1);
    }
    // Y [T, num_directions, B, H], Y_h and Y_c [num_directions, B, H]; with
    // layout = 1, [B, T, num_directions, H] and [B, num_directions, H].
    int32_t Y = concat(x, ys, nd, 1), Yh = concat(x, hs, nd, 0), Yc = kind == CELL_LSTM ? concat(x, cs, nd, 0) : -1;
    if (batch_first) {
        static const int64_t y_perm[4] = { 2, 0, 1, 3 };
        Y = transpose(x, Y, y_perm, 4);
        Yh = transpose(x, Yh, swap_bd, 3);
        if (Yc >= 0) Yc = transpose(x, Yc, swap_bd, 3);
    }
    if (ox_out_wanted(n, 0) && !ox_out(x, n, 0, Y)) return false;
    if (ox_out_wanted(n, 1) && !ox_out(x, n, 1, Yh)) return false;
    if (kind == CELL_LSTM && ox_out_wanted(n, 2) && !ox_out(x, n, 2, Yc)) return false;
    return true;
}

bool ox_lower_gru(struct ox *x, struct ox_node *n) { return lower(x, n, CELL_GRU); }
bool ox_lower_lstm(struct ox *x, struct ox_node *n) { return lower(x, n, CELL_LSTM); }
bool ox_lower_rnn(struct ox *x, struct ox_node *n) { return lower(x, n, CELL_RNN); }
