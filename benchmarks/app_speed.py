"""The app's speed at its defaults, side by side with the CLI: how long `Workbench(model)` takes to return (the
first build runs in the background), when its first result is shown, Build & compare against `workbench compare`
on the same samples (a fresh process, as a user runs it; ratio), and a graph-view toggle (one node to FP32 and
back: re-quantize from cached ranges, compare reusing the FP32 side, recolour). Targets (issue 25): return ≤ 10 s,
Build & compare ≤ 2× the CLI, toggle ≤ 1 s.

    python benchmarks/app_speed.py [--models minilm,mnist-cnn] [--limits 512,64]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import markdown_table  # noqa: E402


def cli_compare(model: str, limit: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "workbench.app.cli", "compare", model, "--precision", "int8",
                    "--limit", str(limit)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def row(model: str, limit: int) -> dict:
    from workbench.app.ui import Workbench

    start = time.perf_counter()
    app = Workbench(model, eval_limit=limit)
    returned = time.perf_counter() - start
    app.wait()
    first = time.perf_counter() - start
    build = time.perf_counter()
    app.run()
    rebuilt = time.perf_counter() - build
    cli = cli_compare(model, limit)
    node = min((n for n in app.graph_view.graph["nodes"] if n["precision"] == "int8" and n["local_sqnr_db"] is not None),
               key=lambda n: n["local_sqnr_db"])["id"]
    app.select_graph_node(node)
    toggles = []
    for precision in ("FP32", "INT8"):
        t = time.perf_counter()
        app.set_node_precision(precision)
        toggles.append(time.perf_counter() - t)
    return {"model": model, "samples": limit, "Workbench() returns s": round(returned, 2),
            "first result s": round(first, 1), "Build & compare s (warm)": round(rebuilt, 1),
            "CLI compare s": round(cli, 1), "app / CLI": round(rebuilt / cli, 2),
            "toggle to FP32 s": round(toggles[0], 2), "toggle back s": round(toggles[1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="minilm,mnist-cnn")
    parser.add_argument("--limits", default="512,64")
    args = parser.parse_args()
    rows = [row(m, int(n)) for m in args.models.split(",") for n in args.limits.split(",")]
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
