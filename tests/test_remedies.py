"""Cheap fixes before node fallback, on models built with the classic failure modes (real digit images)."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli

import workbench as wb
from workbench.analysis.diagnose import diagnose
from workbench.analysis.evaluate import output_scores, run
from workbench.app import plots
from workbench.precision.calibration import histogram, method_ranges
from workbench.runtime import get_backend
from workbench.zoo import planted as P


def cosine(model, recipe, calib, data):
    t = wb.apply(model, recipe, calib, progress=False)
    return output_scores(run(get_backend().build(t.path), data), run(get_backend().build(model.path), data))["cosine"]


def test_batchnorm_folding_keeps_names_and_values():
    model = P.batchnorm_chain()
    data = P.digits("eval")
    fp16 = wb.apply(model, wb.Recipe("fp16"), progress=False)
    assert fp16.folded == {"b0.bn": "b0.conv", "b1.bn": "b1.conv", "b2.bn": "b2.conv"}
    from workbench.precision.transform import cleaned

    folded, _ = cleaned(model)
    names = [n.name for n in folded.proto.graph.node]
    assert "b0.bn" not in names and names[:2] == ["b0.conv", "b0.act"]
    a = run(get_backend().build(model.path), data)["logits"]
    b = run(get_backend().build(folded.path), data)["logits"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    excluded = wb.apply(model, wb.Recipe("int8", exclude=("b1.bn",)), P.digits("calib"), progress=False)
    assert excluded.excluded_nodes == ["b1.conv"], "an exclusion naming a folded node maps to the node that absorbed it"


def test_weights_written_as_constant_nodes_are_lifted_so_batchnorm_folds(tmp_path):
    """Paddle2ONNX writes every weight as a Constant node (the PP-OCR detector: 342 of 672 nodes); clean-up lifts
    them into initializers, so BatchNorm folds as it does for initializers (before: nothing folded)."""
    from onnx import helper

    from workbench.precision.transform import cleaned

    proto = P.batchnorm_chain().proto
    constants = [helper.make_node("Constant", [], [i.name], name=f"const.{i.name}", value=i)
                 for i in proto.graph.initializer]
    nodes = constants + list(proto.graph.node)
    del proto.graph.initializer[:]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.save(proto, tmp_path / "paddle_style.onnx")
    model = wb.load_model(str(tmp_path / "paddle_style.onnx"))
    folded_model, folded = cleaned(model)
    ops = [n.op_type for n in folded_model.proto.graph.node]
    assert "Constant" not in ops and "BatchNormalization" not in ops
    assert {folded[f"b{i}.bn"] for i in range(3)} == {"b0.conv", "b1.conv", "b2.conv"}
    assert folded["const.b0.weight"] == "(constant)"
    data = P.digits("eval")
    np.testing.assert_allclose(run(get_backend().build(folded_model.path), data)["logits"],
                               run(get_backend().build(model.path), data)["logits"], rtol=1e-4, atol=1e-5)


def test_unfolded_batchnorm_chain_is_fixed_by_folding():
    model = P.batchnorm_chain()
    d = diagnose(model, wb.Recipe("int8", placement="all", cleanup=False), P.digits("calib"),
                 P.digits("eval"), progress=False)
    assert d.before.cosine < 0.95
    assert d.remedies[1].remedy.startswith("clean up the graph") and d.remedies[1].met
    assert d.fallback == [] and d.after.cosine >= 0.99 and d.recipe.cleanup


def test_glitchy_calibration_data_is_fixed_by_calibration_overrides():
    spec, model = P.planted(())
    calib, data = P.with_glitches(P.digits("calib")), P.digits("eval")
    d = diagnose(model, wb.Recipe("int8", "minmax"), calib, data, remedies=("overrides",), progress=False)
    assert d.before.cosine < 0.95
    chosen = d.remedies[1]
    assert chosen.remedy.startswith("calibration override") and "image=entropy" in chosen.remedy
    assert chosen.met and d.fallback == [] and d.after.cosine >= 0.99 and not d.recipe.equalize
    assert d.remedies_tried == 1 and d.evaluations == 2 <= d.budget + d.remedies_tried
    assert cosine(model, d.recipe, calib, data) >= 0.99, "the recipe the diagnosis returns reproduces the fix"
    # with every remedy, the first one that applies is the range estimator: two glitchy images out of 256 no
    # longer set the input's range once ranges are the mean of per-sample ranges
    d = diagnose(model, wb.Recipe("int8", "minmax"), calib, data, progress=False)
    assert d.remedies[1].remedy.startswith("ranges from the mean of per-sample min/max") and d.remedies[1].met
    assert d.recipe.calibration == "mean-minmax" and d.fallback == [] and d.remedies_tried == 1
    assert cosine(model, d.recipe, calib, data) >= 0.99
    counts, edges, amax = histogram(model, calib, "image")
    ranges = method_ranges(model, calib, "image", ["Conv", "ConvTranspose", "Gemm", "MatMul"])
    assert amax == pytest.approx(100.0) and ranges["minmax"] == pytest.approx(100.0)
    assert ranges["entropy"] < 0.2 * ranges["minmax"] and ranges["percentile 99.99"] < 1.0
    fig = plots.histogram_figure("image", counts, edges, ranges, amax)
    assert len(fig.layout.shapes) == 2 * len(ranges) and "minmax" in fig.layout.annotations[0].text


def test_masked_attention_is_fixed_only_by_the_placement():
    model = P.masked_attention()
    calib, data = P.digits("calib"), P.digits("eval")
    naive = wb.Recipe("int8", placement="all")
    for other in (naive.with_(calibration="percentile"), naive.with_(calibration="entropy")):
        assert cosine(model, other, calib, data) < 0.99, "calibration cannot rescue a mask inside INT8"
    d = diagnose(model, naive, calib, data, progress=False)
    assert d.remedies[1].remedy.startswith("Q/DQ placement 'tensorrt'") and d.remedies[1].met
    assert d.fallback == [] and d.recipe.placement == "tensorrt" and d.after.cosine >= 0.99


def test_cli_override_and_remedies_in_json(tmp_path):
    model = P.batchnorm_chain()
    onnx.save(model.proto, tmp_path / "bn.onnx")
    np.savez(tmp_path / "c.npz", **P.digits("calib").inputs)
    np.savez(tmp_path / "e.npz", **P.digits("eval").inputs)
    r = run_cli("diagnose", str(tmp_path / "bn.onnx"), "--placement",
                        "all", "--no-cleanup", "--calib-data", str(tmp_path / "c.npz"), "--eval-data",
                        str(tmp_path / "e.npz"), "--json", str(tmp_path / "d.json"))
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["remedies"][1]["remedy"].startswith("clean up the graph") and d["fallback"] == []
    bad = run_cli("build", str(tmp_path / "bn.onnx"), "--override",
                          "b0.out=magic", "-o", str(tmp_path / "o"))
    assert bad.returncode == 2 and "TENSOR=minmax|entropy|percentile" in bad.stderr


def test_fp16_as_the_fallback_precision():
    spec, model = P.planted((1,))
    d = diagnose(model, wb.Recipe("int8", fallback_precision="fp16"), P.digits("calib"), P.digits("eval"),
                 remedies=False, progress=False)
    assert d.fallback == spec.culprits() and d.after.cosine >= 0.99
    assert d.remedies[-1].remedy.startswith("keep 1 node(s) in FP16: ")
    graph = onnx.load(str(wb.apply(model, d.recipe, P.digits("calib"), progress=False).path)).graph
    fp16 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert fp16 == {"block2.weight", "block2.bias"}, "only the fallback node's weights become FP16"
    assert any(n.op_type == "QuantizeLinear" for n in graph.node), "the rest stays INT8"


def test_folded_convs_are_ranked_and_marked():
    model = P.batchnorm_chain()
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), P.digits("eval"), remedies=False, progress=False)
    assert {r.node for r in d.ranking} == {"b0.conv", "b1.conv", "b2.conv", "head.fc"}
    assert all(r.local_sqnr_db is not None for r in d.ranking), "folded convs are measured against the BN output"
    row = d.report.layers.set_index("node").loc["b1.bn"]
    assert row["local_sqnr_db"] == pytest.approx(d.report.local_sqnr["b1.conv"])
    fig = plots.layer_figure(d.report, ["b1.conv"])
    assert list(fig.data[[t.name for t in fig.data].index("kept in FP32")].customdata) == ["b1.bn"]


def test_constant_subgraphs_are_folded_and_compare_still_runs(tmp_path):
    from onnx import helper, numpy_helper

    from workbench.analysis.compare import compare
    from workbench.precision.transform import cleaned

    proto = P.masked_attention().proto
    proto.graph.initializer.append(numpy_helper.from_array(np.array([0.5], np.float32), "half"))
    proto.graph.node.insert(0, helper.make_node("Mul", ["scale", "half"], ["scale_half"], name="attn.scale_half"))
    next(n for n in proto.graph.node if n.name == "attn.scale").input[1] = "scale_half"
    onnx.save(proto, tmp_path / "m.onnx")
    model = wb.load_model(str(tmp_path / "m.onnx"))
    folded_model, folded = cleaned(model)
    assert folded == {"attn.scale_half": "(constant)"} and "attn.scale_half" not in folded_model.node_names()
    report = compare(wb.apply(model, wb.Recipe("int8", placement="all"), P.digits("calib"), progress=False),
                     P.digits("eval").take(32), progress=False)
    assert report.local_sqnr, "the local-sensitivity graph loads although 'scale_half' became an initializer"
    assert report.outputs[0]["cosine"] > 0.5


def test_overrides_are_what_the_manifest_and_the_cause_analysis_read():
    """Review defect: with per-tensor overrides the manifest's cache_file and the diagnosis' cause analysis read the
    base method's ranges, not the merged ranges the model was quantized with."""
    from workbench.analysis.compare import compare
    from workbench.analysis.diagnose import tensor_issues
    from workbench.precision.calibration import load_ranges

    spec, model = P.planted(())
    calib = P.with_glitches(P.digits("calib"))
    plain = wb.apply(model, wb.Recipe("int8"), calib, progress=False)
    fixed = wb.apply(model, wb.Recipe("int8", overrides=("image=entropy",)), calib, progress=False)
    base_amax = max(map(abs, load_ranges(plain.calibration.path)["image"]))
    merged = load_ranges(Path(fixed.manifest()["calibration"]["cache_file"]))
    assert base_amax >= 99 and max(map(abs, merged["image"])) < 50, "the manifest names the merged ranges"
    report = compare(fixed, P.digits("eval").take(32), progress=False)
    issues = {t: (kind, text) for t, kind, text in tensor_issues(spec.conv(0), model, report, fixed)}
    assert f"{base_amax:.3g}" not in issues["image"][1], "the cause analysis reads the range the model uses"


