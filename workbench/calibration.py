"""INT8 calibration ranges through ONNX Runtime's calibrators, cached so re-quantizing costs no inference."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .data import Dataset
from .errors import WorkbenchError
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

    batch_size = fixed_batch(model) or batch_size
    batches = list(data.batches(batch_size))

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
                                 f"{str(exc).strip().splitlines()[0][:200]}") from None
    save_tensors_data(ranges, path)
    return CalibrationResult(path, method, False, time.perf_counter() - start, len(data))


def fixed_batch(model: ModelHandle) -> int | None:
    """The batch size a model with a fixed batch dim takes on every run (None when the batch dim is dynamic)."""
    fixed = [s.shape[0] for s in model.inputs if s.shape and isinstance(s.shape[0], int)]
    return fixed[0] if fixed else None


def load_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """Tensor name → (low, high) from a cached calibration file."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    import numpy as np

    data = load_tensors_data(path)
    return {name: (float(np.min(r.range_value[0])), float(np.max(r.range_value[1])))
            for name, r in data.data.items()}
