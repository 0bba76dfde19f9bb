#!/usr/bin/python3
"""PyTorch reference for SCAN (tests/test_model_scan.c).

Regenerate with Debian's interpreter (python3-torch, numpy); the fixtures are
committed, so this is only needed when the model changes:

    /usr/bin/python3 tests/gen_scan_fixtures.py            # tests/fixtures/scan/
    /usr/bin/python3 tests/gen_scan_fixtures.py OUT_DIR

An independent transcription of the SCAN repository's math (models.md §2.2:
EncoderImagePrecomp, EncoderText with bi_gru, func_attention,
xattn_score_t2i / xattn_score_i2t, ContrastiveLoss with max_violation) at a
small size — models/scan_{t2i,i2t}.ir with -D D=16 -D W=8 -D V=30
-D img_dim=24 -D R=5 -D gru_init=0.25 — looping over the captions truncated
to their valid length as the original does, never from itrc code. Written:

  regions.npy f32[4, R, 24], words.npy i32[4, L], lengths.npy i32[4]
  P.npy                    starting value of every parameter P, itrc names
  VAR.sims.npy             f32[3, 4]: the first 3 images x the 4 captions
  VAR.loss.npy             hinge (margin 0.2, max violation) on the 4 pairs
  VAR.grad.P.npy           its gradient for every parameter
with VAR one of t2i_lse, t2i_mean, i2t_lse, i2t_mean (README settings:
t-i λ_softmax 9, λ_lse 6; i-t λ_softmax 4, λ_lse 5), raw_feature_norm
clipped_l2norm. All float32, deterministic.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixturegen import fresh_dir, hinge

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "scan")

D, W, V, IMG, R = 16, 8, 30, 24, 5
B, L = 4, 6
N_SCORE = 3
LENGTHS = [5, 3, 6, 2]          # unsorted, one full, one of two tokens
VARIANTS = {
    "t2i_lse": ("t2i", "LogSumExp", 9.0, 6.0),
    "t2i_mean": ("t2i", "Mean", 9.0, 6.0),
    "i2t_lse": ("i2t", "LogSumExp", 4.0, 5.0),
    "i2t_mean": ("i2t", "Mean", 4.0, 5.0),
}
NAMES = {
    "img_fc.weight": "img_fc.weight",
    "img_fc.bias": "img_fc.bias",
    "embed.weight": "embed.weight",
    "rnn.weight_ih_l0": "rnn.fwd.w_ih",
    "rnn.weight_hh_l0": "rnn.fwd.w_hh",
    "rnn.bias_ih_l0": "rnn.fwd.b_ih",
    "rnn.bias_hh_l0": "rnn.fwd.b_hh",
    "rnn.weight_ih_l0_reverse": "rnn.bwd.w_ih",
    "rnn.weight_hh_l0_reverse": "rnn.bwd.w_hh",
    "rnn.bias_ih_l0_reverse": "rnn.bwd.b_ih",
    "rnn.bias_hh_l0_reverse": "rnn.bwd.b_hh",
}


def l2norm(x, dim, eps=1e-8):
    """SCAN model.py l2norm."""
    norm = torch.pow(x, 2).sum(dim=dim, keepdim=True).sqrt() + eps
    return torch.div(x, norm)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """SCAN model.py cosine_similarity, without the trailing .squeeze() (the
    quirk that breaks 1-image blocks, models.md §2.2)."""
    w12 = torch.sum(x1 * x2, dim)
    w1 = torch.norm(x1, 2, dim)
    w2 = torch.norm(x2, 2, dim)
    return w12 / (w1 * w2).clamp(min=eps)


def func_attention(query, context, smooth):
    """SCAN model.py func_attention, raw_feature_norm = clipped_l2norm."""
    batch_size, query_l = query.size(0), query.size(1)
    source_l = context.size(1)
    attn = torch.bmm(context, torch.transpose(query, 1, 2))       # (n, sourceL, queryL)
    attn = nn.LeakyReLU(0.1)(attn)
    attn = l2norm(attn, 2)
    attn = torch.transpose(attn, 1, 2).contiguous()               # (n, queryL, sourceL)
    attn = attn.view(batch_size * query_l, source_l)
    attn = nn.Softmax(dim=1)(attn * smooth)
    attn = attn.view(batch_size, query_l, source_l)
    attn_t = torch.transpose(attn, 1, 2).contiguous()
    weighted = torch.bmm(torch.transpose(context, 1, 2), attn_t)  # (n, d, queryL)
    return torch.transpose(weighted, 1, 2)


def aggregate(row_sim, agg, lambda_lse):
    if agg == "LogSumExp":
        row_sim = row_sim.mul(lambda_lse).exp()
        return torch.log(row_sim.sum(dim=1, keepdim=True)) / lambda_lse
    return row_sim.mean(dim=1, keepdim=True)


def xattn_score(images, captions, cap_lens, direction, agg, lambda_softmax, lambda_lse):
    sims = []
    n_image = images.size(0)
    for i in range(captions.size(0)):
        n_word = int(cap_lens[i])
        cap_i = captions[i, :n_word, :].unsqueeze(0).contiguous()
        cap_i_expand = cap_i.repeat(n_image, 1, 1)
        if direction == "t2i":
            wei = func_attention(cap_i_expand, images, lambda_softmax)
            row_sim = cosine_similarity(cap_i_expand, wei, dim=2)
        else:
            wei = func_attention(images, cap_i_expand, lambda_softmax)
            row_sim = cosine_similarity(images, wei, dim=2)
        sims.append(aggregate(row_sim, agg, lambda_lse))
    return torch.cat(sims, 1)


class SCAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_fc = nn.Linear(IMG, D)
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, 1, batch_first=True, bidirectional=True)

    def encode_image(self, regions):
        return l2norm(self.img_fc(regions), dim=-1)

    def encode_text(self, words, lengths):
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=words.size(1))
        out = (out[:, :, :D] + out[:, :, D:]) / 2
        return l2norm(out, dim=-1)


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), arr)


def main():
    fresh_dir(OUT)
    gen = torch.Generator().manual_seed(20240613)
    ref = SCAN()
    start = {}
    for theirs, p in ref.named_parameters():
        bound = {"img_fc.weight": 0.4, "img_fc.bias": 0.2, "embed.weight": 0.1}.get(theirs, 0.25)
        start[NAMES[theirs]] = ((torch.rand(p.shape, generator=gen) * 2 - 1) * bound).numpy().astype(np.float32)
    regions = torch.randn(B, R, IMG, generator=gen).numpy().astype(np.float32)
    words = np.zeros((B, L), dtype=np.int32)
    for b, n in enumerate(LENGTHS):
        words[b, :n] = torch.randint(1, V, (n,), generator=gen).numpy()
    lengths = np.array(LENGTHS, dtype=np.int32)
    save("regions", regions)
    save("words", words)
    save("lengths", lengths)
    for name, arr in start.items():
        save(name, arr)

    for var, (direction, agg, lsm, llse) in VARIANTS.items():
        m = SCAN()
        with torch.no_grad():
            for theirs, p in m.named_parameters():
                p.copy_(torch.from_numpy(start[NAMES[theirs]]))
        img = m.encode_image(torch.from_numpy(regions))
        cap = m.encode_text(torch.from_numpy(words).long(), torch.from_numpy(lengths).long())
        with torch.no_grad():
            sims = xattn_score(img[:N_SCORE], cap, lengths, direction, agg, lsm, llse)
        save(var + ".sims", sims.numpy().astype(np.float32))
        loss = hinge(xattn_score(img, cap, lengths, direction, agg, lsm, llse))
        loss.backward()
        save(var + ".loss", np.array(loss.item(), dtype=np.float32))
        gmax = 0.0
        for theirs, p in m.named_parameters():
            assert torch.isfinite(p.grad).all(), (var, theirs)
            gmax = max(gmax, p.grad.abs().max().item())
            save(f"{var}.grad.{NAMES[theirs]}", p.grad.numpy().astype(np.float32))
        print(f"{var}: loss {loss.item():.7g}, max |grad| {gmax:.4g}, sims\n{sims.numpy()}")

    files = sorted(f for f in os.listdir(OUT) if f.endswith(".npy"))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in files)
    print(f"{len(files)} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
