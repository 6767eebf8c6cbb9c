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
