"""INT8 calibration ranges through ONNX Runtime's calibrators, cached so re-quantizing costs no inference."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.model.data import Dataset
from workbench.model.loading import ModelHandle

# Entropy needs a fine histogram: ORT's quantize_static leaves num_bins at 128, where entropy == MinMax.
ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 128}
PERCENTILE_BINS = 2048
STREAMING_VERSION = 4  # batches merged one at a time into ORT's running ranges / histograms
# Per calibration batch: the calibrator's outputs for one batch (for histogram methods every calibrated tensor)
# stay within this; histograms merge batch by batch, so memory does not grow with the number of samples.
CALIBRATION_BUDGET_MB = 256.0


@dataclass
class CalibrationResult:
    path: Path  # ORT's TensorsData JSON (onnxruntime.quantization.calibrate.save_tensors_data)
    method: str
    from_cache: bool
    seconds: float
    samples: int


def ort_method(method: str):
    """The ONNX Runtime method a calibration is tagged with: ORT's quantizer reads only each tensor's range, so the
    estimators ORT lacks (mean-minmax, mse) are stored as MinMax ranges."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}.get(method, CalibrationMethod.MinMax)


def _calibrator_options(method: str, percentile: float) -> dict:
    options: dict = {"symmetric": method != "mean-minmax"}  # per-sample low and high are averaged apart
    if method in ("entropy", "mse"):
        options.update(ENTROPY_OPTIONS)
    elif method == "percentile":
        options.update(num_bins=PERCENTILE_BINS, percentile=float(percentile))
    return options


def calibration_key(model: ModelHandle, data: Dataset, method: str, percentile: float, batch_size: int,
                    op_types: list[str] | None, memory_budget_mb: float = CALIBRATION_BUDGET_MB,
                    tensors: Sequence[str] | None = None) -> str:
    import onnxruntime

    return cache.digest("calibration", STREAMING_VERSION, model.sha256, data.fingerprint(), method,
                        _calibrator_options(method, percentile), batch_size, memory_budget_mb, op_types,
                        onnxruntime.__version__, sorted(tensors) if tensors else None)


def calibrate(
    model: ModelHandle, data: Dataset, method: str = "minmax", percentile: float = 99.99, batch_size: int = 32,
    progress: bool = True, op_types: list[str] | None = None, memory_budget_mb: float = CALIBRATION_BUDGET_MB,
    tensors: Sequence[str] | None = None,
) -> CalibrationResult:
    """Ranges for the float tensors around `op_types` (None: every float tensor of the FP32 graph), streamed: ONNX
    Runtime's calibrator sees one batch at a time and merges it into its running min/max or histograms (2048 bins
    for entropy and percentile), so memory is one batch's tensors plus the histograms, whatever the sample count.
    MinMax equals ONNX Runtime's one-shot result exactly; the histogram methods re-bin when a later batch widens
    the range, as ORT's own collector does, so they match it within the histogram's resolution.

    Two estimators ONNX Runtime lacks, on the same collectors: `mean-minmax`, the mean over samples of each
    sample's min and max (NNCF's default for activations: one outlier sample no longer sets the range; ORT's
    MinMax collector run on one sample at a time), and `mse`, per tensor the range whose INT8 rounding plus
    clipping error is least on the data (from the same 2048-bin histogram as entropy, as ModelOpt's MSE
    calibrator computes it from its histogram).

    A cache hit returns without running the model, so re-quantizing with other exclusions costs no inference.
    `tensors` limits a histogram method to those tensors (a per-tensor override): ORT picks each tensor's
    entropy threshold in Python, about 80 s for MobileNetV2's 100-odd tensors, so an override of 8 tensors
    should not pay for all of them. Each tensor's range is the same as in a full calibration.
    """
    start = time.perf_counter()
    tensors = sorted(tensors) if tensors and method != "minmax" else None
    key = calibration_key(model, data, method, percentile, batch_size, op_types, memory_budget_mb, tensors)
    path = cache.artifact_path("calibration", key, ".json")
    if path.exists():
        return CalibrationResult(path, method, True, time.perf_counter() - start, len(data))
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from workbench.core.log import quiet_onnxruntime
    from workbench.core.progress import Steps

    # Entropy needs ORT's one-shot histogram (2048 bins over the global range): a histogram that grows batch by
    # batch ends up finer than that and moves the KL threshold by up to 15 % (measured on mnist-cnn). So the
    # global range comes first, from the (cached, cheap) streamed MinMax pass, and seeds the histograms.
    seed = load_ranges(calibrate(model, data, "minmax", percentile, batch_size, progress, op_types,
                                 memory_budget_mb).path) if method in ("entropy", "mse") else None
    bar = Steps(len(data), f"calibrating ({method})", "sample", progress)
    with tempfile.TemporaryDirectory(prefix="workbench-calib-") as tmp, quiet_onnxruntime(), bar:
        try:
            calibrator = create_calibrator(
                Path(model.path), op_types, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=ort_method("entropy" if method == "mse" else method),  # mse: entropy's histograms
                extra_options=_calibrator_options(method, percentile),
            )
            step = _streaming_step(model, data, method, batch_size, memory_budget_mb)
            if tensors is not None:
                calibrator.tensors_to_calibrate = set(calibrator.tensors_to_calibrate) & set(tensors)
            if seed is not None:
                _seed_histograms(calibrator, seed)
            if method == "mean-minmax":
                ranges = _mean_minmax(calibrator, data, data.fixed_batch or 1, bar)
            else:
                for start in range(0, len(data), step):
                    calibrator.collect_data(_OneBatch(data.feed(start, step)))  # merged into running ranges/histograms
                    bar.update(min(step, len(data) - start))
                ranges = _mse_ranges(calibrator) if method == "mse" else calibrator.compute_data()
        except Exception as exc:
            raise WorkbenchError(f"calibration ({method}) failed inside ONNX Runtime: "
                                 f"{one_line(exc)}") from None
    with cache.atomic_file(path) as tmp:
        save_tensors_data(ranges, tmp)
    return CalibrationResult(path, method, False, time.perf_counter() - start, len(data))


