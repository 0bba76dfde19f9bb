# itrc: help, version, exit codes, check, print, compile, dump.
source "$(dirname "$0")/lib.bash" "$@"
IR=$SRC/tests/ir

# ---- help, version, usage errors
run 0 "itrc --help" "$ITRC" --help
contains "$OUT" "usage: itrc COMMAND" "--help shows usage"
cp "$OUT" "$TMP/help"
for c in check print compile dump ops; do
  contains "$TMP/help" "$c" "--help lists $c"
  run 0 "itrc $c --help" "$ITRC" "$c" --help
  contains "$OUT" "usage: itrc $c" "$c --help"
done
run 0 "itrc help compile" "$ITRC" help compile
contains "$OUT" "--target" "help compile lists --target"
run 0 "itrc --version" "$ITRC" --version
contains "$OUT" "itrc 0.1.0 (plan format 1)" "version line"
run 1 "itrc without arguments" "$ITRC"
run 1 "unknown command" "$ITRC" frobnicate
contains "$ERR" "unknown command 'frobnicate'" "unknown command is named"
contains "$ERR" "check, print, compile, dump, ops" "unknown command lists the commands"
run 1 "unknown option" "$ITRC" check --frob "$IR/cli_small.ir"
contains "$ERR" "unknown option '--frob'" "unknown option is named"
run 1 "check without a file" "$ITRC" check
contains "$ERR" "missing FILE.ir" "missing file is reported"
run 1 "two files" "$ITRC" check "$IR/cli_small.ir" "$IR/cli_fold.ir"
run 1 "-D without =" "$ITRC" check -D D "$IR/cli_small.ir"

# ---- check
run 0 "check a good file" "$ITRC" check "$IR/cli_small.ir"
contains "$OUT" "cli_small.ir: ok: 4 entries, 3 params (216 values)" "check summary"
run 0 "check with -D" "$ITRC" check -D D=4 "$IR/cli_small.ir"
contains "$OUT" "ok: 4 entries, 3 params (108 values)" "-D changes the sizes"
run 1 "check a bad file" "$ITRC" check "$IR/cli_bad.ir"
matches "$ERR" "cli_bad\.ir:9:[0-9]+: error: " "errors carry file:line:col"
contains "$ERR" "matmul" "the error names the op"
run 1 "check a missing file" "$ITRC" check "$TMP/nope.ir"
contains "$ERR" "nope.ir" "a missing file is named"

# imports resolve through -I
mkdir -p "$TMP/lib" "$TMP/src"
cat >"$TMP/lib/twice.ir" <<'IR'
def twice(x) {
  return x + x
}
IR
cat >"$TMP/src/uses.ir" <<'IR'
import "twice.ir"
model uses() {
  dim B
  entry f(x: f32[B]) -> (y) {
    return twice(x)
  }
}
IR
run 1 "an import that is not found" "$ITRC" check "$TMP/src/uses.ir"
contains "$ERR" "twice.ir" "the missing import is named"
run 0 "the import found through -I" "$ITRC" check -I "$TMP/lib" "$TMP/src/uses.ir"
run 0 "-IDIR form" "$ITRC" check "-I$TMP/lib" "$TMP/src/uses.ir"
run 0 "--include=DIR form" "$ITRC" check "--include=$TMP/lib" "$TMP/src/uses.ir"

# ---- print: the canonical form parses back
run 0 "print" "$ITRC" print "$IR/cli_small.ir"
cp "$OUT" "$TMP/printed.ir"
contains "$TMP/printed.ir" "model small" "printed model"
run 0 "check the printed form" "$ITRC" check "$TMP/printed.ir"
contains "$OUT" "ok: 4 entries, 3 params (216 values)" "printed form has the same params"

# ---- compile and dump
run 0 "compile" "$ITRC" compile "$IR/cli_small.ir" -o "$TMP/small.plan"
check test -s "$TMP/small.plan" "the plan exists"
contains "$OUT" "wrote $TMP/small.plan" "compile reports the plan"
run 0 "dump" "$ITRC" dump "$TMP/small.plan"
contains "$OUT" "format version: 1" "dump: format version"
contains "$OUT" "compiler:       itrc 0.1.0" "dump: compiler version"
matches "$OUT" "fingerprint: +[0-9a-f]{16}" "dump: fingerprint"
matches "$OUT" "target: +(ref|llvm)" "dump: target (the default: llvm where LLVM is present)"
contains "$OUT" "V = 20" "dump: symbol defaults"
matches "$OUT" "fc\.weight +f32\[8, 6\] +xavier_uniform\(1(\.0)?\) +48" "dump: a parameter with init and size"
contains "$OUT" "total: 216 values in 3 params" "dump: total parameter count"
contains "$OUT" "encode(x: f32[N, 6]) -> (emb: f32[N, 8])" "dump: entry signature"
matches "$OUT" "= matmul\(.*\)  : f32\[N, 8\]" "dump: nodes with result types"
# the memory plan: N has no default, so its entries say so until --dim binds it
contains "$OUT" "memory plan (one arena per entry, 64-byte aligned; dims: N unbound, V = 20)" "dump: memory plan dims"
matches "$OUT" "^  encode +unbound: N$" "dump: an entry sized by an unbound dim"
matches "$OUT" "^  make_inputs +peak 192 bytes, 2 buffers$" "dump: an entry with fixed sizes"
run 0 "dump --dim" "$ITRC" dump "$TMP/small.plan" --dim N=4
contains "$OUT" "dims: N = 4, V = 20)" "dump --dim: the binding"
# encode at N = 4: the most bytes live at one node are 320 (docs/memplan.md)
matches "$OUT" "^  encode +peak 320 bytes, 9 buffers$" "dump --dim: the peak of encode"
run 1 "dump --dim with an unknown dim" "$ITRC" dump "$TMP/small.plan" --dim Q=1
contains "$ERR" "model 'small' has no dim 'Q'; its dims are: N, V" "dump --dim: unknown dim"
run 1 "dump --dim without a value" "$ITRC" dump "$TMP/small.plan" --dim N
contains "$ERR" "--dim expects NAME=VALUE, got 'N'" "dump --dim: malformed"

