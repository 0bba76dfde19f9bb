# itr-data: help, version, usage errors, vocab build -> verify on a small
# hand-written data set, and verify reporting every problem with exit 1.
source "$(dirname "$0")/lib.bash" "$@"
ITR_DATA=$BIN/itr-data
D=$TMP/ds

# ---- help, version, usage errors
run 0 "itr-data --help" "$ITR_DATA" --help
contains "$OUT" "usage: itr-data COMMAND" "usage line"
for c in vocab verify synth; do
  contains "$OUT" "$c" "--help lists $c"
done
run 0 "verify --help" "$ITR_DATA" verify --help
contains "$OUT" "usage: itr-data verify DIR" "verify usage"
run 0 "help vocab" "$ITR_DATA" help vocab
contains "$OUT" "--min-count" "vocab help lists --min-count"
run 0 "synth --help" "$ITR_DATA" synth --help
contains "$OUT" "--regions" "synth help lists --regions"
run 0 "--version" "$ITR_DATA" --version
contains "$OUT" "itr-data 0.1.0" "version line"
run 1 "no arguments" "$ITR_DATA"
run 1 "unknown command" "$ITR_DATA" frobnicate
contains "$ERR" "unknown command 'frobnicate'" "unknown command is named"
run 1 "vocab without build" "$ITR_DATA" vocab
run 1 "vocab build without -o" "$ITR_DATA" vocab build x.txt
contains "$ERR" "missing '-o FILE'" "missing -o"
run 1 "bad --min-count" "$ITR_DATA" vocab build x.txt -o v.json --min-count zero
contains "$ERR" "--min-count" "bad min count is named"
run 1 "verify with an unknown option" "$ITR_DATA" verify "$D" --frob
contains "$ERR" "unknown option '--frob'" "unknown option is named"
run 1 "verify without a directory" "$ITR_DATA" verify
run 1 "synth with a bad number" "$ITR_DATA" synth "$TMP/s" --images -3

# ---- a small data set: 2 images per split, features written by hand
mkdir -p "$D"
printf 'A dog runs.\nThe dog'"'"'s ball.\nA brown dog.\nDog and ball\na dog\nTwo cats sleep.\nA cat, on a mat.\nGrey cats.\ncats\nA cat naps!\n' >"$TMP/caps"
repeat_bytes "$TMP/feat2" $((2 * 3 * 4 * 4)) '\x00\x00\x80\x3f'
repeat_bytes "$TMP/feat10" $((10 * 3 * 4 * 4)) '\x00\x00\x80\x3f'
for s in train dev test; do
  cp "$TMP/caps" "$D/${s}_caps.txt"
done
write_npy "$D/train_ims.npy" '<f4' '(2, 3, 4)' "$TMP/feat2"
write_npy "$D/dev_ims.npy" '<f4' '(10, 3, 4)' "$TMP/feat10"
write_npy "$D/test_ims.npy" '<f4' '(2, 3, 4)' "$TMP/feat2"

run 0 "vocab build" "$ITR_DATA" vocab build "$D/train_caps.txt" "$D/dev_caps.txt" -o "$D/vocab.json" --min-count 2
matches "$OUT" "wrote .*vocab.json: [0-9]+ words .* hash [0-9a-f]{16}" "vocab summary"
contains "$D/vocab.json" '"<unk>":3' "specials in the vocabulary"
contains "$D/vocab.json" '"idx2word"' "idx2word in the vocabulary"
run 0 "vocab build again" "$ITR_DATA" vocab build "$D/train_caps.txt" "$D/dev_caps.txt" -o "$TMP/v2.json" --min-count=2
check cmp -s "$D/vocab.json" "$TMP/v2.json" "same captions, same vocabulary bytes"

run 0 "verify" "$ITR_DATA" verify "$D"
matches "$OUT" "^train +2 images +10 captions +regions 3x4 +im_div 5 +max caption [0-9]+ tokens +unknown words [0-9]+" "train summary"
matches "$OUT" "^dev .* im_div 1 " "dev has one row per caption"
contains "$OUT" "$D: ok" "verify ok"
run 0 "verify --vocab" "$ITR_DATA" verify "$D" --vocab "$TMP/v2.json"

