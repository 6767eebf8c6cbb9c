"""Write the workshop's exercise notebooks from its solutions, so the two never drift apart.

Each solution notebook marks its answers with the cell tag `solution`; the cell's metadata `exercise` holds what
the exercise shows instead (a TODO stub, or null to drop the cell). The test suite runs the solutions and checks
that the committed exercises are exactly what this script writes.

    python notebooks/workshop/make_exercises.py          # rewrite exercises/
    python notebooks/workshop/make_exercises.py --check  # exit 1 if exercises/ is stale
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent
SOLUTIONS, EXERCISES = HERE / "solutions", HERE / "exercises"


def exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution notebook with each `solution` cell replaced by its stub (or dropped)."""
    nb = copy.deepcopy(solution)
    cells = []
    for cell in nb.cells:
        if "solution" not in cell.metadata.get("tags", []):
            cells.append(cell)
            continue
        stub = cell.metadata.get("exercise")
        if stub is None:
            continue
        cell.source = stub
        cell.metadata = {}
        cells.append(cell)
    nb.cells = cells
    return nb


def written() -> dict[Path, str]:
    """Exercise path → the text this script writes there."""
    return {EXERCISES / path.name: nbformat.writes(exercise(nbformat.read(path, as_version=4)))
            for path in sorted(SOLUTIONS.glob("*.ipynb"))}


def main(argv: list[str]) -> int:
    stale = [path for path, text in written().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"stale: {path} (run python {Path(__file__).relative_to(Path.cwd())})")
        return 1 if stale else 0
    EXERCISES.mkdir(exist_ok=True)
    for path, text in written().items():
        path.write_text(text)
    print(f"wrote {len(written())} exercises to {EXERCISES}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
