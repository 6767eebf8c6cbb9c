"""Re-quantize time with cached calibration ranges (targets: ≤ 0.3 s on mnist-cnn, ≤ 2 s on mobilenet-v2).

    python benchmarks/requantize.py [--model mnist-cnn|mobilenet-v2] [--methods minmax,entropy,percentile]
                                    [--nodes N]    (exclusion toggles timed: the first N nodes; default all)
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads

import workbench as wb  # noqa: E402
from workbench.precision.quantize import quantize_int8  # noqa: E402
from workbench.precision.transform import cleaned  # noqa: E402

TARGET_S = {"mnist-cnn": 0.3, "mobilenet-v2": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mnist-cnn", choices=sorted(TARGET_S))
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--nodes", type=int, default=0)
    args = parser.parse_args()
    model = wb.load_model(args.model)
    calib = model.zoo.calibration_data()
    for method in args.methods.split(","):
        t = time.perf_counter()
        first = wb.apply(model, wb.Recipe("int8", method), calib, progress=False)
        cold = time.perf_counter() - t
        nodes = [n for n in model.node_names() if n in first.quantized_nodes]
        nodes = nodes[:args.nodes] if args.nodes else nodes
        times = []
        for i, node in enumerate(nodes):  # a new exclusion list each time: the transform cache cannot help
            t = time.perf_counter()
            r = wb.apply(model, wb.Recipe("int8", method, exclude=(node,)), calib, progress=False)
            times.append(time.perf_counter() - t)
            assert r.calibration.from_cache and not r.from_cache
        t = time.perf_counter()
        quantize_int8(cleaned(model)[0].path, first.calibration.path, method, nodes[:1])
        bare = time.perf_counter() - t
        print(f"{args.model} int8 {method:10s}: first build (calibration) {cold:6.3f} s | re-quantize with another "
              f"exclusion: median {statistics.median(times):.3f} s, max {max(times):.3f} s over {len(times)} "
              f"(target <= {TARGET_S[args.model]:g} s) | quantize_int8 alone (cached full graph) {bare:.3f} s")


if __name__ == "__main__":
    main()
