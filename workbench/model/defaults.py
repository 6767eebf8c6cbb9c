"""The data a command uses when the user gives none: the zoo model's own splits, else random data shaped by the
optimization profile and grown until the model runs on it (with a loud warning, from workbench.model.data.synthetic)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from workbench.core.errors import WorkbenchError
from workbench.model.data import Dataset, as_dataset, random_arrays, synthetic
from workbench.model.loading import ModelHandle
from workbench.model.profiles import OTHER_DEFAULT, InputProfile, Profile, build_profile, parse


def _random(model: ModelHandle, samples: int, seed: int, shapes, batch_axes) -> Dataset:
    profile = build_profile(model.inputs, shapes or (), batch_axes)
    profile = accepted_profile(model, profile, batch_axes, given=[p.name for p in parse(shapes or ())])
    return synthetic(model.inputs, samples=samples, seed=seed, profile=profile, batch_axes=batch_axes)


def calibration_data(model: ModelHandle, source: Any = None, batch_axes: Mapping[str, int | None] | None = None,
                     shapes=()) -> Dataset:
    """The given data (.npz path, dict, iterable of batches or Dataset), else the zoo model's calibration split,
    else random data shaped by the profile (with a loud warning)."""
    if source is not None:
        return as_dataset(source, model.inputs, batch_axes, origin="calibration data")
    if model.zoo is not None:
        return model.zoo.calibration_data()
    return _random(model, 64, 0, shapes, batch_axes)


def evaluation_data(model: ModelHandle, source: Any = None, limit: int | None = None,
                    batch_axes: Mapping[str, int | None] | None = None, shapes=()) -> Dataset:
    """The given data, else the zoo model's evaluation split, else random data (warned)."""
    if source is not None:
        data = as_dataset(source, model.inputs, batch_axes, origin="evaluation data")
    elif model.zoo is not None:
        data = model.zoo.evaluation_data()
    else:
        data = _random(model, 64, 1, shapes, batch_axes)
    return data.take(limit) if limit else data


PROBE_SIZES = (OTHER_DEFAULT[1], 256, 1024, 4096, 16384)


def accepted_profile(model: Any, profile: Profile, batch_axes: Mapping[str, int | None] | None = None,
                     given: Iterable[str] = ()) -> Profile:
    """The profile random data is drawn from, with every dynamic non-batch dim nobody sized (not in `given`) grown
    through PROBE_SIZES until the FP32 model runs on one random sample: a melspectrogram's STFT Conv rejects 64
    audio samples, an OCR recogniser a narrow line. The first size that runs becomes min and opt of those dims (a
    smaller one may not run); the default stays when it runs. A one-line error when no size runs."""
    axes, given = dict(batch_axes or {}), set(given)
    free = {s.name: [a for a, d in enumerate(s.shape) if not isinstance(d, int) and a != axes.get(s.name, 0)]
            for s in model.inputs if s.name not in given}
    free = {k: v for k, v in free.items() if v}
    if not free:
        return profile
    import onnxruntime as ort

    from workbench.core.errors import one_line
    from workbench.core.log import onnxruntime_options

    try:
        session = ort.InferenceSession(str(model.path), onnxruntime_options(), providers=["CPUExecutionProvider"])
    except Exception:
        return profile  # the caller's own validation says what is wrong with the model
    error = ""
    for size in PROBE_SIZES:
        candidate = profile if size == OTHER_DEFAULT[1] else _sized(profile, free, size)
        feed, _, _ = random_arrays(model.inputs, candidate, 1, 0, batch_axes)
        try:
            session.run(None, feed)
            return candidate
        except Exception as exc:
            error = one_line(exc)
    dims = ", ".join(f"{name} axis {a}" for name, axes_ in free.items() for a in axes_)
    raise WorkbenchError(f"the model runs on no random input sized {'/'.join(map(str, PROBE_SIZES))} along its "
                         f"dynamic dims ({dims}): {error}; pass real data (--calib-data) or the sizes with --shapes "
                         "NAME:MIN,OPT,MAX")


def _sized(profile: Profile, free: Mapping[str, list[int]], size: int) -> Profile:
    out = []
    for p in profile.inputs:
        lo, mid, hi = list(p.min), list(p.opt), list(p.max)
        for axis in free.get(p.name, ()):
            lo[axis], mid[axis], hi[axis] = size, size, max(size, hi[axis])
        out.append(InputProfile(p.name, tuple(lo), tuple(mid), tuple(hi)))
    return Profile(tuple(out))
