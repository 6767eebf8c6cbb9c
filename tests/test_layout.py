"""The package layout is the pipeline: every import (function-local and TYPE_CHECKING ones too, read with `ast`)
points from a later stage to an earlier one or within a stage, and no set of modules imports itself in a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"
STAGES = ["core", "graph", "model", "runtime", "precision", "analysis", "zoo", "app"]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Workbench modules this module imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known] or [source]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.startswith("workbench") and t in known and t != name)
    return found


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else len(STAGES)  # the package root: top


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_belongs_to_a_stage():
    loose = [m for m in modules() if m != "workbench" and stage(m) == len(STAGES)]
    assert not loose, f"modules outside the stage packages {STAGES}: {loose}"


def test_imports_point_from_later_stages_to_earlier_ones():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if stage(b) > stage(a))
    assert not upward, "a stage imports a later one:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_function_local_imports():
    """precision/transform.py imports the quantizer inside `apply` only: the edge must still be seen."""
    source = (PACKAGE / "precision" / "transform.py").read_text()
    top_level = [n for n in ast.parse(source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("quantize" in (getattr(n, "module", "") or "") for n in top_level), "not a function-local import"
    assert "workbench.precision.quantize" in graph()["workbench.precision.transform"]


def test_the_public_api_resolves_from_the_package_root_without_heavy_imports():
    import subprocess
    import sys

    code = ("import sys, workbench as wb; heavy = [m for m in ('torch', 'tensorrt', 'tensorrt_rtx', 'ray', "
            "'onnxruntime', 'pandas') if m in sys.modules]; assert not heavy, heavy; "
            "[getattr(wb, name) for name in wb.__all__]; print(len(wb.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 15


def test_files_the_code_cites_are_in_the_repository():
    """Review defect: code cited a shared/DESIGN.md that the repository does not have."""
    import re

    root = PACKAGE.parent
    cited = {m for path in PACKAGE.rglob("*.py") for m in re.findall(r"\b((?:docs|benchmarks|shared)/[\w./-]+\.\w+)",
                                                                      path.read_text())}
    assert "docs/DESIGN.md" in cited
    assert not [c for c in cited if not (root / c.rstrip(".")).exists()]


def _body_lines(fn: ast.FunctionDef) -> int:
    """Lines of a function's body, its docstring left out."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    return fn.end_lineno - body[0].lineno + 1 if body else 0


def test_functions_in_analysis_and_app_stay_short():
    """Issue 28: a function of more than 60 lines in analysis/ or app/ does several jobs; split it by job."""
    long = [f"{path.relative_to(PACKAGE)}:{fn.lineno} {fn.name} ({_body_lines(fn)} lines)"
            for stage_dir in ("analysis", "app") for path in (PACKAGE / stage_dir).rglob("*.py")
            for fn in ast.walk(ast.parse(path.read_text()))
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(fn) > 60]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
    assert _body_lines(ast.parse("def f():\n    '''doc'''\n" + "    x = 1\n" * 61).body[0]) == 61
