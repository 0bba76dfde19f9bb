#!/usr/bin/env bash
# Installs the Debian packages itrc needs to build and test, if any are
# missing. As root it runs apt-get; otherwise it names the missing packages
# and fails, so `make` never half-works on a machine without them.
set -euo pipefail

packages=(cmake make gcc pkg-config libprotobuf-c-dev protobuf-c-compiler libjansson-dev libxxhash-dev llvm-14-dev libopenblas-dev)
# ONNX import (frontends/onnx): the onnx.proto schema, and ONNX's node test
# vectors, the import conformance suite (tests/test_onnx_node.c).
packages+=(libonnx-dev libonnx-testdata)
# itr-convert reads checkpoints with tools/itr_convert_read.py (stdlib only;
# PyTorch is used where installed, never required).
packages+=(python3)
# ONNX export (tests/cli/onnx_export.sh): ONNX's checker, and a venv into
# which the test installs onnxruntime from PyPI.
packages+=(python3-onnx python3-venv)
# Fuzzing (tests/fuzz/, make fuzz): clang and its libFuzzer runtime.
packages+=(clang-14 libclang-rt-14-dev)
# tests/test_cuda_render.c runs the rendered CUDA C on the host, compiled as C++.
packages+=(g++)
packages+=("$@")   # extra packages a target needs (e.g. python3-torch for fixtures)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "itrc: missing Debian packages: ${missing[*]}" >&2
  echo "itrc: run 'make' as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "itrc: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
