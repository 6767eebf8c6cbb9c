"""Latency: warm-up, timed iterations (or a duration), percentiles, sweeps over batch sizes and recipes.

The timed loop calls the engine's prepared inference (inputs bound before the loop) and reads the host clock
around it; backends with a device (TensorRT) also return device compute time from CUDA events, reported
separately from host (end-to-end) time. Every row carries its context (backend, device, threads, batch,
shapes, precision) so CPU numbers are never mistaken for TensorRT numbers.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from workbench.core.errors import WorkbenchError
from workbench.core.progress import check_stop
from workbench.model.data import Dataset
from workbench.runtime import Backend, get_backend

PERCENTILES = (50, 90, 95, 99)
HIGH_CV = 0.10  # coefficient of variation above which a measurement is flagged unstable


def summarize(samples_ms: Sequence[float], batch: int) -> dict:
    """min, p50/p90/p95/p99, mean, std, coefficient of variation and throughput (samples/s = batch / mean)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise WorkbenchError("no timed iterations: raise --iterations or --duration")
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    out = {"iterations": int(a.size), "min_ms": float(a.min())}
    out.update({f"p{p}_ms": float(np.percentile(a, p)) for p in PERCENTILES})
    out.update(mean_ms=mean, std_ms=std, cv=std / mean if mean else 0.0, throughput=batch * 1000.0 / mean if mean else 0.0)
    return out


@dataclass
class Measurement:
    host_ms: list[float]
    device_ms: list[float] | None


def measure(
    engine: Any, feed: dict[str, np.ndarray], iterations: int | None = 100, warmup: int | None = 10,
    duration_s: float | None = None, warmup_ms: float | None = None,
) -> Measurement:
    """Time `engine` on a fixed feed: warm up (iterations or ms), then N iterations or until `duration_s`."""
    step = engine.timed_call(feed)
    done = 0
    start = time.perf_counter()
    while (warmup_ms is not None and (time.perf_counter() - start) * 1000 < warmup_ms) or (
            warmup_ms is None and done < (warmup or 0)):
        step()
        done += 1
    host: list[float] = []
    device: list[float] = []
    clock = time.perf_counter_ns
    deadline = None if duration_s is None else time.perf_counter() + duration_s
    limit = iterations if iterations else (None if deadline else 100)
    while (limit is None or len(host) < limit) and (deadline is None or time.perf_counter() < deadline):
        t0 = clock()
        d = step()
        host.append((clock() - t0) / 1e6)
        if d is not None:
            device.append(d)
        check_stop()  # outside the timed call
    return Measurement(host, device or None)


def parse_batches(text: str) -> list[int]:
    """Comma-separated batch sizes ("1,8") as typed in the CLI or the app."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise WorkbenchError(f"--batch takes comma-separated integers, e.g. 1,8 (got {text!r})") from None


def batch_feed(data: Dataset, batch: int) -> dict[str, np.ndarray]:
    """`batch` samples (repeated if the data has fewer), prepared before any timing."""
    idx = np.arange(batch) % len(data)
    feed = {}
    for k, v in data.inputs.items():
        axis = data.axis(k)
        feed[k] = v if axis is None else np.ascontiguousarray(np.take(v, idx, axis=axis))
    return feed


@dataclass
class LatencyReport:
    """One row per (recipe, batch); raw samples are kept for distribution plots."""

    results: pd.DataFrame
    context: dict
    samples: dict[tuple[str, int], list[float]] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.context.get("label", "")

    def to_dict(self) -> dict:
        return {"results": json.loads(self.results.to_json(orient="records")), "context": self.context}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def sweep(
    model, recipes: Iterable, batches: Sequence[int] = (1,), calib: Dataset | None = None,
    data: Dataset | None = None, backend: Backend | None = None, iterations: int | None = 100,
    warmup: int | None = 10, duration_s: float | None = None, progress: bool = True,
    warmup_ms: float | None = None, executor: Any = None,
) -> LatencyReport:
    """Latency of every recipe at every batch size, on one backend (default ONNX Runtime CPU, all graph
    optimizations, 1 thread: what a CPU deployment runs).

    One task per recipe (its engine is built once for all batches) on `executor` ("local" or "ray"; see
    workbench.core.executor). Finished recipes are journaled: a sweep stopped or killed and run again measures
    only the rest (a completed sweep clears its journal). Tasks running side by side share the machine: on one
    host, parallel timings are only as clean as its spare cores."""
    from workbench.core import cache
    from workbench.core.executor import Task, get_executor
    from workbench.core.journal import Journal
    from workbench.core.progress import Steps
    from workbench.model.defaults import evaluation_data
    from workbench.model.loading import ship

    recipes = list(dict.fromkeys(recipes))
    backend = backend or get_backend(optimization="all")
    data = data if data is not None else evaluation_data(model)
    _check_batches(data, batches)
    executor = get_executor(executor)
    settings = {"iterations": iterations, "warmup": warmup, "duration_s": duration_s, "warmup_ms": warmup_ms}
    journal = Journal("latency", cache.digest(model.sha256, data.fingerprint(), calib.fingerprint() if calib else
                                              None, backend.key(), list(batches), settings))
    shared = [ship(model, executor), executor.share(calib), executor.share(data)]
    tasks = {r: Task(latency_task, (*shared, backend, r, list(batches), settings), **backend.task_resources())
             for r in recipes}
    results = journal.run(executor, tasks, lambda recipe, result: result,
                          Steps(len(recipes), "measuring latency", "recipe", progress))
    rows, samples, context = [], {}, {}
    for recipe in recipes:
        context = results[recipe]["context"]
        for row, host_ms in zip(results[recipe]["rows"], results[recipe]["host_ms"]):
            rows.append(row)
            samples[(recipe.label, row["batch"])] = host_ms
            if row["unstable"]:
                warnings.warn(f"{recipe.label} batch {row['batch']}: latency varies a lot (CV {row['cv']:.0%}); "
                              "close other programs or raise --iterations", UserWarning, stacklevel=2)
    return LatencyReport(pd.DataFrame(rows), context, samples)


def latency_task(model, calib: Dataset | None, data: Dataset, backend: Backend, recipe, batches: list[int],
                 settings: dict) -> dict:
    """One recipe's engine timed at every batch size (runs in this process or on a Ray worker): JSON-able rows,
    raw host samples and the engine's context. `model` as workbench.model.loading.ship sent it."""
    from workbench.model.loading import receive
    from workbench.precision.transform import apply

    transformed = apply(receive(model), recipe, calib, progress=False)
    rows, host_samples = [], []
    with backend.build(transformed.path) as engine:
        context = engine.describe()
        for batch in batches:
            feed = batch_feed(data, batch)
            backend.check_profile(feed)
            m = measure(engine, feed, settings["iterations"], settings["warmup"], settings["duration_s"],
                        settings["warmup_ms"])
            host = summarize(m.host_ms, batch)
            row = {"recipe": recipe.label, "precision": recipe.precision, "batch": batch,
                   "shapes": json.dumps({k: list(v.shape) for k, v in feed.items()}), **host,
                   "unstable": bool(host["cv"] > HIGH_CV)}
            if m.device_ms:
                device = summarize(m.device_ms, batch)
                row.update({f"device_{k}": v for k, v in device.items() if k != "iterations"})
            rows.append(row)
            host_samples.append(m.host_ms)
    return {"rows": rows, "host_ms": host_samples, "context": context}


