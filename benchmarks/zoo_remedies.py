"""What each remedy does to the real zoo models' task metrics (the README table). Prints numbers."""
from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads

import workbench as wb  # noqa: E402
from workbench.analysis.diagnose import Target, diagnose  # noqa: E402
from workbench.analysis.evaluate import mean_cosine, top1_agreement  # noqa: E402

CASES = [
    ("mobilenet-v2", wb.Recipe("int8", "minmax"), Target(metric=top1_agreement, metric_name="top1_agreement",
                                                          max_drop=0.05)),
    ("mobilenet-v2", wb.Recipe("int8", "percentile"), Target(cosine=0.99)),
    ("minilm", wb.Recipe("int8", placement="all"), Target(metric=mean_cosine, metric_name="embedding_cosine",
                                                          max_drop=0.02)),
    ("minilm", wb.Recipe("int8"), Target(metric=mean_cosine, metric_name="embedding_cosine", max_drop=0.02)),
]


def main() -> None:
    for name, recipe, target in CASES:
        model = wb.load_model(name)
        start = time.perf_counter()
        d = diagnose(model, recipe, model.zoo.calibration_data(), model.zoo.evaluation_data(), target, progress=False)
        print(f"\n{name} {recipe.label}, target {target.describe()} ({time.perf_counter() - start:.0f} s, "
              f"{d.evaluations} runs, {d.quantized_nodes} quantized nodes)")
        key = target.metric_name if target.metric is not None else "cosine"
        for r in d.remedies:
            print(f"  {r.remedy[:90]:90s} {key} {r.scores.value(key):.4f}  cosine "
                  f"{r.scores.cosine:.4f}  FP32 nodes {r.nodes_in_higher_precision}{'  MEETS' if r.met else ''}")
        print(f"  cost: {d.cost.share_of_macs_in_higher_precision:.1%} of INT8-eligible MACs in FP32")


if __name__ == "__main__":
    main()
