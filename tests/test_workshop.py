"""The workshop: every solution runs and asserts its answers (tests/test_notebooks.py executes them); the exercises
are exactly the solutions with the answers taken out; the planted network it starts from is trained and the plant
changes nothing in FP32."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import onnxruntime as ort

WORKSHOP = Path(__file__).parent.parent / "notebooks" / "workshop"


def test_exercises_are_the_solutions_without_answers():
    result = subprocess.run([sys.executable, str(WORKSHOP / "make_exercises.py"), "--check"], capture_output=True,
                            text=True, cwd=WORKSHOP.parents[1])
    assert result.returncode == 0, result.stdout
    for path in sorted((WORKSHOP / "solutions").glob("*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        exercise = nbformat.read(WORKSHOP / "exercises" / path.name, as_version=4)
        answers = [c.source for c in solution.cells if "solution" in c.metadata.get("tags", [])]
        assert answers, f"{path.name} has no answers to take out"
        shown = {c.source for c in exercise.cells}
        assert not shown & set(answers), f"{path.name}: an answer is left in the exercise"


def test_five_exercises_with_instructor_timings():
    names = sorted(p.stem for p in (WORKSHOP / "solutions").glob("*.ipynb"))
    assert len(names) == 5
    notes = (WORKSHOP / "INSTRUCTOR.md").read_text()
    assert all(name in notes for name in names)
    minutes = [int(m) for m in re.findall(r"\| (\d+) min \|", notes)]
    assert sum(minutes) == 90, minutes


def _predict(model, x):
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_planted_network_is_trained_and_the_plant_is_invisible_in_fp32():
    from workbench.zoo.planted import digits, trained

    data = digits("eval")
    clean, planted = _predict(trained(()), data.inputs["image"]), _predict(trained(), data.inputs["image"])
    assert (clean.argmax(1) == data.labels).mean() > 0.9
    np.testing.assert_allclose(planted, clean, rtol=1e-3, atol=1e-3)
