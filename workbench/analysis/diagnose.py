"""Where INT8 collapses and the smallest set of nodes to keep in higher precision to fix it.

Cheap fixes first (clean-up, placement, range estimators, per-tensor calibration overrides, rescalings, bias
correction), then the fallback search. Default search (analysis.search): every candidate node reverted alone and its
effect on the target measured on a ranking subset, greedy revert with re-ranking, then a put-back pass; budget
2⌈log2 N⌉ + 4 evaluations on the whole evaluation set, the ranking runs reported apart. The "local" search ranks by
each node's local sensitivity (quantized alone on exact FP32 inputs; one per-layer comparison pass) and takes the
shortest prefix that meets the target by bisection, then prunes with leftover budget: ⌈log2 N⌉ + 3 evaluations.
The local ranking also orders what the measured search measures and names each node's cause.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from workbench.analysis.compare import LayerReport, compare
from workbench.analysis.evaluate import Evaluator, TaskMetric, output_scores
from workbench.analysis.results import RankedNode, RemedyStep, Scores, Search, Trial
from workbench.analysis.search import DEPLOY_TARGETS, SEARCHES, measured_search
from workbench.analysis.search import search_budget as measured_budget
from workbench.core.errors import WorkbenchError
from workbench.core.metrics import SQNR_CAP_DB, is_categorical
from workbench.model.data import Dataset, as_dataset
from workbench.model.loading import ModelHandle
from workbench.precision.equalize import equalizable
from workbench.precision.recipe import Recipe
from workbench.precision.smooth import smoothable
from workbench.precision.transform import apply, cleaned
from workbench.runtime import Backend, get_backend


# A target on the mean of per-sample scores also holds every sample to a floor, so a few collapsed inputs among
# many good ones fail: by default the worst sample's cosine must reach 1 − FLOOR_FACTOR·(1 − target) (0.90 for a
# 0.99 target) and its SQNR the target minus FLOOR_SQNR_DB.
FLOOR_FACTOR = 10.0
FLOOR_SQNR_DB = 10.0


@dataclass
class Target:
    """What "fixed" means, judged per sample on every output (the worst output or channel group decides): the mean
    of per-sample cosines (or SQNRs) at least `cosine` (`sqnr_db`) and the worst sample at least the floor; or a
    task metric (higher is better) within `max_drop` of FP32's."""

    cosine: float | None = None
    sqnr_db: float | None = None
    metric: TaskMetric | None = None
    metric_name: str = "metric"
    max_drop: float = 0.01
    # A cosine target must hold for the lower bound of this bootstrap confidence interval of the mean over the
    # evaluation samples, not just for the point estimate: a search that stops at the first recipe scraping past
    # the target on few samples otherwise misses it on new data. None: the point estimate alone. The level is for
    # the whole search: diagnose tests each of its k evaluations at 1 - (1 - confidence) / k (Bonferroni), since
    # picking the first of k candidates to pass is k chances to be fooled by the evaluation set.
    confidence: float | None = 0.9
    per_evaluation_confidence: float | None = None
    floor_cosine: float | None = None  # worst sample; default from FLOOR_FACTOR
    floor_sqnr_db: float | None = None
    task: Any = None  # the analysis.tasks.Task whose metric is gated, when it is one (for the report)

    def for_search(self, evaluations: int) -> "Target":
        """This target with the confidence each of `evaluations` tests must reach (Bonferroni)."""
        if not self.confidence:
            return self
        return replace(self, per_evaluation_confidence=1.0 - (1.0 - self.confidence) / max(1, evaluations))

    def __post_init__(self) -> None:
        if self.cosine is None and self.sqnr_db is None and self.metric is None:
            self.cosine = 0.99
        if self.cosine is not None and not -1.0 <= self.cosine <= 1.0:
            raise WorkbenchError(f"target cosine must be in [-1, 1], got {self.cosine}")
        if self.cosine is not None and self.floor_cosine is None:
            self.floor_cosine = round(max(-1.0, 1.0 - FLOOR_FACTOR * (1.0 - self.cosine)), 12)
        if self.sqnr_db is not None and self.floor_sqnr_db is None:
            self.floor_sqnr_db = self.sqnr_db - FLOOR_SQNR_DB

    def describe(self) -> str:
        parts = []
        if self.cosine is not None:
            parts.append(f"per-sample cosine mean ≥ {self.cosine:g} and worst ≥ {self.floor_cosine:g} on every output")
        if self.sqnr_db is not None:
            parts.append(f"per-sample SQNR mean ≥ {self.sqnr_db:g} dB and worst ≥ {self.floor_sqnr_db:g} dB")
        if self.metric is not None:
            if self.task is not None and self.task.kind != "custom":
                parts.append(f"{self.metric_name} ≥ {1.0 - self.max_drop:g} vs FP32")
            else:
                parts.append(f"{self.metric_name} drop ≤ {self.max_drop:g}")
        return " and ".join(parts)

    def misses(self, scores: Scores, reference_metric: float | None) -> list[str]:
        """What the scores miss, in words (empty when met)."""
        out = []
        ok = lambda v, bar: v is not None and math.isfinite(v) and v >= bar  # noqa: E731  NaN never passes
        where = f" ({scores.deciding})" if scores.deciding else ""
        if self.cosine is not None:
            bound = scores.cosine if scores.cosine_lower_bound is None else scores.cosine_lower_bound
            if not ok(scores.cosine, self.cosine):
                out.append(f"per-sample cosine mean {scores.cosine:.4f}{where} < {self.cosine:g}")
            elif not ok(bound, self.cosine):
                out.append(f"the lower confidence bound of the mean cosine {bound:.4f} < {self.cosine:g}")
            worst = scores.cosine if scores.cosine_worst is None else scores.cosine_worst
            if not ok(worst, self.floor_cosine):
                sample = scores.worst_samples[0] if scores.worst_samples else None
                named = f" (sample {sample['index']}, {sample['output']})" if sample else ""
                out.append(f"worst sample cosine {worst:.4f}{named} < {self.floor_cosine:g}")
        if self.sqnr_db is not None:
            if not ok(scores.sqnr_db, self.sqnr_db):
                out.append(f"per-sample SQNR mean {scores.sqnr_db:.1f} dB < {self.sqnr_db:g} dB")
            worst = scores.sqnr_db if scores.sqnr_worst_db is None else scores.sqnr_worst_db
            if not ok(worst, self.floor_sqnr_db):
                out.append(f"worst sample SQNR {worst:.1f} dB < {self.floor_sqnr_db:g} dB")
        if self.metric is not None:
            value = scores.metrics.get(self.metric_name)
            if value is None or not math.isfinite(value) or reference_metric - value > self.max_drop + 1e-12:
                out.append(f"{self.metric_name} {value if value is None else round(value, 4)} vs FP32's "
                           f"{reference_metric:.4f} (allowed drop {self.max_drop:g})")
        return out

    def met(self, scores: Scores, reference_metric: float | None) -> bool:
        return not self.misses(scores, reference_metric)

    def ranking_key(self, scores: Scores, reference_metric: float | None = None) -> float:
        """How far the scores are past the target (positive) or short of it (negative), each part of the target in
        units of its allowed slack, the binding part first: min(parts) + 0.1·mean(parts), plus 0.01·cosine so that
        a discrete task metric on a small subset still tells candidates apart. NaN reads as far short."""
        parts = []
        if self.cosine is not None:
            worst = scores.cosine if scores.cosine_worst is None else scores.cosine_worst
            parts += [(scores.cosine - self.cosine) / max(1.0 - self.cosine, 1e-6),
                      (worst - self.floor_cosine) / max(1.0 - self.floor_cosine, 1e-6)]
        if self.sqnr_db is not None:
            worst = scores.sqnr_db if scores.sqnr_worst_db is None else scores.sqnr_worst_db
            parts += [(scores.sqnr_db - self.sqnr_db) / FLOOR_SQNR_DB, (worst - self.floor_sqnr_db) / FLOOR_SQNR_DB]
        if self.metric is not None and reference_metric is not None:
            value = scores.metrics.get(self.metric_name, math.nan)
            parts.append((value - (reference_metric - self.max_drop)) / max(self.max_drop, 1e-6))
        parts = [p if math.isfinite(p) else -1e6 for p in parts] or [0.0]
        cosine = scores.cosine if math.isfinite(scores.cosine) else -1.0
        return min(parts) + 0.1 * sum(parts) / len(parts) + 0.01 * cosine

    def better(self, a: Scores, b: Scores, reference_metric: float | None = None) -> bool:
        """Is scores `a` closer to the target than `b`: fewer of its parts missed, then the higher mean cosine (or
        SQNR, or the task metric when it is the only part)?"""
        misses_a, misses_b = len(self.misses(a, reference_metric)), len(self.misses(b, reference_metric))
        if misses_a != misses_b:
            return misses_a < misses_b
        key = "cosine" if self.cosine is not None else "sqnr_db" if self.sqnr_db is not None else self.metric_name
        return a.value(key) > b.value(key)

    def to_dict(self) -> dict:
        d = {"cosine": self.cosine, "floor_cosine": self.floor_cosine, "sqnr_db": self.sqnr_db,
             "floor_sqnr_db": self.floor_sqnr_db, "confidence": self.confidence,
             "per_evaluation_confidence": self.per_evaluation_confidence,
             "statistic": "mean of per-sample scores per output and channel group (worst output decides), every "
                          "sample at least the floor", "description": self.describe()}
        if self.metric is not None:
            d.update(metric=self.metric_name, max_drop=self.max_drop)
        if self.task is not None:
            d["task"] = self.task.to_dict()
        return d


