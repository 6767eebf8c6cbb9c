"""workbench: explore inference precision for TensorRT (FP32/FP16/INT8) on any machine.

Imports are lazy so `import workbench` stays fast and never pulls in torch or tensorrt.
"""
from __future__ import annotations

import importlib
from typing import Any

from workbench.core.version import __version__

_EXPORTS = {  # name → module, in pipeline order
    "WorkbenchError": "workbench.core.errors",
    "lint": "workbench.graph.lint",
    "ModelHandle": "workbench.model.loading",
    "Dataset": "workbench.model.data",
    "load_npz": "workbench.model.data",
    "get_backend": "workbench.runtime",
    "Recipe": "workbench.precision.recipe",
    "apply": "workbench.precision.transform",
    "compare": "workbench.analysis.compare",
    "diagnose": "workbench.analysis.diagnose",
    "Target": "workbench.analysis.diagnose",
    "sweep": "workbench.analysis.bench",
    "load_model": "workbench.zoo",
    "Workbench": "workbench.app.ui",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = sorted(_EXPORTS) + ["__version__"]
