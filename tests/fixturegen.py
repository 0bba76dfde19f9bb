"""Helpers shared by the PyTorch fixture generators (tests/gen_*_fixtures.py).

Imported from the generators' own directory; like them, run with Debian's
/usr/bin/python3 (python3-torch, numpy).
"""
import os

import torch


def hinge(s, margin=0.2, max_violation=True):
    """The ContrastiveLoss of VSE++ / SCAN / SGRAF on scores s [images, captions]:
    the hinge of every negative against its positive, in both directions, summed
    (max_violation: the hardest negative per query only)."""
    diagonal = s.diag().view(s.size(0), 1)
    cost_s = (margin + s - diagonal.expand_as(s)).clamp(min=0)
    cost_im = (margin + s - diagonal.t().expand_as(s)).clamp(min=0)
    eye = torch.eye(s.size(0)) > 0.5
    cost_s = cost_s.masked_fill(eye, 0)
    cost_im = cost_im.masked_fill(eye, 0)
    if max_violation:
        cost_s = cost_s.max(1)[0]
        cost_im = cost_im.max(0)[0]
    return cost_s.sum() + cost_im.sum()


def bigru_name(name, rnn="rnn"):
    """itrc's name for a parameter of a bidirectional nn.GRU called `rnn`
    (rnn.weight_ih_l0 -> rnn.fwd.w_ih, rnn.bias_hh_l0_reverse -> rnn.bwd.b_hh);
    any other name as it is."""
    for tp, ip in (("weight_ih", "w_ih"), ("weight_hh", "w_hh"), ("bias_ih", "b_ih"), ("bias_hh", "b_hh")):
        if name == "%s.%s_l0" % (rnn, tp):
            return rnn + ".fwd." + ip
        if name == "%s.%s_l0_reverse" % (rnn, tp):
            return rnn + ".bwd." + ip
    return name


def padded_batch(gen, n_images, regions, img_dim, vocab, lengths):
    """Random inputs from generator gen, drawn in this order: region features
    [n_images, regions, img_dim] ~ N(0, 1), then word ids [len(lengths),
    max(lengths)] in 1..vocab-1 with 0 (<pad>) past each caption's length,
    and the lengths (int64)."""
    feats = torch.randn(n_images, regions, img_dim, generator=gen)
    words = torch.randint(1, vocab, (len(lengths), max(lengths)), generator=gen, dtype=torch.int64)
    for i, n in enumerate(lengths):
        words[i, n:] = 0
    return feats, words, torch.tensor(lengths, dtype=torch.int64)


def fresh_dir(path):
    """Creates path if needed and removes the .npy files in it, so that a
    fixture the generator no longer writes does not linger."""
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        if f.endswith(".npy"):
            os.remove(os.path.join(path, f))
