# The rough edges a new user hit (issue 12), each with the exact behaviour:
#   itrc compile/check --data DIR sizes a model from a data set;
#   itrc check on a module library checks every module in it;
#   itr-run run/step take i64 word ids and lengths, refuse a caption length
#   of 0 or past the padding, say how to run f64 weights and how to convert
#   an original PyTorch checkpoint; itr-run info lists the parameters.
source "$(dirname "$0")/lib.bash" "$@"

ITR_DATA=$BIN/itr-data
DATA=$TMP/data
run 0 "synthesise a tiny data set" "$ITR_DATA" synth "$DATA" --images 20 --dev 10 --test 10 --regions 4 --dim 16 --seed 3
V=$(grep -oE '"idx": *[0-9]+' "$DATA/vocab.json" | grep -oE '[0-9]+$')
check test "$V" -gt 4 "the vocabulary has words"
run 0 "verify it" "$ITR_DATA" verify "$DATA"
# The longest caption over the splits, as the runtime counts it.
LONGEST=$(grep -oE 'max caption [0-9]+' "$OUT" | grep -oE '[0-9]+' | sort -n | tail -1)
check test "$LONGEST" -gt 2 "verify reports the longest caption"

# ---- itrc compile --data: img_dim, R and V from the data set
P=$TMP/vsepp.plan
run 0 "compile VSE++ with --data" "$ITRC" compile "$SRC/models/vsepp.ir" --data "$DATA" -D D=8 -D W=4 --target ref -o "$P"
contains "$OUT" "from data set $DATA: img_dim=16 R=4 V=$V" "compile: what the data set gave"
contains "$OUT" "wrote $P" "compile: wrote the plan"
run 0 "the same sizes by hand" "$ITRC" compile "$SRC/models/vsepp.ir" -D img_dim=16 -D R=4 -D "V=$V" -D D=8 -D W=4 \
  --target ref -o "$TMP/vsepp_hand.plan"
check cmp -s "$P" "$TMP/vsepp_hand.plan" "--data gives the plan -D img_dim=16 -D R=4 -D V=$V gives, byte for byte"
run 0 "info on the --data plan" "$ITR_RUN" "$P" info
contains "$OUT" "dims: N B L R=4 V=$V" "info: R and V from the data"
contains "$OUT" "  img_fc.weight: f32[8, 16]" "info: img_dim from the data"
contains "$OUT" "  embed.weight: f32[V, 4] = [$V, 4]" "info: the embedding sized by the vocabulary"
run 0 "train one epoch on the --data plan" "$ITR_RUN" "$P" train --data "$DATA" --epochs 1 --batch-size 20 \
  --out "$TMP/run" --lr 0.01
check test -f "$TMP/run/last.safetensors" "train wrote its checkpoint"

# An explicit -D wins over the data set, with a warning naming both values.
run 0 "-D R=5 with --data" "$ITRC" compile "$SRC/models/vsepp.ir" --data "$DATA" -D R=5 -D D=8 -D W=4 --target ref \
  -o "$TMP/r5.plan"
contains "$ERR" "itrc: warning: -D R=5 overrides R=4 from the data set $DATA" "a differing -D is a warning"
contains "$OUT" "from data set $DATA: img_dim=16 V=$V" "R is not from the data"
run 0 "info" "$ITR_RUN" "$TMP/r5.plan" info
contains "$OUT" "dims: N B L R=5 V=$V" "the -D value is the one compiled"
run 0 "-D equal to the data" "$ITRC" check "$SRC/models/vsepp.ir" --data "$DATA" -D R=4 -D D=8 -D W=4
not grep -q warning "$ERR" && pass || fail "an equal -D draws no warning"

# A model without V (TERN reads token features): only the names it declares.
TOKDATA=$TMP/tokdata
run 0 "a data set with token features" "$ITR_DATA" synth "$TOKDATA" --images 20 --dev 10 --test 10 --regions 4 --dim 16 \
  --token-feats 6 --seed 3
