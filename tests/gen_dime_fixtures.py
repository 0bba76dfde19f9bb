#!/usr/bin/env python3
"""PyTorch reference for DIME (models/dime_i2t.ir, models/dime_t2i.ir;
tests/test_model_dime.c).

Regenerate (the fixtures are committed; only needed when the models change):

    bench/.venv/bin/python tests/gen_dime_fixtures.py          # tests/fixtures/dime/
    bench/.venv/bin/python tests/gen_dime_fixtures.py OUT_DIR

An independent implementation of models.md §2.8, §3.1 (DIME's loss.py with
extra negatives) and §3.6, written the way the original is organised and
never derived from itrc code: the cells are separate modules that loop over
the captions one at a time (i2t: the regions of every image against caption
c; t2i: caption c's word slots against every image), layer 0's per-item
outputs are broadcast over the other modality, and the i2t cross attention
truncates each caption to its valid words. Everything in float64 from
float32 parameters; results rounded to float32.

Sizes: -D D=16 -D hid_router=8 -D heads=4 -D hid_imrc=12 -D path_hid=8
-D tok_dim=12 -D img_dim=24 -D R=5 -D L=6. The scoring set is 3 images and
4 captions (lengths 6, 3, 1, 4); padded token slots hold noise, which both
sides read where the original does (sentence pooling, t2i everywhere). The
training batch is 4 matched pairs plus 4 extra captions (i2t, lengths 2, 6,
5, 3) or 4 extra images (t2i).

Written to OUT, as safetensors files (the test reads them with the
project's own reader):
  inputs.safetensors      regions [3,R,24], feats [4,L,12], lengths i32[4],
                          train_regions [4,R,24], extra_feats [4,L,12],
                          extra_lengths i32[4], extra_regions [4,R,24]
  DIR_params.safetensors  every parameter under its itrc name (BatchNorm
                          running statistics randomised), DIR = i2t, t2i
  DIR_out.safetensors     sims [3,4] (eval mode); loss_extra, path_extra
                          (train mode with the extra negatives), loss_plain
                          (without), grad_extra.P / grad_plain.P for every
                          trainable P, new_extra.P for the BatchNorms'
                          running statistics after the step
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "dime")

D, HID_ROUTER, HEADS, HID_IMRC, PATH_HID, E, IMG, R, L = 16, 8, 4, 12, 8, 12, 24, 5, 6
N_IMG, LENGTHS = 3, [6, 3, 1, 4]
EXTRA_LENGTHS = [2, 6, 5, 3]
MARGIN, TRADE_OFF = 0.2, 0.5
LAMBDA = {"i2t": 4.0, "t2i": 9.0}


def fnorm(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True).clamp(min=1e-12)


# ---------------------------------------------------------------- encoders

class ImageEncoder(nn.Module):
    def __init__(self, direction):
        super().__init__()
        self.direction = direction
        self.fc = nn.Linear(IMG, D)
        if direction == "t2i":
            self.bn = nn.BatchNorm1d(D)

    def forward(self, images):
        y = self.fc(images)
        g = y.mean(1)
        if self.direction == "t2i":
            g = self.bn(g)
        return fnorm(y), fnorm(g)


class TextEncoder(nn.Module):
    """Token features [B, L, E] -> words [B, L, D], sentence [B, D]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(E, D)
        self.conv1 = nn.Conv2d(1, D, (1, E))
        self.conv2 = nn.Conv2d(1, D, (2, E))
        self.conv3 = nn.Conv2d(1, D, (3, E))
        self.mapping = nn.Linear(3 * D, D)

    def forward(self, h):
        x_emb = self.fc(h)
        img = h.unsqueeze(1)                                  # [B, 1, L, E]
        c1 = F.relu(self.conv1(img)).squeeze(3)                # [B, D, L]
        c2 = F.relu(self.conv2(F.pad(img, (0, 0, 0, 1)))).squeeze(3)
        c3 = F.relu(self.conv3(F.pad(img, (0, 0, 1, 1)))).squeeze(3)
        words = self.mapping(torch.cat([c1, c2, c3], 1).transpose(1, 2)) + x_emb
        pooled = torch.cat([c.max(2)[0] for c in (c1, c2, c3)], 1)
        sent = self.mapping(pooled) + x_emb.mean(1)
        return fnorm(words), fnorm(sent)


# ---------------------------------------------------------------- cells

