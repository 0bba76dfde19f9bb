# `itrc export` (docs/onnx.md "Export"): every model's encoders and score
# entry, exported from a small plan with weights from `itr-run init`, and
# every mapped op (tests/test_onnx_export_ops.ir), pass
# ONNX's own checker (Debian's python3-onnx 1.12, with shape inference) and
# give in ONNX Runtime what itr-run gives on the same inputs, at two sizes of
# the dynamic dims from one export (tools/onnx-export-check.py: 1e-4 of
# max(1, max|itr-run|) for floats, integers exactly). Also the command's
# errors: an unknown entry, the training step, missing weights, an op
# without an ONNX form; none of them leaves a file.
#
# ONNX Runtime comes from PyPI into a venv under the build dir, made once
# (or $ITR_ORT_PYTHON, a python that has onnxruntime and numpy). Without
# python3-onnx, or when PyPI cannot be reached, the test exits 77: skipped,
# with the reason.
set -uo pipefail
BIN_DIR=$(cd "$1" && pwd)
SYS_PY=/usr/bin/python3
if ! "$SYS_PY" -c "import onnx.checker" 2>/dev/null; then
  echo "SKIP: Debian's python3-onnx is not installed (tools/install-deps.sh installs it)"
  exit 77
fi
ORT_PY=${ITR_ORT_PYTHON:-}
if [ -z "$ORT_PY" ]; then
  VENV=$BIN_DIR/onnx-venv
  ORT_PY=$VENV/bin/python
  if ! "$ORT_PY" -c "import onnxruntime, numpy" 2>/dev/null; then
    rm -rf "$VENV"
    if ! "$SYS_PY" -m venv "$VENV" >/dev/null 2>&1; then
      echo "SKIP: python3 -m venv failed (Debian's python3-venv is not installed)"
      exit 77
    fi
    if ! timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check onnxruntime numpy >"$BIN_DIR/onnx-venv.log" 2>&1; then
      echo "SKIP: could not install onnxruntime from PyPI into $VENV (see $BIN_DIR/onnx-venv.log)"
      rm -rf "$VENV"
      exit 77
    fi
  fi
fi
source "$(dirname "$0")/lib.bash" "$@"
set +e

CHECK=$SRC/tools/onnx-export-check.py
# Small sizes (the ones tests/cli/convert.sh uses), V = 20 words.
declare -A DEFS=(
  [vsepp]="-D D=8 -D W=6 -D img_dim=10 -D V=20"
  [scan_t2i]="-D D=8 -D W=6 -D img_dim=10 -D V=20"
  [scan_i2t]="-D D=8 -D W=6 -D img_dim=10 -D V=20"
  [bfan]="-D D=8 -D W=6 -D img_dim=10 -D V=20"
  [sgr]="-D D=8 -D W=6 -D img_dim=10 -D sim_dim=4 -D sgr_step=2 -D V=20"
  [saf]="-D D=8 -D W=6 -D img_dim=10 -D sim_dim=4 -D V=20"
  [vse_inf]="-D D=8 -D W=6 -D img_dim=10 -D gpo_pe=4 -D gpo_hidden=4 -D V=20"
  [tern]="-D d_img=8 -D img_heads=2 -D img_ff=16 -D n_img_layers=2 -D D=8 -D heads=2 -D ff=16 -D n_shared_layers=2 -D tok_dim=6 -D img_dim=8 -D aggregation=gated"
)

for m in vsepp scan_t2i scan_i2t bfan sgr saf vse_inf tern; do
  P=$TMP/$m.plan
  W=$TMP/$m.safetensors
  # shellcheck disable=SC2086
  run 0 "compile $m" "$ITRC" compile "$SRC/models/$m.ir" ${DEFS[$m]} --target ref -o "$P"
  run 0 "init $m" "$ITR_RUN" "$P" init --seed 3 -o "$W"
  for e in encode_image encode_text score; do
    O=$TMP/$m.$e.onnx
    run 0 "export $m $e" "$ITRC" export "$P" --entry "$e" --weights "$W" -o "$O"
    contains "$OUT" "wrote $O: entry $e of $m (ONNX opset 17)" "export summary of $m $e"
    run 0 "onnx.checker on $m $e" "$SYS_PY" -c \
      "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)" "$O"
    for sizes in "N=4 B=2 L=5" "N=2 B=3 L=7"; do
      dims=()
      for s in $sizes; do dims+=(--dim "$s"); done
      run 0 "ONNX Runtime vs itr-run, $m $e ($sizes)" "$ORT_PY" "$CHECK" "$O" --itr-run "$ITR_RUN" --plan "$P" \
        --entry "$e" --weights "$W" "${dims[@]}" --int-max 4 --work "$TMP/run.$m.$e"
      # Every output compared, none of them constant (a real result).
      matches "$OUT" "^$e\.[a-z_]+: \[.*\] max \|ort - itr\| = .* ok$" "$m $e outputs compared"
      if grep -q MISMATCH "$OUT"; then fail "$m $e: $(grep MISMATCH "$OUT")"; fi
    done
  done
