# The compiled training step from the command line: itrc compile/check/dump
# of a model with a train entry, and itr-run step (docs/training.md).
source "$(dirname "$0")/lib.bash" "$@"

cat >"$TMP/lin.ir" <<'IR'
import "modules/nn.ir"
model lin {
  dim B = 4
  let fc = linear(3, 1)
  let bn = batchnorm(1)
  entry predict(x: f32[B, 3]) -> (y) {
    return bn(fc(x))
  }
  train(x: f32[B, 3], y: f32[B, 1]) -> (loss, mae) {
    e = dropout(bn(fc(x)), p=0.25) - y
    return mean(e * e), mean(abs(e))
  }
  optimizer adam(lr=0.01, clip_grad_norm=5.0)
}
IR
P=$TMP/lin.plan

# ---- compile, check, dump
run 0 "check a model with a train entry" "$ITRC" check "$TMP/lin.ir"
matches "$OUT" "train step \(adam\): [0-9]+ nodes \(forward [0-9]+, backward [0-9]+, optimizer [0-9]+\)" "check: phase sizes"
run 0 "compile it" "$ITRC" compile "$TMP/lin.ir" -o "$P"
matches "$OUT" "^train step \(adam\): [0-9]+ nodes \(forward [1-9][0-9]*, backward [1-9][0-9]*, optimizer [1-9][0-9]*\)" \
  "compile: phase sizes"
run 0 "dump it" "$ITRC" dump "$P"
matches "$OUT" "^  train: [0-9]+ nodes \(forward [1-9][0-9]*, backward [1-9][0-9]*, optimizer [1-9][0-9]*\)" "dump: phase sizes"
contains "$OUT" "optimizer: adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, clip_grad_norm=5.0)" \
  "dump: the optimizer"
contains "$OUT" "new.fc.weight -> fc.weight  (param)" "dump: parameter update"
contains "$OUT" "new.opt.m.fc.weight -> opt.m.fc.weight  (optimizer state)" "dump: optimizer state update"
contains "$OUT" "new.bn.running_var -> bn.running_var  (state)" "dump: running statistics update"
contains "$OUT" "lr: f32[], step: i64[], seed: i64[]) -> (loss: f32[], mae: f32[]" "dump: the step's signature"
contains "$OUT" "  # backward" "dump: phase markers in the node list"
contains "$OUT" "opt.v.fc.weight" "dump: optimizer state is a parameter"

# ---- data: x cycles through 1..5, y = 2
repeat_bytes "$TMP/x.bin" 48 '\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\xa0\x40'
write_npy "$TMP/x.npy" '<f4' "(4, 3)" "$TMP/x.bin"
repeat_bytes "$TMP/y.bin" 16 '\x00\x00\x00\x40'
write_npy "$TMP/y.npy" '<f4' "(4, 1)" "$TMP/y.bin"

# ---- init and two steps
run 0 "init" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w0.safetensors"
contains "$OUT" "14 params" "init writes the optimizer state too"
run 0 "step 1" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" -w "$TMP/w0.safetensors" \
  --out "$TMP/w1.safetensors"
matches "$OUT" "^step 1: loss [0-9.e+-]+, mae [0-9.e+-]+ \(lr 0.01\)$" "step 1 prints the loss and metric"
contains "$OUT" "wrote $TMP/w1.safetensors: 14 tensors, step 1" "step 1 writes W2"
check not cmp -s "$TMP/w0.safetensors" "$TMP/w1.safetensors" "step 1 changes the weights"
contains "$TMP/w1.safetensors" '"itr.step":"1"' "W2 records the step"
fp=$("$ITRC" dump "$P" | sed -nE 's/.*fingerprint: +([0-9a-f]+).*/\1/p')
contains "$TMP/w1.safetensors" "$fp" "W2 records the plan's fingerprint"
run 0 "step 2 (step number from W)" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/w1.safetensors" --out "$TMP/w2.safetensors" --lr 0.001
matches "$OUT" "^step 2: loss [0-9.e+-]+, mae [0-9.e+-]+ \(lr 0.001\)$" "step 2 numbers itself and uses --lr"
check not cmp -s "$TMP/w1.safetensors" "$TMP/w2.safetensors" "step 2 changes the weights"
run 0 "the same step again" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/w1.safetensors" --out "$TMP/w2b.safetensors" --lr 0.001
check cmp -s "$TMP/w2.safetensors" "$TMP/w2b.safetensors" "a step is reproducible"
run 0 "another seed" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/w1.safetensors" --out "$TMP/w2c.safetensors" --lr 0.001 --seed 99 --step 2
check not cmp -s "$TMP/w2.safetensors" "$TMP/w2c.safetensors" "another seed, another dropout mask"
run 0 "an f64 step" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/w1.safetensors" --out "$TMP/w2d.safetensors" --f64
run 0 "the f64 step's weights stay f32" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/w2d.safetensors" --out "$TMP/w3d.safetensors"
contains "$OUT" "step 3:" "the f64 step is step 2"

