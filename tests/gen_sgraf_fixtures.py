#!/usr/bin/python3
"""PyTorch reference for SGRAF's SGR and SAF (tests/test_model_sgraf.c).

Regenerate with Debian's interpreter (python3-torch, numpy); the fixtures are
committed, so this is only needed when the models change:

    /usr/bin/python3 tests/gen_sgraf_fixtures.py           # tests/fixtures/sgraf/
    /usr/bin/python3 tests/gen_sgraf_fixtures.py OUT_DIR

An independent transcription of SGRAF's model.py (models.md §2.3), written
the way the original is: captions truncated to their length and scored one
caption column at a time, a packed bidirectional nn.GRU, nn.BatchNorm1d
modules (VisualSA's BatchNorm1d(R) takes the region index as the channel;
SAF's BatchNorm1d(1) is called once per caption column, so in training each
column has its own statistics and the running estimates move B times).
Never derived from itrc code. Sizes: models/sgr.ir and models/saf.ir with
-D D=16 -D sim_dim=8 -D W=8 -D V=30 -D img_dim=24 -D R=5 (SGR: sgr_step 3);
4 captions of lengths 4, 6, 1, 3 (L = 6).

DROPOUT IS OFF in both modes (p = 0 in every nn.Dropout of the original: the
word embeddings and both self-attention branches). The eval scores need none;
the training reference is compared with the itrc models compiled with
-D dropout_p=0, so that the training step is deterministic. Everything else
is the original's training mode (BatchNorms on batch statistics).

Written to OUT: regions.npy f32[3, 5, 24], words.npy i32[4, 6],
lengths.npy i32[4], train_regions.npy f32[4, 5, 24] (the images of a
training batch of 4 matched pairs, with the same captions); for M in sgr, saf:
  M/P.npy                  every parameter P under its itrc name (BatchNorm
                           running statistics randomised so that eval mode is
                           not the identity)
  M/sims.npy f32[3, 4]     eval-mode scores
  M/train_loss_max.npy     training mode on the batch: the max-violation
                           hinge, margin 0.2, summed (the default train entry)
  M/train_loss_sum.npy     the sum-of-negatives hinge (itrc: -D warmup_epochs=1,
                           epoch 0)
  M/grad_max.P.npy, M/grad_sum.P.npy   their gradients, every trainable P
  M/new.B.running_mean.npy, M/new.B.running_var.npy   every BatchNorm B's
                           running statistics after that training step
all computed in float64 from the float32 parameters, then rounded to float32.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixturegen import bigru_name, hinge, padded_batch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "sgraf")

D, S, W, V, IMG, R = 16, 8, 8, 30, 24, 5
N_IMG, LENGTHS = 3, [4, 6, 1, 3]
L = max(LENGTHS)
LAMBDA = 9.0
DROPOUT = 0.0   # see the docstring: dropout off, the itrc side uses -D dropout_p=0
N_TRAIN = len(LENGTHS)


def l2norm(x, dim=-1, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def l1norm(x, dim=-1, eps=1e-8):
    return x / (x.abs().sum(dim=dim, keepdim=True) + eps)


class VisualSA(nn.Module):
    def __init__(self):
        super().__init__()
        self.local_fc = nn.Linear(D, D)
        self.local_bn = nn.BatchNorm1d(R)      # regions as channels
        self.global_fc = nn.Linear(D, D)
        self.global_bn = nn.BatchNorm1d(D)
        self.common = nn.Linear(D, 1)
        self.local_drop = nn.Dropout(DROPOUT)
        self.global_drop = nn.Dropout(DROPOUT)

    def forward(self, local, raw_global):
        l_emb = self.local_drop(torch.tanh(self.local_bn(self.local_fc(local))))
        g_emb = self.global_drop(torch.tanh(self.global_bn(self.global_fc(raw_global))))
        g_emb = g_emb.unsqueeze(1).repeat(1, l_emb.size(1), 1)
        w = torch.softmax(self.common(l_emb * g_emb).squeeze(2), dim=1)
        return l2norm((w.unsqueeze(2) * local).sum(dim=1))


class TextSA(nn.Module):
    def __init__(self):
        super().__init__()
        self.local_fc = nn.Linear(D, D)
        self.global_fc = nn.Linear(D, D)
        self.common = nn.Linear(D, 1)
        self.local_drop = nn.Dropout(DROPOUT)
        self.global_drop = nn.Dropout(DROPOUT)

    def forward(self, local, raw_global):
        l_emb = self.local_drop(torch.tanh(self.local_fc(local)))
        g_emb = self.global_drop(torch.tanh(self.global_fc(raw_global)))
        g_emb = g_emb.unsqueeze(1).repeat(1, l_emb.size(1), 1)
        w = torch.softmax(self.common(l_emb * g_emb).squeeze(2), dim=1)
        return l2norm((w.unsqueeze(2) * local).sum(dim=1))


class GraphReasoning(nn.Module):
    def __init__(self):
        super().__init__()
        self.graph_query_w = nn.Linear(S, S)
        self.graph_key_w = nn.Linear(S, S)
        self.sim_graph_w = nn.Linear(S, S)

    def forward(self, x):
        q, k = self.graph_query_w(x), self.graph_key_w(x)
        edge = torch.softmax(torch.bmm(q, k.permute(0, 2, 1)), dim=-1)
        return torch.relu(self.sim_graph_w(torch.bmm(edge, x)))


class AttentionFiltration(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_sim_w = nn.Linear(S, 1)
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x):
        a = l1norm(torch.sigmoid(self.bn(self.attn_sim_w(x).permute(0, 2, 1))), dim=-1)
        return l2norm(torch.matmul(a, x).squeeze(1))


class SimEnc(nn.Module):
    def __init__(self):
        super().__init__()
        self.sim_tranloc_w = nn.Linear(D, S)
        self.sim_tranglo_w = nn.Linear(D, S)
        self.sim_eval_w = nn.Linear(S, 1)


def scan_attention(query, context, smooth):
    """SGRAF's SCAN_attention: t2i, clipped_l2norm, l2n of the attended vector."""
    attn = torch.bmm(context, query.transpose(1, 2))           # (n, R, ℓ)
    attn = l2norm(nn.functional.leaky_relu(attn, 0.1), 2)      # over the words
    attn = torch.softmax(attn.transpose(1, 2) * smooth, dim=2)  # (n, ℓ, R), over the regions
    return l2norm(torch.bmm(attn, context))                     # (n, ℓ, D)