run 0 "check TERN with --data" "$ITRC" check "$SRC/models/tern.ir" --data "$TOKDATA"
contains "$OUT" "from data set $TOKDATA: img_dim=16 R=4 tok_dim=6" "TERN: img_dim, R, tok_dim; no V"
printf 'model none {\n  dim B\n  entry f(x: f32[B, 2]) -> (y) { return x }\n}\n' >"$TMP/none.ir"
run 0 "a model that declares none of the names" "$ITRC" check "$TMP/none.ir" --data "$DATA"
contains "$ERR" "itrc: warning: --data $DATA set nothing: model 'none' declares none of img_dim, R, V, tok_dim" \
  "nothing set is a warning"

# Bad data directories are errors naming the file and what is wrong.
run 1 "--data on a missing directory" "$ITRC" compile "$SRC/models/vsepp.ir" --data "$TMP/nope" -o "$TMP/x.plan"
contains "$ERR" "error: $TMP/nope: no such directory; --data expects a data set directory (docs/data.md)" "missing dir"
check test ! -e "$TMP/x.plan" "no plan written"
mkdir -p "$TMP/empty"
run 1 "--data without region features" "$ITRC" check "$SRC/models/vsepp.ir" --data "$TMP/empty"
contains "$ERR" "error: $TMP/empty: no region features (train_ims.npy, dev_ims.npy, test_ims.npy or testall_ims.npy)" \
  "no features"
cp -r "$DATA" "$TMP/badvocab"
sed -i "s/\"idx\": *$V/\"idx\": $((V + 1))/" "$TMP/badvocab/vocab.json"
run 1 "--data with an inconsistent vocabulary" "$ITRC" check "$SRC/models/vsepp.ir" --data "$TMP/badvocab"
contains "$ERR" "error: $TMP/badvocab/vocab.json: 'idx' is $((V + 1)) but 'word2idx' has $V entries and 'idx2word' $V" \
  "vocabulary size mismatch"
cp -r "$DATA" "$TMP/badims"
printf 'not an npy file' >"$TMP/badims/dev_ims.npy"
run 1 "--data with a broken feature file" "$ITRC" check "$SRC/models/vsepp.ir" --data "$TMP/badims"
contains "$ERR" "error: $TMP/badims/dev_ims.npy: not a .npy file (bad magic)" "broken .npy"
run 1 "--data twice" "$ITRC" check "$SRC/models/vsepp.ir" --data "$DATA" --data "$DATA"
contains "$ERR" "--data given twice" "--data twice"

# A model that fixes its caption length with a dim default (dim L = 6) gets
# the data set's longest caption; one fixed by a config int is checked.
cat >"$TMP/fixed.ir" <<'IR'
import "modules/nn.ir"
import "modules/rnn.ir"
import "modules/losses.ir"

model fixed(img_dim: int = 2048, max_words: int = 0) {
  dim N, B, R = 36, V = 10000, L = 6
  let img_fc = linear(img_dim, 8)
  let embed = embedding(V, 4)
  let rnn = gru(4, 8, init=0.35)
  def image(regions) { return l2norm(img_fc(mean(regions, axes=[1])), eps=0.0) }
  def text(words, lengths) { return l2norm(rnn.last(embed(words), lengths), eps=0.0) }
  entry encode_image(regions: f32[N, R, img_dim]) -> (img_emb) { return image(regions) }
  entry encode_text(words: i32[B, L], lengths: i32[B]) -> (cap_emb) { return text(words, lengths) }
  entry score(v: f32[N, 8], u: f32[B, 8]) -> (sims) { return v @ transpose(u) }
  train(regions: f32[B, R, img_dim], words: i32[B, L], lengths: i32[B]) -> (loss) {
    return hinge(image(regions) @ transpose(text(words, lengths)), margin=0.2, max_violation=true)
  }
  optimizer adam(lr=0.001, clip_grad_norm=2.0)
}
IR
run 0 "compile a model with dim L = 6 and --data" "$ITRC" compile "$TMP/fixed.ir" --data "$DATA" --target ref \
  -o "$TMP/fixed.plan"
