"""Streaming calibration: the same ranges as ONNX Runtime's one-shot calibrators, in memory that does not grow
with the number of samples (real MNIST digits through the bundled mnist-cnn)."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from workbench.model.data import Dataset
from workbench.precision.calibration import calibrate, load_ranges, one_shot_ranges


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_streamed_ranges_match_onnxruntime(mnist, mnist_calib, method):
    """MinMax and entropy (histograms seeded with the global range) equal ORT exactly; percentile, whose histogram
    grows with the data, within one of its 2048 bins. Small batches force many merges."""
    data = mnist_calib.take(256)
    streamed = load_ranges(calibrate(mnist, data, method, progress=False, memory_budget_mb=0.5).path)
    reference = one_shot_ranges(mnist, data, method)
    assert set(streamed) == set(reference) and len(reference) > 5
    for tensor, (low, high) in reference.items():
        if method == "percentile":
            assert abs(streamed[tensor][1] - high) <= high / 2048 + 1e-12, tensor
        else:
            assert streamed[tensor] == (low, high), tensor


def _peak_rss_mb(mode: str, count: int, digits: np.ndarray, folder: Path) -> float:
    """Peak RSS of a fresh process that calibrates `count` digits with percentile (histograms of every tensor)."""
    np.savez(folder / f"x{count}.npz", x=np.resize(digits, (count, *digits.shape[1:])))
    code = f"""
import json
import numpy as np
import workbench as wb
from workbench.model.data import _read_npz, validate
model = wb.load_model("mnist-cnn")
data = validate({{model.inputs[0].name: _read_npz({str(folder / f"x{count}.npz")!r})["x"]}}, model.inputs)
if {mode!r} == "streamed":
    from workbench.precision.calibration import calibrate
    calibrate(model, data, "percentile", progress=False, memory_budget_mb=16)
else:
    from workbench.precision.calibration import one_shot_ranges
    one_shot_ranges(model, data, "percentile")
print(json.dumps(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024))
"""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "WORKBENCH_CACHE_DIR": cache})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_as_samples_grow(mnist_calib, tmp_path):
    """16x the samples: the streamed calibration's peak stays within 15 % (+ 20 MB of allocator noise), while ONNX
    Runtime's one-shot calibrator, which holds every tensor of every batch, grows by hundreds of MB."""
    digits = np.asarray(mnist_calib.inputs[next(iter(mnist_calib.inputs))])
    small = _peak_rss_mb("streamed", 256, digits, tmp_path)
    large = _peak_rss_mb("streamed", 4096, digits, tmp_path)
    ort_small = _peak_rss_mb("one-shot", 256, digits, tmp_path)
    ort_large = _peak_rss_mb("one-shot", 4096, digits, tmp_path)
    assert large <= small * 1.15 + 20, (small, large)
    assert ort_large - ort_small > 200, (ort_small, ort_large)  # the measurement can see growth


def test_calibration_follows_a_fixed_batch_and_shorter_last_batch(mnist, mnist_calib):
    """A last batch shorter than the others is merged like any other (ORT's one-shot histogram needed equal
    batches); the ranges are those of exactly the samples given."""
    data = mnist_calib.take(100)
    streamed = load_ranges(calibrate(mnist, data, "minmax", batch_size=32, progress=False).path)
    name = next(iter(data.inputs))
    x = np.asarray(data.inputs[name])
    assert streamed[name] == (-float(np.abs(x).max()), float(np.abs(x).max()))
    assert isinstance(data, Dataset)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_override_calibrates_only_its_tensors_with_the_same_ranges(mnist, mnist_calib, method):
    """A per-tensor override computes histograms (and entropy's KL search) for its tensors only; their ranges are
    those of the full calibration."""
    data = mnist_calib.take(128)
    full = load_ranges(calibrate(mnist, data, method, progress=False).path)
    chosen = sorted(full)[:2]
    subset = load_ranges(calibrate(mnist, data, method, progress=False, tensors=chosen).path)
    assert set(subset) == set(chosen)
    assert all(subset[t] == full[t] for t in chosen)


def _fp32_values(model, data, tensors):
    """The FP32 tensors by plain ONNX Runtime, one sample at a time (an independent reference)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(model.path)
    known = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.asarray(data.inputs[name])
    return [dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: x[i:i + 1]})))
            for i in range(len(x))]


def test_mean_minmax_is_the_mean_of_per_sample_ranges(mnist, mnist_calib):
    """Each tensor's range is (mean over samples of the sample's min, mean of its max), checked against plain ONNX
    Runtime run one digit at a time; and it is tighter than MinMax wherever samples differ."""
    data = mnist_calib.take(64)
    ranges = load_ranges(calibrate(mnist, data, "mean-minmax", progress=False, op_types=["Conv", "Gemm"]).path)
    minmax = load_ranges(calibrate(mnist, data, "minmax", progress=False, op_types=["Conv", "Gemm"]).path)
    runs = _fp32_values(mnist, data, list(ranges))
    assert set(ranges) == set(minmax) and len(ranges) >= 4
    for tensor, (low, high) in ranges.items():
        assert low == pytest.approx(np.mean([r[tensor].min() for r in runs]), rel=1e-5, abs=1e-6), tensor
        assert high == pytest.approx(np.mean([r[tensor].max() for r in runs]), rel=1e-5, abs=1e-6), tensor
        assert max(abs(low), abs(high)) <= max(map(abs, minmax[tensor])) + 1e-6
    assert sum(max(map(abs, ranges[t])) < 0.9 * max(map(abs, minmax[t])) for t in ranges) >= 2


def test_mse_range_has_the_least_int8_error(mnist, mnist_calib):
    """The MSE estimator's range gives less INT8 error (rounding + clipping, measured on the tensor's real values)
    than MinMax's range and than half of it, on every calibrated activation."""
    data = mnist_calib.take(64)
    ranges = load_ranges(calibrate(mnist, data, "mse", progress=False, op_types=["Conv", "Gemm"]).path)
    minmax = load_ranges(calibrate(mnist, data, "minmax", progress=False, op_types=["Conv", "Gemm"]).path)
    runs = _fp32_values(mnist, data, list(ranges))
    assert any(max(map(abs, ranges[t])) < 0.95 * max(map(abs, minmax[t])) for t in ranges), "MSE clips somewhere"

    def error(values, amax):
        scale = amax / 127.0
        return float(np.mean((np.clip(np.round(values / scale), -127, 127) * scale - values) ** 2))

    for tensor, (low, high) in ranges.items():
        values = np.concatenate([r[tensor].ravel() for r in runs]).astype(np.float64)
        amax, full = max(abs(low), abs(high)), max(map(abs, minmax[tensor]))
        assert 0 < amax <= full * (1 + 1e-6), tensor
        assert error(values, amax) <= 1.01 * min(error(values, full), error(values, full / 2)), tensor