done

# Every mapped op (tests/test_onnx_export_ops.ir), entry by entry, at two
# sizes of N; no parameters, so no weights.
OPS=$TMP/ops.plan
run 0 "compile the op entries" "$ITRC" compile "$SRC/tests/test_onnx_export_ops.ir" --target ref -o "$OPS"
for e in unary binary reduce movement index along sorting sources loop; do
  O=$TMP/ops.$e.onnx
  run 0 "export op entry $e" "$ITRC" export "$OPS" --entry "$e" -o "$O"
  run 0 "onnx.checker on op entry $e" "$SYS_PY" -c \
    "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)" "$O"
  for n in 3 2; do
    run 0 "ONNX Runtime vs itr-run, op entry $e (N=$n)" "$ORT_PY" "$CHECK" "$O" --itr-run "$ITR_RUN" --plan "$OPS" \
      --entry "$e" --dim "N=$n" --int-max 4 --work "$TMP/run.ops.$e"
    matches "$OUT" "^$e\.[a-z_]+: \[.*\] max \|ort - itr\| = .* ok$" "op entry $e outputs compared"
    if grep -q MISMATCH "$OUT"; then fail "op entry $e: $(grep MISMATCH "$OUT")"; fi
  done
done

# A .ir is compiled first; score uses no parameters, so needs no weights.
run 0 "export a .ir directly" "$ITRC" export "$SRC/models/vsepp.ir" ${DEFS[vsepp]} --entry score -o "$TMP/direct.onnx"
run 0 "its checker" "$SYS_PY" -c "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)" \
  "$TMP/direct.onnx"
# The dynamic dims are named after the model's dims.
run 0 "dynamic dims" "$SYS_PY" -c "
import onnx, sys
g = onnx.load(sys.argv[1]).graph
shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input}
assert shapes == {'v': ['N', 8], 'u': ['B', 8]}, shapes
assert [n.op_type for n in g.node] == ['Transpose', 'MatMul'], [n.op_type for n in g.node]" "$TMP/direct.onnx"
run 0 "the GRU is a Scan" "$SYS_PY" -c "
import onnx, sys
g = onnx.load(sys.argv[1]).graph
scans = [n for n in g.node if n.op_type == 'Scan']
assert len(scans) == 1, [n.op_type for n in g.node]
attrs = {a.name: a for a in scans[0].attribute}
assert attrs['num_scan_inputs'].i == 2 and list(attrs['scan_input_axes'].ints) == [1, 1], attrs
assert len(attrs['body'].g.node) > 5" "$TMP/vsepp.encode_text.onnx"

# Errors name what is wrong and write nothing.
run 1 "an unknown entry" "$ITRC" export "$TMP/vsepp.plan" --entry encode -o "$TMP/bad.onnx"
contains "$ERR" "the model has no entry 'encode' (its inference entries: encode_image, encode_text, score)" \
  "unknown entry message"
run 1 "the training step" "$ITRC" export "$TMP/vsepp.plan" --entry train -o "$TMP/bad.onnx"
contains "$ERR" "entry 'train' is the training step; only inference entries are exported" "train message"
run 1 "missing weights" "$ITRC" export "$TMP/vsepp.plan" --entry encode_image -o "$TMP/bad.onnx"
contains "$ERR" "entry 'encode_image' uses parameter 'img_fc.weight': give the weights with --weights" \
  "missing weights message"
cat >"$TMP/noisy.ir" <<'EOF'
model noisy {
  dim N
  entry forward(x: f32[N, 4], seed: i64[]) -> (y) {
    return x + random_uniform(seed, shape=[N, 4])
  }
}
EOF
run 1 "an op without an ONNX form" "$ITRC" export "$TMP/noisy.ir" --entry forward -o "$TMP/bad.onnx"
contains "$ERR" "(random_uniform): cannot be exported to ONNX: op 'random_uniform' draws from Philox" \
  "unsupported op message"
contains "$ERR" "noisy.ir:4:" "the message has the node's location"
[ ! -e "$TMP/bad.onnx" ] && pass || fail "a file was written after an error"
run 1 "export without --entry" "$ITRC" export "$TMP/vsepp.plan" -o "$TMP/bad.onnx"
contains "$ERR" "missing --entry NAME" "usage error"
summary
