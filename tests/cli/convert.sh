# itr-convert on checkpoints in the original repositories' layouts
# (tests/fixtures/ckpt/, made by tests/gen_checkpoints.py): for every zoo
# model, convert the .pth, score images against captions through itr-run,
# and compare with the same run on the weights the generator wrote under
# itrc's names (NAME.ref.safetensors). Then the readers (restricted pickle,
# PyTorch where a Python with torch is found), the .ir path, and bad inputs.
source "$(dirname "$0")/lib.bash" "$@"
CONVERT=$BIN/itr-convert
F=$SRC/tests/fixtures/ckpt
PY=${ITR_PYTHON:-python3}
export ITR_PYTHON=$PY
# A Python with torch, for the torch reader (bench/.venv has one here).
TORCH_PY=${ITR_TEST_TORCH_PYTHON:-$SRC/bench/.venv/bin/python}
if ! "$TORCH_PY" -c 'import torch, numpy' 2>/dev/null; then TORCH_PY=; fi

# Test sizes of tests/gen_checkpoints.py.
declare -A DEFS=(
  [vsepp]="-D D=8 -D W=6 -D img_dim=10"
  [scan_t2i]="-D D=8 -D W=6 -D img_dim=10"
  [scan_i2t]="-D D=8 -D W=6 -D img_dim=10"
  [bfan]="-D D=8 -D W=6 -D img_dim=10"
  [sgr]="-D D=8 -D W=6 -D img_dim=10 -D sim_dim=4 -D sgr_step=2"
  [saf]="-D D=8 -D W=6 -D img_dim=10 -D sim_dim=4"
  [vse_inf]="-D D=8 -D W=6 -D img_dim=10 -D gpo_pe=4 -D gpo_hidden=4"
  [tern]="-D d_img=8 -D img_heads=2 -D img_ff=16 -D n_img_layers=2 -D D=8 -D heads=2 -D ff=16 -D n_shared_layers=2 -D tok_dim=6 -D img_dim=8 -D aggregation=gated"
)
MODELS="vsepp scan_t2i scan_i2t bfan sgr saf vse_inf tern"

# npy_close A B TOL: same shape, every value within TOL, all finite, and not
# all equal (a real score matrix); prints the largest difference.
npy_close() {
  "$PY" - "$@" <<'EOF'
import ast, math, struct, sys
def load(p):
    b = open(p, 'rb').read()
    assert b[:6] == b'\x93NUMPY'
    n = struct.unpack('<H', b[8:10])[0]
    h = ast.literal_eval(b[10:10 + n].decode())
    code = {'<f4': 'f', '<f8': 'd', '<i4': 'i', '<i8': 'q'}[h['descr']]
    data = b[10 + n:]
    return h['shape'], struct.unpack('<%d%s' % (len(data) // struct.calcsize(code), code), data)
(sa, a), (sb, b) = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3])
if sa != sb:
    sys.exit('shapes differ: %s vs %s' % (sa, sb))
if not all(math.isfinite(x) for x in a + b):
    sys.exit('a value is not finite')
if len(set(b)) < 2:
    sys.exit('the reference is constant: %s' % (b[:4],))
m = max(abs(x - y) for x, y in zip(a, b))
print('max |diff| %.3g over %d values' % (m, len(a)))
sys.exit(0 if m <= tol else 'max |diff| %.3g > %g' % (m, tol))
EOF
}

# st_equal A B: two safetensors files hold the same tensors, byte for byte.
st_equal() {
  "$PY" - "$@" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return {k: (v['dtype'], v['shape'], b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]])
            for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
sys.exit(0 if a == b else 'differ: %s' % sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:5])
EOF
}

# chain PLAN WEIGHTS DIR: encode_image, encode_text, then score on their
# outputs (in order, as the evaluator passes them); DIR/sims.npy.
chain() {
  local plan=$1 w=$2 dir=$3 img txt
  mkdir -p "$dir"
  case $plan in
    *tern*) img="--in regions=$F/regions_tern.npy"
            txt="--in token_feats=$F/token_feats.npy --in token_lengths=$F/lengths.npy" ;;
    *) img="--in regions=$F/regions.npy"; txt="--in words=$F/words.npy --in lengths=$F/lengths.npy" ;;
  esac
  "$ITR_RUN" "$plan" run encode_image $img -w "$w" --out "$dir" >"$dir/enc.txt" || return 1
  "$ITR_RUN" "$plan" run encode_text $txt -w "$w" --out "$dir" >>"$dir/enc.txt" || return 1
  local -a names paths args
  mapfile -t names < <("$ITR_RUN" "$plan" info | sed -n 's/^  score(\(.*\)) -> .*/\1/p' |
                        grep -oE '[A-Za-z_][A-Za-z0-9_]*:' | tr -d ':')
  mapfile -t paths < <(sed 's/.* -> //' "$dir/enc.txt")
  [ "${#names[@]}" -eq "${#paths[@]}" ] || { echo "score takes ${#names[@]} inputs, encoders gave ${#paths[@]}"; return 1; }
  for i in "${!names[@]}"; do args+=(--in "${names[$i]}=${paths[$i]}"); done
  "$ITR_RUN" "$plan" run score "${args[@]}" -w "$w" --out "$dir" >/dev/null
}

