"""TensorRT 11 (and 10) through Polygraphy's TensorRT loaders; TensorRT-RTX through Polygraphy's RTX mode.

The engine is built from the same transformed ONNX the CPU backend runs: precision lives in the graph (casts,
Q/DQ), the network is strongly typed (required and implicit on TensorRT 11, opt-in on 10), and the legacy
precision flags are used only when a user asks for them on TensorRT 10. Serialized engines are cached by model
hash, profile, TensorRT version and GPU name; a timing cache per TensorRT version and GPU is reused across builds.

Written against the TensorRT 11 Python API docs and Polygraphy's source; exercised only where tensorrt imports
and a GPU is present (no TensorRT can be installed on the machines this was written on).
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.core.log import quiet_polygraphy
from workbench.model.profiles import Profile
from workbench.runtime.base import Backend, Engine

INSTALL_HINT = "pip install 'workbench[tensorrt]' on a machine with an NVIDIA GPU and driver"
LEGACY_FLAGS = ("fp16", "int8", "bf16")
MARKING_NOTE = ("TensorRT fuses layers: per-layer values are captured as debug tensors marked by ONNX name "
                "(Polygraphy's MarkDebug); a tensor the network does not have, or that fusion removes, is absent "
                "from the comparison, never silently zero. Marking every tensor as a network output instead would "
                "disable fusions and change the numbers.")


def _import_trt(module: str) -> tuple[Any | None, str]:
    try:
        return importlib.import_module(module), ""
    except Exception as exc:  # the PyPI stubs raise at import when they could not fetch the real libraries
        kind = "not installed" if isinstance(exc, ModuleNotFoundError) else f"not usable ({type(exc).__name__})"
        return None, f"{'TensorRT' if module == 'tensorrt' else 'TensorRT-RTX'} is {kind}: {INSTALL_HINT}"


def gpu_name() -> str:
    """The first GPU's name (nvidia-smi), used in cache keys and every latency label."""
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown GPU"


def engine_key(model_sha256: str, profile: Profile, trt_version: str, gpu: str, legacy_flags: tuple[str, ...],
               runtime: str = "tensorrt") -> str:
    """An engine is valid only for this model, profile, TensorRT version, GPU and flag set."""
    return cache.digest("engine", runtime, model_sha256, profile.to_dict(), trt_version, gpu, sorted(legacy_flags))


def timing_cache_path(trt_version: str, gpu: str, runtime: str = "tensorrt") -> Path:
    return cache.cache_root() / "timing" / f"{runtime}-{trt_version}-{cache.digest(gpu)[:12]}.cache"


class TensorRTEngine(Engine):
    def __init__(self, backend: "TensorRT", engine: Any, name: str) -> None:
        self.backend = backend
        self.engine = engine
        self.name = name
        self._runner: Any = None
        self._events: list[ctypes.c_void_p] = []  # CUDA events timed_call created
        self._device_buffers: dict[str, Any] = {}  # its GPU inputs, alive as long as its step is used

    def close(self) -> None:
        """Destroy the CUDA events and free the device inputs timed_call made, then deactivate the runner."""
        if self._events:
            from polygraphy import cuda

            lib = cuda.wrapper().handle
            for event in self._events:
                lib.cudaEventDestroy(event)
            self._events = []
        for buffer in self._device_buffers.values():
            buffer.free()
        self._device_buffers = {}
        if self._runner is not None:
            self._runner.deactivate()
            self._runner = None

    def runner(self) -> Any:
        from polygraphy.backend.trt import TrtRunner

        return TrtRunner(self.engine, name=f"{self.backend.name}:{self.name}")

    def _active(self) -> Any:
        if self._runner is None:
            self._runner = self.runner()
            self._runner.activate()
        return self._runner

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.backend.check_profile(feed)
        return dict(self._active().infer(feed))

    def timed_call(self, feed: dict[str, np.ndarray]):
        """Inputs copied to the GPU once; each call enqueues one inference between two CUDA events and returns
        the device time in ms (the bench loop's host clock around the call gives end-to-end time)."""
        from polygraphy import cuda

        self.backend.check_profile(feed)
        runner = self._active()
        stream = runner.stream
        device_feed = {}
        for name, value in feed.items():
            buffer = cuda.DeviceArray(shape=value.shape, dtype=value.dtype)
            buffer.copy_from(np.ascontiguousarray(value), stream=stream)
            device_feed[name] = buffer
        stream.synchronize()
        lib = cuda.wrapper().handle
        start, end = ctypes.c_void_p(), ctypes.c_void_p()
        for event in (start, end):
            cuda.wrapper().check(lib.cudaEventCreate(ctypes.byref(event)))
            self._events.append(event)
        elapsed = ctypes.c_float()
        stream_ptr = ctypes.c_void_p(stream.ptr)

        def step() -> float:
            lib.cudaEventRecord(start, stream_ptr)
            runner.infer(device_feed, check_inputs=False, copy_outputs_to_host=False)
            lib.cudaEventRecord(end, stream_ptr)
            lib.cudaEventSynchronize(end)
            lib.cudaEventElapsedTime(ctypes.byref(elapsed), start, end)
            return float(elapsed.value)

        for name in set(device_feed) & set(self._device_buffers):
            self._device_buffers.pop(name).free()
        self._device_buffers.update(device_feed)
        return step


