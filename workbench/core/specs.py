"""Tensor specs read from an ONNX graph: names, dtypes and shapes with symbolic dims."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
import onnx

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def dynamic_dims(self) -> dict[int, str]:
        """Axis → symbol for every dim that is not a fixed size."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, **symbols: int) -> tuple[int, ...]:
        """The shape with symbolic dims set from `symbols` (default 1)."""
        return tuple(d if isinstance(d, int) else int(symbols.get(d, 1)) for d in self.shape)

    def to_dict(self) -> dict:
        return asdict(self)


def _dtype(elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def _shape(value: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    dims = []
    for i, d in enumerate(value.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_value"):  # Paddle2ONNX writes a dynamic dim as dim_value -1
            dims.append(f"{value.name}_dim{i}")
        else:
            dims.append(d.dim_param or f"{value.name}_dim{i}")
    return tuple(dims)


def graph_inputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Real inputs (initializers listed as inputs by old exporters are skipped)."""
    initializers = {i.name for i in model.graph.initializer}
    return [
        TensorSpec(v.name, _dtype(v.type.tensor_type.elem_type), _shape(v))
        for v in model.graph.input
        if v.name not in initializers
    ]


def graph_outputs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [TensorSpec(v.name, _dtype(v.type.tensor_type.elem_type), _shape(v)) for v in model.graph.output]
