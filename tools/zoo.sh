#!/usr/bin/env bash
# Trains and evaluates the model zoo on the default synthetic data set and
# prints one results row per model (docs/models.md, "Results"). Usage:
#   bash tools/zoo.sh BUILD_DIR OUT_DIR [MODEL...]
# Every model uses the same small sizes (D=64, word dim 32) and its own
# optimizer at lr 0.005 (×0.1 after epoch 7), batch 64, seed 1. The global
# models (VSE++, VSE∞) train 10 epochs; the pair-scoring models (SCAN,
# SGRAF) score every pair of the batch in the loss and cost ~4 min per epoch
# on the reference interpreter with 2 cores, so they train 2 epochs. Models
# whose max-violation loss stalls from scratch at this size use the sum-hinge
# warm-up for their first epoch.
set -euo pipefail
build=${1:-build}; out=${2:-zoo-out}; shift 2 || true
itrc="$build/itrc"; run="$build/itr-run"
mkdir -p "$out"
[ -f "$out/data/vocab.json" ] || "$build/itr-data" synth "$out/data" >/dev/null
V=$(grep -o '"idx": *[0-9]*' "$out/data/vocab.json" | grep -o '[0-9]*$')
common=(-D D=64 -D W=32 -D gru_init=0.125 -D img_dim=256 -D R=12 -D "V=$V")
train=(--data "$out/data" --batch-size 64 --lr 0.005 --seed 1 --checkpoint-every 100000)

# name | model file | extra compile flags | epochs
specs=(
  "vsepp|models/vsepp.ir|-D warmup_epochs=1|10"
  "scan_t2i|models/scan_t2i.ir||2"
  "scan_i2t|models/scan_i2t.ir||2"
  "vse_inf|models/vse_inf.ir|-D warmup_epochs=1|10"
  "saf|models/saf.ir|-D sim_dim=16 -D warmup_epochs=1|2"
  "sgr|models/sgr.ir|-D sim_dim=16 -D warmup_epochs=1|2"
)
want=("$@")
for spec in "${specs[@]}"; do
  IFS='|' read -r name file extra epochs <<<"$spec"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $name " ]]; then continue; fi
  # shellcheck disable=SC2086
  "$itrc" compile "$file" "${common[@]}" $extra -o "$out/$name.plan" >/dev/null
  rm -rf "$out/$name"
  start=$(date +%s)
  "$run" "$out/$name.plan" train "${train[@]}" --epochs "$epochs" --lr-schedule step:7 --out "$out/$name" \
      >"$out/$name.train.log" 2>&1
  secs=$(( $(date +%s) - start ))
  "$run" "$out/$name.plan" eval --data "$out/data" --split test --weights "$out/$name/best.safetensors" --json -q \
      >"$out/$name.json"
  echo "$name $secs $epochs $(cat "$out/$name.json")" | tee -a "$out/results.txt"
done
# Ensembles of the members trained above (similarities averaged).
ens() {
  local name=$1 a=$2 b=$3
  [ -f "$out/$a/best.safetensors" ] && [ -f "$out/$b/best.safetensors" ] || return 0
  "$run" "$out/$a.plan" eval --data "$out/data" --split test --weights "$out/$a/best.safetensors" --json -q \
      --ensemble "$out/$b.plan:$out/$b/best.safetensors" >"$out/$name.json"
  echo "$name - - $(cat "$out/$name.json")" | tee -a "$out/results.txt"
}
ens "scan_t2i+i2t" scan_t2i scan_i2t
ens "sgr+saf" sgr saf