# default output name: next to the source, .ir -> .plan
cp "$IR/cli_fold.ir" "$TMP/fold.ir"
run 0 "compile with the default output" "$ITRC" compile "$TMP/fold.ir"
check test -s "$TMP/fold.plan" "default plan name"

# -O0 keeps every node; -O1 (default) simplifies
run 0 "compile -O0" "$ITRC" compile -O0 "$TMP/fold.ir" -o "$TMP/fold0.plan"
matches "$OUT" "wrote .*fold0.plan: 1 entry, [0-9]+ nodes" "-O0 summary"
n0=$(sed -E 's/.* ([0-9]+) nodes.*/\1/' "$OUT")
run 0 "compile -O1 -v" "$ITRC" compile -O1 -v "$TMP/fold.ir" -o "$TMP/fold1.plan"
contains "$ERR" "simplify:" "-v reports the passes"
n1=$(sed -E 's/.* ([0-9]+) nodes.*/\1/' "$OUT")
check test "$n1" -lt "$n0" "-O1 removes nodes ($n0 -> $n1)"
run 0 "dump the simplified plan" "$ITRC" dump "$TMP/fold1.plan"
check test "$(grep -c ' = relu(' "$OUT")" -eq 1 "CSE left one relu"
check test "$(grep -c ' = transpose(' "$OUT")" -eq 0 "the double transpose is gone"

# targets
# --target cuda needs NVRTC (tests/cli/cuda.sh checks its plans): where the
# build lacks it, a clear refusal and no plan.
if ! "$ITRC" compile --target cuda "$IR/cli_small.ir" -o "$TMP/c.plan" >"$OUT" 2>"$ERR"; then
  contains "$ERR" "target 'cuda' needs NVRTC, which this build lacks" "target cuda without NVRTC"
  check test ! -e "$TMP/c.plan" "no plan for an unavailable target"
else
  contains "$OUT" "target cuda" "target cuda with NVRTC"
fi
run 1 "unknown target" "$ITRC" compile --target=tpu "$IR/cli_small.ir" -o "$TMP/c.plan"
contains "$ERR" "unknown target 'tpu'" "unknown target message"
contains "$ERR" "ref" "unknown target lists the known ones"
run 0 "explicit ref target" "$ITRC" compile --target ref "$IR/cli_small.ir" -o "$TMP/r.plan"
run 0 "dump a ref plan" "$ITRC" dump "$TMP/r.plan" --kernels
contains "$OUT" "target:         ref" "dump: the ref target"
contains "$OUT" "kernels: none" "dump --kernels of a ref plan says it has none"
run 0 "explicit llvm target" "$ITRC" compile --target llvm "$IR/cli_small.ir" -o "$TMP/l.plan"
matches "$OUT" "target llvm, [0-9]+ fused kernels" "compile --target llvm counts the fused kernels"
run 0 "dump --kernels" "$ITRC" dump "$TMP/l.plan" --kernels
contains "$OUT" "target:         llvm" "dump: the llvm target"
matches "$OUT" "schedule of 'encode' \(f32\)" "dump --kernels: the encode schedule"
matches "$OUT" "kernel k[0-9]+_" "dump --kernels: a kernel"
run 1 "bad -O level" "$ITRC" compile -O3 "$IR/cli_small.ir" -o "$TMP/c.plan"

# errors leave no output behind, not even a temporary
run 1 "compile a bad file" "$ITRC" compile "$IR/cli_bad.ir" -o "$TMP/bad.plan"
matches "$ERR" "cli_bad\.ir:9:[0-9]+: error" "compile reports file:line:col"
check test -z "$(ls "$TMP" | grep '^bad\.plan')" "no plan (or temporary) after an error"
cp "$TMP/small.plan" "$TMP/keep.plan"
run 1 "compile over an existing plan fails" "$ITRC" compile "$IR/cli_bad.ir" -o "$TMP/keep.plan"
check cmp -s "$TMP/small.plan" "$TMP/keep.plan" "an existing plan is left untouched"
run 1 "unwritable output" "$ITRC" compile "$IR/cli_small.ir" -o "$TMP/no/such/dir/x.plan"

# ---- broken plans: clean errors, exit 1
head -c 40 "$TMP/small.plan" >"$TMP/trunc.plan"
run 1 "dump a truncated plan" "$ITRC" dump "$TMP/trunc.plan"
contains "$ERR" "trunc.plan" "the truncated plan is named"
printf 'not a plan at all\n' >"$TMP/text.plan"
run 1 "dump a text file" "$ITRC" dump "$TMP/text.plan"
: >"$TMP/empty.plan"
run 1 "dump an empty file" "$ITRC" dump "$TMP/empty.plan"
run 1 "dump a missing file" "$ITRC" dump "$TMP/missing.plan"

# ---- ops
run 0 "ops" "$ITRC" ops
contains "$OUT" "matmul" "ops lists matmul"
run 0 "ops --markdown" "$ITRC" ops --markdown
contains "$OUT" "| \`matmul\` |" "markdown table row"
run 1 "ops with a bad argument" "$ITRC" ops --html

summary