def test_batchnorm_folds_into_a_gemm_with_beta(tmp_path):
    """Review defect: folding ignored Gemm's beta (beta 0.5: output off by up to 0.72)."""
    from onnx import TensorProto, helper, numpy_helper

    from workbench.precision.transform import cleaned

    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((6, 64)).astype(np.float32), "c": rng.standard_normal(6).astype(np.float32),
              "gamma": rng.uniform(0.5, 2, 6).astype(np.float32), "bn_beta": rng.standard_normal(6).astype(np.float32),
              "mean": rng.standard_normal(6).astype(np.float32), "var": rng.uniform(0.5, 2, 6).astype(np.float32),
              "flat": np.array([-1, 64], np.int64)}
    nodes = [helper.make_node("Reshape", ["image", "flat"], ["x"], name="flatten"),
             helper.make_node("Gemm", ["x", "w", "c"], ["g"], name="fc", transB=1, beta=0.5),
             helper.make_node("BatchNormalization", ["g", "gamma", "bn_beta", "mean", "var"], ["logits"], name="bn")]
    graph = helper.make_graph(nodes, "gemm_bn", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 6])],
                              [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "gemm_bn.onnx")
    model = wb.load_model(str(tmp_path / "gemm_bn.onnx"))
    folded, names = cleaned(model)
    assert names == {"bn": "fc"}
    data = P.digits("eval").take(64)
    np.testing.assert_allclose(run(get_backend().build(folded.path), data)["logits"],
                               run(get_backend().build(model.path), data)["logits"], rtol=1e-4, atol=1e-4)


