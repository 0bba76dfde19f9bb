#!/usr/bin/env python3
"""Runs an ONNX model exported by `itrc export` in ONNX Runtime and compares
its outputs with itr-run's on the same inputs (docs/onnx.md, "Export").

    onnx-export-check.py MODEL.onnx --itr-run BIN --plan P --entry E
        [--weights W] [--dim NAME=VALUE]... [--int-max K] --work DIR

Inputs are drawn from a fixed seed with the shapes of the model's inputs:
each dynamic dim (dim_param) takes its --dim value (default 3), floats are
uniform in [-1, 1), integers uniform in [1, K] (valid word ids and
lengths). Every output must match itr-run's to 1e-4 of max(1, max|itr-run|)
(f32; integers and booleans exactly), and a float output of more than one
element must not be constant (that would compare nothing). Prints one line per output with the
largest difference; exits 1 on a mismatch, 2 on a usage or run error.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

NP = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int32)": np.int32,
      "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--itr-run", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--entry", required=True)
    ap.add_argument("--weights")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--int-max", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    dims = {}
    for d in a.dim:
        k, v = d.split("=")
        dims[k] = int(v)
    os.makedirs(a.work, exist_ok=True)
    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(a.seed)
    feeds, args = {}, []
    for i in sess.get_inputs():
        shape = [s if isinstance(s, int) else dims.get(s, 3) for s in i.shape]
        dt = NP[i.type]
        if np.issubdtype(dt, np.floating):
            x = rng.uniform(-1, 1, size=shape).astype(dt)
        elif dt == np.bool_:
            x = rng.uniform(size=shape) < 0.5
        else:
            x = rng.integers(1, a.int_max + 1, size=shape).astype(dt)
        feeds[i.name] = x
        path = os.path.join(a.work, i.name + ".npy")
        np.save(path, x)
        args += ["--in", f"{i.name}={path}"]
    out_dir = os.path.join(a.work, "out")
    cmd = [a.itr_run, a.plan, "run", a.entry, *args, "--out", out_dir]
    if a.weights:
        cmd += ["--weights", a.weights]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"itr-run failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}", file=sys.stderr)
        return 2
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, feeds)
    bad = 0
    for name, g in zip(names, got):
        want = np.load(os.path.join(out_dir, name + ".npy"))
        if g.shape != want.shape or g.dtype != want.dtype:
            print(f"{a.entry}.{name}: ONNX Runtime gave {g.dtype}{list(g.shape)}, itr-run {want.dtype}{list(want.shape)}")
            bad += 1
            continue
        if np.issubdtype(want.dtype, np.floating):
            scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
            diff = float(np.max(np.abs(g.astype(np.float64) - want))) if want.size else 0.0
            ok = diff <= 1e-4 * scale and np.all(np.isfinite(g) == np.isfinite(want))
            if want.size > 1 and np.all(want == want.flat[0]):
                print(f"{a.entry}.{name}: itr-run's output is constant ({want.flat[0]}); the comparison shows nothing")
                ok = False
        else:
            diff = float(np.max(np.abs(g.astype(np.int64) - want.astype(np.int64)))) if want.size else 0.0
            ok = diff == 0
        print(f"{a.entry}.{name}: {list(want.shape)} max |ort - itr| = {diff:.3g} {'ok' if ok else 'MISMATCH'}")
        bad += 0 if ok else 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
