"""The small interface every backend implements: availability, build → Engine (infer, Polygraphy runner)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np


class Engine(ABC):
    """A built model on one backend. Use it as a context manager (or call `close`): a TensorRT engine holds an
    activated Polygraphy runner, CUDA events and device buffers until it is closed."""

    backend: "Backend"

    def close(self) -> None:
        """Release what the engine holds (runners, device memory); it cannot infer afterwards."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns every graph output by name."""

    @abstractmethod
    def timed_call(self, feed: dict[str, np.ndarray]) -> Callable[[], float | None]:
        """A zero-argument callable running one inference on the pre-bound feed. It returns device compute time
        in ms where the backend has a device clock (TensorRT: CUDA events around enqueue), else None; the
        bench loop measures host (end-to-end) time around the call."""

    @abstractmethod
    def runner(self) -> Any:
        """A Polygraphy runner over this engine (for Comparator and `polygraphy run` cross-checks)."""

    def describe(self) -> dict:
        """Backend, device and settings: the context every latency or accuracy number must carry."""
        return self.backend.describe()


class Backend(ABC):
    name: str
    profile: Any = None  # workbench.model.profiles.Profile: shapes an engine must support

    def check_profile(self, feed: dict[str, np.ndarray]) -> None:
        """Report (or refuse) inputs outside the optimization profile; backends decide which."""

    def key(self) -> dict:
        """The backend's name and plain settings (threads, optimization, profile): part of every stored result's
        key, so results of different settings never mix."""
        plain = {k: v for k, v in vars(self).items() if isinstance(v, (bool, int, float, str, tuple, type(None)))}
        profile = getattr(self, "profile", None)
        return {"name": self.name, **plain, "profile": profile.to_dict() if profile is not None else None}

    @abstractmethod
    def describe(self) -> dict:
        """Backend, device and settings of every engine it builds (known without building one: a stored run's key
        is computed before deciding whether to build)."""

    def task_resources(self) -> dict[str, float]:
        """What one evaluation on this backend occupies, for a scheduler (workbench.core.executor.Task)."""
        return {"cpus": float(getattr(self, "threads", 1)), "gpus": 0.0}

    @classmethod
    @abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """(usable here?, reason when not): used to enable/disable choices in the UI and CLI."""

    @abstractmethod
    def build(self, model_path: Path) -> Engine:
        """Build from a transformed ONNX file."""

    @abstractmethod
    def build_from_bytes(self, model: bytes, name: str) -> Engine:
        """Build from a serialized ONNX model (e.g. one with extra tensors marked as outputs)."""

    def build_marked(self, model: Any, tensors: list[str], name: str) -> Engine:
        """An engine whose outputs include `tensors` (per-layer comparison). Default: mark them as ONNX graph
        outputs, which is exact on a backend that does not fuse across them (ONNX Runtime without optimizations)."""
        from workbench.graph.polygraphy_util import with_outputs

        return self.build_from_bytes(with_outputs(model, tensors), name)
