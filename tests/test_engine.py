"""The engine view: the recipe's precision claims read from the Q/DQ layout, layer info parsed and mapped to the
user's ONNX nodes, engines diffed. Parsing runs on layer info captured from TensorRT-RTX on the accelerator machine
(tests/data/engine/, see benchmarks/tensorrt_device.py); nothing here needs TensorRT."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from conftest import run_cli

from workbench.graph.placement import claimed_precisions
from workbench.runtime.tensorrt import TensorRT, TensorRTRtx


def _build(tmp_path, name, *args):
    out = tmp_path / name
    result = run_cli("build", "mnist-cnn", *args, "-o", out)
    assert result.returncode == 0, result.stderr
    return onnx.load(str(out / "model.onnx")), json.loads((out / "manifest.json").read_text())


def test_claims_follow_the_recipe_not_the_op_types(tmp_path):
    """All-INT8 claims INT8 for every Conv/Gemm; an excluded node is claimed in its fallback precision, FP16 claims
    FP16 — checked against the manifest's own lists, which are written by another code path (the quantizer)."""
    model, manifest = _build(tmp_path, "int8", "--precision", "int8")
    claims = claimed_precisions(model)
    assert len(claims) == 4 and set(claims.values()) == {"int8"}
    model, manifest = _build(tmp_path, "excl", "--precision", "int8", "--exclude", "node_linear_1")
    claims = claimed_precisions(model)
    assert claims["node_linear_1"] == "fp32"
    assert {n for n, c in claims.items() if c == "int8"} == set(claims) - {"node_linear_1"}
    model, _ = _build(tmp_path, "fp16", "--precision", "fp16")
    assert set(claimed_precisions(model).values()) == {"fp16"}


@pytest.mark.skipif(TensorRT.availability()[0] or TensorRTRtx.availability()[0], reason="a TensorRT is installed")
def test_engine_without_tensorrt_is_one_line_naming_the_way_out(tmp_path):
    _build(tmp_path, "int8", "--precision", "int8")
    result = run_cli("engine", tmp_path / "int8" / "model.onnx")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no TensorRT here" in lines[0] and "--layer-info" in lines[0]


def test_engine_reports_bad_layer_info_in_one_line(tmp_path):
    _build(tmp_path, "int8", "--precision", "int8")
    bad = tmp_path / "layers.json"
    bad.write_text("{not json")
    for path, words in ((tmp_path / "missing.json", "not found"), (bad, "not layer info JSON nor a builder log")):
        result = run_cli("engine", tmp_path / "int8" / "model.onnx", "--layer-info", path)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _layer_info(model, float_nodes=()):
    """Layer info in the inspector's JSON layout (TensorRT docs: Name, LayerType, Inputs/Outputs with
    Format/Datatype, Metadata records joined by U+001E) for a model: one layer per compute node with its Q/DQ
    neighbours fused in, INT8 formats unless the node is in `float_nodes`; one reformat the builder inserts."""
    producers = {o: n for n in model.graph.node for o in n.output}
    layers = [{"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
               "Inputs": [{"Name": "input", "Format/Datatype": "Row major linear FP32"}],
               "Outputs": [{"Name": "q", "Format/Datatype": "Four wide channel vectorized row major Int8 format"}]}]
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        fused = [producers[i].name for i in node.input if i in producers
                 and producers[i].op_type == "DequantizeLinear"] + [node.name]
        fmt = "Row major linear FP32" if node.name in float_nodes else "Thirty-two wide channel vectorized Int8"
        layers.append({"Name": " + ".join(fused), "LayerType": "CaskConvolution",
                       "Inputs": [{"Name": node.input[0], "Dimensions": [1, 8], "Format/Datatype": fmt}],
                       "Outputs": [{"Name": node.output[0], "Format/Datatype": "Row major linear FP32"}],
                       "Metadata": "\x1e".join(f"[ONNX Layer: {n}]" for n in fused)})
    return {"Layers": layers}


