"""Input data: .npz files validated against a model's input specs, synthetic data, batching."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from workbench.core.errors import WorkbenchError
from workbench.core.specs import TensorSpec

LABELS_KEY = "labels"


@dataclass
class Dataset:
    """One array per model input with the samples on a batch axis (axis 0 unless `sample_axes` says otherwise);
    an input whose axis is None is shared: the same value goes with every batch (a scalar like a sample rate).
    Optional labels for task metrics; `fixed_batch` is the batch the model accepts when its batch dim is fixed."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    synthetic: bool = False
    sample_axes: dict[str, int | None] = field(default_factory=dict)
    fixed_batch: int | None = None

    def axis(self, name: str) -> int | None:
        return self.sample_axes.get(name, 0)

    def __len__(self) -> int:
        per_sample = [(k, v) for k, v in self.inputs.items() if self.axis(k) is not None]
        if not per_sample:
            return 1
        name, value = per_sample[0]
        return int(np.shape(value)[self.axis(name)])

    def slice(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """A feed dict of samples [start, stop); shared inputs as they are."""
        feed = {}
        for k, v in self.inputs.items():
            axis = self.axis(k)
            if axis is None:
                feed[k] = v
            else:
                index = [slice(None)] * np.ndim(v)
                index[axis] = slice(start, stop)
                feed[k] = np.ascontiguousarray(v[tuple(index)])
                release(v)
        return feed

    def batch_size(self, requested: int) -> int:
        """The batch every run uses: the model's fixed batch when it has one, else `requested`."""
        return self.fixed_batch or max(1, int(requested))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of up to `batch_size` samples (exactly the fixed batch for fixed-batch models), in order.
        For a fixed batch > 1 the last batch is padded by repeating its last sample (see `feed`)."""
        size = self.batch_size(batch_size)
        for start in range(0, len(self), size):
            yield self.feed(start, size)

    def feed(self, start: int, size: int) -> dict[str, np.ndarray]:
        """Samples [start, start + size); padded to the fixed batch by repeating the last sample if needed."""
        feed = self.slice(start, start + size)
        missing = start + size - len(self)
        if self.fixed_batch and missing > 0:
            feed = {k: self._pad(k, v, missing) for k, v in feed.items()}
        return feed

    def _pad(self, name: str, value: np.ndarray, missing: int) -> np.ndarray:
        axis = self.axis(name)
        if axis is None:
            return value
        last = np.take(value, [-1], axis=axis)
        return np.concatenate([value] + [last] * missing, axis=axis)

    def take(self, n: int) -> "Dataset":
        labels = None if self.labels is None else self.labels[:n]
        return replace(self, inputs=self.slice(0, n), labels=labels)

    def saved(self) -> Path:
        """This data as an .npz in the cache (named by its content; written once), so code generated for it (the
        app's Code tab) can name a file that holds exactly these samples."""
        from workbench.core import cache

        path = cache.artifact_path("data", self.fingerprint(), ".npz")
        if not path.exists():
            arrays = {k: np.asarray(v) for k, v in self.inputs.items()}
            if self.labels is not None:
                arrays[LABELS_KEY] = np.asarray(self.labels)
            with cache.atomic_file(path) as tmp:
                np.savez(tmp, **arrays)
        return path

    def fingerprint(self) -> str:
        from workbench.core.cache import digest

        parts: list = [sorted((k, v) for k, v in self.sample_axes.items() if v != 0)]
        for k in sorted(self.inputs):
            a = np.asarray(self.inputs[k])
            parts += [k, str(a.dtype), list(a.shape), _array_digest(a)]
        return digest(*parts)


def _array_digest(a: np.ndarray, chunk_bytes: int = 1 << 24) -> str:
    """SHA-256 of an array's bytes, read in chunks: a copy of the whole array (tobytes) would double the memory a
    large calibration set takes, and touch every page of a memory-mapped one at once."""
    import hashlib

    h = hashlib.sha256()
    for chunk in _chunks(a, chunk_bytes):
        h.update(np.ascontiguousarray(chunk).view(np.uint8))
    return h.hexdigest()


def _count_nonfinite(a: np.ndarray, chunk_bytes: int = 1 << 24) -> int:
    """NaN/Inf count, chunked: a whole-array isfinite would touch every page of a memory-mapped set at once and
    allocate a mask as long as the data."""
    return sum(int(chunk.size - np.isfinite(chunk).sum()) for chunk in _chunks(a, chunk_bytes))


def _chunks(a: np.ndarray, chunk_bytes: int) -> Iterator[np.ndarray]:
    """The array's values in C order, `chunk_bytes` at a time; a memory-mapped array's pages are released after
    each chunk, so a pass over it never holds more than one chunk."""
    flat = (a if a.flags.c_contiguous else np.ascontiguousarray(a)).reshape(-1)
    step = max(1, chunk_bytes // max(a.itemsize, 1))
    for start in range(0, flat.size, step):
        yield flat[start:start + step]
        release(a)


def release(a: np.ndarray) -> None:
    """Drop the pages of a memory-mapped array from this process's resident set (they stay in the page cache and
    fault back in when read again): a calibration over 1,024 memory-mapped images would otherwise end up holding
    all of them, making its peak memory grow with the sample count."""
    import mmap

    base = a
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz; members stored uncompressed (np.savez) are memory-mapped, not read, so a large
    calibration set costs memory one batch at a time (np.load reads every member whole)."""
    import zipfile

    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as raw:
        for info in z.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            mapped = None
            if info.compress_type == zipfile.ZIP_STORED and info.file_size > 0:
                raw.seek(info.header_offset)
                local = raw.read(30)
                raw.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                         + int.from_bytes(local[28:30], "little"))
                version = np.lib.format.read_magic(raw)
                header = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                shape, fortran, dtype = header(raw) if header else ((), False, np.dtype(object))
                if not dtype.hasobject:
                    mapped = np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                                       order="F" if fortran else "C")
            if mapped is None:
                with z.open(info) as member:
                    mapped = np.lib.format.read_array(member, allow_pickle=False)
            arrays[name] = mapped
    return arrays


def load_npz(path: str | os.PathLike, specs: Sequence[TensorSpec],
             batch_axes: Mapping[str, int | None] | None = None) -> Dataset:
    """Read an .npz whose keys are the model's input names (plus optional "labels"), and validate it."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"data file not found: {path}")
    try:
        arrays = _read_npz(path)
    except Exception as exc:
        raise WorkbenchError(f"{path} is not a readable .npz file ({type(exc).__name__})") from None
    labels = arrays.pop(LABELS_KEY, None)
    return validate(arrays, specs, labels=labels, origin=str(path), batch_axes=batch_axes)


def parse_batch_axes(items: Iterable[str]) -> dict[str, int | None]:
    """`NAME=AXIS` or `NAME=none` items (--batch-axis): where an input's samples lie, or that it is shared."""
    out: dict[str, int | None] = {}
    for item in items:
        name, sep, axis = item.rpartition("=")
        if not sep or not name or not (axis.isdigit() or axis.lower() == "none"):
            raise WorkbenchError(f"--batch-axis '{item}': expected NAME=AXIS (e.g. state=1) or NAME=none for an "
                                 "input shared by every sample")
        out[name] = None if axis.lower() == "none" else int(axis)
    return out


def _sample_axis(spec: TensorSpec, declared: Mapping[str, int | None]) -> int | None:
    """Where the samples of this input lie: as declared (--batch-axis), else axis 0; a scalar input has no axis to
    hold samples, so its one value is shared by every sample."""
    if spec.name in declared:
        axis = declared[spec.name]
        if axis is not None and not 0 <= axis < len(spec.shape):
            raise WorkbenchError(f"--batch-axis {spec.name}={axis}: the input has rank {len(spec.shape)} "
                                 f"{list(spec.shape)}")
        return axis
    return 0 if spec.shape else None


def validate(
    arrays: dict[str, np.ndarray], specs: Sequence[TensorSpec], labels: np.ndarray | None = None,
    origin: str = "data", batch_axes: Mapping[str, int | None] | None = None,
) -> Dataset:
    """Check names, dtypes, shapes and finiteness; every problem is one line naming the input.

    Each input has its samples on axis 0 unless `batch_axes` names another axis (or None: one value shared by
    every sample, the input's own shape); a scalar input is always shared."""
    declared = dict(batch_axes or {})
    expected = {s.name for s in specs}
    unknown_axes = sorted(set(declared) - expected)
    if unknown_axes:
        raise WorkbenchError(f"--batch-axis names unknown input(s) {unknown_axes}; the model's inputs are "
                             f"{sorted(expected)}")
    missing = sorted(expected - arrays.keys())
    extra = sorted(arrays.keys() - expected)
    if missing:
        raise WorkbenchError(f"{origin} is missing input(s) {missing}; the model's inputs are {sorted(expected)}")
    if extra:
        raise WorkbenchError(f"{origin} has unexpected key(s) {extra}; the model's inputs are {sorted(expected)}"
                             f" (plus optional '{LABELS_KEY}')")
    counts, axes, fixed = set(), {}, set()
    for spec in specs:
        a = np.asarray(arrays[spec.name])
        if a.dtype.name != spec.dtype:
            raise WorkbenchError(f"{origin}: input '{spec.name}' has dtype {a.dtype.name}, the model expects "
                                 f"{spec.dtype} (convert with .astype(np.{spec.dtype}))")
        axis = _sample_axis(spec, declared)
        axes[spec.name] = axis
        if axis is None:
            if a.ndim != len(spec.shape):
                raise WorkbenchError(f"{origin}: input '{spec.name}' is shared by every sample (no sample axis), so "
                                     f"it needs the input's own rank {len(spec.shape)} {list(spec.shape)}, got "
                                     f"{list(a.shape)}")
            dims = list(enumerate(a.shape))
        else:
            if a.ndim != len(spec.shape):
                raise WorkbenchError(
                    f"{origin}: input '{spec.name}' has shape {list(a.shape)}; the model expects rank "
                    f"{len(spec.shape)} {list(spec.shape)} with the samples on axis {axis} (another sample axis: "
                    f"--batch-axis {spec.name}=AXIS; one value for every sample: --batch-axis {spec.name}=none)")
            counts.add(a.shape[axis])
            if isinstance(spec.shape[axis], int):
                fixed.add(spec.shape[axis])
            dims = [(i, d) for i, d in enumerate(a.shape) if i != axis]
        for i, got in dims:
            want = spec.shape[i]
            if isinstance(want, int) and got != want:
                raise WorkbenchError(f"{origin}: input '{spec.name}' has shape {list(a.shape)}, the model expects "
                                     f"{list(spec.shape)} (axis {i} must be {want})")
        bad = _count_nonfinite(a) if np.issubdtype(a.dtype, np.floating) else 0
        if bad:
            raise WorkbenchError(f"{origin}: input '{spec.name}' contains {bad} NaN/Inf value(s); "
                                 "calibration and comparison need finite data")
    if len(counts) > 1:
        raise WorkbenchError(f"{origin}: inputs have different sample counts {sorted(counts)} on their batch axes "
                             f"({', '.join(f'{k}: axis {v}' for k, v in axes.items() if v is not None)}); for an "
                             "input whose samples are on another axis use --batch-axis NAME=AXIS (batch_axes= in "
                             "Python)")
    if counts == {0}:
        raise WorkbenchError(f"{origin} holds no samples")
    if len(fixed) > 1:
        raise WorkbenchError(f"the model's inputs fix different batch sizes {sorted(fixed)}")
    if labels is not None and counts and len(labels) != next(iter(counts)):
        raise WorkbenchError(f"{origin}: '{LABELS_KEY}' has {len(labels)} entries, inputs have a different count")
    return Dataset({s.name: np.asarray(arrays[s.name]) for s in specs}, labels,
                   sample_axes={k: v for k, v in axes.items() if v != 0}, fixed_batch=next(iter(fixed), None))


def as_dataset(source: Any, specs: Sequence[TensorSpec], batch_axes: Mapping[str, int | None] | None = None,
               origin: str = "data") -> Dataset:
    """Data as users hold it: a Dataset, an .npz path, a dict of arrays (input name → samples; "labels"
    optional), or an iterable of batches (dicts by input name, or tuples in input order, e.g. a torch
    DataLoader), concatenated on each input's batch axis. Tensors are converted with .numpy()."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_npz(source, specs, batch_axes)
    if isinstance(source, Mapping):
        arrays = {k: _numpy(v) for k, v in source.items()}
        labels = arrays.pop(LABELS_KEY, None)
        return validate(arrays, specs, labels=labels, origin=origin, batch_axes=batch_axes)
    if isinstance(source, Iterable):
        names = [s.name for s in specs]
        chunks: dict[str, list[np.ndarray]] = {}
        for batch in source:
            if not isinstance(batch, Mapping):
                items = list(batch) if isinstance(batch, (tuple, list)) else [batch]
                if len(items) not in (len(names), len(names) + 1):
                    raise WorkbenchError(f"{origin}: a batch has {len(items)} item(s); the model's inputs are "
                                         f"{names} (optionally followed by labels)")
                batch = dict(zip(names + [LABELS_KEY], items))
            for k, v in batch.items():
                chunks.setdefault(k, []).append(_numpy(v))
        if not chunks:
            raise WorkbenchError(f"{origin} yielded no batches")
        axes = dict(batch_axes or {})
        by_spec = {s.name: s for s in specs}
        arrays = {}
        for k, parts in chunks.items():
            spec = by_spec.get(k)
            axis = axes.get(k, 0) if spec is None or spec.shape else None
            arrays[k] = parts[0] if axis is None else np.concatenate(parts, axis=axis)
        labels = arrays.pop(LABELS_KEY, None)
        return validate(arrays, specs, labels=labels, origin=origin, batch_axes=batch_axes)
    raise WorkbenchError(f"{origin}: cannot read data from {type(source).__name__}; give a Dataset, an .npz path, "
                         "a dict of arrays or an iterable of batches")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor, without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


def synthetic(specs: Sequence[TensorSpec], samples: int = 32, seed: int = 0, profile: Any = None,
              batch_axes: Mapping[str, int | None] | None = None) -> Dataset:
    """Random data shaped like the inputs: static dims as the model fixes them, dynamic dims from the
    optimization profile's opt shape (default profile when none is given). Loudly warned: random calibration
    data gives misleading scales."""
    from workbench.model.profiles import default_profile

    warnings.warn(
        "using RANDOM synthetic data: INT8 calibration ranges and accuracy numbers from it are misleading; "
        "pass real samples (--calib-data / --eval-data FILE.npz, or calib_data=/eval_data= in Python)",
        UserWarning, stacklevel=2,
    )
    profile = profile or default_profile(specs)
    inputs, sample_axes, fixed = random_arrays(specs, profile, samples, seed, batch_axes)
    return Dataset(inputs, synthetic=True, sample_axes={k: v for k, v in sample_axes.items() if v != 0},
                   fixed_batch=next(iter(fixed), None))


def random_arrays(specs: Sequence[TensorSpec], profile: Any, samples: int, seed: int,
                  batch_axes: Mapping[str, int | None] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, int | None], set[int]]:
    """Random inputs at the profile's opt shapes with `samples` along each sample axis (normal floats, integers in
    0..99, booleans); with each input's sample axis and the fixed batch sizes seen."""
    axes = dict(batch_axes or {})
    rng = np.random.default_rng(seed)
    inputs, sample_axes, fixed = {}, {}, set()
    for spec in specs:
        shape = list(profile[spec.name].opt) if spec.name in profile.names() else list(spec.concrete_shape())
        axis = axes.get(spec.name, 0 if shape else None)
        if axis is not None:
            if isinstance(spec.shape[axis], int):
                fixed.add(spec.shape[axis])
            shape[axis] = samples
        sample_axes[spec.name] = axis
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            inputs[spec.name] = rng.integers(0, 100, size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            inputs[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return inputs, sample_axes, fixed
