"""Content-addressed artifact cache: transformed models, calibration ranges. Writes are atomic."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ENV_VAR = "WORKBENCH_CACHE_DIR"


def cache_root() -> Path:
    """The cache directory: $WORKBENCH_CACHE_DIR, else the user's cache dir (e.g. ~/.cache/workbench)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("workbench"))


def digest(*parts: Any) -> str:
    """A stable hash of bytes, strings and JSON-able values (order matters)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            data = bytes(part)
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = json.dumps(part, sort_keys=True, default=str).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_path(kind: str, key: str, suffix: str) -> Path:
    """Where the artifact of this kind and key lives (it may not exist yet)."""
    return cache_root() / kind / key[:2] / f"{key}{suffix}"


def atomic_write(path: Path, data: bytes) -> Path:
    """Write via a temporary file in the same directory and rename, so readers never see half a file."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a file name (ORT's save_tensors_data), renamed into
    place when the block ends without error: a kill or Ctrl-C leaves the old entry or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def store_model(data: bytes) -> Path:
    """A serialized ONNX model in the cache under its own content digest (written once, atomically)."""
    path = artifact_path("models", digest(data), ".onnx")
    if not path.exists():
        atomic_write(path, data)
    return path
