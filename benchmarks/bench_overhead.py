"""The workbench's own timing overhead: workbench p50 vs a bare onnxruntime `session.run` loop on the same model,
settings and inputs, interleaved in one run (target ratio <= 1.05)."""
from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")  # time the runs, not cache reads

import onnxruntime as ort  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.analysis.bench import batch_feed, measure  # noqa: E402
from workbench.runtime import get_backend  # noqa: E402


def bare_loop(session: ort.InferenceSession, feed: dict, iterations: int) -> list[float]:
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def main() -> None:
    model = wb.load_model("mnist-cnn")
    data = model.zoo.evaluation_data()
    backend = get_backend(threads=1, optimization="all")
    for batch in (1, 8):
        feed = batch_feed(data, batch)
        engine = backend.build(model.path)
        session = ort.InferenceSession(str(model.path), backend.session_options(), providers=["CPUExecutionProvider"])
        bare_loop(session, feed, 50)
        ours, bare = [], []
        for _ in range(10):  # interleave rounds so drift hits both sides alike
            ours += measure(engine, feed, iterations=200, warmup=20).host_ms
            bare += bare_loop(session, feed, 200)
        p50_ours, p50_bare = statistics.median(ours), statistics.median(bare)
        print(f"mnist-cnn fp32 batch {batch} (ONNX Runtime CPU, 1 thread): workbench p50 {p50_ours * 1000:.1f} us, "
              f"bare session.run p50 {p50_bare * 1000:.1f} us, ratio {p50_ours / p50_bare:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