matches "$OUT" "^from data set $DATA: img_dim=16 R=4 V=$V L=$LONGEST \\(caption length: the longest caption, $DATA/(train|dev|test)_caps.txt:[0-9]+\\)$" \
  "L is the longest caption of the data set"
run 0 "info" "$ITR_RUN" "$TMP/fixed.plan" info
contains "$OUT" "dims: N B R=4 V=$V L=$LONGEST" "the caption axis is the data's"
run 0 "train on it" "$ITR_RUN" "$TMP/fixed.plan" train --data "$DATA" --epochs 1 --batch-size 20 --out "$TMP/run_fixed"
run 0 "-D L=30 wins" "$ITRC" compile "$TMP/fixed.ir" --data "$DATA" -D L=30 --target ref -o "$TMP/fixed30.plan"
contains "$OUT" "from data set $DATA: img_dim=16 R=4 V=$V" "no L from the data"
not grep -q "L=$LONGEST" "$OUT" && pass || fail "-D L wins over the data's L"
sed -e 's/, L = 6/, L/' -e 's/i32\[B, L\]/i32[B, max_words]/g' -e 's/max_words: int = 0/max_words: int = 5/' \
  "$TMP/fixed.ir" >"$TMP/config.ir"
run 1 "a caption length fixed by a config int, too short" "$ITRC" compile "$TMP/config.ir" --data "$DATA" \
  -o "$TMP/config.plan"
matches "$ERR" "^error: $DATA/(train|dev|test)_caps.txt:[0-9]+: the data set's longest caption has $LONGEST tokens \\(with <start> and <end>\\); model 'fixed' reads at most 5 \\(encode_text input 'words': i32\\[B, 5\\], $TMP/config.ir:13:21\\)$" \
  "the over-long caption: file, line, lengths, the model's input"
contains "$ERR" "note: nothing is truncated: give the model a caption length of at least $LONGEST" "the note"
check test ! -e "$TMP/config.plan" "no plan written"
run 0 "with a long enough config int" "$ITRC" compile "$TMP/config.ir" --data "$DATA" -D "max_words=$LONGEST" \
  -o "$TMP/config.plan" --target ref