def test_layer_info_maps_to_nodes_checks_claims_and_diffs(tmp_path):
    from workbench.analysis.engine import check_claims, diff, parse_layer_info

    model, _ = _build(tmp_path, "int8", "--precision", "int8")
    nodes = [n.name for n in model.graph.node]
    report = parse_layer_info(_layer_info(model), model="int8", onnx_nodes=nodes)
    assert report.inserted_layers == 1 and report.mapped_share == 1.0
    assert report.precision_counts() == {"int8": 4}
    assert check_claims(claimed_precisions(model), report).agrees
    wrong = parse_layer_info(_layer_info(model, float_nodes={"node_linear_1"}), model="wrong", onnx_nodes=nodes)
    check = check_claims(claimed_precisions(model), wrong)
    assert [d["node"] for d in check.disagreements] == ["node_linear_1"] and check.agree == 3
    changed = diff(report, wrong)
    assert {c["node"] for c in changed.precision_changes} >= {"node_linear_1"}
    assert all(c["b"] == "fp32" for c in changed.precision_changes)


def test_engine_cli_reads_layer_info_and_fails_the_claim_check(tmp_path):
    model, _ = _build(tmp_path, "int8", "--precision", "int8")
    path = tmp_path / "int8" / "model.onnx"
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_layer_info(model)))
    bad.write_text(json.dumps(_layer_info(model, float_nodes={"node_linear_1"})))
    result = run_cli("engine", path, "--layer-info", good, "--check-claims")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["engine"]["mapped_share"] == 1.0 and out["claims"]["agrees"]
    result = run_cli("engine", path, "--layer-info", bad, "--check-claims", "--against", path,
                     "--against-layer-info", good)
    assert result.returncode == 1 and "node(s) run in another precision" in result.stderr
    assert json.loads(result.stdout)["diff"]["precision_changes"][0]["a"] == "fp32"


def test_names_only_layer_info_says_how_to_get_more():
    from workbench.analysis.engine import parse_layer_info

    report = parse_layer_info({"Layers": ["Conv_9 + Relu_10", "Gemm_12"]}, onnx_nodes=["Conv_9", "Relu_10", "Gemm_12"])
    assert [layer.onnx_nodes for layer in report.layers] == [("Conv_9", "Relu_10"), ("Gemm_12",)]
    assert "DETAILED" in report.notes[0]


def test_app_engine_tab_colours_the_graph_by_the_engines_precision(tmp_path):
    from workbench.app.graphview import PRECISION_COLORS
    from workbench.app.ui.app import Workbench

    app = Workbench("mnist-cnn").wait()
    app._background(app.run_engine)
    app.wait()
    assert "no TensorRT here" in app.status.value or "not installed" in app.status.value  # no TensorRT on CPU
    model = onnx.load(str(app.transformed.path))
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps(_layer_info(model, float_nodes={"node_linear_1"})))
    app.layer_info.value = str(layers)
    app._background(app.run_engine)
    app.wait()
    drawn = {n["id"]: n for n in app.engine_graph.graph["nodes"]}
    assert drawn["node_linear_1"]["color"] == PRECISION_COLORS["fp32"]
    assert drawn["node_conv2d"]["color"] == PRECISION_COLORS["int8"]
    assert not any(n["op"] in ("QuantizeLinear", "DequantizeLinear") for n in drawn.values())
    assert "3 of 4 compute nodes run as claimed" in app.engine_text.value
    assert "node_linear_1: claimed int8, engine runs fp32" in app.engine_text.value


CAPTURED = Path(__file__).parent / "data" / "engine"


def _captured(name):
    """A TensorRT-RTX 1.7.1 builder log's 'Layers:' listing captured on the H100 (benchmarks/tensorrt_device.py),
    with the node names and claims of the ONNX file it was built from."""
    from workbench.analysis.engine import parse_build_log

    graph = json.loads((CAPTURED / f"{name}.graph.json").read_text())
    report = parse_build_log((CAPTURED / f"{name}.layers.log").read_text(), model=name, onnx_nodes=graph["nodes"],
                             runtime=graph["runtime"], device=graph["device"], plan_bytes=graph["plan_bytes"])
    return report, graph["claims"]


