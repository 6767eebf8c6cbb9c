"""Input data: .npz files validated against a model's input specs, synthetic data, batching."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import WorkbenchError
from .specs import TensorSpec

LABELS_KEY = "labels"


@dataclass
class Dataset:
    """Samples stacked on axis 0, one array per model input; optional labels for task metrics."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    synthetic: bool = False

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of up to `batch_size` samples, in order."""
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.inputs.items()}

    def take(self, n: int) -> "Dataset":
        labels = None if self.labels is None else self.labels[:n]
        return Dataset({k: v[:n] for k, v in self.inputs.items()}, labels, self.synthetic)

    def fingerprint(self) -> str:
        from .cache import digest

        parts: list = []
        for k in sorted(self.inputs):
            a = np.ascontiguousarray(self.inputs[k])
            parts += [k, str(a.dtype), list(a.shape), a.tobytes()]
        return digest(*parts)


def load_npz(path: str | os.PathLike, specs: Sequence[TensorSpec]) -> Dataset:
    """Read an .npz whose keys are the model's input names (plus optional "labels"), and validate it."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:
        raise WorkbenchError(f"{path} is not a readable .npz file ({type(exc).__name__})") from None
    labels = arrays.pop(LABELS_KEY, None)
    return validate(arrays, specs, labels=labels, origin=str(path))


def validate(
    arrays: dict[str, np.ndarray], specs: Sequence[TensorSpec], labels: np.ndarray | None = None,
    origin: str = "data",
) -> Dataset:
    """Check names, dtypes, shapes and finiteness; every problem is one line naming the input."""
    expected = {s.name for s in specs}
    missing = sorted(expected - arrays.keys())
    extra = sorted(arrays.keys() - expected)
    if missing:
        raise WorkbenchError(f"{origin} is missing input(s) {missing}; the model's inputs are {sorted(expected)}")
    if extra:
        raise WorkbenchError(f"{origin} has unexpected key(s) {extra}; the model's inputs are {sorted(expected)}"
                             f" (plus optional '{LABELS_KEY}')")
    counts = set()
    for spec in specs:
        a = arrays[spec.name]
        if a.dtype.name != spec.dtype:
            raise WorkbenchError(f"{origin}: input '{spec.name}' has dtype {a.dtype.name}, the model expects "
                                 f"{spec.dtype} (convert with .astype(np.{spec.dtype}))")
        if a.ndim != len(spec.shape):
            raise WorkbenchError(f"{origin}: input '{spec.name}' has shape {list(a.shape)}, the model expects rank "
                                 f"{len(spec.shape)} {list(spec.shape)} with samples on axis 0")
        for axis, (got, want) in enumerate(zip(a.shape, spec.shape)):
            if axis > 0 and isinstance(want, int) and got != want:
                raise WorkbenchError(f"{origin}: input '{spec.name}' has shape {list(a.shape)}, the model expects "
                                     f"{list(spec.shape)} (axis {axis} must be {want})")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int(np.size(a) - np.isfinite(a).sum())
            raise WorkbenchError(f"{origin}: input '{spec.name}' contains {bad} NaN/Inf value(s); "
                                 "calibration and comparison need finite data")
        counts.add(a.shape[0])
    if len(counts) > 1:
        raise WorkbenchError(f"{origin}: inputs have different sample counts {sorted(counts)} on axis 0")
    if counts == {0}:
        raise WorkbenchError(f"{origin} holds no samples")
    if labels is not None and len(labels) != counts.pop():
        raise WorkbenchError(f"{origin}: '{LABELS_KEY}' has {len(labels)} entries, inputs have a different count")
    return Dataset({s.name: arrays[s.name] for s in specs}, labels)


def synthetic(specs: Sequence[TensorSpec], samples: int = 32, seed: int = 0, **symbols: int) -> Dataset:
    """Random data shaped like the inputs. Loudly warned: random calibration data gives misleading scales."""
    warnings.warn(
        "using RANDOM synthetic data: INT8 calibration ranges and accuracy numbers from it are misleading; "
        "pass real samples (--calib-data / --eval-data FILE.npz)", UserWarning, stacklevel=2,
    )
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in specs:
        shape = (samples,) + spec.concrete_shape(**symbols)[1:]
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            inputs[spec.name] = rng.integers(0, 100, size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            inputs[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return Dataset(inputs, synthetic=True)
