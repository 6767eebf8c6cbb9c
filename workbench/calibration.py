"""INT8 calibration ranges through ONNX Runtime's calibrators, cached so re-quantizing costs no inference."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import cache
from .data import Dataset
from .errors import WorkbenchError, one_line
from .model import ModelHandle

# Entropy needs a fine histogram: ORT's quantize_static leaves num_bins at 128, where entropy == MinMax.
ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 128}
PERCENTILE_BINS = 2048


@dataclass
class CalibrationResult:
    path: Path  # ORT's TensorsData JSON (onnxruntime.quantization.calibrate.save_tensors_data)
    method: str
    from_cache: bool
    seconds: float
    samples: int


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def _calibrator_options(method: str, percentile: float) -> dict:
    options: dict = {"symmetric": True}
    if method == "entropy":
        options.update(ENTROPY_OPTIONS)
    elif method == "percentile":
        options.update(num_bins=PERCENTILE_BINS, percentile=float(percentile))
    return options


def calibration_key(model: ModelHandle, data: Dataset, method: str, percentile: float, batch_size: int,
                    op_types: list[str] | None) -> str:
    import onnxruntime

    return cache.digest("calibration", model.sha256, data.fingerprint(), method,
                        _calibrator_options(method, percentile), batch_size, op_types, onnxruntime.__version__)


def calibrate(
    model: ModelHandle, data: Dataset, method: str = "minmax", percentile: float = 99.99, batch_size: int = 32,
    progress: bool = True, op_types: list[str] | None = None,
) -> CalibrationResult:
    """Ranges for the float tensors around `op_types` (None: every float tensor of the FP32 graph).

    A cache hit returns without running the model, so re-quantizing with other exclusions costs no inference.
    """
    start = time.perf_counter()
    key = calibration_key(model, data, method, percentile, batch_size, op_types)
    path = cache.artifact_path("calibration", key, ".json")
    if path.exists():
        return CalibrationResult(path, method, True, time.perf_counter() - start, len(data))
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator, save_tensors_data
    from tqdm.auto import tqdm

    batches = list(data.batches(_even_batch(data, batch_size)))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tqdm(batches, desc=f"calibrating ({method})", unit="batch", disable=not progress,
                                 leave=False))

        def get_next(self):
            return next(self._it, None)

    from .quantize import quiet

    with tempfile.TemporaryDirectory(prefix="workbench-calib-") as tmp, quiet():
        try:
            calibrator = create_calibrator(
                Path(model.path), op_types, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=_ort_method(method), extra_options=_calibrator_options(method, percentile),
            )
            calibrator.collect_data(Reader())
            ranges = calibrator.compute_data()
        except Exception as exc:
            raise WorkbenchError(f"calibration ({method}) failed inside ONNX Runtime: "
                                 f"{one_line(exc)}") from None
    save_tensors_data(ranges, path)
    return CalibrationResult(path, method, False, time.perf_counter() - start, len(data))


def _even_batch(data: Dataset, batch_size: int) -> int:
    """A batch size that splits the data into equal batches: ONNX Runtime's histogram calibrators stack every
    batch's tensors into one array and fail on a shorter last batch."""
    if data.fixed_batch:
        return data.fixed_batch
    n, size = len(data), max(1, min(batch_size, len(data)))
    while n % size:
        size -= 1
    return size


def load_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """Tensor name → (low, high) from a cached calibration file."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(path)
    return {name: (float(np.min(r.range_value[0])), float(np.max(r.range_value[1])))
            for name, r in data.data.items()}


def parse_override(text: str) -> tuple[str, str, float | None]:
    """`TENSOR=METHOD[:PERCENTILE]`, e.g. `relu_1=percentile:99.9` or `block1.out=entropy`."""
    tensor, sep, rule = text.rpartition("=")
    method, _, pct = rule.partition(":")
    if not sep or not tensor or method not in ("minmax", "entropy", "percentile"):
        raise WorkbenchError(f"calibration override {text!r}: expected TENSOR=minmax|entropy|percentile[:P]")
    try:
        return tensor, method, float(pct) if pct else None
    except ValueError:
        raise WorkbenchError(f"calibration override {text!r}: '{pct}' is not a percentile") from None


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
        save_tensors_data(TensorsData(data.calibration_method, merged), path)
    return path


def histogram(model: ModelHandle, data: Dataset, tensor: str, bins: int = 256, batch_size: int = 32
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Histogram of one FP32 activation over `data` (for the clipping-range plot): counts, edges, max |value|."""
    from .backends import get_backend

    engine = get_backend().build_marked(model.path, [tensor], name=f"histogram:{tensor}")
    values = np.concatenate([engine.infer(feed)[tensor].ravel() for feed in data.batches(batch_size)])
    amax = float(np.abs(values).max()) if values.size else 0.0
    counts, edges = np.histogram(values, bins=bins, range=(-amax, amax) if amax else None)
    return counts, edges, amax


def method_ranges(model: ModelHandle, data: Dataset, tensor: str, op_types: list[str] | None,
                  percentile: float = 99.99) -> dict[str, float]:
    """The symmetric range (amax) each calibration method gives `tensor` (all cached after the first call)."""
    out = {}
    for method in ("minmax", "entropy", "percentile"):
        ranges = load_ranges(calibrate(model, data, method, percentile, progress=False, op_types=op_types).path)
        if tensor in ranges:
            out[method if method != "percentile" else f"percentile {percentile:g}"] = max(map(abs, ranges[tensor]))
    return out
