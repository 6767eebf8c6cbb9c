"""diagnose(): the remedies (analysis.diagnose.remedies), the fallback search (analysis.search, or .bisection),
the deployment checks (.deployment) and the explanation (.explain), run in that order on one shared state."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from workbench.analysis.compare import LayerReport, compare
from workbench.analysis.cost import fallback_cost
from workbench.analysis.diagnose.bisection import bisection_search, search_budget
from workbench.analysis.diagnose.causes import cause, rank
from workbench.analysis.diagnose.deployment import (
    Deployment,
    deployed_search,
    deployment,
    kernel_remedy,
    score_heldout,
    subset_scorer,
)
from workbench.analysis.diagnose.explain import explain
from workbench.analysis.diagnose.remedies import (
    DEFAULT_REMEDIES,
    REMEDIES,
    REMEDY_STEPS,
    Situation,
    candidates_ahead,
    chosen,
)
from workbench.analysis.diagnose.result import Diagnosis
from workbench.analysis.diagnose.target import Target, sample_warnings, score_outputs, task_target
from workbench.analysis.engine import engine_cost
from workbench.analysis.evaluate import Evaluator
from workbench.analysis.results import DeployedScore, RemedyStep, Scores, Search
from workbench.analysis.search import DEPLOY_TARGETS, SEARCHES, measured_search
from workbench.analysis.search import search_budget as measured_budget
from workbench.core.errors import WorkbenchError
from workbench.model.data import Dataset, as_dataset
from workbench.model.loading import ModelHandle
from workbench.precision.recipe import Recipe
from workbench.precision.transform import TransformedModel, apply
from workbench.runtime import Backend, get_backend


@dataclass
class Start:
    """A recipe the fallback search can start from: its scores, its transformed model and its layer report (local
    sensitivity on the ranking samples)."""

    recipe: Recipe
    scores: Scores
    base: TransformedModel
    report: LayerReport


class _Run:
    """One diagnosis in progress: the data, the target, the scorers and the counters every phase shares."""

    def __init__(self, model: ModelHandle, calib: Dataset, data: Dataset, backend: Backend, batch_size: int,
                 ranking_samples: int, executor: Any, task: Any, progress: bool, target: Target,
                 task_min: float | None, max_drop: float | None) -> None:
        from workbench.core.progress import Steps

        self.model, self.calib, self.data, self.backend = model, calib, data, backend
        self.batch_size, self.ranking_samples, self.executor, self.task = batch_size, ranking_samples, executor, task
        self.bar = Steps(None, "diagnosing", "cycle", progress)
        self.evaluator = Evaluator(model, calib, data, backend, batch_size, executor=executor, task=task)
        self.target = task_target(target, self.evaluator.judged, task_min, max_drop)
        reference = self.evaluator.reference
        self.reference_metric = (float(self.target.metric(reference, reference, data))
                                 if self.target.metric is not None else None)
        self.cycle_seconds: list[float] = []
        self.ranking_seconds: list[float] = []  # the measured search's runs on the ranking subset

    def met(self, scores: Scores) -> bool:
        return self.target.met(scores, self.reference_metric)

    def better(self, a: Scores, b: Scores) -> bool:
        return self.target.better(a, b, self.reference_metric)

    def scorer(self, outputs: dict, reference: dict) -> Scores:
        return score_outputs(self.evaluator, outputs, reference, self.target)  # the target as the search sets it

    def score(self, recipe: Recipe) -> Scores:
        """One quantize + evaluate cycle of the search."""
        scores = self.evaluator.score(recipe, self.scorer)
        self.cycle_seconds.append(scores.seconds)
        self.bar.update()
        return scores

    def start(self, recipe: Recipe, scores: Scores, base: TransformedModel | None = None) -> Start:
        base = base or apply(self.model, recipe, self.calib, progress=False)
        report = compare(base, self.data.take(self.ranking_samples), self.backend, framework=False, progress=False)
        return Start(recipe, scores, base, report)

    def situation(self, start: Start) -> Situation:
        return Situation(self.model, start.report, start.base, self.calib)


def diagnose(
    model: ModelHandle,
    recipe: Recipe,
    calib: Dataset,
    data: Dataset,
    target: Target | None = None,
    backend: Backend | None = None,
    batch_size: int = 32,
    ranking_samples: int = 64,
    remedies: bool | tuple[str, ...] = True,
    progress: bool = True,
    heldout: Any = None,
    batch_axes: dict[str, int | None] | None = None,
    deployment_check: bool = True,
    executor: Any = None,
    task: Any = "auto",
    task_min: float | None = None,
    max_drop: float | None = None,
    search: str = "measured",
    deploy: str = "tensorrt",
) -> Diagnosis:
    """Why INT8 hurts and the cheapest fix that meets `target` (default output cosine ≥ 0.99).

    With `remedies` (True: DEFAULT_REMEDIES; or a tuple of REMEDY_STEPS), fixes are tried in order of cost
    before any node leaves INT8: graph clean-up, the TensorRT Q/DQ placement, the range estimators MinMax lacks
    (mean of per-sample min/max, then least-error ranges; each kept when it improves the score), per-tensor
    calibration overrides for the tensors the ranking blames (clipped → minmax, coarse or outlier-ridden →
    entropy/percentile), each kept when it improves the score; then activation equalization
    (workbench.precision.equalize), activation smoothing (workbench.precision.smooth) and bias correction
    (workbench.precision.biascorrect), kept only when they meet the target, each tried on top of the rescalings
    before it that did not. The node fallback search then runs on the best recipe so far (and from the best
    rescaling that improved the score without meeting it, keeping the cheaper fallback); with "fp16" a fallback it
    finds is retried in FP16 and kept there if it still meets the target. The ranking pass (every tensor marked,
    local sensitivity) uses the first `ranking_samples` samples; every evaluation runs on all of `data`.

    The search scores simulated Q/DQ (the graph as written: the arithmetic TensorRT runs). With
    `deployment_check` on the ONNX Runtime CPU backend, the recipe is also run as a CPU deployment would (full
    graph optimizations: fused integer kernels): where those lose accuracy the simulation does not show (x86
    without VNNI saturates u8*s8 pair sums), the found recipe is tried with 7-bit weights, and the final
    recipe's deployed score is reported beside the simulated one.

    With an `executor` of several workers ("ray"), the evaluations the search may need next run ahead of it as
    tasks: the remedy candidates, the bisection's first two probes and the probes of both its next branches, the
    pruning's next removals. The search itself is unchanged, so the diagnosis is identical with either executor;
    speculative probes it did not need are cancelled and not counted.

    `search`: "measured" (default; analysis.search: candidates ranked by what reverting each does to the target on
    the ranking subset, greedy with re-ranking, then a put-back pass) or "local" (the shortest prefix of the local
    sensitivity ranking, by bisection: fewer runs, larger fallbacks on depthwise CNNs).

    `deploy`: where the recipe will run. "tensorrt" (default): the target is judged on simulated Q/DQ, and a
    deployment check that misses is a warning. "onnxruntime-cpu": the verdict is the deployed score; the cheapest
    fallback that meets the target in simulation but not on this CPU's integer kernels goes on to a second measured
    search scored as deployed, which keeps the nodes those kernels need in float (EfficientNet-Lite0).
    """
    steps = _checked(recipe, remedies, search, deploy)
    calib = as_dataset(calib, model.inputs, batch_axes, origin="calibration data")
    data = as_dataset(data, model.inputs, batch_axes, origin="evaluation data")
    run = _Run(model, calib, data, backend or get_backend(), batch_size, ranking_samples, executor, task, progress,
               target or Target(), task_min, max_drop)
    base = apply(model, recipe, calib, progress=progress)
    if not base.quantized_nodes:
        why = "; ".join(f"{n}: {r}" for n, r in base.kept_in_fp32.items())
        raise WorkbenchError("no node is quantized by this recipe: nothing to diagnose" + (f" ({why})" if why else ""))
    passes = 2 if deploy == "onnxruntime-cpu" else 1  # a CPU deployment may search again, as deployed
    budget_of = measured_budget if search == "measured" else search_budget
    # The confidence level is split over every evaluation the searches may run (the deployed one's too).
    run.target = run.target.for_search(budget_of(len(base.quantized_nodes)) * passes)
    given = run.start(recipe, run.score(recipe), base)
    tried = [RemedyStep(f"as given ({recipe.label})", given.scores, run.met(given.scores))]
    initial = rank(given.report, base.quantized_nodes)
    causes = {r.node: cause(r.node, model, given.report, base) for r in initial[:3]}
    searches = _searches(run, _try_remedies(run, given, steps, tried), search)
    deployer = deployment(run.evaluator, run.scorer) if deployment_check or deploy == "onnxruntime-cpu" else None
    deploys, deployed_cycles = ({}, 0) if deployer is None or deploy != "onnxruntime-cpu" else _search_as_deployed(
        run, searches, deployer)
    best = _choose(run, searches, deploys, recipe, tried)
    current, after = _fp16_retry(run, best, steps, tried)
    deployed = None
    if deployer is not None:
        current, after, deployed = _kernel_check(run, deployer, current, best.fallback, after, tried, bool(remedies))
    run.bar.close()
    run.evaluator.cancel()  # probes submitted ahead that the search did not need
    diagnosis = Diagnosis(
        ranking=best.ranking, fallback=best.fallback, before=given.scores, after=after,
        evaluations=len(tried) - sum(1 for r in tried if r.search) + deployed_cycles
        + sum(len(f.trials) for f in searches if f.strategy != "deployed"),
        budget=sum(f.budget for f in searches if f.strategy != "deployed") * passes,
        ranking_runs=len(run.ranking_seconds), ranking_seconds=round(sum(run.ranking_seconds), 3),
        quantized_nodes=len(best.base.quantized_nodes), target=run.target, met=run.met(after),
        explanation="", recipe=current.with_exclude(list(current.exclude) + best.fallback), report=best.report,
        trials=best.trials, ranking_samples=best.report.samples, remedies=tried, initial_ranking=initial,
        cycle_seconds=run.cycle_seconds,
        causes={**causes, **{r.node: cause(r.node, model, best.report, best.base) for r in best.ranking[:3] + [
            r for r in best.ranking if r.node in best.fallback][:8]}})
    _finish(run, diagnosis, best, deployer, deployed, deploy, heldout, batch_axes)
    return diagnosis


def _checked(recipe: Recipe, remedies: bool | tuple[str, ...], search: str, deploy: str) -> tuple[str, ...]:
    """The remedy steps to try; one-line errors for arguments diagnose cannot take."""
    if recipe.precision != "int8":
        raise WorkbenchError("diagnose searches INT8 fallbacks: use --precision int8")
    if search not in SEARCHES:
        raise WorkbenchError(f"unknown search {search!r}; choose from {', '.join(SEARCHES)}")
    if deploy not in DEPLOY_TARGETS:
        raise WorkbenchError(f"unknown deployment target {deploy!r}; choose from {', '.join(DEPLOY_TARGETS)}")
    steps = DEFAULT_REMEDIES if remedies is True else tuple(remedies or ())
    unknown = sorted(set(steps) - set(REMEDY_STEPS))
    if unknown:
        raise WorkbenchError(f"unknown remedies {unknown}; choose from {', '.join(REMEDY_STEPS)}")
    return steps


def _try_remedies(run: _Run, given: Start, steps: tuple[str, ...], tried: list[RemedyStep]) -> list[Start]:
    """The cheap fixes in order (remedies.REMEDIES), each recorded in `tried`; returns the starts of the fallback
    search: the best recipe so far, and the best whole-network fix that improved the score without meeting the
    target (the PP-OCR detector smoothed needs a smaller fallback, MobileNetV2 equalized a larger one: search from
    both, keep the cheaper)."""
    current, rescaled = given, None  # rescaled: (recipe, scores)
    if not steps or run.met(given.scores):
        return [current]
    run.evaluator.submit(candidates_ahead(steps, given.recipe, run.situation(given)))  # ahead, where workers idle
    stacked = given.recipe  # stacking fixes go on top of rescalings that did not meet the target alone
    for remedy in chosen(steps):
        on = stacked if remedy.stacks else current.recipe
        found = remedy.candidate(on, run.situation(current))
        if found is None:
            continue
        label, candidate = found
        if on != current.recipe:
            label += " (on top of " + ", ".join(r.noun for r in REMEDIES if r.rescales and getattr(on, r.field)
                                                and not getattr(current.recipe, r.field)) + ")"
        scores = run.score(candidate)
        tried.append(RemedyStep(label, scores, run.met(scores), **remedy.changes(candidate, run.situation(current))))
        keep = run.met(scores) if remedy.whole_network else run.better(scores, current.scores)
        if not keep and remedy.whole_network and run.better(scores, rescaled[1] if rescaled else current.scores):
            rescaled = (candidate, scores)
        if keep:
            current = run.start(candidate, scores)
        stacked = candidate if remedy.rescales and not keep else current.recipe
        if run.met(current.scores):
            break
    if rescaled is None or run.met(current.scores):
        return [current]
    return [current, run.start(*rescaled)]


def _searches(run: _Run, starts: list[Start], search: str) -> list[Search]:
    """The fallback search from each start; later starts are ordered by the gains the first one measured."""
    ranker = (Evaluator(run.model, run.calib, run.data.take(run.ranking_samples), run.backend, run.batch_size,
                        executor=run.executor, task=run.task)
              if search == "measured" and not run.met(starts[0].scores) else None)
    rank_score = subset_scorer(ranker, run.target, run.bar, run.ranking_seconds) if ranker is not None else None

    def search_from(start: Start, prior: Search | None = None) -> Search:
        if ranker is None:
            return bisection_search(start.recipe, start.scores, run.target, run.reference_metric, start.report,
                                    start.base, run.score, run.evaluator)
        return measured_search(
            start.recipe, start.scores, run.target, run.reference_metric, start.report, start.base, run.score,
            rank_score, rank(start.report, start.base.quantized_nodes), ranker,
            cost=lambda nodes: fallback_cost(start.report.macs, start.base.quantized_nodes, nodes,
                                             start.recipe.fallback_precision),
            threads=_ranking_threads(run.backend),
            prior={r.node: r.gain for r in prior.ranking if r.gain is not None} if prior else None)

    first = search_from(starts[0])
    return [first] + [search_from(start, prior=first) for start in starts[1:]]


def _search_as_deployed(run: _Run, searches: list[Search], deployer: Deployment) -> tuple[dict[int, bool], int]:
    """For a CPU deployment the fallback must hold on ONNX Runtime's integer kernels too (verification runs, not
    cycles); the cheapest one that meets the target in simulation but not there is searched on as deployed and
    appended to `searches`. Returns {search index: it also meets the target as deployed} and the cycles spent."""
    deploys = {i: run.met(deployer.score(found.final_recipe)) for i, found in enumerate(searches)
               if run.met(found.after)}
    cheapest = min(deploys, key=lambda i: searches[i].cost.share_of_macs_in_higher_precision, default=None)
    if cheapest is None or deploys[cheapest]:
        return deploys, 0
    found = searches[cheapest]
    more = deployed_search(deployer, found.final_recipe, deployer.score(found.final_recipe), run.target,
                           run.reference_metric, found.report, found.base,
                           list(found.base.excluded_nodes) + found.fallback, run.data.take(run.ranking_samples),
                           run.batch_size, _ranking_threads(run.backend), run.bar, run.ranking_seconds)
    cycles = len(more.trials)
    if more.fallback and run.met(more.after):
        cycles += 1  # the simulated score of the extended fallback
        nodes = found.fallback + more.fallback
        simulated = run.score(found.recipe.with_exclude(list(found.recipe.exclude) + nodes))
        searches.append(replace(found, fallback=nodes, after=simulated, trials=found.trials + more.trials,
                                cost=fallback_cost(found.report.macs, found.base.quantized_nodes, nodes,
                                                   found.recipe.fallback_precision), strategy="deployed"))
        deploys[len(searches) - 1] = True
    return deploys, cycles


def _choose(run: _Run, searches: list[Search], deploys: dict[int, bool], given: Recipe,
            tried: list[RemedyStep]) -> Search:
    """The cheapest search result that meets the target (as deployed too, where checked); each result with a
    fallback is recorded in `tried`."""
    best = min(range(len(searches)), key=lambda i: (
        not run.met(searches[i].after), not deploys.get(i, True),
        searches[i].cost.share_of_macs_in_higher_precision, len(searches[i].fallback)))
    for i, found in enumerate(searches):
        if not found.fallback:
            continue
        extra = [r.noun for r in REMEDIES if r.field and getattr(found.recipe, r.field) and not getattr(given, r.field)]
        tried.append(RemedyStep(
            f"keep {len(found.fallback)} node(s) in {found.recipe.fallback_precision.upper()}"
            + (f" on top of {', '.join(extra)}" if extra else "")
            + f": {found.cost.share_of_macs_in_higher_precision:.1%} of the INT8-eligible MACs"
            + (" (the last nodes searched as ONNX Runtime's CPU integer kernels run them)"
               if found.strategy == "deployed" else ""),
            found.after, run.met(found.after), len(found.fallback), search=True,
            adopted=(i == best) if len(searches) > 1 else None))
    return searches[best]


def _fp16_retry(run: _Run, best: Search, steps: tuple[str, ...], tried: list[RemedyStep]) -> tuple[Recipe, Scores]:
    """With the "fp16" remedy, the found fallback in FP16 instead of FP32, kept if it still meets the target."""
    current, after, fallback = best.recipe, best.after, best.fallback
    if not fallback or "fp16" not in steps or current.fallback_precision != "fp32" or not run.met(after):
        return current, after
    half = current.with_(fallback_precision="fp16")
    scores = run.score(half.with_exclude(list(half.exclude) + fallback))
    met = run.met(scores)
    tried.append(RemedyStep(f"the same {len(fallback)} node(s) in FP16 instead of FP32 (TensorRT runs FP16 at about "
                            "twice the FP32/TF32 rate)", scores, met, len(fallback), adopted=met))
    return (half, scores) if met else (current, after)


def _kernel_check(run: _Run, deployer: Deployment, current: Recipe, fallback: list[str], after: Scores,
                  tried: list[RemedyStep], remedies: bool) -> tuple[Recipe, Scores, Scores]:
    """The final recipe as ONNX Runtime CPU deploys it; where its integer kernels lose what simulation keeps, 7-bit
    weights (deployment.kernel_remedy). Returns the recipe, its simulated and its deployed scores."""
    final = current.with_exclude(list(current.exclude) + fallback)
    deployed = deployer.score(final)
    if remedies and run.met(after) and not run.met(deployed):
        remedy = kernel_remedy(deployer, final, after, deployed, run.score, tried, run.target, run.reference_metric)
        if remedy is not None:
            return current.with_(weight_bits=7), *remedy
    return current, after, deployed


def _finish(run: _Run, d: Diagnosis, best: Search, deployer: Deployment | None, deployed: Scores | None,
            deploy: str, heldout: Any, batch_axes: dict | None) -> None:
    """What the final recipe costs, how it runs as deployed and on held-out data, and the explanation."""
    target, metric = run.target, run.reference_metric
    if target.metric is not None:
        for scores in (d.before, d.after):
            scores.metrics[f"reference_{target.metric_name}"] = metric
    final = apply(run.model, d.recipe, run.calib, progress=False)
    d.collateral = [n for n in final.kept_in_fp32 if n not in d.fallback and n in best.base.quantized_nodes]
    d.cost = fallback_cost(best.report.macs, best.base.quantized_nodes, d.fallback + d.collateral,
                           d.recipe.fallback_precision)
    d.warnings = sample_warnings(run.data, target, d.after)
    if deploy == "tensorrt":  # with a TensorRT here, the builder's answer rather than the Q/DQ layout's claim
        try:
            built = engine_cost(final.path, best.report.macs, best.base.quantized_nodes)
        except WorkbenchError as exc:
            built = None
            d.warnings.append(f"the cost is the Q/DQ layout's claim: TensorRT could not build the recipe ({exc})")
        if built is not None:
            d.cost, d.engine_check = built
    if deployer is not None:  # verification runs, counted apart from the search's cycles
        d.deployment = DeployedScore(scores=deployed, met=run.met(deployed), target=deploy, runs=deployer.runs,
                                     **deployer.describe())
        if d.met and not d.deployment.met:
            d.warnings.append(
                f"the recipe meets {target.describe()} with simulated Q/DQ (the arithmetic TensorRT runs), but ONNX "
                f"Runtime on this CPU with full graph optimizations (its integer kernels) reaches output cosine "
                f"{deployed.cosine:.4f}, SQNR {deployed.sqnr_db:.1f} dB: deploy on TensorRT, or diagnose with "
                "--deploy onnxruntime-cpu to keep the nodes those kernels need in higher precision")
            d.met = d.met and deploy != "onnxruntime-cpu"  # there, the deployed score is the verdict
    if heldout is not None:
        d.heldout = score_heldout(run.model, final, as_dataset(heldout, run.model.inputs, batch_axes,
                                                               origin="held-out data"), target, run.batch_size,
                                  simulated=run.backend, task=run.evaluator.judged)
        if d.met and not d.heldout.met:  # a recipe that misses on new data is not "met"
            d.met = False
            d.warnings.append("the recipe meets the target on the evaluation data but not on the held-out data: "
                              + "; ".join(d.heldout.misses))
    d.evaluation = run.evaluator.coupling.to_dict()
    d.task = run.evaluator.judged.to_dict() if run.evaluator.judged is not None else None
    d.misses = target.misses(d.after, metric)
    d.explanation = explain(d, target)


def _ranking_threads(backend: Backend) -> int:
    """Ranking runs at once in this process: one per core for single-threaded ONNX Runtime CPU sessions (each
    releases the GIL while it runs), else one."""
    import os

    if getattr(backend, "name", "") == "onnxruntime-cpu" and getattr(backend, "threads", 0) == 1:
        return max(1, min(4, os.cpu_count() or 1))
    return 1
