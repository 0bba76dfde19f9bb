#!/usr/bin/env bash
# Creates bench/.venv with the benchmark peers (backends.md §7): PyTorch 2.x
# (CPU use) and ONNX Runtime, from PyPI.  Idempotent: re-running only installs
# what is missing.  bench/.venv is git-ignored.
#
# The PyPI torch wheel is CUDA-built.  We install it --no-deps, add its
# pure-Python dependencies and the four CUDA wheels that /usr/local/cuda-13.0
# does not provide (nvidia-cusparselt-cu13, nvidia-nvshmem-cu13,
# nvidia-cufile, nvidia-nccl-cu13); the rest of the CUDA libraries resolve
# from /usr/local/cuda-13.0 (LD_LIBRARY_PATH, see bench/peers/env.sh).
# PyPI serves no CPU-only torch wheel, so this is the way to a torch 2.x here.
# pip's resolver then warns that torch's CUDA requirements are not met: that
# is expected.
#
# Environment: TORCH_VERSION (default 2.15.0), PY (interpreter for the venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
PY="${PY:-}"
if [ -z "$PY" ]; then
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then PY=/usr/bin/python3
    else PY="$(command -v python3)"; fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv with $PY"
    "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    echo "== torch $TORCH_VERSION (CUDA-built wheel, --no-deps) + pure-Python deps"
    "${pip[@]}" --no-deps "torch==$TORCH_VERSION"
    "${pip[@]}" filelock typing-extensions sympy networkx jinja2 fsspec "setuptools>=77.0.3" numpy
    "${pip[@]}" --no-deps nvidia-cusparselt-cu13 nvidia-nvshmem-cu13 nvidia-cufile nvidia-nccl-cu13
fi
if ! "$venv/bin/python" -c 'import onnxruntime, onnx' 2>/dev/null; then
    echo "== onnxruntime, onnx"
    "${pip[@]}" onnxruntime onnx
fi
# onnx export in torch 2.x may need onnxscript (dynamo exporter); the
# TorchScript exporter (dynamo=False) does not, but install it if available.
"$venv/bin/python" -c 'import onnxscript' 2>/dev/null || "${pip[@]}" onnxscript || true

# shellcheck source=peers/env.sh
. "$here/peers/env.sh"
"$venv/bin/python" - <<'PY'
import torch, onnxruntime, onnx
torch.set_num_threads(2)
x = torch.randn(64, 64)
(x @ x).sum().item()
print(f"torch {torch.__version__} (mkl {torch.backends.mkl.is_available()}, "
      f"threads {torch.get_num_threads()}), onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}")
PY
