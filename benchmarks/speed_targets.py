"""Issue 28's speed targets, measured side by side in one run (ratios: this machine is noisy).

- diagnose ≤ 5× one compare, per model: `diagnose --target-cosine 0.99` against one per-layer `compare` of the
  INT8 recipe as given, same calibration and evaluation samples (both with the calibration ranges cached, as a
  user's second command finds them; diagnose's own candidate transforms are new).
- compare ≤ 3× two plain runs (the FP32 and the INT8 model, outputs only) at 64 samples, on the 404-layer PP-OCRv4
  recogniser and the others listed.
- the app's graph toggle (one node to FP32: re-quantize, re-compare, recolour) ≤ 1 s on MiniLM at the app's
  default sample count.

    python benchmarks/speed_targets.py [--models ppocr-rec,ppocr-det,efficientnet-lite0] [--no-app]
    python benchmarks/speed_targets.py --models ''   (the app's toggle only)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-speed-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import markdown_table  # noqa: E402

SAMPLES = 64


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def model_row(name: str) -> dict:
    import workbench as wb
    from workbench.analysis.compare import compare
    from workbench.analysis.diagnose import Target, diagnose
    from workbench.analysis.evaluate import run
    from workbench.model.loading import from_onnx
    from workbench.runtime import get_backend
    from workbench.zoo import corpus

    entry = corpus.get(name)
    model = from_onnx(entry.path())
    calib, data = entry.dataset("calib"), entry.dataset("eval").take(SAMPLES)
    backend = get_backend()
    recipe = wb.Recipe("int8")
    transformed = wb.apply(model, recipe, calib, progress=False)  # calibration cached from here on
    ref, cand = backend.build(model.path), backend.build(transformed.path)
    plain = min(timed(lambda: (run(ref, data, 32), run(cand, data, 32)))[0] for _ in range(2))
    one = min(timed(lambda: compare(transformed, data, backend, framework=False, progress=False))[0]
              for _ in range(2))
    seconds, d = timed(lambda: diagnose(model, recipe, calib, data, Target(cosine=0.99), backend, progress=False,
                                        deployment_check=False))
    layers = sum(1 for n in model.proto.graph.node if n.op_type not in ("Constant",))
    return {"model": name, "nodes": layers, "samples": len(data), "plain runs s": round(plain, 2),
            "compare s": round(one, 2), "compare / plain": round(one / plain, 2), "target ≤ 3×": one / plain <= 3,
            "diagnose s": round(seconds, 1), "cycles": d.evaluations, "ranking runs": d.ranking_runs,
            "diagnose / compare": round(seconds / one, 1), "target ≤ 5×": seconds / one <= 5}


def toggle_row(model: str = "minilm") -> dict:
    """Four toggles to FP32 of four different nodes (each a new model), then back to INT8 (a cache hit): the time
    until the graph shows the preview, and until it shows all samples."""
    from workbench.app.ui import Workbench

    app = Workbench(model)
    app.wait()
    nodes = sorted((n for n in app.graph_view.graph["nodes"] if n["precision"] == "int8"
                    and n["local_sqnr_db"] is not None), key=lambda n: n["local_sqnr_db"])[:4]
    fresh, back = [], []
    for node in nodes:
        app.select_graph_node(node["id"])
        for precision, into in (("FP32", fresh), ("INT8", back)):
            app.set_node_precision(precision)
            into.append(dict(app.timings))

    def median(rows: list[dict], key: str) -> float:
        return round(sorted(r[key] for r in rows)[len(rows) // 2], 2)

    samples = len(app._eval())
    return {"model": f"{model} (app toggle)", "samples": samples,
            "preview s (new node)": median(fresh, "preview_s"), "preview s (back)": median(back, "preview_s"),
            "all samples s": median(fresh + back, "compared_s"),
            "target ≤ 1 s": median(fresh + back, "compared_s") <= 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ppocr-rec,ppocr-det,efficientnet-lite0,oww-embedding")
    parser.add_argument("--no-app", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for name in filter(None, args.models.split(",")):
        rows.append(model_row(name))
        print(markdown_table(rows[-1:]), flush=True)
    if rows:
        print(markdown_table(rows))
    if not args.no_app:
        print(markdown_table([toggle_row()]))


if __name__ == "__main__":
    main()
