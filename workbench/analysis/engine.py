"""What TensorRT actually built: engine layers, the ONNX nodes fused into each, and the precision each runs in.

The builder's engine inspector (ProfilingVerbosity.DETAILED, LayerInformationFormat.JSON — the same JSON
`trtexec --exportLayerInfo` writes) names every engine layer, its kernel's input and output formats, and the ONNX
nodes fused into it (its "Metadata": `[ONNX Layer: name]` records joined by U+001E). From that this module builds an
`EngineReport`, checks a recipe's claims (graph/placement.py reads them from the Q/DQ layout) against the builder's
choice, and diffs two engines. Everything here is plain parsing: it runs without TensorRT on captured layer info.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from workbench.analysis.cost import Cost, precision_cost
from workbench.core.errors import WorkbenchError

ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]\x1e\x1f]*)\]")
# The builder's verbose log lists the engine's layers after "Layers:" (TensorRT-RTX 1.7, captured on an H100 where
# its engines cannot be deserialized for the inspector): one line each, tensors as { Name: ..., Datatype: ... }.
LOG_LAYER = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<kind>[^,]*), Inputs: \[(?P<inputs>.*?)\], "
                       r"Constants: \[(?P<constants>.*?)\], Outputs: \[(?P<outputs>.*?)\], TacticName: "
                       r"(?P<tactic>.*?), StreamId: \d+, Metadata: (?P<metadata>.*)$")
LOG_TENSOR = re.compile(r"\{ Name: (?P<name>[^,]*), Dimensions: \[(?P<dims>[^\]]*)\].*?Datatype: (?P<dtype>\w+), "
                        r"Format: (?P<format>[^}]*?) \}")
# Format/Datatype strings as TensorRT writes them ("Row major linear FP32 format (kLINEAR)", "Channel major FP16
# format where channel % 8 == 0", "Thirty-two wide channel vectorized row major Int8 format", "Float(1,3,224,224)")
DTYPE_WORDS = (("int8", ("int8", "char")), ("fp8", ("fp8", "e4m3")), ("int4", ("int4",)), ("fp4", ("fp4",)),
               ("bf16", ("bf16", "bfloat16")), ("fp16", ("fp16", "half")), ("fp32", ("fp32", "float")),
               ("int64", ("int64",)), ("int32", ("int32",)), ("bool", ("bool",)), ("uint8", ("uint8",)))
FLOAT_RANK = {"int4": 0, "fp4": 0, "int8": 1, "fp8": 1, "bf16": 2, "fp16": 2, "fp32": 3}
FOREIGN = re.compile(r"ForeignNode\[(.+?)\.\.\.(.+?)\]")
NAME_SPLIT = re.compile(r" \+ |PWN\(|\)|, |\{|\}|\[|\]")
POINTWISE_KINDS = ("kgen", "Reformat", "PointWise", "PointWiseV2", "shape_call")
INSERTED_KINDS = ("Reformat", "NoOp", "Shuffle", "Copy")


@dataclass(frozen=True)
class EngineTensor:
    name: str
    dtype: str  # int8, fp16, bf16, fp32, int32, ... or "unknown"
    shape: tuple[int, ...] = ()
    format: str = ""


@dataclass(frozen=True)
class EngineLayer:
    """One layer of the built engine; `onnx_nodes` are the graph's nodes fused into it (empty for what the builder
    inserted itself: reformats, copies)."""
    name: str
    kind: str
    onnx_nodes: tuple[str, ...]
    inputs: tuple[EngineTensor, ...]
    outputs: tuple[EngineTensor, ...]
    tactic: str = ""

    @property
    def precision(self) -> str:
        """The precision its kernel computes in: the narrowest float or INT8 type among the data it reads (an INT8
        convolution reads INT8 and may write FP32), else what it writes."""
        for tensors in (self.inputs, self.outputs):
            ranked = [t.dtype for t in tensors if t.dtype in FLOAT_RANK]
            if ranked:
                return min(ranked, key=FLOAT_RANK.__getitem__)
        kinds = [t.dtype for t in (*self.inputs, *self.outputs) if t.dtype != "unknown"]
        return kinds[0] if kinds else "unknown"

    @property
    def inserted(self) -> bool:
        """Added by the builder (a reformat between formats), not made from a node of the graph."""
        return not self.onnx_nodes and (self.kind in INSERTED_KINDS or self.name.startswith("Reformatting"))


@dataclass(frozen=True)
class EngineReport:
    """Every engine layer, the ONNX nodes mapped into them and where the answer came from."""
    model: str
    runtime: str  # "TensorRT-RTX 1.7.1.116", "TensorRT 11.0", "trtexec layer info"
    device: str
    layers: tuple[EngineLayer, ...]
    onnx_nodes: tuple[str, ...] = ()  # the graph's node names, for the mapped share
    plan_bytes: int | None = None
    source: str = "engine inspector"
    notes: tuple[str, ...] = ()

    @property
    def mapped_layers(self) -> int:
        """Layers made from graph nodes that name at least one node of this graph (builder-inserted layers are
        counted apart)."""
        known = set(self.onnx_nodes)
        return sum(1 for layer in self.layers if layer.onnx_nodes and (not known or set(layer.onnx_nodes) & known))

    @property
    def inserted_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.inserted)

    @property
    def mapped_share(self) -> float:
        """Share of the engine's own layers (inserted reformats left out) mapped to ONNX nodes."""
        own = len(self.layers) - self.inserted_layers
        return self.mapped_layers / own if own else 1.0

    def node_layers(self) -> dict[str, EngineLayer]:
        """ONNX node → the engine layer that computes it. Several layers can name one node (Myelin names a
        convolution in the kernel that quantizes its input and in the epilogue that adds its bias, besides the
        convolution itself), so the layer named after the node wins, then one that is not a generated pointwise
        kernel, then the first."""
        named: dict[str, list[EngineLayer]] = {}
        for layer in self.layers:
            for node in layer.onnx_nodes:
                named.setdefault(node, []).append(layer)
        return {node: min(layers, key=lambda layer: (not layer.name.startswith(node), layer.kind in POINTWISE_KINDS))
                for node, layers in named.items()}

    def unmapped_nodes(self) -> list[str]:
        """Graph nodes no engine layer names (folded constants, Q/DQ pairs absorbed into a kernel, shape math)."""
        seen = self.node_layers()
        return [n for n in self.onnx_nodes if n not in seen]

    def precision_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            if not layer.inserted:
                counts[layer.precision] = counts.get(layer.precision, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "device": self.device, "source": self.source,
                "plan_bytes": self.plan_bytes, "engine_layers": len(self.layers),
                "inserted_layers": self.inserted_layers, "mapped_layers": self.mapped_layers,
                "mapped_share": round(self.mapped_share, 4), "onnx_nodes": len(self.onnx_nodes),
                "unmapped_onnx_nodes": len(self.unmapped_nodes()), "precisions": self.precision_counts(),
                "notes": list(self.notes),
                "layers": [{**asdict(layer), "precision": layer.precision, "inserted": layer.inserted}
                           for layer in self.layers]}

    def to_frame(self):
        """One row per engine layer (pandas)."""
        import pandas as pd

        return pd.DataFrame([{"layer": layer.name, "kind": layer.kind, "precision": layer.precision,
                              "onnx_nodes": len(layer.onnx_nodes), "inserted": layer.inserted,
                              "first_node": layer.onnx_nodes[0] if layer.onnx_nodes else ""}
                             for layer in self.layers])


