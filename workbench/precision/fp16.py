"""FP16/BF16 as an ONNX → ONNX cast transform that does not ship overflow: which nodes must stay in FP32, and why.

Rules (ModelOpt AutoCast's data-range rule is the reference, with its defaults): a node whose output reaches
|x| > DATA_MAX on the given data, or that reads an initializer with |w| > INIT_MAX (beyond FP16), stays in FP32;
control-flow nodes (If, Loop, Scan) stay in FP32 with their subgraphs, so branch outputs keep the types the
outer graph declares. The conversion itself is onnxconverter-common's (FP16, I/O types kept); BF16 reuses its
cast placement and writes the weights as BF16 from the original FP32 values.
"""
from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING
from unittest import mock

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.graph.types import repair_types
from workbench.graph.topology import (
    GraphIndex,
    complete_types,
    markable_outputs,
    outer_reads,
    subgraphs,
    toposort,
    used_names,
)

if TYPE_CHECKING:
    from workbench.model.data import Dataset
    from workbench.model.loading import ModelHandle

DATA_MAX = 512.0  # ModelOpt AutoCast's default threshold on node outputs
INIT_MAX = 65504.0  # the largest finite FP16 value
CONTROL_FLOW = ("If", "Loop", "Scan")
RANGE_SAMPLES = 64


def keep_in_fp32(model: "ModelHandle", data: "Dataset | None") -> dict[str, str]:
    """Node name → why it must stay in FP32 for an FP16/BF16 recipe (control flow, large weights, data range)."""
    proto = model.proto
    kept: dict[str, str] = {}
    for node in proto.graph.node:
        if node.op_type in CONTROL_FLOW:
            kept[node.name] = f"control flow ({node.op_type}): its subgraphs stay in FP32 with it"
    large = _large_constants(proto)
    for node in proto.graph.node:
        hits = [t for t in node.input if t in large]
        if hits and node.name not in kept:
            kept[node.name] = f"reads '{hits[0]}' with |value| up to {large[hits[0]]:.3g}, beyond FP16"
    real = data is not None and not getattr(data, "synthetic", False)
    if not real:
        ruled = overflow_prone(proto)
        kept.update({n: r for n, r in ruled.items() if n not in kept})
        warnings.warn(f"fp16 without real data: activations were not checked for FP16 overflow ({len(ruled)} "
                      "overflow-prone node(s) kept in FP32 by rule; values a real input reaches, such as a power "
                      "spectrum of loud audio, can still overflow): pass --calib-data", UserWarning, stacklevel=3)
        if data is None:
            return kept
    where = "the calibration data" if real else "random data"
    amax = activation_amax(model, data)
    for node in proto.graph.node:
        if node.name in kept or node.op_type == "Constant":
            continue
        worst = max((amax.get(o, 0.0) for o in node.output), default=0.0)
        if worst > DATA_MAX:
            kept[node.name] = (f"output reaches |x| = {worst:.3g} on {where} (> {DATA_MAX:g}, "
                               "AutoCast's data range rule; FP16 overflows at 65504)")
    return kept


OVERFLOW_OPS = {"Exp": "exp grows past 65504 from an input of 11.1", "ReduceSumSquare": "a sum of squares",
                "ReduceL2": "a sum of squares under the root", "ReduceProd": "a product of many values",
                "ReduceLogSumExp": "exp inside the reduction"}
LARGE_REDUCTION = 4096  # summed elements past which an FP16 sum of O(16) values can overflow


def overflow_prone(proto: onnx.ModelProto) -> dict[str, str]:
    """Nodes that can overflow FP16 whatever the weights, kept in FP32 when no real data shows the activations:
    OVERFLOW_OPS, squares (Pow with an exponent ≥ 2, Mul of a tensor by itself: power spectra, variances) and
    ReduceSum over more than LARGE_REDUCTION elements of a known shape."""
    graph = proto.graph
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.value_info) + list(inferred.input)}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    out: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in OVERFLOW_OPS:
            out[node.name] = f"{node.op_type}: {OVERFLOW_OPS[node.op_type]} can overflow FP16 (rule, no real data)"
        elif node.op_type == "Pow" and node.input[1] in consts and float(np.max(consts[node.input[1]])) >= 2:
            out[node.name] = "Pow with exponent ≥ 2: a square can overflow FP16 (rule, no real data)"
        elif node.op_type == "Mul" and node.input[0] == node.input[1]:
            out[node.name] = "x·x: a square (power spectrum, variance) can overflow FP16 (rule, no real data)"
        elif node.op_type == "ReduceSum":
            shape = shapes.get(node.input[0]) or []
            axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
            if len(node.input) > 1 and node.input[1] in {i.name for i in graph.initializer}:
                axes = [int(a) for a in numpy_helper.to_array(next(i for i in graph.initializer
                                                                   if i.name == node.input[1])).ravel()]
            extent = [shape[a] for a in (axes if axes is not None else range(len(shape)))] if shape else [None]
            if all(extent) and int(np.prod(extent)) > LARGE_REDUCTION:
                out[node.name] = (f"ReduceSum over {int(np.prod(extent))} elements can overflow FP16 (rule, "
                                  "no real data)")
    return out


