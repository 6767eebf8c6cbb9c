"""PyTorch → ONNX through the dynamo exporter (imported only when a module is actually exported)."""
from __future__ import annotations

import warnings
from typing import Any

import onnx

from workbench.core.errors import WorkbenchError, one_line

# Large, machine-specific metadata the exporter attaches to every node; the module map needs only name_scopes.
_DROPPED_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")


def export(
    module: Any,
    example_inputs: Any,
    *,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset_version: int | None = None,
) -> onnx.ModelProto:
    """Export with torch.onnx.export(dynamo=True); returns the model with per-node module scopes kept."""
    import torch

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    module = module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=input_names, output_names=output_names,
                dynamic_axes=dynamic_axes, opset_version=opset_version, verbose=False,
            )
    except Exception as exc:
        raise WorkbenchError(f"torch.onnx.export (dynamo) failed: {one_line(exc)}") from None
    model = program.model_proto
    strip_metadata(model)
    return model


def strip_metadata(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if p.key not in _DROPPED_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
