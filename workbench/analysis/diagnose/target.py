"""What "fixed" means (Target) and how a candidate's outputs are scored against it: per sample, per output, the
task, and a bootstrap lower bound on the mean so a search does not stop on a lucky evaluation set."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workbench.analysis.evaluate import Evaluator, TaskMetric
from workbench.analysis.results import Scores
from workbench.core.errors import WorkbenchError
from workbench.model.data import Dataset

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


def score_outputs(evaluator: Evaluator, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
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


def sample_warnings(data: Dataset, target: Target, after: Scores) -> list[str]:
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
