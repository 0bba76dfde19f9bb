#!/usr/bin/python3
"""PyTorch reference for BFAN's focal attention model (tests/test_model_focal.c).

Regenerate with Debian's interpreter (python3-torch, numpy); the fixtures are
committed, so this is only needed when the model changes:

    /usr/bin/python3 tests/gen_focal_fixtures.py           # tests/fixtures/focal/
    /usr/bin/python3 tests/gen_focal_fixtures.py OUT_DIR

An independent transcription of BFAN's model.py (Liu et al. 2019; models.md
§2.9 `AttnBFAN`, whose `equal_attention` / `prob_attention` are the same
functions) on SCAN's encoders (§2.2): EncoderImagePrecomp (Linear, l2n_e),
EncoderText (nn.Embedding, packed bidirectional nn.GRU averaged, per-word
l2n_e), func_attention in the text-to-image direction (clipped_l2norm over the
words, softmax over the regions with λ = 20, the keep mask H of focal_equal
or focal_prob, α' = Hα / ΣHα), SCAN's cosine_similarity per word, the mean
over the words, and the max-violation hinge (margin 0.2, summed). It loops
over the captions truncated to their valid length as the original does and
is never derived from itrc code. The model has no dropout and no BatchNorm:
its training step is the eval forward plus backward.

Where the original and models/bfan.ir differ, the reference follows the
original except for the one difference bfan.ir documents: BFAN scores a pair
with the sum of its t2i and i2t focal scores, and bfan.ir is the t2i half, so
only the t2i half is transcribed here. The original divides 0 by 0 when no
region of a word is strictly above its threshold (every α equal), where
bfan.ir keeps every region; the fixture data never reach that case (the
generator checks that every keep decision is clear of its threshold, so that
float32 rounding cannot flip it either).

Sizes: models/bfan.ir with -D D=16 -D W=8 -D V=30 -D img_dim=24 -D R=5;
4 captions of lengths 4, 6, 2, 3 (L = 6). Written to OUT:
  regions.npy f32[3, 5, 24], words.npy i32[4, 6], lengths.npy i32[4]
  P.npy                            every parameter P under its itrc name
  sims_equal.npy, sims_prob.npy    f32[3, 4] scores (agg mean, the default)
  sims_equal_lse.npy               -D agg=lse (SCAN's LogSumExp, λ_lse 6)
  train_regions.npy f32[4, 5, 24]  the images of a batch of 4 matched pairs
                                   (image k, caption k)
  train_loss_F.npy, grad_F.P.npy   for F in equal, prob: the training loss on
                                   that batch and its gradient for every P
all computed in float64 from the float32 parameters, then rounded.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixturegen import bigru_name, hinge, padded_batch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "focal")

D, W, V, IMG, R = 16, 8, 30, 24, 5
N_IMG, LENGTHS = 3, [4, 6, 2, 3]
L = max(LENGTHS)
LAMBDA_SOFTMAX, LAMBDA_LSE = 20.0, 6.0

# The smallest |F| over every keep decision taken (F > 0 keeps a region).
closest = [float("inf")]


def l2norm(x, dim, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def cosine_similarity(x1, x2, dim, eps=1e-8):
    w12 = (x1 * x2).sum(dim)
    return w12 / (torch.norm(x1, 2, dim) * torch.norm(x2, 2, dim)).clamp(min=eps)


def focal_equal(attn, source_len):
    """H = [α_i · n − Σ_k α_k > 0] over the last (context) axis."""
    f = attn * source_len - attn.sum(dim=-1, keepdim=True)
    closest[0] = min(closest[0], f.abs().min().item())
    return torch.where(f > 0, torch.ones_like(attn), torch.zeros_like(attn))


def focal_prob(attn, source_len):
    """H = [Σ_k (α_i − α_k) √α_k > 0], as the original's bmm form."""
    xi = attn.unsqueeze(-1)                 # (.., n, 1)
    xj = attn.unsqueeze(-2)                 # (.., 1, n)
    g = torch.sqrt(xj)
    f = (xi * g - xj * g).sum(dim=-1)
    closest[0] = min(closest[0], f.abs().min().item())
    return torch.where(f > 0, torch.ones_like(attn), torch.zeros_like(attn))


