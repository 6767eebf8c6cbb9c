"""The recipe as it will be deployed: ONNX Runtime CPU with full graph optimizations (fused integer kernels), the
7-bit-weight remedy where those kernels lose accuracy, a search continued as deployed, and the held-out score by
plain ONNX Runtime."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from workbench.analysis.compare import LayerReport
from workbench.analysis.cost import fallback_cost
from workbench.analysis.diagnose.causes import rank
from workbench.analysis.diagnose.target import Target, score_outputs
from workbench.analysis.evaluate import Evaluator
from workbench.analysis.results import HeldOut, RemedyStep, Scores, Search
from workbench.analysis.search import measured_search
from workbench.model.data import Dataset
from workbench.model.loading import ModelHandle
from workbench.precision.recipe import Recipe
from workbench.runtime import Backend, get_backend


def score_heldout(model: ModelHandle, final, heldout: Dataset, target: Target, batch_size: int = 32,
                  simulated: Backend | None = None, task: Any = "auto") -> HeldOut:
    """The final recipe against FP32 on held-out data with plain ONNX Runtime (its default, full graph
    optimizations: what a deployment runs), not the unoptimized graph the search used, scored with the search's
    statistics (per sample, per output, the task) and evaluated as deployed (one sample at a time when the model
    is batch-coupled); with `simulated`, also the simulated Q/DQ score (the search's own arithmetic), which tells a
    data shift from a kernel effect. `misses` says in words what the held-out data misses."""
    point = replace(target, confidence=None, per_evaluation_confidence=None)

    def scored(backend: Backend) -> tuple[Scores, list[str], Evaluator]:
        evaluator = Evaluator(model, None, heldout, backend, batch_size, task=task)
        reference = evaluator.reference
        scores = score_outputs(evaluator, evaluator.run(final), reference, point)
        metric = float(target.metric(reference, reference, heldout)) if target.metric is not None else None
        return scores, point.misses(scores, metric), evaluator

    scores, misses, evaluator = scored(get_backend("onnxruntime-cpu", optimization="all"))
    held = HeldOut(samples=len(heldout), scores=scores, met=not misses, misses=misses,
                   evaluation=evaluator.coupling.describe())
    if simulated is not None:
        held.simulated = scored(simulated)[0]
        held.simulated_optimization = getattr(simulated, "optimization", None)
    return held


# A deployed score this far (dB of output SQNR) below the simulated one is a kernel effect worth a remedy.
KERNEL_LOSS_DB = 1.0


@dataclass
class Deployment:
    """Scores recipes as ONNX Runtime CPU deploys them (full graph optimizations), against its own FP32 run."""

    evaluator: Evaluator
    scorer: Any
    scored: dict = field(default_factory=dict)  # recipe → its deployed Scores: each recipe runs once

    @property
    def runs(self) -> int:
        return len(self.scored)

    def score(self, recipe: Recipe) -> Scores:
        if recipe not in self.scored:
            self.scored[recipe] = self.evaluator.score(recipe, self.scorer)
        return self.scored[recipe]

    def describe(self) -> dict:
        from workbench.runtime.onnxruntime_cpu import cpu_has_vnni, cpu_name

        return {"backend": self.evaluator.backend.name, "graph_optimization": "all", "cpu": cpu_name(),
                "vnni": cpu_has_vnni()}


def deployment(search: Evaluator, scorer) -> Deployment | None:
    """The deployment scorer, for the ONNX Runtime CPU backend when the search runs an unoptimized graph: the
    search's data and scoring on the deployed backend, against that backend's own FP32 reference."""
    backend = search.backend
    if getattr(backend, "name", "") != "onnxruntime-cpu" or getattr(backend, "optimization", "all") == "all":
        return None
    deployed = get_backend("onnxruntime-cpu", optimization="all", threads=backend.threads)
    return Deployment(Evaluator(search.model, search.calib, search.data, deployed, search.batch_size,
                                 task=search.judged), scorer)


def kernel_remedy(deploy: Deployment, recipe: Recipe, simulated: Scores, deployed: Scores, score,
                   tried: list[RemedyStep], target: Target, reference_metric: float | None
                   ) -> tuple[Scores, Scores] | None:
    """The recipe meets the target in simulation but not as ONNX Runtime CPU runs it: if its fused integer kernels
    lose accuracy the simulated Q/DQ does not, try 7-bit weights (ORT's reduce_range); returns (simulated,
    deployed) scores when both then meet the target."""
    loss = simulated.sqnr_db - deployed.sqnr_db
    if recipe.weight_bits != 8 or loss <= KERNEL_LOSS_DB:
        return None
    candidate = recipe.with_(weight_bits=7)
    sim7, dep7 = score(candidate), deploy.score(candidate)
    why = " (this CPU has no VNNI: u8*s8 pair sums saturate in 16 bits)" if deploy.describe()["vnni"] is False else ""
    adopted = target.met(sim7, reference_metric) and target.met(dep7, reference_metric)
    tried.append(RemedyStep(f"7-bit weights: ONNX Runtime's CPU integer kernels lose {loss:.1f} dB of output SQNR "
                            f"against simulated Q/DQ{why}", sim7, target.met(sim7, reference_metric),
                            adopted=adopted, deployed=dep7))
    return (sim7, dep7) if adopted else None


def subset_scorer(ranker: Evaluator, target: Target, bar, seconds: list[float]) -> Callable[[Recipe], Scores]:
    """One quantize + evaluate cycle on the ranking subset (a measured search's candidates), its wall time appended
    to `seconds`."""

    def score(r: Recipe) -> Scores:
        scores = ranker.score(r, lambda outputs, ref: score_outputs(ranker, outputs, ref, target))
        seconds.append(scores.seconds)
        bar.update()
        return scores

    return score


def deployed_search(deployer: Deployment, recipe: Recipe, deployed: Scores, target: Target,
                     reference_metric: float | None, report: LayerReport, base, excluded: list[str],
                     ranking_data: Dataset, batch_size: int, threads: int, bar, ranking_seconds: list[float]
                     ) -> Search:
    """The measured search again from `recipe` (which meets the target in simulation), every run scored as ONNX
    Runtime CPU deploys it: the nodes its integer kernels need in float on top of `recipe`'s."""
    evaluator = deployer.evaluator
    ranker = Evaluator(evaluator.model, evaluator.calib, ranking_data, evaluator.backend, batch_size,
                       task=evaluator.judged)

    def score(r: Recipe) -> Scores:
        bar.update()
        return deployer.score(r)

    left = [n for n in base.quantized_nodes if n not in set(excluded)]
    return measured_search(recipe, deployed, target, reference_metric, report, base, score,
                           subset_scorer(ranker, target, bar, ranking_seconds), rank(report, left), ranker,
                           threads=threads,
                           cost=lambda nodes: fallback_cost(report.macs, base.quantized_nodes, excluded + nodes,
                                                    recipe.fallback_precision))
