"""ONNX Runtime on CPU: the embedded backend that runs everywhere (laptops, CI)."""
from __future__ import annotations

import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.errors import WorkbenchError, one_line
from workbench.runtime.base import Backend, Engine

# "disable" runs the graph as written, so Q/DQ semantics match what TensorRT sees (ORT's level-2 optimizations
# re-quantize an excluded Conv/Gemm between DQ and Q). "all" is what a CPU deployment would run: use for latency.
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def cpu_name() -> str:
    try:
        import cpuinfo  # optional

        return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor()
    except Exception:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI (8-bit dot products without 16-bit saturation); None where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return "avx512_vnni" in flags or "avx_vnni" in flags


class OnnxRuntimeCpuEngine(Engine):
    def __init__(self, backend: "OnnxRuntimeCpu", session: Any, name: str) -> None:
        self.backend = backend
        self.session = session
        self.name = name
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        self.specialized = _specialized_on(session)

    def close(self) -> None:
        self.session = None  # the session's arena goes with its last reference

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.backend.check_profile(feed)
        for name, value in self.specialized.items():
            if name in feed and not np.array_equal(np.asarray(feed[name]), value):
                raise WorkbenchError(f"this model was specialized on {name} = {value.tolist()} (its control flow "
                                     f"for that value only); got {name} = {np.asarray(feed[name]).tolist()}: build "
                                     f"it with calibration data that has this {name}")
        try:
            values = self.session.run(self.output_names, feed)
        except Exception as exc:
            raise WorkbenchError(f"ONNX Runtime could not run the model: {one_line(exc)}"
                                 ) from None
        return dict(zip(self.output_names, values))

    def timed_call(self, feed: dict[str, np.ndarray]):
        """One inference per call, inputs and output names bound in advance; no device clock on CPU (None)."""
        run, names = self.session.run, self.output_names

        def step() -> None:
            run(names, feed)

        return step

    def runner(self) -> Any:
        return _numpy_runner_class()(self.session, name=f"onnxrt-cpu:{self.name}")


def _specialized_on(session: Any) -> dict[str, np.ndarray]:
    """Inputs the model's control flow was specialized on (workbench.graph.specialize), from its metadata."""
    import json

    from workbench.graph.specialize import SPECIALIZED_KEY

    text = session.get_modelmeta().custom_metadata_map.get(SPECIALIZED_KEY)
    return {k: np.asarray(v) for k, v in json.loads(text).items()} if text else {}


def _numpy_runner_class() -> type:
    """Polygraphy's OnnxrtRunner, minus its per-call torch.Tensor check: that check imports torch (~200 MB, ~1 s)
    on the first inference, and our feeds are always NumPy."""
    from collections import OrderedDict

    from polygraphy.backend.onnxrt import OnnxrtRunner

    class NumpyOnnxrtRunner(OnnxrtRunner):
        def infer_impl(self, feed_dict):
            start = time.time()
            outputs = self.sess.run(None, feed_dict)
            self.inference_time = time.time() - start
            return OrderedDict((o.name, v) for o, v in zip(self.sess.get_outputs(), outputs))

    return NumpyOnnxrtRunner


class OnnxRuntimeCpu(Backend):
    name = "onnxruntime-cpu"

    def __init__(self, threads: int = 1, optimization: str = "disable", profile: Any = None) -> None:
        if threads < 1:
            raise WorkbenchError(f"threads must be ≥ 1, got {threads}")
        if optimization not in OPTIMIZATION_LEVELS:
            raise WorkbenchError(f"unknown graph optimization {optimization!r}; one of {OPTIMIZATION_LEVELS}")
        self.threads = threads
        self.optimization = optimization
        self.profile = profile
        self._reported: set[str] = set()

    def check_profile(self, feed: dict[str, np.ndarray]) -> None:
        """ONNX Runtime runs any shape; say (once per problem) when a TensorRT engine with this profile would not."""
        if self.profile is None:
            return
        for problem in self.profile.violations(feed):
            if problem not in self._reported:
                self._reported.add(problem)
                warnings.warn(f"{problem}: a TensorRT engine built with this profile would reject it", UserWarning,
                              stacklevel=3)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        return True, ""

    def session_options(self) -> Any:
        import onnxruntime as ort

        from workbench.core.log import onnxruntime_options

        opts = onnxruntime_options(self.optimization)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return opts

    def describe(self) -> dict:
        import onnxruntime

        return {
            "backend": self.name, "runtime": f"ONNX Runtime {onnxruntime.__version__}", "device": "CPU",
            "device_name": cpu_name(), "threads": self.threads,
            "graph_optimization": self.optimization, "timing": "host clock (no device timer on CPU)",
            "label": f"ONNX Runtime CPU, {self.threads} thread{'s' if self.threads != 1 else ''}",
        }

    def build(self, model_path: Path) -> OnnxRuntimeCpuEngine:
        return self._session(str(model_path), Path(model_path).stem)

    def build_from_bytes(self, model: bytes, name: str) -> OnnxRuntimeCpuEngine:
        return self._session(model, name)

    def _session(self, source: Any, name: str) -> OnnxRuntimeCpuEngine:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(source, self.session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            if _has_bf16(source):
                raise WorkbenchError(f"{name} is a BF16 model: ONNX Runtime CPU has no BF16 kernels; run it on "
                                     "TensorRT (--backend tensorrt) or use fp16 here") from None
            raise WorkbenchError(f"ONNX Runtime cannot load {name}: {one_line(exc)}") from None
        return OnnxRuntimeCpuEngine(self, session, name)


def _has_bf16(source: Any) -> bool:
    import onnx

    try:
        model = onnx.ModelProto.FromString(source) if isinstance(source, bytes) else onnx.load(
            source, load_external_data=False)
    except Exception:
        return False
    bf16 = onnx.TensorProto.BFLOAT16
    return any(i.data_type == bf16 for i in model.graph.initializer) or any(
        v.type.tensor_type.elem_type == bf16 for v in model.graph.value_info)
