#!/usr/bin/python3
"""Reference outputs of PyTorch for the IR module library (tests/test_modules.c).

Regenerate (Debian's interpreter, which has python3-torch and numpy; the
fixtures are committed, so this is only needed when an entry changes):

    /usr/bin/python3 tests/gen_module_fixtures.py            # writes tests/fixtures/modules/
    /usr/bin/python3 tests/gen_module_fixtures.py OUT_DIR    # elsewhere

Each entry E of tests/ir/modules_harness.ir gets its inputs as E.in.X.npy, the
parameters it reads as P.npy (P = the harness's full parameter name, e.g.
rnn.w_ih.npy), and PyTorch's results as E.out.Y.npy (computed in float32) and
E.out64.Y.npy (the same float32 inputs and weights, computed in float64).
models/vsepp.ir (with D=8, W=6, V=20) uses the prefix "vsepp." on all three.

The references use torch.nn modules and functions (nn.GRU with
pack_padded_sequence, nn.MultiheadAttention with key_padding_mask,
nn.TransformerEncoderLayer, F.normalize, ...), never our code. The output is
deterministic: fixed seeds, and the same torch version gives the same bytes.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixturegen import fresh_dir

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "modules")

B, L = 3, 5
LENGTHS = np.array([5, 2, 3], dtype=np.int32)   # mixed, unsorted, with padding

gen = torch.Generator().manual_seed(20240611)
written = []


def rand(*shape, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).numpy().astype(np.float32)


def save(name, arr):
    path = os.path.join(OUT, name + ".npy")
    np.save(path, arr)
    written.append((name, arr.dtype, arr.shape))


PARAMS = {}   # name -> float32 array, saved once


def param(name, arr):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    PARAMS[name] = arr
    save(name, arr)


def key_padding(lengths, n):
    """True at padded positions (PyTorch's key_padding_mask convention)."""
    return torch.arange(n)[None, :] >= torch.as_tensor(lengths, dtype=torch.long)[:, None]


def entry(name, inputs, ref, outs=("y",)):
    """Saves inputs, then ref(dtype, P, I) -> tuple of outputs, in f32 and f64."""
    for k, v in inputs.items():
        save(f"{name}.in.{k}", v)
    for dt, tag in ((torch.float32, "out"), (torch.float64, "out64")):
        P = {k: torch.from_numpy(v).to(dt) for k, v in PARAMS.items()}
        I = {k: torch.from_numpy(v).to(dt) if v.dtype == np.float32 else torch.from_numpy(v)
             for k, v in inputs.items()}
        res = ref(dt, P, I)
        if not isinstance(res, tuple):
            res = (res,)
        for oname, r in zip(outs, res):
            a = r.detach().numpy()
            save(f"{name}.{tag}.{oname}", a.astype(np.float32 if dt == torch.float32 else np.float64))


def load(module, P, prefix, mapping, dt):
    """Copies P[prefix + ours] into module's PyTorch parameter for each pair."""
    module = module.to(dt)
    with torch.no_grad():
        for theirs, ours in mapping.items():
            getattr_path(module, theirs).copy_(P[prefix + ours])
    return module


def getattr_path(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def packed_gru(gru, x, lengths, L):
    packed = pack_padded_sequence(x, torch.as_tensor(lengths, dtype=torch.long), batch_first=True,
                                  enforce_sorted=False)
    out, h_n = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
    return out, h_n


GRU_MAP = {"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh", "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh"}
BIGRU_MAP = dict(GRU_MAP, **{"weight_ih_l0_reverse": "bwd.w_ih", "weight_hh_l0_reverse": "bwd.w_hh",
                             "bias_ih_l0_reverse": "bwd.b_ih", "bias_hh_l0_reverse": "bwd.b_hh"})
for k in GRU_MAP:
    BIGRU_MAP[k] = "fwd." + GRU_MAP[k]


def mha_map(prefix=""):
    return {prefix + k: prefix + k for k in
            ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}


def main():
    fresh_dir(OUT)

    x4 = rand(B, L, 4)
    # ---- layers
    param("lin.weight", rand(6, 4, scale=0.5))
    param("lin.bias", rand(6))
    entry("run_linear", {"x": x4}, lambda dt, P, I: F.linear(I["x"], P["lin.weight"], P["lin.bias"]))
    param("lin_nb.weight", rand(6, 4, scale=0.5))
    entry("run_linear_nobias", {"x": rand(B, 4)}, lambda dt, P, I: F.linear(I["x"], P["lin_nb.weight"]))

    param("ffn.fc1.weight", rand(16, 4, scale=0.5))
    param("ffn.fc1.bias", rand(16, scale=0.5))
    param("ffn.fc2.weight", rand(6, 16, scale=0.3))
    param("ffn.fc2.bias", rand(6))

    def mlp_ref(dt, P, I):
        m = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 6))
        m = load(m, P, "ffn.", {"0.weight": "fc1.weight", "0.bias": "fc1.bias",
                                "2.weight": "fc2.weight", "2.bias": "fc2.bias"}, dt)
        return m(I["x"])
    entry("run_mlp", {"x": x4}, mlp_ref)

    param("emb.weight", rand(10, 4))
    ids = torch.randint(0, 10, (B, L), generator=gen).numpy().astype(np.int32)

    def emb_ref(dt, P, I):
        e = load(nn.Embedding(10, 4), P, "emb.", {"weight": "weight"}, dt)
        return e(I["ids"].long())
    entry("run_embedding", {"ids": ids}, emb_ref)

    # ---- norms: row [0, 0] is zero, row [0, 1] has norm ~1e-9, where l2n_e,
    # l2n_0 and fnorm differ; l2n_0 gets x4 (it divides 0 by 0 on zero rows).
    xz = x4.copy()
    xz[0, 0] = 0
    xz[0, 1] *= 1e-9

    def l2n(x, dim=-1, eps=1e-8):   # SCAN's l2norm
        return x / (torch.pow(x, 2).sum(dim=dim, keepdim=True).sqrt() + eps)
    entry("run_l2norm_e", {"x": xz}, lambda dt, P, I: l2n(I["x"]))
    entry("run_l2norm_0", {"x": x4}, lambda dt, P, I: I["x"] / I["x"].norm(p=2, dim=-1, keepdim=True))
    entry("run_l2norm_axis1", {"x": x4}, lambda dt, P, I: l2n(I["x"], dim=1))
    entry("run_fnorm", {"x": xz}, lambda dt, P, I: F.normalize(I["x"], p=2, dim=-1))
    entry("run_l1norm", {"x": xz},
          lambda dt, P, I: I["x"] / (torch.abs(I["x"]).sum(dim=-1, keepdim=True) + 1e-8))
    entry("run_clipped_l2norm", {"x": x4}, lambda dt, P, I: l2n(F.leaky_relu(I["x"], 0.1)))

    def cos_ref(dt, P, I):   # SCAN's cosine_similarity
        a, b = I["a"], I["b"]
        w12 = torch.sum(a * b, -1)
        w1, w2 = torch.norm(a, 2, -1), torch.norm(b, 2, -1)
        return w12 / (w1 * w2).clamp(min=1e-8)
    ca = xz.copy()
    entry("run_cosine", {"a": ca, "b": rand(B, L, 4)}, cos_ref)

    # ---- softmax family
    xs = rand(B, L, scale=3.0)
    entry("run_softmax", {"x": xs}, lambda dt, P, I: torch.softmax(I["x"], -1))
    entry("run_softmax_axis0", {"x": xs}, lambda dt, P, I: torch.softmax(I["x"], 0))
    entry("run_log_softmax", {"x": xs}, lambda dt, P, I: torch.log_softmax(I["x"], -1))
    entry("run_logsumexp", {"x": xs}, lambda dt, P, I: torch.logsumexp(I["x"], -1))
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)

    def msm(dt, P, I):
        m = I["mask"].bool() if I["mask"].dtype != torch.bool else I["mask"]
        y = torch.softmax(I["x"].masked_fill(~m, float("-inf")), -1)
        return torch.nan_to_num(y, nan=0.0)     # the fully masked row: ours gives zeros
    entry("run_masked_softmax", {"x": xs, "mask": mask}, msm)
    entry("run_masked_softmax_f", {"x": xs, "mask": mask.astype(np.float32)}, msm)

    def mlsm(dt, P, I):
        y = torch.log_softmax(I["x"].masked_fill(~I["mask"], float("-inf")), -1)
        return torch.where(I["mask"], y, torch.zeros_like(y))
    entry("run_masked_log_softmax", {"x": xs, "mask": mask}, mlsm, outs=("ym",))

    def mmean(dt, P, I):
        return torch.stack([I["x"][b, :int(I["lengths"][b])].mean(0) for b in range(B)])
    entry("run_masked_mean", {"x": x4, "lengths": LENGTHS}, mmean)

    # ---- normalisation layers
    param("ln.weight", 1 + rand(8, scale=0.2))
    param("ln.bias", rand(8, scale=0.2))

    def ln_ref(dt, P, I):
        m = load(nn.LayerNorm(8), P, "ln.", {"weight": "weight", "bias": "bias"}, dt)
        return m(I["x"])
    entry("run_layernorm", {"x": rand(B, L, 8, scale=2.0) + 1.0}, ln_ref)

    param("bn.weight", 1 + rand(6, scale=0.2))
    param("bn.bias", rand(6, scale=0.2))
    param("bn.running_mean", rand(6, scale=0.5))
    param("bn.running_var", np.abs(rand(6)) + 0.5)

    def bn_ref(dt, P, I):
        m = load(nn.BatchNorm1d(6), P, "bn.", {k: k for k in ("weight", "bias", "running_mean", "running_var")}, dt)
        return m.eval()(I["x"])
    entry("run_batchnorm", {"x": rand(B, 6)}, bn_ref)
    entry("run_batchnorm_cf", {"x": rand(B, 6, L)}, bn_ref)

    # ---- recurrent
    for name, arr in (("w_ih", rand(18, 4, scale=0.5)), ("w_hh", rand(18, 6, scale=0.5)),
                      ("b_ih", rand(18, scale=0.3)), ("b_hh", rand(18, scale=0.3))):
        param("gcell." + name, arr)

    def cell_ref(dt, P, I):
        c = load(nn.GRUCell(4, 6), P, "gcell.", {"weight_ih": "w_ih", "weight_hh": "w_hh",
                                                 "bias_ih": "b_ih", "bias_hh": "b_hh"}, dt)
        return c(I["x"], I["h"])
    entry("run_gru_cell", {"h": rand(B, 6), "x": rand(B, 4)}, cell_ref)

    for name, arr in (("w_ih", rand(18, 4, scale=0.5)), ("w_hh", rand(18, 6, scale=0.5)),
                      ("b_ih", rand(18, scale=0.3)), ("b_hh", rand(18, scale=0.3))):
        param("rnn." + name, arr)

    def make_gru(dt, P):
        return load(nn.GRU(4, 6, batch_first=True), P, "rnn.", GRU_MAP, dt)
    entry("run_gru", {"x": x4, "lengths": LENGTHS}, lambda dt, P, I: packed_gru(make_gru(dt, P), I["x"], LENGTHS, L)[0])
    entry("run_gru_last", {"x": x4, "lengths": LENGTHS},
          lambda dt, P, I: packed_gru(make_gru(dt, P), I["x"], LENGTHS, L)[1][0])

    def gru_rev(dt, P, I):   # each sequence's valid prefix, reversed in time
        g = make_gru(dt, P)
        y = torch.zeros(B, L, 6, dtype=dt)
        for b in range(B):
            n = int(LENGTHS[b])
            o, _ = g(I["x"][b:b + 1, :n].flip(1))
            y[b, :n] = o[0].flip(0)
        return y
    entry("run_gru_reverse", {"x": x4, "lengths": LENGTHS}, gru_rev)

    for d in ("fwd", "bwd"):
        for name, arr in (("w_ih", rand(18, 4, scale=0.5)), ("w_hh", rand(18, 6, scale=0.5)),
                          ("b_ih", rand(18, scale=0.3)), ("b_hh", rand(18, scale=0.3))):
            param(f"birnn.{d}.{name}", arr)

    def bigru_ref(dt, P, I):
        g = load(nn.GRU(4, 6, batch_first=True, bidirectional=True), P, "birnn.", BIGRU_MAP, dt)
        out, _ = packed_gru(g, I["x"], LENGTHS, L)
        return (out[:, :, :6] + out[:, :, 6:]) / 2
    entry("run_bigru", {"x": x4, "lengths": LENGTHS}, bigru_ref)

    # ---- attention (grad stays enabled so PyTorch takes its reference path,
    # not the fused inference fast path)
    x8 = rand(B, L, 8)
    kpm = key_padding(LENGTHS, L)
    param("attn.in_proj_weight", rand(24, 8, scale=0.4))
    param("attn.in_proj_bias", rand(24, scale=0.2))
    param("attn.out_proj.weight", rand(8, 8, scale=0.4))
    param("attn.out_proj.bias", rand(8, scale=0.2))

    def mha_ref(dt, P, I, bias=False):
        m = load(nn.MultiheadAttention(8, 2, batch_first=True), P, "attn.", mha_map(), dt)
        x = I["x"]
        am = I["bias"] if bias else None
        y, _ = m(x, x, x, key_padding_mask=kpm, attn_mask=am, need_weights=False)
        return y
    entry("run_mha", {"x": x8, "lengths": LENGTHS}, mha_ref)
    entry("run_mha_bias", {"x": x8, "lengths": LENGTHS, "bias": rand(L, L)},
          lambda dt, P, I: mha_ref(dt, P, I, bias=True))

    enc_map = mha_map("self_attn.")
    for k in ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
              "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"):
        enc_map[k] = k
    shapes = {"self_attn.in_proj_weight": (24, 8), "self_attn.in_proj_bias": (24,),
              "self_attn.out_proj.weight": (8, 8), "self_attn.out_proj.bias": (8,),
              "linear1.weight": (16, 8), "linear1.bias": (16,), "linear2.weight": (8, 16), "linear2.bias": (8,),
              "norm1.weight": (8,), "norm1.bias": (8,), "norm2.weight": (8,), "norm2.bias": (8,)}
    for k, s in shapes.items():
        base = 1.0 if k.startswith("norm") and k.endswith("weight") else 0.0
        param("enc." + k, base + rand(*s, scale=0.3))

    def enc_ref(dt, P, I):
        m = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        m = load(m, P, "enc.", enc_map, dt).eval()
        return m(I["x"], src_key_padding_mask=kpm)
    entry("run_transformer", {"x": x8, "lengths": LENGTHS}, enc_ref)

    # ---- VSE++ (models/vsepp.ir with D=8, W=6, V=20), models.md §2.1
    D, W, V = 8, 6, 20
    vp = "vsepp."
    param(vp + "img_fc.weight", rand(D, 2048, scale=0.05))
    param(vp + "img_fc.bias", rand(D, scale=0.1))
    param(vp + "embed.weight", rand(V, W))
    for name, arr in (("w_ih", rand(3 * D, W, scale=0.4)), ("w_hh", rand(3 * D, D, scale=0.4)),
                      ("b_ih", rand(3 * D, scale=0.3)), ("b_hh", rand(3 * D, scale=0.3))):
        param(vp + "rnn." + name, arr)

    def vimg(dt, P, I):
        v = F.linear(I["regions"].mean(1), P[vp + "img_fc.weight"], P[vp + "img_fc.bias"])
        return v / v.pow(2).sum(dim=1, keepdim=True).sqrt()
    regions = np.abs(rand(2, 3, 2048))
    entry("vsepp.encode_image", {"regions": regions}, vimg, outs=("img_emb",))

    words = torch.randint(0, V, (B, L), generator=gen).numpy().astype(np.int32)

    def vtxt(dt, P, I):
        e = load(nn.Embedding(V, W), P, vp + "embed.", {"weight": "weight"}, dt)
        g = load(nn.GRU(W, D, batch_first=True), P, vp + "rnn.", GRU_MAP, dt)
        _, h = packed_gru(g, e(I["words"].long()), LENGTHS, L)
        u = h[0]
        return u / u.pow(2).sum(dim=1, keepdim=True).sqrt()
    entry("vsepp.encode_text", {"words": words, "lengths": LENGTHS}, vtxt, outs=("cap_emb",))

    v = np.load(os.path.join(OUT, "vsepp.encode_image.out.img_emb.npy"))
    u = np.load(os.path.join(OUT, "vsepp.encode_text.out.cap_emb.npy"))
    entry("vsepp.score", {"v": v, "u": u}, lambda dt, P, I: I["v"] @ I["u"].t(), outs=("sims",))

    total = 0
    for name, dtype, shape in written:
        total += os.path.getsize(os.path.join(OUT, name + ".npy"))
        print(f"{name}.npy  {dtype}{list(shape)}")
    print(f"{len(written)} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
