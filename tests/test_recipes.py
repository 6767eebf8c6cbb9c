"""Precision recipes on the bundled mnist-cnn and its real held-out MNIST digits."""
import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.analysis import evaluate
from workbench.precision import calibration
from workbench.precision.calibration import load_ranges


def accuracy(cpu, path, data):
    return evaluate.top1_accuracy(evaluate.run(cpu.build(path), data), data)


@pytest.fixture(scope="module")
def fp32_accuracy(cpu, mnist, mnist_eval):
    return accuracy(cpu, mnist.path, mnist_eval)


def test_fp32_accuracy_on_real_digits(fp32_accuracy, mnist_eval):
    assert len(mnist_eval) == 1000
    assert fp32_accuracy >= 0.98


def test_int8_minmax_within_one_point(cpu, mnist, mnist_calib, mnist_eval, fp32_accuracy):
    t = wb.apply(mnist, wb.Recipe("int8", "minmax"), mnist_calib, progress=False)
    ops = [n.op_type for n in onnx.load(str(t.path)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert abs(accuracy(cpu, t.path, mnist_eval) - fp32_accuracy) <= 0.01


def test_int8_qdq_is_tensorrt_compatible(mnist, mnist_calib):
    t = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    m = onnx.load(str(t.path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
            if node.op_type == "DequantizeLinear" and node.input[0] in inits:
                assert inits[node.input[0]].dtype == np.int8, f"{node.name}: quantized bias or unsigned weight"
    per_channel = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "features.0.weight_quantized"]
    assert inits[per_channel[0].input[1]].shape == (32,), "conv weights are quantized per output channel"
    assert "features.0.bias" in inits and inits["features.0.bias"].dtype == np.float32


def test_fp16_within_point_two(cpu, mnist, mnist_eval, fp32_accuracy):
    t = wb.apply(mnist, wb.Recipe("fp16"), progress=False)
    m = onnx.load(str(t.path))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT, "I/O types are kept"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    assert abs(accuracy(cpu, t.path, mnist_eval) - fp32_accuracy) <= 0.002


def test_seven_bit_weights_use_half_the_int8_range(mnist, mnist_calib, cpu, mnist_eval, fp32_accuracy):
    """weight_bits=7 (ONNX Runtime's reduce_range) writes weights in [-64, 64], still int8 with zero point 0, and
    keeps the accuracy; the default uses the full [-127, 127]."""
    def weight_amax(recipe):
        t = wb.apply(mnist, recipe, mnist_calib, progress=False)
        m = onnx.load(str(t.path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
        weights = [inits[n.input[0]] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        assert weights and all(w.dtype == np.int8 for w in weights)
        return max(int(np.abs(w.astype(np.int32)).max()) for w in weights), t

    full, _ = weight_amax(wb.Recipe("int8"))
    seven, t = weight_amax(wb.Recipe("int8", weight_bits=7))
    assert full == 127 and seven == 64
    assert accuracy(cpu, t.path, mnist_eval) >= fp32_accuracy - 0.01
    with pytest.raises(wb.WorkbenchError, match="weight bits"):
        wb.Recipe("int8", weight_bits=4)


def test_excluded_nodes_have_no_qdq_around_them(mnist, mnist_calib):
    excluded = ["node_conv2d_1", "node_linear_1"]
    t = wb.apply(mnist, wb.Recipe("int8", exclude=tuple(excluded)), mnist_calib, progress=False)
    g = onnx.load(str(t.path)).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in (n for n in g.node if n.name in excluded):
        for i in node.input:
            assert i not in producer or producer[i].op_type != "DequantizeLinear", f"{node.name} reads DQ {i}"
        for o in node.output:
            assert all(c.op_type != "QuantizeLinear" for c in consumers.get(o, [])), f"{node.name} output is quantized"
    assert set(excluded).isdisjoint(t.quantized_nodes)
    assert "node_conv2d" in t.quantized_nodes


def test_exclusion_by_op_type_and_regex(mnist, mnist_calib):
    by_type = wb.apply(mnist, wb.Recipe("int8", exclude=("Gemm",)), mnist_calib, progress=False)
    assert by_type.excluded_nodes == ["node_linear", "node_linear_1"]
    by_regex = wb.apply(mnist, wb.Recipe("int8", exclude=("re:node_conv2d.*",)), mnist_calib, progress=False)
    assert by_regex.excluded_nodes == ["node_conv2d", "node_conv2d_1"]


def test_entropy_is_a_real_entropy_calibration(mnist, mnist_calib):
    minmax = load_ranges(calibration.calibrate(mnist, mnist_calib, "minmax", progress=False).path)
    entropy = load_ranges(calibration.calibrate(mnist, mnist_calib, "entropy", progress=False).path)
    percentile = load_ranges(calibration.calibrate(mnist, mnist_calib, "percentile", 99.0, progress=False).path)
    amax = lambda r, t: max(abs(r[t][0]), abs(r[t][1]))  # noqa: E731
    differing = [t for t in minmax if not np.isclose(amax(minmax, t), amax(entropy, t), rtol=1e-3)]
    assert len(differing) >= len(minmax) // 2, differing
    assert amax(entropy, "conv2d") < amax(minmax, "conv2d"), "entropy clips the long tail"
    assert amax(percentile, "conv2d") < amax(minmax, "conv2d")


def test_calibration_cache_hit_does_not_recompute(mnist, mnist_calib, monkeypatch):
    from workbench.precision.quantize import placement_options

    op_types = placement_options("tensorrt")[0]
    first = calibration.calibrate(mnist, mnist_calib.take(64), "percentile", 99.9, progress=False, op_types=op_types)
    assert not first.from_cache

    def boom(*a, **k):
        raise AssertionError("calibrator recreated on a cache hit")

    import onnxruntime.quantization.calibrate as ort_calibrate

    monkeypatch.setattr(ort_calibrate, "create_calibrator", boom)
    second = calibration.calibrate(mnist, mnist_calib.take(64), "percentile", 99.9, progress=False, op_types=op_types)
    assert second.from_cache and second.path == first.path
    requantized = wb.apply(mnist, wb.Recipe("int8", "percentile", 99.9, exclude=("node_linear",)),
                           mnist_calib.take(64), progress=False)
    assert requantized.calibration.from_cache


def test_user_model_file_is_never_written(tmp_path, mnist, mnist_calib):
    before = mnist.path.read_bytes()
    wb.apply(mnist, wb.Recipe("int8", exclude=("node_relu",)), mnist_calib, progress=False)
    wb.apply(mnist, wb.Recipe("fp16"), progress=False)
    assert mnist.path.read_bytes() == before


def test_placement_presets(mnist, mnist_calib):
    def quantized_tensors(recipe):
        g = onnx.load(str(wb.apply(mnist, recipe, mnist_calib, progress=False).path)).graph
        return {n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}

    tensorrt = quantized_tensors(wb.Recipe("int8"))
    everything = quantized_tensors(wb.Recipe("int8", placement="all"))
    assert tensorrt == {"input", "max_pool2d", "view", "relu_2"}, "only inputs of Conv/Gemm are quantized"
    assert {"conv2d", "relu", "linear"} <= everything and tensorrt < everything | {"view"}
    with pytest.raises(wb.WorkbenchError, match="placement"):
        wb.Recipe("int8", placement="everywhere")


EVERY_FIELD = wb.Recipe("int8", "percentile", 99.9, ("conv1", "re:fc.*"), per_channel=False, placement="all",
                        overrides=("t=minmax",), cleanup=False, fallback_precision="fp16", weight_bits=7,
                        equalize=True, smooth=True, bias_correction=True)


def test_the_round_trip_recipe_sets_every_field():
    """A new Recipe field must join EVERY_FIELD, so the round trip below covers it."""
    default = wb.Recipe()
    assert [f for f in wb.Recipe.__dataclass_fields__ if getattr(EVERY_FIELD, f) == getattr(default, f)] == []


@pytest.mark.parametrize("recipe", [
    EVERY_FIELD,
    wb.Recipe("int8"),
    wb.Recipe("fp16", exclude=("Gemm",)),
    wb.Recipe("bf16", cleanup=False),
])
def test_recipe_round_trips_through_cli_python_json_and_the_app(recipe):
    """One source of truth (each field's spec): the CLI flags, the Python snippet, the JSON form and the app's
    widgets each give the same recipe back."""
    import json

    from workbench.app.cli import _recipe, build_parser
    from workbench.app.ui.form import RecipeForm

    args = build_parser().parse_args(["build", "mnist-cnn", "-o", "out", *recipe.to_cli_args()])
    assert _recipe(args) == recipe
    assert eval(recipe.to_python(), {"Recipe": wb.Recipe}) == recipe
    assert wb.Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    form = RecipeForm()
    form.widgets["exclude"].options = [(f"{n} (node)", n) for n in ("first", *recipe.exclude, "last")]
    form.show(recipe)
    assert form.recipe() == recipe


def test_fields_that_do_not_apply_are_dropped_everywhere():
    """An int8-only flag on an fp16 recipe means nothing: the CLI and the app give the recipe without it, so the
    cache key, the label and the JSON do not pretend otherwise."""
    from workbench.app.cli import _recipe, build_parser
    from workbench.app.ui.form import RecipeForm

    args = build_parser().parse_args(["build", "mnist-cnn", "-o", "out", "--precision", "fp16", "--equalize",
                                      "--calibration", "entropy", "--exclude", "Gemm"])
    assert _recipe(args) == wb.Recipe("fp16", exclude=("Gemm",))
    form = RecipeForm(precision="fp32", equalize=True, cleanup=False)
    assert form.recipe() == wb.Recipe("fp32") and wb.Recipe("fp32").to_dict() == {"precision": "fp32"}
    with pytest.raises(wb.WorkbenchError, match="unknown recipe field"):
        wb.Recipe.from_dict({"precision": "int8", "calibrate": "entropy"})
