#!/usr/bin/env python3
"""Checks that the peers compute the models' maths, against itr-run on the
reference interpreter, on small random inputs: the parameter-free score
functions of bench/peers/nets.py (SCAN t2i, SCAN i2t, BFAN; 3 images x 4
captions, D 16, 36 regions, L 12), VSE++'s encoders and whole training
step (loss, then the parameters after clipping and Adam), and the whole
training steps of VSE∞ (both hinge forms, AdamW) and TERN (dropout 0, Adam),
all with the parameters of `itr-run init`.

    bench/.venv/bin/python bench/peers/check.py BUILD_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

import json
import struct

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
from common import caption_lengths, length_mask  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"]).copy())
    return out


def compare(name, ref, got):
    err = float(np.abs(ref - got).max())
    ok = err <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    print(f"{name}: max |peer - itrc| = {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return ok


def check_vsepp(itrc, itr_run, tmp):
    d, w, img_dim, n = 16, 8, 24, 6
    plan, wts = os.path.join(tmp, "vsepp.plan"), os.path.join(tmp, "vsepp.safetensors")
    subprocess.run([itrc, "compile", os.path.join(ROOT, "models", "vsepp.ir"), "-D", f"D={d}", "-D", f"W={w}",
                    "-D", f"img_dim={img_dim}", "-o", plan], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([itr_run, plan, "init", "--seed", "1", "-o", wts], check=True, stdout=subprocess.DEVNULL)
    p = read_safetensors(wts)
    g = torch.Generator().manual_seed(5)
    regions = torch.rand(n, 36, img_dim, generator=g) - 0.5
    words = torch.randint(1, 10000, (n, 12), generator=g)
    lengths = caption_lengths(n)
    np.save(os.path.join(tmp, "regions.npy"), regions.numpy())
    np.save(os.path.join(tmp, "words.npy"), words.numpy().astype(np.int32))
    np.save(os.path.join(tmp, "lengths.npy"), lengths.numpy().astype(np.int32))
    m = nets.Vsepp(img_dim=img_dim, w=w, d=d)
    with torch.no_grad():
        m.img.fc.weight.copy_(p["img_fc.weight"]); m.img.fc.bias.copy_(p["img_fc.bias"])
        m.txt.embed.weight.copy_(p["embed.weight"])
        for a, b in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"), ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
            getattr(m.txt.rnn, a).copy_(p[f"rnn.{b}"])
    padded = nets.VseppText(padded=True, w=w, d=d)
    padded.load_state_dict(m.txt.state_dict())
    ok = True
    runs = [("encode_image", ["regions"], "img_emb", lambda: m.img(regions)),
            ("encode_text", ["words", "lengths"], "cap_emb", lambda: m.txt(words, lengths)),
            ("encode_text", ["words", "lengths"], "cap_emb", lambda: padded(words, lengths))]
    for k, (entry, ins, out_name, fn) in enumerate(runs):
        out = os.path.join(tmp, f"v{k}")
        cmd = [itr_run, plan, "run", entry, "--weights", wts, "--out", out]
        for i in ins:
            cmd += ["--in", f"{i}={tmp}/{i}.npy"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with torch.no_grad():
            ok &= compare(f"vsepp {entry}{' (padded GRU, ONNX)' if k == 2 else ''}",
                          np.load(os.path.join(out, f"{out_name}.npy")), fn().numpy())
    # the whole training step: loss, then every parameter after clip + Adam
    out = os.path.join(tmp, "vtrain")
    subprocess.run([itr_run, plan, "run", "train", "--weights", wts, "--out", out, "--in", f"regions={tmp}/regions.npy",
                    "--in", f"words={tmp}/words.npy", "--in", f"lengths={tmp}/lengths.npy",
                    "--in", "lr=scalar:0.0002", "--in", "step=scalar:1"], check=True, stdout=subprocess.DEVNULL)
    opt = torch.optim.Adam(m.parameters(), lr=2e-4)
    loss = m(regions, words, lengths)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 2.0)
    opt.step()
    ok &= compare("vsepp train: loss", np.load(os.path.join(out, "loss.npy")), loss.detach().numpy())
    # the updates (new - old) / lr, so that Adam's step is compared at size ~1
    for name, t in (("img_fc.weight", m.img.fc.weight), ("rnn.w_hh", m.txt.rnn.weight_hh_l0),
                    ("embed.weight", m.txt.embed.weight)):
        old = p[name].numpy()
        ok &= compare(f"vsepp train: (new - old) / lr, {name}",
                      (np.load(os.path.join(out, f"new.{name}.npy")) - old) / 2e-4, (t.detach().numpy() - old) / 2e-4)
    return ok


def torch_name(k):
    """itrc's parameter name -> the peer module's: GRU directions (rnn.ir
    gru/bigru) to PyTorch's weight_ih_l0[_reverse], TERN's written-out layers
    (img_layer0, shared0) to ModuleList items."""
    m = re.match(r"^(.*)\.(fwd|bwd)\.(w_ih|w_hh|b_ih|b_hh)$", k)
    if m:
        kind = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}[m.group(3)]
        return f"{m.group(1)}.{kind}_l0{'_reverse' if m.group(2) == 'bwd' else ''}"
    k = re.sub(r"^img_layer(\d+)\.", r"img_layers.\1.", k)
    return re.sub(r"^shared(\d+)\.", r"shared.\1.", k)


def load_itrc_weights(model, p):
    """Copies every parameter and buffer of `itr-run init`'s file into the
    peer module; each side's name must have its counterpart."""
    sd = {torch_name(k): v for k, v in p.items() if not k.startswith("opt.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"check.py: weight names do not match: missing {missing}, unexpected {unexpected}")


def train_step_check(label, itr_run, plan, p, model, inputs, extra, make_opt, lr, tmp, skip=()):
    """One training step on both sides from the same weights and batch: the
    loss; every state update (BN running statistics); every trained
    parameter's clipped gradient, read on itrc's side from Adam's first
    moment after step 1 (m = (1 - beta1) g), relative to the tensor's largest;
    and its update (new - old) / lr (Adam's first step is g / (|g| + eps),
    size ~1), beyond 2 ulps of the parameter, on the elements whose gradient
    is at least 1e-3 of the tensor's largest — below that the step is the
    normalised rounding noise of a near-zero gradient (TERN's key bias:
    softmax ignores it, so its gradient is zero up to rounding). `skip`:
    parameters whose whole gradient is zero up to rounding."""
    out = os.path.join(tmp, label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", ""))
    cmd = [itr_run, plan, "run", "train", "--weights", os.path.join(tmp, "w.safetensors"), "--out", out,
           "--in", f"lr=scalar:{lr}", "--in", "step=scalar:1"]
    for name, t in inputs:
        path = os.path.join(tmp, f"{name}.npy")
        np.save(path, t.numpy().astype(np.int32) if t.dtype == torch.int64 else t.numpy())
        cmd += ["--in", f"{name}={path}"]
    cmd += extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    opt = make_opt(model.parameters())
    loss = model(*(t for _, t in inputs))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    grads = {k: t.grad.detach().numpy().copy() for k, t in model.named_parameters() if t.grad is not None}
    opt.step()
    ref_loss = np.load(os.path.join(out, "loss.npy"))
    ok = compare(f"{label}: loss {float(ref_loss):.6g}", ref_loss, loss.detach().numpy())
    state = dict(model.state_dict())
    worst = {"state": (0.0, "", 0), "grad": (0.0, "", 0), "update": (0.0, "", 0)}

    def note_err(kind, err, name):
        e, nm, n = worst[kind]
        worst[kind] = (err, name, n + 1) if err >= e else (e, nm, n + 1)

    for k in sorted(p):
        f = os.path.join(out, f"new.{k}.npy")
        if k.startswith("opt.") or k in skip or not os.path.exists(f):
            continue
        old, new, got = p[k].numpy(), np.load(f), state[torch_name(k)].detach().numpy()
        if "running_" in k:
            note_err("state", float(np.abs(new - got).max()) / max(1.0, float(np.abs(new).max())), k)
            continue
        g_ref = np.load(os.path.join(out, f"new.opt.m.{k}.npy")) / (1 - 0.9)
        g_peer = grads[torch_name(k)]
        gmax = float(np.abs(g_ref).max())
        note_err("grad", float(np.abs(g_ref - g_peer).max()) / max(gmax, 1e-30), k)
        big = np.abs(g_ref) >= 1e-3 * gmax
        # beyond 2 ulps of the parameter itself: new - old cannot be finer
        # than the f32 rounding of new (1 ulp of a LayerNorm weight of 1 is
        # 1.2e-3 of a 1e-4 step)
        slack = 2 * np.spacing(np.maximum(np.abs(new), np.abs(got)).astype(np.float32))
        diff = np.maximum(np.abs(new.astype(np.float64) - got) - slack, 0.0)
        note_err("update", float(diff[big].max()) / lr if big.any() else 0.0, k)
    for kind, what in (("state", "state updates (BN running statistics)"),
                       ("grad", "clipped gradients, relative to each tensor's largest"),
                       ("update", "parameter updates (new - old) / lr, beyond 2 ulps")):
        err, name, n = worst[kind]
        if n:
            ok &= compare(f"{label}: {n} {what}, worst {name}", np.zeros(1), np.full(1, err))
    return ok


def compile_init(itrc, itr_run, model, defines, tmp):
    plan = os.path.join(tmp, f"{model}.plan")
    cmd = [itrc, "compile", os.path.join(ROOT, "models", f"{model}.ir"), "-o", plan]
    for d in defines:
        cmd += ["-D", d]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([itr_run, plan, "init", "--seed", "1", "-o", os.path.join(tmp, "w.safetensors")], check=True,
                   stdout=subprocess.DEVNULL)
    return plan, read_safetensors(os.path.join(tmp, "w.safetensors"))


def check_vseinf(itrc, itr_run, tmp):
    """VSE∞ (bigru) training step, epoch 0 (sum hinge) and epoch 1
    (max-violation): loss, BN running statistics, every update but
    img_mlp1.bias (its gradient is zero up to rounding: the training-mode BN
    right after it removes any constant, docs/models.md)."""
    d, w, img_dim, n = 16, 8, 24, 6
    plan, p = compile_init(itrc, itr_run, "vse_inf", [f"D={d}", f"W={w}", f"img_dim={img_dim}"], tmp)
    g = torch.Generator().manual_seed(11)
    regions = torch.rand(n, 36, img_dim, generator=g) - 0.5
    words = torch.randint(1, 10000, (n, 12), generator=g)
    lengths = caption_lengths(n)
    ok = True
    for epoch in (0, 1):
        m = nets.VseInf(img_dim=img_dim, w=w, d=d).train()
        load_itrc_weights(m, p)
        m.use_max = epoch >= 1
        ok &= train_step_check(f"vse_inf train, epoch {epoch} ({'max-violation' if epoch else 'sum'} hinge)",
                               itr_run, plan, p, m, [("regions", regions), ("words", words), ("lengths", lengths)],
                               ["--in", f"epoch=scalar:{epoch}"],
                               lambda ps: torch.optim.AdamW(ps, lr=5e-4, weight_decay=0.01), 5e-4, tmp,
                               skip=("img_mlp1.bias",))
    return ok


def check_tern(itrc, itr_run, tmp):
    """TERN training step with dropout 0 (the masks cannot be shared): two
    visual layers behind an input projection (img_dim != d_img), two shared
    layers, padded token features; loss and every update."""
    n = 6
    defines = ["d_img=16", "img_heads=2", "img_ff=32", "n_img_layers=2", "D=16", "heads=2", "ff=32",
               "n_shared_layers=2", "tok_dim=12", "img_dim=24", "dropout_p=0.0"]
    plan, p = compile_init(itrc, itr_run, "tern", defines, tmp)
    g = torch.Generator().manual_seed(13)
    regions = torch.rand(n, 36, 24, generator=g) - 0.5
    feats = torch.rand(n, 12, 12, generator=g) - 0.5
    lengths = caption_lengths(n)
    m = nets.Tern(d_img=16, img_heads=2, img_ff=32, n_img_layers=2, d=16, heads=2, ff=32, n_shared_layers=2,
                  tok_dim=12, img_dim=24, p=0.0).train()
    load_itrc_weights(m, p)
    return train_step_check("tern train", itr_run, plan, p, m,
                            [("regions", regions), ("token_feats", feats), ("token_lengths", lengths)], [],
                            lambda ps: torch.optim.Adam(ps, lr=1e-4), 1e-4, tmp)


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
    itrc, itr_run = os.path.join(build, "itrc"), os.path.join(build, "itr-run")
    n_img, n_cap, d, seq = 3, 4, 16, 12
    g = torch.Generator().manual_seed(3)
    img = nets.l2n(torch.rand(n_img, 36, d, generator=g) - 0.5)
    lengths = caption_lengths(n_cap)
    mask = length_mask(lengths)
    cap = nets.l2n(torch.rand(n_cap, seq, d, generator=g) - 0.5) * mask[:, :, None]   # padding rows 0
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "img.npy"), img.numpy())
        np.save(os.path.join(tmp, "cap.npy"), cap.numpy())
        np.save(os.path.join(tmp, "len.npy"), lengths.numpy().astype(np.int32))

        def check_score(model, fn):
            plan = os.path.join(tmp, f"{model}.plan")
            subprocess.run([itrc, "compile", os.path.join(ROOT, "models", f"{model}.ir"), "-D", f"D={d}", "-o", plan],
                           check=True, stdout=subprocess.DEVNULL)
            out = os.path.join(tmp, model)
            subprocess.run([itr_run, plan, "run", "score", "--in", f"img_regions={tmp}/img.npy",
                            "--in", f"cap_words={tmp}/cap.npy", "--in", f"cap_lengths={tmp}/len.npy", "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
            ref = np.load(os.path.join(out, "sims.npy"))
            with torch.no_grad():
                got = fn(img, cap, mask).numpy()
            return compare(f"{model} score", ref, got)

        for model, fn in (("scan_t2i", nets.scan_t2i_score), ("scan_i2t", nets.scan_i2t_score),
                          ("bfan", nets.bfan_score)):
            checks.append((model, lambda model=model, fn=fn: check_score(model, fn)))
        checks += [("vsepp", lambda: check_vsepp(itrc, itr_run, tmp)),
                   ("vse_inf", lambda: check_vseinf(itrc, itr_run, tmp)),
                   ("tern", lambda: check_tern(itrc, itr_run, tmp))]
        failed = 0
        for name, fn in checks:
            # an itrc or itr-run failure fails that model's check, not the others
            try:
                failed += not fn()
            except subprocess.CalledProcessError as e:
                print(f"{name}: {os.path.basename(e.cmd[0])} {e.cmd[2] if len(e.cmd) > 2 else ''} failed "
                      f"(exit {e.returncode}) MISMATCH")
                failed += 1
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
