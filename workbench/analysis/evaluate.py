"""Run an engine over a dataset, and task metrics that tests, notebooks and diagnose share.

A task metric is `metric(outputs, reference, data) -> float`, higher is better: `outputs` are the candidate's
graph outputs over the whole dataset, `reference` the FP32 model's, `data` the inputs (with labels if any).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from workbench.analysis.results import Scores
from workbench.model.data import Dataset

Outputs = dict[str, np.ndarray]
TaskMetric = Callable[[Outputs, Outputs, Dataset], float]


def run(engine, data: Dataset, batch_size: int = 32) -> Outputs:
    """Every graph output for every sample, indexed by sample on axis 0 (see OutputCollector); batches follow the
    model's fixed batch, and the padding of a last partial batch is dropped."""
    size = data.batch_size(min(batch_size, _profile_max_batch(engine.backend, data)))
    collected = OutputCollector()
    for start in range(0, len(data), size):
        real = min(size, len(data) - start)
        collected.add(engine.infer(data.feed(start, size)), size if data.fixed_batch else real, real)
    return collected.result()


class OutputCollector:
    """Graph outputs batch by batch, concatenated by sample: an output whose samples are on another axis (a
    recurrent state [layers, batch, hidden]) has that axis moved to the front, so every output is indexed by sample;
    one whose sample axis cannot be told is concatenated flat (scored pooled)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[np.ndarray]] = {}
        self.flat: set[str] = set()

    def add(self, outputs: dict[str, np.ndarray], fed: int, real: int) -> None:
        """One batch's outputs: `fed` samples went in (a fixed batch is padded), the first `real` are data."""
        from workbench.core.metrics import sample_axis

        for name, value in outputs.items():
            value = np.asarray(value)
            axis = sample_axis(value.shape, fed)
            if axis == -1:
                value = value[None]
            elif axis is None:
                self.flat.add(name)
            elif axis:
                value = np.moveaxis(value, axis, 0)
            if real < fed and name not in self.flat:
                value = value[:real]
            self.chunks.setdefault(name, []).append(value)

    def result(self) -> Outputs:
        out = {}
        for name, parts in self.chunks.items():
            if name not in self.flat and all(p.ndim and p.shape[1:] == parts[0].shape[1:] for p in parts):
                out[name] = np.concatenate(parts)
            else:
                out[name] = np.concatenate([p.ravel() for p in parts])
        return out


@dataclass
class Coupling:
    """Whether the FP32 model's outputs depend on the batch they are computed in: the largest difference between
    `samples` samples run as one batch and one at a time, relative to the output's RMS."""

    coupled: bool
    max_relative_diff: float
    samples: int

    def describe(self) -> str:
        if not self.coupled:
            return "batched (outputs do not depend on the batch)"
        return (f"one sample at a time: the FP32 model's outputs depend on the batch they are computed in (batched "
                f"vs one at a time differ by {self.max_relative_diff:.3g}x the output RMS on {self.samples} samples)")

    def to_dict(self) -> dict:
        return {"coupled": self.coupled, "max_relative_diff": self.max_relative_diff, "samples": self.samples,
                "evaluation": self.describe()}


# Batched and one-at-a-time runs of the same samples differ by float reassociation only (about 1e-6 of the RMS);
# this much more is a model whose outputs depend on the batch (a normalisation over the whole batch).
COUPLING_TOLERANCE = 1e-3


