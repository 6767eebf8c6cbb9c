"""The verdict a user can trust: per sample, per output and channel group, batch coupling, empty references, tasks.

Each model here is small and built to need one rule: a quiet input that INT8 wipes out among many good ones, an
output normalised over the whole batch, a reference that is empty for some inputs, a detection head whose pixel
boxes hide collapsed class scores. Numbers are checked against independent NumPy computations.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.analysis.diagnose import Target, diagnose
from workbench.analysis.evaluate import Evaluator, batch_coupling, run, verdict
from workbench.analysis import tasks
from workbench.core.metrics import OutputScorer, channel_groups
from workbench.model.data import as_dataset
from workbench.model.loading import from_onnx
from workbench.precision.recipe import Recipe
from workbench.precision.transform import apply
from workbench.runtime import get_backend


def _save(tmp_path, name, nodes, inputs, outputs, initializers, metadata=None):
    graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k)
                                                              for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return from_onnx(path)


def _matmul_model(tmp_path, name="dense", extra_nodes=(), output="y"):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (16, 16)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense")] + list(extra_nodes)
    if not extra_nodes:
        nodes[0].output[0] = output
    return _save(tmp_path, name, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                 [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", 16])], {"w": w})


def _per_sample_cosine(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r, c = r.reshape(len(r), -1).astype(np.float64), c.reshape(len(c), -1).astype(np.float64)
    return (r * c).sum(1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1), 1e-300)


def test_one_collapsed_input_among_many_good_ones_fails_the_target(tmp_path):
    """A quiet input (2 % of the usual scale) rounds to one or two INT8 steps: its output is destroyed while the pooled
    cosine, dominated by the loud inputs, and even the per-sample mean read healthy. The floor on the worst sample
    fails the recipe and names the input; keeping the layer in FP32 fixes it."""
    model = _matmul_model(tmp_path)
    rng = np.random.default_rng(1)
    calib = {"x": rng.normal(0, 1, (64, 16)).astype(np.float32)}
    calib["x"][0] *= 8  # one loud calibration input sets a wide range, as rare loud inputs do
    x = rng.normal(0, 1, (200, 16)).astype(np.float32)
    x[137] *= 0.02
    data = {"x": x}
    d = diagnose(model, Recipe("int8"), calib, data, Target(cosine=0.99, confidence=None), remedies=False,
                 progress=False, deployment_check=False, task="none")
    before = d.before
    reference = run(get_backend().build(model.path), as_dataset(data, model.inputs))["y"]
    candidate = run(get_backend().build(apply(model, Recipe("int8"), as_dataset(calib, model.inputs),
                                              progress=False).path), as_dataset(data, model.inputs))["y"]
    independent = _per_sample_cosine(reference, candidate)
    assert independent.argmin() == 137 and independent.min() < 0.9
    assert before.pooled_cosine > 0.999 and before.cosine > 0.99, "the pooled and mean figures hide it"
    assert before.cosine_worst == pytest.approx(independent.min(), abs=1e-6)
    assert before.worst_samples[0]["index"] == 137
    assert not d.remedies[0].met, "the recipe as given does not pass"
    assert any("worst sample cosine" in m and "sample 137" in m for m in Target(cosine=0.99).misses(before, None))
    assert d.met and d.fallback == ["dense"] and d.after.cosine_worst >= 0.9


def _coupled_model(tmp_path):
    """y = h / max|h| over the whole batch (a normalisation across samples), h = x·W."""
    nodes = [helper.make_node("Abs", ["h"], ["a"], name="abs"),
             helper.make_node("ReduceMax", ["a"], ["m"], name="batch_max", keepdims=1),
             helper.make_node("Div", ["h", "m"], ["y"], name="normalise")]
    return _matmul_model(tmp_path, "coupled", nodes)


def test_a_batch_coupled_model_is_evaluated_one_sample_at_a_time(tmp_path):
    coupled, plain = _coupled_model(tmp_path), _matmul_model(tmp_path)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (40, 16)).astype(np.float32) * rng.uniform(0.2, 3, (40, 1)).astype(np.float32)
    backend = get_backend()
    found = batch_coupling(backend, coupled, as_dataset({"x": x}, coupled.inputs))
    assert found.coupled and found.max_relative_diff > 0.1 and "one sample at a time" in found.describe()
    assert not batch_coupling(backend, plain, as_dataset({"x": x}, plain.inputs)).coupled
    evaluator = Evaluator(coupled, None, as_dataset({"x": x}, coupled.inputs), backend, batch_size=32, task="none")
    assert evaluator.batch_size == 1
    h = x @ numpy_helper.to_array(coupled.proto.graph.initializer[0])
    alone = h / np.abs(h).max(axis=1, keepdims=True)  # each sample normalised on its own, as deployed
    np.testing.assert_allclose(evaluator.reference["y"], alone, rtol=1e-5, atol=1e-6)
    d = diagnose(coupled, Recipe("int8"), {"x": x}, {"x": x}, remedies=False, progress=False,
                 deployment_check=False, task="none")
    assert d.evaluation["coupled"] and d.to_dict()["evaluation"]["coupled"]
    assert d.explanation.startswith("Evaluated one sample at a time")


def test_an_empty_reference_is_scored_by_its_error_not_its_cosine(tmp_path):
    """Inputs near zero give an FP32 output of ~1e-7, which INT8 rounds to exactly 0: a per-sample cosine reads 0
    (nothing in common with 0), though the error is nothing at the dataset's scale."""
    model = _matmul_model(tmp_path)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (50, 16)).astype(np.float32)
    x[[4, 9, 30]] = rng.normal(0, 1e-7, (3, 16))
    data = as_dataset({"x": x}, model.inputs)
    reference = run(get_backend().build(model.path), data)
    candidate = run(get_backend().build(apply(model, Recipe("int8"), data, progress=False).path), data)
    naive = _per_sample_cosine(reference["y"], candidate["y"])
    assert naive[[4, 9, 30]].max() < 0.5, "a plain per-sample cosine calls these collapsed"
    scores = verdict(candidate, reference, len(data))
    stats = scores.outputs[0]
    assert stats.empty_samples == 3 and scores.cosine_worst > 0.99
    assert set(np.flatnonzero(stats.per_sample_cosine > 0.99999)) >= {4, 9, 30}