class Router(nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.fc1 = nn.Linear(D, HID_ROUTER)
        self.fc2 = nn.Linear(HID_ROUTER, n_out)

    def forward(self, x):
        return F.relu(torch.tanh(self.fc2(F.relu(self.fc1(x.mean(-2))))))


class RIC(nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.router = Router(n_out)

    def forward(self, x):
        return F.relu(x), self.router(x)


class IMRC(nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.router = Router(n_out)
        self.q, self.k, self.v = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.ff1, self.ff2 = nn.Linear(D, HID_IMRC), nn.Linear(HID_IMRC, D)

    def attend(self, x):                                        # [n, T, D]
        n, t, _ = x.shape
        dk = D // HEADS
        q, k, v = [f(x).view(n, t, HEADS, dk).transpose(1, 2) for f in (self.q, self.k, self.v)]
        p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dk), dim=-1)
        y = x + (p @ v).transpose(1, 2).reshape(n, t, D)
        return y + self.ff2(F.relu(self.ff1(y)))

    def forward(self, x):
        shape = x.shape
        out = self.attend(x.reshape(-1, shape[-2], D)).view(shape)
        return out, self.router(x)


class GLGC(nn.Module):
    def __init__(self, direction, n_out):
        super().__init__()
        self.direction = direction
        self.router = Router(n_out)
        self.fc1 = nn.Linear(D, D)

    def regulate(self, l, g):
        return (1 + fnorm(self.fc1(l) * g, dim=-2)) * l

    def forward(self, x, rgn, img, wrd, stc, lens):
        cols = []
        if self.direction == "i2t":                             # x: regions [n_img, R, D] or [n_img, n_cap, R, D]
            for c in range(stc.size(0)):
                q = x[:, c] if x.dim() == 4 else x
                cols.append(self.regulate(q, stc[c].view(1, 1, D)))
        else:                                                   # x: words [n_cap, L, D] or [n_img, n_cap, L, D]
            for c in range(stc.size(0)):
                w = x[:, c] if x.dim() == 4 else x[c].unsqueeze(0).expand(img.size(0), -1, -1)
                cols.append(self.regulate(w, img.unsqueeze(1)))
        return torch.stack(cols, 1), self.router(x)


def scan_attention(query, context, smooth):
    """query [n, Q, D], context [n, C, D] -> weighted context [n, Q, D];
    clipped_l2norm along the query axis with F.normalize."""
    a = context @ query.transpose(1, 2)                        # [n, C, Q]
    a = F.normalize(F.leaky_relu(a, 0.1), dim=2)
    a = torch.softmax(a.transpose(1, 2) * smooth, dim=2)         # [n, Q, C]
    return a @ context


class CMRC(nn.Module):
    def __init__(self, direction, n_out):
        super().__init__()
        self.direction = direction
        self.router = Router(n_out)
        self.fc_scale, self.fc_shift = nn.Linear(D, D), nn.Linear(D, D)
        self.fc_1, self.fc_2 = nn.Linear(D, D), nn.Linear(D, D)

    def refine(self, q, a):
        return q + self.fc_2(F.relu(self.fc_1(q * torch.tanh(self.fc_scale(a)) + self.fc_shift(a))))

    def forward(self, x, rgn, img, wrd, stc, lens):
        cols = []
        lam = LAMBDA[self.direction]
        if self.direction == "i2t":
            n_img = x.size(0)
            for c in range(wrd.size(0)):
                q = x[:, c] if x.dim() == 4 else x
                ctx = wrd[c, :lens[c]].unsqueeze(0).repeat(n_img, 1, 1)
                cols.append(self.refine(q, scan_attention(q, ctx, lam)))
        else:
            n_img = rgn.size(0)
            for c in range(wrd.size(0) if x.dim() == 3 else x.size(1)):
                q = x[:, c] if x.dim() == 4 else x[c].unsqueeze(0).repeat(n_img, 1, 1)
                cols.append(self.refine(q, scan_attention(q, rgn, lam)))
        return torch.stack(cols, 1), self.router(x)


# ---------------------------------------------------------------- routing

class Layer(nn.Module):
    def __init__(self, direction, n_out):
        super().__init__()
        self.direction, self.n_out = direction, n_out
        self.ric = RIC(n_out)
        self.glgc = GLGC(direction, n_out)
        self.imrc = IMRC(n_out)
        self.cmrc = CMRC(direction, n_out)

    def cells(self, xs, rgn, img, wrd, stc, lens):
        e0, p0 = self.ric(xs[0])
        e1, p1 = self.glgc(xs[1], rgn, img, wrd, stc, lens)
        e2, p2 = self.imrc(xs[2])
        e3, p3 = self.cmrc(xs[3], rgn, img, wrd, stc, lens)
        return [e0, e1, e2, e3], [p0, p1, p2, p3]

    def to_pairs(self, t, n_img, n_cap):
        """A per-item tensor ([n_img, n, D] or [n_cap, n, D]) broadcast to [n_img, n_cap, n, D]."""
        if t.dim() == 4:
            return t
        if self.direction == "i2t":
            return t.unsqueeze(1).expand(-1, n_cap, -1, -1)
        return t.unsqueeze(0).expand(n_img, -1, -1, -1)

    def forward(self, xs, rgn, img, wrd, stc, lens):
        n_img, n_cap = rgn.size(0), wrd.size(0)
        es, ps = self.cells(xs, rgn, img, wrd, stc, lens)
        if self.n_out == 1:                                      # per pair: ps [n_img, n_cap, 1]
            num, den = 0, 0
            for j in range(4):
                g = (ps[j] < 1e-4 / 4).double()
                num = num + ps[j].unsqueeze(-1) * es[j] + g.unsqueeze(-1) * self.to_pairs(xs[j], n_img, n_cap)
                den = den + g + ps[j]
            return [num / den.unsqueeze(-1)], torch.stack(ps, -1)    # probs [n_img, n_cap, 1, 4]
        gate = (sum(ps) < 1e-4).double()
        probs = torch.stack(ps, -1)
        probs = probs / (probs.sum(-1, keepdim=True) + 1e-8)    # [.., out, cell]
        outs = []
        for o in range(4):
            r = 0
            for j in range(4):
                w = probs[..., o, j]
                r = r + self.expand_w(w, n_img, n_cap) * self.to_pairs(es[j], n_img, n_cap)
            r = r + self.expand_w(gate[..., o], n_img, n_cap) * self.to_pairs(es[0], n_img, n_cap)
            outs.append(r)
        return outs, probs

    def expand_w(self, w, n_img, n_cap):
        """Path weights [n_item] (layer 0) or [n_img, n_cap] -> [n_img, n_cap, 1, 1]."""
        if w.dim() == 1:
            w = w.view(-1, 1) if self.direction == "i2t" else w.view(1, -1)
        return w.reshape(w.size(0), w.size(1), 1, 1)


class DIME(nn.Module):
    def __init__(self, direction):
        super().__init__()
        self.direction = direction
        self.img_enc = ImageEncoder(direction)
        self.txt_enc = TextEncoder()
        self.l0 = Layer(direction, 4)
        self.l1 = Layer(direction, 4)
        self.l2 = Layer(direction, 1)
        self.path_mapping = nn.Linear(36, PATH_HID)
        self.head = nn.Module()
        self.head.bn = nn.BatchNorm1d(D)

    def forward(self, images, feats, lens):
        rgn, img = self.img_enc(images)
        wrd, stc = self.txt_enc(feats)
        n_img, n_cap = rgn.size(0), wrd.size(0)
        x = rgn if self.direction == "i2t" else wrd
        outs, p0 = self.l0([x] * 4, rgn, img, wrd, stc, lens)
        outs, p1 = self.l1(outs, rgn, img, wrd, stc, lens)
        outs, p2 = self.l2(outs, rgn, img, wrd, stc, lens)
        z = outs[0]
        n = z.size(2)
        z = self.head.bn(z.reshape(-1, D)).view(n_img, n_cap, n, D)
        z = fnorm(z.mean(2) + z.max(2)[0])
        if self.direction == "i2t":
            sims = (z * stc.unsqueeze(0)).sum(-1)
            paths = torch.cat([p0.reshape(n_img, 1, 16).expand(-1, n_cap, -1), p1.reshape(n_img, n_cap, 16),
                               p2.reshape(n_img, n_cap, 4)], -1).mean(1)
        else:
            sims = (z * img.unsqueeze(1)).sum(-1)
            paths = torch.cat([p0.reshape(1, n_cap, 16).expand(n_img, -1, -1), p1.reshape(n_img, n_cap, 16),
                               p2.reshape(n_img, n_cap, 4)], -1).mean(0)
        paths = fnorm(self.path_mapping(paths))
        return sims, paths @ paths.t()


def contrastive(scores, direction, extra):
    """DIME's loss.py: max violation; extra captions as columns (i2t) or extra images as rows (t2i)."""
    n_img, n_cap = scores.shape
    if not extra:
        d = scores.diag().view(-1, 1)
        cs = (MARGIN + scores - d).clamp(min=0)
        ci = (MARGIN + scores - d.t()).clamp(min=0)
        eye = torch.eye(n_img, dtype=torch.bool)
        return cs.masked_fill(eye, 0).max(1)[0].sum() + ci.masked_fill(eye, 0).max(0)[0].sum()
    if direction == "i2t":
        d = scores.diag().view(n_img, 1)
        cs = (MARGIN + scores - d).clamp(min=0)
        ci = (MARGIN + scores[:, :n_img] - d.t()).clamp(min=0)
        eye = torch.eye(n_img, dtype=torch.bool)
        ms = torch.cat([eye, torch.zeros(n_img, n_cap - n_img, dtype=torch.bool)], 1)
        return cs.masked_fill(ms, 0).max(1)[0].sum() + ci.masked_fill(eye, 0).max(0)[0].sum()
    d = scores.diag().view(n_cap, 1)
    cs = (MARGIN + scores[:n_cap, :] - d).clamp(min=0)
    ci = (MARGIN + scores - d.t()).clamp(min=0)
    eye = torch.eye(n_cap, dtype=torch.bool)
    mi = torch.cat([eye, torch.zeros(n_img - n_cap, n_cap, dtype=torch.bool)], 0)
    return cs.masked_fill(eye, 0).max(1)[0].sum() + ci.masked_fill(mi, 0).max(0)[0].sum()


# ---------------------------------------------------------------- files

def write_safetensors(path, tensors):
    """The safetensors layout: u64 header length, JSON header, raw data."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {np.float32: "F32", np.int32: "I32"}[a.dtype.type]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def f32(t):
    return t.detach().numpy().astype(np.float32)


def randomise(model, gen):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
            elif name.endswith("router.fc2.bias"):
                # Around the original's 1.5, spread so that some paths are
                # near 0 and the normalisation matters.
                t.copy_(torch.randn(t.shape, generator=gen) * 0.8 + 0.6)
            elif ".bn." in name and name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.4)


def padded_feats(gen, lengths):
    # Noise in the padded slots too: the original reads BERT's outputs there.
    f = torch.randn(len(lengths), L, E, generator=gen)
    for i, n in enumerate(lengths):
        f[i, n:] *= 0.3
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(13)
    inputs = {
        "regions": torch.randn(N_IMG, R, IMG, generator=gen),
        "feats": padded_feats(gen, LENGTHS),
        "train_regions": torch.randn(len(LENGTHS), R, IMG, generator=gen),
        "extra_feats": padded_feats(gen, EXTRA_LENGTHS),
        "extra_regions": torch.randn(len(LENGTHS), R, IMG, generator=gen),
    }
    lens = torch.tensor(LENGTHS)
    xlens = torch.tensor(EXTRA_LENGTHS)
    files = {k: f32(v) for k, v in inputs.items()}
    files["lengths"] = np.array(LENGTHS, dtype=np.int32)
    files["extra_lengths"] = np.array(EXTRA_LENGTHS, dtype=np.int32)
    write_safetensors(os.path.join(OUT, "inputs.safetensors"), files)

    for direction in ("i2t", "t2i"):
        torch.manual_seed(1)
        model = DIME(direction)
        randomise(model, gen)
        state = {k: v.float() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        write_safetensors(os.path.join(OUT, direction + "_params.safetensors"), {k: v.numpy() for k, v in state.items()})
        out = {}

        def fresh():
            m = DIME(direction).double()
            m.load_state_dict({k: v.double() for k, v in state.items()}, strict=False)
            return m

        m = fresh().eval()
        with torch.no_grad():
            sims, _ = m(inputs["regions"].double(), inputs["feats"].double(), lens)
        print(direction, "sims\n", sims.numpy())
        out["sims"] = f32(sims)

        for tag, extra in (("extra", True), ("plain", False)):
            m = fresh().train()
            feats, lengths, images = inputs["feats"], lens, inputs["train_regions"]
            if extra and direction == "i2t":
                feats = torch.cat([feats, inputs["extra_feats"]], 0)
                lengths = torch.cat([lens, xlens], 0)
            if extra and direction == "t2i":
                images = torch.cat([images, inputs["extra_regions"]], 0)
            sims, path_sim = m(images.double(), feats.double(), lengths)
            label = fnorm(inputs["feats"].double().mean(1))
            path = ((path_sim - label @ label.t()) ** 2).sum() / len(LENGTHS)
            loss = contrastive(sims, direction, extra) + TRADE_OFF * path
            loss.backward()
            print(direction, tag, "loss %.9g path %.9g" % (loss.item(), path.item()))
            out["loss_" + tag] = np.float32(loss.item()).reshape(())
            out["path_" + tag] = np.float32(path.item()).reshape(())
            for name, t in m.named_parameters():
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                out["grad_%s.%s" % (tag, name)] = f32(g)
            if extra:
                for name, t in m.state_dict().items():
                    if name.endswith("running_mean") or name.endswith("running_var"):
                        out["new_extra." + name] = f32(t)
        write_safetensors(os.path.join(OUT, direction + "_out.safetensors"), out)


if __name__ == "__main__":
    main()
