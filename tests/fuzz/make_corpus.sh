#!/usr/bin/env bash
# Regenerates the project-made seeds of tests/fuzz/corpus/: files named
# seed-* are written by itrc, itr-run and itr-data from BUILD (default
# build); the hand-made edge cases (edge-*) and the regression inputs of
# findings (regress-*) are committed as they are and left alone.
#   tests/fuzz/make_corpus.sh [BUILD]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
corpus=$root/tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
itrc=$build/itrc run=$build/itr-run data=$build/itr-data

# Models small enough that their plans stay a few KB: a GRU (a scan over a
# body graph), a training step with Adam (optimizer state, updates), and an
# entry the llvm target fuses into kernels (schedules).
cat > "$tmp/rnn.ir" <<'IR'
import "modules/nn.ir"
import "modules/rnn.ir"

model rnn(D: int = 2) {
  dim B, L, V = 4
  let embed = embedding(V, D)
  let cell  = gru(D, D)
  entry text(words: i32[B, L], lengths: i32[B]) -> (h) {
    return cell.last(embed(words), lengths)
  }
}
IR
cat > "$tmp/train.ir" <<'IR'
import "modules/nn.ir"

model train(D: int = 3) {
  dim B
  let fc = linear(4, D)
  train(x: f32[B, 4], y: f32[B, 3]) -> (loss) {
    return sum(relu(fc(x)) * y, axes=[0, 1])
  }
  optimizer adam(lr=1e-3, clip_grad_norm=2.0)
}
IR
cat > "$tmp/one.ir" <<'IR'
model one {
  dim N
  param w: f32[N] = zeros
  entry f(x: f32[N, 2]) -> (y) {
    return sum(x, axes=[1]) * 2.0 + w
  }
}
IR

