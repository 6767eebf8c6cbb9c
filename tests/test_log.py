"""Quieting ONNX Runtime's quantizer leaves the user's logging and stdout alone (review defect: it lowered the root
logger to ERROR and redirected sys.stdout for the whole process)."""
from __future__ import annotations

import logging
import sys

from workbench.core.log import LOGGER, quiet_onnxruntime


def test_quiet_onnxruntime_drops_only_onnxruntime_records(caplog, capsys):
    root = logging.getLogger()
    caplog.set_level(logging.INFO)
    level, stdout = root.level, sys.stdout

    def record(pathname: str, message: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.WARNING, pathname, 1, message, None, None)

    from onnxruntime.quantization import calibrate

    with quiet_onnxruntime(), quiet_onnxruntime():
        calibrate.print("ORT's progress print")
        assert root.level == level == logging.INFO and sys.stdout is stdout
        root.handle(record("/site-packages/onnxruntime/quantization/quant_utils.py", "ORT advice"))
        root.handle(record("/home/user/train.py", "the user's own warning"))
    messages = [r.getMessage() for r in caplog.records]
    assert "the user's own warning" in messages and "ORT advice" not in messages
    assert root.filters == [] and sys.stdout is stdout and "print" not in vars(calibrate)
    assert LOGGER.name == "workbench" and "progress print" not in capsys.readouterr().out
