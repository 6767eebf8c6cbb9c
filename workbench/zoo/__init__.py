"""Bundled models with real data. Entries load lazily; the real pretrained ones need the `zoo` extra."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from ..data import Dataset
    from ..evaluate import TaskMetric
    from ..model import ModelHandle


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    export: Callable[[], "ModelHandle"] = field(repr=False)
    calibration: Callable[[], "Dataset"] = field(repr=False)
    evaluation: Callable[[], "Dataset"] = field(repr=False)
    metrics: dict[str, "TaskMetric"] = field(default_factory=dict, repr=False)
    torch_module: Callable[[], Any] | None = field(default=None, repr=False)
    class_names: Callable[[], list[str]] | None = field(default=None, repr=False)

    def calibration_data(self) -> "Dataset":
        return self.calibration()

    def evaluation_data(self) -> "Dataset":
        return self.evaluation()


def _mnist() -> ZooEntry:
    from . import mnist_cnn

    return mnist_cnn.entry()


def _mobilenet() -> ZooEntry:
    from . import mobilenet_v2

    return mobilenet_v2.entry()


def _minilm() -> ZooEntry:
    from . import minilm

    return minilm.entry()


_ENTRIES: dict[str, Callable[[], ZooEntry]] = {"mnist-cnn": _mnist, "mobilenet-v2": _mobilenet, "minilm": _minilm}


def names() -> list[str]:
    return list(_ENTRIES)


def entry(name: str) -> ZooEntry:
    if name not in _ENTRIES:
        raise WorkbenchError(f"unknown zoo model {name!r}; available: {', '.join(names())}")
    return _ENTRIES[name]()


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

    from .. import cache
    from ..model import from_onnx

    path = cache.artifact_path("zoo", key, ".onnx")
    if not path.exists():
        cache.atomic_write(path, Path(export().path).read_bytes())
    return from_onnx(path, name=name, source="zoo")


_LOADED: dict[str, "ModelHandle"] = {}


def load(name: str) -> "ModelHandle":
    """The zoo model as a ModelHandle (memoised per process; exports are cached on disk)."""
    if name not in _LOADED:
        e = entry(name)
        handle = e.export()
        handle.zoo = e
        _LOADED[name] = handle
    return _LOADED[name]
