# Shared helpers of the command-line tests (sourced, not run: ctest runs
# only tests/cli/*.sh). Usage in a test script:
#   source "$(dirname "$0")/lib.bash" "$@"
#   run 0 "itrc --version" "$ITRC" --version
#   contains "$OUT" "itrc 0.1.0" "version line"
#   summary
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: bash $0 BIN_DIR SOURCE_DIR" >&2
  exit 2
fi
BIN=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
ITRC=$BIN/itrc
ITR_RUN=$BIN/itr-run
TMP=$(mktemp -d "${TMPDIR:-/tmp}/itr-cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
OUT=$TMP/stdout
ERR=$TMP/stderr

pass() { PASSED=$((PASSED + 1)); }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $*" >&2
}

# run EXPECTED_EXIT DESCRIPTION COMMAND...: runs the command with stdout in
# $OUT and stderr in $ERR, and checks its exit status. Exit statuses of 128
# and above (a crash) always fail.
run() {
  local want=$1 desc=$2
  shift 2
  local rc=0
  "$@" >"$OUT" 2>"$ERR" || rc=$?
  if [ "$rc" -eq "$want" ]; then
    pass
  else
    fail "$desc: exit status $rc, expected $want"
    sed 's/^/    stdout: /' "$OUT" | head -20 >&2
    sed 's/^/    stderr: /' "$ERR" | head -20 >&2
  fi
}

# contains FILE TEXT DESCRIPTION: FILE has TEXT (fixed string).
contains() {
  if grep -qF -- "$2" "$1"; then pass; else
    fail "$3: '$2' not found in $(basename "$1")"
    sed 's/^/    | /' "$1" | head -20 >&2
  fi
}

# matches FILE REGEX DESCRIPTION: FILE has a line matching the extended regex.
matches() {
  if grep -qE -- "$2" "$1"; then pass; else
    fail "$3: /$2/ not found in $(basename "$1")"
    sed 's/^/    | /' "$1" | head -20 >&2
  fi
}

# not COMMAND...: succeeds when COMMAND fails (for check).
not() { ! "$@"; }

# check CONDITION... DESCRIPTION: the last argument describes a test command.
check() {
  local desc=${*: -1}
  if "${@:1:$#-1}"; then pass; else fail "$desc"; fi
}

# repeat_bytes OUTFILE NBYTES PATTERN: NBYTES bytes of the printf-escaped
# PATTERN ('\x00\x00\x80\x3f' is float 1.0) repeated.
repeat_bytes() {
  local out=$1 n=$2 pat=$3
  printf "$pat" >"$out.rep"
  while [ "$(stat -c %s "$out.rep")" -lt "$n" ]; do
    cat "$out.rep" "$out.rep" >"$out.rep2"
    mv "$out.rep2" "$out.rep"
  done
  head -c "$n" "$out.rep" >"$out"
  rm -f "$out.rep"
}

# write_npy OUTFILE DESCR SHAPE DATAFILE: a version 1.0 .npy file, with a
# header padded so the data starts at a multiple of 64 bytes.
# DESCR: '<f4', '<i4', ...; SHAPE: a Python tuple, "(2, 3)", "(4,)".
write_npy() {
  local out=$1 descr=$2 shape=$3 data=$4
  local dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
  local pad=$(( (64 - (10 + ${#dict} + 1) % 64) % 64 ))
  local hdr
  hdr="$dict$(printf '%*s' "$pad" '')"
  local hlen=$(( ${#hdr} + 1 ))
  {
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
    printf '%s\n' "$hdr"
    cat "$data"
  } >"$out"
}

summary() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
