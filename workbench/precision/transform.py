"""Recipe.apply: FP32 ONNX → transformed ONNX in the artifact cache (fp16 casts, int8 Q/DQ)."""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.model.data import Dataset, as_dataset
from workbench.model.loading import ModelHandle
from workbench.precision import fp16
from workbench.precision.calibration import CalibrationResult, calibrate
from workbench.precision.recipe import Recipe, resolve_exclusions

# Part of every transformed model's cache key: bump when a transform's output changes for the same inputs.
TRANSFORM_VERSION = 11
KEPT_KEY = "workbench.kept_in_fp32"  # metadata: nodes kept out of the recipe's precision, and why


@dataclass
class TransformedModel:
    """The recipe's ONNX, ready for any backend. `path` lives in the cache (or is the FP32 file for fp32)."""

    model: ModelHandle
    recipe: Recipe
    path: Path
    sha256: str
    excluded_nodes: list[str] = field(default_factory=list)
    quantized_nodes: list[str] = field(default_factory=list)
    calibration: CalibrationResult | None = None
    ranges_path: Path | None = None  # the ranges the model was quantized with: the calibration's, overrides merged in
    seconds: float = 0.0
    from_cache: bool = False
    folded: dict[str, str] = field(default_factory=dict)  # node removed by clean-up → node that absorbed it
    kept_in_fp32: dict[str, str] = field(default_factory=dict)  # node kept out of the precision → why
    # The FP32 graph the recipe quantized when it rescales tensors (equalization, smoothing): the same function, but per-layer
    # comparison must read its tensors, not the user's.
    reference: ModelHandle | None = None
    equalized: list[dict] = field(default_factory=list)  # workbench.precision.equalize.EqualizedGroup, as dicts
    smoothed: list[dict] = field(default_factory=list)  # workbench.precision.smooth.SmoothedTensor, as dicts
    bias_corrected: list[dict] = field(default_factory=list)  # workbench.precision.biascorrect.BiasCorrection, as dicts
    # input → the value every sample shares that control flow was specialized on (workbench.graph.specialize)
    specialized: dict[str, Any] = field(default_factory=dict)

    def graph(self) -> onnx.ModelProto:
        """The transformed model, parsed once per process while it is recent (shared: treat it as read-only)."""
        return cache.parsed_model(self.path)

    @property
    def fp32(self) -> ModelHandle:
        """The FP32 model to compare this one against, layer by layer."""
        return self.reference or self.model

    def manifest(self) -> dict:
        """What was built from what, with which libraries: enough to reproduce or audit the artifact."""
        import onnxruntime
        import polygraphy

        return {
            "model": self.model.describe(),
            "recipe": self.recipe.to_dict(),
            "output_sha256": self.sha256,
            "excluded_nodes": self.excluded_nodes, "folded_nodes": self.folded,
            "kept_in_fp32": self.kept_in_fp32, "equalized": self.equalized,
            "smoothed": self.smoothed, "bias_corrected": self.bias_corrected, "specialized": self.specialized,
            "quantized_nodes": len(self.quantized_nodes),
            "calibration": None if self.calibration is None else {
                "method": self.calibration.method, "samples": self.calibration.samples,
                "cache_file": str(self.ranges_path or self.calibration.path), "from_cache": self.calibration.from_cache,
            },
            "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                         "polygraphy": polygraphy.__version__, "workbench": _version()},
        }


def _version() -> str:
    from workbench.core.version import __version__

    return __version__


