"""`workbench build`: the contract scripts rely on (files written, exit codes, one-line errors)."""
import json

import numpy as np
import onnx
import pytest
from conftest import run_cli

from workbench.analysis import evaluate
from workbench.app import cli
from workbench.runtime import get_backend


def test_build_int8_writes_model_and_manifest(tmp_path, mnist_eval):
    """The process contract: `python -m workbench.app.cli` writes JSON on stdout and exits 0."""
    result = run_cli("build", "mnist-cnn", "--precision", "int8", "-o", str(tmp_path / "out"), subprocess=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["recipe"]["precision"] == "int8" and manifest["quantized_nodes"] == summary["quantized_nodes"]
    assert {"onnx", "onnxruntime", "polygraphy"} <= manifest["versions"].keys()
    model = tmp_path / "out" / "model.onnx"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(model)).graph.node)
    acc = evaluate.top1_accuracy(evaluate.run(get_backend().build(model), mnist_eval), mnist_eval)
    assert acc >= 0.97


def test_build_with_own_calibration_data_and_exclusions(tmp_path, mnist_calib):
    data = tmp_path / "calib.npz"
    np.savez(data, input=mnist_calib.inputs["input"][:32])
    assert cli.main(["build", "mnist-cnn", "--calib-data", str(data), "--exclude", "node_linear_1", "Relu",
                     "-o", str(tmp_path / "o")]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["excluded_nodes"][0] == "node_linear_1" and len(manifest["excluded_nodes"]) == 4
    assert manifest["calibration"]["samples"] == 32


@pytest.mark.parametrize("args, message", [
    (["build", "mnist-cnn", "--precision", "int4", "-o", "x"], "unknown precision 'int4'"),
    (["build", "mnist-cnn", "--calibration", "magic", "-o", "x"], "unknown calibration 'magic'"),
    (["build", "missing.onnx", "-o", "x"], "model file not found"),
    (["build", "mnist-cnn", "--exclude", "nope", "-o", "x"], "matches no node name"),
    (["build", "mnist-cnn", "--calib-data", "nope.npz", "-o", "x"], "data file not found"),
    (["build", "mnist-cnn"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_corrupt_model_exits_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    result = run_cli("build", str(bad), "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and "not a valid ONNX model" in result.stderr


def test_nan_calibration_data_exits_2(tmp_path, mnist_calib):
    x = mnist_calib.inputs["input"][:4].copy()
    x[0, 0, 0, 0] = np.inf
    np.savez(tmp_path / "c.npz", input=x)
    result = run_cli("build", "mnist-cnn", "--calib-data", str(tmp_path / "c.npz"), "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and "NaN/Inf" in result.stderr


def test_quantizer_crash_names_the_node(tmp_path, monkeypatch, capsys):
    import onnxruntime.quantization as oq

    def crash(*a, **k):
        raise RuntimeError("Unsupported weight layout in node_linear for per-channel quantization")

    monkeypatch.setattr(oq, "quantize_static", crash)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))  # no cached quantized graph to answer
    assert cli.main(["build", "mnist-cnn", "--exclude", "node_max_pool2d", "node_relu_1", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at node 'node_linear'" in err and "--exclude" in err


def test_refuses_to_overwrite_the_input_model(tmp_path, mnist):
    import shutil

    shutil.copyfile(mnist.path, tmp_path / "model.onnx")
    assert cli.main(["build", str(tmp_path / "model.onnx"), "--precision", "fp32", "-o", str(tmp_path)]) == 2


def test_trtexec_for_a_zoo_name_points_at_its_onnx_file(capsys):
    """Review defect: `workbench trtexec mnist-cnn` printed --onnx=mnist-cnn, a file trtexec cannot open."""
    import json
    import shlex
    from pathlib import Path

    from workbench.app import cli

    assert cli.main(["trtexec", "mnist-cnn"]) == 0
    build = shlex.split(json.loads(capsys.readouterr().out)["build"])
    onnx_arg = next(a for a in build if a.startswith("--onnx="))[len("--onnx="):]
    assert onnx_arg.endswith(".onnx") and Path(onnx_arg).is_file()


def test_ctrl_c_exits_130_and_an_unknown_profile_input_is_a_key_error(monkeypatch, capsys):
    """Review defects: KeyboardInterrupt exited with the bad-input code 2; Profile[name] leaked StopIteration."""
    import pytest

    import workbench as wb
    from workbench.app import cli
    from workbench.model.profiles import build_profile

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_lint", interrupted)
    assert cli.main(["lint", "mnist-cnn"]) == 130
    assert capsys.readouterr().err.strip() == "workbench: interrupted"
    profile = build_profile(wb.load_model("mnist-cnn").inputs)
    with pytest.raises(KeyError, match="no input 'nope'"):
        profile["nope"]


def test_diagnose_writes_a_self_contained_html_report(tmp_path, capsys):
    import json

    from workbench.app import cli

    out = tmp_path / "diagnosis.html"
    assert cli.main(["diagnose", "mnist-cnn", "--limit", "128", "--html", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["html"] == str(out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Remedies tried, cheapest first" in page
    assert page.count("plotly.js v") == 1 and "<script src=" not in page, "plotly.js inlined once: opens offline"