@dataclass
class Diagnosis:
    ranking: list[RankedNode]
    fallback: list[str]
    before: Scores
    after: Scores
    evaluations: int
    budget: int
    quantized_nodes: int
    target: dict
    met: bool
    explanation: str
    recipe: Recipe
    report: LayerReport = field(repr=False)
    trials: list[Trial] = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    ranking_samples: int = 0
    causes: dict[str, str] = field(default_factory=dict)
    remedies: list[RemedyStep] = field(default_factory=list)  # every fix tried, cheapest first, with its result
    initial_ranking: list[RankedNode] = field(default_factory=list)  # ranking under the recipe as given
    heldout: dict | None = None  # the final recipe scored on held-out data by plain ONNX Runtime
    warnings: list[str] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)  # ops left in float beside the fallback nodes
    deployment: dict | None = None  # the final recipe on the evaluation data, run as ONNX Runtime CPU deploys it
    cycle_seconds: list[float] = field(default_factory=list)  # wall time of each search cycle (quantize + evaluate)
    evaluation: dict = field(default_factory=dict)  # batched, or one sample at a time (batch-coupled model)
    task: dict | None = None  # the task scored (chosen from the output layout, or given)
    misses: list[str] = field(default_factory=list)  # what the final recipe misses on the evaluation data
    ranking_runs: int = 0  # the measured search's runs on the ranking subset (apart from `evaluations`)
    ranking_seconds: float = 0.0  # their wall time together

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
            "target": self.target, "met": self.met, "explanation": self.explanation,
            "recipe": self.recipe.to_dict(), "first_divergence": self.report.first_divergence,
            "trials": [t.to_dict() for t in self.trials], "cost": self.cost, "ranking_samples": self.ranking_samples,
            "causes": self.causes, "remedies": [r.to_dict() for r in self.remedies],
            "initial_ranking": [r.to_dict() for r in self.initial_ranking[:20]],
            "heldout": self.heldout, "warnings": self.warnings, "also_in_higher_precision": self.collateral,
            "deployment": self.deployment, "cycle_seconds": self.cycle_seconds,
            "recipe_cli_args": self.recipe.to_cli_args(), "recipe_python": self.recipe.to_python(),
            "evaluation": self.evaluation, "task": self.task, "misses": self.misses,
            "ranking_runs": self.ranking_runs, "ranking_seconds": self.ranking_seconds,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _scores(evaluator: Evaluator, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            target: Target) -> Scores:
    """The verdict of the outputs against `reference` (per sample, per output; the evaluator's task metrics), and
    for a cosine target with a confidence level the bootstrap lower bound of the mean per-sample cosine."""
    from workbench.analysis.evaluate import verdict

    scores = verdict(outputs, reference, len(evaluator.data), evaluator.groups, evaluator.judged, evaluator.data)
    if target.cosine is not None and target.confidence:
        level = target.per_evaluation_confidence or target.confidence
        scores.cosine_lower_bound = cosine_lower_bound(scores, level)
    if target.metric is not None and target.metric_name not in scores.metrics:
        scores.metrics[target.metric_name] = float(target.metric(outputs, reference, evaluator.data))
    return scores