def dtype_of(text: str) -> str:
    """The data type a TensorRT format string names ("Channel major FP16 format ..." → fp16)."""
    lower = text.lower()
    for dtype, words in DTYPE_WORDS:
        if any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", lower) for w in words):
            return dtype
    return "unknown"


def nodes_of(metadata: str, name: str, known: Iterable[str] = ()) -> tuple[str, ...]:
    """The ONNX nodes fused into a layer: its metadata records, else the node names its own name is made of
    ("Conv_9 + PWN(Clip_13)"; a Myelin "{ForeignNode[first...last]}" covers the graph's nodes from first to last)."""
    found = [n for n in ONNX_LAYER.findall(metadata or "") if n]
    if found:
        return tuple(dict.fromkeys(found))
    order = list(known)
    names = set(order)
    foreign = FOREIGN.search(name)
    if foreign and foreign.group(1) in names and foreign.group(2) in names:
        first, last = order.index(foreign.group(1)), order.index(foreign.group(2))
        return tuple(order[first:last + 1])
    tokens = [t for t in NAME_SPLIT.split(name) if t]
    return tuple(dict.fromkeys(t for t in tokens if t in names))


def parse_layer_info(text: str | Mapping, model: str = "model", onnx_nodes: Iterable[str] = (),
                     runtime: str = "trtexec layer info", device: str = "unknown GPU",
                     plan_bytes: int | None = None) -> EngineReport:
    """An EngineReport from the inspector's JSON (get_engine_information(JSON), or `trtexec --exportLayerInfo`)."""
    data = json.loads(text) if isinstance(text, str) else text
    entries = data.get("Layers") if isinstance(data, Mapping) else data
    if not isinstance(entries, list):
        raise WorkbenchError("layer info has no 'Layers' list: export it with ProfilingVerbosity DETAILED "
                             "(trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE)")
    nodes = tuple(onnx_nodes)
    notes = []
    if entries and all(isinstance(e, str) for e in entries):
        notes.append("built with layer names only: rebuild with ProfilingVerbosity DETAILED for formats and "
                     "fused ONNX nodes")
        entries = [{"Name": e} for e in entries]
    layers = tuple(_layer(entry, nodes) for entry in entries)
    return EngineReport(model=model, runtime=runtime, device=device, layers=layers, onnx_nodes=nodes,
                        plan_bytes=plan_bytes, source="engine inspector", notes=tuple(notes))


