"""PyTorch versions of the models' maths (models/*.ir, shared/docs/models.md).

Only what the benchmarks time: VSE++ encoders and loss, SCAN's encoders, and
the score functions of SCAN t2i/i2t, SGR, SAF and BFAN on an images x
captions tile. Each function names the .ir it follows.
"""
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


def hinge_max_violation(s, margin=0.2):
    """modules/losses.ir hinge, max_violation: sum_i max_c [m + s(i,c) - s(i,i)]+ + sum_c max_i [m + s(i,c) - s(c,c)]+."""
    d = s.diag().view(-1, 1)
    eye = torch.eye(s.size(0), dtype=torch.bool)
    c_s = (margin + s - d).clamp(min=0).masked_fill(eye, 0)
    c_im = (margin + s - d.t()).clamp(min=0).masked_fill(eye, 0)
    return c_s.max(1)[0].sum() + c_im.max(0)[0].sum()


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
