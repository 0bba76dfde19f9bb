#!/usr/bin/env python3
"""Checks that the peers compute the models' maths, against itr-run on the
reference interpreter, on small random inputs: the parameter-free score
functions of bench/peers/nets.py (SCAN t2i, SCAN i2t, BFAN; 3 images x 4
captions, D 16, 36 regions, L 12) and VSE++'s encoders and whole training
step (loss, then the parameters after clipping and Adam) with the
parameters of `itr-run init`.

    bench/.venv/bin/python bench/peers/check.py BUILD_DIR
"""
import os
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


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
    itrc, itr_run = os.path.join(build, "itrc"), os.path.join(build, "itr-run")
    n_img, n_cap, d, seq = 3, 4, 16, 12
    g = torch.Generator().manual_seed(3)
    img = nets.l2n(torch.rand(n_img, 36, d, generator=g) - 0.5)
    lengths = caption_lengths(n_cap)
    mask = length_mask(lengths)
    cap = nets.l2n(torch.rand(n_cap, seq, d, generator=g) - 0.5) * mask[:, :, None]   # padding rows 0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "img.npy"), img.numpy())
        np.save(os.path.join(tmp, "cap.npy"), cap.numpy())
        np.save(os.path.join(tmp, "len.npy"), lengths.numpy().astype(np.int32))
        for model, fn in (("scan_t2i", nets.scan_t2i_score), ("scan_i2t", nets.scan_i2t_score),
                          ("bfan", nets.bfan_score)):
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
            failed += not compare(f"{model} score", ref, got)
        failed += not check_vsepp(itrc, itr_run, tmp)
    print(f"{4 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
