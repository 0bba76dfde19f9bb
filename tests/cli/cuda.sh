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

# --device N: the GPU of --backend cuda. Without a driver, the same message;
# a number that is none, or --device with another backend (or none), is a
# usage error.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  run 1 "info --backend cuda --device 1" "$ITR_RUN" "$P" info --backend cuda --device 1
  check test "$(cat "$ERR")" = "$NO_DRIVER" "--device: exactly the no-driver message"
  run 1 "run --device 0 --backend cuda" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" \
    --weights "$TMP/w.safetensors" --out "$TMP/out" --device 0 --backend cuda
  contains "$ERR" "$NO_DRIVER" "run --device: the no-driver message"
  check test ! -e "$TMP/out" "run --device: no outputs written"
fi
run 1 "--device -1" "$ITR_RUN" "$P" info --backend cuda --device -1
contains "$ERR" "itr-run info: --device expects a GPU number from 0 to 1024, got '-1'" "--device -1 refused"
run 1 "--device x" "$ITR_RUN" "$P" run encode --backend cuda --device x
contains "$ERR" "itr-run run: --device expects a GPU number from 0 to 1024, got 'x'" "--device x refused"
run 1 "--device with --backend ref" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" \
  --weights "$TMP/w.safetensors" --out "$TMP/out_dev" --device 0 --backend ref
contains "$ERR" "itr-run run: --device applies to --backend cuda only, not 'ref'" "--device with ref refused"
check test ! -e "$TMP/out_dev" "--device with ref: nothing written"
run 1 "--backend llvm before --device" "$ITR_RUN" "$P" info --backend llvm --device 0
contains "$ERR" "--device applies to --backend cuda only, not 'llvm'" "--device after llvm refused"
run 1 "--device without --backend" "$ITR_RUN" "$P" init --seed 1 -o "$TMP/w3.safetensors" --device 0
contains "$ERR" "itr-run init: --device applies to --backend cuda only; add --backend cuda" "--device alone refused"
check test ! -e "$TMP/w3.safetensors" "--device alone: no weights written"
run 1 "eval --backend ref --device 0" "$ITR_RUN" "$P" eval --backend ref --device 0
contains "$ERR" "itr-run eval: --device applies to --backend cuda only, not 'ref'" "eval takes --device"

# itrc compile --target cuda: the plan carries each schedule's cubins for
# sm_80 and sm_90 and its PTX, listed by itrc dump; without NVRTC the target
# is refused (tests/cli/itrc.sh).
CP=$TMP/small_cuda.plan
if "$ITRC" compile --target cuda "$IR/cli_small.ir" -o "$CP" >"$OUT" 2>"$ERR"; then
  pass
  contains "$OUT" "target cuda" "compile --target cuda: the target"
  matches "$OUT" "CUDA code for [1-9][0-9]* schedules" "compile --target cuda: the schedules compiled"
  run 0 "dump the cuda plan" "$ITRC" dump "$CP"
  matches "$OUT" "target: +cuda$" "dump: the target"
  matches "$OUT" "^  encode \(f32\): sm_80 cubin [1-9][0-9]* bytes, sm_90 cubin [1-9][0-9]* bytes, compute_80 PTX [1-9][0-9]* bytes$" \
    "dump: encode's images with their sizes"
  matches "$OUT" "^  encode \(f64\): sm_80 cubin" "dump: the f64 schedule too"
  # The same kernels as a --target llvm plan: its CPU run is bitwise that plan's.
  run 0 "a cuda plan runs on llvm" "$ITR_RUN" "$CP" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" \
    --out "$TMP/out_cp" --backend llvm
  run 0 "an llvm plan on llvm" "$ITR_RUN" "$P" run encode --in x="$TMP/in/x.npy" --weights "$TMP/w.safetensors" \
    --out "$TMP/out_llvm" --backend llvm
  check cmp -s "$TMP/out_cp/emb.npy" "$TMP/out_llvm/emb.npy" "the cuda plan's llvm run equals the llvm plan's"
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    run 1 "the cuda plan on --backend cuda" "$ITR_RUN" "$CP" info --backend cuda --device 0
    check test "$(cat "$ERR")" = "$NO_DRIVER" "the cuda plan: the no-driver message"
  fi
  # A plan cut short: a clear error, no crash.
  head -c "$(( $(stat -c %s "$CP") / 2 ))" "$CP" >"$TMP/cut.plan"
  run 1 "dump a truncated cuda plan" "$ITRC" dump "$TMP/cut.plan"
  contains "$ERR" "truncated plan" "a truncated cuda plan is named"
else
  contains "$ERR" "target 'cuda' needs NVRTC, which this build lacks" "compile --target cuda without NVRTC"
  check test ! -e "$CP" "no plan without NVRTC"
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