def _mean_minmax(calibrator, data: Dataset, step: int, bar) -> Any:
    """Each tensor's (mean over samples of the sample's min, mean of its max): ORT's MinMax collector run on one
    sample at a time (a fixed batch at a time where the model fixes it), its running range reset before each."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    sums: dict[str, np.ndarray] = {}
    count = 0
    for start in range(0, len(data), step):
        calibrator.calibrate_tensors_range = None
        calibrator.collect_data(_OneBatch(data.feed(start, step)))
        for name, value in calibrator.calibrate_tensors_range.data.items():
            low, high = value.range_value
            pair = np.array([np.min(low), np.max(high)], np.float64)
            sums[name] = sums.get(name, 0.0) + pair
        count += 1
        bar.update(min(step, len(data) - start))
    return TensorsData(ort_method("minmax"), {name: TensorData(lowest=np.array(s[0] / count, np.float32),
                                                              highest=np.array(s[1] / count, np.float32))
                                             for name, s in sums.items()})


# The MSE search starts at this share of the observed range (ModelOpt's start bin 128 of 2048 bins of |x|).
MSE_START = 1 / 16


def _mse_ranges(calibrator) -> Any:
    """Per tensor, the symmetric range minimizing the mean squared INT8 error (rounding inside, clipping outside)
    over its value histogram, every bin edge of |x| from MSE_START of the observed maximum up a candidate."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    out = {}
    for name, (counts, edges, *_rest) in calibrator.collector.histogram_dict.items():
        counts, edges = np.asarray(counts, np.float64), np.asarray(edges, np.float64)
        centres = np.abs(0.5 * (edges[1:] + edges[:-1]))
        amax = float(np.abs(edges).max())
        if amax <= 0 or counts.sum() == 0:
            out[name] = TensorData(lowest=np.array(-amax, np.float32), highest=np.array(amax, np.float32))
            continue
        candidates = np.unique(np.abs(edges))
        candidates = candidates[candidates >= MSE_START * amax]
        scale = candidates[:, None] / 127.0
        quantized = np.minimum(np.round(centres[None, :] / scale), 127.0) * scale
        errors = ((quantized - centres[None, :]) ** 2) @ counts
        best = float(candidates[int(np.argmin(errors))])
        out[name] = TensorData(lowest=np.array(-best, np.float32), highest=np.array(best, np.float32))
    return TensorsData(ort_method("minmax"), out)


class _OneBatch:
    """A CalibrationDataReader over one feed: each `collect_data` call then merges one batch into the calibrator's
    running state (MinMax: ranges; histogram methods: ORT's HistogramCollector) and drops the batch's tensors,
    instead of holding every intermediate tensor of every batch until the end, as one call over all data does."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self._feed = self._feed, None
        return feed


def _seed_histograms(calibrator, ranges: dict[str, tuple[float, float]]) -> None:
    """Empty 2048-bin histograms over each tensor's global [-amax, amax], min/max at ±inf: every batch then adds to
    the same bins (ORT's merge when the range does not grow), which sums to exactly the histogram ORT computes at
    once over all samples, and the tracked min/max end as the data's own."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    calibrator.collector = HistogramCollector(
        method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
        scenario=calibrator.scenario)
    for tensor in calibrator.tensors_to_calibrate:
        if tensor not in ranges:
            continue
        threshold = np.float32(max(abs(ranges[tensor][0]), abs(ranges[tensor][1])))
        counts, edges = np.histogram(np.zeros(0, np.float32), calibrator.num_bins, range=(-threshold, threshold))
        calibrator.collector.histogram_dict[tensor] = (counts, edges, np.float32(np.inf), np.float32(-np.inf),
                                                       threshold)


