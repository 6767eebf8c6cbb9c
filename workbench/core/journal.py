"""Finished cells of an unfinished sweep, so a sweep stopped, killed or interrupted and started again skips them.

A journal lives in the cache under the sweep's own key (recipes, model, data, backend and settings); each cell
is one JSON file under the cell's key, written atomically (a kill leaves the cell or nothing, and a cell written
twice replaces itself: no duplicates). A sweep that completes removes its journal, so running it again measures
again instead of replaying old numbers.
"""
from __future__ import annotations

import json
import shutil
from typing import Any, Callable, Hashable

from workbench.core import cache
from workbench.core.progress import Steps


class Journal:
    def __init__(self, kind: str, key: str) -> None:
        self.directory = cache.cache_root() / "journal" / kind / key

    def _path(self, cell: str):
        return self.directory / f"{cell}.json"

    def get(self, cell: str) -> Any | None:
        """The cell's recorded result, or None (an unreadable entry counts as not done)."""
        try:
            return json.loads(self._path(cell).read_text())
        except (OSError, ValueError):
            return None

    def put(self, cell: str, value: Any) -> None:
        cache.atomic_write(self._path(cell), json.dumps(value).encode())

    def finish(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, executor: Any, tasks: dict[Hashable, Any], record: Callable[[Hashable, Any], Any],
            steps: Steps) -> dict[Hashable, Any]:
        """Every cell's record: journaled cells read back, the others run as tasks on `executor` and recorded
        (`record(cell, result)`, JSON-able) as each finishes; the journal is cleared once all are done. Cells are
        keyed by their content (`cache.digest(cell.to_dict())`)."""
        keys = {cell: cache.digest(cell.to_dict()) for cell in tasks}
        records = {cell: self.get(keys[cell]) for cell in tasks}
        todo = [cell for cell in tasks if records[cell] is None]
        with steps:
            steps.update(len(tasks) - len(todo))
            for i, result in executor.run([tasks[cell] for cell in todo]):
                cell = todo[i]
                records[cell] = record(cell, result)
                self.put(keys[cell], records[cell])
                steps.update()
        self.finish()
        return records