def parse_build_log(text: str, model: str = "model", onnx_nodes: Iterable[str] = (),
                    runtime: str = "builder log", device: str = "unknown GPU",
                    plan_bytes: int | None = None) -> EngineReport:
    """An EngineReport from the builder's verbose log (its "Layers:" listing), for a runtime that cannot
    deserialize the engine on this GPU (TensorRT-RTX on compute capability 9.0) or a log a user kept."""
    nodes = tuple(onnx_nodes)
    layers = []
    for line in text.splitlines():
        match = LOG_LAYER.match(line.strip())
        if match is None:
            continue
        layers.append(EngineLayer(name=match["name"], kind=match["kind"],
                                  onnx_nodes=nodes_of(match["metadata"], match["name"], nodes),
                                  inputs=_log_tensors(match["inputs"]), outputs=_log_tensors(match["outputs"]),
                                  tactic=match["tactic"]))
    if not layers:
        raise WorkbenchError("no engine layers in this log: capture the builder's VERBOSE log with "
                             "ProfilingVerbosity DETAILED (its 'Layers:' listing)")
    return EngineReport(model=model, runtime=runtime, device=device, layers=tuple(layers), onnx_nodes=nodes,
                        plan_bytes=plan_bytes, source="builder log")


def _log_tensors(text: str) -> tuple[EngineTensor, ...]:
    return tuple(EngineTensor(name=m["name"], dtype=dtype_of(m["dtype"]),
                              shape=tuple(int(d) for d in m["dims"].split(",") if d.strip().lstrip("-").isdigit()),
                              format=m["format"]) for m in LOG_TENSOR.finditer(text))


def _layer(entry: Mapping[str, Any], known: tuple[str, ...]) -> EngineLayer:
    name = str(entry.get("Name", ""))
    return EngineLayer(name=name, kind=str(entry.get("LayerType", "unknown")),
                       onnx_nodes=nodes_of(str(entry.get("Metadata", "")), name, known),
                       inputs=tuple(_tensor(t) for t in entry.get("Inputs", [])),
                       outputs=tuple(_tensor(t) for t in entry.get("Outputs", [])),
                       tactic=str(entry.get("TacticName", "")))


