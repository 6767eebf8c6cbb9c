"""Memory and time as the data grows (the bounded-memory issue's table): per model and sample count, calibration
(minmax, entropy, percentile: seconds and peak RSS), compare (seconds, its ratio to one plain FP32 run plus one
plain INT8 run on the same samples, peak RSS) and diagnose (wall seconds cold, number of quantize + evaluate cycles
and the slowest cycle, against the slowest of the plain quantize + evaluate runs).

Every measurement runs alone in a fresh process; peak RSS is that process's own high-water mark (VmHWM). Data is
an uncompressed .npz read as --calib-data reads it. Calibration and diagnose start from an empty cache; compare
and the plain runs share one where the INT8 model (minmax ranges of the same samples) is already built, so their
peaks are compare's and the runs' own. Diagnose calibrates on the N samples and evaluates on 64 other samples.

    python benchmarks/memory_time.py [--models mobilenet-v2,minilm,ppocr-det,efficientnet-lite0]
                                     [--samples 64,256,1024] [--methods minmax,entropy,percentile]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import markdown_table  # noqa: E402
from calibration_memory import make_data, measure, rss_peak_mb, run_child  # noqa: E402

EVAL_SAMPLES = 64


def job(kind: str, model_path: str, data_file: str, eval_file: str) -> dict:
    """One measurement in this process: compare | plain | diagnose."""
    import workbench as wb
    from workbench.analysis.evaluate import run
    from workbench.model.data import load_npz
    from workbench.model.loading import from_onnx
    from workbench.runtime import get_backend

    model = from_onnx(model_path)
    data = load_npz(data_file, model.inputs)
    recipe = wb.Recipe("int8")
    if kind == "diagnose":
        from workbench.analysis.diagnose import diagnose

        start = time.perf_counter()
        d = diagnose(model, recipe, data, load_npz(eval_file, model.inputs), progress=False)
        return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": rss_peak_mb(),
                "cycles": d.evaluations, "cycle_budget": d.budget + d.remedies_tried,
                "slowest_cycle_s": max(d.cycle_seconds),
                "nodes_in_higher_precision": len(d.fallback), "met": d.met}
    transformed = wb.apply(model, recipe, data, progress=False)
    if kind == "prepare":
        return {}
    start = time.perf_counter()
    if kind == "compare":
        from workbench.analysis.compare import compare

        compare(transformed, data, framework=False, progress=False)
    elif kind == "plain":
        backend = get_backend()
        reference, candidate = backend.build(model.path), backend.build(transformed.path)
        start = time.perf_counter()
        run(reference, data)
        run(candidate, data)
    elif kind == "cycle":  # what one diagnose cycle does with cached ranges: quantize + build + evaluate
        evaluation = load_npz(eval_file, model.inputs)
        run(get_backend().build(wb.apply(model, recipe.with_exclude([transformed.quantized_nodes[0]]), data,
                                         progress=False).path), evaluation)
    return {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": rss_peak_mb()}


def child(kind: str, model_path: str, data_file: Path, eval_file: Path, cache_dir: str) -> dict:
    return run_child(__file__, "--job", [kind, model_path, str(data_file), str(eval_file)], cache_dir)


def row_for(model: str, count: int, methods: list[str], folder: Path, diagnose_counts: set[int],
            entropy_counts: set[int] | None = None) -> dict:
    model_path, data_file = make_data(model, count, folder)
    _, eval_file = make_data(model, EVAL_SAMPLES, folder, split="eval")
    row: dict = {"model": model, "samples": count, "data_mb": round(data_file.stat().st_size / 2**20)}
    for method in methods:
        if method == "entropy" and entropy_counts is not None and count not in entropy_counts:
            continue
        m = measure(model_path, data_file, method, "streamed")
        row[f"{method}_s"], row[f"{method}_mb"] = m.get("seconds"), m.get("peak_rss_mb")
    with tempfile.TemporaryDirectory(prefix="workbench-bench-warm-") as warm:
        child("prepare", model_path, data_file, eval_file, warm)
        plain = child("plain", model_path, data_file, eval_file, warm)
        full = child("compare", model_path, data_file, eval_file, warm)
        one = child("cycle", model_path, data_file, eval_file, warm)
    row.update({"plain_s": plain.get("seconds"), "compare_s": full.get("seconds"),
                "compare_x": round(full["seconds"] / plain["seconds"], 2) if "seconds" in full and plain.get(
                    "seconds") else None, "compare_mb": full.get("peak_rss_mb"), "cycle_alone_s": one.get("seconds")})
    d: dict = {}
    if count in diagnose_counts:
        with tempfile.TemporaryDirectory(prefix="workbench-bench-cold-") as cold:
            d = child("diagnose", model_path, data_file, eval_file, cold)
    row.update({"diagnose_s": d.get("seconds"), "diagnose_mb": d.get("peak_rss_mb"), "cycles": d.get("cycles"),
                "cycle_budget": d.get("cycle_budget"), "slowest_cycle_s": d.get("slowest_cycle_s"),
                "fallback_nodes": d.get("nodes_in_higher_precision"), "met": d.get("met")})
    errors = [r["error"] for r in (plain, full, one, d) if "error" in r]
    if errors:
        row["errors"] = "; ".join(errors)
    data_file.unlink()
    eval_file.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job")
    parser.add_argument("--models", default="mobilenet-v2,minilm,ppocr-det,efficientnet-lite0")
    parser.add_argument("--samples", default="64,256,1024")
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--diagnose-samples", default="64,256,1024",
                        help="calibration sample counts that also run a cold diagnose (its cycles evaluate 64 samples "
                             "whatever the count; only its calibration grows)")
    parser.add_argument("--entropy-samples", help="sample counts that calibrate with entropy (default: all); its "
                        "fixed cost is ONNX Runtime's KL search in Python, 1.5-4.5 min per model")
    args = parser.parse_args()
    if args.job:
        print(json.dumps(job(*json.loads(args.job))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="workbench-bench-data-") as tmp:
        for model in args.models.split(","):
            for count in map(int, args.samples.split(",")):
                entropy = None if args.entropy_samples is None else {int(n) for n in args.entropy_samples.split(",")}
                rows.append(row_for(model, count, args.methods.split(","), Path(tmp),
                                    {int(n) for n in args.diagnose_samples.split(",") if n}, entropy))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
