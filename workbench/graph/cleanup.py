"""Graph clean-up TensorRT does anyway, applied before quantization so calibration sees the graph TensorRT runs:
constants folded (Polygraphy's FoldConstants), BatchNormalization folded into the Conv or Gemm before it.
Surviving nodes keep their names; `folded` maps each removed node to the node that absorbed it ("(constant)" for
folded constant subgraphs), so reports can still name the original nodes."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.graph.topology import GraphIndex, toposort, used_names

CONSTANT = "(constant)"


def clean(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Fold constants, then BatchNorm. Returns the model unchanged (same object) when nothing was folded.

    Each step's result is checked (ONNX checker); a step that breaks the graph is skipped with a warning that
    names it, and the command goes on with the graph as it was before that step."""
    folded: dict[str, str] = {}
    current = model
    for step, fold in (("constant folding", fold_constants), ("BatchNorm folding", fold_batchnorm)):
        candidate, changed = fold(current)
        if not changed:
            continue
        toposort(candidate.graph)  # folding can leave a node before what its subgraphs read
        problem = _invalid(candidate)
        if problem:
            warnings.warn(f"clean-up step '{step}' produced an invalid graph ({problem}); skipped it",
                          UserWarning, stacklevel=2)
            continue
        current = candidate
        folded.update(changed)
    return (current, folded) if folded else (model, {})


def _invalid(model: onnx.ModelProto) -> str | None:
    """Why the model fails the ONNX checker, or None."""
    from workbench.core.errors import one_line

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        return one_line(exc)
    return None


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Constant nodes become initializers (as TensorRT's parser reads them: weights), then onnx-graphsurgeon's
    folder (as Polygraphy's FoldConstants drives it: shape inference, passes until nothing folds) removes nodes
    computed entirely from constants, and an `If` whose condition folded to a constant becomes its taken branch
    (workbench.graph.specialize: graphsurgeon's own flattening loses outputs of multi-output `If`s)."""
    model, lifted = lift_constants(model)
    if not _has_constant_subgraph(model):
        return model, lifted  # skip the folder (and the imports and inference it costs) when there is nothing to fold
    try:
        import onnx_graphsurgeon  # noqa: F401
    except ImportError:
        return model, {}
    from workbench.graph.specialize import specialize

    folded_model = _fold(model)
    for _ in range(FOLD_PASSES):
        flattened, inlined = specialize(folded_model, {})
        if not inlined:
            break
        folded_model = _fold(flattened)
    remaining = {n.name for n in folded_model.graph.node}
    return folded_model, {**lifted, **{n.name: CONSTANT for n in model.graph.node if n.name and n.name not in remaining}}


FOLD_PASSES = 4


def _fold(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graphsurgeon's constant folding, each pass followed by shape inference (which lets the next pass fold
    shapes), until the node count stops falling; a pass that fails leaves the graph as the last good pass made
    it (Polygraphy's error_ok)."""
    import onnx_graphsurgeon as gs
    from polygraphy.backend.onnx import InferShapes

    from workbench.core.log import native_log_lines_dropped, quiet_polygraphy

    count = -1
    with quiet_polygraphy(), native_log_lines_dropped():  # graphsurgeon's own ORT sessions log optimizer warnings
        while count != len(model.graph.node):
            count = len(model.graph.node)
            try:
                graph = gs.import_onnx(model)
                graph.fold_constants(fold_shapes=True, error_ok=True, flatten_subgraphs=False)
                model = InferShapes(gs.export_onnx(graph.cleanup(), do_type_check=False), error_ok=True,
                                    allow_onnxruntime=False)()  # ORT's writes files into the working directory
            except Exception:
                break
    return model


def lift_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Every top-level Constant node (not a graph output) as an initializer of the same name: exporters such as
    Paddle2ONNX write all weights this way, which hides them from BatchNorm folding and from the transforms that
    rescale weights (equalization, smoothing)."""
    outputs = {o.name for o in model.graph.output}
    constants = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in outputs]
    if not constants:
        return model, {}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g, lifted = model.graph, {}
    dtypes = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    for node in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in outputs]:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "value" in attrs:
            tensor = attrs["value"]
            tensor.name = node.output[0]
        elif len(attrs) == 1 and next(iter(attrs)) in dtypes:
            kind, value = next(iter(attrs.items()))
            tensor = numpy_helper.from_array(np.asarray(value, dtype=dtypes[kind]), node.output[0])
        else:
            continue  # sparse or string constants stay nodes
        g.initializer.append(tensor)
        g.node.remove(node)
        lifted[node.name or node.output[0]] = CONSTANT
    return model, lifted


def _has_constant_subgraph(model: onnx.ModelProto) -> bool:
    """Is any non-Constant node computed only from initializers and Constant outputs (or a Shape, which the folder
    can resolve from static dims)?"""
    if any(n.op_type == "Shape" for n in model.graph.node):
        return True
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return any(n.op_type != "Constant" and n.input and all(not i or i in constants for i in n.input)
               for n in model.graph.node)


def fold_batchnorm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Conv/Gemm → BatchNormalization (inference form, the Conv/Gemm output used only by the BN) becomes one node."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    index = GraphIndex(g)
    producers, consumers = index.producer, index.consumers
    graph_outputs = {o.name for o in g.output}
    folded: dict[str, str] = {}
    for bn in list(g.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        prev = producers.get(bn.input[0])
        if (prev is None or prev.op_type not in ("Conv", "Gemm") or len(consumers.get(prev.output[0], [])) != 1
                or prev.output[0] in graph_outputs or any(t not in inits for t in bn.input[1:5])
                or prev.input[1] not in inits or (prev.op_type == "Gemm" and not _gemm_foldable(prev))):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[t]).astype(np.float64) for t in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[prev.input[1]]).astype(np.float64)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = numpy_helper.to_array(inits[prev.input[2]]).astype(np.float64) if len(prev.input) > 2 and prev.input[2] \
            else np.zeros(len(scale))
        if prev.op_type == "Gemm":  # Y = A·Bᵀ + beta·C: the bias enters scaled by beta, which becomes 1
            b = b * _gemm_beta(prev)
            for attr in [a for a in prev.attribute if a.name == "beta"]:
                prev.attribute.remove(attr)
        b = (b - mean) * scale + beta
        dtype = numpy_helper.to_array(inits[prev.input[1]]).dtype
        g.initializer.append(numpy_helper.from_array(w.astype(dtype), f"{prev.name}.folded_weight"))
        prev.input[1] = f"{prev.name}.folded_weight"  # the original may be shared: never edited in place
        bias_name = f"{prev.name}.folded_bias"
        g.initializer.append(numpy_helper.from_array(b.astype(dtype), bias_name))
        if len(prev.input) > 2:
            prev.input[2] = bias_name
        else:
            prev.input.append(bias_name)
        prev.output[0] = bn.output[0]
        g.node.remove(bn)
        folded[bn.name] = prev.name
    used = used_names(g)
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return model, folded


def _gemm_foldable(gemm: onnx.NodeProto) -> bool:
    """Gemm with transB=1 (PyTorch Linear: weight [out, in]) and alpha 1; beta is folded into the bias."""
    attrs = {a.name: a for a in gemm.attribute}
    return (attrs["transB"].i if "transB" in attrs else 0) == 1 and (attrs["alpha"].f if "alpha" in attrs else 1.0) == 1.0


def _gemm_beta(gemm: onnx.NodeProto) -> float:
    return next((a.f for a in gemm.attribute if a.name == "beta"), 1.0)
