"""Stage 3, running models: the backend registry (ONNX Runtime CPU, TensorRT), engines, trtexec command lines.
Backends import their runtime lazily; TensorRT is never imported unless chosen."""
from __future__ import annotations

from typing import Any, Iterator

from workbench.core.errors import WorkbenchError
from workbench.runtime.base import Backend, Engine

__all__ = ["Backend", "Engine", "get_backend", "backend_names", "availability", "marked_outputs"]


def _registry() -> dict[str, type[Backend]]:
    from workbench.runtime.onnxruntime_cpu import OnnxRuntimeCpu
    from workbench.runtime.tensorrt import TensorRT, TensorRTRtx

    return {OnnxRuntimeCpu.name: OnnxRuntimeCpu, TensorRT.name: TensorRT, TensorRTRtx.name: TensorRTRtx}


def backend_names() -> list[str]:
    return list(_registry())


def availability() -> dict[str, tuple[bool, str]]:
    """Every backend with (usable here?, why not)."""
    return {name: cls.availability() for name, cls in _registry().items()}


def get_backend(name: str = "onnxruntime-cpu", **options: Any) -> Backend:
    registry = _registry()
    if name not in registry:
        raise WorkbenchError(f"unknown backend {name!r}; choose one of {', '.join(registry)}")
    ok, reason = registry[name].availability()
    if not ok:
        raise WorkbenchError(f"backend {name} is not available: {reason}")
    return registry[name](**options)


def marked_outputs(model: Any, tensors: list[str], data: Any, batch_size: int, name: str,
                   backend: Backend | None = None) -> Iterator[dict]:
    """Each batch's values of `tensors` (the graph's own outputs too) from an engine that marks them, closed when
    the loop ends: what calibration statistics, equalization, smoothing, bias correction and FP16 ranges stream."""
    with (backend or get_backend()).build_marked(model, tensors, name=name) as engine:
        for batch in data.batches(batch_size):
            yield engine.infer(batch)
