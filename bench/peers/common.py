"""Shared pieces of the benchmark peers (backends.md §7, bench/run.sh).

Every peer script prints one JSON line per (workload, peer) on stdout:
  {"workload": ..., "peer": "torch-2.15.0-eager", "value": ..., "unit": ..., "better": "lower"|"higher", ...}
and its notes on stderr. Sizes are the real ones (36x2048 regions, D 1024,
word dim 300, vocabulary 10 000, L 12, batch 128); the maths is the one of
models/*.ir (see each function's comment), at 2 threads.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

R, IMG_DIM, D, W, V, L, B = 36, 2048, 1024, 300, 10000, 12, 128
TOK_DIM = 768   # TERN's frozen-encoder token features: BERT base's width (models/tern.ir tok_dim)
TORCH_VERSION = torch.__version__.split("+")[0]
EAGER = f"torch-{TORCH_VERSION}-eager"
COMPILE = f"torch-{TORCH_VERSION}-compile"


def args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--only", default="", help="comma-separated workloads to run (default: all)")
    p.add_argument("--peers", default="eager,compile,onnxruntime", help="which of eager, compile, onnxruntime")
    p.add_argument("--budget", type=float, default=float(os.environ.get("BENCH_BUDGET", "12")),
                   help="seconds of timed repeats per workload and peer")
    p.add_argument("--tile", type=int, default=128, help="images x captions of the scoring tile")
    p.add_argument("--chunk", type=int, default=32, help="images per score call")
    p.add_argument("--batch", type=int, default=B)
    a = p.parse_args()
    a.only = set(x for x in a.only.split(",") if x)
    a.peers = set(x for x in a.peers.split(",") if x)
    if "compile" in a.peers and not hasattr(torch, "compile"):
        note(f"torch {torch.__version__} has no torch.compile: the compile peer is skipped")
        a.peers.discard("compile")
    if "onnxruntime" in a.peers:
        try:
            import onnxruntime  # noqa: F401
            import onnx  # noqa: F401
        except ImportError:
            note("onnxruntime or onnx is not installed: the onnxruntime peer is skipped")
            a.peers.discard("onnxruntime")
    return a


def wanted(a, workload):
    return not a.only or workload in a.only


def note(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def emit(workload, peer, value, unit, better, samples, **extra):
    rec = {"workload": workload, "peer": peer, "value": float(f"{value:.6g}"), "unit": unit, "better": better,
           "samples": samples}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def median_time(fn, budget, warmup=1, min_n=3, max_n=15):
    """Median seconds of fn() after `warmup` untimed calls; repeats until the
    budget is spent (at least min_n unless one call alone exceeds it)."""
    for _ in range(warmup):
        fn()
    ts = []
    spent = 0.0
    while len(ts) < max_n:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        ts.append(dt)
        spent += dt
        if len(ts) >= min_n and spent >= budget:
            break
        if spent + dt > 2.5 * budget:
            break
    return statistics.median(ts), len(ts)


def caption_lengths(n, seq_len=L):
    """Caption k has length L - k mod (L/2 + 1): L down to L/2, the same
    pattern as bench/bench_itrc.c."""
    return torch.tensor([seq_len - k % (seq_len // 2 + 1) for k in range(n)], dtype=torch.int64)


def length_mask(lengths, seq_len=L):
    return (torch.arange(seq_len)[None, :] < lengths[:, None]).float()


def run_guarded(workload, peer, fn):
    """Runs one (workload, peer) measurement; a failure is a note, not a crash."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported and skipped
        msg = str(e).strip().splitlines()
        note(f"{workload} on {peer} failed: {type(e).__name__}: {msg[0] if msg else ''}")


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_peer():
    import onnxruntime as ort
    return f"onnxruntime-{ort.__version__}"


def onnx_export(module, example, path, names):
    """torch.onnx.export with the TorchScript exporter where this torch has
    it (fixed shapes), else the dynamo exporter."""
    module.eval()
    kw = dict(input_names=names, opset_version=17)
    try:
        torch.onnx.export(module, example, path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(module, example, path, **kw)