# ---- problems: all reported, exit 1
printf 'a\nb\nc\n' >"$D/dev_caps.txt"
repeat_bytes "$TMP/feat3" $((3 * 3 * 4 * 4)) '\x00\x00\x80\x3f'
write_npy "$D/test_ims.npy" '<f4' '(3, 3, 4)' "$TMP/feat3"
echo '{"word2idx": ' >"$TMP/bad.json"
run 1 "verify a broken data set" "$ITR_DATA" verify "$D" --vocab "$TMP/bad.json"
contains "$ERR" "bad.json: not valid JSON" "bad vocabulary"
contains "$ERR" "dev_caps.txt: 3 captions, not a multiple of 5" "dev caption count"
contains "$ERR" "test_ims.npy: 3 rows, but" "test rows"
contains "$ERR" "3 problems" "problem count"
run 1 "verify a missing directory" "$ITR_DATA" verify "$TMP/nowhere"
contains "$ERR" "train_ims.npy: missing" "missing split file named"
run 1 "vocab build from a missing file" "$ITR_DATA" vocab build "$TMP/nope.txt" -o "$TMP/v3.json"
contains "$ERR" "nope.txt" "missing caption file named"
check test ! -e "$TMP/v3.json" "no vocabulary after an error"

# ---- synth writes a set that verifies
run 0 "synth" "$ITR_DATA" synth "$TMP/syn" --images 20 --dev 5 --test 5 --regions 4 --dim 8 --seed 3
run 0 "verify the synthetic set" "$ITR_DATA" verify "$TMP/syn"
matches "$OUT" "^train +20 images +100 captions +regions 4x8" "synthetic train summary"
check test ! -e "$TMP/syn/train_caps_feats.npy" "no token features by default"

# ---- synth --token-feats: token features that verify, and a TERN plan
# (the frozen-encoder variant reads them) that trains and evaluates on them
run 0 "synth --help lists --token-feats" "$ITR_DATA" synth --help
contains "$OUT" "--token-feats F" "synth help lists --token-feats"
run 1 "synth with a bad --token-feats" "$ITR_DATA" synth "$TMP/synbad" --token-feats 5000
contains "$ERR" "--token-feats" "bad --token-feats is named"
T=$TMP/syntok
run 0 "synth --token-feats" "$ITR_DATA" synth "$T" --images 20 --dev 5 --test 5 --regions 4 --dim 8 --seed 3 \
  --token-feats 16
contains "$OUT" "token features 16" "synth reports the token features"
for f in train_ims.npy train_caps.txt dev_ims.npy dev_caps.txt test_ims.npy test_caps.txt vocab.json; do
  check cmp -s "$TMP/syn/$f" "$T/$f" "$f unchanged by --token-feats"
done
run 0 "verify the synthetic set with token features" "$ITR_DATA" verify "$T"
for s in train dev test; do
  matches "$OUT" "^$s .* token features 16$" "$s token features reported"
done
contains "$OUT" "$T: ok" "verify ok with token features"
run 0 "compile a small TERN" "$ITRC" compile "$SRC/models/tern.ir" -D d_img=16 -D img_heads=2 -D img_ff=32 \
  -D n_img_layers=1 -D D=16 -D heads=2 -D ff=32 -D n_shared_layers=1 -D tok_dim=16 -D img_dim=8 -D R=4 \
  -D dropout_p=0 -o "$TMP/tern.plan"
run 0 "train TERN on the token features" "$ITR_RUN" "$TMP/tern.plan" train --data "$T" --epochs 1 \
  --batch-size 10 --lr 0.001 --out "$TMP/tern-run"
contains "$OUT" "trained 10 steps" "TERN trained one epoch"
check test -f "$TMP/tern-run/best.safetensors" "TERN checkpoint written"
run 0 "evaluate TERN on the token features" "$ITR_RUN" "$TMP/tern.plan" eval --data "$T" --split test \
  --weights "$TMP/tern-run/best.safetensors" --json -q
matches "$OUT" '"rsum": [0-9.]+' "TERN eval prints an rsum"
contains "$OUT" '"n_captions": 25' "TERN eval covers the test captions"

summary
