#!/usr/bin/python3
"""PyTorch reference for TERN (tests/test_model_tern.c).

Regenerate with Debian's interpreter (python3-torch 1.13 and numpy; the
fixtures are committed, so this is only needed when the model changes):

    /usr/bin/python3 tests/gen_tern_fixtures.py            # writes tests/fixtures/tern/
    /usr/bin/python3 tests/gen_tern_fixtures.py OUT_DIR    # elsewhere

An independent TERN (models.md §2.5, frozen-encoder variant) at a small size
— models/tern.ir with -D d_img=16 -D img_heads=2 -D img_ff=32 -D n_img_layers=2
-D D=16 -D heads=2 -D ff=32 -D n_shared_layers=2 -D tok_dim=12 -D img_dim=24
-D R=5 -D dropout_p=0 — built from nn.TransformerEncoderLayer (batch_first,
dropout 0, eval mode, src_key_padding_mask), nn.Linear, TERN's l2norm (no
epsilon) and VSEPP's ContrastiveLoss (margin 0.2, max-violation), never from
itrc code. Everything is computed in float64 from float32 parameters and
inputs, so the reference carries no float32 rounding of its own.

Written to OUT:
  P.npy                       each parameter, named as itrc names it, f32
  regions.npy   f32[3, 5, 24] three images
  token_feats.npy f32[4, 6, 12], token_lengths.npy i32[4]   four captions,
                              lengths 6, 3, 1, 4; the padded positions hold
                              noise (the model must ignore them)
  img_emb.npy, cap_emb.npy, sims.npy            aggregation `first`
  img_emb_sum.npy, cap_emb_sum.npy              aggregation `sum`
  train_regions.npy f32[4, 5, 24]              a batch of 4 matched pairs
                              (with the four captions above)
  loss.npy, grad.P.npy        hinge loss of that batch and its gradients
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "tern")

D_IMG, IMG_HEADS, IMG_FF, N_IMG = 16, 2, 32, 2
D, HEADS, FF, N_SHARED = 16, 2, 32, 2
TOK, IMG, R = 12, 24, 5
LENGTHS = [6, 3, 1, 4]
L = max(LENGTHS)

class Tern(nn.Module):
    def __init__(self, aggregation):
        super().__init__()
        self.aggregation = aggregation
        # TERN feeds 2048-d features straight in; the small sizes need a
        # projection (img_dim != d_img), applied before the zero slot.
        self.img_in = nn.Linear(IMG, D_IMG)
        self.img_layers = nn.ModuleList([nn.TransformerEncoderLayer(D_IMG, IMG_HEADS, IMG_FF, dropout=0.0,
                                                                    batch_first=True) for _ in range(N_IMG)])
        self.img_proj = nn.Linear(D_IMG, D)
        self.cap_proj = nn.Linear(TOK, D)
        self.shared = nn.ModuleList([nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
                                     for _ in range(N_SHARED)])

    def aggregate(self, x, pad):
        if self.aggregation == "first":
            return x[:, 0, :]
        return (x * (~pad).unsqueeze(2).to(x.dtype)).sum(dim=1)

    def image(self, regions):
        x = self.img_in(regions)
        x = torch.cat([torch.zeros(x.shape[0], 1, D_IMG, dtype=x.dtype), x], dim=1)
        pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        for layer in self.img_layers:
            x = layer(x, src_key_padding_mask=pad)
        x = self.img_proj(x)
        for layer in self.shared:
            x = layer(x, src_key_padding_mask=pad)
        v = self.aggregate(x, pad)
        return v / v.norm(dim=1, keepdim=True)

    def text(self, feats, lengths):
        pad = torch.arange(feats.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
        x = self.cap_proj(feats)
        for layer in self.shared:
            x = layer(x, src_key_padding_mask=pad)
        u = self.aggregate(x, pad)
        return u / u.norm(dim=1, keepdim=True)

def hinge_max(s, margin=0.2):
    d = s.diag().view(-1, 1)
    cost_s = (margin + s - d).clamp(min=0)
    cost_im = (margin + s - d.t()).clamp(min=0)
    eye = torch.eye(s.shape[0], dtype=torch.bool)
    cost_s = cost_s.masked_fill(eye, 0)
    cost_im = cost_im.masked_fill(eye, 0)
    return cost_s.max(1)[0].sum() + cost_im.max(0)[0].sum()

def save(name, a):
    np.save(os.path.join(OUT, name + ".npy"), a)

def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    g = np.random.default_rng(7)
    model = Tern("first")
    # Non-trivial LayerNorm affine parameters and biases, so that every
    # parameter's role is exercised (PyTorch initialises them to 1 and 0).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.copy_(torch.from_numpy(g.normal(0, 0.3, p.shape).astype(np.float32)) + ("weight" in n))
    params = {}
    for n, p in model.named_parameters():
        # nn.ModuleList indices become part of the layer name in itrc.
        name = n.replace("img_layers.", "img_layer").replace("shared.", "shared")
        params[name] = p.detach().numpy().astype(np.float32)
        save(name, params[name])
    model = model.double()
    regions = g.normal(0, 1, (3, R, IMG)).astype(np.float32)
    feats = g.normal(0, 1, (4, L, TOK)).astype(np.float32)
    lengths = np.array(LENGTHS, dtype=np.int32)
    train_regions = g.normal(0, 1, (4, R, IMG)).astype(np.float32)
    save("regions", regions)
    save("token_feats", feats)
    save("token_lengths", lengths)
    save("train_regions", train_regions)
    t = lambda a: torch.from_numpy(a.astype(np.float64))
    tl = torch.from_numpy(lengths.astype(np.int64))
    with torch.no_grad():
        model.eval()
        for agg, tag in (("first", ""), ("sum", "_sum")):
            model.aggregation = agg
            v = model.image(t(regions))
            u = model.text(t(feats), tl)
            save("img_emb" + tag, v.numpy().astype(np.float32))
            save("cap_emb" + tag, u.numpy().astype(np.float32))
            if agg == "first":
                save("sims", (v @ u.t()).numpy().astype(np.float32))
    # The loss as the train entry computes it (dropout 0: train mode is eval).
    model.aggregation = "first"
    model.train()
    s = model.image(t(train_regions)) @ model.text(t(feats), tl).t()
    loss = hinge_max(s)
    loss.backward()
    save("loss", np.array(loss.item(), dtype=np.float32))
    for n, p in model.named_parameters():
        name = n.replace("img_layers.", "img_layer").replace("shared.", "shared")
        save("grad." + name, p.grad.numpy().astype(np.float32))
    print("loss %.9g, %d parameters, wrote %s" % (loss.item(), len(params), OUT))

if __name__ == "__main__":
    main()