def test_conv_transpose_macs_count_every_input_weight_pair():
    """Review defect: 63,504 MACs counted where a ConvTranspose computes 115,200 (8x10x10 input, 8→16 channels,
    3x3 kernel, stride 2)."""
    from onnx import helper, numpy_helper

    from workbench.graph.cost import macs_per_sample

    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])
    graph = helper.make_graph([node], "up", [], [], [numpy_helper.from_array(np.zeros((8, 16, 3, 3), np.float32), "w")])
    macs = macs_per_sample(helper.make_model(graph), {"x": (1, 8, 10, 10), "y": (1, 16, 21, 21)})
    assert macs == {"up": 8 * 10 * 10 * 16 * 3 * 3}


def test_remedies_compose_and_the_adopted_recipe_is_the_one_scored():
    """Review defect: on a Conv→BN chain with placement 'all' and no clean-up, the clean-up remedy was adopted, then
    the placement candidate was built without it; candidates build on the current best recipe and the returned
    recipe reproduces the reported score."""
    model, calib, data = P.batchnorm_chain(), P.digits("calib"), P.digits("eval")
    d = diagnose(model, wb.Recipe("int8", placement="all", cleanup=False), calib, data, progress=False)
    adopted = [r.remedy for r in d.remedies[1:] if r.met or r.adopted]
    assert adopted and adopted[0].startswith("clean up the graph") and d.recipe.cleanup
    assert cosine(model, d.recipe, calib, data) == pytest.approx(d.after.cosine, abs=1e-9)
