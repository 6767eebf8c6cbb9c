"""TensorRT build stages on CPU with fake Polygraphy loaders: directories exist before use, and each stage's
failure is one line naming the runtime, the model and the stage (the real path runs where tensorrt imports)."""
from __future__ import annotations

from pathlib import Path

import pytest

import workbench.runtime.tensorrt as trt_backend
from workbench.core.errors import WorkbenchError
from workbench.model.profiles import default_profile
from workbench.runtime.tensorrt import TensorRT, TensorRTRtx


class _Loader:
    """A stand-in for a Polygraphy loader: records its arguments, then returns or raises on call."""

    calls: dict = {}

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        _Loader.calls[type(self).__name__] = (args, kwargs)

    def __call__(self):
        return self.result()

    def result(self):
        return "ok"


def _fakes(monkeypatch, parse=None, build=None, deserialize=None):
    import polygraphy.backend.trt as ptrt

    def make(name, outcome):
        def result(self):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome if outcome is not None else "ok"

        return type(name, (_Loader,), {"result": result})

    seen = {}

    class Build(make("Build", build)):
        def result(self):
            seen["timing_dir_exists"] = Path(self.kwargs["save_timing_cache"]).parent.is_dir()
            return super().result()

    monkeypatch.setattr(ptrt, "NetworkFromOnnxPath", make("Network", parse))
    monkeypatch.setattr(ptrt, "CreateConfig", make("Config", None))
    monkeypatch.setattr(ptrt, "EngineBytesFromNetwork", Build)
    monkeypatch.setattr(ptrt, "EngineFromBytes", make("Engine", deserialize))
    return seen


@pytest.fixture
def plan(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "fresh-cache"))
    backend = TensorRT()
    profile = default_profile(mnist.inputs)
    return backend, backend.build_plan(Path(mnist.path), mnist.sha256, profile, "10.9.0", "Fake GPU"), profile


def test_first_build_creates_the_timing_cache_directory(plan, monkeypatch):
    backend, build_plan, profile = plan
    seen = _fakes(monkeypatch, build=b"plan-bytes")
    assert not Path(build_plan["timing_cache"]).parent.exists()
    assert backend.build_bytes(build_plan, profile, debug_tensors=()) == b"plan-bytes"
    assert seen["timing_dir_exists"]


@pytest.mark.parametrize("stage, failure, expected", [
    ("parse", RuntimeError("In node 3 (parseGraph): INVALID_NODE: Invalid Node - Conv_0\nmore detail"),
     r"^TensorRT could not parse model\.onnx: In node 3 \(parseGraph\): INVALID_NODE: Invalid Node - Conv_0 more detail$"),
    ("build", RuntimeError("Error Code 2: OutOfMemory (Requested size was 1073741824 bytes.)"),
     r"^TensorRT could not build model\.onnx: ran out of GPU memory \(Error Code 2: OutOfMemory"),
    ("build", RuntimeError(""), r"^TensorRT could not build model\.onnx: RuntimeError$"),
])
def test_each_stage_fails_in_one_line(plan, monkeypatch, stage, failure, expected):
    backend, build_plan, profile = plan
    _fakes(monkeypatch, **{stage: failure})
    with pytest.raises(WorkbenchError, match=expected):
        backend.build_bytes(build_plan, profile, debug_tensors=())


