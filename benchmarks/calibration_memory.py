"""Calibration memory and time as the sample count grows: streamed (workbench) vs ONNX Runtime's one-shot calibrator.

Each calibration runs alone in a fresh process with an empty calibration cache; peak RSS is that process's own
high-water mark (VmHWM), minus nothing. The samples come from an uncompressed .npz read as --calib-data reads it (memory-mapped, each batch's pages
released after use): `data_mb` is the size of that file. Columns: model, samples, method, mode (streamed | ort-one-shot),
seconds, peak RSS (MB), data size (MB), peak minus data (MB).

    python benchmarks/calibration_memory.py [--models mobilenet-v2,ppocr-det] [--samples 64,256,1024]
                                            [--methods minmax,entropy,percentile] [--one-shot-samples 64]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import markdown_table  # noqa: E402


def make_arrays(model: str, count: int, split: str = "calib") -> tuple[str, dict[str, np.ndarray]]:
    """(model path, input name → `count` real samples of `split`) for a zoo or corpus model."""
    import workbench as wb
    from workbench.zoo import corpus
    from workbench.zoo.images import crops

    if model in ("mobilenet-v2", "minilm"):
        handle = wb.load_model(model)
        if model == "mobilenet-v2":
            arrays = {handle.inputs[0].name: crops(count, seed=7 if split == "calib" else 11)}
        else:
            from workbench.zoo.minilm import INPUTS, SEQUENCE, sentences, tokenizer

            text = sentences()
            shift = 0 if split == "calib" else 3
            chosen = [" ".join(text[(i * 7 + j + shift) % len(text)] for j in range(1 + i // len(text)))
                      for i in range(count)]
            tokens = tokenizer()(chosen, padding="max_length", truncation=True, max_length=SEQUENCE,
                                 return_tensors="np")
            arrays = {n: tokens[n].astype(np.int64) for n in INPUTS}
        return str(handle.path), arrays
    m = corpus.get(model)
    return str(m.path()), {k: v for k, v in m.make(split, count).items() if k != "labels"}


def make_data(model: str, count: int, folder: Path, split: str = "calib") -> tuple[str, Path]:
    """(model path, an uncompressed .npz of `count` samples): what a user passes as --calib-data."""
    path, arrays = make_arrays(model, count, split)
    file = folder / f"{model}-{split}-{count}.npz"
    np.savez(file, **arrays)
    return path, file


def rss_peak_mb() -> int:
    """This process's own peak RSS (VmHWM). wait4's ru_maxrss would also carry the parent's RSS at fork time
    (Linux keeps the pre-exec high-water mark), which is what the data-making parent holds."""
    return round(next(int(line.split()[1]) for line in open("/proc/self/status")
                      if line.startswith("VmHWM")) / 1024)


def worker(model_path: str, file: str, method: str, mode: str) -> dict:
    """One calibration in this process (fresh cache dir set by the parent), data read as --calib-data reads it."""
    from workbench.model.data import load_npz
    from workbench.model.loading import from_onnx
    from workbench.precision.quantize import placement_options

    model = from_onnx(model_path)
    data = load_npz(file, model.inputs)
    op_types = placement_options("tensorrt")[0]
    start = time.perf_counter()
    if mode == "streamed":
        from workbench.precision.calibration import calibrate

        calibrate(model, data, method, progress=False, op_types=op_types)
    else:
        from workbench.precision.calibration import one_shot_ranges

        one_shot_ranges(model, data, method, op_types=op_types)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": rss_peak_mb()}


def run_child(script: str, flag: str, payload: list, cache_dir: str) -> dict:
    """`script flag JSON(payload)` in a fresh process with its own cache dir: the JSON it prints last, or
    {"error": ...} with the last line of its stderr."""
    env = {**os.environ, "WORKBENCH_CACHE_DIR": cache_dir}
    args = [sys.executable, script, flag, json.dumps(payload)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(model_path: str, file: Path, method: str, mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="workbench-calib-bench-") as cache_dir:
        return {"seconds": None, "peak_rss_mb": None,
                **run_child(__file__, "--worker", [model_path, str(file), method, mode], cache_dir)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--models", default="mobilenet-v2,ppocr-det,efficientnet-lite0,minilm")
    parser.add_argument("--samples", default="64,256,1024")
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--one-shot-samples", default="64", help="sample counts also run with ORT's one-shot "
                        "calibrator (it holds every tensor of every batch: 23.9 GB for entropy at 512 images)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return
    one_shot = {int(n) for n in args.one_shot_samples.split(",") if n}
    rows = []
    with tempfile.TemporaryDirectory(prefix="workbench-calib-data-") as tmp:
        for model in args.models.split(","):
            for count in map(int, args.samples.split(",")):
                model_path, file = make_data(model, count, Path(tmp))
                data_mb = round(file.stat().st_size / 2**20)
                for method in args.methods.split(","):
                    for mode in ("streamed", "ort-one-shot") if count in one_shot else ("streamed",):
                        row = {"model": model, "samples": count, "method": method, "mode": mode,
                               **measure(model_path, file, method, mode), "data_mb": data_mb}
                        if row.get("peak_rss_mb") is not None:
                            row["peak_minus_data_mb"] = row["peak_rss_mb"] - data_mb
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
                file.unlink()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
