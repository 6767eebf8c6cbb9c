"""Control flow specialized on the data: an `If` whose condition depends only on constants and on inputs that are
the same for every sample (a sample-rate scalar) is replaced by the branch it takes, in the main graph.

Why: quantizers (ONNX Runtime's QDQ quantizer, TensorRT's Q/DQ placement) and per-layer comparison see only the
main graph, so a network written inside `If` branches (Silero VAD: the 16 kHz and 8 kHz networks are the two
branches of `If(sr == 16000)`) is never quantized or compared. A deployment that always feeds one rate runs the
same function as the specialized graph; the specialized artifact records which inputs it was specialized on
(`SPECIALIZED_KEY` in its metadata) and the ONNX Runtime backend refuses a feed with another value. Conditions that
read a shape or a per-sample input stay as they are (a batch of one takes another branch than a batch of eight).

Onnx-graphsurgeon's own If flattening (inside constant folding) loses one of Silero VAD's two If outputs, so the
inlining is done here: the branch's nodes and initializers move to the main graph and an Identity per output
keeps the If's output names.
"""
from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from workbench.graph.topology import defined_names, fresh_name, rename_reads, subgraphs, toposort, used_names

SPECIALIZED_KEY = "workbench.specialized"  # metadata: {input name: value} the graph was specialized on


def condition_inputs(graph: onnx.GraphProto) -> set[str]:
    """Graph inputs that some main-graph `If` condition reads, through value-computing nodes only."""
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input}
    found: set[str] = set()
    for node in graph.node:
        if node.op_type == "If":
            leaves = _leaves(node.input[0], producer)
            if leaves is not None:
                found |= leaves & inputs
    return found


def _leaves(tensor: str, producer: Mapping[str, onnx.NodeProto]) -> set[str] | None:
    """The non-constant tensors `tensor` is computed from, or None when a Shape/Size or control flow sits on the
    way (its value would depend on a shape, which the data does not fix)."""
    leaves, stack, seen = set(), [tensor], set()
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None:
            leaves.add(name)
        elif node.op_type in ("Shape", "Size", "If", "Loop", "Scan") or node.domain not in ("", "ai.onnx"):
            return None
        else:
            stack.extend(node.input)
    return leaves


def specialize(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` with every main-graph `If` whose condition follows from `values` (input name → the value
    every sample shares) and the initializers replaced by its taken branch, repeatedly (an inlined branch's own
    `If`s are tried too). The inputs stay in the graph's interface. Returns the model and the names of the `If`
    nodes inlined; the model itself (same object) when none was."""
    if not _decidable(model.graph, values):
        return model, []
    out = onnx.ModelProto.FromString(model.SerializeToString())
    graph = out.graph
    inlined: list[str] = []
    while True:
        decidable = _decidable(graph, values)
        if not decidable:
            break
        conditions = _evaluate(out, [n.input[0] for n in decidable], values)
        for node in decidable:
            _inline(graph, node, bool(np.asarray(conditions[node.input[0]]).ravel()[0]))
            inlined.append(node.name)
        _drop_dead(graph)
        toposort(graph)
    if values:
        props = {p.key: p.value for p in out.metadata_props}
        used = {k: np.asarray(v).tolist() for k, v in values.items()}
        helper.set_model_props(out, {**props, SPECIALIZED_KEY: json.dumps(used)})
    return out, inlined


def _decidable(graph: onnx.GraphProto, values: Mapping[str, np.ndarray]) -> list[onnx.NodeProto]:
    """Main-graph `If`s whose condition is computed from initializers and `values` alone."""
    producer = {o: n for n in graph.node for o in n.output}
    known = {i.name for i in graph.initializer} | set(values)
    return [n for n in graph.node if n.op_type == "If"
            and (leaves := _leaves(n.input[0], producer)) is not None and leaves <= known]


def _evaluate(model: onnx.ModelProto, tensors: list[str], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The conditions' values, computed by ONNX Runtime on the nodes that produce them alone."""
    import onnxruntime as ort

    from workbench.core.log import onnxruntime_options

    graph = model.graph
    constant = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name in set(tensors)}
    tensors = [t for t in tensors if t not in constant]
    if not tensors:
        return constant
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack = [], list(tensors)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        needed.append(producer[name])
        stack.extend(producer[name].input)
    order = {id(n): i for i, n in enumerate(graph.node)}
    nodes = sorted({id(n): n for n in needed}.values(), key=lambda n: order[id(n)])
    reads = {i for n in nodes for i in n.input}
    inputs = [i for i in graph.input if i.name in values and i.name in reads]
    sub = helper.make_graph(nodes, "conditions", inputs, [helper.make_empty_tensor_value_info(t) for t in tensors],
                            [i for i in graph.initializer if i.name in reads])
    probe = helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    session = ort.InferenceSession(probe.SerializeToString(), onnxruntime_options(), providers=["CPUExecutionProvider"])
    feed = {i.name: np.asarray(values[i.name]) for i in inputs}
    return {**constant, **dict(zip(tensors, session.run(tensors, feed)))}


def _inline(graph: onnx.GraphProto, node: onnx.NodeProto, condition: bool) -> None:
    """Replace `node` (an If) by the nodes of the branch `condition` takes, in place."""
    branch = next(a.g for a in node.attribute if a.name == ("then_branch" if condition else "else_branch"))
    others = onnx.GraphProto()
    others.CopyFrom(graph)
    others.node.pop(list(graph.node).index(node))
    taken = defined_names(others) | used_names(others)
    node_names = {n.name for n in graph.node}
    rename: dict[str, str] = {}
    for name in [i.name for i in branch.initializer] + [o for n in branch.node for o in n.output if o]:
        if name in taken:
            rename[name] = fresh_name(name, taken)
        else:
            taken.add(name)
    moved = []
    for inner in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        copy.input[:] = [rename.get(i, i) for i in copy.input]
        copy.output[:] = [rename.get(o, o) for o in copy.output]
        for g in subgraphs(copy):
            rename_reads(g, rename)
        if copy.name:
            copy.name = fresh_name(copy.name, node_names)
        moved.append(copy)
    for init in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = rename.get(init.name, init.name)
        graph.initializer.append(copy)
    for i, (outer, inner) in enumerate(zip(node.output, branch.output)):
        if outer:
            moved.append(helper.make_node("Identity", [rename.get(inner.name, inner.name)], [outer],
                                          name=f"{node.name}/output{i}"))
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(moved):
        graph.node.insert(position + offset, new)


def _drop_dead(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is read (by a node, a subgraph or the graph's outputs)."""
    while True:
        read = used_names(graph)
        dead = [n for n in graph.node if not any(o in read for o in n.output if o)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)
