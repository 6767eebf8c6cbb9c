"""Conversions on the graph patterns real exporters write, each on a small model built to need it: the converted
model must load in plain ONNX Runtime, run and match FP32 (FP16/INT8), or pass ONNX's full checker (BF16, no CPU
kernels), and the CLI must say nothing of ONNX Runtime's own on stderr."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def init(name: str, shape, scale: float = 0.1) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def save(path, nodes, inputs, outputs, inits, opset: int = 14) -> str:
    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return str(path)


def cli(*args) -> tuple[int, dict | None, str]:
    r = run_cli(*args)
    assert "Traceback" not in r.stderr and r.returncode != 3, r.stderr[-2000:]
    assert ":onnxruntime:" not in r.stderr, "a raw ONNX Runtime log line reached stderr:\n" + r.stderr[-2000:]
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None, r.stderr


def run(path, feed: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def assert_converts(tmp_path, model: str, feed: dict, precisions=("fp16", "bf16"), extra=()) -> dict:
    """Each precision builds with exit 0; FP16/INT8 outputs are finite and close to FP32 on `feed`."""
    reference = run(model, feed)
    results = {}
    for precision in precisions:
        out = tmp_path / precision
        code, result, err = cli("build", model, "--precision", precision, "-o", out, *extra)
        assert code == 0, err
        converted = out / "model.onnx"
        if precision == "bf16":
            onnx.checker.check_model(onnx.load(str(converted)), full_check=True)
        else:
            for ref, got in zip(reference, run(converted, feed)):
                assert got.dtype == ref.dtype and np.isfinite(got).all()
                cosine = float(np.dot(ref.ravel(), got.ravel()) / np.linalg.norm(ref) / np.linalg.norm(got))
                assert cosine > 0.999, (precision, cosine)
        results[precision] = result
    return results


def test_a_graph_output_read_inside_the_graph(tmp_path):
    """tf2onnx writes a graph output that nodes inside the graph read too (ExpandDims of an output): FP16 typed that
    output FP16 for its readers while declaring it FP32 ("Type (tensor(float16)) of output arg ... does not match")."""
    model = save(tmp_path / "output_read_inside.onnx",
                 [helper.make_node("Mul", ["x", "s"], ["y"], name="mul"),
                  helper.make_node("Unsqueeze", ["y", "axes"], ["z"], name="ExpandDims"),
                  helper.make_node("Relu", ["z"], ["w"], name="relu")],
                 [value("x", [1, 8])], [value("y", [1, 8]), value("w", [1, 1, 8])],
                 [init("s", [8], 1.0), numpy_helper.from_array(np.array([1], np.int64), "axes")])
    assert_converts(tmp_path, model, {"x": RNG.standard_normal((1, 8)).astype(np.float32)})
    types = {o.name: o.type.tensor_type.elem_type for o in onnx.load(str(tmp_path / "fp16" / "model.onnx")).graph.output}
    assert types == {"y": TensorProto.FLOAT, "w": TensorProto.FLOAT}


def test_an_initializer_shared_with_an_op_the_converter_keeps_in_fp32(tmp_path):
    """onnxconverter-common keeps Min/Max/Resize/TopK/... in FP32 on its own: an initializer they share with an FP16
    node stayed FP32 for both ("Type parameter (T) of Optype (Add) bound to different types")."""
    model = save(tmp_path / "shared_with_blocked.onnx",
                 [helper.make_node("Max", ["x", "lo"], ["a"], name="max"),
                  helper.make_node("Min", ["a", "hi"], ["b"], name="min"),
                  helper.make_node("Conv", ["b", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Add", ["c", "lo"], ["d"], name="add")],
                 [value("x", [1, 4, 8, 8])], [value("d", [1, 4, 8, 8])],
                 [init("W", [4, 4, 3, 3]), numpy_helper.from_array(np.array(0.1, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6.0, np.float32), "hi")])
    assert_converts(tmp_path, model, {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)})
    converted = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    add = next(n for n in converted.graph.node if n.name == "add")
    assert any(n.op_type == "Cast" and n.output[0] in add.input for n in converted.graph.node), "Add reads FP16"


def test_a_shared_bias_whose_copy_name_is_taken(tmp_path):
    """ONNX Runtime's quantizer copies a bias shared by several Convs as <bias>0, <bias>1, ... without looking at
    node outputs: here Convs write tensors of those names (tf2onnx audio CNN: 18 Convs on one bias), which made the
    INT8 model invalid. The INT8 model builds, matches FP32, lints clean, and every Conv keeps its name."""
    nodes, previous = [], "x"
    for i in range(3):
        nodes += [helper.make_node("Conv", [previous, "W", "bias"], [f"bias{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"bias{i}"], [f"r{i}"], name=f"relu{i}")]
        previous = f"r{i}"
    model = save(tmp_path / "shared_bias.onnx", nodes, [value("x", [1, 4, 8, 8])], [value("r2", [1, 4, 8, 8])],
                 [init("W", [4, 4, 3, 3], 0.3), init("bias", [4])], opset=13)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=RNG.standard_normal((16, 4, 8, 8)).astype(np.float32))
    assert_converts(tmp_path, model, {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)},
                    precisions=("int8",), extra=("--calib-data", calib))
    int8 = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    assert {n.name for n in int8.graph.node if n.op_type == "Conv"} == {"conv0", "conv1", "conv2"}
    code, report, _ = cli("lint", tmp_path / "int8" / "model.onnx")
    assert code == 0 and report["findings"] == []


def test_fp16_without_data_on_a_model_that_rejects_the_default_size(tmp_path):
    """A framing Conv over a dynamic audio axis rejects the default 64 samples (the openWakeWord melspectrogram's
    STFT): random data grows until the model runs; the squares of the power spectrum stay FP32 by rule, and the
    build says the activations were not checked."""
    model = save(tmp_path / "spectrum.onnx",
                 [helper.make_node("Unsqueeze", ["audio", "axes"], ["a"], name="unsqueeze"),
                  helper.make_node("Conv", ["a", "frames"], ["re"], name="stft", strides=[160]),
                  helper.make_node("Pow", ["re", "two"], ["power"], name="power"),
                  helper.make_node("ReduceMean", ["power"], ["mel"], name="mel", axes=[1])],
                 [value("audio", ["batch", "samples"])], [value("mel", ["batch", 1, "frames_out"])],
                 [numpy_helper.from_array(np.array([1], np.int64), "axes"), init("frames", [16, 1, 400]),
                  numpy_helper.from_array(np.array(2.0, np.float32), "two")], opset=13)
    code, result, err = cli("build", model, "--precision", "fp16", "-o", tmp_path / "fp16")
    assert code == 0, err
    assert "power" in result["kept_in_fp32"] and "rule, no real data" in result["kept_in_fp32"]["power"]
    assert "not checked" in err
    feed = {"audio": RNG.standard_normal((1, 1600)).astype(np.float32)}
    reference, got = run(model, feed)[0], run(tmp_path / "fp16" / "model.onnx", feed)[0]
    assert np.isfinite(got).all() and np.allclose(got, reference, rtol=1e-2, atol=1e-3)


def test_random_data_that_no_size_satisfies_is_one_line(tmp_path):
    """A model that rejects every probed size names the dims and the flag instead of failing inside a run."""
    model = save(tmp_path / "needs_seven.onnx",
                 [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
                 [value("x", [1, "n"])], [value("y", [7, None])],
                 [numpy_helper.from_array(np.array([7, 3], np.int64), "shape")], opset=13)
    code, _, err = cli("build", model, "--precision", "fp16", "-o", tmp_path / "out")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert "x axis 1" in line and "--shapes" in line, err
