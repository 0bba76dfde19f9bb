#!/usr/bin/env bash
# make demo: compile VSE++, initialise its weights, make a batch, encode both
# sides and score every image against every caption — each step one command.
set -euo pipefail
build=${1:-build}
out=demo-out
mkdir -p "$out"
itrc="$build/itrc"; run="$build/itr-run"

step() { echo; echo "\$ $*"; "$@"; }

step "$itrc" compile models/vsepp.ir -o "$out/vsepp.plan"
step "$itrc" dump "$out/vsepp.plan" | head -n 20
step "$run" "$out/vsepp.plan" init --seed 1 -o "$out/vsepp.safetensors"
step "$itrc" compile models/demo/batch.ir -o "$out/batch.plan"
step "$run" "$out/batch.plan" run make --in seed=scalar:7 --out "$out"
step "$run" "$out/vsepp.plan" run encode_image --weights "$out/vsepp.safetensors" --in regions="$out/regions.npy" --out "$out"
step "$run" "$out/vsepp.plan" run encode_text --weights "$out/vsepp.safetensors" \
     --in words="$out/words.npy" --in lengths="$out/lengths.npy" --out "$out"
step "$run" "$out/vsepp.plan" run score --weights "$out/vsepp.safetensors" \
     --in v="$out/img_emb.npy" --in u="$out/cap_emb.npy" --out "$out"
echo
echo "demo: similarity matrix written to $out/sims.npy (8 images x 8 captions); run directory: $out/"
