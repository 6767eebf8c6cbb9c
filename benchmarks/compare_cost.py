"""Cost of per-layer comparison and diagnosis. Prints numbers; targets: compare ≤ 3× a plain run of both models,
diagnose within ⌈log2 N⌉ + 3 runs, and the peak memory of compare at batch 32 (streamed, so flat in samples)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads

import workbench as wb  # noqa: E402
from workbench.analysis.compare import compare  # noqa: E402
from workbench.analysis.diagnose import diagnose  # noqa: E402
from workbench.analysis.evaluate import run  # noqa: E402
from workbench.runtime import get_backend  # noqa: E402
from workbench.zoo.planted import digits, planted  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def compare_vs_plain() -> None:
    model = wb.load_model("mnist-cnn")
    data = model.zoo.evaluation_data()
    backend = get_backend()
    for placement in ("tensorrt", "all"):
        t = wb.apply(model, wb.Recipe("int8", placement=placement), model.zoo.calibration_data(), progress=False)
        ref, cand = backend.build(model.path), backend.build(t.path)
        plain = best_of(lambda: (run(ref, data, 32), run(cand, data, 32)))
        for local in (False, True):
            full = best_of(lambda: compare(t, data, backend, batch_size=32, framework=False, progress=False,
                                           local_sensitivity=local))
            print(f"compare mnist-cnn int8[{placement}] {'with' if local else 'without'} local sensitivity, "
                  f"{len(data)} samples, batch 32: {full:.3f} s vs plain run of both models {plain:.3f} s = "
                  f"{full / plain:.2f}x (target <= 3x; includes engine builds and every-tensor marking)")


def diagnose_cost() -> None:
    cases = [("planted single outlier", planted((1,))), ("planted spread over 3 layers", planted((0, 1, 2)))]
    for label, (spec, model) in cases:
        t = time.perf_counter()
        d = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), progress=False)
        print(f"diagnose {label}: {d.evaluations} runs (budget {d.budget}, N={d.quantized_nodes}), "
              f"{time.perf_counter() - t:.2f} s, fallback {d.fallback}, cosine {d.before.cosine:.3f} -> "
              f"{d.after.cosine:.4f}")
    model = wb.load_model("mnist-cnn")
    t = time.perf_counter()
    d = diagnose(model, wb.Recipe("int8", placement="all"), model.zoo.calibration_data(),
                 model.zoo.evaluation_data(), wb.Target(cosine=0.99999), progress=False)
    print(f"diagnose mnist-cnn int8[all], target cosine 0.99999: {d.evaluations} runs (budget {d.budget}), "
          f"{time.perf_counter() - t:.2f} s, fallback {d.fallback}")


MEMORY_CHILD = """
import sys
import workbench as wb
from workbench.analysis.compare import compare
from workbench.analysis.evaluate import run
from workbench.runtime import get_backend
m = wb.load_model("mnist-cnn")
data = m.zoo.evaluation_data().take(int(sys.argv[2]))
t = wb.apply(m, wb.Recipe("int8"), m.zoo.calibration_data(), progress=False)
if sys.argv[1] == "compare":
    compare(t, data, batch_size=32, framework=False, progress=False)
else:
    run(get_backend().build(m.path), data, 32); run(get_backend().build(t.path), data, 32)
# VmHWM, not ru_maxrss: ru_maxrss survives fork+exec and would report the parent's peak.
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""


def peak_memory() -> None:
    for samples in (256, 1000):
        peaks = {}
        for mode in ("plain", "compare"):
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, mode, str(samples)], capture_output=True,
                                 text=True, check=True, env=os.environ)
            peaks[mode] = float(out.stdout.split()[-1])
        print(f"peak RSS (VmHWM), mnist-cnn int8, batch 32, {samples} samples: compare {peaks['compare']:.0f} MB, plain run "
              f"of both models {peaks['plain']:.0f} MB (+{peaks['compare'] - peaks['plain']:.0f} MB)")


if __name__ == "__main__":
    compare_vs_plain()
    diagnose_cost()
    peak_memory()