cd "$TMP"
for m in $MODELS; do
  P=$TMP/$m.plan
  # shellcheck disable=SC2086
  run 0 "compile $m" "$ITRC" compile "$SRC/models/$m.ir" ${DEFS[$m]} --target ref -o "$P"
  run 0 "convert $m (pickle reader)" "$CONVERT" "$P" "$F/$m.pth" -o "$TMP/$m.conv.safetensors" --reader pickle
  contains "$OUT" "wrote $TMP/$m.conv.safetensors" "$m: written"
  run 0 "$m: scores with the reference weights" chain "$P" "$F/$m.ref.safetensors" "$TMP/$m.ref"
  run 0 "$m: scores with the converted weights" chain "$P" "$TMP/$m.conv.safetensors" "$TMP/$m.conv"
  run 0 "$m: converted scores = reference scores (1e-6)" npy_close "$TMP/$m.conv/sims.npy" "$TMP/$m.ref/sims.npy" 1e-6
  echo "$m: $(cat "$OUT")"
  if [ -n "$TORCH_PY" ]; then
    run 0 "convert $m (torch reader)" env ITR_PYTHON="$TORCH_PY" "$CONVERT" "$P" "$F/$m.pth" -o "$TMP/$m.torch.safetensors" --reader torch
    contains "$OUT" "(reader: torch" "$m: the torch reader ran"
    run 0 "$m: both readers give the same tensors" st_equal "$TMP/$m.torch.safetensors" "$TMP/$m.conv.safetensors"
  fi
done
[ -n "$TORCH_PY" ] || echo "note: no Python with torch found: the torch reader was not exercised"

# Against the originals' own PyTorch forward passes (recorded by the
# generator): VSE++'s scores, and the SCAN-family encoders, whose image side
# folds weight_norm (dim=None in scan_i2t, dim=0 parametrization in bfan) and
# whose text side is the BiGRU (weight_*_reverse = the backward direction).
run 0 "vsepp: scores = the original's" npy_close "$TMP/vsepp.conv/sims.npy" "$F/vsepp.torch.sims.npy" 1e-5
echo "vsepp vs PyTorch: $(cat "$OUT")"
for m in scan_t2i scan_i2t bfan; do
  for o in img_regions cap_words; do
    run 0 "$m: $o = the original's" npy_close "$TMP/$m.conv/$o.npy" "$F/$m.torch.$o.npy" 1e-5
    echo "$m $o vs PyTorch: $(cat "$OUT")"
  done
done

# What the report says.
run 0 "scan_i2t report" "$CONVERT" "$TMP/scan_i2t.plan" "$F/scan_i2t.pth" -o "$TMP/x.safetensors"
contains "$OUT" "img_fc.weight <- 0.fc.weight_g, 0.fc.weight_v (weight_norm folded)" "weight_norm folded"
contains "$OUT" "not weights, not read: epoch, best_rsum, Eiters, opt" "other entries named"
run 0 "vse_inf report" "$CONVERT" "$TMP/vse_inf.plan" "$F/vse_inf.pth" -o "$TMP/x.safetensors"
contains "$OUT" "removed DataParallel's 'module.' from 43 names" "module. prefix"
contains "$OUT" "0.mlp.bns.1.weight f32 [8]" "the unused BatchNorm is listed as ignored"
run 0 "tern report" "$CONVERT" "$TMP/tern.plan" "$F/tern.pth" -o "$TMP/x.safetensors" -v
contains "$OUT" "img_txt_enc.txt_enc.bert_model.* (7 tensors)" "BERT tensors grouped as ignored"
contains "$OUT" "shared1.self_attn.in_proj_weight <- img_txt_enc.transformer_encoder_1.layers.1.self_attn.in_proj_weight" "-v lists every rule"
contains "$OUT" "not weights, not read: config, optimizer, epoch" "optimizer state not read"

