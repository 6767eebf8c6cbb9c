"""Thin helpers around Polygraphy: marking tensors as outputs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnx

from workbench.core.log import quiet_polygraphy


def with_outputs(model: Path | onnx.ModelProto, outputs: Sequence[str]) -> bytes:
    """The model with exactly these tensors as graph outputs (Polygraphy's ModifyOutputs), serialized."""
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromPath

    source = model if isinstance(model, onnx.ModelProto) else OnnxFromPath(str(model))
    with quiet_polygraphy():
        return ModifyOutputs(source, outputs=list(outputs), copy=True)().SerializeToString()
