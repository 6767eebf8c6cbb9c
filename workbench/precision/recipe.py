"""Recipe: a precision choice, written as an ONNX → ONNX transform (the TensorRT 11 way)."""
from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Callable, Iterable

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
class FieldSpec:
    """How one Recipe field appears on the command line, in the app, in JSON and in the Python snippet. It sits in
    the field's metadata, so adding a field is one edit; the CLI (app/cli.py) and the app's form (app/ui/form.py)
    read these instead of listing fields themselves."""

    flag: str
    help: str
    label: str  # the app widget's description
    widget: str = "dropdown"  # dropdown, toggle, checkbox, float, text, nodes (the graph's node names)
    choices: tuple = ()
    precisions: tuple[str, ...] = PRECISIONS  # where the field means something; elsewhere it keeps its default
    when: Callable[["Recipe"], bool] | None = None  # a further condition on the other fields
    switch_value: Any = None  # for a boolean: the value its flag sets (False for --no-cleanup)
    metavar: str | None = None
    flag_help: str = ""  # what a flag that turns a default-on field off does (--no-cleanup)
    bounds: tuple[float, float, float] = ()  # float widget: min, max, step
    name: str = ""  # filled from the dataclass field
    default: Any = None

    def applies(self, recipe: "Recipe") -> bool:
        return recipe.precision in self.precisions and (self.when is None or self.when(recipe))


def _spec(default: Any, **spec: Any) -> Any:
    """A Recipe field with its FieldSpec (a tuple default becomes a factory, so instances never share it)."""
    if isinstance(default, tuple):
        return field(default_factory=tuple, metadata={"spec": FieldSpec(**spec)})
    return field(default=default, metadata={"spec": FieldSpec(**spec)})


_INT8 = ("int8",)
_CONVERTED = ("fp16", "bf16", "int8")


