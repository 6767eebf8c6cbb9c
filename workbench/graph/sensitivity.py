"""Isolated (local) quantization sensitivity of every quantized node, in the same run as the FP32 reference.

Cumulative SQNR masks later culprits: once one layer has wrecked a tensor, a second collapse downstream barely
moves the numbers. So each quantized node is also cloned into the FP32 graph with its Q/DQ chains, reading the
*exact* FP32 tensors: the clone's output against the FP32 node's output is the error that quantizing this node
alone causes. One extra pass over the reference graph gives every node's local error at once.
"""
from __future__ import annotations

import onnx

from workbench.graph.topology import GraphIndex, defined_names

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SUFFIX = "::local::"


def local_branches(fp32: onnx.ModelProto, qdq: onnx.ModelProto, nodes: list[str]) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """The FP32 model plus a quantized clone of each node in `nodes`.

    Returns (combined model, node → (FP32 output tensor, clone output tensor)).
    """
    index = GraphIndex(qdq.graph)
    producers, consumers = index.producer, index.consumers
    by_name = {n.name: n for n in qdq.graph.node}
    fp32_outputs = {n.name: n.output[0] for n in fp32.graph.node}
    fp32_tensors = {o for n in fp32.graph.node for o in n.output}
    combined = onnx.ModelProto()
    combined.CopyFrom(fp32)
    # Constant folding may have turned FP32 node outputs into initializers of the quantized graph: keep those nodes.
    known = defined_names(fp32.graph)  # subgraphs too: a name defined there may not be defined again
    combined.graph.initializer.extend(i for i in qdq.graph.initializer if i.name not in known)
    del combined.opset_import[:]
    combined.opset_import.extend(qdq.opset_import)
    pairs: dict[str, tuple[str, str]] = {}
    for name in nodes:
        node = by_name.get(name)
        # The clone's FP32 counterpart is the tensor the quantized node writes, when the FP32 graph has it (after
        # BatchNorm folding a conv writes the BatchNorm's output); else the FP32 node's own output.
        counterpart = node.output[0] if node is not None and node.output[0] in fp32_tensors else fp32_outputs.get(name)
        if node is None or counterpart is None:
            continue
        chain = _input_chain(node, producers)
        out = node.output[0]
        q = next((c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"), None)
        if q is not None:
            dq = next((c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None)
            if dq is not None:
                chain += [q, dq]
        rename = {o: f"{o}{SUFFIX}{name}" for n in chain + [node] for o in n.output}
        for original in _ordered(chain, node):
            clone = onnx.NodeProto()
            clone.CopyFrom(original)
            clone.name = f"{original.name}{SUFFIX}{name}"
            del clone.metadata_props[:]
            for i, t in enumerate(clone.input):
                clone.input[i] = rename.get(t, t) if t in rename or t in known else _through_casts(t, producers, known)
            for i, t in enumerate(clone.output):
                clone.output[i] = rename[t]
            combined.graph.node.append(clone)
        last = chain[-1] if q is not None and len(chain) >= 2 and chain[-1].op_type == "DequantizeLinear" else node
        pairs[name] = (counterpart, rename[last.output[0]])
    return combined, pairs


def _through_casts(tensor: str, producers: dict[str, onnx.NodeProto], known: set[str]) -> str:
    """The FP32 graph's tensor behind a candidate tensor that only exists there because of precision casts (an FP16
    fallback writes `<node>_output_cast_0` between float regions): the clone reads the exact FP32 value instead."""
    seen = tensor
    while seen not in known:
        node = producers.get(seen)
        if node is None or node.op_type != "Cast":
            return tensor
        seen = node.input[0]
    return seen


def _input_chain(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The Q/DQ nodes that feed `node`, back to the float tensors they start from."""
    chain: list[onnx.NodeProto] = []
    stack = [i for i in node.input if i]
    while stack:
        p = producers.get(stack.pop())
        if p is not None and p.op_type in QDQ_OPS and p not in chain:
            chain.append(p)
            stack.append(p.input[0])
    return chain


def _ordered(chain: list[onnx.NodeProto], node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Input chain (Q before DQ), then the node, then its output Q/DQ: a valid topological order."""
    inputs = [n for n in chain if node.output[0] not in n.input and not _after(n, node, chain)]
    outputs = [n for n in chain if n not in inputs]
    inputs.sort(key=lambda n: n.op_type != "QuantizeLinear")
    return inputs + [node] + outputs


def _after(n: onnx.NodeProto, node: onnx.NodeProto, chain: list[onnx.NodeProto]) -> bool:
    """True for the output-side DQ (it reads the output-side Q, which reads the node)."""
    q_after = {c.output[0] for c in chain if node.output[0] in c.input}
    return bool(q_after.intersection(n.input))
