"""Activation equalization: cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019) with the
scale of each channel chosen from calibration statistics, as SmoothQuant chooses its migration strength.

TensorRT quantizes an activation with one scale per tensor and weights with one scale per output channel. Where a
Conv feeds another Conv through ReLU/Clip, channel i of the activation can be divided by s_i (the producer's
output channel i: its weights and bias, which per-channel weight scales absorb for free) and the consumer's input
channel i multiplied by s_i: the FP32 function is unchanged, but channels whose range is far below the tensor's
largest (MobileNet's depthwise inputs: 0.05 beside 6) get the INT8 steps they were missing. Clip is not
scale-equivariant: Clip(x, lo, hi) becomes Max(x, lo/s) and Min(x, hi/s) with per-channel bounds (Relu for lo = 0),
which is exact. For each pair the strength alpha (s_i = a_i^alpha / w_i^(1 - alpha); a: activation range, w: the
consumer's weight range of that channel; alpha = 1 equalizes activations, 0 weights) is the one that minimises the
consumer's expected output quantization noise (uniform noise of the per-tensor activation step through the scaled
weights, plus that of the per-channel weight steps through the activation's second moments), or no change when
nothing beats the graph as it is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from workbench.graph.topology import export_like
from workbench.model.data import Dataset

VERSION = 1  # bump when the equalized graph for the same input changes
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
STAT_SAMPLES = 64  # calibration samples the per-channel statistics are measured on


@dataclass
class EqualizedGroup:
    producers: list[str]  # nodes whose output channels were divided by s
    consumers: list[str]  # nodes whose input channels were multiplied by s
    tensors: list[str]  # the consumers' inputs (the activations that are quantized)
    alpha: float
    noise_ratio: float  # expected consumer output noise after / before (below 1: better)
    spread_before: float  # max / median of the activation's channel ranges
    spread_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def _constant(node, index: int):
    import onnx_graphsurgeon as gs

    if index >= len(node.inputs):
        return None
    value = node.inputs[index]
    return value if isinstance(value, gs.Constant) else None


def _clip_bounds(node) -> tuple[float | None, float | None] | None:
    """(lo, hi) of a Clip with constant bounds (None: unbounded), else None."""
    if "min" in node.attrs or "max" in node.attrs:
        return node.attrs.get("min"), node.attrs.get("max")
    bounds = []
    for index in (1, 2):
        if index >= len(node.inputs) or node.inputs[index].name == "":
            bounds.append(None)
            continue
        c = _constant(node, index)
        if c is None:
            return None
        bounds.append(float(np.asarray(c.values)))
    return bounds[0], bounds[1]


def _channels(conv) -> tuple[int, bool] | None:
    """(input channels, depthwise?) of a Conv with a constant weight that equalization can scale: dense (group 1)
    or depthwise (one filter per channel)."""
    weight = _constant(conv, 1)
    if conv.op != "Conv" or weight is None or (len(conv.inputs) > 2 and _constant(conv, 2) is None):
        return None
    group = int(conv.attrs.get("group", 1))
    shape = weight.values.shape
    if group == 1:
        return shape[1], False
    if shape[1] == 1 and shape[0] == group:
        return group, True
    return None


def _scalable(conv) -> bool:
    """A Conv equalization can rescale: dense or depthwise, with a constant weight no other node reads."""
    return _channels(conv) is not None and len(_constant(conv, 1).outputs) == 1


def _passes_scale(node) -> bool:
    """Per-channel positive scaling passes through this op (ReLU, pooling), or Clip whose bounds can be scaled
    per channel (lower bound <= 0, so a zero channel stays zero)."""
    if node.op in ("Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        return len([o for o in node.outputs if o.outputs]) <= 1 and node.outputs[0] is not None
    return node.op == "Clip" and _clip_bounds(node) is not None and (_clip_bounds(node)[0] or 0.0) <= 0.0


def _producer(tensor) -> tuple | None:
    """(Conv, [Relu | Clip | pooling]*) that computes `tensor`, with no other reader in between, else None."""
    chain = []
    while len(tensor.inputs) == 1:
        node = tensor.inputs[0]
        if _passes_scale(node):
            chain.insert(0, node)
            tensor = node.inputs[0]
            if len(tensor.outputs) != 1:
                return None
            continue
        if _scalable(node):
            return node, chain
        return None
    return None


@dataclass
class Group:
    """Tensors that share one channel scale: a Conv's (activated) output read by Convs, or a residual stream (the
    tensors joined by Adds), with every Conv writing into it (`producers`) and every Conv reading it."""

    tensors: list  # gs.Variable
    producers: list  # (Conv, chain)
    consumers: list  # Conv


def _residual_add(node) -> bool:
    import onnx_graphsurgeon as gs

    return node.op == "Add" and len(node.inputs) == 2 and all(isinstance(i, gs.Variable) for i in node.inputs)


def _grow(start, graph_outputs: set[str]) -> Group | None:
    seen: dict[str, object] = {}
    producers, consumers, stack = [], [], [start]
    while stack:
        tensor = stack.pop()
        if tensor.name in seen:
            continue
        if tensor.name in graph_outputs:
            return None
        seen[tensor.name] = tensor
        source = tensor.inputs[0] if len(tensor.inputs) == 1 else None
        if source is not None and _residual_add(source):
            stack.extend(source.inputs)
        else:
            found = _producer(tensor)
            if found is None:
                return None
            producers.append(found)
        for reader in tensor.outputs:
            if _residual_add(reader):
                stack.extend(list(reader.inputs) + list(reader.outputs))
            elif reader.op == "Conv" and _scalable(reader) and reader.inputs[0] is tensor:
                consumers.append(reader)
            else:
                return None
    channels = {_constant(p, 1).values.shape[0] for p, _ in producers} | {_channels(c)[0] for c in consumers}
    if len(channels) != 1 or not consumers:
        return None
    return Group(list(seen.values()), producers, consumers)


def find_groups(graph) -> list[Group]:
    """Every set of tensors equalization can rescale exactly: Conv → [Relu | Clip | pooling]* → Conv chains, and
    residual streams whose writers and readers are all Convs (MobileNet's linear bottlenecks), with constant
    weights that no other node shares."""
    outputs = {t.name for t in graph.outputs}
    groups, covered = [], set()
    for node in graph.nodes:
        if node.op != "Conv" or not _scalable(node) or node.inputs[0].name in covered:
            continue
        group = _grow(node.inputs[0], outputs)
        if group is not None:
            groups.append(group)
            covered.update(t.name for t in group.tensors)
    return groups


def equalizable(model: onnx.ModelProto) -> int:
    """How many tensor groups `equalize` could rescale in this graph (0: nothing to try)."""
    import onnx_graphsurgeon as gs

    return len(find_groups(gs.import_onnx(model)))


def channel_statistics(model_path, tensors: list[str], data: Dataset, batch_size: int = 16,
                       axes: dict[str, int] | None = None) -> dict:
    """Per channel (axis 1, or the tensor's entry in `axes`) max |x| and mean x², streamed over `data`."""
    from workbench.runtime import marked_outputs

    amax: dict[str, np.ndarray] = {}
    square: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for out in marked_outputs(str(model_path), tensors, data, batch_size, "channel statistics"):
        for name in tensors:
            x = np.asarray(out[name], dtype=np.float64)
            axis = (axes or {}).get(name, 1)
            flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
            amax[name] = np.maximum(amax.get(name, 0.0), np.abs(flat).max(axis=1))
            square[name] = square.get(name, 0.0) + (flat ** 2).sum(axis=1)
            count[name] = count.get(name, 0) + flat.shape[1]
    return {name: (amax[name], square[name] / count[name]) for name in tensors}


def output_noise(weight: np.ndarray, depthwise: bool, amax: np.ndarray, mean_square: np.ndarray,
                 s: np.ndarray) -> float:
    """Expected output noise power of the consumer after scaling its input channels by s: per-tensor INT8
    activation step through the scaled weights, plus per-output-channel INT8 weight steps through the activation."""
    shape = (1, -1) if not depthwise else (-1, 1)
    scaled = weight * s.reshape(shape + (1,) * (weight.ndim - 2))
    step = np.max(amax / s) / 127.0
    activation = step ** 2 / 12.0 * float(np.sum(scaled.astype(np.float64) ** 2))
    per_output = np.abs(scaled).reshape(scaled.shape[0], -1).max(axis=1) / 127.0
    kernel = int(np.prod(weight.shape[2:]))
    if depthwise:
        weights = float(np.sum(per_output ** 2 / 12.0 * kernel * mean_square / s ** 2))
    else:
        weights = float(np.sum(per_output ** 2 / 12.0)) * kernel * float(np.sum(mean_square / s ** 2))
    return activation + weights


def choose_scale(readers: list[tuple]) -> tuple[np.ndarray, float | None, float]:
    """(s, alpha, noise after / before) for readers (weight, depthwise, amax, mean square) of one channel scale:
    the strength with the least expected noise summed over the readers; alpha None: no change."""
    amax = np.max([r[2] for r in readers], axis=0)
    wmax = np.max([np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != (0 if dw else 1)))
                   for w, dw, _, _ in readers], axis=0).astype(np.float64)
    live = (amax > 0) & (wmax > 0)
    ones = np.ones_like(amax)

    def noise(s: np.ndarray) -> float:
        return sum(output_noise(w, dw, a, m, s) for w, dw, a, m in readers)

    base = noise(ones)
    best = (ones, None, 1.0)
    if live.sum() < 2 or base <= 0:
        return best
    for alpha in ALPHAS:
        s = ones.copy()
        s[live] = amax[live] ** alpha / wmax[live] ** (1.0 - alpha)
        s[live] *= np.max(amax[live] / s[live]) / np.max(amax[live])  # keep the tensor's largest range
        s[~live] = np.median(s[live])
        ratio = noise(s) / base
        if ratio < best[2] * 0.98:
            best = (s, alpha, ratio)
    return best


