"""Thin helpers around Polygraphy: quiet logging and marking tensors as outputs."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import onnx


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Polygraphy logs every load and inference at INFO; the workbench shows its own progress instead."""
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        yield


def with_outputs(model: Path | onnx.ModelProto, outputs: Sequence[str]) -> bytes:
    """The model with exactly these tensors as graph outputs (Polygraphy's ModifyOutputs), serialized."""
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromPath

    source = model if isinstance(model, onnx.ModelProto) else OnnxFromPath(str(model))
    with quiet():
        return ModifyOutputs(source, outputs=list(outputs), copy=True)().SerializeToString()
