# Captions longer than the data or the model allows (docs/data.md "Caption
# length"): a model that fixes its caption length (words: i32[B, 20], or
# itrc -D L=16 on a model's dim L) trains and evaluates valid data, padded to
# that length; an over-long caption is an error that names the captions file
# and line, the split, the caption's length and the model's input, type and
# source location, before anything is computed or written. A token-feature
# length past the features' L is a data error of the split.
source "$(dirname "$0")/lib.bash" "$@"

ITR_DATA=$BIN/itr-data
DATA=$TMP/data
run 0 "synthesise a tiny data set" "$ITR_DATA" synth "$DATA" --images 20 --dev 10 --test 10 --regions 4 --dim 16 --seed 3
V=$(grep -oE '"idx": *[0-9]+' "$DATA/vocab.json" | grep -oE '[0-9]+$')
run 0 "verify it" "$ITR_DATA" verify "$DATA"
matches "$OUT" "^test .* max caption 1[0-9] tokens" "the longest test caption fits in 20"

# A VSE++-like model at tiny sizes that reads at most 20 tokens per caption.
cat >"$TMP/tiny.ir" <<'IR'
import "modules/nn.ir"
import "modules/rnn.ir"
import "modules/losses.ir"

model tiny(max_words: int = 20, V: int = 10000) {
  dim N, B, R = 4
  let img_fc = linear(16, 8)
  let embed = embedding(V, 4)
  let rnn = gru(4, 8, init=0.35)
  def image(regions) { return l2norm(img_fc(mean(regions, axes=[1])), eps=0.0) }
  def text(words, lengths) { return l2norm(rnn.last(embed(words), lengths), eps=0.0) }
  entry encode_image(regions: f32[N, R, 16]) -> (img_emb) { return image(regions) }
  entry encode_text(words: i32[B, max_words], lengths: i32[B]) -> (cap_emb) { return text(words, lengths) }
  entry score(v: f32[N, 8], u: f32[B, 8]) -> (sims) { return v @ transpose(u) }
  train(regions: f32[B, R, 16], words: i32[B, max_words], lengths: i32[B]) -> (loss) {
    return hinge(image(regions) @ transpose(text(words, lengths)), margin=0.2, max_violation=true)
  }
  optimizer adam(lr=0.001, clip_grad_norm=2.0)
}
IR
# Where the inputs are declared: file:line:col of 'words'.
loc_of() {
  awk -v pat="$2" -v f="$1" 'index($0, pat) { print f ":" NR ":" index($0, "words: i32"); exit }' "$1"
}
ENC_LOC=$(loc_of "$TMP/tiny.ir" "entry encode_text(")
TRAIN_LOC=$(loc_of "$TMP/tiny.ir" "  train(")
P=$TMP/tiny.plan
run 0 "compile the fixed-length model" "$ITRC" compile "$TMP/tiny.ir" -I "$SRC/models" -o "$P" -D "V=$V"
run 0 "info shows the fixed length" "$ITR_RUN" "$P" info
contains "$OUT" "encode_text(words: i32[B, 20], lengths: i32[B])" "info: i32[B, 20]"

# ---- valid data: batches and chunks are padded to 20, shorter than any caption limit
run 0 "train on valid data" "$ITR_RUN" "$P" train --data "$DATA" --epochs 1 --batch-size 16 --out "$TMP/run"
check test -f "$TMP/run/last.safetensors" "train wrote its checkpoint"
W=$TMP/run/last.safetensors
run 0 "eval on valid data" "$ITR_RUN" "$P" eval --data "$DATA" --weights "$W" -q --save-sims "$TMP/sims.npy"
matches "$OUT" "^rsum +[0-9.]+$" "eval: rsum"
check test -f "$TMP/sims.npy" "eval wrote --save-sims"
run 0 "query --text on valid data" "$ITR_RUN" "$P" query --weights "$W" --gallery "$DATA" --text "a red car" -q --topk 2
matches "$OUT" "^ +1 +-?[0-9.]+ +[0-9]+$" "query: first result"
run 0 "query --image-index on valid data" "$ITR_RUN" "$P" query --weights "$W" --gallery "$DATA" --image-index 1 -q

# ---- an over-long caption (30 words: 32 tokens with <start> and <end>)
LONG=$(printf 'word%d ' $(seq 1 30))
long_copy() {   # long_copy DIR SPLIT LINE: a copy of the data with caption line LINE of SPLIT replaced
  rm -rf "$1"
  cp -r "$DATA" "$1"
  sed -i "$3s/.*/$LONG/" "$1/$2_caps.txt"
}
long_copy "$TMP/long_test" test 18
EXPECT="$TMP/long_test/test_caps.txt:18: caption 17 of split 'test' has 32 tokens (with <start> and <end>); model 'tiny' reads at most 20 (encode_text input 'words': i32[B, 20], $ENC_LOC)"

run 1 "eval with an over-long test caption" "$ITR_RUN" "$P" eval --data "$TMP/long_test" --weights "$W" \
  --save-sims "$TMP/long_sims.npy"
contains "$ERR" "error: $EXPECT" "eval: the whole message"
contains "$ERR" "nothing is truncated" "eval: says nothing is truncated"
check test ! -e "$TMP/long_sims.npy" "eval: no --save-sims file"
check test ! -s "$OUT" "eval: no table"
not grep -q "encoding" "$ERR" && pass || fail "eval: nothing was encoded"
run 1 "an ensemble with an over-long test caption" "$ITR_RUN" "$P" eval --data "$TMP/long_test" --weights "$W" \
  --ensemble "$P:$W" -q
