"""Helpers shared by the PyTorch fixture generators (tests/gen_*_fixtures.py).

Imported from the generators' own directory; like them, run with Debian's
/usr/bin/python3 (python3-torch, numpy).
"""
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
