"""INT8 on CNNs: how much of the network the diagnosis keeps out of INT8, and what it scores on held-out data.

MobileNetV2 (zoo splits) and EfficientNet-Lite0 (corpus splits), target per-sample cosine 0.99, every final recipe
scored by plain ONNX Runtime (CPU, full optimizations) on a held-out split the search never saw. Prints one table.
Peers' numbers (NNCF accuracy control, measured in their own environment on the same splits) are in issue 26.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads

import workbench as wb  # noqa: E402
from workbench.analysis.diagnose import Target, diagnose  # noqa: E402
from workbench.analysis.evaluate import Evaluator  # noqa: E402


def splits(name: str):
    if name == "mobilenet-v2":
        model = wb.load_model(name)
        zoo = model.zoo
        return model, zoo.calibration_data(), zoo.evaluation_data(), zoo.heldout_data()
    from workbench.zoo import corpus

    entry = corpus.get(name)
    model = wb.load_model(str(entry.path()))
    return model, *(entry.dataset(s, model.inputs) for s in corpus.SPLITS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["mobilenet-v2", "efficientnet-lite0"])
    parser.add_argument("--search", nargs="+", default=["local", "measured"], help="search strategies to compare")
    parser.add_argument("--task", default="auto", choices=("auto", "none"),
                        help="none: the target is the per-sample cosine alone (as in issue 26's peer table)")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        model, calib, data, heldout = splits(name)
        for search in args.search:
            start = time.perf_counter()
            d = diagnose(model, wb.Recipe("int8"), calib, data, Target(cosine=0.99), heldout=heldout,
                         progress=False, search=search, task=None if args.task == "none" else "auto")
            seconds = time.perf_counter() - start
            h = d.heldout.to_dict()
            top1 = Evaluator(model, calib, heldout, task="auto").score(d.recipe).metrics.get("top1_agreement")
            rows.append((name, search, d.after.cosine, h["simulated"]["cosine"], h["cosine"], h.get("cosine_worst"),
                         top1, d.cost.share_of_macs_in_higher_precision,
                         len(d.fallback) + len(d.collateral), d.quantized_nodes, d.evaluations, d.ranking_runs,
                         seconds, d.met))
            print(f"[{name}, {search}] {d.explanation}", flush=True)
    print("\neval cos: per-sample cosine mean on the evaluation data (simulated Q/DQ, what TensorRT computes); held "
          "sim: the same on held-out data; held ORT: held-out as ONNX Runtime CPU deploys it (integer kernels, this "
          "CPU), with its worst sample; top1: top-1 agreement with FP32 on held-out data (simulated)")
    print(f"{'model':20s} {'search':10s} {'eval cos':>8s} {'held sim':>8s} {'held ORT':>8s} {'worst':>7s} {'top1':>6s} "
          f"{'MACs out':>8s} {'ops out':>10s} {'cycles':>6s} {'ranking':>7s} {'time':>6s} met")
    for r in rows:
        r = [v if v is not None else float("nan") for v in r]
        print(f"{r[0]:20s} {r[1]:10s} {r[2]:8.4f} {r[3]:8.4f} {r[4]:8.4f} {r[5]:7.4f} {r[6]:6.3f} {r[7]:8.1%} "
              f"{r[8]:>3d} of {r[9]:<3d} {r[10]:6d} {r[11]:7d} {r[12]:5.0f}s {r[13]}")


if __name__ == "__main__":
    main()
