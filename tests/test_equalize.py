"""Activation equalization (cross-layer equalization with a per-group strength from calibration statistics): the
FP32 function is unchanged on every model it touches, and it fixes the collapse it is built for."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.analysis.diagnose import diagnose
from workbench.analysis.evaluate import output_scores, run
from workbench.app import cli
from workbench.graph.lint import lint
from workbench.precision.equalize import equalizable
from workbench.precision.transform import cleaned, equalized
from workbench.runtime import get_backend
from workbench.zoo import corpus
from workbench.zoo import planted as P


def _fp32_unchanged(model, data, calib, rtol: float = 1e-4, transform=equalized) -> int:
    """Equalize (or `transform`: smoothing), then check every output against the FP32 model's: max error within
    rtol of the output's range. Returns how many groups (tensors) were rescaled."""
    base = cleaned(model)[0]
    handle, groups = transform(base, calib)
    backend = get_backend()
    before, after = run(backend.build(model.path), data), run(backend.build(handle.path), data)
    for name, ref in before.items():
        if np.issubdtype(ref.dtype, np.floating):
            assert np.abs(after[name] - ref).max() <= rtol * max(np.abs(ref).max(), 1e-6), name
        else:
            assert np.array_equal(after[name], ref), name
    added = ("/equalized_", "/smooth")  # new bound nodes are named after their Clip, Muls after their tensor
    assert sorted(n.name for n in handle.proto.graph.node if not any(a in n.name for a in added)) == \
        sorted(n.name for n in base.proto.graph.node), "node names are kept"
    return len(groups)


def test_uneven_channels_are_equalized_exactly_and_int8_recovers():
    model, calib, data = P.uneven_channels(), P.digits("calib"), P.digits("eval")
    assert _fp32_unchanged(model, data, calib) == 2
    backend = get_backend()
    reference = run(backend.build(model.path), data)
    plain = wb.apply(model, wb.Recipe("int8"), calib, progress=False)
    fixed = wb.apply(model, wb.Recipe("int8", equalize=True), calib, progress=False)
    assert output_scores(run(backend.build(plain.path), data), reference)["cosine"] < 0.5
    assert output_scores(run(backend.build(fixed.path), data), reference)["cosine"] >= 0.999
    group = next(g for g in fixed.equalized if g["tensors"] == ["b0.out"])
    assert group["producers"] == ["b0.conv"] and group["consumers"] == ["dw.conv"] and group["spread_after"] < 1.5
    ops = {n.name: n.op_type for n in onnx.load(str(fixed.path)).graph.node}
    assert ops["b0.relu6"] == "Relu" and ops["b0.relu6/equalized_min"] == "Min"  # ReLU6 with per-channel bounds
    assert not [f for f in lint(onnx.load(str(fixed.path))).findings if f.severity == "error"]
    assert fixed.manifest()["equalized"] == fixed.equalized


def test_diagnose_equalizes_before_any_fallback():
    model = P.uneven_channels()
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), P.digits("eval"), progress=False)
    chosen = next(r for r in d.remedies if r.met)
    assert chosen.remedy.startswith("equalize activation channels"), "no range estimator fixes uneven channels"
    assert d.fallback == [] and d.recipe.equalize and "--equalize" in d.recipe.to_cli_args()
    assert d.evaluations <= d.budget + d.remedies_tried


def test_cli_equalize_flag_builds_the_recipe(tmp_path, capsys):
    assert cli.main(["build", "mnist-cnn", "--equalize", "-o", str(tmp_path)]) == 0
    import json

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["recipe"]["equalize"] is True and len(manifest["equalized"]) >= 1


def test_nothing_to_equalize_leaves_the_graph_alone(mnist):
    model = P.masked_attention()  # MatMuls only: no Conv pairs
    assert equalizable(model.proto) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet-v2", "efficientnet-lite0", "ppocr-cls", "ppocr-det"])
def test_fp32_outputs_unchanged_on_real_models(name):
    """FP32 outputs unchanged, and at least every depthwise Conv that reads a Conv through ReLU/ReLU6 (the chain
    equalization exists for, counted here from the graph alone) is rescaled: 17 on MobileNetV2, 16 on
    EfficientNet-Lite0; the PP-OCR models (weights as Constant nodes that clean-up lifts; hard-swish, not
    scale-equivariant, after most Convs) have few such chains."""
    model, data, calib = real_model(name)
    assert _fp32_unchanged(model, data, calib) >= _depthwise_after_conv(cleaned(model)[0].proto) >= 1


def _depthwise_after_conv(proto: onnx.ModelProto) -> int:
    producer = {o: n for n in proto.graph.node for o in n.output}
    count = 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or not any(a.name == "group" and a.i > 1 for a in node.attribute):
            continue
        source = producer.get(node.input[0])
        while source is not None and source.op_type in ("Relu", "Clip"):
            source = producer.get(source.input[0])
        count += source is not None and source.op_type == "Conv"
    return count


def real_model(name: str) -> tuple:
    """(model, evaluation samples, calibration samples): a few of each, enough to check a rescaling is exact."""
    if name in ("mobilenet-v2", "minilm"):
        model = wb.load_model(name)
        return model, model.zoo.evaluation_data().take(16), model.zoo.calibration_data().take(32)
    m = corpus.get(name)
    return wb.load_model(str(m.path())), m.dataset("heldout").take(8), m.dataset("calib").take(16)
