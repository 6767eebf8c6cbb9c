"""Fill the workbench cache before a workshop: run every solution notebook once, as the participants will.

The exported models (MiniLM), the corpus' data splits and every recipe the exercises build land in the artifact
cache, so during the session each exercise's first run takes seconds instead of minutes. Prints each notebook's
time, cold then (if run twice) warm: the numbers INSTRUCTOR.md quotes.

    make warm        # or: python notebooks/workshop/prewarm.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SOLUTIONS = Path(__file__).parent / "solutions"


def run(path: Path) -> float:
    """Execute one notebook in a fresh kernel (outputs discarded); seconds taken."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> int:
    total = 0.0
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        print(f"{path.stem:28s} …", end="", flush=True)
        try:
            seconds = run(path)
        except Exception as exc:  # noqa: BLE001 - report which exercise failed, in one line
            print(f"\r{path.stem:28s} failed: {str(exc).strip().splitlines()[-1]}")
            return 1
        total += seconds
        print(f"\r{path.stem:28s} {seconds:6.1f} s")
    print(f"{'all exercises':28s} {total:6.1f} s: the cache is warm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