def cosine_lower_bound(scores: Scores, confidence: float, resamples: int = 2000) -> float | None:
    """Lower bound (one-sided, `confidence`) of the worst output's mean per-sample cosine under resampling of the
    samples with replacement (bootstrap); None with fewer than two samples."""
    rng = np.random.default_rng(0)
    worst = None
    for stats in scores.outputs:
        cos = stats.per_sample_cosine
        if stats.integer or cos is None or len(cos) < 2:
            continue
        n = len(cos)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
        bound = float(np.quantile(weights @ cos / n, 1.0 - confidence))
        worst = bound if worst is None else min(worst, bound)
    return worst


def rank(report: LayerReport, quantized: list[str]) -> list[RankedNode]:
    """Quantized nodes, most harmful first: score = relative noise power the node causes on its own (falling back
    to the noise it adds along the graph when no local measurement exists)."""
    table = report.layers
    rows = []
    for node in quantized:
        hits = table[table["node"] == node]
        local = report.local_sqnr.get(node)
        if local is None and hits.empty:
            continue
        score = 10 ** (-local / 10) if local is not None else float(hits.iloc[0]["added_noise"])
        info = report.node_info.get(node, {})
        rows.append(RankedNode(node, float(score), info.get("op_type"), info.get("module"), local,
                               float(hits.iloc[0]["sqnr_db"]) if not hits.empty else None))
    rows.sort(key=lambda r: -r.score)
    return rows


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
    entropy/percentile), each kept when it improves the score; then activation equalization (workbench.precision.equalize), activation smoothing
    (workbench.precision.smooth) and bias correction (workbench.precision.biascorrect), kept only when they meet the
    target, each tried on top of the rescalings before it that did not. The node fallback search then runs on the
    best recipe so far (and from the best rescaling that improved the score without meeting it, keeping the cheaper
    fallback); with "fp16" a fallback it finds is retried in FP16 and kept there if it still meets the target. The
    ranking pass (every tensor marked, local sensitivity) uses the first `ranking_samples` samples; every
    evaluation runs on all of `data`.

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
    from workbench.core.progress import Steps

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
    calib = as_dataset(calib, model.inputs, batch_axes, origin="calibration data")
    data = as_dataset(data, model.inputs, batch_axes, origin="evaluation data")
    backend = backend or get_backend()
    bar = Steps(None, "diagnosing", "cycle", progress)
    evaluator = Evaluator(model, calib, data, backend, batch_size, executor=executor, task=task)
    target = task_target(target or Target(), evaluator.judged, task_min, max_drop)
    reference = evaluator.reference
    reference_metric = float(target.metric(reference, reference, data)) if target.metric is not None else None

    cycle_seconds: list[float] = []
    ranking_seconds: list[float] = []  # the measured search's runs on the ranking subset

    def scorer(outputs: dict, ref: dict) -> Scores:
        return _scores(evaluator, outputs, ref, target)  # `target` as the search sets it (Bonferroni level)

    def score(r: Recipe) -> dict:
        """One quantize + evaluate cycle of the search."""
        scores = evaluator.score(r, scorer)
        cycle_seconds.append(scores.seconds)
        bar.update()
        return scores

    base = apply(model, recipe, calib, progress=progress)
    if not base.quantized_nodes:
        why = "; ".join(f"{n}: {r}" for n, r in base.kept_in_fp32.items())
        raise WorkbenchError("no node is quantized by this recipe: nothing to diagnose" + (f" ({why})" if why else ""))
    budget_of = measured_budget if search == "measured" else search_budget
    passes = 2 if deploy == "onnxruntime-cpu" else 1  # a CPU deployment may search again, as deployed
    # The confidence level is split over every evaluation the searches may run (the deployed one's too).
    target = target.for_search(budget_of(len(base.quantized_nodes)) * passes)
    before = score(recipe)
    tried = [RemedyStep(f"as given ({recipe.label})", before, target.met(before, reference_metric))]
    current, current_scores = recipe, before
    report = compare(base, data.take(ranking_samples), backend, framework=False, progress=False)
    initial_ranking = rank(report, base.quantized_nodes)
    initial_causes = {r.node: cause(r.node, model, report, base) for r in initial_ranking[:3]}
    rescaled = None  # the best rescaling (or bias correction) not adopted: the fallback search also starts there
    if steps and not target.met(current_scores, reference_metric):
        evaluator.submit(_remedy_candidates(steps, model, current, report, base))  # run ahead where workers idle
        stacked = current  # smoothing and bias correction stack on rescalings that did not meet the target alone
        for step in [s for s in REMEDY_STEPS if s in steps and s != "fp16"]:
            on = stacked if step in ("smooth", "bias") else current
            step_remedy = _remedy_step(step, model, on, report, base)
            if step_remedy is None:
                continue
            label, candidate = step_remedy
            if on != current:
                label += " (on top of " + ", ".join(_RESCALING[k] for k in _RESCALING if getattr(on, k)
                                                    and not getattr(current, k)) + ")"
            scores = score(candidate)
            tried.append(RemedyStep(label, scores, target.met(scores, reference_metric),
                                    **_rescaling_cost(step, model, candidate, calib)))
            # Rescalings and bias correction move the noise of every layer: adopted outright only when they meet
            # the target (a partial gain spread over the network can need a larger fallback: MobileNetV2 equalized
            # once needed 25 nodes and 66 % of the MACs instead of 19 and 43 %); the best one that improved the
            # score becomes a second start for the fallback search below.
            keep = target.met(scores, reference_metric) if step in _RESCALING.keys() | {"bias"} else target.better(
                scores, current_scores, reference_metric)
            if not keep and step in _RESCALING.keys() | {"bias"} and target.better(
                    scores, rescaled[1] if rescaled else current_scores, reference_metric):
                rescaled = (candidate, scores)
            if keep:
                current, current_scores = candidate, scores
                base = apply(model, current, calib, progress=False)
                report = compare(base, data.take(ranking_samples), backend, framework=False, progress=False)
            stacked = candidate if step in _RESCALING and not keep else current
            if target.met(current_scores, reference_metric):
                break
    starts = [(current, current_scores, report, base)]
    if rescaled is not None and not target.met(current_scores, reference_metric):
        # A rescaling that improved the score without meeting the target may still need a smaller fallback (the
        # PP-OCR detector, smoothed) or a larger one (MobileNetV2, equalized): search from both, keep the cheaper.
        alt_base = apply(model, rescaled[0], calib, progress=False)
        starts.append((*rescaled, compare(alt_base, data.take(ranking_samples), backend, framework=False,
                                          progress=False), alt_base))
    ranker = Evaluator(model, calib, data.take(ranking_samples), backend, batch_size, executor=executor,
                       task=task) if search == "measured" and not target.met(current_scores, reference_metric) else None

    rank_score = _subset_scorer(ranker, target, bar, ranking_seconds) if ranker is not None else None

    def search_from(start: Recipe, start_scores: Scores, start_report: LayerReport, start_base,
                    prior: Search | None = None) -> Search:
        if ranker is None:
            return _fallback_search(start, start_scores, target, reference_metric, start_report, start_base, score,
                                    evaluator)
        return measured_search(
            start, start_scores, target, reference_metric, start_report, start_base, score, rank_score,
            rank(start_report, start_base.quantized_nodes), ranker,
            cost=lambda nodes: _cost(start_report, start_base.quantized_nodes, nodes, start.fallback_precision),
            threads=_ranking_threads(backend),
            prior={r.node: r.gain for r in prior.ranking if r.gain is not None} if prior else None)

    searches = [search_from(*starts[0])]
    searches += [search_from(*start, prior=searches[0]) for start in starts[1:]]  # ordered by the first's gains
    deployer = _deployment(evaluator, scorer) if deployment_check or deploy == "onnxruntime-cpu" else None
    deployed_cycles = 0
    deploys: dict[int, bool] = {}  # search index → its final recipe also meets the target as deployed
    if deployer is not None and deploy == "onnxruntime-cpu":
        # For a CPU deployment the fallback must hold on ONNX Runtime's integer kernels too (verification runs, not
        # cycles); the cheapest one that meets the target in simulation but not there is searched on as deployed.
        for i, found in enumerate(searches):
            if target.met(found.after, reference_metric):
                deploys[i] = target.met(deployer.score(found.final_recipe), reference_metric)
        cheapest = min(deploys, key=lambda i: searches[i].cost["share_of_macs_in_higher_precision"], default=None)
        if cheapest is not None and not deploys[cheapest]:
            found = searches[cheapest]
            more = _deployed_search(deployer, found.final_recipe, deployer.score(found.final_recipe), target,
                                    reference_metric, found.report, found.base,
                                    list(found.base.excluded_nodes) + found.fallback, data.take(ranking_samples),
                                    batch_size, _ranking_threads(backend), bar, ranking_seconds)
            deployed_cycles = len(more.trials)
            if more.fallback and target.met(more.after, reference_metric):
                deployed_cycles += 1  # the simulated score of the extended fallback
                nodes = found.fallback + more.fallback
                simulated = score(found.recipe.with_exclude(list(found.recipe.exclude) + nodes))
                searches.append(replace(found, fallback=nodes, after=simulated, trials=found.trials + more.trials,
                                        cost=_cost(found.report, found.base.quantized_nodes, nodes,
                                                   found.recipe.fallback_precision), strategy="deployed"))
                deploys[len(searches) - 1] = True
    best = min(range(len(searches)), key=lambda i: (
        not target.met(searches[i].after, reference_metric), not deploys.get(i, True),
        searches[i].cost["share_of_macs_in_higher_precision"], len(searches[i].fallback)))
    for i, found in enumerate(searches):
        if found.fallback:
            extra = [_RESCALING.get(k, "bias correction") for k in ("equalize", "smooth", "bias_correction")
                     if getattr(found.recipe, k) and not getattr(recipe, k)]
            tried.append(RemedyStep(
                f"keep {len(found.fallback)} node(s) in {found.recipe.fallback_precision.upper()}"
                + (f" on top of {', '.join(extra)}" if extra else "")
                + f": {found.cost['share_of_macs_in_higher_precision']:.1%} of the INT8-eligible MACs"
                + (" (the last nodes searched as ONNX Runtime's CPU integer kernels run them)"
                   if found.strategy == "deployed" else ""),
                found.after, target.met(found.after, reference_metric), len(found.fallback), search=True,
                adopted=(i == best) if len(searches) > 1 else None))
    chosen = searches[best]
    current, report, base = chosen.recipe, chosen.report, chosen.base
    fallback, after = chosen.fallback, chosen.after
    if fallback:
        if "fp16" in steps and current.fallback_precision == "fp32" and target.met(after, reference_metric):
            half = current.with_(fallback_precision="fp16")
            scores = score(half.with_exclude(list(half.exclude) + fallback))
            met = target.met(scores, reference_metric)
            tried.append(RemedyStep(f"the same {len(fallback)} node(s) in FP16 instead of FP32 (TensorRT runs FP16 "
                                    "at about twice the FP32/TF32 rate)", scores, met, len(fallback), adopted=met))
            if met:
                current, after = half, scores
    deployed = None
    if deployer is not None:
        final_recipe = current.with_exclude(list(current.exclude) + fallback)
        deployed = deployer.score(final_recipe)
        if remedies and target.met(after, reference_metric) and not target.met(deployed, reference_metric):
            remedy = _kernel_remedy(deployer, final_recipe, after, deployed, score, tried, target, reference_metric)
            if remedy is not None:
                current, after, deployed = current.with_(weight_bits=7), *remedy
    bar.close()
    evaluator.cancel()  # probes submitted ahead that the search did not need
    if target.metric is not None:
        for scores in (before, after):
            scores.metrics[f"reference_{target.metric_name}"] = reference_metric
    ranking = chosen.ranking
    causes = {**initial_causes, **{r.node: cause(r.node, model, report, base) for r in ranking[:3] + [
        r for r in ranking if r.node in fallback][:8]}}
    diagnosis = Diagnosis(
        ranking=ranking, fallback=fallback, before=before, after=after,
        evaluations=len(tried) - sum(1 for r in tried if r.search) + deployed_cycles
        + sum(len(f.trials) for f in searches if f.strategy != "deployed"),
        budget=sum(f.budget for f in searches if f.strategy != "deployed") * passes,
        ranking_runs=len(ranking_seconds),
        ranking_seconds=round(sum(ranking_seconds), 3),
        quantized_nodes=len(base.quantized_nodes), target=target.to_dict(),
        met=target.met(after, reference_metric), explanation="",
        recipe=current.with_exclude(list(current.exclude) + fallback), report=report, trials=chosen.trials,
        cost={}, ranking_samples=report.samples, causes=causes,
        remedies=tried, initial_ranking=initial_ranking, cycle_seconds=cycle_seconds,
    )
    final = apply(model, diagnosis.recipe, calib, progress=False)
    diagnosis.collateral = [n for n in final.kept_in_fp32 if n not in fallback and n in base.quantized_nodes]
    diagnosis.cost = _cost(report, base.quantized_nodes, fallback + diagnosis.collateral,
                           diagnosis.recipe.fallback_precision)
    diagnosis.warnings = _sample_warnings(data, target, after)
    if deployer is not None:  # verification runs, counted apart from the search's cycles
        diagnosis.deployment = {**deployer.describe(), **deployed.to_dict(), "target": deploy,
                                "met": target.met(deployed, reference_metric), "runs": deployer.runs}
        if diagnosis.met and not diagnosis.deployment["met"]:
            diagnosis.warnings.append(
                f"the recipe meets {target.describe()} with simulated Q/DQ (the arithmetic TensorRT runs), but ONNX "
                f"Runtime on this CPU with full graph optimizations (its integer kernels) reaches output cosine "
                f"{deployed.cosine:.4f}, SQNR {deployed.sqnr_db:.1f} dB: deploy on TensorRT, or diagnose with "
                "--deploy onnxruntime-cpu to keep the nodes those kernels need in higher precision")
            if deploy == "onnxruntime-cpu":  # there, the deployed score is the verdict
                diagnosis.met = False
    if heldout is not None:
        diagnosis.heldout = score_heldout(model, final, as_dataset(heldout, model.inputs, batch_axes,
                                                                   origin="held-out data"), target, batch_size,
                                          simulated=backend, task=evaluator.judged)
        if diagnosis.met and not diagnosis.heldout["met"]:  # a recipe that misses on new data is not "met"
            diagnosis.met = False
            diagnosis.warnings.append("the recipe meets the target on the evaluation data but not on the held-out "
                                      "data: " + "; ".join(diagnosis.heldout["misses"]))
    diagnosis.evaluation = evaluator.coupling.to_dict()
    diagnosis.task = evaluator.judged.to_dict() if evaluator.judged is not None else None
    diagnosis.misses = target.misses(after, reference_metric)
    diagnosis.explanation = explain(diagnosis, target)
    return diagnosis


