#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan) and
# runs each (docs/contributing.md "Fuzzing").
#   tests/fuzz/run.sh [--smoke] [BUILD_DIR]     (default build-fuzz)
# Environment:
#   FUZZ_TIME=SECONDS   per target (default 60; --smoke: 5)
#   FUZZ_TARGET=NAMES   space-separated readers (npy plan ...); default all
#   FUZZ_JOBS=N         build parallelism (default nproc)
#   FUZZ_CC=COMPILER    default clang-14, else clang
# --smoke (make test) runs each target over a scratch copy of its seeds and
# skips, saying why, when clang or libFuzzer is missing; without it (make
# fuzz) new inputs accumulate in BUILD_DIR/corpus/<reader>/ across runs and a
# missing clang is an error. Findings go to BUILD_DIR/findings/; the exit
# status is non-zero when any target found one.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
build=${1:-build-fuzz}
case $build in /*) ;; *) build=$root/$build ;; esac
time_s=${FUZZ_TIME:-$([ $smoke = 1 ] && echo 5 || echo 60)}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

skip() {
  if [ $smoke = 1 ]; then echo "== fuzz smoke: skipped: $*"; exit 0; fi
  echo "fuzz: $*" >&2; exit 1
}
cc=${FUZZ_CC:-$(command -v clang-14 || command -v clang || true)}
[ -n "$cc" ] && command -v "$cc" >/dev/null || skip "clang not found (Debian: apt-get install clang-14 libclang-rt-14-dev)"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe/p.c"
"$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null ||
  skip "$cc cannot link -fsanitize=fuzzer,address,undefined (Debian: apt-get install libclang-rt-14-dev)"

echo "== fuzz: building the targets with $cc in $build"
CC=$cc cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DITR_FUZZ=ON >/dev/null || exit 1
cmake --build "$build" --target fuzz_all -j "$jobs" >"$build/fuzz-build.log" 2>&1 || {
  cat "$build/fuzz-build.log"; exit 1; }

targets=${FUZZ_TARGET:-$(cd "$root/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
mkdir -p "$build/findings"
failed=()
for t in $targets; do
  bin=$build/tests/fuzz/fuzz_$t seeds=$root/tests/fuzz/corpus/$t
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2; failed+=("$t"); continue; }
  if [ $smoke = 1 ]; then work=$probe/$t; else work=$build/corpus/$t; fi
  mkdir -p "$work"
  log=$build/fuzz-$t.log
  # -timeout: an input that takes 10 s is a hang worth reporting.
  "$bin" "$work" "$seeds" -max_total_time="$time_s" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$t-" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    printf '   %-12s %10s inputs in %ss, %s, corpus %s files\n' "$t" "${execs:-?}" "$time_s" "${cov:-cov: ?}" \
      "$(ls "$work" | wc -l)"
  else
    echo "   $t: FINDING (exit $rc); log $log; the input is in $build/findings/:"
    grep -E 'ERROR|runtime error|invariant failed|Test unit written' "$log" | head -5 | sed 's/^/     /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings or errors in: ${failed[*]}; reproduce with $build/tests/fuzz/fuzz_READER FILE" >&2
  exit 1
fi