def _streaming_step(model: ModelHandle, data: Dataset, method: str, batch_size: int, memory_budget_mb: float) -> int:
    """Samples per batch: the fixed batch, else as many as fit `memory_budget_mb`. What a batch costs is the
    model's activations (ONNX Runtime keeps most of them alive in the calibration graph: measured 2.2 GB at batch 32
    on MobileNetV2 for MinMax), twice for histogram methods, whose calibration graph also outputs each of them."""
    if data.fixed_batch:
        return data.fixed_batch
    per_sample = _activation_bytes(model, data.feed(0, 1)) * (1 if method == "minmax" else 2)
    return int(max(1, min(batch_size, len(data), memory_budget_mb * 2**20 // max(per_sample, 1))))


def _activation_bytes(model: ModelHandle, feed: dict[str, np.ndarray]) -> int:
    """Bytes of every node output of the main graph for this feed (one run with all of them marked)."""
    from workbench.graph.topology import markable_outputs
    from workbench.runtime import get_backend

    with get_backend().build_marked(model.path, markable_outputs(model.proto.graph), name="activation bytes") as engine:
        return sum(np.asarray(v).nbytes for v in engine.infer(feed).values())


def one_shot_ranges(model: ModelHandle, data: Dataset, method: str, percentile: float = 99.99,
                    op_types: list[str] | None = None, batch_size: int = 32) -> dict[str, tuple[float, float]]:
    """ONNX Runtime's calibrator as its documentation drives it (one collect_data over every batch, all their
    tensors held until the end): the reference the streamed ranges are checked and benchmarked against."""
    from onnxruntime.quantization.calibrate import create_calibrator

    from workbench.core.log import quiet_onnxruntime

    batches = iter(list(data.batches(batch_size)))

    class Reader:
        def get_next(self):
            return next(batches, None)

    with tempfile.TemporaryDirectory(prefix="workbench-calib-") as tmp, quiet_onnxruntime():
        calibrator = create_calibrator(Path(model.path), op_types, augmented_model_path=f"{tmp}/augmented.onnx",
                                       calibrate_method=ort_method(method),
                                       extra_options=_calibrator_options(method, percentile))
        calibrator.collect_data(Reader())
        result = calibrator.compute_data()
    return {k: (float(np.min(v.range_value[0])), float(np.max(v.range_value[1]))) for k, v in result.data.items()}


def load_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """Tensor name → (low, high) from a cached calibration file."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(path)
    return {name: (float(np.min(r.range_value[0])), float(np.max(r.range_value[1])))
            for name, r in data.data.items()}


def merged_ranges(base: CalibrationResult, overrides: dict[str, CalibrationResult]) -> Path:
    """The base method's ranges with chosen tensors' ranges taken from other methods (cached by content).

    Tagged with the base method, which is what ORT's quantizer checks; each tensor's range is what it uses."""
    from onnxruntime.quantization.calibrate import TensorsData, load_tensors_data, save_tensors_data

    key = cache.digest("merged-calibration", base.path.name, sorted((t, r.path.name) for t, r in overrides.items()))
    path = cache.artifact_path("calibration", key, ".json")
    if not path.exists():
        data = load_tensors_data(base.path)
        merged = dict(data.data)
        loaded: dict[Path, Any] = {}
        for tensor, result in overrides.items():
            source = loaded.setdefault(result.path, load_tensors_data(result.path))
            if tensor not in source.data:
                raise WorkbenchError(f"calibration override: tensor '{tensor}' is not calibrated (not an input of a "
                                     "quantized op); check the name in the per-layer report")
            merged[tensor] = source.data[tensor]
        with cache.atomic_file(path) as tmp:
            save_tensors_data(TensorsData(data.calibration_method, merged), tmp)
    return path


def histogram(model: ModelHandle, data: Dataset, tensor: str, bins: int = 256, batch_size: int = 32
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Histogram of one FP32 activation over `data` (for the clipping-range plot): counts, edges, max |value|."""
    from workbench.runtime import marked_outputs

    values = np.concatenate([out[tensor].ravel() for out in marked_outputs(model.path, [tensor], data, batch_size,
                                                                            f"histogram:{tensor}")])
    amax = float(np.abs(values).max()) if values.size else 0.0
    counts, edges = np.histogram(values, bins=bins, range=(-amax, amax) if amax else None)
    return counts, edges, amax


def method_ranges(model: ModelHandle, data: Dataset, tensor: str, op_types: list[str] | None,
                  percentile: float = 99.99) -> dict[str, float]:
    """The symmetric range (amax) each calibration method gives `tensor` (all cached after the first call)."""
    out = {}
    for method in ("minmax", "entropy", "percentile"):
        ranges = load_ranges(calibrate(model, data, method, percentile, progress=False, op_types=op_types,
                                       tensors=None if method == "minmax" else [tensor]).path)
        if tensor in ranges:
            out[method if method != "percentile" else f"percentile {percentile:g}"] = max(map(abs, ranges[tensor]))
    return out