def _ranking_threads(backend: Backend) -> int:
    """Ranking runs at once in this process: one per core for single-threaded ONNX Runtime CPU sessions (each
    releases the GIL while it runs), else one."""
    import os

    if getattr(backend, "name", "") == "onnxruntime-cpu" and getattr(backend, "threads", 0) == 1:
        return max(1, min(4, os.cpu_count() or 1))
    return 1


def _sample_warnings(data: Dataset, target: Target, after: Scores) -> list[str]:
    """Too few samples make an output cosine near the target a coin toss: say so."""
    out = []
    if len(data) < 32:
        out.append(f"the evaluation set has only {len(data)} sample(s): a diagnosis reaching {target.describe()} on "
                   "it may miss on other data; use 32 or more and check the held-out score")
    bound = after.cosine_lower_bound
    if target.cosine is not None and bound is not None and bound < target.cosine <= after.cosine:
        out.append(f"output cosine {after.cosine:.4f} meets {target.cosine:g} on these {len(data)} samples, but "
                   f"its {target.per_evaluation_confidence or target.confidence or 0.9:.1%} lower bound is "
                   f"{bound:.4f}: more evaluation samples are "
                   "needed to claim the target")
    return out


def task_target(target: Target, task, task_min: float | None = None, max_drop: float | None = None) -> Target:
    """The target with the task's primary metric gated too, when the target names no metric of its own: a
    built-in task's at `task_min` (default its own floor; FP32 against itself scores 1 on every such metric), a
    user metric within `max_drop` of FP32's."""
    if task is None or target.metric is not None:
        return target
    if task.kind == "custom":
        return replace(target, metric=task.metric, metric_name=task.primary, task=task,
                       max_drop=target.max_drop if max_drop is None else max_drop)
    floor = task.default_min if task_min is None else task_min
    return replace(target, metric=task.metric, metric_name=task.primary, max_drop=round(1.0 - floor, 12), task=task)