def _large_constants(proto: onnx.ModelProto) -> dict[str, float]:
    out = {}
    arrays = [(i.name, numpy_helper.to_array(i)) for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    arrays += [(n.output[0], numpy_helper.to_array(a.t)) for n in proto.graph.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT]
    for name, a in arrays:
        finite = np.abs(a[np.isfinite(a)])  # ±inf (e.g. an open Clip bound) is exact in FP16
        if finite.size and float(finite.max()) > INIT_MAX:
            out[name] = float(finite.max())
    return out


def activation_amax(model: "ModelHandle", data: "Dataset") -> dict[str, float]:
    """Max |value| of every float node output of the FP32 graph over (up to RANGE_SAMPLES of) `data`; cached."""
    key = cache.digest("fp16-ranges", 1, model.sha256, data.fingerprint(), RANGE_SAMPLES)
    path = cache.artifact_path("ranges", key, ".json")
    if path.exists():
        return json.loads(path.read_text())
    from workbench.core.log import quiet_polygraphy
    from workbench.runtime import marked_outputs

    proto = model.proto
    amax: dict[str, float] = {}
    subset = data.take(min(len(data), RANGE_SAMPLES))
    with quiet_polygraphy():
        for out in marked_outputs(model.path, markable_outputs(proto.graph), subset, 4, "fp16-ranges"):
            for name, value in out.items():
                value = np.asarray(value)
                if value.size and np.issubdtype(value.dtype, np.floating):
                    finite = np.abs(value[np.isfinite(value)])
                    peak = float(finite.max()) if finite.size else 0.0
                    if finite.size < value.size:
                        peak = float("inf")
                    amax[name] = max(amax.get(name, 0.0), peak)
    cache.atomic_write(path, json.dumps({k: (v if np.isfinite(v) else 1e308) for k, v in amax.items()}).encode())
    return amax


def to_fp16(model: onnx.ModelProto, excluded: list[str]) -> onnx.ModelProto:
    """FP16 weights and compute with the graph's I/O types kept (FP32 in, FP32 out), excluded nodes in FP32.

    Also used on an INT8 graph with every node but the fallback nodes listed, to run the fallback in FP16.
    Control-flow nodes are always excluded (with their subgraphs): onnxconverter-common retypes branch outputs
    without the outer graph, which ONNX Runtime then refuses."""
    from onnxconverter_common import float16

    from workbench.core.log import quiet_onnxruntime

    control = [n for n in model.graph.node if n.op_type in CONTROL_FLOW]
    blocked = list(dict.fromkeys(list(excluded) + [n.name for n in control]))
    model = _localize_initializers(onnx.ModelProto.FromString(model.SerializeToString()), control)
    # onnxconverter-common names its casts after their node: unnamed nodes (ORT's quantizer writes some) would
    # all get "_output_cast0", which ONNX Runtime refuses. Name them; an "" in the block list meant all of them.
    names = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = next(f"{node.op_type}_{i}_{k}" for k in range(len(names) + 1)
                             if f"{node.op_type}_{i}_{k}" not in names)
            names.add(node.name)
            if "" in blocked:
                blocked.append(node.name)
    complete_types(model)
    _split_shared_initializers(model, set(blocked))
    try:
        # onnxconverter-common's own clean-up of Cast(to FP16) → Cast(to FP32) pairs raises when the second Cast
        # feeds several nodes or none (YOLOv8n's head with its class branch in FP16): ours below replaces it.
        with quiet_onnxruntime(), mock.patch.object(float16, "remove_unnecessary_cast_node", _remove_cast_pairs):
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True,
                node_block_list=blocked or None, disable_shape_infer=False,
            )
    except Exception as exc:
        raise WorkbenchError(f"fp16 conversion failed: {one_line(exc)}") from None
    _restore_output_types(converted, {o.name: o.type.tensor_type.elem_type for o in model.graph.output})
    _cast_implicit_reads(converted, {n.name for n in control})
    outputs = {o.name for o in converted.graph.output}
    kept_info = [v for v in converted.graph.value_info if v.name not in outputs]  # outputs keep their I/O type
    del converted.graph.value_info[:]
    converted.graph.value_info.extend(kept_info)
    toposort(converted.graph)
    converted = _align_casts(converted)
    _restore_tensor_names(converted, model)
    fp32 = set(blocked) | {n.name for n in converted.graph.node if n.op_type in float16.DEFAULT_OP_BLOCK_LIST}
    repair_types(converted, fp32)
    return converted