rm -f "$corpus"/*/seed-*
mkdir -p "$corpus"/{npy,safetensors,plan,ir,vocab,captions,onnx,onnx_tensor,convert,dataset}

# plans: the protobuf body (the fuzz target adds the header), and one whole file
for mt in one-ref one-llvm rnn-ref train-ref; do
  "$itrc" compile "$tmp/${mt%-*}.ir" --target ${mt#*-} -o "$tmp/$mt.plan" >/dev/null
  tail -c +33 "$tmp/$mt.plan" > "$corpus/plan/seed-$mt.body"
done
cp "$tmp/one-ref.plan" "$corpus/plan/seed-one-ref-file.plan"

# .ir text: the small test models, a zoo model and the printer's canonical form
for f in cli_small cli_fold lib_small tour grad_scan; do cp "$root/tests/ir/$f.ir" "$corpus/ir/seed-$f.ir"; done
cp "$root/models/vsepp.ir" "$corpus/ir/seed-vsepp.ir"
cp "$tmp/train.ir" "$corpus/ir/seed-train.ir"
"$itrc" print "$tmp/rnn.ir" > "$corpus/ir/seed-rnn-printed.ir"

# safetensors: initialised weights (f32, several ranks)
"$run" "$tmp/rnn-ref.plan" init --seed 1 -o "$corpus/safetensors/seed-rnn.safetensors" >/dev/null
"$run" "$tmp/one-ref.plan" init --seed 1 --dim N=3 -o "$corpus/safetensors/seed-one.safetensors" >/dev/null

# a tiny data set: region features and token lengths (.npy), captions, vocabulary
"$data" synth "$tmp/d" --images 1 --dev 1 --test 1 --regions 4 --dim 2 --objects 2 --attributes 2 \
  --token-feats 2 >/dev/null
cp "$tmp/d/dev_ims.npy" "$corpus/npy/seed-ims-f32.npy"
cp "$tmp/d/dev_caps_lens.npy" "$corpus/npy/seed-lens-i32.npy"
cp "$tmp/d/dev_caps.txt" "$corpus/captions/seed-dev.txt"
cp "$tmp/d/vocab.json" "$corpus/vocab/seed-synth.json"
"$data" vocab build "$tmp/d/dev_caps.txt" -o "$corpus/vocab/seed-dev.json" >/dev/null
# a data set's split packed as fuzz_dataset.c reads it: length-prefixed
# test_ims.npy and vocab.json, then test_caps.txt
python3 - "$tmp/d" "$corpus/dataset/seed-synth-test.bin" <<'PY'
import struct, sys
d, out = sys.argv[1], sys.argv[2]
parts = [open(f"{d}/{n}", "rb").read() for n in ("test_ims.npy", "vocab.json", "test_caps.txt")]
with open(out, "wb") as f:
    for b in parts[:2]:
        f.write(struct.pack("<H", len(b)) + b)
    f.write(parts[2])
PY
# outputs of a run: f32 and i32 arrays as itr-run writes them
"$itrc" compile "$root/tests/ir/cli_small.ir" --target ref -o "$tmp/small.plan" >/dev/null
"$run" "$tmp/small.plan" run make_inputs --out "$tmp/o" >/dev/null
cp "$tmp/o/x.npy" "$corpus/npy/seed-x-f32.npy"
cp "$tmp/o/ids.npy" "$corpus/npy/seed-ids-i32.npy"
# ONNX: a few of ONNX's own node-test models and tensors (Debian's
# libonnx-testdata), one per family of lowerings
nodes=/usr/share/libonnx-testdata/data/node
for t in add_bcast matmul_3d gemm_default_single_elem_vector_bias reshape_reduced_dims softmax_axis_1 gather_1 \
         slice concat_2d_axis_1 gru_seq_length lstm_defaults layer_normalization_2d_axis0 transpose_default \
         reduce_mean_keepdims_example where_example cast_FLOAT_to_DOUBLE top_k range_float_type_positive_delta \
         expand_dim_changed scan9_sum if loop11 erf batchnorm_example; do
  cp "$nodes/test_$t/model.onnx" "$corpus/onnx/seed-$t.onnx"
done
# If with a run-time condition (both branches and a where), a Loop of a
# known trip count (a scan) and one with an early exit (refused):
# frontends/onnx/control.c, fixtures of tests/gen_onnx_control_fixtures.py
for t in if_where loop_sum loop_early_exit; do
  cp "$root/tests/fixtures/onnx/$t.onnx" "$corpus/onnx/seed-$t.onnx"
done
# a GRU text encoder exported by itrc: a Scan whose body reads the
# enclosing graph's values by name (frontends/onnx/scan.c)
"$itrc" compile "$root/models/vsepp.ir" -D D=4 -D W=3 -D V=5 -D img_dim=4 --target ref -o "$tmp/vs.plan" >/dev/null
"$run" "$tmp/vs.plan" init -o "$tmp/vs.safetensors" >/dev/null
"$itrc" export "$tmp/vs.plan" --entry encode_text --weights "$tmp/vs.safetensors" \
  -o "$corpus/onnx/seed-itrc-export-gru.onnx" >/dev/null
for t in gru_seq_length top_k where_example cast_FLOAT_to_DOUBLE; do
  for f in "$nodes/test_$t"/test_data_set_0/*.pb; do
    cp "$f" "$corpus/onnx_tensor/seed-$t-$(basename "$f")"
  done
done

# checkpoint conversion: SCAN i2t's map, a NUL, and the reader script's
# safetensors of the test checkpoint (fuzz_convert.c)
python3 "$root/tools/itr_convert_read.py" --reader pickle "$root/tests/fixtures/ckpt/scan_i2t.pth" "$tmp/ck.safetensors" \
  >/dev/null
{ cat "$root/models/scan_i2t.ckpt-map"; printf '\0'; cat "$tmp/ck.safetensors"; } > "$corpus/convert/seed-scan_i2t.bin"

echo "corpus: $(find "$corpus" -name 'seed-*' | wc -l) seeds in $corpus"
