#!/usr/bin/env python3
"""VSE++ encoder throughput (models/vsepp.ir encode_image, encode_text) on a
batch of 128: eager, torch.compile, ONNX Runtime."""
import os
import tempfile

import torch

import nets
from common import (COMPILE, EAGER, IMG_DIM, R, V, args, caption_lengths, emit, median_time, note, onnx_export,
                    ort_peer, ort_session, run_guarded, wanted)


def main():
    a = args(__doc__)
    g = torch.Generator().manual_seed(7)
    regions = torch.rand(a.batch, R, IMG_DIM, generator=g) - 0.5
    words = torch.randint(1, V, (a.batch, 12), generator=g)
    lengths = caption_lengths(a.batch)
    torch.manual_seed(0)
    img = nets.VseppImage().eval()
    txt = nets.VseppText().eval()
    txt_padded = nets.VseppText(padded=True).eval()
    txt_padded.load_state_dict(txt.state_dict())
    cases = [("vsepp_encode_image", "img/s", img, img, (regions,), ["regions"]),
             ("vsepp_encode_text", "caps/s", txt, txt_padded, (words, lengths), ["words", "lengths"])]
    for workload, unit, m, m_onnx, x, names in cases:
        if not wanted(a, workload):
            continue

        def fn(f):
            def run():
                with torch.inference_mode():
                    f(*x)
            return run

        if "eager" in a.peers:
            def eager():
                t, n = median_time(fn(m), a.budget)
                emit(workload, EAGER, a.batch / t, unit, "higher", n)
            run_guarded(workload, EAGER, eager)
        if "compile" in a.peers:
            def compiled():
                t, n = median_time(fn(torch.compile(m)), a.budget, warmup=2)
                emit(workload, COMPILE, a.batch / t, unit, "higher", n)
            run_guarded(workload, COMPILE, compiled)
        if "onnxruntime" in a.peers:
            def ort_run():
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "m.onnx")
                    with torch.no_grad():
                        onnx_export(m_onnx, x, path, names)
                    sess = ort_session(path)
                    feed = {k: v.numpy() for k, v in zip(names, x)}
                    t, n = median_time(lambda: sess.run(None, feed), a.budget)
                emit(workload, ort_peer(), a.batch / t, unit, "higher", n)
            run_guarded(workload, ort_peer(), ort_run)
        note(f"{workload} done")


if __name__ == "__main__":
    main()