def _head_model(tmp_path, metadata=None):
    """A YOLO-style head [N, 4 + 2, 64]: pixel boxes (centre ~160, sizes ~40) from the loud input channels,
    sparse class scores from the quiet ones; one per-tensor INT8 scale for the input wipes the quiet channels."""
    rng = np.random.default_rng(4)
    wb = np.zeros((4, 8), np.float32)
    wb[:, :4] = rng.normal(0, 0.3, (4, 4))
    ws = np.zeros((2, 8), np.float32)
    ws[:, 4:] = rng.normal(0, 30, (2, 4))
    nodes = [helper.make_node("MatMul", ["wb", "x"], ["b0"], name="box_conv"),
             helper.make_node("Add", ["b0", "box_bias"], ["boxes"], name="box_bias_add"),
             helper.make_node("MatMul", ["ws", "x"], ["s0"], name="score_conv"),
             helper.make_node("Add", ["s0", "score_bias"], ["s1"], name="score_bias_add"),
             helper.make_node("Sigmoid", ["s1"], ["scores"], name="score_sigmoid"),
             helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1, name="head")]
    init = {"wb": wb, "ws": ws, "box_bias": np.array([160, 160, 40, 40], np.float32).reshape(1, 4, 1),
            "score_bias": np.full((1, 2, 1), -4.0, np.float32)}
    model = _save(tmp_path, "head", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 64])],
                  [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["n", 6, 64])], init, metadata)
    return model, rng


def _head_data(rng, n):
    x = np.empty((n, 8, 64), np.float32)
    x[:, :4] = rng.normal(0, 50, (n, 4, 64))
    x[:, 4:] = rng.normal(0, 0.1, (n, 4, 64))
    return {"x": x}