def _tensor(entry: Mapping[str, Any]) -> EngineTensor:
    fmt = str(entry.get("Format/Datatype", ""))
    return EngineTensor(name=str(entry.get("Name", "")), dtype=dtype_of(fmt),
                        shape=tuple(int(d) for d in entry.get("Dimensions", []) if isinstance(d, int)), format=fmt)


@dataclass(frozen=True)
class ClaimCheck:
    """The recipe's claimed precision per compute node beside the engine's; `disagreements` lists each mismatch."""
    checked: int
    agree: int
    disagreements: tuple[dict, ...] = ()
    not_in_engine: tuple[str, ...] = ()  # claimed nodes no engine layer names (fused away or renamed)
    opaque: tuple[str, ...] = ()  # inside a layer whose I/O formats cannot tell that node's precision
    # compute node → the precision the engine runs it in (the claim where the engine cannot tell)
    engine: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def agrees(self) -> bool:
        return not self.disagreements

    def to_dict(self) -> dict:
        return {"checked": self.checked, "agree": self.agree, "agrees": self.agrees,
                "disagreements": list(self.disagreements), "not_in_engine": list(self.not_in_engine),
                "opaque": list(self.opaque)}


def check_claims(claims: Mapping[str, str], report: EngineReport) -> ClaimCheck:
    """Each compute node's claimed precision (graph/placement.claimed_precisions) against the precision of the
    engine layer it was fused into. A layer fused from several compute nodes of different claims cannot answer for
    each one from its I/O formats: those are listed as opaque, never counted as agreeing. A node claimed "folded"
    (constant inputs) agrees when only pointwise kernels name it (the CRNN's zero-state Gemms); a builder that
    batches it into a compute kernel instead (TensorRT-RTX stacks a constant-state Gemm onto the live one sharing
    its weight) runs it in that kernel's precision."""
    where = report.node_layers()
    agree, disagreements, missing, opaque = 0, [], [], []
    engine = dict(claims)
    for node, claim in claims.items():
        layer = where.get(node)
        if claim == "folded":  # computed at build time: agrees unless a compute kernel runs it after all
            if layer is not None and layer.kind not in POINTWISE_KINDS:
                engine[node] = layer.precision
                disagreements.append({"node": node, "claimed": claim, "engine": layer.precision,
                                      "layer": layer.name, "kind": layer.kind})
            else:
                agree += 1
            continue
        if layer is None:
            missing.append(node)
            continue
        compute = [n for n in layer.onnx_nodes if claims.get(n, "folded") != "folded"]
        if len({claims[n] for n in compute}) > 1:
            opaque.append(node)
            continue
        engine[node] = layer.precision
        if claim == layer.precision:
            agree += 1
        else:
            disagreements.append({"node": node, "claimed": claim, "engine": layer.precision, "layer": layer.name,
                                  "kind": layer.kind})
    return ClaimCheck(checked=agree + len(disagreements), agree=agree, disagreements=tuple(disagreements),
                      not_in_engine=tuple(missing), opaque=tuple(opaque), engine=engine)


@dataclass(frozen=True)
class EngineDiff:
    """Two engines side by side: layer counts, plan sizes, and the ONNX nodes whose precision or fusion changed."""
    a: str
    b: str
    layers: tuple[int, int]
    plan_bytes: tuple[int | None, int | None]
    precision_changes: tuple[dict, ...] = ()
    fusion_changes: tuple[dict, ...] = ()
    precisions: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "layers": list(self.layers), "plan_bytes": list(self.plan_bytes),
                "precisions": list(self.precisions), "precision_changes": list(self.precision_changes),
                "fusion_changes": list(self.fusion_changes)}