def equalize(model: onnx.ModelProto, model_path, data: Dataset) -> tuple[onnx.ModelProto, list[EqualizedGroup]]:
    """The equalized FP32 model (same outputs within float rounding) and what changed, group by group."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    groups = find_groups(graph)
    if not groups:
        return model, []
    stats = channel_statistics(model_path, sorted({c.inputs[0].name for g in groups for c in g.consumers}),
                               data.take(min(len(data), STAT_SAMPLES)))
    report = []
    for group in groups:
        readers = [(_constant(c, 1).values, _channels(c)[1], *stats[c.inputs[0].name]) for c in group.consumers]
        s, alpha, ratio = choose_scale(readers)
        if alpha is None:
            continue
        for producer, chain in group.producers:
            _scale_producer(graph, producer, chain, s.astype(np.float32))
        for consumer in group.consumers:
            _scale_consumer(consumer, s.astype(np.float32))
        amax = np.max([r[2] for r in readers], axis=0)
        live = amax > 0
        report.append(EqualizedGroup(
            [p.name for p, _ in group.producers], [c.name for c in group.consumers],
            sorted({c.inputs[0].name for c in group.consumers}), alpha, round(float(ratio), 4),
            round(float(amax[live].max() / np.median(amax[live])), 2),
            round(float((amax / s)[live].max() / np.median((amax / s)[live])), 2)))
    return export_like(graph, model), report


def _scale_consumer(consumer, s: np.ndarray) -> None:
    """Multiply the consumer's input channels by s."""
    weight = _constant(consumer, 1)
    depthwise = _channels(consumer)[1]
    shape = (-1,) + (1,) * (weight.values.ndim - 1) if depthwise else (1, -1) + (1,) * (weight.values.ndim - 2)
    weight.values = (weight.values * s.reshape(shape)).astype(weight.values.dtype)


