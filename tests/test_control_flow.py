"""Control flow the data decides: a network written inside `If` branches (Silero VAD's `If(sr == 16000)`) is
specialized on the value every sample shares, so quantization and per-layer comparison reach it; conditions on
shapes stay; constant-condition `If`s with several outputs fold to a valid graph (onnx-graphsurgeon's own
flattening lost one of them)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.graph.cleanup import clean
from workbench.graph.specialize import SPECIALIZED_KEY, condition_inputs, specialize

RNG = np.random.default_rng(0)


def branch(name: str, scale: float) -> onnx.GraphProto:
    """x @ W → Relu → @ V, and a second output (x's mean), both reading x from the enclosing graph."""
    w = numpy_helper.from_array((RNG.standard_normal((16, 16)) * scale).astype(np.float32), f"{name}_W")
    v = numpy_helper.from_array((RNG.standard_normal((16, 4)) * scale).astype(np.float32), f"{name}_V")
    nodes = [helper.make_node("MatMul", ["x", w.name], [f"{name}_h"], name=f"{name}/fc1"),
             helper.make_node("Relu", [f"{name}_h"], [f"{name}_r"], name=f"{name}/relu"),
             helper.make_node("MatMul", [f"{name}_r", v.name], [f"{name}_y"], name=f"{name}/fc2"),
             helper.make_node("ReduceMean", ["x"], [f"{name}_m"], name=f"{name}/mean", axes=[1])]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None),
                                               helper.make_tensor_value_info(f"{name}_m", TensorProto.FLOAT, None)],
                             [w, v])


def rate_model(path) -> str:
    """Silero VAD's layout in small: the network for each sample rate is a branch of If(sr == 16000)."""
    nodes = [helper.make_node("Equal", ["sr", "rate16k"], ["is16k"], name="is_16k"),
             helper.make_node("If", ["is16k"], ["y", "m"], name="by_rate", then_branch=branch("net16k", 0.3),
                              else_branch=branch("net8k", 0.2))]
    graph = helper.make_graph(nodes, "rates", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
                                               helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("m", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(np.array(16000, np.int64), "rate16k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return str(path)


def data(rate: int, n: int = 64) -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal((n, 16)).astype(np.float32), "sr": np.array(rate, np.int64)}


def test_the_branch_the_data_takes_is_quantized_and_compared(tmp_path):
    path = rate_model(tmp_path / "rates.onnx")
    assert condition_inputs(onnx.load(path).graph) == {"sr"}
    model = wb.load_model(path)
    int8 = wb.apply(model, wb.Recipe("int8"), data(16000), progress=False)
    assert int8.specialized == {"sr": 16000}
    quantized = set(int8.quantized_nodes)
    assert {"net16k/fc1", "net16k/fc2"} <= quantized and not any(n.startswith("net8k") for n in quantized)
    feed = data(16000, 8)
    reference = ort.InferenceSession(path).run(None, feed)
    got = ort.InferenceSession(str(int8.path)).run(None, feed)
    assert all(np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99 for a, b in zip(reference, got))
    report = wb.compare(int8, data(16000, 16), progress=False)
    assert {"net16k/fc1", "net16k/fc2"} <= set(report.layers["node"]), "layers inside the branch compared"
    with pytest.raises(wb.WorkbenchError, match="specialized on sr = 16000"):
        wb.compare(int8, data(8000, 16), progress=False)


def test_a_shape_condition_is_not_specialized(tmp_path):
    """`If(Shape(x)[0] == 1)` takes another branch for a batch of one: it is left alone."""
    path = rate_model(tmp_path / "rates.onnx")
    model = onnx.load(path)
    g = model.graph
    g.node.insert(0, helper.make_node("Shape", ["x"], ["shape"], name="shape"))
    g.node.insert(1, helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0))
    g.node[2].input[:] = ["batch", "one"]
    g.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "zero"),
                          numpy_helper.from_array(np.array(1, np.int64), "one")])
    assert condition_inputs(g) == set()
    same, inlined = specialize(model, {"sr": np.array(16000)})
    assert same is model and inlined == []


def test_specialized_graph_keeps_its_interface_and_records_the_value(tmp_path):
    model = onnx.load(rate_model(tmp_path / "rates.onnx"))
    out, inlined = specialize(model, {"sr": np.array(8000, np.int64)})
    assert inlined == ["by_rate"] and not any(n.op_type == "If" for n in out.graph.node)
    assert [i.name for i in out.graph.input] == ["x", "sr"]
    assert {p.key: p.value for p in out.metadata_props}[SPECIALIZED_KEY] == '{"sr": 8000}'
    feed = data(8000, 4)
    for a, b in zip(ort.InferenceSession(model.SerializeToString()).run(None, feed),
                    ort.InferenceSession(out.SerializeToString()).run(None, feed)):
        np.testing.assert_array_equal(a, b)


def test_constant_condition_with_two_outputs_folds_to_a_valid_graph(tmp_path):
    """The clean-up folds `If(true)` into its branch and keeps both outputs (graphsurgeon's flattening left the
    second output without a producer, and the clean-up step was skipped)."""
    model = onnx.load(rate_model(tmp_path / "rates.onnx"))
    model.graph.node[0].input[0] = "rate16k"  # Equal(16000, 16000): constant
    folded, removed = clean(model)
    onnx.checker.check_model(folded)
    assert not any(n.op_type == "If" for n in folded.graph.node) and "by_rate" in removed
    assert {"net16k/fc1", "net16k/fc2", "net16k/mean"} <= {n.name for n in folded.graph.node}
    feed = data(8000, 4)  # sr no longer matters: the condition was a constant
    for a, b in zip(ort.InferenceSession(model.SerializeToString()).run(None, feed),
                    ort.InferenceSession(folded.SerializeToString()).run(None, feed)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
