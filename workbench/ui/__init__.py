"""JupyterLab app: `workbench.ui.Workbench(model)` opens every panel. Widgets only call the library."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Workbench":
        from .app import Workbench

        return Workbench
    raise AttributeError(name)


__all__ = ["Workbench"]
