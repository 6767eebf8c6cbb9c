"""Recipe: a precision choice, written as an ONNX → ONNX transform (the TensorRT 11 way)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

import onnx

from workbench.core.errors import WorkbenchError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# mean-minmax: the mean of per-sample min/max (NNCF's default); mse: least INT8 error per tensor (see calibration.py).
CALIBRATIONS = ("minmax", "entropy", "percentile", "mean-minmax", "mse")
# "tensorrt": Q/DQ on the inputs (activations and weights) of the ops TensorRT runs in INT8 (Conv, ConvTranspose,
# Gemm, MatMul), outputs left to TensorRT's fusions, as in TensorRT's explicit-quantization guide and ModelOpt.
# "all": ONNX Runtime's default, every supported op's inputs and outputs (more Q/DQ, more places to collapse).
PLACEMENTS = ("tensorrt", "all")


@dataclass(frozen=True)
class Recipe:
    """What to do to the FP32 graph. `exclude` items are node names, op types, or regexes over node names."""

    precision: str = "fp32"
    calibration: str = "minmax"
    percentile: float = 99.99
    exclude: tuple[str, ...] = field(default_factory=tuple)
    per_channel: bool = True
    placement: str = "tensorrt"
    overrides: tuple[str, ...] = field(default_factory=tuple)  # per-tensor calibration: "TENSOR=METHOD[:P]"
    cleanup: bool = True  # fold constants and BatchNorm before quantizing, as TensorRT would
    fallback_precision: str = "fp32"  # what excluded nodes run in, for int8: fp32 or fp16
    # 7: weights in [-64, 64] (ORT's reduce_range). ONNX Runtime's x86 integer kernels without VNNI multiply u8 by
    # s8 with VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights; TensorRT needs no such thing.
    weight_bits: int = 8
    # Rescale activation channels into the neighbouring Convs' weights before calibrating (workbench.precision.equalize): the
    # FP32 function is unchanged, per-tensor INT8 steps fit every channel.
    equalize: bool = False
    # Migrate activation outlier channels into the reading layers' per-channel weight scales (workbench.precision.smooth,
    # SmoothQuant): LayerNorm/GELU outputs that equalization cannot reach.
    smooth: bool = False
    # Add each quantized Conv/Gemm's measured mean output shift back to its float bias (workbench.precision.biascorrect).
    bias_correction: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise WorkbenchError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.calibration not in CALIBRATIONS:
            raise WorkbenchError(
                f"unknown calibration method {self.calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        if self.fallback_precision not in ("fp32", "fp16"):
            raise WorkbenchError(f"fallback precision must be fp32 or fp16, got {self.fallback_precision!r}")
        if self.weight_bits not in (7, 8):
            raise WorkbenchError(f"weight bits must be 7 or 8, got {self.weight_bits!r}")
        if self.placement not in PLACEMENTS:
            raise WorkbenchError(f"unknown Q/DQ placement {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise WorkbenchError(f"percentile must be in (50, 100], got {self.percentile}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.overrides:
            for item in self.overrides:
                parse_override(item)

    @property
    def rescales(self) -> bool:
        """Whether the recipe quantizes a rescaled FP32 graph (equalization or smoothing): same function, other
        tensors, so layer-by-layer comparison reads the rescaled graph."""
        return self.equalize or self.smooth

    def with_exclude(self, exclude: Iterable[str]) -> "Recipe":
        return replace(self, exclude=tuple(exclude))

    def with_(self, **changes) -> "Recipe":
        """A copy with some fields changed (e.g. placement or overrides), validated again."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        d["overrides"] = list(self.overrides)
        if self.precision != "int8":
            for k in ("calibration", "percentile", "per_channel", "placement", "overrides", "fallback_precision",
                      "weight_bits", "equalize", "smooth", "bias_correction"):
                d.pop(k)
        elif self.calibration != "percentile":
            d.pop("percentile")
        if self.precision == "fp32":
            d.pop("cleanup")
        return d

    def to_cli_args(self) -> list[str]:
        """The `workbench build/compare/diagnose` flags that give this recipe (defaults left out)."""
        default = Recipe()
        args = ["--precision", self.precision]
        if self.precision == "int8":
            if self.calibration != default.calibration:
                args += ["--calibration", self.calibration]
            if self.calibration == "percentile" and self.percentile != default.percentile:
                args += ["--percentile", f"{self.percentile:g}"]
            if not self.per_channel:
                args.append("--per-tensor-weights")
            if self.placement != default.placement:
                args += ["--placement", self.placement]
            if self.overrides:
                args += ["--override", *self.overrides]
            if self.fallback_precision != default.fallback_precision:
                args += ["--fallback-precision", self.fallback_precision]
            if self.weight_bits != default.weight_bits:
                args += ["--weight-bits", str(self.weight_bits)]
            if self.equalize:
                args.append("--equalize")
            if self.smooth:
                args.append("--smooth")
            if self.bias_correction:
                args.append("--bias-correction")
        if not self.cleanup and self.precision != "fp32":
            args.append("--no-cleanup")
        if self.exclude:
            args += ["--exclude", *self.exclude]
        return args

    def to_python(self) -> str:
        """`Recipe(...)` with the non-default fields, as Python source."""
        default = Recipe()
        fields = [f"{k}={getattr(self, k)!r}" for k in self.__dataclass_fields__
                  if getattr(self, k) != getattr(default, k)]
        return f"Recipe({', '.join(fields)})"

    @property
    def label(self) -> str:
        """Short human name, e.g. 'int8 entropy (3 excluded)'."""
        text = self.precision
        if self.precision == "int8":
            text += f" {self.calibration}" + (f" {self.percentile:g}" if self.calibration == "percentile" else "")
            if self.placement != "tensorrt":
                text += f" [{self.placement}]"
            if self.weight_bits != 8:
                text += f" w{self.weight_bits}"
            if self.equalize:
                text += " equalized"
            if self.smooth:
                text += " smoothed"
            if self.bias_correction:
                text += " bias-corrected"
            if self.overrides:
                text += f" +{len(self.overrides)} override{'s' if len(self.overrides) > 1 else ''}"
        if self.exclude and self.precision == "int8" and self.fallback_precision == "fp16":
            text += f" ({len(self.exclude)} in FP16)"
            return text
        if self.exclude:
            text += f" ({len(self.exclude)} excluded)"
        return text


