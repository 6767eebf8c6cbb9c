"""The remedy table: per model, every step the diagnosis took (cheapest first) with its output cosine, nodes and
INT8-eligible MACs left in higher precision (counted as TensorRT runs the result: a Conv/Gemm/MatMul is INT8 only
when its input and weights are both quantized), the precision they run in, the MAC-weighted compute against
all-INT8, and the quantize + evaluate cycles used; then the regression table: today's remedies (clean-up, Q/DQ
placement, calibration overrides, FP32 fallback) against all of them (+ equalization, FP16 fallback), both run in
this process on the same data, scored on held-out data by plain ONNX Runtime.

    python benchmarks/remedy_table.py [--models mobilenet-v2,efficientnet-lite0,ppocr-det,minilm,...]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import markdown_table  # noqa: E402

MODELS = "mobilenet-v2,efficientnet-lite0,ppocr-det,minilm,ppocr-cls,ppocr-rec,silero-vad-op15,oww-melspectrogram"
# (the README's table ran the first five: two diagnoses per model take 1-10 min each on 2 cores)
TODAY = ("cleanup", "placement", "overrides")


def data_for(name: str):
    """(model, calibration, evaluation, held-out or None, target) as the corpus benchmark and the zoo use them."""
    import workbench as wb
    from workbench.analysis.diagnose import Target
    from workbench.zoo import corpus

    if name in ("mobilenet-v2", "minilm"):
        model = wb.load_model(name)
        calib, data = model.zoo.calibration_data(), model.zoo.evaluation_data()
        heldout = None
        if name == "mobilenet-v2":
            from workbench.zoo.images import crops

            heldout = {model.inputs[0].name: crops(128, seed=23)}
        return model, calib, data, heldout, Target(cosine=0.98 if name == "minilm" else 0.99)
    m = corpus.get(name)
    model = wb.load_model(str(m.path()))
    return (model, m.dataset("calib"), m.dataset("eval"), m.dataset("heldout"), Target(cosine=0.99))


def main() -> None:
    import workbench as wb
    from workbench.analysis.diagnose import REMEDY_STEPS, diagnose

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    steps, regression = [], []
    for name in args.models.split(","):
        model, calib, data, heldout, target = data_for(name)
        results = {}
        for variant, remedies in (("today", TODAY), ("all", REMEDY_STEPS)):
            start = time.perf_counter()
            d = diagnose(model, wb.Recipe("int8"), calib, data, target, remedies=remedies, heldout=heldout,
                         progress=False)
            results[variant] = d
            held = d.heldout.to_dict() if d.heldout else {}
            regression.append({
                "model": name, "remedies": variant, "target": target.describe(), "met": d.met,
                "heldout_cosine": round(held["cosine"], 4) if "cosine" in held else None,
                "nodes_higher": d.cost.nodes_in_higher_precision, "of_nodes": d.quantized_nodes,
                "macs_higher": f"{d.cost.share_of_macs_in_higher_precision:.1%}",
                "precision": d.cost.higher_precision, "compute_vs_int8": round(d.cost.compute_vs_all_int8, 2),
                "cycles": d.evaluations, "cycle_budget": d.budget + d.remedies_tried,
                "seconds": round(time.perf_counter() - start)})
            print(regression[-1], file=sys.stderr, flush=True)
        d = results["all"]
        for r in d.remedies:
            steps.append({"model": name, "step": r.remedy[:110], "cosine": round(r.scores.cosine, 4), "met": r.met,
                          "nodes_higher": r.nodes_in_higher_precision})
        steps.append({"model": name, "step": f"final: {d.recipe.label}", "cosine": round(d.after.cosine, 4),
                      "met": d.met, "nodes_higher": d.cost.nodes_in_higher_precision})
    print("## Steps (all remedies)\n")
    print(markdown_table(steps))
    print("\n## Regression: today's remedies vs all\n")
    print(markdown_table(regression))


if __name__ == "__main__":
    main()