def _scale_producer(graph, producer, chain, s: np.ndarray) -> None:
    """Divide the producer's output channels by s and turn each Clip after it into per-channel bounds (Relu for a
    zero lower bound)."""
    import onnx_graphsurgeon as gs

    weight = _constant(producer, 1)
    weight.values = (weight.values / s.reshape((-1,) + (1,) * (weight.values.ndim - 1))).astype(weight.values.dtype)
    bias = _constant(producer, 2)
    if bias is not None:
        bias.values = (bias.values / s).astype(bias.values.dtype)
    per_channel = (1, -1) + (1,) * (weight.values.ndim - 2)  # bounds broadcast over the spatial axes
    for clip in chain:
        if clip.op != "Clip":
            continue
        lo, hi = _clip_bounds(clip)
        source, target = clip.inputs[0], clip.outputs[0]
        clip.outputs.clear()
        clip.inputs.clear()
        steps = []
        if lo is not None and lo != 0.0:
            steps.append(("Max", np.float32(lo) / s))
        elif lo is not None:
            steps.append(("Relu", None))
        if hi is not None:
            steps.append(("Min", np.float32(hi) / s))
        steps = steps or [("Identity", None)]
        current = source
        for i, (op, bound) in enumerate(steps):
            name = clip.name if i == 0 else f"{clip.name}/equalized_{op.lower()}"
            out = target if i == len(steps) - 1 else gs.Variable(f"{target.name}/equalized_{i}", dtype=target.dtype)
            inputs = [current] if bound is None else [
                current, gs.Constant(f"{name}/bound", bound.reshape(per_channel).astype(np.float32))]
            graph.nodes.append(gs.Node(op, name=name, inputs=inputs, outputs=[out]))
            current = out
