"""Per-layer comparison of a recipe's model against the FP32 reference, streamed through Polygraphy.

Every tensor of the FP32 graph is marked as an output in both models (Polygraphy's ModifyOutputs) and both
Polygraphy runners infer batch by batch, as Comparator.run(streaming=True) does; only running sums are kept,
never the tensors of every sample. (Comparator itself is not used for the loop: its IterationResult probes
every output for torch.Tensor, which imports torch, ~200 MB and a second, even for NumPy-only runs.)
In a Q/DQ graph the original float tensor names survive: `T` is the producer's raw output and
`T_DequantizeLinear_Output` the fake-quantized value its consumers read. A row reports the value consumers
read ("effective"), and for quantized tensors also the raw value (sqnr_pre_q_db), so the noise added by
quantizing that tensor is visible on its own, and for quantized nodes the local SQNR: the node quantized alone, on exact FP32 inputs
(see sensitivity.py), which later collapses cannot mask.

First divergence: the first tensor, in the FP32 graph's topological order, whose effective SQNR falls below
`threshold_db` (default 20 dB: about 1 % relative noise power). The largest drop, reported next to it, is the
node that adds the most relative noise power (noise out − noise in); the diagnosis ranks nodes by that.
"""
from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd

from workbench.core import cache
from workbench.core.log import quiet_polygraphy
from workbench.core.metrics import RunningStats
from workbench.graph.cost import macs_per_sample
from workbench.graph.sensitivity import local_branches
from workbench.graph.topology import GraphIndex
from workbench.model.data import Dataset, as_dataset
from workbench.precision.transform import TransformedModel
from workbench.runtime import Backend, get_backend

DEFAULT_THRESHOLD_DB = 20.0
_REFERENCE_ENGINE: dict[str, Any] = {}  # compare(reuse_reference=True): the last FP32 marked engine, by content
_REFERENCE_LOCK = threading.Lock()
# compare(reuse_reference=True): the FP32 side's marked values of the last data compared, when they fit in
# KEPT_VALUES_MB (the app's toggle preview: a few samples whose reference run is then never repeated)
KEPT_VALUES_MB = 512.0
_KEPT_VALUES: dict[str, dict[int, tuple[int, dict]]] = {}
# sqnr_db / cosine: per sample (the mean per-sample noise power in dB, the mean per-sample cosine), as the verdict
# judges the outputs; pooled_* over all samples flattened, information only
LAYER_COLUMNS = ["tensor", "node", "op_type", "module", "quantized", "sqnr_db", "cosine", "sqnr_worst_db",
                 "pooled_sqnr_db", "pooled_cosine", "max_abs", "mean_abs", "rms", "sqnr_pre_q_db", "local_sqnr_db",
                 "added_noise"]