def batch_coupling(backend, model, data: Dataset, batch_size: int = 32, probe: int = 8) -> Coupling:
    """Run the FP32 model on the first `probe` samples batched and one at a time (cached by model, samples and
    backend): when the outputs differ, the model is evaluated as deployed, one sample at a time, everywhere."""
    import json

    from workbench.core import cache

    n = min(probe, len(data), max(1, batch_size))
    if data.fixed_batch or n < 2:
        return Coupling(False, 0.0, 0)
    sub = data.take(n)
    key = cache.digest("batch-coupling", 1, model.sha256, sub.fingerprint(), backend.key(), n)
    path = cache.artifact_path("coupling", key, ".json")
    if path.exists():
        try:
            return Coupling(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
    with backend.build(model.path) as engine:
        if _profile_max_batch(engine.backend, sub) < 2:
            return Coupling(False, 0.0, 0)
        batched, single = run(engine, sub, n), run(engine, sub, 1)
    worst = 0.0
    for name, ref in single.items():
        ref, value = np.asarray(ref, np.float64), np.asarray(batched[name], np.float64)
        if ref.shape != value.shape or not np.isfinite(ref).all() or not np.isfinite(value).all():
            continue
        rms = float(np.sqrt(np.mean(ref ** 2))) if ref.size else 0.0
        if rms > 0:
            worst = max(worst, float(np.abs(ref - value).max()) / rms)
    result = Coupling(worst > COUPLING_TOLERANCE, worst, n)
    cache.atomic_write(path, json.dumps({"coupled": result.coupled, "max_relative_diff": worst,
                                         "samples": n}).encode())
    return result


def reference_run(backend, model, data: Dataset, batch_size: int = 32) -> Outputs:
    """`run` of the FP32 model, cached on disk: every diagnosis, held-out check and recipe table of the same model
    and data scores against one reference run instead of recomputing it (a detector's reference is a sizeable
    share of a diagnosis)."""
    return cached_run(backend, model, data, batch_size, kind="reference")


# A run's outputs larger than this are not kept (a detector's raw heads: ~3 MB a sample); the reference always is.
RUN_CACHE_MAX_BYTES = 32 << 20
# Set to 0 to recompute every run but the reference (benchmarks that time evaluations set it).
RUN_CACHE_ENV = "WORKBENCH_RUN_CACHE"


def cached_run(backend, model, data: Dataset, batch_size: int = 32, kind: str = "outputs") -> Outputs:
    """`run` of `model` (anything with `path` and `sha256`: a ModelHandle or a TransformedModel) over `data`,
    cached on disk by the model's bytes, the data's fingerprint, the engine's settings and the batch: a recipe
    evaluated again (a diagnosis re-run in a notebook or the app, the same recipe in another search, a workshop's
    pre-warmed solutions) costs a file read. Runs are deterministic on a given engine, so a cached result is the
    result; outputs over RUN_CACHE_MAX_BYTES are recomputed instead of stored, except the reference's (and all
    but the reference with $WORKBENCH_RUN_CACHE=0)."""
    import io
    import os

    from workbench.core import cache

    if kind != "reference" and os.environ.get(RUN_CACHE_ENV) == "0":
        with backend.build(model.path) as engine:
            return run(engine, data, batch_size)
    size = data.batch_size(min(batch_size, _profile_max_batch(backend, data)))
    key = cache.digest(f"{kind}-run", 2, model.sha256, data.fingerprint(), backend.describe(), size)
    path = cache.artifact_path(kind, key, ".npz")
    if path.exists():  # no engine built for a stored run
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    with backend.build(model.path) as engine:
        outputs = run(engine, data, batch_size)
    if kind == "reference" or sum(np.asarray(v).nbytes for v in outputs.values()) <= RUN_CACHE_MAX_BYTES:
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)
        cache.atomic_write(path, buffer.getvalue())
    return outputs


