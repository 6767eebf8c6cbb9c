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