def diff(a: EngineReport, b: EngineReport) -> EngineDiff:
    """Per ONNX node present in both engines: the precision of its layer and the nodes it is fused with."""
    in_a, in_b = a.node_layers(), b.node_layers()
    precision, fusion = [], []
    for node in [n for n in in_a if n in in_b]:
        la, lb = in_a[node], in_b[node]
        if la.precision != lb.precision:
            precision.append({"node": node, "a": la.precision, "b": lb.precision, "layer_a": la.name,
                              "layer_b": lb.name})
        if set(la.onnx_nodes) != set(lb.onnx_nodes):
            fusion.append({"node": node, "a": la.name, "b": lb.name, "a_nodes": len(la.onnx_nodes),
                           "b_nodes": len(lb.onnx_nodes)})
    return EngineDiff(a=a.model, b=b.model, layers=(len(a.layers), len(b.layers)),
                      plan_bytes=(a.plan_bytes, b.plan_bytes), precision_changes=tuple(precision),
                      fusion_changes=tuple(fusion), precisions=(a.precision_counts(), b.precision_counts()))


@dataclass(frozen=True)
class EngineView:
    """What `workbench engine` reports: the engine, the recipe's claims checked against it, and an optional diff."""
    report: EngineReport
    claims: ClaimCheck
    against: EngineReport | None = None
    diff: EngineDiff | None = None
    graph: Any = field(default=None, repr=False, compare=False)  # the ONNX graph the engine was built from
    claimed_cost: Cost | None = None  # MACs out of INT8 as the Q/DQ layout claims (None: shapes unknown)
    cost: Cost | None = None  # the same from the precisions the engine's layers run in

    def summary(self) -> list[str]:
        """A few lines for people: size, mapping, precisions, and whether the recipe's claims hold."""
        r, c = self.report, self.claims
        precisions = ", ".join(f"{k.upper()} {v}" for k, v in sorted(r.precision_counts().items()))
        lines = [f"{r.model}: {len(r.layers)} engine layers ({r.inserted_layers} inserted reformats) from "
                 f"{r.runtime} on {r.device}" + (f", plan {r.plan_bytes / 2**20:.1f} MiB" if r.plan_bytes else ""),
                 f"mapped to ONNX nodes: {r.mapped_layers} of {len(r.layers) - r.inserted_layers} layers "
                 f"({r.mapped_share:.0%}); precisions: {precisions}",
                 f"recipe's claims: {c.agree} of {c.checked} compute nodes run as claimed"
                 + (f"; {len(c.opaque)} inside mixed fused layers" if c.opaque else "")
                 + (f"; {len(c.not_in_engine)} not named by any layer" if c.not_in_engine else "")]
        lines += [f"  {d['node']}: claimed {d['claimed']}, engine runs {d['engine']} ({d['layer']})"
                  for d in c.disagreements[:20]]
        if self.cost is not None and self.claimed_cost is not None:
            built, claimed = self.cost, self.claimed_cost
            lines.append(f"MACs out of INT8: {built.share_of_macs_in_higher_precision:.1%} in the engine, "
                         f"{claimed.share_of_macs_in_higher_precision:.1%} claimed; compute vs all-INT8 "
                         f"{built.compute_vs_all_int8:.2f}× ({claimed.compute_vs_all_int8:.2f}× claimed)")
        lines += list(r.notes)
        return lines

    def to_dict(self) -> dict:
        out = {"engine": self.report.to_dict(), "claims": self.claims.to_dict()}
        if self.cost is not None and self.claimed_cost is not None:
            out["cost"], out["claimed_cost"] = self.cost.to_dict(), self.claimed_cost.to_dict()
        if self.against is not None and self.diff is not None:
            out["against"] = {k: v for k, v in self.against.to_dict().items() if k != "layers"}
            out["diff"] = self.diff.to_dict()
        return out


