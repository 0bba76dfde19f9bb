# itr-run --backend cuda on a machine without an NVIDIA driver (CI, and the
# machines this project is built on): every command fails with one clear
# message and status 1, writes nothing and does not crash
# (docs/backends.md "CUDA"). On a machine with a driver the no-driver checks
# are skipped (tools/gpu-check.sh tests the backend there).
source "$(dirname "$0")/lib.bash" "$@"
IR=$SRC/tests/ir
P=$TMP/small.plan
NO_DRIVER="error: cuda backend: cannot load libcuda.so.1 (no NVIDIA driver on this machine)"

run 0 "compile the test model" "$ITRC" compile "$IR/cli_small.ir" -o "$P"
run 0 "init weights" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w.safetensors"
run 0 "make inputs" "$ITR_RUN" "$P" run make_inputs --out "$TMP/in"
run 1 "an unknown backend" "$ITR_RUN" "$P" info --backend nope
contains "$ERR" "available: ref, llvm, cuda" "cuda is a backend of this build"

if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  echo "note: this machine has libcuda.so.1; the no-driver checks are skipped"
else
  run 1 "info --backend cuda" "$ITR_RUN" "$P" info --backend cuda
  check test "$(cat "$ERR")" = "$NO_DRIVER" "info: exactly the no-driver message"
  run 1 "run --backend cuda" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" \
    --out "$TMP/out" --backend cuda
  contains "$ERR" "$NO_DRIVER" "run: the no-driver message"
  check test ! -e "$TMP/out" "run: no outputs written"
  run 1 "init --backend cuda" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w2.safetensors" --backend cuda
  contains "$ERR" "$NO_DRIVER" "init: the no-driver message"
  check test ! -e "$TMP/w2.safetensors" "init: no weights written"
  run 1 "run --f64 --backend cuda" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" \
    --out "$TMP/out" --f64 --backend cuda
  contains "$ERR" "$NO_DRIVER" "run --f64: the no-driver message"
fi

# A driver library that is not there, and the toolkit's stub library (what a
# container without the driver's files mounted has): named, no crash.
ITRC_LIBCUDA=$TMP/missing/libcuda.so.1 run 1 "ITRC_LIBCUDA pointing nowhere" "$ITR_RUN" "$P" info --backend cuda
contains "$ERR" "cuda backend: cannot load $TMP/missing/libcuda.so.1 (ITRC_LIBCUDA)" "the library tried is named"
STUB=/usr/local/cuda/lib64/stubs/libcuda.so
if [ -e "$STUB" ]; then
  ITRC_LIBCUDA=$STUB run 1 "the stub driver" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" \
    --weights "$TMP/w.safetensors" --out "$TMP/out" --backend cuda
  contains "$ERR" "cuda backend: cuInit failed: CUDA_ERROR_STUB_LIBRARY (34)" "the stub's answer is named"
else
  echo "note: no CUDA toolkit stub at $STUB; that check is skipped"
fi

# The other backends are unaffected.
run 0 "run --backend ref" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" \
  --out "$TMP/out_ref" --backend ref
check test -e "$TMP/out_ref/emb.npy" "ref still runs"
summary
