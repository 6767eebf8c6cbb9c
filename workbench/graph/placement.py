"""What an ONNX graph claims about the precision each compute node runs in, read from its Q/DQ layout and types.

TensorRT 11 and TensorRT-RTX build strongly typed networks: a Conv, ConvTranspose, Gemm or MatMul runs in INT8 when
both its data and its weight come through DequantizeLinear (the builder fuses the pairs into an INT8 kernel), and
otherwise in the float type its data input has (FP16/BF16 under casts, FP32 if untouched). A node whose data input
is a constant (an LSTM's zero initial state: ConstantOfShape, through its Q/DQ pair) is claimed "folded": computed
at build time, no MACs (TensorRT-RTX 1.7 on the CRNN's first recurrent Gemms; beside a live Gemm sharing its weight
it stacks the two into one INT8 kernel instead, which the engine view reports). This is the claim the diagnosis's
cost is computed from; the engine view checks it against what the builder actually chose.
"""
from __future__ import annotations

import onnx

from workbench.graph.lint import INT8_OPS
from workbench.graph.topology import GraphIndex

# Ops that carry a value through unchanged but for its scale, type or layout.
PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Reshape", "Transpose", "Identity", "Cast", "Squeeze",
                "Unsqueeze", "Flatten")
FLOAT_NAMES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16",
               onnx.TensorProto.DOUBLE: "fp64"}


def claimed_precisions(model: onnx.ModelProto) -> dict[str, str]:
    """Compute node name → the precision its Q/DQ layout and types say it runs in (int8, fp16, bf16, fp32)."""
    graph = model.graph
    index = GraphIndex(graph)
    types = _elem_types(model)
    initializers = {i.name for i in graph.initializer}
    claims: dict[str, str] = {}
    folded = folded_nodes(model, index)
    for node in graph.node:
        if node.op_type not in INT8_OPS or len(node.input) < 2:
            continue
        if node.name in folded:
            claims[node.name] = "folded"
            continue
        through_dq = [_through_dq(index, name) for name in node.input[:2]]
        if all(through_dq):
            claims[node.name] = "int8"
            continue
        data = node.input[0] if node.input[0] not in initializers else node.input[1]
        claims[node.name] = FLOAT_NAMES.get(types.get(data, onnx.TensorProto.FLOAT), "fp32")
    return claims


def folded_nodes(model: onnx.ModelProto, index: GraphIndex | None = None) -> set[str]:
    """Compute nodes whose data and weight inputs are both constants: the builder folds them, so they run no MACs."""
    index = index or GraphIndex(model.graph)
    constants = {i.name for i in model.graph.initializer}
    return {node.name for node in model.graph.node if node.op_type in INT8_OPS and len(node.input) >= 2
            and all(_constant(index, constants, name) for name in node.input[:2])}


def _constant(index: GraphIndex, initializers: set[str], tensor: str) -> bool:
    """Whether a tensor's value is fixed when the engine is built: an initializer, a Constant or ConstantOfShape
    output, or such a value through Q/DQ, reshaping or a cast."""
    for _ in range(16):
        if tensor in initializers:
            return True
        node = index.producer.get(tensor)
        if node is None:
            return False
        if node.op_type in ("Constant", "ConstantOfShape"):
            return True
        if node.op_type not in PASS_THROUGH:
            return False
        tensor = node.input[0]
    return False


def _through_dq(index: GraphIndex, tensor: str) -> bool:
    """Whether a tensor is a DequantizeLinear output (directly or through a weight-side Transpose/Reshape)."""
    node = index.producer.get(tensor)
    while node is not None and node.op_type in ("Transpose", "Reshape", "Identity"):
        node = index.producer.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name → element type, from the declared types and ONNX shape inference (initializers included)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a graph shape inference cannot read still has its declared types
        inferred = model
    graph = inferred.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types
