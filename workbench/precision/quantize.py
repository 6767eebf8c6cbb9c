"""INT8 as explicit, TensorRT-compatible Q/DQ (signed, symmetric, per-channel weights, float bias) via ORT."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import onnx

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.core.log import native_log_lines_dropped, quiet_onnxruntime
from workbench.graph.topology import GraphIndex, fresh_name, toposort, used_names

# TensorRT's parser rejects a DequantizeLinear on an INT32 bias: biases stay float (docs/DESIGN.md).
TENSORRT_QDQ_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
TENSORRT_INT8_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


def placement_options(placement: str) -> tuple[list[str] | None, dict]:
    """(op types to quantize, extra ORT options) for a Q/DQ placement preset (see recipe.PLACEMENTS)."""
    if placement == "tensorrt":
        return list(TENSORRT_INT8_OPS), {"OpTypesToExcludeOutputQuantization": list(TENSORRT_INT8_OPS)}
    return None, {}


def quantize_int8(
    fp32_path: Path, calibration_path: Path, method: str, exclude: Iterable[str], per_channel: bool = True,
    placement: str = "tensorrt", weight_bits: int = 8,
) -> tuple[onnx.ModelProto, list[str]]:
    """Quantize from cached ranges (no inference), then let excluded nodes read float inputs and float weights
    (keep_in_float), and put float weights back on any Conv/Gemm/MatMul still left half-quantized; returns (model,
    those ops)."""
    exclude = set(exclude)
    model = onnx.ModelProto()  # edited below: a copy of the parsed graph every toggle starts from
    model.CopyFrom(cache.parsed_model(_quantize_all(fp32_path, calibration_path, method, per_channel, placement,
                                                    weight_bits)))
    original = cache.parsed_model(fp32_path)  # read only
    model = keep_in_float(model, original, exclude)
    restore_float_weights(model, original, lambda node: node.name in exclude)
    collateral = unquantize_half(model, original)
    toposort(model.graph)  # ORT's quantizer may order nodes before what their subgraphs read
    return model, collateral


def _quantize_all(fp32_path: Path, calibration_path: Path, method: str, per_channel: bool, placement: str,
                  weight_bits: int) -> Path:
    """ORT's quantizer over the whole graph, once per model, ranges and options (cached): exclusions are then
    Q/DQ removed from this graph, so an exclusion toggle costs no re-quantization (ORT quantizes MobileNetV2's
    17,000 weight channels one by one in Python: 1.6 s of the 2.3 s a toggle took)."""
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from workbench.precision.calibration import ort_method

    key = cache.digest("quantized-all", 2, cache.file_digest(fp32_path), Path(calibration_path).name, method,
                       per_channel, placement, weight_bits, onnxruntime.__version__)
    path = cache.artifact_path("quantized", key, ".onnx")
    if path.exists():
        return path
    op_types, placement_extra = placement_options(placement)
    with tempfile.TemporaryDirectory(prefix="workbench-q-") as tmp, quiet_onnxruntime(), native_log_lines_dropped():
        out = Path(tmp) / "int8.onnx"
        source = fp32_path
        model = onnx.load(str(fp32_path))
        if unshare_biases(model):
            source = Path(tmp) / "fp32.onnx"
            onnx.save(model, str(source))
        del model
        try:
            quantize_static(
                str(source), str(out), calibration_data_reader=None, calibration_cache_path=str(calibration_path),
                calibrate_method=ort_method(method), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
                reduce_range=weight_bits == 7, extra_options={**TENSORRT_QDQ_OPTIONS, **placement_extra},
            )
        except Exception as exc:
            raise WorkbenchError(_quantizer_error(exc, fp32_path)) from None
        return cache.atomic_write(path, out.read_bytes())


BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


def unshare_biases(model: onnx.ModelProto) -> int:
    """Give every Conv/ConvTranspose/Gemm but the first that reads a shared bias initializer its own copy, named
    `<bias>/<node>` (made unique against every name in the graph), in place; returns how many copies.

    ORT's quantizer copies a shared bias itself as `<bias><n>` with n past the initializers' numeric suffixes,
    without looking at node outputs: a tf2onnx graph whose Conv writes a tensor of that name became invalid ("bias
    must be a 1D tensor of size output_channels"). Biases stay float for TensorRT, so the copies change no value."""
    inits = {i.name: i for i in model.graph.initializer}
    taken = used_names(model.graph) | set(inits) | {o for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    copies = 0
    for node in model.graph.node:
        index = BIAS_INPUT.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in inits:
            continue
        bias = node.input[index]
        if bias not in seen:
            seen.add(bias)
            continue
        name = fresh_name(f"{bias}/{node.name}", taken)
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[bias])
        copy.name = name
        model.graph.initializer.append(copy)
        node.input[index] = name
        copies += 1
    return copies


def _quantizer_error(exc: Exception, path: Path) -> str:
    text = one_line(exc)
    model = onnx.load(str(path), load_external_data=False)
    node = next((n.name for n in model.graph.node if n.name and n.name in text), None)
    where = f" at node '{node}'" if node else ""
    return f"ONNX Runtime's quantizer failed{where}: {text} (try --exclude on that node)"


def keep_in_float(model: onnx.ModelProto, original: onnx.ModelProto, excluded: set[str]) -> onnx.ModelProto:
    """Excluded nodes read their float inputs, not the fake-quantized ones: each input that comes through a
    QuantizeLinear → DequantizeLinear pair is rewired to the float tensor the pair quantizes; a pair nobody reads any
    more is removed. The pair stays for the other readers of that tensor, and the Q/DQ on an excluded node's output
    stays too (it is its readers' input quantization): a node out of INT8 takes no neighbour with it. A graph output
    an excluded node writes is written in float.

    ORT's quantizer keeps a tensor quantized while any neighbour is quantized, so an excluded node would still
    read fake-quantized inputs; keeping a node in higher precision means exact float inputs (TensorRT then quantizes
    the tensor for its INT8 readers only)."""
    if not excluded:
        return model
    index = GraphIndex(model.graph)
    float_of: dict[str, str] = {}  # DequantizeLinear output → the float tensor its pair quantizes
    for dq in model.graph.node:
        if dq.op_type == "DequantizeLinear":
            q = index.producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                float_of[dq.output[0]] = q.input[0]
    graph_outputs = {o.name for o in model.graph.output}
    outputs_of = {n.name: set(n.output) for n in original.graph.node if n.name in excluded}
    for node in model.graph.node:
        if node.name in excluded:
            node.input[:] = [float_of.get(name, name) for name in node.input]
    # A graph output with a Q/DQ pair keeps its name on the DequantizeLinear; an excluded writer writes it in float.
    for dq_out, float_name in list(float_of.items()):
        if dq_out in graph_outputs and any(float_name in outs or dq_out in outs for outs in outputs_of.values()):
            for node in model.graph.node:
                node.input[:] = [float_name if n == dq_out else n for n in node.input]
            _drop_pair(model, index, dq_out)
            _rename_producer_output(list(model.graph.node), float_name, dq_out)
    _drop_unread_pairs(model)
    return model


def _drop_pair(model: onnx.ModelProto, index: GraphIndex, dq_out: str) -> None:
    dq = index.producer[dq_out]
    q = index.producer[dq.input[0]]
    for node in (dq, q):
        if node in model.graph.node:
            model.graph.node.remove(node)


def _drop_unread_pairs(model: onnx.ModelProto) -> None:
    """Remove the DequantizeLinear nodes nobody reads, then the QuantizeLinear nodes nobody reads."""
    for op in ("DequantizeLinear", "QuantizeLinear"):
        read = used_names(model.graph) | {o.name for o in model.graph.output}
        kept = [n for n in model.graph.node if n.op_type != op or n.output[0] in read]
        del model.graph.node[:]
        model.graph.node.extend(kept)


def unquantize_half(model: onnx.ModelProto, original: onnx.ModelProto) -> list[str]:
    """Conv/ConvTranspose/Gemm/MatMul whose data input is float but whose weight comes through DequantizeLinear
    (a neighbour was excluded): TensorRT would run them in float anyway, so put their float weights back and drop
    the weight Q/DQ. Returns the ops now in higher precision, so costs count them."""
    producers = GraphIndex(model.graph).producer

    def half(node: onnx.NodeProto) -> bool:
        data = producers.get(node.input[0]) if node.input else None
        return (node.op_type in TENSORRT_INT8_OPS and len(node.input) >= 2
                and not (data is not None and data.op_type == "DequantizeLinear"))

    return restore_float_weights(model, original, half, weights_only=True)


def restore_float_weights(model: onnx.ModelProto, original: onnx.ModelProto, chosen,
                          weights_only: bool = False) -> list[str]:
    """For each node `chosen(node)` accepts, inputs read through DequantizeLinear of a quantized initializer get
    the original float initializer back (the weight input only with `weights_only`); unused DQ nodes and
    initializers are dropped. Returns the nodes changed."""
    from onnx import numpy_helper

    originals = {i.name: i for i in original.graph.initializer}
    originals.update({n.output[0]: numpy_helper.from_array(numpy_helper.to_array(a.t), n.output[0])
                      for n in original.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    producers = GraphIndex(model.graph).producer
    inits = {i.name for i in model.graph.initializer}
    changed: list[str] = []
    drop: dict[int, onnx.NodeProto] = {}  # by identity: one DequantizeLinear may feed several chosen nodes
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not chosen(node):
            continue
        for i in [1] if weights_only else range(len(node.input)):
            dq = producers.get(node.input[i]) if i < len(node.input) else None
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                continue
            name = dq.input[0].removesuffix("_quantized")
            if name not in originals:
                continue
            if name not in inits:
                model.graph.initializer.append(originals[name])
                inits.add(name)
            node.input[i] = name
            drop[id(dq)] = dq
            if node.name not in changed:
                changed.append(node.name)
    used = used_names(model.graph)
    for dq in drop.values():
        if dq.output[0] not in used:
            model.graph.node.remove(dq)
    if drop:  # deleted in place: re-adding the kept ones would copy every weight of the model
        used = used_names(model.graph)
        for i in reversed([i for i, t in enumerate(model.graph.initializer) if t.name not in used]):
            del model.graph.initializer[i]
    return changed


def _rename_producer_output(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    """A graph output whose Q/DQ pair was removed: the producer writes the output name directly again."""
    for node in nodes:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Original nodes that read at least one DequantizeLinear output (i.e. run on quantized inputs)."""
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dq_outputs.intersection(n.input)]
