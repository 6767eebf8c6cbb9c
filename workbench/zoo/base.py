"""What every zoo entry is made of: the entry record, the optional-dependency import, the cached export."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from workbench.core.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.analysis.evaluate import TaskMetric
    from workbench.model.data import Dataset
    from workbench.model.loading import ModelHandle


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    export: Callable[[], "ModelHandle"] = field(repr=False)
    calibration: Callable[[], "Dataset"] = field(repr=False)
    evaluation: Callable[[], "Dataset"] = field(repr=False)
    heldout: Callable[[], "Dataset"] | None = field(default=None, repr=False)  # only for scoring a final recipe
    metrics: dict[str, "TaskMetric"] = field(default_factory=dict, repr=False)
    torch_module: Callable[[], Any] | None = field(default=None, repr=False)
    class_names: Callable[[], list[str]] | None = field(default=None, repr=False)

    def calibration_data(self) -> "Dataset":
        return self.calibration()

    def evaluation_data(self) -> "Dataset":
        return self.evaluation()

    def heldout_data(self) -> "Dataset":
        if self.heldout is None:
            raise WorkbenchError(f"zoo model {self.name!r} has no held-out split")
        return self.heldout()


def require(module: str, extra_hint: str) -> Any:
    """Import an optional zoo dependency, or fail with one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise WorkbenchError(f"this zoo model needs {module!r}: {extra_hint}") from None


def cached_export(name: str, key: str, export: Callable[[], "ModelHandle"]) -> "ModelHandle":
    """Export a zoo model once (keyed by its weights and torch version); later loads read the cached ONNX."""
    from pathlib import Path

    from workbench.core import cache
    from workbench.model.loading import from_onnx

    path = cache.artifact_path("zoo", key, ".onnx")
    if not path.exists():
        cache.atomic_write(path, Path(export().path).read_bytes())
    return from_onnx(path, name=name, source="zoo")