def _check_batches(data: Dataset, batches: Sequence[int]) -> None:
    if not batches or any(int(b) < 1 for b in batches):
        raise WorkbenchError(f"batch sizes must be positive integers, got {list(batches)}")
    fixed = data.fixed_batch
    if fixed and any(b != fixed for b in batches):
        raise WorkbenchError(f"the model's batch dimension is fixed to {fixed}; "
                             f"batch sizes {','.join(map(str, batches))} are impossible (measure at batch {fixed})")


def tradeoff(model, recipes: Iterable, calib: Dataset | None, data: Dataset, batch: int = 1,
             backend: Backend | None = None, iterations: int = 100, progress: bool = True,
             latency: LatencyReport | None = None, executor: Any = None) -> pd.DataFrame:
    """Accuracy (output cosine vs FP32, top-1 when labelled, the zoo's task metrics) against p50 latency per recipe,
    Pareto-flagged.

    Accuracy is measured on the accuracy backend (graph as written); latency on `backend` (default: ONNX
    Runtime CPU with all optimizations), or read at `batch` from an existing sweep (`latency`)."""
    from workbench.analysis.evaluate import Evaluator, output_scores, top1_accuracy

    recipes = list(recipes)
    latency = latency or sweep(model, recipes, [batch], calib, data, backend, iterations, progress=progress,
                               executor=executor)
    timed = latency.results[latency.results["batch"] == batch].set_index("recipe")
    evaluator = Evaluator(model, calib, data, get_backend(), executor=executor)
    metrics = dict(model.zoo.metrics) if getattr(model, "zoo", None) is not None else {}
    rows = []
    for recipe, done in zip(recipes, evaluator.evaluate_all(recipes)):
        outputs = done.outputs
        lat = timed.loc[recipe.label]
        row = {"recipe": recipe.label, "precision": recipe.precision, "p50_ms": float(lat["p50_ms"]),
               "throughput": float(lat["throughput"]), **output_scores(outputs, evaluator.reference),
               **{name: float(fn(outputs, evaluator.reference, data)) for name, fn in metrics.items()}}
        if data.labels is not None:
            row["top1"] = top1_accuracy(outputs, data)
        rows.append(row)
    table = pd.DataFrame(rows)
    quality = "top1" if "top1" in table else next(iter(metrics), "cosine")
    table["pareto"] = pareto_front(table["p50_ms"].to_numpy(), table[quality].to_numpy())
    table.attrs["label"], table.attrs["quality"] = latency.label, quality
    return table


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> list[bool]:
    """True where no other point is at least as fast and at least as accurate, and strictly better in one."""
    flags = []
    for i in range(len(cost)):
        dominated = any(cost[j] <= cost[i] and quality[j] >= quality[i] and (cost[j] < cost[i] or quality[j] > quality[i])
                        for j in range(len(cost)) if j != i)
        flags.append(not dominated)
    return flags
