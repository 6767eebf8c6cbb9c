""""Copy as code": the current configuration as a Python snippet and as a CLI command line."""
from __future__ import annotations

import shlex
from typing import Any


def python_snippet(source: str, recipe: Any, shapes: list[str], backend: str) -> str:
    """Python that reproduces the app's build and per-layer comparison outside the UI."""
    args = [f"{recipe.precision!r}"]
    if recipe.precision == "int8":
        args += [f"calibration={recipe.calibration!r}", f"placement={recipe.placement!r}"]
        if recipe.calibration == "percentile":
            args.append(f"percentile={recipe.percentile!r}")
    if recipe.exclude:
        args.append(f"exclude={tuple(recipe.exclude)!r}")
    return "\n".join([
        "import workbench as wb",
        "from workbench.backends import get_backend",
        "from workbench.compare import compare",
        "from workbench.profiles import build_profile",
        "from workbench.session import calibration_data, evaluation_data",
        "",
        f"model = wb.load_model({source!r})",
        f"recipe = wb.Recipe({', '.join(args)})",
        "calib = calibration_data(model) if recipe.precision == 'int8' else None",
        "transformed = wb.apply(model, recipe, calib)",
        f"backend = get_backend({backend!r}, profile=build_profile(model.inputs, {shapes!r}))",
        "report = compare(transformed, evaluation_data(model), backend)",
        "report.layers",
    ])


def cli_command(source: str, recipe: Any, shapes: list[str], backend: str) -> str:
    cmd = ["workbench", "compare", source, "--precision", recipe.precision]
    if recipe.precision == "int8":
        cmd += ["--calibration", recipe.calibration, "--placement", recipe.placement]
        if recipe.calibration == "percentile":
            cmd += ["--percentile", f"{recipe.percentile:g}"]
    if recipe.exclude:
        cmd += ["--exclude", *recipe.exclude]
    if shapes:
        cmd += ["--shapes", *shapes]
    if backend != "onnxruntime-cpu":
        cmd += ["--backend", backend]
    return shlex.join(cmd)
