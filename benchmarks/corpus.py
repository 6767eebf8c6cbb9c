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
        if precision == "fp16" and code == 0:
            _, _, means, worsts = heldout_cosines(m, work / "fp16" / "model.onnx")
            row["fp16 held-out mean / worst"] = f"{min(means):.5f} / {min(worsts):.5f}"
    code, out, s, mb = run_measured("lint", work / "int8" / "model.onnx")
    rules = sorted({f["rule"] for f in out["findings"]}) if out and "findings" in out else []
    row["lint_int8"] = "clean" if code == 0 else f"{len(out['findings'])} × {', '.join(rules)}" if out else f"exit {code}"
    code, out, s, mb = run_measured("compare", m.path(), "--precision", "int8", *data, "--eval-data", m.npz("eval"),
                                    "--no-framework", *extra)
    times.append(s), peaks.append(mb)
    if code == 0:
        v = out["verdict"]
        row["int8 pooled / mean / worst"] = f"{v['pooled_cosine']:.4f} / {v['cosine']:.4f} / {v['cosine_worst']:.4f}"
        row["int8 task"] = _task_cell(out.get("task"), v)
        row["evaluation"] = "one at a time" if out["evaluation"].get("coupled") else "batched"
    else:
        row["int8 pooled / mean / worst"] = f"exit {code}"
    code, out, s, mb = run_measured("diagnose", m.path(), *data, "--eval-data", m.npz("eval"), "--heldout-data",
                                    m.npz("heldout"), "--target-cosine", "0.99", *extra)
    times.append(s), peaks.append(mb)
    if out and "after" in out:
        held = out["heldout"]
        independent = independent_heldout(m, out, work / "diagnosed", extra)
        row.update(diagnose=f"{'met' if out['met'] else 'missed'} {out['after']['cosine']:.4f}",
                   **{"held-out pooled / mean / worst": f"{held['pooled_cosine']:.4f} / {held['cosine']:.4f} / "
                                                          f"{held['cosine_worst']:.4f}",
                      "held-out task": _task_cell(out.get("task"), held),
                      "independent mean / worst / task": independent["cell"],
                      "agrees": out["met"] == independent["met"]},
                   higher_precision=f"{out['cost']['nodes_in_higher_precision']} nodes, "
                                    f"{out['cost']['share_of_macs_in_higher_precision']:.0%} MACs",
                   weight_bits=out["recipe"].get("weight_bits", 8), cycles=out["evaluations"],
                   deployed_eval_cosine=round(out["deployment"]["cosine"], 4) if out.get("deployment") else "",
                   heldout_met=held["met"])
    else:
        row.update(diagnose=f"exit {code}")
    row.update(slowest_s=round(max(times), 1), peak_rss_mb=round(max(peaks)))
    return row


def _task_cell(task: dict | None, scores: dict) -> str:
    if not task:
        return "none"
    value = scores.get(task["primary"])
    return f"{task['primary']} {value:.3f}" if value is not None else task["primary"]


def independent_heldout(m: corpus.CorpusModel, diagnosis: dict, out: Path, extra: list[str]) -> dict:
    """The diagnosed recipe rebuilt with its own `reproduce` line and scored here on the held-out split by plain
    ONNX Runtime (default optimizations) against the FP32 file, one sample at a time (as deployed), with NumPy:
    per-sample cosine per output (an Ultralytics head's boxes and class scores apart, read from its metadata; mean ≥
    target and worst ≥ floor) and the task's primary metric. Met when all three hold: the verdict the diagnosis
    must agree with."""
    import shlex

    from workbench.analysis.tasks import make_task
    from workbench.model.loading import from_onnx

    line = shlex.split(diagnosis["reproduce"])[1:]  # without "workbench"
    line[line.index("-o") + 1] = str(out)
    code, _, _, _ = run_measured(*line)
    if code:
        return {"cell": f"build exit {code}", "met": False}
    reference, candidate, means, worsts = heldout_cosines(m, out / "model.onnx")
    target = diagnosis["target"]
    met = min(means) >= target["cosine"] and min(worsts) >= target["floor_cosine"]
    cell = f"{min(means):.4f} / {min(worsts):.4f}"
    task = diagnosis.get("task")
    if task:
        judged = make_task(task["kind"] if task["kind"] != "segmentation" else "segmentation", from_onnx(m.path()))
        value = judged.evaluate(candidate, reference).metrics[task["primary"]]
        met = met and value >= task["default_min"] - 1e-12
        cell += f" / {value:.3f}"
    return {"cell": cell, "met": bool(met)}


def heldout_cosines(m: corpus.CorpusModel, path: Path) -> tuple[dict, dict, list[float], list[float]]:
    """The FP32 file and the artifact at `path` on the held-out split, by plain ONNX Runtime one sample at a time:
    their outputs and, per float output (an Ultralytics head's boxes and class scores apart, read from its
    metadata), the mean and the worst per-sample cosine (an empty reference or one value per sample: its error
    against the dataset's typical energy)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from workbench.analysis.evaluate import OutputCollector

    data = m.dataset("heldout")
    results = []
    for model in (m.path(), path):
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        collected = OutputCollector()
        for i in range(len(data)):
            collected.add(dict(zip(names, session.run(None, data.feed(i, data.batch_size(1))))),
                          data.batch_size(1), 1)
        results.append(collected.result())
    reference, candidate = results
    meta = {p.key: p.value for p in onnx.load(str(m.path()), load_external_data=False).metadata_props}
    parts = []
    for name, ref in reference.items():
        if not np.issubdtype(np.asarray(ref).dtype, np.floating) or np.ndim(ref) == 0:
            continue
        ref, cand = np.asarray(ref), np.asarray(candidate[name])
        if meta.get("task") == "detect" and ref.ndim == 3:  # Ultralytics' head: pixel boxes 0:4, class scores 4:
            parts += [(ref[:, :4], cand[:, :4]), (ref[:, 4:], cand[:, 4:])]
        else:
            parts.append((ref, cand))
    means, worsts = [], []
    for ref, cand in parts:
        r = np.asarray(ref, np.float64).reshape(len(ref), -1)
        c = np.asarray(cand, np.float64).reshape(len(r), -1)
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
        typical = np.mean(np.sum(r * r, 1))
        empty = (np.sum(r * r, 1) < 1e-4 * typical) | (r.shape[1] == 1)
        cos = np.where(empty, 1 - np.sum((r - c) ** 2, 1) / (2 * typical),
                       np.sum(r * c, 1) / np.maximum(norms, 1e-300))
        means.append(float(cos.mean()))
        worsts.append(float(cos.min()))
    return reference, candidate, means, worsts


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
