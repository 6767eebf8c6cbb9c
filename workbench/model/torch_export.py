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
    """Export with torch.onnx.export(dynamo=True); returns the model with per-node module scopes kept. Without
    `dynamic_axes`, axis 0 of every tensor input is a dynamic batch ("batch"), so the model takes the batch sizes
    calibration, comparison and optimization profiles use; a module that cannot export that way is exported with
    the example's fixed shapes and a warning."""
    import torch

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    module = module.eval()

    def run(**dynamic: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(module, args, dynamo=True, input_names=input_names, output_names=output_names,
                                     opset_version=opset_version, verbose=False, **dynamic)

    named_batch = False
    try:
        if dynamic_axes is not None:
            program = run(dynamic_axes=dynamic_axes)
        else:
            batch = tuple({0: torch.export.Dim.DYNAMIC} if isinstance(a, torch.Tensor) and a.dim() else None
                          for a in args)
            try:
                program = run(dynamic_shapes=batch)
                named_batch = True
            except Exception as exc:
                warnings.warn(f"the module does not export with a dynamic batch ({one_line(exc)[:200]}); exported "
                              "with the example's fixed shapes", UserWarning, stacklevel=3)
                program = run()
    except Exception as exc:
        raise WorkbenchError(f"torch.onnx.export (dynamo) failed: {one_line(exc)}") from None
    model = program.model_proto
    if named_batch:
        _name_batch(model)
    strip_metadata(model)
    return model


def _name_batch(model: onnx.ModelProto) -> None:
    """The exporter's symbol for the inputs' axis 0 (e.g. "s31") renamed "batch" wherever it appears."""
    symbols = {i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input
               if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param}
    for info in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = "batch"


def strip_metadata(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if p.key not in _DROPPED_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
