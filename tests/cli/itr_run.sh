# itr-run: help, version, exit codes, info, init, run, and the errors a user
# meets with mismatched plans, weights and inputs.
source "$(dirname "$0")/lib.bash" "$@"
IR=$SRC/tests/ir
P=$TMP/small.plan

run 0 "compile the test model" "$ITRC" compile "$IR/cli_small.ir" -o "$P"
run 0 "compile with D = 4" "$ITRC" compile -D D=4 "$IR/cli_small.ir" -o "$TMP/small4.plan"

# ---- help, version, usage errors
run 0 "itr-run --help" "$ITR_RUN" --help
contains "$OUT" "usage: itr-run FILE.plan COMMAND" "usage line"
cp "$OUT" "$TMP/help"
for c in run init info; do
  contains "$TMP/help" "$c" "--help lists $c"
  run 0 "$c --help" "$ITR_RUN" "$P" "$c" --help
  contains "$OUT" "usage: itr-run FILE.plan $c" "$c --help"
done
run 0 "help run" "$ITR_RUN" help run
contains "$OUT" "--weights" "help run lists --weights"
run 0 "itr-run --version" "$ITR_RUN" --version
contains "$OUT" "itr-run 0.1.0 (plan format 1)" "version line"
run 1 "no arguments" "$ITR_RUN"
run 1 "plan without a command" "$ITR_RUN" "$P"
contains "$ERR" "missing command" "missing command"
run 1 "unknown command" "$ITR_RUN" "$P" train-forever
contains "$ERR" "unknown command 'train-forever'" "unknown command is named"
contains "$ERR" "run, init, info" "accepted commands are listed"
run 1 "unknown option" "$ITR_RUN" "$P" run encode --frob
contains "$ERR" "unknown option '--frob'" "unknown option is named"
contains "$ERR" "--in" "accepted options are listed"
run 1 "--in without =" "$ITR_RUN" "$P" run encode --in x
run 1 "run without an entry" "$ITR_RUN" "$P" run
run 1 "init without -o" "$ITR_RUN" "$P" init --seed 1
run 1 "init with a bad seed" "$ITR_RUN" "$P" init --seed -3 -o "$TMP/w.safetensors"

# ---- info
run 0 "info" "$ITR_RUN" "$P" info
contains "$OUT" "model small" "info: model"
contains "$OUT" "encode(x: f32[N, 6]) -> (emb: f32[N, 8])" "info: encode signature"
contains "$OUT" "make_inputs() -> (x: f32[4, 6], ids: i32[4])" "info: make_inputs signature"
contains "$OUT" "V=20" "info: dims with defaults"
matches "$OUT" "memory plan: peak [0-9.]+ (bytes|KiB)" "info: the memory plan of an entry with fixed sizes"
contains "$OUT" "memory plan: needs N bound" "info: an entry whose sizes need a dim"
matches "$OUT" "backend: (llvm|ref) " "info: the backend"

# ---- init: deterministic, records the fingerprint and seed
run 0 "init" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w.safetensors"
contains "$OUT" "wrote $TMP/w.safetensors: 3 params, 216 values (seed 1)" "init summary"
run 0 "init again" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w_again.safetensors"
check cmp -s "$TMP/w.safetensors" "$TMP/w_again.safetensors" "same seed, same bytes"
run 0 "init, other seed" "$ITR_RUN" "$P" init --seed=2 --output "$TMP/w2.safetensors"
check not cmp -s "$TMP/w.safetensors" "$TMP/w2.safetensors" "another seed, other bytes"
fp=$("$ITRC" dump "$P" | sed -nE 's/.*fingerprint: +([0-9a-f]+).*/\1/p')
contains "$TMP/w.safetensors" "$fp" "the weights record the plan's fingerprint"
contains "$TMP/w.safetensors" "itr.seed" "the weights record the seed"
run 0 "init the D = 4 plan" "$ITR_RUN" "$TMP/small4.plan" init --seed 1 -o "$TMP/w4.safetensors"
run 1 "init with an unknown dim" "$ITR_RUN" "$P" init --dim Q=3 -o "$TMP/wq.safetensors"
contains "$ERR" "no dim 'Q'" "unknown dim is named"
check test ! -e "$TMP/wq.safetensors" "no weights after an error"

