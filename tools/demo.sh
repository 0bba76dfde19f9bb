#!/usr/bin/env bash
# make demo: generate the default synthetic data set, compile VSE++ for its
# sizes, train it for about a minute on the CPU (the LLVM backend, where
# the build has LLVM: the plan is compiled with its kernels by default),
# evaluate on the test split and print the recall table, each step one
# command.
#
# The model is VSE++ (models/vsepp.ir) with VSE∞'s warm-up (warmup_epochs=1):
# the sum-of-negatives hinge during the first epoch, max-violation after.
# Trained from scratch with max-violation alone, a small VSE++ sits on the
# collapsed-embedding plateau for many epochs.
set -euo pipefail
build=${1:-build}
out=demo-out
itrc="$build/itrc"; run="$build/itr-run"; data_tool="$build/itr-data"
rm -rf "$out"
mkdir -p "$out"

step() { echo; echo "\$ $*"; "$@"; }

step "$data_tool" synth "$out/data"

# The default set: 2000 train images of 12 regions x 256 features; --data
# takes R, img_dim and the vocabulary size V from it.
step "$itrc" compile models/vsepp.ir --data "$out/data" -D D=64 -D W=32 -D gru_init=0.125 \
     -D warmup_epochs=1 -o "$out/vsepp.plan"
step "$run" "$out/vsepp.plan" train --data "$out/data" --epochs 10 --batch-size 64 --lr 0.005 --lr-schedule step:7 \
     --seed 1 --out "$out/run" --plot
step "$run" "$out/vsepp.plan" eval --data "$out/data" --split test --weights "$out/run/best.safetensors"
echo
echo "demo: run directory $out/run/ (best.safetensors, last.safetensors, log.jsonl, log.csv, curves.svg)"
