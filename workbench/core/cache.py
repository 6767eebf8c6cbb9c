"""Content-addressed artifact cache: transformed models, calibration ranges. Writes are atomic."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
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
    """SHA-256 of a file, remembered while its size and modification time stay the same."""
    stamp = _stamp(path)
    with _PARSED_LOCK:
        known = _DIGESTS.get(stamp)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    with _PARSED_LOCK:
        _DIGESTS[stamp] = h.hexdigest()
    return h.hexdigest()


# Parse once: ONNX models read or written in this process, by (path, size, mtime), newest last, up to PARSED_MB
# of serialized size (the newest always stays). A toggle, a diagnosis cycle or a compare reads the graph that the
# transform just wrote or read without parsing it again. Shared: whoever edits one works on a copy (CopyFrom).
PARSED_MB = 256.0
_PARSED: "OrderedDict[tuple, Any]" = OrderedDict()
_DIGESTS: dict[tuple, str] = {}
_PARSED_LOCK = threading.Lock()


def _stamp(path: str | os.PathLike) -> tuple:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def parsed_model(path: str | os.PathLike) -> Any:
    """The ONNX model at `path`, parsed once while it is recent (read-only: it is shared). A model with external
    data is loaded whole each time and not kept (its weights are not counted by its file size)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    stamp = _stamp(path)
    with _PARSED_LOCK:
        if stamp in _PARSED:
            _PARSED.move_to_end(stamp)
            return _PARSED[stamp]
    model = onnx.load(str(path), load_external_data=False)
    if any(uses_external_data(t) for t in model.graph.initializer):
        load_external_data_for_model(model, str(Path(path).parent))
        return model
    remember_parsed(path, model)
    return model


def remember_parsed(path: str | os.PathLike, model: Any, sha256: str | None = None) -> None:
    """Keep a model just written to `path` (and its digest when known) for parsed_model / file_digest."""
    stamp = _stamp(path)
    with _PARSED_LOCK:
        _PARSED[stamp] = model
        _PARSED.move_to_end(stamp)
        if sha256 is not None:
            _DIGESTS[stamp] = sha256
        while len(_PARSED) > 1 and sum(k[1] for k in _PARSED) > PARSED_MB * 2**20:
            _PARSED.popitem(last=False)


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
