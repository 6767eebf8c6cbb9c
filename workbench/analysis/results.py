"""Typed results of the analysis stage, each with one JSON form (`to_dict`): the scores of a candidate against the
FP32 reference, a node of the ranking, a trial of the fallback search, a remedy the diagnosis tried."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from workbench.analysis.cost import Cost
from workbench.core.metrics import WORST_LISTED, OutputStats


@dataclass
class Scores:
    """A candidate's graph outputs against the FP32 model's, as a user judges them: per sample, per output and per
    channel group (core.metrics.OutputScorer), the worst output deciding. `cosine` and `sqnr_db` are the mean of the
    per-sample scores of the worst output (or group), `cosine_worst` / `cosine_p5` the worst sample and the 5th
    percentile over every output; the pooled figures (all samples flattened) are information only. Integer outputs
    add their worst `agreement`; task metrics (and reference_<name>) by name; the bootstrap lower bound of the
    mean cosine when a target asks for one."""

    cosine: float
    sqnr_db: float
    agreement: float | None = None
    cosine_lower_bound: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None  # the quantize + evaluate cycle that produced them
    cosine_worst: float | None = None
    cosine_p5: float | None = None
    sqnr_worst_db: float | None = None
    pooled_cosine: float | None = None
    pooled_sqnr_db: float | None = None
    deciding: str | None = None  # the output or channel group with the lowest mean cosine
    worst_samples: list[dict] = field(default_factory=list)  # [{index, output, cosine}], worst first
    outputs: list[OutputStats] = field(default_factory=list, repr=False)
    task_worst: list[dict] = field(default_factory=list)  # [{index, score}] by the task's per-sample score
    readouts: list[dict] = field(default_factory=list)  # [{index, fp32, candidate, ...}]: the listed samples in
    # the task's terms (analysis.tasks.Task.readout)

    @classmethod
    def of(cls, stats: list[OutputStats]) -> "Scores":
        """The verdict of per-output statistics: the worst float output (or group) decides."""
        signals = [s for s in stats if not s.integer] or list(stats)
        deciding = min(signals, key=lambda s: s.cosine)
        by_sample: dict[int, dict] = {}
        for s in signals:
            for index, cos in s.worst:
                if index not in by_sample or cos < by_sample[index]["cosine"]:
                    by_sample[index] = {"index": index, "output": s.name, "cosine": cos}
        labels = [s for s in stats if s.integer]
        whole = [s for s in signals if s.group is None] or signals  # pooled figures: whole outputs, as before
        return cls(
            cosine=deciding.cosine, sqnr_db=min(s.sqnr_db for s in signals),
            agreement=min(s.agreement for s in labels) if labels else None,
            cosine_worst=min(s.cosine_worst for s in signals), cosine_p5=min(s.cosine_p5 for s in signals),
            sqnr_worst_db=min(s.sqnr_worst_db for s in signals),
            pooled_cosine=min(s.pooled_cosine for s in whole), pooled_sqnr_db=min(s.pooled_sqnr_db for s in whole),
            deciding=deciding.name, outputs=list(stats),
            worst_samples=sorted(by_sample.values(), key=lambda r: r["cosine"])[:WORST_LISTED])

    def value(self, name: str) -> float:
        """A score by its JSON name: cosine, sqnr_db, agreement or a task metric."""
        return self.metrics[name] if name in self.metrics else getattr(self, name)

    def with_(self, **changes: Any) -> "Scores":
        return replace(self, **changes)

    def to_dict(self, outputs: bool = True) -> dict:
        """JSON form; `outputs=False` leaves out the per-output table (a search's trials)."""
        out: dict[str, Any] = {"cosine": self.cosine, "sqnr_db": self.sqnr_db}
        for name in ("agreement", "cosine_lower_bound", "cosine_worst", "cosine_p5", "sqnr_worst_db",
                     "pooled_cosine", "pooled_sqnr_db", "deciding"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.worst_samples:
            out["worst_samples"] = self.worst_samples
        out.update(self.metrics)
        if self.task_worst:
            out["task_worst_samples"] = self.task_worst
        if outputs and self.readouts:
            out["readouts"] = self.readouts
        if outputs and self.outputs:
            out["outputs"] = [s.to_dict() for s in self.outputs]
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


@dataclass
class RankedNode:
    """A quantized node and how much noise it causes on its own (score: relative noise power)."""

    node: str
    score: float
    op_type: str | None = None
    module: str | None = None
    local_sqnr_db: float | None = None
    sqnr_db: float | None = None
    gain: float | None = None  # measured: the target margin gained when it is reverted alone (analysis.search)
    reverted_cosine: float | None = None  # measured: the per-sample cosine mean on the ranking subset then

    def to_dict(self) -> dict:
        out = {"node": self.node, "score": self.score, "op_type": self.op_type, "module": self.module,
               "local_sqnr_db": self.local_sqnr_db, "sqnr_db": self.sqnr_db}
        if self.gain is not None:
            out.update(gain=self.gain, reverted_cosine=self.reverted_cosine)
        return out


@dataclass
class Trial:
    """One evaluation of the fallback search: these nodes out of INT8."""

    fallback: list[str]
    scores: Scores
    met: bool

    def to_dict(self) -> dict:
        return {"fallback": self.fallback, **self.scores.to_dict(outputs=False), "met": self.met}


@dataclass
class RemedyStep:
    """A fix the diagnosis tried, cheapest first: what it changed, what it reached, what it costs."""

    remedy: str
    scores: Scores
    met: bool
    nodes_in_higher_precision: int = 0
    search: bool = False  # the fallback search's result (its evaluations are counted with the search)
    adopted: bool | None = None  # set where adopting is decided apart from `met`
    deployed: Scores | None = None  # the same recipe as ONNX Runtime CPU deploys it
    rescaled_tensors: int | None = None  # equalization and smoothing
    added_mul_nodes: int | None = None  # smoothing: explicit per-channel Mul nodes

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"remedy": self.remedy, **self.scores.to_dict(outputs=False), "met": self.met,
                               "nodes_in_higher_precision": self.nodes_in_higher_precision}
        if self.search:
            out["search"] = True
        for name in ("adopted", "rescaled_tensors", "added_mul_nodes"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.deployed is not None:
            out["deployed"] = self.deployed.to_dict()
        return out


@dataclass
class Search:
    """The fallback search from one starting recipe: the ranking it followed, the nodes it keeps out of INT8, the
    scores they reach, every trial, its budget of evaluations, and what the fallback costs; with the recipe, the
    transformed model and the layer report it started from."""

    ranking: list[RankedNode]
    fallback: list[str]
    after: Scores
    trials: list[Trial]
    budget: int
    recipe: Any = field(repr=False)  # workbench.precision.recipe.Recipe
    report: Any = field(repr=False)  # workbench.analysis.compare.LayerReport
    base: Any = field(repr=False)  # workbench.precision.transform.TransformedModel
    cost: Cost | None = None
    # "measured" or "local" (SEARCHES), or "deployed": a measured one continued as ONNX Runtime CPU runs it
    strategy: str = "measured"

    @property
    def final_recipe(self) -> Any:
        """The starting recipe with the fallback nodes excluded."""
        return self.recipe.with_exclude(list(self.recipe.exclude) + self.fallback)


@dataclass
class HeldOut:
    """The final recipe on held-out data the search never saw, scored by plain ONNX Runtime as deployed (full graph
    optimizations) and, when asked, with the search's simulated Q/DQ beside it: the pair tells a data shift from a
    kernel effect. `misses` says in words what the held-out data misses."""

    samples: int
    scores: Scores
    met: bool
    misses: list[str]
    evaluation: str  # batched, or one sample at a time for a batch-coupled model (Coupling.describe())
    graph_optimization: str = "all"
    simulated: Scores | None = None
    simulated_optimization: str | None = None

    @property
    def cosine(self) -> float:
        return self.scores.cosine

    def to_dict(self) -> dict:
        out = {"samples": self.samples, "graph_optimization": self.graph_optimization, "evaluation": self.evaluation,
               **self.scores.to_dict(), "met": self.met, "misses": self.misses}
        if self.simulated is not None:
            out["simulated"] = {**self.simulated.to_dict(outputs=False),
                                "graph_optimization": self.simulated_optimization}
        return out


@dataclass
class DeployedScore:
    """The final recipe on the evaluation data as ONNX Runtime CPU deploys it (full graph optimizations: its integer
    kernels, on this CPU), beside the simulated Q/DQ the search scored; `target` names the deployment the verdict is
    for (tensorrt: this score only warns; onnxruntime-cpu: it is the verdict)."""

    scores: Scores
    met: bool
    target: str
    runs: int
    backend: str
    cpu: str
    vnni: bool
    graph_optimization: str = "all"

    @property
    def cosine(self) -> float:
        return self.scores.cosine

    def to_dict(self) -> dict:
        return {"backend": self.backend, "graph_optimization": self.graph_optimization, "cpu": self.cpu,
                "vnni": self.vnni, **self.scores.to_dict(), "target": self.target, "met": self.met, "runs": self.runs}
