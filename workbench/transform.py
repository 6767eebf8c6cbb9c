"""Recipe.apply: FP32 ONNX → transformed ONNX in the artifact cache (fp16 casts, int8 Q/DQ)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from . import cache
from .calibration import CalibrationResult, calibrate
from .data import Dataset
from .errors import WorkbenchError
from .model import ModelHandle
from .recipe import Recipe, resolve_exclusions


# Part of every transformed model's cache key: bump when a transform's output changes for the same inputs.
TRANSFORM_VERSION = 5


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
    seconds: float = 0.0
    from_cache: bool = False
    folded: dict[str, str] = field(default_factory=dict)  # node removed by clean-up → node that absorbed it

    def manifest(self) -> dict:
        """What was built from what, with which libraries: enough to reproduce or audit the artifact."""
        import onnxruntime
        import polygraphy

        return {
            "model": self.model.describe(),
            "recipe": self.recipe.to_dict(),
            "output_sha256": self.sha256,
            "excluded_nodes": self.excluded_nodes, "folded_nodes": self.folded,
            "quantized_nodes": len(self.quantized_nodes),
            "calibration": None if self.calibration is None else {
                "method": self.calibration.method, "samples": self.calibration.samples,
                "cache_file": str(self.calibration.path), "from_cache": self.calibration.from_cache,
            },
            "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                         "polygraphy": polygraphy.__version__, "workbench": _version()},
        }


def _version() -> str:
    from . import __version__

    return __version__


def apply(
    model: ModelHandle, recipe: Recipe, calib_data: Dataset | None = None, progress: bool = True,
) -> TransformedModel:
    """Transform the FP32 model by the recipe; INT8 needs calibration data (cached per data and method)."""
    start = time.perf_counter()
    if recipe.precision == "fp32":
        if recipe.exclude:
            raise WorkbenchError("--exclude only applies to fp16/int8: fp32 keeps every node in fp32 already")
        return TransformedModel(model, recipe, Path(model.path), model.sha256, seconds=time.perf_counter() - start)
    if recipe.precision == "bf16":
        raise WorkbenchError("bf16 is not supported on the onnxruntime-cpu backend (its CPU kernels have no "
                             "BF16 Conv/MatMul); use fp16 here, or bf16 on a TensorRT machine")
    base, folded = cleaned(model) if recipe.cleanup else (model, {})
    from .cleanup import CONSTANT

    # names of folded nodes → the node that absorbed them (a folded constant has nothing left to exclude)
    excluded = list(dict.fromkeys(folded.get(n, n) for n in resolve_exclusions(model.proto, recipe.exclude)
                                  if folded.get(n) != CONSTANT))
    calibration, ranges_path = None, None
    if recipe.precision == "int8":
        if calib_data is None:
            raise WorkbenchError("int8 needs calibration data: pass --calib-data FILE.npz (keys = input names)")
        calibration, ranges_path = _calibrate(base, recipe, calib_data, progress)
    key = cache.digest("transform", TRANSFORM_VERSION, base.sha256, recipe.to_dict(), excluded,
                       None if ranges_path is None else ranges_path.name, _version())
    path = cache.artifact_path("transformed", key, ".onnx")
    from_cache = path.exists()
    if from_cache:
        transformed = onnx.load(str(path))
    else:
        if recipe.precision == "fp16":
            transformed = to_fp16(base.proto, excluded)
        else:
            from .quantize import quantize_int8

            transformed = quantize_int8(Path(base.path), ranges_path, recipe.calibration, excluded,
                                        recipe.per_channel, recipe.placement)
            if excluded and recipe.fallback_precision == "fp16":
                others = [n.name for n in transformed.graph.node if n.name not in set(excluded)]
                transformed = to_fp16(transformed, others)
        cache.atomic_write(path, transformed.SerializeToString())
    from .quantize import quantized_nodes

    return TransformedModel(
        model, recipe, path, cache.file_digest(path), excluded_nodes=excluded,
        quantized_nodes=quantized_nodes(transformed) if recipe.precision == "int8" else [],
        calibration=calibration, seconds=time.perf_counter() - start, from_cache=from_cache, folded=folded,
    )


def cleaned(model: ModelHandle) -> tuple[ModelHandle, dict[str, str]]:
    """The FP32 graph after the clean-up TensorRT would do (constant and BatchNorm folding), cached; the model
    itself when there is nothing to fold."""
    from .cleanup import clean

    key = cache.digest("cleaned", TRANSFORM_VERSION, model.sha256)
    if key not in _CLEANED:
        folded_model, folded = clean(model.proto)
        if not folded:
            _CLEANED[key] = (model, {})
        else:
            data = folded_model.SerializeToString()
            path = cache.artifact_path("models", cache.digest(data), ".onnx")
            if not path.exists():
                cache.atomic_write(path, data)
            from .model import from_onnx

            handle = from_onnx(path, name=f"{model.name} (cleaned)", source=model.source)
            handle.module_of = {**model.module_of}
            _CLEANED[key] = (handle, folded)
    return _CLEANED[key]


_CLEANED: dict[str, tuple[ModelHandle, dict[str, str]]] = {}


def _calibrate(base: ModelHandle, recipe: Recipe, data: Dataset, progress: bool):
    """The recipe's calibration, plus any per-tensor overrides merged in (each method calibrated once, cached)."""
    from .calibration import merged_ranges, parse_override
    from .quantize import placement_options

    op_types = placement_options(recipe.placement)[0]
    result = calibrate(base, data, recipe.calibration, recipe.percentile, progress=progress, op_types=op_types)
    if not recipe.overrides:
        return result, result.path
    per_tensor = {}
    for item in recipe.overrides:
        tensor, method, pct = parse_override(item)
        per_tensor[tensor] = calibrate(base, data, method, pct or recipe.percentile, progress=progress,
                                       op_types=op_types)
    return result, merged_ranges(result, per_tensor)


def to_fp16(model: onnx.ModelProto, excluded: list[str]) -> onnx.ModelProto:
    """FP16 weights and compute with the graph's I/O types kept (FP32 in, FP32 out), excluded nodes in FP32.

    Also used on an INT8 graph with every node but the fallback nodes listed, to run the fallback in FP16."""
    from onnxconverter_common import float16

    from .quantize import quiet

    try:
        with quiet():
            converted = float16.convert_float_to_float16(
                onnx.ModelProto.FromString(model.SerializeToString()), keep_io_types=True,
                node_block_list=excluded or None, disable_shape_infer=False,
            )
    except Exception as exc:
        raise WorkbenchError(f"fp16 conversion failed: {str(exc).strip().splitlines()[0][:200]}") from None
    return _align_casts(converted)


def _align_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxconverter-common retypes a Cast's output to FP16 but leaves `to=FLOAT` on Casts from integer tensors
    (e.g. an attention mask cast to float), which ONNX Runtime rejects; make each such Cast produce FP16."""
    fp16_values = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16_values:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    return model
