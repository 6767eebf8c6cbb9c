"""Bundled models with real data. Entries load lazily; the real pretrained ones need the `zoo` extra."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from workbench.core.errors import WorkbenchError
from workbench.zoo.base import ZooEntry

if TYPE_CHECKING:
    from workbench.model.loading import ModelHandle


def _mnist() -> ZooEntry:
    from workbench.zoo import mnist_cnn

    return mnist_cnn.entry()


def _mobilenet() -> ZooEntry:
    from workbench.zoo import mobilenet_v2

    return mobilenet_v2.entry()


def _minilm() -> ZooEntry:
    from workbench.zoo import minilm

    return minilm.entry()


_ENTRIES: dict[str, Callable[[], ZooEntry]] = {"mnist-cnn": _mnist, "mobilenet-v2": _mobilenet, "minilm": _minilm}


def names() -> list[str]:
    return list(_ENTRIES)


def entry(name: str) -> ZooEntry:
    if name not in _ENTRIES:
        raise WorkbenchError(f"unknown zoo model {name!r}; available: {', '.join(names())}")
    return _ENTRIES[name]()


_LOADED: dict[str, "ModelHandle"] = {}


def load(name: str) -> "ModelHandle":
    """The zoo model as a ModelHandle (memoised per process; exports are cached on disk)."""
    if name not in _LOADED:
        e = entry(name)
        handle = e.export()
        handle.zoo = e
        _LOADED[name] = handle
    return _LOADED[name]


def load_model(source: Any, example_inputs: Any = None, **torch_options: Any) -> "ModelHandle":
    """Load a model from a zoo name, an .onnx path or a torch.nn.Module (with example inputs).

    For a module, `input_names`, `output_names` and `dynamic_axes` ({input: {axis: "symbol"}}) are accepted.
    """
    from workbench.model.loading import load as load_file

    if isinstance(source, str) and source in names():
        return load(source)
    if isinstance(source, str) and not source.endswith(".onnx") and not Path(source).exists():
        raise WorkbenchError(f"unknown model {source!r}: give an .onnx path or one of the zoo models "
                             f"({', '.join(names())})")
    return load_file(source, example_inputs, **torch_options)
