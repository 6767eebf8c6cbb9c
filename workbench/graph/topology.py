"""Graph helpers that understand subgraphs (If/Loop/Scan): which outer tensors a node reads implicitly, and a
topological order that respects those reads (ONNX's checker requires it; some tools reorder without it)."""
from __future__ import annotations

from typing import Mapping

import onnx


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend(attr.graphs)
    return out


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes and, after each control-flow node, its subgraphs' nodes (depth first)."""
    out = []
    for node in graph.node:
        out.append(node)
        for g in subgraphs(node):
            out.extend(all_nodes(g))
    return out


def defined_names(graph: onnx.GraphProto) -> set[str]:
    """Every name the graph and its subgraphs define, at any depth (ONNX Runtime wants them unique across all)."""
    names = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.output)
        for g in subgraphs(node):
            names |= defined_names(g)
    return names


def rename_reads(graph: onnx.GraphProto, rename: Mapping[str, str]) -> None:
    """Outer-scope reads inside `graph` (and deeper) follow `rename`, except names the subgraph defines itself."""
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {
        o for n in graph.node for o in n.output}
    rename = {k: v for k, v in rename.items() if k not in local}
    if not rename:
        return
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        for g in subgraphs(node):
            rename_reads(g, rename)


def outer_reads(node: onnx.NodeProto) -> set[str]:
    """Tensors a control-flow node's subgraphs read from the enclosing scope (not defined inside them)."""
    reads: set[str] = set()
    for g in subgraphs(node):
        defined = {i.name for i in g.input} | {i.name for i in g.initializer}
        defined |= {o for n in g.node for o in n.output}
        for n in g.node:
            reads |= {i for i in n.input if i and i not in defined}
            reads |= {i for i in outer_reads(n) if i not in defined}
    return reads


def toposort(graph: onnx.GraphProto) -> None:
    """Order nodes so every input, explicit or read by a subgraph, is produced before it is used (stable: the
    existing order is kept where it is already valid)."""
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    nodes = list(graph.node)
    deps = [{producers[t] for t in list(n.input) + sorted(outer_reads(n)) if t in producers and producers[t] != i}
            for i, n in enumerate(nodes)]
    done: set[int] = set()
    order: list[int] = []
    pending = list(range(len(nodes)))
    while pending:
        progressed = [i for i in pending if deps[i] <= done]
        if not progressed:  # a cycle: leave the rest as it was
            order += pending
            break
        ready = set(progressed)
        for i in pending:
            if i in ready:
                order.append(i)
                done.add(i)
            elif deps[i] <= done:
                order.append(i)
                done.add(i)
                ready.add(i)
        pending = [i for i in pending if i not in ready]
    sorted_nodes = [nodes[i] for i in order]
    del graph.node[:]
    graph.node.extend(sorted_nodes)


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the graph reads: node inputs, what its subgraphs read from it, and its outputs (so
    pruning unused initializers never drops a weight only a subgraph uses)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in graph.node:
        used |= outer_reads(node)
    return used


def fresh_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ... whichever `taken` lacks first; added to `taken`."""
    name = next(c for c in (f"{base}_{k}" if k else base for k in range(len(taken) + 1)) if c not in taken)
    taken.add(name)
    return name


def markable_outputs(graph: onnx.GraphProto) -> list[str]:
    """Every node output a runner can mark as a graph output: Constant nodes' outputs are left out (ONNX Runtime
    turns them into initializers, and marking one fails with "outputs were not found in the model")."""
    return [o for n in graph.node if n.op_type != "Constant" for o in n.output if o]


def complete_types(model: onnx.ModelProto) -> bool:
    """Give every node output of the main graph an element type, in place; returns whether any was added. ONNX's
    shape inference has no type rules for ai.onnx.ml ops (Scaler, ArrayFeatureExtractor, ...), so everything
    downstream of one is untyped, and tools that pick tensors by type (ORT's calibrator and quantizer skip them)
    or retype them (the FP16 converter mixes types) go wrong. ONNX Runtime knows those ops: ask a session."""
    if all(n.domain in ("", "ai.onnx") for n in model.graph.node):
        return False  # standard ops only: ONNX's own inference types everything it can
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.input) +
             list(inferred.graph.output)} | {i.name for i in inferred.graph.initializer}
    missing = [o for n in model.graph.node for o in n.output if o and o not in known]
    if not missing:
        return False
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in missing)
    from workbench.core.log import onnxruntime_options

    try:
        session = ort.InferenceSession(probe.SerializeToString(), onnxruntime_options(),
                                       providers=["CPUExecutionProvider"])
    except Exception:
        return False  # the caller's own validation reports what is wrong with the model
    added = False
    for out in session.get_outputs():
        elem = _ORT_TYPES.get(out.type)
        if out.name in missing and elem is not None:
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(out.name, elem, None))
            added = True
    return added


_ORT_TYPES = {f"tensor({name})": getattr(onnx.TensorProto, name.upper()) for name in
              ("float", "float16", "bfloat16", "double", "int8", "int16", "int32", "int64", "uint8", "uint16",
               "uint32", "uint64", "bool")}


def export_like(graph, model: onnx.ModelProto) -> onnx.ModelProto:
    """An onnx-graphsurgeon graph, cleaned up and sorted, exported with `model`'s opsets and IR version (graphsurgeon
    would write its own defaults, which can be newer than the runtime accepts)."""
    import onnx_graphsurgeon as gs

    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    del out.opset_import[:]
    out.opset_import.extend(model.opset_import)
    out.ir_version = model.ir_version
    return out


class GraphIndex:
    """Who writes and who reads each tensor of one graph (its top level), built once per pass instead of by hand in
    each: `producer[tensor]` → node, `consumers[tensor]` → nodes in graph order."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)

    def float_source(self, tensor: str) -> str:
        """The float tensor a value comes from, through any QuantizeLinear/DequantizeLinear chain."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            tensor = node.input[0]
            node = self.producer.get(tensor)
        return tensor
