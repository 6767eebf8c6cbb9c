"""The graph view: the FP32 model as a dataflow graph, every node coloured by where INT8 error appears.

Python decides everything a reader sees (which nodes, their colour on a diverging scale around the report's
threshold, which edges carry a Q/DQ pair, what is in higher precision, where the first divergence is); the
browser only lays the graph out with dagre (MIT, bundled in `ui/static`, the layered layout Netron and TensorBoard
use) and draws it as SVG with zoom and pan. Clicking a node sets `GraphView.selected`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import anywidget
import traitlets

if TYPE_CHECKING:
    from workbench.analysis.compare import LayerReport
    from workbench.analysis.engine import EngineReport

STATIC = Path(__file__).parent / "ui" / "static"
SPAN_DB = 15.0  # the colour scale runs from threshold - SPAN_DB (red) to threshold + SPAN_DB (blue)
RED, WHITE, BLUE, GREY = (178, 24, 43), (247, 247, 247), (33, 102, 172), "#e6e6e6"


def sqnr_color(sqnr_db: float | None, threshold_db: float) -> str:
    """Diverging colour: red below the threshold, white at it, blue above; grey when the node was not measured."""
    if sqnr_db is None or (isinstance(sqnr_db, float) and math.isnan(sqnr_db)):
        return GREY
    t = max(-1.0, min(1.0, (sqnr_db - threshold_db) / SPAN_DB))
    end = RED if t < 0 else BLUE
    rgb = [round(w + (e - w) * abs(t)) for w, e in zip(WHITE, end)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def text_color(fill: str) -> str:
    """White text on dark fills (deep red, deep blue), near-black on light ones."""
    if not fill.startswith("#") or len(fill) != 7:
        return "#111"
    r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#fff" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 else "#111"


MAX_SCOPE_DEPTH = 6


def node_scopes(name: str, module: str | None) -> list[str]:
    """The scopes a node sits in, outermost first: its torch module path's prefixes (encoder, encoder.layer, …), else
    the prefixes of a `/`-separated name (/model.22/cv3.1/conv/Conv → model.22, model.22/cv3.1, …)."""
    if module and not module.startswith("_"):
        parts, sep = module.split("."), "."
    else:
        parts, sep = [p for p in name.split("/") if p][:-1], "/"
    return [sep.join(parts[:i + 1]) for i in range(min(len(parts), MAX_SCOPE_DEPTH))]


def _legend(threshold: float) -> list[dict]:
    return [
        {"color": sqnr_color(threshold - SPAN_DB, threshold), "label": f"≤ {threshold - SPAN_DB:g} dB"},
        {"color": sqnr_color(threshold, threshold), "label": f"{threshold:g} dB (threshold)"},
        {"color": sqnr_color(threshold + SPAN_DB, threshold), "label": f"≥ {threshold + SPAN_DB:g} dB"},
        {"color": GREY, "label": "not measured"},
        {"color": "#ffffff", "border": "3px solid #222", "label": "kept in FP32/FP16"},
        {"color": "#ffffff", "border": "3px dashed #b2182b", "label": "first divergence"},
        {"color": "#ff7f0e", "label": "Q: INT8 edge (Q/DQ)"},
        {"color": "#ffffff", "border": "3px solid #ff7f0e", "label": "selected"},
    ]


def _shape_text(shape: Iterable | None) -> str:
    return "×".join(map(str, shape or []))


def graph_payload(report: "LayerReport", graph, quantized: Iterable[str], higher: dict[str, str],
                  shape_logic: bool = False) -> dict:
    """Nodes and edges of `graph` (the FP32 model the report compares against, an onnx.GraphProto) for the view.

    quantized: nodes running in INT8; higher: node → precision ("fp32"/"fp16") of the nodes kept out of INT8.
    A node's colour is its local SQNR (quantized alone on exact FP32 inputs), else the per-sample SQNR of its output;
    its text is white on dark fills. Each node lists its scopes (`node_scopes`) and `scopes` sums each one up (node
    count, worst SQNR, its colour) for the collapsed view; edges carry the tensor's shape (N: the batch). Nodes
    that compute no float activation (shape arithmetic, masks' index logic: no SQNR to show) are left out unless
    `shape_logic`, which keeps a transformer's graph small enough to lay out quickly (MiniLM: 300 → 227 nodes).
    """
    layers = report.layers.drop_duplicates("node").set_index("node")
    by_tensor = report.layers.drop_duplicates("tensor").set_index("tensor")
    quantized, threshold = set(quantized), report.threshold_db
    producer: dict[str, str] = {}  # tensor → the drawn node that writes it (the graph is in topological order)
    divergence = None
    if report.first_divergence in by_tensor.index:
        divergence = by_tensor.loc[report.first_divergence, "node"]
    nodes, edges = [], []
    scope_summary: dict[str, dict] = {}
    for tensor in graph.input:
        if tensor.name in by_tensor.index:
            nodes.append({"id": f"input:{tensor.name}", "op": "Input", "label": tensor.name, "color": GREY,
                          "text": "#111", "precision": None, "sqnr_db": None, "local_sqnr_db": None,
                          "divergence": False, "scopes": []})
            producer[tensor.name] = f"input:{tensor.name}"
    hidden = 0
    for node in graph.node:
        local = report.local_sqnr.get(node.name)
        out = layers["sqnr_db"].get(node.name) if node.name in layers.index else None
        out = None if out is None or math.isnan(out) else float(out)
        if out is None and local is None and not shape_logic and node.name not in quantized:
            hidden += 1
            continue
        precision = higher.get(node.name) or ("int8" if node.name in quantized else None)
        shown = local if local is not None else out
        color = sqnr_color(shown, threshold)
        module = report.node_info.get(node.name, {}).get("module")
        scopes = node_scopes(node.name, module)
        nodes.append({"id": node.name, "op": node.op_type, "label": node.name, "color": color,
                      "text": text_color(color), "precision": precision, "sqnr_db": out,
                      "local_sqnr_db": None if local is None else float(local), "divergence": node.name == divergence,
                      "module": module, "scopes": scopes})
        for scope in scopes:
            summary = scope_summary.setdefault(scope, {"nodes": 0, "worst_db": None})
            summary["nodes"] += 1
            if shown is not None and (summary["worst_db"] is None or shown < summary["worst_db"]):
                summary["worst_db"] = float(shown)
        for tensor in node.input:
            if tensor in producer:
                quantized_edge = tensor in by_tensor.index and bool(by_tensor.at[tensor, "quantized"])
                edges.append({"source": producer[tensor], "target": node.name, "tensor": tensor,
                              "qdq": quantized_edge and precision == "int8",
                              "shape": _shape_text(report.shapes.get(tensor))})
        producer.update({o: node.name for o in node.output if o})
    for summary in scope_summary.values():
        summary["color"] = sqnr_color(summary["worst_db"], threshold)
        summary["text"] = text_color(summary["color"])
    depth = max((len(n.get("scopes", ())) for n in nodes), default=0)
    return {"nodes": nodes, "edges": edges, "threshold_db": threshold, "hidden_nodes": hidden,
            "scopes": scope_summary, "max_scope_depth": depth, "legend": _legend(threshold),
            "structure": f"{len(nodes)}:{len(edges)}:{graph.name}"}


PRECISION_COLORS = {"int8": "#4393c3", "fp8": "#2166ac", "fp16": "#a6dba0", "bf16": "#5aae61", "fp32": "#f4a582",
                    None: GREY}


def engine_payload(graph, report: "EngineReport") -> dict:
    """The graph the engine was built from, each node filled with the precision of the engine layer TensorRT fused
    it into (grey: no layer names it — folded, or absorbed into a neighbour's kernel) and grouped by that layer:
    collapsing scopes at depth 1 draws each fusion group as one box. Q/DQ nodes are left out (they become the
    kernels' INT8 formats)."""
    where = report.node_layers()
    index = {layer.name: i for i, layer in enumerate(report.layers)}
    nodes, edges, producer, groups, through_qdq = [], [], {}, {}, set()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if node.input[0] in producer:  # a Q/DQ pair passes its writer through to the readers
                producer[node.output[0]] = producer[node.input[0]]
                through_qdq.add(node.output[0])
            continue
        layer = where.get(node.name)
        precision = layer.precision if layer is not None else None
        color = PRECISION_COLORS.get(precision, GREY)
        scope = f"L{index[layer.name]} {layer.kind}" if layer is not None and len(layer.onnx_nodes) > 1 else None
        if scope:
            groups.setdefault(scope, {"nodes": 0, "worst_db": None, "color": color, "text": text_color(color),
                                      "summary": f"{precision or 'unknown'} · {layer.name[:40]}"})["nodes"] += 1
        nodes.append({"id": node.name, "op": node.op_type, "label": node.name, "color": color,
                      "text": text_color(color), "precision": precision, "sqnr_db": None, "local_sqnr_db": None,
                      "divergence": False, "module": layer.name if layer is not None else None,
                      "scopes": [scope] if scope else []})
        for tensor in node.input:
            if tensor in producer:
                edges.append({"source": producer[tensor], "target": node.name, "tensor": tensor,
                              "qdq": tensor in through_qdq and precision == "int8", "shape": ""})
        producer.update({o: node.name for o in node.output if o})
    legend = [{"color": PRECISION_COLORS[p], "label": p.upper()} for p in ("int8", "fp16", "bf16", "fp32")]
    legend.append({"color": GREY, "label": "no engine layer"})
    return {"nodes": nodes, "edges": edges, "threshold_db": 0.0, "hidden_nodes": 0, "scopes": groups,
            "max_scope_depth": 1 if groups else 0, "legend": legend,
            "structure": f"engine:{len(nodes)}:{len(edges)}:{report.model}"}


class GraphView(anywidget.AnyWidget):
    """The graph as an anywidget: `graph` is a `graph_payload`; `selected` is the clicked node's id; the browser
    reports how long its last layout and draw took in `render_ms` (the timing benchmark reads it)."""

    _esm = traitlets.Unicode().tag(sync=True)
    graph = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    render_ms = traitlets.Float(0.0).tag(sync=True)
    render_error = traitlets.Unicode("").tag(sync=True)  # why the browser could not lay the graph out, if it could not
    height = traitlets.Int(560).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("_esm", esm())
        super().__init__(**kwargs)


def standalone_html(payload: dict, height: int = 620) -> str:
    """The graph view as one self-contained page (no kernel): the HTML report embeds it, the browser tests and the
    timing benchmark load it. `window.model` is the widget's model; `window.rendered` is set once it has drawn."""
    import json

    values = json.dumps({"graph": payload, "height": height, "render_ms": 0, "render_error": "", "selected": ""})
    return PAGE % (values.replace("</", "<\\/"), esm().replace("</script>", "<\\/script>"))


PAGE = """<!DOCTYPE html><html><body><div id="root" style="width:1200px"></div><script type="module">
const model = {values: %s, handlers: {}, get(k) { return this.values[k]; },
  set(k, v) { this.values[k] = v; this.fire("change:" + k); }, save_changes() {},
  on(e, f) { (this.handlers[e] = this.handlers[e] || []).push(f); },
  fire(e) { (this.handlers[e] || []).forEach((f) => f()); }};
window.model = model;
const url = URL.createObjectURL(new Blob([document.getElementById("esm").textContent], {type: "text/javascript"}));
const widget = (await import(url)).default;
widget.render({model, el: document.getElementById("root")});
window.rendered = model.get("render_ms");
</script><script id="esm" type="text/plain">%s</script></body></html>"""


def esm() -> str:
    """The widget's ES module: dagre (UMD, given a local module object to export into) and the view."""
    return ("const module = {exports: {}}; const exports = module.exports;\n"
            + (STATIC / "dagre.min.js").read_text(encoding="utf-8")
            + "\nconst dagre = module.exports;\n" + (STATIC / "graphview.js").read_text(encoding="utf-8"))
