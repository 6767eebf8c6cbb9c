"""Resolve what a command or panel needs: model, recipe, calibration and evaluation data (zoo defaults)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from workbench.model.data import Dataset
from workbench.model.defaults import calibration_data, evaluation_data
from workbench.model.loading import ModelHandle
from workbench.precision.recipe import Recipe
from workbench.zoo import load_model


@dataclass
class Inputs:
    model: ModelHandle
    recipe: Recipe
    calib: Dataset | None
    eval: Dataset | None
    batch_axes: dict[str, int | None] = field(default_factory=dict)


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
