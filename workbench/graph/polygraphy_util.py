"""Thin helpers around Polygraphy: marking tensors as outputs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnx

from workbench.core.log import quiet_polygraphy


def with_outputs(model: Path | onnx.ModelProto, outputs: Sequence[str]) -> bytes:
    """The model with exactly these tensors as graph outputs (Polygraphy's ModifyOutputs), serialized; a model
    given as a proto is left as it was (marked on a C-level copy: a third of the time of the copy.copy that
    ModifyOutputs(copy=True) makes)."""
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromPath

    if isinstance(model, onnx.ModelProto):
        source = onnx.ModelProto()
        source.CopyFrom(model)
    else:
        source = OnnxFromPath(str(model))
    with quiet_polygraphy():
        return ModifyOutputs(source, outputs=list(outputs), copy=False)().SerializeToString()