contains "$ERR" "$EXPECT" "ensemble: the message"
run 1 "query --image-index with an over-long gallery caption" "$ITR_RUN" "$P" query --weights "$W" \
  --gallery "$TMP/long_test" --image-index 1 -q
contains "$ERR" "$EXPECT" "query --image-index: the message"
check test ! -s "$OUT" "query --image-index: no results"
run 1 "query --text longer than the model reads" "$ITR_RUN" "$P" query --weights "$W" --gallery "$DATA" \
  --text "$LONG" -q
contains "$ERR" "error: the query has 32 tokens (with <start> and <end>); model 'tiny' reads at most 20 (encode_text input 'words': i32[B, 20], $ENC_LOC)" \
  "query --text: the message"
check test ! -s "$OUT" "query --text: no results"
# Exactly 20 tokens fit: 18 words.
run 0 "query --text of exactly 20 tokens" "$ITR_RUN" "$P" query --weights "$W" --gallery "$DATA" \
  --text "$(printf 'word%d ' $(seq 1 18))" -q

# Training: the train split against the train entry, the eval split against
# encode_text, both before the run directory exists.
long_copy "$TMP/long_train" train 7
run 1 "train with an over-long train caption" "$ITR_RUN" "$P" train --data "$TMP/long_train" --epochs 1 \
  --batch-size 16 --out "$TMP/run_long"
contains "$ERR" "error: $TMP/long_train/train_caps.txt:7: caption 6 of split 'train' has 32 tokens (with <start> and <end>); model 'tiny' reads at most 20 (train input 'words': i32[B, 20], $TRAIN_LOC)" \
  "train: the whole message"
check test ! -e "$TMP/run_long" "train: no run directory, no checkpoint"
long_copy "$TMP/long_dev" dev 3
sed -i "9s/.*/$LONG $LONG/" "$TMP/long_dev/dev_caps.txt"
run 1 "train with over-long dev captions" "$ITR_RUN" "$P" train --data "$TMP/long_dev" --epochs 1 --batch-size 16 \
  --out "$TMP/run_long"
contains "$ERR" "error: $TMP/long_dev/dev_caps.txt:3: caption 2 of split 'dev' has 32 tokens" "train: dev caption named"
contains "$ERR" "(encode_text input 'words': i32[B, 20], $ENC_LOC)" "train: dev checked against encode_text"
contains "$ERR" "2 captions of split 'dev' are longer than 20 tokens; the longest, caption 8, has 62" "train: note counts them"
check test ! -e "$TMP/run_long" "train (dev): no run directory"

# ---- fixing a model's dim L from the command line: itrc -D L=16
PV=$TMP/vsepp16.plan
run 0 "compile VSE++ with L fixed to 16" "$ITRC" compile "$SRC/models/vsepp.ir" -o "$PV" -D D=8 -D W=4 -D "V=$V" \
  -D img_dim=16 -D R=4 -D L=16
run 0 "train it on valid data" "$ITR_RUN" "$PV" train --data "$DATA" --epochs 1 --batch-size 16 --out "$TMP/run16"
run 0 "eval it on valid data" "$ITR_RUN" "$PV" eval --data "$DATA" --weights "$TMP/run16/last.safetensors" -q
run 1 "eval it with an over-long caption" "$ITR_RUN" "$PV" eval --data "$TMP/long_test" \
  --weights "$TMP/run16/last.safetensors" -q
contains "$ERR" "caption 17 of split 'test' has 32 tokens (with <start> and <end>); model 'vsepp' reads at most 16 (encode_text input 'words': i32[B, L] where L = 16, $SRC/models/vsepp.ir:" \
  "vsepp -D L=16: the message"
# Without a fixed length any caption binds: the same data evaluates.
PF=$TMP/vsepp.plan
run 0 "compile VSE++ with a free L" "$ITRC" compile "$SRC/models/vsepp.ir" -o "$PF" -D D=8 -D W=4 -D "V=$V" \
  -D img_dim=16 -D R=4
run 0 "eval a free-L model with the long caption" "$ITR_RUN" "$PF" eval --data "$TMP/long_test" \
  --weights "$TMP/run16/last.safetensors" -q

# ---- token features: a length past the features' L is a data error
TF=$TMP/tokfeat
rm -rf "$TF"
cp -r "$DATA" "$TF"
repeat_bytes "$TMP/feats.bin" $((50 * 4 * 2 * 4)) '\x00\x00\x80\x3f'
write_npy "$TF/test_caps_feats.npy" '<f4' "(50, 4, 2)" "$TMP/feats.bin"
{ for i in $(seq 0 49); do
    case $i in 7) printf '\x05\x00\x00\x00' ;; 30) printf '\x09\x00\x00\x00' ;; *) printf '\x02\x00\x00\x00' ;; esac
  done; } >"$TMP/lens.bin"
write_npy "$TF/test_caps_lens.npy" '<i4' "(50,)" "$TMP/lens.bin"
run 1 "verify: a length past L" "$ITR_DATA" verify "$TF"
contains "$ERR" "$TF/test_caps_lens.npy: caption 7 of split 'test' has length 5; expected 1 to 4 (the L of $TF/test_caps_feats.npy)" \
  "verify: file, caption, length and L"
contains "$ERR" "2 lengths in all are outside 1 to 4" "verify: every bad length counted"
run 1 "eval: a length past L" "$ITR_RUN" "$PF" eval --data "$TF" --weights "$TMP/run16/last.safetensors" -q
contains "$ERR" "test_caps_lens.npy: caption 7 of split 'test' has length 5; expected 1 to 4" "eval: the same message"

summary