@pytest.mark.parametrize("name", sorted(p.name[:-len(".layers.log")] for p in CAPTURED.glob("*.layers.log")))
def test_captured_engines_map_to_onnx_nodes(name):
    from workbench.analysis.engine import check_claims

    report, claims = _captured(name)
    assert report.mapped_share >= 0.95 and len(report.layers) >= (3 if name.startswith("probe-") else 7)
    check = check_claims(claims, report)
    assert check.checked == len(claims) and not check.not_in_engine
    # TensorRT-RTX runs every INT8-claimed ConvTranspose in FP32, whichever way its weight is quantized (the single-op
    # probes), and stacks a constant-state Gemm onto the live one sharing its weight (INT8) where the CRNN's zero-state
    # Gemms fold away: the claim check must report exactly those (docs/tensorrt.md) and agree on everything else.
    expected = {"ppocr-det-diagnosed": {"p2o.ConvTranspose.2"},
                "probe-gemm-const-state": {"gemm_const_state"}}.get(name, set())
    if name.startswith("probe-deconv"):
        expected = {"convtranspose"}
    assert {d["node"] for d in check.disagreements} == expected
    assert all(d["engine"] == ("int8" if d["claimed"] == "folded" else "fp32") for d in check.disagreements)


@pytest.mark.slow
def test_constant_state_gemms_are_claimed_folded_and_cost_nothing(tmp_path):
    """The CRNN's LSTM starts from a zero state (ConstantOfShape through Q/DQ): its first recurrent Gemms have only
    constant inputs, which TensorRT-RTX folds into a pointwise kernel (captured). The claim says so, the MAC count is
    zero, and the captured engine agrees with the claim; the live-state Gemms stay INT8 claims of their own."""
    import onnx

    import workbench as wb
    from workbench.analysis.engine import check_claims
    from workbench.graph.cost import macs_per_sample
    from workbench.graph.placement import claimed_precisions
    from workbench.zoo import corpus

    crnn = corpus.get("captcha-crnn")
    built = onnx.load(wb.apply(wb.load_model(crnn.path()), wb.Recipe("int8"), crnn.dataset("calib"),
                               progress=False).path)
    claims = claimed_precisions(built)
    folded = {n for n, c in claims.items() if c == "folded"}
    assert folded == {"/lstm_fwd/cell/Gemm", "/lstm_bwd/cell/Gemm"}
    assert claims["/lstm_fwd/cell_1/Gemm"] == "int8"
    inferred = onnx.shape_inference.infer_shapes(built).graph
    shapes = {v.name: tuple(d.dim_value or 1 for d in v.type.tensor_type.shape.dim)
              for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    macs = macs_per_sample(built, shapes)
    assert macs["/lstm_fwd/cell/Gemm"] == 0 and macs["/lstm_fwd/cell_1/Gemm"] > 0
    report, _ = _captured("captcha-crnn-diagnosed")
    check = check_claims(claims, report)
    assert not check.disagreements and check.agree == check.checked == len(claims)


def test_captured_precisions_follow_the_recipe():
    mnist = {p: _captured(f"mnist-cnn-{p}")[0].node_layers() for p in ("int8", "fp16", "bf16")}
    assert {mnist["int8"][n].precision for n in ("node_conv2d", "node_linear_1")} == {"int8"}
    assert mnist["fp16"]["node_conv2d"].precision == "fp16" and mnist["bf16"]["node_conv2d"].precision == "bf16"
    eff, _ = _captured("efficientnet-lite0-diagnosed")
    assert eff.node_layers()["node_Conv_881"].precision == "fp32"  # the diagnosis keeps the stem out of INT8


def test_captured_engine_diff_shows_what_the_fallback_changed():
    from workbench.analysis.engine import diff

    changed = diff(_captured("efficientnet-lite0-int8")[0], _captured("efficientnet-lite0-diagnosed")[0])
    moved = {c["node"] for c in changed.precision_changes if c["a"] == "int8" and c["b"] == "fp32"}
    assert {"node_Conv_881", "node_Conv_882", "node_Conv_883"} <= moved
    assert changed.layers[0] != changed.layers[1] and changed.plan_bytes[0] != changed.plan_bytes[1]


def test_cli_reads_a_captured_builder_log_for_a_recipe_built_here(tmp_path):
    """The MNIST INT8 recipe built here has the node names the captured engine's metadata records name."""
    _build(tmp_path, "int8", "--precision", "int8")
    result = run_cli("engine", tmp_path / "int8" / "model.onnx", "--layer-info", CAPTURED / "mnist-cnn-int8.layers.log",
                     "--check-claims")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["engine"]["source"] == "builder log" and out["engine"]["mapped_share"] == 1.0
    assert out["claims"]["agree"] == 4 and out["engine"]["precisions"]["int8"] >= 4
    assert out["cost"]["share_of_macs_in_higher_precision"] == out["claimed_cost"]["share_of_macs_in_higher_precision"]
    assert out["cost"]["macs_per_sample_int8_eligible"] > 0 and out["cost"]["nodes_still_int8"] == 4


def test_engine_cost_counts_what_the_builder_runs():
    """PP-OCR det's diagnosed recipe claims its ConvTranspose.2 in INT8; TensorRT-RTX ran it in FP32 (captured), so
    the engine's cost exceeds the claimed one by exactly that node's MACs (from the real model's shapes)."""
    from workbench.analysis.cost import precision_cost
    from workbench.analysis.engine import check_claims
    from workbench.graph.cost import inferred_shapes, macs_per_sample
    from workbench.model.loading import from_onnx
    from workbench.model.profiles import build_profile
    from workbench.zoo import corpus

    det = corpus.get("ppocr-det")
    handle = from_onnx(det.path())
    profile = build_profile(handle.inputs, list(det.shapes))
    macs = macs_per_sample(handle.proto, inferred_shapes(handle.proto, {p.name: p.opt for p in profile.inputs}))
    report, claims = _captured("ppocr-det-diagnosed")
    assert set(claims) <= set(macs) and all(macs[n] > 0 for n in claims)
    claimed = precision_cost(macs, claims, "Q/DQ layout")
    built = precision_cost(macs, check_claims(claims, report).engine, "TensorRT-RTX engine")
    deconv = macs["p2o.ConvTranspose.2"]
    assert built.macs_per_sample_in_higher_precision - claimed.macs_per_sample_in_higher_precision == deconv
    assert built.nodes_in_higher_precision == claimed.nodes_in_higher_precision + 1
    assert built.compute_vs_all_int8 > claimed.compute_vs_all_int8


def test_diagnosis_cost_takes_the_engine_answer_where_a_tensorrt_builds(monkeypatch, mnist, mnist_calib, mnist_eval):
    """No TensorRT here: the cost is the Q/DQ layout's claim and no engine check. With a builder (here one that
    returns the log TensorRT-RTX wrote on the H100 for this MNIST recipe) the cost and the check come from the
    engine's layers."""
    import workbench as wb
    from workbench.analysis.diagnose import diagnose
    from workbench.core.errors import WorkbenchError
    from workbench.runtime import tensorrt
    from workbench.runtime.tensorrt import BuiltLayers

    data = mnist_eval.take(256)
    plain = diagnose(mnist, wb.Recipe("int8"), mnist_calib, data, progress=False)
    assert plain.cost.source == "Q/DQ layout" and plain.engine_check is None and plain.fallback == []

    class Captured:
        def layer_info(self, path, profile):
            graph = json.loads((CAPTURED / "mnist-cnn-int8.graph.json").read_text())
            return BuiltLayers((CAPTURED / "mnist-cnn-int8.layers.log").read_text(), graph["runtime"],
                               graph["device"], graph["plan_bytes"])

    monkeypatch.setattr(tensorrt, "available_builder", lambda runtime="auto": Captured())
    d = diagnose(mnist, wb.Recipe("int8"), mnist_calib, data, progress=False)
    assert d.cost.source.endswith("engine") and "TensorRT-RTX" in d.cost.source
    assert d.engine_check.agrees and d.engine_check.checked == 4
    assert d.cost.share_of_macs_in_higher_precision == plain.cost.share_of_macs_in_higher_precision == 0.0
    assert d.to_dict()["engine_check"]["agree"] == 4 and d.to_dict()["cost"]["source"] == d.cost.source

    class Failing:
        def layer_info(self, path, profile):
            raise WorkbenchError("TensorRT-RTX: building model.onnx failed: IConditionalOutputLayer ranks")

    monkeypatch.setattr(tensorrt, "available_builder", lambda runtime="auto": Failing())
    d = diagnose(mnist, wb.Recipe("int8"), mnist_calib, data, progress=False)  # minutes of work are not lost
    assert d.cost.source == "Q/DQ layout" and d.engine_check is None
    assert any("could not build" in w and "IConditionalOutputLayer" in w for w in d.warnings)
