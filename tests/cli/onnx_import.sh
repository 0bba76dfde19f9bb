# ONNX models on the command line (docs/onnx.md): `itrc import` writes a
# readable .ir and the weights, which `itrc check` accepts; `itrc compile
# MODEL.onnx` compiles a model directly, and itr-run runs the plan with no
# weights file (the initializers are constants) giving the embeddings the
# PyTorch model gave (tests/gen_onnx_fixtures.py); errors name the op, the
# node and the opset, and leave no file behind.
source "$(dirname "$0")/lib.bash" "$@"

FIX=$SRC/tests/fixtures/onnx

run 0 "import the GRU text encoder" "$ITRC" import "$FIX/vsepp_text.onnx" -o "$TMP/text.ir" \
  --weights "$TMP/text.safetensors" --entry encode_text --name vsepp_text
contains "$OUT" "wrote $TMP/text.ir: 4 params, weights in $TMP/text.safetensors" "import summary"
contains "$TMP/text.ir" "model vsepp_text {" "model name"
contains "$TMP/text.ir" "entry encode_text(words: i64[B, L], lengths: i64[B]) -> (emb)" "entry with dynamic dims"
contains "$TMP/text.ir" "scan(gru_cell0" "the GRU is a scan"
[ -s "$TMP/text.safetensors" ] && pass || fail "weights file missing"
run 0 "check the imported .ir" "$ITRC" check "$TMP/text.ir"
contains "$OUT" "ok: 1 entry, 4 params" "check summary"

run 0 "compile an ONNX model directly" "$ITRC" compile "$FIX/vsepp_image.onnx" -o "$TMP/img.plan" --target ref
contains "$OUT" "wrote $TMP/img.plan: 1 entry" "compile summary"
if [ -x "$ITR_RUN" ]; then
  run 0 "run it without weights" "$ITR_RUN" "$TMP/img.plan" run forward --in "regions=$FIX/regions.npy" --out "$TMP/out"
  contains "$OUT" "emb: f32 [2, 8]" "embedding shape"
  # The embeddings PyTorch gave, to 5 decimals.
  if command -v python3 >/dev/null && python3 -c "import numpy" 2>/dev/null; then
    python3 -c "import numpy as n,sys; a=n.load(sys.argv[1]); b=n.load(sys.argv[2]); sys.exit(0 if n.allclose(a,b,atol=1e-5) else 1)" \
      "$TMP/out/emb.npy" "$FIX/image_emb.npy" && pass || fail "itr-run's embeddings differ from PyTorch's"
  fi
fi

# A model with an op the importer lacks: the message names the op, the node
# and the opset, and no .ir is written.
printf 'not a model' >"$TMP/bad.onnx"
run 1 "a file that is not a model" "$ITRC" import "$TMP/bad.onnx" -o "$TMP/bad.ir"
contains "$ERR" "bad.onnx: not a valid ONNX model" "bad file message"
[ ! -e "$TMP/bad.ir" ] && pass || fail "an .ir was written for a bad model"
CONV=/usr/share/libonnx-testdata/data/node/test_basic_conv_with_padding/model.onnx
if [ -f "$CONV" ]; then
  run 1 "an unsupported op" "$ITRC" compile "$CONV" -o "$TMP/conv.plan"
  contains "$ERR" "node 0 '(unnamed)' (Conv, opset" "names node, op and opset"
  contains "$ERR" "op 'Conv' is not supported by the ONNX importer" "says what is unsupported"
  [ ! -e "$TMP/conv.plan" ] && pass || fail "a plan was written for an unsupported model"
fi
run 1 "import without -o" "$ITRC" import "$FIX/vsepp_image.onnx"
contains "$ERR" "missing -o FILE.ir" "usage error"
summary
