"""In-process vs Ray executor, side by side in one run: a latency sweep, a recipe table (accuracy sweep) and a
diagnosis, each timed with both executors on warm caches, plus the round trip of an empty Ray task.

    python benchmarks/executor.py [--model mobilenet-v2] [--diagnose ppocr-cls] [--workers 2]

Ray runs a local cluster of `--workers` CPUs started here (its start-up time is printed apart). Before the timed
runs each executor does the work once, so calibration and transformed models are in the cache and both executors
time the same work; the Ray workers' first imports are in that warm-up too (the "cold" column shows them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import markdown_table  # noqa: E402


def _noop(x: int) -> int:
    return x


def main() -> None:
    import workbench as wb
    from workbench.analysis.bench import sweep
    from workbench.analysis.diagnose import diagnose
    from workbench.analysis.evaluate import recipe_table
    from workbench.core.executor import Executor, Task, get_executor
    from workbench.zoo import corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mobilenet-v2", help="zoo model for the two sweeps")
    parser.add_argument("--diagnose", default="mobilenet-v2", help="zoo or corpus model to diagnose")
    parser.add_argument("--jobs", default="latency,table,diagnose", help="which of latency,table,diagnose to run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()

    model = wb.load_model(args.model)
    calib, data = model.zoo.calibration_data(), model.zoo.evaluation_data()
    recipes = [wb.Recipe("fp32"), wb.Recipe("fp16"), wb.Recipe("int8"),
               wb.Recipe("int8", "percentile", 99.99), wb.Recipe("int8", placement="all"),
               wb.Recipe("int8", "percentile", 99.9)]
    if args.diagnose in corpus.names():
        entry = corpus.get(args.diagnose)
        dmodel = wb.load_model(str(entry.path()))
        dcalib, deval = entry.dataset("calib"), entry.dataset("eval")
    else:
        dmodel = wb.load_model(args.diagnose)
        dcalib, deval = dmodel.zoo.calibration_data(), dmodel.zoo.evaluation_data().take(256)

    jobs = {  # key → (what the table calls it, the work with an executor)
        "latency": (f"latency sweep ({args.model}, {len(recipes)} recipes × batch 1,8, {args.iterations} it)",
                    lambda ex: sweep(model, recipes, [1, 8], calib, data.take(64), iterations=args.iterations,
                                     warmup=5, progress=False, executor=ex)),
        "table": (f"recipe table ({args.model}, {len(recipes)} recipes, 256 samples)",
                  lambda ex: recipe_table(model, recipes, calib, data.take(256), progress=False, executor=ex)),
        "diagnose": (f"diagnose ({args.diagnose})",
                     lambda ex: diagnose(dmodel, wb.Recipe("int8"), dcalib, deval, progress=False, executor=ex)),
    }
    jobs = {key: jobs[key] for key in args.jobs.split(",")}
    local = Executor()
    start = time.perf_counter()
    ray = get_executor("ray", workers=args.workers)
    cluster_s = time.perf_counter() - start
    rows, results, seconds = [], {}, {}
    for key, (name, job) in jobs.items():
        job(local)  # warm the cache: both executors then time the same work
        t = time.perf_counter()
        job(ray)
        cold = time.perf_counter() - t
        timed = {}
        for label, ex in (("local", local), ("ray", ray)):
            t = time.perf_counter()
            results[(key, label)] = job(ex)
            timed[label] = time.perf_counter() - t
        seconds[key] = timed
        rows.append({"work": name, "in-process s": round(timed["local"], 2), "Ray s": round(timed["ray"], 2),
                     "speed-up": f"{timed['local'] / timed['ray']:.2f}×", "Ray first run s (cold workers)":
                         round(cold, 2)})
        print(rows[-1], file=sys.stderr, flush=True)
    trips = []
    for i in range(50):
        t = time.perf_counter()
        ray.submit(Task(_noop, (i,))).result()
        trips.append(time.perf_counter() - t)
    ray.close()
    overhead = statistics.median(trips)
    summary = {"Ray cluster start s": round(cluster_s, 1),
               "empty task round trip ms (median of 50)": round(overhead * 1e3, 2)}
    if "latency" in jobs:
        per_task = seconds["latency"]["local"] / len(recipes)
        lat_local = results[("latency", "local")].results.set_index(["recipe", "batch"])["p50_ms"]
        lat_ray = results[("latency", "ray")].results.set_index(["recipe", "batch"])["p50_ms"]
        summary.update({"typical sweep task s": round(per_task, 2), "overhead / task": f"{overhead / per_task:.2%}",
                        "p50 Ray / in-process (median over cells)": f"{(lat_ray / lat_local).median():.2f}"})
    if "diagnose" in jobs:
        d_local, d_ray = results[("diagnose", "local")], results[("diagnose", "ray")]
        summary.update({"diagnosis identical": d_local.recipe == d_ray.recipe
                        and d_local.after.with_(seconds=None) == d_ray.after.with_(seconds=None),
                        "cycles local / Ray": f"{d_local.evaluations} / {d_ray.evaluations}"})
    print(markdown_table(rows))
    print()
    print(markdown_table([summary]))
    print(f"\n{os.cpu_count()} CPUs; latency is ONNX Runtime CPU, 1 thread per task (CPU numbers, not TensorRT)")


if __name__ == "__main__":
    main()
