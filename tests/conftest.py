import os
import shutil
import tempfile

import pytest

# Every test session gets its own artifact cache so cache behaviour is tested from empty (about 3 GB for the whole
# suite), removed when the session ends.
_OWN_CACHE = None if "WORKBENCH_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="workbench-test-cache-")
if _OWN_CACHE:
    os.environ["WORKBENCH_CACHE_DIR"] = _OWN_CACHE


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist():
    import workbench

    return workbench.load_model("mnist-cnn")


@pytest.fixture(scope="session")
def mnist_calib(mnist):
    return mnist.zoo.calibration_data()


@pytest.fixture(scope="session")
def mnist_eval(mnist):
    return mnist.zoo.evaluation_data()


@pytest.fixture(scope="session")
def cpu():
    from workbench.runtime import get_backend

    return get_backend("onnxruntime-cpu", threads=1)


class CliResult:
    """What a `workbench` run printed and returned, as subprocess.CompletedProcess has it."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, subprocess: bool = False) -> CliResult:
    """`workbench ARGS` in this process through cli.main (no 2.5 s interpreter start-up), with stdout and stderr
    captured at the file descriptors too, so native libraries' lines are seen as a user would see them. Tests of the
    process contract itself (exit codes of `python -m workbench.app.cli`) pass `subprocess=True`."""
    import contextlib
    import io
    import sys
    import warnings

    args = [str(a) for a in args]
    if subprocess:
        import subprocess as sp

        r = sp.run([sys.executable, "-m", "workbench.app.cli", *args], capture_output=True, text=True)
        return CliResult(r.returncode, r.stdout, r.stderr)
    from workbench.app import cli

    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    formatwarning = warnings.formatwarning
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # printed as the CLI prints them, not recorded by pytest's warning capture
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            code = cli.main(args)
    finally:
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        warnings.formatwarning = formatwarning
    native = {}
    for fd, f in files.items():
        f.seek(0)
        native[fd] = f.read().decode(errors="replace")
        f.close()
    return CliResult(code, out.getvalue() + native[1], err.getvalue() + native[2])
