"""What keeping nodes in higher precision costs: multiply-accumulates per sample of the INT8-eligible ops. A node whose
inputs are all constants is folded by the builder and counts none (graph/placement.folded_nodes)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx

from workbench.graph.placement import folded_nodes


def macs_per_sample(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Node name → MACs per sample for Conv, ConvTranspose, Gemm and MatMul, from observed tensor shapes."""
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out: dict[str, int] = {}
    folded = folded_nodes(model)
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or node.output[0] not in shapes:
            continue
        if node.name in folded:
            out[node.name] = 0
            continue
        y = shapes[node.output[0]]
        per_sample = int(np.prod(y[1:])) if len(y) > 1 else int(np.prod(y))
        w = weights.get(node.input[1]) or tuple(shapes.get(node.input[1], ()))
        a = tuple(shapes.get(node.input[0], ()))
        if node.op_type == "Conv" and len(w) > 2:
            k = int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose" and len(w) > 2 and len(a) > 2:
            # every input element meets every weight of its group (w: [C_in, C_out / group, k...])
            out[node.name] = int(np.prod(a[1:])) * int(np.prod(w[1:]))
            continue
        elif node.op_type == "Gemm" and len(w) == 2:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            k = int(w[1] if trans_b else w[0])
        elif a:
            k = int(a[-1])
        else:
            continue
        out[node.name] = per_sample * k
    return out


def inferred_shapes(model: onnx.ModelProto, inputs: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape by ONNX shape inference with the inputs fixed to the given shapes, for MACs where the
    model was not run (an engine's view); tensors whose shape stays symbolic are left out."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in inputs:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, inputs[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    try:
        graph = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True).graph
    except Exception:  # a graph shape inference cannot read: no MACs rather than no engine view
        return {}
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes
