""""Copy as code": the current configuration as a Python snippet and as a CLI command line."""
from __future__ import annotations

import shlex
from typing import Any


def python_snippet(source: str, recipe: Any, shapes: list[str], backend: str, limit: int | None = None) -> str:
    """Python that reproduces the app's build and per-layer comparison outside the UI (the recipe writes itself)."""
    return "\n".join([
        "import workbench as wb",
        "from workbench.runtime import get_backend",
        "from workbench.analysis.compare import compare",
        "from workbench.model.profiles import build_profile",
        "from workbench.model.defaults import calibration_data, evaluation_data",
        "",
        f"model = wb.load_model({source!r})",
        f"recipe = wb.{recipe.to_python()}",
        "calib = calibration_data(model) if recipe.precision != 'fp32' else None",
        "transformed = wb.apply(model, recipe, calib)",
        f"backend = get_backend({backend!r}, profile=build_profile(model.inputs, {shapes!r}))",
        f"report = compare(transformed, evaluation_data(model, limit={limit!r}), backend)",
        "report.layers",
    ])


def cli_command(source: str, recipe: Any, shapes: list[str], backend: str, limit: int | None = None) -> str:
    """The `workbench compare` line for the same model, recipe, profile, backend and evaluation samples."""
    cmd = ["workbench", "compare", source, *recipe.to_cli_args()]
    if limit:
        cmd += ["--limit", str(limit)]
    if shapes:
        cmd += ["--shapes", *shapes]
    if backend != "onnxruntime-cpu":
        cmd += ["--backend", backend]
    return shlex.join(cmd)