@dataclass(frozen=True)
class Recipe:
    """What to do to the FP32 graph. `exclude` items are node names, op types, or regexes over node names."""

    precision: str = _spec("fp32", flag="--precision", label="precision", widget="toggle", choices=PRECISIONS,
                           help="what the graph runs in")
    calibration: str = _spec("minmax", flag="--calibration", label="calibration", choices=CALIBRATIONS,
                             precisions=_INT8, help="how INT8 activation ranges are chosen from the calibration data")
    percentile: float = _spec(99.99, flag="--percentile", label="percentile", widget="float", precisions=_INT8,
                              when=lambda r: r.calibration == "percentile", bounds=(50.01, 100.0, 0.01),
                              help="for --calibration percentile")
    exclude: tuple[str, ...] = _spec((), flag="--exclude", label="keep FP32", widget="nodes", precisions=_CONVERTED,
                                     metavar="NODE", help="keep these nodes in higher precision: node names, op "
                                                          "types or regexes")
    per_channel: bool = _spec(True, flag="--per-tensor-weights", label="per-channel weights", widget="checkbox",
                              switch_value=False, precisions=_INT8,
                              help="one scale per output channel of each weight",
                              flag_help="one scale per weight tensor instead of one per output channel")
    placement: str = _spec("tensorrt", flag="--placement", label="Q/DQ placement", choices=PLACEMENTS,
                           precisions=_INT8, help="INT8 Q/DQ placement: tensorrt = inputs of Conv/Gemm/MatMul, "
                                                  "all = ONNX Runtime's default")
    overrides: tuple[str, ...] = _spec((), flag="--override", label="overrides", widget="text", precisions=_INT8,
                                       metavar="TENSOR=METHOD[:P]",
                                       help="per-tensor calibration, e.g. relu_1=percentile:99.9 or block1.out=entropy")
    cleanup: bool = _spec(True, flag="--no-cleanup", label="clean up first", widget="checkbox", switch_value=False,
                          precisions=_CONVERTED,
                          help="fold constants and BatchNorm before converting, as TensorRT does",
                          flag_help="convert the graph as is: no constant or BatchNorm folding (TensorRT folds both)")
    fallback_precision: str = _spec("fp32", flag="--fallback-precision", label="fallback in", choices=("fp32", "fp16"),
                                    precisions=_INT8, help="what excluded nodes of an int8 recipe run in")
    # 7: weights in [-64, 64] (ORT's reduce_range). ONNX Runtime's x86 integer kernels without VNNI multiply u8 by
    # s8 with VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights; TensorRT needs no such thing.
    weight_bits: int = _spec(8, flag="--weight-bits", label="weight bits", choices=(8, 7), precisions=_INT8,
                             help="INT8 weight range: 7 = [-64, 64] for ONNX Runtime's CPU kernels on x86 without "
                                  "VNNI, whose u8*s8 pair sums saturate on full 8-bit weights")
    # Rescale activation channels into the neighbouring Convs' weights before calibrating
    # (workbench.precision.equalize): the FP32 function is unchanged, per-tensor INT8 steps fit every channel.
    equalize: bool = _spec(False, flag="--equalize", label="equalize channels", widget="checkbox", switch_value=True,
                           precisions=_INT8, help="rescale activation channels into the neighbouring Convs' "
                                                  "weights first (cross-layer equalization; FP32 outputs unchanged)")
    # Migrate activation outlier channels into the reading layers' per-channel weight scales
    # (workbench.precision.smooth, SmoothQuant): LayerNorm/GELU outputs that equalization cannot reach.
    smooth: bool = _spec(False, flag="--smooth", label="smooth outliers", widget="checkbox", switch_value=True,
                         precisions=_INT8, help="migrate activation outlier channels into the reading "
                                                "Conv/Gemm/MatMul weights first (SmoothQuant; FP32 outputs unchanged)")
    # Add each quantized Conv/Gemm's measured mean output shift back to its float bias
    # (workbench.precision.biascorrect).
    bias_correction: bool = _spec(False, flag="--bias-correction", label="bias correction", widget="checkbox",
                                  switch_value=True, precisions=_INT8,
                                  help="add each quantized Conv/Gemm's mean output shift (measured on the "
                                       "calibration data) back to its bias")

    def __post_init__(self) -> None:
        for spec in FIELDS:
            value = getattr(self, spec.name)
            if spec.choices and value not in spec.choices:
                raise WorkbenchError(f"unknown {spec.name.replace('_', ' ')} {value!r}; choose one of "
                                     f"{', '.join(map(str, spec.choices))}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise WorkbenchError(f"percentile must be in (50, 100], got {self.percentile}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "overrides", tuple(self.overrides))
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

    def normalized(self) -> "Recipe":
        """The same transform with every field that does not apply at its default (e.g. no --equalize on fp16), so
        two recipes that do the same thing compare and cache equal."""
        unused = {s.name: s.default for s in FIELDS if not s.applies(self) and getattr(self, s.name) != s.default}
        return replace(self, **unused) if unused else self

    def to_dict(self) -> dict:
        """The JSON form: the fields that apply to this precision."""
        return {s.name: list(v) if isinstance(v, tuple) else v
                for s in FIELDS if s.applies(self) for v in [getattr(self, s.name)]}

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        unknown = sorted(set(data) - {s.name for s in FIELDS})
        if unknown:
            raise WorkbenchError(f"unknown recipe field(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(s.name for s in FIELDS)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_cli_args(self) -> list[str]:
        """The `workbench build/compare/diagnose` flags that give this recipe (defaults left out, lists last)."""
        scalars, lists = ["--precision", self.precision], []
        for spec in FIELDS[1:]:
            value = getattr(self, spec.name)
            if not spec.applies(self) or value == spec.default:
                continue
            if isinstance(value, tuple):
                lists += [spec.flag, *value]
            elif isinstance(value, bool):
                scalars.append(spec.flag)
            else:
                scalars += [spec.flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return scalars + lists

    def to_python(self) -> str:
        """`Recipe(...)` with the non-default fields, as Python source."""
        changed = [f"{s.name}={getattr(self, s.name)!r}" for s in FIELDS if getattr(self, s.name) != s.default]
        return f"Recipe({', '.join(changed)})"

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


FIELDS: tuple[FieldSpec, ...] = tuple(
    replace(f.metadata["spec"], name=f.name, default=f.default if f.default is not MISSING else f.default_factory())
    for f in fields(Recipe))


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
