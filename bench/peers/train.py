#!/usr/bin/env python3
"""Training steps at batch 128 (models/vsepp.ir, models/scan_t2i.ir): forward,
max-violation hinge loss (margin 0.2), backward, gradient clipping to norm
2.0, Adam lr 2e-4 — eager, and with the forward + loss under torch.compile
(backward through AOTAutograd; clipping and Adam eager)."""
import torch

import nets
from common import COMPILE, EAGER, IMG_DIM, R, V, args, caption_lengths, emit, length_mask, median_time, note, \
    run_guarded, wanted


def step_fn(model, loss_fn, x):
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(*x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
    return step


def main():
    a = args(__doc__)
    g = torch.Generator().manual_seed(7)
    regions = torch.rand(a.batch, R, IMG_DIM, generator=g) - 0.5
    words = torch.randint(1, V, (a.batch, 12), generator=g)
    lengths = caption_lengths(a.batch)
    mask = length_mask(lengths)
    cases = [("vsepp_train_step", nets.Vsepp, (regions, words, lengths)),
             ("scan_t2i_train_step", nets.ScanT2I, (regions, words, lengths, mask))]
    for workload, cls, x in cases:
        if not wanted(a, workload):
            continue
        torch.manual_seed(0)
        if "eager" in a.peers:
            def eager():
                m = cls().train()
                t, n = median_time(step_fn(m, m, x), a.budget, min_n=3)
                emit(workload, EAGER, t, "s/step", "lower", n)
            run_guarded(workload, EAGER, eager)
        if "compile" in a.peers:
            def compiled():
                m = cls().train()
                t, n = median_time(step_fn(m, torch.compile(m), x), a.budget, warmup=2, min_n=3)
                emit(workload, COMPILE, t, "s/step", "lower", n)
            run_guarded(workload, COMPILE, compiled)
        note(f"{workload} done")


if __name__ == "__main__":
    main()