def resolve_exclusions(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    """Node names selected by exact name, op type, or regex (fullmatch on names); unknown patterns are errors.
    Nodes inside control-flow branches count: a branch the data decides becomes part of the main graph
    (workbench.graph.specialize)."""
    from workbench.graph.topology import all_nodes

    nodes = all_nodes(model.graph)
    names = [n.name for n in nodes]
    op_types = {n.op_type for n in nodes}
    selected: list[str] = []
    for pattern in patterns:
        if pattern in names:
            hits = [pattern]
        elif pattern in op_types:
            hits = [n.name for n in nodes if n.op_type == pattern]
        else:
            regex = pattern[3:] if pattern.startswith("re:") else pattern
            try:
                compiled = re.compile(regex)
            except re.error:
                hits = []
            else:
                hits = [n for n in names if compiled.fullmatch(n)]
        if not hits:
            raise WorkbenchError(f"--exclude {pattern!r} matches no node name, op type or regex in the model "
                                 f"(e.g. {', '.join(names[:3])})")
        selected += [h for h in hits if h not in selected]
    return selected


def parse_override(text: str) -> tuple[str, str, float | None]:
    """`TENSOR=METHOD[:PERCENTILE]`, e.g. `relu_1=percentile:99.9` or `block1.out=entropy`."""
    tensor, sep, rule = text.rpartition("=")
    method, _, pct = rule.partition(":")
    if not sep or not tensor or method not in CALIBRATIONS:
        raise WorkbenchError(f"calibration override {text!r}: expected TENSOR={'|'.join(CALIBRATIONS)}[:P] "
                             "(P for percentile)")
    try:
        return tensor, method, float(pct) if pct else None
    except ValueError:
        raise WorkbenchError(f"calibration override {text!r}: '{pct}' is not a percentile") from None
