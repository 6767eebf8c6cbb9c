"""Typed results of the analysis stage, each with one JSON form (`to_dict`): the scores of a candidate against the
FP32 reference, a node of the ranking, a trial of the fallback search, a remedy the diagnosis tried."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class Scores:
    """A candidate's graph outputs against the FP32 model's: worst output cosine and SQNR over the float outputs,
    worst agreement over integer outputs, the bootstrap lower bound of the cosine, task metrics by name."""

    cosine: float
    sqnr_db: float
    agreement: float | None = None
    cosine_lower_bound: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # task metrics (and reference_<name>) by name
    seconds: float | None = None  # the quantize + evaluate cycle that produced them

    @classmethod
    def of(cls, scores: dict[str, float]) -> "Scores":
        """From `output_scores`' dict (cosine, sqnr_db, optionally agreement)."""
        return cls(scores["cosine"], scores["sqnr_db"], scores.get("agreement"))

    def value(self, name: str) -> float:
        """A score by its JSON name: cosine, sqnr_db, agreement or a task metric."""
        return self.metrics[name] if name in self.metrics else getattr(self, name)

    def with_(self, **changes: Any) -> "Scores":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"cosine": self.cosine, "sqnr_db": self.sqnr_db}
        for name in ("agreement", "cosine_lower_bound"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.metrics)
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

    def to_dict(self) -> dict:
        return {"node": self.node, "score": self.score, "op_type": self.op_type, "module": self.module,
                "local_sqnr_db": self.local_sqnr_db, "sqnr_db": self.sqnr_db}


@dataclass
class Trial:
    """One evaluation of the fallback search: these nodes out of INT8."""

    fallback: list[str]
    scores: Scores
    met: bool

    def to_dict(self) -> dict:
        return {"fallback": self.fallback, **self.scores.to_dict(), "met": self.met}


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
        out: dict[str, Any] = {"remedy": self.remedy, **self.scores.to_dict(), "met": self.met,
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
    cost: dict = field(default_factory=dict)

    @property
    def final_recipe(self) -> Any:
        """The starting recipe with the fallback nodes excluded."""
        return self.recipe.with_exclude(list(self.recipe.exclude) + self.fallback)