def test_unsupported_gpu_is_named_on_deserialize(monkeypatch):
    from polygraphy.exception import PolygraphyException

    _fakes(monkeypatch, deserialize=PolygraphyException("Could not deserialize engine. See log for details."))
    monkeypatch.setattr(trt_backend, "compute_capability", lambda: "9.0")
    monkeypatch.setattr(trt_backend, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    rtx = TensorRTRtx.__new__(TensorRTRtx)  # no environment change: only the message is under test
    with pytest.raises(WorkbenchError) as info:
        rtx.deserialize(b"plan", "mnist-int8.onnx")
    message = str(info.value)
    assert message.startswith("TensorRT-RTX could not deserialize mnist-int8.onnx (TensorRT-RTX runs engines on "
                              "compute capability 8.0, 8.6, 8.9, 12.0, 12.1; NVIDIA H100 80GB HBM3 is 9.0")
    assert "\n" not in message


def test_tensorrt_rtx_builds_the_int8_model(mnist, mnist_calib, tmp_path):
    """The real TensorRT-RTX parse + build through the project's backend, wherever tensorrt_rtx imports (it needs
    an NVIDIA GPU; on an H100 it builds but cannot run). In a subprocess: Polygraphy picks TensorRT or TensorRT-RTX
    once per process."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("TensorRT-RTX is not installed here (it needs an NVIDIA GPU; see README's device check)")
    import workbench as wb

    transformed = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    script = (
        "import sys; from pathlib import Path\n"
        "from workbench.runtime.tensorrt import TensorRTRtx, gpu_name\n"
        "from workbench.model.loading import from_onnx\n"
        "from workbench.model.profiles import default_profile\n"
        "b = TensorRTRtx(); h = from_onnx(sys.argv[1]); p = default_profile(h.inputs)\n"
        "plan = b.build_plan(Path(sys.argv[1]), h.sha256, p, b.version(), gpu_name())\n"
        "print(len(b.build_bytes(plan, p, [n.output[0] for n in h.proto.graph.node])))\n"
    )
    env = {**os.environ, "POLYGRAPHY_USE_TENSORRT_RTX": "1", "WORKBENCH_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script, str(transformed.path)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) > 100_000


def test_tensorrt_logged_cause_joins_the_message(plan, monkeypatch):
    """TensorRT reports why a build failed through its logger and Polygraphy raises a generic "Invalid Engine":
    the logged cause is part of the one line (seen on the H100: Silero VAD's graphScope assertion)."""
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    class Failing:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self):
            with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
                G_LOGGER.error("[graphScope.cpp::analyze::471] Error Code 2: Internal Error\n(Assertion failed.)")
            raise PolygraphyException("Invalid Engine. Please ensure the engine was built correctly")

    import polygraphy.backend.trt as ptrt

    backend, build_plan, profile = plan
    _fakes(monkeypatch)
    monkeypatch.setattr(ptrt, "EngineBytesFromNetwork", Failing)
    with pytest.raises(WorkbenchError) as info:
        backend.build_bytes(build_plan, profile)
    assert str(info.value) == ("TensorRT could not build model.onnx: Invalid Engine. Please ensure the engine was "
                               "built correctly ([graphScope.cpp::analyze::471] Error Code 2: Internal Error "
                               "(Assertion failed.))")
    assert "error" not in vars(G_LOGGER), "the logger is restored"


def test_build_from_bytes_and_build_marked_use_their_name(plan, monkeypatch, mnist):
    """Review defect: the TensorRT backend ignored the `name` of build_from_bytes and build_marked; it now labels
    the engine and every stage's error."""
    from polygraphy.exception import PolygraphyException

    backend, _, _ = plan
    monkeypatch.setattr(backend, "version", lambda: "10.9.0")
    monkeypatch.setattr(trt_backend, "gpu_name", lambda: "Fake GPU")
    _fakes(monkeypatch, build=b"plan-bytes", deserialize=PolygraphyException("no engine"))
    with pytest.raises(WorkbenchError, match=r"^TensorRT could not deserialize per-layer comparison \(Fake GPU"):
        backend.build_marked(Path(mnist.path), [], name="per-layer comparison")
    with pytest.raises(WorkbenchError, match=r"^TensorRT could not deserialize local sensitivity \(Fake GPU"):
        backend.build_from_bytes(Path(mnist.path).read_bytes(), name="local sensitivity")


def test_engines_close_their_runner_events_and_buffers(monkeypatch, mnist):
    """Review item: engines are context managers; a TensorRT engine deactivates its runner, destroys the CUDA events
    timed_call created and frees its device inputs (faked here: no GPU on this machine)."""
    import ctypes

    from polygraphy import cuda

    from workbench.runtime import get_backend
    from workbench.runtime.tensorrt import TensorRTEngine

    destroyed, freed, deactivated = [], [], []

    class Lib:
        def cudaEventDestroy(self, event):
            destroyed.append(event.value)

    class Wrapper:
        handle = Lib()

    class Buffer:
        def free(self):
            freed.append(1)

    class Runner:
        def deactivate(self):
            deactivated.append(1)

    monkeypatch.setattr(cuda, "wrapper", lambda: Wrapper())
    with TensorRTEngine(None, None, "fake") as engine:
        engine._runner, engine._events = Runner(), [ctypes.c_void_p(7), ctypes.c_void_p(8)]
        engine._device_buffers = {"input": Buffer()}
    assert destroyed == [7, 8] and freed == [1] and deactivated == [1]
    assert engine._runner is None and engine._events == [] and engine._device_buffers == {}
    with get_backend().build(mnist.path) as cpu:
        assert cpu.session is not None
    assert cpu.session is None
