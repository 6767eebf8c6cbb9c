"""JupyterLab app: `workbench.app.ui.Workbench(model)` opens every panel. Widgets only call the library."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Workbench":
        from workbench.app.ui.app import Workbench

        return Workbench
    raise AttributeError(name)


__all__ = ["Workbench"]