class Evaluator:
    """The one apply → build → run → score sequence that diagnose, held-out scoring, recipe tables and latency
    trade-offs share: a recipe's model run over `data` by `backend`, scored against the FP32 model's run on the same
    backend and data (computed once, cached on disk by `reference_run`).

    With an executor of several workers (Ray), `submit` sends recipes ahead of need (a search's next probes): each
    runs as a task that receives the model's bytes and the data by content, and `score` reads its outputs when the
    search gets there. The same function computes every evaluation in either executor, so scores are identical."""

    def __init__(self, model, calib: Dataset | None, data: Dataset, backend=None, batch_size: int = 32,
                 executor=None, task: Any = "auto") -> None:
        from workbench.analysis.tasks import make_task, output_groups
        from workbench.core.executor import get_executor
        from workbench.runtime import get_backend

        self.model, self.calib, self.data = model, calib, data
        self.backend = backend or get_backend()
        self.executor = get_executor(executor)
        self.coupling = batch_coupling(self.backend, model, data, batch_size)
        self.batch_size = 1 if self.coupling.coupled else batch_size  # evaluated as deployed
        self.judged = make_task(task, model)  # the analysis.tasks.Task its verdicts score, or None
        self.groups = output_groups(model, self.judged)
        self.reference = reference_run(self.backend, model, data, self.batch_size)
        self._futures: dict = {}  # recipe → Future of evaluate_recipe
        self._shared: tuple | None = None

    @property
    def parallel(self) -> bool:
        return self.executor.workers > 1

    def task(self, recipe):
        """The Task that evaluates `recipe` (the model travels as bytes to a remote executor)."""
        from workbench.core.executor import Task
        from workbench.model.loading import ship

        if self._shared is None:
            share = self.executor.share
            self._shared = (ship(self.model, self.executor), share(self.calib), share(self.data))
        return Task(evaluate_recipe, (*self._shared, self.backend, self.batch_size, recipe),
                    **self.backend.task_resources())

    def submit(self, recipes) -> None:
        """Start evaluating these recipes where workers are free (a no-op in this process: nothing speculative
        runs there)."""
        if not self.parallel:
            return
        for recipe in recipes:
            if recipe not in self._futures:
                self._futures[recipe] = self.executor.submit(self.task(recipe))

    def evaluated(self, recipe) -> Evaluated:
        future = self._futures.pop(recipe, None) or self.executor.submit(self.task(recipe))
        try:
            return future.result()
        except BaseException:  # stopped, interrupted or failed: what ran ahead is not needed any more
            self.cancel()
            raise

    def evaluate_all(self, recipes) -> list[Evaluated]:
        """Every recipe's evaluation, in order, run in parallel where the executor can."""
        recipes = list(recipes)
        self.submit(recipes)
        return [self.evaluated(r) for r in recipes]

    def cancel(self) -> None:
        """Drop submitted evaluations nobody read (speculative probes the search did not need)."""
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()

    def run(self, transformed) -> Outputs:
        with self.backend.build(transformed.path) as engine:
            return run(engine, self.data, self.batch_size)

    def score(self, recipe, scorer: Callable[[Outputs, Outputs], Scores] | None = None) -> Scores:
        """`scorer(outputs, reference)` (default: worst output cosine and SQNR) of the recipe's model, with the
        seconds the cycle took (apply, build, run wherever it ran, and scoring)."""
        done = self.evaluated(recipe)
        start = time.perf_counter()
        scores = scorer(done.outputs, self.reference) if scorer else self.verdict(done.outputs)
        return scores.with_(seconds=round(done.seconds + time.perf_counter() - start, 3))

    def verdict(self, outputs: Outputs) -> Scores:
        """Per-sample, per-output scores against the reference, with the task's metrics and its worst samples."""
        return verdict(outputs, self.reference, len(self.data), self.groups, self.judged, self.data)


@dataclass
class Evaluated:
    """One recipe's evaluation as a task returns it: outputs over the data, nodes quantized, seconds it took."""

    outputs: Outputs
    quantized_nodes: int
    seconds: float


def evaluate_recipe(model, calib: Dataset | None, data: Dataset, backend, batch_size: int, recipe) -> Evaluated:
    """apply → build → run, wherever it executes (`model` as workbench.model.loading.ship sent it)."""
    from workbench.model.loading import receive
    from workbench.precision.transform import apply

    start = time.perf_counter()
    transformed = apply(receive(model), recipe, calib, progress=False)
    outputs = cached_run(backend, transformed, data, batch_size)
    return Evaluated(outputs, len(transformed.quantized_nodes), time.perf_counter() - start)


def _profile_max_batch(backend, data: Dataset) -> int:
    """The largest batch the backend's optimization profile admits on every input's sample axis (a TensorRT engine
    built with it rejects more; ONNX Runtime would run it but warn), or no limit."""
    profile = getattr(backend, "profile", None)
    limits = [p.max[axis] for p in getattr(profile, "inputs", ())
              if (axis := data.axis(p.name)) is not None and p.name in data.inputs and axis < len(p.max)]
    return min(limits, default=2**31)


def verdict(outputs: Outputs, reference: Outputs, samples: int, groups: dict | None = None, task: Any = None,
            data: Dataset | None = None) -> Scores:
    """The outputs against the FP32 reference as a user judges them: per sample, per output and channel group
    (core.metrics.OutputScorer; the worst output decides), plus the task's metrics (analysis.tasks) when there is
    one."""
    from workbench.core.metrics import OutputScorer

    scorer = OutputScorer(list(reference), groups)
    scorer.update(reference, outputs, samples)
    scores = Scores.of(scorer.result())
    if task is not None:
        result = task.evaluate(outputs, reference, data)
        scores.metrics.update(result.metrics)
        scores.task_worst = [{"index": i, "score": v} for i, v in result.worst()]
        listed = dict.fromkeys([r["index"] for r in scores.worst_samples] + [r["index"] for r in scores.task_worst])
        scores.readouts = [r for i in listed if (r := task.readout(outputs, reference, i)) is not None]
    return scores


