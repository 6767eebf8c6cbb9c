"""The package logger, and keeping third-party chatter out of the workbench's output without touching the root
logger's level or sys.stdout: Polygraphy logs every load and inference at INFO, ONNX Runtime's quantization tool
logs advice through the root logger; the workbench shows its own progress instead."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator

LOGGER = logging.getLogger("workbench")  # the one package logger (child loggers: workbench.<stage>)


class _FromPackage(logging.Filter):
    """Drops the records a package's own files log (whatever logger they use)."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.marker = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.marker not in record.pathname


@contextlib.contextmanager
def quiet_polygraphy() -> Iterator[None]:
    """Polygraphy's own logger at ERROR while the block runs."""
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        yield


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """While the block runs: ONNX Runtime's sessions log errors only, records logged from onnxruntime's Python files
    (its quantizer calls logging.info/warning on the root logger) are dropped by a filter that leaves the root
    logger's level and everyone else's records alone, its Python warnings are silenced, and its calibrators' prints
    ("Collecting tensor data and making histogram ...", once per batch) go nowhere: a module-level `print` in
    onnxruntime.quantization.calibrate shadows the builtin there only, sys.stdout stays as it is."""
    import onnxruntime
    from onnxruntime.quantization import calibrate

    onnxruntime.set_default_logger_severity(ORT_SILENT)
    drop = _FromPackage("onnxruntime")
    root = logging.getLogger()
    root.addFilter(drop)
    shadowed = vars(calibrate).get("print")  # set when blocks nest
    calibrate.print = _silent
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)
        if shadowed is None:
            del calibrate.print
        else:
            calibrate.print = shadowed


@contextlib.contextmanager
def native_log_lines_dropped(marker: str = ":onnxruntime:") -> Iterator[None]:
    """While the block runs, what native code writes to the process's stderr (file descriptor 2) is held back,
    then written out without the lines that hold `marker`: sessions that ONNX Runtime's quantizer creates with its
    own options log their optimizer's warnings there ("[W:onnxruntime:, unsqueeze_elimination.cc ...]"), past
    any logger setting of ours."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if marker not in line]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


ORT_SILENT = 4  # FATAL only: every ONNX Runtime error reaches the user as the exception's one line


def onnxruntime_options(optimization: str = "disable"):
    """SessionOptions for a workbench session: `optimization` one of disable/basic/extended/all, and no log lines
    of ONNX Runtime's own on stderr (`[W:onnxruntime ...] UnsqueezeElimination`, `[E:onnxruntime ...]` before the
    exception that says the same). Sessions made by other libraries (Polygraphy's runner, ORT's calibrator) use
    the default logger, which is quieted here too."""
    import onnxruntime as ort

    ort.set_default_logger_severity(ORT_SILENT)
    options = ort.SessionOptions()
    options.log_severity_level = ORT_SILENT
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return options


def _silent(*args, **kwargs) -> None:
    """A `print` that prints nothing."""
