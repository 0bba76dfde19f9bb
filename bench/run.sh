#!/usr/bin/env bash
# `make bench` (backends.md §7): builds itrc, runs the peers (bench/peers/*.py)
# and itrc's side (bench_itrc: LLVM backend and reference interpreter) on the
# same workloads at the real sizes, 2 threads, in one run; prints one table of
# ratios against the best peer per workload and writes bench/results.json.
#
#   bench/run.sh [BUILD_DIR]          (default: build)
#
# Environment:
#   BENCH_ONLY=w1,w2        only these workloads (names as in the table)
#   BENCH_BUDGET=S          seconds of timed repeats per workload and peer (default 12)
#   BENCH_BACKENDS=llvm,ref itrc backends to time (default both)
#   BENCH_PEERS=eager,compile,onnxruntime   peers to run; BENCH_PEERS=none skips them
#   BENCH_NO_BUILD=1        do not build (use BUILD_DIR as it is)
#   BENCH_THREADS=2         threads for every side
#   BENCH_LIMIT=S           bench_itrc stops a (workload, backend) after S seconds,
#                           JIT included (default 120; TERN's step at batch 128
#                           needs more on a 2-core machine)
# Peers run in bench/.venv (bench/setup-peers.sh makes it); without it they
# run on Debian's python3-torch (1.13, no torch.compile) where installed, and
# the report says which ran.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build}"
case "$build" in /*) ;; *) build="$root/$build";; esac
here="$root/bench"
threads="${BENCH_THREADS:-2}"
budget="${BENCH_BUDGET:-12}"
peers="${BENCH_PEERS:-eager,compile,onnxruntime}"
only="${BENCH_ONLY:-}"
export BENCH_THREADS="$threads" BENCH_BUDGET="$budget"

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    echo "== building bench_itrc in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j 2 --target bench_itrc itrc itr-run
fi
exe="$build/bench/bench_itrc"
[ -x "$exe" ] || { echo "bench: $exe is missing (build it: cmake --build $build --target bench_itrc)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/records.jsonl"

# ---- the peers
py=""
peer_env="none"
if [ "$peers" != "none" ]; then
    if [ -x "$here/.venv/bin/python" ] && "$here/.venv/bin/python" -c 'import torch' 2>/dev/null; then
        py="$here/.venv/bin/python"; peer_env="bench/.venv (PyPI)"
    elif /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        py=/usr/bin/python3; peer_env="Debian python3-torch"
        echo "bench: bench/.venv is missing (bench/setup-peers.sh makes it): the peers run on Debian's python3-torch" >&2
    else
        echo "bench: no PyTorch (bench/.venv or python3-torch): the peers are skipped; run bench/setup-peers.sh" >&2
    fi
fi
if [ -n "$py" ]; then
    # shellcheck source=peers/env.sh
    . "$here/peers/env.sh"
    "$py" - > "$tmp/versions.json" <<'PY' || true
import json, platform
v = {"python": platform.python_version()}
try:
    import torch; v["torch"] = torch.__version__; v["torch_compile"] = hasattr(torch, "compile")
    v["torch_mkl"] = torch.backends.mkl.is_available()
except Exception: pass
try:
    import onnxruntime; v["onnxruntime"] = onnxruntime.__version__
except Exception: pass
print(json.dumps(v))
PY
    # the peers compute the models' maths: checked against itr-run first
    if [ -x "$build/itrc" ] && [ -x "$build/itr-run" ]; then
        echo "== peers: check.py (the peers' maths against itr-run, small sizes)"
        (cd "$here/peers" && "$py" check.py "$build") || echo "bench: WARNING: the peers do not match itrc (check.py)" >&2
    fi
    for script in train encode score; do
        echo "== peers: $script.py ($peer_env)"
        (cd "$here/peers" && "$py" "$script.py" --peers "$peers" ${only:+--only "$only"} --budget "$budget") \
            2> >(grep -v -E 'Warning|warn\(|^\s*$|^\s*check\($|_generic_rnn|return _' >&2) | tee -a "$tmp/records.jsonl" || \
            echo "bench: $script.py failed" >&2
    done
fi

# ---- itrc
echo "== itrc: bench_itrc"
"$exe" --threads "$threads" --budget "$budget" ${BENCH_BACKENDS:+--backends "$BENCH_BACKENDS"} ${only:+--only "$only"} \
    ${BENCH_LIMIT:+--limit "$BENCH_LIMIT"} \
    | tee -a "$tmp/records.jsonl" || echo "bench: bench_itrc failed" >&2

# ---- the table
load="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/report.py" "$tmp/records.jsonl" "$here/results.json" --peer-env "$peer_env" \
    --versions "$tmp/versions.json" --load "$load"
