#!/usr/bin/python3
"""PyTorch references for the aggregation and similarity catalogue
(tests/test_catalogue_a.c, tests/ir/catalogue_a_harness.ir).

Regenerate (the fixtures are committed; needed only when an entry changes)
with an interpreter that has torch and numpy — Debian's python3-torch, or
the project's bench venv:

    bench/.venv/bin/python tests/gen_catalogue_a_fixtures.py            # tests/fixtures/catalogue_a/
    bench/.venv/bin/python tests/gen_catalogue_a_fixtures.py OUT_DIR

Each entry E of the harness gets its inputs as E.in.X.npy, the parameters it
reads as P.npy (P = the harness's full parameter name), and the results as
E.out.Y.npy (computed in float32) and E.out64.Y.npy (the same float32 inputs
and weights, computed in float64).

Written from the equations of models.md §2.9 (and the collection's
behaviour it documents), never from itrc code: where itrc masks padded
fragments, the reference truncates each item to its length and loops over
items, as the collection's models do; GRUs are nn.GRU on packed sequences;
BatchNorms are nn.BatchNorm1d in eval mode with random running statistics.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixturegen import fresh_dir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "catalogue_a")

B, L, DX = 3, 5, 6
LENGTHS = np.array([5, 2, 3], dtype=np.int32)      # mixed, unsorted, with padding
PLEN = np.array([5, 2, 3, 4], dtype=np.int32)      # the pairs of the local similarity heads

gen = torch.Generator().manual_seed(20250114)
PARAMS = {}


def rand(*shape, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).numpy().astype(np.float32)


def uni(lo, hi, *shape):
    return (torch.rand(*shape, generator=gen) * (hi - lo) + lo).numpy().astype(np.float32)


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(arr))


def param(name, arr):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    PARAMS[name] = arr
    save(name, arr)


def entry(name, inputs, ref):
    """Saves inputs, then ref(P, I) -> output in f32 and in f64."""
    for k, v in inputs.items():
        save(f"{name}.in.{k}", v)
    for dt, tag in ((torch.float32, "out"), (torch.float64, "out64")):
        P = {k: torch.from_numpy(v).to(dt) for k, v in PARAMS.items()}
        I = {k: torch.from_numpy(v).to(dt) if v.dtype == np.float32 else torch.from_numpy(v)
             for k, v in inputs.items()}
        with torch.no_grad():
            r = ref(P, I)
        save(f"{name}.{tag}.y", r.numpy().astype(np.float32 if dt == torch.float32 else np.float64))


def l2n(x, dim=-1):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + 1e-8)


def lin(P, prefix, x, bias=True):
    y = x @ P[prefix + ".weight"].t()
    return y + P[prefix + ".bias"] if bias else y


def bn_eval(P, prefix, x):
    return ((x - P[prefix + ".running_mean"]) / torch.sqrt(P[prefix + ".running_var"] + 1e-5)
            * P[prefix + ".weight"] + P[prefix + ".bias"])


def bn_params(prefix, c):
    param(prefix + ".weight", uni(0.5, 1.5, c))
    param(prefix + ".bias", rand(c, scale=0.1))
    param(prefix + ".running_mean", rand(c, scale=0.2))
    param(prefix + ".running_var", uni(0.5, 1.5, c))


def lin_params(prefix, i, o, bias=True, scale=None):
    s = scale if scale is not None else 1.0 / math.sqrt(i)
    param(prefix + ".weight", uni(-s, s, o, i))
    if bias:
        param(prefix + ".bias", uni(-s, s, o))


def gru_params(prefix, i, h):
    s = 1.0 / math.sqrt(h)
    for n, shp in (("w_ih", (3 * h, i)), ("w_hh", (3 * h, h)), ("b_ih", (3 * h,)), ("b_hh", (3 * h,))):
        param(f"{prefix}.{n}", uni(-s, s, *shp))


def torch_gru(P, prefix, i, h, bidirectional=False):
    g = nn.GRU(i, h, batch_first=True, bidirectional=bidirectional)
    dirs = [("", prefix + (".fwd" if bidirectional else ""))]
    if bidirectional:
        dirs.append(("_reverse", prefix + ".bwd"))
    g = g.to(P[next(iter(P))].dtype)
    with torch.no_grad():
        for sfx, ours in dirs:
            getattr(g, "weight_ih_l0" + sfx).copy_(P[ours + ".w_ih"])
            getattr(g, "weight_hh_l0" + sfx).copy_(P[ours + ".w_hh"])
            getattr(g, "bias_ih_l0" + sfx).copy_(P[ours + ".b_ih"])
            getattr(g, "bias_hh_l0" + sfx).copy_(P[ours + ".b_hh"])
    return g


def main():
    fresh_dir(OUT)
    x = rand(B, L, DX)
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 7.0 * (b + 1)        # padded rows hold large values the masks must ignore
    agg_in = {"x": x, "lengths": LENGTHS}

    # ---------------------------------------------------------------- AggBasic
    def basic(kind, lam=6.0):
        def ref(P, I):
            out = []
            for b, n in enumerate(I["lengths"].tolist()):
                v = I["x"][b, :n]
                if kind == "lse":
                    out.append(torch.log(torch.exp(v * lam).sum(0)) / lam)
                elif kind == "max":
                    out.append(v.max(0)[0])
                elif kind == "min":
                    out.append(v.min(0)[0])
                elif kind == "sum":
                    out.append(v.sum(0))
                else:
                    out.append(v.mean(0))
            return torch.stack(out)
        return ref

    for kind in ("lse", "max", "min", "sum", "mean"):
        entry(f"run_agg_{kind}", agg_in, basic(kind))
    xa = rand(B, L, DX)
    entry("run_agg_lse_axis", {"x": xa}, lambda P, I: torch.log(torch.exp(I["x"] * 4.0).sum(1)) / 4.0)

    # ---------------------------------------------------------------- AggVariable
    def variable(k, largest):
        def ref(P, I):
            out = []
            for b, n in enumerate(I["lengths"].tolist()):
                v = I["x"][b, :n]
                out.append(v.topk(min(k, n), dim=0, largest=largest)[0].mean(0))
            return torch.stack(out)
        return ref

    entry("run_agg_variable_max", agg_in, variable(2, True))
    entry("run_agg_variable_min", agg_in, variable(3, False))

    # ---------------------------------------------------------------- AggGRU
    H = 5
    for inst in ("gru_bn", "gru_nobn"):
        gru_params(inst + ".gru", DX, H)
    bn_params("gru_bn.bn", H)

    def agg_gru(inst, use_bn):
        def ref(P, I):
            g = torch_gru(P, inst + ".gru", DX, H)
            packed = pack_padded_sequence(I["x"], I["lengths"].long(), batch_first=True, enforce_sorted=False)
            _, h = g(packed)
            h = h[0]
            return bn_eval(P, inst + ".bn", h) if use_bn else h
        return ref

    entry("run_agg_gru", agg_in, agg_gru("gru_bn", True))
    entry("run_agg_gru_nobn", agg_in, agg_gru("gru_nobn", False))

    # ---------------------------------------------------------------- AggSGRAF
    O = 7
    for inst in ("att", "att_mm", "att_nobn"):
        lin_params(inst + ".query_fc", DX, O)
        lin_params(inst + ".context_fc", DX, O)
        lin_params(inst + ".common", O, 1)
        if inst != "att_nobn":
            bn_params(inst + ".query_bn", O)
            bn_params(inst + ".context_bn", O)

    def agg_sgraf(inst, use_bn=True, mean_over_pads=True, given=False):
        def ref(P, I):
            xs, lens = I["x"], I["lengths"].tolist()
            if given:
                g = I["g"]
            elif mean_over_pads:
                g = xs.mean(1)                     # the collection's torch.mean over all rows
            else:
                g = torch.stack([xs[b, :n].mean(0) for b, n in enumerate(lens)])
            q = lin(P, inst + ".query_fc", g)
            k = lin(P, inst + ".context_fc", xs)
            if use_bn:
                q = bn_eval(P, inst + ".query_bn", q)
                k = bn_eval(P, inst + ".context_bn", k)
            q, k = torch.tanh(q), torch.tanh(k)
            w = lin(P, inst + ".common", k * q.unsqueeze(1)).squeeze(-1)
            out = []
            for b, n in enumerate(lens):
                a = torch.softmax(w[b, :n], 0)
                out.append((a.unsqueeze(1) * xs[b, :n]).sum(0))
            return torch.stack(out)
        return ref

    entry("run_agg_sgraf", agg_in, agg_sgraf("att"))
    entry("run_agg_sgraf_masked_mean", agg_in, agg_sgraf("att_mm", mean_over_pads=False))
    entry("run_agg_sgraf_nobn", agg_in, agg_sgraf("att_nobn", use_bn=False))
    entry("run_agg_sgraf_global", dict(agg_in, g=rand(B, DX)), agg_sgraf("att", given=True))

    # ---------------------------------------------------------------- AggGPO
    DPE, DH = 8, 6
    gru_params("gp.rnn.fwd", DPE, DH)
    gru_params("gp.rnn.bwd", DPE, DH)
    lin_params("gp.linear", DH, 1, bias=False)

    def gpo_ref(P, I):
        xs, lens = I["x"], I["lengths"]
        dt = xs.dtype
        # in the precision of the run: itrc computes the encoding in the graph
        pos = torch.arange(L, dtype=dt).unsqueeze(1)
        div = torch.exp(torch.arange(0, DPE, 2, dtype=dt) * -(math.log(10000.0) / DPE))
        pe = torch.zeros(L, DPE, dtype=dt)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        pe = pe.unsqueeze(0).repeat(B, 1, 1)
        mask = (torch.arange(L).unsqueeze(0) < lens.long().unsqueeze(1)).unsqueeze(-1)
        pe = pe.masked_fill(~mask, 0)
        g = torch_gru(P, "gp.rnn", DPE, DH, bidirectional=True)
        out, _ = g(pack_padded_sequence(pe, lens.long(), batch_first=True, enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        out = (out[:, :, :DH] + out[:, :, DH:]) / 2
        s = out @ P["gp.linear.weight"].t()
        s = s.masked_fill(~mask, -10000)
        w = torch.softmax(s / 0.1, 1)
        f = xs.masked_fill(~mask, -10000).sort(dim=1, descending=True)[0].masked_fill(~mask, 0)
        return (f * w).sum(1)

    entry("run_agg_gpo", agg_in, gpo_ref)

    # ---------------------------------------------------------------- cosine, order, distances
    R = 4
    a2, b2 = rand(3, 8), rand(4, 8)
    pa, pb = rand(B, L, 8), rand(B, L, 8)
    ub = rand(B, R, 8)

    entry("run_cos_matrix", {"a": a2, "b": b2}, lambda P, I: l2n(I["a"]) @ l2n(I["b"]).t())
    entry("run_cos_pair", {"a": pa, "b": pb}, lambda P, I: (l2n(I["a"]) * l2n(I["b"])).sum(-1))
    entry("run_cos_unpair", {"a": pa, "b": ub}, lambda P, I: torch.bmm(l2n(I["a"]), l2n(I["b"]).transpose(1, 2)))
    entry("run_cos_reduce_lse", {"a": pa, "b": pb},
          lambda P, I: (torch.log(torch.exp((l2n(I["a"]) * l2n(I["b"])).sum(-1) * 6.0).sum(-1)) / 6.0).unsqueeze(-1))
    entry("run_cos_reduce_mean", {"a": pa, "b": pb},
          lambda P, I: (l2n(I["a"]) * l2n(I["b"])).sum(-1).mean(-1).unsqueeze(-1))

    def reduce_masked(P, I):
        out = []
        for b, n in enumerate(I["lengths"].tolist()):
            c = (l2n(I["a"][b, :n]) * l2n(I["b"][b, :n])).sum(-1)
            out.append(torch.log(torch.exp(c * 6.0).sum()) / 6.0)
        return torch.stack(out)

    entry("run_cos_reduce_masked", {"a": pa, "b": pb, "lengths": LENGTHS}, reduce_masked)

    def order(use_abs):
        def ref(P, I):
            im, s = I["im"], I["s"]
            if use_abs:
                im, s = im.abs(), s.abs()
            d = (s.unsqueeze(1) - im.unsqueeze(0)).clamp(min=0)       # [M, N, D]
            return -d.pow(2).sum(2).sqrt().t()
        return ref

    entry("run_order", {"im": a2, "s": b2}, order(True))
    entry("run_order_raw", {"im": a2, "s": b2}, order(False))

    def cos_unpair(a, b):
        return torch.bmm(l2n(a), l2n(b).transpose(1, 2))

    def cdist(a, b, kind, alpha=0.1):
        c = cos_unpair(a, b)
        if kind == "1minus":
            return 1 - c
        if kind == "minus":
            return -c
        if kind == "acos":
            return torch.acos(c)
        d = 1 - c
        lo, hi = d.min(), d.max()
        return F.relu(d - (lo + alpha * (hi - lo)))

    dist_in = {"a": pa, "b": ub}
    for kind in ("1minus", "minus", "acos", "threshold"):
        entry(f"run_dist_{kind}", dist_in, lambda P, I, kind=kind: cdist(I["a"], I["b"], kind))

    def sinkhorn(c, beta, iters):
        bs, n, m = c.shape
        sigma = torch.ones(bs, m, 1, dtype=c.dtype) / m
        T = torch.ones(bs, n, m, dtype=c.dtype)
        A = torch.exp(-c / beta)
        for _ in range(iters[0]):
            Q = A * T
            for _ in range(iters[1]):
                delta = 1.0 / (n * torch.bmm(Q, sigma))
                sigma = 1.0 / (m * torch.bmm(Q.transpose(1, 2), delta))
            T = delta * Q * sigma.transpose(2, 1)
        return T

    def wd(kind, beta, iters):
        def ref(P, I):
            c = cdist(I["a"], I["b"], kind)
            return (c * sinkhorn(c, beta, iters)).sum((1, 2))
        return ref

    entry("run_sinkhorn", {"c": uni(0, 2, B, L, R)}, lambda P, I: sinkhorn(I["c"], 0.5, [30, 1]))
    entry("run_dist_wd", dist_in, wd("threshold", 0.5, [30, 1]))
    entry("run_dist_wd_inner2", dist_in, wd("1minus", 0.5, [5, 2]))

    def gwd_ref(P, I):
        a, b = I["a"], I["b"]
        bs, n, m = a.shape[0], a.shape[1], b.shape[1]
        p = torch.ones(bs, n, 1, dtype=a.dtype) / n
        q = torch.ones(bs, m, 1, dtype=a.dtype) / m
        c1, c2 = cdist(a, a, "threshold"), cdist(b, b, "threshold")
        c12 = (torch.bmm(torch.bmm(c1 ** 2, p), torch.ones(bs, 1, m, dtype=a.dtype))
               + torch.bmm(torch.ones(bs, n, 1, dtype=a.dtype), torch.bmm(q.transpose(1, 2), (c2 ** 2).transpose(1, 2))))
        T = torch.bmm(p, q.transpose(1, 2))
        for _ in range(5):
            cost = c12 - 2 * torch.bmm(torch.bmm(c1, T), c2.transpose(1, 2))
            T = sinkhorn(cost, 0.1, [20, 1])
        cost = c12 - 2 * torch.bmm(torch.bmm(c1, T), c2.transpose(1, 2))
        return (cost * T).sum((1, 2))

    entry("run_dist_gwd", dist_in, gwd_ref)
    entry("run_dist_gwd_nodetach", dist_in, gwd_ref)   # detaching changes the gradient only

    # ---------------------------------------------------------------- local similarity heads
    NP, D, S = 4, 8, 6
    q, a = rand(NP, L, D), rand(NP, L, D)
    mask = (np.arange(L)[None, :] < PLEN[:, None]).astype(np.float32)
    for k in range(NP):
        q[k, PLEN[k]:] = 0.0            # padded words are zero rows, as encoders give them
    loc_in = {"q": q, "a": a, "mask": mask}

    def vecsim(P, prefix, x, y):
        return l2n(lin(P, prefix, (l2n(x) - l2n(y)) ** 2))

    # SimRAR
    lin_params("rar.sim_tran", D, S)
    lin_params("rar.sim_eval", S, 1)
    for i in range(3):
        lin_params(f"rar.layer{i}.fc_q", S, S)
        lin_params(f"rar.layer{i}.fc_k", S, S)
        lin_params(f"rar.layer{i}.fc_v", S, 1)

    def rar_ref(P, I):
        out = []
        for k, n in enumerate(PLEN.tolist()):
            s = vecsim(P, "rar.sim_tran", I["q"][k, :n], I["a"][k, :n])
            g = l2n(s.mean(0))
            for i in range(3):
                gq = torch.tanh(lin(P, f"rar.layer{i}.fc_q", g))
                lk = torch.tanh(lin(P, f"rar.layer{i}.fc_k", s))
                w = torch.softmax(lin(P, f"rar.layer{i}.fc_v", lk * gq).squeeze(-1), 0)
                g = l2n((w.unsqueeze(-1) * s).sum(0))
            out.append(torch.tanh(lin(P, "rar.sim_eval", g))[0])
        return torch.stack(out)

    entry("run_sim_rar", loc_in, rar_ref)

    # SimSGRAF (sgr and saf)
    for inst in ("sgr", "saf"):
        lin_params(inst + ".sim_tran_l", D, S)
        lin_params(inst + ".sim_tran_g", D, S)
        lin_params(inst + ".sim_eval", S, 1)
    for i in range(3):
        for f in ("query", "key", "out"):
            lin_params(f"sgr.layer{i}.{f}", S, S)
    lin_params("saf.filt.attn_fc", S, 1)
    bn_params("saf.filt.bn", 1)

    def sgraf_ref(inst, kind, given=False):
        def ref(P, I):
            out = []
            for k, n in enumerate(PLEN.tolist()):
                s = vecsim(P, inst + ".sim_tran_l", I["q"][k, :n], I["a"][k, :n])
                if given:
                    g = vecsim(P, inst + ".sim_tran_g", I["qg"][k], I["ag"][k])
                else:
                    g = l2n(s.mean(0))
                nodes = torch.cat([g.unsqueeze(0), s], 0)
                if kind == "sgr":
                    for i in range(3):
                        e = torch.softmax(lin(P, f"{inst}.layer{i}.query", nodes)
                                          @ lin(P, f"{inst}.layer{i}.key", nodes).t(), -1)
                        nodes = torch.relu(lin(P, f"{inst}.layer{i}.out", e @ nodes))
                    z = nodes[0]
                else:
                    e = torch.sigmoid(bn_eval(P, inst + ".filt.bn", lin(P, inst + ".filt.attn_fc", nodes).squeeze(-1)))
                    e = e / (e.abs().sum() + 1e-8)
                    z = l2n((e.unsqueeze(-1) * nodes).sum(0))
                out.append(torch.sigmoid(lin(P, inst + ".sim_eval", z))[0])
            return torch.stack(out)
        return ref

    entry("run_sim_sgr", loc_in, sgraf_ref("sgr", "sgr"))
    entry("run_sim_saf", loc_in, sgraf_ref("saf", "saf"))
    entry("run_sim_sgr_global", dict(loc_in, qg=rand(NP, D), ag=rand(NP, D)), sgraf_ref("sgr", "sgr", given=True))

    # SimGSMN, dense text graph
    GS, GH, GK = 4, 8, 4
    for inst in ("gsmn", "gsmn_p"):
        param(inst + ".params", uni(-1, 1, GK, 1))
        param(inst + ".conv_weight", uni(-0.5, 0.5, GK, GH // GK, GS))
        param(inst + ".out_1.weight_g", uni(0.5, 1.5, GH, 1))
        param(inst + ".out_1.weight_v", uni(-0.5, 0.5, GH, GH))
        param(inst + ".out_1.bias", uni(-0.3, 0.3, GH))
        param(inst + ".out_2.weight_g", uni(0.5, 1.5, 1, 1))
        param(inst + ".out_2.weight_v", uni(-0.5, 0.5, 1, GH))
        param(inst + ".out_2.bias", uni(-0.3, 0.3, 1))

    def wn(P, prefix, x):
        v = P[prefix + ".weight_v"]
        w = P[prefix + ".weight_g"] * v / v.norm(dim=1, keepdim=True)
        return x @ w.t() + P[prefix + ".bias"]

    def gsmn_ref(inst, propagate):
        def ref(P, I):
            out = []
            for k, n in enumerate(PLEN.tolist()):
                qq, aa = I["q"][k, :n], I["a"][k, :n]
                s = (l2n(qq.view(n, GS, D // GS)) * l2n(aa.view(n, GS, D // GS))).sum(-1)     # [n, GS]
                att = torch.softmax(qq @ qq.t() * 20.0, dim=1)                                # [n, n]
                w = att.unsqueeze(-1) * P[inst + ".params"].view(1, 1, -1)                    # [n, n, K]
                w = w / w.sum(1, keepdim=True)
                if propagate:
                    nb = s.unsqueeze(0).expand(n, n, GS)       # neighbour j of node i holds s_j
                else:
                    nb = s.unsqueeze(1).expand(n, n, GS)       # the collection: s_i repeated
                x = torch.bmm(w.transpose(1, 2), nb)                                          # [n, K, GS]
                h = torch.cat([x[:, i] @ P[inst + ".conv_weight"][i].t() for i in range(GK)], 1)
                r = wn(P, inst + ".out_2", torch.tanh(wn(P, inst + ".out_1", h)))
                out.append(r.mean())
            return torch.stack(out)
        return ref

    entry("run_sim_gsmn", loc_in, gsmn_ref("gsmn", False))
    entry("run_sim_gsmn_propagate", loc_in, gsmn_ref("gsmn_p", True))

    # SGRAF's own SGR step and SAF head (modules/sgraf.ir), per (image,
    # caption) pair truncated to the caption's valid nodes.
    NI, NC, NT = 2, 3, 4
    nlen = [4, 2, 3]
    nodes = rand(NI, NC, NT, S)
    nmask = (np.arange(NT)[None, :] < np.array(nlen)[:, None]).astype(np.float32)
    for f in ("graph_query_w", "graph_key_w", "sim_graph_w"):
        lin_params("sgraf_step." + f, S, S)
    lin_params("sgraf_filt.attn_sim_w", S, 1)
    bn_params("sgraf_filt.bn", 1)

    def sgraf_step_ref(P, I):
        out = torch.zeros(NI, NC, NT, S, dtype=I["nodes"].dtype)
        for i in range(NI):
            for c, n in enumerate(nlen):
                v = I["nodes"][i, c, :n]
                e = torch.softmax(lin(P, "sgraf_step.graph_query_w", v) @ lin(P, "sgraf_step.graph_key_w", v).t(), -1)
                out[i, c, :n] = torch.relu(lin(P, "sgraf_step.sim_graph_w", e @ v))
        return out

    def sgraf_filt_ref(P, I):
        out = torch.zeros(NI, NC, S, dtype=I["nodes"].dtype)
        for i in range(NI):
            for c, n in enumerate(nlen):
                v = I["nodes"][i, c, :n]
                e = torch.sigmoid(bn_eval(P, "sgraf_filt.bn", lin(P, "sgraf_filt.attn_sim_w", v).squeeze(-1)))
                e = e / (e.abs().sum() + 1e-8)
                out[i, c] = l2n((e.unsqueeze(-1) * v).sum(0))
        return out

    entry("run_sgraf_graph_step", {"nodes": nodes, "mask": nmask}, sgraf_step_ref)
    entry("run_sgraf_filtration", {"nodes": nodes, "mask": nmask}, sgraf_filt_ref)

    # ---------------------------------------------------------------- training mode
    # tests/ir/catalogue_a_train.ir: AggGRU, AggSGRAF (dropout 0) and the SAF
    # head with their BatchNorms on batch statistics (nn.BatchNorm1d in train
    # mode, which also moves the running estimates), on the harness's
    # parameters. Written as train.in.X, train.out.Y, train.out64.Y with Y
    # the outputs y_gru, y_att, y_saf and new.P for each running statistic P.
    tin = {"x": x, "lengths": LENGTHS, "q": q, "a": a, "mask": mask}
    for k, v in tin.items():
        save(f"train.in.{k}", v)

    def bn_train(P, prefix, rows):
        c = rows.shape[1]
        bn = nn.BatchNorm1d(c).to(rows.dtype).train()
        with torch.no_grad():
            for n in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, n).copy_(P[f"{prefix}.{n}"])
        y = bn(rows)
        return y, {f"new.{prefix}.running_mean": bn.running_mean, f"new.{prefix}.running_var": bn.running_var}

    for dt, tag in ((torch.float32, "out"), (torch.float64, "out64")):
        P = {k: torch.from_numpy(v).to(dt) for k, v in PARAMS.items()}
        I = {k: torch.from_numpy(v).to(dt) if v.dtype == np.float32 else torch.from_numpy(v) for k, v in tin.items()}
        outs = {}
        with torch.no_grad():
            g = torch_gru(P, "gru_bn.gru", DX, H)
            _, h = g(pack_padded_sequence(I["x"], I["lengths"].long(), batch_first=True, enforce_sorted=False))
            outs["y_gru"], new = bn_train(P, "gru_bn.bn", h[0])
            outs.update(new)

            xs, lens = I["x"], I["lengths"].tolist()
            qv, new = bn_train(P, "att.query_bn", lin(P, "att.query_fc", xs.mean(1)))
            outs.update(new)
            kv, new = bn_train(P, "att.context_bn", lin(P, "att.context_fc", xs).reshape(B * L, O))
            outs.update(new)
            qv, kv = torch.tanh(qv), torch.tanh(kv.reshape(B, L, O))
            w = lin(P, "att.common", kv * qv.unsqueeze(1)).squeeze(-1)
            outs["y_att"] = torch.stack([(torch.softmax(w[b, :n], 0).unsqueeze(1) * xs[b, :n]).sum(0)
                                         for b, n in enumerate(lens)])

            nodes_all, scores = [], []
            for k, n in enumerate(PLEN.tolist()):
                sl = vecsim(P, "saf.sim_tran_l", I["q"][k, :n], I["a"][k, :n])
                nodes = torch.cat([l2n(sl.mean(0)).unsqueeze(0), sl], 0)
                nodes_all.append(nodes)
                scores.append(lin(P, "saf.filt.attn_fc", nodes))
            # one BatchNorm1d(1) call over every valid node score of the batch of pairs
            e_all, new = bn_train(P, "saf.filt.bn", torch.cat(scores, 0))
            outs.update(new)
            res, at = [], 0
            for nodes in nodes_all:
                e = torch.sigmoid(e_all[at:at + nodes.shape[0], 0])
                at += nodes.shape[0]
                e = e / (e.abs().sum() + 1e-8)
                z = l2n((e.unsqueeze(-1) * nodes).sum(0))
                res.append(torch.sigmoid(lin(P, "saf.sim_eval", z))[0])
            outs["y_saf"] = torch.stack(res)
        for name, r in outs.items():
            save(f"train.{tag}.{name}", r.numpy().astype(np.float32 if dt == torch.float32 else np.float64))


if __name__ == "__main__":
    main()
