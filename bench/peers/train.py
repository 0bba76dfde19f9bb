#!/usr/bin/env python3
"""Training steps at batch 128: forward, loss, backward, gradient clipping to
norm 2.0 and the optimizer of the model's .ir `optimizer` line — eager, and
with the forward + loss under torch.compile (backward through AOTAutograd;
clipping and the optimizer eager).

  vsepp_train_step     models/vsepp.ir     max-violation hinge, Adam lr 2e-4
  scan_t2i_train_step  models/scan_t2i.ir  max-violation hinge, Adam lr 2e-4
  vseinf_train_step    models/vse_inf.ir   (bigru) sum hinge (epoch 0 of the warm-up), AdamW lr 5e-4 wd 0.01
  tern_train_step      models/tern.ir      max-violation hinge, dropout 0.1, Adam lr 1e-4; token features [B, L, 768]
"""
import torch

import nets
from common import COMPILE, EAGER, IMG_DIM, L, R, TOK_DIM, V, args, caption_lengths, emit, length_mask, median_time, note, \
    run_guarded, wanted


def step_fn(model, loss_fn, x, make_opt):
    opt = make_opt(model.parameters())

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
    token_feats = torch.rand(a.batch, L, TOK_DIM, generator=g) - 0.5

    def adam(lr):
        return lambda ps: torch.optim.Adam(ps, lr=lr)

    def adamw(lr, wd):
        return lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=wd)

    cases = [("vsepp_train_step", nets.Vsepp, (regions, words, lengths), adam(2e-4)),
             ("scan_t2i_train_step", nets.ScanT2I, (regions, words, lengths, mask), adam(2e-4)),
             ("vseinf_train_step", nets.VseInf, (regions, words, lengths), adamw(5e-4, 0.01)),
             ("tern_train_step", nets.Tern, (regions, token_feats, lengths), adam(1e-4))]
    for workload, cls, x, make_opt in cases:
        if not wanted(a, workload):
            continue
        torch.manual_seed(0)
        if "eager" in a.peers:
            def eager():
                m = cls().train()
                t, n = median_time(step_fn(m, m, x, make_opt), a.budget, min_n=3)
                emit(workload, EAGER, t, "s/step", "lower", n)
            run_guarded(workload, EAGER, eager)
        if "compile" in a.peers:
            def compiled():
                m = cls().train()
                t, n = median_time(step_fn(m, torch.compile(m), x, make_opt), a.budget, warmup=2, min_n=3)
                emit(workload, COMPILE, t, "s/step", "lower", n)
            run_guarded(workload, COMPILE, compiled)
        note(f"{workload} done")


if __name__ == "__main__":
    main()