def _restore_tensor_names(converted: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """onnxconverter-common renames node outputs (`<node>_output_cast_0`) even where no cast follows: give every
    node its original output names back where nothing else now writes them, so per-layer comparison finds the same
    tensors in the FP32 model and the converted one (an FP16 fallback's report had no rows to match)."""
    if any(n.op_type in CONTROL_FLOW for n in original.graph.node):
        return  # subgraphs read outer tensors by name: leave the converter's names alone there
    written = {n.name: list(n.output) for n in original.graph.node}
    produced = {o for n in converted.graph.node for o in n.output} | {i.name for i in converted.graph.input}
    rename: dict[str, str] = {}
    for node in converted.graph.node:
        before = written.get(node.name)
        if before is None or len(before) != len(node.output):
            continue
        for i, (now, was) in enumerate(zip(list(node.output), before)):
            if now != was and was and was not in produced:
                rename[now] = was
                node.output[i] = was
                produced.add(was)
    if not rename:
        return
    for node in converted.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    for info in list(converted.graph.output) + list(converted.graph.value_info):
        info.name = rename.get(info.name, info.name)


def _restore_output_types(model: onnx.ModelProto, original: dict[str, int]) -> None:
    """keep_io_types misses graph outputs produced by a blocked node (it casts them to FP16): put the graph's own
    output types back, by retargeting that Cast, or with a Cast where the producer computes in FP16."""
    producers = GraphIndex(model.graph).producer
    for out in model.graph.output:
        want = original.get(out.name)
        if want is None or out.type.tensor_type.elem_type == want:
            continue
        out.type.tensor_type.elem_type = want
        producer = producers.get(out.name)
        if producer is not None and producer.op_type == "Cast":
            for attr in producer.attribute:
                if attr.name == "to":
                    attr.i = want
        elif producer is not None:  # the graph's own readers keep the FP16 tensor (tf2onnx reads outputs inside)
            inner = f"{out.name}_fp16"
            producer.output[list(producer.output).index(out.name)] = inner
            for node in model.graph.node:
                node.input[:] = [inner if name == out.name else name for name in node.input]
            model.graph.node.append(onnx.helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_cast_back",
                                                          to=want))


def _cast_implicit_reads(model: onnx.ModelProto, control: set[str]) -> None:
    """A subgraph kept in FP32 that reads an outer tensor the conversion made FP16 gets an FP32 copy of it (the
    converter only sees explicit inputs, so it never casts these reads back)."""
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.input)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    nodes = list(model.graph.node)
    out: list[onnx.NodeProto] = []
    for node in nodes:
        if node.name in control:
            rename = {}
            for t in sorted(outer_reads(node)):
                if types.get(t) == onnx.TensorProto.FLOAT16:
                    rename[t] = f"{t}_fp32_{node.name}"
                    out.append(onnx.helper.make_node("Cast", [t], [rename[t]], name=f"{rename[t]}_cast",
                                                     to=onnx.TensorProto.FLOAT))
            for g in subgraphs(node):
                _rename_reads(g, rename)
        out.append(node)
    del model.graph.node[:]
    model.graph.node.extend(out)


def _rename_reads(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {
        o for n in graph.node for o in n.output}
    rename = {k: v for k, v in rename.items() if k not in defined}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        for g in subgraphs(node):
            _rename_reads(g, rename)


def _split_shared_initializers(model: onnx.ModelProto, blocked: set[str]) -> None:
    """An initializer read by nodes kept in FP32 and by nodes going to FP16 gets an FP32 copy for the kept ones
    (the converter retypes a shared initializer without casting it back for the kept readers)."""
    inits = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    readers: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, set()).add(node.name in blocked)
    shared = {name for name, kinds in readers.items() if kinds == {True, False}}
    for name in shared:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}_fp32"
        model.graph.initializer.append(copy)
    for node in model.graph.node:
        if node.name in blocked:
            for i, name in enumerate(node.input):
                if name in shared:
                    node.input[i] = f"{name}_fp32"


