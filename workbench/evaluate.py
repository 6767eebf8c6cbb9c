"""Run an engine over a dataset, and task metrics (top-1 accuracy) that tests, notebooks and diagnose share."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .data import Dataset

TaskMetric = Callable[[dict[str, np.ndarray], Dataset], float]


def run(engine, data: Dataset, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Every graph output for every sample, concatenated on axis 0."""
    chunks: dict[str, list[np.ndarray]] = {}
    for feed in data.batches(batch_size):
        for name, value in engine.infer(feed).items():
            chunks.setdefault(name, []).append(value)
    return {k: np.concatenate(v) for k, v in chunks.items()}


def top1_accuracy(outputs: dict[str, np.ndarray], data: Dataset) -> float:
    """Fraction of samples whose arg-max over the first output's last axis equals the label."""
    if data.labels is None:
        raise ValueError("top-1 accuracy needs labels in the dataset")
    logits = next(iter(outputs.values()))
    return float((logits.argmax(-1) == data.labels).mean())


def recipe_table(model, recipes, calib: Dataset | None, data: Dataset, backend=None,
                 progress: bool = True):
    """One row per recipe: top-1 accuracy (when labels exist) and agreement with FP32 on `data`."""
    import pandas as pd
    from tqdm.auto import tqdm

    from .backends import get_backend
    from .transform import apply

    backend = backend or get_backend()
    reference = run(backend.build(model.path), data)
    ref_top = next(iter(reference.values())).argmax(-1)
    rows = []
    for recipe in tqdm(list(recipes), desc="recipes", disable=not progress, leave=False):
        transformed = apply(model, recipe, calib, progress=False)
        outputs = run(backend.build(transformed.path), data)
        first = next(iter(outputs.values()))
        rows.append({
            "recipe": recipe.label, "precision": recipe.precision,
            "top1": top1_accuracy(outputs, data) if data.labels is not None else None,
            "top1_agreement_with_fp32": float((first.argmax(-1) == ref_top).mean()),
            "quantized_nodes": len(transformed.quantized_nodes),
        })
    return pd.DataFrame(rows)