def test_a_mixed_scale_detection_head_is_scored_per_channel_group(tmp_path):
    model, rng = _head_model(tmp_path)
    calib, data = _head_data(rng, 32), _head_data(rng, 32)
    transformed = apply(model, Recipe("int8"), as_dataset(calib, model.inputs), progress=False)
    ds = as_dataset(data, model.inputs)
    reference = run(get_backend().build(model.path), ds)
    candidate = run(get_backend().build(transformed.path), ds)
    assert [(g.start, g.stop) for g in channel_groups(reference["output0"], 32)] == [(0, 4), (4, 6)]
    task = tasks.make_task("detection", model)
    scores = verdict(candidate, reference, 32, task=task)
    by_name = {s.name: s for s in scores.outputs}
    scores_only = _per_sample_cosine(reference["output0"][:, 4:], candidate["output0"][:, 4:])
    assert scores.pooled_cosine > 0.99, "the pixel boxes dominate the pooled figure"
    assert scores.deciding == "output0[4:6]" and by_name["output0[4:6]"].cosine == pytest.approx(scores_only.mean())
    assert scores.cosine < 0.9 and scores.metrics["box_recall"] < 0.5 < scores.metrics["fp32_boxes"]
    lost = scores.task_worst[0]["index"]
    said = next(r for r in scores.readouts if r["index"] == lost)
    fp32_boxes = len(tasks.decode_yolo(reference["output0"][lost])[0])
    assert said["fp32"].startswith(f"{fp32_boxes} box") and len(said["boxes"]["fp32"]) == fp32_boxes
    from workbench.app.worst import worst_inputs_html

    page = worst_inputs_html(scores, ds)
    assert f"<td>{lost}</td>" in page and "FP32: " + said["fp32"] in page and "this recipe: " in page


def test_ultralytics_metadata_names_the_task_and_the_groups(tmp_path):
    model, _ = _head_model(tmp_path, {"task": "detect", "names": "{0: 'a', 1: 'b'}", "imgsz": "[320, 320]"})
    task = tasks.detect_task(model)
    assert task.kind == "detection" and "metadata" in task.reason
    assert task.opts == {"layout": "v8", "classes": 2, "names": ("a", "b")}
    groups = tasks.output_groups(model, task)["output0"]
    assert [(g.label, g.start, g.stop) for g in groups] == [("boxes", 0, 4), ("scores", 4, 6)]


def test_detection_decode_nms_and_matching_against_an_independent_count():
    head = np.zeros((6, 5), np.float32)  # v8 layout: cx, cy, w, h, class 0, class 1 by anchor
    head[:4] = np.array([[50, 52, 200, 50, 300], [50, 50, 200, 50, 300], [20, 20, 30, 20, 10],
                         [20, 20, 30, 20, 10]], np.float32)
    head[4] = [0.9, 0.8, 0.1, 0.0, 0.0]  # anchors 0 and 1 overlap (IoU ~0.8): NMS keeps anchor 0
    head[5] = [0.0, 0.0, 0.7, 0.6, 0.1]  # anchor 3 overlaps anchor 0 of the other class: kept (class-aware)
    boxes, scores, classes = tasks.decode_yolo(head)
    assert sorted(scores.round(2).tolist()) == [0.6, 0.7, 0.9] and sorted(classes.tolist()) == [0, 1, 1]
    lost = head.copy()
    lost[5, 2] = 0.0  # one detection gone
    result = tasks.detection(lost[None], head[None])
    assert result.metrics["box_recall"] == pytest.approx(2 / 3) and result.metrics["box_precision"] == 1.0
    task = tasks.Task("detection", "y", "box_f1", 0.95, "test", (("layout", "v8"), ("classes", 2),
                                                                 ("names", ("cat", "dog"))))
    said = task.readout({"y": lost[None]}, {"y": head[None]}, 0)
    assert said["fp32"] == "3 boxes: cat 0.90, dog 0.70, dog 0.60"
    assert said["candidate"] == "2 boxes: cat 0.90, dog 0.60; 2 of FP32's matched"
    assert said["boxes"]["fp32"][0][:4] == pytest.approx([40, 40, 60, 60]) and len(said["boxes"]["candidate"]) == 2


def test_task_scorers_against_hand_counts():
    probs = np.zeros((2, 6, 4), np.float32)  # CTC: blank 0; sample 0 reads [1, 2], sample 1 reads [3, 3]
    probs[0, np.arange(6), [1, 1, 0, 2, 2, 0]] = 1
    probs[1, np.arange(6), [3, 0, 3, 0, 0, 0]] = 1
    other = probs.copy()
    other[1, 2] = 0
    other[1, 2, 0] = 1  # sample 1 now reads [3]: one deletion out of two characters
    result = tasks.ctc(other, probs)
    assert result.metrics["exact_match"] == 0.5 and result.metrics["char_accuracy"] == pytest.approx(3 / 4)
    logits = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 5]], np.float32)
    flipped = logits.copy()
    flipped[1] = [0, 1, 2]
    result = tasks.classification(flipped, logits)
    assert result.metrics["top1_agreement"] == pytest.approx(2 / 3)
    near_tie = np.array([[1.0, 0.98, 0], [0, 5, 1]], np.float32)  # FP32 barely prefers class 0 in the first
    result = tasks.classification(near_tie[:, [1, 0, 2]], near_tie)
    assert result.metrics["top1_agreement"] == 0.0 and result.metrics["top1_agreement_confident"] == 0.0
    result = tasks.classification(np.array([[0.98, 1.0, 0], [0, 5, 1]], np.float32), near_tie)
    assert result.metrics["top1_agreement"] == 0.5 and result.metrics["top1_agreement_confident"] == 1.0
    mask = np.zeros((1, 1, 4, 4), np.float32)
    mask[0, 0, :2] = 0.9
    shifted = np.zeros_like(mask)
    shifted[0, 0, 1:3] = 0.9
    assert tasks.segmentation(shifted, mask, threshold=0.5).metrics["mask_iou"] == pytest.approx(4 / 12)