# a dim without a default must be given to init
cat >"$TMP/nodefault.ir" <<'IR'
model nodefault() {
  dim V
  param table: f32[V, 2] = normal(0.0, 1.0)
  entry rows(ids: i32[3]) -> (r) {
    return gather(table, ids)
  }
}
IR
run 0 "compile a model with a dim without default" "$ITRC" compile "$TMP/nodefault.ir" -o "$TMP/nodefault.plan"
run 1 "init without the dim" "$ITR_RUN" "$TMP/nodefault.plan" init -o "$TMP/nd.safetensors"
contains "$ERR" "param 'table'" "the parameter is named"
contains "$ERR" "dim V is not bound" "the dim is named"
contains "$ERR" "--dim V=" "the message says how to bind it"
run 0 "init with --dim" "$ITR_RUN" "$TMP/nodefault.plan" init --dim V=5 -o "$TMP/nd.safetensors"
contains "$OUT" "1 param, 10 values" "V = 5 sizes the table"

# ---- run: an entry without inputs makes the inputs of the others
run 0 "run make_inputs" "$ITR_RUN" "$P" run make_inputs --out "$TMP/in"
contains "$OUT" "x: f32 [4, 6] -> $TMP/in/x.npy" "make_inputs prints x"
contains "$OUT" "ids: i32 [4] -> $TMP/in/ids.npy" "make_inputs prints ids"
check test -s "$TMP/in/x.npy" "x.npy written"

run 0 "run encode" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out"
contains "$OUT" "emb: f32 [4, 8] -> $TMP/out/emb.npy" "encode output line"
check test -s "$TMP/out/emb.npy" "emb.npy written"
run 0 "run lookup" "$ITR_RUN" "$P" run lookup --in ids="$TMP/in/ids.npy" -w "$TMP/w.safetensors" --out "$TMP/out"
contains "$OUT" "vecs: f32 [4, 8]" "lookup output line"
run 0 "run score on outputs" "$ITR_RUN" "$P" run score --in a="$TMP/out/emb.npy" --in b="$TMP/out/emb.npy" --out "$TMP/out"
contains "$OUT" "sims: f32 [4, 4]" "score output line"
# ---- --backend and --threads: every command takes them (docs/backends.md)
run 0 "run encode on --backend ref" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out_ref" --backend ref --threads 2
run 0 "run encode on --backend ref, 1 thread" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out_ref1" --backend ref --threads 1
check cmp -s "$TMP/out_ref1/emb.npy" "$TMP/out_ref/emb.npy" "--threads does not change the reference's bytes"
# The default backend is llvm for a plan with kernels (tests/test_agree_*.c
# check its values against ref); a ref plan runs on ref.
run 0 "run encode on --backend llvm" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out_llvm" --backend llvm
contains "$OUT" "emb: f32 [4, 8]" "--backend llvm output line"
run 0 "compile a ref plan" "$ITRC" compile --target ref "$IR/cli_small.ir" -o "$TMP/ref.plan"
run 1 "--backend llvm on a plan without kernels" "$ITR_RUN" "$TMP/ref.plan" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out_x" --backend llvm
contains "$ERR" "the plan has no f32 kernels for entry 'encode'" "the message says the plan has no kernels"
contains "$ERR" "--target llvm" "the message says how to get them"
run 0 "a ref plan runs on ref by default" "$ITR_RUN" "$TMP/ref.plan" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out_r2"
check cmp -s "$TMP/out_r2/emb.npy" "$TMP/out_ref/emb.npy" "the ref plan's default backend is ref"
for c in "run encode" "init -o $TMP/wb.safetensors" "info" "step -w $TMP/w.safetensors -o $TMP/wb.safetensors" \
         "train --data $TMP" "eval --data $TMP -w $TMP/w.safetensors" "query -w $TMP/w.safetensors --gallery $TMP --text a"; do
  run 1 "$c --backend nope" "$ITR_RUN" "$P" $c --backend nope
  contains "$ERR" "unknown backend 'nope'; available: ref" "$c: an unknown backend lists the available ones"
