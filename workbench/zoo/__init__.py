"""Bundled models with real data. Entries load lazily; heavy ones live behind the `zoo` extra."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import ModelHandle


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    model_path: Path
    calib_path: Path
    eval_path: Path
    task: str  # "classification" or "embedding": which task metric applies
    torch_module: Callable[[], Any] | None = field(default=None, repr=False)

    def calibration_data(self) -> "Dataset":
        from ..data import load_npz

        return load_npz(self.calib_path, self._specs())

    def evaluation_data(self) -> "Dataset":
        from ..data import load_npz

        return load_npz(self.eval_path, self._specs())

    def _specs(self):
        return load(self.name).inputs


def _mnist() -> ZooEntry:
    from . import mnist_cnn

    d = mnist_cnn.DATA_DIR
    return ZooEntry(
        name="mnist-cnn",
        description="Small CNN trained on 4000 real MNIST digits (datasets/train_mnist_cnn.py); 98.3 % FP32 top-1",
        model_path=d / "model.onnx", calib_path=d / "calib.npz", eval_path=d / "eval.npz",
        task="classification", torch_module=mnist_cnn.load_module,
    )


_ENTRIES: dict[str, Callable[[], ZooEntry]] = {"mnist-cnn": _mnist}


def names() -> list[str]:
    return list(_ENTRIES)


def entry(name: str) -> ZooEntry:
    from ..errors import WorkbenchError

    if name not in _ENTRIES:
        raise WorkbenchError(f"unknown zoo model {name!r}; available: {', '.join(names())}")
    return _ENTRIES[name]()


_LOADED: dict[str, "ModelHandle"] = {}


def load(name: str) -> "ModelHandle":
    """The zoo model as a ModelHandle (memoised: the bundled file never changes within a process)."""
    if name not in _LOADED:
        from ..model import from_onnx

        e = entry(name)
        handle = from_onnx(e.model_path, name=name, source="zoo")
        handle.zoo = e
        _LOADED[name] = handle
    return _LOADED[name]