# MODEL as a zoo name (elaborated with -D) gives the same weights as the plan.
# shellcheck disable=SC2086
run 0 "convert by model name" "$CONVERT" vsepp "$F/vsepp.pth" ${DEFS[vsepp]} -o "$TMP/byname.safetensors"
run 0 "model name and plan agree" st_equal "$TMP/byname.safetensors" "$TMP/vsepp.conv.safetensors"
# An extracted .safetensors (the reader's output) is read without Python.
run 0 "extract" "$PY" "$SRC/tools/itr_convert_read.py" --reader pickle "$F/sgr.pth" "$TMP/sgr.raw.safetensors"
run 0 "convert an extraction" env ITR_PYTHON=/nonexistent/python "$CONVERT" "$TMP/sgr.plan" "$TMP/sgr.raw.safetensors" -o "$TMP/sgr2.safetensors"
run 0 "extraction converts the same" st_equal "$TMP/sgr2.safetensors" "$TMP/sgr.conv.safetensors"

# Bad inputs: non-zero exit, a message that says what, nothing written.
run 1 "missing tensor" "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp_missing.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "parameter 'rnn.b_hh': the checkpoint has no tensor '1.rnn.bias_hh_l0'" "missing tensor named"
contains "$ERR" "nothing was written to $TMP/bad.safetensors" "says nothing was written"
check test ! -e "$TMP/bad.safetensors" "no output after an error"
run 1 "wrong shape" "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp_badshape.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "parameter 'img_fc.weight' (checkpoint tensor '0.fc.weight')" "mismatch names both tensors"
contains "$ERR" "[8, 11]" "mismatch gives the checkpoint's shape"
contains "$ERR" "[8, 10]" "mismatch gives the parameter's shape"
run 1 "a text file" "$CONVERT" "$TMP/vsepp.plan" "$F/not_a_checkpoint.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "not a PyTorch checkpoint (neither a zip archive nor a pickle stream)" "not a checkpoint"
for evil in evil evil_zip; do
  run 1 "$evil: forbidden global" "$CONVERT" "$TMP/vsepp.plan" "$F/$evil.pth" -o "$TMP/bad.safetensors" --reader pickle
  contains "$ERR" "refers to the global 'os.mkdir'" "$evil: the global is named"
  check test ! -e itr_convert_pwned "$evil: the pickle did not run"
  if [ -n "$TORCH_PY" ]; then
    run 1 "$evil: torch reader refuses" env ITR_PYTHON="$TORCH_PY" "$CONVERT" "$TMP/vsepp.plan" "$F/$evil.pth" -o "$TMP/bad.safetensors" --reader torch
    contains "$ERR" "refused to load it with weights_only=True" "$evil: torch refuses"
    check test ! -e itr_convert_pwned "$evil: the pickle did not run under torch"
  fi
done
check test ! -e "$TMP/bad.safetensors" "still no output"
run 1 "wrong model" "$CONVERT" "$TMP/sgr.plan" "$F/vsepp.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "parameter 'cap_rnn.fwd.w_ih': the checkpoint has no tensor '1.cap_rnn.weight_ih_l0'" "another model's checkpoint"
run 1 "no python" env ITR_PYTHON=/nonexistent/python "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "cannot run '/nonexistent/python'" "missing Python named"
run 1 "no such checkpoint" "$CONVERT" "$TMP/vsepp.plan" "$TMP/nope.pth" -o "$TMP/bad.safetensors"
contains "$ERR" "nope.pth: no such file" "missing checkpoint"
printf 'img_fc.weight 0.fc.weight\nembed.weight\n' >"$TMP/bad.ckpt-map"
run 1 "bad map" "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp.pth" -o "$TMP/bad.safetensors" --map "$TMP/bad.ckpt-map"
contains "$ERR" "bad.ckpt-map:2:1: error: expected 'OURS THEIRS" "map error with its line"
printf 'img_fc.weight 0.fc.weight\n' >"$TMP/short.ckpt-map"
run 1 "map without a rule" "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp.pth" -o "$TMP/bad.safetensors" --map "$TMP/short.ckpt-map"
contains "$ERR" "parameter 'embed.weight': no rule of $TMP/short.ckpt-map maps it" "unmapped parameter"
run 1 "no output option" "$CONVERT" "$TMP/vsepp.plan" "$F/vsepp.pth"
contains "$ERR" "expected -o W.safetensors" "usage error"
check test ! -e "$TMP/bad.safetensors" "no output after any error"

summary