def apply(
    model: ModelHandle, recipe: Recipe, calib_data: Any = None, progress: bool = True,
    batch_axes: Mapping[str, int | None] | None = None,
) -> TransformedModel:
    """Transform the FP32 model by the recipe. INT8 needs calibration data (cached per data and method); FP16/BF16
    use it to keep nodes whose values exceed the FP16 range in FP32. `calib_data` may be a Dataset, an .npz path,
    a dict of arrays or an iterable of batches. Every new artifact is validated before it is cached: it loads in
    ONNX Runtime, runs one sample and its outputs are finite (BF16, which ONNX Runtime CPU cannot run: the ONNX
    checker's full check with strict shape inference)."""
    start = time.perf_counter()
    if recipe.precision == "fp32":
        if recipe.exclude:
            raise WorkbenchError("--exclude only applies to fp16/int8: fp32 keeps every node in fp32 already")
        return TransformedModel(model, recipe, Path(model.path), model.sha256, seconds=time.perf_counter() - start)
    if calib_data is not None:
        calib_data = as_dataset(calib_data, model.inputs, batch_axes, origin="calibration data")
    base, folded = cleaned(model) if recipe.cleanup else (model, {})
    from workbench.graph.cleanup import CONSTANT

    # names of folded nodes → the node that absorbed them (a folded constant has nothing left to exclude)
    excluded = list(dict.fromkeys(folded.get(n, n) for n in resolve_exclusions(model.proto, recipe.exclude)
                                  if folded.get(n) != CONSTANT))
    calibration, ranges_path, kept, equalization, smoothing = None, None, {}, [], []
    specialized_on: dict[str, Any] = {}
    if calib_data is not None:
        base, specialized_on, more = specialized(base, calib_data)
        folded = {**folded, **more}
    if recipe.precision == "int8":
        if calib_data is None:
            raise WorkbenchError("int8 needs calibration data: pass --calib-data FILE.npz (keys = input names)")
        if recipe.equalize:
            base, equalization = equalized(base, calib_data)
        if recipe.smooth:
            base, smoothing = smoothed(base, calib_data)
        # smoothing feeds the quantized layers a new tensor (<tensor>/smoothed): overrides name the user's tensor
        renamed = {t["tensor"]: f"{t['tensor']}/smoothed" for t in smoothing if t["mul"]}
        calibration, ranges_path = _calibrate(base, recipe, calib_data, progress, renamed)
        kept = {n.name: CONTROL_FLOW_REASON.format(op=n.op_type)
                for n in base.proto.graph.node if n.op_type in fp16.CONTROL_FLOW}
    else:
        kept = {n: r for n, r in fp16.keep_in_fp32(base, calib_data).items() if n not in excluded}
    key = cache.digest("transform", TRANSFORM_VERSION, base.sha256, recipe.to_dict(), excluded, sorted(kept),
                       None if ranges_path is None else ranges_path.name, _version())
    path = cache.artifact_path("transformed", key, ".onnx")
    from_cache = path.exists()
    if from_cache:
        transformed, sha256 = cache.parsed_model(path), cache.file_digest(path)
        kept.update(json.loads(next((p.value for p in transformed.metadata_props if p.key == KEPT_KEY), "{}")))
    else:
        if recipe.precision in ("fp16", "bf16"):
            convert = fp16.to_fp16 if recipe.precision == "fp16" else fp16.to_bf16
            transformed = convert(base.proto, excluded + list(kept))
        else:
            from workbench.precision.quantize import quantize_int8

            transformed, collateral = quantize_int8(Path(base.path), ranges_path, recipe.calibration, excluded,
                                                    recipe.per_channel, recipe.placement, recipe.weight_bits)
            kept.update({n: "its input stays float next to an excluded node; TensorRT runs a Conv/Gemm/MatMul "
                            "in INT8 only when input and weights are both quantized" for n in collateral})
            if recipe.bias_correction:
                from workbench.precision.biascorrect import correct_bias
                from workbench.precision.quantize import quantized_nodes as _quantized

                transformed, corrections = correct_bias(transformed, base.proto, calib_data, _quantized(transformed))
                onnx.helper.set_model_props(transformed, {**{p.key: p.value for p in transformed.metadata_props},
                                                          BIAS_KEY: json.dumps([c.to_dict() for c in corrections])})
            if excluded and recipe.fallback_precision == "fp16":
                others = [n.name for n in transformed.graph.node if n.name not in set(excluded)]
                transformed = fp16.to_fp16(transformed, others)
        if len(kept):
            onnx.helper.set_model_props(transformed, {**{p.key: p.value for p in transformed.metadata_props},
                                                      KEPT_KEY: json.dumps(kept)})
        data = transformed.SerializeToString()
        with cache.atomic_file(path) as tmp, ThreadPoolExecutor(1, "workbench-write") as pool:
            writing = pool.submit(tmp.write_bytes, data)  # beside the check; renamed into place only if it passes
            try:
                check_artifact(data, recipe, model.name, calib_data)
            finally:
                writing.result()
        sha256 = hashlib.sha256(data).hexdigest()
        cache.remember_parsed(path, transformed, sha256)
    from workbench.precision.quantize import quantized_nodes

    return TransformedModel(
        model, recipe, path, sha256, excluded_nodes=excluded,
        quantized_nodes=quantized_nodes(transformed) if recipe.precision == "int8" else [],
        calibration=calibration, ranges_path=ranges_path, seconds=time.perf_counter() - start, from_cache=from_cache,
        folded=folded,
        kept_in_fp32=kept,
        reference=base if (recipe.rescales and recipe.precision == "int8") or specialized_on else None,
        equalized=equalization, smoothed=smoothing, specialized=specialized_on,
        bias_corrected=json.loads(next((p.value for p in transformed.metadata_props if p.key == BIAS_KEY), "[]")),
    )


