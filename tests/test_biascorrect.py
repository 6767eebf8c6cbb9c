"""Empirical bias correction: a layer whose INT8 rounding shifts its output mean gets that shift back in its bias."""
from __future__ import annotations

import onnx

import workbench as wb
from workbench.analysis.diagnose import Target, diagnose
from workbench.analysis.evaluate import output_scores, run
from workbench.graph.lint import lint
from workbench.runtime import get_backend
from workbench.zoo import planted as P


def test_rounding_offset_is_measured_and_added_back():
    model, calib, data = P.rounding_bias(), P.digits("calib"), P.digits("eval")
    backend = get_backend()
    reference = run(backend.build(model.path), data)
    plain = wb.apply(model, wb.Recipe("int8"), calib, progress=False)
    fixed = wb.apply(model, wb.Recipe("int8", bias_correction=True), calib, progress=False)
    before = output_scores(run(backend.build(plain.path), data), reference)["sqnr_db"]
    after = output_scores(run(backend.build(fixed.path), data), reference)["sqnr_db"]
    assert before < 20 and after > 35, (before, after)
    shifted = {c["node"]: c for c in fixed.bias_corrected}
    assert shifted["b1.conv"]["shift_rms"] > 0.05 > shifted["b0.conv"]["shift_rms"]
    assert shifted["b1.conv"]["bias"] == "b1.bias/corrected"
    graph, original = onnx.load(str(fixed.path)).graph, onnx.load(str(plain.path)).graph
    assert [n.op_type for n in graph.node] == [n.op_type for n in original.node], "only biases change"
    assert not [f for f in lint(onnx.load(str(fixed.path))).findings if f.severity == "error"]
    assert "--bias-correction" in fixed.recipe.to_cli_args() and fixed.manifest()["bias_corrected"]


def test_diagnose_corrects_bias_before_any_fallback():
    model = P.rounding_bias()
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), P.digits("eval"), Target(cosine=None, sqnr_db=30.0),
                 progress=False)
    assert d.remedies[-1].remedy.startswith("bias correction") and d.remedies[-1].met
    assert d.fallback == [] and d.recipe.bias_correction and d.after.sqnr_db >= 30