# weights without optimizer state (as from a plan without training): a note, zeros
cat >"$TMP/eval.ir" <<'IR'
import "modules/nn.ir"
model lin {
  dim B = 4
  let fc = linear(3, 1)
  let bn = batchnorm(1)
  entry predict(x: f32[B, 3]) -> (y) {
    return bn(fc(x))
  }
}
IR
run 0 "compile the eval-only model" "$ITRC" compile "$TMP/eval.ir" -o "$TMP/eval.plan"
run 0 "init it" "$ITR_RUN" "$TMP/eval.plan" init --seed 1 -o "$TMP/we.safetensors"
run 0 "step from weights without optimizer state" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" \
  -w "$TMP/we.safetensors" --out "$TMP/we1.safetensors"
contains "$ERR" "note: 8 optimizer-state tensors are missing ('opt.m.fc.weight', ...); they start at zero" \
  "missing optimizer state is noted"
contains "$OUT" "wrote $TMP/we1.safetensors: 14 tensors, step 1" "the state is written"

# ---- a NaN loss stops without writing
repeat_bytes "$TMP/nan.bin" 48 '\x00\x00\xc0\x7f'
write_npy "$TMP/nan.npy" '<f4' "(4, 3)" "$TMP/nan.bin"
run 1 "a NaN loss" "$ITR_RUN" "$P" step --in x="$TMP/nan.npy" --in y="$TMP/y.npy" -w "$TMP/w1.safetensors" \
  --out "$TMP/wnan.safetensors"
contains "$ERR" "step 2: the loss 'loss' is NaN; the parameters were not updated" "the NaN step is named"
check test ! -e "$TMP/wnan.safetensors" "no weights after a NaN loss"

# ---- errors
run 1 "no train entry" "$ITR_RUN" "$TMP/eval.plan" step --in x="$TMP/x.npy" -w "$TMP/we.safetensors" \
  --out "$TMP/wx.safetensors"
contains "$ERR" "model 'lin' has no train entry" "a plan without training"
contains "$ERR" "its entry points are: predict" "the entries are listed"
run 1 "wrong input shape" "$ITR_RUN" "$P" step --in x="$TMP/y.npy" --in y="$TMP/y.npy" -w "$TMP/w1.safetensors" \
  --out "$TMP/wx.safetensors"
contains "$ERR" "input 'x'" "the input is named"
contains "$ERR" "[4, 1]" "its shape is given"
check test ! -e "$TMP/wx.safetensors" "no weights after an error"
run 1 "lr as data" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" --in y="$TMP/y.npy" --in lr=scalar:1 \
  -w "$TMP/w1.safetensors" --out "$TMP/wx.safetensors"
run 1 "missing --out" "$ITR_RUN" "$P" step --in x="$TMP/x.npy" -w "$TMP/w1.safetensors"
contains "$ERR" "missing --out" "--out is required"
run 1 "bad --step" "$ITR_RUN" "$P" step -w "$TMP/w1.safetensors" --out "$TMP/wx.safetensors" --step 0
contains "$ERR" "steps count from 1" "steps count from 1"
run 0 "step --help" "$ITR_RUN" "$P" step --help
contains "$OUT" "--lr X" "help lists --lr"

# ---- compile-time errors of training
cat >"$TMP/vec_loss.ir" <<'IR'
model v {
  param w: f32[3] = ones
  train(x: f32[3]) -> (loss) {
    return x * w
  }
  optimizer sgd(lr=0.1)
}
IR
run 1 "a vector loss" "$ITRC" check "$TMP/vec_loss.ir"
contains "$ERR" "the loss 'loss', must be a float scalar (f32[] or f64[]), but it is f32[3]" "the loss type is given"
run 1 "a vector loss does not compile" "$ITRC" compile "$TMP/vec_loss.ir" -o "$TMP/vec.plan"
check test ! -e "$TMP/vec.plan" "no plan"
cat >"$TMP/unused.ir" <<'IR'
model u {
  param w: f32[3] = ones
  param b: f32[3] = ones
  train(x: f32[3]) -> (loss, shifted) {
    return sum(x * w), x + b
  }
  optimizer sgd(lr=0.1, momentum=0.9)
}
IR
run 0 "an unreached parameter" "$ITRC" check "$TMP/unused.ir"
contains "$ERR" "unused.ir:3:9: warning: parameter 'b' does not influence the loss 'loss'" "the warning names it"

summary
