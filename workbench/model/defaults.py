"""The data a command uses when the user gives none: the zoo model's own splits, else random data shaped by the
optimization profile (with a loud warning, from workbench.model.data.synthetic)."""
from __future__ import annotations

from typing import Any, Mapping

from workbench.model.data import Dataset, as_dataset, synthetic
from workbench.model.loading import ModelHandle


def _random(model: ModelHandle, samples: int, seed: int, shapes, batch_axes) -> Dataset:
    from workbench.model.profiles import build_profile

    profile = build_profile(model.inputs, shapes or (), batch_axes)
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
