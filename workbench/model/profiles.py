"""Optimization profiles: per input, the min/opt/max shapes an engine must support (TensorRT's model), validated
against the model, derived by default from its dynamic dims, and used by every backend."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from workbench.core.errors import WorkbenchError
from workbench.core.specs import TensorSpec

Shape = tuple[int, ...]
BATCH_DEFAULT = (1, 8, 32)
OTHER_DEFAULT = (1, 64, 256)


@dataclass(frozen=True)
class InputProfile:
    name: str
    min: Shape
    opt: Shape
    max: Shape

    def text(self) -> str:
        return f"{self.name}:" + ",".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class Profile:
    inputs: tuple[InputProfile, ...]

    def __getitem__(self, name: str) -> InputProfile:
        for p in self.inputs:
            if p.name == name:
                return p
        raise KeyError(f"the profile has no input {name!r}; it has {self.names()}")

    def names(self) -> list[str]:
        return [p.name for p in self.inputs]

    def to_dict(self) -> dict:
        return {p.name: {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in self.inputs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_polygraphy(self):
        """Polygraphy's TensorRT Profile (min/opt/max per input) for CreateConfig(profiles=[...])."""
        from polygraphy.backend.trt import Profile as TrtProfile

        profile = TrtProfile()
        for p in self.inputs:
            profile.add(p.name, min=list(p.min), opt=list(p.opt), max=list(p.max))
        return profile

    def trtexec_shapes(self) -> list[str]:
        """--minShapes/--optShapes/--maxShapes arguments."""
        out = []
        for flag, which in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            out.append(f"{flag}=" + ",".join(f"{p.name}:{'x'.join(map(str, getattr(p, which)))}" for p in self.inputs))
        return out

    def violations(self, feed: Mapping[str, np.ndarray]) -> list[str]:
        """Inputs whose shape falls outside this profile (a TensorRT engine would reject them)."""
        out = []
        for p in self.inputs:
            if p.name not in feed:
                continue
            shape = tuple(np.shape(feed[p.name]))
            if len(shape) != len(p.min) or any(not lo <= s <= hi for s, lo, hi in zip(shape, p.min, p.max)):
                out.append(f"'{p.name}' has shape {'x'.join(map(str, shape))}, outside the profile "
                           f"{'x'.join(map(str, p.min))} .. {'x'.join(map(str, p.max))}")
        return out


def _shape(text: str, where: str) -> Shape:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise WorkbenchError(f"{where}: '{text}' is not a shape like 8x3x224x224") from None
    if not dims or any(d < 1 for d in dims):
        raise WorkbenchError(f"{where}: '{text}' has a dimension < 1")
    return dims


def parse(items: Iterable[str], where: str = "--shapes") -> list[InputProfile]:
    """`NAME:MIN,OPT,MAX` items (e.g. input:1x1x28x28,8x1x28x28,32x1x28x28) as given to --shapes (`where` names
    the source in messages: the app says "the optimization profile")."""
    out = []
    for item in items:
        name, sep, shapes = item.rpartition(":")
        parts = shapes.split(",")
        if not sep or not name or len(parts) != 3:
            raise WorkbenchError(f"{where} '{item}': expected NAME:MIN,OPT,MAX, e.g. input:1x3x224x224,"
                                 "8x3x224x224,32x3x224x224")
        out.append(InputProfile(name, *(_shape(p, f"{where} {name}") for p in parts)))
    return out


