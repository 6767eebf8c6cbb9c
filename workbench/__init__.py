"""workbench: explore inference precision for TensorRT (FP32/FP16/INT8) on any machine.

Imports are lazy so `import workbench` stays fast and never pulls in torch or tensorrt.
"""
from __future__ import annotations

import importlib
from typing import Any

from workbench.core.version import __version__

_EXPORTS = {
    "load_model": "workbench.zoo",
    "ModelHandle": "workbench.model.loading",
    "Recipe": "workbench.precision.recipe",
    "apply": "workbench.precision.transform",
    "Dataset": "workbench.model.data",
    "load_npz": "workbench.model.data",
    "WorkbenchError": "workbench.core.errors",
    "get_backend": "workbench.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = sorted(_EXPORTS) + ["__version__"]
