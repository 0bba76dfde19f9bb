#!/usr/bin/env python3
"""PyTorch reference for HREM (tests/test_model_hrem.c).

Regenerate with an interpreter that has torch and numpy (the project's
bench/.venv; the fixtures are committed, so this is only needed when the
model changes):

    bench/.venv/bin/python tests/gen_hrem_fixtures.py            # writes tests/fixtures/hrem/
    bench/.venv/bin/python tests/gen_hrem_fixtures.py OUT_DIR    # elsewhere

An independent HREM (models.md §2.7 and the distance-weighted triplet of
§3.3), written from the equations with torch's own layers and functions —
nn.TransformerEncoderLayer (dropout 0, src_key_padding_mask, a float
src_mask with -inf for the instance level), nn.Linear, F.normalize,
torch.cdist, torch.topk, F.kl_div — never from itrc code, at the size of
models/hrem.ir with -D D=16 -D heads=2 -D ff=16 -D img_dim=24 -D tok_dim=12
-D R=12 -D dropout_p=0 -D warmup_epochs=1 -D uniforms_input=true.
Everything is computed in float64 from float32 parameters and inputs.

The triplet loss draws its negatives by inverse CDF from the given
uniforms trip_u[k, dir] (k: the four losses V·U, V·Û, V̂·U, V̂·Û; dir: the
image-anchor and caption-anchor directions), which is how the IR samples;
the script checks that every draw is far from a CDF boundary, so float32
rounding cannot change which negative is drawn.

Written to OUT:
  P.npy                          each parameter, named as itrc names it, f32
                                 (img_bn.running_* for the inference entries)
  regions.npy f32[3, 12, 24]     three images
  token_feats.npy f32[4, 12, 12], token_lengths.npy i32[4]
                                 four captions of lengths 6, 3, 12, 10; noise
                                 in the padded slots (the fragment level must
                                 ignore it; the statistics read it for the
                                 captions shorter than 10, the quirk)
  img_emb.npy, cap_emb.npy, sims.npy      inference (BN running statistics)
  train_regions.npy f32[4, 12, 24]        a batch of 4 pairs with the four
                                 captions; pairs 0 and 2 share one image
  trip_u.npy f32[4, 2, 4, 4]     the uniforms of the draws
  loss_warmup.npy                the loss at epoch 0 (base triplet only)
  loss.npy, grad.P.npy           the full loss at epoch 1 and its gradients
  reg.npy                        the KL regulariser inside it (for reports)
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixturegen import fresh_dir  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "hrem")

D, HEADS, FF, IMG, TOK, R = 16, 2, 16, 24, 12, 12
LENGTHS = [6, 3, 12, 10]
L = max(LENGTHS)
RHO, K = 0.8, 2
MASK_WEIGHT, THRESHOLD, SIGMA, REG_WEIGHT = 1.0, 0.5, 1.0, 10.0
MARGIN, TRIP_N, CUTOFF, TAU = 0.2, 512.0, 0.5, 1.7


def pad_mask(lengths, n):
    return torch.arange(n).unsqueeze(0) >= lengths.unsqueeze(1)


class Fragment(nn.Module):
    """v = l2n_e(ρ·maxk(f) + (1−ρ)·mean_valid(TEL(f)))."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)

    def forward(self, f, lengths):
        rows = []
        for b in range(f.shape[0]):
            n = int(lengths[b])
            k = min(K, n)
            rows.append(f[b, :n].topk(k, dim=0).values.mean(dim=0))
        r = torch.stack(rows)
        t = self.layer(f, src_key_padding_mask=pad_mask(lengths, f.shape[1]))
        a = torch.stack([t[b, :int(lengths[b])].mean(dim=0) for b in range(f.shape[0])])
        x = RHO * r + (1 - RHO) * a
        return x / (x.norm(dim=1, keepdim=True) + 1e-8)


class Hrem(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_fc = nn.Linear(IMG, D)
        self.img_mlp1 = nn.Linear(IMG, D // 2)
        self.img_bn = nn.BatchNorm1d(D // 2)
        self.img_mlp2 = nn.Linear(D // 2, D)
        self.img_frag = Fragment()
        self.txt_fc = nn.Linear(TOK, D)
        self.txt_frag = Fragment()
        self.rel_t2i = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))
        self.rel_i2t = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))
        self.inst_layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)

    def image_features(self, x, training):
        h = self.img_mlp1(x)
        if training:   # batch statistics over every region row, biased variance
            rows = h.reshape(-1, h.shape[-1])
            mu = rows.mean(dim=0)
            var = ((rows - mu) ** 2).mean(dim=0)
        else:
            mu, var = self.img_bn.running_mean, self.img_bn.running_var
        h = (h - mu) / torch.sqrt(var + 1e-5) * self.img_bn.weight + self.img_bn.bias
        return self.img_fc(x) + self.img_mlp2(torch.relu(h))

    def image(self, x, training):
        f = self.image_features(x, training)
        return self.img_frag(f, torch.full((x.shape[0],), x.shape[1], dtype=torch.long)), f

    def text(self, feats, lengths):
        f = self.txt_fc(feats)
        return self.txt_frag(f, lengths), f


