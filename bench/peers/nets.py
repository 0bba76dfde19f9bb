"""PyTorch versions of the models' maths (models/*.ir, shared/docs/models.md).

Only what the benchmarks time: VSE++ encoders and loss, SCAN's encoders, the
score functions of SCAN t2i/i2t, SGR, SAF and BFAN on an images x captions
tile, and the VSE∞ and TERN training forwards. Each function names the .ir it
follows.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from common import D, IMG_DIM, V, W


def l2n(x, dim=-1, eps=1e-8):
    """modules/nn.ir l2norm: x / (|x| + eps); eps 0 divides by |x|."""
    n = x.pow(2).sum(dim=dim, keepdim=True).sqrt()
    return x / n if eps == 0.0 else x / (n + eps)


def cosine(a, b, dim=-1, eps=1e-8):
    """modules/nn.ir cosine."""
    return (a * b).sum(dim) / (a.pow(2).sum(dim).sqrt() * b.pow(2).sum(dim).sqrt()).clamp_min(eps)


def masked_softmax(x, m, dim=-1):
    """modules/nn.ir masked_softmax (m broadcastable to x, 1 = valid)."""
    xs = x + (m - 1.0) * 1e30
    e = torch.exp(xs - xs.amax(dim=dim, keepdim=True)) * m
    return e / e.sum(dim=dim, keepdim=True).clamp_min(1.0)


def hinge_costs(s, margin=0.2):
    """modules/losses.ir hinge_costs: [m + s(i,c) - s(i,i)]+ and [m + s(i,c) - s(c,c)]+, positives zeroed."""
    d = s.diag().view(-1, 1)
    eye = torch.eye(s.size(0), dtype=torch.bool)
    c_s = (margin + s - d).clamp(min=0).masked_fill(eye, 0)
    c_im = (margin + s - d.t()).clamp(min=0).masked_fill(eye, 0)
    return c_s, c_im


def hinge_max_violation(s, margin=0.2):
    """modules/losses.ir hinge, max_violation: sum_i max_c [m + s(i,c) - s(i,i)]+ + sum_c max_i [m + s(i,c) - s(c,c)]+."""
    c_s, c_im = hinge_costs(s, margin)
    return c_s.max(1)[0].sum() + c_im.max(0)[0].sum()


def hinge_sum(s, margin=0.2):
    """modules/losses.ir hinge_sum: every negative of both directions."""
    c_s, c_im = hinge_costs(s, margin)
    return c_s.sum() + c_im.sum()


# ---------------------------------------------------------------- VSE++ (models/vsepp.ir)

class VseppImage(nn.Module):
    """v = l2n_0(W_v mean_r(X_r) + b_v)."""

    def __init__(self, img_dim=IMG_DIM, d=D):
        super().__init__()
        self.fc = nn.Linear(img_dim, d)

    def forward(self, regions):
        return l2n(self.fc(regions.mean(1)), eps=0.0)


class VseppText(nn.Module):
    """u = l2n_0(GRU(E[words]) at the last valid token); packed sequences
    (VSEPP's own code). `padded=True` runs the GRU over the padded batch and
    gathers the state at position length-1, which is the same number for a
    forward GRU and exports to ONNX."""

    def __init__(self, padded=False, v=V, w=W, d=D):
        super().__init__()
        self.embed = nn.Embedding(v, w)
        self.rnn = nn.GRU(w, d, 1, batch_first=True)
        self.padded = padded

    def forward(self, words, lengths):
        x = self.embed(words)
        if self.padded:
            out, _ = self.rnn(x)
            idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
            h = out.gather(1, idx).squeeze(1)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
            h = h[0]
        return l2n(h, eps=0.0)


class Vsepp(nn.Module):
    def __init__(self, img_dim=IMG_DIM, w=W, d=D):
        super().__init__()
        self.img = VseppImage(img_dim=img_dim, d=d)
        self.txt = VseppText(w=w, d=d)

    def forward(self, regions, words, lengths):
        return hinge_max_violation(self.img(regions) @ self.txt(words, lengths).t())


# ---------------------------------------------------------------- SCAN (models/scan_t2i.ir, modules/xattn.ir)

class ScanImage(nn.Module):
    """V = l2n_e(X W_v^T + b_v), per region."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(IMG_DIM, D)

    def forward(self, regions):
        return l2n(self.fc(regions))


class ScanText(nn.Module):
    """U = masked l2n_e((fwd + bwd) / 2) of a BiGRU over E[words] (packed);
    padding words are 0."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, 1, batch_first=True, bidirectional=True)

    def forward(self, words, lengths):
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=words.size(1))
        out = (out[:, :, :D] + out[:, :, D:]) / 2
        return l2n(out)   # padding rows are 0 and stay 0


def clipped_l2norm(a):
    return l2n(F.leaky_relu(a, 0.1))


def lse(r, m, lam):
    return torch.log((torch.exp(r * lam) * m).sum(-1)) / lam


def scan_t2i_score(img, cap, mask, lambda_softmax=9.0, lambda_lse=6.0):
    """xattn_t2i: img [n, R, D], cap [c, L, D], mask [c, L] -> sims [n, c]."""
    v = img.unsqueeze(1)                                     # [n, 1, R, D]
    a = torch.matmul(v, cap.transpose(1, 2).unsqueeze(0))    # [n, c, R, L]
    a = a * mask[None, :, None, :]
    a = clipped_l2norm(a)                                    # over words
    alpha = torch.softmax(a * lambda_softmax, dim=2)         # over regions
    att = torch.matmul(alpha.transpose(2, 3), v)             # [n, c, L, D]
    r = cosine(cap.unsqueeze(0), att)                        # [n, c, L]
    return lse(r, mask.unsqueeze(0), lambda_lse)


def scan_i2t_score(img, cap, mask, lambda_softmax=4.0, lambda_lse=5.0):
    """xattn_i2t: each region attends over the valid words."""
    v = img.unsqueeze(1)                                     # [n, 1, R, D]
    u = cap.unsqueeze(0)                                     # [1, c, L, D]
    c = mask[None, :, :, None]                               # [1, c, L, 1]
    a = torch.matmul(u, v.transpose(2, 3))                   # [n, c, L, R]
    a = clipped_l2norm(torch.where(c > 0.5, a, torch.ones_like(a)))
    alpha = masked_softmax(a * lambda_softmax, c, dim=2)     # over words
    att = torch.matmul(alpha.transpose(2, 3), u)             # [n, c, R, D]
    r = cosine(v, att)                                       # [n, c, R]
    return torch.logsumexp(r * lambda_lse, dim=-1) / lambda_lse


def bfan_score(img, cap, mask, lambda_softmax=20.0):
    """xattn_focal_t2i, focal "equal", agg "mean" (models/bfan.ir)."""
    v = img.unsqueeze(1)
    a = torch.matmul(v, cap.transpose(1, 2).unsqueeze(0))    # [n, c, R, L]
    a = clipped_l2norm(a * mask[None, :, None, :])
    alpha = torch.softmax(a * lambda_softmax, dim=2)         # over regions
    n_r = alpha.size(2)
    f = alpha * n_r - alpha.sum(2, keepdim=True)             # focal_reassign, "equal", unmasked
    h = (f > 0).float()
    h = torch.where(h.sum(2, keepdim=True) < 0.5, torch.ones_like(h), h)
    ha = h * alpha
    alpha = ha / ha.sum(2, keepdim=True)
    att = torch.matmul(alpha.transpose(2, 3), v)             # [n, c, L, D]
    r = cosine(cap.unsqueeze(0), att)
    m = mask.unsqueeze(0)
    return (r * m).sum(-1) / m.sum(-1)


class ScanScore(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, img, cap, mask):
        return self.fn(img, cap, mask)


class ScanT2I(nn.Module):
    """SCAN t2i training forward + loss (models/scan_t2i.ir)."""

    def __init__(self):
        super().__init__()
        self.img = ScanImage()
        self.txt = ScanText()

    def forward(self, regions, words, lengths, mask):
        return hinge_max_violation(scan_t2i_score(self.img(regions), self.txt(words, lengths), mask))


# ---------------------------------------------------------------- SGRAF (modules/sgraf.ir)

class SgrafHead(nn.Module):
    """sgraf_similarity + SGR (3 graph steps) or SAF, eval mode."""

    def __init__(self, kind, S=256, lambda_softmax=9.0, steps=3):
        super().__init__()
        self.kind, self.lam = kind, lambda_softmax
        self.sim_tranloc_w = nn.Linear(D, S)
        self.sim_tranglo_w = nn.Linear(D, S)
        self.sim_eval_w = nn.Linear(S, 1)
        if kind == "sgr":
            self.q = nn.ModuleList(nn.Linear(S, S) for _ in range(steps))
            self.k = nn.ModuleList(nn.Linear(S, S) for _ in range(steps))
            self.g = nn.ModuleList(nn.Linear(S, S) for _ in range(steps))
        else:
            self.attn_sim_w = nn.Linear(S, 1)
            # sgraf_node_batchnorm in eval mode: scalar running stats
            self.register_buffer("bn_mean", torch.zeros(1))
            self.register_buffer("bn_var", torch.ones(1))
            self.bn_w = nn.Parameter(torch.ones(1))
            self.bn_b = nn.Parameter(torch.zeros(1))

    def forward(self, v, vglo, u, uglo, mask):
        # sgraf_t2i
        s = torch.matmul(v.unsqueeze(1), u.transpose(1, 2).unsqueeze(0))       # [n, c, R, L]
        s = l2n(F.leaky_relu(s, 0.1) * mask[None, :, None, :])
        attn = torch.softmax(s.transpose(2, 3) * self.lam, dim=-1)              # [n, c, L, R]
        a = l2n(torch.matmul(attn, v.unsqueeze(1)))                             # [n, c, L, D]
        dl = a - u.unsqueeze(0)
        sl = l2n(self.sim_tranloc_w(dl * dl))                                   # [n, c, L, S]
        dg = vglo.unsqueeze(1) - uglo.unsqueeze(0)
        sg = l2n(self.sim_tranglo_w(dg * dg))                                   # [n, c, S]
        x = torch.cat([sg.unsqueeze(2), sl], dim=2)                             # [n, c, L+1, S]
        nmask = torch.cat([torch.ones(mask.size(0), 1), mask], dim=1)           # [c, L+1]
        if self.kind == "sgr":
            m = nmask[None, :, None, :]
            for q, k, g in zip(self.q, self.k, self.g):
                e = masked_softmax(torch.matmul(q(x), k(x).transpose(2, 3)), m)
                x = torch.relu(g(torch.matmul(e, x)))
            z = x[:, :, 0, :]
        else:
            e = self.attn_sim_w(x).squeeze(3)
            e = (e - self.bn_mean) / torch.sqrt(self.bn_var + 1e-5) * self.bn_w + self.bn_b
            e = torch.sigmoid(e) * nmask.unsqueeze(0)
            e = e / (e.abs().sum(-1, keepdim=True) + 1e-8)
            z = l2n((e.unsqueeze(3) * x).sum(2))
        return torch.sigmoid(self.sim_eval_w(z).squeeze(2))


# ---------------------------------------------------------------- VSE∞ (models/vse_inf.ir, modules/gpo.ir)

def positional_encoding_1d(d_pe, length):
    """gpo.ir encoding: P[k, 2i] = sin(k w_i), P[k, 2i+1] = cos(k w_i), w_i = exp(2i * -(ln 10000 / d_pe))."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_pe, 2, dtype=torch.float32) * (-math.log(10000.0) / d_pe))
    pe = torch.zeros(length, d_pe)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def bigru_avg(rnn, x, lengths):
    """rnn.ir bigru: (fwd + bwd) / 2 over packed sequences, 0 at padded steps."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    fwd, bwd = out.chunk(2, dim=2)   # (slicing by hidden_size fails in torch.compile's resumed frames)
    return (fwd + bwd) / 2


class Gpo(nn.Module):
    """gpo.ir: theta = softmax(w^T BiGRU-avg(P) / 0.1) over the valid positions
    (depends on the lengths only); pooled_d = sum_k theta_k * (the valid values
    of dimension d sorted in descending order)_k."""

    def __init__(self, d_pe=32, d_hidden=32):
        super().__init__()
        self.d_pe = d_pe
        self.rnn = nn.GRU(d_pe, d_hidden, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def weights(self, lengths, n, mask):
        pe = positional_encoding_1d(self.d_pe, n).unsqueeze(0) * mask.unsqueeze(2)
        s = self.linear(bigru_avg(self.rnn, pe, lengths)).squeeze(2)
        s = s.masked_fill(mask < 0.5, -10000.0)
        return torch.softmax(s / 0.1, dim=1)

    def forward(self, x, lengths):
        mask = (torch.arange(x.size(1))[None, :] < lengths[:, None]).float()
        valid = (mask > 0.5).unsqueeze(2)
        v = x.masked_fill(~valid, -10000.0).sort(dim=1, descending=True)[0].masked_fill(~valid, 0.0)
        return (v * self.weights(lengths, x.size(1), mask).unsqueeze(2)).sum(1)


class VseInf(nn.Module):
    """models/vse_inf.ir, text = "bigru", training forward + loss:
    v = l2n_e(GPO(X W_fc^T + b_fc + Lin2(ReLU(BN(Lin1 X))), R)), BN over all B*R rows;
    u = l2n_e(GPO(BiGRU-avg(E[words]), l)); loss = hinge_warmup: the sum over
    negatives while use_max is False (epoch < warmup_epochs), max-violation after."""

    def __init__(self, img_dim=IMG_DIM, w=W, d=D, v=V, gpo_pe=32, gpo_hidden=32):
        super().__init__()
        self.img_fc = nn.Linear(img_dim, d)
        self.img_mlp1 = nn.Linear(img_dim, d // 2)
        self.img_bn = nn.BatchNorm1d(d // 2)
        self.img_mlp2 = nn.Linear(d // 2, d)
        self.img_gpo = Gpo(gpo_pe, gpo_hidden)
        self.embed = nn.Embedding(v, w)
        self.txt_rnn = nn.GRU(w, d, 1, batch_first=True, bidirectional=True)
        self.txt_gpo = Gpo(gpo_pe, gpo_hidden)
        self.use_max = False

    def image(self, regions):
        b, r, _ = regions.shape
        h = self.img_mlp1(regions)
        h = self.img_bn(h.reshape(b * r, -1)).reshape(b, r, -1)
        f = self.img_fc(regions) + self.img_mlp2(torch.relu(h))
        return l2n(self.img_gpo(f, torch.full((b,), r, dtype=torch.int64)))

    def text(self, words, lengths):
        return l2n(self.txt_gpo(bigru_avg(self.txt_rnn, self.embed(words), lengths), lengths))

    def forward(self, regions, words, lengths):
        s = self.image(regions) @ self.text(words, lengths).t()
        return hinge_max_violation(s) if self.use_max else hinge_sum(s)


# ---------------------------------------------------------------- TERN (models/tern.ir, modules/tern.ir)

class TernLayer(nn.Module):
    """modules/tern.ir tern_layer: nn.TransformerEncoderLayer's maths (post-norm,
    ReLU, LayerNorm eps 1e-5) with dropout after the attention block, after
    the ReLU and after linear2, none on the attention weights (as the .ir).
    Parameter names as PyTorch's layer."""

    def __init__(self, d, heads, ff, p):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(d, ff)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.p = p

    def forward(self, x, pad):
        a = self.self_attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]
        h = self.norm1(x + F.dropout(a, self.p, self.training))
        f = self.linear2(F.dropout(torch.relu(self.linear1(h)), self.p, self.training))
        return self.norm2(h + F.dropout(f, self.p, self.training))