def test_a_user_metric_from_a_file_drives_diagnose_from_the_cli(tmp_path, capsys):
    from workbench.app.cli import main

    model = _matmul_model(tmp_path)
    metric = tmp_path / "my_metric.py"
    metric.write_text("import numpy as np\n"
                      "def sign_agreement(outputs, reference, data):\n"
                      "    return float((np.sign(outputs['y']) == np.sign(reference['y'])).mean())\n")
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "calib.npz", x=rng.normal(0, 1, (64, 16)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=rng.normal(0, 1, (64, 16)).astype(np.float32))
    code = main(["diagnose", str(model.path), "--calib-data", str(tmp_path / "calib.npz"), "--eval-data",
                 str(tmp_path / "eval.npz"), "--task", f"{metric}:sign_agreement", "--max-drop", "0.001",
                 "--no-deployment-check"])
    out = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert out["target"]["metric"] == "sign_agreement" and "sign_agreement" in out["after"]
    assert out["met"] == (out["after"]["sign_agreement"] >= 1.0 - 0.001 - 1e-12 and not out["misses"])
    assert main(["compare", str(model.path), "--task", "nope.py:f"]) == 2


def test_the_pooled_scorer_and_the_per_sample_scorer_agree_on_pooled_numbers():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(30, 5, 7))
    x = ref + rng.normal(0, 0.05, ref.shape)
    scorer = OutputScorer(["o"])
    for start in range(0, 30, 8):  # batch by batch, as compare feeds it
        scorer.update({"o": ref[start:start + 8]}, {"o": x[start:start + 8]}, len(ref[start:start + 8]))
    stats = scorer.result()[0]
    r, c = ref.ravel(), x.ravel()
    assert stats.pooled_cosine == pytest.approx(r @ c / np.linalg.norm(r) / np.linalg.norm(c), abs=1e-9)
    assert stats.cosine == pytest.approx(_per_sample_cosine(ref, x).mean(), abs=1e-9)


def test_separate_boxes_and_scores_outputs_are_decoded_as_detections(tmp_path):
    """PicoDet/SSD exports without NMS: corner boxes [N, anchors, 4] and scores [N, classes, anchors]."""
    rng = np.random.default_rng(7)
    anchors = 50
    nodes = [helper.make_node("Identity", ["b"], ["boxes"], name="boxes_out"),
             helper.make_node("Sigmoid", ["s"], ["scores"], name="scores_out")]
    model = _save(tmp_path, "picodet", nodes,
                  [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", anchors, 4]),
                   helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 3, anchors])],
                  [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["n", anchors, 4]),
                   helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3, anchors])], {})
    task = tasks.detect_task(model)
    assert task.kind == "detection" and task.output == "boxes" and task.opts["scores"] == "scores"
    corners = rng.uniform(0, 200, (2, anchors, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(10, 40, (2, anchors, 2))], -1)
    scores = np.full((2, 3, anchors), 0.01)
    scores[0, 1, 3], scores[0, 2, 9], scores[1, 0, 20] = 0.9, 0.8, 0.7  # three detections FP32 finds
    reference = {"boxes": boxes, "scores": scores}
    lost = {"boxes": boxes, "scores": scores.copy()}
    lost["scores"][0, 2, 9] = 0.1  # the candidate loses one of them
    metrics = task.evaluate(lost, reference).metrics
    assert metrics["fp32_boxes"] == 3 and metrics["box_recall"] == pytest.approx(2 / 3)
    said = task.readout(lost, reference, 0)
    assert said["boxes"]["fp32"][0][:4] == pytest.approx(boxes[0, 3].tolist()), "corner boxes drawn as given"
