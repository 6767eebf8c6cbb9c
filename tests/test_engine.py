"""The engine view: the recipe's precision claims read from the Q/DQ layout, layer info parsed and mapped to the
user's ONNX nodes, engines diffed. Parsing runs on layer info captured from TensorRT-RTX on the accelerator machine
(tests/data/engine/, see benchmarks/tensorrt_device.py); nothing here needs TensorRT."""
from __future__ import annotations

import json

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
    for path, words in ((tmp_path / "missing.json", "not found"), (bad, "not layer info JSON")):
        result = run_cli("engine", tmp_path / "int8" / "model.onnx", "--layer-info", path)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