class TensorRT(Backend):
    name = "tensorrt"
    product = "TensorRT"
    module = "tensorrt"

    def describe(self) -> dict:
        version = self.version()
        gpu = gpu_name()
        return {"backend": self.name, "runtime": f"{self.product} {version}", "device": "GPU",
                "device_name": gpu, "threads": None, "profile": self.profile.to_dict()
                if self.profile else None,
                "timing": "CUDA events around enqueue (device) and host clock (end to end)",
                "marking": MARKING_NOTE, "label": f"{self.product} {version}, {gpu}"}

    def task_resources(self) -> dict[str, float]:
        return {"cpus": 1.0, "gpus": 1.0}  # one build or timing run owns a GPU

    def __init__(self, profile: Profile | None = None, legacy_precision_flags: tuple[str, ...] = (),
                 timing_cache: bool = True, builder_optimization_level: int | None = None) -> None:
        unknown = set(legacy_precision_flags) - set(LEGACY_FLAGS)
        if unknown:
            raise WorkbenchError(f"unknown TensorRT precision flag(s) {sorted(unknown)}; known: {LEGACY_FLAGS}")
        self.profile = profile
        self.legacy_precision_flags = tuple(legacy_precision_flags)
        self.timing_cache = timing_cache
        self.builder_optimization_level = builder_optimization_level
        self.missing_debug: list[str] = []  # requested debug tensors the last parsed network did not have

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        trt, reason = _import_trt(cls.module)
        return (trt is not None), reason

    def version(self) -> str:
        trt, reason = _import_trt(self.module)
        if trt is None:
            raise WorkbenchError(reason)
        return str(trt.__version__)

    def major(self) -> int:
        return int(self.version().split(".")[0])

    def check_profile(self, feed: dict[str, np.ndarray]) -> None:
        if self.profile is not None:
            problems = self.profile.violations(feed)
            if problems:
                raise WorkbenchError("input outside the engine's optimization profile: " + "; ".join(problems))

    def build_plan(self, model_path: Path, model_sha256: str, profile: Profile, version: str, gpu: str) -> dict:
        """Every choice the build makes, before touching TensorRT (testable anywhere)."""
        if self.legacy_precision_flags and int(version.split(".")[0]) >= 11:
            raise WorkbenchError(f"TensorRT {version} removed the precision flags {list(self.legacy_precision_flags)}"
                                 ": precision comes from the ONNX graph (use a fp16/int8 recipe)")
        key = engine_key(model_sha256, profile, version, gpu, self.legacy_precision_flags, self.module)
        return {
            "onnx": str(model_path), "strongly_typed": not self.legacy_precision_flags,
            "legacy_precision_flags": list(self.legacy_precision_flags), "profile": profile.to_dict(),
            "timing_cache": str(timing_cache_path(version, gpu, self.module)) if self.timing_cache else None,
            "builder_optimization_level": self.builder_optimization_level,
            "engine_cache": str(cache.artifact_path("engines", key, ".plan")),
        }

    def build(self, model_path: Path, debug_tensors: Sequence[str] = (), name: str | None = None) -> TensorRTEngine:
        """Build (or load from the engine cache). `debug_tensors` names ONNX tensors to capture as debug tensors;
        `name` labels the engine and its errors (default: the file name)."""
        from workbench.model.loading import from_onnx

        handle = from_onnx(model_path)
        profile = self.profile or _default_profile(handle)
        key = handle.sha256 + (("+debug:" + cache.digest(sorted(debug_tensors))) if debug_tensors else "")
        plan = self.build_plan(Path(model_path), key, profile, self.version(), gpu_name())
        path = Path(plan["engine_cache"])
        if not path.exists():
            cache.atomic_write(path, self.build_bytes(plan, profile, debug_tensors))
        label = name or Path(model_path).name
        return TensorRTEngine(self, self.deserialize(path.read_bytes(), label), name or Path(model_path).stem)

    def deserialize(self, data: bytes, model: str) -> Any:
        """The engine object; a GPU the runtime cannot run on is named with its compute capability."""
        from polygraphy.backend.trt import EngineFromBytes

        with _stage(self.product, model, "deserialize", hint=lambda: self.unsupported_gpu_hint()):
            with quiet_polygraphy():
                engine = EngineFromBytes(data)()
            if engine is None:
                raise RuntimeError("the runtime returned no engine")
        return engine

    def unsupported_gpu_hint(self) -> str:
        capability = compute_capability()
        return f" ({gpu_name()}, compute capability {capability or 'unknown'})"

    def build_bytes(self, plan: dict, profile: Profile, debug_tensors: Sequence[str] = ()) -> bytes:
        """Parse, then build, each stage's failure a one-line WorkbenchError naming the model and the stage. The
        timing-cache directory is made first (Polygraphy locks the file itself, so concurrent builds are safe).

        Debug tensors are marked explicitly by ONNX name (Polygraphy's MarkDebug): on TensorRT-RTX 1.7 the
        "unfused tensors" mode left the plan byte-identical, while explicit marks add one record per tensor
        (benchmarks/tensorrt_device.py). Names the network lacks are left out and listed in `missing_debug`."""
        from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, MarkDebug, NetworkFromOnnxPath

        model = Path(plan["onnx"]).name
        if plan["timing_cache"]:
            Path(plan["timing_cache"]).parent.mkdir(parents=True, exist_ok=True)
        flags = {flag: True for flag in plan["legacy_precision_flags"]}
        with _stage(self.product, model, "parse"), quiet_polygraphy():
            network = NetworkFromOnnxPath(plan["onnx"], strongly_typed=plan["strongly_typed"])()
            if debug_tensors:
                present = network_tensor_names(network[1])
                self.missing_debug = [t for t in debug_tensors if t not in present]
                network = MarkDebug(network, mark_debug=[t for t in debug_tensors if t in present])()
        config = CreateConfig(profiles=[profile.to_polygraphy()], load_timing_cache=plan["timing_cache"],
                              builder_optimization_level=plan["builder_optimization_level"], **flags)
        with _stage(self.product, model, "build"), quiet_polygraphy():
            data = EngineBytesFromNetwork(network, config, save_timing_cache=plan["timing_cache"])()
            if not data:
                raise RuntimeError("the builder returned no engine")
        return bytes(data)

    def layer_info(self, model_path: Path, profile: Profile) -> "BuiltLayers":
        """Build with ProfilingVerbosity.DETAILED and return what the builder tells about the engine's layers: the
        engine inspector's JSON (what `trtexec --exportLayerInfo` writes) when this GPU can deserialize the engine,
        else the builder's VERBOSE log, whose "Layers:" listing carries the same names, formats and ONNX metadata
        (TensorRT-RTX on an H100/H200). Built through the bindings with a logger of our own, since the log is the
        answer there (the way benchmarks/tensorrt_device.py captured it on the H100)."""
        trt, _ = _import_trt(self.module)
        model = Path(model_path).name
        logger = _capturing_logger(trt)
        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        with _stage(self.product, model, "parse"):
            if not parser.parse_from_file(str(model_path)):
                raise RuntimeError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        with _stage(self.product, model, "build"):
            config.add_optimization_profile(profile.to_polygraphy().to_trt(builder, network))
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise RuntimeError(logger.lines[-1] if logger.lines else "the builder returned no engine")
        data = bytes(plan)
        label = f"{self.product} {trt.__version__}"
        engine = trt.Runtime(logger).deserialize_cuda_engine(data)
        if engine is None:
            return BuiltLayers("\n".join(logger.lines), label, gpu_name(), len(data))
        text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        return BuiltLayers(json.loads(text), label, gpu_name(), len(data))

    def build_from_bytes(self, model: bytes, name: str) -> TensorRTEngine:
        return self.build(cache.store_model(model), name=name)

    def build_marked(self, model: Any, tensors: list[str], name: str) -> TensorRTEngine:
        """Per-layer values as debug tensors (fusion kept), not as extra outputs (see MARKING_NOTE)."""
        import onnx

        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else Path(model).read_bytes()
        return self.build(cache.store_model(data), debug_tensors=list(tensors), name=name)