def engine_view(model: str, layer_info: str | None = None, against: str | None = None,
                against_layer_info: str | None = None, runtime: str = "auto",
                shapes: Iterable[str] = ()) -> EngineView:
    """Build (or read the captured layer info of) the engine for `model`, map its layers to the ONNX nodes, check
    the Q/DQ layout's precision claims against it and, with `against`, diff it with a second recipe's engine."""
    from workbench.graph.placement import claimed_precisions
    from workbench.model.loading import from_onnx

    handle = from_onnx(model)
    report = engine_report(handle, Path(model).name, layer_info, runtime, shapes)
    claimed = claimed_precisions(handle.proto)
    claims = check_claims(claimed, report)
    costs = _costs(handle, claimed, claims, report.runtime, shapes)
    if against is None:
        return EngineView(report, claims, graph=handle.proto.graph, **costs)
    other = engine_report(from_onnx(against), Path(against).name, against_layer_info, runtime, shapes)
    return EngineView(report, claims, other, diff(report, other), graph=handle.proto.graph, **costs)


def _costs(handle: Any, claimed: Mapping[str, str], claims: ClaimCheck, runtime: str,
           shapes: Iterable[str]) -> dict[str, Cost]:
    """The cost as claimed and as the engine runs it, from MACs at the build profile's opt shapes (ONNX shape
    inference: the engine view does not run the model). Empty where the MACs cannot be inferred."""
    from workbench.graph.cost import inferred_shapes, macs_per_sample
    from workbench.model.profiles import build_profile

    profile = build_profile(handle.inputs, list(shapes))
    macs = macs_per_sample(handle.proto, inferred_shapes(handle.proto, {p.name: p.opt for p in profile.inputs}))
    if not any(macs.values()):
        return {}
    return {"claimed_cost": precision_cost(macs, claimed, source="Q/DQ layout"),
            "cost": precision_cost(macs, claims.engine, source=f"{runtime} engine")}


def engine_report(handle: Any, name: str, layer_info: str | None, runtime: str = "auto",
                  shapes: Iterable[str] = ()) -> EngineReport:
    """From a captured layer info file (the inspector's JSON or the builder's log) when given, else built here by
    the available TensorRT. `handle` is the loaded model (model.loading.ModelHandle), `name` its label."""
    nodes = tuple(handle.node_names())
    if layer_info is not None:
        source = Path(layer_info)
        if not source.is_file():
            raise WorkbenchError(f"layer info file not found: {source}")
        try:
            text = source.read_text()
        except UnicodeDecodeError:
            raise WorkbenchError(f"{source} is not layer info JSON nor a builder log (not text)") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if "Name: " in text:
                return parse_build_log(text, model=name, onnx_nodes=nodes, runtime="captured builder log")
            raise WorkbenchError(f"{source} is not layer info JSON nor a builder log ({exc})") from None
        return parse_layer_info(data, model=name, onnx_nodes=nodes, runtime="captured layer info")
    from workbench.model.profiles import build_profile
    from workbench.runtime.tensorrt import available_builder

    built = available_builder(runtime).layer_info(Path(handle.path), build_profile(handle.inputs, list(shapes)))
    parse = parse_build_log if isinstance(built.layer_info, str) else parse_layer_info
    return parse(built.layer_info, model=name, onnx_nodes=nodes, runtime=built.runtime, device=built.device,
                 plan_bytes=built.plan_bytes)


def engine_cost(model_path: str | Path, macs: Mapping[str, int], nodes: Iterable[str],
                runtime: str = "auto") -> tuple[Cost, ClaimCheck] | None:
    """The cost of a recipe as the TensorRT here builds it: the precision each of `nodes` (the INT8-eligible ones)
    runs in, read from the engine's layers, with the claim check beside it. None where no TensorRT can build (the
    CPU default): the Q/DQ layout's claim stands."""
    from workbench.graph.placement import claimed_precisions
    from workbench.model.loading import from_onnx
    from workbench.runtime.tensorrt import available_builder

    try:
        available_builder(runtime)
    except WorkbenchError:
        return None
    handle = from_onnx(model_path)
    report = engine_report(handle, Path(model_path).name, None, runtime)
    check = check_claims(claimed_precisions(handle.proto), report)
    precisions = {n: check.engine.get(n, "fp32") for n in nodes}
    return precision_cost(macs, precisions, source=f"{report.runtime} engine"), check
