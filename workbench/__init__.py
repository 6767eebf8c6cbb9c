"""workbench: explore inference precision for TensorRT (FP32/FP16/INT8) on any machine.

Imports are lazy so `import workbench` stays fast and never pulls in torch or tensorrt.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "workbench.model",
    "ModelHandle": "workbench.model",
    "Recipe": "workbench.recipe",
    "apply": "workbench.transform",
    "Dataset": "workbench.data",
    "load_npz": "workbench.data",
    "WorkbenchError": "workbench.errors",
    "get_backend": "workbench.backends",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = sorted(_EXPORTS) + ["__version__"]