def score_heldout(model: ModelHandle, final, heldout: Dataset, target: Target, batch_size: int = 32,
                  simulated: Backend | None = None, task: Any = "auto") -> dict:
    """The final recipe against FP32 on held-out data with plain ONNX Runtime (its default, full graph
    optimizations: what a deployment runs), not the unoptimized graph the search used, scored with the search's
    statistics (per sample, per output, the task) and evaluated as deployed (one sample at a time when the model
    is batch-coupled); with `simulated`, also the simulated Q/DQ score (the search's own arithmetic), which tells a
    data shift from a kernel effect. `misses` says in words what the held-out data misses."""
    point = replace(target, confidence=None, per_evaluation_confidence=None)

    def scored(backend: Backend) -> tuple[Scores, list[str], Evaluator]:
        evaluator = Evaluator(model, None, heldout, backend, batch_size, task=task)
        reference = evaluator.reference
        scores = _scores(evaluator, evaluator.run(final), reference, point)
        metric = float(target.metric(reference, reference, heldout)) if target.metric is not None else None
        return scores, point.misses(scores, metric), evaluator

    scores, misses, evaluator = scored(get_backend("onnxruntime-cpu", optimization="all"))
    out = {"samples": len(heldout), "graph_optimization": "all", "evaluation": evaluator.coupling.describe(),
           **scores.to_dict(), "met": not misses, "misses": misses}
    if simulated is not None:
        out["simulated"] = {**scored(simulated)[0].to_dict(outputs=False),
                            "graph_optimization": getattr(simulated, "optimization", None)}
    return out


# A deployed score this far (dB of output SQNR) below the simulated one is a kernel effect worth a remedy.
KERNEL_LOSS_DB = 1.0


@dataclass
class _Deployment:
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


