"""Resolve what a command or panel needs: model, recipe, calibration and evaluation data (zoo defaults)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Dataset, load_npz, synthetic
from .model import ModelHandle, load_model
from .recipe import Recipe


@dataclass
class Inputs:
    model: ModelHandle
    recipe: Recipe
    calib: Dataset | None
    eval: Dataset | None


def calibration_data(model: ModelHandle, path: str | Path | None = None) -> Dataset:
    """--calib-data if given, else the zoo model's calibration split, else random data (with a loud warning)."""
    if path is not None:
        return load_npz(path, model.inputs)
    if model.zoo is not None:
        return model.zoo.calibration_data()
    return synthetic(model.inputs, samples=64)


def evaluation_data(model: ModelHandle, path: str | Path | None = None, limit: int | None = None) -> Dataset:
    """--eval-data if given, else the zoo model's evaluation split, else random data (warned)."""
    if path is not None:
        data = load_npz(path, model.inputs)
    elif model.zoo is not None:
        data = model.zoo.evaluation_data()
    else:
        data = synthetic(model.inputs, samples=64, seed=1)
    return data.take(limit) if limit else data


def resolve(source: Any, recipe: Recipe, calib_path: str | Path | None = None,
            eval_path: str | Path | None = None, eval_limit: int | None = None, with_eval: bool = True) -> Inputs:
    model = load_model(source)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        calib = calibration_data(model, calib_path) if recipe.precision == "int8" else None
        evaluation = evaluation_data(model, eval_path, eval_limit) if with_eval else None
    return Inputs(model, recipe, calib, evaluation)