# ---- itrc check on a module library: every module of every file in models/modules
for f in "$SRC"/models/modules/*.ir; do
  run 0 "check $(basename "$f")" "$ITRC" check "$f"
  nm=$(grep -c '^module ' "$f" || true)
  nf=$(grep -c '^def ' "$f" || true)
  matches "$OUT" "^$f: ok: module library, $nm modules? instantiated.*, $nf functions? \\(checked where a model calls them\\)$" \
    "$(basename "$f"): $nm modules, $nf functions"
  for m in $(grep -oE '^module [a-z_0-9]+' "$f" | cut -d' ' -f2); do
    contains "$OUT" "$m" "$(basename "$f"): module $m was checked"
  done
done
mkdir -p "$TMP/lib"
cat >"$TMP/lib/mylib.ir" <<'IR'
import "modules/nn.ir"
module good(in: int, dim: int) {
  let fc = linear(in, dim)
  def forward(x) { return fc(x) }
}
module bad(in: int) {
  param w: f32[in, nope] = zeros
}
module picky(mode: str) {
  param w: f32[2] = zeros
}
def helper(x) { return x }
IR
run 1 "check a library with a broken module" "$ITRC" check "$TMP/lib/mylib.ir"
contains "$ERR" "$TMP/lib/mylib.ir:7:20: error: undeclared dim 'nope'" "the error is located in the library"
contains "$ERR" "$TMP/lib/mylib.ir:6:8: note: while checking module 'bad'" "the note names the module"
contains "$ERR" "$TMP/lib/mylib.ir:9:8: note: module 'picky' is not instantiated: its config parameter 'mode' has no default and is not an int" \
  "a module needing a string is named, not guessed"
not grep -q "'good'" "$ERR" && pass || fail "the good module draws no message"
sed -i '/^module bad/,/^}/d' "$TMP/lib/mylib.ir"
run 0 "without the broken module" "$ITRC" check "$TMP/lib/mylib.ir"
contains "$OUT" "$TMP/lib/mylib.ir: ok: module library, 1 module instantiated (good), 1 function" "library summary"
printf 'module oops(\n' >"$TMP/lib/syntax.ir"
run 1 "a library with a syntax error" "$ITRC" check "$TMP/lib/syntax.ir"
contains "$ERR" "$TMP/lib/syntax.ir:" "the syntax error is located"
run 0 "a model file is still checked as a model" "$ITRC" check "$SRC/models/vsepp.ir"
contains "$OUT" "models/vsepp.ir: ok: 4 entries" "model check"
run 1 "compile still needs a model" "$ITRC" compile "$SRC/models/modules/nn.ir" -o "$TMP/nn.plan"
contains "$ERR" "no model in" "compile of a library"

# ---- itr-run run/step inputs: i64 ids, caption lengths
le32() {
  for v in "$@"; do
    printf "\\x$(printf %02x $((v & 255)))\\x$(printf %02x $(((v >> 8) & 255)))\\x$(printf %02x $(((v >> 16) & 255)))\\x$(printf %02x $(((v >> 24) & 255)))"
  done
}
le64() { for v in "$@"; do le32 $((v & 0xffffffff)) $(((v >> 32) & 0xffffffff)); done; }
W=$TMP/w.safetensors
run 0 "init" "$ITR_RUN" "$P" init --seed 1 -o "$W"
le32 1 5 6 2 0 1 7 2 0 0 >"$TMP/w32.bin"
write_npy "$TMP/words32.npy" '<i4' '(2, 5)' "$TMP/w32.bin"
le64 1 5 6 2 0 1 7 2 0 0 >"$TMP/w64.bin"
write_npy "$TMP/words64.npy" '<i8' '(2, 5)' "$TMP/w64.bin"
le32 4 3 >"$TMP/l32.bin"
write_npy "$TMP/len32.npy" '<i4' '(2,)' "$TMP/l32.bin"
le64 4 3 >"$TMP/l64.bin"
write_npy "$TMP/len64.npy" '<i8' '(2,)' "$TMP/l64.bin"
run 0 "encode_text with i32 ids" "$ITR_RUN" "$P" run encode_text --in "words=$TMP/words32.npy" \
  --in "lengths=$TMP/len32.npy" --weights "$W" --out "$TMP/o32"
run 0 "encode_text with i64 ids and lengths" "$ITR_RUN" "$P" run encode_text --in "words=$TMP/words64.npy" \
  --in "lengths=$TMP/len64.npy" --weights "$W" --out "$TMP/o64"
contains "$OUT" "cap_emb: f32 [2, 8] -> $TMP/o64/cap_emb.npy" "i64: the output"
check cmp -s "$TMP/o32/cap_emb.npy" "$TMP/o64/cap_emb.npy" "i64 ids give the embeddings of i32 ids, bit for bit"
le64 1 5 6 2 0 1 4294967296 2 0 0 >"$TMP/big.bin"
write_npy "$TMP/big.npy" '<i8' '(2, 5)' "$TMP/big.bin"
run 1 "an i64 id past i32" "$ITR_RUN" "$P" run encode_text --in "words=$TMP/big.npy" --in "lengths=$TMP/len32.npy" \
  --weights "$W" --out "$TMP/obig"
contains "$ERR" "error: input 'words' ($TMP/big.npy): value 4294967296 at flat index 6 does not fit i32, the entry's dtype for it" \
  "an id past i32 is named"
# "LENGTH0 LENGTH1 FIRST_BAD_CAPTION ITS_LENGTH"
for bad in "4 0 1 0" "9 3 0 9" "0 0 0 0"; do
  set -- $bad
  le32 "$1" "$2" >"$TMP/lb.bin"
  write_npy "$TMP/lb.npy" '<i4' '(2,)' "$TMP/lb.bin"
  run 1 "lengths $1 $2" "$ITR_RUN" "$P" run encode_text --in "words=$TMP/words32.npy" --in "lengths=$TMP/lb.npy" \
    --weights "$W" --out "$TMP/obad"
  contains "$ERR" "error: input 'lengths' ($TMP/lb.npy): caption $3 has length $4; expected 1 to 5, the padded length of input 'words' i32[2, 5]" \
    "lengths $1 $2: the caption is named"
  check test ! -e "$TMP/obad/cap_emb.npy" "lengths $1 $2: nothing written"
done
contains "$ERR" "note: input 'lengths': 2 lengths in all are outside 1 to 5" "both bad lengths are counted"
# The train entry through step: regions [2, 4, 16], the same words.
repeat_bytes "$TMP/reg.bin" $((2 * 4 * 16 * 4)) '\x00\x00\x80\x3e'
write_npy "$TMP/regions.npy" '<f4' '(2, 4, 16)' "$TMP/reg.bin"
le32 4 6 >"$TMP/lb.bin"
write_npy "$TMP/lb.npy" '<i4' '(2,)' "$TMP/lb.bin"
run 1 "step with a length past the padding" "$ITR_RUN" "$P" step --weights "$W" --out "$TMP/w2.safetensors" \
  --in "regions=$TMP/regions.npy" --in "words=$TMP/words32.npy" --in "lengths=$TMP/lb.npy"
contains "$ERR" "error: input 'lengths' ($TMP/lb.npy): caption 1 has length 6; expected 1 to 5, the padded length of input 'words' i32[2, 5]" \
  "step: the caption is named"
check test ! -e "$TMP/w2.safetensors" "step: nothing written"
run 0 "step with i64 ids" "$ITR_RUN" "$P" step --weights "$W" --out "$TMP/w2.safetensors" \
  --in "regions=$TMP/regions.npy" --in "words=$TMP/words64.npy" --in "lengths=$TMP/len64.npy"
matches "$OUT" "^step 1: loss [0-9.]+" "step with i64 ids: the loss"

# ---- weights: f64 without --f64, an original checkpoint's names; info lists params
cat >"$TMP/lin.ir" <<'IR'
import "modules/nn.ir"
model lin {
  dim B
  let fc = linear(2, 2)
  entry apply(x: f32[B, 2]) -> (y) { return fc(x) }
}
IR
run 0 "compile lin" "$ITRC" compile "$TMP/lin.ir" --target ref -o "$TMP/lin.plan"
run 0 "info lists the parameters" "$ITR_RUN" "$TMP/lin.plan" info
contains "$OUT" "params: 2" "info: count"
contains "$OUT" "  fc.weight: f32[2, 2]" "info: fc.weight"
contains "$OUT" "  fc.bias: f32[2]" "info: fc.bias"
# st_write OUT HEADER_JSON DATA: a safetensors file (u64 LE header length, header, data).
st_write() {
  local h=$2
  while [ $(( ${#h} % 8 )) -ne 0 ]; do h="$h "; done
  { le64 ${#h}; printf '%s' "$h"; cat "$3"; } >"$1"
}
repeat_bytes "$TMP/f64.bin" 48 '\x00\x00\x00\x00\x00\x00\xf0\x3f'   # six f64 1.0
st_write "$TMP/w64.safetensors" '{"fc.weight":{"dtype":"F64","shape":[2,2],"data_offsets":[0,32]},"fc.bias":{"dtype":"F64","shape":[2],"data_offsets":[32,48]}}' "$TMP/f64.bin"
printf '\x00\x00\x80\x3f\x00\x00\x00\x40' >"$TMP/x.bin"   # x = [1, 2]
write_npy "$TMP/x.npy" '<f4' '(1, 2)' "$TMP/x.bin"
run 1 "f64 weights without --f64" "$ITR_RUN" "$TMP/lin.plan" run apply --in "x=$TMP/x.npy" \
  --weights "$TMP/w64.safetensors" --out "$TMP/olin"
contains "$ERR" "note: $TMP/w64.safetensors holds f64 parameters (e.g. 'fc.weight') where the plan's are f32: run with --f64 to compute in f64 with them, or convert the file to f32" \
  "f64: the note says how to run them"
contains "$ERR" "error: tensor 'fc.weight': expected f32[2, 2], got f64[2, 2]" "f64: the error stays"
run 0 "f64 weights with --f64" "$ITR_RUN" "$TMP/lin.plan" run apply --in "x=$TMP/x.npy" \
  --weights "$TMP/w64.safetensors" --out "$TMP/olin" --f64
contains "$OUT" "y: f64 [1, 2] -> $TMP/olin/y.npy" "f64: the output"
# y = W x + b with every weight 1: [1 + 2 + 1, 1 + 2 + 1] = [4, 4] (f64 4.0 = 0x4010000000000000).
check test "$(tail -c 16 "$TMP/olin/y.npy" | od -A n -t x1 | tr -d ' \n')" = "00000000000010400000000000001040" \
  "f64: y = [4, 4]"
repeat_bytes "$TMP/f32.bin" 24 '\x00\x00\x80\x3f'
st_write "$TMP/pt.safetensors" '{"module.img_enc.fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"txt_enc.rnn.weight_ih_l0":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}' "$TMP/f32.bin"
HINT="note: $TMP/pt.safetensors looks like a checkpoint of the original PyTorch code (tensor 'module.img_enc.fc.weight'); convert it with 'itr-convert MODEL CHECKPOINT -o W.safetensors' and pass W.safetensors instead"
run 1 "run with an original checkpoint's names" "$ITR_RUN" "$TMP/lin.plan" run apply --in "x=$TMP/x.npy" \
  --weights "$TMP/pt.safetensors" --out "$TMP/opt"
contains "$ERR" "$HINT" "run: the itr-convert hint"
contains "$ERR" "error: no tensor 'fc.weight'" "run: the missing parameter is still an error"
for names in "img_enc.fc.weight" "txt_enc.rnn.weight_hh_l0_reverse" "sim_enc.fc.weight_g" "x.weight_v"; do
  st_write "$TMP/one.safetensors" "{\"$names\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}" "$TMP/x.bin"
  run 1 "hint for $names" "$ITR_RUN" "$TMP/lin.plan" run apply --in "x=$TMP/x.npy" --weights "$TMP/one.safetensors" \
    --out "$TMP/opt"
  contains "$ERR" "looks like a checkpoint of the original PyTorch code (tensor '$names')" "hint for $names"
done
run 1 "step with an original checkpoint's names" "$ITR_RUN" "$P" step --weights "$TMP/pt.safetensors" \
  --out "$TMP/w3.safetensors" --in "regions=$TMP/regions.npy" --in "words=$TMP/words32.npy" --in "lengths=$TMP/len32.npy"
contains "$ERR" "itr-convert MODEL CHECKPOINT -o W.safetensors" "step: the hint"
run 1 "eval with an original checkpoint's names" "$ITR_RUN" "$P" eval --data "$DATA" --weights "$TMP/pt.safetensors" -q
contains "$ERR" "itr-convert MODEL CHECKPOINT -o W.safetensors" "eval: the hint"
run 1 "train --weights with an original checkpoint's names" "$ITR_RUN" "$P" train --data "$DATA" --epochs 1 \
  --weights "$TMP/pt.safetensors" --out "$TMP/run_pt"
contains "$ERR" "itr-convert MODEL CHECKPOINT -o W.safetensors" "train: the hint"
run 0 "our own weights draw no hint" "$ITR_RUN" "$P" run encode_text --in "words=$TMP/words32.npy" \
  --in "lengths=$TMP/len32.npy" --weights "$W" --out "$TMP/o32"
not grep -q "itr-convert\|--f64" "$ERR" && pass || fail "no hint for our own weights"

summary
