#!/usr/bin/env python3
"""Builds ort_small/1/model.onnx, the small MLP that benchmarks/models/ort_small serves (committed).

64 -> 128 -> 128 -> 16 FP32 with ReLU between layers, a dynamic batch dimension, fixed-seed weights
(about 100 KB). Opset 17 and IR version 8, so that older onnxruntime releases (the Triton peer's) load it too.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = (64, 128, 128, 16)


def mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, weights, x = [], [], "INPUT"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(LAYERS)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = np.zeros(fan_out, np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(LAYERS) - 2
        y = "OUTPUT" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y if last else f"g{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [y]))
        x = y
    graph = helper.make_graph(
        nodes,
        "ort_small",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["N", LAYERS[0]])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["N", LAYERS[-1]])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    path = os.path.join(HERE, "ort_small", "1", "model.onnx")
    onnx.save(mlp(), path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