def default_profile(inputs: Sequence[TensorSpec], batch_axes: Mapping[str, int | None] | None = None,
                    hints: Mapping[str, Sequence[int | None]] | None = None) -> Profile:
    """Fixed dims as they are; a dynamic batch dim (axis 0 unless `batch_axes` says otherwise) gets 1/8/32, other
    dynamic dims 1/64/256, or, where `hints` (profile_hints: the model's metadata, the data's shapes) give a size
    d, 1/d/max(d, 256)."""
    axes = dict(batch_axes or {})
    profiles = []
    for spec in inputs:
        lo, mid, hi = [], [], []
        batch = axes.get(spec.name, 0)
        hint = list((hints or {}).get(spec.name) or ())
        for axis, dim in enumerate(spec.shape):
            size = hint[axis] if axis < len(hint) else None
            if isinstance(dim, int):
                triple = (dim, dim, dim)
            elif axis == batch:
                triple = BATCH_DEFAULT
            elif size:
                triple = (OTHER_DEFAULT[0], size, max(size, OTHER_DEFAULT[2]))
            else:
                triple = OTHER_DEFAULT
            for seq, v in zip((lo, mid, hi), triple):
                seq.append(v)
        profiles.append(InputProfile(spec.name, tuple(lo), tuple(mid), tuple(hi)))
    return Profile(tuple(profiles))


def profile_hints(model: Any, *datasets: Any) -> dict[str, tuple[int | None, ...]]:
    """Sizes for the dynamic dims of each input: an Ultralytics export's `imgsz` metadata for its image input, and
    the shape the data's samples have (the largest over `datasets`), which win."""
    import ast

    hints: dict[str, tuple[int | None, ...]] = {}
    meta = {p.key: p.value for p in model.proto.metadata_props} if getattr(model, "proto", None) else {}
    try:
        size = ast.literal_eval(meta.get("imgsz", "")) if meta.get("imgsz") else None
    except (ValueError, SyntaxError):
        size = None
    image = next((s for s in model.inputs if len(s.shape) == 4), None)
    if image is not None and isinstance(size, (list, tuple)) and len(size) == 2:
        hints[image.name] = (None, None, int(size[0]), int(size[1]))
    for data in datasets:
        if data is None:
            continue
        for name, value in data.inputs.items():
            shape = tuple(int(d) for d in np.shape(value))
            old = hints.get(name) if name in hints and len(hints[name]) == len(shape) else (None,) * len(shape)
            hints[name] = tuple(max(d, o or 0) for d, o in zip(shape, old))
    return hints


def build_profile(inputs: Sequence[TensorSpec], items: Iterable[str] = (),
                  batch_axes: Mapping[str, int | None] | None = None, where: str = "--shapes") -> Profile:
    """The default profile with the given items replacing it per input, validated against the model; `where` names
    the items' source in messages."""
    given = {p.name: p for p in parse(items, where)}
    specs = {s.name: s for s in inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise WorkbenchError(f"{where} names unknown input(s) {unknown}; the model's inputs are {sorted(specs)}")
    default = default_profile(inputs, batch_axes)
    profile = Profile(tuple(given.get(p.name, p) for p in default.inputs))
    for p in profile.inputs:
        validate(p, specs[p.name])
    return profile


def validate(p: InputProfile, spec: TensorSpec) -> None:
    """Rank, static dims and min ≤ opt ≤ max; every failure is one line naming the input and axis."""
    rank = len(spec.shape)
    for label, shape in (("min", p.min), ("opt", p.opt), ("max", p.max)):
        if len(shape) != rank:
            raise WorkbenchError(f"profile for '{p.name}': {label} shape {'x'.join(map(str, shape))} has rank "
                                 f"{len(shape)}, the input has rank {rank} {list(spec.shape)}")
    for axis, dim in enumerate(spec.shape):
        lo, mid, hi = p.min[axis], p.opt[axis], p.max[axis]
        if isinstance(dim, int) and (lo, mid, hi) != (dim, dim, dim):
            raise WorkbenchError(f"profile for '{p.name}': axis {axis} is fixed to {dim} in the model, the profile "
                                 f"asks for {lo}/{mid}/{hi}")
        if not lo <= mid <= hi:
            raise WorkbenchError(f"profile for '{p.name}': axis {axis} needs min ≤ opt ≤ max, got {lo}/{mid}/{hi}")
