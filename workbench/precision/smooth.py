"""Activation smoothing (SmoothQuant, Xiao et al., 2023): per input channel, divide an activation by s and multiply
the reading layer's weights by s, so outlier channels migrate into the per-channel weight scales.

Where equalization (workbench.precision.equalize) needs a weighted producer behind a scale-equivariant
activation, smoothing takes any activation read by Conv/Gemm/MatMul layers with constant weights: a transformer's
LayerNorm output (also read by the residual Add), a GELU or hard-swish output. The 1/s goes into the producer when
that is exact (a LayerNormalization read only by the smoothed layers: its scale and bias), else into one explicit
per-channel Mul in front of the smoothed layers (named `<tensor>/smooth`; TensorRT fuses a pointwise Mul into the
Quantize that follows it). The strength alpha (s = a^alpha / w^(1 - alpha)) is chosen per tensor from calibration
statistics by the same expected-noise proxy as equalization (workbench.precision.equalize.choose_scale). A tensor
is smoothed when that noise falls by 2 % or more, and through an explicit Mul only when it falls to EXPLICIT_GAIN
of today's or below.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from workbench.graph.topology import export_like
from workbench.model.data import Dataset
from workbench.precision.equalize import (
    STAT_SAMPLES,
    _channels,
    _constant,
    _scale_consumer,
    channel_statistics,
    choose_scale,
)

VERSION = 1  # bump when the smoothed graph for the same input changes
EXPLICIT_GAIN = 0.8  # an explicit Mul is added only where the expected noise falls to this ratio or below
OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class SmoothedTensor:
    tensor: str  # the activation whose channels were divided by s
    consumers: list[str]  # layers whose input-channel weights were multiplied by s
    absorbed_by: str | None  # the producer whose constants took 1/s, or None
    mul: str | None  # the explicit Mul node added in front of the consumers, or None
    alpha: float
    noise_ratio: float  # expected output noise of the consumers after / before (below 1: better)
    spread_before: float  # max / median of the activation's channel ranges
    spread_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def _reader(node, tensor) -> tuple[np.ndarray, bool, int] | None:
    """(weight as [out, in, ...], depthwise?, channel axis of the input) for a layer smoothing can rescale: its
    data input is `tensor` and its weight a constant nobody else reads."""
    if node.op not in OPS or not node.inputs or node.inputs[0] is not tensor:
        return None
    weight = _constant(node, 1)
    if weight is None or len(weight.outputs) != 1:
        return None
    w = weight.values
    if node.op == "Conv":
        found = _channels(node)
        return None if found is None else (w, found[1], 1)
    if w.ndim != 2:
        return None
    if node.op == "Gemm":
        if node.attrs.get("transA", 0):
            return None
        return (w if node.attrs.get("transB", 0) else w.T), False, -1
    return w.T, False, -1


def _scale_reader(node, s: np.ndarray) -> None:
    """Multiply the layer's input channels by s."""
    if node.op == "Conv":
        _scale_consumer(node, s)
        return
    weight = _constant(node, 1)
    along_rows = node.op == "MatMul" or not node.attrs.get("transB", 0)
    shape = (-1, 1) if along_rows else (1, -1)
    weight.values = (weight.values * s.reshape(shape)).astype(weight.values.dtype)


def _absorbing_norm(tensor, readers: list) -> object | None:
    """A LayerNormalization over the last axis, with constant scale (and bias), whose output only the smoothed
    layers read: dividing its scale and bias by s is exact."""
    if len(tensor.inputs) != 1 or len(tensor.outputs) != len(readers):
        return None
    norm = tensor.inputs[0]
    if norm.op != "LayerNormalization" or norm.attrs.get("axis", -1) != -1 or len(norm.outputs) != 1:
        return None
    constants = [_constant(norm, i) for i in range(1, len(norm.inputs))]
    if any(c is None or len(c.outputs) != 1 for c in constants):
        return None
    return norm


def candidates(graph) -> list[tuple[object, list]]:
    """(activation, its readers smoothing can rescale) for every float activation read by Conv/Gemm/MatMul layers
    with their own constant weights, on one channel axis."""
    inputs = {t.name for t in graph.inputs}
    out = []
    for tensor in graph.tensors().values():
        if tensor.name in inputs or not hasattr(tensor, "inputs") or not tensor.inputs:
            continue
        if tensor.dtype is not None and np.dtype(tensor.dtype) != np.float32:
            continue
        readers = [(node, found) for node in tensor.outputs if (found := _reader(node, tensor)) is not None]
        if readers and len({found[2] for _, found in readers}) == 1:
            out.append((tensor, readers))
    return out


def smooth(model: onnx.ModelProto, model_path, data: Dataset) -> tuple[onnx.ModelProto, list[SmoothedTensor]]:
    """The smoothed FP32 model (same outputs within float rounding) and what changed, tensor by tensor."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    found = candidates(graph)
    if not found:
        return model, []
    axes = {t.name: readers[0][1][2] for t, readers in found}
    stats = channel_statistics(model_path, sorted(axes), data.take(min(len(data), STAT_SAMPLES)), axes=axes)
    report = []
    for tensor, readers in found:
        amax, mean_square = stats[tensor.name]
        s, alpha, ratio = choose_scale([(w, dw, amax, mean_square) for _, (w, dw, _) in readers])
        norm = _absorbing_norm(tensor, readers)
        if alpha is None or (norm is None and ratio > EXPLICIT_GAIN):
            continue
        s = s.astype(np.float32)
        for node, _ in readers:
            _scale_reader(node, s)
        mul = None
        if norm is not None:
            for index in range(1, len(norm.inputs)):
                c = _constant(norm, index)
                c.values = (c.values / s).astype(c.values.dtype)
        else:
            mul = f"{tensor.name}/smooth"
            axis = readers[0][1][2]
            rank = readers[0][1][0].ndim if axis == 1 else 1
            shape = (-1,) if axis == -1 else (1, -1) + (1,) * (rank - 2)
            smoothed = gs.Variable(f"{tensor.name}/smoothed", dtype=tensor.dtype, shape=tensor.shape)
            graph.nodes.append(gs.Node("Mul", name=mul, inputs=[
                tensor, gs.Constant(f"{mul}/inverse_scale", (1.0 / s).reshape(shape).astype(np.float32))],
                outputs=[smoothed]))
            for node, _ in readers:
                node.inputs[0] = smoothed
        live = amax > 0
        report.append(SmoothedTensor(
            tensor.name, [node.name for node, _ in readers], None if norm is None else norm.name, mul, alpha,
            round(float(ratio), 4), round(float(amax[live].max() / np.median(amax[live])), 2),
            round(float((amax / s)[live].max() / np.median((amax / s)[live])), 2)))
    return export_like(graph, model), report


def smoothable(model: onnx.ModelProto) -> int:
    """How many activations `smooth` could rescale in this graph (0: nothing to try)."""
    import onnx_graphsurgeon as gs

    return len(candidates(gs.import_onnx(model)))