class SGRAF(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head
        self.img_fc = nn.Linear(IMG, D)
        self.embed = nn.Embedding(V, W)
        self.embed_drop = nn.Dropout(DROPOUT)
        self.cap_rnn = nn.GRU(W, D, batch_first=True, bidirectional=True)
        self.v_global_w = VisualSA()
        self.t_global_w = TextSA()
        self.sim_enc = SimEnc()
        if head == "sgr":
            for i in range(3):
                setattr(self, "sgr%d" % i, GraphReasoning())
        else:
            self.saf_module = AttentionFiltration()

    def forward(self, regions, words, lengths):
        img = l2norm(self.img_fc(regions))
        packed = pack_padded_sequence(self.embed_drop(self.embed(words)), lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.cap_rnn(packed)[0], batch_first=True)
        cap = l2norm((out[:, :, :D] + out[:, :, D:]) / 2)
        img_glo = self.v_global_w(img, img.mean(1))
        n_img = img.size(0)
        cols = []
        for i, n in enumerate(lengths.tolist()):
            cap_i = cap[i, :n, :].unsqueeze(0)
            cap_x = cap_i.repeat(n_img, 1, 1)
            cap_glo = self.t_global_w(cap_i, cap_i.mean(1))
            ctx = scan_attention(cap_x, img, LAMBDA)
            sim_loc = l2norm(self.sim_enc.sim_tranloc_w((ctx - cap_x).pow(2)))
            sim_glo = l2norm(self.sim_enc.sim_tranglo_w((img_glo - cap_glo).pow(2)))
            x = torch.cat([sim_glo.unsqueeze(1), sim_loc], 1)
            if self.head == "sgr":
                for k in range(3):
                    x = getattr(self, "sgr%d" % k)(x)
                z = x[:, 0, :]
            else:
                z = self.saf_module(x)
            cols.append(torch.sigmoid(self.sim_enc.sim_eval_w(z)))
        return torch.cat(cols, 1)


def itrc_name(name):
    return bigru_name(name, "cap_rnn")


def randomise(model, gen):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
            elif "bn" in name and name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                scale = 0.3 if name.startswith("cap_rnn") or name.startswith("embed") else 0.5
                t.copy_(torch.randn(t.shape, generator=gen) * scale)


def save(path, a):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, a)