done
run 1 "--threads 0" "$ITR_RUN" "$P" info --threads 0
contains "$ERR" "--threads expects an integer from 1 to 1024, got '0'" "--threads is checked"
run 0 "info --backend ref" "$ITR_RUN" "$P" info --backend ref
contains "$OUT" "backend: ref" "info names the backend"
check test ! -e "$TMP/wb.safetensors" "no weights written after a usage error"

run 0 "run encode in f64" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" --out "$TMP/out64" --f64
contains "$OUT" "emb: f64 [4, 8]" "f64 output"

# inputs written by hand: a raw .npy of 3 rows
repeat_bytes "$TMP/x3.bin" $((3 * 6 * 4)) '\x00\x00\x80\x3f\x00\x00\x00\xbf'
write_npy "$TMP/x3.npy" '<f4' '(3, 6)' "$TMP/x3.bin"
run 0 "run encode on a hand-written npy" "$ITR_RUN" "$P" run encode --in x="$TMP/x3.npy" --weights "$TMP/w.safetensors" --out "$TMP/out3"
contains "$OUT" "emb: f32 [3, 8]" "N binds from the input"

# ---- mismatches
run 1 "weights of another shape" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w4.safetensors" --out "$TMP/bad"
contains "$ERR" "fc.weight" "the mismatching tensor is named"
contains "$ERR" "[8, 6]" "the expected shape is shown"
contains "$ERR" "[4, 6]" "the actual shape is shown"
check test ! -e "$TMP/bad" "no outputs after an error"
run 1 "no weights" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy"
contains "$ERR" "--weights" "missing weights say how to give them"
run 1 "missing input" "$ITR_RUN" "$P" run encode --weights "$TMP/w.safetensors"
contains "$ERR" "needs input 'x'" "the missing input is named"
contains "$ERR" "x: f32[N, 6]" "the inputs are listed with their types"
run 1 "unknown input" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --in y="$TMP/in/x.npy" --weights "$TMP/w.safetensors"
contains "$ERR" "no input 'y'" "the unknown input is named"
run 1 "input of the wrong dtype" "$ITR_RUN" "$P" run encode --in x="$TMP/in/ids.npy" --weights "$TMP/w.safetensors"
contains "$ERR" "input 'x'" "the wrong input is named"
run 1 "unknown entry" "$ITR_RUN" "$P" run decode
contains "$ERR" "no entry point 'decode'" "the unknown entry is named"
contains "$ERR" "encode, lookup, score, make_inputs" "the entries are listed"
run 1 "missing input file" "$ITR_RUN" "$P" run encode --in x="$TMP/nope.npy" --weights "$TMP/w.safetensors"
contains "$ERR" "nope.npy" "the missing file is named"
run 1 "missing weights file" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/nope.safetensors"
contains "$ERR" "nope.safetensors" "the missing weights file is named"

# extra tensors in the weights: a warning, not an error
cat >"$TMP/extra.ir" <<'IR'
import "modules/nn.ir"
model extra(D: int = 8) {
  dim N, V = 20
  let embed = embedding(V, D)
  param scale: f32[D] = ones
  entry lookup(ids: i32[N]) -> (vecs) {
    return embed(ids) * scale
  }
}
IR
run 0 "compile a model with another parameter" "$ITRC" compile "$TMP/extra.ir" -o "$TMP/extra.plan"
run 0 "init it" "$ITR_RUN" "$TMP/extra.plan" init --seed 1 -o "$TMP/wx.safetensors"
run 0 "weights with an extra tensor" "$ITR_RUN" "$P" run lookup --in ids="$TMP/in/ids.npy" --weights "$TMP/wx.safetensors" --out "$TMP/outx"
contains "$ERR" "warning: tensor 'scale' is not a parameter of model 'small'" "extra tensors draw a warning"
contains "$OUT" "vecs: f32 [4, 8]" "the run goes on"
check cmp -s "$TMP/outx/vecs.npy" "$TMP/out/vecs.npy" "same parameter name, same seed, same values"

# ---- broken plans
head -c 40 "$P" >"$TMP/trunc.plan"
run 1 "truncated plan" "$ITR_RUN" "$TMP/trunc.plan" info
contains "$ERR" "trunc.plan" "the truncated plan is named"
run 1 "missing plan" "$ITR_RUN" "$TMP/missing.plan" run encode
contains "$ERR" "missing.plan" "the missing plan is named"

summary
