"""Every committed notebook runs top to bottom (outputs are not committed)."""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

# The workshop's exercises are its solutions with the answers taken out (tests/test_workshop.py checks that): the
# solutions run here.
NOTEBOOKS = sorted(p for p in (Path(__file__).parent.parent / "notebooks").rglob("*.ipynb")
                   if "exercises" not in p.parts)
# Real-model notebooks that take 25 s to 5 min on 2 cores: `make test` runs them, `make test-fast` does not.
SLOW = {"02_find_int8_collapse.ipynb", "03_latency_tradeoffs.ipynb", "3_transformer_placement.ipynb",
        "5_detector_and_latency.ipynb"}
assert SLOW <= {p.name for p in NOTEBOOKS}, "a slow notebook was renamed: update SLOW"


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                  for p in NOTEBOOKS], ids=lambda p: str(p.relative_to(p.parents[1])))
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if path.name == "03_latency_tradeoffs.ipynb" and importlib.util.find_spec("ray"):
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "running on Ray (local cluster, 2 CPUs)" in text, "issue 17: the sweep runs on a local Ray cluster"
