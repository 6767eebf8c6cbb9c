"""Resolve what a command or panel needs: model, recipe, calibration and evaluation data (zoo defaults)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from .data import Dataset, as_dataset, synthetic
from .model import ModelHandle, load_model
from .recipe import Recipe


@dataclass
class Inputs:
    model: ModelHandle
    recipe: Recipe
    calib: Dataset | None
    eval: Dataset | None
    batch_axes: dict[str, int | None] = field(default_factory=dict)


def _random(model: ModelHandle, samples: int, seed: int, shapes, batch_axes) -> Dataset:
    from .profiles import build_profile

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


def resolve(source: Any, recipe: Recipe, calib: Any = None, evaluation: Any = None, eval_limit: int | None = None,
            with_eval: bool = True, batch_axes: Mapping[str, int | None] | None = None, shapes=()) -> Inputs:
    model = load_model(source)
    axes = dict(batch_axes or {})
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # fp16/bf16 use the calibration data too: nodes whose values exceed the FP16 range stay in FP32
        calib_data = calibration_data(model, calib, axes, shapes) if recipe.precision != "fp32" else None
        eval_data = evaluation_data(model, evaluation, eval_limit, axes, shapes) if with_eval else None
    return Inputs(model, recipe, calib_data, eval_data, axes)
