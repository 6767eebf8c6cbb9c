"""Optimization profiles, the TensorRT backend up to the TensorRT call, trtexec commands; real builds where
TensorRT and a GPU exist (skipped here with the reason)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

import workbench as wb
from workbench.model.profiles import build_profile, default_profile
from workbench.runtime import availability, get_backend
from workbench.runtime.tensorrt import TensorRT, engine_key, timing_cache_path
from workbench.runtime.trtexec import build_command, commands


def test_default_profile_from_dynamic_dims(mnist):
    p = default_profile(mnist.inputs)["input"]
    assert (p.min, p.opt, p.max) == ((1, 1, 28, 28), (8, 1, 28, 28), (32, 1, 28, 28))


def test_profile_from_shapes_and_validation(mnist):
    p = build_profile(mnist.inputs, ["input:2x1x28x28,4x1x28x28,64x1x28x28"])
    assert p.to_dict() == {"input": {"min": [2, 1, 28, 28], "opt": [4, 1, 28, 28], "max": [64, 1, 28, 28]}}
    assert p.violations({"input": np.zeros((1, 1, 28, 28))}) and not p.violations({"input": np.zeros((9, 1, 28, 28))})
    bad = {
        "input:8x1x28x28,4x1x28x28,16x1x28x28": "min ≤ opt ≤ max",
        "input:1x3x28x28,2x3x28x28,4x3x28x28": "fixed to 1",
        "input:1x28x28,2x28x28,4x28x28": "rank",
        "image:1x1x28x28,2x1x28x28,4x1x28x28": "unknown input",
        "input:1x1x28x28,2x1x28x28": "NAME:MIN,OPT,MAX",
        "input:1xAx28x28,2x1x28x28,4x1x28x28": "not a shape",
    }
    for item, message in bad.items():
        with pytest.raises(wb.WorkbenchError, match=message):
            build_profile(mnist.inputs, [item])


def test_cpu_backend_reports_inputs_outside_the_profile(mnist):
    profile = build_profile(mnist.inputs, ["input:1x1x28x28,2x1x28x28,4x1x28x28"])
    engine = get_backend(profile=profile).build(mnist.path)
    with pytest.warns(UserWarning, match="outside the profile") as caught:
        engine.infer({"input": np.zeros((8, 1, 28, 28), np.float32)})
        engine.infer({"input": np.zeros((8, 1, 28, 28), np.float32)})
    assert len([w for w in caught if "outside the profile" in str(w.message)]) == 1, "reported once per problem"


def test_tensorrt_missing_is_one_clear_line():
    ok, reason = availability()["tensorrt"]
    if ok:
        pytest.skip("TensorRT is installed here")
    assert "TensorRT is not installed" in reason and "workbench[tensorrt]" in reason
    with pytest.raises(wb.WorkbenchError, match="backend tensorrt is not available: TensorRT is not installed"):
        get_backend("tensorrt")
    r = subprocess.run([sys.executable, "-m", "workbench.app.cli", "bench", "mnist-cnn", "--backend", "tensorrt"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "TensorRT is not installed" in r.stderr


def test_build_plan_choices_and_cache_keys(mnist):
    profile = default_profile(mnist.inputs)
    trt = TensorRT(profile=profile)
    plan = trt.build_plan(Path("m.onnx"), mnist.sha256, profile, "11.2.0", "NVIDIA L4")
    assert plan["strongly_typed"] and plan["legacy_precision_flags"] == []
    assert plan["timing_cache"].endswith(".cache") and "11.2.0" in plan["timing_cache"]
    keys = {
        engine_key(mnist.sha256, profile, "11.2.0", "NVIDIA L4", ()),
        engine_key(mnist.sha256, profile, "11.3.0", "NVIDIA L4", ()),
        engine_key(mnist.sha256, profile, "11.2.0", "NVIDIA A100", ()),
        engine_key(mnist.sha256, build_profile(mnist.inputs, ["input:1x1x28x28,2x1x28x28,4x1x28x28"]), "11.2.0",
                   "NVIDIA L4", ()),
        engine_key("other-model", profile, "11.2.0", "NVIDIA L4", ()),
    }
    assert len(keys) == 5, "model, profile, TensorRT version and GPU all key the engine cache"
    assert timing_cache_path("11.2.0", "NVIDIA L4") != timing_cache_path("11.2.0", "NVIDIA A100")
    legacy = TensorRT(profile=profile, legacy_precision_flags=("fp16",))
    assert legacy.build_plan(Path("m.onnx"), "x", profile, "10.13.0", "GPU")["strongly_typed"] is False
    with pytest.raises(wb.WorkbenchError, match="removed the precision flags"):
        legacy.build_plan(Path("m.onnx"), "x", profile, "11.0.0", "GPU")
    with pytest.raises(wb.WorkbenchError, match="unknown TensorRT precision flag"):
        TensorRT(legacy_precision_flags=("int4",))


def test_trtexec_commands_use_tensorrt_11_flags(mnist):
    profile = build_profile(mnist.inputs, ["input:1x1x28x28,8x1x28x28,32x1x28x28"])
    cmd = build_command("model.onnx", profile)
    assert cmd[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.plan"]
    assert "--minShapes=input:1x1x28x28" in cmd and "--maxShapes=input:32x1x28x28" in cmd
    assert not any(flag in cmd for flag in ("--fp16", "--int8", "--stronglyTyped", "--best"))
    assert "--stronglyTyped" in build_command("model.onnx", profile, tensorrt_major=10)
    c = commands("model.onnx", profile)
    assert "--loadEngine=model.plan" in c["bench"] and "--shapes=input:8x1x28x28" in c["bench"]


def test_build_manifest_carries_profile_and_trtexec(tmp_path):
    r = run_cli("build", "mnist-cnn", "--shapes",
                        "input:1x1x28x28,4x1x28x28,16x1x28x28", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["profile"]["input"]["max"] == [16, 1, 28, 28]
    assert "--optShapes=input:4x1x28x28" in manifest["trtexec"]["tensorrt_11"]["build"]
    r = run_cli("build", "mnist-cnn", "--shapes",
                        "input:4x1x28x28,2x1x28x28,16x1x28x28", "-o", str(tmp_path))
    assert r.returncode == 2 and "min ≤ opt ≤ max" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def tensorrt_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (no GPU machine)")
    try:
        from polygraphy import cuda

        cuda.wrapper()
    except Exception as exc:  # pragma: no cover - only on machines with TensorRT
        pytest.skip(f"no usable CUDA GPU: {exc}")


def test_tensorrt_runs_the_int8_model(tensorrt_gpu, mnist, mnist_calib, mnist_eval):  # pragma: no cover
    from workbench.analysis.evaluate import run, top1_accuracy

    t = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    engine = get_backend("tensorrt", profile=default_profile(mnist.inputs)).build(t.path)
    outputs = run(engine, mnist_eval.take(256), batch_size=32)
    assert top1_accuracy(outputs, mnist_eval.take(256)) >= 0.97
    step = engine.timed_call({"input": mnist_eval.inputs["input"][:8]})
    assert step() > 0, "CUDA events give a device time"
