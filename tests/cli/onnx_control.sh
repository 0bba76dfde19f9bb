# ONNX If and Loop on the command line (docs/onnx.md "Control flow"):
# `itrc import` turns an If with a run-time condition into both branches and
# a where, and a Loop of a known trip count into a scan, each a readable .ir
# that `itrc check` and `itrc compile` accept; itr-run gives the values
# computed by hand. A Loop with a data-dependent condition (an early exit)
# is refused, naming the node, the op and the opset, and writes nothing.
# The fixtures are tests/gen_onnx_control_fixtures.py's.
source "$(dirname "$0")/lib.bash" "$@"

FIX=$SRC/tests/fixtures/onnx

run 0 "import an If with a run-time condition" "$ITRC" import "$FIX/if_where.onnx" -o "$TMP/if.ir"
contains "$TMP/if.ir" "entry forward(x: f32[N, 3]) -> (y)" "entry with a dynamic batch"
contains "$TMP/if.ir" "where(" "the branches are selected with where"
contains "$TMP/if.ir" "neg(x)" "the else branch is inlined"
run 0 "check the If's .ir" "$ITRC" check "$TMP/if.ir"
run 0 "compile the If's .ir" "$ITRC" compile "$TMP/if.ir" -o "$TMP/if.plan" --target ref
contains "$OUT" "wrote $TMP/if.plan: 1 entry" "compile summary"

run 0 "import a Loop of 4 steps" "$ITRC" import "$FIX/loop_sum.onnx" -o "$TMP/loop.ir"
contains "$TMP/loop.ir" "def loop_body0(s_in: f32[2], i: i64[], x: f32[2])" "the body: carry, iteration number, outer value"
contains "$TMP/loop.ir" "iota(shape=[4])" "the iteration numbers"
contains "$TMP/loop.ir" "scan(loop_body0, s0, _0, x, n_carry=1, n_scan=1)" "the loop is a scan"
run 0 "check the Loop's .ir" "$ITRC" check "$TMP/loop.ir"
run 0 "compile the Loop's .ir (LLVM)" "$ITRC" compile "$TMP/loop.ir" -o "$TMP/loop_llvm.plan"
contains "$OUT" "wrote $TMP/loop_llvm.plan: 1 entry" "compile summary"
run 0 "compile the Loop directly" "$ITRC" compile "$FIX/loop_sum.onnx" -o "$TMP/loop.plan" --target ref
contains "$OUT" "wrote $TMP/loop.plan: 1 entry" "compile summary"

# A python with numpy writes the inputs and checks the outputs (Debian's
# python3-numpy; the first python3 on PATH may be another one).
PY=
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c "import numpy" 2>/dev/null; then PY=$p; break; fi
done
if [ -x "$ITR_RUN" ] && [ -n "$PY" ]; then
  "$PY" -c "
import numpy as n, sys
n.save(sys.argv[1] + '/x.npy', n.array([[1, -2, 3], [0.5, 4, -6]], n.float32))
n.save(sys.argv[1] + '/xn.npy', -n.array([[1, -2, 3], [0.5, 4, -6]], n.float32))
n.save(sys.argv[1] + '/lx.npy', n.array([1, -2], n.float32))
n.save(sys.argv[1] + '/s0.npy', n.array([0.5, 3], n.float32))" "$TMP"
  # sum(x) = 0.5 > 0: y = 2x; for -x, sum < 0: y = -(-x).
  run 0 "run the If, positive sum" "$ITR_RUN" "$TMP/if.plan" run forward --in "x=$TMP/x.npy" --out "$TMP/ip"
  run 0 "run the If, negative sum" "$ITR_RUN" "$TMP/if.plan" run forward --in "x=$TMP/xn.npy" --out "$TMP/in"
  run 0 "run the Loop" "$ITR_RUN" "$TMP/loop.plan" run forward --in "x=$TMP/lx.npy" --in "s0=$TMP/s0.npy" \
    --out "$TMP/lo"
  # After step i, s = s0 + x (1 + ... + (i + 1)); doubled = 2 s per step;
  # picked = table[i] = 10 (i + 1).
  "$PY" -c "
import numpy as n, sys
d = sys.argv[1]
x = n.load(d + '/x.npy')
ok = n.array_equal(n.load(d + '/ip/y.npy'), 2 * x) and n.array_equal(n.load(d + '/in/y.npy'), x)
lx, s0 = n.array([1, -2], n.float32), n.array([0.5, 3], n.float32)
tri = n.array([1, 3, 6, 10], n.float32)[:, None]
ok = ok and n.array_equal(n.load(d + '/lo/s_final.npy'), s0 + 10 * lx)
ok = ok and n.array_equal(n.load(d + '/lo/doubled.npy'), 2 * (s0 + tri * lx))
ok = ok and n.array_equal(n.load(d + '/lo/picked.npy'), n.array([[10], [20], [30], [40]], n.float32))
sys.exit(0 if ok else 1)" "$TMP" && pass || fail "itr-run's outputs differ from the hand-computed values"
else
  echo "note: itr-run or a python with numpy missing: the outputs are not checked here (tests/test_onnx.c checks them)"
fi

run 1 "a Loop with an early exit" "$ITRC" import "$FIX/loop_early_exit.onnx" -o "$TMP/ee.ir"
contains "$ERR" "loop_early_exit.onnx: node 0 'steps' (Loop, opset 13): Loop with a data-dependent condition is not supported" \
  "names node, op and opset"
contains "$ERR" "the body's condition output 'cond_out' is computed at run time" "says which value"
[ ! -e "$TMP/ee.ir" ] && pass || fail "an .ir was written for a refused model"
run 1 "compiling it directly" "$ITRC" compile "$FIX/loop_early_exit.onnx" -o "$TMP/ee.plan"
[ ! -e "$TMP/ee.plan" ] && pass || fail "a plan was written for a refused model"
summary
