"""Activation smoothing (SmoothQuant-style migration of activation outliers into the reading layers' weights): the
FP32 function is unchanged on the models it touches, and it fixes the transformer-style collapse it is built for,
which neither equalization nor calibration fixes."""
from __future__ import annotations

import onnx
import pytest
from test_equalize import _fp32_unchanged, real_model

import workbench as wb
from workbench.analysis.diagnose import REMEDY_STEPS, diagnose
from workbench.analysis.evaluate import output_scores, run
from workbench.app import cli
from workbench.graph.lint import lint
from workbench.precision.smooth import smoothable
from workbench.precision.transform import smoothed
from workbench.runtime import get_backend
from workbench.zoo import planted as P


def test_outlier_features_are_smoothed_exactly_and_int8_recovers():
    model, calib, data = P.outlier_features(), P.digits("calib"), P.digits("eval")
    assert _fp32_unchanged(model, data, calib, transform=smoothed) >= 2
    backend = get_backend()
    reference = run(backend.build(model.path), data)

    def cosine(recipe: wb.Recipe) -> float:
        return output_scores(run(backend.build(wb.apply(model, recipe, calib, progress=False).path), data),
                             reference)["cosine"]

    for recipe in (wb.Recipe("int8"), wb.Recipe("int8", calibration="percentile"), wb.Recipe("int8", equalize=True)):
        assert cosine(recipe) < 0.5, f"{recipe.label}: the planted outliers crush INT8 without smoothing"
    fixed = wb.apply(model, wb.Recipe("int8", smooth=True), calib, progress=False)
    assert cosine(fixed.recipe) >= 0.99
    by_tensor = {t["tensor"]: t for t in fixed.smoothed}
    assert by_tensor["n2"]["absorbed_by"] == "ln2" and by_tensor["n2"]["mul"] is None, \
        "a LayerNorm read only by the smoothed MatMul takes 1/s in its scale and bias"
    assert by_tensor["n1"]["mul"] == "n1/smooth" and by_tensor["n1"]["absorbed_by"] is None, \
        "the residual Add also reads ln1's output: an explicit Mul feeds the MatMul only"
    assert by_tensor["n1"]["spread_before"] > 50 > 2 > by_tensor["n1"]["spread_after"]
    graph = onnx.load(str(fixed.path)).graph
    mul = next(n for n in graph.node if n.name == "n1/smooth")
    assert next(n for n in graph.node if n.name == "residual").input[0] == "n1", "the residual reads the original"
    assert mul.input[0] == "n1" and not [f for f in lint(onnx.load(str(fixed.path))).findings
                                         if f.severity == "error"]
    assert fixed.manifest()["smoothed"] == fixed.smoothed and fixed.fp32.name.endswith("(smoothed)")


def test_diagnose_smooths_before_any_fallback():
    model = P.outlier_features()
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), P.digits("eval"), progress=False)
    chosen = next(r for r in d.remedies if r.remedy.startswith("smooth activation outliers"))
    assert d.before.cosine < 0.1 and chosen.scores.cosine >= 0.999
    assert chosen.rescaled_tensors >= 2 and chosen.added_mul_nodes >= 1
    assert not any(r.remedy.startswith("equalize") for r in d.remedies), "no Conv pair: nothing to equalize"
    # Smoothing alone leaves one digit at a per-sample cosine below the 0.9 floor: the fallback goes on top of it
    assert chosen.met or chosen.scores.cosine_worst < 0.9
    assert d.met and d.recipe.smooth and "--smooth" in d.recipe.to_cli_args() and len(d.fallback) <= 1
    assert d.evaluations <= d.budget + d.remedies_tried


def test_cli_smooth_flag_builds_the_recipe(tmp_path):
    import json

    assert cli.main(["build", "mnist-cnn", "--smooth", "-o", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["recipe"]["smooth"] is True and isinstance(manifest["smoothed"], list)


def test_remedy_order_tries_smoothing_after_equalization():
    assert REMEDY_STEPS.index("equalize") < REMEDY_STEPS.index("smooth") < REMEDY_STEPS.index("bias")
    assert smoothable(P.masked_attention().proto) == 2, "the tokens (read by Q, K, V) and the head's features"


@pytest.mark.slow
@pytest.mark.parametrize("name, tensors", [("minilm", 24), ("ppocr-det", 56)])
def test_fp32_outputs_unchanged_on_real_models(name, tensors):
    """Tensors smoothed per model: MiniLM's LayerNorm, attention-context and GELU outputs (4 per layer), the PP-OCR
    detector's hard-swish outputs."""
    assert _fp32_unchanged(*real_model(name), transform=smoothed) == tensors
