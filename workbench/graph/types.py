"""Element-type consistency after a precision conversion, checked against each op's schema.

A converter that retypes tensors node by node (onnxconverter-common, our own passes) can leave a node whose inputs
bound to one type parameter disagree (an initializer shared with a node the converter keeps in FP32 on its own:
`Type parameter (T) of Optype (Add) bound to different types`), or a graph output read inside the graph in the
wrong type. `repair_types` walks the graph once in order, with the types tensors actually have, and puts a Cast
where a node's schema needs one: to FP32 for a node meant to compute in FP32, else to the lower float type. Every
declared type (value_info, graph outputs) is made to agree with what the nodes now write.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from workbench.graph.topology import fresh_name, rename_reads, subgraphs

FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
SUFFIX = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def _schema(node: onnx.NodeProto, opsets: dict[str, int]):
    try:
        return onnx.defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
    except Exception:  # a custom domain (com.microsoft) or an unknown op: trust its declared types
        return None


def _param_of(schema, index: int) -> str | None:
    """The type parameter (e.g. 'T') input `index` is bound to, or None for a fixed type."""
    formals = schema.inputs
    if not formals:
        return None
    formal = formals[min(index, len(formals) - 1)]
    params = {c.type_param_str for c in schema.type_constraints}
    return formal.type_str if formal.type_str in params else None


def _output_types(node: onnx.NodeProto, schema, types: dict[str, int], declared: dict[str, int],
                  opsets: dict[str, int]) -> dict[str, int]:
    """Element types `node` writes given its input types: ONNX's node inference, else the type parameter each
    output shares with the inputs, else the type it was declared with."""
    out: dict[str, int] = {}
    if schema is not None and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                      for a in node.attribute):
        inputs = {n: helper.make_tensor_type_proto(types[n], None) for n in node.input if n and n in types}
        if len(inputs) == len([n for n in node.input if n]):
            try:
                inferred = onnx.shape_inference.infer_node_outputs(
                    schema, node, inputs, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
                out = {k: v.tensor_type.elem_type for k, v in inferred.items() if v.tensor_type.elem_type}
            except Exception:
                out = {}
    if schema is not None:
        bound = {_param_of(schema, i): types.get(n) for i, n in enumerate(node.input) if n}
        for i, name in enumerate(node.output):
            if name and name not in out and i < len(schema.outputs):
                elem = bound.get(schema.outputs[i].type_str)
                if elem:
                    out[name] = elem
    for name in node.output:
        if name and name not in out and name in declared:
            out[name] = declared[name]
    return out


def repair_types(model: onnx.ModelProto, fp32_nodes: set[str]) -> int:
    """Insert the Casts the schemas need (see module doc), in place, on the main graph (subgraphs are left as they
    are: control flow stays in FP32 with its bodies); returns how many Casts were added."""
    graph = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    declared = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.output)
                if v.type.HasField("tensor_type")}
    types: dict[str, int] = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    types.update({i.name: i.data_type for i in graph.initializer})
    taken = {n.name for n in graph.node} | {o for n in graph.node for o in n.output} | set(types)
    nodes: list[onnx.NodeProto] = []
    added = 0

    def cast(tensor: str, to: int, reader: str) -> str:
        nonlocal added
        name = fresh_name(f"{tensor}_{SUFFIX[to]}", taken)
        nodes.append(helper.make_node("Cast", [tensor], [name], name=f"{name}_cast_for_{reader}", to=to))
        types[name] = to
        added += 1
        return name

    made: dict[tuple[str, int], str] = {}
    for node in list(graph.node):
        schema = _schema(node, opsets)
        if schema is not None:
            groups: dict[str, list[int]] = {}
            for i, name in enumerate(node.input):
                param = _param_of(schema, i)
                if name and param and types.get(name) in FLOATS:
                    groups.setdefault(param, []).append(i)
            for indices in groups.values():
                kinds = {types[node.input[i]] for i in indices}
                if len(kinds) < 2:
                    continue
                want = TensorProto.FLOAT if node.name in fp32_nodes else min(kinds - {TensorProto.FLOAT})
                for i in indices:
                    source = node.input[i]
                    if types[source] != want:
                        key = (source, want)
                        if key not in made:
                            made[key] = cast(source, want, node.name)
                        node.input[i] = made[key]
        types.update(_output_types(node, schema, types, declared, opsets))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    added += _outputs_as_declared(graph, types, taken)
    for value in graph.value_info:
        if value.name in types and value.type.HasField("tensor_type") and types[value.name] in FLOATS:
            value.type.tensor_type.elem_type = types[value.name]
    return added


def _outputs_as_declared(graph: onnx.GraphProto, types: dict[str, int], taken: set[str]) -> int:
    """A graph output written in another float type than declared: its producer writes an inner tensor that the
    graph's own readers keep reading, and a Cast writes the output under its name."""
    added = 0
    for out in graph.output:
        want, have = out.type.tensor_type.elem_type, types.get(out.name)
        if want not in FLOATS or have not in FLOATS or want == have or out.name in {i.name for i in graph.input}:
            continue
        inner = fresh_name(f"{out.name}_{SUFFIX[have]}", taken)
        for node in graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
            for g in subgraphs(node):
                rename_reads(g, {out.name: inner})
        graph.node.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_cast_to_output", to=want))
        types[inner], types[out.name] = have, want
        added += 1
    return added