class Tern(nn.Module):
    """models/tern.ir with aggregation "first", spatial = false (its defaults),
    training forward + max-violation hinge: the image [0; P_in X] (P_in only if
    img_dim != d_img) through the visual layers, img_proj, the shared layers;
    the text's token features through cap_proj and the same shared layers with
    a key-padding mask; position 0 of each, l2n_0."""

    def __init__(self, d_img=2048, img_heads=4, img_ff=2048, n_img_layers=4, d=1024, heads=4, ff=2048,
                 n_shared_layers=2, tok_dim=768, img_dim=IMG_DIM, p=0.1):
        super().__init__()
        self.img_in = nn.Linear(img_dim, d_img) if img_dim != d_img else None
        self.img_layers = nn.ModuleList(TernLayer(d_img, img_heads, img_ff, p) for _ in range(n_img_layers))
        self.img_proj = nn.Linear(d_img, d)
        self.cap_proj = nn.Linear(tok_dim, d)
        self.shared = nn.ModuleList(TernLayer(d, heads, ff, p) for _ in range(n_shared_layers))

    def image(self, regions):
        x = regions if self.img_in is None else self.img_in(regions)
        x = torch.cat([x.new_zeros(x.size(0), 1, x.size(2)), x], dim=1)
        for layer in self.img_layers:
            x = layer(x, None)
        h = self.img_proj(x)
        for layer in self.shared:
            h = layer(h, None)
        return l2n(h[:, 0], eps=0.0)

    def text(self, feats, lengths):
        pad = torch.arange(feats.size(1))[None, :] >= lengths[:, None]
        h = self.cap_proj(feats)
        for layer in self.shared:
            h = layer(h, pad)
        return l2n(h[:, 0], eps=0.0)

    def forward(self, regions, feats, lengths):
        return hinge_max_violation(self.image(regions) @ self.text(feats, lengths).t())