def output_scores(outputs: Outputs, reference: Outputs) -> dict:
    """The verdict's headline numbers (mean per-sample cosine and SQNR of the worst output, the worst sample, the
    pooled cosine; worst `agreement` for integer outputs), samples on axis 0 of every output (see `run`)."""
    first = np.asarray(next(iter(reference.values()))) if reference else np.zeros(1)
    d = verdict(outputs, reference, first.shape[0] if first.ndim else 1).to_dict(outputs=False)
    return {k: v for k, v in d.items() if isinstance(v, (int, float))}


def _first(outputs: Outputs) -> np.ndarray:
    return next(iter(outputs.values()))


def top1_accuracy(outputs: Outputs, data: Dataset) -> float:
    """Fraction of samples whose arg-max over the first output's last axis equals the label."""
    if data.labels is None:
        raise ValueError("top-1 accuracy needs labels in the dataset")
    return float((_first(outputs).argmax(-1) == data.labels).mean())


def labelled_top1(outputs: Outputs, reference: Outputs, data: Dataset) -> float:
    """Top-1 accuracy against the dataset's labels."""
    return top1_accuracy(outputs, data)


def top1_agreement(outputs: Outputs, reference: Outputs, data: Dataset) -> float:
    """Fraction of samples whose top-1 class matches the FP32 model's (no labels needed)."""
    return float((_first(outputs).argmax(-1) == _first(reference).argmax(-1)).mean())


def _rows(a: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def mean_cosine(outputs: Outputs, reference: Outputs, data: Dataset) -> float:
    """Mean over samples of the cosine between candidate and FP32 first outputs (logits or embeddings)."""
    return float((_rows(_first(outputs)) * _rows(_first(reference))).sum(1).mean())


def neighbour_agreement(outputs: Outputs, reference: Outputs, data: Dataset) -> float:
    """Fraction of samples whose nearest neighbour (cosine, among the other samples) is the same as with FP32
    embeddings: what a semantic search over these embeddings would return."""
    def nearest(e: np.ndarray) -> np.ndarray:
        e = _rows(e)
        sim = e @ e.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    return float((nearest(_first(outputs)) == nearest(_first(reference))).mean())


def recipe_table(model, recipes, calib: Dataset | None, data: Dataset, backend=None,
                 progress: bool = True, executor: Any = None):
    """One row per recipe: the zoo entry's task metrics (or top-1 agreement) and output cosine vs FP32.

    Recipes are evaluated as tasks on `executor` (local or Ray) and journaled as they finish: a table stopped or
    killed and run again evaluates only the rest."""
    import pandas as pd

    from workbench.core import cache
    from workbench.core.journal import Journal
    from workbench.core.progress import Steps

    evaluator = Evaluator(model, calib, data, backend, executor=executor)
    metrics = dict(model.zoo.metrics) if model.zoo is not None else {}
    if not metrics:
        metrics = {"top1": labelled_top1} if data.labels is not None else {"top1_agreement": top1_agreement}
    recipes = list(dict.fromkeys(recipes))
    journal = Journal("recipe-table", cache.digest(2, model.sha256, data.fingerprint(), calib.fingerprint() if calib
                                                   else None, evaluator.backend.key(), sorted(metrics)))

    def row(recipe, done: Evaluated) -> dict:
        judged = evaluator.verdict(done.outputs)
        task = evaluator.judged
        return {"recipe": recipe.label, "precision": recipe.precision,
                **{name: float(fn(done.outputs, evaluator.reference, data)) for name, fn in metrics.items()},
                "mean_cosine": float(mean_cosine(done.outputs, evaluator.reference, data)),
                "worst_cosine": judged.cosine_worst, "pooled_cosine": judged.pooled_cosine,
                "deciding_output": judged.deciding,
                **({task.primary: judged.metrics[task.primary]} if task is not None and task.primary not in metrics
                   else {}),
                "quantized_nodes": done.quantized_nodes}

    rows = journal.run(evaluator.executor, {r: evaluator.task(r) for r in recipes}, row,
                       Steps(len(recipes), "recipes", "recipe", progress))
    return pd.DataFrame([rows[r] for r in recipes])
