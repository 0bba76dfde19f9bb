# itr-run train: a run directory's files, --resume after a real kill -9
# (bitwise the same tensors as an uninterrupted run), refused checkpoints,
# usage errors (docs/training.md "Training runs").
source "$(dirname "$0")/lib.bash" "$@"
ITR_DATA=$BIN/itr-data

# The tensor bytes of a safetensors file: everything after its JSON header
# (the header's metadata may list keys in another order).
tensor_bytes() {
  local hlen
  hlen=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +$((8 + hlen + 1)) "$1"
}

# ---- a tiny data set and a VSE++ sized for it
run 0 "synthetic data" "$ITR_DATA" synth "$TMP/data" --images 60 --dev 10 --test 10 --regions 4 --dim 16 --seed 3
V=$(grep -o '"idx": *[0-9]*' "$TMP/data/vocab.json" | grep -o '[0-9]*$')
SIZES=(-D D=16 -D W=8 -D gru_init=0.25 -D R=4 -D img_dim=16 -D "V=$V")
run 0 "compile vsepp" "$ITRC" compile "$SRC/models/vsepp.ir" "${SIZES[@]}" -o "$TMP/m.plan"
P=$TMP/m.plan

# ---- usage
run 0 "train --help" "$ITR_RUN" "$P" train --help
contains "$OUT" "--workers N" "help lists --workers"
contains "$OUT" "up to N batches ahead" "help says what --workers does"
run 1 "--workers 0" "$ITR_RUN" "$P" train --data "$TMP/data" --workers 0
contains "$ERR" "--workers expects an integer >= 1" "--workers 0 is refused"
run 1 "no --data" "$ITR_RUN" "$P" train
contains "$ERR" "missing --data" "missing --data is named"
run 1 "unknown option" "$ITR_RUN" "$P" train --data "$TMP/data" --frobnicate
contains "$ERR" "--frobnicate" "the unknown option is named"
run 1 "bad schedule" "$ITR_RUN" "$P" train --data "$TMP/data" --lr-schedule linear --out "$TMP/bad"
contains "$ERR" "unknown lr schedule 'linear'" "the schedule is named"

# ---- a straight run of 3 epochs
COMMON=(--data "$TMP/data" --epochs 3 --batch-size 4 --seed 7 --lr 0.005 --lr-schedule step:2 --warmup-steps 5
        --checkpoint-every 1)
run 0 "train 3 epochs" "$ITR_RUN" "$P" train "${COMMON[@]}" --out "$TMP/straight" --plot --workers 2
contains "$OUT" "run directory: $TMP/straight" "the run directory is reported"
contains "$ERR" "features: mmap" "start-up memory report"
contains "$ERR" "regions <- train_ims.npy" "start-up input mapping"
matches "$ERR" "^epoch 3/3: step 225, loss [0-9.]+" "a plain line per epoch when stderr is not a terminal"
check test -f "$TMP/straight/last.safetensors" "last.safetensors written"
check test -f "$TMP/straight/best.safetensors" "best.safetensors written"
check test "$(wc -l <"$TMP/straight/log.jsonl")" -eq 3 "one log.jsonl line per epoch"
check test "$(wc -l <"$TMP/straight/log.csv")" -eq 4 "log.csv: a header and one line per epoch"
contains "$TMP/straight/log.jsonl" '"dev_rsum": ' "log.jsonl has dev rsum"
matches "$TMP/straight/log.jsonl" '"batch_wait_s": [0-9]+\.[0-9]{3}, ' "log.jsonl has the time spent waiting for batches"
contains "$TMP/straight/log.csv" "epoch,step,loss,lr,seconds,pairs_per_s" "log.csv header"
contains "$TMP/straight/curves.svg" "<polyline" "curves.svg has lines"

