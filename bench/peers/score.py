#!/usr/bin/env python3
"""Scoring throughput (pairs/s) of SCAN t2i, SCAN i2t, SGR, SAF and BFAN on an
images x captions tile (default 128 x 128, in calls of --chunk images x all
captions, as bench_itrc does), on encoded features (the models' `score`
entries): eager, torch.compile, ONNX Runtime."""
import os
import tempfile

import torch

import nets
from common import (COMPILE, D, EAGER, R, args, caption_lengths, emit, length_mask, median_time, note, onnx_export,
                    ort_peer, ort_session, run_guarded, wanted)


def inputs(kind, a):
    g = torch.Generator().manual_seed(7)
    img = torch.rand(a.tile, R, D, generator=g) - 0.5
    cap = torch.rand(a.tile, 12, D, generator=g) - 0.5
    mask = length_mask(caption_lengths(a.tile))
    if kind in ("sgr", "saf"):
        vglo = torch.rand(a.tile, D, generator=g) - 0.5
        uglo = torch.rand(a.tile, D, generator=g) - 0.5
        chunks = [(img[i:i + a.chunk], vglo[i:i + a.chunk], cap, uglo, mask) for i in range(0, a.tile, a.chunk)]
    else:
        chunks = [(img[i:i + a.chunk], cap, mask) for i in range(0, a.tile, a.chunk)]
    return chunks


def module(kind):
    torch.manual_seed(0)
    if kind in ("sgr", "saf"):
        return nets.SgrafHead(kind).eval()
    fn = {"scan_t2i": nets.scan_t2i_score, "scan_i2t": nets.scan_i2t_score, "bfan": nets.bfan_score}[kind]
    return nets.ScanScore(fn).eval()


def main():
    a = args(__doc__)
    pairs = a.tile * a.tile
    for kind in ("scan_t2i", "scan_i2t", "sgr", "saf", "bfan"):
        workload = f"{kind}_score"
        if not wanted(a, workload):
            continue
        chunks = inputs(kind, a)
        m = module(kind)

        def tile_fn(f):
            def run():
                with torch.inference_mode():
                    for c in chunks:
                        f(*c)
            return run

        if "eager" in a.peers:
            def eager():
                t, n = median_time(tile_fn(m), a.budget)
                emit(workload, EAGER, pairs / t, "pairs/s", "higher", n)
            run_guarded(workload, EAGER, eager)
        if "compile" in a.peers:
            def compiled():
                cm = torch.compile(m)
                t, n = median_time(tile_fn(cm), a.budget, warmup=2)
                emit(workload, COMPILE, pairs / t, "pairs/s", "higher", n)
            run_guarded(workload, COMPILE, compiled)
        if "onnxruntime" in a.peers:
            def ort_run():
                names = ["v", "vglo", "u", "uglo", "mask"] if kind in ("sgr", "saf") else ["img", "cap", "mask"]
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, f"{kind}.onnx")
                    with torch.no_grad():
                        onnx_export(m, chunks[0], path, names)
                    sess = ort_session(path)
                    feeds = [{k: x.numpy() for k, x in zip(names, c)} for c in chunks]

                    def run():
                        for f in feeds:
                            sess.run(None, f)
                    t, n = median_time(run, a.budget)
                emit(workload, ort_peer(), pairs / t, "pairs/s", "higher", n)
            run_guarded(workload, ort_peer(), ort_run)
        note(f"{workload} done")


if __name__ == "__main__":
    main()