def _capturing_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps every message (the builder's VERBOSE layer listing included)."""

    class Capture(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.lines.append(msg)

    return Capture()


@dataclass(frozen=True)
class BuiltLayers:
    """What the builder said about one engine: the inspector's parsed JSON, or the builder's verbose log where the
    engine cannot be deserialized on this GPU; which runtime, which GPU, plan size."""
    layer_info: Any
    runtime: str
    device: str
    plan_bytes: int


class TensorRTRtx(TensorRT):
    """TensorRT-RTX for RTX laptops and desktops, through Polygraphy's TensorRT-RTX mode."""

    name = "tensorrt-rtx"
    product = "TensorRT-RTX"
    module = "tensorrt_rtx"

    def unsupported_gpu_hint(self) -> str:
        capability = compute_capability()
        if capability and capability not in RTX_COMPUTE_CAPABILITIES:
            return (f" (TensorRT-RTX runs engines on compute capability {', '.join(RTX_COMPUTE_CAPABILITIES)}; "
                    f"{gpu_name()} is {capability}: build works here, run on an RTX GPU)")
        return super().unsupported_gpu_hint()

    def __init__(self, **options: Any) -> None:
        import sys

        if "polygraphy.backend.trt" in sys.modules and os.environ.get("POLYGRAPHY_USE_TENSORRT_RTX", "0") == "0":
            raise WorkbenchError("Polygraphy's TensorRT backend is already loaded for TensorRT in this process: "
                                 "start Python with POLYGRAPHY_USE_TENSORRT_RTX=1 to use TensorRT-RTX")
        os.environ["POLYGRAPHY_USE_TENSORRT_RTX"] = "1"  # read by Polygraphy when its TensorRT backend is imported
        super().__init__(**options)


def available_builder(runtime: str = "auto") -> TensorRT:
    """The TensorRT that can build here: `auto` takes TensorRT, else TensorRT-RTX; none is one actionable line."""
    choices = {"tensorrt": (TensorRT,), "tensorrt-rtx": (TensorRTRtx,), "auto": (TensorRT, TensorRTRtx)}
    if runtime not in choices:
        raise WorkbenchError(f"unknown runtime {runtime!r}; one of {', '.join(choices)}")
    for cls in choices[runtime]:
        if cls.availability()[0]:
            return cls()
    products = " nor ".join(cls.product for cls in choices[runtime])
    verb = f"neither {products} imports" if runtime == "auto" else f"{products} does not import"
    raise WorkbenchError(f"no TensorRT here: {verb} "
                         f"({INSTALL_HINT}); or read the layer info JSON that trtexec --profilingVerbosity=detailed "
                         "--exportLayerInfo=FILE wrote on your GPU machine (--layer-info FILE)")


OOM_WORDS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient memory")
# TensorRT-RTX 1.7 refuses to run on other GPUs: "engine cannot run on this GPU ... Supported: 8.0 8.6 8.9 12.0 12.1"
RTX_COMPUTE_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0", "12.1")


@contextlib.contextmanager
def _stage(product: str, model: str, stage: str, hint: Callable[[], str] | None = None) -> Iterator[None]:
    """Any failure inside becomes one line: which runtime, which model, which stage, why. TensorRT reports the
    real cause through its logger (Polygraphy then raises "Invalid Engine"), so its last error joins the line."""
    with _tensorrt_errors() as logged:
        try:
            yield
        except WorkbenchError:
            raise
        except Exception as exc:
            text = one_line(exc)
            if logged and logged[-1] not in text:
                text = f"{text} ({logged[-1]})"
            if any(word in text.lower().replace(" ", "") for word in (w.replace(" ", "") for w in OOM_WORDS)):
                text = f"ran out of GPU memory ({text})"
            extra = hint() if hint is not None else ""
            raise WorkbenchError(f"{product} could not {stage} {model}{extra}: {text}") from None


@contextlib.contextmanager
def _tensorrt_errors() -> Iterator[list[str]]:
    """Collect what TensorRT logs as errors (Polygraphy forwards them to G_LOGGER.error) while a stage runs."""
    from polygraphy.logger import G_LOGGER

    logged: list[str] = []
    original, shadowed = G_LOGGER.error, "error" in vars(G_LOGGER)

    def error(message: Any, *args: Any, **kwargs: Any) -> Any:
        logged.append(" ".join(str(message).split()))
        return original(message, *args, **kwargs)

    G_LOGGER.error = error
    try:
        yield logged
    finally:
        if shadowed:
            G_LOGGER.error = original
        else:
            del G_LOGGER.error


def network_tensor_names(network: Any) -> set[str]:
    """Every layer output name in a TensorRT network (the parser keeps ONNX tensor names)."""
    return {network.get_layer(i).get_output(j).name for i in range(network.num_layers)
            for j in range(network.get_layer(i).num_outputs)}


def compute_capability() -> str | None:
    """The first GPU's compute capability as 'major.minor' (nvidia-smi), or None."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _default_profile(handle) -> Profile:
    from workbench.model.profiles import default_profile

    return default_profile(handle.inputs)