def _localize_initializers(model: onnx.ModelProto, control: list[onnx.NodeProto]) -> onnx.ModelProto:
    """Give each control-flow subgraph its own copy of the outer initializers it reads, so converting the outer
    graph's weights to FP16 cannot retype what a kept-in-FP32 subgraph computes with."""
    inits = {i.name: i for i in model.graph.initializer}
    names = {n.name for n in control}
    for node in model.graph.node:
        if node.name not in names:
            continue
        for g in subgraphs(node):
            present = {i.name for i in g.initializer}
            g.initializer.extend(inits[t] for t in sorted(outer_reads(node)) if t in inits and t not in present)
    used = used_names(model.graph)
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def to_bf16(model: onnx.ModelProto, excluded: list[str]) -> onnx.ModelProto:
    """BF16: the FP16 conversion's casts and blocked nodes, with every FP16 type made BF16 and every converted
    weight rounded (to nearest even) from its original FP32 value, not from the FP16 one."""
    model = _opset_for_bf16(model)
    converted = to_fp16(model, excluded)
    originals = {i.name: i for i in model.graph.initializer}
    originals.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    half, bf16 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16

    def retensor(t: onnx.TensorProto, source: onnx.TensorProto | None) -> None:
        values = numpy_helper.to_array(source if source is not None and source.data_type == onnx.TensorProto.FLOAT
                                       else t).astype(np.float32)
        t.CopyFrom(_bf16_tensor(values, t.name))

    for init in converted.graph.initializer:
        if init.data_type == half:
            retensor(init, originals.get(init.name))
    for node in converted.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == half:
                retensor(attr.t, originals.get(node.output[0]) if node.op_type == "Constant" else None)
            if node.op_type == "Cast" and attr.name == "to" and attr.i == half:
                attr.i = bf16
    for value in list(converted.graph.value_info) + list(converted.graph.input) + list(converted.graph.output):
        if value.type.tensor_type.elem_type == half:
            value.type.tensor_type.elem_type = bf16
    return converted


BF16_OPSET = 22  # Conv, Pow and most math ops accept bfloat16 from opset 22 on


def _opset_for_bf16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnx import version_converter

    from workbench.model.loading import onnx_opset

    if onnx_opset(model) >= BF16_OPSET:
        return model
    try:
        return version_converter.convert_version(model, BF16_OPSET)
    except Exception as exc:
        raise WorkbenchError(f"bf16 needs opset {BF16_OPSET} (BF16 Conv/MatMul/Pow) and this model (opset "
                             f"{onnx_opset(model)}) could not be upgraded: {one_line(exc)}") from None


def _bf16_tensor(values: np.ndarray, name: str) -> onnx.TensorProto:
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    tensor = onnx.TensorProto(name=name, data_type=onnx.TensorProto.BFLOAT16, dims=list(values.shape))
    tensor.raw_data = rounded.tobytes()
    return tensor


def _remove_cast_pairs(graph: onnx.GraphProto) -> None:
    """Drop the FP32 → FP16 → FP32 round trips the converter writes between two FP32 nodes (a blocked node next to
    a blocked node or a graph output): each reader of the second Cast's output reads the first Cast's input instead,
    and a second Cast that is itself a graph output (or read inside a subgraph) becomes an FP32 → FP32 copy; the
    first Cast, read by nobody then, is removed. Lossless where the round trip would round to FP16."""
    index = GraphIndex(graph)
    outputs = {o.name for o in graph.output}
    inner = {name for node in graph.node for name in outer_reads(node)}  # read inside If/Loop/Scan bodies

    def to(node: onnx.NodeProto) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None)

    drop = []
    for first in list(graph.node):
        if (first.op_type != "Cast" or to(first) != onnx.TensorProto.FLOAT16
                or first.output[0] in outputs | inner):
            continue
        source = index.producer.get(first.input[0])
        if source is not None and source.op_type == "Constant":
            continue
        readers = index.consumers.get(first.output[0], [])
        if not readers or any(r.op_type != "Cast" or to(r) != onnx.TensorProto.FLOAT for r in readers):
            continue
        for second in readers:
            if second.output[0] in outputs | inner:
                second.input[0] = first.input[0]
                continue
            for reader in index.consumers.get(second.output[0], []):
                reader.input[:] = [first.input[0] if n == second.output[0] else n for n in reader.input]
            drop.append(second)
        drop.append(first)  # nothing reads it any more
    for node in drop:
        graph.node.remove(node)


def _align_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxconverter-common retypes a Cast's output to FP16 but leaves `to=FLOAT` on Casts from integer tensors
    (e.g. an attention mask cast to float), which ONNX Runtime rejects; make each such Cast produce FP16."""
    fp16_values = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16_values:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    return model