@dataclass
class LayerReport:
    """One row per tensor of the FP32 graph (topological order); final outputs; where accuracy diverges."""

    layers: pd.DataFrame
    outputs: list[dict]
    first_divergence: str | None
    largest_drop: dict | None
    threshold_db: float
    recipe: dict
    samples: int
    context: dict
    framework: dict | None = None
    excluded_nodes: list[str] = field(default_factory=list)
    macs: dict[str, int] = field(default_factory=dict)
    local_sqnr: dict[str, float] = field(default_factory=dict)  # quantized node → SQNR when quantized alone
    folded: dict[str, str] = field(default_factory=dict)  # FP32 node removed by clean-up → node that absorbed it
    node_info: dict[str, dict] = field(default_factory=dict)  # node → op_type, module (incl. nodes absent in FP32)
    channel_rms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # quantized tensors only
    amax: dict[str, float] = field(default_factory=dict, repr=False)  # observed max |value|, quantized tensors
    verdict: Any = field(default=None, repr=False)  # analysis.results.Scores of the final outputs
    evaluation: dict = field(default_factory=dict)  # batched, or one sample at a time (batch-coupled model)
    task: dict | None = None
    shapes: dict[str, list] = field(default_factory=dict, repr=False)  # tensor → dims, "N" for the sample axis

    def to_dict(self) -> dict:
        return {
            "layers": json.loads(self.layers[LAYER_COLUMNS].to_json(orient="records")),
            "outputs": self.outputs,
            "first_divergence": self.first_divergence,
            "largest_drop": self.largest_drop,
            "threshold_db": self.threshold_db,
            "recipe": self.recipe,
            "samples": self.samples,
            "context": self.context,
            "framework": self.framework,
            "excluded_nodes": self.excluded_nodes,
            "folded_nodes": self.folded,
            "verdict": self.verdict.to_dict(outputs=False) if self.verdict is not None else None,
            "evaluation": self.evaluation,
            "task": self.task,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """The verdict in one line, as the app's status shows it and its Code tab's snippet prints it."""
        v = self.verdict
        task = self.task or {}
        said = (f"; {task['kind']} {task['primary']} {v.metrics[task['primary']]:.3f}"
                if task.get("primary") in v.metrics else "")
        where = f"; first divergence at {self.first_divergence}" if self.first_divergence else ""
        coupled = " (evaluated one sample at a time: batch-coupled)" if self.evaluation.get("coupled") else ""
        return (f"per-sample cosine mean {v.cosine:.5f}, worst {v.cosine_worst:.4f} on {v.deciding}, SQNR "
                f"{v.sqnr_db:.1f} dB; pooled {v.pooled_cosine:.5f}{said}{where}{coupled}")



def _effective_names(candidate: onnx.ModelProto, tensors: list[str]) -> dict[str, tuple[str, str | None]]:
    """FP32 tensor → (name of the value consumers read in the candidate, raw pre-Q name or None)."""
    producers = GraphIndex(candidate.graph).producer
    q_of = {n.input[0]: n for n in candidate.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n for n in candidate.graph.node if n.op_type == "DequantizeLinear"}
    present = set(producers) | {i.name for i in candidate.graph.input}
    names: dict[str, tuple[str, str | None]] = {}
    for t in tensors:
        producer = producers.get(t)
        if producer is not None and producer.op_type == "DequantizeLinear":  # a graph output kept its name
            q = producers.get(producer.input[0])
            names[t] = (t, q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None)
        elif t in q_of and q_of[t].output[0] in dq_of:
            names[t] = (dq_of[q_of[t].output[0]].output[0], t)
        elif t in present:
            names[t] = (t, None)
    return names


def _layer_rows(reference: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(tensor, node, op_type) in topological order: graph inputs first, then every node output.

    Constant nodes (how Paddle2ONNX, tf2onnx and the legacy torch exporter store weights) hold no activation:
    runtimes turn them into initializers, which cannot be marked as outputs, so they get no row."""
    initializers = {i.name for i in reference.graph.initializer}
    rows = [(i.name, "(input)", "Input") for i in reference.graph.input if i.name not in initializers]
    for node in reference.graph.node:
        if node.op_type != "Constant":
            rows += [(o, node.name, node.op_type) for o in node.output if o and o not in initializers]
    return rows


def _reference_marks(model, rows: list[tuple[str, str, str]]) -> list[str]:
    """The FP32 tensors compare marks as outputs of the reference: every row's tensor but the graph inputs."""
    graph_inputs = {i.name for i in model.inputs}
    return [t for t, _, _ in rows if t not in graph_inputs]


def _reference_engine(model, marked: list[str], candidate: onnx.ModelProto, backend: Backend) -> Any:
    """The FP32 model with `marked` as outputs, as compare builds it without local branches; the last one is kept
    (by model, marks, opset and backend), so a precision toggle does not rebuild it. Thread-safe: the app builds it
    ahead in the background (prepare_reference) while the user looks at the graph."""
    key = _reference_key(model, marked, candidate, backend)
    with _REFERENCE_LOCK:
        if key not in _REFERENCE_ENGINE:
            combined, _ = local_branches(model.proto, candidate, [])
            engine = backend.build_marked(combined, marked, name="fp32-reference")
            _REFERENCE_ENGINE.clear()  # one kept at a time: it holds the whole model
            _REFERENCE_ENGINE[key] = engine
        return _REFERENCE_ENGINE[key]


def _reference_key(model, marked: list[str], candidate: onnx.ModelProto, backend: Backend) -> str:
    opsets = sorted((o.domain, o.version) for o in candidate.opset_import)
    return cache.digest("reference-engine", model.sha256, marked, opsets, backend.key())


class _KeptValues:
    """The reference side of a compare(reuse_reference=True) as it ran, batch by batch ({start: (n, values)}), kept
    for the next call on the same model, data and batching while it fits in KEPT_VALUES_MB: the next call then runs
    only the candidate. One set is kept at a time (the app's preview samples)."""

    def __init__(self, key: str | None, samples: int) -> None:
        self.key, self.samples = key, samples
        self.replay = _KEPT_VALUES.get(key) if key is not None else None
        self.recording: dict[int, tuple[int, dict]] | None = {} if key is not None and self.replay is None else None

    def record(self, start: int, n: int, values: dict) -> None:
        """Keep a batch, unless the whole data would not fit (projected from the first batch)."""
        if self.recording is None:
            return
        per_sample = sum(np.asarray(v).nbytes for v in values.values()) / n
        if start == 0 and per_sample * self.samples > KEPT_VALUES_MB * 2**20:
            self.recording = None
        else:
            self.recording[start] = (n, values)

    def finish(self) -> None:
        """Keep what was recorded (only a complete pass over the data gets here)."""
        if self.recording is not None:
            with _REFERENCE_LOCK:
                _KEPT_VALUES.clear()
                _KEPT_VALUES[self.key] = self.recording


def prepare_reference(transformed: TransformedModel, backend: Backend | None = None) -> None:
    """Build the engine compare(reuse_reference=True) will use, ahead of the first toggle."""
    model = transformed.fp32
    candidate = transformed.graph()
    _reference_engine(model, _reference_marks(model, _layer_rows(model.proto)), candidate, backend or get_backend())


def compare(
    transformed: TransformedModel,
    data: Dataset,
    backend: Backend | None = None,
    batch_size: int = 32,
    memory_budget_mb: float = 512.0,
    threshold_db: float = DEFAULT_THRESHOLD_DB,
    framework: bool = True,
    save_dir: Path | None = None,
    progress: bool = True,
    local_sensitivity: bool = True,
    reuse_reference: bool = False,
    task: Any = "auto",
) -> LayerReport:
    """Compare every layer of `transformed` with the FP32 model on `data` (same backend, same inputs).

    `local_sensitivity` adds the per-node isolated error (one extra pass over the quantized nodes, about one more
    model run); the diagnosis ranks by it. Without it the comparison costs about two marked runs, and
    `reuse_reference` keeps the FP32 model's marked engine for the next call on the same model (the app's precision
    toggles: the reference side does not change, so it is built once).
    Every marked tensor of a batch is held at once, so the batch shrinks below `batch_size` when one sample's
    tensors (measured on the first sample) would exceed `memory_budget_mb` per batch. A model whose FP32 outputs
    depend on the batch they are computed in (evaluate.batch_coupling) is compared one sample at a time, as it is
    deployed. The final outputs are judged per sample, per output and channel group, and by the model's task
    (`task`: "auto" chooses from the output layout; see evaluate.verdict): `verdict`.
    """
    from workbench.analysis.evaluate import batch_coupling
    from workbench.analysis.tasks import make_task
    from workbench.core.progress import Steps

    model = transformed.fp32
    data = as_dataset(data, model.inputs, origin="evaluation data")
    backend = backend or get_backend()
    coupling = batch_coupling(backend, model, data, batch_size)
    candidate = transformed.graph()
    rows = _layer_rows(model.proto)
    names = _effective_names(candidate, [t for t, _, _ in rows])
    ref_engine, cand_engine, local_pairs = _engines(transformed, candidate, rows, names, backend, local_sensitivity,
                                                    reuse_reference)
    tally = _Tally(model, names, local_pairs, framework)
    ref_runner, cand_runner = ref_engine.runner(), cand_engine.runner()
    saved = _SavedRun(save_dir, ref_runner.name, cand_runner.name) if save_dir else None
    reuse = reuse_reference and not local_sensitivity
    kept = _KeptValues(cache.digest(_reference_key(model, _reference_marks(model, rows), candidate, backend),
                                    data.fingerprint(), batch_size, memory_budget_mb) if reuse else None,
                       len(data))
    bar = Steps(len(data), "comparing", "sample", progress)
    fixed = data.fixed_batch
    start, step = 0, fixed or 1
    # The two runs of a batch go side by side, and so do the statistics of its tensors (the runtimes and NumPy
    # release the GIL): on a 2-core machine each phase takes about half the time. Each tensor's sums are updated
    # by one thread in batch order, so the numbers do not change.
    with quiet_polygraphy(), ref_runner, cand_runner, ThreadPoolExecutor(2, "workbench-compare") as pool:
        while start < len(data):
            n = kept.replay[start][0] if kept.replay else min(step, len(data) - start)
            feed = data.feed(start, n)
            cand_future = pool.submit(cand_runner.infer, feed)
            ref_values = kept.replay[start][1] if kept.replay else {**feed, **ref_runner.infer(feed)}
            kept.record(start, n, ref_values)
            cand_values = {**feed, **cand_future.result()}
            if start == 0 and not fixed and not coupling.coupled:
                per_sample = sum(v.nbytes for v in ref_values.values()) + sum(v.nbytes for v in cand_values.values())
                step = int(max(1, min(batch_size, memory_budget_mb * 2**20 // max(per_sample, 1))))
            start += n
            bar.update(n)
            tally.add(pool, feed, ref_values, cand_values, n, fixed or n)
            if saved is not None:
                saved.add(feed, *tally.outputs_of(ref_values, cand_values))
    bar.close()
    kept.finish()
    if saved is not None:
        saved.write()
    return tally.report(transformed, candidate, rows, data, make_task(task, model), coupling, threshold_db,
                        {**cand_engine.describe(), "batch_size": step, "synthetic_data": data.synthetic})


def _engines(transformed: TransformedModel, candidate: onnx.ModelProto, rows: list, names: dict, backend: Backend,
             local_sensitivity: bool, reuse_reference: bool) -> tuple[Any, Any, dict]:
    """The marked FP32 engine (with each quantized node's local-sensitivity clone when asked), the marked candidate
    engine, and the clones: {node: (FP32 output, clone output)}."""
    model = transformed.fp32
    graph_inputs = {i.name for i in model.inputs}
    ref_marked = _reference_marks(model, rows)
    cand_marked = sorted({n for pair in names.values() for n in pair if n and n not in graph_inputs})
    if reuse_reference and not local_sensitivity:
        ref_engine, local_pairs = _reference_engine(model, ref_marked, candidate, backend), {}
    else:
        combined, local_pairs = local_branches(model.proto, candidate,
                                               list(transformed.quantized_nodes) if local_sensitivity else [])
        ref_engine = backend.build_marked(combined, ref_marked + [c for _, c in local_pairs.values()],
                                          name="fp32-reference")
    source = transformed.path if transformed.recipe.precision == "fp32" else candidate  # FP32: maybe external data
    return ref_engine, backend.build_marked(source, cand_marked, name=transformed.recipe.label), local_pairs


class _Tally:
    """compare()'s running statistics: per marked tensor (candidate vs FP32, and the raw pre-fusion tensor), per
    quantized node's local clone, per output, the outputs themselves for the verdict, and the framework check."""

    def __init__(self, model: Any, names: dict, local_pairs: dict, framework: bool) -> None:
        from workbench.analysis.evaluate import OutputCollector

        self.model, self.names, self.local_pairs = model, names, local_pairs
        self.stats = {t: RunningStats() for t in names}
        self.raw_stats = {t: RunningStats() for t, (_, raw) in names.items() if raw is not None}
        self.local_stats = {node: RunningStats() for node in local_pairs}
        self.output_names = [o.name for o in model.outputs]
        self.out_stats = {o: RunningStats() for o in self.output_names}
        self.ref_outputs, self.cand_outputs = OutputCollector(), OutputCollector()
        self.torch_check = _FrameworkCheck.create(model) if framework else None
        self.float_tensors: set[str] | None = None
        self.shapes: dict[str, tuple[int, ...]] = {}

    def outputs_of(self, ref_values: dict, cand_values: dict) -> tuple[dict, dict]:
        return ({o: ref_values[o] for o in self.output_names},
                {o: cand_values[self.names[o][0]] for o in self.output_names})

    def add(self, pool: ThreadPoolExecutor, feed: dict, ref_values: dict, cand_values: dict, n: int,
            fed: int) -> None:
        """One batch of `n` samples (`fed` rows per tensor: a fixed-batch model pads)."""
        names = self.names
        if self.float_tensors is None:
            self.float_tensors = {t for t in names if t in ref_values and names[t][0] in cand_values  # fused away?
                                  and np.issubdtype(np.asarray(ref_values[t]).dtype, np.floating)}
            self.shapes = {t: np.shape(v) for t, v in ref_values.items()}

        def update(t: str) -> None:
            effective, raw = names[t]
            self.stats[t].update(ref_values[t], cand_values[effective], fed)
            if raw is not None and raw in cand_values:
                self.raw_stats[t].update(ref_values[t], cand_values[raw], fed)
                self.stats[t].track_channels(ref_values[t])

        def update_local(node: str) -> None:
            fp32_tensor, clone = self.local_pairs[node]
            if fp32_tensor in ref_values and clone in ref_values:
                self.local_stats[node].update(ref_values[fp32_tensor], ref_values[clone], fed)

        list(pool.map(update, sorted(self.float_tensors, key=lambda t: -ref_values[t].size)))
        list(pool.map(update_local, self.local_pairs))
        for o in self.output_names:
            self.out_stats[o].update(ref_values[o], cand_values[names[o][0]])
        ref, cand = self.outputs_of(ref_values, cand_values)
        self.ref_outputs.add(ref, fed, n)
        self.cand_outputs.add(cand, fed, n)
        if self.torch_check is not None:
            self.torch_check.update(feed, ref_values, self.output_names)

    def report(self, transformed: TransformedModel, candidate: onnx.ModelProto, rows: list, data: Dataset, task: Any,
               coupling: Any, threshold_db: float, context: dict) -> "LayerReport":
        from workbench.analysis.evaluate import verdict
        from workbench.analysis.tasks import output_groups

        model, stats, fixed = self.model, self.stats, data.fixed_batch
        float_tensors = self.float_tensors or set()
        local_sqnr = {node: s.sample_sqnr_db for node, s in self.local_stats.items() if s.count}
        local = {self.local_pairs[node][0]: db for node, db in local_sqnr.items()}
        table = _table(rows, self.names, float_tensors, stats, self.raw_stats, local, model.module_of, candidate)
        judged = verdict(self.cand_outputs.result(), self.ref_outputs.result(), len(data), output_groups(model, task),
                         task, data)
        return LayerReport(
            layers=table, outputs=_output_rows(judged, self.out_stats), verdict=judged,
            evaluation=coupling.to_dict(), task=task.to_dict() if task is not None else None,
            first_divergence=next((r.tensor for r in table.itertuples() if r.sqnr_db < threshold_db), None),
            largest_drop=_largest_drop(table), threshold_db=threshold_db, recipe=transformed.recipe.to_dict(),
            samples=len(data), context=context,
            framework=None if self.torch_check is None else self.torch_check.result(),
            excluded_nodes=list(transformed.excluded_nodes), macs=macs_per_sample(model.proto, self.shapes),
            local_sqnr=local_sqnr, folded=dict(transformed.folded),
            node_info={n.name: {"op_type": n.op_type, "module": model.module_of.get(n.name)}
                       for n in candidate.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")},
            channel_rms={t: s.channel_rms() for t, s in stats.items() if s.channel_sq is not None},
            amax={t: s.ref_amax for t, s in stats.items() if s.ref_amax},
            shapes={t: ["N" if i == 0 and d == (fixed or 1) else d for i, d in enumerate(shape)]
                    for t, shape in self.shapes.items()},
        )


def _output_rows(judged, pooled: dict[str, RunningStats]) -> list[dict]:
    """One row per graph output and channel group: `cosine` and `sqnr_db` are the means of the per-sample scores
    (the pooled figures beside them), with the worst samples; `max_abs` over all samples."""
    rows = []
    for stats in judged.outputs:
        row = {"name": stats.name, "cosine": stats.cosine, "sqnr_db": stats.sqnr_db, **stats.to_dict()}
        if stats.name in pooled:
            summary = pooled[stats.name].summary()
            row["max_abs"] = summary["max_abs"]
            row.update({k: summary[k] for k in ("nonfinite", "agreement") if k in summary})
        rows.append(row)
    return rows


def _table(rows, names, float_tensors, stats, raw_stats, local, module_of, candidate) -> pd.DataFrame:
    records = []
    noise: dict[str, float] = {}
    raw_noise: dict[str, float] = {}
    for tensor, node, op_type in rows:
        if tensor not in float_tensors:
            continue
        s = stats[tensor]
        raw = raw_stats.get(tensor)
        raw = raw if raw is not None and raw.count else None  # raw value fused away on some backends
        figures = s.sample_figures()
        raw_figures = raw.sample_figures() if raw is not None else None
        noise[tensor] = figures["relative_noise"]
        raw_noise[tensor] = raw_figures["relative_noise"] if raw_figures is not None else noise[tensor]
        summary = s.summary()
        records.append({
            "tensor": tensor, "node": node, "op_type": op_type, "module": module_of.get(node),
            "quantized": names[tensor][1] is not None, **summary, "sqnr_db": figures["sqnr_db"],
            "cosine": figures["cosine"], "sqnr_worst_db": figures["sqnr_worst_db"],
            "pooled_sqnr_db": summary["sqnr_db"], "pooled_cosine": summary["cosine"], "rms": s.reference_rms,
            "sqnr_pre_q_db": raw_figures["sqnr_db"] if raw_figures is not None else None,
            "local_sqnr_db": local.get(tensor),
        })
    table = pd.DataFrame.from_records(records, columns=LAYER_COLUMNS[:-1])
    inputs_of = _node_inputs(candidate)
    table["added_noise"] = [_added_noise(r, noise, raw_noise, inputs_of) for r in table.itertuples()]
    return table


def _added_noise(row, noise: dict[str, float], raw_noise: dict[str, float], inputs_of: dict[str, list[str]]) -> float:
    """Relative noise power at this node's output minus the worst at its inputs before their Q/DQ.

    Measured against the raw (pre-quantization) inputs, so quantizing a node's own inputs counts against the
    node: keeping the node in higher precision is what removes those Q/DQ pairs.
    """
    if row.node == "(input)":
        return max(0.0, noise[row.tensor])
    inputs = [raw_noise[t] for t in inputs_of.get(row.node, []) if t in raw_noise]
    return max(0.0, noise[row.tensor] - max(inputs, default=0.0))


def _node_inputs(candidate: onnx.ModelProto) -> dict[str, list[str]]:
    """Node name → the FP32 tensor names it reads in the candidate (Q/DQ chains traced back to the float tensor)."""
    index = GraphIndex(candidate.graph)
    return {n.name: [index.float_source(i) for i in n.input if i] for n in candidate.graph.node}


def _largest_drop(table: pd.DataFrame) -> dict | None:
    if table.empty or table["added_noise"].max() <= 0:
        return None
    row = table.loc[table["added_noise"].idxmax()]
    return {"tensor": row.tensor, "node": row.node, "module": row.module, "op_type": row.op_type,
            "added_noise": float(row.added_noise), "sqnr_db": float(row.sqnr_db)}


class _SavedRun:
    """Graph inputs and final outputs of both runs as Polygraphy JSON, for `polygraphy run --load-inputs
    inputs.json --load-outputs outputs.json` cross-checks (intermediate tensors are not saved: too large)."""

    def __init__(self, directory: Path, ref_name: str, cand_name: str) -> None:
        self.directory = Path(directory)
        self.names = (ref_name, cand_name)
        self.inputs: list[dict] = []
        self.outputs: tuple[list, list] = ([], [])

    def add(self, feed: dict, ref: dict, cand: dict) -> None:
        from polygraphy.comparator import IterationResult

        self.inputs.append({k: np.array(v) for k, v in feed.items()})
        for store, name, values in zip(self.outputs, self.names, (ref, cand)):
            store.append(IterationResult({k: np.array(v) for k, v in values.items()}, runner_name=name))

    def write(self) -> None:
        from polygraphy.comparator import RunResults
        from polygraphy.json import save_json

        self.directory.mkdir(parents=True, exist_ok=True)
        save_json(self.inputs, str(self.directory / "inputs.json"), description="inference inputs")
        RunResults(list(zip(self.names, self.outputs))).save(str(self.directory / "outputs.json"))


class _FrameworkCheck:
    """Export fidelity: the FP32 ONNX against the PyTorch module it came from, on the same batches."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.stats: dict[str, RunningStats] = {}

    @classmethod
    def create(cls, model) -> "_FrameworkCheck | None":
        module = model.torch_module
        if module is None and model.zoo is not None and model.zoo.torch_module is not None:
            try:
                module = model.zoo.torch_module()
            except ImportError:
                return None
        return None if module is None else cls(module)

    def update(self, feed: dict, ref_values: dict, output_names: list[str]) -> None:
        import torch

        with torch.no_grad():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()])
        outs = out if isinstance(out, (tuple, list)) else [out]
        for name, value in zip(output_names, outs):
            self.stats.setdefault(name, RunningStats()).update(value.numpy(), ref_values[name])

    def result(self) -> dict:
        return {"reference": "PyTorch module (FP32)", "candidate": "FP32 ONNX",
                "outputs": [{"name": n, **s.summary()} for n, s in self.stats.items()],
                "ok": all(s.sqnr_db > 60 and math.isfinite(s.cosine) for s in self.stats.values())}
