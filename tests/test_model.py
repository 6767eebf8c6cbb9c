"""Model loading: zoo, ONNX files (with opset upgrade), PyTorch modules through the dynamo exporter."""
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.core.errors import WorkbenchError


def test_zoo_model_exposes_specs_and_module_paths(mnist):
    (spec,) = mnist.inputs
    assert spec.name == "input" and spec.dtype == "float32"
    assert spec.shape[1:] == (1, 28, 28) and isinstance(spec.shape[0], str)
    assert spec.dynamic_dims == {0: spec.shape[0]}
    assert mnist.module_of["node_conv2d"] == "features.0"
    assert mnist.module_of["node_linear_1"] == "classifier.4"
    assert mnist.opset >= 13


def _old_opset_model(path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(0).standard_normal(108))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="my_conv"), helper.make_node("Relu", ["y"], ["z"], name="my_relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 4, 6, 6])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)


def test_old_opset_is_upgraded_in_the_cache_and_user_file_untouched(tmp_path):
    path = tmp_path / "old.onnx"
    _old_opset_model(path)
    before = path.read_bytes()
    handle = wb.load_model(str(path))
    assert handle.opset >= 13 and handle.path != path
    assert path.read_bytes() == before
    assert handle.node_names() == ["my_conv", "my_relu"], "user node names survive the upgrade"
    assert handle.inputs[0].shape == ("n", 3, 8, 8)


def test_corrupt_and_missing_files_give_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(WorkbenchError, match="not a valid ONNX model"):
        wb.load_model(str(bad))
    with pytest.raises(WorkbenchError, match="not found"):
        wb.load_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(WorkbenchError, match="unknown model"):
        wb.load_model("no-such-zoo-model")


def test_torch_module_export_keeps_dynamic_axes_and_module_paths():
    torch = pytest.importorskip("torch")
    from workbench.zoo.mnist_cnn import load_module

    module = load_module()
    handle = wb.load_model(module, torch.zeros(2, 1, 28, 28), input_names=["input"], output_names=["logits"],
                           dynamic_axes={"input": {0: "batch"}})
    assert handle.source == "torch" and handle.torch_module is module
    assert handle.inputs[0].shape[1:] == (1, 28, 28) and isinstance(handle.inputs[0].shape[0], str)
    assert set(handle.module_of.values()) >= {"features.0", "features.3", "classifier.1", "classifier.4"}
    from workbench.runtime import get_backend

    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    out = get_backend().build(handle.path).infer({"input": x})["logits"]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_import_is_lazy():
    """`import workbench` and a Recipe load none of the heavy libraries (their import time is what made it slow;
    a wall-clock bound here failed on a loaded machine, so speed is left to what is imported)."""
    heavy = ("torch", "tensorrt", "tensorrt_rtx", "ray", "onnxruntime", "polygraphy", "plotly", "ipywidgets",
             "pandas", "transformers")
    code = (f"import sys; import workbench; workbench.Recipe('int8'); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_an_exception_without_a_message_is_still_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """Review defect: `str(exc).splitlines()[0]` raised IndexError on an empty message (exit 3)."""
    import onnx

    from workbench.app import cli
    from workbench.core.errors import one_line

    assert one_line(ValueError()) == "ValueError" and one_line(ValueError("a\n\n  b")) == "a b"
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")

    def fail(*args, **kwargs):
        raise RuntimeError()

    monkeypatch.setattr(onnx, "load", fail)
    assert cli.main(["build", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError" in err[0] and "Traceback" not in err[0]


def test_torch_module_exports_with_a_dynamic_batch_by_default():
    """Issue 16: a module exported from a batch-1 example takes any batch (it was fixed to 1)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from workbench.analysis.evaluate import run
    from workbench.model.data import Dataset
    from workbench.runtime import get_backend
    from workbench.zoo.mnist_cnn import load_module

    handle = wb.load_model(load_module(), torch.zeros(1, 1, 28, 28))
    assert handle.inputs[0].shape == ("batch", 1, 28, 28) and handle.outputs[0].shape[0] == "batch"
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    with get_backend().build(handle.path) as engine:
        logits = run(engine, Dataset({handle.inputs[0].name: x}), batch_size=5)[handle.outputs[0].name]
    expected = load_module()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_readme_module_example_runs_as_printed():
    """README's "Your own PyTorch module and data" example (docs/examples/own_module.py), run as a script."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("efficientnet_lite_pytorch")
    script = Path(__file__).resolve().parent.parent / "docs" / "examples" / "own_module.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'cosine': 0.9" in out.stdout and "first divergence:" in out.stdout


def test_unnamed_and_repeated_node_names_are_made_unique_and_user_names_kept(tmp_path):
    """Paddle2ONNX leaves Constant nodes unnamed (PP-OCR: 308 of 569); nodes are addressed by name everywhere."""
    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])),
             helper.make_node("Mul", ["x", "c"], ["y"], name="scale"),
             helper.make_node("Relu", ["y"], ["z"], name="scale"),
             helper.make_node("Relu", ["z"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4])])
    path = tmp_path / "unnamed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    names = [n.name for n in wb.load_model(str(path)).proto.graph.node]
    assert names == ["Constant_0", "scale", "scale_2", "Relu_3"]
    assert [n.name for n in onnx.load(path).graph.node][0] == "", "the user's file is untouched"
    assert [n.name for n in wb.load_model(str(path)).proto.graph.node] == names, "the same names every time"