def func_attention(query, context, focal):
    """query (n, queryL, d) words, context (n, sourceL, d) regions -> (n, queryL, d)."""
    source_len = context.size(1)
    attn = torch.bmm(context, query.transpose(1, 2))          # (n, R, ℓ)
    attn = l2norm(nn.functional.leaky_relu(attn, 0.1), 2)     # across the words
    attn = torch.softmax(attn.transpose(1, 2) * LAMBDA_SOFTMAX, dim=2)  # (n, ℓ, R), over regions
    h = focal_equal(attn, source_len) if focal == "equal" else focal_prob(attn, source_len)
    tmp = h * attn
    re_attn = tmp / tmp.sum(dim=-1, keepdim=True)
    return torch.bmm(re_attn, context)                        # (n, ℓ, d)


def xattn_score_t2i(images, captions, cap_lens, focal, agg):
    n_image = images.size(0)
    cols = []
    for i, n in enumerate(cap_lens):
        cap_i = captions[i, :n, :].unsqueeze(0).repeat(n_image, 1, 1)
        wctx = func_attention(cap_i, images, focal)
        row = cosine_similarity(cap_i, wctx, dim=2)          # (n_image, ℓ)
        if agg == "mean":
            cols.append(row.mean(dim=1, keepdim=True))
        else:
            cols.append(torch.log(torch.exp(row * LAMBDA_LSE).sum(dim=1, keepdim=True)) / LAMBDA_LSE)
    return torch.cat(cols, 1)


class BFAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_fc = nn.Linear(IMG, D)
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, batch_first=True, bidirectional=True)

    def encode_image(self, regions):
        return l2norm(self.img_fc(regions), -1)

    def encode_text(self, words, lengths):
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        return l2norm((out[:, :, :D] + out[:, :, D:]) / 2, -1)

    def forward(self, regions, words, lengths, focal, agg="mean"):
        return xattn_score_t2i(self.encode_image(regions), self.encode_text(words, lengths),
                               lengths.tolist(), focal, agg)


def itrc_name(name):
    return bigru_name(name, "rnn")


def save(name, a):
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, name + ".npy"), a)


def main():
    gen = torch.Generator().manual_seed(5)
    regions, words, lengths = padded_batch(gen, N_IMG, R, IMG, V, LENGTHS)
    train_regions = torch.randn(len(LENGTHS), R, IMG, generator=gen)
    save("regions", regions.numpy().astype(np.float32))
    save("words", words.numpy().astype(np.int32))
    save("lengths", lengths.numpy().astype(np.int32))
    save("train_regions", train_regions.numpy().astype(np.float32))

    model = BFAN()
    with torch.no_grad():
        for name, t in model.named_parameters():
            scale = 0.3 if name.startswith("rnn") or name.startswith("embed") else 0.5
            t.copy_(torch.randn(t.shape, generator=gen) * scale)
    for name, t in model.named_parameters():
        save(itrc_name(name), t.detach().numpy().astype(np.float32))
    m64 = BFAN().double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})

    with torch.no_grad():
        for focal, agg, tag in (("equal", "mean", "equal"), ("prob", "mean", "prob"), ("equal", "lse", "equal_lse")):
            sims = m64(regions.double(), words, lengths, focal, agg)
            print("sims", tag, "\n", sims.numpy())
            save("sims_" + tag, sims.numpy().astype(np.float32))
    for focal in ("equal", "prob"):
        m64.zero_grad()
        loss = hinge(m64(train_regions.double(), words, lengths, focal))
        loss.backward()
        print("train loss", focal, "%.9g" % loss.item())
        save("train_loss_" + focal, np.float32(loss.item()).reshape(()))
        for name, t in m64.named_parameters():
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            assert torch.isfinite(g).all(), name
            save("grad_%s.%s" % (focal, itrc_name(name)), g.numpy().astype(np.float32))
    print("closest keep decision: |F| = %.3g" % closest[0])
    # F is a difference of terms near 1, so float32 computes it to a few 1e-7.
    assert closest[0] > 2e-6, "a keep decision is too close to its threshold for float32"


if __name__ == "__main__":
    main()