def check_artifact(model: bytes, recipe: Recipe, name: str, data: Dataset | None) -> None:
    """Refuse a broken artifact: it must load in ONNX Runtime and give finite outputs on one sample (BF16: the
    ONNX checker's full check with strict shape inference, since ONNX Runtime CPU has no BF16 kernels)."""
    what = f"the {recipe.precision} model of {name}"
    if recipe.precision == "bf16":
        try:
            onnx.checker.check_model(onnx.ModelProto.FromString(model), full_check=True)
        except Exception as exc:
            raise WorkbenchError(f"{what} is invalid: {one_line(exc)}") from None
        return
    import onnxruntime as ort

    from workbench.core.log import onnxruntime_options

    try:
        session = ort.InferenceSession(model, onnxruntime_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise WorkbenchError(f"{what} does not load in ONNX Runtime: {one_line(exc)}") from None
    if data is None:
        return
    feed = data.feed(0, data.batch_size(1))
    try:
        outputs = session.run(None, feed)
    except Exception as exc:
        raise WorkbenchError(f"{what} fails on a calibration sample: {one_line(exc)}") from None
    for out, value in zip(session.get_outputs(), outputs):
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise WorkbenchError(f"{what} outputs NaN/Inf in '{out.name}' on a calibration sample; keep the "
                                 "overflowing nodes in higher precision (--exclude) or use fp32 there")


def cleaned(model: ModelHandle) -> tuple[ModelHandle, dict[str, str]]:
    """The FP32 graph after the clean-up TensorRT would do (constant and BatchNorm folding), cached; the model
    itself when there is nothing to fold."""
    from workbench.graph.cleanup import clean

    key = cache.digest("cleaned", TRANSFORM_VERSION, model.sha256)
    if key not in _CLEANED:
        folded_model, folded = clean(model.proto)
        if not folded:
            _CLEANED[key] = (model, {})
        else:
            path = cache.store_model(folded_model.SerializeToString())
            from workbench.model.loading import from_onnx

            handle = from_onnx(path, name=f"{model.name} (cleaned)", source=model.source)
            handle.module_of = {**model.module_of}
            _CLEANED[key] = (handle, folded)
    return _CLEANED[key]


_CLEANED: dict[str, tuple[ModelHandle, dict[str, str]]] = {}

CONTROL_FLOW_REASON = ("control flow ({op}) whose condition reads a shape or a per-sample input: its subgraphs stay "
                       "FP32 (ONNX Runtime's quantizer and TensorRT's Q/DQ placement see only the main graph)")


def specialized(base: ModelHandle, data: Dataset) -> tuple[ModelHandle, dict[str, Any], dict[str, str]]:
    """The FP32 graph with each `If` that an input shared by every sample decides (Silero VAD's `sr`) replaced by
    the branch it takes on `data`, cleaned again, cached; what it was specialized on; the nodes the clean-up
    folded. `base` itself when no such `If` exists."""
    from workbench.graph.specialize import condition_inputs, specialize
    from workbench.model.loading import from_onnx

    shared = {k: np.asarray(v) for k, v in data.inputs.items() if data.axis(k) is None}
    wanted = sorted(condition_inputs(base.proto.graph) & set(shared))
    if not wanted:
        return base, {}, {}
    values = {k: shared[k] for k in wanted}
    on = {k: v.tolist() for k, v in values.items()}
    digest = cache.digest("specialized", TRANSFORM_VERSION, base.sha256, on)
    path = cache.artifact_path("models", digest, ".onnx")
    if digest not in _SPECIALIZED:
        if not path.exists():
            proto, inlined = specialize(base.proto, values)
            folded = {}
            if inlined:
                from workbench.graph.cleanup import clean

                proto, folded = clean(proto)
            cache.atomic_write(path.with_suffix(".json"), json.dumps(folded).encode())
            cache.atomic_write(path, proto.SerializeToString())
        _SPECIALIZED[digest] = json.loads(path.with_suffix(".json").read_text())
    import warnings

    warnings.warn(f"control flow specialized on {', '.join(f'{k} = {v}' for k, v in on.items())} (the value every "
                  "calibration sample shares): the artifact computes the branch taken for it, and refuses another "
                  "value in the workbench", UserWarning, stacklevel=3)
    handle = from_onnx(path, name=f"{base.name} (specialized)", source=base.source)
    handle.module_of, handle.torch_module, handle.zoo = dict(base.module_of), base.torch_module, base.zoo
    return handle, on, _SPECIALIZED[digest]


_SPECIALIZED: dict[str, dict[str, str]] = {}

EQUALIZED_KEY = "workbench.equalized"
SMOOTHED_KEY = "workbench.smoothed"
BIAS_KEY = "workbench.bias_corrected"


def equalized(base: ModelHandle, data: Dataset) -> tuple[ModelHandle, list[dict]]:
    """The FP32 graph with activation channels equalized on `data` (workbench.precision.equalize), cached by model and data,
    and what each rescaled group became."""
    from workbench.precision import equalize

    return _rescaled(base, data, "equalized", equalize.VERSION, equalize.equalize, EQUALIZED_KEY)


def smoothed(base: ModelHandle, data: Dataset) -> tuple[ModelHandle, list[dict]]:
    """The FP32 graph with activation outliers migrated into the reading layers' weights on `data`
    (workbench.precision.smooth), cached by model and data, and what each smoothed tensor became."""
    from workbench.precision import smooth

    return _rescaled(base, data, "smoothed", smooth.VERSION, smooth.smooth, SMOOTHED_KEY)


def _rescaled(base: ModelHandle, data: Dataset, label: str, version: int, transform, key: str
              ) -> tuple[ModelHandle, list[dict]]:
    """`transform(proto, path, data)` → (FP32 model with the same function, its report), cached by model and data;
    the report travels in the model's metadata under `key`."""
    from workbench.model.loading import from_onnx

    digest = cache.digest(label, version, base.sha256, data.fingerprint())
    path = cache.artifact_path("models", digest, ".onnx")
    if not path.exists():
        model, report = transform(base.proto, base.path, data)
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                            key: json.dumps([r.to_dict() for r in report])})
        cache.atomic_write(path, model.SerializeToString())
    handle = from_onnx(path, name=f"{base.name} ({label})", source=base.source)
    handle.module_of, handle.torch_module, handle.zoo = dict(base.module_of), base.torch_module, base.zoo
    return handle, json.loads(next((p.value for p in handle.proto.metadata_props if p.key == key), "[]"))


def _calibrate(base: ModelHandle, recipe: Recipe, data: Dataset, progress: bool,
               renamed: dict[str, str] | None = None):
    """The recipe's calibration, plus any per-tensor overrides merged in (each method calibrated once, cached)."""
    from workbench.precision.calibration import merged_ranges
    from workbench.precision.recipe import parse_override
    from workbench.precision.quantize import placement_options

    op_types = placement_options(recipe.placement)[0]
    result = calibrate(base, data, recipe.calibration, recipe.percentile, progress=progress, op_types=op_types)
    if not recipe.overrides:
        return result, result.path
    groups: dict[tuple[str, float], list[str]] = {}
    for item in recipe.overrides:
        tensor, method, pct = parse_override(item)
        tensor = (renamed or {}).get(tensor, tensor)
        groups.setdefault((method, pct or recipe.percentile), []).append(tensor)
    per_tensor = {}
    for (method, pct), tensors in groups.items():
        result_for = calibrate(base, data, method, pct, progress=progress, op_types=op_types, tensors=tensors)
        per_tensor.update({tensor: result_for for tensor in tensors})
    return result, merged_ranges(result, per_tensor)
