"""What the per-sample, per-output and task statistics add to `compare`: the verdict (OutputScorer + the task's
decode/NMS/CTC scoring) timed on the same final outputs compare judged, beside the whole comparison (which
includes it) and beside compare with task="none" (per-sample statistics only). Target: ≤ 10 % of compare.

    python benchmarks/verdict_cost.py [--models mnist-cnn,ppocr-det,...] [--samples 64]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import workbench as wb  # noqa: E402
from _table import markdown_table  # noqa: E402
from workbench.analysis.compare import compare  # noqa: E402
from workbench.analysis.evaluate import run, verdict  # noqa: E402
from workbench.analysis.tasks import make_task, output_groups  # noqa: E402
from workbench.runtime import get_backend  # noqa: E402
from workbench.zoo import corpus  # noqa: E402

DEFAULT = "mnist-cnn,ppocr-det,ppocr-rec,yolov8n-nudenet"


def load(name: str, samples: int):
    """(model, calibration, evaluation) for a zoo or corpus name."""
    if name in corpus.ENTRIES:
        entry = corpus.get(name)
        model = wb.load_model(str(entry.path()))
        return model, entry.dataset("calib"), entry.dataset("eval").take(samples)
    model = wb.load_model(name)
    return model, model.zoo.calibration_data(), model.zoo.evaluation_data().take(samples)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, samples: int) -> dict:
    model, calib, data = load(name, samples)
    backend = get_backend()
    transformed = wb.apply(model, wb.Recipe("int8"), calib, progress=False)
    task = make_task("auto", model)
    reference = run(backend.build(model.path), data)
    outputs = run(backend.build(transformed.path), data)
    groups = output_groups(model, task)
    full = best_of(lambda: compare(transformed, data, backend, framework=False, progress=False))
    without_task = best_of(lambda: compare(transformed, data, backend, framework=False, progress=False, task="none"))
    statistics = best_of(lambda: verdict(outputs, reference, len(data), groups, None, data))
    with_task = best_of(lambda: verdict(outputs, reference, len(data), groups, task, data))
    return {"model": name, "samples": len(data), "task": task.kind if task else "none",
            "compare s": round(full, 2), "compare, no task s": round(without_task, 2),
            "per-sample stats s": round(statistics, 4), "stats + task s": round(with_task, 4),
            "share of compare": f"{with_task / full:.1%}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    rows = [row(name, args.samples) for name in args.models.split(",")]
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
