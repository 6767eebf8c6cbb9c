"""The real-world corpus table: every model through the CLI as a user runs it (third-party .onnx + .npz data).

Columns: build fp16 / int8 / bf16 (exit code, and for fp16 how many nodes stayed FP32), lint of the int8 model,
compare int8 (worst output cosine on the evaluation split; integer outputs such as labels are scored by agreement
and left out), diagnose --target-cosine 0.99 (evaluation cosine with simulated Q/DQ, nodes and share of
INT8-eligible MACs in higher precision, weight bits, quantize+evaluate cycles, the evaluation cosine as ONNX Runtime
CPU deploys it), the held-out cosine of the diagnosed recipe (plain ONNX Runtime, full graph optimizations; and
simulated Q/DQ beside it), wall time and peak RSS of the slowest command.

    python benchmarks/corpus.py [--models a,b] [--markdown]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.zoo import corpus  # noqa: E402

# The CLI in a child that records its own peak RSS (VmHWM) on exit: wait4's ru_maxrss would also carry this
# process's RSS at fork time (Linux keeps the pre-exec high-water mark), and this process holds the corpus data.
CLI_WITH_PEAK = """
import atexit, os, sys
def _peak():
    with open(os.environ["CORPUS_BENCH_PEAK"], "w") as f:
        f.write(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
atexit.register(_peak)
from workbench.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_measured(*args: str) -> tuple[int, dict | None, float, float]:
    """(exit code, JSON stdout, seconds, peak RSS in MB of that command alone)."""
    with tempfile.NamedTemporaryFile(prefix="corpus-peak-") as peak:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CLI_WITH_PEAK, *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env={**os.environ, "CORPUS_BENCH_PEAK": peak.name})
        seconds = time.perf_counter() - start
        text = Path(peak.name).read_text().strip()
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        data = {"not_json": True}
    return proc.returncode, data, seconds, int(text) / 1024 if text else float("nan")


def model_row(m: corpus.CorpusModel, work: Path) -> dict:
    extra = list(m.cli) + (["--shapes", *m.shapes] if m.shapes else [])
    data = ["--calib-data", m.npz("calib")]
    row: dict = {"model": m.name, "family": m.family}
    times, peaks = [], []
    for precision in ("fp16", "int8", "bf16"):
        code, out, s, mb = run_measured("build", m.path(), "--precision", precision, *data, "-o", work / precision,
                                        *extra)
        times.append(s), peaks.append(mb)
        row[f"build_{precision}"] = code if code else (f"ok ({len(out['kept_in_fp32'])} kept FP32)"
                                                      if precision == "fp16" else "ok")
    code, out, s, mb = run_measured("lint", work / "int8" / "model.onnx")
    rules = sorted({f["rule"] for f in out["findings"]}) if out and "findings" in out else []
    row["lint_int8"] = "clean" if code == 0 else f"{len(out['findings'])} × {', '.join(rules)}" if out else f"exit {code}"
    code, out, s, mb = run_measured("compare", m.path(), "--precision", "int8", *data, "--eval-data", m.npz("eval"),
                                    "--no-framework", *extra)
    times.append(s), peaks.append(mb)
    if code == 0:
        signals = [o for o in out["outputs"] if "agreement" not in o] or out["outputs"]
        row["compare_int8_cosine"] = round(min(o["cosine"] for o in signals), 4)
    else:
        row["compare_int8_cosine"] = f"exit {code}"
    code, out, s, mb = run_measured("diagnose", m.path(), *data, "--eval-data", m.npz("eval"), "--heldout-data",
                                    m.npz("heldout"), "--target-cosine", "0.99", *extra)
    times.append(s), peaks.append(mb)
    if out and "after" in out:
        row.update(diagnose=f"{'met' if out['met'] else 'missed'} {out['after']['cosine']:.4f}",
                   higher_precision=f"{out['cost']['nodes_in_higher_precision']} nodes, "
                                    f"{out['cost']['share_of_macs_in_higher_precision']:.0%} MACs",
                   weight_bits=out["recipe"].get("weight_bits", 8), cycles=out["evaluations"],
                   deployed_eval_cosine=round(out["deployment"]["cosine"], 4) if out.get("deployment") else "",
                   heldout_cosine=round(out["heldout"]["cosine"], 4),
                   heldout_simulated=round(out["heldout"]["simulated"]["cosine"], 4), heldout_met=out["heldout"]["met"])
    else:
        row.update(diagnose=f"exit {code}")
    row.update(slowest_s=round(max(times), 1), peak_rss_mb=round(max(peaks)))
    return row


def corpus_row(name: str, work: str) -> dict:
    """One model's row, as an executor task (the model is found by name wherever the task runs)."""
    return model_row(corpus.get(name), Path(work))


def main() -> None:
    import pandas as pd

    from workbench.core.executor import EXECUTORS, Task, get_executor

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(corpus.names()))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="one task per model; ray: in parallel on a local cluster or $RAY_ADDRESS (timings then "
                             "share the machine)")
    args = parser.parse_args()
    names = args.models.split(",")
    rows: list = [None] * len(names)
    with tempfile.TemporaryDirectory(prefix="workbench-corpus-") as tmp, get_executor(args.executor) as executor:
        for i, row in executor.run([Task(corpus_row, (name, str(Path(tmp) / name))) for name in names]):
            rows[i] = row
            print(json.dumps(row), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows, dtype=object).drop(columns=["family"]).fillna("")
    if args.markdown:
        lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
        print("\n".join(lines))
    else:
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