def stats(f_img, f_txt, lengths):
    """Region-word statistics, §2.7 step 2, caption by caption and image by image."""
    fi = F.normalize(f_img.detach(), dim=-1)
    ft = F.normalize(f_txt.detach(), dim=-1)
    nc, ni = ft.shape[0], fi.shape[0]
    m_t2i = torch.zeros(nc, ni, dtype=fi.dtype)
    top_t2i = torch.zeros(nc, ni, 10, dtype=fi.dtype)
    m_i2t = torch.zeros(ni, nc, dtype=fi.dtype)
    top_i2t = torch.zeros(ni, nc, 10, dtype=fi.dtype)
    for c in range(nc):
        n = int(lengths[c])
        w = max(n, 10)
        for i in range(ni):
            p = F.leaky_relu(ft[c, :w] @ fi[i].t(), 0.1)            # [w, R]
            row = F.normalize(p, dim=0).max(dim=1).values           # across words, max over regions
            m_t2i[c, i] = row[:n].mean()
            top_t2i[c, i] = row.topk(10).values
            col = F.normalize(p, dim=1)[:n].max(dim=0).values       # across regions, max over valid words
            m_i2t[i, c] = col.mean()
            top_i2t[i, c] = col.topk(10).values
    return m_t2i, top_t2i, m_i2t, top_i2t


def conn_mask(s):
    k = int(s.shape[1] * THRESHOLD)
    kth = s.detach().topk(k, dim=1).values[:, -1:]
    return s.detach() >= kth


def instance(model, v, u, f_img, f_txt, lengths):
    m_t2i, top_t2i, m_i2t, top_i2t = stats(f_img, f_txt, lengths)
    rel_t2i = model.rel_t2i(top_t2i).squeeze(2) + m_t2i
    rel_i2t = model.rel_i2t(top_i2t).squeeze(2) + m_i2t
    mode = "donot_use_mm_for_euclid_dist"
    rel_vv = torch.exp(-torch.cdist(v, v, compute_mode=mode) / SIGMA)
    rel_tt = torch.exp(-torch.cdist(u, u, compute_mode=mode) / SIGMA)
    target = torch.exp(-torch.cdist(v, u, compute_mode=mode) / SIGMA).detach()
    reg = F.kl_div(F.log_softmax(target, dim=1), F.softmax(rel_i2t, dim=1), reduction="batchmean") + \
        F.kl_div(F.log_softmax(target.t(), dim=1), F.softmax(rel_t2i, dim=1), reduction="batchmean")
    mask = torch.cat([torch.cat([conn_mask(v @ v.t()), conn_mask(m_i2t)], dim=1),
                      torch.cat([conn_mask(m_t2i), conn_mask(u @ u.t())], dim=1)], dim=0)
    rel = torch.cat([torch.cat([rel_vv, rel_i2t], dim=1), torch.cat([rel_t2i, rel_tt], dim=1)], dim=0)
    bias = (MASK_WEIGHT * rel).masked_fill(~mask, float("-inf"))
    z = torch.cat([v, u], dim=0).unsqueeze(0)
    h = model.inst_layer(z, src_mask=bias).squeeze(0)
    h = F.normalize(h, dim=-1)
    b = v.shape[0]
    return h[:b], h[b:], reg


MIN_GAP = [1.0]   # smallest distance of a draw to a CDF boundary, over all draws


def trip_rows(s, pos, u):
    """One direction of the distance-weighted triplet (§3.3), anchors on rows."""
    x = s.detach()
    neg = ~pos
    dist = (2 - 2 * x).sqrt().clamp(min=CUTOFF)
    logw = (2.0 - TRIP_N) * dist.log() - ((TRIP_N - 3) / 2) * (1.0 - 0.25 * dist * dist).log()
    bad = torch.isinf(logw) | torch.isnan(logw)
    logw = logw * neg
    logw[bad] = 0.0
    w = torch.exp(logw - logw.max(dim=1, keepdim=True).values)
    w = w * (neg & (dist < TAU))
    w = w / (w.sum(dim=1, keepdim=True) + 1e-20)
    for a in range(s.shape[0]):
        if pos[a].any() and w[a].sum() == 0:
            return s.sum() * 0.0           # torch.multinomial would raise
    loss = s.sum() * 0.0
    for a in range(s.shape[0]):
        cdf = w[a].cumsum(0)
        for p in range(s.shape[1]):
            if not pos[a, p]:
                continue
            t = u[a, p] * cdf[-1]
            n = int(torch.searchsorted(cdf, t.reshape(1), right=True))
            MIN_GAP[0] = min(MIN_GAP[0], float((cdf - t).abs().min()))
            loss = loss + torch.relu(MARGIN + s[a, n] - s[a, p])
    return loss


