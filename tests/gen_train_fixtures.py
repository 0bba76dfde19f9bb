#!/usr/bin/python3
"""PyTorch reference for VSE++ training (tests/test_train_vsepp.c).

Regenerate (Debian's interpreter, which has python3-torch and numpy; the
fixtures are committed, so this is only needed when the model or the
optimizers change):

    /usr/bin/python3 tests/gen_train_fixtures.py            # writes tests/fixtures/train/
    /usr/bin/python3 tests/gen_train_fixtures.py OUT_DIR    # elsewhere

An independent PyTorch VSE++ (models.md §2.1) at a small size — models/vsepp.ir
with -D D=16 -D W=8 -D V=30 -D img_dim=24 -D R=3 — built from nn.Linear,
nn.Embedding and nn.GRU over pack_padded_sequence, VSEPP's own l2norm (no
epsilon) and its ContrastiveLoss (margin 0.2, max_violation), never from
itrc code. Written to OUT:

  regions.npy f32[B, R, 24], words.npy i32[B, L], lengths.npy i32[B]
  P.npy                 the starting value of each parameter P, named as
                        itrc names it (img_fc.weight, rnn.w_ih, ...), f32
  loss.npy, grad.P.npy  loss and gradients computed in float32
  loss64.npy, grad64.P.npy
                        the same float32 values computed in float64
  OPT1.P.npy            P after one optimizer step, float32
  OPT1_64.P.npy, OPT2_64.P.npy
                        P after one and after two steps (the same batch
                        twice), computed in float64

with OPT one of (hyper-parameters also hard-coded in the test):
  adam   torch.optim.Adam(lr=2e-4), default betas (0.9, 0.999), eps 1e-8
  adamw  torch.optim.AdamW(lr=1e-3, weight_decay=0.01)
  sgd    torch.optim.SGD(lr=0.05, momentum=0.9)
each step preceded by clip_grad_norm_(params, 2.0), as VSEPP's train.py does.
The batch is chosen so that the gradient norm exceeds 2 (the clipping acts:
printed below). The output is deterministic (fixed seeds).
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

from fixturegen import fresh_dir, hinge
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "train")

D, W, V, IMG = 16, 8, 30, 24
B, L, R = 4, 6, 3
LENGTHS = [4, 6, 1, 3]          # unsorted, with the full length and a single word
CLIP = 2.0
OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=2e-4),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
}
# PyTorch name -> itrc name
NAMES = {
    "img_fc.weight": "img_fc.weight",
    "img_fc.bias": "img_fc.bias",
    "embed.weight": "embed.weight",
    "rnn.weight_ih_l0": "rnn.w_ih",
    "rnn.weight_hh_l0": "rnn.w_hh",
    "rnn.bias_ih_l0": "rnn.b_ih",
    "rnn.bias_hh_l0": "rnn.b_hh",
}


def l2norm(x):
    """VSEPP's l2norm: x / ||x||, no epsilon (models.md §0.3 l2n_0)."""
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


class VSEPP(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_fc = nn.Linear(IMG, D)
        self.embed = nn.Embedding(V, W)
        self.rnn = nn.GRU(W, D, batch_first=True)

    def forward(self, regions, words, lengths):
        # The region layout's image input: mean over regions (models.md §2.1).
        img = l2norm(self.img_fc(regions.mean(1)))
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        # VSEPP's EncoderText: the output at the last valid token.
        idx = (lengths - 1).view(-1, 1, 1).expand(out.size(0), 1, D)
        cap = l2norm(torch.gather(out, 1, idx).squeeze(1))
        return img, cap


def contrastive_loss(im, s, margin=0.2, max_violation=True):
    """VSEPP model.py ContrastiveLoss with the cosine (dot) similarity."""
    return hinge(im.mm(s.t()), margin, max_violation)


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), arr)


def build(start, dtype):
    m = VSEPP().to(dtype)
    with torch.no_grad():
        for theirs, p in m.named_parameters():
            p.copy_(torch.from_numpy(start[NAMES[theirs]]).to(dtype))
    return m


def loss_of(m, batch, dtype):
    regions, words, lengths = batch
    img, cap = m(torch.from_numpy(regions).to(dtype), torch.from_numpy(words).long(),
                 torch.from_numpy(lengths).long())
    return contrastive_loss(img, cap)


def main():
    fresh_dir(OUT)

    gen = torch.Generator().manual_seed(20240612)
    start = {}
    # Starting weights at the scale of PyTorch's own initialisation.
    ref = VSEPP()
    for theirs, p in ref.named_parameters():
        bound = {"img_fc.weight": 0.4, "img_fc.bias": 0.2, "embed.weight": 0.1}.get(theirs, 0.25)
        start[NAMES[theirs]] = ((torch.rand(p.shape, generator=gen) * 2 - 1) * bound).numpy().astype(np.float32)
    regions = torch.randn(B, R, IMG, generator=gen).numpy().astype(np.float32)
    words = np.zeros((B, L), dtype=np.int32)
    for b, n in enumerate(LENGTHS):
        # ids from a small range, so that rows of the embedding repeat
        words[b, :n] = torch.randint(1, 12, (n,), generator=gen).numpy()
    lengths = np.array(LENGTHS, dtype=np.int32)
    batch = (regions, words, lengths)

    save("regions", regions)
    save("words", words)
    save("lengths", lengths)
    for name, arr in start.items():
        save(name, arr)

    for dtype, tag in ((torch.float32, ""), (torch.float64, "64")):
        m = build(start, dtype)
        loss = loss_of(m, batch, dtype)
        loss.backward()
        np_dt = np.float32 if dtype == torch.float32 else np.float64
        save("loss" + tag, np.array(loss.item(), dtype=np_dt))
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in m.parameters())).item()
        print(f"loss{tag or '32'} = {loss.item():.9g}, gradient norm {norm:.6g} (clip at {CLIP})")
        for theirs, p in m.named_parameters():
            save(f"grad{tag}.{NAMES[theirs]}", p.grad.numpy().astype(np_dt))

    for opt_name, make in OPTIMIZERS.items():
        for dtype, steps in ((torch.float32, 1), (torch.float64, 2)):
            m = build(start, dtype)
            opt = make(m.parameters())
            for step in range(1, steps + 1):
                opt.zero_grad()
                loss_of(m, batch, dtype).backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), CLIP)
                opt.step()
                tag = f"{opt_name}{step}" + ("_64" if dtype == torch.float64 else "")
                np_dt = np.float32 if dtype == torch.float32 else np.float64
                for theirs, p in m.named_parameters():
                    save(f"{tag}.{NAMES[theirs]}", p.detach().numpy().astype(np_dt))

    files = sorted(f for f in os.listdir(OUT) if f.endswith(".npy"))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in files)
    print(f"{len(files)} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