def train_step(head, state, regions, words, lengths, max_violation):
    """Training-mode forward and backward in float64 from the float32 state.

    Returns the model after the step (gradients and moved running statistics)
    and the loss."""
    m = SGRAF(head).double()
    m.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    m.train()
    loss = hinge(m(regions.double(), words, lengths), 0.2, max_violation)
    loss.backward()
    return m, loss


def main():
    gen = torch.Generator().manual_seed(7)
    regions, words, lengths = padded_batch(gen, N_IMG, R, IMG, V, LENGTHS)
    save(os.path.join(OUT, "regions.npy"), regions.numpy().astype(np.float32))
    save(os.path.join(OUT, "words.npy"), words.numpy().astype(np.int32))
    save(os.path.join(OUT, "lengths.npy"), lengths.numpy().astype(np.int32))
    states = {}
    for head in ("sgr", "saf"):
        torch.manual_seed(1)
        model = SGRAF(head)
        randomise(model, gen)
        model.eval()
        for name, t in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                save(os.path.join(OUT, head, itrc_name(name) + ".npy"), t.numpy().astype(np.float32))
        states[head] = {k: v.clone() for k, v in model.state_dict().items()}
        # Scores from the float32 parameters, evaluated in float64.
        m64 = SGRAF(head).double().eval()
        m64.load_state_dict({k: v.float().double() if v.is_floating_point() else v
                             for k, v in model.state_dict().items()})
        with torch.no_grad():
            sims = m64(regions.double(), words, lengths)
        print(head, "sims:\n", sims.numpy())
        save(os.path.join(OUT, head, "sims.npy"), sims.numpy().astype(np.float32))

    # Training mode: a batch of N_TRAIN matched pairs (image k, caption k),
    # drawn from a separate generator so that the eval fixtures above stay
    # as they were.
    tgen = torch.Generator().manual_seed(11)
    train_regions = torch.randn(N_TRAIN, R, IMG, generator=tgen)
    save(os.path.join(OUT, "train_regions.npy"), train_regions.numpy().astype(np.float32))
    for head in ("sgr", "saf"):
        for form, mv in (("max", True), ("sum", False)):
            m, loss = train_step(head, states[head], train_regions, words, lengths, mv)
            print(head, form, "training loss %.9g" % loss.item())
            save(os.path.join(OUT, head, "train_loss_%s.npy" % form), np.float32(loss.item()).reshape(()))
            for name, t in m.named_parameters():
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                save(os.path.join(OUT, head, "grad_%s.%s.npy" % (form, itrc_name(name))),
                     g.numpy().astype(np.float32))
            # The running statistics do not depend on the loss: saved once.
            if form == "max":
                for name, t in m.state_dict().items():
                    if name.endswith("running_mean") or name.endswith("running_var"):
                        save(os.path.join(OUT, head, "new." + name + ".npy"), t.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