def trip(v, u, pos, uu):
    s = v @ u.t()
    return trip_rows(s, pos, uu[0]) + trip_rows(s.t(), pos.t(), uu[1])


def criterion(model, regions, feats, lengths, trip_u, use_inst):
    v, f_img = model.image(regions, True)
    u, f_txt = model.text(feats, lengths)
    flat = regions.reshape(regions.shape[0], -1)
    pos = (flat.unsqueeze(1) == flat.unsqueeze(0)).all(dim=2)    # the same image
    loss = trip(v, u, pos, trip_u[0])
    reg = torch.zeros((), dtype=v.dtype)
    if use_inst:
        vh, uh, reg = instance(model, v, u, f_img, f_txt, lengths)
        loss = loss + trip(v, uh, pos, trip_u[1]) + trip(vh, u, pos, trip_u[2]) + trip(vh, uh, pos, trip_u[3])
        loss = loss + REG_WEIGHT * reg
    return loss, reg


def itrc_name(n):
    for a, b in (("rel_t2i.0.", "inst.rel_t2i.fc1."), ("rel_t2i.2.", "inst.rel_t2i.fc2."),
                 ("rel_i2t.0.", "inst.rel_i2t.fc1."), ("rel_i2t.2.", "inst.rel_i2t.fc2."),
                 ("inst_layer.", "inst.layer.")):
        if n.startswith(a):
            return b + n[len(a):]
    return n


def save(name, a):
    np.save(os.path.join(OUT, name + ".npy"), a)


def main():
    fresh_dir(OUT)
    torch.manual_seed(3)
    g = np.random.default_rng(13)
    model = Hrem()
    # Non-trivial norms, biases and BN statistics so that every parameter's
    # role is exercised (PyTorch initialises them to 1 and 0).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or "bn" in n or n.endswith("bias"):
                p.copy_(torch.from_numpy(g.normal(0, 0.3, p.shape).astype(np.float32)) + ("weight" in n))
        model.img_bn.running_mean.copy_(torch.from_numpy(g.normal(0, 0.5, D // 2).astype(np.float32)))
        model.img_bn.running_var.copy_(torch.from_numpy(g.uniform(0.5, 2.0, D // 2).astype(np.float32)))
    names = []
    for n, p in model.named_parameters():
        names.append(n)
        save(itrc_name(n), p.detach().numpy().astype(np.float32))
    for b in ("running_mean", "running_var"):
        save("img_bn." + b, getattr(model.img_bn, b).numpy().astype(np.float32))
    model = model.double()
    model.train()   # dropout 0; train mode keeps PyTorch off its fused inference path

    regions = g.normal(0, 1, (3, R, IMG)).astype(np.float32)
    feats = g.normal(0, 1, (4, L, TOK)).astype(np.float32)
    lengths = np.array(LENGTHS, dtype=np.int32)
    train_regions = g.normal(0, 1, (4, R, IMG)).astype(np.float32)
    train_regions[2] = train_regions[0]
    trip_u = g.uniform(0.05, 0.95, (4, 2, 4, 4)).astype(np.float32)
    for name, a in (("regions", regions), ("token_feats", feats), ("token_lengths", lengths),
                    ("train_regions", train_regions), ("trip_u", trip_u)):
        save(name, a)
    t = lambda a: torch.from_numpy(a.astype(np.float64))
    tl = torch.from_numpy(lengths.astype(np.int64))

    with torch.no_grad():
        v, _ = model.image(t(regions), False)
        u, _ = model.text(t(feats), tl)
        save("img_emb", v.numpy().astype(np.float32))
        save("cap_emb", u.numpy().astype(np.float32))
        save("sims", (v @ u.t()).numpy().astype(np.float32))
        lw, _ = criterion(model, t(train_regions), t(feats), tl, t(trip_u), False)
        save("loss_warmup", np.array(lw.item(), dtype=np.float32))

    loss, reg = criterion(model, t(train_regions), t(feats), tl, t(trip_u), True)
    loss.backward()
    save("loss", np.array(loss.item(), dtype=np.float32))
    save("reg", np.array(reg.item(), dtype=np.float32))
    nonzero = 0
    for n, p in model.named_parameters():
        gr = p.grad.numpy()
        assert np.all(np.isfinite(gr)), n
        nonzero += int(np.any(gr != 0))
        save("grad." + itrc_name(n), gr.astype(np.float32))
    # A draw within 1e-4 of a CDF boundary could go the other way in float32.
    assert MIN_GAP[0] > 1e-4, "a draw is too close to a CDF boundary: %g" % MIN_GAP[0]
    assert loss.item() > lw.item() > 0, (loss.item(), lw.item())
    print("loss %.9g (warm-up %.9g, reg %.6g), %d parameters (%d with a nonzero gradient), "
          "closest draw %.3g from a boundary; wrote %s"
          % (loss.item(), lw.item(), reg.item(), len(names), nonzero, MIN_GAP[0], OUT))


if __name__ == "__main__":
    main()
