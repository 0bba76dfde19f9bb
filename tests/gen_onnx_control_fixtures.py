"""ONNX If and Loop fixtures of tests/cli/onnx_control.sh (docs/onnx.md).

Built with Debian's python3-onnx (onnx.helper) and checked with its checker;
no PyTorch involved, so the graphs are exactly what is written here:

- if_where.onnx: y = x + x if sum(x) > 0 else -x, the condition computed
  from the input at run time (imported as both branches and a where);
- loop_sum.onnx: a Loop of M = 4 (an initializer) with no condition, a
  running sum s += x * (i + 1) carried and 2 s stacked per step, and the
  step's entry of a table (Slice from i to i + 1) stacked too;
- loop_early_exit.onnx: the same body with the condition output i < 2, a
  data-dependent early exit, which the importer refuses.

    /usr/bin/python3 tests/gen_onnx_control_fixtures.py

writes tests/fixtures/onnx/{if_where,loop_sum,loop_early_exit}.onnx.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "onnx")
OPSET = 13


def save(model, name):
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(OUT, name)
    onnx.save(model, path)
    print("wrote", path)


def if_where():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"], name="double")], "then_g", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="negate")], "else_g", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 3])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], name="total", keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"], name="positive"),
        helper.make_node("If", ["positive"], ["y"], name="choose", then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(nodes, "if_where", [x], [y], [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)]), "if_where.onnx")


def loop(name, early_exit):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    s0 = helper.make_tensor_value_info("s0", TensorProto.FLOAT, [2])
    outs = [helper.make_tensor_value_info("s_final", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("picked", TensorProto.FLOAT, [None, 1])]
    body_nodes = [
        helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["fi", "one_f"], ["k"]),
        helper.make_node("Mul", ["x", "k"], ["step"]),
        helper.make_node("Add", ["s_in", "step"], ["s_out"]),
        helper.make_node("Mul", ["s_out", "two"], ["dbl"]),
        helper.make_node("Add", ["i", "one"], ["i1"]),
        helper.make_node("Unsqueeze", ["i", "axes0"], ["start"]),
        helper.make_node("Unsqueeze", ["i1", "axes0"], ["end"]),
        helper.make_node("Slice", ["table", "start", "end"], ["pick"]),
    ]
    if early_exit:
        body_nodes.append(helper.make_node("Less", ["i", "two_i"], ["cond_out"], name="keep_going"))
    else:
        body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    body_inits = [numpy_helper.from_array(np.array(1, np.float32), "one_f"),
                  numpy_helper.from_array(np.array(2, np.float32), "two"),
                  numpy_helper.from_array(np.array(1, np.int64), "one"),
                  numpy_helper.from_array(np.array(2, np.int64), "two_i"),
                  numpy_helper.from_array(np.array([0], np.int64), "axes0")]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("dbl", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("pick", TensorProto.FLOAT, [1])],
        body_inits)
    inits = [numpy_helper.from_array(np.array(4, np.int64), "M"),
             numpy_helper.from_array(np.array([10, 20, 30, 40], np.float32), "table")]
    loop_in = ["M", "", "s0"]
    if early_exit:
        inits.append(numpy_helper.from_array(np.array(True), "go"))
        loop_in = ["M", "go", "s0"]
    nodes = [helper.make_node("Loop", loop_in, ["s_final", "doubled", "picked"], name="steps", body=body)]
    g = helper.make_graph(nodes, name, [x, s0], outs, inits)
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)]), name + ".onnx")


if __name__ == "__main__":
    if_where()
    loop("loop_sum", False)
    loop("loop_early_exit", True)
