import os
import tempfile

import pytest

# Every test session gets its own artifact cache so cache behaviour is tested from empty.
os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-test-cache-"))


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
