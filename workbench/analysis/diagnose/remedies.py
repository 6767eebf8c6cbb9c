"""The cheap fixes diagnose tries before any node leaves INT8, cheapest first. Each is one class in REMEDIES: when
it applies, the candidate recipe it makes, whether it is kept on any improvement or only when it meets the target,
whether later fixes stack on it, and what it changed. Adding a remedy is adding a class to that list."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.analysis.compare import LayerReport
from workbench.analysis.diagnose.causes import rank, tensor_issues
from workbench.model.data import Dataset
from workbench.model.loading import ModelHandle
from workbench.precision.equalize import equalizable
from workbench.precision.recipe import Recipe
from workbench.precision.smooth import smoothable
from workbench.precision.transform import TransformedModel, apply, cleaned


@dataclass(frozen=True)
class Situation:
    """What a remedy looks at: the model, the layer report and the transformed model of the best recipe so far."""

    model: ModelHandle
    report: LayerReport
    base: TransformedModel
    calib: Dataset


class Remedy:
    """One fix. `whole_network`: it moves every layer's noise, so it is adopted only when it meets the target (a
    partial gain spread over the network can need a larger fallback: MobileNetV2 equalized once needed 25 nodes and
    66 % of the MACs instead of 19 and 43 %); the best one that improved the score is a second start for the
    fallback search. `rescales`: the FP32 graph is rescaled; fixes marked `stacks` are tried on top of a rescaling
    that did not meet the target alone."""

    name = ""
    noun = ""  # in "on top of <noun>"
    field = ""  # the Recipe field it turns on, where it is one
    whole_network = False
    rescales = False
    stacks = False

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        """(what it does, in words; the recipe to try), or None when it does not apply to `current`."""
        raise NotImplementedError

    def changes(self, candidate: Recipe, at: Situation) -> dict:
        """What the candidate changed in the graph, for the report (RemedyStep fields)."""
        return {}


class Cleanup(Remedy):
    name = "cleanup"

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        if current.cleanup:
            return None
        return ("clean up the graph as TensorRT would (fold constants; BatchNorm into its Conv/Gemm)",
                current.with_(cleanup=True, overrides=()))  # overrides name the previous graph's tensors


class Placement(Remedy):
    name = "placement"

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        if current.placement == "tensorrt":
            return None
        return ("Q/DQ placement 'tensorrt' (inputs of Conv/Gemm/MatMul only)",
                current.with_(placement="tensorrt", overrides=()))


class Estimator(Remedy):
    """A range estimator tried in place of MinMax (precision.calibration), kept when it improves the score."""

    def __init__(self, method: str, text: str) -> None:
        self.name, self.text = method, text

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        if current.calibration not in ("minmax", "mean-minmax") or current.calibration == self.name:
            return None
        return (self.text, current.with_(calibration=self.name))


class Overrides(Remedy):
    """Per-tensor calibration for the tensors the ranking blames. Before equalization: where per-tensor ranges
    suffice they change the least, and overrides chosen on an equalized graph can miss what they would have fixed
    on the original one."""

    name = "overrides"

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        overrides = calibration_overrides(at.model, at.report, at.base, current)
        if not overrides:
            return None
        return ("calibration override " + ", ".join(overrides),
                current.with_(overrides=tuple(current.overrides) + tuple(overrides)))


def _graph(current: Recipe, at: Situation):
    return (cleaned(at.model)[0] if current.cleanup else at.model).proto


class Equalize(Remedy):
    name, noun, field = "equalize", "equalization", "equalize"
    whole_network = rescales = True

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        groups = 0 if current.equalize else equalizable(_graph(current, at))
        if not groups:
            return None
        return (f"equalize activation channels: {groups} group(s) of tensors rescaled into their Convs' weights "
                "(cross-layer equalization; FP32 outputs unchanged)", current.with_(equalize=True))

    def changes(self, candidate: Recipe, at: Situation) -> dict:
        done = apply(at.model, candidate, at.calib, progress=False)  # cached: the candidate was just evaluated
        return {"rescaled_tensors": sum(len(g["tensors"]) for g in done.equalized)}


class Smooth(Remedy):
    name, noun, field = "smooth", "smoothing", "smooth"
    whole_network = rescales = stacks = True

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        tensors = 0 if current.smooth else smoothable(_graph(current, at))
        if not tensors:
            return None
        return (f"smooth activation outliers into the reading layers' weights (SmoothQuant, strength per tensor; "
                f"{tensors} candidate tensor(s); FP32 outputs unchanged)", current.with_(smooth=True))

    def changes(self, candidate: Recipe, at: Situation) -> dict:
        done = apply(at.model, candidate, at.calib, progress=False)
        return {"rescaled_tensors": len(done.smoothed), "added_mul_nodes": sum(1 for t in done.smoothed if t["mul"])}


class BiasCorrection(Remedy):
    name, noun, field = "bias", "bias correction", "bias_correction"
    whole_network = stacks = True

    def candidate(self, current: Recipe, at: Situation) -> tuple[str, Recipe] | None:
        if current.bias_correction:
            return None
        return ("bias correction: each quantized Conv/Gemm's mean output shift added back to its bias",
                current.with_(bias_correction=True))


REMEDIES: tuple[Remedy, ...] = (
    Cleanup(), Placement(),
    Estimator("mean-minmax", "ranges from the mean of per-sample min/max (one outlier sample no longer sets a "
                             "tensor's range)"),
    Estimator("mse", "ranges of least INT8 error per tensor (rounding plus clipping, from each tensor's histogram)"),
    Overrides(), Equalize(), Smooth(), BiasCorrection(),
)
# "fp16" (after the search, in diagnose) retries a found fallback in FP16 instead of FP32. It is opt-in
# (remedies=REMEDY_STEPS): on MobileNetV2 it met the target on the evaluation data and missed it on held-out data
# by 0.0006, and next to a DequantizeLinear its Cast leaves a Q/DQ pair TensorRT cannot fuse.
REMEDY_STEPS = tuple(r.name for r in REMEDIES) + ("fp16",)
DEFAULT_REMEDIES = REMEDY_STEPS[:-1]


def chosen(steps: tuple[str, ...]) -> list[Remedy]:
    """The remedies named in `steps`, in REMEDIES order."""
    return [r for r in REMEDIES if r.name in steps]


def candidates_ahead(steps: tuple[str, ...], current: Recipe, at: Situation) -> list[Recipe]:
    """The candidates the remedies would try if none were kept (what parallel workers can evaluate ahead)."""
    out, stacked = [], current
    for remedy in chosen(steps):
        found = remedy.candidate(stacked if remedy.stacks else current, at)
        if found is not None:
            out.append(found[1])
            stacked = found[1] if remedy.rescales else stacked
    return out


def calibration_overrides(model: ModelHandle, report: LayerReport, base: TransformedModel, recipe: Recipe,
                          top: int = 8) -> list[str]:
    """Per-tensor calibration fixes for the quantized inputs of the most harmful nodes: a clipped tensor gets its
    full range back (minmax); a coarse one (range set by rare large values) gets entropy calibration, which
    trades the tail for resolution (percentile 99.99 when entropy is already the method)."""
    out: dict[str, str] = {}
    for row in rank(report, base.quantized_nodes)[:top]:
        for tensor, kind, _ in tensor_issues(row.node, model, report, base):
            if kind == "clipped" and recipe.calibration != "minmax":
                out.setdefault(tensor, f"{tensor}=minmax")
            elif kind == "coarse":
                out.setdefault(tensor, f"{tensor}=entropy" if recipe.calibration != "entropy"
                               else f"{tensor}=percentile:99.99")
    return [o for o in out.values() if o not in recipe.overrides]
