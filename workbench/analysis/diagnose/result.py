"""The diagnosis as a typed result with one JSON form."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from workbench.analysis.compare import LayerReport
from workbench.analysis.cost import Cost
from workbench.analysis.diagnose.target import Target
from workbench.analysis.engine import ClaimCheck
from workbench.analysis.results import DeployedScore, HeldOut, RankedNode, RemedyStep, Scores, Trial
from workbench.precision.recipe import Recipe


@dataclass
class Diagnosis:
    """What diagnose found: the ranking, the nodes kept out of INT8 (`fallback`), the scores before and after, every
    remedy and trial, the cost, the deployed and held-out scores, and the explanation in words."""

    ranking: list[RankedNode]
    fallback: list[str]
    before: Scores
    after: Scores
    evaluations: int
    budget: int
    quantized_nodes: int
    target: Target  # as the search judged it (its per-evaluation confidence set)
    met: bool
    explanation: str
    recipe: Recipe
    report: LayerReport = field(repr=False)
    trials: list[Trial] = field(default_factory=list)
    cost: Cost | None = None
    ranking_samples: int = 0
    causes: dict[str, str] = field(default_factory=dict)
    remedies: list[RemedyStep] = field(default_factory=list)  # every fix tried, cheapest first, with its result
    initial_ranking: list[RankedNode] = field(default_factory=list)  # ranking under the recipe as given
    heldout: HeldOut | None = None  # the final recipe scored on held-out data by plain ONNX Runtime
    warnings: list[str] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)  # ops left in float beside the fallback nodes
    deployment: DeployedScore | None = None  # the final recipe on the evaluation data as ONNX Runtime CPU runs it
    cycle_seconds: list[float] = field(default_factory=list)  # wall time of each search cycle (quantize + evaluate)
    evaluation: dict = field(default_factory=dict)  # batched, or one sample at a time (batch-coupled model)
    task: dict | None = None  # the task scored (chosen from the output layout, or given)
    misses: list[str] = field(default_factory=list)  # what the final recipe misses on the evaluation data
    ranking_runs: int = 0  # the measured search's runs on the ranking subset (apart from `evaluations`)
    ranking_seconds: float = 0.0  # their wall time together
    engine_check: ClaimCheck | None = None  # the final recipe's claims against the engine TensorRT built (if any)

    @property
    def remedies_tried(self) -> int:
        """Remedies evaluated before or after the fallback search (not the recipe as given, not the fallback)."""
        return sum(1 for r in self.remedies[1:] if not r.search)

    def to_dict(self) -> dict:
        return {
            "ranking": [r.to_dict() for r in self.ranking], "fallback": self.fallback,
            "before": self.before.to_dict(), "after": self.after.to_dict(),
            "evaluations": self.evaluations, "budget": self.budget, "remedies_tried": self.remedies_tried,
            "cycle_budget": self.budget + self.remedies_tried, "quantized_nodes": self.quantized_nodes,
            "target": self.target.to_dict(), "met": self.met, "explanation": self.explanation,
            "recipe": self.recipe.to_dict(), "first_divergence": self.report.first_divergence,
            "trials": [t.to_dict() for t in self.trials], "cost": self.cost.to_dict() if self.cost else {},
            "ranking_samples": self.ranking_samples,
            "causes": self.causes, "remedies": [r.to_dict() for r in self.remedies],
            "initial_ranking": [r.to_dict() for r in self.initial_ranking[:20]],
            "heldout": self.heldout.to_dict() if self.heldout else None, "warnings": self.warnings,
            "also_in_higher_precision": self.collateral,
            "deployment": self.deployment.to_dict() if self.deployment else None, "cycle_seconds": self.cycle_seconds,
            "recipe_cli_args": self.recipe.to_cli_args(), "recipe_python": self.recipe.to_python(),
            "evaluation": self.evaluation, "task": self.task, "misses": self.misses,
            "ranking_runs": self.ranking_runs, "ranking_seconds": self.ranking_seconds,
            "engine_check": self.engine_check.to_dict() if self.engine_check else None,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)
