"""ModelHandle: the canonical FP32 ONNX of a model, its input specs and its node → PyTorch module map."""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import onnx

from workbench.core import cache
from workbench.core.errors import WorkbenchError, one_line
from workbench.core.specs import TensorSpec, graph_inputs, graph_outputs

MIN_OPSET = 13  # per-channel Q/DQ (axis attribute on QuantizeLinear/DequantizeLinear) needs opset 13
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass
class ModelHandle:
    """A loaded model. `path` is never written to; transformed models go to the artifact cache."""

    name: str
    path: Path
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source: str  # "onnx", "torch" or "zoo"
    module_of: dict[str, str] = field(default_factory=dict)
    torch_module: Any = field(default=None, repr=False)
    zoo: Any = field(default=None, repr=False)

    @cached_property
    def proto(self) -> onnx.ModelProto:
        return onnx.load(str(self.path))

    @property
    def opset(self) -> int:
        return onnx_opset(self.proto)

    def node_names(self) -> list[str]:
        return [n.name for n in self.proto.graph.node]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "path": str(self.path),
            "sha256": self.sha256,
            "opset": self.opset,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "nodes": len(self.proto.graph.node),
        }


def portable(handle: ModelHandle) -> tuple[ModelHandle, bytes]:
    """What a task on another process or machine needs to rebuild the handle: its description (no torch module,
    zoo entry or parsed proto) and the model file's bytes."""
    meta = replace(handle, torch_module=None, zoo=None)
    header = onnx.load(str(handle.path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in header.graph.initializer):
        return meta, handle.proto.SerializeToString()  # weights in a side file: send them inline
    return meta, Path(handle.path).read_bytes()


def materialize(meta: ModelHandle, data: bytes) -> ModelHandle:
    """The handle on this machine: the bytes written (once, atomically) to this machine's cache under the
    handle's own digest, so every cache key derived from it matches the sender's."""
    path = cache.artifact_path("models", meta.sha256, ".onnx")
    if not path.exists():
        cache.atomic_write(path, data)
    return replace(meta, path=path)


def ship(handle: ModelHandle, executor: Any) -> Any:
    """The handle as tasks on `executor` (workbench.core.executor) take it: itself in this process, its
    description and bytes (portable) in the object store of a remote one. Tasks call `receive` on it."""
    return executor.share(handle if executor.name == "local" else portable(handle))


def receive(shipped: Any) -> ModelHandle:
    """The handle a task was given by `ship`, on the machine the task runs on."""
    return materialize(*shipped) if isinstance(shipped, tuple) else shipped


def onnx_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def module_map(model: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name → PyTorch module path, from the scopes the dynamo exporter stores on each node."""
    out = {}
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == NAME_SCOPES_KEY:
                try:
                    scopes = [s for s in ast.literal_eval(prop.value) if s]
                except (ValueError, SyntaxError):
                    continue
                if len(scopes) >= 2:
                    out[node.name] = scopes[-2]
                elif scopes:
                    out[node.name] = scopes[0]
    return out


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse and check an ONNX file; every failure becomes one line naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"model file not found: {path}")
    if path.is_dir():
        raise WorkbenchError(f"{path} is a directory, expected an .onnx file")
    _check_external_data(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise WorkbenchError(f"{path} is not a valid ONNX model ({type(exc).__name__}: {one_line(exc)})") from None
    if not model.graph.node:
        raise WorkbenchError(f"{path} is not a valid ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise WorkbenchError(f"{path} fails the ONNX checker: {one_line(exc)}") from None
    return model


def _check_external_data(path: Path) -> None:
    """Weights saved as external data must sit where the model says: name the missing file."""
    try:
        skeleton = onnx.load(str(path), load_external_data=False)
    except Exception:
        return  # read_onnx reports the parse error itself
    from onnx.external_data_helper import uses_external_data

    for tensor in skeleton.graph.initializer:
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if not (path.parent / location).is_file():
                raise WorkbenchError(f"{path} keeps its weights in the external data file '{location}', which is "
                                     f"missing: put {path.parent / location} next to the model")


PLACEHOLDER_DIMS = ("?", "")


def _name_placeholder_dims(model: onnx.ModelProto) -> bool:
    """Give every unknown I/O dim (`dim_value: -1` from Paddle2ONNX, `dim_param: "?"`) its own name, in place.

    TensorRT treats equal dim names as one dimension: two `?` axes (height and width) would have to be equal, and
    a -1 is no size at all. Returns whether anything was renamed (then a copy goes to the cache)."""
    changed = False
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            unknown = (dim.HasField("dim_value") and dim.dim_value < 0) or (
                dim.HasField("dim_param") and dim.dim_param in PLACEHOLDER_DIMS)
            if unknown:
                dim.dim_param = f"{value.name}_dim{axis}"
                changed = True
    return changed


def _name_unnamed_nodes(model: onnx.ModelProto) -> bool:
    """Give every unnamed node of the main graph a name, `{op_type}_{index}`, and a repeated name a suffix, in place.

    Paddle2ONNX leaves its Constant nodes unnamed (PP-OCR: 308 of 569), and nodes are addressed by name everywhere
    (exclusions, the ranking, the graph view, whose layout failed on 311 nodes called ""). Names the user gave are
    kept (the first of a repeated one too); the generated ones depend only on the graph, so a recipe naming them
    applies to the same file again."""
    nodes = model.graph.node
    taken = {n.name for n in nodes if n.name}
    seen: set[str] = set()
    changed = False
    for index, node in enumerate(nodes):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        base = f"{node.name}_{index}" if node.name else f"{node.op_type}_{index}"
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        node.name = name
        taken.add(name)
        seen.add(name)
        changed = True
    return changed


def _upgrade_opset(model: onnx.ModelProto, source: Path) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise WorkbenchError(
            f"{source} uses opset {onnx_opset(model)} and could not be upgraded to {MIN_OPSET} "
            f"(needed for per-channel INT8): {one_line(exc)}"
        ) from None


def _store(model: onnx.ModelProto) -> tuple[Path, str]:
    path = cache.store_model(model.SerializeToString())
    return path, path.stem


def from_onnx(path: str | os.PathLike, name: str | None = None, source: str = "onnx") -> ModelHandle:
    """Load an ONNX file. Below opset 13 an upgraded copy goes to the cache, as does one with placeholder dims
    named or untyped tensors typed (graph.complete_types); the user's file is untouched."""
    from workbench.graph.topology import complete_types

    path = Path(path)
    model = read_onnx(path)
    changed = _name_placeholder_dims(model)
    changed = _name_unnamed_nodes(model) or changed
    changed = complete_types(model) or changed
    if onnx_opset(model) < MIN_OPSET:
        model = _upgrade_opset(model, path)
        _name_unnamed_nodes(model)  # the converter's own nodes (Shape, Flatten, Reshape) come unnamed
        stored, sha = _store(model)
    elif changed:
        stored, sha = _store(model)
    else:
        stored, sha = path, cache.file_digest(path)
    handle = ModelHandle(
        name=name or path.stem,
        path=stored,
        sha256=sha,
        inputs=graph_inputs(model),
        outputs=graph_outputs(model),
        source=source,
        module_of=module_map(model),
    )
    handle.__dict__["proto"] = model
    return handle


def from_torch(
    module: Any,
    example_inputs: Any,
    *,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    name: str | None = None,
) -> ModelHandle:
    """Export a torch.nn.Module with the dynamo exporter, keeping its node → module path mapping."""
    from workbench.model.torch_export import export

    model = export(module, example_inputs, input_names=input_names, output_names=output_names,
                   dynamic_axes=dynamic_axes)
    path, sha = _store(model)
    handle = from_onnx(path, name=name or type(module).__name__, source="torch")
    handle.torch_module = module
    return handle


def load(source: Any, example_inputs: Any = None, **torch_options: Any) -> ModelHandle:
    """Load a model from an .onnx path or a torch.nn.Module (with example inputs); zoo names are resolved one stage
    up, by workbench.zoo.load_model.

    For a module, `input_names`, `output_names` and `dynamic_axes` ({input: {axis: "symbol"}}) are accepted.
    """
    if isinstance(source, ModelHandle):
        return source
    if _is_torch_module(source):
        if example_inputs is None:
            raise WorkbenchError("a PyTorch module needs example_inputs (a tensor or tuple of tensors) to export")
        return from_torch(source, example_inputs, **torch_options)
    if isinstance(source, (str, os.PathLike)) and (os.fspath(source).endswith(".onnx") or Path(source).exists()):
        return from_onnx(source)
    raise WorkbenchError(f"cannot load a model from {type(source).__name__}: use a zoo name, an .onnx path or a "
                         "torch.nn.Module")


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)