def _deployment(search: Evaluator, scorer) -> _Deployment | None:
    """The deployment scorer, for the ONNX Runtime CPU backend when the search runs an unoptimized graph: the
    search's data and scoring on the deployed backend, against that backend's own FP32 reference."""
    backend = search.backend
    if getattr(backend, "name", "") != "onnxruntime-cpu" or getattr(backend, "optimization", "all") == "all":
        return None
    deployed = get_backend("onnxruntime-cpu", optimization="all", threads=backend.threads)
    return _Deployment(Evaluator(search.model, search.calib, search.data, deployed, search.batch_size,
                                 task=search.judged), scorer)


def _kernel_remedy(deploy: _Deployment, recipe: Recipe, simulated: Scores, deployed: Scores, score,
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


def _subset_scorer(ranker: Evaluator, target: Target, bar, seconds: list[float]) -> Callable[[Recipe], Scores]:
    """One quantize + evaluate cycle on the ranking subset (a measured search's candidates), its wall time appended
    to `seconds`."""

    def score(r: Recipe) -> Scores:
        scores = ranker.score(r, lambda outputs, ref: _scores(ranker, outputs, ref, target))
        seconds.append(scores.seconds)
        bar.update()
        return scores

    return score


def _deployed_search(deployer: _Deployment, recipe: Recipe, deployed: Scores, target: Target,
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
                           _subset_scorer(ranker, target, bar, ranking_seconds), rank(report, left), ranker,
                           threads=threads,
                           cost=lambda nodes: _cost(report, base.quantized_nodes, excluded + nodes,
                                                    recipe.fallback_precision))


def search_budget(nodes: int) -> int:
    """Evaluations the fallback search may spend on N quantized nodes, counting the starting recipe's."""
    return math.ceil(math.log2(max(nodes, 2))) + 3


def _fallback_search(recipe: Recipe, start_scores: Scores, target: Target, reference_metric: float | None,
                     report: LayerReport, base, score, evaluator: Evaluator | None = None) -> Search:
    """Shortest prefix of the ranking that meets the target (bisection), then pruning with leftover budget;
    `score` is diagnose's quantize + evaluate cycle. With a parallel `evaluator`, probes the search may need next
    are submitted ahead (the search reads them in its own order, so its result does not change)."""
    ranking = rank(report, base.quantized_nodes)
    order = [r.node for r in ranking]
    budget = search_budget(len(order))
    trials: list[Trial] = []
    results: dict[tuple[str, ...], Scores] = {(): start_scores}
    width = evaluator.executor.workers if evaluator is not None and evaluator.parallel else 0

    def ahead(candidates: list[list[str]]) -> None:
        if width:
            evaluator.submit([recipe.with_exclude(list(recipe.exclude) + c) for c in candidates
                              if tuple(c) not in results][:width])

    def evaluate(nodes: list[str]) -> bool:
        key = tuple(nodes)
        if key not in results:
            results[key] = score(recipe.with_exclude(list(recipe.exclude) + nodes))
            trials.append(Trial(nodes, results[key], target.met(results[key], reference_metric)))
        return target.met(results[key], reference_metric)

    fallback: list[str] = []
    if not target.met(start_scores, reference_metric) and order:
        ahead([order[:1], order])
        if evaluate(order[:1]):
            fallback = order[:1]
        elif not evaluate(order):
            fallback = order
        else:
            lo, hi = 1, len(order)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                ahead([order[:m] for m in _bisection_probes(lo, hi, width)])
                lo, hi = (lo, mid) if evaluate(order[:mid]) else (mid, hi)
            fallback = order[:hi]
        removals = list(reversed(fallback))
        for k, node in enumerate(removals):
            if len(trials) + 1 >= budget or len(fallback) <= 1:
                break
            ahead([[x for x in fallback if x != n] for n in removals[k:k + width] if n in fallback])
            trial = [x for x in fallback if x != node]
            if evaluate(trial):
                fallback = trial
    return Search(ranking, fallback, results[tuple(fallback)], trials, budget, recipe, report, base,
                  _cost(report, base.quantized_nodes, fallback, recipe.fallback_precision), strategy="local")


def _bisection_probes(lo: int, hi: int, width: int) -> list[int]:
    """The next `width` prefix lengths a bisection over (lo, hi] may probe, breadth first: its midpoint, then the
    midpoints of both halves (one of which it will need next), and so on."""
    probes, queue = [], [(lo, hi)]
    while queue and len(probes) < width:
        a, b = queue.pop(0)
        if b - a > 1:
            m = (a + b) // 2
            probes.append(m)
            queue += [(a, m), (m, b)]
    return probes


def _remedy_candidates(steps: tuple[str, ...], model: ModelHandle, current: Recipe, report: LayerReport,
                       base) -> list[Recipe]:
    """The candidates the remedy steps would try if none were kept (what parallel workers can evaluate ahead)."""
    candidates, stacked = [], current
    for step in [s for s in REMEDY_STEPS if s in steps and s != "fp16"]:
        found = _remedy_step(step, model, stacked if step in ("smooth", "bias") else current, report, base)
        if found is not None:
            candidates.append(found[1])
            stacked = found[1] if step in _RESCALING else stacked
    return candidates


# Remedies in the order diagnose tries them; "fp16" retries a found fallback in FP16 instead of FP32. The FP16
# retry is opt-in (remedies=REMEDY_STEPS): on MobileNetV2 it met the target on the evaluation data and missed it on
# held-out data by 0.0006, and next to a DequantizeLinear its Cast leaves a Q/DQ pair TensorRT cannot fuse.
REMEDY_STEPS = ("cleanup", "placement", "mean-minmax", "mse", "overrides", "equalize", "smooth", "bias", "fp16")
DEFAULT_REMEDIES = REMEDY_STEPS[:-1]


_RESCALING = {"equalize": "equalization", "smooth": "smoothing"}  # recipe field → remedy name
# Range estimators tried in place of MinMax (precision.calibration), each kept when it improves the score.
ESTIMATORS = {"mean-minmax": "ranges from the mean of per-sample min/max (one outlier sample no longer sets a "
                             "tensor's range)",
              "mse": "ranges of least INT8 error per tensor (rounding plus clipping, from each tensor's histogram)"}


def _rescaling_cost(step: str, model: ModelHandle, candidate: Recipe, calib: Dataset) -> dict:
    """What an equalization or smoothing candidate changed (from its cached transform): tensors rescaled, and the
    pointwise Mul nodes smoothing added where no producer could absorb the scale."""
    if step not in _RESCALING:
        return {}
    done = apply(model, candidate, calib, progress=False)
    if step == "equalize":
        return {"rescaled_tensors": sum(len(g["tensors"]) for g in done.equalized)}
    return {"rescaled_tensors": len(done.smoothed), "added_mul_nodes": sum(1 for t in done.smoothed if t["mul"])}


def _remedy_step(step: str, model: ModelHandle, current: Recipe, report: LayerReport, base) -> tuple | None:
    """(label, candidate recipe) for one remedy, built on the best recipe so far, or None when it does not apply.
    Calibration overrides come before equalization: where per-tensor ranges suffice they change the least, and
    overrides chosen on an equalized graph can miss what they would have fixed on the original one."""
    if step == "cleanup" and not current.cleanup:
        return ("clean up the graph as TensorRT would (fold constants; BatchNorm into its Conv/Gemm)",
                current.with_(cleanup=True, overrides=()))  # overrides name the previous graph's tensors
    if step == "placement" and current.placement != "tensorrt":
        return ("Q/DQ placement 'tensorrt' (inputs of Conv/Gemm/MatMul only)",
                current.with_(placement="tensorrt", overrides=()))
    if step in ESTIMATORS and current.calibration in ("minmax", "mean-minmax") and current.calibration != step:
        return (ESTIMATORS[step], current.with_(calibration=step))
    if step == "overrides":
        overrides = calibration_overrides(model, report, base, current)
        if overrides:
            return ("calibration override " + ", ".join(overrides),
                    current.with_(overrides=tuple(current.overrides) + tuple(overrides)))
    if step == "equalize" and not current.equalize:
        groups = equalizable((cleaned(model)[0] if current.cleanup else model).proto)
        if groups:
            return (f"equalize activation channels: {groups} group(s) of tensors rescaled into their Convs' weights "
                    "(cross-layer equalization; FP32 outputs unchanged)", current.with_(equalize=True))
    if step == "smooth" and not current.smooth:
        tensors = smoothable((cleaned(model)[0] if current.cleanup else model).proto)
        if tensors:
            return (f"smooth activation outliers into the reading layers' weights (SmoothQuant, strength per tensor; "
                    f"{tensors} candidate tensor(s); FP32 outputs unchanged)", current.with_(smooth=True))
    if step == "bias" and not current.bias_correction:
        return ("bias correction: each quantized Conv/Gemm's mean output shift added back to its bias",
                current.with_(bias_correction=True))
    return None


def calibration_overrides(model: ModelHandle, report: LayerReport, base, recipe: Recipe, top: int = 8) -> list[str]:
    """Per-tensor calibration fixes for the quantized inputs of the most harmful nodes: a clipped tensor gets its
    full range back (minmax); a coarse one (range set by rare large values) gets entropy calibration, which
    trades the tail for resolution (percentile 99.99 when entropy is already the method)."""
    out: dict[str, str] = {}
    for row in rank(report, base.quantized_nodes)[:top]:
        for tensor, kind, _ in tensor_issues(row.node, model, report, base):
            if kind == "clipped" and recipe.calibration != "minmax":
                out.setdefault(tensor, f"{tensor}=minmax")
            elif kind == "coarse":
                out.setdefault(tensor, f"{tensor}=entropy" if recipe.calibration != "entropy"
                               else f"{tensor}=percentile:99.99")
    return [o for o in out.values() if o not in recipe.overrides]


# MACs of a layer in each precision, in INT8-MAC units: the dense tensor-core peak of an H100 SXM (INT8 1,979 TOPS,
# FP16 989 TFLOPS, TF32 495 TFLOPS; TensorRT runs FP32 layers as TF32 unless told not to). An estimate, not a timing.
MAC_COST = {"int8": 1.0, "fp16": 2.0, "fp32": 4.0}


def _cost(report: LayerReport, quantized: list[str], fallback: list[str], precision: str = "fp32") -> dict:
    """What the fallback costs: nodes and MACs left out of INT8, and the MAC-weighted compute against all-INT8."""
    total = sum(report.macs.get(n, 0) for n in quantized)
    kept = sum(report.macs.get(n, 0) for n in fallback)
    weighted = (total - kept) * MAC_COST["int8"] + kept * MAC_COST[precision]
    return {"nodes_in_higher_precision": len(fallback), "nodes_still_int8": len(quantized) - len(fallback),
            "higher_precision": precision,
            "macs_per_sample_int8_eligible": total, "macs_per_sample_in_higher_precision": kept,
            "share_of_macs_in_higher_precision": kept / total if total else 0.0,
            "compute_vs_all_int8": weighted / total if total else 1.0}


def tensor_issues(node_name: str, model: ModelHandle, report: LayerReport, base) -> list[tuple[str, str, str]]:
    """(tensor, kind, explanation) for each quantized tensor around a node, from the data: its calibrated range,
    INT8 step (range / 127), observed max, typical magnitude (RMS) and per-channel RMS.
    kind: "mask", "clipped", "outlier-channels", "coarse" or "ok"."""
    from workbench.precision.calibration import load_ranges

    if base.calibration is None:
        return []
    ranges = load_ranges(base.ranges_path or base.calibration.path)
    rows = report.layers.set_index("tensor")
    node = next((n for n in model.proto.graph.node if n.name == node_name), None)
    if node is None:
        return []
    out = []
    for tensor in dict.fromkeys([*node.input, *node.output]):
        if tensor not in ranges or tensor not in rows.index or not bool(rows.loc[tensor, "quantized"]):
            continue
        amax = max(abs(ranges[tensor][0]), abs(ranges[tensor][1]))
        step, rms = amax / 127.0, float(rows.loc[tensor, "rms"])
        if not math.isfinite(rms) or rms <= 0:
            continue
        if amax >= 1e30:
            out.append((tensor, "mask", f"'{tensor}' is calibrated to ±{amax:.1e} (it carries an additive mask of "
                        f"±FLT_MAX), so one INT8 step is {step:.1e} and every real value rounds to zero"))
            continue
        observed = report.amax.get(tensor, 0.0)
        if observed > 1.5 * amax:
            out.append((tensor, "clipped", f"'{tensor}' reaches ±{observed:.3g} but calibration set its range to "
                        f"±{amax:.3g}: the larger values are clipped"))
            continue
        channels = report.channel_rms.get(tensor)
        if channels is not None and len(channels) > 1:
            below = int((channels < step).sum())
            median = float(np.median(channels))
            if below and channels.max() > 8 * median:
                out.append((tensor, "outlier-channels", f"'{tensor}' spans ±{amax:.3g} because a few channels are "
                            f"outliers (largest channel RMS {channels.max():.3g}, median {median:.3g}); with one "
                            f"INT8 step of {step:.3g} for the whole tensor, {below} of {len(channels)} channels sit "
                            "below one step"))
                continue
        if step >= 0.5 * rms:
            out.append((tensor, "coarse", f"'{tensor}' spans ±{amax:.3g} but its typical magnitude is {rms:.3g}: "
                        f"one INT8 step ({step:.3g}) is {step / rms:.0%} of it, so most values round to a few levels"))
        else:
            out.append((tensor, "coarse" if rms / step < 8 else "ok",
                        f"'{tensor}' spans ±{amax:.3g} with typical magnitude {rms:.3g} (INT8 step {step:.3g}, "
                        f"{rms / step:.0f} steps per typical value)"))
    return out


def cause(node_name: str, model: ModelHandle, report: LayerReport, base) -> str:
    """Why quantizing this node hurts, in words (see tensor_issues)."""
    return "; ".join(text for _, _, text in tensor_issues(node_name, model, report, base))


def _worst(scores: Scores) -> str:
    if scores.cosine_worst is None:
        return "n/a"
    sample = scores.worst_samples[0] if scores.worst_samples else None
    return f"{scores.cosine_worst:.4f}" + (f", #{sample['index']}" if sample else "")


def _name(row: RankedNode) -> str:
    module = f", module {row.module}" if row.module else ""
    return f"{row.node} ({row.op_type}{module})"


def explain(d: Diagnosis, target: Target) -> str:
    """The diagnosis in plain words: which node, which module, how bad, and what the fix costs."""
    b, a = d.before, d.after
    metric = f", {target.metric_name} {b.metrics[target.metric_name]:.4f}" if target.metric is not None else ""
    mode = ("Evaluated " + d.evaluation["evaluation"] + ". ") if d.evaluation.get("coupled") else ""
    if not d.fallback and d.met and len(d.remedies) <= 1:
        return (f"{mode}INT8 is healthy on this data: per-sample cosine mean {b.cosine:.4f} (worst sample "
                f"{_worst(b)}), SQNR {b.sqnr_db:.1f} dB{metric} meets the target ({target.describe()}). No node needs "
                "to stay in higher precision.")
    culprits = [r for r in d.ranking if r.node in d.fallback] or d.initial_ranking[:1] or d.ranking[:1]
    top = culprits[0]
    local = top.local_sqnr_db
    if local is None:
        lines = [f"The most harmful quantized node is {_name(top)}."]
    else:
        verb = "INT8 accuracy collapses at" if local < d.report.threshold_db else "The most harmful quantized node is"
        effect = ("its output is destroyed (Inf/NaN or no signal left)" if local <= -SQNR_CAP_DB + 1 else
                  f"its output keeps {local:.1f} dB SQNR ({min(1.0, top.score):.2%} relative noise power)")
        lines = [f"{verb} {_name(top)}: quantized on its own, with exact FP32 inputs, {effect}."]
    if top.reverted_cosine is not None and top.gain is not None and top.gain > 0:
        lines.append(f"Reverted alone, it lifts the per-sample cosine mean on the {d.ranking_samples}-sample ranking "
                     f"subset to {top.reverted_cosine:.4f}.")
    if mode:
        lines.insert(0, mode.strip())
    if b.deciding:
        lines.append(f"As given, the worst output is '{b.deciding}' (per-sample cosine mean {b.cosine:.4f}, worst "
                     f"sample {_worst(b)}; pooled over all samples {b.pooled_cosine:.4f}).")
    if d.causes.get(top.node):
        lines.append(f"Why: {d.causes[top.node]}.")
    if d.report.first_divergence:
        lines.append(f"The first tensor below {d.report.threshold_db:g} dB along the graph is "
                     f"'{d.report.first_divergence}'.")
    others = [r for r in culprits[1:] if r.local_sqnr_db is not None]
    if others:
        lines.append("Also harmful: " + "; ".join(f"{_name(r)} at {max(r.local_sqnr_db, -SQNR_CAP_DB):.1f} dB"
                                                   for r in others) + ".")
    after_metric = f", {target.metric_name} {a.metrics[target.metric_name]:.4f}" if target.metric is not None else ""
    verdict = "meets" if d.met else "still misses"
    if not d.met and not d.misses and d.heldout is not None and not d.heldout["met"]:
        verdict = f"meets on the evaluation data but misses on held-out data ({'; '.join(d.heldout['misses'])})"
    key = target.metric_name if target.metric is not None else "cosine"
    if len(d.remedies) > 1:
        lines.append("Fixes tried, cheapest first: " + "; ".join(
            f"{r.remedy} → {key} {r.scores.value(key):.4f}{' (meets the target)' if r.met else ''}"
            for r in d.remedies[1:])
            + ".")
    if not d.fallback:
        lines.append(f"Final recipe: {d.recipe.label}, every quantized node still INT8; {key} "
                     f"{b.value(key):.4f} → {a.value(key):.4f}; this {verdict} the target ({target.describe()}).")
        return " ".join(lines)
    lines.append(
        f"Keeping {len(d.fallback)} of {d.quantized_nodes} quantized nodes in higher precision "
        f"({', '.join(d.fallback)}) takes the per-sample cosine mean from {b.cosine:.4f} to {a.cosine:.4f} (worst "
        f"sample {_worst(a)}) and SQNR from {b.sqnr_db:.1f} to {a.sqnr_db:.1f} dB{after_metric}; this {verdict} the "
        f"target ({target.describe()})" + (f": {'; '.join(d.misses)}." if d.misses else ".")
    )
    share = d.cost.get("share_of_macs_in_higher_precision", 0.0)
    lines.append(f"Cost: {share:.2%} of the INT8-eligible multiply-accumulates run in higher precision; "
                 f"{d.cost['nodes_still_int8']} nodes stay INT8. Found with {d.evaluations} runs "
                 f"(budget {d.budget})" + (f" and {d.ranking_runs} runs on the {d.ranking_samples}-sample ranking "
                                           "subset, each candidate reverted alone" if d.ranking_runs else "") + ".")
    return " ".join(lines)
