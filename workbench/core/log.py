"""Keeping third-party chatter out of the workbench's output: Polygraphy logs every load and inference at INFO,
ONNX Runtime's quantization tool prints and logs advice; the workbench shows its own progress instead."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet_polygraphy() -> Iterator[None]:
    """Polygraphy's logger at ERROR while the block runs."""
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        yield


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """ORT's quantization tool prints and logs advice on the root logger; keep the CLI's output clean."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # the quantizer's own sessions log optimizer warnings otherwise
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
