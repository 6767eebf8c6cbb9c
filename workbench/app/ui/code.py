""""Copy as code": the app's configuration (model, recipe, data, profile, backend, task) as a Python script and as
a CLI line, both reproducing the app's numbers."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CodeSetup:
    """What the app ran: data as .npz paths (None: the model's own splits, or random data shaped by the profile,
    as the app used), the evaluation samples, the profile, the backend and the task."""

    source: str
    recipe: Any  # precision.recipe.Recipe
    shapes: tuple[str, ...] = ()
    backend: str = "onnxruntime-cpu"
    limit: int | None = None
    calib: str | None = None
    evaluation: str | None = None
    task: str = "auto"
    batch_axes: dict[str, int | None] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # e.g. "the app's in-memory evaluation data, saved to …"


def python_snippet(setup: CodeSetup) -> str:
    """A script that builds and compares as the app did and prints the app's status line."""
    recipe = setup.recipe
    axes = f", batch_axes={setup.batch_axes!r}" if setup.batch_axes else ""
    task = f", task={setup.task!r}" if setup.task != "auto" else ""
    lines = [f"# {note}" for note in setup.notes] + [
        "import workbench as wb",
        "from workbench.analysis.compare import compare",
        "from workbench.model.defaults import calibration_data, evaluation_data",
        "from workbench.model.profiles import build_profile",
        "from workbench.runtime import get_backend",
        "",
        f"model = wb.load_model({setup.source!r})",
        f"recipe = wb.{recipe.to_python()}",
        f"shapes = {list(setup.shapes)!r}",
        f"calib = calibration_data(model, {setup.calib!r}, shapes=shapes{axes}) if recipe.precision != 'fp32' "
        "else None",
        "transformed = wb.apply(model, recipe, calib)",
        f"backend = get_backend({setup.backend!r}, profile=build_profile(model.inputs, shapes))",
        f"data = evaluation_data(model, {setup.evaluation!r}, limit={setup.limit!r}, shapes=shapes{axes})",
        f"report = compare(transformed, data, backend{task})",
        "print(f\"{recipe.label}: {report.summary()}\")",
    ]
    return "\n".join(lines)


def cli_command(setup: CodeSetup) -> str:
    """The `workbench compare` line for the same model, recipe, data, profile, backend, task and samples."""
    cmd = ["workbench", "compare", setup.source, *setup.recipe.to_cli_args()]
    if setup.calib and setup.recipe.precision != "fp32":
        cmd += ["--calib-data", setup.calib]
    if setup.evaluation:
        cmd += ["--eval-data", setup.evaluation]
    if setup.limit:
        cmd += ["--limit", str(setup.limit)]
    if setup.shapes:
        cmd += ["--shapes", *setup.shapes]
    if setup.batch_axes:
        cmd += ["--batch-axis", *(f"{k}={'none' if v is None else v}" for k, v in setup.batch_axes.items())]
    if setup.backend != "onnxruntime-cpu":
        cmd += ["--backend", setup.backend]
    if setup.task != "auto":
        cmd += ["--task", setup.task]
    return shlex.join(cmd)