# ---- the same run killed with SIGKILL part-way, then resumed; other
# --workers counts (the straight run used 2) give the same tensors
"$ITR_RUN" "$P" train "${COMMON[@]}" --out "$TMP/killed" --workers 3 >"$TMP/killed.out" 2>&1 &
pid=$!
for _ in $(seq 1 400); do
  step=$(grep -ao '"itr.step":"[0-9]*"' "$TMP/killed/last.safetensors" 2>/dev/null | grep -o '[0-9]*' || true)
  [ -n "$step" ] && [ "$step" -ge 90 ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
# The kill lands part-way through (on a machine too fast for that, the
# resume below has nothing left to do and the comparison still holds).
killed_at=$(grep -ao '"itr.step":"[0-9]*"' "$TMP/killed/last.safetensors" | grep -o '[0-9]*')
echo "killed with last.safetensors at step $killed_at of 225"
run 0 "resume after kill -9" "$ITR_RUN" "$P" train "${COMMON[@]}" --out "$TMP/killed" --resume --workers 4
check cmp -s <(tensor_bytes "$TMP/straight/last.safetensors") <(tensor_bytes "$TMP/killed/last.safetensors") \
  "resumed last.safetensors has the straight run's exact tensors"
check cmp -s <(tensor_bytes "$TMP/straight/best.safetensors") <(tensor_bytes "$TMP/killed/best.safetensors") \
  "resumed best.safetensors has the straight run's exact tensors"
check test "$(wc -l <"$TMP/killed/log.jsonl")" -eq 3 "each epoch logged once after the kill"

# ---- refused checkpoints
run 1 "a fresh run into a used directory" "$ITR_RUN" "$P" train "${COMMON[@]}" --out "$TMP/straight"
contains "$ERR" "--resume" "the error suggests --resume"
run 0 "compile another size" "$ITRC" compile "$SRC/models/vsepp.ir" -D D=8 -D W=8 -D R=4 -D img_dim=16 -D "V=$V" \
  -o "$TMP/other.plan"
run 1 "resume with another plan" "$ITR_RUN" "$TMP/other.plan" train "${COMMON[@]}" --out "$TMP/straight" --resume
contains "$ERR" "fingerprint" "the fingerprints are named"
cp -r "$TMP/data" "$TMP/data2"
sed -i 's/"is"/"iz"/g' "$TMP/data2/vocab.json"
run 1 "resume with another vocabulary" "$ITR_RUN" "$P" train "${COMMON[@]}" --data "$TMP/data2" --out "$TMP/straight" \
  --resume
contains "$ERR" "vocabulary hash" "the vocabulary hashes are named"
run 1 "evaluate with another vocabulary" "$ITR_RUN" "$P" eval --data "$TMP/data2" --split test \
  --weights "$TMP/straight/best.safetensors"
contains "$ERR" "was trained with vocabulary" "eval names the vocabulary mismatch"
run 1 "query with another vocabulary" "$ITR_RUN" "$P" query --gallery "$TMP/data2" --split test \
  --weights "$TMP/straight/best.safetensors" --text "a dog"
contains "$ERR" "was trained with vocabulary" "query names the vocabulary mismatch"
run 0 "evaluate with the training vocabulary" "$ITR_RUN" "$P" eval --data "$TMP/data" --split test \
  --weights "$TMP/straight/best.safetensors" --json
contains "$OUT" '"rsum": ' "eval with the right vocabulary works"
mkdir -p "$TMP/corrupt"
head -c 100 "$TMP/straight/last.safetensors" >"$TMP/corrupt/last.safetensors"
run 1 "resume a corrupted checkpoint" "$ITR_RUN" "$P" train "${COMMON[@]}" --out "$TMP/corrupt" --resume
contains "$ERR" "last.safetensors" "the corrupted file is named"
"$ITRC" compile "$SRC/models/vsepp.ir" -D D=16 -D W=8 -D R=4 -D img_dim=24 -D "V=$V" -o "$TMP/dim.plan" >/dev/null
run 1 "train on features of another dim" "$ITR_RUN" "$TMP/dim.plan" train --data "$TMP/data" --out "$TMP/dim"
contains "$ERR" "feature dim 16" "the data's dim is named"
contains "$ERR" "feature dim 24" "the model's dim is named"

# ---- a train entry input the data does not provide
cat >"$TMP/lin.ir" <<'IR'
import "modules/nn.ir"
model lin {
  dim B = 4
  let fc = linear(3, 1)
  train(x: f32[B, 3], y: f32[B, 1]) -> (loss) {
    e = fc(x) - y
    return mean(e * e)
  }
  optimizer adam(lr=0.01)
}
IR
run 0 "compile a model with other inputs" "$ITRC" compile "$TMP/lin.ir" -o "$TMP/lin.plan"
run 1 "train it on the data" "$ITR_RUN" "$TMP/lin.plan" train --data "$TMP/data" --out "$TMP/lin"
contains "$ERR" "input 'x' is not something the data provides" "the input is named"
contains "$ERR" "regions, words, lengths" "what the data provides is listed"

summary
